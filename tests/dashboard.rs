//! The built-in dashboard in a real browser (issue 6): a running estate (real mosquitto, the
//! store, the gateway binary with its API) with a few readings, then
//! `node tests/browser/dashboard.mjs`, which drives Debian's chromium (headless) through
//! playwright-core and checks the overview against `/api/kpi`, an alarm arriving within 2 s,
//! acknowledging it from the page, the English switch, and writes a screenshot of every page
//! to `target/screenshots/`. See the script for the checks.
//!
//! A missing chromium, node or `tests/browser/node_modules` fails the test with the command
//! that installs them (`scripts/install-test-deps`); it is never skipped.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::fixture::{Estate, API_TOKEN, SITE, WAIT};
use crate::support::{repo_path, wait_timeout, wait_until};

/// The elevator the script raises an entrapment on (of the fixture's inventory).
const ELEVATOR: &str = "E-1-1";

/// How long the whole browser run may take (it takes a few seconds).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("ESTATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Panics, naming the install script, when something the browser test needs is missing.
pub(crate) fn require_browser_tools(browser_dir: &Path) {
    let chromium = chromium();
    assert!(
        chromium.exists(),
        "the dashboard test needs Debian's chromium at {}; run scripts/install-test-deps",
        chromium.display()
    );
    assert!(
        browser_dir
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "the dashboard test needs playwright-core in {}/node_modules; run scripts/install-test-deps (it runs `npm ci` there)",
        browser_dir.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the dashboard test needs node (Debian's nodejs); run scripts/install-test-deps: {node:?}"
    );
}

#[test]
fn dashboard_in_a_real_browser() {
    let browser_dir = repo_path("tests/browser");
    require_browser_tools(&browser_dir);
    let screenshots = repo_path("target/screenshots");

    // KPI figures every second, so the overview the browser sees is fresh. An entrapment
    // escalates at once (to an MQTT topic nobody reads), so the alarm row shows 已升级 1 次.
    let estate = Estate::start_with_api(
        "",
        "[assessment]\nkpi_interval = \"1s\"\n\n[[alarms.classes.entrapment.escalation]]\nafter = \"0s\"\nnotify = \"mqtt:estate/escalations\"\n",
    );
    let api = estate.api();

    // A few readings: an elevator and a gate in order, a heating loop, an indoor sensor.
    estate.publish(
        "elevator",
        ELEVATOR,
        &json!({"mode": "normal", "fault_code": 0, "entrapment": false, "floor": 3}).to_string(),
    );
    estate.publish(
        "heating_loop",
        "HL-1",
        &json!({"supply_temp_c": 55.2, "return_temp_c": 41.6, "pressure_mpa": 0.42,
                "flow_m3h": 31.5, "pump_running": true, "fault_code": 0})
        .to_string(),
    );
    estate.publish(
        "indoor_sensor",
        "T-0301",
        &json!({"indoor_temp_c": 20.4, "humidity_pct": 35}).to_string(),
    );
    let seen = wait_until(WAIT, Duration::from_millis(50), || {
        let list = api.json("/api/devices?values=true");
        let by_id = |id: &str| {
            list.as_array()
                .and_then(|l| l.iter().find(|d| d["id"] == id).cloned())
                .unwrap_or_default()
        };
        by_id(ELEVATOR)["state"] == "intact"
            && by_id("T-0301")["values"]["indoor_temp_c"] == 20.4
            && by_id("HL-1")["values"]["supply_temp_c"] == 55.2
    });
    assert!(
        seen,
        "the readings did not reach the API: {:#}\n{}",
        api.json("/api/devices?values=true"),
        estate.gateway.log()
    );
    let kpi_ready = wait_until(WAIT, Duration::from_millis(100), || {
        api.send("GET", "/api/kpi", None).status == 200
    });
    assert!(
        kpi_ready,
        "/api/kpi never answered\n{}",
        estate.gateway.log()
    );

    let mut child = Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&browser_dir)
        .env("ESTATE_URL", &api.base)
        .env("ESTATE_TOKEN", API_TOKEN)
        .env("ESTATE_SCREENSHOTS", &screenshots)
        .env("ESTATE_MQTT_PORT", estate.mqtt.port().to_string())
        .env("ESTATE_SITE", SITE)
        .env("ESTATE_ELEVATOR", ELEVATOR)
        .env("ESTATE_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    // Read both pipes on threads: a full pipe would stall the script.
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
            "the browser test failed ({other:?}, timeout {BROWSER_TIMEOUT:?}):\n--- stdout\n{out}\n--- stderr\n{err}\n--- gateway log\n{}",
            crate::support::tail(&estate.gateway.log(), 60)
        ),
    }
    eprintln!("{out}");

    // What the page did is in the API: the alarm acknowledged and on site by the operator.
    let alarms = api.json(&format!("/api/alarms?device={ELEVATOR}&active=true"));
    let a = &alarms[0];
    assert_eq!(a["rule"], "entrapment", "{alarms:#}");
    assert_eq!(a["acknowledged"]["by"], "张伟", "{a:#}");
    assert_eq!(a["on_site"]["by"], "张伟", "{a:#}");

    for page in [
        "overview",
        "alarms-raised",
        "alarms",
        "devices",
        "device",
        "heating",
        "assessment",
        "overview-en",
        "alarms-laptop",
    ] {
        let png = screenshots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is not a screenshot",
            png.display()
        );
    }
}
