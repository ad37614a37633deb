//! The alarms of the control room (DESIGN §1, §4): `GET /api/alarms` (active ones and those
//! cleared within the retention time), `GET /api/alarms/{id}`, and the operator steps of the
//! lifecycle, `POST /api/alarms/{id}/ack` and `POST /api/alarms/{id}/on_site` (bearer token).
//!
//! Every alarm is in the one JSON form of `crate::encode::json::alarm` (the same as on MQTT, the
//! SSE stream and the webhook), its `timeliness` judged at the engine's now. The steps go to
//! the engine through the `CoreHandle`, in order with the readings, so an acknowledgment never
//! races the reading that raised the alarm; the engine decides and journals them.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::body::Fields;
use super::{auth, json, ApiError, Ctx};
use crate::encode::json as forms;
use crate::model::event::Alarm;
use crate::model::rules::Severity;
use crate::model::Inventory;

/// Alarms listed when `?limit=` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 500;
/// The largest `?limit=`.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// The header that says how many alarms matched before `?limit=` cut the list.
pub(crate) const TOTAL_HEADER: &str = "x-total-count";

const SEVERITIES: &str = "critical, major, minor";

/// `?active=&severity=&category=&device=&site=&limit=`, as given; an empty value does not
/// filter. `severity` and `category` take comma-separated lists.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AlarmQuery {
    active: Option<String>,
    severity: Option<String>,
    category: Option<String>,
    device: Option<String>,
    site: Option<String>,
    limit: Option<String>,
}

/// The checked filter.
#[derive(Debug)]
struct Filter {
    active: Option<bool>,
    severities: Vec<Severity>,
    categories: Vec<String>,
    device: Option<String>,
    site: Option<String>,
    limit: usize,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The non-empty items of a comma-separated value.
fn items(v: &Option<String>) -> impl Iterator<Item = &str> {
    v.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Filter {
    fn parse(ctx: &Ctx, q: AlarmQuery) -> Result<Filter, ApiError> {
        let active = match q.active.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(bad(format!(
                    "`active` must be true or false, not `{other}`"
                )))
            }
        };
        let severities = items(&q.severity)
            .map(|s| {
                Severity::parse(s)
                    .ok_or_else(|| bad(format!("unknown severity `{s}`; valid: {SEVERITIES}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let categories = items(&q.category)
            .map(|c| ctx.app.check_category(c).map(|()| c.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = match q.limit.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if n <= MAX_LIMIT => n,
                _ => {
                    return Err(bad(format!(
                        "`limit` must be a whole number from 0 to {MAX_LIMIT}, not `{l}` (default {DEFAULT_LIMIT})"
                    )))
                }
            },
        };
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Ok(Filter {
            active,
            severities,
            categories,
            device: nonempty(q.device),
            site: nonempty(q.site),
            limit,
        })
    }

    fn matches(&self, inv: &Inventory, a: &Alarm) -> bool {
        let d = inv.get(a.device);
        self.active.is_none_or(|want| a.is_active() == want)
            && (self.severities.is_empty() || self.severities.contains(&a.severity))
            && (self.categories.is_empty() || self.categories.contains(&d.category))
            && self.device.as_deref().is_none_or(|id| id == d.id)
            && self.site.as_deref().is_none_or(|s| s == d.site)
    }
}

/// The control room's order of active alarms: the most severe first (critical, major,
/// minor), then the oldest first — the one waiting longest is answered first.
pub(crate) fn control_room_order(a: &Alarm, b: &Alarm) -> Ordering {
    a.severity
        .cmp(&b.severity)
        .then(a.raised_ms.cmp(&b.raised_ms))
        .then_with(|| a.id.cmp(&b.id))
}

pub(super) async fn list(
    State(ctx): State<Arc<Ctx>>,
    query: Result<Query<AlarmQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        bad(format!(
            "bad query: {}; filters: active, severity, category, device, site, limit (e.g. /api/alarms?active=true&severity=critical)",
            e.body_text()
        ))
    })?;
    let filter = Filter::parse(&ctx, query)?;
    // Newest first, from the engine.
    let (alarms, now) = ctx.app.core.alarms().await?;
    let inv = &ctx.app.inventory;
    let mut chosen: Vec<&Alarm> = alarms.iter().filter(|a| filter.matches(inv, a)).collect();
    if filter.active == Some(true) {
        chosen.sort_by(|a, b| control_room_order(a, b));
    }
    let total = chosen.len();
    let body: Vec<serde_json::Value> = chosen
        .into_iter()
        .take(filter.limit)
        .map(|a| forms::alarm(inv, a, now))
        .collect();
    let mut resp = json(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(TOTAL_HEADER, HeaderValue::from(total as u64));
    Ok(resp)
}

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| bad(format!("bad alarm id: {}", e.body_text())))
}

pub(super) async fn one(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let (alarms, now) = ctx.app.core.alarms().await?;
    match alarms.iter().find(|a| a.id == id) {
        Some(a) => Ok(json(
            StatusCode::OK,
            &forms::alarm(&ctx.app.inventory, a, now),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no alarm with id {id:?} (alarms cleared more than the retention time ago are only in the journal)"
            ),
        )),
    }
}

/// An operator step on an alarm.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ack,
    OnSite,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Ack => "acknowledgment",
            Step::OnSite => "on-site report",
        }
    }
}

