//! Consumer-group coordinator for Sluice: the classic rebalance protocol
//! (JoinGroup / SyncGroup / Heartbeat / LeaveGroup) and the KIP-848
//! consumer protocol (ConsumerGroupHeartbeat), as plain state machines.
//!
//! # What it holds
//!
//! [`GroupCoordinator`] owns every group of this broker, keyed by group id;
//! a group is either classic ([`GroupType::Classic`], see `classic.rs`) or
//! consumer ([`GroupType::Consumer`], see `consumer.rs`). Server-side
//! assignors for consumer groups live in `assignor.rs`. Offsets themselves
//! are not stored here: the broker stores them and asks
//! [`GroupCoordinator::validate_offset_commit`] whether a commit is allowed.
//!
//! # Invariants
//!
//! - **No IO, no threads, no clock, no randomness.** Every method takes
//!   `now_ms` from the caller; member ids come from a counter mixed with
//!   `now_ms`. The same inputs always give the same outputs, so everything is
//!   testable with a fake clock.
//! - **Parked requests.** JoinGroup and SyncGroup calls that Kafka answers
//!   later carry an opaque `token`. Their answers come back as [`Output`]
//!   values (with that token) from whichever call completes them: another
//!   member's join or sync, a leave, or [`GroupCoordinator::tick`]. Every
//!   token is answered exactly once, unless its group is deleted (only empty
//!   groups can be, and those have no parked requests). The broker calls
//!   `tick` at [`GroupCoordinator::next_deadline_ms`].
//! - **No panics on any input.** No `unwrap`/`expect`/indexing that request
//!   data can break; arithmetic on timeouts saturates, epochs wrap to 1.
//! - **Bounded.** A group never has more than `max_group_size` members.
//! - **KIP-848 ownership.** A partition is held (assigned or pending
//!   revocation) by at most one member at any time; a member only receives a
//!   partition after its previous holder confirmed the revocation.
//!
//! # Kafka behaviours deliberately not implemented
//!
//! - Members heartbeating a group that no longer exists get UNKNOWN_MEMBER_ID
//!   (Kafka would say GROUP_ID_NOT_FOUND) so they simply rejoin. Classic, KIP-848
//!   consumer and share groups are persisted: the coordinator hands out
//!   [`ClassicGroupRecord`]s, [`ConsumerGroupRecord`]s and [`ShareGroupRecord`]s
//!   ([`GroupCoordinator::take_group_records`]) for the broker to write, and
//!   restores them on load ([`GroupCoordinator::restore_group`]).
//! - Mixed groups / online migration between the classic and consumer
//!   protocols (KIP-848 upgrade path): only an *empty* group changes type.
//! - Regular-expression subscriptions (`subscribed_topic_regex`) are stored per member; the
//!   broker validates and matches them and passes the matches in `TopicsSnapshot`.
//! - Rack-aware assignment, client-side assignors for the consumer protocol,
//!   assignment batching (`group.consumer.assignment.interval.ms`),
//!   streams groups, transactional offset-commit validation.
//! - Classic: the 5-minute "new member join timeout", shrinking an
//!   over-sized group after a rebalance (joins beyond the limit are simply
//!   refused), and the leave/join `reason` strings.
//! - Offset expiry and deleting empty groups automatically.

mod assignor;
mod classic;
mod consumer;
pub mod error;
mod ids;
mod share;
mod types;
pub use types::base64_bytes;
mod util;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use assignor::SUPPORTED_ASSIGNORS;
pub use share::ShareGroupTimeouts;
pub use types::*;

use classic::ClassicGroup;
use consumer::ConsumerGroup;
use ids::IdGen;
use share::ShareGroup;

#[derive(Debug, Clone)]
enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
    Share(ShareGroup),
}

/// Every consumer group of the broker, both protocol types.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    ids: IdGen,
    /// Share-group members that left or timed out since the last
    /// [`GroupCoordinator::take_departed_share_members`]: the broker releases their records.
    departed_share_members: Vec<(String, String)>,
    /// Classic-group records to persist, in the order of the changes (see
    /// [`GroupCoordinator::take_group_records`]).
    group_records: Vec<(String, GroupRecordChange)>,
}

