//! The `sample` transform: keeps one event in `rate`, by a counter or — with
//! `key_field` — by a stable hash of a field's value, so that all events
//! with the same value (one request, one device) are kept or dropped
//! together.
//!
//! Stateless: hash sampling needs no state and replays identically; the
//! counter is best effort — it restarts at 0 after a restart, which shifts
//! which events are kept but not how many.

use serde::{Deserialize, Serialize};
use weir_core::metrics::Counter;
use weir_core::Event;

use crate::component::{BuildError, Emitter, Transform, TransformConfig, TransformContext};

/// Keeps one event in `rate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Keep one event in this many (1 keeps everything).
    pub rate: u64,
    /// Decide by a hash of this field (a name, or a `.` path into maps)
    /// instead of a counter: events with equal values share the decision.
    /// Events without the field are decided as if it were null.
    #[serde(default)]
    pub key_field: Option<String>,
}

impl TransformConfig for SampleConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.rate == 0 {
            p.push("rate: must be at least 1 (keep one event in `rate`)".to_owned());
        }
        if self.key_field.as_deref() == Some("") {
            p.push("key_field: must name a field".to_owned());
        }
        p
    }

    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        Ok(Box::new(Sample {
            rate: self.rate,
            key: self.key_field.clone().map(|k| vec![k]),
            seen: 0,
            buf: Vec::new(),
            dropped: super::dropped_counter(&ctx, "sampled"),
        }))
    }
}

struct Sample {
    rate: u64,
    key: Option<Vec<String>>,
    seen: u64,
    buf: Vec<u8>,
    dropped: Counter,
}

impl Transform for Sample {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        let keep = match &self.key {
            Some(k) => super::hash_fields(&event, k, &mut self.buf).is_multiple_of(self.rate),
            None => {
                let keep = self.seen.is_multiple_of(self.rate);
                self.seen = self.seen.wrapping_add(1);
                keep
            }
        };
        if keep {
            out.emit(event);
        } else {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Metadata, Value};

    fn sample(yaml: &str) -> Box<dyn Transform> {
        let cfg: SampleConfig = serde_yaml::from_str(yaml).unwrap();
        cfg.build(TransformContext {
            id: "s".into(),
            metrics: Default::default(),
        })
        .unwrap()
    }

    fn kept(t: &mut Box<dyn Transform>, events: Vec<Event>) -> Vec<Event> {
        let mut out = Emitter::new("s", &[], 0);
        for e in events {
            t.process(e, &mut out);
        }
        out.take().0.into_iter().flat_map(|e| e.events).collect()
    }

    fn ev(i: i64, device: &str) -> Event {
        let mut e = Event::from_message_at(format!("m{i}"), Metadata::default(), 0);
        e.fields.insert("device", Value::from(device));
        e.fields.insert("i", Value::Int(i));
        e
    }

    #[test]
    fn the_counter_keeps_the_first_of_every_rate_events() {
        let mut t = sample("rate: 10");
        let got = kept(&mut t, (0..100).map(|i| ev(i, "d")).collect());
        let idx: Vec<&Value> = got.iter().map(|e| e.fields.get("i").unwrap()).collect();
        assert_eq!(
            idx,
            (0..10)
                .map(|i| Value::Int(i * 10))
                .collect::<Vec<_>>()
                .iter()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_key_field_keeps_or_drops_related_events_together() {
        let mut t = sample("rate: 4\nkey_field: device");
        let events: Vec<Event> = (0..4000).map(|i| ev(i, &format!("d{}", i % 200))).collect();
        let got = kept(&mut t, events);
        let mut per_device = std::collections::HashMap::new();
        for e in &got {
            *per_device
                .entry(format!("{:?}", e.fields.get("device")))
                .or_insert(0) += 1;
        }
        assert!(
            per_device.values().all(|n| *n == 20),
            "all 20 events of a kept device are kept"
        );
        // About a quarter of 200 devices.
        assert!(
            (30..=70).contains(&per_device.len()),
            "{} devices kept",
            per_device.len()
        );
        let again = kept(
            &mut sample("rate: 4\nkey_field: device"),
            (0..4000).map(|i| ev(i, &format!("d{}", i % 200))).collect(),
        );
        assert_eq!(again, got, "the decision is the same on every run");
    }
}
