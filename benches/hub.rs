//! The hub under a fleet's load (issue 15, README "Fleet"): a synthetic publisher sends
//! `BENCH_HUB_ESTATES` (1,000) estates' live summaries, each estate once per
//! `BENCH_HUB_PERIOD_S` (10 s), evenly spread, plus `BENCH_HUB_ALARM_RATE` (50) alarm events/s
//! (each alarm raised, then cleared by the next event of its id), over a real mosquitto into
//! the release hub (`estate-gateway hub`), which stores each in its SQLite file before it
//! acknowledges it. A client follows the hub's `GET /api/events` (SSE). Measured over
//! `BENCH_HUB_SECONDS` (60 s) after a warm-up of one period: the hub's RSS (now and peak), its
//! CPU, and the time from a message's publish (its `ts`, stamped by the publisher just before
//! it publishes) to its event on the hub's stream (p50/p99/max), and that `/api/estates` lists
//! every estate at the end.
//!
//! `cargo bench --bench hub` (via `scripts/bench hub`) runs it in full; `cargo test
//! --all-targets` runs a smoke version (20 estates, a few seconds).

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

struct Params {
    full: bool,
    estates: usize,
    period: Duration,
    alarm_rate: usize,
    measure: Duration,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        if full {
            Params {
                full,
                estates: env_number("BENCH_HUB_ESTATES", 1_000),
                period: Duration::from_secs(env_number("BENCH_HUB_PERIOD_S", 10) as u64),
                alarm_rate: env_number("BENCH_HUB_ALARM_RATE", 50),
                measure: Duration::from_secs(env_number("BENCH_HUB_SECONDS", 60) as u64),
            }
        } else {
            Params {
                full,
                estates: 20,
                period: Duration::from_secs(1),
                alarm_rate: 10,
                measure: Duration::from_secs(3),
            }
        }
    }
}

fn main() {
    let p = Params::from_env();
    let bin = gateway_bin(p.full, "hub").unwrap_or_else(|e| panic!("hub bench: {e}"));
    eprintln!(
        "hub bench ({}): {} estates every {:?}, {} alarm events/s, measured {:?}",
        if p.full { "full" } else { "smoke test" },
        p.estates,
        p.period,
        p.alarm_rate,
        p.measure
    );
    let r = run(&p, &bin).unwrap_or_else(|e| panic!("hub bench: {e}"));
    println!("{}", report(&p, &r));
    if !p.full {
        // The smoke version checks that the bench measures what it says.
        assert_eq!(r.listed, p.estates, "the hub does not list every estate");
        assert!(
            r.kpi_latencies.len() >= p.estates,
            "too few kpi events: {}",
            r.kpi_latencies.len()
        );
        assert!(
            !r.alarm_latencies.is_empty(),
            "no alarm event on the stream"
        );
        assert_eq!(r.lagged, 0, "the event stream lagged");
    }
}

struct Outcome {
    rss_kib: u64,
    peak_rss_kib: u64,
    cpu_pct: f64,
    kpi_latencies: Vec<f64>,
    alarm_latencies: Vec<f64>,
    published: u64,
    lagged: u64,
    listed: usize,
    estates_ms: f64,
    alarms_ms: f64,
}

/// A summary as a gateway publishes it (the shape of `/api/kpi`, about 1.5 KB).
fn summary(site: &str, ts: i64, i: usize) -> String {
    let rate = 0.95 + (i % 50) as f64 / 1000.0;
    serde_json::json!({
        "schema": 1, "site": site, "ts": ts,
        "intactness": {"instant": rate, "rate_day": rate, "rate_month": rate, "intact": 190, "total": 200,
            "by_category": {
                "elevator": {"instant": rate, "rate_month": rate, "intact": 19, "total": 20},
                "access_gate": {"instant": 1.0, "rate_month": 0.999, "intact": 40, "total": 40},
                "heating_loop": {"instant": 1.0, "rate_month": 0.998, "intact": 10, "total": 10},
                "indoor_sensor": {"instant": 0.97, "rate_month": 0.97, "intact": 97, "total": 100},
                "fire_equipment": {"instant": 1.0, "rate_month": 1.0, "intact": 30, "total": 30}}},
        "response": {"day": {"timely_rate": 0.98, "count": 12, "p50_s": 40.0, "p90_s": 170.0},
                     "month": {"timely_rate": 0.99, "count": 310, "p50_s": 35.0, "p90_s": 150.0}},
        "arrival": {"month": {"timely_rate": 0.97, "count": 40}},
        "repair": {"month": {"timely_rate": 0.95, "count": 38}},
        "heating": {"in_season": true, "compliance_day": 0.985, "compliance_month": 0.979,
                    "coverage_day": 0.99, "coverage_month": 0.99},
    })
    .to_string()
}

