//! Operator-set maintenance windows (DESIGN §3, §4: a device in a window is `maintenance`, and
//! planned maintenance time is excluded from the intactness rate):
//! `POST /api/devices/{id}/maintenance` adds one (bearer token), `GET /api/maintenance` lists
//! the current and future ones, `DELETE /api/maintenance/{id}` ends one early (bearer token).
//! The engine checks and journals them; a window is in the JSON form of
//! `crate::encode::json::maintenance`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::body::{Fields, MAX_TEXT_CHARS};
use super::devices::{resolve_site, WriteQuery};
use super::remote;
use super::{auth, json, ApiError, Ctx};
use crate::encode::json as forms;

const WINDOW_EXAMPLE: &str = r#"{"start": "2026-11-15T08:00:00+08:00", "end": "2026-11-15T12:00:00+08:00", "reason": "年检", "by": "张伟"}"#;

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

pub(super) async fn add(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteQuery>, QueryRejection>,
    headers: HeaderMap,
    ext: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let remote = remote(&ext);
    let id = id.map(|Path(id)| id).unwrap_or_default();
    let id_log = id.escape_debug().to_string();
    let refuse = |e: ApiError, by: &str| {
        warn!(device = %id_log, by = %by.escape_debug(), remote = %remote,
              status = e.status.as_u16(), error = %e.message, "Maintenance window refused.");
        e.into_response()
    };
    if let Err(e) = auth::check(&headers, &ctx.api_token, &ctx.api_token_env) {
        return refuse(e, "-");
    }
    let asked_site = match query {
        Ok(Query(q)) => q.site,
        Err(e) => {
            return refuse(
                bad(format!(
                    "bad query: {}; the only parameter is ?site=",
                    e.body_text()
                )),
                "-",
            )
        }
    };
    let parsed = Fields::parse(body, WINDOW_EXAMPLE).and_then(|f| {
        f.only(&["start", "end", "reason", "by", "site"])?;
        Ok((
            f.time("start")?,
            f.time("end")?,
            f.text("reason", MAX_TEXT_CHARS)?,
            f.by()?,
            f.opt_str("site")?.map(str::to_owned),
        ))
    });
    let (start, end, reason, by, body_site) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(e, "-"),
    };
    let site = match (body_site.filter(|s| !s.is_empty()), asked_site) {
        (Some(b), Some(q)) if !q.is_empty() && b != q => {
            return refuse(
                bad(format!("`site` is {b:?} in the body but {q:?} in ?site=")),
                &by,
            )
        }
        (Some(b), _) => Some(b),
        (None, q) => q,
    };
    let site = match resolve_site(&ctx, &id, site.as_deref()) {
        Ok(s) => s,
        Err(e) => return refuse(e, &by),
    };
    let inv = &ctx.app.inventory;
    let Some(device) = inv.lookup(&site, &id) else {
        return refuse(
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no device `{id}` at site `{site}`"),
            ),
            &by,
        );
    };
    match ctx
        .app
        .core
        .add_maintenance(device, start, end, reason, by.clone())
        .await
    {
        Ok(w) => {
            info!(window = %w.id, site = %site.escape_debug(), device = %id_log,
                  start_ms = w.start_ms, end_ms = w.end_ms, by = %by.escape_debug(),
                  remote = %remote, "Maintenance window added.");
            let mut resp = json(StatusCode::CREATED, &forms::maintenance(inv, &w));
            if let Ok(loc) = HeaderValue::from_str(&format!("/api/maintenance/{}", w.id)) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            resp
        }
        Err(e) => refuse(e.into(), &by),
    }
}

/// `?site=&device=` of the window list; an empty value does not filter.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct WindowQuery {
    site: Option<String>,
    device: Option<String>,
}

/// Current and future windows, the soonest first.
pub(super) async fn list(
    State(ctx): State<Arc<Ctx>>,
    query: Result<Query<WindowQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        bad(format!(
            "bad query: {}; filters: site, device",
            e.body_text()
        ))
    })?;
    let inv = &ctx.app.inventory;
    let mut windows = ctx.app.core.windows().await?;
    windows.sort_by(|a, b| (a.start_ms, a.end_ms, &a.id).cmp(&(b.start_ms, b.end_ms, &b.id)));
    let want =
        |f: &Option<String>, have: &str| f.as_deref().is_none_or(|w| w.is_empty() || w == have);
    let out: Vec<serde_json::Value> = windows
        .iter()
        .filter(|w| {
            let d = inv.get(w.device);
            want(&q.site, &d.site) && want(&q.device, &d.id)
        })
        .map(|w| forms::maintenance(inv, w))
        .collect();
    Ok(json(StatusCode::OK, &out))
}

