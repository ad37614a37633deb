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
//! # Schema (version 1, in `PRAGMA user_version`)
//!
//! All times are unix milliseconds (UTC), columns named `*_ms`. Every row about a device
//! carries the device's `site`, `device` (its id), `building` and `category` strings as they
//! were in the inventory when the row was written, so that a later inventory (devices renamed,
//! moved, removed) still reads the history; devices are matched by (`site`, `device`).
//! Enumerations are stored as their `as_str()` strings: states `intact` `fault` `offline`
//! `maintenance`; reasons `start` `reading` `heartbeat` `status` `window` `season` (and, in
//! journals of earlier versions, `gateway_down` `restored`); severities `critical` `major` `minor`; alarm event kinds `raised`
//! `acknowledged` `on_site` `cleared`. An unknown string read back is an error naming the
//! table and row.
//!
//! - **`runs`** — one row per start of the gateway. `id` INTEGER PRIMARY KEY; `started_ms`;
//!   `alive_ms` (last heartbeat, updated every few seconds; equals the stop time after a clean
//!   stop); `stopped_ms` (NULL: the run is going on, or it crashed, so `alive_ms` is the last
//!   moment it was known alive); `host`; `version`. Gateway down time = the gaps between runs.
//! - **`transitions`** — one row per device state transition (`Event::State`). `id` INTEGER
//!   PRIMARY KEY (insertion order); `site`, `device`, `building`, `category`; `ts_ms` (when
//!   the new state began, event time); `from_state` (NULL for a device's first state);
//!   `to_state`; `reason`. Indexes: (`site`, `device`, `ts_ms`) and (`ts_ms`). A device's
//!   state at t is the `to_state` of its last row with `ts_ms <= t` (ties: highest `id`).
//! - **`alarms`** — one row per alarm, its full current state (upserted on every lifecycle
//!   step). `id` TEXT PRIMARY KEY (`{site}-{seq}`, e.g. `jinxiu-42`); `seq` (the trailing
//!   number of `id`); `site`, `device`, `building`, `category`; `rule`; `severity`; `class`
//!   (response class); `message`; `raised_ms`; `ack_ms`, `ack_by` (NULL until acknowledged);
//!   `on_site_ms`, `on_site_by` (NULL until someone is on site); `cleared_ms` (NULL while
//!   active); `ack_target_ms`, `on_site_target_ms` (the class's targets when raised; the
//!   latter NULL when the class has none). Indexes: (`site`, `device`, `raised_ms`),
//!   (`raised_ms`), (`raised_ms`) WHERE `cleared_ms` IS NULL (active alarms), (`cleared_ms`),
//!   (`seq`).
//! - **`alarm_events`** — one row per lifecycle step (`Event::Alarm`). `id` INTEGER PRIMARY
//!   KEY (insertion order); `alarm_id` (→ `alarms.id`); `site`, `device`, `building`,
//!   `category`; `kind`; `ts_ms`; `actor` (the event's `by`: operator name, `device` for an
//!   on-site signal from the device, else empty). Indexes: (`alarm_id`), (`site`, `device`,
//!   `ts_ms`), (`ts_ms`).
//! - **`windows`** — one row per maintenance window (`Event::Maintenance`, upserted: a window
//!   ended early has its `end_ms` rewritten). `id` TEXT PRIMARY KEY (`{site}-M{seq}`); `seq`;
//!   `site`, `device`, `building`, `category`; `start_ms`, `end_ms` (the window is
//!   `[start_ms, end_ms)`); `reason` (free text); `actor` (operator name, or `config`).
//!   Indexes: (`site`, `device`, `start_ms`), (`end_ms`), (`seq`).
//! - **`compliance`** (version 2) — one row per change of an indoor sensor's heating
//!   compliance (`Event::Compliance`): site, device, building, category, `ts_ms`, `compliant`
//!   (1, 0, or NULL when no temperature is known).
//! - **`hourly`** (version 2) — one row per (site, device, signal, hour): `n` readings, their
//!   `sum`, `min` and `max` (`Event::Hourly`, added up when an hour comes in parts).
//!
//! Sequences: the next alarm (window) sequence is `MAX(seq) + 1` over all rows ever stored, so
//! ids stay unique across restarts. Later schema versions add a step to `MIGRATIONS`; opening
//! an older file migrates it in one transaction, a newer file is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row, TransactionBehavior};
use tracing::warn;

use crate::model::event::{Alarm, DeviceState, Event, MaintenanceWindow, Reason, Stamp};
use crate::model::restore::{DeviceProgress, Restored, RestoredState};
use crate::model::rules::Severity;
use crate::model::{Device, DeviceIdx, Inventory, Value};

/// The journal's file name inside `data_dir`.
pub const FILE_NAME: &str = "journal.sqlite";

/// The lock file inside `data_dir`, held (an exclusive SQLite lock, released by the OS when the
/// process ends) by the one gateway that writes the journal.
pub const LOCK_FILE_NAME: &str = "journal.lock";

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations: step `i` takes the file from version `i` to `i + 1`. Append steps; never
/// edit a released one.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const SCHEMA_V1: &str = "
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started_ms  INTEGER NOT NULL,
    alive_ms    INTEGER NOT NULL,
    stopped_ms  INTEGER,
    host        TEXT NOT NULL,
    version     TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_ms);

CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    building    TEXT NOT NULL,
    category    TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX transitions_device ON transitions (site, device, ts_ms);
CREATE INDEX transitions_ts ON transitions (ts_ms);

CREATE TABLE alarms (
    id                  TEXT PRIMARY KEY NOT NULL,
    seq                 INTEGER,
    site                TEXT NOT NULL,
    device              TEXT NOT NULL,
    building            TEXT NOT NULL,
    category            TEXT NOT NULL,
    rule                TEXT NOT NULL,
    severity            TEXT NOT NULL,
    class               TEXT NOT NULL,
    message             TEXT NOT NULL,
    raised_ms           INTEGER NOT NULL,
    ack_ms              INTEGER,
    ack_by              TEXT,
    on_site_ms          INTEGER,
    on_site_by          TEXT,
    cleared_ms          INTEGER,
    ack_target_ms       INTEGER NOT NULL,
    on_site_target_ms   INTEGER
);
CREATE INDEX alarms_device ON alarms (site, device, raised_ms);
CREATE INDEX alarms_raised ON alarms (raised_ms);
CREATE INDEX alarms_active ON alarms (raised_ms) WHERE cleared_ms IS NULL;
CREATE INDEX alarms_cleared ON alarms (cleared_ms);
CREATE INDEX alarms_seq ON alarms (seq);

CREATE TABLE alarm_events (
    id          INTEGER PRIMARY KEY,
    alarm_id    TEXT NOT NULL,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    building    TEXT NOT NULL,
    category    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL
);
CREATE INDEX alarm_events_alarm ON alarm_events (alarm_id);
CREATE INDEX alarm_events_device ON alarm_events (site, device, ts_ms);
CREATE INDEX alarm_events_ts ON alarm_events (ts_ms);

CREATE TABLE windows (
    id          TEXT PRIMARY KEY NOT NULL,
    seq         INTEGER,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    building    TEXT NOT NULL,
    category    TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL
);
CREATE INDEX windows_device ON windows (site, device, start_ms);
CREATE INDEX windows_end ON windows (end_ms);
CREATE INDEX windows_seq ON windows (seq);
";

/// Version 2: the heating figures' facts (compliance of indoor sensors, hourly statistics).
const SCHEMA_V2: &str = "
CREATE TABLE compliance (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    building    TEXT NOT NULL,
    category    TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    compliant   INTEGER
);
CREATE INDEX compliance_device ON compliance (site, device, ts_ms);
CREATE INDEX compliance_ts ON compliance (ts_ms);

CREATE TABLE hourly (
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    building    TEXT NOT NULL,
    category    TEXT NOT NULL,
    signal      TEXT NOT NULL,
    hour_ms     INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    sum         REAL NOT NULL,
    min         REAL NOT NULL,
    max         REAL NOT NULL,
    PRIMARY KEY (site, device, signal, hour_ms)
);
CREATE INDEX hourly_hour ON hourly (hour_ms);
";

/// Version 3: event time (DESIGN §4). Each device's position, values and pending delays, so a
/// restart goes on exactly where the previous run stood; when a maintenance window was entered
/// (a window recorded after its start).
const SCHEMA_V3: &str = "
CREATE TABLE progress (
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    last_ts_ms  INTEGER,
    applied_ms  INTEGER NOT NULL,
    entered_ms  INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    vals        TEXT NOT NULL,
    pending     TEXT NOT NULL,
    PRIMARY KEY (site, device)
);
ALTER TABLE windows ADD COLUMN entered_ms INTEGER;
";

const TRANSITION_COLUMNS: &str =
    "id, site, device, building, category, ts_ms, from_state, to_state, reason";

const ALARM_COLUMNS: &str = "id, site, device, building, category, rule, severity, class, \
     message, raised_ms, ack_ms, ack_by, on_site_ms, on_site_by, cleared_ms, ack_target_ms, \
     on_site_target_ms";

const WINDOW_COLUMNS: &str =
    "id, site, device, start_ms, end_ms, reason, actor, COALESCE(entered_ms, start_ms)";

/// The journal: one SQLite connection, writable (`open`, one gateway) or read-only
/// (`open_read_only`, reports). See the module docs for the schema.
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
    fn start(path: &Path) -> anyhow::Result<Checkpointer> {
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
            .map_err(|e| anyhow!("{doing} {}: cannot start a thread: {e}", path.display()))?;
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

/// One alarm as stored, with its device's strings; for the API and reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    /// `{site}-{sequence}`.
    pub id: String,
    pub site: String,
    /// The device's id.
    pub device: String,
    pub building: String,
    pub category: String,
    pub rule: String,
    pub severity: Severity,
    /// The response class (its targets are `ack_target_ms`, `on_site_target_ms`).
    pub class: String,
    pub message: String,
    pub raised_ms: i64,
    pub acknowledged: Option<Stamp>,
    pub on_site: Option<Stamp>,
    /// `None` while the alarm is active.
    pub cleared_ms: Option<i64>,
    pub ack_target_ms: i64,
    pub on_site_target_ms: Option<i64>,
}

