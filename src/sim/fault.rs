//! Faults the simulator injects, and the script file that schedules them by simulated time
//! (`estate-gateway simulate --script faults.toml`):
//!
//! ```toml
//! # 30 s after start, HX-1's supply temperature reads 20 °C for 5 minutes.
//! [[fault]]
//! device = "HX-1"
//! at = "30s"
//! for = "5m"                 # optional; without it the fault lasts until the simulator stops
//! kind = "value"
//! signal = "supply_temp_c"
//! value = 20.0
//!
//! [[fault]]
//! device = "FP-1"
//! at = "2m"
//! for = "1m"
//! kind = "exception"
//! code = "server_device_busy" # or illegal_function, illegal_data_address, illegal_data_value,
//!                             # server_device_failure, acknowledge, memory_parity_error,
//!                             # gateway_path_unavailable, gateway_target_device, or a number
//!
//! [[fault]]
//! device = "HX-2"
//! at = "10m"
//! kind = "no_response"       # the unit stops answering; requests time out
//!
//! [[fault]]
//! device = "FP-2"
//! at = "15m"
//! for = "2m"
//! kind = "offline"           # powered off: see `Fault::Offline`
//! ```
//!
//! `device` is a device id (or `site/id` when several sites share ids); durations are written
//! as in the gateway's configuration (`500ms`, `30s`, `5m`, `2h`). Faults whose windows overlap
//! on one device combine: a forced value per signal (the later entry wins), and the first
//! communication fault (`no_response`, `exception`, `offline`) in file order. Faults set through
//! the API (`SimHandle::set_fault`) win over scripted ones.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio_modbus::ExceptionCode;

use crate::model::Value;

/// A fault of one simulated device.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The unit stops answering: every request to it times out at the client. Other units on
    /// the same endpoint keep answering.
    NoResponse,
    /// The unit answers every request with this exception (e.g. `ServerDeviceBusy`); the
    /// connection stays up.
    Exception(ExceptionCode),
    /// The signal reads `value` (a stuck sensor, or the plant really doing it); the simulated
    /// value carries on underneath and returns when the fault ends.
    Value { signal: String, value: Value },
    /// The device is powered off. On a TCP endpoint (`tcp://`, `rtu+tcp://`) whose devices are
    /// all offline, the listener closes: open connections are closed and new ones are refused
    /// until one comes back. While other units of the endpoint still run, and on a serial line,
    /// an offline unit is silent (like `NoResponse`).
    Offline,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NoResponse => write!(f, "no_response"),
            Fault::Exception(code) => write!(f, "exception {}", exception_name(*code)),
            Fault::Value { signal, value } => write!(f, "value {signal} = {value}"),
            Fault::Offline => write!(f, "offline"),
        }
    }
}

/// A fault scheduled by simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedFault {
    /// Where it was written, for messages (`faults.toml: fault[2]`).
    pub origin: String,
    /// A device id, or `site/id`.
    pub device: String,
    /// Simulated time from the start at which it begins.
    pub at: Duration,
    /// How long it lasts; `None` = until the simulator stops.
    pub duration: Option<Duration>,
    pub fault: Fault,
}

impl ScriptedFault {
    /// Whether the fault holds at simulated time `now`.
    pub fn active_at(&self, now: Duration) -> bool {
        now >= self.at && self.duration.is_none_or(|d| now < self.at + d)
    }
}

/// Every mistake in a script, each naming the file and the key (`faults.toml: fault[1].kind:
/// ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptErrors(pub Vec<String>);

impl fmt::Display for ScriptErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} fault script error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptErrors {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    fault: Vec<RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    device: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default, rename = "for")]
    duration: Option<String>,
    kind: String,
    #[serde(default)]
    signal: Option<String>,
    #[serde(default)]
    value: Option<toml::Value>,
    #[serde(default)]
    code: Option<toml::Value>,
}

/// Reads and parses a script file.
pub fn load_script(path: &Path) -> Result<Vec<ScriptedFault>, ScriptErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScriptErrors(vec![format!("{file}: cannot be read: {e}")]))?;
    parse_script(&file, &text)
}

