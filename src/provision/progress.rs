//! Download progress a person expects: a live line per file on a terminal, a line every few
//! seconds in a log.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(5);
const TTY_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    label: String,
    total: Option<u64>,
    started: Instant,
    start_bytes: u64,
    last_report: Instant,
    tty: bool,
}

impl Progress {
    /// `start_bytes` is what a resumed download already has.
    pub fn new(label: &str, total: Option<u64>, start_bytes: u64) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            started: now,
            start_bytes,
            last_report: now,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&mut self, done: u64) {
        let every = if self.tty { TTY_EVERY } else { LOG_EVERY };
        if self.last_report.elapsed() < every {
            return;
        }
        self.last_report = Instant::now();
        let line = self.line(done);
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else {
            log::info!("{line}");
        }
    }

    /// Ends a terminal progress line so the next log line starts clean.
    pub fn finish(&mut self) {
        if self.tty {
            let _ = writeln!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }

    fn line(&self, done: u64) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (done.saturating_sub(self.start_bytes)) as f64 / elapsed;
        match self.total {
            Some(total) if total > 0 => {
                let pct = done as f64 * 100.0 / total as f64;
                let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { f64::INFINITY };
                format!(
                    "{}: {} / {} ({pct:.0}%), {}/s, ETA {}",
                    self.label,
                    bytes(done),
                    bytes(total),
                    bytes(rate as u64),
                    seconds(eta)
                )
            }
            _ => format!("{}: {}, {}/s", self.label, bytes(done), bytes(rate as u64)),
        }
    }
}

/// A writer that reports its progress as bytes go through (sideloads from a USB stick: a large
/// model takes a while there too, and a unit that says nothing for a minute looks hung).
pub struct Reporting<'a, W: Write> {
    pub inner: W,
    pub progress: &'a mut Progress,
    pub done: u64,
}

impl<W: Write> Write for Reporting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        self.progress.update(self.done);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn seconds(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(7_304_518), "7.0 MiB");
        assert_eq!(seconds(75.0), "1m15s");
        assert_eq!(seconds(f64::INFINITY), "?");
    }

    #[test]
    fn line_has_percent_rate_and_eta() {
        let p = Progress::new("faces", Some(1000), 0);
        let line = p.line(250);
        assert!(line.starts_with("faces: 250 B / 1000 B (25%)") && line.contains("/s, ETA"), "{line}");
    }
}
