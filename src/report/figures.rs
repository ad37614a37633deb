//! The figures of one site over one period [from, to), from the journal (DESIGN §4). Every
//! figure is judged at `end = min(to, now)`: a period that has not ended stops at now and is
//! marked `partial`; nothing that happened after `end` is seen, so a closed period's figures
//! never change.
//!
//! **Devices.** The devices of a site are those with a journaled state transition for that
//! site (the `site` of the rows) before `end`; a device first seen after the period is not part
//! of it. A device is counted in the building and category of its latest row up to `end` (a
//! device moved in the inventory counts, for the whole period, where it is at the end).
//!
//! **Intactness (设施设备完好率).** Each device's timeline is its last transition before
//! `from` (its state at `from`; none: *unmonitored* until its first transition, time left out
//! like maintenance) and its transitions in [from, end); `kpi::state_time` gives its intact,
//! fault, offline, maintenance and unmonitored milliseconds. Per category, building and site:
//!
//!  ```text
//!  rate = Σ_d intact_d / Σ_d (intact_d + fault_d + offline_d)
//!  ```
//!
//! i.e. Σ intact / Σ (end − from − maintenance − unmonitored). Offline counts as not intact
//! (`OfflinePolicy::NotIntact`, default) or is left out of the denominator
//! (`OfflinePolicy::Excluded`). A restart is not special (DESIGN §4): a device is offline
//! during a gateway's down time only if no readings cover it (older journals have
//! `gateway_down` offline rows, counted like any other offline time). Maintenance windows
//! in the journal count as maintenance whatever the transitions say (a window recorded after
//! its start). `instant` (and per
//! category, building) = |intact| / |not in maintenance| over each device's state at `end`
//! (`kpi::instant_rate`).
//!
//! **Response (响应及时率).** The site's alarms raised in [from, to), each judged at `end`
//! by `response::classify` from its journaled raise, acknowledgment and clear times and the
//! acknowledgment target of its class when raised: timely / late / transient / pending;
//! timeliness = timely / (timely + late); p50, p90 (nearest rank) and max over the counted
//! alarms' response times. Overall, by category and by (category, severity).
//!
//! **Heating (供暖达标率).** Only the part of [from, end) inside the site's heating season
//! counts: the season timeline is built from `Season::bounds` of the years around the period
//! (local midnight of the start day to local midnight after the end day, in the season's time
//! zone; a season may cross the new year). Indoor sensors are the devices with compliance
//! records (the engine journals each crossing of `min_indoor_c`, and the first temperature it
//! gets); a sensor counts from its first compliance record on (before it the gateway did not
//! know it as a sensor, like unmonitored time in intactness), so adjacent periods add up. Per
//! sensor, from `max(from, first record)` to `end`, `kpi::heating_time` walks its state
//! timeline (none before its first transition), its compliance timeline (last change before
//! `from`, then the changes) and the season timeline merged: in-season time, online time
//! (intact or fault; not offline, maintenance or unmonitored) and compliant time (online and
//! at or above the minimum; an unknown temperature is not compliant). Per building and site:
//!
//!  ```text
//!  compliance = Σ_s compliant_s / Σ_s online_s        coverage = Σ_s online_s / Σ_s season_s
//!  ```
//!
//! Once a sensor counts, all its in-season time is season time: offline, maintenance and
//! no-state time lower the coverage (how much of the season was watched). `avg_indoor_c` = the mean of the hourly means (`sum / n` of each
//! hourly `indoor_temp_c` record whose hour starts in season) of the scope. Loops are the
//! devices with hourly `supply_temp_c` / `return_temp_c` records: the mean of their hourly
//! means over every hour of the period (not only in season), ΔT = supply − return.
//!
//! **Cost.** Five queries, each one pass (per device one index seek into the (site, device,
//! ts) indexes for transitions and compliance); the rows are walked once, grouped by device
//! in the order the journal returns them.

use std::collections::BTreeMap;

use serde::Serialize;

use std::collections::HashMap;

use crate::core::kpi::{self, HeatingTime, OfflinePolicy, StateTime};
use crate::core::response::{self, AlarmTimes, ResponseSummary, Step};
use crate::core::season::Season;
use crate::journal::{AlarmRecord, Journal, TransitionRecord};
use crate::model::event::DeviceState;
use crate::model::event::COMPLIANCE_SIGNAL;

/// What the figures depend on besides the journal.
#[derive(Debug, Clone)]
pub struct FigureSettings {
    /// How offline time counts in intactness (`[assessment] offline`).
    pub offline: OfflinePolicy,
    /// The site's heating season and time zone.
    pub season: Season,
    /// `heating.min_indoor_c` (reported; compliance itself was decided by the engine).
    pub min_indoor_c: f64,
}

/// Intactness of a set of devices: their summed state time and its rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Intactness {
    /// Σ intact / Σ (period − maintenance − unmonitored [− offline]); `None`: nothing to rate.
    pub rate: Option<f64>,
    pub devices: u64,
    /// Milliseconds, summed over the devices.
    #[serde(skip)]
    pub time: StateTime,
}

/// Heating compliance of a set of indoor sensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Heating {
    /// compliant time / online in-season time; `None`: no online sensor time in season.
    pub compliance: Option<f64>,
    /// online in-season time / in-season time.
    pub coverage: Option<f64>,
    pub sensors: u64,
    /// Mean of the sensors' hourly means (°C), when any.
    pub avg_indoor_c: Option<f64>,
    #[serde(skip)]
    pub time: HeatingTime,
}

/// A heating loop's temperatures over the period (means of its hourly means).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Loop {
    pub building: String,
    pub supply_c: Option<f64>,
    pub return_c: Option<f64>,
    /// supply − return.
    pub delta_t_c: Option<f64>,
}

/// One step's timeliness (arrival or repair; response keeps its own fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepFigures {
    pub overall: ResponseSummary,
    pub by_category: BTreeMap<String, ResponseSummary>,
    /// By (category, severity).
    #[serde(skip)]
    pub by_class: BTreeMap<(String, String), ResponseSummary>,
    pub by_building: BTreeMap<String, ResponseSummary>,
}

/// Everything `report` needs, before the scorecard.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub site: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The figures stop at `now` (the period has not ended).
    pub partial: bool,
    pub intactness: Intactness,
    pub intactness_by_category: BTreeMap<String, Intactness>,
    pub intactness_by_building: BTreeMap<String, Intactness>,
    /// Instantaneous count rate at the end of the period: (intact, total, rate).
    pub instant: (u64, u64, Option<f64>),
    /// The same by category and by building (DESIGN §4: both forms per category, building
    /// and site).
    pub instant_by_category: BTreeMap<String, (u64, u64, Option<f64>)>,
    pub instant_by_building: BTreeMap<String, (u64, u64, Option<f64>)>,
    pub response: ResponseSummary,
    pub response_by_category: BTreeMap<String, ResponseSummary>,
    /// By (category, severity).
    pub response_by_class: BTreeMap<(String, String), ResponseSummary>,
    pub response_by_building: BTreeMap<String, ResponseSummary>,
    /// Arrival timeliness (到场及时率): on site within the class's on-site target.
    pub arrival: StepFigures,
    /// Repair timeliness (修复及时率, the plans' 零修急修及时率): cleared within the class's
    /// repair target.
    pub repair: StepFigures,
    /// In-season part of the period only; all `None` when the period has no season time.
    pub heating: Heating,
    pub heating_by_building: BTreeMap<String, Heating>,
    /// By loop device id.
    pub loops: BTreeMap<String, Loop>,
}

