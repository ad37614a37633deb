//! The assessment side of the API, for the dashboard's 总览 and 考核 pages:
//!
//! - `GET /api/assessment`: what the scorecard grades against — the `[assessment]` KPIs
//!   (name, label, figure, target, weight, deduction), the grade bands, the offline policy,
//!   the site's heating season (and whether it is in season now), the response classes'
//!   targets and the categories' labels. Static for a running gateway.
//! - `GET /api/report?period=2026-11` (or `?from=&to=`, `?site=`): the scorecard of a period
//!   as `estate-gateway report --format json` prints it, by the same code path
//!   (`report::Period`, `report::score_with_sections` over a read-only journal on a blocking
//!   thread, `report::format::Report::json`), with the `worst_devices` and `fire_alarms`
//!   sections. `period=month` and `period=quarter` (or no period at all: the month) mean the
//!   current one in the site's time zone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{json, ApiError, Ctx};
use crate::config::{AssessmentSettings, Config, HeatingSettings, KpiFigure};
use crate::core::kpi::OfflinePolicy;
use crate::report::{self, format::Report, FigureSettings, Period};

/// What the report endpoints need from the configuration (built once at start).
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// The journal file (`data_dir/journal.sqlite`), opened read-only per request.
    pub journal: PathBuf,
    pub assessment: AssessmentSettings,
    pub heating: HeatingSettings,
    /// Response class → (acknowledgment target, on-site target), milliseconds.
    pub classes: BTreeMap<String, (i64, Option<i64>)>,
    /// Category → its Chinese label (the profiles' `label`).
    pub category_labels: BTreeMap<String, String>,
}

impl ReportContext {
    pub fn new(cfg: &Config) -> ReportContext {
        ReportContext {
            journal: cfg.gateway.data_dir.join(crate::journal::FILE_NAME),
            assessment: cfg.assessment.clone(),
            heating: cfg.heating.clone(),
            classes: cfg
                .alarms
                .classes
                .iter()
                .map(|(k, c)| (k.clone(), (c.ack_target_ms, c.on_site_target_ms)))
                .collect(),
            category_labels: cfg
                .profiles
                .iter()
                .map(|(k, p)| (k.clone(), p.label.clone()))
                .collect(),
        }
    }

    pub(super) fn figure_settings(&self, site: &str) -> FigureSettings {
        FigureSettings::for_site(&self.heating, self.assessment.offline, site)
    }
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn figure_json(f: &KpiFigure) -> Json {
    match f {
        KpiFigure::Intactness {
            categories,
            building,
        } => json!({"kind": "intactness", "categories": categories, "building": building}),
        KpiFigure::Response {
            categories,
            severity,
            step,
        } => json!({"kind": step.as_str(), "categories": categories, "severity": severity}),
        KpiFigure::Heating => json!({"kind": "heating"}),
    }
}

/// `GET /api/assessment`.
pub(super) async fn assessment(State(ctx): State<Arc<Ctx>>) -> Response {
    let r = &ctx.app.report;
    let site = &ctx.app.site;
    let (season, min_indoor_c) = r.heating.for_site(site);
    let now = ctx.app.clock.now_ms();
    let body = json!({
        "site": site,
        "kpis": r.assessment.kpis.iter().map(|k| json!({
            "name": k.name,
            "label": k.label,
            "figure": figure_json(&k.figure),
            "target": k.target,
            "weight": k.weight,
            "deduct_per_point": k.deduct_per_point,
        })).collect::<Vec<_>>(),
        "grades": r.assessment.grades.iter()
            .map(|g| json!({"name": g.name, "min": g.min})).collect::<Vec<_>>(),
        "offline": match r.assessment.offline {
            OfflinePolicy::NotIntact => "not_intact",
            OfflinePolicy::Excluded => "excluded",
        },
        "kpi_interval_s": r.assessment.kpi_interval.as_secs_f64(),
        "heating": {
            "in_season": season.contains(now),
            "min_indoor_c": min_indoor_c,
            "time_zone": season.tz.iana_name(),
        },
        "classes": r.classes.iter().map(|(k, (ack, on_site))| (k.clone(), json!({
            "ack_target_s": *ack as f64 / 1000.0,
            "on_site_target_s": on_site.map(|t| t as f64 / 1000.0),
        }))).collect::<serde_json::Map<String, Json>>(),
        "categories": r.category_labels,
    });
    json(StatusCode::OK, &body)
}

/// `?period=&from=&to=&site=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ReportQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
    site: Option<String>,
}

/// The label of the current month or quarter at `now_ms` in `tz` (`2026-11`, `2026Q4`).
fn current(which: &str, now_ms: i64, tz: &jiff::tz::TimeZone) -> String {
    let date = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| t.to_zoned(tz.clone()).date())
        .unwrap_or_default();
    match which {
        "quarter" => format!("{}Q{}", date.year(), (date.month() - 1) / 3 + 1),
        _ => format!("{}-{:02}", date.year(), date.month()),
    }
}