/// One state transition as stored, with its device's strings.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRecord {
    pub site: String,
    /// The device's id.
    pub device: String,
    pub building: String,
    pub category: String,
    /// When the new state began.
    pub ts_ms: i64,
    /// `None` for a device's first state.
    pub from: Option<DeviceState>,
    pub to: DeviceState,
    pub reason: Reason,
}

/// An indoor sensor's compliance from `ts_ms` on (`None`: no temperature known).
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceRecord {
    pub site: String,
    pub device: String,
    pub building: String,
    pub ts_ms: i64,
    pub compliant: Option<bool>,
}

/// One hour of one signal of one device: readings, sum, minimum, maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyRecord {
    pub site: String,
    pub device: String,
    pub building: String,
    pub category: String,
    pub signal: String,
    pub hour_ms: i64,
    pub n: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// One run of the gateway: from `started_ms` to `stopped_ms` (a clean stop) or, when that is
/// `None` (still running, or crashed), at least until `alive_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub started_ms: i64,
    /// The last moment the run was known alive (its stop time after a clean stop).
    pub alive_ms: i64,
    pub stopped_ms: Option<i64>,
    pub host: String,
    pub version: String,
}

impl Journal {
    /// Opens or creates `<dir>/journal.sqlite` (creating `dir`), in WAL mode, migrating an
    /// older schema. Takes `<dir>/journal.lock`: a second gateway on the same `dir` gets an
    /// error. Errors name the path and say what to do (permissions, disk full, locked).
    pub fn open(dir: &Path) -> anyhow::Result<Journal> {
        Journal::open_with_lock_wait(dir, BUSY_TIMEOUT)
    }

