//! The `stdout` sink: events as lines on standard output, for debugging and pipes.

use serde::{Deserialize, Serialize};

use super::lines::{self, LineEncoding};
use crate::component::{BuildError, SinkConfig, SinkContext, Task};

/// Writes events to standard output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `json` (default) or `text` (the message alone).
    #[serde(default)]
    pub encoding: LineEncoding,
}

impl SinkConfig for StdoutSinkConfig {
    fn build(&self, ctx: SinkContext) -> Result<Task, BuildError> {
        Ok(Box::pin(lines::run(
            ctx,
            self.encoding,
            lines::stdout_writer(),
        )))
    }
}
