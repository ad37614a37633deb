//! The periodic KPI points (DESIGN §5): every `assessment.kpi_interval` (default 60 s) the
//! figures of today and of the month so far (local days and months in the site's time zone)
//! are computed from the journal (a read-only connection, on a blocking thread: the core stage
//! is never held up) and written as `intactness`, `response` and `heating` points, so that
//! dashboards need no heavy queries. The same figures answer `GET /api/kpi` (`intactness`,
//! `response`, `arrival`, `repair` — the three steps as `{day, month}` with the same inner
//! shape — and `heating`).
//!
//! - `intactness` (site, scope = site/category/building, scope_id): `instant` (the count form,
//!   from the engine's current states), `rate_day`, `rate_month`, `intact`, `total` (counts);
//! - `response` (site, category, severity, step; month to date): `timely_rate`, `p50_s`,
//!   `p90_s`, `max_s`, `count`; one point per (category, severity) for each of the three
//!   graded steps (DESIGN §4), `step` = `response` (acknowledged, 响应及时率), `arrival` (on
//!   site, 到场及时率) or `repair` (cleared, 修复及时率 / 零修急修及时率); a class with no
//!   target for a step (e.g. `minor` has no on-site target) has no point for that step;
//! - `heating` (site, building; in season only; month to date): `compliance`, `coverage`,
//!   `min_indoor_c`, `avg_indoor_c`.
//!
//! A figure with nothing to rate (no monitored time, no counted alarm) is left out of its point.
//!
//! When a month closes (the first computation in a new local month), the closed month's
//! scorecard is written as `assessment` points too (period tag `YYYY-MM`), as
//! `report --period YYYY-MM --publish` would.
//!
//! With `[mqtt]`, every computation is also published, retained, on `mqtt.kpi_topic` (the
//! `/api/kpi` JSON itself, which carries `"schema": 1`), and a closed month's scorecard on
//! `mqtt.assessment_topic` (`publish::assessment_json`), through the MQTT event sink's
//! connection: handed over with `try_send`, never waiting (full: dropped and counted in
//! `events_dropped`; the next interval brings fresh figures).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::civil::Date;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::figures::{compute, FigureSettings, Figures};
use crate::clock::Clock;
use crate::core::kpi::instant_rate;
use crate::core::response::{ResponseSummary, Step};
use crate::encode::line::{series_key, Field, FieldWriter};
use crate::journal::Journal;
use crate::model::event::DeviceState;
use crate::sink::store::StoreItem;
use crate::stage::CoreHandle;

/// The latest KPI figures as JSON (`GET /api/kpi`); `None` until the first computation.
pub type KpiView = Arc<RwLock<Option<Json>>>;

