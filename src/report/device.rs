//! Per-device figures (`estate-gateway report --device`, `GET /api/devices/{id}/figures`, the
//! dashboard's device page) and the site report's "worst ten devices", from the journal.
//!
//! **One device over [from, to)**, judged at `end = min(to, now)` like the site figures
//! (`report::figures`): nothing after `end` is seen, so a closed period's figures never change.
//!
//! - **Intactness** — the same definition and the same code as the site figure: the device's
//!   journaled transitions (its last one before `from`, then those in [from, end)) with its
//!   maintenance windows overlaid (`figures::rated_histories`), walked by `kpi::state_time`:
//!
//!    ```text
//!    rate = intact / (end − from − maintenance − unmonitored [− offline])
//!    ```
//!
//!   (offline left out of the denominator only with `[assessment] offline = "excluded"`).
//! - **Time in each state** — intact, fault, offline, maintenance, unmonitored (seconds; they
//!   add up to `end − from`).
//! - **Fault count** — journaled transitions into `fault` with a time in [from, end). Every
//!   entry counts: a device that goes back into fault (after being offline, or after a window)
//!   counts again; a fault already on at `from` is not counted.
//! - **Alarms** — the device's alarms raised in [from, end), each as seen at `end` (an
//!   acknowledgment, on-site report or clear after `end` is not shown).
//! - **MTTR** (mean time to restore) — the mean of `cleared − raised` over those alarms that
//!   cleared by `end`; `null` when none did. `restored` says how many that is.
//!
//! **Worst devices** (`worst_devices`): the devices of the site (those the site figures count)
//! with the most *lost intact time* over the period:
//!
//!  ```text
//!  lost = rated time − intact time = (end − from − maintenance − unmonitored) − intact
//!  ```
//!
//! i.e. fault + offline time under the default offline policy (fault only with `offline =
//! "excluded"`), in hours. Devices that lost nothing are not listed; ties go by device id.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::figures::{rated_histories, FigureSettings};
use super::format::{na, pad_left, pad_right, pct, rfc3339, width, Report, Section};
use super::period::Period;
use crate::core::kpi::{self, StateTime};
use crate::journal::{AlarmRecord, Journal, TransitionRecord};
use crate::model::event::{DeviceState, Stamp};
use crate::model::{site_of, Device, SiteOf};

/// How many devices the site report's worst-devices table lists.
pub const WORST_N: usize = 10;

const H: f64 = 3_600_000.0;

/// Time in each state, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StateSeconds {
    pub intact: f64,
    pub fault: f64,
    pub offline: f64,
    pub maintenance: f64,
    pub unmonitored: f64,
}

impl From<&StateTime> for StateSeconds {
    fn from(t: &StateTime) -> Self {
        let s = |ms: i64| ms as f64 / 1000.0;
        StateSeconds {
            intact: s(t.intact),
            fault: s(t.fault),
            offline: s(t.offline),
            maintenance: s(t.maintenance),
            unmonitored: s(t.unmonitored),
        }
    }
}

/// An operator's step: when (unix ms) and who; `{"ts", "by"}` as in the API's alarms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub ts: i64,
    pub by: String,
}

/// One alarm of the device, as seen at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceAlarm {
    pub id: String,
    pub rule: String,
    pub severity: String,
    pub class: String,
    pub message: String,
    pub raised_ts: i64,
    pub acknowledged: Option<Step>,
    pub on_site: Option<Step>,
    pub cleared_ts: Option<i64>,
    /// cleared − raised, seconds.
    pub restore_s: Option<f64>,
}

/// The figures of one device over one period (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceFigures {
    pub site: String,
    pub device: String,
    /// From the inventory (`with_device`); empty otherwise.
    pub name: String,
    /// Of the device's latest journaled row (as the site figures count it), else the
    /// inventory's.
    pub building: String,
    pub category: String,
    /// What the figures cover: [from_ts, to_ts), unix ms (`to_ts` = now for a period that has
    /// not ended).
    pub from_ts: i64,
    pub to_ts: i64,
    pub partial: bool,
    /// intact / rated time; `null`: nothing to rate (all maintenance or unmonitored).
    pub intactness: Option<f64>,
    pub time_s: StateSeconds,
    /// Milliseconds in each state.
    #[serde(skip)]
    pub time: StateTime,
    pub fault_count: u64,
    pub alarm_count: u64,
    /// Mean restore time of the alarms that cleared by the end, seconds.
    pub mttr_s: Option<f64>,
    /// How many alarms `mttr_s` averages.
    pub restored: u64,
    /// Oldest first.
    pub alarms: Vec<DeviceAlarm>,
}

