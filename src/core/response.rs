//! Response figures (DESIGN §4).
//!
//! For each alarm: response time = t_a − t_r, arrival time = t_o − t_r, restore time =
//! t_c − t_r (`Alarm::response_s`, `arrival_s`, `restore_s`).
//!
//! **Response timeliness (响应及时率)** over the alarms raised in a period [a, b), judged at b
//! (nothing that happened after b is seen, so a closed period's figure never changes):
//! - `timely`: acknowledged within its class's target (t_a − t_r ≤ target);
//! - `transient`: cleared before reaching its target age (t_c − t_r < target) before anyone
//!   acknowledged it (t_a > t_c or none) — excluded, counted apart, even when acknowledged
//!   afterwards;
//! - `late`: acknowledged after its target, or reached its target age unacknowledged;
//! - `pending`: still open at b, unacknowledged and younger than its target — excluded.
//!
//! timeliness = timely / (timely + late). Percentiles (p50, p90) use the nearest-rank method
//! over the response times of the timely and late alarms that were acknowledged by b.

use serde::Serialize;

/// What `classify` needs of an alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmTimes {
    pub raised_ms: i64,
    pub acknowledged_ms: Option<i64>,
    pub cleared_ms: Option<i64>,
    pub ack_target_ms: i64,
}

impl From<&crate::model::event::Alarm> for AlarmTimes {
    fn from(a: &crate::model::event::Alarm) -> AlarmTimes {
        AlarmTimes {
            raised_ms: a.raised_ms,
            acknowledged_ms: a.acknowledged.as_ref().map(|s| s.ts_ms),
            cleared_ms: a.cleared_ms,
            ack_target_ms: a.ack_target_ms,
        }
    }
}

/// How one alarm counts for response timeliness, judged at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timeliness {
    Timely,
    Late,
    Transient,
    Pending,
}

impl Timeliness {
    pub fn as_str(self) -> &'static str {
        match self {
            Timeliness::Timely => "timely",
            Timeliness::Late => "late",
            Timeliness::Transient => "transient",
            Timeliness::Pending => "pending",
        }
    }
}

/// Classifies an alarm as seen at `at_ms` (see the module docs).
pub fn classify(a: &AlarmTimes, at_ms: i64) -> Timeliness {
    let ack = a.acknowledged_ms.filter(|&t| t <= at_ms);
    let cleared = a.cleared_ms.filter(|&t| t <= at_ms);
    let target_at = a.raised_ms + a.ack_target_ms;
    // Cleared before its target age with nobody having acknowledged it by then: transient,
    // even if someone acknowledges it afterwards (DESIGN §4).
    if cleared.is_some_and(|c| c < target_at && ack.is_none_or(|t| t > c)) {
        return Timeliness::Transient;
    }
    if ack.is_some_and(|t| t <= target_at) {
        return Timeliness::Timely;
    }
    if ack.is_some() || at_ms >= target_at {
        return Timeliness::Late;
    }
    Timeliness::Pending
}

/// Response figures of a set of alarms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseSummary {
    /// timely + late: the alarms the rate is computed over.
    pub count: u64,
    pub timely: u64,
    pub late: u64,
    pub transient: u64,
    pub pending: u64,
    /// timely / count; `None` when count is 0.
    pub timely_rate: Option<f64>,
    /// Nearest-rank percentiles and maximum of response times (s) of counted, acknowledged alarms.
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub max_s: Option<f64>,
}

/// Summarises alarms as seen at `at_ms`.
pub fn summarize<'a>(
    alarms: impl IntoIterator<Item = &'a AlarmTimes>,
    at_ms: i64,
) -> ResponseSummary {
    let mut s = ResponseSummary::default();
    let mut times: Vec<i64> = Vec::new();
    for a in alarms {
        let c = classify(a, at_ms);
        match c {
            Timeliness::Timely => s.timely += 1,
            Timeliness::Late => s.late += 1,
            Timeliness::Transient => s.transient += 1,
            Timeliness::Pending => s.pending += 1,
        }
        if matches!(c, Timeliness::Timely | Timeliness::Late) {
            if let Some(t) = a.acknowledged_ms.filter(|&t| t <= at_ms) {
                times.push(t - a.raised_ms);
            }
        }
    }
    s.count = s.timely + s.late;
    s.timely_rate = (s.count > 0).then(|| s.timely as f64 / s.count as f64);
    times.sort_unstable();
    s.p50_s = nearest_rank(&times, 50).map(|ms| ms as f64 / 1000.0);
    s.p90_s = nearest_rank(&times, 90).map(|ms| ms as f64 / 1000.0);
    s.max_s = times.last().map(|&ms| ms as f64 / 1000.0);
    s
}

