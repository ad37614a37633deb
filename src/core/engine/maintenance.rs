//! Maintenance windows (DESIGN §3, §4): planned in the configuration or entered by operators,
//! applied at exactly their start and end in event time. A window entered after its start
//! (年检 and repairs are often recorded afterwards) is kept whole in the journal with who
//! entered it and when; the transitions begin where its device stood when it was entered
//! (the journal's past is never rewritten) and reports count the whole window.

use super::{Engine, PlannedMaintenance, Win};
use crate::model::event::{CommandError, Event, MaintenanceWindow};
use crate::model::DeviceIdx;

impl Engine {
    pub(super) fn in_window(&self, device: DeviceIdx, ts_ms: i64) -> bool {
        self.windows
            .iter()
            .any(|w| w.w.device == device && w.w.start_ms <= ts_ms && ts_ms < w.w.end_ms)
    }

    /// A window the journal kept: applied from where its device stands.
    pub(super) fn restore_window(&mut self, w: MaintenanceWindow) {
        let Some(dev) = self.devs.get_mut(w.device as usize) else {
            return;
        };
        let pos = dev.applied_ms;
        if dev.started && w.end_ms <= pos {
            return;
        }
        let started = dev.started && w.start_ms <= pos;
        if started && dev.values.iter().all(Option::is_none) {
            // A journaled "maintenance" state that this window explains, not a signal.
            dev.signal_maintenance = false;
        }
        self.windows.push(Win {
            start_at: w.start_ms,
            w,
            started,
            ended: false,
        });
    }

    /// A window of the configuration (`[[maintenance]]`), added once: its id names the site,
    /// the device and the start.
    pub(super) fn add_planned(
        &mut self,
        p: &PlannedMaintenance,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) {
        if (p.device as usize) >= self.devs.len() {
            return;
        }
        let d = self.inventory.get(p.device);
        let id = format!("config:{}:{}:{}", d.site, d.id, p.start_ms);
        if self.windows.iter().any(|w| w.w.id == id) || p.end_ms <= self.position(p.device) {
            return;
        }
        let w = MaintenanceWindow {
            id,
            device: p.device,
            start_ms: p.start_ms,
            end_ms: p.end_ms,
            reason: p.reason.clone(),
            by: "config".into(),
            entered_ms: now_ms,
        };
        out.push(Event::Maintenance(w.clone()));
        self.push_window(w);
    }

    /// Where a device stands in event time (before its first state: nowhere yet).
    fn position(&self, device: DeviceIdx) -> i64 {
        let dev = &self.devs[device as usize];
        if dev.started {
            dev.applied_ms
        } else {
            i64::MIN
        }
    }

    /// Keeps a window that has not ended where its device stands; applied from its start, or
    /// from that position when it began before (the moment returned).
    fn push_window(&mut self, w: MaintenanceWindow) -> Option<i64> {
        let pos = self.position(w.device);
        if w.end_ms <= pos {
            return None;
        }
        let start_at = w.start_ms.max(pos);
        self.windows.push(Win {
            start_at,
            w,
            started: false,
            ended: false,
        });
        Some(start_at)
    }

    /// Adds an operator-entered maintenance window `[start_ms, end_ms)` for a device, entered
    /// at `now_ms` by `by`. Windows in the past are accepted (recorded afterwards); a window
    /// that has begun applies at once from where its device stands.
    #[allow(clippy::too_many_arguments)] // one argument per field of the API's request
    pub fn add_maintenance(
        &mut self,
        device: DeviceIdx,
        start_ms: i64,
        end_ms: i64,
        reason: &str,
        by: &str,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<MaintenanceWindow, CommandError> {
        if (device as usize) >= self.devs.len() {
            return Err(CommandError::UnknownDevice(device.to_string()));
        }
        if end_ms <= start_ms {
            return Err(CommandError::Invalid(format!(
                "`end` ({end_ms}) must be after `start` ({start_ms})"
            )));
        }
        if reason.trim().is_empty() || by.trim().is_empty() {
            return Err(CommandError::Invalid(
                "`reason` and `by` must not be empty".into(),
            ));
        }
        let w = MaintenanceWindow {
            id: format!("{}-M{}", self.settings.site, self.next_window_seq),
            device,
            start_ms,
            end_ms,
            reason: reason.to_owned(),
            by: by.to_owned(),
            entered_ms: now_ms,
        };
        self.next_window_seq += 1;
        out.push(Event::Maintenance(w.clone()));
        if let Some(at) = self.push_window(w.clone()).filter(|_| start_ms <= now_ms) {
            // Begun already: in force from now on (or from where the device stands).
            self.advance(device, at, true, out);
        }
        Ok(w)
    }

    /// Ends a window early (at `now_ms`, or where its device stands if that is later); one
    /// that has not started is cancelled (its end becomes its start).
    pub fn end_maintenance(
        &mut self,
        id: &str,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<MaintenanceWindow, CommandError> {
        let Some(i) = self.windows.iter().position(|w| w.w.id == id) else {
            return Err(CommandError::Invalid(format!(
                "no current or future maintenance window with id {id:?}"
            )));
        };
        let device = self.windows[i].w.device;
        let pos = self.position(device);
        let win = &mut self.windows[i];
        let begun = win.started || win.start_at <= now_ms;
        let end = if begun {
            now_ms.max(pos).max(win.start_at)
        } else {
            win.w.start_ms
        };
        win.w.end_ms = end;
        if !begun {
            win.started = true;
            win.ended = true;
        }
        let w = win.w.clone();
        out.push(Event::Maintenance(w.clone()));
        self.windows.retain(|x| !x.ended);
        if begun {
            self.advance(device, end, true, out);
        }
        Ok(w)
    }
}
