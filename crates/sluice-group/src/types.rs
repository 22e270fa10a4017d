//! Request, response and description types shared by both protocols.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A topic id (Kafka `Uuid`, 16 raw bytes).
pub type TopicId = [u8; 16];

/// Coordinator settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: how long a rebalance of an empty
    /// classic group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// Maximum members per group (both protocols).
    pub max_group_size: usize,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: i32,
    /// Server assignor used when no member asks for one: `"uniform"` or `"range"`.
    pub default_consumer_assignor: String,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_group_size: 1000,
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45000,
            default_consumer_assignor: "uniform".to_string(),
        }
    }
}

/// Classic JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty on the first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// v0 clients: pass the session timeout.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// `(protocol name, metadata)` in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: a first join gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// Classic JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResponse {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Only filled for the leader.
    pub members: Vec<JoinMember>,
}

/// One member as shown to the leader in a JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Vec<u8>,
}

/// Classic SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Leader only: `(member id, assignment bytes)`.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// Classic SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

/// Classic Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member of a LeaveGroup request (v3+ batches several).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// Result of [`crate::GroupCoordinator::leave`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaveResult {
    /// Top-level error.
    pub error: i16,
    /// Per-member errors, in request order.
    pub members: Vec<(LeavingMember, i16)>,
    /// Parked requests completed by the departures.
    pub outputs: Vec<Output>,
}

/// A response to a parked request, identified by the caller's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Join { token: u64, response: JoinResponse },
    Sync { token: u64, response: SyncResponse },
}

impl Output {
    /// The token of the request this answers.
    pub fn token(&self) -> u64 {
        match self {
            Output::Join { token, .. } | Output::Sync { token, .. } => *token,
        }
    }
}

/// Group state as reported by ListGroups / DescribeGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
    Assigning,
    Reconciling,
}

impl GroupState {
    /// Kafka's wire name of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
        }
    }
}

/// Which rebalance protocol a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupType {
    Classic,
    Consumer,
    /// KIP-932: members share partitions; records are locked one by one.
    Share,
}

impl GroupType {
    /// Kafka's wire name of the type.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
            GroupType::Share => "share",
        }
    }
}

/// One row of ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
    pub group_type: GroupType,
}

/// DescribeGroups / ConsumerGroupDescribe data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub group_type: GroupType,
    pub protocol_type: String,
    /// Classic: the chosen protocol while Stable, else "" (as Kafka).
    pub protocol_name: String,
    /// Classic: the generation id.
    pub group_epoch: i32,
    /// Classic: the generation id; consumer: the target assignment epoch.
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<MemberDescription>,
}

/// One member of a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    /// Classic: the chosen protocol's metadata (only while Stable, as Kafka).
    pub metadata: Vec<u8>,
    /// Classic: the synced assignment bytes (only while Stable, as Kafka).
    pub assignment: Vec<u8>,
    pub subscribed_topic_names: Vec<String>,
    /// KIP-848: the member's subscription regex, if any.
    pub subscribed_topic_regex: Option<String>,
    /// KIP-848: the partitions the member currently has.
    pub assigned: Vec<(TopicId, Vec<i32>)>,
    /// KIP-848: the member's target assignment.
    pub target: Vec<(TopicId, Vec<i32>)>,
}

/// Metadata of one topic, as the broker currently knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: TopicId,
    pub partitions: i32,
}

/// All topics known to the broker, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicsSnapshot {
    pub topics: BTreeMap<String, TopicInfo>,
    /// For every subscription regex in use (see `GroupCoordinator::regexes_in_use`), the
    /// topic names it matches. The broker does the matching; this crate stays free of a regex
    /// engine.
    pub regex_matches: BTreeMap<String, BTreeSet<String>>,
}

/// KIP-848 ConsumerGroupHeartbeat request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerHeartbeat {
    pub group_id: String,
    pub member_id: String,
    /// 0 = join, -1 = leave, -2 = static member leaving temporarily.
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when not sent.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `Some("")` clears the member's regex; `None` leaves it unchanged. The broker validates
    /// the syntax and puts its matches in the `TopicsSnapshot`.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned_partitions: Option<Vec<(TopicId, Vec<i32>)>>,
    pub client_id: String,
    pub client_host: String,
}

