//! Engine logic with an injected clock: every rule type, the edges of `delay` and
//! `hysteresis`, flapping, acknowledgment, transients, maintenance, offline, restart.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::core::rules::{Op, ResponseClass, Rules, StateRules};
use crate::core::season::{MonthDay, Season};
use crate::model::{Profile, Signal, SignalType};

const T0: i64 = 1_790_000_000_000; // 2026-09-21, outside the Beijing heating season

fn cond(p: &Profile, signal: &str, op: Op, value: Value) -> Condition {
    Condition {
        signal: p.signal_index(signal).unwrap(),
        signal_name: signal.into(),
        op,
        value,
        season: false,
    }
}

/// An elevator-like and a heating-like profile with hand-written rules.
fn profiles() -> (Arc<Profile>, Arc<Profile>) {
    let sig = |name: &str, ty: SignalType| Signal {
        name: name.into(),
        ty,
        unit: None,
        label: None,
    };
    let mut el = Profile::new(
        "elevator".into(),
        "电梯".into(),
        Duration::from_secs(10),
        vec![
            sig(
                "mode",
                SignalType::Enum(vec!["normal".into(), "inspection".into()]),
            ),
            sig("fault_code", SignalType::Int),
            sig("entrapment", SignalType::Bool),
        ],
    );
    let inspection = cond(&el, "mode", Op::Eq, Value::Str("inspection".into()));
    el.rules = Arc::new(Rules {
        state: StateRules {
            fault: vec![
                cond(&el, "fault_code", Op::Ne, Value::Int(0)),
                cond(&el, "entrapment", Op::Eq, Value::Bool(true)),
            ],
            maintenance: vec![inspection.clone()],
        },
        alarms: vec![
            AlarmRule {
                name: "entrapment".into(),
                trigger: Trigger::Condition {
                    when: cond(&el, "entrapment", Op::Eq, Value::Bool(true)),
                    clear: Clear::Immediate,
                },
                severity: Severity::Critical,
                class: "entrapment".into(),
                message: "{name}困人".into(),
                delay_ms: 0,
                on_site: Some(inspection),
            },
            AlarmRule {
                name: "fault".into(),
                trigger: Trigger::Condition {
                    when: cond(&el, "fault_code", Op::Ne, Value::Int(0)),
                    clear: Clear::Immediate,
                },
                severity: Severity::Major,
                class: "urgent".into(),
                message: "{name}故障（故障码{value}）".into(),
                delay_ms: 0,
                on_site: None,
            },
            AlarmRule {
                name: "offline".into(),
                trigger: Trigger::Offline,
                severity: Severity::Major,
                class: "urgent".into(),
                message: "{name}离线".into(),
                delay_ms: 60_000,
                on_site: None,
            },
        ],
    });
    let mut hx = Profile::new(
        "heating_loop".into(),
        "供暖回路".into(),
        Duration::from_secs(30),
        vec![
            sig("supply_temp_c", SignalType::Float),
            sig("pump_running", SignalType::Bool),
        ],
    );
    let mut pump_stopped = cond(&hx, "pump_running", Op::Eq, Value::Bool(false));
    pump_stopped.season = true;
    hx.rules = Arc::new(Rules {
        state: StateRules {
            fault: vec![
                cond(&hx, "supply_temp_c", Op::Lt, Value::Float(40.0)),
                pump_stopped,
            ],
            maintenance: vec![],
        },
        alarms: vec![AlarmRule {
            name: "low_supply_temp".into(),
            trigger: Trigger::Condition {
                when: cond(&hx, "supply_temp_c", Op::Lt, Value::Float(40.0)),
                clear: Clear::Bound(Value::Float(42.0)),
            },
            severity: Severity::Major,
            class: "urgent".into(),
            message: "{name}供水温度低（{value}°C）".into(),
            delay_ms: 600_000,
            on_site: None,
        }],
    });
    (Arc::new(el), Arc::new(hx))
}

fn device(id: &str, p: &Arc<Profile>, modbus: bool) -> Device {
    Device {
        id: id.into(),
        name: format!("{id}号"),
        site: "jinxiu".into(),
        building: "1号楼".into(),
        category: p.category.clone(),
        profile: p.clone(),
        interval: p.interval,
        heartbeat_timeout: p.interval * 3,
        modbus: modbus.then(|| crate::source::modbus::Binding {
            endpoint: 0,
            unit: 1,
            model: Arc::new(crate::source::modbus::DeviceModel::new(
                "plc".into(),
                p.category.clone(),
                vec![],
                Default::default(),
            )),
        }),
        rules: p.rules.clone(),
    }
}

const EL: DeviceIdx = 0;
const HX: DeviceIdx = 1;
const EL2: DeviceIdx = 2;

fn inventory() -> Arc<Inventory> {
    let (el, hx) = profiles();
    Arc::new(Inventory::new(vec![
        device("EL-1", &el, false),
        device("HX-1", &hx, true),
        device("EL-2", &el, false),
    ]))
}

