//! One record of the input log: a fact as the gateway accepted it.
//!
//! On disk a record is `[len: u32 LE][crc32: u32 LE][body: len bytes]`, the checksum over the
//! body; the body is
//!
//! ```text
//! lsn u64 | arrival_ms i64 | kind u8 | payload
//! reading (kind 1): site str16 | device str16 | ts_ms i64 | status u8 (0 none, 1 online,
//!                   2 offline) | n u16 | n × (signal str16 | tag u8 | value)
//!                   value: 1 float f64 · 2 int i64 · 3 bool u8 · 4 string str32
//! command (kind 2): JSON of `CommandFact` (operator input: rare, so readable beats small)
//! ```
//!
//! All integers little-endian; `str16`/`str32` are a byte length then UTF-8. Devices and
//! signals are written by name, not by inventory index, so a log outlives a config change: a
//! record of a device no longer configured is skipped (and counted) by whoever reads it.

use serde::{Deserialize, Serialize};

use crate::model::{DeviceIdx, Inventory, Reading, Status, Value};

/// Bytes before the body: length and checksum.
pub const HEADER: usize = 8;
/// The largest body accepted when reading (a corrupt length is a torn record, not an
/// allocation of gigabytes).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

const KIND_READING: u8 = 1;
const KIND_COMMAND: u8 = 2;

/// Operator input, as logged (by names, never by index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandFact {
    /// An acknowledgment (`on_site: false`) or on-site report of alarm `id`; `ts_ms` is the
    /// operator's own time when given.
    Alarm {
        on_site: bool,
        id: String,
        by: String,
        ts_ms: Option<i64>,
    },
    /// A maintenance window entered for one device.
    Maintenance {
        site: String,
        device: String,
        start_ms: i64,
        end_ms: i64,
        reason: String,
        by: String,
    },
    /// A window ended early (or cancelled).
    MaintenanceEnd { id: String },
}

