//! The MQTT connection under a hostile or careless world, against a real mosquitto: a message
//! far above `mqtt.max_payload_bytes` is acknowledged and counted, never redelivered forever;
//! two gateways sharing a client id are recognised and reported.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::fixture::{config_text, now_ms, Estate, SITE, WAIT};
use crate::support::{free_port, http_get, wait_until, FieldVal, GatewayProcess};

/// Readings per device on each side of the big message.
const HALF: i64 = 150;

#[test]
fn a_20_mib_message_in_a_steady_stream_is_counted_and_every_other_reading_is_stored() {
    // A broker that takes messages up to 32 MiB, as an estate's broker may well be set up.
    let estate = Estate::start_with_broker("message_size_limit 33554432\n", "", "");
    let client = estate.mqtt_client();
    let base = now_ms() - 3_600_000;
    let hl = Estate::telemetry_topic("heating_loop", "HL-1");
    let t = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let publish = |i: i64| {
        let ts = base + i * 1000;
        client.publish(
            &hl,
            format!(r#"{{"ts": {ts}, "supply_temp_c": {}.5}}"#, 40 + i % 20),
            1,
        );
        client.publish(
            &t,
            format!(r#"{{"ts": {ts}, "indoor_temp_c": {}.25}}"#, 15 + i % 10),
            1,
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    for i in 0..HALF {
        publish(i);
    }
    // One buggy device sends 20 MiB (valid JSON, as a device dumping its whole history would).
    let big = format!(
        r#"{{"floor": 1, "history": "{}"}}"#,
        "x".repeat(20 * 1024 * 1024)
    );
    estate.publish("elevator", "E-1-1", &big);
    for i in HALF..2 * HALF {
        publish(i);
    }

    // Every reading of the other devices reaches the store, each once.
    let want = (2 * 2 * HALF) as usize;
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        lines = estate.telemetry_lines();
        lines.len() >= want
    });
    let got: BTreeSet<(String, i64)> = lines
        .iter()
        .map(|l| (l.tag("device").to_owned(), l.timestamp.unwrap_or(0)))
        .collect();
    let expected: BTreeSet<(String, i64)> = (0..2 * HALF)
        .flat_map(|i| {
            let ts = base + i * 1000;
            [("HL-1".to_owned(), ts), ("T-0301".to_owned(), ts)]
        })
        .collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} of {want} readings missing (first: {:?}); gateway log:\n{}",
        missing.len(),
        missing.first(),
        crate::support::tail(&estate.gateway.log(), 30)
    );
    assert_eq!(lines.len(), want, "no reading stored twice");
    assert!(lines.iter().all(|l| l.tag("device") != "E-1-1"));

    // The big message was counted once and acknowledged: the connection never dropped, so
    // the broker did not redeliver it.
    let mut point = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        point = estate.last_gateway_point();
        point.as_ref().is_some_and(|p| {
            p.fields.get("rejected_oversize") == Some(&FieldVal::U64(1))
                && p.fields.get("readings") == Some(&FieldVal::U64(want as u64))
        })
    });
    let p = point.expect("a gateway point");
    assert_eq!(p.field("rejected_oversize"), &FieldVal::U64(1), "{p:#?}");
    assert_eq!(p.field("mqtt_disconnects"), &FieldVal::U64(0), "{p:#?}");
    assert_eq!(p.field("readings"), &FieldVal::U64(want as u64), "{p:#?}");
    let log = estate.gateway.log();
    assert_eq!(
        estate.gateway.log_count("reason=\"oversize\""),
        1,
        "one rate-limited log line for the big message:\n{log}"
    );
    assert!(
        log.contains(&format!("estate/{SITE}/elevator/E-1-1/telemetry"))
            && log.contains("more than max_payload_bytes = 65536"),
        "{log}"
    );
    assert!(
        !log.contains("MQTT connection lost"),
        "the connection dropped:\n{log}"
    );
}

