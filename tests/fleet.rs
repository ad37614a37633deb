//! The fleet (README "Fleet"): real mosquitto, two real gateways of different sites publishing
//! their summaries, and a real hub process.
//!
//! - each gateway's retained `estate/{site}/kpi` equals its `/api/kpi`;
//! - `report --publish` puts each scorecard on `estate/{site}/assessment/{period}`;
//! - the hub's `/api/estates` lists both (fresh), an alarm raised at one estate is in the
//!   hub's `/api/alarms` within 2 s, and `hub league --format json` ranks as the scorecards say.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fixture::{now_ms, DEVICES, WAIT};
use crate::support::{
    free_port, http_get, run_cli, wait_until, GatewayProcess, Mosquitto, MqttClient,
};

pub(crate) struct Gw {
    pub(crate) site: &'static str,
    pub(crate) config: PathBuf,
    pub(crate) api: String,
    pub(crate) process: GatewayProcess,
}

pub(crate) fn start_gateway(dir: &Path, mqtt: &Mosquitto, i: usize, site: &'static str) -> Gw {
    let port = free_port();
    let config = dir.join(format!("gw{i}.toml"));
    let text = format!(
        r#"
[gateway]
site = "{site}"
host = "h{i}"
data_dir = {data:?}

[mqtt]
url = "{url}"
client_id = "gw-{i}"
reconnect_min = "100ms"
reconnect_max = "1s"

[http]
listen = "127.0.0.1:{port}"

[assessment]
kpi_interval = "1h"
{DEVICES}
"#,
        data = dir.join(format!("data{i}")).display().to_string(),
        url = mqtt.url(),
    );
    std::fs::write(&config, text).unwrap();
    let mut process = GatewayProcess::start(&["run", "-c", config.to_str().unwrap()]);
    assert!(
        process.wait_for_log("Subscribed to telemetry and status topics.", WAIT),
        "gateway {site} did not subscribe:\n{}",
        process.log()
    );
    Gw {
        site,
        config,
        api: format!("http://127.0.0.1:{port}"),
        process,
    }
}

