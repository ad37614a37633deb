//! The Modbus poller (DESIGN §7): one task per endpoint, each device polled at its own
//! interval with its precomputed plan, responses decoded into the same `Reading`s the MQTT
//! source produces, and operators' writes queued into the same serialised stream of requests.
//!
//! **Serialised per endpoint, parallel across endpoints.** A serial line carries one
//! transaction at a time, and many TCP gateways serialise too, so an endpoint's task sends one
//! request, waits for its answer (or `timeout`), waits `pause_between_requests`, and only then
//! sends the next. Endpoints are separate tasks: a dead or slow endpoint never delays another.
//!
//! **Schedule** (`schedule`): each device is due on a fixed grid of its `interval` (no drift);
//! after a stall of more than an interval it is polled once, now, without a catch-up burst.
//! `ts_ms` of a reading is the gateway clock when its poll started.
//!
//! **Failures** (`link`): each request has `timeout` and up to `retries` extra attempts on a
//! timeout or transport error; either drops the connection (a late answer would be mistaken
//! for the next one) and the next attempt reconnects. A Modbus exception is an answer: counted
//! per code (`modbus_exception_<code>`), the connection kept, no retry. When a device that has
//! answered nothing yet in this poll leaves a request unanswered, the rest of its plan is
//! skipped; one that did answer earlier requests is alive and only ignores this one, so the
//! rest is still read. An endpoint that cannot be reached is retried with capped exponential
//! backoff and jitter (`reconnect_min` to `reconnect_max`); meanwhile every due device counts
//! a failed poll without touching the network.
//!
//! **Isolation on a shared endpoint.** A silent unit costs its own timeouts, never more: the
//! rest of its plan is skipped, an offline device gets no retries, and once offline its poll
//! period doubles with each silent poll up to 60 s. A healthy unit on the same endpoint is
//! delayed by at most one silent poll, `timeout × (1 + retries)` (plus the pauses).
//!
//! **Offline** (`health`): after `offline_after` consecutive failed polls the device gets one
//! reading with `status: Offline` (no values); the first good poll after that sends its values
//! with `status: Online`. A poll is good when the device answered at least one request (data,
//! or an exception other than the gateway's "target did not respond", 0x0A/0x0B): so a
//! *partly failed poll counts as good* for offline purposes — the device is reachable, its
//! values are sent, and the failure is counted in `modbus_poll_failures`. A value that does not
//! decode (an enum index out of range, NaN) drops only that signal, counted in
//! `modbus_decode_errors`.
//!
//! **Writes**: `ModbusHandle::write` checks the device, the signal and the value, queues a
//! `WriteCommand` to the endpoint's task, which performs it between two polls (coil → fc05; one
//! register → fc06; several → fc16; a bit of a register → fc03 read, then fc06 with the bit
//! changed), logs it with who asked, and answers. Writes try to connect even while the endpoint
//! is backing off (an operator is waiting).
//!
//! **Shutdown**: tasks stop as soon as the token is cancelled (a poll in progress is
//! abandoned) and close their connections.
//!
//! **Logs**: endpoint unreachable / reachable again and device offline / online again are
//! logged once per transition; per-poll failures (`Modbus poll failed.`) at most 5 per kind
//! per endpoint per minute, the next one saying how many were suppressed.

mod health;
mod link;
mod response;
mod schedule;
mod task;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::map::RegType;
use super::Endpoint;
use super::{Binding, ModbusSettings};
use crate::clock::Clock;
use crate::model::{DeviceIdx, Inventory, Reading, Value};
use crate::stats::Stats;

/// Writes waiting for one endpoint's task; more are refused as `Unavailable`.
const WRITE_QUEUE: usize = 32;
/// How long `ModbusHandle::write` waits for the endpoint's answer: the current poll may have
/// to finish first, then the write's own attempts.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// 422: outside the signal's `min`/`max`, or not one of an enum's values.
    #[error("refused `{signal}` = {value}: {reason}")]
    OutOfRange {
        signal: String,
        value: String,
        reason: String,
    },
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
    /// `ModbusSettings::bindings`: which devices are polled, where and with which model.
    pub(crate) bindings: Arc<BTreeMap<DeviceIdx, Binding>>,
}

impl ModbusHandle {
    /// Writes `value` to `signal` of the device with this site and id, waiting for the
    /// device's answer. Checks (unknown device, not writable, bad value) happen before
    /// anything is sent.
    pub async fn write(
        &self,
        site: &str,
        device_id: &str,
        signal: &str,
        value: Value,
        by: &str,
    ) -> Result<(), WriteError> {
        // The endpoint task logs every write it performs; what ends here is logged here.
        let outcome = self.queue(site, device_id, signal, value.clone(), by).await;
        match outcome {
            Ok(answer) => answer,
            Err(e) => {
                info!(by = %by, site = %site, device = %device_id, signal = %signal, value = %value, result = %e,
                      "Modbus write.");
                Err(e)
            }
        }
    }