fn alarm(site: &str, n: u64, ts: i64) -> String {
    // Event n raises alarm n/2 (even n) or clears it (odd n).
    serde_json::json!({
        "site": site, "id": format!("{site}-A{}", n / 2), "ts": ts, "raised_ts": ts,
        "active": n % 2 == 0, "severity": "major", "category": "elevator", "device": "E-1-1",
        "rule": "fault", "message": "1号楼1单元客梯故障", "acknowledged": null,
    })
    .to_string()
}

fn run(p: &Params, bin: &Path) -> Result<Outcome, String> {
    let dir = temp_dir("hub-bench")?;
    let mqtt = Service::mosquitto(dir.path(), 0)?;
    let port = free_port()?;
    let cfg = dir.path().join("hub.toml");
    write_file(
        &cfg,
        &format!(
            "[hub]\ndata_file = \"hub.sqlite\"\nlisten = \"127.0.0.1:{port}\"\nstale_after = \"10m\"\n\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"hub-bench\"\n",
            mqtt.port
        ),
    )?;
    let mut cmd = std::process::Command::new(bin);
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    cmd.arg("hub").arg("-c").arg(&cfg);
    let mut hub = Service::spawn("hub", cmd, dir.path(), port)?;
    hub.wait_ready(|s| s.log().contains("Hub subscribed.") && tcp_connects(port))?;

    // The SSE follower: publish → event latencies of the measured window.
    let measuring = Arc::new(AtomicBool::new(false));
    let kpi_lat = Arc::new(Mutex::new(Vec::new()));
    let alarm_lat = Arc::new(Mutex::new(Vec::new()));
    let lagged = Arc::new(AtomicU64::new(0));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("SSE: {e}"))?;
    stream
        .write_all(b"GET /api/events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        .map_err(|e| format!("SSE: {e}"))?;
    {
        let (measuring, kpi_lat, alarm_lat, lagged) = (
            measuring.clone(),
            kpi_lat.clone(),
            alarm_lat.clone(),
            lagged.clone(),
        );
        std::thread::spawn(move || {
            let mut kind = String::new();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    let now = now_ms();
                    if kind == "lagged" {
                        lagged.fetch_add(1, Ordering::Relaxed);
                    }
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    let ts = serde_json::from_str::<serde_json::Value>(d)
                        .ok()
                        .and_then(|v| v["ts"].as_i64());
                    let Some(ts) = ts else { continue };
                    let ms = (now - ts) as f64;
                    match kind.as_str() {
                        "kpi" => kpi_lat.lock().map(|mut v| v.push(ms)).unwrap_or(()),
                        "alarm" => alarm_lat.lock().map(|mut v| v.push(ms)).unwrap_or(()),
                        _ => {}
                    }
                }
            }
        });
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let warmup = p.period + Duration::from_secs(1);
    let total = warmup + p.measure;
    let clk = clk_tck();
    let published = Arc::new(AtomicU64::new(0));
    let (mut cpu0, mut t_measure) = (None, Instant::now());
    let (estates, period, alarm_rate) = (p.estates, p.period, p.alarm_rate);
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let (client, mut eventloop) =
            connect(mqtt.port, "hub-bench-pub", Some(PUBLISH_INFLIGHT), deadline).await?;
        let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let sites: Vec<String> = (0..estates).map(|i| format!("estate-{i:04}")).collect();
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let (mut sent_kpi, mut sent_alarm) = (0u64, 0u64);
        let kpi_per_s = estates as f64 / period.as_secs_f64();
        loop {
            tick.tick().await;
            let el = start.elapsed();
            if el >= total {
                break;
            }
            if el >= warmup && !measuring.load(Ordering::Relaxed) {
                cpu0 = hub.cpu_ticks();
                t_measure = Instant::now();
                measuring.store(true, Ordering::Relaxed);
            }
            let due_kpi = (el.as_secs_f64() * kpi_per_s) as u64;
            while sent_kpi < due_kpi {
                let i = (sent_kpi % estates as u64) as usize;
                let site = &sites[i];
                let body = summary(site, now_ms(), i);
                client
                    .publish(
                        format!("estate/{site}/kpi"),
                        rumqttc::QoS::AtLeastOnce,
                        true,
                        body,
                    )
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                sent_kpi += 1;
            }
            let due_alarm = (el.as_secs_f64() * alarm_rate as f64) as u64;
            while sent_alarm < due_alarm {
                let site = &sites[(sent_alarm / 2 % estates as u64) as usize];
                let body = alarm(site, sent_alarm, now_ms());
                client
                    .publish(
                        format!("estate/{site}/alarms/elevator/E-1-1"),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        body,
                    )
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                sent_alarm += 1;
            }
        }
        published.store(sent_kpi + sent_alarm, Ordering::Relaxed);
        // What is in flight arrives (well under a second when the hub keeps up).
        tokio::time::sleep(Duration::from_secs(2)).await;
        measuring.store(false, Ordering::Relaxed);
        poller.abort();
        Ok::<(), String>(())
    })?;
    let cpu_s = ticks_s(cpu0, hub.cpu_ticks(), clk);
    let cpu_pct = 100.0 * cpu_s / secs(t_measure.elapsed());
    let status = std::fs::read_to_string(format!("/proc/{}/status", hub.pid()))
        .map_err(|e| format!("hub status: {e}"))?;
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // What the dashboard fetches on a change (at most once a second): the fleet table.
    let t = Instant::now();
    let (code, body) = http_get(port, "/api/estates")?;
    let estates_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    http_get(port, "/api/alarms")?;
    let alarms_ms = t.elapsed().as_secs_f64() * 1000.0;
    let listed = if code == 200 {
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["estates"].as_array().map(Vec::len))
            .unwrap_or(0)
    } else {
        0
    };
    let out = Outcome {
        rss_kib: field("VmRSS:"),
        peak_rss_kib: field("VmHWM:"),
        cpu_pct,
        kpi_latencies: kpi_lat.lock().map(|v| v.clone()).unwrap_or_default(),
        alarm_latencies: alarm_lat.lock().map(|v| v.clone()).unwrap_or_default(),
        published: published.load(Ordering::Relaxed),
        lagged: lagged.load(Ordering::Relaxed),
        listed,
        estates_ms,
        alarms_ms,
    };
    hub.terminate(STOP_TIMEOUT);
    Ok(out)
}

