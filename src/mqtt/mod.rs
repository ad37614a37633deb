//! MQTT plumbing shared by the MQTT source (`source::mqtt`, telemetry in) and the MQTT event
//! sink (`sink::mqtt`, alarm events and states out): connection options with TLS and
//! credentials (`options`), and the `{site}/{category}/{device}` topic patterns (`topic`).
//! Both components import this module; neither imports the other.

mod options;
pub mod topic;

pub use options::options;
