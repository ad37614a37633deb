//! Encoders: the two wire forms the gateway writes. `line` is the store's line protocol
//! (DESIGN §5), used by the store sink and the KPI and assessment points of `report`; `json`
//! is the one JSON form of alarms, events, states and devices, used by the MQTT sink, the
//! webhook, the HTTP API and its live stream. Pure functions over core events and the
//! inventory: no I/O.

pub mod exception;
pub mod json;
pub mod line;
