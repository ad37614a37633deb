//! The intake (DESIGN §2, §6 "No data loss"): between the sources and the core stage, it
//! appends every accepted fact to the input log (`wal`) and makes it durable before it is
//! acknowledged (PUBACK) or journaled. The facts reach the core stage in log order.
//!
//! Readings go to the stage as soon as they are in the batch, while their commit is still
//! being written (issue 16: an alarm does not wait for the `fdatasync`); what the stage
//! derives from them is journaled only once the log holds them (`wal::Durable`, waited for by
//! the journal's thread), and their messages are acknowledged only then. After a crash
//! before the commit the broker sends the unacknowledged messages again and the engine, back
//! at the journal's state, applies them again: the journal ends up as if nothing happened; an
//! alarm event may have been published twice (notification is at least once). Commands
//! (acknowledgments, on-site reports, maintenance) are answered for: they go to the stage
//! only after their commit, and so does every fact behind them until that commit is done
//! (log order). If the stage's queue is full a reading waits for its commit too: the intake
//! never waits for the stage while the stage has facts the log does not hold yet (the
//! journal's thread waits for those, and the stage may wait for the journal).
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
use crate::wal::{self, record, CommandFact, Durable, Head, Writer};

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
    durable: Arc<Durable>,
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
    /// A reading already handed to the stage: its acknowledgment, sent after this commit.
    Applied(Ack),
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
            durable: Arc::new(Durable::new(head.next_lsn)),
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

    /// How far the log is durable (the journal's thread waits on it).
    pub fn durable(&self) -> Arc<Durable> {
        self.durable.clone()
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
        // However the intake ends, the journal's thread stops waiting for commits.
        let _close = CloseOnDrop(self.durable.clone());
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
        // The first fact of the batch collecting that has not gone to the stage (a command,
        // or a reading behind one, behind a full queue or behind a batch in flight that holds
        // such facts): it and every fact after it wait.
        let mut held_from: Option<usize> = None;
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
                let records = pending.iter().filter(|p| p.lsn > 0).count() as u64;
                inflight = Some(self.commit(
                    std::mem::replace(&mut buf, std::mem::take(&mut spare)),
                    std::mem::replace(&mut pending, Vec::with_capacity(max)),
                    records,
                    std::mem::replace(&mut first_arrival, i64::MAX),
                ));
                // If this batch holds facts back, the next one waits behind them from its start.
                held_from = held_from.map(|_| 0);
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
                            // What waited behind it may go now, up to the first command.
                            if let Some(from) = held_from {
                                held_from = promote(&mut pending[from..], &out).map(|i| from + i);
                            }
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
                            let fresh = self.push(&mut pending, &mut buf, start, &mut next_lsn, &mut first_arrival, now, item);
                            if fresh {
                                // To the stage now, unless a fact before it waits for its
                                // commit (or the stage's queue is full: it waits too).
                                if held_from.is_none() && !pending.last_mut().is_some_and(|p| apply_early(p, &out)) {
                                    held_from = Some(pending.len() - 1);
                                }
                            }
                            if pending.len() < max {
                                next = inputs.readings.try_recv().ok();
                            }
                        }
                    }
                    None => readings_open = false,
                },
                Some((c, ack)) = inputs.operator.recv(), if readings_open && room => {
                    hurry = true;
                    held_from.get_or_insert(pending.len());
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
                    hurry = true;
                    held_from.get_or_insert(pending.len());
                    match self.command_fact(&c) {
                        Some(fact) => {
                            record::encode_command(&mut buf, next_lsn, now, &fact);
                            pending.push(Pending { lsn: next_lsn, now_ms: now, item: Item::Command(c) });
                            next_lsn += 1;
                            first_arrival = first_arrival.min(now);
                        }
                        // Not a fact (a question): unlogged, in its place behind the facts
                        // before it (waiting for the stage here could hold up their commit).
                        None => pending.push(Pending { lsn: 0, now_ms: now, item: Item::Command(c) }),
                    }
                }
            }
        }
        let head = self.lock().head();
        info!(next = head.next_lsn, "Input log closed.");
    }

    /// Adds an encoded fact to the batch (`true`), or (a copy of a recent record) takes it back
    /// out (`false`). Only what a broker may send again (an MQTT QoS 1 message) is hashed and
    /// remembered: a Modbus poll or a QoS 0 message never comes twice.
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
    ) -> bool {
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
                return false;
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
        true
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

    /// Writes and fsyncs a batch on a blocking thread. Its durability is known from there
    /// (`Durable`), not only once this task sees it: the journal's thread never waits for the
    /// intake's turn.
    fn commit(
        &self,
        buf: Vec<u8>,
        items: Vec<Pending>,
        records: u64,
        first_arrival: i64,
    ) -> Inflight {
        let writer = self.writer.clone();
        let durable = self.durable.clone();
        let task = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let mut w = lock(&writer);
            let r = w.append(&buf, records, first_arrival);
            if r.is_ok() {
                durable.advance(w.next_lsn());
            }
            drop(w);
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
                Item::Duplicate(ack) | Item::Applied(ack) => {
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

/// Hands the held readings at the start of `items` to the stage (their turn came: what was
/// before them has gone), up to the first command or a full queue: that one's index.
fn promote(items: &mut [Pending], out: &mpsc::Sender<Logged>) -> Option<usize> {
    for (i, p) in items.iter_mut().enumerate() {
        match p.item {
            Item::Duplicate(_) | Item::Applied(_) => {}
            Item::Reading(_) => {
                if !apply_early(p, out) {
                    return Some(i);
                }
            }
            Item::Command(_) | Item::Operator(..) => return Some(i),
        }
    }
    None
}

/// Closes the log's `Durable` when the intake ends, however it ends.
struct CloseOnDrop(Arc<Durable>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Hands a batch's newest reading to the stage before its commit, leaving its acknowledgment
/// behind (`Item::Applied`). `false` (it stays, and goes after the commit) when the stage's
/// queue is full: the intake does not wait for the stage while the stage holds facts the log
/// does not have yet. A stage that stopped takes nothing (the log replays it at the start).
fn apply_early(p: &mut Pending, out: &mpsc::Sender<Logged>) -> bool {
    let Item::Reading(r) = &mut p.item else {
        return false;
    };
    let permit = match out.try_reserve() {
        Ok(permit) => Some(permit),
        Err(mpsc::error::TrySendError::Full(())) => return false,
        Err(mpsc::error::TrySendError::Closed(())) => None,
    };
    let ack = std::mem::take(&mut r.ack);
    if let (Some(permit), Item::Reading(r)) =
        (permit, std::mem::replace(&mut p.item, Item::Applied(ack)))
    {
        permit.send(Logged {
            lsn: p.lsn,
            now_ms: p.now_ms,
            fact: LoggedFact::Reading(r),
        });
    }
    true
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

#[cfg(test)]
// Holding the log's writer locked across awaits is the point: its commit is "being written".
#[allow(clippy::await_holding_lock)]
mod tests {
    //! The intake against a real log in a temp dir. The log's writer is held locked where a
    //! test needs a commit to be "still being written": what the stage gets meanwhile, and
    //! what is acknowledged, is then observed without timing. The tests run on a
    //! current-thread runtime, so the intake has handled a message once its channel has room
    //! again and the test has yielded.
    use std::time::Duration;

    use std::sync::{Arc, Mutex};

    use rumqttc::QoS;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    use crate::clock::SystemClock;
    use crate::intake::{Intake, IntakeInputs, LogSettings};
    use crate::model::{Ack, Device, Inventory, OperatorCommand, PendingAck, Profile, Reading};
    use crate::stage::{Command, Logged, LoggedFact};
    use crate::stats::Stats;
    use crate::wal::{Durable, Writer};

    fn inventory() -> Arc<Inventory> {
        let profile = Arc::new(Profile::new(
            "elevator".into(),
            "电梯".into(),
            Duration::from_secs(30),
            vec![],
        ));
        Arc::new(Inventory::new(vec![Device {
            id: "EL-1".into(),
            name: "3号楼EL-1".into(),
            site: "jinxiu".into(),
            building: "3号楼".into(),
            category: "elevator".into(),
            profile,
            rules: Default::default(),
            interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            polled: false,
        }]))
    }

    struct Harness {
        readings: mpsc::Sender<Reading>,
        commands: mpsc::Sender<Command>,
        _operator: mpsc::Sender<(OperatorCommand, Ack)>,
        logged: mpsc::Receiver<Logged>,
        acks_tx: mpsc::UnboundedSender<PendingAck>,
        acks: mpsc::UnboundedReceiver<PendingAck>,
        writer: Arc<Mutex<Writer>>,
        durable: Arc<Durable>,
        task: JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let intake = Intake::open(
            LogSettings::in_data_dir(dir.path()),
            0,
            0,
            inventory(),
            Arc::new(SystemClock),
            Arc::new(Stats::default()),
        )
        .expect("log opens");
        let writer = intake.writer.clone();
        let durable = intake.durable();
        let (readings, readings_rx) = mpsc::channel(8);
        let (commands, commands_rx) = mpsc::channel(8);
        let (operator, operator_rx) = mpsc::channel(8);
        let (logged_tx, logged) = mpsc::channel(64);
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let task = intake.spawn(
            IntakeInputs {
                readings: readings_rx,
                operator: operator_rx,
                commands: commands_rx,
            },
            logged_tx,
        );
        Harness {
            readings,
            commands,
            _operator: operator,
            logged,
            acks_tx,
            acks,
            writer,
            durable,
            task,
            _dir: dir,
        }
    }

    impl Harness {
        /// A QoS 1 reading of EL-1 at `ts_ms`, acknowledged as `pkid`.
        fn reading(&self, ts_ms: i64, pkid: u16) -> Reading {
            Reading {
                device: 0,
                ts_ms,
                values: Vec::new(),
                status: None,
                ack: Ack::Mqtt {
                    acks: self.acks_tx.clone(),
                    pkid,
                    qos: QoS::AtLeastOnce,
                },
            }
        }

        /// Yields until the intake has taken everything sent to it.
        async fn taken(&self) {
            for _ in 0..10_000 {
                if self.readings.capacity() == self.readings.max_capacity()
                    && self.commands.capacity() == self.commands.max_capacity()
                {
                    // Once more: the turn that took the last message has finished.
                    tokio::task::yield_now().await;
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("the intake did not take its input");
        }

        async fn next(&mut self) -> Logged {
            tokio::time::timeout(Duration::from_secs(10), self.logged.recv())
                .await
                .expect("a fact reaches the stage within 10 s")
                .expect("the intake is running")
        }
    }

    fn reading_ts(l: &Logged) -> Option<i64> {
        match &l.fact {
            LoggedFact::Reading(r) => Some(r.ts_ms),
            LoggedFact::Command(_) => None,
        }
    }

    #[tokio::test]
    async fn a_reading_reaches_the_stage_while_its_commit_is_written_and_is_acknowledged_after_it()
    {
        let mut h = start();
        // The intake's start reads the writer too: let it start before locking.
        h.taken().await;
        let lock = h.writer.clone();
        let guard = lock.lock().expect("writer");
        h.readings.send(h.reading(1_000, 7)).await.expect("sent");
        let first = h.next().await;
        assert_eq!(reading_ts(&first), Some(1_000));
        assert_eq!(first.lsn, 1);
        // Its commit cannot finish: neither durable nor acknowledged yet.
        assert_eq!(h.durable.next_lsn(), 1);
        assert!(h.acks.try_recv().is_err(), "acknowledged before its commit");
        drop(guard);
        let ack = tokio::time::timeout(Duration::from_secs(10), h.acks.recv())
            .await
            .expect("acknowledged once committed");
        assert_eq!(ack, Some((7, QoS::AtLeastOnce)));
        assert_eq!(h.durable.next_lsn(), 2);
        drop(h.readings);
        h.task.await.expect("intake ends");
    }

    #[tokio::test]
    async fn a_command_holds_the_readings_behind_it_until_its_commit() {
        let mut h = start();
        // The intake's start reads the writer too: let it start before locking.
        h.taken().await;
        let lock = h.writer.clone();
        let guard = lock.lock().expect("writer");
        h.readings.send(h.reading(1_000, 1)).await.expect("sent");
        assert_eq!(reading_ts(&h.next().await), Some(1_000));
        // The first commit is stuck; an acknowledgment and a reading arrive behind it.
        h.commands
            .send(Command::Acknowledge {
                id: "jinxiu-1".into(),
                by: "王工".into(),
                ts_ms: None,
                reply: None,
            })
            .await
            .expect("sent");
        h.taken().await;
        h.readings.send(h.reading(2_000, 2)).await.expect("sent");
        h.taken().await;
        assert!(
            h.logged.try_recv().is_err(),
            "nothing may overtake the command, and the command waits for its commit"
        );
        drop(guard);
        let command = h.next().await;
        assert!(matches!(
            command.fact,
            LoggedFact::Command(Command::Acknowledge { .. })
        ));
        let second = h.next().await;
        assert_eq!(reading_ts(&second), Some(2_000));
        assert_eq!((command.lsn, second.lsn), (2, 3), "log order");
        // Every record the stage got is durable by the time the command is applied.
        assert_eq!(h.durable.next_lsn(), 4);
        // Behind the command's commit, readings go early again.
        let guard = lock.lock().expect("writer");
        h.readings.send(h.reading(3_000, 3)).await.expect("sent");
        let third = h.next().await;
        assert_eq!((reading_ts(&third), third.lsn), (Some(3_000), 4));
        drop(guard);
        drop(h.readings);
        drop(h.commands);
        h.task.await.expect("intake ends");
        assert_eq!(h.durable.next_lsn(), 5, "every record committed at the end");
    }
}
