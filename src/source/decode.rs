//! Payload decoding: a JSON telemetry object or a status word becomes typed values, checked
//! against the device's profile. Pure and clock-free (the caller passes `now_ms`), so every
//! bad-input rule is unit-tested here.
//!
//! What is dropped when (also in the README, "Bad input"):
//! - the whole message: oversize, not JSON, not a JSON object, a bad/future/stale `ts`;
//! - one signal, keeping the others: an unknown key, a value of the wrong type, NaN/±Infinity.
//!   Signals are independent measurements, so one bad sensor must not hide the good ones.
//!
//! String values with control characters are kept, with each control character replaced by a
//! space, and counted (`sanitised`): the store's line protocol cannot carry a newline.

use serde_json::Value as Json;

use crate::model::{Profile, SignalType, Status, Value};
use crate::stats::Reject;

/// Limits applied to every message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_clock_skew_ms: i64,
    pub max_reading_age_ms: i64,
}

/// One thing wrong with a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub reason: Reject,
    /// For signal-level problems, the signal's key.
    pub signal: Option<String>,
    /// Human-readable detail for the log.
    pub detail: String,
}

impl Problem {
    fn whole(reason: Reject, detail: impl Into<String>) -> Self {
        Problem {
            reason,
            signal: None,
            detail: detail.into(),
        }
    }
    fn signal(reason: Reject, key: &str, detail: impl Into<String>) -> Self {
        Problem {
            reason,
            signal: Some(key.to_owned()),
            detail: detail.into(),
        }
    }
}

/// A decoded telemetry message: its time, its valid values and the signals it dropped.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub ts_ms: i64,
    pub values: Vec<(u16, Value)>,
    pub problems: Vec<Problem>,
    pub sanitised: u32,
}

/// Marker a non-finite number is rewritten to before parsing (see `rewrite_non_finite`).
const NON_FINITE: &str = "__estate_gateway_non_finite__";

/// Decodes a telemetry payload for a device of `profile`, received at `now_ms`.
pub fn telemetry(
    profile: &Profile,
    payload: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<Decoded, Problem> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Problem::whole(
            Reject::Oversize,
            format!(
                "payload is {} bytes, more than max_payload_bytes = {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    // Parsed as a list of members whose keys borrow from the payload (no map, no key
    // allocations); a key given twice keeps its last value, as a JSON object map would.
    let fixed;
    let top: Top = match serde_json::from_slice(payload) {
        Ok(t) => t,
        Err(e) => match rewrite_non_finite(payload) {
            // Devices built on Python's json or JavaScript's JSON.stringify send bare NaN or
            // Infinity; treat those as a bad value of one signal, not a bad message.
            Some(f) => {
                fixed = f;
                serde_json::from_slice(&fixed)
                    .map_err(|_| Problem::whole(Reject::InvalidJson, format!("not JSON: {e}")))?
            }
            None => {
                return Err(Problem::whole(
                    Reject::InvalidJson,
                    format!("not JSON: {e}"),
                ))
            }
        },
    };
    let Top::Object(mut map) = top else {
        return Err(Problem::whole(
            Reject::NotObject,
            "payload must be a JSON object of signals, e.g. {\"supply_temp_c\": 55.2}",
        ));
    };
    // In key order, the last of equal keys kept: the order (and the values) a JSON object
    // map gives, so readings, rejects and store lines come out as they always did.
    map.sort_by(|a, b| a.0.cmp(&b.0));
    map.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            std::mem::swap(&mut later.1, &mut earlier.1);
            true
        } else {
            false
        }
    });
    let ts_ms = match map.iter().find(|(k, _)| k == "ts").map(|(_, v)| v) {
        None | Some(Json::Null) => now_ms,
        Some(t) => check_ts(t, now_ms, limits)?,
    };
    let mut out = Decoded {
        ts_ms,
        values: Vec::with_capacity(map.len()),
        problems: Vec::new(),
        sanitised: 0,
    };
    for (key, v) in &map {
        let key: &str = key;
        if key == "ts" {
            continue;
        }
        let Some(idx) = profile.signal_index(key) else {
            out.problems.push(Problem::signal(
                Reject::UnknownSignal,
                key,
                format!("`{key}` is not a signal of category `{}`", profile.category),
            ));
            continue;
        };
        match typed(&profile.signal(idx).ty, v) {
            Ok(Value::Str(s)) => {
                let (s, n) = sanitise(s);
                out.sanitised += n;
                out.values.push((idx, Value::Str(s)));
            }
            Ok(value) => out.values.push((idx, value)),
            Err((reason, detail)) => out.problems.push(Problem::signal(reason, key, detail)),
        }
    }
    Ok(out)
}

