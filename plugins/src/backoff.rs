//! Capped exponential backoff with jitter, for every retry loop of a
//! component (reopening a serial port, reconnecting to a Modbus device).
//!
//! Jitter spreads the retries of many agents (or many sources in one) that
//! lost the same peer at the same moment, so they do not all come back in
//! step; the cap bounds how long a recovered peer waits to be noticed.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each with ±50% jitter
/// (never above `max`).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    /// The delay before the next attempt; the one after will be about twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        jitter(step).min(self.max)
    }

    /// Starts again from `initial` (after a success).
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

/// `d` scaled by a random factor in [0.5, 1.5).
pub fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let steps = [100u64, 200, 400, 700, 700];
        for step in steps {
            let d = b.next_delay();
            let lo = Duration::from_millis(step / 2);
            let hi = Duration::from_millis((step * 3 / 2).min(700));
            assert!(d >= lo && d <= hi, "step {step}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(150));
    }
}
