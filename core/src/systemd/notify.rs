//! The sender side of systemd's notification protocol (sd_notify(3)): one
//! datagram of `KEY=value` lines to the Unix socket named by `NOTIFY_SOCKET`
//! (a path, or an abstract-namespace name when it starts with `@`).
//!
//! Sends never block: the socket is non-blocking, and a notification that
//! does not fit (the manager is not reading) is dropped — a missed `STATUS=`
//! is harmless, and a missed `WATCHDOG=1` is exactly what the watchdog is for.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for through `NOTIFY_SOCKET`, or `None` when
    /// the process does not run under a `Type=notify` unit (or the variable
    /// names no usable socket).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        match Notifier::connect(&path.to_string_lossy()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(socket = ?path, error = %e, "NOTIFY_SOCKET is set but unusable; not notifying systemd.");
                None
            }
        }
    }

    /// A notifier for the socket at `path` (`@name` for the abstract namespace).
    pub fn connect(path: &str) -> io::Result<Notifier> {
        let addr = match path.strip_prefix('@') {
            Some(name) => abstract_addr(name.as_bytes())?,
            None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path or an @abstract name",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends `state`: newline-separated `KEY=value` assignments.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// `READY=1` plus a first status line: startup has finished.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=`: a one-line summary shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send_logged(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`: the service is alive.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// `RELOADING=1` with the monotonic time systemd asks for (253 and
    /// later): a reload started; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.send_logged(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the pipeline",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`: the service is shutting down.
    pub fn stopping(&self, status: &str) {
        self.send_logged(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::debug!(error = %e, "Failed to notify systemd.");
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets need Linux",
    ))
}

/// A status is one line: newlines would start new assignments.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The watchdog timeout systemd set for this process (`WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is absent or names this process), or `None`.
pub fn watchdog_timeout_from_env() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then_some(Duration::from_micros(usec))
}

/// CLOCK_MONOTONIC in microseconds (what `MONOTONIC_USEC=` carries).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_ready_and_status_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.ready("2 sources\n1 sink");
        assert_eq!(recv(&server), "READY=1\nSTATUS=2 sources 1 sink");
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.stopping("stopping");
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn sends_to_an_abstract_socket_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("weir-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(&format!("@{name}")).unwrap();
        n.status("ok");
        assert_eq!(recv(&server), "STATUS=ok");
    }

    #[test]
    fn refuses_a_relative_socket_path() {
        assert!(Notifier::connect("notify.sock").is_err());
    }

    #[test]
    fn a_full_socket_drops_notifications_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        // Nobody reads: the receive queue fills and sends fail fast.
        let mut failed = false;
        for _ in 0..100_000 {
            if n.notify("WATCHDOG=1").is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "sends to a full socket never failed");
    }
}
