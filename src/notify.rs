//! systemd's service notification protocol (`sd_notify(3)`), without libsystemd: one datagram
//! of `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for
//! the abstract namespace).
//!
//! The packaged unit (`packaging/estate-gateway.service`) is `Type=notify` with
//! `WatchdogSec=`: `estate-gateway run` sends `READY=1` once the gateway runs (journal
//! restored, sinks, core stage, Modbus poller, HTTP and MQTT source started), then
//! `WATCHDOG=1` at half of `$WATCHDOG_USEC` as long as the core stage's tick advances
//! (`Stats::core.ticks`), and `STOPPING=1` when it shuts down. A core stage that stops
//! ticking stops the pings, and systemd restarts the gateway. Outside systemd (no
//! `$NOTIFY_SOCKET`) nothing is sent.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// One assignment of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Start-up finished (`READY=1`).
    Ready,
    /// Shutting down (`STOPPING=1`).
    Stopping,
    /// Reloading the configuration (`RELOADING=1`; `READY=1` follows when done).
    Reloading,
    /// Alive (`WATCHDOG=1`).
    Watchdog,
    /// A one-line status for `systemctl status` (`STATUS=…`; line breaks become spaces).
    Status(String),
}

/// The datagram for `states`: one `KEY=VALUE` line each.
pub fn message(states: &[State]) -> String {
    let mut out = String::new();
    for s in states {
        match s {
            State::Ready => out.push_str("READY=1"),
            State::Stopping => out.push_str("STOPPING=1"),
            State::Reloading => out.push_str("RELOADING=1"),
            State::Watchdog => out.push_str("WATCHDOG=1"),
            State::Status(text) => {
                out.push_str("STATUS=");
                out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
            }
        }
        out.push('\n');
    }
    out
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A name in Linux's abstract socket namespace (`$NOTIFY_SOCKET` starting with `@`).
    Abstract(Vec<u8>),
}

impl Target {
    /// Reads `$NOTIFY_SOCKET`'s value: `None` when it is empty or not a unix socket address
    /// (e.g. `vsock:…`, which this gateway does not speak).
    pub fn parse(value: &str) -> Option<Target> {
        if let Some(name) = value.strip_prefix('@') {
            return (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()));
        }
        value
            .starts_with('/')
            .then(|| Target::Path(PathBuf::from(value)))
    }
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
}

