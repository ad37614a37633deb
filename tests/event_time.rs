//! Event time end to end (DESIGN §4): the facts of a generated scenario, published to a real
//! mosquitto as fast as it takes them, through a live gateway that is stopped twice while the
//! broker keeps its session (the second stop with the rest of the scenario queued in the
//! broker), give the same journal transitions, the same alarms and the same figures, to the
//! millisecond, as `replay` of the same facts in order. Also `replay` and `run --record` as a
//! user runs them.

use std::path::Path;
use std::time::Duration;

use estate_gateway::journal::Journal;
use estate_gateway::replay::scenario::{devices_toml, generate, Options, SITE};
use estate_gateway::replay::{Fact, Replayer};
use estate_gateway::report::figures::{compute, FigureSettings};

use crate::fixture::{now_ms, start_gateway};
use crate::support::{run_cli, wait_until, Mosquitto, MqttClient};

const CLIENT: &str = "gw-test";

fn config_text(mqtt_url: &str, data_dir: &Path, extra: &str) -> String {
    format!(
        "[gateway]\nsite = \"{SITE}\"\ndata_dir = {:?}\n\n[mqtt]\nurl = \"{mqtt_url}\"\n\
         client_id = \"{CLIENT}\"\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n\n\
         [ingest]\nmax_lateness = \"10s\"\n\n{extra}\n{}",
        data_dir.display().to_string(),
        devices_toml()
    )
}

fn topic(f: &Fact) -> Option<(String, Vec<u8>)> {
    let cat = |d: &str| {
        estate_gateway::replay::scenario::DEVICES
            .iter()
            .find(|(id, _)| *id == d)
            .map(|(_, c)| *c)
            .unwrap()
    };
    match f {
        Fact::Reading {
            device, ts, values, ..
        } => {
            let mut v = values.clone();
            v.insert("ts".into(), (*ts).into());
            Some((
                format!("estate/{SITE}/{}/{device}/telemetry", cat(device)),
                serde_json::to_vec(&v).unwrap(),
            ))
        }
        // A status message carries no `ts`: it is stamped on arrival, so the live run could
        // not reproduce the scenario's time. The scenario is generated without them here.
        _ => None,
    }
}

/// Transitions before `end`, alarms raised before it (cleared before it or not), and the
/// figures of [from, end).
type Outcome = (Vec<String>, Vec<String>, String);

fn outcome(journal: &Path, cfg: &estate_gateway::config::Config, from: i64, end: i64) -> Outcome {
    let j = Journal::open_read_only(journal).unwrap();
    let t = j
        .transitions_for_site(SITE, i64::MIN / 2, end + 1)
        .unwrap()
        .into_iter()
        .filter(|t| t.ts_ms < end)
        .map(|t| {
            format!(
                "{} {} {:?} {:?} {:?}",
                t.device, t.ts_ms, t.from, t.to, t.reason
            )
        })
        .collect();
    let mut a: Vec<String> = j
        .alarms_raised_for_site(SITE, i64::MIN / 2, end)
        .unwrap()
        .into_iter()
        .map(|a| {
            format!(
                "{} {} {} {:?}",
                a.device,
                a.rule,
                a.raised_ms,
                a.cleared_ms.filter(|&c| c < end)
            )
        })
        .collect();
    a.sort();
    let s = FigureSettings {
        offline: cfg.assessment.offline,
        season: cfg.heating.season.clone(),
        min_indoor_c: cfg.heating.min_indoor_c,
    };
    let f = compute(&j, SITE, from, end, end, &s).unwrap();
    (t, a, format!("{f:?}"))
}

