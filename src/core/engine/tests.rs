//! Engine logic with an injected clock: every rule type, the edges of `delay` and
//! `hysteresis`, flapping, acknowledgment, transients, maintenance, offline, restart.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::core::season::{MonthDay, Season};
use crate::model::restore::RestoredState;
use crate::model::rules::{
    AlarmRule, Clear, Condition, Op, ResponseClass, Rules, Severity, StateRules, Trigger,
};
use crate::model::{Device, Status};
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
        polled: modbus,
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
                repair_target_ms: None,
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
        max_lateness_ms: DEFAULT_MAX_LATENESS_MS,
        monitored_since: Default::default(),
        three_minute_promise: Default::default(),
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

    /// A reading with event time `ts` that arrives at gateway time `now`.
    fn read_at(
        &mut self,
        d: DeviceIdx,
        ts: i64,
        values: &[(&str, Value)],
        now: i64,
    ) -> (Applied, Vec<Event>) {
        let p = self.e.inventory().get(d).profile.clone();
        let v: Vec<(u16, Value)> = values
            .iter()
            .map(|(n, v)| (p.signal_index(n).unwrap(), v.clone()))
            .collect();
        let a = self.e.on_reading(d, ts, &v, None, now, &mut self.out);
        (a, self.take())
    }

    /// Keeps a device's heartbeat alive with empty messages (no values changed) every 20 s in
    /// `[from, to)`, each arriving at its own `ts`; returns what they emitted.
    fn keep_alive(&mut self, d: DeviceIdx, from: i64, to: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        let mut ts = from;
        while ts < to {
            ev.extend(self.read(d, ts, &[]));
            ts += 20_000;
        }
        ev
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
    // DESIGN §4 (event time): `Engine::new` no longer emits a `start` transition for every
    // device at the gateway clock (the old assertion); a device's first state is decided in
    // event time.
    assert!(states(&f.take()).is_empty());
    // A first reading after the device entered the inventory (the start, T0): offline from
    // T0 (reason start, from none), then intact at the reading.
    let ev = f.el_ok(EL, T0 + 500);
    assert_eq!(
        states(&ev),
        vec![
            (EL, T0, DeviceState::Offline, Reason::Start),
            (EL, T0 + 500, DeviceState::Intact, Reason::Reading)
        ]
    );
    let from: Vec<Option<DeviceState>> = ev
        .iter()
        .filter_map(|e| match e {
            Event::State(s) => Some(s.from),
            _ => None,
        })
        .collect();
    assert_eq!(from, vec![None, Some(DeviceState::Offline)]);
    assert!(alarms(&ev).is_empty());
    assert_eq!(f.e.device(EL).state, DeviceState::Intact);
    // Never heard from: offline from T0, decided once its heartbeat timeout from T0 (30 s) is
    // concluded, i.e. max_lateness (2 s) later by the clock: until then a backlog reading from
    // before the start may still begin its timeline.
    assert!(states_of(&f.tick(T0 + 31_999), EL2).is_empty());
    assert_eq!(
        states_of(&f.tick(T0 + 32_000), EL2),
        vec![(EL2, T0, DeviceState::Offline, Reason::Start)]
    );
    assert_eq!(f.e.device(EL2).since_ms, T0);
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
    // (Event time: a 58 s gap would now be seen as offline at T0 + 32 s; keep it reporting.)
    let ev = f.keep_alive(EL, T0 + 20_000, T0 + 60_000);
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
    // The clock concludes a moment max_lateness (2 s) after it; the alarm is still stamped at
    // exactly T0 + delay.
    assert!(alarms_of(&f.tick(T0 + D - 1 + DEFAULT_MAX_LATENESS_MS), HX).is_empty());
    assert_eq!(
        alarms_of(&f.tick(T0 + D + DEFAULT_MAX_LATENESS_MS), HX),
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
    f.take();
    // (Event time: EL keeps reporting, or the 1000 s gap would make it offline and raise
    // its offline alarm before the fault below.)
    assert!(alarms(&f.keep_alive(EL, T0 + 20_000, T0 + 1_000_000)).is_empty());
    // Clears after 20 s, never acknowledged: transient.
    let c = raised_id(&f.read(EL, T0 + 1_000_000, &[("fault_code", Value::Int(3))]));
    f.read(EL, T0 + 1_020_000, &[("fault_code", Value::Int(0))]);
    assert_eq!(
        classify(&AlarmTimes::from(f.e.alarm(&c).unwrap()), at),
        Timeliness::Transient
    );
    // A cleared alarm can still be acknowledged (late acknowledgments are recorded), within
    // its target age even; it stays transient (DESIGN §4: cleared before anyone
    // acknowledged it).
    assert!(f
        .e
        .acknowledge(&c, "op", None, T0 + 1_030_000, &mut f.out)
        .is_ok());
    assert_eq!(
        classify(&AlarmTimes::from(f.e.alarm(&c).unwrap()), at),
        Timeliness::Transient
    );
}

#[test]
fn on_site_from_a_device_signal_also_acknowledges() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let id = raised_id(&f.read(EL, T0, &[("entrapment", Value::Bool(true))]));
    // (Event time: a silent gap longer than the heartbeat would be offline; keep reporting.)
    assert!(alarms(&f.keep_alive(EL, T0 + 20_000, T0 + 300_000)).is_empty());
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
    assert!(f.keep_alive(EL, T0 + 320_000, T0 + 400_000).is_empty());
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
    f.keep_alive(EL, T0 + 50_000, T0 + 60_000);
    // The window starts at exactly its start, concluded by the clock max_lateness (2 s)
    // later: maintenance; the active alarm stays active.
    assert!(states_of(&f.tick(T0 + 61_999), EL).is_empty());
    let ev = f.tick(T0 + 62_000);
    assert_eq!(
        states_of(&ev, EL),
        vec![(EL, T0 + 60_000, DeviceState::Maintenance, Reason::Window)]
    );
    assert!(alarms_of(&ev, EL).is_empty());
    assert!(f.e.alarm(&id).unwrap().is_active());
    // A new major condition during maintenance raises nothing; a critical one does.
    f.keep_alive(EL, T0 + 70_000, T0 + 100_000);
    f.read(EL, T0 + 100_000, &[("fault_code", Value::Int(0))]);
    f.keep_alive(EL, T0 + 120_000, T0 + 200_000);
    let ev = f.read(EL, T0 + 200_000, &[("fault_code", Value::Int(6))]);
    assert!(alarms(&ev).is_empty(), "{ev:?}");
    f.keep_alive(EL, T0 + 220_000, T0 + 300_000);
    let ev = f.read(EL, T0 + 300_000, &[("entrapment", Value::Bool(true))]);
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "entrapment".into(), T0 + 300_000)]
    );
    f.keep_alive(EL, T0 + 320_000, T0 + 400_000);
    f.read(EL, T0 + 400_000, &[("entrapment", Value::Bool(false))]);
    let ev = f.keep_alive(EL, T0 + 420_000, T0 + 3_590_000);
    assert!(states(&ev).is_empty() && alarms(&ev).is_empty(), "{ev:?}");
    f.read(EL, T0 + 3_590_000, &[("fault_code", Value::Int(6))]);
    // The window ends with the fault still there: fault, and the fault alarm is raised then
    // (at exactly the end, concluded 2 s later).
    assert!(states_of(&f.tick(T0 + 3_601_999), EL).is_empty());
    let ev = f.tick(T0 + 3_602_000);
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
    assert!(f.e.end_maintenance("nope", T0, &mut f.out).is_err());
    // A window that ended in the past used to be refused; DESIGN §4 now accepts it
    // (recorded afterwards): journaled, and the transitions already made stay as they are.
    let w =
        f.e.add_maintenance(EL, T0, T0 + 1, "x", "y", T0 + 3_602_010, &mut f.out)
            .unwrap();
    assert_eq!(w.entered_ms, T0 + 3_602_010);
    let ev = f.take();
    assert!(
        matches!(&ev[..], [Event::Maintenance(m)] if m.id == w.id),
        "{ev:?}"
    );
    assert_eq!(f.e.device(EL).state, DeviceState::Fault);
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
    // At exactly its start, concluded by the clock max_lateness (2 s) later.
    assert!(states_of(&f.tick(T0 + 2_999), EL2).is_empty());
    let ev = f.tick(T0 + 3_000);
    assert_eq!(
        states_of(&ev, EL2),
        vec![(EL2, T0 + 1_000, DeviceState::Maintenance, Reason::Window)]
    );
    let id = f.e.windows().next().unwrap().id.clone();
    // Config windows are named by site, device and start (added once across restarts).
    assert_eq!(id, format!("config:jinxiu:EL-2:{}", T0 + 1_000));
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
    // Heartbeat timeout 30 s, concluded by the clock max_lateness (2 s) later: 1 ms before
    // that, nothing; then offline stamped at exactly the deadline.
    assert!(states_of(&f.tick(T0 + 31_999), EL).is_empty());
    let ev = f.tick(T0 + 32_000);
    assert_eq!(
        states_of(&ev, EL),
        vec![(EL, T0 + 30_000, DeviceState::Offline, Reason::Heartbeat)]
    );
    // The offline alarm after its 60 s delay (from the moment it went offline).
    assert!(alarms_of(&f.tick(T0 + 91_999), EL).is_empty());
    let ev = f.tick(T0 + 92_000);
    assert_eq!(
        alarms_of(&ev, EL),
        vec![(AlarmEventKind::Raised, "offline".into(), T0 + 90_000)]
    );
    let a = f.e.alarms().find(|a| a.device == EL).unwrap();
    assert_eq!(a.message, "EL-1号离线");
    // The never-seen EL-2 is offline from the start (T0); its offline alarm's delay starts
    // at its heartbeat timeout from the start (T0 + 30 s), not at the start itself (the old
    // T0 + 60 s): raised at T0 + 90 s.
    assert_eq!(
        f.e.alarms()
            .filter(|a| a.device == EL2)
            .map(|a| (a.rule.as_str(), a.raised_ms))
            .collect::<Vec<_>>(),
        vec![("offline", T0 + 90_000)]
    );
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
    // At exactly the boundary, concluded by the clock max_lateness (2 s) later.
    assert!(states_of(&f.tick(season_start - 1 + DEFAULT_MAX_LATENESS_MS), HX).is_empty());
    let ev = f.tick(season_start + DEFAULT_MAX_LATENESS_MS);
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
    // A reading stamped earlier than the last applied one (device clock behind, or a
    // reordered delivery). The old engine applied it (fault stamped at the last transition,
    // alarm at the reading's time); DESIGN §4 now: readings of a device are applied in `ts`
    // order, an older one is `out_of_order` and changes nothing.
    let (applied, ev) = f.read_at(
        EL,
        T0 + 5_000,
        &[("fault_code", Value::Int(1))],
        T0 + 10_001,
    );
    assert_eq!(applied, Applied::OutOfOrder);
    assert!(ev.is_empty(), "{ev:?}");
    let d = f.e.device(EL);
    assert_eq!((d.state, d.since_ms), (DeviceState::Intact, T0 + 10_000));
    assert_eq!(d.last_seen_ms, Some(T0 + 10_000));
    assert_eq!(f.e.values(EL)[1], Some(Value::Int(0)));
    // A later fault is applied, stamped at its own time, and so is its alarm.
    let ev = f.read(EL, T0 + 12_000, &[("fault_code", Value::Int(1))]);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 12_000, DeviceState::Fault, Reason::Reading)]
    );
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "fault".into(), T0 + 12_000)]
    );
}

