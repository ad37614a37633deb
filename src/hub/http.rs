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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use std::pin::pin;

    fn hub(dir: &std::path::Path) -> Arc<Hub> {
        let p = dir.join("hub.toml");
        std::fs::write(&p, "[hub]\ndata_file = \"hub.sqlite\"\n").expect("write");
        let settings =
            crate::config::load_hub_with_env(&p, &Default::default()).expect("hub settings");
        Arc::new(Hub::open(settings, Arc::new(crate::clock::SystemClock)).expect("open"))
    }

    async fn wire(e: Event) -> String {
        let resp = Sse::new(futures::stream::iter([Ok::<_, Infallible>(e)])).into_response();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await;
        String::from_utf8(bytes.expect("body").to_vec()).expect("utf-8")
    }

    /// A stored alarm and summary go out on the stream, in order, as `alarm` and `kpi`
    /// events; a message the hub does not understand does not; the stream ends on `closing`.
    #[tokio::test]
    async fn stored_messages_are_streamed_and_the_stream_ends_on_closing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub(dir.path());
        let mut s = pin!(stream(hub.live.subscribe(), hub.closing.clone()));
        let alarm = json!({"site": "东苑", "id": "A-1", "ts": 1_000, "active": true, "severity": "critical"});
        assert!(hub
            .take(
                "estate/东苑/alarms/elevator/E-1",
                alarm.to_string().as_bytes()
            )
            .expect("take"));
        assert!(!hub.take("estate/东苑/kpi", b"not json").expect("take"));
        let kpi = json!({"schema": 1, "site": "东苑", "ts": 2_000});
        assert!(hub
            .take("estate/东苑/kpi", kpi.to_string().as_bytes())
            .expect("take"));
        let first = wire(s.next().await.expect("an event").expect("ok")).await;
        assert!(first.starts_with("event: alarm\ndata: {"), "{first}");
        assert!(
            first.contains("\"id\":\"A-1\"") && first.contains("received_ts"),
            "{first}"
        );
        let second = wire(s.next().await.expect("an event").expect("ok")).await;
        assert!(second.starts_with("event: kpi\ndata: {"), "{second}");
        assert!(second.contains("\"ts\":2000"), "{second}");
        hub.closing.cancel();
        assert!(s.next().await.is_none(), "the stream goes on after closing");
    }
}
