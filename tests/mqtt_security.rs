//! MQTT security against a real mosquitto: TLS (rustls, with a private CA from `mqtt.ca_file`)
//! and username/password (from `mqtt.password_file` or the variable named by
//! `mqtt.password_env`). Each test makes a throwaway PKI with the `openssl` CLI (a CA, a v3
//! server certificate for IP 127.0.0.1, and an unrelated second CA) and a mosquitto password
//! file with `mosquitto_passwd`, then runs mosquitto with a TLS-only, password-only listener.
//! With the right CA and password a reading published with `mosquitto_pub` over TLS reaches
//! the store; with a wrong password or a CA that did not sign the broker's certificate the
//! gateway says what is wrong, keeps retrying with growing backoff, never crashes and never
//! logs the password.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::fixture::{now_ms, DEVICES, SITE, WAIT};
use crate::support::{
    find_binary, kill_child, parse_line, wait_timeout, wait_until, FieldVal, GatewayProcess,
    Mosquitto, ParsedPoint, RecordingProxy, VictoriaMetrics,
};

const USER: &str = "gw-user";
const PASSWORD: &str = "Corr3ct-h0rse-密码";
const WRONG_PASSWORD: &str = "wr0ng-batt3ry";
const CLIENT_ID: &str = "gw-test";
/// The gateway's documented log line for refused credentials (README, Troubleshooting).
const REFUSED: &str =
    "The MQTT broker refused the connection; check mqtt.username and the password.";
const RECONNECTING: &str = "MQTT connection lost or refused; reconnecting.";
const SUBSCRIBED: &str = "Subscribed to telemetry and status topics.";

/// Runs `cmd` to completion, killing it after [`WAIT`] (a TLS client that hangs must fail the
/// test, not the test run).
fn run_bounded(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    if wait_timeout(&mut child, WAIT).is_none() {
        kill_child(&mut child);
        panic!("{what} did not finish within {WAIT:?}");
    }
    child.wait_with_output().expect("collect output")
}

fn run_ok(cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let out = run_bounded(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A throwaway PKI and mosquitto password file in a temp dir.
pub(crate) struct Secrets {
    dir: TempDir,
}

impl Secrets {
    pub(crate) fn new() -> Secrets {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-pki-")
            .tempdir()
            .expect("create PKI temp dir");
        let s = Secrets { dir };
        s.make_ca("ca", "estate-gateway test CA");
        s.make_ca("other-ca", "unrelated test CA");
        s.make_server_cert();
        let mut passwd = Command::new(find_binary("mosquitto_passwd"));
        passwd
            .args(["-b", "-c"])
            .arg(s.path("passwd"))
            .args([USER, PASSWORD]);
        run_ok(passwd);
        s
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the broker's certificate.
    pub(crate) fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that has nothing to do with the broker.
    fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    fn openssl(&self, args: &[&str]) {
        let mut cmd = Command::new(find_binary("openssl"));
        cmd.args(args).current_dir(self.dir.path());
        run_ok(cmd);
    }

    /// `NAME.pem` / `NAME.key`: a self-signed v3 CA (basicConstraints CA:TRUE), P-256.
    fn make_ca(&self, name: &str, cn: &str) {
        let cnf = format!("{name}.cnf");
        std::fs::write(
            self.path(&cnf),
            format!(
                "[req]\n\
                 distinguished_name = dn\n\
                 prompt = no\n\
                 [dn]\n\
                 CN = {cn}\n\
                 [v3_ca]\n\
                 basicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\n\
                 subjectKeyIdentifier = hash\n"
            ),
        )
        .expect("write CA openssl config");
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-config",
            &cnf,
            "-extensions",
            "v3_ca",
        ]);
    }

    /// `server.pem` / `server.key`: a v3 leaf for IP 127.0.0.1 (subjectAltName, CA:FALSE),
    /// signed by `ca`.
    fn make_server_cert(&self) {
        std::fs::write(
            self.path("server.cnf"),
            "[req]\n\
             distinguished_name = dn\n\
             prompt = no\n\
             [dn]\n\
             CN = 127.0.0.1\n",
        )
        .expect("write server openssl config");
        std::fs::write(
            self.path("server.ext"),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid, issuer\n",
        )
        .expect("write server extensions");
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-config",
            "server.cnf",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
    }

    /// `NAME.pem` / `NAME.key`: a v3 client certificate (clientAuth) for `cn`, signed by the
    /// CA `ca` (`ca.pem`/`ca.key` or `other-ca.pem`/`other-ca.key`).
    pub(crate) fn make_client_cert(&self, name: &str, cn: &str, ca: &str) -> (PathBuf, PathBuf) {
        std::fs::write(
            self.path(&format!("{name}.cnf")),
            format!("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n"),
        )
        .expect("write client openssl config");
        std::fs::write(
            self.path(&format!("{name}.ext")),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid, issuer\n",
        )
        .expect("write client extensions");
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-config",
            &format!("{name}.cnf"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            "3",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &pem,
        ]);
        (self.path(&pem), self.path(&key))
    }

    /// Mosquitto config lines: the broker's one listener speaks TLS only, with our server
    /// certificate, and every client must log in.
    fn broker_conf(&self) -> String {
        format!(
            "cafile {}\n\
             certfile {}\n\
             keyfile {}\n\
             password_file {}\n\
             allow_anonymous false\n",
            self.ca().display(),
            self.path("server.pem").display(),
            self.path("server.key").display(),
            self.path("passwd").display(),
        )
    }

    /// A file holding `password` on its first line (as an operator would write it).
    fn password_file(&self, name: &str, password: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, format!("{password}\n")).expect("write password file");
        p
    }
}

