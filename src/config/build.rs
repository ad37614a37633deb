//! Raw configuration → typed settings, collecting every mistake.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::alarms::AlarmSettings;
use super::check::{check_name, redact_url, resolve, secret, Secret, SecretUrl};
use super::heating::HeatingSettings;
use super::raw::{RawConfig, RawGateway, RawHttp, RawIngest, RawLog, RawMqtt, RawStore};
use super::{alarms, heating, inventory, maintenance, models, profiles, Errors};
use crate::model::event::PlannedMaintenance;
use crate::model::{Inventory, Profile};
use crate::mqtt::topic::{SummaryTopic, TopicPattern};

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was loaded from.
    pub file: PathBuf,
    pub gateway: GatewaySettings,
    pub mqtt: Option<MqttSettings>,
    pub store: Option<StoreSettings>,
    pub ingest: IngestSettings,
    /// The input log (`[log]`, in `data_dir/log`).
    pub log: LogSettings,
    /// The HTTP API (`[http]`); `None` = no server runs.
    pub http: Option<HttpSettings>,
    pub profiles: BTreeMap<String, Arc<Profile>>,
    /// Modbus endpoints; devices point into them by index.
    pub modbus: crate::source::modbus::ModbusSettings,
    /// Device models (register maps) by name.
    pub models: BTreeMap<String, Arc<crate::source::modbus::DeviceModel>>,
    pub inventory: Arc<Inventory>,
    /// Where the devices came from, for the summary (`gateway.toml`, `devices.csv`).
    pub inventory_sources: Vec<String>,
    /// Response classes, retention of cleared alarms, the webhook (`[alarms]`).
    pub alarms: AlarmSettings,
    /// The heating season and the indoor minimum (`[heating]`, per site `[heating.sites.*]`).
    pub heating: HeatingSettings,
    /// The scorecard: KPIs, grade bands, the offline policy (`[assessment]`).
    pub assessment: super::AssessmentSettings,
    /// Planned maintenance windows (`[[maintenance]]`), devices resolved.
    pub maintenance: Vec<PlannedMaintenance>,
    /// Devices' `monitored_since` (unix ms), for those that give one.
    pub monitored_since: std::collections::HashMap<crate::model::DeviceIdx, i64>,
    /// `run --record FILE` (not from the TOML): write every fact the engine takes to this
    /// tape (`estate-gateway replay` reads it).
    pub record: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub site: String,
    pub host: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    pub stats_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// PEM bytes of the CA file, when one is configured.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate for mutual TLS (`mqtt.cert_file`, `mqtt.key_file`).
    pub client_cert: Option<ClientCert>,
    /// For `mqtts://` without `ca_file`: the system's CA certificates (DER), loaded and
    /// checked at start so a machine without them fails with a message, not a dead task.
    pub system_roots: Vec<Vec<u8>>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Secret,
    pub keep_alive: Duration,
    pub telemetry_topic: TopicPattern,
    pub status_topic: TopicPattern,
    pub max_payload_bytes: usize,
    pub max_packet_bytes: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Outgoing alarm lifecycle events (QoS 1): a pattern with `{site}`, `{category}`,
    /// `{device}` (checked by `TopicPattern::parse`).
    pub alarm_topic: TopicPattern,
    /// Outgoing retained device state; placeholders as `alarm_topic`.
    pub state_topic: TopicPattern,
    /// Outgoing retained live figures (`estate/{site}/kpi`): `SummaryTopic`, `{site}` only.
    pub kpi_topic: SummaryTopic,
    /// Outgoing retained scorecards (`estate/{site}/assessment/{period}`).
    pub assessment_topic: SummaryTopic,
    /// Incoming acknowledgments; `{site}` is the only placeholder.
    pub ack_topic: TopicPattern,
    /// Incoming on-site reports; `{site}` is the only placeholder.
    pub on_site_topic: TopicPattern,
    pub inflight: u16,
    /// The MQTT protocol version of every connection (source and event sink).
    pub protocol: MqttProtocol,
    /// MQTT v5: the session expiry interval sent in CONNECT (whole seconds).
    pub session_expiry: Duration,
    /// MQTT v5: the receive maximum sent in CONNECT.
    pub receive_maximum: u16,
}

