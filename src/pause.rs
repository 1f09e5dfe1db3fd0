//! Waiting that a stop request cuts short: retry delays, camera reopen delays, watchers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Sleeps `total`, waking every 50 ms to look at `stop`; `false` when it was cut short.
pub fn sleep_unless(stop: &AtomicBool, total: Duration) -> bool {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_cuts_the_sleep_short() {
        let stop = AtomicBool::new(false);
        assert!(sleep_unless(&stop, Duration::from_millis(20)));
        stop.store(true, Ordering::Relaxed);
        let started = Instant::now();
        assert!(!sleep_unless(&stop, Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
