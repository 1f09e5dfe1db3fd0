//! `inference.backend = "auto"`: neither pure-Rust engine wins everywhere (rten runs yolov8n
//! faster than tract, CenterFace slower), so each model is measured once on the board itself,
//! when it enters the cache: both engines run it at its input size, their outputs must agree, and
//! the faster one is recorded in `<cache>/engines/<sha256>-t<threads>.json`. Loading reads the
//! record; nothing is measured on the way to the first frame.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Backend, InputInfo, Output, Session};
use crate::config::Precision;

/// What was measured for one model at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// `tract` or `rten`.
    pub engine: String,
    pub threads: usize,
    /// `[width, height]` the engines ran at.
    pub input: [u32; 2],
    pub tract_ms: f64,
    /// `None` when rten could not run the model (see `note`).
    pub rten_ms: Option<f64>,
    /// Largest difference between the engines' outputs, relative to the output's scale.
    pub max_difference: Option<f64>,
    /// Why the choice fell as it did, in a sentence.
    pub note: String,
    /// The outpost version that measured: a newer one measures again.
    pub outpost: String,
    /// tract in half precision against f32, when `inference.precision = "f16"` asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16: Option<HalfCheck>,
}

/// Whether half precision keeps a model's outputs: random-weight and some real models (RF-DETR)
/// drift far in f16, so it is used only where the outputs stay within [`HALF_AGREEMENT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HalfCheck {
    pub accepted: bool,
    /// Largest output difference from f32, relative to each output's scale (as `max_difference`).
    pub difference: f64,
    pub tract_f16_ms: f64,
}

/// f16 keeps ~3 decimal digits; outputs further than this from f32 move boxes and scores visibly.
pub const HALF_AGREEMENT: f64 = 1e-2;

/// Two engines agree when every output element differs by at most this, relative to the largest
/// magnitude in that output (so logits in the hundreds and probabilities in 0..1 are held alike).
#[cfg(feature = "rten")]
const AGREEMENT: f64 = 1e-3;
/// Timed runs per engine, after one untimed run that plans and warms up.
const RUNS: usize = 3;

/// The input a measurement runs: `(data, height, width)` for `[1, 3, height, width]`, made from
/// what the model declares.
pub type MakeInput<'a> = &'a dyn Fn(&InputInfo) -> anyhow::Result<(Vec<f32>, u32, u32)>;

/// Runs the model through tract and rten on the same input, checks they agree and picks the
/// faster. tract is the answer whenever rten cannot load or run the model, or disagrees with it.
pub fn measure(model: &Path, threads: usize, half: bool, make_input: MakeInput) -> anyhow::Result<Measured> {
    let mut tract = super::tract::Tract::new(threads).prepare(model)?;
    let (input, height, width) = make_input(tract.input())?;
    let (tract_ms, tract_out) = time(tract.as_mut(), &input, height, width)?;
    drop(tract);
    let mut measured = Measured {
        engine: "tract".into(),
        threads,
        input: [width, height],
        tract_ms,
        rten_ms: None,
        max_difference: None,
        note: String::new(),
        outpost: env!("CARGO_PKG_VERSION").into(),
        f16: None,
    };
    if half {
        let mut session = super::tract::Tract::new(threads).with_precision(Precision::F16).prepare(model)?;
        let (tract_f16_ms, outputs) = time(session.as_mut(), &input, height, width)?;
        let difference = difference(&tract_out, &outputs).unwrap_or(f64::INFINITY);
        measured.f16 = Some(HalfCheck { accepted: difference <= HALF_AGREEMENT, difference, tract_f16_ms });
    }
    #[cfg(feature = "rten")]
    match super::rten::Rten::new(threads).prepare(model).and_then(|mut session| time(session.as_mut(), &input, height, width)) {
        Err(e) => measured.note = format!("rten cannot run it ({e:#})"),
        Ok((rten_ms, rten_out)) => {
            measured.rten_ms = Some(rten_ms);
            match difference(&tract_out, &rten_out) {
                Err(e) => measured.note = format!("rten's outputs differ from tract's: {e}"),
                Ok(diff) => {
                    measured.max_difference = Some(diff);
                    if diff > AGREEMENT {
                        measured.note = format!("rten's outputs differ from tract's by {diff:.1e} of their scale");
                    } else if rten_ms < tract_ms {
                        measured.engine = "rten".into();
                        measured.note = format!("rten {rten_ms:.1} ms < tract {tract_ms:.1} ms");
                    } else {
                        measured.note = format!("tract {tract_ms:.1} ms <= rten {rten_ms:.1} ms");
                    }
                }
            }
        }
    }
    #[cfg(not(feature = "rten"))]
    {
        measured.note = "rten is not compiled into this build".into();
    }
    Ok(measured)
}

