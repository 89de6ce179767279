//! Events as Kafka records: the one batch format used end to end.
//!
//! An event becomes a record whose value is its fields as JSON, whose key is its
//! key, whose timestamp is its timestamp in milliseconds, and whose headers
//! carry its source and host. The encoding is deterministic (fields are
//! ordered), so a batch rebuilt from the same spool records after a crash is
//! byte-identical to the one sent before it.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::batch::{HEADER_LEN, LOG_OVERHEAD};
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
    /// LZ4 (frame format, as Kafka uses it): a few times smaller for log
    /// lines at a small fraction of zstd's CPU.
    Lz4,
    /// Zstandard (level 1 on the agent): the smallest batches, for slow
    /// links, at more CPU per byte.
    #[default]
    Zstd,
}

impl Compression {
    /// The codec bits of a batch's `attributes`.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
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
    /// A batch could not be encoded, or read back (`decode.rs`).
    #[error("record batch codec: {0}")]
    Codec(String),
    /// An empty batch has no meaning on the wire.
    #[error("cannot encode an empty batch")]
    Empty,
}

/// What one record is made of: the event's time, metadata, and its fields
/// already encoded (JSON) as the record value.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// Nanoseconds since the epoch (the record keeps milliseconds).
    pub timestamp: i64,
    pub meta: &'a crate::event::Metadata,
    pub value: &'a Bytes,
}

/// Encodes events as one RecordBatch v2.
pub fn encode_batch<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    stamp: ProducerStamp,
    compression: Compression,
) -> Result<Bytes, RecordError> {
    let owned: Vec<(&Event, Bytes)> = events
        .into_iter()
        .map(|e| (e, Bytes::from(e.fields_json())))
        .collect();
    encode_records(
        owned.iter().map(|(e, v)| RecordParts {
            timestamp: e.timestamp,
            meta: &e.meta,
            value: v,
        }),
        stamp,
        compression,
    )
}

