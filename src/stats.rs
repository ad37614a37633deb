//! The gateway's own health: counters every stage bumps, the reasons input is rejected, the
//! Modbus poller's counters (polls, failures, exceptions per code, latency), and a rate limiter
//! for the log lines bad input and failing devices cause. `METRICS` is the one registry of
//! them: the store sink writes it as the `gateway` measurement every `gateway.stats_interval`
//! (DESIGN §5), and `GET /metrics` serves it in Prometheus' format.

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

/// A metric's type, as Prometheus names it (the store keeps plain fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A total since start.
    Counter,
    /// A level now.
    Gauge,
    /// A sum and a count since start (Modbus request latency).
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
        }
    }
}

/// Facts about the process rather than counters, passed in so that tests and `schema` need
/// not read `/proc` or a start time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub uptime_s: u64,
    /// Resident memory, where the platform tells it.
    pub rss_bytes: Option<u64>,
}

/// How a metric's value is read.
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// One integer from the counters.
    Value(fn(&Stats) -> u64),
    /// One integer per label value: in the store one field `<field>_<value>` each, on
    /// `/metrics` one series `{<label>="<value>"}` each.
    PerLabel {
        label: &'static str,
        values: fn(&Stats) -> Vec<(&'static str, u64)>,
    },
    /// A fact about the process; absent when unknown (no field value, no series).
    Process(fn(&Process) -> Option<u64>),
    /// Modbus request latency: the store gets the mean in ms of the requests answered since
    /// its previous point (`ModbusStats::interval_latency_ms`), `/metrics` a summary in seconds
    /// since start (`_sum`, `_count`).
    Latency,
}

/// One entry of the registry: the one place a counter is named for both the store's `gateway`
/// measurement and `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The `gateway` field (for `Read::PerLabel`, the prefix of one field per label value).
    pub field: &'static str,
    /// The name on `/metrics` (Prometheus naming: `estate_gateway_*`, counters end in
    /// `_total`); `None`: in the store only.
    pub prometheus: Option<&'static str>,
    pub kind: MetricKind,
    /// The `# HELP` text.
    pub help: &'static str,
    pub read: Read,
}

const fn counter(
    field: &'static str,
    prometheus: &'static str,
    help: &'static str,
    read: fn(&Stats) -> u64,
) -> Metric {
    Metric {
        field,
        prometheus: Some(prometheus),
        kind: MetricKind::Counter,
        help,
        read: Read::Value(read),
    }
}

const fn gauge(
    field: &'static str,
    prometheus: &'static str,
    help: &'static str,
    read: fn(&Stats) -> u64,
) -> Metric {
    Metric {
        field,
        prometheus: Some(prometheus),
        kind: MetricKind::Gauge,
        help,
        read: Read::Value(read),
    }
}