/// A payload's top level as parsed: the object's members in payload order, keys borrowed from
/// the payload where they carry no escapes (no map, no key allocations), or anything else.
enum Top<'a> {
    Object(Vec<(std::borrow::Cow<'a, str>, Json)>),
    Other,
}

impl<'de> serde::Deserialize<'de> for Top<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

/// A key that borrows from the payload unless it has escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for TopVisitor {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Top<'de>, A::Error> {
        let mut members = Vec::with_capacity(m.size_hint().unwrap_or(8).min(64));
        while let Some(Key(k)) = m.next_key::<Key<'de>>()? {
            members.push((k, m.next_value::<Json>()?));
        }
        Ok(Top::Object(members))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Top<'de>, A::Error> {
        while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Top::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
}

/// Decodes a status payload: `online` or `offline` (case-insensitive, surrounding
/// whitespace and JSON quotes ignored).
pub fn status(payload: &[u8]) -> Result<Status, Problem> {
    let text = std::str::from_utf8(payload).unwrap_or("");
    let word = text.trim().trim_matches('"').to_ascii_lowercase();
    match word.as_str() {
        "online" => Ok(Status::Online),
        "offline" => Ok(Status::Offline),
        _ => Err(Problem::whole(
            Reject::BadStatus,
            format!(
                "status must be `online` or `offline`, got `{}`",
                String::from_utf8_lossy(&payload[..payload.len().min(64)]).escape_debug()
            ),
        )),
    }
}

fn check_ts(t: &Json, now_ms: i64, limits: &Limits) -> Result<i64, Problem> {
    let ts = match t {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    };
    let Some(ts) = ts.filter(|t| *t > 0) else {
        return Err(Problem::whole(
            Reject::BadTimestamp,
            format!("`ts` must be a positive integer of unix milliseconds, got {t}"),
        ));
    };
    if ts > now_ms + limits.max_clock_skew_ms {
        return Err(Problem::whole(
            Reject::FutureTimestamp,
            format!(
                "`ts` {ts} is {} ms ahead of the gateway clock (max_clock_skew = {} ms); check the device's clock",
                ts - now_ms,
                limits.max_clock_skew_ms
            ),
        ));
    }
    if ts < now_ms - limits.max_reading_age_ms {
        let hint = if ts < 100_000_000_000 {
            "; it looks like seconds: `ts` must be unix milliseconds"
        } else {
            ""
        };
        return Err(Problem::whole(
            Reject::StaleTimestamp,
            format!(
                "`ts` {ts} is older than max_reading_age ({} ms){hint}",
                limits.max_reading_age_ms
            ),
        ));
    }
    Ok(ts)
}

type TypeError = (Reject, String);

fn typed(ty: &SignalType, v: &Json) -> Result<Value, TypeError> {
    if let Json::String(s) = v {
        if s == NON_FINITE {
            return Err((Reject::NonFinite, "value is NaN or Infinity".into()));
        }
    }
    let wrong = |want: &str| (Reject::WrongType, format!("expected {want}, got {v}"));
    match ty {
        SignalType::Float => match v {
            Json::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Value::Float)
                .ok_or_else(|| (Reject::NonFinite, format!("{n} is not a finite number"))),
            _ => Err(wrong("a number")),
        },
        SignalType::Int => match v {
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Value::Int(i))
                } else if let Some(f) = n
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f <= i64::MAX as f64)
                {
                    Ok(Value::Int(f as i64))
                } else {
                    Err(wrong("an integer"))
                }
            }
            _ => Err(wrong("an integer")),
        },
        SignalType::Bool => match v {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::Number(n) if n.as_u64() == Some(0) => Ok(Value::Bool(false)),
            Json::Number(n) if n.as_u64() == Some(1) => Ok(Value::Bool(true)),
            _ => Err(wrong("true/false (or 0/1)")),
        },
        SignalType::String => match v {
            Json::String(s) => Ok(Value::Str(s.clone())),
            _ => Err(wrong("a string")),
        },
        SignalType::Enum(allowed) => match v {
            Json::String(s) if allowed.iter().any(|a| a == s) => Ok(Value::Str(s.clone())),
            _ => Err((
                Reject::WrongType,
                format!("expected one of {}, got {v}", allowed.join("/")),
            )),
        },
    }
}

