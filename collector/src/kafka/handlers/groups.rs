//! Consumer groups: JoinGroup, SyncGroup, Heartbeat, LeaveGroup (the
//! service's membership), OffsetCommit and OffsetFetch (the same committed
//! offsets HTTP consumers read and write), DescribeGroups and ListGroups.

use std::time::Duration;

use weir_core::protocol::GroupOffset;

use super::super::connection::Session;
use super::super::errors::{self, code};
use super::super::protocol::describe_groups::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use super::super::protocol::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use super::super::protocol::join_group::{
    JoinGroupRequest, JoinGroupResponse, JoinGroupResponseMember,
};
use super::super::protocol::leave_group::{LeaveGroupRequest, LeaveGroupResponse, MemberResponse};
use super::super::protocol::list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
use super::super::protocol::offset_commit::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
};
use super::super::protocol::offset_fetch::{
    OffsetFetchRequest, OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use super::super::protocol::sync_group::{SyncGroupRequest, SyncGroupResponse};
use super::super::Broker;
use crate::limits::Class;
use crate::service::membership::JoinRequest;

/// JoinGroup: waits until the group's rebalance completes.
pub async fn join(b: &Broker, sess: &Session, req: JoinGroupRequest, v: i16) -> JoinGroupResponse {
    let refuse = |e: i16, member: String| JoinGroupResponse {
        error_code: e,
        generation_id: -1,
        member_id: member,
        ..Default::default()
    };
    let Ok(_slot) = b.gates.slot(Class::Fetch).await else {
        return refuse(code::COORDINATOR_NOT_AVAILABLE, req.member_id);
    };
    let ms = |v: i32| Duration::from_millis(v.max(0) as u64);
    let jr = JoinRequest {
        group: req.group_id,
        member_id: req.member_id,
        group_instance_id: req.group_instance_id,
        client_id: sess.client_id.clone(),
        client_host: format!("/{}", sess.peer.ip()),
        session_timeout: ms(req.session_timeout_ms),
        // v0 had no rebalance timeout: the session timeout served as one.
        rebalance_timeout: if v >= 1 {
            ms(req.rebalance_timeout_ms)
        } else {
            ms(req.session_timeout_ms)
        },
        protocol_type: req.protocol_type,
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name, p.metadata))
            .collect(),
    };
    match b.service.join_group(&sess.principal, jr).await {
        Ok(j) => JoinGroupResponse {
            generation_id: j.generation,
            protocol_type: Some(j.protocol_type),
            protocol_name: Some(j.protocol),
            leader: j.leader,
            member_id: j.member_id,
            members: j
                .members
                .into_iter()
                .map(|m| JoinGroupResponseMember {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    metadata: m.metadata,
                })
                .collect(),
            ..Default::default()
        },
        Err(e) => refuse(errors::of_group(&e), String::new()),
    }
}

/// SyncGroup: the leader hands in assignments; everyone gets theirs.
pub async fn sync(b: &Broker, sess: &Session, req: SyncGroupRequest) -> SyncGroupResponse {
    let Ok(_slot) = b.gates.slot(Class::Fetch).await else {
        return SyncGroupResponse {
            error_code: code::COORDINATOR_NOT_AVAILABLE,
            ..Default::default()
        };
    };
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id, a.assignment))
        .collect();
    let r = b
        .service
        .sync_group(
            &sess.principal,
            &req.group_id,
            req.generation_id,
            &req.member_id,
            assignments,
        )
        .await;
    match r {
        Ok(a) => SyncGroupResponse {
            assignment: a,
            protocol_type: req.protocol_type,
            protocol_name: req.protocol_name,
            ..Default::default()
        },
        Err(e) => SyncGroupResponse {
            error_code: errors::of_group(&e),
            ..Default::default()
        },
    }
}

/// Heartbeat.
pub fn heartbeat(b: &Broker, sess: &Session, req: HeartbeatRequest) -> HeartbeatResponse {
    let r = b.service.heartbeat(
        &sess.principal,
        &req.group_id,
        req.generation_id,
        &req.member_id,
    );
    HeartbeatResponse {
        error_code: r.err().map_or(code::NONE, |e| errors::of_group(&e)),
        ..Default::default()
    }
}

/// LeaveGroup (one member before v3, a batch of members from v3).
pub fn leave(b: &Broker, sess: &Session, req: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let ids: Vec<String> = if v >= 3 {
        req.members.iter().map(|m| m.member_id.clone()).collect()
    } else {
        vec![req.member_id.clone()]
    };
    match b.service.leave_group(&sess.principal, &req.group_id, &ids) {
        Err(e) => LeaveGroupResponse {
            error_code: errors::of_group(&e),
            ..Default::default()
        },
        Ok(results) if v >= 3 => LeaveGroupResponse {
            members: req
                .members
                .into_iter()
                .zip(results)
                .map(|(m, r)| MemberResponse {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    error_code: r.err().map_or(code::NONE, |e| errors::of_group(&e)),
                })
                .collect(),
            ..Default::default()
        },
        Ok(results) => LeaveGroupResponse {
            error_code: results
                .into_iter()
                .next()
                .and_then(|r| r.err())
                .map_or(code::NONE, |e| errors::of_group(&e)),
            ..Default::default()
        },
    }
}