    fn open_with_lock_wait(dir: &Path, lock_wait: Duration) -> anyhow::Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    ": permission denied; create it, or make its parent writable by the \
                     gateway's user"
                }
                std::io::ErrorKind::StorageFull => ": the disk is full; free some space",
                _ => "; check data_dir in the configuration",
            };
            anyhow::Error::new(e).context(format!(
                "cannot create the data directory {}{hint}",
                dir.display()
            ))
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
            bail!(
                "{doing} {}: SQLite refused WAL mode (it stayed in {mode:?} mode); keep \
                 data_dir on a local file system (not NFS or a network share)",
                path.display()
            );
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
    pub fn open_read_only(path: &Path) -> anyhow::Result<Journal> {
        let doing = "opening the journal read-only";
        if !path.is_file() {
            bail!(
                "{doing}: no journal at {}; check data_dir (the gateway creates {FILE_NAME} \
                 in it when it first runs)",
                path.display()
            );
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
            bail!(
                "{doing} {}: this is not an estate-gateway journal (no schema version)",
                path.display()
            );
        }
        if version > SCHEMA_VERSION {
            bail!(
                "{doing} {}: it has schema version {version}, written by a newer \
                 estate-gateway; this build reads version {SCHEMA_VERSION}. Use the newer build.",
                path.display()
            );
        }
        if version < SCHEMA_VERSION {
            bail!(
                "{doing} {}: it has the older schema version {version} (this build reads \
                 {SCHEMA_VERSION}); start the gateway once on this data_dir to migrate it",
                path.display()
            );
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

    /// What the engine needs at start (see `Restored`): `last_alive_ms` = the latest alive or
    /// stop time of any previous run; each `inventory` device's last journaled state (devices
    /// matched by site and id; journaled devices not in the inventory are skipped, with one
    /// warning giving their count); alarms that are active or were cleared at or after
    /// `now_ms - retain_cleared_ms`, oldest first; maintenance windows of known devices with
    /// `end_ms > now_ms`; the next alarm and window sequences (1 on an empty journal).
    pub fn restore(
        &self,
        inventory: &Inventory,
        now_ms: i64,
        retain_cleared_ms: i64,
    ) -> anyhow::Result<Restored> {
        let path = &self.path;
        let doing = "restoring from the journal";
        // One read transaction: every query below sees the same snapshot.
        let tx = self.conn.unchecked_transaction().sql(path, doing)?;

        let last_alive_ms: Option<i64> = tx
            .query_row(
                "SELECT MAX(MAX(alive_ms, COALESCE(stopped_ms, alive_ms))) FROM runs \
                 WHERE id IS NOT ?1",
                [self.run_id],
                |r| r.get(0),
            )
            .sql(path, doing)?;

        let mut states = Vec::new();
        let mut unknown_states = 0usize;
        for (_, t) in last_transitions(&tx, path, None)? {
            match inventory.lookup(&t.site, &t.device) {
                Some(device) => states.push(RestoredState {
                    device,
                    state: t.to,
                    since_ms: t.ts_ms,
                }),
                None => unknown_states += 1,
            }
        }
        if unknown_states > 0 {
            warn!(journal = %path.display(), devices = unknown_states,
                "Journaled states of devices no longer in the inventory were not restored.");
        }

        let mut alarms = Vec::new();
        let mut unknown_alarms = 0usize;
        {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {ALARM_COLUMNS} FROM alarms \
                     WHERE cleared_ms IS NULL OR cleared_ms >= ?1 \
                     ORDER BY raised_ms, seq, id"
                ))
                .sql(path, doing)?;
            let mut rows = stmt
                .query([now_ms.saturating_sub(retain_cleared_ms)])
                .sql(path, doing)?;
            while let Some(row) = rows.next().sql(path, doing)? {
                let r = alarm_record(row, path)?;
                match inventory.lookup(&r.site, &r.device) {
                    Some(device) => alarms.push(Alarm {
                        id: r.id,
                        device,
                        rule: r.rule,
                        severity: r.severity,
                        class: r.class,
                        message: r.message,
                        raised_ms: r.raised_ms,
                        acknowledged: r.acknowledged,
                        on_site: r.on_site,
                        cleared_ms: r.cleared_ms,
                        ack_target_ms: r.ack_target_ms,
                        on_site_target_ms: r.on_site_target_ms,
                    }),
                    None => unknown_alarms += 1,
                }
            }
        }
        if unknown_alarms > 0 {
            warn!(journal = %path.display(), alarms = unknown_alarms,
                "Journaled alarms of devices no longer in the inventory were not restored.");
        }

        let mut windows = Vec::new();
        let mut unknown_windows = 0usize;
        {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {WINDOW_COLUMNS} FROM windows WHERE end_ms > ?1 \
                     ORDER BY start_ms, seq, id"
                ))
                .sql(path, doing)?;
            // Windows are applied in event time: one that ended by the gateway clock may still
            // be ahead of its device's position (a backlog); the engine drops those behind.
            let mut rows = stmt
                .query([now_ms.saturating_sub(WINDOW_RESTORE_MS)])
                .sql(path, doing)?;
            while let Some(row) = rows.next().sql(path, doing)? {
                let site: String = row.get(1).sql(path, doing)?;
                let device: String = row.get(2).sql(path, doing)?;
                match inventory.lookup(&site, &device) {
                    Some(device) => windows.push(MaintenanceWindow {
                        id: row.get(0).sql(path, doing)?,
                        device,
                        start_ms: row.get(3).sql(path, doing)?,
                        end_ms: row.get(4).sql(path, doing)?,
                        reason: row.get(5).sql(path, doing)?,
                        by: row.get(6).sql(path, doing)?,
                        entered_ms: row.get(7).sql(path, doing)?,
                    }),
                    None => unknown_windows += 1,
                }
            }
        }
        if unknown_windows > 0 {
            warn!(journal = %path.display(), windows = unknown_windows,
                "Maintenance windows of devices no longer in the inventory were not restored.");
        }

        let mut progress = Vec::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT site, device, last_ts_ms, applied_ms, entered_ms, flags, vals, \
                     pending FROM progress",
                )
                .sql(path, doing)?;
            let mut rows = stmt.query([]).sql(path, doing)?;
            while let Some(row) = rows.next().sql(path, doing)? {
                let site: String = row.get(0).sql(path, doing)?;
                let id: String = row.get(1).sql(path, doing)?;
                let Some(device) = inventory.lookup(&site, &id) else {
                    continue;
                };
                let flags: i64 = row.get(5).sql(path, doing)?;
                let vals: String = row.get(6).sql(path, doing)?;
                let pending: String = row.get(7).sql(path, doing)?;
                progress.push(DeviceProgress {
                    device,
                    last_ts_ms: row.get(2).sql(path, doing)?,
                    applied_ms: row.get(3).sql(path, doing)?,
                    entered_ms: row.get(4).sql(path, doing)?,
                    heartbeat_expired: flags & 1 != 0,
                    status_offline: flags & 2 != 0,
                    values: decode_values(&vals),
                    pending: Vec::new(),
                    hour: None,
                });
                decode_pending(&pending, progress.last_mut());
            }
        }

        Ok(Restored {
            progress,
            last_alive_ms,
            states,
            alarms,
            windows,
            next_alarm_seq: next_seq(&tx, path, "alarms")?,
            next_window_seq: next_seq(&tx, path, "windows")?,
        })
    }

    /// Keeps each device's event-time position, values and pending delays (one transaction):
    /// a restart goes on from there (`restore`).
    pub fn save_progress(
        &mut self,
        inventory: &Inventory,
        progress: &[DeviceProgress],
    ) -> anyhow::Result<()> {
        if progress.is_empty() {
            return Ok(());
        }
        let doing = "keeping the devices' positions in the journal";
        self.writable(doing)?;
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(path, doing)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO progress (site, device, last_ts_ms, applied_ms, entered_ms, \
                     flags, vals, pending) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (site, device) DO UPDATE SET last_ts_ms = excluded.last_ts_ms, \
                     applied_ms = excluded.applied_ms, entered_ms = excluded.entered_ms, \
                     flags = excluded.flags, vals = excluded.vals, pending = excluded.pending",
                )
                .sql(path, doing)?;
            for p in progress {
                let d = device(inventory, p.device)?;
                let flags = i64::from(p.heartbeat_expired) | (i64::from(p.status_offline) << 1);
                let pending = encode_pending(p);
                stmt.execute(params![
                    d.site,
                    d.id,
                    p.last_ts_ms,
                    p.applied_ms,
                    p.entered_ms,
                    flags,
                    encode_values(&p.values),
                    pending
                ])
                .sql(path, doing)?;
            }
        }
        tx.commit().sql(path, doing)?;
        Ok(())
    }

    /// Records the start of a run (host and version strings for the record); `alive` and
    /// `end_run` then refer to it.
    pub fn begin_run(&mut self, now_ms: i64, host: &str, version: &str) -> anyhow::Result<()> {
        self.writable("recording the start of a run")?;
        self.conn
            .execute(
                "INSERT INTO runs (started_ms, alive_ms, stopped_ms, host, version) \
                 VALUES (?1, ?1, NULL, ?2, ?3)",
                params![now_ms, host, version],
            )
            .sql(&self.path, "recording the start of a run")?;
        self.run_id = Some(self.conn.last_insert_rowid());
        Ok(())
    }

    /// Updates the current run's alive time (called every few seconds): after a crash, the
    /// gateway counts as down from the last alive time.
    pub fn alive(&mut self, now_ms: i64) -> anyhow::Result<()> {
        let doing = "recording that the gateway is alive";
        let run = self.current_run(doing)?;
        self.conn
            .execute(
                "UPDATE runs SET alive_ms = MAX(alive_ms, ?1) WHERE id = ?2",
                params![now_ms, run],
            )
            .sql(&self.path, doing)?;
        Ok(())
    }

    /// Records a clean stop of the current run.
    pub fn end_run(&mut self, now_ms: i64) -> anyhow::Result<()> {
        let doing = "recording the stop of the run";
        let run = self.current_run(doing)?;
        self.conn
            .execute(
                "UPDATE runs SET stopped_ms = ?1, alive_ms = MAX(alive_ms, ?1) WHERE id = ?2",
                params![now_ms, run],
            )
            .sql(&self.path, doing)?;
        self.run_id = None;
        Ok(())
    }

    /// Appends events in order, in one transaction (all or nothing): `Event::State` → a row in
    /// `transitions`; `Event::Alarm` → the alarm's full current row upserted in `alarms` plus
    /// a row in `alarm_events`; `Event::Maintenance` → the window upserted in `windows` (an
    /// early end rewrites `end_ms`). Devices are `inventory` indexes; their strings are stored.
    pub fn append(&mut self, inventory: &Inventory, events: &[Event]) -> anyhow::Result<()> {
        let doing = "appending to the journal";
        self.writable(doing)?;
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(path, doing)?;
        {
            let mut transition = tx
                .prepare_cached(
                    "INSERT INTO transitions (site, device, building, category, ts_ms, \
                     from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .sql(path, doing)?;
            let mut alarm = tx
                .prepare_cached(
                    "INSERT INTO alarms (id, seq, site, device, building, category, rule, \
                     severity, class, message, raised_ms, ack_ms, ack_by, on_site_ms, \
                     on_site_by, cleared_ms, ack_target_ms, on_site_target_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17, ?18) \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, site = excluded.site, \
                     device = excluded.device, building = excluded.building, \
                     category = excluded.category, rule = excluded.rule, \
                     severity = excluded.severity, class = excluded.class, \
                     message = excluded.message, raised_ms = excluded.raised_ms, \
                     ack_ms = excluded.ack_ms, ack_by = excluded.ack_by, \
                     on_site_ms = excluded.on_site_ms, on_site_by = excluded.on_site_by, \
                     cleared_ms = excluded.cleared_ms, ack_target_ms = excluded.ack_target_ms, \
                     on_site_target_ms = excluded.on_site_target_ms",
                )
                .sql(path, doing)?;
            let mut alarm_event = tx
                .prepare_cached(
                    "INSERT INTO alarm_events (alarm_id, site, device, building, category, \
                     kind, ts_ms, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .sql(path, doing)?;
            let mut window = tx
                .prepare_cached(
                    "INSERT INTO windows (id, seq, site, device, building, category, \
                     start_ms, end_ms, reason, actor, entered_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, site = excluded.site, \
                     device = excluded.device, building = excluded.building, \
                     category = excluded.category, start_ms = excluded.start_ms, \
                     end_ms = excluded.end_ms, reason = excluded.reason, actor = excluded.actor, \
                     entered_ms = COALESCE(windows.entered_ms, excluded.entered_ms)",
                )
                .sql(path, doing)?;
            let mut compliance = tx
                .prepare_cached(
                    "INSERT INTO compliance (site, device, building, category, ts_ms, compliant) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .sql(path, doing)?;
            let mut hourly = tx
                .prepare_cached(
                    "INSERT INTO hourly (site, device, building, category, signal, hour_ms, \
                     n, sum, min, max) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (site, device, signal, hour_ms) DO UPDATE SET \
                     n = excluded.n, sum = excluded.sum, min = excluded.min, max = excluded.max",
                )
                .sql(path, doing)?;
            for event in events {
                match event {
                    Event::Compliance(c) => {
                        let d = device(inventory, c.device)?;
                        compliance
                            .execute(params![
                                d.site,
                                d.id,
                                d.building,
                                d.category,
                                c.ts_ms,
                                c.compliant
                            ])
                            .sql(path, doing)?;
                    }
                    Event::Hourly(h) => {
                        let d = device(inventory, h.device)?;
                        for (sig, n, sum, min, max) in &h.signals {
                            let name = &d.profile.signal(*sig).name;
                            hourly
                                .execute(params![
                                    d.site, d.id, d.building, d.category, name, h.hour_ms,
                                    *n as i64, sum, min, max
                                ])
                                .sql(path, doing)?;
                        }
                    }
                    Event::State(s) => {
                        let d = device(inventory, s.device)?;
                        transition
                            .execute(params![
                                d.site,
                                d.id,
                                d.building,
                                d.category,
                                s.ts_ms,
                                s.from.map(DeviceState::as_str),
                                s.to.as_str(),
                                s.reason.as_str(),
                            ])
                            .sql(path, doing)?;
                    }
                    Event::Alarm(e) => {
                        let a = &e.alarm;
                        let d = device(inventory, a.device)?;
                        alarm
                            .execute(params![
                                a.id,
                                seq_of(&a.id, "alarm"),
                                d.site,
                                d.id,
                                d.building,
                                d.category,
                                a.rule,
                                a.severity.as_str(),
                                a.class,
                                a.message,
                                a.raised_ms,
                                a.acknowledged.as_ref().map(|s| s.ts_ms),
                                a.acknowledged.as_ref().map(|s| s.by.as_str()),
                                a.on_site.as_ref().map(|s| s.ts_ms),
                                a.on_site.as_ref().map(|s| s.by.as_str()),
                                a.cleared_ms,
                                a.ack_target_ms,
                                a.on_site_target_ms,
                            ])
                            .sql(path, doing)?;
                        alarm_event
                            .execute(params![
                                a.id,
                                d.site,
                                d.id,
                                d.building,
                                d.category,
                                e.kind.as_str(),
                                e.ts_ms,
                                e.by,
                            ])
                            .sql(path, doing)?;
                    }
                    Event::Maintenance(w) => {
                        let d = device(inventory, w.device)?;
                        window
                            .execute(params![
                                w.id,
                                seq_of(&w.id, "maintenance window"),
                                d.site,
                                d.id,
                                d.building,
                                d.category,
                                w.start_ms,
                                w.end_ms,
                                w.reason,
                                w.by,
                                w.entered_ms,
                            ])
                            .sql(path, doing)?;
                    }
                }
            }
        }
        tx.commit().sql(path, doing)?;
        Ok(())
    }

    /// Alarms raised in `[from_ms, to_ms)`, oldest first (ties by sequence), whatever their
    /// devices are today.
    pub fn alarms_raised(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<AlarmRecord>> {
        let path = &self.path;
        let doing = "reading alarms from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM alarms WHERE raised_ms >= ?1 AND raised_ms < ?2 \
                 ORDER BY raised_ms, seq, id"
            ))
            .sql(path, doing)?;
        collect(&mut stmt, [from_ms, to_ms], path, doing, |row| {
            alarm_record(row, path)
        })
    }

    /// State transitions with `ts_ms` in `[from_ms, to_ms)`, plus each device's last
    /// transition before `from_ms` (its state when the period starts), ordered by (site,
    /// device, ts_ms, insertion order). A device's first row with `ts_ms < from_ms` is that
    /// starting state; a device with none had no state yet at `from_ms`.
    pub fn transitions(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<TransitionRecord>> {
        let path = &self.path;
        let doing = "reading state transitions from the journal";
        let tx = self.conn.unchecked_transaction().sql(path, doing)?;
        let mut out = last_transitions(&tx, path, Some(from_ms))?;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {TRANSITION_COLUMNS} FROM transitions \
                     WHERE ts_ms >= ?1 AND ts_ms < ?2"
                ))
                .sql(path, doing)?;
            let mut rows = stmt.query([from_ms, to_ms]).sql(path, doing)?;
            while let Some(row) = rows.next().sql(path, doing)? {
                out.push(transition_record(row, path)?);
            }
        }
        // Byte order of the strings, as SQLite's BINARY collation sorts them.
        out.sort_by(|(ia, a), (ib, b)| {
            (&a.site, &a.device, a.ts_ms, ia).cmp(&(&b.site, &b.device, b.ts_ms, ib))
        });
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }

    /// Compliance changes with ts in [from_ms, to_ms), plus each sensor's last change before
    /// `from_ms`; ordered by (site, device, ts, insertion order).
    pub fn compliance(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<ComplianceRecord>> {
        let path = &self.path;
        let doing = "reading compliance from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.site, c.device, c.building, c.ts_ms, c.compliant FROM compliance c \
                 WHERE (c.ts_ms >= ?1 AND c.ts_ms < ?2) OR c.id = (SELECT p.id FROM compliance p \
                   WHERE p.site = c.site AND p.device = c.device AND p.ts_ms < ?1 \
                   ORDER BY p.ts_ms DESC, p.id DESC LIMIT 1) \
                 ORDER BY c.site, c.device, c.ts_ms, c.id",
            )
            .sql(path, doing)?;
        collect(&mut stmt, [from_ms, to_ms], path, doing, |row| {
            compliance_record(row, path, doing)
        })
    }

    /// Runs overlapping `[from_ms, to_ms)` (started before `to_ms`, alive or stopped at or
    /// after `from_ms`), oldest first.
    pub fn runs(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<RunRecord>> {
        let path = &self.path;
        let doing = "reading runs from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT started_ms, alive_ms, stopped_ms, host, version FROM runs \
                 WHERE started_ms < ?2 AND MAX(alive_ms, COALESCE(stopped_ms, alive_ms)) >= ?1 \
                 ORDER BY started_ms, id",
            )
            .sql(path, doing)?;
        collect(&mut stmt, [from_ms, to_ms], path, doing, |row| {
            Ok(RunRecord {
                started_ms: row.get(0).sql(path, doing)?,
                alive_ms: row.get(1).sql(path, doing)?,
                stopped_ms: row.get(2).sql(path, doing)?,
                host: row.get(3).sql(path, doing)?,
                version: row.get(4).sql(path, doing)?,
            })
        })
    }

    /// `transitions` for the devices of one site only: each device's last transition before
    /// `from_ms`, then its transitions in `[from_ms, to_ms)`, ordered by (device, ts_ms,
    /// insertion order). One index seek per device of the site (the (site, device, ts_ms)
    /// index), so neither other sites nor history outside the period are read.
    pub fn transitions_for_site(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Vec<TransitionRecord>> {
        let path = &self.path;
        let doing = "reading a site's state transitions from the journal";
        // One read transaction: a consistent snapshot while the gateway writes.
        let tx = self.conn.unchecked_transaction().sql(path, doing)?;
        let devices = site_devices(&tx, path, "transitions", site)?;
        let mut before = tx
            .prepare_cached(&format!(
                "SELECT {TRANSITION_COLUMNS} FROM transitions \
                 WHERE site = ?1 AND device = ?2 AND ts_ms < ?3 \
                 ORDER BY ts_ms DESC, id DESC LIMIT 1"
            ))
            .sql(path, doing)?;
        let mut inside = tx
            .prepare_cached(&format!(
                "SELECT {TRANSITION_COLUMNS} FROM transitions \
                 WHERE site = ?1 AND device = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 \
                 ORDER BY ts_ms, id"
            ))
            .sql(path, doing)?;
        let mut out = Vec::new();
        for device in &devices {
            let mut rows = before
                .query(params![site, device, from_ms])
                .sql(path, doing)?;
            if let Some(row) = rows.next().sql(path, doing)? {
                out.push(transition_record(row, path)?.1);
            }
            drop(rows);
            let mut rows = inside
                .query(params![site, device, from_ms, to_ms])
                .sql(path, doing)?;
            while let Some(row) = rows.next().sql(path, doing)? {
                out.push(transition_record(row, path)?.1);
            }
        }
        Ok(out)
    }

    /// The maintenance windows of one site overlapping `[from_ms, to_ms)`: (device, start,
    /// end), ordered by device and start. Reports count them as maintenance whether or not
    /// the transitions show it (a window recorded after its start is in the journal whole,
    /// its transitions only from when it was entered).
    pub fn windows_for_site(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Vec<(String, i64, i64)>> {
        let path = &self.path;
        let doing = "reading a site's maintenance windows from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT device, start_ms, end_ms FROM windows \
                 WHERE site = ?1 AND end_ms > ?2 AND start_ms < ?3 AND end_ms > start_ms \
                 ORDER BY device, start_ms",
            )
            .sql(path, doing)?;
        let mut rows = stmt.query(params![site, from_ms, to_ms]).sql(path, doing)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().sql(path, doing)? {
            out.push((
                row.get(0).sql(path, doing)?,
                row.get(1).sql(path, doing)?,
                row.get(2).sql(path, doing)?,
            ));
        }
        Ok(out)
    }

    /// `compliance` for the sensors of one site only (each sensor's last change before
    /// `from_ms`, then its changes in `[from_ms, to_ms)`), ordered by (device, ts, insertion
    /// order); one index seek per sensor.
    pub fn compliance_for_site(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Vec<ComplianceRecord>> {
        let path = &self.path;
        let doing = "reading a site's heating compliance from the journal";
        let tx = self.conn.unchecked_transaction().sql(path, doing)?;
        let devices = site_devices(&tx, path, "compliance", site)?;
        const COLUMNS: &str = "site, device, building, ts_ms, compliant";
        let mut before = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM compliance WHERE site = ?1 AND device = ?2 AND ts_ms < ?3 \
                 ORDER BY ts_ms DESC, id DESC LIMIT 1"
            ))
            .sql(path, doing)?;
        let mut inside = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM compliance WHERE site = ?1 AND device = ?2 \
                 AND ts_ms >= ?3 AND ts_ms < ?4 ORDER BY ts_ms, id"
            ))
            .sql(path, doing)?;
        let record = |row: &Row<'_>| compliance_record(row, path, doing);
        let mut out = Vec::new();
        for device in &devices {
            let mut rows = before
                .query(params![site, device, from_ms])
                .sql(path, doing)?;
            if let Some(row) = rows.next().sql(path, doing)? {
                out.push(record(row)?);
            }
            drop(rows);
            let mut rows = inside
                .query(params![site, device, from_ms, to_ms])
                .sql(path, doing)?;
            while let Some(row) = rows.next().sql(path, doing)? {
                out.push(record(row)?);
            }
        }
        Ok(out)
    }

    /// `alarms_raised` for one site only: its alarms raised in `[from_ms, to_ms)`, oldest
    /// first (ties by sequence).
    pub fn alarms_raised_for_site(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Vec<AlarmRecord>> {
        let path = &self.path;
        let doing = "reading a site's alarms from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM alarms \
                 WHERE site = ?1 AND raised_ms >= ?2 AND raised_ms < ?3 \
                 ORDER BY raised_ms, seq, id"
            ))
            .sql(path, doing)?;
        collect(
            &mut stmt,
            params![site, from_ms, to_ms],
            path,
            doing,
            |row| alarm_record(row, path),
        )
    }

    /// Hourly statistics of one signal of one site's devices, hours starting in
    /// `[from_ms, to_ms)`, ordered by device and hour.
    pub fn hourly_for_site(
        &self,
        site: &str,
        signal: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Vec<HourlyRecord>> {
        let path = &self.path;
        let doing = "reading a site's hourly statistics from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT site, device, building, category, signal, hour_ms, n, sum, min, max \
                 FROM hourly WHERE site = ?1 AND signal = ?2 AND hour_ms >= ?3 AND hour_ms < ?4 \
                 ORDER BY device, hour_ms",
            )
            .sql(path, doing)?;
        collect(
            &mut stmt,
            params![site, signal, from_ms, to_ms],
            path,
            doing,
            |row| hourly_record(row, path, doing),
        )
    }

    fn writable(&self, doing: &str) -> anyhow::Result<()> {
        if self.read_only {
            bail!(
                "{doing}: the journal {} is open read-only",
                self.path.display()
            );
        }
        Ok(())
    }

    fn current_run(&self, doing: &str) -> anyhow::Result<i64> {
        self.writable(doing)?;
        self.run_id.ok_or_else(|| {
            anyhow!(
                "{doing} in {}: no run has begun (call begin_run first)",
                self.path.display()
            )
        })
    }
}

