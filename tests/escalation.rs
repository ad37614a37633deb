//! Escalation of unanswered alarms (issue 14) end to end: a real mosquitto, the gateway started
//! in-process on an injected clock that the test advances (no waiting out minutes), and real
//! webhook receivers (a local HTTP server recording every request).
//!
//! The chain of the entrapment class: (1) unacknowledged after 60 s → the duty manager's robot
//! (text); (2) unacknowledged after 5 min → the duty manager again; (3) nobody on site after
//! 15 min → the company's robot (JSON); (4) nobody on site after 25 min → an MQTT topic. The
//! alarm is acknowledged at 2 min, so step 2 never fires and steps 3 and 4 do. Each fired step
//! is in the journal and on the alarm (`/api/alarms/{id}`), and a restart between steps 3 and
//! 4 sends none of the fired steps again.
//!
//! That a tick at a given clock value has run is read from the journal: the core stage records
//! that it is alive (`runs.alive_ms`) at the end of a tick, after the tick's escalations were
//! journaled and handed to their sinks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use estate_gateway::clock::Clock;
use estate_gateway::journal::Journal;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::fixture::{Api, API_TOKEN, WAIT};
use crate::support::{wait_until, Mosquitto, MqttClient};

/// 2026-12-01 00:00:00 +08:00.
const T0: i64 = 1_796_054_400_000;
const MIN: i64 = 60_000;
const TOPIC: &str = "estate/escalations";

/// The gateway's clock: set by the test.
#[derive(Debug)]
struct TestClock(AtomicI64);

impl TestClock {
    fn set(&self, ms: i64) {
        self.0.store(ms, SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(SeqCst)
    }
}

/// The requests a receiver got: (path, JSON body).
type Requests = Arc<Mutex<Vec<(String, Value)>>>;

/// A robot-like receiver on `/duty` and `/company`: records each request, answers
/// `{"errcode":0}`. Returns its base URL.
fn receiver(rt: &tokio::runtime::Runtime) -> (String, Requests) {
    use axum::routing::post;
    let got: Requests = Arc::default();
    let record = |path: &'static str| {
        let got = got.clone();
        post(move |body: axum::Json<Value>| {
            let got = got.clone();
            async move {
                got.lock().unwrap().push((path.to_owned(), body.0));
                r#"{"errcode":0,"errmsg":"ok"}"#
            }
        })
    };
    let app = axum::Router::new()
        .route("/duty", record("/duty"))
        .route("/company", record("/company"));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    (base, got)
}

fn config(dir: &Path, mqtt_url: &str, hooks: &str) -> String {
    format!(
        r#"
[gateway]
site = "huafu"
data_dir = {data:?}

[mqtt]
url = "{mqtt_url}"
client_id = "gw-esc"
reconnect_min = "100ms"
reconnect_max = "1s"

[http]
listen = "127.0.0.1:0"
api_token_file = {token:?}

[alarms.webhooks.duty_manager]
url = "{hooks}/duty?key=secret"
format = "text"
retry_max = "100ms"

[alarms.webhooks.company]
url = "{hooks}/company"
format = "json"
retry_max = "100ms"

[[alarms.classes.entrapment.escalation]]
after = "60s"
notify = "webhook:duty_manager"
message = "{{name}}（{{building}}）困人已 {{elapsed}} 未确认 · {{alarm}}"

[[alarms.classes.entrapment.escalation]]
after = "5m"
until = "ack"
notify = "webhook:duty_manager"

[[alarms.classes.entrapment.escalation]]
after = "15m"
until = "on_site"
notify = "webhook:company"
message = "{{name}}困人已 {{elapsed}} 无人到场"

[[alarms.classes.entrapment.escalation]]
after = "25m"
until = "on_site"
notify = "mqtt:{TOPIC}"

[[devices]]
id = "E-1"
name = "1号楼客梯"
building = "1号楼"
category = "elevator"
heartbeat_timeout = "2h"
"#,
        data = dir.join("data").to_str().unwrap(),
        token = dir.join("token").to_str().unwrap(),
    )
}

/// A gateway running in-process on `clock`.
struct Gateway {
    running: Option<estate_gateway::run::Running>,
    shutdown: CancellationToken,
    api: Api,
}

