//! The device inventory (设备台账): `[[devices]]` in the TOML and/or a CSV file named by
//! `devices_csv`, since property companies keep their inventories in spreadsheets.
//!
//! CSV: a header row, then one device per row. Columns (any order): `id`, `name`, `building`,
//! `category` (required); `site`, `interval`, `heartbeat_timeout`, `monitored_since` (optional,
//! empty = default).
//! Lines starting with `#` are comments; a UTF-8 byte-order mark (Excel's "CSV UTF-8") is
//! accepted; other encodings (Excel's GBK "CSV") are rejected with a hint.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::check::{check_name, resolve};
use super::raw::{RawBinding, RawConfig, RawDevice};
use super::Errors;
use crate::model::{Device, DeviceIdx, Profile};
use crate::source::modbus::{Binding, ModbusSettings};

const CSV_REQUIRED: &[&str] = &["id", "name", "building", "category"];
const CSV_OPTIONAL: &[&str] = &[
    "site",
    "interval",
    "heartbeat_timeout",
    "monitored_since",
    "modbus_endpoint",
    "modbus_unit",
    "modbus_model",
];

/// What a device definition is checked against.
pub(super) struct Context<'a> {
    pub default_site: &'a str,
    pub profiles: &'a BTreeMap<String, Arc<Profile>>,
    pub modbus: &'a ModbusSettings,
    pub models: &'a super::models::Models,
    /// Response classes, for the classes named in per-device alarm overrides.
    pub classes: &'a HashMap<String, crate::model::rules::ResponseClass>,
}

pub(super) fn build(
    raw: &RawConfig,
    ctx: &Context<'_>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Built {
    let mut built = Built::default();
    // (site, id) → where it was first defined, for duplicate messages.
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    // (endpoint, unit) → where it was first used.
    let mut units: HashMap<(usize, u8), String> = HashMap::new();
    if !raw.devices.is_empty() {
        built.sources.push(errs.file().to_owned());
    }
    for (i, d) in raw.devices.iter().enumerate() {
        let key = format!("devices[{i}]");
        let mut local = Errors::new(errs.file());
        if let Some((dev, binding)) = device(d, &key, ctx, &mut units, &mut local) {
            check_duplicate(&dev, &key, errs.file(), &mut seen, &mut local);
            let since = monitored_since(d, &key, &mut local);
            built.push(dev, binding, since);
        }
        errs.extend(local);
    }
    if let Some(csv_path) = &raw.devices_csv {
        let path = resolve(base_dir, csv_path);
        built.sources.push(path.display().to_string());
        load_csv(&path, ctx, &mut seen, &mut units, &mut built, errs);
    }
    built
}

/// The inventory as built: devices in order, the Modbus bindings of the polled ones (by
/// index into `devices`), and where they were defined.
#[derive(Default)]
pub(super) struct Built {
    pub devices: Vec<Device>,
    pub bindings: BTreeMap<DeviceIdx, Binding>,
    /// `monitored_since` of the devices that give one (unix ms).
    pub monitored_since: BTreeMap<DeviceIdx, i64>,
    pub sources: Vec<String>,
}

impl Built {
    fn push(&mut self, dev: Device, binding: Option<Binding>, since: Option<i64>) {
        let idx = self.devices.len() as DeviceIdx;
        if let Some(b) = binding {
            self.bindings.insert(idx, b);
        }
        if let Some(t) = since {
            self.monitored_since.insert(idx, t);
        }
        self.devices.push(dev);
    }
}

/// A device's `monitored_since`: an RFC 3339 time with its offset.
fn monitored_since(d: &RawDevice, key: &str, errs: &mut Errors) -> Option<i64> {
    let s = d
        .monitored_since
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())?;
    match s.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t.as_millisecond()),
        Err(_) => {
            errs.push(
                field_key(key, "monitored_since"),
                format!(
                    "`{s}` is not an RFC 3339 time with an offset; write e.g. \"2026-11-01T00:00:00+08:00\""
                ),
            );
            None
        }
    }
}