    /// Checks the write and hands it to the endpoint's task: `Err` if it never got there (or
    /// no answer came back), else the task's answer.
    async fn queue(
        &self,
        site: &str,
        device_id: &str,
        signal: &str,
        value: Value,
        by: &str,
    ) -> Result<Result<(), WriteError>, WriteError> {
        let device = self
            .inventory
            .lookup(site, device_id)
            .ok_or_else(|| WriteError::UnknownDevice(device_id.to_owned()))?;
        let b = self
            .bindings
            .get(&device)
            .ok_or_else(|| WriteError::NotModbus(device_id.to_owned()))?;
        let reg = b
            .model
            .register(signal)
            .ok_or_else(|| WriteError::UnknownSignal {
                device: device_id.to_owned(),
                signal: signal.to_owned(),
            })?;
        if !reg.writable {
            return Err(WriteError::NotWritable {
                device: device_id.to_owned(),
                signal: signal.to_owned(),
            });
        }
        reg.check_limits(&value)
            .map_err(|reason| WriteError::OutOfRange {
                signal: signal.to_owned(),
                value: value.to_string(),
                reason,
            })?;
        // A bit of a register is encoded against the register's current word, read by the
        // task; any word tells whether the value itself is acceptable.
        let current = matches!(reg.ty, RegType::Bit(_)).then_some(0);
        reg.encode(&value, current)
            .map_err(|e| WriteError::BadValue {
                signal: signal.to_owned(),
                reason: e.to_string(),
            })?;
        let tx = self.endpoints.get(b.endpoint).ok_or_else(|| {
            WriteError::Unavailable("the Modbus poller is not running".to_owned())
        })?;
        let (reply, answer) = oneshot::channel();
        let cmd = WriteCommand {
            device,
            signal: signal.to_owned(),
            value,
            by: by.to_owned(),
            reply,
        };
        tx.try_send(cmd).map_err(|e| {
            WriteError::Unavailable(match e {
                mpsc::error::TrySendError::Full(_) => {
                    "too many writes are waiting for this endpoint; try again".to_owned()
                }
                mpsc::error::TrySendError::Closed(_) => "the gateway is shutting down".to_owned(),
            })
        })?;
        match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(WriteError::Unavailable(
                "the gateway is shutting down".to_owned(),
            )),
            // Dropping `answer` tells the task not to perform the write if it has not begun.
            Err(_) => Err(WriteError::Unreachable(format!(
                "no answer within {}: the endpoint is busy with slow devices",
                humantime::format_duration(WRITE_TIMEOUT)
            ))),
        }
    }
}

/// Starts one task per endpoint that has devices. Readings go to `tx`; tasks stop when
/// `shutdown` is cancelled.
pub fn spawn(
    settings: &ModbusSettings,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Reading>,
    shutdown: CancellationToken,
) -> (ModbusHandle, Vec<tokio::task::JoinHandle<()>>) {
    let mut per_endpoint: Vec<Vec<DeviceIdx>> = vec![Vec::new(); settings.endpoints.len()];
    // In inventory order, as the bindings are keyed by inventory index.
    for (&i, b) in &settings.bindings {
        if let Some(list) = per_endpoint.get_mut(b.endpoint) {
            list.push(i);
        }
    }
    let bindings = Arc::new(settings.bindings.clone());
    let mut senders = Vec::with_capacity(settings.endpoints.len());
    let mut tasks = Vec::new();
    for (ep, devices) in settings.endpoints.iter().zip(&per_endpoint) {
        let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
        senders.push(wtx);
        if devices.is_empty() {
            // No task: a write to it (impossible, no device is bound) would be `Unavailable`.
            continue;
        }
        let t = task::EndpointTask::new(
            Arc::new(ep.clone()),
            devices,
            settings.offline_after,
            inventory.clone(),
            bindings.clone(),
            stats.clone(),
            clock.clone(),
            tx.clone(),
            wrx,
        );
        tasks.push(tokio::spawn(t.run(shutdown.clone())));
    }
    (
        ModbusHandle {
            endpoints: senders,
            inventory,
            bindings,
        },
        tasks,
    )
}

/// Why a probe read failed (`estate-gateway doctor`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the connection failed during the request: {0}")]
    Transport(String),
    #[error("the device answered with exception {0}")]
    Exception(String),
    #[error("the model has no register to read")]
    Empty,
}

/// Reads the first request of `model`'s poll plan from `unit` on `endpoint`, on a connection
/// of its own (not the poller's): what `doctor` runs once per device. `Ok` says what was read.
pub async fn probe(
    endpoint: &Endpoint,
    unit: u8,
    model: &super::DeviceModel,
) -> Result<String, ProbeError> {
    let q = model.plan.first().ok_or(ProbeError::Empty)?;
    let what = format!(
        "fc{:02} {} {}..{} ({} {})",
        q.function_code(),
        q.table.name(),
        q.start,
        u32::from(q.start) + u32::from(q.count) - 1,
        q.count,
        if q.table.is_bits() { "bits" } else { "words" }
    );
    link::probe(
        &endpoint.kind,
        endpoint.timeout,
        unit,
        response::read_request(q),
    )
    .await?;
    Ok(what)
}
