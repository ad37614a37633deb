//! Ingest benchmark: how many telemetry readings per second the gateway carries from a real
//! MQTT broker (mosquitto) into a real InfluxDB-v2-compatible store (VictoriaMetrics), end to
//! end, next to the limit measured in the same run on the same machine: a bare rumqttc
//! subscriber that only counts the messages (persistent session, subscribed at QoS 1 like the
//! gateway, manual acks), in a process of its own so that its CPU per message and its RSS are
//! its own. The machine is small and shared, so the figures that matter are the ratios
//! gateway / bare subscriber (rate, CPU per message).
//!
//! Three cases, each a bare-subscriber phase and a gateway phase, every phase on a fresh broker
//! (the gateway's also with a fresh store) with nothing else of the bench running:
//! - QoS 1: `BENCH_MESSAGES` (default 200000) messages from `BENCH_DEVICES` (default 1000)
//!   heating loops, published at QoS 1;
//! - QoS 0: the same messages published at QoS 0 (the gateway subscribes at QoS 1, so the
//!   broker delivers them at QoS 0, the lower of the two); the broker may drop QoS 0 messages,
//!   so the delivered count is reported and the rate counts what arrived;
//! - many devices: `BENCH_LARGE_MESSAGES` (default 500000) messages from `BENCH_LARGE_DEVICES`
//!   (default 10000) devices at QoS 1, for the gateway's peak RSS with a large inventory; in the
//!   first `BENCH_LARGE_ROUNDS` (default 1; 0 skips it) rounds only, as it takes the longest.
//!
//! `BENCH_ROUNDS` (default 3) rounds. The publisher (the load generator) runs in the bench
//! process; the bare subscriber is this same binary started again with `--bare-subscriber`.
//! Everything runs on 127.0.0.1 with free ports and temp dirs; every process it starts is
//! killed at the end, and every wait is bounded.
//!
//! `cargo bench --bench ingest` (run it through `scripts/bench`, which builds the release
//! gateway and writes `BENCHMARKS.md`) runs the full load. Under `cargo test --all-targets`
//! (no `--bench` argument) it runs a tiny smoke version of every case that only proves the
//! bench still works: every message must arrive (at QoS 0 too), or it panics. In the full run a
//! QoS 0 loss is reported, not a failure; a QoS 1 loss is a failure.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};

use common::{
    clk_tck, connect, cpu_ticks, disconnect, env_number, fmt_num, full_run, gateway_bin, median,
    now_ms, peak_rss_kib, publish_counted, secs, store_count, store_query, temp_dir, ticks_s,
    wait_for, write_file, Service, CLIENT_CAPACITY, GATEWAY_CLIENT_ID, PUBLISH_INFLIGHT,
    READY_TIMEOUT, STOPPED_LOG, STOP_TIMEOUT, SUBSCRIBED_LOG,
};

const FULL_MESSAGES: usize = 200_000;
const FULL_DEVICES: usize = 1000;
const FULL_ROUNDS: usize = 3;
const FULL_LARGE_MESSAGES: usize = 500_000;
const FULL_LARGE_DEVICES: usize = 10_000;
const FULL_LARGE_ROUNDS: usize = 1;
const SMOKE_MESSAGES: usize = 500;
const SMOKE_DEVICES: usize = 20;
const SMOKE_LARGE_MESSAGES: usize = 300;
const SMOKE_LARGE_DEVICES: usize = 100;

const SITE: &str = "bench";
const CATEGORY: &str = "heating_loop";
/// The filters the gateway subscribes to with its default topic patterns.
const FILTERS: [&str; 2] = ["estate/+/+/+/telemetry", "estate/+/+/+/status"];
/// One store series per signal; this one counts readings (every payload carries it).
const COUNTED_METRIC: &str = "telemetry_supply_temp_c";

/// How often the store is asked how many points it holds.
const COUNT_POLL: Duration = Duration::from_millis(50);
/// Spacing of one device's `ts` values (one reading a second, all in the past).
const TS_STEP_MS: i64 = 1000;

/// The first argument that makes this binary the bare subscriber (a child of the bench).
const SUBSCRIBER_ARG: &str = "--bare-subscriber";
/// Printed by the bare subscriber once the broker granted its subscriptions.
const SUBSCRIBER_READY: &str = "bare subscriber: subscribed";
/// Printed by the bare subscriber when it has received all it will, with its figures.
const SUBSCRIBER_DONE: &str = "bare subscriber: received";
/// At QoS 0 the broker may drop messages: a bare subscriber that has received nothing for
/// this long has received all it will.
const QOS0_SUBSCRIBER_IDLE: Duration = Duration::from_secs(3);
/// The same for the store at QoS 0 once the publisher is done: the gateway flushes at least
/// every `batch_interval` (1 s), so a count unchanged for this long is final.
const QOS0_STORE_IDLE: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SUBSCRIBER_ARG) {
        std::process::exit(bare_subscriber_main(&args[2..]));
    }
    let p = Params::from_env();
    let gateway = gateway_bin(p.full, "ingest").unwrap_or_else(|e| panic!("ingest bench: {e}"));
    let clk_tck = clk_tck();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "ingest bench ({}): {} messages from {} {CATEGORY} devices at QoS 1 and at QoS 0, {} \
         round(s); {} messages from {} devices at QoS 1 in {} round(s); broker \
         max_inflight_messages {}, gateway {}",
        if p.full { "full" } else { "smoke test" },
        p.messages,
        p.devices,
        p.rounds,
        p.large_messages,
        p.large_devices,
        p.large_rounds,
        p.broker_inflight,
        gateway.display()
    );
    let cases = Case::all(&p);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");

    let total_rounds = cases.iter().map(|c| c.rounds).max().unwrap_or(0);
    let mut results: Vec<Vec<Round>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 1..=total_rounds {
        for (case, done) in cases.iter().zip(&mut results) {
            if round > case.rounds {
                continue;
            }
            let what = format!("round {round}/{total_rounds}, {}", case.name);
            eprintln!("{what}: bare subscriber");
            let bare = bare_phase(&rt, &p, case, clk_tck)
                .unwrap_or_else(|e| panic!("ingest bench, {what}, bare subscriber: {e}"));
            eprintln!(
                "  bare subscriber: {:.0} msg/s ({} of {} received), {:.2} µs CPU per message, \
                 publisher {:.0} msg/s",
                bare.rate(),
                bare.received,
                case.load.len(),
                bare.cpu_per_message_us(),
                bare.published.rate()
            );
            eprintln!("{what}: gateway");
            let gw = gateway_phase(&rt, &p, case, &gateway, clk_tck)
                .unwrap_or_else(|e| panic!("ingest bench, {what}, gateway: {e}"));
            eprintln!(
                "  gateway: {:.0} readings/s into the store ({:.2} × bare subscriber; {} of {} \
                 stored), {:.2} µs CPU per reading, peak RSS {:.1} MiB, publisher {:.0} msg/s",
                gw.rate(),
                gw.rate() / bare.rate(),
                gw.stored,
                case.load.len(),
                gw.cpu_per_reading_us(),
                mib(gw.peak_rss_kib),
                gw.published.rate()
            );
            done.push(Round { bare, gw });
        }
    }
    drop(rt);
    println!("{}", report(&p, &cases, &results, cores));
}

