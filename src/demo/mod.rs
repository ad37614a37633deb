//! `estate-gateway demo` (DESIGN §8): the embedded default, in one process — an MQTT broker
//! (`rumqttd`), the estate of `configs/demo.toml` (锦绣花园: Modbus heating loops and fire pump
//! panels served by the simulator, MQTT gates, elevators, indoor sensors and the fire alarm
//! panel published by `devices`), faults injected on a seeded schedule (`faults`), operators
//! who acknowledge over the HTTP API (`operators`), and the gateway itself (`run`) with the
//! dashboard.
//!
//! `--speed N` runs a `ScaledClock` N× faster than the wall clock. The gateway gets the same
//! clock (Modbus poll stamps, timers, acknowledgments, KPI points), the MQTT devices stamp
//! `ts` with it, the simulator's values move N× faster, and the device intervals are divided
//! by N, floored at `MIN_PERIOD` of real time (heartbeat timeouts widened to match), so a day
//! passes in 86 400 / N seconds.

pub mod broker;
pub mod devices;
pub mod faults;
pub mod operators;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, ScaledClock};
use crate::config::{Config, Secret};
use crate::model::{DeviceIdx, Inventory, Value};
use crate::run::Running;
use crate::sim::{SimHandle, SimOptions, Simulator};
use crate::source::modbus::EndpointKind;
use devices::{lock, MqttDevices, Overrides, SharedOverrides};
use faults::{FaultKind, FaultPlan, PlannedFault, Targets};

/// The demo estate's configuration, compiled in so the demo runs from any directory.
pub const DEMO_TOML: &str = include_str!("../../configs/demo.toml");

/// The shortest real time between two polls or reports of a device, whatever the speed.
pub const MIN_PERIOD: Duration = Duration::from_millis(250);
/// MQTT devices report at least this often (simulated), even if their profile says less
/// often (indoor sensors: 5 min), so the dashboard moves.
const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the periodic KPI figures are computed in the demo (real time).
const KPI_INTERVAL: Duration = Duration::from_secs(5);
/// Real time between two steps of the Modbus simulator.
const SIM_TICK: Duration = Duration::from_millis(250);

/// `estate-gateway demo`'s options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub http: SocketAddr,
    /// Where the broker listens (port 0: any free port).
    pub mqtt: SocketAddr,
    pub seed: u64,
    pub speed: f64,
    pub data_dir: Option<PathBuf>,
    pub store_url: Option<String>,
}

/// A running demo.
pub struct Demo {
    running: Running,
    sim: Arc<SimHandle>,
    tasks: Vec<JoinHandle<()>>,
    /// The banner to print: addresses, token, what is simulated.
    pub banner: String,
}

/// What the configuration is adapted to.
#[derive(Debug, Clone)]
pub struct Adapt {
    pub data_dir: PathBuf,
    pub broker: SocketAddr,
    pub http: SocketAddr,
    pub api_token: String,
    pub store_url: Option<String>,
    pub speed: f64,
}

/// The demo configuration adapted in memory (see the module docs).
pub fn adapt(cfg: &mut Config, a: &Adapt) {
    cfg.gateway.data_dir = a.data_dir.clone();
    cfg.log.dir = a.data_dir.join(crate::config::LOG_DIR_NAME);
    if let Some(m) = &mut cfg.mqtt {
        m.url = format!("mqtt://{}", a.broker);
        m.host = a.broker.ip().to_string();
        m.port = a.broker.port();
        m.tls = false;
    }
    if let Some(h) = &mut cfg.http {
        h.listen = a.http;
        h.api_token = Secret::new(a.api_token.clone());
    }
    match (&a.store_url, &mut cfg.store) {
        (Some(url), Some(s)) => s.url = crate::config::SecretUrl::new(url.trim_end_matches('/')),
        _ => cfg.store = None,
    }
    cfg.assessment.kpi_interval = KPI_INTERVAL;
    let devices = cfg
        .inventory
        .devices()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            let (period, sim_period) = periods(&d, a.speed);
            if d.polled {
                // The poller runs on real time.
                d.interval = period;
            } else {
                d.interval = sim_period;
                d.heartbeat_timeout = d.heartbeat_timeout.max(sim_period * 3);
            }
            d
        })
        .collect();
    cfg.inventory = Arc::new(Inventory::new(devices));
}

