//! The fault suite of the input log (DESIGN §6 "No data loss"): real mosquitto, a real store,
//! the gateway binary really killed. Each case publishes a known set of QoS 1 readings and
//! checks that the store holds exactly that set (a point written twice is the same point: the
//! store keeps one value per series and time) and that the engine applied each reading exactly
//! once (the journal's hourly counts add up to the number published).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::fixture::{now_ms, start_gateway, Estate, WAIT};
use crate::support::http_get;
use crate::support::{wait_until, FieldVal, MqttClient};

/// A long wait: catching up after kills and outages.
const CATCH_UP: Duration = Duration::from_secs(60);

/// `n` indoor sensors `S-000`… as TOML.
fn sensors(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[devices]]\nid = \"S-{i:03}\"\nname = \"传感器{i}\"\nbuilding = \"2号楼\"\ncategory = \"indoor_sensor\"\n\n"
            )
        })
        .collect()
}

/// Publishes `rounds` readings of each of `devices` sensors (round `r` of sensor `d` at
/// `t0 + r * 10` ms), at about `per_s` messages a second; returns every (device, ts).
fn publish(
    client: &MqttClient,
    devices: usize,
    rounds: std::ops::Range<usize>,
    t0: i64,
    per_s: u32,
) -> BTreeSet<(String, i64)> {
    let mut sent = BTreeSet::new();
    let started = Instant::now();
    let mut n = 0u32;
    for r in rounds {
        for d in 0..devices {
            let id = format!("S-{d:03}");
            let ts = t0 + r as i64 * 10;
            let payload = format!(r#"{{"ts": {ts}, "indoor_temp_c": {}.5}}"#, 15 + d % 10);
            client.publish(&Estate::telemetry_topic("indoor_sensor", &id), payload, 1);
            sent.insert((id, ts));
            n += 1;
            // Pace the stream: a steady rate, not one burst.
            let due = started + Duration::from_secs_f64(f64::from(n) / f64::from(per_s));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    sent
}

/// The (device, ts) of every telemetry point of the sensors the store accepted, and how many
/// lines that took (more than the set's size: some were written twice).
fn stored(estate: &Estate) -> (BTreeSet<(String, i64)>, usize) {
    let lines: Vec<_> = estate
        .telemetry_lines()
        .into_iter()
        .filter(|p| p.tags.get("device").is_some_and(|d| d.starts_with("S-")))
        .collect();
    let set = lines
        .iter()
        .map(|p| (p.tags["device"].clone(), p.timestamp.expect("ts")))
        .collect();
    (set, lines.len())
}

fn wait_for_set(estate: &Estate, want: &BTreeSet<(String, i64)>) -> BTreeSet<(String, i64)> {
    let mut got = BTreeSet::new();
    wait_until(CATCH_UP, Duration::from_millis(200), || {
        got = stored(estate).0;
        got.len() >= want.len()
    });
    got
}

/// Readings the engine applied to the sensors, from the journal's hourly rows (after a stop,
/// every open hour is written).
fn applied(estate: &Estate) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        estate.journal_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open journal");
    conn.query_row(
        "SELECT COALESCE(SUM(n), 0) FROM hourly WHERE device LIKE 'S-%' AND signal = 'indoor_temp_c'",
        [],
        |r| r.get(0),
    )
    .expect("hourly")
}

fn field(p: &crate::support::ParsedPoint, name: &str) -> u64 {
    match p.fields.get(name) {
        Some(FieldVal::U64(n)) => *n,
        other => panic!("{name}: {other:?}"),
    }
}

fn missing(want: &BTreeSet<(String, i64)>, got: &BTreeSet<(String, i64)>) -> String {
    let m: Vec<_> = want.difference(got).take(10).collect();
    format!("{} missing, e.g. {m:?}", want.difference(got).count())
}

/// Waits until the store holds exactly `want`, stops the gateway cleanly, and checks the engine
/// applied `applied_n` readings (each once).
fn stored_exactly_then_stop(estate: &mut Estate, want: &BTreeSet<(String, i64)>, applied_n: i64) {
    let got = wait_for_set(estate, want);
    assert!(
        got == *want,
        "{}\n{}",
        missing(want, &got),
        estate.gateway.log()
    );
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(
        applied(estate),
        applied_n,
        "each reading applied exactly once"
    );
}

#[test]
fn sigkill_three_times_mid_stream_loses_nothing_and_applies_each_reading_once() {
    let mut estate = Estate::start_with("", &sensors(100));
    let t0 = now_ms() - 600_000;
    let publisher = {
        let port = estate.mqtt.port();
        std::thread::spawn(move || {
            let client = MqttClient::connect(port);
            let sent = publish(&client, 100, 0..60, t0, 1_000);
            // Let the client's last QoS 1 publishes reach the broker before it disconnects.
            std::thread::sleep(Duration::from_millis(500));
            sent
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1_200));
        estate.gateway.kill();
        estate.gateway = start_gateway(&estate.config, &estate.mqtt);
    }
    let want = publisher.join().expect("publisher");
    assert_eq!(want.len(), 6_000);
    stored_exactly_then_stop(&mut estate, &want, 6_000);

    // The log is the tape: replayed into a fresh journal, it gives the same hourly counts.
    let out = tempfile::tempdir().expect("temp dir");
    let log_dir = estate.journal_path().with_file_name("log");
    let r = crate::support::run_cli(&[
        "replay",
        "-c",
        estate.config.to_str().expect("utf-8"),
        "--input",
        log_dir.to_str().expect("utf-8"),
        "--data-dir",
        out.path().to_str().expect("utf-8"),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let conn = rusqlite::Connection::open(out.path().join("journal.sqlite")).expect("replayed");
    let n: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(n), 0) FROM hourly WHERE device LIKE 'S-%' AND signal = 'indoor_temp_c'",
            [],
            |r| r.get(0),
        )
        .expect("hourly");
    assert_eq!(n, 6_000, "the input log holds every reading once");
}

#[test]
fn sigkill_and_sigterm_during_a_store_outage_lose_nothing() {
    let mut estate = Estate::start_with("", &sensors(20));
    let t0 = now_ms() - 600_000;
    let client = MqttClient::connect(estate.mqtt.port());
    estate.vm.stop();
    let mut want = publish(&client, 20, 0..50, t0, 2_000);
    assert!(
        wait_until(CATCH_UP, Duration::from_millis(50), || estate
            .gateway
            .log()
            .contains("Store write failed; retrying with backoff")),
        "{}",
        estate.gateway.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    estate.gateway.kill();
    estate.gateway = start_gateway(&estate.config, &estate.mqtt);
    want.extend(publish(&client, 20, 50..100, t0, 2_000));
    std::thread::sleep(Duration::from_millis(1_000));
    // SIGTERM with the store still down: out quickly and cleanly, nothing waits for the store.
    let asked = Instant::now();
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status}:\n{}", estate.gateway.log());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        asked.elapsed()
    );
    assert!(
        estate
            .gateway
            .log()
            .contains("the readings wait in the input log"),
        "{}",
        estate.gateway.log()
    );
    estate.vm.start_again();
    estate.gateway = start_gateway(&estate.config, &estate.mqtt);
    stored_exactly_then_stop(&mut estate, &want, 2_000);
}

#[test]
fn the_store_back_after_an_outage_is_written_within_two_seconds() {
    let estate = Estate::start_with("", &sensors(5));
    let t0 = now_ms() - 600_000;
    let client = MqttClient::connect(estate.mqtt.port());
    // 503 for 8 s: long enough for the backoff to reach its cap.
    estate.proxy.fail_with(503, None);
    let want = publish(&client, 5, 0..20, t0, 500);
    std::thread::sleep(Duration::from_secs(8));
    assert!(stored(&estate).0.is_empty());
    let healed = Instant::now();
    estate.proxy.heal();
    let got = wait_for_set(&estate, &want);
    let took = healed.elapsed();
    assert!(got == want, "{}", missing(&want, &got));
    assert!(
        took < Duration::from_secs(3),
        "first write {took:?} after the store came back"
    );
}

#[test]
fn a_log_bound_that_overflows_loses_exactly_what_it_counts() {
    let mut estate = Estate::start_with(
        "",
        &format!(
            "[log]\nmax_bytes = \"64KiB\"\nsegment_bytes = \"8KiB\"\n\n{}",
            sensors(10)
        ),
    );
    let t0 = now_ms() - 600_000;
    let client = MqttClient::connect(estate.mqtt.port());
    estate.vm.stop();
    let want = publish(&client, 10, 0..300, t0, 2_000);
    assert!(
        wait_until(CATCH_UP, Duration::from_millis(100), || estate
            .gateway
            .log()
            .contains("The input log reached log.max_bytes")),
        "{}",
        estate.gateway.log()
    );
    estate.vm.start_again();
    // Caught up: the gateway point says nothing is left for the store.
    let mut point = None;
    let caught_up = wait_until(CATCH_UP, Duration::from_millis(200), || {
        point = estate.last_gateway_point();
        point.as_ref().is_some_and(|p| {
            field(p, "store_backlog") == 0 && field(p, "log_records") >= want.len() as u64
        })
    });
    assert!(caught_up, "{:?}\n{}", point, estate.gateway.log());
    let p = point.expect("a gateway point");
    let dropped = field(&p, "log_dropped");
    let (got, _) = stored(&estate);
    assert!(dropped > 0, "the bound was reached");
    assert!(got.is_subset(&want));
    assert_eq!(
        got.len() as u64 + dropped,
        want.len() as u64,
        "stored + counted as dropped = published"
    );
    let status = estate.gateway.terminate();
    assert!(status.success());
    // The engine is not bounded by the store: it applied every reading.
    assert_eq!(applied(&estate), 3_000);
}

#[test]
fn a_store_that_never_answers_delays_nothing_and_loses_nothing() {
    let estate = Estate::start_with("timeout = \"1s\"", &sensors(5));
    let t0 = now_ms() - 600_000;
    let client = MqttClient::connect(estate.mqtt.port());
    // The store takes requests and answers none of them in time.
    estate.proxy.set_delay(Duration::from_secs(3_600));
    let want = publish(&client, 5, 0..40, t0, 500);
    assert!(
        wait_until(CATCH_UP, Duration::from_millis(50), || estate
            .gateway
            .log()
            .contains("Store write failed; retrying with backoff")),
        "{}",
        estate.gateway.log()
    );
    estate.proxy.set_delay(Duration::ZERO);
    let got = wait_for_set(&estate, &want);
    assert!(got == want, "{}", missing(&want, &got));
}

/// A tmpfs of `size` mounted on `dir` for the test's life (unmounted, lazily, on drop).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a small tmpfs for the disk-full case (needs root, as CI runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` up: returns the filler file.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_under_the_log_holds_acknowledgments_and_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let _fs = Tmpfs::mount(&data, "16m");
    let mut estate = Estate::start_with_api_in(
        dir,
        "",
        &format!(
            "[log]\nsegment_bytes = \"64KiB\"\nmax_bytes = \"8MiB\"\n\n{}",
            sensors(5)
        ),
    );
    let t0 = now_ms() - 600_000;
    let client = MqttClient::connect(estate.mqtt.port());
    let mut want = publish(&client, 5, 0..10, t0, 500);
    wait_for_set(&estate, &want);
    let health = |estate: &Estate| {
        http_get(&format!("{}/healthz", estate.api().base)).expect("GET /healthz")
    };
    assert_eq!(health(&estate).status, 200);

    let filler = fill(&data);
    want.extend(publish(&client, 5, 10..50, t0, 500));
    assert!(
        wait_until(CATCH_UP, Duration::from_millis(100), || estate
            .gateway
            .log()
            .contains("Cannot write the input log")),
        "{}",
        estate.gateway.log()
    );
    let h = health(&estate);
    assert_eq!(h.status, 503, "{}", h.text());
    assert!(
        h.text().contains("input log cannot be written"),
        "{}",
        h.text()
    );
    // The readings that could not be logged were neither acknowledged nor written.
    assert!(stored(&estate).0.len() < want.len());

    // Space returns: the gateway goes on by itself, nothing lost.
    std::fs::remove_file(filler).expect("remove filler");
    let got = wait_for_set(&estate, &want);
    assert!(
        got == want,
        "{}\n{}",
        missing(&want, &got),
        estate.gateway.log()
    );
    assert!(wait_until(CATCH_UP, Duration::from_millis(100), || health(
        &estate
    )
    .status
        == 200));
    let status = estate.gateway.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn live_readings_are_written_while_a_backlog_drains() {
    let mut estate = Estate::start_with("batch_lines = 200", &sensors(11));
    let t0 = now_ms() - 600_000;
    let client = MqttClient::connect(estate.mqtt.port());
    estate.vm.stop();
    // 3,000 readings of S-000…S-009 wait in the log.
    let backlog = publish(&client, 10, 0..300, t0, 3_000);
    assert!(wait_until(CATCH_UP, Duration::from_millis(50), || estate
        .gateway
        .log()
        .contains("Store write failed; retrying with backoff")));
    std::thread::sleep(Duration::from_millis(500));
    // The store back, but slow: 15 requests of 200 lines take a few seconds.
    estate.proxy.set_delay(Duration::from_millis(200));
    estate.vm.start_again();
    std::thread::sleep(Duration::from_millis(300));
    let live_ts = now_ms();
    client.publish(
        &Estate::telemetry_topic("indoor_sensor", "S-010"),
        format!(r#"{{"ts": {live_ts}, "indoor_temp_c": 21.5}}"#),
        1,
    );
    let mut want = backlog.clone();
    want.insert(("S-010".to_string(), live_ts));
    let got = wait_for_set(&estate, &want);
    assert!(got == want, "{}", missing(&want, &got));
    // In the order the store took them: the live reading before the backlog's last request.
    let accepted = estate.proxy.accepted();
    let holds = |needle: &str| {
        accepted
            .iter()
            .position(|r| String::from_utf8_lossy(&r.body).contains(needle))
    };
    let live_at = holds("device=S-010").expect("the live reading was written");
    let last_backlog = accepted
        .iter()
        .rposition(|r| {
            let body = String::from_utf8_lossy(&r.body);
            backlog.iter().any(|(d, ts)| {
                body.contains(&format!("device={d}")) && body.contains(&format!(" {ts}\n"))
            })
        })
        .expect("the backlog was written");
    assert!(
        live_at < last_backlog,
        "live reading in request {live_at}, backlog's last in {last_backlog} of {}",
        accepted.len()
    );
    assert!(estate
        .gateway
        .log()
        .contains("The store is behind: writing the backlog oldest first"));
    estate.gateway.terminate();
}

// The same with the gateway speaking MQTT 5: the session survives the kills by its session
// expiry interval (clean start off), and nothing unacknowledged is lost.

#[test]
fn sigkill_three_times_mid_stream_loses_nothing_and_applies_each_reading_once_v5() {
    crate::fixture::under_v5(
        sigkill_three_times_mid_stream_loses_nothing_and_applies_each_reading_once,
    );
}

/// MQTT 5's receive maximum bounds the QoS 1 messages the broker has in flight to the gateway
/// unacknowledged. With a window of 4, the acks (sent after each group commit) must keep it
/// moving: a thousand readings sent fast all arrive, each applied once.
#[test]
fn a_small_receive_maximum_still_delivers_every_reading_v5() {
    crate::fixture::under_v5_with("receive_maximum = 4", || {
        let mut estate = Estate::start_with("", &sensors(20));
        let t0 = now_ms() - 600_000;
        let client = MqttClient::connect(estate.mqtt.port());
        let want = publish(&client, 20, 0..50, t0, 2_000);
        assert_eq!(want.len(), 1_000);
        stored_exactly_then_stop(&mut estate, &want, 1_000);
    });
}

/// MQTT 5 shared subscriptions: two gateways (their own client ids, hosts and data dirs)
/// subscribe to the telemetry as `$share/pair/…`. The broker gives each message to one of
/// them: together they store every reading exactly once, and each took a part.
#[test]
fn a_gateway_pair_on_a_shared_subscription_splits_the_readings_v5() {
    crate::fixture::under_v5_with(
        "telemetry_topic = \"$share/pair/estate/{site}/{category}/{device}/telemetry\"",
        || {
            let estate = Estate::start_with("", &sensors(10));
            let dir = tempfile::tempdir().expect("temp dir");
            let config = dir.path().join("gateway.toml");
            let text = crate::fixture::config_text(
                &estate.mqtt.url(),
                &estate.proxy.url(),
                "",
                &sensors(10),
            );
            std::fs::write(&config, text).expect("write config");
            let mut second = crate::support::GatewayProcess::start_with_env(
                &["run", "-c", config.to_str().expect("utf-8 path")],
                &[
                    ("ESTATE_GW__MQTT__CLIENT_ID", "gw-test-b"),
                    ("ESTATE_GW__GATEWAY__HOST", "test-host-b"),
                ],
            );
            let filter = &format!("$share/pair/estate/{}/+/+/telemetry", crate::fixture::SITE);
            for id in ["gw-test", "gw-test-b"] {
                assert!(
                    estate.mqtt.wait_for_subscription(Some(id), filter, WAIT),
                    "{id} did not subscribe to {filter}:\n{}\n{}",
                    estate.mqtt.log(),
                    second.log()
                );
            }
            let client = MqttClient::connect(estate.mqtt.port());
            let want = publish(&client, 10, 0..50, now_ms() - 600_000, 1_000);
            assert_eq!(want.len(), 500);
            let got = wait_for_set(&estate, &want);
            assert!(got == want, "{}", missing(&want, &got));
            // Each message went to one gateway: no point was written twice.
            assert_eq!(stored(&estate).1, 500);
            // Both took part: their self-measurements count the readings each took.
            let mut taken = (0, 0);
            wait_until(WAIT, Duration::from_millis(200), || {
                for p in estate
                    .proxy
                    .lines()
                    .iter()
                    .map(|l| crate::support::parse_line(l))
                    .filter(|p| p.measurement == "gateway")
                {
                    let n = field(&p, "readings");
                    match p.tag("host") {
                        "test-host" => taken.0 = taken.0.max(n),
                        "test-host-b" => taken.1 = taken.1.max(n),
                        _ => {}
                    }
                }
                taken.0 + taken.1 >= 500
            });
            assert_eq!(taken.0 + taken.1, 500, "{taken:?}");
            assert!(
                taken.0 > 0 && taken.1 > 0,
                "one gateway took all: {taken:?}"
            );
            assert!(second.terminate().success());
        },
    );
}
