//! Configuration: loading (`config` crate: a TOML file plus `ESTATE_GW__SECTION__KEY`
//! environment overrides), and building typed settings from it while collecting *every*
//! mistake, each naming the file, the key, the bad value and what would be valid.
//!
//! Secrets (store token, MQTT password, HTTP API token) are never read from the TOML: the
//! TOML names an environment variable (`token_env`, `password_env`, `api_token_env`) or a file
//! (`token_file`, `password_file`, `api_token_file`) that holds them. The alarm webhook's URL,
//! which embeds a robot's key, may likewise come from `url_file` or `url_env`.
//!
//! Besides the gateway's own sections, the configuration holds the rules: profiles' `[state]`
//! and `[[alarms]]` (`rules`), response classes (`alarms`), `[heating]` (`heating`) and
//! `[[maintenance]]` (`maintenance`). Helpers they all share live in `check`.

mod alarms;
mod assessment;
mod build;
mod check;
mod heating;
mod hub;
mod inventory;
mod maintenance;
mod models;
mod profiles;
mod raw;
mod rules;
mod summary;
mod typed;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use alarms::{default_classes, AlarmSettings, WebhookFormat, WebhookSettings};
pub use assessment::{
    default_grades, default_kpis, AssessmentSettings, Grade, KpiFigure, KpiSettings,
};
pub use build::{
    Config, GatewaySettings, HttpSettings, IngestSettings, LogFormat, LogSettings, MqttProtocol,
    MqttSettings, StoreSettings, LOG_DIR_NAME,
};
pub use check::{redact_url, Secret, SecretUrl};
pub use heating::{HeatingSettings, SiteHeating};
pub use hub::{load_hub, load_hub_with_env, EstateTags, HubSettings, LeagueRules};
pub use models::BUILTIN_MODELS;
pub use profiles::BUILTIN_PROFILES;
pub use summary::summary;

/// One mistake in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the mistake is in (`the environment` for `ESTATE_GW__*` overrides).
    pub file: String,
    /// Where in that file: a key path such as `store.url` or `devices[3].category`, or a
    /// CSV line such as `line 7`.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.message)
    }
}

/// Every mistake found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file.
#[derive(Debug)]
pub(crate) struct Errors {
    file: String,
    list: Vec<ConfigError>,
}

impl Errors {
    pub(crate) fn new(file: impl Into<String>) -> Self {
        Errors {
            file: file.into(),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn push_in(
        &mut self,
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.list.push(ConfigError {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// Whether an error was already recorded for `key` (to avoid a second, derived one).
    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.list.iter().any(|e| e.key == key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many mistakes were recorded so far.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn extend(&mut self, other: Errors) {
        self.list.extend(other.list);
    }

    /// Parses a size such as `512MiB`, `2GiB`, `64KiB`, `1000000` (bytes); on error records
    /// it and returns `None`.
    pub(crate) fn bytes(&mut self, key: &str, value: &str) -> Option<u64> {
        let v = value.trim();
        let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        let (num, unit) = v.split_at(split);
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => 0,
        };
        match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
            Some(b) if mult > 0 => Some(b),
            _ => {
                self.push(
                    key,
                    format!("`{value}` is not a size; write e.g. `512MiB`, `2GiB`, or a number of bytes"),
                );
                None
            }
        }
    }

    /// Parses a duration such as `500ms`, `30s`, `5m`, `7d`; on error records it and
    /// returns zero (the caller's result is discarded anyway once an error is recorded).
    pub(crate) fn duration(&mut self, key: &str, value: &str) -> Duration {
        match humantime::parse_duration(value.trim()) {
            Ok(d) => d,
            Err(_) => {
                self.push(
                    key,
                    format!("`{value}` is not a duration; write e.g. `500ms`, `30s`, `5m`, `7d`"),
                );
                Duration::ZERO
            }
        }
    }
}

/// Loads and validates a configuration file (plus `ESTATE_GW__*` environment overrides).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let env = std::env::vars().collect();
    load_with_env(path, env)
}

/// Like `load`, with the environment given (tests pass their own).
pub fn load_with_env(
    path: &Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let one = |key: &str, message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            key: key.to_owned(),
            message,
        }])
    };
    if !path.is_file() {
        return Err(one(
            "-",
            "no such file; pass the gateway's TOML file with -c (e.g. configs/gateway.toml)".into(),
        ));
    }
    let overrides: std::collections::HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("ESTATE_GW__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let merged = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("ESTATE_GW")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| one("-", format!("cannot be read: {e}")))?;

    // Every type mistake is collected (`typed`), each at the file or variable it came from.
    let tree: serde_json::Value = merged
        .clone()
        .try_deserialize()
        .map_err(|e| one("-", format!("cannot be read: {e}")))?;
    let read: typed::Read<raw::RawConfig> = typed::deserialize(tree);
    let origin_of = |key: &str| origin(&merged.cache, key).unwrap_or_else(|| file.clone());

    let mut errs = Errors::new(file.clone());
    for m in &read.mistakes {
        errs.push_in(origin_of(&m.key), m.key.clone(), m.message.clone());
    }
    for path in read.unknown {
        let key = key_path(&path);
        let hint = unknown_key_hint(&key);
        errs.push_in(origin_of(&key), key, format!("unknown key{hint}"));
    }
    let typed_errors = errs.len();
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let cfg = build::build(read.value, path, &base_dir, &env, &mut errs);
    // A key of the wrong type was read as its default: what a builder says about that
    // default is noise next to the type mistake itself.
    let derived = |e: &ConfigError| {
        read.removed.iter().any(|k| {
            e.key == *k
                || e.key.starts_with(&format!("{k}."))
                || e.key.starts_with(&format!("{k}["))
        })
    };
    let mut i = 0;
    errs.list.retain(|e| {
        i += 1;
        i <= typed_errors || !derived(e)
    });
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errs.list))
    }
}

