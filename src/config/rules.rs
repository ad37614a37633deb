//! State and alarm rules: a profile's `[state]` and `[[alarms]]` and a device's
//! `[devices.alarms.<rule>]` overrides, checked against the profile's signals and the response
//! classes and built into `crate::model::rules::Rules`. Every mistake is recorded with its key
//! (`alarms[1].op`, `state.fault[0].value`, `devices[3].alarms.held_open.delay`) and what
//! would be valid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::check::is_identifier;
use super::raw::{RawAlarm, RawAlarmOverride, RawCondition, RawState, RawValue};
use super::Errors;
use crate::model::rules::{
    AlarmRule, Clear, Condition, Op, ResponseClass, Rules, Severity, StateRules, Trigger,
};
use crate::model::{Profile, Signal, SignalType, Value};

/// Placeholders a message may carry.
const PLACEHOLDERS: &[&str] = &["name", "id", "building", "value", "signal"];

/// The class of a rule that names none: `urgent` for critical and major, `minor` for minor.
pub(crate) fn default_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::Major => "urgent",
        Severity::Minor => "minor",
    }
}

/// Builds a profile's rules; mistakes go to `errs` (the profile's file).
pub(super) fn build(
    p: &Profile,
    state: &RawState,
    alarms: &[RawAlarm],
    classes: &HashMap<String, ResponseClass>,
    errs: &mut Errors,
) -> Rules {
    let conditions = |list: &[RawCondition], what: &str, errs: &mut Errors| -> Vec<Condition> {
        list.iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let key = format!("state.{what}[{i}]");
                condition(p, CondSpec::of(c), &key, errs)
            })
            .collect()
    };
    let state = StateRules {
        fault: conditions(&state.fault, "fault", errs),
        maintenance: conditions(&state.maintenance, "maintenance", errs),
    };
    let mut rules: Vec<AlarmRule> = Vec::new();
    for (i, a) in alarms.iter().enumerate() {
        let key = format!("alarms[{i}]");
        let duplicate =
            rules.iter().any(|r| r.name == a.name) || alarms[..i].iter().any(|o| o.name == a.name);
        if duplicate {
            errs.push(
                format!("{key}.name"),
                format!(
                    "`{}` is used by another rule of this profile; rule names must be unique",
                    a.name
                ),
            );
        }
        if let Some(r) = alarm(p, a, &key, classes, errs) {
            rules.push(r);
        }
    }
    Rules {
        state,
        alarms: rules,
    }
}

/// The parts of a condition, wherever they are written (a `[state]` entry, an alarm rule's
/// own keys, `on_site`).
#[derive(Clone, Copy)]
struct CondSpec<'a> {
    signal: Option<&'a str>,
    op: Option<&'a str>,
    value: Option<&'a RawValue>,
    season: bool,
}

impl<'a> CondSpec<'a> {
    fn of(c: &'a RawCondition) -> Self {
        CondSpec {
            signal: c.signal.as_deref(),
            op: c.op.as_deref(),
            value: c.value.as_ref(),
            season: c.season,
        }
    }
}

