//! The gateway's own health: counters every stage bumps, the reasons input is rejected, and a
//! rate limiter for the log lines bad input causes. The store sink writes these as the
//! `gateway` measurement every `gateway.stats_interval` (DESIGN §5).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a message, or one signal of it, was rejected. The string form is the log `reason`
/// and the `gateway` field name (`rejected_<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The payload is not JSON (whole message dropped).
    InvalidJson,
    /// The payload is JSON but not an object of signals (whole message dropped).
    NotObject,
    /// A signal's value has the wrong type for its profile (that signal dropped).
    WrongType,
    /// A signal's value is NaN or ±Infinity (that signal dropped).
    NonFinite,
    /// A key that is not a signal of the device's profile (that signal dropped).
    UnknownSignal,
    /// The topic names a device not in the inventory (whole message dropped).
    UnknownDevice,
    /// The topic's category differs from the device's (whole message dropped).
    CategoryMismatch,
    /// The payload exceeds `mqtt.max_payload_bytes` (whole message dropped).
    Oversize,
    /// `ts` is not a positive integer of unix milliseconds (whole message dropped).
    BadTimestamp,
    /// `ts` is more than `ingest.max_clock_skew` ahead of the gateway clock (whole message).
    FutureTimestamp,
    /// `ts` is older than `ingest.max_reading_age` (whole message dropped).
    StaleTimestamp,
    /// A status payload other than `online` / `offline` (whole message dropped).
    BadStatus,
}

impl Reject {
    pub const ALL: [Reject; 12] = [
        Reject::InvalidJson,
        Reject::NotObject,
        Reject::WrongType,
        Reject::NonFinite,
        Reject::UnknownSignal,
        Reject::UnknownDevice,
        Reject::CategoryMismatch,
        Reject::Oversize,
        Reject::BadTimestamp,
        Reject::FutureTimestamp,
        Reject::StaleTimestamp,
        Reject::BadStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::InvalidJson => "invalid_json",
            Reject::NotObject => "not_object",
            Reject::WrongType => "wrong_type",
            Reject::NonFinite => "non_finite",
            Reject::UnknownSignal => "unknown_signal",
            Reject::UnknownDevice => "unknown_device",
            Reject::CategoryMismatch => "category_mismatch",
            Reject::Oversize => "oversize",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::FutureTimestamp => "future_timestamp",
            Reject::StaleTimestamp => "stale_timestamp",
            Reject::BadStatus => "bad_status",
        }
    }

    fn index(self) -> usize {
        Reject::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Counters shared by all tasks (`Arc<Stats>`). All are totals since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// MQTT messages received on our topics.
    pub messages: AtomicU64,
    /// Readings accepted (a message with at least one valid signal, or a status).
    pub readings: AtomicU64,
    /// Rejections per reason (a message with two bad signals counts two).
    rejected: [AtomicU64; Reject::ALL.len()],
    /// String values whose control characters were replaced.
    pub sanitised: AtomicU64,
    /// MQTT connection losses.
    pub mqtt_disconnects: AtomicU64,
    /// Lines the store accepted.
    pub store_lines: AtomicU64,
    /// Lines dropped because the in-memory queue was full or the store refused them.
    pub store_dropped: AtomicU64,
    /// Failed write attempts (each retry counts).
    pub store_errors: AtomicU64,
    /// Lines waiting for the store right now (gauge).
    pub store_queue_lines: AtomicU64,
}

impl Stats {
    pub fn reject(&self, r: Reject) {
        self.rejected[r.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, r: Reject) -> u64 {
        self.rejected[r.index()].load(Relaxed)
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Lets through at most `burst` log lines per reason per window, then counts the rest and
/// reports how many were suppressed with the next line let through. Clock-free: the caller
/// passes the time.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window_ms: i64,
    slots: [(i64, u32, u64); Reject::ALL.len()],
}

impl LogLimiter {
    pub fn new(burst: u32, window_ms: i64) -> Self {
        LogLimiter {
            burst,
            window_ms: window_ms.max(1),
            slots: [(i64::MIN, 0, 0); Reject::ALL.len()],
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed before it
    /// in earlier windows; `None` when this one must only be counted.
    pub fn allow(&mut self, r: Reject, now_ms: i64) -> Option<u64> {
        let (start, count, suppressed) = &mut self.slots[r.index()];
        if *start == i64::MIN || now_ms - *start >= self.window_ms {
            *start = now_ms;
            *count = 0;
        }
        if *count < self.burst {
            *count += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_distinct_names() {
        let mut names: Vec<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reject::ALL.len());
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn limiter_lets_a_burst_through_per_window_and_reports_suppressed() {
        let mut l = LogLimiter::new(2, 1000);
        let r = Reject::InvalidJson;
        assert_eq!(l.allow(r, 0), Some(0));
        assert_eq!(l.allow(r, 10), Some(0));
        assert_eq!(l.allow(r, 20), None);
        assert_eq!(l.allow(r, 999), None);
        // Another reason has its own budget.
        assert_eq!(l.allow(Reject::Oversize, 30), Some(0));
        // A new window: the first line carries the count of suppressed ones.
        assert_eq!(l.allow(r, 1000), Some(2));
        assert_eq!(l.allow(r, 1001), Some(0));
        assert_eq!(l.allow(r, 1002), None);
    }

    #[test]
    fn counters_count_per_reason() {
        let s = Stats::default();
        s.reject(Reject::WrongType);
        s.reject(Reject::WrongType);
        s.reject(Reject::Oversize);
        assert_eq!(s.rejected(Reject::WrongType), 2);
        assert_eq!(s.rejected(Reject::Oversize), 1);
        assert_eq!(s.rejected(Reject::InvalidJson), 0);
        assert_eq!(s.rejected_total(), 3);
    }
}
