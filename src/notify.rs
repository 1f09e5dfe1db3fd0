//! systemd's notify protocol, spoken directly: datagrams such as `READY=1`, `STATUS=...` and
//! `WATCHDOG=1` sent to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). No libsystemd; outside systemd (no variable) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `$WATCHDOG_USEC`: systemd's advice for the ping period.
    watchdog_every: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let watchdog_usec = std::env::var("WATCHDOG_USEC").ok();
        let watchdog_pid = std::env::var("WATCHDOG_PID").ok();
        Notifier::new(
            socket.as_deref().and_then(|s| s.to_str()),
            watchdog_usec.as_deref(),
            watchdog_pid.as_deref(),
        )
    }

    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Notifier {
        let target = socket
            .filter(|s| !s.is_empty())
            .and_then(|name| match address(name) {
                // Non-blocking: a service manager that stops reading must not stall the pipeline.
                Ok(addr) => match UnixDatagram::unbound()
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                {
                    Ok(sock) => Some((sock, addr)),
                    Err(e) => {
                        log::warn!("NOTIFY_SOCKET: cannot create a socket: {e}");
                        None
                    }
                },
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET={name}: {e}; not notifying systemd");
                    None
                }
            });
        // The watchdog is ours only when systemd meant this process (WATCHDOG_PID unset or ours).
        let ours = watchdog_pid.is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog_every = watchdog_usec
            .filter(|_| ours && target.is_some())
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0)
            .map(|u| Duration::from_micros(u) / 2);
        if let Some(every) = watchdog_every {
            log::info!(
                "systemd watchdog: pinging every {:.1}s",
                every.as_secs_f64()
            );
        }
        Notifier {
            target,
            watchdog_every,
            last_ping: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The longest the pipeline may go without calling [`Notifier::watchdog`].
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog_every
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                log::debug!("NOTIFY_SOCKET: {e}");
            }
        }
    }

    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
        self.last_ping = None;
        self.watchdog();
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// Pings the watchdog when half its period has passed since the last ping.
    pub fn watchdog(&mut self) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if self.last_ping.is_none_or(|t| t.elapsed() >= every) {
            self.send("WATCHDOG=1");
            self.last_ping = Some(Instant::now());
        }
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

fn address(name: &str) -> std::io::Result<SocketAddr> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(abstract_name.as_bytes());
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Err(std::io::Error::other(format!(
            "abstract socket @{abstract_name} needs Linux"
        )));
    }
    SocketAddr::from_pathname(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    #[test]
    fn messages_reach_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut n = Notifier::new(path.to_str(), Some("2000000"), None);
        assert_eq!(n.watchdog_period(), Some(Duration::from_secs(1)));
        n.ready("running\nnow");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            "READY=1\nSTATUS=running now"
        );
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        // Within half the period: no second ping.
        n.watchdog();
        listener.set_nonblocking(true).unwrap();
        assert!(listener.recv(&mut buf).is_err());
    }

    #[test]
    fn abstract_sockets_and_foreign_watchdogs() {
        let name = format!("outpost-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::new(Some(&format!("@{name}")), Some("1000000"), Some("1"));
        assert_eq!(n.watchdog_period(), None, "WATCHDOG_PID of another process");
        n.status("hello");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=hello");
        assert!(!Notifier::new(None, Some("1000000"), None).is_active());
    }
}
