//! The state model and the alarm engine (DESIGN §3, §4), in event time.
//!
//! One `Engine` holds every device's latest values, state, pending and active alarms and
//! maintenance windows. Every transition it emits is stamped with the time the fact happened
//! in the world (DESIGN §4 "Event time"): a reading's `ts`, `last ts + heartbeat_timeout`,
//! `first ts the condition held + delay`, a window's start and end. Each device has its own
//! event-time position (`applied`): its facts are applied in `ts` order, and its timers
//! (heartbeat, delays, window boundaries, season boundaries) fire in time order when a later
//! fact of that device arrives, or when the gateway clock lets the engine conclude that nothing
//! earlier will arrive any more (`tick`: no reading of the device for the remaining time plus
//! `max_lateness`). The wall clock never stamps a transition; it only decides *when* a moment
//! is concluded. A restart is not special: the journal keeps each device's position, values
//! and pending delays (`DeviceProgress`), and the same rules go on from there.
//!
//! The engine's concerns live in separate files: `time` (readings in `ts` order, timers,
//! conclusions), `alarms` (rules, raise/clear, acknowledgments), `maintenance` (windows),
//! `heating` (compliance changes and hourly statistics).

use std::collections::HashMap;
use std::sync::Arc;

use super::season::Season;
use crate::model::event::*;
use crate::model::restore::{DeviceProgress, Restored};
use crate::model::rules::ResponseClass;
use crate::model::{DeviceIdx, Inventory, Value};

mod alarms;
mod heating;
mod maintenance;
mod time;

pub use alarms::render_message;
pub use time::Applied;

/// Default `ingest.max_lateness` (DESIGN §4): how long past a moment the gateway waits for
/// readings of that moment before concluding it.
pub const DEFAULT_MAX_LATENESS_MS: i64 = 2_000;

const HOUR_MS: i64 = 3_600_000;

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
    /// `ingest.max_lateness`: a timeout, delay or window boundary is concluded once no
    /// reading of its device has arrived for the remaining time plus this (DESIGN §4).
    pub max_lateness_ms: i64,
    /// Per site (`""`: every other site), the classes whose on-site target is three minutes
    /// (`three_minute_promise`).
    pub three_minute_promise: HashMap<String, Vec<String>>,
    /// When devices never heard from entered the inventory (`monitored_since`), by device;
    /// devices not listed entered at the first start of a gateway that lists them.
    pub monitored_since: HashMap<DeviceIdx, i64>,
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

/// Per-rule progress on one device.
#[derive(Debug, Clone, Default)]
struct RuleState {
    /// Event time since which the raising condition has held (waiting out `delay`).
    pending_since: Option<i64>,
    /// The active alarm of this rule, if any.
    active: Option<String>,
}

/// One device's current hour of `hourly` signals.
#[derive(Debug, Clone)]
struct Hour {
    hour_ms: i64,
    /// Per `hourly` signal (profile order): readings, sum, min, max.
    acc: Vec<(u64, f64, f64, f64)>,
}

/// An indoor sensor's compliance as last emitted.
#[derive(Debug, Clone, Copy)]
struct Compliance {
    /// The `indoor_temp_c` signal's index.
    signal: u16,
    current: Option<bool>,
}

/// Everything the engine knows about one device.
#[derive(Debug, Clone)]
struct Dev {
    /// Latest value of each signal (index as in the profile).
    values: Vec<Option<Value>>,
    state: DeviceState,
    since_ms: i64,
    /// Its first transition has been emitted (before that its state is "not yet decided").
    started: bool,
    /// When it entered the inventory.
    entered_ms: i64,
    /// `ts` of the last applied reading that was not an `offline` report.
    last_ts: Option<i64>,
    /// Event-time position: facts and timers before this are applied.
    applied_ms: i64,
    /// The last fact's (event time, gateway time): conclusions run from here.
    anchor: (i64, i64),
    /// A reading arrived in this run (Modbus devices: the poller decides offline from then on).
    live: bool,
    heartbeat_expired: bool,
    status_offline: bool,
    /// A fault condition holds (latest values).
    fault: bool,
    /// A maintenance condition holds (latest values).
    signal_maintenance: bool,
    rules: Vec<RuleState>,
    compliance: Option<Compliance>,
    hour: Option<Hour>,
    /// Some rule of the device depends on the heating season.
    seasonal: bool,
    /// The next season boundary after `applied_ms` (seasonal devices).
    next_season: Option<i64>,
    /// Changed since its progress was last taken for the journal.
    dirty: bool,
}

