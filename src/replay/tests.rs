//! Determinism (DESIGN §4 "Event time"): generated scenarios of devices of all five categories
//! give the same journal transitions, the same alarms and the same figures, to the
//! millisecond, whether their facts are replayed in order, replayed with the devices
//! interleaved differently, fed in "real time" (arrival a little after `ts`, the gateway
//! clock ticking and concluding timeouts), or replayed with one or two restarts in between.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;
use crate::report::figures::{compute, FigureSettings};

/// 2026-12-01T00:00:00+08:00: inside the Beijing heating season.
const T0: i64 = 1_796_054_400_000;
const SITE: &str = "jinxiu";

const DEVICES: &[(&str, &str)] = &[
    ("EL-1", "elevator"),
    ("EL-2", "elevator"),
    ("GA-1", "access_gate"),
    ("HX-1", "heating_loop"),
    ("TS-1", "indoor_sensor"),
    ("TS-2", "indoor_sensor"),
    ("FP-1", "fire_equipment"),
];

fn config(dir: &Path) -> Config {
    let mut toml = format!(
        "[gateway]\nsite = \"{SITE}\"\ndata_dir = {:?}\n\n",
        dir.join("unused").display().to_string()
    );
    for (id, cat) in DEVICES {
        toml += &format!(
            "[[devices]]\nid = \"{id}\"\nname = \"{id}\"\nbuilding = \"{}号楼\"\ncategory = \"{cat}\"\n\n",
            if id.ends_with('1') { 1 } else { 2 }
        );
    }
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A healthy reading of a category, or one with a fault of kind `k` (0 = healthy).
fn values(cat: &str, k: u32, rng: &mut StdRng) -> Map<String, Json> {
    let v = match (cat, k) {
        ("elevator", 0) => {
            json!({"mode": "normal", "fault_code": 0, "entrapment": false, "floor": rng.random_range(1..20)})
        }
        ("elevator", 1) => json!({"mode": "normal", "fault_code": 0, "entrapment": true}),
        ("elevator", 2) => json!({"mode": "normal", "fault_code": 17, "entrapment": false}),
        ("elevator", _) => json!({"mode": "inspection", "fault_code": 0, "entrapment": false}),
        ("access_gate", 0) => json!({"door": "closed", "fault_code": 0}),
        ("access_gate", 1) => json!({"door": "open", "fault_code": 0}),
        ("access_gate", 2) => json!({"door": "forced", "fault_code": 0}),
        ("access_gate", _) => json!({"door": "closed", "fault_code": 3}),
        ("heating_loop", 0) => {
            json!({"supply_temp_c": 55.0 + rng.random_range(0.0..5.0), "return_temp_c": 40.0, "pressure_mpa": 0.5, "pump_running": true, "fault_code": 0})
        }
        ("heating_loop", 1) => {
            json!({"supply_temp_c": 35.0, "return_temp_c": 30.0, "pressure_mpa": 0.5, "pump_running": true, "fault_code": 0})
        }
        ("heating_loop", 2) => {
            json!({"supply_temp_c": 50.0, "return_temp_c": 40.0, "pressure_mpa": 0.5, "pump_running": false, "fault_code": 0})
        }
        ("heating_loop", _) => {
            json!({"supply_temp_c": 50.0, "return_temp_c": 40.0, "pressure_mpa": 0.05, "pump_running": true, "fault_code": 0})
        }
        ("indoor_sensor", 0) => json!({"indoor_temp_c": 19.0 + rng.random_range(0.0..3.0)}),
        ("indoor_sensor", _) => json!({"indoor_temp_c": 16.5}),
        ("fire_equipment", 0) => {
            json!({"fire_alarm": false, "fault_count": 0, "pump_auto": true, "pressure_mpa": 0.4, "power": "main"})
        }
        ("fire_equipment", 1) => {
            json!({"fire_alarm": true, "fault_count": 0, "pump_auto": true, "pressure_mpa": 0.4, "power": "main"})
        }
        ("fire_equipment", 2) => {
            json!({"fire_alarm": false, "fault_count": 2, "pump_auto": false, "pressure_mpa": 0.4, "power": "main"})
        }
        (_, _) => {
            json!({"fire_alarm": false, "fault_count": 0, "pump_auto": true, "pressure_mpa": 0.1, "power": "backup"})
        }
    };
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

fn rules(cat: &str) -> &'static [&'static str] {
    match cat {
        "elevator" => &["entrapment", "fault", "offline"],
        "access_gate" => &["door_forced", "held_open", "fault", "offline"],
        "heating_loop" => &["low_supply_temp", "pump_stopped", "pressure_low", "offline"],
        "indoor_sensor" => &["low_indoor_temp", "offline"],
        _ => &[
            "fire_alarm",
            "fault",
            "pump_manual",
            "pressure_low",
            "offline",
        ],
    }
}

/// A scenario: per device, its facts in `ts` order (readings with gaps longer and shorter than
/// the heartbeat, fault phases that outlast their rules' delays or not, `offline` statuses,
/// acknowledgments and on-site reports before and after clearing, planned windows), and the
/// end of the period.
fn scenario(seed: u64) -> (Vec<Vec<Fact>>, i64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let span: i64 = rng.random_range(20..90) * 60_000;
    let end = T0 + span;
    let mut all = Vec::new();
    for (id, cat) in DEVICES {
        let mut facts = Vec::new();
        let interval: i64 = match *cat {
            "elevator" | "access_gate" => 10_000,
            "fire_equipment" => 30_000,
            _ => 60_000,
        };
        let mut t = T0 + rng.random_range(0..interval);
        let mut fault = 0u32;
        let mut fault_until = 0i64;
        while t < end {
            if t >= fault_until {
                fault = 0;
                if rng.random_bool(0.08) {
                    fault = rng.random_range(1..4);
                    fault_until = t + rng.random_range(5_000..900_000);
                    // Someone reacts (maybe after the fault cleared, maybe never).
                    if rng.random_bool(0.7) {
                        let r = rules(cat);
                        let rule = r[rng.random_range(0..r.len())];
                        let at = t + rng.random_range(1_000..1_200_000);
                        let a = AlarmRef {
                            id: None,
                            site: Some(SITE.into()),
                            device: Some(id.to_string()),
                            rule: Some(rule.into()),
                            raised: None,
                            by: "值班员".into(),
                            ts: at,
                        };
                        if at < end {
                            if rng.random_bool(0.3) {
                                facts.push(Fact::OnSite(a));
                            } else {
                                facts.push(Fact::Ack(a));
                            }
                        }
                    }
                }
            }
            if rng.random_bool(0.01) {
                // A planned window entered now, starting later.
                let start = t + rng.random_range(0..600_000);
                facts.push(Fact::Maintenance {
                    site: SITE.into(),
                    device: id.to_string(),
                    start,
                    end: start + rng.random_range(60_000..1_800_000),
                    reason: "年检".into(),
                    by: "张工".into(),
                    ts: t,
                });
            }
            if rng.random_bool(0.01) {
                facts.push(Fact::Status {
                    site: SITE.into(),
                    device: id.to_string(),
                    ts: t,
                    status: "offline".into(),
                });
            } else {
                facts.push(Fact::Reading {
                    site: SITE.into(),
                    device: id.to_string(),
                    ts: t,
                    values: values(cat, fault, &mut rng),
                });
            }
            // Mostly regular; sometimes a gap shorter or longer than the heartbeat (3 ×).
            t += if rng.random_bool(0.05) {
                interval * rng.random_range(2..12) + rng.random_range(0..interval)
            } else {
                interval + rng.random_range(-500..500)
            };
        }
        facts.sort_by_key(Fact::ts);
        all.push(facts);
    }
    (all, end)
}

/// Everything the figures are made of, in a comparable form.
#[derive(Debug, PartialEq)]
struct Outcome {
    transitions: Vec<(String, i64, Option<DeviceState>, DeviceState, Reason)>,
    alarms: Vec<AlarmRow>,
    figures: String,
}

use crate::model::event::{DeviceState, Reason};

/// (device, rule, raised, acknowledged, on site, cleared by the end).
type AlarmRow = (String, String, i64, Option<i64>, Option<i64>, Option<i64>);

fn outcome(cfg: &Config, dir: &Path, end: i64) -> Outcome {
    let j = Journal::open_read_only(&dir.join("journal.sqlite")).unwrap();
    let transitions = j
        .transitions_for_site(SITE, i64::MIN / 2, end + 1)
        .unwrap()
        .into_iter()
        .filter(|t| t.ts_ms <= end)
        .map(|t| (t.device, t.ts_ms, t.from, t.to, t.reason))
        .collect();
    let mut alarms: Vec<_> = j
        .alarms_raised_for_site(SITE, i64::MIN / 2, end + 1)
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.device,
                a.rule,
                a.raised_ms,
                a.acknowledged.map(|s| s.ts_ms),
                a.on_site.map(|s| s.ts_ms),
                a.cleared_ms.filter(|&c| c <= end),
            )
        })
        .collect();
    alarms.sort();
    let settings = FigureSettings {
        offline: cfg.assessment.offline,
        season: cfg.heating.season.clone(),
        min_indoor_c: cfg.heating.min_indoor_c,
    };
    let f = compute(&j, SITE, T0, end, end, &settings).unwrap();
    Outcome {
        transitions,
        alarms,
        figures: format!("{f:?}"),
    }
}