/// The restart contract, at the engine level: the position, values and state journaled
/// before a restart, an active alarm that stays the same alarm, and the down time accounted
/// by the same heartbeat rule as any silence (the journal's own round trip is tested in
/// `crate::journal`).
#[test]
fn restart_in_the_middle_of_an_active_alarm() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let id = raised_id(&f.read(EL, T0 + 1_000, &[("entrapment", Value::Bool(true))]));
    let before = f.e.alarm(&id).unwrap().clone();
    let progress = f.e.take_progress();
    let p = progress
        .iter()
        .find(|p| p.device == EL)
        .expect("EL's position");
    assert_eq!((p.last_ts_ms, p.applied_ms), (Some(T0 + 1_000), T0 + 1_000));
    // Down from T0 + 5 s (last alive) to T0 + 65 s; EL sent nothing meanwhile.
    let restored = Restored {
        last_alive_ms: Some(T0 + 5_000),
        states: vec![RestoredState {
            device: EL,
            state: DeviceState::Fault,
            since_ms: T0 + 1_000,
        }],
        alarms: vec![before.clone()],
        windows: vec![],
        progress,
        next_alarm_seq: 2,
        next_window_seq: 1,
    };
    let now = T0 + 65_000;
    let mut f = Fx::with(settings(), restored, now);
    // The old engine emitted `gateway_down` at the last alive moment and `restored` at the
    // restart; DESIGN §4 now: a restart is not special, nothing is emitted for it.
    let start = f.take();
    assert!(start.is_empty(), "{start:?}");
    assert_eq!(f.e.alarm(&id), Some(&before));
    let d = f.e.device(EL);
    assert_eq!((d.state, d.since_ms), (DeviceState::Fault, T0 + 1_000));
    // Still trapped: nothing new, but EL was silent for longer than its heartbeat (30 s):
    // offline from its last ts + 30 s, by the same rule as without a restart.
    let ev = f.read(EL, now + 1, &[("entrapment", Value::Bool(true))]);
    assert_eq!(
        states(&ev),
        vec![
            (EL, T0 + 31_000, DeviceState::Offline, Reason::Heartbeat),
            (EL, now + 1, DeviceState::Fault, Reason::Reading),
        ]
    );
    // (Its offline alarm would be due at T0 + 91 s: the reading came first.)
    assert!(alarms(&ev).is_empty(), "{ev:?}");
    // Then acknowledged, then cleared: the same alarm.
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
    use crate::journal::Journal;
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
        // As the core stage does with the events: each device's position.
        j.save_progress(&inv, &e.take_progress()).unwrap();
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
    let p = r
        .progress
        .iter()
        .find(|p| p.device == EL)
        .expect("EL's position");
    assert_eq!((p.last_ts_ms, p.applied_ms), (Some(T0 + 2_000), T0 + 2_000));
    let mut e = Engine::new(inv.clone(), settings(), r, now, &mut out);
    // The old engine emitted `gateway_down` at the last alive moment (T0 + 4 s) and
    // `restored` at the restart; DESIGN §4 now: nothing for the restart itself, the gap is
    // accounted by the heartbeat rule below.
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(e.device(EL).state, DeviceState::Fault);
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
    // Silent since its last reading (T0 + 2 s): offline at T0 + 32 s, back at the reading.
    assert_eq!(
        states_of(&out, EL),
        vec![
            (EL, T0 + 32_000, DeviceState::Offline, Reason::Heartbeat),
            (EL, now + 1, DeviceState::Intact, Reason::Reading),
        ]
    );
    j.append(&inv, &out).unwrap();
    let recs = j.alarms_raised(T0, now + 10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].id, id);
    assert_eq!(recs[0].cleared_ms, Some(now + 1));
    let t = j.transitions(T0, now + 10).unwrap();
    assert!(t
        .iter()
        .any(|t| t.device == "EL-1" && t.reason == Reason::Heartbeat && t.ts_ms == T0 + 32_000));
    assert!(!t
        .iter()
        .any(|t| matches!(t.reason, Reason::GatewayDown | Reason::Restored)));
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
    let s = crate::config::engine_settings(&cfg);
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
    // (Event time: a 600 s silence would be offline after the 90 s heartbeat; it keeps
    // reporting, values unchanged.)
    let keep_alive = |e: &mut Engine, from: i64, to: i64| {
        let mut ev = Vec::new();
        for ts in (from..to).step_by(30_000) {
            ev.extend(read(e, "HX-1", ts, &[]));
        }
        ev
    };
    let ev = keep_alive(&mut e, t0 + 31_000, t0 + 601_000);
    assert!(alarms(&ev).is_empty() && states(&ev).is_empty(), "{ev:?}");
    // Raised at exactly the first ts + 10 min (the reading at that ts does not cancel it).
    let ev = read(&mut e, "HX-1", t0 + 601_000, &ok(39.0));
    assert_eq!(
        alarms(&ev),
        vec![(
            AlarmEventKind::Raised,
            "low_supply_temp".into(),
            t0 + 601_000
        )]
    );
    keep_alive(&mut e, t0 + 650_000, t0 + 700_000);
    assert!(alarms(&read(&mut e, "HX-1", t0 + 700_000, &ok(41.9))).is_empty());
    keep_alive(&mut e, t0 + 750_000, t0 + 800_000);
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
    use crate::journal::Journal;
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
    // A late reading for the first hour. The old engine added it to that hour's statistics;
    // DESIGN §4 now: older than a reading already applied (h + 1 h), so `out_of_order`: it
    // goes to the store but changes nothing here (no compliance change, no hourly figure).
    assert_eq!(
        e.on_reading(
            0,
            h + 1_800_000,
            &[(0, Value::Float(19.0))],
            None,
            h + 3_600_001,
            &mut out,
        ),
        Applied::OutOfOrder
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
    // First hour: 17.5, 18.0, 18.5 (not the out-of-order 19.0).
    assert_eq!((hours[0].hour_ms, hours[0].n), (h, 3));
    assert_eq!(hours[0].sum, 54.0);
    assert_eq!((hours[0].min, hours[0].max), (17.5, 18.5));
    assert_eq!(hours[0].signal, "indoor_temp_c");
    assert_eq!(
        (hours[1].hour_ms, hours[1].n, hours[1].sum),
        (h + 3_600_000, 1, 17.0)
    );
}

