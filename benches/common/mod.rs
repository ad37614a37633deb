//! Helpers shared by the end-to-end benchmarks (`benches/ingest.rs`, `benches/modbus.rs`):
//! parameters from the environment, the release gateway binary, child processes (mosquitto,
//! victoria-metrics, the gateway, the simulator) with their logs, CPU and RSS, free ports and
//! temp dirs, a minimal HTTP client, store queries, and number formatting for the reports.
//! Everything runs on 127.0.0.1; every wait is bounded; every child is killed on drop.

// Each bench is its own crate and uses a different part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// The gateway's MQTT client id in the benches (its persistent session on the broker).
pub(crate) const GATEWAY_CLIENT_ID: &str = "estate-gateway-bench";
/// Logged by the gateway once the broker granted its subscriptions.
pub(crate) const SUBSCRIBED_LOG: &str = "Subscribed to telemetry and status topics.";
/// Logged by the gateway once its HTTP API is bound (with `listen=ADDR`).
pub(crate) const HTTP_LOG: &str = "HTTP API listening.";
/// Logged by the gateway as the last line of a clean shutdown (with its counters).
pub(crate) const STOPPED_LOG: &str = "estate-gateway stopped.";
/// Time the gateway has to exit after SIGTERM before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// QoS 1 publishes a load generator keeps in flight (it stands for many devices).
pub(crate) const PUBLISH_INFLIGHT: u16 = 1000;
/// rumqttc request channel capacity of the benches' own clients.
pub(crate) const CLIENT_CAPACITY: usize = 10_000;

/// The gateway's HTTP port, from its `HTTP API listening. listen=ADDR` log line.
pub(crate) fn http_port(log: &str) -> Option<u16> {
    log.lines()
        .find(|l| l.contains(HTTP_LOG))
        .and_then(|l| l.split("listen=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
}

/// Time a service (broker, store, gateway, simulator) has to become ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this is the full run: `cargo bench` passes `--bench`; `cargo test` runs
/// harness=false benches without it (then they run a tiny smoke version).
pub(crate) fn full_run() -> bool {
    std::env::args().skip(1).any(|a| a == "--bench")
}

/// A whole number from the environment (`_` allowed as a separator), or `default`.
pub(crate) fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a whole number: {e}")),
        Err(_) => default,
    }
}

