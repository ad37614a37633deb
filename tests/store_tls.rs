//! The store over HTTPS with a private CA and a client certificate: the real VictoriaMetrics
//! (behind the recording proxy) behind `socat` as the TLS terminator, which trusts only
//! client certificates from the test's CA (as an nginx with `ssl_verify_client on` would).
//! With `store.ca_file`, `store.cert_file` and `store.key_file` the readings are stored;
//! without the certificate every write fails, and the gateway says so and keeps them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fixture::{config_text, now_ms, Estate, WAIT};
use crate::mqtt_security::{toml_path, Secrets};
use crate::support::{
    find_binary, free_port, kill_child, tcp_connects, wait_until, GatewayProcess, Mosquitto,
    RecordingProxy, VictoriaMetrics,
};

/// `socat` terminating TLS on a free port (server certificate for 127.0.0.1 from `secrets`,
/// client certificates required and checked against the CA) and forwarding to `to_port`.
struct TlsTerminator {
    child: Child,
    port: u16,
}

impl TlsTerminator {
    fn start(secrets: &Secrets, to_port: u16) -> TlsTerminator {
        let port = free_port();
        let p = |n: &str| secrets.path(n).to_str().expect("utf-8 path").to_owned();
        let child = Command::new(find_binary("socat"))
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
                p("server.pem"),
                p("server.key"),
                p("ca.pem")
            ))
            .arg(format!("TCP:127.0.0.1:{to_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        assert!(
            wait_until(WAIT, Duration::from_millis(20), || tcp_connects(port)),
            "socat did not listen on {port}"
        );
        TlsTerminator { child, port }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

fn start(dir: &std::path::Path, mqtt: &Mosquitto, store_url: &str, tls: &str) -> GatewayProcess {
    let config = dir.join("gateway.toml");
    std::fs::write(&config, config_text(&mqtt.url(), store_url, tls, "")).expect("config");
    crate::fixture::start_gateway(&config, mqtt)
}

#[test]
fn the_store_over_https_with_a_private_ca_and_a_client_certificate() {
    let secrets = Secrets::new();
    let (cert, key) = secrets.make_client_cert("gateway", "estate-gateway", "ca");
    let mqtt = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let proxy = RecordingProxy::start(Some(vm.url()));
    let tls = TlsTerminator::start(&secrets, proxy.port());
    let store_url = format!("https://127.0.0.1:{}", tls.port);
    let ca = format!("ca_file = {}", toml_path(&secrets.ca()));

    // Without a client certificate the terminator refuses every write: nothing is stored, the
    // gateway says so and keeps the readings.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gw = start(dir.path(), &mqtt, &store_url, &ca);
    let ts = now_ms() - 1000;
    let topic = Estate::telemetry_topic("heating_loop", "HL-1");
    mqtt.publish(
        &topic,
        format!(r#"{{"ts": {ts}, "supply_temp_c": 51.5}}"#).as_bytes(),
        1,
    );
    assert!(gw.wait_for_log("Store write failed", WAIT), "{}", gw.log());
    assert!(proxy.lines().is_empty(), "{:?}", proxy.lines());
    gw.terminate();

    // With it, the same data dir: the waiting reading and a new one are stored.
    let mut gw = start(
        dir.path(),
        &mqtt,
        &store_url,
        &format!(
            "{ca}\ncert_file = {}\nkey_file = {}",
            toml_path(&cert),
            toml_path(&key)
        ),
    );
    mqtt.publish(
        &topic,
        format!(r#"{{"ts": {}, "supply_temp_c": 52.5}}"#, ts + 1).as_bytes(),
        1,
    );
    let series = vm.wait_for_samples(r#"{__name__="telemetry_supply_temp_c"}"#, 2, WAIT);
    assert_eq!(series.len(), 1, "{series:?}\n{}", gw.log());
    assert_eq!(
        series[0].samples(),
        [(ts, 51.5), (ts + 1, 52.5)],
        "{}",
        gw.log()
    );
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.log());
    let key_text = std::fs::read_to_string(&key).expect("key");
    let body = key_text.lines().nth(1).expect("a base64 line");
    assert!(!gw.log().contains(body), "the key is in the log");
}

#[test]
fn store_tls_mistakes_are_configuration_errors() {
    let secrets = Secrets::new();
    let (cert, _) = secrets.make_client_cert("gateway", "estate-gateway", "ca");
    let check = |store_url: &str, tls: &str| -> String {
        let path = secrets.path("check.toml");
        std::fs::write(
            &path,
            config_text("mqtt://127.0.0.1:1883", store_url, tls, ""),
        )
        .expect("write config");
        let out = crate::support::run_cli(&["check-config", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{tls}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let ca = format!("ca_file = {}", toml_path(&secrets.ca()));
    let msg = check("http://127.0.0.1:8086", &ca);
    assert!(
        msg.contains("store.ca_file: is set but `store.url` is not `https://`"),
        "{msg}"
    );
    let msg = check(
        "https://127.0.0.1:8086",
        &format!("cert_file = {}", toml_path(&cert)),
    );
    assert!(msg.contains("store.key_file: is missing"), "{msg}");
    let msg = check(
        "https://127.0.0.1:8086",
        &format!("ca_file = {}", toml_path(&secrets.path("ca.key"))),
    );
    assert!(
        msg.contains("store.ca_file") && msg.contains("holds no PEM certificate"),
        "{msg}"
    );
}
