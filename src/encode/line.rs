//! Line-protocol encoding of the store schema (DESIGN §5), built on InfluxData's
//! `influxdb-line-protocol` builder so escaping (spaces, commas, equals signs, quotes,
//! backslashes) is the reference implementation's, not ours.
//!
//! What is ours, and why: the builder writes a whole line in one typestate chain, so a
//! device's series key (`telemetry,building=…,category=…,device=…,site=…`) would be escaped
//! again for every reading. We escape it once per device with the builder and reuse the bytes;
//! the field set is produced by the builder too, behind a one-byte dummy measurement that is
//! cut off. Newlines and control characters never reach here: names are rejected at config
//! time and string values are sanitised at decode time, so no input can start a second line.
//! Timestamps are unix milliseconds (the write uses `precision=ms`).

use std::io::Write as _;

use influxdb_line_protocol::LineProtocolBuilder;

use super::exception::ExceptionFilter;
use crate::model::event::{DeviceState, Event};
use crate::model::{Inventory, Reading, Status, Value};

/// Why `s` cannot be a tag value that every line-protocol reader reads back exactly, or
/// `None` when it can. Two things cannot: a control character (line protocol has no escape
/// for a newline, and no reader takes one in a tag), and a backslash: the builder doubles it,
/// which the reference parser and VictoriaMetrics read back as one but InfluxDB 1.x keeps
/// doubled, and a tag ending in one escapes the separator after it (the line is refused).
/// Spaces, commas, equals signs, quotes and any other Unicode are escaped and round-trip
/// (`tests::any_accepted_tag_round_trips`). `config` rejects such names with this reason.
pub fn tag_problem(s: &str) -> Option<String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Some(format!(
            "contains the control character {c:?}; names are written as store tags, which cannot carry newlines or control characters"
        ));
    }
    if s.contains('\\') {
        return Some(
            "contains a backslash, which line-protocol readers do not agree on (InfluxDB 1.x stores an escaped backslash doubled; one at the end makes the line unreadable), so it cannot be stored exactly; use another character, e.g. `-` or `_`".into(),
        );
    }
    None
}

/// A series key (`measurement,tag=value,…`), escaped by the builder; pass tag keys in sorted
/// order (InfluxDB's preferred order for writes).
pub fn series_key(measurement: &str, tags: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96);
    // The builder borrows `buf`; its bytes stay there when the builder goes out of scope.
    let mut b = LineProtocolBuilder::new_with(&mut buf).measurement(measurement);
    for (k, v) in tags {
        b = b.tag(k, v);
    }
    let _ = b;
    buf
}

/// Encodes field sets and timestamps after a cached series key.
#[derive(Debug, Default)]
pub struct FieldWriter;

/// One field value, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(&'a str),
}

impl FieldWriter {
    /// Appends `key` + ` f1=v1,f2=v2 ts\n` to `out`. Writes nothing and returns false when
    /// `fields` is empty (a line needs at least one field).
    pub fn line<'a>(
        &mut self,
        out: &mut Vec<u8>,
        key: &[u8],
        fields: impl IntoIterator<Item = (&'a str, Field<'a>)>,
        ts_ms: i64,
    ) -> bool {
        // Written byte by byte with the rules of line protocol (and of the
        // `influxdb-line-protocol` builder, whose output it equals — see the test): a field key
        // escapes `,` `=` space and `\`; a string value is quoted with `"` and `\` escaped;
        // integers end in `i`, unsigned in `u`; floats as Rust prints them (shortest exact).
        let mut fields = fields.into_iter().peekable();
        if fields.peek().is_none() {
            return false;
        }
        out.extend_from_slice(key);
        let mut sep = b' ';
        for (k, v) in fields {
            out.push(sep);
            sep = b',';
            escape_into(out, k, b",= ");
            out.push(b'=');
            match v {
                Field::F64(v) => {
                    let _ = write!(out, "{v}");
                }
                Field::I64(v) => {
                    let _ = write!(out, "{v}i");
                }
                Field::U64(v) => {
                    let _ = write!(out, "{v}u");
                }
                Field::Bool(v) => out.extend_from_slice(if v { b"true" } else { b"false" }),
                Field::Str(v) => {
                    out.push(b'"');
                    escape_into(out, v, b"\"");
                    out.push(b'"');
                }
            }
        }
        let _ = writeln!(out, " {ts_ms}");
        true
    }
}

