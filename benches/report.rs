//! Report figures benchmark (issue "Graded figures", DESIGN §4): `report::compute` for one
//! month of a site with 1,000 devices, 100,000 state transitions and 10,000 alarms (plus the
//! indoor sensors' compliance changes and the hourly statistics of sensors and heating loops),
//! read from a real journal file. Prints a Markdown section: the median time of `compute`,
//! the same-run baseline of reading the same rows from SQLite alone (raw rusqlite, no records
//! built) and through the journal's query methods, their ratio, and the peak memory of
//! `compute` (VmHWM, reset before it through /proc/self/clear_refs).
//!
//! `cargo bench --bench report` runs the full size; `cargo test --all-targets` runs a small
//! smoke version. Sizes: REPORT_DEVICES, REPORT_TRANSITIONS, REPORT_ALARMS, REPORT_RUNS.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use estate_gateway::core::kpi::OfflinePolicy;
use estate_gateway::core::season::Season;
use estate_gateway::journal::Journal;
use estate_gateway::model::event::{
    Alarm, AlarmEvent, AlarmEventKind, ComplianceChange, DeviceState, Event, HourlyStats, Reason,
    Stamp, StateChange,
};
use estate_gateway::model::rules::Severity;
use estate_gateway::model::{Device, DeviceIdx, Inventory, Profile, Signal, SignalType};
use estate_gateway::report::{compute, FigureSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{env_number, fmt_num, full_run, median, temp_dir};

const SITE: &str = "jinxiu";
const H: i64 = 3_600_000;
/// Categories in turn; every 10th device is an indoor sensor, every 50th a heating loop.
const CATEGORIES: [&str; 4] = ["elevator", "access_gate", "fire_alarm", "pump"];

struct Params {
    full: bool,
    devices: usize,
    transitions: usize,
    alarms: usize,
    runs: usize,
}

impl Params {
    fn from_env() -> Params {
        let full = full_run();
        let (d, t, a, r) = if full {
            (1_000, 100_000, 10_000, 7)
        } else {
            (30, 1_000, 100, 2)
        };
        Params {
            full,
            devices: env_number("REPORT_DEVICES", d).max(1),
            transitions: env_number("REPORT_TRANSITIONS", t),
            alarms: env_number("REPORT_ALARMS", a),
            runs: env_number("REPORT_RUNS", r).max(1),
        }
    }
}

fn profile(category: &str) -> Arc<Profile> {
    let sig = |name: &str| Signal {
        name: name.into(),
        ty: SignalType::Float,
        unit: None,
        label: None,
    };
    Arc::new(Profile::new(
        category.into(),
        category.into(),
        Duration::from_secs(30),
        vec![
            sig("indoor_temp_c"),
            sig("supply_temp_c"),
            sig("return_temp_c"),
        ],
    ))
}

fn category(i: usize) -> &'static str {
    if i % 50 == 49 {
        "heating_loop"
    } else if i % 10 == 9 {
        "indoor_sensor"
    } else {
        CATEGORIES[i % CATEGORIES.len()]
    }
}

fn inventory(n: usize) -> Inventory {
    let profiles: Vec<(&str, Arc<Profile>)> = CATEGORIES
        .iter()
        .chain(&["indoor_sensor", "heating_loop"])
        .map(|c| (*c, profile(c)))
        .collect();
    Inventory::new(
        (0..n)
            .map(|i| {
                let c = category(i);
                let p = profiles
                    .iter()
                    .find(|(n, _)| *n == c)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(|| profile(c));
                Device {
                    id: format!("D-{i:05}"),
                    name: format!("设备{i}"),
                    site: SITE.into(),
                    building: format!("{}号楼", i % 20 + 1),
                    category: c.into(),
                    rules: p.rules.clone(),
                    profile: p,
                    interval: Duration::from_secs(30),
                    heartbeat_timeout: Duration::from_secs(90),
                    polled: false,
                }
            })
            .collect(),
    )
}

/// Rows written, by table.
#[derive(Default)]
struct Written {
    transitions: usize,
    alarms: usize,
    compliance: usize,
    hourly: usize,
}

