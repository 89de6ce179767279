//! Produce and InitProducerId, over the service's produce and producer
//! identities: the same sequence checks, duplicate-versus-conflict rule and
//! per-principal producer ids as the agents' HTTP path.
//!
//! `acks=0` answers nothing (the client expects no response), `acks=1`
//! answers once the batch is written, `acks=all` (-1) once it is durable.
//! A transactional id is refused (the collector has no transactions): the
//! client fails with a clear authorisation error rather than hanging.

use std::collections::BTreeMap;

use super::super::connection::Session;
use super::super::errors::{self, code};
use super::super::protocol::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use super::super::protocol::produce::{
    PartitionProduceResponse, ProduceRequest, ProduceResponse, TopicProduceResponse,
};
use super::super::Broker;
use crate::limits::Class;
use crate::service::{Acks, PartitionBatch, ProduceRequest as Req, ServiceError};

/// What a produce answers: a response, or nothing for `acks=0`.
pub enum Produced {
    Answer(ProduceResponse),
    Silent,
}

fn partition_error(
    index: i32,
    error: i16,
    message: Option<String>,
    v: i16,
) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: error,
        base_offset: -1,
        error_message: if v >= 8 { message } else { None },
        ..Default::default()
    }
}

/// One batch per partition, as Kafka requires from v3 on.
fn single_batch(records: &Option<bytes::Bytes>) -> Result<Vec<u8>, (i16, String)> {
    let Some(r) = records else {
        return Err((code::CORRUPT_MESSAGE, "no records".into()));
    };
    match weir_core::batch::peek_total_len(r) {
        Some(n) if n == r.len() => Ok(r.to_vec()),
        Some(n) if n < r.len() => Err((
            code::INVALID_RECORD,
            "one record batch per partition and request".into(),
        )),
        _ => Err((code::CORRUPT_MESSAGE, "truncated record batch".into())),
    }
}

/// Appends each partition's batch through the service.
pub async fn produce(b: &Broker, sess: &Session, req: ProduceRequest, v: i16) -> Produced {
    let acks = match req.acks {
        0 | 1 => Acks::Written,
        _ => Acks::Durable,
    };
    let silent = req.acks == 0;
    let mut throttle = 0;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let slot = if req.transactional_id.is_none() {
        b.gates.slot(Class::Produce).await.ok()
    } else {
        None
    };
    for t in req.topic_data {
        let name = t.name;
        let mut answers: BTreeMap<usize, PartitionProduceResponse> = BTreeMap::new();
        let mut batches = Vec::new();
        let mut order = Vec::new();
        for (i, p) in t.partition_data.into_iter().enumerate() {
            let refuse = |e: i16, m: String| partition_error(p.index, e, Some(m), v);
            if req.transactional_id.is_some() {
                answers.insert(
                    i,
                    refuse(
                        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        "the collector does not support transactions".into(),
                    ),
                );
            } else if slot.is_none() {
                throttle = 1000;
                answers.insert(i, refuse(code::REQUEST_TIMED_OUT, "collector busy".into()));
            } else if p.index < 0 {
                answers.insert(
                    i,
                    refuse(
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        "negative partition".into(),
                    ),
                );
            } else {
                match single_batch(&p.records) {
                    Ok(batch) => {
                        order.push(i);
                        batches.push(PartitionBatch {
                            partition: p.index as u32,
                            batch,
                        });
                    }
                    Err((e, m)) => {
                        answers.insert(i, refuse(e, m));
                    }
                }
            }
        }
        if !batches.is_empty() {
            let parts: Vec<u32> = batches.iter().map(|p| p.partition).collect();
            let r = b
                .service
                .produce(
                    &sess.principal,
                    Req {
                        topic: name.clone(),
                        partitions: batches,
                        acks,
                    },
                )
                .await;
            match r {
                Ok(results) => {
                    for (i, res) in order.iter().zip(results) {
                        let index = res.partition as i32;
                        answers.insert(*i, partition_answer(index, res.result, v));
                    }
                }
                Err(e) => {
                    for (i, p) in order.iter().zip(parts) {
                        answers.insert(
                            *i,
                            partition_error(p as i32, errors::of(&e), Some(e.to_string()), v),
                        );
                    }
                }
            }
        }
        let errs = answers
            .values()
            .filter(|a| a.error_code != code::NONE)
            .count();
        b.metrics.errors.add(errs as u64);
        topics.push(TopicProduceResponse {
            name,
            partition_responses: answers.into_values().collect(),
        });
    }
    if silent {
        return Produced::Silent;
    }
    Produced::Answer(ProduceResponse {
        responses: topics,
        throttle_time_ms: throttle,
    })
}

fn partition_answer(
    index: i32,
    r: Result<crate::service::BatchAck, ServiceError>,
    v: i16,
) -> PartitionProduceResponse {
    match r {
        Ok(ack) => PartitionProduceResponse {
            index,
            base_offset: ack.base_offset,
            log_start_offset: ack.log_start_offset,
            ..Default::default()
        },
        Err(e) => partition_error(index, errors::of(&e), Some(e.to_string()), v),
    }
}

/// InitProducerId: a new id for this principal, or the next epoch of the
/// id it names (v3+). An id at its last epoch is replaced by a new one,
/// as a Kafka broker does. Transactional ids are refused.
pub async fn init_producer_id(
    b: &Broker,
    sess: &Session,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refuse = |e: i16| InitProducerIdResponse {
        error_code: e,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if req.transactional_id.is_some() {
        return refuse(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    let Ok(_slot) = b.gates.slot(Class::Other).await else {
        return refuse(code::REQUEST_TIMED_OUT);
    };
    let existing = (req.producer_id >= 0).then_some(req.producer_id);
    let who = &sess.principal;
    let r = match b.service.init_producer(who, existing).await {
        Err(ServiceError::EpochExhausted { .. }) => b.service.init_producer(who, None).await,
        r => r,
    };
    match r {
        Ok(id) => InitProducerIdResponse {
            producer_id: id.producer_id,
            producer_epoch: id.producer_epoch,
            ..Default::default()
        },
        Err(e) => refuse(errors::of(&e)),
    }
}
