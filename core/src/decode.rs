//! Reading RecordBatch v2 back into records: the consumer side of
//! `record.rs` (HTTP consumers, `weir-collector consume`, tests).
//!
//! Each batch's header is parsed and its CRC checked by `batch.rs`; its
//! records are decompressed (gzip, snappy — raw or in the xerial framing
//! Java and Python clients use —, lz4 frames, zstd) into at most
//! [`MAX_DECOMPRESSED`] bytes, then read one by one (Kafka's record format
//! v2: zigzag varints, key, value, headers). Every length is checked
//! against the bytes left before it is used, and nothing is sized from a
//! count read off the data, so a damaged or hostile batch is an error,
//! never a panic or a huge allocation. Control batches (transaction
//! markers) hold no user records and are skipped.

use std::io::Read;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::record::{RecordError, StoredRecord};

/// Largest decompressed size of one batch's records.
pub const MAX_DECOMPRESSED: usize = 128 << 20;

const CONTROL: i16 = 1 << 5;
const LOG_APPEND_TIME: i16 = 1 << 3;

fn err(m: impl Into<String>) -> RecordError {
    RecordError::Codec(m.into())
}

/// Decodes every record of the concatenated batches in `buf`.
pub fn decode_batches(buf: &[u8]) -> Result<Vec<StoredRecord>, RecordError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let h = BatchHeader::parse(rest).map_err(|e| err(e.to_string()))?;
        let n = h.total_len();
        if n > rest.len() {
            return Err(err(format!(
                "batch of {n} bytes, only {} present",
                rest.len()
            )));
        }
        let (one, next) = rest.split_at(n);
        rest = next;
        batch::check_crc(one).map_err(|e| err(e.to_string()))?;
        if h.attributes & CONTROL != 0 {
            continue;
        }
        let body = decompress(h.attributes & 0x07, &one[HEADER_LEN..])?;
        read_records(&h, Bytes::from(body), &mut out)?;
    }
    Ok(out)
}

