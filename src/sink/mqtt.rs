//! The MQTT event sink (DESIGN §6, "out"): alarm lifecycle events on
//! `estate/{site}/alarms/{category}/{device}` (QoS 1) and each device's current state,
//! retained, on `estate/{site}/state/{category}/{device}` (QoS 1), so a control-room client
//! that connects later sees every state at once. Escalation steps with an `mqtt:<topic>` target
//! go to their topic (QoS 1, not retained) as the alarm event `escalated`.
//!
//! It uses its own connection (client id `<mqtt.client_id>-events`, clean session): the
//! source's persistent session stays a pure subscriber, and a slow publish never delays
//! acknowledgments of incoming readings. While the broker is unreachable, events queue in
//! rumqttc and then in this sink's channel; when both are full the core stage drops and counts
//! (`events_dropped`) — the journal and the store still have every event.
//!
//! The same connection publishes the gateway's summaries (README "Fleet"), retained, QoS 1:
//! the live figures on `mqtt.kpi_topic` and each scorecard on `mqtt.assessment_topic`; the
//! KPI task hands them over with `try_send` on their own small channel (full: dropped and
//! counted, the next interval brings fresh figures). `publish_once` is `report --publish`'s
//! one-shot connection.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::MqttSettings;
use crate::model::escalation::Target;
use crate::model::event::Event;
use crate::model::Inventory;
use crate::mqtt::link::{self, Client, Link, LinkEvent};
use crate::mqtt::topic::TopicPattern;
use crate::stats::Stats;

/// Events waiting for the publisher.
pub const CAPACITY: usize = 4096;

/// How long shutdown waits for outstanding publishes to be acknowledged by the broker.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

/// Summaries waiting for the publisher (one a `kpi_interval` plus a scorecard a month).
pub const SUMMARY_CAPACITY: usize = 16;

/// A retained summary message: the topic and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Where alarm and state events go.
#[derive(Debug, Clone)]
pub struct EventTopics {
    pub alarm: TopicPattern,
    pub state: TopicPattern,
}

/// Starts the publisher; it runs until `events` closes, then flushes and disconnects.
pub fn spawn(
    settings: &MqttSettings,
    topics: EventTopics,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    events: mpsc::Receiver<Arc<Event>>,
    summaries: mpsc::Receiver<Summary>,
) -> JoinHandle<()> {
    let id = format!("{}-events", settings.client_id);
    let (client, eventloop) = link::connect(settings, &id, false, 1024);
    let conn = tokio::spawn(connection(
        eventloop,
        Backoff::new(settings.reconnect_min, settings.reconnect_max),
        stats.clone(),
    ));
    tokio::spawn(publish_loop(
        client, conn, topics, inventory, stats, events, summaries,
    ))
}

/// `report --publish`: connects (client id `<mqtt.client_id>-report`, clean session),
/// publishes `summary` retained with QoS 1, waits for the broker's PUBACK and disconnects.
pub async fn publish_once(
    settings: &MqttSettings,
    summary: Summary,
    timeout: Duration,
) -> anyhow::Result<()> {
    let id = format!("{}-report", settings.client_id);
    let (client, mut eventloop) = link::connect(settings, &id, false, 8);
    if client
        .publish(summary.topic.clone(), true, summary.payload)
        .await
        .is_err()
    {
        anyhow::bail!(
            "the MQTT client stopped before publishing `{}`",
            summary.topic
        );
    }
    let work = async {
        loop {
            match eventloop.poll().await.map_err(|e| anyhow::anyhow!("{e}"))? {
                LinkEvent::PubAck if client.disconnect().await.is_err() => {
                    anyhow::bail!("the MQTT client stopped before disconnecting");
                }
                LinkEvent::Disconnected => return anyhow::Ok(()),
                _ => {}
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(|e| anyhow::anyhow!("{} ({}): {e:#}", settings.url, summary.topic)),
        Err(_) => anyhow::bail!(
            "the broker at {} did not acknowledge `{}` within {timeout:?}",
            settings.url,
            summary.topic
        ),
    }
}

async fn publish_loop(
    client: Client,
    conn: JoinHandle<()>,
    topics: EventTopics,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    mut events: mpsc::Receiver<Arc<Event>>,
    mut summaries: mpsc::Receiver<Summary>,
) {
    let mut summaries_open = true;
    loop {
        let e = tokio::select! {
            biased;
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
            s = summaries.recv(), if summaries_open => {
                match s {
                    Some(s) => {
                        if client.publish(s.topic, true, s.payload).await.is_err() {
                            break;
                        }
                        stats.core.mqtt_published.fetch_add(1, Relaxed);
                    }
                    None => summaries_open = false,
                }
                continue;
            }
        };
        let (topic, payload, retain) = match &*e {
            Event::Alarm(a) => {
                let d = inventory.get(a.alarm.device);
                (
                    topics.alarm.render(&d.site, &d.category, &d.id),
                    crate::encode::json::alarm_event(&inventory, a),
                    false,
                )
            }
            Event::State(s) => {
                let d = inventory.get(s.device);
                (
                    topics.state.render(&d.site, &d.category, &d.id),
                    crate::encode::json::state_change(&inventory, s),
                    true,
                )
            }
            // An escalation step whose target is an MQTT topic (the core stage sends only
            // those here): the alarm event `escalated`, not retained.
            Event::Escalation(x) => match &x.escalation.notify {
                Target::Mqtt(topic) => (
                    topic.clone(),
                    crate::encode::json::escalation_event(&inventory, x),
                    false,
                ),
                Target::Webhook(_) => continue,
            },
            Event::Maintenance(_) | Event::Compliance(_) | Event::Hourly(_) => continue,
        };
        let body = payload.to_string().into_bytes();
        if client.publish(topic, retain, body).await.is_err() {
            break;
        }
        stats.core.mqtt_published.fetch_add(1, Relaxed);
    }
    // Let the connection deliver what is queued, then disconnect.
    let _ = client.disconnect().await;
    let abort = conn.abort_handle();
    if tokio::time::timeout(FLUSH_GRACE, conn).await.is_err() {
        // The broker is unreachable: what is still queued is in the journal and the store.
        abort.abort();
    }
    info!("MQTT event publisher stopped.");
}

/// Drives the connection: reconnects with backoff, ends after our DISCONNECT went out.
async fn connection(mut eventloop: Link, mut backoff: Backoff, stats: Arc<Stats>) {
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(LinkEvent::ConnAck { .. }) => {
                backoff.reset();
                if !connected {
                    debug!("MQTT event publisher connected.");
                }
                connected = true;
            }
            Ok(LinkEvent::Disconnected) => break,
            Ok(_) => {}
            Err(e) => {
                // While the source reports a session takeover (a second gateway with our client
                // id takes this `-events` connection too), its error says it all.
                if connected && stats.mqtt_takeover.load(Relaxed) == 0 {
                    warn!(error = %e, "MQTT event publisher lost its connection; reconnecting.");
                } else if connected {
                    debug!(error = %e, "MQTT event publisher lost its connection (session takeover); reconnecting.");
                }
                connected = false;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
