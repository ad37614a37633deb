//! An in-process MQTT client for tests that need time: a `rumqttc` client whose connection runs
//! on its own thread and records every message it receives with the `Instant` it arrived, and
//! which returns the `Instant` of each publish. Publish→receive latencies measured with it do
//! not include starting a `mosquitto_pub` process. Clean session; acknowledges QoS 1 at once;
//! TCP_NODELAY.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use super::{wait_until, READY_TIMEOUT};

/// One message the client received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    /// When the connection thread got it from the broker.
    pub(crate) at: Instant,
}

impl Received {
    /// The payload as JSON; panics (quoting it) when it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {:?}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// What the connection thread reports besides messages.
enum Signal {
    Connected,
    Subscribed,
    Failed(String),
}

/// A connected client; disconnects on drop.
pub(crate) struct MqttClient {
    client: Client,
    received: Arc<Mutex<Vec<Received>>>,
    signals: Receiver<Signal>,
    thread: Option<JoinHandle<()>>,
    id: String,
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl MqttClient {
    /// Connects to the broker on 127.0.0.1:`port` and waits for its CONNACK.
    pub(crate) fn connect(port: u16) -> MqttClient {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "test-client-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut opts = MqttOptions::new(&id, "127.0.0.1", port);
        opts.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(opts, 256);
        // Without TCP_NODELAY, a publish right after this client acknowledged a message waits
        // for the broker's delayed ACK (Nagle's algorithm, ~40 ms): the test's own client
        // must not add that to what it measures.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        connection.eventloop.set_network_options(net);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (tx, signals) = mpsc::channel();
        let sink = received.clone();
        let thread = thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            qos: p.qos as u8,
                            retain: p.retain,
                            at,
                        });
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = tx.send(Signal::Connected);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = tx.send(Signal::Subscribed);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        // A test client does not reconnect: the test fails with the reason.
                        let _ = tx.send(Signal::Failed(e.to_string()));
                        break;
                    }
                }
            }
        });
        let c = MqttClient {
            client,
            received,
            signals,
            thread: Some(thread),
            id,
        };
        c.expect(|s| matches!(s, Signal::Connected), "CONNACK");
        c
    }

    fn expect(&self, want: impl Fn(&Signal) -> bool, what: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.signals.recv_timeout(left) {
                Ok(Signal::Failed(e)) => {
                    panic!("MQTT client {}: {e} (waiting for {what})", self.id)
                }
                Ok(s) if want(&s) => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "MQTT client {}: no {what} within {READY_TIMEOUT:?}",
                        self.id
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "MQTT client {}: connection ended (waiting for {what})",
                        self.id
                    )
                }
            }
        }
    }

    /// Subscribes to `filter` and waits for the SUBACK: nothing published afterwards is missed.
    pub(crate) fn subscribe(&self, filter: &str, q: u8) {
        self.client
            .subscribe(filter, qos(q))
            .unwrap_or_else(|e| panic!("subscribe {filter:?}: {e}"));
        self.expect(|s| matches!(s, Signal::Subscribed), "SUBACK");
    }

    /// Publishes (not retained) and returns the instant just before handing it to the client.
    pub(crate) fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, q: u8) -> Instant {
        let payload = payload.into();
        let at = Instant::now();
        self.client
            .publish(topic, qos(q), false, payload)
            .unwrap_or_else(|e| panic!("publish {topic:?}: {e}"));
        at
    }

    /// Every message received so far, in order.
    pub(crate) fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The messages received so far on `topic`.
    pub(crate) fn on(&self, topic: &str) -> Vec<Received> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Polls until a message satisfies `pred` (checking those already received too); `None`
    /// at `timeout`.
    pub(crate) fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Received) -> bool,
    ) -> Option<Received> {
        let mut found = None;
        wait_until(timeout, Duration::from_millis(2), || {
            found = self
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|m| pred(m))
                .cloned();
            found.is_some()
        });
        found
    }
}

impl Drop for MqttClient {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            // The thread ends after the DISCONNECT went out, or at once if the broker is gone.
            let _ = t.join();
        }
    }
}
