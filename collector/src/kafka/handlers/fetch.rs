//! Fetch (long-poll bounded by `max_wait_ms`, `min_bytes` and `max_bytes`,
//! from any offset; no fetch sessions: the answer's session id 0 tells the
//! client to keep sending full requests) and ListOffsets (earliest, latest,
//! by time), over the service's reads.
//!
//! The answer's bytes are reserved from the memory budget before anything
//! is read, and batches are served byte for byte as stored (the first may
//! start before the fetch offset; clients skip the records before it).

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::connection::Session;
use super::super::errors::{self, code};
use super::super::protocol::fetch::{
    FetchRequest, FetchResponse, FetchableTopicResponse, PartitionData,
};
use super::super::protocol::list_offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use super::super::Broker;
use crate::limits::{Class, Reservation};
use crate::service::{FetchRequest as Req, OffsetSpec};

/// A fetch answer and the memory it holds until written.
pub struct Fetched {
    pub response: FetchResponse,
    pub reserved: Reservation,
}

struct Want {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// Serves a fetch.
pub async fn fetch(b: &Broker, sess: &Session, req: FetchRequest, v: i16) -> Fetched {
    let mut reserved = Reservation::default();
    if v >= 7 && req.session_id != 0 {
        return Fetched {
            response: FetchResponse {
                error_code: code::FETCH_SESSION_ID_NOT_FOUND,
                ..Default::default()
            },
            reserved,
        };
    }
    let limits = b.service.limits();
    let max_bytes = if v >= 3 { req.max_bytes } else { i32::MAX }
        .clamp(1, limits.max_fetch_bytes as i32) as usize;
    let wants: Vec<Want> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Want {
                topic: t.topic.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(1) as usize,
            })
        })
        .collect();
    let (slot, budget) = match b.gates.slot(Class::Fetch).await {
        Ok(s) => (
            Some(s),
            b.gates.reserve(&mut reserved, max_bytes).await.is_ok(),
        ),
        Err(_) => (None, false),
    };
    if slot.is_none() || !budget {
        // Busy: every partition answers "retry", and the client backs off.
        let mut response = answer(&wants, |_| (code::REQUEST_TIMED_OUT, None, None));
        response.throttle_time_ms = 1000;
        return Fetched { response, reserved };
    }
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(limits.max_wait);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(1) as usize;
    let mut got = read_all(b, sess, &wants, max_bytes).await;
    loop {
        let total: usize = got
            .iter()
            .map(|g| g.1.as_ref().map_or(0, |r| r.len()))
            .sum();
        let any_error = got.iter().any(|g| g.0 != code::NONE);
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            break;
        }
        wait_any(b, sess, &wants, &got, deadline).await;
        if b.service.is_draining() {
            break;
        }
        got = read_all(b, sess, &wants, max_bytes).await;
    }
    let mut i = 0;
    let response = answer(&wants, |_| {
        let g = got[i].clone();
        i += 1;
        g
    });
    let bytes: usize = got
        .iter()
        .map(|g| g.1.as_ref().map_or(0, |r| r.len()))
        .sum();
    reserved.shrink_to(bytes.max(1));
    Fetched { response, reserved }
}

/// (error, records, (high watermark, log start)).
type Got = (i16, Option<Bytes>, Option<(i64, i64)>);

