//! Cluster metadata: the topics (name, id, partition count, configs), group configs and the
//! producer-id counter. The partitions' data is the `ReplicaManager`'s (replica_manager.rs):
//! topic creation, deletion, new partitions and config changes open, delete or reconfigure
//! replicas through it.
//!
//! Every change is an event appended (and fsynced) to the internal metadata log
//! `__cluster_metadata-0` before it takes effect in memory; on start the log is replayed.
//! Readers take a cheap snapshot (`Arc<Topic>`); writers are serialised by `change_lock`.
//!
//! Its internal log (`__cluster_metadata-0`) is a `Partition` opened here, not a replica of the
//! `ReplicaManager` (replica_manager.rs): internal logs become replicated partitions in a later
//! wave of issue #10.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::KafkaError;
use crate::group_config::GroupConfigs;
use crate::internal_log;
use crate::limits::MAX_PARTITIONS_PER_TOPIC;
use crate::partition::Partition;
use crate::replica_manager::{
    ReplicaConfig, ReplicaManager, Role, TopicIdPartition, INITIAL_LEADER_EPOCH,
};
use crate::topic_config::TopicConfigs;

pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// Producer ids are handed out from blocks recorded in the metadata log, as Kafka does, so a
/// restart never reuses one.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// The number of partitions (0..count).
    pub partition_count: i32,
    pub configs: TopicConfigs,
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

/// On a single node this node leads every partition at the initial epoch.
const SINGLE_NODE_ROLE: Role = Role::Leader {
    leader_epoch: INITIAL_LEADER_EPOCH,
};

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

    fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.by_name.remove(name)?;
        self.by_id.remove(&topic.id);
        Some(topic)
    }
}

pub struct Metadata {
    replicas: Arc<ReplicaManager>,
    topics: RwLock<Topics>,
    log: Partition,
    compaction: internal_log::Compaction,
    /// `--max-partitions`: user partitions this broker will hold.
    max_partitions: usize,
    change_lock: tokio::sync::Mutex<()>,
    producer_ids: parking_lot::Mutex<ProducerIds>,
    group_configs: RwLock<BTreeMap<String, GroupConfigs>>,
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

impl Metadata {
    /// Opens the metadata log, replays it and opens every topic's replicas in `replicas`.
    pub fn open(
        data_dir: &Path,
        max_partitions: usize,
        replicas: Arc<ReplicaManager>,
        now_ms: i64,
    ) -> Result<Self, KafkaError> {
        let log = Partition::open(
            &data_dir.join(METADATA_LOG_DIR),
            0,
            internal_log::log_config(),
            now_ms,
        )?;
        let mut events = Vec::new();
        internal_log::replay(&log, |_, value| {
            match value.map(serde_json::from_slice::<Event>) {
                Some(Ok(e)) => events.push(e),
                Some(Err(e)) => tracing::error!(error = %e, "skipping unreadable metadata event"),
                None => {}
            }
        })?;
        let mut specs: BTreeMap<String, (Uuid, i32, TopicConfigs)> = BTreeMap::new();
        // Names whose incarnations were deleted: directories left under them by a deletion a
        // crash cut short are removed after replay, unless the name lives again.
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
                    // Deletion addresses an incarnation: a later topic of the same name is
                    // never touched by it. Replay never removes files (see `sweep`).
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
        sweep(data_dir, &specs, &deleted);
        let mut topics = Topics::default();
        for (name, (id, count, configs)) in specs {
            let configs = configs.sanitized(&name);
            let config = replica_config(&configs);
            for partition in 0..count {
                let tp = TopicIdPartition {
                    topic_id: id,
                    partition,
                };
                replicas.open(tp, &name, &config, SINGLE_NODE_ROLE, now_ms)?;
            }
            topics.insert(Arc::new(Topic {
                name,
                id,
                partition_count: count,
                configs,
            }));
        }
        let compaction = internal_log::Compaction::new(log.size_bytes());
        Ok(Metadata {
            replicas,
            topics: RwLock::new(topics),
            log,
            compaction,
            max_partitions,
            change_lock: tokio::sync::Mutex::new(()),
            producer_ids: parking_lot::Mutex::new(ProducerIds {
                next: next_block_start,
                block_end: next_block_start,
            }),
            group_configs: RwLock::new(group_configs),
        })
    }

