//! The gateway's own health: counters every stage bumps, the reasons input is rejected, the
//! Modbus poller's counters (polls, failures, exceptions per code, latency), and a rate limiter
//! for the log lines bad input and failing devices cause. The store sink writes these as the
//! `gateway` measurement every `gateway.stats_interval` (DESIGN §5).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Why a message, or one signal of it, was rejected. The string form is the log `reason`
/// and the `gateway` field name (`rejected_<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The payload is not JSON (whole message dropped).
    InvalidJson,
    /// The payload is JSON but not an object of signals (whole message dropped).
    NotObject,
    /// A signal's value has the wrong type for its profile (that signal dropped).
    WrongType,
    /// A signal's value is NaN or ±Infinity (that signal dropped).
    NonFinite,
    /// A key that is not a signal of the device's profile (that signal dropped).
    UnknownSignal,
    /// The topic names a device not in the inventory (whole message dropped).
    UnknownDevice,
    /// The topic's category differs from the device's (whole message dropped).
    CategoryMismatch,
    /// The payload exceeds `mqtt.max_payload_bytes` (whole message dropped).
    Oversize,
    /// `ts` is not a positive integer of unix milliseconds (whole message dropped).
    BadTimestamp,
    /// `ts` is more than `ingest.max_clock_skew` ahead of the gateway clock (whole message).
    FutureTimestamp,
    /// `ts` is older than `ingest.max_reading_age` (whole message dropped).
    StaleTimestamp,
    /// A status payload other than `online` / `offline` (whole message dropped).
    BadStatus,
    /// An acknowledgment or on-site message that is not `{"id": …, "by": …, "ts": …}`.
    BadCommand,
}

impl Reject {
    pub const ALL: [Reject; 13] = [
        Reject::InvalidJson,
        Reject::NotObject,
        Reject::WrongType,
        Reject::NonFinite,
        Reject::UnknownSignal,
        Reject::UnknownDevice,
        Reject::CategoryMismatch,
        Reject::Oversize,
        Reject::BadTimestamp,
        Reject::FutureTimestamp,
        Reject::StaleTimestamp,
        Reject::BadStatus,
        Reject::BadCommand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::InvalidJson => "invalid_json",
            Reject::NotObject => "not_object",
            Reject::WrongType => "wrong_type",
            Reject::NonFinite => "non_finite",
            Reject::UnknownSignal => "unknown_signal",
            Reject::UnknownDevice => "unknown_device",
            Reject::CategoryMismatch => "category_mismatch",
            Reject::Oversize => "oversize",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::FutureTimestamp => "future_timestamp",
            Reject::StaleTimestamp => "stale_timestamp",
            Reject::BadStatus => "bad_status",
            Reject::BadCommand => "bad_command",
        }
    }

    fn index(self) -> usize {
        Reject::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A Modbus exception response, by code (Modbus Application Protocol v1.1b3, §7). The string
/// form is the `gateway` field name suffix (`modbus_exception_<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModbusException {
    /// 0x01: the device does not support the function code.
    IllegalFunction,
    /// 0x02: the address (or address + count) is not in the device's map.
    IllegalDataAddress,
    /// 0x03: a value in the request is not allowed (e.g. a write out of range).
    IllegalDataValue,
    /// 0x04: the device failed while performing the request.
    ServerDeviceFailure,
    /// 0x05: accepted, still being processed (long operations).
    Acknowledge,
    /// 0x06: the device is busy with a long operation; try later.
    ServerDeviceBusy,
    /// 0x08: memory parity error reading a file record.
    MemoryParityError,
    /// 0x0A: a gateway could not route to the target (misconfigured serial server).
    GatewayPathUnavailable,
    /// 0x0B: a gateway got no answer from the target device behind it.
    GatewayTargetDevice,
    /// Any other code.
    Other,
}

