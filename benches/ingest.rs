//! Ingest benchmark: how many telemetry readings per second the gateway carries from a real
//! MQTT broker (mosquitto) into a real InfluxDB-v2-compatible store (VictoriaMetrics), end to
//! end, against a baseline measured in the same run on the same machine: a bare rumqttc
//! subscriber (QoS 1, persistent session, manual acks, every payload parsed as JSON) receiving
//! the same messages from the same kind of broker, i.e. "as fast as the broker can deliver".
//! The machine is small and shared, so the figure that matters is the ratio gateway/baseline.
//! Everything runs on 127.0.0.1 with free ports and temp dirs; every process it starts is
//! killed at the end, and every wait is bounded.
//!
//! `cargo bench --bench ingest` (run it through `scripts/bench`, which builds the release
//! gateway and writes `BENCHMARKS.md`) runs the full load: `BENCH_MESSAGES` (default 200000)
//! messages from `BENCH_DEVICES` (default 1000) heating loops, in `BENCH_ROUNDS` (default 3)
//! rounds of baseline-then-gateway, each phase on a fresh broker (and store). Under
//! `cargo test --all-targets` (no `--bench` argument) it runs a tiny smoke version that only
//! proves the bench still works: every point must arrive, or it panics.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};

use common::{
    clk_tck, connect, cpu_ticks, disconnect, env_number, fmt_num, full_run, gateway_bin, median,
    now_ms, publish_counting_acks, secs, store_count, store_query, temp_dir, ticks_s, wait_for,
    write_file, Service, CLIENT_CAPACITY, GATEWAY_CLIENT_ID, PUBLISH_INFLIGHT, READY_TIMEOUT,
    STOPPED_LOG, STOP_TIMEOUT, SUBSCRIBED_LOG,
};

const FULL_MESSAGES: usize = 200_000;
const FULL_DEVICES: usize = 1000;
const FULL_ROUNDS: usize = 3;
const SMOKE_MESSAGES: usize = 500;
const SMOKE_DEVICES: usize = 20;

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

fn main() {
    let p = Params::from_env();
    let gateway = gateway_bin(p.full, "ingest").unwrap_or_else(|e| panic!("ingest bench: {e}"));
    let clk_tck = clk_tck();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "ingest bench ({}): {} messages, {} {CATEGORY} devices, {} round(s), broker \
         max_inflight_messages {}, gateway {}",
        if p.full { "full" } else { "smoke test" },
        p.messages,
        p.devices,
        p.rounds,
        p.broker_inflight,
        gateway.display()
    );
    let load = Arc::new(Load::new(p.messages, p.devices, now_ms()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");

    let mut rounds = Vec::with_capacity(p.rounds);
    for round in 1..=p.rounds {
        eprintln!("round {round}/{}: baseline", p.rounds);
        let base = baseline_round(&rt, &p, &load, clk_tck)
            .unwrap_or_else(|e| panic!("ingest bench, round {round}, baseline: {e}"));
        eprintln!(
            "  baseline: {:.0} msg/s received, publisher {:.0} msg/s",
            base.rate(),
            base.publisher_rate()
        );
        eprintln!("round {round}/{}: gateway", p.rounds);
        let gw = gateway_round(&rt, &p, &load, &gateway, clk_tck)
            .unwrap_or_else(|e| panic!("ingest bench, round {round}, gateway: {e}"));
        eprintln!(
            "  gateway: {:.0} readings/s end to end ({:.2} × baseline), publisher {:.0} msg/s, \
             gateway CPU {:.0}% of a core",
            gw.rate(),
            gw.rate() / base.rate(),
            gw.publisher_rate(),
            gw.cpu_pct(gw.gateway_cpu_s)
        );
        rounds.push((base, gw));
    }
    drop(rt);
    println!("{}", report(&p, &rounds, cores));
}

/// What to run: the full load under `cargo bench`, a tiny one under `cargo test`.
struct Params {
    full: bool,
    messages: usize,
    devices: usize,
    rounds: usize,
    /// mosquitto's `max_inflight_messages`: QoS 1 messages it sends a subscriber before
    /// waiting for its PUBACKs (an MQTT 3.1.1 client cannot ask for more).
    broker_inflight: u32,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        let (messages, devices, rounds) = if full {
            (
                env_number("BENCH_MESSAGES", FULL_MESSAGES),
                env_number("BENCH_DEVICES", FULL_DEVICES),
                env_number("BENCH_ROUNDS", FULL_ROUNDS),
            )
        } else {
            (SMOKE_MESSAGES, SMOKE_DEVICES, 1)
        };
        assert!(
            messages > 0 && devices > 0 && rounds > 0,
            "BENCH_MESSAGES, BENCH_DEVICES and BENCH_ROUNDS must be at least 1"
        );
        assert!(
            devices <= 99_999,
            "BENCH_DEVICES must be at most 99999 (device ids HX-00001..)"
        );
        // `0`: unlimited. mosquitto's default is 20, but Debian's 2.0.11 does not keep to
        // it (one PUBACK releases the whole queue; fixed in 2.0.13) and, with a subscriber
        // that falls behind, it then loses a queued message now and then: it assigns the
        // message id and never sends it. Without a quota nothing is queued, so nothing is lost.
        let broker_inflight = env_number("BENCH_BROKER_INFLIGHT", 0);
        Params {
            full,
            messages,
            devices,
            rounds,
            broker_inflight: u32::try_from(broker_inflight)
                .expect("BENCH_BROKER_INFLIGHT fits in 32 bits"),
        }
    }

    /// Bound on each phase's publishing and delivery.
    fn phase_timeout(&self) -> Duration {
        Duration::from_secs(60 + (self.messages / 1000) as u64)
    }
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

/// The baseline phase of one round.
struct BaselineRound {
    messages: usize,
    published: Published,
    /// When the last message reached the subscriber.
    last_received: Instant,
    bad_json: usize,
    broker_cpu_s: f64,
    bench_cpu_s: f64,
}

impl BaselineRound {
    /// Messages per second, from the first publish to the last message received.
    fn rate(&self) -> f64 {
        self.messages as f64 / secs(self.last_received - self.published.started)
    }

    fn publisher_rate(&self) -> f64 {
        self.published.rate()
    }

    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / secs(self.last_received - self.published.started)
    }
}

