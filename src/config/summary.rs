//! The one-screen summary `estate-gateway check-config` prints for a valid configuration:
//! devices by site and category, sources, store, alarms, heating; with `--verbose` every
//! device, each profile's rules, the response classes, the maintenance windows and the Modbus
//! poll plans.

use std::collections::BTreeMap;

use super::Config;
use crate::model::rules::{Clear, ResponseClass, Trigger};
use crate::model::DeviceIdx;

/// The one-screen summary `check-config` prints.
pub fn summary(cfg: &Config, verbose: bool) -> String {
    let mut out = format!("{}: OK\n", cfg.file.display());
    let mut sites: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for d in cfg.inventory.devices() {
        *sites
            .entry(d.site.as_str())
            .or_default()
            .entry(d.category.as_str())
            .or_default() += 1;
    }
    out.push_str(&format!(
        "devices: {} from {}\n",
        cfg.inventory.len(),
        if cfg.inventory_sources.is_empty() {
            "nowhere (no [[devices]] and no devices_csv)".to_owned()
        } else {
            cfg.inventory_sources.join(", ")
        }
    ));
    for (site, cats) in &sites {
        let total: usize = cats.values().sum();
        out.push_str(&format!("  site {site}: {total}\n"));
        for (cat, n) in cats {
            let label = cfg
                .profiles
                .get(*cat)
                .map(|p| p.label.as_str())
                .unwrap_or("");
            out.push_str(&format!("    {cat:<16} {n:>6}  {label}\n"));
        }
    }
    out.push_str(&format!(
        "profiles: {}\n",
        cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    out.push_str("sources:\n");
    match &cfg.mqtt {
        Some(m) => out.push_str(&format!(
            "  mqtt {} as `{}`{}{}\n    telemetry {}\n    status    {}\n",
            m.url,
            m.client_id,
            if m.tls { ", TLS" } else { "" },
            match &m.username {
                Some(u) => format!(
                    ", user `{u}`, password {}",
                    if m.password.is_empty() {
                        "not set"
                    } else {
                        "set"
                    }
                ),
                None => String::new(),
            },
            m.telemetry_topic,
            m.status_topic
        )),
        None => out.push_str("  none ([mqtt] not configured)\n"),
    }
    if !cfg.modbus.endpoints.is_empty() {
        out.push_str("  modbus:\n");
        for (i, e) in cfg.modbus.endpoints.iter().enumerate() {
            let n = cfg
                .modbus
                .bindings
                .values()
                .filter(|b| b.endpoint == i)
                .count();
            out.push_str(&format!(
                "    {} {} ({n} devices, timeout {})\n",
                e.name,
                e.kind,
                humantime::format_duration(e.timeout)
            ));
        }
    }
    match &cfg.store {
        Some(s) => out.push_str(&format!(
            "store: {} org `{}` bucket `{}`, token {}, batches of {} lines or {}{}, gzip {}\n",
            s.url,
            s.org,
            s.bucket,
            if s.token.is_empty() { "not set" } else { "set" },
            s.batch_lines,
            humantime::format_duration(s.batch_interval),
            if s.batch_quiet.is_zero() {
                String::new()
            } else {
                format!(
                    " (sooner after {} without new lines)",
                    humantime::format_duration(s.batch_quiet)
                )
            },
            if s.gzip { "on" } else { "off" }
        )),
        None => out.push_str("store: none ([store] not configured)\n"),
    }
    out.push_str(&format!("data_dir: {}\n", cfg.gateway.data_dir.display()));
    let rules: usize = cfg.profiles.values().map(|p| p.rules.alarms.len()).sum();
    let mut classes: Vec<&ResponseClass> = cfg.alarms.classes.values().collect();
    classes.sort_by(|a, b| a.name.cmp(&b.name));
    out.push_str(&format!(
        "alarms: {rules} rules in {} profiles; classes {}; webhook {}\n",
        cfg.profiles.len(),
        classes
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        match &cfg.alarms.webhook {
            Some(w) => format!("{} ({:?})", w.redacted_url(), w.format).to_lowercase(),
            None => "none".into(),
        }
    ));
    // Escalation chains, one line per class: step by step, `after → target (until)`.
    let mut chains: Vec<(&String, &Vec<crate::model::escalation::Step>)> =
        cfg.alarms.escalation.iter().collect();
    chains.sort_by(|a, b| a.0.cmp(b.0));
    for (class, chain) in chains {
        let steps: Vec<String> = chain
            .iter()
            .map(|s| {
                format!(
                    "{} → {} (until {})",
                    humantime::format_duration(std::time::Duration::from_millis(
                        s.after_ms.max(0) as u64
                    )),
                    s.notify,
                    s.until.as_str()
                )
            })
            .collect();
        out.push_str(&format!("escalation {class}: {}\n", steps.join("; ")));
    }
    for (name, w) in &cfg.alarms.webhooks {
        out.push_str(&format!(
            "webhook {name}: {}\n",
            format!("{} ({:?})", w.redacted_url(), w.format).to_lowercase()
        ));
    }
    let season = &cfg.heating.season;
    out.push_str(&format!(
        "heating: season {} → {} ({}), min {} °C; planned maintenance: {} window{}\n",
        season.start,
        season.end,
        season.tz_name,
        cfg.heating.min_indoor_c,
        cfg.maintenance.len(),
        if cfg.maintenance.len() == 1 { "" } else { "s" }
    ));
    if verbose {
        out.push_str("devices:\n");
        for (idx, d) in cfg.inventory.devices().iter().enumerate() {
            out.push_str(&format!(
                "  {}/{} {} [{}] {} every {}, offline after {}{}\n",
                d.site,
                d.id,
                d.name,
                d.category,
                d.building,
                humantime::format_duration(d.interval),
                humantime::format_duration(d.heartbeat_timeout),
                match cfg.modbus.binding(idx as DeviceIdx) {
                    Some(b) => format!(
                        ", modbus {} unit {} model {}",
                        cfg.modbus.endpoints[b.endpoint].name, b.unit, b.model.name
                    ),
                    None => String::new(),
                }
            ));
        }
        out.push_str(&rules_summary(cfg, &classes));
        if !cfg.models.is_empty() {
            out.push_str("poll plans:\n");
            for m in cfg.models.values() {
                out.push_str(&format!(
                    "  {} ({}): {} requests for {} registers\n",
                    m.name,
                    m.category,
                    m.plan.len(),
                    m.registers.len()
                ));
                for line in crate::source::modbus::plan::describe(&m.registers, &m.plan) {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    out
}

/// `check-config --verbose`: each profile's state and alarm rules, the response classes with
/// their targets, and the planned maintenance windows.
fn rules_summary(cfg: &Config, classes: &[&ResponseClass]) -> String {
    let ms = |ms: i64| humantime::format_duration(std::time::Duration::from_millis(ms as u64));
    let mut out = String::from("rules:\n");
    for p in cfg.profiles.values() {
        let r = &p.rules;
        out.push_str(&format!("  {} {}\n", p.category, p.label));
        for (what, list) in [
            ("fault", &r.state.fault),
            ("maintenance", &r.state.maintenance),
        ] {
            if !list.is_empty() {
                let conds: Vec<String> = list.iter().map(|c| c.to_string()).collect();
                out.push_str(&format!("    {what} when any: {}\n", conds.join("; ")));
            }
        }
        for a in &r.alarms {
            let (when, clear) = match &a.trigger {
                Trigger::Offline => ("offline".to_owned(), String::new()),
                Trigger::Condition { when, clear } => (
                    when.to_string(),
                    match clear {
                        Clear::Immediate => String::new(),
                        Clear::Bound(b) => format!(", clears at {}", b),
                    },
                ),
            };
            out.push_str(&format!(
                "    alarm {:<16} {when}: {}, class {}, delay {}{clear}{}\n",
                a.name,
                a.severity.as_str(),
                a.class,
                ms(a.delay_ms),
                match &a.on_site {
                    Some(c) => format!(", on site when {c}"),
                    None => String::new(),
                }
            ));
        }
    }
    let overridden: Vec<String> = cfg
        .inventory
        .devices()
        .iter()
        .filter(|d| !std::sync::Arc::ptr_eq(&d.rules, &d.profile.rules))
        .map(|d| format!("{}/{}", d.site, d.id))
        .collect();
    if !overridden.is_empty() {
        out.push_str(&format!(
            "  devices with their own rule overrides: {}\n",
            overridden.join(", ")
        ));
    }
    out.push_str("classes:\n");
    for c in classes {
        out.push_str(&format!(
            "  {:<12} acknowledge within {}, {} ({})\n",
            c.name,
            ms(c.ack_target_ms),
            c.on_site_target_ms
                .map(|t| format!("on site within {}", ms(t)))
                .unwrap_or_else(|| "no on-site target".into()),
            c.source
        ));
    }
    out.push_str(&format!(
        "  cleared alarms kept for {}\n",
        humantime::format_duration(cfg.alarms.retain_cleared)
    ));
    if !cfg.maintenance.is_empty() {
        out.push_str("planned maintenance:\n");
        let tz = &cfg.heating.season.tz;
        let at = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| {
                    t.to_zoned(tz.clone())
                        .strftime("%Y-%m-%d %H:%M %:z")
                        .to_string()
                })
                .unwrap_or_else(|_| ms.to_string())
        };
        for m in &cfg.maintenance {
            let d = cfg.inventory.get(m.device);
            out.push_str(&format!(
                "  {}/{} {} {} → {}: {}\n",
                d.site,
                d.id,
                d.name,
                at(m.start_ms),
                at(m.end_ms),
                m.reason
            ));
        }
    }
    out
}