/// Every counter and gauge of the gateway, in the `gateway` measurement's field order. The
/// store sink (`Stats::gateway_fields`), `estate-gateway schema` and `GET /metrics` all render
/// from this list: a new counter is one entry here.
pub const METRICS: &[Metric] = &[
    counter(
        "messages",
        "estate_gateway_messages_total",
        "MQTT messages received on the gateway's topics.",
        |s| s.messages.load(Relaxed),
    ),
    counter(
        "readings",
        "estate_gateway_readings_total",
        "Readings accepted (a message with at least one valid signal, or a status).",
        |s| s.readings.load(Relaxed),
    ),
    Metric {
        field: "dropped",
        prometheus: None,
        kind: MetricKind::Counter,
        help: "Lost data, whatever the source: rejected input, lines the store never got, and Modbus values whose raw value did not decode.",
        read: Read::Value(|s| {
            s.rejected_total()
                + s.store_dropped.load(Relaxed)
                + s.log.dropped.load(Relaxed)
                + s.log.dead_letter.load(Relaxed)
                + s.modbus.decode_errors.load(Relaxed)
        }),
    },
    counter(
        "store_dropped",
        "estate_gateway_store_dropped_total",
        "Lines dropped because the in-memory queue was full or the store refused them.",
        |s| s.store_dropped.load(Relaxed),
    ),
    counter(
        "store_lines",
        "estate_gateway_store_lines_total",
        "Lines the store accepted.",
        |s| s.store_lines.load(Relaxed),
    ),
    counter(
        "store_errors",
        "estate_gateway_store_errors_total",
        "Failed store write attempts (each retry counts).",
        |s| s.store_errors.load(Relaxed),
    ),
    gauge(
        "store_queue_lines",
        "estate_gateway_store_queue_lines",
        "Lines waiting for the store now.",
        |s| s.store_queue_lines.load(Relaxed),
    ),
    counter(
        "sanitised",
        "estate_gateway_sanitised_total",
        "String values whose control characters were replaced by spaces.",
        |s| s.sanitised.load(Relaxed),
    ),
    counter(
        "mqtt_disconnects",
        "estate_gateway_mqtt_disconnects_total",
        "MQTT connection losses.",
        |s| s.mqtt_disconnects.load(Relaxed),
    ),
    counter(
        "mqtt_takeovers",
        "estate_gateway_mqtt_takeovers_total",
        "MQTT connections the broker closed right after accepting them, in a series recognised as another client taking our session (same client id).",
        |s| s.mqtt_takeovers.load(Relaxed),
    ),
    gauge(
        "mqtt_takeover",
        "estate_gateway_mqtt_takeover",
        "1 while another client keeps taking the MQTT session (same client id), else 0.",
        |s| s.mqtt_takeover.load(Relaxed),
    ),
    Metric {
        field: "uptime_s",
        prometheus: None,
        kind: MetricKind::Gauge,
        help: "Seconds since the store sink started.",
        read: Read::Process(|p| Some(p.uptime_s)),
    },
    Metric {
        field: "rss_bytes",
        // The name every Prometheus client library uses, so stock dashboards find it.
        prometheus: Some("process_resident_memory_bytes"),
        kind: MetricKind::Gauge,
        help: "Resident memory size of the gateway process in bytes.",
        read: Read::Process(|p| p.rss_bytes),
    },
    Metric {
        field: "rejected",
        prometheus: Some("estate_gateway_rejected_total"),
        kind: MetricKind::Counter,
        help: "Rejected input per reason (README, Bad input); a message with two bad signals counts two.",
        read: Read::PerLabel {
            label: "reason",
            values: |s| Reject::ALL.iter().map(|r| (r.as_str(), s.rejected(*r))).collect(),
        },
    },
    counter(
        "modbus_polls",
        "estate_gateway_modbus_polls_total",
        "Modbus device polls started.",
        |s| s.modbus.polls.load(Relaxed),
    ),
    counter(
        "modbus_poll_failures",
        "estate_gateway_modbus_poll_failures_total",
        "Modbus polls that did not get every value (timeout, transport error, exception, endpoint down).",
        |s| s.modbus.poll_failures.load(Relaxed),
    ),
    counter(
        "modbus_requests",
        "estate_gateway_modbus_requests_total",
        "Modbus requests sent (reads, writes and retries).",
        |s| s.modbus.requests.load(Relaxed),
    ),
    counter(
        "modbus_timeouts",
        "estate_gateway_modbus_timeouts_total",
        "Modbus requests without an answer within the endpoint's timeout.",
        |s| s.modbus.timeouts.load(Relaxed),
    ),
    counter(
        "modbus_transport_errors",
        "estate_gateway_modbus_transport_errors_total",
        "Modbus requests that failed in transport (reset, bad frame, CRC).",
        |s| s.modbus.transport_errors.load(Relaxed),
    ),
    counter(
        "modbus_reconnects",
        "estate_gateway_modbus_reconnects_total",
        "Modbus connections dropped after a timeout or transport error.",
        |s| s.modbus.reconnects.load(Relaxed),
    ),
    counter(
        "modbus_connect_failures",
        "estate_gateway_modbus_connect_failures_total",
        "Failed attempts to connect to or open a Modbus endpoint.",
        |s| s.modbus.connect_failures.load(Relaxed),
    ),
    counter(
        "modbus_decode_errors",
        "estate_gateway_modbus_decode_errors_total",
        "Modbus values dropped because their raw value did not decode.",
        |s| s.modbus.decode_errors.load(Relaxed),
    ),
    counter(
        "modbus_writes",
        "estate_gateway_modbus_writes_total",
        "Writes performed on Modbus devices (successful or not).",
        |s| s.modbus.writes.load(Relaxed),
    ),
    counter(
        "modbus_write_failures",
        "estate_gateway_modbus_write_failures_total",
        "Writes on Modbus devices that failed.",
        |s| s.modbus.write_failures.load(Relaxed),
    ),
    gauge(
        "modbus_devices_offline",
        "estate_gateway_modbus_devices_offline",
        "Modbus devices reported offline now.",
        |s| s.modbus.devices_offline.load(Relaxed),
    ),
    gauge(
        "modbus_endpoints_down",
        "estate_gateway_modbus_endpoints_down",
        "Modbus endpoints that cannot be reached now.",
        |s| s.modbus.endpoints_down.load(Relaxed),
    ),
    Metric {
        field: "modbus_exception",
        prometheus: Some("estate_gateway_modbus_exceptions_total"),
        kind: MetricKind::Counter,
        help: "Modbus exception responses per exception code.",
        read: Read::PerLabel {
            label: "code",
            values: |s| {
                ModbusException::ALL
                    .iter()
                    .map(|e| (e.as_str(), s.modbus.exceptions(*e)))
                    .collect()
            },
        },
    },
    counter(
        "state_transitions",
        "estate_gateway_state_transitions_total",
        "Device state transitions (intact, fault, offline, maintenance).",
        |s| s.core.transitions.load(Relaxed),
    ),
    counter(
        "alarms_raised",
        "estate_gateway_alarms_raised_total",
        "Alarms raised.",
        |s| s.core.alarms_raised.load(Relaxed),
    ),
    counter(
        "alarms_cleared",
        "estate_gateway_alarms_cleared_total",
        "Alarms cleared.",
        |s| s.core.alarms_cleared.load(Relaxed),
    ),
    gauge(
        "alarms_active",
        "estate_gateway_alarms_active",
        "Alarms active now.",
        |s| s.core.alarms_active.load(Relaxed),
    ),
    counter(
        "alarm_commands",
        "estate_gateway_alarm_commands_total",
        "Acknowledgments and on-site reports accepted (HTTP and MQTT).",
        |s| s.core.commands.load(Relaxed),
    ),
    counter(
        "alarm_commands_refused",
        "estate_gateway_alarm_commands_refused_total",
        "Acknowledgments and on-site reports refused (unknown id, already done, invalid, queue full).",
        |s| s.core.commands_refused.load(Relaxed),
    ),
    counter(
        "journal_errors",
        "estate_gateway_journal_errors_total",
        "Journal writes that failed (each failed batch of events counts once).",
        |s| s.core.journal_errors.load(Relaxed),
    ),
    gauge(
        "journal_failing",
        "estate_gateway_journal_failing",
        "1 while the journal cannot be written (the last write failed: disk full?), else 0.",
        |s| s.core.journal_failing.load(Relaxed),
    ),
    counter(
        "mqtt_published",
        "estate_gateway_mqtt_published_total",
        "Events published on MQTT (alarm events and retained states).",
        |s| s.core.mqtt_published.load(Relaxed),
    ),
    counter(
        "events_dropped",
        "estate_gateway_events_dropped_total",
        "Events an event sink (MQTT out, webhook) could not take and dropped.",
        |s| s.core.events_dropped.load(Relaxed),
    ),
    counter(
        "webhook_sent",
        "estate_gateway_webhook_sent_total",
        "Webhook deliveries.",
        |s| s.core.webhook_sent.load(Relaxed),
    ),
    counter(
        "webhook_failed",
        "estate_gateway_webhook_failed_total",
        "Webhook deliveries given up after all retries.",
        |s| s.core.webhook_failed.load(Relaxed),
    ),
    counter(
        "out_of_order",
        "estate_gateway_out_of_order_total",
        "Readings older than one already applied for their device (forwarded, no state changed).",
        |s| s.core.out_of_order.load(Relaxed),
    ),
    counter(
        "late",
        "estate_gateway_late_total",
        "Readings that arrived after a later moment of their device was concluded (forwarded, no state changed).",
        |s| s.core.late.load(Relaxed),
    ),
    counter(
        "log_records",
        "estate_gateway_log_records_total",
        "Facts appended to the input log (made durable before acknowledgment).",
        |s| s.log.records.load(Relaxed),
    ),
    counter(
        "log_commits",
        "estate_gateway_log_commits_total",
        "Group commits of the input log (one fsync each).",
        |s| s.log.commits.load(Relaxed),
    ),
    gauge(
        "log_commit_p50_us",
        "estate_gateway_log_commit_p50_microseconds",
        "Median of the input log's commit time (write and fsync) over the last 256 commits.",
        |s| s.log.commit_p50_us.load(Relaxed),
    ),
    gauge(
        "log_commit_p99_us",
        "estate_gateway_log_commit_p99_microseconds",
        "99th percentile of the input log's commit time (write and fsync) over the last 256 commits.",
        |s| s.log.commit_p99_us.load(Relaxed),
    ),
    gauge(
        "log_bytes",
        "estate_gateway_log_bytes",
        "Bytes in the input log now.",
        |s| s.log.bytes.load(Relaxed),
    ),
    counter(
        "log_duplicates",
        "estate_gateway_log_duplicates_total",
        "Redelivered MQTT messages recognised as already logged (acknowledged, not applied twice).",
        |s| s.log.duplicates.load(Relaxed),
    ),
    counter(
        "log_truncations",
        "estate_gateway_log_truncations_total",
        "Torn records cut off the input log's end at start (the gateway was killed mid-write).",
        |s| s.log.truncations.load(Relaxed),
    ),
    counter(
        "log_dropped",
        "estate_gateway_log_dropped_total",
        "Records the input log deleted at its bound (log.max_bytes) before the store had them.",
        |s| s.log.dropped.load(Relaxed),
    ),
    counter(
        "log_errors",
        "estate_gateway_log_errors_total",
        "Failed input log commits (disk full, I/O error); each retry counts.",
        |s| s.log.errors.load(Relaxed),
    ),
    gauge(
        "store_backlog",
        "estate_gateway_store_backlog_records",
        "Records in the input log the store has not received yet.",
        |s| s.log.head.load(Relaxed).saturating_sub(s.log.store_pos.load(Relaxed)),
    ),
    gauge(
        "store_lag_s",
        "estate_gateway_store_lag_seconds",
        "Age of the oldest record the store has not received yet (0: caught up).",
        |s| s.log.store_lag_s.load(Relaxed),
    ),
    gauge(
        "engine_backlog",
        "estate_gateway_engine_backlog_records",
        "Records in the input log not yet committed to the journal by the engine.",
        |s| s.log.head.load(Relaxed).saturating_sub(s.log.engine_pos.load(Relaxed)),
    ),
    counter(
        "store_dead_letter",
        "estate_gateway_store_dead_letter_total",
        "Lines the store refused as malformed, kept in the dead-letter directory.",
        |s| s.log.dead_letter.load(Relaxed),
    ),
    Metric {
        field: "poll_latency_ms",
        prometheus: Some("estate_gateway_modbus_request_latency_seconds"),
        kind: MetricKind::Summary,
        help: "Round trip of answered Modbus requests (data or exception).",
        read: Read::Latency,
    },
];

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
    /// Connections closed by the broker as part of a recognised session takeover.
    pub mqtt_takeovers: AtomicU64,
    /// 1 while a session takeover is going on (gauge; `/healthz` says so).
    pub mqtt_takeover: AtomicU64,
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
    /// The input log's counters and the consumers' positions.
    pub log: LogStats,
}