const STEP_EXAMPLE: &str = r#"{"by": "张伟", "ts": 1790000000000}"#;

pub(super) async fn ack(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    step(&ctx, Step::Ack, id, &headers, &ext, body).await
}

pub(super) async fn on_site(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    step(&ctx, Step::OnSite, id, &headers, &ext, body).await
}

async fn step(
    ctx: &Ctx,
    step: Step,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let remote = super::remote(ext);
    let id = id.map(|Path(id)| id).unwrap_or_default();
    let id_log = id.escape_debug().to_string();
    let refuse = |e: ApiError, by: &str| {
        warn!(alarm = %id_log, by = %by.escape_debug(), remote = %remote,
              status = e.status.as_u16(), error = %e.message,
              "Alarm {} refused.", step.as_str());
        e.into_response()
    };
    if let Err(e) = auth::check(headers, &ctx.api_token, &ctx.api_token_env) {
        return refuse(e, "-");
    }
    if id.is_empty() {
        return refuse(bad("bad alarm id".into()), "-");
    }
    let parsed = Fields::parse(body, STEP_EXAMPLE).and_then(|f| {
        f.only(&["by", "ts"])?;
        Ok((f.by()?, f.opt_millis("ts")?))
    });
    let (by, ts) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(e, "-"),
    };
    let core = &ctx.app.core;
    let result = match step {
        Step::Ack => core.acknowledge(id.clone(), by.clone(), ts).await,
        Step::OnSite => core.on_site(id.clone(), by.clone(), ts).await,
    };
    match result {
        Ok(alarm) => {
            info!(alarm = %id_log, by = %by.escape_debug(), remote = %remote,
                  "Alarm {} accepted.", step.as_str());
            // Judged at the step's own time: the engine's now, or the operator's `ts`.
            let at = [&alarm.acknowledged, &alarm.on_site]
                .into_iter()
                .flatten()
                .map(|s| s.ts_ms)
                .max()
                .unwrap_or(alarm.raised_ms);
            json(
                StatusCode::OK,
                &forms::alarm(&ctx.app.inventory, &alarm, at),
            )
        }
        Err(e) => refuse(e.into(), &by),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use serde_json::json;

    use super::*;
    use crate::http::test_support::{app, bearer, get, req, send, Answer, Fixture, T0, TOKEN};
    use crate::model::Value;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    /// E-1 at huafu reports `values` at `at`.
    async fn elevator(fx: &Fixture, at: i64, fault_code: i64, entrapment: bool) {
        fx.clock.set(at);
        fx.feed(
            "huafu",
            "E-1",
            &[
                ("mode", s("normal")),
                ("fault_code", Value::Int(fault_code)),
                ("entrapment", Value::Bool(entrapment)),
            ],
        )
        .await;
    }

    async fn post(fx: &Fixture, uri: &str, auth: Option<&str>, body: &str) -> Answer {
        send(&fx.app, req("POST", uri, auth, body)).await
    }

    #[tokio::test]
    async fn raise_list_and_acknowledge() {
        let fx = app(Some(TOKEN));
        let auth = bearer();
        elevator(&fx, T0, 0, true).await;

        let a = get(&fx.app, "/api/alarms").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.content_type, "application/json; charset=utf-8");
        assert_eq!(a.headers[TOTAL_HEADER], "1");
        let list = a.json();
        let alarm = &list[0];
        assert_eq!(alarm["id"], "huafu-1");
        assert_eq!(alarm["device"], "E-1");
        assert_eq!(alarm["site"], "huafu");
        assert_eq!(alarm["rule"], "entrapment");
        assert_eq!(alarm["severity"], "critical");
        assert_eq!(alarm["active"], true);
        assert_eq!(alarm["raised_ts"], T0);
        assert_eq!(alarm["acknowledged"], json!(null));
        assert_eq!(alarm["timeliness"], "pending");
        assert_eq!(alarm["ack_target_s"], 180.0);
        let one = get(&fx.app, "/api/alarms/huafu-1").await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(one.json(), *alarm);

        // Acknowledged 45 s after the raise, on the engine's clock.
        fx.clock.set(T0 + 45_000);
        let a = post(
            &fx,
            "/api/alarms/huafu-1/ack",
            Some(&auth),
            r#"{"by": "张伟"}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let acked = a.json();
        assert_eq!(
            acked["acknowledged"],
            json!({"ts": T0 + 45_000, "by": "张伟"})
        );
        assert_eq!(acked["response_s"], 45.0);
        assert_eq!(acked["timeliness"], "timely");
        assert_eq!(acked["on_site"], json!(null));

        // Twice: 409 saying by whom and when; nothing changes.
        fx.clock.set(T0 + 90_000);
        let a = post(
            &fx,
            "/api/alarms/huafu-1/ack",
            Some(&auth),
            r#"{"by": "李四"}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
        let e = a.error();
        assert!(e.contains("already acknowledged by 张伟"), "{e}");
        assert!(e.contains(&format!("unix ms {}", T0 + 45_000)), "{e}");
        let now = get(&fx.app, "/api/alarms/huafu-1").await.json();
        assert_eq!(now["acknowledged"], acked["acknowledged"]);
        assert_eq!(now["response_s"], 45.0);

        assert_eq!(fx.stats.core.commands.load(Relaxed), 1);
        assert_eq!(fx.stats.core.commands_refused.load(Relaxed), 1);
        assert_eq!(fx.stats.core.alarms_active.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn refused_steps_have_their_status() {
        let fx = app(Some(TOKEN));
        let auth = bearer();
        elevator(&fx, T0, 0, true).await;
        fx.clock.set(T0 + 10_000);
        let uri = "/api/alarms/huafu-1/ack";
        let good = r#"{"by": "张伟"}"#;

        let a = post(&fx, uri, None, good).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.error().contains("missing API token"), "{}", a.body);
        assert!(a.headers.contains_key("www-authenticate"));
        let a = post(&fx, uri, Some("Bearer nope"), good).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.error(), "wrong API token");

        let a = post(&fx, "/api/alarms/huafu-99/ack", Some(&auth), good).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        assert!(a.error().contains("huafu-99"), "{}", a.body);
        let a = get(&fx.app, "/api/alarms/huafu-99").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        a.error();

        for (body, needle) in [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[1]", "must be a JSON object, not an array"),
            ("{}", "missing field `by`"),
            (r#"{"ts": 1790000000000}"#, "missing field `by`"),
            (r#"{"by": 7}"#, "`by` must be a string, not a number"),
            (r#"{"by": "  "}"#, "`by` is empty"),
            (
                r#"{"by": "x", "ts": "soon"}"#,
                "`ts` must be unix milliseconds",
            ),
            (
                r#"{"by": "x", "ts": 1.5}"#,
                "`ts` must be unix milliseconds",
            ),
            (r#"{"by": "x", "id": "huafu-1"}"#, "unknown field `id`"),
        ] {
            let a = post(&fx, uri, Some(&auth), body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
            let e = a.error();
            assert!(e.contains(needle), "{body}: {e}");
        }

        // The operator's own time before the raise: the engine refuses it (422).
        let before = format!(r#"{{"by": "张伟", "ts": {}}}"#, T0 - 1);
        let a = post(&fx, uri, Some(&auth), &before).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
        assert!(
            a.error().contains("before the alarm was raised"),
            "{}",
            a.body
        );

        // None of it changed the alarm.
        let now = get(&fx.app, "/api/alarms/huafu-1").await.json();
        assert_eq!(now["acknowledged"], json!(null));
    }

    #[tokio::test]
    async fn steps_are_disabled_without_a_token() {
        let fx = app(None);
        elevator(&fx, T0, 0, true).await;
        let a = post(
            &fx,
            "/api/alarms/huafu-1/ack",
            Some("Bearer x"),
            r#"{"by": "a"}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(a.error().contains("ESTATE_GW_API_TOKEN"), "{}", a.body);
    }

    #[tokio::test]
    async fn on_site_implies_acknowledged() {
        let fx = app(Some(TOKEN));
        let auth = bearer();
        elevator(&fx, T0, 7, false).await;
        fx.clock.set(T0 + 600_000);
        // The technician's app was offline: its own time, 5 min after the raise (late: the
        // `urgent` target is 180 s).
        let body = format!(r#"{{"by": "王师傅", "ts": {}}}"#, T0 + 300_000);
        let a = post(&fx, "/api/alarms/huafu-1/on_site", Some(&auth), &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let v = a.json();
        let stamp = json!({"ts": T0 + 300_000, "by": "王师傅"});
        assert_eq!(v["rule"], "fault");
        assert_eq!(v["acknowledged"], stamp);
        assert_eq!(v["on_site"], stamp);
        assert_eq!(v["response_s"], 300.0);
        assert_eq!(v["arrival_s"], 300.0);
        assert_eq!(v["timeliness"], "late");

        let a = post(
            &fx,
            "/api/alarms/huafu-1/on_site",
            Some(&auth),
            body.as_str(),
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT);
        assert!(
            a.error().contains("already has someone on site: 王师傅"),
            "{}",
            a.body
        );
        let a = post(
            &fx,
            "/api/alarms/huafu-1/ack",
            Some(&auth),
            r#"{"by": "张伟"}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT);
        assert!(a.error().contains("acknowledged by 王师傅"), "{}", a.body);
    }

    fn ids(a: &Answer) -> Vec<String> {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|x| {
                format!(
                    "{}:{}",
                    x["device"].as_str().expect("device"),
                    x["rule"].as_str().expect("rule")
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn filters_and_the_control_room_order() {
        let mut fx = app(Some(TOKEN));
        elevator(&fx, T0, 7, false).await; // E-1 fault (major) at T0
        fx.clock.set(T0 + 1_000);
        fx.feed("huafu", "FP-1", &[("fire_alarm", Value::Bool(true))])
            .await; // critical
        elevator(&fx, T0 + 2_000, 7, true).await; // E-1 entrapment (critical)
        let q = |uri: &'static str| {
            let app = fx.app.clone();
            async move { ids(&get(&app, uri).await) }
        };
        // Newest first by default; most severe, then oldest first for the active ones.
        assert_eq!(
            q("/api/alarms").await,
            ["E-1:entrapment", "FP-1:fire_alarm", "E-1:fault"]
        );
        assert_eq!(
            q("/api/alarms?active=true").await,
            ["FP-1:fire_alarm", "E-1:entrapment", "E-1:fault"]
        );
        // The fault clears: retained, not active.
        elevator(&fx, T0 + 3_000, 0, true).await;
        assert_eq!(q("/api/alarms?active=false").await, ["E-1:fault"]);
        assert_eq!(q("/api/alarms?active=true").await.len(), 2);
        assert_eq!(q("/api/alarms?severity=critical").await.len(), 2);
        assert_eq!(q("/api/alarms?severity=major,minor").await, ["E-1:fault"]);
        assert_eq!(
            q("/api/alarms?category=fire_equipment").await,
            ["FP-1:fire_alarm"]
        );
        assert_eq!(q("/api/alarms?device=E-1").await.len(), 2);
        assert_eq!(q("/api/alarms?site=north").await.len(), 0);
        let a = get(&fx.app, "/api/alarms?limit=1").await;
        assert_eq!(ids(&a), ["E-1:entrapment"]);
        assert_eq!(a.headers[TOTAL_HEADER], "3");

        for (uri, needle) in [
            ("/api/alarms?active=yes", "`active` must be true or false"),
            ("/api/alarms?severity=high", "valid: critical, major, minor"),
            ("/api/alarms?limit=10001", "from 0 to 10000"),
            ("/api/alarms?limit=-1", "from 0 to 10000"),
            ("/api/alarms?category=lift", "unknown category `lift`"),
            ("/api/alarms?sort=age", "unknown field `sort`"),
        ] {
            let a = get(&fx.app, uri).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(a.error().contains(needle), "{uri}: {}", a.body);
        }

        // The core stage gone (shutdown): 503, never a hang.
        fx.stop_core().await;
        let a = get(&fx.app, "/api/alarms").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        a.error();
        let a = post(
            &fx,
            "/api/alarms/huafu-1/ack",
            Some(&bearer()),
            r#"{"by": "a"}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    }
}
