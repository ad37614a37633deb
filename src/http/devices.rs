//! `GET /api/devices` (the inventory, 设备台账, with each device's current state from the engine,
//! filtered by site, building, category and state), `GET /api/devices/{id}` (one device, its
//! state, latest values, active alarms and maintenance windows) and
//! `POST /api/devices/{id}/write` (an operator writes a signal of a Modbus device, e.g. puts a
//! fire pump controller back to auto). A write is checked here for the token, the body and the
//! device; the Modbus poller then checks the signal and the value against the register map,
//! sends it in the endpoint's serialised request stream and answers with the device's result.
//! Every write attempt is logged with who, what and the result.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::body::MAX_BY_CHARS;
use super::{auth, json, remote, ApiError, Ctx};
use crate::encode::json as forms;
use crate::journal::WriteRecord;
use crate::model::event::DeviceState;
use crate::model::{Device, SiteOf, Value};
use crate::source::modbus::poller::WriteError;
use crate::source::modbus::Binding;

/// A write that gets no answer from the poller within this time fails with 504 (the poller
/// applies its own per-request timeouts; this only bounds a stuck queue).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// `?site=&building=&category=&state=`; an empty value does not filter. `values=true` adds
/// each device's latest values (`values`, by signal name) to the list.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct Filter {
    site: Option<String>,
    building: Option<String>,
    category: Option<String>,
    state: Option<String>,
    values: Option<String>,
}

impl Filter {
    /// Refuses a category or state that does not exist (a typo would list nothing).
    fn check(&self, ctx: &Ctx) -> Result<Option<DeviceState>, ApiError> {
        if let Some(c) = self.category.as_deref().filter(|c| !c.is_empty()) {
            ctx.app.check_category(c)?;
        }
        match self.state.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => DeviceState::parse(s).map(Some).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown state `{s}`; valid: {}",
                        DeviceState::ALL.map(DeviceState::as_str).join(", ")
                    ),
                )
            }),
        }
    }

    /// `values=true|false` (absent or empty: false).
    fn with_values(&self) -> Result<bool, ApiError> {
        match self.values.as_deref().map(str::trim) {
            None | Some("" | "false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`values` must be true or false, not `{other}`"),
            )),
        }
    }

    fn matches(&self, d: &Device) -> bool {
        let ok = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        };
        ok(&self.site, &d.site)
            && ok(&self.building, &d.building)
            && ok(&self.category, &d.category)
    }
}

/// One device as the API shows it.
#[derive(Debug, Serialize)]
struct DeviceView<'a> {
    id: &'a str,
    name: &'a str,
    site: &'a str,
    building: &'a str,
    category: &'a str,
    /// Expected reporting interval (MQTT) or poll interval (Modbus), seconds.
    interval_s: f64,
    /// `mqtt` or `modbus`.
    source: &'static str,
    /// Set for `modbus` devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    modbus: Option<ModbusView<'a>>,
}

#[derive(Debug, Serialize)]
struct ModbusView<'a> {
    /// The `[[modbus.endpoints]]` name.
    endpoint: &'a str,
    unit: u8,
    model: &'a str,
    /// Signals an operator may write (`writable = true` in the register map).
    writable: Vec<&'a str>,
}

fn view<'a>(
    d: &'a Device,
    binding: Option<&'a Binding>,
    endpoints: &'a [String],
) -> DeviceView<'a> {
    DeviceView {
        id: &d.id,
        name: &d.name,
        site: &d.site,
        building: &d.building,
        category: &d.category,
        interval_s: d.interval.as_secs_f64(),
        source: if d.polled { "modbus" } else { "mqtt" },
        modbus: binding.map(|b| ModbusView {
            endpoint: endpoints.get(b.endpoint).map_or("", String::as_str),
            unit: b.unit,
            model: &b.model.name,
            writable: b
                .model
                .registers
                .iter()
                .filter(|r| r.writable)
                .map(|r| r.signal.as_str())
                .collect(),
        }),
    }
}

/// A device as listed: the inventory view merged with its state (`crate::encode::json::device`:
/// `state`, `since_ts`, `last_seen_ts`, `active_alarms`).
fn listed(ctx: &Ctx, d: &Device, state: &crate::model::event::DeviceView) -> serde_json::Value {
    let binding = ctx.app.bindings.get(&state.device);
    let mut v = serde_json::to_value(view(d, binding, &ctx.app.endpoints)).unwrap_or_default();
    if let (serde_json::Value::Object(m), serde_json::Value::Object(s)) =
        (&mut v, forms::device(&ctx.app.inventory, state))
    {
        m.extend(s);
    }
    v
}

