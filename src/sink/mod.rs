//! Sinks take readings and core events and deliver them. A slow or dead sink
//! never blocks ingestion: each documents what it does when full.

pub mod mqtt;
pub mod store;
pub mod webhook;