/// Writes one month [from, to) of history (and each device's first state the day before).
fn build(j: &mut Journal, inv: &Inventory, p: &Params, from: i64, to: i64) -> Written {
    let mut rng = StdRng::seed_from_u64(42);
    let mut w = Written::default();
    let mut batch: Vec<Event> = Vec::new();
    let flush = |j: &mut Journal, batch: &mut Vec<Event>, force: bool| {
        if force || batch.len() >= 20_000 {
            j.append(inv, batch).expect("append to the journal");
            batch.clear();
        }
    };
    let n = p.devices;
    let len = to - from;
    // States: a first state the day before, then random changes inside the month.
    let per = p.transitions / n;
    for d in 0..n {
        let idx = d as DeviceIdx;
        let count = per + usize::from(d < p.transitions % n);
        let mut times: Vec<i64> = (0..count)
            .map(|_| from + rng.random_range(0..len))
            .collect();
        times.sort_unstable();
        let mut state = DeviceState::Intact;
        batch.push(Event::State(StateChange {
            device: idx,
            ts_ms: from - 24 * H,
            from: None,
            to: state,
            reason: Reason::Start,
        }));
        for ts in times {
            // Mostly intact, sometimes fault, offline or maintenance.
            let next = if state != DeviceState::Intact {
                DeviceState::Intact
            } else {
                DeviceState::ALL[rng.random_range(1..4)]
            };
            batch.push(Event::State(StateChange {
                device: idx,
                ts_ms: ts,
                from: Some(state),
                to: next,
                reason: Reason::Reading,
            }));
            state = next;
            w.transitions += 1;
        }
        flush(j, &mut batch, false);
    }
    // Alarms: random devices and times; acknowledged after 10 s – 10 min (some never),
    // cleared after up to an hour (some never).
    for seq in 1..=p.alarms {
        let device = rng.random_range(0..n) as DeviceIdx;
        let raised = from + rng.random_range(0..len);
        let ack = rng.random_bool(0.9).then(|| Stamp {
            ts_ms: raised + rng.random_range(10_000..600_000),
            by: "值班员".into(),
        });
        let cleared = rng
            .random_bool(0.8)
            .then(|| raised + rng.random_range(1_000..H));
        batch.push(Event::Alarm(AlarmEvent {
            kind: AlarmEventKind::Raised,
            ts_ms: raised,
            by: String::new(),
            alarm: Alarm {
                id: format!("{SITE}-{seq}"),
                device,
                rule: "fault".into(),
                severity: [Severity::Critical, Severity::Major, Severity::Minor][seq % 3],
                class: "urgent".into(),
                message: "故障".into(),
                raised_ms: raised,
                acknowledged: ack,
                on_site: None,
                cleared_ms: cleared,
                ack_target_ms: 180_000,
                on_site_target_ms: Some(1_800_000),
                repair_target_ms: None,
                escalations: Vec::new(),
            },
        }));
        w.alarms += 1;
        flush(j, &mut batch, false);
    }
    // Indoor sensors: ~30 compliance changes a month and hourly means; loops: supply and
    // return every hour.
    let hours = len / H;
    for d in 0..n {
        let idx = d as DeviceIdx;
        match category(d) {
            "indoor_sensor" => {
                let mut times: Vec<i64> =
                    (0..30).map(|_| from + rng.random_range(0..len)).collect();
                times.sort_unstable();
                for (k, ts) in std::iter::once(from - 24 * H).chain(times).enumerate() {
                    batch.push(Event::Compliance(ComplianceChange {
                        device: idx,
                        ts_ms: ts,
                        compliant: Some(k % 2 == 0),
                    }));
                    w.compliance += 1;
                }
                for h in 0..hours {
                    let t = 17.0 + rng.random_range(0.0..4.0);
                    batch.push(Event::Hourly(HourlyStats {
                        device: idx,
                        hour_ms: from + h * H,
                        signals: vec![(0, 12, 12.0 * t, t - 0.5, t + 0.5)],
                    }));
                    w.hourly += 1;
                }
            }
            "heating_loop" => {
                for h in 0..hours {
                    let (s, r) = (55.0 + rng.random_range(0.0..5.0), 40.0);
                    batch.push(Event::Hourly(HourlyStats {
                        device: idx,
                        hour_ms: from + h * H,
                        signals: vec![(1, 60, 60.0 * s, s, s), (2, 60, 60.0 * r, r, r)],
                    }));
                    w.hourly += 2;
                }
            }
            _ => {}
        }
        flush(j, &mut batch, false);
    }
    flush(j, &mut batch, true);
    w
}

