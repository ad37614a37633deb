//! The journal's schema and its migrations.
//!
//! # Schema (version 7, in `PRAGMA user_version`; each table says the version that added it)
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
//!   `sum`, `min` and `max` (`Event::Hourly`, the whole hour so far: the row is replaced, so an
//!   hour written at a stop and again after the restart is counted once).
//! - **`escalations`** (version 5) — one row per escalation step fired for an alarm
//!   (`Event::Escalation`; written before the step is sent, so a restart never sends it
//!   again). `id` INTEGER PRIMARY KEY (insertion order); `alarm_id` (→ `alarms.id`); `step`
//!   (its position in the class's chain, from 1; UNIQUE with `alarm_id`); `site`, `device`,
//!   `building`, `category`; `class`; `ts_ms` (when it fired, on the gateway's clock);
//!   `due_ms` (the alarm's `raised_ms` + the step's `after`); `until` (`ack` or `on_site`);
//!   `notify` (`webhook:<name>` or `mqtt:<topic>`); `message` (as sent). Index: (`ts_ms`).
//!
//! - **`consumers`** (version 6) — `name` TEXT PRIMARY KEY, `lsn`: a consumer's committed
//!   position in the input log (`data_dir/log`). `engine`: every fact with a lower lsn is in
//!   this journal (committed in the same transaction as the rows it produced).
//!
//! - **`writes`** (version 7) — one row per Modbus write an operator asked for over HTTP
//!   (`POST /api/devices/{id}/write`, past the token check), whatever came of it. `id`
//!   INTEGER PRIMARY KEY (insertion order); `ts_ms` (when it was answered, wall clock);
//!   `site`, `device` (as asked), `signal`; `old_value` (the signal's latest value as JSON
//!   when the gateway knew one, else NULL); `new_value` (the value asked for, JSON); `by`
//!   (the operator named in the body); `remote` (the client's address); `status` (the HTTP
//!   status answered: 200 done, 422 out of range, 502/504 the device …); `result` (`ok`, or
//!   the error message). Indexes: (`site`, `device`, `id`). Listed by `GET /api/writes`.
//!
//! Sequences: the next alarm (window) sequence is `MAX(seq) + 1` over all rows ever stored, so
//! ids stay unique across restarts. Later schema versions add a step to `MIGRATIONS`; opening
//! an older file migrates it in one transaction, a newer file is refused.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::{JournalError, SqlContext};

/// Schema migrations: step `i` takes the file from version `i` to `i + 1`. Append steps; never
/// edit a released one.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7,
];

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

/// Version 4: each alarm's repair (restore) target when raised (修复及时率; older rows have
/// none and are not graded for repair).
const SCHEMA_V4: &str = "
ALTER TABLE alarms ADD COLUMN repair_target_ms INTEGER;
";

/// Version 5: the escalation steps fired for each alarm (issue 14), so a restart neither
/// forgets nor repeats them.
const SCHEMA_V5: &str = "
CREATE TABLE escalations (
    id          INTEGER PRIMARY KEY,
    alarm_id    TEXT NOT NULL,
    step        INTEGER NOT NULL,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    building    TEXT NOT NULL,
    category    TEXT NOT NULL,
    class       TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    due_ms      INTEGER NOT NULL,
    until       TEXT NOT NULL,
    notify      TEXT NOT NULL,
    message     TEXT NOT NULL,
    UNIQUE (alarm_id, step)
);
CREATE INDEX escalations_ts ON escalations (ts_ms);
";

/// Version 6: the input log (DESIGN §6). Each consumer's committed position: `engine` is the
/// lsn below which every fact is reflected in this journal, written in the same transaction
/// as the events and progress it produced.
const SCHEMA_V6: &str = "
CREATE TABLE consumers (
    name        TEXT PRIMARY KEY,
    lsn         INTEGER NOT NULL
);
";

/// Version 7: the audit trail of Modbus writes.
const SCHEMA_V7: &str = "
CREATE TABLE writes (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    signal      TEXT NOT NULL,
    old_value   TEXT,
    new_value   TEXT NOT NULL,
    by          TEXT NOT NULL,
    remote      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    result      TEXT NOT NULL
);
CREATE INDEX writes_device ON writes (site, device, id);
";

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let doing = "migrating the journal schema";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql(path, doing)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .sql(path, doing)?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
            read_only: false,
        });
    }
    if version < 0 {
        return Err(JournalError::InvalidSchema {
            path: path.to_path_buf(),
            found: version,
        });
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
