//! Register maps: where each signal of a device model lives in the Modbus tables, and how its
//! raw words or bits become a typed `Value` (and back, for writes). Pure functions, unit-tested
//! for every type and byte/word order.
//!
//! Addresses are the 0-based protocol addresses of the request PDU. The traditional 5-digit
//! "Modicon" numbers map as: coil 00001 → coil 0; discrete input 10001 → discrete 0; input
//! register 30001 → input 0; holding register 40001 → holding 0 (so 40101 is holding 100).
//!
//! Byte and word order name where the bytes A B C D of a big-endian 32-bit value sit in the
//! wire words (A = most significant byte):
//! - `ABCD`: big-endian words, big-endian bytes (Modbus standard; most PLCs);
//! - `CDAB`: low word first, bytes big-endian ("word swap"; many meters, Schneider, some Siemens);
//! - `BADC`: big-endian words with bytes swapped inside each word;
//! - `DCBA`: fully little-endian.
//!
//! For 64-bit values the pattern extends: `ABCD` = ABCDEFGH, `CDAB` = GHEFCDAB (words
//! reversed), `BADC` = BADCFEHG, `DCBA` = HGFEDCBA.
//!
//! Strings (`type = "string"`, `length` registers of two bytes each) follow the same rule:
//! `ABCD` puts the first character in the high byte of the first register (the usual layout),
//! `BADC` in its low byte; `CDAB`/`DCBA` also reverse the registers. Trimming (the default)
//! removes NULs and spaces at both ends; bytes that are not UTF-8 become U+FFFD and control
//! characters inside become spaces (no line injection).

use crate::model::{SignalType, Value};

/// A Modbus data table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Read/write bits (function codes 1, 5, 15).
    Coil,
    /// Read-only bits (function code 2).
    Discrete,
    /// Read-only 16-bit registers (function code 4).
    Input,
    /// Read/write 16-bit registers (function codes 3, 6, 16).
    Holding,
}

impl Table {
    pub fn parse(s: &str) -> Option<Table> {
        match s {
            "coil" => Some(Table::Coil),
            "discrete" | "discrete_input" => Some(Table::Discrete),
            "input" | "input_register" => Some(Table::Input),
            "holding" | "holding_register" => Some(Table::Holding),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Input => "input",
            Table::Holding => "holding",
        }
    }

    /// Bit tables hold single bits; register tables hold 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    pub fn writable(self) -> bool {
        matches!(self, Table::Coil | Table::Holding)
    }
}

/// How a signal's raw data is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegType {
    /// A coil or discrete input; in a register table, the register is non-zero.
    Bool,
    /// Bit `n` (0 = least significant) of one register.
    Bit(u8),
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// Text in `len` registers (two bytes each); `trim`: without NULs and spaces at both ends.
    Str {
        len: u16,
        trim: bool,
    },
}

impl RegType {
    /// `length` (registers) and `trim` are a string's; other types ignore them.
    pub fn parse(s: &str, bit: Option<u8>) -> Option<RegType> {
        RegType::parse_with(s, bit, None, true)
    }