// ---- Event time (DESIGN §4): each expected value below is computed by hand from the
// profiles above (EL: heartbeat 30 s, offline alarm delay 60 s; HX: Modbus, low supply
// temperature delay 600 s) and max_lateness = 2 s.

/// A healthy elevator reading's values.
fn el_ok_values() -> Vec<(&'static str, Value)> {
    vec![
        ("mode", Value::Str("normal".into())),
        ("fault_code", Value::Int(0)),
        ("entrapment", Value::Bool(false)),
    ]
}

/// A heating loop reading's values (pump running).
fn hx_values(t: f64) -> Vec<(&'static str, Value)> {
    vec![
        ("supply_temp_c", Value::Float(t)),
        ("pump_running", Value::Bool(true)),
    ]
}

/// (1) A heartbeat timeout is stamped at exactly last ts + timeout; the clock concludes it
/// only max_lateness after (counted from the reading's arrival), a later reading at once.
#[test]
fn heartbeat_offline_at_exactly_last_ts_plus_timeout() {
    // By the clock. EL's reading of T0 arrives at T0 + 0.5 s: T0 + 30 s is concluded once
    // nothing came for 30 s + 2 s after that arrival, i.e. at T0 + 32.5 s.
    let mut f = Fx::new();
    f.take();
    let (a, ev) = f.read_at(EL, T0, &el_ok_values(), T0 + 500);
    assert_eq!(a, Applied::Applied);
    assert_eq!(
        states(&ev),
        vec![(EL, T0, DeviceState::Intact, Reason::Reading)]
    );
    assert!(states_of(&f.tick(T0 + 30_000), EL).is_empty());
    assert!(states_of(&f.tick(T0 + 32_499), EL).is_empty());
    assert_eq!(
        states_of(&f.tick(T0 + 32_500), EL),
        vec![(EL, T0 + 30_000, DeviceState::Offline, Reason::Heartbeat)]
    );
    assert_eq!(f.e.device(EL).since_ms, T0 + 30_000);
    // Its offline alarm 60 s later, concluded the same way.
    assert!(alarms_of(&f.tick(T0 + 92_499), EL).is_empty());
    assert_eq!(
        alarms_of(&f.tick(T0 + 92_500), EL),
        vec![(AlarmEventKind::Raised, "offline".into(), T0 + 90_000)]
    );

    // By a later reading, with no tick at all.
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL2, T0);
    let ev = f.el_ok(EL2, T0 + 45_000);
    assert_eq!(
        states(&ev),
        vec![
            (EL2, T0 + 30_000, DeviceState::Offline, Reason::Heartbeat),
            (EL2, T0 + 45_000, DeviceState::Intact, Reason::Reading),
        ]
    );
    // (Its offline alarm would be due at T0 + 90 s.)
    assert!(alarms(&ev).is_empty(), "{ev:?}");
    // A reading at exactly last ts + timeout: the latest reading at that moment is not older
    // than the timeout, so no offline.
    let ev = f.el_ok(EL2, T0 + 75_000);
    assert!(ev.is_empty(), "{ev:?}");
    // A longer silence: offline at T0 + 105 s and its alarm at T0 + 165 s, both fired by the
    // reading at T0 + 200 s, which then ends them.
    let ev = f.el_ok(EL2, T0 + 200_000);
    assert_eq!(
        states(&ev),
        vec![
            (EL2, T0 + 105_000, DeviceState::Offline, Reason::Heartbeat),
            (EL2, T0 + 200_000, DeviceState::Intact, Reason::Reading),
        ]
    );
    assert_eq!(
        alarms(&ev),
        vec![
            (AlarmEventKind::Raised, "offline".into(), T0 + 165_000),
            (AlarmEventKind::Cleared, "offline".into(), T0 + 200_000),
        ]
    );
}

