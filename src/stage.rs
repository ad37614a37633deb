//! The core stage (DESIGN §2): one task that runs the `core::Engine` between the sources and
//! the sinks.
//!
//! Every reading from the sources passes through here: the engine updates the device's state
//! and alarms, the resulting events are handed to the journal's thread (`journal::writer`: one
//! SQLite transaction per batch, with the devices' progress and the log position) and at once
//! to the event sinks — the store (as
//! `device_state` and `alarm` points), MQTT (alarm events and retained states), the live
//! stream (SSE) and the webhook — and the reading goes on to the store. A full event sink
//! drops and counts (`events_dropped`); only the store applies backpressure, as before.
//!
//! Operators reach the engine through a `CoreHandle` (HTTP API) or, from the sources, as
//! `model::OperatorCommand`s on their own channel (MQTT acknowledgments and on-site reports):
//! each command is applied by the engine in order with the readings, so an acknowledgment
//! never races the reading that raised the alarm. Time comes from the injected `Clock`; a 100 ms
//! tick lets the engine notice heartbeat timeouts, alarm delays and window boundaries.
//!
//! The same tick escalates unanswered alarms (issue 14): outside the engine, on the gateway's
//! clock (`core::escalation` says which steps are due), each fired step an
//! `Event::Escalation` that is journaled like the others as it goes to its target (a
//! named webhook's sink, or the MQTT sink for an `mqtt:` topic) and to the live stream. The
//! steps fired for an alarm are shown on it (`Alarm::escalations`, filled in here for every
//! alarm the stage publishes or answers with).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::core::engine::{Applied, Engine};
use crate::journal::{Job, Journal, JournalWriter};
use crate::model::escalation::{Escalation, Step, Target};
use crate::model::event::{
    Alarm, AlarmEventKind, CommandError, DeviceState, DeviceView, EscalationEvent, Event,
    MaintenanceWindow,
};
use crate::model::{DeviceIdx, Inventory, OperatorCommand, OperatorCommandKind, Reading, Value};
use crate::sink::store::StoreItem;
use crate::stats::{LogLimiter, Stats};

/// How often the engine is given the time when no reading arrives.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the journal records that this run is alive (the restart accounting's resolution).
pub const ALIVE_EVERY_MS: i64 = 5_000;
/// Ticks between two saves of the devices' progress and the log position when no event
/// forced one (a second): after a crash the log replays at most that much more, while every
/// tick's save cost a journal row per reporting device, ten times a second (15 % of the
/// gateway's CPU in the ingest benchmark, 1,000 devices reporting; BENCHMARKS.md).
const PROGRESS_EVERY_TICKS: u32 = 10;
/// Readings already queued that go through the engine before their events are journaled and
/// published together.
const READING_BATCH: usize = 256;
/// Events buffered for each live (SSE) subscriber before a slow one starts missing some.
const LIVE_CAPACITY: usize = 4096;

/// A live event for the SSE stream: its type (`state`, `alarm`, `maintenance`) and its JSON.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub kind: &'static str,
    pub json: Arc<str>,
}

/// Why a command through the handle did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Refused(#[from] CommandError),
    #[error("the gateway is shutting down")]
    Unavailable,
}

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// What operators and the API ask of the engine.
#[derive(Debug)]
pub enum Command {
    Acknowledge {
        id: String,
        by: String,
        ts_ms: Option<i64>,
        reply: Option<Reply<Alarm>>,
    },
    OnSite {
        id: String,
        by: String,
        ts_ms: Option<i64>,
        reply: Option<Reply<Alarm>>,
    },
    AddMaintenance {
        device: DeviceIdx,
        start_ms: i64,
        end_ms: i64,
        reason: String,
        by: String,
        reply: Option<Reply<MaintenanceWindow>>,
    },
    EndMaintenance {
        id: String,
        reply: Option<Reply<MaintenanceWindow>>,
    },
    /// Every device's state, in inventory order, and with `values` its latest values
    /// (profile order; empty without) — one round trip however many devices.
    Devices {
        values: bool,
        reply: oneshot::Sender<Vec<(DeviceView, Vec<Option<Value>>)>>,
    },
    Device {
        device: DeviceIdx,
        reply: oneshot::Sender<(DeviceView, Vec<Option<Value>>)>,
    },
    /// Active alarms and the cleared ones still retained, newest first, and the engine's now.
    Alarms {
        reply: oneshot::Sender<(Vec<Alarm>, i64)>,
    },
    Windows {
        reply: oneshot::Sender<Vec<MaintenanceWindow>>,
    },
}

