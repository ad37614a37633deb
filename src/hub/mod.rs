//! `estate-gateway hub` (README "Fleet"): many estates side by side.
//!
//! The hub subscribes (QoS 1, persistent session `mqtt.client_id`, default `estate-hub`) to
//! every site's live summary (`mqtt.kpi_topic` → `estate/+/kpi`), scorecards
//! (`mqtt.assessment_topic` → `estate/+/assessment/+`) and alarm events (`mqtt.alarm_topic`
//! → `estate/+/alarms/+/+`), writes each into its SQLite file (`store`) and only then
//! acknowledges it, so a restart loses nothing. It serves `GET /api/estates` (the fleet
//! table), `GET /api/alarms` (the central alarm list) and `GET /api/league?period=` (`league`)
//! on `hub.listen`; `hub league` prints the same league. Every stored message also goes out on
//! `Hub::live` (a broadcast, `GET /api/events` as SSE), and `/` serves the fleet dashboard
//! (`dashboard`).

pub mod dashboard;
pub mod http;
pub mod league;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::HubSettings;
use crate::mqtt::link::{self, LinkEvent};
use league::{Assessment, Entry, League};
use store::HubStore;

/// The summary schema the hub reads (`schema` of the kpi and assessment messages).
pub const SCHEMA: u64 = 1;

/// How many live events a slow SSE client may be behind before it gets `lagged`.
const LIVE_BUFFER: usize = 1024;

/// One stored message, as `GET /api/events` streams it: `kind` is `kpi`, `assessment` or
/// `alarm`; `json` is `{"site", "ts", "received_ts", …}` (an alarm's whole event, a
/// summary's site and ts, a scorecard's site and period).
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub kind: &'static str,
    pub json: Arc<str>,
}

/// What the HTTP handlers and the subscriber share.
pub struct Hub {
    pub settings: HubSettings,
    pub store: Mutex<HubStore>,
    pub clock: Arc<dyn Clock>,
    /// Every stored message, after it is in the store (`GET /api/events`).
    pub live: tokio::sync::broadcast::Sender<LiveEvent>,
    /// Cancelled when the hub stops: ends the event streams, so shutdown does not wait on them.
    pub closing: CancellationToken,
}

impl Hub {
    pub fn open(settings: HubSettings, clock: Arc<dyn Clock>) -> anyhow::Result<Hub> {
        let store = HubStore::open(&settings.data_file)?;
        Ok(Hub {
            settings,
            store: Mutex::new(store),
            clock,
            live: tokio::sync::broadcast::channel(LIVE_BUFFER).0,
            closing: CancellationToken::new(),
        })
    }

    pub(crate) fn with_store<T>(
        &self,
        f: impl FnOnce(&HubStore) -> rusqlite::Result<T>,
    ) -> anyhow::Result<T> {
        let s = self
            .store
            .lock()
            .map_err(|_| anyhow::anyhow!("the hub store lock is poisoned"))?;
        f(&s).map_err(|e| anyhow::anyhow!("hub file {}: {e}", self.settings.data_file.display()))
    }

    /// Every site the hub knows: configured in `[estates]` or heard from.
    fn sites(&self) -> anyhow::Result<Vec<String>> {
        let mut sites: Vec<String> = self.settings.estates.keys().cloned().collect();
        for (s, _) in self.with_store(|s| s.heard_sites())? {
            if !sites.contains(&s) {
                sites.push(s);
            }
        }
        sites.sort();
        Ok(sites)
    }

    fn stale(&self, summary_ts: Option<i64>, now: i64) -> bool {
        summary_ts.is_none_or(|ts| now - ts > self.settings.stale_after.as_millis() as i64)
    }