/// (2) The same readings replayed in real time (each arriving at its ts, a tick every second)
/// and all at once (arriving 10 days later, device after device, one final tick) give the
/// same transitions and alarms.
#[test]
fn fast_replay_equals_real_time() {
    let s = |x: i64| T0 + x * 1_000;
    type Script = Vec<(DeviceIdx, i64, Vec<(&'static str, Value)>)>;
    let mut script: Script = vec![
        (EL, s(0), el_ok_values()),
        (EL, s(20), el_ok_values()),
        (EL, s(40), vec![("fault_code", Value::Int(4))]),
        // 60 s gap: offline at 70 s; the offline alarm (due 130 s) cancelled by this reading.
        (EL, s(100), vec![("fault_code", Value::Int(0))]),
        // 100 s gap: offline at 130 s, offline alarm at 190 s.
        (EL, s(200), el_ok_values()),
        (EL, s(229), el_ok_values()),
        // Then silent: offline at 259 s, offline alarm at 319 s.
        // First heard at 50 s: offline from the start (T0), its heartbeat ran out at 30 s.
        (EL2, s(50), el_ok_values()),
        (EL2, s(80), vec![("entrapment", Value::Bool(true))]),
        // Exactly 30 s later: no offline.
        (EL2, s(110), vec![("entrapment", Value::Bool(false))]),
        // Then silent: offline at 140 s, offline alarm at 200 s.
        (HX, s(0), hx_values(50.0)),
        (HX, s(60), hx_values(39.0)),
        // Cancels the delay that would have been due at 660 s.
        (HX, s(300), hx_values(41.0)),
        // Due at 1000 s, after the last reading.
        (HX, s(400), hx_values(38.0)),
        (HX, s(700), hx_values(39.5)),
    ];

    // Real time.
    let mut f = Fx::new();
    f.take();
    let mut real = Vec::new();
    let mut now = T0;
    while now <= s(1_300) {
        for (d, ts, v) in script.iter().filter(|r| r.1 == now) {
            let (a, ev) = f.read_at(*d, *ts, v, now);
            assert_eq!(a, Applied::Applied);
            real.extend(ev);
        }
        real.extend(f.tick(now));
        now += 1_000;
    }

    // As fast as possible: a backlog arriving long after, one device after the other.
    script.sort_by_key(|r| [HX, EL2, EL].iter().position(|d| *d == r.0));
    let mut f = Fx::new();
    f.take();
    let arrival = T0 + 10 * 86_400_000;
    let mut fast = Vec::new();
    for (d, ts, v) in &script {
        let (a, ev) = f.read_at(*d, *ts, v, arrival);
        assert_eq!(a, Applied::Applied);
        fast.extend(ev);
    }
    // Concludes every device at least 598 s past its last reading (the real run: 1298 s).
    fast.extend(f.tick(arrival + 600_000));

    use AlarmEventKind::{Cleared, Raised};
    use DeviceState::{Fault, Intact, Offline};
    assert_eq!(
        states_of(&real, EL),
        vec![
            (EL, s(0), Intact, Reason::Reading),
            (EL, s(40), Fault, Reason::Reading),
            (EL, s(70), Offline, Reason::Heartbeat),
            (EL, s(100), Intact, Reason::Reading),
            (EL, s(130), Offline, Reason::Heartbeat),
            (EL, s(200), Intact, Reason::Reading),
            (EL, s(259), Offline, Reason::Heartbeat),
        ]
    );
    assert_eq!(
        alarms_of(&real, EL),
        vec![
            (Raised, "fault".into(), s(40)),
            (Cleared, "fault".into(), s(100)),
            (Raised, "offline".into(), s(190)),
            (Cleared, "offline".into(), s(200)),
            (Raised, "offline".into(), s(319)),
        ]
    );
    assert_eq!(
        states_of(&real, EL2),
        vec![
            (EL2, s(0), Offline, Reason::Start),
            (EL2, s(50), Intact, Reason::Reading),
            (EL2, s(80), Fault, Reason::Reading),
            (EL2, s(110), Intact, Reason::Reading),
            (EL2, s(140), Offline, Reason::Heartbeat),
        ]
    );
    assert_eq!(
        alarms_of(&real, EL2),
        vec![
            (Raised, "entrapment".into(), s(80)),
            (Cleared, "entrapment".into(), s(110)),
            (Raised, "offline".into(), s(200)),
        ]
    );
    assert_eq!(
        states_of(&real, HX),
        vec![
            (HX, s(0), Intact, Reason::Reading),
            (HX, s(60), Fault, Reason::Reading),
            (HX, s(300), Intact, Reason::Reading),
            (HX, s(400), Fault, Reason::Reading),
        ]
    );
    assert_eq!(
        alarms_of(&real, HX),
        vec![(Raised, "low_supply_temp".into(), s(1_000))]
    );
    for d in [EL, EL2, HX] {
        assert_eq!(states_of(&fast, d), states_of(&real, d), "device {d}");
        assert_eq!(alarms_of(&fast, d), alarms_of(&real, d), "device {d}");
    }
}

/// (3) A reading older than the last applied one is out of order; one not older than that but
/// older than a moment already concluded (a timer fired) is late; neither changes anything.
#[test]
fn out_of_order_and_late_readings_change_nothing() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    f.el_ok(EL, T0 + 10_000);
    let fault = [("fault_code", Value::Int(1))];
    let (a, ev) = f.read_at(EL, T0 + 5_000, &fault, T0 + 10_500);
    assert_eq!(a, Applied::OutOfOrder);
    assert!(ev.is_empty(), "{ev:?}");
    // EL's heartbeat runs out at T0 + 40 s, concluded at T0 + 42 s (the out-of-order reading
    // moved nothing, not even the conclusion).
    assert!(states_of(&f.tick(T0 + 41_999), EL).is_empty());
    assert_eq!(
        states_of(&f.tick(T0 + 42_000), EL),
        vec![(EL, T0 + 40_000, DeviceState::Offline, Reason::Heartbeat)]
    );
    // Not older than the last reading (T0 + 10 s), older than the concluded T0 + 40 s: late.
    let (a, ev) = f.read_at(EL, T0 + 39_999, &fault, T0 + 42_100);
    assert_eq!(a, Applied::Late);
    assert!(ev.is_empty(), "{ev:?}");
    // Older than the last reading as well: out of order.
    let (a, ev) = f.read_at(EL, T0 + 9_999, &fault, T0 + 42_200);
    assert_eq!(a, Applied::OutOfOrder);
    assert!(ev.is_empty(), "{ev:?}");
    let d = f.e.device(EL);
    assert_eq!(
        (d.state, d.since_ms, d.last_seen_ms),
        (DeviceState::Offline, T0 + 40_000, Some(T0 + 10_000))
    );
    assert_eq!(f.e.values(EL)[1], Some(Value::Int(0)));
    // After the concluded moment: applied.
    let (a, ev) = f.read_at(EL, T0 + 41_000, &fault, T0 + 42_300);
    assert_eq!(a, Applied::Applied);
    assert_eq!(
        states(&ev),
        vec![(EL, T0 + 41_000, DeviceState::Fault, Reason::Reading)]
    );
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "fault".into(), T0 + 41_000)]
    );
}