fn start(
    rt: &tokio::runtime::Runtime,
    cfg: &estate_gateway::config::Config,
    clock: &Arc<TestClock>,
    mqtt: &Mosquitto,
) -> Gateway {
    let shutdown = CancellationToken::new();
    let running = rt
        .block_on(estate_gateway::run::start_with_clock(
            cfg,
            shutdown.clone(),
            clock.clone() as Arc<dyn Clock>,
        ))
        .unwrap();
    let addr = running.http_addr.expect("[http] is configured");
    assert!(
        mqtt.wait_for_subscription(Some("gw-esc"), "estate/huafu/+/+/status", WAIT),
        "the gateway did not subscribe:\n{}",
        mqtt.log()
    );
    Gateway {
        running: Some(running),
        shutdown,
        api: Api {
            base: format!("http://{addr}"),
        },
    }
}

impl Gateway {
    fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            rt.block_on(async { tokio::time::timeout(WAIT, r.wait()).await })
                .expect("the gateway stops");
        }
    }
}

/// Waits until the core stage has run a tick at clock value `t` or later (see the module docs).
fn wait_tick(journal: &Path, t: i64) {
    let alive = || -> rusqlite::Result<i64> {
        let conn = rusqlite::Connection::open_with_flags(
            journal,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        conn.query_row(
            "SELECT alive_ms FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
    };
    let ticked = wait_until(WAIT, Duration::from_millis(20), || {
        alive().is_ok_and(|a| a >= t)
    });
    assert!(ticked, "no tick at {t} within {WAIT:?}");
}

fn journaled(journal: &Path, id: &str) -> Vec<(u32, i64, String, String)> {
    Journal::open_read_only(journal)
        .unwrap()
        .escalations_of(id)
        .unwrap()
        .into_iter()
        .map(|e| (e.step, e.ts_ms, e.notify.to_string(), e.message))
        .collect()
}

fn requests(got: &Requests, path: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b.clone())
        .collect()
}

fn steps(alarm: &Value) -> Vec<u64> {
    alarm["escalations"]
        .as_array()
        .expect("escalations")
        .iter()
        .map(|e| e["step"].as_u64().expect("step"))
        .collect()
}

#[test]
fn an_unanswered_entrapment_escalates_step_by_step_once_across_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mqtt = Mosquitto::start();
    let (hooks, got) = receiver(&rt);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{API_TOKEN}\n")).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(dir.path(), &mqtt.url(), &hooks)).unwrap();
    let cfg = estate_gateway::config::load_with_env(&path, Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let journal: PathBuf = dir.path().join("data").join("journal.sqlite");
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let mut gw = start(&rt, &cfg, &clock, &mqtt);
    let watcher = MqttClient::connect(mqtt.port());
    watcher.subscribe(TOPIC, 1);

    // 00:00 someone is trapped.
    let reading = json!({"ts": T0, "mode": "normal", "fault_code": 0, "entrapment": true});
    mqtt.publish(
        "estate/huafu/elevator/E-1/telemetry",
        reading.to_string().as_bytes(),
        1,
    );
    let mut id = String::new();
    let raised = wait_until(WAIT, Duration::from_millis(20), || {
        let list = gw.api.json("/api/alarms?active=true");
        match list.as_array().and_then(|l| l.first()) {
            Some(a) => {
                id = a["id"].as_str().unwrap().to_owned();
                true
            }
            None => false,
        }
    });
    assert!(raised, "no alarm raised");
    let alarm = gw.api.json(&Api::alarm_path(&id, ""));
    assert_eq!(
        (&alarm["rule"], &alarm["raised_ts"]),
        (&json!("entrapment"), &json!(T0))
    );
    assert_eq!(alarm["escalations"], json!([]));

    // 00:55 not yet due: nothing decided, nothing sent.
    clock.set(T0 + 55_000);
    wait_tick(&journal, T0 + 55_000);
    assert!(journaled(&journal, &id).is_empty());
    assert!(got.lock().unwrap().is_empty());

    // 01:00 unacknowledged for 60 s: the duty manager's robot gets the rendered text once.
    clock.set(T0 + MIN);
    wait_tick(&journal, T0 + MIN);
    let text = "1号楼客梯（1号楼）困人已 1 分钟 未确认 · huafu-1";
    assert_eq!(
        journaled(&journal, &id),
        [(
            1,
            T0 + MIN,
            "webhook:duty_manager".to_owned(),
            text.to_owned()
        )]
    );
    assert!(wait_until(WAIT, Duration::from_millis(20), || {
        !requests(&got, "/duty").is_empty()
    }));
    assert_eq!(
        requests(&got, "/duty"),
        [json!({"msgtype": "text", "text": {"content": text}})]
    );
    let alarm = gw.api.json(&Api::alarm_path(&id, ""));
    assert_eq!(
        alarm["escalations"],
        json!([{"step": 1, "ts": T0 + MIN, "due_ts": T0 + MIN, "until": "ack",
                "notify": "webhook:duty_manager", "message": text}])
    );

    // 02:00 acknowledged: step 2 (unacknowledged after 5 min) never fires.
    clock.set(T0 + 2 * MIN);
    let ack = gw.api.send(
        "POST",
        &Api::alarm_path(&id, "/ack"),
        Some(r#"{"by": "张伟"}"#),
    );
    assert_eq!(ack.status, 200, "{}", ack.text());
    assert_eq!(steps(&serde_json::from_slice(&ack.body).unwrap()), [1]);
    clock.set(T0 + 5 * MIN);
    wait_tick(&journal, T0 + 5 * MIN);
    assert_eq!(journaled(&journal, &id).len(), 1);

    // 15:00 acknowledged but nobody on site: the company's robot gets the alarm event as JSON.
    clock.set(T0 + 15 * MIN);
    wait_tick(&journal, T0 + 15 * MIN);
    assert!(wait_until(WAIT, Duration::from_millis(20), || {
        !requests(&got, "/company").is_empty()
    }));
    let company = requests(&got, "/company");
    assert_eq!(company.len(), 1, "{company:?}");
    let c = &company[0];
    assert_eq!(
        (&c["type"], &c["event"], &c["id"], &c["ts"]),
        (
            &json!("alarm"),
            &json!("escalated"),
            &json!(id),
            &json!(T0 + 15 * MIN)
        )
    );
    assert_eq!(c["acknowledged"], json!({"ts": T0 + 2 * MIN, "by": "张伟"}));
    assert_eq!(
        c["escalation"],
        json!({"step": 3, "ts": T0 + 15 * MIN, "due_ts": T0 + 15 * MIN, "until": "on_site",
               "notify": "webhook:company", "message": "1号楼客梯困人已 15 分钟 无人到场"})
    );
    assert_eq!(steps(c), [1, 3]);
    let fired: Vec<u32> = journaled(&journal, &id).iter().map(|e| e.0).collect();
    assert_eq!(fired, [1, 3]);
    assert_eq!(requests(&got, "/duty").len(), 1);

    // A restart at 20:00: the alarm comes back with its steps; none is sent again.
    gw.stop(&rt);
    clock.set(T0 + 20 * MIN);
    let mut gw = start(&rt, &cfg, &clock, &mqtt);
    wait_tick(&journal, T0 + 20 * MIN);
    let alarm = gw.api.json(&Api::alarm_path(&id, ""));
    assert_eq!(steps(&alarm), [1, 3]);
    assert_eq!(alarm["escalations"][1]["ts"], json!(T0 + 15 * MIN));

    // 25:00 still nobody on site: step 4 goes to the MQTT topic — and only step 4 was sent
    // by the new run.
    clock.set(T0 + 25 * MIN);
    wait_tick(&journal, T0 + 25 * MIN);
    let m = watcher
        .wait_for(WAIT, |m| m.topic == TOPIC)
        .expect("step 4 on MQTT");
    let v = m.json();
    assert_eq!(
        (
            &v["event"],
            &v["escalation"]["step"],
            &v["escalation"]["notify"]
        ),
        (
            &json!("escalated"),
            &json!(4),
            &json!(format!("mqtt:{TOPIC}"))
        )
    );
    assert!(
        v["escalation"]["message"]
            .as_str()
            .unwrap()
            .contains("已 25 分钟 未到场"),
        "{v}"
    );
    let alarm = gw.api.json(&Api::alarm_path(&id, ""));
    assert_eq!(steps(&alarm), [1, 3, 4]);
    let fired: Vec<u32> = journaled(&journal, &id).iter().map(|e| e.0).collect();
    assert_eq!(fired, [1, 3, 4]);
    assert_eq!(requests(&got, "/duty").len(), 1);
    assert_eq!(requests(&got, "/company").len(), 1);
    assert_eq!(watcher.on(TOPIC).len(), 1);
    gw.stop(&rt);
}