    /// `parse`, with a string's `length` in registers (required for `string`) and trimming.
    pub fn parse_with(
        s: &str,
        bit: Option<u8>,
        length: Option<u16>,
        trim: bool,
    ) -> Option<RegType> {
        Some(match s {
            "string" => RegType::Str { len: length?, trim },
            "int64" => RegType::I64,
            "uint64" => RegType::U64,
            "bool" => RegType::Bool,
            "bit" => RegType::Bit(bit?),
            "u16" => RegType::U16,
            "i16" => RegType::I16,
            "u32" => RegType::U32,
            "i32" => RegType::I32,
            "u64" => RegType::U64,
            "i64" => RegType::I64,
            "f32" => RegType::F32,
            "f64" => RegType::F64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RegType::Bool => "bool",
            RegType::Bit(_) => "bit",
            RegType::U16 => "u16",
            RegType::I16 => "i16",
            RegType::U32 => "u32",
            RegType::I32 => "i32",
            RegType::U64 => "u64",
            RegType::I64 => "i64",
            RegType::F32 => "f32",
            RegType::F64 => "f64",
            RegType::Str { .. } => "string",
        }
    }

    /// Words (register tables) or bits (bit tables) the value occupies.
    pub fn width(self) -> u16 {
        match self {
            RegType::Bool | RegType::Bit(_) | RegType::U16 | RegType::I16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
            RegType::U64 | RegType::I64 | RegType::F64 => 4,
            RegType::Str { len, .. } => len,
        }
    }

    pub fn is_boolean(self) -> bool {
        matches!(self, RegType::Bool | RegType::Bit(_))
    }
}

/// Byte and word order of multi-register values (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

impl Order {
    pub fn parse(s: &str) -> Option<Order> {
        match s.to_ascii_uppercase().as_str() {
            "ABCD" => Some(Order::Abcd),
            "CDAB" => Some(Order::Cdab),
            "BADC" => Some(Order::Badc),
            "DCBA" => Some(Order::Dcba),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Order::Abcd => "ABCD",
            Order::Cdab => "CDAB",
            Order::Badc => "BADC",
            Order::Dcba => "DCBA",
        }
    }

    /// Whether the bytes inside each word are swapped.
    fn swap_bytes(self) -> bool {
        matches!(self, Order::Badc | Order::Dcba)
    }

    /// Whether the words are in reverse (least significant first) order.
    fn reverse_words(self) -> bool {
        matches!(self, Order::Cdab | Order::Dcba)
    }

    /// Wire words → big-endian bytes of the value.
    pub fn to_be_bytes(self, words: &[u16]) -> Vec<u8> {
        let mut ws: Vec<u16> = words.to_vec();
        if self.reverse_words() {
            ws.reverse();
        }
        ws.iter()
            .flat_map(|w| {
                let w = if self.swap_bytes() {
                    w.swap_bytes()
                } else {
                    *w
                };
                w.to_be_bytes()
            })
            .collect()
    }

    /// Big-endian bytes of the value → wire words (the inverse of `to_be_bytes`).
    pub fn from_be_bytes(self, bytes: &[u8]) -> Vec<u16> {
        let mut ws: Vec<u16> = bytes
            .chunks(2)
            .map(|c| {
                let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
                if self.swap_bytes() {
                    w.swap_bytes()
                } else {
                    w
                }
            })
            .collect();
        if self.reverse_words() {
            ws.reverse();
        }
        ws
    }
}

/// One signal's place in a device model.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    /// The signal of the category profile this register feeds.
    pub signal: String,
    /// Index of that signal in the profile.
    pub signal_idx: u16,
    pub table: Table,
    /// 0-based protocol address.
    pub address: u16,
    pub ty: RegType,
    pub order: Order,
    /// value = raw × scale + offset (numeric types).
    pub scale: f64,
    pub offset: f64,
    /// For `enum` signals: raw value n → `values[n]`.
    pub values: Option<Vec<String>>,
    /// Operators may write this signal (`POST /api/devices/{id}/write`).
    pub writable: bool,
    /// The range an operator may write (`min`/`max` in the register map; numeric signals).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// What the profile says the signal is.
    pub signal_type: SignalType,
    /// Report by exception (`deadband`, `max_silence`): which values the store is spared.
    pub report: Option<Exception>,
}

/// Report by exception for one signal: a value that moved by no more than `deadband` from the
/// last value written to the store is not written again until `max_silence_ms` after it (the
/// engine still gets every value). Non-numeric values count as moved when they differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exception {
    pub deadband: f64,
    pub max_silence_ms: i64,
}

/// Why raw data could not become a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("raw value {0} has no entry in the signal's `values`")]
    NoSuchEnumValue(u64),
    #[error("decoded value is NaN or infinite")]
    NonFinite,
    #[error("raw value {0} does not fit a 64-bit signed integer signal")]
    OutOfRange(i128),
    #[error("expected {want} words, got {got}")]
    Short { want: usize, got: usize },
}

