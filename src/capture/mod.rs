//! Where frames come from: V4L2 cameras, RTSP IP cameras, H.264 video files, one image file, or
//! a folder of images. Every source turns its data into RGB8 [`Frame`]s; the pipeline does not
//! know which kind it reads.

pub mod convert;
mod files;
#[cfg(feature = "video")]
pub mod h264;
#[cfg(feature = "video")]
mod mp4_demux;
#[cfg(feature = "video")]
mod mp4_samples;
#[cfg(feature = "video")]
pub mod rtsp;
#[cfg(all(feature = "v4l2", target_os = "linux"))]
mod v4l2;
#[cfg(feature = "video")]
mod video_file;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::redact::Secret;
use crate::vision::image::RgbImage;

/// What to say about H.265 (`{what}` names the stream): no H.265 decoder that links statically
/// under a licence outpost can ship was found.
pub const H265_UNSUPPORTED: &str = "{what}; outpost decodes H.264 only: switch the camera's stream \
    (or its substream) to H.264 in its web interface, or transcode the file with ffmpeg -c:v libx264";

pub use files::{DirSource, FileSource};

/// One captured frame. Reused from frame to frame (see `pipeline::slot`). Decoded video arrives
/// as YUV (`yuv`) and becomes RGB only in [`Frame::rgb`], called by whoever takes the frame: a
/// frame the latest-frame slot drops costs a copy, not a conversion.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The picture, once RGB (always, for sources other than video).
    pub image: RgbImage,
    /// A decoded picture; while `yuv.pending`, `image` is stale.
    pub yuv: convert::Yuv420,
    /// Counts captured frames from 1, dropped ones included.
    pub seq: u64,
    pub captured_at: SystemTime,
    /// Waiting for the driver (or reading the file).
    pub capture: Duration,
    pub convert: Duration,
}

impl Default for Frame {
    fn default() -> Frame {
        Frame {
            image: RgbImage::new(0, 0, Vec::new()),
            yuv: convert::Yuv420::default(),
            seq: 0,
            captured_at: SystemTime::UNIX_EPOCH,
            capture: Duration::ZERO,
            convert: Duration::ZERO,
        }
    }
}

impl Frame {
    /// Makes `image` current (converting a decoded picture), returning the time it took.
    pub fn rgb(&mut self) -> anyhow::Result<Duration> {
        if !self.yuv.pending {
            return Ok(Duration::ZERO);
        }
        let started = std::time::Instant::now();
        self.yuv.pending = false;
        convert::i420(self.yuv.planes(), &mut self.image)?;
        Ok(started.elapsed())
    }
}

/// A bad frame (corrupt, undecodable) on a device that is otherwise fine: skipped and counted,
/// without reopening the device.
#[derive(Debug)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

pub enum Next {
    /// `frame` holds a new image.
    Frame,
    /// Nothing arrived within the source's wait (a live camera); ask again.
    Idle,
    /// A finite source is exhausted.
    End,
}

pub trait Source: Send {
    /// What it reads, for logs and the JSON `source` field.
    fn name(&self) -> &str;
    /// Live sources (cameras) deliver frames whether or not anyone takes them, so the pipeline
    /// drops stale ones; files wait for the pipeline instead.
    fn is_live(&self) -> bool;
    /// Fills `frame` (its buffers are reused). A failed frame is an error; the caller decides
    /// whether to skip it or reopen.
    fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next>;
    /// Drops the device so the next `next` opens it again (after an error).
    fn reset(&mut self) {}
}

/// `run.source` parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    V4l2(PathBuf),
    /// The whole URL, credentials included (hence a [`Secret`]: never printed).
    Rtsp(Secret),
    /// An image, or a video by its extension (see `video_file::is_video`).
    File(PathBuf),
    Dir(PathBuf),
}

impl SourceSpec {
    /// `v4l2:///dev/video0` (or `v4l2:/dev/video0`), `file:PATH`, `dir:PATH`; empty = the camera
    /// of `camera.device`.
    pub fn parse(text: &str, camera_device: &str) -> Result<SourceSpec, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(SourceSpec::V4l2(PathBuf::from(camera_device)));
        }
        if text.starts_with("rtsps://") {
            return Err("rtsps:// (RTSP over TLS) is not supported by outpost's RTSP client; use rtsp://".into());
        }
        if let Some(rest) = text.strip_prefix("rtsp://") {
            let authority = rest.split('/').next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or("");
            if host.is_empty() || host.starts_with(':') {
                return Err("an RTSP source names its camera: rtsp://[USER:PASS@]HOST[:PORT]/PATH".into());
            }
            return Ok(SourceSpec::Rtsp(Secret::new(text)));
        }
        let (scheme, rest) = text.split_once(':').ok_or_else(|| {
            format!("`{text}` has no scheme; use v4l2:///dev/videoN, rtsp://HOST/PATH, file:PATH or dir:PATH")
        })?;
        let path = match scheme {
            "v4l2" => rest.strip_prefix("//").unwrap_or(rest),
            _ => rest
                .strip_prefix("//")
                .filter(|p| p.starts_with('/'))
                .unwrap_or(rest),
        };
        if path.is_empty() {
            return Err(format!("`{text}` names no path"));
        }
        let path = PathBuf::from(path);
        match scheme {
            "v4l2" if path.is_absolute() => Ok(SourceSpec::V4l2(path)),
            "v4l2" => Err(format!(
                "`{text}`: the device must be an absolute path such as v4l2:///dev/video0"
            )),
            "file" => Ok(SourceSpec::File(path)),
            "dir" => Ok(SourceSpec::Dir(path)),
            other => Err(format!(
                "unknown source scheme `{other}:`; use v4l2://, rtsp://, file: or dir:"
            )),
        }
    }
}