fn device(
    d: &RawDevice,
    key: &str,
    ctx: &Context<'_>,
    units: &mut HashMap<(usize, u8), String>,
    errs: &mut Errors,
) -> Option<(Device, Option<Binding>)> {
    let (default_site, profiles) = (ctx.default_site, ctx.profiles);
    check_name(errs, &field_key(key, "id"), &d.id, true, true);
    check_name(errs, &field_key(key, "name"), &d.name, false, false);
    check_name(errs, &field_key(key, "building"), &d.building, false, true);
    let site = match d.site.as_deref() {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ if !default_site.is_empty() => default_site.to_owned(),
        _ => {
            errs.push(
                field_key(key, "site"),
                "is empty and `gateway.site` is not set; give the device a site or set `gateway.site`",
            );
            String::new()
        }
    };
    if !site.is_empty() {
        check_name(errs, &field_key(key, "site"), &site, true, true);
    }
    let profile = match profiles.get(&d.category) {
        Some(p) => Some(p.clone()),
        None => {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            errs.push(
                field_key(key, "category"),
                format!(
                    "unknown category `{}`; known: {}",
                    d.category,
                    known.join(", ")
                ),
            );
            None
        }
    };
    let interval = d
        .interval
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| errs.duration(&field_key(key, "interval"), s));
    let heartbeat = d
        .heartbeat_timeout
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| errs.duration(&field_key(key, "heartbeat_timeout"), s));
    let profile = profile?;
    let modbus = d.modbus.as_ref().and_then(|b| {
        super::models::bind(
            b,
            &field_key(key, "modbus"),
            &d.category,
            ctx.modbus,
            ctx.models,
            units,
            errs,
        )
    });
    let interval = interval.unwrap_or(profile.interval);
    if interval.is_zero() && !errs.has_key(&field_key(key, "interval")) {
        errs.push(field_key(key, "interval"), "must be more than 0");
    }
    let heartbeat_timeout = heartbeat.unwrap_or(interval * 3);
    if heartbeat_timeout < interval {
        errs.push(
            field_key(key, "heartbeat_timeout"),
            format!(
                "({}) is shorter than the reporting interval ({}); the device would flap offline",
                humantime::format_duration(heartbeat_timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    let device = Device {
        id: d.id.clone(),
        name: d.name.clone(),
        site,
        building: d.building.clone(),
        category: d.category.clone(),
        rules: super::rules::apply_overrides(
            &profile,
            &d.alarms,
            &field_key(key, "alarms"),
            ctx.classes,
            errs,
        ),
        profile,
        interval,
        polled: modbus.is_some(),
        heartbeat_timeout: if heartbeat_timeout.is_zero() {
            Duration::from_secs(1)
        } else {
            heartbeat_timeout
        },
    };
    Some((device, modbus))
}

fn check_duplicate(
    dev: &Device,
    key: &str,
    file: &str,
    seen: &mut HashMap<(String, String), String>,
    errs: &mut Errors,
) {
    let here = format!("{file}: {key}");
    match seen.get(&(dev.site.clone(), dev.id.clone())) {
        Some(first) => errs.push(
            field_key(key, "id"),
            format!(
                "duplicate device id `{}` in site `{}` (first defined at {first}); ids must be unique per site",
                dev.id, dev.site
            ),
        ),
        None => {
            seen.insert((dev.site.clone(), dev.id.clone()), here);
        }
    }
}

fn load_csv(
    path: &Path,
    ctx: &Context<'_>,
    seen: &mut HashMap<(String, String), String>,
    units: &mut HashMap<(usize, u8), String>,
    built: &mut Built,
    errs: &mut Errors,
) {
    let file = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            errs.push("devices_csv", format!("cannot read `{file}`: {e}"));
            return;
        }
    };
    let mut local = Errors::new(file.clone());
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t),
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            local.push(
                format!("line {line}"),
                "is not UTF-8 (a spreadsheet saved as GBK?); in Excel choose \"CSV UTF-8\", or convert with `iconv -f GBK -t UTF-8`",
            );
            errs.extend(local);
            return;
        }
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(str::to_owned).collect(),
        Err(e) => {
            local.push("line 1", format!("cannot read the header row: {e}"));
            errs.extend(local);
            return;
        }
    };
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if CSV_REQUIRED.contains(&h.as_str()) || CSV_OPTIONAL.contains(&h.as_str()) {
            if col.insert(h.as_str(), i).is_some() {
                local.push("line 1", format!("column `{h}` appears twice"));
            }
        } else {
            local.push(
                "line 1",
                format!(
                    "unknown column `{h}`; valid columns: {}, {} (optional)",
                    CSV_REQUIRED.join(", "),
                    CSV_OPTIONAL.join(", ")
                ),
            );
        }
    }
    for req in CSV_REQUIRED {
        if !col.contains_key(req) {
            local.push(
                "line 1",
                format!(
                    "the header has no `{req}` column; required: {}",
                    CSV_REQUIRED.join(", ")
                ),
            );
        }
    }
    if !local.is_empty() {
        errs.extend(local);
        return;
    }
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                local.push(format!("line {line}"), format!("cannot be read: {e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let key = format!("line {line}");
        if rec.len() != header.len() {
            local.push(
                &key,
                format!(
                    "has {} columns, the header has {} ({}); quote fields that contain commas",
                    rec.len(),
                    header.len(),
                    header.join(",")
                ),
            );
            continue;
        }
        let get = |name: &str| col.get(name).and_then(|i| rec.get(*i)).map(str::to_owned);
        let mut row = Errors::new(file.clone());
        let modbus_cols = [
            get("modbus_endpoint").unwrap_or_default(),
            get("modbus_unit").unwrap_or_default(),
            get("modbus_model").unwrap_or_default(),
        ];
        let modbus = if modbus_cols.iter().all(String::is_empty) {
            None
        } else {
            let unit = match modbus_cols[1].parse::<u32>() {
                Ok(u) => u,
                Err(_) => {
                    row.push(
                        format!("{key}, column modbus_unit"),
                        format!("`{}` is not a unit id; valid: 1 to 247", modbus_cols[1]),
                    );
                    1
                }
            };
            Some(RawBinding {
                endpoint: modbus_cols[0].clone(),
                unit,
                model: modbus_cols[2].clone(),
            })
        };
        let raw = RawDevice {
            id: get("id").unwrap_or_default(),
            name: get("name").unwrap_or_default(),
            site: get("site"),
            building: get("building").unwrap_or_default(),
            category: get("category").unwrap_or_default(),
            interval: get("interval"),
            heartbeat_timeout: get("heartbeat_timeout"),
            monitored_since: get("monitored_since"),
            modbus,
            alarms: Default::default(),
        };
        if let Some((dev, binding)) = device(&raw, &key, ctx, units, &mut row) {
            check_duplicate(&dev, &key, &file, seen, &mut row);
            let since = monitored_since(&raw, &key, &mut row);
            built.push(dev, binding, since);
        }
        local.extend(row);
    }
    errs.extend(local);
}

/// For topic patterns without `{site}`: a device id must identify one device on its own.
pub(super) fn check_ids_unique_across_sites(devices: &[Device], key: &str, errs: &mut Errors) {
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    for d in devices {
        if let Some(site) = by_id.insert(&d.id, &d.site) {
            if site != d.site {
                errs.push(
                    key,
                    format!(
                        "has no `{{site}}` placeholder, but device id `{}` is used in sites `{site}` and `{}`; add `{{site}}` to the pattern",
                        d.id, d.site
                    ),
                );
                return;
            }
        }
    }
}

/// `devices[3].id` for TOML, `line 7, column id` for CSV.
fn field_key(key: &str, field: &str) -> String {
    if key.starts_with("line ") {
        format!("{key}, column {field}")
    } else {
        format!("{key}.{field}")
    }
}
