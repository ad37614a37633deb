//! The fleet dashboard (README "Fleet"): `GET /` and `GET /assets/{file}` of the hub. Plain
//! HTML, CSS and JavaScript in `src/hub/dashboard/`, embedded at compile time like the
//! estate's own dashboard (whose stylesheet and icon it shares: `/assets/app.css`,
//! `/assets/favicon.svg`), so it works offline. The page reads the hub's API
//! (`/api/estates`, `/api/alarms`, `/api/league`) and follows `/api/events` (SSE): a stored
//! alarm or summary refreshes the table and the alarm list at once.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::http::dashboard::file;

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "fleet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/fleet.js"),
    ),
    (
        "fleet.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/fleet.css"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../http/dashboard/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../http/dashboard/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("dashboard/index.html");

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX.as_bytes())
}

/// `GET /assets/{file}`.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => file(ty, body),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!(
                "no dashboard asset `{name}`; the assets are {}",
                ASSETS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
            )})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use axum::http::header;

    async fn body(r: Response) -> (StatusCode, String, String) {
        let status = r.status();
        let ty = r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let b = to_bytes(r.into_body(), 1 << 22).await.expect("body");
        (status, ty, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_offline() {
        let (status, ty, page) = body(index().await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ty, "text/html; charset=utf-8");
        for (name, want) in [
            ("fleet.js", "text/javascript; charset=utf-8"),
            ("fleet.css", "text/css; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            assert!(
                page.contains(&format!("/assets/{name}")),
                "{name} not in the page"
            );
            let (status, ty, text) = body(asset(Path(name.to_owned())).await).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(ty, want, "{name}");
            assert!(!text.is_empty(), "{name}");
        }
        for text in [
            page,
            body(asset(Path("fleet.js".into())).await).await.2,
            body(asset(Path("fleet.css".into())).await).await.2,
        ] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "refers to the network"
            );
        }
        let (status, _, err) = body(asset(Path("app.js".into())).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(err.contains("fleet.js"), "{err}");
    }
}