    /// Logs an event and waits until it is fsynced. Callers hold `change_lock`, have validated
    /// everything the event carries (so replaying it cannot fail), and apply it after this.
    async fn record(&self, event: &Event, now_ms: i64) -> Result<(), KafkaError> {
        let value = serde_json::to_vec(event)
            .map_err(|e| KafkaError::new(ResponseError::UnknownServerError, e.to_string()))?;
        self.compaction.appended(value.len());
        internal_log::append_durably(&self.log, &[(None, Some(value))], now_ms).await?;
        Ok(())
    }

    /// Rewrites the metadata log as a snapshot of the live state when enough has been
    /// appended since the last one. Callers hold `change_lock` and have applied their change.
    async fn maybe_compact(&self, now_ms: i64) {
        if !self.compaction.due() || !self.compaction.start() {
            return;
        }
        let mut events: Vec<Event> = Vec::new();
        for t in self.topics.read().by_name.values() {
            events.push(Event::TopicCreated {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partition_count,
                configs: t.configs.clone(),
            });
        }
        for (group, configs) in self.group_configs.read().iter() {
            events.push(Event::GroupConfigsReplaced {
                group: group.clone(),
                configs: configs.clone(),
            });
        }
        events.push(Event::ProducerIdBlock {
            next_block_start: self.producer_ids.lock().block_end,
        });
        let records: Vec<internal_log::KeyValue> = events
            .iter()
            .filter_map(|e| serde_json::to_vec(e).ok())
            .map(|v| (None, Some(v)))
            .collect();
        let appended = internal_log::append_snapshot(&self.log, &records, now_ms);
        // A failure is logged there; the change itself is done.
        let _ = internal_log::finish_snapshot(&self.log, &self.compaction, appended).await;
    }