/// (4) Readings from before the engine start (a broker's backlog) are applied at their own
/// ts: the first transition is at the reading, no `start`; timers run in their time too.
#[test]
fn readings_from_before_the_start_are_applied_at_their_own_time() {
    let mut s = settings();
    s.monitored_since.insert(EL2, T0 - 86_400_000);
    let mut f = Fx::with(s, Restored::default(), T0);
    assert!(f.take().is_empty());
    // EL entered the inventory at the start (T0); its reading of an hour before arrives now.
    let (a, ev) = f.read_at(EL, T0 - 3_600_000, &el_ok_values(), T0 + 100);
    assert_eq!(a, Applied::Applied);
    assert!(
        matches!(&ev[..], [Event::State(s)] if s.from.is_none()
            && (s.ts_ms, s.to, s.reason) == (T0 - 3_600_000, DeviceState::Intact, Reason::Reading)),
        "{ev:?}"
    );
    assert!(f
        .read_at(EL, T0 - 3_590_000, &el_ok_values(), T0 + 200)
        .1
        .is_empty());
    // A 50 s gap in the backlog: offline at its last ts + 30 s, then the fault and its alarm
    // at the reading's own time.
    let (_, ev) = f.read_at(
        EL,
        T0 - 3_540_000,
        &[("fault_code", Value::Int(7))],
        T0 + 300,
    );
    assert_eq!(
        states(&ev),
        vec![
            (EL, T0 - 3_560_000, DeviceState::Offline, Reason::Heartbeat),
            (EL, T0 - 3_540_000, DeviceState::Fault, Reason::Reading),
        ]
    );
    assert_eq!(
        alarms(&ev),
        vec![(AlarmEventKind::Raised, "fault".into(), T0 - 3_540_000)]
    );
    // EL2 monitored since a day before the start; a reading from before even that starts it
    // at its own ts, without a `start` offline. (It must arrive within EL2's heartbeat plus
    // max_lateness after the start: by then the clock concludes that EL2, never heard from,
    // was offline from its `monitored_since`, and an older reading would be late.)
    let (a, ev) = f.read_at(EL2, T0 - 86_401_000, &el_ok_values(), T0 + 250);
    assert_eq!(a, Applied::Applied);
    assert_eq!(
        states(&ev),
        vec![(EL2, T0 - 86_401_000, DeviceState::Intact, Reason::Reading)]
    );
    // EL's next timeout (T0 − 3510 s) is concluded 30 s + 2 s after its last reading
    // arrived (T0 + 0.3 s).
    assert!(states_of(&f.tick(T0 + 32_299), EL).is_empty());
    assert_eq!(
        states_of(&f.tick(T0 + 32_300), EL),
        vec![(EL, T0 - 3_510_000, DeviceState::Offline, Reason::Heartbeat)]
    );
}