    /// The league of a (normalized) period.
    pub fn league(&self, period: &str) -> anyhow::Result<League> {
        let now = self.clock.now_ms();
        let prev = league::previous_period(period);
        let parse = |rows: Vec<(String, Json)>| -> BTreeMap<String, Assessment> {
            rows.into_iter()
                .filter_map(|(site, body)| {
                    serde_json::from_value::<Assessment>(body)
                        .ok()
                        .map(|a| (site, a))
                })
                .collect()
        };
        let current = parse(self.with_store(|s| s.assessments(period))?);
        let previous = match &prev {
            Some(p) => parse(self.with_store(|s| s.assessments(p))?),
            None => BTreeMap::new(),
        };
        let summaries: BTreeMap<String, i64> = self
            .with_store(|s| s.summaries())?
            .into_iter()
            .map(|s| (s.site, s.ts))
            .collect();
        let entries: Vec<Entry> = self
            .sites()?
            .into_iter()
            .map(|site| Entry {
                tags: self
                    .settings
                    .estates
                    .get(&site)
                    .cloned()
                    .unwrap_or_default(),
                current: current.get(&site).cloned(),
                previous: previous.get(&site).cloned(),
                stale: self.stale(summaries.get(&site).copied(), now),
                site,
            })
            .collect();
        Ok(league::league(period, &entries, &self.settings.league))
    }

    /// The fleet table (`GET /api/estates`).
    pub fn estates(&self) -> anyhow::Result<Json> {
        let now = self.clock.now_ms();
        let summaries: BTreeMap<String, store::StoredSummary> = self
            .with_store(|s| s.summaries())?
            .into_iter()
            .map(|s| (s.site.clone(), s))
            .collect();
        let heard: BTreeMap<String, i64> =
            self.with_store(|s| s.heard_sites())?.into_iter().collect();
        let alarms = self.with_store(|s| s.alarms(false, 100_000))?;
        let mut rows = Vec::new();
        for site in self.sites()? {
            let tags = self
                .settings
                .estates
                .get(&site)
                .cloned()
                .unwrap_or_default();
            let sum = summaries.get(&site);
            let k = sum.map(|s| &s.body);
            let get = |path: &[&str]| -> Json {
                let mut v = match k {
                    Some(v) => v,
                    None => return Json::Null,
                };
                for p in path {
                    v = match v.get(p) {
                        Some(x) => x,
                        None => return Json::Null,
                    };
                }
                v.clone()
            };
            let mine: Vec<&Json> = alarms
                .iter()
                .filter(|a| a["site"].as_str() == Some(site.as_str()))
                .collect();
            let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
            for a in &mine {
                *by_severity
                    .entry(a["severity"].as_str().unwrap_or("unknown").to_owned())
                    .or_default() += 1;
            }
            let oldest = mine
                .iter()
                .filter(|a| a["acknowledged"].is_null())
                .min_by_key(|a| a["raised_ts"].as_i64().unwrap_or(i64::MAX));
            rows.push(json!({
                "site": site,
                "name": tags.name, "district": tags.district, "company": tags.company,
                "dashboard_url": tags.dashboard_url,
                "summary_ts": sum.map(|s| s.ts),
                "last_heard_ts": heard.get(&site),
                "stale": self.stale(sum.map(|s| s.ts), now),
                "intactness": get(&["intactness", "instant"]),
                "intactness_day": get(&["intactness", "rate_day"]),
                "response_timely_day": get(&["response", "day", "timely_rate"]),
                "heating_in_season": get(&["heating", "in_season"]),
                "heating_compliance_day": get(&["heating", "compliance_day"]),
                "heating_compliance_month": get(&["heating", "compliance_month"]),
                "active_alarms": by_severity,
                "active_alarm_count": mine.len(),
                "oldest_unacknowledged": oldest.map(|a| json!({
                    "id": a["id"], "raised_ts": a["raised_ts"], "severity": a["severity"],
                    "device": a["device"], "message": a["message"],
                })),
            }));
        }
        Ok(
            json!({"ts": now, "stale_after_s": self.settings.stale_after.as_secs(), "estates": rows}),
        )
    }

