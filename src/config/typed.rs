//! The validated, typed configuration the rest of outpost reads, built from merged [`Settings`].
//! Range and enum checks live here; each error names the key and the layer that set it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

use super::layer::{Settings, Source, Value};
use super::ConfigError;
use crate::redact::Secret;
use crate::vision::detection::MAX_DETECTIONS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Nv12,
    Rgb24,
    Mjpeg,
}

impl PixelFormat {
    /// The V4L2 FourCC code drivers list the format under.
    pub fn fourcc(self) -> &'static [u8; 4] {
        match self {
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Nv12 => b"NV12",
            PixelFormat::Rgb24 => b"RGB3",
            PixelFormat::Mjpeg => b"MJPG",
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Rgb24 => "RGB24",
            PixelFormat::Mjpeg => "MJPEG",
        })
    }
}

impl FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "YUYV" => Ok(PixelFormat::Yuyv),
            "NV12" => Ok(PixelFormat::Nv12),
            "RGB24" | "RGB3" => Ok(PixelFormat::Rgb24),
            "MJPEG" | "MJPG" => Ok(PixelFormat::Mjpeg),
            _ => Err(format!("unknown pixel format `{s}`; use YUYV, NV12, RGB24 or MJPEG")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// tract or rten, whichever ran the model faster when it was provisioned.
    Auto,
    Tract,
    Rten,
    /// ONNX Runtime's CPU execution provider (glibc build, feature `onnxruntime`).
    OnnxRuntime,
    /// ONNX Runtime's CUDA execution provider, then its CPU one for what CUDA cannot run.
    Cuda,
    /// ONNX Runtime's TensorRT execution provider, then CUDA, then CPU.
    TensorRt,
}

impl BackendKind {
    /// As `inference.backend` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Tract => "tract",
            BackendKind::Rten => "rten",
            BackendKind::OnnxRuntime => "onnxruntime",
            BackendKind::Cuda => "cuda",
            BackendKind::TensorRt => "tensorrt",
        }
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "tract" => Ok(BackendKind::Tract),
            "rten" => Ok(BackendKind::Rten),
            "onnxruntime" => Ok(BackendKind::OnnxRuntime),
            "cuda" => Ok(BackendKind::Cuda),
            "tensorrt" => Ok(BackendKind::TensorRt),
            _ => Err(format!("unknown backend `{s}`; use auto, tract, rten, onnxruntime, cuda or tensorrt")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Camera {
    pub device: String,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// First delay before reopening a failed camera; doubles up to a minute.
    pub reopen: Duration,
    /// An RTSP camera silent this long is reconnected.
    pub stall: Duration,
    /// RTSP credentials for URLs that carry none.
    pub username: String,
    pub password: Option<Secret>,
}

/// What `outpost run` runs (`run.*`).
#[derive(Debug, Clone)]
pub struct Run {
    /// `run.source` as written; empty = the V4L2 camera of `camera.device`.
    pub source: String,
    pub looped: bool,
    /// Video files play at their own frame rate; false = as fast as inference takes frames.
    pub realtime: bool,
    /// Prepare the next frame and decode the last while the model runs.
    pub overlap: bool,
    /// Empty = the cache's only model.
    pub model: String,
    pub input: Option<[u32; 2]>,
    pub confidence: f32,
    pub iou: f32,
    pub max_detections: usize,
    /// 0 = unlimited.
    pub max_fps: f64,
    /// 0 = until stopped.
    pub frames: u64,
    /// Zero = only at exit.
    pub stats_interval: Duration,
    pub stop_timeout: Duration,
    /// Every frame failing for this long ends the run (exit 1); zero = never.
    pub fail_after: Duration,
}

/// Where `serve` finds a model that is not in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeProvision {
    OnDemand,
    CacheOnly,
}

