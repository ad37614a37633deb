//! `RecordingProxy`: an in-process InfluxDB v2 write endpoint that records every write the
//! gateway makes (query string, `Content-Encoding`, `Authorization`, raw and gunzipped body)
//! and forwards the decoded body to an upstream store (VictoriaMetrics) or, with no upstream,
//! simply accepts it with 204. Failures can be injected (`fail_with`) and responses delayed
//! (`set_delay`) to exercise the gateway's retry and buffering paths.
//!
//! It runs axum on its own thread and tokio runtime, so it works from sync and async tests
//! alike, and listens on a port the OS picked (no race). It also answers InfluxDB's `/health`,
//! `/ready` and `/ping` itself, since VictoriaMetrics's `/health` is not InfluxDB-shaped.

use super::http::http_post;
use super::{tail, wait_until};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy did with a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Forwarded and the upstream answered 2xx (or there is no upstream): the data is stored.
    Accepted,
    /// Answered with the status set by [`RecordingProxy::fail_with`]; not forwarded.
    InjectedFailure,
    /// Forwarded, but the upstream answered non-2xx (its status is passed on) or could not be
    /// reached (answered 502).
    UpstreamError,
    /// Undecodable body (bad gzip, unknown Content-Encoding): answered 400, not forwarded.
    BadRequest,
}

/// One `POST /api/v2/write` the proxy received.
#[derive(Debug, Clone)]
pub(crate) struct RecordedRequest {
    /// The raw query string, e.g. `org=o&bucket=b&precision=ms`.
    pub(crate) query: String,
    pub(crate) content_encoding: Option<String>,
    pub(crate) authorization: Option<String>,
    /// All request headers (names lower-case), for anything else a test wants to check.
    pub(crate) headers: Vec<(String, String)>,
    /// The body as received.
    pub(crate) raw_body: Vec<u8>,
    /// The body after gunzip (== `raw_body` when not gzip-encoded; empty for `BadRequest`).
    pub(crate) body: Vec<u8>,
    /// The status the proxy answered with.
    pub(crate) status: u16,
    pub(crate) disposition: Disposition,
    /// When the request arrived.
    pub(crate) received_at: Instant,
}

