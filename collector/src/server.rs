//! The collector's HTTP API (paths in `weir_core::protocol`).

// Helpers return the error `Response` a handler sends as is; it is built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tracing::warn;
use weir_core::metrics::{Counter, Registry};
use weir_core::protocol::*;

use crate::groups::Groups;
use crate::log::{AppendError, Partition, ReadError, Store, Topic};

/// Longest a fetch long-polls.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Largest fetch answer.
const MAX_FETCH_BYTES: usize = 16 << 20;
/// Longest a producer waits for its batch to become durable before being told to retry.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Shared state of the handlers.
pub struct AppState {
    pub store: Arc<Store>,
    pub groups: Arc<Groups>,
    pub registry: Registry,
    pub shutdown: watch::Receiver<bool>,
    limit: Semaphore,
    batches: Counter,
    records: Counter,
    bytes: Counter,
    duplicates: Counter,
    rejected: Counter,
}

impl AppState {
    /// State for a router; `max_concurrent` bounds requests in progress.
    pub fn new(
        store: Arc<Store>,
        groups: Arc<Groups>,
        registry: Registry,
        shutdown: watch::Receiver<bool>,
        max_concurrent: usize,
    ) -> Arc<Self> {
        let c = |name, help| registry.counter(name, help, &[]);
        Arc::new(AppState {
            batches: c(
                "weir_collector_batches_appended_total",
                "Batches appended to the log.",
            ),
            records: c(
                "weir_collector_records_appended_total",
                "Records appended to the log.",
            ),
            bytes: c(
                "weir_collector_bytes_appended_total",
                "Bytes appended to the log.",
            ),
            duplicates: c(
                "weir_collector_duplicate_batches_total",
                "Batches recognised as already written and not appended again.",
            ),
            rejected: c(
                "weir_collector_rejected_batches_total",
                "Batches refused (corrupt, out of order, fenced, storage error).",
            ),
            store,
            groups,
            registry,
            shutdown,
            limit: Semaphore::new(max_concurrent.max(1)),
        })
    }
}

/// The API router.
pub fn router(state: Arc<AppState>, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{topic}", post(create_topic))
        .route("/v1/produce/{topic}/{partition}", post(produce))
        .route("/v1/producers/{id}/{topic}", get(producer_positions))
        .route("/v1/fetch/{topic}/{partition}", get(fetch))
        .route("/v1/offsets/{topic}/{partition}", get(offsets))
        .route(
            "/v1/groups/{group}/{topic}",
            get(group_offsets).post(commit_offsets),
        )
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_concurrency,
        ))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

async fn limit_concurrency(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match s.limit.acquire().await {
        Ok(_permit) => next.run(req).await,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn err(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Response {
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

fn partition_of(topic: &Topic, p: u32) -> Result<Arc<Partition>, Response> {
    topic.partitions.get(p as usize).cloned().ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            ErrorKind::UnknownTopicOrPartition,
            format!("topic {} has no partition {p}", topic.name),
        )
    })
}

fn existing(s: &AppState, topic: &str, p: u32) -> Result<Arc<Partition>, Response> {
    let t = s.store.topic(topic).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            ErrorKind::UnknownTopicOrPartition,
            format!("no topic {topic}"),
        )
    })?;
    partition_of(&t, p)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::StorageError,
            e.to_string(),
        )
    })
}

fn topic_info(t: &Topic) -> TopicInfo {
    TopicInfo {
        topic: t.name.clone(),
        partitions: t
            .partitions
            .iter()
            .map(|p| {
                let (start_offset, end_offset, size_bytes, segments) = p.stats();
                PartitionInfo {
                    partition: p.id,
                    start_offset,
                    end_offset,
                    size_bytes,
                    segments,
                }
            })
            .collect(),
    }
}

async fn list_topics(State(s): State<Arc<AppState>>) -> Response {
    let store = s.store.clone();
    match blocking(move || {
        store
            .topics()
            .iter()
            .map(|t| topic_info(t))
            .collect::<Vec<_>>()
    })
    .await
    {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn create_topic(
    State(s): State<Arc<AppState>>,
    Path(topic): Path<String>,
    body: Option<Json<CreateTopic>>,
) -> Response {
    let partitions = body.and_then(|Json(b)| b.partitions);
    let store = s.store.clone();
    match blocking(move || {
        store
            .get_or_create(&topic, partitions)
            .map(|t| topic_info(&t))
    })
    .await
    {
        Ok(Ok(info)) => Json(info).into_response(),
        Ok(Err(e)) => err(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            e.to_string(),
        ),
        Err(r) => r,
    }
}

async fn produce(
    State(s): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, u32)>,
    body: Bytes,
) -> Response {
    let store = s.store.clone();
    let t = match blocking(move || store.get_or_create(&topic, None)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return err(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidRequest,
                e.to_string(),
            )
        }
        Err(r) => return r,
    };
    let p = match partition_of(&t, partition) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut durable = p.durable();
    let len = body.len() as u64;
    let part = p.clone();
    let res = match blocking(move || part.append(body.to_vec())).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let appended = match res {
        Ok(a) => a,
        Err(e) => {
            s.rejected.inc();
            let (status, kind, expected) = match &e {
                AppendError::Corrupt(_) => (StatusCode::BAD_REQUEST, ErrorKind::CorruptBatch, None),
                AppendError::UnknownProducer { .. } => {
                    (StatusCode::CONFLICT, ErrorKind::UnknownProducer, None)
                }
                AppendError::OutOfOrder { expected, .. } => (
                    StatusCode::CONFLICT,
                    ErrorKind::OutOfOrderSequence,
                    Some(*expected),
                ),
                AppendError::Fenced { .. } => {
                    (StatusCode::CONFLICT, ErrorKind::ProducerFenced, None)
                }
                AppendError::Storage(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::StorageError,
                    None,
                ),
            };
            warn!(topic = %t.name, partition, error = %e, "Refused a batch.");
            return (
                status,
                Json(ApiError {
                    error: kind,
                    message: e.to_string(),
                    expected_sequence: expected,
                }),
            )
                .into_response();
        }
    };
    // Acknowledge only once the batch is on stable storage.
    let wait = durable.wait_for(|d| d.failed || d.end > appended.last_offset);
    match tokio::time::timeout(DURABLE_TIMEOUT, wait).await {
        Ok(Ok(d)) if !d.failed => {}
        _ => {
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::StorageError,
                "batch written but not made durable; retry",
            )
        }
    }
    if appended.duplicate {
        s.duplicates.inc();
    } else {
        s.batches.inc();
        s.records
            .add((appended.last_offset - appended.base_offset + 1) as u64);
        s.bytes.add(len);
    }
    Json(ProduceAck {
        base_offset: appended.base_offset,
        last_offset: appended.last_offset,
        duplicate: appended.duplicate,
    })
    .into_response()
}

