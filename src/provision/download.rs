//! The download engine: one ureq agent, streaming into a partial file while hashing, resuming
//! with `Range` + `If-Range`, bounded retries with backoff and jitter, `Retry-After`, mirrors.
//!
//! Nothing leaves this module unverified: a fetch returns only after the whole file's sha256
//! matched (or, for trust-on-first-use sources, was computed over the complete file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cache::{copy_hashing, hex, write_atomic, Cache};
use super::manifest::Source;
use super::progress::Progress;
use crate::redact::redact_url;

/// The download settings are the validated `download.*` configuration keys.
pub use crate::config::Download as Settings;

/// What to fetch: the expected digest and size, when the manifest pins them.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    pub id: &'a str,
    pub sha256: Option<&'a str>,
    pub size: Option<u64>,
    /// Most bytes accepted when `size` is not pinned (`download.max_*`).
    pub cap: u64,
}

impl Wanted<'_> {
    /// Name of the partial file: the digest when known (a splice would fail the hash anyway),
    /// else derived from the id *and* the URL, so a partial never continues with another file's
    /// bytes (a new model version, or the model's environment.json).
    fn partial_key(&self, origin: &str) -> String {
        match self.sha256 {
            Some(sha) => sha.to_string(),
            None => {
                let named = format!("{}\n{origin}", self.id);
                format!("tofu-{}", hex(ring::digest::digest(&ring::digest::SHA256, named.as_bytes()).as_ref()))
            }
        }
    }
}

/// A verified file, ready to be installed as a blob.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Bytes that came over the network in this run (0 for a sideloaded file).
    pub transferred: u64,
    pub resumed: bool,
    /// Copied from a `file:` source (its bytes are not network traffic).
    pub sideloaded: bool,
}

/// Why one attempt failed, and whether trying the same source again can help.
#[derive(Debug)]
enum AttemptError {
    Transient { message: String, retry_after: Option<Duration> },
    Permanent(String),
}

use AttemptError::{Permanent, Transient};

