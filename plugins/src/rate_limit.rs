//! Rate-limited warnings: a per-event problem (a Modbus timeout, an
//! unparsable line) is a counter plus at most one log line per interval,
//! which says how many similar problems it stands for.

use std::time::Duration;

use tokio::time::Instant;

/// Lets one message through per `every`; counts the ones held back.
#[derive(Debug, Clone)]
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// At most one message per `every`.
    pub fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may be logged now, `n` being how many were
    /// held back since the last one; `None` to stay quiet (and count it).
    pub fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lets_one_message_through_per_interval_and_counts_the_rest() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), None);
        assert_eq!(r.check(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(r.check(), Some(2));
        assert_eq!(r.check(), None);
    }
}
