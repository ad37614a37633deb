//! `GET /metrics`: the gateway's own counters (`crate::stats::Stats`: ingestion, bad input per
//! reason, the store, MQTT, the Modbus poller) in the Prometheus text exposition format
//! (version 0.0.4), so a Prometheus or VictoriaMetrics next to the gateway can scrape its
//! health without going through the store. The same figures go to the store as the `gateway`
//! measurement; here they follow Prometheus naming (`estate_gateway_*`, counters end in
//! `_total`, labels instead of one field per reason).
//!
//! A new counter or gauge is one entry in `SCALARS`; a counter per reason, code or endpoint is
//! one labelled `family` call in `render`. The core stage's counters (`CoreStats::fields`) are
//! exposed by name (`estate_gateway_<field>_total`, `alarms_active` as a gauge); a new field
//! there appears here by itself, with its help text from `core_help`.

use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::Ctx;
use crate::stats::{ModbusException, Reject, Stats};

/// Prometheus' text format media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// A metric without labels, read from `Stats`.
struct Scalar {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&Stats) -> u64,
}

const fn counter(name: &'static str, help: &'static str, read: fn(&Stats) -> u64) -> Scalar {
    Scalar {
        name,
        kind: Kind::Counter,
        help,
        read,
    }
}

const fn gauge(name: &'static str, help: &'static str, read: fn(&Stats) -> u64) -> Scalar {
    Scalar {
        name,
        kind: Kind::Gauge,
        help,
        read,
    }
}

/// Every unlabelled metric of `Stats`, in exposition order.
const SCALARS: &[Scalar] = &[
    counter(
        "estate_gateway_messages_total",
        "MQTT messages received on the gateway's topics.",
        |s| s.messages.load(Relaxed),
    ),
    counter(
        "estate_gateway_readings_total",
        "Readings accepted (a message with at least one valid signal, or a status).",
        |s| s.readings.load(Relaxed),
    ),
    counter(
        "estate_gateway_sanitised_total",
        "String values whose control characters were replaced by spaces.",
        |s| s.sanitised.load(Relaxed),
    ),
    counter(
        "estate_gateway_mqtt_disconnects_total",
        "MQTT connection losses.",
        |s| s.mqtt_disconnects.load(Relaxed),
    ),
    counter(
        "estate_gateway_store_lines_total",
        "Lines the store accepted.",
        |s| s.store_lines.load(Relaxed),
    ),
    counter(
        "estate_gateway_store_dropped_total",
        "Lines dropped because the in-memory queue was full or the store refused them.",
        |s| s.store_dropped.load(Relaxed),
    ),
    counter(
        "estate_gateway_store_errors_total",
        "Failed store write attempts (each retry counts).",
        |s| s.store_errors.load(Relaxed),
    ),
    gauge(
        "estate_gateway_store_queue_lines",
        "Lines waiting for the store now.",
        |s| s.store_queue_lines.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_polls_total",
        "Modbus device polls started.",
        |s| s.modbus.polls.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_poll_failures_total",
        "Modbus polls that did not get every value (timeout, transport error, exception, endpoint down).",
        |s| s.modbus.poll_failures.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_requests_total",
        "Modbus requests sent (reads, writes and retries).",
        |s| s.modbus.requests.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_timeouts_total",
        "Modbus requests without an answer within the endpoint's timeout.",
        |s| s.modbus.timeouts.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_transport_errors_total",
        "Modbus requests that failed in transport (reset, bad frame, CRC).",
        |s| s.modbus.transport_errors.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_reconnects_total",
        "Modbus connections dropped after a timeout or transport error.",
        |s| s.modbus.reconnects.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_connect_failures_total",
        "Failed attempts to connect to or open a Modbus endpoint.",
        |s| s.modbus.connect_failures.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_decode_errors_total",
        "Modbus values dropped because their raw value did not decode.",
        |s| s.modbus.decode_errors.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_writes_total",
        "Writes performed on Modbus devices (successful or not).",
        |s| s.modbus.writes.load(Relaxed),
    ),
    counter(
        "estate_gateway_modbus_write_failures_total",
        "Writes on Modbus devices that failed.",
        |s| s.modbus.write_failures.load(Relaxed),
    ),
    gauge(
        "estate_gateway_modbus_devices_offline",
        "Modbus devices reported offline now.",
        |s| s.modbus.devices_offline.load(Relaxed),
    ),
    gauge(
        "estate_gateway_modbus_endpoints_down",
        "Modbus endpoints that cannot be reached now.",
        |s| s.modbus.endpoints_down.load(Relaxed),
    ),
];

pub(super) async fn handler(State(ctx): State<std::sync::Arc<Ctx>>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        render(&ctx.app.stats, crate::clock::rss_bytes()),
    )
        .into_response()
}

