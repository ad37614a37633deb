//! The MQTT source (rumqttc): subscribes to the telemetry and status patterns (DESIGN §6) with
//! QoS 1 on a persistent session (stable client id, clean session off), turns each message
//! into a `Reading`, and acknowledges it only when a sink has taken it (manual acks, see
//! `model::Ack`). Rejected messages are acknowledged at once: redelivering them cannot help.
//!
//! Either protocol version (`mqtt.protocol`): the connection is a `mqtt::link::Link`, which
//! hands v5 publishes on in the 3.1.1 shape, so decoding, rejects, commands and the acker are
//! the same code for both; in v5 the session is kept by its expiry interval and the broker's
//! reason codes are logged with what they mean.
//!
//! rumqttc's event loop retries a failed connection immediately; we wait with capped
//! exponential backoff and jitter between attempts, and resubscribe on every ConnAck (harmless
//! when the broker kept the session, necessary when it did not).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::decode::{self, Limits, Problem};
use super::takeover::{self, Closed, Takeovers};
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::{IngestSettings, MqttSettings};
use crate::model::{
    Ack, DeviceIdx, Inventory, OperatorCommand, OperatorCommandKind, PendingAck, Reading,
};
use crate::mqtt::link::{self, Client, Link, LinkEvent};
use crate::stats::{LogLimiter, Stats};

/// A message's reading before its acknowledgment is attached: device, event time, values,
/// status.
type Parts = (
    DeviceIdx,
    i64,
    Vec<(u16, crate::model::Value)>,
    Option<crate::model::Status>,
);

/// How long, at shutdown, the source keeps the connection open so that the PUBACKs of
/// readings the sinks already took can still be sent.
const ACK_GRACE: Duration = Duration::from_secs(3);

/// A running MQTT source's inputs.
#[derive(Debug)]
pub struct MqttSource {
    pub settings: MqttSettings,
    pub ingest: IngestSettings,
    pub inventory: Arc<Inventory>,
    pub stats: Arc<Stats>,
    pub clock: Arc<dyn Clock>,
    /// Where acknowledgments and on-site reports (`mqtt.ack_topic`, `mqtt.on_site_topic`) go
    /// (the core stage applies them in order with the readings); `None`: those topics are not
    /// subscribed.
    pub commands: Option<mpsc::Sender<(OperatorCommand, Ack)>>,
}

