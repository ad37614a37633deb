//! The core (DESIGN §2): pure logic over readings and time. Given the same readings, commands
//! and clock values it produces the same events, so every rule is tested without I/O. Its
//! vocabulary (rules, events, what a restart restores) lives in `crate::model`, which the
//! config, the journal and the API share.
//!
//! - `season`: the heating season in the site's time zone;
//! - `engine`: the state model and the alarm engine, one `Engine` per gateway;
//! - `response`: response times and timeliness (DESIGN §4);
//! - `escalation`: which escalation steps of an unanswered alarm are due, and their messages
//!   (operational, on the gateway's clock; not part of the engine).

pub mod engine;
pub mod escalation;
pub mod kpi;
pub mod response;
pub mod season;

pub use engine::{Engine, EngineSettings};
