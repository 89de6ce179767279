//! One function per endpoint: decode, authenticate (`Caller`), take a slot
//! and budget, call the service, encode.

// Refusals are the `Response` a handler sends as is, built once per failed
// request, so their size in a `Result` does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use weir_core::protocol::*;

use super::body::{read_body, read_json, ReservedBody};
use super::{api_error, busy, refusal, AppState, Caller};
use crate::limits::{Class, Reservation};
use crate::service::{Acks, FetchRequest, OffsetSpec, PartitionBatch, ProduceRequest};

type Answer = Result<Response, Response>;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Response> {
    q.map(|Query(v)| v).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            e.body_text(),
        )
    })
}

async fn slot(s: &AppState, class: Class) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    s.gates.slot(class).await.map_err(|b| busy(&b))
}

fn json<T: serde::Serialize>(v: T) -> Response {
    Json(v).into_response()
}

fn flat(a: Answer) -> Response {
    a.unwrap_or_else(|r| r)
}

pub async fn list_topics(State(s): State<Arc<AppState>>, Caller(who): Caller) -> Response {
    flat(
        async {
            let _slot = slot(&s, Class::Other).await?;
            Ok(json(
                s.service.list_topics(&who).await.map_err(|e| refusal(&e))?,
            ))
        }
        .await,
    )
}

pub async fn describe_topic(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(topic): Path<String>,
) -> Response {
    flat(
        async {
            let _slot = slot(&s, Class::Other).await?;
            Ok(json(
                s.service
                    .describe_topic(&who, &topic)
                    .await
                    .map_err(|e| refusal(&e))?,
            ))
        }
        .await,
    )
}

