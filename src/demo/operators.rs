//! The demo's control-room operators (张伟, 李娜, …) and technicians (王师傅, …): they watch
//! `GET /api/alarms?active=true`, acknowledge each new alarm over the API after a realistic
//! delay — mostly within its class's target, sometimes late — and, for critical alarms with
//! an on-site target, report a technician on site (`POST /api/alarms/{id}/on_site`).
//!
//! Delays are simulated time. Each step carries its own `ts` (raised time + delay, as an app
//! that was offline would), so response times are exact whatever the polling granularity and
//! `--speed`; a step is sent once the demo clock has passed that time. An alarm that clears
//! before its operator gets to it is left alone (a transient alarm).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::{Clock, ScaledClock};

/// Real time between two looks at the alarm list.
const POLL: Duration = Duration::from_millis(250);
/// The duty operators of the control room (监控中心值班员).
const OPERATORS: &[&str] = &["张伟", "李娜", "刘洋", "陈静"];
/// The technicians who go on site.
const TECHNICIANS: &[&str] = &["王师傅", "赵师傅", "孙师傅"];
/// The share of alarms acknowledged (or reached) later than their target.
const LATE: f64 = 0.15;

/// What one alarm's people will do, in unix ms of the demo clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub operator: &'static str,
    pub ack_at_ms: i64,
    /// `(technician, when)` for critical alarms with an on-site target.
    pub on_site: Option<(&'static str, i64)>,
    acked: bool,
    on_site_done: bool,
}

/// Draws the plan for an alarm raised at `raised_ms` with the given targets (seconds).
pub fn plan(
    rng: &mut StdRng,
    raised_ms: i64,
    severity: &str,
    ack_target_s: f64,
    on_site_target_s: Option<f64>,
) -> Plan {
    let operator = OPERATORS[rng.random_range(0..OPERATORS.len())];
    let ack_s = if ack_target_s > 600.0 {
        // Minor alarms (target 24 h): looked at within the hour.
        rng.random_range(5.0..40.0) * 60.0
    } else if rng.random_bool(LATE) {
        rng.random_range(1.1..2.0) * ack_target_s
    } else {
        rng.random_range(0.2..0.85) * ack_target_s
    };
    let on_site = match on_site_target_s {
        Some(t) if severity == "critical" => {
            let tech = TECHNICIANS[rng.random_range(0..TECHNICIANS.len())];
            let s = if rng.random_bool(LATE) {
                rng.random_range(1.05..1.5) * t
            } else {
                rng.random_range(0.35..0.9) * t
            };
            Some((tech, raised_ms + (s.max(ack_s + 10.0) * 1000.0) as i64))
        }
        _ => None,
    };
    Plan {
        operator,
        ack_at_ms: raised_ms + (ack_s * 1000.0) as i64,
        on_site,
        acked: false,
        on_site_done: false,
    }
}

/// The operators at work.
pub struct Operators {
    pub http: SocketAddr,
    pub token: String,
    pub clock: Arc<ScaledClock>,
    pub seed: u64,
}

impl Operators {
    pub async fn run(self, shutdown: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "Demo operators cannot make an HTTP client; nobody will acknowledge.");
                return;
            }
        };
        let base = format!("http://{}", self.http);
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x6f70_6572_6174_6f72);
        let mut plans: HashMap<String, Plan> = HashMap::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let alarms = match get_alarms(&client, &base).await {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "Demo operators could not read the alarms.");
                    continue;
                }
            };
            let now = self.clock.now_ms();
            plans.retain(|id, _| alarms.iter().any(|a| a["id"].as_str() == Some(id)));
            for a in &alarms {
                let Some(id) = a["id"].as_str() else { continue };
                let p = plans.entry(id.to_owned()).or_insert_with(|| {
                    plan(
                        &mut rng,
                        a["raised_ts"].as_i64().unwrap_or(now),
                        a["severity"].as_str().unwrap_or(""),
                        a["ack_target_s"].as_f64().unwrap_or(180.0),
                        a["on_site_target_s"].as_f64(),
                    )
                });
                let acked = p.acked || !a["acknowledged"].is_null();
                if !acked && now >= p.ack_at_ms {
                    let by = p.operator;
                    if step(&client, &base, &self.token, id, "ack", by, p.ack_at_ms).await {
                        info!(alarm = %id, device = a["device"].as_str().unwrap_or(""),
                              by, response_s = (p.ack_at_ms - a["raised_ts"].as_i64().unwrap_or(p.ack_at_ms)) as f64 / 1000.0,
                              target_s = a["ack_target_s"].as_f64().unwrap_or(0.0),
                              "Demo operator acknowledged an alarm.");
                    }
                    p.acked = true;
                }
                if let Some((tech, at)) = p.on_site {
                    if p.acked && !p.on_site_done && a["on_site"].is_null() && now >= at {
                        if step(&client, &base, &self.token, id, "on_site", tech, at).await {
                            info!(alarm = %id, device = a["device"].as_str().unwrap_or(""),
                                  by = tech, "Demo technician reported on site.");
                        }
                        p.on_site_done = true;
                    }
                }
            }
        }
    }
}

async fn get_alarms(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<Json>> {
    let body = client
        .get(format!("{base}/api/alarms?active=true"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Posts one lifecycle step; whether the gateway took it.
async fn step(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    what: &str,
    by: &str,
    ts_ms: i64,
) -> bool {
    let body = json!({"by": by, "ts": ts_ms}).to_string();
    let r = client
        .post(format!("{base}/api/alarms/{id}/{what}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            // E.g. the alarm cleared in the meantime.
            debug!(alarm = %id, status = r.status().as_u16(), step = what, "Demo operator step refused.");
            false
        }
        Err(e) => {
            debug!(alarm = %id, error = %e, step = what, "Demo operator step failed.");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_mostly_within_target_and_seeded() {
        let mut a = StdRng::seed_from_u64(1);
        let mut b = StdRng::seed_from_u64(1);
        let mut late = 0;
        for i in 0..1000 {
            let p = plan(&mut a, 0, "critical", 180.0, Some(1800.0));
            assert_eq!(p, plan(&mut b, 0, "critical", 180.0, Some(1800.0)), "{i}");
            assert!(p.ack_at_ms >= 36_000 && p.ack_at_ms <= 360_000);
            if p.ack_at_ms > 180_000 {
                late += 1;
            }
            let (_, at) = p.on_site.unwrap();
            assert!(at > p.ack_at_ms);
        }
        assert!((80..250).contains(&late), "{late} late of 1000");
        let minor = plan(&mut a, 0, "minor", 86_400.0, None);
        assert!(minor.on_site.is_none() && minor.ack_at_ms <= 40 * 60_000);
    }
}