/// KIP-848 ConsumerGroupHeartbeat response (success case).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// `Some` only when the assignment changed since it was last sent, on
    /// a join, or on a full request (as Kafka).
    pub assignment: Option<Vec<(TopicId, Vec<i32>)>>,
}

/// KIP-932 ShareGroupHeartbeat request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareHeartbeat {
    pub group_id: String,
    /// Generated by the client (a UUID), kept for the consumer's lifetime.
    pub member_id: String,
    /// 0 = join, -1 = leave, otherwise the epoch last received.
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    /// `None` = unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

/// KIP-932 ShareGroupHeartbeat response (success case).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// `Some` when the assignment changed since it was last sent, or on a join.
    pub assignment: Option<Vec<(TopicId, Vec<i32>)>>,
}

/// A classic group as the coordinator persists it (Kafka's `GroupMetadataValue` in
/// `__consumer_offsets`): written when a generation completes (the leader's assignment is in)
/// or a static member is replaced, deleted when the group empties. A coordinator that loads
/// the group again (a restart, a failover) restores it Stable with these members, so they go
/// on heartbeating and committing with their generation instead of rejoining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicGroupRecord {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: Vec<ClassicMemberRecord>,
}

/// One member of a [`ClassicGroupRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicMemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<ProtocolRecord>,
    #[serde(with = "base64_bytes")]
    pub assignment: Vec<u8>,
}

/// A protocol a member supports and its metadata (the subscription, for consumers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolRecord {
    pub name: String,
    #[serde(with = "base64_bytes")]
    pub metadata: Vec<u8>,
}

/// A KIP-848 consumer group as persisted (Kafka keeps it as ConsumerGroupMetadata,
/// ConsumerGroupMemberMetadata, target and current assignment records in `__consumer_offsets`;
/// Sluice as one record per group): written whenever a heartbeat or a timer changes what it
/// holds, deleted when the group empties. A coordinator that loads the group again restores
/// its epochs, target and members (with their epochs and partitions), so they go on
/// heartbeating with their member epoch instead of rejoining and being reassigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupRecord {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    /// The subscribed topics that existed, as last seen (name, id, partition count).
    pub topics: Vec<(String, TopicId, i32)>,
    pub members: Vec<ConsumerMemberRecord>,
}

/// A topic's partitions, as in a [`ConsumerMemberRecord`].
pub type PartitionsRecord = Vec<(TopicId, Vec<i32>)>;

/// One member of a [`ConsumerGroupRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub regex_topics: Vec<String>,
    pub server_assignor: Option<String>,
    /// 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: u8,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub assigned: PartitionsRecord,
    pub pending_revocation: PartitionsRecord,
    /// The member's part of the target assignment.
    pub target: PartitionsRecord,
}

/// A share group's membership as persisted (Kafka's ShareGroup* records), written whenever a
/// heartbeat or a timer changes it, deleted when the group empties. Restored, its members go
/// on with their member epochs and assignments instead of rejoining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareGroupRecord {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The session timeout its members last heartbeated with (restored sessions use it).
    pub session_timeout_ms: i32,
    /// The subscribed topics as last assigned (name, id, partition count).
    pub topics: Vec<(String, TopicId, i32)>,
    pub members: Vec<ShareMemberRecord>,
}

/// One member of a [`ShareGroupRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMemberRecord {
    pub member_id: String,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub member_epoch: i32,
    pub assigned: PartitionsRecord,
    pub target: PartitionsRecord,
}

/// A change of a group's persisted record: written (`Some`) or deleted (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecordChange {
    Classic(Option<ClassicGroupRecord>),
    Consumer(Option<ConsumerGroupRecord>),
    Share(Option<ShareGroupRecord>),
}

/// Opaque bytes as base64 in JSON (`#[serde(with = "sluice_group::base64_bytes")]`): a third
/// of the size of a number array. Used by the group records and the share RPC's batches.
pub mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}
