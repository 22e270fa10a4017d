//! The KIP-848 consumer group state machine (ConsumerGroupHeartbeat),
//! modelled on Kafka's `ConsumerGroup`, the consumer half of
//! `GroupMetadataManager`, and `CurrentAssignmentBuilder`.

use std::collections::{BTreeMap, BTreeSet};

use crate::assignor::{self, Assignment, MemberSpec, SUPPORTED_ASSIGNORS};
use crate::error;
use crate::ids::IdGen;
use crate::types::{
    ConsumerGroupRecord, ConsumerHeartbeat, ConsumerHeartbeatResponse, ConsumerMemberRecord,
    CoordinatorConfig, GroupDescription, GroupState, GroupType, MemberDescription,
    PartitionsRecord, TopicId, TopicInfo, TopicsSnapshot,
};
use crate::util::{ms, next_epoch};

/// Member epoch of a member leaving for good.
pub(crate) const LEAVE_GROUP_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily.
pub(crate) const LEAVE_GROUP_STATIC_EPOCH: i32 = -2;

/// A heartbeat error: code and message.
pub(crate) type HbError = (i16, String);

/// Reconciliation state of a member (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MemberState {
    /// At the target epoch with its whole target, or waiting for it.
    Stable,
    /// Must acknowledge the revocation of `pending_revocation` first.
    UnrevokedPartitions,
    /// At the target epoch, but some target partitions are still owned by
    /// other members.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: BTreeSet<String>,
    /// A regular expression over topic names (KIP-848); the broker matches it.
    pub subscribed_topic_regex: Option<String>,
    /// The topics `subscribed_topic_regex` matched in the latest snapshot.
    pub regex_topics: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub state: MemberState,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Partitions the member has (what it was or will be told to own).
    pub assigned: Assignment,
    /// Partitions the member was told to give up but has not confirmed.
    pub pending_revocation: Assignment,
    last_sent: Option<Assignment>,
    session_deadline_ms: u64,
    rebalance_deadline_ms: Option<u64>,
}