fn settings() -> EngineSettings {
    let class = |name: &str, ack: i64, on_site: Option<i64>| {
        (
            name.to_string(),
            ResponseClass {
                name: name.into(),
                ack_target_ms: ack,
                on_site_target_ms: on_site,
                source: "test".into(),
            },
        )
    };
    EngineSettings {
        site: "jinxiu".into(),
        classes: [
            class("entrapment", 180_000, Some(1_800_000)),
            class("urgent", 180_000, Some(1_800_000)),
        ]
        .into_iter()
        .collect(),
        season: Season::beijing(),
        planned: vec![],
        retain_cleared_ms: 7 * 86_400_000,
        min_indoor_c: 18.0,
        sites: Default::default(),
    }
}

struct Fx {
    e: Engine,
    out: Vec<Event>,
}

impl Fx {
    fn new() -> Fx {
        Fx::with(settings(), Restored::default(), T0)
    }

    fn with(s: EngineSettings, r: Restored, now: i64) -> Fx {
        let mut out = Vec::new();
        let e = Engine::new(inventory(), s, r, now, &mut out);
        Fx { e, out }
    }

    fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.out)
    }

    fn read(&mut self, d: DeviceIdx, ts: i64, values: &[(&str, Value)]) -> Vec<Event> {
        let p = self.e.inventory().get(d).profile.clone();
        let v: Vec<(u16, Value)> = values
            .iter()
            .map(|(n, v)| (p.signal_index(n).unwrap(), v.clone()))
            .collect();
        self.e.on_reading(d, ts, &v, None, ts, &mut self.out);
        self.take()
    }

    fn status(&mut self, d: DeviceIdx, ts: i64, s: Status) -> Vec<Event> {
        self.e.on_reading(d, ts, &[], Some(s), ts, &mut self.out);
        self.take()
    }

    fn tick(&mut self, now: i64) -> Vec<Event> {
        self.e.tick(now, &mut self.out);
        self.take()
    }

    /// A healthy elevator reading.
    fn el_ok(&mut self, d: DeviceIdx, ts: i64) -> Vec<Event> {
        self.read(
            d,
            ts,
            &[
                ("mode", Value::Str("normal".into())),
                ("fault_code", Value::Int(0)),
                ("entrapment", Value::Bool(false)),
            ],
        )
    }

    fn hx(&mut self, ts: i64, t: f64) -> Vec<Event> {
        self.read(
            HX,
            ts,
            &[
                ("supply_temp_c", Value::Float(t)),
                ("pump_running", Value::Bool(true)),
            ],
        )
    }
}

fn states(ev: &[Event]) -> Vec<(DeviceIdx, i64, DeviceState, Reason)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::State(s) => Some((s.device, s.ts_ms, s.to, s.reason)),
            _ => None,
        })
        .collect()
}

fn alarms(ev: &[Event]) -> Vec<(AlarmEventKind, String, i64)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Alarm(a) => Some((a.kind, a.alarm.rule.clone(), a.ts_ms)),
            _ => None,
        })
        .collect()
}

fn alarms_of(ev: &[Event], d: DeviceIdx) -> Vec<(AlarmEventKind, String, i64)> {
    let mine: Vec<Event> = ev
        .iter()
        .filter(|e| matches!(e, Event::Alarm(a) if a.alarm.device == d))
        .cloned()
        .collect();
    alarms(&mine)
}

fn states_of(ev: &[Event], d: DeviceIdx) -> Vec<(DeviceIdx, i64, DeviceState, Reason)> {
    states(ev).into_iter().filter(|s| s.0 == d).collect()
}

fn raised_id(ev: &[Event]) -> String {
    ev.iter()
        .find_map(|e| match e {
            Event::Alarm(a) if a.kind == AlarmEventKind::Raised => Some(a.alarm.id.clone()),
            _ => None,
        })
        .expect("an alarm was raised")
}

#[test]
fn devices_start_offline_and_become_intact_on_their_first_reading() {
    let mut f = Fx::new();
    let start = f.take();
    assert_eq!(
        states(&start),
        vec![
            (EL, T0, DeviceState::Offline, Reason::Start),
            (HX, T0, DeviceState::Offline, Reason::Start),
            (EL2, T0, DeviceState::Offline, Reason::Start),
        ]
    );
    let ev = f.el_ok(EL, T0 + 500);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 500, DeviceState::Intact, Reason::Reading)]
    );
    assert!(alarms(&ev).is_empty());
    assert_eq!(f.e.device(EL).state, DeviceState::Intact);
}

