//! The frame loop of `outpost run`: a capture thread fills the latest-frame slot; this thread
//! takes the newest frame, runs the model, hands the result to every sink, and keeps count.
//! Only startup errors are fatal: a bad frame, a failed sink or a lost camera is logged,
//! counted and skipped (cameras are reopened with a growing delay).

pub mod health;
pub mod slot;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capture::{Frame, FrameError, Next, Source};
use crate::detector::Detector;
use crate::notify::Notifier;
use crate::sinks::{self, Output, Sink};
use health::{warnings_once, Health, InSource, Warning, Warnings};
use slot::{Slot, Taken};
use stats::{Stage, Stats};

pub struct Options {
    /// 0 = unlimited.
    pub max_fps: f64,
    /// Stop after this many processed frames (0 = never).
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
    /// Where the counters are published after every frame (the live view's /metrics).
    pub publish: Option<Arc<Mutex<Stats>>>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// A stop was requested (SIGTERM/SIGINT), as opposed to the source or `frames` ending it.
    pub stop_requested: bool,
}

/// Runs until the source ends, `frames` are done, or `stop` is set; returns the final counts.
pub fn run(
    source: Box<dyn Source>,
    detector: &mut Detector,
    sinks: &mut [Box<dyn Sink>],
    opts: &Options,
    stop: &Arc<AtomicBool>,
    notifier: &mut Notifier,
) -> anyhow::Result<Outcome> {
    let source_name: Arc<str> = source.name().into();
    let slot = Arc::new(Slot::default());
    let shared = Arc::new(Mutex::new(Stats::default()));
    let in_source = Arc::new(InSource::default());
    let capture = {
        let (slot, shared, stop, reopen, in_source) =
            (slot.clone(), shared.clone(), stop.clone(), opts.reopen, in_source.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(source, &slot, &shared, &stop, reopen, &in_source))?
    };

    let started = Instant::now();
    let mut processed = Stats::default();
    let mut last_report = (Instant::now(), Stats::default());
    let mut last_status = Instant::now();
    let mut next_due: Option<Instant> = None;
    let mut ready = false;
    let wait = notifier
        .watchdog_period()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    notifier.status(&format!("waiting for the first frame from {source_name}"));
    let mut health = Health::new(opts.fail_after);
    let mut warnings = Warnings::default();
    let mut stuck_reported = false;
    let mut failure = None;

    while !stop.load(Ordering::Relaxed) && (opts.frames == 0 || processed.processed < opts.frames) {
        if let Some(why) = health.check(&snapshot(&shared, &processed, &slot, sinks)) {
            log::error!("{why}");
            notifier.status(&why);
            failure = Some(why);
            break;
        }
        // The watchdog is fed only while capture makes progress too: a thread stuck in a driver
        // call (not the bounded frame wait) must let systemd restart the unit.
        let stuck = notifier.watchdog_period().and_then(|period| in_source.stuck_for(period * 2));
        match stuck {
            None => notifier.watchdog(),
            Some(for_how_long) => warnings_once(&mut stuck_reported, || {
                log::error!(
                    "capture from {source_name} has been stuck in one call for {}s; no longer feeding the watchdog",
                    for_how_long.as_secs()
                )
            }),
        }
        // max_fps: idle until the next frame is due; the camera keeps the slot fresh meanwhile.
        if let Some(due) = next_due {
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(wait));
                continue;
            }
        }
        let frame = match slot.take(wait) {
            Taken::Frame(frame) => frame,
            Taken::Empty => continue,
            Taken::Closed => break,
        };
        if !ready {
            notifier.ready(&format!("running: {source_name}"));
            log::info!(
                "first frame: {}x{} from {source_name}",
                frame.image.width,
                frame.image.height
            );
            ready = true;
        }
        if opts.max_fps > 0.0 {
            let period = Duration::from_secs_f64(1.0 / opts.max_fps);
            next_due = Some(Instant::now() + period);
        }
        process(&frame, detector, sinks, &source_name, &mut processed, &mut warnings);
        slot.recycle(frame);
        if let Some(publish) = &opts.publish {
            let now = snapshot(&shared, &processed, &slot, sinks);
            *publish.lock().unwrap_or_else(|e| e.into_inner()) = now;
        }

        if !opts.stats_interval.is_zero() && last_report.0.elapsed() >= opts.stats_interval {
            let now = snapshot(&shared, &processed, &slot, sinks);
            log::info!(
                "stats (last {:.0}s): {}",
                last_report.0.elapsed().as_secs_f64(),
                now.since(&last_report.1).line(last_report.0.elapsed())
            );
            last_report = (Instant::now(), now);
        }
        if last_status.elapsed() >= Duration::from_secs(5) {
            let now = snapshot(&shared, &processed, &slot, sinks);
            let fps = now.processed as f64 / started.elapsed().as_secs_f64().max(1e-9);
            notifier.status(&format!(
                "running: {source_name}, {fps:.1} fps, {} frames, {} dropped",
                now.processed, now.dropped
            ));
            last_status = Instant::now();
        }
    }

    // Wind down: stop the capture thread (it waits at most one dequeue), then flush the sinks.
    let stop_requested = stop.load(Ordering::Relaxed);
    notifier.stopping("stopping: flushing sinks");
    stop.store(true, Ordering::Relaxed);
    slot.close();
    if capture.join().is_err() {
        log::error!("the capture thread panicked");
    }
    // A frame still in the slot was captured and will not be processed: it counts as dropped.
    slot.discard();
    let deadline = Instant::now() + opts.stop_timeout;
    for sink in sinks.iter_mut() {
        if let Err(e) = sink.flush(deadline) {
            processed.sink_errors += 1;
            log::warn!("sink {}: flush failed: {e:#}", sink.name());
        }
    }
    let total = snapshot(&shared, &processed, &slot, sinks);
    log::info!(
        "summary ({:.1}s): {}",
        started.elapsed().as_secs_f64(),
        total.line(started.elapsed())
    );
    if let Some(why) = failure {
        return Err(crate::exit::Failure::new(crate::exit::Exit::Runtime, why).into());
    }
    Ok(Outcome { stats: total, stop_requested })
}

