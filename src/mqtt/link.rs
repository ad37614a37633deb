//! One MQTT connection in either protocol version (`mqtt.protocol`): rumqttc's 3.1.1 client or
//! its v5 client behind one small interface, so the source's handler (decode, reject,
//! commands, manual acks) and the event sink are the same code for both. A v5 publish is
//! handed on as a 3.1.1 `Publish` (topic, payload, packet id, QoS: all the handler reads);
//! the reason codes MQTT 5 adds (CONNACK, SUBACK, DISCONNECT) come with a sentence saying
//! what they mean, for the log.

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as V5Connect, DisconnectReasonCode, Packet as V5Packet,
    SubscribeReasonCode as V5Sub,
};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::{Event, Outgoing, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode};

use crate::config::{MqttProtocol, MqttSettings};

/// The client half: publishes, subscribes, acknowledges.
#[derive(Clone, Debug)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop half.
pub enum Link {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the event loop reported, protocol-neutral.
#[derive(Debug)]
pub enum LinkEvent {
    /// An incoming publish (a v5 one converted).
    Publish(Publish),
    /// The broker accepted the connection. `limits`: what a v5 broker announced in its
    /// CONNACK (session expiry, receive maximum), for the log.
    ConnAck {
        session_present: bool,
        limits: Option<String>,
    },
    /// The broker answered a subscription; `refused`: each refused filter's reason code and
    /// its meaning.
    SubAck {
        refused: Vec<String>,
    },
    /// The broker acknowledged one of our QoS 1 publishes.
    PubAck,
    /// Our DISCONNECT went out.
    Disconnected,
    Other,
}

/// A lost or refused connection.
#[derive(Debug)]
pub enum LinkError {
    V4(rumqttc::ConnectionError),
    V5(rumqttc::v5::ConnectionError),
}

/// Connects (lazily: the first `poll` does) with the settings' protocol. `persistent`: the
/// source's session (stable client id, kept by the broker, manual acks); otherwise a clean
/// session that ends with the connection (the event sink, `report --publish`).
pub fn connect(s: &MqttSettings, client_id: &str, persistent: bool, cap: usize) -> (Client, Link) {
    match s.protocol {
        MqttProtocol::V311 => {
            let mut o = super::options(s);
            o.set_client_id(client_id.to_owned())
                .set_clean_session(!persistent)
                .set_manual_acks(persistent);
            let (c, l) = rumqttc::AsyncClient::new(o, cap);
            (Client::V4(c), Link::V4(Box::new(l)))
        }
        MqttProtocol::V5 => {
            let mut o = super::options_v5(s);
            o.set_client_id(client_id.to_owned())
                .set_manual_acks(persistent);
            if !persistent {
                o.set_clean_start(true).set_session_expiry_interval(None);
            }
            let (c, l) = rumqttc::v5::AsyncClient::new(o, cap);
            (Client::V5(c), Link::V5(Box::new(l)))
        }
    }
}

fn v5_qos(q: QoS) -> V5QoS {
    match q {
        QoS::AtMostOnce => V5QoS::AtMostOnce,
        QoS::AtLeastOnce => V5QoS::AtLeastOnce,
        QoS::ExactlyOnce => V5QoS::ExactlyOnce,
    }
}

fn v4_qos(q: V5QoS) -> QoS {
    match q {
        V5QoS::AtMostOnce => QoS::AtMostOnce,
        V5QoS::AtLeastOnce => QoS::AtLeastOnce,
        V5QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// The client is gone (its event loop ended).
#[derive(Debug)]
pub struct Gone;

impl Client {
    /// Queues a QoS 1 publish; waits while the request queue is full.
    pub async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Result<(), Gone> {
        match self {
            Client::V4(c) => c
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|_| Gone),
            Client::V5(c) => c
                .publish(topic, V5QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|_| Gone),
        }
    }

    /// Acknowledges a received message by packet id and QoS (manual acks).
    pub async fn ack(&self, pkid: u16, qos: QoS) -> Result<(), Gone> {
        match self {
            Client::V4(c) => {
                // rumqttc acknowledges by (qos, pkid); topic and payload are not used.
                let mut p = Publish::new("", qos, Vec::new());
                p.pkid = pkid;
                c.ack(&p).await.map_err(|_| Gone)
            }
            Client::V5(c) => {
                let mut p =
                    rumqttc::v5::mqttbytes::v5::Publish::new("", v5_qos(qos), Vec::new(), None);
                p.pkid = pkid;
                c.ack(&p).await.map_err(|_| Gone)
            }
        }
    }

    /// Queues a QoS 1 subscription to `filters` without waiting.
    pub fn try_subscribe_many(&self, filters: Vec<String>) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe_many(
                    filters
                        .into_iter()
                        .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce)),
                )
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .into_iter()
                        .map(|f| rumqttc::v5::mqttbytes::v5::Filter::new(f, V5QoS::AtLeastOnce)),
                )
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a DISCONNECT without waiting.
    pub fn try_disconnect(&self) -> Result<(), Gone> {
        match self {
            Client::V4(c) => c.try_disconnect().map_err(|_| Gone),
            Client::V5(c) => c.try_disconnect().map_err(|_| Gone),
        }
    }

    /// Queues a DISCONNECT.
    pub async fn disconnect(&self) -> Result<(), Gone> {
        match self {
            Client::V4(c) => c.disconnect().await.map_err(|_| Gone),
            Client::V5(c) => c.disconnect().await.map_err(|_| Gone),
        }
    }
}

