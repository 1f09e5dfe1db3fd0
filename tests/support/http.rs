//! A real HTTP/1.1 server on 127.0.0.1 whose every response is scripted by the test, to inject
//! the faults a field network produces: truncated bodies, resets, stalls, error statuses,
//! redirect loops, lying Content-Length, oversized bodies, ignored ranges, changed ETags.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What happens to the connection after the head and the first `n` body bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    None,
    /// Close cleanly (FIN) after n body bytes.
    CloseAfter(usize),
    /// Abort with a TCP reset after n body bytes.
    ResetAfter(usize),
    /// Send n body bytes, then go silent for the duration, then close.
    StallAfter(usize, Duration),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub cut: Cut,
    /// Omit Content-Length (body delimited by connection close).
    pub no_length: bool,
    /// Send the body in pieces with a pause between them (a slow link).
    pub throttle: Option<(usize, Duration)>,
}

impl Response {
    pub fn status(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new(), cut: Cut::None, no_length: false, throttle: None }
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }

    pub fn cut(mut self, cut: Cut) -> Response {
        self.cut = cut;
        self
    }

    pub fn without_length(mut self) -> Response {
        self.no_length = true;
        self
    }

    pub fn throttled(mut self, chunk: usize, pause: Duration) -> Response {
        self.throttle = Some((chunk, pause));
        self
    }
}

/// Serves `data` as a static file would, with an ETag and Range/If-Range support.
pub fn serve_file(req: &Request, data: &[u8], etag: &str) -> Response {
    let range_start = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    let if_range_ok = req.header("if-range").is_none_or(|v| v == etag);
    match range_start {
        Some(start) if if_range_ok && start < data.len() => Response::status(206)
            .header("ETag", etag)
            .header("Content-Range", &format!("bytes {start}-{}/{}", data.len() - 1, data.len()))
            .body(data[start..].to_vec()),
        Some(start) if if_range_ok && start >= data.len() => {
            Response::status(416).header("Content-Range", &format!("bytes */{}", data.len()))
        }
        _ => Response::status(200).header("ETag", etag).header("Accept-Ranges", "bytes").body(data.to_vec()),
    }
}

type Handler = dyn Fn(&Request, usize) -> Response + Send + Sync;

pub struct Server {
    pub port: u16,
    log: Arc<Mutex<Vec<(Request, u16)>>>,
}

impl Server {
    /// Starts a server; `handler(request, index)` answers the index-th request (from 0).
    pub fn start(handler: impl Fn(&Request, usize) -> Response + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<(Request, u16)>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let server_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, handler) = (server_log.clone(), handler.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Server { port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests received so far, with the status each got.
    pub fn requests(&self) -> Vec<(Request, u16)> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<(Request, u16)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Request { method, path, headers, at: Instant::now() };
    let index = {
        let mut log = log.lock().unwrap();
        log.push((req.clone(), 0));
        log.len() - 1
    };
    let resp = handler(&req, index);
    log.lock().unwrap()[index].1 = resp.status;
    let _ = write_response(stream, &resp);
}

fn write_response(mut stream: TcpStream, resp: &Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} Status\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !resp.no_length && !resp.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let limit = match resp.cut {
        Cut::None => resp.body.len(),
        Cut::CloseAfter(n) | Cut::ResetAfter(n) | Cut::StallAfter(n, _) => n.min(resp.body.len()),
    };
    match resp.throttle {
        Some((chunk, pause)) => {
            for piece in resp.body[..limit].chunks(chunk) {
                stream.write_all(piece)?;
                std::thread::sleep(pause);
            }
        }
        None => stream.write_all(&resp.body[..limit])?,
    }
    stream.flush()?;
    match resp.cut {
        Cut::ResetAfter(_) => {
            // SO_LINGER 0 turns close into a TCP reset.
            rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO))?;
        }
        Cut::StallAfter(_, pause) => std::thread::sleep(pause),
        _ => {}
    }
    Ok(())
}

/// Deterministic pseudo-random bytes for test payloads.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