/// Appends `s` with a backslash before each byte of `special` and each backslash (all ASCII, so
/// the bytes of multi-byte characters are never escaped).
fn escape_into(out: &mut Vec<u8>, s: &str, special: &[u8]) {
    let b = s.as_bytes();
    if !b.iter().any(|c| *c == b'\\' || special.contains(c)) {
        out.extend_from_slice(b);
        return;
    }
    for c in b {
        if *c == b'\\' || special.contains(c) {
            out.push(b'\\');
        }
        out.push(*c);
    }
}

/// Encodes `telemetry` points: one line per reading, one field per signal (DESIGN §5).
/// A status reading is written as the boolean field `online`.
#[derive(Debug)]
pub struct TelemetryEncoder {
    keys: Vec<Vec<u8>>,
    fields: FieldWriter,
    /// Report by exception (`deadband`, `max_silence`): values the store is spared.
    exceptions: ExceptionFilter,
}

impl TelemetryEncoder {
    pub fn new(inventory: &Inventory) -> Self {
        let keys = inventory
            .devices()
            .iter()
            .map(|d| {
                series_key(
                    "telemetry",
                    &[
                        ("building", &d.building),
                        ("category", &d.category),
                        ("device", &d.id),
                        ("site", &d.site),
                    ],
                )
            })
            .collect();
        TelemetryEncoder {
            keys,
            fields: FieldWriter,
            exceptions: ExceptionFilter::default(),
        }
    }

    /// Leaves out the values `exceptions` says the store need not get again (the store
    /// writer's encoder; the engine is fed before this, with every value).
    pub fn with_exceptions(mut self, exceptions: ExceptionFilter) -> Self {
        self.exceptions = exceptions;
        self
    }

    /// Appends the reading's line to `out`; false when it has nothing to write.
    pub fn encode(&mut self, inventory: &Inventory, r: &Reading, out: &mut Vec<u8>) -> bool {
        let TelemetryEncoder {
            keys,
            fields,
            exceptions,
        } = self;
        let Some(key) = keys.get(r.device as usize) else {
            return false;
        };
        let profile = &inventory.get(r.device).profile;
        let values = r.values.iter().filter(|(idx, v)| {
            exceptions.is_empty() || exceptions.keep(r.device, *idx, v, r.ts_ms)
        });
        let values = values.map(|(idx, v)| {
            let name = profile.signal(*idx).name.as_str();
            let f = match v {
                Value::Float(x) => Field::F64(*x),
                Value::Int(x) => Field::I64(*x),
                Value::Bool(x) => Field::Bool(*x),
                Value::Str(x) => Field::Str(x),
            };
            (name, f)
        });
        let status = r
            .status
            .map(|s| ("online", Field::Bool(s == Status::Online)));
        fields.line(out, key, status.into_iter().chain(values), r.ts_ms)
    }
}

/// Encodes `device_state` and `alarm` points (DESIGN §5) from core events. Maintenance,
/// compliance and hourly events have no point of their own (they feed the journal's figures;
/// the readings themselves are in `telemetry`).
#[derive(Debug, Default)]
pub struct EventEncoder {
    fields: FieldWriter,
}