impl FromStr for ServeProvision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on-demand" => Ok(ServeProvision::OnDemand),
            "cache-only" => Ok(ServeProvision::CacheOnly),
            _ => Err(format!("`{s}` is not on-demand or cache-only")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Serve {
    pub listen: String,
    pub api_keys: Vec<Secret>,
    pub provision: ServeProvision,
    pub max_loaded_models: usize,
    pub queue: usize,
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Http {
    /// `outpost run`'s live view; `None` = off.
    pub listen: Option<String>,
    pub stream_fps: f64,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub queue: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Annotate {
    pub dir: PathBuf,
    pub every: u64,
    pub keep: usize,
    pub latest_interval: Duration,
    pub quality: u8,
}

/// Where predictions go (`sinks.*`); `None` = that sink is off.
#[derive(Debug, Clone)]
pub struct Sinks {
    /// `Some(None)` = stdout.
    pub jsonl: Option<Option<PathBuf>>,
    pub webhook: Option<Webhook>,
    pub annotate: Option<Annotate>,
}

#[derive(Debug, Clone)]
pub struct Inference {
    /// Images above this many pixels are refused from their header (decompression bombs).
    pub max_image_pixels: u64,
    /// `inference.plan_timeout_secs`.
    pub plan_timeout: Duration,
    pub threads: usize,
    pub backend: BackendKind,
    pub fallback: Vec<BackendKind>,
    pub precision: Precision,
    /// `inference.onnxruntime_library`: `libonnxruntime.so` to load; `None` = search the usual places.
    pub onnxruntime_library: Option<PathBuf>,
    /// `inference.notes`: the board profile's word on its accelerators.
    pub notes: String,
    /// `inference.calibration_image`: what TensorRT's f16 engines are checked on.
    pub calibration_image: Option<PathBuf>,
}

/// The float width tract computes in. f16 halves the arithmetic's cost on cores with fp16
/// (Cortex-A76/A78: Raspberry Pi 5, Jetson Orin); elsewhere it is emulated and slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(format!("unknown precision `{s}`; use f32 or f16")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Memory {
    pub total_mb: u64,
    pub notes: String,
}

#[derive(Debug, Clone)]
pub struct Roboflow {
    pub api_base: String,
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Provision {
    pub manifest: PathBuf,
    pub trusted_keys: Vec<String>,
    pub lock_wait: Duration,
    /// `run` refuses to start on an older generation when the manifest cannot be provisioned.
    pub require_complete: bool,
    /// First delay between background provisioning attempts under `run`.
    pub retry: Duration,
    /// Longest one provisioning run may take (downloads, retries, `Retry-After` waits).
    pub deadline: Duration,
}

/// How provisioning downloads behave (`download.*`); used as is by the download engine.
#[derive(Debug, Clone)]
pub struct Download {
    /// PEM file with the CA(s) of a private provisioning server.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// No byte for this long = a stalled connection.
    pub read_timeout: Duration,
    /// Cap on one request; a download cut by it resumes on the next attempt.
    pub overall_timeout: Duration,
    /// Attempts per source after the first.
    pub retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Byte caps for downloads whose size the manifest does not pin: a hostile or broken server
    /// must not fill the flash.
    pub max_unpinned: u64,
    pub max_environment: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub board: String,
    pub cache_dir: PathBuf,
    pub camera: Camera,
    pub run: Run,
    pub sinks: Sinks,
    pub inference: Inference,
    pub memory: Memory,
    pub log_level: LevelFilter,
    pub roboflow: Roboflow,
    pub provision: Provision,
    pub download: Download,
    pub serve: Serve,
    pub http: Http,
    /// `[[cameras]]` of the config file (empty: the one camera of `run.source`).
    pub cameras: Vec<super::CameraEntry>,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, ConfigError> {
        let cache_dir = PathBuf::from(string(s, "cache.dir")?);
        if !cache_dir.is_absolute() {
            return Err(invalid(s, "cache.dir", "must be an absolute path".into()));
        }
        Ok(Config {
            board: string(s, "board")?,
            cache_dir,
            camera: Camera {
                device: string(s, "camera.device")?,
                format: parsed(s, "camera.format")?,
                width: int_in(s, "camera.width", 16, 8192)? as u32,
                height: int_in(s, "camera.height", 16, 8192)? as u32,
                fps: int_in(s, "camera.fps", 1, 240)? as u32,
                reopen: Duration::from_secs(int_in(s, "camera.reopen_secs", 1, 3600)? as u64),
                stall: Duration::from_secs(int_in(s, "camera.stall_secs", 1, 3600)? as u64),
                username: string(s, "camera.username")?,
                password: match s.get("camera.password").map(|e| &e.value) {
                    Some(Value::Secret(p)) => Some(p.clone()),
                    _ => None,
                },
            },
            run: Run {
                source: {
                    // Checked here, so `config` and `doctor` refuse what `run` would refuse.
                    let source = string(s, "run.source")?;
                    crate::capture::SourceSpec::parse(&source, &string(s, "camera.device")?)
                        .map_err(|m| invalid(s, "run.source", m))?;
                    source
                },
                looped: boolean(s, "run.loop")?,
                realtime: boolean(s, "run.realtime")?,
                overlap: boolean(s, "run.overlap")?,
                model: string(s, "run.model")?,
                input: match string(s, "run.input")?.as_str() {
                    "" => None,
                    text => Some(parse_size(text).map_err(|m| invalid(s, "run.input", m))?),
                },
                confidence: float_in(s, "run.confidence", 0.0, 1.0)? as f32,
                iou: float_in(s, "run.iou", 0.0, 1.0)? as f32,
                max_detections: int_in(s, "run.max_detections", 1, MAX_DETECTIONS as i64)? as usize,
                max_fps: float_in(s, "run.max_fps", 0.0, 1000.0)?,
                frames: int_in(s, "run.frames", 0, i64::MAX)? as u64,
                stats_interval: Duration::from_secs(int_in(s, "run.stats_interval_secs", 0, 86_400)? as u64),
                stop_timeout: Duration::from_secs(int_in(s, "run.stop_timeout_secs", 1, 3600)? as u64),
                fail_after: Duration::from_secs(int_in(s, "run.fail_after_secs", 0, 86_400)? as u64),
            },
            sinks: Sinks {
                jsonl: match string(s, "sinks.jsonl")?.as_str() {
                    "" => None,
                    "-" => Some(None),
                    path => Some(Some(PathBuf::from(path))),
                },
                // Every sub-key is checked whether or not its sink is on: a value `run` would
                // refuse must not pass `config` or `doctor`.
                webhook: {
                    let queue = int_in(s, "sinks.webhook.queue", 1, 10_000)? as usize;
                    let timeout = Duration::from_secs(int_in(s, "sinks.webhook.timeout_secs", 1, 600)? as u64);
                    match string(s, "sinks.webhook.url")? {
                        url if url.is_empty() => None,
                        url if !(url.starts_with("http://") || url.starts_with("https://")) => {
                            return Err(invalid(s, "sinks.webhook.url", "must be an http(s):// URL".into()));
                        }
                        url => Some(Webhook { url, queue, timeout }),
                    }
                },
                annotate: {
                    let every = int_in(s, "sinks.annotate.every", 0, i64::MAX)? as u64;
                    let keep = int_in(s, "sinks.annotate.keep", 0, 1_000_000)? as usize;
                    let latest_interval =
                        Duration::from_millis(int_in(s, "sinks.annotate.latest_interval_ms", 0, 3_600_000)? as u64);
                    let quality = int_in(s, "sinks.annotate.quality", 1, 100)? as u8;
                    match string(s, "sinks.annotate.dir")? {
                        dir if dir.is_empty() => None,
                        dir => Some(Annotate { dir: PathBuf::from(dir), every, keep, latest_interval, quality }),
                    }
                },
            },
            inference: Inference {
                max_image_pixels: int_in(s, "inference.max_image_megapixels", 1, 1000)? as u64 * 1_000_000,
                plan_timeout: Duration::from_secs(int_in(s, "inference.plan_timeout_secs", 1, 86_400)? as u64),
                threads: int_in(s, "inference.threads", 1, 256)? as usize,
                backend: parsed(s, "inference.backend")?,
                precision: parsed(s, "inference.precision")?,
                fallback: list(s, "inference.fallback")?
                    .iter()
                    .map(|b| b.parse().map_err(|m| invalid(s, "inference.fallback", m)))
                    .collect::<Result<_, _>>()?,
                notes: string(s, "inference.notes")?,
                onnxruntime_library: Some(string(s, "inference.onnxruntime_library")?).filter(|p| !p.is_empty()).map(PathBuf::from),
                calibration_image: Some(string(s, "inference.calibration_image")?).filter(|p| !p.is_empty()).map(PathBuf::from),
            },
            memory: Memory {
                total_mb: int_in(s, "memory.total_mb", 0, i64::MAX)? as u64,
                notes: string(s, "memory.notes")?,
            },
            log_level: {
                let name = string(s, "log.level")?;
                crate::logging::parse_level(&name).ok_or_else(|| {
                    invalid(s, "log.level", format!("`{name}` is not one of off, error, warn, info, debug, trace"))
                })?
            },
            roboflow: Roboflow {
                api_base: {
                    let base = string(s, "roboflow.api_base")?;
                    if !(base.starts_with("https://") || base.starts_with("http://")) {
                        return Err(invalid(s, "roboflow.api_base", "must be an http(s):// URL".into()));
                    }
                    base.trim_end_matches('/').to_string()
                },
                api_key: match s.get("roboflow.api_key").map(|e| &e.value) {
                    Some(Value::Secret(key)) => Some(key.clone()),
                    _ => None,
                },
            },
            provision: Provision {
                manifest: PathBuf::from(string(s, "provision.manifest")?),
                trusted_keys: trusted_keys(s)?,
                lock_wait: Duration::from_secs(int_in(s, "provision.lock_wait_secs", 0, 86_400)? as u64),
                require_complete: boolean(s, "provision.require_complete")?,
                retry: Duration::from_secs(int_in(s, "provision.retry_secs", 1, 86_400)? as u64),
                deadline: Duration::from_secs(int_in(s, "provision.deadline_secs", 1, 7 * 86_400)? as u64),
            },
            download: Download {
                ca_file: optional_string(s, "download.ca_file")?.map(PathBuf::from),
                connect_timeout: Duration::from_secs(int_in(s, "download.connect_timeout_secs", 1, 600)? as u64),
                read_timeout: Duration::from_secs(int_in(s, "download.read_timeout_secs", 1, 3600)? as u64),
                overall_timeout: Duration::from_secs(int_in(s, "download.overall_timeout_secs", 1, 86_400)? as u64),
                retries: int_in(s, "download.retries", 0, 100)? as u32,
                backoff_initial: Duration::from_millis(int_in(s, "download.backoff_ms", 0, 600_000)? as u64),
                backoff_max: Duration::from_secs(int_in(s, "download.backoff_max_secs", 0, 3600)? as u64),
                max_unpinned: int_in(s, "download.max_unpinned_mb", 1, 1 << 20)? as u64 * 1_000_000,
                max_environment: int_in(s, "download.max_environment_mb", 1, 1024)? as u64 * 1_000_000,
            },
            serve: Serve {
                listen: listen_address(s, "serve.listen")?.unwrap_or_default(),
                api_keys: match s.get("serve.api_keys").map(|e| &e.value) {
                    Some(Value::Secret(keys)) => keys
                        .expose()
                        .split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(Secret::new)
                        .collect(),
                    _ => Vec::new(),
                },
                provision: parsed(s, "serve.provision")?,
                max_loaded_models: int_in(s, "serve.max_loaded_models", 1, 256)? as usize,
                queue: int_in(s, "serve.queue", 0, 100_000)? as usize,
                max_connections: int_in(s, "serve.max_connections", 1, 100_000)? as usize,
                max_body_bytes: int_in(s, "serve.max_body_mb", 1, 4096)? as usize * 1_000_000,
                max_header_bytes: int_in(s, "serve.max_header_kb", 1, 1024)? as usize * 1024,
                header_timeout: Duration::from_secs(int_in(s, "serve.header_timeout_secs", 1, 3600)? as u64),
                body_timeout: Duration::from_secs(int_in(s, "serve.body_timeout_secs", 1, 3600)? as u64),
                idle_timeout: Duration::from_secs(int_in(s, "serve.idle_timeout_secs", 1, 3600)? as u64),
            },
            http: Http {
                listen: listen_address(s, "http.listen")?,
                stream_fps: float_in(s, "http.stream_fps", 0.1, 60.0)?,
            },
            cameras: Vec::new(),
        })
    }
}

/// `HOST:PORT` (empty = `None`), checked here so `config` and `doctor` refuse what `serve` would.
fn listen_address(s: &Settings, key: &str) -> Result<Option<String>, ConfigError> {
    let text = string(s, key)?;
    if text.is_empty() {
        return Ok(None);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid(s, key, format!("`{text}` is not HOST:PORT (e.g. 127.0.0.1:9001 or 0.0.0.0:9001)")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid(s, key, format!("`{text}` is not HOST:PORT (e.g. 127.0.0.1:9001 or 0.0.0.0:9001)")));
    }
    Ok(Some(text))
}

fn invalid(s: &Settings, key: &str, message: String) -> ConfigError {
    let source = s.get(key).map_or_else(|| "nowhere".to_string(), |e| e.source.to_string());
    ConfigError::Invalid { key: key.to_string(), source, message }
}

fn optional_string(s: &Settings, key: &str) -> Result<Option<String>, ConfigError> {
    match s.get(key).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::Str(v)) => Ok(Some(v.clone())),
        Some(_) => Err(invalid(s, key, "must be a string".into())),
    }
}

fn string(s: &Settings, key: &str) -> Result<String, ConfigError> {
    optional_string(s, key)?.ok_or_else(|| invalid(s, key, "is required".into()))
}

fn parsed<T: FromStr<Err = String>>(s: &Settings, key: &str) -> Result<T, ConfigError> {
    string(s, key)?.parse().map_err(|m| invalid(s, key, m))
}

fn list(s: &Settings, key: &str) -> Result<Vec<String>, ConfigError> {
    match s.get(key).map(|e| &e.value) {
        Some(Value::List(items)) => Ok(items.clone()),
        _ => Err(invalid(s, key, "must be a list of strings".into())),
    }
}

/// `provision.trusted_keys`: a security setting must not be switched off by accident. An empty
/// value set anywhere (an `EnvironmentFile` line `OUTPOST_PROVISION_TRUSTED_KEYS=` would
/// otherwise silently override the config file's keys) is refused; `none` says it on purpose.
fn trusted_keys(s: &Settings) -> Result<Vec<String>, ConfigError> {
    let key = "provision.trusted_keys";
    let keys = list(s, key)?;
    let set_somewhere = s.get(key).is_some_and(|e| e.source != Source::Default);
    match keys.as_slice() {
        [] if set_somewhere => Err(invalid(
            s,
            key,
            "is empty, which would turn manifest signature checking off; unset it to keep the lower layers' \
             keys, or set it to `none` to run without signatures on purpose"
                .into(),
        )),
        [none] if none.trim().eq_ignore_ascii_case("none") => Ok(Vec::new()),
        _ => Ok(keys),
    }
}

fn boolean(s: &Settings, key: &str) -> Result<bool, ConfigError> {
    match s.get(key).map(|e| &e.value) {
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(invalid(s, key, "must be true or false".into())),
    }
}

fn float_in(s: &Settings, key: &str, min: f64, max: f64) -> Result<f64, ConfigError> {
    match s.get(key).map(|e| &e.value) {
        Some(Value::Float(v)) if (min..=max).contains(v) => Ok(*v),
        Some(Value::Float(v)) => {
            let show = super::layer::short_float;
            Err(invalid(s, key, format!("{} is out of range {}..={}", show(*v), show(min), show(max))))
        }
        _ => Err(invalid(s, key, "must be a number".into())),
    }
}

/// `640x480`, or `320` for a square input.
pub fn parse_size(text: &str) -> Result<[u32; 2], String> {
    let bad = || format!("expected WIDTHxHEIGHT (e.g. 640x640), got `{text}`");
    let (w, h) = text.split_once(['x', 'X']).unwrap_or((text, text));
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(bad());
    }
    Ok([w, h])
}

fn int_in(s: &Settings, key: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    match s.get(key).map(|e| &e.value) {
        Some(Value::Int(v)) if (min..=max).contains(v) => Ok(*v),
        Some(Value::Int(v)) => Err(invalid(s, key, format!("{v} is out of range {min}..={max}"))),
        _ => Err(invalid(s, key, "must be an integer".into())),
    }
}
