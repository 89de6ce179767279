//! A running component's outputs, patchable while it runs.
//!
//! Every source and transform delivers through its `Ports`: the current
//! [`Outputs`] (replaced when a reload adds or removes a downstream) and the
//! taps attached to it. A delivery takes the outputs current when it starts
//! and finishes on them: a batch is never split between two wirings, and a
//! downstream removed by a reload still receives (and holds) a batch that
//! was on its way to it.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use weir_plugins::{SendError, SourceBatch};

use super::route::{deliver, Outputs};
use super::tap::Taps;

/// The outputs of one running component.
pub struct Ports {
    component: String,
    outputs: RwLock<Arc<Outputs>>,
    pub taps: Taps,
}

impl Ports {
    /// Ports of `component` wired to `outputs`.
    pub fn new(component: &str, outputs: Outputs) -> Arc<Ports> {
        Arc::new(Ports {
            component: component.to_owned(),
            outputs: RwLock::new(Arc::new(outputs)),
            taps: Taps::default(),
        })
    }

    /// The wiring now.
    pub fn current(&self) -> Arc<Outputs> {
        self.outputs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rewires the component; deliveries already under way finish on the old wiring.
    pub fn replace(&self, outputs: Outputs) {
        *self.outputs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(outputs);
    }

    /// Shows `batch` to the taps of `output`, then delivers it to every
    /// target of `output`; resolves when all hold it.
    pub async fn deliver(
        &self,
        output: Option<&str>,
        batch: SourceBatch,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SendError> {
        if self.taps.active() {
            self.taps
                .offer(&self.component, output, &batch.events_from(0));
        }
        let outputs = self.current();
        deliver(outputs.get(output), batch, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use weir_core::metrics::Registry;
    use weir_core::{Event, Metadata};

    use super::*;
    use crate::channel::{Channel, ChannelConfig, ChannelType};
    use crate::runtime::route::Target;

    fn memory_channel() -> Channel {
        let cfg = ChannelConfig {
            kind: ChannelType::Memory,
            max_bytes: Some(weir_core::units::ByteSize(1 << 30)),
            ..ChannelConfig::default()
        };
        Channel::open(
            "bench",
            &cfg,
            std::path::Path::new("/nonexistent"),
            &Registry::new(),
        )
        .unwrap()
    }

    fn batch(n: usize) -> SourceBatch {
        let events = (0..n)
            .map(|i| {
                Event::from_message(
                    format!("line {i:09} {}", "x".repeat(85)),
                    Metadata::default(),
                )
            })
            .collect();
        SourceBatch::unmarked(events)
    }

    #[tokio::test]
    async fn a_rewired_component_delivers_to_its_new_targets_only() {
        let (a, b) = (memory_channel(), memory_channel());
        let mut first = Outputs::default();
        first.0.insert(None, vec![Target::Channel(a.clone())]);
        let ports = Ports::new("c", first);
        let (_tx, mut stop) = watch::channel(false);
        ports.deliver(None, batch(2), &mut stop).await.unwrap();
        let mut second = Outputs::default();
        second.0.insert(None, vec![Target::Channel(b.clone())]);
        ports.replace(second);
        ports.deliver(None, batch(3), &mut stop).await.unwrap();
        let got = |ch: &Channel| {
            let ch = ch.clone();
            async move {
                let (_t, mut s) = watch::channel(false);
                ch.next_batch(100, 1 << 20, Some(Duration::ZERO), &mut s)
                    .await
                    .map_or(0, |v| v.len())
            }
        };
        assert_eq!(got(&a).await, 2);
        assert_eq!(got(&b).await, 3);
    }

    /// The cost of ports and taps on the hot path, against the delivery
    /// the runtime made before (`route::deliver`), in one binary:
    /// `cargo test --release -p weir-agent tap_cost -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn tap_cost_on_the_hot_path() {
        const BATCHES: usize = 4000;
        const EVENTS: usize = 256;
        async fn run(mode: &str, template: &SourceBatch) -> f64 {
            let ch = memory_channel();
            let mut outputs = Outputs::default();
            outputs.0.insert(None, vec![Target::Channel(ch.clone())]);
            let ports = Ports::new("bench", outputs.clone());
            let _feed = (mode == "tapped").then(|| ports.taps.attach(None, 10).unwrap());
            let (_tx, mut stop) = watch::channel(false);
            let reader = {
                let ch = ch.clone();
                tokio::spawn(async move {
                    let (_t, mut s) = watch::channel(false);
                    let mut n = 0;
                    while n < BATCHES * EVENTS {
                        let Some(got) = ch.next_batch(4096, 64 << 20, None, &mut s).await else {
                            break;
                        };
                        n += got.len();
                        if let Some((id, _)) = got.last() {
                            let _ = ch.ack(id + 1).await;
                        }
                    }
                })
            };
            let start = Instant::now();
            for _ in 0..BATCHES {
                let b = template.clone();
                if mode == "before" {
                    deliver(outputs.get(None), b, &mut stop).await.unwrap();
                } else {
                    ports.deliver(None, b, &mut stop).await.unwrap();
                }
            }
            reader.await.unwrap();
            (BATCHES * EVENTS) as f64 / start.elapsed().as_secs_f64()
        }
        let template = batch(EVENTS);
        let mut results: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for _ in 0..5 {
            for mode in ["before", "untapped", "tapped"] {
                results
                    .entry(mode)
                    .or_default()
                    .push(run(mode, &template).await);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let base = median(results.get_mut("before").unwrap());
        for (mode, v) in &mut results {
            let m = median(v);
            println!("{mode:>9}: {m:>12.0} events/s  ({:.3} of before)", m / base);
        }
    }
}
