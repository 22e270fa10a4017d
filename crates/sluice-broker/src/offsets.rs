//! Committed consumer-group offsets (Kafka's `__consumer_offsets`): kept in memory, written
//! first to the internal log `__consumer_offsets-0` (key = group/topic/partition, value = the
//! commit, null = deleted), fsynced before they take effect, and replayed on start. The log is
//! compacted by snapshots (`internal_log`), so it stays proportional to the live offsets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

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

/// One change: a commit (Some) or a deletion (None) of a group's offset for a partition.
type Change = (String, i32, Option<CommittedOffset>);

/// Changes written to the log but not yet known durable, in log order.
struct Pending {
    /// (offset after the batch, group, changes)
    queue: VecDeque<(i64, String, Vec<Change>)>,
}

pub struct OffsetStore {
    log: Partition,
    /// What readers see: only changes that are on disk.
    groups: RwLock<HashMap<String, GroupOffsets>>,
    /// Taken to append, and to apply: changes reach `groups` in log order, so memory always
    /// equals what a replay of the log would build.
    pending: Mutex<Pending>,
    compaction: internal_log::Compaction,
}

fn apply(groups: &mut HashMap<String, GroupOffsets>, group: &str, changes: Vec<Change>) {
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
}

fn encode(group: &str, (topic, partition, commit): &Change) -> internal_log::KeyValue {
    let key = Key {
        group: group.to_string(),
        topic: topic.clone(),
        partition: *partition,
    };
    (
        serde_json::to_vec(&key).ok(),
        commit.as_ref().and_then(|c| serde_json::to_vec(c).ok()),
    )
}

impl OffsetStore {
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, KafkaError> {
        let log = Partition::open(
            &data_dir.join(OFFSETS_LOG_DIR),
            0,
            internal_log::log_config(),
            now_ms,
        )?;
        let mut groups: HashMap<String, GroupOffsets> = HashMap::new();
        internal_log::replay(&log, |key, value| {
            let Some(Ok(key)) = key.map(serde_json::from_slice::<Key>) else {
                return;
            };
            let commit = match value.map(serde_json::from_slice::<CommittedOffset>) {
                Some(Ok(c)) => Some(c),
                _ => None,
            };
            apply(
                &mut groups,
                &key.group,
                vec![(key.topic, key.partition, commit)],
            );
        })?;
        let compaction = internal_log::Compaction::new(log.size_bytes());
        Ok(OffsetStore {
            log,
            groups: RwLock::new(groups),
            pending: Mutex::new(Pending {
                queue: VecDeque::new(),
            }),
            compaction,
        })
    }

    /// Writes commits (Some) and deletions (None), waits until they are fsynced, then applies
    /// them: a committed offset is internal state, durable before it is visible or answered,
    /// whatever the flush policy for user data. Concurrent writers share fsyncs.
    pub async fn write(
        &self,
        group: &str,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        if changes.is_empty() {
            return Ok(());
        }
        let records: Vec<internal_log::KeyValue> =
            changes.iter().map(|c| encode(group, c)).collect();
        let buf = internal_log::encode_batch(&records, now_ms)?;
        let end = {
            let mut pending = self.pending.lock();
            let appended = self.log.append(&buf, now_ms)?;
            let end = appended.last_offset + 1;
            pending.queue.push_back((end, group.to_string(), changes));
            end
        };
        self.compaction.appended(buf.len());
        self.log.make_durable(end).await?;
        self.apply_durable(end);
        if self.compaction.due() {
            // The commit itself is done; a failed compaction is logged and retried later.
            let _ = self.compact(now_ms).await;
        }
        Ok(())
    }

    /// Applies, in log order, every pending change below `durable_end`.
    fn apply_durable(&self, durable_end: i64) {
        let mut pending = self.pending.lock();
        let mut groups = self.groups.write();
        while pending
            .queue
            .front()
            .is_some_and(|(end, _, _)| *end <= durable_end)
        {
            if let Some((_, group, changes)) = pending.queue.pop_front() {
                apply(&mut groups, &group, changes);
            }
        }
    }

    /// Rewrites the log as a snapshot of every committed offset (plus the changes still on
    /// their way to disk, re-stated after it) and drops the segments before it.
    async fn compact(&self, now_ms: i64) -> Result<(), KafkaError> {
        if !self.compaction.start() {
            return Ok(());
        }
        let appended = {
            let pending = self.pending.lock();
            let mut records: Vec<internal_log::KeyValue> = Vec::new();
            for (group, offsets) in self.groups.read().iter() {
                for ((topic, partition), c) in offsets {
                    records.push(encode(group, &(topic.clone(), *partition, Some(c.clone()))));
                }
            }
            for (_, group, changes) in &pending.queue {
                records.extend(changes.iter().map(|c| encode(group, c)));
            }
            // Nothing live is an empty snapshot: everything before it goes.
            internal_log::append_snapshot(&self.log, &records, now_ms)
        };
        internal_log::finish_snapshot(&self.log, &self.compaction, appended).await
    }

    /// Deletes the committed offsets of groups that have no members (`is_empty`) once
    /// `retention_ms` has passed since their commit (Kafka's `offsets.retention.minutes`).
    /// Returns how many offsets expired.
    pub async fn expire(
        &self,
        now_ms: i64,
        retention_ms: i64,
        is_empty: impl Fn(&str) -> bool,
    ) -> Result<usize, KafkaError> {
        let expired: Vec<(String, Vec<Change>)> = self
            .groups
            .read()
            .iter()
            .filter(|(g, _)| is_empty(g))
            .map(|(g, offsets)| {
                let changes = offsets
                    .iter()
                    .filter(|(_, c)| c.commit_timestamp_ms.saturating_add(retention_ms) < now_ms)
                    .map(|((t, p), _)| (t.clone(), *p, None))
                    .collect::<Vec<_>>();
                (g.clone(), changes)
            })
            .filter(|(_, changes)| !changes.is_empty())
            .collect();
        let mut count = 0;
        for (group, changes) in expired {
            count += changes.len();
            tracing::info!(group = %group, offsets = changes.len(), "expiring committed offsets (offsets.retention.minutes)");
            self.write(&group, changes, now_ms).await?;
        }
        Ok(count)
    }

    /// Transactional offset commits (TxnOffsetCommit) wait, durably, until the transaction
    /// ends: `commit` makes them the group's committed offsets, an abort drops them. Called by
    /// the transaction coordinator for every group the transaction added (AddOffsetsToTxn),
    /// after the decision is durable; idempotent, since markers are re-sent after a restart.
    pub async fn complete_txn(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        // SKELETON: implemented by the group-transactions work.
        let _ = (group, producer_id, producer_epoch, commit, now_ms);
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
