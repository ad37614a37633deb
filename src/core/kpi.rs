//! Time-weighted figures (DESIGN §4): one machinery for intactness (设施设备完好率) and heating
//! compliance (供暖达标率).
//!
//! A device's history is a piecewise-constant timeline: a state holding at the start of the
//! period (its last journaled transition before it, or none: *unmonitored*) and the changes
//! inside it. `accumulate` walks such a timeline over [a, b) and hands each constant stretch to
//! a callback; `merge` combines two timelines into one of pairs, so "compliant while online and
//! in season" is the same walk over a merged timeline.
//!
//! **Intactness** over [a, b) for devices D:
//!
//!  ```text
//!  rate = Σ_d intact_time_d / Σ_d (b − a − maintenance_time_d − unmonitored_time_d)
//!  ```
//!
//! `offline` counts as not intact (`OfflinePolicy::NotIntact`, the default), or is left out of
//! the denominator too (`OfflinePolicy::Excluded`). Time before a device's first journaled
//! state is *unmonitored* (the gateway did not exist for it yet) and is left out like
//! maintenance. The instantaneous rate is |intact| / |not in maintenance|.

/// Milliseconds of a period spent in each state (per device, or summed over devices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateTime {
    pub intact: i64,
    pub fault: i64,
    pub offline: i64,
    pub maintenance: i64,
    /// Before the device's first journaled state.
    pub unmonitored: i64,
}

/// How offline time counts in intactness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OfflinePolicy {
    /// Offline is not intact (a device you cannot see is not proven intact). DESIGN §4 default.
    #[default]
    NotIntact,
    /// Offline time is left out of the denominator, like maintenance.
    Excluded,
}

impl StateTime {
    pub fn add(&mut self, o: &StateTime) {
        self.intact += o.intact;
        self.fault += o.fault;
        self.offline += o.offline;
        self.maintenance += o.maintenance;
        self.unmonitored += o.unmonitored;
    }

    /// The whole period (sum of all parts).
    pub fn total(&self) -> i64 {
        self.intact + self.fault + self.offline + self.maintenance + self.unmonitored
    }

    /// The denominator: time not in maintenance and monitored (and, with `Excluded`, online).
    pub fn denominator(&self, p: OfflinePolicy) -> i64 {
        let d = self.intact + self.fault + self.offline;
        match p {
            OfflinePolicy::NotIntact => d,
            OfflinePolicy::Excluded => d - self.offline,
        }
    }

    /// intact / denominator; `None` when the denominator is 0 (nothing to rate).
    pub fn rate(&self, p: OfflinePolicy) -> Option<f64> {
        let d = self.denominator(p);
        (d > 0).then(|| self.intact as f64 / d as f64)
    }
}

/// Walks a timeline over [from, to): `initial` holds from `from` (or from before it) until the
/// first change; `changes` are (ts, state) in time order (changes before `from` only update the
/// initial state; at or after `to` they are ignored). `f(state, ms)` gets each stretch.
pub fn accumulate<S: Copy>(
    from: i64,
    to: i64,
    initial: S,
    changes: impl IntoIterator<Item = (i64, S)>,
    mut f: impl FnMut(S, i64),
) {
    if to <= from {
        return;
    }
    let mut state = initial;
    let mut at = from;
    for (ts, s) in changes {
        if ts >= to {
            break;
        }
        if ts > at {
            f(state, ts - at);
            at = ts;
        }
        state = s;
    }
    f(state, to - at);
}

/// A timeline: the value at the start and the time-ordered changes.
pub type Timeline<S> = (S, Vec<(i64, S)>);

/// Merges two timelines (each an initial value and time-ordered changes) into one of pairs.
pub fn merge<A: Copy, B: Copy>(a0: A, a: &[(i64, A)], b0: B, b: &[(i64, B)]) -> Timeline<(A, B)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut ca, mut cb) = (a0, b0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ta = a.get(i).map_or(i64::MAX, |x| x.0);
        let tb = b.get(j).map_or(i64::MAX, |x| x.0);
        let ts = ta.min(tb);
        while i < a.len() && a[i].0 == ts {
            ca = a[i].1;
            i += 1;
        }
        while j < b.len() && b[j].0 == ts {
            cb = b[j].1;
            j += 1;
        }
        out.push((ts, (ca, cb)));
    }
    ((a0, b0), out)
}

