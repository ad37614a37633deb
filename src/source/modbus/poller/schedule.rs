//! When each device is polled: pure functions over `Instant`s, so the rules are tested exactly
//! without a runtime or a network.
//!
//! - A device's polls sit on a fixed grid: the next one is due one period after the previous
//!   due time, not after the poll finished, so slow answers do not make the schedule drift.
//! - After a stall longer than a period (a slow bus, a suspended machine) the device is polled
//!   once, now, and the grid restarts from there: missed polls are skipped, never replayed in a
//!   burst that would flood a serial line.
//! - A device that stops answering keeps its interval until it is reported offline, so offline
//!   detection takes the configured `offline_after` polls; after that its period doubles with
//!   each further silent poll, up to `MAX_FAILING_PERIOD` (or its own interval if longer), so a
//!   dead unit on a shared bus costs little bus time.
//! - The devices of one endpoint start spread over their interval, not all at once.

use std::time::Duration;

use tokio::time::Instant;

/// The longest period a silent device is backed off to (unless its interval is longer).
pub(super) const MAX_FAILING_PERIOD: Duration = Duration::from_secs(60);

/// The period of a device with this `interval` after `silent` consecutive polls it did not
/// answer (see the module docs).
pub(super) fn period(interval: Duration, silent: u32, offline_after: u32) -> Duration {
    if silent < offline_after.max(1) {
        return interval;
    }
    let doublings = (silent - offline_after.max(1) + 1).min(16);
    interval
        .saturating_mul(1u32 << doublings)
        .min(MAX_FAILING_PERIOD.max(interval))
}

/// When a device is next due, given the due time of the poll that just ran.
pub(super) fn next_due(prev_due: Instant, period: Duration, now: Instant) -> Instant {
    let next = prev_due + period;
    if now.saturating_duration_since(next) > period {
        now
    } else {
        next
    }
}

/// The first due time of the `k`-th of `n` devices on one endpoint: spread evenly over the
/// device's interval, so a restart does not send every request at once.
pub(super) fn first_due(start: Instant, interval: Duration, k: usize, n: usize) -> Instant {
    let n = n.max(1) as u32;
    let k = (k as u32).min(n - 1);
    start + interval / n * k
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn next_due_keeps_the_grid() {
        let t0 = Instant::now();
        // The poll took 300 ms: the next one is still one interval after the last due time.
        assert_eq!(next_due(t0, S, t0 + S * 3 / 10), t0 + S);
        // Finished exactly at the next due time, or a little late: stay on the grid (poll now,
        // then continue at t0 + 2 s).
        assert_eq!(next_due(t0, S, t0 + S), t0 + S);
        assert_eq!(next_due(t0, S, t0 + S * 19 / 10), t0 + S);
    }

    #[test]
    fn no_catch_up_burst_after_a_stall() {
        let t0 = Instant::now();
        // Stalled for 5.5 intervals: one poll now, then every interval from now on, not five
        // polls back to back.
        let now = t0 + S * 55 / 10;
        let due = next_due(t0, S, now);
        assert_eq!(due, now);
        assert_eq!(next_due(due, S, due + Duration::from_millis(20)), now + S);
    }

    #[test]
    fn a_silent_device_backs_off_after_going_offline() {
        let i = Duration::from_secs(5);
        // Until offline (3 failures) it keeps its interval.
        assert_eq!(period(i, 0, 3), i);
        assert_eq!(period(i, 2, 3), i);
        // Then it doubles up to 60 s.
        assert_eq!(period(i, 3, 3), i * 2);
        assert_eq!(period(i, 4, 3), i * 4);
        assert_eq!(period(i, 5, 3), i * 8);
        assert_eq!(period(i, 6, 3), MAX_FAILING_PERIOD);
        assert_eq!(period(i, 1000, 3), MAX_FAILING_PERIOD);
        // A device polled less often than 60 s is never polled more often than configured.
        let slow = Duration::from_secs(300);
        assert_eq!(period(slow, 10, 3), slow);
        // offline_after = 1 backs off after the first silent poll.
        assert_eq!(period(i, 1, 1), i * 2);

        // Polls of a dead device over the first minutes, with a 5 s interval: 3 at the normal
        // interval, then fewer and fewer.
        let t0 = Instant::now();
        let mut due = t0;
        let mut times = Vec::new();
        for silent in 1..=8 {
            due = next_due(due, period(i, silent, 3), due + Duration::from_millis(200));
            times.push((due - t0).as_secs());
        }
        assert_eq!(times, [5, 10, 20, 40, 80, 140, 200, 260]);
    }

    #[test]
    fn first_polls_are_spread_over_the_interval() {
        let t0 = Instant::now();
        let due: Vec<Duration> = (0..4).map(|k| first_due(t0, S, k, 4) - t0).collect();
        assert_eq!(due, [0, 250, 500, 750].map(Duration::from_millis).to_vec());
        assert_eq!(first_due(t0, S, 0, 1), t0);
        assert_eq!(first_due(t0, S, 0, 0), t0);
    }
}