impl ModbusException {
    pub const ALL: [ModbusException; 10] = [
        ModbusException::IllegalFunction,
        ModbusException::IllegalDataAddress,
        ModbusException::IllegalDataValue,
        ModbusException::ServerDeviceFailure,
        ModbusException::Acknowledge,
        ModbusException::ServerDeviceBusy,
        ModbusException::MemoryParityError,
        ModbusException::GatewayPathUnavailable,
        ModbusException::GatewayTargetDevice,
        ModbusException::Other,
    ];

    /// The exception of a wire code.
    pub fn from_code(code: u8) -> ModbusException {
        match code {
            0x01 => ModbusException::IllegalFunction,
            0x02 => ModbusException::IllegalDataAddress,
            0x03 => ModbusException::IllegalDataValue,
            0x04 => ModbusException::ServerDeviceFailure,
            0x05 => ModbusException::Acknowledge,
            0x06 => ModbusException::ServerDeviceBusy,
            0x08 => ModbusException::MemoryParityError,
            0x0A => ModbusException::GatewayPathUnavailable,
            0x0B => ModbusException::GatewayTargetDevice,
            _ => ModbusException::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModbusException::IllegalFunction => "illegal_function",
            ModbusException::IllegalDataAddress => "illegal_data_address",
            ModbusException::IllegalDataValue => "illegal_data_value",
            ModbusException::ServerDeviceFailure => "server_device_failure",
            ModbusException::Acknowledge => "acknowledge",
            ModbusException::ServerDeviceBusy => "server_device_busy",
            ModbusException::MemoryParityError => "memory_parity_error",
            ModbusException::GatewayPathUnavailable => "gateway_path_unavailable",
            ModbusException::GatewayTargetDevice => "gateway_target_device",
            ModbusException::Other => "other",
        }
    }

    fn index(self) -> usize {
        ModbusException::ALL
            .iter()
            .position(|e| *e == self)
            .unwrap_or(ModbusException::ALL.len() - 1)
    }
}

/// The Modbus poller's counters (`Stats::modbus`). Totals since start unless marked as a gauge.
#[derive(Debug, Default)]
pub struct ModbusStats {
    /// Device polls started (one per device per due time).
    pub polls: AtomicU64,
    /// Polls that did not get every value: a request timed out, failed in transport, was
    /// answered with an exception, or the endpoint was down. A partly failed poll counts here.
    pub poll_failures: AtomicU64,
    /// Requests sent on the wire (reads, writes and retries).
    pub requests: AtomicU64,
    /// Requests without an answer within the endpoint's `timeout`.
    pub timeouts: AtomicU64,
    /// Requests that failed in transport (connection reset, bad frame, CRC or header mismatch).
    pub transport_errors: AtomicU64,
    /// Connections dropped after a timeout or transport error (the next request reconnects).
    pub reconnects: AtomicU64,
    /// Failed attempts to connect to (or open) an endpoint.
    pub connect_failures: AtomicU64,
    /// Signals dropped because their raw value did not decode (enum index out of range, NaN).
    pub decode_errors: AtomicU64,
    /// Writes performed on devices (successful or not).
    pub writes: AtomicU64,
    /// Writes that failed (exception, timeout, unreachable endpoint).
    pub write_failures: AtomicU64,
    /// Devices reported offline right now (gauge).
    pub devices_offline: AtomicU64,
    /// Endpoints that cannot be reached right now (gauge).
    pub endpoints_down: AtomicU64,
    exceptions: [AtomicU64; ModbusException::ALL.len()],
    /// Latency of answered requests (data or exception), microseconds and count, since start.
    latency_us_sum: AtomicU64,
    latency_count: AtomicU64,
    /// (sum, count) at the last `interval_latency_ms` call.
    latency_mark: Mutex<(u64, u64)>,
}

