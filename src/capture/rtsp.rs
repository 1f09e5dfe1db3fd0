//! RTSP IP cameras through `retina` (TCP-interleaved RTP, Basic and Digest auth), decoded by
//! [`super::h264`]. All of `retina` and the async runtime it needs stay in this file: the source
//! owns a single-threaded tokio runtime and blocks on it for at most [`POLL`] per `next` call, so
//! to the pipeline an RTSP camera is one more blocking [`Source`].
//!
//! retina neither reconnects nor notices a server that stops sending: this source does. End of
//! stream, a reset, an RTSP error or no picture for `camera.stall_secs` ends the session with an
//! error; the capture loop logs it, counts it and reopens with its growing delay.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use futures_core::Stream as _;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};

use super::h264::{Decoded, H264};
use super::{Frame, FrameError, Next, Source};
use crate::config::Camera;
use crate::redact::{redact_text, Secret};

/// Longest block in one `next` call, so the capture thread notices a stop request.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait for DESCRIBE/SETUP/PLAY to complete.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connected camera sends, for the log and `doctor`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
}

impl std::fmt::Display for StreamInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}x{}", self.codec, self.width, self.height)?;
        match self.fps {
            Some(fps) => write!(f, " at {fps:.1} fps"),
            None => f.write_str(", frame rate not announced"),
        }
    }
}

/// An `rtsp://` URL with its credentials split out (retina refuses them inside the URL).
pub struct Target {
    url: url::Url,
    /// The URL without credentials: what logs, errors, JSON and metrics show.
    shown: String,
    credentials: Option<Credentials>,
}