/// The median of [`RUNS`] timed runs, and the outputs.
fn time(session: &mut dyn Session, input: &[f32], height: u32, width: u32) -> anyhow::Result<(f64, Vec<Output>)> {
    let outputs = session.run(input, height, width)?;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        session.run(input, height, width)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[RUNS / 2], outputs))
}

/// The largest element difference over all outputs, each relative to that output's largest
/// magnitude (at least 1). Outputs are matched by position: engines name them differently.
pub fn difference(a: &[Output], b: &[Output]) -> Result<f64, String> {
    if a.len() != b.len() {
        return Err(format!("{} outputs against {}", b.len(), a.len()));
    }
    let mut worst = 0f64;
    for (x, y) in a.iter().zip(b) {
        if x.shape != y.shape {
            return Err(format!("output shape {:?} against {:?}", y.shape, x.shape));
        }
        let scale = x.data.iter().fold(1f64, |m, v| m.max(v.abs() as f64));
        for (p, q) in x.data.iter().zip(&y.data) {
            let d = if p.is_nan() || q.is_nan() { f64::INFINITY } else { (*p as f64 - *q as f64).abs() / scale };
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

pub fn record_path(cache_root: &Path, sha256: &str, threads: usize) -> PathBuf {
    cache_root.join("engines").join(format!("{sha256}-t{threads}.json"))
}

/// The recorded measurement, if one was made by this outpost version.
pub fn load(cache_root: &Path, sha256: &str, threads: usize) -> Option<Measured> {
    let bytes = std::fs::read(record_path(cache_root, sha256, threads)).ok()?;
    let measured: Measured = serde_json::from_slice(&bytes)
        .map_err(|e| log::warn!("engine record for {sha256}: {e}; measuring again at the next provision"))
        .ok()?;
    (measured.outpost == env!("CARGO_PKG_VERSION")).then_some(measured)
}

/// Written atomically (temp, fsync, rename): a power cut leaves the old record or the new one.
pub fn save(cache_root: &Path, sha256: &str, measured: &Measured) -> std::io::Result<()> {
    let dir = cache_root.join("engines");
    std::fs::create_dir_all(&dir)?;
    let name = format!("{sha256}-t{}.json", measured.threads);
    let bytes = serde_json::to_vec_pretty(measured).map_err(std::io::Error::other)?;
    crate::provision::cache::write_atomic(&dir, &name, &bytes)
}

/// The model digests that have engine records, for `cache gc`.
pub fn recorded(cache_root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let dir = cache_root.join("engines");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some((sha, _)) = name.split_once("-t") {
            found.push((sha.to_string(), path.clone()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(shape: &[usize], data: &[f32]) -> Output {
        Output { name: String::new(), shape: shape.to_vec(), data: data.to_vec() }
    }

    #[test]
    fn difference_is_relative_to_each_outputs_scale() {
        let a = [out(&[2], &[100.0, -50.0]), out(&[2], &[0.5, 0.25])];
        let b = [out(&[2], &[100.05, -50.0]), out(&[2], &[0.5, 0.2502])];
        let d = difference(&a, &b).unwrap();
        assert!((d - 5e-4).abs() < 1e-6, "{d}");
        assert!(difference(&a, &[out(&[2], &[100.0, -50.0])]).is_err());
        assert!(difference(&a[..1], &[out(&[1, 2], &[100.0, -50.0])]).is_err());
        assert_eq!(difference(&a[..1], &[out(&[2], &[f32::NAN, -50.0])]).unwrap(), f64::INFINITY);
    }

    #[test]
    fn records_round_trip_and_other_versions_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Measured {
            engine: "rten".into(),
            threads: 2,
            input: [640, 640],
            tract_ms: 80.0,
            rten_ms: Some(50.0),
            max_difference: Some(1e-5),
            note: "rten 50.0 ms < tract 80.0 ms".into(),
            outpost: env!("CARGO_PKG_VERSION").into(),
            f16: None,
        };
        save(dir.path(), "ab12", &m).unwrap();
        assert_eq!(load(dir.path(), "ab12", 2), Some(m.clone()));
        assert_eq!(load(dir.path(), "ab12", 4), None, "another thread count is another measurement");
        assert_eq!(recorded(dir.path()).unwrap().len(), 1);
        m.outpost = "0.0.1".into();
        save(dir.path(), "ab12", &m).unwrap();
        assert_eq!(load(dir.path(), "ab12", 2), None);
    }
}
