//! The HTTP front-end: decodes requests, authenticates the caller, bounds
//! its resources (`crate::limits`), calls the service and encodes answers.
//! No protocol rule lives here. Paths and bodies: `weir_core::protocol` and
//! docs/collector-api.md. The server loop (timeouts, TLS, shutdown) is in
//! `server.rs`.

mod body;
pub mod conn;
mod handlers;
mod records;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use weir_core::metrics::Registry;
use weir_core::protocol::{ApiError, ErrorKind};

pub use body::BodyLimits;

use crate::auth::{Authenticator, Principal};
use crate::limits::{Busy, Gates};
use crate::service::{Service, ServiceError};

/// What the handlers share.
pub struct AppState {
    pub service: Arc<Service>,
    pub auth: Arc<Authenticator>,
    pub gates: Arc<Gates>,
    pub metrics: Registry,
    pub bodies: BodyLimits,
}

/// What the server knows about a request's connection; absent in
/// in-process tests, which then have no client certificate.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The principal the connection's verified client certificate names.
    pub cert_principal: Option<Principal>,
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    use handlers::*;
    Router::new()
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{topic}", get(describe_topic).post(create_topic))
        .route("/v1/produce/{topic}/{partition}", post(produce))
        .route("/v1/producers", post(init_producer))
        .route("/v1/producers/{id}/{topic}", get(producer_positions))
        .route("/v1/fetch/{topic}/{partition}", get(fetch))
        .route("/v1/offsets/{topic}/{partition}", get(offsets))
        .route(
            "/v1/groups/{group}/{topic}",
            get(group_offsets).post(commit_offsets),
        )
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A JSON refusal.
pub fn api_error(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: kind,
            message: message.into(),
            expected_sequence: None,
        }),
    )
        .into_response()
}

/// `503` with `Retry-After`, for want of a slot or memory.
pub fn busy(b: &Busy) -> Response {
    let mut r = api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unavailable,
        b.to_string(),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The HTTP status of a kind of refusal.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    use ErrorKind::*;
    match kind {
        CorruptBatch | InvalidRequest => StatusCode::BAD_REQUEST,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        Unauthorized | InvalidProducerId => StatusCode::FORBIDDEN,
        UnknownTopicOrPartition => StatusCode::NOT_FOUND,
        OutOfOrderSequence | ProducerFenced | UnknownProducer | InvalidProducerEpoch
        | EpochExhausted | ConflictingBatch => StatusCode::CONFLICT,
        LimitExceeded => StatusCode::UNPROCESSABLE_ENTITY,
        OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
        StorageError | Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A service refusal as an answer.
pub fn refusal(e: &ServiceError) -> Response {
    let kind = e.kind();
    let mut r = (
        status_of(kind),
        Json(ApiError {
            error: kind,
            message: e.to_string(),
            expected_sequence: e.expected_sequence(),
        }),
    )
        .into_response();
    if status_of(kind) == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let cert = parts
            .extensions
            .get::<ConnInfo>()
            .and_then(|c| c.cert_principal.as_ref());
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        state
            .auth
            .authenticate(authorization, cert)
            .map(Caller)
            .map_err(|e| {
                let mut r = api_error(
                    StatusCode::UNAUTHORIZED,
                    ErrorKind::Unauthenticated,
                    e.to_string(),
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            })
    }
}

#[cfg(test)]
mod tests;
