//! Outages with real services really stopped: the broker restarts, the store goes down,
//! answers 5xx, refuses the token, or refuses a batch. Every accepted reading reaches the store
//! exactly once where the gateway can retry; a refused batch is counted and logged.

use std::time::Duration;

use crate::fixture::{now_ms, Estate, WAIT};
use crate::support::{wait_until, FieldVal};

fn readings(t0: i64, range: std::ops::Range<i64>) -> Vec<String> {
    range
        .map(|i| format!(r#"{{"ts": {}, "indoor_temp_c": 19.5}}"#, t0 + i))
        .collect()
}

fn sorted_ts(estate: &Estate) -> Vec<i64> {
    let mut ts: Vec<i64> = estate
        .telemetry_lines()
        .iter()
        .map(|p| p.timestamp.unwrap())
        .collect();
    ts.sort();
    ts
}

#[test]
fn broker_restart_reconnects_and_resumes() {
    let mut estate = Estate::start();
    let topic = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let t0 = now_ms() - 5_000;
    estate.mqtt.publish_lines(&topic, &readings(t0, 0..10), 1);
    estate.wait_for_telemetry(10);

    estate.mqtt.restart();
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || {
            estate.gateway.log_count("Connected to the MQTT broker.") >= 2
        }),
        "gateway did not reconnect:\n{}",
        estate.gateway.log()
    );
    assert!(estate
        .gateway
        .log()
        .contains("MQTT connection lost or refused; reconnecting."));
    // The restored session keeps our subscription (we also resubscribe): publish more.
    assert!(wait_until(WAIT, Duration::from_millis(20), || estate
        .gateway
        .log_count("Subscribed to telemetry and status topics.")
        >= 2));
    estate.mqtt.publish_lines(&topic, &readings(t0, 10..20), 1);
    estate.wait_for_telemetry(20);
    assert_eq!(
        sorted_ts(&estate),
        (0..20).map(|i| t0 + i).collect::<Vec<_>>()
    );

    let mut point = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        point = estate.last_gateway_point();
        point
            .as_ref()
            .is_some_and(|p| p.fields.get("readings") == Some(&FieldVal::U64(20)))
    });
    let p = point.unwrap();
    assert!(matches!(p.field("mqtt_disconnects"), FieldVal::U64(n) if *n >= 1));
}

#[test]
fn store_down_then_back_loses_nothing() {
    let mut estate = Estate::start();
    let topic = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let t0 = now_ms() - 5_000;
    estate.mqtt.publish_lines(&topic, &readings(t0, 0..5), 1);
    estate.wait_for_telemetry(5);

    // The store really stops; the proxy answers 502 for an unreachable upstream.
    estate.vm.stop();
    estate.mqtt.publish_lines(&topic, &readings(t0, 5..100), 1);
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || estate
            .gateway
            .log()
            .contains("Store write failed; retrying with backoff.")),
        "{}",
        estate.gateway.log()
    );
    estate.vm.start_again();
    assert!(wait_until(WAIT, Duration::from_millis(20), || estate
        .gateway
        .log()
        .contains("Store writes succeed again.")));
    let ts = {
        estate.wait_for_telemetry(100);
        sorted_ts(&estate)
    };
    // Exactly once: VictoriaMetrics keeps duplicates, so a double write would show.
    assert_eq!(ts, (0..100).map(|i| t0 + i).collect::<Vec<_>>());
    let series = estate
        .vm
        .wait_for_samples("telemetry_indoor_temp_c", 100, WAIT);
    assert_eq!(crate::support::total_samples(&series), 100);
}

#[test]
fn store_errors_are_retried_or_dropped_by_status() {
    let mut estate = Estate::start();
    let topic = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let t0 = now_ms() - 5_000;

    // 503 three times, then fine: retried, delivered once.
    estate.proxy.fail_with(503, Some(3));
    estate.mqtt.publish_lines(&topic, &readings(t0, 0..10), 1);
    estate.wait_for_telemetry(10);
    assert_eq!(estate.proxy.rejected_count(), 3);

    // 401 until healed: retried with a message about the token, then delivered.
    estate.proxy.fail_with(401, None);
    estate.mqtt.publish_lines(&topic, &readings(t0, 10..20), 1);
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || estate
            .gateway
            .log()
            .contains("the store refused the token")),
        "{}",
        estate.gateway.log()
    );
    estate.proxy.heal();
    estate.wait_for_telemetry(20);

    // 400: the store refuses the batch itself; it is dropped, counted and logged.
    estate.proxy.fail_with(400, Some(1));
    estate.mqtt.publish_lines(&topic, &readings(t0, 20..25), 1);
    assert!(wait_until(WAIT, Duration::from_millis(20), || estate
        .gateway
        .log()
        .contains("Store refused a batch; dropped it.")));
    // And the next readings flow again.
    estate.mqtt.publish_lines(&topic, &readings(t0, 25..30), 1);
    let mut point = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        point = estate.last_gateway_point();
        point.as_ref().is_some_and(|p| {
            matches!(p.fields.get("store_dropped"), Some(FieldVal::U64(n)) if *n >= 1)
                && estate
                    .telemetry_lines()
                    .iter()
                    .any(|l| l.timestamp == Some(t0 + 29))
        })
    });
    let p = point.unwrap();
    let dropped = match p.field("store_dropped") {
        FieldVal::U64(n) => *n,
        other => panic!("{other:?}"),
    };
    assert!(
        (1..=6).contains(&dropped),
        "the refused batch held the 5 readings (and maybe a gateway line): {dropped}"
    );
    assert!(matches!(p.field("store_errors"), FieldVal::U64(n) if *n >= 4));
    let ts = sorted_ts(&estate);
    assert!(ts.contains(&(t0 + 29)));
    assert_eq!(
        ts.iter().filter(|t| **t < t0 + 20).count(),
        20,
        "every reading before the refused batch exactly once"
    );
    assert!(estate.gateway.try_wait().is_none());
}

#[test]
fn shutdown_with_the_store_down_reports_what_was_not_written() {
    let mut estate = Estate::start();
    let topic = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let t0 = now_ms() - 5_000;
    estate.vm.stop();
    estate.mqtt.publish_lines(&topic, &readings(t0, 0..20), 1);
    assert!(wait_until(WAIT, Duration::from_millis(20), || estate
        .gateway
        .log()
        .contains("Store write failed; retrying with backoff.")));
    // SIGTERM: the writer keeps trying for its grace period, then gives up, says how many
    // lines were lost, and the process still exits cleanly (before the harness's SIGKILL).
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status}:\n{}", estate.gateway.log());
    let log = estate.gateway.log();
    assert!(
        log.contains("Shutting down while the store is unreachable; these lines were not written."),
        "{log}"
    );
    assert!(log.contains("estate-gateway stopped."));
}
