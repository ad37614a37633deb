//! End to end with the real services: readings published with `mosquitto_pub` land in the
//! store with the exact tags, fields and timestamps of DESIGN §5; names that need escaping
//! stay one point; the `gateway` self-measurement is written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::fixture::{now_ms, Estate, SITE, WAIT};
use crate::support::{wait_until, FieldVal};

#[test]
fn readings_reach_the_store_exactly() {
    let estate = Estate::start();
    let t0 = now_ms() - 60_000;
    let published = Instant::now();
    estate.publish(
        "heating_loop",
        "HL-1",
        &format!(
            r#"{{"ts": {t0}, "supply_temp_c": 55.25, "return_temp_c": 41, "pump_running": true, "fault_code": 0}}"#
        ),
    );
    estate.publish(
        "elevator",
        "E-1-1",
        &format!(
            r#"{{"ts": {}, "mode": "inspection", "floor": -2, "entrapment": false}}"#,
            t0 + 1
        ),
    );
    estate.publish(
        "access_gate",
        r#"a,b=c d"e"#,
        &format!(r#"{{"ts": {}, "door": "forced", "fault_code": 3}}"#, t0 + 2),
    );
    // No ts: stamped with the arrival time.
    let before = now_ms();
    estate.publish("indoor_sensor", "T-0301", r#"{"indoor_temp_c": 18.5}"#);
    let after = now_ms();

    let lines = estate.wait_for_telemetry(4);
    let first_seen = published.elapsed();
    assert_eq!(lines.len(), 4, "{:#?}", estate.proxy.lines());

    let by_device: BTreeMap<String, _> = lines
        .iter()
        .map(|p| (p.tag("device").to_owned(), p.clone()))
        .collect();

    let hl = &by_device["HL-1"];
    assert_eq!(hl.tags["site"], SITE);
    assert_eq!(hl.tags["building"], "换热站");
    assert_eq!(hl.tags["category"], "heating_loop");
    assert_eq!(hl.tags.len(), 4);
    assert_eq!(hl.timestamp, Some(t0));
    assert_eq!(hl.field("supply_temp_c"), &FieldVal::F64(55.25));
    // A float signal sent as a JSON integer is still a float field.
    assert_eq!(hl.field("return_temp_c"), &FieldVal::F64(41.0));
    assert_eq!(hl.field("pump_running"), &FieldVal::Bool(true));
    assert_eq!(hl.field("fault_code"), &FieldVal::I64(0));
    assert_eq!(hl.fields.len(), 4);

    let el = &by_device["E-1-1"];
    assert_eq!(el.field("mode"), &FieldVal::Str("inspection".into()));
    assert_eq!(el.field("floor"), &FieldVal::I64(-2));
    assert_eq!(el.field("entrapment"), &FieldVal::Bool(false));
    assert_eq!(el.timestamp, Some(t0 + 1));

    let t = &by_device["T-0301"];
    let ts = t.timestamp.unwrap();
    assert!(
        ts >= before - 1000 && ts <= after + 1000,
        "arrival time {ts} not within [{before}, {after}]"
    );

    // The request itself: gzip, millisecond precision, org and bucket.
    let req = &estate.proxy.requests()[0];
    assert_eq!(req.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(req.param("precision").as_deref(), Some("ms"));
    assert_eq!(req.param("org").as_deref(), Some("estate"));
    assert_eq!(req.param("bucket").as_deref(), Some("estate"));

    // And in the store itself (VictoriaMetrics: one series per field, named
    // <measurement>_<field>, tags unescaped).
    let hostile = r#"a,b=c d"e"#;
    let series = estate
        .vm
        .wait_for_samples(r#"{__name__=~"telemetry_.*"}"#, 4 + 3 + 2 + 1, WAIT);
    let find = |name: &str, device: &str| {
        series
            .iter()
            .find(|s| s.name() == name && s.label("device") == Some(device))
            .unwrap_or_else(|| panic!("no {name} for {device} in {series:#?}"))
    };
    assert_eq!(
        find("telemetry_supply_temp_c", "HL-1").samples(),
        vec![(t0, 55.25)]
    );
    assert_eq!(
        find("telemetry_floor", "E-1-1").samples(),
        vec![(t0 + 1, -2.0)]
    );
    let gate = find("telemetry_fault_code", hostile);
    assert_eq!(gate.samples(), vec![(t0 + 2, 3.0)]);
    assert_eq!(gate.label("building"), Some("北门 1,=2"));
    assert_eq!(gate.label("site"), Some(SITE));
    // Exactly one point for the hostile name: no second line, no split series.
    let hostile_series: Vec<_> = series
        .iter()
        .filter(|s| s.label("category") == Some("access_gate"))
        .collect();
    assert_eq!(hostile_series.len(), 2, "{hostile_series:#?}");
    assert!(hostile_series
        .iter()
        .all(|s| s.label("device") == Some(hostile)));
    eprintln!("first readings visible at the proxy after {first_seen:?}");
}

#[test]
fn status_messages_and_self_measurement() {
    let estate = Estate::start();
    estate.mqtt.publish(
        &format!("estate/{SITE}/elevator/E-1-1/status"),
        b"offline",
        1,
    );
    let lines = estate.wait_for_telemetry(1);
    assert_eq!(lines[0].field("online"), &FieldVal::Bool(false));
    assert_eq!(lines[0].tag("device"), "E-1-1");

    // The gateway measurement arrives every stats_interval (1 s here) and counts the reading.
    let mut point = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        point = estate.last_gateway_point();
        point
            .as_ref()
            .is_some_and(|p| p.fields.get("readings") == Some(&FieldVal::U64(1)))
    });
    let p = point.expect("a gateway point");
    assert_eq!(p.tag("site"), SITE);
    assert_eq!(p.tag("host"), "test-host");
    assert_eq!(p.field("readings"), &FieldVal::U64(1));
    assert_eq!(p.field("dropped"), &FieldVal::U64(0));
    assert!(matches!(p.field("rss_bytes"), FieldVal::U64(n) if *n > 1_000_000));
}

#[test]
fn sigterm_flushes_and_a_restart_loses_nothing() {
    // Batches would only close after a minute: what the gateway took must still reach the
    // store when it is stopped, and what it had not taken yet stays in its broker session.
    let mut estate = Estate::start_with(
        "batch_lines = 100000\nbatch_interval = \"60s\"\nbatch_quiet = \"0s\"",
        "",
    );
    let t0 = now_ms() - 10_000;
    let payloads: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"ts": {}, "indoor_temp_c": {}.5}}"#,
                t0 + i,
                15 + i % 10
            )
        })
        .collect();
    estate.mqtt.publish_lines(
        &Estate::telemetry_topic("indoor_sensor", "T-0301"),
        &payloads,
        1,
    );
    let status = estate.gateway.terminate();
    assert!(status.success(), "exit {status}:\n{}", estate.gateway.log());
    assert!(estate.gateway.log().contains("estate-gateway stopped."));
    let flushed = estate.telemetry_lines().len();

    // While the gateway is down, more readings arrive at the broker.
    let more: Vec<String> = (200..300)
        .map(|i| format!(r#"{{"ts": {}, "indoor_temp_c": 20.0}}"#, t0 + i))
        .collect();
    estate.mqtt.publish_lines(
        &Estate::telemetry_topic("indoor_sensor", "T-0301"),
        &more,
        1,
    );
    estate.rewrite_config("", "");
    estate.restart_gateway();
    estate.wait_for_telemetry(300);
    // Every reading exactly once.
    assert_eq!(
        estate.telemetry_ts(),
        (0..300).map(|i| t0 + i).collect::<Vec<_>>()
    );
    eprintln!("{flushed} readings flushed at SIGTERM, the rest delivered after the restart");
}

#[test]
fn a_burst_is_in_the_store_once_it_is_over_not_a_batch_interval_later() {
    // Batches close after a minute or 100,000 lines; the default `batch_quiet` (100 ms) sends
    // the end of a burst as soon as nothing new comes.
    let mut estate = Estate::start_with("batch_lines = 100000\nbatch_interval = \"60s\"", "");
    let t0 = now_ms() - 10_000;
    let burst = |from: i64, to: i64| -> Vec<String> {
        (from..to)
            .map(|i| format!(r#"{{"ts": {}, "indoor_temp_c": 20.5}}"#, t0 + i))
            .collect()
    };
    let topic = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let started = Instant::now();
    estate.mqtt.publish_lines(&topic, &burst(0, 50), 1);
    estate.wait_for_telemetry(50);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the burst took {:?}, i.e. waited for batch_interval",
        started.elapsed()
    );

    // With `batch_quiet = "0s"` the same burst waits for its batch to fill or its minute.
    estate.rewrite_config(
        "batch_lines = 100000\nbatch_interval = \"60s\"\nbatch_quiet = \"0s\"",
        "",
    );
    estate.restart_gateway();
    estate.mqtt.publish_lines(&topic, &burst(50, 100), 1);
    let waited = wait_until(Duration::from_secs(2), Duration::from_millis(100), || {
        estate.telemetry_lines().len() > 50
    });
    assert!(
        !waited,
        "with batch_quiet = 0s the burst went before its batch_interval"
    );
    // Stopping sends what it holds; each reading is in the store once.
    let status = estate.gateway.terminate();
    assert!(status.success(), "exit {status}:\n{}", estate.gateway.log());
    estate.rewrite_config("", "");
    estate.restart_gateway();
    estate.wait_for_telemetry(100);
    assert_eq!(
        estate.telemetry_ts(),
        (0..100).map(|i| t0 + i).collect::<Vec<_>>()
    );
}

// The same tests with the gateway speaking MQTT 5 (`mqtt.protocol = "v5"`).

#[test]
fn readings_reach_the_store_exactly_v5() {
    crate::fixture::under_v5(readings_reach_the_store_exactly);
}

#[test]
fn sigterm_flushes_and_a_restart_loses_nothing_v5() {
    crate::fixture::under_v5(sigterm_flushes_and_a_restart_loses_nothing);
}
