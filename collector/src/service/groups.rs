//! Consumer group offsets (Kafka OffsetCommit / OffsetFetch).

use std::sync::Arc;

use weir_core::protocol::{valid_name, GroupOffset};

use super::{blocking, Service, ServiceError};
use crate::auth::{Operation, Principal};

impl Service {
    fn check_group(who: &Principal, group: &str, topic: &str) -> Result<(), ServiceError> {
        if !valid_name(group) || !valid_name(topic) {
            return Err(ServiceError::InvalidRequest(
                "invalid group or topic name: use 1-200 letters, digits, '.', '_' and '-'".into(),
            ));
        }
        Self::authorize(who, Operation::Group, group)?;
        Self::authorize(who, Operation::Consume, topic)
    }

    /// Commits a group's offsets in a topic (partitions not named keep theirs).
    pub async fn commit_offsets(
        &self,
        who: &Principal,
        group: &str,
        topic: &str,
        offsets: Vec<GroupOffset>,
    ) -> Result<(), ServiceError> {
        Self::check_group(who, group, topic)?;
        if offsets.iter().any(|o| o.offset < 0) {
            return Err(ServiceError::InvalidRequest(
                "offsets must not be negative".into(),
            ));
        }
        let groups = Arc::clone(&self.groups);
        let (group, topic) = (group.to_owned(), topic.to_owned());
        Ok(blocking(move || groups.commit(&group, &topic, &offsets)).await??)
    }

    /// A group's committed offsets in a topic.
    pub async fn group_offsets(
        &self,
        who: &Principal,
        group: &str,
        topic: &str,
    ) -> Result<Vec<GroupOffset>, ServiceError> {
        Self::check_group(who, group, topic)?;
        let groups = Arc::clone(&self.groups);
        let (group, topic) = (group.to_owned(), topic.to_owned());
        Ok(blocking(move || groups.offsets(&group, &topic)).await??)
    }

    /// Topics in which a group has committed offsets that `who` may read.
    pub async fn group_topics(
        &self,
        who: &Principal,
        group: &str,
    ) -> Result<Vec<String>, ServiceError> {
        Self::authorize(who, Operation::Group, group)?;
        let groups = Arc::clone(&self.groups);
        let g = group.to_owned();
        let topics = blocking(move || groups.topics(&g)).await?;
        Ok(topics
            .into_iter()
            .filter(|t| who.may(Operation::Consume, t))
            .collect())
    }
}
