//! The stderr logger `main` installs: one plain line per record, fit for journald.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with a `<N>` syslog priority so journald
//! keeps the level; elsewhere it starts with the level name. Every message passes through
//! [`crate::redact::redact_text`] so a secret that slipped into a message is still masked.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::redact::redact_text;

struct StderrLogger {
    journald: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Other crates stop at debug: at trace, ureq-proto hex-dumps raw requests, which would
        // show a URL's API key in fragments no redaction can recognise.
        let ours = metadata.target().starts_with("outpost");
        let level = if ours { log::max_level() } else { log::max_level().min(LevelFilter::Debug) };
        metadata.level() <= level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = redact_text(&record.args().to_string());
        let target = short_target(record.target());
        let line = if self.journald {
            format!("<{}>{target}: {message}\n", syslog_priority(record.level()))
        } else {
            format!("{:<5} {target}: {message}\n", record.level())
        };
        // A closed stderr must not take the process down; there is nowhere else to report it.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// `outpost::boards::detect` -> `boards::detect`: the crate name adds nothing to a line.
fn short_target(target: &str) -> &str {
    target.strip_prefix("outpost::").unwrap_or(target)
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Parses a level name as accepted by `--log-level`, `OUTPOST_LOG` and `log.level`.
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    match name.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Installs the logger once; later calls only change the level.
pub fn init(level: LevelFilter) {
    let logger = StderrLogger {
        journald: std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    // Fails only when a logger is already installed (tests); the level still applies.
    let _ = log::set_boxed_logger(Box::new(logger));
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_parse_case_insensitively() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(" warning "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("verbose"), None);
    }

    #[test]
    fn other_crates_never_log_at_trace() {
        log::set_max_level(LevelFilter::Trace);
        let logger = StderrLogger { journald: false };
        let meta = |target| Metadata::builder().level(Level::Trace).target(target).build();
        assert!(logger.enabled(&meta("outpost::provision")));
        assert!(!logger.enabled(&meta("ureq_proto::util")));
        let debug = Metadata::builder().level(Level::Debug).target("ureq::run").build();
        assert!(logger.enabled(&debug));
    }

    #[test]
    fn crate_prefix_is_dropped_from_targets() {
        assert_eq!(short_target("outpost::boards::detect"), "boards::detect");
        assert_eq!(short_target("ureq::unit"), "ureq::unit");
    }
}
