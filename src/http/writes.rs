//! `GET /api/writes`: the audit trail of Modbus writes (the journal's `writes` table), newest
//! first; `?device=` (one device id), `?site=`, `?limit=` (default 100, at most 1000).
//! Token-protected like the write endpoint itself: it names operators and client addresses.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{auth, json, ApiError, Ctx};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct WritesQuery {
    device: Option<String>,
    site: Option<String>,
    limit: Option<String>,
}

pub(super) async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<WritesQuery>, QueryRejection>,
) -> Response {
    if let Err(e) = auth::check(&headers, &ctx.api_token, &ctx.api_token_env) {
        return e.into_response();
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad query: {}; parameters: device, site, limit (e.g. /api/writes?device=HX-1&limit=20)",
                    e.body_text()
                ),
            )
            .into_response()
        }
    };
    let limit = match q.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{s}`"),
                )
                .into_response()
            }
        },
    };
    let Some(log) = ctx.app.writes.clone() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the write trail is not available (the journal could not be opened for it; see the log)",
        )
        .into_response();
    };
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let (site, device) = (nonempty(q.site), nonempty(q.device));
    let rows =
        tokio::task::spawn_blocking(move || log.list(site.as_deref(), device.as_deref(), limit))
            .await;
    match rows {
        Ok(Ok(rows)) => json(StatusCode::OK, &rows),
        Ok(Err(e)) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the journal: {e}"),
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the journal: {e}"),
        )
        .into_response(),
    }
}
