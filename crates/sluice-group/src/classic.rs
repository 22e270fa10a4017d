//! The classic (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) group state machine,
//! modelled on Kafka's `ClassicGroup` and the classic half of
//! `GroupMetadataManager`.

use std::collections::{BTreeMap, BTreeSet};

use crate::error;
use crate::ids::IdGen;
use crate::types::{
    ClassicGroupRecord, ClassicMemberRecord, CoordinatorConfig, GroupDescription, GroupState,
    GroupType, HeartbeatRequest, JoinMember, JoinRequest, JoinResponse, LeavingMember,
    MemberDescription, Output, ProtocolRecord, SyncRequest, SyncResponse,
};
use crate::util::{ms, next_epoch};

/// Generation reported with errors (Kafka's `UNKNOWN_GENERATION_ID`).
const NO_GENERATION: i32 = -1;

#[derive(Debug, Clone)]
pub(crate) struct ClassicMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
    /// Parked JoinGroup, answered when the join phase completes.
    pub join_token: Option<u64>,
    /// Parked SyncGroup, answered when the leader's assignment arrives.
    pub sync_token: Option<u64>,
    pub last_heartbeat_ms: u64,
}

impl ClassicMember {
    fn session_deadline_ms(&self) -> u64 {
        self.last_heartbeat_ms
            .saturating_add(ms(self.session_timeout_ms))
    }

    /// Members with a parked request cannot heartbeat; they are alive.
    fn has_parked_request(&self) -> bool {
        self.join_token.is_some() || self.sync_token.is_some()
    }

    fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// The initial-rebalance delay of an empty group (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining_ms: u64,
    new_member_added: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ClassicGroup {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
    /// group.instance.id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED -> expiry deadline.
    pub pending_members: BTreeMap<String, u64>,
    /// Members that got a JoinGroup response but have not synced yet.
    pending_sync: BTreeSet<String>,
    join_deadline_ms: Option<u64>,
    initial_delay: Option<InitialDelay>,
    sync_deadline_ms: Option<u64>,
    /// What the last persisted record held: (generation, member ids). See
    /// [`ClassicGroup::persist_change`].
    persisted: Option<(i32, Vec<String>)>,
}

fn join_error(token: u64, member_id: &str, error: i16) -> Output {
    Output::Join {
        token,
        response: JoinResponse {
            error,
            generation_id: NO_GENERATION,
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

/// Decodes the topics of a `ConsumerProtocolSubscription`: int16 version,
/// then an int32-counted array of int16-length strings. Stops at the first
/// malformed byte and returns what was decoded so far.
pub(crate) fn decode_subscription_topics(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(rest) = bytes.get(2..) else {
        return out;
    };
    let Some(count_bytes) = rest.get(..4) else {
        return out;
    };
    let count = i32::from_be_bytes([
        count_bytes[0],
        count_bytes[1],
        count_bytes[2],
        count_bytes[3],
    ]);
    let mut pos = 4usize;
    let mut i = 0i32;
    while i < count {
        let Some(len_bytes) = rest.get(pos..pos + 2) else {
            break;
        };
        let len = i16::from_be_bytes([len_bytes[0], len_bytes[1]]);
        pos += 2;
        if len < 0 {
            break;
        }
        let end = pos + len as usize;
        let Some(name) = rest.get(pos..end) else {
            break;
        };
        match std::str::from_utf8(name) {
            Ok(s) => out.push(s.to_string()),
            Err(_) => break,
        }
        pos = end;
        i += 1;
    }
    out
}

impl ClassicGroup {
    pub fn new(group_id: &str) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline_ms: None,
            initial_delay: None,
            sync_deadline_ms: None,
            persisted: None,
        }
    }

    /// The group as persisted (see [`ClassicGroupRecord`]).
    pub fn record(&self) -> ClassicGroupRecord {
        ClassicGroupRecord {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation_id: self.generation_id,
            leader_id: self.leader_id.clone(),
            members: self
                .members
                .values()
                .map(|m| ClassicMemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: m.protocol_type.clone(),
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(name, metadata)| ProtocolRecord {
                            name: name.clone(),
                            metadata: metadata.clone(),
                        })
                        .collect(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn persist_key(&self) -> (i32, Vec<String>) {
        (self.generation_id, self.members.keys().cloned().collect())
    }

    /// What to persist after a change, if anything: the record when the group is Stable in
    /// a generation or with members not yet persisted (`Some(Some)`), a deletion when a
    /// persisted group became Empty (`Some(None)`). Transitional states (a rebalance in
    /// progress) are not persisted: a reload restores the last completed generation, whose
    /// members then rejoin as they would have.
    pub fn persist_change(&mut self) -> Option<Option<ClassicGroupRecord>> {
        match self.state {
            GroupState::Stable => {
                let key = self.persist_key();
                if self.persisted.as_ref() == Some(&key) {
                    return None;
                }
                self.persisted = Some(key);
                Some(Some(self.record()))
            }
            GroupState::Empty if self.persisted.is_some() => {
                self.persisted = None;
                Some(None)
            }
            _ => None,
        }
    }

    /// A group loaded from its record: Stable in the recorded generation, every member's
    /// session starting at `now_ms` (as a Kafka coordinator that loads a group). `None` when
    /// the record cannot be a group of this coordinator (no members, more than
    /// `max_group_size`, a duplicate member or instance id).
    pub fn from_record(
        group_id: &str,
        record: ClassicGroupRecord,
        now_ms: u64,
        cfg: &CoordinatorConfig,
    ) -> Option<Self> {
        if record.members.is_empty() || record.members.len() > cfg.max_group_size {
            return None;
        }
        let mut group = ClassicGroup::new(group_id);
        for m in record.members {
            if let Some(instance) = &m.group_instance_id {
                if group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone())
                    .is_some()
                {
                    return None;
                }
            }
            let member = ClassicMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: m.protocol_type,
                protocols: m
                    .protocols
                    .into_iter()
                    .map(|p| (p.name, p.metadata))
                    .collect(),
                assignment: m.assignment,
                join_token: None,
                sync_token: None,
                last_heartbeat_ms: now_ms,
            };
            if group.members.insert(m.member_id, member).is_some() {
                return None;
            }
        }
        group.state = GroupState::Stable;
        group.protocol_type = record.protocol_type;
        group.protocol_name = record.protocol_name;
        group.generation_id = record.generation_id;
        group.leader_id = record
            .leader_id
            .filter(|l| group.members.contains_key(l))
            .or_else(|| group.members.keys().next().cloned());
        group.persisted = Some(group.persist_key());
        Some(group)
    }

    /// No members and no pending (MEMBER_ID_REQUIRED) members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn max_rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| ms(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocol names supported by every member except `exclude`.
    fn candidate_protocols(&self, exclude: Option<&str>) -> Option<BTreeSet<String>> {
        let mut result: Option<BTreeSet<String>> = None;
        for m in self.members.values() {
            if Some(m.member_id.as_str()) == exclude {
                continue;
            }
            let names: BTreeSet<String> = m.protocols.iter().map(|(n, _)| n.clone()).collect();
            result = Some(match result {
                None => names,
                Some(acc) => acc.intersection(&names).cloned().collect(),
            });
        }
        result
    }

    fn is_valid_protocol(
        &self,
        protocol_type: &str,
        protocols: &[(String, Vec<u8>)],
        exclude: Option<&str>,
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        match self.candidate_protocols(exclude) {
            None => true,
            Some(candidates) => {
                self.protocol_type.as_deref() == Some(protocol_type)
                    && protocols.iter().any(|(n, _)| candidates.contains(n))
            }
        }
    }

    /// Kafka's vote: every member votes for its most preferred protocol among
    /// those all members support; most votes wins (ties: smallest name).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None)?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_insert(0) += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        best.map(|(n, _)| n.to_string())
    }

    fn validate_existing_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Some(error::UNKNOWN_MEMBER_ID),
                Some(id) if id != member_id => Some(error::FENCED_INSTANCE_ID),
                Some(_) => None,
            },
            None if !self.members.contains_key(member_id) => Some(error::UNKNOWN_MEMBER_ID),
            None => None,
        }
    }

    fn current_members_for_leader(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    /// JoinGroup response describing the current generation.
    fn current_join_response(
        &self,
        member_id: &str,
        with_members: bool,
        skip: bool,
    ) -> JoinResponse {
        JoinResponse {
            error: error::NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: skip,
            member_id: member_id.to_string(),
            members: if with_members {
                self.current_members_for_leader()
            } else {
                Vec::new()
            },
        }
    }

    // ------------------------------------------------------------------
    // JoinGroup
    // ------------------------------------------------------------------

    pub fn join(
        &mut self,
        now_ms: u64,
        token: u64,
        req: JoinRequest,
        cfg: &CoordinatorConfig,
        ids: &mut IdGen,
        out: &mut Vec<Output>,
    ) {
        if req.member_id.is_empty() {
            self.join_unknown_member(now_ms, token, req, cfg, ids, out);
        } else {
            self.join_existing_member(now_ms, token, req, cfg, out);
        }
    }

    fn new_member_id(&self, client_id: &str, now_ms: u64, ids: &mut IdGen) -> String {
        loop {
            let id = format!("{}-{}", client_id, ids.next(now_ms));
            if !self.members.contains_key(&id) && !self.pending_members.contains_key(&id) {
                return id;
            }
        }
    }

    fn join_unknown_member(
        &mut self,
        now_ms: u64,
        token: u64,
        req: JoinRequest,
        cfg: &CoordinatorConfig,
        ids: &mut IdGen,
        out: &mut Vec<Output>,
    ) {
        if !self.is_valid_protocol(&req.protocol_type, &req.protocols, None) {
            out.push(join_error(token, "", error::INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        let known_static = req
            .group_instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i).cloned());
        if known_static.is_none() && self.members.len() >= cfg.max_group_size {
            out.push(join_error(token, "", error::GROUP_MAX_SIZE_REACHED));
            return;
        }
        let new_id = self.new_member_id(&req.client_id, now_ms, ids);
        if let Some(old_id) = known_static {
            self.replace_static_member(now_ms, token, &old_id, new_id, req, cfg, out);
        } else if req.group_instance_id.is_none() && req.require_known_member_id {
            let deadline = now_ms.saturating_add(ms(req.session_timeout_ms));
            self.pending_members.insert(new_id.clone(), deadline);
            out.push(join_error(token, &new_id, error::MEMBER_ID_REQUIRED));
        } else {
            self.add_member_and_rebalance(now_ms, token, new_id, req, cfg, out);
        }
    }

    fn join_existing_member(
        &mut self,
        now_ms: u64,
        token: u64,
        req: JoinRequest,
        cfg: &CoordinatorConfig,
        out: &mut Vec<Output>,
    ) {
        let member_id = req.member_id.clone();
        if !self.is_valid_protocol(&req.protocol_type, &req.protocols, Some(&member_id)) {
            out.push(join_error(
                token,
                &member_id,
                error::INCONSISTENT_GROUP_PROTOCOL,
            ));
            return;
        }
        if self.pending_members.contains_key(&member_id) {
            if req.group_instance_id.is_some() {
                // Static members never get MEMBER_ID_REQUIRED.
                out.push(join_error(token, &member_id, error::INVALID_REQUEST));
                return;
            }
            if self.members.len() >= cfg.max_group_size {
                self.pending_members.remove(&member_id);
                out.push(join_error(token, &member_id, error::GROUP_MAX_SIZE_REACHED));
                self.maybe_complete_join(now_ms, out);
                return;
            }
            self.add_member_and_rebalance(now_ms, token, member_id, req, cfg, out);
            return;
        }
        if let Some(err) =
            self.validate_existing_member(&member_id, req.group_instance_id.as_deref())
        {
            out.push(join_error(token, &member_id, err));
            return;
        }
        let matches = self
            .members
            .get(&member_id)
            .is_some_and(|m| m.protocols == req.protocols && m.protocol_type == req.protocol_type);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(now_ms, token, &req, out);
                self.maybe_complete_join(now_ms, out);
            }
            GroupState::CompletingRebalance => {
                if matches {
                    // Lost JoinGroup response: resend the current generation.
                    let leader = self.is_leader(&member_id);
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.last_heartbeat_ms = now_ms;
                    }
                    let response = self.current_join_response(&member_id, leader, false);
                    out.push(Output::Join { token, response });
                } else {
                    self.update_member(now_ms, token, &req, out);
                    self.prepare_rebalance(now_ms, cfg, out);
                }
            }
            GroupState::Stable => {
                if self.is_leader(&member_id) || !matches {
                    self.update_member(now_ms, token, &req, out);
                    self.prepare_rebalance(now_ms, cfg, out);
                } else {
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.last_heartbeat_ms = now_ms;
                    }
                    let response = self.current_join_response(&member_id, false, false);
                    out.push(Output::Join { token, response });
                }
            }
            _ => out.push(join_error(token, &member_id, error::UNKNOWN_MEMBER_ID)),
        }
    }

    /// Stores a rejoining member's new protocols and parks its JoinGroup.
    fn update_member(&mut self, now_ms: u64, token: u64, req: &JoinRequest, out: &mut Vec<Output>) {
        let only_member = self.members.len() == 1;
        let Some(m) = self.members.get_mut(&req.member_id) else {
            out.push(join_error(token, &req.member_id, error::UNKNOWN_MEMBER_ID));
            return;
        };
        if let Some(old) = m.join_token.replace(token) {
            out.push(join_error(
                old,
                &req.member_id,
                error::REBALANCE_IN_PROGRESS,
            ));
        }
        m.protocols = req.protocols.clone();
        m.protocol_type = req.protocol_type.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.last_heartbeat_ms = now_ms;
        if only_member {
            self.protocol_type = Some(req.protocol_type.clone());
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now_ms: u64,
        token: u64,
        member_id: String,
        req: JoinRequest,
        cfg: &CoordinatorConfig,
        out: &mut Vec<Output>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.pending_members.remove(&member_id);
        let member = ClassicMember {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Vec::new(),
            join_token: Some(token),
            sync_token: None,
            last_heartbeat_ms: now_ms,
        };
        self.members.insert(member_id, member);
        if let Some(delay) = self.initial_delay.as_mut() {
            delay.new_member_added = true;
        }
        self.maybe_prepare_rebalance_or_complete(now_ms, cfg, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        now_ms: u64,
        token: u64,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        cfg: &CoordinatorConfig,
        out: &mut Vec<Output>,
    ) {
        let Some(mut member) = self.members.remove(old_id) else {
            out.push(join_error(token, "", error::UNKNOWN_MEMBER_ID));
            return;
        };
        if let Some(old) = member.join_token.take() {
            out.push(join_error(old, old_id, error::FENCED_INSTANCE_ID));
        }
        if let Some(old) = member.sync_token.take() {
            out.push(sync_error(old, error::FENCED_INSTANCE_ID));
        }
        member.member_id = new_id.clone();
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocol_type = req.protocol_type;
        member.protocols = req.protocols;
        member.last_heartbeat_ms = now_ms;
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        match self.state {
            GroupState::Stable => {
                let unchanged = self.select_protocol() == self.protocol_name;
                if unchanged {
                    let leader = self.is_leader(&new_id);
                    let response = self.current_join_response(&new_id, leader, leader);
                    out.push(Output::Join { token, response });
                } else {
                    self.park_join(&new_id, token);
                    self.prepare_rebalance(now_ms, cfg, out);
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may already be assigning to the old member id.
                self.park_join(&new_id, token);
                self.prepare_rebalance(now_ms, cfg, out);
            }
            GroupState::PreparingRebalance => {
                self.park_join(&new_id, token);
                self.maybe_complete_join(now_ms, out);
            }
            _ => out.push(join_error(token, &new_id, error::UNKNOWN_MEMBER_ID)),
        }
    }

    fn park_join(&mut self, member_id: &str, token: u64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.join_token = Some(token);
        }
    }

    fn maybe_prepare_rebalance_or_complete(
        &mut self,
        now_ms: u64,
        cfg: &CoordinatorConfig,
        out: &mut Vec<Output>,
    ) {
        match self.state {
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, cfg, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, out),
            _ => {}
        }
    }

    fn prepare_rebalance(&mut self, now_ms: u64, cfg: &CoordinatorConfig, out: &mut Vec<Output>) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_with_error(error::REBALANCE_IN_PROGRESS, out);
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let rebalance_timeout_ms = self.max_rebalance_timeout_ms();
        let delay = cfg.initial_rebalance_delay_ms;
        if self.state == GroupState::Empty && delay > 0 {
            self.initial_delay = Some(InitialDelay {
                remaining_ms: rebalance_timeout_ms.saturating_sub(delay),
                new_member_added: false,
            });
            self.join_deadline_ms = Some(now_ms.saturating_add(delay));
        } else {
            self.initial_delay = None;
            self.join_deadline_ms = Some(now_ms.saturating_add(rebalance_timeout_ms));
        }
        self.state = GroupState::PreparingRebalance;
        self.maybe_complete_join(now_ms, out);
    }

    fn reset_and_propagate_assignment_with_error(&mut self, err: i16, out: &mut Vec<Output>) {
        for m in self.members.values_mut() {
            m.assignment.clear();
            if let Some(token) = m.sync_token.take() {
                out.push(sync_error(token, err));
            }
        }
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_token.is_some())
    }

    fn maybe_complete_join(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.has_all_members_joined()
        {
            self.complete_join(now_ms, out);
        }
    }

    /// Ends the join phase: evicts members that did not rejoin, bumps the
    /// generation, and answers every parked JoinGroup.
    fn complete_join(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let not_joined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_token.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in not_joined {
            self.remove_member_internal(&id, error::UNKNOWN_MEMBER_ID, out);
        }
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.generation_id = next_epoch(self.generation_id);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            return;
        }
        self.protocol_name = self.select_protocol();
        if self.protocol_name.is_none() {
            // Cannot happen with validated joins; fail everyone rather than panic.
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in ids {
                self.remove_member_internal(&id, error::INCONSISTENT_GROUP_PROTOCOL, out);
            }
            self.state = GroupState::Empty;
            return;
        }
        self.state = GroupState::CompletingRebalance;
        let leader_members = self.current_members_for_leader();
        let leader = self.leader_id.clone().unwrap_or_default();
        for m in self.members.values_mut() {
            m.last_heartbeat_ms = now_ms;
            if let Some(token) = m.join_token.take() {
                let is_leader = m.member_id == leader;
                out.push(Output::Join {
                    token,
                    response: JoinResponse {
                        error: error::NONE,
                        generation_id: self.generation_id,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        leader: leader.clone(),
                        skip_assignment: false,
                        member_id: m.member_id.clone(),
                        members: if is_leader {
                            leader_members.clone()
                        } else {
                            Vec::new()
                        },
                    },
                });
            }
        }
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline_ms = Some(now_ms.saturating_add(self.max_rebalance_timeout_ms()));
    }

    /// Removes a member without changing the group state; parked requests
    /// of the member are answered with `err`.
    fn remove_member_internal(&mut self, member_id: &str, err: i16, out: &mut Vec<Output>) {
        let Some(mut m) = self.members.remove(member_id) else {
            return;
        };
        if let Some(token) = m.join_token.take() {
            out.push(join_error(token, member_id, err));
        }
        if let Some(token) = m.sync_token.take() {
            out.push(sync_error(token, err));
        }
        if let Some(instance) = &m.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
    }

    fn remove_member_and_update_group(
        &mut self,
        now_ms: u64,
        member_id: &str,
        cfg: &CoordinatorConfig,
        out: &mut Vec<Output>,
    ) {
        self.remove_member_internal(member_id, error::UNKNOWN_MEMBER_ID, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, cfg, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, out),
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // SyncGroup / Heartbeat / LeaveGroup / OffsetCommit
    // ------------------------------------------------------------------

    pub fn sync(&mut self, now_ms: u64, token: u64, req: SyncRequest, out: &mut Vec<Output>) {
        if let Some(err) =
            self.validate_existing_member(&req.member_id, req.group_instance_id.as_deref())
        {
            out.push(sync_error(token, err));
            return;
        }
        if req.generation_id != self.generation_id {
            out.push(sync_error(token, error::ILLEGAL_GENERATION));
            return;
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t));
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| self.protocol_name.as_ref() != Some(n));
        if type_mismatch || name_mismatch {
            out.push(sync_error(token, error::INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        match self.state {
            GroupState::PreparingRebalance => {
                out.push(sync_error(token, error::REBALANCE_IN_PROGRESS));
            }
            GroupState::CompletingRebalance => {
                let Some(m) = self.members.get_mut(&req.member_id) else {
                    out.push(sync_error(token, error::UNKNOWN_MEMBER_ID));
                    return;
                };
                m.last_heartbeat_ms = now_ms;
                if let Some(old) = m.sync_token.replace(token) {
                    out.push(sync_error(old, error::REBALANCE_IN_PROGRESS));
                }
                self.remove_pending_sync(&req.member_id);
                if self.is_leader(&req.member_id) {
                    let mut assignments: BTreeMap<String, Vec<u8>> =
                        req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = assignments.remove(&m.member_id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    for m in self.members.values_mut() {
                        if let Some(t) = m.sync_token.take() {
                            m.last_heartbeat_ms = now_ms;
                            out.push(Output::Sync {
                                token: t,
                                response: SyncResponse {
                                    error: error::NONE,
                                    protocol_type: self.protocol_type.clone(),
                                    protocol_name: self.protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            });
                        }
                    }
                }
            }
            GroupState::Stable => {
                let Some(m) = self.members.get_mut(&req.member_id) else {
                    out.push(sync_error(token, error::UNKNOWN_MEMBER_ID));
                    return;
                };
                m.last_heartbeat_ms = now_ms;
                let assignment = m.assignment.clone();
                self.remove_pending_sync(&req.member_id);
                out.push(Output::Sync {
                    token,
                    response: SyncResponse {
                        error: error::NONE,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment,
                    },
                });
            }
            _ => out.push(sync_error(token, error::UNKNOWN_MEMBER_ID)),
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    /// Kafka answers NONE while CompletingRebalance (members heartbeat
    /// between JoinGroup and SyncGroup) and REBALANCE_IN_PROGRESS while
    /// PreparingRebalance.
    pub fn heartbeat(&mut self, now_ms: u64, req: &HeartbeatRequest) -> i16 {
        if self.state == GroupState::Empty {
            return error::UNKNOWN_MEMBER_ID;
        }
        if let Some(err) =
            self.validate_existing_member(&req.member_id, req.group_instance_id.as_deref())
        {
            return err;
        }
        if req.generation_id != self.generation_id {
            return error::ILLEGAL_GENERATION;
        }
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => error::REBALANCE_IN_PROGRESS,
            _ => error::NONE,
        }
    }

    pub fn leave(
        &mut self,
        now_ms: u64,
        members: &[LeavingMember],
        cfg: &CoordinatorConfig,
        out: &mut Vec<Output>,
    ) -> Vec<(LeavingMember, i16)> {
        let mut results = Vec::with_capacity(members.len());
        for lm in members {
            let err = if let Some(instance) = &lm.group_instance_id {
                match self.static_members.get(instance).cloned() {
                    None => error::UNKNOWN_MEMBER_ID,
                    Some(id) if !lm.member_id.is_empty() && id != lm.member_id => {
                        error::FENCED_INSTANCE_ID
                    }
                    Some(id) => {
                        self.remove_member_and_update_group(now_ms, &id, cfg, out);
                        error::NONE
                    }
                }
            } else if self.pending_members.remove(&lm.member_id).is_some() {
                self.maybe_complete_join(now_ms, out);
                error::NONE
            } else if self.members.contains_key(&lm.member_id) {
                self.remove_member_and_update_group(now_ms, &lm.member_id, cfg, out);
                error::NONE
            } else {
                error::UNKNOWN_MEMBER_ID
            };
            results.push((lm.clone(), err));
        }
        results
    }

    /// OffsetCommit (`transactional` false) and TxnOffsetCommit (KIP-447, true) checks, as
    /// Kafka's `ClassicGroup.validateOffsetCommit`; a valid commit from a member also
    /// refreshes its session. A transactional commit without member id,
    /// generation and instance id (TxnOffsetCommit < v3, kafkajs) is accepted even when the
    /// group has members, and is never refused with REBALANCE_IN_PROGRESS.
    pub fn validate_commit(
        &mut self,
        now_ms: u64,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
        transactional: bool,
    ) -> i16 {
        if generation_id < 0 && self.state == GroupState::Empty {
            return error::NONE;
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if let Some(err) = self.validate_existing_member(member_id, instance_id) {
                return err;
            }
            if generation_id != self.generation_id {
                return error::ILLEGAL_GENERATION;
            }
        } else if !transactional && self.state != GroupState::Empty {
            return error::UNKNOWN_MEMBER_ID;
        }
        if !transactional && self.state == GroupState::CompletingRebalance {
            return error::REBALANCE_IN_PROGRESS;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        error::NONE
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    pub fn next_deadline_ms(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        let mut consider = |d: u64| {
            best = Some(best.map_or(d, |b| b.min(d)));
        };
        for d in self.pending_members.values() {
            consider(*d);
        }
        for m in self.members.values() {
            if !m.has_parked_request() {
                consider(m.session_deadline_ms());
            }
        }
        if self.state == GroupState::PreparingRebalance {
            if let Some(d) = self.join_deadline_ms {
                consider(d);
            }
        }
        if let Some(d) = self.sync_deadline_ms {
            consider(d);
        }
        best
    }

    pub fn tick(&mut self, now_ms: u64, cfg: &CoordinatorConfig, out: &mut Vec<Output>) {
        // Pending (MEMBER_ID_REQUIRED) members that never came back.
        let expired: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, d)| **d <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                self.pending_members.remove(id);
            }
            self.maybe_complete_join(now_ms, out);
        }
        // Session expiry.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.has_parked_request() && m.session_deadline_ms() <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            let still_expired = self
                .members
                .get(&id)
                .is_some_and(|m| !m.has_parked_request() && m.session_deadline_ms() <= now_ms);
            if still_expired {
                self.remove_member_and_update_group(now_ms, &id, cfg, out);
            }
        }
        // Join phase deadline (initial delay or rebalance timeout).
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            match self.initial_delay {
                Some(delay) if delay.new_member_added && delay.remaining_ms > 0 => {
                    let step = cfg.initial_rebalance_delay_ms.min(delay.remaining_ms);
                    self.initial_delay = Some(InitialDelay {
                        remaining_ms: delay.remaining_ms - step,
                        new_member_added: false,
                    });
                    self.join_deadline_ms = Some(now_ms.saturating_add(step));
                }
                _ => self.complete_join(now_ms, out),
            }
        }
        // Members that got a JoinGroup response but never synced.
        if self.sync_deadline_ms.is_some_and(|d| d <= now_ms) {
            self.sync_deadline_ms = None;
            let in_sync_phase = matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            );
            if in_sync_phase && !self.pending_sync.is_empty() {
                let laggards: Vec<String> = self.pending_sync.iter().cloned().collect();
                for id in laggards {
                    self.remove_member_internal(&id, error::UNKNOWN_MEMBER_ID, out);
                }
                self.prepare_rebalance(now_ms, cfg, out);
            }
        }
    }

    // ------------------------------------------------------------------
    // Introspection
    // ------------------------------------------------------------------

    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let consumer = self.protocol_type.as_deref() == Some("consumer");
        let members = self
            .members
            .values()
            .map(|m| {
                let metadata = m.metadata(&protocol);
                MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rack_id: None,
                    member_epoch: self.generation_id,
                    subscribed_topic_names: if consumer {
                        decode_subscription_topics(&metadata)
                    } else {
                        Vec::new()
                    },
                    subscribed_topic_regex: None,
                    metadata: if stable { metadata } else { Vec::new() },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Vec::new()
                    },
                    assigned: Vec::new(),
                    target: Vec::new(),
                }
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state,
            group_type: GroupType::Classic,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            group_epoch: self.generation_id,
            assignment_epoch: self.generation_id,
            assignor_name: protocol,
            members,
        }
    }

    /// Topics named in the chosen protocol's `ConsumerProtocolSubscription`
    /// of every member (consumer protocol type only).
    pub fn subscribed_topics(&self) -> Vec<String> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return Vec::new();
        }
        let Some(protocol) = &self.protocol_name else {
            return Vec::new();
        };
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(decode_subscription_topics(&m.metadata(protocol)));
        }
        topics.into_iter().collect()
    }
}
