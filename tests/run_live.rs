//! `outpost run` with `http.listen`: the live view beside the pipeline, over real HTTP, and the
//! page in a real browser (headless Debian chromium) with the box drawn where the face is.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::serve::{eventually, provisioned_sandbox, request, Serve};
use support::{fixtures, Sandbox};

fn run_with_live_view(sandbox: &Sandbox) -> Serve {
    let images = sandbox.path().join("frames");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(fixtures().join("images/astronaut.png"), images.join("astronaut.png")).unwrap();
    let mut cmd = sandbox.outpost();
    cmd.arg("--cache-dir")
        .arg(sandbox.path().join("cache"))
        .args(["--set", "http.listen=127.0.0.1:0", "--set", "run.loop=true", "--set", "run.max_fps=5", "--set", "http.stream_fps=5"])
        .args(["run", "--model", "faces", "--manifest"])
        .arg(sandbox.path().join("models.toml"))
        .arg("--source")
        .arg(format!("dir:{}", images.display()));
    Serve::spawn(cmd)
}

#[test]
fn the_live_view_serves_frames_predictions_and_metrics() {
    let sandbox = provisioned_sandbox();
    let mut live = run_with_live_view(&sandbox);
    assert!(eventually(Duration::from_secs(60), || live.get("/readiness").status == 200), "never ready: {}", live.log());
    assert_eq!(live.get("/healthz").status, 200);

    let latest = live.get("/latest.json").json();
    let face = latest["predictions"][0].clone();
    assert_eq!(face["class"], "face", "{latest}");
    assert!(latest["frame_id"].as_u64().unwrap() >= 1 && latest["source"].as_str().unwrap().starts_with("dir:"));

    // /latest.jpg: the frame, annotated, with the box's colour on the box's edge.
    let jpg = live.get("/latest.jpg");
    assert_eq!((jpg.status, jpg.header("content-type")), (200, Some("image/jpeg")));
    let img = image::load_from_memory(&jpg.body).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (512, 512));
    let (x1, y1) = ((face["x"].as_f64().unwrap() - face["width"].as_f64().unwrap() / 2.0) as u32, (face["y"].as_f64().unwrap() - face["height"].as_f64().unwrap() / 2.0) as u32);
    let edge = img.get_pixel(x1 + 1, y1 + 20);
    assert!(edge[0] > 200 && edge[1] < 110, "not the box colour at the box's left edge: {edge:?}");

    // The MJPEG stream: multipart parts, each a JPEG.
    let mut s = TcpStream::connect(live.addr).unwrap();
    use std::io::Write;
    s.write_all(b"GET /stream.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.windows(7).filter(|w| w == b"--frame").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got[..200]).into_owned();
    assert!(head.contains("multipart/x-mixed-replace; boundary=frame"), "{head}");
    assert!(got.windows(3).any(|w| w == [0xff, 0xd8, 0xff]), "no JPEG in the stream");
    drop(s);

    let metrics = live.get("/metrics").text();
    for expected in ["outpost_frames_processed_total", "outpost_inference_seconds_count{model=\"faces\"}", "outpost_cache_generation 1", "outpost_process_resident_bytes"] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    let processed: f64 = metrics.lines().find_map(|l| l.strip_prefix("outpost_frames_processed_total ")).unwrap().parse().unwrap();
    assert!(processed >= 1.0);
    let camera: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("outpost_camera_frames_processed_total{camera=\"default\"} "))
        .unwrap_or_else(|| panic!("no per-camera counter:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(camera >= 1.0);
    let stats = live.get("/stats.json").json();
    assert_eq!(stats["model"], "faces");
    assert_eq!(request(live.addr, "POST", "/", &[], b"").status, 405);
    assert_eq!(live.get("/nope").status, 404);
    live.assert_alive();
}

#[test]
fn the_live_page_shows_the_box_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| Path::new("/usr/bin").join(c).exists())
        .expect("chromium is missing: scripts/setup-debian.sh installs it");
    let sandbox = provisioned_sandbox();
    let live = run_with_live_view(&sandbox);
    assert!(eventually(Duration::from_secs(60), || live.get("/readiness").status == 200), "never ready: {}", live.log());
    let face = live.get("/latest.json").json()["predictions"][0].clone();

    // Kept for people: the screenshot's path is printed (CI keeps it as an artefact).
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-view");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("live-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--window-size=900,700", "--timeout=6000"])
        .arg(format!("--user-data-dir={}", sandbox.path().join("chromium").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://{}/", live.addr))
        .env("HOME", sandbox.path())
        .output()
        .expect("chromium runs");
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    println!("live view screenshot: {}", shot.display());

    let page = image::open(&shot).unwrap().to_rgb8();
    let frame = image::load_from_memory(&live.get("/latest.jpg").body).unwrap().to_rgb8();
    // Where the frame is on the page: the offset at which the page matches the frame best.
    let diff_at = |ox: u32, oy: u32| -> f64 {
        let mut total = 0u64;
        let mut n = 0u64;
        for y in (0..frame.height()).step_by(16) {
            for x in (0..frame.width()).step_by(16) {
                let (Some(a), b) = (page.get_pixel_checked(ox + x, oy + y), frame.get_pixel(x, y)) else { return f64::MAX };
                total += (0..3).map(|c| (a[c] as i32 - b[c] as i32).unsigned_abs() as u64).sum::<u64>();
                n += 3;
            }
        }
        total as f64 / n as f64
    };
    let (mut best, mut at) = (f64::MAX, (0, 0));
    for oy in 0..200 {
        for ox in 0..200 {
            let d = diff_at(ox, oy);
            if d < best {
                (best, at) = (d, (ox, oy));
            }
        }
    }
    assert!(best < 12.0, "the frame is not on the page (best mean difference {best:.1}); see {}", shot.display());
    // The box's edges on the page are box-coloured, where the prediction puts them.
    let (x, y, w, h) = ["x", "y", "width", "height"].map(|k| face[k].as_f64().unwrap()).into();
    let px = |v: f64, o: u32| v.round() as u32 + o;
    let (x1, y1, x2, y2) = (px(x - w / 2.0, at.0), px(y - h / 2.0, at.1), px(x + w / 2.0, at.0), px(y + h / 2.0, at.1));
    let mut edge = Vec::new();
    for yy in y1 + 4..y2 - 4 {
        edge.push((x1 + 1, yy));
        edge.push((x2 - 1, yy));
    }
    for xx in x1 + 4..x2 - 4 {
        edge.push((xx, y2 - 1));
    }
    let hits = edge.iter().filter(|&&(px, py)| is_box_coloured(page.get_pixel(px, py))).count();
    assert!(hits * 10 >= edge.len() * 8, "{hits} of {} edge pixels are box-coloured at frame offset {at:?}; see {}", edge.len(), shot.display());
    // And not everywhere: the middle of the face is not.
    let inside = (x1 + 10..x2 - 10).filter(|&px| is_box_coloured(page.get_pixel(px, (y1 + y2) / 2))).count();
    assert!(inside * 10 < (x2 - x1) as usize, "the box colour fills the face; see {}", shot.display());
}

fn is_box_coloured(p: &image::Rgb<u8>) -> bool {
    p[0] >= 200 && p[1] <= 110 && p[2] <= 110
}
