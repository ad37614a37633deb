//! The intake (DESIGN §2, §6 "No data loss"): between the sources and the core stage, it
//! appends every accepted fact to the input log (`wal`) and makes it durable before anything
//! else happens to it. Only then are MQTT messages acknowledged (PUBACK) and the facts handed
//! to the core stage, in log order.
//!
//! Group commit: while one batch is being written and fsynced (on a blocking thread), the
//! next one collects whatever arrives; it is committed as soon as the first is done, up to
//! `log.commit_batch` records at a time. A batch holding anything a client waits for (a QoS 1
//! message, a command) is committed at once; one of only unacknowledged readings (Modbus
//! polls, QoS 0) may collect for `UNHURRIED_LINGER` first.
//!
//! Redelivery: a message the broker sends again after a crash (logged, not yet acknowledged)
//! has the same content hash as its first copy (device, `ts`, values; not the arrival time);
//! a copy of one of the last `RECENT` records is acknowledged and not applied twice.
//! Readings without a device `ts` are stamped on arrival, so their copies are new readings.
//!
//! At start the intake first replays to the engine what the log holds beyond the engine's
//! committed position (a crash between the log and the journal), with each fact's own arrival
//! time as "now", then goes live.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::clock::Clock;
pub use crate::config::LogSettings;
use crate::model::{Ack, Inventory, OperatorCommand, OperatorCommandKind, Reading};
use crate::stage::{Command, Logged, LoggedFact};
use crate::stats::{LogLimiter, Stats};
use crate::wal::{self, record, CommandFact, Head, Writer};

/// Hashes the content hashes of `recent` as themselves: they already are uniform 64-bit hashes
/// (`record::content_hash`), so hashing them again per reading is wasted work.
#[derive(Default)]
struct Passthrough(u64);

impl std::hash::Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the set holds `u64`s); anything else is folded in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Content hashes kept to recognise redelivered messages.
const RECENT: usize = 65_536;
/// How long a batch of facts nobody waits for — readings without an acknowledgment to send
/// (Modbus polls, MQTT QoS 0) — may collect before its commit. Such a batch is committed at
/// once when it fills `log.commit_batch` or when anything someone waits for joins it (a QoS 1
/// message, a command): alarm latency of acknowledged messages is untouched, while a Modbus
/// poller's commits (one `fdatasync` each) carry many polls instead of a few.
const UNHURRIED_LINGER: Duration = Duration::from_millis(5);
/// Wait before retrying a commit that failed (disk full, I/O error).
const RETRY: Duration = Duration::from_secs(1);

/// What feeds the intake.
pub struct IntakeInputs {
    /// Readings from every source; the intake (and then the stage) ends when this closes.
    pub readings: mpsc::Receiver<Reading>,
    /// Acknowledgments and on-site reports from MQTT, with their message's acknowledgment.
    pub operator: mpsc::Receiver<(OperatorCommand, Ack)>,
    /// The API's commands that are facts (acknowledge, on site, maintenance).
    pub commands: mpsc::Receiver<Command>,
}

/// An opened log, ready to run.
pub struct Intake {
    writer: Arc<Mutex<Writer>>,
    settings: LogSettings,
    recent: HashSet<u64, BuildHasherDefault<Passthrough>>,
    recent_order: VecDeque<u64>,
    /// Where the engine's catch-up starts.
    engine_from: u64,
    head_tx: watch::Sender<Head>,
    inventory: Arc<Inventory>,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
    logs: LogLimiter<&'static str>,
    commit_us: VecDeque<u64>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("dir", &self.settings.dir)
            .finish_non_exhaustive()
    }
}

/// A fact waiting for its commit.
struct Pending {
    lsn: u64,
    now_ms: i64,
    item: Item,
}

enum Item {
    Reading(Reading),
    Command(Command),
    Operator(OperatorCommand, Ack),
    /// A redelivered copy of a logged message: acknowledged after this commit, not applied.
    Duplicate(Ack),
}

