//! The journal's own thread (issue 16): the core stage hands each transaction — events, the
//! devices' progress and the input log position that produced them — to this thread and goes
//! straight on to the sinks, so an alarm is published while its SQLite transaction is still
//! being written instead of after it. With 1,000 devices reporting, a transaction carries the
//! progress rows of hundreds of devices (several milliseconds); on the stage that time was
//! added to every alarm's latency.
//!
//! What stays the same: the jobs are applied in the order they were sent, each commit is one
//! transaction (events, progress and position all or nothing), and the engine's position in
//! the input log (`log_engine_pos`, what the log may trim) moves only once its transaction is
//! committed. Commits queued behind a slow one are merged into one transaction (in order:
//! progress upserts keep the last row per device, the position is the last one), so a backlog
//! costs fewer transactions, never more. The sinks may hear of an event a few milliseconds
//! before it is journaled; after a crash in between, the log replays the facts the journal
//! lacks and the event is journaled then (and notified again: notification is at least once).
//! The stage applies readings before the input log has made them durable (`crate::intake`),
//! so a commit first waits until the log holds every fact the stage had applied when it was
//! sent (`log_needed`, `wal::Durable`): the journal never records what the log could lose.
//! Escalation steps are the exception: they fire on the gateway's clock, not from a fact the
//! log could replay, so the stage waits for their commit (`done`) before sending them; after
//! a restart the journal says which steps fired and none is sent twice.
//! The stage stops only after this thread has written everything it was sent.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use super::{Journal, JournalError};
use crate::clock::Clock;
use crate::model::event::Event;
use crate::model::restore::DeviceProgress;
use crate::model::Inventory;
use crate::stats::{LogLimiter, Stats};
use crate::wal::{Durable, Waited};

/// How long a commit waits for the input log before it stops holding up escalation steps
/// (the log's own retry after a failed write is every second).
const LOG_STUCK: std::time::Duration = std::time::Duration::from_secs(2);

/// Jobs queued for the thread before the stage waits for it (backpressure, never a drop: the
/// journal is the source of truth of the figures).
const QUEUE: usize = 64;

/// What the journal's thread is asked to do.
#[derive(Debug)]
pub enum Job {
    /// One transaction: events, the devices' progress, the engine's position in the input log
    /// (next lsn) if it moved.
    Commit {
        events: Vec<Event>,
        progress: Vec<DeviceProgress>,
        position: Option<u64>,
        /// Every input log record below this lsn must be durable before the commit (what the
        /// stage had applied when it sent it); 0: nothing to wait for.
        log_needed: u64,
        /// Told once this commit is done (whether it succeeded or not): for what must be
        /// journaled before anyone hears of it (escalation steps).
        done: Option<oneshot::Sender<()>>,
    },
    /// This run is alive at the given time (`Journal::alive`).
    Alive(i64),
    /// This run stopped cleanly at the given time (`Journal::end_run`).
    EndRun(i64),
}

/// The stage's end of the journal's thread.
#[derive(Debug)]
pub struct JournalWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JournalWriter {
    /// Moves `journal` onto its own thread. Its results show in `stats` (`journal_errors`,
    /// `journal_failing`, `log_engine_pos`) and in the log (rate-limited).
    /// `durable`: the input log's durable end, waited for before a commit (`None`: facts are
    /// not logged, nothing to wait for).
    pub fn start(
        journal: Journal,
        durable: Option<Arc<Durable>>,
        inventory: Arc<Inventory>,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<JournalWriter> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut thread = Thread {
            path: journal.path().to_path_buf(),
            journal,
            durable,
            inventory,
            stats,
            clock,
            logs: LogLimiter::new(5, 60_000),
        };
        let handle = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || thread.run(rx))?;
        Ok(JournalWriter {
            tx: Some(tx),
            thread: Some(handle),
        })
    }

    /// Queues a job; waits only while the thread is `QUEUE` jobs behind.
    pub async fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            // The thread ends only when this sender is dropped (or it panicked: then the
            // panic is reported by `close`).
            let _ = tx.send(job).await;
        }
    }

    /// Lets the thread write what it was sent, then waits for it to end.
    pub async fn close(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            match tokio::task::spawn_blocking(move || t.join()).await {
                Ok(Ok(())) => {}
                _ => error!("The journal's thread failed; what it had not written is replayed from the input log at the next start."),
            }
        }
    }
}

struct Thread {
    journal: Journal,
    durable: Option<Arc<Durable>>,
    path: PathBuf,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    logs: LogLimiter<&'static str>,
}

