//! Cluster metadata as this broker sees it: the broker's view of the metadata quorum's
//! `ClusterImage` (see `cluster/`): topics by name and id with their validated configs, group
//! configs, producer ids. Writes go to the controller (`Cluster::request`: in-process on the
//! quorum leader, RPC otherwise); a write returns once its records are applied here and
//! reconciled ([`Metadata::sync`]).
//!
//! # Reconcile
//! [`Metadata::sync`] rebuilds the view from the image and brings the `ReplicaManager` in
//! line with it: every partition whose replicas name this node is opened (a new one empty)
//! and gets its role from the image (leader here → `become_leader`, another leader →
//! `become_follower`, no leader → the role stays as it was; see `ReplicaManager::apply_partition_state`);
//! config changes reconfigure the replicas; replicas moved off this node and deleted topics
//! are deleted. It runs after every write this node makes and from a loop woken by every
//! applied entry (`broker.rs`).
//!
//! Each partition directory holds `partition.metadata` (as Kafka: `version: 0` and the topic
//! id), written before the replica opens. A directory whose file is missing or names another
//! topic id is a leftover (a crash cut a deletion short, an older incarnation of the name) and
//! is emptied before the partition opens; at start, directories with the file whose partition
//! this node no longer hosts are removed (except an internal topic's directory whose topic is
//! not in the image yet: see [`Metadata::adopt_internal_log`]). Directories without it (the
//! internal logs still owned locally) are never touched.
//!
//! # Internal topics
//! `__consumer_offsets` and `__transaction_state` (one partition each) are topics of the image
//! like any other, created by [`Metadata::ensure_internal_topic`] when their coordinator first
//! needs them (as Kafka creates them on the first FindCoordinator; a single node at start),
//! with replication factor min(3, cluster size);
//! `is_internal` in Metadata; DeleteTopics refuses them; Produce refuses them. A data directory
//! written before they were topics has `__consumer_offsets-0` / `__transaction_state-0`
//! without `partition.metadata`: [`Metadata::adopt_internal_log`] makes each partition 0 of its
//! topic, led by this node.
//! `_schemas` (the schema registry's log, `schemas.rs`) is an internal topic the same way.
//!
//! # Migration from the pre-cluster format
//! A data directory written before the metadata quorum keeps its metadata as JSON events in
//! `__cluster_metadata-0`. On the first start the events are replayed as before, every live
//! partition directory gets its `partition.metadata`, and the state is proposed as records
//! (`topic_created` + `partition_created` with replicas = ISR = [this node], leader this node,
//! epoch 0; `producer_id_block`; `group_configs_replaced`), in entries of at most
//! [`MIGRATION_ENTRY_BYTES`]. Topics already in the image (by id) are skipped, so a start that
//! crashed midway redoes only the rest. The old directory is removed once every entry is
//! applied (and, being committed, durable).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::{Cluster, CtrlReply, CtrlRequest};
use crate::config::BrokerConfig;
use crate::error::KafkaError;
use crate::group_config::GroupConfigs;
use crate::internal_log;
use crate::limits::MAX_PARTITIONS_PER_TOPIC;
use crate::partition::Partition;
use crate::replica_manager::{
    partition_dir, ReplicaConfig, ReplicaManager, Role, TopicIdPartition, INITIAL_LEADER_EPOCH,
};
use crate::replication::PartitionState;
use crate::topic_config::TopicConfigs;
use sluice_controller::MetadataRecord;

/// The pre-cluster metadata log (migrated at the first start, then removed).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// The number of partitions (0..count).
    pub partition_count: i32,
    pub configs: TopicConfigs,
    /// The configs as the image holds them (before sanitizing).
    pub raw_configs: BTreeMap<String, String>,
}

impl Topic {
    /// Whether `index` is one of the topic's partitions.
    pub fn has_partition(&self, index: i32) -> bool {
        (0..self.partition_count).contains(&index)
    }

    /// The topic's partition `index` by id.
    pub fn tp(&self, index: i32) -> TopicIdPartition {
        TopicIdPartition {
            topic_id: self.id,
            partition: index,
        }
    }
}

