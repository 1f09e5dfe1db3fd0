//! One inference worker per model: it serves the cameras that use the model in turn, taking
//! each one's newest frame, so no camera starves another and a camera that has nothing (dead,
//! reconnecting) costs the others nothing. Results go to the shared sinks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::health::{Warning, Warnings};
use super::slot::{Slot, Taken};
use super::stats::{Stage, Stats};
use crate::capture::Frame;
use crate::detector::{Codec, Meta, Prepared};
use crate::models::registry::{InferError, LoadedModel, Outputs, Pending};
use crate::sinks::{self, Sink};
use crate::vision::detection::Thresholds;

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
    /// Prepare the next frame and decode the last while the model runs.
    pub overlap: bool,
}

/// Longest single wait on one camera's slot, so a stop is noticed.
const WAIT: Duration = Duration::from_millis(100);

/// A frame whose input the model is running: decoded and sunk once the next is handed over.
struct InFlight<'a> {
    lane: usize,
    frame: Frame,
    pending: Pending<'a>,
    /// Turning a decoded picture into RGB, before preparing.
    converting: Duration,
    submitted: Instant,
}

/// When to look for the next frame while the model runs: shortly before it can finish, less the
/// time preparing takes, so the next input is ready the moment the model is free and the frame
/// is nearly as fresh as without overlap (taken at once, it would wait a whole run in our
/// hands). Early rather than late: a late input leaves the model idle, an early one only ages
/// by the margin.
#[derive(Default)]
struct Pace {
    /// The engine's last runs, newest last.
    engine: VecDeque<Duration>,
    /// Moving average of converting and preparing one frame.
    prepare: Option<Duration>,
}

/// Engine runs remembered: the fastest of them is the soonest the running one can finish.
const PACE_RUNS: usize = 8;

impl Pace {
    fn engine_ran(&mut self, d: Duration) {
        if self.engine.len() == PACE_RUNS {
            self.engine.pop_front();
        }
        self.engine.push_back(d);
    }

    fn prepared(&mut self, d: Duration) {
        // A moving average over ~8 frames: steady, yet follows a changed input size.
        self.prepare = Some(self.prepare.map_or(d, |old| (old * 7 + d) / 8));
    }

    fn next_frame_at(&self, submitted: Instant) -> Instant {
        let soonest = self.engine.iter().min().copied().unwrap_or_default();
        // 5 % and a millisecond of margin for timer and scheduling jitter.
        let margin = soonest / 20 + Duration::from_millis(1) + self.prepare.unwrap_or_default();
        submitted + soonest.saturating_sub(margin)
    }
}

