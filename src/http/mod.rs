//! The gateway's HTTP server (DESIGN §2, "HTTP"; axum): `/healthz` and `/metrics` for whoever
//! watches the gateway; for the control room the devices with their states, the alarms, the
//! maintenance windows and the live event stream (SSE); for operators (bearer API token)
//! acknowledgments, on-site reports, maintenance windows and Modbus writes. It runs only when
//! the configuration has an `[http]` section, reads shared state (`AppState`) and never blocks
//! ingestion: every handler reads the inventory and the counters, asks the core stage through
//! its `CoreHandle` (answered in order with the readings), or queues a write to the Modbus
//! poller and waits for its answer.
//!
//! - `auth`: the bearer-token check (constant-time);
//! - `body`: reading JSON request bodies field by field (errors name the field);
//! - `devices`: the device list with states, one device, and the write endpoint;
//! - `device_figures`: one device's graded figures over a period (`report::device`);
//! - `alarms`: the alarm list, one alarm, acknowledge and on site;
//! - `maintenance`: operator-set maintenance windows;
//! - `events`: the live stream (`GET /api/events`, Server-Sent Events);
//! - `metrics`: the Prometheus text exposition of `crate::stats::Stats`;
//! - `report`: what the scorecard grades against (`/api/assessment`) and the report of a
//!   period (`/api/report`, the `report` command's JSON);
//! - `writes`: the audit trail of Modbus writes (`GET /api/writes`, bearer token);
//! - `dashboard`: the built-in live dashboard at `/` (static files embedded in the binary).
//!
//! Every error is JSON, `{"error": "..."}`, with `Content-Type: application/json;
//! charset=utf-8`, including unknown routes (404) and wrong methods (405).

mod alarms;
mod auth;
mod body;
pub(crate) mod dashboard;
mod device_figures;
mod devices;
mod events;
mod maintenance;
mod metrics;
pub mod reload;
mod report;
mod writes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Config, HttpSettings, Secret};
use crate::model::{DeviceIdx, Inventory};
use crate::source::modbus::poller::ModbusHandle;
use crate::source::modbus::Binding;
use crate::stage::{CoreHandle, HandleError};
use crate::stats::Stats;

/// The client's address, when the server was started with connect info (not in unit tests):
/// for the logs of the handlers that change something.
fn remote(ext: &axum::http::Extensions) -> String {
    ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.to_string())
}

pub use devices::status_for;
pub use report::ReportContext;

/// Largest request body accepted (a write or an acknowledgment is a few dozen bytes).
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
    /// `ModbusSettings::bindings`: each polled device's endpoint, unit and model, for the
    /// device list.
    pub bindings: Arc<BTreeMap<DeviceIdx, Binding>>,
    /// The core stage: device states, alarms, maintenance windows, the live event stream.
    pub core: CoreHandle,
    /// Every category this gateway knows (its profiles and its devices' categories), sorted:
    /// the valid values of a `?category=` filter.
    pub categories: Arc<[String]>,
    /// The latest KPI figures (`GET /api/kpi`), refreshed every `assessment.kpi_interval`.
    pub kpi: crate::report::live::KpiView,
    /// The configuration the report endpoints need (`/api/assessment`, `/api/report`).
    pub report: Arc<ReportContext>,
    /// The gateway's clock (scaled under `demo --speed N`): the report endpoints' "now".
    pub clock: Arc<dyn Clock>,
    /// The journal's write trail (`writes`): every Modbus write is recorded there and listed
    /// by `GET /api/writes`. `None`: not recorded (unit tests, or it could not be opened).
    pub writes: Option<Arc<crate::journal::WriteLog>>,
    /// The MQTT source's client id (`mqtt.client_id`), for `/healthz` during a takeover.
    pub mqtt_client_id: Option<String>,
    /// Where `POST /api/reload` sends its request (`None`: reload not available).
    pub reload: Option<reload::ReloadSender>,
}

impl AppState {
    /// The state for a gateway running `cfg` on `clock`, whose core stage is reached through
    /// `core`.
    pub fn new(
        cfg: &Config,
        stats: Arc<Stats>,
        modbus: ModbusHandle,
        core: CoreHandle,
        clock: Arc<dyn Clock>,
    ) -> AppState {
        let mut categories: Vec<String> = cfg
            .profiles
            .keys()
            .cloned()
            .chain(cfg.inventory.devices().iter().map(|d| d.category.clone()))
            .collect();
        categories.sort_unstable();
        categories.dedup();
        AppState {
            inventory: core.inventory.clone(),
            stats,
            modbus,
            site: cfg.gateway.site.clone(),
            endpoints: cfg
                .modbus
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect(),
            bindings: Arc::new(cfg.modbus.bindings.clone()),
            core,
            categories: categories.into(),
            kpi: Default::default(),
            report: Arc::new(ReportContext::new(cfg)),
            clock,
            writes: None,
            mqtt_client_id: cfg.mqtt.as_ref().map(|m| m.client_id.clone()),
            reload: None,
        }
    }

