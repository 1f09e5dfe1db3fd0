//! Video sources through the real binary: RTSP from GStreamer's real RTSP server on 127.0.0.1
//! (detections, Basic and Digest auth, server killed and restarted, server frozen), and H.264
//! files made by ffmpeg (every frame, paced and unpaced, loop, broken files).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::video::{free_port, panned_clip, scaled_image, ffprobe_frames, RtspServer};
use support::{fixtures, leaks, run, Sandbox};

const PASSWORD: &str = "s3cret-camera-pw";

fn faces_sandbox() -> Sandbox {
    let s = Sandbox::new();
    let model = fixtures().join("centerface.onnx");
    s.write(
        "models.toml",
        &format!(
            "version = 1\n[[models]]\nid = \"faces\"\nsource = \"file://{}\"\nsha256 = \"09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc\"\nsize = 7304518\nfamily = \"centerface\"\nclasses = [\"face\"]\n",
            model.display()
        ),
    );
    s
}

fn outpost_run(s: &Sandbox, source: &str, settings: &[&str]) -> Command {
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache"));
    cmd.args(["--set", "run.stats_interval_secs=0", "--set", "run.model=faces", "--set", "camera.reopen_secs=1"]);
    for kv in settings {
        cmd.args(["--set", kv]);
    }
    cmd.args(["run", "--allow-volatile-cache", "--manifest"]).arg(s.path().join("models.toml"));
    cmd.args(["--source", source]);
    cmd
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn faces(v: &Value) -> Vec<[f64; 4]> {
    v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_f64().unwrap();
            [n("x"), n("y"), n("width"), n("height")]
        })
        .collect()
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let (ax0, ay0, ax1, ay1) = (a[0] - a[2] / 2.0, a[1] - a[3] / 2.0, a[0] + a[2] / 2.0, a[1] + a[3] / 2.0);
    let (bx0, by0, bx1, by1) = (b[0] - b[2] / 2.0, b[1] - b[3] / 2.0, b[0] + b[2] / 2.0, b[1] + b[3] / 2.0);
    let w = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    let h = (ay1.min(by1) - ay0.max(by0)).max(0.0);
    let inter = w * h;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

/// `outpost detect` on one image: the reference boxes.
fn detect(s: &Sandbox, image: &std::path::Path) -> Vec<[f64; 4]> {
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache"));
    let out = run(cmd.args(["detect", "--model", "faces"]).arg(image));
    assert_eq!(out.code, 0, "{}", out.stderr);
    faces(&json_lines(&out.stdout)[0])
}

