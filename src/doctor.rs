//! `estate-gateway doctor -c FILE`: the first thing an integrator runs on site. Connects to
//! everything the configuration names, once, on connections of its own, and prints a table of
//! what works and what does not, each failure with the fix:
//!
//! - the broker: connect (own client id `<client_id>-doctor`, clean session, so the gateway's
//!   persistent session is left alone) and subscribe to the telemetry and status filters;
//! - the store: write one point to the `gateway_probe` measurement and read the store's answer
//!   (2xx, or the status and text it refused with);
//! - each Modbus device: one read (the first request of its model's poll plan) from its unit on
//!   its endpoint.
//!
//! Exit code 0 when every check passed, 1 otherwise (2 for a configuration that does not load,
//! as for every command).

use std::time::Duration;

use crate::config::{Config, MqttSettings, StoreSettings};
use crate::mqtt::link::{self, LinkEvent};

/// How long the broker check waits for the connection and the subscription.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the store check waits for the store's answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(15);

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `broker`, `store`, `modbus`.
    pub part: &'static str,
    /// What was checked: a URL, a device on an endpoint.
    pub target: String,
    /// `Ok(what worked)` or `Err(what failed)`.
    pub result: Result<String, String>,
    /// What to do about a failure (empty when it worked).
    pub fix: String,
}

impl Check {
    fn ok(part: &'static str, target: String, what: String) -> Check {
        Check {
            part,
            target,
            result: Ok(what),
            fix: String::new(),
        }
    }

    fn failed(part: &'static str, target: String, what: String, fix: String) -> Check {
        Check {
            part,
            target,
            result: Err(what),
            fix,
        }
    }
}

/// Runs every check the configuration calls for.
pub async fn run(cfg: &Config, now_ms: i64) -> Vec<Check> {
    let mut out = Vec::new();
    match &cfg.mqtt {
        Some(m) => out.push(broker(m).await),
        None => out.push(Check::ok(
            "broker",
            "-".into(),
            "no [mqtt] configured: nothing to check".into(),
        )),
    }
    match &cfg.store {
        Some(s) => out.push(store(s, &cfg.gateway.site, &cfg.gateway.host, now_ms).await),
        None => out.push(Check::ok(
            "store",
            "-".into(),
            "no [store] configured: nothing to check".into(),
        )),
    }
    // Endpoints one after another and their devices in order: one transaction at a time, as
    // a serial line needs (and the poller does).
    for (idx, binding) in &cfg.modbus.bindings {
        let device = cfg.inventory.get(*idx);
        let ep = &cfg.modbus.endpoints[binding.endpoint];
        let target = format!(
            "{} ({} unit {}, model {})",
            device.id, ep.url, binding.unit, binding.model.name
        );
        let check =
            match crate::source::modbus::poller::probe(ep, binding.unit, &binding.model).await {
                Ok(what) => Check::ok("modbus", target, format!("read {what}")),
                Err(e) => {
                    let fix = modbus_fix(&e, &ep.name, &ep.url, binding.unit, &binding.model.name);
                    Check::failed("modbus", target, e.to_string(), fix)
                }
            };
        out.push(check);
    }
    out
}

fn modbus_fix(
    e: &crate::source::modbus::poller::ProbeError,
    endpoint: &str,
    url: &str,
    unit: u8,
    model: &str,
) -> String {
    use crate::source::modbus::poller::ProbeError as P;
    match e {
        P::Connect(_) => format!(
            "check that the device or serial server at {url} is on and reachable from here (modbus.endpoints `{endpoint}`: host, port or serial port and its permissions)"
        ),
        P::Timeout(_) | P::Transport(_) => format!(
            "unit {unit} did not answer on `{endpoint}`: check the device's unit id (devices[].modbus.unit), its wiring and, on a serial line, baud rate and parity in the endpoint URL; raise the endpoint's `timeout` for a slow device"
        ),
        P::Exception(_) => format!(
            "the device refuses this read: check the register map `{model}` (table and 0-based addresses) against the device's manual"
        ),
        P::Empty => format!("give the model `{model}` at least one register"),
    }
}

