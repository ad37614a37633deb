//! Category profiles: the five built-in ones (compiled in from `configs/profiles/*.toml`, so
//! the binary works from any directory) plus any in `gateway.profiles_dir`, where a file named
//! like a built-in category replaces it and any other name adds a category.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::check::is_identifier;
use super::raw::RawProfile;
use super::Errors;
use crate::model::rules::ResponseClass;
use crate::model::{Profile, Signal, SignalType};

/// (file name, text) of the built-in profiles.
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    (
        "access_gate.toml",
        include_str!("../../configs/profiles/access_gate.toml"),
    ),
    (
        "elevator.toml",
        include_str!("../../configs/profiles/elevator.toml"),
    ),
    (
        "heating_loop.toml",
        include_str!("../../configs/profiles/heating_loop.toml"),
    ),
    (
        "indoor_sensor.toml",
        include_str!("../../configs/profiles/indoor_sensor.toml"),
    ),
    (
        "fire_equipment.toml",
        include_str!("../../configs/profiles/fire_equipment.toml"),
    ),
];

/// Signal names the payload format reserves.
const RESERVED: &[&str] = &["ts", "online"];

/// Loads the built-in profiles and those in `dir`; alarm rules' classes are checked against
/// `classes`.
pub(super) fn load(
    dir: Option<PathBuf>,
    classes: &HashMap<String, ResponseClass>,
    errs: &mut Errors,
) -> BTreeMap<String, Arc<Profile>> {
    let mut out = BTreeMap::new();
    for (name, text) in BUILTIN_PROFILES {
        let file = format!("built-in profile {name}");
        if let Some(p) = parse(&file, stem(Path::new(name)), text, classes, errs) {
            out.insert(p.category.clone(), Arc::new(p));
        }
    }
    let Some(dir) = dir else { return out };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            errs.push(
                "gateway.profiles_dir",
                format!("cannot read directory `{}`: {e}", dir.display()),
            );
            return out;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(p) = parse(&file, stem(&path), &text, classes, errs) {
                    out.insert(p.category.clone(), Arc::new(p));
                }
            }
            Err(e) => errs.push_in(file, "-", format!("cannot be read: {e}")),
        }
    }
    out
}

