//! The aggregate's state and its snapshot, checkpointed by the runtime with
//! the input-log position it reflects.
//!
//! # Snapshot format (version 1)
//! ```text
//! 4 bytes   "WAGG"
//! u8        version = 1
//! u64 LE    fingerprint of the config's state shape (window kind and sizes,
//!           time mode, group_by, functions' slots and fields)
//! varint    next arrival number
//! progress  zigzag watermark, zigzag max event time,
//!           u8 0 | u8 1, zigzag last arrival, zigzag watermark then
//! bytes     host of the last event (varint len, UTF-8)
//! windows   by kind (windows/*.rs): groups in key order, each group's
//!           accumulators (functions.rs: counts, sums, sketch bins, HLL
//!           registers...)
//! ```
//! Everything is written in a fixed order (maps sorted by key), so equal
//! states give equal bytes. A snapshot whose fingerprint differs from the
//! running config's is refused (the runtime then starts from an empty
//! state and says so): its windows would mean something else.

use std::sync::Arc;

use super::codec::{group_values, DecodeError, Reader, Writer};
use super::config::Spec;
use super::time::Progress;
use super::windows::Windows;

const MAGIC: &[u8; 4] = b"WAGG";
const VERSION: u8 = 1;

/// Everything the aggregate must restore to continue exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub progress: Progress,
    /// Arrival number of the next event.
    pub seq: u64,
    /// Host of the last event, for the metadata of emitted events.
    pub host: Arc<str>,
    pub windows: Windows,
}

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("not an aggregate snapshot (or an unknown version)")]
    Format,
    #[error(
        "the snapshot was made for a different window, time, group_by or aggregates configuration"
    )]
    Config,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl State {
    /// An empty state for `spec`.
    pub fn new(spec: &Spec) -> State {
        State {
            progress: Progress::default(),
            seq: 0,
            host: Arc::from(""),
            windows: Windows::new(spec.window, lateness(spec)),
        }
    }

    /// The snapshot bytes (see the module docs).
    pub fn encode(&self, spec: &Spec) -> Vec<u8> {
        let mut w = Writer::new();
        w.buf.extend_from_slice(MAGIC);
        w.u8(VERSION);
        w.u64_le(spec.fingerprint);
        w.varint(self.seq);
        self.progress.encode(&mut w);
        w.bytes(self.host.as_bytes());
        self.windows.encode(&mut w);
        w.buf
    }

    /// Decodes a snapshot made by `encode` under the same config.
    pub fn decode(bytes: &[u8], spec: &Spec) -> Result<State, RestoreError> {
        let mut r = Reader::new(bytes);
        let magic = r.take(4, "magic").map_err(|_| RestoreError::Format)?;
        if magic != MAGIC || r.u8("version").map_err(|_| RestoreError::Format)? != VERSION {
            return Err(RestoreError::Format);
        }
        if r.u64_le("fingerprint")? != spec.fingerprint {
            return Err(RestoreError::Config);
        }
        let seq = r.varint("arrival number")?;
        let progress = Progress::decode(&mut r)?;
        let host: Arc<str> = r.string("host")?.into();
        let n = spec.group_by.len();
        let valid_key = |k: &[u8]| group_values(k, n).is_ok();
        let windows = Windows::decode(
            &mut r,
            spec.window,
            lateness(spec),
            &spec.layout,
            &valid_key,
        )?;
        r.finish()?;
        Ok(State {
            progress,
            seq,
            host,
            windows,
        })
    }
}

fn lateness(spec: &Spec) -> i64 {
    spec.time.as_ref().map_or(0, |t| t.lateness)
}