#[test]
fn equality_rule_raises_at_once_and_clears_when_the_condition_goes() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let ev = f.read(EL, T0 + 1_000, &[("entrapment", Value::Bool(true))]);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 1_000, DeviceState::Fault, Reason::Reading)]
    );
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "entrapment".into(), T0 + 1_000)]
    );
    let id = raised_id(&ev);
    assert_eq!(id, "jinxiu-1");
    let Event::Alarm(a) = &ev[1] else { panic!() };
    assert_eq!(a.alarm.message, "EL-1号困人");
    assert_eq!(a.alarm.severity, Severity::Critical);
    assert_eq!(
        (a.alarm.ack_target_ms, a.alarm.on_site_target_ms),
        (180_000, Some(1_800_000))
    );
    // The same condition again raises nothing (no duplicates).
    let ev = f.read(EL, T0 + 2_000, &[("entrapment", Value::Bool(true))]);
    assert!(ev.is_empty(), "{ev:?}");
    let ev = f.read(EL, T0 + 60_000, &[("entrapment", Value::Bool(false))]);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Cleared, "entrapment".into(), T0 + 60_000)]
    );
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 60_000, DeviceState::Intact, Reason::Reading)]
    );
    let a = f.e.alarm(&id).unwrap();
    assert_eq!(a.restore_s(), Some(59.0));
    // A new occurrence is a new alarm.
    let ev = f.read(EL, T0 + 70_000, &[("entrapment", Value::Bool(true))]);
    assert_eq!(raised_id(&ev), "jinxiu-2");
}

#[test]
fn inequality_rule_renders_the_value() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let ev = f.read(EL, T0 + 1, &[("fault_code", Value::Int(17))]);
    let Some(Event::Alarm(a)) = ev.iter().find(|e| matches!(e, Event::Alarm(_))) else {
        panic!("{ev:?}")
    };
    assert_eq!(a.alarm.rule, "fault");
    assert_eq!(a.alarm.message, "EL-1号故障（故障码17）");
    let ev = f.read(EL, T0 + 2, &[("fault_code", Value::Int(0))]);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Cleared, "fault".into(), T0 + 2)]
    );
}

#[test]
fn threshold_delay_edges_one_millisecond_either_side() {
    const D: i64 = 600_000;
    // Condition from T0; still holding 1 ms before the delay: nothing; at the delay: raised,
    // stamped T0 + delay.
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 39.0);
    assert!(alarms_of(&f.hx(T0 + D - 1, 39.5), HX).is_empty());
    let ev = f.hx(T0 + D, 39.5);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "low_supply_temp".into(), T0 + D)]
    );
    let Event::Alarm(a) = &ev[0] else { panic!() };
    assert_eq!(a.alarm.message, "HX-1号供水温度低（39.5°C）");

    // Same, completed by the clock alone (no further reading).
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 39.0);
    assert!(alarms_of(&f.tick(T0 + D - 1), HX).is_empty());
    assert_eq!(
        alarms_of(&f.tick(T0 + D + 250), HX),
        vec![(AlarmEventKind::Raised, "low_supply_temp".into(), T0 + D)]
    );

    // The condition stops holding 1 ms before the delay: nothing, ever.
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 39.0);
    f.hx(T0 + D - 1, 40.0);
    assert!(alarms_of(&f.tick(T0 + 2 * D), HX).is_empty());
}

#[test]
fn hysteresis_edges_and_flapping() {
    const D: i64 = 600_000;
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 39.0);
    let id = raised_id(&f.hx(T0 + D, 39.0));
    // Above the threshold but below the clear bound (42.0): stays active.
    for (i, t) in [40.0, 41.0, 41.999, 39.0, 41.9].iter().enumerate() {
        let ev = f.hx(T0 + D + 1 + i as i64, *t);
        assert!(alarms(&ev).is_empty(), "{t}: {ev:?}");
    }
    // At the bound: cleared.
    let ev = f.hx(T0 + D + 100, 42.0);
    assert_eq!(
        alarms(&ev),
        vec![(
            AlarmEventKind::Cleared,
            "low_supply_temp".into(),
            T0 + D + 100
        )]
    );
    assert!(f.e.alarm(&id).unwrap().cleared_ms.is_some());

    // Flapping around the threshold faster than the delay raises nothing.
    let mut f = Fx::new();
    f.take();
    let mut ts = T0;
    for i in 0..100 {
        let t = if i % 2 == 0 { 39.0 } else { 40.5 };
        let ev = f.hx(ts, t);
        assert!(alarms_of(&ev, HX).is_empty());
        ts += D / 3;
    }
    assert!(alarms_of(&f.tick(ts), HX).is_empty());
    assert_eq!(f.e.alarms().filter(|a| a.device == HX).count(), 0);
}

