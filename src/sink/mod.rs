//! Sinks take readings (later also events and points) and deliver them. A slow or dead sink
//! never blocks ingestion: each documents what it does when full.

pub mod journal;
pub mod line;
pub mod store;