/// Where the value at `key` (`devices[3].modbus.unit`) came from: its file, or "the
/// environment" for an `ESTATE_GW__*` override.
fn origin(root: &config::Value, key: &str) -> Option<String> {
    let mut node = root;
    for part in key.split('.') {
        let mut pieces = part.split('[');
        let name = pieces.next().unwrap_or("");
        if !name.is_empty() {
            node = match &node.kind {
                config::ValueKind::Table(t) => t.get(name)?,
                _ => return None,
            };
        }
        for index in pieces {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            node = match &node.kind {
                config::ValueKind::Array(a) => a.get(i)?,
                _ => return None,
            };
        }
    }
    node.origin().map(str::to_owned)
}

/// `devices.0.?.foo` (serde_ignored's path) → `devices[0].foo` (the config crate's).
fn key_path(p: &str) -> String {
    let mut out = String::new();
    for part in p.split('.') {
        if part == "?" || part.is_empty() {
            continue;
        }
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push('[');
            out.push_str(part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn unknown_key_hint(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    let section = key.split(['.', '[']).next().unwrap_or("");
    const API_TOKEN_HINT: &str = "; secrets are not read from TOML: set `http.api_token_file`, or the environment variable named by `http.api_token_env` (default ESTATE_GW_API_TOKEN)";
    let known: &[(&str, &str)] = &[
        ("token", "; secrets are not read from TOML: set `store.token_file`, or the environment variable named by `store.token_env` (default ESTATE_GW_STORE_TOKEN)"),
        ("password", "; secrets are not read from TOML: set `mqtt.password_file`, or the environment variable named by `mqtt.password_env` (default ESTATE_GW_MQTT_PASSWORD)"),
        ("api_token", API_TOKEN_HINT),
    ];
    if section == "http" && matches!(last, "token" | "api_token" | "password") {
        return API_TOKEN_HINT.to_owned();
    }
    for (k, hint) in known {
        if last == *k {
            return (*hint).to_owned();
        }
    }
    let valid: &[&str] = match section {
        "gateway" => &[
            "site",
            "host",
            "data_dir",
            "profiles_dir",
            "log_format",
            "log_level",
            "stats_interval",
        ],
        "mqtt" => &[
            "url",
            "client_id",
            "username",
            "password_env",
            "password_file",
            "ca_file",
            "cert_file",
            "key_file",
            "keep_alive",
            "telemetry_topic",
            "status_topic",
            "max_payload_bytes",
            "max_packet_bytes",
            "reconnect_min",
            "reconnect_max",
            "alarm_topic",
            "state_topic",
            "kpi_topic",
            "assessment_topic",
            "ack_topic",
            "on_site_topic",
            "inflight",
            "protocol",
            "session_expiry",
            "receive_maximum",
        ],
        "store" => &[
            "url",
            "org",
            "bucket",
            "token_env",
            "token_file",
            "ca_file",
            "cert_file",
            "key_file",
            "batch_lines",
            "batch_interval",
            "batch_quiet",
            "queue_lines",
            "timeout",
            "retry_min",
            "retry_max",
            "gzip",
        ],
        "ingest" => &[
            "max_clock_skew",
            "max_reading_age",
            "max_lateness",
            "channel_capacity",
            "log_burst",
            "log_window",
        ],
        "devices" if key.contains(".modbus.") => &["endpoint", "unit", "model"],
        "devices" if key.contains(".alarms.") => &[
            "enabled",
            "severity",
            "class",
            "delay",
            "value",
            "hysteresis",
            "clear_value",
            "message",
        ],
        "devices" => &[
            "id",
            "name",
            "site",
            "building",
            "category",
            "interval",
            "heartbeat_timeout",
            "monitored_since",
            "modbus",
            "alarms",
        ],
        "modbus" if key.contains("endpoints") => &[
            "name",
            "url",
            "timeout",
            "retries",
            "pause_between_requests",
            "reconnect_min",
            "reconnect_max",
        ],
        "modbus" => &["offline_after", "models_dir", "endpoints"],
        "http" => &[
            "listen",
            "api_token_env",
            "api_token_file",
            "max_connections",
            "header_timeout",
        ],
        "alarms" if key.starts_with("alarms.classes.") && key.contains(".escalation[") => {
            &["after", "until", "notify", "message"]
        }
        "alarms" if key.starts_with("alarms.classes.") => &[
            "ack_target",
            "on_site_target",
            "repair_target",
            "source",
            "escalation",
        ],
        "alarms" if key.starts_with("alarms.webhooks.") => &[
            "url",
            "url_file",
            "url_env",
            "format",
            "timeout",
            "retries",
            "retry_max",
        ],
        "alarms" if key.starts_with("alarms.sites.") => &["three_minute_promise"],
        "alarms" if key.starts_with("alarms.webhook.") => &[
            "url",
            "url_file",
            "url_env",
            "format",
            "severities",
            "timeout",
            "retries",
            "retry_max",
        ],
        "alarms" => &[
            "classes",
            "retain_cleared",
            "webhook",
            "webhooks",
            "three_minute_promise",
            "sites",
        ],
        "heating" if key.starts_with("heating.sites.") => {
            &["season_start", "season_end", "timezone", "min_indoor_c"]
        }
        "heating" => &[
            "season_start",
            "season_end",
            "timezone",
            "min_indoor_c",
            "sites",
        ],
        "assessment" if key.starts_with("assessment.kpi[") => &[
            "name",
            "label",
            "figure",
            "category",
            "building",
            "severity",
            "target",
            "weight",
            "deduct_per_point",
        ],
        "assessment" if key.starts_with("assessment.grades[") => &["name", "min"],
        "assessment" => &["offline", "kpi_interval", "kpi", "grades"],
        "maintenance" => &["device", "site", "start", "end", "reason"],
        _ => &[
            "gateway",
            "mqtt",
            "store",
            "ingest",
            "modbus",
            "http",
            "devices",
            "devices_csv",
            "alarms",
            "heating",
            "maintenance",
            "assessment",
        ],
    };
    if key.contains('.') || key.contains('[') {
        format!("; valid keys here: {}", valid.join(", "))
    } else {
        format!("; valid top-level keys: {}", valid.join(", "))
    }
}

/// Built settings shared by tasks.
pub type SharedConfig = Arc<Config>;

/// The engine's settings from the configuration.
pub fn engine_settings(cfg: &Config) -> crate::core::EngineSettings {
    crate::core::EngineSettings {
        site: cfg.gateway.site.clone(),
        classes: cfg.alarms.classes.clone(),
        season: cfg.heating.season.clone(),
        planned: cfg.maintenance.clone(),
        retain_cleared_ms: cfg.alarms.retain_cleared.as_millis() as i64,
        min_indoor_c: cfg.heating.min_indoor_c,
        sites: cfg
            .heating
            .sites
            .iter()
            .map(|(k, v)| (k.clone(), (v.season.clone(), v.min_indoor_c)))
            .collect(),
        max_lateness_ms: cfg.ingest.max_lateness.as_millis() as i64,
        three_minute_promise: cfg.alarms.three_minute_promise.clone(),
        monitored_since: cfg.monitored_since.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_follow_the_config_crate() {
        assert_eq!(key_path("devices.0.?.foo"), "devices[0].foo");
        assert_eq!(key_path("mqtt.?.urll"), "mqtt.urll");
        assert_eq!(key_path("bogus"), "bogus");
    }

    /// Every error `toml` produces, one a line (`file: key: message`).
    pub(super) fn errors(toml: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> String {
        let e = load_text(toml, files, env).expect_err("invalid");
        e.0.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(super) fn assert_has(all: &str, needles: &[&str]) {
        for n in needles {
            assert!(all.contains(n), "missing {n:?} in:\n{all}");
        }
    }

    /// Three devices at site `a`, two with per-device rule overrides.
    pub(super) const DEVICES: &str = r#"
[gateway]
site = "a"
[[devices]]
id = "E-1"
name = "1号梯"
building = "1号楼"
category = "elevator"
[[devices]]
id = "E-2"
name = "2号梯"
building = "2号楼"
category = "elevator"
[devices.alarms.entrapment]
delay = "5s"
message = "{name}困人！"
[devices.alarms.fault]
severity = "minor"
[devices.alarms.offline]
enabled = false
[[devices]]
id = "HX-1"
name = "换热站"
building = "站"
category = "heating_loop"
[devices.alarms.low_supply_temp]
value = 50
[devices.alarms.pressure_low]
clear_value = 0.2
"#;

    /// Loads `toml` (written to a temp dir, with `files` next to it) with `env`.
    pub(super) fn load_text(
        toml: &str,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let p = dir.path().join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(p, text).expect("write");
        }
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml).expect("write");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load_with_env(&path, env)
    }

    pub(super) fn messages(e: ConfigErrors) -> Vec<String> {
        e.0.iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect()
    }

    #[test]
    fn mqtt_protocol_session_expiry_and_receive_maximum() {
        let base = "[gateway]\nsite = \"a\"\n[mqtt]\n";
        // Defaults: 3.1.1; for v5 a week of session and 1000 messages in flight.
        let m = load_text(base, &[], &[])
            .expect("valid")
            .mqtt
            .expect("mqtt");
        assert_eq!(m.protocol, MqttProtocol::V311);
        assert_eq!(m.session_expiry, std::time::Duration::from_secs(7 * 86_400));
        assert_eq!(m.receive_maximum, 1000);
        let text =
            format!("{base}protocol = \"v5\"\nsession_expiry = \"2h\"\nreceive_maximum = 50\n");
        let m = load_text(&text, &[], &[])
            .expect("valid")
            .mqtt
            .expect("mqtt");
        assert_eq!(m.protocol, MqttProtocol::V5);
        assert_eq!(m.session_expiry, std::time::Duration::from_secs(7200));
        assert_eq!(m.receive_maximum, 50);
        let o = crate::mqtt::options_v5(&m);
        assert_eq!(o.session_expiry_interval(), Some(7200));
        assert_eq!(o.receive_maximum(), Some(50));
        assert!(!o.clean_start());
        assert!(o.manual_acks());
        // `v311` is the other spelling; the environment overrides the file.
        let m = load_text(&text, &[], &[("ESTATE_GW__MQTT__PROTOCOL", "v311")])
            .expect("valid")
            .mqtt
            .expect("mqtt");
        assert_eq!(m.protocol, MqttProtocol::V311);
        // Every mistake at once, with its key and what is valid.
        let bad = format!("{base}protocol = \"5\"\nsession_expiry = \"0s\"\nreceive_maximum = 0\n");
        let all = errors(&bad, &[], &[]);
        assert_has(
            &all,
            &[
                "gateway.toml: mqtt.protocol: `5` is not an MQTT protocol version; valid: v3.1.1 (or v311), v5",
                "mqtt.session_expiry: is 0",
                "mqtt.receive_maximum: must be at least 1 (default 1000)",
            ],
        );
        // A shared subscription needs v5, and only the subscribed topics may be shared.
        let shared =
            "telemetry_topic = \"$share/pair/estate/{site}/{category}/{device}/telemetry\"\n";
        let all = errors(
            &format!("{base}{shared}alarm_topic = \"$share/p/estate/{{site}}/alarms/{{category}}/{{device}}\"\n"),
            &[],
            &[],
        );
        assert_has(
            &all,
            &[
                "mqtt.telemetry_topic: is a shared subscription (`$share/…`), which needs MQTT 5; set mqtt.protocol = \"v5\"",
                "mqtt.alarm_topic: `$share/p/estate/{site}/alarms/{category}/{device}` is a topic the gateway publishes to",
            ],
        );
        let m = load_text(&format!("{base}protocol = \"v5\"\n{shared}"), &[], &[])
            .expect("valid")
            .mqtt
            .expect("mqtt");
        assert_eq!(
            m.telemetry_topic.filter(),
            "$share/pair/estate/+/+/+/telemetry"
        );
        let all = errors(&format!("{base}session_expiry = \"200y\"\n"), &[], &[]);
        assert_has(&all, &["mqtt.session_expiry: is longer than MQTT allows"]);
    }

    #[test]
    fn http_is_off_without_its_section() {
        let cfg = load_text("[gateway]\nsite = \"a\"\n", &[], &[]).expect("valid");
        assert!(cfg.http.is_none());
    }

    #[test]
    fn http_defaults_and_token_from_the_environment() {
        let cfg = load_text("[http]\n", &[], &[("ESTATE_GW_API_TOKEN", "t0k")]).expect("valid");
        let h = cfg.http.expect("http");
        assert_eq!(h.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(h.api_token.expose(), "t0k");
        assert_eq!(h.api_token_env, "ESTATE_GW_API_TOKEN");

        // No token anywhere: valid (writes are disabled), the token is empty.
        let cfg = load_text(
            "[http]\nlisten = \"[::1]:9000\"\napi_token_env = \"MY_TOKEN\"\n",
            &[],
            &[],
        )
        .expect("valid");
        let h = cfg.http.expect("http");
        assert_eq!(h.listen, "[::1]:9000".parse().expect("addr"));
        assert!(h.api_token.is_empty());

        // The section can come from the environment alone.
        let cfg =
            load_text("", &[], &[("ESTATE_GW__HTTP__LISTEN", "0.0.0.0:8081")]).expect("valid");
        assert_eq!(cfg.http.expect("http").listen.port(), 8081);
    }

    #[test]
    fn http_token_file_wins_over_the_environment() {
        let cfg = load_text(
            "[http]\napi_token_file = \"api.token\"\n",
            &[("api.token", "from-file\nsecond line\n")],
            &[("ESTATE_GW_API_TOKEN", "from-env")],
        )
        .expect("valid");
        assert_eq!(cfg.http.expect("http").api_token.expose(), "from-file");
    }

    #[test]
    fn http_mistakes_name_the_key() {
        let errs = messages(
            load_text(
                "[http]\nlisten = \"localhost:8080\"\napi_token_file = \"missing.token\"\ntoken = \"s3cret\"\nport = 1\n",
                &[],
                &[],
            )
            .expect_err("invalid"),
        );
        let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
        assert!(
            has("http.listen: `localhost:8080` is not a socket address; write IP:port, e.g. `127.0.0.1:8080`"),
            "{errs:#?}"
        );
        assert!(has("http.api_token_file: cannot read"), "{errs:#?}");
        assert!(
            has("http.token: unknown key; secrets are not read from TOML: set `http.api_token_file`"),
            "{errs:#?}"
        );
        assert!(
            has("http.port: unknown key; valid keys here: listen, api_token_env, api_token_file, max_connections, header_timeout"),
            "{errs:#?}"
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }
}