/// Ends a window now (one that has not started is cancelled).
pub(super) async fn end(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    let remote = remote(&ext);
    let id = id.map(|Path(id)| id).unwrap_or_default();
    let id_log = id.escape_debug().to_string();
    let refuse = |e: ApiError| {
        warn!(window = %id_log, remote = %remote, status = e.status.as_u16(),
              error = %e.message, "Ending a maintenance window refused.");
        e.into_response()
    };
    if let Err(e) = auth::check(&headers, &ctx.api_token, &ctx.api_token_env) {
        return refuse(e);
    }
    let core = &ctx.app.core;
    // The engine answers an unknown window as invalid; here it is simply not found.
    match core.windows().await {
        Ok(ws) if ws.iter().any(|w| w.id == id) => {}
        Ok(_) => {
            return refuse(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no current or future maintenance window with id {id:?}; GET /api/maintenance lists them"),
            ))
        }
        Err(e) => return refuse(e.into()),
    }
    match core.end_maintenance(id.clone()).await {
        Ok(w) => {
            info!(window = %id_log, end_ms = w.end_ms, remote = %remote,
                  "Maintenance window ended early.");
            json(StatusCode::OK, &forms::maintenance(&ctx.app.inventory, &w))
        }
        Err(e) => refuse(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::test_support::{app, bearer, get, req, send, Answer, Fixture, T0, TOKEN};
    use crate::model::Value;

    async fn call(fx: &Fixture, method: &str, uri: &str, auth: Option<&str>, body: &str) -> Answer {
        send(&fx.app, req(method, uri, auth, body)).await
    }

    fn rfc3339(ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .expect("a time")
            .to_string()
    }

    #[tokio::test]
    async fn add_list_and_end_a_window() {
        let fx = app(Some(TOKEN));
        let auth = bearer();
        // Starts in a minute (unix ms), ends in an hour (RFC 3339).
        let body = format!(
            r#"{{"start": {}, "end": "{}", "reason": "年检", "by": "张伟"}}"#,
            T0 + 60_000,
            rfc3339(T0 + 3_600_000)
        );
        let a = call(
            &fx,
            "POST",
            "/api/devices/E-1/maintenance",
            Some(&auth),
            &body,
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let w = a.json();
        assert_eq!(
            w,
            json!({"type": "maintenance", "id": "huafu-M1", "site": "huafu", "device": "E-1",
                   "name": "1号楼客梯", "start_ts": T0 + 60_000, "end_ts": T0 + 3_600_000,
                   "reason": "年检", "by": "张伟", "entered_ts": T0})
        );
        assert_eq!(a.headers["location"], "/api/maintenance/huafu-M1");

        let list = get(&fx.app, "/api/maintenance").await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.json(), json!([w.clone()]));
        assert_eq!(
            get(&fx.app, "/api/maintenance?site=north").await.json(),
            json!([])
        );
        let d = get(&fx.app, "/api/devices/E-1").await.json();
        assert_eq!(d["maintenance"], json!([w.clone()]));

        // Inside the window the device is in maintenance, whatever it reports.
        fx.clock.set(T0 + 61_000);
        fx.feed("huafu", "E-1", &[("fault_code", Value::Int(0))])
            .await;
        fx.tick().await;
        let m = get(&fx.app, "/api/devices?state=maintenance").await.json();
        assert_eq!(m[0]["id"], "E-1");
        // In event time the window applies at exactly its start (DESIGN §4), before the
        // reading at T0 + 61 s is applied; it used to be the reading's (or tick's) time.
        assert_eq!(m[0]["since_ts"], T0 + 60_000);

        // Ended early: now (within E-1's 30 s heartbeat, so it is intact again, not offline).
        fx.clock.set(T0 + 80_000);
        let a = call(&fx, "DELETE", "/api/maintenance/huafu-M1", Some(&auth), "").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.json()["end_ts"], T0 + 80_000);
        assert_eq!(get(&fx.app, "/api/maintenance").await.json(), json!([]));
        let d = get(&fx.app, "/api/devices/E-1").await.json();
        assert_eq!(d["state"], "intact", "{d}");
        let a = call(&fx, "DELETE", "/api/maintenance/huafu-M1", Some(&auth), "").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        a.error();
    }

    /// 年检 recorded afterwards (DESIGN §4 / issue "Event time"): a window wholly in the past
    /// is accepted (it used to be refused with 422), answered with who entered it and when,
    /// journaled whole; the device's state now is not rewritten.
    #[tokio::test]
    async fn a_window_recorded_afterwards_is_accepted() {
        let fx = app(Some(TOKEN));
        let auth = bearer();
        fx.feed("huafu", "E-1", &[("fault_code", Value::Int(0))])
            .await;
        fx.clock.set(T0 + 10_000);
        let body = format!(
            r#"{{"start": "{}", "end": "{}", "reason": "年检（补录）", "by": "张伟"}}"#,
            rfc3339(T0 - 7_200_000),
            rfc3339(T0 - 3_600_000)
        );
        let a = call(
            &fx,
            "POST",
            "/api/devices/E-1/maintenance",
            Some(&auth),
            &body,
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let w = a.json();
        assert_eq!(
            (
                w["start_ts"].clone(),
                w["end_ts"].clone(),
                w["entered_ts"].clone(),
                w["by"].clone()
            ),
            (
                json!(T0 - 7_200_000),
                json!(T0 - 3_600_000),
                json!(T0 + 10_000),
                json!("张伟")
            )
        );
        let d = get(&fx.app, "/api/devices/E-1").await.json();
        assert_eq!(d["state"], "intact", "{d}");
    }

    #[tokio::test]
    async fn refused_windows_have_their_status() {
        let fx = app(Some(TOKEN));
        let auth = bearer();
        let good = format!(
            r#"{{"start": {}, "end": {}, "reason": "年检", "by": "张伟"}}"#,
            T0,
            T0 + 3_600_000
        );
        let uri = "/api/devices/E-1/maintenance";
        let a = call(&fx, "POST", uri, None, &good).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let a = call(&fx, "DELETE", "/api/maintenance/x", Some("Bearer no"), "").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let a = call(
            &fx,
            "POST",
            "/api/devices/NOPE/maintenance",
            Some(&auth),
            &good,
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

        for (body, needle) in [
            (
                r#"{"end": 1790003600000, "reason": "r", "by": "b"}"#,
                "missing field `start`",
            ),
            (
                r#"{"start": 1790000000000, "end": 1790003600000, "by": "b"}"#,
                "missing field `reason`",
            ),
            (
                r#"{"start": 1790000000000, "end": 1790003600000, "reason": "r"}"#,
                "missing field `by`",
            ),
            (
                r#"{"start": "tomorrow", "end": 1790003600000, "reason": "r", "by": "b"}"#,
                "RFC 3339",
            ),
            (
                r#"{"start": true, "end": 1790003600000, "reason": "r", "by": "b"}"#,
                "not a boolean",
            ),
            (
                r#"{"start": 1790000000000, "end": 1790003600000, "reason": "r", "by": "b", "site": "north"}"#,
                "?site=",
            ),
        ] {
            let target = if body.contains("north") {
                "/api/devices/E-1/maintenance?site=huafu"
            } else {
                uri
            };
            let a = call(&fx, "POST", target, Some(&auth), body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
            assert!(a.error().contains(needle), "{body}: {}", a.body);
        }

        // End before start, or already over: the engine refuses (422).
        let back = format!(
            r#"{{"start": {}, "end": {}, "reason": "r", "by": "b"}}"#,
            T0 + 10_000,
            T0 + 5_000
        );
        let a = call(&fx, "POST", uri, Some(&auth), &back).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
        assert!(a.error().contains("must be after `start`"), "{}", a.body);

        // The body's site picks the other E-1.
        let north = format!(
            r#"{{"start": {}, "end": {}, "reason": "r", "by": "b", "site": "north"}}"#,
            T0,
            T0 + 5_000
        );
        let a = call(&fx, "POST", uri, Some(&auth), &north).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        assert_eq!(a.json()["site"], "north");
    }
}