pub(super) async fn list(
    State(ctx): State<Arc<Ctx>>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) = filter.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "bad query: {}; filters: site, building, category, state, and values=true for the latest values (e.g. /api/devices?site=huafu&category=elevator&state=fault)",
                e.body_text()
            ),
        )
    })?;
    let state = filter.check(&ctx)?;
    let inv = &ctx.app.inventory;
    // In inventory order: a device's index is its place in the list.
    let devices: Vec<serde_json::Value> = if filter.with_values()? {
        ctx.app
            .core
            .devices_with_values()
            .await?
            .iter()
            .filter(|(s, _)| state.is_none_or(|want| s.state == want))
            .map(|(s, v)| (inv.get(s.device), s, v))
            .filter(|(d, _, _)| filter.matches(d))
            .map(|(d, s, v)| {
                let mut out = listed(&ctx, d, s);
                if let serde_json::Value::Object(m) = &mut out {
                    m.insert("values".into(), values_json(d, v));
                }
                out
            })
            .collect()
    } else {
        ctx.app
            .core
            .devices()
            .await?
            .iter()
            .filter(|s| state.is_none_or(|want| s.state == want))
            .map(|s| (inv.get(s.device), s))
            .filter(|(d, _)| filter.matches(d))
            .map(|(d, s)| listed(&ctx, d, s))
            .collect()
    };
    Ok(json(StatusCode::OK, &devices))
}

/// The latest value of each signal of `d` by name, `null` when not reported since start.
fn values_json(d: &Device, values: &[Option<Value>]) -> serde_json::Value {
    d.profile
        .signals
        .iter()
        .enumerate()
        .map(|(i, sig)| {
            let v = values.get(i).and_then(Option::as_ref);
            (
                sig.name.clone(),
                v.map_or(serde_json::Value::Null, value_json),
            )
        })
        .collect::<serde_json::Map<String, serde_json::Value>>()
        .into()
}

/// The profile's signals of `d` (name, Chinese label, unit, type), for people reading values.
fn signals_json(d: &Device) -> serde_json::Value {
    d.profile
        .signals
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "label": s.label,
                "unit": s.unit,
                "type": format!("{:?}", s.ty).to_lowercase(),
            })
        })
        .collect()
}

/// `GET /api/devices/{id}?site=`: the device as listed, plus `values` (latest value of each
/// signal by name, `null` when not reported since start), `signals` (the profile's signals:
/// name, label, unit, type), `category_label`, `alarms` (its active alarms, most severe and
/// oldest first) and `maintenance` (its current and future windows).
pub(super) async fn one(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad device id: {}", e.body_text()),
        )
    })?;
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}; the only parameter is ?site=", e.body_text()),
        )
    })?;
    let site = resolve_site(&ctx, &id, query.site.as_deref())?;
    let inv = &ctx.app.inventory;
    let idx = inv.lookup(&site, &id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device `{id}` at site `{site}`"),
        )
    })?;
    let d = inv.get(idx);
    let core = &ctx.app.core;
    let (state, values) = core.device(idx).await?;
    let (alarms, now) = core.alarms().await?;
    let windows = core.windows().await?;

    let mut active: Vec<&crate::model::event::Alarm> = alarms
        .iter()
        .filter(|a| a.device == idx && a.is_active())
        .collect();
    active.sort_by(|a, b| super::alarms::control_room_order(a, b));
    let mut windows: Vec<&crate::model::event::MaintenanceWindow> =
        windows.iter().filter(|w| w.device == idx).collect();
    windows.sort_by_key(|w| (w.start_ms, w.end_ms));

    let mut out = listed(&ctx, d, &state);
    if let serde_json::Value::Object(m) = &mut out {
        m.insert("values".into(), values_json(d, &values));
        m.insert("signals".into(), signals_json(d));
        m.insert(
            "category_label".into(),
            serde_json::Value::String(d.profile.label.clone()),
        );
        m.insert(
            "alarms".into(),
            active
                .into_iter()
                .map(|a| forms::alarm(inv, a, now))
                .collect(),
        );
        m.insert(
            "maintenance".into(),
            windows
                .into_iter()
                .map(|w| forms::maintenance(inv, w))
                .collect(),
        );
    }
    Ok(json(StatusCode::OK, &out))
}

/// `?site=` of a device's endpoints, for ids that exist at more than one site.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct WriteQuery {
    pub(super) site: Option<String>,
}

/// The body of a write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    signal: String,
    value: serde_json::Value,
    /// The operator, for the log.
    by: String,
}

const BODY_EXAMPLE: &str = r#"{"signal": "pump_auto", "value": true, "by": "张三"}"#;