    /// Bytes the metadata log holds on disk.
    pub fn log_bytes(&self) -> u64 {
        self.log.size_bytes()
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
        let now = self.partition_count();
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

    /// Creates a topic (validated first; `validate_only` stops there).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicConfigs,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Arc<Topic>, KafkaError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(KafkaError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {partitions}"),
            ));
        }
        let _change = self.change_lock.lock().await;
        if self.topics.read().by_name.contains_key(name) {
            return Err(KafkaError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        self.check_partition_budget(partitions)?;
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id,
                partition_count: 0,
                configs,
            }));
        }
        // Directories first, event second: a crash in between leaves orphan directories that
        // are emptied when the name is created again.
        let opened = self.replicas.create(
            id,
            name,
            0..partitions,
            &replica_config(&configs),
            SINGLE_NODE_ROLE,
            now_ms,
        )?;
        self.record(
            &Event::TopicCreated {
                name: name.to_string(),
                id,
                partitions,
                configs: configs.clone(),
            },
            now_ms,
        )
        .await?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            partition_count: partitions,
            configs,
        });
        self.replicas.install(opened);
        self.topics.write().insert(topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        self.maybe_compact(now_ms).await;
        Ok(topic)
    }

    pub async fn delete_topic(&self, name: &str, now_ms: i64) -> Result<Uuid, KafkaError> {
        let _change = self.change_lock.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(unknown_topic(name));
        };
        self.record(
            &Event::TopicDeleted {
                name: name.to_string(),
                id: Some(topic.id),
            },
            now_ms,
        )
        .await?;
        self.topics.write().remove(name);
        // The deletion is durable; its files go now, once. A crash before they are gone
        // leaves directories that the next start sweeps (unless the name was created again,
        // which clears them first).
        self.replicas
            .delete_topic(topic.id, topic.partition_count)?;
        tracing::info!(topic = name, "deleted topic");
        self.maybe_compact(now_ms).await;
        Ok(topic.id)
    }

    /// Grows a topic to `count` partitions (CreatePartitions).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let _change = self.change_lock.lock().await;
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
        if validate_only {
            return Ok(());
        }
        let opened = self.replicas.create(
            topic.id,
            name,
            current..count,
            &replica_config(&topic.configs),
            SINGLE_NODE_ROLE,
            now_ms,
        )?;
        self.record(
            &Event::PartitionsCreated {
                name: name.to_string(),
                count,
            },
            now_ms,
        )
        .await?;
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partition_count: count,
            configs: topic.configs.clone(),
        });
        self.replicas.install(opened);
        self.topics.write().insert(updated);
        self.maybe_compact(now_ms).await;
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
        let _change = self.change_lock.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(unknown_topic(name));
        };
        // Every value was validated by `TopicConfigs::from_pairs`; the log's own checks run
        // here too, before the event is logged, so nothing refused is ever written.
        let log_config = configs.log_config();
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
        self.record(
            &Event::ConfigsReplaced {
                name: name.to_string(),
                configs: configs.clone(),
            },
            now_ms,
        )
        .await?;
        self.replicas.reconfigure(
            topic.id,
            topic.partition_count,
            &ReplicaConfig {
                log_config,
                conditional: crate::conditional::enabled(&configs), // conditional append
            },
        )?;
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partition_count: topic.partition_count,
            configs,
        });
        self.topics.write().insert(updated);
        self.maybe_compact(now_ms).await;
        Ok(())
    }

    /// The configs set on a group (empty if none).
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
        let _change = self.change_lock.lock().await;
        self.record(
            &Event::GroupConfigsReplaced {
                group: group.to_string(),
                configs: configs.clone(),
            },
            now_ms,
        )
        .await?;
        {
            let mut all = self.group_configs.write();
            if configs.0.is_empty() {
                all.remove(group);
            } else {
                all.insert(group.to_string(), configs);
            }
        }
        self.maybe_compact(now_ms).await;
        Ok(())
    }

    /// Hands out a new producer id, persisting a new block when the current one runs out.
    pub async fn allocate_producer_id(&self, now_ms: i64) -> Result<i64, KafkaError> {
        {
            let mut ids = self.producer_ids.lock();
            if ids.next < ids.block_end {
                ids.next += 1;
                return Ok(ids.next - 1);
            }
        }
        let _change = self.change_lock.lock().await;
        let start = {
            let ids = self.producer_ids.lock();
            if ids.next < ids.block_end {
                None
            } else {
                Some(ids.block_end)
            }
        };
        if let Some(start) = start {
            self.record(
                &Event::ProducerIdBlock {
                    next_block_start: start + PRODUCER_ID_BLOCK,
                },
                now_ms,
            )
            .await?;
            let mut ids = self.producer_ids.lock();
            ids.next = start;
            ids.block_end = start + PRODUCER_ID_BLOCK;
        }
        let mut ids = self.producer_ids.lock();
        ids.next += 1;
        Ok(ids.next - 1)
    }
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
mod tests {
    use super::*;
    use crate::replica_manager::partition_dir;

