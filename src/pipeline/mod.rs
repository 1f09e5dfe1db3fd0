//! The frame loop of `outpost run`, for one camera or several: a capture thread per camera fills
//! that camera's latest-frame slot ([`feed`]); one inference worker per model serves its cameras
//! in turn and hands results to every sink ([`worker`]); this thread supervises — readiness and
//! the watchdog, health, counters and stage timings per camera — until the sources end,
//! `frames` are done, or a stop is requested. Only startup errors are fatal: a bad frame, a
//! failed sink or a lost camera is logged, counted and skipped (cameras are reopened with a
//! growing delay), and one camera's trouble never stalls another's.

mod feed;
pub mod health;
pub mod slot;
pub mod stats;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capture::Source;
use crate::models::registry::LoadedModel;
use crate::notify::Notifier;
use crate::sinks::Sink;
use crate::vision::detection::Thresholds;
use health::{warnings_once, Health, InSource};
use slot::Slot;
use stats::{Stage, Stats};
use worker::{Lane, Shared};

/// One camera to run: its source and the model that looks at it.
pub struct Feed {
    /// Shown in the JSON lines (`camera`) and the stats.
    pub camera: String,
    pub source: Box<dyn Source>,
    pub model: Arc<LoadedModel>,
    pub thresholds: Thresholds,
    /// 0 = unlimited.
    pub max_fps: f64,
}

pub struct Options {
    /// Stop after this many processed frames, over all cameras (0 = never).
    pub frames: u64,
    /// Zero = only at exit.
    pub stats_interval: Duration,
    /// First delay before reopening a failed camera.
    pub reopen: Duration,
    /// How long the sinks may take to flush at the end.
    pub stop_timeout: Duration,
    /// Every frame failing (inference or decoding) for this long ends the run with an error, so
    /// a unit that outputs nothing is not reported healthy; zero = never.
    pub fail_after: Duration,
    /// Prepare each camera's next frame and decode the last while the model runs.
    pub overlap: bool,
    /// Where the counters are published (the live view's /metrics): the total, per camera.
    pub publish: Option<(Arc<Mutex<Stats>>, Arc<Mutex<Vec<(String, Stats)>>>)>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// A stop was requested (SIGTERM/SIGINT), as opposed to the sources or `frames` ending it.
    pub stop_requested: bool,
}

/// How often the supervisor looks at the workers and counters.
const TICK: Duration = Duration::from_millis(50);

