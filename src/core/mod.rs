//! The core (DESIGN §2): pure logic over readings and time. Given the same readings, commands
//! and clock values it produces the same events, so every rule is tested without I/O.
//!
//! - `rules`: conditions, state rules, alarm rules and response classes (typed profiles);
//! - `event`: device states, alarms and the events the core emits;
//! - `season`: the heating season in the site's time zone;
//! - `engine`: the state model and the alarm engine, one `Engine` per gateway;
//! - `response`: response times and timeliness (DESIGN §4).

pub mod engine;
pub mod event;
pub mod kpi;
pub mod response;
pub mod rules;
pub mod season;

pub use engine::{Engine, EngineSettings};
pub use event::{
    Alarm, AlarmEvent, AlarmEventKind, CommandError, DeviceState, Event, MaintenanceWindow, Reason,
    Stamp, StateChange,
};
pub use rules::Severity;
