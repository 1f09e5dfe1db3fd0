//! The schema of every configuration key: its type, default, where it may be set, and its
//! environment variable. Files, environment and flags are all checked against this one table.

/// The shape of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// An absolute filesystem path.
    Path,
    Int,
    Float,
    Bool,
    /// A list of strings; in the environment and on the command line, comma-separated.
    List,
    /// A string that is never shown (see [`crate::redact::Secret`]).
    Secret,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Str | Kind::Secret => "a string",
            Kind::Path => "a path (string)",
            Kind::Int => "an integer",
            Kind::Float => "a number",
            Kind::Bool => "true or false",
            Kind::List => "a list of strings",
        }
    }
}

#[derive(Debug)]
pub struct KeyDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Built-in default, written as on the command line; `None` = unset unless a layer sets it.
    pub default: Option<&'static str>,
    /// Whether a board profile may set it (secrets and the board choice itself may not).
    pub in_profile: bool,
    /// Other environment variables that set this key, below `OUTPOST_*` in precedence.
    pub env_aliases: &'static [&'static str],
    pub help: &'static str,
}

pub const KEYS: &[KeyDef] = &[
    KeyDef {
        name: "board",
        kind: Kind::Str,
        default: Some("auto"),
        in_profile: false,
        env_aliases: &[],
        help: "board profile name, or `auto` to detect it from the device tree",
    },
    KeyDef {
        name: "cache.dir",
        kind: Kind::Path,
        default: Some("/var/lib/outpost/cache"),
        in_profile: true,
        env_aliases: &["MODEL_CACHE_DIR"],
        help: "model cache directory; must be on persistent storage",
    },
    KeyDef {
        name: "camera.device",
        kind: Kind::Str,
        default: Some("/dev/video0"),
        in_profile: true,
        env_aliases: &[],
        help: "V4L2 capture device",
    },
    KeyDef {
        name: "camera.format",
        kind: Kind::Str,
        default: Some("YUYV"),
        in_profile: true,
        env_aliases: &[],
        help: "pixel format to negotiate: YUYV, NV12, RGB24 or MJPEG",
    },
    KeyDef {
        name: "camera.width",
        kind: Kind::Int,
        default: Some("640"),
        in_profile: true,
        env_aliases: &[],
        help: "capture width in pixels",
    },
    KeyDef {
        name: "camera.height",
        kind: Kind::Int,
        default: Some("480"),
        in_profile: true,
        env_aliases: &[],
        help: "capture height in pixels",
    },
    KeyDef {
        name: "camera.fps",
        kind: Kind::Int,
        default: Some("30"),
        in_profile: true,
        env_aliases: &[],
        help: "capture frame rate (set explicitly: drivers default to low rates)",
    },
    KeyDef {
        name: "inference.max_image_megapixels",
        kind: Kind::Int,
        default: Some("40"),
        in_profile: true,
        env_aliases: &[],
        help: "largest image decoded (checked from its header, before any allocation), megapixels",
    },
    KeyDef {
        name: "inference.plan_timeout_secs",
        kind: Kind::Int,
        default: Some("600"),
        in_profile: true,
        env_aliases: &[],
        help: "longest an engine may take to optimise a model for an input size; past it the model is refused (a damaged graph can send tract's optimiser into a loop)",
    },
    KeyDef {
        name: "inference.threads",
        kind: Kind::Int,
        default: Some("2"),
        in_profile: true,
        env_aliases: &[],
        help: "CPU threads for inference",
    },
    KeyDef {
        name: "inference.backend",
        kind: Kind::Str,
        default: Some("auto"),
        in_profile: true,
        env_aliases: &[],
        help: "preferred inference backend: auto (tract or rten, measured per model at provision), tract, rten, \
               or through ONNX Runtime (glibc build): onnxruntime (CPU), cuda, tensorrt",
    },
    KeyDef {
        name: "inference.notes",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "what this board's accelerators support with outpost (shown by `board show` and `doctor`)",
    },
    KeyDef {
        name: "inference.onnxruntime_library",
        kind: Kind::Path,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "libonnxruntime.so for the onnxruntime, cuda and tensorrt backends (empty = search /usr/lib, \
               /usr/local/lib and the onnxruntime Python package's capi/ folder)",
    },
    KeyDef {
        name: "inference.calibration_image",
        kind: Kind::Path,
        default: Some(""),
        in_profile: false,
        env_aliases: &[],
        help: "a picture from this camera showing what the models detect: TensorRT's f16 engines are accepted only \
               where their boxes on it match f32's (empty = f16 is not checked, so TensorRT builds f32)",
    },
    KeyDef {
        name: "inference.precision",
        kind: Kind::Str,
        default: Some("f32"),
        in_profile: true,
        env_aliases: &[],
        help: "float width of the arithmetic: f32, or f16 (tract on Cortex-A76/A78 boards, TensorRT's engines; each model \
               is checked against f32 at provision and runs f32 where it drifts)",
    },
    KeyDef {
        name: "inference.fallback",
        kind: Kind::List,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "backends to try, in order, when the preferred one is unavailable",
    },
    KeyDef {
        name: "memory.total_mb",
        kind: Kind::Int,
        default: Some("0"),
        in_profile: true,
        env_aliases: &[],
        help: "RAM on the board in MiB (0 = unknown); informs model and buffer choices",
    },
    KeyDef {
        name: "memory.notes",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "notes on the board's memory (shared CPU/GPU memory, swap advice)",
    },
    KeyDef {
        name: "log.level",
        kind: Kind::Str,
        default: Some("info"),
        in_profile: true,
        env_aliases: &["OUTPOST_LOG"],
        help: "log level: off, error, warn, info, debug or trace",
    },
    KeyDef {
        name: "roboflow.api_base",
        kind: Kind::Str,
        default: Some("https://api.roboflow.com"),
        in_profile: false,
        env_aliases: &[],
        help: "Roboflow API used to resolve roboflow: model ids",
    },
    KeyDef {
        name: "roboflow.api_key",
        kind: Kind::Secret,
        default: None,
        in_profile: false,
        env_aliases: &["ROBOFLOW_API_KEY"],
        help: "Roboflow API key (never logged or shown)",
    },
    KeyDef {
        name: "provision.manifest",
        kind: Kind::Path,
        default: Some("/etc/outpost/models.toml"),
        in_profile: false,
        env_aliases: &[],
        help: "the models manifest to provision (a detached signature sits beside it as .sig)",
    },
    KeyDef {
        name: "provision.trusted_keys",
        kind: Kind::List,
        default: Some(""),
        in_profile: false,
        env_aliases: &[],
        help: "ed25519 public keys (hex); when set, the manifest must carry a valid .sig",
    },
    KeyDef {
        name: "provision.require_complete",
        kind: Kind::Bool,
        default: Some("false"),
        in_profile: true,
        env_aliases: &[],
        help: "run: exit 4 when the manifest cannot be provisioned, instead of running the installed generation",
    },
    KeyDef {
        name: "provision.retry_secs",
        kind: Kind::Int,
        default: Some("60"),
        in_profile: true,
        env_aliases: &[],
        help: "run: first delay of the background provisioning retries (doubling, at most 1 h)",
    },
    KeyDef {
        name: "provision.deadline_secs",
        kind: Kind::Int,
        default: Some("3300"),
        in_profile: true,
        env_aliases: &[],
        help: "longest one provisioning run may take, retries and waits included (the unit's start timeout is 1 h)",
    },
    KeyDef {
        name: "provision.lock_wait_secs",
        kind: Kind::Int,
        default: Some("300"),
        in_profile: false,
        env_aliases: &[],
        help: "how long a second provisioning run waits for the cache lock",
    },
    KeyDef {
        name: "download.ca_file",
        kind: Kind::Path,
        default: None,
        in_profile: false,
        env_aliases: &[],
        help: "PEM CA certificate(s) of a private provisioning server",
    },
    KeyDef {
        name: "download.connect_timeout_secs",
        kind: Kind::Int,
        default: Some("10"),
        in_profile: false,
        env_aliases: &[],
        help: "TCP + TLS connect timeout",
    },
    KeyDef {
        name: "download.read_timeout_secs",
        kind: Kind::Int,
        default: Some("30"),
        in_profile: false,
        env_aliases: &[],
        help: "a connection with no byte for this long is stalled and retried",
    },
    KeyDef {
        name: "download.overall_timeout_secs",
        kind: Kind::Int,
        default: Some("1800"),
        in_profile: false,
        env_aliases: &[],
        help: "longest a single request may take; a slow download then resumes where it stopped",
    },
    KeyDef {
        name: "download.max_unpinned_mb",
        kind: Kind::Int,
        default: Some("2048"),
        in_profile: true,
        env_aliases: &[],
        help: "largest model download without a pinned size (Roboflow weights), MB",
    },
    KeyDef {
        name: "download.max_environment_mb",
        kind: Kind::Int,
        default: Some("16"),
        in_profile: true,
        env_aliases: &[],
        help: "largest environment.json (or other metadata) download, MB",
    },
    KeyDef {
        name: "download.retries",
        kind: Kind::Int,
        default: Some("4"),
        in_profile: false,
        env_aliases: &[],
        help: "retries per source after the first attempt",
    },
    KeyDef {
        name: "download.backoff_ms",
        kind: Kind::Int,
        default: Some("500"),
        in_profile: false,
        env_aliases: &[],
        help: "first retry delay; doubles each retry, with jitter",
    },
    KeyDef {
        name: "download.backoff_max_secs",
        kind: Kind::Int,
        default: Some("60"),
        in_profile: false,
        env_aliases: &[],
        help: "longest retry delay",
    },
    KeyDef {
        name: "camera.reopen_secs",
        kind: Kind::Int,
        default: Some("2"),
        in_profile: true,
        env_aliases: &[],
        help: "delay before reopening a camera that failed or disappeared (doubles up to 60 s)",
    },
    KeyDef {
        name: "camera.stall_secs",
        kind: Kind::Int,
        default: Some("10"),
        in_profile: true,
        env_aliases: &[],
        help: "an RTSP camera that sends no frame for this long is reconnected",
    },
    KeyDef {
        name: "camera.username",
        kind: Kind::Str,
        default: Some(""),
        in_profile: false,
        env_aliases: &["OUTPOST_CAMERA_USERNAME"],
        help: "RTSP user name when the URL carries none",
    },
    KeyDef {
        name: "camera.password",
        kind: Kind::Secret,
        default: None,
        in_profile: false,
        env_aliases: &["OUTPOST_CAMERA_PASSWORD"],
        help: "RTSP password when the URL carries none (never logged or shown)",
    },
    KeyDef {
        name: "run.realtime",
        kind: Kind::Bool,
        default: Some("true"),
        in_profile: true,
        env_aliases: &[],
        help: "video files play at their own frame rate (false: as fast as inference takes them)",
    },
    KeyDef {
        name: "run.overlap",
        kind: Kind::Bool,
        default: Some("true"),
        in_profile: true,
        env_aliases: &[],
        help: "prepare the next frame and decode the last while the model runs (false: one frame at a time)",
    },
    KeyDef {
        name: "run.source",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "frame source: v4l2:///dev/videoN, rtsp://HOST[:PORT]/PATH, file:IMAGE|VIDEO or dir:PATH; empty = v4l2 on camera.device",
    },
    KeyDef {
        name: "run.loop",
        kind: Kind::Bool,
        default: Some("false"),
        in_profile: true,
        env_aliases: &[],
        help: "file:/dir: sources start again at the end instead of stopping",
    },
    KeyDef {
        name: "run.model",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "model id (from the manifest) to run; empty = the only model of the cache",
    },
    KeyDef {
        name: "run.input",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "model input size WIDTHxHEIGHT over the manifest's (smaller is faster)",
    },
    KeyDef {
        name: "run.confidence",
        kind: Kind::Float,
        default: Some("0.4"),
        in_profile: true,
        env_aliases: &[],
        help: "minimum confidence of a reported detection",
    },
    KeyDef {
        name: "run.iou",
        kind: Kind::Float,
        default: Some("0.3"),
        in_profile: true,
        env_aliases: &[],
        help: "IoU above which overlapping boxes are suppressed",
    },
    KeyDef {
        name: "run.max_detections",
        kind: Kind::Int,
        default: Some("300"),
        in_profile: true,
        env_aliases: &[],
        help: "most detections reported per frame",
    },
    KeyDef {
        name: "run.max_fps",
        kind: Kind::Float,
        default: Some("0"),
        in_profile: true,
        env_aliases: &[],
        help: "most frames processed per second (0 = as many as inference allows)",
    },
    KeyDef {
        name: "run.frames",
        kind: Kind::Int,
        default: Some("0"),
        in_profile: true,
        env_aliases: &[],
        help: "stop after this many processed frames (0 = run until stopped)",
    },
    KeyDef {
        name: "run.stats_interval_secs",
        kind: Kind::Int,
        default: Some("60"),
        in_profile: true,
        env_aliases: &[],
        help: "how often frame counters and stage timings are logged (0 = only at exit)",
    },
    KeyDef {
        name: "run.fail_after_secs",
        kind: Kind::Int,
        default: Some("60"),
        in_profile: true,
        env_aliases: &[],
        help: "when every frame has failed for this long, exit 1 so the service manager acts (0 = never)",
    },
    KeyDef {
        name: "run.stop_timeout_secs",
        kind: Kind::Int,
        default: Some("10"),
        in_profile: true,
        env_aliases: &[],
        help: "on SIGTERM/SIGINT, longest wait for the current frame and the sinks",
    },
    KeyDef {
        name: "serve.listen",
        kind: Kind::Str,
        default: Some("127.0.0.1:9001"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve`: address and port of the Roboflow Inference HTTP API",
    },
    KeyDef {
        name: "serve.api_keys",
        kind: Kind::Secret,
        default: None,
        in_profile: false,
        env_aliases: &[],
        help: "`outpost serve`: comma-separated keys (or a TOML list), one of which every route but /info, /healthz and /readiness requires; unset = no key needed",
    },
    KeyDef {
        name: "serve.provision",
        kind: Kind::Str,
        default: Some("on-demand"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve`: a model not in the cache is provisioned on /model/add (`on-demand`) or is a 404 (`cache-only`)",
    },
    KeyDef {
        name: "serve.max_loaded_models",
        kind: Kind::Int,
        default: Some("4"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve`: models held in memory; the least recently used is unloaded beyond this",
    },
    KeyDef {
        name: "serve.queue",
        kind: Kind::Int,
        default: Some("16"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve`: requests that may wait for a busy model; more get 429 with Retry-After",
    },
    KeyDef {
        name: "serve.max_connections",
        kind: Kind::Int,
        default: Some("128"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve` and http.listen: open connections; more get 429",
    },
    KeyDef {
        name: "serve.max_body_mb",
        kind: Kind::Int,
        default: Some("32"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve`: largest request body (MB); larger ones get 413",
    },
    KeyDef {
        name: "serve.max_header_kb",
        kind: Kind::Int,
        default: Some("16"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve` and http.listen: largest request head (KiB); larger ones get 431",
    },
    KeyDef {
        name: "serve.header_timeout_secs",
        kind: Kind::Int,
        default: Some("10"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve` and http.listen: time a client has to send a request head (slow clients get 408)",
    },
    KeyDef {
        name: "serve.body_timeout_secs",
        kind: Kind::Int,
        default: Some("60"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve`: time a client has to send a request body",
    },
    KeyDef {
        name: "serve.idle_timeout_secs",
        kind: Kind::Int,
        default: Some("15"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost serve` and http.listen: a kept-alive connection idle this long is closed",
    },
    KeyDef {
        name: "http.listen",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost run`: address:port of the live view and /metrics (empty = off)",
    },
    KeyDef {
        name: "http.stream_fps",
        kind: Kind::Float,
        default: Some("5"),
        in_profile: true,
        env_aliases: &[],
        help: "`outpost run`: most frames per second of /stream.mjpeg",
    },
    KeyDef {
        name: "sinks.jsonl",
        kind: Kind::Str,
        default: Some("-"),
        in_profile: true,
        env_aliases: &[],
        help: "JSON lines of predictions: - for stdout, a file path, or empty for none",
    },
    KeyDef {
        name: "sinks.webhook.url",
        kind: Kind::Str,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "POST each frame's JSON to this http(s) URL (empty = off)",
    },
    KeyDef {
        name: "sinks.webhook.queue",
        kind: Kind::Int,
        default: Some("16"),
        in_profile: true,
        env_aliases: &[],
        help: "frames waiting for the webhook; more are dropped (counted), never queued",
    },
    KeyDef {
        name: "sinks.webhook.timeout_secs",
        kind: Kind::Int,
        default: Some("5"),
        in_profile: true,
        env_aliases: &[],
        help: "timeout of one webhook request",
    },
    KeyDef {
        name: "sinks.annotate.dir",
        kind: Kind::Path,
        default: Some(""),
        in_profile: true,
        env_aliases: &[],
        help: "directory for annotated JPEGs (latest.jpg and snapshots; empty = off)",
    },
    KeyDef {
        name: "sinks.annotate.every",
        kind: Kind::Int,
        default: Some("0"),
        in_profile: true,
        env_aliases: &[],
        help: "also keep a numbered snapshot every N processed frames (0 = only latest.jpg)",
    },
    KeyDef {
        name: "sinks.annotate.keep",
        kind: Kind::Int,
        default: Some("100"),
        in_profile: true,
        env_aliases: &[],
        help: "numbered snapshots kept; older ones are deleted",
    },
    KeyDef {
        name: "sinks.annotate.latest_interval_ms",
        kind: Kind::Int,
        default: Some("1000"),
        in_profile: true,
        env_aliases: &[],
        help: "latest.jpg is replaced at most this often (flash wear)",
    },
    KeyDef {
        name: "sinks.annotate.quality",
        kind: Kind::Int,
        default: Some("85"),
        in_profile: true,
        env_aliases: &[],
        help: "JPEG quality of annotated frames, 1..=100",
    },
];

/// Environment variables that steer loading itself rather than set a key, and those of the
/// build and test scripts (not settings, so no warning).
pub const META_ENV: &[&str] = &[
    "OUTPOST_CONFIG",
    "OUTPOST_BOARDS_DIR",
    "OUTPOST_SYSROOT",
    "OUTPOST_MUSL_SYSROOT",
    "OUTPOST_REFERENCE_VENV",
    "OUTPOST_CI_CACHE",
    "OUTPOST_QEMU_TOOLS",
];

pub fn lookup(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// `cache.dir` -> `OUTPOST_CACHE_DIR`.
pub fn env_var(key: &KeyDef) -> String {
    format!("OUTPOST_{}", key.name.replace('.', "_").to_ascii_uppercase())
}

/// The known key closest to a misspelt one, for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (edit_distance(name, k.name), k.name))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_key() {
        assert_eq!(env_var(lookup("cache.dir").unwrap()), "OUTPOST_CACHE_DIR");
        assert_eq!(env_var(lookup("inference.threads").unwrap()), "OUTPOST_INFERENCE_THREADS");
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        assert_eq!(suggest("inference.thread"), Some("inference.threads"));
        assert_eq!(suggest("camera.fsp"), Some("camera.fps"));
        assert_eq!(suggest("completely.different.thing"), None);
    }

    #[test]
    fn key_names_are_unique() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(KEYS[i + 1..].iter().all(|o| o.name != k.name), "{} twice", k.name);
        }
    }
}