/// The period of `?period=` or `?from=&to=` (none: the current month) in the site's time
/// zone, judged at `now`; 400 with what is valid, or when it starts in the future.
pub(super) fn period_of(
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
    now: i64,
    settings: &FigureSettings,
) -> Result<Period, ApiError> {
    let tz = &settings.season.tz;
    let period = match (period, from, to) {
        (Some(p), None, None) => {
            let p = match p.trim() {
                w @ ("month" | "quarter") => current(w, now, tz),
                other => other.to_owned(),
            };
            Period::parse(&p, &settings.season)
        }
        (None, Some(f), Some(t)) => Period::between(&f, &t, tz),
        (None, None, None) => Period::parse(&current("month", now, tz), &settings.season),
        _ => {
            return Err(bad(
                "give `period` (2026-11, 2026Q4, 2026, heating-2026, month, quarter), or both `from` and `to`, not both kinds".into(),
            ))
        }
    }
    .map_err(|e| bad(e.to_string()))?;
    if period.from_ms >= now {
        return Err(bad(format!(
            "the period {} starts at {}, which is in the future; nothing to report yet",
            period.label,
            report::format::rfc3339(period.from_ms, tz)
        )));
    }
    Ok(period)
}

/// `GET /api/report`: the report's JSON (see the module docs).
pub(super) async fn report(
    State(ctx): State<Arc<Ctx>>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        bad(format!(
            "bad query: {}; parameters: period (2026-11, 2026Q4, 2026, heating-2026, month, quarter), or from and to; site",
            e.body_text()
        ))
    })?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let site = nonempty(q.site).unwrap_or_else(|| ctx.app.site.clone());
    if site != ctx.app.site && !ctx.app.inventory.devices().iter().any(|d| d.site == site) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("site `{site}` has no devices at this gateway"),
        ));
    }
    let r = ctx.app.report.clone();
    let settings = r.figure_settings(&site);
    let now = ctx.app.clock.now_ms();
    let period = period_of(
        nonempty(q.period),
        nonempty(q.from),
        nonempty(q.to),
        now,
        &settings,
    )?;
    from_journal("the report", move || {
        let (figures, card, sections) = report::score_with_sections(
            &r.journal,
            &site,
            &period,
            now,
            &settings,
            &r.assessment.kpis,
            &r.assessment.grades,
        )?;
        Ok(Report {
            figures: &figures,
            scorecard: &card,
            period: &period,
            tz: &settings.season.tz,
            category_labels: &r.category_labels,
            sections: &sections.list(),
        }
        .json())
    })
    .await
}

/// Runs `read` (blocking: SQLite) off the async workers and answers its JSON; a journal that
/// cannot be read is 503 with the cause, a task that failed 500 naming `what`.
pub(super) async fn from_journal(
    what: &'static str,
    read: impl FnOnce() -> anyhow::Result<Json> + Send + 'static,
) -> Result<Response, ApiError> {
    let body = tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{what} failed: {e}"),
            )
        })?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the journal: {e:#}"),
            )
        })?;
    Ok(json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::{app, get};

    #[test]
    fn current_month_and_quarter_in_the_site_time_zone() {
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        // 2026-10-31T16:30:00Z is 2026-11-01 00:30 in Shanghai.
        let ms = 1_793_464_200_000;
        assert_eq!(current("month", ms, &tz), "2026-11");
        assert_eq!(current("quarter", ms, &tz), "2026Q4");
    }

    #[tokio::test]
    async fn assessment_lists_the_default_kpis() {
        let fx = app(None);
        let a = get(&fx.app, "/api/assessment").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let v = a.json();
        assert_eq!(v["site"], "huafu");
        let names: Vec<&str> = v["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "fire_intactness",
                "electromechanical_intactness",
                "response_timeliness",
                "repair_timeliness",
                "heating_compliance",
                "arrival_timeliness"
            ]
        );
        assert_eq!(v["kpis"][2]["target"], 0.99);
        assert_eq!(v["grades"][0]["name"], "优秀");
        assert_eq!(v["categories"]["elevator"], "电梯");
    }

    #[tokio::test]
    async fn report_runs_the_report_code_path() {
        let mut fx = app(None);
        fx.state.report = Arc::new(ReportContext {
            journal: fx.journal_path(),
            ..(*fx.state.report).clone()
        });
        let router = fx.router();
        let a = get(&router, "/api/report?period=month").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let v = a.json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "site",
            "from",
            "to",
            "intactness",
            "response",
            "arrival",
            "repair",
            "heating",
            "score",
        ] {
            assert!(keys.contains(&k), "{k} missing: {v}");
        }
        assert_eq!(v["score"]["kpis"].as_array().unwrap().len(), 6);

        let a = get(&router, "/api/report?period=2026-13").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.error().contains("not a period"), "{}", a.body);
        let a = get(&router, "/api/report?period=9000-01").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.error().contains("in the future"), "{}", a.body);
        let a = get(&router, "/api/report?from=2026-11-01").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn report_pages_read_the_gateways_clock() {
        // The fixture's clock reads 2026-09-21 (a scaled demo clock may be anywhere): the
        // current month is September, and October is still in the future, whatever the
        // machine's wall clock says.
        let mut fx = app(None);
        fx.state.report = Arc::new(ReportContext {
            journal: fx.journal_path(),
            ..(*fx.state.report).clone()
        });
        let router = fx.router();
        let a = get(&router, "/api/report").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let from = a.json()["from"].as_str().unwrap_or_default().to_owned();
        assert!(from.starts_with("2026-09-01"), "{}", a.body);
        let a = get(&router, "/api/report?period=2026-10").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.error().contains("in the future"), "{}", a.body);
        let a = get(&router, "/api/assessment").await;
        assert_eq!(a.json()["heating"]["in_season"], false, "{}", a.body);
    }
}
