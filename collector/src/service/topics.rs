//! Topics (create within limits, list, describe) and producer identities.

use std::sync::Arc;

use tracing::info;
use weir_core::protocol::{
    valid_name, PartitionInfo, ProducerIdentity, ProducerPosition, TopicInfo,
};

use super::{blocking, Service, ServiceError};
use crate::auth::{Operation, Principal};
use crate::log::Topic;

impl Service {
    /// The topic a write goes to, created (with the default partition count)
    /// when it does not exist and `who` may create it.
    pub(super) async fn topic_for_write(
        self: &Arc<Self>,
        who: &Principal,
        name: &str,
    ) -> Result<Arc<Topic>, ServiceError> {
        if let Some(t) = self.store.topic(name) {
            return Ok(t);
        }
        Self::authorize(who, Operation::Create, name)?;
        self.create(name, None).await
    }

    /// A topic that exists; one refused for damaged metadata says so.
    pub(super) fn existing_topic(&self, name: &str) -> Result<Arc<Topic>, ServiceError> {
        if let Some(t) = self.store.topic(name) {
            return Ok(t);
        }
        Err(match self.store.refused(name) {
            Some(e) => e.into(),
            None => ServiceError::UnknownTopic(name.to_owned()),
        })
    }

    /// Creates a topic (idempotent: an existing topic is answered as it is).
    pub async fn create_topic(
        self: &Arc<Self>,
        who: &Principal,
        name: &str,
        partitions: Option<u32>,
    ) -> Result<TopicInfo, ServiceError> {
        Self::authorize(who, Operation::Create, name)?;
        let t = match self.store.topic(name) {
            Some(t) => t,
            None => self.create(name, partitions).await?,
        };
        blocking(move || topic_info(&t)).await
    }

    /// Checks the name and limits, then creates the topic under the creation
    /// lock, so that parallel first writes to a new topic create it once and
    /// the topic count cannot overshoot `max_topics`.
    async fn create(
        self: &Arc<Self>,
        name: &str,
        partitions: Option<u32>,
    ) -> Result<Arc<Topic>, ServiceError> {
        if !valid_name(name) {
            return Err(ServiceError::InvalidRequest(format!(
                "invalid topic name {name:?}: use 1-200 letters, digits, '.', '_' and '-'"
            )));
        }
        let n = partitions.unwrap_or(self.limits.default_partitions);
        if n == 0 || n > self.limits.max_partitions {
            return Err(ServiceError::LimitExceeded(format!(
                "a topic has 1 to {} partitions (limits.max_partitions_per_topic); asked for {n}",
                self.limits.max_partitions
            )));
        }
        let me = self.clone();
        let name = name.to_owned();
        blocking(move || {
            let _guard = me.create_lock.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = me.store.topic(&name) {
                return Ok(t);
            }
            let count = me.store.topics().len();
            if count >= me.limits.max_topics {
                return Err(ServiceError::LimitExceeded(format!(
                    "the collector holds {count} topics, its limit (limits.max_topics); topic {name} was not created"
                )));
            }
            let t = me.store.get_or_create(&name, Some(n))?;
            info!(topic = %name, partitions = n, "Topic created.");
            Ok(t)
        })
        .await?
    }

    /// The topics `who` may see, with their partitions.
    pub async fn list_topics(&self, who: &Principal) -> Result<Vec<TopicInfo>, ServiceError> {
        let topics: Vec<Arc<Topic>> = self
            .store
            .topics()
            .into_iter()
            .filter(|t| who.sees_topic(&t.name))
            .collect();
        blocking(move || topics.iter().map(|t| topic_info(t)).collect()).await
    }

    /// One topic.
    pub async fn describe_topic(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<TopicInfo, ServiceError> {
        if !who.sees_topic(name) {
            return Err(ServiceError::Unauthorized {
                principal: who.name().to_owned(),
                op: Operation::Consume,
                name: name.to_owned(),
            });
        }
        let t = self.existing_topic(name)?;
        blocking(move || topic_info(&t)).await
    }

    /// Issues a producer id to `who`, or bumps the epoch of one issued to it
    /// before (Kafka's InitProducerId). Durable before it answers.
    pub async fn init_producer(
        self: &Arc<Self>,
        who: &Principal,
        existing: Option<i64>,
    ) -> Result<ProducerIdentity, ServiceError> {
        let me = self.clone();
        let name = who.name().to_owned();
        let (producer_id, producer_epoch) =
            blocking(move || me.producers.init(&name, existing)).await??;
        info!(
            principal = who.name(),
            producer_id, producer_epoch, "Issued a producer identity."
        );
        Ok(ProducerIdentity {
            producer_id,
            producer_epoch,
        })
    }

    /// Where producer `id` stands in each partition of `topic`: what the
    /// producer needs on restart. Only the principal the id was issued to
    /// (or anyone with produce rights, for an id never issued) may ask.
    pub async fn producer_positions(
        &self,
        who: &Principal,
        id: i64,
        topic: &str,
    ) -> Result<Vec<ProducerPosition>, ServiceError> {
        Self::authorize(who, Operation::Produce, topic)?;
        if !self.producers.may_inspect(who.name(), id) {
            return Err(ServiceError::InvalidProducerId {
                producer_id: id,
                principal: who.name().to_owned(),
            });
        }
        let Some(t) = self.store.topic(topic) else {
            return Ok(Vec::new());
        };
        Ok(t.partitions
            .iter()
            .filter_map(|p| {
                p.producer_position(id)
                    .map(|(producer_epoch, next_sequence)| ProducerPosition {
                        partition: p.id,
                        producer_epoch,
                        next_sequence,
                    })
            })
            .collect())
    }
}

/// A topic's description. Blocking (takes each partition's lock).
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
