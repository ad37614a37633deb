//! Period queries for reports (`report`, the KPI task, `GET /api/report`): each site's
//! transitions, windows, compliance, alarms and hourly statistics over `[from_ms, to_ms)`, and
//! the row decoders they share with `restore`.

use std::path::Path;

use rusqlite::{params, Connection, Row};

use super::error::{explain, JournalError, SqlContext};
use super::Journal;
use crate::model::escalation::{Escalation, Target, Until};
use crate::model::event::{DeviceState, Reason, Stamp};
use crate::model::rules::Severity;

const TRANSITION_COLUMNS: &str =
    "id, site, device, building, category, ts_ms, from_state, to_state, reason";

pub(super) const ALARM_COLUMNS: &str =
    "id, site, device, building, category, rule, severity, class, \
     message, raised_ms, ack_ms, ack_by, on_site_ms, on_site_by, cleared_ms, ack_target_ms, \
     on_site_target_ms, repair_target_ms";

pub(super) const ESCALATION_COLUMNS: &str =
    "e.alarm_id, e.step, e.ts_ms, e.due_ms, e.until, e.notify, e.message";

pub(super) const WINDOW_COLUMNS: &str =
    "id, site, device, start_ms, end_ms, reason, actor, COALESCE(entered_ms, start_ms)";

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
    /// The response class (its targets are `ack_target_ms`, `on_site_target_ms`,
    /// `repair_target_ms`).
    pub class: String,
    pub message: String,
    pub raised_ms: i64,
    pub acknowledged: Option<Stamp>,
    pub on_site: Option<Stamp>,
    /// `None` while the alarm is active.
    pub cleared_ms: Option<i64>,
    pub ack_target_ms: i64,
    pub on_site_target_ms: Option<i64>,
    /// `None` in journals of earlier versions (not graded for repair).
    pub repair_target_ms: Option<i64>,
}

