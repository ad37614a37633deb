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

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::MqttSettings;
use crate::model::escalation::Target;
use crate::model::event::Event;
use crate::model::Inventory;
use crate::mqtt::topic::TopicPattern;
use crate::stats::Stats;

/// Events waiting for the publisher.
pub const CAPACITY: usize = 4096;

/// How long shutdown waits for outstanding publishes to be acknowledged by the broker.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

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
) -> JoinHandle<()> {
    let mut opts = crate::mqtt::options(settings);
    opts.set_client_id(format!("{}-events", settings.client_id))
        .set_clean_session(true)
        .set_manual_acks(false);
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let conn = tokio::spawn(connection(
        eventloop,
        Backoff::new(settings.reconnect_min, settings.reconnect_max),
        stats.clone(),
    ));
    tokio::spawn(publish_loop(client, conn, topics, inventory, stats, events))
}

async fn publish_loop(
    client: AsyncClient,
    conn: JoinHandle<()>,
    topics: EventTopics,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    mut events: mpsc::Receiver<Arc<Event>>,
) {
    while let Some(e) = events.recv().await {
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
        if client
            .publish(topic, QoS::AtLeastOnce, retain, body)
            .await
            .is_err()
        {
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
async fn connection(mut eventloop: rumqttc::EventLoop, mut backoff: Backoff, stats: Arc<Stats>) {
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if !connected {
                    debug!("MQTT event publisher connected.");
                }
                connected = true;
            }
            Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => break,
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
