//! POSTs each frame's JSON to a URL from a worker thread. The queue between them is bounded:
//! when the receiver is slow, new frames are dropped (counted) and inference never waits.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Output, Sink};
use crate::config;
use crate::redact::redact_url;

pub struct Webhook {
    queue: Option<SyncSender<String>>,
    worker: Option<JoinHandle<()>>,
    dropped: u64,
    failed: Arc<AtomicU64>,
    shown: String,
}

impl Webhook {
    pub fn start(cfg: &config::Webhook, ca_file: Option<&Path>) -> anyhow::Result<Webhook> {
        let shown = redact_url(&cfg.url);
        let tls = crate::provision::tls::client_config(ca_file)?;
        // No redirects: a POST followed to a 301/302 target is re-sent as a GET without its body
        // (the detection is lost while it looks delivered), and an https hook could be sent on
        // to plain http. A redirect is a failure, counted and logged with its target.
        let agent_config = ureq::Agent::config_builder()
            .max_redirects(0)
            .timeout_global(Some(cfg.timeout))
            .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = crate::provision::tls::agent(agent_config, tls);
        let (tx, rx) = sync_channel::<String>(cfg.queue);
        let failed = Arc::new(AtomicU64::new(0));
        let worker = {
            let (url, shown, failed) = (cfg.url.clone(), shown.clone(), failed.clone());
            std::thread::Builder::new()
                .name("webhook".into())
                .spawn(move || {
                    let mut last_logged: Option<Instant> = None;
                    for body in rx {
                        let result = agent
                            .post(&url)
                            .content_type("application/json")
                            .send(body.as_str());
                        let failure = match result {
                            Ok(response) if response.status().is_redirection() => {
                                let target = response
                                    .headers()
                                    .get("location")
                                    .and_then(|v| v.to_str().ok())
                                    .map_or_else(|| "nowhere".to_string(), redact_url);
                                Some(format!(
                                    "HTTP {} redirect to {target} not followed (a redirected POST loses its body); \
                                     point sinks.webhook.url at the final address",
                                    response.status().as_u16()
                                ))
                            }
                            Ok(_) => None,
                            Err(e) => Some(crate::redact::redact_text(&e.to_string())),
                        };
                        if let Some(error) = failure {
                            let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                            // One line per 10 s at most: a dead receiver must not flood the log.
                            if last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                log::warn!("webhook {shown}: {error} ({n} failed so far)");
                                last_logged = Some(Instant::now());
                            }
                        }
                    }
                })?
        };
        log::info!("webhook sink: POST to {shown}, queue of {}", cfg.queue);
        Ok(Webhook {
            queue: Some(tx),
            worker: Some(worker),
            dropped: 0,
            failed,
            shown,
        })
    }
}

impl Sink for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn write(&mut self, out: &Output<'_>) -> anyhow::Result<()> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        match queue.try_send(out.json.to_string()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped == 1 || self.dropped.is_power_of_two() {
                    log::warn!(
                        "webhook {}: receiver is slower than the pipeline; {} frame(s) dropped",
                        self.shown,
                        self.dropped
                    );
                }
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                anyhow::bail!("webhook {}: the sender thread has stopped", self.shown)
            }
        }
    }

    /// Lets the worker send what is queued, until `deadline`; what is left is given up.
    fn flush(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.queue = None;
        if let Some(worker) = self.worker.take() {
            while !worker.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                log::warn!(
                    "webhook {}: queued frames not delivered before the stop timeout",
                    self.shown
                );
            }
        }
        Ok(())
    }

    fn counters(&self) -> (u64, u64) {
        (self.dropped, self.failed.load(Ordering::Relaxed))
    }
}
