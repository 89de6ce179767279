//! The `throttle` transform: a token bucket per key. Each bucket holds up
//! to `burst` tokens and refills at `rate` per `interval`, computed from
//! the transform's time (`out.now()`), so no timer is needed; an event
//! takes one token or, if there is none, is dropped (counted, or sent to
//! the `dropped` output with `dropped_output: true`).
//!
//! Token arithmetic is in integers (token-nanoseconds), so decisions are
//! exact and replay identically. Buckets are bounded by `max_keys`: the
//! least recently used is forgotten, which is the same as it being full.
//!
//! Stateless by default — a restart starts every bucket full, which can let
//! one extra burst through. With `persist: true` the buckets are
//! checkpointed (the transform becomes stateful: input log, replay).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::metrics::Counter;
use weir_core::units::duration;
use weir_core::Event;

use super::lru::Lru;
use crate::component::{
    BuildError, Emitter, Transform, TransformConfig, TransformContext, TransformError,
};

/// The output of throttled events with `dropped_output: true`.
pub const DROPPED: &str = "dropped";

/// Limits the rate of events, per key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Events let through per `interval`, per key, in the long run.
    pub rate: u64,
    /// The interval `rate` counts over.
    #[serde(default = "one_second", with = "duration")]
    pub interval: Duration,
    /// Events let through at once after a quiet spell; `rate` by default.
    #[serde(default)]
    pub burst: Option<u64>,
    /// Fields (names or `.` paths) whose values choose the bucket; one
    /// bucket for all events when empty.
    #[serde(default)]
    pub key_fields: Vec<String>,
    /// Most buckets kept; the least recently used is forgotten (as if full).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Send throttled events to the `dropped` output instead of discarding them.
    #[serde(default)]
    pub dropped_output: bool,
    /// Checkpoint the buckets, so a restart does not refill them.
    #[serde(default)]
    pub persist: bool,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn default_max_keys() -> usize {
    10_000
}

impl ThrottleConfig {
    fn burst(&self) -> u64 {
        self.burst.unwrap_or(self.rate)
    }

    fn interval_ns(&self) -> u64 {
        u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl TransformConfig for ThrottleConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.rate == 0 {
            p.push("rate: must be at least 1".to_owned());
        }
        if self.interval.is_zero() {
            p.push("interval: must be longer than 0".to_owned());
        }
        if self.burst == Some(0) {
            p.push("burst: must be at least 1".to_owned());
        }
        if self.max_keys == 0 {
            p.push("max_keys: must be at least 1".to_owned());
        }
        if u128::from(self.burst()) * u128::from(self.interval_ns()) > u128::from(u64::MAX) {
            p.push(
                "burst × interval is too large (at most about 18 billion token-seconds)".to_owned(),
            );
        }
        p
    }

    fn outputs(&self) -> Vec<String> {
        if self.dropped_output {
            vec![DROPPED.to_owned()]
        } else {
            Vec::new()
        }
    }

    fn stateful(&self) -> bool {
        self.persist
    }

    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let cost = self.interval_ns();
        Ok(Box::new(Throttle {
            rate: self.rate,
            cost,
            capacity: self.burst() * cost,
            keys: self.key_fields.clone(),
            buckets: Lru::new(self.max_keys),
            dropped_output: self.dropped_output,
            buf: Vec::new(),
            dropped: super::dropped_counter(&ctx, "throttled"),
        }))
    }
}

/// A bucket: tokens in token-nanoseconds, and when it was last filled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    tokens: u64,
    at: i64,
}

struct Throttle {
    /// Token-ns added per ns.
    rate: u64,
    /// Token-ns one event takes (the interval in ns).
    cost: u64,
    capacity: u64,
    keys: Vec<String>,
    buckets: Lru<Bucket>,
    dropped_output: bool,
    buf: Vec<u8>,
    dropped: Counter,
}

impl Throttle {
    /// Takes a token from `key`'s bucket at `now`, if it has one.
    fn admit(&mut self, key: u64, now: i64) -> bool {
        let (rate, cost, capacity) = (self.rate, self.cost, self.capacity);
        if self.buckets.get_mut(key).is_none() {
            self.buckets.insert(
                key,
                Bucket {
                    tokens: capacity,
                    at: now,
                },
            );
        }
        let Some(b) = self.buckets.get_mut(key) else {
            return true;
        };
        // A clock that went back refills nothing.
        let elapsed = u128::try_from(now.saturating_sub(b.at)).unwrap_or(0);
        let refill = elapsed.saturating_mul(u128::from(rate));
        b.tokens = u128::from(b.tokens)
            .saturating_add(refill)
            .min(u128::from(capacity)) as u64;
        b.at = b.at.max(now);
        if b.tokens >= cost {
            b.tokens -= cost;
            true
        } else {
            false
        }
    }
}