impl MqttSource {
    /// Runs until `shutdown` is cancelled. Readings go to `tx`; when shutting down, `tx` is
    /// dropped first and the connection stays up until `taken` is cancelled by the sink (all
    /// readings taken and acknowledged) or `ACK_GRACE` passes.
    pub async fn run(
        self,
        tx: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
        taken: CancellationToken,
    ) {
        let (client, mut eventloop) =
            link::connect(&self.settings, &self.settings.client_id, true, 1024);
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(acker(client.clone(), acks_rx));
        let mut state = Handler {
            limits: Limits {
                max_payload_bytes: self.settings.max_payload_bytes,
                max_clock_skew_ms: self.ingest.max_clock_skew.as_millis() as i64,
                max_reading_age_ms: self.ingest.max_reading_age.as_millis() as i64,
            },
            logs: LogLimiter::new(
                self.ingest.log_burst,
                self.ingest.log_window.as_millis() as i64,
            ),
            src: &self,
            acks,
        };
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        let mut connected = false;
        let mut takeovers = Takeovers::default();
        // The last takeover error logged, and the closes since (one line per `WINDOW_MS`).
        let mut takeover_logged: Option<i64> = None;
        let mut takeover_unlogged = 0usize;
        info!(url = %self.settings.url, client_id = %self.settings.client_id,
              telemetry = %self.settings.telemetry_topic, status = %self.settings.status_topic,
              protocol = self.settings.protocol.as_str(),
              "Connecting to the MQTT broker.");
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            if ev.is_ok() && takeovers.active() && !takeovers.check(self.clock.now_ms()) {
                self.stats.mqtt_takeover.store(0, Relaxed);
                takeover_logged = None;
                info!(client_id = %self.settings.client_id,
                      "The MQTT connection is stable again: no other client is taking our session.");
            }
            match ev {
                Ok(LinkEvent::Publish(p)) => {
                    let sent = tokio::select! {
                        _ = shutdown.cancelled() => None,
                        sent = state.handle(p, &tx) => Some(sent),
                    };
                    if sent.is_none() {
                        break;
                    }
                }
                Ok(LinkEvent::ConnAck {
                    session_present,
                    limits,
                }) => {
                    // A refusing CONNACK never arrives here: rumqttc reports it as
                    // `ConnectionError::ConnectionRefused` (handled in the error branch).
                    backoff.reset();
                    connected = true;
                    takeovers.connected(self.clock.now_ms());
                    if takeovers.active() {
                        debug!(
                            session_present,
                            "Connected to the MQTT broker (during a session takeover)."
                        );
                    } else if let Some(limits) = limits {
                        info!(
                            session_present,
                            broker = %limits,
                            "Connected to the MQTT broker (MQTT 5; CONNACK Success)."
                        );
                    } else {
                        info!(session_present, "Connected to the MQTT broker.");
                    }
                    // One estate's gateway subscribes to its own site's topics only (a
                    // central broker carries every estate's).
                    let sites = self.inventory.sites();
                    let site = match sites.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    };
                    let mut filters = vec![
                        self.settings.telemetry_topic.filter_for_site(site),
                        self.settings.status_topic.filter_for_site(site),
                    ];
                    if self.commands.is_some() {
                        filters.push(self.settings.ack_topic.filter_for_site(site));
                        filters.push(self.settings.on_site_topic.filter_for_site(site));
                    }
                    if let Err(e) = client.try_subscribe_many(filters) {
                        error!(error = %e, "Could not queue the MQTT subscription.");
                    }
                }
                Ok(LinkEvent::SubAck { refused }) => {
                    if !refused.is_empty() {
                        error!(
                            reason = %refused.join("; "),
                            "The MQTT broker refused a subscription; check its ACL for our topics."
                        );
                    } else if takeovers.active() {
                        debug!("Subscribed to telemetry and status topics.");
                    } else {
                        info!("Subscribed to telemetry and status topics.");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        self.stats.mqtt_disconnects.fetch_add(1, Relaxed);
                        connected = false;
                    }
                    let delay = backoff.next_delay();
                    let retry_in_ms = delay.as_millis() as u64;
                    let now = self.clock.now_ms();
                    let closed = takeovers.closed(now, e.closed_by_broker());
                    if takeovers.active() && !takeovers.check(now) {
                        // Ended by a quiet window (no CONNACK for a while): the broker is away.
                        self.stats.mqtt_takeover.store(0, Relaxed);
                        takeover_logged = None;
                    }
                    if let Closed::Takeover { recognised, count } = closed {
                        let n = if recognised { count } else { 1 };
                        self.stats.mqtt_takeovers.fetch_add(n as u64, Relaxed);
                        self.stats.mqtt_takeover.store(1, Relaxed);
                        takeover_unlogged += n;
                        if takeover_logged.is_none_or(|t| now - t >= takeover::WINDOW_MS) {
                            error!(client_id = %self.settings.client_id, closes = takeover_unlogged,
                                   window_s = takeover::WINDOW_MS / 1000,
                                   "Another MQTT client is using our client id: the broker keeps closing our connection right after accepting it, and the readings are split between the two. Give each gateway a distinct mqtt.client_id (the default is estate-gateway-<gateway.site>).");
                            takeover_logged = Some(now);
                            takeover_unlogged = 0;
                        }
                    }
                    if takeovers.active() {
                        // During a takeover the reconnects are expected; the error above says
                        // what is going on.
                        debug!(error = %e, retry_in_ms, "MQTT session taken over; reconnecting.");
                    } else if let Some(code) = e.refused_credentials() {
                        // rumqttc reports a refusing CONNACK as this error, not as a ConnAck
                        // event: the operator has to fix the credentials (or client id).
                        error!(code = %code, retry_in_ms, "The MQTT broker refused the connection; check mqtt.username and the password.");
                    } else if let Some(bytes) = e.too_large() {
                        // A packet over `mqtt.max_packet_bytes` (lowered from its default)
                        // breaks the connection, and the broker sends it again on every
                        // reconnect: ingestion stalls until the limit is raised.
                        error!(bytes, max_packet_bytes = self.settings.max_packet_bytes, retry_in_ms,
                               "An MQTT message is larger than mqtt.max_packet_bytes: the broker sends it again on every reconnect and nothing after it arrives; raise mqtt.max_packet_bytes (default 268435456) above the broker's message_size_limit.");
                    } else if let Some(reason) = e.reason() {
                        // MQTT 5: the broker said why (a refusing CONNACK, or its DISCONNECT).
                        warn!(reason = %reason, retry_in_ms, "The MQTT broker closed or refused the connection; reconnecting.");
                    } else {
                        warn!(error = %e, retry_in_ms, "MQTT connection lost or refused; reconnecting.");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // Shutdown: stop producing, let the sinks take what is queued, send their acks.
        drop(tx);
        drop(state);
        finish(&client, &mut eventloop, &taken, acker).await;
    }
}

/// Sends PUBACKs in the order readings were settled; waits (never drops) when rumqttc's request
/// queue is full. Ends when every `Ack` holding a sender is gone.
async fn acker(client: Client, mut rx: mpsc::UnboundedReceiver<PendingAck>) {
    while let Some((pkid, qos)) = rx.recv().await {
        if client.ack(pkid, qos).await.is_err() {
            // The event loop is gone (shutdown): the broker redelivers what we did not ack.
            break;
        }
    }
}

async fn finish(
    client: &Client,
    eventloop: &mut Link,
    taken: &CancellationToken,
    acker: tokio::task::JoinHandle<()>,
) {
    let grace = tokio::time::sleep(ACK_GRACE);
    tokio::pin!(grace);
    // Keep the connection serviced until the sinks have taken everything sent to them...
    loop {
        tokio::select! {
            _ = taken.cancelled() => break,
            _ = &mut grace => break,
            ev = eventloop.poll() => if ev.is_err() { break },
        }
    }
    // ...and the acker has queued every PUBACK (it ends when the last `Ack` is gone).
    tokio::pin!(acker);
    loop {
        tokio::select! {
            _ = &mut acker => break,
            _ = &mut grace => break,
            ev = eventloop.poll() => if ev.is_err() { break },
        }
    }
    // Flush the acks queued by the sink, then disconnect cleanly (the broker keeps our
    // session and any message we did not acknowledge).
    let _ = client.try_disconnect();
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            ev = eventloop.poll() => match ev {
                Ok(LinkEvent::Disconnected) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    info!("MQTT source stopped.");
}

struct Handler<'a> {
    limits: Limits,
    logs: LogLimiter,
    src: &'a MqttSource,
    acks: mpsc::UnboundedSender<PendingAck>,
}

impl Handler<'_> {
    /// Handles one publish; waits only if the readings channel is full.
    async fn handle(&mut self, p: Publish, tx: &mpsc::Sender<Reading>) {
        let src = self.src;
        src.stats.messages.fetch_add(1, Relaxed);
        let now = src.clock.now_ms();
        let ack = if p.qos == QoS::AtMostOnce {
            Ack::None
        } else {
            Ack::Mqtt {
                acks: self.acks.clone(),
                pkid: p.pkid,
                qos: p.qos,
            }
        };
        if let Some(commands) = &src.commands {
            if let Some(kind) = self.command_kind(&p.topic) {
                match self.command(kind, &p, now) {
                    // Acknowledged once the input log has it.
                    Some(c) => {
                        if commands.send((c, ack)).await.is_err() {
                            debug!("Operator command channel closed.");
                        }
                    }
                    None => ack.settle(),
                }
                return;
            }
        }
        match self.reading(&p, now) {
            Some((device, ts_ms, values, status)) => {
                src.stats.readings.fetch_add(1, Relaxed);
                let r = Reading {
                    device,
                    ts_ms,
                    values,
                    status,
                    ack,
                };
                if let Err(e) = tx.send(r).await {
                    // The pipeline is shutting down; the broker will redeliver.
                    debug!(error = %e, "Readings channel closed.");
                }
            }
            None => ack.settle(),
        }
    }

    /// The message as a reading's parts, or `None` when it was rejected (counted and logged
    /// here).
    fn reading(&mut self, p: &Publish, now: i64) -> Option<Parts> {
        let s = &self.src.settings;
        let topic = p.topic.as_str();
        let (m, is_status) = match s.telemetry_topic.matches(topic) {
            Some(m) => (m, false),
            None => match s.status_topic.matches(topic) {
                Some(m) => (m, true),
                None => return None,
            },
        };
        let inv = &self.src.inventory;
        let device = match m.site {
            Some(site) => inv.lookup(site, m.device),
            None => inv.lookup_any_site(m.device),
        };
        let Some(device) = device else {
            self.reject(
                topic,
                now,
                Problem {
                    reason: crate::stats::Reject::UnknownDevice,
                    signal: None,
                    detail: "no device with this site and id in the inventory".into(),
                },
            );
            return None;
        };
        let dev = inv.get(device);
        if let Some(cat) = m.category {
            if cat != dev.category {
                self.reject(
                    topic,
                    now,
                    Problem {
                        reason: crate::stats::Reject::CategoryMismatch,
                        signal: None,
                        detail: format!(
                            "the topic says `{cat}`, the inventory says `{}`",
                            dev.category
                        ),
                    },
                );
                return None;
            }
        }
        if is_status {
            if p.payload.len() > self.limits.max_payload_bytes {
                self.reject(
                    topic,
                    now,
                    Problem {
                        reason: crate::stats::Reject::Oversize,
                        signal: None,
                        detail: format!("status payload is {} bytes", p.payload.len()),
                    },
                );
                return None;
            }
            return match decode::status(&p.payload) {
                Ok(st) => Some((device, now, Vec::new(), Some(st))),
                Err(problem) => {
                    self.reject(topic, now, problem);
                    None
                }
            };
        }
        match decode::telemetry(&dev.profile, &p.payload, now, &self.limits) {
            Ok(d) => {
                if d.sanitised > 0 {
                    self.src
                        .stats
                        .sanitised
                        .fetch_add(u64::from(d.sanitised), Relaxed);
                }
                for problem in d.problems {
                    self.reject(topic, now, problem);
                }
                if d.values.is_empty() {
                    return None;
                }
                Some((device, d.ts_ms, d.values, None))
            }
            Err(problem) => {
                self.reject(topic, now, problem);
                None
            }
        }
    }

    /// Which command a topic carries, if it is the acknowledgment or the on-site topic.
    fn command_kind(&self, topic: &str) -> Option<OperatorCommandKind> {
        let s = &self.src.settings;
        if s.ack_topic.matches_site(topic).is_some() {
            Some(OperatorCommandKind::Ack)
        } else if s.on_site_topic.matches_site(topic).is_some() {
            Some(OperatorCommandKind::OnSite)
        } else {
            None
        }
    }

    /// Decodes `{"id": "...", "by": "...", "ts": <unix ms, optional>}` (refusals — unknown id,
    /// twice — are counted and logged by the core stage); `None` when malformed (counted and
    /// logged here).
    fn command(
        &mut self,
        kind: OperatorCommandKind,
        p: &Publish,
        now: i64,
    ) -> Option<OperatorCommand> {
        #[derive(serde::Deserialize)]
        struct Body {
            id: String,
            by: String,
            ts: Option<i64>,
        }
        let bad = |detail: String| Problem {
            reason: crate::stats::Reject::BadCommand,
            signal: None,
            detail,
        };
        if p.payload.len() > self.limits.max_payload_bytes {
            let n = p.payload.len();
            self.reject(&p.topic, now, bad(format!("payload is {n} bytes")));
            return None;
        }
        let body: Body = match serde_json::from_slice(&p.payload) {
            Ok(b) => b,
            Err(e) => {
                let detail = format!("expected {{\"id\": \"<alarm id>\", \"by\": \"<operator>\", \"ts\": <unix ms, optional>}}: {e}");
                self.reject(&p.topic, now, bad(detail));
                return None;
            }
        };
        Some(OperatorCommand {
            kind,
            id: body.id,
            by: body.by,
            ts_ms: body.ts,
        })
    }

    fn reject(&mut self, topic: &str, now: i64, p: Problem) {
        self.src.stats.reject(p.reason);
        if let Some(suppressed) = self.logs.allow(p.reason, now) {
            warn!(
                topic,
                reason = p.reason.as_str(),
                signal = p.signal.as_deref().unwrap_or("-"),
                detail = %p.detail,
                suppressed_before = suppressed,
                "Dropped bad input."
            );
        }
    }
}