impl DeviceFigures {
    /// Adds the inventory's name, and its building and category where the journal has none
    /// (a device never journaled).
    pub fn with_device(mut self, d: &Device) -> Self {
        self.name.clone_from(&d.name);
        if self.building.is_empty() {
            self.building.clone_from(&d.building);
        }
        if self.category.is_empty() {
            self.category.clone_from(&d.category);
        }
        self
    }
}

/// `device_id`'s rows of a `transitions_for_site` answer (ordered by device, so contiguous).
fn rows_of<'a>(rows: &'a [TransitionRecord], device_id: &str) -> &'a [TransitionRecord] {
    let Some(start) = rows.iter().position(|r| r.device == device_id) else {
        return &[];
    };
    let n = rows[start..]
        .iter()
        .take_while(|r| r.device == device_id)
        .count();
    &rows[start..start + n]
}

/// The figures of device `device_id` of `site` over [from_ms, to_ms), judged at
/// min(to_ms, now_ms) (see the module docs for every definition).
pub fn device_figures(
    journal: &Journal,
    site: &str,
    device_id: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    settings: &FigureSettings,
) -> anyhow::Result<DeviceFigures> {
    let judged = to_ms.min(now_ms);
    let end = judged.max(from_ms);
    let transitions = journal.transitions_for_site(site, from_ms, end)?;
    let rows = rows_of(&transitions, device_id);
    let histories = rated_histories(journal, site, rows, from_ms, end)?;
    let (time, building, category) = match histories.first() {
        Some(h) => (
            kpi::state_time(from_ms, end, h.initial, h.changes.iter().copied()),
            h.building,
            h.category,
        ),
        None => (kpi::state_time(from_ms, end, None, []), "", ""),
    };
    let fault_count = rows
        .iter()
        .filter(|r| r.to == DeviceState::Fault && (from_ms..end).contains(&r.ts_ms))
        .count() as u64;
    let records: Vec<AlarmRecord> = journal
        .alarms_raised_for_site(site, from_ms, end)?
        .into_iter()
        .filter(|a| a.device == device_id)
        .collect();
    let alarms: Vec<DeviceAlarm> = records.iter().map(|a| seen_at(a, end)).collect();
    let restores: Vec<f64> = alarms.iter().filter_map(|a| a.restore_s).collect();
    let mttr_s =
        (!restores.is_empty()).then(|| restores.iter().sum::<f64>() / restores.len() as f64);
    let (building, category) = match (building, records.last()) {
        ("", Some(a)) => (a.building.clone(), a.category.clone()),
        _ => (building.to_owned(), category.to_owned()),
    };
    Ok(DeviceFigures {
        site: site.into(),
        device: device_id.into(),
        name: String::new(),
        building,
        category,
        from_ts: from_ms,
        to_ts: judged,
        partial: now_ms < to_ms,
        intactness: time.rate(settings.offline),
        time_s: StateSeconds::from(&time),
        time,
        fault_count,
        alarm_count: alarms.len() as u64,
        mttr_s,
        restored: restores.len() as u64,
        alarms,
    })
}

/// An alarm as it stood at `end`: later steps are not seen yet.
fn seen_at(a: &AlarmRecord, end: i64) -> DeviceAlarm {
    let step = |s: &Option<Stamp>| {
        s.as_ref().filter(|s| s.ts_ms <= end).map(|s| Step {
            ts: s.ts_ms,
            by: s.by.clone(),
        })
    };
    let cleared_ts = a.cleared_ms.filter(|&c| c <= end);
    DeviceAlarm {
        id: a.id.clone(),
        rule: a.rule.clone(),
        severity: a.severity.as_str().into(),
        class: a.class.clone(),
        message: a.message.clone(),
        raised_ts: a.raised_ms,
        acknowledged: step(&a.acknowledged),
        on_site: step(&a.on_site),
        cleared_ts,
        restore_s: cleared_ts.map(|c| (c - a.raised_ms) as f64 / 1000.0),
    }
}

