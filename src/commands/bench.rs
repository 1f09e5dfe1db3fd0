//! `outpost bench`: how long a model takes here — load, first run (with optimisation), then the
//! median and p90 of repeated runs on one prepared input (inference only, as onnxruntime is
//! timed by scripts/bench-inference.sh). Prints one JSON line. With `inference.backend = "auto"`
//! both pure-Rust engines are timed (`engines`), and the top level reports the one auto runs.
//! With more than one thread, the chosen engine is also timed on one (`single_thread_median_ms`,
//! `speedup`), so a board's owner sees what the threads buy.

use std::time::Instant;

use crate::backend::{self, choice};
use crate::cli::{BenchArgs, Global};
use crate::config::BackendKind;
use crate::detector::{Codec, Prepared, Spec};
use crate::models::ResolvedModel;
use crate::vision::families::Family;
use crate::vision::image::{self, RgbImage};

pub fn run(global: &Global, args: &BenchArgs) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let config = &loaded.config;
    let model = crate::models::resolve(config, &args.model)?;
    let family = model.family.unwrap_or(Family::Yolov8);
    let img = match &args.image {
        Some(path) => image::load(path)?,
        None => RgbImage::new(640, 640, vec![114; 640 * 640 * 3]),
    };
    let threads = config.inference.threads;
    // "auto" times both pure-Rust engines; the report's top level is the one auto runs (the
    // recorded choice for a cached model, else the faster here), `engines` has each.
    let engines: Vec<BackendKind> = match config.inference.backend {
        BackendKind::Auto if cfg!(feature = "rten") => vec![BackendKind::Tract, BackendKind::Rten],
        BackendKind::Auto => vec![BackendKind::Tract],
        kind => vec![kind],
    };
    let (mut timed, mut failed) = (Vec::new(), Vec::new());
    let several = engines.len() > 1;
    let fallbacks = crate::models::engines::engines_for(config, &model).fallbacks;
    let settings = backend::Settings::new(config, config.inference.precision).with_threads(threads);
    for kind in engines {
        let backend = backend::choose(kind, &fallbacks, &settings)?;
        match time(backend.as_ref(), &model, family, &img, args.runs) {
            Ok(t) => timed.push(t),
            // Comparing engines, one that cannot run the model is a finding, not a failure.
            Err(e) if several => failed.push(serde_json::json!({"backend": backend.name(), "error": format!("{e:#}")})),
            Err(e) => return Err(e),
        }
    }
    anyhow::ensure!(!timed.is_empty(), "no engine could run {}: {failed:?}", model.path.display());
    let recorded = match config.inference.backend {
        BackendKind::Auto => model.sha256.as_ref().and_then(|sha| choice::load(&config.cache_dir, sha, threads)),
        _ => None,
    };
    let chosen = match &recorded {
        Some(m) => timed.iter().position(|t| t.backend == m.engine).unwrap_or(0),
        None => (0..timed.len()).min_by(|&a, &b| timed[a].median_ms.total_cmp(&timed[b].median_ms)).unwrap_or(0),
    };
    let engines: Vec<serde_json::Value> = timed.iter().map(Timed::json).chain(failed).collect();
    let mut best = timed.swap_remove(chosen);
    let mut report = best.json();
    report["model"] = model.path.display().to_string().into();
    report["family"] = family.name().into();
    report["threads"] = threads.into();
    report["runs"] = args.runs.into();
    if several {
        report["engines"] = engines.into();
        report["choice"] = match &recorded {
            Some(m) => format!("recorded at provision: {}", m.note),
            None => "the faster here (not a cached model, or not measured yet)".to_string(),
        }
        .into();
    }
    if threads > 1 {
        // What the threads buy: the same engine on one thread, same input.
        let kind = best.backend.parse().unwrap_or(BackendKind::Tract);
        let single = time(backend::choose(kind, &fallbacks, &settings.with_threads(1))?.as_ref(), &model, family, &img, args.runs)?;
        report["single_thread_median_ms"] = single.median_ms.into();
        report["speedup"] = ((single.median_ms / best.median_ms * 100.0).round() / 100.0).into();
    }
    if args.profile {
        report["profile"] = profile(best.session.as_mut(), &best.input, best.height, best.width, args.runs)?;
    }
    outln!("{report}")?;
    Ok(())
}