pub fn work(lanes: &[Arc<Lane>], shared: &Shared, stop: &AtomicBool) {
    let Some(first) = lanes.first() else { return };
    // All lanes of a worker share its model: one codec prepares and decodes for them all.
    let mut worker =
        Worker { lanes, shared, codec: first.model.codec(), warnings: Warnings::default(), pace: Pace::default() };
    let n = lanes.len();
    let mut due: Vec<Option<Instant>> = vec![None; n];
    let mut closed = vec![false; n];
    let mut turn = 0;
    let mut in_flight: Option<InFlight> = None;
    while !stop.load(Ordering::Relaxed) && !shared.done.load(Ordering::Relaxed) {
        let open = closed.iter().filter(|c| !**c).count();
        if open == 0 {
            break;
        }
        let now = Instant::now();
        if let Some(running) = &in_flight {
            let at = worker.pace.next_frame_at(running.submitted);
            if at > now {
                std::thread::sleep((at - now).min(WAIT));
                continue;
            }
        }
        let mut took = false;
        for k in 0..n {
            let i = (turn + k) % n;
            if closed[i] || due[i].is_some_and(|d| d > now) {
                continue;
            }
            // With one camera left and the model idle, block on it (low latency); otherwise only look.
            let wait = if open == 1 && in_flight.is_none() { WAIT } else { Duration::ZERO };
            match lanes[i].slot.take(wait) {
                Taken::Frame(frame) => {
                    if shared.limit > 0 && shared.taken.fetch_add(1, Ordering::SeqCst) >= shared.limit {
                        lanes[i].slot.recycle(frame);
                        shared.done.store(true, Ordering::SeqCst);
                        break;
                    }
                    if lanes[i].max_fps > 0.0 {
                        due[i] = Some(Instant::now() + Duration::from_secs_f64(1.0 / lanes[i].max_fps));
                    }
                    in_flight = worker.advance(i, frame, in_flight.take());
                    if !shared.overlap {
                        worker.complete(in_flight.take());
                    }
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
            if in_flight.is_some() {
                // No new frame yet: the running one's answer is not held back for it.
                worker.complete(in_flight.take());
                continue;
            }
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
    worker.complete(in_flight.take());
}

/// One model's worker: its lanes, and the codec that prepares and decodes their frames on this
/// thread while the model's own thread runs the engine.
struct Worker<'a> {
    lanes: &'a [Arc<Lane>],
    shared: &'a Shared,
    codec: Codec,
    warnings: Warnings,
    pace: Pace,
}

/// A frame made RGB and prepared for the model.
struct Ready {
    lane: usize,
    frame: Frame,
    /// Turning a decoded picture into RGB, before preparing.
    converting: Duration,
    prepared: Prepared,
}

/// A frame the model has finished with.
struct Done {
    lane: usize,
    frame: Frame,
    converting: Duration,
    ran: Outputs,
    meta: Meta,
}

impl<'a> Worker<'a> {
    /// Prepares lane `index`'s new `frame`, waits for the model to finish `running` (if any),
    /// hands it the new input at once, and only then decodes and sinks the finished frame, while
    /// the model runs. Returns what the model runs now.
    fn advance(&mut self, index: usize, frame: Frame, running: Option<InFlight<'a>>) -> Option<InFlight<'a>> {
        let Some(next) = self.prepare(index, frame) else {
            self.complete(running);
            return None;
        };
        let overlapped = running.is_some();
        let done = running.map(|r| self.wait(r));
        let now_running = self.submit(next, overlapped);
        if let Some(done) = done {
            self.finish(done);
        }
        now_running
    }

    /// Waits for a frame's outputs, then decodes and sinks it.
    fn complete(&mut self, running: Option<InFlight>) {
        if let Some(running) = running {
            let done = self.wait(running);
            self.finish(done);
        }
    }

    fn wait(&mut self, running: InFlight) -> Done {
        let (ran, data, meta) = running.pending.wait();
        self.codec.recycle(data);
        if let Ok((_, engine)) = &ran {
            self.pace.engine_ran(*engine);
        }
        Done { lane: running.lane, frame: running.frame, converting: running.converting, ran, meta }
    }

    /// `None` (counted, logged) when the frame cannot be made an input.
    fn prepare(&mut self, index: usize, mut frame: Frame) -> Option<Ready> {
        let lane = &self.lanes[index];
        // Decoded video becomes RGB here, for the frames the model takes (counted as preprocessing).
        let family = lane.model.family();
        let prepared = frame.rgb().and_then(|converting| Ok((converting, self.codec.prepare(&frame.image, family)?)));
        match prepared {
            Ok((converting, prepared)) => {
                self.pace.prepared(converting + prepared.meta.preprocess);
                Some(Ready { lane: index, frame, converting, prepared })
            }
            Err(e) => {
                self.skip(index, frame, &format!("{e:#}"));
                None
            }
        }
    }

    /// Hands a prepared frame to the model; `overlapped` when it was prepared while the model ran.
    fn submit(&mut self, next: Ready, overlapped: bool) -> Option<InFlight<'a>> {
        let lanes = self.lanes;
        let lane = &lanes[next.lane];
        match lane.model.submit(next.prepared) {
            Ok(pending) => {
                if overlapped {
                    let stats = Stats { overlapped: 1, ..Stats::default() };
                    lane.processed.lock().unwrap_or_else(|e| e.into_inner()).merge(&stats);
                }
                let submitted = Instant::now();
                Some(InFlight { lane: next.lane, frame: next.frame, pending, converting: next.converting, submitted })
            }
            Err((e, data)) => {
                self.codec.recycle(data);
                self.skip(next.lane, next.frame, &describe(e));
                None
            }
        }
    }

    /// One frame's outputs decoded and handed to the sinks; failures are counted, never fatal.
    fn finish(&mut self, done: Done) {
        let Done { lane: index, frame, converting, ran, meta } = done;
        let lane = &self.lanes[index];
        let mut stats = Stats::default();
        let codec = &mut self.codec;
        let decoded = ran.and_then(|(outputs, engine)| {
            codec.thresholds = lane.thresholds;
            let decoding = Instant::now();
            let response = codec.decode(&meta, &outputs).map_err(InferError::Failed)?;
            Ok((response, engine, decoding.elapsed()))
        });
        match decoded {
            Err(e) => {
                stats.frame_errors += 1;
                if let Some(more) = self.warnings.due(Warning::Inference) {
                    log::warn!("{}: frame {}: inference failed: {}{more}", lane.camera, frame.seq, describe(e));
                }
            }
            Ok((response, engine, decoding)) => {
                stats.stage(Stage::Preprocess, converting + meta.preprocess);
                stats.stage(Stage::Infer, engine);
                stats.stage(Stage::Postprocess, decoding);
                let sinking = Instant::now();
                let json = sinks::json_line(&response, frame.seq, frame.captured_at, &lane.source, &lane.camera);
                let out = sinks::Output { frame_id: frame.seq, response: &response, json: &json, image: &frame.image };
                let mut sinks = self.shared.sinks.lock().unwrap_or_else(|e| e.into_inner());
                for sink in sinks.iter_mut() {
                    if let Err(e) = sink.write(&out) {
                        stats.sink_errors += 1;
                        if let Some(more) = self.warnings.due(Warning::Sink) {
                            log::warn!("sink {}: {}: frame {}: {e:#}{more}", sink.name(), lane.camera, frame.seq);
                        }
                    }
                }
                drop(sinks);
                stats.stage(Stage::Sinks, sinking.elapsed());
                stats.processed += 1;
                let mut first = self.shared.first.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some((lane.camera.clone(), frame.image.width, frame.image.height));
                }
            }
        }
        lane.processed.lock().unwrap_or_else(|e| e.into_inner()).merge(&stats);
        lane.slot.recycle(frame);
    }

    /// A frame that never reached the model: counted, logged (rate-limited), its buffer returned.
    fn skip(&mut self, index: usize, frame: Frame, why: &str) {
        let lane = &self.lanes[index];
        if let Some(more) = self.warnings.due(Warning::Inference) {
            log::warn!("{}: frame {}: {why}{more}", lane.camera, frame.seq);
        }
        let stats = Stats { frame_errors: 1, ..Stats::default() };
        lane.processed.lock().unwrap_or_else(|e| e.into_inner()).merge(&stats);
        lane.slot.recycle(frame);
    }
}

fn describe(e: InferError) -> String {
    match e {
        InferError::Failed(e) => format!("{e:#}"),
        InferError::QueueFull => "the model's queue is full".into(),
    }
}
