//! What the core stage writes: events (`append`, one transaction per batch), each device's
//! event-time position (`save_progress`) and the runs of the gateway (`begin_run`, `alive`,
//! `end_run`).

use std::io::Write as _;

use rusqlite::{params, TransactionBehavior};
use tracing::warn;

use super::error::{JournalError, SqlContext};
use super::Journal;
use crate::model::event::{DeviceState, Event};
use crate::model::restore::DeviceProgress;
use crate::model::{Device, DeviceIdx, Inventory, Value};

impl Journal {
    /// Keeps each device's event-time position, values and pending delays (one transaction):
    /// a restart goes on from there (`restore`).
    pub fn save_progress(
        &mut self,
        inventory: &Inventory,
        progress: &[DeviceProgress],
    ) -> Result<(), JournalError> {
        if progress.is_empty() {
            return Ok(());
        }
        self.commit(inventory, &[], progress, None)
    }

    /// Events, the devices' positions and the engine's position in the input log, in one
    /// transaction (all or nothing): after a crash the journal is exactly what the engine made
    /// of the facts up to `position`, and the log replays the rest once (DESIGN §6).
    pub fn commit(
        &mut self,
        inventory: &Inventory,
        events: &[Event],
        progress: &[DeviceProgress],
        position: Option<u64>,
    ) -> Result<(), JournalError> {
        if events.is_empty() && progress.is_empty() && position.is_none() {
            return Ok(());
        }
        let doing = "appending to the journal";
        self.writable(doing)?;
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(path, doing)?;
        if !events.is_empty() {
            write_events(&tx, path, doing, inventory, events)?;
        }
        if !progress.is_empty() {
            write_progress(&tx, path, doing, inventory, progress)?;
        }
        if let Some(lsn) = position {
            tx.prepare_cached(
                "INSERT INTO consumers (name, lsn) VALUES ('engine', ?1) \
                 ON CONFLICT (name) DO UPDATE SET lsn = excluded.lsn",
            )
            .and_then(|mut st| st.execute(params![lsn as i64]))
            .sql(path, doing)?;
        }
        tx.commit().sql(path, doing)?;
        Ok(())
    }