/// One engine's timings on the prepared input, and its session (for `--profile`).
struct Timed {
    backend: &'static str,
    session: Box<dyn backend::Session>,
    input: Vec<f32>,
    height: u32,
    width: u32,
    load_s: f64,
    first_run_s: f64,
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
}

impl Timed {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "backend": self.backend,
            "input": [self.width, self.height],
            "load_s": self.load_s,
            "first_run_s": self.first_run_s,
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
            "min_ms": self.min_ms,
        })
    }
}

fn time(
    backend: &dyn backend::Backend,
    model: &ResolvedModel,
    family: Family,
    img: &RgbImage,
    runs: usize,
) -> anyhow::Result<Timed> {
    let started = Instant::now();
    let mut session = backend.prepare(&model.path)?;
    let load_s = started.elapsed().as_secs_f64();
    // Prepared as `detect` and `run` prepare it: the same Codec, so the timed input is theirs.
    let spec = Spec {
        family: Some(family),
        size: model.input,
        resize: model.resize,
        fixed: session.input().fixed_hw(),
        ..Spec::default()
    };
    let Prepared { data: input, meta } = Codec::new(spec).prepare(img, family)?;
    let (width, height) = meta.input;
    let first = Instant::now();
    session.run(&input, height, width)?;
    let first_run_s = first.elapsed().as_secs_f64();
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            session.run(&input, height, width).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<anyhow::Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(Timed {
        backend: backend.name(),
        median_ms: pick(0.5),
        p90_ms: pick(0.9),
        min_ms: times[0],
        session,
        input,
        height,
        width,
        load_s,
        first_run_s,
    })
}

/// Each operation's mean time over `runs` profiled runs: by kind of operation, and the slowest
/// nodes, with their share of the profiled total.
fn profile(
    session: &mut dyn backend::Session,
    input: &[f32],
    height: u32,
    width: u32,
    runs: usize,
) -> anyhow::Result<serde_json::Value> {
    let runs = runs.max(1);
    let mut nodes: Vec<backend::OpTime> = Vec::new();
    for _ in 0..runs {
        let Some(times) = session.profile(input, height, width)? else {
            return Ok(serde_json::json!({"error": "this backend does not report per-operation times"}));
        };
        if nodes.is_empty() {
            nodes = times;
        } else {
            nodes.iter_mut().zip(times).for_each(|(sum, t)| sum.ms += t.ms);
        }
    }
    nodes.iter_mut().for_each(|n| n.ms /= runs as f64);
    let total: f64 = nodes.iter().map(|n| n.ms).sum();
    let share = |ms: f64| if total > 0.0 { ms / total } else { 0.0 };
    let mut by_op: Vec<(String, f64, usize)> = Vec::new();
    for n in &nodes {
        match by_op.iter_mut().find(|(op, ..)| *op == n.op) {
            Some((_, ms, count)) => {
                *ms += n.ms;
                *count += 1;
            }
            None => by_op.push((n.op.clone(), n.ms, 1)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let by_op: Vec<_> = by_op
        .iter()
        .map(|(op, ms, count)| serde_json::json!({"op": op, "nodes": count, "ms": ms, "share": share(*ms)}))
        .collect();
    let slowest: Vec<_> = nodes
        .iter()
        .take(15)
        .map(|n| serde_json::json!({"node": n.node, "op": n.op, "ms": n.ms, "share": share(n.ms)}))
        .collect();
    Ok(serde_json::json!({"total_ms": total, "by_op": by_op, "slowest_nodes": slowest}))
}