/// The HTTP status of each reason a write did not happen (documented on `WriteError`).
pub fn status_for(e: &WriteError) -> StatusCode {
    // No wildcard: a new variant must be given its status here.
    match e {
        WriteError::UnknownDevice(_) => StatusCode::NOT_FOUND,
        WriteError::NotModbus(_) => StatusCode::CONFLICT,
        WriteError::UnknownSignal { .. } => StatusCode::NOT_FOUND,
        WriteError::NotWritable { .. } => StatusCode::FORBIDDEN,
        WriteError::OutOfRange { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        WriteError::BadValue { .. } => StatusCode::BAD_REQUEST,
        WriteError::Exception(_) => StatusCode::BAD_GATEWAY,
        WriteError::Unreachable(_) => StatusCode::GATEWAY_TIMEOUT,
        WriteError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A JSON value as a signal value; the poller checks it against the signal's type.
fn to_value(v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    match v {
        J::Bool(b) => Ok(Value::Bool(*b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Value::Int(i))
            } else if n.is_u64() {
                Err(format!(
                    "`value` {n} is too large for a 64-bit signed integer"
                ))
            } else {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(Value::Float)
                    .ok_or_else(|| format!("`value` {n} is not a finite number"))
            }
        }
        J::String(s) => Ok(Value::Str(s.clone())),
        J::Null | J::Array(_) | J::Object(_) => Err(format!(
            "`value` must be a boolean, a number or a string, not {v}"
        )),
    }
}

/// Parses and checks a write body.
fn parse_body(body: &[u8]) -> Result<(String, Value, String), String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!("the body is not a valid write: {e}; send JSON like {BODY_EXAMPLE}")
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
    if !v.is_object() {
        return Err(bad(&"not a JSON object"));
    }
    let b: WriteBody = serde_json::from_value(v).map_err(|e| bad(&e))?;
    if b.signal.is_empty() || b.signal.chars().any(char::is_control) {
        return Err(format!(
            "`signal` must name a signal of the device, e.g. {BODY_EXAMPLE}"
        ));
    }
    let by = b.by.trim();
    if by.is_empty() {
        return Err("`by` is empty; name the operator making the write".into());
    }
    if by.chars().count() > MAX_BY_CHARS || by.chars().any(char::is_control) {
        return Err(format!(
            "`by` must be an operator's name of at most {MAX_BY_CHARS} characters without control characters"
        ));
    }
    let value = to_value(&b.value)?;
    Ok((b.signal, value, by.to_owned()))
}

/// The site of device `id`: the one asked for, else the gateway's own site if it has the id,
/// else the only site that has it.
pub(super) fn resolve_site(ctx: &Ctx, id: &str, asked: Option<&str>) -> Result<String, ApiError> {
    ctx.app
        .inventory
        .site_of(id, &ctx.app.site, asked)
        .map_err(|e| match e {
            SiteOf::NotAt { site, .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no device `{id}` at site `{site}`"),
            ),
            SiteOf::Nowhere => ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no device `{id}`; GET /api/devices lists them"),
            ),
            SiteOf::Several(many) => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "device `{id}` exists at several sites ({}); add ?site= to say which",
                    many.join(", ")
                ),
            ),
        })
}

