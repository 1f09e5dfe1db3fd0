//! `outpost doctor`: checks that this machine can run outpost as configured, and says what to fix.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::cli::Global;
use crate::config::Loaded;
use crate::exit::{Exit, Failure};
use crate::storage::{check_writable, volatility, Volatility};
use crate::provision::cache::{Cache, ResolvedCurrent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failures: usize,
}

impl Report {
    fn line(&mut self, status: Status, what: &str, detail: impl AsRef<str>) {
        let tag = match status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => {
                self.failures += 1;
                "FAIL"
            }
        };
        let _ = outln!("{tag} {what}: {}", detail.as_ref());
    }
}

pub fn run(global: &Global) -> anyhow::Result<()> {
    let mut report = Report { failures: 0 };
    let loaded = match super::load_config(global) {
        Ok(loaded) => loaded,
        Err(e) => {
            report.line(Status::Fail, "config", e.to_string());
            return Err(Failure::new(Exit::Config, "doctor: the configuration does not load").into());
        }
    };
    let file = loaded.config_file.as_ref().map_or("(none)".to_string(), |p| p.display().to_string());
    report.line(Status::Ok, "config", format!("loads (config file: {file})"));
    let board_source = &loaded.board_source;
    report.line(Status::Ok, "board", format!("{} ({board_source})", loaded.config.board));
    check_cache(&mut report, &loaded);
    check_camera(&mut report, &loaded);
    check_threads(&mut report, &loaded);
    check_accelerators(&mut report, &loaded);
    if report.failures > 0 {
        return Err(Failure::new(Exit::Runtime, format!("doctor: {} check(s) failed", report.failures)).into());
    }
    Ok(())
}

fn check_cache(report: &mut Report, loaded: &Loaded) {
    let dir = &loaded.config.cache_dir;
    match volatility(dir) {
        Ok((Volatility::Volatile(fs), probed)) => report.line(
            Status::Fail,
            "cache",
            format!(
                "{} is on {fs} ({} is a {fs} mount): models would vanish at every reboot; \
                 set cache.dir to a directory on flash (e.g. /var/lib/outpost/cache)",
                dir.display(),
                probed.display()
            ),
        ),
        Ok((Volatility::Persistent, _)) if dir.is_dir() => {
            match check_writable(dir) {
                Ok(()) => report.line(Status::Ok, "cache", format!("{} is writable, persistent storage", dir.display())),
                Err(e) => report.line(Status::Fail, "cache", format!("{} is not writable: {e}", dir.display())),
            }
            match Cache::new(dir).resolve_current() {
                Ok(ResolvedCurrent { problem: Some(problem), .. }) => report.line(
                    Status::Fail,
                    "cache",
                    format!("{problem}; `outpost provision` rewrites it"),
                ),
                Ok(ResolvedCurrent { generation: Some(gen), .. }) => report.line(
                    Status::Ok,
                    "cache",
                    format!("generation {} (manifest version {}): {} model(s)", gen.generation, gen.manifest_version, gen.models.len()),
                ),
                Ok(_) => report.line(Status::Warn, "cache", "no generation yet: run `outpost provision`".to_string()),
                Err(e) => report.line(Status::Fail, "cache", format!("cannot read the current generation: {e}")),
            }
        }
        Ok((Volatility::Persistent, probed)) => report.line(
            Status::Warn,
            "cache",
            format!(
                "{} does not exist yet; provisioning creates it (on persistent storage under {})",
                dir.display(),
                probed.display()
            ),
        ),
        Err(e) => report.line(Status::Fail, "cache", format!("cannot examine {}: {e}", dir.display())),
    }
}

