//! Replay benchmark (issue "Event time", DESIGN §4): how fast `replay` gets through a month of
//! an estate's tape, in readings per second, next to the live ingest rate of the gateway
//! measured in the same run on the same machine (the target: at least the live rate).
//!
//! **Replay**: `BENCH_REPLAY_DEVICES` (default 1000) MQTT devices of the five categories
//! (`EL-0001`…, `GA-0001`…, `HX-…`, `TS-…`, `FP-…`, spread over buildings), each reporting
//! every `BENCH_REPLAY_INTERVAL_S` (default 100) seconds (heartbeat timeout 3 × that), for
//! `BENCH_REPLAY_DAYS` (default 30) days from 2026-12-01T00:00+08:00 (inside the heating
//! season): about 26 million readings made by the scenario generator
//! (`replay::scenario::values`), with fault phases and silent gaps longer than the heartbeat
//! timeout now and then, so that heartbeats, transitions and alarms happen. The facts are
//! streamed in time order one step (one reading per device) at a time: each is serialised to
//! a tape line and parsed back with `replay::parse_line`, then applied by a `Replayer` writing
//! its journal into a temp dir; `finish` at the end. The generator's time is measured
//! separately (per step) and left out of the replay rate.
//!
//! **Live**: mosquitto and the release gateway with the same inventory (no store; `[http]` on
//! a free port for `/metrics`), `BENCH_REPLAY_LIVE_MESSAGES` (default 200000) QoS 1 readings
//! published as fast as the broker takes them; the rate counts from the first publish until
//! the gateway's core stage has applied the last one (the last message is an elevator's
//! entrapment reading: `estate_gateway_alarms_raised_total` becomes 1). `BENCH_ROUNDS`
//! (default 3) live rounds: the first before the replay, the others after it.
//!
//! `cargo bench --bench replay` (or `scripts/bench replay`, which writes `BENCHMARKS.md`) runs
//! the full size; under `cargo test --all-targets` (no `--bench`) it runs a smoke version
//! (20 devices, one day, 2000 live readings, one round).

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use estate_gateway::replay::scenario::{self, SITE};
use estate_gateway::replay::{parse_line, Fact, ReplaySummary, Replayer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

use common::{
    clk_tck, connect, cpu_ticks, dir_bytes, env_number, fmt_num, full_run, gateway_bin,
    gateway_metric, http_port, median, now_ms, publish_counted, secs, temp_dir, ticks_s,
    write_file, Service, GATEWAY_CLIENT_ID, HTTP_LOG, PUBLISH_INFLIGHT, READY_TIMEOUT, STOPPED_LOG,
    STOP_TIMEOUT, SUBSCRIBED_LOG,
};

/// 2026-12-01T00:00:00+08:00: inside the Beijing heating season (as in the replay tests).
const T0: i64 = 1_796_054_400_000;
/// (id prefix, category), assigned to devices in turn.
const CATEGORIES: [(&str, &str); 5] = [
    ("EL", "elevator"),
    ("GA", "access_gate"),
    ("HX", "heating_loop"),
    ("TS", "indoor_sensor"),
    ("FP", "fire_equipment"),
];
/// Devices per building.
const PER_BUILDING: usize = 50;
/// A device starts a fault phase at a reading with this probability (about 5 a month at one
/// reading every 100 s); the phase lasts 1 min to 2 h.
const P_FAULT: f64 = 1.0 / 5_000.0;
/// A device falls silent after a reading with this probability (about 2.6 a month), for 400 s
/// to 4 h: longer than its heartbeat timeout (3 × 100 s).
const P_GAP: f64 = 1.0 / 10_000.0;
const SEED: u64 = 20_261_201;

/// How often the gateway's `/metrics` are read while waiting for the last reading.
const COUNT_POLL: Duration = Duration::from_millis(20);
/// Spacing of one device's `ts` in the live load: all in the past when publishing starts,
/// none before the gateway started (a reading older than the moment the gateway concluded
/// for its device would be `late` and skip the engine).
const LIVE_TS_STEP_MS: i64 = 10;

fn main() {
    let p = Params::from_env();
    let gateway = gateway_bin(p.full, "replay").unwrap_or_else(|e| panic!("replay bench: {e}"));
    let clk_tck = clk_tck();
    let estate = Estate::new(p.devices, p.interval_s);
    eprintln!(
        "replay bench ({}): {} devices every {} s for {} day(s) (~{} readings); live: {} \
         readings, {} round(s), gateway {}",
        if p.full { "full" } else { "smoke test" },
        p.devices,
        p.interval_s,
        p.days,
        p.devices as u64 * p.steps(),
        p.live_messages,
        p.rounds,
        gateway.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");

    let mut live = Vec::with_capacity(p.rounds);
    let live_round = |round: usize| {
        eprintln!("live round {round}/{}", p.rounds);
        let r = live_round(&rt, &p, &estate, &gateway, clk_tck)
            .unwrap_or_else(|e| panic!("replay bench, live round {round}: {e}"));
        eprintln!(
            "  live: {:.0} readings/s, publisher {:.0} msg/s, gateway CPU {:.1} µs/reading",
            r.rate(),
            r.publisher_rate(),
            r.gateway_cpu_us()
        );
        r
    };
    live.push(live_round(1));

    eprintln!("replay");
    let replay = replay(&p, &estate, clk_tck).unwrap_or_else(|e| panic!("replay bench: {e}"));
    eprintln!(
        "  replay: {:.0} readings/s ({} readings in {:.1} s; generator {:.1} s more), {} \
         transitions, {} alarms",
        replay.rate(),
        replay.summary.readings,
        replay.replay_wall.as_secs_f64(),
        replay.gen_wall.as_secs_f64(),
        replay.summary.transitions,
        replay.summary.alarms_raised
    );
    for round in 2..=p.rounds {
        live.push(live_round(round));
    }
    drop(rt);

    // The smoke test proves the bench works: nothing refused, nothing late.
    let s = &replay.summary;
    assert_eq!(s.refused, 0, "replay refused facts: {:?}", replay.errors);
    assert_eq!(s.out_of_order + s.late, 0, "replay: out of order or late");
    assert!(s.transitions > 0, "replay: no transitions");
    for r in &live {
        assert_eq!(
            r.late + r.out_of_order,
            0,
            "live: late or out-of-order readings"
        );
    }
    println!("{}", report(&p, &estate, &replay, &live));
}

/// What to run: the full size under `cargo bench`, a tiny one under `cargo test`.
struct Params {
    full: bool,
    devices: usize,
    days: usize,
    interval_s: usize,
    live_messages: usize,
    rounds: usize,
    broker_inflight: u32,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        let p = if full {
            Params {
                full,
                devices: env_number("BENCH_REPLAY_DEVICES", 1000),
                days: env_number("BENCH_REPLAY_DAYS", 30),
                interval_s: env_number("BENCH_REPLAY_INTERVAL_S", 100),
                live_messages: env_number("BENCH_REPLAY_LIVE_MESSAGES", 200_000),
                rounds: env_number("BENCH_ROUNDS", 3),
                broker_inflight: 0,
            }
        } else {
            Params {
                full,
                devices: 20,
                days: 1,
                interval_s: 100,
                live_messages: 2000,
                rounds: 1,
                broker_inflight: 0,
            }
        };
        assert!(
            p.devices > 0 && p.days > 0 && p.interval_s > 0 && p.rounds > 0,
            "BENCH_REPLAY_DEVICES, BENCH_REPLAY_DAYS, BENCH_REPLAY_INTERVAL_S and BENCH_ROUNDS \
             must be at least 1"
        );
        assert!(
            p.devices <= 5 * 9999,
            "BENCH_REPLAY_DEVICES must be at most 49995 (ids EL-0001…FP-9999)"
        );
        assert!(
            p.live_messages > p.devices,
            "BENCH_REPLAY_LIVE_MESSAGES must exceed the number of devices"
        );
        // As in the ingest bench: `0` (no quota), since Debian's mosquitto 2.0.11 does not
        // keep to one (see BENCHMARKS.md, Ingest).
        let inflight = env_number("BENCH_BROKER_INFLIGHT", 0);
        Params {
            broker_inflight: u32::try_from(inflight).expect("BENCH_BROKER_INFLIGHT fits in u32"),
            ..p
        }
    }

    fn interval_ms(&self) -> i64 {
        self.interval_s as i64 * 1000
    }

    /// Steps of the month (one reading per device each).
    fn steps(&self) -> u64 {
        (self.days as u64 * 86_400) / self.interval_s as u64
    }

    fn live_timeout(&self) -> Duration {
        Duration::from_secs(60 + (self.live_messages / 1000) as u64)
    }
}

// ---------------------------------------------------------------------------------------
// The estate: the same inventory for the replay and the live gateway.

struct Estate {
    ids: Vec<String>,
    categories: Vec<&'static str>,
    csv: String,
}

impl Estate {
    fn new(n: usize, interval_s: usize) -> Estate {
        let mut ids = Vec::with_capacity(n);
        let mut categories = Vec::with_capacity(n);
        let mut csv = String::from("id,name,building,category,interval\n");
        for i in 0..n {
            let (prefix, cat) = CATEGORIES[i % CATEGORIES.len()];
            let id = format!("{prefix}-{:04}", i / CATEGORIES.len() + 1);
            let building = i / PER_BUILDING + 1;
            let _ = writeln!(
                csv,
                "{id},{building}号楼 {id},{building}号楼,{cat},{interval_s}s"
            );
            ids.push(id);
            categories.push(cat);
        }
        Estate {
            ids,
            categories,
            csv,
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn buildings(&self) -> usize {
        self.len().div_ceil(PER_BUILDING)
    }

    /// Writes `devices.csv` and `NAME.toml` into `dir` (`extra`: more TOML after
    /// `[gateway]`); returns the TOML's path.
    fn write_config(&self, dir: &Path, name: &str, extra: &str) -> Result<PathBuf, String> {
        write_file(&dir.join("devices.csv"), &self.csv)?;
        let toml = format!(
            "devices_csv = \"devices.csv\"\n\
             \n\
             [gateway]\n\
             site = \"{SITE}\"\n\
             host = \"bench\"\n\
             data_dir = \"{data}\"\n\
             log_format = \"text\"\n\
             log_level = \"{log_level}\"\n\
             {extra}",
            data = toml_path(&dir.join(format!("{name}-data"))),
            log_level = std::env::var("BENCH_GATEWAY_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
        );
        let path = dir.join(format!("{name}.toml"));
        write_file(&path, &toml)?;
        Ok(path)
    }
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

// ---------------------------------------------------------------------------------------
// The replay.

struct ReplayRun {
    summary: ReplaySummary,
    errors: Vec<String>,
    /// Parsing the lines and applying the facts, plus `finish`.
    replay_wall: Duration,
    /// Making and serialising the facts (left out of the replay rate).
    gen_wall: Duration,
    /// CPU of the replaying thread (parse, apply, finish), from its schedstat.
    replay_thread_cpu_s: f64,
    /// CPU of the generator (same thread, other time slices).
    gen_cpu_s: f64,
    /// CPU of the whole process over the phase (all threads, e.g. the journal's checkpoint
    /// thread), from /proc/self/stat.
    process_cpu_s: f64,
    tape_bytes: u64,
    journal_bytes: u64,
    rss_before_kib: u64,
    peak_rss_kib: u64,
    rss_reset: bool,
}

impl ReplayRun {
    fn rate(&self) -> f64 {
        self.summary.readings as f64 / secs(self.replay_wall)
    }

    fn rate_with_generator(&self) -> f64 {
        self.summary.readings as f64 / secs(self.replay_wall + self.gen_wall)
    }

    /// CPU of the replay: the whole process's over the phase minus the generator's.
    fn replay_cpu_s(&self) -> f64 {
        if self.process_cpu_s.is_finite() {
            (self.process_cpu_s - self.gen_cpu_s).max(self.replay_thread_cpu_s)
        } else {
            self.replay_thread_cpu_s
        }
    }
}

/// Time this thread has run on a CPU, ns (`/proc/thread-self/schedstat`, first field).
fn thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// One device's generator state.
#[derive(Default, Clone, Copy)]
struct DevGen {
    /// Its offset within each step (readings are in time order within a step too).
    offset_ms: i64,
    fault: u32,
    fault_until: i64,
    silent_until: i64,
}

fn replay(p: &Params, estate: &Estate, clk_tck: f64) -> Result<ReplayRun, String> {
    let dir = temp_dir("estate-bench-replay-")?;
    let config = estate.write_config(dir.path(), "replay", "")?;
    let cfg = estate_gateway::config::load(&config).map_err(|e| format!("config: {e}"))?;
    let data_dir = dir.path().join("replay-data");
    fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;

    let mut rng = StdRng::seed_from_u64(SEED);
    let n = estate.len();
    let interval = p.interval_ms();
    let mut gens: Vec<DevGen> = (0..n)
        .map(|_| DevGen {
            offset_ms: rng.random_range(0..interval),
            ..DevGen::default()
        })
        .collect();
    // Devices in the order of their offsets: each step's readings in `ts` order.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (gens[i].offset_ms, i));

    let rss_before_kib = status_kib("VmRSS:");
    // Reset the peak to the current RSS (Linux ≥ 4.0): VmHWM is then the replay's peak.
    let rss_reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let proc0 = cpu_ticks("self");
    let mut replay_wall = Duration::ZERO;
    let mut gen_wall = Duration::ZERO;
    let mut replay_ns = 0u64;
    let mut gen_ns = 0u64;
    let mut tape_bytes = 0u64;
    let mut line_no = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(n * 256);

    // The tape's first line: a gateway start.
    let start = Instant::now();
    let c0 = thread_cpu_ns();
    let mut replayer = Replayer::new(&cfg, &data_dir, T0).map_err(|e| format!("{e:#}"))?;
    let apply_line = |r: &mut Replayer, line: &str, n: u64| -> Result<(), String> {
        match parse_line(line) {
            Ok(Some(f)) => r.apply(n, &f).map_err(|e| format!("line {n}: {e:#}")),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("line {n}: {e}: {line}")),
        }
    };
    let first = serde_json::to_string(&Fact::Start { ts: T0 }).map_err(|e| e.to_string())?;
    line_no += 1;
    apply_line(&mut replayer, &first, line_no)?;
    replay_ns += thread_cpu_ns().saturating_sub(c0);
    replay_wall += start.elapsed();

    let steps = p.steps();
    for step in 0..steps {
        // Generate one step: a reading per device, unless it is silent.
        let t_gen = Instant::now();
        let c_gen = thread_cpu_ns();
        buf.clear();
        let t = T0 + step as i64 * interval;
        for &i in &order {
            let g = &mut gens[i];
            let ts = t + g.offset_ms;
            if ts < g.silent_until {
                continue;
            }
            if ts >= g.fault_until {
                g.fault = 0;
                if rng.random_bool(P_FAULT) {
                    g.fault = rng.random_range(1..4);
                    g.fault_until = ts + rng.random_range(60_000..7_200_000);
                }
            }
            if rng.random_bool(P_GAP) {
                g.silent_until = ts + rng.random_range(400_000..14_400_000);
            }
            let fact = Fact::Reading {
                site: SITE.to_owned(),
                device: estate.ids[i].clone(),
                ts,
                values: scenario::values(estate.categories[i], g.fault, &mut rng),
            };
            serde_json::to_writer(&mut buf, &fact).map_err(|e| e.to_string())?;
            buf.push(b'\n');
        }
        tape_bytes += buf.len() as u64;
        let c_mid = thread_cpu_ns();
        let t_mid = Instant::now();
        gen_ns += c_mid.saturating_sub(c_gen);
        gen_wall += t_mid - t_gen;

        // Replay it: parse every line back and apply it.
        let text = std::str::from_utf8(&buf).map_err(|e| e.to_string())?;
        for line in text.lines() {
            line_no += 1;
            apply_line(&mut replayer, line, line_no)?;
        }
        replay_ns += thread_cpu_ns().saturating_sub(c_mid);
        replay_wall += t_mid.elapsed();
    }

    let t_fin = Instant::now();
    let c_fin = thread_cpu_ns();
    let errors: Vec<String> = replayer
        .errors
        .iter()
        .take(10)
        .map(|e| format!("line {}: {}", e.line, e.message))
        .collect();
    let until = T0 + steps as i64 * interval;
    let summary = replayer
        .finish(until)
        .map_err(|e| format!("finish: {e:#}"))?;
    replay_ns += thread_cpu_ns().saturating_sub(c_fin);
    replay_wall += t_fin.elapsed();
    let proc1 = cpu_ticks("self");
    let peak_rss_kib = status_kib("VmHWM:");

    Ok(ReplayRun {
        summary,
        errors,
        replay_wall,
        gen_wall,
        replay_thread_cpu_s: replay_ns as f64 / 1e9,
        gen_cpu_s: gen_ns as f64 / 1e9,
        process_cpu_s: ticks_s(proc0, proc1, clk_tck),
        tape_bytes,
        journal_bytes: dir_bytes(&data_dir),
        rss_before_kib,
        peak_rss_kib,
        rss_reset,
    })
}

// ---------------------------------------------------------------------------------------
// The live baseline: mosquitto → the release gateway (no store).

struct LiveRound {
    messages: usize,
    started: Instant,
    /// When the gateway was first seen to have applied the last reading.
    applied: Instant,
    /// When the broker acknowledged the last publish.
    published: Instant,
    gateway_cpu_s: f64,
    broker_cpu_s: f64,
    bench_cpu_s: f64,
    cpu_wall: Duration,
    peak_rss_kib: u64,
    late: u64,
    out_of_order: u64,
}

impl LiveRound {
    fn rate(&self) -> f64 {
        self.messages as f64 / secs(self.applied - self.started)
    }

    fn publisher_rate(&self) -> f64 {
        self.messages as f64 / secs(self.published - self.started)
    }

    fn gateway_cpu_us(&self) -> f64 {
        self.gateway_cpu_s * 1e6 / self.messages as f64
    }

    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / secs(self.cpu_wall)
    }
}

/// The live load: (device index, payload) in publishing order, round-robin over the devices,
/// each device's `ts` increasing from `base_ms`; the last message is an entrapment reading of
/// the first elevator (the marker: its alarm is raised once the core stage applied it).
struct Load {
    topics: Vec<String>,
    messages: Vec<(usize, Bytes)>,
    last_ts: i64,
}

impl Load {
    fn new(estate: &Estate, n: usize, base_ms: i64) -> Load {
        let devices = estate.len();
        let topics = (0..devices)
            .map(|i| {
                format!(
                    "estate/{SITE}/{}/{}/telemetry",
                    estate.categories[i], estate.ids[i]
                )
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(SEED + 1);
        let ts_of = |i: usize| base_ms + (i / devices) as i64 * LIVE_TS_STEP_MS;
        let mut messages: Vec<(usize, Bytes)> = (0..n - 1)
            .map(|i| {
                let d = i % devices;
                let mut v = scenario::values(estate.categories[d], 0, &mut rng);
                v.insert("ts".into(), Json::from(ts_of(i)));
                let payload = serde_json::to_vec(&Json::Object(v)).unwrap_or_default();
                (d, Bytes::from(payload))
            })
            .collect();
        // Device 0 is the first elevator (EL-0001).
        let last_ts = ts_of(n - 1 + devices);
        let mut v = scenario::values("elevator", 1, &mut rng);
        v.insert("ts".into(), Json::from(last_ts));
        let payload = serde_json::to_vec(&Json::Object(v)).unwrap_or_default();
        messages.push((0, Bytes::from(payload)));
        Load {
            topics,
            messages,
            last_ts,
        }
    }
}

/// The gateway's counters from `GET /metrics`.
fn metric(port: u16, name: &str) -> Result<u64, String> {
    gateway_metric(port, name).map(|v| v as u64)
}

/// Waits until the gateway has subscribed and its HTTP API listens; its HTTP port.
fn gateway_ready(gw: &mut Service) -> Result<u16, String> {
    let t = Instant::now();
    loop {
        let log = gw.log();
        let port = http_port(&log);
        if let (Some(port), true) = (port, log.contains(SUBSCRIBED_LOG)) {
            return Ok(port);
        }
        if let Some(status) = gw.exited() {
            return Err(format!(
                "the gateway exited ({status}) before it was ready:\n{}",
                gw.log_tail()
            ));
        }
        if t.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "the gateway did not log `{SUBSCRIBED_LOG}` and `{HTTP_LOG}` within \
                 {READY_TIMEOUT:?}:\n{}",
                gw.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn live_round(
    rt: &tokio::runtime::Runtime,
    p: &Params,
    estate: &Estate,
    gateway_bin: &Path,
    clk_tck: f64,
) -> Result<LiveRound, String> {
    let dir = temp_dir("estate-bench-replay-live-")?;
    let broker = Service::mosquitto(dir.path(), p.broker_inflight)?;
    let config = estate.write_config(
        dir.path(),
        "live",
        &format!(
            "\n[mqtt]\n\
             url = \"mqtt://127.0.0.1:{}\"\n\
             client_id = \"{GATEWAY_CLIENT_ID}\"\n\
             \n\
             [http]\n\
             listen = \"127.0.0.1:0\"\n",
            broker.port
        ),
    )?;
    let mut gateway = Service::gateway(dir.path(), gateway_bin, &config)?;
    let http = gateway_ready(&mut gateway)?;
    // Every `ts` after the gateway's start (so no reading is `late`) and before the first
    // publish.
    let base = now_ms();
    let load = Arc::new(Load::new(estate, p.live_messages, base));
    let wait = load.last_ts + 200 - now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    let readings0 = metric(http, "estate_gateway_readings_total")?;
    let alarms0 = metric(http, "estate_gateway_alarms_raised_total")?;

    let pids = [gateway.pid(), broker.pid()].map(|p| p.to_string());
    let cpu0: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(p)).collect();
    let self0 = cpu_ticks("self");
    let cpu_t0 = Instant::now();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let publisher = rt.spawn(publish_all(
        broker.port,
        load.clone(),
        p.live_timeout(),
        started_tx,
    ));
    let n = p.live_messages as u64;
    let deadline = Instant::now() + p.live_timeout();
    let applied = loop {
        let t = Instant::now();
        let readings = metric(http, "estate_gateway_readings_total")? - readings0;
        let alarms = metric(http, "estate_gateway_alarms_raised_total")? - alarms0;
        if readings >= n && alarms >= 1 {
            break t;
        }
        if let Some(status) = gateway.exited() {
            return Err(format!(
                "the gateway exited ({status}) after {readings} of {n} readings:\n{}",
                gateway.log_tail()
            ));
        }
        if t > deadline {
            let finished = publisher.is_finished();
            let status = gateway.terminate(STOP_TIMEOUT);
            return Err(format!(
                "the gateway counted {readings} of {n} readings (marker alarm: {alarms}) by \
                 {:?} (publisher finished: {finished}; exit on SIGTERM: {status:?})\n{}",
                p.live_timeout(),
                gateway.log_tail()
            ));
        }
        std::thread::sleep(COUNT_POLL);
    };
    let cpu1: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(p)).collect();
    let self1 = cpu_ticks("self");
    let cpu_wall = cpu_t0.elapsed();
    let peak_rss_kib = gateway.peak_rss_kib().unwrap_or(0);
    let late = metric(http, "estate_gateway_late_total")?;
    let out_of_order = metric(http, "estate_gateway_out_of_order_total")?;
    let published = rt
        .block_on(publisher)
        .map_err(|e| format!("publisher task: {e}"))?
        .map_err(|e| format!("{e}\n{}", broker.log_tail()))?;
    let started = started_rx
        .recv()
        .map_err(|_| "the publisher never started".to_owned())?;

    let status = gateway.terminate(STOP_TIMEOUT);
    if !status.is_some_and(|s| s.success()) || !gateway.log().contains(STOPPED_LOG) {
        return Err(format!(
            "the gateway did not stop cleanly on SIGTERM ({status:?}):\n{}",
            gateway.log_tail()
        ));
    }
    let ticks = |i: usize| ticks_s(cpu0[i], cpu1[i], clk_tck);
    Ok(LiveRound {
        messages: p.live_messages,
        started,
        applied,
        published,
        gateway_cpu_s: ticks(0),
        broker_cpu_s: ticks(1),
        bench_cpu_s: ticks_s(self0, self1, clk_tck),
        cpu_wall,
        peak_rss_kib,
        late,
        out_of_order,
    })
}

/// Publishes every message of `load` with QoS 1 over one connection as fast as the broker
/// takes them (sends the instant of the first publish on `started`); when the broker
/// acknowledged the last one.
async fn publish_all(
    port: u16,
    load: Arc<Load>,
    timeout: Duration,
    started: std::sync::mpsc::Sender<Instant>,
) -> Result<Instant, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (client, mut eventloop) =
        connect(port, "bench-publisher", Some(PUBLISH_INFLIGHT), deadline).await?;

    let n = load.messages.len();
    let _ = started.send(Instant::now());
    let messages = {
        let load = load.clone();
        (0..n).map(move |i| {
            let (device, payload) = &load.messages[i];
            (load.topics[*device].clone(), payload.clone())
        })
    };
    let done = publish_counted(
        &client,
        &mut eventloop,
        n,
        messages,
        rumqttc::QoS::AtLeastOnce,
        deadline,
        timeout,
    )
    .await?;
    Ok(done)
}

// ---------------------------------------------------------------------------------------
// The report: a Markdown block between markers on stdout (scripts/bench puts it into
// BENCHMARKS.md with the command and the machine facts).

const REPORT_BEGIN: &str = "<!-- replay-report:begin -->";
const REPORT_END: &str = "<!-- replay-report:end -->";

fn mib(kib: u64) -> String {
    fmt_num(kib as f64 / 1024.0, 1)
}

fn report(p: &Params, estate: &Estate, r: &ReplayRun, live: &[LiveRound]) -> String {
    let s = &r.summary;
    let live_rate = median(live.iter().map(LiveRound::rate).collect());
    let ratio = r.rate() / live_rate;
    let replay_cpu = r.replay_cpu_s();
    let mut out = String::new();
    let _ = writeln!(out, "{REPORT_BEGIN}");
    let _ = writeln!(
        out,
        "**Replay**: {} MQTT devices ({} each of `elevator`, `access_gate`, `heating_loop`, \
         `indoor_sensor`, `fire_equipment`; {} building(s)), each reporting every {} s (heartbeat \
         timeout {} s), for {} day(s) from 2026-12-01T00:00+08:00 (heating season): {} readings \
         made by the scenario generator (`replay::scenario::values`), with fault phases (about \
         5 per device a month, 1 min to 2 h) and silent gaps longer than the heartbeat timeout \
         (about 2.6 per device a month, 400 s to 4 h). One step at a time (a reading per \
         device, in `ts` order), each fact is serialised to a tape line and parsed back with \
         `replay::parse_line`, then applied by a `Replayer` writing its journal into a temp \
         dir; `finish` at the end. The generator's time (making and serialising the facts) is \
         measured per step and left out of the replay rate.\n\n\
         **Live** (the same run): mosquitto (`max_inflight_messages {}`) and the release \
         gateway with the same inventory (production defaults, no store, `[http]` for \
         `/metrics`); {} QoS 1 readings from one rumqttc publisher as fast as the broker takes \
         them, round-robin over the devices (`ts` a few seconds old, increasing per device); {} \
         round(s), the first before the replay, any others after it.\n",
        estate.len(),
        estate.len().div_ceil(CATEGORIES.len()),
        estate.buildings(),
        p.interval_s,
        3 * p.interval_s,
        p.days,
        fmt_num(s.readings as f64, 0),
        p.broker_inflight,
        fmt_num(p.live_messages as f64, 0),
        live.len(),
    );
    let _ = writeln!(out, "| figure | value |\n|---|---:|");
    let rows: Vec<(&str, String)> = vec![
        (
            "**replay**, readings/s (parse + apply + `finish`)",
            fmt_num(r.rate(), 0),
        ),
        (
            "**live ingest**, readings/s (median of the rounds below)",
            fmt_num(live_rate, 0),
        ),
        ("**replay / live** (target ≥ 1)", fmt_num(ratio, 2)),
        (
            "replay wall time, s",
            fmt_num(r.replay_wall.as_secs_f64(), 1),
        ),
        (
            "replay including the generator, readings/s",
            fmt_num(r.rate_with_generator(), 0),
        ),
        (
            "generator wall time (not in the replay rate), s",
            fmt_num(r.gen_wall.as_secs_f64(), 1),
        ),
        (
            "replay CPU, s (process CPU over the phase − the generator's)",
            fmt_num(replay_cpu, 1),
        ),
        (
            "replay CPU, µs per reading",
            fmt_num(replay_cpu * 1e6 / s.readings.max(1) as f64, 2),
        ),
        (
            "of which the replaying thread, µs per reading",
            fmt_num(r.replay_thread_cpu_s * 1e6 / s.readings.max(1) as f64, 2),
        ),
        (
            "replay CPU, % of one core",
            fmt_num(100.0 * replay_cpu / secs(r.replay_wall), 0),
        ),
        (
            "live gateway CPU, µs per reading (median)",
            fmt_num(
                median(live.iter().map(LiveRound::gateway_cpu_us).collect()),
                2,
            ),
        ),
        (
            if r.rss_reset {
                "bench process peak RSS during the replay (VmHWM, reset before), MiB"
            } else {
                "bench process peak RSS (VmHWM, whole run: reset unsupported), MiB"
            },
            format!(
                "{} (before: {})",
                mib(r.peak_rss_kib),
                mib(r.rss_before_kib)
            ),
        ),
        (
            "tape (the lines parsed), MiB",
            fmt_num(r.tape_bytes as f64 / 1_048_576.0, 0),
        ),
        (
            "journal after `finish`, MiB",
            fmt_num(r.journal_bytes as f64 / 1_048_576.0, 1),
        ),
        (
            "state transitions / alarms raised",
            format!(
                "{} / {}",
                fmt_num(s.transitions as f64, 0),
                fmt_num(s.alarms_raised as f64, 0)
            ),
        ),
        (
            "facts refused / out of order / late",
            format!("{} / {} / {}", s.refused, s.out_of_order, s.late),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "| {label} | {value} |");
    }

    let _ = writeln!(out);
    let mut header = String::from("| live | ");
    let mut rule = String::from("|---|");
    for i in 1..=live.len() {
        let _ = write!(
            header,
            "round {i}{} | ",
            if i == 1 { " (before)" } else { " (after)" }
        );
        rule.push_str("---:|");
    }
    header.push_str("median |");
    rule.push_str("---:|");
    let _ = writeln!(out, "{}\n{rule}", header.trim_end());
    type Row<'a> = (&'a str, Box<dyn Fn(&LiveRound) -> f64>, usize);
    let rows: Vec<Row<'_>> = vec![
        (
            "**gateway**: first publish → last reading applied, readings/s",
            Box::new(LiveRound::rate),
            0,
        ),
        (
            "publisher: first publish → last PUBACK, msg/s",
            Box::new(LiveRound::publisher_rate),
            0,
        ),
        (
            "gateway CPU, µs per reading",
            Box::new(LiveRound::gateway_cpu_us),
            2,
        ),
        (
            "gateway CPU, % of one core",
            Box::new(|l| l.cpu_pct(l.gateway_cpu_s)),
            0,
        ),
        (
            "gateway peak RSS (VmHWM), MiB",
            Box::new(|l| l.peak_rss_kib as f64 / 1024.0),
            1,
        ),
        (
            "mosquitto CPU, % of one core",
            Box::new(|l| l.cpu_pct(l.broker_cpu_s)),
            0,
        ),
        (
            "bench process (publisher), % of one core",
            Box::new(|l| l.cpu_pct(l.bench_cpu_s)),
            0,
        ),
    ];
    for (label, f, decimals) in &rows {
        let values: Vec<f64> = live.iter().map(f).collect();
        let mut line = format!("| {label} |");
        for v in &values {
            let _ = write!(line, " {} |", fmt_num(*v, *decimals));
        }
        let _ = write!(line, " {} |", fmt_num(median(values), *decimals));
        let _ = writeln!(out, "{line}");
    }

    let _ = writeln!(out);
    if ratio >= 1.0 {
        let _ = writeln!(
            out,
            "Target: replay at least the live rate — {} × live: met.",
            fmt_num(ratio, 2)
        );
    } else {
        let _ = writeln!(
            out,
            "Target: replay at least the live rate — {} × live: **not met: the replay is \
             slower than live ingest**. Where to look: `perf record -g` on `cargo bench --bench \
             replay` (the replaying thread's CPU per reading above against the live gateway's); \
             `Replayer::try_apply` clones each reading's values, serialises them back to JSON \
             and decodes them again (`source::decode::telemetry`) after `parse_line` already \
             parsed the line.",
            fmt_num(ratio, 2)
        );
    }
    let _ = writeln!(
        out,
        "\nHow to read it: the replay rate is readings over the wall time of parsing the \
         lines and applying the facts (plus `finish`), on one thread, with the journal's \
         SQLite writes in the path; the generator runs on the same thread in between and its \
         time is not counted (\"including the generator\" counts it). Replay CPU is the \
         process's utime+stime (`/proc/self/stat`) over the phase less the generator's \
         (per-step `/proc/thread-self/schedstat`), so it includes the journal's checkpoint \
         thread. The live rate counts from the first publish until the gateway's core stage \
         has applied the last reading: the last message is an entrapment reading of \
         `EL-0001`, and the gateway's `/metrics` (polled every {} ms) show \
         `estate_gateway_readings_total` at N and `estate_gateway_alarms_raised_total` at 1. \
         Every live reading was applied (none `late` or out of order). Live and replay share \
         the machine's 2 cores with the broker and the bench's own publisher, so compare the \
         ratio between runs, not the rates.",
        COUNT_POLL.as_millis()
    );
    let _ = write!(out, "{REPORT_END}");
    out
}
