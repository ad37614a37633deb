//! Determinism (DESIGN §4 "Event time"): generated scenarios of devices of all five categories
//! give the same journal transitions, the same alarms and the same figures, to the
//! millisecond, whether their facts are replayed in order, replayed with the devices
//! interleaved differently, fed in "real time" (arrival a little after `ts`, the gateway
//! clock ticking and concluding timeouts), or replayed with one or two restarts in between.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::report::figures::{compute, FigureSettings};

use super::scenario::{devices_toml, generate, Options, SITE};

/// 2026-12-01T00:00:00+08:00: inside the Beijing heating season.
const T0: i64 = 1_796_054_400_000;

fn config(dir: &Path) -> Config {
    let toml = format!(
        "[gateway]\nsite = \"{SITE}\"\ndata_dir = {:?}\n\n{}",
        dir.join("unused").display().to_string(),
        devices_toml()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
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
        let sc = generate(
            seed,
            &Options {
                start_ms: T0,
                commands: true,
                windows: true,
            },
        );
        let (per_device, end) = (&sc.per_device, sc.end_ms);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let ordered = sc.in_order();

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
            &interleave(per_device, &mut rng),
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

/// A device never heard from is offline from `monitored_since` (DESIGN §4), not from the
/// first start; a bad value is a configuration error naming the key.
#[test]
fn monitored_since_is_when_a_silent_device_entered_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[gateway]\nsite = \"{SITE}\"\ndata_dir = \"unused\"\n\n{}[[devices]]\nid = \"EL-9\"\nname = \"EL-9\"\n\
         building = \"9号楼\"\ncategory = \"elevator\"\nmonitored_since = \"2026-11-30T23:00:00+08:00\"\n",
        devices_toml()
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &toml).unwrap();
    let cfg = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sc = generate(
        1,
        &Options {
            start_ms: T0,
            commands: false,
            windows: false,
        },
    );
    let data = tempfile::tempdir().unwrap();
    replay_with_restarts(&cfg, data.path(), &sc.in_order(), &[], sc.end_ms);
    let j = Journal::open_read_only(&data.path().join("journal.sqlite")).unwrap();
    let el9: Vec<_> = j
        .transitions_for_site(SITE, i64::MIN / 2, sc.end_ms + 1)
        .unwrap()
        .into_iter()
        .filter(|t| t.device == "EL-9")
        .map(|t| (t.ts_ms, t.to, t.reason))
        .collect();
    assert_eq!(
        el9,
        vec![(T0 - 3_600_000, DeviceState::Offline, Reason::Start)]
    );
    // Its offline alarm waits for its heartbeat timeout (30 s) and the rule's delay (2 min).
    let alarms = j
        .alarms_raised_for_site(SITE, i64::MIN / 2, sc.end_ms + 1)
        .unwrap();
    let a = alarms.iter().find(|a| a.device == "EL-9").unwrap();
    assert_eq!(
        (a.rule.as_str(), a.raised_ms),
        ("offline", T0 - 3_600_000 + 30_000 + 120_000)
    );

    std::fs::write(
        &path,
        toml.replace("2026-11-30T23:00:00+08:00", "yesterday"),
    )
    .unwrap();
    let e = crate::config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("monitored_since") && e.contains("RFC 3339"),
        "{e}"
    );
}

/// Two sites with a device of the same id, each with a planned window at the same start: both
/// windows are kept (their ids name the site; one used to overwrite the other).
#[test]
fn planned_windows_of_two_sites_with_the_same_device_id_are_both_kept() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[gateway]\nsite = \"{SITE}\"\ndata_dir = \"unused\"\n\n{}\
         [[devices]]\nid = \"EL-1\"\nsite = \"north\"\nname = \"北区1号梯\"\nbuilding = \"北1\"\ncategory = \"elevator\"\n\n\
         [[maintenance]]\ndevice = \"EL-1\"\nstart = \"2026-12-01T09:00:00+08:00\"\nend = \"2026-12-01T10:00:00+08:00\"\nreason = \"年检\"\n\n\
         [[maintenance]]\ndevice = \"EL-1\"\nsite = \"north\"\nstart = \"2026-12-01T09:00:00+08:00\"\nend = \"2026-12-01T10:00:00+08:00\"\nreason = \"年检\"\n",
        devices_toml()
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &toml).unwrap();
    let cfg = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().unwrap();
    Replayer::new(&cfg, data.path(), T0)
        .unwrap()
        .finish(T0)
        .unwrap();
    let j = Journal::open_read_only(&data.path().join("journal.sqlite")).unwrap();
    let nine = T0 + 9 * 3_600_000;
    for site in [SITE, "north"] {
        assert_eq!(
            j.windows_for_site(site, T0, T0 + 86_400_000).unwrap(),
            vec![("EL-1".to_owned(), nine, nine + 3_600_000)],
            "{site}"
        );
    }
}
