//! Membership in a classic consumer group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with
//! the "range" assignor run on this client when the coordinator makes it the leader.
//!
//! The caller drives it: `join`, then `heartbeat` every [`GroupMember::heartbeat_interval`];
//! when a heartbeat says the group is rebalancing, commit what was consumed and `rejoin`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    join_group_request::JoinGroupRequestProtocol, leave_group_request::MemberIdentity,
    sync_group_request::SyncGroupRequestAssignment, ApiKey, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::assignment::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assign,
    Assignment, PROTOCOL_TYPE, RANGE,
};
use crate::client::Client;
use crate::error::{check, error_name, Error, Result};

const MEMBER_ID_REQUIRED: i16 = 79;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const REBALANCE_IN_PROGRESS: i16 = 27;
const FENCED_INSTANCE_ID: i16 = 82;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;

/// How many JoinGroup/SyncGroup rounds to try before giving up on a group that never settles.
const MAX_JOIN_ATTEMPTS: usize = 20;

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Stable,
    /// The group is rebalancing or forgot us: commit, then call [`GroupMember::rejoin`].
    Rejoin,
}

pub struct GroupMember {
    group: String,
    topics: Vec<String>,
    coordinator: String,
    member_id: String,
    generation: i32,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    assignment: Assignment,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl GroupMember {
    /// Finds the coordinator and joins `group` subscribed to `topics`.
    pub async fn join(client: &mut Client, group: &str, topics: Vec<String>) -> Result<Self> {
        let coordinator = client.find_coordinator(group).await?;
        let mut m = GroupMember {
            group: group.to_owned(),
            topics,
            coordinator,
            member_id: String::new(),
            generation: -1,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            assignment: Assignment::new(),
        };
        m.rejoin(client).await?;
        Ok(m)
    }

    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn coordinator(&self) -> &str {
        &self.coordinator
    }

    /// A third of the session timeout, as Kafka's clients do.
    pub fn heartbeat_interval(&self) -> Duration {
        self.session_timeout / 3
    }

    /// Joins (again) and waits for this member's assignment.
    pub async fn rejoin(&mut self, client: &mut Client) -> Result<()> {
        let mut last = None;
        for attempt in 0..MAX_JOIN_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match self.join_once(client).await {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(e) => match e.kafka_code() {
                    Some(
                        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS,
                    ) => {
                        self.coordinator = client.find_coordinator(&self.group).await?;
                        last = Some(e);
                    }
                    _ => return Err(e),
                },
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::Invalid(format!(
                "group {} did not settle after {MAX_JOIN_ATTEMPTS} join attempts",
                self.group
            ))
        }))
    }

    /// One JoinGroup + SyncGroup round. `Ok(false)`: go round again.
    async fn join_once(&mut self, client: &mut Client) -> Result<bool> {
        let version = client.version(&self.coordinator, ApiKey::JoinGroup).await?;
        let mut req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_session_timeout_ms(millis(self.session_timeout))
            .with_member_id(s(&self.member_id))
            .with_protocol_type(s(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s(RANGE))
                .with_metadata(
                    encode_subscription(&self.topics).map_err(Error::Invalid)?,
                )]);
        if version >= 1 {
            req.rebalance_timeout_ms = millis(self.rebalance_timeout);
        }
        // The coordinator holds JoinGroup until every member has rejoined.
        let bound = self.rebalance_timeout + client.config().request_timeout;
        let resp = client
            .connection(&self.coordinator)
            .await?
            .send_with_timeout(&req, bound)
            .await?;
        match resp.error_code {
            MEMBER_ID_REQUIRED => {
                // KIP-394: the coordinator hands out the id; join again with it.
                self.member_id = resp.member_id.to_string();
                return Ok(false);
            }
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(false);
            }
            REBALANCE_IN_PROGRESS => return Ok(false),
            code => check(code, None, || format!("join group {}", self.group))?,
        }
        self.generation = resp.generation_id;
        self.member_id = resp.member_id.to_string();
        if let Some(p) = &resp.protocol_name {
            if p.as_str() != RANGE {
                return Err(Error::Invalid(format!(
                    "group {} chose assignor {p}; this client only speaks {RANGE}",
                    self.group
                )));
            }
        }
        let assignments = if resp.leader.as_str() == self.member_id && !resp.skip_assignment {
            let subs: BTreeMap<String, Bytes> = resp
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), m.metadata.clone()))
                .collect();
            self.assign(client, subs).await?
        } else {
            Vec::new()
        };
        let sync_version = client.version(&self.coordinator, ApiKey::SyncGroup).await?;
        let mut sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id))
            .with_assignments(assignments);
        if sync_version >= 5 {
            sync.protocol_type = Some(s(PROTOCOL_TYPE));
            sync.protocol_name = Some(s(RANGE));
        }
        let resp = client
            .connection(&self.coordinator)
            .await?
            .send_with_timeout(&sync, bound)
            .await?;
        match resp.error_code {
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => return Ok(false),
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(false);
            }
            code => check(code, None, || format!("sync group {}", self.group))?,
        }
        self.assignment = decode_assignment(resp.assignment).map_err(|e| Error::Protocol {
            addr: self.coordinator.clone(),
            detail: format!("bad assignment from the group leader: {e}"),
        })?;
        Ok(true)
    }

    /// The leader's job: decode every member's subscription and assign with "range".
    async fn assign(
        &mut self,
        client: &mut Client,
        metadata: BTreeMap<String, Bytes>,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (member, data) in metadata {
            let topics = decode_subscription(data).map_err(|e| Error::Protocol {
                addr: self.coordinator.clone(),
                detail: format!("bad subscription from member {member}: {e}"),
            })?;
            subs.insert(member, topics);
        }
        let mut all: Vec<String> = subs.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        let md = client.metadata(Some(&all), false).await?;
        let counts: HashMap<String, i32> = md
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        range_assign(&subs, &counts)
            .into_iter()
            .map(|(member, a)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(encode_assignment(&a).map_err(Error::Invalid)?))
            })
            .collect()
    }

    pub async fn heartbeat(&mut self, client: &mut Client) -> Result<HeartbeatOutcome> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id));
        let resp = client.send(&self.coordinator, &req).await?;
        match resp.error_code {
            0 => Ok(HeartbeatOutcome::Stable),
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => Ok(HeartbeatOutcome::Rejoin),
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                Ok(HeartbeatOutcome::Rejoin)
            }
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.coordinator = client.find_coordinator(&self.group).await?;
                Ok(HeartbeatOutcome::Rejoin)
            }
            FENCED_INSTANCE_ID => Err(Error::Invalid(format!(
                "heartbeat to group {}: {}",
                self.group,
                error_name(FENCED_INSTANCE_ID)
            ))),
            code => check(code, None, || format!("heartbeat to group {}", self.group))
                .map(|()| HeartbeatOutcome::Stable),
        }
    }

    /// Commits offsets under this member's generation. Offsets are the next record to read.
    pub async fn commit(
        &mut self,
        client: &mut Client,
        offsets: &[(String, i32, i64)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let coordinator = self.coordinator.clone();
        client
            .commit_offsets(
                &coordinator,
                &self.group,
                self.generation,
                &self.member_id,
                offsets,
            )
            .await
    }

    /// Leaves the group so the others rebalance at once instead of after the session timeout.
    pub async fn leave(&mut self, client: &mut Client) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let version = client
            .version(&self.coordinator, ApiKey::LeaveGroup)
            .await?;
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(s(&self.group)));
        if version >= 3 {
            req.members = vec![MemberIdentity::default().with_member_id(s(&self.member_id))];
        } else {
            req.member_id = s(&self.member_id);
        }
        let resp = client.send(&self.coordinator, &req).await?;
        check(resp.error_code, None, || {
            format!("leave group {}", self.group)
        })?;
        for m in &resp.members {
            check(m.error_code, None, || format!("leave group {}", self.group))?;
        }
        self.member_id.clear();
        Ok(())
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
