//! Consumer-group membership (Kafka's classic group protocol): which
//! consumers are in a group, in which generation, who leads, and what each
//! was assigned. Committed offsets are not here: they are the same files the
//! HTTP consumers use (`groups.rs`), so both kinds of consumer resume from one
//! place; [`Service::check_commit`] only tells whether a member may commit.
//!
//! The rules, per group:
//!
//! | state | what happens |
//! |---|---|
//! | `Empty` | no members; a join starts a rebalance that waits `initial_delay` for others to join too |
//! | `PreparingRebalance` | every member must join again; the rebalance completes when all have, or at the deadline (the longest rebalance timeout), dropping those that did not |
//! | `CompletingRebalance` | the generation is bumped and answered to every joiner (the leader also gets every member's subscription); members wait for the leader's `SyncGroup` with the assignment |
//! | `Stable` | members heartbeat; a member silent for its session timeout is dropped and the others rebalance |
//!
//! A join, leave or expiry during a rebalance restarts it; a heartbeat or
//! sync of the old generation is answered `RebalanceInProgress` or
//! `IllegalGeneration`, which tells the client to join again. State is held
//! in memory only: after a restart every member rejoins (its heartbeat is
//! answered `UnknownMember`) and resumes from the committed offsets.
//!
//! Time comes from `tokio::time`, so tests drive it with a paused clock; the
//! front-end calls [`Service::sweep_groups`] periodically to expire sessions
//! and end overdue rebalances.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Service, ServiceError};
use crate::auth::{Operation, Principal};

/// Bounds of the group coordinator.
#[derive(Debug, Clone)]
pub struct MembershipLimits {
    /// How long a new group's first rebalance waits for more members.
    pub initial_delay: Duration,
    /// Shortest and longest session timeout a member may ask for.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// Longest rebalance timeout honoured.
    pub max_rebalance_timeout: Duration,
    /// Most members of one group.
    pub max_members: usize,
    /// Most groups held in memory (empty ones are forgotten first).
    pub max_groups: usize,
}

impl Default for MembershipLimits {
    fn default() -> Self {
        MembershipLimits {
            initial_delay: Duration::from_millis(500),
            min_session_timeout: Duration::from_secs(1),
            max_session_timeout: Duration::from_secs(30 * 60),
            max_rebalance_timeout: Duration::from_secs(10 * 60),
            max_members: 1000,
            max_groups: 10_000,
        }
    }
}

/// Why a group request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("principal {principal} may not use consumer group {group}")]
    Unauthorized { principal: String, group: String },
    #[error("invalid group request: {0}")]
    Invalid(String),
    #[error("unknown member {0}: join the group again")]
    UnknownMember(String),
    #[error("generation {got} is not the group's current generation {current}")]
    IllegalGeneration { got: i32, current: i32 },
    #[error("the group is rebalancing: join it again")]
    RebalanceInProgress,
    #[error("the member's protocols match none of the group's")]
    InconsistentProtocol,
    #[error("session timeout {0:?} is outside the collector's bounds")]
    InvalidSessionTimeout(Duration),
    #[error("the group has its maximum of {0} members")]
    GroupFull(usize),
    #[error("the coordinator is not available (too many groups, or shutting down)")]
    NotAvailable,
}

/// A member's request to join (or rejoin) a group.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group: String,
    /// Empty for a new member: the coordinator issues an id.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

/// One member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a join: the new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol; only for the leader.
    pub members: Vec<MemberMetadata>,
}

/// A member as described to DescribeGroups.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as described to DescribeGroups / ListGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead` (unknown).
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Preparing,
    Completing,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Preparing => "PreparingRebalance",
            State::Completing => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

type JoinReply = oneshot::Sender<Result<Joined, GroupError>>;
type SyncReply = oneshot::Sender<Result<Bytes, GroupError>>;

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    /// Set while the member waits in JoinGroup for the rebalance to complete.
    joining: Option<JoinReply>,
    /// Set while the member waits in SyncGroup for the leader's assignment.
    syncing: Option<SyncReply>,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// The rebalance ends at this time whoever has rejoined.
    deadline: Instant,
    /// A new group's first rebalance does not complete before this.
    not_before: Instant,
}

