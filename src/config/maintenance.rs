//! `[[maintenance]]`: planned maintenance windows, each resolved to a device of the
//! inventory and checked (RFC 3339 times with offsets, an end after the start, a reason).

use super::raw::RawMaintenance;
use super::Errors;
use crate::model::event::PlannedMaintenance;
use crate::model::Inventory;

pub(super) fn build_maintenance(
    list: &[RawMaintenance],
    default_site: &str,
    inventory: &Inventory,
    errs: &mut Errors,
) -> Vec<PlannedMaintenance> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let key = |f: &str| format!("maintenance[{i}].{f}");
        let before = errs.len();
        let site = m
            .site
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(default_site);
        let device = if m.device.is_empty() {
            errs.push(
                key("device"),
                "is missing; give the device id, e.g. \"E-3-1\"",
            );
            None
        } else if site.is_empty() {
            errs.push(
                key("site"),
                "is missing and `gateway.site` is not set; give the window's site",
            );
            None
        } else {
            let found = inventory.lookup(site, &m.device);
            if found.is_none() {
                let sites = inventory.sites();
                errs.push(
                    key("device"),
                    format!(
                        "no device `{}` in site `{site}` ([[devices]] and devices_csv); sites with devices: {}",
                        m.device,
                        if sites.is_empty() { "none".to_owned() } else { sites.join(", ") }
                    ),
                );
            }
            found
        };
        let ts = |errs: &mut Errors, f: &str, s: &str| match s.trim().parse::<jiff::Timestamp>() {
            Ok(t) => Some(t.as_millisecond()),
            Err(_) => {
                errs.push(
                    key(f),
                    if s.is_empty() {
                        "is missing; write an RFC 3339 time with its offset, e.g. \"2026-12-01T09:00:00+08:00\"".to_owned()
                    } else {
                        format!("`{s}` is not an RFC 3339 time with an offset; write e.g. \"2026-12-01T09:00:00+08:00\"")
                    },
                );
                None
            }
        };
        let start = ts(errs, "start", &m.start);
        let end = ts(errs, "end", &m.end);
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                errs.push(
                    key("end"),
                    format!(
                        "`{}` is not after start `{}`; a window must end after it starts",
                        m.end, m.start
                    ),
                );
            }
        }
        if m.reason.trim().is_empty() {
            errs.push(
                key("reason"),
                "is missing; say why (it is journaled with the window), e.g. \"电梯年检\"",
            );
        }
        if errs.len() > before {
            continue;
        }
        if let (Some(device), Some(start_ms), Some(end_ms)) = (device, start, end) {
            out.push(PlannedMaintenance {
                device,
                start_ms,
                end_ms,
                reason: m.reason.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors, load_text, DEVICES};
    use super::*;

    #[test]
    fn planned_maintenance_is_resolved_and_checked() {
        let toml = format!(
            "{DEVICES}\n[[maintenance]]\ndevice = \"E-2\"\nstart = \"2026-12-01T09:00:00+08:00\"\nend = \"2026-12-01T17:00:00+08:00\"\nreason = \"电梯年检\"\n\n[[maintenance]]\ndevice = \"HX-1\"\nsite = \"a\"\nstart = \"2026-12-02T01:00:00Z\"\nend = \"2026-12-02T02:00:00Z\"\nreason = \"换泵\"\n"
        );
        let cfg = load_text(&toml, &[], &[]).expect("valid");
        assert_eq!(
            cfg.maintenance,
            [
                PlannedMaintenance {
                    device: 1,
                    start_ms: 1_796_086_800_000, // 2026-12-01T01:00:00Z
                    end_ms: 1_796_115_600_000,
                    reason: "电梯年检".into(),
                },
                PlannedMaintenance {
                    device: 2,
                    start_ms: 1_796_173_200_000, // 2026-12-02T01:00:00Z
                    end_ms: 1_796_176_800_000,
                    reason: "换泵".into(),
                },
            ]
        );

        let toml = format!(
            "{DEVICES}\n[[maintenance]]\ndevice = \"EL-3\"\nstart = \"2026-12-01 09:00\"\nend = \"2026-12-01T17:00:00+08:00\"\nreason = \"年检\"\n\n[[maintenance]]\ndevice = \"E-1\"\nsite = \"b\"\nstart = \"2026-12-01T09:00:00+08:00\"\nend = \"2026-12-01T08:00:00+08:00\"\ncolour = \"red\"\n"
        );
        let all = errors(&toml, &[], &[]);
        assert_has(
            &all,
            &[
                "maintenance[0].device: no device `EL-3` in site `a` ([[devices]] and devices_csv); sites with devices: a",
                "maintenance[0].start: `2026-12-01 09:00` is not an RFC 3339 time with an offset; write e.g. \"2026-12-01T09:00:00+08:00\"",
                "maintenance[1].device: no device `E-1` in site `b`",
                "maintenance[1].end: `2026-12-01T08:00:00+08:00` is not after start `2026-12-01T09:00:00+08:00`",
                "maintenance[1].reason: is missing",
                "maintenance[1].colour: unknown key; valid keys here: device, site, start, end, reason",
            ],
        );
        assert_eq!(all.lines().count(), 6, "{all}");
    }
}