pub(crate) fn get_json(url: &str) -> Option<serde_json::Value> {
    let r = http_get(url).ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

pub(crate) fn elevator(mqtt: &Mosquitto, site: &str, ts: i64, trapped: bool) {
    mqtt.publish(
        &format!("estate/{site}/elevator/E-1-1/telemetry"),
        format!(r#"{{"ts": {ts}, "mode": "normal", "fault_code": 0, "entrapment": {trapped}}}"#)
            .as_bytes(),
        1,
    );
}

/// The month label of now in the sites' time zone (the default, Asia/Shanghai).
pub(crate) fn this_month() -> String {
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    jiff::Timestamp::now()
        .to_zoned(tz)
        .strftime("%Y-%m")
        .to_string()
}

#[test]
fn fleet_summaries_reach_the_hub_which_lists_relays_alarms_and_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let mqtt = Mosquitto::start();
    let watcher = MqttClient::connect(mqtt.port());
    watcher.subscribe("estate/+/kpi", 1);
    watcher.subscribe("estate/+/assessment/+", 1);
    let gws = [
        start_gateway(dir.path(), &mqtt, 1, "东苑"),
        start_gateway(dir.path(), &mqtt, 2, "西苑"),
    ];

    // The live summary: retained, and exactly the gateway's /api/kpi (one computation: the
    // interval is an hour).
    for g in &gws {
        let topic = format!("estate/{}/kpi", g.site);
        let msg = watcher
            .wait_for(WAIT, |m| m.topic == topic)
            .unwrap_or_else(|| panic!("no {topic}:\n{}", g.process.log()));
        let kpi = msg.json();
        assert_eq!(kpi["schema"], 1);
        assert_eq!(kpi["site"], g.site);
        let api = get_json(&format!("{}/api/kpi", g.api)).expect("/api/kpi");
        assert_eq!(kpi, api, "{topic} differs from /api/kpi");
    }
    // A late subscriber gets it retained.
    let late = MqttClient::connect(mqtt.port());
    late.subscribe("estate/东苑/kpi", 1);
    let r = late
        .wait_for(WAIT, |m| m.topic == "estate/东苑/kpi")
        .expect("retained kpi for a late subscriber");
    assert!(r.retain, "the kpi message is not retained");

    // 东苑's elevator runs; 西苑's traps someone (a critical alarm, a fault) — later.
    let t0 = now_ms() - 120_000;
    elevator(&mqtt, "东苑", t0, false);
    elevator(&mqtt, "西苑", t0, false);

    // The hub.
    let hub_port = free_port();
    let hub_cfg = dir.path().join("hub.toml");
    std::fs::write(
        &hub_cfg,
        format!(
            r#"
[hub]
data_file = "hub.sqlite"
listen = "127.0.0.1:{hub_port}"
stale_after = "10m"

[mqtt]
url = "{}"
client_id = "hub-test"
reconnect_min = "100ms"

[league]
red_top = 1
black_bottom = 1

[estates."东苑"]
district = "朝阳区"
company = "甲物业"
dashboard_url = "http://10.0.0.1:8080/"
"#,
            mqtt.url()
        ),
    )
    .unwrap();
    let hub_cfg_s = hub_cfg.to_str().unwrap();
    let mut hub = GatewayProcess::start(&["hub", "-c", hub_cfg_s]);
    assert!(
        hub.wait_for_log("Hub subscribed.", WAIT),
        "hub did not subscribe:\n{}",
        hub.log()
    );
    let hub_api = format!("http://127.0.0.1:{hub_port}");

    // /api/estates lists both, fresh, with their figures and tags.
    let mut estates = serde_json::Value::Null;
    let listed = wait_until(WAIT, Duration::from_millis(100), || {
        estates = get_json(&format!("{hub_api}/api/estates")).unwrap_or_default();
        estates["estates"]
            .as_array()
            .is_some_and(|e| e.iter().filter(|r| r["summary_ts"].is_i64()).count() == 2)
    });
    assert!(listed, "{estates}\n{}", hub.log());
    let rows = estates["estates"].as_array().unwrap();
    let east = rows.iter().find(|r| r["site"] == "东苑").unwrap();
    assert_eq!(east["stale"], false, "{east}");
    assert_eq!(east["district"], "朝阳区");
    assert_eq!(east["dashboard_url"], "http://10.0.0.1:8080/");
    assert!(rows
        .iter()
        .any(|r| r["site"] == "西苑" && r["stale"] == false));

    // An alarm at 西苑 is in the hub's list within 2 s.
    let raised = Instant::now();
    elevator(&mqtt, "西苑", now_ms() - 60_000, true);
    let mut alarms = serde_json::Value::Null;
    let relayed = wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        alarms = get_json(&format!("{hub_api}/api/alarms")).unwrap_or_default();
        alarms["alarms"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["site"] == "西苑" && x["severity"] == "critical")
        })
    });
    assert!(
        relayed,
        "no 西苑 alarm at the hub {:?} after raising: {alarms}\n{}",
        raised.elapsed(),
        hub.log()
    );
    let west_alarms = get_json(&format!("{hub_api}/api/estates")).unwrap();
    let west = west_alarms["estates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["site"] == "西苑")
        .cloned()
        .unwrap();
    assert_eq!(west["active_alarms"]["critical"], 1, "{west}");
    assert!(west["oldest_unacknowledged"]["id"].is_string(), "{west}");

    // Each gateway's scorecard of this month, published; the hub ranks as they say.
    let period = this_month();
    let mut totals = Vec::new();
    for g in &gws {
        let mut total = serde_json::Value::Null;
        let ok = wait_until(WAIT, Duration::from_millis(300), || {
            let out = run_cli(&[
                "report",
                "-c",
                g.config.to_str().unwrap(),
                "--period",
                &period,
                "--format",
                "json",
                "--publish",
            ]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            total = v["score"]["total"].clone();
            out.status.success() && total.is_number()
        });
        assert!(ok, "no total for {}: {total}", g.site);
        totals.push((g.site, total.as_f64().unwrap()));
    }
    let mut expected = totals.clone();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    assert!(
        expected[0].1 > expected[1].1,
        "the two estates should score differently: {totals:?}"
    );
    let mut league = serde_json::Value::Null;
    let ranked = wait_until(WAIT, Duration::from_millis(200), || {
        let out = run_cli(&[
            "hub", "league", "-c", hub_cfg_s, "--period", &period, "--format", "json",
        ]);
        league = serde_json::from_slice(&out.stdout).unwrap_or_default();
        league["rows"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|x| x["status"] == "ranked").count() == 2)
    });
    assert!(ranked, "{league}\n{}", hub.log());
    let rows = league["rows"].as_array().unwrap();
    for (i, (site, total)) in expected.iter().enumerate() {
        assert_eq!(rows[i]["site"], *site, "{league}");
        assert_eq!(rows[i]["rank"], i + 1);
        assert_eq!(rows[i]["total"].as_f64(), Some(*total));
    }
    assert_eq!(league["red"], serde_json::json!([expected[0].0]));
    assert_eq!(league["black"], serde_json::json!([expected[1].0]));
    let over_http = get_json(&format!("{hub_api}/api/league?period={period}")).unwrap();
    assert_eq!(over_http["rows"], league["rows"]);

    // A restart of the hub loses nothing.
    hub.terminate();
    let out = run_cli(&[
        "hub", "league", "-c", hub_cfg_s, "--period", &period, "--format", "csv",
    ]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv
        .lines()
        .nth(1)
        .unwrap()
        .starts_with(&format!("1,{}", expected[0].0)));
}

/// A bad hub configuration fails at start (exit 2) with file, key and what is valid.
#[test]
fn a_bad_hub_config_names_file_key_and_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hub.toml");
    std::fs::write(
        &p,
        "[hub]\nstale_after = \"soon\"\n[league]\nred_topp = 3\n",
    )
    .unwrap();
    let out = run_cli(&["hub", "-c", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("hub.toml: hub.stale_after: `soon` is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("league.red_topp: unknown key; valid in [league]: red_top"),
        "{err}"
    );
}
