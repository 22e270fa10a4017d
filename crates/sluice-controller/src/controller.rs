//! The controller: decides metadata records from requests, the current image and a clock.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::error::{codes, err, ControllerError};
use crate::image::{ClusterImage, PartitionInfo};
use crate::placement::assign_replicas;
use crate::record::{
    EntityName, ListenerEndpoint, MetadataRecord, NodeId, QuotaEntity, QuotaValue,
    ScramCredentialInfo, NO_LEADER,
};

/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 9_000;
/// Kafka's `leader.imbalance.check.interval.seconds` default (300 s), in ms.
pub const DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS: i64 = 300_000;
/// Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`: producer ids handed out per request.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;
/// Kafka's `num.partitions` default.
pub const DEFAULT_NUM_PARTITIONS: i32 = 1;
/// The most partitions one topic may have (one creation writes all of them in one log
/// entry: about 150 bytes each). The same bound as the broker's
/// `limits::MAX_PARTITIONS_PER_TOPIC`, which checks requests before they reach the controller.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
/// The most preferred-leader elections one auto-rebalance pass proposes (Kafka's
/// `maxElectionsPerImbalance`).
pub const MAX_AUTO_ELECTIONS_PER_PASS: usize = 1_000;
/// The longest host name, rack or cluster address a broker may register with.
pub const MAX_REGISTRATION_STRING_LEN: usize = 255;
/// The most config entries of one topic or group.
pub const MAX_CONFIG_ENTRIES: usize = 1_024;
/// The longest config key.
pub const MAX_CONFIG_KEY_LEN: usize = 255;
/// The longest config value.
pub const MAX_CONFIG_VALUE_LEN: usize = 65_536;
/// The longest group id (Kafka's protocol STRING limit).
pub const MAX_GROUP_ID_LEN: usize = 32_767;
/// Kafka's longest topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The most client-quota entities a cluster holds (each distinct user / client-id pair with
/// quotas set).
pub const MAX_CLIENT_QUOTA_ENTITIES: usize = 10_000;
/// The most Kafka listeners one broker registers.
pub const MAX_LISTENERS: usize = 16;
/// The most users with SCRAM credentials a cluster holds (every node keeps them all in memory).
pub const MAX_SCRAM_USERS: usize = 100_000;
/// The most quota keys on one entity (Kafka knows four).
pub const MAX_CLIENT_QUOTA_KEYS: usize = 8;
/// The longest user or client-id name a quota may be set on (Kafka's protocol STRING limit).
pub const MAX_QUOTA_NAME_LEN: usize = 32_767;

/// Settings of the controller (Kafka's names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker that has not heartbeaten for this long is fenced.
    pub session_timeout_ms: i64,
    /// `default.replication.factor`; `None` = min(3, usable brokers).
    pub default_replication_factor: Option<i16>,
    /// `num.partitions`.
    pub default_num_partitions: i32,
    /// `unclean.leader.election.enable`, the cluster default of the topic config.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// Producer ids per AllocateProducerIds block.
    pub producer_id_block_size: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            default_replication_factor: None,
            default_num_partitions: DEFAULT_NUM_PARTITIONS,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS,
            producer_id_block_size: PRODUCER_ID_BLOCK_SIZE,
        }
    }
}

/// A controller decision: the reply and the records to commit before sending it.
pub type Decision<R> = Result<(R, Vec<MetadataRecord>), ControllerError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBrokerRequest {
    pub node_id: NodeId,
    pub incarnation_id: Uuid,
    pub kafka_host: String,
    pub kafka_port: i32,
    pub cluster_addr: String,
    pub rack: Option<String>,
    /// The advertised HTTP address (`host:port`), if any.
    pub http_addr: Option<String>,
    /// Every advertised Kafka listener.
    pub listeners: Vec<ListenerEndpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub node_id: NodeId,
    pub broker_epoch: i64,
    /// The last metadata log index the broker has applied.
    pub metadata_offset: i64,
    pub want_fence: bool,
    pub want_shutdown: bool,
}

/// The heartbeat answer, as of after the decision's records apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The broker has applied the metadata log up to its own registration.
    pub is_caught_up: bool,
    pub is_fenced: bool,
    /// Controlled shutdown is complete: the broker leads nothing and may stop.
    pub should_shut_down: bool,
}

/// One member of a proposed ISR (KIP-903): its id and the broker epoch the leader saw it
/// fetch with (-1: not checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    pub broker_id: NodeId,
    pub broker_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    pub broker_id: NodeId,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<IsrMember>,
}

/// The partition after the change (or as it is, when nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionReply {
    /// 0, or NEW_LEADER_ELECTED when the change completed a reassignment that moved the
    /// leadership away from the requester (the records must still be committed).
    pub error_code: i16,
    pub leader: NodeId,
    pub isr: Vec<NodeId>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicRequest {
    pub name: String,
    /// Chosen by the caller (the controller draws no randomness); must not be nil.
    pub id: Uuid,
    /// `None` or -1: `num.partitions`.
    pub num_partitions: Option<i32>,
    /// `None` or -1: the default replication factor.
    pub replication_factor: Option<i16>,
    /// Manual assignment: the replicas of each partition.
    pub assignments: Option<Vec<Vec<NodeId>>>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicReply {
    pub id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// A topic named by name or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// Kafka's `ElectionType` (same values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    Preferred = 0,
    Unclean = 1,
}

/// Per-partition outcome of ElectLeaders / AlterPartitionReassignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub error: Option<ControllerError>,
}

/// An ongoing reassignment (ListPartitionReassignments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentInfo {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<NodeId>,
    pub adding_replicas: Vec<NodeId>,
    pub removing_replicas: Vec<NodeId>,
}

/// A block of producer ids: `[first, first + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub len: i64,
}

/// One reassignment the drain helper proposes, or why a partition cannot move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainMove {
    pub topic: String,
    pub partition: i32,
    pub target: Result<Vec<NodeId>, ControllerError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    incarnation_id: Uuid,
    deadline_ms: i64,
}

/// The records decided so far in one request, applied to a copy of the image (made on the
/// first record) so that later decisions of the same request see earlier ones — and every
/// decided record is checked by the very `apply` that will run on every node.
struct Draft<'a> {
    base: &'a ClusterImage,
    owned: Option<ClusterImage>,
    records: Vec<MetadataRecord>,
}

impl<'a> Draft<'a> {
    fn new(base: &'a ClusterImage) -> Self {
        Draft {
            base,
            owned: None,
            records: Vec::new(),
        }
    }

    fn img(&self) -> &ClusterImage {
        self.owned.as_ref().unwrap_or(self.base)
    }

