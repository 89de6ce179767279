//! Bounded, streaming decoding and validation of the records inside a
//! RecordBatch v2 — written here rather than taken from the Kafka codec,
//! which trusts counts and lengths from the wire (it reserves `record_count`
//! records up front and decompresses a whole zstd frame into memory).
//!
//! Record layout inside the (decompressed) records section, as Kafka defines it:
//!
//! ```text
//! length            varint   bytes of the record after this field
//! attributes        int8     unused
//! timestamp_delta   varlong  added to the batch's first_timestamp
//! offset_delta      varint   = the record's index in the batch
//! key_length        varint   -1 = null
//! key               bytes
//! value_length      varint   -1 = null
//! value             bytes
//! header_count      varint
//!   header_key_len  varint   >= 0, UTF-8 key follows
//!   header_val_len  varint   -1 = null
//! ```
//!
//! Guarantees, for any input bytes: no panic, no allocation larger than
//! [`Limits::max_decompressed_bytes`] (one record is the largest allocation;
//! its length is checked against what is left of the budget before it is
//! read), and decompression stops as soon as the budget is exceeded, so a
//! small zstd frame that claims gigabytes costs at most the budget. The zstd
//! window is capped at [`ZSTD_WINDOW_LOG_MAX`] so a frame cannot demand a huge
//! history buffer either.

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;

use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use crate::record::StoredRecord;

/// Largest zstd window accepted (2^24 = 16 MiB). Kafka producers and our
/// encoder use far smaller windows at their default levels.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Bounds a batch must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest records section after decompression.
    pub max_decompressed_bytes: usize,
    /// Earliest record timestamp accepted (ms since the epoch).
    pub min_timestamp: i64,
    /// Latest record timestamp accepted (ms since the epoch).
    pub max_timestamp: i64,
}

/// 9999-12-31T23:59:59.999Z in milliseconds.
pub const YEAR_9999_MS: i64 = 253_402_300_799_999;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 64 << 20,
            min_timestamp: 0,
            max_timestamp: YEAR_9999_MS,
        }
    }
}

/// Why a batch's records are not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidBatch {
    /// The header or CRC is wrong.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Compression code other than none (0) or zstd (4).
    #[error("unsupported compression code {0} (supported: 0 none, 4 zstd)")]
    Compression(i16),
    /// Transactional or control batches are not produced by clients of this log.
    #[error("transactional and control batches are not accepted")]
    Transactional,
    /// The records section decompresses to more than the limit.
    #[error("records decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
    /// The compressed stream is corrupt.
    #[error("records section does not decompress: {0}")]
    Decompress(String),
    /// A record is malformed.
    #[error("record {index}: {reason}")]
    Record { index: i32, reason: &'static str },
    /// A record timestamp is outside the accepted range.
    #[error("record {index}: timestamp {timestamp} outside the accepted range [{min}, {max}]")]
    Timestamp {
        index: i32,
        timestamp: i64,
        min: i64,
        max: i64,
    },
    /// The header's max_timestamp disagrees with the records.
    #[error("header max_timestamp {header} differs from the records' largest timestamp {records}")]
    MaxTimestamp { header: i64, records: i64 },
    /// Bytes left after the last record the header counts.
    #[error("{0} bytes follow the last record (the record count is wrong)")]
    Trailing(usize),
}

/// Checks one batch completely: header, CRC, compression, every record,
/// count, timestamps and sizes. Returns its header. Never panics.
pub fn validate(buf: &[u8], limits: &Limits) -> Result<BatchHeader, InvalidBatch> {
    let h = batch::verify(buf)?;
    if h.max_timestamp < limits.min_timestamp || h.max_timestamp > limits.max_timestamp {
        return Err(InvalidBatch::Timestamp {
            index: -1,
            timestamp: h.max_timestamp,
            min: limits.min_timestamp,
            max: limits.max_timestamp,
        });
    }
    let mut records = Records::new(buf, limits)?;
    let mut max_ts = i64::MIN;
    while let Some(r) = records.next_meta()? {
        max_ts = max_ts.max(r);
    }
    let log_append_time = h.attributes & 0x08 != 0;
    if !log_append_time && max_ts != h.max_timestamp {
        return Err(InvalidBatch::MaxTimestamp {
            header: h.max_timestamp,
            records: max_ts,
        });
    }
    Ok(h)
}