impl From<&AlarmRecord> for crate::core::response::AlarmTimes {
    /// What the timeliness figures need of a stored alarm (as `From<&Alarm>` for a live one).
    fn from(a: &AlarmRecord) -> Self {
        crate::core::response::AlarmTimes {
            raised_ms: a.raised_ms,
            acknowledged_ms: a.acknowledged.as_ref().map(|s| s.ts_ms),
            cleared_ms: a.cleared_ms,
            ack_target_ms: a.ack_target_ms,
            on_site_ms: a.on_site.as_ref().map(|s| s.ts_ms),
            on_site_target_ms: a.on_site_target_ms,
            repair_target_ms: a.repair_target_ms,
        }
    }
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
/// `None` (still running, or crashed), at least until `alive_ms`. Only tests read runs.
#[cfg(test)]
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
    /// The escalation steps fired for alarm `alarm_id`, in step order.
    pub fn escalations_of(&self, alarm_id: &str) -> Result<Vec<Escalation>, JournalError> {
        let path = &self.path;
        let doing = "reading escalations from the journal";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations e WHERE e.alarm_id = ?1 \
                 ORDER BY e.step"
            ))
            .sql(path, doing)?;
        collect(&mut stmt, [alarm_id], path, doing, |row| {
            escalation_record(row, path).map(|(_, e)| e)
        })
    }

    /// Alarms raised in `[from_ms, to_ms)`, oldest first (ties by sequence), whatever their
    /// devices are today.
    pub fn alarms_raised(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AlarmRecord>, JournalError> {
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
    pub fn transitions(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<TransitionRecord>, JournalError> {
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
    /// `from_ms`; ordered by (site, device, ts, insertion order). For unit tests; reports
    /// use `compliance_for_site`.
    #[cfg(test)]
    pub fn compliance(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ComplianceRecord>, JournalError> {
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
    /// after `from_ms`), oldest first. For unit tests.
    #[cfg(test)]
    pub fn runs(&self, from_ms: i64, to_ms: i64) -> Result<Vec<RunRecord>, JournalError> {
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
    ) -> Result<Vec<TransitionRecord>, JournalError> {
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
    ) -> Result<Vec<(String, i64, i64)>, JournalError> {
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
    ) -> Result<Vec<ComplianceRecord>, JournalError> {
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
    ) -> Result<Vec<AlarmRecord>, JournalError> {
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
    ) -> Result<Vec<HourlyRecord>, JournalError> {
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
}

/// Each device's last transition (by `ts_ms`, then insertion order), only among those before
/// `before` when given, with its row id. Steps through the distinct devices of the
/// (site, device, ts_ms) index one seek at a time instead of scanning all history.
pub(super) fn last_transitions(
    conn: &Connection,
    path: &Path,
    before: Option<i64>,
) -> Result<Vec<(i64, TransitionRecord)>, JournalError> {
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
) -> Result<Vec<String>, JournalError> {
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

/// Runs a prepared query and decodes every row.
fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    path: &Path,
    doing: &str,
    mut decode: impl FnMut(&Row<'_>) -> Result<T, JournalError>,
) -> Result<Vec<T>, JournalError> {
    let mut rows = stmt.query(params).sql(path, doing)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().sql(path, doing)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// A row of `SELECT site, device, building, ts_ms, compliant`.
fn compliance_record(
    row: &Row<'_>,
    path: &Path,
    doing: &str,
) -> Result<ComplianceRecord, JournalError> {
    Ok(ComplianceRecord {
        site: row.get(0).sql(path, doing)?,
        device: row.get(1).sql(path, doing)?,
        building: row.get(2).sql(path, doing)?,
        ts_ms: row.get(3).sql(path, doing)?,
        compliant: row.get(4).sql(path, doing)?,
    })
}

/// A row of `SELECT site, device, building, category, signal, hour_ms, n, sum, min, max`.
fn hourly_record(row: &Row<'_>, path: &Path, doing: &str) -> Result<HourlyRecord, JournalError> {
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

fn transition_record(row: &Row<'_>, path: &Path) -> Result<(i64, TransitionRecord), JournalError> {
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
pub(super) fn alarm_record(row: &Row<'_>, path: &Path) -> Result<AlarmRecord, JournalError> {
    let doing = "reading the journal table alarms";
    let id: String = row.get(0).sql(path, doing)?;
    let severity: String = row.get(6).sql(path, doing)?;
    let stamp = |ts: usize, by: usize| -> Result<Option<Stamp>, JournalError> {
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
        repair_target_ms: row.get(17).sql(path, doing)?,
        id,
    })
}

/// An `escalations` row selected with `ESCALATION_COLUMNS`: its alarm id and the step.
pub(super) fn escalation_record(
    row: &Row<'_>,
    path: &Path,
) -> Result<(String, Escalation), JournalError> {
    let doing = "reading an escalation from the journal";
    let alarm: String = row.get(0).sql(path, doing)?;
    let step: u32 = row.get(1).sql(path, doing)?;
    let until: String = row.get(4).sql(path, doing)?;
    let notify: String = row.get(5).sql(path, doing)?;
    let at = format!("alarm {alarm:?}, step {step}");
    Ok((
        alarm.clone(),
        Escalation {
            step,
            ts_ms: row.get(2).sql(path, doing)?,
            due_ms: row.get(3).sql(path, doing)?,
            until: parse(path, "escalations", &at, "until", &until, Until::parse)?,
            notify: parse(path, "escalations", &at, "notify", &notify, Target::parse)?,
            message: row.get(6).sql(path, doing)?,
        },
    ))
}

/// Parses an enumeration string read from the file; an unknown one names where it is.
fn parse<T>(
    path: &Path,
    table: &'static str,
    at: &str,
    what: &'static str,
    value: &str,
    f: fn(&str) -> Option<T>,
) -> Result<T, JournalError> {
    f(value).ok_or_else(|| JournalError::UnknownValue {
        path: path.to_path_buf(),
        table,
        at: at.to_owned(),
        what,
        value: value.to_owned(),
    })
}