/// Replaces control characters (which line protocol cannot carry) with spaces.
fn sanitise(s: String) -> (String, u32) {
    if !s.chars().any(char::is_control) {
        return (s, 0);
    }
    (
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        1,
    )
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens (outside strings) to a marker
/// string so the rest of the message still parses. `None` when there are none.
fn rewrite_non_finite(payload: &[u8]) -> Option<Vec<u8>> {
    let marker = format!("\"{NON_FINITE}\"");
    let mut out = Vec::with_capacity(payload.len() + 32);
    let mut in_string = false;
    let mut escaped = false;
    let mut found = false;
    let mut i = 0;
    while i < payload.len() {
        let b = payload[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &payload[i..];
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.extend_from_slice(marker.as_bytes());
            i += t.len();
            found = true;
        } else {
            out.push(b);
            i += 1;
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Signal;
    use std::time::Duration;

    const NOW: i64 = 1_790_000_000_000;

    fn profile() -> Profile {
        let s = |name: &str, ty| Signal {
            name: name.into(),
            ty,
            unit: None,
            label: None,
        };
        Profile::new(
            "elevator".into(),
            "电梯".into(),
            Duration::from_secs(10),
            vec![
                s("temp", SignalType::Float),
                s("floor", SignalType::Int),
                s("entrapment", SignalType::Bool),
                s("note", SignalType::String),
                s(
                    "mode",
                    SignalType::Enum(vec!["normal".into(), "inspection".into()]),
                ),
            ],
        )
    }

    fn limits() -> Limits {
        Limits {
            max_payload_bytes: 1024,
            max_clock_skew_ms: 60_000,
            max_reading_age_ms: 7 * 86_400_000,
        }
    }

    fn decode(s: &str) -> Result<Decoded, Problem> {
        telemetry(&profile(), s.as_bytes(), NOW, &limits())
    }

    fn reasons(d: &Decoded) -> Vec<(Reject, Option<&str>)> {
        d.problems
            .iter()
            .map(|p| (p.reason, p.signal.as_deref()))
            .collect()
    }

    #[test]
    fn valid_payload_is_typed_and_timestamped() {
        let d = decode(
            r#"{"ts": 1789999999000, "temp": 21.5, "floor": 7, "entrapment": false,
                "note": "ok", "mode": "inspection"}"#,
        )
        .unwrap();
        assert_eq!(d.ts_ms, 1_789_999_999_000);
        assert!(d.problems.is_empty());
        let mut v = d.values.clone();
        v.sort_by_key(|(i, _)| *i);
        assert_eq!(
            v,
            vec![
                (0, Value::Float(21.5)),
                (1, Value::Int(7)),
                (2, Value::Bool(false)),
                (3, Value::Str("ok".into())),
                (4, Value::Str("inspection".into())),
            ]
        );
    }

    #[test]
    fn missing_ts_means_arrival_time() {
        assert_eq!(decode(r#"{"temp": 1}"#).unwrap().ts_ms, NOW);
        assert_eq!(decode(r#"{"temp": 1, "ts": null}"#).unwrap().ts_ms, NOW);
    }

    #[test]
    fn lenient_forms_that_devices_really_send() {
        let d = decode(r#"{"temp": 20, "floor": 3.0, "entrapment": 1}"#).unwrap();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert!(d.values.contains(&(0, Value::Float(20.0))));
        assert!(d.values.contains(&(1, Value::Int(3))));
        assert!(d.values.contains(&(2, Value::Bool(true))));
    }

    #[test]
    fn bad_signals_are_dropped_one_by_one() {
        let d = decode(
            r#"{"temp": "hot", "floor": 2.5, "entrapment": 2, "mode": "flying",
                "colour": "red", "note": "fine"}"#,
        )
        .unwrap();
        let mut r = reasons(&d);
        r.sort_by_key(|(_, s)| s.map(str::to_owned));
        assert_eq!(
            r,
            vec![
                (Reject::UnknownSignal, Some("colour")),
                (Reject::WrongType, Some("entrapment")),
                (Reject::WrongType, Some("floor")),
                (Reject::WrongType, Some("mode")),
                (Reject::WrongType, Some("temp")),
            ]
        );
        assert_eq!(d.values, vec![(3, Value::Str("fine".into()))]);
    }

    #[test]
    fn nan_and_infinity_drop_only_their_signal() {
        let d = decode(r#"{"temp": NaN, "floor": 4, "note": "NaN inside a string"}"#).unwrap();
        assert_eq!(reasons(&d), vec![(Reject::NonFinite, Some("temp"))]);
        assert!(d.values.contains(&(1, Value::Int(4))));
        assert!(d
            .values
            .contains(&(3, Value::Str("NaN inside a string".into()))));
        let d = decode(r#"{"temp": -Infinity, "floor": Infinity}"#).unwrap();
        assert_eq!(d.problems.len(), 2);
        assert!(d.problems.iter().all(|p| p.reason == Reject::NonFinite));
        assert!(d.values.is_empty());
    }

    #[test]
    fn whole_message_rejections() {
        let e = |s: &str| decode(s).unwrap_err().reason;
        assert_eq!(e("{\"temp\": 1"), Reject::InvalidJson);
        assert_eq!(e("\u{0}\u{1}binary"), Reject::InvalidJson);
        assert_eq!(e("[1,2]"), Reject::NotObject);
        assert_eq!(e("42"), Reject::NotObject);
        assert_eq!(e(r#"{"ts": "yesterday", "temp": 1}"#), Reject::BadTimestamp);
        assert_eq!(e(r#"{"ts": -5, "temp": 1}"#), Reject::BadTimestamp);
        assert_eq!(e(r#"{"ts": 1.5, "temp": 1}"#), Reject::BadTimestamp);
        let big = format!("{{\"note\": \"{}\"}}", "x".repeat(2000));
        assert_eq!(e(&big), Reject::Oversize);
    }

    #[test]
    fn timestamp_window_edges() {
        let at = |ts: i64| decode(&format!(r#"{{"ts": {ts}, "temp": 1}}"#));
        assert_eq!(at(NOW + 60_000).unwrap().ts_ms, NOW + 60_000);
        assert_eq!(
            at(NOW + 60_001).unwrap_err().reason,
            Reject::FutureTimestamp
        );
        let oldest = NOW - 7 * 86_400_000;
        assert_eq!(at(oldest).unwrap().ts_ms, oldest);
        let stale = at(oldest - 1).unwrap_err();
        assert_eq!(stale.reason, Reject::StaleTimestamp);
        let secs = at(NOW / 1000).unwrap_err();
        assert_eq!(secs.reason, Reject::StaleTimestamp);
        assert!(
            secs.detail.contains("looks like seconds"),
            "{}",
            secs.detail
        );
    }

    #[test]
    fn control_characters_in_strings_are_sanitised_and_counted() {
        let d = decode(r#"{"note": "line1\nline2\u0007"}"#).unwrap();
        assert_eq!(d.values, vec![(3, Value::Str("line1 line2 ".into()))]);
        assert_eq!(d.sanitised, 1);
    }

    #[test]
    fn status_words() {
        assert_eq!(status(b"online"), Ok(Status::Online));
        assert_eq!(status(b" OFFLINE\n"), Ok(Status::Offline));
        assert_eq!(status(b"\"online\""), Ok(Status::Online));
        assert_eq!(status(b"maybe").unwrap_err().reason, Reject::BadStatus);
        assert_eq!(status(&[0xff, 0xfe]).unwrap_err().reason, Reject::BadStatus);
    }
}
