//! Smoke tests of the test harness itself (no gateway involved): the real broker delivers and
//! persists, the recording proxy records and forwards exactly, VictoriaMetrics stores exactly
//! what was written, and injected failures behave as documented. If these fail, every other
//! integration test's verdict is suspect.

use crate::support::{
    http_get, http_post, parse_line, parse_lines, total_samples, Disposition, FieldVal, Mosquitto,
    RecordingProxy, VictoriaMetrics,
};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("gzip write");
    enc.finish().expect("gzip finish")
}

#[test]
fn mosquitto_delivers_and_keeps_queued_qos1_across_restart() {
    let mut mq = Mosquitto::start();
    assert_eq!(mq.url(), format!("mqtt://127.0.0.1:{}", mq.port()));

    // Live delivery to the raw client.
    let sub = mq
        .sub_command()
        .args([
            "-i",
            "smoke-live",
            "-t",
            "smoke/live",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub");
    assert!(
        mq.wait_for_subscription(Some("smoke-live"), "smoke/live", WAIT),
        "subscriber never subscribed:\n{}",
        mq.log()
    );
    mq.publish("smoke/live", "hello 中文".as_bytes(), 1);
    let out = sub.wait_with_output().expect("wait for mosquitto_sub");
    assert!(
        out.status.success(),
        "mosquitto_sub failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello 中文\n");

    // Binary and large payloads, topics with spaces, and line mode, through the subscriber helper.
    let bin_sub = mq.subscribe("smoke/bin/#", 1);
    let payload: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    mq.publish("smoke/bin/a b", &payload, 1);
    mq.publish("smoke/bin/empty", b"", 0);
    mq.publish_lines("smoke/bin/lines", &["one", "two", "three"], 1);
    let msgs = bin_sub.wait_for_messages(5, WAIT);
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    assert_eq!(msgs[0].topic, "smoke/bin/a b");
    assert_eq!(msgs[0].payload, payload);
    assert_eq!(msgs[0].qos, 1);
    assert!(!msgs[0].retain);
    assert_eq!(msgs[1].topic, "smoke/bin/empty");
    assert!(msgs[1].payload.is_empty());
    assert_eq!(msgs[1].qos, 0);
    let texts: Vec<String> = msgs[2..].iter().map(|m| m.text()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    drop(bin_sub);

    // A persistent session (clean session off) subscribes at QoS 1, then goes offline.
    let status = mq
        .sub_command()
        .args(["-c", "-i", "fixedid", "-q", "1", "-t", "smoke/queued", "-E"])
        .status()
        .expect("run mosquitto_sub -E");
    assert!(status.success(), "mosquitto_sub -E failed: {status}");
    assert!(
        mq.wait_for_log("Client fixedid disconnected", WAIT),
        "persistent subscriber did not disconnect:\n{}",
        mq.log()
    );
    mq.publish("smoke/queued", b"queued while offline", 1);

    // The queued message survives a broker restart on the same port.
    let port = mq.port();
    mq.restart();
    assert_eq!(mq.port(), port);
    assert!(mq.is_running());
    let out = mq
        .sub_command()
        .args([
            "-c",
            "-i",
            "fixedid",
            "-q",
            "1",
            "-t",
            "smoke/queued",
            "-C",
            "1",
            "-W",
            "5",
        ])
        .output()
        .expect("run mosquitto_sub");
    assert!(
        out.status.success(),
        "queued message not delivered after restart ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        mq.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "queued while offline\n"
    );

    // Stopped means stopped: the port refuses connections.
    mq.stop();
    assert!(!mq.is_running());
    assert!(!crate::support::tcp_connects(port));
}

#[test]
fn proxy_records_gzip_write_and_victoria_stores_it_exactly() {
    let mut vm = VictoriaMetrics::start();
    let proxy = RecordingProxy::start(Some(vm.url()));

    let site = "Block A, Tower 1 = 东区";
    let escaped = r"Block\ A\,\ Tower\ 1\ \=\ 东区";
    let line1 =
        format!("telemetry,site={escaped},device=meter-1 temp=21.5,state=\"ok\" 1700000000000");
    let line2 = format!("telemetry,site={escaped},device=meter-2 temp=-3.25 1700000000500");
    let body = format!("{line1}\n{line2}\n");
    let gz = gzip(body.as_bytes());

    let url = format!(
        "{}/api/v2/write?org=estate&bucket=telemetry&precision=ms",
        proxy.url()
    );
    let resp = http_post(
        &url,
        &[
            ("Content-Encoding", "gzip"),
            ("Authorization", "Token smoke-token"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ],
        &gz,
    )
    .expect("POST to proxy");
    assert_eq!(resp.status, 204, "{}", resp.text());

    // What the proxy recorded.
    let reqs = proxy.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.disposition, Disposition::Accepted);
    assert_eq!(req.status, 204);
    assert_eq!(req.query, "org=estate&bucket=telemetry&precision=ms");
    assert_eq!(req.param("precision").as_deref(), Some("ms"));
    assert_eq!(req.param("bucket").as_deref(), Some("telemetry"));
    assert_eq!(req.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(req.authorization.as_deref(), Some("Token smoke-token"));
    assert_eq!(req.raw_body, gz);
    assert_eq!(req.body_text(), body);
    assert_eq!(proxy.lines(), [line1.clone(), line2.clone()]);
    assert_eq!(proxy.wait_for_lines(2, WAIT).len(), 2);

    // The parser unescapes exactly.
    let p1 = parse_line(&line1);
    assert_eq!(p1.measurement, "telemetry");
    assert_eq!(p1.tag("site"), site);
    assert_eq!(p1.tag("device"), "meter-1");
    assert_eq!(p1.field("temp"), &FieldVal::F64(21.5));
    assert_eq!(p1.field("state"), &FieldVal::Str("ok".into()));
    assert_eq!(p1.timestamp, Some(1_700_000_000_000));
    assert_eq!(parse_lines(&body).len(), 2);

    // What VictoriaMetrics stored: one series per field, exact tags and timestamps.
    let selector = format!(r#"telemetry_temp{{site="{site}"}}"#);
    let series = vm.wait_for_samples(&selector, 2, WAIT);
    assert_eq!(total_samples(&series), 2, "{series:?}");
    let by_device = |d: &str| {
        series
            .iter()
            .find(|s| s.label("device") == Some(d))
            .unwrap_or_else(|| panic!("no series for {d}: {series:?}"))
            .clone()
    };
    let m1 = by_device("meter-1");
    assert_eq!(m1.name(), "telemetry_temp");
    assert_eq!(m1.label("site"), Some(site));
    assert_eq!(m1.samples(), [(1_700_000_000_000, 21.5)]);
    assert_eq!(by_device("meter-2").samples(), [(1_700_000_000_500, -3.25)]);
    // String fields are stored as 0.
    let state = vm.export("telemetry_state");
    assert_eq!(state.len(), 1, "{state:?}");
    assert_eq!(state[0].samples(), [(1_700_000_000_000, 0.0)]);

    // Store down: the proxy answers 502 and records it as not stored.
    vm.stop();
    let resp = http_post(&url, &[], line2.as_bytes()).expect("POST to proxy");
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(proxy.requests()[1].disposition, Disposition::UpstreamError);
    assert_eq!(proxy.lines().len(), 2);

    // Store back on the same port, with its data.
    vm.start_again();
    let series = vm.export("telemetry_temp");
    assert_eq!(total_samples(&series), 2, "{series:?}");
}

#[test]
fn proxy_injected_failures_answer_then_heal() {
    let proxy = RecordingProxy::start(None);
    let url = format!("{}/api/v2/write?org=o&bucket=b&precision=ms", proxy.url());

    proxy.fail_with(503, Some(1));
    let first = http_post(&url, &[], b"m v=1 1").expect("first POST");
    assert_eq!(first.status, 503);
    assert!(first.text().contains("unavailable"), "{}", first.text());
    let second = http_post(&url, &[], b"m v=2 2").expect("second POST");
    assert_eq!(second.status, 204, "{}", second.text());
    assert_eq!(proxy.rejected_count(), 1);
    assert_eq!(proxy.lines(), ["m v=2 2"]);
    let dispositions: Vec<Disposition> = proxy.requests().iter().map(|r| r.disposition).collect();
    assert_eq!(
        dispositions,
        [Disposition::InjectedFailure, Disposition::Accepted]
    );

    // Failing for good until healed; health follows.
    proxy.fail_with(500, None);
    for _ in 0..3 {
        assert_eq!(http_post(&url, &[], b"m v=3 3").expect("POST").status, 500);
    }
    assert_eq!(
        http_get(&format!("{}/health", proxy.url()))
            .expect("health")
            .status,
        503
    );
    proxy.heal();
    assert_eq!(
        http_get(&format!("{}/health", proxy.url()))
            .expect("health")
            .status,
        200
    );
    assert_eq!(http_post(&url, &[], b"m v=4 4").expect("POST").status, 204);
    assert_eq!(proxy.rejected_count(), 4);
    assert_eq!(proxy.lines(), ["m v=2 2", "m v=4 4"]);

    // Broken gzip is a 400 and not stored; unknown paths are 404 and listed.
    let bad = http_post(&url, &[("Content-Encoding", "gzip")], b"not gzip").expect("POST");
    assert_eq!(bad.status, 400);
    assert_eq!(
        proxy.requests().last().map(|r| r.disposition),
        Some(Disposition::BadRequest)
    );
    assert_eq!(
        http_get(&format!("{}/api/v2/query", proxy.url()))
            .expect("GET")
            .status,
        404
    );
    assert_eq!(proxy.other_requests(), ["GET /api/v2/query"]);
}

#[test]
fn parse_line_unescapes_measurement_keys_and_strings() {
    let p = parse_line(r#"my\ meas\,x,tag\ key=v\=1 str="say \"hi\" \\ ok",n=-5i,u=7u,b=t"#);
    assert_eq!(p.measurement, "my meas,x");
    assert_eq!(p.tag("tag key"), "v=1");
    assert_eq!(p.field("str"), &FieldVal::Str(r#"say "hi" \ ok"#.into()));
    assert_eq!(p.field("n"), &FieldVal::I64(-5));
    assert_eq!(p.field("u"), &FieldVal::U64(7));
    assert_eq!(p.field("b"), &FieldVal::Bool(true));
    assert_eq!(p.timestamp, None);
}

#[test]
#[should_panic(expected = "does not parse")]
fn parse_line_panics_on_garbage() {
    parse_line("m,tag=v");
}

#[test]
#[should_panic(
    expected = "no-such-binary-xyz not found: run scripts/install-test-deps (apt-get install mosquitto mosquitto-clients victoria-metrics influxdb)"
)]
fn missing_binary_names_the_install_command() {
    crate::support::find_binary("no-such-binary-xyz");
}
