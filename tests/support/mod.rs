//! Integration-test harness: real services (Mosquitto, VictoriaMetrics), an in-process
//! recording InfluxDB-write proxy, the gateway binary as a child process, and small helpers
//! (free ports, polling, a minimal HTTP/1.1 client, a line-protocol parser for assertions).
//!
//! Every service runs on its own loopback port in its own temp dir and is killed when its
//! handle drops, so tests can run in parallel threads of the one test binary. Readiness is
//! always polled (never a fixed sleep) and gives up after [`READY_TIMEOUT`] with a panic that
//! includes the service's log. A missing binary is a panic naming the install command; tests
//! are never skipped silently. When a test panics while a handle is alive, the handle's drop
//! prints the tail of that service's log to stderr, which the test runner shows for failed tests.
//!
//! All items are `pub(crate)`: the test binary is one crate, and `unreachable_pub` is on.

// Each test module uses only part of the harness, and the test binary is one crate, so any
// helper or re-export not used by the currently linked test modules would otherwise be a
// dead-code / unused-import error under `clippy -D warnings`.
#![allow(dead_code, unused_imports)]

pub(crate) mod gateway;
pub(crate) mod http;
pub(crate) mod influxdb;
pub(crate) mod line;
pub(crate) mod mosquitto;
pub(crate) mod mqtt_client;
pub(crate) mod proxy;
pub(crate) mod victoria;

pub(crate) use gateway::{repo_path, run_cli, run_cli_with_env, GatewayProcess};
pub(crate) use http::{http_get, http_post, http_request, HttpResponse};
pub(crate) use influxdb::InfluxDb1;
pub(crate) use line::{parse_line, parse_lines, FieldVal, ParsedPoint};
pub(crate) use mosquitto::{Mosquitto, MqttMessage, MqttSubscriber};
pub(crate) use mqtt_client::{MqttClient, Received};
pub(crate) use proxy::{Disposition, RecordedRequest, RecordingProxy};
pub(crate) use victoria::{total_samples, ExportedSeries, VictoriaMetrics};

use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a service may take to become ready before the harness gives up.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a graceful stop (SIGTERM) may take before the harness sends SIGKILL.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The message every missing-binary panic carries.
pub(crate) const INSTALL_HINT: &str =
    "run scripts/install-test-deps (apt-get install mosquitto mosquitto-clients victoria-metrics influxdb)";

/// Ports handed out by [`free_port`] in this process; never handed out twice, so a service
/// that is stopped for a restart keeps its port even while other tests look for ports.
fn issued_ports() -> &'static Mutex<HashSet<u16>> {
    static ISSUED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    ISSUED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback TCP port that is free right now and that this process has not handed out before.
///
/// Ports are drawn from below the kernel's ephemeral range (`ip_local_port_range`), so neither an
/// outgoing connection nor anyone's `bind(0)` can take the port while a service is down for a
/// restart. Falls back to `bind(127.0.0.1:0)` if that range cannot be read or is exhausted.
pub(crate) fn free_port() -> u16 {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low: u16 = 10_000;
    let mut issued = issued_ports()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ephemeral_low > low + 1000 {
        let span = u32::from(ephemeral_low - low);
        let mut x = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        for _ in 0..200 {
            // xorshift: cheap, good enough to spread the candidates.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = low + (x % u64::from(span)) as u16;
            if issued.contains(&port) {
                continue;
            }
            if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
                issued.insert(port);
                return port;
            }
        }
    }
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if issued.insert(port) {
            return port;
        }
    }
}

/// Polls `check` every `every` until it returns true or `timeout` passes; true when it did.
pub(crate) fn wait_until(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(every);
    }
}

/// Whether a TCP connection to 127.0.0.1:`port` succeeds now.
pub(crate) fn tcp_connects(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Finds an executable: on `PATH`, then in the sbin directories (Debian puts `mosquitto` in
/// `/usr/sbin`, which is not on a normal user's `PATH`). Panics with the install hint if absent.
pub(crate) fn find_binary(name: &str) -> PathBuf {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let extra = [
        "/usr/sbin",
        "/usr/local/sbin",
        "/sbin",
        "/usr/bin",
        "/usr/local/bin",
    ]
    .iter()
    .map(PathBuf::from);
    path_dirs
        .into_iter()
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} not found: {INSTALL_HINT}"))
}

/// Reads a file as text (lossy UTF-8); empty when it does not exist yet.
pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends SIGTERM to `child` (via the `kill` command: this crate forbids `unsafe`, so no libc).
/// Does nothing if the child has already exited.
pub(crate) fn send_sigterm(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
}

/// Waits for `child` to exit for at most `timeout`; `None` if it is still running.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, Duration::from_millis(20), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status and whether SIGKILL
/// was needed.
pub(crate) fn terminate_child(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    send_sigterm(child);
    if let Some(status) = wait_timeout(child, timeout) {
        return (status, false);
    }
    let _ = child.kill();
    (child.wait().expect("wait for killed child"), true)
}

/// SIGKILL and reap; fine to call on an exited child.
pub(crate) fn kill_child(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    child.wait().ok()
}
