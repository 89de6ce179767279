//! Metadata (the collector as the only broker, leader of every partition;
//! topics created on request when `auto_create_topics` allows), FindCoordinator
//! (this broker) and CreateTopics (within the collector's limits).

use weir_core::protocol::TopicInfo;

use super::super::connection::Session;
use super::super::errors::{self, code};
use super::super::protocol::create_topics::{
    CreatableTopic, CreatableTopicResult, CreateTopicsRequest, CreateTopicsResponse,
};
use super::super::protocol::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResourceResult, DescribeConfigsResponse,
    DescribeConfigsResult,
};
use super::super::protocol::find_coordinator::{
    Coordinator, FindCoordinatorRequest, FindCoordinatorResponse,
};
use super::super::protocol::metadata::{
    MetadataRequest, MetadataResponse, MetadataResponseBroker, MetadataResponsePartition,
    MetadataResponseTopic,
};
use super::super::{Broker, NODE_ID};
use crate::service::ServiceError;

/// The brokers list: this collector alone.
fn brokers(b: &Broker) -> Vec<MetadataResponseBroker> {
    vec![MetadataResponseBroker {
        node_id: NODE_ID,
        host: b.advertised_host.clone(),
        port: b.advertised_port,
        rack: None,
    }]
}

fn topic_entry(info: &TopicInfo) -> MetadataResponseTopic {
    MetadataResponseTopic {
        name: Some(info.topic.clone()),
        partitions: info
            .partitions
            .iter()
            .map(|p| MetadataResponsePartition {
                partition_index: p.partition as i32,
                leader_id: NODE_ID,
                leader_epoch: 0,
                replica_nodes: vec![NODE_ID],
                isr_nodes: vec![NODE_ID],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn topic_error(name: &str, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic {
        name: Some(name.to_owned()),
        error_code: error,
        ..Default::default()
    }
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
        Some(t) => Some(t.into_iter().filter_map(|t| t.name).collect()),
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
    MetadataResponse {
        brokers: brokers(b),
        topics,
        controller_id: NODE_ID,
        cluster_id: Some(b.cluster_id.clone()),
        ..Default::default()
    }
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
    let host = b.advertised_host.clone();
    if v >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| Coordinator {
                key,
                node_id: NODE_ID,
                host: host.clone(),
                port: b.advertised_port,
                ..Default::default()
            })
            .collect();
        return FindCoordinatorResponse {
            coordinators,
            ..Default::default()
        };
    }
    FindCoordinatorResponse {
        node_id: NODE_ID,
        host,
        port: b.advertised_port,
        ..Default::default()
    }
}

/// CreateTopics: each topic within the collector's limits; replication
/// factors other than 1 (or -1, the default) cannot be honoured by a single broker.
pub async fn create_topics(
    b: &Broker,
    sess: &Session,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let (error, message, partitions) = create_one(b, sess, &t, req.validate_only).await;
        let name = t.name;
        if error != code::NONE {
            tracing::debug!(topic = %name, error, "CreateTopics refused a topic.");
        }
        results.push(CreatableTopicResult {
            name,
            error_code: error,
            error_message: message,
            num_partitions: partitions.unwrap_or(-1),
            replication_factor: if partitions.is_some() { 1 } else { -1 },
            ..Default::default()
        });
    }
    CreateTopicsResponse {
        topics: results,
        ..Default::default()
    }
}

async fn create_one(
    b: &Broker,
    sess: &Session,
    t: &CreatableTopic,
    validate_only: bool,
) -> (i16, Option<String>, Option<i32>) {
    let who = &sess.principal;
    let name = t.name.as_str();
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
        let mut out = DescribeConfigsResult {
            resource_type: r.resource_type,
            resource_name: r.resource_name.clone(),
            ..Default::default()
        };
        if r.resource_type == TOPIC {
            if let Err(e) = b
                .service
                .describe_topic(&sess.principal, r.resource_name.as_str())
                .await
            {
                out.error_code = errors::of(&e);
                out.error_message = Some(e.to_string());
                results.push(out);
                continue;
            }
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            out.configs = settings
                .iter()
                .filter(|(n, _)| wanted(n))
                .map(|(n, v)| DescribeConfigsResourceResult {
                    name: (*n).to_owned(),
                    value: Some(v.clone()),
                    read_only: true,
                    config_source: 4,
                    ..Default::default()
                })
                .collect();
        }
        results.push(out);
    }
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}