fn join_error(token: u64, member_id: &str, error: i16) -> Output {
    Output::Join {
        token,
        response: JoinResponse {
            error,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinResponse::default()
        },
    }
}

fn sync_error(token: u64, error: i16) -> Output {
    Output::Sync {
        token,
        response: SyncResponse {
            error,
            ..SyncResponse::default()
        },
    }
}

fn invalid(msg: &str) -> (i16, String) {
    (error::INVALID_REQUEST, msg.to_string())
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig) -> Self {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            ids: IdGen::default(),
            departed_share_members: Vec::new(),
            group_records: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    // ------------------------------------------------------------------
    // Classic protocol
    // ------------------------------------------------------------------

    /// JoinGroup. The answer is either in the returned outputs (with this
    /// `token`) or comes later from another call.
    pub fn join(&mut self, now_ms: u64, token: u64, req: JoinRequest) -> Vec<Output> {
        let mut out = Vec::new();
        if req.group_id.is_empty() {
            out.push(join_error(token, &req.member_id, error::INVALID_GROUP_ID));
            return out;
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            out.push(join_error(
                token,
                &req.member_id,
                error::INVALID_SESSION_TIMEOUT,
            ));
            return out;
        }
        let existing = self.groups.remove(&req.group_id);
        let (mut group, previous, pre_existing) = match existing {
            Some(Group::Classic(g)) => (g, None, true),
            Some(Group::Consumer(g)) if !g.is_empty() => {
                self.groups.insert(req.group_id.clone(), Group::Consumer(g));
                out.push(join_error(
                    token,
                    &req.member_id,
                    error::INCONSISTENT_GROUP_PROTOCOL,
                ));
                return out;
            }
            Some(Group::Share(g)) => {
                self.groups.insert(req.group_id.clone(), Group::Share(g));
                out.push(join_error(
                    token,
                    &req.member_id,
                    error::INCONSISTENT_GROUP_PROTOCOL,
                ));
                return out;
            }
            other => {
                if !req.member_id.is_empty() {
                    if let Some(g) = other {
                        self.groups.insert(req.group_id.clone(), g);
                    }
                    out.push(join_error(token, &req.member_id, error::UNKNOWN_MEMBER_ID));
                    return out;
                }
                // A new group, or an empty consumer group becoming classic.
                (ClassicGroup::new(&req.group_id), other, false)
            }
        };
        let group_id = req.group_id.clone();
        group.join(now_ms, token, req, &self.config, &mut self.ids, &mut out);
        if let Some(change) = group.persist_change() {
            self.group_records
                .push((group_id.clone(), GroupRecordChange::Classic(change)));
        }
        if pre_existing || !group.is_empty() {
            self.groups.insert(group_id, Group::Classic(group));
        } else if let Some(prev) = previous {
            self.groups.insert(group_id, prev);
        }
        out
    }

    /// SyncGroup. The answer is either in the returned outputs or comes
    /// later (followers wait for the leader).
    pub fn sync(&mut self, now_ms: u64, token: u64, req: SyncRequest) -> Vec<Output> {
        let mut out = Vec::new();
        if req.group_id.is_empty() {
            out.push(sync_error(token, error::INVALID_GROUP_ID));
            return out;
        }
        match self.groups.get_mut(&req.group_id) {
            Some(Group::Classic(g)) => {
                g.sync(now_ms, token, req, &mut out);
                if let Some(change) = g.persist_change() {
                    self.group_records
                        .push((g.group_id.clone(), GroupRecordChange::Classic(change)));
                }
            }
            _ => out.push(sync_error(token, error::UNKNOWN_MEMBER_ID)),
        }
        out
    }

    /// Classic Heartbeat; returns the error code.
    pub fn heartbeat(&mut self, now_ms: u64, req: HeartbeatRequest) -> i16 {
        if req.group_id.is_empty() {
            return error::INVALID_GROUP_ID;
        }
        match self.groups.get_mut(&req.group_id) {
            Some(Group::Classic(g)) => g.heartbeat(now_ms, &req),
            _ => error::UNKNOWN_MEMBER_ID,
        }
    }

    /// LeaveGroup (v0-v2: one member by id; v3+: a batch, by instance id
    /// for static members).
    pub fn leave(&mut self, now_ms: u64, group_id: &str, members: &[LeavingMember]) -> LeaveResult {
        if group_id.is_empty() {
            return LeaveResult {
                error: error::INVALID_GROUP_ID,
                members: Vec::new(),
                outputs: Vec::new(),
            };
        }
        let mut outputs = Vec::new();
        let results = match self.groups.get_mut(group_id) {
            Some(Group::Classic(g)) => {
                let results = g.leave(now_ms, members, &self.config, &mut outputs);
                if let Some(change) = g.persist_change() {
                    self.group_records
                        .push((g.group_id.clone(), GroupRecordChange::Classic(change)));
                }
                results
            }
            _ => members
                .iter()
                .map(|m| (m.clone(), error::UNKNOWN_MEMBER_ID))
                .collect(),
        };
        LeaveResult {
            error: error::NONE,
            members: results,
            outputs,
        }
    }

    // ------------------------------------------------------------------
    // KIP-848 consumer protocol
    // ------------------------------------------------------------------

    /// ConsumerGroupHeartbeat. Errors carry Kafka's code and a message.
    ///
    /// `subscribed_topic_regex` is not supported yet: any `Some` value gets
    /// INVALID_REQUEST.
    pub fn consumer_heartbeat(
        &mut self,
        now_ms: u64,
        req: ConsumerHeartbeat,
        topics: &TopicsSnapshot,
    ) -> Result<ConsumerHeartbeatResponse, (i16, String)> {
        Self::validate_consumer_heartbeat(&req)?;
        let existing = self.groups.remove(&req.group_id);
        let created = !matches!(existing, Some(Group::Consumer(_)));
        let (mut group, previous) = match existing {
            Some(Group::Consumer(g)) => (g, None),
            Some(Group::Share(g)) => {
                let msg = format!("Group {} is not a consumer group.", req.group_id);
                self.groups.insert(req.group_id.clone(), Group::Share(g));
                return Err((error::GROUP_ID_NOT_FOUND, msg));
            }
            Some(Group::Classic(c)) => {
                if !c.is_empty() {
                    let msg = format!("Group {} is not a consumer group.", req.group_id);
                    self.groups.insert(req.group_id.clone(), Group::Classic(c));
                    return Err((error::GROUP_ID_NOT_FOUND, msg));
                }
                if req.member_epoch != 0 {
                    let msg = format!(
                        "Member {} is not a member of group {}.",
                        req.member_id, req.group_id
                    );
                    self.groups.insert(req.group_id.clone(), Group::Classic(c));
                    return Err((error::UNKNOWN_MEMBER_ID, msg));
                }
                (ConsumerGroup::new(&req.group_id), Some(Group::Classic(c)))
            }
            None => {
                if req.member_epoch != 0 {
                    return Err((
                        error::UNKNOWN_MEMBER_ID,
                        format!(
                            "Member {} is not a member of group {}.",
                            req.member_id, req.group_id
                        ),
                    ));
                }
                (ConsumerGroup::new(&req.group_id), None)
            }
        };
        let result = group.heartbeat(now_ms, &req, topics, &self.config, &mut self.ids);
        if let Some(change) = group.persist_change() {
            self.group_records
                .push((req.group_id.clone(), GroupRecordChange::Consumer(change)));
        }
        if result.is_err() && created && group.is_empty() {
            if let Some(prev) = previous {
                self.groups.insert(req.group_id.clone(), prev);
            }
        } else {
            self.groups
                .insert(req.group_id.clone(), Group::Consumer(group));
        }
        result
    }

    fn validate_consumer_heartbeat(req: &ConsumerHeartbeat) -> Result<(), (i16, String)> {
        if req.group_id.is_empty() {
            return Err(invalid("GroupId can't be empty."));
        }
        if req.instance_id.as_deref() == Some("") {
            return Err(invalid("InstanceId can't be empty."));
        }
        if req.rack_id.as_deref() == Some("") {
            return Err(invalid("RackId can't be empty."));
        }
        match req.member_epoch {
            0 => {
                if req.rebalance_timeout_ms == -1 {
                    return Err(invalid(
                        "RebalanceTimeoutMs must be provided in first request.",
                    ));
                }
                if req
                    .owned_partitions
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|(_, ps)| !ps.is_empty()))
                {
                    return Err(invalid("TopicPartitions must be empty when (re-)joining."));
                }
                if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                    return Err(invalid(
                        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                    ));
                }
            }
            e if e > 0 || e == consumer::LEAVE_GROUP_EPOCH => {
                if req.member_id.is_empty() {
                    return Err(invalid("MemberId can't be empty."));
                }
            }
            consumer::LEAVE_GROUP_STATIC_EPOCH => {
                if req.member_id.is_empty() {
                    return Err(invalid("MemberId can't be empty."));
                }
                if req.instance_id.is_none() {
                    return Err(invalid("InstanceId can't be null."));
                }
            }
            _ => return Err(invalid("MemberEpoch is invalid.")),
        }
        if let Some(a) = &req.server_assignor {
            if !SUPPORTED_ASSIGNORS.contains(&a.as_str()) {
                return Err((
                    error::UNSUPPORTED_ASSIGNOR,
                    format!(
                        "ServerAssignor {} is not supported. Supported assignors: {}.",
                        a,
                        SUPPORTED_ASSIGNORS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // KIP-932 share groups
    // ------------------------------------------------------------------

    /// ShareGroupHeartbeat. A share group can only take over the id of an empty group of
    /// another type, as Kafka does.
    pub fn share_heartbeat(
        &mut self,
        now_ms: u64,
        req: ShareHeartbeat,
        topics: &TopicsSnapshot,
        timeouts: ShareGroupTimeouts,
    ) -> Result<ShareHeartbeatResponse, (i16, String)> {
        if req.group_id.is_empty() {
            return Err(invalid("GroupId can't be empty."));
        }
        if req.member_id.is_empty() {
            return Err(invalid("MemberId can't be empty."));
        }
        if req.rack_id.as_deref() == Some("") {
            return Err(invalid("RackId can't be empty."));
        }
        if req.member_epoch < share::LEAVE_EPOCH {
            return Err(invalid("MemberEpoch is invalid."));
        }
        if req.member_epoch == 0
            && req
                .subscribed_topic_names
                .as_ref()
                .is_none_or(|t| t.is_empty())
        {
            return Err(invalid(
                "SubscribedTopicNames must be set in first request.",
            ));
        }
        let group = match self.groups.get(&req.group_id) {
            Some(Group::Share(_)) => self.groups.get_mut(&req.group_id),
            Some(Group::Classic(g)) if !g.is_empty() => None,
            Some(Group::Consumer(g)) if !g.is_empty() => None,
            _ if req.member_epoch != 0 => {
                return Err((
                    error::UNKNOWN_MEMBER_ID,
                    format!(
                        "Member {} is not a member of share group {}.",
                        req.member_id, req.group_id
                    ),
                ))
            }
            _ => {
                self.groups.insert(
                    req.group_id.clone(),
                    Group::Share(ShareGroup::new(&req.group_id)),
                );
                self.groups.get_mut(&req.group_id)
            }
        };
        let Some(Group::Share(group)) = group else {
            return Err((
                error::GROUP_ID_NOT_FOUND,
                format!("Group {} is not a share group.", req.group_id),
            ));
        };
        let result = group.heartbeat(now_ms, &req, topics, timeouts, self.config.max_group_size);
        if let Some(change) = group.persist_change() {
            self.group_records
                .push((req.group_id.clone(), GroupRecordChange::Share(change)));
        }
        if result
            .as_ref()
            .is_ok_and(|r| r.member_epoch == share::LEAVE_EPOCH)
        {
            self.departed_share_members
                .push((req.group_id.clone(), req.member_id.clone()));
        }
        result
    }

    /// Is `member_id` a current member of share group `group_id`?
    pub fn is_share_member(&self, group_id: &str, member_id: &str) -> bool {
        matches!(self.groups.get(group_id), Some(Group::Share(g)) if g.members.contains_key(member_id))
    }

    /// Is `group_id` a share group (or free to become one)?
    pub fn is_share_group_or_unused(&self, group_id: &str) -> bool {
        matches!(self.groups.get(group_id), None | Some(Group::Share(_)))
    }

    /// Share-group members that left or expired since the last call, as (group, member).
    pub fn take_departed_share_members(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.departed_share_members)
    }

    // ------------------------------------------------------------------
    // Persistence of classic and consumer groups
    // ------------------------------------------------------------------

    /// The group records to persist since the last call, in the order of the changes
    /// (a record, or `None`: delete the group's record). The caller writes them in this order;
    /// a later one for the same group supersedes an earlier one.
    pub fn take_group_records(&mut self) -> Vec<(String, GroupRecordChange)> {
        std::mem::take(&mut self.group_records)
    }

    /// Restores a group from its persisted record (a coordinator loading its partition): a
    /// classic group (`ClassicGroup::from_record`) or a KIP-848 consumer group
    /// (`ConsumerGroup::from_record`). Refused (false) when the group already exists, the
    /// change is a deletion, or the record does not make a valid group.
    pub fn restore_group(
        &mut self,
        group_id: &str,
        record: GroupRecordChange,
        now_ms: u64,
    ) -> bool {
        if group_id.is_empty() || self.groups.contains_key(group_id) {
            return false;
        }
        let group = match record {
            GroupRecordChange::Classic(Some(r)) => {
                ClassicGroup::from_record(group_id, r, now_ms, &self.config).map(Group::Classic)
            }
            GroupRecordChange::Consumer(Some(r)) => {
                ConsumerGroup::from_record(group_id, r, now_ms, &self.config).map(Group::Consumer)
            }
            GroupRecordChange::Share(Some(r)) => {
                ShareGroup::from_record(group_id, r, now_ms, self.config.max_group_size)
                    .map(Group::Share)
            }
            GroupRecordChange::Classic(None)
            | GroupRecordChange::Consumer(None)
            | GroupRecordChange::Share(None) => None,
        };
        match group {
            Some(g) => {
                self.groups.insert(group_id.to_string(), g);
                true
            }
            None => false,
        }
    }

    // ------------------------------------------------------------------
    // Shared
    // ------------------------------------------------------------------

    /// Runs every timer due at `now_ms`: classic session expiry, pending
    /// member expiry, initial delay / rebalance / sync timeouts; consumer
    /// session and revocation timeouts; topic metadata changes.
    pub fn tick(&mut self, now_ms: u64, topics: &TopicsSnapshot) -> Vec<Output> {
        let mut out = Vec::new();
        for group in self.groups.values_mut() {
            match group {
                Group::Classic(g) => {
                    g.tick(now_ms, &self.config, &mut out);
                    if let Some(change) = g.persist_change() {
                        self.group_records
                            .push((g.group_id.clone(), GroupRecordChange::Classic(change)));
                    }
                }
                Group::Consumer(g) => {
                    g.tick(now_ms, topics, &self.config);
                    if let Some(change) = g.persist_change() {
                        self.group_records
                            .push((g.group_id.clone(), GroupRecordChange::Consumer(change)));
                    }
                }
                Group::Share(g) => {
                    for member in g.tick(now_ms, topics) {
                        self.departed_share_members
                            .push((g.group_id.clone(), member));
                    }
                    if let Some(change) = g.persist_change() {
                        self.group_records
                            .push((g.group_id.clone(), GroupRecordChange::Share(change)));
                    }
                }
            }
        }
        out
    }

    /// The earliest time `tick` has work to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups
            .values()
            .filter_map(|g| match g {
                Group::Classic(g) => g.next_deadline_ms(),
                Group::Consumer(g) => g.next_deadline_ms(),
                Group::Share(g) => g.next_deadline_ms(),
            })
            .min()
    }

    /// May this OffsetCommit proceed? `generation_or_member_epoch` is the
    /// classic generation or the KIP-848 member epoch. A simple commit
    /// (generation < 0) for an unknown group creates an empty classic group,
    /// as Kafka does. A valid commit from a classic member refreshes its
    /// session (hence `&mut self`).
    pub fn validate_offset_commit(
        &mut self,
        now_ms: u64,
        group_id: &str,
        generation_or_member_epoch: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> i16 {
        self.validate_commit(
            now_ms,
            group_id,
            generation_or_member_epoch,
            member_id,
            group_instance_id,
            false,
        )
    }

    /// The checks of OffsetCommit (`transactional` false) and TxnOffsetCommit (true, the
    /// KIP-447 fields of v3+): one piece of code for both, as Kafka's `validateOffsetCommit`
    /// with its `isTransactional` flag. For a transactional commit to a KIP-848 group a stale
    /// member epoch reads ILLEGAL_GENERATION (Kafka's `validateTransactionalOffsetCommit`).
    pub fn validate_commit(
        &mut self,
        now_ms: u64,
        group_id: &str,
        generation_or_member_epoch: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        transactional: bool,
    ) -> i16 {
        if group_id.is_empty() {
            return error::INVALID_GROUP_ID;
        }
        match self.groups.get_mut(group_id) {
            Some(Group::Classic(g)) => g.validate_commit(
                now_ms,
                generation_or_member_epoch,
                member_id,
                group_instance_id,
                transactional,
            ),
            Some(Group::Consumer(g)) => {
                match g.validate_offset_commit(generation_or_member_epoch, member_id) {
                    error::STALE_MEMBER_EPOCH if transactional => error::ILLEGAL_GENERATION,
                    code => code,
                }
            }
            Some(Group::Share(_)) => error::GROUP_ID_NOT_FOUND,
            None if generation_or_member_epoch < 0 => {
                self.groups.insert(
                    group_id.to_string(),
                    Group::Classic(ClassicGroup::new(group_id)),
                );
                error::NONE
            }
            None => error::ILLEGAL_GENERATION,
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        match self.groups.get(group_id)? {
            Group::Classic(g) => Some(g.describe()),
            Group::Consumer(g) => Some(g.describe(&self.config)),
            Group::Share(g) => Some(g.describe()),
        }
    }

    pub fn list(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .map(|g| match g {
                Group::Classic(g) => GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state,
                    group_type: GroupType::Classic,
                },
                Group::Consumer(g) => GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type: "consumer".to_string(),
                    state: g.state(),
                    group_type: GroupType::Consumer,
                },
                Group::Share(g) => GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type: "share".to_string(),
                    state: g.state(),
                    group_type: GroupType::Share,
                },
            })
            .collect()
    }

    /// DeleteGroups for one group: NONE, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND.
    pub fn delete(&mut self, group_id: &str) -> i16 {
        match self.groups.get(group_id) {
            None => return error::GROUP_ID_NOT_FOUND,
            Some(g) if !Self::deletable(g) => return error::NON_EMPTY_GROUP,
            Some(_) => {}
        }
        self.groups.remove(group_id);
        error::NONE
    }

    fn deletable(group: &Group) -> bool {
        match group {
            Group::Classic(g) => g.is_empty() && g.state == GroupState::Empty,
            Group::Consumer(g) => g.is_empty(),
            Group::Share(g) => g.is_empty(),
        }
    }

    /// Forgets classic and consumer groups that have no members, unless `keep` claims them
    /// (the broker keeps groups with committed offsets). Kafka does the same: an empty group
    /// without offsets becomes Dead and is removed, so group ids a client makes up cannot pile
    /// up. Share groups are kept (their queue state lives on). Returns how many were removed.
    pub fn remove_empty_groups(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let before = self.groups.len();
        self.groups
            .retain(|id, g| matches!(g, Group::Share(_)) || !Self::deletable(g) || keep(id));
        before - self.groups.len()
    }

    /// Topics the group is subscribed to (for OffsetDelete's
    /// GROUP_SUBSCRIBED_TO_TOPIC). Classic groups: decoded from the chosen
    /// protocol's `ConsumerProtocolSubscription` metadata when the protocol
    /// type is "consumer"; undecodable bytes are ignored.
    /// Every subscription regex of every KIP-848 group: the broker matches these against its
    /// topics to build `TopicsSnapshot::regex_matches`.
    pub fn regexes_in_use(&self) -> std::collections::BTreeSet<String> {
        self.groups
            .values()
            .filter_map(|g| match g {
                Group::Consumer(c) => Some(c.regexes().cloned().collect::<Vec<_>>()),
                Group::Classic(_) | Group::Share(_) => None,
            })
            .flatten()
            .collect()
    }

    pub fn subscribed_topics(&self, group_id: &str) -> Vec<String> {
        match self.groups.get(group_id) {
            Some(Group::Classic(g)) => g.subscribed_topics(),
            Some(Group::Consumer(g)) => g.subscribed_topics(),
            Some(Group::Share(g)) => g.subscribed_topics(),
            None => Vec::new(),
        }
    }
}
