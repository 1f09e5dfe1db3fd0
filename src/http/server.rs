//! A small blocking HTTP/1.1 server: one thread per connection, keep-alive, and a limit on
//! everything a client controls (connections, header bytes and count, body size, and the time a
//! client may take to send headers or a body, so slow clients cannot pin threads).
//!
//! Why not a framework: the request parser is `httparse` (hyper's, already in the binary through
//! ureq), and the rest is a few hundred lines we can bound exactly. An async stack (hyper+tokio)
//! would add ~1 MiB to a static binary that has to stay under 16 MiB, for no gain at the
//! dozens of connections an appliance sees; a blocking server also lets a request run inference
//! on its own thread without a second pool.

use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a client may use. Every limit answers with a status and is reported to the handler.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// Time for a whole request head once its first byte arrived (slowloris).
    pub header_timeout: Duration,
    /// Time for a whole body once the head is in.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may sit idle before the next request.
    pub idle_timeout: Duration,
    /// Request bodies held in memory at once, all connections together: slow uploads of large
    /// bodies on many connections must not add up to more than the board has.
    pub max_body_bytes_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 128,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15),
            max_body_bytes_in_flight: 128 * 1024 * 1024,
        }
    }
}

/// A shared allowance of bytes (request bodies, decoded images): taken before the memory is
/// used, given back when the permit drops.
#[derive(Debug)]
pub struct Budget {
    left: AtomicUsize,
}

pub struct Permit<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget { left: AtomicUsize::new(bytes) }
    }

    /// `bytes` of the allowance, or `None` when that much is not left now.
    pub fn take(&self, bytes: usize) -> Option<Permit<'_>> {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(bytes))
            .ok()
            .map(|_| Permit { budget: self, bytes })
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::SeqCst);
    }
}

/// At most this many headers; more is a 431, as is a head over `max_header_bytes`.
const MAX_HEADERS: usize = 64;

pub struct Request {
    pub method: String,
    /// The path without the query, percent-decoding left to the routes.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// An HTTP/1.0 request (no keep-alive unless asked for).
    pub http10: bool,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A query parameter, `+` and `%XX` decoded. The first one wins.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Writes a streamed body until it ends or the client leaves.
pub type StreamBody = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// A response body: bytes, or a writer that streams until the client leaves (MJPEG).
pub enum Body {
    Bytes(Vec<u8>),
    Stream(StreamBody),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response { status, headers: vec![("Content-Type", content_type.to_string())], body: Body::Bytes(body) }
    }

    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        // Serialising our own response types cannot fail; an empty object is the safe fallback.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response::new(status, "application/json", body)
    }

    /// `{"message": ...}`, the error shape every Roboflow client reads.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "message": message.into() }))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Why the server answered without asking the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    TooManyConnections,
    HeaderTooLarge,
    BadRequest,
    BodyTooLarge,
    /// The bodies of other requests use the memory set aside for bodies.
    BodiesInFlight,
    LengthRequired,
    Timeout,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::TooManyConnections => "connections",
            Rejection::HeaderTooLarge => "header_size",
            Rejection::BadRequest => "malformed",
            Rejection::BodyTooLarge => "body_size",
            Rejection::BodiesInFlight => "body_memory",
            Rejection::LengthRequired => "length_required",
            Rejection::Timeout => "timeout",
        }
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> Response;
    /// Counts a request refused by a limit (for `/metrics`).
    fn rejected(&self, why: Rejection);
}

/// Accepts connections until `stop` is set (the caller wakes the accept with [`wake`]).
pub fn serve(listener: TcpListener, handler: Arc<dyn Handler>, limits: Limits, stop: Arc<AtomicBool>) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Budget::new(limits.max_body_bytes_in_flight));
    let limits = Arc::new(limits);
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            // Out of file descriptors, a connection reset before accept: keep serving.
            Err(e) => {
                log::debug!("accept: {e}");
                if e.raw_os_error() == Some(24) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            handler.rejected(Rejection::TooManyConnections);
            refuse(stream, &limits);
            continue;
        }
        let (handler, limits, open, bodies) = (handler.clone(), limits.clone(), open.clone(), bodies.clone());
        let spawned = std::thread::Builder::new().name("http".into()).spawn(move || {
            connection(stream, &*handler, &limits, &bodies);
            open.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
        }
    }
    Ok(())
}

/// Unblocks a [`serve`] waiting in accept, after `stop` was set.
pub fn wake(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
}

fn refuse(mut stream: TcpStream, limits: &Limits) {
    let _ = stream.set_write_timeout(Some(limits.header_timeout));
    let resp = Response::error(429, format!("too many connections (serve.max_connections = {}); retry shortly", limits.max_connections))
        .with_header("Retry-After", "1");
    let _ = write_response(&mut stream, resp, false, false);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Requests on one connection until the client closes it, idles out or breaks a limit.
fn connection(stream: TcpStream, handler: &dyn Handler, limits: &Limits, bodies: &Budget) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.body_timeout));
    let mut reader = match stream.try_clone() {
        Ok(r) => r,
        Err(_) => return,
    };
    let mut writer = stream;
    // Bytes read beyond the previous request (pipelining).
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let outcome = read_request(&mut reader, &mut buf, peer, limits, bodies, &mut writer);
        let (req, _body_permit) = match outcome {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(why) => {
                handler.rejected(why);
                let resp = match why {
                    Rejection::HeaderTooLarge => Response::error(431, format!(
                        "request head too large (limit {} bytes, {MAX_HEADERS} headers)", limits.max_header_bytes)),
                    Rejection::BodyTooLarge => Response::error(413, format!(
                        "request body too large (serve.max_body_mb allows {} bytes)", limits.max_body_bytes)),
                    Rejection::BodiesInFlight => Response::error(429, "the server is receiving other large requests; retry shortly")
                        .with_header("Retry-After", "1"),
                    Rejection::LengthRequired => Response::error(411, "send the body with a Content-Length (chunked bodies are not accepted)"),
                    Rejection::Timeout => Response::error(408, "request not received in time"),
                    Rejection::BadRequest | Rejection::TooManyConnections => Response::error(400, "malformed HTTP request"),
                };
                let _ = write_response(&mut writer, resp, false, false);
                break;
            }
        };
        let keep_alive = wants_keep_alive(&req);
        let resp = handler.handle(&req);
        let head_only = req.method == "HEAD";
        if write_response(&mut writer, resp, keep_alive, head_only).is_err() || !keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