#[test]
fn acknowledgment_and_on_site_record_times_and_refuse_twice() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let id = raised_id(&f.read(EL, T0, &[("entrapment", Value::Bool(true))]));
    let a =
        f.e.acknowledge(&id, "张伟", None, T0 + 45_500, &mut f.out)
            .unwrap();
    assert_eq!(a.response_s(), Some(45.5));
    assert_eq!(
        alarms(&f.take()),
        vec![(
            AlarmEventKind::Acknowledged,
            "entrapment".into(),
            T0 + 45_500
        )]
    );
    let again = f.e.acknowledge(&id, "李娜", None, T0 + 50_000, &mut f.out);
    assert!(matches!(again, Err(CommandError::AlreadyAcknowledged { ref by, .. }) if by == "张伟"));
    assert!(f.take().is_empty(), "a refused command changes nothing");
    assert_eq!(
        f.e.acknowledge("jinxiu-999", "张伟", None, T0, &mut f.out),
        Err(CommandError::UnknownAlarm("jinxiu-999".into()))
    );
    assert!(matches!(
        f.e.acknowledge(&id, " ", None, T0, &mut f.out),
        Err(CommandError::Invalid(_))
    ));
    // On site with the operator's own (earlier) time, from an app that was offline.
    let a =
        f.e.on_site(
            &id,
            "维保王工",
            Some(T0 + 600_000),
            T0 + 900_000,
            &mut f.out,
        )
        .unwrap();
    assert_eq!(a.arrival_s(), Some(600.0));
    assert!(matches!(
        f.e.on_site(&id, "x", None, T0 + 1_000_000, &mut f.out),
        Err(CommandError::AlreadyOnSite { .. })
    ));
    // A ts before the raise, or far in the future, is refused.
    let id2 = raised_id(&f.read(EL2, T0 + 10, &[("entrapment", Value::Bool(true))]));
    assert!(matches!(
        f.e.acknowledge(&id2, "张伟", Some(T0), T0 + 20, &mut f.out),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(
        f.e.acknowledge(&id2, "张伟", Some(T0 + 3_600_000), T0 + 20, &mut f.out),
        Err(CommandError::Invalid(_))
    ));
}

#[test]
fn timeliness_ack_before_and_after_the_target_and_transient() {
    use crate::core::response::{classify, AlarmTimes, Timeliness};
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    f.el_ok(EL2, T0);
    // Acknowledged 1 ms inside the 180 s target → timely; the other 1 ms after → late.
    let a = raised_id(&f.read(EL, T0 + 1, &[("entrapment", Value::Bool(true))]));
    let b = raised_id(&f.read(EL2, T0 + 1, &[("entrapment", Value::Bool(true))]));
    f.e.acknowledge(&a, "op", None, T0 + 1 + 180_000, &mut f.out)
        .unwrap();
    f.e.acknowledge(&b, "op", None, T0 + 1 + 180_001, &mut f.out)
        .unwrap();
    let at = T0 + 10_000_000;
    assert_eq!(
        classify(&AlarmTimes::from(f.e.alarm(&a).unwrap()), at),
        Timeliness::Timely
    );
    assert_eq!(
        classify(&AlarmTimes::from(f.e.alarm(&b).unwrap()), at),
        Timeliness::Late
    );
    // Clears after 20 s, never acknowledged: transient.
    let c = raised_id(&f.read(EL, T0 + 1_000_000, &[("fault_code", Value::Int(3))]));
    f.read(EL, T0 + 1_020_000, &[("fault_code", Value::Int(0))]);
    assert_eq!(
        classify(&AlarmTimes::from(f.e.alarm(&c).unwrap()), at),
        Timeliness::Transient
    );
    // A cleared alarm can still be acknowledged (late acknowledgments are recorded).
    assert!(f
        .e
        .acknowledge(&c, "op", None, T0 + 1_030_000, &mut f.out)
        .is_ok());
}

#[test]
fn on_site_from_a_device_signal_also_acknowledges() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let id = raised_id(&f.read(EL, T0, &[("entrapment", Value::Bool(true))]));
    // The technician switches the car to inspection: on site (and acknowledged), and the
    // elevator is in maintenance; the critical alarm stays until the entrapment clears.
    let ev = f.read(
        EL,
        T0 + 300_000,
        &[("mode", Value::Str("inspection".into()))],
    );
    assert_eq!(
        alarms(&ev),
        vec![
            (
                AlarmEventKind::Acknowledged,
                "entrapment".into(),
                T0 + 300_000
            ),
            (AlarmEventKind::OnSite, "entrapment".into(), T0 + 300_000),
        ]
    );
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 300_000, DeviceState::Maintenance, Reason::Reading)]
    );
    let a = f.e.alarm(&id).unwrap();
    assert_eq!(a.acknowledged.as_ref().unwrap().by, "device");
    assert_eq!(a.arrival_s(), Some(300.0));
    let ev = f.read(EL, T0 + 400_000, &[("entrapment", Value::Bool(false))]);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Cleared, "entrapment".into(), T0 + 400_000)]
    );
}

