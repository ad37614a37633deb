use std::sync::Arc;
use std::time::Duration;

use super::restore::WINDOW_RESTORE_MS;
use super::write::seq_of;
use super::*;
use crate::model::event::{
    Alarm, AlarmEvent, AlarmEventKind, DeviceState, Event, MaintenanceWindow, Reason, Stamp,
    StateChange,
};
use crate::model::restore::{DeviceProgress, RestoredState};
use crate::model::rules::Severity;
use crate::model::{Device, DeviceIdx, Inventory, Profile, Value};

const T0: i64 = 1_790_000_000_000;
const MIN: i64 = 60_000;

fn dev(site: &str, id: &str, building: &str, category: &str) -> Device {
    let p = Arc::new(Profile::new(
        category.into(),
        "x".into(),
        Duration::from_secs(30),
        vec![],
    ));
    Device {
        id: id.into(),
        name: format!("{building}{id}"),
        site: site.into(),
        building: building.into(),
        category: category.into(),
        profile: p,
        rules: Default::default(),
        interval: Duration::from_secs(30),
        heartbeat_timeout: Duration::from_secs(90),
        polled: false,
    }
}

/// 0: EL-1 (elevator), 1: GATE-2 (access gate), 2: HL-3 (heating loop).
fn inventory() -> Inventory {
    Inventory::new(vec![
        dev("jinxiu", "EL-1", "3号楼", "elevator"),
        dev("jinxiu", "GATE-2", "南门", "access_gate"),
        dev("jinxiu", "HL-3", "换热站", "heating_loop"),
    ])
}

fn state(device: DeviceIdx, ts_ms: i64, from: Option<DeviceState>, to: DeviceState) -> Event {
    Event::State(StateChange {
        device,
        ts_ms,
        from,
        to,
        reason: Reason::Reading,
    })
}

fn alarm(seq: u64, device: DeviceIdx, raised_ms: i64) -> Alarm {
    Alarm {
        id: format!("jinxiu-{seq}"),
        device,
        rule: "entrapment".into(),
        severity: Severity::Critical,
        class: "entrapment".into(),
        message: "3号楼EL-1 困人".into(),
        raised_ms,
        acknowledged: None,
        on_site: None,
        cleared_ms: None,
        ack_target_ms: 180_000,
        on_site_target_ms: Some(1_800_000),
        repair_target_ms: None,
        escalations: Vec::new(),
    }
}

fn alarm_event(kind: AlarmEventKind, ts_ms: i64, by: &str, alarm: &Alarm) -> Event {
    Event::Alarm(AlarmEvent {
        kind,
        ts_ms,
        by: by.into(),
        alarm: alarm.clone(),
    })
}

fn window(seq: u64, device: DeviceIdx, start_ms: i64, end_ms: i64) -> MaintenanceWindow {
    MaintenanceWindow {
        id: format!("jinxiu-M{seq}"),
        device,
        start_ms,
        end_ms,
        reason: "年检".into(),
        by: "张工".into(),
        entered_ms: start_ms,
    }
}

