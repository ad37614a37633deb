//! `estate-gateway demo` end to end: the binary with its embedded broker, simulated estate and
//! operators, at `--speed 10`: an alarm is raised, a simulated operator acknowledges one over
//! the API, every category has devices with states, `/api/kpi` answers, and SIGTERM stops it
//! with exit 0.

use std::time::Duration;

use serde_json::Value as Json;

use crate::support::gateway::GatewayProcess;
use crate::support::http::http_get;
use crate::support::{free_port, wait_until};

fn get_json(url: &str) -> Option<Json> {
    let r = http_get(url).ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

#[test]
fn the_demo_raises_alarms_that_operators_acknowledge_and_stops_on_sigterm() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{port}");
    let mut demo = GatewayProcess::start(&[
        "demo",
        "--http",
        &http,
        "--seed",
        "7",
        "--speed",
        "10",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let base = format!("http://{http}");
    assert!(
        demo.wait_for_log("dashboard   http://", Duration::from_secs(60)),
        "no banner:\n{}",
        demo.log()
    );

    // The first fault (an entrapment) comes within 12 s; its alarm right after.
    let raised = wait_until(Duration::from_secs(40), Duration::from_millis(250), || {
        get_json(&format!("{base}/api/alarms"))
            .and_then(|a| a.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false)
    });
    assert!(raised, "no alarm raised:\n{}", demo.log());

    // A simulated operator acknowledges one (targets are 60-180 s simulated: ≤ 36 s real).
    let acked = wait_until(Duration::from_secs(90), Duration::from_millis(500), || {
        get_json(&format!("{base}/api/alarms"))
            .and_then(|a| {
                a.as_array().map(|a| {
                    a.iter().any(|x| {
                        x["acknowledged"]["by"]
                            .as_str()
                            .is_some_and(|by| !by.is_empty())
                    })
                })
            })
            .unwrap_or(false)
    });
    assert!(acked, "no alarm acknowledged:\n{}", demo.log());
    // The operator logs once its acknowledgment was answered (the list may show it first).
    assert!(
        demo.wait_for_log(
            "Demo operator acknowledged an alarm.",
            Duration::from_secs(10)
        ),
        "{}",
        demo.log()
    );

    let devices = get_json(&format!("{base}/api/devices")).expect("/api/devices");
    let devices = devices.as_array().unwrap();
    for cat in [
        "access_gate",
        "elevator",
        "heating_loop",
        "indoor_sensor",
        "fire_equipment",
    ] {
        let of: Vec<&Json> = devices.iter().filter(|d| d["category"] == cat).collect();
        assert!(!of.is_empty(), "no {cat} device");
        assert!(
            of.iter()
                .all(|d| d["state"].as_str().is_some_and(|s| !s.is_empty())),
            "{cat} without a state: {of:?}"
        );
        assert!(
            of.iter().any(|d| d["state"] != "offline"),
            "every {cat} is offline: {of:?}"
        );
    }

    let kpi = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
        get_json(&format!("{base}/api/kpi")).is_some()
    });
    assert!(kpi, "/api/kpi does not answer:\n{}", demo.log());

    let status = demo.terminate();
    assert_eq!(status.code(), Some(0), "exit status:\n{}", demo.log());
    assert!(demo.log().contains("Demo stopped."), "{}", demo.log());
}
