//! The hub's HTTP API: `GET /api/estates` (the fleet table), `GET /api/alarms` (active alarms
//! of every estate, newest first; `?all=1` also the cleared ones, `?site=` one estate) and
//! `GET /api/league?period=2026-11` (the league as JSON; `period` as `hub league --period`),
//! `GET /api/events` (every stored message as Server-Sent Events: `event:` `kpi`,
//! `assessment` or `alarm`, `data:` its JSON, see `super::LiveEvent`; `lagged` with
//! `{"missed": n}` for a client too far behind; a keep-alive comment every 15 s) and the fleet
//! dashboard (`/`, `/assets/{file}`, `super::dashboard`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Hub, LiveEvent};

/// How often an idle event stream carries a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/estates", get(estates))
        .route("/api/alarms", get(alarms))
        .route("/api/league", get(league))
        .route("/api/events", get(events))
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(super::dashboard::index))
        .route("/assets/{file}", get(super::dashboard::asset))
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

async fn events(State(hub): State<Arc<Hub>>) -> Response {
    // Subscribed before the answer's head goes out: a client that has the head misses nothing.
    let rx = hub.live.subscribe();
    Sse::new(stream(rx, hub.closing.clone()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The SSE events of `rx` until the hub stops (`closing`).
fn stream(
    rx: tokio::sync::broadcast::Receiver<LiveEvent>,
    closing: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((rx, closing), |(mut rx, closing)| async move {
        let got = tokio::select! {
            () = closing.cancelled() => return None,
            got = rx.recv() => got,
        };
        let event = match got {
            Ok(e) => Event::default().event(e.kind).data(&*e.json),
            Err(RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(json!({ "missed": n }).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, closing)))
    })
}
