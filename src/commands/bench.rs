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
    let report = serde_json::json!({
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
    outln!("{report}")?;
    Ok(())
}
