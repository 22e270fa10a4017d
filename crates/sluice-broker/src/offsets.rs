//! Committed consumer-group offsets (Kafka's `__consumer_offsets`): kept in memory, written
//! first to the internal log `__consumer_offsets-0` (key = group/topic/partition, value = the
//! commit, null = deleted) and replayed on start.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::FlushPolicy;
use crate::error::KafkaError;
use crate::internal_log;
use crate::partition::Partition;

pub const OFFSETS_LOG_DIR: &str = "__consumer_offsets-0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct Key {
    group: String,
    topic: String,
    partition: i32,
}

type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

pub struct OffsetStore {
    log: Partition,
    groups: RwLock<HashMap<String, GroupOffsets>>,
    flush: FlushPolicy,
}

impl OffsetStore {
    pub fn open(data_dir: &Path, flush: FlushPolicy, now_ms: i64) -> Result<Self, KafkaError> {
        let log = Partition::open(
            &data_dir.join(OFFSETS_LOG_DIR),
            0,
            Default::default(),
            now_ms,
        )?;
        let mut groups: HashMap<String, GroupOffsets> = HashMap::new();
        internal_log::replay(&log, |key, value| {
            let Some(Ok(key)) = key.map(serde_json::from_slice::<Key>) else {
                return;
            };
            match value.map(serde_json::from_slice::<CommittedOffset>) {
                Some(Ok(c)) => {
                    groups
                        .entry(key.group)
                        .or_default()
                        .insert((key.topic, key.partition), c);
                }
                _ => {
                    if let Some(g) = groups.get_mut(&key.group) {
                        g.remove(&(key.topic, key.partition));
                        if g.is_empty() {
                            groups.remove(&key.group);
                        }
                    }
                }
            }
        })?;
        Ok(OffsetStore {
            log,
            groups: RwLock::new(groups),
            flush,
        })
    }

    /// Writes commits (Some) and deletions (None), then applies them. Under `flush=always` the
    /// write is fsynced before this returns, like produced data.
    pub async fn write(
        &self,
        group: &str,
        changes: Vec<(String, i32, Option<CommittedOffset>)>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        if changes.is_empty() {
            return Ok(());
        }
        let records: Vec<internal_log::KeyValue> = changes
            .iter()
            .map(|(topic, partition, commit)| {
                let key = Key {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (
                    serde_json::to_vec(&key).ok(),
                    commit.as_ref().and_then(|c| serde_json::to_vec(c).ok()),
                )
            })
            .collect();
        let buf = internal_log::encode_batch(&records, now_ms)?;
        let appended = self.log.append(&buf, now_ms)?;
        if self.flush == FlushPolicy::Always {
            self.log.make_durable(appended.last_offset + 1).await?;
        }
        let mut groups = self.groups.write();
        for (topic, partition, commit) in changes {
            match commit {
                Some(c) => {
                    groups
                        .entry(group.to_string())
                        .or_default()
                        .insert((topic, partition), c);
                }
                None => {
                    if let Some(g) = groups.get_mut(group) {
                        g.remove(&(topic, partition));
                        if g.is_empty() {
                            groups.remove(group);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.groups
            .read()
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)))
            .cloned()
    }

    /// Every committed offset of a group, by topic and partition.
    pub fn group(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.groups
            .read()
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.groups.read().keys().cloned().collect()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.read().contains_key(group)
    }

    /// Deletes every offset of a group (DeleteGroups).
    pub async fn delete_group(&self, group: &str, now_ms: i64) -> Result<(), KafkaError> {
        let changes = self
            .group(group)
            .into_iter()
            .map(|(t, p, _)| (t, p, None))
            .collect();
        self.write(group, changes, now_ms).await
    }

    /// Deletes the offsets of a topic in every group (DeleteTopics).
    pub async fn delete_topic(&self, topic: &str, now_ms: i64) -> Result<(), KafkaError> {
        let affected: Vec<(String, Vec<i32>)> = self
            .groups
            .read()
            .iter()
            .map(|(g, offsets)| {
                (
                    g.clone(),
                    offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .map(|(_, p)| *p)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        for (group, partitions) in affected {
            let changes = partitions
                .into_iter()
                .map(|p| (topic.to_string(), p, None))
                .collect();
            self.write(&group, changes, now_ms).await?;
        }
        Ok(())
    }
}