/// Reads the same rows as `compute` with raw rusqlite (no records built): the SQLite cost.
fn raw_queries(path: &std::path::Path, from: i64, to: i64) -> usize {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the journal read-only");
    let mut rows_read = 0usize;
    let mut read = |sql: &str, params: &[&dyn rusqlite::ToSql], cols: usize| {
        let mut stmt = c.prepare(sql).expect("prepare");
        let mut rows = stmt.query(params).expect("query");
        while let Some(row) = rows.next().expect("step") {
            for i in 0..cols {
                let _ = row.get_ref(i).expect("column");
            }
            rows_read += 1;
        }
    };
    // Transitions in the period, and each device's last one before it.
    read(
        "SELECT id, site, device, building, category, ts_ms, from_state, to_state, reason \
         FROM transitions WHERE site = ?1 AND ts_ms >= ?2 AND ts_ms < ?3",
        &[&SITE, &from, &to],
        9,
    );
    read(
        "SELECT device, MAX(ts_ms) FROM transitions WHERE site = ?1 AND ts_ms < ?2 \
         GROUP BY device",
        &[&SITE, &from],
        2,
    );
    read(
        "SELECT * FROM alarms WHERE site = ?1 AND raised_ms >= ?2 AND raised_ms < ?3",
        &[&SITE, &from, &to],
        18,
    );
    read(
        "SELECT site, device, building, ts_ms, compliant FROM compliance \
         WHERE site = ?1 AND ts_ms < ?2",
        &[&SITE, &to],
        5,
    );
    read(
        "SELECT * FROM hourly WHERE site = ?1 AND hour_ms >= ?2 AND hour_ms < ?3",
        &[&SITE, &from, &to],
        10,
    );
    rows_read
}

/// The journal's query methods alone (records built, nothing computed).
fn journal_queries(j: &Journal, from: i64, to: i64) -> usize {
    let mut n = j
        .transitions_for_site(SITE, from, to)
        .expect("transitions")
        .len();
    n += j
        .alarms_raised_for_site(SITE, from, to)
        .expect("alarms")
        .len();
    n += j
        .compliance_for_site(SITE, from, to)
        .expect("compliance")
        .len();
    for s in ["indoor_temp_c", "supply_temp_c", "return_temp_c"] {
        n += j.hourly_for_site(SITE, s, from, to).expect("hourly").len();
    }
    n
}

/// A line of /proc/self/status in KiB (`VmHWM`, `VmRSS`).
fn status_kib(key: &str) -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64() * 1000.0, v)
}