impl From<OperatorCommand> for Command {
    /// An operator command from a source: applied like the API's, with nobody waiting.
    fn from(c: OperatorCommand) -> Self {
        let OperatorCommand {
            kind,
            id,
            by,
            ts_ms,
        } = c;
        match kind {
            OperatorCommandKind::Ack => Command::Acknowledge {
                id,
                by,
                ts_ms,
                reply: None,
            },
            OperatorCommandKind::OnSite => Command::OnSite {
                id,
                by,
                ts_ms,
                reply: None,
            },
        }
    }
}

/// A fact as the core stage takes it: from the input log (`intake`), in log order, with its
/// lsn (0: not logged) and the gateway's time when it was accepted (the engine's "now" for it,
/// live and when the log is replayed after a crash alike).
#[derive(Debug)]
pub struct Logged {
    pub lsn: u64,
    pub now_ms: i64,
    pub fact: LoggedFact,
}

#[derive(Debug)]
pub enum LoggedFact {
    Reading(Reading),
    Command(Command),
}

/// How the API talks to the core stage; cheap to clone. Commands that are facts (acknowledge,
/// on site, maintenance) go through the input log first (`facts`); questions go straight to
/// the stage.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
    facts: mpsc::Sender<Command>,
    live: broadcast::Sender<LiveEvent>,
    pub inventory: Arc<Inventory>,
}

impl CoreHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| HandleError::Unavailable)?;
        rx.await.map_err(|_| HandleError::Unavailable)
    }

    /// Sends a fact through the input log and waits for the engine's answer.
    async fn tell<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.facts
            .send(make(tx))
            .await
            .map_err(|_| HandleError::Unavailable)?;
        rx.await.map_err(|_| HandleError::Unavailable)
    }

    /// Acknowledges an alarm; `ts_ms` is the operator's own time (an app that was offline).
    pub async fn acknowledge(
        &self,
        id: String,
        by: String,
        ts_ms: Option<i64>,
    ) -> Result<Alarm, HandleError> {
        Ok(self
            .tell(|reply| Command::Acknowledge {
                id,
                by,
                ts_ms,
                reply: Some(reply),
            })
            .await??)
    }

    /// Records that someone is on site (acknowledging too, when nobody had).
    pub async fn on_site(
        &self,
        id: String,
        by: String,
        ts_ms: Option<i64>,
    ) -> Result<Alarm, HandleError> {
        Ok(self
            .tell(|reply| Command::OnSite {
                id,
                by,
                ts_ms,
                reply: Some(reply),
            })
            .await??)
    }

    pub async fn add_maintenance(
        &self,
        device: DeviceIdx,
        start_ms: i64,
        end_ms: i64,
        reason: String,
        by: String,
    ) -> Result<MaintenanceWindow, HandleError> {
        Ok(self
            .tell(|reply| Command::AddMaintenance {
                device,
                start_ms,
                end_ms,
                reason,
                by,
                reply: Some(reply),
            })
            .await??)
    }

    pub async fn end_maintenance(&self, id: String) -> Result<MaintenanceWindow, HandleError> {
        Ok(self
            .tell(|reply| Command::EndMaintenance {
                id,
                reply: Some(reply),
            })
            .await??)
    }

    /// Every device's state, in inventory order.
    pub async fn devices(&self) -> Result<Vec<DeviceView>, HandleError> {
        let all = self
            .ask(|reply| Command::Devices {
                values: false,
                reply,
            })
            .await?;
        Ok(all.into_iter().map(|(v, _)| v).collect())
    }

    /// One device's state and latest values (profile order).
    pub async fn device(
        &self,
        device: DeviceIdx,
    ) -> Result<(DeviceView, Vec<Option<Value>>), HandleError> {
        self.ask(|reply| Command::Device { device, reply }).await
    }

    /// Every device's state and latest values (profile order), in inventory order.
    pub async fn devices_with_values(
        &self,
    ) -> Result<Vec<(DeviceView, Vec<Option<Value>>)>, HandleError> {
        self.ask(|reply| Command::Devices {
            values: true,
            reply,
        })
        .await
    }

    /// Active alarms and the cleared ones still retained, newest first, with the engine's now.
    pub async fn alarms(&self) -> Result<(Vec<Alarm>, i64), HandleError> {
        self.ask(|reply| Command::Alarms { reply }).await
    }

    pub async fn windows(&self) -> Result<Vec<MaintenanceWindow>, HandleError> {
        self.ask(|reply| Command::Windows { reply }).await
    }

    /// The live event stream (state, alarm and maintenance events as JSON).
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }
}