/// Connects and subscribes on a connection of its own.
async fn broker(m: &MqttSettings) -> Check {
    let target = m.url.clone();
    let client_id = format!("{}-doctor", m.client_id);
    let (client, mut events) = link::connect(m, &client_id, false, 10);
    let filters = [m.telemetry_topic.filter(), m.status_topic.filter()];
    // Queued until the connection is up; one SUBSCRIBE, one SUBACK.
    let _ = client.try_subscribe_many(filters.to_vec());
    let outcome = tokio::time::timeout(BROKER_TIMEOUT, async {
        loop {
            match events.poll().await {
                Ok(LinkEvent::SubAck { refused }) => {
                    if !refused.is_empty() {
                        return Err((
                            format!(
                                "connected, but the subscription was refused ({})",
                                refused.join("; ")
                            ),
                            format!(
                                "allow client `{client_id}` (and `{}`) to read {} in the broker's ACL",
                                m.client_id,
                                filters.join(" and ")
                            ),
                        ));
                    }
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.refused().is_some() => {
                    let code = e.refused().unwrap_or_default();
                    return Err((
                        format!("the broker refused the connection: {code}"),
                        "check mqtt.username and the password (mqtt.password_file or the variable named by mqtt.password_env), and that the broker allows this client".to_owned(),
                    ))
                }
                Err(e) => {
                    return Err((
                        format!("cannot connect: {e}"),
                        format!(
                            "check that the broker runs at {} and is reachable from here (mqtt.url; for mqtts:// a private CA needs mqtt.ca_file)",
                            m.url
                        ),
                    ))
                }
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    match outcome {
        Ok(Ok(())) => Check::ok(
            "broker",
            target,
            format!("connected as `{client_id}`, subscribed to {}", filters.join(", ")),
        ),
        Ok(Err((what, fix))) => Check::failed("broker", target, what, fix),
        Err(_) => Check::failed(
            "broker",
            target,
            format!(
                "no connection and subscription within {}",
                humantime::format_duration(BROKER_TIMEOUT)
            ),
            format!(
                "check that {} is an MQTT broker and reachable (a firewall that drops packets looks like this)",
                m.url
            ),
        ),
    }
}

/// Writes one `gateway_probe` point and reads the store's answer.
async fn store(s: &StoreSettings, site: &str, host: &str, now_ms: i64) -> Check {
    let target = format!("{} (org `{}`, bucket `{}`)", s.url, s.org, s.bucket);
    let line = influxdb_line_protocol::LineProtocolBuilder::new()
        .measurement("gateway_probe")
        .tag("host", host)
        .tag("site", site)
        .field("ok", true)
        .timestamp(now_ms)
        .close_line()
        .build();
    match tokio::time::timeout(STORE_TIMEOUT, crate::sink::store::write_lines(s, line)).await {
        Ok(Ok(())) => Check::ok(
            "store",
            target,
            "wrote a `gateway_probe` point; the store accepted it".into(),
        ),
        Ok(Err(e)) => {
            let msg = format!("{e:#}");
            let fix = match http_status(&msg) {
                Some(401 | 403) => "the store refused the token: check store.token_file or the variable named by store.token_env (the token needs write access to the bucket)".to_owned(),
                Some(404) => format!(
                    "create org `{}` and bucket `{}` in the store, or correct store.org and store.bucket",
                    s.org, s.bucket
                ),
                Some(_) => "the store answered with an error: see its message and the store's log".to_owned(),
                None => {
                    format!(
                        "start the store or correct store.url: nothing answers at {} from here",
                        s.url
                    )
                }
            };
            let what = msg
                .split("; check that the store is up")
                .next()
                .unwrap_or(&msg)
                .to_owned();
            Check::failed("store", target, what, fix)
        }
        Err(_) => Check::failed(
            "store",
            target,
            format!(
                "no answer within {}",
                humantime::format_duration(STORE_TIMEOUT)
            ),
            format!(
                "check that {} is the store's write API and reachable",
                s.url
            ),
        ),
    }
}

/// The status of the store's answer in a write error (`HTTP 401: …`); `None` when no answer
/// came (connection refused, DNS, TLS).
fn http_status(msg: &str) -> Option<u16> {
    msg.match_indices("HTTP ").find_map(|(i, _)| {
        let digits = msg.get(i + 5..i + 8)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    })
}

/// The table: one row per check, the fix under a failure; then how many passed.
pub fn render(checks: &[Check]) -> String {
    let w_part = checks
        .iter()
        .map(|c| c.part.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let w_target = checks
        .iter()
        .map(|c| c.target.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<w_part$}  {:<w_target$}  {:<6}  {}\n",
        "CHECK", "TARGET", "RESULT", "DETAIL"
    );
    for c in checks {
        let (result, detail) = match &c.result {
            Ok(d) => ("OK", d),
            Err(d) => ("FAILED", d),
        };
        let pad = w_target.saturating_sub(c.target.chars().count());
        out.push_str(&format!(
            "{:<w_part$}  {}{}  {:<6}  {}\n",
            c.part,
            c.target,
            " ".repeat(pad),
            result,
            detail
        ));
        if !c.fix.is_empty() {
            out.push_str(&format!(
                "{:<w_part$}  {:<w_target$}  {:<6}  fix: {}\n",
                "", "", "", c.fix
            ));
        }
    }
    let ok = checks.iter().filter(|c| c.result.is_ok()).count();
    out.push_str(&format!("\n{ok} of {} checks passed.\n", checks.len()));
    out
}

/// Whether every check passed.
pub fn all_ok(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.result.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_of_the_stores_answer() {
        assert_eq!(
            http_status("failed: HTTP 401: the store refused the token"),
            Some(401)
        );
        assert_eq!(
            http_status("Error while processing the HTTP request: connection refused"),
            None
        );
        assert_eq!(
            http_status("HTTP request: x; HTTP 404: not found"),
            Some(404)
        );
        assert_eq!(http_status("HTTP 4"), None);
    }

    #[test]
    fn the_table_shows_failures_with_their_fix() {
        let checks = vec![
            Check::ok("broker", "mqtt://b:1883".into(), "connected".into()),
            Check::failed(
                "store",
                "http://s:8086".into(),
                "connection refused".into(),
                "start the store".into(),
            ),
        ];
        let t = render(&checks);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CHECK   TARGET"), "{t}");
        assert!(
            lines[1].starts_with("broker  mqtt://b:1883  OK      connected"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("store   http://s:8086  FAILED  connection refused"),
            "{t}"
        );
        assert!(
            lines[3].trim_start().starts_with("fix: start the store"),
            "{t}"
        );
        assert!(t.ends_with("1 of 2 checks passed.\n"), "{t}");
        assert!(!all_ok(&checks));
        assert!(all_ok(&checks[..1]));
    }
}