fn count(j: &Journal, table: &str) -> i64 {
    j.conn
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_event_kind_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.path(), dir.path().join(FILE_NAME));

    let mut a = alarm(7, 0, T0 + 10);
    let mut events = vec![
        Event::State(StateChange {
            device: 0,
            ts_ms: T0,
            from: None,
            to: DeviceState::Offline,
            reason: Reason::Start,
        }),
        state(0, T0 + 5, Some(DeviceState::Offline), DeviceState::Fault),
        alarm_event(AlarmEventKind::Raised, T0 + 10, "", &a),
    ];
    a.acknowledged = Some(Stamp {
        ts_ms: T0 + 70,
        by: "李值班".into(),
    });
    events.push(alarm_event(
        AlarmEventKind::Acknowledged,
        T0 + 70,
        "李值班",
        &a,
    ));
    a.on_site = Some(Stamp {
        ts_ms: T0 + 400,
        by: "device".into(),
    });
    events.push(alarm_event(AlarmEventKind::OnSite, T0 + 400, "device", &a));
    a.cleared_ms = Some(T0 + 900);
    events.push(alarm_event(AlarmEventKind::Cleared, T0 + 900, "", &a));
    events.push(Event::Maintenance(window(3, 1, T0, T0 + 60 * MIN)));
    j.append(&inv, &events).unwrap();

    let ts = j.transitions(T0, T0 + 1000).unwrap();
    assert_eq!(
        ts,
        vec![
            TransitionRecord {
                site: "jinxiu".into(),
                device: "EL-1".into(),
                building: "3号楼".into(),
                category: "elevator".into(),
                ts_ms: T0,
                from: None,
                to: DeviceState::Offline,
                reason: Reason::Start,
            },
            TransitionRecord {
                site: "jinxiu".into(),
                device: "EL-1".into(),
                building: "3号楼".into(),
                category: "elevator".into(),
                ts_ms: T0 + 5,
                from: Some(DeviceState::Offline),
                to: DeviceState::Fault,
                reason: Reason::Reading,
            },
        ]
    );

    let alarms = j.alarms_raised(T0, T0 + 11).unwrap();
    assert_eq!(
        alarms,
        vec![AlarmRecord {
            id: "jinxiu-7".into(),
            site: "jinxiu".into(),
            device: "EL-1".into(),
            building: "3号楼".into(),
            category: "elevator".into(),
            rule: "entrapment".into(),
            severity: Severity::Critical,
            class: "entrapment".into(),
            message: "3号楼EL-1 困人".into(),
            raised_ms: T0 + 10,
            acknowledged: a.acknowledged.clone(),
            on_site: a.on_site.clone(),
            cleared_ms: Some(T0 + 900),
            ack_target_ms: 180_000,
            on_site_target_ms: Some(1_800_000),
            repair_target_ms: None,
        }]
    );
    assert!(j.alarms_raised(T0 + 11, T0 + 1000).unwrap().is_empty());

    // One alarm row, four lifecycle rows in order.
    assert_eq!(count(&j, "alarms"), 1);
    let kinds: Vec<(String, i64, String)> = j
        .conn
        .prepare("SELECT kind, ts_ms, actor FROM alarm_events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("raised".into(), T0 + 10, "".into()),
            ("acknowledged".into(), T0 + 70, "李值班".into()),
            ("on_site".into(), T0 + 400, "device".into()),
            ("cleared".into(), T0 + 900, "".into()),
        ]
    );

    let r = j.restore(&inv, T0 + 1000, 10 * MIN).unwrap();
    assert_eq!(r.windows, vec![window(3, 1, T0, T0 + 60 * MIN)]);
    // An early end rewrites end_ms.
    j.append(&inv, &[Event::Maintenance(window(3, 1, T0, T0 + 30 * MIN))])
        .unwrap();
    assert_eq!(count(&j, "windows"), 1);
    let r = j.restore(&inv, T0 + 1000, 10 * MIN).unwrap();
    assert_eq!(r.windows, vec![window(3, 1, T0, T0 + 30 * MIN)]);
}

#[test]
fn empty_journal_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let r = j.restore(&inventory(), T0, MIN).unwrap();
    assert_eq!(r.last_alive_ms, None);
    assert!(r.states.is_empty() && r.alarms.is_empty() && r.windows.is_empty());
    assert_eq!((r.next_alarm_seq, r.next_window_seq), (1, 1));
    assert!(j.transitions(0, i64::MAX).unwrap().is_empty());
    assert!(j.runs(0, i64::MAX).unwrap().is_empty());
}