async fn read_all(b: &Broker, sess: &Session, wants: &[Want], max_bytes: usize) -> Vec<Got> {
    let mut left = max_bytes;
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        if w.partition < 0 {
            out.push((code::UNKNOWN_TOPIC_OR_PARTITION, None, None));
            continue;
        }
        // Once the answer is full, later partitions answer empty (the
        // first batch of the first partition is always answered whole).
        if left == 0 {
            let bounds = b
                .service
                .list_offset(
                    &sess.principal,
                    &w.topic,
                    w.partition as u32,
                    OffsetSpec::Latest,
                )
                .await;
            out.push(match bounds {
                Ok(hw) => (code::NONE, Some(Bytes::new()), Some((hw, -1))),
                Err(e) => (errors::of(&e), None, None),
            });
            continue;
        }
        let r = b
            .service
            .fetch(
                &sess.principal,
                Req {
                    topic: w.topic.clone(),
                    partition: w.partition as u32,
                    offset: w.offset,
                    max_bytes: w.max_bytes.min(left),
                    max_wait: Duration::ZERO,
                },
            )
            .await;
        out.push(match r {
            Ok(f) => {
                left = left.saturating_sub(f.batches.len());
                (
                    code::NONE,
                    Some(crate::log::buffers::recycled(f.batches)),
                    Some((f.end_offset, f.start_offset)),
                )
            }
            Err(e) => (errors::of(&e), None, None),
        });
    }
    out
}

/// Waits until one of the partitions that answered empty has data, or the deadline.
async fn wait_any(b: &Broker, sess: &Session, wants: &[Want], got: &[Got], deadline: Instant) {
    let mut set = JoinSet::new();
    let left = deadline.saturating_duration_since(Instant::now());
    for (w, g) in wants.iter().zip(got) {
        if g.1.as_ref().is_some_and(|r| r.is_empty()) {
            let service = b.service.clone();
            let who = sess.principal.clone();
            let (topic, partition, offset) = (w.topic.clone(), w.partition as u32, w.offset);
            set.spawn(async move {
                let _ = service
                    .wait_for_data(&who, &topic, partition, offset, left)
                    .await;
            });
        }
    }
    if set.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    let _ = tokio::time::timeout_at(deadline, set.join_next()).await;
    set.abort_all();
}

fn answer(wants: &[Want], mut each: impl FnMut(usize) -> Got) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (i, w) in wants.iter().enumerate() {
        let (error, records, bounds) = each(i);
        let (hw, start) = bounds.unwrap_or((-1, -1));
        let p = PartitionData {
            partition_index: w.partition,
            error_code: error,
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: start,
            aborted_transactions: Some(Vec::new()),
            records: Some(records.unwrap_or_default()),
            ..Default::default()
        };
        match topics.last_mut() {
            Some(t) if t.topic == w.topic => t.partitions.push(p),
            _ => topics.push(FetchableTopicResponse {
                topic: w.topic.clone(),
                partitions: vec![p],
            }),
        }
    }
    FetchResponse {
        responses: topics,
        ..Default::default()
    }
}

/// ListOffsets: -2 earliest, -1 latest, otherwise the first offset at or
/// after that time (the end of the log when every record is older).
pub async fn list_offsets(
    b: &Broker,
    sess: &Session,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let slot = b.gates.slot(Class::Other).await.ok();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name;
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let spec = match p.timestamp {
                -2 => Some(OffsetSpec::Earliest),
                -1 => Some(OffsetSpec::Latest),
                ts if ts >= 0 => Some(OffsetSpec::Time(ts)),
                _ => None,
            };
            let mut r = ListOffsetsPartitionResponse {
                partition_index: p.partition_index,
                timestamp: -1,
                offset: -1,
                leader_epoch: 0,
                ..Default::default()
            };
            let res = match (spec, &slot, p.partition_index) {
                (None, _, _) => Err(code::INVALID_REQUEST),
                (_, None, _) => Err(code::REQUEST_TIMED_OUT),
                (_, _, i) if i < 0 => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                (Some(spec), Some(_), i) => b
                    .service
                    .list_offset(&sess.principal, &name, i as u32, spec)
                    .await
                    .map_err(|e| errors::of(&e)),
            };
            match res {
                Ok(offset) => r.offset = offset,
                Err(e) => r.error_code = e,
            }
            parts.push(r);
        }
        topics.push(ListOffsetsTopicResponse {
            name,
            partitions: parts,
        });
    }
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}