/// What to run: the full load under `cargo bench`, a tiny one under `cargo test`.
struct Params {
    full: bool,
    messages: usize,
    devices: usize,
    rounds: usize,
    large_messages: usize,
    large_devices: usize,
    large_rounds: usize,
    /// mosquitto's `max_inflight_messages`: QoS 1 messages it sends a subscriber before
    /// waiting for its PUBACKs (an MQTT 3.1.1 client cannot ask for more).
    broker_inflight: u32,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        let p = if full {
            Params {
                full,
                messages: env_number("BENCH_MESSAGES", FULL_MESSAGES),
                devices: env_number("BENCH_DEVICES", FULL_DEVICES),
                rounds: env_number("BENCH_ROUNDS", FULL_ROUNDS),
                large_messages: env_number("BENCH_LARGE_MESSAGES", FULL_LARGE_MESSAGES),
                large_devices: env_number("BENCH_LARGE_DEVICES", FULL_LARGE_DEVICES),
                large_rounds: env_number("BENCH_LARGE_ROUNDS", FULL_LARGE_ROUNDS),
                broker_inflight: 0,
            }
        } else {
            Params {
                full,
                messages: SMOKE_MESSAGES,
                devices: SMOKE_DEVICES,
                rounds: 1,
                large_messages: SMOKE_LARGE_MESSAGES,
                large_devices: SMOKE_LARGE_DEVICES,
                large_rounds: 1,
                broker_inflight: 0,
            }
        };
        assert!(
            p.messages > 0 && p.devices > 0 && p.rounds > 0,
            "BENCH_MESSAGES, BENCH_DEVICES and BENCH_ROUNDS must be at least 1"
        );
        assert!(
            p.large_rounds == 0 || (p.large_messages > 0 && p.large_devices > 0),
            "BENCH_LARGE_MESSAGES and BENCH_LARGE_DEVICES must be at least 1 (BENCH_LARGE_ROUNDS=0 \
             skips the case)"
        );
        assert!(
            p.devices <= 99_999 && p.large_devices <= 99_999,
            "BENCH_DEVICES and BENCH_LARGE_DEVICES must be at most 99999 (device ids HX-00001..)"
        );
        // `0`: unlimited. mosquitto's default is 20, but Debian's 2.0.11 does not keep to
        // it (one PUBACK releases the whole queue; fixed in 2.0.13) and, with a subscriber
        // that falls behind, it then loses a queued message now and then: it assigns the
        // message id and never sends it. Without a quota nothing is queued, so nothing is lost.
        let broker_inflight = env_number("BENCH_BROKER_INFLIGHT", 0);
        Params {
            broker_inflight: u32::try_from(broker_inflight)
                .expect("BENCH_BROKER_INFLIGHT fits in 32 bits"),
            ..p
        }
    }
}

/// Bound on a phase's publishing and delivery of `messages`.
fn phase_timeout(messages: usize) -> Duration {
    Duration::from_secs(60 + (messages / 1000) as u64)
}

/// One load at one QoS, measured with the bare subscriber and with the gateway.
struct Case {
    /// For the report and the progress lines: "1000 devices, QoS 1".
    name: String,
    qos: QoS,
    devices: usize,
    load: Arc<Load>,
    /// In the first `rounds` rounds.
    rounds: usize,
    /// Whether a message that does not arrive fails the bench (QoS 1 always, QoS 0 in the
    /// smoke test) rather than being reported.
    must_deliver_all: bool,
}

impl Case {
    fn all(p: &Params) -> Vec<Case> {
        let load = Arc::new(Load::new(p.messages, p.devices, now_ms()));
        let mut cases = vec![
            Case::new(QoS::AtLeastOnce, p.devices, load.clone(), p.rounds, true),
            Case::new(QoS::AtMostOnce, p.devices, load, p.rounds, !p.full),
        ];
        if p.large_rounds > 0 {
            let large = Arc::new(Load::new(p.large_messages, p.large_devices, now_ms()));
            cases.push(Case::new(
                QoS::AtLeastOnce,
                p.large_devices,
                large,
                p.large_rounds,
                true,
            ));
        }
        cases
    }

    fn new(qos: QoS, devices: usize, load: Arc<Load>, rounds: usize, must: bool) -> Case {
        Case {
            name: format!("{} devices, {}", fmt_num(devices as f64, 0), qos_name(qos)),
            qos,
            devices,
            load,
            rounds,
            must_deliver_all: must,
        }
    }
}

