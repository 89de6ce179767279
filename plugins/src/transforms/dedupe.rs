//! The `dedupe` transform: drops an event whose chosen fields equal those of
//! an event seen before, remembering up to `max_entries` distinct events
//! (least recently seen forgotten first) and, with `ttl`, each for that long
//! after it was first seen (by the transform's time, `out.now()`).
//!
//! Events are remembered by a 64-bit hash (XXH3) of the fields: with 10,000
//! entries the chance that a new event is taken for a duplicate is about 1
//! in 2^51 per event.
//!
//! Stateless by default — a restart forgets what was seen, so a duplicate
//! arriving just after a restart passes. With `persist: true` the cache is
//! checkpointed (the transform becomes stateful: input log, replay).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::metrics::Counter;
use weir_core::units::opt_duration;
use weir_core::Event;

use super::lru::Lru;
use crate::component::{
    BuildError, Emitter, Transform, TransformConfig, TransformContext, TransformError,
};

/// Drops repeated events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// Fields (names or `.` paths) that make two events the same; all
    /// fields when empty. A missing field counts as null.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Most distinct events remembered.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Forget an event this long after it was first seen; unset: only
    /// `max_entries` bounds the memory.
    #[serde(default, with = "opt_duration")]
    pub ttl: Option<Duration>,
    /// Checkpoint the cache, so a restart does not forget it.
    #[serde(default)]
    pub persist: bool,
}

fn default_max_entries() -> usize {
    10_000
}

impl TransformConfig for DedupeConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_entries == 0 {
            p.push("max_entries: must be at least 1".to_owned());
        }
        if self.ttl.is_some_and(|t| t.is_zero()) {
            p.push("ttl: must be longer than 0".to_owned());
        }
        p
    }

    fn stateful(&self) -> bool {
        self.persist
    }

    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        Ok(Box::new(Dedupe {
            fields: self.fields.clone(),
            ttl: self
                .ttl
                .map(|t| i64::try_from(t.as_nanos()).unwrap_or(i64::MAX)),
            seen: Lru::new(self.max_entries),
            buf: Vec::new(),
            dropped: super::dropped_counter(&ctx, "duplicate"),
        }))
    }
}

struct Dedupe {
    fields: Vec<String>,
    ttl: Option<i64>,
    /// Hash → when first seen.
    seen: Lru<i64>,
    buf: Vec<u8>,
    dropped: Counter,
}

impl Transform for Dedupe {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        let key = if self.fields.is_empty() {
            super::hash_all_fields(&event, &mut self.buf)
        } else {
            super::hash_fields(&event, &self.fields, &mut self.buf)
        };
        let now = out.now();
        let duplicate = match self.seen.get_mut(key) {
            Some(first) => match self.ttl {
                Some(ttl) if now.saturating_sub(*first) >= ttl => {
                    *first = now;
                    false
                }
                _ => true,
            },
            None => {
                self.seen.insert(key, now);
                false
            }
        };
        if duplicate {
            self.dropped.inc();
        } else {
            out.emit(event);
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, TransformError> {
        let entries: Vec<(u64, i64)> = self.seen.oldest_first().map(|(k, t)| (k, *t)).collect();
        serde_json::to_vec(&entries).map_err(|e| TransformError::State(e.to_string()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), TransformError> {
        self.seen.clear();
        if state.is_empty() {
            return Ok(());
        }
        let entries: Vec<(u64, i64)> =
            serde_json::from_slice(state).map_err(|e| TransformError::State(e.to_string()))?;
        for (k, t) in entries {
            self.seen.insert(k, t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Metadata, Value};

    const S: i64 = 1_000_000_000;

    fn dedupe(yaml: &str) -> Box<dyn Transform> {
        let cfg: DedupeConfig = serde_yaml::from_str(yaml).unwrap();
        cfg.build(TransformContext {
            id: "d".into(),
            metrics: Default::default(),
        })
        .unwrap()
    }

    fn ev(id: i64, other: &str) -> Event {
        let mut e = Event::from_message_at(other, Metadata::default(), 0);
        e.fields.insert("id", Value::Int(id));
        e
    }

    fn passed(t: &mut Box<dyn Transform>, now: i64, events: Vec<Event>) -> usize {
        let mut out = Emitter::new("d", &[], now);
        for e in events {
            t.process(e, &mut out);
        }
        out.take().0.iter().map(|e| e.events.len()).sum()
    }

    #[test]
    fn repeats_of_the_chosen_fields_are_dropped() {
        let mut t = dedupe("fields: [id]");
        assert_eq!(
            passed(&mut t, 0, vec![ev(1, "a"), ev(1, "b"), ev(2, "a")]),
            2
        );
        let mut all = dedupe("{}");
        assert_eq!(
            passed(&mut all, 0, vec![ev(1, "a"), ev(1, "b"), ev(1, "a")]),
            2,
            "all fields by default"
        );
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_least_recently_seen() {
        let mut t = dedupe("fields: [id]\nmax_entries: 2");
        assert_eq!(
            passed(&mut t, 0, vec![ev(1, ""), ev(2, ""), ev(1, ""), ev(3, "")]),
            3
        );
        assert_eq!(
            passed(&mut t, 0, vec![ev(2, "")]),
            1,
            "2 was forgotten to make room for 3"
        );
        assert_eq!(
            passed(&mut t, 0, vec![ev(3, "")]),
            0,
            "3 is still remembered"
        );
        assert_eq!(
            passed(&mut t, 0, vec![ev(1, "")]),
            1,
            "1 was forgotten to make room for 2"
        );
    }

    #[test]
    fn entries_expire_after_the_ttl_by_the_transform_clock() {
        let mut t = dedupe("fields: [id]\nttl: 10s");
        assert_eq!(passed(&mut t, 0, vec![ev(1, "")]), 1);
        assert_eq!(passed(&mut t, 9 * S, vec![ev(1, "")]), 0);
        assert_eq!(
            passed(&mut t, 10 * S, vec![ev(1, "")]),
            1,
            "expired: seen anew"
        );
        assert_eq!(passed(&mut t, 15 * S, vec![ev(1, "")]), 0);
    }

    #[test]
    fn a_persisted_cache_survives_a_restore() {
        let mut t = dedupe("fields: [id]\npersist: true");
        passed(&mut t, 0, vec![ev(1, ""), ev(2, "")]);
        let snap = t.snapshot().unwrap();
        let mut again = dedupe("fields: [id]\npersist: true");
        again.restore(&snap).unwrap();
        assert_eq!(
            passed(&mut again, 0, vec![ev(1, ""), ev(2, ""), ev(3, "")]),
            1
        );
    }
}
