//! Share-group membership (KIP-932 ShareGroupHeartbeat), modelled on the share half of Kafka's
//! `GroupMetadataManager` and its `SimpleAssignor`.
//!
//! A share group splits records, not partitions: several members may be assigned the same
//! partition, because every record is locked to one member by the share-partition (in the
//! `sluice-share` crate). So there is no revocation step: a new assignment takes effect at once
//! and the member epoch simply follows the group epoch.

use std::collections::{BTreeMap, BTreeSet};

use crate::assignor::Assignment;
use crate::consumer::{from_vec, persist_decision, to_vec};
use crate::error;
use crate::types::{
    GroupDescription, GroupState, GroupType, MemberDescription, ShareGroupRecord, ShareHeartbeat,
    ShareHeartbeatResponse, ShareMemberRecord, TopicsSnapshot,
};
use crate::util::{ms, next_epoch};

pub(crate) type HbError = (i16, String);

/// Member epoch of a member leaving the group.
pub(crate) const LEAVE_EPOCH: i32 = -1;

#[derive(Debug, Clone)]
pub(crate) struct ShareMember {
    pub member_id: String,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: BTreeSet<String>,
    pub member_epoch: i32,
    pub assigned: Assignment,
    last_sent: Option<Assignment>,
    session_deadline_ms: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ShareGroup {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ShareMember>,
    /// The assignment at `assignment_epoch`; a member takes its part on its next heartbeat
    /// (its epoch moves only then, so heartbeats in flight are not fenced).
    target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics as last assigned, to notice new partitions.
    subscribed: BTreeMap<String, (crate::types::TopicId, i32)>,
    /// The session timeout of the last heartbeat (persisted: restored sessions use it).
    session_timeout_ms: i32,
    /// Fingerprint of the last record handed out for persistence (None: none, or deleted).
    persisted: Option<u64>,
}

/// Settings the coordinator applies to share groups (Kafka's `group.share.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareGroupTimeouts {
    pub heartbeat_interval_ms: i32,
    pub session_timeout_ms: i32,
}

impl Default for ShareGroupTimeouts {
    fn default() -> Self {
        ShareGroupTimeouts {
            heartbeat_interval_ms: 5000,
            session_timeout_ms: 45000,
        }
    }
}

fn unknown_member(member_id: &str, group_id: &str) -> HbError {
    (
        error::UNKNOWN_MEMBER_ID,
        format!("Member {member_id} is not a member of share group {group_id}."),
    )
}

/// Kafka's share-group `SimpleAssignor`, made deterministic: per topic, with members sorted by
/// id, each partition goes to one member round-robin when there are at least as many
/// partitions as members; otherwise every member gets one partition (member i gets partition
/// i mod P), so every member has work and every partition has a reader.
pub(crate) fn assign(
    members: &BTreeMap<String, ShareMember>,
    topics: &BTreeMap<String, (crate::types::TopicId, i32)>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (name, (id, partitions)) in topics {
        let subscribers: Vec<&String> = members
            .values()
            .filter(|m| m.subscribed_topic_names.contains(name))
            .map(|m| &m.member_id)
            .collect();
        let n = subscribers.len();
        let p = usize::try_from(*partitions).unwrap_or(0);
        if n == 0 || p == 0 {
            continue;
        }
        let mut give = |member: &String, partition: usize| {
            if let Some(a) = out.get_mut(member) {
                a.entry(*id).or_default().insert(partition as i32);
            }
        };
        if p >= n {
            for partition in 0..p {
                give(subscribers[partition % n], partition);
            }
        } else {
            for (i, member) in subscribers.iter().enumerate() {
                give(member, i % p);
            }
        }
    }
    out
}