/// The JSON of `report --device --format json` and `GET /api/devices/{id}/figures`: the
/// fields of `DeviceFigures` plus `from` and `to` in RFC 3339 in the site's time zone.
pub fn device_json(f: &DeviceFigures, tz: &TimeZone) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("from".into(), rfc3339(f.from_ts, tz).into());
        m.insert("to".into(), rfc3339(f.to_ts, tz).into());
    }
    v
}

/// CSV: a header and one row of the device's figures (the alarm list is in the table and JSON).
pub fn device_csv(f: &DeviceFigures, period: &Period, tz: &TimeZone) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let t = &f.time_s;
    // Writing into a Vec cannot fail.
    let _ = w.write_record([
        "site",
        "device",
        "period",
        "from",
        "to",
        "intactness",
        "intact_s",
        "fault_s",
        "offline_s",
        "maintenance_s",
        "unmonitored_s",
        "fault_count",
        "alarm_count",
        "mttr_s",
        "partial",
    ]);
    let _ = w.write_record([
        f.site.clone(),
        f.device.clone(),
        period.label.clone(),
        rfc3339(f.from_ts, tz),
        rfc3339(f.to_ts, tz),
        opt(f.intactness),
        t.intact.to_string(),
        t.fault.to_string(),
        t.offline.to_string(),
        t.maintenance.to_string(),
        t.unmonitored.to_string(),
        f.fault_count.to_string(),
        f.alarm_count.to_string(),
        opt(f.mttr_s),
        f.partial.to_string(),
    ]);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Seconds as `12 s`, `4.5 min`, `2.25 h`.
fn duration(s: Option<f64>) -> String {
    match s {
        None => na(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.2} h", s / 3600.0),
    }
}