fn interleave(per_device: &[Vec<Fact>], rng: &mut StdRng) -> Vec<Fact> {
    let mut idx = vec![0usize; per_device.len()];
    let mut out = Vec::new();
    loop {
        let open: Vec<usize> = (0..per_device.len())
            .filter(|&i| idx[i] < per_device[i].len())
            .collect();
        if open.is_empty() {
            return out;
        }
        let i = open[rng.random_range(0..open.len())];
        // A run of this device's facts.
        for _ in 0..rng.random_range(1..40) {
            if idx[i] < per_device[i].len() {
                out.push(per_device[i][idx[i]].clone());
                idx[i] += 1;
            }
        }
    }
}

fn in_order(per_device: &[Vec<Fact>]) -> Vec<Fact> {
    let mut all: Vec<Fact> = per_device.iter().flatten().cloned().collect();
    all.sort_by_key(Fact::ts);
    all
}

/// Replays `facts` into a fresh journal, stopping and restarting the gateway after each index
/// in `restarts`.
fn replay_with_restarts(cfg: &Config, dir: &Path, facts: &[Fact], restarts: &[usize], end: i64) {
    let mut r = Replayer::new(cfg, dir, T0).unwrap();
    for (i, f) in facts.iter().enumerate() {
        if restarts.contains(&i) {
            r.stop().unwrap();
            r = Replayer::new(cfg, dir, f.ts()).unwrap();
        }
        r.apply(i as u64 + 1, f).unwrap();
    }
    r.finish(end).unwrap();
}