/// A device's real period between polls/reports, and that period in simulated time.
fn periods(d: &crate::model::Device, speed: f64) -> (Duration, Duration) {
    let sim = if d.polled {
        d.interval
    } else {
        d.interval.min(MAX_REPORT_INTERVAL)
    };
    let real = sim.div_f64(speed).max(MIN_PERIOD);
    (real, real.mul_f64(speed))
}

/// Moves Modbus TCP endpoints whose port is taken to free ports.
fn free_modbus_ports(cfg: &mut Config) -> anyhow::Result<()> {
    for ep in &mut cfg.modbus.endpoints {
        if let EndpointKind::Tcp { host, port } | EndpointKind::RtuOverTcp { host, port } =
            &mut ep.kind
        {
            if TcpListener::bind((host.as_str(), *port)).is_err() {
                let l = TcpListener::bind((host.as_str(), 0))
                    .with_context(|| format!("no free port for Modbus endpoint {}", ep.name))?;
                let new = l.local_addr()?.port();
                warn!(endpoint = %ep.name, taken = *port, port = new,
                      "Modbus port taken; the demo serves this endpoint on another port.");
                *port = new;
                ep.url = format!("tcp://{host}:{new}");
            }
        }
    }
    Ok(())
}

impl Demo {
    /// Starts everything; stops when `shutdown` is cancelled (then call `wait`).
    pub async fn start(opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<Demo> {
        let speed = if opts.speed.is_finite() && opts.speed > 0.0 {
            opts.speed
        } else {
            anyhow::bail!("--speed must be a positive number, not {}", opts.speed);
        };
        let data_dir = match &opts.data_dir {
            Some(d) => d.clone(),
            None => {
                std::env::temp_dir().join(format!("estate-demo-{}", crate::clock::system_now_ms()))
            }
        };
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let toml = data_dir.join("demo.toml");
        std::fs::write(&toml, DEMO_TOML).with_context(|| format!("writing {}", toml.display()))?;
        let mut cfg = crate::config::load_with_env(&toml, std::env::vars().collect())
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let mqtt = opts.mqtt;
        let broker = tokio::task::spawn_blocking(move || broker::start(mqtt)).await??;
        let api_token = format!("demo-{:016x}", rand::random::<u64>());
        adapt(
            &mut cfg,
            &Adapt {
                data_dir: data_dir.clone(),
                broker,
                http: opts.http,
                api_token: api_token.clone(),
                store_url: opts.store_url.clone(),
                speed,
            },
        );
        free_modbus_ports(&mut cfg)?;

        let sim = Arc::new(
            Simulator::start_with(
                &cfg,
                SimOptions {
                    seed: opts.seed,
                    tick: None,
                    script: Vec::new(),
                },
            )
            .await?,
        );
        let clock = Arc::new(ScaledClock::new(speed));
        let running =
            crate::run::start_with_clock(&cfg, shutdown.clone(), clock.clone() as Arc<dyn Clock>)
                .await?;
        let http = running.http_addr.unwrap_or(opts.http);

        let mut tasks = Vec::new();
        // The simulator's values move with the demo clock.
        tasks.push(tokio::spawn({
            let sim = sim.clone();
            let stop = shutdown.clone();
            async move {
                let mut tick = tokio::time::interval(SIM_TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => sim.step(SIM_TICK.mul_f64(speed)),
                    }
                }
            }
        }));
        let overrides: SharedOverrides = Arc::default();
        let devices = MqttDevices::new(
            cfg.inventory.devices(),
            |d| periods(d, speed).0,
            opts.seed,
            clock.clone(),
            overrides.clone(),
            broker,
        );
        let mqtt_devices = devices.len();
        tasks.push(tokio::spawn(devices.run(shutdown.clone())));

        let targets = targets(&cfg);
        let plan = FaultPlan::new(opts.seed, targets.clone(), speed);
        tasks.push(tokio::spawn(inject(
            plan,
            clock.clone(),
            sim.clone(),
            overrides,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(
            operators::Operators {
                http,
                token: api_token.clone(),
                clock: clock.clone(),
                seed: opts.seed,
            }
            .run(shutdown.clone()),
        ));

        let modbus: Vec<String> = cfg
            .modbus
            .endpoints
            .iter()
            .map(|e| format!("{} ({})", e.name, e.kind))
            .collect();
        let banner = format!(
            "estate-gateway demo — 锦绣花园 (site {site}), seed {seed}, speed {speed}×\n\
             \x20 dashboard   http://{http}/\n\
             \x20 API token   {api_token}   (e.g. curl -X POST -H 'Authorization: Bearer {api_token}' -d '{{\"by\":\"me\"}}' http://{http}/api/alarms/ID/ack)\n\
             \x20 MQTT broker mqtt://{broker}   (embedded rumqttd)\n\
             \x20 Modbus      {modbus}\n\
             \x20 data dir    {data}   (journal; `estate-gateway report` reads it)\n\
             \x20 store       {store}\n\
             \x20 simulating  {n} devices: {mb} on Modbus ({loops} heating loops, {panels} fire pump panels), {mqtt_devices} on MQTT \
             (gates, elevators, indoor sensors, fire alarm panel); faults every 8–25 s (entrapment, fire-panel fault, \
             heating loss, fault codes, doors held open); operators 张伟, 李娜, 刘洋, 陈静 and technicians 王师傅, 赵师傅, 孙师傅\n\
             Ctrl-C stops everything.\n",
            site = cfg.gateway.site,
            seed = opts.seed,
            data = data_dir.display(),
            store = match &cfg.store {
                Some(s) => format!("{} (org {}, bucket {})", s.url, s.org, s.bucket),
                None => "none (pass --store-url, token in ESTATE_GW_STORE_TOKEN)".into(),
            },
            modbus = modbus.join(", "),
            n = cfg.inventory.len(),
            mb = cfg.inventory.len() - mqtt_devices,
            loops = targets.loops.len(),
            panels = targets.fire_panels.len(),
        );
        Ok(Demo {
            running,
            sim,
            tasks,
            banner,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.running.http_addr
    }

    /// Waits for shutdown, stops the simulated estate and flushes the gateway.
    pub async fn wait(self) {
        let _stats = self.running.wait().await;
        for t in self.tasks {
            let _ = t.await;
        }
        if let Ok(sim) = Arc::try_unwrap(self.sim) {
            sim.shutdown().await;
        }
        info!("Demo stopped.");
    }
}

/// The devices faults can happen to.
fn targets(cfg: &Config) -> Targets {
    let mut t = Targets::default();
    for (idx, d) in cfg.inventory.devices().iter().enumerate() {
        let id = d.id.clone();
        match (d.category.as_str(), cfg.modbus.binding(idx as DeviceIdx)) {
            ("elevator", None) => t.elevators.push(id),
            ("access_gate", None) => t.gates.push(id),
            ("fire_equipment", Some(b))
                if b.model.registers.iter().any(|r| r.signal == "fault_count") =>
            {
                t.fire_panels.push(id)
            }
            ("heating_loop", Some(_)) => t.loops.push((id, d.building.clone())),
            _ => {}
        }
    }
    t
}

/// Runs the fault schedule on the demo clock until `shutdown`.
async fn inject(
    mut plan: FaultPlan,
    clock: Arc<ScaledClock>,
    sim: Arc<SimHandle>,
    overrides: SharedOverrides,
    shutdown: CancellationToken,
) {
    let mut next = plan.next();
    let mut ends: Vec<PlannedFault> = Vec::new();
    loop {
        let first_end = ends
            .iter()
            .enumerate()
            .min_by_key(|(_, f)| f.at + f.duration)
            .map(|(i, f)| (i, f.at + f.duration));
        let (at, is_start) = match (&next, first_end) {
            (Some(n), Some((_, e))) if e <= n.at => (e, false),
            (Some(n), _) => (n.at, true),
            (None, Some((_, e))) => (e, false),
            (None, None) => break,
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(clock.real_until(at)) => {}
        }
        if is_start {
            if let Some(f) = next.take() {
                info!(device = %f.kind.device(), fault = %f.kind,
                      lasts_s = f.duration.as_secs(), "Demo fault begins.");
                apply(&f.kind, true, &sim, &overrides);
                ends.push(f);
            }
            next = plan.next();
        } else if let Some((i, _)) = first_end {
            let f = ends.swap_remove(i);
            info!(device = %f.kind.device(), fault = %f.kind, "Demo fault ends.");
            apply(&f.kind, false, &sim, &overrides);
        }
    }
}

/// Starts (`on`) or ends a fault.
fn apply(kind: &FaultKind, on: bool, sim: &SimHandle, overrides: &SharedOverrides) {
    let set = |device: &str, signal: &str, v: Value| {
        if let Err(e) = sim.set_value(device, signal, v) {
            warn!(error = %e, "The demo could not set a simulated value.");
        }
    };
    let mut ov = lock(overrides);
    let ov: &mut Overrides = &mut ov;
    match kind {
        FaultKind::Entrapment { device } => {
            if on {
                ov.entrapped.insert(device.clone());
            } else {
                ov.entrapped.remove(device);
            }
            ov.dirty.insert(device.clone());
        }
        FaultKind::FaultCode { device, code } => {
            if on {
                ov.fault_codes.insert(device.clone(), *code);
            } else {
                ov.fault_codes.remove(device);
            }
            ov.dirty.insert(device.clone());
        }
        FaultKind::DoorHeldOpen { device } => {
            if on {
                ov.door_open.insert(device.clone());
            } else {
                ov.door_open.remove(device);
            }
            ov.dirty.insert(device.clone());
        }
        FaultKind::FirePanel { device, faults } => {
            set(
                device,
                "fault_count",
                Value::Int(if on { *faults } else { 0 }),
            );
        }
        FaultKind::HeatingLoss { device, building } => {
            // The circulation pump stops; the supply temperature falls towards 30 °C (it
            // follows the setpoint with a 5-minute time constant) and the rooms cool.
            set(device, "pump_running", Value::Bool(!on));
            set(
                device,
                "supply_setpoint_c",
                Value::Float(if on { 30.0 } else { 55.0 }),
            );
            if on {
                ov.cold_buildings.insert(building.clone());
            } else {
                ov.cold_buildings.remove(building);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_config(dir: &std::path::Path) -> Config {
        let path = dir.join("demo.toml");
        std::fs::write(&path, DEMO_TOML).unwrap();
        crate::config::load_with_env(&path, Default::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_demo_config_is_adapted_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = demo_config(dir.path());
        let a = Adapt {
            data_dir: dir.path().join("data"),
            broker: "127.0.0.1:41883".parse().unwrap(),
            http: "127.0.0.1:48080".parse().unwrap(),
            api_token: "tok".into(),
            store_url: None,
            speed: 10.0,
        };
        adapt(&mut cfg, &a);
        assert_eq!(cfg.mqtt.as_ref().unwrap().port, 41883);
        assert!(cfg.store.is_none());
        let h = cfg.http.as_ref().unwrap();
        assert_eq!(h.api_token.expose(), "tok");
        assert_eq!(h.listen.port(), 48080);
        assert_eq!(cfg.assessment.kpi_interval, KPI_INTERVAL);
        let inv = &cfg.inventory;
        let hx = &inv.devices()[inv.lookup("jinxiu", "HX-1").unwrap() as usize];
        assert_eq!(hx.interval, Duration::from_millis(500), "5 s / 10");
        let t = &inv.devices()[inv.lookup("jinxiu", "T-1-0301").unwrap() as usize];
        assert_eq!(t.interval, Duration::from_secs(30));
        assert!(t.heartbeat_timeout >= Duration::from_secs(90));
        let t = targets(&cfg);
        assert_eq!(t.loops.len(), 3);
        assert_eq!(t.fire_panels, vec!["FP-1", "FP-2"]);
        assert_eq!(t.elevators.len(), 6);

        // Very fast: the real period is floored and the heartbeat widened to match.
        let mut cfg = demo_config(dir.path());
        adapt(
            &mut cfg,
            &Adapt {
                speed: 4320.0,
                store_url: Some("http://127.0.0.1:8428/".into()),
                ..a
            },
        );
        assert_eq!(
            cfg.store.as_ref().unwrap().url.expose(),
            "http://127.0.0.1:8428"
        );
        let inv = &cfg.inventory;
        let e = &inv.devices()[inv.lookup("jinxiu", "E-1-1").unwrap() as usize];
        assert_eq!(e.interval, MIN_PERIOD.mul_f64(4320.0));
        assert!(e.heartbeat_timeout >= e.interval * 3);
    }
}
