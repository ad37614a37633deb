//! Alarm latency benchmark: how long an alarm takes from the MQTT publish of the reading that
//! triggers it to the alarm event reaching an MQTT subscriber, through a real broker
//! (mosquitto), the release gateway (a separate process, writing to a real victoria-metrics)
//! and the broker again, while a background load of heating-loop telemetry flows through the
//! same broker and gateway. The trigger is an elevator's `{"entrapment": true}` (critical,
//! raised at once, `configs/profiles/elevator.toml`); the event is the `raised` event on
//! `estate/{site}/alarms/elevator/{device}` (QoS 1, `src/sink/mqtt.rs`).
//!
//! The baseline is measured in the same phases, under the same load, on the same broker: the
//! same publisher sends a probe on a topic the same subscriber listens to directly (one broker
//! hop, no gateway), half a trigger spacing after every trigger. The gateway's path is two
//! hops plus the gateway, so the difference of the two is what the gateway and its second hop
//! add. Latency is receive − publish in this process (monotonic clock): the publish instant is
//! taken just before the message is handed to rumqttc, the receive instant when rumqttc's
//! event loop returns it.
//!
//! Phases, on one broker, store and gateway: warm-up (background load on; every elevator gets
//! a first reading, half of them raise an alarm, and the bench waits for those events: the
//! whole path is up), **under load** (`BENCH_ALARM_SAMPLES` `raised` samples with the
//! background load at `BENCH_ALARM_RATE` readings/s), drain (background off; until the store
//! holds every background reading), **idle** (`BENCH_ALARM_IDLE_SAMPLES`, no background load).
//! Each trigger toggles its elevator (true raises, false clears), round-robin, so `raised` and
//! `cleared` events alternate; only `raised` events are the figure (`cleared` is reported too).
//!
//! `cargo bench --bench alarm` (through `scripts/bench alarm`, which builds the release
//! gateway and writes `BENCHMARKS.md`) runs the full version; under `cargo test --all-targets`
//! (no `--bench` argument) it runs a tiny smoke version: few samples, a low background rate,
//! and it panics unless every trigger produced its alarm event, every probe arrived and the
//! store holds every background reading. It asserts no timing. Everything runs on 127.0.0.1
//! with free ports and temp dirs; every process is killed at the end; every wait is bounded.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::{
    clk_tck, connect, cpu_ticks, disconnect, env_number, fmt_num, full_run, gateway_bin, http_get,
    now_ms, secs, temp_dir, ticks_s, url_encode, wait_for, write_file, Service, GATEWAY_CLIENT_ID,
    STOP_TIMEOUT, SUBSCRIBED_LOG,
};

const SITE: &str = "bench";
/// The background load's devices and the one signal counted in the store (every payload has it).
const LOOP_CATEGORY: &str = "heating_loop";
const COUNTED_METRIC: &str = "telemetry_supply_temp_c";
/// The triggers' devices.
const ELEVATOR_CATEGORY: &str = "elevator";
/// The alarm rule a trigger raises.
const RULE: &str = "entrapment";
/// What the subscriber listens to: the gateway's alarm events, and the baseline's probes.
const ALARM_FILTER: &str = "estate/+/alarms/#";
const PROBE_PREFIX: &str = "bench/probe/";
const PROBE_FILTER: &str = "bench/probe/#";

/// Bound on waiting for the warm-up alarms, for a phase's last events, for the store to hold
/// the background load, and for the background publisher's last PUBACKs.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// QoS 1 publishes the background publisher keeps in flight (it stands for many devices).
const BACKGROUND_INFLIGHT: u16 = 1000;
/// The background publisher's pacing tick, and the most it catches up in one tick.
const PACE_TICK: Duration = Duration::from_millis(1);
const MAX_CATCH_UP: Duration = Duration::from_millis(10);
/// The target for the gateway's p99 under load.
const TARGET_P99_MS: f64 = 10.0;

fn main() {
    let p = Params::from_env();
    let gateway = gateway_bin(p.full, "alarm").unwrap_or_else(|e| panic!("alarm bench: {e}"));
    eprintln!(
        "alarm bench ({}): {} samples under load ({} readings/s from {} {LOOP_CATEGORY} \
         devices), {} idle, {} {ELEVATOR_CATEGORY} devices, a trigger every {:?}, broker \
         max_inflight_messages {}, gateway {}",
        if p.full { "full" } else { "smoke test" },
        p.samples,
        p.rate,
        p.loops,
        p.idle_samples,
        p.elevators,
        p.spacing,
        p.broker_inflight,
        gateway.display()
    );
    let run = run(&p, &gateway).unwrap_or_else(|e| panic!("alarm bench: {e}"));
    if !p.full {
        assert_eq!(
            run.stored, run.background_acked,
            "alarm bench (smoke): the store must hold every background reading"
        );
    }
    println!("{}", report(&p, &run));
}