fn transient(message: impl Into<String>) -> AttemptError {
    Transient { message: message.into(), retry_after: None }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Validator {
    etag: Option<String>,
    last_modified: Option<String>,
}

pub struct Downloader {
    agent: ureq::Agent,
    settings: Settings,
    rng: std::cell::Cell<u64>,
    /// No attempt starts, and no wait runs, past this (the unit's start timeout must not be
    /// outlasted by retries against misbehaving servers).
    deadline: Option<std::time::Instant>,
}

impl Downloader {
    /// `https_only`: every request, redirects included, must stay on https (the manifest's
    /// `allow_http = false`); a redirect to http:// is refused, not followed.
    pub fn new(settings: Settings, https_only: bool) -> anyhow::Result<Downloader> {
        let tls = super::tls::client_config(settings.ca_file.as_deref())?;
        let config = ureq::Agent::config_builder()
            .https_only(https_only)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_recv_response(Some(settings.read_timeout))
            .timeout_per_read(Some(settings.read_timeout))
            .timeout_global(Some(settings.overall_timeout))
            .http_status_as_error(false)
            .max_redirects(5)
            .user_agent(format!("outpost/{}", env!("CARGO_PKG_VERSION")))
            .build();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Ok(Downloader { agent: super::tls::agent(config, tls), settings, rng: std::cell::Cell::new(seed | 1), deadline: None })
    }

    pub fn with_deadline(self, deadline: std::time::Instant) -> Downloader {
        Downloader { deadline: Some(deadline), ..self }
    }

    /// `Err` once the deadline has passed.
    fn within_deadline(&self) -> Result<(), String> {
        match self.deadline {
            Some(d) if std::time::Instant::now() >= d => Err(
                "the provisioning deadline (provision.deadline_secs) has passed; the rest waits for the next run".into(),
            ),
            _ => Ok(()),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Attempts per source (the first plus the retries).
    pub fn attempts(&self) -> u32 {
        self.settings.retries + 1
    }

    /// Fetches `wanted` from the first candidate that delivers it, retrying transient failures.
    pub fn fetch(&self, cache: &Cache, wanted: &Wanted<'_>, candidates: &[Source]) -> anyhow::Result<Fetched> {
        let mut failures = Vec::new();
        for source in candidates {
            match self.fetch_from(cache, wanted, source) {
                Ok(fetched) => return Ok(fetched),
                Err(message) => {
                    log::warn!("{}: {message}", wanted.id);
                    failures.push(message);
                }
            }
        }
        anyhow::bail!("every source failed:\n  {}", failures.join("\n  "))
    }

    fn fetch_from(&self, cache: &Cache, wanted: &Wanted<'_>, source: &Source) -> Result<Fetched, String> {
        let url = match source {
            Source::File(path) => return sideload(cache, wanted, path),
            Source::Url(url) => url,
            Source::Roboflow(_) => return Err("roboflow sources must be resolved to a URL first".into()),
        };
        let attempts = self.settings.retries + 1;
        let mut last = String::new();
        for attempt in 1..=attempts {
            self.within_deadline()?;
            match self.attempt(cache, wanted, url) {
                Ok(fetched) => return Ok(fetched),
                Err(Permanent(message)) => return Err(message),
                Err(Transient { message, retry_after }) => {
                    last = message;
                    if attempt == attempts {
                        break;
                    }
                    let mut wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    if let Some(deadline) = self.deadline {
                        wait = wait.min(deadline.saturating_duration_since(std::time::Instant::now()));
                    }
                    log::warn!(
                        "{}: {} (attempt {attempt}/{attempts}); retrying in {:.1}s",
                        wanted.id,
                        last,
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                }
            }
        }
        Err(format!("gave up after {attempts} attempts: {last}"))
    }

    /// Exponential backoff with +-50% jitter, so a fleet rebooting together does not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff_initial.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1) as i32);
        let capped = base.min(self.settings.backoff_max.as_secs_f64());
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let jitter = 0.5 + (x % 1000) as f64 / 1000.0;
        Duration::from_secs_f64(capped * jitter)
    }

    fn attempt(&self, cache: &Cache, wanted: &Wanted<'_>, url: &str) -> Result<Fetched, AttemptError> {
        let key = wanted.partial_key(url);
        let part = cache.partial_path(&key);
        let meta = cache.partial_meta_path(&key);
        let io_err = |what: &str, e: io::Error| Permanent(format!("{what} {}: {e}", part.display()));
        let mut have = fs::metadata(&part).map_or(0, |m| m.len());
        if wanted.size.is_some_and(|size| have > size) {
            have = 0;
        }
        let validator: Validator = if have > 0 { read_validator(&meta) } else { Validator::default() };
        // No digest will catch a splice of an unpinned file: resume it only under a strong ETag
        // (RFC 9110 If-Range), which the server must match or send the whole file.
        if have > 0 && wanted.sha256.is_none() && !validator.etag.as_deref().is_some_and(|e| !e.starts_with("W/")) {
            log::info!("{}: partial download has no strong validator; starting over", wanted.id);
            have = 0;
        }
        if wanted.size == Some(have) && have > 0 {
            // A complete partial from an earlier run that stopped before installing it.
            return finish(&part, &meta, wanted, 0, true, None);
        }

        let shown = redact_url(url);
        // Bytes are stored exactly as sent: a compressed body would be cached as the model.
        let mut request = self.agent.get(url).header("Accept-Encoding", "identity");
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
            let strong_etag = validator.etag.as_ref().filter(|e| !e.starts_with("W/"));
            if let Some(v) = strong_etag.or(validator.last_modified.as_ref()) {
                request = request.header("If-Range", v.as_str());
            }
        }
        let response = request.call().map_err(|e| classify_ureq_error(&shown, e))?;
        log_redirect(wanted.id, url, &response);
        let status = response.status().as_u16();
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
        };
        if let Some(encoding) = header("content-encoding").filter(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return Err(Permanent(format!(
                "{shown}: the server sent a `{encoding}`-encoded body (Content-Encoding) although outpost asks for \
                 identity; outpost stores the bytes as sent, so configure the server to send this file uncompressed"
            )));
        }
        let (resume_from, resumed) = match status {
            206 => match parse_content_range_start(header("content-range").as_deref()) {
                Some(start) if start == have => (have, true),
                _ => (0, false), // Not the range we asked for: start over below.
            },
            200 => (0, false),
            416 => {
                remove_partial(&part, &meta);
                return Err(transient(format!("{shown}: range not satisfiable; restarting from zero")));
            }
            408 | 429 | 500..=599 => {
                let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                return Err(Transient {
                    message: format!("{shown}: HTTP {status}"),
                    // A server may ask for any wait; the unit's own cap decides.
                    retry_after: retry_after.map(|s| Duration::from_secs(s).min(self.settings.backoff_max)),
                });
            }
            _ => return Err(Permanent(format!("{shown}: HTTP {status}"))),
        };
        if status == 206 && !resumed {
            remove_partial(&part, &meta);
            return Err(transient(format!("{shown}: server answered a different range; restarting")));
        }
        if have > 0 && !resumed {
            log::info!("{}: server did not resume (HTTP {status}); downloading from the start", wanted.id);
        }
        let declared_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        if wanted.size.is_none() {
            if let Some(declared) = declared_length.filter(|d| resume_from + d > wanted.cap) {
                remove_partial(&part, &meta);
                return Err(Permanent(format!(
                    "{shown}: the server announces {} bytes, more than the {} allowed for an unpinned download \
                     (download.max_unpinned_mb / download.max_environment_mb)",
                    resume_from + declared,
                    wanted.cap
                )));
            }
        }
        if wanted.size.is_none() {
            // No size in the manifest to check free space against before the fetch: check what
            // the server announces (or the cap) now, before writing.
            let needed = declared_length.unwrap_or(wanted.cap);
            check_space(cache, needed).map_err(|m| Permanent(format!("{shown}: {m}")))?;
        }
        let remaining = wanted.size.map(|s| s - resume_from);
        if let (Some(expected), Some(declared)) = (remaining, header("content-length").and_then(|v| v.parse::<u64>().ok())) {
            if declared > expected {
                return Err(Permanent(format!(
                    "{shown}: server sends {declared} bytes but the manifest size leaves {expected}"
                )));
            }
        }
        if !resumed {
            let v = Validator { etag: header("etag"), last_modified: header("last-modified") };
            let json = serde_json::to_vec(&v).unwrap_or_default();
            let name = meta.file_name().and_then(|n| n.to_str()).unwrap_or("partial.json");
            write_atomic(meta.parent().unwrap_or(Path::new(".")), name, &json).map_err(|e| io_err("writing", e))?;
        }

        let mut file = OpenOptions::new().create(true).write(true).truncate(false).open(&part)
            .map_err(|e| io_err("opening", e))?;
        file.set_len(resume_from).map_err(|e| io_err("truncating", e))?;
        file.seek(SeekFrom::Start(resume_from)).map_err(|e| io_err("seeking", e))?;
        // Hash while streaming (after re-hashing what a resumed partial already holds), so the
        // file is not read back once more at the end.
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        if resume_from > 0 {
            hash_prefix(&part, resume_from, &mut hasher).map_err(|e| io_err("reading", e))?;
        }
        let mut progress = Progress::new(wanted.id, wanted.size, resume_from);
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = resume_from;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    progress.finish();
                    return Err(transient(format!("{shown}: body interrupted after {done} bytes: {e}")));
                }
            };
            if wanted.size.is_some_and(|size| done + n as u64 > size) {
                progress.finish();
                remove_partial(&part, &meta);
                return Err(Permanent(format!(
                    "{shown}: body is larger than the manifest size {} bytes; refusing it",
                    wanted.size.unwrap_or(0)
                )));
            }
            if wanted.size.is_none() && done + n as u64 > wanted.cap {
                progress.finish();
                remove_partial(&part, &meta);
                return Err(Permanent(format!(
                    "{shown}: body exceeds the {} bytes allowed for an unpinned download; refused and discarded \
                     (download.max_unpinned_mb / download.max_environment_mb)",
                    wanted.cap
                )));
            }
            file.write_all(&buf[..n]).map_err(|e| io_err("writing", e))?;
            hasher.update(&buf[..n]);
            done += n as u64;
            progress.update(done);
        }
        progress.finish();
        drop(file);
        if let Some(size) = wanted.size {
            if done < size {
                return Err(transient(format!("{shown}: body ended after {done} of {size} bytes")));
            }
        }
        let digest = Some((hex(hasher.finish().as_ref()), done));
        finish(&part, &meta, wanted, done - resume_from, resumed, digest)
    }
}