    /// Adds a record if it applies (a record `apply` would ignore is a decision bug; it is
    /// dropped rather than committed).
    fn push(&mut self, record: MetadataRecord) -> bool {
        if self.records.is_empty() {
            self.records.push(MetadataRecord::Guard {
                based_on: self.base.last_applied,
            });
        }
        let img = self.owned.get_or_insert_with(|| {
            let mut img = self.base.clone();
            // The draft applies at the base's own index; a rejection there is not ours.
            img.rejected_index = None;
            img
        });
        let index = img.last_applied;
        let applied = !img.apply(index, &record).is_empty();
        debug_assert!(
            applied,
            "controller decided a record apply ignores: {record:?}"
        );
        if applied {
            self.records.push(record);
        }
        applied
    }

    /// The records: empty, or a [`MetadataRecord::Guard`] and at least one more.
    fn into_records(mut self) -> Vec<MetadataRecord> {
        if self.records.len() == 1 {
            self.records.clear();
        }
        self.records
    }

    fn finish<R>(self, reply: R) -> Decision<R> {
        Ok((reply, self.into_records()))
    }
}

/// How a leader is chosen (Kafka's `PartitionChangeBuilder.Election`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Election {
    /// Keep the leader if it is still valid, else the first valid replica in replica order.
    Online,
    /// The preferred replica if valid, else as `Online`.
    Preferred,
    /// As `Online`; if no ISR member is valid, the first acceptable replica (ISR := {it}).
    Unclean,
}

/// The target state of a partition change (Kafka's `PartitionChangeBuilder` inputs).
struct Target {
    isr: Vec<NodeId>,
    replicas: Vec<NodeId>,
    adding: Vec<NodeId>,
    removing: Vec<NodeId>,
}

impl Target {
    fn of(p: &PartitionInfo) -> Self {
        Target {
            isr: p.isr.clone(),
            replicas: p.replicas.clone(),
            adding: p.adding_replicas.clone(),
            removing: p.removing_replicas.clone(),
        }
    }
}

/// Kafka's `PartitionChangeBuilder.build` without ELR: completes a reassignment when every
/// target replica is in the target ISR, elects, bumps the leader epoch when replicas leave,
/// and returns the change (None when nothing changes). An empty target ISR keeps the ISR as
/// it is (the last in-sync replica stays, leaderless, so it can come back as leader).
fn build_change(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionInfo,
    mut t: Target,
    election: Election,
    acceptable: &dyn Fn(NodeId) -> bool,
) -> Option<MetadataRecord> {
    // Complete the reassignment if every target replica is in sync.
    if !t.adding.is_empty() || !t.removing.is_empty() {
        let isr: Vec<NodeId> = t
            .isr
            .iter()
            .copied()
            .filter(|r| !t.removing.contains(r))
            .collect();
        let replicas: Vec<NodeId> = t
            .replicas
            .iter()
            .copied()
            .filter(|r| !t.removing.contains(r))
            .collect();
        if !isr.is_empty() && !replicas.is_empty() && replicas.iter().all(|r| isr.contains(r)) {
            t.isr = isr;
            t.replicas = replicas;
            t.adding.clear();
            t.removing.clear();
        }
    }
    // Elect.
    let valid = |r: NodeId| r != NO_LEADER && t.isr.contains(&r) && acceptable(r);
    let first_valid = |skip: usize| t.replicas.iter().skip(skip).copied().find(|&r| valid(r));
    let (leader, unclean) = match election {
        Election::Preferred => {
            let preferred = t.replicas.first().copied().unwrap_or(NO_LEADER);
            if valid(preferred) {
                (preferred, false)
            } else if valid(p.leader) {
                (p.leader, false)
            } else {
                (first_valid(1).unwrap_or(NO_LEADER), false)
            }
        }
        Election::Online | Election::Unclean => {
            if valid(p.leader) {
                (p.leader, false)
            } else if let Some(r) = first_valid(0) {
                (r, false)
            } else if election == Election::Unclean {
                match t.replicas.iter().copied().find(|&r| acceptable(r)) {
                    Some(r) => (r, true),
                    None => (NO_LEADER, false),
                }
            } else {
                (NO_LEADER, false)
            }
        }
    };
    let mut new_leader = None;
    if leader != p.leader {
        new_leader = Some(leader);
        if unclean {
            t.isr = vec![leader];
        }
    }
    // Replicas leaving: bump the leader epoch so they stop fetching as followers of it.
    if new_leader.is_none() && !p.replicas.iter().all(|r| t.replicas.contains(r)) {
        new_leader = Some(p.leader);
    }
    let isr = (!t.isr.is_empty() && t.isr != p.isr).then_some(t.isr);
    let replicas = (t.replicas != p.replicas).then_some(t.replicas);
    let adding = (t.adding != p.adding_replicas).then_some(t.adding);
    let removing = (t.removing != p.removing_replicas).then_some(t.removing);
    if new_leader.is_none()
        && isr.is_none()
        && replicas.is_none()
        && adding.is_none()
        && removing.is_none()
    {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition,
        expected_partition_epoch: p.partition_epoch,
        leader: new_leader,
        isr,
        replicas,
        adding_replicas: adding,
        removing_replicas: removing,
    })
}

fn distinct(v: &[NodeId]) -> bool {
    let s: BTreeSet<_> = v.iter().collect();
    s.len() == v.len()
}

/// Kafka's topic name rule: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() || name == "." || name == ".." {
        return err(
            codes::INVALID_TOPIC_EXCEPTION,
            format!("invalid topic name '{name}'"),
        );
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return err(
            codes::INVALID_TOPIC_EXCEPTION,
            format!("topic name longer than {MAX_TOPIC_NAME_LEN} characters"),
        );
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return err(
            codes::INVALID_TOPIC_EXCEPTION,
            format!("topic name '{name}' has characters other than [a-zA-Z0-9._-]"),
        );
    }
    Ok(())
}

fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), ControllerError> {
    if configs.len() > MAX_CONFIG_ENTRIES {
        return err(
            codes::INVALID_CONFIG,
            format!("more than {MAX_CONFIG_ENTRIES} configs"),
        );
    }
    for (k, v) in configs {
        if k.is_empty() || k.len() > MAX_CONFIG_KEY_LEN || v.len() > MAX_CONFIG_VALUE_LEN {
            return err(codes::INVALID_CONFIG, format!("invalid config entry '{k}'"));
        }
    }
    Ok(())
}

/// The controller (runs on the metadata quorum's leader). Its only state is the broker
/// sessions (heartbeat deadlines) and the placement seed; everything else is in the image.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    sessions: BTreeMap<NodeId, Session>,
    rng: u64,
    next_rebalance_ms: i64,
}