/// How a topic's replicas open under `configs`.
fn replica_config(configs: &TopicConfigs) -> ReplicaConfig {
    ReplicaConfig {
        log_config: configs.log_config(),
        conditional: crate::conditional::enabled(configs), // conditional append
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    TopicCreated {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: TopicConfigs,
    },
    PartitionsCreated {
        name: String,
        count: i32,
    },
    ConfigsReplaced {
        name: String,
        configs: TopicConfigs,
    },
    /// The incarnation `id` of `name` was deleted (`id` is absent in logs written before
    /// incarnations were tracked: then the name's current incarnation is meant).
    TopicDeleted {
        name: String,
        #[serde(default)]
        id: Option<Uuid>,
    },
    ProducerIdBlock {
        next_block_start: i64,
    },
    /// A group's configs (the GROUP config resource); empty when the group is deleted.
    GroupConfigsReplaced {
        group: String,
        configs: GroupConfigs,
    },
}

/// Most bytes of one migration entry (below `sluice_quorum::MAX_COMMAND_BYTES`).
pub const MIGRATION_ENTRY_BYTES: usize = 4 << 20;
/// The file naming a partition directory's topic id (Kafka's name).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Bound on joining the cluster (register + unfence) before a single node serves, or before
/// a migration.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The role a replica opens with for a partition in this state.
fn role_for(me: i32, p: &sluice_controller::PartitionInfo) -> Role {
    if p.leader == me {
        Role::Leader {
            leader_epoch: p.leader_epoch,
        }
    } else {
        Role::Follower {
            leader_id: p.leader,
            leader_epoch: p.leader_epoch,
        }
    }
}

struct ProducerIds {
    next: i64,
    block_end: i64,
}

/// Live topics, by name and by id (Fetch v13+ names topics by id).
#[derive(Default)]
struct Topics {
    by_name: BTreeMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

impl Topics {
    fn insert(&mut self, topic: Arc<Topic>) {
        if let Some(old) = self.by_name.insert(topic.name.clone(), topic.clone()) {
            self.by_id.remove(&old.id);
        }
        self.by_id.insert(topic.id, topic);
    }
}

/// What the reconcile last applied (so each change is applied once).
#[derive(Default)]
struct Reconciled {
    /// (leader, leader epoch, partition epoch, min.insync.replicas) per local partition.
    parts: HashMap<TopicIdPartition, (i32, i32, i32, usize)>,
    configs: HashMap<Uuid, BTreeMap<String, String>>,
}

pub struct Metadata {
    replicas: Arc<ReplicaManager>,
    /// This node's membership of the cluster: quorum, controller, registration.
    pub cluster: Arc<Cluster>,
    data_dir: PathBuf,
    topics: RwLock<Topics>,
    group_configs: RwLock<BTreeMap<String, GroupConfigs>>,
    /// The client quotas in force here and the rates they are enforced on.
    pub quotas: crate::quota::Quotas,
    /// The image's client quotas `quotas` was last built from.
    quota_image: parking_lot::Mutex<Vec<sluice_controller::ClientQuotas>>,
    /// The SCRAM credentials SASL checks logins against, following the image.
    pub users: crate::security::users::Users,
    /// The ACL bindings the authorizer checks, following the image.
    pub acls: crate::security::authz::Acls,
    /// `--max-partitions`: user partitions this broker will hold.
    max_partitions: usize,
    producer_ids: parking_lot::Mutex<ProducerIds>,
    pid_lock: tokio::sync::Mutex<()>,
    reconciled: parking_lot::Mutex<Reconciled>,
    /// One internal-topic creation at a time (concurrent FindCoordinators).
    internal_create: tokio::sync::Mutex<()>,
    /// Told the names of topics the image no longer has, whichever node deleted them (the
    /// group coordinator drops their committed offsets, as Kafka's does on a metadata update).
    on_topics_deleted: std::sync::OnceLock<Box<dyn Fn(Vec<String>) + Send + Sync>>,
}

/// Kafka's rule: 1..=249 characters of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), KafkaError> {
    let legal = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." || !legal {
        return Err(KafkaError::new(
            ResponseError::InvalidTopicException,
            format!("invalid topic name {name:?}: use 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'"),
        ));
    }
    if matches!(
        name,
        "__cluster_metadata" | "__consumer_offsets" | "__share_group_state" | "_schemas"
    ) {
        return Err(KafkaError::new(
            ResponseError::InvalidTopicException,
            format!("topic name {name:?} is reserved for the broker's internal state"),
        ));
    }
    Ok(())
}

fn ctrl(e: sluice_controller::ControllerError) -> KafkaError {
    crate::cluster::to_kafka(e)
}

fn unknown_server(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::new(ResponseError::UnknownServerError, e.to_string())
}

impl Metadata {
    /// Opens the metadata quorum and the broker's view of it: a single node (no `--voters`)
    /// registers and unfences in-process first; an old-format data directory is migrated;
    /// then every partition this node hosts is opened.
    pub async fn open(
        config: &BrokerConfig,
        max_partitions: usize,
        replicas: Arc<ReplicaManager>,
        listeners: &[sluice_controller::ListenerEndpoint],
        now_ms: i64,
    ) -> Result<Self, KafkaError> {
        let data_dir = config.data_dir.clone();
        let cluster = Cluster::open(config, &data_dir)
            .await
            .map_err(|e| KafkaError::new(ResponseError::KafkaStorageError, format!("{e:#}")))?;
        // The first listener is the one older records name (`kafka_host`, `kafka_port`).
        let Some(first) = listeners.first() else {
            return Err(KafkaError::new(
                ResponseError::InvalidConfig,
                "a broker needs at least one Kafka listener",
            ));
        };
        let (kafka_host, kafka_port) = (first.host.as_str(), first.port);
        cluster.set_listeners(listeners.to_vec());
        let old = data_dir.join(METADATA_LOG_DIR);
        if cluster.is_single_node() || old.is_dir() {
            cluster
                .join(kafka_host, kafka_port, JOIN_TIMEOUT)
                .await
                .map_err(ctrl)?;
        } else {
            cluster.set_kafka_endpoint(kafka_host, kafka_port);
        }
        let m = Metadata {
            replicas,
            cluster,
            data_dir,
            topics: RwLock::new(Topics::default()),
            group_configs: RwLock::new(BTreeMap::new()),
            quotas: crate::quota::Quotas::default(),
            quota_image: parking_lot::Mutex::new(Vec::new()),
            users: Default::default(),
            acls: Default::default(),
            max_partitions,
            producer_ids: parking_lot::Mutex::new(ProducerIds {
                next: 0,
                block_end: 0,
            }),
            pid_lock: tokio::sync::Mutex::new(()),
            reconciled: parking_lot::Mutex::new(Reconciled::default()),
            internal_create: tokio::sync::Mutex::new(()),
            on_topics_deleted: std::sync::OnceLock::new(),
        };
        if old.is_dir() {
            m.migrate(now_ms).await?;
        }
        m.sync(now_ms);
        m.sweep_unhosted();
        Ok(m)
    }