pub(super) async fn write(
    State(ctx): State<Arc<Ctx>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteQuery>, QueryRejection>,
    headers: HeaderMap,
    ext: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let remote = remote(&ext);
    let Path(id) = match id {
        Ok(p) => p,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("bad device id: {}", e.body_text()),
            )
            .into_response()
        }
    };
    let id_log = id.escape_debug().to_string();
    let refuse = |e: ApiError, by: &str, signal: &str| {
        warn!(device = %id_log, signal = %signal.escape_debug(), by = %by.escape_debug(),
              remote = %remote, status = e.status.as_u16(), error = %e.message,
              "Device write refused.");
        e.into_response()
    };

    if let Err(e) = auth::check(&headers, &ctx.api_token, &ctx.api_token_env) {
        return refuse(e, "-", "-");
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("bad query: {}; the only parameter is ?site=", e.body_text()),
            );
            return refuse(e, "-", "-");
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let e = ApiError::new(
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            );
            return refuse(e, "-", "-");
        }
    };
    let (signal, value, by) = match parse_body(&body) {
        Ok(parsed) => parsed,
        Err(msg) => return refuse(ApiError::new(StatusCode::BAD_REQUEST, msg), "-", "-"),
    };
    // From here on every outcome is journaled (`writes`), with who asked and from where.
    let mut trail = WriteRecord {
        id: 0,
        ts_ms: 0,
        site: query.site.clone().unwrap_or_default(),
        device: id.clone(),
        signal: signal.clone(),
        old_value: None,
        new_value: value_json(&value),
        by: by.clone(),
        remote: remote.clone(),
        status: 0,
        result: String::new(),
    };
    let site = match resolve_site(&ctx, &id, query.site.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            trail.status = e.status.as_u16();
            trail.result = e.message.clone();
            journal_write(&ctx, trail).await;
            return refuse(e, &by, &signal);
        }
    };
    trail.site = site.clone();
    trail.old_value = latest_value(&ctx, &site, &id, &signal).await;

    let result = tokio::time::timeout(
        WRITE_TIMEOUT,
        ctx.app
            .modbus
            .write(&site, &id, &signal, value.clone(), &by),
    )
    .await
    .unwrap_or_else(|_| {
        Err(WriteError::Unreachable(format!(
            "no answer within {}s",
            WRITE_TIMEOUT.as_secs()
        )))
    });
    let (status, outcome) = match &result {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(e) => (status_for(e), e.to_string()),
    };
    trail.status = status.as_u16();
    trail.result = outcome;
    journal_write(&ctx, trail).await;
    match result {
        Ok(()) => {
            info!(site = %site.escape_debug(), device = %id_log, signal = %signal.escape_debug(),
                  value = %value, by = %by.escape_debug(), remote = %remote,
                  "Device write done.");
            json(
                StatusCode::OK,
                &WriteDone {
                    ok: true,
                    site: &site,
                    device: &id,
                    signal: &signal,
                    value: &value_json(&value),
                    by: &by,
                },
            )
        }
        Err(e) => {
            let status = status_for(&e);
            warn!(site = %site.escape_debug(), device = %id_log, signal = %signal.escape_debug(),
                  value = %value, by = %by.escape_debug(), remote = %remote,
                  status = status.as_u16(), error = %e, "Device write failed.");
            ApiError::new(status, e.to_string()).into_response()
        }
    }
}

/// The signal's latest value at the core stage, as JSON; `None` when unknown.
async fn latest_value(ctx: &Ctx, site: &str, id: &str, signal: &str) -> Option<serde_json::Value> {
    let idx = ctx.app.inventory.lookup(site, id)?;
    let sig = ctx.app.inventory.get(idx).profile.signal_index(signal)?;
    let (_, values) = ctx.app.core.device(idx).await.ok()?;
    values
        .get(usize::from(sig))
        .and_then(Option::as_ref)
        .map(value_json)
}

/// Journals one write (blocking SQLite, off the async workers). A journal that cannot be
/// written is logged and counted; the write's answer is not held back for it.
async fn journal_write(ctx: &Ctx, mut w: WriteRecord) {
    let Some(log) = ctx.app.writes.clone() else {
        return;
    };
    w.ts_ms = ctx.app.clock.now_ms();
    let stats = ctx.app.stats.clone();
    let done = tokio::task::spawn_blocking(move || log.record(&w)).await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            stats
                .core
                .journal_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(error = %e, "Could not write the journal: a Modbus write is missing from GET /api/writes.");
        }
        Err(e) => warn!(error = %e, "Journaling a Modbus write failed."),
    }
}

/// The answer to a successful write.
#[derive(Debug, Serialize)]
struct WriteDone<'a> {
    ok: bool,
    site: &'a str,
    device: &'a str,
    signal: &'a str,
    value: &'a serde_json::Value,
    by: &'a str,
}

