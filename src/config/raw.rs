//! The configuration as written: serde structs mirroring `gateway.toml`, every field with its
//! documented default. Nothing here is validated; `super::build` turns these into typed
//! settings and collects every mistake.
//!
//! Unknown keys are not rejected by serde (`deny_unknown_fields` stops at the first one);
//! `super::load` collects all of them with `serde_ignored` instead.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub gateway: RawGateway,
    pub mqtt: Option<RawMqtt>,
    pub store: Option<RawStore>,
    pub ingest: RawIngest,
    pub modbus: Option<RawModbus>,
    /// The HTTP API; absent = no server runs.
    pub http: Option<RawHttp>,
    pub devices: Vec<RawDevice>,
    /// A CSV inventory (设备台账), relative to the config file.
    pub devices_csv: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawGateway {
    /// Default site of devices that do not name one; tag of the `gateway` measurement.
    pub site: String,
    /// `host` tag of the `gateway` measurement; default: the machine's host name.
    pub host: Option<String>,
    /// Journal and spool directory.
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
    pub keep_alive: String,
    pub telemetry_topic: String,
    pub status_topic: String,
    pub max_payload_bytes: usize,
    /// Largest MQTT packet the client accepts at all (see README troubleshooting).
    pub max_packet_bytes: usize,
    pub reconnect_min: String,
    pub reconnect_max: String,
    /// Our own QoS 1 publishes (alarm and state events) in flight before we wait for the
    /// broker's acks. (MQTT 3.1.1 gives a client no way to limit what the broker sends it:
    /// that is the broker's `max_inflight_messages`.)
    pub inflight: u16,
}

impl Default for RawMqtt {
    fn default() -> Self {
        RawMqtt {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: None,
            username: None,
            password_env: "ESTATE_GW_MQTT_PASSWORD".into(),
            password_file: None,
            ca_file: None,
            keep_alive: "30s".into(),
            telemetry_topic: "estate/{site}/{category}/{device}/telemetry".into(),
            status_topic: "estate/{site}/{category}/{device}/status".into(),
            max_payload_bytes: 64 * 1024,
            max_packet_bytes: 16 * 1024 * 1024,
            reconnect_min: "500ms".into(),
            reconnect_max: "30s".into(),
            inflight: 1000,
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
    pub batch_lines: usize,
    pub batch_interval: String,
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
            batch_lines: 5000,
            batch_interval: "1s".into(),
            queue_lines: 1_000_000,
            timeout: "10s".into(),
            retry_min: "200ms".into(),
            retry_max: "30s".into(),
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
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8080".into(),
            api_token_env: "ESTATE_GW_API_TOKEN".into(),
            api_token_file: None,
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
            channel_capacity: 10_000,
            log_burst: 5,
            log_window: "60s".into(),
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
    /// Polled over Modbus (else the device reports over MQTT).
    pub modbus: Option<RawBinding>,
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
