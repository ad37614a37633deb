//! A running estate for end-to-end tests: a real mosquitto, a real VictoriaMetrics behind the
//! recording proxy, and the gateway binary with a generated configuration. Each test builds
//! its own, on its own ports.

#![allow(dead_code)] // each test module uses part of the fixture

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{
    free_port, http_request, GatewayProcess, HttpResponse, Mosquitto, MqttClient, RecordingProxy,
    VictoriaMetrics,
};

pub(crate) const SITE: &str = "华府";
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// Devices of the test estate, as TOML `[[devices]]` blocks.
pub(crate) const DEVICES: &str = r#"
[[devices]]
id = "HL-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"

[[devices]]
id = "E-1-1"
name = "1号楼1单元客梯"
building = "1号楼"
category = "elevator"

[[devices]]
id = 'a,b=c d"e'
name = "恶意命名的门禁"
building = "北门 1,=2"
category = "access_gate"

[[devices]]
id = "T-0301"
name = "301室温"
building = "1号楼"
category = "indoor_sensor"
"#;

/// Wall-clock unix milliseconds (for building device timestamps).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) struct Estate {
    pub(crate) mqtt: Mosquitto,
    pub(crate) vm: VictoriaMetrics,
    pub(crate) proxy: RecordingProxy,
    pub(crate) gateway: GatewayProcess,
    pub(crate) config: PathBuf,
    /// The HTTP API, when started with [`Estate::start_with_api`].
    pub(crate) api: Option<Api>,
    _dir: tempfile::TempDir,
}

/// The API token of estates started with [`Estate::start_with_api`].
pub(crate) const API_TOKEN: &str = "integration-test-token";

/// The gateway's HTTP API: its base URL, and requests with or without the bearer token.
pub(crate) struct Api {
    pub(crate) base: String,
}

impl Api {
    /// `METHOD path` with the API token and, when given, a JSON body. Panics on a transport
    /// error (the gateway is expected to answer).
    pub(crate) fn send(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        self.send_with(method, path, Some(API_TOKEN), body)
    }

    /// `METHOD path` with `token` as the bearer token (`None`: no Authorization header).
    pub(crate) fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> HttpResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let url = format!("{}{path}", self.base);
        http_request(method, &url, &headers, body.unwrap_or("").as_bytes())
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    /// `GET path`, expecting 200 and JSON.
    pub(crate) fn json(&self, path: &str) -> serde_json::Value {
        let r = self.send("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.text()))
    }

    /// The path of an alarm's resource (its id percent-encoded: ids start with the site name).
    pub(crate) fn alarm_path(id: &str, rest: &str) -> String {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        format!("/api/alarms/{id}{rest}")
    }
}

thread_local! {
    /// Lines added to the `[mqtt]` section of the configurations this test thread writes
    /// (empty: the default protocol, 3.1.1). Set by [`under_v5`].
    static MQTT_LINES: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs a test body with every gateway configuration it writes (`config_text`) speaking MQTT 5
/// (`mqtt.protocol = "v5"`); [`start_gateway`] then checks that mosquitto saw a v5 client. The
/// same integration tests run under both protocol versions this way.
pub(crate) fn under_v5<T>(body: impl FnOnce() -> T) -> T {
    under_v5_with("", body)
}

/// Like [`under_v5`], with more `[mqtt]` lines (e.g. `receive_maximum = 4`).
pub(crate) fn under_v5_with<T>(mqtt_lines: &str, body: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MQTT_LINES.with(|l| l.borrow_mut().clear());
        }
    }
    MQTT_LINES.with(|l| *l.borrow_mut() = format!("protocol = \"v5\"\n{mqtt_lines}\n"));
    let _reset = Reset;
    body()
}

/// Whether this test thread's gateways speak MQTT 5.
fn v5() -> bool {
    MQTT_LINES.with(|l| l.borrow().starts_with("protocol = \"v5\""))
}

