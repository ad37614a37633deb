//! `Journal::restore`: what the engine needs at start (states, alarms, windows, device
//! positions, sequences), from one read snapshot of the journal.

use std::path::Path;

use rusqlite::Connection;
use tracing::warn;

use super::error::{JournalError, SqlContext};
use super::queries::{
    alarm_record, escalation_record, last_transitions, ALARM_COLUMNS, ESCALATION_COLUMNS,
    WINDOW_COLUMNS,
};
use super::Journal;
use crate::model::escalation::Escalation;
use crate::model::event::{Alarm, MaintenanceWindow};
use crate::model::restore::{DeviceProgress, Restored, RestoredState};
use crate::model::{Inventory, Value};

impl Journal {
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
    ) -> Result<Restored, JournalError> {
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
                        repair_target_ms: r.repair_target_ms,
                        escalations: Vec::new(),
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
}

impl Journal {
    /// The escalation steps fired for the alarms `restore` brings back (active, or cleared at
    /// or after `now_ms - retain_cleared_ms`), as (alarm id, step), by alarm and step: the
    /// core stage sends none of them again.
    pub fn restore_escalations(
        &self,
        now_ms: i64,
        retain_cleared_ms: i64,
    ) -> Result<Vec<(String, Escalation)>, JournalError> {
        let path = &self.path;
        let doing = "restoring escalations from the journal";
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations e JOIN alarms a ON a.id = e.alarm_id \
                 WHERE a.cleared_ms IS NULL OR a.cleared_ms >= ?1 ORDER BY e.alarm_id, e.step"
            ))
            .sql(path, doing)?;
        let mut rows = stmt
            .query([now_ms.saturating_sub(retain_cleared_ms)])
            .sql(path, doing)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().sql(path, doing)? {
            out.push(escalation_record(row, path)?);
        }
        Ok(out)
    }
}

/// How far back (gateway clock) `restore` looks for maintenance windows that may still be
/// ahead of their device's position: `ingest.max_reading_age`'s default and a day.
pub(super) const WINDOW_RESTORE_MS: i64 = 8 * 86_400_000;

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

/// `MAX(seq) + 1` of `table` (1 when empty).
fn next_seq(conn: &Connection, path: &Path, table: &'static str) -> Result<u64, JournalError> {
    let doing = format!("reading the highest sequence of {table}");
    let max: Option<i64> = conn
        .query_row(&format!("SELECT MAX(seq) FROM {table}"), [], |r| r.get(0))
        .sql(path, &doing)?;
    let max = u64::try_from(max.unwrap_or(0)).map_err(|_| JournalError::NegativeSequence {
        path: path.to_path_buf(),
        table,
        max,
    })?;
    Ok(max.saturating_add(1))
}