#[test]
fn maintenance_window_entered_and_left_during_an_alarm() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let id = raised_id(&f.read(EL, T0 + 1_000, &[("fault_code", Value::Int(5))]));
    let w =
        f.e.add_maintenance(
            EL,
            T0 + 60_000,
            T0 + 3_600_000,
            "年检",
            "张伟",
            T0 + 2_000,
            &mut f.out,
        )
        .unwrap();
    assert_eq!(w.id, "jinxiu-M1");
    assert!(matches!(f.take()[..], [Event::Maintenance(_)]));
    // (Readings keep the heartbeat alive.)
    f.read(EL, T0 + 30_000, &[("fault_code", Value::Int(5))]);
    // The window starts on the clock: maintenance; the active alarm stays active.
    let ev = f.tick(T0 + 60_100);
    assert_eq!(
        states_of(&ev, EL),
        vec![(EL, T0 + 60_000, DeviceState::Maintenance, Reason::Window)]
    );
    assert!(alarms_of(&ev, EL).is_empty());
    assert!(f.e.alarm(&id).unwrap().is_active());
    // A new major condition during maintenance raises nothing; a critical one does.
    f.read(EL, T0 + 100_000, &[("fault_code", Value::Int(0))]);
    let ev = f.read(EL, T0 + 200_000, &[("fault_code", Value::Int(6))]);
    assert!(alarms(&ev).is_empty(), "{ev:?}");
    let ev = f.read(EL, T0 + 300_000, &[("entrapment", Value::Bool(true))]);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "entrapment".into(), T0 + 300_000)]
    );
    f.read(EL, T0 + 400_000, &[("entrapment", Value::Bool(false))]);
    f.read(EL, T0 + 3_590_000, &[("fault_code", Value::Int(6))]);
    // The window ends with the fault still there: fault, and the fault alarm is raised then.
    let ev = f.tick(T0 + 3_600_000);
    assert_eq!(
        states_of(&ev, EL),
        vec![(EL, T0 + 3_600_000, DeviceState::Fault, Reason::Window)]
    );
    assert_eq!(
        alarms_of(&ev, EL),
        vec![(AlarmEventKind::Raised, "fault".into(), T0 + 3_600_000)]
    );
    assert_eq!(f.e.windows().count(), 0);
    // Refused windows.
    assert!(f
        .e
        .add_maintenance(EL, T0, T0 - 1, "x", "y", T0, &mut f.out)
        .is_err());
    assert!(f
        .e
        .add_maintenance(EL, T0, T0 + 1, "x", "y", T0 + 10, &mut f.out)
        .is_err());
    assert!(f.e.end_maintenance("nope", T0, &mut f.out).is_err());
}

#[test]
fn ending_a_window_early_and_planned_windows() {
    let mut s = settings();
    s.planned = vec![PlannedMaintenance {
        device: EL2,
        start_ms: T0 + 1_000,
        end_ms: T0 + 10_000,
        reason: "计划保养".into(),
    }];
    let mut f = Fx::with(s, Restored::default(), T0);
    let start = f.take();
    assert!(start
        .iter()
        .any(|e| matches!(e, Event::Maintenance(w) if w.by == "config" && w.device == EL2)));
    f.el_ok(EL2, T0 + 500);
    let ev = f.tick(T0 + 1_000);
    assert_eq!(
        states(&ev),
        vec![(EL2, T0 + 1_000, DeviceState::Maintenance, Reason::Window)]
    );
    let id = f.e.windows().next().unwrap().id.clone();
    f.e.end_maintenance(&id, T0 + 4_000, &mut f.out).unwrap();
    let ev = f.take();
    assert!(matches!(&ev[0], Event::Maintenance(w) if w.end_ms == T0 + 4_000));
    assert_eq!(
        states(&ev),
        vec![(EL2, T0 + 4_000, DeviceState::Intact, Reason::Window)]
    );
}

#[test]
fn offline_by_heartbeat_and_by_status_message() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    // Heartbeat timeout 30 s: 1 ms before, nothing; after, offline stamped at the deadline.
    assert!(states_of(&f.tick(T0 + 29_999), EL).is_empty());
    let ev = f.tick(T0 + 30_200);
    assert_eq!(
        states_of(&ev, EL),
        vec![(EL, T0 + 30_000, DeviceState::Offline, Reason::Heartbeat)]
    );
    // The offline alarm after its 60 s delay (from the moment it went offline).
    assert!(alarms_of(&f.tick(T0 + 89_999), EL).is_empty());
    let ev = f.tick(T0 + 90_000);
    assert_eq!(
        alarms_of(&ev, EL),
        vec![(AlarmEventKind::Raised, "offline".into(), T0 + 90_000)]
    );
    let a = f.e.alarms().find(|a| a.device == EL).unwrap();
    assert_eq!(a.message, "EL-1号离线");
    // The never-seen EL-2 raised its offline alarm 60 s after the start.
    assert!(f
        .e
        .alarms()
        .any(|a| a.device == EL2 && a.raised_ms == T0 + 60_000));
    // Heard from again: intact, alarm cleared.
    let ev = f.el_ok(EL, T0 + 100_000);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 100_000, DeviceState::Intact, Reason::Reading)]
    );
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Cleared, "offline".into(), T0 + 100_000)]
    );

    // An `offline` status (MQTT last will) is offline at once; offline beats fault.
    f.read(EL, T0 + 110_000, &[("fault_code", Value::Int(2))]);
    let ev = f.status(EL, T0 + 120_000, Status::Offline);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 120_000, DeviceState::Offline, Reason::Status)]
    );
    let ev = f.status(EL, T0 + 125_000, Status::Online);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 125_000, DeviceState::Fault, Reason::Status)]
    );

    // Modbus devices have no heartbeat: the poller reports them offline.
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 50.0);
    assert!(states_of(&f.tick(T0 + 3_600_000), HX).is_empty());
    let ev = f.status(HX, T0 + 3_600_001, Status::Offline);
    assert_eq!(
        states(&ev),
        vec![(HX, T0 + 3_600_001, DeviceState::Offline, Reason::Status)]
    );
}

