//! The contracts between components and the agent's runtime.
//!
//! - A source gets a [`SourceOutput`]; `send` resolves only when every
//!   durable holder downstream (sink channels, the input logs of stateful
//!   transforms) has the batch, and only then may the source advance its own
//!   checkpoint or acknowledge its peer. Every event carries a [`Mark`] in its
//!   [`Stream`], which is how a channel recognises an event it already holds
//!   when the source delivers it again after a crash.
//! - A transform ([`Transform`]) turns each input event into zero, one or many
//!   events on its default output, on named outputs, or on its dead-letter
//!   output, and may keep state and timers. The runtime keeps the marks exact
//!   whatever it emits.
//! - A sink gets a [`SinkInput`]; it acknowledges a channel range only once
//!   its destination has made the data durable.

mod agent;
mod sink;
mod source;
mod transform;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use weir_core::metrics::Registry;

pub use agent::{AgentInfo, SinkSnapshot};
pub use sink::{AckError, BlockingInput, ReadError, Record, SinkInput};
pub use source::{Mark, SendError, SourceBatch, SourceOutput, Stream, StreamKind};
pub use transform::{
    Clock, DeadLetter, Emitted, Emitter, ManualClock, SystemClock, Transform, TransformError,
    ERRORS_OUTPUT,
};

use crate::state::StateStore;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running component: resolves when it has stopped.
pub type Task = BoxFuture<'static, Result<(), ComponentError>>;

/// What a source is given to run.
pub struct SourceContext {
    pub id: String,
    pub host: Arc<str>,
    /// Where events go: `send` for the default output, `send_to` for named
    /// ones such as [`ERRORS_OUTPUT`].
    pub output: Arc<dyn SourceOutput>,
    pub state: StateStore,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Registry,
    /// For each of this source's ordered streams (names start with
    /// `<source id>/`), the position every durable holder downstream already
    /// has — the minimum across them, 0 when one lacks the stream. A source
    /// resumes from here when it is past its own checkpoint, or when its
    /// checkpoints were lost with a damaged state database.
    pub held: HashMap<String, u64>,
}

/// What a sink is given to run.
pub struct SinkContext {
    pub id: String,
    /// The agent's host name (the pipeline's `host`, or the machine's), for
    /// sinks that derive a stable identity from it (an MQTT client id).
    pub host: Arc<str>,
    pub input: Arc<dyn SinkInput>,
    pub state: StateStore,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Registry,
    /// The agent as a whole (id, version, uptime, every sink's figures),
    /// for the collector sink's heartbeat.
    pub agent: AgentInfo,
}

/// What a transform is given when built.
pub struct TransformContext {
    pub id: String,
    pub metrics: Registry,
}

/// Why a running component stopped with an error. The runtime logs it and
/// keeps the rest of the pipeline running.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The state database failed in a way retrying did not fix.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A blocking helper task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The component cannot go on; the message says why and what to do.
    #[error("{0}")]
    Fatal(String),
}

/// Why a component could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Values serde accepted but the component cannot use (also reported by
    /// `weir validate` through `problems()`).
    #[error("{}", .0.join("; "))]
    Config(Vec<String>),
    /// A resource the component needs at start (a compiled script, a TLS
    /// file, a client) could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// A problem inside a text value of a component's config (a script, a
/// condition), at a line and column of that text, so that `weir validate`
/// can point at the right line: in the pipeline file for an inline value,
/// or in the file the value was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextProblem {
    /// Key path of the value inside the component's config (`source`, `routes.hot`).
    pub key: String,
    /// The file the text was read from, when it is not inline.
    pub file: Option<std::path::PathBuf>,
    /// 1-based line and column inside the text.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A transform's configuration.
pub trait TransformConfig: Debug + Send + Sync {
    /// Value problems serde cannot see, for `weir validate`.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// Problems located inside text values (a script that does not
    /// compile), for `weir validate`; `id` is the component's id.
    fn text_problems(&self, _id: &str) -> Vec<TextProblem> {
        Vec::new()
    }
    /// Whether the transform emits on its default output; a router emits
    /// only on named ones, so reading its default output is an error.
    fn default_output(&self) -> bool {
        true
    }
    /// Named outputs besides the default one and [`ERRORS_OUTPUT`], which
    /// every transform has; downstream components name them `<id>.<output>`.
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether the transform keeps state that must survive a restart
    /// (windows, script `state`). The runtime gives such a transform a
    /// durable input log and checkpoints its state with the log position it
    /// reflects; see `docs/architecture.md`.
    fn stateful(&self) -> bool {
        false
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
    /// Named outputs besides the default one and [`ERRORS_OUTPUT`].
    fn outputs(&self) -> Vec<String> {
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
