//! The state model and the alarm engine (DESIGN §3, §4).
//!
//! One `Engine` holds every device's latest values, state, pending and active alarms and
//! maintenance windows. It is driven by `on_reading`, `tick` (the passage of time on the
//! gateway clock: heartbeat timeouts, alarm delays, window boundaries) and operator commands,
//! each given `now_ms`; it appends what happened to `out` as `Event`s, in order.

use std::collections::HashMap;
use std::sync::Arc;

use super::event::*;
use super::rules::{AlarmRule, Clear, Condition, ResponseClass, Severity, Trigger};
use super::season::Season;
use crate::model::{Device, DeviceIdx, Inventory, Status, Value};

/// Targets used when a rule names a class that is not configured (config validation
/// prevents it; this keeps the engine total).
const FALLBACK_ACK_TARGET_MS: i64 = 180_000;

/// How far ahead of the gateway clock an operator's own `ts` may be.
const MAX_COMMAND_SKEW_MS: i64 = 60_000;

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The gateway's site (`gateway.site`): alarm ids are `{site}-{sequence}`.
    pub site: String,
    /// Response classes by name (DESIGN §4 default targets, overridable in `[alarms.classes]`).
    pub classes: HashMap<String, ResponseClass>,
    /// The heating season (rules marked `season = true`).
    pub season: Season,
    /// Planned maintenance from the configuration (`[[maintenance]]`); `id` and `by` are
    /// set by the engine (`config`).
    pub planned: Vec<PlannedMaintenance>,
    /// Cleared alarms stay in memory (API, late acknowledgment) this long after clearing.
    pub retain_cleared_ms: i64,
    /// Heating compliance threshold (`heating.min_indoor_c`) for devices with an
    /// `indoor_temp_c` signal.
    pub min_indoor_c: f64,
    /// Sites with their own season and minimum (`[heating.sites.<site>]`); other sites use
    /// `season` and `min_indoor_c`.
    pub sites: HashMap<String, (Season, f64)>,
}