fn stem(p: &Path) -> &str {
    p.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

fn parse(
    file: &str,
    stem: &str,
    text: &str,
    classes: &HashMap<String, ResponseClass>,
    errs: &mut Errors,
) -> Option<Profile> {
    let mut local = Errors::new(file);
    let raw: super::typed::Read<RawProfile> = match toml::from_str::<serde_json::Value>(text) {
        Ok(tree) => super::typed::deserialize(tree),
        Err(e) => {
            local.push("-", format!("is not a valid profile: {e}"));
            errs.extend(local);
            return None;
        }
    };
    for m in raw.mistakes {
        local.push(m.key, m.message);
    }
    let (raw, unknown) = (raw.value, raw.unknown);
    for k in unknown {
        let key = super::key_path(&k);
        let hint = unknown_key_hint(&key);
        local.push(key, format!("unknown key; valid here: {hint}"));
    }
    let category = if raw.category.is_empty() {
        stem.to_owned()
    } else {
        raw.category.clone()
    };
    if category != stem {
        local.push(
            "category",
            format!("`{category}` differs from the file name `{stem}.toml`; name the file after its category"),
        );
    }
    if !is_identifier(&category) {
        local.push(
            "category",
            format!("`{category}` is not a valid category name; use lower-case letters, digits and `_`, e.g. `heating_loop`"),
        );
    }
    let interval = if raw.interval.is_empty() {
        local.push(
            "interval",
            "is missing; give the expected reporting interval, e.g. `30s`",
        );
        std::time::Duration::ZERO
    } else {
        local.duration("interval", &raw.interval)
    };
    let mut signals: Vec<Signal> = Vec::new();
    for (i, s) in raw.signals.iter().enumerate() {
        let key = format!("signals[{i}]");
        if !is_identifier(&s.name) {
            local.push(
                format!("{key}.name"),
                format!(
                    "`{}` is not a valid signal name; use lower-case letters, digits and `_`",
                    s.name
                ),
            );
        }
        if RESERVED.contains(&s.name.as_str()) {
            local.push(
                format!("{key}.name"),
                format!("`{}` is reserved by the payload format", s.name),
            );
        }
        if signals.iter().any(|o| o.name == s.name) {
            local.push(
                format!("{key}.name"),
                format!("`{}` is defined twice", s.name),
            );
        }
        let ty = match s.ty.as_str() {
            "float" => SignalType::Float,
            "int" => SignalType::Int,
            "bool" => SignalType::Bool,
            "string" => SignalType::String,
            "enum" => match &s.values {
                Some(v) if !v.is_empty() => SignalType::Enum(v.clone()),
                _ => {
                    local.push(
                        format!("{key}.values"),
                        "an `enum` signal needs its allowed values, e.g. values = [\"normal\", \"inspection\"]",
                    );
                    SignalType::Enum(Vec::new())
                }
            },
            other => {
                local.push(
                    format!("{key}.type"),
                    format!(
                        "`{other}` is not a signal type; valid: float, int, bool, string, enum"
                    ),
                );
                SignalType::String
            }
        };
        if s.values.is_some() && !matches!(ty, SignalType::Enum(_)) {
            local.push(format!("{key}.values"), "only `enum` signals take `values`");
        }
        signals.push(Signal {
            name: s.name.clone(),
            ty,
            unit: s.unit.clone(),
            label: s.label.clone(),
        });
    }
    if signals.is_empty() {
        local.push("signals", "a profile needs at least one signal");
    }
    let mut profile = Profile::new(category, raw.label, interval, signals);
    for (i, name) in raw.hourly.iter().enumerate() {
        match profile.signal_index(name) {
            Some(idx) if profile.signal(idx).ty == SignalType::Float => profile.hourly.push(idx),
            Some(_) => local.push(
                format!("hourly[{i}]"),
                format!("`{name}` is not a float signal; only float signals have hourly means"),
            ),
            None => local.push(
                format!("hourly[{i}]"),
                format!(
                    "unknown signal `{name}`; signals: {}",
                    profile
                        .signals
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    // Rules are checked against the signals even when a signal had a mistake, so that one
    // run reports the rules' mistakes too.
    let rules = super::rules::build(&profile, &raw.state, &raw.alarms, classes, &mut local);
    profile.rules = Arc::new(rules);
    let ok = local.is_empty();
    errs.extend(local);
    ok.then_some(profile)
}

/// Parses one profile text with the default classes (tests of the rules).
#[cfg(test)]
pub(super) fn parse_for_tests(file: &str, text: &str, errs: &mut Errors) -> Option<Profile> {
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    parse(file, stem, text, &super::alarms::default_classes(), errs)
}

/// The keys valid where an unknown `key` was found.
fn unknown_key_hint(key: &str) -> &'static str {
    let in_alarm = key.starts_with("alarms[");
    if in_alarm && key.contains(".on_site.") || key.starts_with("state.") && key.contains('[') {
        "signal, op, value, season"
    } else if in_alarm {
        "name, type, signal, op, value, severity, class, message, delay, hysteresis, clear_value, season, on_site"
    } else if key.starts_with("state.") {
        "fault, maintenance"
    } else if key.starts_with("signals[") {
        "name, type, unit, label, values"
    } else {
        "category, label, interval, signals, state, alarms"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_load_cleanly() {
        let mut errs = Errors::new("test");
        let p = load(None, &super::super::alarms::default_classes(), &mut errs);
        assert!(errs.is_empty(), "{:?}", errs);
        let names: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "access_gate",
                "elevator",
                "fire_equipment",
                "heating_loop",
                "indoor_sensor"
            ]
        );
        let e = &p["elevator"];
        assert!(e.signal_index("entrapment").is_some());
        assert!(matches!(
            e.signal(e.signal_index("mode").unwrap()).ty,
            SignalType::Enum(_)
        ));
    }

    #[test]
    fn bad_profile_reports_every_mistake() {
        let mut errs = Errors::new("x");
        let text = r#"
category = "lift"
interval = "often"
colour = "red"
[[signals]]
name = "Speed"
type = "number"
[[signals]]
name = "ts"
type = "int"
"#;
        let classes = super::super::alarms::default_classes();
        assert!(parse("p/elevator.toml", "elevator", text, &classes, &mut errs).is_none());
        let msgs: Vec<String> = errs.list.iter().map(|e| e.to_string()).collect();
        let all = msgs.join("\n");
        for needle in [
            "p/elevator.toml: colour: unknown key",
            "p/elevator.toml: category: `lift` differs from the file name",
            "p/elevator.toml: interval: `often` is not a duration",
            "p/elevator.toml: signals[0].name: `Speed` is not a valid signal name",
            "p/elevator.toml: signals[0].type: `number` is not a signal type; valid: float, int, bool, string, enum",
            "p/elevator.toml: signals[1].name: `ts` is reserved",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }
}
