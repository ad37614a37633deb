//! `estate-gateway run`: wires sources to sinks and shuts them down in order.
//!
//! `start` starts everything and returns a `Running` gateway, whose `modbus` handle is how the
//! HTTP API (and tests) write to Modbus devices; `Running::wait` waits for shutdown and flushes.
//! `run` is the two in a row, for `main`.
//!
//! Shutdown (SIGINT/SIGTERM cancels `shutdown`): sources stop producing and drop their
//! senders (the Modbus endpoint tasks close their connections); the store sink takes what is
//! queued, settles the acks, and cancels `taken`; the MQTT source then flushes those PUBACKs
//! and disconnects; the store writer delivers the queued batches (up to its grace period);
//! the HTTP server lets running requests finish (briefly); then `wait` returns.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::core::Engine;
use crate::intake::{Intake, IntakeInputs};
use crate::journal::Journal;
use crate::model::{Ack, OperatorCommand, Reading};
use crate::sink::store::{LogFeed, StoreItem, StoreSink};
use crate::source::modbus::poller::{self, ModbusHandle};
use crate::source::mqtt::MqttSource;
use crate::stage::{Command, CoreHandle, Inputs, Logged, Outputs};
use crate::stats::Stats;

/// A started gateway.
pub struct Running {
    pub stats: Arc<Stats>,
    /// Writes to Modbus devices (a default, task-less handle when nothing is polled: every
    /// write then answers `NotModbus` or `Unavailable`).
    pub modbus: ModbusHandle,
    /// Where the HTTP API listens, when `[http]` is configured.
    pub http_addr: Option<SocketAddr>,
    /// Commands to the core stage (acknowledge, maintenance) and its live event stream.
    pub core: CoreHandle,
    /// Cancelled with `shutdown` (or when `start` fails half-way).
    stop: CancellationToken,
    pollers: Vec<JoinHandle<()>>,
    source: Option<JoinHandle<()>>,
    sink: Option<StoreSink>,
    core_task: Option<JoinHandle<()>>,
    /// MQTT event publisher and webhook: they end after the core stage.
    event_sinks: Vec<JoinHandle<()>>,
    /// The periodic KPI points; holds a store sender, so it ends before the store sink.
    kpi_task: Option<JoinHandle<()>>,
    /// The input log's intake: ends when the sources have stopped, before the core stage.
    intake: Option<JoinHandle<()>>,
    http: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Runs the gateway until `shutdown` is cancelled and everything queued is flushed.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Arc<Stats>> {
    Ok(start(&cfg, shutdown).await?.wait().await)
}

/// Starts the store sink, the Modbus poller, the HTTP API and the MQTT source. On an error
/// (e.g. the HTTP port is taken) whatever was started is stopped before returning it.
pub async fn start(cfg: &Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    start_with_clock(cfg, shutdown, Arc::new(SystemClock)).await
}

/// `start` on a given clock: the demo's scaled clock (`demo --speed N`), which stamps Modbus
/// polls, readings without `ts`, acknowledgments, timers, the KPI points, the store's
/// `gateway` points and the "now" of the report endpoints.
pub async fn start_with_clock(
    cfg: &Config,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    start_with(cfg, shutdown, clock, None).await
}

/// `start_with_clock`, with where `POST /api/reload` sends its requests (`run` reloads on them
/// and on SIGHUP; see `main`).
pub async fn start_with(
    cfg: &Config,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
    reload: Option<crate::http::reload::ReloadSender>,
) -> anyhow::Result<Running> {
    let stop = shutdown.child_token();
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel::<Reading>(cfg.ingest.channel_capacity);
    let (store_tx, store_rx) = mpsc::channel::<StoreItem>(cfg.ingest.channel_capacity);
    // Acknowledgments and on-site reports from the MQTT source, to the input log.
    let (operator_tx, operator_rx) =
        mpsc::channel::<(OperatorCommand, Ack)>(crate::stage::OPERATOR_CAPACITY);
    // The API's fact commands, to the input log; logged facts, to the core stage.
    let (facts_tx, facts_rx) = mpsc::channel::<Command>(crate::stage::OPERATOR_CAPACITY);
    let (logged_tx, logged_rx) = mpsc::channel::<Logged>(cfg.ingest.channel_capacity);
    // Cancelled when the intake has committed and acknowledged everything (the MQTT source
    // keeps its connection until then, to send the PUBACKs).
    let taken = CancellationToken::new();

    // The journal first: a data_dir that cannot be used stops the start, before any message
    // is taken from the broker.
    // On a disk too full to write it, the journal is read as it is and the gateway runs
    // (live view, alarms, ingestion into the input log while that has room), journaling again
    // as soon as there is room (`/healthz` says so meanwhile).
    let (mut journal, unwritable) = Journal::open_for_run(&cfg.gateway.data_dir)?;
    if let Some(e) = unwritable {
        stats
            .core
            .journal_failing
            .store(1, std::sync::atomic::Ordering::Relaxed);
        error!(error = format!("{:#}", anyhow::Error::new(e)),
               "Cannot open the journal for writing (disk full?); running on what it holds, read-only, until there is room: states and alarms go on, but their history is missing from the figures until then.");
    }
    let now = clock.now_ms();
    let settings = crate::config::engine_settings(cfg);
    let restored = journal.restore(&cfg.inventory, now, settings.retain_cleared_ms)?;
    info!(journal = %journal.path().display(), last_alive_ms = restored.last_alive_ms,
          states = restored.states.len(), alarms = restored.alarms.iter().filter(|a| a.is_active()).count(),
          "Journal opened; states and active alarms restored.");
    // The escalation steps already fired for those alarms: none is sent again.
    let fired = journal.restore_escalations(now, settings.retain_cleared_ms)?;
    if let Err(e) = journal.begin_run(now, &cfg.gateway.host, env!("CARGO_PKG_VERSION")) {
        // Recorded by the first write that finds room (the stage retries every few seconds).
        stats
            .core
            .journal_failing
            .store(1, std::sync::atomic::Ordering::Relaxed);
        error!(error = format!("{:#}", anyhow::Error::new(e)),
               "Could not write the journal; states and alarms go on, but this history will be missing from the figures.");
    }
    // The input log next: what it holds beyond the journal's position is replayed first.
    let log_settings = cfg.log.clone();
    let store_pos = crate::wal::read_position(&log_settings.dir.join(crate::wal::STORE_POS_FILE));
    let intake = Intake::open(
        log_settings.clone(),
        journal.engine_position()?,
        if cfg.store.is_some() { store_pos } else { 0 },
        cfg.inventory.clone(),
        clock.clone(),
        stats.clone(),
    )?;
    let mut start_events = Vec::new();
    let engine = Engine::new(
        cfg.inventory.clone(),
        settings,
        restored,
        now,
        &mut start_events,
    );

    let sink = match &cfg.store {
        Some(store) => {
            info!(url = %store.url, org = %store.org, bucket = %store.bucket,
                  batch_lines = store.batch_lines, gzip = store.gzip, "Writing to the store.");
            Some(StoreSink::spawn(
                store.clone(),
                cfg.gateway.clone(),
                cfg.inventory.clone(),
                stats.clone(),
                clock.clone(),
                store_rx,
                LogFeed {
                    dir: log_settings.dir.clone(),
                    head: intake.head(),
                    dead_letter: cfg.gateway.data_dir.join("dead-letter"),
                },
                crate::encode::exception::ExceptionFilter::from_modbus(&cfg.modbus),
            )?)
        }
        None => {
            warn!("No [store] configured: readings are logged and applied, and not written anywhere else.");
            // No store consumer holds the log back.
            stats.log.store_pos.store(u64::MAX, Relaxed);
            tokio::spawn(async move {
                let mut rx = store_rx;
                while rx.recv().await.is_some() {}
            });
            None
        }
    };
    let mut event_sinks = Vec::new();
    let mut summaries = None;
    let mqtt_events = cfg.mqtt.as_ref().map(|m| {
        let (tx, rx) = mpsc::channel(crate::sink::mqtt::CAPACITY);
        let (summary_tx, summary_rx) = mpsc::channel(crate::sink::mqtt::SUMMARY_CAPACITY);
        summaries = Some(crate::report::live::SummaryOut {
            tx: summary_tx,
            kpi_topic: m.kpi_topic.clone(),
            assessment_topic: m.assessment_topic.clone(),
            stats: stats.clone(),
        });
        let topics = crate::sink::mqtt::EventTopics {
            alarm: m.alarm_topic.clone(),
            state: m.state_topic.clone(),
        };
        event_sinks.push(crate::sink::mqtt::spawn(
            m,
            topics,
            cfg.inventory.clone(),
            stats.clone(),
            rx,
            summary_rx,
        ));
        tx
    });
    let webhook = match &cfg.alarms.webhook {
        Some(w) => {
            let (tx, rx) = mpsc::channel(crate::sink::webhook::CAPACITY);
            event_sinks.push(crate::sink::webhook::spawn(
                w.clone(),
                cfg.heating.season.tz.clone(),
                cfg.inventory.clone(),
                stats.clone(),
                rx,
            )?);
            Some(tx)
        }
        None => None,
    };
    // One sink per named webhook: the escalation steps that name it.
    let mut targets = std::collections::HashMap::new();
    for (name, w) in &cfg.alarms.webhooks {
        let (tx, rx) = mpsc::channel(crate::sink::webhook::CAPACITY);
        event_sinks.push(crate::sink::webhook::spawn(
            w.clone(),
            cfg.heating.season.tz.clone(),
            cfg.inventory.clone(),
            stats.clone(),
            rx,
        )?);
        targets.insert(name.clone(), tx);
    }
    let journal_path = journal.path().to_path_buf();
    let kpi_store = sink.is_some().then(|| store_tx.clone());
    let core = crate::stage::spawn(
        engine,
        start_events,
        journal,
        Inputs {
            facts: logged_rx,
            record: match &cfg.record {
                Some(path) => Some(crate::replay::Recorder::open(path, cfg.inventory.clone())?),
                None => None,
            },
            escalations: crate::stage::Escalations::new(
                cfg.alarms.escalation.clone(),
                fired,
                cfg.heating.season.tz.clone(),
            ),
            durable: Some(intake.durable()),
        },
        facts_tx,
        Outputs {
            store: store_tx,
            mqtt: mqtt_events,
            webhook,
            targets,
        },
        stats.clone(),
        clock.clone(),
    )
    .context("starting the journal's thread")?;
    let intake_task = {
        let task = intake.spawn(
            IntakeInputs {
                readings: rx,
                operator: operator_rx,
                commands: facts_rx,
            },
            logged_tx,
        );
        let taken = taken.clone();
        tokio::spawn(async move {
            let _ = task.await;
            taken.cancel();
        })
    };

    let modbus_devices = cfg.modbus.bindings.len();
    let (modbus, pollers) = if modbus_devices > 0 {
        info!(
            devices = modbus_devices,
            endpoints = cfg.modbus.endpoints.len(),
            "Starting the Modbus poller."
        );
        poller::spawn(
            &cfg.modbus,
            cfg.inventory.clone(),
            stats.clone(),
            clock.clone(),
            tx.clone(),
            stop.clone(),
        )
    } else {
        (
            ModbusHandle {
                endpoints: Vec::new(),
                inventory: cfg.inventory.clone(),
                bindings: Default::default(),
            },
            Vec::new(),
        )
    };

    let kpi_view = crate::report::live::KpiView::default();
    let kpi_task = tokio::spawn(
        crate::report::live::KpiTask {
            journal: journal_path.clone(),
            site: cfg.gateway.site.clone(),
            settings: crate::report::FigureSettings::for_site(
                &cfg.heating,
                cfg.assessment.offline,
                &cfg.gateway.site,
            ),
            interval: cfg.assessment.kpi_interval,
            store: kpi_store,
            core: core.handle.clone(),
            clock: clock.clone(),
            view: kpi_view.clone(),
            kpis: cfg.assessment.kpis.clone(),
            grades: cfg.assessment.grades.clone(),
            summaries,
        }
        .run(stop.clone()),
    );

    let mut running = Running {
        stats: stats.clone(),
        modbus,
        http_addr: None,
        core: core.handle.clone(),
        core_task: Some({
            // A panic in the core stage would silently stop all storing: stop the gateway
            // instead, loudly (systemd restarts it; the journal restores the states).
            let stop = stop.clone();
            let task = core.task;
            tokio::spawn(async move {
                if let Err(e) = task.await {
                    error!(error = %e, "The core stage failed; shutting the gateway down.");
                    stop.cancel();
                }
            })
        }),
        event_sinks,
        intake: Some(intake_task),
        kpi_task: Some(kpi_task),
        stop: stop.clone(),
        pollers,
        source: None,
        sink,
        http: None,
    };

    // Bound before the MQTT source starts, so a taken port fails the start before any
    // broker message is taken.
    if let Some(h) = &cfg.http {
        let mut state = crate::http::AppState::new(
            cfg,
            stats.clone(),
            running.modbus.clone(),
            running.core.clone(),
            clock.clone(),
        );
        state.kpi = kpi_view.clone();
        state.reload = reload;
        // The Modbus write trail: its own connection to the (already migrated) journal.
        state.writes = match crate::journal::WriteLog::open(&journal_path) {
            Ok(log) => Some(Arc::new(log)),
            Err(e) => {
                warn!(error = %e, "Cannot open the journal for the Modbus write trail; writes are logged only.");
                None
            }
        };
        state.report = Arc::new(crate::http::ReportContext {
            journal: journal_path,
            ..(*state.report).clone()
        });
        let bound = crate::http::Server::bind(h, state)
            .await
            .and_then(|s| Ok((s.local_addr()?, s)));
        match bound {
            Ok((addr, server)) => {
                running.http_addr = Some(addr);
                running.http = Some(tokio::spawn(server.run(stop.clone())));
            }
            Err(e) => {
                drop(tx);
                stop.cancel();
                running.finish().await;
                return Err(e);
            }
        }
    }

    running.source = match &cfg.mqtt {
        Some(m) => {
            let src = MqttSource {
                settings: m.clone(),
                ingest: cfg.ingest.clone(),
                inventory: cfg.inventory.clone(),
                stats: stats.clone(),
                clock,
                commands: Some(operator_tx),
            };
            Some(tokio::spawn(src.run(
                tx.clone(),
                stop.clone(),
                taken.clone(),
            )))
        }
        None => {
            if modbus_devices == 0 {
                warn!("No [mqtt] configured and no Modbus devices: no source is running.");
            }
            None
        }
    };
    drop(tx);
    info!(
        devices = cfg.inventory.len(),
        modbus_devices,
        site = %cfg.gateway.site,
        "estate-gateway running."
    );
    Ok(running)
}

impl Running {
    /// Waits until `shutdown` is cancelled, then for everything queued to be flushed.
    pub async fn wait(self) -> Arc<Stats> {
        self.stop.cancelled().await;
        info!("Shutting down: flushing queued readings.");
        self.finish().await
    }

