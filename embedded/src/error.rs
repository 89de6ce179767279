//! Error types. `Display` writes through `core::fmt` only, so a firmware can
//! log them without an allocator; `std::error::Error` comes with the `std`
//! feature.

use core::fmt;

/// Why bytes from the wire were not a frame.
///
/// The first four variants come from the link layer ([`Deframer`](crate::Deframer),
/// [`unframe`](crate::unframe)) and mean line noise or a lost byte: count them
/// as garbage. The rest come from [`decode`](crate::decode) on a body whose
/// CRC matched, so they mean a sender that speaks another version or has a
/// bug, not noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes between two delimiters are not valid COBS (a code byte
    /// promised more bytes than arrived).
    BadCobs,
    /// The frame is longer than the format's or the deframer's limit.
    TooLong {
        /// The limit in bytes that was exceeded.
        limit: usize,
    },
    /// The CRC-32C in the frame does not match its body.
    BadCrc {
        /// The CRC carried by the frame.
        expected: u32,
        /// The CRC computed over the body that arrived.
        actual: u32,
    },
    /// The frame ends inside a field (or is shorter than its CRC).
    Truncated,
    /// The version byte is not one this decoder knows.
    UnknownVersion(u8),
    /// Flag bits that this version reserves are set.
    ReservedFlags(u8),
    /// A varint is longer than 10 bytes, overflows 64 bits, or is not in its
    /// shortest form.
    BadVarint,
    /// A varint does not fit the field it encodes.
    OutOfRange {
        /// The field, e.g. `"channel"`.
        field: &'static str,
    },
    /// A reading carries a value tag this version does not define.
    BadValueTag(u8),
    /// A string value is not UTF-8.
    BadUtf8,
    /// Bytes are left after the last reading the count announced.
    TrailingBytes(usize),
}

impl DecodeError {
    /// A short stable name, meant as a metric label (`reason="bad_crc"`).
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::BadCobs => "bad_cobs",
            Self::TooLong { .. } => "too_long",
            Self::BadCrc { .. } => "bad_crc",
            Self::Truncated => "truncated",
            Self::UnknownVersion(_) => "unknown_version",
            Self::ReservedFlags(_) => "reserved_flags",
            Self::BadVarint => "bad_varint",
            Self::OutOfRange { .. } => "out_of_range",
            Self::BadValueTag(_) => "bad_value_tag",
            Self::BadUtf8 => "bad_utf8",
            Self::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCobs => f.write_str("bad COBS stuffing"),
            Self::TooLong { limit } => write!(f, "frame too long: limit {limit} bytes"),
            Self::BadCrc { expected, actual } => {
                write!(
                    f,
                    "bad CRC: frame says {expected:#010x}, body has {actual:#010x}"
                )
            }
            Self::Truncated => f.write_str("frame truncated"),
            Self::UnknownVersion(v) => write!(f, "unknown frame version {v}"),
            Self::ReservedFlags(flags) => write!(f, "reserved flag bits set: {flags:#04x}"),
            Self::BadVarint => f.write_str("malformed varint"),
            Self::OutOfRange { field } => write!(f, "{field} out of range"),
            Self::BadValueTag(tag) => write!(f, "unknown value tag {tag:#04x}"),
            Self::BadUtf8 => f.write_str("string value is not UTF-8"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the last reading"),
        }
    }
}

/// Why a frame could not be built. After any of these the builder still
/// holds the frame as it was before the failed call: finish it and put the
/// rejected reading into the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The caller's buffer cannot hold the frame with this addition.
    BufferTooSmall {
        /// Bytes of buffer the frame would have needed.
        needed: usize,
        /// Bytes of buffer there are.
        capacity: usize,
    },
    /// The frame would exceed the format's maximum,
    /// [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN) bytes before stuffing.
    FrameTooLong,
    /// The frame already holds [`MAX_READINGS`](crate::MAX_READINGS) readings.
    TooManyReadings,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed, capacity } => {
                write!(
                    f,
                    "buffer too small: frame needs {needed} bytes, buffer has {capacity}"
                )
            }
            Self::FrameTooLong => write!(f, "frame too long: limit {} bytes", crate::MAX_FRAME_LEN),
            Self::TooManyReadings => write!(f, "too many readings: limit {}", crate::MAX_READINGS),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}
