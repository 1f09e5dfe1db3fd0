//! `outpost bench`: how long a model takes here — load, first run (with optimisation), then the
//! median and p90 of repeated runs on one prepared input (inference only, as onnxruntime is
//! timed by scripts/bench-inference.sh). Prints one JSON line.

use std::time::Instant;

use crate::backend;
use crate::cli::{BenchArgs, Global};
use crate::vision::families::Family;
use crate::vision::image::{self, RgbImage};
use crate::vision::preprocess::Preprocessor;

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
    let started = Instant::now();
    let backend = backend::choose(config.inference.backend, &config.inference.fallback, threads)?;
    let mut session = backend.prepare(&model.path)?;
    let load_s = started.elapsed().as_secs_f64();
    let mut plan = family.input_plan(model.input, session.input().fixed_hw(), &img);
    if let Some(resize) = model.resize {
        plan.resize = resize;
    }
    let mut input = Vec::new();
    Preprocessor::default().run(&img, plan.width, plan.height, plan.resize, plan.norm, &mut input)?;
    let first = Instant::now();
    session.run(&input, plan.height, plan.width)?;
    let first_run_s = first.elapsed().as_secs_f64();
    let mut times: Vec<f64> = (0..args.runs)
        .map(|_| {
            let t = Instant::now();
            session.run(&input, plan.height, plan.width).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<anyhow::Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let mut report = serde_json::json!({
        "model": model.path.display().to_string(),
        "backend": backend.name(),
        "family": family.name(),
        "threads": threads,
        "input": [plan.width, plan.height],
        "load_s": load_s,
        "first_run_s": first_run_s,
        "runs": args.runs,
        "median_ms": pick(0.5),
        "p90_ms": pick(0.9),
        "min_ms": times[0],
    });
    if args.profile {
        report["profile"] = profile(session.as_mut(), &input, plan.height, plan.width, args.runs)?;
    }
    outln!("{report}")?;
    Ok(())
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
