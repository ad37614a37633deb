//! The journal (DESIGN §2): the durable record of every device state transition, every alarm
//! lifecycle step, every maintenance window and every run of the gateway, in one SQLite file
//! `<data_dir>/journal.sqlite`. It is the source of truth for all graded figures (DESIGN §4):
//! a KPI over any period is a query over it, and a restart restores device states, alarms,
//! windows and sequence numbers from it (`Journal::restore`).
//!
//! The file is opened in WAL mode with `synchronous = NORMAL` (a power cut may lose the last
//! committed transactions, never corrupt the file) and a 5 s busy timeout. One gateway writes
//! it (`Journal::open` holds `<data_dir>/journal.lock` for the life of the `Journal`, so a
//! second gateway on the same `data_dir` is refused); any number of readers (the `report`
//! command, `Journal::open_read_only`) may read it at the same time and see what the writer
//! has committed. Each `append` is one transaction: a batch of events is journaled entirely
//! or not at all.
//!
//! The module's files: `schema.rs` (the tables, their documentation and the migrations),
//! `write.rs` (what the core stage writes: events, device positions, runs), `restore.rs` (what
//! the engine needs at start), `queries.rs` (period queries for reports), `error.rs`
//! (`JournalError`: what can fail, one variant per kind, in sentences naming the file).

mod error;
mod queries;
mod restore;
mod schema;
mod write;
mod writes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tracing::warn;

pub use error::JournalError;
use error::{explain, is_busy, SqlContext};
#[cfg(test)]
pub use queries::RunRecord;
pub use queries::{AlarmRecord, ComplianceRecord, HourlyRecord, TransitionRecord};
use schema::migrate;
pub use schema::SCHEMA_VERSION;
pub use writes::{WriteLog, WriteRecord};

/// The journal's file name inside `data_dir`.
pub const FILE_NAME: &str = "journal.sqlite";

/// The lock file inside `data_dir`, held (an exclusive SQLite lock, released by the OS when the
/// process ends) by the one gateway that writes the journal.
pub const LOCK_FILE_NAME: &str = "journal.lock";

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The journal: one SQLite connection, writable (`open`, one gateway) or read-only
/// (`open_read_only`, reports). See `schema.rs` for the schema.
#[derive(Debug)]
pub struct Journal {
    /// Stopped (joined) first when the journal is dropped, before `conn` closes.
    _checkpointer: Option<Checkpointer>,
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// The `runs.id` of this run, between `begin_run` and `end_run`.
    run_id: Option<i64>,
    /// Holds `journal.lock` while this (writable) journal is open.
    _lock: Option<Connection>,
}

/// How often the checkpointer moves the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A thread with its own connection that checkpoints the WAL every second (PASSIVE: it never
/// blocks the writer or readers). Stops when dropped.
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, JournalError> {
        let doing = "opening the journal's checkpoint connection";
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .sql(path, doing)?;
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // The flag is checked before every wait: a stop that came before the wait
                // began must not cost a whole interval.
                while !*stopped {
                    let (guard, _) = cvar
                        .wait_timeout(stopped, CHECKPOINT_EVERY)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    stopped = guard;
                    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = r {
                        warn!(journal = %shown, error = %e, "Journal checkpoint failed; retrying.");
                    }
                }
            })
            .map_err(|error| JournalError::Thread {
                path: path.to_path_buf(),
                error,
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Journal {
    /// Opens or creates `<dir>/journal.sqlite` (creating `dir`), in WAL mode, migrating an
    /// older schema. Takes `<dir>/journal.lock`: a second gateway on the same `dir` gets an
    /// error. Errors name the path and say what to do (permissions, disk full, locked).
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_with_lock_wait(dir, BUSY_TIMEOUT)
    }

    fn open_with_lock_wait(dir: &Path, lock_wait: Duration) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = acquire_lock(dir, lock_wait)?;
        let path = dir.join(FILE_NAME);
        let doing = "opening the journal";
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .sql(&path, doing)?;
        conn.busy_timeout(BUSY_TIMEOUT).sql(&path, doing)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .sql(&path, doing)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::NoWal { path, mode });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .sql(&path, doing)?;
        migrate(&mut conn, &path)?;
        // Checkpoints (the only fsyncs in WAL mode with synchronous=NORMAL, a few ms each)
        // run on their own thread, not inside `append` on the core stage: the alarm
        // benchmark traced its latency tail to them.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .sql(&path, doing)?;
        let checkpointer = Checkpointer::start(&path)?;
        Ok(Journal {
            _checkpointer: Some(checkpointer),
            conn,
            path,
            read_only: false,
            run_id: None,
            _lock: Some(lock),
        })
    }

    /// Opens an existing journal file read-only, e.g. for `report` while a gateway writes it:
    /// each query sees what the writer had committed when the query began.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        let doing = "opening the journal read-only";
        if !path.is_file() {
            return Err(JournalError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .sql(path, doing)?;
        conn.busy_timeout(BUSY_TIMEOUT).sql(path, doing)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .sql(path, doing)?;
        if version == 0 {
            return Err(JournalError::NotAJournal {
                path: path.to_path_buf(),
            });
        }
        if version > SCHEMA_VERSION {
            return Err(JournalError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
                read_only: true,
            });
        }
        if version < SCHEMA_VERSION {
            return Err(JournalError::OlderSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Journal {
            _checkpointer: None,
            conn,
            path: path.to_path_buf(),
            read_only: true,
            run_id: None,
            _lock: None,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writable(&self, doing: &str) -> Result<(), JournalError> {
        if self.read_only {
            return Err(JournalError::OpenedReadOnly {
                path: self.path.clone(),
                doing: doing.to_owned(),
            });
        }
        Ok(())
    }

    fn current_run(&self, doing: &str) -> Result<i64, JournalError> {
        self.writable(doing)?;
        self.run_id.ok_or_else(|| JournalError::NoRun {
            path: self.path.clone(),
            doing: doing.to_owned(),
        })
    }
}

/// Takes `<dir>/journal.lock`: an empty SQLite file on which the writer holds an exclusive
/// lock (an open `BEGIN EXCLUSIVE`) for as long as it lives. The OS releases it when the
/// process ends, so a crash leaves no stale lock; readers of the journal never touch it.
fn acquire_lock(dir: &Path, wait: Duration) -> Result<Connection, JournalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let doing = "taking the journal lock";
    let conn = Connection::open(&path).sql(&path, doing)?;
    conn.busy_timeout(wait).sql(&path, doing)?;
    match conn.execute_batch("BEGIN EXCLUSIVE") {
        Ok(()) => Ok(conn),
        Err(source) if is_busy(&source) => Err(JournalError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
            source,
        }),
        Err(e) => Err(explain(e, &path, doing)),
    }
}

#[cfg(test)]
mod tests;