fn main() {
    let p = Params::from_env();
    let season = Season::beijing();
    // March 2026 in Asia/Shanghai (744 h); Beijing's season ends on 03-15.
    let tz = season.tz.clone();
    let midnight = |m: i8| {
        jiff::civil::date(2026, m, 1)
            .to_zoned(tz.clone())
            .expect("a local midnight")
            .timestamp()
            .as_millisecond()
    };
    let (from, to) = (midnight(3), midnight(4));
    let now = to + 24 * H;
    eprintln!(
        "report bench ({}): {} devices, {} transitions, {} alarms, {} run(s)",
        if p.full { "full" } else { "smoke test" },
        p.devices,
        p.transitions,
        p.alarms,
        p.runs
    );
    let dir = temp_dir("report-bench").unwrap_or_else(|e| panic!("report bench: {e}"));
    let inv = inventory(p.devices);
    let (build_ms, written) = {
        let mut j = Journal::open(dir.path()).expect("open the journal");
        time(|| build(&mut j, &inv, &p, from, to))
    };
    let file = dir.path().join(estate_gateway::journal::FILE_NAME);
    let file_mb = fs::metadata(&file).map_or(f64::NAN, |m| m.len() as f64 / 1e6);
    let j = Journal::open_read_only(&file).expect("open the journal read-only");
    let settings = FigureSettings {
        offline: OfflinePolicy::NotIntact,
        season,
        min_indoor_c: 18.0,
    };

    // Warm the page cache once, then alternate the three measurements.
    let figures = compute(&j, SITE, from, to, now, &settings).expect("compute");
    assert_eq!(figures.intactness.devices as usize, p.devices);
    assert_eq!(
        (figures.response.count + figures.response.transient + figures.response.pending) as usize,
        written.alarms
    );
    let rss_before = status_kib("VmRSS:");
    // Reset the peak to the current RSS (Linux ≥ 4.0), so VmHWM is the peak during compute.
    let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let (mut c_ms, mut raw_ms, mut q_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut raw_rows = 0;
    let mut peak = None;
    for run in 0..p.runs {
        let (ms, f) = time(|| compute(&j, SITE, from, to, now, &settings).expect("compute"));
        assert_eq!(f, figures, "compute is deterministic");
        drop(f);
        if run == 0 {
            peak = status_kib("VmHWM:");
        }
        c_ms.push(ms);
        let (ms, rows) = time(|| raw_queries(&file, from, to));
        raw_ms.push(ms);
        raw_rows = rows;
        let (ms, _) = time(|| journal_queries(&j, from, to));
        q_ms.push(ms);
    }
    let (c, raw, q) = (median(c_ms.clone()), median(raw_ms), median(q_ms));
    let c_max = c_ms.iter().copied().fold(f64::NAN, f64::max);

    let mut out = String::new();
    let _ = writeln!(out, "## Report figures: one month from the journal\n");
    let _ = writeln!(
        out,
        "`report::compute` for one site over March 2026 (744 h, Asia/Shanghai) from a journal \
         file of {} MB: {} devices, {} state transitions, {} alarms, {} compliance changes, {} \
         hourly rows (written in {} s). Median of {} runs; same-run baseline: the same rows read \
         with raw rusqlite (no records built), and through the journal's query methods.\n",
        fmt_num(file_mb, 1),
        fmt_num(p.devices as f64, 0),
        fmt_num(written.transitions as f64, 0),
        fmt_num(written.alarms as f64, 0),
        fmt_num(written.compliance as f64, 0),
        fmt_num(written.hourly as f64, 0),
        fmt_num(build_ms / 1000.0, 1),
        p.runs
    );
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| `compute` (median / max) | {} ms / {} ms |",
        fmt_num(c, 1),
        fmt_num(c_max, 1)
    );
    let _ = writeln!(
        out,
        "| raw SQLite, same rows ({} rows) | {} ms |",
        fmt_num(raw_rows as f64, 0),
        fmt_num(raw, 1)
    );
    let _ = writeln!(
        out,
        "| journal query methods (records) | {} ms |",
        fmt_num(q, 1)
    );
    let _ = writeln!(
        out,
        "| `compute` / raw SQLite | {}× |",
        fmt_num(c / raw.max(1e-9), 2)
    );
    let _ = writeln!(out, "| target | < 1000 ms |");
    let kib = |v: Option<u64>| v.map_or("n/a".to_owned(), |k| fmt_num(k as f64 / 1024.0, 1));
    let _ = writeln!(
        out,
        "| peak RSS during `compute` (VmHWM{}) | {} MiB (RSS before: {} MiB) |",
        if reset {
            ", reset before"
        } else {
            ", since process start"
        },
        kib(peak),
        kib(rss_before)
    );
    let _ =
        writeln!(
        out,
        "\nFigures: intactness {}, response timeliness {} over {} alarms, heating compliance {} \
         (season part of the month: 03-01 → 03-15).",
        figures.intactness.rate.map_or("n/a".into(), |r| fmt_num(r, 4)),
        figures
            .response
            .timely_rate
            .map_or("n/a".into(), |r| fmt_num(r, 4)),
        figures.response.count,
        figures
            .heating
            .compliance
            .map_or("n/a".into(), |r| fmt_num(r, 4)),
    );
    // Between markers, so `scripts/bench` can put it into BENCHMARKS.md.
    println!("<!-- report-report:begin -->");
    print!("{out}");
    println!("<!-- report-report:end -->");
    if p.full && c >= 1000.0 {
        eprintln!("report bench: compute took {c:.0} ms, over the 1 s target");
    }
}
