//! The hub's HTTP API: `GET /api/estates` (the fleet table), `GET /api/alarms` (active alarms
//! of every estate, newest first; `?all=1` also the cleared ones, `?site=` one estate) and
//! `GET /api/league?period=2026-11` (the league as JSON; `period` as `hub league --period`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::Hub;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/estates", get(estates))
        .route("/api/alarms", get(alarms))
        .route("/api/league", get(league))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(hub)
}

fn failed(e: anyhow::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": format!("{e:#}")})),
    )
        .into_response()
}

async fn estates(State(hub): State<Arc<Hub>>) -> Response {
    match tokio::task::spawn_blocking(move || hub.estates()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct AlarmQuery {
    all: Option<String>,
    site: Option<String>,
}

async fn alarms(State(hub): State<Arc<Hub>>, Query(q): Query<AlarmQuery>) -> Response {
    let all = matches!(q.all.as_deref(), Some("1" | "true"));
    let r = tokio::task::spawn_blocking(move || hub.with_store(|s| s.alarms(all, 10_000))).await;
    match r {
        Ok(Ok(mut v)) => {
            if let Some(site) = &q.site {
                v.retain(|a| a["site"].as_str() == Some(site.as_str()));
            }
            Json(json!({"count": v.len(), "alarms": v})).into_response()
        }
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct LeagueQuery {
    period: Option<String>,
}

async fn league(State(hub): State<Arc<Hub>>, Query(q): Query<LeagueQuery>) -> Response {
    let Some(period) = q
        .period
        .as_deref()
        .and_then(super::league::normalize_period)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("give ?period=: {}", super::league::VALID_PERIODS)})),
        )
            .into_response();
    };
    match tokio::task::spawn_blocking(move || hub.league(&period)).await {
        Ok(Ok(l)) => Json(l).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e.into()),
    }
}
