//! Capped exponential backoff with jitter, for every loop that talks to a network
//! (the MQTT event loop retries at once on error unless we wait; the store writer retries
//! failed writes). Jitter keeps many gateways from reconnecting in lockstep after an outage.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt: the current step with up to half of it taken off at
    /// random, after which the step doubles (capped at `max`).
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter: f64 = rand::random::<f64>() * 0.5;
        step.mul_f64(1.0 - jitter)
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let steps = [100u64, 200, 400, 800, 800, 800];
        for s in steps {
            let d = b.next_delay();
            assert!(
                d <= Duration::from_millis(s) && d >= Duration::from_millis(s / 2),
                "{d:?} not within [{}, {s}] ms",
                s / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
