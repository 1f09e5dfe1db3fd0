//! The latest-frame slot between the capture thread and the pipeline: one frame deep. A live
//! camera overwrites an untaken frame (counted as dropped) instead of queueing it, so a slow model
//! always sees the newest picture and memory stays flat. File sources wait for the slot instead.
//! Frame buffers circulate between the two sides, so steady state allocates nothing.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::capture::Frame;

#[derive(Default)]
struct State {
    filled: Option<Frame>,
    spare: Vec<Frame>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
pub struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

pub enum Taken {
    Frame(Frame),
    /// Nothing within the wait.
    Empty,
    /// The producer has finished (finite source, or stop).
    Closed,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated: every update is one assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer for the producer to fill.
    pub fn spare(&self) -> Frame {
        self.lock().spare.pop().unwrap_or_default()
    }

    /// Publishes a frame, replacing (and counting) one nobody took.
    pub fn put_latest(&self, frame: Frame) {
        let mut state = self.lock();
        if let Some(old) = state.filled.replace(frame) {
            state.dropped += 1;
            state.spare.push(old);
        }
        self.changed.notify_all();
    }

    /// Publishes a frame once the previous one was taken (or the slot closed): no drops.
    pub fn put_waiting(&self, frame: Frame) {
        let mut state = self.lock();
        while state.filled.is_some() && !state.closed {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            // Captured but never to be processed: counted, so captured = processed + dropped.
            state.dropped += 1;
        } else {
            state.filled = Some(frame);
        }
        self.changed.notify_all();
    }

    /// Takes the newest frame, waiting up to `wait`.
    pub fn take(&self, wait: Duration) -> Taken {
        let mut state = self.lock();
        if state.filled.is_none() && !state.closed {
            state = self
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let taken = match state.filled.take() {
            Some(frame) => Taken::Frame(frame),
            None if state.closed => Taken::Closed,
            None => Taken::Empty,
        };
        self.changed.notify_all();
        taken
    }

    /// Gives a processed frame's buffers back to the producer.
    pub fn recycle(&self, frame: Frame) {
        let mut state = self.lock();
        if state.spare.len() < 2 {
            state.spare.push(frame);
        }
    }

    /// Discards an untaken frame (counted as dropped): the pipeline wants a fresh one.
    pub fn discard(&self) {
        let mut state = self.lock();
        if let Some(old) = state.filled.take() {
            state.dropped += 1;
            state.spare.push(old);
        }
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            ..Frame::default()
        }
    }

    #[test]
    fn latest_overwrites_and_counts_drops() {
        let slot = Slot::default();
        for seq in 1..=5 {
            slot.put_latest(frame(seq));
        }
        let Taken::Frame(f) = slot.take(Duration::ZERO) else {
            panic!("no frame")
        };
        assert_eq!(f.seq, 5);
        assert_eq!(slot.dropped(), 4);
        assert!(matches!(slot.take(Duration::from_millis(10)), Taken::Empty));
        slot.close();
        assert!(matches!(slot.take(Duration::from_secs(5)), Taken::Closed));
    }

    #[test]
    fn waiting_producer_loses_nothing() {
        let slot = Arc::new(Slot::default());
        let producer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                for seq in 1..=50 {
                    slot.put_waiting(frame(seq));
                }
                slot.close();
            })
        };
        let mut seen = Vec::new();
        loop {
            match slot.take(Duration::from_secs(5)) {
                Taken::Frame(f) => seen.push(f.seq),
                Taken::Closed => break,
                Taken::Empty => panic!("producer stalled"),
            }
        }
        producer.join().unwrap();
        assert_eq!(seen, (1..=50).collect::<Vec<_>>());
        assert_eq!(slot.dropped(), 0);
    }
}