/// The exposition text; `rss` is passed in so tests need not read `/proc`.
fn render(stats: &Stats, rss: Option<u64>) -> String {
    let mut out = String::with_capacity(4096);
    for m in SCALARS {
        family(&mut out, m.name, m.kind, m.help, [("", (m.read)(stats))]);
    }
    family(
        &mut out,
        "estate_gateway_rejected_total",
        Kind::Counter,
        "Rejected input per reason (README, Bad input); a message with two bad signals counts two.",
        Reject::ALL
            .iter()
            .map(|r| (label("reason", r.as_str()), stats.rejected(*r))),
    );
    family(
        &mut out,
        "estate_gateway_modbus_exceptions_total",
        Kind::Counter,
        "Modbus exception responses per exception code.",
        ModbusException::ALL
            .iter()
            .map(|e| (label("code", e.as_str()), stats.modbus.exceptions(*e))),
    );
    for (field, value) in stats.core.fields() {
        let (name, kind) = core_metric(&field);
        family(&mut out, &name, kind, core_help(&field), [("", value)]);
    }
    let (latency_us, answered) = stats.modbus.latency_totals();
    let latency = "estate_gateway_modbus_request_latency_seconds";
    family(
        &mut out,
        latency,
        Kind::Summary,
        "Round trip of answered Modbus requests (data or exception).",
        [
            (
                format!("{latency}_sum"),
                Sample::Float(latency_us as f64 / 1e6),
            ),
            (format!("{latency}_count"), Sample::Int(answered)),
        ]
        .into_iter()
        .map(|(series, v)| (Series::Full(series), v)),
    );
    if let Some(rss) = rss {
        // The name every Prometheus client library uses, so stock dashboards find it.
        family(
            &mut out,
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size of the gateway process in bytes.",
            [("", rss)],
        );
    }
    out
}

/// The Prometheus name and type of a `CoreStats` field: gauges as they are, counters with
/// `_total`.
fn core_metric(field: &str) -> (String, Kind) {
    if CORE_GAUGES.contains(&field) {
        (format!("estate_gateway_{field}"), Kind::Gauge)
    } else {
        (format!("estate_gateway_{field}_total"), Kind::Counter)
    }
}

/// `CoreStats` fields that are gauges (a level now, not a count since start).
const CORE_GAUGES: &[&str] = &["alarms_active"];

fn core_help(field: &str) -> &'static str {
    match field {
        "state_transitions" => "Device state transitions (intact, fault, offline, maintenance).",
        "alarms_raised" => "Alarms raised.",
        "alarms_cleared" => "Alarms cleared.",
        "alarms_active" => "Alarms active now.",
        "alarm_commands" => "Acknowledgments and on-site reports accepted (HTTP and MQTT).",
        "alarm_commands_refused" => {
            "Acknowledgments and on-site reports refused (unknown id, already done, invalid, queue full)."
        }
        "journal_errors" => "Journal writes that failed (each failed batch of events counts once).",
        "mqtt_published" => "Events published on MQTT (alarm events and retained states).",
        "events_dropped" => "Events an event sink (MQTT out, webhook) could not take and dropped.",
        "webhook_sent" => "Webhook deliveries.",
        "webhook_failed" => "Webhook deliveries given up after all retries.",
        "out_of_order" => "Readings older than one already applied for their device (forwarded, no state changed).",
        "late" => "Readings that arrived after a later moment of their device was concluded (forwarded, no state changed).",
        _ => "A counter of the core stage (see CoreStats).",
    }
}

/// Which series a sample line is for.
enum Series {
    /// The family's name followed by these labels (empty or `{name="value",...}`).
    Labels(String),
    /// A whole series name (a summary's `_sum` and `_count`).
    Full(String),
}

impl From<&str> for Series {
    fn from(labels: &str) -> Self {
        Series::Labels(labels.to_owned())
    }
}

impl From<String> for Series {
    fn from(labels: String) -> Self {
        Series::Labels(labels)
    }
}

/// A sample value: counters are exact integers; sums of seconds are not.
enum Sample {
    Int(u64),
    Float(f64),
}

impl From<u64> for Sample {
    fn from(v: u64) -> Self {
        Sample::Int(v)
    }
}

impl Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sample::Int(v) => write!(f, "{v}"),
            Sample::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Writes one metric family: `# HELP`, `# TYPE`, then one sample line per `(series, value)`.
fn family<S: Into<Series>, V: Into<Sample>>(
    out: &mut String,
    name: &str,
    kind: Kind,
    help: &str,
    samples: impl IntoIterator<Item = (S, V)>,
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
    for (series, value) in samples {
        let value = value.into();
        let _ = match series.into() {
            Series::Labels(labels) => writeln!(out, "{name}{labels} {value}"),
            Series::Full(series) => writeln!(out, "{series} {value}"),
        };
    }
}