pub async fn create_topic(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    flat(
        async {
            let req: CreateTopic = read_json(body, &headers, &s.bodies, &s.gates).await?;
            let _slot = slot(&s, Class::Other).await?;
            let info = s
                .service
                .create_topic(&who, &topic, req.partitions)
                .await
                .map_err(|e| refusal(&e))?;
            Ok(json(info))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
pub struct ProduceQuery {
    /// `durable` (default) or `written`.
    #[serde(default)]
    acks: Option<String>,
}

pub async fn produce(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((topic, partition)): Path<(String, u32)>,
    q: Result<Query<ProduceQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    flat(
        async {
            let acks = match query(q)?.acks.as_deref() {
                None | Some("durable") | Some("all") => Acks::Durable,
                Some("written") | Some("1") => Acks::Written,
                Some(other) => {
                    return Err(api_error(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::InvalidRequest,
                        format!("acks={other}: use durable or written"),
                    ))
                }
            };
            // The body first: a client that is slow to send holds a connection
            // and what it sent, never one of the produce slots.
            let (batch, _reserved) =
                read_body(body, &headers, &s.bodies, s.bodies.max_bytes, &s.gates).await?;
            // A batch that overtook its producer's previous one waits for it
            // here, before the slot (`Service::wait_for_turn`).
            s.service
                .wait_for_turn(&who, &topic, partition, &batch)
                .await;
            let _slot = slot(&s, Class::Produce).await?;
            let req = ProduceRequest {
                topic,
                partitions: vec![PartitionBatch { partition, batch }],
                acks,
            };
            let mut results = s
                .service
                .produce(&who, req)
                .await
                .map_err(|e| refusal(&e))?;
            let result = results.pop().map(|r| r.result).ok_or_else(|| {
                api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorKind::StorageError,
                    "no result",
                )
            })?;
            let ack = result.map_err(|e| refusal(&e))?;
            Ok(json(ProduceAck {
                base_offset: ack.base_offset,
                last_offset: ack.last_offset,
                duplicate: ack.duplicate,
            }))
        }
        .await,
    )
}

pub async fn init_producer(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    flat(
        async {
            let req: InitProducer = read_json(body, &headers, &s.bodies, &s.gates).await?;
            let _slot = slot(&s, Class::Other).await?;
            let id = s
                .service
                .init_producer(&who, req.producer_id)
                .await
                .map_err(|e| refusal(&e))?;
            Ok(json(id))
        }
        .await,
    )
}

pub async fn producer_positions(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((id, topic)): Path<(i64, String)>,
) -> Response {
    flat(
        async {
            let _slot = slot(&s, Class::Other).await?;
            Ok(json(
                s.service
                    .producer_positions(&who, id, &topic)
                    .await
                    .map_err(|e| refusal(&e))?,
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
pub struct FetchQuery {
    offset: i64,
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    wait_ms: Option<u64>,
    /// `json` for records as JSON instead of batch bytes.
    #[serde(default)]
    format: Option<String>,
}

pub async fn fetch(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((topic, partition)): Path<(String, u32)>,
    q: Result<Query<FetchQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    flat(
        async {
            let q = query(q)?;
            let as_json = match q.format.as_deref() {
                Some("json") => true,
                Some("binary") => false,
                Some(other) => {
                    return Err(api_error(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::InvalidRequest,
                        format!("format={other}: use json or binary"),
                    ))
                }
                None => headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("application/json")),
            };
            let limits = s.service.limits();
            let max_bytes = q
                .max_bytes
                .unwrap_or(1 << 20)
                .clamp(1, limits.max_fetch_bytes);
            let wait = Duration::from_millis(q.wait_ms.unwrap_or(0));
            // Long-polls have their own slots, so they never take a producer's.
            let _slot = slot(&s, Class::Fetch).await?;
            s.service
                .wait_for_data(&who, &topic, partition, q.offset, wait)
                .await
                .map_err(|e| refusal(&e))?;
            // Reserve the answer before reading it from disk.
            let mut reserved = Reservation::default();
            s.gates
                .reserve(&mut reserved, max_bytes)
                .await
                .map_err(|b| busy(&b))?;
            let req = FetchRequest {
                topic: topic.clone(),
                partition,
                offset: q.offset,
                max_bytes,
                max_wait: Duration::ZERO,
            };
            let got = s.service.fetch(&who, req).await.map_err(|e| refusal(&e))?;
            let (body, next, content_type) = if as_json {
                let f = super::records::Fetched {
                    from: q.offset,
                    batches: &got.batches,
                    next: got.next_offset,
                    lost: &got.lost,
                };
                let (text, next) = super::records::render(&topic, partition, &f, max_bytes);
                (Bytes::from(text), next, "application/json")
            } else {
                (
                    crate::log::buffers::recycled(got.batches),
                    got.next_offset,
                    "application/octet-stream",
                )
            };
            // One batch larger than max_bytes is still answered whole.
            if body.len() > reserved.bytes() {
                let more = body.len() - reserved.bytes();
                s.gates
                    .reserve(&mut reserved, more)
                    .await
                    .map_err(|b| busy(&b))?;
            }
            reserved.shrink_to(body.len());
            let mut r = ReservedBody::body(body, reserved).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(HEADER_NEXT_OFFSET, HeaderValue::from(next));
            h.insert(HEADER_END_OFFSET, HeaderValue::from(got.end_offset));
            h.insert(HEADER_START_OFFSET, HeaderValue::from(got.start_offset));
            let lost: Vec<(i64, i64)> = got.lost.iter().copied().filter(|r| r.0 < next).collect();
            if !lost.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&format_lost(&lost)) {
                    h.insert(HEADER_LOST_OFFSETS, v);
                }
            }
            Ok(r)
        }
        .await,
    )
}

#[derive(Deserialize)]
pub struct OffsetQuery {
    at: String,
}

pub async fn offsets(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((topic, partition)): Path<(String, u32)>,
    q: Result<Query<OffsetQuery>, QueryRejection>,
) -> Response {
    flat(
        async {
            let q = query(q)?;
            let spec = match q.at.as_str() {
                "earliest" => OffsetSpec::Earliest,
                "latest" => OffsetSpec::Latest,
                ms => OffsetSpec::Time(ms.parse::<i64>().map_err(|_| {
                    api_error(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::InvalidRequest,
                        "at must be earliest, latest or milliseconds since the epoch",
                    )
                })?),
            };
            let _slot = slot(&s, Class::Other).await?;
            let offset = s
                .service
                .list_offset(&who, &topic, partition, spec)
                .await
                .map_err(|e| refusal(&e))?;
            Ok(json(OffsetAnswer { offset }))
        }
        .await,
    )
}

pub async fn group_offsets(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((group, topic)): Path<(String, String)>,
) -> Response {
    flat(
        async {
            let _slot = slot(&s, Class::Other).await?;
            Ok(json(
                s.service
                    .group_offsets(&who, &group, &topic)
                    .await
                    .map_err(|e| refusal(&e))?,
            ))
        }
        .await,
    )
}

pub async fn commit_offsets(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((group, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    flat(
        async {
            let offsets: Vec<GroupOffset> = read_json(body, &headers, &s.bodies, &s.gates).await?;
            let _slot = slot(&s, Class::Other).await?;
            s.service
                .commit_offsets(&who, &group, &topic, offsets)
                .await
                .map_err(|e| refusal(&e))?;
            Ok(json(serde_json::json!({})))
        }
        .await,
    )
}

pub async fn heartbeat(
    State(s): State<Arc<AppState>>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    flat(
        async {
            let max = weir_core::fleet::MAX_HEARTBEAT_BYTES;
            let (bytes, _reserved) = read_body(body, &headers, &s.bodies, max, &s.gates).await?;
            let beat: weir_core::fleet::Heartbeat =
                serde_json::from_slice(&bytes).map_err(|e| {
                    s.service.observed().heartbeat("refused");
                    api_error(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::InvalidRequest,
                        format!("invalid heartbeat: {e}"),
                    )
                })?;
            s.service
                .agent_heartbeat(&who, beat)
                .map_err(|e| refusal(&e))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

pub async fn fleet(State(s): State<Arc<AppState>>, Caller(who): Caller) -> Response {
    flat(
        async {
            let _slot = slot(&s, Class::Other).await?;
            let view = s.service.fleet(&who).await.map_err(|e| refusal(&e))?;
            let mut r = json(view);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        .await,
    )
}

/// The fleet page: static, holds no data (it reads `/v1/fleet` with the
/// browser's credentials), so it is served without authentication.
pub async fn fleet_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, crate::fleet::PAGE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        crate::fleet::PAGE,
    )
        .into_response()
}

pub async fn metrics(State(s): State<Arc<AppState>>, Caller(_who): Caller) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// `200 ready` while storage takes writes; `503` with the reason otherwise.
pub async fn ready(State(s): State<Arc<AppState>>) -> Response {
    match s.service.observed().not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{why}\n"),
        )
            .into_response(),
    }
}

/// Times every request and counts it by route pattern and status.
pub async fn observe(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = crate::metrics::route_of(req.uri().path());
    let start = std::time::Instant::now();
    let res = next.run(req).await;
    let o = s.service.observed();
    o.request_latency(route).observe_since(start);
    o.answered(route, res.status().as_u16());
    res
}
