//! A long store outage under a steady load (DESIGN §6 "No data loss"): the release gateway
//! takes `BENCH_OUTAGE_RATE` (5,000) QoS 1 readings/s from 1,000 `heating_loop` devices; the
//! store (victoria-metrics) is stopped for `BENCH_OUTAGE_S` (600 s) and started again on the
//! same port and data, while the load goes on. Measured: the gateway's RSS before the outage,
//! its peak during it (the readings wait in the input log, not in memory), the log's size at
//! the end of the outage, the drain time after the store returns (until the store holds every
//! reading published before it returned) and its ratio to the outage's length, the input
//! log's commit latency (p50/p99 from `/metrics`), and that nothing was lost.
//!
//! `cargo bench --bench outage` (via `scripts/bench outage`) runs it in full; `cargo test
//! --all-targets` runs a smoke version (a few seconds, 500 readings/s).

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const SITE: &str = "bench";
const CATEGORY: &str = "heating_loop";
const COUNTED_METRIC: &str = "telemetry_supply_temp_c";

struct Params {
    full: bool,
    rate: usize,
    devices: usize,
    outage: Duration,
    warmup: Duration,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        if full {
            Params {
                full,
                rate: env_number("BENCH_OUTAGE_RATE", 5_000),
                devices: env_number("BENCH_OUTAGE_DEVICES", 1_000),
                outage: Duration::from_secs(env_number("BENCH_OUTAGE_S", 600) as u64),
                warmup: Duration::from_secs(15),
            }
        } else {
            Params {
                full,
                rate: 500,
                devices: 50,
                outage: Duration::from_secs(3),
                warmup: Duration::from_secs(2),
            }
        }
    }
}

fn main() {
    let p = Params::from_env();
    let bin = gateway_bin(p.full, "outage").unwrap_or_else(|e| panic!("outage bench: {e}"));
    eprintln!(
        "outage bench ({}): {} readings/s from {} devices, store down {:?}",
        if p.full { "full" } else { "smoke test" },
        p.rate,
        p.devices,
        p.outage
    );
    let r = run(&p, &bin).unwrap_or_else(|e| panic!("outage bench: {e}"));
    println!("{}", report(&p, &r));
}