/// `key` is the condition's own path (`state.fault[0]`, `alarms[2]`, `alarms[2].on_site`).
fn condition(p: &Profile, c: CondSpec<'_>, key: &str, errs: &mut Errors) -> Option<Condition> {
    let k = |field: &str| format!("{key}.{field}");
    let signal = match c.signal {
        None | Some("") => {
            errs.push(k("signal"), format!("is missing; {}", signal_list(p)));
            None
        }
        Some(name) => match p.signal_index(name) {
            Some(i) => Some(i),
            None => {
                errs.push(
                    k("signal"),
                    format!("unknown signal `{name}`; {}", signal_list(p)),
                );
                None
            }
        },
    };
    let sig = signal.map(|i| p.signal(i));
    let valid_ops = |sig: Option<&Signal>| -> String {
        match sig {
            Some(s) => format!(
                "valid for {} signal `{}`: {}",
                s.ty.name(),
                s.name,
                ops_for(&s.ty)
                    .iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "valid: <, <=, >, >= (int and float signals), ==, !=".to_owned(),
        }
    };
    let op = match c.op {
        None => {
            errs.push(k("op"), format!("is missing; {}", valid_ops(sig)));
            None
        }
        Some(s) => match Op::parse(s) {
            None => {
                errs.push(
                    k("op"),
                    format!("`{s}` is not an operator; {}", valid_ops(sig)),
                );
                None
            }
            Some(op) => match sig {
                Some(sg) if !ops_for(&sg.ty).contains(&op) => {
                    errs.push(
                        k("op"),
                        format!(
                            "`{s}` does not apply to {} signal `{}`; {}",
                            sg.ty.name(),
                            sg.name,
                            valid_ops(sig)
                        ),
                    );
                    None
                }
                _ => Some(op),
            },
        },
    };
    let value = match (c.value, sig) {
        (None, _) => {
            errs.push(
                k("value"),
                match sig {
                    Some(s) => format!("is missing; {}", expected(s)),
                    None => "is missing; give the constant to compare with".to_owned(),
                },
            );
            None
        }
        (Some(_), None) => None,
        (Some(v), Some(s)) => match typed_value(s, v) {
            Ok(v) => Some(v),
            Err(e) => {
                errs.push(k("value"), e);
                None
            }
        },
    };
    Some(Condition {
        signal: signal?,
        signal_name: sig?.name.clone(),
        op: op?,
        value: value?,
        season: c.season,
    })
}

fn alarm(
    p: &Profile,
    a: &RawAlarm,
    key: &str,
    classes: &HashMap<String, ResponseClass>,
    errs: &mut Errors,
) -> Option<AlarmRule> {
    let k = |field: &str| format!("{key}.{field}");
    let before = errs.len();
    if !is_identifier(&a.name) {
        errs.push(
            k("name"),
            if a.name.is_empty() {
                "is missing; name the rule (lower-case letters, digits and `_`, e.g. `low_supply_temp`)".to_owned()
            } else {
                format!(
                    "`{}` is not a valid rule name; use lower-case letters, digits and `_`, e.g. `low_supply_temp`",
                    a.name
                )
            },
        );
    }
    let offline = match a.ty.as_deref() {
        None | Some("condition") => false,
        Some("offline") => true,
        Some(other) => {
            errs.push(
                k("type"),
                format!("`{other}` is not a rule type; valid: offline (or leave `type` out for a rule on a signal: signal, op, value)"),
            );
            false
        }
    };
    let severity = match a.severity.as_deref() {
        None => {
            errs.push(k("severity"), "is missing; valid: critical, major, minor");
            None
        }
        Some(s) => {
            let sev = Severity::parse(s);
            if sev.is_none() {
                errs.push(
                    k("severity"),
                    format!("`{s}` is not a severity; valid: critical, major, minor"),
                );
            }
            sev
        }
    };
    let class = match (&a.class, severity) {
        (Some(c), _) => {
            check_class(c, classes, &k("class"), errs);
            Some(c.clone())
        }
        (None, Some(sev)) => Some(default_class(sev).to_owned()),
        (None, None) => None,
    };
    let message = match a.message.as_deref() {
        None => {
            errs.push(
                k("message"),
                "is missing; write the message operators see, e.g. \"{name}困人，请立即救援\" (placeholders: {name} {id} {building} {value} {signal})",
            );
            None
        }
        Some(m) => {
            check_message(m, offline, &k("message"), errs);
            Some(m.to_owned())
        }
    };
    let delay_ms = a
        .delay
        .as_deref()
        .map(|d| errs.duration(&k("delay"), d).as_millis() as i64)
        .unwrap_or(0);
    let on_site = a
        .on_site
        .as_ref()
        .and_then(|c| condition(p, CondSpec::of(c), &k("on_site"), errs));
    let trigger = if offline {
        for (field, set) in [
            ("signal", a.signal.is_some()),
            ("op", a.op.is_some()),
            ("value", a.value.is_some()),
            ("hysteresis", a.hysteresis.is_some()),
            ("clear_value", a.clear_value.is_some()),
            ("season", a.season),
        ] {
            if set {
                errs.push(
                    k(field),
                    "does not apply to an offline rule (`type = \"offline\"`): it raises while the device is offline for `delay` and clears when it is heard from again",
                );
            }
        }
        Some(Trigger::Offline)
    } else {
        let spec = CondSpec {
            signal: a.signal.as_deref(),
            op: a.op.as_deref(),
            value: a.value.as_ref(),
            season: a.season,
        };
        condition(p, spec, key, errs).map(|when| {
            let sig = p.signal(when.signal);
            let clear = clear_bound(
                sig,
                when.op,
                &when.value,
                a.hysteresis.as_ref(),
                a.clear_value.as_ref(),
                key,
                errs,
            );
            Trigger::Condition { when, clear }
        })
    };
    if errs.len() > before {
        return None;
    }
    Some(AlarmRule {
        name: a.name.clone(),
        trigger: trigger?,
        severity: severity?,
        class: class?,
        message: message?,
        delay_ms,
        on_site,
    })
}

/// Applies `[devices.alarms.<rule>]` to a copy of the profile's rules; without overrides the
/// device shares the profile's `Arc`. `key` is `devices[3].alarms`.
pub(super) fn apply_overrides(
    p: &Profile,
    overrides: &BTreeMap<String, RawAlarmOverride>,
    key: &str,
    classes: &HashMap<String, ResponseClass>,
    errs: &mut Errors,
) -> Arc<Rules> {
    if overrides.is_empty() {
        return p.rules.clone();
    }
    let mut rules = (*p.rules).clone();
    let mut disabled = Vec::new();
    for (name, o) in overrides {
        let k = |field: &str| format!("{key}.{name}.{field}");
        let Some(rule) = rules.alarms.iter_mut().find(|r| &r.name == name) else {
            let names: Vec<&str> = p.rules.alarms.iter().map(|r| r.name.as_str()).collect();
            errs.push(
                format!("{key}.{name}"),
                format!(
                    "unknown alarm rule `{name}`; the rules of profile `{}`: {}",
                    p.category,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            );
            continue;
        };
        if o.enabled == Some(false) {
            disabled.push(name.clone());
        }
        if let Some(s) = &o.severity {
            match Severity::parse(s) {
                Some(sev) => {
                    // A class that followed the severity keeps following it.
                    if o.class.is_none() && rule.class == default_class(rule.severity) {
                        rule.class = default_class(sev).to_owned();
                    }
                    rule.severity = sev;
                }
                None => errs.push(
                    k("severity"),
                    format!("`{s}` is not a severity; valid: critical, major, minor"),
                ),
            }
        }
        if let Some(c) = &o.class {
            check_class(c, classes, &k("class"), errs);
            rule.class = c.clone();
        }
        if let Some(d) = &o.delay {
            rule.delay_ms = errs.duration(&k("delay"), d).as_millis() as i64;
        }
        if let Some(m) = &o.message {
            check_message(
                m,
                matches!(rule.trigger, Trigger::Offline),
                &k("message"),
                errs,
            );
            rule.message = m.clone();
        }
        let touches_condition =
            o.value.is_some() || o.hysteresis.is_some() || o.clear_value.is_some();
        match &mut rule.trigger {
            Trigger::Offline if touches_condition => {
                for (field, set) in [
                    ("value", o.value.is_some()),
                    ("hysteresis", o.hysteresis.is_some()),
                    ("clear_value", o.clear_value.is_some()),
                ] {
                    if set {
                        errs.push(
                            k(field),
                            format!("does not apply to `{name}`, an offline rule; it takes enabled, severity, class, delay, message"),
                        );
                    }
                }
            }
            Trigger::Offline => {}
            Trigger::Condition { when, clear } => {
                let sig = p.signal(when.signal);
                let old = when.value.clone();
                if let Some(v) = &o.value {
                    match typed_value(sig, v) {
                        Ok(v) => when.value = v,
                        Err(e) => errs.push(k("value"), e),
                    }
                }
                if o.hysteresis.is_some() || o.clear_value.is_some() {
                    *clear = clear_bound(
                        sig,
                        when.op,
                        &when.value,
                        o.hysteresis.as_ref(),
                        o.clear_value.as_ref(),
                        &format!("{key}.{name}"),
                        errs,
                    );
                } else if let Clear::Bound(b) = clear {
                    // A new value keeps the rule's hysteresis (the distance to the bound).
                    *b = shifted(b, &old, &when.value);
                }
            }
        }
    }
    rules.alarms.retain(|r| !disabled.contains(&r.name));
    Arc::new(rules)
}

/// `bound − old + new`, in the bound's type.
fn shifted(bound: &Value, old: &Value, new: &Value) -> Value {
    match (bound, old, new) {
        (Value::Int(b), Value::Int(o), Value::Int(n)) => Value::Int(b - o + n),
        _ => {
            let f = |v: &Value| match v {
                Value::Int(i) => *i as f64,
                Value::Float(x) => *x,
                _ => 0.0,
            };
            Value::Float(tidy(f(bound) - f(old) + f(new)))
        }
    }
}

/// Removes binary noise from a sum of decimals (0.15 + 0.02 = 0.16999999999999998 → 0.17), so
/// that bounds print as written.
fn tidy(x: f64) -> f64 {
    if x.abs() < 1e6 {
        (x * 1e9).round() / 1e9
    } else {
        x
    }
}

/// The clear bound of a condition rule from `hysteresis` or `clear_value` (`key` is the rule's
/// path: `alarms[2]` or `devices[3].alarms.low_supply_temp`).
fn clear_bound(
    sig: &Signal,
    op: Op,
    value: &Value,
    hysteresis: Option<&RawValue>,
    clear_value: Option<&RawValue>,
    key: &str,
    errs: &mut Errors,
) -> Clear {
    let (kh, kc) = (format!("{key}.hysteresis"), format!("{key}.clear_value"));
    let (field, raw) = match (hysteresis, clear_value) {
        (None, None) => return Clear::Immediate,
        (Some(_), Some(_)) => {
            errs.push(
                kc,
                "is set together with `hysteresis`; give one of them: hysteresis (how far the value must move back) or clear_value (the bound itself)",
            );
            return Clear::Immediate;
        }
        (Some(h), None) => (kh, h),
        (None, Some(c)) => (kc, c),
    };
    let is_hysteresis = hysteresis.is_some();
    if !op.is_ordering() {
        errs.push(
            field,
            format!(
                "applies to ordering operators only (<, <=, >, >=); `{} {} {value}` clears as soon as it no longer holds",
                sig.name,
                op.as_str()
            ),
        );
        return Clear::Immediate;
    }
    let int = matches!(sig.ty, SignalType::Int);
    let v = match value {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => return Clear::Immediate,
    };
    let Some(x) = raw.as_f64().filter(|x| x.is_finite()) else {
        errs.push(
            field,
            format!(
                "`{raw}` is {}; write a number such as {}",
                raw.kind(),
                if is_hysteresis { "2.0" } else { "47.0" }
            ),
        );
        return Clear::Immediate;
    };
    if int && x.fract() != 0.0 {
        errs.push(
            field,
            format!(
                "`{raw}` is not a whole number; `{}` is an int signal",
                sig.name
            ),
        );
        return Clear::Immediate;
    }
    let below = matches!(op, Op::Lt | Op::Le);
    let bound = if is_hysteresis {
        if x < 0.0 {
            errs.push(
                field,
                format!("`{raw}` is negative; a hysteresis is a distance ≥ 0 (0 = clear as soon as the condition no longer holds)"),
            );
            return Clear::Immediate;
        }
        if below {
            v + x
        } else {
            v - x
        }
    } else {
        if (below && x < v) || (!below && x > v) {
            errs.push(
                field,
                format!(
                    "`{raw}` is on the alarm side of `{} {} {value}`; a clear value must be {} {value}",
                    sig.name,
                    op.as_str(),
                    if below { "≥" } else { "≤" }
                ),
            );
            return Clear::Immediate;
        }
        x
    };
    Clear::Bound(if int {
        Value::Int(bound.round() as i64)
    } else {
        Value::Float(tidy(bound))
    })
}

fn check_class(
    class: &str,
    classes: &HashMap<String, ResponseClass>,
    key: &str,
    errs: &mut Errors,
) {
    if !classes.contains_key(class) {
        errs.push(
            key,
            format!(
                "unknown response class `{class}`; defined: {} (add one under [alarms.classes.{}] in the gateway's TOML)",
                class_names(classes),
                if is_identifier(class) { class } else { "<name>" }
            ),
        );
    }
}

/// The class names, sorted, for messages.
pub(super) fn class_names(classes: &HashMap<String, ResponseClass>) -> String {
    let mut names: Vec<&str> = classes.keys().map(String::as_str).collect();
    names.sort_unstable();
    names.join(", ")
}

/// Checks `{placeholder}`s: only the known ones, and `{value}`/`{signal}` only on signals.
fn check_message(m: &str, offline: bool, key: &str, errs: &mut Errors) {
    if m.trim().is_empty() {
        errs.push(
            key,
            "is empty; write the message operators see, e.g. \"{name}离线\"",
        );
        return;
    }
    let mut rest = m;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            errs.push(
                key,
                format!("`{m}` has a `{{` without `}}`; placeholders: {{name}} {{id}} {{building}} {{value}} {{signal}}"),
            );
            return;
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            errs.push(
                key,
                format!("`{{{name}}}` is not a placeholder; valid: {{name}} {{id}} {{building}} {{value}} {{signal}}"),
            );
        } else if offline && matches!(name, "value" | "signal") {
            errs.push(
                key,
                format!("`{{{name}}}` has nothing to show in an offline rule; valid there: {{name}} {{id}} {{building}}"),
            );
        }
        rest = &after[close + 1..];
    }
}