impl Intake {
    /// Opens (or creates) the log: a torn tail is cut off (counted, logged). `engine_pos`
    /// (from the journal) and `store_pos` (the store sink's file) are where the consumers
    /// stand; a new log starts after them.
    pub fn open(
        settings: LogSettings,
        engine_pos: u64,
        store_pos: u64,
        inventory: Arc<Inventory>,
        clock: Arc<dyn Clock>,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Intake> {
        let opened = Writer::open(
            &settings.dir,
            engine_pos.max(store_pos),
            settings.segment_bytes,
            RECENT,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the input log in {}: {e}; check that `gateway.data_dir` is writable and the disk is not full",
                settings.dir.display()
            )
        })?;
        if opened.truncated_bytes > 0 {
            stats.log.truncations.fetch_add(1, Relaxed);
            warn!(dir = %settings.dir.display(), bytes = opened.truncated_bytes,
                  "The input log ended in a torn record (the gateway was killed mid-write); cut it off. Its message was not acknowledged, so the broker sends it again.");
        }
        let writer = opened.writer;
        let head = writer.head();
        let engine_from = if engine_pos == 0 {
            head.first_kept
        } else {
            engine_pos
        };
        let mut recent_order = VecDeque::with_capacity(RECENT);
        recent_order.extend(opened.recent.iter().copied());
        let recent = opened.recent.into_iter().collect();
        let (head_tx, _) = watch::channel(head);
        stats.log.head.store(head.next_lsn, Relaxed);
        stats.log.bytes.store(writer.bytes(), Relaxed);
        stats
            .log
            .segments
            .store(writer.segment_count() as u64, Relaxed);
        stats.log.engine_pos.store(engine_from, Relaxed);
        stats
            .log
            .store_pos
            .store(store_pos.max(head.first_kept), Relaxed);
        info!(dir = %settings.dir.display(), next = head.next_lsn, engine_from,
              "Input log open.");
        Ok(Intake {
            writer: Arc::new(Mutex::new(writer)),
            settings,
            recent,
            recent_order,
            engine_from,
            head_tx,
            inventory,
            clock,
            stats,
            logs: LogLimiter::new(5, 60_000),
            commit_us: VecDeque::with_capacity(256),
        })
    }

    /// Where the committed log ends, now and as it moves (the store sink reads up to it).
    pub fn head(&self) -> watch::Receiver<Head> {
        self.head_tx.subscribe()
    }

    pub fn dir(&self) -> PathBuf {
        self.settings.dir.clone()
    }

    /// Runs until `inputs.readings` closes, then drops `out` (the stage ends after it).
    pub fn spawn(self, inputs: IntakeInputs, out: mpsc::Sender<Logged>) -> JoinHandle<()> {
        tokio::spawn(self.run(inputs, out))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    async fn run(mut self, mut inputs: IntakeInputs, out: mpsc::Sender<Logged>) {
        self.catch_up(&out).await;
        let max = self.settings.commit_batch.max(1);
        let mut next_lsn = self.lock().next_lsn();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut pending: Vec<Pending> = Vec::with_capacity(max);
        let mut first_arrival = i64::MAX;
        let mut inflight: Option<Inflight> = None;
        let mut readings_open = true;
        // Whether the batch holds something a client waits for, and when its first reading
        // came (what the linger counts from).
        let mut hurry = false;
        let mut since: Option<tokio::time::Instant> = None;
        // Fires `UNHURRIED_LINGER` after `since`; re-armed when a batch begins (not per turn).
        let linger = tokio::time::sleep(UNHURRIED_LINGER);
        tokio::pin!(linger);
        loop {
            let due = hurry
                || !readings_open
                || pending.len() >= max
                || since.is_some_and(|t| t.elapsed() >= UNHURRIED_LINGER);
            if inflight.is_none() && !pending.is_empty() && due {
                hurry = false;
                since = None;
                let records = pending
                    .iter()
                    .filter(|p| !matches!(p.item, Item::Duplicate(_)))
                    .count() as u64;
                inflight = Some(self.commit(
                    std::mem::replace(&mut buf, std::mem::take(&mut spare)),
                    std::mem::replace(&mut pending, Vec::with_capacity(max)),
                    records,
                    std::mem::replace(&mut first_arrival, i64::MAX),
                ));
            }
            if !readings_open && pending.is_empty() && inflight.is_none() {
                break;
            }
            let room = pending.len() < max;
            tokio::select! {
                biased;
                done = async { inflight.as_mut().map(|f| &mut f.task).expect("guarded").await },
                    if inflight.is_some() =>
                {
                    let Some(f) = inflight.take() else { continue };
                    match done {
                        Ok((mut b, Ok(()), took)) => {
                            // The written buffer becomes the spare for the next commit (the
                            // records that arrived meanwhile are in `buf`).
                            b.clear();
                            spare = b;
                            self.committed(f.items, f.records, took, &out).await;
                        }
                        Ok((b, Err(e), _)) => {
                            self.stats.log.errors.fetch_add(1, Relaxed);
                            self.stats.log.failing.store(1, Relaxed);
                            if let Some(n) = self.logs.allow("append", self.clock.now_ms()) {
                                error!(error = %e, dir = %self.settings.dir.display(), suppressed = n,
                                       "Cannot write the input log (disk full?); nothing is acknowledged or applied until it can, and the broker keeps the messages. Retrying every second.");
                            }
                            tokio::time::sleep(RETRY).await;
                            inflight = Some(self.commit(b, f.items, f.records, f.first_arrival));
                        }
                        Err(e) => {
                            error!(error = %e, "The input log's writer thread failed; stopping intake.");
                            break;
                        }
                    }
                }
                () = &mut linger, if inflight.is_none() && !pending.is_empty() && !due && since.is_some() => {}
                r = inputs.readings.recv(), if readings_open && room => match r {
                    Some(r) => {
                        if since.is_none() {
                            let t = tokio::time::Instant::now();
                            since = Some(t);
                            linger.as_mut().reset(t + UNHURRIED_LINGER);
                        }
                        // This reading and whatever else is queued, up to the batch's room:
                        // one turn of this loop per burst, not per reading.
                        let mut next = Some(r);
                        while let Some(r) = next.take() {
                            hurry |= !matches!(r.ack, Ack::None);
                            let now = self.clock.now_ms();
                            let start = buf.len();
                            record::encode_reading(&mut buf, next_lsn, now, &self.inventory, &r);
                            let item = Item::Reading(r);
                            self.push(&mut pending, &mut buf, start, &mut next_lsn, &mut first_arrival, now, item);
                            if pending.len() < max {
                                next = inputs.readings.try_recv().ok();
                            }
                        }
                    }
                    None => readings_open = false,
                },
                Some((c, ack)) = inputs.operator.recv(), if readings_open && room => {
                    hurry = true;
                    let now = self.clock.now_ms();
                    let fact = CommandFact::Alarm {
                        on_site: c.kind == OperatorCommandKind::OnSite,
                        id: c.id.clone(),
                        by: c.by.clone(),
                        ts_ms: c.ts_ms,
                    };
                    let start = buf.len();
                    record::encode_command(&mut buf, next_lsn, now, &fact);
                    let item = Item::Operator(c, ack);
                    self.push(&mut pending, &mut buf, start, &mut next_lsn, &mut first_arrival, now, item);
                }
                Some(c) = inputs.commands.recv(), if readings_open && room => {
                    let now = self.clock.now_ms();
                    match self.command_fact(&c) {
                        Some(fact) => {
                            hurry = true;
                            record::encode_command(&mut buf, next_lsn, now, &fact);
                            pending.push(Pending { lsn: next_lsn, now_ms: now, item: Item::Command(c) });
                            next_lsn += 1;
                            first_arrival = first_arrival.min(now);
                        }
                        // Not a fact (a question): straight on, unlogged.
                        None => {
                            let _ = out.send(Logged { lsn: 0, now_ms: now, fact: LoggedFact::Command(c) }).await;
                        }
                    }
                }
            }
        }
        let head = self.lock().head();
        info!(next = head.next_lsn, "Input log closed.");
    }

    /// Adds an encoded fact to the batch, or (a copy of a recent record) takes it back out.
    /// Only what a broker may send again (an MQTT QoS 1 message) is hashed and remembered:
    /// a Modbus poll or a QoS 0 message never comes twice.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        pending: &mut Vec<Pending>,
        buf: &mut Vec<u8>,
        start: usize,
        next_lsn: &mut u64,
        first_arrival: &mut i64,
        now: i64,
        item: Item,
    ) {
        let redeliverable = match &item {
            Item::Reading(r) => matches!(r.ack, Ack::Mqtt { .. }),
            Item::Operator(_, ack) => matches!(ack, Ack::Mqtt { .. }),
            _ => false,
        };
        if redeliverable {
            let hash = record::hash_at(buf, start);
            if self.recent.contains(&hash) {
                // Take the record back out of the buffer: it is the last one written.
                buf.truncate(start);
                self.stats.log.duplicates.fetch_add(1, Relaxed);
                let ack = match item {
                    Item::Reading(mut r) => std::mem::take(&mut r.ack),
                    Item::Operator(_, ack) => ack,
                    _ => Ack::None,
                };
                pending.push(Pending {
                    lsn: 0,
                    now_ms: now,
                    item: Item::Duplicate(ack),
                });
                return;
            }
            if self.recent_order.len() >= RECENT {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
            if self.recent.insert(hash) {
                self.recent_order.push_back(hash);
            }
        }
        pending.push(Pending {
            lsn: *next_lsn,
            now_ms: now,
            item,
        });
        *next_lsn += 1;
        *first_arrival = (*first_arrival).min(now);
    }

    /// A command as the fact it logs; `None` for questions (devices, alarms, windows).
    fn command_fact(&self, c: &Command) -> Option<CommandFact> {
        Some(match c {
            Command::Acknowledge { id, by, ts_ms, .. } => CommandFact::Alarm {
                on_site: false,
                id: id.clone(),
                by: by.clone(),
                ts_ms: *ts_ms,
            },
            Command::OnSite { id, by, ts_ms, .. } => CommandFact::Alarm {
                on_site: true,
                id: id.clone(),
                by: by.clone(),
                ts_ms: *ts_ms,
            },
            Command::AddMaintenance {
                device,
                start_ms,
                end_ms,
                reason,
                by,
                ..
            } => {
                let d = self.inventory.get(*device);
                CommandFact::Maintenance {
                    site: d.site.clone(),
                    device: d.id.clone(),
                    start_ms: *start_ms,
                    end_ms: *end_ms,
                    reason: reason.clone(),
                    by: by.clone(),
                }
            }
            Command::EndMaintenance { id, .. } => CommandFact::MaintenanceEnd { id: id.clone() },
            _ => return None,
        })
    }

    /// Writes and fsyncs a batch on a blocking thread.
    fn commit(
        &self,
        buf: Vec<u8>,
        items: Vec<Pending>,
        records: u64,
        first_arrival: i64,
    ) -> Inflight {
        let writer = self.writer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let r = lock(&writer).append(&buf, records, first_arrival);
            (buf, r, t.elapsed())
        });
        Inflight {
            task,
            items,
            records,
            first_arrival,
        }
    }

    /// A batch is durable: acknowledge its messages, hand its facts to the stage, publish the
    /// new head, trim the log.
    async fn committed(
        &mut self,
        items: Vec<Pending>,
        records: u64,
        took: Duration,
        out: &mpsc::Sender<Logged>,
    ) {
        let stats = self.stats.clone();
        let s = &stats.log;
        s.failing.store(0, Relaxed);
        s.records.fetch_add(records, Relaxed);
        s.commits.fetch_add(1, Relaxed);
        self.note_commit(took);
        let (head, trimmed, bytes, segments) = {
            let consumed = s.engine_pos.load(Relaxed).min(s.store_pos.load(Relaxed));
            let keep_since = self
                .clock
                .now_ms()
                .saturating_sub(self.settings.retention.as_millis() as i64);
            let mut w = self.lock();
            let t = w.trim(consumed, keep_since, self.settings.max_bytes);
            (w.head(), t, w.bytes(), w.segment_count())
        };
        if trimmed.dropped > 0 {
            let at = |ms: i64| {
                jiff::Timestamp::from_millisecond(ms)
                    .map_or_else(|_| ms.to_string(), |t| t.to_string())
            };
            error!(records = trimmed.dropped, from = %at(trimmed.dropped_from_ms), to = %at(trimmed.dropped_to_ms),
                   max_bytes = self.settings.max_bytes,
                   "The input log reached log.max_bytes while the store was behind: deleted the oldest records it had not written (the store sink counts them as log_dropped).");
        }
        s.head.store(head.next_lsn, Relaxed);
        s.bytes.store(bytes, Relaxed);
        s.segments.store(segments as u64, Relaxed);
        let _ = self.head_tx.send(head);
        for p in items {
            let fact = match p.item {
                Item::Duplicate(ack) => {
                    ack.settle();
                    continue;
                }
                Item::Reading(mut r) => {
                    std::mem::take(&mut r.ack).settle();
                    LoggedFact::Reading(r)
                }
                Item::Operator(c, ack) => {
                    ack.settle();
                    LoggedFact::Command(c.into())
                }
                Item::Command(c) => LoggedFact::Command(c),
            };
            if out
                .send(Logged {
                    lsn: p.lsn,
                    now_ms: p.now_ms,
                    fact,
                })
                .await
                .is_err()
            {
                // The stage stopped: what is logged is applied at the next start.
                break;
            }
        }
    }

    fn note_commit(&mut self, took: Duration) {
        if self.commit_us.len() == 256 {
            self.commit_us.pop_front();
        }
        self.commit_us.push_back(took.as_micros() as u64);
        let n = self.stats.log.commits.load(Relaxed);
        if n % 32 == 1 {
            let mut v: Vec<u64> = self.commit_us.iter().copied().collect();
            v.sort_unstable();
            let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            self.stats.log.commit_p50_us.store(p(0.5), Relaxed);
            self.stats.log.commit_p99_us.store(p(0.99), Relaxed);
        }
    }

    /// Replays to the stage what the log holds beyond the engine's committed position.
    async fn catch_up(&mut self, out: &mpsc::Sender<Logged>) {
        let head = self.lock().head();
        if self.engine_from >= head.next_lsn {
            return;
        }
        let dir = self.settings.dir.clone();
        let mut reader = wal::Reader::open(&dir, self.engine_from);
        let (mut n, mut skipped) = (0u64, 0u64);
        loop {
            let rec = match reader.next(&head) {
                Ok(Some(body)) => record::decode(body),
                Ok(None) => break,
                Err(e) => {
                    error!(error = %e, "Input log: skipping the rest of a corrupt segment while catching up.");
                    if reader.skip_segment().is_err() {
                        break;
                    }
                    continue;
                }
            };
            let Ok(rec) = rec else {
                skipped += 1;
                continue;
            };
            let fact = match &rec.fact {
                wal::Fact::Reading { .. } => {
                    rec.fact.reading(&self.inventory).map(LoggedFact::Reading)
                }
                wal::Fact::Command(c) => command_of(&self.inventory, c).map(LoggedFact::Command),
            };
            let Some(fact) = fact else {
                skipped += 1;
                continue;
            };
            n += 1;
            if out
                .send(Logged {
                    lsn: rec.lsn,
                    now_ms: rec.arrival_ms,
                    fact,
                })
                .await
                .is_err()
            {
                return;
            }
        }
        info!(
            facts = n,
            skipped,
            from = self.engine_from,
            to = head.next_lsn,
            "Replayed the input log beyond the journal's position to the engine."
        );
    }
}

struct Inflight {
    task: JoinHandle<(Vec<u8>, std::io::Result<()>, Duration)>,
    items: Vec<Pending>,
    records: u64,
    first_arrival: i64,
}

fn lock(w: &Mutex<Writer>) -> std::sync::MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A logged command as the stage's command (nobody waits for its answer).
pub fn command_of(inventory: &Inventory, c: &CommandFact) -> Option<Command> {
    Some(match c {
        CommandFact::Alarm {
            on_site,
            id,
            by,
            ts_ms,
        } => Command::from(OperatorCommand {
            kind: if *on_site {
                OperatorCommandKind::OnSite
            } else {
                OperatorCommandKind::Ack
            },
            id: id.clone(),
            by: by.clone(),
            ts_ms: *ts_ms,
        }),
        CommandFact::Maintenance {
            site,
            device,
            start_ms,
            end_ms,
            reason,
            by,
        } => Command::AddMaintenance {
            device: inventory.lookup(site, device)?,
            start_ms: *start_ms,
            end_ms: *end_ms,
            reason: reason.clone(),
            by: by.clone(),
            reply: None,
        },
        CommandFact::MaintenanceEnd { id } => Command::EndMaintenance {
            id: id.clone(),
            reply: None,
        },
    })
}
