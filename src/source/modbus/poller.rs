//! The Modbus poller: one task per endpoint (requests on one endpoint are serialised; endpoints
//! run in parallel), each device polled at its own interval with its precomputed plan.
//!
//! INTERFACE (fixed; the implementation is being written): `spawn` starts the endpoint tasks
//! and returns a `ModbusHandle` through which writes are queued into the same serialised
//! stream of requests as the polls.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::ModbusSettings;
use crate::clock::Clock;
use crate::model::{DeviceIdx, Inventory, Reading, Value};
use crate::stats::Stats;

/// Why a write did not happen. The HTTP API maps these to status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// 404
    #[error("no device `{0}`")]
    UnknownDevice(String),
    /// 409: the device is not polled over Modbus.
    #[error("device `{0}` is not a Modbus device")]
    NotModbus(String),
    /// 404
    #[error("device `{device}` has no signal `{signal}` in its register map")]
    UnknownSignal { device: String, signal: String },
    /// 403: the register map does not allow writing this signal.
    #[error("signal `{signal}` of `{device}` is not writable (not `writable = true` in the register map)")]
    NotWritable { device: String, signal: String },
    /// 400: the value cannot be encoded for the register.
    #[error("bad value for `{signal}`: {reason}")]
    BadValue { signal: String, reason: String },
    /// 502: the device answered with a Modbus exception.
    #[error("the device refused the write: {0}")]
    Exception(String),
    /// 504: timeout or transport failure.
    #[error("the device could not be reached: {0}")]
    Unreachable(String),
    /// 503: the gateway is shutting down or the endpoint's queue is full.
    #[error("the gateway cannot take writes now: {0}")]
    Unavailable(String),
}

/// A write queued to an endpoint task.
#[derive(Debug)]
pub struct WriteCommand {
    pub device: DeviceIdx,
    pub signal: String,
    pub value: Value,
    /// Who asked (operator name), for the log.
    pub by: String,
    pub reply: oneshot::Sender<Result<(), WriteError>>,
}

/// Handle to the running poller, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ModbusHandle {
    /// One sender per endpoint, indexed like `ModbusSettings::endpoints`.
    pub(crate) endpoints: Vec<mpsc::Sender<WriteCommand>>,
    pub(crate) inventory: Arc<Inventory>,
}

impl ModbusHandle {
    /// Writes `value` to `signal` of the device with this site and id, waiting for the
    /// device's answer. Checks (unknown device, not writable, bad value) happen before
    /// anything is sent.
    pub async fn write(
        &self,
        _site: &str,
        _device_id: &str,
        _signal: &str,
        _value: Value,
        _by: &str,
    ) -> Result<(), WriteError> {
        Err(WriteError::Unavailable("not implemented yet".into()))
    }
}

/// Starts one task per endpoint that has devices. Readings go to `tx`; tasks stop when
/// `shutdown` is cancelled.
pub fn spawn(
    _settings: &ModbusSettings,
    inventory: Arc<Inventory>,
    _stats: Arc<Stats>,
    _clock: Arc<dyn Clock>,
    _tx: mpsc::Sender<Reading>,
    _shutdown: CancellationToken,
) -> (ModbusHandle, Vec<tokio::task::JoinHandle<()>>) {
    (
        ModbusHandle {
            endpoints: Vec::new(),
            inventory,
        },
        Vec::new(),
    )
}