/// A TOML basic string holding `p`.
pub(crate) fn toml_path(p: &Path) -> String {
    toml::Value::String(p.to_str().expect("utf-8 path").to_owned()).to_string()
}

/// The gateway's TOML (like `fixture::config_text`), with `[mqtt]` on TLS and a username;
/// `mqtt_extra` is added to the `[mqtt]` section (the password source).
fn config_text(broker_port: u16, ca: &Path, store_url: &str, mqtt_extra: &str) -> String {
    format!(
        r#"
[gateway]
site = "{SITE}"
host = "test-host"
data_dir = "data"
stats_interval = "1s"

[mqtt]
url = "mqtts://127.0.0.1:{broker_port}"
ca_file = {ca}
username = "{USER}"
client_id = "{CLIENT_ID}"
reconnect_min = "100ms"
reconnect_max = "1s"
{mqtt_extra}

[store]
url = "{store_url}"
org = "estate"
bucket = "estate"
batch_interval = "200ms"
retry_min = "100ms"
retry_max = "1s"

{DEVICES}
"#,
        ca = toml_path(ca),
    )
}

/// Writes the config next to the secrets and starts the gateway with `env`.
fn start_gateway(secrets: &Secrets, config: &str, env: &[(&str, &str)]) -> GatewayProcess {
    let path = secrets.path("gateway.toml");
    std::fs::write(&path, config).expect("write gateway.toml");
    GatewayProcess::start_with_env(&["run", "-c", path.to_str().expect("utf-8 path")], env)
}

/// `mosquitto_pub` over TLS to the broker: `ca` as `--cafile`, optional credentials, QoS 1.
fn tls_publish(
    broker: &Mosquitto,
    ca: Option<&Path>,
    login: Option<(&str, &str)>,
    topic: &str,
    payload: &str,
) -> Output {
    tls_publish_as(broker, ca, None, login, topic, payload)
}

