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
        estate.telemetry_ts(),
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
            .contains("Store write failed; retrying with backoff")),
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
        estate.telemetry_ts()
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
    // Batches of whatever 200 ms brings (no early partial batches), so that the one injected
    // 400 meets a batch of several lines, as it did before `batch_quiet`.
    let mut estate = Estate::start_with("batch_quiet = \"0s\"", "");
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

    // 400 once: the batch is split and its parts written (a store that refuses a whole batch
    // for one line takes the others); nothing is dead-lettered.
    estate.proxy.fail_with(400, Some(1));
    estate.mqtt.publish_lines(&topic, &readings(t0, 20..25), 1);
    assert!(wait_until(WAIT, Duration::from_millis(20), || estate
        .gateway
        .log()
        .contains("The store refused a batch as malformed")));
    estate.mqtt.publish_lines(&topic, &readings(t0, 25..30), 1);
    estate.wait_for_telemetry(30);
    assert_eq!(
        estate.telemetry_ts(),
        (0..30).map(|i| t0 + i).collect::<Vec<_>>(),
        "every reading exactly once"
    );

    // A line the store always refuses (here: every line of one device): only those lines go
    // to the dead-letter file, counted; the rest of their batches is written.
    estate.proxy.refuse_containing("fault_code=");
    estate.publish(
        "elevator",
        "E-1-1",
        &format!(r#"{{"ts": {}, "fault_code": 0}}"#, t0 + 40),
    );
    estate.mqtt.publish_lines(&topic, &readings(t0, 30..40), 1);
    estate.wait_for_telemetry(40);
    let mut point = None;
    assert!(
        wait_until(WAIT, Duration::from_millis(50), || {
            point = estate.last_gateway_point();
            point.as_ref().is_some_and(|p| {
                matches!(p.fields.get("store_dead_letter"), Some(FieldVal::U64(1)))
            })
        }),
        "{point:?}\n{}",
        estate.gateway.log()
    );
    estate.proxy.heal();
    let dead = std::fs::read_to_string(
        std::fs::read_dir(estate.journal_path().with_file_name("dead-letter"))
            .expect("dead-letter dir")
            .next()
            .expect("a file")
            .expect("entry")
            .path(),
    )
    .expect("read dead letter");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.starts_with("telemetry,") && dead.contains("device=E-1-1"),
        "{dead}"
    );
    assert!(estate
        .gateway
        .log()
        .contains("kept the refused lines in the dead-letter file"));
    assert_eq!(
        estate.telemetry_ts().len(),
        40,
        "the sensor's readings all written once"
    );
    assert!(estate.gateway.try_wait().is_none());
}

#[test]
fn shutdown_with_the_store_down_is_prompt_and_a_restart_writes_everything() {
    let mut estate = Estate::start();
    let topic = Estate::telemetry_topic("indoor_sensor", "T-0301");
    let t0 = now_ms() - 5_000;
    estate.vm.stop();
    estate.mqtt.publish_lines(&topic, &readings(t0, 0..20), 1);
    assert!(wait_until(WAIT, Duration::from_millis(20), || estate
        .gateway
        .log()
        .contains("Store write failed; retrying with backoff")));
    // SIGTERM: nothing waits for the store (the readings are in the input log); the process
    // exits cleanly at once and says what waits.
    let asked = std::time::Instant::now();
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status}:\n{}", estate.gateway.log());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let log = estate.gateway.log();
    assert!(log.contains("the readings wait in the input log"), "{log}");
    assert!(log.contains("estate-gateway stopped."));
    // The store back, the gateway started again: everything arrives.
    estate.vm.start_again();
    estate.gateway = crate::fixture::start_gateway(&estate.config, &estate.mqtt);
    estate.wait_for_telemetry(20);
    assert_eq!(
        estate.telemetry_ts(),
        (0..20).map(|i| t0 + i).collect::<Vec<_>>()
    );
}