pub(super) fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Float(f) => serde_json::json!(f),
        Value::Int(i) => serde_json::json!(i),
        Value::Bool(b) => serde_json::json!(b),
        Value::Str(s) => serde_json::json!(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::{app, app_with, get, send, Answer, TOKEN};
    use crate::source::modbus::poller::{ModbusHandle, WriteCommand};
    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;

    fn ids(a: &Answer) -> Vec<String> {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.content_type, "application/json; charset=utf-8");
        a.json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["site"].as_str().expect("site"),
                    d["id"].as_str().expect("id")
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn lists_every_device_with_its_source() {
        let fx = app(None);
        let app = fx.app.clone();
        let a = get(&app, "/api/devices").await;
        assert_eq!(
            ids(&a),
            [
                "huafu/HX-1",
                "huafu/FP-1",
                "huafu/E-1",
                "north/E-1",
                "north/T-9"
            ]
        );
        let list = a.json();
        let hx = &list[0];
        assert_eq!(hx["name"], "1号换热站");
        assert_eq!(hx["building"], "换热站");
        assert_eq!(hx["category"], "heating_loop");
        assert_eq!(hx["interval_s"], 10.0);
        assert_eq!(hx["source"], "modbus");
        assert_eq!(hx["modbus"]["endpoint"], "plant-room");
        assert_eq!(hx["modbus"]["unit"], 1);
        assert_eq!(hx["modbus"]["model"], "heating_plc");
        let fp = &list[1];
        assert_eq!(fp["interval_s"], 0.5);
        assert_eq!(fp["modbus"]["writable"], serde_json::json!(["pump_auto"]));
        let e = &list[2];
        assert_eq!(e["source"], "mqtt");
        assert!(e.get("modbus").is_none(), "{e}");
    }

    #[tokio::test]
    async fn filters_by_site_building_and_category() {
        let fx = app(None);
        let app = fx.app.clone();
        let q = |uri: &'static str| {
            let app = app.clone();
            async move { ids(&get(&app, uri).await) }
        };
        assert_eq!(
            q("/api/devices?site=north").await,
            ["north/E-1", "north/T-9"]
        );
        assert_eq!(
            q("/api/devices?category=elevator").await,
            ["huafu/E-1", "north/E-1"]
        );
        assert_eq!(
            q("/api/devices?site=huafu&category=elevator").await,
            ["huafu/E-1"]
        );
        // Percent-encoded Chinese.
        assert_eq!(
            q("/api/devices?building=%E6%B3%B5%E6%88%BF").await,
            ["huafu/FP-1"]
        );
        assert_eq!(q("/api/devices?site=").await.len(), 5);
        // A category with a profile but no device here lists nothing.
        assert!(q("/api/devices?category=access_gate").await.is_empty());

        let a = get(&app, "/api/devices?category=lift").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let e = a.error();
        assert!(e.contains("unknown category `lift`"), "{e}");
        assert!(e.contains("elevator, fire_equipment"), "{e}");

        let a = get(&app, "/api/devices?state=broken").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            a.error(),
            "unknown state `broken`; valid: intact, fault, offline, maintenance"
        );

        let a = get(&app, "/api/devices?floor=3").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.error().contains("unknown field `floor`"), "{}", a.body);
    }

    #[tokio::test]
    async fn lists_states_from_the_engine_and_filters_by_state() {
        use crate::http::test_support::T0;
        let fx = app(None);
        let a = get(&fx.app, "/api/devices").await;
        let list = a.json();
        // Never heard from since start: offline (DESIGN §4); the inventory fields stay.
        let hx = &list[0];
        assert_eq!(hx["state"], "offline");
        assert_eq!(hx["since_ts"], T0);
        assert_eq!(hx["last_seen_ts"], serde_json::Value::Null);
        assert_eq!(hx["active_alarms"], 0);
        assert_eq!(hx["source"], "modbus");
        assert_eq!(hx["modbus"]["unit"], 1);

        fx.clock.set(T0 + 5_000);
        let s = |v: &str| Value::Str(v.into());
        fx.feed(
            "huafu",
            "E-1",
            &[
                ("mode", s("normal")),
                ("fault_code", Value::Int(0)),
                ("entrapment", Value::Bool(false)),
            ],
        )
        .await;
        fx.feed("huafu", "FP-1", &[("fire_alarm", Value::Bool(true))])
            .await;
        fx.feed("north", "E-1", &[("fault_code", Value::Int(3))])
            .await;

        let q = |uri: &'static str| {
            let app = fx.app.clone();
            async move { ids(&get(&app, uri).await) }
        };
        assert_eq!(
            q("/api/devices?state=intact").await,
            ["huafu/FP-1", "huafu/E-1"]
        );
        assert_eq!(q("/api/devices?state=fault").await, ["north/E-1"]);
        assert_eq!(
            q("/api/devices?state=offline").await,
            ["huafu/HX-1", "north/T-9"]
        );
        assert_eq!(
            q("/api/devices?state=offline&site=north").await,
            ["north/T-9"]
        );
        assert!(q("/api/devices?state=maintenance").await.is_empty());
        let list = get(&fx.app, "/api/devices?category=fire_equipment")
            .await
            .json();
        assert_eq!(list[0]["active_alarms"], 1);
        assert_eq!(list[0]["last_seen_ts"], T0 + 5_000);
        assert_eq!(list[0]["since_ts"], T0 + 5_000);

        // One device: state, latest values by name (null when not reported), active alarms,
        // maintenance windows. The gateway's own site by default.
        let a = get(&fx.app, "/api/devices/E-1").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let d = a.json();
        assert_eq!(d["site"], "huafu");
        assert_eq!(d["state"], "intact");
        assert_eq!(d["values"]["mode"], "normal");
        assert_eq!(d["values"]["entrapment"], false);
        assert_eq!(d["values"]["floor"], serde_json::Value::Null);
        assert_eq!(d["alarms"], serde_json::json!([]));
        assert_eq!(d["maintenance"], serde_json::json!([]));
        let d = get(&fx.app, "/api/devices/E-1?site=north").await.json();
        assert_eq!(d["state"], "fault");
        assert_eq!(d["values"]["fault_code"], 3);
        assert_eq!(d["alarms"][0]["rule"], "fault");
        assert_eq!(d["alarms"][0]["severity"], "major");
        let d = get(&fx.app, "/api/devices/FP-1").await.json();
        assert_eq!(d["alarms"][0]["rule"], "fire_alarm");
        assert_eq!(d["values"]["fire_alarm"], true);
        // The profile's signals, with their labels and units, for people reading the values.
        let sig = d["signals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "fire_alarm")
            .unwrap();
        assert_eq!(sig["type"], "bool");
        assert!(sig["label"].is_string(), "{sig}");
        assert!(d["category_label"].is_string(), "{d}");

        // The list with the latest values (the dashboard's heating page), filters still apply.
        let list = get(
            &fx.app,
            "/api/devices?values=true&site=huafu&category=elevator",
        )
        .await
        .json();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["values"]["mode"], "normal");
        assert_eq!(list[0]["values"]["floor"], serde_json::Value::Null);
        assert_eq!(list[0]["state"], "intact");
        let list = get(&fx.app, "/api/devices").await.json();
        assert!(list[0].get("values").is_none(), "{}", list[0]);
        let a = get(&fx.app, "/api/devices?values=yes").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.error().contains("`values`"), "{}", a.body);

        let a = get(&fx.app, "/api/devices/NOPE").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        a.error();
        let a = get(&fx.app, "/api/devices/E-1?site=mars").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.error().contains("at site `mars`"), "{}", a.body);
        let a = get(&fx.app, "/api/devices/E-1?floor=1").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        a.error();
    }

    fn write_req(uri: &str, auth: Option<&str>, body: &str) -> Request<Body> {
        let mut r = Request::post(uri).header("content-type", "application/json");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::from(body.to_owned())).expect("request")
    }

    const GOOD: &str = r#"{"signal": "pump_auto", "value": true, "by": "张三"}"#;

    async fn write(app: &Router, uri: &str, auth: Option<&str>, body: &str) -> Answer {
        send(app, write_req(uri, auth, body)).await
    }

    #[tokio::test]
    async fn writes_need_the_token() {
        let fx = app(Some(TOKEN));
        let app = fx.app.clone();
        let a = write(&app, "/api/devices/FP-1/write", None, GOOD).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.error().contains("missing API token"), "{}", a.body);
        let challenge = a.headers.get("www-authenticate").expect("challenge");
        assert!(challenge.to_str().expect("ascii").starts_with("Bearer"));

        let a = write(&app, "/api/devices/FP-1/write", Some("Bearer wrong"), GOOD).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.error(), "wrong API token");
        assert!(a.headers.contains_key("www-authenticate"));

        // The right token gets through to the Modbus handle (no poller runs here: 503).
        let auth = format!("Bearer {TOKEN}");
        let a = write(&app, "/api/devices/FP-1/write", Some(&auth), GOOD).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert!(!a.headers.contains_key("www-authenticate"));
        assert!(
            a.error().starts_with("the gateway cannot take writes now"),
            "{}",
            a.body
        );
    }

    #[tokio::test]
    async fn writes_are_disabled_without_a_token() {
        let fx = app(None);
        let app = fx.app.clone();
        let a = write(
            &app,
            "/api/devices/FP-1/write",
            Some("Bearer anything"),
            GOOD,
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        let e = a.error();
        assert!(e.contains("writes are disabled"), "{e}");
        assert!(e.contains("ESTATE_GW_API_TOKEN"), "{e}");
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_with_a_reason() {
        let fx = app(Some(TOKEN));
        let app = fx.app.clone();
        let auth = format!("Bearer {TOKEN}");
        for (body, needle) in [
            ("", "EOF while parsing"),
            ("not json", "expected ident"),
            ("[1, 2]", "not a JSON object"),
            (
                r#"{"signal": "pump_auto", "value": true}"#,
                "missing field `by`",
            ),
            (
                r#"{"signal": "pump_auto", "by": "x"}"#,
                "missing field `value`",
            ),
            (r#"{"value": true, "by": "x"}"#, "missing field `signal`"),
            (
                r#"{"signal": "pump_auto", "value": true, "by": "x", "force": 1}"#,
                "unknown field `force`",
            ),
            (
                r#"{"signal": "pump_auto", "value": null, "by": "x"}"#,
                "not null",
            ),
            (
                r#"{"signal": "pump_auto", "value": [1], "by": "x"}"#,
                "not [1]",
            ),
            (
                r#"{"signal": "pump_auto", "value": 18446744073709551615, "by": "x"}"#,
                "too large",
            ),
            (
                r#"{"signal": "pump_auto", "value": true, "by": "  "}"#,
                "`by` is empty",
            ),
            (
                r#"{"signal": "pump_auto", "value": true, "by": "a\nb"}"#,
                "control characters",
            ),
            (
                r#"{"signal": "", "value": true, "by": "x"}"#,
                "`signal` must name",
            ),
        ] {
            let a = write(&app, "/api/devices/FP-1/write", Some(&auth), body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
            let e = a.error();
            assert!(e.contains(needle), "{body}: {e}");
        }
        // Too large a body.
        let big = format!(
            r#"{{"signal": "pump_auto", "value": "{}", "by": "x"}}"#,
            "x".repeat(super::super::MAX_BODY_BYTES)
        );
        let a = write(&app, "/api/devices/FP-1/write", Some(&auth), &big).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
        a.error();
    }

    #[tokio::test]
    async fn unknown_and_ambiguous_devices() {
        let fx = app(Some(TOKEN));
        let app = fx.app.clone();
        let auth = format!("Bearer {TOKEN}");
        let a = write(&app, "/api/devices/NOPE/write", Some(&auth), GOOD).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.error().contains("no device `NOPE`"), "{}", a.body);

        let a = write(
            &app,
            "/api/devices/FP-1/write?site=north",
            Some(&auth),
            GOOD,
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.error().contains("at site `north`"), "{}", a.body);

        let a = write(&app, "/api/devices/FP-1/write?floor=3", Some(&auth), GOOD).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.error().contains("?site="), "{}", a.body);
    }

    #[tokio::test]
    async fn sites_resolve_to_the_asked_own_or_only_one() {
        let fx = app(None);
        let ctx = Ctx {
            app: fx.state.clone(),
            api_token: Default::default(),
            api_token_env: String::new(),
            closing: Default::default(),
        };
        // E-1 is at both sites: the gateway's own wins; ?site= picks the other.
        assert_eq!(resolve_site(&ctx, "E-1", None).expect("own"), "huafu");
        assert_eq!(
            resolve_site(&ctx, "E-1", Some("north")).expect("asked"),
            "north"
        );
        // T-9 only exists at north.
        assert_eq!(resolve_site(&ctx, "T-9", None).expect("only"), "north");
        assert_eq!(resolve_site(&ctx, "T-9", Some("")).expect("empty"), "north");
        // At another gateway site, E-1 is ambiguous.
        let other = Ctx {
            app: crate::http::AppState {
                site: "elsewhere".into(),
                ..ctx.app.clone()
            },
            ..ctx
        };
        let e = resolve_site(&other, "E-1", None).expect_err("ambiguous");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("huafu, north"), "{}", e.message);
    }

    #[test]
    fn every_write_error_has_its_documented_status() {
        let s = |e: WriteError| status_for(&e).as_u16();
        let dev = || "FP-1".to_owned();
        let sig = || "pump_auto".to_owned();
        assert_eq!(s(WriteError::UnknownDevice(dev())), 404);
        assert_eq!(s(WriteError::NotModbus(dev())), 409);
        assert_eq!(
            s(WriteError::UnknownSignal {
                device: dev(),
                signal: sig()
            }),
            404
        );
        assert_eq!(
            s(WriteError::NotWritable {
                device: dev(),
                signal: sig()
            }),
            403
        );
        assert_eq!(
            s(WriteError::BadValue {
                signal: sig(),
                reason: "x".into()
            }),
            400
        );
        assert_eq!(
            s(WriteError::OutOfRange {
                signal: sig(),
                value: "-1e30".into(),
                reason: "x".into()
            }),
            422
        );
        assert_eq!(s(WriteError::Exception("illegal address".into())), 502);
        assert_eq!(s(WriteError::Unreachable("timeout".into())), 504);
        assert_eq!(s(WriteError::Unavailable("shutting down".into())), 503);
    }

    #[test]
    fn json_values_become_signal_values() {
        use serde_json::json;
        assert_eq!(to_value(&json!(true)), Ok(Value::Bool(true)));
        assert_eq!(to_value(&json!(-3)), Ok(Value::Int(-3)));
        assert_eq!(to_value(&json!(55.5)), Ok(Value::Float(55.5)));
        assert_eq!(to_value(&json!(3.0)), Ok(Value::Float(3.0)));
        assert_eq!(to_value(&json!("auto")), Ok(Value::Str("auto".into())));
        assert!(to_value(&json!(null)).is_err());
        assert!(to_value(&json!({"a": 1})).is_err());
        assert!(to_value(&json!(u64::MAX)).is_err());
    }

    /// A router whose Modbus handle has one endpoint served by a fake endpoint task that
    /// answers every write with `answer` and hands the command it got to the test.
    fn app_with_endpoint(
        answer: Result<(), WriteError>,
    ) -> (
        crate::http::test_support::Fixture,
        tokio::sync::mpsc::UnboundedReceiver<(String, Value, String)>,
    ) {
        let cfg = crate::http::test_support::config(Some(TOKEN));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteCommand>(4);
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let inventory = cfg.inventory.clone();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                let id = inventory.get(cmd.device).id.clone();
                let _ = seen_tx.send((id, cmd.value.clone(), cmd.by.clone()));
                let _ = cmd.reply.send(answer.clone());
            }
        });
        let handle = ModbusHandle {
            endpoints: vec![tx],
            inventory: cfg.inventory.clone(),
            bindings: std::sync::Arc::new(cfg.modbus.bindings.clone()),
        };
        (app_with(Some(TOKEN), handle), seen)
    }

    #[tokio::test]
    async fn a_write_reaches_the_endpoint_and_reports_success() {
        let (fx, mut seen) = app_with_endpoint(Ok(()));
        let app = fx.app.clone();
        let auth = format!("Bearer {TOKEN}");
        let a = write(&app, "/api/devices/FP-1/write", Some(&auth), GOOD).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.content_type, "application/json; charset=utf-8");
        assert_eq!(
            a.json(),
            serde_json::json!({"ok": true, "site": "huafu", "device": "FP-1",
                               "signal": "pump_auto", "value": true, "by": "张三"})
        );
        let (device, value, by) = seen.recv().await.expect("the endpoint got the write");
        assert_eq!(
            (device.as_str(), value, by.as_str()),
            ("FP-1", Value::Bool(true), "张三")
        );
    }

    #[tokio::test]
    async fn endpoint_answers_map_to_their_status() {
        let auth = format!("Bearer {TOKEN}");
        for (answer, status) in [
            (WriteError::Exception("illegal data address".into()), 502),
            (WriteError::Unreachable("timeout after 1s".into()), 504),
            (WriteError::Unavailable("shutting down".into()), 503),
        ] {
            let message = answer.to_string();
            let (fx, _seen) = app_with_endpoint(Err(answer));
            let a = write(&fx.app, "/api/devices/FP-1/write", Some(&auth), GOOD).await;
            assert_eq!(a.status.as_u16(), status, "{}", a.body);
            assert_eq!(a.error(), message);
        }
    }

    #[tokio::test]
    async fn writes_the_register_map_refuses_never_reach_the_endpoint() {
        let (fx, mut seen) = app_with_endpoint(Ok(()));
        let app = fx.app.clone();
        let auth = format!("Bearer {TOKEN}");
        for (uri, body, status) in [
            // An MQTT device.
            ("/api/devices/E-1/write", GOOD, 409),
            // Not in the register map.
            (
                "/api/devices/FP-1/write",
                r#"{"signal": "colour", "value": 1, "by": "x"}"#,
                404,
            ),
            // In the map, not writable.
            (
                "/api/devices/FP-1/write",
                r#"{"signal": "fire_alarm", "value": false, "by": "x"}"#,
                403,
            ),
            // A string for a coil.
            (
                "/api/devices/FP-1/write",
                r#"{"signal": "pump_auto", "value": "on", "by": "x"}"#,
                400,
            ),
        ] {
            let a = write(&app, uri, Some(&auth), body).await;
            assert_eq!(a.status.as_u16(), status, "{uri} {body}: {}", a.body);
            a.error();
        }
        assert!(
            seen.try_recv().is_err(),
            "a refused write reached the endpoint"
        );
    }

    #[tokio::test]
    async fn handle_without_a_poller_answers_503() {
        // A handle whose endpoint channel is closed (the poller has stopped): a clean JSON
        // 503, never a hang.
        let cfg = crate::http::test_support::config(Some(TOKEN));
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let handle = ModbusHandle {
            endpoints: vec![tx],
            inventory: cfg.inventory.clone(),
            bindings: std::sync::Arc::new(cfg.modbus.bindings.clone()),
        };
        let fx = app_with(Some(TOKEN), handle);
        let app = fx.app.clone();
        let auth = format!("Bearer {TOKEN}");
        let a = write(&app, "/api/devices/FP-1/write", Some(&auth), GOOD).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        a.error();
    }
}
