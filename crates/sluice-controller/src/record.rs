//! The metadata records: the on-disk format of the metadata log (JSON, one tagged object per
//! record; field names are stable).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node id (Kafka's broker id).
pub type NodeId = i32;

/// Kafka's `LeaderConstants.NO_LEADER`.
pub const NO_LEADER: NodeId = -1;

/// One change to the cluster metadata. The controller decides them; the quorum commits them;
/// every node applies them in log order with [`crate::ClusterImage::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The first record of every controller decision: the records after it in the same log
    /// entry were decided against the image whose `last_applied` was `based_on`. If another
    /// decision was applied since (a stale or concurrent decision), they are all ignored and
    /// `apply` reports [`crate::Change::DecisionRejected`] — a decision applies whole or not
    /// at all.
    Guard { based_on: u64 },
    /// A broker (a new incarnation of `node_id`) registers. Its broker epoch is the log index
    /// the record is applied at; it starts fenced. Replaces any earlier registration of the id.
    RegisterBroker {
        node_id: NodeId,
        incarnation_id: Uuid,
        kafka_host: String,
        kafka_port: i32,
        cluster_addr: String,
        #[serde(default)]
        rack: Option<String>,
        /// (Sluice) The broker's advertised HTTP address (`host:port`: the schema registry's
        /// primary forwards writes there). Absent in records of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_addr: Option<String>,
        /// (Sluice) Every Kafka listener the broker advertises, by name (Kafka's
        /// `BrokerEndpoint`s); `kafka_host`/`kafka_port` are the first one's. Absent in records
        /// of older versions (one PLAINTEXT listener).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        listeners: Vec<ListenerEndpoint>,
    },
    /// The node id is removed from the cluster.
    UnregisterBroker { node_id: NodeId },
    /// (Sluice) The cluster's id. The first one applied stays: every node proposes the id of
    /// its own `meta.properties` once it has registered, and later proposals are ignored, so
    /// every node of a cluster answers Metadata/DescribeCluster with the same id (Kafka has an
    /// operator format every node with one id; Sluice has no format step).
    ClusterId { cluster_id: String },
    /// The registration with this broker epoch is fenced (session expired, asked to be fenced).
    FenceBroker { node_id: NodeId, broker_epoch: i64 },
    /// The registration with this broker epoch is unfenced (caught up with the metadata log).
    UnfenceBroker { node_id: NodeId, broker_epoch: i64 },
    /// The registration with this broker epoch began a controlled shutdown: it gets no new
    /// leaderships and no ISR membership; it ends with the next fence or registration.
    ControlledShutdown { node_id: NodeId, broker_epoch: i64 },
    /// (Sluice) The node id is being drained for removal: replica placement skips it. Survives
    /// re-registration; cleared by `draining: false` or by unregistering.
    SetDraining { node_id: NodeId, draining: bool },
    /// A topic is created (its partitions follow as `PartitionCreated`).
    TopicCreated {
        name: String,
        id: Uuid,
        #[serde(default)]
        configs: BTreeMap<String, String>,
    },
    /// A partition is created (the next partition index of its topic).
    PartitionCreated {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A partition changes. `None` fields stay as they are. Applying it bumps the partition
    /// epoch, and the leader epoch whenever `leader` is present (even when it names the same
    /// leader: Kafka's way to fence the old epoch when replicas are removed). It applies only
    /// while the partition epoch is still `expected_partition_epoch` (the epoch it was decided
    /// against), so a decision made on an out-of-date image can never apply.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        expected_partition_epoch: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<NodeId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isr: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adding_replicas: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removing_replicas: Option<Vec<NodeId>>,
    },
    /// A topic's configs are replaced whole (the broker validated them).
    TopicConfigsReplaced {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A topic and all its partitions are deleted.
    TopicDeleted { name: String, id: Uuid },
    /// A block of producer ids was handed out; the next block starts here.
    ProducerIdBlock { next_block_start: i64 },
    /// A group's configs are replaced whole (an empty map removes them).
    GroupConfigsReplaced {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// A client-quota entity's quotas are replaced whole (an empty map removes the entity).
    ClientQuotasReplaced {
        entity: QuotaEntity,
        quotas: BTreeMap<String, QuotaValue>,
    },
    /// (KIP-554) A user's SCRAM credential for one mechanism is set, replacing any earlier one.
    UserScramCredential {
        name: String,
        #[serde(flatten)]
        credential: ScramCredentialInfo,
    },
    /// A user's SCRAM credential for one mechanism (Kafka's code) is removed.
    UserScramCredentialRemoved { name: String, mechanism: i8 },
    /// An ACL binding is created (Kafka's `AccessControlEntryRecord`). `id` is the decision's
    /// base index times 2^16 plus the binding's place in it: unique, as every decision has
    /// its own base.
    AclCreated {
        id: u64,
        binding: sluice_acl::AclBinding,
    },
    /// The ACL binding with this id is removed (`RemoveAccessControlEntryRecord`).
    AclRemoved { id: u64 },
}

/// One advertised Kafka listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    pub security_protocol: String,
}

/// One stored SCRAM credential: what verifies a login and nothing that allows one. Kafka's
/// `UserScramCredentialRecord` keeps the salted password, from which a reader of the metadata
/// log could compute the client key and log in; Sluice keeps StoredKey and ServerKey only
/// (RFC 5802), derived by the broker from the salted password a client upserts. Byte fields are
/// standard base64 (the broker checks them before proposing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialInfo {
    /// Kafka's mechanism code: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: String,
    pub stored_key: String,
    pub server_key: String,
}

/// One part of a client-quota entity: the default for its type, or a name (Kafka's null and
/// string entity names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityName {
    Default,
    Named(String),
}

/// A client-quota entity (Kafka's `ClientQuotaEntity` for users and client ids): each type is
/// absent, the default, or a name. At least one is present.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

/// A quota's value (Kafka's double). The controller admits only finite values above zero,
/// so equality is total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl Eq for QuotaValue {}