fn read_records(
    h: &BatchHeader,
    body: Bytes,
    out: &mut Vec<StoredRecord>,
) -> Result<(), RecordError> {
    let mut r = Cursor { buf: body, pos: 0 };
    for _ in 0..h.record_count {
        let len = r.varint()?;
        let len = usize::try_from(len).map_err(|_| err("negative record length"))?;
        let end = r.pos.checked_add(len).filter(|e| *e <= r.buf.len());
        let Some(end) = end else {
            return Err(err("record longer than its batch"));
        };
        r.byte()?; // attributes, unused in v2
        let ts_delta = r.varint()?;
        let offset_delta = r.varint()?;
        let key = r.nullable()?;
        let value = r.nullable()?;
        let nh = r.varint()?;
        let nh = usize::try_from(nh).map_err(|_| err("negative header count"))?;
        if nh > end - r.pos {
            return Err(err("more headers than bytes"));
        }
        let mut headers = Vec::with_capacity(nh.min(4));
        for _ in 0..nh {
            let k = r.nullable()?.ok_or_else(|| err("header without a key"))?;
            let k = String::from_utf8(k.to_vec()).map_err(|_| err("header key not UTF-8"))?;
            headers.push((k, r.nullable()?));
        }
        if r.pos != end {
            return Err(err("record length disagrees with its fields"));
        }
        let timestamp = if h.attributes & LOG_APPEND_TIME != 0 {
            h.max_timestamp
        } else {
            h.first_timestamp.wrapping_add(ts_delta)
        };
        out.push(StoredRecord {
            offset: h.base_offset.wrapping_add(offset_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(())
}

struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    fn byte(&mut self) -> Result<u8, RecordError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| err("record truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint of at most 64 bits.
    fn varint(&mut self) -> Result<i64, RecordError> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    /// A varint length (-1: null) and that many bytes, as a slice.
    fn nullable(&mut self) -> Result<Option<Bytes>, RecordError> {
        let n = self.varint()?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if n > self.buf.len() - self.pos {
            return Err(err("field longer than its record"));
        }
        let s = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(Some(s))
    }
}

fn decompress(codec: i16, data: &[u8]) -> Result<Vec<u8>, RecordError> {
    match codec {
        0 => Ok(data.to_vec()),
        1 => read_capped(flate2::read::MultiGzDecoder::new(data), "gzip"),
        2 => snappy(data),
        3 => {
            let d = lz4::Decoder::new(data).map_err(|e| err(format!("lz4: {e}")))?;
            read_capped(d, "lz4")
        }
        4 => {
            let d =
                zstd::stream::read::Decoder::new(data).map_err(|e| err(format!("zstd: {e}")))?;
            read_capped(d, "zstd")
        }
        c => Err(err(format!("unknown compression codec {c}"))),
    }
}

fn read_capped(r: impl Read, what: &str) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    r.take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(format!("{what}: {e}")))?;
    if out.len() > MAX_DECOMPRESSED {
        return Err(err(format!(
            "{what}: batch decompresses past {MAX_DECOMPRESSED} bytes"
        )));
    }
    Ok(out)
}

/// The xerial framing: an 8-byte magic, two i32 versions, then blocks of
/// `length: i32` + raw snappy.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn snappy(data: &[u8]) -> Result<Vec<u8>, RecordError> {
    if !data.starts_with(XERIAL_MAGIC) {
        let mut out = Vec::new();
        snappy_block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(16..)
        .ok_or_else(|| err("snappy: short xerial header"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| err("snappy: truncated block length"))?;
        let block = rest
            .get(4..4 + len)
            .ok_or_else(|| err("snappy: truncated block"))?;
        snappy_block(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let n = snap::raw::decompress_len(block).map_err(|e| err(format!("snappy: {e}")))?;
    if out.len() + n > MAX_DECOMPRESSED {
        return Err(err(format!(
            "snappy: batch decompresses past {MAX_DECOMPRESSED} bytes"
        )));
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| err(format!("snappy: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_batch, Compression, ProducerStamp};

    fn event(msg: &str) -> crate::event::Event {
        crate::event::Event::from_message(
            msg,
            crate::event::Metadata {
                source: "s".into(),
                host: "h".into(),
                ..Default::default()
            },
        )
    }

    /// Re-frames an uncompressed batch's records with another codec, as a
    /// Kafka client would send them.
    fn recompress(plain: &[u8], codec: i16, records: Vec<u8>) -> Vec<u8> {
        let mut b = plain[..HEADER_LEN].to_vec();
        b.extend_from_slice(&records);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[21..23].copy_from_slice(&codec.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn plain() -> (Vec<u8>, Vec<u8>) {
        let stamp = ProducerStamp {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 0,
        };
        let ev = [event("one"), event("two")];
        let b = encode_batch(&ev, stamp, Compression::None)
            .unwrap()
            .to_vec();
        let body = b[HEADER_LEN..].to_vec();
        (b, body)
    }

    #[test]
    fn gzip_and_snappy_batches_decode_raw_and_xerial_framed() {
        use std::io::Write;
        let (b, body) = plain();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let raw = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        xerial.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&raw);
        for (codec, data) in [(1, gz.finish().unwrap()), (2, raw.clone()), (2, xerial)] {
            let recs = decode_batches(&recompress(&b, codec, data)).unwrap();
            let values: Vec<_> = recs.iter().map(|r| r.value.clone().unwrap()).collect();
            assert_eq!(
                values,
                vec![
                    Bytes::from_static(br#"{"message":"one"}"#),
                    Bytes::from_static(br#"{"message":"two"}"#)
                ]
            );
        }
    }

    #[test]
    fn a_control_batch_yields_no_records() {
        let (b, body) = plain();
        assert!(decode_batches(&recompress(&b, CONTROL, body))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_batch_cut_short_or_with_a_bad_crc_is_an_error() {
        let (b, _) = plain();
        assert!(decode_batches(&b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_batches(&bad).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_record_bytes_under_a_valid_header_never_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            codec in 0i16..6,
        ) {
            let (b, _) = plain();
            let _ = decode_batches(&recompress(&b, codec, body));
        }
    }
}
