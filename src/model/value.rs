//! Typed signal values: the type a profile declares for a signal (`SignalType`) and the value a
//! source decodes (`Value`).

use std::fmt;

/// The type a signal's values must have. A JSON value of another type is rejected as
/// `wrong_type` (see `crate::source::decode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalType {
    /// 64-bit float; any finite JSON number is accepted.
    Float,
    /// 64-bit signed integer; a JSON integer, or a float with no fractional part.
    Int,
    /// `true`/`false`; the integers 0 and 1 are accepted too (PLC bridges often send them).
    Bool,
    /// Free text.
    String,
    /// One of a fixed set of strings (e.g. elevator `mode`).
    Enum(Vec<String>),
}

impl SignalType {
    /// The name used in profiles and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            SignalType::Float => "float",
            SignalType::Int => "int",
            SignalType::Bool => "bool",
            SignalType::String => "string",
            SignalType::Enum(_) => "enum",
        }
    }
}

/// A typed signal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Float(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
        }
    }
}