/// The operators a signal type allows: ordering ones only for numbers.
fn ops_for(ty: &SignalType) -> &'static [Op] {
    match ty {
        SignalType::Int | SignalType::Float => &[Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq, Op::Ne],
        _ => &[Op::Eq, Op::Ne],
    }
}

/// What a constant for `s` looks like.
fn expected(s: &Signal) -> String {
    match &s.ty {
        SignalType::Float => "write a number such as 40.0".to_owned(),
        SignalType::Int => "write an integer such as 0".to_owned(),
        SignalType::Bool => "write true or false".to_owned(),
        SignalType::String => "write a quoted string".to_owned(),
        SignalType::Enum(v) => format!("write one of: {}", v.join(", ")),
    }
}

/// A rule constant typed by its signal (an integer is accepted for a float signal).
fn typed_value(s: &Signal, v: &RawValue) -> Result<Value, String> {
    match (&s.ty, v) {
        (SignalType::Float, RawValue::Float(x)) if x.is_finite() => Ok(Value::Float(*x)),
        (SignalType::Float, RawValue::Int(i)) => Ok(Value::Float(*i as f64)),
        (SignalType::Int, RawValue::Int(i)) => Ok(Value::Int(*i)),
        (SignalType::Bool, RawValue::Bool(b)) => Ok(Value::Bool(*b)),
        (SignalType::String, RawValue::Str(x)) => Ok(Value::Str(x.clone())),
        (SignalType::Enum(vals), RawValue::Str(x)) if vals.contains(x) => Ok(Value::Str(x.clone())),
        (SignalType::Enum(vals), RawValue::Str(x)) => Err(format!(
            "`{x}` is not a value of enum signal `{}`; valid: {}",
            s.name,
            vals.join(", ")
        )),
        (SignalType::Float, RawValue::Float(_)) => {
            Err(format!("`{v}` is not a finite number; {}", expected(s)))
        }
        _ => Err(format!(
            "`{v}` is {}, but `{}` is {} {} signal; {}",
            v.kind(),
            s.name,
            if matches!(s.ty, SignalType::Int | SignalType::Enum(_)) {
                "an"
            } else {
                "a"
            },
            s.ty.name(),
            expected(s)
        )),
    }
}