impl ShareGroup {
    pub fn new(group_id: &str) -> Self {
        ShareGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            session_timeout_ms: ShareGroupTimeouts::default().session_timeout_ms,
            persisted: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        }
    }

    /// The subscribed topics that exist, with their partition counts.
    fn subscription(
        &self,
        topics: &TopicsSnapshot,
    ) -> BTreeMap<String, (crate::types::TopicId, i32)> {
        let names: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed_topic_names.iter())
            .collect();
        names
            .into_iter()
            .filter_map(|n| {
                topics
                    .topics
                    .get(n)
                    .map(|t| (n.clone(), (t.id, t.partitions)))
            })
            .collect()
    }

    /// Recomputes the assignment when membership, subscriptions or topic metadata changed.
    fn maybe_reassign(&mut self, changed: bool, topics: &TopicsSnapshot) {
        let subscribed = self.subscription(topics);
        if !changed && subscribed == self.subscribed {
            return;
        }
        self.subscribed = subscribed;
        self.group_epoch = next_epoch(self.group_epoch);
        self.assignment_epoch = self.group_epoch;
        self.target = assign(&self.members, &self.subscribed);
    }

    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        req: &ShareHeartbeat,
        topics: &TopicsSnapshot,
        timeouts: ShareGroupTimeouts,
        max_members: usize,
    ) -> Result<ShareHeartbeatResponse, HbError> {
        let session = u64::try_from(timeouts.session_timeout_ms).unwrap_or(0);
        self.session_timeout_ms = timeouts.session_timeout_ms;
        if req.member_epoch == LEAVE_EPOCH {
            if self.members.remove(&req.member_id).is_none() {
                return Err(unknown_member(&req.member_id, &self.group_id));
            }
            self.maybe_reassign(true, topics);
            return Ok(ShareHeartbeatResponse {
                member_id: req.member_id.clone(),
                member_epoch: LEAVE_EPOCH,
                heartbeat_interval_ms: timeouts.heartbeat_interval_ms,
                assignment: None,
            });
        }
        let mut changed = false;
        if req.member_epoch == 0 {
            if !self.members.contains_key(&req.member_id) {
                if self.members.len() >= max_members {
                    return Err((
                        error::GROUP_MAX_SIZE_REACHED,
                        format!(
                            "The share group {} has reached its maximum size of {max_members}.",
                            self.group_id
                        ),
                    ));
                }
                changed = true;
            }
            let m = self
                .members
                .entry(req.member_id.clone())
                .or_insert_with(|| ShareMember {
                    member_id: req.member_id.clone(),
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    subscribed_topic_names: BTreeSet::new(),
                    member_epoch: 0,
                    assigned: Assignment::new(),
                    last_sent: None,
                    session_deadline_ms: 0,
                });
            // A rejoin (epoch 0 with a known id) resends the assignment.
            m.last_sent = None;
        } else {
            let Some(m) = self.members.get(&req.member_id) else {
                return Err(unknown_member(&req.member_id, &self.group_id));
            };
            if req.member_epoch != m.member_epoch {
                return Err((
                    error::FENCED_MEMBER_EPOCH,
                    format!(
                        "The share group member has a member epoch ({}) different from the \
                         current one ({}). The member must rejoin.",
                        req.member_epoch, m.member_epoch
                    ),
                ));
            }
        }
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return Err(unknown_member(&req.member_id, &self.group_id));
        };
        if let Some(names) = &req.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != m.subscribed_topic_names {
                m.subscribed_topic_names = names;
                changed = true;
            }
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_deadline_ms = now_ms.saturating_add(session);
        self.maybe_reassign(changed, topics);
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return Err(unknown_member(&req.member_id, &self.group_id));
        };
        if m.member_epoch != self.assignment_epoch {
            m.assigned = self.target.get(&m.member_id).cloned().unwrap_or_default();
            m.member_epoch = self.assignment_epoch;
        }
        let assignment = if m.last_sent.as_ref() != Some(&m.assigned) {
            m.last_sent = Some(m.assigned.clone());
            Some(to_vec(&m.assigned))
        } else {
            None
        };
        Ok(ShareHeartbeatResponse {
            member_id: m.member_id.clone(),
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: timeouts.heartbeat_interval_ms,
            assignment,
        })
    }

    // ------------------------------------------------------------------
    // Persistence (as `ConsumerGroup`'s)
    // ------------------------------------------------------------------

    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            self.group_epoch,
            self.assignment_epoch,
            self.session_timeout_ms,
        )
            .hash(&mut h);
        self.subscribed.hash(&mut h);
        for m in self.members.values() {
            (&m.member_id, &m.rack_id, &m.client_id, &m.client_host).hash(&mut h);
            (&m.subscribed_topic_names, m.member_epoch, &m.assigned).hash(&mut h);
            self.target.get(&m.member_id).hash(&mut h);
        }
        h.finish()
    }

    pub fn record(&self) -> ShareGroupRecord {
        ShareGroupRecord {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            session_timeout_ms: self.session_timeout_ms,
            topics: self
                .subscribed
                .iter()
                .map(|(n, (id, p))| (n.clone(), *id, *p))
                .collect(),
            members: self
                .members
                .values()
                .map(|m| ShareMemberRecord {
                    member_id: m.member_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    member_epoch: m.member_epoch,
                    assigned: to_vec(&m.assigned),
                    target: self
                        .target
                        .get(&m.member_id)
                        .map(to_vec)
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// As `ConsumerGroup::persist_change`.
    pub fn persist_change(&mut self) -> Option<Option<ShareGroupRecord>> {
        let fp = (!self.members.is_empty()).then(|| self.fingerprint());
        persist_decision(&mut self.persisted, fp).map(|write| write.then(|| self.record()))
    }

    /// A group from its persisted record; members start a new session now. None when the
    /// record does not make a valid group (no members, more than `max_members`, empty or
    /// duplicate member ids).
    pub fn from_record(
        group_id: &str,
        r: ShareGroupRecord,
        now_ms: u64,
        max_members: usize,
    ) -> Option<Self> {
        if r.members.is_empty() || r.members.len() > max_members {
            return None;
        }
        let assignment = from_vec;
        let mut g = ShareGroup::new(group_id);
        g.group_epoch = r.group_epoch;
        g.assignment_epoch = r.assignment_epoch;
        g.session_timeout_ms = r.session_timeout_ms;
        g.subscribed = r
            .topics
            .into_iter()
            .map(|(n, id, p)| (n, (id, p)))
            .collect();
        let session_deadline_ms = now_ms.saturating_add(ms(r.session_timeout_ms));
        for m in r.members {
            if m.member_id.is_empty() || g.members.contains_key(&m.member_id) {
                return None;
            }
            g.target.insert(m.member_id.clone(), assignment(&m.target));
            g.members.insert(
                m.member_id.clone(),
                ShareMember {
                    member_id: m.member_id,
                    rack_id: m.rack_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    subscribed_topic_names: m.subscribed_topic_names.into_iter().collect(),
                    member_epoch: m.member_epoch,
                    assigned: assignment(&m.assigned),
                    last_sent: None,
                    session_deadline_ms,
                },
            );
        }
        g.persisted = Some(g.fingerprint());
        Some(g)
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.members.values().map(|m| m.session_deadline_ms).min()
    }

    /// Removes members whose session ran out; returns their ids.
    pub fn tick(&mut self, now_ms: u64, topics: &TopicsSnapshot) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            self.members.remove(id);
        }
        self.maybe_reassign(!expired.is_empty(), topics);
        expired
    }

    pub fn describe(&self) -> GroupDescription {
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state(),
            group_type: GroupType::Share,
            protocol_type: "share".to_string(),
            protocol_name: String::new(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: "simple".to_string(),
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    assigned: to_vec(&m.assigned),
                    target: to_vec(&m.assigned),
                    ..MemberDescription::default()
                })
                .collect(),
        }
    }

    pub fn subscribed_topics(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed_topic_names.iter())
            .collect();
        set.into_iter().cloned().collect()
    }
}