    /// The engine's committed position in the input log: every fact below it is in the
    /// journal (0: none yet).
    pub fn engine_position(&self) -> Result<u64, JournalError> {
        let doing = "reading the engine's position in the input log";
        let v: Option<i64> = self
            .conn
            .query_row("SELECT lsn FROM consumers WHERE name = 'engine'", [], |r| {
                r.get(0)
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .sql(&self.path, doing)?;
        Ok(v.map_or(0, |v| v.max(0) as u64))
    }

    /// Records the start of a run (host and version strings for the record); `alive` and
    /// `end_run` then refer to it.
    pub fn begin_run(
        &mut self,
        now_ms: i64,
        host: &str,
        version: &str,
    ) -> Result<(), JournalError> {
        // Pending until it is recorded: on a full disk the next `alive` (or `end_run`) that
        // can write records it.
        self.pending_run = Some(super::PendingRun {
            started_ms: now_ms,
            host: host.to_owned(),
            version: version.to_owned(),
        });
        self.writable("recording the start of a run")
    }

    pub(super) fn insert_run(&mut self, run: &super::PendingRun) -> Result<(), JournalError> {
        self.conn
            .execute(
                "INSERT INTO runs (started_ms, alive_ms, stopped_ms, host, version) \
                 VALUES (?1, ?1, NULL, ?2, ?3)",
                params![run.started_ms, run.host, run.version],
            )
            .sql(&self.path, "recording the start of a run")?;
        self.run_id = Some(self.conn.last_insert_rowid());
        Ok(())
    }

    /// Updates the current run's alive time (called every few seconds): after a crash, the
    /// gateway counts as down from the last alive time.
    pub fn alive(&mut self, now_ms: i64) -> Result<(), JournalError> {
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
    pub fn end_run(&mut self, now_ms: i64) -> Result<(), JournalError> {
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
    /// early end rewrites `end_ms`); `Event::Escalation` → a row in `escalations` (a step
    /// already there is kept as it was). Devices are `inventory` indexes; their strings are
    /// stored.
    pub fn append(&mut self, inventory: &Inventory, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        self.commit(inventory, events, &[], None)
    }
}

fn write_events(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    doing: &str,
    inventory: &Inventory,
    events: &[Event],
) -> Result<(), JournalError> {
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
                 on_site_by, cleared_ms, ack_target_ms, on_site_target_ms, \
                 repair_target_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18, ?19) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, site = excluded.site, \
                 device = excluded.device, building = excluded.building, \
                 category = excluded.category, rule = excluded.rule, \
                 severity = excluded.severity, class = excluded.class, \
                 message = excluded.message, raised_ms = excluded.raised_ms, \
                 ack_ms = excluded.ack_ms, ack_by = excluded.ack_by, \
                 on_site_ms = excluded.on_site_ms, on_site_by = excluded.on_site_by, \
                 cleared_ms = excluded.cleared_ms, ack_target_ms = excluded.ack_target_ms, \
                 on_site_target_ms = excluded.on_site_target_ms, \
                 repair_target_ms = excluded.repair_target_ms",
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
        let mut escalation = tx
            .prepare_cached(
                "INSERT INTO escalations (alarm_id, step, site, device, building, category, \
                 class, ts_ms, due_ms, until, notify, message) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (alarm_id, step) DO NOTHING",
            )
            .sql(path, doing)?;
        for event in events {
            match event {
                Event::Escalation(e) => {
                    let (a, x) = (&e.alarm, &e.escalation);
                    let d = device(inventory, a.device)?;
                    escalation
                        .execute(params![
                            a.id,
                            x.step,
                            d.site,
                            d.id,
                            d.building,
                            d.category,
                            a.class,
                            x.ts_ms,
                            x.due_ms,
                            x.until.as_str(),
                            x.notify.to_string(),
                            x.message,
                        ])
                        .sql(path, doing)?;
                }
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
                                d.site, d.id, d.building, d.category, name, h.hour_ms, *n as i64,
                                sum, min, max
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
                            a.repair_target_ms,
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
    Ok(())
}

fn write_progress(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    doing: &str,
    inventory: &Inventory,
    progress: &[DeviceProgress],
) -> Result<(), JournalError> {
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
    Ok(())
}

/// A device's pending delays and open hour as JSON: `{"h": [hour_ms, [[n, sum, min, max], …]],
/// "p": [since or null, …]}` (min and max of an empty signal as null). Written straight into
/// the string (a row per reporting device at every commit: no `serde_json::Value` trees);
/// `restore::decode_pending` reads it back.
fn encode_pending(p: &DeviceProgress) -> String {
    let mut out = Vec::with_capacity(32 + 48 * p.hour.as_ref().map_or(0, |(_, a)| a.len()));
    out.extend_from_slice(b"{\"h\":");
    match &p.hour {
        None => out.extend_from_slice(b"null"),
        Some((h, acc)) => {
            let _ = write!(out, "[{h},[");
            for (i, &(n, sum, min, max)) in acc.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "[{n},");
                // serde_json writes a non-finite f64 as null.
                let _ = serde_json::to_writer(&mut out, &sum);
                out.push(b',');
                let _ = serde_json::to_writer(&mut out, &min);
                out.push(b',');
                let _ = serde_json::to_writer(&mut out, &max);
                out.push(b']');
            }
            out.extend_from_slice(b"]]");
        }
    }
    out.extend_from_slice(b",\"p\":");
    let _ = serde_json::to_writer(&mut out, &p.pending);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// Signal values as JSON: `null` or `["f", 1.5]`, `["i", 3]`, `["b", true]`, `["s", "x"]`.
fn encode_values(values: &[Option<Value>]) -> String {
    let mut out = Vec::with_capacity(2 + 16 * values.len());
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = match v {
            None => serde_json::to_writer(&mut out, &()),
            Some(Value::Float(x)) => serde_json::to_writer(&mut out, &("f", x)),
            Some(Value::Int(x)) => serde_json::to_writer(&mut out, &("i", x)),
            Some(Value::Bool(x)) => serde_json::to_writer(&mut out, &("b", x)),
            Some(Value::Str(x)) => serde_json::to_writer(&mut out, &("s", x)),
        };
    }
    out.push(b']');
    String::from_utf8(out).unwrap_or_default()
}

/// The sequence number of an id: its trailing digits (`jinxiu-42` → 42, `jinxiu-M7` → 7).
/// `None` (stored as NULL, with a warning) for an id without one; it then takes no part in
/// the next sequence.
pub(super) fn seq_of(id: &str, what: &str) -> Option<i64> {
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

fn device(inventory: &Inventory, idx: DeviceIdx) -> Result<&Device, JournalError> {
    inventory
        .devices()
        .get(idx as usize)
        .ok_or_else(|| JournalError::UnknownDevice {
            idx,
            devices: inventory.len(),
        })
}

#[cfg(test)]
mod encode_tests {
    use super::*;

    /// The encoders as they were (through `serde_json::Value`), the reference for the text.
    fn pending_by_value(p: &DeviceProgress) -> String {
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

    fn values_by_value(values: &[Option<Value>]) -> String {
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

    #[test]
    fn progress_text_is_what_the_value_based_encoders_wrote() {
        let cases = [
            DeviceProgress::default(),
            DeviceProgress {
                values: vec![
                    None,
                    Some(Value::Float(55.25)),
                    Some(Value::Float(1e21)),
                    Some(Value::Float(-0.0)),
                    Some(Value::Int(-7)),
                    Some(Value::Bool(true)),
                    Some(Value::Str("a \"q\" \\ 中\n".into())),
                ],
                pending: vec![None, Some(1_795_400_000_123), Some(-1)],
                hour: Some((
                    1_795_399_200_000,
                    vec![
                        (0, 0.0, f64::INFINITY, f64::NEG_INFINITY),
                        (3, 61.5, 19.5, 21.25),
                        (u64::MAX, 1e-7, -3.0, 2.0),
                    ],
                )),
                ..DeviceProgress::default()
            },
            DeviceProgress {
                hour: Some((5, Vec::new())),
                ..DeviceProgress::default()
            },
        ];
        for p in &cases {
            assert_eq!(encode_pending(p), pending_by_value(p));
            assert_eq!(encode_values(&p.values), values_by_value(&p.values));
        }
    }
}