impl Thread {
    fn run(&mut self, mut rx: mpsc::Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(j) => j,
                None => match rx.blocking_recv() {
                    Some(j) => j,
                    None => break,
                },
            };
            match job {
                Job::Commit {
                    mut events,
                    mut progress,
                    mut position,
                    mut log_needed,
                    done,
                } => {
                    let mut waiting: Vec<oneshot::Sender<()>> = done.into_iter().collect();
                    let mut released = false;
                    let durable = self.durable.clone();
                    let mut lost = false;
                    loop {
                        // Merge the commits already queued behind this one (in order). A
                        // heartbeat is written at once (it depends on nothing before it): the
                        // stage's queue keeps draining while the log is stuck.
                        while next.is_none() {
                            match rx.try_recv() {
                                Ok(Job::Commit {
                                    events: e,
                                    progress: p,
                                    position: q,
                                    log_needed: n,
                                    done,
                                }) => {
                                    events.extend(e);
                                    progress.extend(p);
                                    if progress.len() > 2 * self.inventory.len().max(64) {
                                        keep_last_per_device(&mut progress);
                                    }
                                    position = q.or(position);
                                    log_needed = log_needed.max(n);
                                    waiting.extend(done);
                                }
                                Ok(Job::Alive(now)) => match self.journal.alive(now) {
                                    Ok(()) => self.ok(),
                                    Err(e) => self.failed(e),
                                },
                                Ok(other) => next = Some(other),
                                Err(_) => break,
                            }
                        }
                        let Some(d) = durable.as_ref().filter(|_| log_needed > 0) else {
                            break;
                        };
                        match d.wait_for(log_needed, LOG_STUCK) {
                            Waited::Durable => break,
                            Waited::Closed => {
                                lost = true;
                                break;
                            }
                            Waited::TimedOut => {
                                // The log cannot be written (disk full?): what waits for this
                                // commit (an escalation step) is not held up by it — it goes
                                // out unjournaled, as when the journal itself cannot be
                                // written. The commit follows once the log holds its facts.
                                if !released {
                                    released = true;
                                    error!(needed = log_needed, durable = d.next_lsn(),
                                           "The input log has not been written for a while (disk full?); journaling waits for it, escalation steps go out meanwhile.");
                                }
                                for w in waiting.drain(..) {
                                    let _ = w.send(());
                                }
                            }
                        }
                    }
                    if lost {
                        // The intake ended before the log held the facts these came from:
                        // the broker sends their messages again and the engine (back at the
                        // journal's state) applies them again at the next start.
                        error!(needed = log_needed, durable = durable.as_ref().map_or(0, |d| d.next_lsn()),
                               "The input log stopped before it held facts the engine had applied; not journaling what came from them (they are applied again at the next start).");
                        for w in waiting {
                            let _ = w.send(());
                        }
                        continue;
                    }
                    let r = self
                        .journal
                        .commit(&self.inventory, &events, &progress, position);
                    match r {
                        Ok(()) => {
                            if !events.is_empty() || !progress.is_empty() || position.is_some() {
                                self.ok();
                            }
                            if let Some(p) = position {
                                self.stats.log.engine_pos.store(p, Relaxed);
                            }
                        }
                        Err(e) => self.failed(e),
                    }
                    for w in waiting {
                        let _ = w.send(());
                    }
                }
                Job::Alive(now) => match self.journal.alive(now) {
                    Ok(()) => self.ok(),
                    Err(e) => self.failed(e),
                },
                Job::EndRun(now) => match self.journal.end_run(now) {
                    Ok(()) => self.ok(),
                    Err(e) => self.failed(e),
                },
            }
        }
        info!(path = %self.path.display(), "Journal closed.");
    }

    /// A journal write succeeded: if the last one had failed, say that journaling goes on.
    fn ok(&mut self) {
        if self.stats.core.journal_failing.swap(0, Relaxed) == 1 {
            info!(path = %self.path.display(),
                  "The journal can be written again; journaling goes on (what failed before is missing from the figures).");
        }
    }

    fn failed(&mut self, e: JournalError) {
        self.stats.core.journal_errors.fetch_add(1, Relaxed);
        self.stats.core.journal_failing.store(1, Relaxed);
        if let Some(n) = self.logs.allow("journal", self.clock.now_ms()) {
            // Through anyhow for `{:#}`: the sentence, then its SQLite or I/O cause.
            let e = anyhow::Error::new(e);
            error!(error = format!("{e:#}"), path = %self.path.display(), suppressed = n,
                   "Could not write the journal; states and alarms go on, but this history will be missing from the figures.");
        }
    }
}

/// Merged progress rows keep only the newest per device (what the commit's upserts would keep):
/// while the input log is stuck, commits merge here for as long as it lasts, and this keeps
/// them to one row per device instead of one per device and save.
fn keep_last_per_device(progress: &mut Vec<DeviceProgress>) {
    let mut seen = std::collections::HashSet::with_capacity(progress.len());
    let mut kept: Vec<DeviceProgress> = progress
        .drain(..)
        .rev()
        .filter(|p| seen.insert(p.device))
        .collect();
    kept.reverse();
    *progress = kept;
}

#[cfg(test)]
mod keep_last_tests {
    use crate::model::restore::DeviceProgress;

    fn row(device: u32, applied_ms: i64) -> DeviceProgress {
        DeviceProgress {
            device,
            applied_ms,
            ..DeviceProgress::default()
        }
    }

    #[test]
    fn merged_progress_keeps_the_newest_row_per_device_in_order() {
        let mut p = vec![row(0, 1), row(1, 1), row(0, 2), row(2, 1), row(1, 3)];
        super::keep_last_per_device(&mut p);
        let got: Vec<(u32, i64)> = p.iter().map(|r| (r.device, r.applied_ms)).collect();
        assert_eq!(got, vec![(0, 2), (2, 1), (1, 3)]);
    }
}
