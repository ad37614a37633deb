//! The webhook sink: POSTs alarm events of chosen severities (default: critical) to a URL —
//! an on-call system (`format = "json"`: the alarm event as on MQTT) or a WeCom (企业微信) or
//! DingTalk (钉钉) group robot (`format = "text"`: `{"msgtype":"text","text":{"content":…}}`,
//! which both accept). Raised and cleared events are sent; acknowledgments are not (the
//! group sees them in the control room).
//!
//! The same sink serves each named escalation target (`[alarms.webhooks.<name>]`, no
//! severities): it gets only the escalation steps that name it (the core stage routes them)
//! and sends each as the target's format — the alarm event `escalated` (JSON) or the step's
//! rendered message as the robot's text.
//!
//! Deliveries are in order, one at a time, each retried with exponential backoff (1 s, or
//! `retry_max` if shorter, doubling up to `retry_max`) up to `retries` times on a connection error, a non-2xx answer or a robot's
//! non-zero `errcode` (its rate limit); then given up, counted (`webhook_failed`) and logged.
//! Events arriving meanwhile wait in the channel; when it is full the core stage drops and
//! counts them (`events_dropped`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{WebhookFormat, WebhookSettings};
use crate::model::event::{AlarmEvent, AlarmEventKind, Event};
use crate::model::Inventory;
use crate::stats::Stats;

/// Events waiting for delivery.
pub const CAPACITY: usize = 1024;

/// Starts the sink; it runs until `events` closes (what is still queued then is not sent).
pub fn spawn(
    settings: WebhookSettings,
    tz: TimeZone,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    mut events: mpsc::Receiver<Arc<Event>>,
) -> anyhow::Result<JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .user_agent(concat!("estate-gateway/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Escalation(x) = &*e {
                let body = match settings.format {
                    WebhookFormat::Json => crate::encode::json::escalation_event(&inventory, x),
                    WebhookFormat::Text => json!({
                        "msgtype": "text",
                        "text": {"content": x.escalation.message},
                    }),
                };
                if deliver(&client, &settings, &body).await {
                    stats.core.webhook_sent.fetch_add(1, Relaxed);
                } else {
                    stats.core.webhook_failed.fetch_add(1, Relaxed);
                    error!(alarm = %x.alarm.id, step = x.escalation.step, notify = %x.escalation.notify,
                           retries = settings.retries,
                           "Escalation delivery failed after all retries; it is in the journal and on the alarm.");
                }
                continue;
            }
            let Event::Alarm(a) = &*e else { continue };
            if !matches!(a.kind, AlarmEventKind::Raised | AlarmEventKind::Cleared)
                || !settings.severities.contains(&a.alarm.severity)
            {
                continue;
            }
            let body = match settings.format {
                WebhookFormat::Json => crate::encode::json::alarm_event(&inventory, a),
                WebhookFormat::Text => json!({
                    "msgtype": "text",
                    "text": {"content": text(&inventory, a, &tz)},
                }),
            };
            if deliver(&client, &settings, &body).await {
                stats.core.webhook_sent.fetch_add(1, Relaxed);
            } else {
                stats.core.webhook_failed.fetch_add(1, Relaxed);
                error!(alarm = %a.alarm.id, event = a.kind.as_str(), retries = settings.retries,
                       "Webhook delivery failed after all retries; the alarm is in the journal, the store and on MQTT.");
            }
        }
        info!("Webhook sink stopped.");
    }))
}

/// One delivery with retries; true when the receiver accepted it.
async fn deliver(client: &reqwest::Client, s: &WebhookSettings, body: &serde_json::Value) -> bool {
    let mut delay = Duration::from_secs(1).min(s.retry_max);
    for attempt in 0..=s.retries {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(s.retry_max);
        }
        let res = client.post(s.url.expose()).json(body).send().await;
        let problem = match res {
            // Without the URL: a robot's key is in its query.
            Err(e) => format!("{}", e.without_url()),
            Ok(r) if !r.status().is_success() => format!("HTTP {}", r.status()),
            Ok(r) => match r.json::<serde_json::Value>().await {
                // WeCom and DingTalk answer 200 with {"errcode": 0} on success.
                Ok(v)
                    if v.get("errcode")
                        .and_then(|c| c.as_i64())
                        .is_some_and(|c| c != 0) =>
                {
                    format!("robot answered {v}")
                }
                _ => return true,
            },
        };
        warn!(
            attempt = attempt + 1,
            problem, "Webhook delivery failed; retrying."
        );
    }
    false
}