    /// Takes one received message; returns whether it was understood (stored).
    fn take(&self, topic: &str, payload: &[u8]) -> anyhow::Result<bool> {
        let m = &self.settings.mqtt;
        let now = self.clock.now_ms();
        let Ok(body) = serde_json::from_slice::<Json>(payload) else {
            return Ok(false);
        };
        if let Some((site, _)) = m.kpi_topic.matches(topic) {
            if body["schema"].as_u64() != Some(SCHEMA) {
                return Ok(false);
            }
            let ts = body["ts"].as_i64().unwrap_or(now);
            self.with_store(|s| s.put_summary(site, ts, &body, now))?;
            self.tell("kpi", json!({"site": site, "ts": ts, "received_ts": now}));
            return Ok(true);
        }
        if let Some((site, period)) = m.assessment_topic.matches(topic) {
            if body["schema"].as_u64() != Some(SCHEMA) {
                return Ok(false);
            }
            let ts = body["ts"].as_i64().unwrap_or(now);
            self.with_store(|s| s.put_assessment(site, period, ts, &body, now))?;
            self.tell(
                "assessment",
                json!({"site": site, "period": period, "ts": ts, "received_ts": now}),
            );
            return Ok(true);
        }
        // An alarm event (the topic filter is the alarm topic's).
        let (Some(site), Some(id)) = (body["site"].as_str(), body["id"].as_str()) else {
            return Ok(false);
        };
        let ts = body["ts"].as_i64().unwrap_or(now);
        let active = body["active"].as_bool().unwrap_or(false);
        self.with_store(|s| s.put_alarm(site, id, ts, active, &body, now))?;
        let mut ev = body.clone();
        ev["received_ts"] = json!(now);
        self.tell("alarm", ev);
        Ok(true)
    }

    /// Sends a stored message to the live stream (nobody listening is fine).
    fn tell(&self, kind: &'static str, json: Json) {
        let _ = self.live.send(LiveEvent {
            kind,
            json: json.to_string().into(),
        });
    }
}

/// Runs the hub until `shutdown`: the subscriber and the HTTP API.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(hub.settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("hub.listen {}: {e}", hub.settings.listen))?;
    info!(listen = %hub.settings.listen, "Hub HTTP API listening.");
    let app = http::router(hub.clone());
    let stop = shutdown.clone();
    let closing = hub.closing.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stop.cancelled().await;
                closing.cancel();
            })
            .await
    });
    subscribe(hub, shutdown).await;
    server.await??;
    info!("Hub stopped.");
    Ok(())
}

async fn subscribe(hub: Arc<Hub>, shutdown: CancellationToken) {
    let m = &hub.settings.mqtt;
    let (client, mut eventloop) = link::connect(m, &m.client_id, true, 64);
    let filters = [
        m.kpi_topic.filter(),
        m.assessment_topic.filter(),
        m.alarm_topic.filter(),
    ];
    let mut backoff = Backoff::new(m.reconnect_min, m.reconnect_max);
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(LinkEvent::ConnAck { .. }) => {
                backoff.reset();
                if let Err(e) = client.try_subscribe_many(filters.to_vec()) {
                    warn!(error = %e, filters = ?filters, "Hub cannot subscribe.");
                }
            }
            Ok(LinkEvent::SubAck { refused }) if !refused.is_empty() => {
                warn!(reason = %refused.join("; "), filters = ?filters, "The MQTT broker refused a hub subscription; check its ACL.");
            }
            Ok(LinkEvent::SubAck { .. }) => {
                info!(filters = ?filters, "Hub subscribed.");
            }
            Ok(LinkEvent::Publish(p)) => {
                let (hub2, topic, payload) = (hub.clone(), p.topic.clone(), p.payload.clone());
                let r = tokio::task::spawn_blocking(move || hub2.take(&topic, &payload)).await;
                match r {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        warn!(topic = %p.topic, "Hub ignored a message it does not understand (not JSON, or another schema).")
                    }
                    Ok(Err(e)) => {
                        // Not acknowledged: the broker redelivers it after a reconnect.
                        warn!(error = format!("{e:#}"), "Hub could not store a message.");
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, "Hub could not store a message.");
                        continue;
                    }
                }
                let _ = client.ack(p.pkid, p.qos).await;
            }
            Ok(_) => {}
            Err(e) => {
                match e.reason() {
                    Some(reason) => {
                        warn!(reason = %reason, "The MQTT broker closed or refused the hub's connection; reconnecting.")
                    }
                    None => warn!(error = %e, "Hub lost its MQTT connection; reconnecting."),
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    let _ = client.disconnect().await;
}
