//! Modbus configuration: device models (register maps; the built-in ones compiled in from
//! `configs/models/*.toml`, more or overriding ones in `modbus.models_dir`), the
//! `[[modbus.endpoints]]`, and each device's `modbus = { endpoint, unit, model }` binding.
//! Every check names the file and key: unknown signal, overlapping or out-of-range addresses,
//! a type too long for its table, an unknown model or endpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::check::is_identifier;
use super::raw::{RawBinding, RawModbus, RawModel};
use super::Errors;
use crate::model::{Profile, SignalType};
use crate::source::modbus::map::{Exception, Order, RegType, Register, Table};
use crate::source::modbus::plan::Limits;
use crate::source::modbus::{endpoint, Binding, DeviceModel, Endpoint, ModbusSettings};

/// (file name, text) of the built-in device models.
pub const BUILTIN_MODELS: &[(&str, &str)] = &[
    (
        "heating_plc.toml",
        include_str!("../../configs/models/heating_plc.toml"),
    ),
    (
        "fire_pump_panel.toml",
        include_str!("../../configs/models/fire_pump_panel.toml"),
    ),
];

pub(super) type Models = BTreeMap<String, Arc<DeviceModel>>;

/// Loads the built-in models and those in `dir`.
pub(super) fn load(
    dir: Option<PathBuf>,
    profiles: &BTreeMap<String, Arc<Profile>>,
    errs: &mut Errors,
) -> Models {
    let mut out = Models::new();
    for (name, text) in BUILTIN_MODELS {
        let file = format!("built-in model {name}");
        if let Some(m) = parse(&file, stem(Path::new(name)), text, profiles, errs) {
            out.insert(m.name.clone(), Arc::new(m));
        }
    }
    let Some(dir) = dir else { return out };
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(e) => e
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            errs.push(
                "modbus.models_dir",
                format!("cannot read directory `{}`: {e}", dir.display()),
            );
            return out;
        }
    };
    paths.sort();
    for path in paths {
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(m) = parse(&file, stem(&path), &text, profiles, errs) {
                    out.insert(m.name.clone(), Arc::new(m));
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
    profiles: &BTreeMap<String, Arc<Profile>>,
    errs: &mut Errors,
) -> Option<DeviceModel> {
    let mut e = Errors::new(file);
    let raw: super::typed::Read<RawModel> = match toml::from_str::<serde_json::Value>(text) {
        Ok(tree) => super::typed::deserialize(tree),
        Err(err) => {
            e.push("-", format!("is not a valid model: {err}"));
            errs.extend(e);
            return None;
        }
    };
    for m in raw.mistakes {
        e.push(m.key, m.message);
    }
    let (raw, unknown) = (raw.value, raw.unknown);
    for k in unknown {
        e.push(
            k.replace(".?", ""),
            "unknown key; valid: model, category, max_registers_per_request, max_bits_per_request, max_gap, registers (signal, table, address, type, bit, length, trim, order, scale, offset, values, writable, min, max, deadband, max_silence)",
        );
    }
    let name = if raw.model.is_empty() {
        stem.to_owned()
    } else {
        raw.model.clone()
    };
    if name != stem {
        e.push(
            "model",
            format!(
                "`{name}` differs from the file name `{stem}.toml`; name the file after its model"
            ),
        );
    }
    if !is_identifier(&name) {
        e.push(
            "model",
            format!("`{name}` is not a valid model name; use lower-case letters, digits and `_`"),
        );
    }
    let Some(profile) = profiles.get(&raw.category) else {
        let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
        e.push(
            "category",
            format!(
                "unknown category `{}`; known: {}",
                raw.category,
                known.join(", ")
            ),
        );
        errs.extend(e);
        return None;
    };
    let limits = Limits {
        max_registers: bounded(
            &mut e,
            "max_registers_per_request",
            raw.max_registers_per_request,
            1,
            125,
        ),
        max_bits: bounded(
            &mut e,
            "max_bits_per_request",
            raw.max_bits_per_request,
            1,
            2000,
        ),
        max_gap: bounded(&mut e, "max_gap", raw.max_gap, 0, 125),
    };
    let mut regs: Vec<Register> = Vec::new();
    for (i, r) in raw.registers.iter().enumerate() {
        let key = format!("registers[{i}]");
        if let Some(reg) = register(r, &key, profile, &mut e) {
            if regs.iter().any(|o| o.signal == reg.signal) {
                e.push(
                    format!("{key}.signal"),
                    format!("`{}` is mapped twice", reg.signal),
                );
            }
            if let Some(o) = regs.iter().find(|o| overlaps(o, &reg)) {
                e.push(
                    format!("{key}.address"),
                    format!(
                        "{} {} ({} {}) overlaps `{}` at {} {}",
                        reg.table.name(),
                        reg.address,
                        reg.ty.name(),
                        span(&reg),
                        o.signal,
                        o.table.name(),
                        o.address
                    ),
                );
            }
            regs.push(reg);
        }
    }
    if raw.registers.is_empty() {
        e.push("registers", "a model needs at least one register");
    }
    let ok = e.is_empty();
    errs.extend(e);
    ok.then(|| DeviceModel::new(name, raw.category.clone(), regs, limits))
}

fn bounded(e: &mut Errors, key: &str, v: u32, lo: u32, hi: u32) -> u16 {
    if v < lo || v > hi {
        e.push(key, format!("{v} is out of range; valid: {lo} to {hi}"));
    }
    v.clamp(lo, hi) as u16
}

fn span(r: &Register) -> String {
    let w = r.ty.width();
    if w == 1 {
        "1 word".into()
    } else {
        format!("{w} words")
    }
}

/// Whether two registers share an address (bits of one register may share its word).
fn overlaps(a: &Register, b: &Register) -> bool {
    if a.table != b.table {
        return false;
    }
    let (a0, a1) = (
        u32::from(a.address),
        u32::from(a.address) + u32::from(a.ty.width()),
    );
    let (b0, b1) = (
        u32::from(b.address),
        u32::from(b.address) + u32::from(b.ty.width()),
    );
    if a0 >= b1 || b0 >= a1 {
        return false;
    }
    match (a.ty, b.ty) {
        (RegType::Bit(x), RegType::Bit(y)) => x == y,
        _ => true,
    }
}

fn register(
    r: &super::raw::RawRegister,
    key: &str,
    profile: &Profile,
    e: &mut Errors,
) -> Option<Register> {
    let Some(signal_idx) = profile.signal_index(&r.signal) else {
        let known: Vec<&str> = profile.signals.iter().map(|s| s.name.as_str()).collect();
        e.push(
            format!("{key}.signal"),
            format!(
                "unknown signal `{}` of category `{}`; known: {}",
                r.signal,
                profile.category,
                known.join(", ")
            ),
        );
        return None;
    };
    let signal_type = profile.signal(signal_idx).ty.clone();
    let Some(table) = Table::parse(&r.table) else {
        e.push(
            format!("{key}.table"),
            format!(
                "`{}` is not a Modbus table; valid: coil, discrete, input, holding",
                r.table
            ),
        );
        return None;
    };
    let bit = match r.bit {
        Some(b) if b > 15 => {
            e.push(
                format!("{key}.bit"),
                format!("{b} is not a bit of a 16-bit register; valid: 0 to 15"),
            );
            None
        }
        b => b.map(|b| b as u8),
    };
    let length = match r.length {
        Some(n) if !(1..=125).contains(&n) => {
            e.push(
                format!("{key}.length"),
                format!("{n} registers: a string is 1 to 125 registers (one read request)"),
            );
            None
        }
        n => n.map(|n| n as u16),
    };
    let Some(ty) = RegType::parse_with(&r.ty, bit, length, r.trim) else {
        let msg = if r.ty == "bit" {
            "`bit` needs `bit = n` (0 to 15)".to_owned()
        } else if r.ty == "string" {
            "`string` needs `length = n`, its registers (1 to 125; two characters each)".to_owned()
        } else {
            format!(
                "`{}` is not a register type; valid: bool, bit, u16, i16, u32, i32, u64 (uint64), i64 (int64), f32, f64, string",
                r.ty
            )
        };
        e.push(format!("{key}.type"), msg);
        return None;
    };
    if r.bit.is_some() && !matches!(ty, RegType::Bit(_)) {
        e.push(format!("{key}.bit"), "only `type = \"bit\"` takes `bit`");
    }
    let is_text = matches!(ty, RegType::Str { .. });
    if r.length.is_some() && !is_text {
        e.push(
            format!("{key}.length"),
            "only `type = \"string\"` takes `length`",
        );
    }
    if !r.trim && !is_text {
        e.push(
            format!("{key}.trim"),
            "only `type = \"string\"` takes `trim`",
        );
    }
    if is_text != matches!(signal_type, SignalType::String) {
        e.push(
            format!("{key}.type"),
            if is_text {
                format!(
                    "`{}` is a {} signal; a `string` register only fits a string signal",
                    r.signal,
                    signal_type.name()
                )
            } else {
                format!(
                    "`{}` is a string signal; map it with `type = \"string\"` and `length`",
                    r.signal
                )
            },
        );
    }
    if is_text && r.writable {
        e.push(format!("{key}.writable"), "string registers are read-only");
    }
    let report = exception(r, key, &signal_type, e);
    if table.is_bits() && ty != RegType::Bool {
        e.push(
            format!("{key}.type"),
            format!(
                "`{}` is too long for the {} table: coils and discrete inputs hold single bits; use `bool`",
                ty.name(),
                table.name()
            ),
        );
    }
    if r.address > 65535 {
        e.push(
            format!("{key}.address"),
            format!(
                "{} is out of range: protocol addresses are 0 to 65535 (0-based: holding 40001 is address 0)",
                r.address
            ),
        );
        return None;
    }
    let address = r.address as u16;
    if u32::from(address) + u32::from(ty.width()) > 65536 {
        e.push(
            format!("{key}.address"),
            format!(
                "{} {} at {} runs past address 65535",
                ty.name(),
                span_words(ty),
                address
            ),
        );
    }
    let Some(order) = Order::parse(&r.order) else {
        e.push(
            format!("{key}.order"),
            format!(
                "`{}` is not a byte/word order; valid: ABCD, CDAB, BADC, DCBA",
                r.order
            ),
        );
        return None;
    };
    if !r.scale.is_finite() || r.scale == 0.0 || !r.offset.is_finite() {
        e.push(
            format!("{key}.scale"),
            "scale must be a finite non-zero number and offset finite",
        );
    }
    match &signal_type {
        SignalType::String => {}
        SignalType::Enum(allowed) => match &r.values {
            None => e.push(
                format!("{key}.values"),
                format!(
                    "`{}` is an enum signal: give `values`, the enum value of raw 0, 1, 2…, from {}",
                    r.signal,
                    allowed.join(", ")
                ),
            ),
            Some(v) => {
                if let Some(bad) = v.iter().find(|x| !allowed.contains(x)) {
                    e.push(
                        format!("{key}.values"),
                        format!("`{bad}` is not a value of `{}`; valid: {}", r.signal, allowed.join(", ")),
                    );
                }
            }
        },
        _ => {
            if r.values.is_some() {
                e.push(format!("{key}.values"), "only enum signals take `values`");
            }
        }
    }
    if ty.is_boolean() && !matches!(signal_type, SignalType::Bool) {
        e.push(
            format!("{key}.type"),
            format!(
                "`{}` is a {} signal; a `{}` register only fits a bool signal",
                r.signal,
                signal_type.name(),
                ty.name()
            ),
        );
    }
    if r.writable && !table.writable() {
        e.push(
            format!("{key}.writable"),
            format!(
                "the {} table is read-only; only coils and holding registers can be written",
                table.name()
            ),
        );
    }
    for (k, b) in [("min", r.min), ("max", r.max)] {
        if b.is_some() && !matches!(signal_type, SignalType::Float | SignalType::Int) {
            e.push(
                format!("{key}.{k}"),
                format!("`{}` is not a number signal; `min`/`max` limit writes of float and int signals (an enum's writes are limited to its values)", r.signal),
            );
        }
        if b.is_some_and(|b| !b.is_finite()) {
            e.push(format!("{key}.{k}"), "must be a finite number");
        }
    }
    if let (Some(lo), Some(hi)) = (r.min, r.max) {
        if lo > hi {
            e.push(
                format!("{key}.min"),
                format!("({lo}) is larger than `max` ({hi})"),
            );
        }
    }
    Some(Register {
        signal: r.signal.clone(),
        signal_idx,
        table,
        address,
        ty,
        order,
        scale: r.scale,
        offset: r.offset,
        values: r.values.clone(),
        writable: r.writable,
        min: r.min,
        max: r.max,
        signal_type,
        report,
    })
}

/// Default `max_silence` when only `deadband` is given.
const DEFAULT_MAX_SILENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// `deadband` and `max_silence` of a register: report by exception (`None`: every value).
fn exception(
    r: &super::raw::RawRegister,
    key: &str,
    signal_type: &SignalType,
    e: &mut Errors,
) -> Option<Exception> {
    if r.deadband.is_none() && r.max_silence.is_none() {
        return None;
    }
    let deadband = r.deadband.unwrap_or(0.0);
    if !deadband.is_finite() || deadband < 0.0 {
        e.push(
            format!("{key}.deadband"),
            format!("{deadband} is not a deadband; a finite number, 0 or more"),
        );
    }
    if r.deadband.is_some_and(|d| d > 0.0)
        && !matches!(signal_type, SignalType::Float | SignalType::Int)
    {
        e.push(
            format!("{key}.deadband"),
            format!(
                "`{}` is a {} signal: a deadband needs a number (its other values are stored when they change; `max_silence` alone says how often they are repeated)",
                r.signal,
                signal_type.name()
            ),
        );
    }
    let silence = match &r.max_silence {
        Some(text) => e.duration(&format!("{key}.max_silence"), text),
        None => DEFAULT_MAX_SILENCE,
    };
    let parsed = r
        .max_silence
        .as_ref()
        .is_some_and(|t| humantime::parse_duration(t.trim()).is_ok());
    if silence.is_zero() && parsed {
        e.push(
            format!("{key}.max_silence"),
            "must be longer than 0 (leave out `deadband` and `max_silence` to store every value)",
        );
    }
    Some(Exception {
        deadband,
        max_silence_ms: i64::try_from(silence.as_millis()).unwrap_or(i64::MAX),
    })
}

fn span_words(ty: RegType) -> String {
    format!("({} words)", ty.width())
}

/// Builds `[modbus]`: the endpoints.
pub(super) fn build_modbus(raw: Option<&RawModbus>, errs: &mut Errors) -> ModbusSettings {
    let Some(raw) = raw else {
        return ModbusSettings {
            endpoints: Vec::new(),
            offline_after: 3,
            bindings: Default::default(),
        };
    };
    if raw.offline_after == 0 {
        errs.push("modbus.offline_after", "must be at least 1 (default 3)");
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (i, r) in raw.endpoints.iter().enumerate() {
        let key = format!("modbus.endpoints[{i}]");
        if r.name.is_empty() || r.name.chars().any(char::is_control) {
            errs.push(
                format!("{key}.name"),
                "give the endpoint a name, e.g. `plant-room`",
            );
        }
        if endpoints.iter().any(|e| e.name == r.name) {
            errs.push(
                format!("{key}.name"),
                format!("endpoint `{}` is defined twice", r.name),
            );
        }
        let kind = match endpoint::parse(&r.url) {
            Ok(k) => Some(k),
            Err(msg) => {
                errs.push(format!("{key}.url"), msg);
                None
            }
        };
        let timeout = errs.duration(&format!("{key}.timeout"), &r.timeout);
        if timeout.is_zero() && !errs.has_key(&format!("{key}.timeout")) {
            errs.push(format!("{key}.timeout"), "must be more than 0 (default 1s)");
        }
        let pause = errs.duration(
            &format!("{key}.pause_between_requests"),
            &r.pause_between_requests,
        );
        let reconnect_min = errs.duration(&format!("{key}.reconnect_min"), &r.reconnect_min);
        let reconnect_max = errs.duration(&format!("{key}.reconnect_max"), &r.reconnect_max);
        if reconnect_min > reconnect_max {
            errs.push(
                format!("{key}.reconnect_min"),
                "is larger than `reconnect_max`",
            );
        }
        if let Some(kind) = kind {
            endpoints.push(Endpoint {
                name: r.name.clone(),
                url: r.url.clone(),
                kind,
                timeout,
                retries: r.retries,
                pause_between_requests: pause,
                reconnect_min,
                reconnect_max,
            });
        }
    }
    ModbusSettings {
        endpoints,
        offline_after: raw.offline_after.max(1),
        // Filled in once the inventory is built (`inventory::Built::bindings`).
        bindings: Default::default(),
    }
}

/// Resolves a device's `modbus` binding. `seen` catches two devices on one unit id.
pub(super) fn bind(
    raw: &RawBinding,
    key: &str,
    category: &str,
    modbus: &ModbusSettings,
    models: &Models,
    seen: &mut HashMap<(usize, u8), String>,
    errs: &mut Errors,
) -> Option<Binding> {
    let endpoint = modbus.endpoints.iter().position(|e| e.name == raw.endpoint);
    if endpoint.is_none() {
        let known: Vec<&str> = modbus.endpoints.iter().map(|e| e.name.as_str()).collect();
        errs.push(
            format!("{key}.endpoint"),
            format!(
                "unknown endpoint `{}`; known: {}",
                raw.endpoint,
                if known.is_empty() {
                    "none (add [[modbus.endpoints]])".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    if raw.unit == 0 || raw.unit > 255 {
        errs.push(
            format!("{key}.unit"),
            format!(
                "{} is not a unit id; valid: 1 to 247 (255 for TCP-only devices)",
                raw.unit
            ),
        );
    }
    let model = models.get(&raw.model).cloned();
    match &model {
        None => {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            errs.push(
                format!("{key}.model"),
                format!("unknown model `{}`; known: {}", raw.model, known.join(", ")),
            );
        }
        Some(m) if m.category != category => errs.push(
            format!("{key}.model"),
            format!(
                "model `{}` is for category `{}`, the device is `{category}`",
                m.name, m.category
            ),
        ),
        Some(_) => {}
    }
    let (endpoint, model) = (endpoint?, model?);
    let unit = raw.unit.clamp(1, 255) as u8;
    if let Some(first) = seen.get(&(endpoint, unit)) {
        errs.push(
            format!("{key}.unit"),
            format!(
                "unit {unit} on endpoint `{}` is already used by {first}",
                raw.endpoint
            ),
        );
    } else {
        seen.insert((endpoint, unit), format!("{} {key}", errs.file()));
    }
    Some(Binding {
        endpoint,
        unit,
        model,
    })
}