/// Nearest-rank percentile of the values (NaN when there are none).
fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn report(p: &Params, r: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "<!-- hub-report:begin -->");
    let _ = writeln!(
        s,
        "{} estates' live summaries (each estate once every {:?}, retained, QoS 1, about 1.5 KB) and {} alarm events/s over one mosquitto into the release hub; a client follows `/api/events`. Measured over {:?} after a warm-up of one period; {} messages published in all.\n",
        p.estates, p.period, p.alarm_rate, p.measure, r.published
    );
    let _ = writeln!(s, "| figure | value |\n|---|---:|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    let _ = writeln!(
        s,
        "| **hub RSS at the end, MiB** (target < 200) | {:.1} |",
        mib(r.rss_kib)
    );
    let _ = writeln!(s, "| hub peak RSS, MiB | {:.1} |", mib(r.peak_rss_kib));
    let _ = writeln!(s, "| hub CPU, % of one core | {:.1} |", r.cpu_pct);
    for (what, v) in [
        ("summary", &r.kpi_latencies),
        ("alarm event", &r.alarm_latencies),
    ] {
        let _ = writeln!(
            s,
            "| {what} publish → SSE event, p50 / **p99** (target < 1,000) / max, ms ({} events) | {} / {} / {} |",
            v.len(),
            fmt_num(percentile(v, 0.5), 0),
            fmt_num(percentile(v, 0.99), 0),
            fmt_num(percentile(v, 1.0), 0)
        );
    }
    let _ = writeln!(s, "| `lagged` events on the stream | {} |", r.lagged);
    let _ = writeln!(
        s,
        "| estates listed by `/api/estates` at the end | {} |",
        r.listed
    );
    let _ = writeln!(
        s,
        "| `GET /api/estates` / `GET /api/alarms` under the load (what the dashboard fetches), ms | {:.1} / {:.1} |",
        r.estates_ms, r.alarms_ms
    );
    let _ = writeln!(
        s,
        "\nThe latency runs from the publisher's `ts` (stamped right before the publish) to the SSE event's arrival at the client, which the hub sends after the message is in its SQLite file; both ends read the same wall clock, in milliseconds."
    );
    let _ = writeln!(s, "<!-- hub-report:end -->");
    s
}
