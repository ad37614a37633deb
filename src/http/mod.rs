//! The gateway's HTTP server (DESIGN §2, "HTTP"; axum): `/healthz` and `/metrics` for whoever
//! watches the gateway, `/api/devices` for the control room, and
//! `POST /api/devices/{id}/write` for operators (bearer API token). It runs only when the
//! configuration has an `[http]` section, reads shared state (`AppState`) and never blocks
//! ingestion: every handler only reads the inventory and the counters, or queues a write to
//! the Modbus poller and waits for its answer.
//!
//! - `auth`: the bearer-token check (constant-time);
//! - `devices`: the device list and the write endpoint;
//! - `metrics`: the Prometheus text exposition of `crate::stats::Stats`.
//!
//! Every error is JSON, `{"error": "..."}`, with `Content-Type: application/json;
//! charset=utf-8`, including unknown routes (404) and wrong methods (405).

mod auth;
mod devices;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, HttpSettings, Secret};
use crate::model::Inventory;
use crate::source::modbus::poller::ModbusHandle;
use crate::stats::Stats;

pub use devices::status_for;

/// Largest request body accepted (a write is a few dozen bytes).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// After shutdown, how long requests still running (e.g. a write waiting for a slow serial
/// device) may take before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const JSON: &str = "application/json; charset=utf-8";

/// What the handlers share; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub inventory: Arc<Inventory>,
    pub stats: Arc<Stats>,
    pub modbus: ModbusHandle,
    /// The gateway's own site (`gateway.site`): the default site of a write.
    pub site: String,
    /// Names of the Modbus endpoints, indexed like `ModbusSettings::endpoints` (a device's
    /// `Binding::endpoint`), for the device list.
    pub endpoints: Arc<[String]>,
}

impl AppState {
    /// The state for a gateway running `cfg`.
    pub fn new(cfg: &Config, stats: Arc<Stats>, modbus: ModbusHandle) -> AppState {
        AppState {
            inventory: cfg.inventory.clone(),
            stats,
            modbus,
            site: cfg.gateway.site.clone(),
            endpoints: cfg
                .modbus
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect(),
        }
    }
}

/// Per-router configuration that is not shared state of the gateway.
#[derive(Debug, Clone)]
struct Ctx {
    app: AppState,
    /// Empty = writes are disabled.
    api_token: Secret,
    /// Where the token comes from, for the "writes are disabled" message.
    api_token_env: String,
}

/// The routes, ready to serve (or to drive with `tower::ServiceExt::oneshot` in tests).
pub fn router(settings: &HttpSettings, state: AppState) -> Router {
    let ctx = Arc::new(Ctx {
        app: state,
        api_token: settings.api_token.clone(),
        api_token_env: settings.api_token_env.clone(),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::handler))
        .route("/api/devices", get(devices::list))
        .route("/api/devices/{id}/write", post(devices::write))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// A bound, not yet running server: binding first lets `run` fail at start-up, before any
/// other task is spawned, when `http.listen` cannot be used.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    /// Binds `settings.listen`. The error names `http.listen` and says what to do.
    pub async fn bind(settings: &HttpSettings, state: AppState) -> anyhow::Result<Server> {
        let addr = settings.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error(addr, &e))?;
        if settings.api_token.is_empty() {
            warn!(
                api_token_env = %settings.api_token_env,
                "No HTTP API token configured: device writes are disabled (set http.api_token_file or the environment variable named by http.api_token_env)."
            );
        }
        Ok(Server {
            listener,
            router: router(settings, state),
        })
    }

    /// The address actually bound (differs from `http.listen` when its port is 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("cannot read the HTTP listener's address")
    }

    /// Serves until `shutdown` is cancelled, then lets running requests finish for up to
    /// `SHUTDOWN_GRACE`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        info!(listen = %addr, "HTTP API listening.");
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let grace = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = server => r.context("the HTTP server failed")?,
            () = grace => warn!(
                grace = ?SHUTDOWN_GRACE,
                "HTTP requests still running after shutdown; closing them."
            ),
        }
        info!("HTTP API stopped.");
        Ok(())
    }
}

/// Binds `settings.listen` and serves until `shutdown` is cancelled.
pub async fn serve(
    settings: HttpSettings,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Server::bind(&settings, state).await?.run(shutdown).await
}

fn bind_error(addr: SocketAddr, e: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::AddrInUse => {
            "another process (another gateway?) already listens there; stop it or choose another port in `http.listen`"
        }
        ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; choose a port of 1024 or above in `http.listen`"
        }
        ErrorKind::AddrNotAvailable => {
            "this machine has no such address; use 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces) in `http.listen`"
        }
        _ => "check `http.listen`",
    };
    anyhow::anyhow!("http.listen: cannot listen on {addr}: {e}; {hint}")
}

async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "ok",
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {method} {}; the API has GET /healthz, GET /metrics, GET /api/devices, POST /api/devices/{{id}}/write",
            uri.path()
        ),
    )
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}

/// `body` as JSON with `status` and our JSON content type.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            bytes,
        )
            .into_response(),
        // Only a bug (a map with non-string keys, a failing Serialize impl) gets here.
        Err(e) => {
            warn!(error = %e, "Cannot encode an HTTP response.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
                r#"{"error": "cannot encode the response; see the gateway log"}"#,
            )
                .into_response()
        }
    }
}

