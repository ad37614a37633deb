//! Reload (SIGHUP, `POST /api/reload`): an invalid configuration is refused with its errors and
//! the running one stays; a valid one takes effect in-process — a device added is there,
//! active alarms keep their ids, nothing the broker delivers is lost.

use std::time::Duration;

use crate::fixture::{now_ms, Estate, WAIT};
use crate::support::wait_until;

fn hup(estate: &Estate) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &estate.gateway.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success());
}

fn active_alarm_ids(estate: &Estate) -> Vec<String> {
    let v = estate.api().json("/api/alarms?active=true");
    v.as_array()
        .expect("a list")
        .iter()
        .filter(|a| a["active"] == true)
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn reload_refuses_a_bad_config_and_applies_a_good_one_in_process() {
    let mut estate = Estate::start_with_api("", "");
    let original = std::fs::read_to_string(&estate.config).expect("config");
    let t0 = now_ms() - 60_000;
    estate.publish(
        "elevator",
        "E-1-1",
        &format!(r#"{{"ts": {t0}, "mode": "normal", "fault_code": 0, "entrapment": true}}"#),
    );
    let mut ids = Vec::new();
    assert!(wait_until(WAIT, Duration::from_millis(50), || {
        ids = active_alarm_ids(&estate);
        !ids.is_empty()
    }));

    // A broken file: SIGHUP refuses it and the gateway runs on.
    std::fs::write(&estate.config, format!("{original}\n[bogus]\nkey = 1\n")).expect("write");
    hup(&estate);
    assert!(
        estate.gateway.wait_for_log("Reload refused", WAIT),
        "{}",
        estate.gateway.log()
    );
    assert!(
        estate.gateway.try_wait().is_none(),
        "SIGHUP must not stop the gateway"
    );
    assert_eq!(estate.api().send("GET", "/healthz", None).status, 200);
    // The same over HTTP: 422 with every error; without the token 401.
    let r = estate.api().send("POST", "/api/reload", None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("bogus"), "{}", r.text());
    let r = estate.api().send_with("POST", "/api/reload", None, None);
    assert_eq!(r.status, 401, "{}", r.text());

    // A good file with one more device: applied in-process.
    std::fs::write(
        &estate.config,
        format!(
            "{original}\n[[devices]]\nid = \"T-0999\"\nname = \"新增室温\"\nbuilding = \"9号楼\"\ncategory = \"indoor_sensor\"\n"
        ),
    )
    .expect("write");
    let r = estate.api().send("POST", "/api/reload", None);
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        estate.gateway.wait_for_log("Configuration reloaded.", WAIT),
        "{}",
        estate.gateway.log()
    );
    assert!(
        wait_until(WAIT, Duration::from_millis(50), || {
            estate.gateway.log_count("HTTP API listening.") >= 2
                && estate.api().send("GET", "/api/devices/T-0999", None).status == 200
        }),
        "{}",
        estate.gateway.log()
    );
    assert_eq!(
        active_alarm_ids(&estate),
        ids,
        "active alarms keep their ids"
    );
    // The new device's readings flow to the store.
    let ts = now_ms() - 1_000;
    estate.publish(
        "indoor_sensor",
        "T-0999",
        &format!(r#"{{"ts": {ts}, "indoor_temp_c": 20.5}}"#),
    );
    assert!(wait_until(WAIT, Duration::from_millis(50), || estate
        .telemetry_lines()
        .iter()
        .any(|p| p.tags.get("device").map(String::as_str)
            == Some("T-0999")
            && p.timestamp == Some(ts))));

    // SIGHUP with a valid file reloads too.
    hup(&estate);
    assert!(wait_until(WAIT, Duration::from_millis(50), || estate
        .gateway
        .log_count("Configuration reloaded.")
        >= 2));
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status}");
}
