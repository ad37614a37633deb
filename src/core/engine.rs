//! The state model and the alarm engine (DESIGN §3, §4).
//!
//! One `Engine` holds every device's latest values, state, pending and active alarms and
//! maintenance windows. It is driven by `on_reading`, `tick` (the passage of time on the
//! gateway clock: heartbeat timeouts, alarm delays, window boundaries) and operator commands,
//! each given `now_ms`; it appends what happened to `out` as `Event`s, in order.

use std::collections::HashMap;
use std::sync::Arc;

use super::event::*;
use super::rules::ResponseClass;
use super::season::Season;
use crate::model::{DeviceIdx, Inventory, Status, Value};

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

/// The engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    inventory: Arc<Inventory>,
    settings: EngineSettings,
}

impl Engine {
    /// A new engine over `inventory`, continuing from `restored`. Appends the start-up
    /// transitions to `out`: devices never seen become `offline` (reason `start`); for a
    /// journal whose last run ended at `last_alive_ms`, each device not offline or in
    /// maintenance then is `offline` from `last_alive_ms` (reason `gateway_down`) and back in
    /// its journaled state at `now_ms` (reason `restored`).
    pub fn new(
        inventory: Arc<Inventory>,
        settings: EngineSettings,
        restored: Restored,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Engine {
        let _ = (restored, now_ms, out);
        Engine {
            inventory,
            settings,
        }
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
        let _ = (device, ts_ms, values, status, now_ms, out);
    }

    /// Lets time pass: heartbeat timeouts, alarm delays, maintenance window boundaries.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        let _ = (now_ms, out);
    }

    /// Acknowledges an alarm (`ts_ms`: the operator's own time, else `now_ms`).
    pub fn acknowledge(
        &mut self,
        id: &str,
        by: &str,
        ts_ms: Option<i64>,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<Alarm, CommandError> {
        let _ = (by, ts_ms, now_ms, out);
        Err(CommandError::UnknownAlarm(id.into()))
    }

    /// Records that someone is on site for an alarm.
    pub fn on_site(
        &mut self,
        id: &str,
        by: &str,
        ts_ms: Option<i64>,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<Alarm, CommandError> {
        let _ = (by, ts_ms, now_ms, out);
        Err(CommandError::UnknownAlarm(id.into()))
    }

    /// Adds an operator-set maintenance window `[start_ms, end_ms)` for a device.
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
        let _ = (device, start_ms, end_ms, reason, by, now_ms, out);
        Err(CommandError::Invalid("not yet".into()))
    }

    /// Ends a window early (at `now_ms`), or removes one that has not started.
    pub fn end_maintenance(
        &mut self,
        id: &str,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<MaintenanceWindow, CommandError> {
        let _ = (now_ms, out);
        Err(CommandError::Invalid(id.into()))
    }

    pub fn device(&self, device: DeviceIdx) -> DeviceView {
        DeviceView {
            device,
            state: DeviceState::Offline,
            since_ms: 0,
            last_seen_ms: None,
            active_alarms: 0,
        }
    }

    /// Active alarms and cleared ones still retained, oldest first.
    pub fn alarms(&self) -> impl Iterator<Item = &Alarm> {
        std::iter::empty()
    }

    pub fn alarm(&self, id: &str) -> Option<&Alarm> {
        let _ = id;
        None
    }

    /// Maintenance windows that have not ended.
    pub fn windows(&self) -> impl Iterator<Item = &MaintenanceWindow> {
        std::iter::empty()
    }

    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}