/// [`tls_publish`] with a client certificate and key (`--cert`, `--key`).
fn tls_publish_as(
    broker: &Mosquitto,
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
    login: Option<(&str, &str)>,
    topic: &str,
    payload: &str,
) -> Output {
    let mut cmd = Command::new(find_binary("mosquitto_pub"));
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()]);
    if let Some(ca) = ca {
        cmd.arg("--cafile").arg(ca);
    }
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if let Some((user, password)) = login {
        cmd.args(["-u", user, "-P", password]);
    }
    cmd.args(["-q", "1", "-t", topic, "-m", payload]);
    run_bounded(cmd)
}

fn telemetry_topic(category: &str, device: &str) -> String {
    format!("estate/{SITE}/{category}/{device}/telemetry")
}

fn telemetry_points(proxy: &RecordingProxy) -> Vec<ParsedPoint> {
    proxy
        .lines()
        .iter()
        .map(|l| parse_line(l))
        .filter(|p| p.measurement == "telemetry")
        .collect()
}

/// The `retry_in_ms` of every log line containing `message`, in order.
fn retry_delays(log: &str, message: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(message))
        .map(|l| {
            let (_, rest) = l
                .split_once("retry_in_ms=")
                .unwrap_or_else(|| panic!("no retry_in_ms in {l:?}"));
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or_else(|e| panic!("bad retry_in_ms in {l:?}: {e}"))
        })
        .collect()
}

/// Waits until the gateway has logged `message` at least `n` times, and checks that the
/// `retry_in_ms` of those lines follow the configured backoff (100 ms doubling to 1 s, each
/// with up to half taken off as jitter), i.e. the waits between attempts grow.
fn assert_retries_with_backoff(gw: &mut GatewayProcess, message: &str, n: usize) {
    let mut running = true;
    wait_until(WAIT, Duration::from_millis(20), || {
        running = gw.try_wait().is_none();
        !running || gw.log_count(message) >= n
    });
    assert!(running, "the gateway exited:\n{}", gw.log());
    let delays = retry_delays(&gw.log(), message);
    assert!(
        delays.len() >= n,
        "expected at least {n} `{message}` lines, got {delays:?}:\n{}",
        gw.log()
    );
    for (i, &d) in delays.iter().enumerate() {
        let step = (100u64 << i.min(10)).min(1000);
        assert!(
            (step / 2..=step).contains(&d),
            "attempt {i}: retry_in_ms={d}, expected {}..={step} (backoff 100ms doubling to 1s, \
             up to half off as jitter); all: {delays:?}",
            step / 2
        );
    }
    assert!(
        delays[n - 1] > delays[0],
        "the backoff did not grow: {delays:?}"
    );
}

/// TLS broker, store, gateway with the password from `mqtt_extra`/`env`: a reading published
/// over TLS with credentials lands in the store (VictoriaMetrics behind the recording proxy).
fn reading_reaches_the_store_over_tls(
    secrets: &Secrets,
    broker: &Mosquitto,
    mqtt_extra: &str,
    env: &[(&str, &str)],
    publisher: Option<(&Path, &Path)>,
) {
    let vm = VictoriaMetrics::start();
    let proxy = RecordingProxy::start(Some(vm.url()));
    let config = config_text(broker.port(), &secrets.ca(), &proxy.url(), mqtt_extra);
    let mut gw = start_gateway(secrets, &config, env);
    assert!(
        gw.wait_for_log(SUBSCRIBED, WAIT),
        "gateway did not subscribe over TLS:\n{}\n--- mosquitto ---\n{}",
        gw.log(),
        broker.log()
    );
    assert!(
        broker.wait_for_subscription(Some(CLIENT_ID), &format!("estate/{SITE}/+/+/status"), WAIT),
        "broker did not log the gateway's subscription:\n{}",
        broker.log()
    );
    // The broker saw our client log in as USER (it has no anonymous access at all).
    assert!(
        broker
            .log()
            .lines()
            .any(|l| l.contains(&format!(" as {CLIENT_ID} ")) && l.contains(&format!("u'{USER}'"))),
        "broker did not log {CLIENT_ID} connecting as {USER}:\n{}",
        broker.log()
    );

    let ts = now_ms() - 1000;
    let out = tls_publish_as(
        broker,
        Some(&secrets.ca()),
        publisher,
        Some((USER, PASSWORD)),
        &telemetry_topic("heating_loop", "HL-1"),
        &format!(r#"{{"ts": {ts}, "supply_temp_c": 55.5, "pump_running": true}}"#),
    );
    assert!(
        out.status.success(),
        "mosquitto_pub over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut points = Vec::new();
    wait_until(WAIT, Duration::from_millis(20), || {
        points = telemetry_points(&proxy);
        !points.is_empty()
    });
    assert_eq!(points.len(), 1, "{:#?}\n{}", proxy.lines(), gw.log());
    let p = &points[0];
    assert_eq!(p.tag("device"), "HL-1");
    assert_eq!(p.tag("site"), SITE);
    assert_eq!(p.timestamp, Some(ts));
    assert_eq!(p.field("supply_temp_c"), &FieldVal::F64(55.5));
    assert_eq!(p.field("pump_running"), &FieldVal::Bool(true));
    // And the store itself has it.
    let series = vm.wait_for_samples(r#"{__name__="telemetry_supply_temp_c"}"#, 1, WAIT);
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].samples(), [(ts, 55.5)]);

    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.log());
    let log = gw.log();
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    assert!(!log.contains(RECONNECTING), "{log}");
}

