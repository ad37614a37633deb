//! Settling a source message once its reading is safe.
//!
//! MQTT QoS 1 messages are acknowledged to the broker (PUBACK) only when a sink has *taken*
//! the reading (today: encoded into the store sink's batch; with the disk spool: written to
//! disk). Until then the broker keeps the message in our persistent session, so a gateway
//! killed mid-way loses nothing the broker accepted. Sources without acknowledgment (Modbus
//! polls, tests) use `Ack::None`.

use rumqttc::{AsyncClient, Publish, QoS};

/// What is needed to acknowledge the message a reading came from.
#[derive(Debug, Default)]
pub enum Ack {
    /// Nothing to acknowledge.
    #[default]
    None,
    /// An MQTT publish received with manual acks on.
    Mqtt {
        client: AsyncClient,
        pkid: u16,
        qos: QoS,
    },
}

impl Ack {
    /// Acknowledges the source message. Never blocks: if the MQTT client's request queue is
    /// full or the connection is gone, the broker redelivers the message after a reconnect
    /// (at-least-once; a reading with a device `ts` then overwrites the identical point).
    pub fn settle(self) {
        if let Ack::Mqtt { client, pkid, qos } = self {
            // rumqttc acknowledges by (qos, pkid); topic and payload are not used.
            let mut p = Publish::new("", qos, Vec::new());
            p.pkid = pkid;
            if let Err(e) = client.try_ack(&p) {
                tracing::debug!(pkid, error = %e, "Could not queue PUBACK; the broker will redeliver.");
            }
        }
    }
}