impl Group {
    fn new(now: Instant) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            deadline: now,
            not_before: now,
        }
    }

    /// Moves to `PreparingRebalance`: everyone must join again; followers
    /// waiting for an assignment are told to.
    fn prepare(&mut self, now: Instant, limits: &MembershipLimits) {
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
            .min(limits.max_rebalance_timeout);
        if self.state == State::Empty {
            self.not_before = now + limits.initial_delay;
        }
        if self.state != State::Preparing {
            self.deadline = now + longest.max(limits.initial_delay);
        }
        self.state = State::Preparing;
        for m in self.members.values_mut() {
            if let Some(s) = m.syncing.take() {
                let _ = s.send(Err(GroupError::RebalanceInProgress));
            }
        }
    }

    /// Completes the rebalance if every member has joined again (or `force`,
    /// at the deadline, dropping those that have not).
    fn try_complete(&mut self, now: Instant, force: bool) {
        if self.state != State::Preparing {
            return;
        }
        let all_joined = self.members.values().all(|m| m.joining.is_some());
        if !(force || (all_joined && now >= self.not_before)) {
            return;
        }
        self.members.retain(|_, m| m.joining.is_some());
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol.clear();
            self.leader.clear();
            return;
        }
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().cloned().unwrap_or_default();
        }
        self.protocol = self.choose_protocol();
        self.state = State::Completing;
        let everyone: Vec<MemberMetadata> = self
            .members
            .iter()
            .map(|(id, m)| MemberMetadata {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == self.protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
            })
            .collect();
        for (id, m) in self.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(reply) = m.joining.take() {
                let _ = reply.send(Ok(Joined {
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: self.leader.clone(),
                    member_id: id.clone(),
                    members: if *id == self.leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
    }

    /// The leader's most preferred protocol that every member supports.
    fn choose_protocol(&self) -> String {
        let Some(leader) = self.members.get(&self.leader) else {
            return String::new();
        };
        leader
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `protocols` can join: same type, and a protocol in common with every member.
    fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type == protocol_type
            && protocols.iter().any(|(n, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
    }

    /// The member if it belongs to `generation`.
    fn member(&mut self, member_id: &str, generation: i32) -> Result<&mut Member, GroupError> {
        let current = self.generation;
        let m = self
            .members
            .get_mut(member_id)
            .ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        if generation != current {
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current,
            });
        }
        Ok(m)
    }
}

/// Every group's membership.
#[derive(Default)]
pub struct Membership {
    groups: std::sync::Mutex<HashMap<String, Group>>,
    limits: MembershipLimits,
}

impl Membership {
    /// A coordinator with these bounds.
    pub fn new(limits: MembershipLimits) -> Membership {
        Membership {
            groups: Default::default(),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn new_member_id(client_id: &str) -> String {
    let mut r = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r);
    let prefix: String = client_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    format!("{prefix}-{}", crate::auth::hex(&r))
}

impl Service {
    fn authorize_group(who: &Principal, group: &str) -> Result<(), GroupError> {
        if group.is_empty() || group.len() > 255 {
            return Err(GroupError::Invalid(
                "a group id has 1 to 255 characters".into(),
            ));
        }
        if who.may(Operation::Group, group) {
            Ok(())
        } else {
            Err(GroupError::Unauthorized {
                principal: who.name().to_owned(),
                group: group.to_owned(),
            })
        }
    }

    /// Joins (or rejoins) a group and waits until the rebalance completes.
    pub async fn join_group(
        &self,
        who: &Principal,
        req: JoinRequest,
    ) -> Result<Joined, GroupError> {
        Self::authorize_group(who, &req.group)?;
        let limits = &self.membership.limits;
        if req.session_timeout < limits.min_session_timeout
            || req.session_timeout > limits.max_session_timeout
        {
            return Err(GroupError::InvalidSessionTimeout(req.session_timeout));
        }
        if req.protocols.is_empty() {
            return Err(GroupError::Invalid("no protocols".into()));
        }
        let rx = {
            let mut groups = self.membership.lock();
            let now = Instant::now();
            if !groups.contains_key(&req.group) && groups.len() >= limits.max_groups {
                groups.retain(|_, g| g.state != State::Empty);
                if groups.len() >= limits.max_groups {
                    return Err(GroupError::NotAvailable);
                }
            }
            let g = groups
                .entry(req.group.clone())
                .or_insert_with(|| Group::new(now));
            if !req.member_id.is_empty() && !g.members.contains_key(&req.member_id) {
                return Err(GroupError::UnknownMember(req.member_id));
            }
            if !g.compatible(&req.protocol_type, &req.protocols) {
                return Err(GroupError::InconsistentProtocol);
            }
            let id = if req.member_id.is_empty() {
                if g.members.len() >= limits.max_members {
                    return Err(GroupError::GroupFull(limits.max_members));
                }
                new_member_id(&req.client_id)
            } else {
                req.member_id.clone()
            };
            let (tx, rx) = oneshot::channel();
            let m = g.members.entry(id).or_insert_with(|| Member {
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                joining: None,
                syncing: None,
            });
            m.instance_id = req.group_instance_id;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.protocols = req.protocols;
            m.last_seen = now;
            // A second join of the same member replaces the first.
            if let Some(old) = m.joining.replace(tx) {
                let _ = old.send(Err(GroupError::RebalanceInProgress));
            }
            g.protocol_type = req.protocol_type;
            // Any join starts (or continues) a rebalance, as in Kafka: it is
            // how a client asks for one.
            g.prepare(now, limits);
            g.try_complete(now, false);
            rx
        };
        let mut draining = self.draining.clone();
        tokio::select! {
            r = rx => r.unwrap_or(Err(GroupError::RebalanceInProgress)),
            _ = draining.wait_for(|d| *d) => Err(GroupError::NotAvailable),
        }
    }

    /// Hands in the leader's assignment, or waits for it; answers this member's part.
    pub async fn sync_group(
        &self,
        who: &Principal,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes, GroupError> {
        Self::authorize_group(who, group)?;
        let rx = {
            let mut groups = self.membership.lock();
            let g = groups
                .get_mut(group)
                .ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
            let now = Instant::now();
            let state = g.state;
            let is_leader = g.leader == member_id;
            let m = g.member(member_id, generation)?;
            m.last_seen = now;
            match state {
                State::Preparing | State::Empty => return Err(GroupError::RebalanceInProgress),
                State::Stable => return Ok(m.assignment.clone()),
                State::Completing => {}
            }
            if is_leader {
                let mut assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = assigned.remove(id).unwrap_or_default();
                    if let Some(s) = m.syncing.take() {
                        let _ = s.send(Ok(m.assignment.clone()));
                    }
                }
                g.state = State::Stable;
                let mine = g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                return Ok(mine);
            }
            let (tx, rx) = oneshot::channel();
            if let Some(old) = m.syncing.replace(tx) {
                let _ = old.send(Err(GroupError::RebalanceInProgress));
            }
            rx
        };
        let mut draining = self.draining.clone();
        tokio::select! {
            r = rx => r.unwrap_or(Err(GroupError::RebalanceInProgress)),
            _ = draining.wait_for(|d| *d) => Err(GroupError::NotAvailable),
        }
    }

    /// A member is alive; tells it when the group is rebalancing.
    pub fn heartbeat(
        &self,
        who: &Principal,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        Self::authorize_group(who, group)?;
        let mut groups = self.membership.lock();
        let g = groups
            .get_mut(group)
            .ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        let state = g.state;
        let m = g.member(member_id, generation)?;
        m.last_seen = Instant::now();
        if state == State::Preparing {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Members leave; the others rebalance. Answers each member's outcome.
    pub fn leave_group(
        &self,
        who: &Principal,
        group: &str,
        member_ids: &[String],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        Self::authorize_group(who, group)?;
        let mut groups = self.membership.lock();
        let Some(g) = groups.get_mut(group) else {
            return Ok(member_ids
                .iter()
                .map(|m| Err(GroupError::UnknownMember(m.clone())))
                .collect());
        };
        let now = Instant::now();
        let mut out = Vec::with_capacity(member_ids.len());
        let mut left = false;
        for id in member_ids {
            match g.members.remove(id) {
                Some(m) => {
                    if let Some(j) = m.joining {
                        let _ = j.send(Err(GroupError::UnknownMember(id.clone())));
                    }
                    left = true;
                    out.push(Ok(()));
                }
                None => out.push(Err(GroupError::UnknownMember(id.clone()))),
            }
        }
        if left {
            g.prepare(now, &self.membership.limits);
            if g.members.is_empty() {
                g.try_complete(now, true);
            } else {
                g.try_complete(now, false);
            }
        }
        Ok(out)
    }

    /// Whether a commit from (`generation`, `member_id`) is allowed: a
    /// member of the current generation (also while the group prepares a
    /// rebalance, so a consumer can commit before it rejoins), or anyone
    /// (generation < 0) while the group has no members.
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        let mut groups = self.membership.lock();
        let Some(g) = groups.get_mut(group) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration {
                    got: generation,
                    current: 0,
                })
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if g.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration {
                    got: generation,
                    current: g.generation,
                })
            };
        }
        let state = g.state;
        let m = g.member(member_id, generation)?;
        m.last_seen = Instant::now();
        if state == State::Completing {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Expires members whose session ran out and ends overdue rebalances.
    pub fn sweep_groups(&self) {
        let now = Instant::now();
        let limits = &self.membership.limits;
        let mut groups = self.membership.lock();
        for (name, g) in groups.iter_mut() {
            let before = g.members.len();
            g.members.retain(|id, m| {
                let alive = m.joining.is_some() || m.last_seen + m.session_timeout > now;
                if !alive {
                    tracing::info!(group = %name, member = %id, "Consumer-group member's session expired; rebalancing.");
                }
                alive
            });
            if g.members.len() != before {
                g.prepare(now, limits);
            }
            let force = g.state == State::Preparing && now >= g.deadline;
            g.try_complete(now, force);
        }
    }

    /// One group, or `Dead` when unknown.
    pub fn describe_group(
        &self,
        who: &Principal,
        group: &str,
    ) -> Result<GroupDescription, GroupError> {
        Self::authorize_group(who, group)?;
        let groups = self.membership.lock();
        Ok(match groups.get(group) {
            None => GroupDescription {
                group: group.to_owned(),
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
            Some(g) => GroupDescription {
                group: group.to_owned(),
                state: g.state.name(),
                protocol_type: g.protocol_type.clone(),
                protocol: g.protocol.clone(),
                members: g
                    .members
                    .iter()
                    .map(|(id, m)| MemberDescription {
                        member_id: id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: m
                            .protocols
                            .iter()
                            .find(|(n, _)| *n == g.protocol)
                            .map(|(_, md)| md.clone())
                            .unwrap_or_default(),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            },
        })
    }

    /// Groups `who` may use: those with members and those with committed
    /// offsets (state `Empty`), with their protocol type.
    pub async fn list_groups(
        &self,
        who: &Principal,
    ) -> Result<Vec<(String, String, &'static str)>, ServiceError> {
        let stored = {
            let groups = self.groups.clone();
            super::blocking(move || groups.list()).await?
        };
        let mut out: BTreeMap<String, (String, &'static str)> = stored
            .into_iter()
            .map(|g| (g, ("consumer".to_owned(), "Empty")))
            .collect();
        for (name, g) in self.membership.lock().iter() {
            out.insert(name.clone(), (g.protocol_type.clone(), g.state.name()));
        }
        Ok(out
            .into_iter()
            .filter(|(g, _)| who.may(Operation::Group, g))
            .map(|(g, (t, s))| (g, t, s))
            .collect())
    }
}

#[cfg(test)]
mod tests;