/// `mqtt.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttProtocol {
    /// MQTT 3.1.1 (`v3.1.1`, `v311`): the default.
    #[default]
    V311,
    /// MQTT 5 (`v5`).
    V5,
}

impl MqttProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            MqttProtocol::V311 => "v3.1.1",
            MqttProtocol::V5 => "v5",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// May carry a password (`http://user:pass@host`): prints redacted.
    pub url: SecretUrl,
    pub org: String,
    pub bucket: String,
    pub token: Secret,
    /// PEM bytes of `store.ca_file`: trusted besides the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate for mutual TLS (`store.cert_file`, `store.key_file`).
    pub client_cert: Option<ClientCert>,
    pub batch_lines: usize,
    pub batch_interval: Duration,
    /// A partial batch goes once no new line arrived for this long (zero: never early).
    pub batch_quiet: Duration,
    pub queue_lines: usize,
    pub timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub gzip: bool,
}

/// The `[http]` section, built.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Bearer token required by the write endpoints; empty = writes are disabled.
    pub api_token: Secret,
    /// The environment variable the token is read from, for the "how to set it" messages.
    pub api_token_env: String,
    /// Connections served at once (`http.max_connections`, default 10000).
    pub max_connections: usize,
    /// Idle and slow-header connections are closed after this (`http.header_timeout`, 10s).
    pub header_timeout: Duration,
}

/// The input log's directory inside `data_dir` (`wal::DIR_NAME` is the same name).
pub const LOG_DIR_NAME: &str = "log";

/// `[log]`, built.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The log directory (`data_dir/log`).
    pub dir: PathBuf,
    /// The log's bound: over it, the oldest segments go even if the store has not had them
    /// (counted and logged).
    pub max_bytes: u64,
    /// Consumed records are kept at least this long (for `replay`).
    pub retention: Duration,
    /// Records per group commit at most.
    pub commit_batch: usize,
    /// A segment file's size before the next one starts.
    pub segment_bytes: u64,
}

impl LogSettings {
    pub fn in_data_dir(data_dir: &std::path::Path) -> LogSettings {
        LogSettings {
            dir: data_dir.join(LOG_DIR_NAME),
            max_bytes: 2 << 30,
            retention: Duration::from_secs(86_400),
            commit_batch: 4096,
            segment_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub max_clock_skew: Duration,
    pub max_reading_age: Duration,
    /// DESIGN §4 "Event time": see `EngineSettings::max_lateness_ms`.
    pub max_lateness: Duration,
    pub channel_capacity: usize,
    pub log_burst: u32,
    pub log_window: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_clock_skew: Duration::from_secs(60),
            max_reading_age: Duration::from_secs(7 * 86_400),
            max_lateness: Duration::from_secs(2),
            channel_capacity: 10_000,
            log_burst: 5,
            log_window: Duration::from_secs(60),
        }
    }
}