#[test]
fn restore_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let now = T0 + 24 * 60 * MIN;
    let retain = 60 * MIN;

    let mut active = alarm(41, 0, T0 + 100);
    active.acknowledged = Some(Stamp {
        ts_ms: T0 + 160,
        by: "李值班".into(),
    });
    let mut recent = alarm(42, 1, T0 + 200);
    recent.severity = Severity::Major;
    recent.on_site_target_ms = None;
    recent.cleared_ms = Some(now - retain); // at the retention limit: kept
    let mut old = alarm(43, 2, T0 + 300);
    old.cleared_ms = Some(now - retain - 1);
    let mut no_id = alarm(0, 2, T0 + 400);
    no_id.id = "jinxiu-x".into(); // no sequence: stored, not counted
    no_id.cleared_ms = Some(T0 + 500);
    // Each device's event-time position (DESIGN §4: a restart goes on from there).
    let progress = vec![
        DeviceProgress {
            device: 0,
            last_ts_ms: Some(T0 + 90),
            applied_ms: T0 + 95,
            entered_ms: T0 - 1_000,
            heartbeat_expired: false,
            status_offline: true,
            values: vec![
                Some(Value::Int(3)),
                None,
                Some(Value::Bool(true)),
                Some(Value::Float(39.5)),
                Some(Value::Str("inspection".into())),
            ],
            pending: vec![None, Some(T0 + 40)],
            // An open hour: one signal with readings, one without (min/max infinite).
            hour: Some((
                T0 - T0 % 3_600_000,
                vec![
                    (2, 40.0, 19.5, 20.5),
                    (0, 0.0, f64::INFINITY, f64::NEG_INFINITY),
                ],
            )),
        },
        DeviceProgress {
            device: 2,
            last_ts_ms: None,
            applied_ms: T0,
            entered_ms: T0,
            heartbeat_expired: true,
            status_offline: false,
            values: vec![],
            pending: vec![],
            hour: None,
        },
    ];
    {
        let mut j = Journal::open(dir.path()).unwrap();
        j.begin_run(T0, "gw-1", "0.1.0").unwrap();
        j.append(
            &inv,
            &[
                state(0, T0, None, DeviceState::Offline),
                state(0, T0 + 50, Some(DeviceState::Offline), DeviceState::Intact),
                state(0, T0 + 90, Some(DeviceState::Intact), DeviceState::Fault),
                state(1, T0, None, DeviceState::Offline),
                // Same ts: the later one wins.
                state(1, T0 + 10, Some(DeviceState::Offline), DeviceState::Intact),
                state(
                    1,
                    T0 + 10,
                    Some(DeviceState::Intact),
                    DeviceState::Maintenance,
                ),
                alarm_event(AlarmEventKind::Raised, active.raised_ms, "", &active),
                alarm_event(AlarmEventKind::Acknowledged, T0 + 160, "李值班", &active),
                alarm_event(AlarmEventKind::Cleared, now - retain, "", &recent),
                alarm_event(AlarmEventKind::Cleared, now - retain - 1, "", &old),
                alarm_event(AlarmEventKind::Cleared, T0 + 500, "", &no_id),
                Event::Maintenance(window(5, 1, T0, now + MIN)),
                // Ended by the gateway clock, but windows apply in event time: restored
                // (the engine drops it if its device is past it). This one used to be
                // left out.
                Event::Maintenance(window(6, 2, T0, now)),
                // Ended longer ago than any backlog: not restored.
                Event::Maintenance(window(
                    7,
                    2,
                    T0 - WINDOW_RESTORE_MS - MIN,
                    now - WINDOW_RESTORE_MS,
                )),
            ],
        )
        .unwrap();
        j.save_progress(&inv, &progress).unwrap();
        j.alive(T0 + 5000).unwrap();
    } // dropped without end_run: a crash.

    let j = Journal::open(dir.path()).unwrap();
    let r = j.restore(&inv, now, retain).unwrap();
    assert_eq!(r.last_alive_ms, Some(T0 + 5000));
    let mut states = r.states.clone();
    states.sort_by_key(|s| s.device);
    assert_eq!(
        states,
        vec![
            RestoredState {
                device: 0,
                state: DeviceState::Fault,
                since_ms: T0 + 90
            },
            RestoredState {
                device: 1,
                state: DeviceState::Maintenance,
                since_ms: T0 + 10
            },
        ]
    );
    assert_eq!(r.alarms, vec![active, recent]);
    assert_eq!(
        r.windows,
        vec![window(5, 1, T0, now + MIN), window(6, 2, T0, now)]
    );
    assert_eq!((r.next_alarm_seq, r.next_window_seq), (44, 8));
    let mut restored = r.progress.clone();
    restored.sort_by_key(|p| p.device);
    assert_eq!(restored, progress);
}