/// (5) A restart through `Restored { progress, states, .. }` goes on exactly: a device whose
/// readings of the down time the broker kept was never offline; a silent one is offline from
/// its last ts + timeout; nothing is emitted for the restart itself.
#[test]
fn a_restart_goes_on_from_the_journaled_progress() {
    let mut a = Fx::new();
    a.take();
    a.el_ok(EL, T0);
    a.el_ok(EL2, T0);
    a.hx(T0, 50.0);
    a.el_ok(EL, T0 + 20_000);
    a.el_ok(EL2, T0 + 20_000);
    let id = raised_id(&a.read(EL2, T0 + 25_000, &[("entrapment", Value::Bool(true))]));
    // The gateway stops at T0 + 30 s.
    assert!(states(&a.tick(T0 + 30_000)).is_empty());
    let journaled = [EL, HX, EL2]
        .iter()
        .map(|&d| {
            let v = a.e.device(d);
            RestoredState {
                device: d,
                state: v.state,
                since_ms: v.since_ms,
            }
        })
        .collect();
    let restored = Restored {
        last_alive_ms: Some(T0 + 30_000),
        states: journaled,
        progress: a.e.take_progress(),
        alarms: a.e.alarms().cloned().collect(),
        windows: vec![],
        next_alarm_seq: 2,
        next_window_seq: 1,
    };
    // Back at T0 + 300 s. The broker kept EL's readings of the down time (every 20 s); EL-2
    // sent nothing; HX (Modbus) was not polled.
    let now = T0 + 300_000;
    let mut b = Fx::with(settings(), restored, now);
    let mut ev = b.take();
    assert!(ev.is_empty(), "nothing for the restart itself: {ev:?}");
    for ts in (T0 + 40_000..=T0 + 280_000).step_by(20_000) {
        let (a, e) = b.read_at(EL, ts, &el_ok_values(), now);
        assert_eq!(a, Applied::Applied);
        ev.extend(e);
    }
    ev.extend(b.el_ok(EL, now));
    ev.extend(b.hx(now, 50.0));
    for t in (now + 1_000..=now + 100_000).step_by(1_000) {
        if (t - T0) % 20_000 == 0 {
            ev.extend(b.el_ok(EL, t));
        }
        ev.extend(b.tick(t));
    }
    // EL kept reporting: no offline time at all, intact since T0.
    assert!(states_of(&ev, EL).is_empty(), "{ev:?}");
    assert!(alarms_of(&ev, EL).is_empty(), "{ev:?}");
    let d = b.e.device(EL);
    assert_eq!((d.state, d.since_ms), (DeviceState::Intact, T0));
    // EL-2 was silent since T0 + 25 s: offline at T0 + 55 s (concluded at T0 + 332 s, 32 s
    // after the restart), its offline alarm at T0 + 115 s; the entrapment alarm goes on.
    assert_eq!(
        states_of(&ev, EL2),
        vec![(EL2, T0 + 55_000, DeviceState::Offline, Reason::Heartbeat)]
    );
    assert_eq!(
        alarms_of(&ev, EL2),
        vec![(AlarmEventKind::Raised, "offline".into(), T0 + 115_000)]
    );
    assert!(b.e.alarm(&id).unwrap().is_active());
    // HX, not polled while the gateway was down: offline from its last ts + 90 s.
    assert_eq!(
        states_of(&ev, HX),
        vec![
            (HX, T0 + 90_000, DeviceState::Offline, Reason::Heartbeat),
            (HX, now, DeviceState::Intact, Reason::Reading),
        ]
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::State(s)
            if matches!(s.reason, Reason::GatewayDown | Reason::Restored))));
}