/// `signals of elevator: mode (enum), fault_code (int), ...`.
fn signal_list(p: &Profile) -> String {
    let list: Vec<String> = p
        .signals
        .iter()
        .map(|s| format!("{} ({})", s.name, s.ty.name()))
        .collect();
    format!("signals of `{}`: {}", p.category, list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alarms::default_classes;

    fn builtin() -> BTreeMap<String, Arc<Profile>> {
        let mut errs = Errors::new("test");
        let p = super::super::profiles::load(None, &default_classes(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        p
    }

    fn rule<'a>(p: &'a Profile, name: &str) -> &'a AlarmRule {
        p.rules
            .alarms
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no rule {name} in {}", p.category))
    }

    fn cond(r: &AlarmRule) -> (&Condition, &Clear) {
        match &r.trigger {
            Trigger::Condition { when, clear } => (when, clear),
            Trigger::Offline => panic!("{} is an offline rule", r.name),
        }
    }

    #[test]
    fn builtin_profiles_carry_the_design_rules() {
        let p = builtin();
        let names = |cat: &str| -> Vec<&str> {
            p[cat]
                .rules
                .alarms
                .iter()
                .map(|r| r.name.as_str())
                .collect()
        };
        assert_eq!(
            names("access_gate"),
            ["door_forced", "held_open", "fault", "offline"]
        );
        assert_eq!(names("elevator"), ["entrapment", "fault", "offline"]);
        assert_eq!(
            names("heating_loop"),
            [
                "pump_stopped",
                "low_supply_temp",
                "pressure_low",
                "pressure_high",
                "fault",
                "offline"
            ]
        );
        assert_eq!(names("indoor_sensor"), ["low_indoor_temp", "offline"]);
        assert_eq!(
            names("fire_equipment"),
            [
                "fire_alarm",
                "fault",
                "pump_manual",
                "pressure_low",
                "backup_power",
                "offline"
            ]
        );

        // Elevator entrapment: critical, class entrapment, on site when switched to inspection.
        let e = &p["elevator"];
        let r = rule(e, "entrapment");
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.class, "entrapment");
        assert_eq!(r.delay_ms, 0);
        let (when, clear) = cond(r);
        assert_eq!(when.to_string(), "entrapment == true");
        assert_eq!(clear, &Clear::Immediate);
        let on_site = r.on_site.as_ref().expect("on_site");
        assert_eq!(on_site.signal, e.signal_index("mode").unwrap());
        assert_eq!(
            (on_site.op, &on_site.value),
            (Op::Eq, &Value::Str("inspection".into()))
        );
        assert_eq!(rule(e, "fault").class, "urgent");
        let off = rule(e, "offline");
        assert_eq!(
            (&off.trigger, off.severity, off.delay_ms),
            (&Trigger::Offline, Severity::Major, 120_000)
        );
        let state: Vec<String> = e.rules.state.fault.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            state,
            [
                "fault_code != 0",
                "entrapment == true",
                "mode == \"stopped\""
            ]
        );
        assert_eq!(
            e.rules.state.maintenance[0].to_string(),
            "mode == \"inspection\""
        );

        // Heating: low supply temperature clears at 42.0 and holds only in season.
        let h = &p["heating_loop"];
        let r = rule(h, "low_supply_temp");
        let (when, clear) = cond(r);
        assert!(when.season);
        assert_eq!((when.op, &when.value), (Op::Lt, &Value::Float(40.0)));
        assert_eq!(clear, &Clear::Bound(Value::Float(42.0)));
        assert_eq!(
            (r.severity, r.class.as_str(), r.delay_ms),
            (Severity::Major, "urgent", 600_000)
        );
        assert_eq!(
            cond(rule(h, "pressure_low")).1,
            &Clear::Bound(Value::Float(0.17))
        );
        assert_eq!(
            cond(rule(h, "pressure_high")).1,
            &Clear::Bound(Value::Float(0.95))
        );
        assert_eq!(h.rules.state.fault.len(), 5);
        assert!(h.rules.state.fault.iter().all(|c| c.season));

        // Fire: the fire alarm is critical, class fire, clears at once.
        let f = &p["fire_equipment"];
        let r = rule(f, "fire_alarm");
        assert_eq!((r.severity, r.class.as_str()), (Severity::Critical, "fire"));
        assert_eq!(cond(r).1, &Clear::Immediate);
        assert_eq!(r.message, "{name}发生火警，请立即确认");
        assert_eq!(f.rules.state.fault.len(), 4);

        let i = &p["indoor_sensor"];
        assert!(i.rules.state.fault.is_empty());
        let r = rule(i, "low_indoor_temp");
        assert_eq!(
            (r.severity, r.class.as_str(), r.delay_ms),
            (Severity::Minor, "minor", 1_800_000)
        );
        assert_eq!(cond(r).1, &Clear::Bound(Value::Float(18.5)));

        let g = &p["access_gate"];
        assert_eq!(rule(g, "held_open").delay_ms, 120_000);
        assert_eq!(rule(g, "door_forced").severity, Severity::Major);

        for prof in p.values() {
            for r in &prof.rules.alarms {
                assert!(r.message.contains("{name}"), "{}.{}", prof.category, r.name);
            }
        }
    }

    const SIGNALS: &str = r#"