pub(super) fn build(
    raw: RawConfig,
    path: &Path,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> Config {
    let gateway = build_gateway(&raw.gateway, base_dir, env, errs);
    let alarm_settings = alarms::build_alarms(&raw.alarms, raw.mqtt.is_some(), base_dir, env, errs);
    let heating = heating::build_heating(&raw.heating, errs);
    let profiles = profiles::load(
        raw.gateway
            .profiles_dir
            .as_deref()
            .map(|d| resolve(base_dir, d)),
        &alarm_settings.classes,
        errs,
    );
    let mqtt = raw
        .mqtt
        .as_ref()
        .map(|m| build_mqtt(m, &gateway, base_dir, env, errs));
    let store = raw
        .store
        .as_ref()
        .map(|s| build_store(s, base_dir, env, errs));
    let ingest = build_ingest(&raw.ingest, errs);
    let log = build_log(&raw.log, &gateway.data_dir, errs);
    let http = raw
        .http
        .as_ref()
        .map(|h| build_http(h, base_dir, env, errs));
    let models = models::load(
        raw.modbus
            .as_ref()
            .and_then(|m| m.models_dir.as_deref())
            .map(|d| resolve(base_dir, d)),
        &profiles,
        errs,
    );
    let mut modbus = models::build_modbus(raw.modbus.as_ref(), errs);
    let ctx = inventory::Context {
        default_site: &gateway.site,
        profiles: &profiles,
        modbus: &modbus,
        models: &models,
        classes: &alarm_settings.classes,
    };
    let inventory::Built {
        devices,
        bindings,
        monitored_since,
        sources: inventory_sources,
    } = inventory::build(&raw, &ctx, base_dir, errs);
    modbus.bindings = bindings;

    if let Some(m) = &mqtt {
        for (key, pat) in [
            ("mqtt.telemetry_topic", &m.telemetry_topic),
            ("mqtt.status_topic", &m.status_topic),
        ] {
            if !pat.has_site() {
                inventory::check_ids_unique_across_sites(&devices, key, errs);
            }
        }
    }
    let inventory = Arc::new(Inventory::new(devices));
    let maintenance =
        maintenance::build_maintenance(&raw.maintenance, &gateway.site, &inventory, errs);
    let assessment =
        super::assessment::build_assessment(&raw.assessment, &profiles, &inventory, errs);
    Config {
        file: path.to_path_buf(),
        gateway,
        mqtt,
        store,
        ingest,
        log,
        http,
        profiles,
        modbus,
        models,
        inventory,
        inventory_sources,
        alarms: alarm_settings,
        heating,
        maintenance,
        assessment,
        monitored_since: monitored_since.into_iter().collect(),
        record: None,
    }
}

fn build_gateway(
    g: &RawGateway,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> GatewaySettings {
    if !g.site.is_empty() {
        check_name(errs, "gateway.site", &g.site, true, true);
    }
    let log_format = match g.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            errs.push(
                "gateway.log_format",
                format!("`{other}` is not a log format; valid: text, json"),
            );
            LogFormat::Text
        }
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&g.log_level) {
        errs.push(
            "gateway.log_level",
            format!(
                "`{}` is not a log filter ({e}); write e.g. `info` or `estate_gateway=debug`",
                g.log_level
            ),
        );
    }
    let host = g
        .host
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .or_else(|| env.get("HOSTNAME").cloned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    check_name(errs, "gateway.host", &host, false, true);
    let stats_interval = errs.duration("gateway.stats_interval", &g.stats_interval);
    if stats_interval.is_zero() && !errs.has_key("gateway.stats_interval") {
        errs.push("gateway.stats_interval", "must be more than 0, e.g. `10s`");
    }
    GatewaySettings {
        site: g.site.clone(),
        host,
        data_dir: resolve(base_dir, &g.data_dir),
        log_format,
        log_level: g.log_level.clone(),
        stats_interval,
    }
}

pub(super) fn build_mqtt(
    m: &RawMqtt,
    gateway: &GatewaySettings,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> MqttSettings {
    let (host, port, tls) = match url::Url::parse(&m.url) {
        Ok(u) => {
            let tls = match u.scheme() {
                "mqtt" | "tcp" => false,
                "mqtts" | "ssl" => true,
                other => {
                    errs.push(
                        "mqtt.url",
                        format!("`{}`: scheme `{other}` is not supported; write `mqtt://host:1883` or `mqtts://host:8883`", redact_url(&m.url)),
                    );
                    false
                }
            };
            let host = u.host_str().unwrap_or("").to_owned();
            if host.is_empty() {
                errs.push(
                    "mqtt.url",
                    format!(
                        "`{}` has no host; write e.g. `mqtt://127.0.0.1:1883`",
                        redact_url(&m.url)
                    ),
                );
            }
            if !u.username().is_empty() || u.password().is_some() {
                errs.push("mqtt.url", "carries credentials; set `mqtt.username` and the password through `mqtt.password_file` or `mqtt.password_env` instead");
            }
            (host, u.port().unwrap_or(if tls { 8883 } else { 1883 }), tls)
        }
        Err(e) => {
            errs.push(
                "mqtt.url",
                format!(
                    "`{}` is not a URL ({e}); write e.g. `mqtt://127.0.0.1:1883`",
                    redact_url(&m.url)
                ),
            );
            (String::new(), 0, false)
        }
    };
    let ca_pem = m.ca_file.as_deref().and_then(|f| {
        let p = resolve(base_dir, f);
        match std::fs::read(&p) {
            Ok(b) => {
                let certs = rustls_pemfile::certs(&mut b.as_slice())
                    .filter(Result::is_ok)
                    .count();
                if certs == 0 {
                    errs.push(
                        "mqtt.ca_file",
                        format!(
                            "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----); point it at the CA certificate, not a key or request",
                            p.display()
                        ),
                    );
                }
                Some(b)
            }
            Err(e) => {
                errs.push(
                    "mqtt.ca_file",
                    format!("cannot read `{}`: {e}", p.display()),
                );
                None
            }
        }
    });
    let mut system_roots = Vec::new();
    if tls && ca_pem.is_none() {
        let loaded = rustls_native_certs::load_native_certs();
        system_roots = loaded.certs.into_iter().map(|c| c.to_vec()).collect();
        if system_roots.is_empty() {
            let why: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
            errs.push(
                "mqtt.url",
                format!(
                    "`mqtts://` without `mqtt.ca_file` needs the system's CA certificates, and none could be loaded ({}); set `mqtt.ca_file`, or install ca-certificates",
                    if why.is_empty() { "none found".to_owned() } else { why.join("; ") }
                ),
            );
        }
    }
    if ca_pem.is_some() && !tls {
        errs.push(
            "mqtt.ca_file",
            "is set but `mqtt.url` is not `mqtts://`; use `mqtts://host:8883` for TLS",
        );
    }
    let client_cert = client_cert(
        errs,
        base_dir,
        ("mqtt.cert_file", m.cert_file.as_deref()),
        ("mqtt.key_file", m.key_file.as_deref()),
    );
    if client_cert.is_some() && !tls {
        errs.push(
            "mqtt.cert_file",
            "is set but `mqtt.url` is not `mqtts://`; a client certificate needs TLS (`mqtts://host:8883`)",
        );
    }
    let password = secret(
        errs,
        "mqtt.password_file",
        m.password_file.as_deref(),
        &m.password_env,
        base_dir,
        env,
    );
    let mut pattern = |key: &str, s: &str| match TopicPattern::parse(s) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(key, format!("`{s}` {e}"));
            None
        }
    };
    let telemetry_topic = pattern("mqtt.telemetry_topic", &m.telemetry_topic);
    let status_topic = pattern("mqtt.status_topic", &m.status_topic);
    let fallback = || TopicPattern::parse("{device}").unwrap_or_else(|_| unreachable!());
    if let (Some(t), Some(s)) = (&telemetry_topic, &status_topic) {
        if t.filter() == s.filter() {
            errs.push(
                "mqtt.status_topic",
                "is the same as `mqtt.telemetry_topic`; they must differ (e.g. end in /telemetry and /status)",
            );
        }
    }
    check_out_topics(m, telemetry_topic.as_ref(), status_topic.as_ref(), errs);
    let client_id = m.client_id.clone().unwrap_or_else(|| {
        if gateway.site.is_empty() {
            format!("estate-gateway-{}", gateway.host)
        } else {
            format!("estate-gateway-{}", gateway.site)
        }
    });
    if client_id.is_empty() || client_id.len() > 65535 {
        errs.push("mqtt.client_id", "must be 1 to 65535 bytes");
    }
    let keep_alive = errs.duration("mqtt.keep_alive", &m.keep_alive);
    if keep_alive < Duration::from_secs(1) && !errs.has_key("mqtt.keep_alive") {
        errs.push("mqtt.keep_alive", "must be at least 1s, e.g. `30s`");
    }
    let reconnect_min = errs.duration("mqtt.reconnect_min", &m.reconnect_min);
    let reconnect_max = errs.duration("mqtt.reconnect_max", &m.reconnect_max);
    if reconnect_min > reconnect_max {
        errs.push(
            "mqtt.reconnect_min",
            "is larger than `mqtt.reconnect_max`; the backoff starts at min and doubles up to max",
        );
    }
    if m.max_payload_bytes == 0 {
        errs.push(
            "mqtt.max_payload_bytes",
            "must be more than 0 (default 65536)",
        );
    }
    // A reading is a record of the input log, which refuses records over 16 MiB when read
    // back: keep payloads well below that.
    if m.max_payload_bytes > 8 << 20 {
        errs.push(
            "mqtt.max_payload_bytes",
            format!(
                "{} is more than 8 MiB (8388608), the largest payload the input log takes as one record (default 65536)",
                m.max_payload_bytes
            ),
        );
    }
    if m.max_packet_bytes < m.max_payload_bytes {
        errs.push(
            "mqtt.max_packet_bytes",
            format!(
                "({}) is smaller than `mqtt.max_payload_bytes` ({}); oversize payloads must reach the gateway to be counted and acknowledged",
                m.max_packet_bytes, m.max_payload_bytes
            ),
        );
    }
    if m.inflight == 0 {
        errs.push("mqtt.inflight", "must be at least 1 (default 1000)");
    }
    let protocol = match m.protocol.as_str() {
        "v3.1.1" | "v311" => MqttProtocol::V311,
        "v5" => MqttProtocol::V5,
        other => {
            errs.push(
                "mqtt.protocol",
                format!("`{other}` is not an MQTT protocol version; valid: v3.1.1 (or v311), v5"),
            );
            MqttProtocol::V311
        }
    };
    for (key, p) in [
        ("mqtt.telemetry_topic", &telemetry_topic),
        ("mqtt.status_topic", &status_topic),
    ] {
        if p.as_ref().is_some_and(|p| p.share_group().is_some()) && protocol != MqttProtocol::V5 {
            errs.push(
                key,
                "is a shared subscription (`$share/…`), which needs MQTT 5; set mqtt.protocol = \"v5\"",
            );
        }
    }
    let session_expiry = errs.duration("mqtt.session_expiry", &m.session_expiry);
    if session_expiry.as_secs() > u64::from(u32::MAX) && !errs.has_key("mqtt.session_expiry") {
        errs.push(
            "mqtt.session_expiry",
            "is longer than MQTT allows (4294967295 s, about 136 years)",
        );
    }
    if session_expiry.is_zero() && !errs.has_key("mqtt.session_expiry") {
        errs.push(
            "mqtt.session_expiry",
            "is 0: the broker would drop our session and its queued messages at every disconnect; use e.g. `7d`",
        );
    }
    if m.receive_maximum == 0 {
        errs.push("mqtt.receive_maximum", "must be at least 1 (default 1000)");
    }
    MqttSettings {
        url: redact_url(&m.url),
        host,
        port,
        tls,
        ca_pem,
        client_cert,
        system_roots,
        client_id,
        username: m.username.clone(),
        password,
        keep_alive,
        telemetry_topic: telemetry_topic.unwrap_or_else(fallback),
        status_topic: status_topic.unwrap_or_else(fallback),
        max_payload_bytes: m.max_payload_bytes,
        max_packet_bytes: m.max_packet_bytes,
        reconnect_min,
        reconnect_max,
        // Checked by `check_out_topics`; a bad pattern has been reported (the fallback is
        // never used because the config then fails to load).
        alarm_topic: TopicPattern::parse(&m.alarm_topic).unwrap_or_else(|_| fallback()),
        state_topic: TopicPattern::parse(&m.state_topic).unwrap_or_else(|_| fallback()),
        kpi_topic: SummaryTopic::parse(&m.kpi_topic, false)
            .unwrap_or_else(|_| SummaryTopic::default_kpi()),
        assessment_topic: SummaryTopic::parse(&m.assessment_topic, true)
            .unwrap_or_else(|_| SummaryTopic::default_assessment()),
        ack_topic: TopicPattern::parse_site_only(&m.ack_topic).unwrap_or_else(fallback),
        on_site_topic: TopicPattern::parse_site_only(&m.on_site_topic).unwrap_or_else(fallback),
        inflight: m.inflight,
        protocol,
        session_expiry,
        receive_maximum: m.receive_maximum,
    }
}

