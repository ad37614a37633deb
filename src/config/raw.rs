//! The configuration as written: serde structs mirroring `gateway.toml`, every field with its
//! documented default. Nothing here is validated; `super::build` turns these into typed
//! settings and collects every mistake.
//!
//! Unknown keys are not rejected by serde (`deny_unknown_fields` stops at the first one);
//! `super::load` collects all of them with `serde_ignored` instead.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub gateway: RawGateway,
    pub mqtt: Option<RawMqtt>,
    pub store: Option<RawStore>,
    pub ingest: RawIngest,
    /// The input log (`data_dir/log`): bound, retention, group commit.
    pub log: RawLog,
    pub modbus: Option<RawModbus>,
    /// The HTTP API; absent = no server runs.
    pub http: Option<RawHttp>,
    pub devices: Vec<RawDevice>,
    /// A CSV inventory (设备台账), relative to the config file.
    pub devices_csv: Option<String>,
    /// Response classes, retention of cleared alarms, the webhook.
    pub alarms: RawAlarms,
    /// The heating season and the indoor minimum.
    pub heating: RawHeating,
    /// Planned maintenance windows.
    pub maintenance: Vec<RawMaintenance>,
    /// The scorecard (考核评分): KPIs, grade bands, the offline policy.
    pub assessment: RawAssessment,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawGateway {
    /// Default site of devices that do not name one; tag of the `gateway` measurement.
    pub site: String,
    /// `host` tag of the `gateway` measurement; default: the machine's host name.
    pub host: Option<String>,
    /// Journal directory (the SQLite journal; created if missing).
    pub data_dir: String,
    /// Directory of profile files that override or add to the built-in ones.
    pub profiles_dir: Option<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// A tracing filter, e.g. `info` or `estate_gateway=debug`.
    pub log_level: String,
    /// How often the `gateway` self-measurement is written.
    pub stats_interval: String,
}

