//! Where a component's outputs go, and delivering a batch there.
//!
//! A component output (`source`, `transform.hot`, `parse.errors`) feeds a
//! list of [`Target`]s: sink channels, inline transforms (a task that answers
//! once everything it emitted is delivered), and the input logs of stateful
//! transforms. `deliver` resolves only when every target holds the batch —
//! the promise `SourceOutput::send` makes to sources.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use weir_core::metrics::Counter;
use weir_core::{Event, Metadata};
use weir_plugins::{BoxFuture, Clock, SendError, SourceBatch, SourceOutput, Stream};

use super::ports::Ports;
use crate::channel::Channel;

/// A request to an inline transform: a batch, and where to say it is delivered.
pub struct InlineRequest {
    pub batch: SourceBatch,
    pub done: oneshot::Sender<Result<(), SendError>>,
}

/// The `source` of the tick records a stateful transform's input log
/// carries; not a valid component id, so never a real source.
pub const TICK_SOURCE: &str = "weir.tick";

/// Whether `e` is a tick record of an input log.
pub fn is_tick(e: &Event) -> bool {
    &*e.meta.source == TICK_SOURCE && e.fields.is_empty()
}

/// The input log of a stateful transform. Pushing stamps the log with a
/// tick (a record carrying the time) when the last one is older than the
/// resolution, so that the transform reads its notion of time from the log
/// and makes the same decisions when it replays the log after a crash.
pub struct LogInput {
    pub channel: Channel,
    pub clock: Arc<dyn Clock>,
    /// Ns between ticks while events arrive.
    pub resolution: i64,
    last_tick: AtomicI64,
}

impl LogInput {
    /// The input log over `channel`.
    pub fn new(channel: Channel, clock: Arc<dyn Clock>, resolution: i64) -> LogInput {
        LogInput {
            channel,
            clock,
            resolution,
            last_tick: AtomicI64::new(i64::MIN),
        }
    }

    /// Appends a tick at the clock's time now.
    pub async fn tick(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), SendError> {
        let now = self.clock.now();
        let tick = Event {
            timestamp: now,
            fields: Default::default(),
            meta: Metadata {
                source: TICK_SOURCE.into(),
                ..Metadata::default()
            },
        };
        self.channel
            .push(Arc::new(SourceBatch::unmarked(vec![tick])), shutdown)
            .await
            .map_err(|_| SendError::Shutdown)?;
        self.last_tick.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    async fn push(
        &self,
        batch: Arc<SourceBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SendError> {
        let last = self.last_tick.load(Ordering::SeqCst);
        let events = batch.len();
        if events > 0 && self.clock.now().saturating_sub(last) >= self.resolution {
            self.tick(shutdown).await?;
        }
        self.channel
            .push(batch, shutdown)
            .await
            .map_err(|_| SendError::Shutdown)
    }
}

/// One destination of a component output.
#[derive(Clone)]
pub enum Target {
    Channel(Channel),
    Inline(mpsc::Sender<InlineRequest>),
    Log(Arc<LogInput>),
}

/// The targets of each output of one component (`None` = the default output).
#[derive(Clone, Default)]
pub struct Outputs(pub HashMap<Option<String>, Vec<Target>>);

impl Outputs {
    /// The targets of `output`.
    pub fn get(&self, output: Option<&str>) -> &[Target] {
        self.0
            .get(&output.map(str::to_owned))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any output has a target.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(Vec::is_empty)
    }
}

/// Delivers `batch` to every target, in turn; resolves when all hold it.
pub async fn deliver(
    targets: &[Target],
    batch: SourceBatch,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SendError> {
    if batch.is_empty() || targets.is_empty() {
        return Ok(());
    }
    let shared = Arc::new(batch);
    for t in targets {
        match t {
            Target::Channel(ch) => ch
                .push(shared.clone(), shutdown)
                .await
                .map_err(|_| SendError::Shutdown)?,
            Target::Log(log) => log.push(shared.clone(), shutdown).await?,
            Target::Inline(tx) => {
                let (done, answer) = oneshot::channel();
                let req = InlineRequest {
                    batch: (*shared).clone(),
                    done,
                };
                tokio::select! {
                    sent = tx.send(req) => sent.map_err(|_| SendError::Shutdown)?,
                    _ = shutdown.wait_for(|s| *s) => return Err(SendError::Shutdown),
                }
                answer.await.map_err(|_| SendError::Shutdown)??;
            }
        }
    }
    Ok(())
}

/// The stream name of what a component emits on `output` for events of
/// `input`: derived events must not collide with their input's marks in a
/// channel that reads both (a sink with `inputs: [source, transform]`).
pub fn derived_stream(input: &Stream, component: &str, output: Option<&str>) -> Stream {
    let name = match output {
        Some(o) => format!("{}>{component}.{o}", input.name),
        None => format!("{}>{component}", input.name),
    };
    Stream {
        name: name.into(),
        kind: input.kind,
    }
}

/// A source's outputs, as the source sees them.
pub struct SourceFanout {
    pub id: String,
    pub outputs: Arc<Ports>,
    pub shutdown: watch::Receiver<bool>,
    /// Events delivered on the default output.
    pub events: Counter,
    /// The source's registry view, for the counters of named outputs.
    pub metrics: weir_core::metrics::Registry,
}

impl SourceFanout {
    /// The counter of events the source handed to its channels on `output`.
    pub fn sent_counter(metrics: &weir_core::metrics::Registry, output: &str) -> Counter {
        metrics.counter(
            "weir_source_sent_events_total",
            "Events a source handed to the channels downstream, by output.",
            &[("output", output)],
        )
    }
}

impl SourceOutput for SourceFanout {
    fn send(&self, batch: SourceBatch) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let n = batch.len() as u64;
            let mut shutdown = self.shutdown.clone();
            self.outputs.deliver(None, batch, &mut shutdown).await?;
            self.events.add(n);
            Ok(())
        })
    }

    fn send_to<'a>(
        &'a self,
        output: &'a str,
        mut batch: SourceBatch,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            if let Some(s) = &batch.stream {
                batch.stream = Some(derived_stream(s, &self.id, Some(output)));
            }
            let n = batch.len() as u64;
            let mut shutdown = self.shutdown.clone();
            self.outputs
                .deliver(Some(output), batch, &mut shutdown)
                .await?;
            Self::sent_counter(&self.metrics, output).add(n);
            Ok(())
        })
    }
}