impl EngineSettings {
    /// The season and minimum indoor temperature of a site.
    pub fn heating(&self, site: &str) -> (&Season, f64) {
        match self.sites.get(site) {
            Some((s, m)) => (s, *m),
            None => (&self.season, self.min_indoor_c),
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// One device's current hour of `hourly` signals.
#[derive(Debug, Clone)]
struct Hour {
    hour_ms: i64,
    /// Per `hourly` signal (profile order): readings, sum, min, max.
    acc: Vec<(u64, f64, f64, f64)>,
}

/// A maintenance window from the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMaintenance {
    pub device: DeviceIdx,
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: String,
}

/// What the journal knew when the gateway started (see `crate::sink::journal`).
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The last moment the previous run was known to be alive (its last heartbeat in the
    /// journal, or its clean stop); `None` on a fresh journal.
    pub last_alive_ms: Option<i64>,
    /// Each known device's last journaled state and since when.
    pub states: Vec<RestoredState>,
    /// Active alarms and alarms cleared within the retention time, devices resolved against
    /// this run's inventory (alarms of devices no longer in it are left out).
    pub alarms: Vec<Alarm>,
    /// Maintenance windows that have not ended.
    pub windows: Vec<MaintenanceWindow>,
    /// The next alarm sequence number (one more than the highest ever used).
    pub next_alarm_seq: u64,
    /// The next maintenance window sequence number.
    pub next_window_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestoredState {
    pub device: DeviceIdx,
    pub state: DeviceState,
    pub since_ms: i64,
}

/// One device as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    pub device: DeviceIdx,
    pub state: DeviceState,
    pub since_ms: i64,
    /// Gateway time of the last reading (none since start: `None`).
    pub last_seen_ms: Option<i64>,
    pub active_alarms: usize,
}

/// Per-rule progress on one device.
#[derive(Debug, Clone, Default)]
struct RuleState {
    /// Event time since which the raising condition has held (waiting out `delay`).
    pending_since: Option<i64>,
    /// The active alarm of this rule, if any.
    active: Option<String>,
}

/// Everything the engine knows about one device.
#[derive(Debug, Clone)]
struct Dev {
    /// Latest value of each signal (index as in the profile).
    values: Vec<Option<Value>>,
    /// Gateway time of the last reading that was not an `offline` report.
    last_seen_ms: Option<i64>,
    state: DeviceState,
    since_ms: i64,
    /// Not heard from since start, and no journaled state.
    never_seen: bool,
    heartbeat_expired: bool,
    status_offline: bool,
    /// A fault condition holds (latest values).
    fault: bool,
    /// A maintenance condition holds (latest values).
    signal_maintenance: bool,
    rules: Vec<RuleState>,
    /// Heating compliance: (signal index, current value, time of the reading that set it)
    /// for indoor sensors.
    compliance: Option<(u16, Option<bool>, i64)>,
    hour: Option<Hour>,
}

impl Dev {
    fn offline(&self) -> bool {
        self.never_seen || self.heartbeat_expired || self.status_offline
    }
}

/// The engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    inventory: Arc<Inventory>,
    settings: EngineSettings,
    devs: Vec<Dev>,
    /// Active alarms and retained cleared ones, by id.
    alarms: HashMap<String, Alarm>,
    /// Maintenance windows not yet ended, in the order added.
    windows: Vec<(MaintenanceWindow, bool)>,
    next_alarm_seq: u64,
    next_window_seq: u64,
    /// Per site: whether the last tick was inside its heating season.
    in_season: HashMap<String, bool>,
}

impl Engine {
    /// A new engine over `inventory`, continuing from `restored`. Appends the start-up
    /// transitions to `out`: devices never seen become `offline` (reason `start`); for a
    /// journal whose last run ended at `last_alive_ms`, each device not offline or in
    /// maintenance then is `offline` from `last_alive_ms` (reason `gateway_down`) and back in
    /// its journaled state at `now_ms` (reason `restored`). Planned windows from the
    /// configuration are added (once: their ids are derived from device and start).
    pub fn new(
        inventory: Arc<Inventory>,
        settings: EngineSettings,
        restored: Restored,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Engine {
        let in_season = inventory
            .devices()
            .iter()
            .map(|d| (d.site.clone(), settings.heating(&d.site).0.contains(now_ms)))
            .collect();
        let devs = inventory
            .devices()
            .iter()
            .map(|d| Dev {
                values: vec![None; d.profile.signals.len()],
                last_seen_ms: None,
                state: DeviceState::Offline,
                since_ms: now_ms,
                never_seen: true,
                heartbeat_expired: false,
                status_offline: false,
                fault: false,
                signal_maintenance: false,
                rules: vec![RuleState::default(); d.rules.alarms.len()],
                compliance: d
                    .profile
                    .signal_index(COMPLIANCE_SIGNAL)
                    .map(|i| (i, None, i64::MIN)),
                hour: None,
            })
            .collect();
        let mut e = Engine {
            inventory,
            settings,
            devs,
            alarms: HashMap::new(),
            windows: Vec::new(),
            next_alarm_seq: restored.next_alarm_seq.max(1),
            next_window_seq: restored.next_window_seq.max(1),
            in_season,
        };
        let mut known = vec![false; e.devs.len()];
        for r in &restored.states {
            let Some(dev) = e.devs.get_mut(r.device as usize) else {
                continue;
            };
            known[r.device as usize] = true;
            dev.never_seen = false;
            match r.state {
                DeviceState::Offline => {
                    dev.state = DeviceState::Offline;
                    dev.since_ms = r.since_ms;
                    dev.status_offline = true;
                }
                s => {
                    // Heartbeats count from the restart; values come with the next reading.
                    dev.last_seen_ms = Some(now_ms);
                    dev.fault = s == DeviceState::Fault;
                    // Until the next reading: maintenance by signal unless a window explains it
                    // (windows are restored below; see the end of `new`).
                    dev.signal_maintenance = s == DeviceState::Maintenance;
                    let down_from = restored.last_alive_ms.unwrap_or(now_ms).max(r.since_ms);
                    if s != DeviceState::Maintenance && down_from < now_ms {
                        out.push(Event::State(StateChange {
                            device: r.device,
                            ts_ms: down_from,
                            from: Some(s),
                            to: DeviceState::Offline,
                            reason: Reason::GatewayDown,
                        }));
                        out.push(Event::State(StateChange {
                            device: r.device,
                            ts_ms: now_ms,
                            from: Some(DeviceState::Offline),
                            to: s,
                            reason: Reason::Restored,
                        }));
                        dev.since_ms = now_ms;
                    } else {
                        dev.since_ms = r.since_ms;
                    }
                    dev.state = s;
                }
            }
        }
        for (i, k) in known.iter().enumerate() {
            if !k {
                out.push(Event::State(StateChange {
                    device: i as DeviceIdx,
                    ts_ms: now_ms,
                    from: None,
                    to: DeviceState::Offline,
                    reason: Reason::Start,
                }));
            }
        }
        for a in restored.alarms {
            if let Some(dev) = e.devs.get_mut(a.device as usize) {
                if a.is_active() {
                    let d = e.inventory.get(a.device);
                    if let Some(ri) = d.rules.alarms.iter().position(|r| r.name == a.rule) {
                        dev.rules[ri].active = Some(a.id.clone());
                    }
                }
                e.alarms.insert(a.id.clone(), a);
            }
        }
        for w in restored.windows {
            if (w.device as usize) < e.devs.len() {
                // A window that had started is in the restored state already.
                let started = w.start_ms <= now_ms;
                e.windows.push((w, started));
            }
        }
        let planned = std::mem::take(&mut e.settings.planned);
        for p in &planned {
            let id = format!("config:{}:{}", e.inventory.get(p.device).id, p.start_ms);
            if p.end_ms <= now_ms || e.windows.iter().any(|(w, _)| w.id == id) {
                continue;
            }
            let w = MaintenanceWindow {
                id,
                device: p.device,
                start_ms: p.start_ms,
                end_ms: p.end_ms,
                reason: p.reason.clone(),
                by: "config".into(),
            };
            out.push(Event::Maintenance(w.clone()));
            e.windows.push((w, false));
        }
        e.settings.planned = planned;
        for i in 0..e.devs.len() {
            let device = i as DeviceIdx;
            if e.devs[i].signal_maintenance && e.in_window(device, now_ms) {
                e.devs[i].signal_maintenance = false;
            }
            // Starts the delays of rules that already hold (offline devices).
            e.update(device, now_ms, Reason::Start, out);
        }
        e.tick(now_ms, out);
        e
    }

    /// Applies one reading. `ts_ms` is its event time, `now_ms` the gateway clock.
    pub fn on_reading(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        values: &[(u16, Value)],
        status: Option<Status>,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) {
        let Some(dev) = self.devs.get_mut(device as usize) else {
            return;
        };
        let reason = match status {
            Some(Status::Offline) => {
                dev.status_offline = true;
                Reason::Status
            }
            _ => {
                dev.status_offline = false;
                dev.heartbeat_expired = false;
                dev.never_seen = false;
                dev.last_seen_ms = Some(now_ms);
                for (i, v) in values {
                    if let Some(slot) = dev.values.get_mut(*i as usize) {
                        *slot = Some(v.clone());
                    }
                }
                if values.is_empty() {
                    Reason::Status
                } else {
                    Reason::Reading
                }
            }
        };
        if !values.is_empty() {
            self.recompute_conditions(device, ts_ms);
            self.compliance(device, ts_ms, values, out);
            self.hourly(device, ts_ms, values, out);
        }
        self.update(device, ts_ms, reason, out);
    }

    /// Emits a compliance change when an indoor temperature crosses the minimum.
    fn compliance(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        values: &[(u16, Value)],
        out: &mut Vec<Event>,
    ) {
        let min = self.settings.heating(&self.inventory.get(device).site).1;
        let dev = &mut self.devs[device as usize];
        let Some((sig, current, since)) = &mut dev.compliance else {
            return;
        };
        let Some((_, v)) = values.iter().find(|(i, _)| i == sig) else {
            return;
        };
        // A late reading (older than the one that set the current value) changes nothing:
        // compliance changes never go back in time.
        if ts_ms < *since {
            return;
        }
        *since = ts_ms;
        let ok = match v {
            Value::Float(x) => Some(*x >= min),
            Value::Int(x) => Some(*x as f64 >= min),
            _ => None,
        };
        if ok != *current {
            *current = ok;
            out.push(Event::Compliance(ComplianceChange {
                device,
                ts_ms,
                compliant: ok,
            }));
        }
    }

    /// Adds the reading's `hourly` signals to the device's hour; a reading in a later hour
    /// closes the current one, one in an earlier hour is emitted on its own.
    fn hourly(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        values: &[(u16, Value)],
        out: &mut Vec<Event>,
    ) {
        let hourly = &self.inventory.get(device).profile.hourly;
        if hourly.is_empty() {
            return;
        }
        let hour_ms = ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let empty = || vec![(0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY); hourly.len()];
        let dev = &mut self.devs[device as usize];
        let mut late = None;
        let target = match &mut dev.hour {
            Some(h) if h.hour_ms == hour_ms => h,
            Some(h) if h.hour_ms > hour_ms => late.insert(Hour {
                hour_ms,
                acc: empty(),
            }),
            cur => {
                if let Some(h) = cur.take() {
                    out.push(hourly_event(device, hourly, &h));
                }
                cur.insert(Hour {
                    hour_ms,
                    acc: empty(),
                })
            }
        };
        for (k, sig) in hourly.iter().enumerate() {
            if let Some((_, Value::Float(x))) = values.iter().find(|(i, _)| i == sig) {
                let a = &mut target.acc[k];
                a.0 += 1;
                a.1 += x;
                a.2 = a.2.min(*x);
                a.3 = a.3.max(*x);
            }
        }
        if let Some(h) = late {
            out.push(hourly_event(device, hourly, &h));
        }
    }

    /// Emits every device's open hour (at shutdown, so nothing is lost).
    pub fn flush_hours(&mut self, out: &mut Vec<Event>) {
        for (i, dev) in self.devs.iter_mut().enumerate() {
            if let Some(h) = dev.hour.take() {
                let hourly = &self.inventory.get(i as DeviceIdx).profile.hourly;
                out.push(hourly_event(i as DeviceIdx, hourly, &h));
            }
        }
    }

    /// Lets time pass: heartbeat timeouts, alarm delays, maintenance window boundaries, the
    /// season's start and end, retention of cleared alarms.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        // Window boundaries and heartbeat deadlines up to now, applied in time order so that
        // each transition sees the windows in force at its own time.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Due {
            Window,
            Heartbeat,
        }
        let mut due: Vec<(i64, Due, DeviceIdx)> = Vec::new();
        for (w, started) in &mut self.windows {
            if !*started && w.start_ms <= now_ms {
                *started = true;
                due.push((w.start_ms, Due::Window, w.device));
            }
            if w.end_ms <= now_ms {
                due.push((w.end_ms, Due::Window, w.device));
            }
        }
        // Heartbeats (MQTT devices; Modbus devices are reported offline by the poller).
        for (i, dev) in self.devs.iter().enumerate() {
            let d = self.inventory.get(i as DeviceIdx);
            if d.modbus.is_some() || dev.heartbeat_expired {
                continue;
            }
            if let Some(seen) = dev.last_seen_ms {
                let at = seen + d.heartbeat_timeout.as_millis() as i64;
                if at <= now_ms {
                    due.push((at, Due::Heartbeat, i as DeviceIdx));
                }
            }
        }
        due.sort_unstable();
        for (ts, kind, device) in due {
            let reason = match kind {
                Due::Window => Reason::Window,
                Due::Heartbeat => {
                    self.devs[device as usize].heartbeat_expired = true;
                    Reason::Heartbeat
                }
            };
            self.update(device, ts, reason, out);
        }
        self.windows.retain(|(w, _)| w.end_ms > now_ms);
        // The seasons (one check per site, not per device).
        let mut flipped: Vec<String> = Vec::new();
        for (site, was) in self.in_season.iter_mut() {
            let now_in = self.settings.heating(site).0.contains(now_ms);
            if now_in != *was {
                *was = now_in;
                flipped.push(site.clone());
            }
        }
        if !flipped.is_empty() {
            for i in 0..self.devs.len() {
                let device = i as DeviceIdx;
                if !flipped.contains(&self.inventory.get(device).site) {
                    continue;
                }
                if self.devs[i].values.iter().any(Option::is_some) {
                    self.recompute_conditions(device, now_ms);
                }
                self.update(device, now_ms, Reason::Season, out);
            }
        }
        for i in 0..self.devs.len() {
            let device = i as DeviceIdx;
            // Alarm delays.
            let dev = &self.devs[i];
            if dev.rules.iter().any(|r| r.pending_since.is_some()) {
                self.evaluate_rules(device, now_ms, true, out);
            }
        }
        // Hours that ended over a minute ago (by the gateway clock) are complete enough.
        for (i, dev) in self.devs.iter_mut().enumerate() {
            if dev
                .hour
                .as_ref()
                .is_some_and(|h| h.hour_ms + HOUR_MS + 60_000 <= now_ms)
            {
                if let Some(h) = dev.hour.take() {
                    let hourly = &self.inventory.get(i as DeviceIdx).profile.hourly;
                    out.push(hourly_event(i as DeviceIdx, hourly, &h));
                }
            }
        }
        // Retention of cleared alarms.
        let keep_after = now_ms - self.settings.retain_cleared_ms;
        self.alarms
            .retain(|_, a| a.cleared_ms.is_none_or(|c| c >= keep_after));
    }

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

