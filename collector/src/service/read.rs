//! Reading: fetch with long-poll, and offsets by position or time.

use std::sync::Arc;
use std::time::Duration;

use super::{blocking, Service, ServiceError};
use crate::auth::{Operation, Principal};
use crate::log::{Partition, ReadError};

/// A fetch from one partition.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    /// First offset wanted.
    pub offset: i64,
    /// Answer size aimed at; at least one whole batch is answered even when larger.
    pub max_bytes: usize,
    /// Longest to wait for data when none is there yet (capped by the service).
    pub max_wait: Duration,
}

/// Batches from one partition, byte for byte as stored.
#[derive(Debug, Clone, Default)]
pub struct FetchResponse {
    /// Whole RecordBatch v2 batches; empty when nothing arrived in time.
    pub batches: Vec<u8>,
    /// The offset to fetch next.
    pub next_offset: i64,
    /// Inclusive offset ranges below `next_offset` whose records were lost
    /// to on-disk damage, in order; `batches` holds every intact record
    /// around them.
    pub lost: Vec<(i64, i64)>,
    /// The partition's first retained offset.
    pub start_offset: i64,
    /// One past the last durable offset (Kafka's high watermark).
    pub end_offset: i64,
}

/// Which offset to look up (Kafka ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose batch holds a record at or after this time (ms since the epoch).
    Time(i64),
}

impl Service {
    fn partition(
        &self,
        who: &Principal,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Partition>, ServiceError> {
        Self::authorize(who, Operation::Consume, topic)?;
        let t = self.existing_topic(topic)?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| ServiceError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// Reads durable batches from `req.offset`, after waiting up to
    /// `req.max_wait` for some to arrive ([`Service::wait_for_data`]).
    pub async fn fetch(
        &self,
        who: &Principal,
        req: FetchRequest,
    ) -> Result<FetchResponse, ServiceError> {
        let p = self.partition(who, &req.topic, req.partition)?;
        if !req.max_wait.is_zero() {
            self.wait_on(&p, req.offset, req.max_wait).await;
        }
        let max_bytes = req.max_bytes.clamp(1, self.limits.max_fetch_bytes);
        let part = p.clone();
        let offset = req.offset;
        let fetched = blocking(move || part.read(offset, max_bytes))
            .await?
            .map_err(|e| match e {
                ReadError::OutOfRange { offset, start, end } => {
                    ServiceError::OffsetOutOfRange { offset, start, end }
                }
                e => ServiceError::Storage(e.to_string()),
            })?;
        let (start_offset, end_offset) = p.bounds();
        Ok(FetchResponse {
            batches: fetched.bytes,
            next_offset: fetched.next,
            lost: fetched.lost,
            start_offset,
            end_offset,
        })
    }

    /// Waits (at most `max_wait`, capped by the service) until the partition
    /// has durable data at `offset`, or the collector starts shutting down.
    /// A front-end calls this before it reserves memory for the answer, so a
    /// waiting consumer holds no budget.
    pub async fn wait_for_data(
        &self,
        who: &Principal,
        topic: &str,
        partition: u32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<(), ServiceError> {
        let p = self.partition(who, topic, partition)?;
        self.wait_on(&p, offset, max_wait).await;
        Ok(())
    }

    async fn wait_on(&self, p: &Partition, offset: i64, max_wait: Duration) {
        let wait = max_wait.min(self.limits.max_wait);
        let mut durable = p.durable();
        let mut draining = self.draining.clone();
        tokio::select! {
            _ = tokio::time::timeout(wait, durable.wait_for(|d| d.end > offset || d.failed)) => {}
            _ = draining.wait_for(|s| *s) => {}
        }
    }

    /// Looks up an offset.
    pub async fn list_offset(
        &self,
        who: &Principal,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<i64, ServiceError> {
        let p = self.partition(who, topic, partition)?;
        let (start, end) = p.bounds();
        Ok(match spec {
            OffsetSpec::Earliest => start,
            OffsetSpec::Latest => end,
            OffsetSpec::Time(ms) => blocking(move || p.offset_for_time(ms)).await?,
        })
    }
}