impl Target {
    /// Credentials in the URL win over `camera.username`/`camera.password`.
    pub fn parse(text: &Secret, camera: &Camera) -> Result<Target, String> {
        let mut url = url::Url::parse(text.expose().trim())
            .map_err(|e| format!("`{}` is not a valid URL: {e}", redact_text(&crate::redact::redact_url(text.expose()))))?;
        if url.scheme() == "rtsps" {
            return Err("rtsps:// (RTSP over TLS) is not supported by outpost's RTSP client; use rtsp://".into());
        }
        if url.scheme() != "rtsp" || url.host_str().is_none_or(str::is_empty) {
            return Err("the camera URL must look like rtsp://HOST[:PORT]/PATH".into());
        }
        let decode = |s: &str| percent_decode(s);
        let from_url = (!url.username().is_empty()).then(|| Credentials {
            username: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let credentials = from_url.or_else(|| {
            (!camera.username.is_empty()).then(|| Credentials {
                username: camera.username.clone(),
                password: camera.password.as_ref().map_or(String::new(), |p| p.expose().to_string()),
            })
        });
        let shown = url.to_string();
        Ok(Target { url, shown, credentials })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct RtspSource {
    target: Target,
    stall: Duration,
    runtime: tokio::runtime::Runtime,
    session: Option<Pin<Box<Demuxed>>>,
    decoder: H264,
    seq: u64,
    /// Last picture (or connection): the stall watchdog's reference.
    last_picture: Instant,
    /// What the current connection announced; logged once per change.
    info: Option<StreamInfo>,
}

impl RtspSource {
    /// Checks the URL only: the camera may come up after the unit, so connecting is left to
    /// `next`, which retries with the capture loop's growing delay.
    pub fn new(text: &Secret, camera: &Camera) -> anyhow::Result<RtspSource> {
        let target = Target::parse(text, camera).map_err(|m| {
            crate::exit::Failure::new(crate::exit::Exit::Config, format!("run.source: {m}"))
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the RTSP client's runtime: {e}"))?;
        Ok(RtspSource {
            target,
            stall: camera.stall,
            runtime,
            session: None,
            decoder: H264::new()?,
            seq: 0,
            last_picture: Instant::now(),
            info: None,
        })
    }

    /// DESCRIBE, SETUP of the first video stream, PLAY.
    fn connect(&mut self) -> anyhow::Result<()> {
        let target = &self.target;
        let (session, info) = self
            .runtime
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, connect(target)).await
            })
            .map_err(|_| anyhow::anyhow!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))?
        .map_err(|e| anyhow::anyhow!("{}", redact_text(&one_line(&format!("{e:#}")))))?;
        if self.info.as_ref() != Some(&info) {
            log::info!("{}: {info}", self.target.shown);
            self.info = Some(info);
        }
        self.session = Some(session);
        self.decoder.resync();
        self.last_picture = Instant::now();
        Ok(())
    }

    /// Connects and waits for the first picture (as RGB): what `doctor` reports.
    pub fn probe(&mut self, wait: Duration) -> anyhow::Result<(StreamInfo, Frame)> {
        let deadline = Instant::now() + wait;
        let mut frame = Frame::default();
        loop {
            match self.next(&mut frame) {
                Ok(Next::Frame) => {
                    frame.rgb()?;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.downcast_ref::<FrameError>().is_some() => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                anyhow::bail!("connected, but no picture within {}s", wait.as_secs());
            }
        }
        let info = self.info.clone().ok_or_else(|| anyhow::anyhow!("no stream information"))?;
        Ok((info, frame))
    }

    fn fail(&mut self, why: String) -> anyhow::Error {
        self.close();
        anyhow::anyhow!("{}", redact_text(&one_line(&why)))
    }

    /// Drops the session inside the runtime: retina sends its TEARDOWN from a task there.
    fn close(&mut self) {
        let _inside = self.runtime.enter();
        self.session = None;
    }
}

impl Drop for RtspSource {
    fn drop(&mut self) {
        self.close();
    }
}

async fn connect(target: &Target) -> anyhow::Result<(Pin<Box<Demuxed>>, StreamInfo)> {
    let options = SessionOptions::default()
        .creds(target.credentials.clone())
        .user_agent(format!("outpost/{}", env!("CARGO_PKG_VERSION")));
    let mut session = Session::describe(target.url.clone(), options)
        .await
        .map_err(|e| anyhow::anyhow!("{}", explain(&e.to_string())))?;
    let (index, stream) = session
        .streams()
        .iter()
        .enumerate()
        .find(|(_, s)| s.media() == "video")
        .ok_or_else(|| anyhow::anyhow!("the camera offers no video stream"))?;
    let codec = stream.encoding_name().to_ascii_lowercase();
    match codec.as_str() {
        "h264" => {}
        "h265" | "hevc" => anyhow::bail!(
            "{}",
            super::H265_UNSUPPORTED.replace("{what}", "the camera sends H.265")
        ),
        other => anyhow::bail!(
            "the camera sends {other} video; outpost decodes H.264 only: switch the stream to H.264"
        ),
    }
    let fps = stream.framerate().map(f64::from);
    let (width, height) = match stream.parameters() {
        Some(ParametersRef::Video(v)) => v.pixel_dimensions(),
        _ => (0, 0),
    };
    session
        .setup(
            index,
            SetupOptions::default()
                .transport(Transport::Tcp(TcpTransportOptions::default()))
                .frame_format(FrameFormat::SIMPLE),
        )
        .await
        .map_err(|e| anyhow::anyhow!("SETUP: {e}"))?;
    let playing = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("PLAY: {e}"))?;
    let demuxed = playing.demuxed().map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = StreamInfo { codec: "H.264".into(), width, height, fps };
    Ok((Box::pin(demuxed), info))
}

/// retina's errors span lines (message, connection, packet context): one log line each.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// retina's errors, with what to do for the common ones.
fn explain(error: &str) -> String {
    let error = &one_line(error);
    match response_status(error) {
        Some(401) => format!("{error}: the camera refused the credentials (check the user name and password)"),
        Some(404) => format!("{error}: no such stream path on the camera"),
        _ => error.to_string(),
    }
}

/// The status of retina's "NNN response to METHOD" errors. Looked up by that phrase, not by
/// the digits alone: the same message names ports and addresses ("127.0.0.1:40127").
fn response_status(error: &str) -> Option<u16> {
    let (before, _) = error.split_once(" response to ")?;
    let code = before.rsplit(|c: char| !c.is_ascii_digit()).next()?;
    if code.len() == 3 { code.parse().ok() } else { None }
}

impl Source for RtspSource {
    fn name(&self) -> &str {
        &self.target.shown
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next> {
        if self.session.is_none() {
            self.connect()?;
        }
        let waiting = Instant::now();
        let deadline = waiting + POLL;
        loop {
            let Some(session) = self.session.as_mut() else {
                return Ok(Next::Idle);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let item = self.runtime.block_on(async {
                tokio::time::timeout(left, poll_fn(|cx| session.as_mut().poll_next(cx))).await
            });
            let video = match item {
                Err(_) => {
                    if self.last_picture.elapsed() >= self.stall {
                        return Err(self.fail(format!(
                            "no picture for {}s (stalled); reconnecting",
                            self.stall.as_secs()
                        )));
                    }
                    return Ok(Next::Idle);
                }
                Ok(None) => return Err(self.fail("the camera ended the stream".into())),
                Ok(Some(Err(e))) => return Err(self.fail(e.to_string())),
                Ok(Some(Ok(CodecItem::VideoFrame(video)))) => video,
                Ok(Some(Ok(_))) => continue,
            };
            if video.loss() > 0 {
                // Pictures after a gap reference what was lost: wait for the next keyframe.
                self.decoder.resync();
            }
            let receive = waiting.elapsed();
            let decoding = Instant::now();
            match self.decoder.decode(video.data(), video.is_random_access_point(), &mut frame.yuv) {
                Ok(Decoded::Picture) => {
                    self.seq += 1;
                    self.last_picture = Instant::now();
                    frame.seq = self.seq;
                    frame.captured_at = SystemTime::now();
                    frame.capture = receive;
                    frame.convert = decoding.elapsed();
                    return Ok(Next::Frame);
                }
                Ok(Decoded::Pending | Decoded::Skipped) => {}
                Err(e) => return Err(FrameError(format!("{}: {e}", self.target.shown)).into()),
            }
        }
    }

    fn reset(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(user: &str, password: Option<&str>) -> Camera {
        Camera {
            device: "/dev/video0".into(),
            format: crate::config::PixelFormat::Yuyv,
            width: 640,
            height: 480,
            fps: 30,
            reopen: Duration::from_secs(1),
            stall: Duration::from_secs(10),
            username: user.into(),
            password: password.map(Secret::new),
        }
    }

    #[test]
    fn credentials_are_split_out_of_the_url() {
        let t = Target::parse(&Secret::new("rtsp://admin:p%40ss@10.0.0.5:554/stream1"), &camera("", None)).unwrap();
        assert_eq!(t.shown(), "rtsp://10.0.0.5:554/stream1");
        let c = t.credentials.as_ref().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "p@ss"));
        assert!(!t.url.as_str().contains("admin"));

        let t = Target::parse(&Secret::new("rtsp://cam/live"), &camera("viewer", Some("hunter2"))).unwrap();
        assert_eq!(t.shown(), "rtsp://cam/live");
        assert_eq!(t.credentials.as_ref().unwrap().password, "hunter2");
        assert!(Target::parse(&Secret::new("rtsp://cam/live"), &camera("", None)).unwrap().credentials.is_none());
    }

    #[test]
    fn bad_urls_are_explained_without_the_password() {
        let e = Target::parse(&Secret::new("rtsps://u:secretpw@cam/x"), &camera("", None)).err().unwrap();
        assert!(e.contains("rtsps://") && !e.contains("secretpw"), "{e}");
        let e = Target::parse(&Secret::new("rtsp://u:secretpw@[bad/x"), &camera("", None)).err().unwrap();
        assert!(e.contains("not a valid URL") && !e.contains("secretpw"), "{e}");
    }

    #[test]
    fn statuses_are_read_from_the_response_phrase_not_from_port_numbers() {
        let not_found = "404 response to DESCRIBE CSeq=1: Unexpected RTSP response status\n\
                         conn: 127.0.0.1:51186(me)->127.0.0.1:40127@2026-11-27T17:37:25Z";
        assert!(explain(not_found).ends_with("no such stream path on the camera"), "{}", explain(not_found));
        let refused = "401 response to DESCRIBE CSeq=2: Unauthorized\nconn: 127.0.0.1:4044(me)->127.0.0.1:554";
        assert!(explain(refused).ends_with("check the user name and password)"));
        let other = "connection refused; conn: 127.0.0.1:40401";
        assert_eq!(explain(other), other);
    }
}