/// A client certificate for mutual TLS: the certificate chain and its private key, as PEM
/// (the key redacted in `Debug`), checked to belong together.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Secret,
}

/// Reads and checks a client certificate from its two keys (`cert` and `key`: key name and
/// value); `None` when neither is set or something is wrong (reported).
fn client_cert(
    errs: &mut Errors,
    base_dir: &Path,
    cert: (&str, Option<&str>),
    key: (&str, Option<&str>),
) -> Option<ClientCert> {
    use rumqttc::tokio_rustls::rustls;
    let (cert_key, key_key) = (cert.0, key.0);
    let (cert_file, key_file) = match (cert.1, key.1) {
        (None, None) => return None,
        (Some(c), Some(k)) => (resolve(base_dir, c), resolve(base_dir, k)),
        (Some(_), None) => {
            errs.push(key_key, format!("is missing: `{cert_key}` is set, and a client certificate needs its private key (PEM)"));
            return None;
        }
        (None, Some(_)) => {
            errs.push(cert_key, format!("is missing: `{key_key}` is set, and a private key needs its client certificate (PEM)"));
            return None;
        }
    };
    let mut read = |k: &str, p: &Path| match std::fs::read(p) {
        Ok(b) => Some(b),
        Err(e) => {
            errs.push(k, format!("cannot read `{}`: {e}", p.display()));
            None
        }
    };
    let (cert_pem, key_pem) = (read(cert_key, &cert_file)?, read(key_key, &key_file)?);
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        errs.push(
            cert_key,
            format!(
                "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert_file.display()
            ),
        );
        return None;
    }
    let private = match rustls_pemfile::private_key(&mut key_pem.as_slice()) {
        Ok(Some(k)) => k,
        _ => {
            errs.push(key_key, format!("`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY----- or similar); an encrypted key is not supported", key_file.display()));
            return None;
        }
    };
    let Ok(key_text) = String::from_utf8(key_pem) else {
        errs.push(
            key_key,
            format!("`{}` is not a PEM text file", key_file.display()),
        );
        return None;
    };
    // The same check the TLS connection makes: the key is usable and belongs to the
    // certificate.
    if let Err(e) = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, private)
    {
        errs.push(
            key_key,
            format!(
                "`{}` cannot be used with the certificate in `{}`: {e}",
                key_file.display(),
                cert_file.display()
            ),
        );
        return None;
    }
    Some(ClientCert {
        cert_pem,
        key_pem: Secret::new(key_text),
    })
}