/// A raw number before scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Raw {
    Int(i128),
    Float(f64),
}

impl Register {
    /// Whether an operator may write `v`: inside `min`..=`max` for a number, one of the
    /// allowed values for an enum. `Err` says what is allowed.
    pub fn check_limits(&self, v: &Value) -> Result<(), String> {
        if let SignalType::Enum(allowed) = &self.signal_type {
            return match v {
                Value::Str(s) if allowed.iter().any(|a| a == s) => Ok(()),
                other => Err(format!(
                    "{other} is not an allowed value; allowed: {}",
                    allowed.join(", ")
                )),
            };
        }
        let x = match v {
            Value::Float(f) => *f,
            Value::Int(i) => *i as f64,
            _ => return Ok(()),
        };
        let below = self.min.is_some_and(|m| x < m);
        let above = self.max.is_some_and(|m| x > m);
        if below || above {
            let bound = |b: Option<f64>| b.map_or_else(|| "…".to_owned(), |b| b.to_string());
            return Err(format!(
                "{x} is outside the allowed range {} to {} (`min`/`max` of the register map)",
                bound(self.min),
                bound(self.max)
            ));
        }
        Ok(())
    }

    /// Decodes the register's words (exactly `ty.width()` of them).
    pub fn decode_words(&self, words: &[u16]) -> Result<Value, DecodeError> {
        let want = self.ty.width() as usize;
        if words.len() < want {
            return Err(DecodeError::Short {
                want,
                got: words.len(),
            });
        }
        let words = &words[..want];
        if let RegType::Str { trim, .. } = self.ty {
            return Ok(Value::Str(decode_text(
                &self.order.to_be_bytes(words),
                trim,
            )));
        }
        let raw = match self.ty {
            RegType::Bool => return Ok(Value::Bool(words[0] != 0)),
            RegType::Bit(n) => return Ok(Value::Bool(words[0] >> n & 1 == 1)),
            RegType::U16 => Raw::Int(i128::from(words[0])),
            RegType::I16 => Raw::Int(i128::from(words[0] as i16)),
            _ => {
                let b = self.order.to_be_bytes(words);
                match self.ty {
                    RegType::U32 => Raw::Int(i128::from(u32::from_be_bytes(arr4(&b)))),
                    RegType::I32 => Raw::Int(i128::from(i32::from_be_bytes(arr4(&b)))),
                    RegType::F32 => Raw::Float(f64::from(f32::from_be_bytes(arr4(&b)))),
                    RegType::U64 => Raw::Int(i128::from(u64::from_be_bytes(arr8(&b)))),
                    RegType::I64 => Raw::Int(i128::from(i64::from_be_bytes(arr8(&b)))),
                    RegType::F64 => Raw::Float(f64::from_be_bytes(arr8(&b))),
                    _ => unreachable!("16-bit, boolean and string types are handled above"),
                }
            }
        };
        self.typed(raw)
    }

    /// Decodes a coil or discrete input.
    pub fn decode_bit(&self, bit: bool) -> Result<Value, DecodeError> {
        match self.signal_type {
            SignalType::Bool => Ok(Value::Bool(bit)),
            _ => self.typed(Raw::Int(i128::from(bit))),
        }
    }

