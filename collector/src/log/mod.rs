//! The collector's log: topics of partitions of segments.
//!
//! On disk, under the data directory:
//!
//! ```text
//! topics/<topic>/topic.json                 {"partitions": N}
//! topics/<topic>/<partition>/<base>.log     segments of RecordBatch v2 batches
//! groups/<group>/<topic>.json               committed consumer offsets
//! ```
//!
//! Segment format and recovery: `segment.rs`. Dedup: `producers.rs`.
//! Durability and reads: `partition.rs`. Topics and sync tasks: `store.rs`.

pub mod cache;
pub mod checkpoint;
pub mod durable;
pub mod index;
pub mod partition;
pub mod producers;
pub mod quarantine;
mod recovery;
#[cfg(test)]
mod recovery_tests;
pub mod scan;
pub mod segment;
pub mod snapshot;
pub mod store;

pub use partition::{AppendError, Appended, Fetched, Partition, PartitionLimits, ReadError};
pub use store::{FsyncPolicy, Store, StoreConfig, Topic};