/// Waits until the live gateway has applied every device's facts up to `upto` (its journaled
/// progress), then a little more for its tick to have saved it.
fn wait_applied(journal: &Path, facts: &[Fact], gw: &crate::support::GatewayProcess) {
    let mut want: std::collections::HashMap<String, i64> = Default::default();
    for f in facts {
        if let Fact::Reading { device, ts, .. } = f {
            want.insert(device.clone(), *ts);
        }
    }
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let Ok(j) = rusqlite::Connection::open_with_flags(
            journal,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return false;
        };
        want.iter().all(|(d, ts)| {
            j.query_row(
                "SELECT COALESCE(last_ts_ms, 0) FROM progress WHERE device = ?1",
                [d],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|got| got >= *ts)
        })
    });
    if !ok {
        let j = rusqlite::Connection::open_with_flags(
            journal,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        );
        let rows: Vec<(String, Option<i64>)> = match &j {
            Ok(j) => {
                let mut st = j
                    .prepare("SELECT device, last_ts_ms FROM progress")
                    .unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        panic!(
            "the gateway did not apply every published reading: want {want:?}, journaled {rows:?}\n{}",
            gw.log()
        );
    }
}

#[test]
fn a_live_gateway_with_two_restarts_equals_replay() {
    for seed in [3u64, 11] {
        let mqtt = Mosquitto::start();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg_path = dir.path().join("gateway.toml");
        std::fs::write(&cfg_path, config_text(&mqtt.url(), &data, "")).unwrap();
        let cfg = estate_gateway::config::load(&cfg_path).unwrap();

        // The scenario lies in the past (within `max_reading_age`): the gateway gets it as a
        // burst, far faster than real time.
        let start = now_ms() - 2 * 3_600_000;
        let sc = generate(
            seed,
            &Options {
                start_ms: start,
                commands: false,
                windows: false,
            },
        );
        let mut facts: Vec<Fact> = sc
            .in_order()
            .into_iter()
            .filter(|f| topic(f).is_some())
            .collect();
        // Every device reports once more at the end: its timers before then are decided by
        // that reading in both runs (a live gateway would otherwise need that much real time
        // to pass before concluding them).
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        for (id, cat) in estate_gateway::replay::scenario::DEVICES {
            facts.push(Fact::Reading {
                site: SITE.into(),
                device: id.to_string(),
                ts: sc.end_ms,
                values: estate_gateway::replay::scenario::values(cat, 0, &mut rng),
            });
        }
        let (k1, k2) = (facts.len() / 3, 2 * facts.len() / 3);
        let client = MqttClient::connect(mqtt.port());
        let publish = |part: &[Fact]| {
            for f in part {
                let (t, p) = topic(f).unwrap();
                client.publish(&t, p, 1);
            }
        };

        let mut gw = start_gateway(&cfg_path, &mqtt);
        // Every reading is from before the gateway's first start; they may come a few seconds
        // after it (within the devices' heartbeat timeout) and still begin the devices'
        // timelines at their own times.
        if seed == 3 {
            std::thread::sleep(Duration::from_secs(3));
        }
        publish(&facts[..k1]);
        let journal = data.join("journal.sqlite");
        wait_applied(&journal, &facts[..k1], &gw);
        assert!(gw.terminate().success(), "{}", gw.log());

        // Down: the broker keeps the session and queues the next part.
        publish(&facts[k1..k2]);
        std::thread::sleep(Duration::from_millis(500));
        let mut gw = start_gateway(&cfg_path, &mqtt);
        wait_applied(&journal, &facts[..k2], &gw);
        assert!(gw.terminate().success(), "{}", gw.log());

        let mut gw = start_gateway(&cfg_path, &mqtt);
        publish(&facts[k2..]);
        wait_applied(&journal, &facts, &gw);
        assert!(gw.terminate().success(), "{}", gw.log());
        let log = gw.log();
        let live = outcome(&journal, &cfg, start, sc.end_ms);

        let replayed = tempfile::tempdir().unwrap();
        let mut r = Replayer::new(&cfg, replayed.path(), now_ms()).unwrap();
        for (i, f) in facts.iter().enumerate() {
            r.apply(i as u64 + 1, f).unwrap();
        }
        let summary = r.finish(sc.end_ms).unwrap();
        assert_eq!((summary.late, summary.out_of_order), (0, 0));
        let expected = outcome(
            &replayed.path().join("journal.sqlite"),
            &cfg,
            start,
            sc.end_ms,
        );
        assert!(
            expected.0.len() > 10,
            "seed {seed}: too few transitions to mean anything"
        );
        if live.0 != expected.0 {
            let only_live: Vec<_> = live.0.iter().filter(|t| !expected.0.contains(t)).collect();
            let only_replay: Vec<_> = expected.0.iter().filter(|t| !live.0.contains(t)).collect();
            panic!(
                "seed {seed}: transitions differ\nonly live: {only_live:#?}\nonly replay: {only_replay:#?}\n{log}"
            );
        }
        assert_eq!(live.1, expected.1, "seed {seed}: alarms");
        // For the record (`--nocapture`): what the restarts did to the figures — nothing.
        eprintln!(
            "seed {seed}: {} transitions, {} alarms, identical with two restarts; {}",
            live.0.len(),
            live.1.len(),
            live.2
                .split(", intactness_by_category")
                .next()
                .unwrap_or("")
        );
        assert_eq!(live.2, expected.2, "seed {seed}: figures");
    }
}

#[test]
fn replay_cli_reads_a_tape_and_report_gives_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg_path = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[gateway]\nsite = \"{SITE}\"\ndata_dir = {:?}\n\n{}",
            data.display().to_string(),
            devices_toml()
        ),
    )
    .unwrap();
    // 2026-12-01T00:00:00+08:00, in season.
    let t0 = 1_796_054_400_000i64;
    let sc = generate(
        7,
        &Options {
            start_ms: t0,
            commands: true,
            windows: true,
        },
    );
    let mut tape = String::from("# a generated tape\n");
    tape += &serde_json::to_string(&Fact::Start { ts: t0 }).unwrap();
    tape += "\n";
    for f in sc.in_order() {
        tape += &serde_json::to_string(&f).unwrap();
        tape += "\n";
    }
    tape += "{\"type\":\"reading\",\"site\":\"jinxiu\"}\n";
    let tape_path = dir.path().join("tape.jsonl");
    std::fs::write(&tape_path, tape).unwrap();
    let out = run_cli(&[
        "replay",
        "-c",
        cfg_path.to_str().unwrap(),
        "--input",
        tape_path.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("replayed "), "{stdout}");
    assert!(stdout.contains(" 0 out of order, 0 late"), "{stdout}");
    // The bad last line is refused with its line number, nothing else is lost.
    let last = sc.in_order().len() + 3;
    assert!(
        stderr.contains(&format!("tape.jsonl:{last}: missing field")),
        "{stderr}"
    );

    // The figures from the journal the replay wrote equal the library's own replay.
    let report = run_cli(&[
        "report",
        "-c",
        cfg_path.to_str().unwrap(),
        "--from",
        "2026-12-01T00:00:00+08:00",
        "--to",
        "2026-12-01T02:00:00+08:00",
        "--format",
        "json",
    ]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let cfg = estate_gateway::config::load(&cfg_path).unwrap();
    let j = Journal::open_read_only(&data.join("journal.sqlite")).unwrap();
    let s = FigureSettings {
        offline: cfg.assessment.offline,
        season: cfg.heating.season.clone(),
        min_indoor_c: cfg.heating.min_indoor_c,
    };
    let f = compute(&j, SITE, t0, t0 + 2 * 3_600_000, now_ms(), &s).unwrap();
    assert!(f.intactness.rate.is_some());
    assert_eq!(
        json["intactness"]["overall"],
        serde_json::json!(f.intactness.rate)
    );
    assert_eq!(
        json["response"]["count"],
        serde_json::json!(f.response.count)
    );
}

#[test]
fn run_record_writes_a_tape_that_replay_reads() {
    let mqtt = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg_path = dir.path().join("gateway.toml");
    std::fs::write(&cfg_path, config_text(&mqtt.url(), &data, "")).unwrap();
    let tape = dir.path().join("tape.jsonl");
    let cfg = cfg_path.to_str().unwrap();
    let mut gw = crate::support::GatewayProcess::start(&[
        "run",
        "-c",
        cfg,
        "--record",
        tape.to_str().unwrap(),
    ]);
    assert!(gw.wait_for_log(
        "Subscribed to telemetry and status topics.",
        Duration::from_secs(15)
    ));
    let client = MqttClient::connect(mqtt.port());
    let t = now_ms() - 60_000;
    for i in 0..5 {
        client.publish(
            &format!("estate/{SITE}/elevator/EL-1/telemetry"),
            format!(
                "{{\"ts\": {}, \"mode\": \"normal\", \"fault_code\": {}, \"entrapment\": false}}",
                t + i * 1_000,
                if i == 2 { 7 } else { 0 }
            ),
            1,
        );
    }
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        std::fs::read_to_string(&tape)
            .map(|s| s.lines().filter(|l| l.contains("\"reading\"")).count() >= 5)
            .unwrap_or(false)
    });
    assert!(ok, "the tape did not get the readings:\n{}", gw.log());
    assert!(gw.terminate().success());
    let text = std::fs::read_to_string(&tape).unwrap();
    assert!(text.lines().next().unwrap().contains("\"start\""), "{text}");
    assert!(text.contains("\"fault_code\":7"), "{text}");

    let out = run_cli(&[
        "replay",
        "-c",
        cfg,
        "--input",
        tape.to_str().unwrap(),
        "--data-dir",
        dir.path().join("audit").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("(5 readings)"), "{stdout}");
    assert!(stdout.contains("0 refused"), "{stdout}");
}