/// `{name="value"}` with the value escaped as the format requires (`\\`, `\"`, `\n`).
fn label(name: &str, value: &str) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 5);
    s.push('{');
    s.push_str(name);
    s.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push_str("\"}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::{app, get};
    use axum::http::StatusCode;
    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;

    /// Parses sample lines `name{labels} value` into `name{labels}` → value, checking the
    /// format on the way: a `# TYPE` before each family's samples, valid names and labels.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut samples = BTreeMap::new();
        let mut typed = HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(matches!(kind, "counter" | "gauge" | "summary"), "{line}");
                assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let name = series.split('{').next().expect("name");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            // A summary's samples are `<family>_sum` and `<family>_count`.
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "sample before its TYPE: {line}");
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label k=v");
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "twice: {line}"
            );
        }
        samples
    }

    #[test]
    fn every_counter_is_exposed_with_its_value() {
        let s = Stats::default();
        s.messages.store(7, Relaxed);
        s.readings.store(5, Relaxed);
        s.store_queue_lines.store(42, Relaxed);
        s.mqtt_disconnects.store(1, Relaxed);
        s.reject(Reject::InvalidJson);
        s.reject(Reject::InvalidJson);
        s.reject(Reject::WrongType);
        s.modbus.polls.store(9, Relaxed);
        s.modbus.endpoints_down.store(1, Relaxed);
        s.modbus.exception(ModbusException::ServerDeviceBusy);
        s.modbus.latency(Duration::from_millis(20));
        s.modbus.latency(Duration::from_millis(30));
        s.core.alarms_raised.store(3, Relaxed);
        s.core.alarms_active.store(2, Relaxed);
        s.core.commands_refused.store(1, Relaxed);
        let m = parse(&render(&s, Some(4096)));
        for (series, want) in [
            ("estate_gateway_messages_total", 7.0),
            ("estate_gateway_readings_total", 5.0),
            ("estate_gateway_store_queue_lines", 42.0),
            ("estate_gateway_mqtt_disconnects_total", 1.0),
            ("estate_gateway_store_lines_total", 0.0),
            ("estate_gateway_store_dropped_total", 0.0),
            ("estate_gateway_store_errors_total", 0.0),
            (
                r#"estate_gateway_rejected_total{reason="invalid_json"}"#,
                2.0,
            ),
            (r#"estate_gateway_rejected_total{reason="wrong_type"}"#, 1.0),
            (r#"estate_gateway_rejected_total{reason="oversize"}"#, 0.0),
            ("estate_gateway_modbus_polls_total", 9.0),
            ("estate_gateway_modbus_endpoints_down", 1.0),
            (
                r#"estate_gateway_modbus_exceptions_total{code="server_device_busy"}"#,
                1.0,
            ),
            (
                r#"estate_gateway_modbus_exceptions_total{code="illegal_function"}"#,
                0.0,
            ),
            ("estate_gateway_modbus_request_latency_seconds_sum", 0.05),
            ("estate_gateway_modbus_request_latency_seconds_count", 2.0),
            ("process_resident_memory_bytes", 4096.0),
            ("estate_gateway_alarms_raised_total", 3.0),
            ("estate_gateway_alarms_active", 2.0),
            ("estate_gateway_alarm_commands_refused_total", 1.0),
            ("estate_gateway_state_transitions_total", 0.0),
            ("estate_gateway_webhook_failed_total", 0.0),
        ] {
            assert_eq!(m.get(series), Some(&want), "{series}");
        }
        // Every scalar, reason and exception code, the core's counters, the summary's two
        // series, and rss.
        assert_eq!(
            m.len(),
            SCALARS.len()
                + Reject::ALL.len()
                + ModbusException::ALL.len()
                + s.core.fields().len()
                + 2
                + 1
        );
        // Without rss (not Linux), the rest is there.
        assert_eq!(parse(&render(&s, None)).len(), m.len() - 1);
    }

    #[test]
    fn metric_names_are_distinct_and_counters_end_in_total() {
        let mut names: Vec<&str> = SCALARS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCALARS.len());
        for m in SCALARS {
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn core_counters_have_help_and_the_right_type() {
        let text = render(&Stats::default(), None);
        for (field, _) in Stats::default().core.fields() {
            let (name, kind) = core_metric(&field);
            assert_ne!(
                core_help(&field),
                core_help("no such field"),
                "no help for {field}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} {}\n", kind.as_str())),
                "{name}"
            );
        }
        assert!(text.contains("# TYPE estate_gateway_alarms_active gauge\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a", "x\"y\\z\nw"), r#"{a="x\"y\\z\nw"}"#);
    }

    #[tokio::test]
    async fn served_as_prometheus_text() {
        let fx = app(None);
        let (app, stats) = (fx.app.clone(), fx.stats.clone());
        stats.reject(Reject::Oversize);
        let a = get(&app, "/metrics").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.content_type, CONTENT_TYPE);
        let m = parse(&a.body);
        assert_eq!(
            m[r#"estate_gateway_rejected_total{reason="oversize"}"#],
            1.0
        );
        assert!(
            m.contains_key("estate_gateway_messages_total"),
            "{}",
            a.body
        );
    }
}