    fn typed(&self, raw: Raw) -> Result<Value, DecodeError> {
        match &self.signal_type {
            SignalType::Enum(_) => {
                let n = match raw {
                    Raw::Int(i) => u64::try_from(i).unwrap_or(u64::MAX),
                    Raw::Float(f) => f as u64,
                };
                self.values
                    .as_ref()
                    .and_then(|v| v.get(n as usize))
                    .map(|s| Value::Str(s.clone()))
                    .ok_or(DecodeError::NoSuchEnumValue(n))
            }
            SignalType::Bool => Ok(Value::Bool(match raw {
                Raw::Int(i) => i != 0,
                Raw::Float(f) => f != 0.0,
            })),
            SignalType::Int if self.scale == 1.0 && self.offset == 0.0 => match raw {
                Raw::Int(i) => i64::try_from(i)
                    .map(Value::Int)
                    .map_err(|_| DecodeError::OutOfRange(i)),
                Raw::Float(f) if f.is_finite() => Ok(Value::Int(f.round() as i64)),
                Raw::Float(_) => Err(DecodeError::NonFinite),
            },
            SignalType::Int => {
                let v = self.scaled(raw);
                if v.is_finite() {
                    Ok(Value::Int(v.round() as i64))
                } else {
                    Err(DecodeError::NonFinite)
                }
            }
            SignalType::Float | SignalType::String => {
                let v = self.scaled(raw);
                if v.is_finite() {
                    Ok(Value::Float(v))
                } else {
                    Err(DecodeError::NonFinite)
                }
            }
        }
    }

    fn scaled(&self, raw: Raw) -> f64 {
        let x = match raw {
            Raw::Int(i) => i as f64,
            Raw::Float(f) => f,
        };
        if self.scale == 1.0 && self.offset == 0.0 {
            x
        } else {
            x * self.scale + self.offset
        }
    }