/// The input log (`wal`, `intake`) and its consumers.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Records appended (facts made durable).
    pub records: AtomicU64,
    /// Group commits (one fsync each).
    pub commits: AtomicU64,
    /// Commit latency (write + fsync) over the last 256 commits, microseconds.
    pub commit_p50_us: AtomicU64,
    pub commit_p99_us: AtomicU64,
    /// Bytes and segment files in the log now.
    pub bytes: AtomicU64,
    pub segments: AtomicU64,
    /// Redelivered messages recognised and not applied twice.
    pub duplicates: AtomicU64,
    /// Torn tails cut off at start.
    pub truncations: AtomicU64,
    /// Records deleted by the bound (`log.max_bytes`) before the store had them.
    pub dropped: AtomicU64,
    /// Failed commits (each retry counts); `failing` is 1 while the last one failed.
    pub errors: AtomicU64,
    pub failing: AtomicU64,
    /// The lsn the next record gets, and each consumer's committed position (next lsn it needs).
    pub head: AtomicU64,
    /// The next lsn the engine applies (in memory; `engine_pos` is what the journal has).
    pub applied: AtomicU64,
    pub engine_pos: AtomicU64,
    pub store_pos: AtomicU64,
    /// Age of the oldest record the store has not yet received, seconds (0: caught up).
    pub store_lag_s: AtomicU64,
    /// Lines the store refused as malformed (400), written to the dead-letter directory.
    pub dead_letter: AtomicU64,
}