/// Decodes every record of one batch (CRC already checked or not: it is
/// checked here again), bounded as [`validate`].
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Vec<StoredRecord>, InvalidBatch> {
    batch::verify(buf)?;
    let mut records = Records::new(buf, limits)?;
    let mut out = Vec::new();
    while let Some(r) = records.next_record()? {
        out.push(r);
    }
    Ok(out)
}

/// A streaming reader over the records of one batch.
pub struct Records<'a> {
    header: BatchHeader,
    source: Box<dyn BufRead + 'a>,
    limits: Limits,
    /// Decompressed bytes consumed so far.
    used: usize,
    next_index: i32,
    buf: Vec<u8>,
    finished: bool,
}

impl<'a> Records<'a> {
    /// Starts reading the records of the batch in `buf` (header must parse).
    pub fn new(buf: &'a [u8], limits: &Limits) -> Result<Records<'a>, InvalidBatch> {
        let header = BatchHeader::parse(buf)?;
        let end = header.total_len().min(buf.len());
        let body = buf.get(HEADER_LEN..end).unwrap_or_default();
        if header.attributes & 0x30 != 0 {
            return Err(InvalidBatch::Transactional);
        }
        let source: Box<dyn BufRead + 'a> = match header.attributes & 0x07 {
            0 => Box::new(body),
            4 => {
                let mut d = zstd::stream::read::Decoder::with_buffer(body)
                    .map_err(|e| InvalidBatch::Decompress(e.to_string()))?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(|e| InvalidBatch::Decompress(e.to_string()))?;
                // At most budget + 1 bytes are ever pulled out of the decoder:
                // one more than allowed is how "too large" is detected.
                let bounded = d.take(limits.max_decompressed_bytes as u64 + 1);
                Box::new(BufReader::with_capacity(64 << 10, bounded))
            }
            c => return Err(InvalidBatch::Compression(c)),
        };
        Ok(Records {
            header,
            source,
            limits: *limits,
            used: 0,
            next_index: 0,
            buf: Vec::new(),
            finished: false,
        })
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The next record's timestamp (validating the record), or `None` after the last.
    pub fn next_meta(&mut self) -> Result<Option<i64>, InvalidBatch> {
        Ok(self.next_parsed(false)?.map(|r| r.timestamp))
    }

    /// The next record, or `None` after the last.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, InvalidBatch> {
        self.next_parsed(true)
    }

    fn next_parsed(&mut self, keep: bool) -> Result<Option<StoredRecord>, InvalidBatch> {
        if self.finished {
            return Ok(None);
        }
        let index = self.next_index;
        if index == self.header.record_count {
            self.finished = true;
            self.check_end()?;
            return Ok(None);
        }
        let bad = |reason| InvalidBatch::Record { index, reason };
        let (len, n) = read_varint_stream(&mut self.source)
            .map_err(|e| self.stream_err(e, index))?
            .ok_or(bad("bad record length"))?;
        self.used += n;
        let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
        if len > self.limits.max_decompressed_bytes.saturating_sub(self.used) {
            return Err(if self.header.attributes & 0x07 == 0 {
                bad("record length exceeds the batch")
            } else {
                InvalidBatch::TooLarge {
                    limit: self.limits.max_decompressed_bytes,
                }
            });
        }
        self.buf.clear();
        self.buf.resize(len, 0);
        self.source
            .read_exact(&mut self.buf)
            .map_err(|e| self.stream_err(e, index))?;
        self.used += len;
        let rec = parse_record(&self.buf, index, &self.header, keep)?;
        if rec.timestamp < self.limits.min_timestamp || rec.timestamp > self.limits.max_timestamp {
            return Err(InvalidBatch::Timestamp {
                index,
                timestamp: rec.timestamp,
                min: self.limits.min_timestamp,
                max: self.limits.max_timestamp,
            });
        }
        self.next_index += 1;
        Ok(Some(rec))
    }