#[test]
fn devices_not_in_the_inventory_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let old = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(
        &old,
        &[
            state(0, T0, None, DeviceState::Intact),
            state(2, T0, None, DeviceState::Fault),
            alarm_event(AlarmEventKind::Raised, T0, "", &alarm(1, 0, T0)),
            alarm_event(AlarmEventKind::Raised, T0, "", &alarm(2, 2, T0)),
            Event::Maintenance(window(1, 0, T0, T0 + 60 * MIN)),
            Event::Maintenance(window(2, 2, T0, T0 + 60 * MIN)),
        ],
    )
    .unwrap();

    // The new inventory dropped EL-1 and puts HL-3 at index 0.
    let new = Inventory::new(vec![
        dev("jinxiu", "HL-3", "换热站", "heating_loop"),
        dev("other", "EL-1", "3号楼", "elevator"),
    ]);
    let r = j.restore(&new, T0 + MIN, MIN).unwrap();
    assert_eq!(
        r.states,
        vec![RestoredState {
            device: 0,
            state: DeviceState::Fault,
            since_ms: T0
        }]
    );
    assert_eq!(r.alarms, vec![alarm(2, 0, T0)]);
    assert_eq!(r.windows, vec![window(2, 0, T0, T0 + 60 * MIN)]);
    // Sequences count every stored alarm and window, known device or not.
    assert_eq!((r.next_alarm_seq, r.next_window_seq), (3, 3));
}

#[test]
fn last_alive_from_alive_and_end_run() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    assert!(j.alive(T0).is_err(), "alive before begin_run");

    j.begin_run(T0, "gw-1", "0.1.0").unwrap();
    j.alive(T0 + 5_000).unwrap();
    j.alive(T0 + 10_000).unwrap();
    // The current run is not a previous run.
    assert_eq!(j.restore(&inv, T0, 0).unwrap().last_alive_ms, None);
    drop(j); // crash

    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(
        j.restore(&inv, T0, 0).unwrap().last_alive_ms,
        Some(T0 + 10_000)
    );
    j.begin_run(T0 + 60_000, "gw-1", "0.1.1").unwrap();
    j.alive(T0 + 65_000).unwrap();
    j.end_run(T0 + 67_000).unwrap();
    drop(j);

    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(
        j.restore(&inv, T0, 0).unwrap().last_alive_ms,
        Some(T0 + 67_000)
    );
    let crashed = RunRecord {
        started_ms: T0,
        alive_ms: T0 + 10_000,
        stopped_ms: None,
        host: "gw-1".into(),
        version: "0.1.0".into(),
    };
    let stopped = RunRecord {
        started_ms: T0 + 60_000,
        alive_ms: T0 + 67_000,
        stopped_ms: Some(T0 + 67_000),
        host: "gw-1".into(),
        version: "0.1.1".into(),
    };
    assert_eq!(
        j.runs(0, i64::MAX).unwrap(),
        vec![crashed.clone(), stopped.clone()]
    );
    assert_eq!(j.runs(T0 + 20_000, T0 + 30_000).unwrap(), vec![]);
    assert_eq!(
        j.runs(T0 + 10_000, T0 + 60_001).unwrap(),
        vec![crashed, stopped.clone()]
    );
    assert_eq!(j.runs(T0 + 66_000, T0 + 66_001).unwrap(), vec![stopped]);
    assert_eq!(j.runs(T0 + 67_001, i64::MAX).unwrap(), vec![]);
}

#[test]
fn read_only_sees_what_the_writer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut w = Journal::open(dir.path()).unwrap();
    let r = Journal::open_read_only(w.path()).unwrap();
    assert!(r.transitions(0, i64::MAX).unwrap().is_empty());

    w.begin_run(T0, "gw", "v").unwrap();
    w.append(&inv, &[state(1, T0, None, DeviceState::Intact)])
        .unwrap();
    let seen = r.transitions(0, i64::MAX).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].device, "GATE-2");
    assert_eq!(r.runs(0, i64::MAX).unwrap().len(), 1);

    // The reader cannot write.
    let mut r = r;
    let e = r
        .append(&inv, &[state(1, T0, None, DeviceState::Intact)])
        .unwrap_err();
    assert!(format!("{e:#}").contains("read-only"), "{e:#}");
    drop(w);
}

