//! Event time (DESIGN §4): readings applied per device in `ts` order, the device's timers
//! (heartbeat, rule delays, window and season boundaries) fired at exactly their own time,
//! and the gateway clock used only to conclude that a moment has passed.

use super::{Dev, Engine};
use crate::model::event::{Event, Reason};
use crate::model::{DeviceIdx, Status, Value};

/// What became of a reading (the stage counts the last two; the store gets all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied in `ts` order.
    Applied,
    /// Older than a reading already applied for the same device: changes no state
    /// (`out_of_order`).
    OutOfOrder,
    /// Not older than the device's last reading, but the gateway had already concluded a
    /// later moment of the device (a timeout, delay or window boundary): changes no state, the
    /// journal is never rewritten (`late`).
    Late,
}

/// A device's timer: what happens at an event time when no earlier fact cancels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// A maintenance window starts or ends.
    Window,
    /// The heating season starts or ends (devices with seasonal rules).
    Season,
    /// The heartbeat timeout runs out (for a device never heard from: its first state is
    /// then decided — offline since it entered the inventory).
    Heartbeat,
    /// A rule's `delay` runs out.
    Delay,
}

impl Engine {
    /// Applies one reading of `device` with event time `ts_ms`, arrived at gateway time
    /// `now_ms`. Timers of the device before `ts_ms` fire first, each at its own time.
    pub fn on_reading(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        values: &[(u16, Value)],
        status: Option<Status>,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> Applied {
        let Some(dev) = self.devs.get(device as usize) else {
            return Applied::Late;
        };
        if dev.last_ts.is_some_and(|l| ts_ms < l) {
            return Applied::OutOfOrder;
        }
        if dev.started && ts_ms < dev.applied_ms {
            return Applied::Late;
        }
        self.advance(device, ts_ms, false, out);
        self.start_before(device, ts_ms, out);
        let dev = &mut self.devs[device as usize];
        dev.anchor = (ts_ms, now_ms);
        dev.applied_ms = dev.applied_ms.max(ts_ms);
        dev.dirty = true;
        let reason = match status {
            Some(Status::Offline) => {
                dev.status_offline = true;
                Reason::Status
            }
            _ => {
                dev.status_offline = false;
                dev.heartbeat_expired = false;
                dev.live = true;
                dev.last_ts = Some(ts_ms);
                for (i, v) in values {
                    if let Some(slot) = dev.values.get_mut(*i as usize) {
                        *slot = Some(v.clone());
                    }
                }
                if values.is_empty() {
                    Reason::Status
                } else {
                    Reason::Reading
                }
            }
        };
        if !values.is_empty() {
            self.recompute_conditions(device, ts_ms);
            self.compliance(device, ts_ms, values, out);
            self.hourly(device, ts_ms, values, out);
        }
        self.update(device, ts_ms, reason, out);
        Applied::Applied
    }

    /// Lets the gateway clock pass: every device's timers up to the moment the gateway may
    /// conclude for it (no reading for the remaining time plus `max_lateness`) fire at their
    /// own event times; also closes hours whose end is concluded and drops cleared alarms past
    /// retention.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        let lateness = self.settings.max_lateness_ms;
        for i in 0..self.devs.len() {
            let (ts, wall) = self.devs[i].anchor;
            let concluded = ts.saturating_add(now_ms.saturating_sub(wall)) - lateness;
            self.advance(i as DeviceIdx, concluded, true, out);
            self.close_hour_if_concluded(i as DeviceIdx, concluded, out);
        }
        // Retention of cleared alarms.
        let keep_after = now_ms - self.settings.retain_cleared_ms;
        self.alarms
            .retain(|_, a| a.cleared_ms.is_none_or(|c| c >= keep_after));
    }

    /// Brings a device up to just before `ts_ms`: its timers before then fire (a replayed
    /// acknowledgment at `ts_ms` finds the alarm its timers raised by then).
    pub fn catch_up(&mut self, device: DeviceIdx, ts_ms: i64, out: &mut Vec<Event>) {
        if (device as usize) < self.devs.len() {
            self.advance(device, ts_ms, false, out);
        }
    }

    /// Concludes every device up to and including `until_ms` (the end of a replay: what a
    /// live gateway concludes once that moment has passed).
    pub fn conclude_all(&mut self, until_ms: i64, out: &mut Vec<Event>) {
        for i in 0..self.devs.len() {
            self.advance(i as DeviceIdx, until_ms, true, out);
        }
    }

    /// Fires the device's timers up to `limit` in time order: those before it, and those at
    /// it when `inclusive` (a conclusion) — a rule's delay at exactly `limit` fires either
    /// way (only a reading with an *earlier* `ts` cancels it), a heartbeat at exactly a
    /// reading's `ts` does not (that reading is not older than the timeout).
    pub(super) fn advance(
        &mut self,
        device: DeviceIdx,
        limit: i64,
        inclusive: bool,
        out: &mut Vec<Event>,
    ) {
        // Each firing moves a timer past `t` or removes it; the bound only guards against a
        // bug turning into a hang.
        for _ in 0..10_000 {
            let Some((t, due)) = self.next_due(device) else {
                return;
            };
            let fire = t < limit || (t == limit && (inclusive || due == Due::Delay));
            if !fire {
                return;
            }
            self.fire(device, t, due, out);
        }
    }

