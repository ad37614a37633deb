//! The task of one endpoint: polls its devices when they are due, one request at a time, and
//! performs queued writes between polls.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use tokio::time::{sleep_until, Instant};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::health::{Health, PollResult};
use super::link::{Link, Outcome};
use super::response;
use super::schedule;
use super::{WriteCommand, WriteError};
use crate::clock::Clock;
use crate::model::{Ack, Device, DeviceIdx, Inventory, Reading, Status, Value};
use crate::source::modbus::map::{Encoded, RegType};
use crate::source::modbus::{Binding, DeviceModel, Endpoint};
use crate::stats::{LogLimiter, Stats};

/// Per-poll failure log lines let through per kind per endpoint per window; offline/online
/// and endpoint down/up transitions are always logged.
const LOG_BURST: u32 = 5;
const LOG_WINDOW_MS: i64 = 60_000;

/// What a rate-limited log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LogKind {
    NoAnswer,
    Exception,
    Decode,
}

struct Slot {
    device: DeviceIdx,
    unit: u8,
    model: Arc<DeviceModel>,
    interval: Duration,
    due: Instant,
    health: Health,
}

pub(super) struct EndpointTask {
    ep: Arc<Endpoint>,
    link: Link,
    slots: Vec<Slot>,
    /// Slots by due time (ties: configuration order). Only a poll changes a slot's due time,
    /// so the polled slot is popped and pushed back; no scan over all slots per poll.
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    inventory: Arc<Inventory>,
    bindings: Arc<BTreeMap<DeviceIdx, Binding>>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Reading>,
    writes: mpsc::Receiver<WriteCommand>,
    offline_after: u32,
    logs: LogLimiter<LogKind>,
}