impl ConsumerMember {
    fn update_epoch(&mut self, epoch: i32) {
        if epoch != self.member_epoch {
            self.previous_member_epoch = self.member_epoch;
            self.member_epoch = epoch;
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    pub group_id: String,
    pub group_epoch: i32,
    /// Epoch of the current target assignment.
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    static_members: BTreeMap<String, String>,
    pub(crate) target: BTreeMap<String, Assignment>,
    /// Subscribed topics that exist, as last seen.
    subscription_metadata: BTreeMap<String, TopicInfo>,
    /// Partition -> member holding it (assigned or pending revocation).
    pub(crate) owners: BTreeMap<(TopicId, i32), String>,
    assignor_name: String,
    /// Fingerprint of the last record handed out for persistence (None: none, or deleted).
    persisted: Option<u64>,
}

pub(crate) fn to_vec(a: &Assignment) -> Vec<(TopicId, Vec<i32>)> {
    a.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

/// An [`Assignment`] from its persisted form (empty topics dropped).
pub(crate) fn from_vec(p: &PartitionsRecord) -> Assignment {
    let mut a = Assignment::new();
    for (t, ps) in p {
        if !ps.is_empty() {
            a.entry(*t).or_default().extend(ps.iter().copied());
        }
    }
    a
}

/// Whether a group hands out a record for persistence after a change, given the fingerprint
/// of its state (`None`: the group is empty) and the last one handed out: `Some(true)` write
/// its record (it changed), `Some(false)` delete it (the group emptied), `None` nothing.
pub(crate) fn persist_decision(
    persisted: &mut Option<u64>,
    fingerprint: Option<u64>,
) -> Option<bool> {
    match fingerprint {
        None => persisted.take().map(|_| false),
        Some(fp) if *persisted == Some(fp) => None,
        Some(fp) => {
            *persisted = Some(fp);
            Some(true)
        }
    }
}

/// Kafka's `ownsRevokedPartitions`: unknown ownership counts as owning.
fn owns_any(owned: Option<&[(TopicId, Vec<i32>)]>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(t, ps)| {
        partitions
            .get(t)
            .is_some_and(|set| ps.iter().any(|p| set.contains(p)))
    })
}

fn is_subset(owned: Option<&[(TopicId, Vec<i32>)]>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned.iter().all(|(t, ps)| {
        ps.iter()
            .all(|p| assigned.get(t).is_some_and(|set| set.contains(p)))
    })
}

fn unknown_member(member_id: &str, group_id: &str) -> HbError {
    (
        error::UNKNOWN_MEMBER_ID,
        format!("Member {member_id} is not a member of group {group_id}."),
    )
}

impl ConsumerGroup {
    pub fn new(group_id: &str) -> Self {
        ConsumerGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscription_metadata: BTreeMap::new(),
            owners: BTreeMap::new(),
            assignor_name: String::new(),
            persisted: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.group_epoch != self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    // ------------------------------------------------------------------
    // Bookkeeping
    // ------------------------------------------------------------------

    /// Replaces a member's partitions, keeping `owners` in step.
    fn set_member_partitions(
        &mut self,
        member_id: &str,
        assigned: Assignment,
        pending: Assignment,
    ) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
            for p in ps {
                if self.owners.get(&(*t, *p)).map(String::as_str) == Some(member_id) {
                    self.owners.remove(&(*t, *p));
                }
            }
        }
        for (t, ps) in assigned.iter().chain(pending.iter()) {
            for p in ps {
                self.owners.insert((*t, *p), member_id.to_string());
            }
        }
        m.assigned = assigned;
        m.pending_revocation = pending;
    }

    fn remove_member(&mut self, member_id: &str) -> bool {
        self.set_member_partitions(member_id, Assignment::new(), Assignment::new());
        let Some(m) = self.members.remove(member_id) else {
            return false;
        };
        self.target.remove(member_id);
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        true
    }

    fn rename_member(&mut self, old_id: &str, new_id: &str) {
        let Some(mut m) = self.members.remove(old_id) else {
            return;
        };
        m.member_id = new_id.to_string();
        m.last_sent = None;
        for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
            for p in ps {
                self.owners.insert((*t, *p), new_id.to_string());
            }
        }
        if let Some(target) = self.target.remove(old_id) {
            self.target.insert(new_id.to_string(), target);
        }
        if let Some(instance) = &m.instance_id {
            self.static_members
                .insert(instance.clone(), new_id.to_string());
        }
        self.members.insert(new_id.to_string(), m);
    }

    /// Re-reads the subscribed topics from the snapshot; true if changed.
    fn refresh_subscription_metadata(&mut self, topics: &TopicsSnapshot) -> bool {
        let mut regex_changed = false;
        for m in self.members.values_mut() {
            let matched = m
                .subscribed_topic_regex
                .as_ref()
                .and_then(|r| topics.regex_matches.get(r))
                .cloned()
                .unwrap_or_default();
            if matched != m.regex_topics {
                m.regex_topics = matched;
                regex_changed = true;
            }
        }
        let mut meta = BTreeMap::new();
        for m in self.members.values() {
            for name in m.subscribed_topic_names.iter().chain(&m.regex_topics) {
                if let Some(info) = topics.topics.get(name) {
                    meta.insert(name.clone(), *info);
                }
            }
        }
        if meta != self.subscription_metadata {
            self.subscription_metadata = meta;
            true
        } else {
            regex_changed
        }
    }

    /// The assignor most members ask for, else the configured default.
    fn preferred_assignor(&self, cfg: &CoordinatorConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_insert(0) += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        match best {
            Some((name, _)) => name.to_string(),
            None if SUPPORTED_ASSIGNORS.contains(&cfg.default_consumer_assignor.as_str()) => {
                cfg.default_consumer_assignor.clone()
            }
            None => "uniform".to_string(),
        }
    }