/// Runs until every source ends, `frames` are done, or `stop` is set; returns the final counts.
pub fn run(
    feeds: Vec<Feed>,
    sinks: Vec<Box<dyn Sink>>,
    opts: &Options,
    stop: &Arc<AtomicBool>,
    notifier: &mut Notifier,
) -> anyhow::Result<Outcome> {
    let shared = Arc::new(Shared {
        sinks: Mutex::new(sinks),
        taken: AtomicU64::new(0),
        limit: opts.frames,
        done: AtomicBool::new(false),
        first: Mutex::new(None),
        overlap: opts.overlap,
    });
    let names: Vec<String> = feeds.iter().map(|f| f.source.name().to_string()).collect();
    let mut lanes = Vec::new();
    let mut captures = Vec::new();
    for feed in feeds {
        let lane = Arc::new(Lane {
            camera: feed.camera.into(),
            source: feed.source.name().into(),
            slot: Arc::new(Slot::default()),
            captured: Arc::new(Mutex::new(Stats::default())),
            processed: Mutex::new(Stats::default()),
            model: feed.model,
            thresholds: feed.thresholds,
            max_fps: feed.max_fps,
        });
        let in_source = Arc::new(InSource::default());
        let (slot, counts, stop, reopen, inside) =
            (lane.slot.clone(), lane.captured.clone(), stop.clone(), opts.reopen, in_source.clone());
        let source = feed.source;
        captures.push((
            std::thread::Builder::new()
                .name(format!("capture {}", lane.camera))
                .spawn(move || feed::capture_loop(source, &slot, &counts, &stop, reopen, &inside))?,
            in_source,
        ));
        lanes.push(lane);
    }
    // One worker per model, serving the cameras that use it.
    let mut workers = Vec::new();
    let mut models: Vec<&Arc<LoadedModel>> = Vec::new();
    for lane in &lanes {
        if !models.iter().any(|m| Arc::ptr_eq(m, &lane.model)) {
            models.push(&lane.model);
        }
    }
    for model in models {
        let group: Vec<Arc<Lane>> = lanes.iter().filter(|l| Arc::ptr_eq(&l.model, model)).cloned().collect();
        let (shared, stop) = (shared.clone(), stop.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("infer {}", model.id))
                .spawn(move || worker::work(&group, &shared, &stop))?,
        );
    }

    let shown = if names.len() == 1 { names[0].clone() } else { format!("{} cameras", names.len()) };
    let started = Instant::now();
    let mut last_report = (Instant::now(), Stats::default());
    let mut last_status = Instant::now();
    let mut ready = false;
    notifier.status(&format!("waiting for the first frame from {shown}"));
    let mut health = Health::new(opts.fail_after);
    let mut stuck_reported = false;
    let mut failure = None;

    while !stop.load(Ordering::Relaxed) && !shared.done.load(Ordering::Relaxed) {
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        let now = total(&lanes, &shared);
        publish(opts, &lanes, &now);
        if let Some(why) = health.check(&now) {
            log::error!("{why}");
            notifier.status(&why);
            failure = Some(why);
            break;
        }
        // The watchdog is fed only while capture makes progress too: a thread stuck in a driver
        // call (not the bounded frame wait) must let systemd restart the unit.
        let stuck = notifier
            .watchdog_period()
            .and_then(|period| captures.iter().find_map(|(_, inside)| inside.stuck_for(period * 2)));
        match stuck {
            None => notifier.watchdog(),
            Some(for_how_long) => warnings_once(&mut stuck_reported, || {
                log::error!(
                    "a capture thread has been stuck in one call for {}s; no longer feeding the watchdog",
                    for_how_long.as_secs()
                )
            }),
        }
        if !ready {
            if let Some((camera, width, height)) = shared.first.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                notifier.ready(&format!("running: {shown}"));
                log::info!("first frame: {width}x{height} from camera {camera}");
                ready = true;
            }
        }
        if !opts.stats_interval.is_zero() && last_report.0.elapsed() >= opts.stats_interval {
            let elapsed = last_report.0.elapsed();
            log::info!("stats (last {:.0}s): {}", elapsed.as_secs_f64(), now.since(&last_report.1).line(elapsed));
            last_report = (Instant::now(), now.clone());
        }
        if last_status.elapsed() >= Duration::from_secs(5) {
            let fps = now.processed as f64 / started.elapsed().as_secs_f64().max(1e-9);
            notifier.status(&format!(
                "running: {shown}, {fps:.1} fps, {} frames, {} dropped",
                now.processed, now.dropped
            ));
            last_status = Instant::now();
        }
        std::thread::sleep(TICK);
    }

    // Wind down: stop capture (each thread waits at most one read) and the workers (each
    // finishes the frame in hand), then flush the sinks.
    let stop_requested = stop.load(Ordering::Relaxed);
    notifier.stopping("stopping: flushing sinks");
    stop.store(true, Ordering::Relaxed);
    for lane in &lanes {
        lane.slot.close();
    }
    for (capture, _) in captures {
        if capture.join().is_err() {
            log::error!("a capture thread panicked");
        }
    }
    for worker in workers {
        if worker.join().is_err() {
            log::error!("an inference worker panicked");
        }
    }
    // A frame still in a slot was captured and will not be processed: it counts as dropped.
    for lane in &lanes {
        lane.slot.discard();
    }
    let deadline = Instant::now() + opts.stop_timeout;
    let mut flush_errors = 0;
    for sink in shared.sinks.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
        if let Err(e) = sink.flush(deadline) {
            flush_errors += 1;
            log::warn!("sink {}: flush failed: {e:#}", sink.name());
        }
    }
    let mut total = total(&lanes, &shared);
    total.sink_errors += flush_errors;
    let elapsed = started.elapsed();
    if lanes.len() > 1 {
        for lane in &lanes {
            log::info!("summary camera={} ({:.1}s): {}", lane.camera, elapsed.as_secs_f64(), of_lane(lane).line(elapsed));
        }
    }
    log::info!("summary ({:.1}s): {}", elapsed.as_secs_f64(), total.line(elapsed));
    publish(opts, &lanes, &total);
    if let Some(why) = failure {
        return Err(crate::exit::Failure::new(crate::exit::Exit::Runtime, why).into());
    }
    Ok(Outcome { stats: total, stop_requested })
}