#[test]
fn read_only_open_of_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let e = Journal::open_read_only(&path).unwrap_err();
    assert!(
        format!("{e:#}").contains(&path.display().to_string()),
        "{e:#}"
    );
}

#[test]
fn transitions_include_the_last_one_before_from() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    use DeviceState::*;
    j.append(
        &inv,
        &[
            state(1, T0, None, Offline),
            state(1, T0 + 10, Some(Offline), Intact),
            state(0, T0 + 20, None, Offline),
            state(1, T0 + 100, Some(Intact), Fault),
            state(0, T0 + 150, Some(Offline), Intact),
            state(1, T0 + 200, Some(Fault), Intact),
            state(0, T0 + 300, Some(Intact), Fault),
            state(2, T0 + 400, None, Offline), // after the period
        ],
    )
    .unwrap();
    let got: Vec<(String, i64, DeviceState)> = j
        .transitions(T0 + 100, T0 + 300)
        .unwrap()
        .into_iter()
        .map(|t| (t.device, t.ts_ms, t.to))
        .collect();
    assert_eq!(
        got,
        vec![
            ("EL-1".into(), T0 + 20, Offline), // starting state of EL-1
            ("EL-1".into(), T0 + 150, Intact),
            ("GATE-2".into(), T0 + 10, Intact), // starting state of GATE-2
            ("GATE-2".into(), T0 + 100, Fault),
            ("GATE-2".into(), T0 + 200, Intact),
        ]
    );
}

/// The per-site queries return what the all-site ones return for that site, in the same
/// order, and nothing of another site.
#[test]
fn per_site_queries_match_the_all_site_ones() {
    use crate::model::event::ComplianceChange;
    let dir = tempfile::tempdir().unwrap();
    let mut devices: Vec<Device> = inventory().devices().to_vec();
    devices.push(dev("other", "EL-1", "1号楼", "elevator"));
    let inv = Inventory::new(devices);
    let mut j = Journal::open(dir.path()).unwrap();
    use DeviceState::*;
    let ok = |device, ts_ms, compliant| {
        Event::Compliance(ComplianceChange {
            device,
            ts_ms,
            compliant,
        })
    };
    let mut other = alarm(9, 3, T0 + 150);
    other.id = "other-9".into();
    j.append(
        &inv,
        &[
            state(1, T0, None, Offline),
            state(3, T0 + 5, None, Fault),
            state(0, T0 + 20, None, Offline),
            state(1, T0 + 100, Some(Offline), Fault),
            state(3, T0 + 120, Some(Fault), Intact),
            state(0, T0 + 150, Some(Offline), Intact),
            state(2, T0 + 400, None, Offline),
            ok(0, T0 + 10, Some(true)),
            ok(0, T0 + 200, Some(false)),
            ok(3, T0 + 10, Some(true)),
            alarm_event(AlarmEventKind::Raised, T0 + 150, "", &alarm(1, 0, T0 + 150)),
            alarm_event(AlarmEventKind::Raised, T0 + 150, "", &other),
        ],
    )
    .unwrap();
    let (a, b) = (T0 + 100, T0 + 300);
    let site = |t: &TransitionRecord| t.site == "jinxiu";
    let all: Vec<_> = j
        .transitions(a, b)
        .unwrap()
        .into_iter()
        .filter(site)
        .collect();
    assert_eq!(all.len(), 4);
    assert_eq!(j.transitions_for_site("jinxiu", a, b).unwrap(), all);
    let all: Vec<_> = j
        .compliance(a, b)
        .unwrap()
        .into_iter()
        .filter(|c| c.site == "jinxiu")
        .collect();
    assert_eq!(all.len(), 2);
    assert_eq!(j.compliance_for_site("jinxiu", a, b).unwrap(), all);
    let got = j.alarms_raised_for_site("jinxiu", a, b).unwrap();
    assert_eq!(
        got.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["jinxiu-1"]
    );
    assert!(j.hourly_for_site("jinxiu", "x", a, b).unwrap().is_empty());
}

