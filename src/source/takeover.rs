//! Recognising a session takeover (pure, clock-free: times are the gateway clock's unix ms).
//!
//! Two clients connecting with the same client id take each other's session: the broker
//! accepts the newcomer and closes the older connection, which reconnects at once and closes
//! the other in turn. Each side sees the broker close its connection shortly after every
//! successful CONNACK. One such close is an ordinary hiccup; `COUNT` within `WINDOW_MS` is a
//! takeover. It is over when a connection stays up `SHORT_MS`, or when `WINDOW_MS` passes
//! without another short one (the broker went away, say: its own warnings take over).

use std::collections::VecDeque;

/// A connection the broker closes within this long after its CONNACK is "short".
pub const SHORT_MS: i64 = 10_000;
/// This many short connections...
pub const COUNT: usize = 3;
/// ...within this long are a takeover.
pub const WINDOW_MS: i64 = 60_000;

/// What a closed connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Not part of a takeover (a long connection, or an attempt that never got a CONNACK).
    Normal,
    /// Short, but not (yet) often enough to be a takeover.
    Short,
    /// Part of a takeover: `recognised` on the close that made it one, with the number of
    /// short connections counted in the window (all of them part of it).
    Takeover { recognised: bool, count: usize },
}

/// The takeover detector of one MQTT connection.
#[derive(Debug, Default)]
pub struct Takeovers {
    /// When the current connection got its CONNACK.
    connected_at: Option<i64>,
    /// When each recent short connection ended (within `WINDOW_MS`).
    short: VecDeque<i64>,
    active: bool,
}

impl Takeovers {
    /// The broker accepted a connection (CONNACK) at `now`.
    pub fn connected(&mut self, now: i64) {
        self.connected_at = Some(now);
    }

    /// The connection ended at `now`; `by_broker`: the broker closed it (rather than a network
    /// timeout, or a packet we refused).
    pub fn closed(&mut self, now: i64, by_broker: bool) -> Closed {
        let Some(at) = self.connected_at.take() else {
            return Closed::Normal;
        };
        if !by_broker || now - at > SHORT_MS {
            return Closed::Normal;
        }
        self.short.push_back(now);
        while self.short.front().is_some_and(|&t| now - t > WINDOW_MS) {
            self.short.pop_front();
        }
        if self.short.len() < COUNT {
            return Closed::Short;
        }
        let recognised = !self.active;
        self.active = true;
        Closed::Takeover {
            recognised,
            count: self.short.len(),
        }
    }

    /// Whether a takeover is going on at `now`; ends it (returning `false`) when the
    /// connection has stayed up `SHORT_MS` or no short connection happened in `WINDOW_MS`.
    pub fn check(&mut self, now: i64) -> bool {
        if !self.active {
            return false;
        }
        let stable = self.connected_at.is_some_and(|at| now - at >= SHORT_MS);
        let quiet = self.short.back().is_none_or(|&t| now - t >= WINDOW_MS);
        if stable || quiet {
            self.active = false;
            self.short.clear();
        }
        self.active
    }

    /// Whether a takeover is going on (as of the last `closed` or `check`).
    pub fn active(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_short_connections_in_a_window_are_a_takeover() {
        let mut t = Takeovers::default();
        let mut now = 1_000_000;
        let mut verdicts = Vec::new();
        for _ in 0..5 {
            t.connected(now);
            now += 700;
            verdicts.push(t.closed(now, true));
            now += 300;
        }
        assert_eq!(
            verdicts,
            vec![
                Closed::Short,
                Closed::Short,
                Closed::Takeover {
                    recognised: true,
                    count: 3
                },
                Closed::Takeover {
                    recognised: false,
                    count: 4
                },
                Closed::Takeover {
                    recognised: false,
                    count: 5
                },
            ]
        );
        assert!(t.check(now));
        // Reconnected, and the connection stays up: over after SHORT_MS.
        t.connected(now);
        assert!(t.check(now + SHORT_MS - 1));
        assert!(!t.check(now + SHORT_MS));
        assert!(!t.active());
        // A new series has to reach COUNT again.
        t.closed(now + SHORT_MS + 5, true);
        t.connected(now + SHORT_MS + 10);
        assert_eq!(t.closed(now + SHORT_MS + 20, true), Closed::Short);
    }

    #[test]
    fn ordinary_disconnects_are_not_a_takeover() {
        let mut t = Takeovers::default();
        let mut now = 0;
        // Long connections closed by the broker (restarts), failed attempts, our own errors.
        for _ in 0..10 {
            t.connected(now);
            now += SHORT_MS + 1;
            assert_eq!(t.closed(now, true), Closed::Normal);
            assert_eq!(t.closed(now + 1, true), Closed::Normal, "no CONNACK");
            t.connected(now + 2);
            assert_eq!(t.closed(now + 3, false), Closed::Normal, "not the broker");
        }
        // Short ones spread wider than the window.
        let mut t = Takeovers::default();
        for i in 0..10 {
            let at = i * (WINDOW_MS / 2 + 1);
            t.connected(at);
            assert_eq!(t.closed(at + 100, true), Closed::Short);
        }
        assert!(!t.active());
    }

    #[test]
    fn a_takeover_ends_when_nothing_happens_for_a_window() {
        let mut t = Takeovers::default();
        for i in 0..3 {
            t.connected(i * 1000);
            t.closed(i * 1000 + 500, true);
        }
        assert!(t.active());
        // Never connected again (the broker went away).
        assert!(t.check(2_500 + WINDOW_MS - 1));
        assert!(!t.check(2_500 + WINDOW_MS));
    }
}
