//! Bounded, streaming decoding and validation of the records inside a
//! RecordBatch v2 — written here rather than taken from the Kafka codec,
//! which trusts counts and lengths from the wire (it reserves `record_count`
//! records up front and decompresses a whole section into memory).
//! Decompression of every Kafka codec (none, gzip, snappy, lz4, zstd) is in
//! `codecs.rs`.
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
//! read; a snappy block's claimed length likewise), and decompression stops
//! as soon as the budget is exceeded, so a small frame of any codec that
//! claims gigabytes costs at most the budget.

mod codecs;

pub use codecs::ZSTD_WINDOW_LOG_MAX;

use std::io::{self, Read};

use bytes::Bytes;

use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use crate::record::StoredRecord;

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

impl Limits {
    /// Bounds for reading what a log holds: the default size bound, and any
    /// timestamp (a consumer shows what is there; ingest decided what to accept).
    pub fn reading() -> Limits {
        Limits {
            min_timestamp: i64::MIN,
            max_timestamp: i64::MAX,
            ..Limits::default()
        }
    }
}

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
    /// Compression code Kafka does not define.
    #[error(
        "unsupported compression code {0} (supported: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)"
    )]
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

/// Where the records section is read from.
enum Source<'a> {
    /// Uncompressed: the records are walked in place, each record a
    /// sub-slice (no reader, no per-record copy). What is left to walk.
    Plain(&'a [u8]),
    /// Compressed: a bounded decompressing reader (`codecs.rs`) and the
    /// window its output is parsed in.
    Stream(Window<'a>),
}

/// What a decompressor has written and the parser not yet consumed: records
/// are parsed in place here. When a record needs more than the window holds,
/// its start is moved to the front and the decompressor writes the rest
/// after it, so every byte is written once by the decompressor and copied
/// again only when it belongs to a record cut by a refill (no reader layer
/// between, no per-record copy, no read call per varint byte). The window
/// is [`codecs::BUF`] bytes, or one record when a record is larger; a
/// record's length is checked against the budget before the window grows.
struct Window<'a> {
    reader: Box<dyn Read + 'a>,
    buf: Vec<u8>,
    /// Start of what is not consumed yet.
    at: usize,
    /// End of what the reader has written.
    end: usize,
    eof: bool,
}

impl<'a> Window<'a> {
    fn new(reader: Box<dyn Read + 'a>, limit: usize) -> Window<'a> {
        Window {
            reader,
            buf: vec![0; codecs::BUF.min(limit.saturating_add(1)).max(16)],
            at: 0,
            end: 0,
            eof: false,
        }
    }

    /// What is written and not consumed.
    fn held(&self) -> &[u8] {
        &self.buf[self.at..self.end]
    }

    /// Reads until at least `n` bytes are held or the stream ends.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.at < n && !self.eof {
            if self.at > 0 {
                self.buf.copy_within(self.at..self.end, 0);
                self.end -= self.at;
                self.at = 0;
            }
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The stream's bytes after what is consumed, counted to its end: how
    /// many, or `None` once they pass `budget`.
    fn drain(&mut self, budget: usize) -> io::Result<Option<usize>> {
        let mut trailing = self.end - self.at;
        self.at = self.end;
        while !self.eof && trailing <= budget {
            match self.reader.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(k) => trailing += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(trailing).filter(|t| *t <= budget))
    }
}

/// A streaming reader over the records of one batch.
pub struct Records<'a> {
    header: BatchHeader,
    source: Source<'a>,
    limits: Limits,
    /// Decompressed bytes consumed so far.
    used: usize,
    next_index: i32,
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
        let code = header.attributes & 0x07;
        let source = if code == 0 {
            Source::Plain(body)
        } else {
            let reader = codecs::open(code, body, limits.max_decompressed_bytes)?;
            Source::Stream(Window::new(reader, limits.max_decompressed_bytes))
        };
        Ok(Records {
            header,
            source,
            limits: *limits,
            used: 0,
            next_index: 0,
            finished: false,
        })
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The next record's timestamp (validating the record), or `None` after the last.
    pub fn next_meta(&mut self) -> Result<Option<i64>, InvalidBatch> {
        self.next_parsed(|r, _| r.timestamp)
    }