impl Transform for Throttle {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        let key = if self.keys.is_empty() {
            0
        } else {
            super::hash_fields(&event, &self.keys, &mut self.buf)
        };
        if self.admit(key, out.now()) {
            out.emit(event);
        } else {
            self.dropped.inc();
            if self.dropped_output {
                out.emit_to(DROPPED, event);
            }
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, TransformError> {
        let entries: Vec<(u64, Bucket)> =
            self.buckets.oldest_first().map(|(k, b)| (k, *b)).collect();
        serde_json::to_vec(&entries).map_err(|e| TransformError::State(e.to_string()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), TransformError> {
        self.buckets.clear();
        if state.is_empty() {
            return Ok(());
        }
        let entries: Vec<(u64, Bucket)> =
            serde_json::from_slice(state).map_err(|e| TransformError::State(e.to_string()))?;
        for (k, b) in entries {
            self.buckets.insert(k, b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::Emitted;
    use weir_core::{Metadata, Value};

    const S: i64 = 1_000_000_000;

    fn throttle(yaml: &str) -> (ThrottleConfig, Box<dyn Transform>) {
        let cfg: ThrottleConfig = serde_yaml::from_str(yaml).unwrap();
        let t = cfg
            .build(TransformContext {
                id: "t".into(),
                metrics: Default::default(),
            })
            .unwrap();
        (cfg, t)
    }

    fn ev(device: &str) -> Event {
        let mut e = Event::from_message_at("m", Metadata::default(), 0);
        e.fields.insert("device", Value::from(device));
        e
    }

    /// Sends `n` events of `device` at `now`; returns what came out.
    fn send(
        cfg: &ThrottleConfig,
        t: &mut Box<dyn Transform>,
        now: i64,
        device: &str,
        n: usize,
    ) -> Vec<Emitted> {
        let mut out = Emitter::new("t", &cfg.outputs(), now);
        for _ in 0..n {
            t.process(ev(device), &mut out);
        }
        out.take().0
    }

    fn passed(e: &[Emitted]) -> usize {
        e.iter()
            .filter(|e| e.output.is_none())
            .map(|e| e.events.len())
            .sum()
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills_with_the_clock() {
        let (cfg, mut t) = throttle("rate: 10\nburst: 5");
        assert_eq!(passed(&send(&cfg, &mut t, 0, "d", 20)), 5, "the burst");
        assert_eq!(
            passed(&send(&cfg, &mut t, S / 10, "d", 20)),
            1,
            "one token per 100 ms"
        );
        assert_eq!(
            passed(&send(&cfg, &mut t, S / 10 + S / 20, "d", 20)),
            0,
            "half a token is none"
        );
        assert_eq!(
            passed(&send(&cfg, &mut t, 100 * S, "d", 20)),
            5,
            "refill stops at the burst"
        );
    }

    #[test]
    fn each_key_has_its_own_bucket_and_dropped_events_can_be_routed() {
        let (cfg, mut t) = throttle("rate: 2\nkey_fields: [device]\ndropped_output: true");
        let a = send(&cfg, &mut t, 0, "a", 3);
        let b = send(&cfg, &mut t, 0, "b", 3);
        assert_eq!(passed(&a), 2);
        assert_eq!(passed(&b), 2);
        let dropped: usize = a
            .iter()
            .chain(&b)
            .filter(|e| e.output.as_deref() == Some(DROPPED))
            .map(|e| e.events.len())
            .sum();
        assert_eq!(dropped, 2);
    }

    #[test]
    fn persisted_buckets_restore_exactly() {
        let (cfg, mut t) =
            throttle("rate: 1\ninterval: 1m\nburst: 3\nkey_fields: [device]\npersist: true");
        assert!(cfg.stateful());
        send(&cfg, &mut t, 0, "a", 2);
        let snap = t.snapshot().unwrap();
        let (_, mut again) =
            throttle("rate: 1\ninterval: 1m\nburst: 3\nkey_fields: [device]\npersist: true");
        again.restore(&snap).unwrap();
        assert_eq!(
            again.snapshot().unwrap(),
            snap,
            "the same state, the same bytes"
        );
        assert_eq!(
            passed(&send(&cfg, &mut again, S, "a", 5)),
            1,
            "one token left, as before the restart"
        );
        assert!(again.restore(b"garbage").is_err());
    }
}
