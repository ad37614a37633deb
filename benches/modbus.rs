//! Modbus polling benchmark (issue 3, "Benchmark"): what the release gateway costs polling a
//! fixed load of simulated devices over Modbus TCP, and how close its request rate comes to a
//! bare tokio-modbus request/response loop against the same simulator in the same run.
//!
//! Each round starts the project's simulator as its own process (`estate-gateway simulate`,
//! values frozen with `--tick 1h`, so re-encoding values never runs during a measurement) with
//! `BENCH_MODBUS_DEVICES` (default 1000) devices of a bench model — 20 contiguous holding
//! registers (six f32 in all four byte/word orders, u32, i32, i16, two scaled u16, a status
//! bit), one fc03 request of 20 words per poll — spread over `BENCH_MODBUS_ENDPOINTS`
//! (default 5) Modbus TCP endpoints of at most 247 units each, and measures, one after the
//! other:
//!
//! 1. **fixed load, with the store**: the gateway polls every device every second and writes
//!    to a real victoria-metrics; after a warm-up, over `BENCH_MODBUS_WINDOW` seconds (default
//!    30): polls, requests and registers per second (the gateway's own counters, `GET
//!    /metrics`), the polls that started on time (from the readings' timestamps in the store),
//!    gateway CPU (utime+stime, `/proc/<pid>/stat`) and peak RSS (VmHWM);
//! 2. **fixed load, no store**: the same without `[store]` (readings are discarded), so the
//!    poller's own cost is seen without line protocol, gzip and HTTP writes;
//! 3. **capacity, gateway**: every device at a 1 ms interval (always due, so each endpoint's
//!    task sends its next request as soon as the last is answered), no store, for
//!    `BENCH_MODBUS_CAPACITY_WINDOW` seconds (default 10): requests per second;
//! 4. **capacity, bare loop**: in this process, one tokio task per endpoint with its own
//!    connection, reading the same 20 registers of each unit in turn and decoding them with the
//!    same register maps (`Register::decode_words`), for the same time (3 and 4 swap order
//!    every round, so a drift in what else the machine does favours neither).
//!
//! The simulator is a separate process so every figure's CPU belongs to one program: the
//! gateway's CPU is the gateway's, the bare loop's is this process's, and the simulator's is
//! reported on its own (on a 2-core machine it shares the cores with whichever client runs).
//!
//! `cargo bench --bench modbus` (run it through `scripts/bench`, which builds the release
//! gateway and writes `BENCHMARKS.md`) runs `BENCH_ROUNDS` (default 3) rounds. Under
//! `cargo test --all-targets` (no `--bench` argument) it runs a tiny smoke version (10
//! devices, windows of a second or two) that asserts readings of every device reach the store
//! and both capacity loops answer requests, so CI proves the bench still works.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use estate_gateway::source::modbus::map::Table;
use estate_gateway::source::modbus::DeviceModel;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::Slave;

use common::{
    clk_tck, cpu_ticks, env_number, fmt_num, full_run, gateway_bin, http_get, http_port, median,
    now_ms, secs, temp_dir, ticks_s, url_encode, write_file, Service, HTTP_LOG, READY_TIMEOUT,
    STOPPED_LOG, STOP_TIMEOUT,
};

const FULL_DEVICES: usize = 1000;
const FULL_ENDPOINTS: usize = 5;
const FULL_ROUNDS: usize = 3;
const FULL_WINDOW_S: usize = 30;
const FULL_CAPACITY_WINDOW_S: usize = 10;

const SITE: &str = "bench";
const CATEGORY: &str = "bench_meter";
const MODEL: &str = "bench_meter20";
/// Holding registers (words) one poll of the bench model reads.
const WORDS: u64 = 20;
/// The store series that counts readings (one sample per poll of a device).
const COUNTED_METRIC: &str = "telemetry_t1";
/// The polling interval of the fixed load.
const INTERVAL: Duration = Duration::from_secs(1);
/// A poll is on time when it starts within this of its due time (10% of the interval, the
/// issue's tolerance for healthy devices).
const ON_TIME: Duration = Duration::from_millis(100);
/// The polling interval of the capacity phase: always due.
const CAPACITY_INTERVAL: &str = "1ms";
/// Simulated values move this seldom: never during a run.
const SIM_TICK: &str = "1h";

/// The bench model's category profile (in `gateway.profiles_dir`).
const PROFILE_TOML: &str = r#"# The benchmark's device: 12 signals in 20 holding registers.
category = "bench_meter"
label = "bench meter"
interval = "1s"

[[signals]]
name = "t1"
type = "float"
[[signals]]
name = "t2"
type = "float"
[[signals]]
name = "t3"
type = "float"
[[signals]]
name = "t4"
type = "float"
[[signals]]
name = "t5"
type = "float"
[[signals]]
name = "t6"
type = "float"
[[signals]]
name = "energy"
type = "int"
[[signals]]
name = "balance"
type = "int"
[[signals]]
name = "delta"
type = "int"
[[signals]]
name = "level"
type = "float"
[[signals]]
name = "pressure"
type = "float"
[[signals]]
name = "running"
type = "bool"
"#;

/// The bench model (in `modbus.models_dir`): holding 0..20, one fc03 request of 20 words.
const MODEL_TOML: &str = r#"model = "bench_meter20"
category = "bench_meter"

