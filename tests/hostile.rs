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
    let mut w = FieldWriter::default();
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

    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let cfg = http_only_config(dir.path(), port, "header_timeout = \"6s\"\n");
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
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // Let the gateway accept them all (or fail to).
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(crate::support::http_get(&format!(
            "http://127.0.0.1:{port}/healthz"
        )));
    });
    let answer = rx.recv_timeout(Duration::from_secs(3));
    assert!(
        opened.elapsed() < Duration::from_secs(6),
        "the machine is too slow for this test's timing"
    );
    match answer {
        Ok(Ok(r)) => assert_eq!((r.status, r.text().as_str()), (200, "ok")),
        other => panic!(
            "/healthz did not answer within 3 s with 2,000 idle connections open: {other:?}\n{}",
            gw.log()
        ),
    }
    assert!(asked.elapsed() < Duration::from_secs(3));
    assert!(
        gw.log().contains("File-descriptor limit raised."),
        "{}",
        gw.log()
    );

    // The idle connections are closed by the gateway after `header_timeout`.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 16];
    let t = Instant::now();
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an idle connection got data");
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "an idle connection stayed open {:?}",
        t.elapsed()
    );
}
