//! Issue 13, "a hostile world": names the store cannot carry exactly are refused by
//! `check-config`, everything else comes back from real line-protocol parsers exactly.

use std::time::Duration;

use estate_gateway::encode::line::{series_key, Field, FieldWriter};

use crate::support::{InfluxDb1, VictoriaMetrics};

/// Names `check-config` accepts that line protocol must escape (space, comma, equals sign,
/// quotes, `#`, CJK, a Unicode line separator, emoji, leading and trailing spaces).
const NAMES: &[&str] = &[
    "a,b=c d\"e",
    "华府 1号楼",
    "#x",
    " lead",
    "trail ",
    "=eq",
    "q\"uote'",
    "ls\u{2028}sep",
    "🚒 pump",
    "E,",
];

/// The lines our encoder writes for one point per name (as device id and building).
fn lines() -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = FieldWriter;
    for (i, name) in NAMES.iter().enumerate() {
        assert_eq!(
            estate_gateway::encode::line::tag_problem(name),
            None,
            "{name:?}"
        );
        let key = series_key(
            "telemetry",
            &[
                ("building", name),
                ("category", "elevator"),
                ("device", name),
                ("site", "华府"),
            ],
        );
        let note = format!("{name} \\ \"quoted\"");
        w.line(
            &mut out,
            &key,
            [("v", Field::F64(i as f64)), ("note", Field::Str(&note))],
            1_700_000_000_000 + i as i64,
        );
    }
    out
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn escaped_names_come_back_exactly_from_victoria_metrics_and_influxdb() {
    let body = lines();

    let vm = VictoriaMetrics::start();
    let r = crate::support::http_post(
        &format!("{}/api/v2/write?precision=ms", vm.url()),
        &[],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let series = vm.wait_for_samples("telemetry_v", NAMES.len(), Duration::from_secs(10));
    let mut devices: Vec<String> = series
        .iter()
        .filter_map(|s| s.label("device").map(str::to_owned))
        .collect();
    devices.sort();
    assert_eq!(devices, sorted(NAMES));
    for s in &series {
        assert_eq!(s.label("device"), s.label("building"));
    }

    let influx = InfluxDb1::start();
    let (status, text) = influx.write(&body);
    assert_eq!(status, 204, "InfluxDB refused our lines: {text}");
    assert_eq!(influx.tag_values("telemetry", "device"), sorted(NAMES));
    assert_eq!(influx.tag_values("telemetry", "building"), sorted(NAMES));
    let mut notes: Vec<String> = NAMES.iter().map(|n| format!("{n} \\ \"quoted\"")).collect();
    notes.sort();
    assert_eq!(influx.string_values("telemetry", "note"), notes);
}

/// A gateway with only `[http]` (and what it needs), in `dir`, on `port`, plus `extra` TOML.
fn http_only_config(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nsite = \"s\"\ndata_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
            dir.join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    path
}

/// Issue 13 item 3: started with a soft limit of 1,024 file descriptors (systemd's default),
/// the gateway raises it and keeps `/healthz` answering while 2,000 idle connections are
/// open; idle connections are closed after `http.header_timeout`.
#[test]
fn healthz_answers_under_two_thousand_idle_connections() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Instant;

    let start = |header_timeout: &str| {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let cfg = http_only_config(
            dir.path(),
            port,
            &format!("header_timeout = \"{header_timeout}\"\n"),
        );
        let mut gw = crate::support::GatewayProcess::start_with_fd_limit(
            &["run", "-c", cfg.to_str().unwrap()],
            &[],
            1024,
        );
        assert!(
            gw.wait_for_log("HTTP API listening.", Duration::from_secs(20)),
            "{}",
            gw.log()
        );
        (dir, port, gw)
    };

    // Idle connections outlive the test's checks (30 s), however slow the machine.
    let (_dir, port, gw) = start("30s");
    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // Let the gateway accept them all (or fail to).
    std::thread::sleep(Duration::from_millis(500));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(crate::support::http_get(&format!(
            "http://127.0.0.1:{port}/healthz"
        )));
    });
    match rx.recv_timeout(Duration::from_secs(3)) {
        Ok(Ok(r)) => assert_eq!((r.status, r.text().as_str()), (200, "ok")),
        other => panic!(
            "/healthz did not answer within 3 s with 2,000 idle connections open: {other:?}\n{}",
            gw.log()
        ),
    }
    assert!(
        gw.log().contains("File-descriptor limit raised."),
        "{}",
        gw.log()
    );
    drop(idle);

    // An idle connection is closed by the gateway after `header_timeout`.
    let (_dir, port, _gw) = start("1s");
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 16];
    let t = Instant::now();
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an idle connection got data");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "an idle connection stayed open {:?}",
        t.elapsed()
    );
}

