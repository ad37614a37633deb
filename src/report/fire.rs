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
