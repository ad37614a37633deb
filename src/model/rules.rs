//! State and alarm rules of a category (DESIGN §3, §4), typed. They are written in the profiles
//! (`configs/profiles/<category>.toml`, sections `[state]`, `[[alarms]]`), checked and built by
//! `crate::config`, and applied by `crate::core::engine`.
//!
//! A **condition** compares one signal's latest value with a constant: `entrapment == true`,
//! `fault_code != 0`, `supply_temp_c < 45.0`, `mode == "stopped"`. A signal that has never been
//! reported makes every condition on it false. A condition marked `season` holds only inside
//! the site's heating season (`[heating]`), e.g. "pump stopped" is a fault only in season.

use std::fmt;

use crate::model::value::Value;

/// Comparison operator of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// Parses `<`, `<=`, `>`, `>=`, `==`, `!=`.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// True for `<`, `<=`, `>`, `>=` (the operators a hysteresis or clear value applies to).
    pub fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }
}

/// `signal op value`, on one device's latest values.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Index of the signal in the device's profile.
    pub signal: u16,
    /// The signal's name, for messages.
    pub signal_name: String,
    pub op: Op,
    /// Of the signal's type (config checks it); an enum signal compares as a string.
    pub value: Value,
    /// Holds only inside the heating season.
    pub season: bool,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.signal_name,
            self.op.as_str(),
            self.value
        )?;
        if self.season {
            write!(f, " (in season)")?;
        }
        Ok(())
    }
}

/// `a op b` for two values: numbers compare as numbers whatever their representation (an
/// int signal against a float constant); values of different kinds (a string against a
/// number) never satisfy it.
pub fn compare(a: &Value, op: Op, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Bool(x), Value::Bool(y)) => {
            return match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                _ => false,
            }
        }
        (Value::Str(x), Value::Str(y)) => {
            return match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                _ => false,
            }
        }
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
    }
}

/// How a device's latest values map to `fault` and `maintenance` (DESIGN §3 "not intact when").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateRules {
    /// The device is `fault` while any of these holds.
    pub fault: Vec<Condition>,
    /// The device is `maintenance` while any of these holds (elevator `mode == "inspection"`).
    pub maintenance: Vec<Condition>,
}

/// Alarm severity; orders critical first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    Major,
    Minor,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "critical" => Severity::Critical,
            "major" => Severity::Major,
            "minor" => Severity::Minor,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
    }
}

/// What raises an alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The condition holds (for the rule's `delay`); it clears per `clear`.
    Condition { when: Condition, clear: Clear },
    /// The device is `offline` (heartbeat timeout, failed polls or an `offline` status) for
    /// the rule's `delay`; it clears when the device is heard from again.
    Offline,
}

/// When an active condition alarm clears.
#[derive(Debug, Clone, PartialEq)]
pub enum Clear {
    /// As soon as the condition no longer holds.
    Immediate,
    /// Ordering operators only: the alarm stays active while `value op bound` holds, with
    /// `bound` = the rule's value moved by the hysteresis away from the alarm side
    /// (`< 45` with hysteresis 2 clears at ≥ 47), or the configured `clear_value`.
    Bound(Value),
}

/// One alarm rule of a profile, with per-device overrides already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRule {
    /// Unique within the profile (`entrapment`, `fault`, `low_supply_temp`); the `rule` tag.
    pub name: String,
    pub trigger: Trigger,
    pub severity: Severity,
    /// Response class (`fire`, `entrapment`, `urgent`, `minor`, ...): sets the targets.
    pub class: String,
    /// Chinese message template; `{name}`, `{id}`, `{building}`, `{value}`, `{signal}` are
    /// replaced when the alarm is raised.
    pub message: String,
    /// The condition must hold this long before the alarm is raised (milliseconds).
    pub delay_ms: i64,
    /// A device signal that reports someone on site (elevator switched to inspection).
    pub on_site: Option<Condition>,
}

/// Response targets of a class (DESIGN §4 "Default targets").
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseClass {
    pub name: String,
    /// Acknowledged within this long counts as timely (response timeliness).
    pub ack_target_ms: i64,
    /// Someone on site within this long (arrival timeliness, 到场及时率).
    pub on_site_target_ms: Option<i64>,
    /// Cleared (restored) within this long (repair timeliness, 修复及时率 / 零修急修及时率).
    pub repair_target_ms: Option<i64>,
    /// Where the default comes from, for the README and `check-config --verbose`.
    pub source: String,
}

/// The rules of one category profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub state: StateRules,
    pub alarms: Vec<AlarmRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_mixed_numbers_and_kinds() {
        assert!(compare(&Value::Int(3), Op::Lt, &Value::Float(3.5)));
        assert!(compare(&Value::Float(18.0), Op::Ge, &Value::Int(18)));
        assert!(!compare(&Value::Float(17.999), Op::Ge, &Value::Int(18)));
        assert!(compare(&Value::Int(0), Op::Ne, &Value::Int(2)));
        assert!(!compare(&Value::Int(0), Op::Ne, &Value::Int(0)));
        assert!(compare(&Value::Bool(true), Op::Eq, &Value::Bool(true)));
        assert!(!compare(&Value::Bool(true), Op::Lt, &Value::Bool(false)));
        assert!(compare(
            &Value::Str("stopped".into()),
            Op::Eq,
            &Value::Str("stopped".into())
        ));
        assert!(!compare(&Value::Str("1".into()), Op::Eq, &Value::Int(1)));
        assert!(!compare(
            &Value::Float(f64::NAN),
            Op::Ne,
            &Value::Float(1.0)
        ));
    }
}
