//! estate-gateway: an on-site gateway for residential estates (物业小区).
//!
//! Data flow (DESIGN §2; `ARCHITECTURE.md` maps it to files):
//! sources (`source::mqtt`) → `Reading` → sinks (`sink::store`). State, alarms, the journal
//! and KPIs join between them in later stages; every stage is joined by bounded channels.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod core;
pub mod demo;
pub mod http;
pub mod model;
pub mod replay;
pub mod mqtt;
pub mod report;
pub mod run;
pub mod schema;
pub mod sim;
pub mod sink;
pub mod source;
pub mod stage;
pub mod stats;