    /// `Ok` when `category` is one this gateway knows, else the 400 answer listing them.
    pub(crate) fn check_category(&self, category: &str) -> Result<(), ApiError> {
        if self.categories.iter().any(|c| c == category) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown category `{category}`; valid: {}",
                self.categories.join(", ")
            ),
        ))
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
    /// Cancelled when the server shuts down: long-lived answers (the SSE stream) end then,
    /// so the graceful shutdown does not wait out its grace period for them.
    closing: CancellationToken,
}

/// The routes, ready to serve (or to drive with `tower::ServiceExt::oneshot` in tests). The
/// live streams they answer end when `closing` is cancelled.
pub fn router(settings: &HttpSettings, state: AppState, closing: CancellationToken) -> Router {
    let ctx = Arc::new(Ctx {
        app: state,
        api_token: settings.api_token.clone(),
        api_token_env: settings.api_token_env.clone(),
        closing,
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::handler))
        .route("/api/devices", get(devices::list))
        .route("/api/devices/{id}", get(devices::one))
        .route("/api/devices/{id}/figures", get(device_figures::figures))
        .route("/api/devices/{id}/write", post(devices::write))
        .route("/api/writes", get(writes::list))
        .route("/api/reload", post(reload::reload))
        .route("/api/devices/{id}/maintenance", post(maintenance::add))
        .route("/api/alarms", get(alarms::list))
        .route("/api/alarms/{id}", get(alarms::one))
        .route("/api/alarms/{id}/ack", post(alarms::ack))
        .route("/api/alarms/{id}/on_site", post(alarms::on_site))
        .route("/api/maintenance", get(maintenance::list))
        .route("/api/maintenance/{id}", delete(maintenance::end))
        .route("/api/events", get(events::stream))
        .route("/api/kpi", get(kpi))
        .route("/api/assessment", get(report::assessment))
        .route("/api/report", get(report::report))
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// File descriptors kept free of HTTP connections for everything else the gateway opens
/// (journal, MQTT, Modbus, store connections, the webhook).
const RESERVED_FDS: u64 = 256;

/// How many connections to serve at once: `http.max_connections`, but below the process's
/// file-descriptor limit, so a flood of connections cannot starve the rest of the gateway.
fn connection_cap(configured: usize) -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
    configured.min(room)
}

