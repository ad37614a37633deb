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
//!
//! **Arrival (到场及时率) and repair (修复及时率, the plans' 零修急修及时率)** are the same rule
//! over the other two steps (`Step`): someone on site within the class's on-site target
//! (on site implies acknowledged), cleared within its repair target. An alarm that cleared
//! before its on-site target with nobody on site by then is `transient` for arrival; repair has
//! no transient (clearing is the step itself: a fault that went away within its target was
//! restored in time). An alarm whose class has no target for a step is not graded for it
//! (`no_target`).

use serde::Serialize;

/// What `classify` needs of an alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmTimes {
    pub raised_ms: i64,
    pub acknowledged_ms: Option<i64>,
    pub cleared_ms: Option<i64>,
    pub ack_target_ms: i64,
    pub on_site_ms: Option<i64>,
    pub on_site_target_ms: Option<i64>,
    pub repair_target_ms: Option<i64>,
}

impl From<&crate::model::event::Alarm> for AlarmTimes {
    fn from(a: &crate::model::event::Alarm) -> AlarmTimes {
        AlarmTimes {
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

/// A step of an alarm's handling that is graded against its class's target (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Acknowledged (响应).
    Response,
    /// Someone on site (到场).
    Arrival,
    /// Cleared: the fault restored (修复).
    Repair,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Response, Step::Arrival, Step::Repair];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Response => "response",
            Step::Arrival => "arrival",
            Step::Repair => "repair",
        }
    }
}

