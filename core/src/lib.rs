//! Shared foundations of Weir: the event model, the two encodings an event has
//! (the compact spool codec and the Kafka RecordBatch v2 wire format), the
//! replication protocol's message types, and small plumbing (byte sizes,
//! durations, metrics) that the agent, its plugins and the collector all use.
//!
//! Keeping these in one crate is what lets the collector sink and the
//! collector agree on the wire format by construction rather than by review.

pub mod batch;
#[cfg(feature = "cli-docs")]
pub mod cli_docs;
pub mod codec;
pub mod decode;
pub mod errors;
pub mod event;
pub mod fleet;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod json;
pub mod lines;
pub mod locate;
pub mod metrics;
pub mod partition;
pub mod problems;
pub mod process;
pub mod process_metrics;
pub mod protocol;
pub mod record;
pub mod systemd;
pub mod units;

pub use event::{Event, Metadata, Value};