/// One frame through the model and the sinks; failures are counted, never fatal.
fn process(
    frame: &Frame,
    detector: &mut Detector,
    sinks: &mut [Box<dyn Sink>],
    source: &str,
    stats: &mut Stats,
    warnings: &mut Warnings,
) {
    let response = match detector.infer(&frame.image) {
        Ok(r) => r,
        Err(e) => {
            stats.frame_errors += 1;
            if let Some(more) = warnings.due(Warning::Inference) {
                log::warn!("frame {}: inference failed: {e:#}{more}", frame.seq);
            }
            return;
        }
    };
    stats.stage(Stage::Preprocess, detector.last.preprocess);
    stats.stage(Stage::Infer, detector.last.infer);
    stats.stage(Stage::Postprocess, detector.last.postprocess);
    let sinking = Instant::now();
    let json = sinks::json_line(&response, frame.seq, frame.captured_at, source);
    let out = Output {
        frame_id: frame.seq,
        response: &response,
        json: &json,
        image: &frame.image,
    };
    for sink in sinks.iter_mut() {
        if let Err(e) = sink.write(&out) {
            stats.sink_errors += 1;
            if let Some(more) = warnings.due(Warning::Sink) {
                log::warn!("sink {}: frame {}: {e:#}{more}", sink.name(), frame.seq);
            }
        }
    }
    stats.stage(Stage::Sinks, sinking.elapsed());
    stats.processed += 1;
}

/// The pipeline's counts merged with the capture thread's, the slot's and the sinks'.
fn snapshot(
    shared: &Mutex<Stats>,
    pipeline: &Stats,
    slot: &Slot,
    sinks: &[Box<dyn Sink>],
) -> Stats {
    let capture = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut s = pipeline.clone();
    s.captured = capture.captured;
    s.capture_errors = capture.capture_errors;
    s.frame_errors += capture.frame_errors;
    for stage in [Stage::Capture, Stage::Convert] {
        s.stages[stage as usize] = capture.stages[stage as usize];
    }
    s.dropped = slot.dropped();
    for sink in sinks {
        let (dropped, failed) = sink.counters();
        s.webhook_dropped += dropped;
        s.sink_errors += failed;
    }
    s
}

fn capture_loop(
    mut source: Box<dyn Source>,
    slot: &Slot,
    shared: &Mutex<Stats>,
    stop: &AtomicBool,
    reopen: Duration,
    in_source: &InSource,
) {
    let live = source.is_live();
    let mut delay = reopen;
    let mut last_error_logged: Option<Instant> = None;
    // Frames failing back to back (a looping folder of broken images) must not spin a core.
    let mut failing_in_a_row = 0u32;
    while !stop.load(Ordering::Relaxed) && !slot.is_closed() {
        let mut frame = slot.spare();
        in_source.enter();
        let next = source.next(&mut frame);
        in_source.leave();
        match next {
            Ok(Next::Frame) => {
                delay = reopen;
                failing_in_a_row = 0;
                {
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    s.captured += 1;
                    s.stage(Stage::Capture, frame.capture);
                    s.stage(Stage::Convert, frame.convert);
                }
                if live {
                    slot.put_latest(frame)
                } else {
                    slot.put_waiting(frame)
                }
            }
            Ok(Next::Idle) => slot.recycle(frame),
            Ok(Next::End) => break,
            Err(e) if e.downcast_ref::<FrameError>().is_some() => {
                slot.recycle(frame);
                shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .frame_errors += 1;
                if last_error_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    log::warn!("skipping a frame: {e:#}");
                    last_error_logged = Some(Instant::now());
                }
                failing_in_a_row = failing_in_a_row.saturating_add(1);
                if failing_in_a_row > 3 {
                    let pause = Duration::from_millis(10 << (failing_in_a_row - 3).min(9)).min(Duration::from_secs(5));
                    crate::pause::sleep_unless(stop, pause);
                }
            }
            Err(e) => {
                slot.recycle(frame);
                shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .capture_errors += 1;
                if !live {
                    log::warn!("{}: {e:#}", source.name());
                    continue;
                }
                log::warn!(
                    "{}: {e:#}; reopening in {}s",
                    source.name(),
                    delay.as_secs()
                );
                source.reset();
                crate::pause::sleep_unless(stop, delay);
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
    slot.close();
}


#[cfg(test)]
mod tests {
    use super::*;
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