impl AlarmTimes {
    /// (when the step was done, its target) for `step`; `None`: no target for this step.
    fn step(&self, step: Step) -> Option<(Option<i64>, i64)> {
        match step {
            Step::Response => Some((self.acknowledged_ms, self.ack_target_ms)),
            Step::Arrival => self.on_site_target_ms.map(|t| (self.on_site_ms, t)),
            Step::Repair => self.repair_target_ms.map(|t| (self.cleared_ms, t)),
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

/// Classifies an alarm's response as seen at `at_ms` (see the module docs).
pub fn classify(a: &AlarmTimes, at_ms: i64) -> Timeliness {
    classify_step(a, Step::Response, at_ms).unwrap_or(Timeliness::Pending)
}

/// Classifies one step of an alarm as seen at `at_ms`; `None` when its class has no target
/// for that step.
pub fn classify_step(a: &AlarmTimes, step: Step, at_ms: i64) -> Option<Timeliness> {
    let (done, target) = a.step(step)?;
    let done = done.filter(|&t| t <= at_ms);
    let cleared = a.cleared_ms.filter(|&t| t <= at_ms);
    let target_at = a.raised_ms + target;
    // Cleared before its target age with nobody having done the step by then: transient,
    // even if it is done afterwards (DESIGN §4). Not for repair: clearing is its step.
    if step != Step::Repair && cleared.is_some_and(|c| c < target_at && done.is_none_or(|t| t > c))
    {
        return Some(Timeliness::Transient);
    }
    Some(if done.is_some_and(|t| t <= target_at) {
        Timeliness::Timely
    } else if done.is_some() || at_ms >= target_at {
        Timeliness::Late
    } else {
        Timeliness::Pending
    })
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
    /// Nearest-rank percentiles and maximum of the step's times (s: response, arrival or
    /// restore time) of the counted alarms that had done it.
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub max_s: Option<f64>,
    /// Alarms whose class has no target for this step (not graded).
    pub no_target: u64,
}

/// Summarises alarms' response as seen at `at_ms`.
pub fn summarize<'a>(
    alarms: impl IntoIterator<Item = &'a AlarmTimes>,
    at_ms: i64,
) -> ResponseSummary {
    summarize_step(alarms, Step::Response, at_ms)
}

/// Summarises one step of alarms as seen at `at_ms`.
pub fn summarize_step<'a>(
    alarms: impl IntoIterator<Item = &'a AlarmTimes>,
    step: Step,
    at_ms: i64,
) -> ResponseSummary {
    let mut s = ResponseSummary::default();
    let mut times: Vec<i64> = Vec::new();
    for a in alarms {
        let Some(c) = classify_step(a, step, at_ms) else {
            s.no_target += 1;
            continue;
        };
        match c {
            Timeliness::Timely => s.timely += 1,
            Timeliness::Late => s.late += 1,
            Timeliness::Transient => s.transient += 1,
            Timeliness::Pending => s.pending += 1,
        }
        if matches!(c, Timeliness::Timely | Timeliness::Late) {
            let done = a.step(step).and_then(|(d, _)| d);
            if let Some(t) = done.filter(|&t| t <= at_ms) {
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
            on_site_ms: None,
            on_site_target_ms: None,
            repair_target_ms: None,
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

    fn steps(
        ack: Option<i64>,
        on_site: Option<i64>,
        cleared: Option<i64>,
        on_site_target: Option<i64>,
        repair_target: Option<i64>,
    ) -> AlarmTimes {
        let at = |d: Option<i64>| d.map(|d| 1_000_000 + d);
        AlarmTimes {
            raised_ms: 1_000_000,
            acknowledged_ms: at(ack),
            cleared_ms: at(cleared),
            ack_target_ms: T,
            on_site_ms: at(on_site),
            on_site_target_ms: on_site_target,
            repair_target_ms: repair_target,
        }
    }

    /// DESIGN §4: arrival and repair are the same rule over the other two steps. Targets here:
    /// on site 30 min (1,800 s), repair 2 h.
    #[test]
    fn arrival_and_repair_edges() {
        const OS: i64 = 1_800_000;
        const RP: i64 = 7_200_000;
        let end = 100_000_000;
        let c = |a: &AlarmTimes, s: Step| classify_step(a, s, end);
        // On site exactly at the target: timely; a ms later: late. Repair likewise.
        let a = steps(Some(10), Some(OS), Some(RP), Some(OS), Some(RP));
        assert_eq!(c(&a, Step::Arrival), Some(Timeliness::Timely));
        assert_eq!(c(&a, Step::Repair), Some(Timeliness::Timely));
        let a = steps(Some(10), Some(OS + 1), Some(RP + 1), Some(OS), Some(RP));
        assert_eq!(c(&a, Step::Arrival), Some(Timeliness::Late));
        assert_eq!(c(&a, Step::Repair), Some(Timeliness::Late));
        // Acknowledged in time, nobody on site, still open past both targets: response
        // timely, arrival and repair late (the plans grade the repair, not the click).
        let a = steps(Some(30_000), None, None, Some(OS), Some(RP));
        assert_eq!(c(&a, Step::Response), Some(Timeliness::Timely));
        assert_eq!(c(&a, Step::Arrival), Some(Timeliness::Late));
        assert_eq!(c(&a, Step::Repair), Some(Timeliness::Late));
        // Cleared by itself after 60 s, nobody on site: transient for arrival (and response),
        // a timely repair (clearing is the repair step; there is no transient for it).
        let a = steps(None, None, Some(60_000), Some(OS), Some(RP));
        assert_eq!(c(&a, Step::Response), Some(Timeliness::Transient));
        assert_eq!(c(&a, Step::Arrival), Some(Timeliness::Transient));
        assert_eq!(c(&a, Step::Repair), Some(Timeliness::Timely));
        // Cleared after 60 s, someone on site only afterwards: still transient for arrival.
        let a = steps(None, Some(90_000), Some(60_000), Some(OS), Some(RP));
        assert_eq!(c(&a, Step::Arrival), Some(Timeliness::Transient));
        // On site before it cleared: timely arrival.
        let a = steps(Some(20_000), Some(50_000), Some(60_000), Some(OS), Some(RP));
        assert_eq!(c(&a, Step::Arrival), Some(Timeliness::Timely));
        // Open, younger than the targets at the judging time: pending for both.
        let young = 1_000_000 + 1_000;
        let a = steps(None, None, None, Some(OS), Some(RP));
        assert_eq!(
            classify_step(&a, Step::Arrival, young),
            Some(Timeliness::Pending)
        );
        assert_eq!(
            classify_step(&a, Step::Repair, young),
            Some(Timeliness::Pending)
        );
        // No target for a step: not graded (`no_target`), never late.
        let a = steps(None, None, None, None, None);
        assert_eq!(c(&a, Step::Arrival), None);
        assert_eq!(c(&a, Step::Repair), None);
        let s = summarize_step(&[a], Step::Repair, end);
        assert_eq!((s.count, s.no_target, s.timely_rate), (0, 1, None));
    }

    #[test]
    fn step_summaries_use_each_steps_own_times() {
        // Arrival times 10, 20, 40 min against a 30 min target: 2 of 3 timely; p50 20 min.
        const OS: i64 = 1_800_000;
        let v: Vec<AlarmTimes> = [600_000, 1_200_000, 2_400_000]
            .iter()
            .map(|&o| steps(Some(1_000), Some(o), None, Some(OS), None))
            .collect();
        let s = summarize_step(&v, Step::Arrival, 100_000_000);
        assert_eq!((s.count, s.timely, s.late), (3, 2, 1));
        assert_eq!(s.timely_rate, Some(2.0 / 3.0));
        assert_eq!((s.p50_s, s.max_s), (Some(1200.0), Some(2400.0)));
        // Their response (1 s, target 180 s) is all timely.
        assert_eq!(summarize(&v, 100_000_000).timely_rate, Some(1.0));
    }

    /// (raised s, ack +s, on site +s, cleared +s, on-site target s, repair target s, ack
    /// target s, in the second half).
    type Generated = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        i64,
        bool,
    );

    proptest::proptest! {
        /// A period split in two combines exactly, for all three steps: when every alarm of
        /// the first half has settled by the split (each step done or its target age reached),
        /// the halves' counts, judged at their own ends, add up to the whole period's.
        #[test]
        fn a_period_split_in_two_combines_for_all_three_steps(
            alarms in proptest::collection::vec(
                (0i64..1_000, proptest::option::of(0i64..400), proptest::option::of(0i64..400),
                 proptest::option::of(0i64..400), proptest::option::of(1i64..200),
                 proptest::option::of(1i64..200), 1i64..200, proptest::bool::ANY),
                0..40,
            ),
        ) {
            // Times in seconds → ms; first half raised in [0, 1000 s), settled by 2,000 s
            // (the split); second half raised in [2,000 s, 3,000 s), judged at 10,000 s.
            let mk = |(r, ack, os, cl, ost, rpt, ackt, second): Generated| {
                let base = if second { 2_000_000 } else { 0 };
                let at = |d: Option<i64>| d.map(|d| base + (r + d) * 1000);
                AlarmTimes {
                    raised_ms: base + r * 1000,
                    acknowledged_ms: at(ack),
                    on_site_ms: at(os),
                    cleared_ms: at(cl),
                    ack_target_ms: ackt * 1000,
                    on_site_target_ms: ost.map(|t| t * 1000),
                    repair_target_ms: rpt.map(|t| t * 1000),
                }
            };
            let all: Vec<AlarmTimes> = alarms.into_iter().map(mk).collect();
            let (first, second): (Vec<AlarmTimes>, Vec<AlarmTimes>) =
                all.iter().partition(|a| a.raised_ms < 2_000_000);
            for step in Step::ALL {
                let key = |s: &ResponseSummary| (s.timely, s.late, s.transient, s.pending, s.no_target);
                let a = summarize_step(&first, step, 2_000_000);
                let b = summarize_step(&second, step, 10_000_000);
                let w = summarize_step(&all, step, 10_000_000);
                let sum = (a.timely + b.timely, a.late + b.late, a.transient + b.transient,
                           a.pending + b.pending, a.no_target + b.no_target);
                proptest::prop_assert_eq!(sum, key(&w), "{:?}", step);
                proptest::prop_assert_eq!(a.pending, 0);
            }
        }
    }
}
