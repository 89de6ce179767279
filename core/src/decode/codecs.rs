//! Bounded streaming decompression of a batch's records section, for every
//! compression code Kafka defines (attributes bits 0-2):
//!
//! | code | codec | stream | what bounds memory |
//! |---|---|---|---|
//! | 0 | none | the bytes themselves | the batch |
//! | 1 | gzip (RFC 1952, members concatenated) | `flate2` inflater, 32 KiB window | the window; output written into the parser's window |
//! | 2 | snappy: xerial framing (Java client) or one raw block (librdkafka, sarama) | one block at a time | each block's claimed length is checked against what is left of the bound, and against the most a snappy block of its size can expand to, **before** it is allocated |
//! | 3 | lz4 frame (KIP-57; Kafka's and librdkafka's encoders write standard frames) | liblz4's frame decoder | the frame's block size (at most 4 MiB, from a 3-bit field) |
//! | 4 | zstd (frames concatenated) | libzstd stream, window capped at [`ZSTD_WINDOW_LOG_MAX`] | the window |
//!
//! Every reader yields at most the bound plus one byte (one more than allowed
//! is how "too large" is detected), and no size a stream *claims* is ever
//! allocated before it is checked against the bound: a small frame that
//! claims gigabytes costs at most the bound, in memory and in time.
//!
//! Snappy in Kafka: the Java client wraps snappy in snappy-java's stream
//! format ("xerial"): the 8-byte magic `82 'SNAPPY' 00`, two big-endian
//! int32s (version 1, compatible version 1), then blocks of a big-endian
//! int32 length and one raw snappy block (32 KiB of input each by default);
//! a stream may be followed by another (the header appears again).
//! librdkafka and sarama write one raw snappy block (a varint length, then
//! the elements). Like the Java consumer, a body that does not start with
//! the magic is read as raw.

use std::fmt;
use std::io::{self, BufRead, Read};

use super::InvalidBatch;

/// Largest zstd window accepted (2^24 = 16 MiB). Kafka producers and our
/// encoder use far smaller windows at their default levels.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Bytes a decompressor writes into the record parser's window at a time.
pub(super) const BUF: usize = 64 << 10;

/// The name of a compression code, for messages.
pub fn name(code: i16) -> &'static str {
    match code {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// The payload of the I/O error a reader returns when its data would
/// decompress past the bound (found from a claimed size, before allocating).
#[derive(Debug)]
pub struct Exceeds;

impl fmt::Display for Exceeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("decompresses past the bound")
    }
}

impl std::error::Error for Exceeds {}

/// Whether `e` says the data would decompress past the bound.
pub fn is_exceeds(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Exceeds>())
}

/// A reader of the decompressed records section `body` compressed with
/// `code`, yielding at most `limit + 1` bytes. Unbuffered: the record
/// parser reads into its own window (`mod.rs`), so the decompressor writes
/// each byte straight where it is parsed.
pub fn open<'a>(
    code: i16,
    body: &'a [u8],
    limit: usize,
) -> Result<Box<dyn Read + 'a>, InvalidBatch> {
    let cap = limit as u64 + 1;
    let failed = |e: io::Error| InvalidBatch::Decompress(format!("{}: {e}", name(code)));
    Ok(match code {
        0 => Box::new(body),
        1 => {
            let d = flate2::bufread::MultiGzDecoder::new(body);
            Box::new(d.take(cap))
        }
        2 => Box::new(Snappy::new(body, limit)),
        3 => {
            let d = lz4::Decoder::new(body).map_err(failed)?;
            Box::new(d.take(cap))
        }
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(failed)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(failed)?;
            Box::new(d.take(cap))
        }
        c => return Err(InvalidBatch::Compression(c)),
    })
}

/// snappy-java's stream magic; the header is 16 bytes with its two versions.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER: usize = 16;
/// Snappy's densest element, a 3-byte copy of 64 bytes, expands 64/3 < 22
/// times: a block claiming more than 22 times its size is not snappy.
const SNAPPY_MAX_RATIO: usize = 22;

/// Snappy, xerial-framed or one raw block, decoded one block at a time.
struct Snappy<'a> {
    rest: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    at: usize,
    /// Decompressed bytes still allowed.
    budget: usize,
    decoder: snap::raw::Decoder,
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<'a> Snappy<'a> {
    fn new(body: &'a [u8], limit: usize) -> Snappy<'a> {
        let framed = body.starts_with(XERIAL_MAGIC);
        Snappy {
            rest: body,
            framed,
            block: Vec::new(),
            at: 0,
            budget: limit,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// The next compressed block, or `None` at the end of the input.
    fn next_compressed(&mut self) -> io::Result<Option<&'a [u8]>> {
        if !self.framed {
            return Ok((!self.rest.is_empty()).then(|| std::mem::take(&mut self.rest)));
        }
        // A stream may follow another: skip every header.
        while self.rest.starts_with(XERIAL_MAGIC) {
            self.rest = self
                .rest
                .get(XERIAL_HEADER..)
                .ok_or_else(|| invalid("truncated xerial snappy header"))?;
        }
        if self.rest.is_empty() {
            return Ok(None);
        }
        let len = self
            .rest
            .get(..4)
            .ok_or_else(|| invalid("truncated xerial snappy block length"))?;
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let block = self
            .rest
            .get(4..)
            .and_then(|r| r.get(..n))
            .ok_or_else(|| invalid("xerial snappy block runs past the records"))?;
        self.rest = &self.rest[4 + n..];
        Ok(Some(block))
    }

    /// Decodes the next block; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        let Some(compressed) = self.next_compressed()? else {
            return Ok(false);
        };
        let claimed = snap::raw::decompress_len(compressed).map_err(invalid)?;
        if claimed > self.budget {
            return Err(io::Error::other(Exceeds));
        }
        if claimed > compressed.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(invalid(format!(
                "a snappy block of {} bytes claims {claimed} bytes, more than snappy can expand it to",
                compressed.len()
            )));
        }
        self.block.clear();
        self.block.resize(claimed, 0);
        let n = self
            .decoder
            .decompress(compressed, &mut self.block)
            .map_err(invalid)?;
        self.block.truncate(n);
        self.budget -= n;
        self.at = 0;
        Ok(true)
    }
}

impl Read for Snappy<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Snappy<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(&[]);
            }
        }
        Ok(&self.block[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.block.len());
    }
}