/// What to run: the full load under `cargo bench`, a tiny one under `cargo test`.
struct Params {
    full: bool,
    /// `raised` samples under load, and idle.
    samples: usize,
    idle_samples: usize,
    /// Background readings per second, and the heating loops they come from.
    rate: usize,
    loops: usize,
    elevators: usize,
    /// Time between two triggers (a probe goes out half-way).
    spacing: Duration,
    warm_up: Duration,
    /// mosquitto's `max_inflight_messages`, as in the ingest bench.
    broker_inflight: u32,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        let p = if full {
            Params {
                full,
                samples: env_number("BENCH_ALARM_SAMPLES", 400),
                idle_samples: env_number("BENCH_ALARM_IDLE_SAMPLES", 200),
                rate: env_number("BENCH_ALARM_RATE", 20_000),
                loops: env_number("BENCH_ALARM_LOOPS", 1000),
                elevators: env_number("BENCH_ALARM_ELEVATORS", 200),
                spacing: Duration::from_millis(env_number("BENCH_ALARM_SPACING_MS", 50) as u64),
                warm_up: Duration::from_secs(2),
                broker_inflight: 0,
            }
        } else {
            Params {
                full,
                samples: 20,
                idle_samples: 10,
                rate: 500,
                loops: 20,
                elevators: 10,
                spacing: Duration::from_millis(50),
                warm_up: Duration::from_millis(500),
                broker_inflight: 0,
            }
        };
        assert!(
            p.samples > 0 && p.idle_samples > 0 && p.loops > 0 && p.rate > 0,
            "BENCH_ALARM_SAMPLES, BENCH_ALARM_IDLE_SAMPLES, BENCH_ALARM_LOOPS and \
             BENCH_ALARM_RATE must be at least 1"
        );
        assert!(
            p.elevators >= 2 && p.elevators % 2 == 0 && p.elevators <= 99_998,
            "BENCH_ALARM_ELEVATORS must be even, from 2 to 99998 (raises and clears alternate)"
        );
        assert!(p.loops <= 99_999, "BENCH_ALARM_LOOPS must be at most 99999");
        assert!(
            p.spacing >= Duration::from_millis(2),
            "BENCH_ALARM_SPACING_MS must be at least 2"
        );
        // `0`: unlimited, as in the ingest bench (see BENCHMARKS.md: Debian's mosquitto 2.0.11
        // does not keep to a quota and then now and then loses a queued message).
        let inflight = env_number("BENCH_BROKER_INFLIGHT", p.broker_inflight as usize);
        Params {
            broker_inflight: u32::try_from(inflight)
                .expect("BENCH_BROKER_INFLIGHT fits in 32 bits"),
            ..p
        }
    }
}

// ---------------------------------------------------------------------------------------
// The devices.

struct Devices {
    loop_topics: Vec<String>,
    elevator_ids: Vec<String>,
    elevator_topics: Vec<String>,
    csv: String,
}

