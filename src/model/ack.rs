//! Settling a source message once its reading is safe.
//!
//! MQTT QoS 1 messages are acknowledged to the broker (PUBACK) only when a sink has *taken*
//! the reading (encoded into a batch of the store sink's in-memory queue; there is no disk
//! spool). Until then the broker keeps the message in our persistent session, so a gateway
//! killed mid-way loses nothing that had not yet reached a batch. Sources without acknowledgment (Modbus
//! polls, tests) use `Ack::None`.
//!
//! Settling never blocks and never loses an ack: it hands the packet id to the MQTT source's
//! acker task over an unbounded channel (bounded in practice by the messages the broker has in
//! flight to us), and that task waits for room in rumqttc's request queue. Dropping a PUBACK
//! instead would make the broker redeliver (duplicates) and, in mosquitto, slow every later
//! ack while the unacknowledged ones pile up at the head of its list.

use rumqttc::QoS;
use tokio::sync::mpsc;

/// A QoS 1/2 message to acknowledge: (packet id, QoS).
pub type PendingAck = (u16, QoS);

/// What is needed to acknowledge the message a reading came from.
#[derive(Debug, Default)]
pub enum Ack {
    /// Nothing to acknowledge.
    #[default]
    None,
    /// An MQTT publish received with manual acks on.
    Mqtt {
        acks: mpsc::UnboundedSender<PendingAck>,
        pkid: u16,
        qos: QoS,
    },
}

impl Ack {
    /// Acknowledges the source message (hands it to the acker task). If the MQTT source has
    /// already stopped, the broker redelivers the message to our session on the next start
    /// (at-least-once; a reading with a device `ts` then overwrites the identical point).
    pub fn settle(self) {
        if let Ack::Mqtt { acks, pkid, qos } = self {
            if acks.send((pkid, qos)).is_err() {
                tracing::debug!(pkid, "MQTT source stopped; the broker will redeliver.");
            }
        }
    }
}
