//! The heating figures' facts (DESIGN §4): an indoor sensor's compliance changes and each
//! device's hourly statistics of its `hourly` signals, both in event time. An hour is always
//! emitted whole (the journal row is replaced): it closes when a reading of a later hour
//! arrives or when its end is concluded, and a restart in the middle of an hour goes on with
//! the hour kept in its device's progress, so the sums are the same bit for bit.

use super::{Engine, Hour, HOUR_MS};
use crate::model::event::{ComplianceChange, Event, HourlyStats};
use crate::model::{DeviceIdx, Value};

impl Engine {
    /// Emits a compliance change when an indoor temperature crosses the minimum.
    pub(super) fn compliance(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        values: &[(u16, Value)],
        out: &mut Vec<Event>,
    ) {
        let min = self.settings.heating(&self.inventory.get(device).site).1;
        let dev = &mut self.devs[device as usize];
        let Some(c) = &mut dev.compliance else {
            return;
        };
        let Some((_, v)) = values.iter().find(|(i, _)| *i == c.signal) else {
            return;
        };
        let ok = match v {
            Value::Float(x) => Some(*x >= min),
            Value::Int(x) => Some(*x as f64 >= min),
            _ => None,
        };
        if ok != c.current {
            c.current = ok;
            out.push(Event::Compliance(ComplianceChange {
                device,
                ts_ms,
                compliant: ok,
            }));
        }
    }

    /// Adds the reading's `hourly` signals to the device's hour; a reading in a later hour
    /// closes the current one. (Readings come in `ts` order, so never for an earlier hour.)
    pub(super) fn hourly(
        &mut self,
        device: DeviceIdx,
        ts_ms: i64,
        values: &[(u16, Value)],
        out: &mut Vec<Event>,
    ) {
        let hourly = &self.inventory.get(device).profile.hourly;
        if hourly.is_empty() {
            return;
        }
        let hour_ms = ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let empty = || vec![(0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY); hourly.len()];
        let dev = &mut self.devs[device as usize];
        let target = match &mut dev.hour {
            Some(h) if h.hour_ms == hour_ms => h,
            cur => {
                if let Some(h) = cur.take() {
                    out.push(hourly_event(device, hourly, &h));
                }
                cur.insert(Hour {
                    hour_ms,
                    acc: empty(),
                })
            }
        };
        for (k, sig) in hourly.iter().enumerate() {
            if let Some((_, Value::Float(x))) = values.iter().find(|(i, _)| i == sig) {
                let a = &mut target.acc[k];
                a.0 += 1;
                a.1 += x;
                a.2 = a.2.min(*x);
                a.3 = a.3.max(*x);
            }
        }
    }

    /// Emits every device's open hour as it stands (at shutdown, so nothing is lost); the
    /// hour stays open (its device's progress keeps it) and a restart goes on with it.
    pub fn flush_hours(&mut self, out: &mut Vec<Event>) {
        for (i, dev) in self.devs.iter_mut().enumerate() {
            if let Some(h) = &dev.hour {
                let hourly = &self.inventory.get(i as DeviceIdx).profile.hourly;
                out.push(hourly_event(i as DeviceIdx, hourly, h));
                dev.dirty = true;
            }
        }
    }

    /// Closes the device's open hour once the gateway may conclude its end (no reading of
    /// the device for the remaining time plus `max_lateness`, like a timer): the hour is
    /// journaled whole, and a reading of it that still arrives is `late`.
    pub(super) fn close_hour_if_concluded(
        &mut self,
        device: DeviceIdx,
        concluded: i64,
        out: &mut Vec<Event>,
    ) {
        let dev = &mut self.devs[device as usize];
        let Some(end) = dev.hour.as_ref().map(|h| h.hour_ms + HOUR_MS) else {
            return;
        };
        if end > concluded {
            return;
        }
        if let Some(h) = dev.hour.take() {
            let hourly = &self.inventory.get(device).profile.hourly;
            out.push(hourly_event(device, hourly, &h));
            dev.applied_ms = dev.applied_ms.max(end);
            dev.dirty = true;
        }
    }
}

fn hourly_event(device: DeviceIdx, hourly: &[u16], h: &Hour) -> Event {
    Event::Hourly(HourlyStats {
        device,
        hour_ms: h.hour_ms,
        signals: hourly
            .iter()
            .zip(&h.acc)
            .filter(|(_, a)| a.0 > 0)
            .map(|(s, a)| (*s, a.0, a.1, a.2, a.3))
            .collect(),
    })
}
