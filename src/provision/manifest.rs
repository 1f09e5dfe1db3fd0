//! The models manifest: which models a device needs, where to get them, and how to check them.
//!
//! Parsed in two stages, as all config is: a raw serde form (`deny_unknown_fields`, so a typo is
//! an error), then validation into [`Manifest`] with every error naming the file, the model id
//! and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: u64,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    source: String,
    sha256: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    mirrors: Vec<String>,
    /// Try mirrors before the origin (site-local caches first); `false` = origin first.
    #[serde(default = "default_true")]
    mirrors_first: bool,
    family: Option<String>,
    classes: Option<Vec<String>>,
    /// Model input size, `[width, height]`.
    input: Option<[u32; 2]>,
    environment: Option<String>,
    /// Pins the environment file like `sha256`/`size` pin the weights.
    environment_sha256: Option<String>,
    environment_size: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// Where a model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `https://` (or `http://` where the manifest allows it).
    Url(String),
    /// `file://` path: sideloading from a USB stick or a second disk.
    File(PathBuf),
    /// `roboflow:<dataset>/<version>` or a Roboflow alias such as `rfdetr-base`.
    Roboflow(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(url) => f.write_str(&crate::redact::redact_url(url)),
            Source::File(path) => write!(f, "file://{}", path.display()),
            Source::Roboflow(id) => write!(f, "roboflow:{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub id: String,
    pub source: Source,
    /// Lower-case hex; `None` only for trust-on-first-use sources (Roboflow).
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// Download candidates in the order to try them (mirrors and origin).
    pub candidates: Vec<Source>,
    pub family: Option<String>,
    pub classes: Option<Vec<String>>,
    pub input: Option<[u32; 2]>,
    pub environment: Option<Source>,
    /// `environment_sha256` and `environment_size`, when the manifest pins the environment.
    pub environment_pin: Option<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: u64,
    pub allow_http: bool,
    pub models: Vec<Model>,
}

/// A manifest problem, always naming the file and, where it applies, the model and field.
#[derive(Debug)]
pub struct ManifestError {
    pub file: PathBuf,
    pub model: Option<String>,
    pub field: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manifest {}", self.file.display())?;
        if let Some(model) = &self.model {
            write!(f, ", model `{model}`")?;
        }
        if let Some(field) = self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses manifest `bytes` read from `file` (the name is only used in errors).
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let err = |model: Option<&str>, field, message: String| ManifestError {
            file: file.to_path_buf(),
            model: model.map(String::from),
            field,
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| err(None, None, "is not UTF-8 text".into()))?;
        // toml's message quotes the offending line, which may hold a URL with a key: redact it.
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            // One line: the message and where (toml's own text spans several lines and quotes it).
            let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map_or(String::new(), |l| format!(" (line {l})"));
            err(None, None, crate::redact::redact_text(&format!("{}{at}", e.message().trim())))
        })?;
        if raw.models.is_empty() {
            return Err(err(None, Some("models"), "lists no models ([[models]] tables)".into()));
        }
        let mut models = Vec::with_capacity(raw.models.len());
        for m in raw.models {
            let ctx = SourceContext { allow_http: raw.allow_http, base: file.parent().unwrap_or(Path::new("/")) };
            let model = validate_model(m, &ctx).map_err(|(id, field, message)| err(Some(&id), Some(field), message))?;
            if models.iter().any(|o: &Model| o.id == model.id) {
                return Err(err(Some(&model.id), Some("id"), "appears twice".into()));
            }
            models.push(model);
        }
        Ok(Manifest { version: raw.version, allow_http: raw.allow_http, models })
    }
}

type FieldError = (String, &'static str, String);

/// What a source string is interpreted against.
struct SourceContext<'a> {
    allow_http: bool,
    /// The manifest's folder: `file:` paths without `//` are relative to it (a USB stick can
    /// carry a manifest beside its models).
    base: &'a Path,
}