impl EventEncoder {
    /// Appends the event's line to `out`; false when the event has no point.
    pub fn encode(&mut self, inventory: &Inventory, e: &Event, out: &mut Vec<u8>) -> bool {
        match e {
            Event::State(s) => {
                let d = inventory.get(s.device);
                let key = series_key(
                    "device_state",
                    &[
                        ("building", &d.building),
                        ("category", &d.category),
                        ("device", &d.id),
                        ("site", &d.site),
                    ],
                );
                let intact = i64::from(s.to == DeviceState::Intact);
                self.fields.line(
                    out,
                    &key,
                    [
                        ("intact", Field::I64(intact)),
                        ("reason", Field::Str(s.reason.as_str())),
                        ("state", Field::Str(s.to.as_str())),
                    ],
                    s.ts_ms,
                )
            }
            Event::Alarm(ev) => {
                let a = &ev.alarm;
                let d = inventory.get(a.device);
                let key = series_key(
                    "alarm",
                    &[
                        ("building", &d.building),
                        ("category", &d.category),
                        ("device", &d.id),
                        ("event", ev.kind.as_str()),
                        ("rule", &a.rule),
                        ("severity", a.severity.as_str()),
                        ("site", &d.site),
                    ],
                );
                let times = [
                    ("response_s", a.response_s()),
                    ("arrival_s", a.arrival_s()),
                    ("restore_s", a.restore_s()),
                ];
                let by = (!ev.by.is_empty()).then_some(("by", Field::Str(&ev.by)));
                let fields = [
                    ("id", Field::Str(&a.id)),
                    ("message", Field::Str(&a.message)),
                ]
                .into_iter()
                .chain(by)
                .chain(
                    times
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, Field::F64(v)))),
                );
                self.fields.line(out, &key, fields, ev.ts_ms)
            }
            // Escalations are operational (the journal, the API, their targets), not a
            // point of the store schema.
            Event::Maintenance(_)
            | Event::Compliance(_)
            | Event::Hourly(_)
            | Event::Escalation(_) => false,
        }
    }
}

/// The series key of an `assessment` point (DESIGN §5): one per KPI of a period's scorecard.
pub fn assessment_key(site: &str, period: &str, kpi: &str) -> Vec<u8> {
    series_key(
        "assessment",
        &[("kpi", kpi), ("period", period), ("site", site)],
    )
}