/// The figures of `site` over [from_ms, to_ms), judged at min(to_ms, now_ms) (see the module
/// docs for every definition). Reads the journal with five queries, each once.
pub fn compute(
    journal: &Journal,
    site: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    settings: &FigureSettings,
) -> anyhow::Result<Figures> {
    // The judging time; an empty period when it is not after `from_ms`.
    let judged = to_ms.min(now_ms);
    let end = judged.max(from_ms);
    let mut f = Figures {
        site: site.into(),
        from_ms,
        to_ms: judged,
        partial: now_ms < to_ms,
        ..Default::default()
    };

    // Intactness: one pass over the site's transitions, grouped by device.
    let transitions = journal.transitions_for_site(site, from_ms, end)?;
    let histories = rated_histories(journal, site, &transitions, from_ms, end)?;
    let mut instant: Vec<Option<DeviceState>> = Vec::with_capacity(histories.len());
    let mut instant_cat: BTreeMap<&str, Vec<Option<DeviceState>>> = BTreeMap::new();
    let mut instant_bld: BTreeMap<&str, Vec<Option<DeviceState>>> = BTreeMap::new();
    for h in &histories {
        let t = kpi::state_time(from_ms, end, h.initial, h.changes.iter().copied());
        for scope in [
            &mut f.intactness,
            f.intactness_by_category
                .entry(h.category.to_owned())
                .or_default(),
            f.intactness_by_building
                .entry(h.building.to_owned())
                .or_default(),
        ] {
            scope.time.add(&t);
            scope.devices += 1;
        }
        let last = h.changes.last().map(|c| c.1).or(h.initial);
        instant.push(last);
        instant_cat.entry(h.category).or_default().push(last);
        instant_bld.entry(h.building).or_default().push(last);
    }
    let p = settings.offline;
    f.intactness.rate = f.intactness.time.rate(p);
    for i in f
        .intactness_by_category
        .values_mut()
        .chain(f.intactness_by_building.values_mut())
    {
        i.rate = i.time.rate(p);
    }
    f.instant = kpi::instant_rate(instant, p);
    f.instant_by_category = instant_cat
        .into_iter()
        .map(|(k, v)| (k.to_owned(), kpi::instant_rate(v, p)))
        .collect();
    f.instant_by_building = instant_bld
        .into_iter()
        .map(|(k, v)| (k.to_owned(), kpi::instant_rate(v, p)))
        .collect();

    // Response, arrival and repair: the alarms raised in [from, to), judged at min(to, now).
    let alarms = journal.alarms_raised_for_site(site, from_ms, to_ms)?;
    let times: Vec<(&AlarmRecord, AlarmTimes)> =
        alarms.iter().map(|a| (a, AlarmTimes::from(a))).collect();
    let [response, arrival, repair] = Step::ALL.map(|step| step_figures(&times, step, judged));
    f.response = response.overall;
    f.response_by_category = response.by_category;
    f.response_by_class = response.by_class;
    f.response_by_building = response.by_building;
    f.arrival = arrival;
    f.repair = repair;

    // Heating: in-season time of the indoor sensors (those with compliance records).
    let season = SeasonTimeline::new(&settings.season, from_ms, end);
    let by_device: HashMap<&str, &History<'_>> = histories.iter().map(|h| (h.device, h)).collect();
    let compliance = journal.compliance_for_site(site, from_ms, end)?;
    let mut states: Vec<(i64, Option<DeviceState>)> = Vec::new();
    let mut ok: Vec<(i64, Option<bool>)> = Vec::new();
    for rows in compliance.chunk_by(|a, b| a.device == b.device) {
        // A sensor counts from its first compliance record (when the gateway first knew it
        // as an indoor sensor), so that the figures of two adjacent periods add up.
        let (start, ok0, inside) = match rows.split_first() {
            Some((r, rest)) if r.ts_ms < from_ms => (from_ms, r.compliant, rest),
            _ => (rows[0].ts_ms, None, rows),
        };
        ok.clear();
        ok.extend(inside.iter().map(|r| (r.ts_ms, r.compliant)));
        states.clear();
        let state0 = match by_device.get(rows[0].device.as_str()) {
            Some(h) => {
                states.extend(h.changes.iter().map(|&(ts, s)| (ts, Some(s))));
                h.initial
            }
            None => None,
        };
        let t = kpi::heating_time(
            start,
            end,
            state0,
            &states,
            ok0,
            &ok,
            season.initial,
            &season.changes,
        );
        let building = &rows[rows.len() - 1].building;
        for scope in [
            &mut f.heating,
            f.heating_by_building.entry(building.clone()).or_default(),
        ] {
            scope.time.add(&t);
            scope.sensors += 1;
        }
    }
    // Configured indoor sensors that never reported (never online in the period, so no
    // compliance record): their season time counts, online time 0 (coverage = online time /
    // season time; DESIGN §4). Compliance is unchanged (no online time).
    let reported: std::collections::HashSet<&str> =
        compliance.iter().map(|r| r.device.as_str()).collect();
    let online = |s: &DeviceState| matches!(s, DeviceState::Intact | DeviceState::Fault);
    for h in histories.iter().filter(|h| {
        h.category == INDOOR_CATEGORY
            && !reported.contains(h.device)
            && !h.initial.iter().any(online)
            && !h.changes.iter().any(|(_, s)| online(s))
    }) {
        let start = match (h.initial, h.changes.first()) {
            (Some(_), _) => from_ms,
            (None, Some(&(ts, _))) => ts,
            (None, None) => continue,
        };
        states.clear();
        states.extend(h.changes.iter().map(|&(ts, s)| (ts, Some(s))));
        let t = kpi::heating_time(
            start,
            end,
            h.initial,
            &states,
            None,
            &[],
            season.initial,
            &season.changes,
        );
        for scope in [
            &mut f.heating,
            f.heating_by_building
                .entry(h.building.to_owned())
                .or_default(),
        ] {
            scope.time.add(&t);
            scope.sensors += 1;
        }
    }
    // Mean indoor temperature: mean of the in-season hourly means, per building and site.
    let mut mean = Mean::default();
    let mut mean_bld: BTreeMap<String, Mean> = BTreeMap::new();
    for r in journal.hourly_for_site(site, COMPLIANCE_SIGNAL, from_ms, end)? {
        if r.n == 0 || !season.contains(r.hour_ms) {
            continue;
        }
        let m = r.sum / r.n as f64;
        mean.add(m);
        if let Some(b) = mean_bld.get_mut(&r.building) {
            b.add(m);
        } else {
            let mut b = Mean::default();
            b.add(m);
            mean_bld.insert(r.building, b);
        }
    }
    f.heating.avg_indoor_c = mean.get();
    for (b, m) in mean_bld {
        f.heating_by_building.entry(b).or_default().avg_indoor_c = m.get();
    }
    for h in std::iter::once(&mut f.heating).chain(f.heating_by_building.values_mut()) {
        h.compliance = h.time.compliance();
        h.coverage = h.time.coverage();
    }

    // Loops: means of the hourly means of supply and return over the whole period.
    let mut loops: BTreeMap<String, (String, Mean, Mean)> = BTreeMap::new();
    for (signal, supply) in [(SUPPLY_SIGNAL, true), (RETURN_SIGNAL, false)] {
        for r in journal.hourly_for_site(site, signal, from_ms, end)? {
            if r.n == 0 {
                continue;
            }
            let m = r.sum / r.n as f64;
            let e = loops
                .entry(r.device)
                .or_insert_with(|| (r.building.clone(), Mean::default(), Mean::default()));
            e.0 = r.building;
            if supply { &mut e.1 } else { &mut e.2 }.add(m);
        }
    }
    f.loops = loops
        .into_iter()
        .map(|(device, (building, s, r))| {
            let (supply_c, return_c) = (s.get(), r.get());
            let delta_t_c = supply_c.zip(return_c).map(|(s, r)| s - r);
            (
                device,
                Loop {
                    building,
                    supply_c,
                    return_c,
                    delta_t_c,
                },
            )
        })
        .collect();
    Ok(f)
}