fn validate_model(m: RawModel, ctx: &SourceContext<'_>) -> Result<Model, FieldError> {
    let id = m.id.clone();
    let fail = |field: &'static str, message: String| (id.clone(), field, message);
    check_id(&m.id).map_err(|msg| fail("id", msg))?;
    let source = parse_source(&m.source, ctx).map_err(|msg| fail("source", msg))?;
    let sha256 = match m.sha256 {
        Some(s) => Some(check_sha256(&s).map_err(|msg| fail("sha256", msg))?),
        None => None,
    };
    let pinned_required = !matches!(source, Source::Roboflow(_));
    if pinned_required && sha256.is_none() {
        return Err(fail("sha256", "is required for https and file sources (64 hex characters)".into()));
    }
    if pinned_required && m.size.is_none() {
        return Err(fail("size", "is required for https and file sources (bytes)".into()));
    }
    if m.size == Some(0) {
        return Err(fail("size", "must be greater than zero".into()));
    }
    let mut mirrors = Vec::new();
    for mirror in &m.mirrors {
        match parse_source(mirror, ctx).map_err(|msg| fail("mirrors", msg))? {
            Source::Roboflow(_) => return Err(fail("mirrors", "a mirror must be a URL or file:// path".into())),
            s => mirrors.push(s),
        }
    }
    let candidates = if m.mirrors_first {
        mirrors.into_iter().chain(std::iter::once(source.clone())).collect()
    } else {
        std::iter::once(source.clone()).chain(mirrors).collect()
    };
    if let Some([w, h]) = m.input {
        if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
            return Err(fail("input", format!("[{w}, {h}] is out of range 16..=8192")));
        }
    }
    let environment = match &m.environment {
        Some(e) => Some(parse_source(e, ctx).map_err(|msg| fail("environment", msg))?),
        None => None,
    };
    let environment_pin = match (m.environment_sha256, m.environment_size) {
        (None, None) => None,
        (Some(sha), Some(size)) if environment.is_some() && size > 0 => {
            Some((check_sha256(&sha).map_err(|msg| fail("environment_sha256", msg))?, size))
        }
        _ if environment.is_none() => {
            return Err(fail("environment_sha256", "pins an `environment`, which this model does not name".into()))
        }
        _ => return Err(fail("environment_sha256", "needs `environment_size` (bytes, > 0) beside it, and vice versa".into())),
    };
    Ok(Model {
        id: m.id,
        source,
        sha256,
        size: m.size,
        candidates,
        family: m.family,
        classes: m.classes,
        input: m.input,
        environment,
        environment_pin,
    })
}

/// Ids name records and log lines; keep them to a safe alphabet so none can be a path.
fn check_id(id: &str) -> Result<(), String> {
    let ok_chars = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let starts_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if id.is_empty() || id.len() > 64 || !ok_chars || !starts_ok || id.contains("..") {
        return Err(format!(
            "`{id}` is not a valid model id: use 1-64 letters, digits, '-', '_' or '.', starting with a \
             letter or digit (no path separators or '..')"
        ));
    }
    Ok(())
}

fn check_sha256(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    if lower.len() != 64 || !lower.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("`{s}` is not a sha256 digest (64 hex characters)"));
    }
    Ok(lower)
}

