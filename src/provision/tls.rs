//! TLS for provisioning: rustls with ring, the bundled webpki roots plus an optional private CA,
//! and a clock floor for boards without an RTC.
//!
//! ureq's own rustls connector takes neither extra roots beside webpki's nor a time source, so
//! this module plugs its own connector into ureq's transport chain (TCP, then TLS).
//!
//! Clock floor: a board without a battery-backed clock boots in 1970 until NTP answers, and every
//! certificate then looks "not yet valid". As systemd-timesyncd does, the binary's build time is
//! taken as the earliest possible "now" (it cannot be earlier), and the log says so.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::ClientConnection;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, RootCertStore, StreamOwned};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector, Transport,
    TransportAdapter,
};

/// "Now" for certificate validation, never earlier than `floor_unix` (the build time).
#[derive(Debug)]
pub struct FlooredClock {
    floor_unix: u64,
    told: AtomicBool,
}

impl FlooredClock {
    pub fn new(floor_unix: u64) -> FlooredClock {
        FlooredClock { floor_unix, told: AtomicBool::new(false) }
    }
}

impl TimeProvider for FlooredClock {
    fn current_time(&self) -> Option<UnixTime> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now >= self.floor_unix {
            return Some(UnixTime::since_unix_epoch(Duration::from_secs(now)));
        }
        if !self.told.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the system clock ({}) is earlier than this binary's build date ({}): no RTC or no NTP \
                 yet? Validating TLS certificates as of the build date instead",
                crate::build_info::utc_date(now),
                crate::build_info::utc_date(self.floor_unix)
            );
        }
        Some(UnixTime::since_unix_epoch(Duration::from_secs(self.floor_unix)))
    }
}

/// The rustls client configuration: webpki roots, plus the certificates of `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                roots
                    .add(CertificateDer::from(cert.der().to_vec()))
                    .map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?;
                added += 1;
            }
        }
        if added == 0 {
            anyhow::bail!("CA file {} holds no PEM certificate", path.display());
        }
        log::debug!("trusting {added} certificate(s) from {} besides the bundled roots", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clock = Arc::new(FlooredClock::new(crate::build_info::build_unix_time()));
    let config = ClientConfig::builder_with_details(provider, clock)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An agent whose https connections use `tls`.
pub fn agent(config: ureq::config::Config, tls: Arc<ClientConfig>) -> ureq::Agent {
    let connector = ().chain(TcpConnector::default()).chain(TlsConnector { config: tls });
    ureq::Agent::with_parts(config, connector, DefaultResolver::default())
}

struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(ureq::Error::ConnectionFailed);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|_| ureq::Error::Tls("invalid server name"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(TlsTransport { buffers, stream: StreamOwned { conn, sock } })))
    }
}

pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_never_reads_before_the_floor() {
        let far_future = 4_000_000_000; // 2096
        let clock = FlooredClock::new(far_future);
        assert_eq!(clock.current_time().unwrap().as_secs(), far_future);
        let past = FlooredClock::new(1_000_000_000);
        assert!(past.current_time().unwrap().as_secs() > 1_700_000_000, "a sane clock is used as is");
    }

    #[test]
    fn ca_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = client_config(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("ca.pem") && err.contains("no PEM certificate"), "{err}");
    }
}
