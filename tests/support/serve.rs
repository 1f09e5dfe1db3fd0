//! `outpost serve` as a child process on 127.0.0.1, and a plain HTTP/1.1 client for talking to
//! it byte by byte (the abuse tests need exact control over what goes on the wire).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{fixtures, Sandbox};

/// The fixture models: CenterFace (`faces`), the random-weight YOLOv8n (`yolo`, 640x640), and
/// the tiny colour classifier (`colour`, classes red/green/blue).
pub fn fixture_manifest(sandbox: &Sandbox) -> PathBuf {
    let f = fixtures();
    let sum = |name: &str| -> (String, u64) {
        let bytes = std::fs::read(f.join(name)).unwrap();
        (super::http::sha256_hex(&bytes), bytes.len() as u64)
    };
    // allow_http: the Roboflow stand-in of the on-demand tests is plain HTTP on 127.0.0.1.
    let mut text = String::from("version = 1\nallow_http = true\n");
    for (id, file, extra) in [
        ("faces", "centerface.onnx", "family = \"centerface\"\nclasses = [\"face\"]\n"),
        ("yolo", "yolov8n_random.onnx", "family = \"yolov8\"\ninput = [640, 640]\n"),
        ("colour", "crafted/colour_classifier.onnx", "family = \"classification\"\nclasses = [\"red\", \"green\", \"blue\"]\n"),
    ] {
        let (sha, size) = sum(file);
        text += &format!(
            "[[models]]\nid = \"{id}\"\nsource = \"file://{}\"\nsha256 = \"{sha}\"\nsize = {size}\n{extra}",
            f.join(file).display()
        );
    }
    sandbox.write("models.toml", &text)
}

/// Provisions the fixture manifest into `<sandbox>/cache`.
pub fn provisioned_sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    let manifest = fixture_manifest(&sandbox);
    let out = super::run(sandbox.outpost().arg("--cache-dir").arg(sandbox.path().join("cache")).arg("provision").arg("--manifest").arg(&manifest));
    assert_eq!(out.code, 0, "provision: {}", out.stderr);
    sandbox
}

pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `outpost --cache-dir <sandbox>/cache serve --listen 127.0.0.1:0` with `settings`
    /// (`--set KEY=VALUE`) and waits for its listening line.
    pub fn start(sandbox: &Sandbox, settings: &[&str]) -> Serve {
        let mut cmd = sandbox.outpost();
        cmd.arg("--cache-dir").arg(sandbox.path().join("cache"));
        Serve::start_with(cmd, settings)
    }

    pub fn start_with(mut cmd: Command, settings: &[&str]) -> Serve {
        for s in settings {
            cmd.args(["--set", s]);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        Serve::spawn(cmd)
    }

    /// Spawns `cmd` (any outpost command that logs `... on http://ADDR ...`) and waits for that line.
    pub fn spawn(mut cmd: Command) -> Serve {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("outpost serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("on http://").nth(1) {
                    if let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse::<SocketAddr>().ok()) {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("outpost serve did not start: {}", stderr.lock().unwrap());
            }
        };
        Serve { child, addr, stderr }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        request(self.addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
    }

    /// Still running (not crashed), and answering.
    pub fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "outpost serve exited: {}", self.log());
        assert_eq!(self.get("/healthz").status, 200);
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_else(|| panic!("no message: {}", self.text())).to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        head += &format!("{n}: {v}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before taking the whole body.
    let _ = stream.write_all(body);
    read_reply(&mut stream)
}

/// Reads one whole response from a connection the server closes after it.
pub fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    Reply { status, headers, body: raw[end + 4..].to_vec() }
}

/// `{"model_id": id, "image": {"type": "base64", "value": ...}}` for an image file.
pub fn infer_body(model: &str, image: &Path) -> serde_json::Value {
    serde_json::json!({"model_id": model, "image": {"type": "base64", "value": b64(&std::fs::read(image).unwrap())}})
}

pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unb64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Waits until `f` holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub const ROBOFLOW_KEY: &str = "rf_live_SERVE_KEY_51e2";

/// A stand-in of Roboflow's model API on 127.0.0.1, as in tests/provision_roboflow.rs: `/ort/
/// faces-demo/1` answers with CenterFace's weights, `/ort/coco/3` (the `yolov8n-640` alias) with
/// the random YOLOv8n; requests without [`ROBOFLOW_KEY`] get 401.
pub fn roboflow_standin() -> super::http::Server {
    roboflow_standin_throttled(None)
}

/// [`roboflow_standin`] sending the weights `chunk` bytes per `pause` (a slow link).
pub fn roboflow_standin_throttled(throttle: Option<(usize, Duration)>) -> super::http::Server {
    use super::http::{serve_file, Response};
    let centerface = std::fs::read(fixtures().join("centerface.onnx")).unwrap();
    let yolo = std::fs::read(fixtures().join("yolov8n_random.onnx")).unwrap();
    super::http::Server::start(move |req, _| {
        let host = req.header("host").unwrap_or("").to_string();
        if let Some(rest) = req.path.strip_prefix("/ort/") {
            if !req.path.contains(&format!("api_key={ROBOFLOW_KEY}")) {
                return Response::status(401).body(b"{\"error\":\"unauthorized\"}".to_vec());
            }
            let (file, model_type, classes) = match rest.split('?').next().unwrap_or("") {
                "faces-demo/1" => ("centerface", "centerface", "[\"face\"]"),
                "coco/3" => ("yolo", "yolov8n", "[]"),
                _ => return Response::status(404).body(b"{\"error\":\"no such model\"}".to_vec()),
            };
            let body = format!(
                r#"{{"ort":{{"model":"http://{host}/weights/{file}.onnx?X-Amz-Signature=tok","classes":{classes},"modelType":"{model_type}","type":"object-detection"}}}}"#
            );
            return Response::status(200).header("Content-Type", "application/json").body(body.into_bytes());
        }
        let response = match req.path.split('?').next() {
            Some("/weights/centerface.onnx") => serve_file(req, &centerface, "\"c\""),
            Some("/weights/yolo.onnx") => serve_file(req, &yolo, "\"y\""),
            _ => return Response::status(404),
        };
        match throttle {
            Some((chunk, pause)) => response.throttled(chunk, pause),
            None => response,
        }
    })
}

/// `outpost` for `sandbox` pointed at the stand-in (API base, key, no download retries).
pub fn with_roboflow(sandbox: &Sandbox, rf: &super::http::Server) -> Command {
    let mut cmd = sandbox.outpost();
    cmd.arg("--cache-dir")
        .arg(sandbox.path().join("cache"))
        .env("OUTPOST_ROBOFLOW_API_BASE", rf.url(""))
        .env("ROBOFLOW_API_KEY", ROBOFLOW_KEY)
        .env("OUTPOST_DOWNLOAD_RETRIES", "0");
    cmd
}

/// The fixture models plus two Roboflow-sourced ones, provisioned through the stand-in:
/// `faces-rf` (`roboflow:faces-demo/1`) and `coco` (`roboflow:yolov8n-640`, i.e. `coco/3`).
pub fn roboflow_sandbox(rf: &super::http::Server) -> Sandbox {
    let sandbox = Sandbox::new();
    let manifest = fixture_manifest(&sandbox);
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text += "[[models]]\nid = \"faces-rf\"\nsource = \"roboflow:faces-demo/1\"\nfamily = \"centerface\"\n";
    text += "[[models]]\nid = \"coco\"\nsource = \"yolov8n-640\"\nfamily = \"yolov8\"\ninput = [640, 640]\n";
    std::fs::write(&manifest, text).unwrap();
    let out = super::run(with_roboflow(&sandbox, rf).arg("provision").arg("--manifest").arg(&manifest));
    assert_eq!(out.code, 0, "provision: {}", out.stderr);
    sandbox
}
