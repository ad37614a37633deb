//! Reading JSON request bodies (acknowledgments, on-site reports, maintenance windows) field
//! by field, so that every 400 names the field and what it must be — serde's own messages
//! for a wrong type ("invalid type: string, expected i64") do not say which field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Map, Value as Json};

use super::ApiError;

/// Longest `by` (operator name) accepted.
pub(crate) const MAX_BY_CHARS: usize = 64;

/// Longest free text (`reason` of a maintenance window) accepted.
pub(crate) const MAX_TEXT_CHARS: usize = 200;

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A JSON object body, its fields taken one by one; `example` goes into every error.
#[derive(Debug)]
pub(crate) struct Fields {
    map: Map<String, Json>,
    example: &'static str,
}

impl Fields {
    /// Parses `body` (or passes on why it could not be read, e.g. too large: 413).
    pub(crate) fn parse(
        body: Result<Bytes, BytesRejection>,
        example: &'static str,
    ) -> Result<Fields, ApiError> {
        let body = body.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            )
        })?;
        let v: Json = serde_json::from_slice(&body).map_err(|e| {
            bad(format!(
                "the body is not valid JSON: {e}; send JSON like {example}"
            ))
        })?;
        match v {
            Json::Object(map) => Ok(Fields { map, example }),
            other => Err(bad(format!(
                "the body must be a JSON object, not {}; send JSON like {example}",
                kind(&other)
            ))),
        }
    }

    /// Refuses fields other than `allowed` (a typo such as `bye` would otherwise be ignored).
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(bad(format!(
                "unknown field `{k}`; the fields are {}; e.g. {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.example
            ))),
            None => Ok(()),
        }
    }

    /// A string field; `None` when absent or null.
    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => Err(bad(format!(
                "`{name}` must be a string, not {}; e.g. {}",
                kind(other),
                self.example
            ))),
        }
    }

    /// A string field that must be there and not blank (trimmed), at most `max` characters,
    /// without control characters.
    pub(crate) fn text(&self, name: &str, max: usize) -> Result<String, ApiError> {
        let Some(s) = self.opt_str(name)? else {
            return Err(bad(format!(
                "missing field `{name}`; send JSON like {}",
                self.example
            )));
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad(format!("`{name}` is empty; e.g. {}", self.example)));
        }
        if s.chars().count() > max || s.chars().any(char::is_control) {
            return Err(bad(format!(
                "`{name}` must be at most {max} characters without control characters"
            )));
        }
        Ok(s.to_owned())
    }

    /// The operator's name (`by`).
    pub(crate) fn by(&self) -> Result<String, ApiError> {
        self.text("by", MAX_BY_CHARS)
    }

    /// A time: unix milliseconds (an integer) or an RFC 3339 string with an offset
    /// (`2026-11-15T08:00:00+08:00`); `None` when absent or null.
    pub(crate) fn opt_time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let v = match self.map.get(name) {
            None | Some(Json::Null) => return Ok(None),
            Some(v) => v,
        };
        let must = || {
            format!(
                "`{name}` must be unix milliseconds (an integer) or an RFC 3339 time such as \"2026-11-15T08:00:00+08:00\""
            )
        };
        match v {
            Json::Number(n) => match n.as_i64() {
                Some(ms) if ms > 0 => Ok(Some(ms)),
                _ => Err(bad(format!("{}, not {n}", must()))),
            },
            Json::String(s) => match s.trim().parse::<jiff::Timestamp>() {
                Ok(t) => Ok(Some(t.as_millisecond())),
                Err(e) => Err(bad(format!("{}: {s:?}: {e}", must()))),
            },
            other => Err(bad(format!("{}, not {}", must(), kind(other)))),
        }
    }

    /// A time that must be there.
    pub(crate) fn time(&self, name: &str) -> Result<i64, ApiError> {
        self.opt_time(name)?.ok_or_else(|| {
            bad(format!(
                "missing field `{name}`; send JSON like {}",
                self.example
            ))
        })
    }

    /// Unix milliseconds only (an acknowledgment's `ts`, as on MQTT).
    pub(crate) fn opt_millis(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) if n.as_i64().is_some_and(|ms| ms > 0) => Ok(n.as_i64()),
            Some(other) => Err(bad(format!(
                "`{name}` must be unix milliseconds (a positive integer), not {other}"
            ))),
        }
    }
}

/// What kind of JSON value `v` is, for messages.
fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Result<Fields, ApiError> {
        Fields::parse(Ok(Bytes::from(body.to_owned())), r#"{"by": "张伟"}"#)
    }

    #[test]
    fn errors_name_the_field() {
        let f = fields(r#"{"by": 3, "ts": "soon", "start": [1]}"#).expect("object");
        assert!(f
            .by()
            .expect_err("number")
            .message
            .contains("`by` must be a string"));
        assert!(f
            .opt_millis("ts")
            .expect_err("string")
            .message
            .starts_with("`ts` must be unix milliseconds"));
        assert!(f
            .opt_time("start")
            .expect_err("array")
            .message
            .contains("`start`"));
        assert!(f
            .opt_time("ts")
            .expect_err("text")
            .message
            .contains("\"soon\""));
        assert!(f
            .only(&["by", "ts"])
            .expect_err("start")
            .message
            .contains("`start`"));
        assert!(fields("[]")
            .expect_err("array")
            .message
            .contains("not an array"));
        assert!(fields("{")
            .expect_err("eof")
            .message
            .contains("not valid JSON"));
    }

    #[test]
    fn times_are_millis_or_rfc3339() {
        let f = fields(r#"{"a": 1790000000000, "b": "2026-11-15T08:00:00+08:00", "c": null}"#)
            .expect("object");
        assert_eq!(f.time("a").expect("ms"), 1_790_000_000_000);
        assert_eq!(f.time("b").expect("rfc3339"), 1_794_700_800_000);
        assert_eq!(f.opt_time("c").expect("null"), None);
        assert!(f
            .time("d")
            .expect_err("missing")
            .message
            .contains("missing field `d`"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let f = fields(r#"{"by": "  张伟 ", "x": "   ", "y": "a\nb"}"#).expect("object");
        assert_eq!(f.by().expect("name"), "张伟");
        assert!(f
            .text("x", 10)
            .expect_err("blank")
            .message
            .contains("empty"));
        assert!(f
            .text("y", 10)
            .expect_err("control")
            .message
            .contains("control"));
    }
}