/// What the stage takes in besides the `CoreHandle`'s questions.
pub struct Inputs {
    /// Facts from the input log (readings, acknowledgments, on-site reports, maintenance), in
    /// log order; the stage runs until this closes.
    pub facts: mpsc::Receiver<Logged>,
    /// `run --record`: every fact the engine takes is also written to this tape.
    pub record: Option<crate::replay::Recorder>,
    /// The escalation chains and the steps already fired (from the journal).
    pub escalations: Escalations,
    /// The input log's durable end (`Intake::durable`): the journal commits only what came
    /// from facts it holds. `None`: the facts are not logged.
    pub durable: Option<Arc<crate::wal::Durable>>,
}

/// Escalation of unanswered alarms: per response class its chain of steps, and per alarm the
/// steps that fired (restored from the journal at start, so none is sent twice).
#[derive(Debug, Clone)]
pub struct Escalations {
    pub chains: HashMap<String, Vec<Step>>,
    pub fired: HashMap<String, Vec<Escalation>>,
    /// The time zone of `{raised}` in messages.
    pub tz: jiff::tz::TimeZone,
}

impl Escalations {
    /// `chains` by class; `fired`: (alarm id, step) as `Journal::restore_escalations` gives them.
    pub fn new(
        chains: HashMap<String, Vec<Step>>,
        fired: Vec<(String, Escalation)>,
        tz: jiff::tz::TimeZone,
    ) -> Self {
        let mut by_alarm: HashMap<String, Vec<Escalation>> = HashMap::new();
        for (id, e) in fired {
            by_alarm.entry(id).or_default().push(e);
        }
        for list in by_alarm.values_mut() {
            list.sort_by_key(|e| e.step);
        }
        Escalations {
            chains,
            fired: by_alarm,
            tz,
        }
    }

    /// No chains: nothing escalates.
    pub fn none() -> Self {
        Self::new(HashMap::new(), Vec::new(), jiff::tz::TimeZone::UTC)
    }

    /// Shows the steps fired for `a` on it.
    fn show(&self, a: &mut Alarm) {
        if let Some(f) = self.fired.get(&a.id) {
            a.escalations.clone_from(f);
        }
    }
}

/// Queued operator commands from the sources (a full queue refuses and counts).
pub const OPERATOR_CAPACITY: usize = 1024;

/// Where the stage sends what it produces.
pub struct Outputs {
    /// Readings and events for the store sink (or a discarding task).
    pub store: mpsc::Sender<StoreItem>,
    /// Alarm and state events for MQTT (`None`: no MQTT configured).
    pub mqtt: Option<mpsc::Sender<Arc<Event>>>,
    /// Events for the webhook (it filters by severity itself).
    pub webhook: Option<mpsc::Sender<Arc<Event>>>,
    /// The named webhooks' sinks (`[alarms.webhooks.<name>]`): the escalation steps that name
    /// them.
    pub targets: HashMap<String, mpsc::Sender<Arc<Event>>>,
}