impl Link {
    /// The next event of the connection (connecting first when it is down).
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self {
            Link::V4(l) => Ok(match l.poll().await.map_err(LinkError::V4)? {
                Event::Incoming(Packet::Publish(p)) => LinkEvent::Publish(p),
                Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
                    session_present: a.session_present,
                    limits: None,
                },
                Event::Incoming(Packet::SubAck(a)) => LinkEvent::SubAck {
                    refused: a
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                        .map(|_| {
                            "Failure (0x80): the broker refused the filter, usually its ACL"
                                .to_owned()
                        })
                        .collect(),
                },
                Event::Incoming(Packet::PubAck(_)) => LinkEvent::PubAck,
                Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Disconnected,
                _ => LinkEvent::Other,
            }),
            Link::V5(l) => {
                use rumqttc::v5::Event as E;
                Ok(match l.poll().await.map_err(LinkError::V5)? {
                    E::Incoming(V5Packet::Publish(p)) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let mut q = Publish::from_bytes(topic, v4_qos(p.qos), p.payload);
                        q.pkid = p.pkid;
                        q.dup = p.dup;
                        q.retain = p.retain;
                        LinkEvent::Publish(q)
                    }
                    E::Incoming(V5Packet::ConnAck(a)) => LinkEvent::ConnAck {
                        session_present: a.session_present,
                        limits: a.properties.map(|p| {
                            format!(
                                "session expiry {}, receive maximum {}{}",
                                p.session_expiry_interval
                                    .map_or("as requested".to_owned(), |s| format!("{s} s")),
                                p.receive_max.map_or("65535".to_owned(), |r| r.to_string()),
                                p.reason_string
                                    .map_or(String::new(), |r| format!(", reason: {r}")),
                            )
                        }),
                    },
                    E::Incoming(V5Packet::SubAck(a)) => LinkEvent::SubAck {
                        refused: a
                            .return_codes
                            .iter()
                            .filter(|c| !matches!(c, V5Sub::Success(_)))
                            .map(|c| suback_meaning(*c))
                            .collect(),
                    },
                    E::Incoming(V5Packet::PubAck(_)) => LinkEvent::PubAck,
                    E::Outgoing(Outgoing::Disconnect) => LinkEvent::Disconnected,
                    _ => LinkEvent::Other,
                })
            }
        }
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::V4(e) => e.fmt(f),
            LinkError::V5(e) => e.fmt(f),
        }
    }
}

impl LinkError {
    /// Whether the broker (or whatever is between) ended the connection: end of stream,
    /// reset, broken pipe, or (v5) a DISCONNECT from the broker. Not a timeout of ours, nor a
    /// packet we refused.
    pub fn closed_by_broker(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let io = |e: &std::io::Error| {
            matches!(
                e.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            )
        };
        use rumqttc::v5::StateError as S5;
        use rumqttc::StateError as S4;
        match self {
            LinkError::V4(rumqttc::ConnectionError::MqttState(S4::ConnectionAborted)) => true,
            LinkError::V4(
                rumqttc::ConnectionError::MqttState(S4::Io(e)) | rumqttc::ConnectionError::Io(e),
            ) => io(e),
            LinkError::V5(rumqttc::v5::ConnectionError::MqttState(
                S5::ConnectionAborted | S5::ServerDisconnect { .. },
            )) => true,
            LinkError::V5(
                rumqttc::v5::ConnectionError::MqttState(S5::Io(e))
                | rumqttc::v5::ConnectionError::Io(e),
            ) => io(e),
            _ => false,
        }
    }