fn parse_source(text: &str, ctx: &SourceContext<'_>) -> Result<Source, String> {
    let allow_http = ctx.allow_http;
    if let Some(path) = text.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "`{text}`: file:// sources need an absolute path (file:///mnt/usb/m.onnx); \
                 use file:models/m.onnx for a path relative to the manifest"
            ));
        }
        return Ok(Source::File(PathBuf::from(path)));
    }
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() || path.starts_with('/') {
            return Err(format!("`{text}`: use file:///absolute/path or file:relative/to/manifest"));
        }
        return Ok(Source::File(ctx.base.join(path)));
    }
    if text.starts_with("https://") {
        return Ok(Source::Url(text.to_string()));
    }
    if text.starts_with("http://") {
        if allow_http {
            return Ok(Source::Url(text.to_string()));
        }
        return Err(format!(
            "`{}` is plain http; use https, or set top-level `allow_http = true` for lab networks",
            crate::redact::redact_url(text)
        ));
    }
    if let Some(id) = text.strip_prefix("roboflow:") {
        let valid = id.split('/').count() == 2 && id.split('/').all(|p| !p.is_empty() && p != "..");
        if !valid {
            return Err(format!("`{text}`: expected roboflow:<dataset>/<version>"));
        }
        return Ok(Source::Roboflow(id.to_string()));
    }
    if !text.contains(':') && !text.contains('/') && check_id(text).is_ok() {
        // A bare name is a Roboflow alias (`yolov8n-640`, `rfdetr-base`).
        return Ok(Source::Roboflow(text.to_string()));
    }
    Err(format!(
        "`{}` is not a source: use https://..., file:///path, roboflow:<dataset>/<version> or a Roboflow alias",
        crate::redact::redact_url(text)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc";

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/etc/outpost/models.toml"), text.as_bytes())
    }

    fn one(extra: &str) -> String {
        format!("version = 1\n[[models]]\nid = \"faces\"\nsource = \"https://h/c.onnx\"\nsha256 = \"{SHA}\"\nsize = 10\n{extra}")
    }

    #[test]
    fn full_model_parses() {
        let m = parse(&one("mirrors = [\"https://site.local/c.onnx\"]\nfamily = \"centerface\"\ninput = [640, 480]\n")).unwrap();
        let model = &m.models[0];
        assert_eq!(model.sha256.as_deref(), Some(SHA));
        assert_eq!(model.candidates[0], Source::Url("https://site.local/c.onnx".into()));
        assert_eq!(model.candidates[1], Source::Url("https://h/c.onnx".into()));
        assert_eq!(model.input, Some([640, 480]));
    }

    #[test]
    fn origin_first_when_asked() {
        let m = parse(&one("mirrors = [\"https://m/c.onnx\"]\nmirrors_first = false\n")).unwrap();
        assert_eq!(m.models[0].candidates[0], Source::Url("https://h/c.onnx".into()));
    }

    #[test]
    fn path_traversal_in_id_is_refused() {
        let text = format!("version = 1\n[[models]]\nid = \"../../etc\"\nsource = \"https://h/x\"\nsha256 = \"{SHA}\"\nsize = 1\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("/etc/outpost/models.toml") && err.contains("../../etc") && err.contains("`id`"), "{err}");
        for bad in ["a/b", ".hidden", "a..b", ""] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_needs_allow_http() {
        let text = one("").replace("https://h/c.onnx", "http://h/c.onnx");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("allow_http") && err.contains("`source`"), "{err}");
        assert!(parse(&format!("allow_http = true\n{text}")).is_ok());
    }

    #[test]
    fn missing_pin_names_model_and_field() {
        let text = "version = 1\n[[models]]\nid = \"m\"\nsource = \"https://h/x\"\nsize = 3\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("model `m`") && err.contains("`sha256`"), "{err}");
    }

    #[test]
    fn roboflow_sources_need_no_pin() {
        let text = "version = 2\n[[models]]\nid = \"cars\"\nsource = \"roboflow:cars-abc/3\"\n[[models]]\nid = \"detr\"\nsource = \"rfdetr-base\"\n";
        let m = parse(text).unwrap();
        assert_eq!(m.models[0].source, Source::Roboflow("cars-abc/3".into()));
        assert_eq!(m.models[1].source, Source::Roboflow("rfdetr-base".into()));
    }

    #[test]
    fn unknown_field_and_duplicate_id_are_errors() {
        let err = parse(&one("sha265 = \"x\"\n")).unwrap_err().to_string();
        assert!(err.contains("sha265"), "{err}");
        let dup = format!("{}[[models]]\nid = \"faces\"\nsource = \"https://h/d\"\nsha256 = \"{SHA}\"\nsize = 1\n", one(""));
        assert!(parse(&dup).unwrap_err().to_string().contains("appears twice"));
    }

    #[test]
    fn bad_digest_and_relative_file_are_errors() {
        assert!(parse(&one("").replace(SHA, "abc")).unwrap_err().to_string().contains("`sha256`"));
        let rel = one("").replace("https://h/c.onnx", "file://models/c.onnx");
        assert!(parse(&rel).unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn relative_file_source_is_beside_the_manifest() {
        let text = one("").replace("https://h/c.onnx", "file:models/c.onnx");
        let m = parse(&text).unwrap();
        assert_eq!(m.models[0].source, Source::File(PathBuf::from("/etc/outpost/models/c.onnx")));
    }

    #[test]
    fn api_key_in_source_url_is_not_echoed() {
        let text = one("").replace("https://h/c.onnx", "ftp://h/c.onnx?api_key=SEKRET");
        let err = parse(&text).unwrap_err().to_string();
        assert!(!err.contains("SEKRET"), "{err}");
    }
}
