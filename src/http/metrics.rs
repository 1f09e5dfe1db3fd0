//! Counters for `/metrics`, in the Prometheus text format: requests by route and status, requests
//! refused by a limit, inference latency per model. Labels come from fixed sets (route names, not
//! paths; manifest ids), so a client cannot grow them without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// How Prometheus should read an extra value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        *lock(&self.requests).entry((route, status)).or_default() += 1;
    }

    /// A request refused by a limit (`reason` from a fixed set).
    pub fn rejection(&self, reason: &'static str) {
        *lock(&self.rejections).entry(reason).or_default() += 1;
    }

    pub fn inference(&self, model: &str, seconds: f64) {
        lock(&self.latency).entry(model.to_string()).or_default().observe(seconds);
    }

    /// The counters, then `extra` values (name, help, kind, value) as they are now.
    pub fn render(&self, extra: &[(&str, &str, Kind, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP outpost_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE outpost_http_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(out, "outpost_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP outpost_http_rejected_total Requests refused by a limit, by limit.\n");
        out.push_str("# TYPE outpost_http_rejected_total counter\n");
        for (reason, n) in lock(&self.rejections).iter() {
            let _ = writeln!(out, "outpost_http_rejected_total{{reason=\"{reason}\"}} {n}");
        }
        out.push_str("# HELP outpost_inference_seconds Time per image (decode of the outputs included), by model.\n");
        out.push_str("# TYPE outpost_inference_seconds histogram\n");
        for (model, h) in lock(&self.latency).iter() {
            let model = escape(model);
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(out, "outpost_inference_seconds_bucket{{model=\"{model}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "outpost_inference_seconds_bucket{{model=\"{model}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "outpost_inference_seconds_sum{{model=\"{model}\"}} {}", h.sum);
            let _ = writeln!(out, "outpost_inference_seconds_count{{model=\"{model}\"}} {}", h.count);
        }
        for (name, help, kind, value) in extra {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

/// A label value as the text format wants it.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// This process's resident set, in bytes (from /proc; 0 where there is none).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.inference("faces", 0.02);
        m.inference("faces", 0.3);
        m.request("/info", 200);
        let text = m.render(&[("outpost_models_loaded", "Models in memory.", Kind::Gauge, 1.0)]);
        assert!(text.contains("outpost_inference_seconds_bucket{model=\"faces\",le=\"0.01\"} 0"), "{text}");
        assert!(text.contains("outpost_inference_seconds_bucket{model=\"faces\",le=\"0.025\"} 1"), "{text}");
        assert!(text.contains("outpost_inference_seconds_bucket{model=\"faces\",le=\"0.5\"} 2"), "{text}");
        assert!(text.contains("outpost_inference_seconds_count{model=\"faces\"} 2"), "{text}");
        assert!(text.contains("outpost_http_requests_total{route=\"/info\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("outpost_models_loaded 1"), "{text}");
        assert!(rss_bytes() > 0);
    }
}