    fn stream_err(&self, e: io::Error, index: i32) -> InvalidBatch {
        if self.used >= self.limits.max_decompressed_bytes {
            return InvalidBatch::TooLarge {
                limit: self.limits.max_decompressed_bytes,
            };
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => InvalidBatch::Record {
                index,
                reason: "records end before the count in the header",
            },
            _ => InvalidBatch::Decompress(e.to_string()),
        }
    }

    /// After the last record the stream must be empty.
    fn check_end(&mut self) -> Result<(), InvalidBatch> {
        let mut trailing = 0usize;
        loop {
            let chunk = match self.source.fill_buf() {
                Ok(c) => c.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InvalidBatch::Decompress(e.to_string())),
            };
            if chunk == 0 {
                break;
            }
            trailing += chunk;
            self.source.consume(chunk);
            if self.used + trailing > self.limits.max_decompressed_bytes {
                return Err(InvalidBatch::TooLarge {
                    limit: self.limits.max_decompressed_bytes,
                });
            }
        }
        if trailing > 0 {
            return Err(InvalidBatch::Trailing(trailing));
        }
        Ok(())
    }
}

/// Parses one record body (after its length) at position `index` of the batch.
fn parse_record(
    b: &[u8],
    index: i32,
    h: &BatchHeader,
    keep: bool,
) -> Result<StoredRecord, InvalidBatch> {
    let bad = |reason| InvalidBatch::Record { index, reason };
    let mut c = Cursor { b, at: 0 };
    c.take(1).ok_or(bad("truncated attributes"))?;
    let ts_delta = c.varlong().ok_or(bad("bad timestamp delta"))?;
    let timestamp = h
        .first_timestamp
        .checked_add(ts_delta)
        .ok_or(bad("timestamp overflows"))?;
    let offset_delta = c.varint().ok_or(bad("bad offset delta"))?;
    if offset_delta != index {
        return Err(bad(
            "offset delta is not the record's position in the batch",
        ));
    }
    let key = c.nullable_bytes().ok_or(bad("bad key length"))?;
    let value = c.nullable_bytes().ok_or(bad("bad value length"))?;
    let count = c.varint().ok_or(bad("bad header count"))?;
    let count = usize::try_from(count).map_err(|_| bad("negative header count"))?;
    // Each header takes at least two bytes: no count can make us reserve more
    // than the record holds.
    if count > c.remaining() / 2 {
        return Err(bad("header count exceeds the record"));
    }
    let mut headers = Vec::with_capacity(if keep { count } else { 0 });
    for _ in 0..count {
        let k = c.nullable_bytes().ok_or(bad("bad header key length"))?;
        let k = k.ok_or(bad("null header key"))?;
        let k = std::str::from_utf8(k).map_err(|_| bad("header key is not UTF-8"))?;
        let v = c.nullable_bytes().ok_or(bad("bad header value length"))?;
        if keep {
            headers.push((k.to_owned(), v.map(Bytes::copy_from_slice)));
        }
    }
    if c.remaining() != 0 {
        return Err(bad("record length does not match its fields"));
    }
    let copy = |x: Option<&[u8]>| {
        if keep {
            x.map(Bytes::copy_from_slice)
        } else {
            None
        }
    };
    Ok(StoredRecord {
        offset: h.base_offset.saturating_add(i64::from(index)),
        timestamp,
        key: copy(key),
        value: copy(value),
        headers,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn raw_varint(&mut self, max_bytes: usize) -> Option<u64> {
        let mut v: u64 = 0;
        for i in 0..max_bytes {
            let byte = *self.take(1)?.first()?;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        let v = self.raw_varint(5)?;
        let v = u32::try_from(v).ok()?;
        Some(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    fn varlong(&mut self) -> Option<i64> {
        let v = self.raw_varint(10)?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A varint length then that many bytes; -1 is null; other negatives fail.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            n if n < 0 => None,
            n => Some(Some(self.take(n as usize)?)),
        }
    }
}

/// Reads one zigzag varint from a stream: its value and byte count, or
/// `None` when it is malformed (longer than 5 bytes or over 32 bits).
fn read_varint_stream(r: &mut dyn BufRead) -> Result<Option<(i32, usize)>, io::Error> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        v |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(u32::try_from(v)
                .ok()
                .map(|v| (((v >> 1) as i32) ^ -((v & 1) as i32), i + 1)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Metadata};
    use crate::record::{encode_batch, Compression, ProducerStamp};
    use proptest::prelude::*;

    const TS: i64 = 1_700_000_000_000;

    fn zigzag(v: i64) -> Vec<u8> {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// One record body with its length prefix.
    fn record(ts_delta: i64, offset_delta: i64, value: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend(zigzag(ts_delta));
        body.extend(zigzag(offset_delta));
        body.extend(zigzag(-1));
        body.extend(zigzag(value.len() as i64));
        body.extend(value);
        body.extend(zigzag(0));
        let mut r = zigzag(body.len() as i64);
        r.extend(body);
        r
    }

    /// A batch with a correct CRC around any records section.
    fn raw_batch(attributes: i16, count: i32, max_ts: i64, section: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend(((HEADER_LEN - 12 + section.len()) as i32).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.push(2);
        b.extend([0u8; 4]);
        b.extend(attributes.to_be_bytes());
        b.extend((count - 1).to_be_bytes());
        b.extend(TS.to_be_bytes());
        b.extend(max_ts.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(count.to_be_bytes());
        b.extend(section);
        fix_crc(&mut b);
        b
    }

    fn fix_crc(b: &mut [u8]) {
        if b.len() >= HEADER_LEN {
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        }
    }

    fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| record(i as i64, i as i64, b"{\"message\":\"x\"}"))
            .collect()
    }

    fn encoded(n: usize, c: Compression) -> Vec<u8> {
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let mut e = Event::from_message(format!("line {i}"), Metadata::default());
                e.timestamp = (TS + i as i64) * 1_000_000;
                e
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 0,
        };
        encode_batch(&events, stamp, c).unwrap().to_vec()
    }

    #[test]
    fn batches_from_our_encoder_validate_and_decode() {
        for c in [Compression::None, Compression::Zstd] {
            let b = encoded(100, c);
            let h = validate(&b, &Limits::default()).unwrap();
            assert_eq!(h.record_count, 100);
            let recs = decode(&b, &Limits::default()).unwrap();
            assert_eq!(recs.len(), 100);
            assert_eq!(
                recs[7].value.as_deref(),
                Some(&br#"{"message":"line 7"}"#[..])
            );
            assert_eq!(recs[7].timestamp, TS + 7);
            assert_eq!(recs[7].headers.len(), 2);
        }
    }

    #[test]
    fn a_record_count_that_lies_is_refused_both_ways() {
        let more = raw_batch(0, 4, TS + 2, &records(3));
        assert!(matches!(
            validate(&more, &Limits::default()),
            Err(InvalidBatch::Record { index: 3, .. })
        ));
        let fewer = raw_batch(0, 2, TS + 1, &records(3));
        assert!(matches!(
            validate(&fewer, &Limits::default()),
            Err(InvalidBatch::Trailing(_))
        ));
        // A huge count reserves nothing: it fails at the first missing record.
        let huge = raw_batch(0, i32::MAX, TS + 2, &records(3));
        assert!(validate(&huge, &Limits::default()).is_err());
    }

    #[test]
    fn garbage_records_and_unknown_compression_are_refused() {
        let garbage = raw_batch(0, 3, TS, &[0xff; 40]);
        assert!(validate(&garbage, &Limits::default()).is_err());
        for code in [1, 2, 3, 5, 6, 7] {
            let b = raw_batch(code, 3, TS + 2, &records(3));
            assert_eq!(
                validate(&b, &Limits::default()),
                Err(InvalidBatch::Compression(code))
            );
        }
        let transactional = raw_batch(0x10, 3, TS + 2, &records(3));
        assert_eq!(
            validate(&transactional, &Limits::default()),
            Err(InvalidBatch::Transactional)
        );
    }

    #[test]
    fn absurd_timestamps_are_refused_and_the_header_must_agree_with_the_records() {
        let far = 1i64 << 62;
        let mut section = record(far - TS, 0, b"x");
        section.extend(record(0, 1, b"y"));
        let b = raw_batch(0, 2, far, &section);
        assert!(matches!(
            validate(&b, &Limits::default()),
            Err(InvalidBatch::Timestamp { .. })
        ));
        let overflow = raw_batch(0, 1, TS, &record(i64::MAX, 0, b"x"));
        assert!(validate(&overflow, &Limits::default()).is_err());
        let lying_max = raw_batch(0, 3, TS + 100, &records(3));
        assert!(matches!(
            validate(&lying_max, &Limits::default()),
            Err(InvalidBatch::MaxTimestamp { .. })
        ));
        let strict = Limits {
            min_timestamp: TS + 1,
            ..Limits::default()
        };
        assert!(matches!(
            validate(&raw_batch(0, 3, TS + 2, &records(3)), &strict),
            Err(InvalidBatch::Timestamp { index: 0, .. })
        ));
    }

    #[test]
    fn negative_and_oversized_lengths_are_refused() {
        let mut body = vec![0u8];
        body.extend(zigzag(0));
        body.extend(zigzag(0));
        body.extend(zigzag(-5)); // key length -5
        let mut section = zigzag(body.len() as i64);
        section.extend(body);
        assert!(validate(&raw_batch(0, 1, TS, &section), &Limits::default()).is_err());
        let claims_more = [zigzag(1 << 30), vec![0; 8]].concat();
        assert!(validate(&raw_batch(0, 1, TS, &claims_more), &Limits::default()).is_err());
        let negative = zigzag(-3);
        assert!(validate(&raw_batch(0, 1, TS, &negative), &Limits::default()).is_err());
    }

    #[test]
    fn a_small_zstd_frame_expanding_to_a_gibibyte_costs_at_most_the_bound() {
        // One record whose value is 1 GiB of zeros, in a few KiB of zstd.
        let value_len: i64 = 1 << 30;
        let mut head = vec![0u8];
        head.extend(zigzag(0));
        head.extend(zigzag(0));
        head.extend(zigzag(-1));
        head.extend(zigzag(value_len));
        let mut prefix = zigzag(head.len() as i64 + value_len + 1);
        prefix.extend(head);
        // Concatenated frames decode as one stream: 64 frames of 16 MiB of zeros.
        let chunk = zstd::stream::encode_all(io::repeat(0).take(16 << 20), 3).unwrap();
        let mut frame = zstd::stream::encode_all(&prefix[..], 3).unwrap();
        for _ in 0..64 {
            frame.extend(&chunk);
        }
        frame.extend(zstd::stream::encode_all(&[0u8][..], 3).unwrap());
        assert!(frame.len() < 64 << 10, "frame is {} bytes", frame.len());
        let b = raw_batch(4, 1, TS, &frame);
        let small = Limits {
            max_decompressed_bytes: 1 << 20,
            ..Limits::default()
        };
        let start = std::time::Instant::now();
        assert_eq!(
            validate(&b, &small),
            Err(InvalidBatch::TooLarge { limit: 1 << 20 })
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // Many small records past the bound are cut off as well.
        let many: Vec<u8> = records(200_000);
        let frame = zstd::stream::encode_all(&many[..], 3).unwrap();
        let b = raw_batch(4, 200_000, TS + 199_999, &frame);
        assert!(matches!(
            validate(&b, &small),
            Err(InvalidBatch::TooLarge { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = validate(&bytes, &Limits::default());
            let _ = decode(&bytes, &Limits::default());
            let _ = crate::record::decode_batches(&bytes);
        }

        #[test]
        fn mutated_valid_batches_never_panic(
            zstd in any::<bool>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut b = encoded(5, if zstd { Compression::Zstd } else { Compression::None });
            for (at, v) in edits {
                let i = at % b.len();
                b[i] = v;
            }
            if let Some(c) = cut {
                b.truncate(c % (b.len() + 1));
            }
            // With the CRC fixed up the mutation reaches the record parser.
            let mut fixed = b.clone();
            fix_crc(&mut fixed);
            for buf in [&b, &fixed] {
                let _ = validate(buf, &Limits::default());
                let _ = decode(buf, &Limits::default());
            }
        }
    }
}
