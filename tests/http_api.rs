//! The HTTP API of the real gateway binary, over real HTTP, in a running estate (broker and
//! store): `/healthz`, `/metrics` counting what the broker delivered, `/api/devices` from the
//! inventory with its filters, and a write refused without the API token.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fixture::{Estate, SITE, WAIT};
use crate::support::http::encode_query_value;
use crate::support::{free_port, http_get, http_post, wait_until};

const TOKEN: &str = "integration-test-token";

/// `name{labels}` → value of every sample line of a Prometheus text exposition.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not `series value`: {l:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {l:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

#[test]
fn health_metrics_devices_and_a_write_without_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let mut estate = Estate::start_with(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\napi_token_file = {:?}\n",
            token_file.to_str().unwrap()
        ),
    );
    assert!(
        estate.gateway.wait_for_log("HTTP API listening.", WAIT),
        "no HTTP server:\n{}",
        estate.gateway.log()
    );
    let base = format!("http://127.0.0.1:{port}");

    let r = http_get(&format!("{base}/healthz")).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    // Two messages the broker delivers: one good, one not JSON.
    estate.publish("heating_loop", "HL-1", r#"{"supply_temp_c": 55.5}"#);
    estate.publish("heating_loop", "HL-1", r#"{"supply_temp_c": 5"#);
    let mut metrics = BTreeMap::new();
    let counted = wait_until(WAIT, Duration::from_millis(50), || {
        let r = http_get(&format!("{base}/metrics")).unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
            "{:?}",
            r.headers
        );
        metrics = samples(&r.text());
        metrics.get("estate_gateway_messages_total") == Some(&2.0)
            && metrics.get("estate_gateway_store_lines_total") >= Some(&1.0)
    });
    assert!(counted, "{metrics:#?}");
    assert_eq!(metrics["estate_gateway_readings_total"], 1.0);
    assert_eq!(
        metrics[r#"estate_gateway_rejected_total{reason="invalid_json"}"#],
        1.0
    );
    assert_eq!(
        metrics[r#"estate_gateway_rejected_total{reason="wrong_type"}"#],
        0.0
    );
    assert!(metrics["process_resident_memory_bytes"] > 0.0);

    let r = http_get(&format!("{base}/api/devices")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let list: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["HL-1", "E-1-1", r#"a,b=c d"e"#, "T-0301"]);
    let e = &list[1];
    assert_eq!(e["name"], "1号楼1单元客梯");
    assert_eq!(e["site"], SITE);
    assert_eq!(e["building"], "1号楼");
    assert_eq!(e["category"], "elevator");
    assert_eq!(e["source"], "mqtt");
    assert!(e["interval_s"].as_f64().unwrap() > 0.0);

    let r = http_get(&format!(
        "{base}/api/devices?site={}&building={}",
        encode_query_value(SITE),
        encode_query_value("1号楼")
    ))
    .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["E-1-1", "T-0301"]);

    // Writes: no token → 401 with a Bearer challenge; a wrong one too; the right one passes
    // the check and reaches the Modbus poller, which refuses: HL-1 reports over MQTT (409).
    let body = br#"{"signal": "pump_running", "value": true, "by": "test"}"#;
    let url = format!("{base}/api/devices/HL-1/write");
    let r = http_post(&url, &[("Content-Type", "application/json")], body).unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let err: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("missing API token"),
        "{err}"
    );
    let r = http_post(&url, &[("Authorization", "Bearer nope")], body).unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let auth = format!("Bearer {TOKEN}");
    let r = http_post(&url, &[("Authorization", auth.as_str())], body).unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("not a Modbus device"), "{}", r.text());
    assert!(
        estate.gateway.log().contains("Device write refused."),
        "{}",
        estate.gateway.log()
    );

    // SIGTERM stops the server with the rest of the gateway.
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status:?}\n{}", estate.gateway.log());
    assert!(http_get(&format!("{base}/healthz")).is_err());
}
