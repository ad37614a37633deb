//! Fire alarm counts of a site over a period (issue 14, item 5): the journal's alarms of
//! `fire_equipment` devices raised in [from, end), `end = min(to, now)`:
//!
//! - **fire** — real fire alarms, rule `fire_alarm` (火警);
//! - **fault** — every other rule of a fire-equipment device (fault signals, pump in manual,
//!   low pressure, backup power, offline: 故障);
//! - `total = fire + fault`, and both by building (the alarm's device's building).
//!
//! **No "test" category.** The journal has no marker for a test (a detector tested with smoke
//! or a button, 消防测试): an alarm from a test looks exactly like a real one. A heuristic
//! such as "cleared within 60 s with nobody acknowledging" would also catch a real alarm
//! reset at the panel and a false alarm (dust, steam) cleared there, so it would silently
//! lower the count of fire alarms in a graded report. Such alarms are counted as fire alarms;
//! the response figures already set apart those that cleared before their acknowledgment
//! target with nobody acknowledging (`transient`). A test marker (an operator flagging an
//! alarm as a test, or a test mode signal of the panel) would be needed to count tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use super::format::{Report, Section};
use crate::journal::{AlarmRecord, Journal};

/// The category of fire equipment (profile `fire_equipment`).
pub const FIRE_CATEGORY: &str = "fire_equipment";
/// The rule of a real fire alarm (profile `fire_equipment`).
pub const FIRE_RULE: &str = "fire_alarm";

/// Fire alarms and faults of one building.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FireCount {
    pub fire: u64,
    pub fault: u64,
}

/// The site report's fire alarm counts: a `report::format::Section` (JSON key `fire_alarms`:
/// `{total, fire, fault, by_building: {b: {fire, fault}}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FireAlarms {
    pub total: u64,
    pub fire: u64,
    pub fault: u64,
    pub by_building: BTreeMap<String, FireCount>,
}

/// Counts the fire-equipment alarms among `alarms` (see the module docs).
pub fn count<'a>(alarms: impl IntoIterator<Item = &'a AlarmRecord>) -> FireAlarms {
    let mut f = FireAlarms::default();
    for a in alarms {
        if a.category != FIRE_CATEGORY {
            continue;
        }
        let b = f.by_building.entry(a.building.clone()).or_default();
        if a.rule == FIRE_RULE {
            f.fire += 1;
            b.fire += 1;
        } else {
            f.fault += 1;
            b.fault += 1;
        }
        f.total += 1;
    }
    f
}

/// The fire alarm counts of `site` over [from_ms, min(to_ms, now_ms)).
pub fn fire_alarms(
    journal: &Journal,
    site: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> anyhow::Result<FireAlarms> {
    let end = to_ms.min(now_ms).max(from_ms);
    Ok(count(&journal.alarms_raised_for_site(site, from_ms, end)?))
}

impl Section for FireAlarms {
    fn json(&self, doc: &mut Map<String, Value>) {
        doc.insert(
            "fire_alarms".into(),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
    }

    fn table(&self, _: &Report<'_>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n消防报警 Fire alarms  {} total 合计: {} fire 火警, {} fault 故障",
            self.total, self.fire, self.fault
        );
        for (b, c) in &self.by_building {
            let _ = writeln!(out, "  {b}  fire 火警 {}, fault 故障 {}", c.fire, c.fault);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kpi::OfflinePolicy;
    use crate::model::event::DeviceState::Intact;
    use crate::report::device::tests::{alarm, dev, journal, june, settings, st, DAY, H};
    use crate::report::format::Report as Doc;
    use crate::report::{compute, scorecard};

    /// One day: FA-1 (1号楼) raises fire_alarm twice and a fault; FA-2 (2号楼) a fire_alarm
    /// and an offline alarm; an elevator's alarm is not fire equipment; a fire alarm of the
    /// day before is not in the period; one raised after now (a partial day seen at 12:00) is
    /// not seen. → total 5, fire 3, fault 2; 1号楼 {2, 1}, 2号楼 {1, 1}.
    #[test]
    fn fire_alarms_and_faults_by_building() {
        let d = june();
        let devices = vec![
            dev("s", "FA-1", "1号楼", FIRE_CATEGORY),
            dev("s", "FA-2", "2号楼", FIRE_CATEGORY),
            dev("s", "EL-1", "1号楼", "elevator"),
        ];
        let ev = [
            st(0, d - H, Intact),
            st(1, d - H, Intact),
            st(2, d - H, Intact),
            alarm(1, 0, FIRE_RULE, d + H, Some(30_000), Some(600_000)),
            alarm(2, 0, FIRE_RULE, d + 2 * H, None, Some(20_000)),
            alarm(3, 0, "fault", d + 3 * H, None, None),
            alarm(4, 1, FIRE_RULE, d + 4 * H, None, None),
            alarm(5, 1, "offline", d + 5 * H, None, None),
            alarm(6, 2, "entrapment", d + 6 * H, None, None),
            alarm(7, 0, FIRE_RULE, d - H, None, None),
            alarm(8, 1, FIRE_RULE, d + 13 * H, None, None),
        ];
        let (_dir, j) = journal(devices, &ev);
        let f = fire_alarms(&j, "s", d, d + DAY, d + 12 * H).unwrap();
        assert_eq!((f.total, f.fire, f.fault), (5, 3, 2));
        assert_eq!(f.by_building["1号楼"], FireCount { fire: 2, fault: 1 });
        assert_eq!(f.by_building["2号楼"], FireCount { fire: 1, fault: 1 });
        assert_eq!(f.by_building.len(), 2);
        // Seen when the day is over, the 13:00 alarm counts too.
        let g = fire_alarms(&j, "s", d, d + DAY, d + DAY).unwrap();
        assert_eq!((g.total, g.fire), (6, 4));

        // In the site report: top-level keys `worst_devices` and `fire_alarms`, tables after
        // the report's own.
        let s = settings(OfflinePolicy::NotIntact);
        let figures = compute(&j, "s", d, d + DAY, d + DAY, &s).unwrap();
        let card = scorecard(
            &figures,
            &crate::config::default_kpis(),
            &crate::config::default_grades(),
            s.offline,
        );
        let sections = crate::report::Sections {
            worst_devices: crate::report::device::worst_devices(
                &j,
                "s",
                d,
                d + DAY,
                d + DAY,
                &s,
                10,
            )
            .unwrap(),
            fire_alarms: g,
        };
        let period = crate::report::Period {
            label: "2026-06-01".into(),
            from_ms: d,
            to_ms: d + DAY,
        };
        let labels = Default::default();
        let r = Doc {
            figures: &figures,
            scorecard: &card,
            period: &period,
            tz: &s.season.tz,
            category_labels: &labels,
            sections: &sections.list(),
        };
        let v = r.json();
        assert_eq!(v["fire_alarms"]["total"], 6);
        assert_eq!(v["fire_alarms"]["by_building"]["2号楼"]["fire"], 2);
        let mut keys: Vec<&str> = v["fire_alarms"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["by_building", "fault", "fire", "total"]);
        assert_eq!(v["worst_devices"], serde_json::json!([]));
        let t = r.table();
        let fire_at = t.find("消防报警 Fire alarms  6 total 合计: 4 fire 火警, 2 fault 故障");
        let worst_at = t.find("最差设备 Worst devices");
        let heating_at = t.find("供暖 Heating");
        assert!(heating_at < worst_at && worst_at < fire_at, "{t}");
        assert!(t.contains("  2号楼  fire 火警 2, fault 故障 1"), "{t}");
        assert!(t.contains("(none: no device lost intact time 无)"), "{t}");
    }
}