    /// The device's earliest timer.
    fn next_due(&self, device: DeviceIdx) -> Option<(i64, Due)> {
        let dev = &self.devs[device as usize];
        let d = self.inventory.get(device);
        let mut best: Option<(i64, Due)> = None;
        let mut consider = |t: i64, due: Due| {
            if best.is_none_or(|b| (t, due) < b) {
                best = Some((t, due));
            }
        };
        if let Some(t) = heartbeat_due(dev, d.polled, d.heartbeat_timeout) {
            consider(t, Due::Heartbeat);
        }
        for w in self.windows.iter().filter(|w| w.w.device == device) {
            if !w.started {
                consider(w.start_at, Due::Window);
            } else if !w.ended {
                consider(w.w.end_ms.max(w.start_at), Due::Window);
            }
        }
        if dev.started {
            if let Some(t) = dev.next_season {
                consider(t, Due::Season);
            }
            for (ri, rs) in dev.rules.iter().enumerate() {
                if let (Some(since), Some(rule)) = (rs.pending_since, d.rules.alarms.get(ri)) {
                    if rs.active.is_none() {
                        consider(since.saturating_add(rule.delay_ms), Due::Delay);
                    }
                }
            }
        }
        best
    }

    fn fire(&mut self, device: DeviceIdx, t: i64, due: Due, out: &mut Vec<Event>) {
        {
            let dev = &mut self.devs[device as usize];
            dev.applied_ms = dev.applied_ms.max(t);
            dev.dirty = true;
        }
        match due {
            Due::Heartbeat => {
                self.start_before(device, t, out);
                self.devs[device as usize].heartbeat_expired = true;
                self.update(device, t, Reason::Heartbeat, out);
            }
            Due::Window => {
                for w in self.windows.iter_mut().filter(|w| w.w.device == device) {
                    if !w.started && w.start_at <= t {
                        w.started = true;
                    }
                    if w.started && !w.ended && w.w.end_ms.max(w.start_at) <= t {
                        w.ended = true;
                    }
                }
                self.start_before(device, t, out);
                if self.devs[device as usize].started {
                    self.update(device, t, Reason::Window, out);
                }
                self.windows.retain(|w| !w.ended);
            }
            Due::Season => {
                if self.devs[device as usize]
                    .values
                    .iter()
                    .any(Option::is_some)
                {
                    self.recompute_conditions(device, t);
                }
                self.update(device, t, Reason::Season, out);
                self.devs[device as usize].next_season = self.next_season_after(device, t);
            }
            Due::Delay => {
                self.evaluate_rules(device, t, true, out);
                // A delay that could not complete (its signal has no value) is dropped
                // rather than fired again at the same moment.
                let d = self.inventory.get(device).clone();
                for (ri, rs) in self.devs[device as usize].rules.iter_mut().enumerate() {
                    let delay = d.rules.alarms.get(ri).map_or(0, |r| r.delay_ms);
                    if rs
                        .pending_since
                        .is_some_and(|s| s.saturating_add(delay) <= t)
                    {
                        rs.pending_since = None;
                    }
                }
            }
        }
    }

    /// A device never heard from whose entry into the inventory lies before `t` (the moment a
    /// reading or timer of it is applied) gets its first state first: offline from that entry
    /// (reason `start`). One that entered later begins with what happens at `t`.
    fn start_before(&mut self, device: DeviceIdx, t: i64, out: &mut Vec<Event>) {
        let dev = &self.devs[device as usize];
        if !dev.started && dev.entered_ms < t {
            let entered = dev.entered_ms;
            self.update(device, entered, Reason::Start, out);
        }
    }

    /// The next season boundary after `after_ms` for a device with seasonal rules.
    pub(super) fn next_season_after(&self, device: DeviceIdx, after_ms: i64) -> Option<i64> {
        let dev = &self.devs[device as usize];
        if !dev.seasonal || after_ms == i64::MIN {
            return None;
        }
        self.settings
            .heating(&self.inventory.get(device).site)
            .0
            .next_boundary(after_ms)
    }
}

/// When the device's heartbeat runs out: `last ts + heartbeat_timeout` (for a device never
/// heard from, counted from when it entered the inventory). Modbus devices are declared
/// offline by the poller once it polls them; until their first reading of this run (after a
/// restart) the same heartbeat rule covers the time nobody polled them.
fn heartbeat_due(dev: &Dev, modbus: bool, timeout: std::time::Duration) -> Option<i64> {
    if dev.heartbeat_expired || dev.status_offline || (modbus && dev.live) {
        return None;
    }
    let base = dev.last_ts.unwrap_or(dev.entered_ms);
    Some(base.saturating_add(timeout.as_millis() as i64))
}