/// Checks the alarm, state, ack and on-site topic patterns, and that no topic the gateway
/// subscribes to catches one of the others (an alarm taken for telemetry, an ack for a
/// status).
fn check_out_topics(
    m: &RawMqtt,
    telemetry: Option<&TopicPattern>,
    status: Option<&TopicPattern>,
    errs: &mut Errors,
) {
    // (key, pattern, MQTT filter, a sample topic)
    let mut topics: Vec<(&str, String, String)> = Vec::new();
    for (key, p) in [
        ("mqtt.telemetry_topic", telemetry),
        ("mqtt.status_topic", status),
    ] {
        if let Some(p) = p {
            // Compared without a `$share/{group}/` prefix: messages arrive without it.
            topics.push((key, p.render("+", "+", "+"), p.render("s1", "c1", "d1")));
        }
    }
    for (key, s) in [
        ("mqtt.alarm_topic", &m.alarm_topic),
        ("mqtt.state_topic", &m.state_topic),
    ] {
        match TopicPattern::parse(s) {
            Ok(p) if p.share_group().is_some() => errs.push(
                key,
                format!("`{s}` is a topic the gateway publishes to; `$share/` is for subscriptions (mqtt.telemetry_topic, mqtt.status_topic)"),
            ),
            Ok(p) => topics.push((key, p.filter(), p.render("s1", "c1", "d1"))),
            Err(e) => errs.push(key, format!("`{s}` {e}")),
        }
    }
    for (key, s, period) in [
        ("mqtt.kpi_topic", &m.kpi_topic, false),
        ("mqtt.assessment_topic", &m.assessment_topic, true),
    ] {
        match SummaryTopic::parse(s, period) {
            Ok(p) => topics.push((key, p.filter(), p.render("s1", "p1"))),
            Err(e) => errs.push(key, format!("`{s}` {e}")),
        }
    }
    for (key, s) in [
        ("mqtt.ack_topic", &m.ack_topic),
        ("mqtt.on_site_topic", &m.on_site_topic),
    ] {
        match site_topic(s) {
            Ok(()) => topics.push((key, s.replace("{site}", "+"), s.replace("{site}", "s1"))),
            Err(e) => errs.push(key, format!("`{s}` {e}")),
        }
    }
    for (i, (key, filter, sample)) in topics.iter().enumerate() {
        for (other, other_filter, other_sample) in &topics[..i] {
            // telemetry vs status: checked with its own message above.
            if *other == "mqtt.telemetry_topic" && *key == "mqtt.status_topic" {
                continue;
            }
            if filter_matches(filter, other_sample) || filter_matches(other_filter, sample) {
                errs.push(
                    *key,
                    format!(
                        "overlaps `{other}` (`{other_filter}` and `{filter}` match the same topics); give each its own topic, e.g. the defaults estate/{{site}}/alarms/{{category}}/{{device}}, estate/{{site}}/state/{{category}}/{{device}}, estate/{{site}}/alarms/ack, estate/{{site}}/alarms/on_site"
                    ),
                );
            }
        }
    }
}