struct Outcome {
    rss_before_kib: u64,
    rss_peak_outage_kib: u64,
    log_bytes_end_of_outage: u64,
    backlog: u64,
    drain: Duration,
    published: u64,
    stored: u64,
    commit_p50_us: f64,
    commit_p99_us: f64,
    gateway_cpu_drain_pct: f64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn write_config(
    dir: &Path,
    p: &Params,
    mqtt: u16,
    store: u16,
    http: u16,
) -> Result<PathBuf, String> {
    let mut csv = String::from("id,name,building,category\n");
    for i in 1..=p.devices {
        let _ = writeln!(csv, "HX-{i:05},回路{i},{}号楼,{CATEGORY}", i / 20 + 1);
    }
    write_file(&dir.join("devices.csv"), &csv)?;
    let toml = format!(
        "devices_csv = \"devices.csv\"\n\n[gateway]\nsite = \"{SITE}\"\nhost = \"bench\"\n\
         data_dir = \"{data}\"\nlog_format = \"text\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\n\
         client_id = \"{GATEWAY_CLIENT_ID}\"\n\n[store]\nurl = \"http://127.0.0.1:{store}\"\n\
         org = \"bench\"\nbucket = \"bench\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [ingest]\nmax_reading_age = \"30d\"\n",
        data = dir.join("gateway-data").display(),
    );
    let path = dir.join("gateway.toml");
    write_file(&path, &toml)?;
    Ok(path)
}

fn run(p: &Params, bin: &Path) -> Result<Outcome, String> {
    let dir = temp_dir("estate-bench-outage-")?;
    let broker = Service::mosquitto(dir.path(), 0)?;
    let vm_port = free_port()?;
    let vm_data = dir.path().join("vm-data");
    let mut store = Some(Service::victoria_metrics_at(dir.path(), &vm_data, vm_port)?);
    let http = free_port()?;
    let config = write_config(dir.path(), p, broker.port, vm_port, http)?;
    let mut gateway = Service::gateway(dir.path(), bin, &config)?;
    gateway.wait_ready(|s| s.log().contains(SUBSCRIBED_LOG) && s.log().contains(HTTP_LOG))?;
    let pid = gateway.pid();

    // The load: a steady rate, paced every 10 ms, until `stop`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (published, stop) = (published.clone(), stop.clone());
        let (port, rate, devices) = (broker.port, p.rate, p.devices);
        rt.spawn(async move {
            let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
            let (client, mut eventloop) =
                connect(port, "outage-load", Some(PUBLISH_INFLIGHT), deadline).await?;
            let poller = tokio::spawn(async move {
                while eventloop.poll().await.is_ok() {}
            });
            let start = Instant::now();
            let ts0 = now_ms() - 86_400_000;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    let d = (n as usize) % devices;
                    let k = n / devices as u64;
                    let payload = format!(
                        "{{\"ts\": {}, \"supply_temp_c\": {:.1}, \"return_temp_c\": 40.0, \"pressure_mpa\": 0.4, \"pump_running\": true, \"fault_code\": 0}}",
                        ts0 + k as i64 * 1000,
                        50.0 + (n % 97) as f64 * 0.1
                    );
                    client
                        .publish(
                            format!("estate/{SITE}/{CATEGORY}/HX-{:05}/telemetry", d + 1),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await
                        .map_err(|e| format!("publish: {e}"))?;
                    n += 1;
                    published.store(n, Ordering::Relaxed);
                }
            }
            // Let the last publishes reach the broker.
            tokio::time::sleep(Duration::from_secs(2)).await;
            poller.abort();
            Ok::<u64, String>(n)
        })
    };

    std::thread::sleep(p.warmup);
    let rss_before_kib = rss_kib(pid);
    // The outage.
    if let Some(mut s) = store.take() {
        s.terminate(STOP_TIMEOUT);
    }
    let down = Instant::now();
    let mut rss_peak_outage_kib = 0;
    while down.elapsed() < p.outage {
        rss_peak_outage_kib = rss_peak_outage_kib.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let log_dir = dir.path().join("gateway-data").join("log");
    let log_bytes_end_of_outage = dir_bytes(&log_dir);
    // Back: the backlog is what was published until now.
    let backlog_target = published.load(Ordering::Relaxed);
    let back = Instant::now();
    store = Some(Service::victoria_metrics_at(dir.path(), &vm_data, vm_port)?);
    let cpu0 = cpu_ticks(&pid.to_string());
    let drain_limit = p.outage * 2 + Duration::from_secs(120);
    let drained = loop {
        let t = Instant::now();
        let count = store_count(vm_port, COUNTED_METRIC)?;
        if count >= backlog_target {
            break t - back;
        }
        if back.elapsed() > drain_limit {
            return Err(format!(
                "the store held {count} of {backlog_target} readings {drain_limit:?} after it came back:\n{}",
                gateway.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let cpu1 = cpu_ticks(&pid.to_string());
    let gateway_cpu_drain_pct =
        100.0 * ticks_s(cpu0, cpu1, clk_tck()) / drained.as_secs_f64().max(1e-3);
    let commit_p50_us =
        gateway_metric(http, "estate_gateway_log_commit_p50_microseconds").unwrap_or(f64::NAN);
    let commit_p99_us =
        gateway_metric(http, "estate_gateway_log_commit_p99_microseconds").unwrap_or(f64::NAN);
    stop.store(true, Ordering::Relaxed);
    let total = rt
        .block_on(publisher)
        .map_err(|e| format!("publisher task: {e}"))??;
    // Everything published reaches the store.
    let t = Instant::now();
    let stored = loop {
        let c = store_count(vm_port, COUNTED_METRIC)?;
        if c >= total || t.elapsed() > Duration::from_secs(60) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    gateway.terminate(STOP_TIMEOUT);
    drop(store);
    Ok(Outcome {
        rss_before_kib,
        rss_peak_outage_kib,
        log_bytes_end_of_outage,
        backlog: backlog_target,
        drain: drained,
        published: total,
        stored,
        commit_p50_us,
        commit_p99_us,
        gateway_cpu_drain_pct,
    })
}

fn report(p: &Params, r: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "<!-- outage-report:begin -->");
    let _ = writeln!(
        s,
        "{} QoS 1 readings/s from {} `{CATEGORY}` devices into the release gateway (production defaults plus `[http]` for `/metrics`); after {:?} the store (victoria-metrics) is stopped for {:?} and started again on the same port and data, while the load goes on. One run.\n",
        p.rate, p.devices, p.warmup, p.outage
    );
    let _ = writeln!(s, "| figure | value |\n|---|---:|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    let _ = writeln!(
        s,
        "| gateway RSS before the outage, MiB | {:.1} |",
        mib(r.rss_before_kib)
    );
    let _ = writeln!(
        s,
        "| gateway peak RSS during the outage, MiB | {:.1} |",
        mib(r.rss_peak_outage_kib)
    );
    let _ = writeln!(
        s,
        "| **peak / before** (target ≤ 1.20) | {:.2} |",
        r.rss_peak_outage_kib as f64 / r.rss_before_kib.max(1) as f64
    );
    let _ = writeln!(
        s,
        "| input log size at the end of the outage, MiB | {:.1} |",
        r.log_bytes_end_of_outage as f64 / 1048576.0
    );
    let _ = writeln!(
        s,
        "| readings published before the store returned | {} |",
        r.backlog
    );
    let _ = writeln!(
        s,
        "| drain time after the store returned, s | {:.1} |",
        r.drain.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| **outage / drain time** (target ≥ 10) | {:.1} |",
        p.outage.as_secs_f64() / r.drain.as_secs_f64().max(1e-3)
    );
    let _ = writeln!(
        s,
        "| gateway CPU while draining, % of one core | {:.0} |",
        r.gateway_cpu_drain_pct
    );
    let _ = writeln!(
        s,
        "| input log commit latency p50 / p99, µs | {:.0} / {:.0} |",
        r.commit_p50_us, r.commit_p99_us
    );
    let _ = writeln!(
        s,
        "| published / in the store at the end | {} / {} |",
        r.published, r.stored
    );
    let _ = writeln!(
        s,
        "\nThe drain time runs from the store's restart until it holds every reading published before the restart (new readings keep arriving meanwhile at the same rate). Commit latency is the gateway's own `log_commit_p50_us`/`log_commit_p99_us` (write + fdatasync of one group commit, over its last 256 commits) read from `/metrics` at the end of the drain."
    );
    let _ = writeln!(s, "<!-- outage-report:end -->");
    s
}