/// A record's body, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub lsn: u64,
    /// The gateway clock when the fact was accepted: the engine's "now" for it, live and on
    /// replay alike.
    pub arrival_ms: i64,
    pub fact: Fact,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Reading {
        site: String,
        device: String,
        ts_ms: i64,
        status: Option<Status>,
        values: Vec<(String, Value)>,
    },
    Command(CommandFact),
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input log record: {0}")]
pub struct DecodeError(pub &'static str);

/// Appends the whole record (header and body) of a reading to `out` (`hash_at` gives the
/// content hash used to recognise a redelivered message).
pub fn encode_reading(
    out: &mut Vec<u8>,
    lsn: u64,
    arrival_ms: i64,
    inventory: &Inventory,
    r: &Reading,
) {
    let start = begin(out, lsn, arrival_ms, KIND_READING);
    let d = inventory.get(r.device);
    str16(out, &d.site);
    str16(out, &d.id);
    out.extend_from_slice(&r.ts_ms.to_le_bytes());
    out.push(match r.status {
        None => 0,
        Some(Status::Online) => 1,
        Some(Status::Offline) => 2,
    });
    let n = u16::try_from(r.values.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    for (i, v) in r.values.iter().take(usize::from(n)) {
        str16(out, &d.profile.signal(*i).name);
        match v {
            Value::Float(x) => {
                out.push(1);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Int(x) => {
                out.push(2);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Bool(x) => {
                out.push(3);
                out.push(u8::from(*x));
            }
            Value::Str(s) => {
                out.push(4);
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&s.as_bytes()[..len as usize]);
            }
        }
    }
    finish(out, start)
}

/// Appends a command record to `out` (`hash_at` gives its content hash).
pub fn encode_command(out: &mut Vec<u8>, lsn: u64, arrival_ms: i64, c: &CommandFact) {
    let start = begin(out, lsn, arrival_ms, KIND_COMMAND);
    // Serialising a plain struct of strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, c);
    finish(out, start)
}

fn begin(out: &mut Vec<u8>, lsn: u64, arrival_ms: i64, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&arrival_ms.to_le_bytes());
    out.push(kind);
    start
}

/// Fills in length and checksum.
fn finish(out: &mut [u8], start: usize) {
    let body = &out[start + HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The content hash of the record that starts at `start` in `buf` (see `content_hash`).
pub fn hash_at(buf: &[u8], start: usize) -> u64 {
    content_hash(buf.get(start + HEADER..).unwrap_or(&[]))
}

/// The content hash of a body: its kind and payload, not the lsn or the arrival time (which
/// differ for a redelivered copy). A 64-bit hash of good quality (foldhash's, fixed seed:
/// the same in every run, so the hashes of the log's tail are recomputed alike at start);
/// it is only asked for the records a broker may send again (MQTT QoS 1).
pub fn content_hash(body: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x6573_7461_7465_2d67)
        .hash_one(body.get(16..).unwrap_or(&[]))
}

fn str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// The lsn and arrival time of a body without decoding the rest.
pub fn peek(body: &[u8]) -> Result<(u64, i64), DecodeError> {
    let mut c = Cursor { b: body };
    Ok((c.u64()?, c.i64()?))
}

/// Decodes a body (checksum already verified).
pub fn decode(body: &[u8]) -> Result<Record, DecodeError> {
    let mut c = Cursor { b: body };
    let lsn = c.u64()?;
    let arrival_ms = c.i64()?;
    let fact = match c.u8()? {
        KIND_READING => {
            let site = c.str16()?;
            let device = c.str16()?;
            let ts_ms = c.i64()?;
            let status = c.status()?;
            let n = c.u16()?;
            let mut values = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let name = c.str16()?;
                values.push((name, c.value()?));
            }
            Fact::Reading {
                site,
                device,
                ts_ms,
                status,
                values,
            }
        }
        KIND_COMMAND => Fact::Command(
            serde_json::from_slice(c.b).map_err(|_| DecodeError("command is not valid JSON"))?,
        ),
        _ => return Err(DecodeError("unknown record kind")),
    };
    Ok(Record {
        lsn,
        arrival_ms,
        fact,
    })
}

/// What the store sink needs of a record, decoded without allocating (string values aside):
/// its lsn and arrival time, and whether it is a reading of a device `inventory` has — then
/// that reading is in `into` (its values replaced, resolved by name as `Fact::reading` does,
/// `ack` untouched). Errors exactly where `decode` does.
pub fn decode_reading_into(
    body: &[u8],
    inventory: &Inventory,
    into: &mut Reading,
) -> Result<(u64, i64, bool), DecodeError> {
    let mut c = Cursor { b: body };
    let lsn = c.u64()?;
    let arrival_ms = c.i64()?;
    if c.u8()? != KIND_READING {
        // Commands (rare) and unknown kinds: the full decoder's checks and errors.
        decode(body)?;
        return Ok((lsn, arrival_ms, false));
    }
    let site = c.str16_ref()?;
    let device = c.str16_ref()?;
    let ts_ms = c.i64()?;
    let status = c.status()?;
    let idx = inventory.lookup(site, device);
    let profile = idx.map(|i| &inventory.get(i).profile);
    into.values.clear();
    let n = c.u16()?;
    for _ in 0..n {
        let name = c.str16_ref()?;
        let v = c.value()?;
        if let Some(i) = profile.and_then(|p| p.signal_index(name)) {
            into.values.push((i, v));
        }
    }
    let Some(idx) = idx else {
        return Ok((lsn, arrival_ms, false));
    };
    into.device = idx;
    into.ts_ms = ts_ms;
    into.status = status;
    Ok((lsn, arrival_ms, true))
}

impl Fact {
    /// A reading record as the gateway's `Reading` (device and signals resolved by name in
    /// today's inventory); `None` for a command or a device no longer configured. Signals the
    /// profile no longer has are left out.
    pub fn reading(&self, inventory: &Inventory) -> Option<Reading> {
        let Fact::Reading {
            site,
            device,
            ts_ms,
            status,
            values,
        } = self
        else {
            return None;
        };
        let idx: DeviceIdx = inventory.lookup(site, device)?;
        let profile = &inventory.get(idx).profile;
        let values = values
            .iter()
            .filter_map(|(name, v)| Some((profile.signal_index(name)?, v.clone())))
            .collect();
        Some(Reading {
            device: idx,
            ts_ms: *ts_ms,
            values,
            status: *status,
            ack: crate::model::Ack::None,
        })
    }
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError("record ends early"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn utf8(&mut self, len: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError("text is not UTF-8"))
    }
    /// A reading's status byte (`encode_reading`).
    fn status(&mut self) -> Result<Option<Status>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Status::Online)),
            2 => Ok(Some(Status::Offline)),
            _ => Err(DecodeError("unknown status")),
        }
    }
    /// A signal value: its type byte, then the value (`encode_reading`).
    fn value(&mut self) -> Result<Value, DecodeError> {
        Ok(match self.u8()? {
            1 => Value::Float(f64::from_le_bytes(self.array()?)),
            2 => Value::Int(self.i64()?),
            3 => Value::Bool(self.u8()? != 0),
            4 => {
                let len = u32::from_le_bytes(self.array()?) as usize;
                Value::Str(self.utf8(len)?)
            }
            _ => return Err(DecodeError("unknown value type")),
        })
    }
    fn str16_ref(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError("text is not UTF-8"))
    }
    fn str16(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        self.utf8(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn signal(name: &str, ty: crate::model::SignalType) -> crate::model::Signal {
        crate::model::Signal {
            name: name.into(),
            ty,
            unit: None,
            label: None,
        }
    }

    pub(crate) fn inventory() -> Inventory {
        use crate::model::{Device, Profile, SignalType};
        let p = Arc::new(Profile::new(
            "heating".into(),
            "供暖".into(),
            Duration::from_secs(10),
            vec![
                signal("temp_c", SignalType::Float),
                signal("pump", SignalType::Bool),
                signal("mode", SignalType::String),
                signal("count", SignalType::Int),
            ],
        ));
        Inventory::new(vec![Device {
            id: "HT-1".into(),
            name: "一号换热站".into(),
            site: "jinxiu".into(),
            building: "1号楼".into(),
            category: "heating".into(),
            rules: p.rules.clone(),
            profile: p,
            interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            polled: false,
        }])
    }

    #[test]
    fn a_reading_round_trips_by_name_and_its_checksum_covers_the_body() {
        let inv = inventory();
        let r = Reading {
            device: 0,
            ts_ms: 1_790_000_000_123,
            values: vec![
                (0, Value::Float(-3.25)),
                (1, Value::Bool(true)),
                (2, Value::Str("手动 \"x\"".into())),
                (3, Value::Int(-7)),
            ],
            status: Some(Status::Offline),
            ack: crate::model::Ack::None,
        };
        let mut buf = vec![9, 9];
        encode_reading(&mut buf, 42, 1_790_000_000_500, &inv, &r);
        let h = hash_at(&buf, 2);
        let rec = &buf[2..];
        let len = u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize;
        assert_eq!(rec.len(), HEADER + len);
        let crc = u32::from_le_bytes(rec[4..8].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&rec[HEADER..]));
        let d = decode(&rec[HEADER..]).unwrap();
        assert_eq!((d.lsn, d.arrival_ms), (42, 1_790_000_000_500));
        assert_eq!(peek(&rec[HEADER..]).unwrap(), (42, 1_790_000_000_500));
        let back = d.fact.reading(&inv).unwrap();
        assert_eq!(
            (back.ts_ms, back.status, back.values),
            (r.ts_ms, r.status, r.values.clone())
        );
        // The same content at another lsn and arrival time hashes the same; other content not.
        let mut other = Vec::new();
        encode_reading(&mut other, 43, 7, &inv, &r);
        assert_eq!(hash_at(&other, 0), h);
        let at = other.len();
        let r2 = Reading {
            ts_ms: r.ts_ms + 1,
            values: r.values.clone(),
            device: 0,
            status: r.status,
            ack: crate::model::Ack::None,
        };
        encode_reading(&mut other, 44, 7, &inv, &r2);
        assert_ne!(hash_at(&other, at), h);
    }

    #[test]
    fn a_command_round_trips_and_garbage_is_an_error_not_a_panic() {
        let c = CommandFact::Maintenance {
            site: "jinxiu".into(),
            device: "HT-1".into(),
            start_ms: 1,
            end_ms: 2,
            reason: "年检".into(),
            by: "张伟".into(),
        };
        let mut buf = Vec::new();
        encode_command(&mut buf, 7, 8, &c);
        let d = decode(&buf[HEADER..]).unwrap();
        assert_eq!(d.fact, Fact::Command(c));
        for cut in 0..buf.len() - HEADER {
            let _ = decode(&buf[HEADER..HEADER + cut]);
        }
        assert!(decode(&[0; 17]).is_err());
    }
}