/// A bound, not yet running server: binding first lets `run` fail at start-up, before any
/// other task is spawned, when `http.listen` cannot be used.
///
/// It serves with its own accept loop (hyper, HTTP/1.1) rather than `axum::serve`, for two
/// defences against abusive clients: at most `max_connections` connections are served at
/// once (more wait in the kernel's backlog, never costing a file descriptor), and a
/// connection that has not sent a complete request head within `header_timeout` (an idle
/// keep-alive connection, a client that connects and says nothing, a slow-header attack) is
/// closed. Together they keep `/healthz` answering while thousands of idle connections are
/// open.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    /// The router's `closing` token, cancelled when `run`'s shutdown comes.
    closing: CancellationToken,
    max_connections: usize,
    header_timeout: Duration,
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
                "No HTTP API token configured: device writes, acknowledgments and maintenance windows over HTTP are disabled (set http.api_token_file or the environment variable named by http.api_token_env)."
            );
        }
        let max_connections = connection_cap(settings.max_connections);
        if max_connections < settings.max_connections {
            warn!(
                configured = settings.max_connections,
                serving = max_connections,
                "http.max_connections is above what the file-descriptor limit allows; serving fewer connections at once (raise LimitNOFILE, see the README's Deployment)."
            );
        }
        let closing = CancellationToken::new();
        Ok(Server {
            listener,
            router: router(settings, state, closing.clone()),
            closing,
            max_connections,
            header_timeout: settings.header_timeout,
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
        use hyper_util::rt::{TokioIo, TokioTimer};
        use tower::ServiceExt as _;

        let addr = self.local_addr()?;
        info!(
            listen = %addr,
            max_connections = self.max_connections,
            header_timeout = ?self.header_timeout,
            "HTTP API listening."
        );
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let mut accept_errors = 0u64;
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s.context("the HTTP connection limit closed")?,
                () = shutdown.cancelled() => break,
            };
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and the like: say so (rarely), pause, try again.
                        accept_errors += 1;
                        if accept_errors.is_power_of_two() {
                            warn!(error = %e, count = accept_errors, "HTTP: cannot accept a connection.");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let service = self.router.clone().map_request(
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                },
            );
            let conn = http.serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                // A client that goes away mid-request is its own business.
                let _ = conn.await;
                drop(slot);
            });
        }
        // Ends the SSE streams, so their connections close with the others.
        self.closing.cancel();
        drop(self.listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(
                grace = ?SHUTDOWN_GRACE,
                "HTTP requests still running after shutdown; closing them."
            );
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

/// `GET /api/kpi`: today's and this month's figures (see `crate::report::live`); 503 until
/// the first computation, a few seconds after start.
async fn kpi(axum::extract::State(ctx): axum::extract::State<Arc<Ctx>>) -> Response {
    let latest = ctx.app.kpi.read().ok().and_then(|v| v.clone());
    match latest {
        Some(v) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            v.to_string(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the KPI figures are being computed; try again in a few seconds",
        )
        .into_response(),
    }
}

/// `ok` when all is well; 503 while the input log cannot be written (nothing is acknowledged
/// or applied then), while the journal cannot be written (the last write failed) or while
/// another MQTT client keeps taking our session; `ok` with a second line when the store is behind (readings wait in the
/// log: the gateway itself is fine).
async fn healthz(axum::extract::State(ctx): axum::extract::State<Arc<Ctx>>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let log = &ctx.app.stats.log;
    let text = |status: StatusCode, body: String| {
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body,
        )
            .into_response()
    };
    if log.failing.load(std::sync::atomic::Ordering::Relaxed) == 1 {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the input log cannot be written (disk full?): nothing is acknowledged or applied until it can; see the gateway log\n".into(),
        );
    }
    if ctx.app.stats.core.journal_failing.load(Relaxed) == 1 {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the journal cannot be written (disk full?): readings, states and alarms go on and the live view is current, but their history is missing from the figures until it can; see the gateway log\n".into(),
        );
    }
    if ctx
        .app
        .stats
        .mqtt_takeover
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1
    {
        let id = ctx.app.mqtt_client_id.as_deref().unwrap_or("?");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("MQTT session taken over: another client connects with our client id `{id}` and the broker keeps switching between us, so readings are split between the two; give each gateway a distinct mqtt.client_id\n"),
        );
    }
    let head = log.head.load(std::sync::atomic::Ordering::Relaxed);
    let waiting = head.saturating_sub(log.store_pos.load(std::sync::atomic::Ordering::Relaxed));
    let lag = log.store_lag_s.load(std::sync::atomic::Ordering::Relaxed);
    if lag >= 10 {
        return text(
            StatusCode::OK,
            format!("ok\nstore behind: {waiting} readings waiting in the input log, the oldest {lag} s old\n"),
        );
    }
    text(StatusCode::OK, "ok".into())
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {method} {}; the API has GET /healthz, GET /metrics, GET /api/devices, GET /api/devices/{{id}}, POST /api/devices/{{id}}/write, POST /api/devices/{{id}}/maintenance, GET /api/alarms, GET /api/alarms/{{id}}, POST /api/alarms/{{id}}/ack, POST /api/alarms/{{id}}/on_site, GET /api/maintenance, DELETE /api/maintenance/{{id}}, GET /api/events, GET /api/kpi, GET /api/assessment, GET /api/report; the dashboard is at /",
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

