//! Time and process facts at the edges. Core logic never calls these: it takes `now_ms` as
//! an argument so tests can drive it exactly (DESIGN §2, "inject the clock").

use std::time::{SystemTime, UNIX_EPOCH};

/// Source of the current time in unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

/// A clock that runs `speed` times faster than the wall clock from the moment it is made:
/// `estate-gateway demo --speed N` demonstrates a month in minutes with it. At its start it
/// reads the wall clock; after `d` of real time it reads start + `d × speed`.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    start_ms: i64,
    start: std::time::Instant,
    speed: f64,
}

impl ScaledClock {
    /// A clock starting now at the wall-clock time, running `speed` times as fast (a `speed`
    /// that is not finite and positive counts as 1).
    pub fn new(speed: f64) -> Self {
        Self::starting_at(system_now_ms(), speed)
    }

    /// A clock that reads `start_ms` now and runs `speed` times as fast.
    pub fn starting_at(start_ms: i64, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        ScaledClock {
            start_ms,
            start: std::time::Instant::now(),
            speed,
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Simulated time since the clock was made.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed().mul_f64(self.speed)
    }

    /// The real time until the clock reads `start + sim` (zero if it already has).
    pub fn real_until(&self, sim: std::time::Duration) -> std::time::Duration {
        sim.saturating_sub(self.elapsed()).div_f64(self.speed)
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        self.start_ms + self.elapsed().as_millis() as i64
    }
}

/// Wall-clock unix milliseconds.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Resident set size of this process (Linux), for the `gateway` measurement.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
