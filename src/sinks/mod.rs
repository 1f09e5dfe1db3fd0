//! Where each frame's predictions go: JSON lines, an HTTP webhook, annotated JPEGs. Any
//! combination runs at once; a failing sink is logged and counted, never fatal after startup.

mod annotate;
mod jsonl;
mod webhook;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::detector::Response;
use crate::vision::image::RgbImage;

pub use annotate::{draw_predictions, encode as encode_jpeg, Annotate};
pub use jsonl::Jsonl;
pub use webhook::Webhook;

/// One processed frame, as every sink sees it.
pub struct Output<'a> {
    pub frame_id: u64,
    pub response: &'a Response,
    /// The JSON line (no newline), serialized once for all sinks.
    pub json: &'a str,
    pub image: &'a RgbImage,
}

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn write(&mut self, out: &Output<'_>) -> anyhow::Result<()>;
    /// Writes out what is buffered or queued, giving up at `deadline`.
    fn flush(&mut self, deadline: Instant) -> anyhow::Result<()>;
    /// Frames this sink dropped (a full queue) and its failures off the pipeline thread.
    fn counters(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// The Roboflow prediction object plus where and when the frame came from.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    response: &'a Response,
    frame_id: u64,
    /// Capture time, RFC 3339 UTC.
    timestamp: String,
    /// The camera's name (`[[cameras]]`; `default` for `run.source`).
    camera: &'a str,
    source: &'a str,
}

pub fn json_line(
    response: &Response,
    frame_id: u64,
    captured_at: SystemTime,
    source: &str,
    camera: &str,
) -> String {
    let line = Line {
        response,
        frame_id,
        timestamp: rfc3339(captured_at),
        camera,
        source,
    };
    serde_json::to_string(&line)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize: {e}\"}}"))
}

/// `2026-11-26T13:45:17.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        crate::build_info::utc_date(secs),
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
        d.subsec_millis()
    )
}

/// Opens the configured sinks; an error here (unwritable file or folder) is a startup error.
pub fn open(config: &Config) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(target) = &config.sinks.jsonl {
        sinks.push(Box::new(Jsonl::open(target.as_deref())?));
    }
    if let Some(hook) = &config.sinks.webhook {
        sinks.push(Box::new(Webhook::start(
            hook,
            config.download.ca_file.as_deref(),
        )?));
    }
    if let Some(annotate) = &config.sinks.annotate {
        sinks.push(Box::new(Annotate::open(annotate)?));
    }
    if sinks.is_empty() {
        log::warn!("no sink is configured (sinks.jsonl, sinks.webhook.url, sinks.annotate.dir): predictions go nowhere");
    }
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_250)),
            "2000-02-29T00:00:00.250Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_700_717)),
            "2026-11-26T13:45:17.000Z"
        );
    }
}
