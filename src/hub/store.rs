//! The hub's SQLite file (`hub.data_file`, WAL): what it received, so a restart loses nothing.
//!
//! - `summaries` — the newest live summary per site (`estate/{site}/kpi`): its `ts` (the
//!   gateway's clock), when the hub received it, the JSON;
//! - `assessments` — one scorecard per (site, period), the newest replacing older ones;
//! - `alarms` — the newest state of each alarm per (site, alarm id), from the alarm events;
//! - `heard` — when the hub last received anything from a site.
//!
//! Older summaries never replace newer ones (a retained message redelivered after a restart
//! carries its old `ts`).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value as Json;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS summaries (site TEXT PRIMARY KEY, ts INTEGER NOT NULL,
    received_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assessments (site TEXT NOT NULL, period TEXT NOT NULL,
    ts INTEGER NOT NULL, received_ms INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (site, period));
CREATE TABLE IF NOT EXISTS alarms (site TEXT NOT NULL, id TEXT NOT NULL, ts INTEGER NOT NULL,
    active INTEGER NOT NULL, received_ms INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (site, id));
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (active, ts);
CREATE TABLE IF NOT EXISTS heard (site TEXT PRIMARY KEY, last_ms INTEGER NOT NULL);
";

/// The open hub file.
pub struct HubStore {
    conn: Connection,
}

/// A stored summary.
#[derive(Debug, Clone)]
pub struct StoredSummary {
    pub site: String,
    pub ts: i64,
    pub received_ms: i64,
    pub body: Json,
}

impl HubStore {
    pub fn open(path: &Path) -> anyhow::Result<HubStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the directory of {}: {e}", path.display())
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the hub file {}: {e}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| anyhow::anyhow!("cannot prepare the hub file {}: {e}", path.display()))?;
        Ok(HubStore { conn })
    }

    fn heard(&self, site: &str, now_ms: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO heard (site, last_ms) VALUES (?1, ?2)
             ON CONFLICT (site) DO UPDATE SET last_ms = max(last_ms, excluded.last_ms)",
            params![site, now_ms],
        )?;
        Ok(())
    }

    /// Keeps a live summary unless a newer one is stored.
    pub fn put_summary(
        &self,
        site: &str,
        ts: i64,
        body: &Json,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        self.heard(site, now_ms)?;
        self.conn.execute(
            "INSERT INTO summaries (site, ts, received_ms, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (site) DO UPDATE SET ts = excluded.ts, received_ms = excluded.received_ms,
                 body = excluded.body WHERE excluded.ts >= summaries.ts",
            params![site, ts, now_ms, body.to_string()],
        )?;
        Ok(())
    }

    /// Keeps a scorecard unless a newer one of the same period is stored.
    pub fn put_assessment(
        &self,
        site: &str,
        period: &str,
        ts: i64,
        body: &Json,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        self.heard(site, now_ms)?;
        self.conn.execute(
            "INSERT INTO assessments (site, period, ts, received_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (site, period) DO UPDATE SET ts = excluded.ts,
                 received_ms = excluded.received_ms, body = excluded.body
                 WHERE excluded.ts >= assessments.ts",
            params![site, period, ts, now_ms, body.to_string()],
        )?;
        Ok(())
    }

    /// Keeps an alarm's newest state (by the event's `ts`).
    pub fn put_alarm(
        &self,
        site: &str,
        id: &str,
        ts: i64,
        active: bool,
        body: &Json,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        self.heard(site, now_ms)?;
        self.conn.execute(
            "INSERT INTO alarms (site, id, ts, active, received_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (site, id) DO UPDATE SET ts = excluded.ts, active = excluded.active,
                 received_ms = excluded.received_ms, body = excluded.body
                 WHERE excluded.ts >= alarms.ts",
            params![site, id, ts, active, now_ms, body.to_string()],
        )?;
        Ok(())
    }

    pub fn summaries(&self) -> rusqlite::Result<Vec<StoredSummary>> {
        let mut st = self
            .conn
            .prepare("SELECT site, ts, received_ms, body FROM summaries ORDER BY site")?;
        let rows = st.query_map([], |r| {
            let body: String = r.get(3)?;
            Ok(StoredSummary {
                site: r.get(0)?,
                ts: r.get(1)?,
                received_ms: r.get(2)?,
                body: serde_json::from_str(&body).unwrap_or(Json::Null),
            })
        })?;
        rows.collect()
    }

    /// Every site heard of, with when.
    pub fn heard_sites(&self) -> rusqlite::Result<Vec<(String, i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT site, last_ms FROM heard ORDER BY site")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// The scorecards of a period, by site.
    pub fn assessments(&self, period: &str) -> rusqlite::Result<Vec<(String, Json)>> {
        let mut st = self
            .conn
            .prepare("SELECT site, body FROM assessments WHERE period = ?1 ORDER BY site")?;
        let rows = st.query_map([period], |r| {
            let body: String = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                serde_json::from_str(&body).unwrap_or(Json::Null),
            ))
        })?;
        rows.collect()
    }

    /// Alarms, newest first: the active ones, or all (`all`), at most `limit`.
    pub fn alarms(&self, all: bool, limit: usize) -> rusqlite::Result<Vec<Json>> {
        let sql = if all {
            "SELECT body FROM alarms ORDER BY ts DESC LIMIT ?1"
        } else {
            "SELECT body FROM alarms WHERE active = 1 ORDER BY ts DESC LIMIT ?1"
        };
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([limit as i64], |r| {
            let body: String = r.get(0)?;
            Ok(serde_json::from_str(&body).unwrap_or(Json::Null))
        })?;
        rows.collect()
    }

    /// How many alarms are stored for a site (tests, diagnostics).
    pub fn alarm_count(&self, site: &str) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM alarms WHERE site = ?1", [site], |r| {
                r.get(0)
            })
            .optional()
            .map(|n| n.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What was put survives reopening; an older summary does not replace a newer one.
    #[test]
    fn a_reopened_file_has_everything_and_old_messages_do_not_win() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("hub.sqlite");
        {
            let s = HubStore::open(&p).unwrap();
            s.put_summary("a", 200, &json!({"ts": 200}), 1_000).unwrap();
            s.put_summary("a", 100, &json!({"ts": 100}), 2_000).unwrap();
            s.put_assessment("a", "2026-11", 5, &json!({"total": 90}), 1_000)
                .unwrap();
            s.put_alarm("a", "x1", 10, true, &json!({"id": "x1"}), 1_000)
                .unwrap();
            s.put_alarm(
                "a",
                "x1",
                20,
                false,
                &json!({"id": "x1", "active": false}),
                1_500,
            )
            .unwrap();
        }
        let s = HubStore::open(&p).unwrap();
        let sums = s.summaries().unwrap();
        assert_eq!(sums.len(), 1);
        assert_eq!((sums[0].ts, sums[0].body["ts"].as_i64()), (200, Some(200)));
        assert_eq!(s.heard_sites().unwrap(), [("a".to_owned(), 2_000)]);
        assert_eq!(s.assessments("2026-11").unwrap()[0].1["total"], 90);
        assert!(s.assessments("2026-10").unwrap().is_empty());
        assert!(s.alarms(false, 10).unwrap().is_empty());
        assert_eq!(s.alarms(true, 10).unwrap()[0]["active"], false);
        assert_eq!(s.alarm_count("a").unwrap(), 1);
    }
}