    /// The next record, or `None` after the last.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, InvalidBatch> {
        self.next_parsed(|r, offset| r.to_stored(offset))
    }

    /// Checks the next record and hands it, borrowed where it lies, to
    /// `out` with its offset (validation builds nothing per record).
    fn next_parsed<T>(
        &mut self,
        out: impl FnOnce(Parsed<'_>, i64) -> T,
    ) -> Result<Option<T>, InvalidBatch> {
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
        let read = match &mut self.source {
            Source::Plain(rest) => {
                let r = varint_in(rest);
                if let Ok(Some((_, n))) = r {
                    *rest = &rest[n..];
                }
                r
            }
            Source::Stream(w) => match w.fill(5) {
                Err(e) => Err(e),
                Ok(()) => {
                    let r = varint_in(w.held());
                    if let Ok(Some((_, n))) = r {
                        w.at += n;
                    }
                    r
                }
            },
        };
        let (len, n) = read
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
        let body: &[u8] = match &mut self.source {
            Source::Plain(rest) => {
                let Some((body, tail)) = rest.split_at_checked(len) else {
                    return Err(self.stream_err(io::ErrorKind::UnexpectedEof.into(), index));
                };
                *rest = tail;
                body
            }
            Source::Stream(w) => {
                if let Err(e) = w.fill(len) {
                    return Err(self.stream_err(e, index));
                }
                if w.end - w.at < len {
                    let eof = io::ErrorKind::UnexpectedEof.into();
                    return Err(self.stream_err(eof, index));
                }
                w.at += len;
                &w.buf[w.at - len..w.at]
            }
        };
        self.used += len;
        let rec = parse_record(body, index, &self.header)?;
        if rec.timestamp < self.limits.min_timestamp || rec.timestamp > self.limits.max_timestamp {
            return Err(InvalidBatch::Timestamp {
                index,
                timestamp: rec.timestamp,
                min: self.limits.min_timestamp,
                max: self.limits.max_timestamp,
            });
        }
        self.next_index += 1;
        let offset = self.header.base_offset.saturating_add(i64::from(index));
        Ok(Some(out(rec, offset)))
    }

    fn stream_err(&self, e: io::Error, index: i32) -> InvalidBatch {
        if self.used >= self.limits.max_decompressed_bytes || codecs::is_exceeds(&e) {
            return InvalidBatch::TooLarge {
                limit: self.limits.max_decompressed_bytes,
            };
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => InvalidBatch::Record {
                index,
                reason: "records end before the count in the header",
            },
            _ => self.decompress_err(e),
        }
    }

    fn decompress_err(&self, e: io::Error) -> InvalidBatch {
        if codecs::is_exceeds(&e) {
            return InvalidBatch::TooLarge {
                limit: self.limits.max_decompressed_bytes,
            };
        }
        let code = self.header.attributes & 0x07;
        InvalidBatch::Decompress(format!("{}: {e}", codecs::name(code)))
    }

    /// After the last record the stream must be empty.
    fn check_end(&mut self) -> Result<(), InvalidBatch> {
        let budget = self.limits.max_decompressed_bytes.saturating_sub(self.used);
        let drained = match &mut self.source {
            Source::Plain(rest) => Ok(Some(std::mem::take(rest).len()).filter(|n| *n <= budget)),
            Source::Stream(w) => w.drain(budget),
        };
        match drained {
            Err(e) => Err(self.decompress_err(e)),
            Ok(None) => Err(InvalidBatch::TooLarge {
                limit: self.limits.max_decompressed_bytes,
            }),
            Ok(Some(0)) => Ok(()),
            Ok(Some(trailing)) => Err(InvalidBatch::Trailing(trailing)),
        }
    }
}

/// One checked record, borrowed from the batch (or the window) it lies in.
struct Parsed<'b> {
    timestamp: i64,
    key: Option<&'b [u8]>,
    value: Option<&'b [u8]>,
    /// The headers section, already checked: `count` headers.
    headers: &'b [u8],
    count: usize,
}

impl Parsed<'_> {
    /// The record as an owned value.
    fn to_stored(&self, offset: i64) -> StoredRecord {
        let mut headers = Vec::with_capacity(self.count);
        let mut c = Cursor {
            b: self.headers,
            at: 0,
        };
        for _ in 0..self.count {
            // Checked by `parse_record`: each read succeeds.
            let (Some(Some(k)), Some(v)) = (c.nullable_bytes(), c.nullable_bytes()) else {
                break;
            };
            let k = String::from_utf8_lossy(k).into_owned();
            headers.push((k, v.map(Bytes::copy_from_slice)));
        }
        StoredRecord {
            offset,
            timestamp: self.timestamp,
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers,
        }
    }
}

/// Checks one record body (after its length) at position `index` of the batch.
fn parse_record<'b>(b: &'b [u8], index: i32, h: &BatchHeader) -> Result<Parsed<'b>, InvalidBatch> {
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
    // Each header takes at least two bytes: no count can make a reader
    // reserve more than the record holds.
    if count > c.remaining() / 2 {
        return Err(bad("header count exceeds the record"));
    }
    let headers_at = c.at;
    for _ in 0..count {
        let k = c.nullable_bytes().ok_or(bad("bad header key length"))?;
        let k = k.ok_or(bad("null header key"))?;
        // Keys are short and almost always ASCII: the ASCII check is inlined
        // where `from_utf8` is a call per key (6 % of the collector's CPU
        // validating agent batches, two headers per record).
        if !k.is_ascii() && std::str::from_utf8(k).is_err() {
            return Err(bad("header key is not UTF-8"));
        }
        c.nullable_bytes().ok_or(bad("bad header value length"))?;
    }
    if c.remaining() != 0 {
        return Err(bad("record length does not match its fields"));
    }
    Ok(Parsed {
        timestamp,
        key,
        value,
        headers: &b[headers_at..],
        count,
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
        let rest = self.b.get(self.at..)?;
        let mut v: u64 = 0;
        for (i, &byte) in rest.iter().take(max_bytes).enumerate() {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.at += i + 1;
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

/// The zigzag varint at the start of `b`: its value and byte count, `None`
/// when it is malformed (longer than 5 bytes or over 32 bits), or an
/// end-of-data error when `b` ends inside it.
fn varint_in(b: &[u8]) -> Result<Option<(i32, usize)>, io::Error> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let Some(&byte) = b.get(i) else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(u32::try_from(v)
                .ok()
                .map(|v| (((v >> 1) as i32) ^ -((v & 1) as i32), i + 1)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