fn qos_name(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "QoS 0",
        QoS::AtLeastOnce => "QoS 1",
        QoS::ExactlyOnce => "QoS 2",
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

// ---------------------------------------------------------------------------------------
// The load: N telemetry messages of heating loops, round-robin over the devices.

struct Load {
    /// Telemetry topic per device.
    topics: Vec<String>,
    /// (device index, JSON payload), in publishing order.
    messages: Vec<(usize, Bytes)>,
    /// The device inventory (设备台账) as the gateway reads it.
    devices_csv: String,
}

impl Load {
    /// Every device reports once a second with its own `ts` (unique per device, so every
    /// point is a distinct sample in the store), the newest a second before `now_ms`.
    fn new(messages: usize, devices: usize, now_ms: i64) -> Load {
        let ids: Vec<String> = (1..=devices).map(|i| format!("HX-{i:05}")).collect();
        let topics = ids
            .iter()
            .map(|id| format!("estate/{SITE}/{CATEGORY}/{id}/telemetry"))
            .collect();
        let mut devices_csv = String::from("id,name,building,category\n");
        for (i, id) in ids.iter().enumerate() {
            let _ = writeln!(
                devices_csv,
                "{id},{}号楼供暖回路{},{}号楼,{CATEGORY}",
                i / 20 + 1,
                i % 20 + 1,
                i / 20 + 1
            );
        }
        let per_device = messages.div_ceil(devices) as i64;
        let first_ts = now_ms - (per_device + 1) * TS_STEP_MS;
        let messages = (0..messages)
            .map(|i| {
                let device = i % devices;
                let k = (i / devices) as i64;
                let supply = 50.0 + (i % 97) as f64 * 0.1;
                let payload = format!(
                    "{{\"ts\": {}, \"supply_temp_c\": {supply:.1}, \"return_temp_c\": {:.1}, \
                     \"pressure_mpa\": {:.2}, \"pump_running\": {}, \"fault_code\": {}}}",
                    first_ts + k * TS_STEP_MS,
                    supply - 12.0 - (i % 13) as f64 * 0.1,
                    0.40 + (i % 7) as f64 * 0.01,
                    i % 50 != 0,
                    if i % 1000 == 999 { 3 } else { 0 },
                );
                (device, Bytes::from(payload))
            })
            .collect();
        Load {
            topics,
            messages,
            devices_csv,
        }
    }

    fn len(&self) -> usize {
        self.messages.len()
    }
}

// ---------------------------------------------------------------------------------------
// Rounds.

/// One round of one case.
struct Round {
    bare: BareRun,
    gw: GatewayRun,
}

/// The bare subscriber's phase.
struct BareRun {
    published: Published,
    received: usize,
    /// From the first publish until the last message reached the subscriber.
    active: Duration,
    /// CPU time of the subscriber process from its SUBACK until it stopped receiving.
    cpu_s: f64,
    peak_rss_kib: u64,
    broker_cpu_s: f64,
    /// The bench process: the publisher.
    bench_cpu_s: f64,
}

impl BareRun {
    /// Messages per second, from the first publish to the last message received.
    fn rate(&self) -> f64 {
        self.received as f64 / secs(self.active)
    }

    fn cpu_per_message_us(&self) -> f64 {
        self.cpu_s * 1e6 / self.received.max(1) as f64
    }

    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / secs(self.active)
    }
}

/// The gateway's phase.
struct GatewayRun {
    published: Published,
    /// Points in the store when it was measured: every message (QoS 1), or those that arrived
    /// (QoS 0, once the count stopped growing).
    stored: u64,
    /// When the store was first seen to hold `stored` points.
    all_stored: Instant,
    /// Points in the store after the gateway stopped (more than the messages: redeliveries).
    final_count: u64,
    /// Messages the broker still held unacknowledged for the gateway's session after it
    /// stopped (PUBACKs it never sent): redelivered, and stored again, at its next start.
    /// Not asked at QoS 0 (nothing to acknowledge).
    unacked: Option<usize>,
    gateway_cpu_s: f64,
    broker_cpu_s: f64,
    store_cpu_s: f64,
    /// The bench process: the publisher and the store polling.
    bench_cpu_s: f64,
    /// Wall time over which the CPU times were taken.
    cpu_wall: Duration,
    peak_rss_kib: u64,
}

impl GatewayRun {
    /// Readings per second, from the first publish until the store holds all of them.
    fn rate(&self) -> f64 {
        self.stored as f64 / secs(self.all_stored - self.published.started)
    }

    fn cpu_per_reading_us(&self) -> f64 {
        self.gateway_cpu_s * 1e6 / self.stored.max(1) as f64
    }

    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / secs(self.cpu_wall)
    }

    /// From the publisher's last publish (QoS 1: its PUBACK) until the store holds every point.
    fn tail(&self) -> Duration {
        self.all_stored
            .saturating_duration_since(self.published.done)
    }
}

