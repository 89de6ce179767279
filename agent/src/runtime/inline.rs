//! A stateless transform's task: takes batches from upstream components,
//! runs the transform on each event, and delivers what it emitted to each
//! output's targets before answering — so a source's `send` still resolves
//! only when everything derived from its batch is held downstream.
//!
//! Marks stay exact: each emitted event carries its input's mark with a
//! `sub` numbering the events derived from that input, under a stream name
//! derived from the input's (`route::derived_stream`). Events emitted by a
//! timer have no input and no mark.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::debug;
use weir_core::metrics::{Counter, Registry};
use weir_plugins::{Clock, Emitted, Emitter, SendError, SourceBatch, Stream, Transform};

use super::ports::Ports;
use super::route::{derived_stream, InlineRequest};

/// Counters of one transform.
pub struct TransformMetrics {
    pub events_in: Counter,
    registry: Registry,
    id: String,
    out: HashMap<Option<String>, Counter>,
    errors: HashMap<&'static str, Counter>,
}

impl TransformMetrics {
    /// Registers the counters of transform `id`.
    pub fn new(registry: &Registry, id: &str) -> TransformMetrics {
        TransformMetrics {
            events_in: registry.counter(
                "weir_transform_events_in_total",
                "Events a transform received.",
                &[("component", id)],
            ),
            registry: registry.clone(),
            id: id.to_owned(),
            out: HashMap::new(),
            errors: HashMap::new(),
        }
    }

    /// Counts what one call emitted and the failures among it.
    pub fn count(&mut self, emitted: &[Emitted], failures: &[&'static str]) {
        for e in emitted {
            let c = self.out.entry(e.output.clone()).or_insert_with(|| {
                self.registry.counter(
                    "weir_transform_events_out_total",
                    "Events a transform emitted, by output.",
                    &[
                        ("component", self.id.as_str()),
                        ("output", e.output.as_deref().unwrap_or("default")),
                    ],
                )
            });
            c.add(e.events.len() as u64);
        }
        for &reason in failures {
            self.errors
                .entry(reason)
                .or_insert_with(|| {
                    self.registry.counter(
                        "weir_transform_errors_total",
                        "Events a transform sent to its dead-letter output, by reason.",
                        &[("component", self.id.as_str()), ("reason", reason)],
                    )
                })
                .inc();
        }
    }
}

/// A stateless transform and where its outputs go.
pub struct Inline {
    pub id: String,
    pub transform: Box<dyn Transform>,
    /// Named outputs the transform declares.
    pub declared: Vec<String>,
    pub outputs: Arc<Ports>,
    pub clock: Arc<dyn Clock>,
    pub metrics: TransformMetrics,
    /// Derived stream names, by (input stream, output).
    names: HashMap<(Stream, Option<String>), Stream>,
}

impl Inline {
    /// A task body for `transform`.
    pub fn new(
        id: String,
        transform: Box<dyn Transform>,
        declared: Vec<String>,
        outputs: Arc<Ports>,
        clock: Arc<dyn Clock>,
        metrics: TransformMetrics,
    ) -> Inline {
        Inline {
            id,
            transform,
            declared,
            outputs,
            clock,
            metrics,
            names: HashMap::new(),
        }
    }

    /// Serves requests until `stop`, then finishes those already queued.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<InlineRequest>,
        mut stop: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let timer = self.transform.next_timer();
            let sleep = timer.map(|t| {
                let ns = t.saturating_sub(self.clock.now()).max(0) as u64;
                tokio::time::Instant::now() + std::time::Duration::from_nanos(ns)
            });
            enum Next {
                Request(Option<InlineRequest>),
                Timer,
                Stop,
            }
            let next = tokio::select! {
                req = rx.recv() => Next::Request(req),
                _ = sleep_until(sleep) => Next::Timer,
                _ = stop.wait_for(|s| *s) => Next::Stop,
            };
            match next {
                Next::Request(Some(req)) => {
                    let res = self.handle(req.batch, &mut shutdown).await;
                    let _ = req.done.send(res);
                }
                Next::Request(None) => break,
                Next::Timer => self.fire_timers(&mut shutdown).await,
                Next::Stop => {
                    rx.close();
                    while let Some(req) = rx.recv().await {
                        let res = self.handle(req.batch, &mut shutdown).await;
                        let _ = req.done.send(res);
                    }
                    break;
                }
            }
        }
        debug!(transform = %self.id, "Transform stopped.");
    }

    async fn handle(
        &mut self,
        batch: SourceBatch,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SendError> {
        let mut out = Emitter::new(&self.id, &self.declared, self.clock.now());
        self.metrics.events_in.add(batch.len() as u64);
        let SourceBatch {
            stream,
            events,
            marks,
            releases,
            ..
        } = batch.into_events();
        for (i, e) in events.into_iter().enumerate() {
            out.set_input(marks.get(i).copied());
            self.transform.process(e, &mut out);
        }
        let (emitted, failures) = out.take();
        self.metrics.count(&emitted, &failures);
        let mut by_output: HashMap<Option<String>, Emitted> =
            emitted.into_iter().map(|e| (e.output.clone(), e)).collect();
        // Every output with targets gets its events, or the releases alone.
        let wired: Vec<Option<String>> = self.outputs.current().0.keys().cloned().collect();
        for output in wired {
            let e = by_output.remove(&output).unwrap_or_default();
            if e.events.is_empty() && releases.is_empty() {
                continue;
            }
            let batch = SourceBatch {
                stream: stream.as_ref().map(|s| self.derived(s, output.as_deref())),
                events: e.events,
                lines: None,
                marks: if stream.is_some() {
                    e.marks
                } else {
                    Vec::new()
                },
                releases: if stream.is_some() {
                    releases.clone()
                } else {
                    Vec::new()
                },
            };
            self.outputs
                .deliver(output.as_deref(), batch, shutdown)
                .await?;
        }
        self.check_timers(shutdown).await;
        Ok(())
    }

    /// Timers due by the clock fire even while inputs keep the task busy.
    async fn check_timers(&mut self, shutdown: &mut watch::Receiver<bool>) {
        if self
            .transform
            .next_timer()
            .is_some_and(|t| t <= self.clock.now())
        {
            self.fire_timers(shutdown).await;
        }
    }

    async fn fire_timers(&mut self, shutdown: &mut watch::Receiver<bool>) {
        let now = self.clock.now();
        let mut out = Emitter::new(&self.id, &self.declared, now);
        // Bounded: a transform asking for a timer in the past again and
        // again must not spin here.
        for _ in 0..1024 {
            match self.transform.next_timer() {
                Some(t) if t <= now => self.transform.on_timer(&mut out),
                _ => break,
            }
        }
        let (emitted, failures) = out.take();
        self.metrics.count(&emitted, &failures);
        for e in emitted {
            let batch = SourceBatch::unmarked(e.events);
            // At shutdown the timer's events are lost with the transform's
            // (unsaved) state: this transform is stateless by contract.
            let _ = self
                .outputs
                .deliver(e.output.as_deref(), batch, shutdown)
                .await;
        }
    }

    fn derived(&mut self, input: &Stream, output: Option<&str>) -> Stream {
        if self.names.len() > 4096 {
            self.names.clear();
        }
        let key = (input.clone(), output.map(str::to_owned));
        self.names
            .entry(key)
            .or_insert_with(|| derived_stream(input, &self.id, output))
            .clone()
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
