//! All integration tests link into this one binary (one link step on 2 cores).

// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failure with
// its message, which is what we want (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used)]

mod alarms;
mod bad_input;
mod config_errors;
mod dashboard;
mod demo;
mod disk_full;
mod doctor;
mod durability;
mod e2e;
mod escalation;
mod event_time;
mod fixture;
mod fleet;
mod fleet_dashboard;
mod grafana;
mod harness_smoke;
mod hostile;
mod http_api;
mod layers;
mod modbus_peers;
mod mqtt_hostile;
mod mqtt_security;
mod outages;
mod package;
mod promql;
mod reload;
mod report_cli;
mod sim;
mod store_tls;
mod support;