/// Aligned columns (CJK counted double-width): the first `left` columns left-aligned, the
/// others right-aligned; a dashed line under the head.
fn columns(head: &[&str], rows: &[Vec<String>], left: usize, indent: &str) -> String {
    let n = head.len();
    let ws: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| width(&r[i]))
                .chain([width(head[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut l = indent.to_owned();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(&if i < left {
                pad_right(c, ws[i])
            } else {
                pad_left(c, ws[i])
            });
        }
        l.trim_end().to_owned() + "\n"
    };
    let mut out = line(head.to_vec());
    out.push_str(indent);
    out.push_str(&"-".repeat(ws.iter().sum::<usize>() + 2 * n.saturating_sub(1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The device's figures for a terminal, bilingual like the site report.
pub fn device_table(f: &DeviceFigures, period: &Period, tz: &TimeZone) -> String {
    let mut out = String::new();
    let head = format!(
        "设备指标 Device figures · 站点 site {} · 设备 device {} {}",
        f.site, f.device, f.name
    );
    let _ = writeln!(out, "{}", head.trim_end());
    let _ = writeln!(
        out,
        "楼栋 building {} · 类别 category {}",
        f.building, f.category
    );
    let _ = writeln!(
        out,
        "周期 Period  {}  [{}, {})",
        period.label,
        rfc3339(period.from_ms, tz),
        rfc3339(period.to_ms, tz)
    );
    if f.partial {
        let _ = writeln!(
            out,
            "            partial / 未结束: figures up to 数据截至 {}",
            rfc3339(f.to_ts, tz)
        );
    }
    out.push('\n');
    let hours = |s: f64| format!("{:.2} h", s / 3600.0);
    let t = &f.time_s;
    let rows = [
        ("完好率 Intactness", pct(f.intactness)),
        ("完好 Intact", hours(t.intact)),
        ("故障 Fault", hours(t.fault)),
        ("离线 Offline", hours(t.offline)),
        ("检修 Maintenance", hours(t.maintenance)),
        ("未监测 Unmonitored", hours(t.unmonitored)),
        ("故障次数 Faults", f.fault_count.to_string()),
        ("告警数 Alarms", f.alarm_count.to_string()),
        (
            "平均修复时长 MTTR",
            format!("{} ({} restored 已恢复)", duration(f.mttr_s), f.restored),
        ),
    ];
    let wk = rows.iter().map(|r| width(r.0)).max().unwrap_or(0);
    let wv = rows
        .iter()
        .map(|r| width(r.1.split(" (").next().unwrap_or("")))
        .max()
        .unwrap_or(0);
    for (k, v) in &rows {
        let (num, rest) = match v.split_once(" (") {
            Some((a, b)) => (a, format!(" ({b}")),
            None => (v.as_str(), String::new()),
        };
        let _ = writeln!(out, "{}  {}{rest}", pad_right(k, wk), pad_left(num, wv));
    }
    out.push('\n');
    let _ = writeln!(out, "告警 Alarms");
    if f.alarms.is_empty() {
        let _ = writeln!(out, "  (none 无)");
        return out;
    }
    let time = |ms: Option<i64>| ms.map(|m| rfc3339(m, tz)).unwrap_or_else(|| "-".into());
    let step = |s: &Option<Step>| match s {
        Some(s) => format!("{} {}", rfc3339(s.ts, tz), s.by),
        None => "-".into(),
    };
    let rows: Vec<Vec<String>> = f
        .alarms
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.rule.clone(),
                a.severity.clone(),
                rfc3339(a.raised_ts, tz),
                step(&a.acknowledged),
                step(&a.on_site),
                time(a.cleared_ts),
            ]
        })
        .collect();
    out.push_str(&columns(
        &[
            "编号 id",
            "规则 rule",
            "级别 severity",
            "发生 raised",
            "确认 acknowledged",
            "到场 on site",
            "消除 cleared",
        ],
        &rows,
        7,
        "  ",
    ));
    out
}

/// One row of the worst-devices table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorstDevice {
    pub device: String,
    pub category: String,
    pub building: String,
    /// Lost intact time, hours (see the module docs).
    pub lost_h: f64,
    /// The device's intactness rate over the period.
    pub rate: Option<f64>,
}

/// The site report's worst devices: a `report::format::Section` (JSON key `worst_devices`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorstDevices(pub Vec<WorstDevice>);

/// The `n` devices of `site` with the most lost intact time over [from_ms, to_ms), judged at
/// min(to_ms, now_ms); most lost first, ties by device id; devices that lost none are left out.
pub fn worst_devices(
    journal: &Journal,
    site: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    settings: &FigureSettings,
    n: usize,
) -> anyhow::Result<WorstDevices> {
    let end = to_ms.min(now_ms).max(from_ms);
    let transitions = journal.transitions_for_site(site, from_ms, end)?;
    let p = settings.offline;
    let mut rows: Vec<(i64, WorstDevice)> =
        rated_histories(journal, site, &transitions, from_ms, end)?
            .iter()
            .filter_map(|h| {
                let t = kpi::state_time(from_ms, end, h.initial, h.changes.iter().copied());
                let lost = t.denominator(p) - t.intact;
                (lost > 0).then(|| {
                    (
                        lost,
                        WorstDevice {
                            device: h.device.to_owned(),
                            category: h.category.to_owned(),
                            building: h.building.to_owned(),
                            lost_h: lost as f64 / H,
                            rate: t.rate(p),
                        },
                    )
                })
            })
            .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.device.cmp(&b.1.device)));
    rows.truncate(n);
    Ok(WorstDevices(rows.into_iter().map(|(_, w)| w).collect()))
}

impl Section for WorstDevices {
    fn json(&self, doc: &mut Map<String, Value>) {
        doc.insert(
            "worst_devices".into(),
            json!(self
                .0
                .iter()
                .map(|w| json!({
                    "device": w.device,
                    "category": w.category,
                    "building": w.building,
                    "lost_h": w.lost_h,
                    "rate": w.rate,
                }))
                .collect::<Vec<_>>()),
        );
    }

    fn table(&self, r: &Report<'_>) -> String {
        let mut out =
            String::from("\n最差设备 Worst devices (lost intact hours 完好损失时长, top 10)\n");
        if self.0.is_empty() {
            out.push_str("  (none: no device lost intact time 无)\n");
            return out;
        }
        let label = |c: &str| match r.category_labels.get(c) {
            Some(l) => format!("{l} {c}"),
            None => c.to_owned(),
        };
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|w| {
                vec![
                    w.device.clone(),
                    label(&w.category),
                    w.building.clone(),
                    format!("{:.2}", w.lost_h),
                    pct(w.rate),
                ]
            })
            .collect();
        out.push_str(&columns(
            &[
                "设备 device",
                "类别 category",
                "楼栋 building",
                "损失 lost h",
                "完好率 rate",
            ],
            &rows,
            3,
            "  ",
        ));
        out
    }
}