/// Redirects are logged at info (the final URL, secrets masked): where the bytes came from matters.
pub fn log_redirect(id: &str, requested: &str, response: &ureq::http::Response<ureq::Body>) {
    use ureq::ResponseExt;
    let final_uri = response.get_uri();
    if requested.parse::<ureq::http::Uri>().ok().as_ref() != Some(final_uri) {
        let final_uri = final_uri.to_string();
        log::info!("{id}: {} redirected to {}", redact_url(requested), redact_url(&final_uri));
    }
}

/// `Err` when the cache's filesystem has less than `needed` bytes (plus 8 MiB) free.
fn check_space(cache: &Cache, needed: u64) -> Result<(), String> {
    let Ok(stat) = rustix::fs::statvfs(cache.root()) else {
        return Ok(());
    };
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < needed.saturating_add(8 << 20) {
        return Err(format!(
            "not enough free space in {} for this download ({needed} bytes announced or allowed, {available} free)",
            cache.root().display()
        ));
    }
    Ok(())
}

fn hash_prefix(path: &Path, len: u64, hasher: &mut ring::digest::Context) -> io::Result<()> {
    copy_hashing(&mut File::open(path)?.take(len), &mut io::sink(), hasher).map(|_| ())
}

/// Checks the complete partial file's digest (`digest`, when computed while streaming, else
/// by hashing the file); a mismatch discards it.
fn finish(
    part: &Path,
    meta: &Path,
    wanted: &Wanted<'_>,
    transferred: u64,
    resumed: bool,
    digest: Option<(String, u64)>,
) -> Result<Fetched, AttemptError> {
    let (sha256, size) = match digest {
        Some(d) => d,
        None => super::cache::hash_file(part).map_err(|e| Permanent(format!("hashing {}: {e}", part.display())))?,
    };
    if let Some(expected) = wanted.sha256 {
        if sha256 != expected {
            remove_partial(part, meta);
            let message = format!("content sha256 {sha256} does not match the manifest's {expected}; discarded");
            // After a resume the two halves may come from different versions: retry from zero.
            return Err(if resumed { transient(message) } else { Permanent(message) });
        }
    }
    let _ = fs::remove_file(meta);
    Ok(Fetched { path: part.to_path_buf(), sha256, size, transferred, resumed, sideloaded: false })
}