[[registers]]
signal = "t1"
table = "holding"
address = 0
type = "f32"
order = "ABCD"
[[registers]]
signal = "t2"
table = "holding"
address = 2
type = "f32"
order = "ABCD"
[[registers]]
signal = "t3"
table = "holding"
address = 4
type = "f32"
order = "CDAB"
[[registers]]
signal = "t4"
table = "holding"
address = 6
type = "f32"
order = "CDAB"
[[registers]]
signal = "t5"
table = "holding"
address = 8
type = "f32"
order = "BADC"
[[registers]]
signal = "t6"
table = "holding"
address = 10
type = "f32"
order = "DCBA"
[[registers]]
signal = "energy"
table = "holding"
address = 12
type = "u32"
[[registers]]
signal = "balance"
table = "holding"
address = 14
type = "i32"
order = "CDAB"
[[registers]]
signal = "delta"
table = "holding"
address = 16
type = "i16"
[[registers]]
signal = "level"
table = "holding"
address = 17
type = "u16"
scale = 0.1
[[registers]]
signal = "pressure"
table = "holding"
address = 18
type = "u16"
scale = 0.001
[[registers]]
signal = "running"
table = "holding"
address = 19
type = "bit"
bit = 0
"#;

fn main() {
    let p = Params::from_env();
    let gateway = gateway_bin(p.full, "modbus").unwrap_or_else(|e| panic!("modbus bench: {e}"));
    let clk_tck = clk_tck();
    eprintln!(
        "modbus bench ({}): {} devices × {WORDS} registers on {} endpoints, {} round(s); fixed \
         load at {} for {} s (+{} s warm-up), capacity {} s; gateway {}",
        if p.full { "full" } else { "smoke test" },
        p.devices,
        p.endpoints,
        p.rounds,
        humantime::format_duration(INTERVAL),
        p.window.as_secs_f64(),
        p.warmup.as_secs_f64(),
        p.capacity_window.as_secs_f64(),
        gateway.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");

    let mut rounds = Vec::with_capacity(p.rounds);
    for round in 1..=p.rounds {
        eprintln!("round {round}/{}", p.rounds);
        let r = run_round(&rt, &p, &gateway, round, clk_tck)
            .unwrap_or_else(|e| panic!("modbus bench, round {round}: {e}"));
        eprintln!(
            "  fixed load: {:.0} polls/s, {:.1}% on time, gateway CPU {:.1}% of a core with the \
             store, {:.1}% without; capacity: gateway {:.0} req/s, bare loop {:.0} req/s ({:.2})",
            r.store.polls_per_s(),
            r.store.on_time.as_ref().map_or(f64::NAN, OnTime::pct),
            r.store.cpu_pct(r.store.gateway_cpu_s),
            r.nostore.cpu_pct(r.nostore.gateway_cpu_s),
            r.capacity.requests_per_s(),
            r.bare.requests_per_s(),
            r.capacity.requests_per_s() / r.bare.requests_per_s()
        );
        if !p.full {
            smoke_checks(&p, &r);
        }
        rounds.push(r);
    }
    drop(rt);
    println!("{}", report(&p, &rounds));
}

/// What to run: the full load under `cargo bench`, a tiny one under `cargo test`.
struct Params {
    full: bool,
    devices: usize,
    endpoints: usize,
    rounds: usize,
    /// Before each fixed-load window: every device has been polled, connections are open.
    warmup: Duration,
    /// The fixed-load window (with the store).
    window: Duration,
    /// The fixed-load window without a store.
    nostore_window: Duration,
    capacity_warmup: Duration,
    capacity_window: Duration,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        let p = if full {
            let window =
                Duration::from_secs(env_number("BENCH_MODBUS_WINDOW", FULL_WINDOW_S) as u64);
            Params {
                full,
                devices: env_number("BENCH_MODBUS_DEVICES", FULL_DEVICES),
                endpoints: env_number("BENCH_MODBUS_ENDPOINTS", FULL_ENDPOINTS),
                rounds: env_number("BENCH_ROUNDS", FULL_ROUNDS),
                warmup: Duration::from_secs(5),
                window,
                nostore_window: window,
                capacity_warmup: Duration::from_secs(2),
                capacity_window: Duration::from_secs(env_number(
                    "BENCH_MODBUS_CAPACITY_WINDOW",
                    FULL_CAPACITY_WINDOW_S,
                ) as u64),
            }
        } else {
            Params {
                full,
                devices: 10,
                endpoints: 2,
                rounds: 1,
                warmup: Duration::from_millis(1200),
                window: Duration::from_secs(2),
                nostore_window: Duration::from_secs(1),
                capacity_warmup: Duration::from_millis(300),
                capacity_window: Duration::from_secs(1),
            }
        };
        assert!(
            p.devices > 0 && p.endpoints > 0 && p.rounds > 0,
            "BENCH_MODBUS_DEVICES, BENCH_MODBUS_ENDPOINTS and BENCH_ROUNDS must be at least 1"
        );
        assert!(
            p.endpoints <= p.devices,
            "BENCH_MODBUS_ENDPOINTS must not exceed BENCH_MODBUS_DEVICES (every endpoint needs \
             a device)"
        );
        assert!(
            p.devices.div_ceil(p.endpoints) <= 247,
            "{} devices on {} endpoints is more than 247 unit ids per endpoint; raise \
             BENCH_MODBUS_ENDPOINTS",
            p.devices,
            p.endpoints
        );
        assert!(
            p.window.as_secs() >= 1 && p.capacity_window.as_secs() >= 1,
            "BENCH_MODBUS_WINDOW and BENCH_MODBUS_CAPACITY_WINDOW must be at least 1 (s)"
        );
        p
    }

    /// Polls due per second at the fixed load.
    fn due_per_s(&self) -> f64 {
        self.devices as f64 / INTERVAL.as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------
// The bench estate: profile, model, devices, and the configurations of the simulator and
// of each gateway phase.

struct Estate {
    dir: PathBuf,
    /// Device ids, in CSV order; device `i` is unit `i / endpoints + 1` on endpoint
    /// `i % endpoints`.
    ids: Vec<String>,
    endpoints: usize,
}

impl Estate {
    fn new(dir: &Path, devices: usize, endpoints: usize) -> Result<Estate, String> {
        let profiles = dir.join("profiles");
        let models = dir.join("models");
        for d in [&profiles, &models] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        write_file(&profiles.join(format!("{CATEGORY}.toml")), PROFILE_TOML)?;
        write_file(&models.join(format!("{MODEL}.toml")), MODEL_TOML)?;
        let ids = (1..=devices).map(|i| format!("M-{i:04}")).collect();
        let estate = Estate {
            dir: dir.to_owned(),
            ids,
            endpoints,
        };
        for (name, interval) in [
            ("devices-1s.csv", "1s"),
            ("devices-1ms.csv", CAPACITY_INTERVAL),
        ] {
            write_file(&dir.join(name), &estate.csv(interval))?;
        }
        Ok(estate)
    }

    fn csv(&self, interval: &str) -> String {
        let mut out = String::from(
            "id,name,building,category,interval,modbus_endpoint,modbus_unit,modbus_model\n",
        );
        for (i, id) in self.ids.iter().enumerate() {
            let (ep, unit) = (i % self.endpoints + 1, i / self.endpoints + 1);
            let _ = writeln!(
                out,
                "{id},bench meter {id},plant room {ep},{CATEGORY},{interval},ep{ep},{unit},{MODEL}"
            );
        }
        out
    }

    /// Writes a configuration: the simulator's (`ports` None: every endpoint on port 0) or a
    /// gateway phase's (the simulator's ports, an HTTP API on a free port, and a store or not).
    fn config(
        &self,
        name: &str,
        ports: Option<&[u16]>,
        csv: &str,
        store_port: Option<u16>,
    ) -> Result<PathBuf, String> {
        let mut toml = format!(
            "devices_csv = \"{csv}\"\n\
             \n\
             [gateway]\n\
             site = \"{SITE}\"\n\
             host = \"bench\"\n\
             data_dir = \"{data}\"\n\
             profiles_dir = \"{profiles}\"\n\
             log_format = \"text\"\n\
             log_level = \"{log_level}\"\n\
             \n\
             [modbus]\n\
             models_dir = \"{models}\"\n",
            data = toml_path(&self.dir.join(format!("{name}-data"))),
            profiles = toml_path(&self.dir.join("profiles")),
            models = toml_path(&self.dir.join("models")),
            // BENCH_GATEWAY_LOG_LEVEL: e.g. `estate_gateway=debug`.
            log_level = std::env::var("BENCH_GATEWAY_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
        );
        for ep in 1..=self.endpoints {
            let port = ports.map_or(0, |p| p[ep - 1]);
            let _ = write!(
                toml,
                "\n[[modbus.endpoints]]\nname = \"ep{ep}\"\nurl = \"tcp://127.0.0.1:{port}\"\n"
            );
        }
        if ports.is_some() {
            toml.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n");
        }
        if let Some(port) = store_port {
            let _ = write!(
                toml,
                "\n[store]\nurl = \"http://127.0.0.1:{port}\"\norg = \"bench\"\nbucket = \"bench\"\n"
            );
        }
        let path = self.dir.join(format!("{name}.toml"));
        write_file(&path, &toml)?;
        Ok(path)
    }
}

fn toml_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// The ports the simulator bound, from the summary it prints (`  ep1 tcp://127.0.0.1:PORT`).
fn simulator_ports(sim: &Service, endpoints: usize) -> Result<Vec<u16>, String> {
    let log = sim.log();
    (1..=endpoints)
        .map(|ep| {
            let prefix = format!("  ep{ep} tcp://");
            log.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse::<SocketAddr>().ok())
                .map(|a| a.port())
                .ok_or_else(|| {
                    format!(
                        "the simulator did not say where ep{ep} listens:\n{}",
                        sim.log_tail()
                    )
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Rounds and phases.

/// One round: four phases against one simulator.
struct Round {
    store: Phase,
    nostore: Phase,
    capacity: Phase,
    bare: Phase,
}

/// What one phase measured over its window (counters are deltas over the window).
#[derive(Debug, Default)]
struct Phase {
    wall: Duration,
    polls: u64,
    requests: u64,
    poll_failures: u64,
    timeouts: u64,
    transport_errors: u64,
    /// CPU seconds of the gateway (NaN in the bare-loop phase).
    gateway_cpu_s: f64,
    simulator_cpu_s: f64,
    /// victoria-metrics (NaN without a store).
    store_cpu_s: f64,
    /// This process (the bare loop, or the bench's sampling).
    bench_cpu_s: f64,
    peak_rss_kib: u64,
    on_time: Option<OnTime>,
}

impl Phase {
    fn s(&self) -> f64 {
        secs(self.wall)
    }
    fn polls_per_s(&self) -> f64 {
        self.polls as f64 / self.s()
    }
    fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.s()
    }
    fn registers_per_s(&self) -> f64 {
        // Every request of the bench model reads WORDS registers; failures are reported.
        (self
            .requests
            .saturating_sub(self.timeouts + self.transport_errors)
            * WORDS) as f64
            / self.s()
    }
    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / self.s()
    }
    /// CPU microseconds per request.
    fn us_per_request(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / self.requests.max(1) as f64
    }
}

/// Whether the polls of the fixed-load window started on time, from the readings'
/// timestamps in the store (`ts` is the gateway clock when a poll started).
#[derive(Debug, Default)]
struct OnTime {
    /// Grid slots of all devices in the window (devices × window / interval).
    due: u64,
    /// Slots with a reading in the store.
    stored: u64,
    /// Slots whose poll started within `ON_TIME` of the slot.
    on_time: u64,
    /// Start lateness of every stored poll, ms.
    lateness_ms: Vec<i64>,
    /// Devices with no reading at all in the window.
    silent_devices: usize,
}

impl OnTime {
    fn pct(&self) -> f64 {
        100.0 * self.on_time as f64 / self.due.max(1) as f64
    }
    fn stored_pct(&self) -> f64 {
        100.0 * self.stored as f64 / self.due.max(1) as f64
    }
    fn lateness_quantile(&self, q: f64) -> f64 {
        if self.lateness_ms.is_empty() {
            return f64::NAN;
        }
        let mut v = self.lateness_ms.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i] as f64
    }
}

fn run_round(
    rt: &tokio::runtime::Runtime,
    p: &Params,
    gateway_bin: &Path,
    round: usize,
    clk_tck: f64,
) -> Result<Round, String> {
    let dir = temp_dir("estate-bench-modbus-")?;
    let estate = Estate::new(dir.path(), p.devices, p.endpoints)?;
    let sim_cfg = estate.config("simulator", None, "devices-1s.csv", None)?;
    let mut sim = Service::simulator(
        dir.path(),
        gateway_bin,
        &sim_cfg,
        &["--tick", SIM_TICK, "--seed", "1"],
    )?;
    let ports = simulator_ports(&sim, p.endpoints)?;

    eprintln!("  fixed load with the store");
    let store = Service::victoria_metrics(dir.path())?;
    let cfg = estate.config(
        "fixed-store",
        Some(&ports),
        "devices-1s.csv",
        Some(store.port),
    )?;
    let (mut with_store, t0_ms, t1_ms) = gateway_phase(
        dir.path(),
        gateway_bin,
        &cfg,
        &sim,
        Some(&store),
        p.warmup,
        p.window,
        clk_tck,
    )?;
    with_store.on_time = Some(on_time(store.port, &estate.ids, t0_ms, t1_ms)?);
    drop(store);

    eprintln!("  fixed load without a store");
    let cfg = estate.config("fixed-nostore", Some(&ports), "devices-1s.csv", None)?;
    let (nostore, _, _) = gateway_phase(
        dir.path(),
        gateway_bin,
        &cfg,
        &sim,
        None,
        p.warmup,
        p.nostore_window,
        clk_tck,
    )?;

    // The two capacity phases swap order every round, so a drift in what else the machine
    // does favours neither.
    let capacity_cfg = estate.config("capacity", Some(&ports), "devices-1ms.csv", None)?;
    // The register maps exactly as the gateway builds them, from the fixed-load configuration.
    let bare_cfg = estate.config("bare", Some(&ports), "devices-1s.csv", None)?;
    let gateway_capacity = || {
        eprintln!("  capacity: gateway");
        gateway_phase(
            dir.path(),
            gateway_bin,
            &capacity_cfg,
            &sim,
            None,
            p.capacity_warmup,
            p.capacity_window,
            clk_tck,
        )
        .map(|(phase, _, _)| phase)
    };
    let bare_capacity = || {
        eprintln!("  capacity: bare tokio-modbus loop");
        bare_phase(rt, &bare_cfg, &ports, &sim, p, clk_tck)
    };
    let (capacity, bare) = if round % 2 == 1 {
        let c = gateway_capacity()?;
        (c, bare_capacity()?)
    } else {
        let b = bare_capacity()?;
        (gateway_capacity()?, b)
    };

    // Every phase ran against a live simulator (else their failed polls would say so too).
    if let Some(status) = sim.exited() {
        return Err(format!(
            "the simulator exited ({status}) during the round:\n{}",
            sim.log_tail()
        ));
    }
    Ok(Round {
        store: with_store,
        nostore,
        capacity,
        bare,
    })
}

/// The gateway's counters, from `GET /metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    polls: u64,
    requests: u64,
    poll_failures: u64,
    timeouts: u64,
    transport_errors: u64,
}

fn counters(http_port: u16) -> Result<Counters, String> {
    let (code, body) = http_get(http_port, "/metrics")?;
    if code != 200 {
        return Err(format!("GET /metrics: HTTP {code}: {body}"));
    }
    let get = |name: &str| -> Result<u64, String> {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("GET /metrics has no `{name}`:\n{body}"))
    };
    Ok(Counters {
        polls: get("estate_gateway_modbus_polls_total")?,
        requests: get("estate_gateway_modbus_requests_total")?,
        poll_failures: get("estate_gateway_modbus_poll_failures_total")?,
        timeouts: get("estate_gateway_modbus_timeouts_total")?,
        transport_errors: get("estate_gateway_modbus_transport_errors_total")?,
    })
}

/// CPU ticks of some processes and of this one, at one instant.
struct Mark {
    at: Instant,
    wall_ms: i64,
    ticks: Vec<Option<u64>>,
    own: Option<u64>,
}

fn mark(pids: &[Option<u32>]) -> Mark {
    Mark {
        at: Instant::now(),
        wall_ms: now_ms(),
        ticks: pids
            .iter()
            .map(|p| p.and_then(|p| cpu_ticks(&p.to_string())))
            .collect(),
        own: cpu_ticks("self"),
    }
}

/// Sleeps `d`, failing early if the gateway exits.
fn watch(gateway: &mut Service, d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    loop {
        if let Some(status) = gateway.exited() {
            return Err(format!(
                "the gateway exited ({status}):\n{}",
                gateway.log_tail()
            ));
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// Runs the gateway with `config` (its HTTP API on a free port) for `warmup`, then measures
/// `window`, then stops it (SIGTERM: a clean shutdown flushes what it queued for the store).
/// Also returns the window's wall-clock bounds (unix ms).
#[allow(clippy::too_many_arguments)] // the parts of one phase
fn gateway_phase(
    dir: &Path,
    bin: &Path,
    config: &Path,
    sim: &Service,
    store: Option<&Service>,
    warmup: Duration,
    window: Duration,
    clk_tck: f64,
) -> Result<(Phase, i64, i64), String> {
    let mut gw = Service::gateway(dir, bin, config)?;
    let http_port = {
        let t = Instant::now();
        loop {
            let log = gw.log();
            let port = http_port(&log);
            if let Some(port) = port {
                break port;
            }
            if let Some(status) = gw.exited() {
                return Err(format!(
                    "the gateway exited ({status}) before its HTTP API listened:\n{}",
                    gw.log_tail()
                ));
            }
            if t.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "the gateway did not log `{HTTP_LOG}` within {READY_TIMEOUT:?}:\n{}",
                    gw.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    watch(&mut gw, warmup)?;
    let pids = [Some(gw.pid()), Some(sim.pid()), store.map(Service::pid)];
    let c0 = counters(http_port)?;
    let m0 = mark(&pids);
    watch(&mut gw, window)?;
    let c1 = counters(http_port)?;
    let m1 = mark(&pids);
    let peak_rss_kib = gw.peak_rss_kib().unwrap_or(0);

    let status = gw.terminate(STOP_TIMEOUT);
    if !status.is_some_and(|s| s.success()) || !gw.log().contains(STOPPED_LOG) {
        return Err(format!(
            "the gateway did not stop cleanly on SIGTERM ({status:?}):\n{}",
            gw.log_tail()
        ));
    }
    let cpu = |i: usize| ticks_s(m0.ticks[i], m1.ticks[i], clk_tck);
    let phase = Phase {
        wall: m1.at - m0.at,
        polls: c1.polls - c0.polls,
        requests: c1.requests - c0.requests,
        poll_failures: c1.poll_failures - c0.poll_failures,
        timeouts: c1.timeouts - c0.timeouts,
        transport_errors: c1.transport_errors - c0.transport_errors,
        gateway_cpu_s: cpu(0),
        simulator_cpu_s: cpu(1),
        store_cpu_s: cpu(2),
        bench_cpu_s: ticks_s(m0.own, m1.own, clk_tck),
        peak_rss_kib,
        on_time: None,
    };
    Ok((phase, m0.wall_ms, m1.wall_ms))
}

/// The polls of every device whose grid slot lies in `[t0_ms, t1_ms)`, from the timestamps of
/// `COUNTED_METRIC` in the store. A device's polls sit on a fixed grid of its interval; the
/// grid's phase is not visible from outside, so it is taken as the phase at which most of the
/// device's polls start within `ON_TIME` (a constant offset — the device's place in its
/// endpoint's queue — is not lateness). Each poll's lateness is its start's distance after that
/// grid; a slot without a reading counts as not on time.
fn on_time(store_port: u16, ids: &[String], t0_ms: i64, t1_ms: i64) -> Result<OnTime, String> {
    let interval = INTERVAL.as_millis() as i64;
    let tol = ON_TIME.as_millis() as i64;
    let series = store_export(
        store_port,
        COUNTED_METRIC,
        t0_ms - interval,
        t1_ms + interval,
    )?;
    let mut out = OnTime::default();
    for id in ids {
        let Some(ts) = series.get(id).filter(|ts| !ts.is_empty()) else {
            out.due += ((t1_ms - t0_ms) / interval) as u64;
            out.silent_devices += 1;
            continue;
        };
        // Phases in [0, interval), sorted; the window [x, x + tol] holding the most of them
        // (wrapping around) gives the grid's phase x.
        let mut phases: Vec<i64> = ts.iter().map(|t| t.rem_euclid(interval)).collect();
        phases.sort_unstable();
        let n = phases.len();
        let mut best = (0, phases[0]);
        let mut j = 0;
        for i in 0..n {
            // Count phases in [phases[i], phases[i] + tol], wrapping.
            while j < i + n {
                let pj = phases[j % n] + if j >= n { interval } else { 0 };
                if pj - phases[i] > tol {
                    break;
                }
                j += 1;
            }
            if j - i > best.0 {
                best = (j - i, phases[i]);
            }
            j = j.max(i + 1);
        }
        let grid = best.1;
        // Slots in the window: grid + k·interval in [t0, t1).
        let first_slot = t0_ms + (grid - t0_ms).rem_euclid(interval);
        let slots = if first_slot < t1_ms {
            (t1_ms - 1 - first_slot) / interval + 1
        } else {
            0
        };
        out.due += slots as u64;
        let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
        for &t in ts {
            let late = (t - grid).rem_euclid(interval);
            let slot = t - late;
            if slot >= t0_ms && slot < t1_ms {
                // Two polls in one slot (impossible on a kept grid): keep the earlier.
                let e = seen.entry(slot).or_insert(late);
                *e = (*e).min(late);
            }
        }
        out.stored += seen.len() as u64;
        for late in seen.into_values() {
            out.lateness_ms.push(late);
            if late <= tol {
                out.on_time += 1;
            }
        }
    }
    Ok(out)
}

/// Sample timestamps (unix ms) of `metric` per `device` tag between two times, after making
/// everything the store ingested searchable (`/api/v1/export`: one JSON object per series).
fn store_export(
    port: u16,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let (code, body) = http_get(port, "/internal/force_flush")?;
    if code != 200 {
        return Err(format!("victoria-metrics force_flush: HTTP {code}: {body}"));
    }
    let path = format!(
        "/api/v1/export?match[]={}&start={}&end={}",
        url_encode(metric),
        from_ms.div_euclid(1000),
        to_ms.div_euclid(1000) + 1
    );
    let (code, body) = http_get(port, &path)?;
    if code != 200 {
        return Err(format!("victoria-metrics export: HTTP {code}: {body}"));
    }
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("victoria-metrics export: not JSON ({e}): {line}"))?;
        let device = v["metric"]["device"]
            .as_str()
            .ok_or_else(|| format!("victoria-metrics export: a series without `device`: {line}"))?;
        let ts = v["timestamps"]
            .as_array()
            .ok_or_else(|| format!("victoria-metrics export: no timestamps: {line}"))?;
        out.entry(device.to_owned())
            .or_default()
            .extend(ts.iter().filter_map(serde_json::Value::as_i64));
    }
    for ts in out.values_mut() {
        ts.sort_unstable();
        ts.dedup();
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The baseline: a bare tokio-modbus request/response loop.

/// One task per endpoint, each with one connection (like the gateway's endpoint tasks),
/// reading every planned request of each of its units in turn and decoding every register
/// with the gateway's register maps; `capacity_warmup`, then `capacity_window` measured.
fn bare_phase(
    rt: &tokio::runtime::Runtime,
    config: &Path,
    ports: &[u16],
    sim: &Service,
    p: &Params,
    clk_tck: f64,
) -> Result<Phase, String> {
    let cfg = estate_gateway::config::load(config)
        .map_err(|e| format!("the bench configuration {}: {e}", config.display()))?;
    let mut per_endpoint: Vec<Vec<(u8, Arc<DeviceModel>)>> = vec![Vec::new(); ports.len()];
    for b in cfg.modbus.bindings.values() {
        per_endpoint[b.endpoint].push((b.unit, Arc::clone(&b.model)));
    }
    let requests = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (units, port) in per_endpoint.into_iter().zip(ports) {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        tasks.push(rt.spawn(bare_loop(
            addr,
            units,
            Arc::clone(&requests),
            Arc::clone(&stop),
        )));
    }
    std::thread::sleep(p.capacity_warmup);
    let pids = [None, Some(sim.pid()), None];
    let r0 = requests.load(Relaxed);
    let m0 = mark(&pids);
    std::thread::sleep(p.capacity_window);
    let r1 = requests.load(Relaxed);
    let m1 = mark(&pids);
    stop.store(true, Relaxed);
    for t in tasks {
        rt.block_on(t)
            .map_err(|e| format!("bare loop task: {e}"))??;
    }
    Ok(Phase {
        wall: m1.at - m0.at,
        polls: r1 - r0,
        requests: r1 - r0,
        gateway_cpu_s: f64::NAN,
        simulator_cpu_s: ticks_s(m0.ticks[1], m1.ticks[1], clk_tck),
        store_cpu_s: f64::NAN,
        bench_cpu_s: ticks_s(m0.own, m1.own, clk_tck),
        ..Phase::default()
    })
}

async fn bare_loop(
    addr: SocketAddr,
    units: Vec<(u8, Arc<DeviceModel>)>,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("bare loop: cannot connect to {addr}: {e}"))?;
    // As the gateway does: requests are small and strictly alternate with answers.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("bare loop: {e}"))?;
    let mut ctx: Context = tokio_modbus::client::tcp::attach(stream);
    let mut decoded = 0u64;
    while !stop.load(Relaxed) {
        for (unit, model) in &units {
            ctx.set_slave(Slave(*unit));
            for q in &model.plan {
                let words = match q.table {
                    Table::Holding => ctx.read_holding_registers(q.start, q.count).await,
                    Table::Input => ctx.read_input_registers(q.start, q.count).await,
                    Table::Coil | Table::Discrete => {
                        return Err(format!(
                            "bare loop: the bench model reads only registers, not {}",
                            q.table.name()
                        ))
                    }
                }
                .map_err(|e| format!("bare loop: unit {unit} at {addr}: {e}"))?
                .map_err(|e| format!("bare loop: unit {unit} at {addr}: exception {e}"))?;
                requests.fetch_add(1, Relaxed);
                for &(ri, off) in &q.items {
                    let reg = &model.registers[ri];
                    let v = reg.decode_words(words.get(usize::from(off)..).unwrap_or(&[]));
                    decoded += u64::from(v.is_ok());
                    std::hint::black_box(v).ok();
                }
            }
        }
    }
    std::hint::black_box(decoded);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The smoke test's checks.

fn smoke_checks(p: &Params, r: &Round) {
    let ot = r
        .store
        .on_time
        .as_ref()
        .expect("the phase with the store measures on-time polls");
    assert_eq!(
        ot.silent_devices, 0,
        "devices without a single reading in the store: {ot:?}"
    );
    assert!(
        ot.stored > 0 && r.store.polls > 0,
        "no reading reached the store"
    );
    for (name, ph) in [
        ("fixed load with the store", &r.store),
        ("fixed load without a store", &r.nostore),
    ] {
        assert!(ph.polls > 0, "{name}: no polls");
        assert_eq!(ph.poll_failures, 0, "{name}: failed polls: {ph:?}");
    }
    assert!(
        r.capacity.requests > p.devices as u64,
        "capacity phase: only {} requests: {:?}",
        r.capacity.requests,
        r.capacity
    );
    assert!(
        r.bare.requests > p.devices as u64,
        "bare loop: only {} requests",
        r.bare.requests
    );
}

// ---------------------------------------------------------------------------------------
// The report: a Markdown block between markers on stdout (scripts/bench puts it into
// BENCHMARKS.md with the command and the machine facts).

const REPORT_BEGIN: &str = "<!-- modbus-report:begin -->";
const REPORT_END: &str = "<!-- modbus-report:end -->";

fn report(p: &Params, rounds: &[Round]) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut out = String::new();
    let _ = writeln!(out, "{REPORT_BEGIN}");
    if !p.full {
        let _ = writeln!(
            out,
            "*Smoke test (`cargo test`: whatever build Cargo made, a tiny load): these figures \
             only prove that the bench runs.*\n"
        );
    }
    let _ = writeln!(
        out,
        "{} simulated devices × {WORDS} holding registers (12 signals: f32 in all four orders, \
         u32, i32, i16, scaled u16, a status bit; one fc03 request of {WORDS} words per poll) on \
         {} Modbus TCP endpoints ({} units each), served by one simulator process per round \
         (`estate-gateway simulate --tick {SIM_TICK}`: values frozen, so the simulator only \
         answers), {} round(s). Each round: **fixed load**: every device every {}, measured \
         for {} after {} of warm-up, once writing to victoria-metrics (production store \
         defaults) and once with no `[store]` ({}; readings discarded); **capacity**: every \
         device every {CAPACITY_INTERVAL} (always due), no store, {} after {}, and a **bare \
         loop** in the bench process (one tokio-modbus connection per endpoint reading each \
         unit's {WORDS} registers in turn and decoding them with the gateway's register maps) \
         for the same time (the two swap order every round). Endpoint settings are the defaults (timeout 1 s, 1 retry, no pause).\n",
        p.devices,
        p.endpoints,
        p.devices.div_ceil(p.endpoints),
        rounds.len(),
        humantime::format_duration(INTERVAL),
        humantime::format_duration(p.window),
        humantime::format_duration(p.warmup),
        humantime::format_duration(p.nostore_window),
        humantime::format_duration(p.capacity_window),
        humantime::format_duration(p.capacity_warmup),
    );
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for i in 1..=rounds.len() {
        let _ = write!(header, " round {i} |");
        rule.push_str("---:|");
    }
    header.push_str(" median |");
    rule.push_str("---:|");
    let _ = writeln!(out, "{header}\n{rule}");

    type Row<'a> = (&'a str, Box<dyn Fn(&Round) -> f64>, usize);
    let due = p.due_per_s();
    let ot = |r: &Round, f: fn(&OnTime) -> f64| r.store.on_time.as_ref().map_or(f64::NAN, f);
    let rows: Vec<Row<'_>> = vec![
        (
            "*fixed load, with the store*: polls/s (due: devices / interval)",
            Box::new(|r| r.store.polls_per_s()),
            0,
        ),
        ("requests/s", Box::new(|r| r.store.requests_per_s()), 0),
        (
            "registers polled/s",
            Box::new(|r| r.store.registers_per_s()),
            0,
        ),
        (
            "polls on time (started ≤ 100 ms after their slot), %",
            Box::new(move |r| ot(r, OnTime::pct)),
            2,
        ),
        (
            "poll start lateness p99 / max, ms",
            Box::new(move |r| ot(r, |o| o.lateness_quantile(0.99))),
            0,
        ),
        (
            "",
            Box::new(move |r| ot(r, |o| o.lateness_quantile(1.0))),
            0,
        ),
        (
            "slots with a reading in the store, %",
            Box::new(move |r| ot(r, OnTime::stored_pct)),
            2,
        ),
        (
            "failed polls (timeouts, errors)",
            Box::new(|r| r.store.poll_failures as f64),
            0,
        ),
        (
            "**gateway CPU, % of one core** (target < 25)",
            Box::new(|r| r.store.cpu_pct(r.store.gateway_cpu_s)),
            1,
        ),
        (
            "gateway CPU per poll, µs",
            Box::new(|r| r.store.us_per_request(r.store.gateway_cpu_s)),
            0,
        ),
        (
            "gateway peak RSS (VmHWM), MiB",
            Box::new(|r| r.store.peak_rss_kib as f64 / 1024.0),
            1,
        ),
        (
            "simulator CPU, % of one core",
            Box::new(|r| r.store.cpu_pct(r.store.simulator_cpu_s)),
            1,
        ),
        (
            "victoria-metrics CPU, % of one core",
            Box::new(|r| r.store.cpu_pct(r.store.store_cpu_s)),
            1,
        ),
        (
            "*fixed load, no store*: polls/s",
            Box::new(|r| r.nostore.polls_per_s()),
            0,
        ),
        (
            "failed polls (timeouts, errors)",
            Box::new(|r| r.nostore.poll_failures as f64),
            0,
        ),
        (
            "**gateway CPU, % of one core** (target < 25)",
            Box::new(|r| r.nostore.cpu_pct(r.nostore.gateway_cpu_s)),
            1,
        ),
        (
            "gateway CPU per poll, µs",
            Box::new(|r| r.nostore.us_per_request(r.nostore.gateway_cpu_s)),
            0,
        ),
        (
            "gateway peak RSS (VmHWM), MiB",
            Box::new(|r| r.nostore.peak_rss_kib as f64 / 1024.0),
            1,
        ),
        (
            "*capacity*: **gateway**, requests/s",
            Box::new(|r| r.capacity.requests_per_s()),
            0,
        ),
        (
            "**bare tokio-modbus loop**, requests/s",
            Box::new(|r| r.bare.requests_per_s()),
            0,
        ),
        (
            "**gateway / bare loop** (target ≥ 0.80)",
            Box::new(|r| r.capacity.requests_per_s() / r.bare.requests_per_s()),
            2,
        ),
        (
            "gateway: failed polls",
            Box::new(|r| r.capacity.poll_failures as f64),
            0,
        ),
        (
            "gateway CPU, % of one core",
            Box::new(|r| r.capacity.cpu_pct(r.capacity.gateway_cpu_s)),
            0,
        ),
        (
            "gateway CPU per request, µs",
            Box::new(|r| r.capacity.us_per_request(r.capacity.gateway_cpu_s)),
            1,
        ),
        (
            "bare loop (bench process) CPU, % of one core",
            Box::new(|r| r.bare.cpu_pct(r.bare.bench_cpu_s)),
            0,
        ),
        (
            "bare loop CPU per request, µs",
            Box::new(|r| r.bare.us_per_request(r.bare.bench_cpu_s)),
            1,
        ),
        (
            "simulator CPU, % of one core, gateway / bare loop",
            Box::new(|r| r.capacity.cpu_pct(r.capacity.simulator_cpu_s)),
            0,
        ),
        ("", Box::new(|r| r.bare.cpu_pct(r.bare.simulator_cpu_s)), 0),
        (
            "client + simulator + bench process, % of the machine, gateway / bare loop",
            Box::new(move |r| {
                let c = &r.capacity;
                c.cpu_pct(c.gateway_cpu_s + c.simulator_cpu_s + c.bench_cpu_s) / cores
            }),
            0,
        ),
        (
            "",
            Box::new(move |r| {
                let b = &r.bare;
                b.cpu_pct(b.simulator_cpu_s + b.bench_cpu_s) / cores
            }),
            0,
        ),
    ];
    // Rows with an empty label continue the previous one ("a / b" in one cell).
    let mut i = 0;
    while i < rows.len() {
        let (label, f, decimals) = &rows[i];
        let mut cells: Vec<Vec<String>> = Vec::new();
        let mut group = vec![(f, *decimals)];
        while i + 1 < rows.len() && rows[i + 1].0.is_empty() {
            i += 1;
            group.push((&rows[i].1, rows[i].2));
        }
        for (f, d) in &group {
            let values: Vec<f64> = rounds.iter().map(f).collect();
            let mut col: Vec<String> = values.iter().map(|v| fmt_num(*v, *d)).collect();
            col.push(fmt_num(median(values), *d));
            cells.push(col);
        }
        let mut line = format!("| {label} |");
        for k in 0..=rounds.len() {
            let joined: Vec<&str> = cells.iter().map(|c| c[k].as_str()).collect();
            let _ = write!(line, " {} |", joined.join(" / "));
        }
        let _ = writeln!(out, "{line}");
        i += 1;
    }

    let m = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let cpu_store = m(&|r| r.store.cpu_pct(r.store.gateway_cpu_s));
    let cpu_nostore = m(&|r| r.nostore.cpu_pct(r.nostore.gateway_cpu_s));
    let ratio = m(&|r| r.capacity.requests_per_s() / r.bare.requests_per_s());
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    let _ = writeln!(
        out,
        "\nTargets (medians): fixed load at under 25% of one core — {:.1}% with the store, \
         {:.1}% without: {}; gateway within 80% of the bare loop — {:.2}: {}. Due at the fixed \
         load: {} polls/s, {} registers/s.",
        cpu_store,
        cpu_nostore,
        met(cpu_store < 25.0 && cpu_nostore < 25.0),
        ratio,
        met(ratio >= 0.8),
        fmt_num(due, 0),
        fmt_num(due * WORDS as f64, 0),
    );
    let _ = writeln!(
        out,
        "\nHow to read it: rates come from the gateway's own counters (`GET /metrics`: \
         `modbus_polls`, `modbus_requests`, `modbus_poll_failures`) over the window; registers \
         polled/s are answered requests × {WORDS}. A poll is on time when its reading's `ts` (the \
         gateway clock when the poll started) lies at most {} ms after its slot on the device's \
         1 s grid (the grid's phase is where most of that device's polls start; a slot without a \
         reading is late). CPU figures are utime+stime from `/proc/<pid>/stat` over the window, \
         per process: the simulator is a separate process, so it is not in the gateway's \
         figures (on loopback, though, the kernel delivers a segment to the receiving socket in \
         the sender's context, so each side's CPU includes part of the other's receive path). \
         In the capacity phases each client keeps one request in flight per endpoint \
         connection, and the client and the simulator together use about the whole machine: \
         the rate is set by the CPU a request costs the client and the simulator, and the ratio \
         shows what the gateway adds per request over the bare loop (its scheduler, the \
         timeout timer, counters, and building and queueing a reading per poll), as the CPU \
         per request shows too. When the machine is busy with other work both rates fall.",
        ON_TIME.as_millis()
    );
    let _ = write!(out, "{REPORT_END}");
    out
}
