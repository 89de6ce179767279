//! The group coordinator's rules, on a paused clock.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::service::tests::fixture;
use crate::service::ServiceLimits;

/// The front-end's clock: sweeps as the Kafka listener does.
fn sweeper(s: &std::sync::Arc<crate::service::Service>) {
    let s = s.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.sweep_groups();
        }
    });
}

fn join(group: &str, member: &str, session_ms: u64) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_millis(session_ms),
        rebalance_timeout: Duration::from_secs(5),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
    }
}

#[tokio::test(start_paused = true)]
async fn members_joining_together_share_one_generation_and_the_leader_sees_everyone() {
    let f = fixture(ServiceLimits::default());
    let who = crate::auth::Principal::anonymous();
    let s = f.service.clone();
    sweeper(&s);
    let (a, b) = tokio::join!(
        s.join_group(&who, join("g", "", 10_000)),
        s.join_group(&who, join("g", "", 10_000))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.generation, b.generation);
    assert_eq!(a.leader, b.leader);
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    assert_eq!(leader.protocol, "range");

    // The follower waits for the leader's assignment.
    let fol = {
        let s = s.clone();
        let who = who.clone();
        let (g, id) = (follower.generation, follower.member_id.clone());
        tokio::spawn(async move { s.sync_group(&who, "g", g, &id, vec![]).await })
    };
    tokio::task::yield_now().await;
    let mine = s
        .sync_group(
            &who,
            "g",
            leader.generation,
            &leader.member_id,
            vec![
                (leader.member_id.clone(), Bytes::from_static(b"L")),
                (follower.member_id.clone(), Bytes::from_static(b"F")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(mine, Bytes::from_static(b"L"));
    assert_eq!(fol.await.unwrap().unwrap(), Bytes::from_static(b"F"));
    assert_eq!(
        s.heartbeat(&who, "g", leader.generation, &leader.member_id),
        Ok(())
    );
    assert_eq!(
        s.heartbeat(&who, "g", leader.generation - 1, &leader.member_id),
        Err(GroupError::IllegalGeneration {
            got: leader.generation - 1,
            current: leader.generation
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_expired_after_its_session_and_the_others_rebalance() {
    let f = fixture(ServiceLimits::default());
    let who = crate::auth::Principal::anonymous();
    let s = f.service.clone();
    sweeper(&s);
    let (a, b) = tokio::join!(
        s.join_group(&who, join("g", "", 2_000)),
        s.join_group(&who, join("g", "", 2_000))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let leader = if a.member_id == a.leader {
        a.clone()
    } else {
        b.clone()
    };
    let other = if a.member_id == a.leader { b } else { a };
    s.sync_group(&who, "g", leader.generation, &leader.member_id, vec![])
        .await
        .unwrap();
    // `other` goes silent; `leader` keeps heartbeating.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = s.heartbeat(&who, "g", leader.generation, &leader.member_id);
    }
    assert_eq!(
        s.heartbeat(&who, "g", leader.generation, &leader.member_id),
        Err(GroupError::RebalanceInProgress),
        "the survivor is told to rejoin"
    );
    let again = s
        .join_group(&who, join("g", &leader.member_id, 2_000))
        .await
        .unwrap();
    assert_eq!(again.generation, leader.generation + 1);
    assert_eq!(again.members.len(), 1, "the silent member is gone");
    assert_eq!(
        s.heartbeat(&who, "g", again.generation, &other.member_id),
        Err(GroupError::UnknownMember(other.member_id.clone()))
    );
}

#[tokio::test(start_paused = true)]
async fn commits_need_the_current_generation_except_in_an_empty_group() {
    let f = fixture(ServiceLimits::default());
    let who = crate::auth::Principal::anonymous();
    let s = f.service.clone();
    sweeper(&s);
    assert_eq!(
        s.check_commit("g", -1, ""),
        Ok(()),
        "a group without members takes any commit"
    );
    let j = s.join_group(&who, join("g", "", 10_000)).await.unwrap();
    assert!(matches!(
        s.check_commit("g", -1, ""),
        Err(GroupError::IllegalGeneration { .. })
    ));
    // Between join and sync the assignment is not known yet.
    assert_eq!(
        s.check_commit("g", j.generation, &j.member_id),
        Err(GroupError::RebalanceInProgress)
    );
    s.sync_group(&who, "g", j.generation, &j.member_id, vec![])
        .await
        .unwrap();
    assert_eq!(s.check_commit("g", j.generation, &j.member_id), Ok(()));
    s.leave_group(&who, "g", std::slice::from_ref(&j.member_id))
        .unwrap();
    assert_eq!(s.check_commit("g", -1, ""), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_member_without_the_group_right_is_refused() {
    let f = fixture(ServiceLimits::default());
    sweeper(&f.service);
    let nobody = crate::auth::Principal::new("nobody", crate::auth::Acl::default());
    assert!(matches!(
        f.service.join_group(&nobody, join("g", "", 10_000)).await,
        Err(GroupError::Unauthorized { .. })
    ));
    assert!(matches!(
        f.service
            .join_group(&crate::auth::Principal::anonymous(), join("g", "", 10))
            .await,
        Err(GroupError::InvalidSessionTimeout(_))
    ));
}
