//! Weir's device frame: how a sensor or a firmware sends readings to a Weir
//! agent over a byte stream (UART, USB CDC, RS-485, a pipe).
//!
//! One crate for both ends, so that they agree on the format by
//! construction: firmware links the encoder ([`FrameBuilder`]), the agent's
//! serial source links the decoder ([`Deframer`], [`decode`]). It is
//! `no_std`, allocates nothing, has no dependencies and no `unsafe`, and no
//! input makes the decoder panic. `docs/frame-format.md` describes the bytes
//! precisely enough to write an encoder in another language;
//! `embedded/c/` has one in C99.
//!
//! A frame on the wire is `0x00 ‖ COBS(body ‖ CRC-32C(body)) ‖ 0x00`, where
//! the body is a version byte, a flags byte, the [`Header`] fields as varints
//! and up to 255 typed [`Reading`]s. The zero delimiters let a reader that
//! started mid-stream, or lost bytes, resynchronise at the next frame.
//!
//! # Receiving (the agent's serial source)
//!
//! Feed bytes as they arrive to a [`Deframer`]; each complete chunk comes
//! back as a CRC-checked body or as the reason it was dropped. [`decode`]
//! turns a body into a [`Frame`]: header fields and an iterator of readings
//! borrowed from the deframer's buffer.
//!
//! ```
//! use weir_embedded::{decode, DefaultDeframer, Timestamp, Value};
//! # use weir_embedded::{encode, Header, Reading};
//! # let mut wire = [0u8; 64];
//! # let header = Header { device_id: 42, sequence: 7, timestamp: Timestamp::UnixMicros(1_700_000_000_000_000) };
//! # let n = encode(&mut wire, &header, &[Reading::new(3, Value::F32(21.5))]).unwrap();
//! # let bytes_read_from_port = &wire[..n];
//!
//! let mut deframer = DefaultDeframer::default(); // keep it for the life of the port
//! let mut input: &[u8] = bytes_read_from_port;
//! while let Some(chunk) = deframer.feed(&mut input) {
//!     let frame = match chunk.and_then(decode) {
//!         Ok(frame) => frame,
//!         Err(_error) => {
//!             // Count it (error.reason() is a metric label) and go on: the
//!             // deframer is already at the next frame.
//!             continue;
//!         }
//!     };
//!     let h = frame.header;
//!     assert_eq!((h.device_id, h.sequence), (42, 7));
//!     assert_eq!(h.timestamp, Timestamp::UnixMicros(1_700_000_000_000_000));
//!     for reading in frame.readings() {
//!         match reading.value {
//!             Value::F32(v) => assert_eq!((reading.channel, v), (3, 21.5)),
//!             other => panic!("unexpected {other:?}"),
//!         }
//!     }
//! }
//! let _noise_so_far = deframer.garbage_bytes();
//! ```
//!
//! # Sending (firmware)
//!
//! ```
//! use weir_embedded::{FrameBuilder, Header, Timestamp, Value, EncodeError, MAX_ENCODED_LEN};
//!
//! let mut buf = [0u8; 128]; // or MAX_ENCODED_LEN for any frame at all
//! let header = Header { device_id: 42, sequence: 7, timestamp: Timestamp::None };
//! let mut frame = FrameBuilder::new(&mut buf, &header)?;
//! frame.push(0, Value::F32(21.5))?;
//! frame.push(1, Value::U32(1013))?;
//! frame.push(2, Value::Str("ok"))?;
//! let len = frame.finish();
//! // uart.write_all(&buf[..len]);
//! # assert!(len < 40);
//! # Ok::<(), EncodeError>(())
//! ```

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cobs;
mod crc;
mod decode;
mod deframe;
mod encode;
mod error;
mod value;
mod varint;

pub use crc::crc32c;
pub use decode::{decode, unframe, Frame, Readings};
pub use deframe::{DefaultDeframer, Deframer, MAX_STUFFED_LEN};
pub use encode::{encode, max_encoded_len, FrameBuilder};
pub use error::{DecodeError, EncodeError};
pub use value::{Header, Reading, Timestamp, Value};

/// The version byte this crate writes and the only one it reads. Any change
/// to the layout gets a new version; see `docs/frame-format.md`.
pub const FORMAT_VERSION: u8 = 1;

/// Largest frame before stuffing: body plus CRC. Small enough for a
/// microcontroller's RAM, large enough for 255 readings of most types.
pub const MAX_FRAME_LEN: usize = 1024;

/// Largest frame on the wire, delimiters included: a buffer of this size
/// holds any frame.
pub const MAX_ENCODED_LEN: usize = max_encoded_len(MAX_FRAME_LEN);

/// Most readings in one frame (the count is one byte).
pub const MAX_READINGS: usize = 255;

/// Bytes of CRC-32C at the end of the body, little-endian.
pub const CRC_LEN: usize = 4;