impl ModbusStats {
    /// The counters as `gateway` fields (name, value), in schema order; `poll_latency_ms`
    /// comes from `interval_latency_ms`.
    pub fn fields(&self) -> Vec<(String, u64)> {
        let named = [
            ("modbus_polls", &self.polls),
            ("modbus_poll_failures", &self.poll_failures),
            ("modbus_requests", &self.requests),
            ("modbus_timeouts", &self.timeouts),
            ("modbus_transport_errors", &self.transport_errors),
            ("modbus_reconnects", &self.reconnects),
            ("modbus_connect_failures", &self.connect_failures),
            ("modbus_decode_errors", &self.decode_errors),
            ("modbus_writes", &self.writes),
            ("modbus_write_failures", &self.write_failures),
            ("modbus_devices_offline", &self.devices_offline),
            ("modbus_endpoints_down", &self.endpoints_down),
        ];
        let mut out: Vec<(String, u64)> = named
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.load(Relaxed)))
            .collect();
        out.extend(ModbusException::ALL.iter().map(|e| {
            (
                format!("modbus_exception_{}", e.as_str()),
                self.exceptions(*e),
            )
        }));
        out
    }

    pub fn exception(&self, e: ModbusException) {
        self.exceptions[e.index()].fetch_add(1, Relaxed);
    }

    pub fn exceptions(&self, e: ModbusException) -> u64 {
        self.exceptions[e.index()].load(Relaxed)
    }

    pub fn exceptions_total(&self) -> u64 {
        self.exceptions.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Records the round trip of one answered request.
    pub fn latency(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_us_sum.fetch_add(us, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    /// (sum in microseconds, count) of answered requests' latencies since start, for a
    /// Prometheus-style summary.
    pub fn latency_totals(&self) -> (u64, u64) {
        (
            self.latency_us_sum.load(Relaxed),
            self.latency_count.load(Relaxed),
        )
    }

    /// The mean latency (ms) of the requests answered since the previous call, `None` when
    /// none were. Meant for one periodic reader: the `gateway` point's `poll_latency_ms`.
    pub fn interval_latency_ms(&self) -> Option<f64> {
        let (sum, count) = self.latency_totals();
        let mut mark = self
            .latency_mark
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (dsum, dcount) = (sum.saturating_sub(mark.0), count.saturating_sub(mark.1));
        *mark = (sum, count);
        (dcount > 0).then(|| dsum as f64 / dcount as f64 / 1000.0)
    }
}

/// A value of the `gateway` measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GatewayValue {
    U64(u64),
    F64(f64),
}

/// Counters shared by all tasks (`Arc<Stats>`). All are totals since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// MQTT messages received on our topics.
    pub messages: AtomicU64,
    /// Readings accepted (a message with at least one valid signal, or a status).
    pub readings: AtomicU64,
    /// Rejections per reason (a message with two bad signals counts two).
    rejected: [AtomicU64; Reject::ALL.len()],
    /// String values whose control characters were replaced.
    pub sanitised: AtomicU64,
    /// MQTT connection losses.
    pub mqtt_disconnects: AtomicU64,
    /// Lines the store accepted.
    pub store_lines: AtomicU64,
    /// Lines dropped because the in-memory queue was full or the store refused them.
    pub store_dropped: AtomicU64,
    /// Failed write attempts (each retry counts).
    pub store_errors: AtomicU64,
    /// Lines waiting for the store right now (gauge).
    pub store_queue_lines: AtomicU64,
    /// The Modbus poller's counters.
    pub modbus: ModbusStats,
    /// The core stage's counters (states, alarms, journal, event sinks).
    pub core: CoreStats,
}

/// Counters of the core stage and the event sinks.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Device state transitions.
    pub transitions: AtomicU64,
    pub alarms_raised: AtomicU64,
    pub alarms_cleared: AtomicU64,
    /// Alarms active right now (gauge).
    pub alarms_active: AtomicU64,
    /// Acknowledgments and on-site reports accepted / refused (unknown id, twice, malformed).
    pub commands: AtomicU64,
    pub commands_refused: AtomicU64,
    /// Journal writes that failed (each failed batch of events counts once).
    pub journal_errors: AtomicU64,
    /// Events published on MQTT (alarm events and retained states).
    pub mqtt_published: AtomicU64,
    /// Events an event sink (MQTT out, webhook, live stream) could not take and dropped.
    pub events_dropped: AtomicU64,
    pub webhook_sent: AtomicU64,
    /// Webhook deliveries given up after all retries.
    pub webhook_failed: AtomicU64,
    /// Readings older than one already applied for their device: forwarded to the store,
    /// no state changed (DESIGN §4 "Event time").
    pub out_of_order: AtomicU64,
    /// Readings that arrived after the gateway had concluded a later moment of their device
    /// (beyond `ingest.max_lateness`): forwarded, no state changed, the journal not rewritten.
    pub late: AtomicU64,
}