/// An incoming command topic: literal segments and at most a whole-segment `{site}`.
fn site_topic(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    let mut site = false;
    for seg in s.split('/') {
        if seg == "{site}" {
            if site {
                return Err("has `{site}` twice".into());
            }
            site = true;
        } else if seg.contains('{') || seg.contains('}') {
            return Err(format!(
                "has `{seg}`; the only placeholder here is `{{site}}`, filling a whole segment (e.g. `estate/{{site}}/alarms/ack`)"
            ));
        } else if seg.contains('+') || seg.contains('#') {
            return Err(format!(
                "has the MQTT wildcard in `{seg}`; write `{{site}}` instead of `+`"
            ));
        }
    }
    Ok(())
}

/// Whether an MQTT filter with `+` wildcards (no `#`) matches a topic.
fn filter_matches(filter: &str, topic: &str) -> bool {
    let (f, t): (Vec<&str>, Vec<&str>) = (filter.split('/').collect(), topic.split('/').collect());
    f.len() == t.len() && f.iter().zip(&t).all(|(a, b)| *a == "+" || a == b)
}

fn build_store(
    s: &RawStore,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> StoreSettings {
    match url::Url::parse(&s.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(u) => errs.push(
            "store.url",
            format!(
                "`{}`: scheme `{}` is not supported or the host is missing; write e.g. `http://127.0.0.1:8086`",
                redact_url(&s.url),
                u.scheme()
            ),
        ),
        Err(e) => errs.push(
            "store.url",
            format!(
                "`{}` is not a URL ({e}); write the InfluxDB v2 base URL, e.g. `http://127.0.0.1:8086`",
                redact_url(&s.url)
            ),
        ),
    }
    if s.org.is_empty() {
        errs.push("store.org", "is empty; name the InfluxDB organisation");
    }
    if s.bucket.is_empty() {
        errs.push("store.bucket", "is empty; name the InfluxDB bucket");
    }
    let token = secret(
        errs,
        "store.token_file",
        s.token_file.as_deref(),
        &s.token_env,
        base_dir,
        env,
    );
    let https = url::Url::parse(&s.url).is_ok_and(|u| u.scheme() == "https");
    let ca_pem = s.ca_file.as_deref().and_then(|f| {
        let p = resolve(base_dir, f);
        match std::fs::read(&p) {
            Ok(b) if rustls_pemfile::certs(&mut b.as_slice()).any(|c| c.is_ok()) => Some(b),
            Ok(_) => {
                errs.push(
                    "store.ca_file",
                    format!("`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----); point it at the CA certificate, not a key or request", p.display()),
                );
                None
            }
            Err(e) => {
                errs.push("store.ca_file", format!("cannot read `{}`: {e}", p.display()));
                None
            }
        }
    });
    let client_cert = client_cert(
        errs,
        base_dir,
        ("store.cert_file", s.cert_file.as_deref()),
        ("store.key_file", s.key_file.as_deref()),
    );
    for (key, set) in [
        ("store.ca_file", s.ca_file.is_some()),
        ("store.cert_file", s.cert_file.is_some()),
    ] {
        if set && !https {
            errs.push(
                key,
                "is set but `store.url` is not `https://`; TLS settings need an https URL",
            );
        }
    }
    if s.batch_lines == 0 {
        errs.push("store.batch_lines", "must be more than 0 (default 5000)");
    }
    if s.queue_lines < s.batch_lines {
        errs.push(
            "store.queue_lines",
            format!(
                "({}) must be at least `store.batch_lines` ({})",
                s.queue_lines, s.batch_lines
            ),
        );
    }
    let batch_interval = errs.duration("store.batch_interval", &s.batch_interval);
    if batch_interval.is_zero() && !errs.has_key("store.batch_interval") {
        errs.push("store.batch_interval", "must be more than 0 (default 1s)");
    }
    let batch_quiet = errs.duration("store.batch_quiet", &s.batch_quiet);
    let timeout = errs.duration("store.timeout", &s.timeout);
    let retry_min = errs.duration("store.retry_min", &s.retry_min);
    let retry_max = errs.duration("store.retry_max", &s.retry_max);
    if retry_min > retry_max {
        errs.push("store.retry_min", "is larger than `store.retry_max`");
    }
    StoreSettings {
        url: SecretUrl::new(s.url.trim_end_matches('/')),
        org: s.org.clone(),
        bucket: s.bucket.clone(),
        ca_pem,
        client_cert,
        token,
        batch_lines: s.batch_lines,
        batch_interval,
        batch_quiet,
        queue_lines: s.queue_lines,
        timeout,
        retry_min,
        retry_max,
        gzip: s.gzip,
    }
}

fn build_http(
    h: &RawHttp,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> HttpSettings {
    let listen = match h.listen.trim().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            errs.push(
                "http.listen",
                format!(
                    "`{}` is not a socket address; write IP:port, e.g. `127.0.0.1:8080` (this machine only) or `0.0.0.0:8080` (all interfaces)",
                    h.listen
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }
    };
    if h.api_token_env.trim().is_empty() {
        errs.push(
            "http.api_token_env",
            "is empty; name the environment variable holding the API token (default ESTATE_GW_API_TOKEN)",
        );
    }
    let api_token = secret(
        errs,
        "http.api_token_file",
        h.api_token_file.as_deref(),
        &h.api_token_env,
        base_dir,
        env,
    );
    if h.max_connections == 0 {
        errs.push("http.max_connections", "must be at least 1 (default 10000)");
    }
    let header_timeout = errs.duration("http.header_timeout", &h.header_timeout);
    if header_timeout.is_zero() && !errs.has_key("http.header_timeout") {
        errs.push("http.header_timeout", "must be more than 0 (default 10s)");
    }
    HttpSettings {
        listen,
        api_token,
        api_token_env: h.api_token_env.clone(),
        max_connections: h.max_connections,
        header_timeout,
    }
}

fn build_log(l: &RawLog, data_dir: &Path, errs: &mut Errors) -> LogSettings {
    let mut s = LogSettings::in_data_dir(data_dir);
    if let Some(b) = errs.bytes("log.max_bytes", &l.max_bytes) {
        s.max_bytes = b;
    }
    if let Some(b) = errs.bytes("log.segment_bytes", &l.segment_bytes) {
        s.segment_bytes = b;
    }
    s.retention = errs.duration("log.retention", &l.retention);
    s.commit_batch = l.commit_batch;
    if s.commit_batch == 0 {
        errs.push("log.commit_batch", "must be more than 0 (default 4096)");
    }
    if s.segment_bytes < 4096 {
        errs.push("log.segment_bytes", "must be at least 4KiB (default 64MiB)");
    }
    if s.max_bytes < 2 * s.segment_bytes {
        errs.push(
            "log.max_bytes",
            format!(
                "must be at least two segments (2 × log.segment_bytes = {} bytes; default 2GiB)",
                2 * s.segment_bytes
            ),
        );
    }
    s
}

fn build_ingest(i: &RawIngest, errs: &mut Errors) -> IngestSettings {
    let s = IngestSettings {
        max_clock_skew: errs.duration("ingest.max_clock_skew", &i.max_clock_skew),
        max_reading_age: errs.duration("ingest.max_reading_age", &i.max_reading_age),
        max_lateness: errs.duration("ingest.max_lateness", &i.max_lateness),
        channel_capacity: i.channel_capacity,
        log_burst: i.log_burst,
        log_window: errs.duration("ingest.log_window", &i.log_window),
    };
    if s.channel_capacity == 0 {
        errs.push(
            "ingest.channel_capacity",
            "must be more than 0 (default 10000)",
        );
    }
    s
}