impl Dev {
    fn never_seen(&self) -> bool {
        self.last_ts.is_none()
    }

    fn offline(&self) -> bool {
        self.never_seen() || self.heartbeat_expired || self.status_offline
    }

    /// What the `offline` alarm rules see: a device never heard from is offline from the
    /// moment it entered the inventory, but its offline *alarm* waits for its heartbeat
    /// timeout from that moment like any other.
    fn offline_for_alarms(&self) -> bool {
        self.heartbeat_expired || self.status_offline
    }
}

/// A maintenance window and how far its device has got through it.
#[derive(Debug, Clone)]
struct Win {
    w: MaintenanceWindow,
    /// Its start as applied: the window's start, or its device's position when the window
    /// was entered after that (the part before is in the journal's window row, not in the
    /// transitions; reports count it from there).
    start_at: i64,
    started: bool,
    ended: bool,
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
    windows: Vec<Win>,
    next_alarm_seq: u64,
    next_window_seq: u64,
}

impl Engine {
    /// A new engine over `inventory` at gateway time `now_ms`, continuing from `restored`.
    /// Devices the journal does not know entered the inventory now (or at their
    /// `monitored_since`); their first state is decided in event time (a reading before that
    /// moment starts them at its own `ts`; otherwise they are `offline` from that moment,
    /// reason `start`). Known devices go on from their journaled position: no transition is
    /// made for the restart itself. Planned windows from the configuration are added (once:
    /// their ids are derived from site, device and start).
    pub fn new(
        inventory: Arc<Inventory>,
        settings: EngineSettings,
        restored: Restored,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Engine {
        let devs = inventory
            .devices()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let entered = settings
                    .monitored_since
                    .get(&(i as DeviceIdx))
                    .copied()
                    .unwrap_or(now_ms);
                let seasonal = d.rules.state.fault.iter().any(|c| c.season)
                    || d.rules.state.maintenance.iter().any(|c| c.season)
                    || d.rules.alarms.iter().any(|r| match &r.trigger {
                        crate::model::rules::Trigger::Condition { when, .. } => when.season,
                        crate::model::rules::Trigger::Offline => false,
                    });
                Dev {
                    values: vec![None; d.profile.signals.len()],
                    state: DeviceState::Offline,
                    since_ms: entered,
                    started: false,
                    entered_ms: entered,
                    last_ts: None,
                    applied_ms: i64::MIN,
                    anchor: (entered, now_ms),
                    live: false,
                    heartbeat_expired: false,
                    status_offline: false,
                    fault: false,
                    signal_maintenance: false,
                    rules: vec![RuleState::default(); d.rules.alarms.len()],
                    compliance: d.profile.signal_index(COMPLIANCE_SIGNAL).map(|signal| {
                        Compliance {
                            signal,
                            current: None,
                        }
                    }),
                    hour: None,
                    seasonal,
                    next_season: None,
                    // Its entry into the inventory is kept from the start (a restart before
                    // its first reading must not move it).
                    dirty: true,
                }
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
        };
        for r in &restored.states {
            let Some(dev) = e.devs.get_mut(r.device as usize) else {
                continue;
            };
            dev.started = true;
            dev.state = r.state;
            dev.since_ms = r.since_ms;
            dev.applied_ms = r.since_ms;
            // A journal of an older schema kept no position: the device counts as last heard
            // when the previous run was last alive.
            let last = restored.last_alive_ms.unwrap_or(r.since_ms).max(r.since_ms);
            match r.state {
                DeviceState::Offline => dev.heartbeat_expired = true,
                s => {
                    dev.last_ts = Some(last);
                    dev.applied_ms = last;
                    dev.fault = s == DeviceState::Fault;
                    dev.signal_maintenance = s == DeviceState::Maintenance;
                }
            }
            dev.anchor = (dev.applied_ms, now_ms);
        }
        for p in &restored.progress {
            let Some(dev) = e.devs.get_mut(p.device as usize) else {
                continue;
            };
            dev.dirty = false;
            dev.last_ts = p.last_ts_ms;
            dev.applied_ms = p.applied_ms.max(dev.since_ms);
            dev.entered_ms = p.entered_ms;
            dev.heartbeat_expired = p.heartbeat_expired;
            dev.status_offline = p.status_offline;
            if p.values.len() == dev.values.len() {
                dev.values = p.values.clone();
            }
            if p.pending.len() == dev.rules.len() {
                for (r, s) in dev.rules.iter_mut().zip(&p.pending) {
                    r.pending_since = *s;
                }
            }
            if let Some((hour_ms, acc)) = &p.hour {
                dev.hour = Some(Hour {
                    hour_ms: *hour_ms,
                    acc: acc.clone(),
                });
            }
            if !dev.started {
                // Known but never decided (stopped within its first moments): it goes on
                // from where it was.
                dev.since_ms = p.entered_ms;
            }
            // Conclusions run from where the device stands (a device not yet decided: from
            // when it entered the inventory), counted from this start.
            let from = if dev.started {
                dev.applied_ms
            } else {
                p.entered_ms
            };
            dev.anchor = (from, now_ms);
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
        for i in 0..e.devs.len() {
            let device = i as DeviceIdx;
            if e.devs[i].values.iter().any(Option::is_some) {
                let ts = e.devs[i].applied_ms;
                e.recompute_conditions(device, ts);
            }
            e.devs[i].next_season = e.next_season_after(device, e.devs[i].applied_ms);
        }
        for w in restored.windows {
            e.restore_window(w);
        }
        let planned = std::mem::take(&mut e.settings.planned);
        for p in &planned {
            e.add_planned(p, now_ms, out);
        }
        e.settings.planned = planned;
        e
    }

    /// Every device's state at this moment of the engine.
    pub fn device(&self, device: DeviceIdx) -> DeviceView {
        let dev = &self.devs[device as usize];
        DeviceView {
            device,
            state: dev.state,
            since_ms: dev.since_ms,
            last_seen_ms: dev.last_ts,
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

    /// Maintenance windows that have not ended for their device.
    pub fn windows(&self) -> impl Iterator<Item = &MaintenanceWindow> {
        self.windows.iter().map(|w| &w.w)
    }

    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }

    /// The progress of every device that changed since the last call, for the journal (a
    /// restart goes on from there).
    pub fn take_progress(&mut self) -> Vec<DeviceProgress> {
        let mut v = Vec::new();
        for (i, dev) in self.devs.iter_mut().enumerate() {
            if !dev.dirty {
                continue;
            }
            dev.dirty = false;
            v.push(DeviceProgress {
                device: i as DeviceIdx,
                last_ts_ms: dev.last_ts,
                applied_ms: dev.applied_ms,
                entered_ms: dev.entered_ms,
                heartbeat_expired: dev.heartbeat_expired,
                status_offline: dev.status_offline,
                values: dev.values.clone(),
                pending: dev.rules.iter().map(|r| r.pending_since).collect(),
                hour: dev.hour.as_ref().map(|h| (h.hour_ms, h.acc.clone())),
            });
        }
        v
    }

    // ---- state ----

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

    /// Recomputes the device's state at `ts_ms`, emits a transition if it changed (or the
    /// device's first one), then evaluates its alarm rules at that time.
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
        dev.dirty = true;
        if !dev.started {
            dev.started = true;
            out.push(Event::State(StateChange {
                device,
                ts_ms,
                from: None,
                to: state,
                reason,
            }));
            dev.state = state;
            dev.since_ms = ts_ms;
            // From its first state on, the season's boundaries are its timers too.
            self.devs[device as usize].next_season = self.next_season_after(device, ts_ms);
        } else if state != dev.state {
            // Facts of one device are applied in `ts` order, so this never goes back in time;
            // the bound only guards the journal against a bug.
            let ts = ts_ms.max(dev.since_ms);
            out.push(Event::State(StateChange {
                device,
                ts_ms: ts,
                from: Some(dev.state),
                to: state,
                reason,
            }));
            dev.state = state;
            dev.since_ms = ts;
        }
        self.evaluate_rules(device, ts_ms, false, out);
    }
}

#[cfg(test)]
mod tests;