/// A started core stage.
pub struct CoreStage {
    pub handle: CoreHandle,
    pub task: JoinHandle<()>,
}

/// Starts the stage: opens nothing itself (the journal is opened and restored by the caller,
/// who built `engine` from it) and runs until `inputs.facts` closes. `facts` is where the
/// handle's fact commands go (the intake, which logs them and passes them on in `inputs`).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    engine: Engine,
    start_events: Vec<Event>,
    journal: Journal,
    inputs: Inputs,
    facts: mpsc::Sender<Command>,
    outputs: Outputs,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
) -> std::io::Result<CoreStage> {
    let (tx, commands) = mpsc::channel(1024);
    let (live, _) = broadcast::channel(LIVE_CAPACITY);
    let handle = CoreHandle {
        tx,
        facts,
        live: live.clone(),
        inventory: engine.inventory().clone(),
    };
    let journal = JournalWriter::start(
        journal,
        inputs.durable.clone(),
        engine.inventory().clone(),
        stats.clone(),
        clock.clone(),
    )?;
    let stage = Stage {
        engine,
        journal,
        outputs,
        live,
        stats,
        clock,
        out: start_events,
        logs: LogLimiter::new(5, 60_000),
        last_alive_ms: i64::MIN,
        ticks_unsaved: 0,
        record: None,
        position: None,
        escalations: Escalations::none(),
    };
    let task = tokio::spawn(stage.run(inputs, commands));
    Ok(CoreStage { handle, task })
}

struct Stage {
    engine: Engine,
    journal: JournalWriter,
    outputs: Outputs,
    live: broadcast::Sender<LiveEvent>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    out: Vec<Event>,
    logs: LogLimiter<&'static str>,
    last_alive_ms: i64,
    /// Ticks since the progress was last saved on a tick.
    ticks_unsaved: u32,
    record: Option<crate::replay::Recorder>,
    /// The input log position reached and not yet committed to the journal (next lsn).
    position: Option<u64>,
    escalations: Escalations,
}

impl Stage {
    async fn run(mut self, inputs: Inputs, mut commands: mpsc::Receiver<Command>) {
        let Inputs {
            mut facts,
            record,
            escalations,
            durable: _,
        } = inputs;
        self.record = record;
        self.escalations = escalations;
        if let Some(r) = &mut self.record {
            r.start(self.clock.now_ms());
        }
        self.emit().await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(READING_BATCH);
        loop {
            tokio::select! {
                biased;
                f = facts.recv() => match f {
                    Some(f) => {
                        // The facts already queued go through the engine together, then their
                        // events are journaled and published in one batch: a backlog (after an
                        // outage) is applied at its own pace, and an alarm raised and cleared
                        // inside it reaches the sinks as such (`mark_backlog`). A command ends
                        // the batch (its answer follows the readings before it).
                        batch.push(f);
                        while batch.len() < READING_BATCH {
                            match facts.try_recv() {
                                Ok(f) => batch.push(f),
                                Err(_) => break,
                            }
                        }
                        for f in batch.drain(..) {
                            if f.lsn > 0 {
                                self.position = Some(f.lsn + 1);
                                self.stats.log.applied.store(f.lsn + 1, Relaxed);
                            }
                            match f.fact {
                                LoggedFact::Reading(r) => self.apply(&r, f.now_ms),
                                LoggedFact::Command(c) => {
                                    self.emit().await;
                                    self.command(c, f.now_ms);
                                }
                            }
                        }
                        self.emit().await;
                    }
                    None => break,
                },
                Some(c) = commands.recv() => {
                    let now = self.clock.now_ms();
                    self.command(c, now);
                    self.emit().await;
                }
                _ = tick.tick() => {
                    self.stats.core.ticks.fetch_add(1, Relaxed);
                    let now = self.clock.now_ms();
                    self.engine.tick(now, &mut self.out);
                    self.escalate(now);
                    self.emit().await;
                    self.ticks_unsaved += 1;
                    if self.ticks_unsaved >= PROGRESS_EVERY_TICKS {
                        self.ticks_unsaved = 0;
                        self.save_progress().await;
                    }
                    if let Some(r) = &mut self.record {
                        r.flush();
                    }
                    if now.saturating_sub(self.last_alive_ms) >= ALIVE_EVERY_MS {
                        self.last_alive_ms = now;
                        self.journal.send(Job::Alive(now)).await;
                        // Forget the steps of alarms the engine no longer keeps.
                        let engine = &self.engine;
                        self.escalations
                            .fired
                            .retain(|id, _| engine.alarm(id).is_some());
                    }
                }
            }
        }
        // Shutdown: the intake is done. Answer what is still queued, record the stop.
        commands.close();
        while let Ok(c) = commands.try_recv() {
            let now = self.clock.now_ms();
            self.command(c, now);
        }
        let now = self.clock.now_ms();
        self.engine.tick(now, &mut self.out);
        self.engine.flush_hours(&mut self.out);
        self.emit().await;
        self.save_progress().await;
        self.journal.send(Job::EndRun(now)).await;
        if let Some(r) = &mut self.record {
            r.flush();
            if r.failed > 0 {
                error!(
                    lines = r.failed,
                    "Some facts could not be written to the tape (--record)."
                );
            }
        }
        self.journal.close().await;
        info!("Core stage stopped; journal closed.");
    }