impl Devices {
    fn new(loops: usize, elevators: usize) -> Devices {
        let loop_ids: Vec<String> = (1..=loops).map(|i| format!("HX-{i:05}")).collect();
        let elevator_ids: Vec<String> = (1..=elevators).map(|i| format!("EL-{i:05}")).collect();
        let topic = |category: &str, id: &str| format!("estate/{SITE}/{category}/{id}/telemetry");
        let mut csv = String::from("id,name,building,category\n");
        for (i, id) in loop_ids.iter().enumerate() {
            let b = i / 20 + 1;
            let _ = writeln!(
                csv,
                "{id},{b}号楼供暖回路{},{b}号楼,{LOOP_CATEGORY}",
                i % 20 + 1
            );
        }
        for (i, id) in elevator_ids.iter().enumerate() {
            let b = i / 4 + 1;
            let _ = writeln!(
                csv,
                "{id},{b}号楼{}号电梯,{b}号楼,{ELEVATOR_CATEGORY}",
                i % 4 + 1
            );
        }
        Devices {
            loop_topics: loop_ids.iter().map(|id| topic(LOOP_CATEGORY, id)).collect(),
            elevator_topics: elevator_ids
                .iter()
                .map(|id| topic(ELEVATOR_CATEGORY, id))
                .collect(),
            elevator_ids,
            csv,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The run.

/// What one phase measured.
#[derive(Default)]
struct Phase {
    /// Latencies, ms: `raised` events, `cleared` events, baseline probes.
    raised: Vec<f64>,
    cleared: Vec<f64>,
    probes: Vec<f64>,
    /// From the first trigger to the last probe's publish; wall-clock start, unix ms.
    window: Duration,
    start_ms: i64,
    start: Option<Instant>,
    /// Every sample: kind, publish time since the phase start (ms), latency (ms).
    trace: Vec<(&'static str, f64, f64)>,
    gateway_cpu_s: f64,
    broker_cpu_s: f64,
    store_cpu_s: f64,
    bench_cpu_s: f64,
    /// Background readings the broker acknowledged during the window.
    background_acked: u64,
}

impl Phase {
    fn cpu_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / secs(self.window)
    }

    fn background_rate(&self) -> f64 {
        self.background_acked as f64 / secs(self.window)
    }
}

struct Run {
    loaded: Phase,
    idle: Phase,
    /// Background readings with a `ts` inside the loaded window that the store holds.
    stored_in_window: u64,
    /// All background readings acknowledged by the broker, and all the store holds.
    background_acked: u64,
    stored: u64,
    peak_rss_kib: u64,
    /// Whether the gateway stopped cleanly on SIGTERM.
    clean_stop: bool,
}

fn run(p: &Params, gateway_bin: &Path) -> Result<Run, String> {
    let clk_tck = clk_tck();
    let devices = Arc::new(Devices::new(p.loops, p.elevators));
    let dir = temp_dir("estate-bench-alarm-")?;
    let broker = Service::mosquitto(dir.path(), p.broker_inflight)?;
    let store = Service::victoria_metrics(dir.path())?;
    let config = write_gateway_config(dir.path(), &devices, broker.port, store.port)?;
    let mut gateway = Service::gateway(dir.path(), gateway_bin, &config)?;
    gateway.wait_ready(|s| s.log().contains(SUBSCRIBED_LOG))?;
    let with_logs = |e: String| format!("{e}\n{}\n{}", gateway.log_tail(), broker.log_tail());

    // The subscriber's and the triggers' event loops run on the runtime's worker thread; the
    // trigger pacing runs on this thread (inside `block_on`); the background load on its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the tokio runtime: {e}"))?;
    let (arrivals, sub_stop, sub_task) = rt.block_on(subscriber(broker.port))?;
    let mut bench = rt.block_on(Triggers::connect(broker.port, devices.clone(), arrivals))?;

    let background = Background::start(broker.port, p.rate, devices.clone());
    let phases = (|| {
        std::thread::sleep(p.warm_up);
        rt.block_on(bench.warm_up())?;
        let pids = [gateway.pid(), broker.pid(), store.pid()].map(|p| p.to_string());
        let measure = |bench: &mut Triggers, samples: usize, acked: &AtomicU64| {
            let cpu0: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(p)).collect();
            let self0 = cpu_ticks("self");
            let acked0 = acked.load(Relaxed);
            let (mut phase, end) = rt.block_on(bench.phase(samples, p.spacing))?;
            let cpu1: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(p)).collect();
            let self1 = cpu_ticks("self");
            let t = |i: usize| ticks_s(cpu0[i], cpu1[i], clk_tck);
            phase.gateway_cpu_s = t(0);
            phase.broker_cpu_s = t(1);
            phase.store_cpu_s = t(2);
            phase.bench_cpu_s = ticks_s(self0, self1, clk_tck);
            phase.background_acked = acked.load(Relaxed) - acked0;
            // Wait for the phase's last events only after the CPU window closed.
            rt.block_on(bench.collect(&mut phase, end))?;
            Ok::<Phase, String>(phase)
        };
        eprintln!("under load: {} samples", p.samples);
        let loaded = measure(&mut bench, p.samples, &background.acked)?;
        let window_start_ms = loaded.start_ms;
        let window_end_ms = window_start_ms + loaded.window.as_millis() as i64;
        let background_acked = background.stop()?;
        eprintln!(
            "  gateway p50 {:.2} ms, p99 {:.2} ms; baseline p50 {:.2} ms, p99 {:.2} ms; \
             background {:.0} readings/s",
            percentile(&loaded.raised, 50.0),
            percentile(&loaded.raised, 99.0),
            percentile(&loaded.probes, 50.0),
            percentile(&loaded.probes, 99.0),
            loaded.background_rate()
        );
        // Drain: the store holds every background reading before the idle phase starts.
        let t = Instant::now();
        let stored = loop {
            let n = store_count(store.port, None)?;
            if n >= background_acked || t.elapsed() > WAIT_TIMEOUT {
                break n;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let stored_in_window = store_count(store.port, Some((window_start_ms, window_end_ms)))?;
        eprintln!("idle: {} samples", p.idle_samples);
        let idle_acked = AtomicU64::new(0);
        let idle = measure(&mut bench, p.idle_samples, &idle_acked)?;
        eprintln!(
            "  gateway p50 {:.2} ms, p99 {:.2} ms; baseline p50 {:.2} ms, p99 {:.2} ms",
            percentile(&idle.raised, 50.0),
            percentile(&idle.raised, 99.0),
            percentile(&idle.probes, 50.0),
            percentile(&idle.probes, 99.0),
        );
        Ok::<_, String>((loaded, idle, background_acked, stored, stored_in_window))
    })();
    let (loaded, idle, background_acked, stored, stored_in_window) = phases.map_err(with_logs)?;
    // BENCH_ALARM_TRACE=FILE: every sample as CSV (phase, kind, publish ms, latency ms), to
    // see when the slow ones happen.
    if let Ok(path) = std::env::var("BENCH_ALARM_TRACE") {
        let mut csv = String::from("phase,kind,published_ms,latency_ms\n");
        for (name, phase) in [("loaded", &loaded), ("idle", &idle)] {
            let mut rows = phase.trace.clone();
            rows.sort_by(|a, b| a.1.total_cmp(&b.1));
            for (kind, t, ms) in rows {
                let _ = writeln!(csv, "{name},{kind},{t:.3},{ms:.3}");
            }
        }
        write_file(Path::new(&path), &csv)?;
    }

    rt.block_on(bench.disconnect());
    sub_stop.cancel();
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), sub_task).await });
    drop(rt);
    let peak_rss_kib = gateway.peak_rss_kib().unwrap_or(0);
    let status = gateway.terminate(STOP_TIMEOUT);
    Ok(Run {
        loaded,
        idle,
        stored_in_window,
        background_acked,
        stored,
        peak_rss_kib,
        clean_stop: status.is_some_and(|s| s.success()),
    })
}