/// Whether a diagnostic switch is on (set and neither empty nor `0`).
pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The gateway binary: in the full run the release build (`cargo bench` builds it, and
/// `scripts/bench` builds it explicitly first); in the smoke test whatever profile Cargo built.
/// `bench` names the bench for the hints (`ingest`, `modbus`).
pub(crate) fn gateway_bin(full: bool, bench: &str) -> Result<PathBuf, String> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_estate-gateway"));
    let release = bin
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "release");
    if full && !release {
        return Err(format!(
            "{} is not a release build; run `cargo build --release --bin estate-gateway` and \
             `cargo bench --bench {bench}` (or simply `scripts/bench`)",
            bin.display()
        ));
    }
    if !bin.is_file() {
        return Err(format!(
            "the gateway binary {} is missing; run `cargo build --release --bin estate-gateway` \
             (scripts/bench does this before `cargo bench --bench {bench}`)",
            bin.display()
        ));
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------------------
// Child processes: mosquitto, victoria-metrics, the gateway, the simulator.

/// A child process with its log file; killed (SIGKILL) on drop.
pub(crate) struct Service {
    name: &'static str,
    child: Child,
    pub(crate) port: u16,
    log_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Service {
    pub(crate) fn spawn(
        name: &'static str,
        mut cmd: Command,
        dir: &Path,
        port: u16,
    ) -> Result<Service, String> {
        let log_path = dir.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone a file handle: {e}"))?;
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        Ok(Service {
            name,
            child,
            port,
            log_path,
            status: None,
        })
    }

    /// mosquitto on a free loopback port; no persistence (a fresh broker per phase), an
    /// unlimited queue per client (so a subscriber that falls behind loses nothing), and
    /// `inflight` as `max_inflight_messages`.
    pub(crate) fn mosquitto(dir: &Path, inflight: u32) -> Result<Service, String> {
        let bin = find_binary("mosquitto")?;
        let mut last = String::new();
        // A port found free can be taken before the broker binds it: try a few.
        for attempt in 0..3 {
            let port = free_port()?;
            let conf = dir.join(format!("mosquitto-{attempt}.conf"));
            // BENCH_BROKER_LOG_ALL: log every packet (slow; to find where a message went).
            let debug = if env_flag("BENCH_BROKER_LOG_ALL") {
                "log_type all\n"
            } else {
                ""
            };
            write_file(
                &conf,
                &format!(
                    "listener {port} 127.0.0.1\n\
                     allow_anonymous true\n\
                     persistence false\n\
                     max_queued_messages 0\n\
                     max_inflight_messages {inflight}\n\
                     log_dest stderr\n\
                     log_type error\n\
                     log_type warning\n\
                     log_type notice\n\
                     log_type information\n\
                     {debug}\
                     # As root, mosquitto would drop to the `mosquitto` user; nothing here\n\
                     # needs that. Ignored when not run as root.\n\
                     user root\n"
                ),
            )?;
            let mut cmd = Command::new(&bin);
            cmd.arg("-c").arg(&conf);
            let mut s = Service::spawn("mosquitto", cmd, dir, port)?;
            match s.wait_ready(|s| s.log().contains(" running") && tcp_connects(s.port)) {
                Ok(()) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(format!("mosquitto did not start (3 attempts): {last}"))
    }

    /// victoria-metrics on a free loopback port, as the integration tests run it.
    pub(crate) fn victoria_metrics(dir: &Path) -> Result<Service, String> {
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port()?;
            match Service::victoria_metrics_at(dir, &dir.join(format!("vm-data-{attempt}")), port) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(format!(
            "victoria-metrics did not start (3 attempts): {last}"
        ))
    }

    /// victoria-metrics on `port` with its data in `data` (started again on the same two, it
    /// keeps what it had).
    pub(crate) fn victoria_metrics_at(
        dir: &Path,
        data: &Path,
        port: u16,
    ) -> Result<Service, String> {
        let bin = find_binary("victoria-metrics")?;
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-http.maxGracefulShutdownDuration=1s")
            .arg("-memory.allowedBytes=512MiB");
        let mut s = Service::spawn("victoria-metrics", cmd, dir, port)?;
        s.wait_ready(|s| http_get(s.port, "/health").is_ok_and(|(code, _)| code == 200))?;
        Ok(s)
    }

    /// `estate-gateway run -c CONFIG`, with no environment overrides of its configuration.
    pub(crate) fn gateway(dir: &Path, bin: &Path, config: &Path) -> Result<Service, String> {
        let mut cmd = estate_gateway_command(bin);
        cmd.arg("run").arg("-c").arg(config);
        Service::spawn("estate-gateway", cmd, dir, 0)
    }

    /// `estate-gateway simulate -c CONFIG ARGS…` (the Modbus simulator), logging to
    /// `simulator.log`; ready once it has printed what it serves.
    pub(crate) fn simulator(
        dir: &Path,
        bin: &Path,
        config: &Path,
        args: &[&str],
    ) -> Result<Service, String> {
        let mut cmd = estate_gateway_command(bin);
        cmd.arg("simulate").arg("-c").arg(config).args(args);
        let mut s = Service::spawn("simulator", cmd, dir, 0)?;
        s.wait_ready(|s| s.log().contains("Simulating "))?;
        Ok(s)
    }

    pub(crate) fn wait_ready(&mut self, ready: impl Fn(&Service) -> bool) -> Result<(), String> {
        let t = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}):\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            if ready(self) {
                return Ok(());
            }
            if t.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{} was not ready within {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub(crate) fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- {} log (last 40 lines) ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    pub(crate) fn cpu_ticks(&self) -> Option<u64> {
        cpu_ticks(&self.pid().to_string())
    }

    /// Peak resident set size (VmHWM), KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(&self.pid().to_string())
    }

    /// SIGTERM, then SIGKILL after `timeout`; the exit status (None if it had to be killed).
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let t = Instant::now();
            while t.elapsed() < timeout {
                if let Some(s) = self.exited() {
                    return Some(s);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The gateway binary with no environment overrides of its configuration and no colours.
fn estate_gateway_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ESTATE_GW") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    cmd
}

/// Finds an executable on `PATH` or in the sbin directories (Debian's mosquitto is in
/// `/usr/sbin`, not on a normal user's `PATH`).
pub(crate) fn find_binary(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found; install it with scripts/install-test-deps"))
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

pub(crate) fn tcp_connects(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A temp dir, removed at the end unless `BENCH_KEEP_DIRS` is set (then its path is printed:
/// it holds the configs and every process's log).
pub(crate) fn temp_dir(prefix: &str) -> Result<TempDir, String> {
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    if env_flag("BENCH_KEEP_DIRS") {
        dir.disable_cleanup(true);
        eprintln!("  keeping {}", dir.path().display());
    }
    Ok(dir)
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// HTTP and the store (victoria-metrics).

/// An instant query at a minute from now, after making everything the store ingested so far
/// searchable: (labels, value) per result.
pub(crate) fn store_query(port: u16, query: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
    let (code, body) = http_get(port, "/internal/force_flush")?;
    if code != 200 {
        return Err(format!("victoria-metrics force_flush: HTTP {code}: {body}"));
    }
    let time = now_ms() / 1000 + 60;
    let path = format!("/api/v1/query?query={}&time={time}", url_encode(query));
    let (code, body) = http_get(port, &path)?;
    if code != 200 {
        return Err(format!("victoria-metrics {query}: HTTP {code}: {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("victoria-metrics {query}: not JSON ({e}): {body}"))?;
    let Some(result) = v["data"]["result"].as_array() else {
        return Err(format!(
            "victoria-metrics {query}: unexpected answer: {body}"
        ));
    };
    result
        .iter()
        .map(|r| {
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| format!("victoria-metrics {query}: unexpected answer: {body}"))?;
            Ok((r["metric"].clone(), value))
        })
        .collect()
}

/// A minimal HTTP/1.0 GET to 127.0.0.1:`port` (the server closes the connection after the
/// response, so the body is everything after the headers).
pub(crate) fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))
        .map_err(|e| format!("GET {path}: cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("GET {path}: {e}"))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: incomplete response: {text}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line: {head}"))?;
    Ok((code, body.to_owned()))
}

/// Samples of `metric` (one per reading) the store holds (the last 30 days).
pub(crate) fn store_count(port: u16, metric: &str) -> Result<u64, String> {
    let query = format!("sum(count_over_time({metric}[30d]))");
    let result = store_query(port, &query)?;
    Ok(result.first().map_or(0, |(_, v)| *v as u64))
}

/// A value of the gateway's `GET /metrics` on `port`.
pub(crate) fn gateway_metric(port: u16, name: &str) -> Result<f64, String> {
    let (code, body) = http_get(port, "/metrics")?;
    if code != 200 {
        return Err(format!("GET /metrics: HTTP {code}: {body}"));
    }
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("GET /metrics has no `{name}`:\n{body}"))
}

/// Bytes in the files of `dir` (not below it).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Measuring.

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

/// utime + stime of a process (`self` or a pid), in clock ticks.
pub(crate) fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses: state is the
    // first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Peak resident set size (VmHWM) of a process (`self` or a pid), KiB.
pub(crate) fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn ticks_s(before: Option<u64>, after: Option<u64>, clk_tck: f64) -> f64 {
    match (before, after) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / clk_tck,
        _ => f64::NAN,
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub(crate) fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// The median of the finite values (NaN if there are none).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// `v` with `decimals` decimals, or (0 decimals) whole with thousands separators: 123 456.
pub(crate) fn fmt_num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    if decimals > 0 {
        return format!("{v:.decimals$}");
    }
    // Whole numbers with thousands separators: 123 456.
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

// MQTT helpers shared by the benches.

/// A bench client (`{name}-{pid}`, clean session) connected to the broker on 127.0.0.1:`port`,
/// its CONNACK received by `deadline`; `inflight`: QoS 1 publishes it keeps in flight.
pub(crate) async fn connect(
    port: u16,
    name: &str,
    inflight: Option<u16>,
    deadline: tokio::time::Instant,
) -> Result<(rumqttc::AsyncClient, rumqttc::EventLoop), String> {
    let mut o =
        rumqttc::MqttOptions::new(format!("{name}-{}", std::process::id()), "127.0.0.1", port);
    o.set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30));
    if let Some(n) = inflight {
        o.set_inflight(n);
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, CLIENT_CAPACITY);
    wait_for(&mut eventloop, deadline, name, |ev| {
        matches!(ev, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
    })
    .await?;
    Ok((client, eventloop))
}

/// Polls `eventloop` until `done` accepts an event.
pub(crate) async fn wait_for(
    eventloop: &mut rumqttc::EventLoop,
    deadline: tokio::time::Instant,
    who: &str,
    done: impl Fn(&rumqttc::Event) -> bool,
) -> Result<(), String> {
    loop {
        let ev = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| format!("{who}: no answer from the broker in time"))?
            .map_err(|e| format!("{who}: {e}"))?;
        if done(&ev) {
            return Ok(());
        }
    }
}

/// Publishes `n` messages (topic, payload) at `qos` from `client` as fast as the connection
/// takes them, polling `eventloop` (by `deadline`) until every one is done — at QoS 1 its
/// PUBACK has arrived, at QoS 0 it was written — and returns when the last one was.
/// Disconnects at the end.
pub(crate) async fn publish_counted(
    client: &rumqttc::AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    n: usize,
    messages: impl Iterator<Item = (String, bytes::Bytes)> + Send + 'static,
    qos: rumqttc::QoS,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Instant, String> {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    let feeder = {
        let client = client.clone();
        tokio::spawn(async move {
            for (topic, payload) in messages {
                if let Err(e) = client.publish_bytes(topic, qos, false, payload).await {
                    return Err(format!("publisher: cannot queue a publish: {e}"));
                }
            }
            Ok(())
        })
    };
    let (what, counted): (&str, fn(&Event) -> bool) = if qos == QoS::AtMostOnce {
        ("written", |ev| {
            matches!(ev, Event::Outgoing(Outgoing::Publish(_)))
        })
    } else {
        ("acknowledged", |ev| {
            matches!(ev, Event::Incoming(Packet::PubAck(_)))
        })
    };
    let mut done_n = 0;
    while done_n < n {
        let ev = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| format!("publisher: {done_n} of {n} publishes {what} by {timeout:?}"))?
            .map_err(|e| {
                format!("publisher: connection failed after {done_n} publishes {what}: {e}")
            })?;
        if counted(&ev) {
            done_n += 1;
        }
    }
    let done = Instant::now();
    feeder
        .await
        .map_err(|e| format!("publisher feeder task: {e}"))??;
    disconnect(client, eventloop).await;
    Ok(done)
}

/// Sends what is queued (e.g. the last PUBACKs) and disconnects, within a second.
pub(crate) async fn disconnect(client: &rumqttc::AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