/// The scorecard of the month [from_ms, to_ms) from the journal at `path`, and its
/// `assessment` lines (period label `YYYY-MM` in the site's time zone).
#[allow(clippy::too_many_arguments)] // the inputs of one computation, each from its own config part
pub fn closed_month(
    path: &std::path::Path,
    site: &str,
    settings: &FigureSettings,
    kpis: &[crate::config::KpiSettings],
    grades: &[crate::config::Grade],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> anyhow::Result<(super::Period, super::Scorecard, Vec<u8>)> {
    let label = jiff::Timestamp::from_millisecond(from_ms)
        .map(|t| {
            t.to_zoned(settings.season.tz.clone())
                .strftime("%Y-%m")
                .to_string()
        })
        .unwrap_or_default();
    let period = super::Period {
        label,
        from_ms,
        to_ms,
    };
    let (_, card) = super::score(path, site, &period, now_ms, settings, kpis, grades)?;
    let lines = super::publish::assessment_lines(site, &period, &card);
    Ok((period, card, lines))
}

/// Where the task's summaries go on MQTT (the MQTT event sink's summary channel).
pub struct SummaryOut {
    pub tx: mpsc::Sender<crate::sink::mqtt::Summary>,
    pub kpi_topic: crate::mqtt::topic::SummaryTopic,
    pub assessment_topic: crate::mqtt::topic::SummaryTopic,
    pub stats: Arc<crate::stats::Stats>,
}

impl SummaryOut {
    /// Hands a summary to the publisher without waiting; when its queue is full the
    /// summary is dropped and counted.
    fn offer(&self, topic: String, body: &Json) {
        let payload = body.to_string().into_bytes();
        if self
            .tx
            .try_send(crate::sink::mqtt::Summary { topic, payload })
            .is_err()
        {
            self.stats
                .core
                .events_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// What the task needs.
pub struct KpiTask {
    pub journal: PathBuf,
    pub site: String,
    pub settings: FigureSettings,
    pub interval: Duration,
    pub store: Option<mpsc::Sender<StoreItem>>,
    pub core: CoreHandle,
    pub clock: Arc<dyn Clock>,
    pub view: KpiView,
    /// The scorecard's KPIs and grades (`[assessment]`), for the closed-month points.
    pub kpis: Vec<crate::config::KpiSettings>,
    pub grades: Vec<crate::config::Grade>,
    /// With `[mqtt]`: the retained summaries.
    pub summaries: Option<SummaryOut>,
}

/// Local midnight of today and of the first of this month, in unix ms.
pub fn day_and_month_start(now_ms: i64, tz: &jiff::tz::TimeZone) -> (i64, i64) {
    let Ok(ts) = jiff::Timestamp::from_millisecond(now_ms) else {
        return (now_ms, now_ms);
    };
    let today = ts.to_zoned(tz.clone()).date();
    let midnight = |d: Date| {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(now_ms)
    };
    (midnight(today), midnight(today.first_of_month()))
}

impl KpiTask {
    /// Runs until `stop`; the first figures come a couple of seconds after start.
    pub async fn run(self, stop: CancellationToken) {
        let mut next = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut month: Option<i64> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            next += self.interval;
            let (_, this_month) =
                day_and_month_start(self.clock.now_ms(), &self.settings.season.tz);
            if let Some(prev) = month.filter(|m| *m != this_month) {
                if let Err(e) = self.close_month(prev, this_month).await {
                    warn!(
                        error = format!("{e:#}"),
                        "Could not write the closed month's assessment."
                    );
                }
            }
            month = Some(this_month);
            if let Err(e) = self.once().await {
                warn!(error = format!("{e:#}"), journal = %self.journal.display(),
                      "Could not compute the KPI figures; trying again next interval.");
            }
        }
    }

    /// Writes the scorecard of the month [from_ms, to_ms) as `assessment` points.
    async fn close_month(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<()> {
        if self.store.is_none() && self.summaries.is_none() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let (path, site, settings) = (
            self.journal.clone(),
            self.site.clone(),
            self.settings.clone(),
        );
        let (kpis, grades) = (self.kpis.clone(), self.grades.clone());
        let (period, card, lines) = tokio::task::spawn_blocking(move || {
            closed_month(&path, &site, &settings, &kpis, &grades, from_ms, to_ms, now)
        })
        .await??;
        if let Some(out) = &self.summaries {
            let body = super::publish::assessment_json(&self.site, &period, &card, now);
            out.offer(
                out.assessment_topic.render(&self.site, &period.label),
                &body,
            );
        }
        let n = card.kpis.len();
        if let Some(store) = &self.store {
            if store.send(StoreItem::Lines(lines, n)).await.is_err() {
                anyhow::bail!("the store sink has stopped");
            }
        }
        tracing::info!(period = %period.label, total = card.total, grade = card.grade.as_deref().unwrap_or("-"),
                       "Month closed; assessment written.");
        Ok(())
    }

    async fn once(&self) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        let (day, month) = day_and_month_start(now, &self.settings.season.tz);
        let (path, site, settings) = (
            self.journal.clone(),
            self.site.clone(),
            self.settings.clone(),
        );
        let (today, mtd) =
            tokio::task::spawn_blocking(move || -> anyhow::Result<(Figures, Figures)> {
                let j = Journal::open_read_only(&path)?;
                Ok((
                    compute(&j, &site, day, now, now, &settings)?,
                    compute(&j, &site, month, now, now, &settings)?,
                ))
            })
            .await??;
        let states = self
            .core
            .devices()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let inv = &self.core.inventory;
        let mut instants: BTreeMap<(&'static str, String), Vec<Option<DeviceState>>> =
            BTreeMap::new();
        for v in &states {
            let d = inv.get(v.device);
            if d.site != self.site {
                continue;
            }
            for key in [
                ("site", d.site.clone()),
                ("category", d.category.clone()),
                ("building", d.building.clone()),
            ] {
                instants.entry(key).or_default().push(Some(v.state));
            }
        }
        let in_season = self.settings.season.contains(now);
        let (lines, n) = self.lines(now, &today, &mtd, &instants, in_season);
        if let Some(store) = &self.store {
            if store.send(StoreItem::Lines(lines, n)).await.is_err() {
                anyhow::bail!("the store sink has stopped");
            }
        }
        let view = self.json(now, &today, &mtd, &instants, in_season);
        if let Some(out) = &self.summaries {
            out.offer(out.kpi_topic.render(&self.site, ""), &view);
        }
        if let Ok(mut w) = self.view.write() {
            *w = Some(view);
        }
        Ok(())
    }

    fn lines(
        &self,
        now: i64,
        today: &Figures,
        mtd: &Figures,
        instants: &BTreeMap<(&'static str, String), Vec<Option<DeviceState>>>,
        in_season: bool,
    ) -> (Vec<u8>, usize) {
        let mut buf = Vec::new();
        let mut n = 0;
        let mut w = FieldWriter;
        let policy = self.settings.offline;
        for ((scope, id), states) in instants {
            let (intact, total, instant) = instant_rate(states.iter().copied(), policy);
            let (day, month) = match *scope {
                "site" => (today.intactness.rate, mtd.intactness.rate),
                "category" => (
                    today.intactness_by_category.get(id).and_then(|i| i.rate),
                    mtd.intactness_by_category.get(id).and_then(|i| i.rate),
                ),
                _ => (
                    today.intactness_by_building.get(id).and_then(|i| i.rate),
                    mtd.intactness_by_building.get(id).and_then(|i| i.rate),
                ),
            };
            let key = series_key(
                "intactness",
                &[("scope", scope), ("scope_id", id), ("site", &self.site)],
            );
            let fields = [
                ("instant", instant),
                ("rate_day", day),
                ("rate_month", month),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, Field::F64(v))))
            .chain([("intact", Field::U64(intact)), ("total", Field::U64(total))]);
            if w.line(&mut buf, &key, fields, now) {
                n += 1;
            }
        }
        n += response_lines(&self.site, mtd, now, &mut w, &mut buf);
        if in_season {
            for (building, h) in &mtd.heating_by_building {
                let key = series_key("heating", &[("building", building), ("site", &self.site)]);
                let fields = [
                    ("compliance", h.compliance),
                    ("coverage", h.coverage),
                    ("avg_indoor_c", h.avg_indoor_c),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, Field::F64(v))))
                .chain([("min_indoor_c", Field::F64(self.settings.min_indoor_c))]);
                if w.line(&mut buf, &key, fields, now) {
                    n += 1;
                }
            }
        }
        (buf, n)
    }

    fn json(
        &self,
        now: i64,
        today: &Figures,
        mtd: &Figures,
        instants: &BTreeMap<(&'static str, String), Vec<Option<DeviceState>>>,
        in_season: bool,
    ) -> Json {
        let policy = self.settings.offline;
        let scope = |name: &str,
                     day: &BTreeMap<String, super::figures::Intactness>,
                     month: &BTreeMap<String, super::figures::Intactness>|
         -> Json {
            instants
                .iter()
                .filter(|((s, _), _)| *s == name)
                .map(|((_, id), states)| {
                    let (intact, total, instant) = instant_rate(states.iter().copied(), policy);
                    (
                        id.clone(),
                        json!({
                            "instant": instant, "intact": intact, "total": total,
                            "rate_day": day.get(id).and_then(|i| i.rate),
                            "rate_month": month.get(id).and_then(|i| i.rate),
                        }),
                    )
                })
                .collect::<serde_json::Map<String, Json>>()
                .into()
        };
        let site_states = instants
            .get(&("site", self.site.clone()))
            .cloned()
            .unwrap_or_default();
        let (intact, total, instant) = instant_rate(site_states, policy);
        let mut out = json!({
            "schema": super::publish::SUMMARY_SCHEMA,
            "site": self.site,
            "ts": now,
            "day_from_ts": today.from_ms,
            "month_from_ts": mtd.from_ms,
            "intactness": {
                "instant": instant, "intact": intact, "total": total,
                "rate_day": today.intactness.rate, "rate_month": mtd.intactness.rate,
                "by_category": scope("category", &today.intactness_by_category, &mtd.intactness_by_category),
                "by_building": scope("building", &today.intactness_by_building, &mtd.intactness_by_building),
            },
            "heating": {
                "in_season": in_season,
                "min_indoor_c": self.settings.min_indoor_c,
                "compliance_month": mtd.heating.compliance,
                "coverage_month": mtd.heating.coverage,
                "compliance_day": today.heating.compliance,
                "coverage_day": today.heating.coverage,
                "avg_indoor_c": mtd.heating.avg_indoor_c,
                "by_building": mtd.heating_by_building.iter().map(|(b, h)| (b.clone(), json!({
                    "compliance": h.compliance, "coverage": h.coverage,
                    "avg_indoor_c": h.avg_indoor_c, "sensors": h.sensors,
                }))).collect::<serde_json::Map<String, Json>>(),
            },
        });
        for (k, v) in steps_json(today, mtd) {
            out[k] = v;
        }
        out
    }
}

/// The `response` points of `f`: one per (category, severity, step) for the three graded
/// steps, leaving out a (class, step) whose class has no target for the step. Returns how
/// many lines were written.
fn response_lines(
    site: &str,
    f: &Figures,
    now: i64,
    w: &mut FieldWriter,
    buf: &mut Vec<u8>,
) -> usize {
    let mut n = 0;
    let steps = [
        (Step::Response, &f.response_by_class),
        (Step::Arrival, &f.arrival.by_class),
        (Step::Repair, &f.repair.by_class),
    ];
    for (step, by_class) in steps {
        for ((category, severity), r) in by_class {
            if r.no_target > 0 && r.count + r.transient + r.pending == 0 {
                continue; // the class has no target for this step: nothing graded
            }
            let key = series_key(
                "response",
                &[
                    ("category", category),
                    ("severity", severity),
                    ("site", site),
                    ("step", step.as_str()),
                ],
            );
            let fields = [
                ("timely_rate", r.timely_rate),
                ("p50_s", r.p50_s),
                ("p90_s", r.p90_s),
                ("max_s", r.max_s),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, Field::F64(v))))
            .chain([("count", Field::U64(r.count))]);
            if w.line(buf, &key, fields, now) {
                n += 1;
            }
        }
    }
    n
}