/// The `gateway` self-measurement's series key.
pub fn gateway_key(site: &str, host: &str) -> Vec<u8> {
    series_key("gateway", &[("host", host), ("site", site)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Ack, Device, Profile, Signal, SignalType};
    use influxdb_line_protocol::{parse_lines, FieldValue};
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// The same line through the `influxdb-line-protocol` builder (the reference).
    fn by_builder(key: &[u8], fields: &[(String, Field<'_>)], ts_ms: i64) -> Vec<u8> {
        let mut scratch = Vec::new();
        let b = LineProtocolBuilder::new_with(&mut scratch).measurement("m");
        let (k0, v0) = (&fields[0].0, fields[0].1);
        let mut b = match v0 {
            Field::F64(v) => b.field(k0, v),
            Field::I64(v) => b.field(k0, v),
            Field::U64(v) => b.field(k0, v),
            Field::Bool(v) => b.field(k0, v),
            Field::Str(v) => b.field(k0, v),
        };
        for (k, v) in &fields[1..] {
            b = match *v {
                Field::F64(v) => b.field(k, v),
                Field::I64(v) => b.field(k, v),
                Field::U64(v) => b.field(k, v),
                Field::Bool(v) => b.field(k, v),
                Field::Str(v) => b.field(k, v),
            };
        }
        b.timestamp(ts_ms).close_line();
        let mut out = key.to_vec();
        out.extend_from_slice(&scratch[1..]);
        out
    }

    fn any_field() -> impl Strategy<Value = (String, u8, f64, i64, u64, bool, String)> {
        (
            "[a-z_ ,=\\\"\\\\é中]{1,12}",
            0u8..5,
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            any::<i64>(),
            any::<u64>(),
            any::<bool>(),
            "[a-z ,=\\\"\\\\\\n中]{0,12}",
        )
    }

    proptest! {
        /// The hand-written field writer gives the builder's bytes for every key and value.
        #[test]
        fn field_writer_writes_what_the_builder_writes(
            fields in prop::collection::vec(any_field(), 1..6),
            ts in any::<i64>(),
        ) {
            let fields: Vec<(String, Field<'_>)> = fields
                .iter()
                .map(|(k, kind, f, i, u, b, s)| {
                    let v = match kind {
                        0 => Field::F64(*f),
                        1 => Field::I64(*i),
                        2 => Field::U64(*u),
                        3 => Field::Bool(*b),
                        _ => Field::Str(s),
                    };
                    (k.clone(), v)
                })
                .collect();
            let key = series_key("telemetry", &[("device", "E-1")]);
            let mut ours = Vec::new();
            let wrote = FieldWriter.line(
                &mut ours,
                &key,
                fields.iter().map(|(k, v)| (k.as_str(), *v)),
                ts,
            );
            prop_assert!(wrote);
            let theirs = by_builder(&key, &fields, ts);
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }

    fn inventory(id: &str, building: &str) -> Inventory {
        let p = Arc::new(Profile::new(
            "heating_loop".into(),
            "x".into(),
            Duration::from_secs(30),
            vec![
                Signal {
                    name: "supply_temp_c".into(),
                    ty: SignalType::Float,
                    unit: None,
                    label: None,
                },
                Signal {
                    name: "fault_code".into(),
                    ty: SignalType::Int,
                    unit: None,
                    label: None,
                },
                Signal {
                    name: "pump_running".into(),
                    ty: SignalType::Bool,
                    unit: None,
                    label: None,
                },
                Signal {
                    name: "note".into(),
                    ty: SignalType::String,
                    unit: None,
                    label: None,
                },
            ],
        ));
        Inventory::new(vec![Device {
            id: id.into(),
            name: "n".into(),
            site: "华府小区".into(),
            building: building.into(),
            category: "heating_loop".into(),
            profile: p,
            rules: Default::default(),
            interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            polled: false,
        }])
    }

    fn reading(values: Vec<(u16, Value)>) -> Reading {
        Reading {
            device: 0,
            ts_ms: 1_790_000_000_123,
            values,
            status: None,
            ack: Ack::None,
        }
    }

    #[test]
    fn telemetry_line_is_exact() {
        let inv = inventory("HL-1", "3号楼");
        let mut enc = TelemetryEncoder::new(&inv);
        let mut out = Vec::new();
        let r = reading(vec![
            (0, Value::Float(55.5)),
            (1, Value::Int(-3)),
            (2, Value::Bool(true)),
            (3, Value::Str("say \"hi\" \\".into())),
        ]);
        assert!(enc.encode(&inv, &r, &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "telemetry,building=3号楼,category=heating_loop,device=HL-1,site=华府小区 \
             supply_temp_c=55.5,fault_code=-3i,pump_running=true,note=\"say \\\"hi\\\" \\\\\" \
             1790000000123\n"
        );
    }

    #[test]
    fn status_becomes_online_field_and_empty_reading_writes_nothing() {
        let inv = inventory("HL-1", "B1");
        let mut enc = TelemetryEncoder::new(&inv);
        let mut out = Vec::new();
        assert!(!enc.encode(&inv, &reading(vec![]), &mut out));
        assert!(out.is_empty());
        let mut r = reading(vec![]);
        r.status = Some(Status::Offline);
        assert!(enc.encode(&inv, &r, &mut out));
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with(" online=false 1790000000123\n"));
    }

    #[test]
    fn hostile_device_name_stays_one_point() {
        let id = "a,b=c d\"e\\";
        let inv = inventory(id, "B 1,=");
        let mut enc = TelemetryEncoder::new(&inv);
        let mut out = Vec::new();
        enc.encode(&inv, &reading(vec![(0, Value::Float(1.0))]), &mut out);
        let text = String::from_utf8(out).unwrap();
        // Exact bytes: `,`, `=` and space escaped, the quote literal, the backslash doubled
        // (line protocol: "two contiguous backslashes: the first is the escape character").
        assert_eq!(
            text,
            "telemetry,building=B\\ 1\\,\\=,category=heating_loop,device=a\\,b\\=c\\ d\"e\\\\,site=华府小区 supply_temp_c=1 1790000000123\n"
        );
        // Without the backslash (which `check-config` refuses: `tag_problem`) the reference
        // parser reads it back exactly.
        let inv = inventory("a,b=c d\"e", "B 1,=");
        let mut enc = TelemetryEncoder::new(&inv);
        let mut out = Vec::new();
        enc.encode(&inv, &reading(vec![(0, Value::Float(1.0))]), &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = parse_lines(&text).collect();
        assert_eq!(lines.len(), 1);
        let line = lines.into_iter().next().unwrap().unwrap();
        let tags = line.series.tag_set.unwrap();
        let get = |k: &str| {
            tags.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("device").as_deref(), Some("a,b=c d\"e"));
        assert_eq!(get("building").as_deref(), Some("B 1,="));
    }

    fn field_string(v: &FieldValue<'_>) -> Option<String> {
        match v {
            FieldValue::String(s) => Some(s.to_string()),
            _ => None,
        }
    }

    /// Arbitrary Unicode, with the characters line protocol treats specially made common.
    fn any_name() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ ,=\"\\\\'#a-zé华\u{a0}\u{2028}\u{feff}\n\t\r]{1,16}",
        ]
    }

    #[test]
    fn tag_problems_are_named() {
        for bad in [
            "E\\backslash",
            "E-trailing\\",
            "E\\\\dbl",
            "a\nb",
            "a\u{7f}",
        ] {
            assert!(tag_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["E-1", "a,b=c d\"e", "华府 1号楼", "#x", "\u{2028}"] {
            assert_eq!(tag_problem(good), None, "{good:?}");
        }
    }

    proptest! {
        /// Any tag value `tag_problem` accepts (what `check-config` lets through), and any
        /// string field value without control characters (decode sanitises those), survives
        /// encode → the reference parser exactly, as one line.
        #[test]
        fn any_accepted_tag_round_trips(
            id in any_name(),
            building in any_name(),
            note in any_name(),
            temp in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            code in any::<i64>(),
        ) {
            // What `check-config` lets through: no control character, no backslash, not
            // blank; a string value is sanitised of control characters at decode time.
            let accepted = |s: &str| {
                let s: String = s.chars().filter(|c| !c.is_control() && *c != '\\').collect();
                if s.trim().is_empty() { format!("x{s}") } else { s }
            };
            let (id, building) = (accepted(&id), accepted(&building));
            prop_assert_eq!(tag_problem(&id), None);
            prop_assert_eq!(tag_problem(&building), None);
            let note: String = note.chars().filter(|c| !c.is_control()).collect();
            let inv = inventory(&id, &building);
            let mut enc = TelemetryEncoder::new(&inv);
            let mut out = Vec::new();
            let r = reading(vec![
                (0, Value::Float(temp)),
                (1, Value::Int(code)),
                (3, Value::Str(note.clone())),
            ]);
            prop_assert!(enc.encode(&inv, &r, &mut out));
            let text = String::from_utf8(out).unwrap();
            prop_assert_eq!(text.matches('\n').count(), 1);
            let mut lines = parse_lines(&text);
            let line = lines.next().unwrap().unwrap();
            prop_assert!(lines.next().is_none());
            prop_assert_eq!(line.series.measurement.to_string(), "telemetry");
            let tags = line.series.tag_set.clone().unwrap();
            let tag = |k: &str| tags.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v.to_string());
            prop_assert_eq!(tag("device"), Some(id.clone()));
            prop_assert_eq!(tag("building"), Some(building.clone()));
            prop_assert_eq!(tag("site"), Some("华府小区".to_owned()));
            let field = |k: &str| line.field_set.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v.clone());
            match field("supply_temp_c") {
                Some(FieldValue::F64(x)) => prop_assert_eq!(x.to_bits(), temp.to_bits()),
                other => prop_assert!(false, "supply_temp_c: {:?}", other),
            }
            match field("fault_code") {
                Some(FieldValue::I64(x)) => prop_assert_eq!(x, code),
                other => prop_assert!(false, "fault_code: {:?}", other),
            }
            prop_assert_eq!(field("note").as_ref().and_then(field_string), Some(note.clone()));
            prop_assert_eq!(line.timestamp, Some(1_790_000_000_123));
        }
    }
}
