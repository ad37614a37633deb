//! Alarm rules (DESIGN §4 "Alarm lifecycle"): raise after `delay`, clear past `hysteresis`,
//! no duplicates while active; acknowledgments and on-site reports by operators or devices.

use super::Engine;
use crate::model::event::*;
use crate::model::rules::{AlarmRule, Clear, Condition, Severity, Trigger};
use crate::model::{Device, DeviceIdx, Value};

/// Targets used when a rule names a class that is not configured (config validation
/// prevents it; this keeps the engine total).
const FALLBACK_ACK_TARGET_MS: i64 = 180_000;

/// The on-site target of the classes a site's `three_minute_promise` names.
const THREE_MINUTES_MS: i64 = 180_000;

/// How far ahead of the gateway clock an operator's own `ts` may be.
const MAX_COMMAND_SKEW_MS: i64 = 60_000;

impl Engine {
    /// Acknowledges an alarm (`ts_ms`: the operator's own time, else `now_ms`). A cleared
    /// alarm that was never acknowledged can still be; a second acknowledgment is refused.
    pub fn acknowledge(
        &mut self,
        id: &str,
        by: &str,
        ts_ms: Option<i64>,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<Alarm, CommandError> {
        let alarm = self.checked_alarm(id, by, ts_ms, now_ms)?;
        if let Some(s) = &alarm.acknowledged {
            return Err(CommandError::AlreadyAcknowledged {
                id: id.into(),
                by: s.by.clone(),
                ts_ms: s.ts_ms,
            });
        }
        let ts = ts_ms.unwrap_or(now_ms).max(alarm.raised_ms);
        Ok(self.stamp(id, AlarmEventKind::Acknowledged, ts, by, out))
    }

    /// Records that someone is on site for an alarm. Arriving counts as acknowledging when
    /// nobody had (an `acknowledged` event with the same time and person comes first).
    pub fn on_site(
        &mut self,
        id: &str,
        by: &str,
        ts_ms: Option<i64>,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<Alarm, CommandError> {
        let alarm = self.checked_alarm(id, by, ts_ms, now_ms)?;
        if let Some(s) = &alarm.on_site {
            return Err(CommandError::AlreadyOnSite {
                id: id.into(),
                by: s.by.clone(),
                ts_ms: s.ts_ms,
            });
        }
        let ts = ts_ms.unwrap_or(now_ms).max(alarm.raised_ms);
        if alarm.acknowledged.is_none() {
            self.stamp(id, AlarmEventKind::Acknowledged, ts, by, out);
        }
        Ok(self.stamp(id, AlarmEventKind::OnSite, ts, by, out))
    }

    fn checked_alarm(
        &self,
        id: &str,
        by: &str,
        ts_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<&Alarm, CommandError> {
        let alarm = self
            .alarms
            .get(id)
            .ok_or_else(|| CommandError::UnknownAlarm(id.into()))?;
        if by.trim().is_empty() {
            return Err(CommandError::Invalid(
                "`by` must name the operator (e.g. \"张伟\")".into(),
            ));
        }
        if let Some(ts) = ts_ms {
            if ts < alarm.raised_ms {
                return Err(CommandError::Invalid(format!(
                    "`ts` {ts} is before the alarm was raised ({})",
                    alarm.raised_ms
                )));
            }
            if ts > now_ms + MAX_COMMAND_SKEW_MS {
                return Err(CommandError::Invalid(format!(
                    "`ts` {ts} is more than {} s ahead of the gateway clock ({now_ms})",
                    MAX_COMMAND_SKEW_MS / 1000
                )));
            }
        }
        Ok(alarm)
    }

    fn stamp(
        &mut self,
        id: &str,
        kind: AlarmEventKind,
        ts_ms: i64,
        by: &str,
        out: &mut Vec<Event>,
    ) -> Alarm {
        let Some(a) = self.alarms.get_mut(id) else {
            // Callers looked it up first.
            return Alarm::placeholder(id);
        };
        let stamp = Some(Stamp {
            ts_ms,
            by: by.to_owned(),
        });
        match kind {
            AlarmEventKind::Acknowledged => a.acknowledged = stamp,
            AlarmEventKind::OnSite => a.on_site = stamp,
            AlarmEventKind::Raised | AlarmEventKind::Cleared => {}
        }
        let a = a.clone();
        out.push(Event::Alarm(AlarmEvent {
            kind,
            ts_ms,
            by: by.to_owned(),
            alarm: a.clone(),
        }));
        a
    }

    pub(super) fn holds(&self, device: DeviceIdx, c: &Condition, ts_ms: i64) -> bool {
        self.holds_against(device, c, &c.value, ts_ms)
    }

    /// `c` with `value` in place of its own constant (an alarm's clear bound), without
    /// building a second condition on every reading.
    fn holds_against(&self, device: DeviceIdx, c: &Condition, value: &Value, ts_ms: i64) -> bool {
        if c.season
            && !self
                .settings
                .heating(&self.inventory.get(device).site)
                .0
                .contains(ts_ms)
        {
            return false;
        }
        self.devs[device as usize]
            .values
            .get(c.signal as usize)
            .and_then(Option::as_ref)
            .is_some_and(|v| crate::model::rules::compare(v, c.op, value))
    }

    /// Raises, clears and advances the device's alarm rules at `ts_ms`. `by_clock`: called
    /// from `tick` (only delays can complete).
    pub(super) fn evaluate_rules(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        by_clock: bool,
        out: &mut Vec<Event>,
    ) {
        let d = self.inventory.get(device);
        let rules = d.rules.clone();
        let maintenance = self.devs[device as usize].state == DeviceState::Maintenance;
        for (ri, rule) in rules.alarms.iter().enumerate() {
            // A signal not reported since start (e.g. just after a restart) decides nothing:
            // a restored alarm stays active until a reading says otherwise.
            let Some((raise_holds, still_active)) = self.rule_conditions(device, rule, ts_ms)
            else {
                continue;
            };
            let rs = &self.devs[device as usize].rules[ri];
            if let Some(id) = rs.active.clone() {
                if !still_active && !by_clock {
                    self.clear(device, ri, &id, ts_ms, out);
                } else if let (false, Some(c)) = (by_clock, &rule.on_site) {
                    if self.holds(device, c, ts_ms)
                        && self.alarms.get(&id).is_some_and(|a| a.on_site.is_none())
                    {
                        if self
                            .alarms
                            .get(&id)
                            .is_some_and(|a| a.acknowledged.is_none())
                        {
                            self.stamp(&id, AlarmEventKind::Acknowledged, ts_ms, "device", out);
                        }
                        self.stamp(&id, AlarmEventKind::OnSite, ts_ms, "device", out);
                    }
                }
                continue;
            }
            // Offline rules follow the device's offline flags, which the clock also moves.
            let suppressed = maintenance && rule.severity != Severity::Critical;
            if !raise_holds || suppressed {
                self.devs[device as usize].rules[ri].pending_since = None;
                continue;
            }
            let pending = &mut self.devs[device as usize].rules[ri].pending_since;
            if by_clock && pending.is_none() {
                continue;
            }
            let since = *pending.get_or_insert(ts_ms);
            let due = since + rule.delay_ms;
            if due <= ts_ms {
                self.raise(device, ri, rule, due, out);
            }
        }
    }

    /// (raising condition holds, an active alarm would stay active) at `ts_ms`; `None` when
    /// the rule's signal has no value yet.
    fn rule_conditions(
        &self,
        device: DeviceIdx,
        rule: &AlarmRule,
        ts_ms: i64,
    ) -> Option<(bool, bool)> {
        Some(match &rule.trigger {
            Trigger::Offline => {
                let off = self.devs[device as usize].offline_for_alarms();
                (off, off)
            }
            Trigger::Condition { when, clear } => {
                self.devs[device as usize]
                    .values
                    .get(when.signal as usize)?
                    .as_ref()?;
                let raise = self.holds(device, when, ts_ms);
                let stay = match clear {
                    Clear::Immediate => raise,
                    Clear::Bound(b) => self.holds_against(device, when, b, ts_ms),
                };
                (raise, stay || raise)
            }
        })
    }

    fn raise(
        &mut self,
        device: DeviceIdx,
        ri: usize,
        rule: &AlarmRule,
        ts_ms: i64,
        out: &mut Vec<Event>,
    ) {
        let d = self.inventory.get(device);
        let (ack_target_ms, mut on_site_target_ms, repair_target_ms) =
            match self.settings.classes.get(&rule.class) {
                Some(c) => (c.ack_target_ms, c.on_site_target_ms, c.repair_target_ms),
                None => (FALLBACK_ACK_TARGET_MS, None, None),
            };
        // 三分钟服务承诺: the site promises someone at the place within three minutes.
        if self
            .settings
            .three_minute_promise
            .get(&d.site)
            .or_else(|| self.settings.three_minute_promise.get(""))
            .is_some_and(|classes| classes.contains(&rule.class))
        {
            on_site_target_ms = Some(THREE_MINUTES_MS);
        }
        let value = match &rule.trigger {
            Trigger::Condition { when, .. } => self.devs[device as usize]
                .values
                .get(when.signal as usize)
                .cloned()
                .flatten(),
            Trigger::Offline => None,
        };
        let alarm = Alarm {
            id: format!("{}-{}", self.settings.site, self.next_alarm_seq),
            device,
            rule: rule.name.clone(),
            severity: rule.severity,
            class: rule.class.clone(),
            message: render_message(&rule.message, d, rule, value.as_ref()),
            raised_ms: ts_ms,
            acknowledged: None,
            on_site: None,
            cleared_ms: None,
            ack_target_ms,
            on_site_target_ms,
            repair_target_ms,
            escalations: Vec::new(),
        };
        self.next_alarm_seq += 1;
        let rs = &mut self.devs[device as usize].rules[ri];
        rs.pending_since = None;
        rs.active = Some(alarm.id.clone());
        out.push(Event::Alarm(AlarmEvent {
            kind: AlarmEventKind::Raised,
            ts_ms,
            by: String::new(),
            alarm: alarm.clone(),
        }));
        let id = alarm.id.clone();
        self.alarms.insert(id.clone(), alarm);
        // A device that already reports someone on site (e.g. in inspection) gets it now.
        if let Some(c) = &rule.on_site {
            if self.holds(device, c, ts_ms) {
                self.stamp(&id, AlarmEventKind::Acknowledged, ts_ms, "device", out);
                self.stamp(&id, AlarmEventKind::OnSite, ts_ms, "device", out);
            }
        }
    }

    fn clear(&mut self, device: DeviceIdx, ri: usize, id: &str, ts_ms: i64, out: &mut Vec<Event>) {
        self.devs[device as usize].rules[ri].active = None;
        let Some(a) = self.alarms.get_mut(id) else {
            return;
        };
        let ts_ms = ts_ms.max(a.raised_ms);
        a.cleared_ms = Some(ts_ms);
        out.push(Event::Alarm(AlarmEvent {
            kind: AlarmEventKind::Cleared,
            ts_ms,
            by: String::new(),
            alarm: a.clone(),
        }));
    }
}

impl Alarm {
    fn placeholder(id: &str) -> Alarm {
        Alarm {
            id: id.into(),
            device: 0,
            rule: String::new(),
            severity: Severity::Minor,
            class: String::new(),
            message: String::new(),
            raised_ms: 0,
            acknowledged: None,
            on_site: None,
            cleared_ms: None,
            ack_target_ms: 0,
            on_site_target_ms: None,
            repair_target_ms: None,
            escalations: Vec::new(),
        }
    }
}

/// Renders a rule's message: `{name}`, `{id}`, `{building}`, `{signal}` (its label, else its
/// name) and `{value}` (the signal's value when raised; floats with at most 2 decimals).
pub fn render_message(
    template: &str,
    d: &Device,
    rule: &AlarmRule,
    value: Option<&Value>,
) -> String {
    let signal = match &rule.trigger {
        Trigger::Condition { when, .. } => {
            let s = d.profile.signals.get(when.signal as usize);
            s.and_then(|s| s.label.clone())
                .unwrap_or_else(|| when.signal_name.clone())
        }
        Trigger::Offline => String::new(),
    };
    let value = match value {
        Some(Value::Float(v)) => {
            let r = (v * 100.0).round() / 100.0;
            format!("{r}")
        }
        Some(Value::Int(v)) => v.to_string(),
        Some(Value::Bool(v)) => v.to_string(),
        Some(Value::Str(v)) => v.clone(),
        None => String::new(),
    };
    template
        .replace("{name}", &d.name)
        .replace("{id}", &d.id)
        .replace("{building}", &d.building)
        .replace("{signal}", &signal)
        .replace("{value}", &value)
}