/// `run.source` checked: a malformed one is a configuration error (exit 3), since restarting
/// cannot fix it. `run` checks it before provisioning and loading the model.
pub fn configured(config: &Config) -> anyhow::Result<SourceSpec> {
    SourceSpec::parse(&config.run.source, &config.camera.device)
        .map_err(|m| crate::exit::Failure::new(crate::exit::Exit::Config, format!("run.source: {m}")).into())
}

/// Opens the configured source (`run.source`); errors here are startup errors (fatal).
pub fn open(config: &Config) -> anyhow::Result<Box<dyn Source>> {
    open_spec(configured(config)?, config)
}

/// Opens a source spelled as `run.source` spells it (a `[[cameras]]` entry's source).
pub fn open_text(text: &str, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    let spec = SourceSpec::parse(text, &config.camera.device)
        .map_err(|m| crate::exit::Failure::new(crate::exit::Exit::Config, format!("camera source: {m}")))?;
    open_spec(spec, config)
}

fn open_spec(spec: SourceSpec, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    match spec {
        SourceSpec::File(path) if is_video(&path) => open_video_file(path, config),
        SourceSpec::File(path) => Ok(Box::new(FileSource::open(path, config.run.looped)?)),
        SourceSpec::Rtsp(url) => open_rtsp(&url, config),
        SourceSpec::Dir(path) => Ok(Box::new(DirSource::open(path, config.run.looped)?)),
        SourceSpec::V4l2(path) => open_v4l2(path, config),
    }
}

fn is_video(path: &std::path::Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "mp4" | "m4v" | "mov" | "h264" | "264" | "mkv" | "webm" | "avi")
}

#[cfg(feature = "video")]
fn open_video_file(path: PathBuf, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Ok(Box::new(video_file::VideoFile::open(path, config.run.realtime, config.run.looped)?))
}

#[cfg(feature = "video")]
fn open_rtsp(url: &Secret, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Ok(Box::new(rtsp::RtspSource::new(url, &config.camera)?))
}

#[cfg(not(feature = "video"))]
fn open_video_file(path: PathBuf, _config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Err(no_video(&format!("{}: video files", path.display())))
}

#[cfg(not(feature = "video"))]
fn open_rtsp(_url: &Secret, _config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Err(no_video("RTSP cameras"))
}

#[cfg(not(feature = "video"))]
fn no_video(what: &str) -> anyhow::Error {
    crate::exit::Failure::new(
        crate::exit::Exit::Unavailable,
        format!("{what} are not in this build (cargo feature `video`)"),
    )
    .into()
}

#[cfg(all(feature = "v4l2", target_os = "linux"))]
fn open_v4l2(path: PathBuf, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Ok(Box::new(v4l2::V4l2Source::open(path, &config.camera)?))
}

/// A camera's name and offered pixel formats (FourCC), when this build has V4L2.
#[cfg(all(feature = "v4l2", target_os = "linux"))]
pub fn describe_camera(path: &std::path::Path) -> anyhow::Result<(String, Vec<String>)> {
    v4l2::describe(path)
}

#[cfg(not(all(feature = "v4l2", target_os = "linux")))]
pub fn describe_camera(_path: &std::path::Path) -> anyhow::Result<(String, Vec<String>)> {
    anyhow::bail!("V4L2 capture is not in this build")
}

#[cfg(not(all(feature = "v4l2", target_os = "linux")))]
fn open_v4l2(path: PathBuf, _config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Err(crate::exit::Failure::new(
        crate::exit::Exit::Unavailable,
        format!(
            "{}: V4L2 capture is not in this build (cargo feature `v4l2`, Linux only)",
            path.display()
        ),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs() {
        let p = |s: &str| SourceSpec::parse(s, "/dev/video2");
        assert_eq!(p("").unwrap(), SourceSpec::V4l2("/dev/video2".into()));
        assert_eq!(
            p("v4l2:///dev/video0").unwrap(),
            SourceSpec::V4l2("/dev/video0".into())
        );
        assert_eq!(
            p("v4l2:/dev/video1").unwrap(),
            SourceSpec::V4l2("/dev/video1".into())
        );
        assert_eq!(
            p("file:img/a.png").unwrap(),
            SourceSpec::File("img/a.png".into())
        );
        assert_eq!(
            p("file:///abs/a.png").unwrap(),
            SourceSpec::File("/abs/a.png".into())
        );
        assert_eq!(
            p("dir:/srv/frames").unwrap(),
            SourceSpec::Dir("/srv/frames".into())
        );
        assert_eq!(
            p("rtsp://u:pw@cam/live").unwrap(),
            SourceSpec::Rtsp(Secret::new("rtsp://u:pw@cam/live"))
        );
        assert!(!format!("{:?}", p("rtsp://u:pw@cam/live").unwrap()).contains("pw"));
        assert!(p("http://cam").unwrap_err().contains("unknown source scheme"));
        assert!(p("rtsps://cam/x").unwrap_err().contains("rtsps://"));
        assert!(p("rtsp:///x").unwrap_err().contains("HOST"));
        assert!(p("rtsp://u:pw@/x").unwrap_err().contains("HOST"));
        assert!(p("/dev/video0").unwrap_err().contains("no scheme"));
        assert!(p("v4l2:video0").unwrap_err().contains("absolute"));
        assert!(p("dir:").is_err());
    }
}