/// The nearest-rank percentile of sorted values: the value at rank ⌈p/100 · n⌉.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(p) * n).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 180_000;

    fn a(ack: Option<i64>, cleared: Option<i64>) -> AlarmTimes {
        AlarmTimes {
            raised_ms: 1_000_000,
            acknowledged_ms: ack.map(|d| 1_000_000 + d),
            cleared_ms: cleared.map(|d| 1_000_000 + d),
            ack_target_ms: T,
        }
    }

    #[test]
    fn classify_edges() {
        let end = 10_000_000;
        // Acknowledged exactly at the target: timely; one ms later: late.
        assert_eq!(classify(&a(Some(T), None), end), Timeliness::Timely);
        assert_eq!(classify(&a(Some(T + 1), None), end), Timeliness::Late);
        // Cleared one ms before the target age, unacknowledged: transient; at the target: late.
        assert_eq!(classify(&a(None, Some(T - 1)), end), Timeliness::Transient);
        assert_eq!(classify(&a(None, Some(T)), end), Timeliness::Late);
        // Cleared early, acknowledged afterwards but within the target: transient (DESIGN §4:
        // cleared before anyone acknowledged it, even if acknowledged afterwards; this was
        // `timely` before).
        assert_eq!(
            classify(&a(Some(T - 5), Some(10)), end),
            Timeliness::Transient
        );
        // Cleared early, acknowledged late: transient (it never reached its target age open).
        assert_eq!(
            classify(&a(Some(T + 5), Some(10)), end),
            Timeliness::Transient
        );
        // Acknowledged before it cleared (early): timely (it was handled); at the same
        // millisecond as the clear: not cleared before the acknowledgment, timely too.
        assert_eq!(classify(&a(Some(9), Some(10)), end), Timeliness::Timely);
        assert_eq!(classify(&a(Some(10), Some(10)), end), Timeliness::Timely);
        // Cleared before the acknowledgment, but judged before the acknowledgment: transient
        // already (the acknowledgment cannot change it).
        assert_eq!(
            classify(&a(Some(T - 5), Some(10)), 1_000_000 + 20),
            Timeliness::Transient
        );
        // Open and young at the judging time: pending; at the target age: late.
        assert_eq!(
            classify(&a(None, None), 1_000_000 + T - 1),
            Timeliness::Pending
        );
        assert_eq!(classify(&a(None, None), 1_000_000 + T), Timeliness::Late);
        // What happens after the judging time is not seen.
        assert_eq!(
            classify(&a(Some(10), None), 1_000_000 + 5),
            Timeliness::Pending
        );
    }

    #[test]
    fn summary_rates_and_nearest_rank_percentiles() {
        // Response times 10..=100 s in steps of 10 (all timely), one late (200 s), one
        // transient, one pending.
        let mut v: Vec<AlarmTimes> = (1..=10).map(|i| a(Some(i * 10_000), None)).collect();
        v.push(a(Some(200_000), None));
        v.push(a(None, Some(1_000)));
        let mut young = a(None, None);
        young.raised_ms = 5_000_000;
        v.push(young);
        let s = summarize(&v, 5_000_000 + 1);
        assert_eq!(
            (s.count, s.timely, s.late, s.transient, s.pending),
            (11, 10, 1, 1, 1)
        );
        assert_eq!(s.timely_rate, Some(10.0 / 11.0));
        // 11 sorted times; p50 rank ⌈5.5⌉ = 6 → 60 s; p90 rank ⌈9.9⌉ = 10 → 100 s.
        assert_eq!(s.p50_s, Some(60.0));
        assert_eq!(s.p90_s, Some(100.0));
        assert_eq!(s.max_s, Some(200.0));
        assert_eq!(summarize(&[], 0).timely_rate, None);
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[1, 2], 50), Some(1));
    }
}