/// One device's state time over [from, to). `initial` is its state at `from` (its last
/// transition before it), `None` if it had none (unmonitored until its first change).
pub fn state_time(
    from: i64,
    to: i64,
    initial: Option<crate::model::event::DeviceState>,
    changes: impl IntoIterator<Item = (i64, crate::model::event::DeviceState)>,
) -> StateTime {
    use crate::model::event::DeviceState as S;
    let mut t = StateTime::default();
    accumulate(
        from,
        to,
        initial,
        changes.into_iter().map(|(ts, s)| (ts, Some(s))),
        |s, ms| match s {
            None => t.unmonitored += ms,
            Some(S::Intact) => t.intact += ms,
            Some(S::Fault) => t.fault += ms,
            Some(S::Offline) => t.offline += ms,
            Some(S::Maintenance) => t.maintenance += ms,
        },
    );
    t
}

/// The count form at one instant: |intact| / |devices not in maintenance| (offline and
/// unmonitored devices count as not intact, or, with `Excluded`, offline ones are left out).
pub fn instant_rate(
    states: impl IntoIterator<Item = Option<crate::model::event::DeviceState>>,
    p: OfflinePolicy,
) -> (u64, u64, Option<f64>) {
    use crate::model::event::DeviceState as S;
    let (mut intact, mut total) = (0u64, 0u64);
    for s in states {
        match s {
            Some(S::Maintenance) => {}
            Some(S::Offline) if p == OfflinePolicy::Excluded => {}
            Some(S::Intact) => {
                intact += 1;
                total += 1;
            }
            _ => total += 1,
        }
    }
    (
        intact,
        total,
        (total > 0).then(|| intact as f64 / total as f64),
    )
}

/// Heating time of one indoor sensor over [from, to), in milliseconds: `season` = in season,
/// `online` = in season and online (its state is not offline and it is monitored),
/// `compliant` = online, in season and at or above the minimum temperature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeatingTime {
    pub season: i64,
    pub online: i64,
    pub compliant: i64,
}

impl HeatingTime {
    pub fn add(&mut self, o: &HeatingTime) {
        self.season += o.season;
        self.online += o.online;
        self.compliant += o.compliant;
    }
    /// compliant / online (DESIGN §4 compliance).
    pub fn compliance(&self) -> Option<f64> {
        (self.online > 0).then(|| self.compliant as f64 / self.online as f64)
    }
    /// online / season (coverage).
    pub fn coverage(&self) -> Option<f64> {
        (self.season > 0).then(|| self.online as f64 / self.season as f64)
    }
}