/// Takes `<dir>/journal.lock`: an empty SQLite file on which the writer holds an exclusive
/// lock (an open `BEGIN EXCLUSIVE`) for as long as it lives. The OS releases it when the
/// process ends, so a crash leaves no stale lock; readers of the journal never touch it.
fn acquire_lock(dir: &Path, wait: Duration) -> anyhow::Result<Connection> {
    let path = dir.join(LOCK_FILE_NAME);
    let doing = "taking the journal lock";
    let conn = Connection::open(&path).sql(&path, doing)?;
    conn.busy_timeout(wait).sql(&path, doing)?;
    match conn.execute_batch("BEGIN EXCLUSIVE") {
        Ok(()) => Ok(conn),
        Err(e) if is_busy(&e) => Err(anyhow::Error::new(e).context(format!(
            "another gateway uses this data_dir ({}): {} is locked by a running process; \
             stop that gateway, or give this one its own data_dir",
            dir.display(),
            path.display()
        ))),
        Err(e) => Err(explain(e, &path, doing)),
    }
}

/// How far back (gateway clock) `restore` looks for maintenance windows that may still be
/// ahead of their device's position: `ingest.max_reading_age`'s default and a day.
const WINDOW_RESTORE_MS: i64 = 8 * 86_400_000;

/// A device's pending delays and open hour as JSON: `{"p": [since or null, …], "h": [hour_ms,
/// [[n, sum, min, max], …]]}` (min and max of an empty signal as null).
fn encode_pending(p: &DeviceProgress) -> String {
    let hour = p.hour.as_ref().map(|(h, acc)| {
        let acc: Vec<serde_json::Value> = acc
            .iter()
            .map(|&(n, sum, min, max)| {
                let f = |x: f64| {
                    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
                };
                serde_json::json!([n, f(sum), f(min), f(max)])
            })
            .collect();
        serde_json::json!([h, acc])
    });
    serde_json::json!({"p": p.pending, "h": hour}).to_string()
}