/// Writes `devices.csv` and `gateway.toml` (production defaults, no `[http]`) into `dir`;
/// returns the TOML's path.
fn write_gateway_config(
    dir: &Path,
    devices: &Devices,
    mqtt_port: u16,
    store_port: u16,
) -> Result<PathBuf, String> {
    write_file(&dir.join("devices.csv"), &devices.csv)?;
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
         bucket = \"bench\"\n",
        data = dir
            .join("gateway-data")
            .display()
            .to_string()
            .replace('\\', "\\\\"),
        // Alarms are logged at warn level (one line each); info keeps the start-up lines.
        log_level = std::env::var("BENCH_GATEWAY_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
    );
    let path = dir.join("gateway.toml");
    write_file(&path, &toml)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// The subscriber: timestamps every alarm event and probe as rumqttc hands it over.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// An alarm event: device, `event`, its `ts` (the triggering reading's `ts`).
    Alarm(String, String, i64),
    /// A baseline probe: its sequence number.
    Probe(u64),
}

type Arrival = (Key, Instant);

async fn subscriber(
    port: u16,
) -> Result<
    (
        mpsc::UnboundedReceiver<Arrival>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    let (client, mut eventloop) = connect(port, "bench-alarm-subscriber", None, deadline).await?;
    client
        .try_subscribe_many(
            [ALARM_FILTER, PROBE_FILTER]
                .map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce)),
        )
        .map_err(|e| format!("subscriber: cannot queue the subscription: {e}"))?;
    wait_for(&mut eventloop, deadline, "subscriber", |ev| {
        matches!(ev, Event::Incoming(Packet::SubAck(_)))
    })
    .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => break,
                    ev = eventloop.poll() => ev,
                };
                let at = Instant::now();
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(key) = parse_arrival(&p.topic, &p.payload) {
                            let _ = tx.send((key, at));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("alarm bench: subscriber: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            disconnect(&client, &mut eventloop).await;
        }
    });
    Ok((rx, stop, task))
}

fn parse_arrival(topic: &str, payload: &[u8]) -> Option<Key> {
    if let Some(seq) = topic.strip_prefix(PROBE_PREFIX) {
        return seq.parse().ok().map(Key::Probe);
    }
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if v["rule"] != RULE {
        return None;
    }
    Some(Key::Alarm(
        v["device"].as_str()?.to_owned(),
        v["event"].as_str()?.to_owned(),
        v["ts"].as_i64()?,
    ))
}

// ---------------------------------------------------------------------------------------
// The triggers and probes: one publisher, paced.

