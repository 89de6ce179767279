//! The contracts between components and the agent's runtime.
//!
//! A source gets a [`SourceOutput`]; `send` resolves only when every channel
//! downstream holds the batch (durably, for disk channels), and only then may
//! the source advance its checkpoint. A sink gets a [`SinkInput`]; it acks a
//! spool range only once its destination has made the data durable.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use weir_core::metrics::Registry;
use weir_core::Event;

use crate::state::StateStore;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running component: resolves when it has stopped.
pub type Task = BoxFuture<'static, Result<(), ComponentError>>;

/// Events a source hands to the runtime in one piece.
#[derive(Debug, Clone, Default)]
pub struct SourceBatch {
    pub events: Vec<Event>,
    /// A stable name for the replayable stream these events come from (for a
    /// file: the source id and the file's identity), if the source can replay.
    pub stream: Option<Arc<str>>,
    /// Per event, the stream position just past it; empty when `stream` is `None`.
    /// Channels skip events at or below the position they already hold, so a
    /// source that re-reads after a crash does not duplicate them.
    pub ends: Vec<u64>,
}

impl SourceBatch {
    /// Keeps the events for which `keep` is true, with their positions, so a
    /// transform that drops events leaves `ends` aligned with `events`.
    pub fn retain(&mut self, mut keep: impl FnMut(&Event) -> bool) {
        if self.ends.len() == self.events.len() {
            let mut i = 0;
            let ends = &mut self.ends;
            self.events.retain(|e| {
                let k = keep(e);
                if !k {
                    ends.remove(i);
                } else {
                    i += 1;
                }
                k
            });
        } else {
            self.events.retain(|e| keep(e));
        }
    }
}

/// Why a send did not complete.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The agent is shutting down; the batch may be only partly taken.
    #[error("agent shutting down")]
    Shutdown,
}

/// Where a source sends its events; implemented by the runtime.
pub trait SourceOutput: Send + Sync {
    /// Resolves once every downstream channel holds the batch.
    fn send(&self, batch: SourceBatch) -> BoxFuture<'_, Result<(), SendError>>;
}

/// Where a sink reads its events from; implemented by the runtime over the sink's channel.
pub trait SinkInput: Send + Sync {
    /// The next records after those already read, with their channel ids.
    /// Waits up to `wait` for the first one (forever when `None`); an empty
    /// batch means the wait ran out, `None` means shutdown. Await it to
    /// completion: records read by a dropped call are re-read only after a
    /// `rewind` or a restart.
    fn next_batch(
        &self,
        max_events: usize,
        max_bytes: usize,
        wait: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Option<Vec<(u64, Event)>>>;
    /// Releases every record with an id below `end_id`.
    fn ack(&self, end_id: u64) -> BoxFuture<'_, Result<(), String>>;
    /// Reads again from the first unacknowledged record.
    fn rewind(&self);
}

/// What a source is given to run.
pub struct SourceContext {
    pub id: String,
    pub host: Arc<str>,
    pub output: Arc<dyn SourceOutput>,
    pub state: StateStore,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Registry,
}

/// What a sink is given to run.
pub struct SinkContext {
    pub id: String,
    pub input: Arc<dyn SinkInput>,
    pub state: StateStore,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Registry,
}

/// A component failed while running.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

/// A component could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// A transform: changes, drops or routes events between sources and
/// channels. It runs inline on the source's batch, before the batch reaches
/// any channel, so it sees every event exactly as often as the channels do
/// and positions stay exact. A transform that drops events removes their
/// positions with them ([`SourceBatch::retain`]).
pub trait Transform: Send {
    /// Transforms `batch` in place.
    fn apply(&mut self, batch: &mut SourceBatch);
}

/// What a transform is given when built.
pub struct TransformContext {
    pub id: String,
    pub metrics: Registry,
}

/// A transform's configuration.
pub trait TransformConfig: Debug + Send + Sync {
    /// Value problems serde cannot see, for `weir validate`.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// Builds the transform.
    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError>;
}

/// A source's configuration.
pub trait SourceConfig: Debug + Send + Sync {
    /// Value problems serde cannot see (ranges, empty lists), for `weir validate`.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// Starts the source.
    fn build(&self, ctx: SourceContext) -> Result<Task, BuildError>;
}

/// A sink's configuration.
pub trait SinkConfig: Debug + Send + Sync {
    /// Value problems serde cannot see, for `weir validate`.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// Starts the sink.
    fn build(&self, ctx: SinkContext) -> Result<Task, BuildError>;
}
