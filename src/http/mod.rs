//! HTTP for outpost: a small blocking server ([`server`]) under the Roboflow Inference API
//! ([`api`], used by `outpost serve`), `outpost run`'s live view ([`live`]) and Prometheus
//! counters ([`metrics`]).

pub mod api;
pub mod infer;
pub mod live;
pub mod metrics;
pub mod server;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::config::Config;
use crate::exit::{Exit, Failure};

/// The server limits from the `serve.*` keys.
pub fn limits(config: &Config) -> server::Limits {
    let s = &config.serve;
    server::Limits {
        max_connections: s.max_connections,
        max_header_bytes: s.max_header_bytes,
        max_body_bytes: s.max_body_bytes,
        header_timeout: s.header_timeout,
        body_timeout: s.body_timeout,
        idle_timeout: s.idle_timeout,
        // Four of the largest bodies at once, whatever the number of connections.
        max_body_bytes_in_flight: s.max_body_bytes.saturating_mul(4),
    }
}

/// Binds `addr` (`HOST:PORT`), naming the setting in the error.
pub fn bind(addr: &str, key: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Failure::new(Exit::Config, format!("{key} = `{addr}`: cannot resolve: {e}")))?
        .collect();
    let listener = TcpListener::bind(&resolved[..])
        .map_err(|e| Failure::new(Exit::Runtime, format!("{key} = `{addr}`: cannot listen: {e}")))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// A path as shown in an error: bounded, so a huge path does not come back whole.
pub fn short(path: &str) -> String {
    match path.char_indices().nth(120) {
        Some((at, _)) => format!("{}...", &path[..at]),
        None => path.to_string(),
    }
}
