//! The MQTT connection under a hostile or careless world, against a real mosquitto: a message
//! far above `mqtt.max_payload_bytes` is acknowledged and counted, never redelivered forever;
//! two gateways sharing a client id are recognised and reported.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::fixture::{now_ms, Estate, SITE, WAIT};
use crate::support::{wait_until, FieldVal};

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
