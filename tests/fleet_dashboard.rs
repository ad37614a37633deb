//! The fleet dashboard in a real browser (README "Fleet"): real mosquitto, three real gateways
//! of three sites publishing their summaries and scorecards, a real hub process, and
//! `node tests/browser/fleet.mjs` driving Debian's chromium (headless) through playwright-core.
//! The script checks that the estates table lists the three (fresh) and the configured estate
//! that never reported (数据过期), sorting and the district filter, the link to an estate's
//! own dashboard, that an alarm raised at one estate is on the hub's page within 2 s, and that
//! the league tab shows the red and black lists and the ranks `hub league --format json`
//! prints. Screenshots land in `target/screenshots/fleet-*.png`.
//!
//! Like `tests/dashboard.rs`, a missing chromium, node or `tests/browser/node_modules` fails
//! the test naming `scripts/install-test-deps`; it is never skipped.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::dashboard::{chromium, require_browser_tools};
use crate::fixture::{now_ms, WAIT};
use crate::fleet::{elevator, get_json, start_gateway, this_month};
use crate::support::{
    free_port, repo_path, run_cli, wait_timeout, wait_until, GatewayProcess, Mosquitto,
};

/// How long the whole browser run may take (it takes a few seconds).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// The estate whose elevator the script traps someone in, while the page is open.
const ALARM_SITE: &str = "南苑";

#[test]
fn fleet_dashboard_in_a_real_browser() {
    let browser_dir = repo_path("tests/browser");
    require_browser_tools(&browser_dir);
    let screenshots = repo_path("target/screenshots");

    let dir = tempfile::tempdir().unwrap();
    let mqtt = Mosquitto::start();
    let gws = [
        start_gateway(dir.path(), &mqtt, 1, "东苑"),
        start_gateway(dir.path(), &mqtt, 2, "西苑"),
        start_gateway(dir.path(), &mqtt, 3, ALARM_SITE),
    ];
    // Every elevator runs.
    let t0 = now_ms() - 180_000;
    for g in &gws {
        elevator(&mqtt, g.site, t0, false);
    }

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
client_id = "hub-browser"
reconnect_min = "100ms"

[league]
red_top = 1
black_bottom = 1

[estates."东苑"]
name = "东苑小区"
district = "朝阳区"
company = "甲物业"
dashboard_url = "http://10.0.0.1:8080/"

[estates."西苑"]
district = "海淀区"
company = "乙物业"

[estates."{ALARM_SITE}"]
district = "朝阳区"
company = "乙物业"

[estates."北苑"]
district = "海淀区"
company = "甲物业"
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
    let listed = wait_until(WAIT, Duration::from_millis(100), || {
        get_json(&format!("{hub_api}/api/estates")).is_some_and(|e| {
            e["estates"]
                .as_array()
                .is_some_and(|r| r.iter().filter(|x| x["summary_ts"].is_i64()).count() == 3)
        })
    });
    assert!(listed, "the hub does not list three estates\n{}", hub.log());
    // 西苑 traps someone a minute ago (alarm events are not retained: raised once the hub
    // listens): a critical alarm before the page opens, and a scorecard that differs.
    elevator(&mqtt, "西苑", t0 + 120_000, true);
    let relayed = wait_until(WAIT, Duration::from_millis(50), || {
        get_json(&format!("{hub_api}/api/alarms?site=西苑"))
            .is_some_and(|a| a["count"].as_u64() == Some(1))
    });
    assert!(relayed, "西苑's alarm did not reach the hub\n{}", hub.log());

    // Each gateway's scorecard of this month, published; the hub's league of it.
    let period = this_month();
    for g in &gws {
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
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            out.status.success() && v["score"]["total"].is_number()
        });
        assert!(ok, "no scorecard for {}:\n{}", g.site, g.process.log());
    }
    let mut league = Value::Null;
    let ranked = wait_until(WAIT, Duration::from_millis(200), || {
        let out = run_cli(&[
            "hub", "league", "-c", hub_cfg_s, "--period", &period, "--format", "json",
        ]);
        league = serde_json::from_slice(&out.stdout).unwrap_or_default();
        league["rows"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|x| x["status"] == "ranked").count() == 3)
    });
    assert!(ranked, "{league}\n{}", hub.log());
    assert_eq!(league["red"].as_array().map(Vec::len), Some(1), "{league}");
    assert_eq!(
        league["black"].as_array().map(Vec::len),
        Some(1),
        "{league}"
    );
    assert_ne!(league["red"], league["black"], "{league}");
    let expected = json!({
        "red": league["red"],
        "black": league["black"],
        "ranks": league["rows"].as_array().unwrap().iter()
            .map(|r| json!({"site": r["site"], "rank": r["rank"], "total": r["total"], "list": r["list"]}))
            .collect::<Vec<_>>(),
    });

    let mut child = Command::new("node")
        .arg("fleet.mjs")
        .current_dir(&browser_dir)
        .env("HUB_URL", &hub_api)
        .env("ESTATE_MQTT_PORT", mqtt.port().to_string())
        .env("ESTATE_SCREENSHOTS", &screenshots)
        .env("ALARM_SITE", ALARM_SITE)
        .env("FRESH_SITES", "东苑,西苑,南苑")
        .env("STALE_SITE", "北苑")
        .env("LEAGUE_PERIOD", &period)
        .env("LEAGUE_EXPECTED", expected.to_string())
        .env("ESTATE_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = wait_timeout(&mut child, BROWSER_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => {}
        other => panic!(
            "the fleet browser test failed ({other:?}, timeout {BROWSER_TIMEOUT:?}):\n--- stdout\n{out}\n--- stderr\n{err}\n--- hub log\n{}",
            crate::support::tail(&hub.log(), 60)
        ),
    }
    eprintln!("{out}");

    // What the page showed is what the hub holds: the alarm the script raised is active there.
    let alarms = get_json(&format!("{hub_api}/api/alarms?site={ALARM_SITE}")).unwrap();
    assert!(
        alarms["alarms"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["severity"] == "critical")),
        "{alarms}"
    );
    for page in ["fleet-estates", "fleet-alarms", "fleet-league"] {
        let png = screenshots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is not a screenshot",
            png.display()
        );
    }
    hub.terminate();
}
