//! The demo's MQTT devices: every device of the configuration without a Modbus binding (gates,
//! elevators, indoor sensors, the fire alarm panel) publishes its telemetry to the embedded
//! broker, values moved by the simulator's generators (`sim::DeviceValues`), `ts` from the
//! demo clock. The fault injector changes what they report through `Overrides`; a device whose
//! report changed publishes at once instead of at its next interval.
//!
//! Rooms whose heating loop has lost its supply temperature cool towards 13 °C (a time
//! constant of 15 simulated minutes: below 18 °C within about 7 minutes) and warm back once it
//! is repaired (20 minutes).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Map, Value as Json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::clock::{Clock, ScaledClock};
use crate::model::{Device, Value};
use crate::sim::DeviceValues;

/// How often the devices' values move (real time).
const TICK: Duration = Duration::from_millis(100);
/// How far below its normal temperature a room of an unheated building falls at most.
const COLD_OFFSET_C: f64 = -8.0;
/// Time constants (simulated seconds) of cooling and of warming up again.
const COOL_TAU_S: f64 = 900.0;
const WARM_TAU_S: f64 = 1200.0;

/// What the fault injector makes MQTT devices report.
#[derive(Debug, Default)]
pub struct Overrides {
    /// Elevators with people trapped.
    pub entrapped: HashSet<String>,
    /// Devices reporting a fault code.
    pub fault_codes: HashMap<String, i64>,
    /// Gates whose door stands open.
    pub door_open: HashSet<String>,
    /// Buildings whose heating loop has failed.
    pub cold_buildings: HashSet<String>,
    /// Devices to publish at once (their report changed).
    pub dirty: HashSet<String>,
}

/// Shared between the injector and the devices.
pub type SharedOverrides = Arc<Mutex<Overrides>>;

/// Locks the overrides (a panic elsewhere does not stop the demo).
pub fn lock(o: &SharedOverrides) -> std::sync::MutexGuard<'_, Overrides> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

struct SimDevice {
    id: String,
    category: String,
    building: String,
    topic: String,
    values: DeviceValues,
    /// Real time between two reports.
    period: Duration,
    next_due: Instant,
    /// Indoor sensors: degrees below normal because the building is unheated.
    cold: f64,
}

/// The MQTT devices of the demo.
pub struct MqttDevices {
    devices: Vec<SimDevice>,
    clock: Arc<ScaledClock>,
    overrides: SharedOverrides,
    broker: SocketAddr,
}

impl MqttDevices {
    /// The devices of `devices` that have no Modbus binding, each reporting every `period_of`
    /// (real time) on `estate/{site}/{category}/{device}/telemetry`.
    pub fn new(
        devices: &[Device],
        period_of: impl Fn(&Device) -> Duration,
        seed: u64,
        clock: Arc<ScaledClock>,
        overrides: SharedOverrides,
        broker: SocketAddr,
    ) -> MqttDevices {
        let now = Instant::now();
        let devices = devices
            .iter()
            .filter(|d| !d.polled)
            .enumerate()
            .map(|(i, d)| {
                let signals: Vec<_> = d
                    .profile
                    .signals
                    .iter()
                    .map(|s| (s.name.clone(), s.ty.clone()))
                    .collect();
                let period = period_of(d);
                SimDevice {
                    id: d.id.clone(),
                    category: d.category.clone(),
                    building: d.building.clone(),
                    topic: format!("estate/{}/{}/{}/telemetry", d.site, d.category, d.id),
                    values: DeviceValues::new(&d.category, &signals, seed, &d.id),
                    period,
                    // Spread the first reports over the first second.
                    next_due: now + Duration::from_millis(50 * (i as u64 % 20)),
                    cold: 0.0,
                }
            })
            .collect();
        MqttDevices {
            devices,
            clock,
            overrides,
            broker,
        }
    }