impl Notifier {
    /// The notifier of `$NOTIFY_SOCKET`; `None` when not started by systemd as `Type=notify`
    /// (or the socket cannot be created: then notifications are skipped, with a warning).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var("NOTIFY_SOCKET").ok()?;
        let Some(target) = Target::parse(&value) else {
            tracing::warn!(
                socket = %value,
                "NOTIFY_SOCKET is not a unix socket path; no readiness or watchdog notifications."
            );
            return None;
        };
        match Notifier::new(target) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot create a socket for systemd notifications.");
                None
            }
        }
    }

    pub fn new(target: Target) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        // Never blocks the runtime: a receiver whose queue is full (Linux keeps 10 datagrams)
        // makes the send fail instead, and the failure is logged.
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, target })
    }

    /// Sends one notification (all `states` in one datagram).
    pub fn notify(&self, states: &[State]) -> io::Result<()> {
        let msg = message(states);
        let sent = match &self.target {
            Target::Path(p) => self.socket.send_to(msg.as_bytes(), p)?,
            Target::Abstract(name) => self.send_abstract(msg.as_bytes(), name)?,
        };
        if sent == msg.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", msg.len()),
            ))
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn send_abstract(&self, msg: &[u8], name: &[u8]) -> io::Result<usize> {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        self.socket.send_to_addr(msg, &addr)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn send_abstract(&self, _msg: &[u8], _name: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract unix sockets exist on Linux only",
        ))
    }

    /// Sends, logging a failure instead of returning it (a notification that cannot be sent
    /// must not stop the gateway; systemd then says what it missed).
    pub fn notify_or_warn(&self, states: &[State]) {
        if let Err(e) = self.notify(states) {
            tracing::warn!(error = %e, message = %message(states).trim_end(), "Cannot notify systemd.");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is enabled for
/// this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?;
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(&usec, pid.as_deref(), std::process::id())
}

/// `watchdog_interval` on given values (testable without touching the environment).
pub fn watchdog_interval_from(usec: &str, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `every` while `alive()` (a counter the core stage advances each
/// tick) has moved since the last ping; a stalled stage is reported once and not pinged, so
/// systemd's watchdog restarts the gateway. Runs until the task is dropped or cancelled.
pub async fn watchdog(notifier: &Notifier, every: Duration, alive: impl Fn() -> u64) {
    let mut last = alive();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut stalled = false;
    loop {
        ticker.tick().await;
        let now = alive();
        if now != last {
            last = now;
            stalled = false;
            notifier.notify_or_warn(&[State::Watchdog]);
        } else if !stalled {
            stalled = true;
            tracing::error!(
                "The core stage has not ticked since the last watchdog ping; not pinging systemd's watchdog."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_key_value_lines() {
        assert_eq!(message(&[State::Ready]), "READY=1\n");
        assert_eq!(
            message(&[
                State::Ready,
                State::Status("running\n3 devices".into()),
                State::Watchdog
            ]),
            "READY=1\nSTATUS=running 3 devices\nWATCHDOG=1\n"
        );
        assert_eq!(message(&[State::Stopping]), "STOPPING=1\n");
    }

    #[test]
    fn notify_socket_values() {
        assert_eq!(
            Target::parse("/run/systemd/notify"),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Target::parse("@/org/freedesktop/systemd1/notify/1"),
            Some(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        assert_eq!(Target::parse(""), None);
        assert_eq!(Target::parse("@"), None);
        assert_eq!(Target::parse("vsock:2:1234"), None);
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_our_pid() {
        assert_eq!(
            watchdog_interval_from("30000000", None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from("30000000", Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval_from("30000000", Some("8"), 7), None);
        assert_eq!(watchdog_interval_from("0", None, 7), None);
        assert_eq!(watchdog_interval_from("soon", None, 7), None);
    }

    fn receiver() -> (tempfile::TempDir, UnixDatagram, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (dir, rx, path)
    }

    fn recv(rx: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_reaches_a_real_socket() {
        let (_dir, rx, path) = receiver();
        let n = Notifier::new(Target::Path(path)).expect("notifier");
        n.notify(&[State::Ready, State::Status("running".into())])
            .expect("sent");
        assert_eq!(recv(&rx), "READY=1\nSTATUS=running\n");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let n = Notifier::new(Target::Path(dir.path().join("absent.sock"))).expect("notifier");
        assert!(n.notify(&[State::Ready]).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_sockets() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("estate-gateway-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract name");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let target = Target::parse(&format!("@{name}")).expect("abstract target");
        Notifier::new(target)
            .expect("notifier")
            .notify(&[State::Stopping])
            .expect("sent");
        assert_eq!(recv(&rx), "STOPPING=1\n");
    }

    #[tokio::test]
    async fn the_watchdog_pings_only_while_the_stage_ticks() {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        use std::sync::Arc;
        let (_dir, rx, path) = receiver();
        rx.set_nonblocking(true).expect("nonblocking");
        let n = Notifier::new(Target::Path(path)).expect("notifier");
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        let pings = |rx: &UnixDatagram| {
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while let Ok(k) = rx.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
            }
            got
        };
        let dog = tokio::spawn(async move {
            watchdog(&n, Duration::from_millis(50), move || t.load(Relaxed)).await;
        });
        // The stage ticks every 10 ms for 600 ms: a ping about every 50 ms.
        let mut got = Vec::new();
        for _ in 0..60 {
            ticks.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            got.extend(pings(&rx));
        }
        assert!(got.len() >= 4, "{got:?}");
        assert!(got.iter().all(|m| m == "WATCHDOG=1\n"), "{got:?}");
        // It stops ticking: after the ping of the last change, none.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let _ = pings(&rx);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(pings(&rx), Vec::<String>::new());
        dog.abort();
    }
}
