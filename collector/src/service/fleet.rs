//! Agent heartbeats and the fleet view (`crate::fleet`).
//!
//! Rights: a heartbeat needs produce rights on some topic (every agent's
//! principal has them); the agents of the view need consume rights on some
//! topic; its topics and groups are filtered as their listings are.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info};
use weir_core::fleet::Heartbeat;

use super::{blocking, Service, ServiceError};
use crate::auth::{Operation, Principal};
use crate::fleet::{FleetView, GroupPartition, GroupView, TopicView, MAX_GROUP_ROWS};
use crate::groups::Groups;
use crate::log::Store;

impl Service {
    /// Records an agent's heartbeat, bounded (`Heartbeat::check`).
    pub fn agent_heartbeat(&self, who: &Principal, beat: Heartbeat) -> Result<(), ServiceError> {
        let refuse = |e: ServiceError| {
            self.observed().heartbeat("refused");
            e
        };
        Self::authorize(who, Operation::Heartbeat, "this collector").map_err(refuse)?;
        beat.check()
            .map_err(|e| refuse(ServiceError::InvalidRequest(format!("heartbeat: {e}"))))?;
        let agent = beat.agent.clone();
        if let Some(evicted) = self.fleet.agents.record(beat, who.name(), Instant::now()) {
            info!(evicted = %evicted, limit = self.limits.max_agents, "Fleet table full; forgot the least recently seen agent.");
        }
        debug!(agent = %agent, principal = who.name(), "Heartbeat.");
        self.observed().heartbeat("accepted");
        Ok(())
    }

    /// The fleet as `who` may see it.
    pub async fn fleet(&self, who: &Principal) -> Result<FleetView, ServiceError> {
        Self::authorize(who, Operation::SeeAgents, "this collector")?;
        let store = Arc::clone(&self.store);
        let groups = Arc::clone(&self.groups);
        let who2 = who.clone();
        let (mut topics, all, groups, truncated) = blocking(move || {
            let (topics, all) = topic_views(&store, &who2);
            let (groups, truncated) = group_views(&store, &groups, &who2);
            (topics, all, groups, truncated)
        })
        .await?;
        let now = Instant::now();
        self.fleet.rate_topics(&mut topics, all, now);
        Ok(FleetView {
            generated_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            agents: self.fleet.agents.view(now),
            topics,
            groups,
            groups_truncated: truncated,
        })
    }
}

/// The topics `who` sees, and whether that is all of them. Blocking.
fn topic_views(store: &Store, who: &Principal) -> (Vec<TopicView>, bool) {
    let all = store.topics();
    let n = all.len();
    let mut out: Vec<TopicView> = all
        .into_iter()
        .filter(|t| who.sees_topic(&t.name))
        .map(|t| {
            let mut v = TopicView {
                topic: t.name.clone(),
                partitions: t.partitions.len() as u32,
                records: 0,
                end_offset: 0,
                bytes: 0,
                segments: 0,
                records_per_sec: 0.0,
            };
            for p in &t.partitions {
                let (start, end, bytes, segments) = p.stats();
                v.records += end - start;
                v.end_offset += end;
                v.bytes += bytes;
                v.segments += segments;
            }
            v
        })
        .collect();
    out.sort_by(|a, b| a.topic.cmp(&b.topic));
    let complete = out.len() == n;
    (out, complete)
}

/// Every (group, topic) `who` may read, with its lag; at most
/// `MAX_GROUP_ROWS`, and whether some were left out. Blocking.
fn group_views(store: &Store, groups: &Groups, who: &Principal) -> (Vec<GroupView>, bool) {
    let mut out = Vec::new();
    for g in groups.list() {
        if !who.may(Operation::Group, &g) {
            continue;
        }
        for t in groups.topics(&g) {
            if !who.may(Operation::Consume, &t) {
                continue;
            }
            if out.len() >= MAX_GROUP_ROWS {
                return (out, true);
            }
            // A damaged group file is reported by the group's own endpoints.
            let Ok(offsets) = groups.offsets(&g, &t) else {
                continue;
            };
            let topic = store.topic(&t);
            let partitions: Vec<GroupPartition> = offsets
                .into_iter()
                .map(|o| {
                    let end = topic
                        .as_ref()
                        .and_then(|tp| tp.partitions.get(o.partition as usize))
                        .map_or(o.offset, |p| p.bounds().1);
                    GroupPartition {
                        partition: o.partition,
                        committed: o.offset,
                        end_offset: end,
                        lag: (end - o.offset).max(0),
                    }
                })
                .collect();
            out.push(GroupView {
                group: g.clone(),
                topic: t,
                lag: partitions.iter().map(|p| p.lag).sum(),
                partitions,
            });
        }
    }
    (out, false)
}
