//! The demo's embedded MQTT broker: `rumqttd`, configured in code, serving MQTT 3.1.1 (what
//! rumqttc 0.25 speaks) on one loopback address. rumqttd runs its router and listener on
//! threads of its own and has no stop call: the broker lives until the process exits, which
//! is right after the demo has shut the gateway down.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// How long the broker may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the broker on `addr` (port 0: a free port) and returns the address it listens on
/// once it accepts connections.
pub fn start(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let addr = if addr.port() == 0 {
        // rumqttd binds by itself and does not report the port: find a free one first.
        let l = TcpListener::bind(addr).context("finding a free port for the MQTT broker")?;
        l.local_addr()?
    } else {
        // A taken port would only be logged by rumqttd's listener thread: check it here.
        TcpListener::bind(addr)
            .with_context(|| format!("the MQTT broker cannot listen on {addr}; pass --mqtt 127.0.0.1:0 for any free port"))?
            .local_addr()?
    };
    let server = ServerSettings {
        name: "demo-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 1000,
            // One commitlog per subscribed filter: 10 segments of 4 MB is plenty for a demo.
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "The embedded MQTT broker stopped.");
            }
        })
        .context("starting the MQTT broker thread")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            bail!("the embedded MQTT broker did not accept connections on {addr} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