    /// A CONNACK refusing our credentials or client id: the operator has to fix them.
    pub fn refused_credentials(&self) -> Option<String> {
        match self {
            LinkError::V4(rumqttc::ConnectionError::ConnectionRefused(
                code @ (rumqttc::ConnectReturnCode::BadUserNamePassword
                | rumqttc::ConnectReturnCode::NotAuthorized
                | rumqttc::ConnectReturnCode::BadClientId),
            )) => Some(format!("{code:?}")),
            LinkError::V5(rumqttc::v5::ConnectionError::ConnectionRefused(
                code @ (V5Connect::BadUserNamePassword
                | V5Connect::NotAuthorized
                | V5Connect::BadClientId
                | V5Connect::ClientIdentifierNotValid
                | V5Connect::BadAuthenticationMethod
                | V5Connect::Banned),
            )) => Some(connack_meaning(*code)),
            _ => None,
        }
    }

    /// Any refusing CONNACK: its code (v5: with what it means).
    pub fn refused(&self) -> Option<String> {
        match self {
            LinkError::V4(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                Some(format!("{code:?}"))
            }
            LinkError::V5(
                rumqttc::v5::ConnectionError::ConnectionRefused(code)
                | rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ConnFail {
                    reason: code,
                }),
            ) => Some(connack_meaning(*code)),
            _ => None,
        }
    }

    /// An incoming packet over `mqtt.max_packet_bytes`: its size.
    pub fn too_large(&self) -> Option<usize> {
        match self {
            LinkError::V4(rumqttc::ConnectionError::MqttState(
                rumqttc::StateError::Deserialization(rumqttc::Error::PayloadSizeLimitExceeded(n)),
            )) => Some(*n),
            LinkError::V5(rumqttc::v5::ConnectionError::MqttState(
                rumqttc::v5::StateError::Deserialization(
                    rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. },
                )
                | rumqttc::v5::StateError::IncomingPacketTooLarge { pkt_size, .. },
            )) => Some(*pkt_size),
            _ => None,
        }
    }

    /// An MQTT 5 reason code the broker gave (a refusing CONNACK or its DISCONNECT), with what
    /// it means.
    pub fn reason(&self) -> Option<String> {
        use rumqttc::v5::ConnectionError as C;
        use rumqttc::v5::StateError as S;
        match self {
            LinkError::V5(
                C::ConnectionRefused(code) | C::MqttState(S::ConnFail { reason: code }),
            ) => Some(connack_meaning(*code)),
            LinkError::V5(C::MqttState(S::ServerDisconnect {
                reason_code,
                reason_string,
            })) => Some(format!(
                "{}{}",
                disconnect_meaning(*reason_code),
                reason_string
                    .as_deref()
                    .map_or(String::new(), |r| format!(" (broker: {r})"))
            )),
            _ => None,
        }
    }
}

/// A CONNACK reason code (MQTT 5 §3.2.2.2) and what it means for the gateway.
pub fn connack_meaning(code: V5Connect) -> String {
    let (hex, what) = match code {
        V5Connect::Success => ("0x00", "connection accepted"),
        V5Connect::UnspecifiedError => {
            ("0x80", "the broker refused without saying why; see its log")
        }
        V5Connect::MalformedPacket => ("0x81", "the broker could not parse our CONNECT"),
        V5Connect::ProtocolError => ("0x82", "the broker saw a protocol error in our CONNECT"),
        V5Connect::ImplementationSpecificError => (
            "0x83",
            "the broker refused for a reason of its own; see its log",
        ),
        V5Connect::UnsupportedProtocolVersion | V5Connect::RefusedProtocolVersion => (
            "0x84",
            "the broker does not speak MQTT 5; set mqtt.protocol = \"v3.1.1\"",
        ),
        V5Connect::ClientIdentifierNotValid | V5Connect::BadClientId => (
            "0x85",
            "the broker does not accept our client id; check mqtt.client_id",
        ),
        V5Connect::BadUserNamePassword => (
            "0x86",
            "wrong user name or password; check mqtt.username and the password",
        ),
        V5Connect::NotAuthorized => ("0x87", "this user may not connect; check the broker's ACL"),
        V5Connect::ServerUnavailable | V5Connect::ServiceUnavailable => {
            ("0x88", "the broker is not available right now")
        }
        V5Connect::ServerBusy => ("0x89", "the broker is busy; we retry"),
        V5Connect::Banned => ("0x8A", "the broker has banned this client"),
        V5Connect::BadAuthenticationMethod => {
            ("0x8C", "the broker wants another authentication method")
        }
        V5Connect::TopicNameInvalid => ("0x90", "the broker refused a topic name"),
        V5Connect::PacketTooLarge => ("0x95", "our CONNECT is larger than the broker accepts"),
        V5Connect::QuotaExceeded => ("0x97", "a quota of the broker is exceeded"),
        V5Connect::PayloadFormatInvalid => ("0x99", "the broker refused a payload format"),
        V5Connect::RetainNotSupported => ("0x9A", "the broker does not support retained messages"),
        V5Connect::QoSNotSupported => ("0x9B", "the broker does not support QoS 1"),
        V5Connect::UseAnotherServer => ("0x9C", "the broker asks us to use another server for now"),
        V5Connect::ServerMoved => ("0x9D", "the broker has moved; change mqtt.url"),
        V5Connect::ConnectionRateExceeded => (
            "0x9F",
            "we connect too often; the broker limits the connection rate",
        ),
    };
    format!("CONNACK {code:?} ({hex}): {what}")
}

