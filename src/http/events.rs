//! `GET /api/events`: the live stream of the control room as Server-Sent Events (the HTML
//! living standard, "Server-sent events"). Each core event is one SSE event whose `event:` is
//! its type (`state`, `alarm`, `maintenance`) and whose `data:` is its JSON
//! (`crate::encode::json::event`, the same as on MQTT). `?types=alarm,state` keeps only some.
//!
//! A comment line every `KEEP_ALIVE` keeps proxies and NAT from closing an idle stream. A
//! client too slow for the stream (more than the core's live buffer behind) gets
//! `event: lagged` with `data: {"missed": n}` and the stream goes on: the dashboard then
//! refetches `/api/devices` and `/api/alarms`. The stream ends when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{ApiError, Ctx};
use crate::stage::LiveEvent;

/// How often an idle stream carries a keep-alive comment.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The event types of the stream.
const TYPES: [&str; 3] = ["state", "alarm", "maintenance"];

/// `?types=`: comma-separated event types; empty = all.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct EventQuery {
    types: Option<String>,
}

pub(super) async fn stream(
    State(ctx): State<Arc<Ctx>>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad query: {}; the only parameter is ?types= (e.g. ?types=alarm,state)",
                    e.body_text()
                ),
            )
            .into_response()
        }
    };
    let mut wanted = Vec::new();
    for t in q
        .types
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match TYPES.iter().find(|k| **k == t) {
            Some(k) => wanted.push(*k),
            None => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown event type `{t}`; valid: {}", TYPES.join(", ")),
                )
                .into_response()
            }
        }
    }
    // Subscribed before the answer's head goes out: a client that has the head misses nothing.
    let rx = ctx.app.core.subscribe();
    Sse::new(events(rx, wanted, ctx.closing.clone()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The SSE events of `rx` whose kind is in `wanted` (all when empty), until `closing`.
fn events(
    rx: tokio::sync::broadcast::Receiver<LiveEvent>,
    wanted: Vec<&'static str>,
    closing: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (rx, wanted, closing),
        |(mut rx, wanted, closing)| async move {
            loop {
                let got = tokio::select! {
                    () = closing.cancelled() => return None,
                    got = rx.recv() => got,
                };
                let event = match got {
                    Ok(e) if wanted.is_empty() || wanted.contains(&e.kind) => {
                        Event::default().event(e.kind).data(&*e.json)
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => Event::default()
                        .event("lagged")
                        .data(serde_json::json!({ "missed": n }).to_string()),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (rx, wanted, closing)));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use std::pin::pin;

    fn live(kind: &'static str, n: u32) -> LiveEvent {
        LiveEvent {
            kind,
            json: format!("{{\"n\":{n}}}").into(),
        }
    }

    /// Renders an SSE event as it goes on the wire.
    async fn wire(e: Event) -> String {
        let resp = Sse::new(futures::stream::iter([Ok::<_, Infallible>(e)])).into_response();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await;
        String::from_utf8(bytes.expect("body").to_vec()).expect("utf-8")
    }

    /// A real server: `curl -N`-style client gets the alarm raised by a reading, only the
    /// types asked for, and the stream ends promptly when the server shuts down (well inside
    /// the 5 s grace period).
    #[tokio::test]
    async fn a_bound_server_streams_alarms_and_ends_on_shutdown() {
        use crate::http::test_support::{app, T0};
        use crate::model::Value;

        let fx = app(None);
        let server = crate::http::Server::bind(&fx.settings, fx.state.clone())
            .await
            .expect("bind");
        let addr = server.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));

        let bad = reqwest::get(format!("http://{addr}/api/events?types=alarms"))
            .await
            .expect("answer");
        assert_eq!(bad.status().as_u16(), 400);
        assert!(bad
            .text()
            .await
            .expect("body")
            .contains("valid: state, alarm, maintenance"));

        let mut resp = reqwest::get(format!("http://{addr}/api/events?types=alarm"))
            .await
            .expect("stream");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().expect("ascii"),
            "text/event-stream"
        );
        // Subscribed once the head is here: this reading's events reach the stream.
        fx.clock.set(T0 + 1_000);
        fx.feed(
            "huafu",
            "E-1",
            &[
                ("fault_code", Value::Int(0)),
                ("entrapment", Value::Bool(true)),
            ],
        )
        .await;
        let mut text = String::new();
        let read = async {
            while !text.contains("event: alarm\n") || !text.ends_with("\n\n") {
                let chunk = resp.chunk().await.expect("read").expect("more");
                text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the alarm event arrives");
        // Only alarms were asked for: the device's state change is not there.
        assert!(!text.contains("event: state"), "{text}");
        let data = text
            .lines()
            .skip_while(|l| *l != "event: alarm")
            .nth(1)
            .and_then(|l| l.strip_prefix("data: "))
            .expect("a data line after the event line");
        let v: serde_json::Value = serde_json::from_str(data).expect("JSON");
        assert_eq!(v["type"], "alarm");
        assert_eq!(v["event"], "raised");
        assert_eq!(v["device"], "E-1");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["raised_ts"], T0 + 1_000);

        shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the server stops without waiting out its grace period")
            .expect("no panic");
        assert!(r.is_ok(), "{r:?}");
        let end = tokio::time::timeout(Duration::from_secs(2), resp.chunk())
            .await
            .expect("the stream ends");
        assert!(matches!(end, Ok(None)), "{end:?}");
    }

    #[tokio::test]
    async fn filters_reports_lag_and_ends_when_closing() {
        let (tx, rx) = tokio::sync::broadcast::channel(2);
        let closing = CancellationToken::new();
        let mut s = pin!(events(rx, vec!["alarm"], closing.clone()));
        // 4 sent into a buffer of 2: the first two are lost.
        for (k, n) in [("alarm", 1), ("state", 2), ("state", 3), ("alarm", 4)] {
            tx.send(live(k, n)).expect("a receiver");
        }
        let lag = s.next().await.expect("lagged").expect("infallible");
        assert_eq!(wire(lag).await, "event: lagged\ndata: {\"missed\":2}\n\n");
        // `state` 3 is skipped by the filter.
        let a = s.next().await.expect("alarm").expect("infallible");
        assert_eq!(wire(a).await, "event: alarm\ndata: {\"n\":4}\n\n");
        closing.cancel();
        assert!(s.next().await.is_none(), "the stream ends on shutdown");
    }
}
