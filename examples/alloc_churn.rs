//! Allocation pattern of per-frame inference: tensor-sized buffers (hundreds of KiB to MiB)
//! allocated, touched and freed every run, plus small bookkeeping allocations, on two threads.
//! Used by `scripts/bench-allocator.sh` to compare musl's malloc with mimalloc.
//!
//! usage: alloc_churn [RUNS]    prints "runs=N seconds=S"

#[cfg(all(target_env = "musl", not(feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

/// Intermediate tensor sizes of a small detector at 640x640 input (f32 elements).
const TENSOR_ELEMENTS: &[usize] = &[16 * 320 * 320, 32 * 160 * 160, 64 * 80 * 80, 128 * 40 * 40, 84 * 8400];

fn one_run(seed: usize) -> f32 {
    let mut acc = 0.0f32;
    for (i, &n) in TENSOR_ELEMENTS.iter().enumerate() {
        let mut t = vec![0.0f32; n];
        // Touch every page, as a convolution writing its output does.
        for j in (0..n).step_by(1024) {
            t[j] = (seed + i + j) as f32;
        }
        acc += t[n / 2];
        let boxes: Vec<[f32; 6]> = (0..64).map(|k| [k as f32; 6]).collect();
        acc += boxes.len() as f32;
    }
    acc
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(400);
    let start = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|w| std::thread::spawn(move || (0..runs / 2).map(|r| one_run(w * runs + r)).sum::<f32>()))
        .collect();
    let total: f32 = workers.into_iter().map(|h| h.join().unwrap()).sum();
    println!("runs={runs} seconds={:.3} checksum={total}", start.elapsed().as_secs_f64());
}