/// Live-like: each reading arrives up to 0.5 s after its `ts`, operators' commands 1 s after
/// theirs, and the gateway clock ticks every second, concluding timeouts as it goes.
fn real_time(cfg: &Config, dir: &Path, facts: &[Fact], end: i64, rng: &mut StdRng) {
    let mut arrivals: Vec<(i64, usize)> = facts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let d = match f {
                Fact::Reading { .. } | Fact::Status { .. } => rng.random_range(0..500),
                _ => 1_000,
            };
            (f.ts() + d, i)
        })
        .collect();
    // Stable: a device's facts keep their order (arrival delays never reorder one device
    // beyond what its `ts` order allows, since readings are ≥ 9.5 s apart).
    arrivals.sort_by_key(|&(at, i)| (at, i));
    let mut r = Replayer::new(cfg, dir, T0).unwrap();
    let mut clock = T0;
    for (at, i) in arrivals {
        while clock + 1_000 <= at {
            clock += 1_000;
            r.tick(clock).unwrap();
        }
        r.apply_at(i as u64 + 1, &facts[i], at).unwrap();
    }
    while clock + 1_000 <= end {
        clock += 1_000;
        r.tick(clock).unwrap();
    }
    r.finish(end).unwrap();
}

#[test]
fn the_same_facts_give_the_same_journal_and_figures_however_they_arrive() {
    let cfgdir = tempfile::tempdir().unwrap();
    let cfg = config(cfgdir.path());
    let cases: u64 = std::env::var("DETERMINISM_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut with_alarms = 0;
    for seed in 0..cases {
        let (per_device, end) = scenario(seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let ordered = in_order(&per_device);

        let base = tempfile::tempdir().unwrap();
        replay_with_restarts(&cfg, base.path(), &ordered, &[], end);
        let expected = outcome(&cfg, base.path(), end);
        assert!(
            !expected.transitions.is_empty(),
            "seed {seed}: no transitions"
        );
        if !expected.alarms.is_empty() {
            with_alarms += 1;
        }

        let mixed = tempfile::tempdir().unwrap();
        replay_with_restarts(
            &cfg,
            mixed.path(),
            &interleave(&per_device, &mut rng),
            &[],
            end,
        );
        assert_eq!(
            outcome(&cfg, mixed.path(), end),
            expected,
            "seed {seed}: devices interleaved differently"
        );

        let live = tempfile::tempdir().unwrap();
        real_time(&cfg, live.path(), &ordered, end, &mut rng);
        assert_eq!(
            outcome(&cfg, live.path(), end),
            expected,
            "seed {seed}: real time"
        );

        let restarted = tempfile::tempdir().unwrap();
        let n = ordered.len();
        let restarts: Vec<usize> = (0..rng.random_range(1..3))
            .map(|_| rng.random_range(1..n.max(2)))
            .collect();
        replay_with_restarts(&cfg, restarted.path(), &ordered, &restarts, end);
        assert_eq!(
            outcome(&cfg, restarted.path(), end),
            expected,
            "seed {seed}: restarts after facts {restarts:?}"
        );
    }
    // The generator exercises the alarm paths, not only states.
    assert!(
        with_alarms * 2 > cases,
        "{with_alarms} of {cases} scenarios raised alarms"
    );
}

#[test]
fn a_tape_line_round_trips_and_bad_lines_are_reported() {
    let f = Fact::Ack(AlarmRef {
        id: Some("jinxiu-3".into()),
        site: Some(SITE.into()),
        device: Some("EL-1".into()),
        rule: Some("entrapment".into()),
        raised: Some(T0),
        by: "张伟".into(),
        ts: T0 + 5_000,
    });
    let line = serde_json::to_string(&f).unwrap();
    assert_eq!(parse_line(&line).unwrap(), Some(f));
    assert_eq!(parse_line("  ").unwrap(), None);
    assert_eq!(parse_line("# comment").unwrap(), None);
    let e = parse_line(r#"{"type":"reading","site":"s"}"#).unwrap_err();
    assert!(e.contains("missing field"), "{e}");
    let e = parse_line(r#"{"type":"bogus","ts":1}"#).unwrap_err();
    assert!(e.contains("unknown variant"), "{e}");
}