/// The bare subscriber (this binary, `--bare-subscriber`) on a fresh broker, receiving the
/// case's messages from the publisher in this process.
fn bare_phase(
    rt: &tokio::runtime::Runtime,
    p: &Params,
    case: &Case,
    clk_tck: f64,
) -> Result<BareRun, String> {
    let dir = temp_dir("estate-bench-bare-")?;
    let broker = Service::mosquitto(dir.path(), p.broker_inflight)?;
    let n = case.load.len();
    let timeout = phase_timeout(n);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg(SUBSCRIBER_ARG)
        .arg(broker.port.to_string())
        .arg(n.to_string())
        .arg(if case.qos == QoS::AtMostOnce {
            "0"
        } else {
            "1"
        })
        .arg(timeout.as_secs().to_string());
    let mut subscriber = Service::spawn("bare-subscriber", cmd, dir.path(), broker.port)?;
    subscriber.wait_ready(|s| s.log().contains(SUBSCRIBER_READY))?;

    let cpu0 = (broker.cpu_ticks(), cpu_ticks("self"));
    let published = rt
        .block_on(publish_all(
            broker.port,
            case.load.clone(),
            case.qos,
            timeout,
        ))
        .map_err(|e| format!("{e}\n{}", broker.log_tail()))?;
    // It reports its figures once it has every message, or (QoS 0) once they stopped coming.
    let deadline = published.started + timeout + QOS0_SUBSCRIBER_IDLE + Duration::from_secs(5);
    let done = loop {
        let log = subscriber.log();
        if let Some(line) = log.lines().find(|l| l.starts_with(SUBSCRIBER_DONE)) {
            break SubscriberReport::parse(line)?;
        }
        if let Some(status) = subscriber.exited() {
            return Err(format!(
                "the bare subscriber exited ({status}) without its figures:\n{}\n{}",
                subscriber.log_tail(),
                broker.log_tail()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the bare subscriber gave no figures within {timeout:?}:\n{}",
                subscriber.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let cpu1 = (broker.cpu_ticks(), cpu_ticks("self"));
    if done.count < n && case.must_deliver_all {
        return Err(format!(
            "the bare subscriber received {} of {n} {} messages",
            done.count,
            qos_name(case.qos)
        ));
    }
    Ok(BareRun {
        received: done.count,
        active: Duration::from_nanos(
            u64::try_from(done.last_ns.saturating_sub(published.started_unix_ns))
                .unwrap_or(u64::MAX),
        ),
        cpu_s: done.cpu_ticks as f64 / clk_tck,
        peak_rss_kib: done.peak_rss_kib,
        broker_cpu_s: ticks_s(cpu0.0, cpu1.0, clk_tck),
        bench_cpu_s: ticks_s(cpu0.1, cpu1.1, clk_tck),
        published,
    })
}

fn gateway_phase(
    rt: &tokio::runtime::Runtime,
    p: &Params,
    case: &Case,
    gateway_bin: &Path,
    clk_tck: f64,
) -> Result<GatewayRun, String> {
    let dir = temp_dir("estate-bench-gateway-")?;
    let broker = Service::mosquitto(dir.path(), p.broker_inflight)?;
    let store = Service::victoria_metrics(dir.path())?;
    let load = &case.load;
    let n = load.len();
    let timeout = phase_timeout(n);

    let config = write_gateway_config(dir.path(), load, broker.port, store.port)?;
    let mut gateway = Service::gateway(dir.path(), gateway_bin, &config)?;
    let t = Instant::now();
    loop {
        if gateway.log().contains(SUBSCRIBED_LOG) {
            break;
        }
        if let Some(status) = gateway.exited() {
            return Err(format!(
                "the gateway exited ({status}) before subscribing:\n{}",
                gateway.log_tail()
            ));
        }
        if t.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "the gateway did not log `{SUBSCRIBED_LOG}` within {READY_TIMEOUT:?}:\n{}",
                gateway.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let pids = [gateway.pid(), broker.pid(), store.pid()].map(|p| p.to_string());
    let cpu0: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(p)).collect();
    let self0 = cpu_ticks("self");
    let cpu_t0 = Instant::now();
    let publisher = rt.spawn(publish_all(broker.port, load.clone(), case.qos, timeout));

    let deadline = Instant::now() + timeout;
    // The count last seen, and when it was first seen.
    let mut seen = (0, Instant::now());
    let (stored, all_stored) = loop {
        let t = Instant::now();
        // Points that reached the store before `t` are counted: the flush starts after it.
        let count = store_count(store.port, COUNTED_METRIC)?;
        if count >= n as u64 {
            break (n as u64, t);
        }
        if count != seen.0 {
            seen = (count, t);
        }
        // QoS 0: what the broker dropped never comes; the count has stopped growing.
        if case.qos == QoS::AtMostOnce
            && publisher.is_finished()
            && t.duration_since(seen.1) > QOS0_STORE_IDLE
        {
            if case.must_deliver_all {
                return Err(format!(
                    "the store held {count} of {n} points (QoS 0) {QOS0_STORE_IDLE:?} after the \
                     count stopped growing\n{}{}",
                    store_diagnosis(store.port, load),
                    gateway.log_tail()
                ));
            }
            break seen;
        }
        if let Some(status) = gateway.exited() {
            return Err(format!(
                "the gateway exited ({status}) with {count} of {n} points in the store:\n{}",
                gateway.log_tail()
            ));
        }
        if t > deadline {
            // Stop the gateway first: its last log line and last `gateway` point carry its
            // final counters.
            let finished = publisher.is_finished();
            let status = gateway.terminate(STOP_TIMEOUT);
            return Err(format!(
                "the store held {count} of {n} points {timeout:?} after the first publish \
                 (publisher finished: {finished}; gateway exit on SIGTERM: {status:?})\n{}{}",
                store_diagnosis(store.port, load),
                gateway.log_tail()
            ));
        }
        std::thread::sleep(COUNT_POLL);
    };
    let cpu1: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(p)).collect();
    let self1 = cpu_ticks("self");
    let cpu_wall = cpu_t0.elapsed();
    let peak_rss_kib = gateway.peak_rss_kib().unwrap_or(0);
    let published = rt
        .block_on(publisher)
        .map_err(|e| format!("publisher task: {e}"))?
        .map_err(|e| format!("{e}\n{}", broker.log_tail()))?;

    let status = gateway.terminate(STOP_TIMEOUT);
    let log = gateway.log();
    if !status.is_some_and(|s| s.success()) || !log.contains(STOPPED_LOG) {
        return Err(format!(
            "the gateway did not stop cleanly on SIGTERM ({status:?}):\n{}",
            gateway.log_tail()
        ));
    }
    let final_count = store_count(store.port, COUNTED_METRIC)?;
    let unacked = if case.qos == QoS::AtMostOnce {
        None
    } else {
        Some(rt.block_on(redelivered(broker.port, GATEWAY_CLIENT_ID))?)
    };
    let ticks = |i: usize| ticks_s(cpu0[i], cpu1[i], clk_tck);
    Ok(GatewayRun {
        published,
        stored,
        all_stored,
        final_count,
        unacked,
        gateway_cpu_s: ticks(0),
        broker_cpu_s: ticks(1),
        store_cpu_s: ticks(2),
        bench_cpu_s: ticks_s(self0, self1, clk_tck),
        cpu_wall,
        peak_rss_kib,
    })
}

/// Writes `devices.csv` and `gateway.toml` (production defaults except what a bench must
/// set) into `dir`; returns the TOML's path.
fn write_gateway_config(
    dir: &Path,
    load: &Load,
    mqtt_port: u16,
    store_port: u16,
) -> Result<PathBuf, String> {
    let data_dir = dir.join("gateway-data");
    let csv = dir.join("devices.csv");
    write_file(&csv, &load.devices_csv)?;
    let toml = format!(
        "devices_csv = \"devices.csv\"\n\
         \n\
         [gateway]\n\
         site = \"{SITE}\"\n\
         host = \"bench\"\n\
         data_dir = \"{data}\"\n\
         log_format = \"text\"\n\
         log_level = \"{log_level}\"\n\
         \n\
         [mqtt]\n\
         url = \"mqtt://127.0.0.1:{mqtt_port}\"\n\
         client_id = \"{GATEWAY_CLIENT_ID}\"\n\
         \n\
         [store]\n\
         url = \"http://127.0.0.1:{store_port}\"\n\
         org = \"bench\"\n\
         bucket = \"bench\"\n\
         \n\
         [ingest]\n\
         # The load's `ts` reach back one second per message per device.\n\
         max_reading_age = \"30d\"\n",
        data = data_dir.display().to_string().replace('\\', "\\\\"),
        // BENCH_GATEWAY_LOG_LEVEL: e.g. `estate_gateway=debug` to see every dropped PUBACK.
        log_level = std::env::var("BENCH_GATEWAY_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
    );
    let path = dir.join("gateway.toml");
    write_file(&path, &toml)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// MQTT clients of the bench: the load generator and the bare subscriber.

/// What the load generator did.
struct Published {
    /// Just before the first publish.
    started: Instant,
    /// The same moment as Unix time (ns), to compare with the bare subscriber's clock.
    started_unix_ns: u128,
    /// QoS 1: when the broker acknowledged the last publish; QoS 0: when the last publish
    /// was written to the connection.
    done: Instant,
    messages: usize,
}

impl Published {
    fn rate(&self) -> f64 {
        self.messages as f64 / secs(self.done - self.started)
    }
}

/// Publishes every message of `load` at `qos` over one connection; at QoS 1 waits for all
/// the broker's PUBACKs.
async fn publish_all(
    port: u16,
    load: Arc<Load>,
    qos: QoS,
    timeout: Duration,
) -> Result<Published, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (client, mut eventloop) =
        connect(port, "bench-publisher", Some(PUBLISH_INFLIGHT), deadline).await?;

    let n = load.len();
    let started = Instant::now();
    let started_unix_ns = unix_ns();
    let messages = {
        let load = load.clone();
        (0..n).map(move |i| {
            let (device, payload) = &load.messages[i];
            (load.topics[*device].clone(), payload.clone())
        })
    };
    let done =
        publish_counted(&client, &mut eventloop, n, messages, qos, deadline, timeout).await?;
    Ok(Published {
        started,
        started_unix_ns,
        done,
        messages: n,
    })
}

/// Connects a bare subscriber like the gateway's (subscribed at QoS 1, persistent session,
/// manual acks) and waits until the broker granted its subscriptions.
async fn subscribe(client_id: &str, port: u16) -> Result<(AsyncClient, EventLoop), String> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 * 1024 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(o, CLIENT_CAPACITY);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    wait_for(&mut eventloop, deadline, "subscriber", |ev| {
        matches!(ev, Event::Incoming(Packet::ConnAck(_)))
    })
    .await?;
    client
        .try_subscribe_many(
            FILTERS
                .iter()
                .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce)),
        )
        .map_err(|e| format!("subscriber: cannot queue the subscription: {e}"))?;
    wait_for(&mut eventloop, deadline, "subscriber", |ev| {
        matches!(ev, Event::Incoming(Packet::SubAck(_)))
    })
    .await?;
    Ok((client, eventloop))
}

/// `--bare-subscriber PORT MESSAGES QOS TIMEOUT_S`: the bare subscriber's process. Prints
/// `SUBSCRIBER_READY` once subscribed, then, once it has received every message (or, at QoS 0,
/// once they stopped coming), one `SUBSCRIBER_DONE` line with its figures (`SubscriberReport`).
/// Exit code 1 with an `error:` line when it fails.
fn bare_subscriber_main(args: &[String]) -> i32 {
    let parsed = match args {
        [port, n, qos, timeout] => port
            .parse::<u16>()
            .ok()
            .zip(n.parse::<usize>().ok())
            .zip(match qos.as_str() {
                "0" => Some(QoS::AtMostOnce),
                "1" => Some(QoS::AtLeastOnce),
                _ => None,
            })
            .zip(timeout.parse::<u64>().ok()),
        _ => None,
    };
    let Some((((port, n), qos), timeout_s)) = parsed else {
        println!("error: usage: {SUBSCRIBER_ARG} PORT MESSAGES 0|1 TIMEOUT_S, not {args:?}");
        return 1;
    };
    // One thread: the least a subscriber can cost per message.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("error: cannot build a tokio runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(bare_subscriber(
        port,
        n,
        qos,
        Duration::from_secs(timeout_s),
    )) {
        Ok(()) => 0,
        Err(e) => {
            println!("error: {e}");
            1
        }
    }
}