    /// Adds an operator-set maintenance window `[start_ms, end_ms)` for a device. A start in
    /// the past begins now: the journal's past is never rewritten.
    #[allow(clippy::too_many_arguments)]
    pub fn add_maintenance(
        &mut self,
        device: DeviceIdx,
        start_ms: i64,
        end_ms: i64,
        reason: &str,
        by: &str,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<MaintenanceWindow, CommandError> {
        if (device as usize) >= self.devs.len() {
            return Err(CommandError::UnknownDevice(device.to_string()));
        }
        if end_ms <= start_ms {
            return Err(CommandError::Invalid(format!(
                "`end` ({end_ms}) must be after `start` ({start_ms})"
            )));
        }
        if end_ms <= now_ms {
            return Err(CommandError::Invalid(format!(
                "`end` ({end_ms}) is not in the future (now {now_ms}); past maintenance cannot be recorded"
            )));
        }
        if reason.trim().is_empty() || by.trim().is_empty() {
            return Err(CommandError::Invalid(
                "`reason` and `by` must not be empty".into(),
            ));
        }
        let w = MaintenanceWindow {
            id: format!("{}-M{}", self.settings.site, self.next_window_seq),
            device,
            start_ms: start_ms.max(now_ms),
            end_ms,
            reason: reason.to_owned(),
            by: by.to_owned(),
        };
        self.next_window_seq += 1;
        out.push(Event::Maintenance(w.clone()));
        self.windows.push((w.clone(), false));
        self.tick(now_ms, out);
        Ok(w)
    }

    /// Ends a window early (at `now_ms`); one that has not started is cancelled (its end
    /// becomes its start).
    pub fn end_maintenance(
        &mut self,
        id: &str,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<MaintenanceWindow, CommandError> {
        let Some((w, started)) = self.windows.iter_mut().find(|(w, _)| w.id == id) else {
            return Err(CommandError::Invalid(format!(
                "no current or future maintenance window with id {id:?}"
            )));
        };
        // Started means "begun by now", whether or not a tick has noticed it yet.
        let begun = *started || w.start_ms <= now_ms;
        w.end_ms = if begun { now_ms } else { w.start_ms };
        *started = true;
        let w = w.clone();
        out.push(Event::Maintenance(w.clone()));
        self.tick(now_ms, out);
        Ok(w)
    }

    pub fn device(&self, device: DeviceIdx) -> DeviceView {
        let dev = &self.devs[device as usize];
        DeviceView {
            device,
            state: dev.state,
            since_ms: dev.since_ms,
            last_seen_ms: dev.last_seen_ms,
            active_alarms: dev.rules.iter().filter(|r| r.active.is_some()).count(),
        }
    }

    /// The latest value of each signal of a device (profile order; `None` = not reported).
    pub fn values(&self, device: DeviceIdx) -> &[Option<Value>] {
        &self.devs[device as usize].values
    }

    /// Active alarms and cleared ones still retained, in no particular order.
    pub fn alarms(&self) -> impl Iterator<Item = &Alarm> {
        self.alarms.values()
    }

    pub fn alarm(&self, id: &str) -> Option<&Alarm> {
        self.alarms.get(id)
    }

    /// Maintenance windows that have not ended.
    pub fn windows(&self) -> impl Iterator<Item = &MaintenanceWindow> {
        self.windows.iter().map(|(w, _)| w)
    }

    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }

    // ---- internals ----

    fn holds(&self, device: DeviceIdx, c: &Condition, ts_ms: i64) -> bool {
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
            .is_some_and(|v| super::rules::compare(v, c.op, value))
    }

    fn recompute_conditions(&mut self, device: DeviceIdx, ts_ms: i64) {
        let rules = self.inventory.get(device).rules.clone();
        let fault = rules
            .state
            .fault
            .iter()
            .any(|c| self.holds(device, c, ts_ms));
        let maint = rules
            .state
            .maintenance
            .iter()
            .any(|c| self.holds(device, c, ts_ms));
        let dev = &mut self.devs[device as usize];
        dev.fault = fault;
        dev.signal_maintenance = maint;
    }

    fn in_window(&self, device: DeviceIdx, ts_ms: i64) -> bool {
        self.windows
            .iter()
            .any(|(w, _)| w.device == device && w.start_ms <= ts_ms && ts_ms < w.end_ms)
    }

    /// Recomputes the device's state at `ts_ms`, emits a transition if it changed, then
    /// evaluates its alarm rules at that time.
    fn update(&mut self, device: DeviceIdx, ts_ms: i64, reason: Reason, out: &mut Vec<Event>) {
        let window = self.in_window(device, ts_ms);
        let dev = &mut self.devs[device as usize];
        let state = if window || dev.signal_maintenance {
            DeviceState::Maintenance
        } else if dev.offline() {
            DeviceState::Offline
        } else if dev.fault {
            DeviceState::Fault
        } else {
            DeviceState::Intact
        };
        // Transitions of one device never go back in time (device clocks and the gateway
        // clock can disagree by up to `max_clock_skew`; a buffered reading can predate the
        // start). Alarm rules keep the reading's own time (DESIGN §4).
        let state_ts = ts_ms.max(dev.since_ms);
        if state != dev.state {
            out.push(Event::State(StateChange {
                device,
                ts_ms: state_ts,
                from: Some(dev.state),
                to: state,
                reason,
            }));
            dev.state = state;
            dev.since_ms = state_ts;
        }
        self.evaluate_rules(device, ts_ms, false, out);
    }

    /// Raises, clears and advances the device's alarm rules at `ts_ms`. `by_clock`: called
    /// from `tick` (only delays can complete).
    fn evaluate_rules(
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
                let off = self.devs[device as usize].offline();
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
        let (ack_target_ms, on_site_target_ms) = match self.settings.classes.get(&rule.class) {
            Some(c) => (c.ack_target_ms, c.on_site_target_ms),
            None => (FALLBACK_ACK_TARGET_MS, None),
        };
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
        }
    }
}

fn hourly_event(device: DeviceIdx, hourly: &[u16], h: &Hour) -> Event {
    Event::Hourly(HourlyStats {
        device,
        hour_ms: h.hour_ms,
        signals: hourly
            .iter()
            .zip(&h.acc)
            .filter(|(_, a)| a.0 > 0)
            .map(|(s, a)| (*s, a.0, a.1, a.2, a.3))
            .collect(),
    })
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

#[cfg(test)]
mod tests;
