//! Metadata (the collector as the only broker, leader of every partition;
//! topics created on request when `auto_create_topics` allows), FindCoordinator
//! (this broker) and CreateTopics (within the collector's limits).

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::protocol::TopicInfo;

use super::super::connection::Session;
use super::super::errors::{self, code};
use super::super::{Broker, NODE_ID};
use crate::service::ServiceError;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// The brokers list: this collector alone.
fn brokers(b: &Broker) -> Vec<MetadataResponseBroker> {
    vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(s(b.advertised_host.clone()))
        .with_port(b.advertised_port)]
}

fn topic_entry(info: &TopicInfo) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(info.topic.clone()))))
        .with_partitions(
            info.partitions
                .iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p.partition as i32)
                        .with_leader_id(BrokerId(NODE_ID))
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![BrokerId(NODE_ID)])
                        .with_isr_nodes(vec![BrokerId(NODE_ID)])
                })
                .collect(),
        )
}

fn topic_error(name: &str, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(name))))
        .with_error_code(error)
}

/// Metadata: every topic the caller sees, or the ones asked for (created
/// when asked for, allowed and configured).
pub async fn metadata(
    b: &Broker,
    sess: &Session,
    req: MetadataRequest,
    v: i16,
) -> MetadataResponse {
    let who = &sess.principal;
    // v0: an empty list means every topic; v1+: null means every topic.
    let names: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && v == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.as_str().to_owned()))
                .collect(),
        ),
    };
    let auto_create = b.auto_create_topics && (v < 4 || req.allow_auto_topic_creation);
    let topics = match names {
        None => match b.service.list_topics(who).await {
            Ok(list) => list.iter().map(topic_entry).collect(),
            Err(_) => Vec::new(),
        },
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(one_topic(b, sess, &name, auto_create).await);
            }
            out
        }
    };
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers(b))
        .with_topics(topics);
    if v >= 1 {
        resp = resp.with_controller_id(BrokerId(NODE_ID));
    }
    if v >= 2 {
        resp = resp.with_cluster_id(Some(s(b.cluster_id.clone())));
    }
    resp
}

async fn one_topic(
    b: &Broker,
    sess: &Session,
    name: &str,
    auto_create: bool,
) -> MetadataResponseTopic {
    let who = &sess.principal;
    match b.service.describe_topic(who, name).await {
        Ok(info) => topic_entry(&info),
        Err(ServiceError::UnknownTopic(_)) if auto_create => {
            match b.service.create_topic(who, name, None).await {
                Ok(info) => topic_entry(&info),
                // May not create it: to this caller it does not exist.
                Err(ServiceError::Unauthorized { .. }) => {
                    topic_error(name, code::UNKNOWN_TOPIC_OR_PARTITION)
                }
                Err(e) => topic_error(name, errors::of(&e)),
            }
        }
        Err(e) => topic_error(name, errors::of(&e)),
    }
}

/// FindCoordinator: this broker coordinates every group (and would every
/// transaction, but transactional ids are refused elsewhere).
pub fn find_coordinator(
    b: &Broker,
    req: FindCoordinatorRequest,
    v: i16,
) -> FindCoordinatorResponse {
    let host = s(b.advertised_host.clone());
    if v >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(host.clone())
                    .with_port(b.advertised_port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(host)
        .with_port(b.advertised_port)
}

/// CreateTopics: each topic within the collector's limits; replication
/// factors other than 1 (or -1, the default) cannot be honoured by a single broker.
pub async fn create_topics(
    b: &Broker,
    sess: &Session,
    req: CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        let (error, message, partitions) = create_one(b, sess, &t, req.validate_only).await;
        let mut r = CreatableTopicResult::default()
            .with_name(t.name)
            .with_error_code(error);
        if v >= 1 {
            r = r.with_error_message(message.map(s));
        }
        if v >= 5 {
            r = r
                .with_num_partitions(partitions.unwrap_or(-1))
                .with_replication_factor(if partitions.is_some() { 1 } else { -1 });
        }
        if error != code::NONE {
            tracing::debug!(topic = %name, error, "CreateTopics refused a topic.");
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    b: &Broker,
    sess: &Session,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> (i16, Option<String>, Option<i32>) {
    let who = &sess.principal;
    let name = t.name.0.as_str();
    if t.replication_factor != -1 && t.replication_factor != 1 {
        return (
            code::INVALID_REPLICATION_FACTOR,
            Some("the collector is a single broker: replication factor 1 (or -1)".into()),
            None,
        );
    }
    if !t.assignments.is_empty() {
        return (
            code::INVALID_REQUEST,
            Some("manual replica assignments are not supported".into()),
            None,
        );
    }
    let partitions = match t.num_partitions {
        -1 => None,
        n if n <= 0 => {
            return (
                code::INVALID_PARTITIONS,
                Some(format!("{n} partitions")),
                None,
            )
        }
        n => Some(n as u32),
    };
    if b.service.describe_topic(who, name).await.is_ok() {
        return (
            code::TOPIC_ALREADY_EXISTS,
            Some(format!("topic {name} already exists")),
            None,
        );
    }
    if validate_only {
        return (code::NONE, None, partitions.map(|p| p as i32));
    }
    match b.service.create_topic(who, name, partitions).await {
        Ok(info) => (code::NONE, None, Some(info.partitions.len() as i32)),
        Err(e) => (errors::of(&e), Some(e.to_string()), None),
    }
}

/// DescribeConfigs: a topic's settings as Kafka names them (all read-only,
/// set for the whole collector); a broker has none to show.
pub async fn describe_configs(
    b: &Broker,
    sess: &Session,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    const TOPIC: i8 = 2;
    let store = b.service.store().config();
    let ms = |d: Option<std::time::Duration>| d.map_or(-1, |d| d.as_millis() as i64).to_string();
    let settings = [
        ("cleanup.policy", "delete".to_owned()),
        ("retention.ms", ms(store.retention)),
        (
            "retention.bytes",
            store.retention_bytes.map_or(-1, |b| b as i64).to_string(),
        ),
        ("segment.bytes", store.segment_bytes.to_string()),
        ("message.timestamp.type", "CreateTime".to_owned()),
        ("max.message.bytes", b.max_request_bytes.to_string()),
        ("min.insync.replicas", "1".to_owned()),
    ];
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let mut out = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if r.resource_type == TOPIC {
            if let Err(e) = b
                .service
                .describe_topic(&sess.principal, r.resource_name.as_str())
                .await
            {
                results.push(
                    out.with_error_code(errors::of(&e))
                        .with_error_message(Some(s(e.to_string()))),
                );
                continue;
            }
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            out = out.with_configs(
                settings
                    .iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, v)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(s(*n))
                            .with_value(Some(s(v.clone())))
                            .with_read_only(true)
                            .with_config_source(4)
                    })
                    .collect(),
            );
        }
        results.push(out);
    }
    DescribeConfigsResponse::default().with_results(results)
}