    async fn finish(self) -> Arc<Stats> {
        // Sources first: once they have dropped their senders the sink sees the end.
        for p in self.pollers {
            let _ = p.await;
        }
        if let Some(s) = self.source {
            let _ = s.await;
        }
        if let Some(i) = self.intake {
            let _ = i.await;
        }
        if let Some(c) = self.core_task {
            let _ = c.await;
        }
        for s in self.event_sinks {
            let _ = s.await;
        }
        if let Some(k) = self.kpi_task {
            let _ = k.await;
        }
        if let Some(s) = self.sink {
            s.join().await;
        }
        if let Some(h) = self.http {
            match h.await {
                Ok(Err(e)) => error!(error = format!("{e:#}"), "HTTP API failed."),
                Err(e) => error!(error = %e, "HTTP API task failed."),
                Ok(Ok(())) => {}
            }
        }
        let stats = self.stats;
        info!(
            readings = stats.readings.load(Relaxed),
            rejected = stats.rejected_total(),
            modbus_polls = stats.modbus.polls.load(Relaxed),
            store_lines = stats.store_lines.load(Relaxed),
            store_dropped = stats.store_dropped.load(Relaxed),
            "estate-gateway stopped."
        );
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::source::modbus::poller::WriteError;

    /// `start` hands out a working Modbus handle (a write reaches the endpoint's task and
    /// comes back), and `wait` returns once shutdown has stopped the poller.
    #[tokio::test]
    async fn start_exposes_the_modbus_handle_and_wait_stops_the_poller() {
        let refused = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[gateway]
site = "t"
data_dir = {data:?}

[modbus]
offline_after = 1

[[modbus.endpoints]]
name = "plant"
url = "tcp://127.0.0.1:{port}"
timeout = "100ms"
reconnect_min = "10s"
reconnect_max = "10s"

[[devices]]
id = "HX-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"
modbus = {{ endpoint = "plant", unit = 1, model = "heating_plc" }}
interval = "50ms"
"#,
                data = dir.path().to_str().unwrap(),
                port = refused.port()
            ),
        )
        .unwrap();
        let cfg = crate::config::load_with_env(&path, Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let shutdown = CancellationToken::new();
        let running = start(&cfg, shutdown.clone()).await.unwrap();
        // The endpoint refuses: the first poll reports the device offline (offline_after = 1).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while running.stats.modbus.devices_offline.load(Relaxed) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no poll");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(running.stats.readings.load(Relaxed), 1);
        let w = running
            .modbus
            .write("t", "HX-1", "supply_setpoint_c", Value::Float(55.0), "test")
            .await;
        assert!(matches!(w, Err(WriteError::Unreachable(_))), "{w:?}");
        shutdown.cancel();
        let stats = tokio::time::timeout(std::time::Duration::from_secs(5), running.wait())
            .await
            .expect("stops promptly");
        assert!(stats.modbus.polls.load(Relaxed) >= 1);
        assert_eq!(stats.modbus.writes.load(Relaxed), 1);
    }
}
