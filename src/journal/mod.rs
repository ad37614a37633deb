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
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tracing::{info, warn};

pub use error::JournalError;
use error::{explain, is_busy, SqlContext};
#[cfg(test)]
pub use queries::RunRecord;
pub use queries::{AlarmRecord, ComplianceRecord, HourlyRecord, TransitionRecord};
use schema::migrate;
pub use schema::SCHEMA_VERSION;
pub use writer::{Job, JournalWriter};
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
    /// Opened for a run on a disk too full to open it for writing (`open_for_run`): `conn`
    /// reads the file as it is (immutable), and every write first tries to open it for
    /// writing again.
    unwritable: bool,
    /// A run `begin_run` could not record yet (a full disk): recorded by the next `alive` or
    /// `end_run` that can write.
    pending_run: Option<PendingRun>,
}

/// The start of a run not yet in `runs`.
#[derive(Debug, Clone)]
struct PendingRun {
    started_ms: i64,
    host: String,
    version: String,
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
                // Logged once per run of failures (a full disk fails it every second).
                let mut failing = false;
                // The flag is checked before every wait: a stop that came before the wait
                // began must not cost a whole interval.
                while !*stopped {
                    let (guard, _) = cvar
                        .wait_timeout(stopped, CHECKPOINT_EVERY)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    stopped = guard;
                    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    match r {
                        Err(e) if !failing => {
                            failing = true;
                            warn!(journal = %shown, error = %e, "Journal checkpoint failed; retrying every second.");
                        }
                        Err(_) => {}
                        Ok(()) if failing => {
                            failing = false;
                            info!(journal = %shown, "Journal checkpoint works again.");
                        }
                        Ok(()) => {}
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
        let (conn, checkpointer) = open_writable(&path)?;
        Ok(Journal {
            _checkpointer: Some(checkpointer),
            conn,
            path,
            read_only: false,
            run_id: None,
            _lock: Some(lock),
            unwritable: false,
            pending_run: None,
        })
    }

    /// For `run`: `open`, or when the disk is too full for that, the journal as it is on disk
    /// with the reason it cannot be written yet (`Ok((journal, Some(why)))`). SQLite needs
    /// room for the WAL index (`journal.sqlite-shm`, 32 KiB) to open the file for writing; the
    /// gateway then restores from the file as it is (read-only, immutable: exact when the
    /// last run stopped cleanly, i.e. no WAL content is pending, else the full-disk error is
    /// returned), serves the live view, and opens it for writing again with the first write
    /// that finds room.
    pub fn open_for_run(dir: &Path) -> Result<(Journal, Option<JournalError>), JournalError> {
        let cause = match Journal::open(dir) {
            Ok(j) => return Ok((j, None)),
            Err(e @ (JournalError::DiskFull { .. } | JournalError::Io { .. })) => e,
            Err(e) => return Err(e),
        };
        let path = dir.join(FILE_NAME);
        let wal = dir.join(format!("{FILE_NAME}-wal"));
        let pending_wal = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0;
        if pending_wal || !path.is_file() {
            return Err(cause);
        }
        let lock = acquire_lock(dir, BUSY_TIMEOUT)?;
        let doing = "opening the journal read-only on a full disk";
        let conn = Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(&path)),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .sql(&path, doing)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .sql(&path, doing)?;
        if version != SCHEMA_VERSION {
            // A migration has to write: nothing to read until there is room.
            return Err(cause);
        }
        Ok((
            Journal {
                _checkpointer: None,
                conn,
                path,
                read_only: false,
                run_id: None,
                _lock: Some(lock),
                unwritable: true,
                pending_run: None,
            },
            Some(cause),
        ))
    }

    /// Whether the journal is open for writing (not waiting for room, see `open_for_run`).
    pub fn is_writable(&self) -> bool {
        !self.read_only && !self.unwritable
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
            unwritable: false,
            pending_run: None,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` when the journal can be written: opened read-write, or (after `open_for_run` on a
    /// full disk) opened for writing now. Records a pending run first.
    fn writable(&mut self, doing: &str) -> Result<(), JournalError> {
        if self.read_only {
            return Err(JournalError::OpenedReadOnly {
                path: self.path.clone(),
                doing: doing.to_owned(),
            });
        }
        if self.unwritable {
            let (conn, checkpointer) = open_writable(&self.path)?;
            self.conn = conn;
            self._checkpointer = Some(checkpointer);
            self.unwritable = false;
        }
        if let Some(run) = self.pending_run.take() {
            if let Err(e) = self.insert_run(&run) {
                self.pending_run = Some(run);
                return Err(e);
            }
        }
        Ok(())
    }

    fn current_run(&mut self, doing: &str) -> Result<i64, JournalError> {
        self.writable(doing)?;
        self.run_id.ok_or_else(|| JournalError::NoRun {
            path: self.path.clone(),
            doing: doing.to_owned(),
        })
    }
}

/// Opens `path` for writing: WAL mode, `synchronous = NORMAL`, migrated, checkpointed by its
/// own thread.
fn open_writable(path: &Path) -> Result<(Connection, Checkpointer), JournalError> {
    let doing = "opening the journal";
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .sql(path, doing)?;
    conn.busy_timeout(BUSY_TIMEOUT).sql(path, doing)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .sql(path, doing)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .sql(path, doing)?;
    migrate(&mut conn, path)?;
    // Checkpoints (the only fsyncs in WAL mode with synchronous=NORMAL, a few ms each)
    // run on their own thread, not inside `append` on the core stage: the alarm
    // benchmark traced its latency tail to them.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .sql(path, doing)?;
    let checkpointer = Checkpointer::start(path)?;
    Ok((conn, checkpointer))
}

/// `path` for an SQLite `file:` URI: every byte but unreserved ones and `/` percent-encoded.
fn uri_path(path: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(b) {
            out.push(char::from(*b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Takes `<dir>/journal.lock`: an empty SQLite file on which the writer holds an exclusive
/// lock (an open `BEGIN EXCLUSIVE`) for as long as it lives. The OS releases it when the
/// process ends, so a crash leaves no stale lock; readers of the journal never touch it.
fn acquire_lock(dir: &Path, wait: Duration) -> Result<Connection, JournalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let doing = "taking the journal lock";
    let conn = Connection::open(&path).sql(&path, doing)?;
    conn.busy_timeout(wait).sql(&path, doing)?;
    // The lock is the file's exclusive lock, nothing is ever written: with the rollback
    // journal in memory, taking it needs no disk space (with the default, SQLite needs a few
    // bytes for `journal.lock-journal` and a full disk stopped the gateway from starting).
    // (Reading the mode needs a shared lock: a gateway holding the lock makes it busy too.)
    let taken = conn
        .pragma_update_and_check(None, "journal_mode", "MEMORY", |r| r.get::<_, String>(0))
        .and_then(|_| conn.execute_batch("BEGIN EXCLUSIVE"));
    match taken {
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
