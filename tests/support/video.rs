//! Video test parts: clips made by Debian's ffmpeg from the fixture images, and the real RTSP
//! server (GStreamer's gst-rtsp-server, tests/rtsp/server.py) on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::fixtures;

/// Runs ffmpeg quietly; panics with its output on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg (Debian package ffmpeg) is installed");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fixture image scaled to `size` (`640x480`), as PNG: the picture both the RTSP stream and
/// `outpost detect` see.
pub fn scaled_image(dir: &Path, name: &str, size: &str) -> PathBuf {
    let out = dir.join(format!("{}-{size}.png", name.trim_end_matches(".png")));
    let scale = format!("scale={}", size.replace('x', ":"));
    ffmpeg(&["-i", fixtures().join("images").join(name).to_str().unwrap(), "-vf", &scale, out.to_str().unwrap()]);
    out
}

/// A clip of `frames` frames at 25 fps: the astronaut panned left to right at `size`, H.264 of
/// `profile` with B-frames (main/high) and a keyframe every 2 s; `.mp4` or `.h264` by `out`'s
/// extension.
pub fn panned_clip(out: &Path, frames: u32, size: &str, profile: &str) {
    let (w, h) = size.split_once('x').unwrap();
    let wide: u32 = w.parse::<u32>().unwrap() * 3 / 2;
    let filter = format!("scale={wide}:-2,crop={w}:{h}:'(in_w-{w})*n/{frames}':'(in_h-{h})/2',format=yuv420p");
    let image = fixtures().join("images/astronaut.png");
    let frames = frames.to_string();
    let mut args = vec![
        "-loop", "1", "-framerate", "25", "-i", image.to_str().unwrap(),
        "-vf", &filter, "-frames:v", &frames,
        "-c:v", "libx264", "-profile:v", profile, "-g", "50", "-preset", "veryfast",
    ];
    if out.extension().is_some_and(|e| e == "h264") {
        args.extend(["-bsf:v", "h264_mp4toannexb", "-f", "h264"]);
    }
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
}

/// Frames in a video by ffprobe's count (decoding every one).
pub fn ffprobe_frames(clip: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
               "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(clip)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A free port on 127.0.0.1 (for servers that must come back on the same one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// gst-rtsp-server streaming a still image live.
pub struct RtspServer {
    child: Child,
    pub port: u16,
    args: Vec<String>,
}

impl RtspServer {
    /// `extra`: more server.py arguments (`--size`, `--profile`, `--auth` ...).
    pub fn start(image: &Path, port: u16, extra: &[&str]) -> RtspServer {
        let mut args = vec!["--image".to_string(), image.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, port) = spawn(&args, port);
        RtspServer { child, port, args }
    }

    pub fn url(&self, userinfo: &str) -> String {
        format!("rtsp://{userinfo}127.0.0.1:{}/cam", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let (child, _) = spawn(&self.args, self.port);
        self.child = child;
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        self.kill();
    }
}

fn spawn(args: &[String], port: u16) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp/server.py");
    // The port may still be in TIME_WAIT from the previous instance: retry briefly.
    for _ in 0..50 {
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if let Some(bound) = line.trim().strip_prefix("ready ") {
            return (child, bound.parse().unwrap());
        }
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the RTSP server did not start on port {port}");
}