/// Counts messages (nothing else: the payload is not looked at), acknowledging each QoS 1
/// message right away.
async fn bare_subscriber(port: u16, n: usize, qos: QoS, timeout: Duration) -> Result<(), String> {
    let (client, mut eventloop) = subscribe("bench-bare-subscriber", port).await?;
    let cpu0 = cpu_ticks("self");
    println!("{SUBSCRIBER_READY}");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut count = 0;
    let mut last: Option<tokio::time::Instant> = None;
    while count < n {
        let until = match (qos, last) {
            (QoS::AtMostOnce, Some(t)) => deadline.min(t + QOS0_SUBSCRIBER_IDLE),
            _ => deadline,
        };
        let ev = match tokio::time::timeout_at(until, eventloop.poll()).await {
            Ok(ev) => ev.map_err(|e| format!("connection failed after {count} messages: {e}"))?,
            // QoS 0: nothing for a while; the broker dropped the rest.
            Err(_) if until < deadline => break,
            Err(_) => return Err(format!("{count} of {n} messages by {timeout:?}")),
        };
        if let Event::Incoming(Packet::Publish(p)) = ev {
            if p.qos != QoS::AtMostOnce {
                client
                    .try_ack(&p)
                    .map_err(|e| format!("cannot queue a PUBACK: {e}"))?;
            }
            count += 1;
            last = Some(tokio::time::Instant::now());
        }
    }
    let cpu1 = cpu_ticks("self");
    // The last message's arrival as Unix time: the bench's clock is not this process's.
    let ago = last.map_or(Duration::ZERO, |t| t.elapsed());
    let report = SubscriberReport {
        count,
        last_ns: unix_ns().saturating_sub(ago.as_nanos()),
        cpu_ticks: cpu1.zip(cpu0).map_or(0, |(b, a)| b.saturating_sub(a)),
        peak_rss_kib: peak_rss_kib("self").unwrap_or(0),
    };
    println!("{}", report.line());
    disconnect(&client, &mut eventloop).await;
    Ok(())
}