    fn rm(dir: &Path) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager::new(1, dir))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A value stored by an older, looser version (or by hand) must not keep the broker down:
    /// replay drops it with a warning and the default applies.
    #[test]
    fn replay_survives_a_stored_config_that_no_longer_validates() {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let m = Metadata::open(dir.path(), 100, rm(dir.path()), 0).unwrap();
            let bad = TopicConfigs(
                [("segment.bytes", "14"), ("retention.ms", "5000")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            m.record(
                &Event::TopicCreated {
                    name: "t".into(),
                    id: Uuid::new_v4(),
                    partitions: 1,
                    configs: bad,
                },
                0,
            )
            .await
            .unwrap();
            m.record(
                &Event::GroupConfigsReplaced {
                    group: "g".into(),
                    configs: GroupConfigs(
                        [(
                            "share.record.lock.duration.ms".to_string(),
                            "-5".to_string(),
                        )]
                        .into_iter()
                        .collect(),
                    ),
                },
                0,
            )
            .await
            .unwrap();
        });
        let m = Metadata::open(dir.path(), 100, rm(dir.path()), 0).unwrap();
        let t = m.topic("t").unwrap();
        assert_eq!(t.configs.0.get("segment.bytes"), None);
        assert_eq!(t.configs.get("retention.ms").as_deref(), Some("5000"));
        assert!(m.group_configs("g").0.is_empty());
    }

    /// The deletion of one incarnation never touches a later topic of the same name, on replay
    /// or otherwise; a snapshot keeps every live topic and drops the history before it.
    #[test]
    fn deletion_addresses_an_incarnation_and_snapshots_keep_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let first_id = runtime().block_on(async {
            let m = Metadata::open(dir.path(), 100, rm(dir.path()), 0).unwrap();
            let first = m
                .create_topic("t", 2, TopicConfigs::default(), false, 0)
                .await
                .unwrap();
            m.delete_topic("t", 0).await.unwrap();
            m.create_topic("t", 1, TopicConfigs::default(), false, 0)
                .await
                .unwrap();
            std::fs::write(partition_dir(dir.path(), "t", 0).join("marker"), b"x").unwrap();
            first.id
        });
        let m = Metadata::open(dir.path(), 100, rm(dir.path()), 0).unwrap();
        let t = m.topic("t").unwrap();
        assert_ne!(t.id, first_id);
        assert_eq!(t.partition_count, 1);
        assert!(partition_dir(dir.path(), "t", 0).join("marker").exists());
        assert!(!partition_dir(dir.path(), "t", 1).exists());
        assert!(m.topic_by_id(t.id).is_some() && m.topic_by_id(first_id).is_none());
        // The replicas reopened with the topics, led here at the initial epoch.
        assert_eq!(
            m.replicas.get(t.tp(0)).map(|r| r.role()),
            Some(SINGLE_NODE_ROLE)
        );
        assert!(m.replicas.get(t.tp(1)).is_none());
        assert_eq!(m.replicas.len(), 1);
        runtime().block_on(async {
            m.create_partitions("t", 2, false, 0).await.unwrap();
        });
        let t = m.topic("t").unwrap();
        assert_eq!(t.partition_count, 2);
        assert_eq!(
            m.replicas.get(t.tp(1)).map(|r| (r.index(), r.role())),
            Some((1, SINGLE_NODE_ROLE))
        );
        assert_eq!(m.replicas.len(), 2);

        // Churn until snapshots were written, then reopen.
        m.compaction.set_min_bytes(4096);
        m.log
            .set_config(sluice_storage::LogConfig {
                segment_bytes: 4096,
                ..internal_log::log_config()
            })
            .unwrap();
        runtime().block_on(async {
            let pad = "x".repeat(64 << 10);
            for i in 0..200 {
                let configs = TopicConfigs::from_pairs([(
                    "retention.ms",
                    format!("{}", 1_000_000 + i).as_str(),
                )])
                .unwrap();
                m.replace_configs("t", configs, false, 0).await.unwrap();
                m.replace_group_configs(
                    "g",
                    GroupConfigs(
                        [(
                            "errors.deadletterqueue.topic.name".to_string(),
                            format!("d{}", &pad[..8]),
                        )]
                        .into_iter()
                        .collect(),
                    ),
                    0,
                )
                .await
                .unwrap();
                // Large events, so the log passes the compaction threshold quickly.
                let _ = m
                    .create_topic(&format!("p{i}"), 1, TopicConfigs::default(), false, 0)
                    .await;
                m.delete_topic(&format!("p{i}"), 0).await.unwrap();
            }
        });
        // 800 events of ~150 bytes, against snapshots every 4 KiB: far less than the history.
        let before = m.log_bytes();
        assert!(before < 64 << 10, "{before}");
        drop(m);
        let m = Metadata::open(dir.path(), 100, rm(dir.path()), 0).unwrap();
        assert_eq!(
            m.topic("t").unwrap().configs.get("retention.ms").as_deref(),
            Some("1000199")
        );
        assert_eq!(m.topics().len(), 1);
        assert_eq!(m.replicas.len(), 2, "the churned topics left no replica");
        assert!(m.log_bytes() <= before);
    }
}