/// (6) A maintenance window applies at exactly its start and end even when the readings come
/// in a burst after it; a window entered after it ended is accepted and rewrites nothing.
#[test]
fn maintenance_windows_in_event_time() {
    let mut f = Fx::new();
    f.take();
    f.el_ok(EL, T0);
    let w =
        f.e.add_maintenance(
            EL,
            T0 + 60_000,
            T0 + 120_000,
            "年检",
            "张伟",
            T0 + 1_000,
            &mut f.out,
        )
        .unwrap();
    assert_eq!(w.entered_ms, T0 + 1_000);
    assert!(matches!(f.take()[..], [Event::Maintenance(_)]));
    // EL's readings of T0 + 10 s … T0 + 190 s all arrive at T0 + 300 s.
    let mut ev = Vec::new();
    for ts in (T0 + 10_000..T0 + 200_000).step_by(20_000) {
        let (a, e) = f.read_at(EL, ts, &el_ok_values(), T0 + 300_000);
        assert_eq!(a, Applied::Applied);
        ev.extend(e);
    }
    assert_eq!(
        states(&ev),
        vec![
            (EL, T0 + 60_000, DeviceState::Maintenance, Reason::Window),
            (EL, T0 + 120_000, DeviceState::Intact, Reason::Window),
        ]
    );
    assert_eq!(f.e.windows().count(), 0);

    // Entered at T0 + 400 s for [140 s, 160 s): accepted and journaled; the transitions made
    // (intact since 120 s) stay.
    let past =
        f.e.add_maintenance(
            EL,
            T0 + 140_000,
            T0 + 160_000,
            "抢修",
            "李工",
            T0 + 400_000,
            &mut f.out,
        )
        .unwrap();
    assert_eq!(
        (past.start_ms, past.end_ms, past.entered_ms),
        (T0 + 140_000, T0 + 160_000, T0 + 400_000)
    );
    let ev = f.take();
    assert!(
        matches!(&ev[..], [Event::Maintenance(m)] if m.id == past.id),
        "{ev:?}"
    );
    assert_eq!(f.e.windows().count(), 0);
    let d = f.e.device(EL);
    assert_eq!((d.state, d.since_ms), (DeviceState::Intact, T0 + 120_000));

    // Entered at T0 + 400 s for [180 s, 250 s) while EL stands at 190 s: maintenance from
    // 190 s (not rewritten back to 180 s). EL's heartbeat ran out at 220 s inside the
    // window, so it ends offline at 250 s; both are concluded 2 s after EL's position plus
    // the time since its last reading arrived (T0 + 300 s): by T0 + 400 s.
    f.e.add_maintenance(
        EL,
        T0 + 180_000,
        T0 + 250_000,
        "抢修",
        "李工",
        T0 + 400_000,
        &mut f.out,
    )
    .unwrap();
    assert_eq!(
        states(&f.take()),
        vec![(EL, T0 + 190_000, DeviceState::Maintenance, Reason::Window)]
    );
    assert_eq!(
        states_of(&f.tick(T0 + 400_000), EL),
        vec![(EL, T0 + 250_000, DeviceState::Offline, Reason::Window)]
    );
}