    /// Encodes a value for writing: the words of a register value, or a bit for a coil.
    /// A `Bit(n)` register needs the register's current word (read-modify-write).
    pub fn encode(&self, v: &Value, current_word: Option<u16>) -> Result<Encoded, EncodeError> {
        if self.table.is_bits() {
            return match v {
                Value::Bool(b) => Ok(Encoded::Bit(*b)),
                Value::Int(0) => Ok(Encoded::Bit(false)),
                Value::Int(1) => Ok(Encoded::Bit(true)),
                _ => Err(EncodeError::Type("true/false")),
            };
        }
        let as_bool = || match v {
            Value::Bool(b) => Ok(*b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            _ => Err(EncodeError::Type("true/false")),
        };
        match self.ty {
            RegType::Bool => return Ok(Encoded::Words(vec![u16::from(as_bool()?)])),
            RegType::Str { len, .. } => {
                let Value::Str(text) = v else {
                    return Err(EncodeError::Type("text"));
                };
                // Cut to the registers, padded with NULs.
                let mut be = text.as_bytes().to_vec();
                be.resize(usize::from(len) * 2, 0);
                return Ok(Encoded::Words(self.order.from_be_bytes(&be)));
            }
            RegType::Bit(n) => {
                let cur = current_word.ok_or(EncodeError::NeedsCurrent)?;
                let w = if as_bool()? {
                    cur | (1 << n)
                } else {
                    cur & !(1 << n)
                };
                return Ok(Encoded::Words(vec![w]));
            }
            _ => {}
        }
        // Number in engineering units → raw.
        let x = match (v, &self.signal_type) {
            (Value::Str(s), SignalType::Enum(_)) => {
                self.values
                    .as_ref()
                    .and_then(|vals| vals.iter().position(|x| x == s))
                    .ok_or(EncodeError::Type("one of the signal's values"))? as f64
            }
            (Value::Float(f), _) => *f,
            (Value::Int(i), _) => *i as f64,
            (Value::Bool(b), _) => f64::from(u8::from(*b)),
            (Value::Str(_), _) => return Err(EncodeError::Type("a number")),
        };
        let is_enum = matches!(self.signal_type, SignalType::Enum(_));
        let raw = if is_enum || (self.scale == 1.0 && self.offset == 0.0) {
            x
        } else {
            (x - self.offset) / self.scale
        };
        if !raw.is_finite() {
            return Err(EncodeError::Type("a finite number"));
        }
        // Integers written unscaled stay exact (f64 cannot hold every 64-bit integer).
        let exact = match v {
            Value::Int(i) if !is_enum && self.scale == 1.0 && self.offset == 0.0 => {
                Some(i128::from(*i))
            }
            _ => None,
        };
        let int = |lo: f64, hi: f64| -> Result<i128, EncodeError> {
            let r = exact.unwrap_or(raw.round() as i128);
            if (r as f64) < lo || (r as f64) > hi {
                Err(EncodeError::Range {
                    value: raw,
                    ty: self.ty.name(),
                })
            } else {
                Ok(r)
            }
        };
        let be: Vec<u8> = match self.ty {
            RegType::U16 => (int(0.0, 65535.0)? as u16).to_be_bytes().to_vec(),
            RegType::I16 => (int(-32768.0, 32767.0)? as i16).to_be_bytes().to_vec(),
            RegType::U32 => (int(0.0, 4_294_967_295.0)? as u32).to_be_bytes().to_vec(),
            RegType::I32 => (int(-2_147_483_648.0, 2_147_483_647.0)? as i32)
                .to_be_bytes()
                .to_vec(),
            RegType::U64 => (int(0.0, 18_446_744_073_709_551_615.0)? as u64)
                .to_be_bytes()
                .to_vec(),
            RegType::I64 => (int(-9.223_372_036_854_776e18, 9.223_372_036_854_776e18)? as i64)
                .to_be_bytes()
                .to_vec(),
            RegType::F32 => (raw as f32).to_be_bytes().to_vec(),
            RegType::F64 => raw.to_be_bytes().to_vec(),
            RegType::Bool | RegType::Bit(_) | RegType::Str { .. } => {
                unreachable!("handled above")
            }
        };
        let words = match self.ty {
            RegType::U16 | RegType::I16 => vec![u16::from_be_bytes([be[0], be[1]])],
            _ => self.order.from_be_bytes(&be),
        };
        Ok(Encoded::Words(words))
    }
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    Bit(bool),
    Words(Vec<u16>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("expected {0}")]
    Type(&'static str),
    #[error("{value} does not fit in {ty}")]
    Range { value: f64, ty: &'static str },
    #[error("a bit of a register needs the register's current value")]
    NeedsCurrent,
}

/// A string register's bytes as text: trimmed of NULs and spaces at both ends (`trim`), not
/// UTF-8 → U+FFFD, control characters (a NUL inside) → spaces.
fn decode_text(bytes: &[u8], trim: bool) -> String {
    let bytes = if trim {
        let pad = |b: &u8| *b == 0 || *b == b' ';
        let start = bytes.iter().position(|b| !pad(b)).unwrap_or(bytes.len());
        let end = bytes.iter().rposition(|b| !pad(b)).map_or(start, |e| e + 1);
        &bytes[start..end]
    } else {
        bytes
    };
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn arr4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn arr8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reg(ty: RegType, order: Order, signal_type: SignalType) -> Register {
        Register {
            signal: "x".into(),
            signal_idx: 0,
            table: Table::Holding,
            address: 0,
            ty,
            order,
            scale: 1.0,
            offset: 0.0,
            values: None,
            writable: true,
            min: None,
            max: None,
            signal_type,
            report: None,
        }
    }

    /// 0x41C8_0000 is 25.0f32; bytes A=41 B=C8 C=00 D=00.
    #[test]
    fn f32_in_all_four_orders() {
        let cases = [
            (Order::Abcd, [0x41C8, 0x0000]),
            (Order::Cdab, [0x0000, 0x41C8]),
            (Order::Badc, [0xC841, 0x0000]),
            (Order::Dcba, [0x0000, 0xC841]),
        ];
        for (order, words) in cases {
            let r = reg(RegType::F32, order, SignalType::Float);
            assert_eq!(
                r.decode_words(&words),
                Ok(Value::Float(25.0)),
                "{}",
                order.name()
            );
            assert_eq!(
                r.encode(&Value::Float(25.0), None),
                Ok(Encoded::Words(words.to_vec()))
            );
        }
    }

    #[test]
    fn integers_signed_and_unsigned() {
        let i16r = reg(RegType::I16, Order::Abcd, SignalType::Int);
        assert_eq!(i16r.decode_words(&[0xFFFE]), Ok(Value::Int(-2)));
        let u16r = reg(RegType::U16, Order::Abcd, SignalType::Int);
        assert_eq!(u16r.decode_words(&[0xFFFE]), Ok(Value::Int(65534)));
        // -100_000 = 0xFFFE7960
        let i32r = reg(RegType::I32, Order::Abcd, SignalType::Int);
        assert_eq!(
            i32r.decode_words(&[0xFFFE, 0x7960]),
            Ok(Value::Int(-100_000))
        );
        let i32w = reg(RegType::I32, Order::Cdab, SignalType::Int);
        assert_eq!(
            i32w.decode_words(&[0x7960, 0xFFFE]),
            Ok(Value::Int(-100_000))
        );
        let u32r = reg(RegType::U32, Order::Abcd, SignalType::Int);
        assert_eq!(
            u32r.decode_words(&[0xFFFE, 0x7960]),
            Ok(Value::Int(4_294_867_296))
        );
        // 0x0102030405060708 in each 64-bit order.
        let v = 0x0102_0304_0506_0708_i64;
        for (order, words) in [
            (Order::Abcd, [0x0102, 0x0304, 0x0506, 0x0708]),
            (Order::Cdab, [0x0708, 0x0506, 0x0304, 0x0102]),
            (Order::Badc, [0x0201, 0x0403, 0x0605, 0x0807]),
            (Order::Dcba, [0x0807, 0x0605, 0x0403, 0x0201]),
        ] {
            let r = reg(RegType::U64, order, SignalType::Int);
            assert_eq!(
                r.decode_words(&words),
                Ok(Value::Int(v)),
                "{}",
                order.name()
            );
            assert_eq!(
                r.encode(&Value::Int(v), None),
                Ok(Encoded::Words(words.to_vec()))
            );
        }
        let big = reg(RegType::U64, Order::Abcd, SignalType::Int);
        assert_eq!(
            big.decode_words(&[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Err(DecodeError::OutOfRange(i128::from(u64::MAX)))
        );
        let f64r = reg(RegType::F64, Order::Abcd, SignalType::Float);
        let w = 1234.5678f64.to_be_bytes();
        let words: Vec<u16> = w
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(f64r.decode_words(&words), Ok(Value::Float(1234.5678)));
    }

    /// "FW 2.1" in 4 registers, padded with NULs; hand-made words.
    #[test]
    fn strings_in_both_byte_orders_trimmed_or_not() {
        let text = |order, trim| {
            let mut r = reg(RegType::Str { len: 4, trim }, order, SignalType::String);
            r.writable = false;
            r
        };
        let abcd = [0x4657, 0x2032, 0x2E31, 0x0000]; // 'F''W' ' ''2' '.''1' NUL NUL
        assert_eq!(
            text(Order::Abcd, true).decode_words(&abcd),
            Ok(Value::Str("FW 2.1".into()))
        );
        let badc = [0x5746, 0x3220, 0x312E, 0x0000];
        assert_eq!(
            text(Order::Badc, true).decode_words(&badc),
            Ok(Value::Str("FW 2.1".into()))
        );
        // Leading and trailing spaces and NULs go; inside they stay (a NUL as a space).
        let padded = [0x2020, 0x4142, 0x0043, 0x2000]; // "  AB" NUL "C" " " NUL
        assert_eq!(
            text(Order::Abcd, true).decode_words(&padded),
            Ok(Value::Str("AB C".into()))
        );
        // Untrimmed: every byte, control characters (NUL) as spaces.
        assert_eq!(
            text(Order::Abcd, false).decode_words(&abcd),
            Ok(Value::Str("FW 2.1  ".into()))
        );
        // Not UTF-8: the replacement character, not an error.
        assert_eq!(
            text(Order::Abcd, true).decode_words(&[0x41FF, 0, 0, 0]),
            Ok(Value::Str("A\u{FFFD}".into()))
        );
        // All padding: the empty string.
        assert_eq!(
            text(Order::Abcd, true).decode_words(&[0x2000, 0, 0x0020, 0]),
            Ok(Value::Str(String::new()))
        );
        assert!(matches!(
            text(Order::Abcd, true).decode_words(&abcd[..3]),
            Err(DecodeError::Short { want: 4, got: 3 })
        ));
        // Encoding (the simulator serves strings): padded with NULs, cut to the registers.
        assert_eq!(
            text(Order::Badc, true).encode(&Value::Str("FW 2.1".into()), None),
            Ok(Encoded::Words(badc.to_vec()))
        );
        assert_eq!(
            text(Order::Abcd, true).encode(&Value::Str("FW 2.1.7-beta".into()), None),
            Ok(Encoded::Words(vec![0x4657, 0x2032, 0x2E31, 0x2E37]))
        );
        assert_eq!(
            RegType::parse_with("string", None, Some(4), true),
            Some(RegType::Str { len: 4, trim: true })
        );
        assert_eq!(RegType::parse_with("string", None, None, true), None);
        assert_eq!(RegType::Str { len: 4, trim: true }.width(), 4);
    }

    /// `int64`/`uint64` are `i64`/`u64`: four registers in the four word orders.
    #[test]
    fn int64_and_uint64_in_all_orders() {
        assert_eq!(RegType::parse("int64", None), Some(RegType::I64));
        assert_eq!(RegType::parse("uint64", None), Some(RegType::U64));
        // -2 = 0xFFFF_FFFF_FFFF_FFFE; 0x0001_0002_0003_0004 = 281483566841860.
        for (order, neg, pos) in [
            (Order::Abcd, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], [1, 2, 3, 4]),
            (Order::Cdab, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF], [4, 3, 2, 1]),
            (
                Order::Badc,
                [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
                [0x0100, 0x0200, 0x0300, 0x0400],
            ),
            (
                Order::Dcba,
                [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
                [0x0400, 0x0300, 0x0200, 0x0100],
            ),
        ] {
            let i = reg(
                RegType::parse("int64", None).unwrap(),
                order,
                SignalType::Int,
            );
            assert_eq!(i.decode_words(&neg), Ok(Value::Int(-2)), "{}", order.name());
            assert_eq!(i.decode_words(&pos), Ok(Value::Int(281_483_566_841_860)));
            let u = reg(
                RegType::parse("uint64", None).unwrap(),
                order,
                SignalType::Int,
            );
            assert_eq!(u.decode_words(&pos), Ok(Value::Int(281_483_566_841_860)));
            // 2^64 - 2 does not fit the gateway's 64-bit signed integers.
            assert_eq!(
                u.decode_words(&neg),
                Err(DecodeError::OutOfRange(i128::from(u64::MAX - 1)))
            );
            // As a float signal it does (rounded).
            let f = reg(RegType::U64, order, SignalType::Float);
            assert_eq!(f.decode_words(&neg), Ok(Value::Float(u64::MAX as f64)));
        }
    }

    #[test]
    fn scale_offset_bits_and_enums() {
        let mut p = reg(RegType::U16, Order::Abcd, SignalType::Float);
        p.scale = 0.001;
        assert_eq!(p.decode_words(&[420]), Ok(Value::Float(0.42)));
        assert_eq!(
            p.encode(&Value::Float(0.42), None),
            Ok(Encoded::Words(vec![420]))
        );
        let mut t = reg(RegType::I16, Order::Abcd, SignalType::Float);
        t.scale = 0.1;
        t.offset = -50.0;
        assert_eq!(
            t.decode_words(&[1055]),
            Ok(Value::Float(1055.0 * 0.1 - 50.0))
        );

        let b = reg(RegType::Bit(3), Order::Abcd, SignalType::Bool);
        assert_eq!(b.decode_words(&[0b1000]), Ok(Value::Bool(true)));
        assert_eq!(b.decode_words(&[0b0111]), Ok(Value::Bool(false)));
        assert_eq!(
            b.encode(&Value::Bool(true), Some(0b0001)),
            Ok(Encoded::Words(vec![0b1001]))
        );
        assert_eq!(
            b.encode(&Value::Bool(false), Some(0xFFFF)),
            Ok(Encoded::Words(vec![0xFFF7]))
        );
        assert_eq!(
            b.encode(&Value::Bool(true), None),
            Err(EncodeError::NeedsCurrent)
        );

        let mut e = reg(
            RegType::U16,
            Order::Abcd,
            SignalType::Enum(vec!["main".into(), "backup".into()]),
        );
        e.values = Some(vec!["main".into(), "backup".into()]);
        assert_eq!(e.decode_words(&[1]), Ok(Value::Str("backup".into())));
        assert_eq!(e.decode_words(&[7]), Err(DecodeError::NoSuchEnumValue(7)));
        assert_eq!(
            e.encode(&Value::Str("backup".into()), None),
            Ok(Encoded::Words(vec![1]))
        );

        let mut coil = reg(RegType::Bool, Order::Abcd, SignalType::Bool);
        coil.table = Table::Coil;
        assert_eq!(coil.decode_bit(true), Ok(Value::Bool(true)));
        assert_eq!(
            coil.encode(&Value::Bool(false), None),
            Ok(Encoded::Bit(false))
        );

        let nan = reg(RegType::F32, Order::Abcd, SignalType::Float);
        assert_eq!(nan.decode_words(&[0x7FC0, 0]), Err(DecodeError::NonFinite));
        let short = reg(RegType::F32, Order::Abcd, SignalType::Float);
        assert!(matches!(
            short.decode_words(&[1]),
            Err(DecodeError::Short { .. })
        ));
        let u16r = reg(RegType::U16, Order::Abcd, SignalType::Int);
        assert!(matches!(
            u16r.encode(&Value::Int(70000), None),
            Err(EncodeError::Range { .. })
        ));
    }

    proptest! {
        #[test]
        fn f32_encode_decode_round_trips(x in proptest::num::f32::NORMAL, o in 0usize..4) {
            let order = [Order::Abcd, Order::Cdab, Order::Badc, Order::Dcba][o];
            let r = reg(RegType::F32, order, SignalType::Float);
            let Encoded::Words(w) = r.encode(&Value::Float(f64::from(x)), None).unwrap() else {
                panic!("words")
            };
            prop_assert_eq!(r.decode_words(&w).unwrap(), Value::Float(f64::from(x)));
        }

        #[test]
        fn i32_encode_decode_round_trips(x in any::<i32>(), o in 0usize..4) {
            let order = [Order::Abcd, Order::Cdab, Order::Badc, Order::Dcba][o];
            let r = reg(RegType::I32, order, SignalType::Int);
            let Encoded::Words(w) = r.encode(&Value::Int(i64::from(x)), None).unwrap() else {
                panic!("words")
            };
            prop_assert_eq!(r.decode_words(&w).unwrap(), Value::Int(i64::from(x)));
        }
    }

    #[test]
    fn writes_are_checked_against_min_max_and_enum_values() {
        let mut r = reg(RegType::F32, Order::Abcd, SignalType::Float);
        r.min = Some(30.0);
        r.max = Some(95.0);
        assert_eq!(r.check_limits(&Value::Float(55.0)), Ok(()));
        assert_eq!(r.check_limits(&Value::Int(95)), Ok(()));
        let e = r.check_limits(&Value::Float(-1e30)).expect_err("below");
        assert!(e.contains("outside the allowed range 30 to 95"), "{e}");
        assert!(r.check_limits(&Value::Float(95.5)).is_err());
        r.min = None;
        assert!(r.check_limits(&Value::Float(-1e30)).is_ok());
        r.signal_type = SignalType::Enum(vec!["auto".into(), "manual".into()]);
        assert_eq!(r.check_limits(&Value::Str("auto".into())), Ok(()));
        let e = r
            .check_limits(&Value::Str("off".into()))
            .expect_err("not allowed");
        assert!(e.contains("allowed: auto, manual"), "{e}");
    }
}
