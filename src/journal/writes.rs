//! The audit trail of Modbus writes (`writes` table, schema version 5): every write an
//! operator asked for over HTTP, with who, what, the value before and after, and the result.
//!
//! The HTTP handlers record and list writes through a `WriteLog`: its own connection to the
//! journal file (WAL: it writes beside the core stage's connection, each transaction waiting
//! for the other at most the busy timeout), opened after `Journal::open` has migrated the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;

use super::error::{JournalError, SqlContext};
use super::{BUSY_TIMEOUT, SCHEMA_VERSION};

/// One write, as journaled and as `GET /api/writes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteRecord {
    /// Row id (insertion order); 0 before it is recorded.
    pub id: i64,
    pub ts_ms: i64,
    pub site: String,
    pub device: String,
    pub signal: String,
    /// The signal's latest value before the write, when known.
    pub old_value: Option<serde_json::Value>,
    pub new_value: serde_json::Value,
    pub by: String,
    pub remote: String,
    /// The HTTP status answered.
    pub status: u16,
    /// `ok`, or why the write did not happen.
    pub result: String,
}

/// A connection to the journal for the write trail; shareable between handlers.
#[derive(Debug)]
pub struct WriteLog {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl WriteLog {
    /// Opens the journal file (already created and migrated by `Journal::open`).
    pub fn open(path: &Path) -> Result<WriteLog, JournalError> {
        let doing = "opening the journal for the write trail";
        if !path.is_file() {
            return Err(JournalError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .sql(path, doing)?;
        conn.busy_timeout(BUSY_TIMEOUT).sql(path, doing)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .sql(path, doing)?;
        if version != SCHEMA_VERSION {
            return Err(JournalError::OlderSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(WriteLog {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `w` (its `id` is ignored); returns the new row's id. Blocking (SQLite).
    pub fn record(&self, w: &WriteRecord) -> Result<i64, JournalError> {
        let doing = "journaling a Modbus write";
        let json = |v: &serde_json::Value| v.to_string();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO writes (ts_ms, site, device, signal, old_value, new_value, by, remote, status, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                w.ts_ms,
                w.site,
                w.device,
                w.signal,
                w.old_value.as_ref().map(json),
                json(&w.new_value),
                w.by,
                w.remote,
                w.status,
                w.result
            ],
        )
        .sql(&self.path, doing)?;
        Ok(conn.last_insert_rowid())
    }

    /// The newest `limit` writes, newest first; only device `device` (any site) when given,
    /// and only at `site` when given. Blocking (SQLite).
    pub fn list(
        &self,
        site: Option<&str>,
        device: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WriteRecord>, JournalError> {
        let doing = "listing the Modbus writes";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, ts_ms, site, device, signal, old_value, new_value, by, remote, status, result
                 FROM writes
                 WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR device = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )
            .sql(&self.path, doing)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        let rows = stmt
            .query_map(params![site, device, limit], |r| {
                Ok(WriteRecord {
                    id: r.get(0)?,
                    ts_ms: r.get(1)?,
                    site: r.get(2)?,
                    device: r.get(3)?,
                    signal: r.get(4)?,
                    old_value: parse(r.get(5)?),
                    new_value: parse(r.get(6)?).unwrap_or(serde_json::Value::Null),
                    by: r.get(7)?,
                    remote: r.get(8)?,
                    status: r.get(9)?,
                    result: r.get(10)?,
                })
            })
            .sql(&self.path, doing)?;
        rows.collect::<Result<Vec<_>, _>>().sql(&self.path, doing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_recorded_and_listed_newest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = super::super::Journal::open(dir.path()).expect("journal");
        let log = WriteLog::open(journal.path()).expect("write log");
        let w = |device: &str, status: u16| WriteRecord {
            id: 0,
            ts_ms: 1_700_000_000_000,
            site: "s".into(),
            device: device.into(),
            signal: "supply_setpoint_c".into(),
            old_value: (status == 200).then(|| serde_json::json!(55.0)),
            new_value: serde_json::json!(60.0),
            by: "张三".into(),
            remote: "127.0.0.1:5000".into(),
            status,
            result: if status == 200 {
                "ok".into()
            } else {
                "refused".into()
            },
        };
        log.record(&w("HX-1", 422)).expect("record");
        log.record(&w("HX-2", 200)).expect("record");
        log.record(&w("HX-1", 200)).expect("record");
        let all = log.list(None, None, 10).expect("list");
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(all[0].old_value, Some(serde_json::json!(55.0)));
        assert_eq!(all[2].old_value, None);
        let hx1 = log.list(None, Some("HX-1"), 1).expect("list");
        assert_eq!(hx1.len(), 1);
        assert_eq!((hx1[0].id, hx1[0].status), (3, 200));
        assert!(log.list(Some("other"), None, 10).expect("list").is_empty());
    }
}