fn decode_pending(s: &str, p: Option<&mut DeviceProgress>) {
    let Some(p) = p else { return };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(s) else {
        return;
    };
    if let Some(items) = v.get("p").and_then(|x| x.as_array()) {
        p.pending = items.iter().map(|x| x.as_i64()).collect();
    }
    if let Some(h) = v.get("h").and_then(|x| x.as_array()) {
        let hour_ms = h.first().and_then(|x| x.as_i64());
        let acc = h.get(1).and_then(|x| x.as_array()).map(|rows| {
            rows.iter()
                .map(|r| {
                    let g = |i: usize, d: f64| r.get(i).and_then(|x| x.as_f64()).unwrap_or(d);
                    (
                        r.get(0).and_then(|x| x.as_u64()).unwrap_or(0),
                        g(1, 0.0),
                        g(2, f64::INFINITY),
                        g(3, f64::NEG_INFINITY),
                    )
                })
                .collect()
        });
        if let (Some(hour_ms), Some(acc)) = (hour_ms, acc) {
            p.hour = Some((hour_ms, acc));
        }
    }
}

/// Signal values as JSON: `null` or `["f", 1.5]`, `["i", 3]`, `["b", true]`, `["s", "x"]`.
fn encode_values(values: &[Option<Value>]) -> String {
    let v: Vec<serde_json::Value> = values
        .iter()
        .map(|v| match v {
            None => serde_json::Value::Null,
            Some(Value::Float(x)) => serde_json::json!(["f", x]),
            Some(Value::Int(x)) => serde_json::json!(["i", x]),
            Some(Value::Bool(x)) => serde_json::json!(["b", x]),
            Some(Value::Str(x)) => serde_json::json!(["s", x]),
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

/// The inverse of `encode_values`; anything unreadable is "no value" (the next reading sets
/// it again).
fn decode_values(s: &str) -> Vec<Option<Value>> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(s) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let pair = item.as_array()?;
            let v = pair.get(1)?;
            Some(match pair.first()?.as_str()? {
                "f" => Value::Float(v.as_f64()?),
                "i" => Value::Int(v.as_i64()?),
                "b" => Value::Bool(v.as_bool()?),
                "s" => Value::Str(v.as_str()?.to_owned()),
                _ => return None,
            })
        })
        .collect()
}

fn migrate(conn: &mut Connection, path: &Path) -> anyhow::Result<()> {
    let doing = "migrating the journal schema";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql(path, doing)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .sql(path, doing)?;
    if version > SCHEMA_VERSION {
        bail!(
            "{doing} {}: it has schema version {version}, written by a newer estate-gateway; \
             this build knows up to version {SCHEMA_VERSION}. Run the newer build, or use \
             another data_dir.",
            path.display()
        );
    }
    if version < 0 {
        bail!(
            "{doing} {}: it has an invalid schema version {version}; it is not an \
             estate-gateway journal, move it away",
            path.display()
        );
    }
    for (from, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = from as i64 + 1;
        tx.execute_batch(step)
            .sql(path, &format!("{doing} from version {from} to {to}"))?;
        tx.pragma_update(None, "user_version", to)
            .sql(path, doing)?;
    }
    tx.commit().sql(path, doing)?;
    Ok(())
}

/// Each device's last transition (by `ts_ms`, then insertion order), only among those before
/// `before` when given, with its row id. Steps through the distinct devices of the
/// (site, device, ts_ms) index one seek at a time instead of scanning all history.
fn last_transitions(
    conn: &Connection,
    path: &Path,
    before: Option<i64>,
) -> anyhow::Result<Vec<(i64, TransitionRecord)>> {
    let doing = "reading the last state of each device from the journal";
    let mut first = conn
        .prepare_cached("SELECT site, device FROM transitions ORDER BY site, device LIMIT 1")
        .sql(path, doing)?;
    let mut next = conn
        .prepare_cached(
            "SELECT site, device FROM transitions WHERE (site, device) > (?1, ?2) \
             ORDER BY site, device LIMIT 1",
        )
        .sql(path, doing)?;
    let mut last = conn
        .prepare_cached(&format!(
            "SELECT {TRANSITION_COLUMNS} FROM transitions \
             WHERE site = ?1 AND device = ?2 AND ts_ms < ?3 \
             ORDER BY ts_ms DESC, id DESC LIMIT 1"
        ))
        .sql(path, doing)?;
    let mut last_ever = conn
        .prepare_cached(&format!(
            "SELECT {TRANSITION_COLUMNS} FROM transitions WHERE site = ?1 AND device = ?2 \
             ORDER BY ts_ms DESC, id DESC LIMIT 1"
        ))
        .sql(path, doing)?;
    let pair = |r: &Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?));

    let mut out = Vec::new();
    let mut cursor: Option<(String, String)> = match first.query_row([], pair) {
        Ok(p) => Some(p),
        Err(rusqlite::Error::QueryReturnedNoRows) => None,
        Err(e) => return Err(explain(e, path, doing)),
    };
    while let Some((site, device)) = cursor {
        let mut rows = match before {
            Some(b) => last.query(params![site, device, b]),
            None => last_ever.query(params![site, device]),
        }
        .sql(path, doing)?;
        if let Some(row) = rows.next().sql(path, doing)? {
            out.push(transition_record(row, path)?);
        }
        drop(rows);
        cursor = match next.query_row(params![site, device], pair) {
            Ok(p) => Some(p),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(explain(e, path, doing)),
        };
    }
    Ok(out)
}

