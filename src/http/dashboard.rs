//! The built-in live dashboard (DESIGN §1, §2): `GET /` and `GET /assets/{file}`. Plain HTML,
//! CSS and JavaScript in `src/http/dashboard/`, embedded in the binary at compile time: no
//! CDN and no build step, because control rooms are often offline. The page reads the same
//! API as everyone else (`/api/kpi`, `/api/alarms`, `/api/devices`, `/api/report`, …) and
//! follows `/api/events` (SSE). Every answer carries `Cache-Control: no-cache`, so a browser
//! left open on a control-room wall picks up a new gateway's dashboard on its next load.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("dashboard/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("dashboard/index.html");

/// An embedded file as the dashboards serve it (also the fleet hub's, `hub::dashboard`).
pub(crate) fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX.as_bytes())
}

/// `GET /assets/{file}`.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => file(ty, body),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no dashboard asset `{name}`; the assets are {}",
                ASSETS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use crate::http::test_support::{app, get};
    use axum::http::StatusCode;

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_their_types() {
        let fx = app(None);
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let a = get(&fx.app, path).await;
            assert_eq!(a.status, StatusCode::OK, "{path}");
            assert_eq!(a.content_type, ty, "{path}");
            assert_eq!(a.headers["cache-control"], "no-cache", "{path}");
            assert!(!a.body.is_empty(), "{path}");
        }
        let page = get(&fx.app, "/").await.body;
        assert!(page.contains("/assets/app.js"), "{page}");
        // Nothing from the network: no CDN, no external font.
        for a in ["/", "/assets/app.js", "/assets/app.css"] {
            let body = get(&fx.app, a).await.body;
            assert!(!body.contains("http://"), "{a} refers to the network");
            assert!(!body.contains("https://"), "{a} refers to the network");
        }
        let a = get(&fx.app, "/assets/nothing.js").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.error().contains("app.js"), "{}", a.body);
    }
}