/// The site of device `id` for the CLI: `asked` if it has the device, else `own` (the
/// gateway's site) if it has it, else the only site that has it; otherwise a message saying
/// what is wrong.
pub fn resolve_site(
    devices: &[Device],
    own: &str,
    id: &str,
    asked: Option<&str>,
) -> Result<String, String> {
    site_of(devices, id, own, asked).map_err(|e| match e {
        SiteOf::NotAt { site, sites } => format!(
            "no device `{id}` at site `{site}`{}",
            if sites.is_empty() {
                String::new()
            } else {
                format!("; it is at: {}", sites.join(", "))
            }
        ),
        SiteOf::Nowhere => format!(
            "no device `{id}` in the inventory; `estate-gateway check-config --verbose` lists the devices"
        ),
        SiteOf::Several(many) => format!(
            "device `{id}` exists at several sites ({}); add --site to say which",
            many.join(", ")
        ),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::core::kpi::OfflinePolicy;
    use crate::model::event::{Alarm, AlarmEvent, AlarmEventKind, Event, MaintenanceWindow};
    use crate::model::rules::Severity;
    use crate::model::DeviceIdx;
    use DeviceState::*;

    // The fixtures the site figures' tests use (fire.rs takes them from here too).
    pub(crate) use crate::report::figures::tests::{dev, journal, june, settings, st, DAY, H};

    /// An alarm as finally journaled: `rule`, raised at `raised`, acknowledged and cleared
    /// `ack`/`clear` ms later.
    pub(crate) fn alarm(
        seq: u64,
        device: DeviceIdx,
        rule: &str,
        raised: i64,
        ack: Option<i64>,
        clear: Option<i64>,
    ) -> Event {
        Event::Alarm(AlarmEvent {
            kind: AlarmEventKind::Raised,
            ts_ms: raised,
            by: String::new(),
            alarm: Alarm {
                id: format!("s-{seq}"),
                device,
                rule: rule.into(),
                severity: Severity::Critical,
                class: "c".into(),
                message: "m".into(),
                raised_ms: raised,
                acknowledged: ack.map(|d| Stamp {
                    ts_ms: raised + d,
                    by: "张工".into(),
                }),
                on_site: None,
                cleared_ms: clear.map(|d| raised + d),
                ack_target_ms: 180_000,
                on_site_target_ms: None,
                repair_target_ms: None,
                escalations: Vec::new(),
            },
        })
    }

    /// One elevator over one day D (24 h), intact before it:
    ///   02:00–04:00 fault, 06:00–07:00 offline, 10:00–13:00 planned window (年检),
    ///   15:00–16:00 fault, intact otherwise
    ///   → fault 3 h, offline 1 h, maintenance 3 h, intact 24 − 7 = 17 h;
    ///     rate 17 / (24 − 3) = 17/21 (offline excluded: 17/20); 2 transitions into fault.
    /// Alarms: a1 raised 02:00, acknowledged after 60 s, cleared after 2 h (7200 s);
    ///   a2 raised 15:00, cleared after 30 min (1800 s); a3 raised 20:00, cleared only the
    ///   next day (open at the end: not restored); a4 raised the day before; a5 another
    ///   device's. → 3 alarms, 2 restored, MTTR (7200 + 1800) / 2 = 4500 s.
    #[test]
    fn one_device_over_a_known_day() {
        let d = june();
        let w = MaintenanceWindow {
            id: "s-M1".into(),
            device: 0,
            start_ms: d + 10 * H,
            end_ms: d + 13 * H,
            reason: "年检".into(),
            by: "张工".into(),
            entered_ms: d,
        };
        let ev = [
            st(0, d - H, Intact),
            st(0, d + 2 * H, Fault),
            st(0, d + 4 * H, Intact),
            st(0, d + 6 * H, Offline),
            st(0, d + 7 * H, Intact),
            Event::Maintenance(w),
            st(0, d + 15 * H, Fault),
            st(0, d + 16 * H, Intact),
            st(1, d - H, Intact),
            st(1, d + H, Fault),
            alarm(1, 0, "fault", d + 2 * H, Some(60_000), Some(2 * H)),
            alarm(2, 0, "fault", d + 15 * H, None, Some(H / 2)),
            alarm(3, 0, "entrapment", d + 20 * H, None, Some(5 * H)),
            alarm(4, 0, "fault", d - 2 * H, None, Some(H)),
            alarm(5, 1, "fault", d + 3 * H, None, Some(H)),
        ];
        let devices = vec![
            dev("s", "EL-1", "1号楼", "elevator"),
            dev("s", "EL-2", "2号楼", "elevator"),
        ];
        let (_dir, j) = journal(devices.clone(), &ev);
        let s = settings(OfflinePolicy::NotIntact);
        let f = device_figures(&j, "s", "EL-1", d, d + DAY, d + 2 * DAY, &s).unwrap();
        assert_eq!(
            (
                f.time.intact,
                f.time.fault,
                f.time.offline,
                f.time.maintenance,
                f.time.unmonitored
            ),
            (17 * H, 3 * H, H, 3 * H, 0)
        );
        assert_eq!(f.intactness, Some(17.0 / 21.0));
        assert_eq!(f.time_s.intact, 17.0 * 3600.0);
        assert_eq!(f.fault_count, 2);
        assert_eq!((f.alarm_count, f.restored), (3, 2));
        assert_eq!(f.mttr_s, Some(4500.0));
        let ids: Vec<&str> = f.alarms.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["s-1", "s-2", "s-3"]);
        assert_eq!(
            f.alarms[0].acknowledged,
            Some(Step {
                ts: d + 2 * H + 60_000,
                by: "张工".into()
            })
        );
        assert_eq!(f.alarms[0].restore_s, Some(7200.0));
        assert_eq!(
            (f.alarms[2].cleared_ts, f.alarms[2].restore_s),
            (None, None)
        );
        assert_eq!(
            (f.building.as_str(), f.category.as_str()),
            ("1号楼", "elevator")
        );
        assert!(!f.partial);

        // Offline excluded: 17 / 20.
        let x = device_figures(
            &j,
            "s",
            "EL-1",
            d,
            d + DAY,
            d + 2 * DAY,
            &settings(OfflinePolicy::Excluded),
        )
        .unwrap();
        assert_eq!(x.intactness, Some(17.0 / 20.0));

        // Seen at 15:10 (partial): the second fault is on, a2 not cleared yet, a3 not raised.
        let p = device_figures(&j, "s", "EL-1", d, d + DAY, d + 15 * H + 600_000, &s).unwrap();
        assert!(p.partial);
        assert_eq!(p.fault_count, 2);
        assert_eq!((p.alarm_count, p.restored, p.mttr_s), (2, 1, Some(7200.0)));
        assert_eq!(p.alarms[1].cleared_ts, None);

        // A device the journal never saw: all unmonitored, no rate; the inventory fills in.
        let n = device_figures(&j, "s", "EL-9", d, d + DAY, d + 2 * DAY, &s)
            .unwrap()
            .with_device(&dev("s", "EL-9", "9号楼", "elevator"));
        assert_eq!((n.time.unmonitored, n.intactness), (DAY, None));
        assert_eq!(
            (n.building.as_str(), n.name.as_str()),
            ("9号楼", "9号楼EL-9")
        );

        // The JSON form: the fields plus `from`/`to` in the site's zone.
        let v = device_json(&f, &s.season.tz);
        assert_eq!(v["from"], "2026-06-01T00:00:00+08:00");
        assert_eq!(v["time_s"]["fault"], 10800.0);
        assert_eq!(v["mttr_s"], 4500.0);
        assert_eq!(v["alarms"][0]["acknowledged"]["by"], "张工");
        assert!(v.get("time").is_none());
        let period = Period {
            label: "2026-06-01".into(),
            from_ms: d,
            to_ms: d + DAY,
        };
        let csv = device_csv(&f, &period, &s.season.tz);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(
            lines[1].starts_with("s,EL-1,2026-06-01,2026-06-01T00:00:00+08:00,2026-06-02T00:00:00+08:00,0.8095238095238095,61200,10800,3600,10800,0,2,3,4500,false"),
            "{csv}"
        );
        let t = device_table(&f, &period, &s.season.tz);
        for n in [
            "完好率 Intactness",
            "80.95%",
            "3.00 h",
            "75.0 min (2 restored",
            "s-3",
        ] {
            assert!(t.contains(n), "missing {n:?} in:\n{t}");
        }
    }

    /// Twelve devices over one day: D00..D09 in fault for 1..10 h, D10 offline for 10 h, D11
    /// intact. Worst ten (most lost first, ties by id): D09 (10 h), D10 (10 h), D08 (9 h), …,
    /// D01 (2 h); D00 (1 h) is eleventh, D11 lost nothing. With offline excluded D10 lost
    /// nothing: D09 … D00.
    #[test]
    fn worst_ten_most_lost_first_ties_by_id() {
        let d = june();
        let mut devices = Vec::new();
        let mut ev = Vec::new();
        for i in 0..12u32 {
            devices.push(dev("s", &format!("D{i:02}"), "B", "elevator"));
            let i = i as DeviceIdx;
            ev.push(st(i, d - H, Intact));
            let lost = i64::from(i % 10 + 1) * H;
            match i {
                0..=9 => ev.push(st(i, d + H, Fault)),
                10 => ev.push(st(i, d + H, Offline)),
                _ => continue,
            }
            let back = if i == 10 { 10 * H } else { lost };
            ev.push(st(i, d + H + back, Intact));
        }
        let (_dir, j) = journal(devices, &ev);
        let run = |p| {
            worst_devices(&j, "s", d, d + DAY, d + DAY, &settings(p), WORST_N)
                .unwrap()
                .0
        };
        let w = run(OfflinePolicy::NotIntact);
        let ids: Vec<&str> = w.iter().map(|w| w.device.as_str()).collect();
        assert_eq!(
            ids,
            ["D09", "D10", "D08", "D07", "D06", "D05", "D04", "D03", "D02", "D01"]
        );
        assert_eq!(w[0].lost_h, 10.0);
        assert_eq!(w[0].rate, Some(14.0 / 24.0));
        assert_eq!(w[9].lost_h, 2.0);
        assert_eq!(
            (w[1].category.as_str(), w[1].building.as_str()),
            ("elevator", "B")
        );
        let x = run(OfflinePolicy::Excluded);
        let ids: Vec<&str> = x.iter().map(|w| w.device.as_str()).collect();
        assert_eq!(
            ids,
            ["D09", "D08", "D07", "D06", "D05", "D04", "D03", "D02", "D01", "D00"]
        );
        // As a report section: the JSON key and the table.
        let mut doc = Map::new();
        Section::json(&WorstDevices(w.clone()), &mut doc);
        assert_eq!(doc["worst_devices"][0]["device"], "D09");
        assert_eq!(doc["worst_devices"][0]["lost_h"], 10.0);
        let mut keys: Vec<&str> = doc["worst_devices"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["building", "category", "device", "lost_h", "rate"]);
    }

    #[test]
    fn cli_sites_resolve_to_the_asked_own_or_only_one() {
        let devices = [
            dev("huafu", "E-1", "1号楼", "elevator"),
            dev("north", "E-1", "1号楼", "elevator"),
            dev("north", "T-9", "9号楼", "indoor_sensor"),
            dev("east", "E-1", "1号楼", "elevator"),
        ];
        assert_eq!(
            resolve_site(&devices, "huafu", "E-1", None).unwrap(),
            "huafu"
        );
        assert_eq!(
            resolve_site(&devices, "huafu", "E-1", Some("north")).unwrap(),
            "north"
        );
        assert_eq!(
            resolve_site(&devices, "huafu", "T-9", None).unwrap(),
            "north"
        );
        let e = resolve_site(&devices, "huafu", "T-9", Some("huafu")).unwrap_err();
        assert!(e.contains("it is at: north"), "{e}");
        let e = resolve_site(&devices, "west", "E-1", None).unwrap_err();
        assert!(e.contains("several sites (east, huafu, north)"), "{e}");
        let e = resolve_site(&devices, "huafu", "X", None).unwrap_err();
        assert!(e.contains("no device `X`"), "{e}");
    }
}