/// The distinct devices of `site` in `table` (a table whose index starts with (site,
/// device)), in byte order: one index seek per device instead of a scan of all history.
fn site_devices(
    conn: &Connection,
    path: &Path,
    table: &str,
    site: &str,
) -> anyhow::Result<Vec<String>> {
    let doing = "reading a site's devices from the journal";
    let mut first = conn
        .prepare_cached(&format!(
            "SELECT device FROM {table} WHERE site = ?1 ORDER BY device LIMIT 1"
        ))
        .sql(path, doing)?;
    let mut next = conn
        .prepare_cached(&format!(
            "SELECT device FROM {table} WHERE site = ?1 AND device > ?2 \
             ORDER BY device LIMIT 1"
        ))
        .sql(path, doing)?;
    let one = |r: rusqlite::Result<String>| match r {
        Ok(d) => Ok(Some(d)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(explain(e, path, doing)),
    };
    let mut out = Vec::new();
    let mut cursor = one(first.query_row([site], |r| r.get(0)))?;
    while let Some(device) = cursor {
        cursor = one(next.query_row(params![site, device], |r| r.get(0)))?;
        out.push(device);
    }
    Ok(out)
}

/// One row of `TRANSITION_COLUMNS`, with its row id.
/// Runs a prepared query and decodes every row.
fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    path: &Path,
    doing: &str,
    mut decode: impl FnMut(&Row<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut rows = stmt.query(params).sql(path, doing)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().sql(path, doing)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// A row of `SELECT site, device, building, ts_ms, compliant`.
fn compliance_record(row: &Row<'_>, path: &Path, doing: &str) -> anyhow::Result<ComplianceRecord> {
    Ok(ComplianceRecord {
        site: row.get(0).sql(path, doing)?,
        device: row.get(1).sql(path, doing)?,
        building: row.get(2).sql(path, doing)?,
        ts_ms: row.get(3).sql(path, doing)?,
        compliant: row.get(4).sql(path, doing)?,
    })
}

/// A row of `SELECT site, device, building, category, signal, hour_ms, n, sum, min, max`.
fn hourly_record(row: &Row<'_>, path: &Path, doing: &str) -> anyhow::Result<HourlyRecord> {
    let n: i64 = row.get(6).sql(path, doing)?;
    Ok(HourlyRecord {
        site: row.get(0).sql(path, doing)?,
        device: row.get(1).sql(path, doing)?,
        building: row.get(2).sql(path, doing)?,
        category: row.get(3).sql(path, doing)?,
        signal: row.get(4).sql(path, doing)?,
        hour_ms: row.get(5).sql(path, doing)?,
        n: n.max(0) as u64,
        sum: row.get(7).sql(path, doing)?,
        min: row.get(8).sql(path, doing)?,
        max: row.get(9).sql(path, doing)?,
    })
}

fn transition_record(row: &Row<'_>, path: &Path) -> anyhow::Result<(i64, TransitionRecord)> {
    let doing = "reading the journal table transitions";
    let id: i64 = row.get(0).sql(path, doing)?;
    let at = |column: &str| format!("row id {id}, column {column}");
    let from: Option<String> = row.get(6).sql(path, doing)?;
    let from = match from {
        Some(s) => Some(parse(
            path,
            "transitions",
            &at("from_state"),
            "state",
            &s,
            DeviceState::parse,
        )?),
        None => None,
    };
    let to: String = row.get(7).sql(path, doing)?;
    let reason: String = row.get(8).sql(path, doing)?;
    Ok((
        id,
        TransitionRecord {
            site: row.get(1).sql(path, doing)?,
            device: row.get(2).sql(path, doing)?,
            building: row.get(3).sql(path, doing)?,
            category: row.get(4).sql(path, doing)?,
            ts_ms: row.get(5).sql(path, doing)?,
            from,
            to: parse(
                path,
                "transitions",
                &at("to_state"),
                "state",
                &to,
                DeviceState::parse,
            )?,
            reason: parse(
                path,
                "transitions",
                &at("reason"),
                "reason",
                &reason,
                Reason::parse,
            )?,
        },
    ))
}

/// One row of `ALARM_COLUMNS`.
fn alarm_record(row: &Row<'_>, path: &Path) -> anyhow::Result<AlarmRecord> {
    let doing = "reading the journal table alarms";
    let id: String = row.get(0).sql(path, doing)?;
    let severity: String = row.get(6).sql(path, doing)?;
    let stamp = |ts: usize, by: usize| -> anyhow::Result<Option<Stamp>> {
        let ts: Option<i64> = row.get(ts).sql(path, doing)?;
        let by: Option<String> = row.get(by).sql(path, doing)?;
        Ok(ts.map(|ts_ms| Stamp {
            ts_ms,
            by: by.unwrap_or_default(),
        }))
    };
    Ok(AlarmRecord {
        site: row.get(1).sql(path, doing)?,
        device: row.get(2).sql(path, doing)?,
        building: row.get(3).sql(path, doing)?,
        category: row.get(4).sql(path, doing)?,
        rule: row.get(5).sql(path, doing)?,
        severity: parse(
            path,
            "alarms",
            &format!("alarm {id:?}, column severity"),
            "severity",
            &severity,
            Severity::parse,
        )?,
        class: row.get(7).sql(path, doing)?,
        message: row.get(8).sql(path, doing)?,
        raised_ms: row.get(9).sql(path, doing)?,
        acknowledged: stamp(10, 11)?,
        on_site: stamp(12, 13)?,
        cleared_ms: row.get(14).sql(path, doing)?,
        ack_target_ms: row.get(15).sql(path, doing)?,
        on_site_target_ms: row.get(16).sql(path, doing)?,
        id,
    })
}

/// Parses an enumeration string read from the file; an unknown one names where it is.
fn parse<T>(
    path: &Path,
    table: &str,
    at: &str,
    what: &str,
    value: &str,
    f: fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    f(value).ok_or_else(|| {
        anyhow!(
            "journal {}: table {table}, {at}: unknown {what} {value:?} (written by a newer \
             estate-gateway, or edited by hand)",
            path.display()
        )
    })
}

/// `MAX(seq) + 1` of `table` (1 when empty).
fn next_seq(conn: &Connection, path: &Path, table: &str) -> anyhow::Result<u64> {
    let doing = format!("reading the highest sequence of {table}");
    let max: Option<i64> = conn
        .query_row(&format!("SELECT MAX(seq) FROM {table}"), [], |r| r.get(0))
        .sql(path, &doing)?;
    let max = u64::try_from(max.unwrap_or(0)).map_err(|_| {
        anyhow!(
            "journal {}: table {table} holds a negative sequence {max:?}",
            path.display()
        )
    })?;
    Ok(max.saturating_add(1))
}

/// The sequence number of an id: its trailing digits (`jinxiu-42` → 42, `jinxiu-M7` → 7).
/// `None` (stored as NULL, with a warning) for an id without one; it then takes no part in
/// the next sequence.
fn seq_of(id: &str, what: &str) -> Option<i64> {
    let digits = id.len() - id.bytes().rev().take_while(|b| b.is_ascii_digit()).count();
    let seq = id[digits..].parse::<i64>().ok();
    if seq.is_none() {
        warn!(
            id,
            "The journal stored a {what} whose id does not end in a sequence number."
        );
    }
    seq
}

fn device(inventory: &Inventory, idx: DeviceIdx) -> anyhow::Result<&Device> {
    inventory.devices().get(idx as usize).ok_or_else(|| {
        anyhow!(
            "an event refers to device index {idx}, but the inventory has {} devices \
             (nothing of this batch was journaled)",
            inventory.len()
        )
    })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Turns an SQLite error into a sentence naming the file and saying what to do.
fn explain(e: rusqlite::Error, path: &Path, doing: &str) -> anyhow::Error {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            ": the file stayed locked; another gateway probably uses this data_dir (stop it, \
             or give this one its own data_dir)"
        }
        Some(ErrorCode::DiskFull) => {
            ": the disk is full; free space on the volume that holds data_dir"
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            ": cannot open the file; check that it and its directory exist and that the \
             gateway's user may read and write them"
        }
        Some(ErrorCode::ReadOnly) => {
            ": the file or its directory is read-only; give the gateway's user write \
             permission"
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            ": the file is not a valid journal; move it away (keep it for inspection) so \
             that a new one is created"
        }
        Some(ErrorCode::SystemIoFailure) => ": an I/O error; check the disk and file system",
        _ => "",
    };
    anyhow::Error::new(e).context(format!("{doing} {}{hint}", path.display()))
}

/// `.sql(path, doing)`: context for SQLite errors (see `explain`).
trait SqlContext<T> {
    fn sql(self, path: &Path, doing: &str) -> anyhow::Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn sql(self, path: &Path, doing: &str) -> anyhow::Result<T> {
        self.map_err(|e| explain(e, path, doing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{AlarmEvent, AlarmEventKind, StateChange};
    use crate::model::Profile;
    use std::sync::Arc;

    const T0: i64 = 1_790_000_000_000;
    const MIN: i64 = 60_000;

    fn dev(site: &str, id: &str, building: &str, category: &str) -> Device {
        let p = Arc::new(Profile::new(
            category.into(),
            "x".into(),
            Duration::from_secs(30),
            vec![],
        ));
        Device {
            id: id.into(),
            name: format!("{building}{id}"),
            site: site.into(),
            building: building.into(),
            category: category.into(),
            profile: p,
            rules: Default::default(),
            interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            polled: false,
        }
    }

    /// 0: EL-1 (elevator), 1: GATE-2 (access gate), 2: HL-3 (heating loop).
    fn inventory() -> Inventory {
        Inventory::new(vec![
            dev("jinxiu", "EL-1", "3号楼", "elevator"),
            dev("jinxiu", "GATE-2", "南门", "access_gate"),
            dev("jinxiu", "HL-3", "换热站", "heating_loop"),
        ])
    }

    fn state(device: DeviceIdx, ts_ms: i64, from: Option<DeviceState>, to: DeviceState) -> Event {
        Event::State(StateChange {
            device,
            ts_ms,
            from,
            to,
            reason: Reason::Reading,
        })
    }

    fn alarm(seq: u64, device: DeviceIdx, raised_ms: i64) -> Alarm {
        Alarm {
            id: format!("jinxiu-{seq}"),
            device,
            rule: "entrapment".into(),
            severity: Severity::Critical,
            class: "entrapment".into(),
            message: "3号楼EL-1 困人".into(),
            raised_ms,
            acknowledged: None,
            on_site: None,
            cleared_ms: None,
            ack_target_ms: 180_000,
            on_site_target_ms: Some(1_800_000),
        }
    }

    fn alarm_event(kind: AlarmEventKind, ts_ms: i64, by: &str, alarm: &Alarm) -> Event {
        Event::Alarm(AlarmEvent {
            kind,
            ts_ms,
            by: by.into(),
            alarm: alarm.clone(),
        })
    }

    fn window(seq: u64, device: DeviceIdx, start_ms: i64, end_ms: i64) -> MaintenanceWindow {
        MaintenanceWindow {
            id: format!("jinxiu-M{seq}"),
            device,
            start_ms,
            end_ms,
            reason: "年检".into(),
            by: "张工".into(),
            entered_ms: start_ms,
        }
    }

    fn count(j: &Journal, table: &str) -> i64 {
        j.conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn every_event_kind_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.path(), dir.path().join(FILE_NAME));

        let mut a = alarm(7, 0, T0 + 10);
        let mut events = vec![
            Event::State(StateChange {
                device: 0,
                ts_ms: T0,
                from: None,
                to: DeviceState::Offline,
                reason: Reason::Start,
            }),
            state(0, T0 + 5, Some(DeviceState::Offline), DeviceState::Fault),
            alarm_event(AlarmEventKind::Raised, T0 + 10, "", &a),
        ];
        a.acknowledged = Some(Stamp {
            ts_ms: T0 + 70,
            by: "李值班".into(),
        });
        events.push(alarm_event(
            AlarmEventKind::Acknowledged,
            T0 + 70,
            "李值班",
            &a,
        ));
        a.on_site = Some(Stamp {
            ts_ms: T0 + 400,
            by: "device".into(),
        });
        events.push(alarm_event(AlarmEventKind::OnSite, T0 + 400, "device", &a));
        a.cleared_ms = Some(T0 + 900);
        events.push(alarm_event(AlarmEventKind::Cleared, T0 + 900, "", &a));
        events.push(Event::Maintenance(window(3, 1, T0, T0 + 60 * MIN)));
        j.append(&inv, &events).unwrap();

        let ts = j.transitions(T0, T0 + 1000).unwrap();
        assert_eq!(
            ts,
            vec![
                TransitionRecord {
                    site: "jinxiu".into(),
                    device: "EL-1".into(),
                    building: "3号楼".into(),
                    category: "elevator".into(),
                    ts_ms: T0,
                    from: None,
                    to: DeviceState::Offline,
                    reason: Reason::Start,
                },
                TransitionRecord {
                    site: "jinxiu".into(),
                    device: "EL-1".into(),
                    building: "3号楼".into(),
                    category: "elevator".into(),
                    ts_ms: T0 + 5,
                    from: Some(DeviceState::Offline),
                    to: DeviceState::Fault,
                    reason: Reason::Reading,
                },
            ]
        );

        let alarms = j.alarms_raised(T0, T0 + 11).unwrap();
        assert_eq!(
            alarms,
            vec![AlarmRecord {
                id: "jinxiu-7".into(),
                site: "jinxiu".into(),
                device: "EL-1".into(),
                building: "3号楼".into(),
                category: "elevator".into(),
                rule: "entrapment".into(),
                severity: Severity::Critical,
                class: "entrapment".into(),
                message: "3号楼EL-1 困人".into(),
                raised_ms: T0 + 10,
                acknowledged: a.acknowledged.clone(),
                on_site: a.on_site.clone(),
                cleared_ms: Some(T0 + 900),
                ack_target_ms: 180_000,
                on_site_target_ms: Some(1_800_000),
            }]
        );
        assert!(j.alarms_raised(T0 + 11, T0 + 1000).unwrap().is_empty());

        // One alarm row, four lifecycle rows in order.
        assert_eq!(count(&j, "alarms"), 1);
        let kinds: Vec<(String, i64, String)> = j
            .conn
            .prepare("SELECT kind, ts_ms, actor FROM alarm_events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            kinds,
            vec![
                ("raised".into(), T0 + 10, "".into()),
                ("acknowledged".into(), T0 + 70, "李值班".into()),
                ("on_site".into(), T0 + 400, "device".into()),
                ("cleared".into(), T0 + 900, "".into()),
            ]
        );

        let r = j.restore(&inv, T0 + 1000, 10 * MIN).unwrap();
        assert_eq!(r.windows, vec![window(3, 1, T0, T0 + 60 * MIN)]);
        // An early end rewrites end_ms.
        j.append(&inv, &[Event::Maintenance(window(3, 1, T0, T0 + 30 * MIN))])
            .unwrap();
        assert_eq!(count(&j, "windows"), 1);
        let r = j.restore(&inv, T0 + 1000, 10 * MIN).unwrap();
        assert_eq!(r.windows, vec![window(3, 1, T0, T0 + 30 * MIN)]);
    }

    #[test]
    fn empty_journal_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let r = j.restore(&inventory(), T0, MIN).unwrap();
        assert_eq!(r.last_alive_ms, None);
        assert!(r.states.is_empty() && r.alarms.is_empty() && r.windows.is_empty());
        assert_eq!((r.next_alarm_seq, r.next_window_seq), (1, 1));
        assert!(j.transitions(0, i64::MAX).unwrap().is_empty());
        assert!(j.runs(0, i64::MAX).unwrap().is_empty());
    }

    #[test]
    fn restore_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let now = T0 + 24 * 60 * MIN;
        let retain = 60 * MIN;

        let mut active = alarm(41, 0, T0 + 100);
        active.acknowledged = Some(Stamp {
            ts_ms: T0 + 160,
            by: "李值班".into(),
        });
        let mut recent = alarm(42, 1, T0 + 200);
        recent.severity = Severity::Major;
        recent.on_site_target_ms = None;
        recent.cleared_ms = Some(now - retain); // at the retention limit: kept
        let mut old = alarm(43, 2, T0 + 300);
        old.cleared_ms = Some(now - retain - 1);
        let mut no_id = alarm(0, 2, T0 + 400);
        no_id.id = "jinxiu-x".into(); // no sequence: stored, not counted
        no_id.cleared_ms = Some(T0 + 500);
        // Each device's event-time position (DESIGN §4: a restart goes on from there).
        let progress = vec![
            DeviceProgress {
                device: 0,
                last_ts_ms: Some(T0 + 90),
                applied_ms: T0 + 95,
                entered_ms: T0 - 1_000,
                heartbeat_expired: false,
                status_offline: true,
                values: vec![
                    Some(Value::Int(3)),
                    None,
                    Some(Value::Bool(true)),
                    Some(Value::Float(39.5)),
                    Some(Value::Str("inspection".into())),
                ],
                pending: vec![None, Some(T0 + 40)],
                // An open hour: one signal with readings, one without (min/max infinite).
                hour: Some((
                    T0 - T0 % 3_600_000,
                    vec![
                        (2, 40.0, 19.5, 20.5),
                        (0, 0.0, f64::INFINITY, f64::NEG_INFINITY),
                    ],
                )),
            },
            DeviceProgress {
                device: 2,
                last_ts_ms: None,
                applied_ms: T0,
                entered_ms: T0,
                heartbeat_expired: true,
                status_offline: false,
                values: vec![],
                pending: vec![],
                hour: None,
            },
        ];
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.begin_run(T0, "gw-1", "0.1.0").unwrap();
            j.append(
                &inv,
                &[
                    state(0, T0, None, DeviceState::Offline),
                    state(0, T0 + 50, Some(DeviceState::Offline), DeviceState::Intact),
                    state(0, T0 + 90, Some(DeviceState::Intact), DeviceState::Fault),
                    state(1, T0, None, DeviceState::Offline),
                    // Same ts: the later one wins.
                    state(1, T0 + 10, Some(DeviceState::Offline), DeviceState::Intact),
                    state(
                        1,
                        T0 + 10,
                        Some(DeviceState::Intact),
                        DeviceState::Maintenance,
                    ),
                    alarm_event(AlarmEventKind::Raised, active.raised_ms, "", &active),
                    alarm_event(AlarmEventKind::Acknowledged, T0 + 160, "李值班", &active),
                    alarm_event(AlarmEventKind::Cleared, now - retain, "", &recent),
                    alarm_event(AlarmEventKind::Cleared, now - retain - 1, "", &old),
                    alarm_event(AlarmEventKind::Cleared, T0 + 500, "", &no_id),
                    Event::Maintenance(window(5, 1, T0, now + MIN)),
                    // Ended by the gateway clock, but windows apply in event time: restored
                    // (the engine drops it if its device is past it). This one used to be
                    // left out.
                    Event::Maintenance(window(6, 2, T0, now)),
                    // Ended longer ago than any backlog: not restored.
                    Event::Maintenance(window(
                        7,
                        2,
                        T0 - WINDOW_RESTORE_MS - MIN,
                        now - WINDOW_RESTORE_MS,
                    )),
                ],
            )
            .unwrap();
            j.save_progress(&inv, &progress).unwrap();
            j.alive(T0 + 5000).unwrap();
        } // dropped without end_run: a crash.

        let j = Journal::open(dir.path()).unwrap();
        let r = j.restore(&inv, now, retain).unwrap();
        assert_eq!(r.last_alive_ms, Some(T0 + 5000));
        let mut states = r.states.clone();
        states.sort_by_key(|s| s.device);
        assert_eq!(
            states,
            vec![
                RestoredState {
                    device: 0,
                    state: DeviceState::Fault,
                    since_ms: T0 + 90
                },
                RestoredState {
                    device: 1,
                    state: DeviceState::Maintenance,
                    since_ms: T0 + 10
                },
            ]
        );
        assert_eq!(r.alarms, vec![active, recent]);
        assert_eq!(
            r.windows,
            vec![window(5, 1, T0, now + MIN), window(6, 2, T0, now)]
        );
        assert_eq!((r.next_alarm_seq, r.next_window_seq), (44, 8));
        let mut restored = r.progress.clone();
        restored.sort_by_key(|p| p.device);
        assert_eq!(restored, progress);
    }

    #[test]
    fn devices_not_in_the_inventory_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let old = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(
            &old,
            &[
                state(0, T0, None, DeviceState::Intact),
                state(2, T0, None, DeviceState::Fault),
                alarm_event(AlarmEventKind::Raised, T0, "", &alarm(1, 0, T0)),
                alarm_event(AlarmEventKind::Raised, T0, "", &alarm(2, 2, T0)),
                Event::Maintenance(window(1, 0, T0, T0 + 60 * MIN)),
                Event::Maintenance(window(2, 2, T0, T0 + 60 * MIN)),
            ],
        )
        .unwrap();

        // The new inventory dropped EL-1 and puts HL-3 at index 0.
        let new = Inventory::new(vec![
            dev("jinxiu", "HL-3", "换热站", "heating_loop"),
            dev("other", "EL-1", "3号楼", "elevator"),
        ]);
        let r = j.restore(&new, T0 + MIN, MIN).unwrap();
        assert_eq!(
            r.states,
            vec![RestoredState {
                device: 0,
                state: DeviceState::Fault,
                since_ms: T0
            }]
        );
        assert_eq!(r.alarms, vec![alarm(2, 0, T0)]);
        assert_eq!(r.windows, vec![window(2, 0, T0, T0 + 60 * MIN)]);
        // Sequences count every stored alarm and window, known device or not.
        assert_eq!((r.next_alarm_seq, r.next_window_seq), (3, 3));
    }

    #[test]
    fn last_alive_from_alive_and_end_run() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j.alive(T0).is_err(), "alive before begin_run");

        j.begin_run(T0, "gw-1", "0.1.0").unwrap();
        j.alive(T0 + 5_000).unwrap();
        j.alive(T0 + 10_000).unwrap();
        // The current run is not a previous run.
        assert_eq!(j.restore(&inv, T0, 0).unwrap().last_alive_ms, None);
        drop(j); // crash

        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            j.restore(&inv, T0, 0).unwrap().last_alive_ms,
            Some(T0 + 10_000)
        );
        j.begin_run(T0 + 60_000, "gw-1", "0.1.1").unwrap();
        j.alive(T0 + 65_000).unwrap();
        j.end_run(T0 + 67_000).unwrap();
        drop(j);

        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            j.restore(&inv, T0, 0).unwrap().last_alive_ms,
            Some(T0 + 67_000)
        );
        let crashed = RunRecord {
            started_ms: T0,
            alive_ms: T0 + 10_000,
            stopped_ms: None,
            host: "gw-1".into(),
            version: "0.1.0".into(),
        };
        let stopped = RunRecord {
            started_ms: T0 + 60_000,
            alive_ms: T0 + 67_000,
            stopped_ms: Some(T0 + 67_000),
            host: "gw-1".into(),
            version: "0.1.1".into(),
        };
        assert_eq!(
            j.runs(0, i64::MAX).unwrap(),
            vec![crashed.clone(), stopped.clone()]
        );
        assert_eq!(j.runs(T0 + 20_000, T0 + 30_000).unwrap(), vec![]);
        assert_eq!(
            j.runs(T0 + 10_000, T0 + 60_001).unwrap(),
            vec![crashed, stopped.clone()]
        );
        assert_eq!(j.runs(T0 + 66_000, T0 + 66_001).unwrap(), vec![stopped]);
        assert_eq!(j.runs(T0 + 67_001, i64::MAX).unwrap(), vec![]);
    }

    #[test]
    fn read_only_sees_what_the_writer_committed() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut w = Journal::open(dir.path()).unwrap();
        let r = Journal::open_read_only(w.path()).unwrap();
        assert!(r.transitions(0, i64::MAX).unwrap().is_empty());

        w.begin_run(T0, "gw", "v").unwrap();
        w.append(&inv, &[state(1, T0, None, DeviceState::Intact)])
            .unwrap();
        let seen = r.transitions(0, i64::MAX).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].device, "GATE-2");
        assert_eq!(r.runs(0, i64::MAX).unwrap().len(), 1);

        // The reader cannot write.
        let mut r = r;
        let e = r
            .append(&inv, &[state(1, T0, None, DeviceState::Intact)])
            .unwrap_err();
        assert!(format!("{e:#}").contains("read-only"), "{e:#}");
        drop(w);
    }

    #[test]
    fn read_only_open_of_a_missing_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let e = Journal::open_read_only(&path).unwrap_err();
        assert!(
            format!("{e:#}").contains(&path.display().to_string()),
            "{e:#}"
        );
    }

    #[test]
    fn transitions_include_the_last_one_before_from() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        use DeviceState::*;
        j.append(
            &inv,
            &[
                state(1, T0, None, Offline),
                state(1, T0 + 10, Some(Offline), Intact),
                state(0, T0 + 20, None, Offline),
                state(1, T0 + 100, Some(Intact), Fault),
                state(0, T0 + 150, Some(Offline), Intact),
                state(1, T0 + 200, Some(Fault), Intact),
                state(0, T0 + 300, Some(Intact), Fault),
                state(2, T0 + 400, None, Offline), // after the period
            ],
        )
        .unwrap();
        let got: Vec<(String, i64, DeviceState)> = j
            .transitions(T0 + 100, T0 + 300)
            .unwrap()
            .into_iter()
            .map(|t| (t.device, t.ts_ms, t.to))
            .collect();
        assert_eq!(
            got,
            vec![
                ("EL-1".into(), T0 + 20, Offline), // starting state of EL-1
                ("EL-1".into(), T0 + 150, Intact),
                ("GATE-2".into(), T0 + 10, Intact), // starting state of GATE-2
                ("GATE-2".into(), T0 + 100, Fault),
                ("GATE-2".into(), T0 + 200, Intact),
            ]
        );
    }

    /// The per-site queries return what the all-site ones return for that site, in the same
    /// order, and nothing of another site.
    #[test]
    fn per_site_queries_match_the_all_site_ones() {
        use crate::model::event::ComplianceChange;
        let dir = tempfile::tempdir().unwrap();
        let mut devices: Vec<Device> = inventory().devices().to_vec();
        devices.push(dev("other", "EL-1", "1号楼", "elevator"));
        let inv = Inventory::new(devices);
        let mut j = Journal::open(dir.path()).unwrap();
        use DeviceState::*;
        let ok = |device, ts_ms, compliant| {
            Event::Compliance(ComplianceChange {
                device,
                ts_ms,
                compliant,
            })
        };
        let mut other = alarm(9, 3, T0 + 150);
        other.id = "other-9".into();
        j.append(
            &inv,
            &[
                state(1, T0, None, Offline),
                state(3, T0 + 5, None, Fault),
                state(0, T0 + 20, None, Offline),
                state(1, T0 + 100, Some(Offline), Fault),
                state(3, T0 + 120, Some(Fault), Intact),
                state(0, T0 + 150, Some(Offline), Intact),
                state(2, T0 + 400, None, Offline),
                ok(0, T0 + 10, Some(true)),
                ok(0, T0 + 200, Some(false)),
                ok(3, T0 + 10, Some(true)),
                alarm_event(AlarmEventKind::Raised, T0 + 150, "", &alarm(1, 0, T0 + 150)),
                alarm_event(AlarmEventKind::Raised, T0 + 150, "", &other),
            ],
        )
        .unwrap();
        let (a, b) = (T0 + 100, T0 + 300);
        let site = |t: &TransitionRecord| t.site == "jinxiu";
        let all: Vec<_> = j
            .transitions(a, b)
            .unwrap()
            .into_iter()
            .filter(site)
            .collect();
        assert_eq!(all.len(), 4);
        assert_eq!(j.transitions_for_site("jinxiu", a, b).unwrap(), all);
        let all: Vec<_> = j
            .compliance(a, b)
            .unwrap()
            .into_iter()
            .filter(|c| c.site == "jinxiu")
            .collect();
        assert_eq!(all.len(), 2);
        assert_eq!(j.compliance_for_site("jinxiu", a, b).unwrap(), all);
        let got = j.alarms_raised_for_site("jinxiu", a, b).unwrap();
        assert_eq!(
            got.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["jinxiu-1"]
        );
        assert!(j.hourly_for_site("jinxiu", "x", a, b).unwrap().is_empty());
    }

    #[test]
    fn one_append_is_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        let many: Vec<Event> = (0..10_000)
            .map(|i| state(i % 3, T0 + i64::from(i), None, DeviceState::Intact))
            .collect();
        j.append(&inv, &many).unwrap();
        assert_eq!(count(&j, "transitions"), 10_000);

        // All or nothing: a bad event at the end leaves nothing of its batch behind.
        let mut bad = many.clone();
        bad.push(state(99, T0, None, DeviceState::Intact));
        let e = j.append(&inv, &bad).unwrap_err();
        assert!(format!("{e:#}").contains("device index 99"), "{e:#}");
        assert_eq!(count(&j, "transitions"), 10_000);
    }

    /// Appends never checkpoint (`wal_autocheckpoint = 0`); the checkpoint thread moves the
    /// WAL into the database file within about a second.
    #[test]
    fn the_checkpoint_thread_moves_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        let db = dir.path().join(FILE_NAME);
        let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let empty = size();
        let many: Vec<Event> = (0..5_000)
            .map(|i| state(i % 3, T0 + i64::from(i), None, DeviceState::Intact))
            .collect();
        j.append(&inv, &many).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() <= empty {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint: {} bytes",
                size()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count(&j, "transitions"), 5_000);
    }

    #[test]
    fn a_corrupt_value_is_an_error_naming_table_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&inv, &[state(0, T0, None, DeviceState::Intact)])
            .unwrap();
        j.conn
            .execute(
                "INSERT INTO transitions (site, device, building, category, ts_ms, \
                 from_state, to_state, reason) \
                 VALUES ('jinxiu', 'EL-1', 'b', 'c', ?1, 'intact', 'broken', 'reading')",
                [T0 + 1],
            )
            .unwrap();
        let id = j.conn.last_insert_rowid();
        for e in [
            j.transitions(T0, T0 + 10).unwrap_err(),
            j.restore(&inv, T0, 0).unwrap_err(),
        ] {
            let msg = format!("{e:#}");
            assert!(msg.contains("transitions"), "{msg}");
            assert!(msg.contains(&format!("row id {id}")), "{msg}");
            assert!(msg.contains("\"broken\""), "{msg}");
        }

        j.append(
            &inv,
            &[alarm_event(
                AlarmEventKind::Raised,
                T0,
                "",
                &alarm(1, 0, T0),
            )],
        )
        .unwrap();
        j.conn
            .execute("UPDATE alarms SET severity = 'dire'", [])
            .unwrap();
        let msg = format!("{:#}", j.alarms_raised(T0, T0 + 1).unwrap_err());
        assert!(msg.contains("alarms") && msg.contains("jinxiu-1"), "{msg}");
        // A value of the wrong type is an error too, not a panic.
        j.conn
            .execute("DELETE FROM transitions WHERE id = ?1", [id])
            .unwrap();
        j.conn
            .execute(
                "UPDATE alarms SET severity = 'major', raised_ms = 'soon'",
                [],
            )
            .unwrap();
        let msg = format!("{:#}", j.restore(&inv, T0, 0).unwrap_err());
        assert!(msg.contains("alarms"), "{msg}");
    }

    #[test]
    fn an_unwritable_data_dir_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory under a regular file cannot be created, not even by root.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let under = file.join("data");
        let e = Journal::open(&under).unwrap_err();
        assert!(
            format!("{e:#}").contains(&under.display().to_string()),
            "{e:#}"
        );

        // The journal's own path taken by a directory: SQLite cannot open it.
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join(FILE_NAME)).unwrap();
        let e = Journal::open(&data).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&data.join(FILE_NAME).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("cannot open"), "{msg}");
    }

    #[test]
    fn a_second_writer_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let e = Journal::open_with_lock_wait(dir.path(), Duration::from_millis(10)).unwrap_err();
        assert!(
            format!("{e:#}").contains("another gateway uses this data_dir"),
            "{e:#}"
        );
        drop(j);
        Journal::open_with_lock_wait(dir.path(), Duration::from_millis(10)).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let j = Journal::open(dir.path()).unwrap();
            j.conn
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
            j.path().to_path_buf()
        };
        let e = Journal::open(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("newer"), "{e:#}");
        let e = Journal::open_read_only(&path).unwrap_err();
        assert!(format!("{e:#}").contains("newer"), "{e:#}");
    }

    #[test]
    fn reopening_keeps_the_schema_and_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let j = Journal::open(dir.path()).unwrap();
        let v: i64 = j
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        let mode: String = j
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!((v, mode.as_str()), (SCHEMA_VERSION, "wal"));
    }

    #[test]
    fn sequence_is_the_trailing_number() {
        assert_eq!(seq_of("jinxiu-42", "alarm"), Some(42));
        assert_eq!(seq_of("锦绣-2期-M7", "window"), Some(7));
        assert_eq!(seq_of("jinxiu-x", "alarm"), None);
        assert_eq!(seq_of("", "alarm"), None);
    }
}
