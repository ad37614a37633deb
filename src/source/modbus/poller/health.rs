//! Whether a polled device is reachable, from the outcome of each poll (DESIGN §4: a device is
//! offline after `offline_after` consecutive failed polls). Pure: the task feeds it outcomes and
//! sends the status readings it returns.
//!
//! A poll is *good* when the device answered at least one request, with data or with an
//! exception other than the gateway codes 0x0A/0x0B (which a TCP-to-serial gateway sends when
//! the device behind it is silent). So a partly failed poll — one request answered, another
//! refused or timed out — keeps the device online: it is reachable, and the values it gave are
//! sent; the failure is counted in `modbus_poll_failures`. Only silence makes a device offline.
//!
//! A device starts online as far as the poller is concerned (no status is sent for the first
//! good poll); one that never answers is reported offline after `offline_after` polls.

use std::time::Duration;

use super::schedule;
use crate::model::Status;

/// How one poll of a device went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PollResult {
    /// The device answered at least one request.
    Good,
    /// The endpoint was reachable but the device did not answer.
    Silent,
    /// The endpoint could not be reached (connect failed, or waiting to reconnect).
    EndpointDown,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Health {
    /// Consecutive polls that were not good.
    failures: u32,
    /// Consecutive polls in which the device was silent on a reachable endpoint; drives its
    /// backoff (an unreachable endpoint has its own).
    silent: u32,
    offline: bool,
}

impl Health {
    /// Records a poll; returns the status to report when the device changes between online
    /// and offline.
    pub(super) fn record(&mut self, r: PollResult, offline_after: u32) -> Option<Status> {
        match r {
            PollResult::Good => {
                self.failures = 0;
                self.silent = 0;
                if self.offline {
                    self.offline = false;
                    return Some(Status::Online);
                }
                None
            }
            PollResult::Silent | PollResult::EndpointDown => {
                self.failures = self.failures.saturating_add(1);
                self.silent = if r == PollResult::Silent {
                    self.silent.saturating_add(1)
                } else {
                    0
                };
                if !self.offline && self.failures >= offline_after.max(1) {
                    self.offline = true;
                    return Some(Status::Offline);
                }
                None
            }
        }
    }

    pub(super) fn offline(&self) -> bool {
        self.offline
    }

    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// The device's poll period now.
    pub(super) fn period(&self, interval: Duration, offline_after: u32) -> Duration {
        schedule::period(interval, self.silent, offline_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PollResult::*;

    #[test]
    fn offline_after_n_failures_and_back_online() {
        let mut h = Health::default();
        assert_eq!(h.record(Good, 3), None);
        assert_eq!(h.record(Silent, 3), None);
        assert_eq!(h.record(EndpointDown, 3), None);
        assert_eq!(h.record(Silent, 3), Some(Status::Offline));
        assert!(h.offline());
        // Reported once.
        assert_eq!(h.record(Silent, 3), None);
        assert_eq!(h.record(EndpointDown, 3), None);
        assert_eq!(h.failures(), 5);
        assert_eq!(h.record(Good, 3), Some(Status::Online));
        assert!(!h.offline());
        assert_eq!(h.record(Good, 3), None);
        // A good poll resets the count.
        h.record(Silent, 3);
        h.record(Silent, 3);
        assert_eq!(h.record(Good, 3), None);
        assert_eq!(h.record(Silent, 3), None);
    }

    #[test]
    fn only_silence_backs_a_device_off() {
        let i = Duration::from_secs(1);
        let mut h = Health::default();
        for _ in 0..5 {
            h.record(EndpointDown, 3);
        }
        // Offline, but the endpoint's own backoff paces reconnects: the device keeps its
        // interval so it is seen again as soon as the endpoint is back.
        assert!(h.offline());
        assert_eq!(h.period(i, 3), i);
        for _ in 0..4 {
            h.record(Silent, 3);
        }
        assert_eq!(h.period(i, 3), i * 4);
        h.record(Good, 3);
        assert_eq!(h.period(i, 3), i);
    }
}
