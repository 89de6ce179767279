//! The Kafka RecordBatch v2 header: parsing, CRC verification and base-offset
//! assignment, without decompressing or re-encoding the records.
//!
//! Layout (big-endian, as Kafka defines it):
//!
//! ```text
//! 0   base_offset            i64   assigned by the collector on append
//! 8   batch_length           i32   bytes after this field
//! 12  partition_leader_epoch i32
//! 16  magic                  i8    = 2
//! 17  crc                    u32   CRC-32C of bytes 21..end
//! 21  attributes             i16   bits 0-2 compression
//! 23  last_offset_delta      i32
//! 27  first_timestamp        i64   milliseconds
//! 35  max_timestamp          i64   milliseconds
//! 43  producer_id            i64
//! 51  producer_epoch         i16
//! 53  base_sequence          i32
//! 57  record_count           i32
//! 61  records ...
//! ```
//!
//! The base offset lies outside the CRC, which is why the collector can assign
//! offsets and still store (and serve) the batch byte for byte.

/// Bytes in a v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length` counts: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

/// Why bytes are not a valid RecordBatch v2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a header.
    #[error("batch truncated: {len} bytes, need at least {need}")]
    Truncated { len: usize, need: usize },
    /// Not format v2.
    #[error("unsupported record batch magic {0}, expected 2")]
    Magic(i8),
    /// The length field disagrees with the bytes present.
    #[error("batch length field says {declared} bytes, {actual} present")]
    Length { declared: usize, actual: usize },
    /// Stored and computed CRC differ: the batch was damaged.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// Record count or offset delta out of range.
    #[error("invalid batch header: {0}")]
    Header(&'static str),
}

/// The fields of a batch header the log and the dedup logic need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                len: buf.len(),
                need: HEADER_LEN,
            });
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        let h = BatchHeader {
            base_offset: i64_at(buf, 0),
            batch_length: i32_at(buf, 8),
            attributes: i16::from_be_bytes([buf[21], buf[22]]),
            last_offset_delta: i32_at(buf, 23),
            first_timestamp: i64_at(buf, 27),
            max_timestamp: i64_at(buf, 35),
            producer_id: i64_at(buf, 43),
            producer_epoch: i16::from_be_bytes([buf[51], buf[52]]),
            base_sequence: i32_at(buf, 53),
            record_count: i32_at(buf, 57),
        };
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Header("batch_length shorter than header"));
        }
        if h.record_count <= 0 || h.last_offset_delta != h.record_count - 1 {
            return Err(BatchError::Header(
                "record_count must be positive and last_offset_delta = record_count - 1",
            ));
        }
        Ok(h)
    }

    /// Total bytes of the batch including base offset and length fields.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Sequence number of the batch's last record (Kafka sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        wrapping_seq_add(self.base_sequence, self.last_offset_delta)
    }
}

/// Checks that `buf` is exactly one well-formed batch with a correct CRC.
pub fn verify(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = verify_framing(buf)?;
    check_crc(buf)?;
    Ok(h)
}

/// Checks that `buf` is exactly one batch by its header and length, without
/// the CRC: for a caller whose next step ([`crate::decode::validate`]) checks
/// the CRC anyway, so the bytes are read for it once, not twice.
pub fn verify_framing(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    if h.total_len() != buf.len() {
        return Err(BatchError::Length {
            declared: h.total_len(),
            actual: buf.len(),
        });
    }
    Ok(h)
}

/// Verifies the CRC of the batch that fills `buf`.
pub fn check_crc(buf: &[u8]) -> Result<(), BatchError> {
    let stored = u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]);
    let computed = crc32c::crc32c(&buf[CRC_START..]);
    if stored != computed {
        return Err(BatchError::Crc { stored, computed });
    }
    Ok(())
}

/// Overwrites the batch's base offset (outside the CRC).
pub fn set_base_offset(buf: &mut [u8], offset: i64) {
    buf[..8].copy_from_slice(&offset.to_be_bytes());
}

/// Reads the length of the batch starting at `buf`, if its first 12 bytes are there.
pub fn peek_total_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let n = i32_at(buf, 8);
    (n >= 0).then(|| LOG_OVERHEAD + n as usize)
}

/// Splits concatenated batches (a fetch response or a segment) into slices;
/// stops at the first incomplete batch.
pub fn split(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let n = peek_total_len(buf)?;
        if n < HEADER_LEN || n > buf.len() {
            return None;
        }
        let (head, rest) = buf.split_at(n);
        buf = rest;
        Some(head)
    })
}

/// Adds to a Kafka sequence number, wrapping from i32::MAX to 0 as Kafka does.
pub fn wrapping_seq_add(seq: i32, n: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(n);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(wrapping_seq_add(i32::MAX, 1), 0);
        assert_eq!(wrapping_seq_add(i32::MAX - 1, 3), 1);
        assert_eq!(wrapping_seq_add(5, 2), 7);
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        for n in 0..HEADER_LEN {
            assert!(BatchHeader::parse(&vec![0u8; n]).is_err());
        }
        assert_eq!(split(&[0u8; 5]).count(), 0);
    }
}
