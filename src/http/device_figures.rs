//! `GET /api/devices/{id}/figures?from=&to=&site=`: one device's graded figures over a period
//! (`report::device`: intactness, time in each state, fault count, alarms, MTTR and the alarm
//! list), as `estate-gateway report --device ID --format json` prints them, by the same code
//! over a read-only journal on a blocking thread.
//!
//! `from`/`to`: RFC 3339 with an offset, a date (local midnight in the site's time zone) or
//! unix milliseconds; or `period` as `GET /api/report` takes it (`2026-11`, `2026Q4`, `month`,
//! …); neither: the current month in the site's time zone. `site` picks among devices with the
//! same id, as for `GET /api/devices/{id}`. Reading needs no token.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::devices::resolve_site;
use super::report::{from_journal, period_of};
use super::{ApiError, Ctx};
use crate::report::device;

/// `?from=&to=&period=&site=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FiguresQuery {
    from: Option<String>,
    to: Option<String>,
    period: Option<String>,
    site: Option<String>,
}

/// Unix milliseconds (all digits) as RFC 3339, for `Period::between`; anything else as given.
fn time_arg(s: String) -> String {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(ts) = t
            .parse::<i64>()
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        {
            return ts.to_string();
        }
    }
    s
}

/// `GET /api/devices/{id}/figures`.
pub(super) async fn figures(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<FiguresQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad device id: {}", e.body_text()),
        )
    })?;
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "bad query: {}; parameters: from and to (RFC 3339, a date or unix ms), or period (2026-11, 2026Q4, month, …); site",
                e.body_text()
            ),
        )
    })?;
    let site = resolve_site(&ctx, &id, q.site.as_deref())?;
    let inv = &ctx.app.inventory;
    let idx = inv.lookup(&site, &id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device `{id}` at site `{site}`"),
        )
    })?;
    let d = inv.get(idx).clone();
    let r = ctx.app.report.clone();
    let settings = r.figure_settings(&site);
    let now = ctx.app.clock.now_ms();
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let period = period_of(
        nonempty(q.period),
        nonempty(q.from).map(time_arg),
        nonempty(q.to).map(time_arg),
        now,
        &settings,
    )?;
    from_journal("the figures", move || {
        let journal = crate::journal::Journal::open_read_only(&r.journal)?;
        let f = device::device_figures(
            &journal,
            &site,
            &d.id,
            period.from_ms,
            period.to_ms,
            now,
            &settings,
        )?
        .with_device(&d);
        Ok(device::device_json(&f, &settings.season.tz))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::report::ReportContext;
    use crate::http::test_support::{app, get, T0};
    use crate::model::Value;

    #[test]
    fn unix_ms_become_rfc3339() {
        assert_eq!(time_arg("1790000000000".into()), "2026-09-21T14:13:20Z");
        assert_eq!(time_arg("2026-09-01".into()), "2026-09-01");
    }

    /// A real core stage journals E-1 (heartbeat timeout 30 s): intact at T0, entrapment (fault,
    /// alarm) at T0 + 60 s, freed at T0 + 300 s, silent otherwise. Over [T0 − 1 h, T0 + 10 min)
    /// the endpoint reads back: unmonitored 3600 s (before its first state), intact 30 + 30 s,
    /// fault 30 s (then offline), offline 30 + 210 + 270 = 510 s → 60 / 600 = 0.1; one fault,
    /// one alarm restored after 240 s.
    #[tokio::test]
    async fn figures_of_one_device_from_the_journal() {
        let mut fx = app(None);
        let el = |trapped: bool| {
            [
                ("mode", Value::Str("normal".into())),
                ("fault_code", Value::Int(0)),
                ("entrapment", Value::Bool(trapped)),
            ]
        };
        fx.feed("huafu", "E-1", &el(false)).await;
        fx.clock.set(T0 + 60_000);
        fx.feed("huafu", "E-1", &el(true)).await;
        fx.clock.set(T0 + 300_000);
        fx.feed("huafu", "E-1", &el(false)).await;
        fx.clock.set(T0 + 600_000);
        fx.stop_core().await;
        fx.state.report = Arc::new(ReportContext {
            journal: fx.journal_path(),
            ..(*fx.state.report).clone()
        });
        let router = fx.router();
        let uri = format!(
            "/api/devices/E-1/figures?from={}&to={}",
            T0 - 3_600_000,
            T0 + 600_000
        );
        let a = get(&router, &uri).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let v = a.json();
        assert_eq!(v["site"], "huafu");
        assert_eq!(v["device"], "E-1");
        assert_eq!(v["name"], "1号楼客梯");
        assert_eq!(v["building"], "1号楼");
        assert_eq!(v["partial"], false);
        assert_eq!(v["fault_count"], 1, "{v}");
        assert_eq!(v["alarm_count"], 1, "{v}");
        assert_eq!(v["restored"], 1, "{v}");
        assert_eq!(v["mttr_s"], 240.0, "{v}");
        let t = &v["time_s"];
        assert_eq!(
            [&t["unmonitored"], &t["intact"], &t["fault"], &t["offline"]],
            [3600.0, 60.0, 30.0, 510.0],
            "{v}"
        );
        assert_eq!(t["maintenance"], 0.0, "{v}");
        assert_eq!(v["intactness"], 0.1, "{v}");
        assert_eq!(v["alarms"][0]["rule"], "entrapment", "{v}");
        assert_eq!(v["alarms"][0]["cleared_ts"], T0 + 300_000, "{v}");
        for k in ["from", "to", "intactness", "from_ts", "to_ts", "category"] {
            assert!(v.get(k).is_some(), "{k} missing: {v}");
        }

        // The default period is the current month of the gateway's clock; `site` picks.
        let a = get(&router, "/api/devices/E-1/figures").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(
            a.json()["from"]
                .as_str()
                .unwrap_or_default()
                .starts_with("2026-09-01"),
            "{}",
            a.body
        );
        let a = get(&router, "/api/devices/E-1/figures?site=north&period=month").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.json()["alarm_count"], 0, "{}", a.body);

        // Unknown device, bad period, future period, unknown parameter.
        let a = get(&router, "/api/devices/NOPE/figures").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        let a = get(&router, "/api/devices/E-1/figures?from=yesterday&to=1").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert!(a.error().contains("not a time"), "{}", a.body);
        let a = get(&router, "/api/devices/E-1/figures?period=9000-01").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        let a = get(&router, "/api/devices/E-1/figures?when=now").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    }
}
