//! `outpost bench` through the real binary: the timing report, and `--profile`, which is how the
//! tract hot spots outpost rewrites (YOLOv8's DFL softmax, stride-2 convs) are held down.

mod support;

use std::sync::Mutex;

use serde_json::Value;
use support::{fixtures, run, Sandbox};

fn bench(sandbox: &Sandbox, engine: &str, args: &[&str]) -> Value {
    bench_on(sandbox, engine, 1, args)
}

/// The tests here time things: one at a time, so they do not compete for the cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn bench_on(sandbox: &Sandbox, engine: &str, threads: usize, args: &[&str]) -> Value {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = fixtures().join("yolov8n_random.onnx").display().to_string();
    let threads = threads.to_string();
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_INFERENCE_BACKEND", engine);
    cmd.args(["--board", "x86_64-dev", "--threads", &threads, "bench", "--model-file", &model, "--family", "yolov8"]);
    cmd.args(["--input", "640x640"]).args(args);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn report_names_backend_threads_and_latencies() {
    let s = Sandbox::new();
    let v = bench(&s, "tract", &["--runs", "2"]);
    assert_eq!(v["backend"], "tract");
    assert!(v.get("engines").is_none(), "one engine forced, one timed: {v}");
    assert_eq!(v["threads"], 1);
    assert_eq!(v["input"], serde_json::json!([640, 640]));
    let (min, median, p90) = (v["min_ms"].as_f64().unwrap(), v["median_ms"].as_f64().unwrap(), v["p90_ms"].as_f64().unwrap());
    assert!(0.0 < min && min <= median && median <= p90, "{v}");
    assert!(v.get("profile").is_none(), "profile only when asked");
    assert!(v.get("speedup").is_none(), "one thread: nothing to compare: {v}");
}

#[test]
fn several_threads_report_the_speed_up_over_one_and_get_one() {
    let s = Sandbox::new();
    // The second thread must do work: a binary without multithreading (or one left on one
    // thread) shows ~1.0 every time. Here 1.2-1.7, but this VM's host takes CPU time from it
    // (steal) for stretches of a minute or more, and then two threads are no faster than one
    // (CI, nothing else running: 0.74-1.01 in five tries in a row; minutes later 1.37). So the
    // tries go on for up to two minutes, five of five runs at least; the bar stays at 1.1.
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 5 || started.elapsed() < std::time::Duration::from_secs(120) {
        let v = bench_on(&s, "tract", 2, &["--runs", "5"]);
        assert_eq!(v["threads"], 2);
        let (single, median) = (v["single_thread_median_ms"].as_f64().unwrap(), v["median_ms"].as_f64().unwrap());
        let speedup = v["speedup"].as_f64().unwrap_or_else(|| panic!("{v}"));
        assert!((speedup - single / median).abs() < 0.01, "{v}");
        if speedup > 1.1 {
            return;
        }
        seen.push(speedup);
    }
    panic!("2 threads barely faster than 1 in {} tries over two minutes: speed-ups {seen:?}", seen.len());
}

#[test]
fn auto_times_both_engines_and_reports_the_faster() {
    let s = Sandbox::new();
    let v = bench(&s, "auto", &["--runs", "2"]);
    let engines = v["engines"].as_array().unwrap_or_else(|| panic!("{v}"));
    let median = |name: &str| engines.iter().find(|e| e["backend"] == name).and_then(|e| e["median_ms"].as_f64());
    let (tract, rten) = (median("tract").unwrap(), median("rten").unwrap());
    assert_eq!(v["backend"], if rten < tract { "rten" } else { "tract" }, "{v}");
    assert_eq!(v["median_ms"].as_f64().unwrap(), tract.min(rten));
    assert!(v["choice"].as_str().unwrap().contains("faster here"), "{v}");
}

#[test]
fn profile_shows_the_dfl_softmax_rewritten_and_small() {
    let s = Sandbox::new();
    let v = bench(&s, "tract", &["--runs", "3", "--profile"]);
    let profile = &v["profile"];
    let total = profile["total_ms"].as_f64().unwrap();
    assert!(total > 0.0, "{profile}");
    let by_op = profile["by_op"].as_array().unwrap();
    let share_of = |op: &str| by_op.iter().find(|o| o["op"] == op).map(|o| o["share"].as_f64().unwrap());
    // tract's own Softmax would take the strided DFL softmax down its scalar path (27 % of the run).
    assert_eq!(share_of("Softmax"), None, "{profile}");
    let dfl = share_of("OutpostStridedSoftmax").unwrap_or_else(|| panic!("no strided softmax op: {profile}"));
    assert!(dfl < 0.05, "DFL softmax takes {:.1} % of the run: {profile}", dfl * 100.0);
    // /conv_8 (16→32, stride 2) runs as im2col + matrix product, not DirectSpatialConv.
    let direct: Vec<&Value> =
        profile["slowest_nodes"].as_array().unwrap().iter().filter(|n| n["node"] == "/conv_8_node").collect();
    assert!(direct.iter().all(|n| n["op"] != "DirectSpatialConv"), "{profile}");
    let shares: f64 = by_op.iter().map(|o| o["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "shares add up to {shares}");
}

#[test]
fn unknown_model_file_is_a_clear_error() {
    let s = Sandbox::new();
    let mut cmd = s.outpost();
    cmd.args(["bench", "--model-file", "/nonexistent/model.onnx", "--profile"]);
    let out = run(&mut cmd);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/nonexistent/model.onnx"), "{}", out.stderr);
}
