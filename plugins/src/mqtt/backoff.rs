//! Reconnect pacing and outage logging: capped exponential backoff with
//! jitter, and one WARN when an outage starts and one INFO when it ends.

use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Capped exponential backoff with ±50% jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles per failure up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt (jittered), and doubles the base.
    pub fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let d = self.next.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
        self.next = (self.next * 2).min(self.max);
        d.min(self.max)
    }

    /// Back to `initial` after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Logs an outage once when it starts and once when it ends.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
    failures: u64,
}

impl Outage {
    /// A connection attempt failed (or a connection broke) with `error`:
    /// logged with its cause chain the first time only.
    pub fn failed(&mut self, component: &str, broker: &str, error: &dyn std::error::Error) {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            warn!(component, broker, error = %chain(error), "MQTT broker unreachable; reconnecting with backoff (logged once per outage).");
        }
    }

    /// Connected again: logs the outage's duration if there was one.
    pub fn recovered(&mut self, component: &str, broker: &str) {
        if let Some(since) = self.since.take() {
            info!(component, broker, outage = ?since.elapsed(), attempts = self.failures, "MQTT broker reachable again.");
        }
        self.failures = 0;
    }

    /// Whether an outage is going on.
    pub fn ongoing(&self) -> bool {
        self.since.is_some()
    }
}

/// `error: cause: cause…`
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let c_text = c.to_string();
        if !s.ends_with(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(150));
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(150));
    }

    #[test]
    fn an_outage_is_ongoing_until_recovered() {
        let mut o = Outage::default();
        let e = std::io::Error::other("refused");
        o.failed("c", "b", &e);
        o.failed("c", "b", &e);
        assert!(o.ongoing());
        o.recovered("c", "b");
        assert!(!o.ongoing());
    }
}