/// OffsetCommit: checked against the group's generation, then written to
/// the same store as HTTP commits.
pub async fn offset_commit(
    b: &Broker,
    sess: &Session,
    req: OffsetCommitRequest,
    v: i16,
) -> OffsetCommitResponse {
    let group = req.group_id.clone();
    let generation = if v >= 1 {
        req.generation_id_or_member_epoch
    } else {
        -1
    };
    let slot = b.gates.slot(Class::Other).await.ok();
    let gate = match &slot {
        None => Err(code::REQUEST_TIMED_OUT),
        Some(_) => b
            .service
            .check_commit(&group, generation, &req.member_id)
            .map_err(|e| errors::of_group(&e)),
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = t.name.clone();
        let valid: Vec<GroupOffset> = t
            .partitions
            .iter()
            .filter(|p| p.partition_index >= 0 && p.committed_offset >= 0)
            .map(|p| GroupOffset {
                partition: p.partition_index as u32,
                offset: p.committed_offset,
            })
            .collect();
        let result = match gate {
            Err(e) => Err(e),
            Ok(()) => b
                .service
                .commit_offsets(&sess.principal, &group, &topic, valid)
                .await
                .map_err(|e| errors::of(&e)),
        };
        let parts = t
            .partitions
            .into_iter()
            .map(|p| {
                let e = match &result {
                    _ if p.partition_index < 0 => code::UNKNOWN_TOPIC_OR_PARTITION,
                    _ if p.committed_offset < 0 => code::INVALID_REQUEST,
                    Ok(()) => code::NONE,
                    Err(e) => *e,
                };
                OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: e,
                }
            })
            .collect();
        topics.push(OffsetCommitResponseTopic {
            name: t.name,
            partitions: parts,
        });
    }
    OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}

/// OffsetFetch: committed offsets (-1 where none); all topics of the group
/// when the request names none (v2+).
pub async fn offset_fetch(
    b: &Broker,
    sess: &Session,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let group = req.group_id.clone();
    let Ok(_slot) = b.gates.slot(Class::Other).await else {
        return OffsetFetchResponse {
            error_code: code::REQUEST_TIMED_OUT,
            ..Default::default()
        };
    };
    let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
        Some(t) => t
            .into_iter()
            .map(|t| (t.name, Some(t.partition_indexes)))
            .collect(),
        None => b
            .service
            .group_topics(&sess.principal, &group)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t, None))
            .collect(),
    };
    let mut top_error = code::NONE;
    let mut topics = Vec::with_capacity(wanted.len());
    for (topic, parts) in wanted {
        let stored = b
            .service
            .group_offsets(&sess.principal, &group, &topic)
            .await;
        let (err, stored) = match stored {
            Ok(o) => (code::NONE, o),
            Err(e) => (errors::of(&e), Vec::new()),
        };
        if err == code::GROUP_AUTHORIZATION_FAILED {
            top_error = err;
        }
        let parts: Vec<i32> =
            parts.unwrap_or_else(|| stored.iter().map(|o| o.partition as i32).collect());
        let partitions = parts
            .into_iter()
            .map(|p| {
                let offset = stored
                    .iter()
                    .find(|o| o.partition as i32 == p)
                    .map_or(-1, |o| o.offset);
                OffsetFetchResponsePartition {
                    partition_index: p,
                    committed_offset: offset,
                    metadata: Some(String::new()),
                    error_code: if err == code::GROUP_AUTHORIZATION_FAILED {
                        code::NONE
                    } else {
                        err
                    },
                    ..Default::default()
                }
            })
            .collect();
        topics.push(OffsetFetchResponseTopic {
            name: topic,
            partitions,
        });
    }
    OffsetFetchResponse {
        topics,
        error_code: top_error,
        ..Default::default()
    }
}

/// DescribeGroups.
pub fn describe(b: &Broker, sess: &Session, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|g| match b.service.describe_group(&sess.principal, &g) {
            Err(e) => DescribedGroup {
                group_id: g,
                error_code: errors::of_group(&e),
                ..Default::default()
            },
            Ok(d) => DescribedGroup {
                group_id: g,
                group_state: d.state.to_owned(),
                protocol_type: d.protocol_type,
                protocol_data: d.protocol,
                members: d
                    .members
                    .into_iter()
                    .map(|m| DescribedGroupMember {
                        member_id: m.member_id,
                        group_instance_id: None,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        member_metadata: m.metadata,
                        member_assignment: m.assignment,
                    })
                    .collect(),
                ..Default::default()
            },
        })
        .collect();
    DescribeGroupsResponse {
        groups,
        ..Default::default()
    }
}

/// ListGroups (filtered by state from v4).
pub async fn list(b: &Broker, sess: &Session, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    match b.service.list_groups(&sess.principal).await {
        Err(e) => ListGroupsResponse {
            error_code: errors::of(&e),
            ..Default::default()
        },
        Ok(list) => ListGroupsResponse {
            groups: list
                .into_iter()
                .filter(|(_, _, st)| states.is_empty() || states.contains(&st.to_ascii_lowercase()))
                .map(|(group_id, protocol_type, group_state)| ListedGroup {
                    group_id,
                    protocol_type,
                    group_state: group_state.to_owned(),
                })
                .collect(),
            ..Default::default()
        },
    }
}