fn check_camera(report: &mut Report, loaded: &Loaded) {
    if let Ok(crate::capture::SourceSpec::Rtsp(url)) = crate::capture::configured(&loaded.config) {
        return check_rtsp(report, &url, &loaded.config.camera);
    }
    let cam = &loaded.config.camera;
    let wanted = format!("{} {}x{} @ {} fps", cam.format, cam.width, cam.height, cam.fps);
    match std::fs::metadata(&cam.device) {
        Ok(m) if m.file_type().is_char_device() => match crate::capture::describe_camera(Path::new(&cam.device)) {
            Ok((name, formats)) => {
                let offered = formats.join(" ");
                let offers_wanted = formats.iter().any(|f| f.as_bytes() == cam.format.fourcc());
                let status = if offers_wanted { Status::Ok } else { Status::Warn };
                report.line(status, "camera", format!("{}: {name}, offers {offered} (will ask for {wanted})", cam.device))
            }
            Err(e) => report.line(Status::Warn, "camera", format!("{}: {e:#} (wanted {wanted})", cam.device)),
        },
        Ok(_) => report.line(Status::Warn, "camera", format!("{} exists but is not a device", cam.device)),
        Err(e) => report.line(
            Status::Warn,
            "camera",
            format!("{}: {e} (needed only for v4l2 sources; wanted {wanted})", cam.device),
        ),
    }
}

/// An RTSP camera: reachable, credentials accepted, H.264, its size and rate, a first picture.
#[cfg(feature = "video")]
fn check_rtsp(report: &mut Report, url: &crate::redact::Secret, camera: &crate::config::Camera) {
    let mut source = match crate::capture::rtsp::RtspSource::new(url, camera) {
        Ok(source) => source,
        Err(e) => return report.line(Status::Fail, "camera", format!("{e:#}")),
    };
    let shown = crate::capture::Source::name(&source).to_string();
    match source.probe(camera.stall) {
        Ok((info, frame)) => report.line(
            Status::Ok,
            "camera",
            format!(
                "{shown}: reachable, {}, {info}; first picture {}x{}",
                if camera.username.is_empty() && !url.expose().contains('@') { "no credentials" } else { "credentials accepted" },
                frame.image.width,
                frame.image.height
            ),
        ),
        Err(e) => report.line(Status::Fail, "camera", format!("{shown}: {e:#}")),
    }
}

#[cfg(not(feature = "video"))]
fn check_rtsp(report: &mut Report, _url: &crate::redact::Secret, _camera: &crate::config::Camera) {
    report.line(Status::Fail, "camera", "RTSP cameras are not in this build (cargo feature `video`)")
}

/// ONNX Runtime (library, version, providers), the GPU, TensorRT and the engine cache, for the
/// backends configured. A missing piece fails only when no configured fallback can run instead.
fn check_accelerators(report: &mut Report, loaded: &Loaded) {
    use crate::config::BackendKind;
    let inference = &loaded.config.inference;
    if !inference.notes.is_empty() {
        report.line(Status::Ok, "board accelerators", &inference.notes);
    }
    let wanted: Vec<BackendKind> = std::iter::once(inference.backend).chain(inference.fallback.iter().copied()).collect();
    let accelerated = |k: &BackendKind| matches!(k, BackendKind::OnnxRuntime | BackendKind::Cuda | BackendKind::TensorRt);
    let has_cpu_fallback = wanted.iter().any(|k| !accelerated(k));
    let missing = if has_cpu_fallback { Status::Warn } else { Status::Fail };
    #[cfg(not(feature = "onnxruntime"))]
    {
        if let Some(kind) = wanted.iter().find(|k| accelerated(k)) {
            report.line(
                missing,
                "onnxruntime",
                format!(
                    "inference.backend/fallback name {}, but this build has no ONNX Runtime (the static build): use the glibc \
                     build (scripts/build-gnu.sh){}",
                    kind.name(),
                    if has_cpu_fallback { "; the CPU fallback runs meanwhile" } else { "" }
                ),
            );
        }
    }
    #[cfg(feature = "onnxruntime")]
    {
        use crate::backend::onnxruntime::{gpu, library};
        let needs_runtime = wanted.iter().any(accelerated);
        let status = |needed: bool| if needed { missing } else { Status::Ok };
        match library::load(inference.onnxruntime_library.as_deref()) {
            Ok(runtime) => report.line(
                Status::Ok,
                "onnxruntime",
                format!("{} at {} (providers: {})", runtime.version, runtime.path.display(), runtime.providers.join(", ")),
            ),
            Err(why) => report.line(status(needs_runtime), "onnxruntime", why),
        }
        let needs_gpu = wanted.iter().any(|k| matches!(k, BackendKind::Cuda | BackendKind::TensorRt));
        match gpu::gpu() {
            Ok(g) => report.line(
                Status::Ok,
                "gpu",
                format!("{} (compute capability {}), CUDA driver {}", g.name, g.compute_capability, g.driver_cuda),
            ),
            Err(why) => report.line(status(needs_gpu), "gpu", why),
        }
        let needs_tensorrt = wanted.contains(&BackendKind::TensorRt);
        match gpu::tensorrt() {
            Ok(version) => report.line(Status::Ok, "tensorrt", format!("TensorRT {version}")),
            Err(why) => report.line(status(needs_tensorrt), "tensorrt", why),
        }
        for (kind, provider) in wanted.iter().filter_map(|&k| Some((k, crate::backend::onnxruntime::Provider::for_kind(k)?))) {
            match crate::backend::onnxruntime::provider_unavailable(provider, inference.onnxruntime_library.as_deref()) {
                None => report.line(Status::Ok, &format!("backend {}", kind.name()), "can run here"),
                Some(why) => report.line(missing, &format!("backend {}", kind.name()), why),
            }
        }
    }
    check_engines(report, loaded);
    check_half_precision(report, loaded);
}