    /// A single-node metadata over `data_dir` (tests).
    pub async fn open_single(
        data_dir: &Path,
        max_partitions: usize,
        replicas: Arc<ReplicaManager>,
        now_ms: i64,
    ) -> Result<Self, KafkaError> {
        let config = BrokerConfig {
            data_dir: data_dir.to_path_buf(),
            node_id: replicas.local_id(),
            ..BrokerConfig::default()
        };
        let listener = sluice_controller::ListenerEndpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092,
            security_protocol: "PLAINTEXT".into(),
        };
        Self::open(&config, max_partitions, replicas, &[listener], now_ms).await
    }

    /// Brings the view and the local replicas in line with the image (see the module docs).
    /// Failures are logged per partition; the next change retries them.
    /// Registers the callback told of deleted topics (see the field); once.
    pub fn on_topics_deleted(&self, f: Box<dyn Fn(Vec<String>) + Send + Sync>) {
        let _ = self.on_topics_deleted.set(f);
    }

    pub fn sync(&self, now_ms: i64) {
        let mut rec = self.reconciled.lock();
        let image = self.cluster.state.snapshot_image();
        // The view.
        let mut topics = Topics::default();
        {
            let old = self.topics.read();
            for t in image.topics.values() {
                let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                let same = old.by_id.get(&t.id).filter(|o| {
                    o.name == t.name && o.partition_count == count && o.raw_configs == t.configs
                });
                let topic = match same {
                    Some(o) => o.clone(),
                    None => Arc::new(Topic {
                        name: t.name.clone(),
                        id: t.id,
                        partition_count: count,
                        configs: TopicConfigs(t.configs.clone()).sanitized(&t.name),
                        raw_configs: t.configs.clone(),
                    }),
                };
                topics.insert(topic);
            }
        }
        let groups: BTreeMap<String, GroupConfigs> = image
            .group_configs
            .iter()
            .map(|(g, c)| (g.clone(), GroupConfigs(c.clone()).sanitized(g)))
            .filter(|(_, c)| !c.0.is_empty())
            .collect();
        // The replicas.
        let me = self.replicas.local_id();
        let mut desired = HashSet::new();
        for (t, index, p) in image.partitions() {
            if !p.replicas.contains(&me) {
                continue;
            }
            let tp = TopicIdPartition {
                topic_id: t.id,
                partition: index,
            };
            desired.insert(tp);
            let Some(topic) = topics.by_id.get(&t.id) else {
                continue;
            };
            let min_isr = topic
                .configs
                .get("min.insync.replicas")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1);
            let state = (p.leader, p.leader_epoch, p.partition_epoch, min_isr);
            if rec.parts.get(&tp) == Some(&state) && self.replicas.get(tp).is_some() {
                continue;
            }
            if self.replicas.get(tp).is_none() {
                if let Err(e) = self.open_replica(tp, topic, role_for(me, p), now_ms) {
                    tracing::error!(topic = %t.name, partition = index, error = %e, "cannot open replica");
                    continue;
                }
            }
            let ps = PartitionState {
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                min_insync_replicas: min_isr,
            };
            match self.replicas.apply_partition_state(tp, &ps) {
                Ok(()) => {
                    rec.parts.insert(tp, state);
                }
                Err(e) => {
                    tracing::warn!(topic = %t.name, partition = index, error = %e, "cannot apply partition state");
                    rec.parts.insert(tp, state);
                }
            }
        }
        for t in topics.by_id.values() {
            if rec.configs.get(&t.id) != Some(&t.raw_configs) {
                if rec.configs.contains_key(&t.id) {
                    if let Err(e) = self.replicas.reconfigure(
                        t.id,
                        t.partition_count,
                        &replica_config(&t.configs),
                    ) {
                        tracing::error!(topic = %t.name, error = %e, "cannot reconfigure");
                    }
                }
                rec.configs.insert(t.id, t.raw_configs.clone());
            }
        }
        rec.configs.retain(|id, _| topics.by_id.contains_key(id));
        for r in self.replicas.all() {
            let tp = r.tp();
            if !desired.contains(&tp) {
                rec.parts.remove(&tp);
                match self.replicas.delete_replica(tp) {
                    Ok(_) => {
                        tracing::info!(topic = %r.topic(), partition = tp.partition, "deleted replica")
                    }
                    Err(e) => {
                        tracing::error!(topic = %r.topic(), partition = tp.partition, error = %e, "cannot delete replica")
                    }
                }
            }
        }
        let deleted: Vec<String> = {
            let old = self.topics.read();
            old.by_id
                .iter()
                .filter(|(id, _)| !topics.by_id.contains_key(id))
                .map(|(_, t)| t.name.clone())
                .filter(|name| !topics.by_name.contains_key(name))
                .collect()
        };
        *self.topics.write() = topics;
        *self.group_configs.write() = groups;
        {
            let mut quotas = self.quota_image.lock();
            if *quotas != image.client_quotas {
                self.quotas
                    .set_config(crate::quota::QuotaConfig::from_image(&image.client_quotas));
                *quotas = image.client_quotas.clone();
            }
        }
        self.users.sync(&image.scram_credentials);
        self.acls.sync(&image.acls);
        if !deleted.is_empty() {
            if let Some(f) = self.on_topics_deleted.get() {
                f(deleted);
            }
        }
    }

    /// Opens a replica, first making sure its directory belongs to this topic id.
    fn open_replica(
        &self,
        tp: TopicIdPartition,
        topic: &Topic,
        role: Role,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let dir = partition_dir(&self.data_dir, &topic.name, tp.partition);
        if dir.exists() && read_partition_metadata(&dir) != Some(tp.topic_id) {
            tracing::info!(dir = %dir.display(), "removing a partition directory of another incarnation");
            std::fs::remove_dir_all(&dir)?;
            fsync_dir(&self.data_dir)?;
        }
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            write_partition_metadata(&dir, tp.topic_id)?;
            fsync_dir(&self.data_dir)?;
        }
        self.replicas.open(
            tp,
            &topic.name,
            &replica_config(&topic.configs),
            role,
            now_ms,
        )?;
        Ok(())
    }

    /// Removes partition directories (those with `partition.metadata`) this node no longer
    /// hosts: a deletion or reassignment a crash cut short.
    fn sweep_unhosted(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let mut removed = false;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = read_partition_metadata(&path) else {
                continue;
            };
            let index = entry
                .file_name()
                .to_str()
                .and_then(|n| n.rsplit_once('-'))
                .and_then(|(_, i)| i.parse::<i32>().ok());
            let Some(index) = index else { continue };
            let name = entry.file_name();
            let internal = name
                .to_str()
                .and_then(|n| n.rsplit_once('-'))
                .is_some_and(|(t, _)| crate::coordinator::is_internal(t));
            if internal && self.topic_by_id(id).is_none() {
                // Adopted by `adopt_internal_log`, or its topic not in the image yet.
                continue;
            }
            if self
                .replicas
                .get(TopicIdPartition {
                    topic_id: id,
                    partition: index,
                })
                .is_some()
            {
                continue;
            }
            tracing::info!(dir = %path.display(), "removing the directory of a partition this node no longer hosts");
            if std::fs::remove_dir_all(&path).is_ok() {
                removed = true;
            }
        }
        if removed {
            let _ = fsync_dir(&self.data_dir);
        }
    }

    /// Converts an old-format data directory (see the module docs).
    async fn migrate(&self, now_ms: i64) -> Result<(), KafkaError> {
        let old = self.data_dir.join(METADATA_LOG_DIR);
        let me = self.replicas.local_id();
        let (specs, deleted, next_block_start, group_configs) = read_old_events(&old, now_ms)?;
        sweep(&self.data_dir, &specs, &deleted);
        let image = self.cluster.state.snapshot_image();
        // Partition directories first get their topic id, durably, so nothing the records
        // name is ever taken for a leftover.
        for (name, (id, count, _)) in &specs {
            if image.topic_by_id(id).is_some() {
                continue;
            }
            for p in 0..*count {
                let dir = partition_dir(&self.data_dir, name, p);
                if dir.is_dir() {
                    write_partition_metadata(&dir, *id)?;
                }
            }
        }
        let mut groups: Vec<Vec<MetadataRecord>> = Vec::new();
        for (name, (id, count, configs)) in &specs {
            if image.topic_by_id(id).is_some() || image.topic(name).is_some() {
                continue;
            }
            let mut records = vec![MetadataRecord::TopicCreated {
                name: name.clone(),
                id: *id,
                configs: configs.clone().sanitized(name).0,
            }];
            for p in 0..*count {
                records.push(MetadataRecord::PartitionCreated {
                    topic_id: *id,
                    partition: p,
                    replicas: vec![me],
                    isr: vec![me],
                    leader: me,
                    leader_epoch: INITIAL_LEADER_EPOCH,
                    partition_epoch: 0,
                });
            }
            groups.push(records);
        }
        if next_block_start > image.next_producer_id {
            groups.push(vec![MetadataRecord::ProducerIdBlock { next_block_start }]);
        }
        for (group, configs) in group_configs {
            groups.push(vec![MetadataRecord::GroupConfigsReplaced {
                group,
                configs: configs.0,
            }]);
        }
        // Whole topics per entry, entries of at most MIGRATION_ENTRY_BYTES.
        let mut entries: Vec<Vec<MetadataRecord>> = Vec::new();
        let mut current: Vec<MetadataRecord> = Vec::new();
        let mut bytes = 0usize;
        for records in groups {
            let size: usize = records
                .iter()
                .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len() + 1))
                .sum();
            if !current.is_empty() && bytes.saturating_add(size) > MIGRATION_ENTRY_BYTES {
                entries.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes = bytes.saturating_add(size);
            current.extend(records);
        }
        if !current.is_empty() {
            entries.push(current);
        }
        let n = entries.len();
        for records in entries {
            self.cluster.propose_records(&records).await?;
        }
        // Every entry is committed (durable on a majority: here) and applied: the old log can go.
        sluice_storage::log::remove_log_dir(&old)?;
        fsync_dir(&self.data_dir)?;
        tracing::info!(
            topics = specs.len(),
            entries = n,
            "migrated the metadata of an older version to the metadata quorum"
        );
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().by_name.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().by_id.get(&id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().by_name.values().cloned().collect()
    }

    /// Whether `topic` exists and has partition `index`.
    pub fn has_partition(&self, topic: &str, index: i32) -> bool {
        self.topics
            .read()
            .by_name
            .get(topic)
            .is_some_and(|t| t.has_partition(index))
    }

    pub fn partition_count(&self) -> usize {
        self.topics
            .read()
            .by_name
            .values()
            .map(|t| usize::try_from(t.partition_count).unwrap_or(0))
            .sum()
    }

    /// Refuses `adding` partitions when the broker would then hold more than
    /// `--max-partitions` (each partition holds at least one open file).
    fn check_partition_budget(&self, adding: i32) -> Result<(), KafkaError> {
        // User partitions: the internal topics (at most one partition each) are not counted.
        let now = self
            .replicas
            .all()
            .iter()
            .filter(|r| !crate::coordinator::is_internal(r.topic()))
            .count();
        let adding = usize::try_from(adding).unwrap_or(usize::MAX);
        if now.saturating_add(adding) > self.max_partitions {
            return Err(KafkaError::new(
                ResponseError::PolicyViolation,
                format!(
                    "this broker holds {now} partitions and allows at most {} (--max-partitions); {adding} more would exceed it",
                    self.max_partitions
                ),
            ));
        }
        Ok(())
    }

    /// Waits until this node applied `index`, then reconciles.
    async fn synced(&self, index: u64, now_ms: i64) {
        self.cluster
            .wait_applied(index, std::time::Duration::from_secs(10))
            .await;
        self.sync(now_ms);
    }

    /// Creates a topic with the default replication factor (validated first; `validate_only`
    /// stops there).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicConfigs,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Arc<Topic>, KafkaError> {
        self.create_topic_with(name, partitions, None, None, configs, validate_only, now_ms)
            .await
    }

    /// The replication factor a topic gets without one: `--default-replication-factor`, or
    /// min(3, live brokers).
    pub fn default_replication_factor(&self) -> i16 {
        if let Some(rf) = self.cluster.default_replication_factor {
            return rf;
        }
        let live = self.cluster.state.read(|i| i.live_brokers().count());
        i16::try_from(live.clamp(1, 3)).unwrap_or(1)
    }

    /// CreateTopics: the replication factor (`None`: the default) or manual assignments;
    /// `min.insync.replicas` defaults to a majority of the replication factor.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: Option<i16>,
        assignments: Option<Vec<Vec<i32>>>,
        mut configs: TopicConfigs,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Arc<Topic>, KafkaError> {
        validate_topic_name(name)?;
        let partitions = match &assignments {
            Some(a) => i32::try_from(a.len()).unwrap_or(i32::MAX),
            None => partitions,
        };
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(KafkaError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {partitions}"),
            ));
        }
        if self.topic(name).is_some() {
            return Err(KafkaError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        self.check_partition_budget(partitions)?;
        let rf = match (&assignments, replication_factor) {
            (Some(a), _) => a
                .first()
                .map_or(1, |r| i16::try_from(r.len()).unwrap_or(i16::MAX)),
            (None, Some(rf)) if rf > 0 => rf,
            _ => self.default_replication_factor(),
        };
        if rf > 1 && !configs.0.contains_key("min.insync.replicas") {
            configs
                .0
                .insert("min.insync.replicas".into(), (rf / 2 + 1).to_string());
        }
        let id = Uuid::new_v4();
        let (index, reply) = self
            .cluster
            .request(CtrlRequest::CreateTopic {
                name: name.to_string(),
                id,
                // A manual assignment says both (the controller refuses them beside it).
                num_partitions: assignments.is_none().then_some(partitions),
                replication_factor: assignments.is_none().then_some(rf),
                assignments,
                configs: configs.0.clone(),
                validate_only,
            })
            .await
            .map_err(ctrl)?;
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id,
                partition_count: 0,
                raw_configs: configs.0.clone(),
                configs,
            }));
        }
        let _ = reply;
        self.synced(index, now_ms).await;
        tracing::info!(
            topic = name,
            partitions,
            replication_factor = rf,
            "created topic"
        );
        self.topic(name)
            .filter(|t| t.id == id)
            .ok_or_else(|| unknown_topic(name))
    }

    pub async fn delete_topic(&self, name: &str, now_ms: i64) -> Result<Uuid, KafkaError> {
        let Some(topic) = self.topic(name) else {
            return Err(unknown_topic(name));
        };
        if crate::coordinator::is_internal(name) {
            // Kafka's controller refuses it the same way (INVALID_REQUEST).
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("topic {name:?} is internal (the broker's coordinator state) and cannot be deleted"),
            ));
        }
        let (index, _) = self
            .cluster
            .request(CtrlRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// The replication factor of an internal topic (Kafka's `offsets.topic.replication.factor`
    /// = 3): min(3, the cluster's size), the size being the larger of the registered brokers
    /// and the voters (`--voters`; 1 on a single node).
    pub fn internal_replication_factor(&self) -> i16 {
        let registered = self.cluster.state.read(|i| i.brokers.len());
        let size = registered.max(self.cluster.voters.len()).clamp(1, 3);
        i16::try_from(size).unwrap_or(1)
    }

    /// The internal topic `name` (one partition), created if it does not exist yet — as
    /// Kafka creates `__consumer_offsets` on the first FindCoordinator that needs it. `None`
    /// while fewer live brokers than its replication factor are registered (the caller answers
    /// COORDINATOR_NOT_AVAILABLE; the next request tries again).
    pub async fn ensure_internal_topic(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<Arc<Topic>>, KafkaError> {
        if let Some(t) = self.topic(name) {
            return Ok(Some(t));
        }
        let _one = self.internal_create.lock().await;
        if let Some(t) = self.topic(name) {
            return Ok(Some(t));
        }
        let rf = self.internal_replication_factor();
        let live = self.cluster.state.read(|i| i.live_brokers().count());
        if live < usize::try_from(rf).unwrap_or(1) {
            tracing::info!(
                topic = name,
                replication_factor = rf,
                live,
                "waiting for enough live brokers to create an internal topic"
            );
            return Ok(None);
        }
        self.create_internal_topic(name, Uuid::new_v4(), Some(rf), None, now_ms)
            .await
            .map(Some)
    }

    /// Creates an internal topic (no name check; the internal logs' configs: small segments,
    /// no retention, batches as large as a request).
    async fn create_internal_topic(
        &self,
        name: &str,
        id: Uuid,
        replication_factor: Option<i16>,
        assignments: Option<Vec<Vec<i32>>>,
        now_ms: i64,
    ) -> Result<Arc<Topic>, KafkaError> {
        let rf = match &assignments {
            Some(a) => a.first().map_or(1, |r| i16::try_from(r.len()).unwrap_or(1)),
            None => replication_factor.unwrap_or(1),
        };
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "-1".to_string());
        configs.insert("retention.bytes".to_string(), "-1".to_string());
        configs.insert(
            "segment.bytes".to_string(),
            crate::limits::INTERNAL_SEGMENT_BYTES.to_string(),
        );
        configs.insert(
            "max.message.bytes".to_string(),
            crate::limits::MAX_REQUEST_BYTES.to_string(),
        );
        if rf > 1 {
            configs.insert("min.insync.replicas".into(), (rf / 2 + 1).to_string());
        }
        let (index, _) = self
            .cluster
            .request(CtrlRequest::CreateTopic {
                name: name.to_string(),
                id,
                // A manual assignment names the partitions and their replicas itself.
                num_partitions: assignments.is_none().then_some(1),
                replication_factor: assignments.is_none().then_some(rf),
                assignments,
                configs,
                validate_only: false,
            })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        tracing::info!(
            topic = name,
            replication_factor = rf,
            "created internal topic"
        );
        self.topic(name).ok_or_else(|| unknown_topic(name))
    }

    /// A data directory written before internal topics were in the image holds
    /// `<name>-0` without `partition.metadata`: it becomes the internal topic's partition 0,
    /// led by this node (its id written first, durably, so the reconcile adopts the directory
    /// instead of emptying it as a leftover). Nothing to do when the topic exists.
    pub async fn adopt_internal_log(&self, name: &str, now_ms: i64) -> Result<(), KafkaError> {
        let dir = partition_dir(&self.data_dir, name, 0);
        if self.topic(name).is_some() || !dir.is_dir() {
            return Ok(());
        }
        let _one = self.internal_create.lock().await;
        if self.topic(name).is_some() {
            return Ok(());
        }
        // A start that crashed after writing the file and before the topic was committed
        // finds the file (the sweep leaves internal directories alone): same id again.
        let id = match read_partition_metadata(&dir) {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4();
                write_partition_metadata(&dir, id)?;
                fsync_dir(&self.data_dir)?;
                id
            }
        };
        let me = self.replicas.local_id();
        self.create_internal_topic(name, id, None, Some(vec![vec![me]]), now_ms)
            .await?;
        tracing::info!(
            topic = name,
            "adopted the internal log of an older version as partition 0 of the internal topic"
        );
        Ok(())
    }

    /// Grows a topic to `count` partitions (CreatePartitions).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        self.create_partitions_with(name, count, None, validate_only, now_ms)
            .await
    }

    /// CreatePartitions with optional assignments of the new partitions.
    pub async fn create_partitions_with(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let Some(topic) = self.topic(name) else {
            return Err(unknown_topic(name));
        };
        let current = topic.partition_count;
        if count <= current || count > MAX_PARTITIONS_PER_TOPIC {
            return Err(KafkaError::new(
                ResponseError::InvalidPartitions,
                format!("topic {name:?} has {current} partitions; the new count must be larger (and at most {MAX_PARTITIONS_PER_TOPIC}), got {count}"),
            ));
        }
        self.check_partition_budget(count - current)?;
        let (index, _) = self
            .cluster
            .request(CtrlRequest::CreatePartitions {
                topic: name.to_string(),
                total: count,
                assignments,
                validate_only,
            })
            .await
            .map_err(ctrl)?;
        if !validate_only {
            self.synced(index, now_ms).await;
        }
        Ok(())
    }

    /// Replaces a topic's configs (AlterConfigs semantics; IncrementalAlterConfigs computes
    /// the full set first).
    pub async fn replace_configs(
        &self,
        name: &str,
        configs: TopicConfigs,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        if self.topic(name).is_none() {
            return Err(unknown_topic(name));
        }
        // Every value was validated by `TopicConfigs::from_pairs`; the log's own checks run
        // here too, before the controller sees them, so nothing refused is ever committed.
        let _ = configs.log_config();
        for (n, v) in &configs.0 {
            crate::topic_config::validate(n, v)
                .map_err(|e| KafkaError::new(ResponseError::InvalidConfig, e))?;
        }
        configs
            .check_combination()
            .map_err(|e| KafkaError::new(ResponseError::InvalidConfig, e))?;
        if validate_only {
            return Ok(());
        }
        let (index, _) = self
            .cluster
            .request(CtrlRequest::ReplaceTopicConfigs {
                topic: name.to_string(),
                configs: configs.0,
            })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        Ok(())
    }

    /// The configs set on a group (empty if none).
    /// The leader of `topic`-`partition` in the image: UNKNOWN_TOPIC_OR_PARTITION when it does
    /// not exist, LEADER_NOT_AVAILABLE while it has no leader. (Where a node sends what only a
    /// partition's leader may do: markers, share state, dead letters.)
    pub fn leader_of(&self, topic: &str, partition: i32) -> Result<i32, KafkaError> {
        let unknown = || {
            KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            )
        };
        let t = self.topic(topic).ok_or_else(unknown)?;
        let leader = self
            .cluster
            .state
            .read(|img| img.partition(&t.id, partition).map(|p| p.leader))
            .ok_or_else(unknown)?;
        if leader < 0 {
            return Err(KafkaError::new(
                ResponseError::LeaderNotAvailable,
                format!("{topic}-{partition} has no leader"),
            ));
        }
        Ok(leader)
    }

    /// A share group's settings (its group configs over the defaults).
    pub fn share_settings(&self, group: &str) -> crate::group_config::ShareSettings {
        self.group_configs(group).share_settings(group)
    }

    pub fn group_configs(&self, group: &str) -> GroupConfigs {
        self.group_configs
            .read()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Every group with configs set on it.
    pub fn groups_with_configs(&self) -> Vec<(String, GroupConfigs)> {
        self.group_configs
            .read()
            .iter()
            .map(|(g, c)| (g.clone(), c.clone()))
            .collect()
    }

    /// Replaces a group's configs (validated by the caller).
    pub async fn replace_group_configs(
        &self,
        group: &str,
        configs: GroupConfigs,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let (index, _) = self
            .cluster
            .request(CtrlRequest::ReplaceGroupConfigs {
                group: group.to_string(),
                configs: configs.0,
            })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        Ok(())
    }

    /// The client quotas set in the cluster, by entity.
    pub fn client_quotas(&self) -> Vec<sluice_controller::ClientQuotas> {
        self.quota_image.lock().clone()
    }

    /// Sets and removes quotas of one entity (keys and values validated by the caller).
    pub async fn alter_client_quotas(
        &self,
        entity: sluice_controller::QuotaEntity,
        changes: BTreeMap<String, Option<f64>>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let (index, _) = self
            .cluster
            .request(CtrlRequest::AlterClientQuotas { entity, changes })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        Ok(())
    }

    /// Removes and sets SCRAM credentials (checked by the caller), all or none; returns once
    /// this node applied them.
    pub async fn alter_scram_credentials(
        &self,
        removals: Vec<(String, i8)>,
        upsertions: Vec<(String, sluice_controller::ScramCredentialInfo)>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let (index, _) = self
            .cluster
            .request(CtrlRequest::AlterScramCredentials {
                removals,
                upsertions,
            })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        Ok(())
    }

    /// Adds ACL bindings (validated by the caller); returns once this node applied them.
    pub async fn create_acls(
        &self,
        bindings: Vec<sluice_acl::AclBinding>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let (index, _) = self
            .cluster
            .request(CtrlRequest::CreateAcls { bindings })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        Ok(())
    }

    /// Removes the bindings the filters match; returns what each filter removed.
    pub async fn delete_acls(
        &self,
        filters: Vec<sluice_acl::AclBindingFilter>,
        now_ms: i64,
    ) -> Result<Vec<Vec<sluice_acl::AclBinding>>, KafkaError> {
        let (index, reply) = self
            .cluster
            .request(CtrlRequest::DeleteAcls { filters })
            .await
            .map_err(ctrl)?;
        self.synced(index, now_ms).await;
        match reply {
            crate::cluster::CtrlReply::AclsDeleted(d) => Ok(d),
            _ => Err(unknown_server("unexpected controller reply to DeleteAcls")),
        }
    }

    /// The SCRAM credentials of the image: per user, each mechanism's code and iterations.
    pub fn scram_users(&self) -> BTreeMap<String, Vec<(i8, i32)>> {
        self.cluster.state.read(|img| {
            img.scram_credentials
                .iter()
                .map(|(name, creds)| {
                    (
                        name.clone(),
                        creds
                            .values()
                            .map(|c| (c.mechanism, c.iterations))
                            .collect(),
                    )
                })
                .collect()
        })
    }

    /// Hands out a new producer id, asking the controller for a new block when the current
    /// one runs out (blocks never overlap, across nodes and restarts).
    pub async fn allocate_producer_id(&self, _now_ms: i64) -> Result<i64, KafkaError> {
        {
            let mut ids = self.producer_ids.lock();
            if ids.next < ids.block_end {
                ids.next += 1;
                return Ok(ids.next - 1);
            }
        }
        let _one = self.pid_lock.lock().await;
        let exhausted = {
            let ids = self.producer_ids.lock();
            ids.next >= ids.block_end
        };
        if exhausted {
            let (_, reply) = self
                .cluster
                .request(CtrlRequest::AllocateProducerIds {
                    broker_id: self.replicas.local_id(),
                    broker_epoch: self.cluster.broker_epoch(),
                })
                .await
                .map_err(ctrl)?;
            let CtrlReply::ProducerIds { first, len } = reply else {
                return Err(unknown_server("unexpected controller reply"));
            };
            let mut ids = self.producer_ids.lock();
            ids.next = first;
            ids.block_end = first.saturating_add(len);
        }
        let mut ids = self.producer_ids.lock();
        ids.next += 1;
        Ok(ids.next - 1)
    }
}

