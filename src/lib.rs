//! estate-gateway: an on-site gateway for residential estates (物业小区).
//!
//! Data flow (DESIGN §2; `ARCHITECTURE.md` maps it to files):
//! sources (`source::mqtt`, `source::modbus`) → `Reading` → the core stage (`stage`:
//! `core::Engine`'s states and alarms, journaled by `journal`) → sinks (`sink::store`,
//! `sink::mqtt`, `sink::webhook`, the HTTP live stream); `report` computes the KPIs from the
//! journal. Every stage is joined by bounded channels.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod core;
pub mod demo;
pub mod doctor;
pub mod encode;
pub mod http;
pub mod hub;
pub mod intake;
pub mod journal;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod replay;
pub mod report;
pub mod run;
pub mod schema;
pub mod sim;
pub mod sink;
pub mod source;
pub mod stage;
pub mod stats;
pub mod wal;
