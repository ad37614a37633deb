//! A running estate for end-to-end tests: a real mosquitto, a real VictoriaMetrics behind the
//! recording proxy, and the gateway binary with a generated configuration. Each test builds
//! its own, on its own ports.

#![allow(dead_code)] // each test module uses part of the fixture

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{GatewayProcess, Mosquitto, RecordingProxy, VictoriaMetrics};

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
id = 'a,b=c d"e\'
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
    _dir: tempfile::TempDir,
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
        let mqtt = Mosquitto::start();
        let vm = VictoriaMetrics::start();
        let proxy = RecordingProxy::start(Some(vm.url()));
        let dir = tempfile::tempdir().expect("temp dir");
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
            _dir: dir,
        }
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

pub(crate) fn start_gateway(config: &std::path::Path, mqtt: &Mosquitto) -> GatewayProcess {
    let config = config.to_str().expect("utf-8 path");
    let mut gw = GatewayProcess::start(&["run", "-c", config]);
    assert!(
        gw.wait_for_log("Subscribed to telemetry and status topics.", WAIT),
        "gateway did not subscribe:\n{}",
        gw.log()
    );
    assert!(
        mqtt.wait_for_subscription(Some("gw-test"), "estate/+/+/+/status", WAIT),
        "broker did not log the gateway's subscription:\n{}",
        mqtt.log()
    );
    gw
}
