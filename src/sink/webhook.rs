//! The webhook sink: POSTs alarm events of chosen severities (default: critical) to a URL —
//! an on-call system (`format = "json"`: the alarm event as on MQTT) or a WeCom (企业微信) or
//! DingTalk (钉钉) group robot (`format = "text"`: `{"msgtype":"text","text":{"content":…}}`,
//! which both accept). Raised and cleared events are sent; acknowledgments are not (the
//! group sees them in the control room).
//!
//! Deliveries are in order, one at a time, each retried with exponential backoff (1 s doubling
//! up to `retry_max`) up to `retries` times on a connection error, a non-2xx answer or a robot's
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
use crate::core::{AlarmEvent, AlarmEventKind, Event};
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
            let Event::Alarm(a) = &*e else { continue };
            if !matches!(a.kind, AlarmEventKind::Raised | AlarmEventKind::Cleared)
                || !settings.severities.contains(&a.alarm.severity)
            {
                continue;
            }
            let body = match settings.format {
                WebhookFormat::Json => crate::sink::json::alarm_event(&inventory, a),
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
    let mut delay = Duration::from_secs(1);
    for attempt in 0..=s.retries {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(s.retry_max);
        }
        let res = client.post(&s.url).json(body).send().await;
        let problem = match res {
            Err(e) => format!("{e}"),
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
        crate::core::Severity::Critical => "紧急",
        crate::core::Severity::Major => "重要",
        crate::core::Severity::Minor => "一般",
    };
    let head = match a.kind {
        AlarmEventKind::Cleared => format!("【已恢复】{}", a.alarm.message),
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