/// `(status, body)` of `GET /healthz` at `base`, `(0, error)` when it does not answer.
fn healthz(base: &str) -> (u16, String) {
    match http_get(&format!("{base}/healthz")) {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

/// The value of an unlabelled Prometheus sample in `GET /metrics` at `base`.
fn metric(base: &str, name: &str) -> Option<f64> {
    let r = http_get(&format!("{base}/metrics")).ok()?;
    r.text().lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[test]
fn two_gateways_with_one_client_id_are_recognised_as_a_session_takeover() {
    let mut estate = Estate::start_with_api("", "");
    let a = estate.api().base.clone();
    assert_eq!(healthz(&a), (200, "ok".to_owned()));

    // A copy of the configuration (same client id `gw-test`), its own data dir and HTTP port.
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let b = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        config_text(
            &estate.mqtt.url(),
            &estate.proxy.url(),
            "",
            &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
        ),
    )
    .expect("write config");
    let mut second = GatewayProcess::start(&["run", "-c", config.to_str().expect("utf-8 path")]);

    // Both recognise it, name the client id and the fix, and say so on /healthz.
    let needle = "Another MQTT client is using our client id";
    assert!(
        estate.gateway.wait_for_log(needle, Duration::from_secs(30)),
        "first gateway:\n{}",
        estate.gateway.log()
    );
    assert!(
        second.wait_for_log(needle, Duration::from_secs(30)),
        "second gateway:\n{}",
        second.log()
    );
    for (name, log) in [("first", estate.gateway.log()), ("second", second.log())] {
        let line = log.lines().find(|l| l.contains(needle)).unwrap_or_default();
        assert!(
            line.contains("ERROR")
                && line.contains("client_id=gw-test")
                && line.contains("distinct mqtt.client_id"),
            "{name}: {line}"
        );
    }
    for base in [&a, &b] {
        let mut h = (0, String::new());
        wait_until(WAIT, Duration::from_millis(100), || {
            h = healthz(base);
            h.0 == 503
        });
        assert_eq!(h.0, 503, "{base}: {h:?}");
        assert!(
            h.1.contains("MQTT session taken over") && h.1.contains("`gw-test`"),
            "{base}: {h:?}"
        );
        let n = metric(base, "estate_gateway_mqtt_takeovers_total").unwrap_or(0.0);
        assert!(n >= 3.0, "{base}: mqtt_takeovers_total = {n}");
        assert_eq!(
            metric(base, "estate_gateway_mqtt_takeover"),
            Some(1.0),
            "{base}"
        );
    }

    // The copy goes away: the first gateway keeps its session, and once its connection has
    // stayed up a while /healthz is ok again and readings flow.
    second.terminate();
    let mut h = (0, String::new());
    let mut i = 0;
    wait_until(Duration::from_secs(40), Duration::from_millis(500), || {
        // A steady stream, as an estate has: the gateway notices on its next event.
        estate.publish(
            "heating_loop",
            "HL-1",
            &format!(r#"{{"supply_temp_c": {}.5}}"#, 40 + i % 20),
        );
        i += 1;
        h = healthz(&a);
        h == (200, "ok".to_owned())
    });
    assert_eq!(h, (200, "ok".to_owned()), "{}", estate.gateway.log());
    assert!(estate
        .gateway
        .log()
        .contains("The MQTT connection is stable again"));
    assert_eq!(metric(&a, "estate_gateway_mqtt_takeover"), Some(0.0));
    estate.publish("heating_loop", "HL-1", r#"{"supply_temp_c": 77.5}"#);
    // Wait for that reading itself (the stream's last ones may still be on their way).
    assert!(
        wait_until(WAIT, Duration::from_millis(50), || estate
            .telemetry_lines()
            .iter()
            .any(
                |l| l.fields.get("supply_temp_c") == Some(&FieldVal::F64(77.5))
            )),
        "a reading after the takeover reached the store"
    );
}

/// The same with MQTT 5: the broker now says why it closes the connection (DISCONNECT 0x8E,
/// session taken over), and the takeover is recognised and recovered from the same way.
#[test]
fn two_gateways_with_one_client_id_are_recognised_as_a_session_takeover_v5() {
    crate::fixture::under_v5(two_gateways_with_one_client_id_are_recognised_as_a_session_takeover);
}