fn wants_keep_alive(req: &Request) -> bool {
    let conn = req.header("connection").unwrap_or("").to_ascii_lowercase();
    if conn.contains("close") {
        return false;
    }
    !req.http10 || conn.contains("keep-alive")
}

/// One request (with the permit for its body's memory), or `None` when the client closed or
/// idled out between requests.
fn read_request<'b>(
    reader: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    limits: &Limits,
    bodies: &'b Budget,
    writer: &mut TcpStream,
) -> Result<Option<(Request, Option<Permit<'b>>)>, Rejection> {
    // 1. The head: the first byte within the idle timeout, all of it within the header timeout.
    let mut head_deadline: Option<Instant> = (!buf.is_empty()).then(|| Instant::now() + limits.header_timeout);
    let idle_deadline = Instant::now() + limits.idle_timeout;
    let mut chunk = [0u8; 8192];
    let (head_len, mut req) = loop {
        if !buf.is_empty() {
            if let Some(head) = parse_head(buf, peer, limits.max_header_bytes)? {
                break head;
            }
        }
        let deadline = head_deadline.unwrap_or(idle_deadline);
        let n = match read_until(reader, &mut chunk, deadline) {
            Ok(0) => {
                return if buf.is_empty() { Ok(None) } else { Err(Rejection::BadRequest) };
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return if head_deadline.is_none() { Ok(None) } else { Err(Rejection::Timeout) };
            }
            Err(_) => return Ok(None),
        };
        buf.extend_from_slice(&chunk[..n]);
        head_deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
    };
    buf.drain(..head_len);

    // 2. The body, by Content-Length only.
    if req.header("transfer-encoding").is_some() {
        return Err(Rejection::LengthRequired);
    }
    let length = match req.header("content-length") {
        None => 0,
        Some(v) => v.trim().parse::<usize>().map_err(|_| Rejection::BadRequest)?,
    };
    if length > limits.max_body_bytes {
        return Err(Rejection::BodyTooLarge);
    }
    let permit = match length {
        0 => None,
        n => Some(bodies.take(n).ok_or(Rejection::BodiesInFlight)?),
    };
    if length > buf.len()
        && req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return Ok(None);
    }
    let deadline = Instant::now() + limits.body_timeout;
    while buf.len() < length {
        match read_until(reader, &mut chunk, deadline) {
            Ok(0) => return Err(Rejection::BadRequest),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Rejection::Timeout),
            Err(_) => return Ok(None),
        }
    }
    req.body = buf.drain(..length).collect();
    Ok(Some((req, permit)))
}

/// The head of a request at the start of `buf`: its length and the request without its body,
/// `None` while incomplete. Public for the fuzz target `http_request`.
pub fn parse_head(buf: &[u8], peer: SocketAddr, max_header_bytes: usize) -> Result<Option<(usize, Request)>, Rejection> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > max_header_bytes => Err(Rejection::HeaderTooLarge),
        Ok(httparse::Status::Complete(len)) => {
            let target = parsed.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let req = Request {
                method: parsed.method.unwrap_or("GET").to_string(),
                path: path.to_string(),
                query: query.to_string(),
                headers,
                body: Vec::new(),
                peer,
                http10: parsed.version == Some(0),
            };
            Ok(Some((len, req)))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_header_bytes => Err(Rejection::HeaderTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::HeaderTooLarge),
        Err(_) => Err(Rejection::BadRequest),
    }
}

/// One read that gives up at `deadline` (as `TimedOut`).
fn read_until(stream: &mut TcpStream, chunk: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    match stream.read(chunk) {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Err(io::ErrorKind::TimedOut.into()),
        other => other,
    }
}

/// Writes `resp`; for a HEAD request (`head_only`) the head a GET gets, without the body.
fn write_response(stream: &mut TcpStream, resp: Response, keep_alive: bool, head_only: bool) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(16 * 1024, stream);
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    for (name, value) in &resp.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    match resp.body {
        Body::Bytes(body) => {
            write!(out, "Content-Length: {}\r\n", body.len())?;
            write!(out, "Connection: {}\r\n\r\n", if keep_alive { "keep-alive" } else { "close" })?;
            if !head_only {
                out.write_all(&body)?;
            }
            out.flush()
        }
        Body::Stream(write_body) => {
            write!(out, "Connection: close\r\n\r\n")?;
            out.flush()?;
            if head_only {
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
            write_body(&mut out)?;
            out.flush()?;
            // A stream ends the connection: its length was never announced.
            Err(io::ErrorKind::ConnectionAborted.into())
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_permits_add_up_and_come_back() {
        let budget = Budget::new(10);
        let a = budget.take(6).unwrap();
        assert!(budget.take(5).is_none());
        let b = budget.take(4).unwrap();
        drop(a);
        assert!(budget.take(6).is_some());
        drop(b);
        assert!(budget.take(10).is_some());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }
}