/// One sensor's heating time: its state timeline, its compliance timeline (`Some(true)`: at or
/// above the minimum; `None`: no temperature known) and the season's timeline, merged and
/// walked with `accumulate`. Maintenance counts as not online.
#[allow(clippy::too_many_arguments)] // three timelines, each an initial value and its changes
pub fn heating_time(
    from: i64,
    to: i64,
    state0: Option<crate::model::event::DeviceState>,
    states: &[(i64, Option<crate::model::event::DeviceState>)],
    ok0: Option<bool>,
    ok: &[(i64, Option<bool>)],
    season0: bool,
    season: &[(i64, bool)],
) -> HeatingTime {
    use crate::model::event::DeviceState as S;
    let (i0, inner) = merge(state0, states, ok0, ok);
    let (m0, all) = merge(i0, &inner, season0, season);
    let mut t = HeatingTime::default();
    accumulate(from, to, m0, all, |((state, ok), in_season), ms| {
        if !in_season {
            return;
        }
        t.season += ms;
        if matches!(state, Some(S::Intact | S::Fault)) {
            t.online += ms;
            if ok == Some(true) {
                t.compliant += ms;
            }
        }
    });
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::DeviceState::{self, *};
    use proptest::prelude::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    /// Four elevators over a day: one in fault for 2 h, one in maintenance for 4 h, one
    /// offline for 30 min, one intact throughout.
    ///   intact time  = 24 + (24 − 2) + (24 − 4) + (24 − 0.5) = 89.5 h
    ///   denominator  = 4 × 24 − 4 (maintenance)              = 92 h
    ///   rate         = 89.5 / 92                              = 0.972826…
    /// With offline excluded: 89.5 / (92 − 0.5) = 0.978142…
    #[test]
    fn four_elevators_over_a_day() {
        let a = 0;
        let b = DAY;
        let mut sum = StateTime::default();
        sum.add(&state_time(a, b, Some(Intact), []));
        sum.add(&state_time(
            a,
            b,
            Some(Intact),
            [(8 * H, Fault), (10 * H, Intact)],
        ));
        sum.add(&state_time(
            a,
            b,
            Some(Intact),
            [(9 * H, Maintenance), (13 * H, Intact)],
        ));
        sum.add(&state_time(
            a,
            b,
            Some(Intact),
            [(20 * H, Offline), (20 * H + H / 2, Intact)],
        ));
        assert_eq!(sum.intact, 89 * H + H / 2);
        assert_eq!(sum.denominator(OfflinePolicy::NotIntact), 92 * H);
        assert_eq!(sum.rate(OfflinePolicy::NotIntact), Some(89.5 / 92.0));
        assert_eq!(sum.rate(OfflinePolicy::Excluded), Some(89.5 / 91.5));
    }

    /// A period that starts before the device's first journaled state: 6 h unmonitored, then
    /// offline 1 h (its start), then intact 17 h: rate = 17 / 18.
    #[test]
    fn a_period_before_the_first_journal_entry() {
        let t = state_time(0, DAY, None, [(6 * H, Offline), (7 * H, Intact)]);
        assert_eq!(t.unmonitored, 6 * H);
        assert_eq!(t.total(), DAY);
        assert_eq!(t.rate(OfflinePolicy::NotIntact), Some(17.0 / 18.0));
        // Wholly before: nothing to rate.
        assert_eq!(
            state_time(0, H, None, [(2 * H, Intact)]).rate(OfflinePolicy::NotIntact),
            None
        );
    }

    #[test]
    fn instant_rate_counts() {
        let s = [
            Some(Intact),
            Some(Fault),
            Some(Maintenance),
            Some(Offline),
            None,
        ];
        assert_eq!(
            instant_rate(s, OfflinePolicy::NotIntact),
            (1, 4, Some(0.25))
        );
        assert_eq!(
            instant_rate(s, OfflinePolicy::Excluded),
            (1, 3, Some(1.0 / 3.0))
        );
    }

    /// A sensor over two days around a season start at 24 h: offline 2 h inside the season,
    /// below the minimum for 6 h of the online time.
    ///   season = 24 h; online = 22 h; compliant = 16 h → compliance 16/22, coverage 22/24.
    #[test]
    fn heating_time_is_the_same_machinery() {
        let t = heating_time(
            0,
            2 * DAY,
            Some(Intact),
            &[(30 * H, Some(Offline)), (32 * H, Some(Intact))],
            Some(false),
            &[
                (10 * H, Some(true)),
                (40 * H, Some(false)),
                (46 * H, Some(true)),
            ],
            false,
            &[(DAY, true)],
        );
        assert_eq!(
            t,
            HeatingTime {
                season: 24 * H,
                online: 22 * H,
                compliant: 16 * H
            }
        );
        assert_eq!(t.compliance(), Some(16.0 / 22.0));
        assert_eq!(t.coverage(), Some(22.0 / 24.0));
    }

    fn timeline() -> impl Strategy<Value = (Option<DeviceState>, Vec<(i64, DeviceState)>)> {
        let state = prop_oneof![Just(Intact), Just(Fault), Just(Offline), Just(Maintenance)];
        (
            proptest::option::of(state.clone()),
            proptest::collection::vec((0i64..1_000_000, state), 0..30),
        )
            .prop_map(|(s0, mut v)| {
                v.sort_by_key(|x| x.0);
                (s0, v)
            })
    }

    /// The state before `at` given a timeline (for splitting a period).
    fn state_at(s0: Option<DeviceState>, v: &[(i64, DeviceState)], at: i64) -> Option<DeviceState> {
        v.iter().take_while(|x| x.0 < at).last().map(|x| x.1).or(s0)
    }

    proptest! {
        #[test]
        fn rates_are_fractions_and_periods_split_exactly(
            devices in proptest::collection::vec(timeline(), 1..6),
            a in 0i64..300_000, len1 in 0i64..400_000, len2 in 0i64..400_000,
        ) {
            let b = a + len1;
            let c = b + len2;
            let (mut whole, mut first, mut second) =
                (StateTime::default(), StateTime::default(), StateTime::default());
            for (s0, v) in &devices {
                whole.add(&state_time(a, c, state_at(*s0, v, a), v.iter().copied().filter(|x| x.0 >= a)));
                first.add(&state_time(a, b, state_at(*s0, v, a), v.iter().copied().filter(|x| x.0 >= a)));
                second.add(&state_time(b, c, state_at(*s0, v, b), v.iter().copied().filter(|x| x.0 >= b)));
            }
            prop_assert_eq!(whole.total(), (c - a) * devices.len() as i64);
            for p in [OfflinePolicy::NotIntact, OfflinePolicy::Excluded] {
                if let Some(r) = whole.rate(p) {
                    prop_assert!((0.0..=1.0).contains(&r));
                    // [a, c) = [a, b) and [b, c) weighted by their denominators.
                    let (d1, d2) = (first.denominator(p), second.denominator(p));
                    let combined = (first.rate(p).unwrap_or(0.0) * d1 as f64
                        + second.rate(p).unwrap_or(0.0) * d2 as f64) / (d1 + d2) as f64;
                    prop_assert!((r - combined).abs() < 1e-12, "{} vs {}", r, combined);
                }
            }
            // Reordering devices changes nothing.
            let mut rev = StateTime::default();
            for (s0, v) in devices.iter().rev() {
                rev.add(&state_time(a, c, state_at(*s0, v, a), v.iter().copied().filter(|x| x.0 >= a)));
            }
            prop_assert_eq!(rev, whole);
        }

        /// Turning part of a fault or offline stretch into maintenance never changes intact
        /// time; turning intact time into maintenance removes it from both sides.
        #[test]
        fn maintenance_never_changes_intact_time(
            (s0, v) in timeline(), from in 0i64..500_000, len in 0i64..500_000,
        ) {
            let (a, b) = (0, 1_000_000);
            let base = state_time(a, b, s0, v.iter().copied());
            // Overlay a maintenance window [from, from+len) on the non-intact stretches only.
            let mut changes: Vec<(i64, DeviceState)> = Vec::new();
            let mut cur = s0;
            let mut points: Vec<i64> = v.iter().map(|x| x.0).chain([from, from + len]).collect();
            points.sort_unstable();
            points.dedup();
            let mut vi = 0;
            for &t in &points {
                while vi < v.len() && v[vi].0 <= t {
                    cur = Some(v[vi].1);
                    vi += 1;
                }
                let in_window = t >= from && t < from + len;
                let s = match cur {
                    Some(Fault | Offline) if in_window => Some(Maintenance),
                    other => other,
                };
                if let Some(s) = s {
                    changes.push((t, s));
                }
            }
            let s0m = match s0 {
                Some(Fault | Offline) if from == 0 && len > 0 => Some(Maintenance),
                other => other,
            };
            let with = state_time(a, b, s0m, changes);
            prop_assert_eq!(with.intact, base.intact);
            prop_assert!(with.maintenance >= base.maintenance);
        }
    }
}