impl EndpointTask {
    #[allow(clippy::too_many_arguments)] // the parts of one task, handed over once by `spawn`
    pub(super) fn new(
        ep: Arc<Endpoint>,
        devices: &[DeviceIdx],
        offline_after: u32,
        inventory: Arc<Inventory>,
        bindings: Arc<BTreeMap<DeviceIdx, Binding>>,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
        tx: mpsc::Sender<Reading>,
        writes: mpsc::Receiver<WriteCommand>,
    ) -> Self {
        let start = Instant::now();
        let slots: Vec<Slot> = devices
            .iter()
            .enumerate()
            .filter_map(|(k, &device)| {
                let d = inventory.get(device);
                let b = bindings.get(&device)?;
                Some(Slot {
                    device,
                    unit: b.unit,
                    model: b.model.clone(),
                    interval: d.interval.max(Duration::from_millis(1)),
                    due: schedule::first_due(start, d.interval, k, devices.len()),
                    health: Health::default(),
                })
            })
            .collect();
        let queue = slots
            .iter()
            .enumerate()
            .map(|(k, s)| Reverse((s.due, k)))
            .collect();
        EndpointTask {
            link: Link::new(ep.clone(), stats.clone()),
            ep,
            slots,
            queue,
            inventory,
            bindings,
            stats,
            clock,
            tx,
            writes,
            offline_after,
            logs: LogLimiter::new(LOG_BURST, LOG_WINDOW_MS),
        }
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        info!(endpoint = %self.ep.name, url = %self.ep.url, devices = self.slots.len(),
              "Polling Modbus endpoint.");
        while let Some(next) = self.next_due() {
            let due = self.slots[next].due;
            // Already due (a busy endpoint): poll at once unless a write waits, without
            // arming a timer for an instant that has passed.
            if due <= Instant::now() {
                if shutdown.is_cancelled() {
                    break;
                }
                match self.writes.try_recv() {
                    Ok(cmd) => {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break,
                            _ = self.write(cmd) => {}
                        }
                    }
                    Err(_) => {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break,
                            _ = self.poll(next) => {}
                        }
                        self.requeue(next);
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(cmd) = self.writes.recv() => {
                    // A write cut short by shutdown drops its reply: the caller sees
                    // `Unavailable`.
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = self.write(cmd) => {}
                    }
                }
                _ = sleep_until(due) => {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = self.poll(next) => {}
                    }
                    self.requeue(next);
                }
            }
        }
        // The gauges keep their last values: the gateway point written at shutdown reports
        // the state the gateway stopped in.
        self.link.close().await;
        info!(endpoint = %self.ep.name, "Modbus endpoint task stopped.");
    }

    /// The slot due first (ties: configuration order).
    fn next_due(&self) -> Option<usize> {
        self.queue.peek().map(|Reverse((_, k))| *k)
    }

    /// Puts the just-polled slot back in the queue at its new due time.
    fn requeue(&mut self, k: usize) {
        if let Some(Reverse((_, top))) = self.queue.peek() {
            if *top == k {
                self.queue.pop();
            }
        }
        self.queue.push(Reverse((self.slots[k].due, k)));
    }

    /// Polls one device with its plan and reschedules it.
    async fn poll(&mut self, k: usize) {
        let ts_ms = self.clock.now_ms();
        let (device, unit, model, offline) = {
            let s = &self.slots[k];
            (s.device, s.unit, s.model.clone(), s.health.offline())
        };
        self.stats.modbus.polls.fetch_add(1, Relaxed);
        // An offline device gets one attempt per request: retries would only spend bus time.
        let attempts = if offline { 1 } else { 1 + self.ep.retries };
        let mut values: Vec<(u16, Value)> = Vec::new();
        let mut errors = Vec::new();
        let mut answered = false;
        let mut failed = false;
        let mut down = false;
        for q in &model.plan {
            let req = response::read_request(q);
            match self.link.call(unit, &req, attempts, true).await {
                Outcome::Answer(resp) => match response::data(resp) {
                    Some(data) => {
                        answered = true;
                        response::decode(&model, q, &data, &mut values, &mut errors);
                    }
                    None => failed = true,
                },
                Outcome::Exception(code) => {
                    failed = true;
                    let silent = is_gateway_silence(code);
                    answered |= !silent;
                    self.log_failure(device, LogKind::Exception, ts_ms, || {
                        format!(
                            "exception 0x{:02X} ({code}) to fc{:02} {} {}+{}",
                            u8::from(code),
                            q.function_code(),
                            q.table.name(),
                            q.start,
                            q.count
                        )
                    });
                    if silent && !answered {
                        // The gateway already waited for the device in vain: the rest of the
                        // plan would wait again.
                        break;
                    }
                }
                Outcome::NoAnswer(f) => {
                    failed = true;
                    self.log_failure(device, LogKind::NoAnswer, ts_ms, || {
                        format!(
                            "{f} ({}) to fc{:02} {} {}+{}",
                            f.kind(),
                            q.function_code(),
                            q.table.name(),
                            q.start,
                            q.count
                        )
                    });
                    // A device that has answered nothing yet will not answer the next
                    // request either: skip the rest of its plan instead of waiting out every
                    // timeout. One that did answer is alive and only ignores this request
                    // (some devices do, instead of sending an exception): go on.
                    if !answered {
                        break;
                    }
                }
                Outcome::Down => {
                    failed = true;
                    down = true;
                    break;
                }
            }
        }
        for (ri, e) in errors {
            self.stats.modbus.decode_errors.fetch_add(1, Relaxed);
            let signal = model.registers.get(ri).map_or("-", |r| r.signal.as_str());
            self.log_failure(device, LogKind::Decode, ts_ms, || {
                format!("signal `{signal}` dropped: {e}")
            });
        }
        if failed {
            self.stats.modbus.poll_failures.fetch_add(1, Relaxed);
        }
        let result = if answered {
            PollResult::Good
        } else if down {
            PollResult::EndpointDown
        } else {
            PollResult::Silent
        };
        let offline_after = self.offline_after;
        let slot = &mut self.slots[k];
        let status = slot.health.record(result, offline_after);
        let failures = slot.health.failures();
        let period = slot.health.period(slot.interval, offline_after);
        slot.due = schedule::next_due(slot.due, period, Instant::now());
        let d = self.inventory.get(device);
        match status {
            Some(Status::Offline) => {
                self.stats.modbus.devices_offline.fetch_add(1, Relaxed);
                warn!(site = %d.site, device = %d.id, endpoint = %self.ep.name, unit,
                      failed_polls = failures,
                      endpoint_down = self.link.is_down(),
                      "Modbus device offline.");
            }
            Some(Status::Online) => {
                self.stats.modbus.devices_offline.fetch_sub(1, Relaxed);
                info!(site = %d.site, device = %d.id, endpoint = %self.ep.name, unit,
                      "Modbus device online again.");
            }
            None => {}
        }
        if values.is_empty() && status.is_none() {
            return;
        }
        self.stats.readings.fetch_add(1, Relaxed);
        let reading = Reading {
            device,
            ts_ms,
            values,
            status,
            ack: Ack::None,
        };
        // Waits while the channel is full (backpressure); an error means the sinks are gone
        // and shutdown is under way.
        let _ = self.tx.send(reading).await;
    }

    fn log_failure(
        &mut self,
        device: DeviceIdx,
        kind: LogKind,
        now_ms: i64,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(suppressed) = self.logs.allow(kind, now_ms) {
            let d = self.inventory.get(device);
            warn!(site = %d.site, device = %d.id, endpoint = %self.ep.name,
                  unit = self.bindings.get(&device).map_or(0, |b| b.unit),
                  detail = %detail(), suppressed_before = suppressed,
                  "Modbus poll failed.");
        }
    }

    /// Performs one queued write, logs it and answers the caller.
    async fn write(&mut self, cmd: WriteCommand) {
        // The caller gave up waiting (its deadline passed while polls ran): a write nobody
        // waits for must not happen behind the operator's back.
        if cmd.reply.is_closed() {
            return;
        }
        let inventory = self.inventory.clone();
        let d = inventory.get(cmd.device);
        let result = self
            .perform_write(cmd.device, d, &cmd.signal, &cmd.value)
            .await;
        self.stats.modbus.writes.fetch_add(1, Relaxed);
        if result.is_err() {
            self.stats.modbus.write_failures.fetch_add(1, Relaxed);
        }
        info!(by = %cmd.by, site = %d.site, device = %d.id, signal = %cmd.signal,
              value = %cmd.value, endpoint = %self.ep.name,
              result = %result.as_ref().map_or_else(|e| e.to_string(), |()| "ok".to_owned()),
              "Modbus write.");
        let _ = cmd.reply.send(result);
    }

    async fn perform_write(
        &mut self,
        device: DeviceIdx,
        d: &Device,
        signal: &str,
        value: &Value,
    ) -> Result<(), WriteError> {
        let bindings = self.bindings.clone();
        let b = bindings
            .get(&device)
            .ok_or_else(|| WriteError::NotModbus(d.id.clone()))?;
        let reg = b
            .model
            .register(signal)
            .ok_or_else(|| WriteError::UnknownSignal {
                device: d.id.clone(),
                signal: signal.to_owned(),
            })?;
        if !reg.writable {
            return Err(WriteError::NotWritable {
                device: d.id.clone(),
                signal: signal.to_owned(),
            });
        }
        let attempts = 1 + self.ep.retries;
        // A bit of a register: read the register, change the bit, write it back.
        let current = match reg.ty {
            RegType::Bit(_) => {
                let read = Request::ReadHoldingRegisters(reg.address, 1);
                match self.link.call(b.unit, &read, attempts, false).await {
                    Outcome::Answer(Response::ReadHoldingRegisters(w)) if !w.is_empty() => {
                        Some(w[0])
                    }
                    Outcome::Answer(_) => {
                        return Err(WriteError::Unreachable(
                            "the device answered the read of the register with no data".into(),
                        ))
                    }
                    other => return Err(self.write_failure(other)),
                }
            }
            _ => None,
        };
        let encoded = reg
            .encode(value, current)
            .map_err(|e| WriteError::BadValue {
                signal: signal.to_owned(),
                reason: e.to_string(),
            })?;
        let req = match encoded {
            Encoded::Bit(on) => Request::WriteSingleCoil(reg.address, on),
            Encoded::Words(w) if w.len() == 1 => Request::WriteSingleRegister(reg.address, w[0]),
            Encoded::Words(w) => Request::WriteMultipleRegisters(reg.address, Cow::Owned(w)),
        };
        match self.link.call(b.unit, &req, attempts, false).await {
            Outcome::Answer(_) => Ok(()),
            other => Err(self.write_failure(other)),
        }
    }

    fn write_failure(&self, o: Outcome) -> WriteError {
        match o {
            Outcome::Exception(code) => {
                WriteError::Exception(format!("exception 0x{:02X}: {code}", u8::from(code)))
            }
            Outcome::NoAnswer(f) => WriteError::Unreachable(f.to_string()),
            Outcome::Down => WriteError::Unreachable(format!(
                "endpoint `{}` ({}) cannot be reached",
                self.ep.name, self.ep.url
            )),
            Outcome::Answer(_) => WriteError::Unreachable("unexpected answer".into()),
        }
    }
}

/// Exceptions 0x0A/0x0B come from a gateway in front of the device and mean the device itself
/// did not answer: for offline purposes that is silence, not an answer.
fn is_gateway_silence(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_exceptions_mean_silence() {
        assert!(is_gateway_silence(ExceptionCode::GatewayTargetDevice));
        assert!(is_gateway_silence(ExceptionCode::new(0x0A)));
        assert!(!is_gateway_silence(ExceptionCode::IllegalDataAddress));
        assert!(!is_gateway_silence(ExceptionCode::ServerDeviceBusy));
    }
}