impl CoreStats {
    /// Name and value of every counter, for the `gateway` measurement and `/metrics`.
    pub fn fields(&self) -> Vec<(String, u64)> {
        [
            ("state_transitions", &self.transitions),
            ("alarms_raised", &self.alarms_raised),
            ("alarms_cleared", &self.alarms_cleared),
            ("alarms_active", &self.alarms_active),
            ("alarm_commands", &self.commands),
            ("alarm_commands_refused", &self.commands_refused),
            ("journal_errors", &self.journal_errors),
            ("mqtt_published", &self.mqtt_published),
            ("events_dropped", &self.events_dropped),
            ("webhook_sent", &self.webhook_sent),
            ("webhook_failed", &self.webhook_failed),
            ("out_of_order", &self.out_of_order),
            ("late", &self.late),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.load(Relaxed)))
        .collect()
    }
}

impl Stats {
    pub fn reject(&self, r: Reject) {
        self.rejected[r.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, r: Reject) -> u64 {
        self.rejected[r.index()].load(Relaxed)
    }

    /// The fields of the `gateway` measurement (DESIGN §5), in order: the one list that both
    /// the store sink writes and `estate-gateway schema` prints. A field is `None` when it has
    /// nothing to report this time (no RSS reading; no Modbus answer since the last point, where
    /// a 0 would read as "fast"). Reads the latency mark, so call it once per point.
    pub fn gateway_fields(
        &self,
        uptime_s: u64,
        rss_bytes: Option<u64>,
    ) -> Vec<(String, Option<GatewayValue>)> {
        let u = |v: u64| Some(GatewayValue::U64(v));
        let store_dropped = self.store_dropped.load(Relaxed);
        // Lost data, whatever the source: rejected input, lines the store never got, and
        // Modbus signals whose raw value did not decode.
        let dropped =
            self.rejected_total() + store_dropped + self.modbus.decode_errors.load(Relaxed);
        let mut out: Vec<(String, Option<GatewayValue>)> = vec![
            ("messages".into(), u(self.messages.load(Relaxed))),
            ("readings".into(), u(self.readings.load(Relaxed))),
            ("dropped".into(), u(dropped)),
            ("store_dropped".into(), u(store_dropped)),
            ("store_lines".into(), u(self.store_lines.load(Relaxed))),
            ("store_errors".into(), u(self.store_errors.load(Relaxed))),
            (
                "store_queue_lines".into(),
                u(self.store_queue_lines.load(Relaxed)),
            ),
            ("sanitised".into(), u(self.sanitised.load(Relaxed))),
            (
                "mqtt_disconnects".into(),
                u(self.mqtt_disconnects.load(Relaxed)),
            ),
            ("uptime_s".into(), u(uptime_s)),
            ("rss_bytes".into(), rss_bytes.map(GatewayValue::U64)),
        ];
        out.extend(
            Reject::ALL
                .iter()
                .map(|r| (format!("rejected_{}", r.as_str()), u(self.rejected(*r)))),
        );
        out.extend(self.modbus.fields().into_iter().map(|(k, v)| (k, u(v))));
        out.extend(self.core.fields().into_iter().map(|(k, v)| (k, u(v))));
        out.push((
            "poll_latency_ms".into(),
            self.modbus.interval_latency_ms().map(GatewayValue::F64),
        ));
        out
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Lets through at most `burst` log lines per key (a `Reject` reason by default) per window,
/// then counts the rest and reports how many were suppressed with the next line let through.
/// Clock-free: the caller passes the time.
#[derive(Debug)]
pub struct LogLimiter<K = Reject> {
    burst: u32,
    window_ms: i64,
    /// key → (window start, lines in this window, suppressed since the last line let through).
    slots: HashMap<K, (i64, u32, u64)>,
}

impl<K: Copy + Eq + Hash> LogLimiter<K> {
    pub fn new(burst: u32, window_ms: i64) -> Self {
        LogLimiter {
            burst,
            window_ms: window_ms.max(1),
            slots: HashMap::new(),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed before it
    /// in earlier windows; `None` when this one must only be counted.
    pub fn allow(&mut self, key: K, now_ms: i64) -> Option<u64> {
        let (start, count, suppressed) = self.slots.entry(key).or_insert((i64::MIN, 0, 0));
        if *start == i64::MIN || now_ms - *start >= self.window_ms {
            *start = now_ms;
            *count = 0;
        }
        if *count < self.burst {
            *count += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_distinct_names() {
        let mut names: Vec<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reject::ALL.len());
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn limiter_lets_a_burst_through_per_window_and_reports_suppressed() {
        let mut l = LogLimiter::new(2, 1000);
        let r = Reject::InvalidJson;
        assert_eq!(l.allow(r, 0), Some(0));
        assert_eq!(l.allow(r, 10), Some(0));
        assert_eq!(l.allow(r, 20), None);
        assert_eq!(l.allow(r, 999), None);
        // Another reason has its own budget.
        assert_eq!(l.allow(Reject::Oversize, 30), Some(0));
        // A new window: the first line carries the count of suppressed ones.
        assert_eq!(l.allow(r, 1000), Some(2));
        assert_eq!(l.allow(r, 1001), Some(0));
        assert_eq!(l.allow(r, 1002), None);
    }

    #[test]
    fn limiter_takes_any_key() {
        let mut l: LogLimiter<(u32, &str)> = LogLimiter::new(1, 1000);
        assert_eq!(l.allow((1, "timeout"), 0), Some(0));
        assert_eq!(l.allow((1, "timeout"), 1), None);
        assert_eq!(l.allow((2, "timeout"), 1), Some(0));
        assert_eq!(l.allow((1, "timeout"), 1000), Some(1));
    }

    #[test]
    fn modbus_exceptions_count_per_code() {
        let mut names: Vec<&str> = ModbusException::ALL.iter().map(|e| e.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ModbusException::ALL.len());
        for (i, e) in ModbusException::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        assert_eq!(
            ModbusException::from_code(2),
            ModbusException::IllegalDataAddress
        );
        assert_eq!(
            ModbusException::from_code(6),
            ModbusException::ServerDeviceBusy
        );
        assert_eq!(ModbusException::from_code(0x07), ModbusException::Other);
        let s = Stats::default();
        s.modbus.exception(ModbusException::from_code(2));
        s.modbus.exception(ModbusException::from_code(0x42));
        assert_eq!(s.modbus.exceptions(ModbusException::IllegalDataAddress), 1);
        assert_eq!(s.modbus.exceptions(ModbusException::Other), 1);
        assert_eq!(s.modbus.exceptions_total(), 2);
    }

    #[test]
    fn latency_mean_covers_the_last_interval() {
        let m = ModbusStats::default();
        assert_eq!(m.interval_latency_ms(), None);
        m.latency(std::time::Duration::from_millis(2));
        m.latency(std::time::Duration::from_millis(4));
        assert_eq!(m.interval_latency_ms(), Some(3.0));
        assert_eq!(m.interval_latency_ms(), None);
        m.latency(std::time::Duration::from_micros(500));
        assert_eq!(m.interval_latency_ms(), Some(0.5));
        assert_eq!(m.latency_totals(), (6500, 3));
    }

    #[test]
    fn counters_count_per_reason() {
        let s = Stats::default();
        s.reject(Reject::WrongType);
        s.reject(Reject::WrongType);
        s.reject(Reject::Oversize);
        assert_eq!(s.rejected(Reject::WrongType), 2);
        assert_eq!(s.rejected(Reject::Oversize), 1);
        assert_eq!(s.rejected(Reject::InvalidJson), 0);
        assert_eq!(s.rejected_total(), 3);
    }
}
