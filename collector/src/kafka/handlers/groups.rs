//! Consumer groups: JoinGroup, SyncGroup, Heartbeat, LeaveGroup (the
//! service's membership), OffsetCommit and OffsetFetch (the same committed
//! offsets HTTP consumers read and write), DescribeGroups and ListGroups.

use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::protocol::GroupOffset;

use super::super::connection::Session;
use super::super::errors::{self, code};
use super::super::Broker;
use crate::limits::Class;
use crate::service::membership::JoinRequest;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// JoinGroup: waits until the group's rebalance completes.
pub async fn join(b: &Broker, sess: &Session, req: JoinGroupRequest, v: i16) -> JoinGroupResponse {
    let refuse = |e: i16, member: StrBytes| {
        JoinGroupResponse::default()
            .with_error_code(e)
            .with_generation_id(-1)
            .with_member_id(member)
    };
    let Ok(_slot) = b.gates.slot(Class::Fetch).await else {
        return refuse(code::COORDINATOR_NOT_AVAILABLE, req.member_id);
    };
    let ms = |v: i32| Duration::from_millis(v.max(0) as u64);
    let jr = JoinRequest {
        group: req.group_id.0.as_str().to_owned(),
        member_id: req.member_id.as_str().to_owned(),
        group_instance_id: req.group_instance_id.map(|s| s.as_str().to_owned()),
        client_id: sess.client_id.clone(),
        client_host: format!("/{}", sess.peer.ip()),
        session_timeout: ms(req.session_timeout_ms),
        // v0 had no rebalance timeout: the session timeout served as one.
        rebalance_timeout: if v >= 1 {
            ms(req.rebalance_timeout_ms)
        } else {
            ms(req.session_timeout_ms)
        },
        protocol_type: req.protocol_type.as_str().to_owned(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata))
            .collect(),
    };
    match b.service.join_group(&sess.principal, jr).await {
        Ok(j) => {
            let mut r = JoinGroupResponse::default()
                .with_generation_id(j.generation)
                .with_protocol_name(Some(s(j.protocol)))
                .with_leader(s(j.leader))
                .with_member_id(s(j.member_id))
                .with_members(
                    j.members
                        .into_iter()
                        .map(|m| {
                            let mut e = JoinGroupResponseMember::default()
                                .with_member_id(s(m.member_id))
                                .with_metadata(m.metadata);
                            if v >= 5 {
                                e = e.with_group_instance_id(m.group_instance_id.map(s));
                            }
                            e
                        })
                        .collect(),
                );
            if v >= 7 {
                r = r.with_protocol_type(Some(s(j.protocol_type)));
            }
            r
        }
        Err(e) => refuse(errors::of_group(&e), StrBytes::default()),
    }
}

/// SyncGroup: the leader hands in assignments; everyone gets theirs.
pub async fn sync(b: &Broker, sess: &Session, req: SyncGroupRequest, v: i16) -> SyncGroupResponse {
    let Ok(_slot) = b.gates.slot(Class::Fetch).await else {
        return SyncGroupResponse::default().with_error_code(code::COORDINATOR_NOT_AVAILABLE);
    };
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.as_str().to_owned(), a.assignment))
        .collect();
    let r = b
        .service
        .sync_group(
            &sess.principal,
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            assignments,
        )
        .await;
    match r {
        Ok(a) => {
            let mut resp = SyncGroupResponse::default().with_assignment(a);
            if v >= 5 {
                resp = resp
                    .with_protocol_type(req.protocol_type)
                    .with_protocol_name(req.protocol_name);
            }
            resp
        }
        Err(e) => SyncGroupResponse::default().with_error_code(errors::of_group(&e)),
    }
}

/// Heartbeat.
pub fn heartbeat(b: &Broker, sess: &Session, req: HeartbeatRequest) -> HeartbeatResponse {
    let r = b.service.heartbeat(
        &sess.principal,
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
    );
    HeartbeatResponse::default()
        .with_error_code(r.err().map_or(code::NONE, |e| errors::of_group(&e)))
}

/// LeaveGroup (one member before v3, a batch of members from v3).
pub fn leave(b: &Broker, sess: &Session, req: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let ids: Vec<String> = if v >= 3 {
        req.members
            .iter()
            .map(|m| m.member_id.as_str().to_owned())
            .collect()
    } else {
        vec![req.member_id.as_str().to_owned()]
    };
    match b
        .service
        .leave_group(&sess.principal, req.group_id.0.as_str(), &ids)
    {
        Err(e) => LeaveGroupResponse::default().with_error_code(errors::of_group(&e)),
        Ok(results) if v >= 3 => LeaveGroupResponse::default().with_members(
            req.members
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(r.err().map_or(code::NONE, |e| errors::of_group(&e)))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default().with_error_code(
            results
                .into_iter()
                .next()
                .and_then(|r| r.err())
                .map_or(code::NONE, |e| errors::of_group(&e)),
        ),
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
    let group = req.group_id.0.as_str().to_owned();
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
            .check_commit(&group, generation, req.member_id.as_str())
            .map_err(|e| errors::of_group(&e)),
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = t.name.0.as_str().to_owned();
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
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(e)
            })
            .collect();
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch: committed offsets (-1 where none); all topics of the group
/// when the request names none (v2+).
pub async fn offset_fetch(
    b: &Broker,
    sess: &Session,
    req: OffsetFetchRequest,
    v: i16,
) -> OffsetFetchResponse {
    let group = req.group_id.0.as_str().to_owned();
    let Ok(_slot) = b.gates.slot(Class::Other).await else {
        let mut r = OffsetFetchResponse::default();
        if v >= 2 {
            r = r.with_error_code(code::REQUEST_TIMED_OUT);
        }
        return r;
    };
    let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
        Some(t) => t
            .into_iter()
            .map(|t| (t.name.0.as_str().to_owned(), Some(t.partition_indexes)))
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
                OffsetFetchResponsePartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
                    .with_metadata(Some(StrBytes::default()))
                    .with_error_code(if err == code::GROUP_AUTHORIZATION_FAILED {
                        code::NONE
                    } else {
                        err
                    })
            })
            .collect();
        topics.push(
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions),
        );
    }
    let mut r = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        r = r.with_error_code(top_error);
    }
    r
}

/// DescribeGroups.
pub fn describe(b: &Broker, sess: &Session, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(
            |g| match b.service.describe_group(&sess.principal, g.0.as_str()) {
                Err(e) => DescribedGroup::default()
                    .with_group_id(g)
                    .with_error_code(errors::of_group(&e)),
                Ok(d) => DescribedGroup::default()
                    .with_group_id(g)
                    .with_group_state(s(d.state))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            },
        )
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// ListGroups (filtered by state from v4).
pub async fn list(
    b: &Broker,
    sess: &Session,
    req: ListGroupsRequest,
    v: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    match b.service.list_groups(&sess.principal).await {
        Err(e) => ListGroupsResponse::default().with_error_code(errors::of(&e)),
        Ok(list) => ListGroupsResponse::default().with_groups(
            list.into_iter()
                .filter(|(_, _, st)| states.is_empty() || states.contains(&st.to_ascii_lowercase()))
                .map(|(g, t, st)| {
                    let mut l = ListedGroup::default()
                        .with_group_id(GroupId(s(g)))
                        .with_protocol_type(s(t));
                    if v >= 4 {
                        l = l.with_group_state(s(st));
                    }
                    l
                })
                .collect(),
        ),
    }
}
