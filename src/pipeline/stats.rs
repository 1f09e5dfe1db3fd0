//! Frame counters and per-stage timings, logged every `run.stats_interval_secs` and at exit.

use std::fmt::Write as _;
use std::time::Duration;

/// The timed stages of a frame, in order; the index into [`Stats::stages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Capture,
    Convert,
    Preprocess,
    Infer,
    Postprocess,
    Sinks,
}

/// Stage names as the stats line prints them, in [`Stage`] order.
const STAGE_NAMES: [&str; 6] = ["capture", "convert", "preprocess", "infer", "postprocess", "sinks"];

#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    count: u64,
    total: Duration,
    max: Duration,
}

impl Timing {
    pub fn add(&mut self, d: Duration) {
        self.count += 1;
        self.total += d;
        self.max = self.max.max(d);
    }

    /// Both timings as one.
    pub fn merge(&mut self, other: &Timing) {
        self.count += other.count;
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.total / self.count as u32
        }
    }
}

/// What the pipeline counted; `Default` is all zero.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames replaced before the pipeline took them (latest-frame slot) or skipped by max_fps.
    pub dropped: u64,
    /// Frames that went through the model and the sinks.
    pub processed: u64,
    /// Capture or device errors (each followed by a reopen for cameras).
    pub capture_errors: u64,
    /// Frames that failed conversion or inference (skipped).
    pub frame_errors: u64,
    /// Sink writes that failed.
    pub sink_errors: u64,
    /// Frames the webhook had no room for.
    pub webhook_dropped: u64,
    /// Frames prepared while the model ran the one before (`run.overlap`).
    pub overlapped: u64,
    pub stages: [Timing; 6],
}

impl Stats {
    pub fn stage(&mut self, stage: Stage, d: Duration) {
        self.stages[stage as usize].add(d);
    }

    /// One log line: `key=value` pairs, so scripts (and the QEMU tests) can read it.
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "frames_captured={} frames_processed={} frames_dropped={} fps={:.2} capture_errors={} frame_errors={} sink_errors={} webhook_dropped={} overlapped={}",
            self.captured,
            self.processed,
            self.dropped,
            self.processed as f64 / secs,
            self.capture_errors,
            self.frame_errors,
            self.sink_errors,
            self.webhook_dropped,
            self.overlapped,
        );
        for (name, t) in STAGE_NAMES.iter().zip(&self.stages) {
            let _ = write!(
                out,
                " {name}_ms={:.1}/{:.1}",
                t.mean().as_secs_f64() * 1e3,
                t.max.as_secs_f64() * 1e3
            );
        }
        out
    }

    /// Adds another camera's counts and timings (for the total over cameras).
    pub fn merge(&mut self, other: &Stats) {
        self.captured += other.captured;
        self.dropped += other.dropped;
        self.processed += other.processed;
        self.capture_errors += other.capture_errors;
        self.frame_errors += other.frame_errors;
        self.sink_errors += other.sink_errors;
        self.webhook_dropped += other.webhook_dropped;
        self.overlapped += other.overlapped;
        for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
            mine.merge(theirs);
        }
    }

    /// The counts since `earlier` (for the periodic line).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut d = self.clone();
        d.captured -= earlier.captured;
        d.dropped -= earlier.dropped;
        d.processed -= earlier.processed;
        d.capture_errors -= earlier.capture_errors;
        d.frame_errors -= earlier.frame_errors;
        d.sink_errors -= earlier.sink_errors;
        d.webhook_dropped -= earlier.webhook_dropped;
        d.overlapped -= earlier.overlapped;
        for (now, then) in d.stages.iter_mut().zip(&earlier.stages) {
            now.count -= then.count;
            now.total -= then.total;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_counters_and_mean_max_per_stage() {
        let mut s = Stats {
            captured: 10,
            processed: 4,
            dropped: 6,
            ..Stats::default()
        };
        s.stage(Stage::Infer, Duration::from_millis(10));
        s.stage(Stage::Infer, Duration::from_millis(30));
        let line = s.line(Duration::from_secs(2));
        assert!(
            line.starts_with("frames_captured=10 frames_processed=4 frames_dropped=6 fps=2.00"),
            "{line}"
        );
        assert!(line.contains(" infer_ms=20.0/30.0"), "{line}");
        let later = Stats {
            captured: 15,
            ..s.clone()
        };
        assert_eq!(later.since(&s).captured, 5);
    }
}