struct Triggers {
    client: AsyncClient,
    conn: tokio::task::JoinHandle<()>,
    devices: Arc<Devices>,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    /// Arrivals taken from the channel and not yet matched.
    seen: HashMap<Key, Instant>,
    /// Each elevator's entrapment value as last published.
    trapped: Vec<bool>,
    /// The next trigger's elevator, the next probe's number, the last `ts` used.
    next: usize,
    seq: u64,
    last_ts: i64,
}

/// Sent, not yet matched: what it waits for, when it was published, and which list it goes to.
struct Pending {
    key: Key,
    at: Instant,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Raised,
    Cleared,
    Probe,
}

impl Triggers {
    async fn connect(
        port: u16,
        devices: Arc<Devices>,
        arrivals: mpsc::UnboundedReceiver<Arrival>,
    ) -> Result<Triggers, String> {
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let (client, mut eventloop) = connect(port, "bench-alarm-triggers", None, deadline).await?;
        let conn = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("alarm bench: trigger publisher: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let n = devices.elevator_ids.len();
        Ok(Triggers {
            client,
            conn,
            devices,
            arrivals,
            seen: HashMap::new(),
            trapped: vec![false; n],
            next: 0,
            seq: 0,
            last_ts: 0,
        })
    }

    /// A `ts` for the next trigger: now, but always after the previous one (so it names it).
    fn ts(&mut self) -> i64 {
        self.last_ts = now_ms().max(self.last_ts + 1);
        self.last_ts
    }

    async fn publish(&self, topic: String, payload: String) -> Result<Instant, String> {
        let at = Instant::now();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| format!("trigger publisher: cannot queue a publish: {e}"))?;
        Ok(at)
    }

    /// Gives every elevator a first reading, odd ones trapped (so the toggling that follows
    /// raises and clears in turn), and waits for those alarms: the whole path is up.
    async fn warm_up(&mut self) -> Result<(), String> {
        let mut pending = Vec::new();
        for e in 0..self.trapped.len() {
            let trapped = e % 2 == 1;
            self.trapped[e] = trapped;
            let ts = self.ts();
            let at = self
                .publish(
                    self.devices.elevator_topics[e].clone(),
                    format!("{{\"entrapment\": {trapped}, \"ts\": {ts}}}"),
                )
                .await?;
            if trapped {
                let key = Key::Alarm(self.devices.elevator_ids[e].clone(), "raised".into(), ts);
                pending.push(Pending {
                    key,
                    at,
                    kind: Kind::Raised,
                });
            }
        }
        let mut discard = Phase::default();
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        self.wait(&mut pending, &mut discard, deadline, "the warm-up alarms")
            .await
    }

    /// Publishes triggers until `samples` of them raised an alarm, a probe after each; returns
    /// the phase's window and what is still to be collected.
    async fn phase(
        &mut self,
        samples: usize,
        spacing: Duration,
    ) -> Result<(Phase, Vec<Pending>), String> {
        let mut pending = Vec::with_capacity(samples * 4);
        let mut tick = tokio::time::interval(spacing / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let start = Instant::now();
        let start_ms = now_ms();
        let mut raised = 0;
        while raised < samples {
            let e = self.next;
            self.next = (self.next + 1) % self.trapped.len();
            let trapped = !self.trapped[e];
            self.trapped[e] = trapped;
            let ts = self.ts();
            let at = self
                .publish(
                    self.devices.elevator_topics[e].clone(),
                    format!("{{\"entrapment\": {trapped}, \"ts\": {ts}}}"),
                )
                .await?;
            let (event, kind) = if trapped {
                raised += 1;
                ("raised", Kind::Raised)
            } else {
                ("cleared", Kind::Cleared)
            };
            let key = Key::Alarm(self.devices.elevator_ids[e].clone(), event.into(), ts);
            pending.push(Pending { key, at, kind });
            tick.tick().await;

            self.seq += 1;
            let at = self
                .publish(
                    format!("{PROBE_PREFIX}{}", self.seq),
                    format!("{{\"probe\": {}, \"ts\": {}}}", self.seq, now_ms()),
                )
                .await?;
            pending.push(Pending {
                key: Key::Probe(self.seq),
                at,
                kind: Kind::Probe,
            });
            tick.tick().await;
        }
        let phase = Phase {
            window: start.elapsed(),
            start_ms,
            start: Some(start),
            ..Phase::default()
        };
        Ok((phase, pending))
    }

    /// Waits for the events of `pending` (bounded) and adds their latencies to `phase`.
    async fn collect(
        &mut self,
        phase: &mut Phase,
        mut pending: Vec<Pending>,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        self.wait(&mut pending, phase, deadline, "the phase's events")
            .await
    }

    async fn wait(
        &mut self,
        pending: &mut Vec<Pending>,
        phase: &mut Phase,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> Result<(), String> {
        loop {
            while let Ok((key, at)) = self.arrivals.try_recv() {
                self.seen.insert(key, at);
            }
            pending.retain(|p| match self.seen.remove(&p.key) {
                Some(got) => {
                    let ms = got.saturating_duration_since(p.at).as_secs_f64() * 1e3;
                    let kind = match p.kind {
                        Kind::Raised => {
                            phase.raised.push(ms);
                            "raised"
                        }
                        Kind::Cleared => {
                            phase.cleared.push(ms);
                            "cleared"
                        }
                        Kind::Probe => {
                            phase.probes.push(ms);
                            "probe"
                        }
                    };
                    if let Some(start) = phase.start {
                        let t = p.at.saturating_duration_since(start).as_secs_f64() * 1e3;
                        phase.trace.push((kind, t, ms));
                    }
                    false
                }
                None => true,
            });
            if pending.is_empty() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some((key, at))) => {
                    self.seen.insert(key, at);
                }
                Ok(None) => return Err("the subscriber stopped".into()),
                Err(_) => {
                    let missing: Vec<String> = pending
                        .iter()
                        .take(10)
                        .map(|p| format!("{:?}", p.key))
                        .collect();
                    return Err(format!(
                        "{} of {what} did not arrive within {WAIT_TIMEOUT:?} (first: {}); \
                         unmatched arrivals: {}",
                        pending.len(),
                        missing.join(", "),
                        self.seen.len()
                    ));
                }
            }
        }
    }