/// The category of indoor temperature sensors (profile `indoor_sensor`): its devices count
/// for heating coverage even when they never reported.
pub const INDOOR_CATEGORY: &str = "indoor_sensor";

/// One step's timeliness over a period's alarms: overall, by category, by (category,
/// severity) and by building.
fn step_figures(alarms: &[(&AlarmRecord, AlarmTimes)], step: Step, judged: i64) -> StepFigures {
    let mut by_cat: BTreeMap<&str, Vec<AlarmTimes>> = BTreeMap::new();
    let mut by_class: BTreeMap<(&str, &str), Vec<AlarmTimes>> = BTreeMap::new();
    let mut by_bld: BTreeMap<&str, Vec<AlarmTimes>> = BTreeMap::new();
    for (a, t) in alarms {
        by_cat.entry(&a.category).or_default().push(*t);
        by_class
            .entry((&a.category, a.severity.as_str()))
            .or_default()
            .push(*t);
        by_bld.entry(&a.building).or_default().push(*t);
    }
    let sum = |v: &[AlarmTimes]| response::summarize_step(v, step, judged);
    let all: Vec<AlarmTimes> = alarms.iter().map(|(_, t)| *t).collect();
    StepFigures {
        overall: sum(&all),
        by_category: by_cat
            .into_iter()
            .map(|(k, v)| (k.to_owned(), sum(&v)))
            .collect(),
        by_class: by_class
            .into_iter()
            .map(|((c, s), v)| ((c.to_owned(), s.to_owned()), sum(&v)))
            .collect(),
        by_building: by_bld
            .into_iter()
            .map(|(k, v)| (k.to_owned(), sum(&v)))
            .collect(),
    }
}

/// A heating loop's supply and return temperature signals (profile `heating_loop`).
pub const SUPPLY_SIGNAL: &str = "supply_temp_c";
pub const RETURN_SIGNAL: &str = "return_temp_c";

/// Each device's timeline over [from_ms, end) as the intactness figures rate it: `histories`
/// of `transitions` (a `transitions_for_site` answer, or one device's rows of it) with the
/// site's maintenance windows overlaid. Shared with `report::device`.
pub(crate) fn rated_histories<'a>(
    journal: &Journal,
    site: &str,
    transitions: &'a [TransitionRecord],
    from_ms: i64,
    end: i64,
) -> anyhow::Result<Vec<History<'a>>> {
    let mut histories = histories(transitions, from_ms);
    let mut windows: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for (device, start, stop) in journal.windows_for_site(site, from_ms, end)? {
        windows.entry(device).or_default().push((start, stop));
    }
    for h in &mut histories {
        if let Some(w) = windows.get(h.device) {
            h.overlay_windows(from_ms, w);
        }
    }
    Ok(histories)
}

/// One device's rows of a `transitions_for_site` answer: its state at `from` and its changes.
pub(crate) struct History<'a> {
    pub(crate) device: &'a str,
    /// Of the device's latest row (at the end of the period).
    pub(crate) building: &'a str,
    pub(crate) category: &'a str,
    pub(crate) initial: Option<DeviceState>,
    pub(crate) changes: Vec<(i64, DeviceState)>,
}

impl History<'_> {
    /// Maintenance windows `[start, end)` (sorted by start) over the device's timeline: inside
    /// one the device is in maintenance, whatever the transitions say (DESIGN §4: planned
    /// maintenance is excluded). Only where the device is monitored (from its first state).
    fn overlay_windows(&mut self, from_ms: i64, windows: &[(i64, i64)]) {
        let monitored_from = match (self.initial, self.changes.first()) {
            (Some(_), _) => from_ms,
            (None, Some(&(ts, _))) => ts,
            (None, None) => return,
        };
        let in_window = |t: i64| windows.iter().any(|&(a, b)| a <= t && t < b);
        let state_at = |t: i64| -> Option<DeviceState> {
            let mut s = self.initial;
            for &(ts, st) in &self.changes {
                if ts <= t {
                    s = Some(st);
                } else {
                    break;
                }
            }
            s
        };
        let mut points: Vec<i64> = self.changes.iter().map(|c| c.0).collect();
        for &(a, b) in windows {
            points.push(a.max(monitored_from));
            points.push(b.max(monitored_from));
        }
        points.sort_unstable();
        points.dedup();
        let initial = if self.initial.is_some() && in_window(from_ms) {
            Some(DeviceState::Maintenance)
        } else {
            self.initial
        };
        let mut changes: Vec<(i64, DeviceState)> = Vec::with_capacity(points.len());
        let mut cur = initial;
        for t in points {
            if t < from_ms || t < monitored_from {
                continue;
            }
            let s = if in_window(t) {
                Some(DeviceState::Maintenance)
            } else {
                state_at(t)
            };
            if let Some(s) = s {
                if cur != Some(s) {
                    changes.push((t, s));
                    cur = Some(s);
                }
            }
        }
        self.initial = initial;
        self.changes = changes;
    }
}

/// Groups transitions (ordered by device, then time, as the journal returns them) by device;
/// a device's row before `from_ms` (at most one, its first) is its initial state.
fn histories(rows: &[TransitionRecord], from_ms: i64) -> Vec<History<'_>> {
    rows.chunk_by(|a, b| a.device == b.device)
        .map(|rows| {
            let (initial, inside) = match rows.split_first() {
                Some((r, rest)) if r.ts_ms < from_ms => (Some(r.to), rest),
                _ => (None, rows),
            };
            let last = &rows[rows.len() - 1];
            History {
                device: &last.device,
                building: &last.building,
                category: &last.category,
                initial,
                changes: inside.iter().map(|r| (r.ts_ms, r.to)).collect(),
            }
        })
        .collect()
}