/// The TensorRT engines in the cache, and whether each model of the current generation has one.
fn check_engines(report: &mut Report, loaded: &Loaded) {
    let root = &loaded.config.cache_dir;
    let engines = match crate::backend::engine_cache::list(root) {
        Ok(engines) => engines,
        Err(e) => return report.line(Status::Warn, "tensorrt engines", format!("{}: {e}", root.display())),
    };
    if engines.is_empty() && loaded.config.inference.backend != crate::config::BackendKind::TensorRt {
        return;
    }
    let models = Cache::new(root).current().ok().flatten().map(|g| g.models).unwrap_or_default();
    let platform = engine_platform();
    let (without, stale) = engine_coverage(&models, &engines, platform.as_ref());
    let status = if without.is_empty() { Status::Ok } else { Status::Warn };
    let mut detail = format!("{} engine(s) in {}", engines.len(), crate::backend::engine_cache::root(root).display());
    if stale > 0 {
        let (tensorrt, gpu, cc) = platform.as_ref().map(|p| (p.0.as_str(), p.1.as_str(), p.2.as_str())).unwrap_or_default();
        detail.push_str(&format!(
            "; {stale} built for another TensorRT or GPU than TensorRT {tensorrt} on {gpu} (compute capability {cc}), unused here"
        ));
    }
    if !without.is_empty() {
        detail.push_str(&format!("; none yet for {} (`outpost provision` builds them)", without.join(", ")));
    }
    report.line(status, "tensorrt engines", detail);
}

/// TensorRT's version, the GPU's name and its compute capability, where all are known: an engine
/// is used only under this part of its key (after a JetPack upgrade the old ones no longer count).
type EnginePlatform = (String, String, String);

#[cfg(feature = "onnxruntime")]
fn engine_platform() -> Option<EnginePlatform> {
    use crate::backend::onnxruntime::gpu;
    let g = gpu::gpu().as_ref().ok()?;
    let tensorrt = gpu::tensorrt().as_ref().ok()?;
    Some((tensorrt.clone(), g.name.clone(), g.compute_capability.clone()))
}

#[cfg(not(feature = "onnxruntime"))]
fn engine_platform() -> Option<EnginePlatform> {
    None
}

/// The models with no engine usable here (any engine of theirs when the platform is unknown), and
/// how many engines were built for another platform.
fn engine_coverage<'m>(
    models: &'m [crate::provision::cache::ModelRecord],
    engines: &[crate::backend::engine_cache::Engine],
    platform: Option<&EnginePlatform>,
) -> (Vec<&'m str>, usize) {
    let usable = |k: &crate::backend::engine_cache::EngineKey| {
        platform.is_none_or(|(tensorrt, gpu, cc)| k.tensorrt == *tensorrt && k.gpu == *gpu && k.compute_capability == *cc)
    };
    let keys: Vec<_> = engines.iter().filter_map(|e| e.key.as_ref()).collect();
    let stale = keys.iter().filter(|k| !usable(k)).count();
    let without = models
        .iter()
        .filter(|m| !keys.iter().any(|k| usable(k) && k.model_sha256 == m.sha256))
        .map(|m| m.id.as_str())
        .collect();
    (without, stale)
}