    fn compute_target(&mut self, cfg: &CoordinatorConfig) {
        let name = self.preferred_assignor(cfg);
        let partitions: BTreeMap<TopicId, i32> = self
            .subscription_metadata
            .values()
            .map(|i| (i.id, i.partitions))
            .collect();
        let specs: Vec<MemberSpec> = self
            .members
            .values()
            .map(|m| MemberSpec {
                member_id: m.member_id.clone(),
                topics: m
                    .subscribed_topic_names
                    .iter()
                    .chain(&m.regex_topics)
                    .filter_map(|n| self.subscription_metadata.get(n).map(|i| i.id))
                    .collect(),
            })
            .collect();
        self.target = assignor::assign(&name, &specs, &partitions, &self.target);
        self.assignment_epoch = self.group_epoch;
        self.assignor_name = name;
    }

    fn bump_and_maybe_assign(&mut self, bump: bool, cfg: &CoordinatorConfig) {
        if bump {
            self.group_epoch = next_epoch(self.group_epoch);
        }
        if self.group_epoch != self.assignment_epoch {
            self.compute_target(cfg);
        }
    }

    // ------------------------------------------------------------------
    // Reconciliation (Kafka's CurrentAssignmentBuilder)
    // ------------------------------------------------------------------

    fn reconcile(&mut self, member_id: &str, owned: Option<&[(TopicId, Vec<i32>)]>, now_ms: u64) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        let run = match m.state {
            MemberState::Stable => m.member_epoch != self.assignment_epoch,
            MemberState::UnrevokedPartitions => !owns_any(owned, &m.pending_revocation),
            MemberState::UnreleasedPartitions => true,
        };
        if run {
            self.compute_next_assignment(member_id, owned);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            if m.state == MemberState::UnrevokedPartitions {
                if m.rebalance_deadline_ms.is_none() {
                    m.rebalance_deadline_ms =
                        Some(now_ms.saturating_add(ms(m.rebalance_timeout_ms)));
                }
            } else {
                m.rebalance_deadline_ms = None;
            }
        }
    }

    fn compute_next_assignment(&mut self, member_id: &str, owned: Option<&[(TopicId, Vec<i32>)]>) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        let empty_assignment = Assignment::new();
        let empty_set = BTreeSet::new();
        let target = self.target.get(member_id).unwrap_or(&empty_assignment);
        let topics: BTreeSet<TopicId> = target.keys().chain(m.assigned.keys()).copied().collect();
        let mut new_assigned = Assignment::new();
        let mut new_revoke = Assignment::new();
        let mut new_pending_assign = Assignment::new();
        let mut unreleased = false;
        for t in topics {
            let tgt = target.get(&t).unwrap_or(&empty_set);
            let cur = m.assigned.get(&t).unwrap_or(&empty_set);
            let keep: BTreeSet<i32> = cur.intersection(tgt).copied().collect();
            let revoke: BTreeSet<i32> = cur.difference(&keep).copied().collect();
            let mut pending: BTreeSet<i32> = tgt.difference(&keep).copied().collect();
            let before = pending.len();
            pending.retain(|p| match self.owners.get(&(t, *p)) {
                None => true,
                Some(owner) => owner == member_id,
            });
            unreleased |= pending.len() != before;
            if !keep.is_empty() {
                new_assigned.insert(t, keep);
            }
            if !revoke.is_empty() {
                new_revoke.insert(t, revoke);
            }
            if !pending.is_empty() {
                new_pending_assign.insert(t, pending);
            }
        }
        let member_epoch = m.member_epoch;
        let target_epoch = self.assignment_epoch;
        let (state, epoch, assigned, pending_revocation) =
            if !new_revoke.is_empty() && owns_any(owned, &new_revoke) {
                (
                    MemberState::UnrevokedPartitions,
                    member_epoch,
                    new_assigned,
                    new_revoke,
                )
            } else {
                for (t, ps) in new_pending_assign {
                    new_assigned.entry(t).or_default().extend(ps);
                }
                let state = if unreleased {
                    MemberState::UnreleasedPartitions
                } else {
                    MemberState::Stable
                };
                (state, target_epoch, new_assigned, Assignment::new())
            };
        if let Some(m) = self.members.get_mut(member_id) {
            m.state = state;
            m.update_epoch(epoch);
        }
        self.set_member_partitions(member_id, assigned, pending_revocation);
    }

    // ------------------------------------------------------------------
    // ConsumerGroupHeartbeat
    // ------------------------------------------------------------------

    fn new_member_id(&self, now_ms: u64, ids: &mut IdGen) -> String {
        loop {
            let id = ids.next(now_ms);
            if !self.members.contains_key(&id) {
                return id;
            }
        }
    }

    fn new_member(&self, member_id: String, req: &ConsumerHeartbeat) -> ConsumerMember {
        ConsumerMember {
            member_id,
            instance_id: req.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            regex_topics: BTreeSet::new(),
            server_assignor: None,
            state: MemberState::Stable,
            member_epoch: 0,
            previous_member_epoch: -1,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            last_sent: None,
            session_deadline_ms: 0,
            rebalance_deadline_ms: None,
        }
    }

    fn check_capacity(&self, cfg: &CoordinatorConfig) -> Result<(), HbError> {
        if self.members.len() >= cfg.max_group_size {
            return Err((
                error::GROUP_MAX_SIZE_REACHED,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    cfg.max_group_size
                ),
            ));
        }
        Ok(())
    }

    /// Epoch 0: find or create the member. Returns `(member id, is new)`.
    fn join_member(
        &mut self,
        now_ms: u64,
        req: &ConsumerHeartbeat,
        cfg: &CoordinatorConfig,
        ids: &mut IdGen,
    ) -> Result<(String, bool), HbError> {
        if let Some(instance) = &req.instance_id {
            if let Some(old_id) = self.static_members.get(instance).cloned() {
                if old_id == req.member_id {
                    return Ok((old_id, false));
                }
                let old_epoch = self.members.get(&old_id).map(|m| m.member_epoch);
                if old_epoch != Some(LEAVE_GROUP_STATIC_EPOCH) {
                    return Err((
                        error::UNRELEASED_INSTANCE_ID,
                        format!(
                            "Static member {} with instance id {} cannot join the group because \
                             the instance id is owned by {} member.",
                            req.member_id, instance, old_id
                        ),
                    ));
                }
                let new_id = if req.member_id.is_empty() {
                    self.new_member_id(now_ms, ids)
                } else {
                    req.member_id.clone()
                };
                if self.members.contains_key(&new_id) {
                    return Err((
                        error::INVALID_REQUEST,
                        format!("Member id {new_id} is already used by another member."),
                    ));
                }
                self.rename_member(&old_id, &new_id);
                if let Some(m) = self.members.get_mut(&new_id) {
                    // Come back at the epoch it had before leaving.
                    let epoch = m.previous_member_epoch.max(0);
                    m.update_epoch(epoch);
                }
                return Ok((new_id, false));
            }
        } else if !req.member_id.is_empty() && self.members.contains_key(&req.member_id) {
            return Ok((req.member_id.clone(), false));
        }
        if !req.member_id.is_empty() && self.members.contains_key(&req.member_id) {
            return Err((
                error::INVALID_REQUEST,
                format!(
                    "Member id {} is already used by another member.",
                    req.member_id
                ),
            ));
        }
        self.check_capacity(cfg)?;
        let id = if req.member_id.is_empty() {
            self.new_member_id(now_ms, ids)
        } else {
            req.member_id.clone()
        };
        let member = self.new_member(id.clone(), req);
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(id.clone(), member);
        Ok((id, true))
    }

    /// Epoch != 0: the member must exist (and own its instance id).
    fn lookup_member(&self, req: &ConsumerHeartbeat) -> Result<String, HbError> {
        if let Some(instance) = &req.instance_id {
            match self.static_members.get(instance) {
                None => Err((
                    error::UNKNOWN_MEMBER_ID,
                    format!(
                        "Instance id {} is unknown in group {}.",
                        instance, self.group_id
                    ),
                )),
                Some(id) if *id != req.member_id => Err((
                    error::FENCED_INSTANCE_ID,
                    format!(
                        "Static member {} with instance id {} was fenced by member {}.",
                        req.member_id, instance, id
                    ),
                )),
                Some(id) => Ok(id.clone()),
            }
        } else if self.members.contains_key(&req.member_id) {
            Ok(req.member_id.clone())
        } else {
            Err(unknown_member(&req.member_id, &self.group_id))
        }
    }

    fn validate_epoch(
        &self,
        member_id: &str,
        received: i32,
        owned: Option<&[(TopicId, Vec<i32>)]>,
    ) -> Result<(), HbError> {
        let Some(m) = self.members.get(member_id) else {
            return Err(unknown_member(member_id, &self.group_id));
        };
        let fenced = |which: &str| {
            Err((
                error::FENCED_MEMBER_EPOCH,
                format!(
                    "The consumer group member has a {which} member epoch ({received}) than the \
                     one known by the group coordinator ({}). The member must abandon all its \
                     partitions and rejoin.",
                    m.member_epoch
                ),
            ))
        };
        if received > m.member_epoch {
            return fenced("greater");
        }
        if received < m.member_epoch
            && (received != m.previous_member_epoch || !is_subset(owned, &m.assigned))
        {
            return fenced("smaller");
        }
        Ok(())
    }

    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        req: &ConsumerHeartbeat,
        topics: &TopicsSnapshot,
        cfg: &CoordinatorConfig,
        ids: &mut IdGen,
    ) -> Result<ConsumerHeartbeatResponse, HbError> {
        if req.member_epoch == LEAVE_GROUP_EPOCH || req.member_epoch == LEAVE_GROUP_STATIC_EPOCH {
            return self.leave(now_ms, req, topics, cfg);
        }
        let owned = req.owned_partitions.as_deref();
        let (member_id, is_new) = if req.member_epoch == 0 {
            self.join_member(now_ms, req, cfg, ids)?
        } else {
            let id = self.lookup_member(req)?;
            self.validate_epoch(&id, req.member_epoch, owned)?;
            (id, false)
        };
        let mut bump = is_new;
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err(unknown_member(&member_id, &self.group_id));
        };
        if let Some(names) = &req.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != m.subscribed_topic_names {
                m.subscribed_topic_names = names;
                bump = true;
            }
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            // librdkafka sends an empty regex to say it has none.
            let regex = Some(regex.clone()).filter(|r| !r.is_empty());
            if regex != m.subscribed_topic_regex {
                m.subscribed_topic_regex = regex;
                bump = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            if m.server_assignor.as_ref() != Some(a) {
                m.server_assignor = Some(a.clone());
                bump = true;
            }
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        if req.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_deadline_ms = now_ms.saturating_add(ms(cfg.consumer_session_timeout_ms));
        if self.refresh_subscription_metadata(topics) {
            bump = true;
        }
        self.bump_and_maybe_assign(bump, cfg);
        self.reconcile(&member_id, owned, now_ms);

        let full_request = req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.owned_partitions.is_some();
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err(unknown_member(&member_id, &self.group_id));
        };
        let send =
            req.member_epoch == 0 || full_request || m.last_sent.as_ref() != Some(&m.assigned);
        let assignment = if send {
            m.last_sent = Some(m.assigned.clone());
            Some(to_vec(&m.assigned))
        } else {
            None
        };
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms,
            assignment,
        })
    }

    fn leave(
        &mut self,
        now_ms: u64,
        req: &ConsumerHeartbeat,
        topics: &TopicsSnapshot,
        cfg: &CoordinatorConfig,
    ) -> Result<ConsumerHeartbeatResponse, HbError> {
        let member_id = self.lookup_member(req)?;
        if req.member_epoch == LEAVE_GROUP_STATIC_EPOCH {
            // Keep the assignment for the instance's return; its session
            // timeout still runs.
            self.set_member_partitions(
                &member_id,
                self.members
                    .get(&member_id)
                    .map(|m| m.assigned.clone())
                    .unwrap_or_default(),
                Assignment::new(),
            );
            if let Some(m) = self.members.get_mut(&member_id) {
                m.update_epoch(LEAVE_GROUP_STATIC_EPOCH);
                m.rebalance_deadline_ms = None;
                m.last_sent = None;
                m.session_deadline_ms = now_ms.saturating_add(ms(cfg.consumer_session_timeout_ms));
            }
        } else {
            self.remove_member(&member_id);
            self.refresh_subscription_metadata(topics);
            self.bump_and_maybe_assign(true, cfg);
        }
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms,
            assignment: None,
        })
    }

    // ------------------------------------------------------------------
    // Timers, offsets, introspection
    // ------------------------------------------------------------------

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.members
            .values()
            .flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.rebalance_deadline_ms))
            .min()
    }

    /// Fences members whose session or revocation time ran out and picks
    /// up topic metadata changes.
    pub fn tick(&mut self, now_ms: u64, topics: &TopicsSnapshot, cfg: &CoordinatorConfig) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || m.rebalance_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        let mut bump = false;
        for id in expired {
            bump |= self.remove_member(&id);
        }
        bump |= self.refresh_subscription_metadata(topics);
        self.bump_and_maybe_assign(bump, cfg);
    }

    // ------------------------------------------------------------------
    // Persistence
    // ------------------------------------------------------------------

    /// A fingerprint of everything [`ConsumerGroup::record`] holds (not the sessions), so a
    /// heartbeat that changes nothing writes nothing. O(members + partitions), no allocation.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.group_epoch, self.assignment_epoch, &self.assignor_name).hash(&mut h);
        for (name, info) in &self.subscription_metadata {
            (name, info.id, info.partitions).hash(&mut h);
        }
        for m in self.members.values() {
            (
                &m.member_id,
                &m.instance_id,
                &m.rack_id,
                &m.client_id,
                &m.client_host,
            )
                .hash(&mut h);
            (
                m.rebalance_timeout_ms,
                &m.subscribed_topic_names,
                &m.subscribed_topic_regex,
            )
                .hash(&mut h);
            (&m.regex_topics, &m.server_assignor, m.state, m.member_epoch).hash(&mut h);
            (m.previous_member_epoch, &m.assigned, &m.pending_revocation).hash(&mut h);
            self.target.get(&m.member_id).hash(&mut h);
        }
        h.finish()
    }

    /// The group as persisted (see [`ConsumerGroupRecord`]).
    pub fn record(&self) -> ConsumerGroupRecord {
        let partitions = |a: &Assignment| -> PartitionsRecord { to_vec(a) };
        ConsumerGroupRecord {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self.assignor_name.clone(),
            topics: self
                .subscription_metadata
                .iter()
                .map(|(n, i)| (n.clone(), i.id, i.partitions))
                .collect(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberRecord {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    regex_topics: m.regex_topics.iter().cloned().collect(),
                    server_assignor: m.server_assignor.clone(),
                    state: match m.state {
                        MemberState::Stable => 0,
                        MemberState::UnrevokedPartitions => 1,
                        MemberState::UnreleasedPartitions => 2,
                    },
                    member_epoch: m.member_epoch,
                    previous_member_epoch: m.previous_member_epoch,
                    assigned: partitions(&m.assigned),
                    pending_revocation: partitions(&m.pending_revocation),
                    target: self
                        .target
                        .get(&m.member_id)
                        .map(partitions)
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// What to persist after a change: `Some(Some(record))` when the record changed,
    /// `Some(None)` when the group emptied (delete its record), `None` when nothing changed.
    pub fn persist_change(&mut self) -> Option<Option<ConsumerGroupRecord>> {
        let fp = (!self.members.is_empty()).then(|| self.fingerprint());
        persist_decision(&mut self.persisted, fp).map(|write| write.then(|| self.record()))
    }

    /// A group from its persisted record (a coordinator loading its partition): members keep
    /// their epochs and partitions and start a new session now (as a classic group's
    /// members do). None when the record does not make a valid group (no members, duplicate
    /// or empty member ids, more members than `max_group_size`, an unknown state, a partition
    /// owned twice).
    pub fn from_record(
        group_id: &str,
        r: ConsumerGroupRecord,
        now_ms: u64,
        cfg: &CoordinatorConfig,
    ) -> Option<Self> {
        if r.members.is_empty() || r.members.len() > cfg.max_group_size {
            return None;
        }
        let assignment = from_vec;
        let mut g = ConsumerGroup::new(group_id);
        g.group_epoch = r.group_epoch;
        g.assignment_epoch = r.assignment_epoch;
        g.assignor_name = r.assignor_name;
        g.subscription_metadata = r
            .topics
            .into_iter()
            .map(|(n, id, partitions)| (n, TopicInfo { id, partitions }))
            .collect();
        let session_deadline_ms = now_ms.saturating_add(ms(cfg.consumer_session_timeout_ms));
        for m in r.members {
            if m.member_id.is_empty() || g.members.contains_key(&m.member_id) {
                return None;
            }
            let state = match m.state {
                0 => MemberState::Stable,
                1 => MemberState::UnrevokedPartitions,
                2 => MemberState::UnreleasedPartitions,
                _ => return None,
            };
            let (assigned, pending) = (assignment(&m.assigned), assignment(&m.pending_revocation));
            for (t, ps) in assigned.iter().chain(pending.iter()) {
                for p in ps {
                    if g.owners.insert((*t, *p), m.member_id.clone()).is_some() {
                        return None;
                    }
                }
            }
            if let Some(instance) = &m.instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            g.target.insert(m.member_id.clone(), assignment(&m.target));
            let rebalance_deadline_ms = (state == MemberState::UnrevokedPartitions)
                .then(|| now_ms.saturating_add(ms(m.rebalance_timeout_ms)));
            g.members.insert(
                m.member_id.clone(),
                ConsumerMember {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    rack_id: m.rack_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed_topic_names: m.subscribed_topic_names.into_iter().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex,
                    regex_topics: m.regex_topics.into_iter().collect(),
                    server_assignor: m.server_assignor,
                    state,
                    member_epoch: m.member_epoch,
                    previous_member_epoch: m.previous_member_epoch,
                    assigned,
                    pending_revocation: pending,
                    last_sent: None,
                    session_deadline_ms,
                    rebalance_deadline_ms,
                },
            );
        }
        g.persisted = Some(g.fingerprint());
        Some(g)
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit`.
    pub fn validate_offset_commit(&self, member_epoch: i32, member_id: &str) -> i16 {
        if member_epoch < 0 && self.members.is_empty() {
            return error::NONE;
        }
        let Some(m) = self.members.get(member_id) else {
            return error::UNKNOWN_MEMBER_ID;
        };
        if member_epoch > m.member_epoch {
            error::FENCED_MEMBER_EPOCH
        } else if member_epoch < m.member_epoch {
            error::STALE_MEMBER_EPOCH
        } else {
            error::NONE
        }
    }

    pub fn describe(&self, cfg: &CoordinatorConfig) -> GroupDescription {
        let empty = Assignment::new();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state(),
            group_type: GroupType::Consumer,
            protocol_type: "consumer".to_string(),
            protocol_name: String::new(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: if self.assignor_name.is_empty() {
                self.preferred_assignor(cfg)
            } else {
                self.assignor_name.clone()
            },
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    metadata: Vec::new(),
                    assignment: Vec::new(),
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    assigned: to_vec(&m.assigned),
                    target: to_vec(self.target.get(&m.member_id).unwrap_or(&empty)),
                })
                .collect(),
        }
    }

    pub fn subscribed_topics(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed_topic_names.iter().chain(&m.regex_topics))
            .collect();
        set.into_iter().cloned().collect()
    }

    /// The regular expressions members subscribe with.
    pub fn regexes(&self) -> impl Iterator<Item = &String> {
        self.members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.as_ref())
    }
}