    async fn disconnect(self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.conn).await;
    }
}

// ---------------------------------------------------------------------------------------
// The background load: heating-loop telemetry at a fixed rate, QoS 1, on its own thread.

struct Background {
    stop: CancellationToken,
    /// Publishes the broker acknowledged so far.
    acked: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<u64, String>>>,
}

impl Background {
    fn start(port: u16, rate: usize, devices: Arc<Devices>) -> Background {
        let stop = CancellationToken::new();
        let acked = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let acked = acked.clone();
            move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build the tokio runtime: {e}"))?
                    .block_on(background(port, rate, devices, stop, acked))
            }
        });
        Background {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// Stops publishing, waits for the last PUBACKs; returns how many were acknowledged.
    fn stop(mut self) -> Result<u64, String> {
        self.stop.cancel();
        self.thread
            .take()
            .ok_or_else(|| "the background publisher was already stopped".to_owned())?
            .join()
            .map_err(|_| "the background publisher panicked".to_owned())?
    }
}

impl Drop for Background {
    /// On an early error: the thread stops publishing and ends on its own (bounded waits).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn background(
    port: u16,
    rate: usize,
    devices: Arc<Devices>,
    stop: CancellationToken,
    acked: Arc<AtomicU64>,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    let (client, mut eventloop) = connect(
        port,
        "bench-alarm-background",
        Some(BACKGROUND_INFLIGHT),
        deadline,
    )
    .await?;
    let done = CancellationToken::new();
    let conn = tokio::spawn({
        let acked = acked.clone();
        let done = done.clone();
        async move {
            loop {
                let ev = tokio::select! {
                    _ = done.cancelled() => return Ok(()),
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("background publisher: {e}")),
                }
            }
        }
    });

    let n = devices.loop_topics.len();
    let mut last_ts = vec![0i64; n];
    let mut sent: u64 = 0;
    let start = tokio::time::Instant::now();
    let max_burst = (rate as f64 * MAX_CATCH_UP.as_secs_f64()).max(1.0) as u64;
    let mut tick = tokio::time::interval(PACE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'paced: loop {
        tokio::select! {
            _ = stop.cancelled() => break 'paced,
            _ = tick.tick() => {}
        }
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut burst = due.saturating_sub(sent).min(max_burst);
        while burst > 0 {
            let d = (sent % n as u64) as usize;
            let ts = now_ms().max(last_ts[d] + 1);
            last_ts[d] = ts;
            let i = sent % 97;
            let supply = 50.0 + i as f64 * 0.1;
            let payload = format!(
                "{{\"ts\": {ts}, \"supply_temp_c\": {supply:.1}, \"return_temp_c\": {:.1}, \
                 \"pressure_mpa\": {:.2}, \"pump_running\": true, \"fault_code\": 0}}",
                supply - 12.0 - (sent % 13) as f64 * 0.1,
                0.40 + (sent % 7) as f64 * 0.01,
            );
            tokio::select! {
                _ = stop.cancelled() => break 'paced,
                r = client.publish(devices.loop_topics[d].clone(), QoS::AtLeastOnce, false, payload) => {
                    r.map_err(|e| format!("background publisher: cannot queue a publish: {e}"))?;
                }
            }
            sent += 1;
            burst -= 1;
        }
    }
    // Every queued publish acknowledged, then disconnect.
    let t = Instant::now();
    while acked.load(Relaxed) < sent && t.elapsed() < WAIT_TIMEOUT {
        if conn.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = client.try_disconnect();
    let conn = tokio::time::timeout(Duration::from_secs(2), conn).await;
    done.cancel();
    if let Ok(Ok(Err(e))) = conn {
        return Err(e);
    }
    let n = acked.load(Relaxed);
    if n < sent {
        return Err(format!(
            "background publisher: {n} of {sent} publishes acknowledged within {WAIT_TIMEOUT:?}"
        ));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------
// MQTT helpers.

// ---------------------------------------------------------------------------------------
// The store and the figures.

/// Background readings in the store: all, or those with a `ts` in `[from_ms, to_ms)`.
fn store_count(port: u16, window: Option<(i64, i64)>) -> Result<u64, String> {
    let Some((from_ms, to_ms)) = window else {
        return common::store_count(port, COUNTED_METRIC);
    };
    // count_over_time(m[d]) at t counts the samples in (t - d, t].
    let query = format!(
        "sum(count_over_time({COUNTED_METRIC}[{}ms]))",
        to_ms - from_ms
    );
    let t = (to_ms - 1) as f64 / 1000.0;
    let path = format!("/api/v1/query?query={}&time={t:.3}", url_encode(&query));
    let (code, body) = http_get(port, &path)?;
    if code != 200 {
        return Err(format!("victoria-metrics {query}: HTTP {code}: {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("victoria-metrics {query}: not JSON ({e}): {body}"))?;
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

/// The nearest-rank percentile of `xs` (NaN if empty).
fn percentile(xs: &[f64], pct: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((pct / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

// ---------------------------------------------------------------------------------------
// The report: a Markdown block between markers on stdout (scripts/bench puts it into
// BENCHMARKS.md with the command and the machine facts).

const REPORT_BEGIN: &str = "<!-- alarm-report:begin -->";
const REPORT_END: &str = "<!-- alarm-report:end -->";

fn report(p: &Params, r: &Run) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = String::new();
    let _ = writeln!(out, "{REPORT_BEGIN}");
    let _ = writeln!(
        out,
        "One mosquitto (`max_inflight_messages {}`, `max_queued_messages 0`, as in the ingest \
         bench), one victoria-metrics and the {} gateway (production defaults, no `[http]`) \
         with {} `{LOOP_CATEGORY}` and {} `{ELEVATOR_CATEGORY}` devices. **Under \
         load**: {} readings/s of `{LOOP_CATEGORY}` telemetry (QoS 1, with `ts`, paced every \
         {} ms) flow through the gateway into the store while a trigger — `{{\"entrapment\": \
         true|false, \"ts\": …}}` for the next elevator, toggling it — goes out every {} ms, \
         and a baseline probe half-way between two triggers; {} `raised` samples. **Idle**: \
         the same without the background load; {} samples.\n",
        p.broker_inflight,
        if p.full {
            "release"
        } else {
            "debug (smoke test)"
        },
        p.loops,
        p.elevators,
        fmt_num(p.rate as f64, 0),
        PACE_TICK.as_millis(),
        p.spacing.as_millis(),
        r.loaded.raised.len(),
        r.idle.raised.len(),
    );
    let _ = writeln!(
        out,
        "| latency, ms | p50 | p90 | p99 | max | samples |\n|---|---:|---:|---:|---:|---:|"
    );
    let row = |out: &mut String, label: &str, xs: &[f64]| {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} |",
            fmt_num(percentile(xs, 50.0), 2),
            fmt_num(percentile(xs, 90.0), 2),
            fmt_num(percentile(xs, 99.0), 2),
            fmt_num(max(xs), 2),
            xs.len()
        );
    };
    let diff = |out: &mut String, label: &str, a: &[f64], b: &[f64], ratio: bool| {
        let f = |pct: f64| {
            let (x, y) = (percentile(a, pct), percentile(b, pct));
            if ratio {
                fmt_num(x / y, 1)
            } else {
                fmt_num(x - y, 2)
            }
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | |",
            f(50.0),
            f(90.0),
            f(99.0),
            if ratio {
                fmt_num(max(a) / max(b), 1)
            } else {
                fmt_num(max(a) - max(b), 2)
            }
        );
    };
    let (l, i) = (&r.loaded, &r.idle);
    row(
        &mut out,
        "**gateway, under load**: trigger published → `raised` event received",
        &l.raised,
    );
    row(
        &mut out,
        "**baseline, under load**: probe published → received (one broker hop)",
        &l.probes,
    );
    diff(
        &mut out,
        "gateway − baseline, under load",
        &l.raised,
        &l.probes,
        false,
    );
    diff(
        &mut out,
        "gateway / baseline, under load",
        &l.raised,
        &l.probes,
        true,
    );
    row(
        &mut out,
        "gateway, under load: `cleared` events (for reference)",
        &l.cleared,
    );
    row(&mut out, "**gateway, idle**", &i.raised);
    row(&mut out, "baseline, idle", &i.probes);
    diff(
        &mut out,
        "gateway − baseline, idle",
        &i.raised,
        &i.probes,
        false,
    );
    diff(
        &mut out,
        "gateway / baseline, idle",
        &i.raised,
        &i.probes,
        true,
    );

    let _ = writeln!(
        out,
        "\n| load and resources | under load | idle |\n|---|---:|---:|"
    );
    let window = secs(l.window);
    let two = |out: &mut String, label: &str, a: String, b: String| {
        let _ = writeln!(out, "| {label} | {a} | {b} |");
    };
    two(
        &mut out,
        "phase window (first trigger → last probe published), s",
        fmt_num(secs(l.window), 1),
        fmt_num(secs(i.window), 1),
    );
    two(
        &mut out,
        "background readings published and acknowledged by the broker, /s",
        fmt_num(l.background_rate(), 0),
        fmt_num(i.background_rate(), 0),
    );
    two(
        &mut out,
        "background readings stored by the gateway (`ts` in the window), /s",
        fmt_num(r.stored_in_window as f64 / window, 0),
        "–".into(),
    );
    for (label, f) in [
        (
            "gateway CPU, % of one core",
            (|x: &Phase| x.gateway_cpu_s) as fn(&Phase) -> f64,
        ),
        ("mosquitto CPU, % of one core", |x| x.broker_cpu_s),
        ("victoria-metrics CPU, % of one core", |x| x.store_cpu_s),
        (
            "bench process (publishers, subscriber), % of one core",
            |x| x.bench_cpu_s,
        ),
    ] {
        two(
            &mut out,
            label,
            fmt_num(l.cpu_pct(f(l)), 0),
            fmt_num(i.cpu_pct(f(i)), 0),
        );
    }
    two(
        &mut out,
        "all four processes, % of the machine",
        fmt_num(
            l.cpu_pct(l.gateway_cpu_s + l.broker_cpu_s + l.store_cpu_s + l.bench_cpu_s)
                / cores as f64,
            0,
        ),
        fmt_num(
            i.cpu_pct(i.gateway_cpu_s + i.broker_cpu_s + i.store_cpu_s + i.bench_cpu_s)
                / cores as f64,
            0,
        ),
    );

    let p99 = percentile(&l.raised, 99.0);
    let _ = writeln!(
        out,
        "\n{}Target: gateway p99 under load below {TARGET_P99_MS} ms — {} ms: {}. Every trigger \
         produced its alarm event and every probe arrived; the store holds {} of {} \
         background readings; gateway peak RSS {} MiB; the gateway {} on SIGTERM.",
        if p.full {
            ""
        } else {
            "Smoke test (a debug build, a light load; no timing is asserted). "
        },
        fmt_num(p99, 2),
        if p99 < TARGET_P99_MS {
            "met"
        } else {
            "not met"
        },
        r.stored,
        r.background_acked,
        fmt_num(r.peak_rss_kib as f64 / 1024.0, 1),
        if r.clean_stop {
            "stopped cleanly"
        } else {
            "did not stop cleanly"
        },
    );
    let _ = writeln!(
        out,
        "\nHow to read it: one bench process publishes the triggers and the probes over one \
         MQTT connection (QoS 1) and receives the alarm events and the probes over another \
         (subscribed to `{ALARM_FILTER}` and `{PROBE_FILTER}`, QoS 1); latency is receive − \
         publish on its monotonic clock, from just before the message is handed to rumqttc \
         to when rumqttc's event loop returns it. A trigger's path is two broker hops (to the \
         gateway, and its event back) plus the gateway (MQTT source, core stage with the \
         journal's SQLite commit, MQTT event sink); a probe's is one hop under the same load, \
         so the difference is what the gateway and its second hop add, and the ratio is what \
         to compare between runs. Percentiles are nearest-rank. The background publisher runs \
         on its own thread in the bench process; its rate counts the PUBACKs it got during \
         the window. CPU figures are utime+stime from `/proc/<pid>/stat` over the window; the \
         machine has {cores} cores."
    );
    let _ = write!(out, "{REPORT_END}");
    out
}
