//! Configuration of the `file` source.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, ByteSize};

/// Where to start in a file that has no checkpoint when the agent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read existing content.
    #[default]
    Beginning,
    /// Skip existing content; read only what is appended. Files that appear
    /// while the agent runs are always read from their beginning.
    End,
}

/// What to do with bytes that are not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InvalidUtf8 {
    /// Replace invalid sequences with U+FFFD; `message` stays a string.
    #[default]
    Replace,
    /// Keep the exact bytes: `message` becomes a bytes value for such lines.
    Preserve,
}

/// Tails files matched by glob patterns, across rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of files to read; re-evaluated while running, so new files are picked up.
    pub include: Vec<String>,
    /// Glob patterns of files to leave out, even if `include` matches them.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `beginning` (default) or `end`, for files without a checkpoint at start-up.
    #[serde(default)]
    pub start_at: StartAt,
    /// Longest line kept; the rest of a longer line is dropped and counted in
    /// `weir_file_truncated_lines_total`. Bounds memory per file.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// `replace` (default) or `preserve` invalid UTF-8.
    #[serde(default)]
    pub invalid_utf8: InvalidUtf8,
    /// Field that receives the file's path; unset (default) adds none.
    #[serde(default)]
    pub path_field: Option<String>,
    /// How often to look for new files and poll for growth when change
    /// notification is unavailable or missed an event.
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// Bytes read from a file at a time; one read becomes one batch to the channels.
    #[serde(default = "default_read_bytes")]
    pub read_bytes: ByteSize,
    /// How often positions are written to the state database. Between writes
    /// the channels hold the exact positions, so a crash re-reads at most this
    /// much and the channels drop what they already hold.
    #[serde(default = "default_checkpoint_interval", with = "duration")]
    pub checkpoint_interval: Duration,
    /// How long a file that left the glob (rotated away or deleted) stays
    /// open after its last data, for a writer that has not reopened yet. Then
    /// an unfinished last line (no newline) is sent as it is, and the file closed.
    #[serde(default = "default_rotate_wait", with = "duration")]
    pub rotate_wait: Duration,
    /// Bytes at the start of a file that identify it (with its inode), so a
    /// new file that reuses an inode is not mistaken for the old one.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: u64,
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_read_bytes() -> ByteSize {
    ByteSize(512 << 10)
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}
fn default_fingerprint_bytes() -> u64 {
    256
}

impl FileSourceConfig {
    /// Value problems serde cannot catch.
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.include.is_empty() {
            p.push("include: at least one glob pattern is required".to_owned());
        }
        for pat in self.include.iter().chain(&self.exclude) {
            if let Err(e) = glob::Pattern::new(pat) {
                p.push(format!("invalid glob pattern {pat:?}: {e}"));
            }
        }
        if self.max_line_bytes.bytes() < 16 {
            p.push("max_line_bytes: must be at least 16B".to_owned());
        }
        if self.read_bytes.bytes() < 4096 || self.read_bytes.bytes() > (64 << 20) {
            p.push("read_bytes: must be between 4KiB and 64MiB".to_owned());
        }
        use weir_core::units::duration_problem;
        let ms = Duration::from_millis;
        let h = |n: u64| Duration::from_secs(n * 3600);
        p.extend(duration_problem(
            "poll_interval",
            self.poll_interval,
            ms(10),
            h(1),
        ));
        p.extend(duration_problem(
            "checkpoint_interval",
            self.checkpoint_interval,
            ms(10),
            h(1),
        ));
        p.extend(duration_problem(
            "rotate_wait",
            self.rotate_wait,
            ms(0),
            h(24),
        ));
        if !(16..=65536).contains(&self.fingerprint_bytes) {
            p.push("fingerprint_bytes: must be between 16 and 65536".to_owned());
        }
        p
    }
}