    /// How many devices publish.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Publishes until `shutdown`, then disconnects.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut opts = MqttOptions::new(
            "estate-demo-devices",
            self.broker.ip().to_string(),
            self.broker.port(),
        );
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let loop_stop = shutdown.clone();
        let events = tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = loop_stop.cancelled() => break,
                    ev = eventloop.poll() => match ev {
                        Ok(_) => backoff.reset(),
                        Err(e) => {
                            warn!(error = %e, "Demo devices: MQTT connection failed; retrying.");
                            tokio::select! {
                                _ = loop_stop.cancelled() => break,
                                _ = tokio::time::sleep(backoff.next_delay()) => {}
                            }
                        }
                    }
                }
            }
            // Let the DISCONNECT out.
            let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
        });
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = self.clock.elapsed();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let sim_now = self.clock.elapsed();
            let dt = sim_now.saturating_sub(last);
            last = sim_now;
            let now = Instant::now();
            let (payloads, ov_dirty) = {
                let mut ov = lock(&self.overrides);
                let dirty = std::mem::take(&mut ov.dirty);
                let mut out = Vec::new();
                for d in &mut self.devices {
                    d.values.step(dt);
                    if d.category == "indoor_sensor" {
                        let (target, tau) = if ov.cold_buildings.contains(&d.building) {
                            (COLD_OFFSET_C, COOL_TAU_S)
                        } else {
                            (0.0, WARM_TAU_S)
                        };
                        d.cold += (target - d.cold) * (1.0 - (-dt.as_secs_f64() / tau).exp());
                    }
                    if now >= d.next_due || dirty.contains(&d.id) {
                        d.next_due = now + d.period;
                        out.push((d.topic.clone(), report(d, &ov, self.clock.now_ms())));
                    }
                }
                (out, dirty.len())
            };
            if ov_dirty > 0 {
                debug!(devices = ov_dirty, "Demo devices report a change at once.");
            }
            for (topic, payload) in payloads {
                // `try_publish`: a full request queue (broker gone) drops a report rather than
                // stalling every device.
                if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
                    debug!(error = %e, "Demo device report dropped.");
                }
            }
        }
        let _ = client.try_disconnect();
        let _ = events.await;
    }
}

/// A device's telemetry JSON now: its simulated values with the injected faults on top.
fn report(d: &SimDevice, ov: &Overrides, ts_ms: i64) -> Vec<u8> {
    let mut m = Map::new();
    for (name, _) in d.values.signals() {
        if let Some(v) = d.values.get(name) {
            m.insert(name.to_owned(), to_json(v));
        }
    }
    let code = ov.fault_codes.get(&d.id).copied().unwrap_or(0);
    match d.category.as_str() {
        "elevator" => {
            let trapped = ov.entrapped.contains(&d.id);
            m.insert("entrapment".into(), json!(trapped));
            m.insert("fault_code".into(), json!(code));
            m.insert("running".into(), json!(!trapped && code == 0));
        }
        "access_gate" => {
            m.insert("fault_code".into(), json!(code));
            let door = if ov.door_open.contains(&d.id) {
                "open"
            } else {
                "closed"
            };
            m.insert("door".into(), json!(door));
        }
        "indoor_sensor" => {
            if let Some(Value::Float(t)) = d.values.get("indoor_temp_c") {
                m.insert("indoor_temp_c".into(), json!(round(t + d.cold, 1)));
            }
        }
        _ => {
            if m.contains_key("fault_code") {
                m.insert("fault_code".into(), json!(code));
            }
        }
    }
    m.insert("ts".into(), json!(ts_ms));
    serde_json::to_vec(&Json::Object(m)).unwrap_or_default()
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Float(f) => json!(round(*f, 2)),
        Value::Int(i) => json!(i),
        Value::Bool(b) => json!(b),
        Value::Str(s) => json!(s),
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalType;

    fn device(category: &str, signals: &[(&str, SignalType)]) -> SimDevice {
        let signals: Vec<_> = signals
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        SimDevice {
            id: "X".into(),
            category: category.into(),
            building: "1号楼".into(),
            topic: String::new(),
            values: DeviceValues::new(category, &signals, 1, "X"),
            period: Duration::from_secs(1),
            next_due: Instant::now(),
            cold: 0.0,
        }
    }

    #[test]
    fn an_entrapped_elevator_reports_it_and_stops() {
        let d = device(
            "elevator",
            &[
                ("entrapment", SignalType::Bool),
                ("running", SignalType::Bool),
                ("floor", SignalType::Int),
            ],
        );
        let mut ov = Overrides::default();
        let j: Json = serde_json::from_slice(&report(&d, &ov, 5)).unwrap();
        assert_eq!(j["entrapment"], json!(false));
        assert_eq!(j["running"], json!(true));
        assert_eq!(j["ts"], json!(5));
        ov.entrapped.insert("X".into());
        let j: Json = serde_json::from_slice(&report(&d, &ov, 6)).unwrap();
        assert_eq!(j["entrapment"], json!(true));
        assert_eq!(j["running"], json!(false));
    }

    #[test]
    fn rooms_report_their_cooling() {
        let mut d = device("indoor_sensor", &[("indoor_temp_c", SignalType::Float)]);
        let base = match d.values.get("indoor_temp_c") {
            Some(Value::Float(t)) => *t,
            other => panic!("{other:?}"),
        };
        d.cold = -4.0;
        let j: Json = serde_json::from_slice(&report(&d, &Overrides::default(), 0)).unwrap();
        let t = j["indoor_temp_c"].as_f64().unwrap();
        assert!((t - (base - 4.0)).abs() < 0.06, "{t} vs {base}");
    }
}