/// (7) A delay rule fires at exactly the first ts the condition held + delay, by the clock or
/// by a later reading; a reading with an earlier ts that cancels it prevents it, even in a
/// burst; one at exactly the due time does not.
#[test]
fn delays_fire_at_exactly_first_ts_plus_delay() {
    const D: i64 = 600_000;
    // A burst arriving at T0 + 1000 s: held from 100 s, raised at 700 s with the value it
    // had then (39.5, not the 39.0 of the reading that fired it).
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 50.0);
    let arrive = T0 + 1_000_000;
    for (ts, t) in [(T0 + 100_000, 39.0), (T0 + 400_000, 39.5)] {
        let (a, ev) = f.read_at(HX, ts, &hx_values(t), arrive);
        assert_eq!(a, Applied::Applied);
        assert!(alarms(&ev).is_empty(), "{ev:?}");
    }
    let (_, ev) = f.read_at(HX, T0 + 800_000, &hx_values(39.0), arrive);
    assert_eq!(
        alarms(&ev),
        vec![(
            AlarmEventKind::Raised,
            "low_supply_temp".into(),
            T0 + 100_000 + D
        )]
    );
    let Some(Event::Alarm(a)) = ev.iter().find(|e| matches!(e, Event::Alarm(_))) else {
        panic!("{ev:?}")
    };
    assert_eq!(a.alarm.message, "HX-1号供水温度低（39.5°C）");

    // By the clock: concluded 2 s after the due time.
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 50.0);
    f.hx(T0 + 100_000, 39.0);
    assert!(alarms_of(&f.tick(T0 + 701_999), HX).is_empty());
    assert_eq!(
        alarms_of(&f.tick(T0 + 702_000), HX),
        vec![(
            AlarmEventKind::Raised,
            "low_supply_temp".into(),
            T0 + 700_000
        )]
    );

    // Cancelled 1 ms before it was due by a reading in the same burst: nothing at 700 s; the
    // condition held again from 800 s, so the alarm is due at 1400 s, concluded by the clock
    // 2 s after the burst's arrival plus the remaining 600 s.
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 50.0);
    let mut ev = Vec::new();
    for (ts, t) in [
        (T0 + 100_000, 39.0),
        (T0 + 699_999, 40.0),
        (T0 + 800_000, 39.0),
    ] {
        let (a, e) = f.read_at(HX, ts, &hx_values(t), arrive);
        assert_eq!(a, Applied::Applied);
        ev.extend(e);
    }
    assert!(alarms(&ev).is_empty(), "{ev:?}");
    assert!(alarms_of(&f.tick(arrive + D + 1_999), HX).is_empty());
    assert_eq!(
        alarms_of(&f.tick(arrive + D + 2_000), HX),
        vec![(
            AlarmEventKind::Raised,
            "low_supply_temp".into(),
            T0 + 800_000 + D
        )]
    );

    // A reading at exactly the due time does not cancel it (only an earlier one would), and
    // 40.0 is below the 42.0 clear bound: raised at 700 s and still active.
    let mut f = Fx::new();
    f.take();
    f.hx(T0, 50.0);
    f.hx(T0 + 100_000, 39.0);
    let ev = f.hx(T0 + 700_000, 40.0);
    assert_eq!(
        alarms(&ev),
        vec![(
            AlarmEventKind::Raised,
            "low_supply_temp".into(),
            T0 + 700_000
        )]
    );
}

/// 三分钟服务承诺 (seed 004: staff at the place "不能超过三分钟"): a site that makes the promise
/// for a class gets an on-site target of 180 s on that class's alarms; other classes and sites
/// keep their class's targets. Repair targets come from the class.
#[test]
fn the_three_minute_promise_sets_the_on_site_target() {
    let mut s = settings();
    s.classes.get_mut("urgent").unwrap().repair_target_ms = Some(86_400_000);
    s.three_minute_promise
        .insert("jinxiu".into(), vec!["urgent".into()]);
    let mut f = Fx::with(s, Restored::default(), T0);
    f.take();
    f.el_ok(EL, T0);
    let fault = raised_id(&f.read(EL, T0 + 1_000, &[("fault_code", Value::Int(4))]));
    let a = f.e.alarm(&fault).unwrap();
    assert_eq!(a.class, "urgent");
    assert_eq!(
        (a.on_site_target_ms, a.repair_target_ms),
        (Some(180_000), Some(86_400_000))
    );
    let trap = raised_id(&f.read(EL, T0 + 2_000, &[("entrapment", Value::Bool(true))]));
    let a = f.e.alarm(&trap).unwrap();
    assert_eq!(a.class, "entrapment");
    assert_eq!(a.on_site_target_ms, Some(1_800_000));
}
