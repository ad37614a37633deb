//! `estate-gateway report` as a user runs it: on an empty journal it prints a scorecard of n/a
//! values and exits 0; bad periods and arguments exit 2 with a message saying what is valid;
//! a missing journal exits 1 naming the file.

use std::path::{Path, PathBuf};

use estate_gateway::journal::Journal;

use crate::support::{repo_path, run_cli};

/// The shipped example config and CSV in a temp dir, with `data_dir` there; `journal`:
/// whether to create an (empty) journal in it as the gateway would.
fn setup(journal: bool, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = std::fs::read_to_string(repo_path("configs/gateway.toml"))
        .unwrap()
        .replace(
            "data_dir = \"/var/lib/estate-gateway\"",
            &format!("data_dir = {:?}", data.display().to_string()),
        );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    std::fs::copy(
        repo_path("configs/devices.csv"),
        dir.path().join("devices.csv"),
    )
    .unwrap();
    if journal {
        drop(Journal::open(&data).unwrap());
    }
    (dir, path)
}

fn report(path: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["report", "-c", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_cli(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn empty_journal_gives_a_scorecard_of_na_values() {
    let (_dir, path) = setup(true, "");
    let (code, out, err) = report(&path, &["--period", "2025-11"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    println!("{out}");
    println!(
        "{}",
        report(&path, &["--period", "2026", "--format", "json"]).1
    );
    for n in [
        "考核评分 Assessment · 站点 site huafu",
        "周期 Period  2025-11  [2025-11-01T00:00:00+08:00, 2025-12-01T00:00:00+08:00)",
        "消防设施设备完好率 fire_intactness",
        "公共机电设备完好率 electromechanical_intactness",
        "响应及时率 response_timeliness",
        "零修急修及时率 repair_timeliness",
        "室温合格率 heating_compliance",
        "到场及时率 arrival_timeliness",
        "100.00%",
        "n/a",
    ] {
        assert!(out.contains(n), "missing {n:?} in:\n{out}");
    }
    assert!(!out.contains("未结束"), "a closed period:\n{out}");

    // JSON: the agreed top-level keys, nulls where there is no data.
    let (code, out, err) = report(
        &path,
        &["--site", "huafu", "--period", "2025Q4", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "arrival",
            "fire_alarms",
            "from",
            "heating",
            "intactness",
            "repair",
            "response",
            "score",
            "site",
            "to",
            "worst_devices"
        ]
    );
    assert_eq!(v["from"], "2025-10-01T00:00:00+08:00");
    assert_eq!(v["to"], "2026-01-01T00:00:00+08:00");
    assert_eq!(v["score"]["total"], serde_json::Value::Null);
    assert_eq!(v["score"]["kpis"].as_array().unwrap().len(), 6);
    assert_eq!(v["score"]["kpis"][2]["target"], 0.99);

    // CSV: a header and a row per KPI.
    let (code, out, err) = report(
        &path,
        &[
            "--from",
            "2025-11-01",
            "--to",
            "2025-11-15T12:00:00+08:00",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[1].starts_with("huafu,2025-11-01/2025-11-15T12:00:00+08:00,2025-11-01T00:00:00+08:00,2025-11-15T12:00:00+08:00,fire_intactness,"), "{out}");
}

#[test]
fn bad_arguments_exit_2_with_what_is_valid() {
    let (_dir, path) = setup(true, "");
    let (code, _, err) = report(&path, &["--period", "2026-13"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`2026-13` is not a period; valid: 2026-11 (a month), 2026Q4 (a quarter), 2026 (a calendar year), heating-2026"), "{err}");

    let (code, _, err) = report(&path, &["--from", "yesterday", "--to", "2026-01-01"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--from `yesterday` is not a time"), "{err}");

    let (code, _, err) = report(&path, &["--period", "2025-11", "--site", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("site `nowhere` has no devices"), "{err}");
    assert!(err.contains("sites with devices: huafu"), "{err}");

    // Neither --period nor --from/--to: clap's usage error, also exit 2.
    let (code, _, err) = report(&path, &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = report(&path, &["--period", "2099"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in the future"), "{err}");
}

#[test]
fn publish_without_a_store_and_a_missing_journal() {
    let (_dir, path) = setup(false, "");
    let (code, _, err) = report(&path, &["--period", "2025-11"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no journal at"), "{err}");
    assert!(err.contains("journal.sqlite"), "{err}");

    // Neither a store nor a broker: nothing to publish to.
    let (_dir, path) = setup(true, "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for section in ["[store]", "[mqtt]"] {
        let start = text.find(section).unwrap();
        let end = start
            + text[start..]
                .find("\n[")
                .map(|i| i + 1)
                .unwrap_or(text.len() - start);
        text = format!("{}{}", &text[..start], &text[end..]);
    }
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = report(&path, &["--period", "2025-11", "--publish"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--publish: neither [store] nor [mqtt] in"),
        "{err}"
    );
}

/// `report` on a journal written by a real run of the gateway (real broker and store) gives
/// exactly the figures of the library call on the same journal and period.
#[test]
fn report_on_a_real_run_equals_the_library_call() {
    use crate::fixture::{now_ms, Api, Estate, SITE, WAIT};
    use estate_gateway::report;

    let mut estate = Estate::start_with_api("", "");
    let t0 = now_ms() - 600_000;
    let el = |ts: i64, trapped: bool| {
        format!(r#"{{"ts": {ts}, "mode": "normal", "fault_code": 0, "entrapment": {trapped}}}"#)
    };
    estate.publish("elevator", "E-1-1", &el(t0, false));
    estate.publish(
        "heating_loop",
        "HL-1",
        &format!(r#"{{"ts": {t0}, "supply_temp_c": 55.0, "return_temp_c": 40.0, "pressure_mpa": 0.4, "pump_running": true, "fault_code": 0}}"#),
    );
    estate.publish(
        "indoor_sensor",
        "T-0301",
        &format!(r#"{{"ts": {t0}, "indoor_temp_c": 17.0}}"#),
    );
    estate.publish(
        "indoor_sensor",
        "T-0301",
        &format!(r#"{{"ts": {}, "indoor_temp_c": 19.5}}"#, t0 + 120_000),
    );
    estate.publish("elevator", "E-1-1", &el(t0 + 60_000, true));
    // Wait for the alarm, acknowledge it, then clear it.
    let api = estate.api();
    let deadline = std::time::Instant::now() + WAIT;
    let id = loop {
        let v = api.json("/api/alarms?active=true");
        if let Some(id) = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a["id"].as_str())
        {
            break id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no alarm: {v}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let r = api.send(
        "POST",
        &Api::alarm_path(&id, "/ack"),
        Some(r#"{"by": "张伟"}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    estate.publish("elevator", "E-1-1", &el(t0 + 300_000, false));
    let deadline = std::time::Instant::now() + WAIT;
    while api
        .json("/api/alarms?active=true")
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the alarm did not clear"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    estate.gateway.terminate();

    // A period that has ended (the next whole second, once it has passed): both sides judge
    // it the same way.
    let to_s = now_ms() / 1000 + 1;
    while now_ms() <= to_s * 1000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let from_s = (t0 - 3_600_000) / 1000;
    let rfc = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_string();
    let (from, to) = (rfc(from_s), rfc(to_s));
    let (code, out, err) = report(
        &estate.config,
        &["--from", &from, "--to", &to, "--format", "json"],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let cli: serde_json::Value = serde_json::from_str(&out).unwrap();

    let cfg = estate_gateway::config::load(&estate.config).unwrap();
    let (season, _) = cfg.heating.for_site(SITE);
    let period = report::Period::between(&from, &to, &season.tz).unwrap();
    let journal = Journal::open_read_only(&estate.journal_path()).unwrap();
    let settings = report::FigureSettings::for_site(&cfg.heating, cfg.assessment.offline, SITE);
    let figures = report::compute(
        &journal,
        SITE,
        period.from_ms,
        period.to_ms,
        now_ms(),
        &settings,
    )
    .unwrap();
    let card = report::scorecard(
        &figures,
        &cfg.assessment.kpis,
        &cfg.assessment.grades,
        cfg.assessment.offline,
    );
    let labels = Default::default();
    let (now, (from_ms, to_ms)) = (now_ms(), (period.from_ms, period.to_ms));
    let sections = report::Sections {
        worst_devices: report::device::worst_devices(
            &journal, SITE, from_ms, to_ms, now, &settings, 10,
        )
        .unwrap(),
        fire_alarms: report::fire::fire_alarms(&journal, SITE, from_ms, to_ms, now).unwrap(),
    };
    let lib = report::format::Report {
        figures: &figures,
        scorecard: &card,
        period: &period,
        tz: &season.tz,
        category_labels: &labels,
        sections: &sections.list(),
    }
    .json();
    assert_eq!(cli, lib);
    // And the figures are real: the elevator was watched, the alarm counted and acknowledged.
    assert!(
        cli["intactness"]["by_category"]["elevator"]
            .as_f64()
            .is_some(),
        "{cli}"
    );
    assert_eq!(cli["response"]["count"], 1, "{cli}");
    assert!(cli["response"]["p50_s"].as_f64().is_some(), "{cli}");
}

/// The periodic figures: with a 1 s `kpi_interval` the gateway serves `/api/kpi` and writes
/// `intactness` points whose counts match the devices' states.
#[test]
fn periodic_kpi_points_and_the_kpi_api() {
    use crate::fixture::{now_ms, Estate, SITE, WAIT};
    use crate::support::{parse_line, FieldVal};

    let estate = Estate::start_with_api("", "[assessment]\nkpi_interval = \"1s\"\n");
    let t = now_ms();
    estate.publish(
        "elevator",
        "E-1-1",
        &format!(r#"{{"ts": {t}, "mode": "normal", "fault_code": 0, "entrapment": false}}"#),
    );
    estate.publish(
        "heating_loop",
        "HL-1",
        &format!(r#"{{"ts": {t}, "supply_temp_c": 55.0, "return_temp_c": 40.0, "pressure_mpa": 0.4, "pump_running": true, "fault_code": 0}}"#),
    );
    // Two of the four devices intact, two never heard from (offline).
    let deadline = std::time::Instant::now() + WAIT;
    let kpi = loop {
        let r = estate.api().send("GET", "/api/kpi", None);
        if r.status == 200 {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            if v["intactness"]["intact"] == 2 {
                break v;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no fresh /api/kpi");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(kpi["site"], SITE);
    assert_eq!(kpi["intactness"]["total"], 4, "{kpi}");
    assert_eq!(kpi["intactness"]["instant"], 0.5, "{kpi}");
    assert_eq!(
        kpi["intactness"]["by_category"]["elevator"]["intact"], 1,
        "{kpi}"
    );
    // The same counts reach the store as an `intactness` point (scope site).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found = estate.proxy.lines().iter().map(|l| parse_line(l)).any(|p| {
            p.measurement == "intactness"
                && p.tags.get("scope").map(String::as_str) == Some("site")
                && p.tags.get("scope_id").map(String::as_str) == Some(SITE)
                && p.fields.get("intact") == Some(&FieldVal::U64(2))
                && p.fields.get("total") == Some(&FieldVal::U64(4))
                && p.fields.get("instant") == Some(&FieldVal::F64(0.5))
        });
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no intactness point: {:#?}",
            estate.proxy.lines()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `report --device`: one device's figures, in the three formats; an unknown device or
/// `--publish` with it is a usage error (exit 2).
#[test]
fn device_figures_in_three_formats() {
    let (_dir, path) = setup(true, "");
    let (code, out, err) = report(
        &path,
        &[
            "--device", "E-1-1", "--period", "2025-11", "--format", "json",
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "alarm_count",
            "alarms",
            "building",
            "category",
            "device",
            "fault_count",
            "from",
            "from_ts",
            "intactness",
            "mttr_s",
            "name",
            "partial",
            "restored",
            "site",
            "time_s",
            "to",
            "to_ts"
        ]
    );
    assert_eq!(v["site"], "huafu");
    assert_eq!(v["device"], "E-1-1");
    assert_eq!(v["category"], "elevator");
    assert_eq!(v["from"], "2025-11-01T00:00:00+08:00");
    assert_eq!(v["to"], "2025-12-01T00:00:00+08:00");
    // An empty journal: the whole month unmonitored, nothing to rate.
    assert_eq!(v["intactness"], serde_json::Value::Null);
    assert_eq!(v["time_s"]["unmonitored"], 30.0 * 86_400.0);
    assert_eq!(v["alarms"], serde_json::json!([]));

    let (code, out, err) = report(&path, &["--device", "E-1-1", "--period", "2025-11"]);
    assert_eq!(code, 0, "{err}");
    for n in [
        "设备指标 Device figures · 站点 site huafu · 设备 device E-1-1",
        "完好率 Intactness",
        "平均修复时长 MTTR",
        "(none 无)",
    ] {
        assert!(out.contains(n), "missing {n:?} in:\n{out}");
    }
    let (code, out, err) = report(
        &path,
        &[
            "--device", "E-1-1", "--period", "2025-11", "--format", "csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.starts_with("site,device,period,from,to,intactness,"),
        "{out}"
    );

    let (code, _, err) = report(&path, &["--device", "NOPE", "--period", "2025-11"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no device `NOPE`"), "{err}");
    let (code, _, err) = report(
        &path,
        &["--device", "E-1-1", "--period", "2025-11", "--publish"],
    );
    assert_eq!(code, 2, "{err}");
}