/// The gateway's TOML for the given broker and store; `extra_store` and `extra` are appended
/// to the `[store]` section and the file.
pub(crate) fn config_text(
    mqtt_url: &str,
    store_url: &str,
    extra_store: &str,
    extra: &str,
) -> String {
    // Test defaults for [store], unless `extra_store` sets the same key.
    let defaults: String = [
        "batch_interval = \"200ms\"",
        "retry_min = \"100ms\"",
        "retry_max = \"1s\"",
    ]
    .iter()
    .filter(|l| {
        let key = l.split(' ').next().unwrap_or("");
        !extra_store
            .lines()
            .any(|e| e.trim_start().starts_with(&format!("{key} ")))
    })
    .map(|l| format!("{l}\n"))
    .collect();
    let protocol = MQTT_LINES.with(|l| l.borrow().clone());
    format!(
        r#"
[gateway]
site = "{SITE}"
host = "test-host"
data_dir = "data"
stats_interval = "1s"

[mqtt]
url = "{mqtt_url}"
client_id = "gw-test"
reconnect_min = "100ms"
reconnect_max = "1s"
{protocol}
[store]
url = "{store_url}"
org = "estate"
bucket = "estate"
{defaults}{extra_store}

{extra}
{DEVICES}
"#
    )
}

impl Estate {
    /// Starts everything and waits until the gateway has subscribed.
    pub(crate) fn start() -> Estate {
        Estate::start_with("", "")
    }

    pub(crate) fn start_with(extra_store: &str, extra: &str) -> Estate {
        Estate::start_in(
            tempfile::tempdir().expect("temp dir"),
            "",
            extra_store,
            extra,
        )
    }

    /// Like [`start_with`](Self::start_with), with `broker_conf` appended to mosquitto's
    /// configuration (e.g. `message_size_limit`).
    pub(crate) fn start_with_broker(broker_conf: &str, extra_store: &str, extra: &str) -> Estate {
        Estate::start_in(
            tempfile::tempdir().expect("temp dir"),
            broker_conf,
            extra_store,
            extra,
        )
    }