type OldState = (
    BTreeMap<String, (Uuid, i32, TopicConfigs)>,
    BTreeSet<String>,
    i64,
    BTreeMap<String, GroupConfigs>,
);

/// Replays the pre-cluster metadata log: live topics, deleted names, the next producer id
/// block, group configs.
fn read_old_events(dir: &Path, now_ms: i64) -> Result<OldState, KafkaError> {
    let log = Partition::open(dir, 0, internal_log::log_config(), now_ms)?;
    let mut events = Vec::new();
    internal_log::replay(&log, |_, value| {
        match value.map(serde_json::from_slice::<Event>) {
            Some(Ok(e)) => events.push(e),
            Some(Err(e)) => tracing::error!(error = %e, "skipping unreadable metadata event"),
            None => {}
        }
    })?;
    drop(log);
    let mut specs: BTreeMap<String, (Uuid, i32, TopicConfigs)> = BTreeMap::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut next_block_start = 0;
    let mut group_configs = BTreeMap::new();
    for event in events {
        match event {
            Event::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => {
                specs.insert(name, (id, partitions, configs));
            }
            Event::PartitionsCreated { name, count } => {
                if let Some(s) = specs.get_mut(&name) {
                    s.1 = count;
                }
            }
            Event::ConfigsReplaced { name, configs } => {
                if let Some(s) = specs.get_mut(&name) {
                    s.2 = configs;
                }
            }
            Event::TopicDeleted { name, id } => {
                if specs
                    .get(&name)
                    .is_some_and(|s| id.is_none_or(|id| id == s.0))
                {
                    specs.remove(&name);
                }
                deleted.insert(name);
            }
            Event::ProducerIdBlock {
                next_block_start: n,
            } => next_block_start = n,
            Event::GroupConfigsReplaced { group, configs } => {
                let configs = configs.sanitized(&group);
                if configs.0.is_empty() {
                    group_configs.remove(&group);
                } else {
                    group_configs.insert(group, configs);
                }
            }
        }
    }
    Ok((specs, deleted, next_block_start, group_configs))
}