#[test]
fn one_append_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    let many: Vec<Event> = (0..10_000)
        .map(|i| state(i % 3, T0 + i64::from(i), None, DeviceState::Intact))
        .collect();
    j.append(&inv, &many).unwrap();
    assert_eq!(count(&j, "transitions"), 10_000);

    // All or nothing: a bad event at the end leaves nothing of its batch behind.
    let mut bad = many.clone();
    bad.push(state(99, T0, None, DeviceState::Intact));
    let e = j.append(&inv, &bad).unwrap_err();
    assert!(format!("{e:#}").contains("device index 99"), "{e:#}");
    assert_eq!(count(&j, "transitions"), 10_000);
}

/// Appends never checkpoint (`wal_autocheckpoint = 0`); the checkpoint thread moves the
/// WAL into the database file within about a second.
#[test]
fn the_checkpoint_thread_moves_the_wal_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    let db = dir.path().join(FILE_NAME);
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let empty = size();
    let many: Vec<Event> = (0..5_000)
        .map(|i| state(i % 3, T0 + i64::from(i), None, DeviceState::Intact))
        .collect();
    j.append(&inv, &many).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() <= empty {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {} bytes",
            size()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(&j, "transitions"), 5_000);
}

#[test]
fn a_corrupt_value_is_an_error_naming_table_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(&inv, &[state(0, T0, None, DeviceState::Intact)])
        .unwrap();
    j.conn
        .execute(
            "INSERT INTO transitions (site, device, building, category, ts_ms, \
             from_state, to_state, reason) \
             VALUES ('jinxiu', 'EL-1', 'b', 'c', ?1, 'intact', 'broken', 'reading')",
            [T0 + 1],
        )
        .unwrap();
    let id = j.conn.last_insert_rowid();
    for e in [
        j.transitions(T0, T0 + 10).unwrap_err(),
        j.restore(&inv, T0, 0).unwrap_err(),
    ] {
        let msg = format!("{e:#}");
        assert!(msg.contains("transitions"), "{msg}");
        assert!(msg.contains(&format!("row id {id}")), "{msg}");
        assert!(msg.contains("\"broken\""), "{msg}");
    }

    j.append(
        &inv,
        &[alarm_event(
            AlarmEventKind::Raised,
            T0,
            "",
            &alarm(1, 0, T0),
        )],
    )
    .unwrap();
    j.conn
        .execute("UPDATE alarms SET severity = 'dire'", [])
        .unwrap();
    let msg = format!("{:#}", j.alarms_raised(T0, T0 + 1).unwrap_err());
    assert!(msg.contains("alarms") && msg.contains("jinxiu-1"), "{msg}");
    // A value of the wrong type is an error too, not a panic.
    j.conn
        .execute("DELETE FROM transitions WHERE id = ?1", [id])
        .unwrap();
    j.conn
        .execute(
            "UPDATE alarms SET severity = 'major', raised_ms = 'soon'",
            [],
        )
        .unwrap();
    let msg = format!("{:#}", j.restore(&inv, T0, 0).unwrap_err());
    assert!(msg.contains("alarms"), "{msg}");
}

#[test]
fn an_unwritable_data_dir_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory under a regular file cannot be created, not even by root.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("data");
    let e = Journal::open(&under).unwrap_err();
    assert!(
        format!("{e:#}").contains(&under.display().to_string()),
        "{e:#}"
    );

    // The journal's own path taken by a directory: SQLite cannot open it.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join(FILE_NAME)).unwrap();
    let e = Journal::open(&data).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains(&data.join(FILE_NAME).display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("cannot open"), "{msg}");
}

#[test]
fn a_second_writer_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path()).unwrap();
    let e = Journal::open_with_lock_wait(dir.path(), Duration::from_millis(10)).unwrap_err();
    assert!(
        format!("{e:#}").contains("another gateway uses this data_dir"),
        "{e:#}"
    );
    drop(j);
    Journal::open_with_lock_wait(dir.path(), Duration::from_millis(10)).unwrap();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let j = Journal::open(dir.path()).unwrap();
        j.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        j.path().to_path_buf()
    };
    let e = Journal::open(dir.path()).unwrap_err();
    assert!(format!("{e:#}").contains("newer"), "{e:#}");
    let e = Journal::open_read_only(&path).unwrap_err();
    assert!(format!("{e:#}").contains("newer"), "{e:#}");
}

