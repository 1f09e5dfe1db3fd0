//! One inference worker per model: it serves the cameras that use the model in turn, taking
//! each one's newest frame, so no camera starves another and a camera that has nothing (dead,
//! reconnecting) costs the others nothing. Results go to the shared sinks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::health::{Warning, Warnings};
use super::slot::{Slot, Taken};
use super::stats::{Stage, Stats};
use crate::capture::Frame;
use crate::models::registry::{InferError, LoadedModel};
use crate::sinks::{self, Output, Sink};
use crate::vision::detection::Thresholds;
use crate::vision::image::RgbImage;

/// One camera as the workers and the supervisor see it.
pub struct Lane {
    /// The camera's name (`[[cameras]]` name), in the JSON lines and stats.
    pub camera: Arc<str>,
    /// The source without credentials.
    pub source: Arc<str>,
    pub slot: Arc<Slot>,
    /// The capture thread's counters.
    pub captured: Arc<Mutex<Stats>>,
    /// This lane's inference and sink counters.
    pub processed: Mutex<Stats>,
    pub model: Arc<LoadedModel>,
    pub thresholds: Thresholds,
    /// 0 = unlimited.
    pub max_fps: f64,
}

/// What all workers share.
pub struct Shared {
    pub sinks: Mutex<Vec<Box<dyn Sink>>>,
    /// Frames taken for processing, against `limit` (0 = no limit).
    pub taken: AtomicU64,
    pub limit: u64,
    /// `limit` reached.
    pub done: AtomicBool,
    /// The first processed frame, for the ready notification: camera, width, height.
    pub first: Mutex<Option<(Arc<str>, u32, u32)>>,
}

/// Longest single wait on one camera's slot, so a stop is noticed.
const WAIT: Duration = Duration::from_millis(100);

pub fn work(lanes: &[Arc<Lane>], shared: &Shared, stop: &AtomicBool) {
    let n = lanes.len();
    let mut due: Vec<Option<Instant>> = vec![None; n];
    let mut closed = vec![false; n];
    let mut turn = 0;
    let mut warnings = Warnings::default();
    while !stop.load(Ordering::Relaxed) && !shared.done.load(Ordering::Relaxed) {
        let open = closed.iter().filter(|c| !**c).count();
        if open == 0 {
            return;
        }
        let now = Instant::now();
        let mut took = false;
        for k in 0..n {
            let i = (turn + k) % n;
            if closed[i] || due[i].is_some_and(|d| d > now) {
                continue;
            }
            // With one camera left, block on it (low latency); with several, only look.
            let wait = if open == 1 { WAIT } else { Duration::ZERO };
            match lanes[i].slot.take(wait) {
                Taken::Frame(frame) => {
                    if shared.limit > 0 && shared.taken.fetch_add(1, Ordering::SeqCst) >= shared.limit {
                        lanes[i].slot.recycle(frame);
                        shared.done.store(true, Ordering::SeqCst);
                        return;
                    }
                    if lanes[i].max_fps > 0.0 {
                        due[i] = Some(Instant::now() + Duration::from_secs_f64(1.0 / lanes[i].max_fps));
                    }
                    let frame = process(&lanes[i], frame, shared, &mut warnings);
                    lanes[i].slot.recycle(frame);
                    if shared.limit > 0 && shared.taken.load(Ordering::SeqCst) >= shared.limit {
                        shared.done.store(true, Ordering::SeqCst);
                    }
                    // The next round starts after this camera: round-robin.
                    turn = i + 1;
                    took = true;
                    break;
                }
                Taken::Empty => {}
                Taken::Closed => closed[i] = true,
            }
        }
        if !took {
            // Nothing ready: sleep until the earliest camera is due, briefly when several are
            // open and none has a frame yet.
            let next_due = (0..n).filter(|&i| !closed[i]).filter_map(|i| due[i]).min();
            let pause = match next_due {
                Some(d) if d > now => (d - now).min(WAIT),
                _ if open > 1 => Duration::from_millis(2),
                _ => Duration::ZERO,
            };
            std::thread::sleep(pause);
        }
    }
}

/// One frame through the model and the sinks; failures are counted, never fatal.
fn process(lane: &Lane, mut frame: Frame, shared: &Shared, warnings: &mut Warnings) -> Frame {
    let mut stats = Stats::default();
    // Decoded video becomes RGB here, for the frames the model takes (counted as preprocessing).
    let converting = match frame.rgb() {
        Ok(took) => took,
        Err(e) => {
            stats.frame_errors += 1;
            if let Some(more) = warnings.due(Warning::Inference) {
                log::warn!("{}: frame {}: {e:#}{more}", lane.camera, frame.seq);
            }
            lane.processed.lock().unwrap_or_else(|e| e.into_inner()).merge(&stats);
            return frame;
        }
    };
    let image = std::mem::replace(&mut frame.image, RgbImage::new(0, 0, Vec::new()));
    let (width, height) = (image.width, image.height);
    let (result, image) = lane.model.infer_timed(image, lane.thresholds);
    frame.image = image;
    match result {
        Err(e) => {
            stats.frame_errors += 1;
            if let Some(more) = warnings.due(Warning::Inference) {
                let e = match e {
                    InferError::Failed(e) => format!("{e:#}"),
                    InferError::QueueFull => "the model's queue is full".into(),
                };
                log::warn!("{}: frame {}: inference failed: {e}{more}", lane.camera, frame.seq);
            }
        }
        Ok((response, times)) => {
            stats.stage(Stage::Preprocess, converting + times.preprocess);
            stats.stage(Stage::Infer, times.infer);
            stats.stage(Stage::Postprocess, times.postprocess);
            let sinking = Instant::now();
            let json = sinks::json_line(&response, frame.seq, frame.captured_at, &lane.source, &lane.camera);
            let out = Output { frame_id: frame.seq, response: &response, json: &json, image: &frame.image };
            let mut sinks = shared.sinks.lock().unwrap_or_else(|e| e.into_inner());
            for sink in sinks.iter_mut() {
                if let Err(e) = sink.write(&out) {
                    stats.sink_errors += 1;
                    if let Some(more) = warnings.due(Warning::Sink) {
                        log::warn!("sink {}: {}: frame {}: {e:#}{more}", sink.name(), lane.camera, frame.seq);
                    }
                }
            }
            drop(sinks);
            stats.stage(Stage::Sinks, sinking.elapsed());
            stats.processed += 1;
            let mut first = shared.first.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = Some((lane.camera.clone(), width, height));
            }
        }
    }
    lane.processed.lock().unwrap_or_else(|e| e.into_inner()).merge(&stats);
    frame
}
