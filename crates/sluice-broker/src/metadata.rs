//! Cluster metadata: the topics, their partitions and configs, and the producer-id counter.
//!
//! Every change is an event appended (and fsynced) to the internal metadata log
//! `__cluster_metadata-0` before it takes effect in memory; on start the log is replayed.
//! Readers take a cheap snapshot (`Arc<Topic>`); writers are serialised by `change_lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
use crate::topic_config::TopicConfigs;

pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// Producer ids are handed out from blocks recorded in the metadata log, as Kafka does, so a
/// restart never reuses one.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
    pub configs: TopicConfigs,
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
    TopicDeleted {
        name: String,
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

pub struct Metadata {
    data_dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    log: Partition,
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

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl Metadata {
    /// Opens the metadata log, replays it and opens every topic's partitions.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, KafkaError> {
        let log = Partition::open(
            &data_dir.join(METADATA_LOG_DIR),
            0,
            Default::default(),
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
                Event::TopicDeleted { name } => {
                    if let Some((_, count, _)) = specs.remove(&name) {
                        // The deletion may have been cut short by a crash: finish it.
                        for p in 0..count {
                            let _ = std::fs::remove_dir_all(partition_dir(data_dir, &name, p));
                        }
                    }
                }
                Event::ProducerIdBlock {
                    next_block_start: n,
                } => next_block_start = n,
                Event::GroupConfigsReplaced { group, configs } => {
                    if configs.0.is_empty() {
                        group_configs.remove(&group);
                    } else {
                        group_configs.insert(group, configs);
                    }
                }
            }
        }
        let mut topics = BTreeMap::new();
        for (name, (id, count, configs)) in specs {
            let log_config = configs.log_config();
            let partitions = (0..count)
                .map(|p| {
                    Partition::open(
                        &partition_dir(data_dir, &name, p),
                        p,
                        log_config.clone(),
                        now_ms,
                    )
                    .map(Arc::new)
                })
                .collect::<Result<Vec<_>, _>>()?;
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    id,
                    partitions,
                    configs,
                }),
            );
        }
        Ok(Metadata {
            data_dir: data_dir.to_path_buf(),
            topics: RwLock::new(topics),
            log,
            change_lock: tokio::sync::Mutex::new(()),
            producer_ids: parking_lot::Mutex::new(ProducerIds {
                next: next_block_start,
                block_end: next_block_start,
            }),
            group_configs: RwLock::new(group_configs),
        })
    }

    async fn record(&self, event: &Event, now_ms: i64) -> Result<(), KafkaError> {
        let value = serde_json::to_vec(event)
            .map_err(|e| KafkaError::new(ResponseError::UnknownServerError, e.to_string()))?;
        internal_log::append_durably(&self.log, &[(None, Some(value))], now_ms).await?;
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read();
        let t = topics.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .cloned()
    }

    pub fn partition_count(&self) -> usize {
        self.topics
            .read()
            .values()
            .map(|t| t.partitions.len())
            .sum()
    }

    /// Opens empty partitions `range` of a topic, clearing any directory a crash left behind
    /// (directories are made before the event that names them is logged).
    fn open_new_partitions(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
        log_config: &sluice_storage::LogConfig,
        now_ms: i64,
    ) -> Result<Vec<Arc<Partition>>, KafkaError> {
        range
            .map(|p| {
                let dir = partition_dir(&self.data_dir, name, p);
                let _ = std::fs::remove_dir_all(&dir);
                Partition::open(&dir, p, log_config.clone(), now_ms).map(Arc::new)
            })
            .collect()
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
        if self.topics.read().contains_key(name) {
            return Err(KafkaError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let id = Uuid::new_v4();
        let log_config = configs.log_config();
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id,
                partitions: Vec::new(),
                configs,
            }));
        }
        // Directories first, event second: a crash in between leaves orphan directories that
        // are emptied when the name is created again.
        let opened = self.open_new_partitions(name, 0..partitions, &log_config, now_ms)?;
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
            partitions: opened,
            configs,
        });
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
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
            },
            now_ms,
        )
        .await?;
        self.topics.write().remove(name);
        for p in &topic.partitions {
            p.delete_files()?;
        }
        tracing::info!(topic = name, "deleted topic");
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
        let current = topic.partitions.len() as i32;
        if count <= current || count > MAX_PARTITIONS_PER_TOPIC {
            return Err(KafkaError::new(
                ResponseError::InvalidPartitions,
                format!("topic {name:?} has {current} partitions; the new count must be larger (and at most {MAX_PARTITIONS_PER_TOPIC}), got {count}"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let log_config = topic.configs.log_config();
        let mut partitions = topic.partitions.clone();
        partitions.extend(self.open_new_partitions(name, current..count, &log_config, now_ms)?);
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
            partitions,
            configs: topic.configs.clone(),
        });
        self.topics.write().insert(name.to_string(), updated);
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
        let log_config = configs.log_config();
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
        for p in &topic.partitions {
            p.set_config(log_config.clone())?;
        }
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs,
        });
        self.topics.write().insert(name.to_string(), updated);
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
        let mut all = self.group_configs.write();
        if configs.0.is_empty() {
            all.remove(group);
        } else {
            all.insert(group.to_string(), configs);
        }
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

pub fn unknown_topic(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}