#[test]
fn reopening_keeps_the_schema_and_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path()).unwrap());
    let j = Journal::open(dir.path()).unwrap();
    let v: i64 = j
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let mode: String = j
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!((v, mode.as_str()), (SCHEMA_VERSION, "wal"));
}

#[test]
fn sequence_is_the_trailing_number() {
    assert_eq!(seq_of("jinxiu-42", "alarm"), Some(42));
    assert_eq!(seq_of("锦绣-2期-M7", "window"), Some(7));
    assert_eq!(seq_of("jinxiu-x", "alarm"), None);
    assert_eq!(seq_of("", "alarm"), None);
}

/// Callers can tell the kinds of failure apart without reading the sentences.
#[test]
fn errors_are_variants_callers_can_match() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").join(FILE_NAME);
    let e = Journal::open_read_only(&missing).unwrap_err();
    assert!(
        matches!(&e, JournalError::NotFound { path } if path == &missing),
        "{e:?}"
    );

    let j = Journal::open(dir.path()).unwrap();
    let e = Journal::open_with_lock_wait(dir.path(), Duration::from_millis(10)).unwrap_err();
    assert!(matches!(e, JournalError::Locked { .. }), "{e:?}");

    let mut r = Journal::open_read_only(j.path()).unwrap();
    let e = r.begin_run(T0, "gw", "v").unwrap_err();
    assert!(matches!(e, JournalError::OpenedReadOnly { .. }), "{e:?}");
    let mut j = j;
    let e = j.alive(T0).unwrap_err();
    assert!(matches!(e, JournalError::NoRun { .. }), "{e:?}");

    j.conn
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let e = Journal::open_read_only(j.path()).unwrap_err();
    assert!(
        matches!(e, JournalError::NewerSchema { found, supported, read_only: true, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{e:?}"
    );
}

fn escalated(a: &Alarm, step: u32, ts_ms: i64, notify: &str) -> Event {
    use crate::model::escalation::{Escalation, Target, Until};
    use crate::model::event::EscalationEvent;
    Event::Escalation(EscalationEvent {
        escalation: Escalation {
            step,
            ts_ms,
            due_ms: a.raised_ms + MIN,
            until: if step == 1 { Until::Ack } else { Until::OnSite },
            notify: Target::parse(notify).unwrap(),
            message: format!("第{step}级 {}", a.message),
        },
        alarm: a.clone(),
    })
}

/// Version 5: fired escalation steps are kept per alarm and step (a step written twice stays
/// as first written), read back for one alarm, and restored for the alarms `restore` brings
/// back (not for one cleared before the retention time).
#[test]
fn escalations_round_trip_and_are_restored_with_their_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let mut j = Journal::open(dir.path()).unwrap();
    let active = alarm(1, 0, T0);
    let mut old = alarm(2, 0, T0 - 3 * 60 * MIN);
    old.cleared_ms = Some(T0 - 2 * 60 * MIN);
    j.append(
        &inv,
        &[
            alarm_event(AlarmEventKind::Raised, T0, "", &active),
            escalated(&active, 1, T0 + MIN, "webhook:duty_manager"),
            alarm_event(AlarmEventKind::Raised, old.raised_ms, "", &old),
            escalated(&old, 1, old.raised_ms + MIN, "webhook:duty_manager"),
            alarm_event(AlarmEventKind::Cleared, T0 - 2 * 60 * MIN, "", &old),
        ],
    )
    .unwrap();
    j.append(
        &inv,
        &[
            escalated(&active, 2, T0 + 15 * MIN, "mqtt:estate/jinxiu/escalations"),
            // The same step again (it cannot happen, but would not be a second row).
            escalated(&active, 1, T0 + 2 * MIN, "webhook:other"),
        ],
    )
    .unwrap();
    assert_eq!(count(&j, "escalations"), 3);
    let got = j.escalations_of("jinxiu-1").unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].step, got[0].ts_ms, got[0].notify.to_string()),
        (1, T0 + MIN, "webhook:duty_manager".to_owned())
    );
    assert_eq!(got[0].message, "第1级 3号楼EL-1 困人");
    assert_eq!(
        (
            got[1].step,
            got[1].until.as_str(),
            got[1].notify.to_string()
        ),
        (2, "on_site", "mqtt:estate/jinxiu/escalations".to_owned())
    );
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    let restored = j.restore_escalations(T0 + 20 * MIN, 60 * MIN).unwrap();
    let steps: Vec<(&str, u32)> = restored.iter().map(|(a, e)| (a.as_str(), e.step)).collect();
    assert_eq!(steps, [("jinxiu-1", 1), ("jinxiu-1", 2)]);
    // With a longer retention the cleared alarm's step comes back too.
    let restored = j.restore_escalations(T0 + 20 * MIN, 24 * 60 * MIN).unwrap();
    assert_eq!(restored.len(), 3);
}

