//! What the core produces (events: state transitions and alarm lifecycle steps), what it
//! accepts besides readings (commands from operators: acknowledge, on site, maintenance; planned
//! maintenance from the configuration) and how it shows a device (`DeviceView`).
//!
//! Events refer to devices by `DeviceIdx` (the inventory of this run); the journal stores the
//! device's site and id so that a restart with an edited inventory still finds them.

use std::fmt;

use serde::Serialize;

use crate::model::rules::Severity;
use crate::model::DeviceIdx;

/// A device's state (DESIGN §4). Priority when several hold: maintenance > offline > fault >
/// intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Intact,
    Fault,
    Offline,
    Maintenance,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Intact => "intact",
            DeviceState::Fault => "fault",
            DeviceState::Offline => "offline",
            DeviceState::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceState> {
        Some(match s {
            "intact" => DeviceState::Intact,
            "fault" => DeviceState::Fault,
            "offline" => DeviceState::Offline,
            "maintenance" => DeviceState::Maintenance,
            _ => return None,
        })
    }

    pub const ALL: [DeviceState; 4] = [
        DeviceState::Intact,
        DeviceState::Fault,
        DeviceState::Offline,
        DeviceState::Maintenance,
    ];
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One device as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    pub device: DeviceIdx,
    pub state: DeviceState,
    pub since_ms: i64,
    /// Event time (`ts`) of the last reading; `None`: never heard from.
    pub last_seen_ms: Option<i64>,
    pub active_alarms: usize,
}

/// Why a device changed state; stored in the journal and sent with state events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First state of a device never seen before (DESIGN §4: offline until heard from).
    Start,
    /// A reading's values (fault or maintenance conditions started or stopped holding).
    Reading,
    /// No reading within the heartbeat timeout (MQTT devices).
    Heartbeat,
    /// An `offline` status message, or the Modbus poller's failed polls.
    Status,
    /// An operator-set or configured maintenance window started or ended.
    Window,
    /// The heating season began or ended (rules marked `season` start or stop applying).
    Season,
    /// Journals of earlier versions only: the gateway was not running (from its last alive
    /// moment to its restart every device counted as offline). A restart is no longer
    /// special (DESIGN §4): nothing emits this any more; reports still read it.
    GatewayDown,
    /// Journals of earlier versions only: the state restored at a restart.
    Restored,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Reading => "reading",
            Reason::Heartbeat => "heartbeat",
            Reason::Status => "status",
            Reason::Window => "window",
            Reason::Season => "season",
            Reason::GatewayDown => "gateway_down",
            Reason::Restored => "restored",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Some(match s {
            "start" => Reason::Start,
            "reading" => Reason::Reading,
            "heartbeat" => Reason::Heartbeat,
            "status" => Reason::Status,
            "window" => Reason::Window,
            "season" => Reason::Season,
            "gateway_down" => Reason::GatewayDown,
            "restored" => Reason::Restored,
            _ => return None,
        })
    }
}

/// One state transition of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub device: DeviceIdx,
    /// When the new state began (event time, see DESIGN §4 "Event time"); never earlier than
    /// the device's previous transition.
    pub ts_ms: i64,
    /// `None` for a device's first state.
    pub from: Option<DeviceState>,
    pub to: DeviceState,
    pub reason: Reason,
}

/// An operator action on an alarm, with who and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamp {
    pub ts_ms: i64,
    pub by: String,
}

/// One alarm: a rule that became active on a device, until it clears.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// `{site}-{sequence}`; stable across restarts (the journal keeps the sequence).
    pub id: String,
    pub device: DeviceIdx,
    pub rule: String,
    pub severity: Severity,
    pub class: String,
    /// The rendered message (Chinese, with the device's name).
    pub message: String,
    pub raised_ms: i64,
    pub acknowledged: Option<Stamp>,
    pub on_site: Option<Stamp>,
    pub cleared_ms: Option<i64>,
    /// The class's targets at the time the alarm was raised.
    pub ack_target_ms: i64,
    pub on_site_target_ms: Option<i64>,
    /// Cleared (restored) within this long counts as a timely repair (修复及时率); `None`:
    /// not graded for repair (no target, or a journal of an earlier version).
    pub repair_target_ms: Option<i64>,
    /// The escalation steps fired for it, in order. Filled in by the core stage for what it
    /// publishes and answers; the engine never sets or reads it (escalation runs on the
    /// gateway's clock, the engine in event time).
    pub escalations: Vec<crate::model::escalation::Escalation>,
}