/// The gateway phase of one round.
struct GatewayRound {
    messages: usize,
    published: Published,
    /// When the store was first seen to hold all the points.
    all_stored: Instant,
    /// Points in the store after the gateway stopped (more than `messages`: redeliveries).
    final_count: u64,
    /// Messages the broker still held unacknowledged for the gateway's session after it
    /// stopped (PUBACKs it never sent): redelivered, and stored again, at its next start.
    unacked: usize,
    gateway_cpu_s: f64,
    broker_cpu_s: f64,
    store_cpu_s: f64,
    bench_cpu_s: f64,
    /// Wall time over which the CPU times were taken.
    cpu_wall: Duration,
    peak_rss_kib: u64,
}

impl GatewayRound {
    /// Readings per second, from the first publish until the store holds all of them.
    fn rate(&self) -> f64 {
        self.messages as f64 / secs(self.all_stored - self.published.started)
    }

    fn publisher_rate(&self) -> f64 {
        self.published.rate()
    }

    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / secs(self.cpu_wall)
    }

    /// From the publisher's last PUBACK until the store holds every point.
    fn tail(&self) -> Duration {
        self.all_stored
            .saturating_duration_since(self.published.done)
    }
}

fn baseline_round(
    rt: &tokio::runtime::Runtime,
    p: &Params,
    load: &Arc<Load>,
    clk_tck: f64,
) -> Result<BaselineRound, String> {
    let dir = temp_dir("estate-bench-baseline-")?;
    let broker = Service::mosquitto(dir.path(), p.broker_inflight)?;
    let port = broker.port;
    let n = load.len();
    let (client, eventloop) = rt.block_on(subscribe("bench-baseline", port))?;
    let receiver = rt.spawn(receive(client, eventloop, n, p.phase_timeout()));
    let cpu0 = (broker.cpu_ticks(), cpu_ticks("self"));
    let published = rt
        .block_on(publish_all(port, load.clone(), p.phase_timeout()))
        .map_err(|e| format!("{e}\n{}", broker.log_tail()))?;
    let received = rt
        .block_on(receiver)
        .map_err(|e| format!("baseline subscriber task: {e}"))?
        .map_err(|e| format!("{e}\n{}", broker.log_tail()))?;
    let cpu1 = (broker.cpu_ticks(), cpu_ticks("self"));
    if received.count < n {
        return Err(format!(
            "the subscriber received {} of {n} messages",
            received.count
        ));
    }
    Ok(BaselineRound {
        messages: n,
        published,
        last_received: received.last,
        bad_json: received.bad_json,
        broker_cpu_s: ticks_s(cpu0.0, cpu1.0, clk_tck),
        bench_cpu_s: ticks_s(cpu0.1, cpu1.1, clk_tck),
    })
}