    /// One reading through the engine (and onto the tape with `--record`).
    fn apply(&mut self, r: &Reading, now: i64) {
        if let Some(rec) = &mut self.record {
            rec.reading(r.device, r.ts_ms, &r.values, r.status);
        }
        match self
            .engine
            .on_reading(r.device, r.ts_ms, &r.values, r.status, now, &mut self.out)
        {
            Applied::Applied => {}
            Applied::OutOfOrder => {
                self.stats.core.out_of_order.fetch_add(1, Relaxed);
            }
            Applied::Late => {
                self.stats.core.late.fetch_add(1, Relaxed);
            }
        }
    }

    fn command(&mut self, c: Command, now: i64) {
        let e = &mut self.engine;
        let out = &mut self.out;
        let on_site = matches!(c, Command::OnSite { .. });
        let counted = |stats: &Stats, ok: bool| {
            if ok {
                stats.core.commands.fetch_add(1, Relaxed);
            } else {
                stats.core.commands_refused.fetch_add(1, Relaxed);
            }
        };
        match c {
            Command::Acknowledge {
                id,
                by,
                ts_ms,
                reply,
            }
            | Command::OnSite {
                id,
                by,
                ts_ms,
                reply,
            } => {
                let (r, what) = if on_site {
                    (e.on_site(&id, &by, ts_ms, now, out), "On-site report")
                } else {
                    (e.acknowledge(&id, &by, ts_ms, now, out), "Acknowledgment")
                };
                counted(&self.stats, r.is_ok());
                if let (Some(rec), Ok(a)) = (&mut self.record, &r) {
                    let ts = if on_site {
                        a.on_site.as_ref()
                    } else {
                        a.acknowledged.as_ref()
                    };
                    if let Some(s) = ts {
                        rec.command(on_site, a, &by, s.ts_ms);
                    }
                }
                if let Err(err) = &r {
                    info!(alarm = %id, %by, error = %err, "{what} refused.");
                }
                if let Some(reply) = reply {
                    let r = r.map(|mut a| {
                        self.escalations.show(&mut a);
                        a
                    });
                    let _ = reply.send(r);
                }
            }
            Command::AddMaintenance {
                device,
                start_ms,
                end_ms,
                reason,
                by,
                reply,
            } => {
                let r = e.add_maintenance(device, start_ms, end_ms, &reason, &by, now, out);
                if let (Some(rec), Ok(w)) = (&mut self.record, &r) {
                    rec.maintenance(w);
                }
                if let Err(err) = &r {
                    info!(error = %err, "Maintenance window refused.");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::EndMaintenance { id, reply } => {
                let r = e.end_maintenance(&id, now, out);
                if let (Some(rec), Ok(_)) = (&mut self.record, &r) {
                    rec.maintenance_end(&id, now);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Devices { values, reply } => {
                let n = e.inventory().len() as DeviceIdx;
                let _ = reply.send(
                    (0..n)
                        .map(|i| {
                            let v = if values {
                                e.values(i).to_vec()
                            } else {
                                Vec::new()
                            };
                            (e.device(i), v)
                        })
                        .collect(),
                );
            }
            Command::Device { device, reply } => {
                if (device as usize) < e.inventory().len() {
                    let _ = reply.send((e.device(device), e.values(device).to_vec()));
                }
            }
            Command::Alarms { reply } => {
                let mut v: Vec<Alarm> = e.alarms().cloned().collect();
                for a in &mut v {
                    self.escalations.show(a);
                }
                v.sort_by(|a, b| b.raised_ms.cmp(&a.raised_ms).then_with(|| b.id.cmp(&a.id)));
                let _ = reply.send((v, now));
            }
            Command::Windows { reply } => {
                let _ = reply.send(e.windows().cloned().collect());
            }
        }
    }

    /// The escalation steps due at `now` (the gateway's clock) for the engine's alarms, as
    /// events in `out` (oldest alarm first), each recorded as fired.
    fn escalate(&mut self, now: i64) {
        if self.escalations.chains.is_empty() {
            return;
        }
        let esc = &mut self.escalations;
        let mut alarms: Vec<&Alarm> = self
            .engine
            .alarms()
            .filter(|a| a.is_active() && esc.chains.contains_key(&a.class))
            .collect();
        alarms.sort_by(|a, b| a.raised_ms.cmp(&b.raised_ms).then_with(|| a.id.cmp(&b.id)));
        let inv = self.engine.inventory();
        for a in alarms {
            let Some(chain) = esc.chains.get(&a.class) else {
                continue;
            };
            let fired = esc.fired.get(&a.id).map(Vec::as_slice).unwrap_or(&[]);
            for i in crate::core::escalation::due(chain, a, fired, now) {
                let Some(x) =
                    crate::core::escalation::fire(chain, i, a, inv.get(a.device), now, &esc.tz)
                else {
                    continue;
                };
                let list = esc.fired.entry(a.id.clone()).or_default();
                list.push(x.clone());
                list.sort_by_key(|e| e.step);
                let mut alarm = a.clone();
                alarm.escalations.clone_from(list);
                self.out.push(Event::Escalation(EscalationEvent {
                    escalation: x,
                    alarm,
                }));
            }
        }
    }

    /// Keeps the devices' event-time positions in the journal (every `PROGRESS_EVERY_TICKS`
    /// ticks and at the stop): a restart goes on from there.
    async fn save_progress(&mut self) {
        self.commit(Vec::new(), None).await;
    }

    /// Hands the journal's thread one transaction: `events`, the progress of the devices that
    /// moved since the last one and the log position that produced them (after a crash the log
    /// replays exactly what the journal lacks). `done` is told when it is committed.
    async fn commit(&mut self, events: Vec<Event>, done: Option<oneshot::Sender<()>>) {
        let progress = self.engine.take_progress();
        let position = self.position.take();
        if events.is_empty() && progress.is_empty() && position.is_none() {
            return;
        }
        self.journal
            .send(Job::Commit {
                events,
                progress,
                position,
                // The lsn after the newest fact applied: the journal waits until the log
                // holds it.
                log_needed: self.stats.log.applied.load(Relaxed),
                done,
            })
            .await;
    }

    /// Journals the pending events (on the journal's thread), then hands them to the sinks.
    async fn emit(&mut self) {
        if self.out.is_empty() {
            return;
        }
        // The journal gets the events as they happened; the sinks get copies (marked below
        // for them) of those they take (the heating figures are the journal's alone).
        let mut events: Vec<Event> = self
            .out
            .iter()
            .filter(|e| !matches!(e, Event::Compliance(_) | Event::Hourly(_)))
            .cloned()
            .collect();
        let journaled = std::mem::take(&mut self.out);
        // An escalation step is journaled before it is sent (nothing replays it after a crash).
        if journaled.iter().any(|e| matches!(e, Event::Escalation(_))) {
            let (tx, rx) = oneshot::channel();
            self.commit(journaled, Some(tx)).await;
            let _ = rx.await;
        } else {
            self.commit(journaled, None).await;
        }
        let engine = &self.engine;
        mark_backlog(&mut events, |id| {
            engine.alarm(id).and_then(|a| a.cleared_ms)
        });
        for ev in &mut events {
            if let Event::Alarm(a) = ev {
                self.escalations.show(&mut a.alarm);
            }
        }
        let inv = self.engine.inventory().clone();
        let core = &self.stats.core;
        for ev in events {
            match &ev {
                Event::State(s) => {
                    core.transitions.fetch_add(1, Relaxed);
                    if s.to == DeviceState::Offline && s.from.is_some() {
                        tracing::debug!(device = %inv.get(s.device).id, reason = s.reason.as_str(), "Device offline.");
                    }
                }
                Event::Alarm(a) => match a.kind {
                    AlarmEventKind::Raised => {
                        core.alarms_raised.fetch_add(1, Relaxed);
                        core.alarms_active.fetch_add(1, Relaxed);
                        let d = inv.get(a.alarm.device);
                        warn!(alarm = %a.alarm.id, device = %d.id, rule = %a.alarm.rule,
                              severity = a.alarm.severity.as_str(), message = %a.alarm.message, "Alarm raised.");
                    }
                    AlarmEventKind::Cleared => {
                        core.alarms_cleared.fetch_add(1, Relaxed);
                        let _ = core
                            .alarms_active
                            .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
                        info!(alarm = %a.alarm.id, restore_s = a.alarm.restore_s(), "Alarm cleared.");
                    }
                    AlarmEventKind::Acknowledged | AlarmEventKind::OnSite => {
                        info!(alarm = %a.alarm.id, event = a.kind.as_str(), by = %a.by, "Alarm updated.");
                    }
                },
                Event::Escalation(x) => {
                    let d = inv.get(x.alarm.device);
                    warn!(alarm = %x.alarm.id, device = %d.id, step = x.escalation.step,
                          notify = %x.escalation.notify, message = %x.escalation.message,
                          "Alarm escalated.");
                }
                Event::Maintenance(_) => {}
                // Journal-only facts (heating figures): left out of the sinks' copies above.
                Event::Compliance(_) | Event::Hourly(_) => continue,
            }
            let ev = Arc::new(ev);
            if self.live.receiver_count() > 0 {
                let kind = match &*ev {
                    Event::State(_) => "state",
                    // An escalation is the alarm event `escalated`: the dashboard updates the
                    // alarm from it like from any other step.
                    Event::Alarm(_) | Event::Escalation(_) => "alarm",
                    _ => "maintenance",
                };
                let json = crate::encode::json::event(&inv, &ev).to_string();
                let _ = self.live.send(LiveEvent {
                    kind,
                    json: json.into(),
                });
            }
            if let Event::Escalation(x) = &*ev {
                // To its target only; the store has no point for it.
                let tx = match &x.escalation.notify {
                    Target::Mqtt(_) => self.outputs.mqtt.as_ref(),
                    Target::Webhook(name) => self.outputs.targets.get(name),
                };
                if tx.is_none_or(|tx| tx.try_send(ev.clone()).is_err()) {
                    core.events_dropped.fetch_add(1, Relaxed);
                }
                continue;
            }
            for tx in [&self.outputs.mqtt, &self.outputs.webhook]
                .into_iter()
                .flatten()
            {
                if tx.try_send(ev.clone()).is_err() {
                    core.events_dropped.fetch_add(1, Relaxed);
                }
            }
            if self.outputs.store.send(StoreItem::Event(ev)).await.is_err() {
                if let Some(n) = self.logs.allow("store", self.clock.now_ms()) {
                    error!(
                        suppressed = n,
                        "The store sink stopped; events are no longer written."
                    );
                }
            }
        }
    }
}

/// An alarm raised and cleared while nobody could see it (inside a backlog: both in event
/// time before they reached the gateway) must not ring as new: its `raised` notification
/// carries the clear time already (`cleared_ts`, `"active": false`, `"backlog": true` in the
/// JSON; the webhook's text says so). The journal got the events as they happened; this
/// changes only what the sinks are told.
/// `cleared_now`: when the engine says an alarm cleared (it may have, later in the batch).
fn mark_backlog(events: &mut [Event], cleared_now: impl Fn(&str) -> Option<i64>) {
    let cleared: std::collections::HashMap<String, i64> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Alarm(a) if a.kind == AlarmEventKind::Cleared => {
                Some((a.alarm.id.clone(), a.ts_ms))
            }
            _ => None,
        })
        .collect();
    for ev in events.iter_mut() {
        if let Event::Alarm(a) = ev {
            if a.kind != AlarmEventKind::Raised || a.alarm.cleared_ms.is_some() {
                continue;
            }
            let c = cleared
                .get(&a.alarm.id)
                .copied()
                .or_else(|| cleared_now(&a.alarm.id));
            if c.is_some() {
                a.alarm.cleared_ms = c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::AlarmEvent;
    use crate::model::rules::Severity;

    fn alarm_event(kind: AlarmEventKind, id: &str, ts: i64, cleared: Option<i64>) -> Event {
        Event::Alarm(AlarmEvent {
            kind,
            ts_ms: ts,
            by: String::new(),
            alarm: Alarm {
                id: id.into(),
                device: 0,
                rule: "door_forced".into(),
                severity: Severity::Major,
                class: "urgent".into(),
                message: "m".into(),
                raised_ms: 1_000,
                acknowledged: None,
                on_site: None,
                cleared_ms: cleared,
                ack_target_ms: 180_000,
                on_site_target_ms: None,
                repair_target_ms: None,
                escalations: Vec::new(),
            },
        })
    }

    fn raised_cleared(ev: &Event) -> Option<i64> {
        match ev {
            Event::Alarm(a) if a.kind == AlarmEventKind::Raised => a.alarm.cleared_ms,
            _ => None,
        }
    }

    #[test]
    fn a_raise_cleared_within_the_batch_or_already_reaches_the_sinks_as_history() {
        let mut ev = vec![
            alarm_event(AlarmEventKind::Raised, "s-1", 1_000, None),
            alarm_event(AlarmEventKind::Cleared, "s-1", 11_000, Some(11_000)),
            alarm_event(AlarmEventKind::Raised, "s-2", 2_000, None),
            alarm_event(AlarmEventKind::Raised, "s-3", 3_000, None),
        ];
        // s-2 cleared later in the engine's view; s-3 is still active.
        mark_backlog(&mut ev, |id| (id == "s-2").then_some(20_000));
        assert_eq!(raised_cleared(&ev[0]), Some(11_000));
        assert_eq!(raised_cleared(&ev[2]), Some(20_000));
        assert_eq!(raised_cleared(&ev[3]), None);
        // And the JSON the sinks get says so.
        if let Event::Alarm(a) = &ev[0] {
            let j = crate::encode::json::alarm_event(&one_device(), a);
            assert_eq!(
                (j["backlog"].clone(), j["active"].clone()),
                (true.into(), false.into())
            );
        }
    }

    fn one_device() -> crate::model::Inventory {
        let p = std::sync::Arc::new(crate::model::Profile::new(
            "access_gate".into(),
            "门禁".into(),
            std::time::Duration::from_secs(10),
            vec![],
        ));
        crate::model::Inventory::new(vec![crate::model::Device {
            id: "GA-1".into(),
            name: "北门".into(),
            site: "s".into(),
            building: "1号楼".into(),
            category: "access_gate".into(),
            rules: p.rules.clone(),
            profile: p,
            interval: std::time::Duration::from_secs(10),
            heartbeat_timeout: std::time::Duration::from_secs(30),
            polled: false,
        }])
    }
}
