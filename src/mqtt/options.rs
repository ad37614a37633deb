//! rumqttc connection options from `MqttSettings`: broker address, persistent session with
//! manual acks (the source's defaults; the event sink overrides client id and session),
//! credentials and TLS (a configured CA file, or the system roots the config loaded).

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::config::MqttSettings;

/// The largest packet the gateway sends (subscriptions, acks, alarm events and states: a few
/// KiB at most). The incoming limit is `mqtt.max_packet_bytes`, large on purpose.
const MAX_OUTGOING_PACKET_BYTES: usize = 1024 * 1024;

/// Builds rumqttc options from the settings.
pub fn options(s: &MqttSettings) -> MqttOptions {
    let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(s.keep_alive)
        .set_inflight(s.inflight)
        .set_max_packet_size(s.max_packet_bytes, MAX_OUTGOING_PACKET_BYTES);
    if let Some(user) = &s.username {
        o.set_credentials(user, s.password.expose());
    }
    if s.tls {
        o.set_transport(tls_transport(s));
    }
    o
}

/// Builds rumqttc's MQTT v5 options from the settings (`mqtt.protocol = "v5"`): the same
/// address, credentials, TLS and manual acks, with the persistent session kept by a session
/// expiry interval (`mqtt.session_expiry`; clean start off) and a receive maximum
/// (`mqtt.receive_maximum`) bounding the QoS 1 messages the broker has in flight to us.
pub fn options_v5(s: &MqttSettings) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(&s.client_id, &s.host, s.port);
    let expiry = u32::try_from(s.session_expiry.as_secs()).unwrap_or(u32::MAX);
    let max_packet = u32::try_from(s.max_packet_bytes).unwrap_or(u32::MAX);
    o.set_clean_start(false)
        .set_manual_acks(true)
        .set_keep_alive(s.keep_alive)
        .set_outgoing_inflight_upper_limit(s.inflight)
        .set_session_expiry_interval(Some(expiry))
        .set_receive_maximum(Some(s.receive_maximum))
        .set_max_packet_size(Some(max_packet));
    if let Some(user) = &s.username {
        o.set_credentials(user, s.password.expose());
    }
    if s.tls {
        o.set_transport(tls_transport(s));
    }
    o
}

/// The TLS transport: a configured CA file, or the system roots the config loaded; the
/// client certificate when one is configured.
fn tls_transport(s: &MqttSettings) -> Transport {
    let client_auth = s
        .client_cert
        .as_ref()
        .map(|c| (c.cert_pem.clone(), c.key_pem.expose().as_bytes().to_vec()));
    let tls = match &s.ca_pem {
        Some(ca) => TlsConfiguration::Simple {
            ca: ca.clone(),
            alpn: None,
            client_auth,
        },
        // System roots, loaded and checked by the config (rumqttc's own default panics
        // inside the connection task when they cannot be loaded).
        None => {
            use rumqttc::tokio_rustls::rustls;
            let mut roots = rustls::RootCertStore::empty();
            let der = s.system_roots.iter().map(|c| c.clone().into());
            let _ = roots.add_parsable_certificates(der);
            let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
            let config = match client_auth {
                // Checked by the config (`mqtt.cert_file`), so this does not fail.
                Some((cert, key)) => {
                    let chain = rustls_pemfile::certs(&mut cert.as_slice())
                        .filter_map(Result::ok)
                        .collect();
                    match rustls_pemfile::private_key(&mut key.as_slice()) {
                        Ok(Some(key)) => builder.with_client_auth_cert(chain, key),
                        _ => Err(rustls::Error::General("no private key".into())),
                    }
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "The MQTT client certificate cannot be used; the TLS connection will fail.");
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    })
                }
                None => builder.with_no_client_auth(),
            };
            TlsConfiguration::Rustls(std::sync::Arc::new(config))
        }
    };
    Transport::tls_with_config(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_without_a_ca_file_uses_the_system_roots_the_config_loaded() {
        let dir = std::env::temp_dir().join(format!("gw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gw.toml");
        std::fs::write(
            &path,
            "[gateway]\nsite = \"s\"\n[mqtt]\nurl = \"mqtts://broker.example:8883\"\n",
        )
        .unwrap();
        let cfg = crate::config::load_with_env(&path, Default::default());
        let _ = std::fs::remove_dir_all(&dir);
        // Either the machine has CA certificates (then options build a TLS transport without
        // panicking), or the config says so up front.
        match cfg {
            Ok(cfg) => {
                let m = cfg.mqtt.unwrap();
                assert!(!m.system_roots.is_empty());
                let o = options(&m);
                assert_eq!(o.broker_address(), ("broker.example".to_owned(), 8883));
            }
            Err(e) => assert!(
                e.to_string().contains("needs the system's CA certificates"),
                "{e}"
            ),
        }
    }
}