/// An error answer: `{"error": message}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Adds `WWW-Authenticate: Bearer` (401 answers, RFC 6750).
    pub(crate) challenge: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            challenge: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        let mut resp = json(
            self.status,
            &Body {
                error: &self.message,
            },
        );
        if self.challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="estate-gateway""#),
            );
        }
        resp
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A gateway configuration loaded the normal way, and helpers to drive the router.

    use std::collections::HashMap;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use tower::ServiceExt as _;

    use super::{router, AppState};
    use crate::config::{Config, HttpSettings, Secret};
    use crate::source::modbus::poller::ModbusHandle;
    use crate::stats::Stats;

    pub(crate) const TOKEN: &str = "s3cret-token-for-tests";

    /// Two sites; `HX-1` is a Modbus heating loop, `FP-1` a Modbus fire pump panel, `E-1` an
    /// MQTT elevator that exists at both sites, `T-9` an indoor sensor only at `north`.
    pub(crate) const TOML: &str = r#"
[gateway]
site = "huafu"
host = "test"

[modbus]
[[modbus.endpoints]]
name = "plant-room"
url = "tcp://127.0.0.1:1502"

[http]
listen = "127.0.0.1:0"

[[devices]]
id = "HX-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"
interval = "10s"
modbus = { endpoint = "plant-room", unit = 1, model = "heating_plc" }

[[devices]]
id = "FP-1"
name = "消防泵控制柜"
building = "泵房"
category = "fire_equipment"
interval = "500ms"
modbus = { endpoint = "plant-room", unit = 3, model = "fire_pump_panel" }

[[devices]]
id = "E-1"
name = "1号楼客梯"
building = "1号楼"
category = "elevator"

[[devices]]
id = "E-1"
site = "north"
name = "北区1号楼客梯"
building = "1号楼"
category = "elevator"

[[devices]]
id = "T-9"
site = "north"
name = "北区9室温"
building = "9号楼"
category = "indoor_sensor"
"#;

    pub(crate) fn config(token: Option<&str>) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, TOML).expect("write config");
        let mut env = HashMap::new();
        if let Some(t) = token {
            env.insert("ESTATE_GW_API_TOKEN".to_owned(), t.to_owned());
        }
        match crate::config::load_with_env(&path, env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    pub(crate) fn app_with(token: Option<&str>, modbus: ModbusHandle) -> (Router, Arc<Stats>) {
        let cfg = config(token);
        let stats = Arc::new(Stats::default());
        let settings: HttpSettings = cfg.http.clone().expect("[http] in the test config");
        assert_eq!(settings.api_token, Secret::new(token.unwrap_or("")));
        let state = AppState::new(&cfg, stats.clone(), modbus);
        (router(&settings, state), stats)
    }

    pub(crate) fn app(token: Option<&str>) -> (Router, Arc<Stats>) {
        let cfg = config(token);
        let handle = ModbusHandle {
            endpoints: Vec::new(),
            inventory: cfg.inventory.clone(),
        };
        app_with(token, handle)
    }

    pub(crate) struct Answer {
        pub(crate) status: StatusCode,
        pub(crate) content_type: String,
        pub(crate) headers: axum::http::HeaderMap,
        pub(crate) body: String,
    }

    impl Answer {
        pub(crate) fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
        }

        /// The `error` of a JSON error answer, asserting the JSON content type.
        pub(crate) fn error(&self) -> String {
            assert_eq!(self.content_type, super::JSON, "{}", self.body);
            self.json()["error"]
                .as_str()
                .unwrap_or_else(|| panic!("no error in {}", self.body))
                .to_owned()
        }
    }

    pub(crate) async fn send(app: &Router, req: Request<Body>) -> Answer {
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        Answer {
            status,
            content_type,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
        }
    }

    pub(crate) async fn get(app: &Router, uri: &str) -> Answer {
        send(app, Request::get(uri).body(Body::empty()).expect("request")).await
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{app, get, send};
    use super::*;
    use axum::body::Body;
    use axum::http::Request;

    #[tokio::test]
    async fn healthz_says_ok_without_auth() {
        let (app, _) = app(None);
        let a = get(&app, "/healthz").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, "ok");
        assert_eq!(a.content_type, "text/plain; charset=utf-8");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let (app, _) = app(None);
        let a = get(&app, "/api/nothing").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.error().contains("GET /api/nothing"), "{}", a.body);

        let a = send(
            &app,
            Request::post("/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(a.error().contains("POST is not allowed"), "{}", a.body);

        let a = get(&app, "/api/devices/HX-1/write").await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn bind_errors_name_the_key() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let cfg = test_support::config(None);
        let mut settings = cfg.http.clone().expect("http");
        settings.listen = addr;
        let state = AppState::new(&cfg, Arc::new(Stats::default()), ModbusHandle::default());
        let err = serve(settings, state, CancellationToken::new())
            .await
            .expect_err("the port is taken");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with(&format!("http.listen: cannot listen on {addr}")),
            "{msg}"
        );
        assert!(msg.contains("choose another port"), "{msg}");
    }

    #[tokio::test]
    async fn serves_until_shutdown() {
        let cfg = test_support::config(None);
        let settings = cfg.http.clone().expect("http");
        let state = AppState::new(&cfg, Arc::new(Stats::default()), ModbusHandle::default());
        let server = Server::bind(&settings, state).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));

        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");

        shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly")
            .expect("no panic");
        assert!(r.is_ok(), "{r:?}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