/// A SUBACK reason code (MQTT 5 §3.9.3) and what it means.
pub fn suback_meaning(code: V5Sub) -> String {
    let (hex, what) = match code {
        V5Sub::Success(_) => ("0x01", "subscribed"),
        V5Sub::Failure | V5Sub::Unspecified => (
            "0x80",
            "the broker refused the filter without saying why; usually its ACL",
        ),
        V5Sub::ImplementationSpecific => (
            "0x83",
            "the broker refused the filter for a reason of its own",
        ),
        V5Sub::NotAuthorized => (
            "0x87",
            "this user may not subscribe to the filter; check the broker's ACL",
        ),
        V5Sub::TopicFilterInvalid => (
            "0x8F",
            "the broker does not accept the filter; check the topic patterns",
        ),
        V5Sub::PkidInUse => ("0x91", "packet id in use"),
        V5Sub::QuotaExceeded => ("0x97", "a subscription quota of the broker is exceeded"),
        V5Sub::SharedSubscriptionsNotSupported => {
            ("0x9E", "the broker does not support $share/ subscriptions")
        }
        V5Sub::SubscriptionIdNotSupported => (
            "0xA1",
            "the broker does not support subscription identifiers",
        ),
        V5Sub::WildcardSubscriptionsNotSupported => (
            "0xA2",
            "the broker does not support wildcard filters (+, #)",
        ),
    };
    format!("SUBACK {code:?} ({hex}): {what}")
}

/// A DISCONNECT reason code from the broker (MQTT 5 §3.14.2.1) and what it means.
pub fn disconnect_meaning(code: DisconnectReasonCode) -> String {
    use DisconnectReasonCode as D;
    let what = match code {
        D::NormalDisconnection => "the broker closed the connection normally",
        D::DisconnectWithWillMessage => "closed, with the will message published",
        D::UnspecifiedError => "the broker closed the connection without saying why",
        D::MalformedPacket => "the broker could not parse a packet of ours",
        D::ProtocolError => "the broker saw a protocol error",
        D::ImplementationSpecificError => "the broker closed for a reason of its own; see its log",
        D::NotAuthorized => "this client is no longer authorised",
        D::ServerBusy => "the broker is busy",
        D::ServerShuttingDown => "the broker is shutting down; we reconnect when it is back",
        D::KeepAliveTimeout => "the broker heard nothing from us within 1.5 keep-alives",
        D::SessionTakenOver => "another client connected with our client id and took the session",
        D::TopicFilterInvalid => "the broker does not accept a topic filter",
        D::TopicNameInvalid => "the broker does not accept a topic name",
        D::ReceiveMaximumExceeded => {
            "we had more QoS 1 publishes unacknowledged than the broker's receive maximum; lower mqtt.inflight"
        }
        D::TopicAliasInvalid => "a topic alias was invalid",
        D::PacketTooLarge => "a packet was larger than the broker's maximum packet size",
        D::MessageRateTooHigh => "we publish faster than the broker allows",
        D::QuotaExceeded => "a quota of the broker is exceeded",
        D::AdministrativeAction => "an administrator closed the connection",
        D::PayloadFormatInvalid => "a payload did not match its format indicator",
        D::RetainNotSupported => "the broker does not support retained messages",
        D::QoSNotSupported => "the broker does not support QoS 1",
        D::UseAnotherServer => "the broker asks us to use another server for now",
        D::ServerMoved => "the broker has moved; change mqtt.url",
        D::SharedSubscriptionNotSupported => "the broker does not support $share/ subscriptions",
        D::ConnectionRateExceeded => "we connect too often",
        D::MaximumConnectTime => "the broker's maximum connection time is reached",
        D::SubscriptionIdentifiersNotSupported => {
            "the broker does not support subscription identifiers"
        }
        D::WildcardSubscriptionsNotSupported => "the broker does not support wildcard filters",
    };
    format!("DISCONNECT {code:?} (0x{:02X}): {what}", code as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_come_with_their_meaning() {
        assert_eq!(
            disconnect_meaning(DisconnectReasonCode::SessionTakenOver),
            "DISCONNECT SessionTakenOver (0x8E): another client connected with our client id and took the session"
        );
        assert!(connack_meaning(V5Connect::BadUserNamePassword).contains("(0x86): wrong user name"));
        assert!(suback_meaning(V5Sub::NotAuthorized).contains("(0x87)"));
    }
}