#[test]
fn uri_paths_escape_what_a_file_uri_would_misread() {
    assert_eq!(
        uri_path(std::path::Path::new("/var/lib/gw 1/a?b#c%d/journal.sqlite")),
        "/var/lib/gw%201/a%3Fb%23c%25d/journal.sqlite"
    );
    assert_eq!(
        uri_path(std::path::Path::new("/数据/j")),
        "/%E6%95%B0%E6%8D%AE/j"
    );
}

#[test]
fn open_for_run_opens_for_writing_when_it_can() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut j, why) = Journal::open_for_run(dir.path()).expect("open");
    assert!(why.is_none());
    assert!(j.is_writable());
    j.begin_run(1_000, "h", "v").expect("begin");
    j.alive(2_000).expect("alive");
    j.end_run(3_000).expect("end");
}

/// A journal on its own thread, behind an input log durable up to lsn 1.
fn writer_behind_a_log() -> (
    tempfile::TempDir,
    Arc<crate::stats::Stats>,
    Arc<crate::wal::Durable>,
    JournalWriter,
) {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(crate::stats::Stats::default());
    let durable = Arc::new(crate::wal::Durable::new(1));
    let writer = JournalWriter::start(
        Journal::open(dir.path()).unwrap(),
        Some(durable.clone()),
        Arc::new(inventory()),
        stats.clone(),
        Arc::new(crate::clock::SystemClock),
    )
    .unwrap();
    (dir, stats, durable, writer)
}

/// A commit of one state change from the facts below `position`, and its `done`.
fn commit_from_facts_below(position: u64) -> (Job, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job::Commit {
        events: vec![state(0, T0, None, DeviceState::Fault)],
        progress: Vec::new(),
        position: Some(position),
        log_needed: position,
        done: Some(tx),
    };
    (job, rx)
}

fn engine_pos(stats: &crate::stats::Stats) -> u64 {
    stats
        .log
        .engine_pos
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn the_journal_commits_only_what_the_input_log_holds() {
    let (dir, stats, durable, writer) = writer_behind_a_log();
    // Facts up to lsn 3 were applied; the log makes them durable a moment later.
    let (job, done) = commit_from_facts_below(4);
    writer.send(job).await;
    durable.advance(4);
    done.await.unwrap();
    assert_eq!(engine_pos(&stats), 4);
    // Facts up to lsn 8 were applied, and the log stopped (the intake ended) before it held
    // them: nothing derived from them is journaled.
    let (job, done) = commit_from_facts_below(9);
    writer.send(job).await;
    durable.close();
    done.await.unwrap();
    assert_eq!(engine_pos(&stats), 4);
    writer.close().await;
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.engine_position().unwrap(), 4);
    let states: i64 = j
        .conn
        .query_row("SELECT count(*) FROM transitions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(states, 1, "only the first commit's event");
}

#[tokio::test]
async fn an_escalation_is_not_held_up_by_a_stuck_input_log_and_is_journaled_once_it_moves() {
    let (dir, stats, durable, writer) = writer_behind_a_log();
    let (job, done) = commit_from_facts_below(4);
    writer.send(job).await;
    // The log never gets past lsn 1 (disk full): the waiter is released all the same.
    tokio::time::timeout(std::time::Duration::from_secs(30), done)
        .await
        .expect("released while the log is stuck")
        .unwrap();
    assert_eq!(engine_pos(&stats), 0);
    // The log gets written again: the commit goes through.
    durable.advance(4);
    writer.close().await;
    assert_eq!(engine_pos(&stats), 4);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.engine_position().unwrap(), 4);
}