#[test]
fn season_rules_hold_only_in_the_heating_season() {
    let mut s = settings();
    // A season starting 3 days after T0 (2026-09-21 +08:00).
    s.season = Season::new(
        MonthDay::parse("09-24").unwrap(),
        MonthDay::parse("03-15").unwrap(),
        "Asia/Shanghai",
    )
    .unwrap();
    let mut f = Fx::with(s, Restored::default(), T0);
    f.take();
    let ev = f.read(
        HX,
        T0,
        &[
            ("supply_temp_c", Value::Float(50.0)),
            ("pump_running", Value::Bool(false)),
        ],
    );
    assert_eq!(
        states(&ev),
        vec![(HX, T0, DeviceState::Intact, Reason::Reading)]
    );
    // 2026-09-24T00:00+08:00 = 2026-09-23T16:00Z.
    let season_start = jiff::Timestamp::from_second(1_790_179_200)
        .unwrap()
        .as_millisecond();
    assert!(states_of(&f.tick(season_start - 1), HX).is_empty());
    let ev = f.tick(season_start);
    assert_eq!(
        states_of(&ev, HX),
        vec![(HX, season_start, DeviceState::Fault, Reason::Season)]
    );
}

#[test]
fn transitions_are_monotonic_and_alarms_keep_the_reading_time() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0 + 10_000);
    // A reading stamped earlier than the last transition (device clock behind).
    let ev = f.read(EL, T0 + 5_000, &[("fault_code", Value::Int(1))]);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 10_000, DeviceState::Fault, Reason::Reading)]
    );
    // The alarm keeps the reading's own time (DESIGN §4: raised at the reading's time).
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "fault".into(), T0 + 5_000)]
    );
}

/// The restart contract, at the engine level: the state journaled before a restart, the
/// gap accounted as `gateway_down`, and an active alarm that stays the same alarm (the
/// journal's own round trip is tested in `crate::sink::journal`).
#[test]
fn restart_in_the_middle_of_an_active_alarm() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let id = raised_id(&f.read(EL, T0 + 1_000, &[("entrapment", Value::Bool(true))]));
    let before = f.e.alarm(&id).unwrap().clone();
    // Down from T0 + 5 s (last alive) to T0 + 65 s.
    let restored = Restored {
        last_alive_ms: Some(T0 + 5_000),
        states: vec![RestoredState {
            device: EL,
            state: DeviceState::Fault,
            since_ms: T0 + 1_000,
        }],
        alarms: vec![before.clone()],
        windows: vec![],
        next_alarm_seq: 2,
        next_window_seq: 1,
    };
    let now = T0 + 65_000;
    let mut f = Fx::with(settings(), restored, now);
    let start = f.take();
    assert_eq!(
        states(&start),
        vec![
            (EL, T0 + 5_000, DeviceState::Offline, Reason::GatewayDown),
            (EL, now, DeviceState::Fault, Reason::Restored),
            (HX, now, DeviceState::Offline, Reason::Start),
            (EL2, now, DeviceState::Offline, Reason::Start),
        ]
    );
    assert!(alarms(&start).is_empty(), "no second raise: {start:?}");
    assert_eq!(f.e.alarm(&id), Some(&before));
    // Still trapped: nothing new. Then acknowledged, then cleared: the same alarm.
    assert!(alarms(&f.read(EL, now + 1, &[("entrapment", Value::Bool(true))])).is_empty());
    let a =
        f.e.acknowledge(&id, "张伟", None, now + 2, &mut f.out)
            .unwrap();
    assert_eq!(a.response_s(), Some(64.002));
    f.take();
    let ev = f.read(EL, now + 10, &[("entrapment", Value::Bool(false))]);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Cleared, "entrapment".into(), now + 10)]
    );
    // New alarms continue the sequence.
    let ev = f.read(EL, now + 20, &[("entrapment", Value::Bool(true))]);
    assert_eq!(raised_id(&ev), "jinxiu-2");
}