impl From<HandleError> for ApiError {
    /// The status of each reason the core refused a command (documented in the README's
    /// HTTP API section): unknown alarm or device 404, already done 409, invalid 422, the
    /// core stage gone 503.
    fn from(e: HandleError) -> Self {
        use crate::model::event::CommandError as C;
        let at = |ts_ms: i64| match jiff::Timestamp::from_millisecond(ts_ms) {
            Ok(t) => format!("{t} (unix ms {ts_ms})"),
            Err(_) => format!("unix ms {ts_ms}"),
        };
        // No wildcard: a new variant must be given its status here.
        match e {
            HandleError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway is shutting down; try again when it is back",
            ),
            HandleError::Refused(c) => match c {
                C::UnknownAlarm(_) | C::UnknownDevice(_) => {
                    ApiError::new(StatusCode::NOT_FOUND, c.to_string())
                }
                C::AlreadyAcknowledged { id, by, ts_ms } => ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "alarm {id} was already acknowledged by {by} at {}",
                        at(ts_ms)
                    ),
                ),
                C::AlreadyOnSite { id, by, ts_ms } => ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "alarm {id} already has someone on site: {by} since {}",
                        at(ts_ms)
                    ),
                ),
                C::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            },
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
    //! A gateway configuration loaded the normal way, a real core stage over its inventory
    //! (with hand-written rules and a clock the test sets), and helpers to drive the router.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt as _;

    use super::{router, AppState};
    use crate::clock::Clock;
    use crate::config::{Config, HttpSettings, Secret};
    use crate::core::engine::EngineSettings;
    use crate::core::season::Season;
    use crate::core::Engine;
    use crate::journal::Journal;
    use crate::model::restore::Restored;
    use crate::model::rules::Severity;
    use crate::model::rules::{
        AlarmRule, Clear, Condition, Op, ResponseClass, Rules, StateRules, Trigger,
    };
    use crate::model::{Ack, Device, DeviceIdx, Inventory, Reading, Value};
    use crate::source::modbus::poller::ModbusHandle;
    use crate::stage::{Inputs, Outputs};
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

    /// A clock the test sets: the engine's now (stamps without `ts`, timeliness, ticks).
    #[derive(Debug)]
    pub(crate) struct ManualClock(AtomicI64);

    impl ManualClock {
        pub(crate) fn set(&self, ms: i64) {
            self.0.store(ms, SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(SeqCst)
        }
    }

    /// Where the clock starts: 2026-09-21, outside the heating season.
    pub(crate) const T0: i64 = 1_790_000_000_000;

    fn cond(d: &Device, signal: &str, op: Op, value: Value) -> Condition {
        Condition {
            signal: d
                .profile
                .signal_index(signal)
                .expect("a signal of the profile"),
            signal_name: signal.into(),
            op,
            value,
            season: false,
        }
    }

    fn rule(
        name: &str,
        when: Condition,
        severity: Severity,
        class: &str,
        on_site: Option<Condition>,
    ) -> AlarmRule {
        AlarmRule {
            name: name.into(),
            trigger: Trigger::Condition {
                when,
                clear: Clear::Immediate,
            },
            severity,
            class: class.into(),
            message: format!("{{name}} {name}"),
            delay_ms: 0,
            on_site,
        }
    }

    /// The test inventory with hand-written rules: elevators are in fault on `fault_code != 0`
    /// or `entrapment`, in maintenance on `mode == "inspection"`, and raise `entrapment`
    /// (critical, class `entrapment`, on site when switched to inspection) and `fault` (major,
    /// class `urgent`); `FP-1` raises `fire_alarm` (critical, class `fire`).
    fn with_rules(inv: &Inventory) -> Inventory {
        let devices = inv
            .devices()
            .iter()
            .map(|d| {
                let mut d = d.clone();
                let rules = match d.category.as_str() {
                    "elevator" => {
                        let inspection = cond(&d, "mode", Op::Eq, Value::Str("inspection".into()));
                        let fault = cond(&d, "fault_code", Op::Ne, Value::Int(0));
                        let entrapment = cond(&d, "entrapment", Op::Eq, Value::Bool(true));
                        Rules {
                            state: StateRules {
                                fault: vec![fault.clone(), entrapment.clone()],
                                maintenance: vec![inspection.clone()],
                            },
                            alarms: vec![
                                rule(
                                    "entrapment",
                                    entrapment,
                                    Severity::Critical,
                                    "entrapment",
                                    Some(inspection),
                                ),
                                rule("fault", fault, Severity::Major, "urgent", None),
                            ],
                        }
                    }
                    "fire_equipment" => {
                        let fire = cond(&d, "fire_alarm", Op::Eq, Value::Bool(true));
                        Rules {
                            state: StateRules::default(),
                            alarms: vec![rule(
                                "fire_alarm",
                                fire,
                                Severity::Critical,
                                "fire",
                                None,
                            )],
                        }
                    }
                    _ => Rules::default(),
                };
                d.rules = Arc::new(rules);
                d
            })
            .collect();
        Inventory::new(devices)
    }

    fn engine_settings(site: &str) -> EngineSettings {
        let class = |name: &str, ack_s: i64, on_site_s: i64| {
            (
                name.to_owned(),
                ResponseClass {
                    name: name.into(),
                    ack_target_ms: ack_s * 1000,
                    on_site_target_ms: Some(on_site_s * 1000),
                    repair_target_ms: None,
                    source: "test".into(),
                },
            )
        };
        EngineSettings {
            site: site.into(),
            classes: [
                class("fire", 60, 180),
                class("entrapment", 180, 1800),
                class("urgent", 180, 1800),
            ]
            .into_iter()
            .collect(),
            season: Season::beijing(),
            planned: Vec::new(),
            retain_cleared_ms: 7 * 86_400_000,
            min_indoor_c: 18.0,
            sites: Default::default(),
            max_lateness_ms: crate::core::engine::DEFAULT_MAX_LATENESS_MS,
            monitored_since: Default::default(),
            three_minute_promise: Default::default(),
        }
    }

    /// A router over a real core stage (engine, journal in a temp dir, live stream) with the
    /// test inventory and its rules; readings are fed by hand, the store channel is drained.
    pub(crate) struct Fixture {
        pub(crate) app: Router,
        pub(crate) state: AppState,
        pub(crate) settings: HttpSettings,
        pub(crate) stats: Arc<Stats>,
        pub(crate) clock: Arc<ManualClock>,
        /// Dropping it stops the core stage (as when the sources stop).
        pub(crate) readings: Option<mpsc::Sender<Reading>>,
        pub(crate) core_task: Option<tokio::task::JoinHandle<()>>,
        _journal_dir: tempfile::TempDir,
    }

    impl Fixture {
        pub(crate) fn idx(&self, site: &str, id: &str) -> DeviceIdx {
            self.state
                .inventory
                .lookup(site, id)
                .unwrap_or_else(|| panic!("no {site}/{id}"))
        }

        /// Feeds a reading of `site/id` stamped with the clock's now, and returns once the
        /// engine has applied it (a command queued after a reading is answered after it).
        pub(crate) async fn feed(&self, site: &str, id: &str, values: &[(&str, Value)]) {
            let device = self.idx(site, id);
            let profile = &self.state.inventory.get(device).profile;
            let values = values
                .iter()
                .map(|(name, v)| {
                    let i = profile.signal_index(name).expect("a signal of the profile");
                    (i, v.clone())
                })
                .collect();
            let r = Reading {
                device,
                ts_ms: self.clock.now_ms(),
                values,
                status: None,
                ack: Ack::None,
            };
            let tx = self.readings.as_ref().expect("the core is running");
            // The lsn this reading gets (nothing else is being fed): wait until the engine
            // has applied it.
            let lsn = self
                .stats
                .log
                .head
                .load(std::sync::atomic::Ordering::SeqCst);
            tx.send(r).await.expect("the core stage takes readings");
            while self
                .stats
                .log
                .applied
                .load(std::sync::atomic::Ordering::SeqCst)
                <= lsn
            {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            self.state.core.devices().await.expect("the core answers");
        }

        /// Waits until the stage's clock tick has run at the clock's current time (window
        /// starts and ends, heartbeats, delays: what the engine only learns from `tick`).
        pub(crate) async fn tick(&self) {
            tokio::time::sleep(crate::stage::TICK * 3).await;
            self.state.core.devices().await.expect("the core answers");
        }

        /// The core stage's journal file.
        pub(crate) fn journal_path(&self) -> std::path::PathBuf {
            self._journal_dir.path().join(crate::journal::FILE_NAME)
        }

        /// A router over the fixture's state as it is now (after a test changed it).
        pub(crate) fn router(&self) -> Router {
            router(&self.settings, self.state.clone(), CancellationToken::new())
        }

        /// Stops the core stage (as at shutdown) and waits for it.
        pub(crate) async fn stop_core(&mut self) {
            self.readings = None;
            if let Some(t) = self.core_task.take() {
                t.await.expect("the core stage ends cleanly");
            }
        }
    }

    pub(crate) fn app_with(token: Option<&str>, modbus: ModbusHandle) -> Fixture {
        let mut cfg = config(token);
        cfg.inventory = Arc::new(with_rules(&cfg.inventory));
        let stats = Arc::new(Stats::default());
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = Journal::open(dir.path()).expect("journal");
        journal.begin_run(T0, "test", "0").expect("run");
        let mut start = Vec::new();
        let engine = Engine::new(
            cfg.inventory.clone(),
            engine_settings(&cfg.gateway.site),
            Restored::default(),
            T0,
            &mut start,
        );
        let (tx, rx) = mpsc::channel(64);
        let (store_tx, mut store_rx) = mpsc::channel(1024);
        tokio::spawn(async move { while store_rx.recv().await.is_some() {} });
        // The real input log in the fixture's directory, as `run` wires it.
        let intake = crate::intake::Intake::open(
            crate::intake::LogSettings::in_data_dir(dir.path()),
            journal.engine_position().expect("position"),
            0,
            cfg.inventory.clone(),
            clock.clone(),
            stats.clone(),
        )
        .expect("input log");
        let (facts_tx, facts_rx) = mpsc::channel(64);
        let (logged_tx, logged_rx) = mpsc::channel(64);
        let durable = intake.durable();
        // The API's tests send no operator commands from a source.
        let (_operator_tx, operator_rx) = mpsc::channel(1);
        intake.spawn(
            crate::intake::IntakeInputs {
                readings: rx,
                operator: operator_rx,
                commands: facts_rx,
            },
            logged_tx,
        );
        let stage = crate::stage::spawn(
            engine,
            start,
            journal,
            Inputs {
                facts: logged_rx,
                record: None,
                escalations: crate::stage::Escalations::none(),
                durable: Some(durable),
            },
            facts_tx,
            Outputs {
                store: store_tx,
                mqtt: None,
                webhook: None,
                targets: Default::default(),
            },
            stats.clone(),
            clock.clone(),
        )
        .expect("the journal's thread starts");
        let settings: HttpSettings = cfg.http.clone().expect("[http] in the test config");
        assert_eq!(settings.api_token, Secret::new(token.unwrap_or("")));
        let state = AppState::new(
            &cfg,
            stats.clone(),
            modbus,
            stage.handle.clone(),
            clock.clone(),
        );
        Fixture {
            app: router(&settings, state.clone(), CancellationToken::new()),
            state,
            settings,
            stats,
            clock,
            readings: Some(tx),
            core_task: Some(stage.task),
            _journal_dir: dir,
        }
    }

    pub(crate) fn app(token: Option<&str>) -> Fixture {
        let cfg = config(token);
        let handle = ModbusHandle {
            endpoints: Vec::new(),
            inventory: cfg.inventory.clone(),
            bindings: Arc::new(cfg.modbus.bindings.clone()),
        };
        app_with(token, handle)
    }

    /// A request with a JSON body and an optional `Authorization` value.
    pub(crate) fn req(method: &str, uri: &str, auth: Option<&str>, body: &str) -> Request<Body> {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::from(body.to_owned())).expect("request")
    }

    /// `Bearer <TOKEN>`.
    pub(crate) fn bearer() -> String {
        format!("Bearer {TOKEN}")
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
    async fn healthz_says_when_the_input_log_fails_or_the_store_is_behind() {
        use std::sync::atomic::Ordering::Relaxed;
        let fx = app(None);
        fx.stats.log.head.store(1_500, Relaxed);
        fx.stats.log.store_pos.store(1_000, Relaxed);
        fx.stats.log.store_lag_s.store(42, Relaxed);
        let a = get(&fx.app, "/healthz").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            a.body,
            "ok\nstore behind: 500 readings waiting in the input log, the oldest 42 s old\n"
        );
        fx.stats.core.journal_failing.store(1, Relaxed);
        let a = get(&fx.app, "/healthz").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.body.contains("journal cannot be written"), "{}", a.body);
        fx.stats.core.journal_failing.store(0, Relaxed);
        fx.stats.mqtt_takeover.store(1, Relaxed);
        let a = get(&fx.app, "/healthz").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.body.contains("MQTT session taken over"), "{}", a.body);
        assert!(a.body.contains("distinct mqtt.client_id"), "{}", a.body);
        fx.stats.mqtt_takeover.store(0, Relaxed);
        fx.stats.log.failing.store(1, Relaxed);
        let a = get(&fx.app, "/healthz").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.body.contains("input log cannot be written"), "{}", a.body);
    }

    #[tokio::test]
    async fn healthz_says_ok_without_auth() {
        let fx = app(None);
        let app = fx.app.clone();
        let a = get(&app, "/healthz").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, "ok");
        assert_eq!(a.content_type, "text/plain; charset=utf-8");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let fx = app(None);
        let app = fx.app.clone();
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
        let fx = app(None);
        let mut settings = fx.settings.clone();
        settings.listen = addr;
        let err = serve(settings, fx.state.clone(), CancellationToken::new())
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
        let fx = app(None);
        let server = Server::bind(&fx.settings, fx.state.clone())
            .await
            .expect("bind");
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
