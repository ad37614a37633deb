//! The heating figures' facts (DESIGN §4): an indoor sensor's compliance changes and each
//! device's hourly statistics of its `hourly` signals, both in event time. An hour is always
//! emitted whole (the journal row is replaced), so a restart in the middle of an hour, which
//! goes on with the hour kept in its device's progress, gives the same sums bit for bit.

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
    /// closes the current one.
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
        if dev.hour.as_ref().is_none_or(|h| h.hour_ms != hour_ms)
            && dev
                .closed_hour
                .as_ref()
                .is_some_and(|h| h.hour_ms == hour_ms)
        {
            // An hour the gateway clock had closed gets one more reading: it goes on from
            // what it had (the journal row is replaced by the whole hour again).
            if let Some(h) = dev.hour.take() {
                out.push(hourly_event(device, hourly, &h));
            }
            dev.hour = dev.closed_hour.take();
        }
        let mut late = None;
        let target = match &mut dev.hour {
            Some(h) if h.hour_ms == hour_ms => h,
            Some(h) if h.hour_ms > hour_ms => late.insert(Hour {
                hour_ms,
                acc: empty(),
            }),
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
        if let Some(h) = late {
            out.push(hourly_event(device, hourly, &h));
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

    /// Hours that ended over a minute ago (by the gateway clock) are complete enough; the
    /// journal adds up a later part of the same hour should one come.
    pub(super) fn close_old_hours(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        for (i, dev) in self.devs.iter_mut().enumerate() {
            if dev
                .hour
                .as_ref()
                .is_some_and(|h| h.hour_ms + HOUR_MS + 60_000 <= now_ms)
            {
                if let Some(h) = dev.hour.take() {
                    let hourly = &self.inventory.get(i as DeviceIdx).profile.hourly;
                    out.push(hourly_event(i as DeviceIdx, hourly, &h));
                    dev.closed_hour = Some(h);
                    dev.dirty = true;
                }
            }
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