/// Copies a `file://` source into the partial file, then verifies it like a download.
fn sideload(cache: &Cache, wanted: &Wanted<'_>, path: &Path) -> Result<Fetched, String> {
    let key = wanted.partial_key(&path.display().to_string());
    let part = cache.partial_path(&key);
    let meta = cache.partial_meta_path(&key);
    // Regular files only (after symlinks): a FIFO or a device would block or never end, with the
    // cache lock held.
    let kind = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !kind.is_file() {
        return Err(format!("{} is not a regular file; sideload sources must be files", path.display()));
    }
    let mut src = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = src.metadata().map_err(|e| e.to_string())?.len();
    let limit = wanted.size.unwrap_or(wanted.cap);
    if let Some(size) = wanted.size {
        if len != size {
            return Err(format!("{} is {len} bytes, the manifest says {size}", path.display()));
        }
    } else if len > limit {
        return Err(format!("{} is {len} bytes, more than the {limit} allowed for an unpinned file", path.display()));
    }
    let dst = File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    log::info!("{}: copying {} ({})", wanted.id, path.display(), super::progress::bytes(len));
    let mut progress = Progress::new(wanted.id, Some(len), 0);
    let mut dst = super::progress::Reporting { inner: dst, progress: &mut progress, done: 0 };
    // Hash while copying: the file is read once, not copied and then read back. A file that
    // grows while it is copied is not written past its declared size (one byte over is caught).
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let copied = copy_hashing(&mut (&mut src).take(limit + 1), &mut dst, &mut ctx)
        .map_err(|e| format!("copying {}: {e}", path.display()))?;
    drop(dst);
    progress.finish();
    if copied > limit {
        remove_partial(&part, &meta);
        return Err(format!("{} grew past {limit} bytes while it was copied; refused", path.display()));
    }
    let digest = Some((hex(ctx.finish().as_ref()), copied));
    let fetched = finish(&part, &meta, wanted, 0, false, digest).map_err(|e| match e {
        Permanent(m) | Transient { message: m, .. } => m,
    })?;
    Ok(Fetched { sideloaded: true, ..fetched })
}