impl Alarm {
    pub fn is_active(&self) -> bool {
        self.cleared_ms.is_none()
    }
    /// t_a − t_r in seconds.
    pub fn response_s(&self) -> Option<f64> {
        self.acknowledged
            .as_ref()
            .map(|s| (s.ts_ms - self.raised_ms) as f64 / 1000.0)
    }
    /// t_o − t_r in seconds.
    pub fn arrival_s(&self) -> Option<f64> {
        self.on_site
            .as_ref()
            .map(|s| (s.ts_ms - self.raised_ms) as f64 / 1000.0)
    }
    /// t_c − t_r in seconds.
    pub fn restore_s(&self) -> Option<f64> {
        self.cleared_ms
            .map(|c| (c - self.raised_ms) as f64 / 1000.0)
    }
}

/// A step of the alarm lifecycle (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmEventKind {
    Raised,
    Acknowledged,
    OnSite,
    Cleared,
}

impl AlarmEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmEventKind::Raised => "raised",
            AlarmEventKind::Acknowledged => "acknowledged",
            AlarmEventKind::OnSite => "on_site",
            AlarmEventKind::Cleared => "cleared",
        }
    }
    pub fn parse(s: &str) -> Option<AlarmEventKind> {
        Some(match s {
            "raised" => AlarmEventKind::Raised,
            "acknowledged" => AlarmEventKind::Acknowledged,
            "on_site" => AlarmEventKind::OnSite,
            "cleared" => AlarmEventKind::Cleared,
            _ => return None,
        })
    }
}

/// A lifecycle step and the alarm as it is after that step.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    pub kind: AlarmEventKind,
    /// When the step happened (event time).
    pub ts_ms: i64,
    /// The operator (acknowledged, on_site), `device` for an on-site signal, else empty.
    pub by: String,
    pub alarm: Alarm,
}

/// A fired escalation step and its alarm as it is then (`alarm.escalations` includes this one).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationEvent {
    pub escalation: crate::model::escalation::Escalation,
    pub alarm: Alarm,
}

/// Everything the core emits, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    State(StateChange),
    Alarm(AlarmEvent),
    /// A maintenance window was added or ended early (journaled so a restart keeps it).
    Maintenance(MaintenanceWindow),
    /// An indoor sensor's temperature crossed `heating.min_indoor_c` (heating compliance).
    Compliance(ComplianceChange),
    /// An hour of a device's `hourly` signals (mean, minimum, maximum) for the journal.
    Hourly(HourlyStats),
    /// An escalation step fired (emitted by the core stage, never by the engine).
    Escalation(EscalationEvent),
}

/// Whether an indoor sensor is at or above the minimum temperature, from `ts_ms` on
/// (`None`: no temperature known).
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceChange {
    pub device: DeviceIdx,
    pub ts_ms: i64,
    pub compliant: Option<bool>,
}

/// Readings of one device's `hourly` signals within one hour (by event time), always the whole
/// hour so far: the journal replaces the hour's row with it.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyStats {
    pub device: DeviceIdx,
    /// Start of the hour (unix ms, a multiple of 3,600,000).
    pub hour_ms: i64,
    /// Per signal: (signal index, readings, sum, minimum, maximum).
    pub signals: Vec<(u16, u64, f64, f64, f64)>,
}

/// The signal whose value decides heating compliance (indoor sensors).
pub const COMPLIANCE_SIGNAL: &str = "indoor_temp_c";

/// A maintenance window from the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMaintenance {
    pub device: DeviceIdx,
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: String,
}

/// Planned or operator-set maintenance of one device: `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenanceWindow {
    /// Assigned by the engine (`M{sequence}`), stable across restarts.
    pub id: String,
    #[serde(skip)]
    pub device: DeviceIdx,
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: String,
    /// Operator name, or `config` for windows from the configuration file.
    pub by: String,
    /// When it was entered (gateway time): after `start_ms` for a window recorded
    /// afterwards (年检 and repairs often are).
    pub entered_ms: i64,
}

/// Why an operator command was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no alarm with id {0:?}")]
    UnknownAlarm(String),
    #[error("no device with id {0:?} at this site")]
    UnknownDevice(String),
    #[error("alarm {id} was already acknowledged by {by} at {ts_ms} (unix ms)")]
    AlreadyAcknowledged { id: String, by: String, ts_ms: i64 },
    #[error("alarm {id} already has someone on site: {by} at {ts_ms} (unix ms)")]
    AlreadyOnSite { id: String, by: String, ts_ms: i64 },
    #[error("{0}")]
    Invalid(String),
}
