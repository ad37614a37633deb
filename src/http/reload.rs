//! `POST /api/reload` (token): re-read the configuration and inventory, as SIGHUP does. The
//! process that runs the gateway (`main`) validates the file: an invalid one is refused with
//! every error (422) and the running configuration stays; a valid one is answered 202 and the
//! gateway restarts in-process on it (states, active alarms, pending delays and windows go on
//! from the journal; the broker keeps the MQTT session; the input log loses nothing).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::{auth, json, ApiError, Ctx};

/// A request to reload; `reply` gets `Ok(summary)` when the new configuration is valid (the
/// reload then happens), `Err(errors)` when it is not (nothing changes).
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// Where reload requests go (`None`: this gateway cannot reload, e.g. the demo).
pub type ReloadSender = mpsc::Sender<ReloadRequest>;

pub(super) async fn reload(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check(&headers, &ctx.api_token, &ctx.api_token_env) {
        return e.into_response();
    }
    let Some(tx) = ctx.app.reload.clone() else {
        return ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this gateway cannot reload its configuration (it was not started by `run`)",
        )
        .into_response();
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(ReloadRequest { reply: Some(reply) }).await.is_err() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is shutting down",
        )
        .into_response();
    }
    match answer.await {
        Ok(Ok(summary)) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"reloading": true, "config": summary}),
        ),
        Ok(Err(errors)) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({
                "error": "the new configuration is invalid; the running one stays",
                "errors": errors.lines().collect::<Vec<_>>(),
            }),
        ),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is shutting down",
        )
        .into_response(),
    }
}