/// The robot message: severity, message, device, time in the site's zone, alarm id.
fn text(inv: &Inventory, a: &AlarmEvent, tz: &TimeZone) -> String {
    let d = inv.get(a.alarm.device);
    let when = jiff::Timestamp::from_millisecond(a.ts_ms)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let level = match a.alarm.severity {
        crate::model::rules::Severity::Critical => "紧急",
        crate::model::rules::Severity::Major => "重要",
        crate::model::rules::Severity::Minor => "一般",
    };
    let head = match (a.kind, a.alarm.cleared_ms) {
        (AlarmEventKind::Cleared, _) => format!("【已恢复】{}", a.alarm.message),
        // Raised and cleared inside a backlog (e.g. after an outage): history, not a new alarm.
        (AlarmEventKind::Raised, Some(c)) => {
            let at = jiff::Timestamp::from_millisecond(c)
                .map(|t| t.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string())
                .unwrap_or_default();
            format!("【补录·{level}告警，已于{at}恢复】{}", a.alarm.message)
        }
        _ => format!("【{level}告警】{}", a.alarm.message),
    };
    let mut s = format!(
        "{head}\n设备：{}（{}）{}\n时间：{when}\n告警号：{}",
        d.name, d.id, d.building, a.alarm.id
    );
    if let Some(r) = a.alarm.restore_s() {
        if a.kind == AlarmEventKind::Cleared {
            s.push_str(&format!("\n持续：{r:.0} 秒"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Alarm;
    use crate::model::rules::Severity;
    use std::sync::Mutex;

    /// A receiver that answers 500 to the first `fail` requests, then 200 with `answer`.
    async fn receiver(
        fail: usize,
        answer: &'static str,
    ) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        use axum::routing::post;
        let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: axum::Json<serde_json::Value>| {
                let seen = seen.clone();
                async move {
                    let n = {
                        let mut v = seen.lock().unwrap();
                        v.push(body.0);
                        v.len()
                    };
                    if n <= fail {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "busy")
                    } else {
                        (axum::http::StatusCode::OK, answer)
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?key=secret", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, got)
    }

    fn inventory() -> Arc<Inventory> {
        let p = Arc::new(crate::model::Profile::new(
            "elevator".into(),
            "电梯".into(),
            Duration::from_secs(10),
            vec![],
        ));
        Arc::new(Inventory::new(vec![crate::model::Device {
            id: "E-1".into(),
            name: "1号楼客梯".into(),
            site: "huafu".into(),
            building: "1号楼".into(),
            category: "elevator".into(),
            profile: p,
            interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            polled: false,
            rules: Default::default(),
        }]))
    }

    fn event(kind: AlarmEventKind, severity: Severity) -> Arc<Event> {
        Arc::new(Event::Alarm(AlarmEvent {
            kind,
            ts_ms: 1_796_054_400_000,
            by: String::new(),
            alarm: Alarm {
                id: "huafu-7".into(),
                device: 0,
                rule: "entrapment".into(),
                severity,
                class: "entrapment".into(),
                message: "1号楼客梯困人，请立即救援".into(),
                raised_ms: 1_796_054_400_000,
                acknowledged: None,
                on_site: None,
                cleared_ms: None,
                ack_target_ms: 180_000,
                on_site_target_ms: None,
                repair_target_ms: None,
                escalations: Vec::new(),
            },
        }))
    }

    fn settings(url: String, format: WebhookFormat) -> WebhookSettings {
        WebhookSettings {
            url: crate::config::SecretUrl::new(url),
            format,
            severities: vec![Severity::Critical],
            timeout: Duration::from_secs(5),
            retries: 3,
            retry_max: Duration::from_millis(20),
        }
    }

    /// Two failures, then accepted: the robot gets the same text three times and the
    /// delivery counts once; acknowledgments and major alarms are not sent.
    #[tokio::test]
    async fn critical_alarms_reach_a_robot_with_retries() {
        let (url, got) = receiver(2, r#"{"errcode":0,"errmsg":"ok"}"#).await;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(16);
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let task = spawn(
            settings(url, WebhookFormat::Text),
            tz,
            inventory(),
            stats.clone(),
            rx,
        )
        .unwrap();
        tx.send(event(AlarmEventKind::Acknowledged, Severity::Critical))
            .await
            .unwrap();
        tx.send(event(AlarmEventKind::Raised, Severity::Major))
            .await
            .unwrap();
        tx.send(event(AlarmEventKind::Raised, Severity::Critical))
            .await
            .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|g| g == &got[0]));
        assert_eq!(got[0]["msgtype"], "text");
        let text = got[0]["text"]["content"].as_str().unwrap();
        assert_eq!(
            text,
            "【紧急告警】1号楼客梯困人，请立即救援\n设备：1号楼客梯（E-1）1号楼\n时间：2026-12-01 00:00:00\n告警号：huafu-7"
        );
        assert_eq!(stats.core.webhook_sent.load(Relaxed), 1);
        assert_eq!(stats.core.webhook_failed.load(Relaxed), 0);
    }

    /// A robot that keeps answering a non-zero errcode (its rate limit): given up after the
    /// retries, counted as failed. JSON format carries the alarm event.
    #[tokio::test]
    async fn a_refusing_robot_is_retried_then_counted_failed() {
        let (url, got) = receiver(0, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#).await;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(16);
        let task = spawn(
            settings(url, WebhookFormat::Json),
            TimeZone::UTC,
            inventory(),
            stats.clone(),
            rx,
        )
        .unwrap();
        tx.send(event(AlarmEventKind::Raised, Severity::Critical))
            .await
            .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 4, "1 + 3 retries");
        assert_eq!(got[0]["type"], "alarm");
        assert_eq!(got[0]["event"], "raised");
        assert_eq!(got[0]["id"], "huafu-7");
        assert_eq!(stats.core.webhook_sent.load(Relaxed), 0);
        assert_eq!(stats.core.webhook_failed.load(Relaxed), 1);
    }
}