const PLANTED: &[&str] = &[
    "PLANTED-STORE-TOKEN-5e1d",
    "PLANTED-URL-PASSWORD-91c2",
    "PLANTED-MQTT-PASSWORD-7f3a",
    "PLANTED-API-TOKEN-c0de",
    "PLANTED-WEBHOOK-KEY-ab12",
];

/// Issue 13 item 4: the store token, the store URL's password, the MQTT password, the API
/// token and the webhook key never appear in any output: the trace log, `/metrics`,
/// `/healthz`, `check-config --verbose`, nor a failing configuration's errors.
#[test]
fn planted_secrets_never_appear_in_any_output() {
    use crate::support::{
        free_port, http_get, http_post, run_cli_with_env, GatewayProcess, Mosquitto,
    };

    let broker = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    std::fs::write(dir.path().join("api.token"), format!("{}\n", PLANTED[3])).unwrap();
    let toml = |store_url: &str, hook: &str| {
        format!(
            "[gateway]\nsite = \"s\"\ndata_dir = {data:?}\n\
             [mqtt]\nurl = \"{mqtt}\"\nusername = \"gw\"\n\
             [store]\nurl = \"{store_url}\"\norg = \"o\"\nbucket = \"b\"\nbatch_interval = \"100ms\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\napi_token_file = \"api.token\"\n\
             [alarms.webhook]\n{hook}\n\
             [[devices]]\nid = \"E-1\"\nname = \"e\"\nbuilding = \"B\"\ncategory = \"elevator\"\n",
            data = dir.path().join("data").to_str().unwrap(),
            mqtt = broker.url(),
        )
    };
    let good = dir.path().join("gateway.toml");
    std::fs::write(
        &good,
        toml(
            &format!("http://gw:{}@127.0.0.1:{}", PLANTED[1], vm.port()),
            "url_env = \"HOOK_URL\"",
        ),
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        toml(
            &format!("ftp://gw:{}@127.0.0.1:{}", PLANTED[1], vm.port()),
            &format!("url = \"nonsense?key={}\"", PLANTED[4]),
        )
        .replace(
            &format!("url = \"{}\"", broker.url()),
            &format!("url = \"bogus://gw:{}@127.0.0.1:1\"", PLANTED[2]),
        ),
    )
    .unwrap();
    let hook = format!("http://127.0.0.1:9/hook?key={}", PLANTED[4]);
    let env = [
        ("RUST_LOG", "trace"),
        ("ESTATE_GW_STORE_TOKEN", PLANTED[0]),
        ("ESTATE_GW_MQTT_PASSWORD", PLANTED[2]),
        ("HOOK_URL", hook.as_str()),
    ];

    let mut outputs: Vec<(String, String)> = Vec::new();
    for (what, path) in [
        ("check-config --verbose", &good),
        ("failing check-config", &bad),
    ] {
        let out = run_cli_with_env(
            &["check-config", "--verbose", "-c", path.to_str().unwrap()],
            &env,
        );
        outputs.push((
            what.into(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    assert!(outputs[0].1.contains(":***@127.0.0.1"), "{}", outputs[0].1);
    assert!(outputs[1].1.contains("store.url"), "{}", outputs[1].1);
    assert!(outputs[1].1.contains("mqtt.url"), "{}", outputs[1].1);

    let mut gw = GatewayProcess::start_with_env(&["run", "-c", good.to_str().unwrap()], &env);
    assert!(
        gw.wait_for_log("HTTP API listening.", Duration::from_secs(20)),
        "{}",
        gw.log()
    );
    broker.publish("estate/s/elevator/E-1/telemetry", br#"{"floor": 3}"#, 1);
    let stored = vm.wait_for_samples("telemetry_floor", 1, Duration::from_secs(10));
    assert_eq!(stored.len(), 1, "{}", gw.log());
    let base = format!("http://127.0.0.1:{http_port}");
    for token in [PLANTED[3], "wrong-token"] {
        let r = http_post(
            &format!("{base}/api/alarms/nope/ack"),
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            br#"{"by": "op"}"#,
        )
        .unwrap();
        outputs.push((format!("ack with {token}"), r.text()));
    }
    outputs.push((
        "/metrics".into(),
        http_get(&format!("{base}/metrics")).unwrap().text(),
    ));
    outputs.push((
        "/healthz".into(),
        http_get(&format!("{base}/healthz")).unwrap().text(),
    ));
    gw.terminate();
    let log = gw.log();
    assert!(
        log.contains("TRACE"),
        "not a trace log:\n{}",
        crate::support::tail(&log, 20)
    );
    outputs.push(("the trace log".into(), log));

    for (what, text) in &outputs {
        for secret in PLANTED {
            assert!(
                !text.contains(secret),
                "{secret} appears in {what}:\n{}",
                text.lines()
                    .filter(|l| l.contains(secret))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// Issue 13 item 7: with the project's Modbus simulator as the peer, a write outside the
/// register map's `min`/`max` is refused with 422 and never sent; every write (who, from
/// where, old and new value, result) is journaled and listed by `GET /api/writes`, newest
/// first, token-protected, `?device=&limit=`.
#[test]
fn modbus_writes_are_range_checked_and_journaled() {
    use crate::support::{free_port, http_get, http_request, wait_until, GatewayProcess};

    let dir = tempfile::tempdir().unwrap();
    let (plant, http_port) = (free_port(), free_port());
    std::fs::write(dir.path().join("api.token"), "write-token\n").unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nsite = \"s\"\ndata_dir = {data:?}\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\napi_token_file = \"api.token\"\n\
             [modbus]\n[[modbus.endpoints]]\nname = \"plant\"\nurl = \"tcp://127.0.0.1:{plant}\"\n\
             [[devices]]\nid = \"HX-1\"\nname = \"1号换热站\"\nbuilding = \"站\"\ncategory = \"heating_loop\"\n\
             interval = \"200ms\"\nmodbus = {{ endpoint = \"plant\", unit = 1, model = \"heating_plc\" }}\n",
            data = dir.path().join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let mut sim = GatewayProcess::start(&["simulate", "-c", cfg, "--seed", "1"]);
    assert!(
        sim.wait_for_log("Simulating 1 Modbus device", Duration::from_secs(10)),
        "{}",
        sim.log()
    );
    let mut gw = GatewayProcess::start(&["run", "-c", cfg]);
    assert!(
        gw.wait_for_log("HTTP API listening.", Duration::from_secs(20)),
        "{}",
        gw.log()
    );
    let base = format!("http://127.0.0.1:{http_port}");
    let setpoint = || -> Option<f64> {
        let r = http_get(&format!("{base}/api/devices/HX-1")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        v["values"]["supply_setpoint_c"].as_f64()
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            setpoint() == Some(55.0)
        }),
        "never polled: {:?}\n{}",
        setpoint(),
        gw.log()
    );
    let post = |value: &str, token: &str| {
        let body = format!(r#"{{"signal": "supply_setpoint_c", "value": {value}, "by": "李工"}}"#);
        let r = http_request(
            "POST",
            &format!("{base}/api/devices/HX-1/write"),
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (r.status, v)
    };

    let (status, body) = post("-1e30", "write-token");
    assert_eq!(status, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("outside the allowed range 30 to 95"), "{msg}");
    let (status, body) = post("60.5", "write-token");
    assert_eq!(status, 200, "{body}");
    // The simulator took it (and -1e30 never reached it): the next polls read 60.5.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            setpoint() == Some(60.5)
        }),
        "{:?}",
        setpoint()
    );
    let (status, _) = post("70", "wrong-token");
    assert_eq!(status, 401);

    let list = |query: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let r = http_request("GET", &format!("{base}/api/writes{query}"), &headers, b"").unwrap();
        (
            r.status,
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
        )
    };
    assert_eq!(list("", None).0, 401);
    let (status, all) = list("", Some("write-token"));
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap();
    // Newest first; the unauthenticated attempt is not in the trail.
    assert_eq!(all.len(), 2, "{all:#?}");
    let (done, refused) = (&all[0], &all[1]);
    assert_eq!(done["status"], 200);
    assert_eq!(done["result"], "ok");
    assert_eq!(done["old_value"], 55.0);
    assert_eq!(done["new_value"], 60.5);
    assert_eq!(done["by"], "李工");
    assert_eq!(
        (done["site"].as_str(), done["device"].as_str()),
        (Some("s"), Some("HX-1"))
    );
    assert!(
        done["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{done}"
    );
    assert_eq!(refused["status"], 422);
    assert_eq!(refused["new_value"], -1e30);
    assert!(refused["result"]
        .as_str()
        .unwrap()
        .contains("outside the allowed range"));
    let (_, one) = list("?device=HX-1&limit=1", Some("write-token"));
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["status"], 200);
    let (_, none) = list("?device=HX-2", Some("write-token"));
    assert_eq!(none, serde_json::json!([]));
    assert_eq!(list("?limit=0", Some("write-token")).0, 400);
    gw.terminate();
    sim.terminate();
}