/// Encodes records whose values are already encoded as one RecordBatch v2,
/// writing Kafka's format directly (big-endian header, zigzag varints in
/// records) so that a record costs a few varints and a copy of its value,
/// and nothing is allocated per record. Deterministic: the same records
/// give the same bytes.
pub fn encode_records<'a>(
    records: impl IntoIterator<Item = RecordParts<'a>>,
    stamp: ProducerStamp,
    compression: Compression,
) -> Result<Bytes, RecordError> {
    // Sized once: a body grown by doubling copies itself several times.
    let records: Vec<RecordParts<'a>> = records.into_iter().collect();
    let size: usize = records.iter().map(record_bound).sum();
    let mut body: Vec<u8> = Vec::with_capacity(size);
    let mut count: i32 = 0;
    let mut first_ts = 0i64;
    let mut max_ts = i64::MIN;
    let mut headers = Headers::default();
    for r in &records {
        let ts = r.timestamp.div_euclid(1_000_000);
        if count == 0 {
            first_ts = ts;
        }
        max_ts = max_ts.max(ts);
        put_record(
            &mut body,
            r,
            ts.wrapping_sub(first_ts),
            count,
            headers.of(r.meta),
        );
        count = count
            .checked_add(1)
            .ok_or_else(|| RecordError::Codec("too many records for one batch".into()))?;
    }
    if count == 0 {
        return Err(RecordError::Empty);
    }
    let mut out = BytesMut::new();
    match compression {
        Compression::None => {
            out.reserve(HEADER_LEN + body.len());
            out.resize(HEADER_LEN, 0);
            out.extend_from_slice(&body);
        }
        Compression::Lz4 => {
            out.reserve(HEADER_LEN + body.len() / 2 + 64);
            out.resize(HEADER_LEN, 0);
            lz4_frame(&body, &mut out)?;
        }
        Compression::Zstd => zstd_into(&body, &mut out)?,
    }
    let total = out.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD)
        .map_err(|_| RecordError::Codec("batch larger than 2 GiB".into()))?;
    let h = &mut out[..HEADER_LEN];
    h[0..8].copy_from_slice(&0i64.to_be_bytes());
    h[8..12].copy_from_slice(&batch_length.to_be_bytes());
    h[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    h[16] = 2;
    h[21..23].copy_from_slice(&compression.attribute().to_be_bytes());
    h[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    h[27..35].copy_from_slice(&first_ts.to_be_bytes());
    h[35..43].copy_from_slice(&max_ts.to_be_bytes());
    h[43..51].copy_from_slice(&stamp.producer_id.to_be_bytes());
    h[51..53].copy_from_slice(&stamp.producer_epoch.to_be_bytes());
    h[53..57].copy_from_slice(&stamp.base_sequence.to_be_bytes());
    h[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// zstd level of the agent's batches: level 1 compresses log lines nearly
/// as well as the default 3 for much less CPU (docs/benchmarks.md).
const ZSTD_LEVEL: i32 = 1;

/// A zstd context and output buffer kept between batches: creating a
/// context per batch allocated and cleared its tables every time. One is
/// kept (bounded memory); a concurrent encoder makes its own.
static ZSTD_SPARE: std::sync::Mutex<Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>> =
    std::sync::Mutex::new(None);

/// Writes a zeroed batch header and `body` compressed with zstd to `out`.
fn zstd_into(body: &[u8], out: &mut BytesMut) -> Result<(), RecordError> {
    let err = |e: std::io::Error| RecordError::Codec(format!("zstd: {e}"));
    let spare = ZSTD_SPARE.lock().ok().and_then(|mut s| s.take());
    let (mut cctx, mut dst) = match spare {
        Some(s) => s,
        None => (
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(err)?,
            Vec::new(),
        ),
    };
    dst.clear();
    dst.reserve(zstd::zstd_safe::compress_bound(body.len()));
    let res = cctx.compress_to_buffer(body, &mut dst).map_err(err);
    if res.is_ok() {
        out.reserve(HEADER_LEN + dst.len());
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(&dst);
    }
    // A batch far larger than usual does not pin its buffer for good.
    if dst.capacity() > 4 << 20 {
        dst = Vec::new();
    }
    if let Ok(mut s) = ZSTD_SPARE.lock() {
        *s = Some((cctx, dst));
    }
    res.map(|_| ())
}

/// Bytes `put_record` may write for `r` (its varints at their widest).
fn record_bound(r: &RecordParts<'_>) -> usize {
    let key = r.meta.key.as_ref().map_or(0, |k| k.len());
    r.value.len() + key + r.meta.source.len() + r.meta.host.len() + 96
}

fn lz4_frame(body: &[u8], out: &mut BytesMut) -> Result<(), RecordError> {
    use std::io::Write;
    let err = |e: std::io::Error| RecordError::Codec(format!("lz4: {e}"));
    let mut enc = lz4::EncoderBuilder::new()
        .level(1)
        .block_mode(lz4::BlockMode::Independent)
        .build(bytes::BufMut::writer(out))
        .map_err(err)?;
    enc.write_all(body).map_err(err)?;
    let (_, res) = enc.finish();
    res.map_err(err)
}

/// Appends one record: its length, then attributes, timestamp delta, offset
/// delta, key, value and the two headers (Kafka's record format v2).
/// `headers` is the encoded header count and headers of `r`'s metadata
/// ([`Headers::of`]): the same bytes for every record of a source.
fn put_record(
    out: &mut Vec<u8>,
    r: &RecordParts<'_>,
    ts_delta: i64,
    offset_delta: i32,
    headers: &[u8],
) {
    let key = r.meta.key.as_deref();
    let value = &r.value[..];
    // Attributes, deltas and the key's length: at most 1 + 10 + 5 + 5 bytes.
    let mut mid = Varints::default();
    mid.byte(0);
    mid.zigzag(ts_delta);
    mid.zigzag(i64::from(offset_delta));
    mid.zigzag(key.map_or(-1, |k| k.len() as i64));
    let mut value_len = Varints::default();
    value_len.zigzag(value.len() as i64);
    let len = mid.len + key.map_or(0, <[u8]>::len) + value_len.len + value.len() + headers.len();
    let mut total = Varints::default();
    total.zigzag(len as i64);
    out.extend_from_slice(total.bytes());
    out.extend_from_slice(mid.bytes());
    if let Some(k) = key {
        out.extend_from_slice(k);
    }
    out.extend_from_slice(value_len.bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(headers);
}

/// A few varints written to the stack, then copied in one piece (pushing
/// byte by byte checked the vector's capacity at every byte).
#[derive(Default)]
struct Varints {
    buf: [u8; 32],
    len: usize,
}

impl Varints {
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn zigzag(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.byte((z as u8) | 0x80);
            z >>= 7;
        }
        self.byte(z as u8);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The encoded headers (count, `weir.source`, `weir.host`) of the last
/// metadata seen: consecutive records nearly always share them.
#[derive(Default)]
struct Headers {
    of: Option<(std::sync::Arc<str>, std::sync::Arc<str>)>,
    bytes: Vec<u8>,
}

impl Headers {
    fn of(&mut self, meta: &crate::event::Metadata) -> &[u8] {
        let same = self.of.as_ref().is_some_and(|(s, h)| {
            (std::sync::Arc::ptr_eq(s, &meta.source) || *s == meta.source)
                && (std::sync::Arc::ptr_eq(h, &meta.host) || *h == meta.host)
        });
        if !same {
            self.bytes.clear();
            put_zigzag(&mut self.bytes, 2);
            put_header(&mut self.bytes, HEADER_SOURCE, meta.source.as_bytes());
            put_header(&mut self.bytes, HEADER_HOST, meta.host.as_bytes());
            self.of = Some((meta.source.clone(), meta.host.clone()));
        }
        &self.bytes
    }
}

fn put_header(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    put_zigzag(out, key.len() as i64);
    out.extend_from_slice(key.as_bytes());
    put_zigzag(out, value.len() as i64);
    out.extend_from_slice(value);
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
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

/// Decodes every record of the concatenated batches in `buf`, within
/// [`crate::decode::Limits::reading`] (any timestamp, the default size
/// bound). A consumer that must survive any input streams with
/// [`crate::decode::Records`] instead.
pub fn decode_batches(buf: &[u8]) -> Result<Vec<StoredRecord>, RecordError> {
    let limits = crate::decode::Limits::reading();
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
    use proptest::prelude::any;

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
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
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

    proptest::proptest! {
        #[test]
        fn any_records_decode_back_exactly(
            recs in proptest::collection::vec(
                (any::<i64>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), ".{0,200}", 0usize..3),
                1..40,
            ),
            codec in 0usize..3,
        ) {
            let compression = [Compression::None, Compression::Lz4, Compression::Zstd][codec];
            // Runs of records from one source and host, and changes between
            // them (the encoder reuses the headers of a run).
            let origins = [("s", "h"), ("s", "h2"), ("s2", "h")];
            let events: Vec<Event> = recs
                .iter()
                .map(|(ts, key, msg, origin)| {
                    let (source, host) = origins[*origin];
                    let mut e = Event::from_message(msg.as_str(), Metadata { source: source.into(), host: host.into(), ..Default::default() });
                    e.timestamp = *ts;
                    e.meta.key = key.clone().map(Bytes::from);
                    e
                })
                .collect();
            let stamp = ProducerStamp { producer_id: 9, producer_epoch: 1, base_sequence: 5 };
            let b = encode_batch(&events, stamp, compression).unwrap();
            let h = batch::verify(&b).unwrap();
            proptest::prop_assert_eq!(h.record_count as usize, events.len());
            let back = decode_batches(&b).unwrap();
            proptest::prop_assert_eq!(back.len(), events.len());
            for (r, e) in back.iter().zip(&events) {
                proptest::prop_assert_eq!(r.timestamp, e.timestamp.div_euclid(1_000_000));
                proptest::prop_assert_eq!(&r.key, &e.meta.key);
                proptest::prop_assert_eq!(r.value.as_deref(), Some(&e.fields_json()[..]));
                proptest::prop_assert_eq!(&r.headers, &vec![
                    (HEADER_SOURCE.to_owned(), Some(Bytes::copy_from_slice(e.meta.source.as_bytes()))),
                    (HEADER_HOST.to_owned(), Some(Bytes::copy_from_slice(e.meta.host.as_bytes()))),
                ]);
            }
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