#[test]
fn tls_with_password_file_delivers_readings() {
    let secrets = Secrets::new();
    let broker = Mosquitto::start_with_config(&secrets.broker_conf());

    // The broker really is TLS-only and password-only: plain MQTT and anonymous TLS fail.
    let plain = tls_publish(&broker, None, Some((USER, PASSWORD)), "t", "x");
    assert!(
        !plain.status.success(),
        "plain MQTT to the TLS listener worked"
    );
    let anonymous = tls_publish(&broker, Some(&secrets.ca()), None, "t", "x");
    assert!(
        !anonymous.status.success(),
        "anonymous TLS publish was accepted"
    );

    let password_file = secrets.password_file("mqtt-password", PASSWORD);
    reading_reaches_the_store_over_tls(
        &secrets,
        &broker,
        &format!("password_file = {}", toml_path(&password_file)),
        // The file wins over the environment.
        &[("ESTATE_GW_MQTT_PASSWORD", WRONG_PASSWORD)],
        None,
    );
}

#[test]
fn tls_with_password_from_environment_delivers_readings() {
    let secrets = Secrets::new();
    let broker = Mosquitto::start_with_config(&secrets.broker_conf());
    // No password_file: the password comes from `password_env`'s default variable.
    reading_reaches_the_store_over_tls(
        &secrets,
        &broker,
        "",
        &[("ESTATE_GW_MQTT_PASSWORD", PASSWORD)],
        None,
    );
}

#[test]
fn wrong_password_is_reported_and_retried_with_backoff() {
    let secrets = Secrets::new();
    let broker = Mosquitto::start_with_config(&secrets.broker_conf());
    let proxy = RecordingProxy::start(None);
    let password_file = secrets.password_file("mqtt-password", WRONG_PASSWORD);
    let config = config_text(
        broker.port(),
        &secrets.ca(),
        &proxy.url(),
        &format!("password_file = {}", toml_path(&password_file)),
    );
    let mut gw = start_gateway(&secrets, &config, &[]);

    // The refusal is named as such (with the broker's code), not as a lost connection, and
    // the gateway keeps trying with growing waits.
    assert_retries_with_backoff(&mut gw, REFUSED, 5);
    let log = gw.log();
    let refusal = log.lines().find(|l| l.contains(REFUSED)).unwrap();
    assert!(
        refusal.contains("code=NotAuthorized") || refusal.contains("code=BadUserNamePassword"),
        "the refusal does not carry the broker's code: {refusal}"
    );
    assert!(!log.contains(RECONNECTING), "{log}");
    assert!(!log.contains("Connected to the MQTT broker."), "{log}");
    assert!(
        !log.contains(WRONG_PASSWORD),
        "the password is in the log:\n{log}"
    );
    // The attempts got through TLS and were refused by the broker's password check.
    let refused_by_broker = broker.log().matches("not authorised").count();
    assert!(
        refused_by_broker >= 5,
        "the broker refused {refused_by_broker} logins, expected at least 5:\n{}",
        broker.log()
    );

    assert!(telemetry_points(&proxy).is_empty(), "{:?}", proxy.lines());
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.log());
}

