//! Where the engine stood when the gateway stopped: what the journal restores at start
//! (`crate::sink::journal` writes and reads it, `crate::core::Engine` goes on from it).
//!
//! A restart is not special (DESIGN §4): each device's event-time position, latest values,
//! pending delays and open hour are journaled with the events, so the same rules go on from
//! there as if the gateway had not stopped.

use crate::model::event::{Alarm, DeviceState, MaintenanceWindow};
use crate::model::value::Value;
use crate::model::DeviceIdx;

/// What the journal knew when the gateway started (see `crate::sink::journal`).
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The last moment the previous run was known to be alive (its last heartbeat in the
    /// journal, or its clean stop); `None` on a fresh journal. Only used for devices whose
    /// position a journal of an older schema did not keep.
    pub last_alive_ms: Option<i64>,
    /// Each known device's last journaled state and since when.
    pub states: Vec<RestoredState>,
    /// Each known device's event-time position, values and pending delays.
    pub progress: Vec<DeviceProgress>,
    /// Active alarms and alarms cleared within the retention time, devices resolved against
    /// this run's inventory (alarms of devices no longer in it are left out).
    pub alarms: Vec<Alarm>,
    /// Maintenance windows that had not ended (in event time) for their device.
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

/// Where one device stood in event time: what a restart needs to go on exactly as if the
/// gateway had not stopped. Journaled with the events (`Journal::save_progress`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceProgress {
    pub device: DeviceIdx,
    /// `ts` of the last applied reading (not an `offline` status); `None`: never heard from.
    pub last_ts_ms: Option<i64>,
    /// Every fact and timer of the device up to here has been applied.
    pub applied_ms: i64,
    /// When the device entered the inventory (DESIGN §4: offline from then if never heard).
    pub entered_ms: i64,
    pub heartbeat_expired: bool,
    pub status_offline: bool,
    /// Latest value of each signal (profile order).
    pub values: Vec<Option<Value>>,
    /// Per alarm rule (profile order): since when its raising condition has held.
    pub pending: Vec<Option<i64>>,
    /// The open hour of `hourly` signals: its start and, per signal, (n, sum, min, max).
    pub hour: Option<(i64, Vec<HourAcc>)>,
}

/// One signal's hour so far: (readings, sum, min, max).
pub type HourAcc = (u64, f64, f64, f64);