    /// Starts everything with the configuration (and data dir) in `dir`.
    fn start_in(
        dir: tempfile::TempDir,
        broker_conf: &str,
        extra_store: &str,
        extra: &str,
    ) -> Estate {
        let mqtt = Mosquitto::start_with_config(broker_conf);
        let vm = VictoriaMetrics::start();
        let proxy = RecordingProxy::start(Some(vm.url()));
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            config_text(&mqtt.url(), &proxy.url(), extra_store, extra),
        )
        .expect("write config");
        let gateway = start_gateway(&config, &mqtt);
        Estate {
            mqtt,
            vm,
            proxy,
            gateway,
            config,
            api: None,
            _dir: dir,
        }
    }

    /// Like [`start_with`](Self::start_with) with `extra` after an `[http]` section: the API on
    /// a free port with [`API_TOKEN`] (from a file next to the configuration). Waits until the
    /// API listens.
    pub(crate) fn start_with_api(extra_store: &str, extra: &str) -> Estate {
        Estate::start_with_api_in(tempfile::tempdir().expect("temp dir"), extra_store, extra)
    }

    /// Like [`start_with_api`](Self::start_with_api) with the configuration and data dir in
    /// `dir` (e.g. a small file system of the test's own).
    pub(crate) fn start_with_api_in(
        dir: tempfile::TempDir,
        extra_store: &str,
        extra: &str,
    ) -> Estate {
        // Next to the configuration: it lives as long as the estate, and restarts read it again.
        let token_file = dir.path().join("api.token");
        std::fs::write(&token_file, format!("{API_TOKEN}\n")).expect("write token file");
        let port = free_port();
        let http = format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\napi_token_file = {:?}\n\n{extra}",
            token_file.to_str().expect("utf-8 path")
        );
        let mut estate = Estate::start_in(dir, "", extra_store, &http);
        estate.api = Some(Api {
            base: format!("http://127.0.0.1:{port}"),
        });
        estate.wait_for_api();
        estate
    }

    /// The gateway's journal file (`data_dir` is `data` next to the configuration).
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.config
            .parent()
            .expect("config has a parent dir")
            .join("data")
            .join("journal.sqlite")
    }

    fn wait_for_api(&mut self) {
        if self.api.is_some() {
            assert!(
                self.gateway.wait_for_log("HTTP API listening.", WAIT),
                "the gateway's HTTP API did not start:\n{}",
                self.gateway.log()
            );
        }
    }

    /// The HTTP API; panics when the estate was started without it.
    pub(crate) fn api(&self) -> &Api {
        self.api
            .as_ref()
            .expect("estate started without the HTTP API (use Estate::start_with_api)")
    }

    /// A new in-process MQTT client on the estate's broker.
    pub(crate) fn mqtt_client(&self) -> MqttClient {
        MqttClient::connect(self.mqtt.port())
    }

    /// Replaces the gateway's configuration (takes effect at the next restart).
    pub(crate) fn rewrite_config(&self, extra_store: &str, extra: &str) {
        std::fs::write(
            &self.config,
            config_text(&self.mqtt.url(), &self.proxy.url(), extra_store, extra),
        )
        .expect("write config");
    }

    /// Starts the gateway again with its configuration (same client id and session).
    pub(crate) fn restart_gateway(&mut self) {
        self.gateway.terminate();
        self.gateway = start_gateway(&self.config, &self.mqtt);
        self.wait_for_api();
    }

    pub(crate) fn telemetry_topic(category: &str, device: &str) -> String {
        format!("estate/{SITE}/{category}/{device}/telemetry")
    }

    pub(crate) fn publish(&self, category: &str, device: &str, payload: &str) {
        self.mqtt.publish(
            &Self::telemetry_topic(category, device),
            payload.as_bytes(),
            1,
        );
    }

    /// The `telemetry` lines the store accepted, parsed.
    pub(crate) fn telemetry_lines(&self) -> Vec<crate::support::ParsedPoint> {
        self.proxy
            .lines()
            .iter()
            .map(|l| crate::support::parse_line(l))
            .filter(|p| p.measurement == "telemetry")
            .collect()
    }

    /// The timestamps of the telemetry lines the store accepted, sorted.
    pub(crate) fn telemetry_ts(&self) -> Vec<i64> {
        let mut ts: Vec<i64> = self
            .telemetry_lines()
            .iter()
            .map(|p| p.timestamp.unwrap())
            .collect();
        ts.sort();
        ts
    }

    /// Waits until at least `n` telemetry lines were accepted by the store.
    pub(crate) fn wait_for_telemetry(&self, n: usize) -> Vec<crate::support::ParsedPoint> {
        crate::support::wait_until(WAIT, Duration::from_millis(20), || {
            self.telemetry_lines().len() >= n
        });
        self.telemetry_lines()
    }

    /// The newest `gateway` self-measurement line the store accepted.
    pub(crate) fn last_gateway_point(&self) -> Option<crate::support::ParsedPoint> {
        self.proxy
            .lines()
            .iter()
            .rev()
            .map(|l| crate::support::parse_line(l))
            .find(|p| p.measurement == "gateway")
    }
}

/// The `site = "…"` of a test config (a one-site gateway subscribes with its site in the filter).
fn site_of(config: &str) -> String {
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("site = \"")
                    .and_then(|r| r.strip_suffix('"'))
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| SITE.to_owned())
}

pub(crate) fn start_gateway(config: &std::path::Path, mqtt: &Mosquitto) -> GatewayProcess {
    let config = config.to_str().expect("utf-8 path");
    let mut gw = GatewayProcess::start(&["run", "-c", config]);
    assert!(
        gw.wait_for_log("Subscribed to telemetry and status topics.", WAIT),
        "gateway did not subscribe:\n{}",
        gw.log()
    );
    assert!(
        mqtt.wait_for_subscription(
            Some("gw-test"),
            &format!("estate/{}/+/+/status", site_of(config)),
            WAIT
        ),
        "broker did not log the gateway's subscription:\n{}",
        mqtt.log()
    );
    if v5() {
        // mosquitto logs `New client connected from … as gw-test (p5, c0, k30)`: protocol 5,
        // clean start off.
        assert!(
            mqtt.log().contains("as gw-test (p5, c0"),
            "the gateway did not connect with MQTT 5 and clean start off:\n{}",
            mqtt.log()
        );
        // The event publisher's own connection: MQTT 5 too, clean start.
        assert!(
            mqtt.wait_for_log("as gw-test-events (p5, c1", WAIT),
            "the event publisher did not connect with MQTT 5:\n{}",
            mqtt.log()
        );
    }
    gw
}