/// MQTT 5: the refusing CONNACK's reason code is logged with what it means.
#[test]
fn wrong_password_is_reported_with_the_v5_reason_code() {
    let secrets = Secrets::new();
    let broker = Mosquitto::start_with_config(&secrets.broker_conf());
    let proxy = RecordingProxy::start(None);
    let password_file = secrets.password_file("mqtt-password", WRONG_PASSWORD);
    let config = config_text(
        broker.port(),
        &secrets.ca(),
        &proxy.url(),
        &format!(
            "password_file = {}\nprotocol = \"v5\"",
            toml_path(&password_file)
        ),
    );
    let mut gw = start_gateway(&secrets, &config, &[]);
    assert_retries_with_backoff(&mut gw, REFUSED, 3);
    let log = gw.log();
    let refusal = log.lines().find(|l| l.contains(REFUSED)).unwrap();
    assert!(
        refusal.contains("code=CONNACK NotAuthorized (0x87): this user may not connect")
            || refusal
                .contains("code=CONNACK BadUserNamePassword (0x86): wrong user name or password"),
        "the refusal does not carry the v5 reason code and its meaning: {refusal}"
    );
    // The v5 client made the attempts (a 3.1.1 refusal carries no reason code text).
    assert!(log.contains("protocol=\"v5\""), "{log}");
    assert!(
        !log.contains(WRONG_PASSWORD),
        "the password is in the log:\n{log}"
    );
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.log());
}

#[test]
fn unknown_ca_is_reported_and_retried_with_backoff() {
    let secrets = Secrets::new();
    let broker = Mosquitto::start_with_config(&secrets.broker_conf());
    let proxy = RecordingProxy::start(None);
    let password_file = secrets.password_file("mqtt-password", PASSWORD);
    // Right password, but a CA that did not sign the broker's certificate.
    let config = config_text(
        broker.port(),
        &secrets.other_ca(),
        &proxy.url(),
        &format!("password_file = {}", toml_path(&password_file)),
    );
    let mut gw = start_gateway(&secrets, &config, &[]);

    assert_retries_with_backoff(&mut gw, RECONNECTING, 5);
    let log = gw.log();
    let failure = log.lines().find(|l| l.contains(RECONNECTING)).unwrap();
    assert!(
        failure.contains("TLS") && failure.contains("UnknownIssuer"),
        "the failure does not name the certificate problem: {failure}"
    );
    assert!(!log.contains(REFUSED), "{log}");
    assert!(!log.contains("Connected to the MQTT broker."), "{log}");

    // Data published meanwhile (by a client that trusts the right CA) never reaches the
    // gateway: it never got past the handshake, so it has no session and no subscription.
    let out = tls_publish(
        &broker,
        Some(&secrets.ca()),
        Some((USER, PASSWORD)),
        &telemetry_topic("heating_loop", "HL-1"),
        r#"{"supply_temp_c": 60.0}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attempts = gw.log_count(RECONNECTING);
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || gw
            .log_count(RECONNECTING)
            > attempts + 1),
        "the gateway stopped retrying:\n{}",
        gw.log()
    );
    assert!(gw.try_wait().is_none(), "the gateway exited:\n{}", gw.log());
    assert!(telemetry_points(&proxy).is_empty(), "{:?}", proxy.lines());
    assert!(
        !broker.log().contains(&format!(" as {CLIENT_ID} ")),
        "{CLIENT_ID} got through to the broker:\n{}",
        broker.log()
    );
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.log());
}

