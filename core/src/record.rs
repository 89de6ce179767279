//! Events as Kafka records: the one batch format used end to end.
//!
//! An event becomes a record whose value is its fields as JSON, whose key is its
//! key, whose timestamp is its timestamp in milliseconds, and whose headers
//! carry its source and host. The encoding is deterministic (fields are
//! ordered), so a batch rebuilt from the same spool records after a crash is
//! byte-identical to the one sent before it.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Header carrying the event's source component id.
pub const HEADER_SOURCE: &str = "weir.source";
/// Header carrying the agent's host name.
pub const HEADER_HOST: &str = "weir.host";

/// Compression of record batches on the wire and in the collector's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression: least CPU, most bytes.
    None,
    /// Zstandard: several times smaller for log lines at modest CPU cost.
    #[default]
    Zstd,
}

impl From<Compression> for KCompression {
    fn from(c: Compression) -> Self {
        match c {
            Compression::None => KCompression::None,
            Compression::Zstd => KCompression::Zstd,
        }
    }
}

/// Who produced a batch and where it sits in that producer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// Why a batch could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Encoding or decoding failed inside the Kafka codec.
    #[error("record batch codec: {0}")]
    Codec(String),
    /// An empty batch has no meaning on the wire.
    #[error("cannot encode an empty batch")]
    Empty,
}

/// Encodes events as one RecordBatch v2.
pub fn encode_batch<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    stamp: ProducerStamp,
    compression: Compression,
) -> Result<Bytes, RecordError> {
    let mut shared = SharedHeaders::default();
    let records: Vec<Record> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| to_record(e, i as i64, stamp, &mut shared))
        .collect();
    if records.is_empty() {
        return Err(RecordError::Empty);
    }
    let mut buf = BytesMut::with_capacity(records.len() * 128 + 128);
    let opts = RecordEncodeOptions {
        version: 2,
        compression: compression.into(),
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts)
        .map_err(|e| RecordError::Codec(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// Header values shared by consecutive records with the same source and host
/// (nearly all of a batch), so each record does not copy them again.
#[derive(Default)]
struct SharedHeaders {
    source: Option<(std::sync::Arc<str>, Bytes)>,
    host: Option<(std::sync::Arc<str>, Bytes)>,
}

fn shared(slot: &mut Option<(std::sync::Arc<str>, Bytes)>, s: &std::sync::Arc<str>) -> Bytes {
    match slot {
        Some((a, b)) if std::sync::Arc::ptr_eq(a, s) || **a == **s => b.clone(),
        _ => {
            let b = Bytes::copy_from_slice(s.as_bytes());
            *slot = Some((s.clone(), b.clone()));
            b
        }
    }
}

fn to_record(
    e: &Event,
    offset_delta: i64,
    stamp: ProducerStamp,
    cache: &mut SharedHeaders,
) -> Record {
    let mut headers = IndexMap::with_capacity(2);
    headers.insert(
        StrBytes::from_static_str(HEADER_SOURCE),
        Some(shared(&mut cache.source, &e.meta.source)),
    );
    headers.insert(
        StrBytes::from_static_str(HEADER_HOST),
        Some(shared(&mut cache.host, &e.meta.host)),
    );
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: stamp.producer_id,
        producer_epoch: stamp.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: offset_delta,
        sequence: crate::batch::wrapping_seq_add(stamp.base_sequence, offset_delta as i32),
        timestamp: e.timestamp.div_euclid(1_000_000),
        key: e.meta.key.clone(),
        value: Some(Bytes::from(e.fields_json())),
        headers,
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Decodes every record of the concatenated batches in `buf`, with the
/// default bounds of [`crate::decode::Limits`]. A consumer that must survive
/// any input streams with [`crate::decode::Records`] instead.
pub fn decode_batches(buf: &[u8]) -> Result<Vec<StoredRecord>, RecordError> {
    let limits = crate::decode::Limits::default();
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let n = crate::batch::peek_total_len(rest)
            .filter(|n| *n <= rest.len())
            .ok_or_else(|| RecordError::Codec("truncated batch".into()))?;
        let (one, tail) = rest.split_at(n);
        out.extend(
            crate::decode::decode(one, &limits).map_err(|e| RecordError::Codec(e.to_string()))?,
        );
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;
    use crate::event::Metadata;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut e = Event::from_message(
                    format!("line {i}"),
                    Metadata {
                        source: "app".into(),
                        host: "h".into(),
                        ..Default::default()
                    },
                );
                e.timestamp = 1_700_000_000_000_000_000 + i as i64 * 1_000_000;
                e
            })
            .collect()
    }

    #[test]
    fn encoded_batch_verifies_and_carries_the_producer_stamp() {
        for compression in [Compression::None, Compression::Zstd] {
            let stamp = ProducerStamp {
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 100,
            };
            let mut b = encode_batch(&events(10), stamp, compression)
                .unwrap()
                .to_vec();
            let h = batch::verify(&b).unwrap();
            assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
            assert_eq!(
                (h.base_sequence, h.record_count, h.last_sequence()),
                (100, 10, 109)
            );
            // Assigning an offset leaves the CRC valid: it is outside the checksum.
            batch::set_base_offset(&mut b, 5000);
            assert_eq!(batch::verify(&b).unwrap().base_offset, 5000);
            let recs = decode_batches(&b).unwrap();
            assert_eq!(recs.len(), 10);
            assert_eq!(recs[3].offset, 5003);
            assert_eq!(
                recs[3].value.as_deref(),
                Some(&br#"{"message":"line 3"}"#[..])
            );
            assert_eq!(recs[3].timestamp, 1_700_000_000_003);
            assert_eq!(recs[3].headers[0].0, HEADER_SOURCE);
        }
    }

    #[test]
    fn encoding_is_deterministic() {
        let stamp = ProducerStamp {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 0,
        };
        let ev = events(50);
        let a = encode_batch(&ev, stamp, Compression::Zstd).unwrap();
        let b = encode_batch(&ev, stamp, Compression::Zstd).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let stamp = ProducerStamp {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 0,
        };
        let mut b = encode_batch(&events(3), stamp, Compression::None)
            .unwrap()
            .to_vec();
        let last = b.len() - 2;
        b[last] ^= 0x01;
        assert!(matches!(
            batch::verify(&b),
            Err(batch::BatchError::Crc { .. })
        ));
    }
}
