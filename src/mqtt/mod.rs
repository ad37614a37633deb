//! MQTT plumbing shared by the MQTT source (`source::mqtt`, telemetry in) and the MQTT event
//! sink (`sink::mqtt`, alarm events and states out): connection options with TLS and
//! credentials (`options`), one connection in either protocol version (`link`: 3.1.1 or v5),
//! and the `{site}/{category}/{device}` topic patterns (`topic`).
//! Both components import this module; neither imports the other.

pub mod link;
mod options;
pub mod topic;

pub use options::{options, options_v5};