impl Default for RawGateway {
    fn default() -> Self {
        RawGateway {
            site: String::new(),
            host: None,
            data_dir: "/var/lib/estate-gateway".into(),
            profiles_dir: None,
            log_format: "text".into(),
            log_level: "info".into(),
            stats_interval: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawMqtt {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS, rustls).
    pub url: String,
    /// Stable client id: the broker keeps our persistent session under it.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: String,
    /// File holding the password (first line); wins over the environment.
    pub password_file: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (mqtts); default: system roots.
    pub ca_file: Option<String>,
    /// PEM files of the gateway's client certificate (chain) and its private key, for a
    /// broker that requires client certificates (mutual TLS; mqtts only). Both or neither.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub keep_alive: String,
    pub telemetry_topic: String,
    pub status_topic: String,
    pub max_payload_bytes: usize,
    /// Largest MQTT packet the client accepts at all: a larger one breaks the connection
    /// (and the broker redelivers it forever). The default, 256 MiB, is above the largest
    /// packet MQTT can carry, so every message reaches the gateway, where payloads over
    /// `max_payload_bytes` are counted (`oversize`) and acknowledged.
    pub max_packet_bytes: usize,
    pub reconnect_min: String,
    pub reconnect_max: String,
    /// Outgoing alarm lifecycle events (QoS 1); `{site}`, `{category}`, `{device}`.
    pub alarm_topic: String,
    /// Outgoing retained device state; `{site}`, `{category}`, `{device}`.
    pub state_topic: String,
    /// Outgoing retained live figures (`/api/kpi`); `{site}` only.
    pub kpi_topic: String,
    /// Outgoing retained scorecards; `{site}` and `{period}`.
    pub assessment_topic: String,
    /// Incoming acknowledgments; `{site}` only.
    pub ack_topic: String,
    /// Incoming on-site reports; `{site}` only.
    pub on_site_topic: String,
    /// Our own QoS 1 publishes (alarm and state events) in flight before we wait for the
    /// broker's acks. (MQTT 3.1.1 gives a client no way to limit what the broker sends it:
    /// that is the broker's `max_inflight_messages`; in v5 it is `receive_maximum`.)
    pub inflight: u16,
    /// `v3.1.1` (also `v311`, the default) or `v5`.
    pub protocol: String,
    /// MQTT v5 only: how long the broker keeps our session (and the QoS 1 messages queued in
    /// it) after the connection ends; what clean session off does in 3.1.1.
    pub session_expiry: String,
    /// MQTT v5 only: QoS 1 messages the broker may have in flight to us unacknowledged.
    pub receive_maximum: u16,
}

/// 256 MiB: more than MQTT's largest remaining length (268,435,455 bytes), so no broker can
/// send the gateway a packet it refuses.
pub(super) const DEFAULT_MAX_PACKET_BYTES: usize = 256 * 1024 * 1024;

impl Default for RawMqtt {
    fn default() -> Self {
        RawMqtt {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: None,
            username: None,
            password_env: "ESTATE_GW_MQTT_PASSWORD".into(),
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: "30s".into(),
            telemetry_topic: "estate/{site}/{category}/{device}/telemetry".into(),
            status_topic: "estate/{site}/{category}/{device}/status".into(),
            max_payload_bytes: 64 * 1024,
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            reconnect_min: "500ms".into(),
            reconnect_max: "30s".into(),
            alarm_topic: "estate/{site}/alarms/{category}/{device}".into(),
            state_topic: "estate/{site}/state/{category}/{device}".into(),
            kpi_topic: "estate/{site}/kpi".into(),
            assessment_topic: "estate/{site}/assessment/{period}".into(),
            ack_topic: "estate/{site}/alarms/ack".into(),
            on_site_topic: "estate/{site}/alarms/on_site".into(),
            inflight: 1000,
            protocol: "v3.1.1".into(),
            session_expiry: "7d".into(),
            receive_maximum: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawStore {
    /// Base URL of the InfluxDB v2 API, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    pub org: String,
    pub bucket: String,
    /// Name of the environment variable holding the API token.
    pub token_env: String,
    /// File holding the token (first line); wins over the environment.
    pub token_file: Option<String>,
    /// PEM file of the CA that signed the store's certificate (https with a private CA);
    /// default: the system's roots.
    pub ca_file: Option<String>,
    /// PEM files of the gateway's client certificate and key, for a store (or the reverse
    /// proxy in front of it) that requires client certificates. Both or neither; https only.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub batch_lines: usize,
    pub batch_interval: String,
    /// A partial batch is also sent once no new line arrived for this long (0: only
    /// `batch_interval`).
    pub batch_quiet: String,
    /// Lines held in memory while the store is slow or down; beyond it the oldest batches
    /// are dropped and counted.
    pub queue_lines: usize,
    pub timeout: String,
    pub retry_min: String,
    pub retry_max: String,
    pub gzip: bool,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: String::new(),
            org: String::new(),
            bucket: String::new(),
            token_env: "ESTATE_GW_STORE_TOKEN".into(),
            token_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            batch_lines: 5000,
            batch_interval: "1s".into(),
            batch_quiet: "100ms".into(),
            queue_lines: 1_000_000,
            timeout: "10s".into(),
            retry_min: "200ms".into(),
            retry_max: "1s".into(),
            gzip: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawHttp {
    /// Socket address the API listens on, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`.
    pub listen: String,
    /// Name of the environment variable holding the API token (bearer token for writes).
    pub api_token_env: String,
    /// File holding the API token (first line); wins over the environment.
    pub api_token_file: Option<String>,
    /// Connections served at once; more wait in the kernel's backlog. Capped below the
    /// process's file-descriptor limit.
    pub max_connections: usize,
    /// A connection that has not sent a complete request head within this time (idle
    /// keep-alive or a slow client) is closed.
    pub header_timeout: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8080".into(),
            api_token_env: "ESTATE_GW_API_TOKEN".into(),
            api_token_file: None,
            max_connections: 10_000,
            header_timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawIngest {
    /// A device `ts` further ahead of the gateway clock than this is rejected.
    pub max_clock_skew: String,
    /// A device `ts` older than this is rejected.
    pub max_reading_age: String,
    /// How long past a moment the gateway waits for readings of that moment before it
    /// concludes a heartbeat timeout, delay or window boundary (DESIGN §4 "Event time").
    pub max_lateness: String,
    /// Readings queued between sources and the core before sources wait.
    pub channel_capacity: usize,
    /// Bad-input log lines per reason per `log_window` before the rest are only counted.
    pub log_burst: u32,
    pub log_window: String,
}

impl Default for RawIngest {
    fn default() -> Self {
        RawIngest {
            max_clock_skew: "60s".into(),
            max_reading_age: "7d".into(),
            max_lateness: "2s".into(),
            channel_capacity: 10_000,
            log_burst: 5,
            log_window: "60s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawLog {
    /// The log's bound (`512MiB`, `2GiB`, or bytes): over it, the oldest records go even if
    /// the store has not had them (counted, logged with their period).
    pub max_bytes: String,
    /// Records every consumer has are still kept this long (for `replay`).
    pub retention: String,
    /// Records per group commit (one fsync) at most.
    pub commit_batch: usize,
    /// Size of one segment file.
    pub segment_bytes: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            max_bytes: "2GiB".into(),
            retention: "24h".into(),
            commit_batch: 4096,
            segment_bytes: "64MiB".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDevice {
    pub id: String,
    pub name: String,
    pub site: Option<String>,
    pub building: String,
    pub category: String,
    /// Expected reporting interval; default from the profile.
    pub interval: Option<String>,
    /// Default 3× `interval`.
    pub heartbeat_timeout: Option<String>,
    /// When the device entered the inventory (RFC 3339 with offset): never heard from, it is
    /// offline from then (DESIGN §4). Default: the first start of a gateway that lists it.
    pub monitored_since: Option<String>,
    /// Polled over Modbus (else the device reports over MQTT).
    pub modbus: Option<RawBinding>,
    /// Per-device changes to the profile's alarm rules, by rule name (TOML devices only).
    pub alarms: BTreeMap<String, RawAlarmOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawBinding {
    /// Name of a `[[modbus.endpoints]]` entry.
    pub endpoint: String,
    /// Unit id (slave address).
    pub unit: u32,
    /// Device model (register map), e.g. `heating_plc`.
    pub model: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawModbus {
    /// Consecutive failed polls before a device is reported offline.
    pub offline_after: u32,
    /// A directory of extra or overriding device models (<model>.toml).
    pub models_dir: Option<String>,
    pub endpoints: Vec<RawEndpoint>,
}

impl Default for RawModbus {
    fn default() -> Self {
        RawModbus {
            offline_after: 3,
            models_dir: None,
            endpoints: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawEndpoint {
    pub name: String,
    /// `tcp://host:port`, `rtu+tcp://host:port`, `rtu:///dev/ttyUSB0?baud=9600&parity=N&…`
    pub url: String,
    pub timeout: String,
    pub retries: u32,
    pub pause_between_requests: String,
    pub reconnect_min: String,
    pub reconnect_max: String,
}

impl Default for RawEndpoint {
    fn default() -> Self {
        RawEndpoint {
            name: String::new(),
            url: String::new(),
            timeout: "1s".into(),
            retries: 1,
            pause_between_requests: "0ms".into(),
            reconnect_min: "1s".into(),
            reconnect_max: "60s".into(),
        }
    }
}

/// A device model file (`configs/models/<model>.toml`): a register map.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawModel {
    pub model: String,
    pub category: String,
    pub max_registers_per_request: u32,
    pub max_bits_per_request: u32,
    pub max_gap: u32,
    pub registers: Vec<RawRegister>,
}

impl Default for RawModel {
    fn default() -> Self {
        RawModel {
            model: String::new(),
            category: String::new(),
            max_registers_per_request: 125,
            max_bits_per_request: 2000,
            max_gap: 10,
            registers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawRegister {
    pub signal: String,
    /// coil, discrete, input, holding
    pub table: String,
    /// 0-based protocol address (holding 0 = 40001).
    pub address: u32,
    #[serde(rename = "type")]
    pub ty: String,
    /// For `type = "bit"`: 0 = least significant.
    pub bit: Option<u32>,
    /// ABCD, CDAB, BADC, DCBA
    pub order: String,
    pub scale: f64,
    pub offset: f64,
    /// For enum signals: raw value n → values[n].
    pub values: Option<Vec<String>>,
    pub writable: bool,
    /// Smallest value an operator may write (numeric signals).
    pub min: Option<f64>,
    /// Largest value an operator may write (numeric signals).
    pub max: Option<f64>,
    /// `type = "string"`: registers (two bytes each).
    pub length: Option<u32>,
    /// `type = "string"`: remove NULs and spaces at both ends (default true).
    pub trim: bool,
    /// Report by exception: a value within this of the last one stored is not stored again…
    pub deadband: Option<f64>,
    /// …until this long after it (default 5m when `deadband` is set).
    pub max_silence: Option<String>,
}

impl Default for RawRegister {
    fn default() -> Self {
        RawRegister {
            signal: String::new(),
            table: String::new(),
            address: 0,
            ty: String::new(),
            bit: None,
            order: "ABCD".into(),
            scale: 1.0,
            offset: 0.0,
            values: None,
            writable: false,
            min: None,
            max: None,
            length: None,
            trim: true,
            deadband: None,
            max_silence: None,
        }
    }
}

/// A category profile file (`configs/profiles/<category>.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawProfile {
    pub category: String,
    pub label: String,
    pub interval: String,
    pub signals: Vec<RawSignal>,
    /// `[state]`: when a device is `fault` or `maintenance`.
    pub state: RawState,
    /// `[[alarms]]`: the category's alarm rules.
    pub alarms: Vec<RawAlarm>,
    /// Float signals whose hourly mean, minimum and maximum are journaled (for the heating
    /// report's loop and indoor temperatures).
    pub hourly: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawSignal {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub unit: Option<String>,
    pub label: Option<String>,
    /// Allowed values of an `enum` signal.
    pub values: Option<Vec<String>>,
}

/// A constant in a rule (`value`, `clear_value`, `hysteresis`): any TOML scalar; its type is
/// checked against the signal's when the rule is built, so that every mistake is reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl RawValue {
    /// The value as a number, if it is one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            RawValue::Int(i) => Some(*i as f64),
            RawValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// What kind of value it is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RawValue::Bool(_) => "a bool",
            RawValue::Int(_) => "an integer",
            RawValue::Float(_) => "a float",
            RawValue::Str(_) => "a string",
        }
    }
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Bool(b) => write!(f, "{b}"),
            RawValue::Int(i) => write!(f, "{i}"),
            RawValue::Float(x) => write!(f, "{x:?}"),
            RawValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bool, a number or a string")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawValue, E> {
                i64::try_from(v)
                    .map(RawValue::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[state]` of a profile.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawState {
    /// The device is `fault` while any of these holds.
    pub fault: Vec<RawCondition>,
    /// The device is `maintenance` while any of these holds.
    pub maintenance: Vec<RawCondition>,
}

/// `{ signal = "fault_code", op = "!=", value = 0, season = false }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCondition {
    pub signal: Option<String>,
    pub op: Option<String>,
    pub value: Option<RawValue>,
    /// Holds only inside the heating season.
    pub season: bool,
}

/// One `[[alarms]]` entry of a profile.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAlarm {
    pub name: String,
    /// `offline` for an offline rule; absent for a condition rule.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub signal: Option<String>,
    pub op: Option<String>,
    pub value: Option<RawValue>,
    /// critical, major, minor
    pub severity: Option<String>,
    /// Response class; default `urgent` for critical/major, `minor` for minor.
    pub class: Option<String>,
    pub message: Option<String>,
    /// Default `0s`.
    pub delay: Option<String>,
    pub hysteresis: Option<RawValue>,
    pub clear_value: Option<RawValue>,
    /// Only in the heating season.
    pub season: bool,
    /// A device signal reporting someone on site.
    pub on_site: Option<RawCondition>,
}

/// `[devices.alarms.<rule>]`: per-device changes to one rule.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAlarmOverride {
    pub enabled: Option<bool>,
    pub severity: Option<String>,
    pub class: Option<String>,
    pub delay: Option<String>,
    pub value: Option<RawValue>,
    pub hysteresis: Option<RawValue>,
    pub clear_value: Option<RawValue>,
    pub message: Option<String>,
}

/// `[alarms]` of the gateway.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawAlarms {
    /// Overrides of the default classes and new classes, by name.
    pub classes: BTreeMap<String, RawClass>,
    /// How long cleared alarms stay in memory (API, late acknowledgment).
    pub retain_cleared: String,
    pub webhook: Option<RawWebhook>,
    /// Named webhook targets of escalation steps (`notify = "webhook:<name>"`).
    pub webhooks: BTreeMap<String, RawWebhookTarget>,
    /// 三分钟服务承诺: the classes whose on-site target is 180 s, for every site without its
    /// own `[alarms.sites.<site>]`.
    pub three_minute_promise: Vec<String>,
    /// Per site: `three_minute_promise`.
    pub sites: BTreeMap<String, RawAlarmSite>,
}

/// `[alarms.sites.<site>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAlarmSite {
    pub three_minute_promise: Vec<String>,
}

impl Default for RawAlarms {
    fn default() -> Self {
        RawAlarms {
            classes: BTreeMap::new(),
            retain_cleared: "7d".into(),
            webhook: None,
            webhooks: BTreeMap::new(),
            three_minute_promise: Vec::new(),
            sites: BTreeMap::new(),
        }
    }
}

/// `[alarms.classes.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawClass {
    pub ack_target: Option<String>,
    /// A duration, or `none` for no on-site target.
    pub on_site_target: Option<String>,
    /// A duration, or `none` for no repair target.
    pub repair_target: Option<String>,
    /// Where the targets come from (a regulation, a contract), shown by `check-config`.
    pub source: Option<String>,
    /// `[[alarms.classes.<name>.escalation]]`: the chain of escalation steps.
    pub escalation: Vec<RawEscalationStep>,
}

/// `[[alarms.classes.<name>.escalation]]`: one escalation step.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawEscalationStep {
    /// Since the alarm was raised (required).
    pub after: Option<String>,
    /// `ack` (default) or `on_site`.
    pub until: Option<String>,
    /// `webhook:<name>` or `mqtt:<topic>` (required).
    pub notify: Option<String>,
    /// The message template; default `core::escalation::DEFAULT_MESSAGE`.
    pub message: Option<String>,
}

/// `[alarms.webhook]`: a chat robot (WeCom/DingTalk) or any HTTP endpoint.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawWebhook {
    pub url: Option<String>,
    /// File holding the URL (first line).
    pub url_file: Option<String>,
    /// Name of the environment variable holding the URL.
    pub url_env: Option<String>,
    /// `json` or `text`.
    pub format: String,
    pub severities: Vec<String>,
    pub timeout: String,
    pub retries: u32,
    pub retry_max: String,
}

/// `[alarms.webhooks.<name>]`: a target of escalation steps; `[alarms.webhook]`'s keys but
/// `severities` (it gets the escalations that name it, nothing else).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawWebhookTarget {
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub url_env: Option<String>,
    pub format: String,
    pub timeout: String,
    pub retries: u32,
    pub retry_max: String,
}

impl Default for RawWebhookTarget {
    fn default() -> Self {
        let w = RawWebhook::default();
        RawWebhookTarget {
            url: None,
            url_file: None,
            url_env: None,
            format: w.format,
            timeout: w.timeout,
            retries: w.retries,
            retry_max: w.retry_max,
        }
    }
}

impl Default for RawWebhook {
    fn default() -> Self {
        RawWebhook {
            url: None,
            url_file: None,
            url_env: None,
            format: "json".into(),
            severities: vec!["critical".into()],
            timeout: "5s".into(),
            retries: 5,
            retry_max: "60s".into(),
        }
    }
}

/// `[heating]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawHeating {
    /// MM-DD, first day of the season.
    pub season_start: String,
    /// MM-DD, last day of the season (inclusive).
    pub season_end: String,
    /// IANA time zone of the dates.
    pub timezone: String,
    pub min_indoor_c: f64,
    /// Per-site overrides (`[heating.sites.<site>]`); unset keys follow `[heating]`.
    pub sites: BTreeMap<String, RawHeatingSite>,
}

impl Default for RawHeating {
    fn default() -> Self {
        RawHeating {
            season_start: "11-15".into(),
            season_end: "03-15".into(),
            timezone: "Asia/Shanghai".into(),
            min_indoor_c: 18.0,
            sites: BTreeMap::new(),
        }
    }
}

/// `[heating.sites.<site>]`: a site in another city.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHeatingSite {
    pub season_start: Option<String>,
    pub season_end: Option<String>,
    pub timezone: Option<String>,
    pub min_indoor_c: Option<f64>,
}

/// `[assessment]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawAssessment {
    /// `not_intact` (default) or `excluded`.
    pub offline: String,
    pub kpi_interval: String,
    /// Empty: the default KPIs (DESIGN §4).
    pub kpi: Vec<RawKpi>,
    /// Empty: the default bands 优秀 ≥ 90, 良好 ≥ 80, 合格 ≥ 60, 不合格.
    pub grades: Vec<RawGrade>,
}

impl Default for RawAssessment {
    fn default() -> Self {
        RawAssessment {
            offline: "not_intact".into(),
            kpi_interval: "60s".into(),
            kpi: Vec::new(),
            grades: Vec::new(),
        }
    }
}

/// A number or a string (`target = 0.99` or `target = "99%"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberOrText {
    Number(f64),
    Text(String),
}

/// One name or a list (`category = "elevator"` or `category = ["elevator", "access_gate"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One `[[assessment.kpi]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawKpi {
    pub name: String,
    pub label: String,
    /// `intactness`, `response` or `heating`.
    pub figure: String,
    pub category: Option<OneOrMany>,
    pub building: Option<String>,
    pub severity: Option<String>,
    pub target: Option<NumberOrText>,
    pub weight: Option<f64>,
    pub deduct_per_point: Option<f64>,
}

/// One `[[assessment.grades]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawGrade {
    pub name: String,
    pub min: Option<f64>,
}

/// One `[[maintenance]]` window.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawMaintenance {
    pub device: String,
    /// Default `gateway.site`.
    pub site: Option<String>,
    /// RFC 3339 with offset.
    pub start: String,
    pub end: String,
    pub reason: String,
}
