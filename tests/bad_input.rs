//! Every kind of bad input on the MQTT path, against the real broker and store: the gateway
//! keeps running, counts each reason in the `gateway` measurement, logs it (rate-limited),
//! lets the valid signals of a partly bad message through, and never writes a bad line.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::fixture::{now_ms, Estate, SITE, WAIT};
use crate::support::{wait_until, FieldVal};

#[test]
fn each_bad_input_is_counted_logged_and_dropped() {
    let mut estate = Estate::start();
    let now = now_ms();
    let hl = |payload: &str| estate.publish("heating_loop", "HL-1", payload);
    hl(r#"{"supply_temp_c": 5"#); // invalid_json
    estate.mqtt.publish(
        &Estate::telemetry_topic("heating_loop", "HL-1"),
        &[0xff, 0x00, 0xfe],
        1,
    ); // invalid_json
    hl("[1, 2]"); // not_object
    hl(r#"{"supply_temp_c": "hot", "return_temp_c": 40.5}"#); // wrong_type, rest kept
    hl(r#"{"supply_temp_c": NaN, "pressure_mpa": Infinity, "return_temp_c": 39.5}"#); // 2× non_finite
    hl(r#"{"colour": "red", "return_temp_c": 38.5}"#); // unknown_signal
    estate.publish("heating_loop", "HL-404", r#"{"supply_temp_c": 50}"#); // unknown_device
    estate.publish("elevator", "HL-1", r#"{"floor": 1}"#); // category_mismatch
    let big = format!(r#"{{"supply_temp_c": 1, "pad": "{}"}}"#, "x".repeat(70_000));
    hl(&big); // oversize
    hl(&format!(
        r#"{{"ts": {}, "supply_temp_c": 1}}"#,
        now + 3_600_000
    )); // future_timestamp
    hl(&format!(r#"{{"ts": {}, "supply_temp_c": 1}}"#, now / 1000)); // stale_timestamp (seconds)
    hl(r#"{"ts": "yesterday", "supply_temp_c": 1}"#); // bad_timestamp
    estate.mqtt.publish(
        &format!("estate/{SITE}/heating_loop/HL-1/status"),
        b"maybe",
        1,
    ); // bad_status
    hl(r#"{"supply_temp_c": 56.5, "return_temp_c": 42.0}"#); // valid

    let expected: &[(&str, u64)] = &[
        ("rejected_invalid_json", 2),
        ("rejected_not_object", 1),
        ("rejected_wrong_type", 1),
        ("rejected_non_finite", 2),
        ("rejected_unknown_signal", 1),
        ("rejected_unknown_device", 1),
        ("rejected_category_mismatch", 1),
        ("rejected_oversize", 1),
        ("rejected_future_timestamp", 1),
        ("rejected_stale_timestamp", 1),
        ("rejected_bad_timestamp", 1),
        ("rejected_bad_status", 1),
        ("dropped", 14),
        ("messages", 14),
        ("readings", 4),
    ];
    let mut point = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        point = estate.last_gateway_point();
        point.as_ref().is_some_and(|p| {
            expected
                .iter()
                .all(|(k, v)| p.fields.get(*k) == Some(&FieldVal::U64(*v)))
        })
    });
    let p = point.expect("a gateway point");
    for (k, v) in expected {
        assert_eq!(p.field(k), &FieldVal::U64(*v), "{k} in {p:#?}");
    }

    // Only the valid signals reached the store, each as a well-formed line.
    let lines = estate.wait_for_telemetry(4);
    let mut returns: Vec<f64> = lines
        .iter()
        .map(|l| l.field("return_temp_c").as_f64())
        .collect();
    returns.sort_by(f64::total_cmp);
    assert_eq!(returns, vec![38.5, 39.5, 40.5, 42.0]);
    assert_eq!(lines.len(), 4);
    let with_supply: Vec<_> = lines
        .iter()
        .filter(|l| l.fields.contains_key("supply_temp_c"))
        .collect();
    assert_eq!(with_supply.len(), 1);
    assert_eq!(with_supply[0].field("supply_temp_c"), &FieldVal::F64(56.5));

    // The store holds no series but the expected ones: nothing corrupt, no stray device.
    let names: BTreeSet<String> = estate
        .vm
        .export(r#"{__name__=~"telemetry_.*"}"#)
        .iter()
        .map(|s| format!("{}/{}", s.name(), s.label("device").unwrap_or("?")))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "telemetry_return_temp_c/HL-1".to_owned(),
            "telemetry_supply_temp_c/HL-1".to_owned()
        ])
    );

    // Each reason was logged with its topic, and the gateway is still running.
    let log = estate.gateway.log();
    for reason in [
        "invalid_json",
        "not_object",
        "wrong_type",
        "non_finite",
        "unknown_signal",
        "unknown_device",
        "category_mismatch",
        "oversize",
        "future_timestamp",
        "stale_timestamp",
        "bad_timestamp",
        "bad_status",
    ] {
        assert!(
            log.contains(&format!("reason=\"{reason}\"")),
            "no log line for {reason}:\n{log}"
        );
    }
    assert!(log.contains("looks like seconds"));
    assert!(log.contains("estate/华府/heating_loop/HL-404/telemetry"));
    assert!(
        estate.gateway.try_wait().is_none(),
        "gateway exited:\n{log}"
    );
}

#[test]
fn bad_input_logging_is_rate_limited_but_counting_is_not() {
    let estate = Estate::start_with("", "[ingest]\nlog_burst = 3\nlog_window = \"1h\"");
    let bad: Vec<String> = (0..40).map(|i| format!("{{\"broken\": {i}")).collect();
    estate
        .mqtt
        .publish_lines(&Estate::telemetry_topic("heating_loop", "HL-1"), &bad, 1);
    let mut point = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        point = estate.last_gateway_point();
        point
            .as_ref()
            .is_some_and(|p| p.fields.get("rejected_invalid_json") == Some(&FieldVal::U64(40)))
    });
    assert_eq!(
        point.expect("gateway point").field("rejected_invalid_json"),
        &FieldVal::U64(40)
    );
    assert_eq!(
        estate.gateway.log_count("reason=\"invalid_json\""),
        3,
        "{}",
        estate.gateway.log()
    );
}
