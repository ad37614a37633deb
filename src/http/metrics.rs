//! `GET /metrics`: the gateway's own counters (`crate::stats::Stats`: ingestion, bad input per
//! reason, the store, MQTT, the Modbus poller) in the Prometheus text exposition format
//! (version 0.0.4), so a Prometheus or VictoriaMetrics next to the gateway can scrape its
//! health without going through the store. The same figures go to the store as the `gateway`
//! measurement; here they follow Prometheus naming (`estate_gateway_*`, counters end in
//! `_total`, labels instead of one field per reason).
//!
//! Every metric comes from the one registry `crate::stats::METRICS`, which the store's
//! `gateway` measurement renders too: a new counter or gauge, or a counter per reason or code,
//! is one entry there and appears here by itself, with its help text and type.

use std::fmt::{Display, Write as _};

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::Ctx;
use crate::stats::{MetricKind, Process, Read, Stats, METRICS};

/// Prometheus' text format media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn handler(State(ctx): State<std::sync::Arc<Ctx>>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        render(&ctx.app.stats, crate::clock::rss_bytes()),
    )
        .into_response()
}

/// The exposition text of every metric of `stats::METRICS` that has a Prometheus name, in
/// registry order; `rss` is passed in so tests need not read `/proc`.
fn render(stats: &Stats, rss: Option<u64>) -> String {
    // Uptime is in the store only (`prometheus: None`); Prometheus has its own.
    let process = Process {
        uptime_s: 0,
        rss_bytes: rss,
    };
    let mut out = String::with_capacity(4096);
    for m in METRICS {
        let Some(name) = m.prometheus else { continue };
        match m.read {
            Read::Value(read) => family(&mut out, name, m.kind, m.help, [("", read(stats))]),
            Read::PerLabel { label: l, values } => family(
                &mut out,
                name,
                m.kind,
                m.help,
                values(stats).into_iter().map(|(v, n)| (label(l, v), n)),
            ),
            Read::Process(read) => {
                if let Some(v) = read(&process) {
                    family(&mut out, name, m.kind, m.help, [("", v)]);
                }
            }
            Read::Latency => {
                let (latency_us, answered) = stats.modbus.latency_totals();
                family(
                    &mut out,
                    name,
                    m.kind,
                    m.help,
                    [
                        (
                            format!("{name}_sum"),
                            Sample::Float(latency_us as f64 / 1e6),
                        ),
                        (format!("{name}_count"), Sample::Int(answered)),
                    ]
                    .into_iter()
                    .map(|(series, v)| (Series::Full(series), v)),
                );
            }
        }
    }
    out
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
    kind: MetricKind,
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
    use crate::stats::{ModbusException, Reject};
    use axum::http::StatusCode;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::atomic::Ordering::Relaxed;
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
        s.mqtt_takeovers.store(5, Relaxed);
        s.mqtt_takeover.store(1, Relaxed);
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
        s.log.head.store(120, Relaxed);
        s.log.store_pos.store(100, Relaxed);
        s.log.duplicates.store(4, Relaxed);
        let m = parse(&render(&s, Some(4096)));
        for (series, want) in [
            ("estate_gateway_messages_total", 7.0),
            ("estate_gateway_readings_total", 5.0),
            ("estate_gateway_store_queue_lines", 42.0),
            ("estate_gateway_mqtt_disconnects_total", 1.0),
            ("estate_gateway_mqtt_takeovers_total", 5.0),
            ("estate_gateway_mqtt_takeover", 1.0),
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
            ("estate_gateway_store_backlog_records", 20.0),
            ("estate_gateway_log_duplicates_total", 4.0),
        ] {
            assert_eq!(m.get(series), Some(&want), "{series}");
        }
        // Every scalar (the two MQTT takeover series among them), reason and exception code,
        // the core's 13 counters (out_of_order and late among them) and journal_failing, the
        // input log's 13, the summary's two series, and rss.
        assert_eq!(
            m.len(),
            22 + Reject::ALL.len() + ModbusException::ALL.len() + 14 + 13 + 2 + 1
        );
        // Without rss (not Linux), the rest is there.
        assert_eq!(parse(&render(&s, None)).len(), m.len() - 1);
    }

    #[test]
    fn metric_names_are_distinct_and_counters_end_in_total() {
        let exposed: Vec<_> = METRICS
            .iter()
            .filter_map(|m| Some((m.prometheus?, m.kind)))
            .collect();
        let mut names: Vec<&str> = exposed.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), exposed.len());
        for (name, kind) in exposed {
            assert_eq!(
                kind == MetricKind::Counter,
                name.ends_with("_total"),
                "{name}"
            );
        }
    }

    #[test]
    fn core_counters_have_help_and_the_right_type() {
        let text = render(&Stats::default(), Some(1));
        for m in METRICS {
            let Some(name) = m.prometheus else { continue };
            assert!(!m.help.is_empty(), "no help for {name}");
            assert!(
                text.contains(&format!("# TYPE {name} {}\n", m.kind.as_str())),
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