#[test]
fn a_broker_requiring_client_certificates_takes_the_gateways_and_refuses_others() {
    let secrets = Secrets::new();
    let broker =
        Mosquitto::start_with_config(&(secrets.broker_conf() + "require_certificate true\n"));
    let (cert, key) = secrets.make_client_cert("gateway", "estate-gateway", "ca");
    let (device_cert, device_key) = secrets.make_client_cert("device", "HL-1", "ca");
    let (stranger_cert, stranger_key) =
        secrets.make_client_cert("stranger", "estate-gateway", "other-ca");
    let password_file = secrets.password_file("mqtt-password", PASSWORD);
    let login = format!("password_file = {}", toml_path(&password_file));

    // The broker really requires one: a TLS client without a certificate is refused.
    let without = tls_publish(
        &broker,
        Some(&secrets.ca()),
        Some((USER, PASSWORD)),
        "t",
        "x",
    );
    assert!(
        !without.status.success(),
        "a client without a certificate got in"
    );

    // With `mqtt.cert_file` and `mqtt.key_file`, readings flow as over any TLS connection.
    reading_reaches_the_store_over_tls(
        &secrets,
        &broker,
        &format!(
            "{login}\ncert_file = {}\nkey_file = {}",
            toml_path(&cert),
            toml_path(&key)
        ),
        &[],
        Some((&device_cert, &device_key)),
    );

    // Without a certificate, or with one the broker's CA did not sign, the gateway never gets
    // past the handshake, says so, and keeps retrying.
    for extra in [
        login.clone(),
        format!(
            "{login}\ncert_file = {}\nkey_file = {}",
            toml_path(&stranger_cert),
            toml_path(&stranger_key)
        ),
    ] {
        let proxy = RecordingProxy::start(None);
        let config = config_text(broker.port(), &secrets.ca(), &proxy.url(), &extra);
        let mut gw = start_gateway(&secrets, &config, &[]);
        assert_retries_with_backoff(&mut gw, RECONNECTING, 3);
        let log = gw.log();
        assert!(
            !log.contains("Connected to the MQTT broker."),
            "{extra}:\n{log}"
        );
        assert!(gw.try_wait().is_none(), "the gateway exited:\n{log}");
        assert_eq!(gw.terminate().code(), Some(0), "{log}");
    }
}

#[test]
fn client_certificate_mistakes_are_configuration_errors() {
    let secrets = Secrets::new();
    let (cert, key) = secrets.make_client_cert("gateway", "estate-gateway", "ca");
    let (_, other_key) = secrets.make_client_cert("other", "x", "ca");
    let check = |extra: &str| -> String {
        let path = secrets.path("check.toml");
        std::fs::write(
            &path,
            config_text(1883, &secrets.ca(), "http://127.0.0.1:1", extra),
        )
        .expect("write config");
        let out = crate::support::run_cli(&["check-config", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{extra}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let msg = check(&format!("cert_file = {}", toml_path(&cert)));
    assert!(msg.contains("mqtt.key_file: is missing"), "{msg}");
    let msg = check(&format!(
        "cert_file = {}\nkey_file = {}",
        toml_path(&key),
        toml_path(&key)
    ));
    assert!(
        msg.contains("mqtt.cert_file") && msg.contains("holds no PEM certificate"),
        "{msg}"
    );
    let msg = check(&format!(
        "cert_file = {}\nkey_file = {}",
        toml_path(&cert),
        toml_path(&other_key)
    ));
    assert!(
        msg.contains("mqtt.key_file") && msg.contains("cannot be used with the certificate"),
        "{msg}"
    );
    // The key never appears in any message.
    let key_text = std::fs::read_to_string(&other_key).expect("key");
    let body = key_text.lines().nth(1).expect("a base64 line");
    assert!(!msg.contains(body), "{msg}");
}
