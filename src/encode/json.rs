//! The JSON form of core events, alarms and device states, one definition shared by every
//! consumer: MQTT (`estate/{site}/alarms/…`, retained `estate/{site}/state/…`), the HTTP API,
//! the SSE stream and the webhook. Times are unix milliseconds (`*_ts`, like the inbound
//! `ts`); durations are seconds (`*_s`).
//!
//! An alarm event is the alarm as it is after the step, flattened, plus `type: "alarm"`,
//! `event` (`raised`, `acknowledged`, `on_site`, `cleared`), `ts` (when the step happened)
//! and `by` (the operator, `device` for an on-site signal, empty otherwise).
//!
//! An alarm carries `escalations`: the escalation steps fired for it, in order, each
//! `{"step", "ts", "due_ts", "until", "notify", "message"}` (see `escalation`). A fired step is
//! published as an alarm event with `event: "escalated"`, `ts` (when it fired) and the step as
//! `escalation`.

use serde_json::{json, Value as Json};

use crate::core::response::{classify, AlarmTimes};
use crate::model::escalation::Escalation;
use crate::model::event::DeviceView;
use crate::model::event::{
    Alarm, AlarmEvent, AlarmEventKind, EscalationEvent, Event, MaintenanceWindow, StateChange,
};
use crate::model::Inventory;

/// An alarm as the API shows it; `timeliness` is judged at `now_ms`.
pub fn alarm(inv: &Inventory, a: &Alarm, now_ms: i64) -> Json {
    let d = inv.get(a.device);
    let stamp = |s: &Option<crate::model::event::Stamp>| match s {
        Some(s) => json!({"ts": s.ts_ms, "by": s.by}),
        None => Json::Null,
    };
    json!({
        "id": a.id,
        "site": d.site,
        "device": d.id,
        "name": d.name,
        "building": d.building,
        "category": d.category,
        "rule": a.rule,
        "severity": a.severity.as_str(),
        "class": a.class,
        "message": a.message,
        "active": a.is_active(),
        "raised_ts": a.raised_ms,
        "acknowledged": stamp(&a.acknowledged),
        "on_site": stamp(&a.on_site),
        "cleared_ts": a.cleared_ms,
        "response_s": a.response_s(),
        "arrival_s": a.arrival_s(),
        "restore_s": a.restore_s(),
        "ack_target_s": a.ack_target_ms as f64 / 1000.0,
        "on_site_target_s": a.on_site_target_ms.map(|t| t as f64 / 1000.0),
        "timeliness": classify(&AlarmTimes::from(a), now_ms).as_str(),
        "escalations": a.escalations.iter().map(escalation).collect::<Vec<_>>(),
    })
}

/// One fired escalation step: its number in the class's chain (from 1), when it fired (`ts`,
/// the gateway's clock) and was due (`due_ts`: raise + `after`), its `until` (`ack`,
/// `on_site`), its target (`webhook:<name>`, `mqtt:<topic>`) and the message sent.
pub fn escalation(e: &Escalation) -> Json {
    json!({
        "step": e.step,
        "ts": e.ts_ms,
        "due_ts": e.due_ms,
        "until": e.until.as_str(),
        "notify": e.notify.to_string(),
        "message": e.message,
    })
}

/// A fired escalation step: the alarm (with its `escalations` so far) as an alarm event
/// `escalated`, the step as `escalation`.
pub fn escalation_event(inv: &Inventory, e: &EscalationEvent) -> Json {
    let mut v = alarm(inv, &e.alarm, e.escalation.ts_ms);
    if let Json::Object(m) = &mut v {
        m.insert("type".into(), json!("alarm"));
        m.insert("event".into(), json!("escalated"));
        m.insert("ts".into(), json!(e.escalation.ts_ms));
        m.insert("by".into(), json!(""));
        m.insert("backlog".into(), json!(false));
        m.insert("escalation".into(), escalation(&e.escalation));
    }
    v
}

/// A lifecycle step (see the module docs).
pub fn alarm_event(inv: &Inventory, e: &AlarmEvent) -> Json {
    let mut v = alarm(inv, &e.alarm, e.ts_ms);
    if let Json::Object(m) = &mut v {
        m.insert("type".into(), json!("alarm"));
        m.insert("event".into(), json!(e.kind.as_str()));
        m.insert("ts".into(), json!(e.ts_ms));
        m.insert("by".into(), json!(e.by));
        // Raised and already cleared when it reached anyone (a backlog): history, not news.
        let backlog = e.kind == AlarmEventKind::Raised && e.alarm.cleared_ms.is_some();
        m.insert("backlog".into(), json!(backlog));
    }
    v
}

/// A state transition; also the retained payload of the state topic.
pub fn state_change(inv: &Inventory, s: &StateChange) -> Json {
    let d = inv.get(s.device);
    json!({
        "type": "state",
        "ts": s.ts_ms,
        "site": d.site,
        "device": d.id,
        "name": d.name,
        "building": d.building,
        "category": d.category,
        "state": s.to.as_str(),
        "from": s.from.map(|f| f.as_str()),
        "reason": s.reason.as_str(),
        "intact": s.to == crate::model::event::DeviceState::Intact,
    })
}

pub fn maintenance(inv: &Inventory, w: &MaintenanceWindow) -> Json {
    let d = inv.get(w.device);
    json!({
        "type": "maintenance",
        "id": w.id,
        "site": d.site,
        "device": d.id,
        "name": d.name,
        "start_ts": w.start_ms,
        "end_ts": w.end_ms,
        "reason": w.reason,
        "by": w.by,
        // When it was entered: after `start_ts` for a window recorded afterwards.
        "entered_ts": w.entered_ms,
    })
}

pub fn event(inv: &Inventory, e: &Event) -> Json {
    match e {
        Event::State(s) => state_change(inv, s),
        Event::Alarm(a) => alarm_event(inv, a),
        Event::Escalation(e) => escalation_event(inv, e),
        Event::Maintenance(w) => maintenance(inv, w),
        Event::Compliance(c) => {
            let d = inv.get(c.device);
            json!({"type": "compliance", "ts": c.ts_ms, "site": d.site, "device": d.id,
                   "building": d.building, "compliant": c.compliant})
        }
        Event::Hourly(h) => {
            let d = inv.get(h.device);
            json!({"type": "hourly", "hour_ts": h.hour_ms, "site": d.site, "device": d.id,
                   "signals": h.signals.iter().map(|(i, n, sum, min, max)| json!({
                       "signal": d.profile.signal(*i).name, "n": n, "mean": sum / *n as f64,
                       "min": min, "max": max})).collect::<Vec<_>>()})
        }
    }
}

/// A device with its current state, for `GET /api/devices`.
pub fn device(inv: &Inventory, v: &DeviceView) -> Json {
    let d = inv.get(v.device);
    json!({
        "site": d.site,
        "id": d.id,
        "name": d.name,
        "building": d.building,
        "category": d.category,
        "state": v.state.as_str(),
        "since_ts": v.since_ms,
        "last_seen_ts": v.last_seen_ms,
        "active_alarms": v.active_alarms,
    })
}