/// One step's figures for `GET /api/kpi`: the same inner shape for response, arrival and
/// repair.
fn step_json(overall: &ResponseSummary, by_category: &BTreeMap<String, ResponseSummary>) -> Json {
    json!({
        "timely_rate": overall.timely_rate, "count": overall.count,
        "transient": overall.transient, "pending": overall.pending,
        "no_target": overall.no_target,
        "p50_s": overall.p50_s, "p90_s": overall.p90_s, "max_s": overall.max_s,
        "by_category": by_category.iter().map(|(k, r)| (k.clone(), json!({
            "timely_rate": r.timely_rate, "count": r.count, "transient": r.transient,
            "p50_s": r.p50_s, "p90_s": r.p90_s, "max_s": r.max_s,
        }))).collect::<serde_json::Map<String, Json>>(),
    })
}

/// `response`, `arrival` and `repair` of `/api/kpi`, each `{day, month}`.
fn steps_json(today: &Figures, mtd: &Figures) -> [(&'static str, Json); 3] {
    let pair = |g: fn(&Figures) -> Json| json!({"day": g(today), "month": g(mtd)});
    [
        (
            "response",
            pair(|f| step_json(&f.response, &f.response_by_category)),
        ),
        (
            "arrival",
            pair(|f| step_json(&f.arrival.overall, &f.arrival.by_category)),
        ),
        (
            "repair",
            pair(|f| step_json(&f.repair.overall, &f.repair.by_category)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kpi::OfflinePolicy;
    use crate::core::season::Season;
    use crate::model::event::{DeviceState, Event, Reason, StateChange};
    use crate::model::{Device, Inventory, Profile};

    /// A closed month's assessment lines: one fire-equipment device intact all November
    /// (2026-11, Asia/Shanghai), nothing else: fire intactness 100 % scores its full weight.
    #[test]
    fn a_closed_month_is_scored_and_written_as_assessment_lines() {
        let p = Arc::new(Profile::new(
            "fire_equipment".into(),
            "消防设施".into(),
            Duration::from_secs(30),
            vec![],
        ));
        let inv = Inventory::new(vec![Device {
            id: "FA-1".into(),
            name: "消防主机".into(),
            site: "jinxiu".into(),
            building: "消控室".into(),
            category: "fire_equipment".into(),
            profile: p,
            interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            polled: false,
            rules: Default::default(),
        }]);
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let (_, nov) = day_and_month_start(1_794_000_000_000, &tz); // 2026-11-12
        let (_, dec) = day_and_month_start(1_796_200_000_000, &tz); // 2026-12-02
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.append(
                &inv,
                &[Event::State(StateChange {
                    device: 0,
                    ts_ms: nov - 1,
                    from: None,
                    to: DeviceState::Intact,
                    reason: Reason::Reading,
                })],
            )
            .unwrap();
        }
        let settings = FigureSettings {
            offline: OfflinePolicy::NotIntact,
            season: Season::beijing(),
            min_indoor_c: 18.0,
        };
        let (period, card, lines) = closed_month(
            &dir.path().join(crate::journal::FILE_NAME),
            "jinxiu",
            &settings,
            &crate::config::default_kpis(),
            &crate::config::default_grades(),
            nov,
            dec,
            dec + 60_000,
        )
        .unwrap();
        assert_eq!(period.label, "2026-11");
        let fire = card
            .kpis
            .iter()
            .find(|k| k.name == "fire_intactness")
            .unwrap();
        assert_eq!((fire.actual, fire.score), (Some(1.0), Some(20.0)));
        let text = String::from_utf8(lines).unwrap();
        assert!(
            text.contains(&format!(
                "assessment,kpi=fire_intactness,period=2026-11,site=jinxiu actual=1,target=1,score=20,weight=20 {dec}"
            )),
            "{text}"
        );
        assert_eq!(text.lines().count(), card.kpis.len());
    }

    /// The `response` points carry a `step` tag: one line per (category, severity, step);
    /// a class with no target for a step (minor: no on-site target) has no line for it.
    #[test]
    fn response_points_have_one_line_per_class_and_step() {
        let class = |c: &str, s: &str| (c.to_owned(), s.to_owned());
        let summary = |timely: u64, late: u64| ResponseSummary {
            count: timely + late,
            timely,
            late,
            timely_rate: Some(timely as f64 / (timely + late) as f64),
            p50_s: Some(60.0),
            p90_s: Some(120.0),
            max_s: Some(120.0),
            ..Default::default()
        };
        let mut f = Figures::default();
        f.response_by_class
            .insert(class("elevator", "critical"), summary(3, 1));
        f.response_by_class
            .insert(class("elevator", "minor"), summary(1, 0));
        f.arrival
            .by_class
            .insert(class("elevator", "critical"), summary(1, 1));
        f.arrival.by_class.insert(
            class("elevator", "minor"),
            ResponseSummary {
                no_target: 1,
                ..Default::default()
            },
        );
        f.repair
            .by_class
            .insert(class("elevator", "critical"), summary(2, 2));
        let (mut w, mut buf) = (FieldWriter, Vec::new());
        let n = response_lines("jinxiu", &f, 1_000, &mut w, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(n, 4, "{text}");
        assert_eq!(
            lines,
            [
                "response,category=elevator,severity=critical,site=jinxiu,step=response timely_rate=0.75,p50_s=60,p90_s=120,max_s=120,count=4u 1000",
                "response,category=elevator,severity=minor,site=jinxiu,step=response timely_rate=1,p50_s=60,p90_s=120,max_s=120,count=1u 1000",
                "response,category=elevator,severity=critical,site=jinxiu,step=arrival timely_rate=0.5,p50_s=60,p90_s=120,max_s=120,count=2u 1000",
                "response,category=elevator,severity=critical,site=jinxiu,step=repair timely_rate=0.5,p50_s=60,p90_s=120,max_s=120,count=4u 1000",
            ]
        );
    }

    /// `/api/kpi` has `response`, `arrival` and `repair`, each `{day, month}` of one shape.
    #[test]
    fn the_kpi_json_has_the_three_steps_with_one_shape() {
        let mut today = Figures::default();
        today.arrival.overall = ResponseSummary {
            count: 4,
            timely: 3,
            late: 1,
            transient: 1,
            timely_rate: Some(0.75),
            ..Default::default()
        };
        today.repair.overall.no_target = 2;
        let v: serde_json::Map<String, Json> = steps_json(&today, &Figures::default())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let keys = |v: &Json| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        for step in ["response", "arrival", "repair"] {
            assert_eq!(keys(&v[step]), ["day", "month"], "{step}");
            assert_eq!(
                keys(&v[step]["day"]),
                keys(&v["response"]["month"]),
                "{step}"
            );
        }
        assert_eq!(
            keys(&v["response"]["day"]),
            [
                "by_category",
                "count",
                "max_s",
                "no_target",
                "p50_s",
                "p90_s",
                "pending",
                "timely_rate",
                "transient"
            ]
        );
        assert_eq!(v["arrival"]["day"]["timely_rate"], 0.75);
        assert_eq!(v["arrival"]["day"]["transient"], 1);
        assert_eq!(v["repair"]["day"]["no_target"], 2);
        assert!(v["arrival"]["month"]["timely_rate"].is_null());
    }
}