/// A running `outpost run`: stdout lines as they come, stderr collected.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running { child, lines, stderr }
    }

    /// The next JSON line within `wait`.
    fn line(&self, wait: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(wait)
            .unwrap_or_else(|_| panic!("no JSON line within {wait:?}; stderr:\n{}", self.stderr()));
        serde_json::from_str(&line).unwrap()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_log(&self, needle: &str, wait: Duration) {
        let until = Instant::now() + wait;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < until, "`{needle}` not logged within {wait:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait(mut self) -> (i32, String) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        std::thread::sleep(Duration::from_millis(100));
        (code, self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn rtsp_detections_match_detect_on_the_same_picture() {
    let s = faces_sandbox();
    for (size, profile) in [("640x480", "baseline"), ("1280x720", "main")] {
        let image = scaled_image(s.path(), "astronaut.png", size);
        let server = RtspServer::start(&image, 0, &["--size", size, "--profile", profile]);
        let out = run(&mut outpost_run(&s, &server.url(""), &[]).args(["--frames", "4"]));
        assert_eq!(out.code, 0, "{size} {profile}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("H.264 {size}")), "stream info logged: {}", out.stderr);
        let want = detect(&s, &image);
        assert!(!want.is_empty(), "the astronaut has a face");
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.len(), 4);
        for line in &lines {
            assert_eq!(line["source"], server.url(""));
            let got = faces(line);
            assert_eq!(got.len(), want.len(), "{size} {profile}: {line} vs {want:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(iou(*g, *w) >= 0.9, "{size} {profile}: IoU {} ({g:?} vs {w:?})", iou(*g, *w));
            }
        }
    }
}

#[test]
fn rtsp_basic_and_digest_auth_never_show_the_password() {
    let s = faces_sandbox();
    let image = scaled_image(s.path(), "astronaut.png", "320x240");
    for method in ["basic", "digest"] {
        let server = RtspServer::start(
            &image,
            0,
            &["--size", "320x240", "--auth", method, "--user", "viewer", "--password", PASSWORD],
        );
        // Credentials in the URL.
        let out = run(&mut outpost_run(&s, &server.url(&format!("viewer:{PASSWORD}@")), &[]).args(["--frames", "2"]));
        assert_eq!(out.code, 0, "{method}: {}", out.stderr);
        assert_eq!(json_lines(&out.stdout).len(), 2);
        assert!(!leaks(&out.stdout, PASSWORD) && !leaks(&out.stderr, PASSWORD), "{method}: password shown");
        assert!(out.stdout.contains(&format!("\"source\":\"{}\"", server.url(""))), "{}", out.stdout);

        // `doctor` connects and reports the stream.
        let with_creds = format!("run.source={}", server.url(&format!("viewer:{PASSWORD}@")));
        let out = run(s.outpost().args(["--board", "x86_64-dev", "--set", &with_creds, "doctor"]));
        let camera = out.stdout.lines().find(|l| l.contains("camera")).unwrap_or_default().to_string();
        assert!(camera.starts_with("ok") && camera.contains("credentials accepted") && camera.contains("H.264 320x240"), "{}", out.stdout);
        assert!(!leaks(&out.stdout, PASSWORD) && !leaks(&out.stderr, PASSWORD), "{method}: doctor shows the password");

        // Credentials from the environment, for a URL without them.
        let out = run(outpost_run(&s, &server.url(""), &["camera.username=viewer"])
            .args(["--frames", "1"])
            .env("OUTPOST_CAMERA_PASSWORD", PASSWORD));
        assert_eq!(out.code, 0, "{method} from env: {}", out.stderr);

        // A wrong password: a clear error, retried with a growing delay, never shown.
        let wrong = Running::spawn(&mut outpost_run(&s, &server.url("viewer:wr0ng-9f8e7d6c@"), &[]));
        wrong.wait_for_log("refused the credentials", Duration::from_secs(30));
        let first = wrong.stderr().matches("refused the credentials").count();
        std::thread::sleep(Duration::from_secs(6));
        let stderr = wrong.stderr();
        drop(wrong);
        // Reopen delays of 1, 2, 4 s: at most three more attempts in the next 6 s.
        let refusals = stderr.matches("refused the credentials").count() - first;
        assert!(refusals <= 3, "{method}: {refusals} attempts in 6 s:\n{stderr}");
        assert!(!leaks(&stderr, "wr0ng-9f8e7d6c"), "{stderr}");
    }
}

#[test]
fn rtsp_reconnects_after_the_server_is_killed_and_after_it_freezes() {
    let s = faces_sandbox();
    let image = scaled_image(s.path(), "astronaut.png", "320x240");
    let mut server = RtspServer::start(&image, free_port(), &["--size", "320x240", "--fps", "10", "--keyint", "10"]);
    let outpost = Running::spawn(
        outpost_run(&s, &server.url(""), &["camera.stall_secs=2", "run.max_fps=5"]).args(["--frames", "24"]),
    );
    let wait = Duration::from_secs(30);
    for _ in 0..4 {
        outpost.line(wait);
    }

    // Killed and restarted on the same port.
    server.kill();
    outpost.wait_for_log("reopening", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    for _ in 0..4 {
        outpost.line(wait);
    }

    // Frozen: the connection stays open but nothing arrives; the stall watchdog must fire.
    server.signal("-STOP");
    outpost.wait_for_log("stalled", Duration::from_secs(15));
    server.signal("-CONT");
    let mut more = 8;
    while more < 16 {
        outpost.line(wait);
        more += 1;
    }
    let (code, stderr) = outpost.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("frames_processed=24"), "{stderr}");
}

#[test]
fn video_file_every_frame_unpaced_and_looped() {
    let s = faces_sandbox();
    let clip = s.path().join("pan.mp4");
    panned_clip(&clip, 300, "320x240", "main");
    let expected = ffprobe_frames(&clip);
    assert_eq!(expected, 300);

    let out = run(&mut outpost_run(&s, &format!("file:{}", clip.display()), &["run.realtime=false", "run.input=160x128"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len() as u64, expected, "every frame decoded and processed");
    assert!(out.stderr.contains("frames_dropped=0"), "{}", out.stderr);
    let ids: Vec<u64> = lines.iter().map(|l| l["frame_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=300).collect::<Vec<_>>());

    // The same frames as a raw H.264 stream, by `outpost decode`: same count, same pixels.
    let raw = s.path().join("pan.h264");
    panned_clip(&raw, 300, "320x240", "main");
    let decode = |path: &std::path::Path| {
        let mut cmd = s.outpost();
        let out = run(cmd.args(["decode", "--source"]).arg(format!("file:{}", path.display())));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    let (from_mp4, from_raw) = (decode(&clip), decode(&raw));
    assert_eq!(from_mp4.lines().count(), 300);
    assert_eq!(from_mp4, from_raw, "the MP4 and the raw stream decode to the same pictures");

    // Looping: frame ids keep counting past the end of the clip.
    let short = s.path().join("short.mp4");
    panned_clip(&short, 20, "320x240", "baseline");
    let out = run(outpost_run(&s, &format!("file:{}", short.display()), &["run.realtime=false", "run.loop=true", "run.input=160x128"])
        .args(["--frames", "45"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ids: Vec<u64> = json_lines(&out.stdout).iter().map(|l| l["frame_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=45).collect::<Vec<_>>());
}

#[test]
fn video_file_paced_at_its_frame_rate() {
    let s = faces_sandbox();
    let clip = s.path().join("pan.mp4");
    panned_clip(&clip, 50, "320x240", "high");
    let started = Instant::now();
    let out = run(&mut outpost_run(&s, &format!("file:{}", clip.display()), &["run.input=160x128"]));
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // 50 frames at 25 fps: two seconds of video take two seconds.
    assert!(took >= Duration::from_millis(1900), "paced playback took {took:?}");
    let lines = json_lines(&out.stdout);
    // Paced playback drops what inference cannot take, as a camera would: at least two lines.
    assert!(lines.len() >= 2, "{}", out.stderr);
    // Timestamps follow the video's timeline: frame n is (n-1)/25 s after the first.
    let time = |l: &Value| {
        let t = l["timestamp"].as_str().unwrap();
        let secs: f64 = t[17..t.len() - 1].parse().unwrap();
        (l["frame_id"].as_u64().unwrap(), secs)
    };
    let (first, last) = (time(&lines[0]), time(lines.last().unwrap()));
    let span = (last.1 - first.1 + 60.0) % 60.0;
    let want = (last.0 - first.0) as f64 / 25.0;
    assert!((span - want).abs() < 0.002, "{span} s between frames {} and {}", first.0, last.0);
}

#[test]
fn broken_video_files_are_clear_errors() {
    let s = faces_sandbox();
    let clip = s.path().join("pan.mp4");
    panned_clip(&clip, 30, "320x240", "main");
    let bytes = std::fs::read(&clip).unwrap();
    let truncated = s.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = s.path().join("notes.mp4");
    std::fs::write(&text, "not a video\n").unwrap();
    for bad in [&truncated, &text] {
        let out = run(&mut outpost_run(&s, &format!("file:{}", bad.display()), &[]));
        assert_ne!(out.code, 0, "{}", out.stderr);
        let name = bad.file_name().unwrap().to_str().unwrap();
        assert!(out.stderr.contains(name) && out.stderr.contains("MP4"), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn a_faulty_rtsp_server_gives_counted_errors_never_a_crash() {
    use support::rtsp_faults::{Fault, FaultyRtsp};
    let s = faces_sandbox();
    let raw = s.path().join("pan.h264");
    panned_clip(&raw, 100, "320x240", "baseline");
    let stream = std::fs::read(&raw).unwrap();
    for (fault, expect) in [
        (Fault::NotFound, "no such stream path"),
        (Fault::WrongSdp, "reopening"),
        (Fault::GarbageRtp, "reopening"),
        (Fault::DamagedH264, "skipping a frame"),
    ] {
        let server = FaultyRtsp::start(fault, stream.clone());
        let outpost = Running::spawn(&mut outpost_run(&s, &server.url(), &["camera.stall_secs=2"]));
        outpost.wait_for_log(expect, Duration::from_secs(20));
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill").args(["-TERM", &outpost.child.id().to_string()]).status();
        let (code, stderr) = outpost.wait();
        assert_eq!(code, 0, "{fault:?}: the service stays up and stops cleanly:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{fault:?}:\n{stderr}");
        let summary = stderr.lines().rev().find(|l| l.contains("summary")).unwrap_or_else(|| panic!("{stderr}"));
        let count = |key: &str| -> u64 {
            summary.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap().parse().unwrap()
        };
        assert!(count("capture_errors") + count("frame_errors") > 0, "{fault:?}: errors are counted: {summary}");
    }
}

#[test]
fn three_cameras_in_one_process_one_failing_the_others_unaffected() {
    let s = faces_sandbox();
    let image = scaled_image(s.path(), "astronaut.png", "320x240");
    let mut gate = RtspServer::start(&image, free_port(), &["--size", "320x240", "--fps", "10", "--keyint", "10"]);
    let yard = RtspServer::start(&image, 0, &["--size", "320x240", "--fps", "10", "--keyint", "10"]);
    let dir = s.path().join("frames");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixtures().join("images/coffee.png"), dir.join("a.png")).unwrap();
    s.write(
        "outpost.toml",
        &format!(
            "[run]\nloop = true\n\n[[cameras]]\nname = \"gate\"\nsource = \"{}\"\nmax_fps = 4\n\n\
             [[cameras]]\nname = \"yard\"\nsource = \"{}\"\nmax_fps = 4\n\n\
             [[cameras]]\nname = \"folder\"\nsource = \"dir:{}\"\nmax_fps = 4\nconfidence = 0.9\n",
            gate.url(""),
            yard.url(""),
            dir.display()
        ),
    );
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache"));
    cmd.args(["--set", "run.model=faces", "--set", "camera.reopen_secs=1", "--set", "run.stats_interval_secs=0"]);
    cmd.args(["run", "--allow-volatile-cache", "--manifest"]).arg(s.path().join("models.toml"));
    let outpost = Running::spawn(&mut cmd);
    let wait = Duration::from_secs(30);
    let seen = |outpost: &Running, n: usize| {
        let mut per_camera = std::collections::HashMap::<String, usize>::new();
        for _ in 0..n {
            let line = outpost.line(wait);
            *per_camera.entry(line["camera"].as_str().unwrap().to_string()).or_default() += 1;
            if line["camera"] == "gate" || line["camera"] == "yard" {
                assert!(line["source"].as_str().unwrap().starts_with("rtsp://127.0.0.1:"), "{line}");
                assert_eq!(faces(&line).len(), 1, "{line}");
            } else {
                assert_eq!(line["source"], format!("dir:{}", dir.display()));
            }
        }
        per_camera
    };
    let before = seen(&outpost, 24);
    for camera in ["gate", "yard", "folder"] {
        assert!(before.get(camera).copied().unwrap_or(0) >= 4, "{camera} starved: {before:?}");
    }
    // One camera's server dies: the other two go on at their pace.
    gate.kill();
    outpost.wait_for_log("reopening", Duration::from_secs(15));
    let after = seen(&outpost, 20);
    assert!(after.get("yard").copied().unwrap_or(0) >= 6, "{after:?}");
    assert!(after.get("folder").copied().unwrap_or(0) >= 6, "{after:?}");
    let _ = Command::new("kill").args(["-TERM", &outpost.child.id().to_string()]).status();
    let (code, stderr) = outpost.wait();
    assert_eq!(code, 0, "{stderr}");
    for camera in ["gate", "yard", "folder"] {
        assert!(stderr.contains(&format!("summary camera={camera}")), "{stderr}");
    }
    assert_eq!(stderr.matches("model `faces`").count(), 1, "the model is loaded once for three cameras:\n{stderr}");
}