/// Counters of the core stage and the event sinks.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Ticks of the core stage (100 ms each while it runs): systemd's watchdog is pinged only
    /// while this advances (`notify::watchdog`).
    pub ticks: AtomicU64,
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
    /// 1 while the last journal write failed (disk full): `/healthz` says so.
    pub journal_failing: AtomicU64,
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

impl Stats {
    pub fn reject(&self, r: Reject) {
        self.rejected[r.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, r: Reject) -> u64 {
        self.rejected[r.index()].load(Relaxed)
    }

    /// The fields of the `gateway` measurement (DESIGN §5), in `METRICS` order: what the store
    /// sink writes and `estate-gateway schema` prints. A field is `None` when it has nothing to
    /// report this time (no RSS reading; no Modbus answer since the last point, where a 0
    /// would read as "fast"). Reads the latency mark, so call it once per point.
    pub fn gateway_fields(
        &self,
        uptime_s: u64,
        rss_bytes: Option<u64>,
    ) -> Vec<(String, Option<GatewayValue>)> {
        let process = Process {
            uptime_s,
            rss_bytes,
        };
        let u = |v: u64| Some(GatewayValue::U64(v));
        let mut out = Vec::with_capacity(64);
        for m in METRICS {
            match m.read {
                Read::Value(read) => out.push((m.field.to_owned(), u(read(self)))),
                Read::PerLabel { values, .. } => out.extend(
                    values(self)
                        .into_iter()
                        .map(|(label, v)| (format!("{}_{label}", m.field), u(v))),
                ),
                Read::Process(read) => {
                    out.push((m.field.to_owned(), read(&process).map(GatewayValue::U64)))
                }
                Read::Latency => out.push((
                    m.field.to_owned(),
                    self.modbus.interval_latency_ms().map(GatewayValue::F64),
                )),
            }
        }
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
    fn registry_gives_every_gateway_field_once() {
        let s = Stats::default();
        s.reject(Reject::BadCommand);
        s.store_dropped.store(2, Relaxed);
        let fields = s.gateway_fields(5, None);
        let mut names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len());
        // One field per registry entry, a labelled entry one per label value.
        let per_label = Reject::ALL.len() + ModbusException::ALL.len() - 2;
        assert_eq!(fields.len(), METRICS.len() + per_label);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(
            get("rejected_bad_command"),
            Some(Some(GatewayValue::U64(1)))
        );
        assert_eq!(get("dropped"), Some(Some(GatewayValue::U64(3))));
        assert_eq!(get("uptime_s"), Some(Some(GatewayValue::U64(5))));
        assert_eq!(get("rss_bytes"), Some(None));
        assert_eq!(get("poll_latency_ms"), Some(None));
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
