//! The pipeline's health: frames that keep failing ([`Health`]), a capture thread stuck inside
//! its source ([`InSource`]), and per-frame warnings held to one line per 10 s ([`Warnings`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::stats::Stats;

/// Watches for a pipeline that runs but produces nothing: frames keep failing and none has
/// succeeded for `limit`. (A camera that is away is not this: it is reopened, and its capture
/// errors do not count.)
pub struct Health {
    limit: Duration,
    last_ok: Instant,
    last_error: Instant,
    processed: u64,
    errors: u64,
    errors_at_ok: u64,
}

impl Health {
    pub fn new(limit: Duration) -> Health {
        let now = Instant::now();
        Health { limit, last_ok: now, last_error: now, processed: 0, errors: 0, errors_at_ok: 0 }
    }

    /// `Some(why)` once no frame has succeeded for `limit` while frames kept failing.
    pub fn check(&mut self, now: &Stats) -> Option<String> {
        if now.processed > self.processed {
            (self.processed, self.last_ok, self.errors_at_ok) = (now.processed, Instant::now(), now.frame_errors);
        }
        if now.frame_errors > self.errors {
            (self.errors, self.last_error) = (now.frame_errors, Instant::now());
        }
        let failing = self.errors > self.errors_at_ok && self.last_error.elapsed() < self.limit;
        if self.limit.is_zero() || !failing || self.last_ok.elapsed() < self.limit {
            return None;
        }
        Some(format!(
            "no frame has succeeded for {}s while {} failed: the unit outputs nothing; exiting so the service \
             manager can act (run.fail_after_secs)",
            self.last_ok.elapsed().as_secs(),
            self.errors - self.errors_at_ok
        ))
    }
}

/// When the capture thread entered its current `Source::next` call (ms since `origin`; 0 = not
/// inside one).
pub struct InSource {
    origin: Instant,
    since_ms: AtomicU64,
}

impl Default for InSource {
    fn default() -> InSource {
        InSource { origin: Instant::now(), since_ms: AtomicU64::new(0) }
    }
}

impl InSource {
    pub fn enter(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.since_ms.store(now.max(1), Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.since_ms.store(0, Ordering::Relaxed);
    }

    /// How long the current call has lasted, if longer than `limit`.
    pub fn stuck_for(&self, limit: Duration) -> Option<Duration> {
        let since = self.since_ms.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let lasted = self.origin.elapsed().saturating_sub(Duration::from_millis(since));
        (lasted > limit).then_some(lasted)
    }
}

pub fn warnings_once(done: &mut bool, log: impl FnOnce()) {
    if !*done {
        log();
        *done = true;
    }
}

#[derive(Clone, Copy)]
pub enum Warning {
    Inference,
    Sink,
}

/// Per-frame warnings at most every 10 s each (a full disk or a broken model would otherwise
/// write one line per frame); the counters keep the full count.
#[derive(Default)]
pub struct Warnings {
    last: [Option<Instant>; 2],
    suppressed: [u64; 2],
}

impl Warnings {
    /// `Some(suffix)` when this kind may be logged now; the suffix tells how many were held back.
    pub fn due(&mut self, kind: Warning) -> Option<String> {
        let i = kind as usize;
        if self.last[i].is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            self.suppressed[i] += 1;
            return None;
        }
        self.last[i] = Some(Instant::now());
        let held = std::mem::take(&mut self.suppressed[i]);
        Some(if held > 0 { format!(" ({held} more like it not logged)") } else { String::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_into_the_source_that_does_not_return_is_seen_as_stuck() {
        let in_source = InSource::default();
        assert_eq!(in_source.stuck_for(Duration::ZERO), None, "not inside a call");
        in_source.enter();
        std::thread::sleep(Duration::from_millis(30));
        assert!(in_source.stuck_for(Duration::from_millis(10)).is_some());
        assert!(in_source.stuck_for(Duration::from_secs(10)).is_none());
        in_source.leave();
        assert_eq!(in_source.stuck_for(Duration::ZERO), None);
    }

    #[test]
    fn warnings_of_a_kind_are_held_for_ten_seconds_and_counted() {
        let mut w = Warnings::default();
        assert_eq!(w.due(Warning::Sink), Some(String::new()));
        assert_eq!(w.due(Warning::Sink), None);
        assert_eq!(w.due(Warning::Inference), Some(String::new()), "kinds are independent");
    }
}