/// The topic id a partition directory's `partition.metadata` names.
pub fn read_partition_metadata(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

/// Writes `partition.metadata` durably (temp file, fsync, rename, fsync the directory).
pub fn write_partition_metadata(dir: &Path, id: Uuid) -> Result<(), KafkaError> {
    use std::io::Write;
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("version: 0\ntopic_id: {id}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(PARTITION_METADATA_FILE))?;
    fsync_dir(dir)
}

/// Removes partition directories that no live topic owns: those of deleted names that were
/// not created again (a deletion a crash cut short), and those past a live topic's partition
/// count (a CreatePartitions a crash cut short). Names never seen in the log are left alone.
fn sweep(
    data_dir: &Path,
    live: &BTreeMap<String, (Uuid, i32, TopicConfigs)>,
    deleted: &BTreeSet<String>,
) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    let mut removed = false;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((name, index)) = file_name
            .to_str()
            .and_then(|n| n.rsplit_once('-'))
            .and_then(|(n, i)| Some((n, i.parse::<i32>().ok()?)))
        else {
            continue;
        };
        let orphan = match live.get(name) {
            Some((_, count, _)) => index >= *count,
            None => deleted.contains(name),
        };
        if orphan && entry.path().is_dir() {
            tracing::info!(dir = %entry.path().display(), "removing the directory of a deleted partition");
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed = true,
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove")
                }
            }
        }
    }
    if removed {
        let _ = fsync_dir(data_dir);
    }
}

/// fsyncs a directory, so the names created or removed in it survive a power loss.
fn fsync_dir(dir: &Path) -> Result<(), KafkaError> {
    Ok(sluice_storage::fsync_dir(dir)?)
}

pub fn unknown_topic(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}

#[cfg(test)]
mod tests;