fn read_validator(meta: &Path) -> Validator {
    fs::read(meta).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn remove_partial(part: &Path, meta: &Path) {
    let _ = fs::remove_file(part);
    let _ = fs::remove_file(meta);
}

/// `bytes 100-199/200` -> 100.
fn parse_content_range_start(value: Option<&str>) -> Option<u64> {
    let range = value?.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

fn classify_ureq_error(shown: &str, e: ureq::Error) -> AttemptError {
    match e {
        ureq::Error::TooManyRedirects => Permanent(format!("{shown}: too many redirects (a redirect loop?)")),
        ureq::Error::RequireHttpsOnly(target) => Permanent(format!(
            "{shown}: redirected to plain http ({}); refused: the manifest does not set allow_http = true",
            redact_url(&target)
        )),
        ureq::Error::BadUri(_) => Permanent(format!("{shown}: {e}")),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => tls_failure(shown, &e.to_string()),
        ureq::Error::Io(io) if is_certificate_error(&io) => tls_failure(shown, &io.to_string()),
        other => transient(format!("{shown}: {other}")),
    }
}

/// A certificate the client cannot trust will not become trustworthy on retry.
fn tls_failure(shown: &str, detail: &str) -> AttemptError {
    Permanent(format!(
        "{shown}: TLS failed: {detail} (is the server's CA trusted? set download.ca_file for a private CA; \
         is the clock right?)"
    ))
}

fn is_certificate_error(io: &io::Error) -> bool {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(parse_content_range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(parse_content_range_start(Some("bytes */200")), None);
        assert_eq!(parse_content_range_start(None), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let d = Downloader::new(Settings {
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            overall_timeout: Duration::from_secs(1800),
            retries: 4,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(800),
            max_unpinned: 1,
            max_environment: 1,
        }, true)
        .unwrap();
        for attempt in 1..10 {
            let base = (0.1 * 2f64.powi(attempt as i32 - 1)).min(0.8);
            let wait = d.backoff(attempt).as_secs_f64();
            assert!(wait >= base * 0.5 - 1e-9 && wait <= base * 1.5 + 1e-9, "attempt {attempt}: {wait}");
        }
    }

    #[test]
    fn partial_key_is_the_digest_or_an_id_hash() {
        let pinned = Wanted { id: "m", sha256: Some("ab"), size: Some(1), cap: 1 };
        assert_eq!(pinned.partial_key("https://a/1"), "ab");
        let tofu = Wanted { id: "m", sha256: None, size: None, cap: 1 };
        let key = tofu.partial_key("https://a/1");
        assert!(key.starts_with("tofu-") && key.len() == 5 + 64);
        assert_ne!(key, tofu.partial_key("https://a/2"), "another URL never continues this partial");
        let env = Wanted { id: "m.environment", sha256: None, size: None, cap: 1 };
        assert_ne!(key, env.partial_key("https://a/1"));
    }
}
