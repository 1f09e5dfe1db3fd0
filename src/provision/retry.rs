//! Provisioning in the background while `run` already infers with the installed generation: a
//! unit whose new manifest cannot be fetched yet (network down at boot) keeps working, and takes
//! the new generation once it is complete.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{provision, Options};

/// Longest pause between attempts.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Retries `opts` after `first`, doubling up to an hour, until it succeeds or `stop` is set; on
/// success sets `installed` and `stop` (the pipeline ends, `run` restarts itself on the new
/// generation). A refusal that waiting cannot fix (a bad manifest) ends the retries.
pub fn spawn(opts: Options, first: Duration, installed: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("provision-retry".into()).spawn(move || {
        let mut delay = first;
        loop {
            if !crate::pause::sleep_unless(&stop, delay) {
                return;
            }
            log::info!("retrying provisioning from {}", opts.manifest.display());
            match provision(&opts) {
                Ok(summary) => {
                    log::info!("generation {} is complete; restarting on it", summary.generation);
                    installed.store(true, Ordering::SeqCst);
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) if crate::exit::exit_for(&e) != crate::exit::Exit::Provisioning => {
                    log::error!("provisioning in the background stopped: {e:#}");
                    return;
                }
                Err(e) => {
                    delay = (delay * 2).min(MAX_DELAY);
                    log::warn!("provisioning still incomplete: {e:#}; next try in {}s", delay.as_secs());
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start background provisioning: {e}");
    }
}

