//! V4L2 cameras through the `v4l` crate: capability check, format/size/frame-rate negotiation,
//! mmap streaming. All of the `v4l` crate's API stays in this file, so replacing it stays local.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use v4l::buffer::Type;
use v4l::capability::{Capabilities, Flags};
use v4l::format::FourCC;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format};

use super::convert::{self, RawFrame};
use super::{Frame, FrameError, Next, Source};
use crate::config::{Camera, PixelFormat};

/// Buffers queued to the driver: enough to ride out a slow frame, few enough to stay fresh.
const BUFFERS: u32 = 4;
/// Longest wait in one dequeue, so the capture thread notices a stop request.
const DEQUEUE_WAIT: Duration = Duration::from_millis(500);
/// Formats outpost converts, in order of preference after the configured one.
const CONVERTIBLE: [PixelFormat; 4] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb24,
    PixelFormat::Mjpeg,
];

pub struct V4l2Source {
    path: PathBuf,
    name: String,
    want: Camera,
    open: Option<Open>,
    seq: u64,
}

struct Open {
    stream: Stream<'static>,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
    // Kept open for the stream's lifetime (the stream shares its file handle).
    _device: Device,
}

impl V4l2Source {
    /// Opens and negotiates now: a camera that is absent or unusable at startup is fatal.
    pub fn open(path: PathBuf, want: &Camera) -> anyhow::Result<V4l2Source> {
        let name = format!("v4l2://{}", path.display());
        let mut source = V4l2Source {
            path,
            name,
            want: want.clone(),
            open: None,
            seq: 0,
        };
        source.open = Some(source.negotiate()?);
        Ok(source)
    }

    fn negotiate(&self) -> anyhow::Result<Open> {
        let path = self.path.display();
        let (device, caps, offered) = probe(&self.path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(Flags::STREAMING)
        {
            anyhow::bail!(
                "{path} ({}, driver {}) cannot stream video capture",
                caps.card,
                caps.driver
            );
        }
        let choice = std::iter::once(self.want.format)
            .chain(CONVERTIBLE)
            .find(|f| offered.contains(&fourcc(*f)))
            .ok_or_else(|| {
                let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
                anyhow::anyhow!(
                    "{path} offers {} but outpost converts only YUYV, NV12, RGB24 (RGB3) and MJPEG",
                    names.join(", ")
                )
            })?;
        if choice != self.want.format {
            log::warn!(
                "{path}: {} is not offered; using {choice}",
                self.want.format
            );
        }
        let asked = Format::new(self.want.width, self.want.height, fourcc(choice));
        let got = device
            .set_format(&asked)
            .map_err(|e| anyhow::anyhow!("{path}: cannot set format {choice}: {e}"))?;
        if got.fourcc != fourcc(choice) {
            anyhow::bail!(
                "{path}: asked for {choice}, the driver chose {}",
                got.fourcc
            );
        }
        if (got.width, got.height) != (self.want.width, self.want.height) {
            log::warn!(
                "{path}: asked for {}x{}, the driver chose {}x{}",
                self.want.width,
                self.want.height,
                got.width,
                got.height
            );
        }
        // Drivers often default to a low rate: always ask for the configured one.
        let fps = match device.set_params(&Parameters::with_fps(self.want.fps)) {
            Ok(p) if p.interval.numerator > 0 => format!(
                "{:.1}",
                p.interval.denominator as f64 / p.interval.numerator as f64
            ),
            Ok(_) => "unknown".into(),
            Err(e) => {
                log::warn!("{path}: cannot set {} fps: {e}", self.want.fps);
                "unknown".into()
            }
        };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| anyhow::anyhow!("{path}: cannot map capture buffers: {e}"))?;
        stream.set_timeout(DEQUEUE_WAIT);
        log::info!(
            "camera {path}: {} ({}), {choice} {}x{} at {fps} fps, {} bytes per line",
            caps.card,
            caps.driver,
            got.width,
            got.height,
            got.stride
        );
        let stride = if got.stride == 0 {
            min_stride(choice, got.width)
        } else {
            got.stride
        };
        Ok(Open {
            stream,
            format: choice,
            width: got.width,
            height: got.height,
            stride,
            _device: device,
        })
    }
}

/// Opens a device and asks what it is and which pixel formats it offers.
fn probe(path: &std::path::Path) -> anyhow::Result<(Device, Capabilities, Vec<FourCC>)> {
    let device = Device::with_path(path).map_err(|e| anyhow::anyhow!("cannot open: {e}"))?;
    let caps = device.query_caps().map_err(|e| anyhow::anyhow!("not a V4L2 device: {e}"))?;
    let formats = device.enum_formats().map_err(|e| anyhow::anyhow!("cannot list formats: {e}"))?;
    Ok((device, caps, formats.into_iter().map(|d| d.fourcc).collect()))
}

/// What a device is and which pixel formats it offers (for `outpost doctor`).
pub fn describe(path: &std::path::Path) -> anyhow::Result<(String, Vec<String>)> {
    let (_, caps, offered) = probe(path)?;
    let names = offered
        .iter()
        .map(|f| f.to_string().chars().filter(char::is_ascii_graphic).collect::<String>())
        .filter(|name| !name.is_empty())
        .collect();
    Ok((format!("{} ({})", caps.card, caps.driver), names))
}

fn min_stride(format: PixelFormat, width: u32) -> u32 {
    match format {
        PixelFormat::Yuyv => width * 2,
        PixelFormat::Rgb24 => width * 3,
        PixelFormat::Nv12 | PixelFormat::Mjpeg => width,
    }
}

fn fourcc(format: PixelFormat) -> FourCC {
    FourCC::new(format.fourcc())
}

impl Source for V4l2Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next> {
        if self.open.is_none() {
            self.open = Some(self.negotiate()?);
            log::info!("camera {} is back", self.path.display());
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(Next::Idle);
        };
        let started = Instant::now();
        let (data, meta) = match CaptureStream::next(&mut open.stream) {
            Ok(next) => next,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(Next::Idle),
            Err(e) => anyhow::bail!("{}: capture failed: {e}", self.path.display()),
        };
        let captured = started.elapsed();
        if meta.flags.contains(v4l::buffer::Flags::ERROR) {
            let message = format!(
                "{}: the driver marked frame {} as corrupt",
                self.path.display(),
                meta.sequence
            );
            return Err(FrameError(message).into());
        }
        let used = (meta.bytesused as usize).min(data.len());
        let raw = RawFrame {
            format: open.format,
            width: open.width,
            height: open.height,
            stride: open.stride,
            data: &data[..used],
        };
        let converting = Instant::now();
        convert::to_rgb(&raw, &mut frame.image)
            .map_err(|e| FrameError(format!("{}: {e}", self.path.display())))?;
        self.seq += 1;
        frame.seq = self.seq;
        frame.captured_at = SystemTime::now();
        frame.capture = captured;
        frame.convert = converting.elapsed();
        Ok(Next::Frame)
    }

    fn reset(&mut self) {
        self.open = None;
    }
}