impl Controller {
    /// A controller taking over at `now_ms`: every registered broker gets a fresh session.
    /// `seed` drives replica placement's start index and shift.
    pub fn new(config: ControllerConfig, image: &ClusterImage, now_ms: i64, seed: u64) -> Self {
        let deadline = now_ms.saturating_add(config.session_timeout_ms);
        let sessions = image
            .brokers
            .values()
            .map(|b| {
                (
                    b.node_id,
                    Session {
                        incarnation_id: b.incarnation_id,
                        deadline_ms: deadline,
                    },
                )
            })
            .collect();
        let next_rebalance_ms = now_ms.saturating_add(config.leader_imbalance_check_interval_ms);
        Controller {
            config,
            sessions,
            rng: seed,
            next_rebalance_ms,
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// When `node_id`'s session expires, if it has one.
    pub fn session_deadline(&self, node_id: NodeId) -> Option<i64> {
        self.sessions.get(&node_id).map(|s| s.deadline_ms)
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn touch(&mut self, node_id: NodeId, incarnation_id: Uuid, now_ms: i64) {
        self.sessions.insert(
            node_id,
            Session {
                incarnation_id,
                deadline_ms: now_ms.saturating_add(self.config.session_timeout_ms),
            },
        );
    }

    fn unclean_enabled(&self, image: &ClusterImage, topic_id: &Uuid) -> bool {
        image
            .topic_by_id(topic_id)
            .is_some_and(|t| t.unclean_leader_election(self.config.unclean_leader_election_enable))
    }

    fn check_broker_epoch(
        image: &ClusterImage,
        node_id: NodeId,
        broker_epoch: i64,
    ) -> Result<(), ControllerError> {
        match image.broker(node_id) {
            None => err(
                codes::STALE_BROKER_EPOCH,
                format!("no registration of broker {node_id}"),
            ),
            Some(b) if b.broker_epoch != broker_epoch => err(
                codes::STALE_BROKER_EPOCH,
                format!(
                    "broker {node_id}: expected broker epoch {}, got {broker_epoch}",
                    b.broker_epoch
                ),
            ),
            Some(_) => Ok(()),
        }
    }

    /// Takes inactive brokers (and `exclude`) out of ISRs where another member remains and
    /// moves leaderships off them; elects leaders for leaderless partitions with an active
    /// ISR member (or, with unclean election enabled for the topic, any active replica).
    fn repair(&self, draft: &mut Draft<'_>, exclude: Option<NodeId>) {
        let mut todo = Vec::new();
        for (t, i, p) in draft.img().partitions() {
            let ok = |r: NodeId| Some(r) != exclude && draft.img().is_active(r);
            if p.isr.iter().any(|&r| !ok(r)) || p.leader == NO_LEADER {
                todo.push((t.id, i));
            }
        }
        for (topic_id, i) in todo {
            let unclean = self.unclean_enabled(draft.img(), &topic_id);
            let Some(p) = draft.img().partition(&topic_id, i) else {
                continue;
            };
            let img = draft.img();
            let acceptable = |r: NodeId| Some(r) != exclude && img.is_active(r);
            let mut target = Target::of(p);
            target.isr.retain(|&r| acceptable(r));
            if target.isr.is_empty() {
                // Kafka's rule: take out only the broker being removed, and never the last
                // member (an empty target keeps the ISR as it is).
                target.isr = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|&r| Some(r) != exclude)
                    .collect();
            }
            let election = if unclean {
                Election::Unclean
            } else {
                Election::Online
            };
            if let Some(rec) = build_change(topic_id, i, p, target, election, &acceptable) {
                draft.push(rec);
            }
        }
    }

    // ---- Brokers ----

    /// BrokerRegistration: a new registration of `node_id` (it starts fenced; its broker
    /// epoch is the log index the records commit at). Refused with
    /// DUPLICATE_BROKER_REGISTRATION while another incarnation of the id holds a live session.
    /// A previous registration's ISR memberships and leaderships are moved first.
    pub fn register_broker(
        &mut self,
        image: &ClusterImage,
        now_ms: i64,
        req: &RegisterBrokerRequest,
    ) -> Decision<()> {
        let too_long = |s: &str| s.len() > MAX_REGISTRATION_STRING_LEN;
        if req.node_id < 0
            || req.kafka_host.is_empty()
            || too_long(&req.kafka_host)
            || too_long(&req.cluster_addr)
            || req.rack.as_deref().is_some_and(too_long)
            || req.http_addr.as_deref().is_some_and(too_long)
            || req.listeners.len() > MAX_LISTENERS
            || req
                .listeners
                .iter()
                .any(|l| too_long(&l.name) || too_long(&l.host) || too_long(&l.security_protocol))
            || !(1..=65_535).contains(&req.kafka_port)
        {
            return err(
                codes::INVALID_REGISTRATION,
                format!("invalid registration of broker {}", req.node_id),
            );
        }
        if let Some(existing) = image.broker(req.node_id) {
            let live = !existing.fenced
                && self
                    .sessions
                    .get(&req.node_id)
                    .is_some_and(|s| s.deadline_ms >= now_ms);
            if live && existing.incarnation_id != req.incarnation_id {
                return err(
                    codes::DUPLICATE_BROKER_REGISTRATION,
                    format!("another broker is registered with id {}", req.node_id),
                );
            }
        }
        let mut draft = Draft::new(image);
        if image.broker(req.node_id).is_some() {
            self.repair(&mut draft, Some(req.node_id));
        }
        draft.push(MetadataRecord::RegisterBroker {
            node_id: req.node_id,
            incarnation_id: req.incarnation_id,
            kafka_host: req.kafka_host.clone(),
            kafka_port: req.kafka_port,
            cluster_addr: req.cluster_addr.clone(),
            rack: req.rack.clone(),
            http_addr: req.http_addr.clone(),
            listeners: req.listeners.clone(),
        });
        self.touch(req.node_id, req.incarnation_id, now_ms);
        draft.finish(())
    }

    /// BrokerHeartbeat: renews the session; unfences a caught-up broker (`metadata_offset` ≥
    /// its registration index) and elects it where it is the only way back for a leaderless
    /// partition; fences on `want_fence`; `want_shutdown` starts a controlled shutdown (its
    /// leaderships move, it leaves ISRs where another member remains) and answers
    /// `should_shut_down` once it leads nothing.
    pub fn heartbeat(
        &mut self,
        image: &ClusterImage,
        now_ms: i64,
        req: &HeartbeatRequest,
    ) -> Decision<HeartbeatReply> {
        Self::check_broker_epoch(image, req.node_id, req.broker_epoch)?;
        let Some(b) = image.broker(req.node_id) else {
            return err(codes::STALE_BROKER_EPOCH, "not registered");
        };
        self.touch(req.node_id, b.incarnation_id, now_ms);
        let node = req.node_id;
        let is_caught_up = req.metadata_offset >= b.broker_epoch;
        let mut draft = Draft::new(image);
        if req.want_shutdown {
            if !b.fenced {
                self.repair(&mut draft, Some(node));
                if !b.in_controlled_shutdown {
                    draft.push(MetadataRecord::ControlledShutdown {
                        node_id: node,
                        broker_epoch: b.broker_epoch,
                    });
                }
            }
        } else if req.want_fence {
            if !b.fenced {
                self.repair(&mut draft, Some(node));
                draft.push(MetadataRecord::FenceBroker {
                    node_id: node,
                    broker_epoch: b.broker_epoch,
                });
            }
        } else if b.fenced && !b.in_controlled_shutdown && is_caught_up {
            draft.push(MetadataRecord::UnfenceBroker {
                node_id: node,
                broker_epoch: b.broker_epoch,
            });
            self.repair(&mut draft, None);
        }
        let after = draft.img();
        let fenced = after.broker(node).is_none_or(|b| b.fenced);
        let leads_nothing = !after.partitions().any(|(_, _, p)| p.leader == node);
        let reply = HeartbeatReply {
            is_caught_up,
            is_fenced: fenced,
            should_shut_down: req.want_shutdown && leads_nothing,
        };
        draft.finish(reply)
    }

    /// The periodic work: fences brokers whose session expired (moving their leaderships),
    /// elects leaders for leaderless partitions that can have one again, and (with
    /// `auto.leader.rebalance.enable`) moves leaderships back to preferred replicas every
    /// `leader.imbalance.check.interval`.
    pub fn tick(&mut self, image: &ClusterImage, now_ms: i64) -> Vec<MetadataRecord> {
        // Sessions follow the registrations.
        self.sessions.retain(|id, _| image.brokers.contains_key(id));
        for b in image.brokers.values() {
            if !self.sessions.contains_key(&b.node_id) {
                self.touch(b.node_id, b.incarnation_id, now_ms);
            }
        }
        let mut draft = Draft::new(image);
        let expired: Vec<(NodeId, i64)> = image
            .brokers
            .values()
            .filter(|b| {
                !b.fenced
                    && self
                        .sessions
                        .get(&b.node_id)
                        .is_some_and(|s| s.deadline_ms < now_ms)
            })
            .map(|b| (b.node_id, b.broker_epoch))
            .collect();
        for (node_id, broker_epoch) in expired {
            self.repair(&mut draft, Some(node_id));
            draft.push(MetadataRecord::FenceBroker {
                node_id,
                broker_epoch,
            });
        }
        self.repair(&mut draft, None);
        if self.config.auto_leader_rebalance_enable && now_ms >= self.next_rebalance_ms {
            self.next_rebalance_ms =
                now_ms.saturating_add(self.config.leader_imbalance_check_interval_ms);
            let todo: Vec<(Uuid, i32)> = draft
                .img()
                .partitions()
                .filter(|(_, _, p)| {
                    let pref = p.preferred_leader();
                    p.leader != pref && p.isr.contains(&pref) && draft.img().is_active(pref)
                })
                .map(|(t, i, _)| (t.id, i))
                .take(MAX_AUTO_ELECTIONS_PER_PASS)
                .collect();
            for (topic_id, i) in todo {
                let img = draft.img();
                let Some(p) = img.partition(&topic_id, i) else {
                    continue;
                };
                let acceptable = |r: NodeId| img.is_active(r);
                if let Some(rec) = build_change(
                    topic_id,
                    i,
                    p,
                    Target::of(p),
                    Election::Preferred,
                    &acceptable,
                ) {
                    draft.push(rec);
                }
            }
        }
        draft.into_records()
    }

    /// UnregisterBroker: removes a node id; refused (INVALID_REQUEST) while it still hosts
    /// replicas (drain it first: [`Self::drain_plan`]).
    pub fn unregister_broker(&mut self, image: &ClusterImage, node_id: NodeId) -> Decision<()> {
        if image.broker(node_id).is_none() {
            return err(
                codes::BROKER_ID_NOT_REGISTERED,
                format!("broker {node_id} is not registered"),
            );
        }
        let hosted = image.partitions_hosted_by(node_id).len();
        if hosted > 0 {
            return err(
                codes::INVALID_REQUEST,
                format!("broker {node_id} still hosts {hosted} replica(s); drain it first"),
            );
        }
        self.sessions.remove(&node_id);
        let mut draft = Draft::new(image);
        draft.push(MetadataRecord::UnregisterBroker { node_id });
        draft.finish(())
    }

    /// Marks a node as draining (placement skips it) or not.
    pub fn set_draining(
        &mut self,
        image: &ClusterImage,
        node_id: NodeId,
        draining: bool,
    ) -> Decision<()> {
        match image.broker(node_id) {
            None => err(
                codes::BROKER_ID_NOT_REGISTERED,
                format!("broker {node_id} is not registered"),
            ),
            Some(b) if b.draining == draining => Ok(((), Vec::new())),
            Some(_) => {
                let mut draft = Draft::new(image);
                draft.push(MetadataRecord::SetDraining { node_id, draining });
                draft.finish(())
            }
        }
    }

    /// The reassignments that move every replica of `node_id` elsewhere: each partition's
    /// (target) replicas with `node_id` replaced by an active, non-draining broker not already
    /// a replica — the same rack first, then the one hosting the fewest replicas (counting the
    /// moves planned so far), then the lowest id. Feed the targets to
    /// [`Self::alter_partition_reassignments`].
    pub fn drain_plan(&self, image: &ClusterImage, node_id: NodeId) -> Vec<DrainMove> {
        let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (_, _, p) in image.partitions() {
            for r in &p.replicas {
                *load.entry(*r).or_default() += 1;
            }
        }
        let rack = image.broker(node_id).and_then(|b| b.rack.clone());
        let mut out = Vec::new();
        for (t, i, p) in image.partitions() {
            let target = p.target_replicas();
            let Some(pos) = target.iter().position(|&r| r == node_id) else {
                continue;
            };
            let candidate = image
                .brokers
                .values()
                .filter(|b| {
                    b.node_id != node_id
                        && b.is_active()
                        && !b.draining
                        && !p.replicas.contains(&b.node_id)
                })
                .min_by_key(|b| {
                    (
                        b.rack != rack,
                        load.get(&b.node_id).copied().unwrap_or(0),
                        b.node_id,
                    )
                })
                .map(|b| b.node_id);
            let target = match candidate {
                Some(c) => {
                    *load.entry(c).or_default() += 1;
                    let mut v = target.clone();
                    if let Some(slot) = v.get_mut(pos) {
                        *slot = c;
                    }
                    Ok(v)
                }
                None => err(
                    codes::INVALID_REPLICATION_FACTOR,
                    format!("no active broker to move {}-{i} to", t.name),
                ),
            };
            out.push(DrainMove {
                topic: t.name.clone(),
                partition: i,
                target,
            });
        }
        out
    }

    // ---- Topics ----

    fn usable_brokers(image: &ClusterImage) -> Vec<(NodeId, Option<String>)> {
        image
            .brokers
            .values()
            .filter(|b| b.is_active() && !b.draining)
            .map(|b| (b.node_id, b.rack.clone()))
            .collect()
    }

    fn validate_manual(
        image: &ClusterImage,
        replicas: &[NodeId],
        rf: Option<usize>,
    ) -> Result<(), ControllerError> {
        if replicas.is_empty() {
            return err(codes::INVALID_REPLICA_ASSIGNMENT, "empty replica list");
        }
        if !distinct(replicas) {
            return err(
                codes::INVALID_REPLICA_ASSIGNMENT,
                "a broker appears more than once in a replica list",
            );
        }
        if let Some(r) = replicas.iter().find(|r| image.broker(**r).is_none()) {
            return err(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!("broker {r} is not registered"),
            );
        }
        if rf.is_some_and(|rf| rf != replicas.len()) {
            return err(
                codes::INVALID_REPLICA_ASSIGNMENT,
                "replica lists of different lengths",
            );
        }
        Ok(())
    }

    fn place(
        &mut self,
        image: &ClusterImage,
        n: i32,
        rf: i16,
        start_partition_id: i32,
    ) -> Result<Vec<Vec<NodeId>>, ControllerError> {
        let brokers = Self::usable_brokers(image);
        let start = usize::try_from(self.next_random() % 1_000_003).unwrap_or(0);
        let shift = usize::try_from(self.next_random() % 1_000_003).unwrap_or(0);
        assign_replicas(&brokers, n, rf, start, shift, start_partition_id)
    }

    fn partition_created(
        image: &ClusterImage,
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<NodeId>,
    ) -> Result<MetadataRecord, ControllerError> {
        let isr: Vec<NodeId> = replicas
            .iter()
            .copied()
            .filter(|r| image.is_active(*r))
            .collect();
        let Some(&leader) = isr.first() else {
            return err(
                codes::INVALID_REPLICATION_FACTOR,
                format!("no active broker among the replicas {replicas:?}"),
            );
        };
        Ok(MetadataRecord::PartitionCreated {
            topic_id,
            partition,
            replicas,
            isr,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    /// CreateTopics (one topic). Replicas are placed over the active, non-draining brokers
    /// with Kafka's rack-aware assignment, or taken from `assignments`; each partition's ISR is
    /// its active replicas and its leader the first of them.
    pub fn create_topic(
        &mut self,
        image: &ClusterImage,
        _now_ms: i64,
        req: &CreateTopicRequest,
    ) -> Decision<CreateTopicReply> {
        validate_topic_name(&req.name)?;
        if image.topic(&req.name).is_some() {
            return err(
                codes::TOPIC_ALREADY_EXISTS,
                format!("topic '{}' already exists", req.name),
            );
        }
        if req.id.is_nil() || image.topic_by_id(&req.id).is_some() {
            return err(
                codes::INVALID_REQUEST,
                format!("topic id {} is nil or in use", req.id),
            );
        }
        let canon = req.name.replace('.', "_");
        if let Some(other) = image
            .topic_ids
            .keys()
            .find(|n| n.replace('.', "_") == canon)
        {
            return err(
                codes::INVALID_TOPIC_EXCEPTION,
                format!(
                    "topic '{}' collides with existing topic '{other}'",
                    req.name
                ),
            );
        }
        validate_configs(&req.configs)?;
        let num_partitions = req.num_partitions.filter(|&n| n != -1);
        let replication_factor = req.replication_factor.filter(|&r| r != -1);
        let assignment = match &req.assignments {
            Some(a) => {
                if num_partitions.is_some() || replication_factor.is_some() {
                    return err(
                        codes::INVALID_REQUEST,
                        "both a manual assignment and a partition count or replication factor",
                    );
                }
                if a.is_empty() {
                    return err(codes::INVALID_PARTITIONS, "no partitions");
                }
                if a.len() > usize::try_from(MAX_PARTITIONS_PER_TOPIC).unwrap_or(usize::MAX) {
                    return err(
                        codes::INVALID_PARTITIONS,
                        format!("more than {MAX_PARTITIONS_PER_TOPIC} partitions"),
                    );
                }
                let rf = a.first().map(|r| r.len());
                for replicas in a {
                    Self::validate_manual(image, replicas, rf)?;
                }
                a.clone()
            }
            None => {
                let n = num_partitions.unwrap_or(self.config.default_num_partitions);
                if n < 1 {
                    return err(codes::INVALID_PARTITIONS, "number of partitions below 1");
                }
                if n > MAX_PARTITIONS_PER_TOPIC {
                    return err(
                        codes::INVALID_PARTITIONS,
                        format!("more than {MAX_PARTITIONS_PER_TOPIC} partitions"),
                    );
                }
                let usable = Self::usable_brokers(image).len();
                let rf = replication_factor
                    .or(self.config.default_replication_factor)
                    .unwrap_or_else(|| i16::try_from(usable.min(3)).unwrap_or(3));
                self.place(image, n, rf, 0)?
            }
        };
        let num_partitions = i32::try_from(assignment.len()).unwrap_or(i32::MAX);
        let replication_factor = assignment
            .first()
            .map(|r| i16::try_from(r.len()).unwrap_or(i16::MAX))
            .unwrap_or(0);
        let mut created = Vec::with_capacity(assignment.len());
        for (i, replicas) in assignment.into_iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            created.push(Self::partition_created(image, req.id, i, replicas)?);
        }
        let mut draft = Draft::new(image);
        draft.push(MetadataRecord::TopicCreated {
            name: req.name.clone(),
            id: req.id,
            configs: req.configs.clone(),
        });
        for rec in created {
            draft.push(rec);
        }
        draft.finish(CreateTopicReply {
            id: req.id,
            num_partitions,
            replication_factor,
        })
    }

    /// CreatePartitions: grows `topic` to `total` partitions (INVALID_PARTITIONS unless more
    /// than now), with the topic's replication factor.
    pub fn create_partitions(
        &mut self,
        image: &ClusterImage,
        _now_ms: i64,
        topic: &str,
        total: i32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Decision<()> {
        let Some(t) = image.topic(topic) else {
            return err(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("no topic '{topic}'"),
            );
        };
        let current = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        if total <= current {
            return err(
                codes::INVALID_PARTITIONS,
                format!("topic '{topic}' has {current} partitions; {total} is not more"),
            );
        }
        if total > MAX_PARTITIONS_PER_TOPIC {
            return err(
                codes::INVALID_PARTITIONS,
                format!("more than {MAX_PARTITIONS_PER_TOPIC} partitions"),
            );
        }
        let rf = t
            .partitions
            .first()
            .map(|p| p.target_replicas().len())
            .unwrap_or(1);
        let adding = total - current;
        let assignment = match assignments {
            Some(a) => {
                if usize::try_from(adding).ok() != Some(a.len()) {
                    return err(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!("{} replica lists for {adding} new partitions", a.len()),
                    );
                }
                for replicas in a {
                    Self::validate_manual(image, replicas, Some(rf))?;
                }
                a.to_vec()
            }
            None => {
                let rf = i16::try_from(rf).unwrap_or(i16::MAX);
                self.place(image, adding, rf, current)?
            }
        };
        let id = t.id;
        let mut created = Vec::with_capacity(assignment.len());
        for (k, replicas) in assignment.into_iter().enumerate() {
            let k = i32::try_from(k).unwrap_or(i32::MAX);
            created.push(Self::partition_created(
                image,
                id,
                current.saturating_add(k),
                replicas,
            )?);
        }
        let mut draft = Draft::new(image);
        for rec in created {
            draft.push(rec);
        }
        draft.finish(())
    }

    /// DeleteTopics (one topic).
    pub fn delete_topic(&mut self, image: &ClusterImage, topic: &TopicRef) -> Decision<Uuid> {
        let t = match topic {
            TopicRef::Name(n) => image.topic(n).ok_or_else(|| {
                ControllerError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic '{n}'"))
            })?,
            TopicRef::Id(id) => image.topic_by_id(id).ok_or_else(|| {
                ControllerError::new(codes::UNKNOWN_TOPIC_ID, format!("no topic id {id}"))
            })?,
        };
        let mut draft = Draft::new(image);
        draft.push(MetadataRecord::TopicDeleted {
            name: t.name.clone(),
            id: t.id,
        });
        draft.finish(t.id)
    }

    /// Replaces a topic's configs whole (the broker has validated them). Enabling unclean
    /// leader election elects leaders for its leaderless partitions at once.
    pub fn replace_topic_configs(
        &mut self,
        image: &ClusterImage,
        topic: &str,
        configs: &BTreeMap<String, String>,
    ) -> Decision<()> {
        let Some(t) = image.topic(topic) else {
            return err(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("no topic '{topic}'"),
            );
        };
        validate_configs(configs)?;
        let mut draft = Draft::new(image);
        draft.push(MetadataRecord::TopicConfigsReplaced {
            topic_id: t.id,
            configs: configs.clone(),
        });
        self.repair(&mut draft, None);
        draft.finish(())
    }

    /// Replaces a group's configs whole (an empty map removes them).
    pub fn replace_group_configs(
        &mut self,
        image: &ClusterImage,
        group: &str,
        configs: &BTreeMap<String, String>,
    ) -> Decision<()> {
        if group.is_empty() || group.len() > MAX_GROUP_ID_LEN {
            return err(codes::INVALID_GROUP_ID, "invalid group id");
        }
        validate_configs(configs)?;
        let mut draft = Draft::new(image);
        draft.push(MetadataRecord::GroupConfigsReplaced {
            group: group.to_owned(),
            configs: configs.clone(),
        });
        draft.finish(())
    }

    /// Sets (`Some`) and removes (`None`) quotas of one client-quota entity. The broker checked
    /// the keys; this checks the entity, the values and the bounds. A change that changes
    /// nothing commits nothing.
    pub fn alter_client_quotas(
        &mut self,
        image: &ClusterImage,
        entity: &QuotaEntity,
        changes: &BTreeMap<String, Option<f64>>,
    ) -> Decision<()> {
        if entity.user.is_none() && entity.client_id.is_none() {
            return err(codes::INVALID_REQUEST, "Invalid empty client quota entity");
        }
        for name in [&entity.user, &entity.client_id].into_iter().flatten() {
            if let EntityName::Named(n) = name {
                if n.is_empty() || n.len() > MAX_QUOTA_NAME_LEN {
                    return err(
                        codes::INVALID_REQUEST,
                        format!("quota entity names are 1 to {MAX_QUOTA_NAME_LEN} bytes"),
                    );
                }
            }
        }
        let current = image.client_quotas_of(entity);
        let mut quotas = current.cloned().unwrap_or_default();
        for (key, value) in changes {
            match value {
                None => {
                    quotas.remove(key);
                }
                Some(v) if !v.is_finite() || *v <= 0.0 => {
                    return err(
                        codes::INVALID_REQUEST,
                        format!("Quota {key} must be greater than 0"),
                    )
                }
                Some(v) => {
                    quotas.insert(key.clone(), QuotaValue(*v));
                }
            }
        }
        if quotas.len() > MAX_CLIENT_QUOTA_KEYS {
            return err(
                codes::INVALID_REQUEST,
                format!("more than {MAX_CLIENT_QUOTA_KEYS} quotas on one entity"),
            );
        }
        if current.is_none() && image.client_quotas.len() >= MAX_CLIENT_QUOTA_ENTITIES {
            return err(
                codes::INVALID_REQUEST,
                format!(
                    "the cluster already holds quotas for {MAX_CLIENT_QUOTA_ENTITIES} entities"
                ),
            );
        }
        let mut draft = Draft::new(image);
        if current != Some(&quotas) && !(current.is_none() && quotas.is_empty()) {
            draft.push(MetadataRecord::ClientQuotasReplaced {
                entity: entity.clone(),
                quotas,
            });
        }
        draft.finish(())
    }

    /// AlterUserScramCredentials (KIP-554): removes and sets SCRAM credentials. The broker
    /// checked each change (names, mechanisms, iterations, the derived keys) and which users
    /// are named twice; this checks that removals name credentials that exist and bounds the
    /// number of users. Every change or none applies.
    pub fn alter_scram_credentials(
        &mut self,
        image: &ClusterImage,
        removals: &[(String, i8)],
        upsertions: &[(String, ScramCredentialInfo)],
    ) -> Decision<()> {
        for (name, mechanism) in removals {
            let exists = image
                .scram_credentials
                .get(name)
                .is_some_and(|m| m.contains_key(mechanism));
            if !exists {
                return err(
                    codes::RESOURCE_NOT_FOUND,
                    format!("Attempt to delete a user credential that does not exist: {name}"),
                );
            }
        }
        let new_users = upsertions
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !image.scram_credentials.contains_key(*name))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if image.scram_credentials.len().saturating_add(new_users) > MAX_SCRAM_USERS {
            return err(
                codes::UNACCEPTABLE_CREDENTIAL,
                format!("the cluster already holds SCRAM credentials for {MAX_SCRAM_USERS} users"),
            );
        }
        let mut draft = Draft::new(image);
        for (name, mechanism) in removals {
            draft.push(MetadataRecord::UserScramCredentialRemoved {
                name: name.clone(),
                mechanism: *mechanism,
            });
        }
        for (name, credential) in upsertions {
            draft.push(MetadataRecord::UserScramCredential {
                name: name.clone(),
                credential: credential.clone(),
            });
        }
        draft.finish(())
    }

    /// CreateAcls: adds the bindings (the broker validated each). A binding that exists already
    /// is not added again (Kafka's answer is success either way); past [`sluice_acl::MAX_ACLS`]
    /// the whole request is refused.
    pub fn create_acls(
        &mut self,
        image: &ClusterImage,
        bindings: &[sluice_acl::AclBinding],
    ) -> Decision<()> {
        let existing: std::collections::HashSet<&sluice_acl::AclBinding> =
            image.acls.values().collect();
        let mut fresh: Vec<&sluice_acl::AclBinding> = Vec::new();
        for b in bindings {
            if !existing.contains(b) && !fresh.contains(&b) {
                fresh.push(b);
            }
        }
        if image.acls.len().saturating_add(fresh.len()) > sluice_acl::MAX_ACLS {
            return err(
                codes::INVALID_REQUEST,
                format!(
                    "the cluster already holds {} ACLs (at most {})",
                    image.acls.len(),
                    sluice_acl::MAX_ACLS
                ),
            );
        }
        let base = image.last_applied.saturating_mul(1 << 16);
        let mut draft = Draft::new(image);
        for (i, b) in fresh.into_iter().enumerate() {
            draft.push(MetadataRecord::AclCreated {
                id: base.saturating_add(i as u64),
                binding: b.clone(),
            });
        }
        draft.finish(())
    }

    /// DeleteAcls: removes every binding each filter matches; the reply lists them per filter
    /// (a binding matched by two filters is listed under both, removed once).
    pub fn delete_acls(
        &mut self,
        image: &ClusterImage,
        filters: &[sluice_acl::AclBindingFilter],
    ) -> Decision<Vec<Vec<sluice_acl::AclBinding>>> {
        let mut removed = std::collections::BTreeSet::new();
        let mut per_filter = Vec::with_capacity(filters.len());
        for f in filters {
            let mut matched = Vec::new();
            for (id, b) in &image.acls {
                if f.matches(b) {
                    matched.push(b.clone());
                    removed.insert(*id);
                }
            }
            per_filter.push(matched);
        }
        let mut draft = Draft::new(image);
        for id in removed {
            draft.push(MetadataRecord::AclRemoved { id });
        }
        draft.finish(per_filter)
    }

    /// AllocateProducerIds: the next block of producer ids for a registered broker.
    pub fn allocate_producer_id_block(
        &mut self,
        image: &ClusterImage,
        broker_id: NodeId,
        broker_epoch: i64,
    ) -> Decision<ProducerIdBlock> {
        Self::check_broker_epoch(image, broker_id, broker_epoch)?;
        let first = image.next_producer_id.max(0);
        let len = self.config.producer_id_block_size.max(1);
        let Some(next) = first.checked_add(len) else {
            return err(codes::UNKNOWN_SERVER_ERROR, "producer ids exhausted");
        };
        let mut draft = Draft::new(image);
        draft.push(MetadataRecord::ProducerIdBlock {
            next_block_start: next,
        });
        draft.finish(ProducerIdBlock { first, len })
    }

    // ---- Partitions ----

    /// AlterPartition (one partition; KIP-497, KIP-903): the leader proposes a new ISR at its
    /// leader and partition epochs. Kafka's checks, in Kafka's order: STALE_BROKER_EPOCH,
    /// UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION, NOT_CONTROLLER (epochs newer than ours),
    /// FENCED_LEADER_EPOCH, INVALID_REQUEST (not the leader), INVALID_UPDATE_VERSION,
    /// INVALID_REQUEST (ISR not a set of replicas, or without the leader), INELIGIBLE_REPLICA
    /// (a member unregistered, fenced, shutting down or at another broker epoch). A
    /// reassignment completes here once every target replica is in the ISR.
    pub fn alter_partition(
        &mut self,
        image: &ClusterImage,
        _now_ms: i64,
        req: &AlterPartitionRequest,
    ) -> Decision<AlterPartitionReply> {
        Self::check_broker_epoch(image, req.broker_id, req.broker_epoch)?;
        let Some(topic) = image.topic_by_id(&req.topic_id) else {
            return err(
                codes::UNKNOWN_TOPIC_ID,
                format!("no topic id {}", req.topic_id),
            );
        };
        let Some(p) = topic.partition(req.partition) else {
            return err(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("no partition {}-{}", topic.name, req.partition),
            );
        };
        if req.leader_epoch > p.leader_epoch || req.partition_epoch > p.partition_epoch {
            return err(
                codes::NOT_CONTROLLER,
                "the request's epochs are newer than this controller's",
            );
        }
        if req.leader_epoch < p.leader_epoch {
            return err(
                codes::FENCED_LEADER_EPOCH,
                format!(
                    "leader epoch {} is older than {}",
                    req.leader_epoch, p.leader_epoch
                ),
            );
        }
        if req.broker_id != p.leader {
            return err(
                codes::INVALID_REQUEST,
                format!(
                    "broker {} is not the leader ({}) of {}-{}",
                    req.broker_id, p.leader, topic.name, req.partition
                ),
            );
        }
        if req.partition_epoch < p.partition_epoch {
            return err(
                codes::INVALID_UPDATE_VERSION,
                format!(
                    "partition epoch {} is older than {}",
                    req.partition_epoch, p.partition_epoch
                ),
            );
        }
        let new_isr: Vec<NodeId> = req.new_isr.iter().map(|m| m.broker_id).collect();
        if new_isr.is_empty()
            || !distinct(&new_isr)
            || !new_isr.iter().all(|r| p.replicas.contains(r))
        {
            return err(
                codes::INVALID_REQUEST,
                format!("invalid ISR {new_isr:?} for replicas {:?}", p.replicas),
            );
        }
        if !new_isr.contains(&p.leader) {
            return err(
                codes::INVALID_REQUEST,
                format!("the ISR {new_isr:?} does not include the leader"),
            );
        }
        for m in &req.new_isr {
            let why = match image.broker(m.broker_id) {
                None => Some("not registered"),
                Some(b) if b.in_controlled_shutdown => Some("shutting down"),
                Some(b) if b.fenced => Some("fenced"),
                Some(b) if m.broker_epoch != -1 && m.broker_epoch != b.broker_epoch => {
                    Some("at another broker epoch")
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                return err(
                    codes::INELIGIBLE_REPLICA,
                    format!("replica {} is {why}", m.broker_id),
                );
            }
        }
        let unclean = topic.unclean_leader_election(self.config.unclean_leader_election_enable);
        let mut target = Target::of(p);
        target.isr = new_isr;
        let acceptable = |r: NodeId| image.is_active(r);
        let election = if unclean {
            Election::Unclean
        } else {
            Election::Online
        };
        let mut draft = Draft::new(image);
        if let Some(rec) = build_change(
            req.topic_id,
            req.partition,
            p,
            target,
            election,
            &acceptable,
        ) {
            draft.push(rec);
        }
        let after = draft
            .img()
            .partition(&req.topic_id, req.partition)
            .unwrap_or(p);
        let error_code = if after.leader != req.broker_id {
            codes::NEW_LEADER_ELECTED
        } else {
            codes::NONE
        };
        let reply = AlterPartitionReply {
            error_code,
            leader: after.leader,
            isr: after.isr.clone(),
            leader_epoch: after.leader_epoch,
            partition_epoch: after.partition_epoch,
        };
        draft.finish(reply)
    }

    /// The partitions an ElectLeaders without a list covers: for PREFERRED those not led by
    /// their preferred replica, for UNCLEAN the leaderless ones.
    fn all_election_candidates(image: &ClusterImage, kind: ElectionType) -> Vec<(String, i32)> {
        image
            .partitions()
            .filter(|(_, _, p)| match kind {
                ElectionType::Preferred => p.leader != p.preferred_leader(),
                ElectionType::Unclean => p.leader == NO_LEADER,
            })
            .map(|(t, i, _)| (t.name.clone(), i))
            .collect()
    }

    /// ElectLeaders: per partition, ELECTION_NOT_NEEDED (already led by the preferred
    /// replica / already has a leader for UNCLEAN), PREFERRED_LEADER_NOT_AVAILABLE,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION, or success.
    /// `partitions: None` = every partition that needs it.
    pub fn elect_leaders(
        &mut self,
        image: &ClusterImage,
        _now_ms: i64,
        kind: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> Decision<Vec<PartitionResult>> {
        let list = match partitions {
            Some(l) => l.to_vec(),
            None => Self::all_election_candidates(image, kind),
        };
        let mut draft = Draft::new(image);
        let mut results = Vec::with_capacity(list.len());
        for (topic, partition) in list {
            let error = self.elect_one(&mut draft, &topic, partition, kind).err();
            results.push(PartitionResult {
                topic,
                partition,
                error,
            });
        }
        draft.finish(results)
    }

    fn elect_one(
        &self,
        draft: &mut Draft<'_>,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> Result<(), ControllerError> {
        let img = draft.img();
        let unknown = || {
            ControllerError::new(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("no partition {topic}-{partition}"),
            )
        };
        let t = img.topic(topic).ok_or_else(unknown)?;
        let p = t.partition(partition).ok_or_else(unknown)?;
        let not_needed = match kind {
            ElectionType::Preferred => p.leader == p.preferred_leader(),
            ElectionType::Unclean => p.leader != NO_LEADER,
        };
        if not_needed {
            return err(codes::ELECTION_NOT_NEEDED, "leader election not needed");
        }
        let election = match kind {
            ElectionType::Preferred => Election::Preferred,
            ElectionType::Unclean => Election::Unclean,
        };
        let acceptable = |r: NodeId| img.is_active(r);
        match build_change(t.id, partition, p, Target::of(p), election, &acceptable) {
            Some(rec) => {
                draft.push(rec);
                Ok(())
            }
            None => match kind {
                ElectionType::Preferred => err(
                    codes::PREFERRED_LEADER_NOT_AVAILABLE,
                    "the preferred leader is not available",
                ),
                ElectionType::Unclean => err(
                    codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    "no eligible leader is available",
                ),
            },
        }
    }

    /// AlterPartitionReassignments (KIP-455): `Some(target)` starts (or replaces) a move —
    /// replicas become target ∪ current (target first), with the adding and removing lists;
    /// it completes once every target replica is in the ISR (here if already so, else in
    /// AlterPartition). `None` cancels: the adding replicas leave (replicas and ISR); if that
    /// empties the ISR the first original replica is taken unclean, only with unclean leader
    /// election enabled for the topic (else INVALID_REPLICA_ASSIGNMENT).
    pub fn alter_partition_reassignments(
        &mut self,
        image: &ClusterImage,
        _now_ms: i64,
        reassignments: &[(String, i32, Option<Vec<NodeId>>)],
    ) -> Decision<Vec<PartitionResult>> {
        let mut draft = Draft::new(image);
        let mut results = Vec::with_capacity(reassignments.len());
        for (topic, partition, target) in reassignments {
            let error = self
                .reassign_one(&mut draft, topic, *partition, target.as_deref())
                .err();
            results.push(PartitionResult {
                topic: topic.clone(),
                partition: *partition,
                error,
            });
        }
        draft.finish(results)
    }

    fn reassign_one(
        &self,
        draft: &mut Draft<'_>,
        topic: &str,
        partition: i32,
        target: Option<&[NodeId]>,
    ) -> Result<(), ControllerError> {
        let img = draft.img();
        let unknown = || {
            ControllerError::new(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("no partition {topic}-{partition}"),
            )
        };
        let t = img.topic(topic).ok_or_else(unknown)?;
        let p = t.partition(partition).ok_or_else(unknown)?;
        let unclean_enabled = t.unclean_leader_election(self.config.unclean_leader_election_enable);
        let acceptable = |r: NodeId| img.is_active(r);
        let (tgt, election) = match target {
            Some(target) => {
                Self::validate_manual(img, target, None)?;
                let mut removing: Vec<NodeId> = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !target.contains(r))
                    .collect();
                removing.sort_unstable();
                let mut adding: Vec<NodeId> = target
                    .iter()
                    .copied()
                    .filter(|r| !p.replicas.contains(r))
                    .collect();
                adding.sort_unstable();
                let mut replicas = target.to_vec();
                replicas.extend(removing.iter().copied());
                (
                    Target {
                        isr: p.isr.clone(),
                        replicas,
                        adding,
                        removing,
                    },
                    Election::Online,
                )
            }
            None => {
                if !p.is_reassigning() {
                    return err(
                        codes::NO_REASSIGNMENT_IN_PROGRESS,
                        format!("no reassignment of {topic}-{partition} in progress"),
                    );
                }
                let replicas = p.original_replicas();
                let mut isr: Vec<NodeId> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|r| !p.adding_replicas.contains(r))
                    .collect();
                let mut unclean = false;
                if isr.is_empty() {
                    let Some(&first) = replicas.first() else {
                        return err(
                            codes::INVALID_REPLICA_ASSIGNMENT,
                            "the reassignment adds every replica",
                        );
                    };
                    if !unclean_enabled {
                        return err(
                            codes::INVALID_REPLICA_ASSIGNMENT,
                            "cancelling would need an unclean leader election",
                        );
                    }
                    isr.push(first);
                    unclean = true;
                }
                (
                    Target {
                        isr,
                        replicas,
                        adding: Vec::new(),
                        removing: Vec::new(),
                    },
                    if unclean {
                        Election::Unclean
                    } else {
                        Election::Online
                    },
                )
            }
        };
        if let Some(rec) = build_change(t.id, partition, p, tgt, election, &acceptable) {
            draft.push(rec);
        }
        Ok(())
    }

    /// ListPartitionReassignments: the ongoing ones (all, or among `partitions`).
    pub fn list_partition_reassignments(
        &self,
        image: &ClusterImage,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<ReassignmentInfo> {
        image
            .partitions()
            .filter(|(t, i, p)| {
                p.is_reassigning()
                    && partitions.is_none_or(|l| l.iter().any(|(n, k)| *n == t.name && k == i))
            })
            .map(|(t, i, p)| ReassignmentInfo {
                topic: t.name.clone(),
                partition: i,
                replicas: p.replicas.clone(),
                adding_replicas: p.adding_replicas.clone(),
                removing_replicas: p.removing_replicas.clone(),
            })
            .collect()
    }
}