category = "pump"
interval = "10s"
[[signals]]
name = "level"
type = "int"
[[signals]]
name = "temp_c"
type = "float"
[[signals]]
name = "running"
type = "bool"
[[signals]]
name = "mode"
type = "enum"
values = ["auto", "manual"]
"#;

    fn parse(rules: &str) -> Result<Profile, Vec<String>> {
        let mut errs = Errors::new("x");
        let text = format!("{SIGNALS}{rules}");
        let p = super::super::profiles::parse_for_tests("profiles/pump.toml", &text, &mut errs);
        match p {
            Some(p) if errs.is_empty() => Ok(p),
            _ => Err(errs.list.iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn clear_bounds_follow_the_signal_type() {
        let p = parse(
            r#"
[[alarms]]
name = "high_level"
signal = "level"
op = ">="
value = 10
hysteresis = 2
severity = "minor"
message = "{name} {value}"
[[alarms]]
name = "cold"
signal = "temp_c"
op = "<="
value = 5
clear_value = 7
severity = "major"
message = "{name}"
[[alarms]]
name = "manual"
signal = "mode"
op = "=="
value = "manual"
severity = "major"
class = "urgent"
message = "{name}"
"#,
        )
        .expect("valid");
        let a = &p.rules.alarms;
        assert_eq!(cond(&a[0]).1, &Clear::Bound(Value::Int(8)));
        // An integer constant is accepted for a float signal.
        assert_eq!(cond(&a[1]).0.value, Value::Float(5.0));
        assert_eq!(cond(&a[1]).1, &Clear::Bound(Value::Float(7.0)));
        assert_eq!(a[0].class, "minor");
        assert_eq!(a[1].class, "urgent");
    }

    #[test]
    fn every_rule_mistake_is_reported_with_its_key_and_what_is_valid() {
        let errs = parse(
            r#"
[state]
fault = [
  { signal = "levle", op = "!=", value = 0 },
  { signal = "running", op = "<", value = false },
  { signal = "mode", op = "==", value = "off", colour = 1 },
]
maintenance = [ { signal = "level", op = "=~", value = 1.5 } ]
spare = []

[[alarms]]
name = "High"
signal = "level"
op = ">"
value = "ten"
severity = "urgent"
message = "{name} {valve}"
delay = "soon"

[[alarms]]
name = "dup"
signal = "running"
op = "=="
value = false
hysteresis = 1.0
severity = "major"
class = "rescue"
message = "{name}"

[[alarms]]
name = "dup"
signal = "temp_c"
op = "<"
value = 40.0
hysteresis = 1.0
clear_value = 45.0
severity = "major"
message = "{name}"

[[alarms]]
name = "cold"
signal = "temp_c"
op = "<"
value = 40.0
clear_value = 38.0
severity = "major"
message = "{name}"
on_site = { signal = "door", op = "==", value = true }

[[alarms]]
name = "level_high"
signal = "level"
op = ">"
value = 10
hysteresis = 0.5
severity = "minor"
message = "{name}"

[[alarms]]
name = "gone"
type = "offline"
signal = "level"
season = true
severity = "minor"
message = "{name} {value}"

[[alarms]]
name = "nothing"
type = "silence"
severity = "minor"
colour = "red"
"#,
        )
        .expect_err("invalid");
        let all = errs.join("\n");
        for needle in [
            "profiles/pump.toml: state.fault[0].signal: unknown signal `levle`; signals of `pump`: level (int), temp_c (float), running (bool), mode (enum)",
            "profiles/pump.toml: state.fault[1].op: `<` does not apply to bool signal `running`; valid for bool signal `running`: ==, !=",
            "profiles/pump.toml: state.fault[2].value: `off` is not a value of enum signal `mode`; valid: auto, manual",
            "profiles/pump.toml: state.fault[2].colour: unknown key; valid here: signal, op, value, season",
            "profiles/pump.toml: state.maintenance[0].op: `=~` is not an operator; valid for int signal `level`: <, <=, >, >=, ==, !=",
            "profiles/pump.toml: state.maintenance[0].value: `1.5` is a float, but `level` is an int signal; write an integer such as 0",
            "profiles/pump.toml: state.spare: unknown key; valid here: fault, maintenance",
            "profiles/pump.toml: alarms[0].name: `High` is not a valid rule name",
            "profiles/pump.toml: alarms[0].value: `\"ten\"` is a string, but `level` is an int signal",
            "profiles/pump.toml: alarms[0].severity: `urgent` is not a severity; valid: critical, major, minor",
            "profiles/pump.toml: alarms[0].message: `{valve}` is not a placeholder; valid: {name} {id} {building} {value} {signal}",
            "profiles/pump.toml: alarms[0].delay: `soon` is not a duration",
            "profiles/pump.toml: alarms[1].hysteresis: applies to ordering operators only (<, <=, >, >=)",
            "profiles/pump.toml: alarms[1].class: unknown response class `rescue`; defined: entrapment, fire, minor, urgent",
            "profiles/pump.toml: alarms[2].name: `dup` is used by another rule of this profile",
            "profiles/pump.toml: alarms[2].clear_value: is set together with `hysteresis`",
            "profiles/pump.toml: alarms[3].clear_value: `38.0` is on the alarm side of `temp_c < 40`; a clear value must be ≥ 40",
            "profiles/pump.toml: alarms[3].on_site.signal: unknown signal `door`",
            "profiles/pump.toml: alarms[4].hysteresis: `0.5` is not a whole number; `level` is an int signal",
            "profiles/pump.toml: alarms[5].signal: does not apply to an offline rule",
            "profiles/pump.toml: alarms[5].season: does not apply to an offline rule",
            "profiles/pump.toml: alarms[5].message: `{value}` has nothing to show in an offline rule",
            "profiles/pump.toml: alarms[6].type: `silence` is not a rule type; valid: offline",
            "profiles/pump.toml: alarms[6].message: is missing",
            "profiles/pump.toml: alarms[6].colour: unknown key; valid here: name, type, signal, op, value, severity, class, message, delay, hysteresis, clear_value, season, on_site",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        // alarms[6] (type silence) is checked as a condition rule: its signal, op, value are missing.
        for needle in [
            "alarms[6].signal: is missing",
            "alarms[6].op: is missing",
            "alarms[6].value: is missing",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(errs.len(), 28, "{all}");
    }
}
