//! Framing: a Kafka request is `length: i32` followed by that many bytes
//! (header, then body); a response is `length: i32`, the response header
//! (correlation id, and tagged fields in flexible versions), then the body.
//!
//! The length is checked against the limit *before* anything is allocated
//! for the frame, and the frame's bytes are reserved from the collector's
//! memory budget first, so a client announcing a huge request costs nothing.
//! Every decoder returns an error for any malformed input, never panics,
//! and allocates in proportion to the frame (property tests in
//! `protocol/tests.rs`).

use bytes::Bytes;

use super::protocol::{self, ApiKey, Message, Reader, RequestHeader, WireError};

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request of {len} bytes is larger than kafka.max_request_bytes ({limit})")]
    TooLarge { len: usize, limit: usize },
    #[error("negative or truncated request length {0}")]
    BadLength(i32),
    #[error("request header: {0}")]
    Header(String),
}

/// The fixed start of every request: enough to answer even one we cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads the 8 fixed bytes of a request frame.
pub fn prefix(frame: &[u8]) -> Result<Prefix, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Header(format!(
            "{} bytes, a request header has at least 8",
            frame.len()
        )));
    }
    Ok(Prefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Checks a frame length read from the wire.
pub fn check_len(len: i32, limit: usize) -> Result<usize, FrameError> {
    if len < 8 {
        return Err(FrameError::BadLength(len));
    }
    let len = len as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(len)
}

/// Decodes the request header (its version follows from the API and its
/// version) and returns a reader at the start of the body.
pub fn header(
    frame: Bytes,
    key: ApiKey,
    version: i16,
) -> Result<(RequestHeader, Reader), FrameError> {
    protocol::read_header(frame, key, version).map_err(|e| FrameError::Header(e.to_string()))
}

/// Decodes a request body of type `R` at `version`.
pub fn body<R: Message>(r: &mut Reader, version: i16) -> Result<R, WireError> {
    protocol::read_body(r, version)
}

/// Encodes a whole response frame: length, header, body.
pub fn response<R: Message>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &mut R,
) -> Result<Bytes, String> {
    protocol::response_frame(key, version, correlation_id, body)
        .map_err(|e| format!("{key:?} v{version}: {e}"))
}
