//! Report by exception (issue 17): a signal with `deadband`/`max_silence` in its register map
//! is not written to the store again while its value stays within the deadband of the last
//! value written, until `max_silence` after that write. Keyed per device and signal; applied by
//! the store writer's `TelemetryEncoder` only, so the engine still takes every value (states,
//! alarms and figures do not depend on it). In memory: after a restart the first value of each
//! signal is written.

use std::collections::HashMap;

use crate::model::{DeviceIdx, Value};
use crate::source::modbus::map::Exception;
use crate::source::modbus::ModbusSettings;

/// The rules and the last value written per device and signal.
#[derive(Debug, Default)]
pub struct ExceptionFilter {
    rules: HashMap<(DeviceIdx, u16), Exception>,
    /// The last value written and its event time.
    last: HashMap<(DeviceIdx, u16), (Value, i64)>,
}

impl ExceptionFilter {
    /// The rules of every polled device's register map.
    pub fn from_modbus(modbus: &ModbusSettings) -> Self {
        let mut rules = HashMap::new();
        for (device, binding) in &modbus.bindings {
            for reg in &binding.model.registers {
                if let Some(x) = reg.report {
                    rules.insert((*device, reg.signal_idx), x);
                }
            }
        }
        ExceptionFilter {
            rules,
            last: HashMap::new(),
        }
    }

    /// Whether any signal has a rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `value` of `signal` at `ts_ms` goes to the store (and becomes the value the next
    /// ones are compared with).
    pub fn keep(&mut self, device: DeviceIdx, signal: u16, value: &Value, ts_ms: i64) -> bool {
        let Some(rule) = self.rules.get(&(device, signal)) else {
            return true;
        };
        let keep = match self.last.get(&(device, signal)) {
            None => true,
            Some((last, last_ts)) => {
                ts_ms.saturating_sub(*last_ts) >= rule.max_silence_ms
                    || ts_ms < *last_ts
                    || moved(last, value, rule.deadband)
            }
        };
        if keep {
            self.last.insert((device, signal), (value.clone(), ts_ms));
        }
        keep
    }
}

/// Whether `now` differs from `last` by more than `deadband` (numbers) or at all (the rest).
fn moved(last: &Value, now: &Value, deadband: f64) -> bool {
    let num = |v: &Value| match v {
        Value::Float(x) => Some(*x),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    };
    match (num(last), num(now)) {
        (Some(a), Some(b)) => (b - a).abs() > deadband,
        _ => last != now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(deadband: f64, max_silence_ms: i64) -> ExceptionFilter {
        ExceptionFilter {
            rules: HashMap::from([(
                (3, 1),
                Exception {
                    deadband,
                    max_silence_ms,
                },
            )]),
            last: HashMap::new(),
        }
    }

    #[test]
    fn within_the_deadband_only_every_max_silence() {
        let mut f = filter(0.5, 60_000);
        let mut kept = Vec::new();
        // (ts in s, value): the first is written; a move of no more than 0.5 from the last
        // WRITTEN value is not (20.25, then 20.5: no creeping), 20.75 is; 60 s after the last
        // write the same value is written again.
        for (t, v) in [
            (0, 20.0),
            (10, 20.25),
            (20, 20.5),
            (30, 20.75),
            (40, 20.5),
            (89, 20.5),
            (90, 20.5),
            (100, 19.75),
        ] {
            if f.keep(3, 1, &Value::Float(v), t * 1000) {
                kept.push(t);
            }
        }
        assert_eq!(kept, vec![0, 30, 90, 100]);
        // Another signal of the device and the same signal of another device: no rule.
        assert!(f.keep(3, 2, &Value::Float(20.1), 1_000));
        assert!(f.keep(3, 2, &Value::Float(20.1), 1_001));
        assert!(f.keep(4, 1, &Value::Float(20.1), 1_000));
        assert!(f.keep(4, 1, &Value::Float(20.1), 1_001));
    }

    #[test]
    fn integers_strings_and_time_going_back() {
        let mut f = filter(2.0, 10_000);
        assert!(f.keep(3, 1, &Value::Int(100), 0));
        assert!(!f.keep(3, 1, &Value::Int(102), 1_000));
        assert!(f.keep(3, 1, &Value::Int(103), 2_000));
        // Older than the last written (a backlog from another source): written.
        assert!(f.keep(3, 1, &Value::Int(103), 1_500));

        let mut s = filter(0.0, 10_000);
        assert!(s.keep(3, 1, &Value::Str("FW 2.1".into()), 0));
        assert!(!s.keep(3, 1, &Value::Str("FW 2.1".into()), 5_000));
        assert!(s.keep(3, 1, &Value::Str("FW 2.2".into()), 6_000));
        assert!(!s.keep(3, 1, &Value::Str("FW 2.2".into()), 15_999));
        assert!(s.keep(3, 1, &Value::Str("FW 2.2".into()), 16_000));
        assert!(s.keep(3, 1, &Value::Bool(true), 16_001));
    }
}