/// `inference.precision = "f16"` with TensorRT: the calibration image its gate needs, and what
/// the gate decided for the engines in the cache.
fn check_half_precision(report: &mut Report, loaded: &Loaded) {
    use crate::config::{BackendKind, Precision};
    let inference = &loaded.config.inference;
    let tensorrt = inference.backend == BackendKind::TensorRt || inference.fallback.contains(&BackendKind::TensorRt);
    if inference.precision != Precision::F16 || !tensorrt {
        return;
    }
    let what = "tensorrt fp16";
    let image = match &inference.calibration_image {
        None => {
            return report.line(
                Status::Warn,
                what,
                "inference.calibration_image is not set, so no fp16 engine can pass the accuracy gate and TensorRT runs \
                 f32 engines (set it to a picture from this camera that shows what the models detect)",
            )
        }
        Some(image) => image,
    };
    if let Err(e) = crate::vision::image::load(image) {
        return report.line(Status::Warn, what, format!("inference.calibration_image {e:#}; TensorRT runs f32 engines"));
    }
    let verdicts: Vec<_> = crate::backend::engine_cache::list(&loaded.config.cache_dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.verdict)
        .collect();
    let accepted = verdicts.iter().filter(|v| v.accepted).count();
    report.line(
        Status::Ok,
        what,
        format!(
            "calibration image {}; fp16 engines accepted: {accepted}, refused: {} (`outpost cache ls` says why)",
            image.display(),
            verdicts.len() - accepted
        ),
    );
}

fn check_threads(report: &mut Report, loaded: &Loaded) {
    let threads = loaded.config.inference.threads;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let status = if threads > cores { Status::Warn } else { Status::Ok };
    report.line(status, "threads", format!("inference.threads = {threads}, {cores} CPU core(s) available"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::engine_cache::{Engine, EngineKey};
    use crate::provision::cache::{ModelRecord, Trust};

    fn model(id: &str, sha256: &str) -> ModelRecord {
        ModelRecord {
            id: id.into(),
            sha256: sha256.into(),
            size: 1,
            source: format!("file:{id}.onnx"),
            trust: Trust::Pinned,
            family: None,
            classes: None,
            input: None,
            environment_sha256: None,
            environment_source: None,
        }
    }

    fn engine(model_sha256: &str, tensorrt: &str) -> Engine {
        let key = EngineKey {
            model_sha256: model_sha256.into(),
            tensorrt: tensorrt.into(),
            gpu: "Orin".into(),
            compute_capability: "8.7".into(),
            precision: "fp32".into(),
            input: [640, 640],
        };
        Engine { path: key.dir_name().into(), key: Some(key), verdict: None, bytes: 1 }
    }

    #[test]
    fn an_engine_counts_only_for_the_tensorrt_and_gpu_it_was_built_for() {
        let models = [model("faces", "aa"), model("cars", "bb")];
        let engines = [engine("aa", "8.6.2"), engine("bb", "10.3.0")];
        // After a JetPack upgrade to TensorRT 10.3: faces' engine is stale, cars' is current.
        let now = ("10.3.0".to_string(), "Orin".to_string(), "8.7".to_string());
        assert_eq!(engine_coverage(&models, &engines, Some(&now)), (vec!["faces"], 1));
        let other_gpu = ("10.3.0".to_string(), "Orin".to_string(), "7.2".to_string());
        assert_eq!(engine_coverage(&models, &engines, Some(&other_gpu)), (vec!["faces", "cars"], 2));
        // Without a GPU to compare with, any engine of the model counts.
        assert_eq!(engine_coverage(&models, &engines, None), (vec![], 0));
        assert_eq!(engine_coverage(&models, &engines[..1], None), (vec!["cars"], 0));
    }
}