/// The same restart through the real journal: events appended as the core stage does, the
/// file closed and reopened, the engine rebuilt from what it restores.
#[test]
fn restart_through_the_journal_keeps_the_alarm_and_accounts_the_gap() {
    use crate::sink::journal::Journal;
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let id;
    {
        let mut j = Journal::open(dir.path()).unwrap();
        let r = j.restore(&inv, T0, 7 * 86_400_000).unwrap();
        j.begin_run(T0, "test", "0").unwrap();
        let mut out = Vec::new();
        let mut e = Engine::new(inv.clone(), settings(), r, T0, &mut out);
        let p = inv.get(EL).profile.clone();
        let v = |n: &str, x: Value| (p.signal_index(n).unwrap(), x);
        e.on_reading(
            EL,
            T0 + 1_000,
            &[
                v("fault_code", Value::Int(0)),
                v("entrapment", Value::Bool(false)),
            ],
            None,
            T0 + 1_000,
            &mut out,
        );
        e.on_reading(
            EL,
            T0 + 2_000,
            &[v("entrapment", Value::Bool(true))],
            None,
            T0 + 2_000,
            &mut out,
        );
        id = raised_id(&out);
        e.acknowledge(&id, "张伟", None, T0 + 3_000, &mut out)
            .unwrap();
        j.append(&inv, &out).unwrap();
        j.alive(T0 + 4_000).unwrap();
        // Killed here: no end_run.
    }
    let mut j = Journal::open(dir.path()).unwrap();
    let now = T0 + 60_000;
    let r = j.restore(&inv, now, 7 * 86_400_000).unwrap();
    assert_eq!(r.last_alive_ms, Some(T0 + 4_000));
    assert_eq!(r.next_alarm_seq, 2);
    j.begin_run(now, "test", "0").unwrap();
    let mut out = Vec::new();
    let mut e = Engine::new(inv.clone(), settings(), r, now, &mut out);
    assert_eq!(
        states_of(&out, EL),
        vec![
            (EL, T0 + 4_000, DeviceState::Offline, Reason::GatewayDown),
            (EL, now, DeviceState::Fault, Reason::Restored),
        ]
    );
    assert!(alarms(&out).is_empty(), "no second raise");
    let a = e.alarm(&id).unwrap();
    assert!(a.is_active());
    assert_eq!(a.acknowledged.as_ref().unwrap().by, "张伟");
    assert_eq!(a.response_s(), Some(1.0));
    j.append(&inv, &out).unwrap();
    out.clear();
    // The device recovers after the restart: the same alarm clears.
    let p = inv.get(EL).profile.clone();
    let i = p.signal_index("entrapment").unwrap();
    e.on_reading(
        EL,
        now + 1,
        &[(i, Value::Bool(false))],
        None,
        now + 1,
        &mut out,
    );
    assert_eq!(
        alarms(&out),
        vec![(AlarmEventKind::Cleared, "entrapment".into(), now + 1)]
    );
    j.append(&inv, &out).unwrap();
    let recs = j.alarms_raised(T0, now + 10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].id, id);
    assert_eq!(recs[0].cleared_ms, Some(now + 1));
    let t = j.transitions(T0, now + 10).unwrap();
    assert!(t
        .iter()
        .any(|t| t.device == "EL-1" && t.reason == Reason::GatewayDown && t.ts_ms == T0 + 4_000));
}

/// The shipped profiles (`configs/profiles/*.toml`) through the engine: a fire alarm uses
/// the `fire` class (60 s / 180 s), a heating loop's low supply temperature needs 10 min in
/// season and clears at the 42 °C hysteresis bound, an indoor sensor never faults.
#[test]
fn shipped_profiles_drive_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"
[gateway]
site = "jinxiu"
data_dir = "data"

[[devices]]
id = "FA-1"
name = "消防主机"
building = "消控室"
category = "fire_equipment"

[[devices]]
id = "HX-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"