/// Parses a script; `file` names it in messages. Devices and signals are checked when the
/// simulator starts (it knows the devices).
pub fn parse_script(file: &str, text: &str) -> Result<Vec<ScriptedFault>, ScriptErrors> {
    let raw: RawScript = toml::from_str(text).map_err(|e| {
        ScriptErrors(vec![format!(
            "{file}: is not a fault script: {}",
            e.to_string().trim_end()
        )])
    })?;
    let mut errs = Vec::new();
    let mut out = Vec::new();
    for (i, f) in raw.fault.iter().enumerate() {
        let origin = format!("{file}: fault[{i}]");
        let mut err = |key: &str, msg: String| errs.push(format!("{origin}.{key}: {msg}"));
        let mut duration = |key: &str, v: &str| match humantime::parse_duration(v.trim()) {
            Ok(d) => Some(d),
            Err(_) => {
                err(
                    key,
                    format!("`{v}` is not a duration; write e.g. `500ms`, `30s`, `5m`, `2h`"),
                );
                None
            }
        };
        let at =
            f.at.as_deref()
                .map_or(Some(Duration::ZERO), |v| duration("at", v));
        let dur = match f.duration.as_deref() {
            Some(v) => duration("for", v).map(Some),
            None => Some(None),
        };
        let mut unused = |key: &str, present: bool, kind: &str| {
            if present {
                err(key, format!("is not used by kind `{kind}`; remove it"));
            }
        };
        let fault = match f.kind.as_str() {
            "no_response" | "offline" => {
                unused("signal", f.signal.is_some(), &f.kind);
                unused("value", f.value.is_some(), &f.kind);
                unused("code", f.code.is_some(), &f.kind);
                Some(if f.kind == "offline" {
                    Fault::Offline
                } else {
                    Fault::NoResponse
                })
            }
            "exception" => {
                unused("signal", f.signal.is_some(), &f.kind);
                unused("value", f.value.is_some(), &f.kind);
                match &f.code {
                    None => {
                        err(
                            "code",
                            format!("is missing; kind `exception` needs one of: {}", CODES_HINT),
                        );
                        None
                    }
                    Some(c) => match parse_exception(c) {
                        Ok(code) => Some(Fault::Exception(code)),
                        Err(m) => {
                            err("code", m);
                            None
                        }
                    },
                }
            }
            "value" => {
                unused("code", f.code.is_some(), &f.kind);
                let signal = f.signal.clone();
                if signal.is_none() {
                    err(
                        "signal",
                        "is missing; kind `value` needs the signal to force".into(),
                    );
                }
                let value = match &f.value {
                    None => {
                        err(
                            "value",
                            "is missing; kind `value` needs the value to report".into(),
                        );
                        None
                    }
                    Some(toml::Value::Float(x)) => Some(Value::Float(*x)),
                    Some(toml::Value::Integer(x)) => Some(Value::Int(*x)),
                    Some(toml::Value::Boolean(x)) => Some(Value::Bool(*x)),
                    Some(toml::Value::String(x)) => Some(Value::Str(x.clone())),
                    Some(other) => {
                        err(
                            "value",
                            format!("`{other}` is not a number, true/false or a string"),
                        );
                        None
                    }
                };
                signal
                    .zip(value)
                    .map(|(signal, value)| Fault::Value { signal, value })
            }
            other => {
                err(
                    "kind",
                    format!(
                        "unknown kind `{other}`; valid: value, no_response, exception, offline"
                    ),
                );
                None
            }
        };
        if let (Some(at), Some(duration), Some(fault)) = (at, dur, fault) {
            out.push(ScriptedFault {
                origin,
                device: f.device.clone(),
                at,
                duration,
                fault,
            });
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(ScriptErrors(errs))
    }
}

const CODES: &[(&str, ExceptionCode)] = &[
    ("illegal_function", ExceptionCode::IllegalFunction),
    ("illegal_data_address", ExceptionCode::IllegalDataAddress),
    ("illegal_data_value", ExceptionCode::IllegalDataValue),
    ("server_device_failure", ExceptionCode::ServerDeviceFailure),
    ("acknowledge", ExceptionCode::Acknowledge),
    ("server_device_busy", ExceptionCode::ServerDeviceBusy),
    ("memory_parity_error", ExceptionCode::MemoryParityError),
    (
        "gateway_path_unavailable",
        ExceptionCode::GatewayPathUnavailable,
    ),
    ("gateway_target_device", ExceptionCode::GatewayTargetDevice),
];

const CODES_HINT: &str = "illegal_function, illegal_data_address, illegal_data_value, server_device_failure, acknowledge, server_device_busy, memory_parity_error, gateway_path_unavailable, gateway_target_device, or a number 1-255";

/// An exception code by name (`server_device_busy`) or number (1-255).
fn parse_exception(v: &toml::Value) -> Result<ExceptionCode, String> {
    match v {
        toml::Value::String(s) => CODES
            .iter()
            .find(|(n, _)| *n == s.as_str())
            .map(|(_, c)| *c)
            .ok_or_else(|| format!("unknown exception `{s}`; valid: {CODES_HINT}")),
        toml::Value::Integer(n) => u8::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(ExceptionCode::new)
            .ok_or_else(|| format!("{n} is not an exception code; valid: {CODES_HINT}")),
        other => Err(format!(
            "`{other}` is not an exception code; valid: {CODES_HINT}"
        )),
    }
}

/// The script name of an exception code (`server_device_busy`), or its number.
pub fn exception_name(code: ExceptionCode) -> String {
    CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("{}", u8::from(code)), |(n, _)| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_parses_into_scheduled_faults() {
        let s = parse_script(
            "faults.toml",
            r#"
            [[fault]]
            device = "HX-1"
            at = "30s"
            for = "5m"
            kind = "value"
            signal = "supply_temp_c"
            value = 20.0

            [[fault]]
            device = "FP-1"
            kind = "exception"
            code = "server_device_busy"

            [[fault]]
            device = "FP-2"
            at = "1m"
            kind = "exception"
            code = 4

            [[fault]]
            device = "HX-2"
            at = "10m"
            for = "1s"
            kind = "no_response"

            [[fault]]
            device = "huafu/FP-3"
            kind = "offline"
            "#,
        )
        .unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(
            s[0],
            ScriptedFault {
                origin: "faults.toml: fault[0]".into(),
                device: "HX-1".into(),
                at: Duration::from_secs(30),
                duration: Some(Duration::from_secs(300)),
                fault: Fault::Value {
                    signal: "supply_temp_c".into(),
                    value: Value::Float(20.0)
                },
            }
        );
        assert_eq!(
            s[1].fault,
            Fault::Exception(ExceptionCode::ServerDeviceBusy)
        );
        assert_eq!(s[1].at, Duration::ZERO);
        assert_eq!(
            s[2].fault,
            Fault::Exception(ExceptionCode::ServerDeviceFailure)
        );
        assert_eq!(s[3].fault, Fault::NoResponse);
        assert_eq!(s[4].fault, Fault::Offline);
        assert!(!s[0].active_at(Duration::from_secs(29)));
        assert!(s[0].active_at(Duration::from_secs(30)));
        assert!(s[0].active_at(Duration::from_secs(329)));
        assert!(!s[0].active_at(Duration::from_secs(330)));
        assert!(s[4].active_at(Duration::from_secs(1_000_000)));
    }

    #[test]
    fn every_mistake_is_reported_with_its_key() {
        let e = parse_script(
            "f.toml",
            r#"
            [[fault]]
            device = "HX-1"
            at = "soon"
            kind = "value"

            [[fault]]
            device = "HX-1"
            kind = "exception"
            code = "busy"
            signal = "x"

            [[fault]]
            device = "HX-1"
            kind = "explode"
            "#,
        )
        .unwrap_err();
        let all = e.to_string();
        for needle in [
            "f.toml: fault[0].at: `soon` is not a duration",
            "f.toml: fault[0].signal: is missing",
            "f.toml: fault[0].value: is missing",
            "f.toml: fault[1].code: unknown exception `busy`; valid: illegal_function",
            "f.toml: fault[1].signal: is not used by kind `exception`",
            "f.toml: fault[2].kind: unknown kind `explode`; valid: value, no_response, exception, offline",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        let e = parse_script(
            "f.toml",
            "[[fault]]\ndevice = \"x\"\nkind = \"offline\"\nwhen = 1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `when`"), "{e}");
    }

    #[test]
    fn exception_names_round_trip() {
        for (name, code) in CODES {
            assert_eq!(
                parse_exception(&toml::Value::String((*name).into())),
                Ok(*code)
            );
            assert_eq!(exception_name(*code), *name);
        }
        assert_eq!(exception_name(ExceptionCode::new(0x42)), "66");
        assert!(parse_exception(&toml::Value::Integer(0)).is_err());
        assert!(parse_exception(&toml::Value::Integer(300)).is_err());
    }
}