/// The heating season as a timeline over [from, to): in season at `from`, and the changes.
struct SeasonTimeline {
    initial: bool,
    changes: Vec<(i64, bool)>,
    /// The seasons overlapping [from, to), as [start, end).
    spans: Vec<(i64, i64)>,
}

impl SeasonTimeline {
    fn new(season: &Season, from_ms: i64, to_ms: i64) -> SeasonTimeline {
        let year = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.to_zoned(season.tz.clone()).year())
                .unwrap_or(1970)
        };
        // The season that started the year before `from` may still run (11-15 → 03-15).
        let spans: Vec<(i64, i64)> = (year(from_ms).saturating_sub(1)..=year(to_ms))
            .map(|y| season.bounds(y))
            .filter(|&(s, e)| s < e && e > from_ms && s < to_ms)
            .collect();
        let initial = spans.iter().any(|&(s, e)| s <= from_ms && from_ms < e);
        let mut changes = Vec::with_capacity(2 * spans.len());
        // In year order, an end is pushed before the next start at the same instant, and
        // `kpi::merge` keeps the last value at a time: seasons that touch stay in season.
        for &(s, e) in &spans {
            if s > from_ms && s < to_ms {
                changes.push((s, true));
            }
            if e > from_ms && e < to_ms {
                changes.push((e, false));
            }
        }
        SeasonTimeline {
            initial,
            changes,
            spans,
        }
    }

    fn contains(&self, ts_ms: i64) -> bool {
        self.spans.iter().any(|&(s, e)| s <= ts_ms && ts_ms < e)
    }
}