[[devices]]
id = "T-1"
name = "101室温"
building = "1号楼"
category = "indoor_sensor"
"#,
    )
    .unwrap();
    let cfg =
        crate::config::load_with_env(&path, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let s = crate::run::engine_settings(&cfg);
    // 2026-12-01T00:00:00+08:00: in the Beijing heating season.
    let t0 = 1_796_054_400_000;
    let mut out = Vec::new();
    let mut e = Engine::new(cfg.inventory.clone(), s, Restored::default(), t0, &mut out);
    out.clear();
    let inv = cfg.inventory.clone();
    let read = |e: &mut Engine, d: &str, ts: i64, vals: &[(&str, Value)]| {
        let idx = inv.lookup("jinxiu", d).unwrap();
        let p = &inv.get(idx).profile;
        let v: Vec<(u16, Value)> = vals
            .iter()
            .map(|(n, x)| (p.signal_index(n).unwrap(), x.clone()))
            .collect();
        let mut out = Vec::new();
        e.on_reading(idx, ts, &v, None, ts, &mut out);
        out
    };
    let fa = inv.lookup("jinxiu", "FA-1").unwrap();
    let ev = read(
        &mut e,
        "FA-1",
        t0,
        &[
            ("fire_alarm", Value::Bool(true)),
            ("fault_count", Value::Int(0)),
            ("pump_auto", Value::Bool(true)),
            ("pressure_mpa", Value::Float(0.3)),
            ("power", Value::Str("main".into())),
        ],
    );
    let Some(Event::Alarm(a)) = ev.iter().find(|e| matches!(e, Event::Alarm(_))) else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (
            a.alarm.rule.as_str(),
            a.alarm.class.as_str(),
            a.alarm.severity
        ),
        ("fire_alarm", "fire", Severity::Critical)
    );
    assert_eq!(
        (a.alarm.ack_target_ms, a.alarm.on_site_target_ms),
        (60_000, Some(180_000))
    );
    assert_eq!(a.alarm.message, "消防主机发生火警，请立即确认");
    // A fire alarm is not a fault of the equipment: the panel stays intact.
    assert_eq!(e.device(fa).state, DeviceState::Intact);

    let hx = inv.lookup("jinxiu", "HX-1").unwrap();
    let ok = |t: f64| {
        vec![
            ("supply_temp_c", Value::Float(t)),
            ("return_temp_c", Value::Float(35.0)),
            ("pressure_mpa", Value::Float(0.4)),
            ("pump_running", Value::Bool(true)),
            ("fault_code", Value::Int(0)),
        ]
    };
    read(&mut e, "HX-1", t0, &ok(55.0));
    let ev = read(&mut e, "HX-1", t0 + 1_000, &ok(38.0));
    assert!(alarms(&ev).is_empty(), "delay first: {ev:?}");
    assert_eq!(e.device(hx).state, DeviceState::Fault);
    let ev = read(&mut e, "HX-1", t0 + 601_000, &ok(39.0));
    assert_eq!(
        alarms(&ev),
        vec![(
            AlarmEventKind::Raised,
            "low_supply_temp".into(),
            t0 + 601_000
        )]
    );
    assert!(alarms(&read(&mut e, "HX-1", t0 + 700_000, &ok(41.9))).is_empty());
    let ev = read(&mut e, "HX-1", t0 + 800_000, &ok(42.0));
    assert_eq!(
        alarms(&ev),
        vec![(
            AlarmEventKind::Cleared,
            "low_supply_temp".into(),
            t0 + 800_000
        )]
    );

    let t = inv.lookup("jinxiu", "T-1").unwrap();
    read(&mut e, "T-1", t0, &[("indoor_temp_c", Value::Float(12.0))]);
    assert_eq!(e.device(t).state, DeviceState::Intact);
    let _ = &mut out;
}

/// Heating facts: an indoor sensor's compliance changes (threshold `min_indoor_c`, 18.0 here)
/// and the hourly statistics of `hourly` signals, through the journal and back.
#[test]
fn compliance_changes_and_hourly_statistics_reach_the_journal() {
    use crate::sink::journal::Journal;
    let sig = |name: &str| Signal {
        name: name.into(),
        ty: SignalType::Float,
        unit: None,
        label: None,
    };
    let mut p = Profile::new(
        "indoor_sensor".into(),
        "室温".into(),
        Duration::from_secs(300),
        vec![sig("indoor_temp_c"), sig("humidity_pct")],
    );
    p.hourly = vec![0];
    let p = Arc::new(p);
    let inv = Arc::new(Inventory::new(vec![device("T-1", &p, false)]));
    let mut s = settings();
    s.min_indoor_c = 18.0;
    let mut out = Vec::new();
    let mut e = Engine::new(inv.clone(), s, Restored::default(), T0, &mut out);
    out.clear();
    let h = T0 - T0 % 3_600_000 + 3_600_000; // the next full hour
    let temps = [
        (h, 17.5),
        (h + 600_000, 18.0),
        (h + 1_200_000, 18.5),
        (h + 3_600_000, 17.0),
    ];
    for (ts, t) in temps {
        e.on_reading(
            0,
            ts,
            &[(0, Value::Float(t)), (1, Value::Float(40.0))],
            None,
            ts,
            &mut out,
        );
    }
    // A late reading for the first hour.
    e.on_reading(
        0,
        h + 1_800_000,
        &[(0, Value::Float(19.0))],
        None,
        h + 3_600_001,
        &mut out,
    );
    e.flush_hours(&mut out);
    let changes: Vec<(i64, Option<bool>)> = out
        .iter()
        .filter_map(|e| match e {
            Event::Compliance(c) => Some((c.ts_ms, c.compliant)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (h, Some(false)),
            (h + 600_000, Some(true)),
            (h + 3_600_000, Some(false))
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(&inv, &out).unwrap();
    let c = j.compliance(h + 700_000, h + 7_200_000).unwrap();
    // The last change before the period, then the one inside it.
    let got: Vec<(i64, Option<bool>)> = c.iter().map(|r| (r.ts_ms, r.compliant)).collect();
    assert_eq!(
        got,
        vec![(h + 600_000, Some(true)), (h + 3_600_000, Some(false))]
    );
    let hours = j
        .hourly_for_site("jinxiu", "indoor_temp_c", h, h + 7_200_000)
        .unwrap();
    assert_eq!(hours.len(), 2);
    // First hour: 17.5, 18.0, 18.5 and the late 19.0.
    assert_eq!((hours[0].hour_ms, hours[0].n), (h, 4));
    assert_eq!(hours[0].sum, 73.0);
    assert_eq!((hours[0].min, hours[0].max), (17.5, 19.0));
    assert_eq!(hours[0].signal, "indoor_temp_c");
    assert_eq!(
        (hours[1].hour_ms, hours[1].n, hours[1].sum),
        (h + 3_600_000, 1, 17.0)
    );
}