/// The bare subscriber's figures, as one line of its output.
struct SubscriberReport {
    count: usize,
    /// When the last message arrived, Unix time in ns.
    last_ns: u128,
    /// CPU clock ticks (utime + stime) from its SUBACK until it stopped receiving.
    cpu_ticks: u64,
    peak_rss_kib: u64,
}

impl SubscriberReport {
    fn line(&self) -> String {
        format!(
            "{SUBSCRIBER_DONE} count={} last_ns={} cpu_ticks={} peak_rss_kib={}",
            self.count, self.last_ns, self.cpu_ticks, self.peak_rss_kib
        )
    }

    fn parse(line: &str) -> Result<SubscriberReport, String> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("the bare subscriber's line has no `{name}`: {line}"))
        };
        let bad = |e: std::num::ParseIntError| format!("bad bare subscriber line ({e}): {line}");
        Ok(SubscriberReport {
            count: field("count")?.parse().map_err(bad)?,
            last_ns: field("last_ns")?.parse().map_err(bad)?,
            cpu_ticks: field("cpu_ticks")?.parse().map_err(bad)?,
            peak_rss_kib: field("peak_rss_kib")?.parse().map_err(bad)?,
        })
    }
}

/// Resumes `client_id`'s persistent session (as a restarted gateway would) and counts the
/// messages the broker redelivers: those it sent before but never got a PUBACK for.
async fn redelivered(port: u16, client_id: &str) -> Result<usize, String> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 * 1024 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(o, CLIENT_CAPACITY);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    wait_for(&mut eventloop, deadline, "session check", |ev| {
        matches!(ev, Event::Incoming(Packet::ConnAck(_)))
    })
    .await?;
    let mut count = 0;
    // Until a second passes without a message (or the deadline).
    while let Ok(ev) = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await {
        let ev = ev.map_err(|e| format!("session check: {e}"))?;
        if let Event::Incoming(Packet::Publish(p)) = ev {
            count += 1;
            client
                .try_ack(&p)
                .map_err(|e| format!("session check: cannot queue a PUBACK: {e}"))?;
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
    }
    disconnect(&client, &mut eventloop).await;
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// The store: how many points it holds.

/// What the store holds when points are missing: the devices with fewer points than they
/// sent, and the gateway's own counters (its `gateway` measurement).
fn store_diagnosis(port: u16, load: &Load) -> String {
    let per_device = load.len().div_ceil(load.topics.len());
    let mut out = String::new();
    let short = format!("count_over_time({COUNTED_METRIC}[30d]) < {per_device}");
    match store_query(port, &short) {
        Ok(rows) => {
            let _ = writeln!(
                out,
                "devices with fewer than {per_device} points (the last devices of the \
                 round-robin may have sent one fewer): {}",
                rows.len()
            );
            for (metric, v) in rows.iter().take(10) {
                let _ = writeln!(out, "  {} {v}", metric["device"]);
            }
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
        }
    }
    match store_query(port, "last_over_time({__name__=~\"gateway_.*\"}[30d])") {
        Ok(rows) => {
            let mut fields: Vec<String> = rows
                .iter()
                .filter(|(_, v)| *v != 0.0)
                .map(|(m, v)| format!("{}={v}", m["__name__"].as_str().unwrap_or("?")))
                .collect();
            fields.sort();
            let _ = writeln!(out, "gateway counters (non-zero): {}", fields.join(" "));
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The report: a Markdown block between markers on stdout (scripts/bench puts it into
// BENCHMARKS.md with the command and the machine facts).

const REPORT_BEGIN: &str = "<!-- ingest-report:begin -->";
const REPORT_END: &str = "<!-- ingest-report:end -->";

const BARE_NAME: &str = "bare rumqttc subscriber (counts only; the limit)";
const GATEWAY_NAME: &str = "estate-gateway (production defaults)";

/// One of the targets: what, the measured value, its unit, whether it is met.
type Target = (String, f64, &'static str, fn(f64) -> bool);

/// A figure of one round of a case, with its decimals in the report.
type Figure = (&'static str, fn(&Round) -> f64, usize);

fn rate_ratio(r: &Round) -> f64 {
    r.gw.rate() / r.bare.rate()
}

fn cpu_ratio(r: &Round) -> f64 {
    r.gw.cpu_per_reading_us() / r.bare.cpu_per_message_us()
}

/// The median over a case's rounds.
fn med(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    median(rounds.iter().map(f).collect())
}

fn report(p: &Params, cases: &[Case], results: &[Vec<Round>], cores: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{REPORT_BEGIN}");
    let main_load = &cases[0].load;
    let payload_bytes = main_load
        .messages
        .iter()
        .map(|(_, b)| b.len())
        .sum::<usize>()
        / main_load.len().max(1);
    let large = cases.get(2).map_or(String::new(), |c| {
        format!(
            " and {} messages from {} devices at QoS 1 in {}",
            fmt_num(c.load.len() as f64, 0),
            fmt_num(c.devices as f64, 0),
            if c.rounds == 1 {
                "the first round only (it takes the longest)".to_owned()
            } else {
                format!("the first {} rounds only", c.rounds)
            }
        )
    });
    let _ = writeln!(
        out,
        "{} messages of ~{payload_bytes} B JSON from {} `{CATEGORY}` devices, published at \
         QoS 1 and at QoS 0, in each of {} round(s){large}. Each case runs the bare subscriber, \
         then the gateway, each on a fresh mosquitto (`max_inflight_messages {}`, \
         `max_queued_messages 0`) with nothing else of the bench running but the publisher; \
         the gateway's with a fresh victoria-metrics. The bare subscriber is a process of its \
         own (rumqttc on one thread) that only counts: subscribed at QoS 1 with a persistent \
         session and manual acks, like the gateway, which always subscribes at QoS 1, so \
         messages published at QoS 0 are delivered at QoS 0. The gateway runs with the \
         production defaults (`batch_lines` 5000, `batch_interval` 1s, `batch_quiet` 100ms, gzip).{}\n",
        fmt_num(main_load.len() as f64, 0),
        fmt_num(cases[0].devices as f64, 0),
        p.rounds,
        p.broker_inflight,
        if p.broker_inflight == 0 {
            " `max_inflight_messages 0` (no quota) because Debian's mosquitto 2.0.11 does not \
             keep to a quota (one PUBACK releases the whole queue; fixed in 2.0.13) and, once \
             a subscriber falls behind, now and then never sends a queued message; with no \
             quota nothing is queued."
        } else {
            ""
        }
    );

    // The headline: medians over the rounds.
    let _ = writeln!(
        out,
        "| system | case | into the store, msg/s | × bare subscriber | CPU per message | CPU × \
         bare subscriber | peak RSS | delivered (worst round) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (case, rounds) in cases.iter().zip(results) {
        let n = case.load.len();
        let delivered = |counts: Vec<u64>| {
            let worst = counts.into_iter().min().unwrap_or(0);
            if worst >= n as u64 {
                format!("all {}", fmt_num(n as f64, 0))
            } else {
                format!(
                    "{} of {} ({:.2}%)",
                    fmt_num(worst as f64, 0),
                    fmt_num(n as f64, 0),
                    100.0 * worst as f64 / n as f64
                )
            }
        };
        let _ = writeln!(
            out,
            "| {BARE_NAME} | {} | {} | 1.00 | {} µs | 1.00 | {} MiB | {} |",
            case.name,
            fmt_num(med(rounds, |r| r.bare.rate()), 0),
            fmt_num(med(rounds, |r| r.bare.cpu_per_message_us()), 1),
            fmt_num(med(rounds, |r| mib(r.bare.peak_rss_kib)), 1),
            delivered(rounds.iter().map(|r| r.bare.received as u64).collect()),
        );
        let _ = writeln!(
            out,
            "| {GATEWAY_NAME} | {} | {} | {} | {} µs | {} | {} MiB | {} |",
            case.name,
            fmt_num(med(rounds, |r| r.gw.rate()), 0),
            fmt_num(med(rounds, rate_ratio), 2),
            fmt_num(med(rounds, |r| r.gw.cpu_per_reading_us()), 1),
            fmt_num(med(rounds, cpu_ratio), 2),
            fmt_num(med(rounds, |r| mib(r.gw.peak_rss_kib)), 1),
            delivered(rounds.iter().map(|r| r.gw.stored).collect()),
        );
    }
    let _ = writeln!(
        out,
        "\nMedians over each case's rounds (the ratios are medians of each round's ratio). \
         \"Into the store\" for the bare subscriber: received. CPU per message: the process's \
         utime+stime (`/proc/<pid>/stat`) from its SUBACK until it had the last message (the \
         bare subscriber) or until the store held every point (the gateway), over the messages \
         it got; peak RSS: `VmHWM`.\n"
    );

    // The targets, for the record.
    let mut targets: Vec<Target> = vec![
        (
            "QoS 1: ≥ 0.80× the bare subscriber into the store".to_owned(),
            med(&results[0], rate_ratio),
            "×",
            |v: f64| v >= 0.80,
        ),
        (
            "QoS 1: CPU per reading ≤ 2× the bare subscriber's per message".to_owned(),
            med(&results[0], cpu_ratio),
            "×",
            |v: f64| v <= 2.0,
        ),
        (
            "QoS 0 publish: ≥ 0.60× the bare subscriber".to_owned(),
            med(&results[1], rate_ratio),
            "×",
            |v: f64| v >= 0.60,
        ),
    ];
    if let (Some(case), Some(rounds)) = (cases.get(2), results.get(2)) {
        targets.push((
            format!(
                "peak RSS ≤ 64 MiB at {} devices",
                fmt_num(case.devices as f64, 0)
            ),
            med(rounds, |r| mib(r.gw.peak_rss_kib)),
            " MiB",
            |v: f64| v <= 64.0,
        ));
    }
    let _ = writeln!(
        out,
        "| target (issue 16) | this run | met |\n|---|---:|---|"
    );
    for (target, value, unit, met) in targets {
        let _ = writeln!(
            out,
            "| {target} | {} | {} |",
            if value.is_finite() {
                format!("{}{unit}", fmt_num(value, if unit == "×" { 2 } else { 1 }))
            } else {
                "n/a".to_owned()
            },
            match (value.is_finite(), met(value)) {
                (false, _) => "n/a",
                (true, true) => "yes",
                (true, false) => "no",
            }
        );
    }

    let figures: [Figure; 23] = [
        ("**bare subscriber**: received, msg/s", |r| r.bare.rate(), 0),
        (
            "**gateway**: into the store, readings/s",
            |r| r.gw.rate(),
            0,
        ),
        ("**gateway / bare subscriber**", rate_ratio, 2),
        (
            "bare subscriber CPU, µs per message",
            |r| r.bare.cpu_per_message_us(),
            2,
        ),
        (
            "gateway CPU, µs per reading",
            |r| r.gw.cpu_per_reading_us(),
            2,
        ),
        ("gateway CPU / bare subscriber CPU", cpu_ratio, 2),
        (
            "bare subscriber: messages received",
            |r| r.bare.received as f64,
            0,
        ),
        (
            "gateway: points in the store (measured)",
            |r| r.gw.stored as f64,
            0,
        ),
        (
            "publisher rate, bare subscriber phase, msg/s",
            |r| r.bare.published.rate(),
            0,
        ),
        (
            "publisher rate, gateway phase, msg/s",
            |r| r.gw.published.rate(),
            0,
        ),
        (
            "gateway: publisher done → all points in the store, s",
            |r| r.gw.tail().as_secs_f64(),
            2,
        ),
        (
            "gateway: messages left unacknowledged (PUBACK never sent)",
            |r| r.gw.unacked.map_or(f64::NAN, |u| u as f64),
            0,
        ),
        (
            "bare subscriber peak RSS (VmHWM), MiB",
            |r| mib(r.bare.peak_rss_kib),
            1,
        ),
        (
            "gateway peak RSS (VmHWM), MiB",
            |r| mib(r.gw.peak_rss_kib),
            1,
        ),
        (
            "bare subscriber CPU, % of one core",
            |r| r.bare.cpu_pct(r.bare.cpu_s),
            0,
        ),
        (
            "gateway CPU, % of one core",
            |r| r.gw.cpu_pct(r.gw.gateway_cpu_s),
            0,
        ),
        (
            "mosquitto CPU, % of one core, bare subscriber phase",
            |r| r.bare.cpu_pct(r.bare.broker_cpu_s),
            0,
        ),
        (
            "mosquitto CPU, % of one core, gateway phase",
            |r| r.gw.cpu_pct(r.gw.broker_cpu_s),
            0,
        ),
        (
            "victoria-metrics CPU, % of one core, gateway phase",
            |r| r.gw.cpu_pct(r.gw.store_cpu_s),
            0,
        ),
        (
            "bench process (publisher), % of one core, bare subscriber phase",
            |r| r.bare.cpu_pct(r.bare.bench_cpu_s),
            0,
        ),
        (
            "bench process (publisher + store polling), % of one core, gateway phase",
            |r| r.gw.cpu_pct(r.gw.bench_cpu_s),
            0,
        ),
        (
            "all three processes, bare subscriber phase, % of one core",
            |r| {
                r.bare
                    .cpu_pct(r.bare.cpu_s + r.bare.broker_cpu_s + r.bare.bench_cpu_s)
            },
            0,
        ),
        (
            "all four processes, gateway phase, % of one core",
            |r| {
                r.gw.cpu_pct(
                    r.gw.gateway_cpu_s + r.gw.broker_cpu_s + r.gw.store_cpu_s + r.gw.bench_cpu_s,
                )
            },
            0,
        ),
    ];
    for (case, rounds) in cases.iter().zip(results) {
        let _ = writeln!(
            out,
            "\n**{}**: {} messages, {} round(s)\n",
            case.name,
            fmt_num(case.load.len() as f64, 0),
            rounds.len()
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
        for (label, f, decimals) in &figures {
            if case.qos == QoS::AtMostOnce && label.contains("unacknowledged") {
                continue;
            }
            let values: Vec<f64> = rounds.iter().map(f).collect();
            let mut line = format!("| {label} |");
            for v in &values {
                let _ = write!(line, " {} |", fmt_num(*v, *decimals));
            }
            let _ = write!(line, " {} |", fmt_num(median(values), *decimals));
            let _ = writeln!(out, "{line}");
        }
        let extra: Vec<String> = rounds
            .iter()
            .enumerate()
            .filter(|(_, r)| r.gw.final_count > case.load.len() as u64)
            .map(|(i, r)| format!("round {}: {} points", i + 1, r.gw.final_count))
            .collect();
        if !extra.is_empty() {
            let _ = writeln!(
                out,
                "\nDuplicates in the store from redelivery: {}.",
                extra.join(", ")
            );
        }
    }
    let _ = writeln!(
        out,
        "\nHow to read it: both rates count from the first publish; the bare subscriber's until \
         it has the last message, the gateway's until the store answers a `count_over_time` \
         query with all the points (polled every {} ms after `/internal/force_flush`), so it \
         includes the last batch's wait (`batch_quiet`, 100 ms after the last reading) and the store's ingestion. At \
         QoS 0 the broker may drop messages: the bare subscriber stops {} s after the last one \
         it got, the store is read until its count has not grown for {} s after the publisher \
         finished, and the rate counts what arrived (up to when it last arrived). The publisher \
         and the consumer share the broker and the machine's {cores} cores: when the gateway's \
         publisher rate is far below the bare subscriber phase's, or the tail after the \
         publisher is done is long, the gateway (not the broker or the load generator) is what \
         holds the rate down. \"Unacknowledged\" counts the messages the broker redelivers when \
         the gateway's session is resumed after it stopped: PUBACKs it never sent, which \
         mosquitto keeps in its in-flight list (and scans on every PUBACK) and which a \
         restarted gateway stores again. CPU figures are utime+stime from `/proc/<pid>/stat` \
         over the phase (clock ticks of 10 ms).",
        COUNT_POLL.as_millis(),
        QOS0_SUBSCRIBER_IDLE.as_secs(),
        QOS0_STORE_IDLE.as_secs(),
    );
    let _ = write!(out, "{REPORT_END}");
    out
}
