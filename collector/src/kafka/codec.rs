//! Framing: a Kafka request is `length: i32` followed by that many bytes
//! (header, then body); a response is `length: i32`, the response header
//! (correlation id, and tagged fields in flexible versions), then the body.
//!
//! The length is checked against the limit *before* anything is allocated
//! for the frame, and the frame's bytes are reserved from the collector's
//! memory budget first, so a client announcing a huge request costs nothing.
//! Every decoder here returns an error for any malformed input, never
//! panics (property tests in `tests.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

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
/// version) and leaves `frame` at the start of the body.
pub fn header(frame: &mut Bytes, key: ApiKey, version: i16) -> Result<RequestHeader, FrameError> {
    RequestHeader::decode(frame, key.request_header_version(version))
        .map_err(|e| FrameError::Header(e.to_string()))
}

/// Decodes a request body of type `R` at `version`.
pub fn body<R: Decodable>(frame: &mut Bytes, version: i16) -> Result<R, String> {
    R::decode(frame, version).map_err(|e| format!("{e:#}"))
}

/// Encodes a whole response frame: length, header, body.
pub fn response<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let hv = key.response_header_version(version);
    let size = header.compute_size(hv).map_err(|e| e.to_string())?
        + body.compute_size(version).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(|e| e.to_string())?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("{key:?} v{version}: {e}"))?;
    Ok(buf.freeze())
}
