//! Request bodies read within time, rate, size and the memory budget, and
//! response bodies that hold their share of the budget until written.

// Refusals are ready `Response`s, built once per failed request.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use weir_core::protocol::ErrorKind;

use super::{api_error, busy};
use crate::limits::{Gates, Reservation};

/// How request bodies are bounded.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body (a batch).
    pub max_bytes: usize,
    /// Longest time to receive a body.
    pub timeout: Duration,
    /// Slowest average rate, bytes per second, after `grace`.
    pub min_rate: u64,
    /// Time before the rate counts.
    pub grace: Duration,
}

/// Reads a whole body of at most `max` bytes, reserving its bytes from the
/// budget as they arrive. Refusals are ready answers: 413 (too large), 408
/// (too slow), 503 (budget), 400 (broken body).
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limits: &BodyLimits,
    max: usize,
    gates: &Gates,
) -> Result<(Vec<u8>, Reservation), Response> {
    let too_large = |n: usize| {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::LimitExceeded,
            format!("request body of {n} bytes or more exceeds the limit of {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        return Err(too_large(n));
    }
    let start = tokio::time::Instant::now();
    // Memory is taken as bytes arrive, never on the client's word alone:
    // the frames are kept as they came (no copy) and joined once at the end
    // into a buffer of exactly their size (growing one buffer frame by frame
    // copied every byte again at each doubling: 6 % of the collector's CPU
    // under a produce load of 256 KiB batches).
    let mut frames: Vec<Bytes> = Vec::new();
    let mut received = 0usize;
    let mut reserved = Reservation::default();
    let mut body = body;
    loop {
        // The client must keep an average of `min_rate` after the grace
        // period, and finish within `timeout`.
        let by_rate =
            limits.grace + Duration::from_secs_f64(received as f64 / limits.min_rate.max(1) as f64);
        let deadline = start + by_rate.min(limits.timeout);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(api_error(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorKind::InvalidRequest,
                    format!(
                        "request body too slow: {} bytes in {:.1}s (limits.body_timeout, limits.body_min_rate)",
                        received,
                        start.elapsed().as_secs_f64()
                    ),
                ))
            }
            Ok(None) => return Ok((join(frames, received), reserved)),
            Ok(Some(Err(e))) => {
                return Err(api_error(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::InvalidRequest,
                    format!("reading the request body: {e}"),
                ))
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if received + data.len() > max {
            return Err(too_large(received + data.len()));
        }
        gates
            .reserve(&mut reserved, data.len())
            .await
            .map_err(|b| busy(&b))?;
        received += data.len();
        frames.push(data);
    }
}

/// The frames of a body, `len` bytes in all, in one buffer.
fn join(frames: Vec<Bytes>, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for f in &frames {
        out.extend_from_slice(f);
    }
    out
}

/// Reads a small JSON body (absent or empty: `T::default()`).
pub async fn read_json<T: serde::de::DeserializeOwned + Default>(
    body: Body,
    headers: &HeaderMap,
    limits: &BodyLimits,
    gates: &Gates,
) -> Result<T, Response> {
    const MAX_JSON: usize = 64 << 10;
    let (bytes, _reserved) = read_body(body, headers, limits, MAX_JSON, gates).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            format!("invalid JSON body: {e}"),
        )
    })
}

/// A response body holding its bytes' reservation until it is dropped
/// (written, or its connection closed).
pub struct ReservedBody {
    data: Option<Bytes>,
    _reserved: Reservation,
}

impl ReservedBody {
    /// `data`, accounted by `reserved`.
    pub fn body(data: Bytes, reserved: Reservation) -> Body {
        Body::new(ReservedBody {
            data: Some(data),
            _reserved: reserved,
        })
    }
}

impl hyper::body::Body for ReservedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}