fn gateway_round(
    rt: &tokio::runtime::Runtime,
    p: &Params,
    load: &Arc<Load>,
    gateway_bin: &Path,
    clk_tck: f64,
) -> Result<GatewayRound, String> {
    let dir = temp_dir("estate-bench-gateway-")?;
    let broker = Service::mosquitto(dir.path(), p.broker_inflight)?;
    let store = Service::victoria_metrics(dir.path())?;
    let n = load.len();

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
    let publisher = rt.spawn(publish_all(broker.port, load.clone(), p.phase_timeout()));

    let deadline = Instant::now() + p.phase_timeout();
    let all_stored = loop {
        let t = Instant::now();
        // Points that reached the store before `t` are counted: the flush starts after it.
        let count = store_count(store.port, COUNTED_METRIC)?;
        if count >= n as u64 {
            break t;
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
                "the store held {count} of {n} points {:?} after the first publish (publisher \
                 finished: {finished}; gateway exit on SIGTERM: {status:?})\n{}{}",
                p.phase_timeout(),
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
    let unacked = rt.block_on(redelivered(broker.port, GATEWAY_CLIENT_ID))?;
    let ticks = |i: usize| ticks_s(cpu0[i], cpu1[i], clk_tck);
    Ok(GatewayRound {
        messages: n,
        published,
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
// MQTT clients of the bench: the load generator and the baseline subscriber.

/// What the load generator did.
struct Published {
    /// Just before the first publish.
    started: Instant,
    /// When the broker acknowledged the last publish.
    done: Instant,
    messages: usize,
}

impl Published {
    fn rate(&self) -> f64 {
        self.messages as f64 / secs(self.done - self.started)
    }
}

/// Publishes every message of `load` with QoS 1 over one connection and waits for all the
/// broker's PUBACKs.
async fn publish_all(port: u16, load: Arc<Load>, timeout: Duration) -> Result<Published, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (client, mut eventloop) =
        connect(port, "bench-publisher", Some(PUBLISH_INFLIGHT), deadline).await?;

    let n = load.len();
    let started = Instant::now();
    let messages = {
        let load = load.clone();
        (0..n).map(move |i| {
            let (device, payload) = &load.messages[i];
            (load.topics[*device].clone(), payload.clone())
        })
    };
    let done =
        publish_counting_acks(&client, &mut eventloop, n, messages, deadline, timeout).await?;
    Ok(Published {
        started,
        done,
        messages: n,
    })
}

/// Connects a bare subscriber like the gateway's (QoS 1, persistent session, manual acks)
/// and waits until the broker granted its subscriptions.
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

struct Received {
    count: usize,
    last: Instant,
    bad_json: usize,
}

/// Receives `n` messages, parsing each payload as JSON and acknowledging it right away.
async fn receive(
    client: AsyncClient,
    mut eventloop: EventLoop,
    n: usize,
    timeout: Duration,
) -> Result<Received, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut count = 0;
    let mut bad_json = 0;
    let mut last = Instant::now();
    while count < n {
        let ev = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| format!("subscriber: {count} of {n} messages by {timeout:?}"))?
            .map_err(|e| format!("subscriber: connection failed after {count} messages: {e}"))?;
        if let Event::Incoming(Packet::Publish(p)) = ev {
            match serde_json::from_slice::<serde_json::Value>(&p.payload) {
                Ok(v) => {
                    std::hint::black_box(v);
                }
                Err(_) => bad_json += 1,
            }
            client
                .try_ack(&p)
                .map_err(|e| format!("subscriber: cannot queue a PUBACK: {e}"))?;
            count += 1;
            last = Instant::now();
        }
    }
    disconnect(&client, &mut eventloop).await;
    Ok(Received {
        count,
        last,
        bad_json,
    })
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

fn report(p: &Params, rounds: &[(BaselineRound, GatewayRound)], cores: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{REPORT_BEGIN}");
    let _ = writeln!(
        out,
        "{} messages (QoS 1) from {} `{CATEGORY}` devices, {} round(s); each round runs the \
         baseline, then the gateway, each on a fresh mosquitto (`max_inflight_messages {}`, \
         `max_queued_messages 0`) and, for the gateway, a fresh victoria-metrics. The gateway \
         runs with the production defaults (`batch_lines` 5000, `batch_interval` 1s, gzip).{}\n",
        p.messages,
        p.devices,
        rounds.len(),
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
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for i in 1..=rounds.len() {
        let _ = write!(header, " round {i} |");
        rule.push_str("---:|");
    }
    header.push_str(" median |");
    rule.push_str("---:|");
    let _ = writeln!(out, "{header}\n{rule}");

    type Row<'a> = (
        &'a str,
        Box<dyn Fn(&BaselineRound, &GatewayRound) -> f64>,
        usize,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            "**baseline**: bare rumqttc subscriber, msg/s",
            Box::new(|b, _| b.rate()),
            0,
        ),
        (
            "**gateway**: MQTT → store end to end, readings/s",
            Box::new(|_, g| g.rate()),
            0,
        ),
        (
            "**gateway / baseline**",
            Box::new(|b, g| g.rate() / b.rate()),
            2,
        ),
        (
            "publisher rate, baseline phase, msg/s",
            Box::new(|b, _| b.publisher_rate()),
            0,
        ),
        (
            "publisher rate, gateway phase, msg/s",
            Box::new(|_, g| g.publisher_rate()),
            0,
        ),
        (
            "gateway: last PUBACK to publisher → all points in the store, s",
            Box::new(|_, g| g.tail().as_secs_f64()),
            2,
        ),
        (
            "gateway: messages left unacknowledged (PUBACK never sent)",
            Box::new(|_, g| g.unacked as f64),
            0,
        ),
        (
            "gateway CPU, s per 10k readings",
            Box::new(|_, g| g.gateway_cpu_s * 10_000.0 / g.messages as f64),
            3,
        ),
        (
            "gateway CPU, % of one core",
            Box::new(|_, g| g.cpu_pct(g.gateway_cpu_s)),
            0,
        ),
        (
            "gateway peak RSS (VmHWM), MiB",
            Box::new(|_, g| g.peak_rss_kib as f64 / 1024.0),
            1,
        ),
        (
            "mosquitto CPU, % of one core, baseline phase",
            Box::new(|b, _| b.cpu_pct(b.broker_cpu_s)),
            0,
        ),
        (
            "mosquitto CPU, % of one core, gateway phase",
            Box::new(|_, g| g.cpu_pct(g.broker_cpu_s)),
            0,
        ),
        (
            "victoria-metrics CPU, % of one core, gateway phase",
            Box::new(|_, g| g.cpu_pct(g.store_cpu_s)),
            0,
        ),
        (
            "bench process (publisher + subscriber), % of one core, baseline phase",
            Box::new(|b, _| b.cpu_pct(b.bench_cpu_s)),
            0,
        ),
        (
            "bench process (publisher + store polling), % of one core, gateway phase",
            Box::new(|_, g| g.cpu_pct(g.bench_cpu_s)),
            0,
        ),
        (
            "all four processes, gateway phase, % of the machine",
            Box::new(move |_, g| {
                g.cpu_pct(g.gateway_cpu_s + g.broker_cpu_s + g.store_cpu_s + g.bench_cpu_s)
                    / cores as f64
            }),
            0,
        ),
    ];
    for (label, f, decimals) in &rows {
        let values: Vec<f64> = rounds.iter().map(|(b, g)| f(b, g)).collect();
        let mut line = format!("| {label} |");
        for v in &values {
            let _ = write!(line, " {} |", fmt_num(*v, *decimals));
        }
        let _ = write!(line, " {} |", fmt_num(median(values), *decimals));
        let _ = writeln!(out, "{line}");
    }

    let bad_json: usize = rounds.iter().map(|(b, _)| b.bad_json).sum();
    let extra: Vec<String> = rounds
        .iter()
        .enumerate()
        .filter(|(_, (_, g))| g.final_count != g.messages as u64)
        .map(|(i, (_, g))| format!("round {}: {} points", i + 1, g.final_count))
        .collect();
    let _ = writeln!(
        out,
        "\nEvery round: all {} points in the store{}; baseline payloads that were not JSON: {}.",
        p.messages,
        if extra.is_empty() {
            " (exactly, no duplicates)".to_owned()
        } else {
            format!(" (duplicates from redelivery: {})", extra.join(", "))
        },
        bad_json
    );
    let _ = writeln!(
        out,
        "\nHow to read it: both rates count from the first publish; the baseline's until the \
         subscriber has the last message, the gateway's until the store answers a \
         `count_over_time` query with all N points (polled every {} ms after \
         `/internal/force_flush`), so it includes the last batch's wait (up to \
         `batch_interval`) and the store's ingestion. The publisher and the consumer share \
         the broker and the machine's {cores} cores: when the gateway's publisher rate is \
         far below the baseline phase's, or the tail after the last PUBACK is long, the \
         gateway (not the broker or the load generator) is what holds the rate down. \
         \"Unacknowledged\" counts the messages the broker redelivers when the gateway's \
         session is resumed after it stopped: PUBACKs it never sent, which mosquitto keeps \
         in its in-flight list (and scans on every PUBACK) and which a restarted gateway \
         stores again. CPU figures are utime+stime from `/proc/<pid>/stat` over the phase.",
        COUNT_POLL.as_millis(),
    );
    let _ = write!(out, "{REPORT_END}");
    out
}
