//! One camera's capture thread: reads its source into its latest-frame slot, counts, and reopens
//! a failed camera with a growing delay. It never waits for inference: a live source's stale
//! frames are replaced in the slot (counted as dropped); a file waits for the slot to empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::health::InSource;
use super::slot::Slot;
use super::stats::{Stage, Stats};
use crate::capture::{FrameError, Next, Source};

pub(super) fn capture_loop(
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