fn publish(opts: &Options, lanes: &[Arc<Lane>], total: &Stats) {
    if let Some((all, per_camera)) = &opts.publish {
        *all.lock().unwrap_or_else(|e| e.into_inner()) = total.clone();
        *per_camera.lock().unwrap_or_else(|e| e.into_inner()) =
            lanes.iter().map(|l| (l.camera.to_string(), of_lane(l))).collect();
    }
}

/// One camera's counts: its capture thread's, its slot's and its worker's.
fn of_lane(lane: &Lane) -> Stats {
    let capture = lane.captured.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut s = lane.processed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.captured = capture.captured;
    s.capture_errors = capture.capture_errors;
    s.frame_errors += capture.frame_errors;
    for stage in [Stage::Capture, Stage::Convert] {
        s.stages[stage as usize] = capture.stages[stage as usize];
    }
    s.dropped = lane.slot.dropped();
    s
}

/// Every camera's counts added up, with the sinks' own counters.
fn total(lanes: &[Arc<Lane>], shared: &Shared) -> Stats {
    let mut s = Stats::default();
    for lane in lanes {
        s.merge(&of_lane(lane));
    }
    for sink in shared.sinks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let (dropped, failed) = sink.counters();
        s.webhook_dropped += dropped;
        s.sink_errors += failed;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::feed::capture_loop;
    use super::slot::Taken;
    use super::*;
    use crate::capture::{Frame, Next};
    use crate::vision::image::RgbImage;

    /// A camera that delivers frames, then vanishes for `outage` reads (as an unplugged USB
    /// camera does), then works again once reopened.
    struct FlakyCamera {
        reads: u32,
        outage: std::ops::Range<u32>,
        resets: Arc<Mutex<u32>>,
    }

    impl Source for FlakyCamera {
        fn name(&self) -> &str {
            "flaky"
        }
        fn is_live(&self) -> bool {
            true
        }
        fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next> {
            self.reads += 1;
            if self.outage.contains(&self.reads) {
                anyhow::bail!("/dev/video0: No such device");
            }
            frame.image = RgbImage::new(2, 2, vec![0; 12]);
            std::thread::sleep(Duration::from_millis(2));
            Ok(Next::Frame)
        }
        fn reset(&mut self) {
            *self.resets.lock().unwrap() += 1;
        }
    }

    #[test]
    fn a_vanished_camera_is_reopened_and_capture_goes_on() {
        let resets = Arc::new(Mutex::new(0));
        let camera = FlakyCamera { reads: 0, outage: 4..7, resets: resets.clone() };
        let slot = Arc::new(Slot::default());
        let shared = Arc::new(Mutex::new(Stats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let capture = {
            let (slot, shared, stop) = (slot.clone(), shared.clone(), stop.clone());
            std::thread::spawn(move || {
                capture_loop(Box::new(camera), &slot, &shared, &stop, Duration::from_millis(5), &InSource::default())
            })
        };
        // Frames keep coming after the outage.
        let until = Instant::now() + Duration::from_secs(10);
        while shared.lock().unwrap().captured < 20 && Instant::now() < until {
            if let Taken::Frame(f) = slot.take(Duration::from_millis(10)) {
                slot.recycle(f);
            }
        }
        stop.store(true, Ordering::Relaxed);
        capture.join().unwrap();
        let s = shared.lock().unwrap().clone();
        assert!(s.captured >= 20, "capture stopped after the outage: {s:?}");
        assert_eq!(s.capture_errors, 3);
        assert_eq!(*resets.lock().unwrap(), 3, "the device is reopened after each failure");
        assert!(slot.is_closed());
    }
}
