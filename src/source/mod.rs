//! Sources turn protocol traffic into `Reading`s. They know nothing of alarms or stores.

pub mod decode;
pub mod modbus;
pub mod mqtt;
pub mod takeover;
