//! The collector's log: topics of partitions of segments.
//!
//! # On disk, under the data directory
//! ```text
//! lock                                       flock'ed by the running collector (durable.rs)
//! topics/<topic>/topic.json                  {"partitions": N}, written atomically
//! topics/<topic>/<p>/<base>.log              segments: RecordBatch v2 batches, byte for byte (segment.rs)
//! topics/<topic>/<p>/<base>.index            index of a sealed segment (index.rs)
//! topics/<topic>/<p>/<offset>.snapshot       producer state at an offset (snapshot.rs)
//! topics/<topic>/<p>/checkpoint              durable end offset and append clock (checkpoint.rs)
//! topics/<topic>/<p>/quarantine/<base>.log   copies of damaged segments, with <base>.txt reports (quarantine.rs)
//! groups/<group>/<topic>.json                committed consumer offsets, written atomically (groups.rs)
//! ```
//!
//! # Invariants
//! 1. **Acknowledged means durable.** A batch is acknowledged only after its
//!    segment data, the directory entry of every file it depends on (new
//!    segment, partition and topic directories), and a checkpoint whose end
//!    is past it are on stable storage (`partition.rs` lists the order).
//! 2. **Offsets never go backwards and are never re-issued.** The end offset
//!    after any start is at least the checkpoint's end: recovery cuts only a
//!    torn tail at or past it (never acknowledged), and a missing or damaged
//!    range below it stays allocated and is reported as lost.
//! 3. **One flipped bit costs at most the batch it hit.** Every read checks
//!    every batch's CRC; damage is skipped by resynchronising on the next
//!    good batch (`scan.rs`), copied to quarantine, counted
//!    (`weir_collector_damaged_batches_total`, `..._damaged_bytes_total`),
//!    logged at ERROR with its offsets, and served to consumers as a lost
//!    range; every other record stays readable at its offset.
//! 4. **Every stored batch was validated** (`weir_core::decode::validate`):
//!    header, CRC, every record, count, compression, bounded size, timestamps.
//! 5. **Start-up reads O(segments + unindexed tail)**, not O(log): a sealed
//!    segment costs its index header and its last batch; the active segment
//!    is scanned from the end of the index a clean stop wrote for it. Files open: the active segment of each partition plus
//!    at most [`store::OPEN_SEALED_SEGMENTS`] sealed ones (`cache.rs`).
//! 6. **Retention uses the collector's own append time** (monotonic per
//!    partition, kept in the index and the checkpoint), never producer
//!    timestamps.
//! 7. **Metadata is never silently reset**: a damaged topic.json refuses its
//!    topic, a damaged group file its group; both are reported.
//! 8. **One collector per data directory** (`lock`).
//!
//! Recovery decisions, case by case: `recovery.rs`. Dedup: `producers.rs`.

pub mod buffers;
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
pub use store::{FsyncPolicy, Store, StoreConfig, StoreError, Topic};
