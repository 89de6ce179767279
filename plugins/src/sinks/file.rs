//! The `file` sink: events appended as lines to a file, fsynced before they
//! are acknowledged. Delivery is at least once: a crash between the fsync and
//! the acknowledgement writes that batch again.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::lines::{self, LineEncoding};
use crate::component::{BuildError, SinkConfig, SinkContext, Task};

/// Appends events to a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to; created if missing.
    pub path: PathBuf,
    /// `json` (default) or `text`.
    #[serde(default)]
    pub encoding: LineEncoding,
    /// fsync after each batch (default true); false leaves write-back to the OS.
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

impl SinkConfig for FileSinkConfig {
    fn problems(&self) -> Vec<String> {
        if self.path.as_os_str().is_empty() {
            vec!["path: must not be empty".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn build(&self, ctx: SinkContext) -> Result<Task, BuildError> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| BuildError::Setup(format!("opening {}: {e}", self.path.display())))?;
        let fsync = self.fsync;
        let write = move |b: &[u8]| -> std::io::Result<()> {
            f.write_all(b)?;
            if fsync {
                f.sync_data()?;
            }
            Ok(())
        };
        Ok(Box::pin(lines::run(ctx, self.encoding, write)))
    }
}