async fn producer_positions(
    State(s): State<Arc<AppState>>,
    Path((id, topic)): Path<(i64, String)>,
) -> Response {
    let positions: Vec<ProducerPosition> = s
        .store
        .topic(&topic)
        .map(|t| {
            t.partitions
                .iter()
                .filter_map(|p| {
                    p.producer_position(id)
                        .map(|(producer_epoch, next_sequence)| ProducerPosition {
                            partition: p.id,
                            producer_epoch,
                            next_sequence,
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(positions).into_response()
}

#[derive(Deserialize)]
struct FetchQuery {
    offset: i64,
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn fetch(
    State(s): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<FetchQuery>,
) -> Response {
    let p = match existing(&s, &topic, partition) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, MAX_FETCH_BYTES);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut durable = p.durable();
    let mut shutdown = s.shutdown.clone();
    loop {
        let part = p.clone();
        let res = match blocking(move || part.read(q.offset, max_bytes)).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let fetched = match res {
            Ok(v) => v,
            Err(ReadError::OutOfRange { offset, start, end }) => {
                return err(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorKind::OffsetOutOfRange,
                    format!("offset {offset} outside [{start}, {end}]"),
                )
            }
            Err(e) => {
                return err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorKind::StorageError,
                    e.to_string(),
                )
            }
        };
        let now = tokio::time::Instant::now();
        if !fetched.bytes.is_empty() || !fetched.lost.is_empty() || now >= deadline {
            let (start, end) = p.bounds();
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_NEXT_OFFSET, HeaderValue::from(fetched.next));
            h.insert(HEADER_END_OFFSET, HeaderValue::from(end));
            h.insert(HEADER_START_OFFSET, HeaderValue::from(start));
            if !fetched.lost.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&format_lost(&fetched.lost)) {
                    h.insert(HEADER_LOST_OFFSETS, v);
                }
            }
            return (h, fetched.bytes).into_response();
        }
        // Long-poll: wake when the durable end passes the requested offset.
        let offset = q.offset;
        tokio::select! {
            _ = tokio::time::timeout(deadline - now, durable.wait_for(|d| d.end > offset || d.failed)) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
        if *s.shutdown.borrow() {
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::StorageError,
                "collector shutting down",
            );
        }
    }
}

#[derive(Deserialize)]
struct OffsetQuery {
    at: String,
}

async fn offsets(
    State(s): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<OffsetQuery>,
) -> Response {
    let p = match existing(&s, &topic, partition) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (start, end) = p.bounds();
    let offset = match q.at.as_str() {
        "earliest" => start,
        "latest" => end,
        ms => match ms.parse::<i64>() {
            Ok(ms) => match blocking(move || p.offset_for_time(ms)).await {
                Ok(o) => o,
                Err(r) => return r,
            },
            Err(_) => {
                return err(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::InvalidRequest,
                    "at must be earliest, latest or milliseconds since the epoch",
                )
            }
        },
    };
    Json(OffsetAnswer { offset }).into_response()
}

fn check_names(group: &str, topic: &str) -> Result<(), Response> {
    if valid_name(group) && valid_name(topic) {
        Ok(())
    } else {
        Err(err(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            "invalid group or topic name",
        ))
    }
}

async fn group_offsets(
    State(s): State<Arc<AppState>>,
    Path((group, topic)): Path<(String, String)>,
) -> Response {
    if let Err(r) = check_names(&group, &topic) {
        return r;
    }
    let groups = s.groups.clone();
    match blocking(move || groups.offsets(&group, &topic)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::StorageError,
            e.to_string(),
        ),
        Err(r) => r,
    }
}

async fn commit_offsets(
    State(s): State<Arc<AppState>>,
    Path((group, topic)): Path<(String, String)>,
    Json(offsets): Json<Vec<GroupOffset>>,
) -> Response {
    if let Err(r) = check_names(&group, &topic) {
        return r;
    }
    let groups = s.groups.clone();
    match blocking(move || groups.commit(&group, &topic, &offsets)).await {
        Ok(Ok(())) => Json(serde_json::json!({})).into_response(),
        Ok(Err(e)) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::StorageError,
            e.to_string(),
        ),
        Err(r) => r,
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.registry.render(),
    )
        .into_response()
}
