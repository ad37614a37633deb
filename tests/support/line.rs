//! Line-protocol assertions: parses InfluxDB lines (with `influxdb_line_protocol`, the same
//! grammar InfluxDB uses) into plain owned values with escapes removed, so tests can compare
//! exact measurements, tag values, field types and timestamps. Anything that does not parse
//! is a panic that quotes the offending line.

use std::collections::BTreeMap;

/// A field value with its line-protocol type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldVal {
    /// `12i`
    I64(i64),
    /// `12u`
    U64(u64),
    /// `1.5` or `12`
    F64(f64),
    /// `"text"` (unescaped)
    Str(String),
    /// `t`, `true`, `F`, ...
    Bool(bool),
}

impl FieldVal {
    /// The value as f64 for any numeric type (and 1/0 for booleans); panics for strings.
    pub(crate) fn as_f64(&self) -> f64 {
        match self {
            FieldVal::I64(v) => *v as f64,
            FieldVal::U64(v) => *v as f64,
            FieldVal::F64(v) => *v,
            FieldVal::Bool(v) => f64::from(u8::from(*v)),
            FieldVal::Str(s) => panic!("field is a string {s:?}, not a number"),
        }
    }

    /// The string value; panics for other types.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            FieldVal::Str(s) => s,
            other => panic!("field is {other:?}, not a string"),
        }
    }
}

/// One parsed line, everything unescaped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedPoint {
    pub(crate) measurement: String,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) fields: BTreeMap<String, FieldVal>,
    pub(crate) timestamp: Option<i64>,
}

impl ParsedPoint {
    /// The tag value; panics (showing the point) when the tag is absent.
    pub(crate) fn tag(&self, key: &str) -> &str {
        self.tags
            .get(key)
            .unwrap_or_else(|| panic!("no tag {key:?} in {self:?}"))
    }

    /// The field value; panics (showing the point) when the field is absent.
    pub(crate) fn field(&self, key: &str) -> &FieldVal {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("no field {key:?} in {self:?}"))
    }
}

/// Parses exactly one line. Panics, quoting the line, if it does not parse, if it holds more
/// or fewer than one point, or if a tag or field key repeats (legal for InfluxDB, which keeps
/// the last, but always a bug in what the gateway writes).
pub(crate) fn parse_line(line: &str) -> ParsedPoint {
    let mut points = parse_lines(line);
    assert!(
        points.len() == 1,
        "expected exactly one line-protocol point, got {} in {line:?}",
        points.len()
    );
    points.remove(0)
}

/// Parses every point of a line-protocol body (blank lines skipped); panics like [`parse_line`].
pub(crate) fn parse_lines(body: &str) -> Vec<ParsedPoint> {
    influxdb_line_protocol::split_lines(body)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            // The series (measurement and tags) is read by our own reading of the spec, and
            // cross-checked against InfluxData's parser where that one accepts the line: it
            // refuses any tag value ending in a backslash by design, which the spec and
            // VictoriaMetrics allow (`\\` is an escaped backslash).
            let (measurement, tags, rest) = spec_series(line);
            let reparse = format!("m {rest}");
            let iox_line = match influxdb_line_protocol::parse_lines(line).next() {
                Some(Ok(_)) => line,
                _ => reparse.as_str(),
            };
            let mut parsed = influxdb_line_protocol::parse_lines(iox_line);
            let point = match parsed.next() {
                Some(Ok(p)) => p,
                Some(Err(e)) => panic!("line does not parse as line protocol ({e}): {line:?}"),
                None => panic!("no point in line {line:?}"),
            };
            assert!(
                parsed.next().is_none(),
                "more than one point in line {line:?}"
            );
            if iox_line == line {
                let mut iox_tags = BTreeMap::new();
                for (k, v) in point.series.tag_set.iter().flatten() {
                    let old = iox_tags.insert(k.to_string(), v.to_string());
                    assert!(old.is_none(), "tag key {k:?} repeats in {line:?}");
                }
                assert_eq!(
                    iox_tags, tags,
                    "our reading of the tags differs from InfluxData's in {line:?}"
                );
                assert_eq!(point.series.measurement.to_string(), measurement);
            }
            let mut fields = BTreeMap::new();
            for (k, v) in &point.field_set {
                let value = match v {
                    influxdb_line_protocol::FieldValue::I64(x) => FieldVal::I64(*x),
                    influxdb_line_protocol::FieldValue::U64(x) => FieldVal::U64(*x),
                    influxdb_line_protocol::FieldValue::F64(x) => FieldVal::F64(*x),
                    influxdb_line_protocol::FieldValue::String(s) => FieldVal::Str(s.to_string()),
                    influxdb_line_protocol::FieldValue::Boolean(b) => FieldVal::Bool(*b),
                };
                let old = fields.insert(k.to_string(), value);
                assert!(old.is_none(), "field key {k:?} repeats in {line:?}");
            }
            ParsedPoint {
                measurement,
                tags,
                fields,
                timestamp: point.timestamp,
            }
        })
        .collect()
}

/// Splits a line into its unescaped measurement, its unescaped tags, and the rest (field set
/// and timestamp), following the line-protocol spec: in the series, `\\`, `\,`, `\=` and
/// `\ ` are escapes; a separator counts when preceded by an even number of backslashes.
fn spec_series(line: &str) -> (String, BTreeMap<String, String>, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() && matches!(bytes[i + 1], b'\\' | b',' | b'=' | b' ') => {
                cur.push(bytes[i + 1]);
                i += 2;
            }
            b',' => {
                parts.push(String::from_utf8(std::mem::take(&mut cur)).expect("utf-8"));
                i += 1;
            }
            b' ' => break,
            b => {
                cur.push(b);
                i += 1;
            }
        }
    }
    parts.push(String::from_utf8(cur).expect("utf-8"));
    assert!(
        i < bytes.len(),
        "line does not parse as line protocol (no field set): {line:?}"
    );
    let rest = &line[i + 1..];
    let measurement = parts.remove(0);
    let mut tags = BTreeMap::new();
    for p in parts {
        // Split at the first `=`; escaped ones were already unescaped, so re-scan the raw
        // form is not needed: tag keys written by the gateway never contain `=`.
        let (k, v) = p
            .split_once('=')
            .unwrap_or_else(|| panic!("tag without `=` in {line:?}"));
        let old = tags.insert(k.to_owned(), v.to_owned());
        assert!(old.is_none(), "tag key {k:?} repeats in {line:?}");
    }
    (measurement, tags, rest)
}
