//! The Modbus poller (work in progress).