impl RecordedRequest {
    /// One decoded query parameter (`org`, `bucket`, `precision`, ...).
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The decoded body as (lossy) UTF-8.
    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The decoded body split into non-empty lines (line-protocol aware: a newline inside a
    /// quoted string field does not split).
    pub(crate) fn lines(&self) -> Vec<String> {
        split_body(&self.body_text())
    }

    /// Whether this write was stored.
    pub(crate) fn accepted(&self) -> bool {
        self.disposition == Disposition::Accepted
    }
}

fn split_body(body: &str) -> Vec<String> {
    influxdb_line_protocol::split_lines(body)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

struct Failure {
    status: u16,
    /// How many more requests fail; `None`: all until healed.
    remaining: Option<usize>,
}

#[derive(Default)]
struct ProxyState {
    upstream: Option<String>,
    failure: Option<Failure>,
    /// Requests whose (decoded) body contains this are refused with 400, as a store refuses
    /// a malformed line.
    refuse_containing: Option<String>,
    delay: Duration,
    requests: Vec<RecordedRequest>,
    rejected: usize,
    other_requests: Vec<String>,
}

type Shared = Arc<Mutex<ProxyState>>;

fn lock(shared: &Shared) -> MutexGuard<'_, ProxyState> {
    // A panic elsewhere while holding the lock must not hide the recordings.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The recording proxy; shuts down (and frees its port) on drop.
pub(crate) struct RecordingProxy {
    port: u16,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingProxy {
    /// Starts the proxy on a free loopback port. `upstream` is a base URL such as
    /// `vm.url()` (`http://127.0.0.1:PORT`); writes go to `{upstream}/api/v2/write?{query}`.
    /// With `None`, every write is accepted with 204 and only recorded.
    pub(crate) fn start(upstream: Option<String>) -> RecordingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy listener");
        listener
            .set_nonblocking(true)
            .expect("set proxy listener non-blocking");
        let port = listener.local_addr().expect("proxy local_addr").port();
        let shared: Shared = Arc::new(Mutex::new(ProxyState {
            upstream: upstream.map(|u| u.trim_end_matches('/').to_string()),
            ..ProxyState::default()
        }));
        let app = Router::new()
            .route("/api/v2/write", post(write))
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/ping", get(ping).head(ping))
            .fallback(other)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("recording-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build proxy runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio proxy listener");
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("recording proxy on port {port} failed: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                // Cancels open connections and waits briefly for in-flight forwards.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn proxy thread");
        RecordingProxy {
            port,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the InfluxDB base URL to give the gateway.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes (or removes) the upstream for subsequent writes.
    pub(crate) fn set_upstream(&self, upstream: Option<String>) {
        lock(&self.shared).upstream = upstream.map(|u| u.trim_end_matches('/').to_string());
    }

    /// The next `count` writes (all writes until [`heal`](Self::heal) when `None`) are answered
    /// with `status` and an InfluxDB-style JSON error, not forwarded, and counted in
    /// [`rejected_count`](Self::rejected_count). While failing for good (`None`), `/health`
    /// and `/ready` answer 503 too.
    pub(crate) fn fail_with(&self, status: u16, count: Option<usize>) {
        assert!(
            StatusCode::from_u16(status).is_ok(),
            "fail_with: {status} is not an HTTP status"
        );
        lock(&self.shared).failure = Some(Failure {
            status,
            remaining: count,
        });
    }

    /// Ends any injected failure.
    /// Refuses (400) every request whose body contains `needle`, until healed.
    pub(crate) fn refuse_containing(&self, needle: &str) {
        lock(&self.shared).refuse_containing = Some(needle.to_string());
    }

    pub(crate) fn heal(&self) {
        let mut st = lock(&self.shared);
        st.failure = None;
        st.refuse_containing = None;
    }

    /// Delays every answer (writes and health) by `delay`; `Duration::ZERO` to stop.
    pub(crate) fn set_delay(&self, delay: Duration) {
        lock(&self.shared).delay = delay;
    }

    /// Every write request received, in the order they were answered, whatever their
    /// [`Disposition`]. See [`accepted`](Self::accepted) for the stored ones only.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// The write requests whose data was stored.
    pub(crate) fn accepted(&self) -> Vec<RecordedRequest> {
        lock(&self.shared)
            .requests
            .iter()
            .filter(|r| r.accepted())
            .cloned()
            .collect()
    }

    /// How many writes were answered with an injected failure.
    pub(crate) fn rejected_count(&self) -> usize {
        lock(&self.shared).rejected
    }

    /// Requests to paths the proxy does not serve, as `"METHOD /path?query"`.
    pub(crate) fn other_requests(&self) -> Vec<String> {
        lock(&self.shared).other_requests.clone()
    }

    /// All lines of all accepted writes (decoded, non-empty), in order.
    pub(crate) fn lines(&self) -> Vec<String> {
        lock(&self.shared)
            .requests
            .iter()
            .filter(|r| r.accepted())
            .flat_map(RecordedRequest::lines)
            .collect()
    }

    /// Polls until at least `min` accepted lines are there; returns what is there at `timeout`.
    pub(crate) fn wait_for_lines(&self, min: usize, timeout: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        wait_until(timeout, Duration::from_millis(20), || {
            lines = self.lines();
            lines.len() >= min
        });
        lines
    }

    /// Polls until at least `min` write requests (any disposition) arrived.
    pub(crate) fn wait_for_requests(&self, min: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let mut reqs = Vec::new();
        wait_until(timeout, Duration::from_millis(20), || {
            reqs = self.requests();
            reqs.len() >= min
        });
        reqs
    }

    /// Forgets all recordings and the rejected count (failure mode, delay and upstream stay).
    pub(crate) fn clear(&self) {
        let mut st = lock(&self.shared);
        st.requests.clear();
        st.other_requests.clear();
        st.rejected = 0;
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let st = lock(&self.shared);
            let summary: Vec<String> = st
                .requests
                .iter()
                .map(|r| {
                    format!(
                        "{} {:?} ?{} enc={:?} lines={} first={:?}",
                        r.status,
                        r.disposition,
                        r.query,
                        r.content_encoding,
                        r.lines().len(),
                        r.lines().first()
                    )
                })
                .collect();
            eprintln!(
                "--- recording proxy (port {}): {} writes, {} injected failures, other: {:?} ---\n{}",
                self.port,
                st.requests.len(),
                st.rejected,
                st.other_requests,
                tail(&summary.join("\n"), 30)
            );
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn json_error(status: u16, message: &str) -> Response {
    let code = match status {
        400 => "invalid",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        413 => "request too large",
        429 => "too many requests",
        503 => "unavailable",
        _ => "internal error",
    };
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn decode_body(content_encoding: Option<&str>, raw: &[u8]) -> Result<Vec<u8>, String> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(raw.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(raw)
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot gunzip body: {e}"))?;
            Ok(out)
        }
        Some(other) => Err(format!("unsupported Content-Encoding {other:?}")),
    }
}

async fn write(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let header_value = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut rec = RecordedRequest {
        query: uri.query().unwrap_or_default().to_string(),
        content_encoding: header_value("content-encoding"),
        authorization: header_value("authorization"),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        raw_body: raw.to_vec(),
        body: Vec::new(),
        status: 0,
        disposition: Disposition::BadRequest,
        received_at: Instant::now(),
    };
    let decoded = decode_body(rec.content_encoding.as_deref(), &raw);
    rec.body = decoded.clone().unwrap_or_default();

    let (injected, delay, upstream) = {
        let mut st = lock(&shared);
        let injected = match &mut st.failure {
            Some(f) => {
                let status = f.status;
                match &mut f.remaining {
                    None => Some(status),
                    Some(0) => None,
                    Some(n) => {
                        *n -= 1;
                        Some(status)
                    }
                }
            }
            None => None,
        };
        if matches!(
            &st.failure,
            Some(Failure {
                remaining: Some(0),
                ..
            })
        ) {
            st.failure = None;
        }
        let injected = injected.or_else(|| {
            let needle = st.refuse_containing.as_deref()?;
            String::from_utf8_lossy(&rec.body)
                .contains(needle)
                .then_some(400)
        });
        (injected, st.delay, st.upstream.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    if let Some(status) = injected {
        rec.status = status;
        rec.disposition = Disposition::InjectedFailure;
        let mut st = lock(&shared);
        st.rejected += 1;
        st.requests.push(rec);
        return json_error(status, "injected failure (RecordingProxy::fail_with)");
    }

    let body = match decoded {
        Ok(body) => body,
        Err(msg) => {
            rec.status = 400;
            rec.disposition = Disposition::BadRequest;
            lock(&shared).requests.push(rec);
            return json_error(400, &msg);
        }
    };

    let (status, resp_body, disposition) = match upstream {
        None => (204, Vec::new(), Disposition::Accepted),
        Some(up) => {
            let url = format!("{up}/api/v2/write?{}", rec.query);
            let auth = rec.authorization.clone();
            let forwarded = tokio::task::spawn_blocking(move || {
                let mut hdrs = vec![("Content-Type", "text/plain; charset=utf-8")];
                if let Some(a) = auth.as_deref() {
                    hdrs.push(("Authorization", a));
                }
                http_post(&url, &hdrs, &body)
            })
            .await;
            match forwarded {
                Ok(Ok(resp)) if (200..300).contains(&resp.status) => {
                    (resp.status, resp.body, Disposition::Accepted)
                }
                Ok(Ok(resp)) => (resp.status, resp.body, Disposition::UpstreamError),
                Ok(Err(e)) => (
                    502,
                    format!("upstream unreachable: {e}").into_bytes(),
                    Disposition::UpstreamError,
                ),
                Err(e) => (
                    502,
                    format!("forwarding task failed: {e}").into_bytes(),
                    Disposition::UpstreamError,
                ),
            }
        }
    };
    rec.status = status;
    rec.disposition = disposition;
    lock(&shared).requests.push(rec);
    if status == 502 {
        return json_error(502, &String::from_utf8_lossy(&resp_body));
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        resp_body,
    )
        .into_response()
}

/// `Some(status)` while a permanent injected failure is active.
async fn health_state(shared: &Shared) -> Option<u16> {
    let (failing, delay) = {
        let st = lock(shared);
        let failing = match &st.failure {
            Some(Failure {
                status,
                remaining: None,
            }) => Some(*status),
            _ => None,
        };
        (failing, st.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    failing
}

async fn health(State(shared): State<Shared>) -> Response {
    let json = |status: StatusCode, state: &str, message: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            serde_json::json!({
                "name": "influxdb",
                "message": message,
                "status": state,
                "checks": [],
                "version": "v2.7.0",
                "commit": "recording-proxy",
            })
            .to_string(),
        )
            .into_response()
    };
    match health_state(&shared).await {
        None => json(StatusCode::OK, "pass", "ready for queries and writes"),
        Some(_) => json(StatusCode::SERVICE_UNAVAILABLE, "fail", "injected failure"),
    }
}

async fn ready(State(shared): State<Shared>) -> Response {
    match health_state(&shared).await {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            r#"{"status":"ready","started":"2024-01-01T00:00:00Z","up":"1s"}"#,
        )
            .into_response(),
        Some(_) => json_error(503, "injected failure"),
    }
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn other(State(shared): State<Shared>, method: axum::http::Method, uri: Uri) -> Response {
    lock(&shared).other_requests.push(format!("{method} {uri}"));
    json_error(404, "path not found")
}