/// A running arithmetic mean.
#[derive(Default)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }
    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::season::MonthDay;
    use crate::model::event::{
        Alarm, AlarmEvent, AlarmEventKind, ComplianceChange, Event, HourlyStats, Reason, Stamp,
        StateChange,
    };
    use crate::model::rules::Severity;
    use crate::model::{Device, DeviceIdx, Inventory, Profile, Signal, SignalType};
    use jiff::civil::date;
    use jiff::tz::TimeZone;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;
    use DeviceState::*;

    const MIN: i64 = 60_000;
    pub(crate) const H: i64 = 3_600_000;
    pub(crate) const DAY: i64 = 24 * H;

    /// Signals 0: indoor_temp_c, 1: supply_temp_c, 2: return_temp_c (every test profile).
    pub(crate) fn dev(site: &str, id: &str, building: &str, category: &str) -> Device {
        let sig = |name: &str| Signal {
            name: name.into(),
            ty: SignalType::Float,
            unit: None,
            label: None,
        };
        let p = Arc::new(Profile::new(
            category.into(),
            "x".into(),
            Duration::from_secs(30),
            vec![
                sig("indoor_temp_c"),
                sig("supply_temp_c"),
                sig("return_temp_c"),
            ],
        ));
        Device {
            id: id.into(),
            name: format!("{building}{id}"),
            site: site.into(),
            building: building.into(),
            category: category.into(),
            rules: p.rules.clone(),
            profile: p,
            interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            polled: false,
        }
    }

    pub(crate) fn st(device: DeviceIdx, ts_ms: i64, to: DeviceState) -> Event {
        st_why(device, ts_ms, to, Reason::Reading)
    }

    fn st_why(device: DeviceIdx, ts_ms: i64, to: DeviceState, reason: Reason) -> Event {
        Event::State(StateChange {
            device,
            ts_ms,
            from: None,
            to,
            reason,
        })
    }

    fn ok(device: DeviceIdx, ts_ms: i64, compliant: Option<bool>) -> Event {
        Event::Compliance(ComplianceChange {
            device,
            ts_ms,
            compliant,
        })
    }

    /// One hour of one signal: n readings summing to `sum`.
    fn hour(device: DeviceIdx, hour_ms: i64, signal: u16, n: u64, sum: f64) -> Event {
        Event::Hourly(HourlyStats {
            device,
            hour_ms,
            signals: vec![(signal, n, sum, sum / n as f64, sum / n as f64)],
        })
    }

    /// An alarm as finally journaled: raised at `raised`, acknowledged `ack` ms later,
    /// cleared `clear` ms later, with the class's target.
    #[allow(clippy::too_many_arguments)] // a test helper: one argument per field a case varies
    fn alarm(
        seq: u64,
        device: DeviceIdx,
        severity: Severity,
        raised: i64,
        ack: Option<i64>,
        clear: Option<i64>,
        target_ms: i64,
    ) -> Event {
        Event::Alarm(AlarmEvent {
            kind: AlarmEventKind::Raised,
            ts_ms: raised,
            by: String::new(),
            alarm: Alarm {
                id: format!("s-{seq}"),
                device,
                rule: "r".into(),
                severity,
                class: "c".into(),
                message: "m".into(),
                raised_ms: raised,
                acknowledged: ack.map(|d| Stamp {
                    ts_ms: raised + d,
                    by: "张工".into(),
                }),
                on_site: None,
                cleared_ms: clear.map(|d| raised + d),
                ack_target_ms: target_ms,
                on_site_target_ms: None,
                repair_target_ms: None,
                escalations: Vec::new(),
            },
        })
    }

    pub(crate) fn journal(devices: Vec<Device>, events: &[Event]) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&Inventory::new(devices), events).unwrap();
        (dir, j)
    }

    pub(crate) fn settings(offline: OfflinePolicy) -> FigureSettings {
        FigureSettings {
            offline,
            season: Season::beijing(),
            min_indoor_c: 18.0,
        }
    }

    /// Local midnight of a date in a zone, unix ms.
    fn midnight(tz: &str, y: i16, m: i8, d: i8) -> i64 {
        date(y, m, d)
            .to_zoned(TimeZone::get(tz).unwrap())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    /// 2026-06-01 00:00 Asia/Shanghai (out of the heating season).
    pub(crate) fn june() -> i64 {
        midnight("Asia/Shanghai", 2026, 6, 1)
    }

    /// Test 1. Four elevators over a day, two buildings; a device of another site in fault all
    /// day is not part of the site.
    ///   EL-1 (1号楼) intact 24 h; EL-2 (1号楼) fault 08:00–10:00 → intact 22 h;
    ///   EL-3 (2号楼) maintenance 09:00–13:00 → intact 20 h; EL-4 (2号楼) offline
    ///   20:00–20:30 → intact 23.5 h.
    ///   site:  intact 24 + 22 + 20 + 23.5 = 89.5 h; denominator 4 × 24 − 4 = 92 h → 89.5/92
    ///          offline excluded: 92 − 0.5 = 91.5 h → 89.5/91.5
    ///   1号楼: 46 / 48 (both policies)
    ///   2号楼: 43.5 / (48 − 4) = 43.5/44; excluded: 43.5 / 43.5 = 1
    #[test]
    fn four_elevators_over_a_day() {
        let d = june();
        let devices = vec![
            dev("s", "EL-1", "1号楼", "elevator"),
            dev("s", "EL-2", "1号楼", "elevator"),
            dev("s", "EL-3", "2号楼", "elevator"),
            dev("s", "EL-4", "2号楼", "elevator"),
            dev("other", "EL-1", "1号楼", "elevator"),
        ];
        let mut ev: Vec<Event> = (0..5).map(|i| st(i, d - H, Intact)).collect();
        ev.extend([
            st(1, d + 8 * H, Fault),
            st(1, d + 10 * H, Intact),
            st(2, d + 9 * H, Maintenance),
            st(2, d + 13 * H, Intact),
            st(3, d + 20 * H, Offline),
            st(3, d + 20 * H + 30 * MIN, Intact),
            st(4, d, Fault),
        ]);
        let (_dir, j) = journal(devices, &ev);
        let f = compute(
            &j,
            "s",
            d,
            d + DAY,
            d + 2 * DAY,
            &settings(OfflinePolicy::NotIntact),
        )
        .unwrap();
        assert!(!f.partial);
        assert_eq!((f.from_ms, f.to_ms), (d, d + DAY));
        assert_eq!(f.intactness.devices, 4);
        assert_eq!(
            f.intactness.time,
            StateTime {
                intact: 89 * H + 30 * MIN,
                fault: 2 * H,
                offline: 30 * MIN,
                maintenance: 4 * H,
                unmonitored: 0,
            }
        );
        assert_eq!(f.intactness.rate, Some(89.5 / 92.0));
        assert_eq!(f.intactness_by_category.len(), 1);
        assert_eq!(f.intactness_by_category["elevator"], f.intactness);
        assert_eq!(f.intactness_by_building["1号楼"].rate, Some(46.0 / 48.0));
        assert_eq!(f.intactness_by_building["2号楼"].rate, Some(43.5 / 44.0));
        assert_eq!(f.intactness_by_building["2号楼"].devices, 2);
        // All four are intact again at the end of the day.
        assert_eq!(f.instant, (4, 4, Some(1.0)));
        assert_eq!(f.instant_by_building["1号楼"], (2, 2, Some(1.0)));

        let x = compute(
            &j,
            "s",
            d,
            d + DAY,
            d + 2 * DAY,
            &settings(OfflinePolicy::Excluded),
        )
        .unwrap();
        assert_eq!(x.intactness.rate, Some(89.5 / 91.5));
        assert_eq!(x.intactness_by_building["1号楼"].rate, Some(46.0 / 48.0));
        assert_eq!(x.intactness_by_building["2号楼"].rate, Some(1.0));

        // The instant form in the middle of EL-3's maintenance and EL-2's fault (period
        // ending 09:30): intact EL-1, EL-4; not in maintenance EL-1, EL-2, EL-4 → 2/3.
        let mid = compute(
            &j,
            "s",
            d,
            d + 9 * H + 30 * MIN,
            d + 2 * DAY,
            &settings(OfflinePolicy::NotIntact),
        )
        .unwrap();
        assert_eq!(mid.instant, (2, 3, Some(2.0 / 3.0)));
        // No response or heating facts: nothing to rate.
        assert_eq!(f.response.timely_rate, None);
        assert_eq!((f.heating.compliance, f.heating.sensors), (None, 0));
    }

    /// Test 2. The period starts before the journal's first entry.
    ///   A: first state at 06:00 (offline, start), intact from 07:00 → unmonitored 6 h,
    ///      offline 1 h, intact 17 h;  B: intact since the day before → intact 24 h.
    ///   rate = (17 + 24) / (18 + 24) = 41/42. C, first seen the next day, is not counted.
    #[test]
    fn a_period_that_starts_before_the_first_journal_entry() {
        let d = june();
        let devices = vec![
            dev("s", "A", "1号楼", "elevator"),
            dev("s", "B", "1号楼", "elevator"),
            dev("s", "C", "1号楼", "elevator"),
        ];
        let ev = [
            st_why(0, d + 6 * H, Offline, Reason::Start),
            st(0, d + 7 * H, Intact),
            st(1, d - H, Intact),
            st(2, d + 30 * H, Intact),
        ];
        let (_dir, j) = journal(devices, &ev);
        let s = settings(OfflinePolicy::NotIntact);
        let f = compute(&j, "s", d, d + DAY, d + 2 * DAY, &s).unwrap();
        assert_eq!(f.intactness.devices, 2);
        assert_eq!(f.intactness.time.unmonitored, 6 * H);
        assert_eq!(f.intactness.time.total(), 2 * DAY);
        assert_eq!(f.intactness.rate, Some(41.0 / 42.0));
        // Wholly before the journal: no devices, nothing to rate.
        let before = compute(&j, "s", d - 3 * DAY, d - 2 * DAY, d + 2 * DAY, &s).unwrap();
        assert_eq!(before.intactness, Intactness::default());
        assert_eq!(before.instant, (0, 0, None));
    }

    /// Test 3. Beijing's season (11-15 → 03-15, Asia/Shanghai) crossing the new year, and
    /// its end in March. Three indoor sensors, a loop and an elevator (not a sensor).
    ///
    /// P1 = [2026-12-20, 2027-01-10) local = 21 days = 504 h, all in season.
    ///   S1 (A楼): compliant; offline 12-31 20:00 → 01-01 08:00 = 12 h
    ///        → season 504, online 492, compliant 492
    ///   S2 (A楼): below the minimum 01-02 00:00 → 01-03 00:00 = 24 h
    ///        → season 504, online 504, compliant 480
    ///   S3 (B楼): no temperature known until 12-25 00:00 (5 d = 120 h); offline from 01-05
    ///        00:00 (5 d = 120 h), back intact exactly at P1's end (not seen)
    ///        → season 504, online 384, compliant 384 − 120 = 264
    ///   site: compliance = (492 + 480 + 264) / (492 + 504 + 384) = 1236/1380,
    ///         coverage = 1380/1512
    ///   A楼: 972/996, coverage 996/1008;  B楼: 264/384, coverage 384/504
    ///   indoor hourly means in season: S1 20.0 (40/2), S2 17.0, S3 23.0
    ///         → A楼 (20 + 17)/2 = 18.5; site (20 + 17 + 23)/3 = 20.0
    ///
    /// P2 = [2027-03-10, 2027-03-20) local; the season ends at 03-16 00:00 local, so its
    /// in-season part is 6 days = 144 h.
    ///   S1: offline 03-15 12:00 → 03-17 00:00, 12 h of it in season → online 132, compl. 132
    ///   S2: below the minimum from 03-14 00:00 → online 144, compliant 144 − 48 = 96
    ///   S3: intact since 01-10, compliant → online 144, compliant 144
    ///   S4: intact since November, but a sensor only from its first compliance record,
    ///       03-12 00:00 (compliant) → season 96, online 96, compliant 96; not a sensor in P1
    ///   site: compliance = (132 + 96 + 144 + 96) / (132 + 144 + 144 + 96) = 468/516;
    ///         coverage = 516 / (432 + 96) = 516/528
    ///   indoor: S1 03-15 00:00 mean 19.0 counts, 03-18 00:00 mean 30.0 is out of season.
    ///   loop HL-1: supply hours 55.0 (110/2), 53.0 → 54.0; return 40.0, 38.0 → 39.0;
    ///        ΔT = 15.0 (hours out of season count too).
    #[test]
    fn a_heating_season_that_crosses_the_new_year() {
        let sh = |y, m, d| midnight("Asia/Shanghai", y, m, d);
        let devices = vec![
            dev("s", "S1", "A楼", "indoor_sensor"),
            dev("s", "S2", "A楼", "indoor_sensor"),
            dev("s", "S3", "B楼", "indoor_sensor"),
            dev("s", "HL-1", "换热站", "heating_loop"),
            dev("s", "EL-1", "A楼", "elevator"),
            dev("s", "S4", "B楼", "indoor_sensor"),
        ];
        let nov = sh(2026, 11, 20);
        let p1 = (sh(2026, 12, 20), sh(2027, 1, 10));
        let p2 = (sh(2027, 3, 10), sh(2027, 3, 20));
        let ev = [
            st(0, nov, Intact),
            st(1, nov, Intact),
            st(2, nov, Intact),
            st(3, nov, Intact),
            st(4, nov, Intact),
            st(5, nov, Intact),
            ok(0, nov, Some(true)),
            ok(1, nov, Some(true)),
            ok(2, nov, None),
            // P1
            st(0, sh(2026, 12, 31) + 20 * H, Offline),
            st(0, sh(2027, 1, 1) + 8 * H, Intact),
            ok(1, sh(2027, 1, 2), Some(false)),
            ok(1, sh(2027, 1, 3), Some(true)),
            ok(2, sh(2026, 12, 25), Some(true)),
            st(2, sh(2027, 1, 5), Offline),
            st(2, sh(2027, 1, 10), Intact),
            hour(0, p1.0, 0, 2, 40.0),
            hour(1, p1.0, 0, 1, 17.0),
            hour(2, p1.0 + DAY, 0, 1, 23.0),
            // P2
            st(0, sh(2027, 3, 15) + 12 * H, Offline),
            st(0, sh(2027, 3, 17), Intact),
            ok(1, sh(2027, 3, 14), Some(false)),
            ok(5, sh(2027, 3, 12), Some(true)),
            hour(0, sh(2027, 3, 15), 0, 1, 19.0),
            hour(0, sh(2027, 3, 18), 0, 1, 30.0),
            hour(3, sh(2027, 3, 15), 1, 2, 110.0),
            hour(3, sh(2027, 3, 18), 1, 1, 53.0),
            hour(3, sh(2027, 3, 15), 2, 1, 40.0),
            hour(3, sh(2027, 3, 18), 2, 1, 38.0),
        ];
        let (_dir, j) = journal(devices, &ev);
        let s = settings(OfflinePolicy::NotIntact);
        let now = sh(2027, 6, 1);

        let f = compute(&j, "s", p1.0, p1.1, now, &s).unwrap();
        assert_eq!(
            f.heating.time,
            HeatingTime {
                season: 1512 * H,
                online: 1380 * H,
                compliant: 1236 * H
            }
        );
        assert_eq!(f.heating.compliance, Some(1236.0 / 1380.0));
        assert_eq!(f.heating.coverage, Some(1380.0 / 1512.0));
        assert_eq!(f.heating.sensors, 3);
        assert_eq!(f.heating.avg_indoor_c, Some(20.0));
        let a = &f.heating_by_building["A楼"];
        assert_eq!(
            (a.compliance, a.coverage, a.sensors, a.avg_indoor_c),
            (Some(972.0 / 996.0), Some(996.0 / 1008.0), 2, Some(18.5))
        );
        let b = &f.heating_by_building["B楼"];
        assert_eq!(
            (b.compliance, b.coverage, b.sensors, b.avg_indoor_c),
            (Some(264.0 / 384.0), Some(384.0 / 504.0), 1, Some(23.0))
        );
        // The loop has no hours in P1; the elevator is no sensor.
        assert!(f.loops.is_empty());
        assert!(!f.heating_by_building.contains_key("换热站"));

        let g = compute(&j, "s", p2.0, p2.1, now, &s).unwrap();
        assert_eq!(
            g.heating.time,
            HeatingTime {
                season: 528 * H,
                online: 516 * H,
                compliant: 468 * H
            }
        );
        assert_eq!(g.heating.compliance, Some(468.0 / 516.0));
        assert_eq!(g.heating.coverage, Some(516.0 / 528.0));
        assert_eq!(g.heating.sensors, 4);
        assert_eq!(g.heating.avg_indoor_c, Some(19.0));
        assert_eq!(
            g.loops["HL-1"],
            Loop {
                building: "换热站".into(),
                supply_c: Some(54.0),
                return_c: Some(39.0),
                delta_t_c: Some(15.0),
            }
        );
        // Out of season entirely (June): no heating figures, the sensors are still known.
        let june = compute(&j, "s", sh(2027, 6, 1), sh(2027, 6, 2), now + DAY, &s).unwrap();
        assert_eq!(
            (june.heating.compliance, june.heating.coverage),
            (None, None)
        );
        assert_eq!(june.heating.time, HeatingTime::default());
    }

    /// Test 4. Calendar months from local midnights: March 2026 in Europe/Berlin has
    /// 31 × 24 − 1 = 743 h (CET → CEST on 03-29), in Asia/Shanghai 744 h. One device offline
    /// for exactly 1 h across the Berlin switch (01:30Z → 02:30Z) → 742/743 and 743/744.
    /// October 2026 in Berlin has 745 h.
    #[test]
    fn month_boundaries_with_and_without_dst() {
        for (tz, hours) in [("Europe/Berlin", 743), ("Asia/Shanghai", 744)] {
            let (from, to) = (midnight(tz, 2026, 3, 1), midnight(tz, 2026, 4, 1));
            assert_eq!(to - from, hours * H, "{tz}");
            let off = "2026-03-29T01:30:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond();
            let ev = [
                st(0, from - DAY, Intact),
                st(0, off, Offline),
                st(0, off + H, Intact),
            ];
            let (_dir, j) = journal(vec![dev("s", "P-1", "泵房", "pump")], &ev);
            let s = FigureSettings {
                season: Season::new(
                    MonthDay::parse("11-15").unwrap(),
                    MonthDay::parse("03-15").unwrap(),
                    tz,
                )
                .unwrap(),
                ..settings(OfflinePolicy::NotIntact)
            };
            let f = compute(&j, "s", from, to, to + DAY, &s).unwrap();
            assert_eq!(f.intactness.time.total(), hours * H, "{tz}");
            assert_eq!(f.intactness.time.intact, (hours - 1) * H, "{tz}");
            assert_eq!(
                f.intactness.rate,
                Some((hours - 1) as f64 / hours as f64),
                "{tz}"
            );
        }
        let berlin = "Europe/Berlin";
        assert_eq!(
            midnight(berlin, 2026, 11, 1) - midnight(berlin, 2026, 10, 1),
            745 * H
        );
    }

    /// Test 5. Response over [D, D + 1 day), judged at its end (targets: elevator and gate
    /// 180 s, fire 60 s, minor 24 h).
    ///   a1 elevator acknowledged after 30 s            → timely (30 s)
    ///   a2 elevator acknowledged after 200 s           → late (200 s)
    ///   a3 elevator cleared after 10 s, unacknowledged → transient
    ///   a4 raised the day before, a5 raised at the period's end → not in the period
    ///   a6 fire raised 30 s before the end, open       → pending (younger than 60 s)
    ///   a7 fire raised 60 s before the end, open       → late (reached its target age)
    ///   a8 gate (major) acknowledged after 100 s       → timely (100 s)
    ///   a9 gate (minor) acknowledged after 3600 s      → timely (3600 s, target 24 h)
    ///   a10 elevator acknowledged only after the end   → late, no response time yet
    ///   a11 another site's alarm                       → not counted
    ///   site: timely 3, late 3 → 3/6; times [30, 100, 200, 3600]: p50 rank ⌈2⌉ = 2 → 100,
    ///         p90 rank ⌈3.6⌉ = 4 → 3600, max 3600; transient 1, pending 1
    ///   elevator: timely 1, late 2 → 1/3; times [30, 200]: p50 rank 1 → 30, p90 rank 2 → 200
    ///   fire: late 1, pending 1 → 0/1, no times; gate: 2/2
    #[test]
    fn response_timeliness_by_category_and_severity() {
        let d = june();
        let end = d + DAY;
        let devices = vec![
            dev("s", "EL-1", "1号楼", "elevator"),
            dev("s", "FA-1", "消控室", "fire_alarm"),
            dev("s", "G-1", "南门", "access_gate"),
            dev("other", "EL-1", "1号楼", "elevator"),
        ];
        use Severity::*;
        let t = 180_000;
        let ev = [
            st(0, d - H, Intact),
            alarm(1, 0, Critical, d + H, Some(30_000), None, t),
            alarm(2, 0, Critical, d + 2 * H, Some(200_000), Some(300_000), t),
            alarm(3, 0, Critical, d + 3 * H, None, Some(10_000), t),
            alarm(4, 0, Critical, d - H, Some(1_000), None, t),
            alarm(5, 0, Critical, end, Some(1_000), None, t),
            alarm(6, 1, Critical, end - 30_000, None, None, 60_000),
            alarm(7, 1, Critical, end - 60_000, None, None, 60_000),
            alarm(8, 2, Major, d + 5 * H, Some(100_000), None, t),
            alarm(9, 2, Minor, d + 6 * H, Some(3_600_000), None, 86_400_000),
            alarm(10, 0, Critical, end - H, Some(H + 10), None, t),
            alarm(11, 3, Critical, d + H, None, None, t),
        ];
        let (_dir, j) = journal(devices, &ev);
        let f = compute(
            &j,
            "s",
            d,
            end,
            end + DAY,
            &settings(OfflinePolicy::NotIntact),
        )
        .unwrap();
        let r = &f.response;
        assert_eq!(
            (r.count, r.timely, r.late, r.transient, r.pending),
            (6, 3, 3, 1, 1)
        );
        assert_eq!(r.timely_rate, Some(0.5));
        assert_eq!(
            (r.p50_s, r.p90_s, r.max_s),
            (Some(100.0), Some(3600.0), Some(3600.0))
        );
        let el = &f.response_by_category["elevator"];
        assert_eq!((el.count, el.timely, el.transient), (3, 1, 1));
        assert_eq!(el.timely_rate, Some(1.0 / 3.0));
        assert_eq!(
            (el.p50_s, el.p90_s, el.max_s),
            (Some(30.0), Some(200.0), Some(200.0))
        );
        let fire = &f.response_by_category["fire_alarm"];
        assert_eq!((fire.count, fire.late, fire.pending), (1, 1, 1));
        assert_eq!((fire.timely_rate, fire.p50_s), (Some(0.0), None));
        assert_eq!(f.response_by_category["access_gate"].timely_rate, Some(1.0));
        assert_eq!(f.response_by_category.len(), 3);
        let class = |c: &str, s: &str| &f.response_by_class[&(c.to_owned(), s.to_owned())];
        assert_eq!(class("access_gate", "major").count, 1);
        assert_eq!(class("access_gate", "minor").p50_s, Some(3600.0));
        assert_eq!(class("elevator", "critical"), el);
        assert_eq!(f.response_by_class.len(), 4);
    }

    /// Test 6. The gateway was down 10:00–12:00 (journaled as offline, reason gateway_down,
    /// then restored): intact 22 h of 24 → 22/24; with offline excluded 22/22 = 1.
    #[test]
    fn gateway_down_counts_as_offline() {
        let d = june();
        let ev = [
            st(0, d - H, Intact),
            st_why(0, d + 10 * H, Offline, Reason::GatewayDown),
            st_why(0, d + 12 * H, Intact, Reason::Restored),
        ];
        let (_dir, j) = journal(vec![dev("s", "EL-1", "1号楼", "elevator")], &ev);
        let run = |p| {
            compute(&j, "s", d, d + DAY, d + DAY, &settings(p))
                .unwrap()
                .intactness
        };
        let n = run(OfflinePolicy::NotIntact);
        assert_eq!((n.time.intact, n.time.offline), (22 * H, 2 * H));
        assert_eq!(n.rate, Some(22.0 / 24.0));
        assert_eq!(run(OfflinePolicy::Excluded).rate, Some(1.0));
    }

    /// A configured indoor sensor that never reported (offline from the start of the period)
    /// counts for coverage: 24 h of season time, 0 online; compliance is unchanged (S1 alone:
    /// 24/24 compliant); coverage = 24 / (24 + 24) = 0.5. Before the fix it was left out
    /// (coverage 1.0).
    #[test]
    fn a_sensor_that_never_reported_lowers_coverage() {
        let sh = |y, m, d| midnight("Asia/Shanghai", y, m, d);
        let d = sh(2026, 12, 1);
        let ev = [
            st(0, d, Intact),
            ok(0, d, Some(true)),
            st_why(1, d, Offline, Reason::Start),
        ];
        let devices = vec![
            dev("s", "S1", "A楼", "indoor_sensor"),
            dev("s", "S2", "A楼", "indoor_sensor"),
        ];
        let (_dir, j) = journal(devices, &ev);
        let f = compute(
            &j,
            "s",
            d,
            d + DAY,
            d + DAY,
            &settings(OfflinePolicy::NotIntact),
        )
        .unwrap();
        assert_eq!(f.heating.sensors, 2);
        assert_eq!(f.heating.compliance, Some(1.0));
        assert_eq!(f.heating.coverage, Some(0.5));
    }

    /// A maintenance window recorded afterwards (年检 entered at 14:00 for 08:00–12:00): the
    /// transitions say intact all day, the window row says maintenance 08:00–12:00; the report
    /// counts the window: intact 20 h of 20 rated hours, maintenance 4 h.
    #[test]
    fn a_window_recorded_afterwards_counts_as_maintenance() {
        let d = june();
        let w = crate::model::event::MaintenanceWindow {
            id: "s-M1".into(),
            device: 0,
            start_ms: d + 8 * H,
            end_ms: d + 12 * H,
            reason: "年检".into(),
            by: "张工".into(),
            entered_ms: d + 14 * H,
        };
        let ev = [st(0, d - H, Intact), Event::Maintenance(w)];
        let (_dir, j) = journal(vec![dev("s", "EL-1", "1号楼", "elevator")], &ev);
        let f = compute(
            &j,
            "s",
            d,
            d + DAY,
            d + DAY,
            &settings(OfflinePolicy::NotIntact),
        )
        .unwrap();
        assert_eq!(
            (f.intactness.time.intact, f.intactness.time.maintenance),
            (20 * H, 4 * H)
        );
        assert_eq!(f.intactness.rate, Some(1.0));
    }

    /// Test 7. A day seen at noon: the figures stop at now. Intact until 06:00, fault since
    /// → 6/12; a transition stamped after now (a device clock ahead) is not seen; an alarm
    /// raised 60 s before now with a 180 s target is pending.
    #[test]
    fn a_partial_period_stops_at_now() {
        let d = june();
        let now = d + 12 * H;
        let ev = [
            st(0, d - H, Intact),
            st(0, d + 6 * H, Fault),
            st(0, now + 30_000, Intact),
            alarm(1, 0, Severity::Critical, now - 60_000, None, None, 180_000),
        ];
        let (_dir, j) = journal(vec![dev("s", "EL-1", "1号楼", "elevator")], &ev);
        let s = settings(OfflinePolicy::NotIntact);
        let f = compute(&j, "s", d, d + DAY, now, &s).unwrap();
        assert!(f.partial);
        assert_eq!((f.from_ms, f.to_ms), (d, now));
        assert_eq!(f.intactness.time.total(), 12 * H);
        assert_eq!(f.intactness.rate, Some(0.5));
        assert_eq!(f.instant, (0, 1, Some(0.0)));
        assert_eq!((f.response.pending, f.response.count), (1, 0));
        // Seen when the day is over: the late intact change and the late alarm count.
        let g = compute(&j, "s", d, d + DAY, d + DAY, &s).unwrap();
        assert!(!g.partial);
        assert_eq!(g.intactness.time.intact, 6 * H + (12 * H - 30_000));
        assert_eq!((g.response.late, g.response.count), (1, 1));
        // A period that has not begun: empty, partial.
        let early = compute(&j, "s", d, d + DAY, d - H, &s).unwrap();
        assert!(early.partial);
        assert_eq!(early.intactness.time.total(), 0);
    }

    /// One random device: building, category, state before the period and changes.
    type RandomDevice = (
        u8,
        u8,
        Option<DeviceState>,
        Vec<(i64, DeviceState)>,
        Vec<(i64, Option<bool>)>,
    );

    fn random_device() -> impl Strategy<Value = RandomDevice> {
        let state = prop_oneof![Just(Intact), Just(Fault), Just(Offline), Just(Maintenance)];
        (
            0u8..3,
            0u8..2,
            proptest::option::of(state.clone()),
            proptest::collection::vec((0i64..10 * H, state), 0..12),
            proptest::collection::vec((-H..10 * H, proptest::option::of(any::<bool>())), 0..6),
        )
    }

    /// Journals the random devices in the given order.
    fn random_journal(devs: &[(usize, &RandomDevice)], base: i64) -> (tempfile::TempDir, Journal) {
        let mut devices = Vec::new();
        let mut ev = Vec::new();
        for (i, (k, (b, c, s0, changes, oks))) in devs.iter().enumerate() {
            let i = i as DeviceIdx;
            devices.push(dev(
                "s",
                &format!("D{k}"),
                &format!("B{b}"),
                &format!("C{c}"),
            ));
            if let Some(s0) = s0 {
                ev.push(st(i, base - H, *s0));
            }
            ev.extend(changes.iter().map(|&(ts, s)| st(i, base + ts, s)));
            ev.extend(oks.iter().map(|&(ts, o)| ok(i, base + ts, o)));
        }
        journal(devices, &ev)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Test 8. Every rate is a fraction; journaling the devices in another order gives the
        /// same figures; a period split in two adds up.
        #[test]
        fn rates_are_fractions_and_device_order_changes_nothing(
            devices in proptest::collection::vec(random_device(), 1..6),
            split in 0i64..8 * H,
            now_off in 4 * H..12 * H,
        ) {
            // Mid-December in Shanghai: in season.
            let base = midnight("Asia/Shanghai", 2026, 12, 20);
            let (from, to, now) = (base, base + 8 * H, base + now_off);
            let s = settings(OfflinePolicy::NotIntact);
            let fwd: Vec<(usize, &RandomDevice)> = devices.iter().enumerate().collect();
            let rev: Vec<(usize, &RandomDevice)> = fwd.iter().rev().copied().collect();
            let (_d1, j1) = random_journal(&fwd, base);
            let (_d2, j2) = random_journal(&rev, base);
            let f = compute(&j1, "s", from, to, now, &s).unwrap();
            prop_assert_eq!(&f, &compute(&j2, "s", from, to, now, &s).unwrap());
            let fraction = |r: Option<f64>| r.is_none_or(|r| (0.0..=1.0).contains(&r));
            for i in std::iter::once(&f.intactness)
                .chain(f.intactness_by_category.values())
                .chain(f.intactness_by_building.values())
            {
                prop_assert!(fraction(i.rate));
            }
            prop_assert!(fraction(f.instant.2));
            for h in std::iter::once(&f.heating).chain(f.heating_by_building.values()) {
                prop_assert!(fraction(h.compliance) && fraction(h.coverage));
            }
            let x = compute(&j1, "s", from, to, now, &settings(OfflinePolicy::Excluded)).unwrap();
            prop_assert!(fraction(x.intactness.rate));
            // [from, split) + [split, end) = [from, end), part by part.
            let end = to.min(now);
            let mid = from + split.min(end - from);
            let a = compute(&j1, "s", from, mid, now, &s).unwrap();
            let b = compute(&j1, "s", mid, end, now, &s).unwrap();
            let mut sum = a.intactness.time;
            sum.add(&b.intactness.time);
            // A device first seen in the second part is unmonitored in the first.
            sum.unmonitored += (f.intactness.devices - a.intactness.devices) as i64 * (mid - from);
            prop_assert_eq!(sum, f.intactness.time);
            let mut heat = a.heating.time;
            heat.add(&b.heating.time);
            prop_assert_eq!(heat, f.heating.time);
        }
    }
}
