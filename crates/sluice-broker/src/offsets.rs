//! Committed consumer-group offsets (Kafka's `__consumer_offsets`): kept in memory, written
//! first to the internal log `__consumer_offsets-0` (key = group/topic/partition, value = the
//! commit, null = deleted), fsynced before they take effect, and replayed on start. The log is
//! compacted by snapshots (`internal_log`), so it stays proportional to the live offsets.
//!
//! Transactional offset commits (TxnOffsetCommit) are logged the same way as *pending*
//! offsets of a producer id, invisible to OffsetFetch, until the transaction coordinator
//! ends the transaction ([`OffsetStore::complete_txn`]), which logs a transaction-end
//! record: on COMMIT the pending offsets become the committed ones, on ABORT they are
//! dropped. As in Kafka (`OffsetMetadataManager.replayEndTransactionMarker`), a pending
//! offset is materialised only if it was logged after the partition's current committed
//! offset: of a transactional and a plain commit of the same partition, the one written
//! last wins, whichever order the transaction ends in. A plain deletion (OffsetDelete,
//! DeleteGroups, DeleteTopics, expiry) removes the pending offsets of the partition too.
//!
//! # Following `__consumer_offsets-0` (issue #10)
//! The log is the replica of partition 0 of the internal topic `__consumer_offsets` (a topic
//! of the metadata image, replicated like any other; `coordinator.rs`). The store is a
//! [`CoordinatorHook`]: when this node becomes the partition's leader (at epoch e) it starts
//! *loading* — it waits until the high watermark reaches the log end it became leader with
//! (the new leader's log is authoritative; what it holds is committed before it is served)
//! and replays the log — then serves; when it stops leading, the loaded state is dropped at
//! once (and the broker drops its groups, `on_unload`). While not loaded every operation
//! answers NOT_COORDINATOR; while loading, COORDINATOR_LOAD_IN_PROGRESS. Writes append as the
//! leader at the loaded epoch and apply only once committed (`CoordinatorLog::commit`:
//! fsynced, and under replication below the high watermark); one that loses its leadership
//! first answers NOT_COORDINATOR.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sluice_group::{ClassicGroupRecord, ConsumerGroupRecord, GroupRecordChange, ShareGroupRecord};
use tokio::sync::Notify;

use crate::coordinator::{CoordinatorHook, CoordinatorLog, Follower, Loadable};
use crate::error::KafkaError;
use crate::internal_log;
use crate::replica_manager::Replica;

pub const OFFSETS_LOG_DIR: &str = "__consumer_offsets-0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// Key of a plain commit (value: [`CommittedOffset`], null = deleted).
#[derive(Serialize, Deserialize)]
struct Key {
    group: String,
    topic: String,
    partition: i32,
}

/// Key of a pending transactional commit (value: [`PendingValue`]). Its field names differ
/// from [`Key`]'s, so a broker that predates transactions skips these records on replay
/// instead of taking them for committed offsets.
#[derive(Serialize, Deserialize)]
struct PendingKey {
    txn_group: String,
    topic: String,
    partition: i32,
    producer_id: i64,
}

#[derive(Serialize, Deserialize)]
struct PendingValue {
    producer_epoch: i16,
    #[serde(flatten)]
    offset: CommittedOffset,
}

/// Key of a transaction end for a group (value: [`EndValue`]).
#[derive(Serialize, Deserialize)]
struct EndKey {
    txn_end_group: String,
    producer_id: i64,
}

#[derive(Serialize, Deserialize)]
struct EndValue {
    producer_epoch: i16,
    commit: bool,
    /// A snapshot's re-statement of the fence only: decides no transaction when replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fence: bool,
}

/// Key of a classic group's membership (value: [`ClassicGroupRecord`], null = deleted). A
/// broker that predates it skips these records on replay.
#[derive(Serialize, Deserialize)]
struct GroupKey {
    classic_group: String,
}

/// Key of a KIP-848 consumer group's state (value: [`ConsumerGroupRecord`], null = deleted);
/// skipped on replay by a broker that predates it.
#[derive(Serialize, Deserialize)]
struct ConsumerGroupKey {
    consumer_group: String,
}

/// Key of a share group's membership (value: [`ShareGroupRecord`], null = deleted).
#[derive(Serialize, Deserialize)]
struct ShareGroupKey {
    share_group: String,
}

/// A committed offset and the position (in log order) of the record that set it.
type Slot = (CommittedOffset, u64);
type GroupOffsets = BTreeMap<(String, i32), Slot>;

/// A producer's open transaction as one group sees it.
#[derive(Debug, Clone, Default)]
struct PendingTxn {
    /// The highest producer epoch of its commits.
    epoch: i16,
    offsets: BTreeMap<(String, i32), Slot>,
}

/// One durable change of a group's offsets.
#[derive(Debug, Clone)]
enum Change {
    /// A commit (Some) or a deletion (None) of the offset for a partition.
    Offset(String, i32, Option<CommittedOffset>),
    /// A transactional commit, pending until its transaction ends.
    Pending {
        producer_id: i64,
        producer_epoch: i16,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    /// The end of the producer's transaction for this group.
    TxnEnd {
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
    /// A snapshot's re-statement of [`State::ended`]: sets the fence, ends nothing.
    Fence {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// A classic group's membership as of its last completed generation, or a consumer
    /// group's state (None inside: it emptied).
    Group(Box<GroupRecordChange>),
}

/// A plain change (the public form `write` takes): commit (Some) or deletion (None).
type PlainChange = (String, i32, Option<CommittedOffset>);

/// Changes written to the log but not yet known durable, in log order.
struct Pending {
    /// (offset after the batch, group, changes)
    queue: VecDeque<(i64, String, Vec<Change>)>,
}

/// Everything a replay of the log builds.
#[derive(Default)]
struct State {
    groups: HashMap<String, GroupOffsets>,
    /// Open transactions: group -> producer id -> pending offsets.
    txns: HashMap<String, BTreeMap<i64, PendingTxn>>,
    /// group -> producer id -> the highest epoch a transaction of it ended with here: a
    /// transactional commit with a lower epoch comes from a fenced producer (a late request
    /// after its transaction was aborted with a bumped epoch) and is refused.
    ended: HashMap<String, BTreeMap<i64, i16>>,
    /// Classic groups' membership (see `sluice_group::ClassicGroupRecord`).
    classic: HashMap<String, ClassicGroupRecord>,
    /// KIP-848 consumer groups' state (see `sluice_group::ConsumerGroupRecord`).
    consumer: HashMap<String, ConsumerGroupRecord>,
    /// Share groups' membership (see `sluice_group::ShareGroupRecord`).
    share: HashMap<String, ShareGroupRecord>,
    /// Position of the next applied change (log order; renumbered by a replay, which keeps
    /// the order).
    seq: u64,
}

impl State {
    /// The highest epoch a transaction of `producer_id` ended with in `group` (a fence for a
    /// fenced producer's late TxnOffsetCommit).
    fn raise_fence(&mut self, group: &str, producer_id: i64, producer_epoch: i16) {
        let fence = self
            .ended
            .entry(group.to_string())
            .or_default()
            .entry(producer_id)
            .or_insert(producer_epoch);
        *fence = (*fence).max(producer_epoch);
    }

    fn has_offsets(&self, group: &str) -> bool {
        self.groups.contains_key(group) || self.txns.contains_key(group)
    }

    fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.txns
            .get(group)
            .is_some_and(|t| t.values().any(|txn| txn.offsets.contains_key(&key)))
    }

    fn apply(&mut self, group: &str, changes: Vec<Change>) {
        for change in changes {
            self.seq += 1;
            let seq = self.seq;
            match change {
                Change::Offset(topic, partition, Some(c)) => {
                    self.groups
                        .entry(group.to_string())
                        .or_default()
                        .insert((topic, partition), (c, seq));
                }
                Change::Offset(topic, partition, None) => {
                    let key = (topic, partition);
                    if let Some(g) = self.groups.get_mut(group) {
                        g.remove(&key);
                        if g.is_empty() {
                            self.groups.remove(group);
                        }
                    }
                    if let Some(t) = self.txns.get_mut(group) {
                        for txn in t.values_mut() {
                            txn.offsets.remove(&key);
                        }
                        t.retain(|_, txn| !txn.offsets.is_empty());
                        if t.is_empty() {
                            self.txns.remove(group);
                        }
                    }
                    if !self.has_offsets(group) {
                        // Nothing left to fence: the group is gone.
                        self.ended.remove(group);
                    }
                }
                Change::Pending {
                    producer_id,
                    producer_epoch,
                    topic,
                    partition,
                    offset,
                } => {
                    let txn = self
                        .txns
                        .entry(group.to_string())
                        .or_default()
                        .entry(producer_id)
                        .or_default();
                    txn.epoch = txn.epoch.max(producer_epoch);
                    txn.offsets.insert((topic, partition), (offset, seq));
                }
                Change::Fence {
                    producer_id,
                    producer_epoch,
                } => self.raise_fence(group, producer_id, producer_epoch),
                Change::Group(change) => match *change {
                    GroupRecordChange::Classic(Some(record)) => {
                        self.classic.insert(group.to_string(), record);
                    }
                    GroupRecordChange::Classic(None) => {
                        self.classic.remove(group);
                    }
                    GroupRecordChange::Consumer(Some(record)) => {
                        self.consumer.insert(group.to_string(), record);
                    }
                    GroupRecordChange::Consumer(None) => {
                        self.consumer.remove(group);
                    }
                    GroupRecordChange::Share(Some(record)) => {
                        self.share.insert(group.to_string(), record);
                    }
                    GroupRecordChange::Share(None) => {
                        self.share.remove(group);
                    }
                },
                Change::TxnEnd {
                    producer_id,
                    producer_epoch,
                    commit,
                } => {
                    self.raise_fence(group, producer_id, producer_epoch);
                    let Some(t) = self.txns.get_mut(group) else {
                        continue;
                    };
                    // A marker older than the transaction's commits cannot decide it.
                    if t.get(&producer_id)
                        .is_none_or(|txn| producer_epoch < txn.epoch)
                    {
                        continue;
                    }
                    let Some(txn) = t.remove(&producer_id) else {
                        continue;
                    };
                    if t.is_empty() {
                        self.txns.remove(group);
                    }
                    if commit {
                        let g = self.groups.entry(group.to_string()).or_default();
                        for (key, (c, at)) in txn.offsets {
                            // The most recent commit wins (Kafka compares record offsets).
                            if g.get(&key).is_none_or(|(_, current)| at > *current) {
                                g.insert(key, (c, at));
                            }
                        }
                        if g.is_empty() {
                            self.groups.remove(group);
                        }
                    }
                }
            }
        }
    }

    /// The live state as changes that rebuild it from nothing, and leave it unchanged when
    /// replayed over it (a crash between a snapshot and the removal of the history before it
    /// replays both): fences first, then committed and pending offsets in the order they were
    /// logged, so "the most recent commit wins" decides the same.
    fn snapshot(&self) -> Vec<(String, Change)> {
        let mut out = Vec::new();
        for (group, ends) in &self.ended {
            for (producer_id, epoch) in ends {
                let fence = Change::Fence {
                    producer_id: *producer_id,
                    producer_epoch: *epoch,
                };
                out.push((group.clone(), fence));
            }
        }
        let mut ordered: Vec<(u64, String, Change)> = Vec::new();
        for (group, offsets) in &self.groups {
            for ((topic, partition), (c, at)) in offsets {
                let change = Change::Offset(topic.clone(), *partition, Some(c.clone()));
                ordered.push((*at, group.clone(), change));
            }
        }
        for (group, txns) in &self.txns {
            for (producer_id, txn) in txns {
                for ((topic, partition), (c, at)) in &txn.offsets {
                    let change = Change::Pending {
                        producer_id: *producer_id,
                        producer_epoch: txn.epoch,
                        topic: topic.clone(),
                        partition: *partition,
                        offset: c.clone(),
                    };
                    ordered.push((*at, group.clone(), change));
                }
            }
        }
        ordered.sort_by_key(|(at, _, _)| *at);
        out.extend(ordered.into_iter().map(|(_, g, c)| (g, c)));
        for (group, record) in &self.classic {
            let change = GroupRecordChange::Classic(Some(record.clone()));
            out.push((group.clone(), Change::Group(Box::new(change))));
        }
        for (group, record) in &self.consumer {
            let change = GroupRecordChange::Consumer(Some(record.clone()));
            out.push((group.clone(), Change::Group(Box::new(change))));
        }
        for (group, record) in &self.share {
            let change = GroupRecordChange::Share(Some(record.clone()));
            out.push((group.clone(), Change::Group(Box::new(change))));
        }
        out
    }

    /// The highest epoch a transaction of `producer_id` ended with for `group`.
    fn fence(&self, group: &str, producer_id: i64) -> Option<i16> {
        self.ended
            .get(group)
            .and_then(|e| e.get(&producer_id))
            .copied()
    }
}

/// The group coordinator's offsets while this node leads `__consumer_offsets-0`.
struct Loaded {
    log: CoordinatorLog,
    generation: u64,
    /// What readers see: only changes that are committed.
    state: RwLock<State>,
    /// Taken to append, and to apply: changes reach `state` in log order, so memory always
    /// equals what a replay of the log would build.
    pending: Mutex<Pending>,
    compaction: internal_log::Compaction,
}

pub struct OffsetStore {
    follower: Arc<Follower<Loaded>>,
}

impl Loadable for Loaded {
    fn log(&self) -> &CoordinatorLog {
        &self.log
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

/// Builds the state of a replica this node leads (blocking: replays the log). The caller
/// checked that the high watermark reached the log end.
fn build(log: CoordinatorLog, generation: u64) -> Result<Loaded, KafkaError> {
    let mut state = State::default();
    internal_log::replay(log.partition(), |key, value| {
        if let Some((group, change)) = decode(key, value) {
            state.apply(&group, vec![change]);
        }
    })?;
    tracing::info!(groups = state.groups.len(), "group offsets replayed");
    let compaction = internal_log::Compaction::new(log.partition().size_bytes());
    Ok(Loaded {
        log,
        generation,
        state: RwLock::new(state),
        pending: Mutex::new(Pending {
            queue: VecDeque::new(),
        }),
        compaction,
    })
}

fn json<T: Serialize>(v: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(v).ok()
}

fn encode(group: &str, change: &Change) -> internal_log::KeyValue {
    match change {
        Change::Offset(topic, partition, commit) => (
            json(&Key {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            }),
            commit.as_ref().and_then(json),
        ),
        Change::Pending {
            producer_id,
            producer_epoch,
            topic,
            partition,
            offset,
        } => (
            json(&PendingKey {
                txn_group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                producer_id: *producer_id,
            }),
            json(&PendingValue {
                producer_epoch: *producer_epoch,
                offset: offset.clone(),
            }),
        ),
        Change::TxnEnd {
            producer_id,
            producer_epoch,
            commit,
        } => (
            json(&EndKey {
                txn_end_group: group.to_string(),
                producer_id: *producer_id,
            }),
            json(&EndValue {
                producer_epoch: *producer_epoch,
                commit: *commit,
                fence: false,
            }),
        ),
        Change::Fence {
            producer_id,
            producer_epoch,
        } => (
            json(&EndKey {
                txn_end_group: group.to_string(),
                producer_id: *producer_id,
            }),
            json(&EndValue {
                producer_epoch: *producer_epoch,
                commit: false,
                fence: true,
            }),
        ),
        Change::Group(change) => match change.as_ref() {
            GroupRecordChange::Classic(record) => (
                json(&GroupKey {
                    classic_group: group.to_string(),
                }),
                record.as_ref().and_then(json),
            ),
            GroupRecordChange::Consumer(record) => (
                json(&ConsumerGroupKey {
                    consumer_group: group.to_string(),
                }),
                record.as_ref().and_then(json),
            ),
            GroupRecordChange::Share(record) => (
                json(&ShareGroupKey {
                    share_group: group.to_string(),
                }),
                record.as_ref().and_then(json),
            ),
        },
    }
}

/// Reads one logged record back as (group, change); None for what this broker does not know.
fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, Change)> {
    let key = key?;
    if let Ok(k) = serde_json::from_slice::<Key>(key) {
        let commit = value.and_then(|v| serde_json::from_slice::<CommittedOffset>(v).ok());
        return Some((k.group, Change::Offset(k.topic, k.partition, commit)));
    }
    if let Ok(k) = serde_json::from_slice::<PendingKey>(key) {
        let v = serde_json::from_slice::<PendingValue>(value?).ok()?;
        return Some((
            k.txn_group,
            Change::Pending {
                producer_id: k.producer_id,
                producer_epoch: v.producer_epoch,
                topic: k.topic,
                partition: k.partition,
                offset: v.offset,
            },
        ));
    }
    // A group record this broker cannot read is skipped (the group then rejoins), not fatal.
    if let Ok(k) = serde_json::from_slice::<GroupKey>(key) {
        let record = match value {
            None => None,
            Some(v) => Some(serde_json::from_slice::<ClassicGroupRecord>(v).ok()?),
        };
        let change = GroupRecordChange::Classic(record);
        return Some((k.classic_group, Change::Group(Box::new(change))));
    }
    if let Ok(k) = serde_json::from_slice::<ConsumerGroupKey>(key) {
        let record = match value {
            None => None,
            Some(v) => Some(serde_json::from_slice::<ConsumerGroupRecord>(v).ok()?),
        };
        let change = GroupRecordChange::Consumer(record);
        return Some((k.consumer_group, Change::Group(Box::new(change))));
    }
    if let Ok(k) = serde_json::from_slice::<ShareGroupKey>(key) {
        let record = match value {
            None => None,
            Some(v) => Some(serde_json::from_slice::<ShareGroupRecord>(v).ok()?),
        };
        let change = GroupRecordChange::Share(record);
        return Some((k.share_group, Change::Group(Box::new(change))));
    }
    if let Ok(k) = serde_json::from_slice::<EndKey>(key) {
        let v = serde_json::from_slice::<EndValue>(value?).ok()?;
        if v.fence {
            return Some((
                k.txn_end_group,
                Change::Fence {
                    producer_id: k.producer_id,
                    producer_epoch: v.producer_epoch,
                },
            ));
        }
        return Some((
            k.txn_end_group,
            Change::TxnEnd {
                producer_id: k.producer_id,
                producer_epoch: v.producer_epoch,
                commit: v.commit,
            },
        ));
    }
    None
}

impl OffsetStore {
    /// A store that coordinates nothing until its partition's replica is led here.
    pub fn new(flush_always: bool, wake: Arc<Notify>) -> Self {
        OffsetStore {
            follower: Arc::new(Follower::new("group", flush_always, wake, Box::new(build))),
        }
    }

    /// Registers the broker's liveness check (loads wait for it; none set: never ready).
    pub fn set_ready(&self, f: Box<dyn Fn() -> bool + Send + Sync>) {
        self.follower.set_ready(f);
    }

    /// Registers the broker's reaction to loads and unloads: called with false when the loaded
    /// state is dropped (the broker drops its groups), true when a load completes.
    pub fn set_on_change(&self, f: Box<dyn Fn(bool) + Send + Sync>) {
        self.follower.set_on_change(f);
    }

    /// The loaded state, or NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.
    fn loaded(&self) -> Result<Arc<Loaded>, KafkaError> {
        self.follower.loaded()
    }

    /// Ok when this node coordinates groups now (the gate of every group request).
    pub fn check(&self) -> Result<(), KafkaError> {
        self.loaded().map(|_| ())
    }

    /// Whether a load is under way (FindCoordinator waits a little for it).
    pub fn is_loading(&self) -> bool {
        self.follower.is_loading()
    }

    /// Opens a standalone store over `data_dir/__consumer_offsets-0`, led here (tests).
    #[cfg(test)]
    pub fn open(data_dir: &std::path::Path, now_ms: i64) -> Result<Arc<Self>, KafkaError> {
        let rm = crate::replica_manager::ReplicaManager::new(0, data_dir);
        let tp = crate::replica_manager::TopicIdPartition {
            topic_id: uuid::Uuid::nil(),
            partition: 0,
        };
        let config = crate::replica_manager::ReplicaConfig {
            log_config: internal_log::log_config(),
            conditional: false,
        };
        let replica = rm.open(
            tp,
            crate::coordinator::GROUP_TOPIC,
            &config,
            crate::replica_manager::Role::Leader { leader_epoch: 0 },
            now_ms,
        )?;
        // A replica opens pending; it leads once a partition state says so.
        rm.become_leader(tp, 0)?;
        let store = Arc::new(OffsetStore::new(true, Arc::new(Notify::new())));
        store.follower.load_now(replica, 0);
        store.loaded()?;
        Ok(store)
    }

    #[cfg(test)]
    fn log_size(&self) -> u64 {
        self.loaded()
            .map(|l| l.log.partition().size_bytes())
            .unwrap_or(0)
    }

    /// Writes commits (Some) and deletions (None), waits until they are fsynced, then applies
    /// them: a committed offset is internal state, durable before it is visible or answered,
    /// whatever the flush policy for user data. Concurrent writers share fsyncs.
    pub async fn write(
        &self,
        group: &str,
        changes: Vec<PlainChange>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let changes = changes
            .into_iter()
            .map(|(t, p, c)| Change::Offset(t, p, c))
            .collect();
        self.write_changes(group, changes, now_ms, |_, _| Ok(()))
            .await
    }

    /// Persists a classic group's membership or a consumer group's state (a `None` record
    /// deletes it), read back by the coordinator that loads this partition next
    /// ([`Self::group_records`]), so its members go on without a rebalance.
    pub async fn write_group(
        &self,
        group: &str,
        change: GroupRecordChange,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let change = Change::Group(Box::new(change));
        self.write_changes(group, vec![change], now_ms, |_, _| Ok(()))
            .await
    }

    /// The groups' records as loaded (empty when this node does not coordinate).
    pub fn group_records(&self) -> Vec<(String, GroupRecordChange)> {
        self.read_state(|s| {
            let classic = s
                .classic
                .iter()
                .map(|(g, r)| (g.clone(), GroupRecordChange::Classic(Some(r.clone()))));
            let consumer = s
                .consumer
                .iter()
                .map(|(g, r)| (g.clone(), GroupRecordChange::Consumer(Some(r.clone()))));
            let share = s
                .share
                .iter()
                .map(|(g, r)| (g.clone(), GroupRecordChange::Share(Some(r.clone()))));
            classic.chain(consumer).chain(share).collect()
        })
    }

    /// TxnOffsetCommit: logs `offsets` as pending offsets of the producer's open transaction
    /// (durably, before returning), invisible to OffsetFetch until [`Self::complete_txn`].
    /// Refused with INVALID_PRODUCER_EPOCH when a transaction of this producer id already
    /// ended here with a higher epoch (a fenced producer's late request).
    pub async fn write_txn(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<(String, i32, CommittedOffset)>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let changes = offsets
            .into_iter()
            .map(|(topic, partition, offset)| Change::Pending {
                producer_id,
                producer_epoch,
                topic,
                partition,
                offset,
            })
            .collect();
        self.write_changes(group, changes, now_ms, |state, queue| {
            let fence = queue
                .iter()
                .filter(|(_, g, _)| g == group)
                .flat_map(|(_, _, changes)| changes)
                .filter_map(|c| match c {
                    Change::TxnEnd {
                        producer_id: p,
                        producer_epoch: e,
                        ..
                    } if *p == producer_id => Some(*e),
                    _ => None,
                })
                .chain(state.fence(group, producer_id))
                .max();
            match fence {
                Some(f) if producer_epoch < f => Err(KafkaError::new(
                    ResponseError::InvalidProducerEpoch,
                    format!(
                        "producer {producer_id} epoch {producer_epoch} is older than epoch {f} \
                         a transaction of it already ended with in group {group}"
                    ),
                )),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Appends `changes` (after `check` passes, under the append lock, given the durable state
    /// and the changes still on their way to disk), waits for the fsync, applies them.
    async fn write_changes(
        &self,
        group: &str,
        changes: Vec<Change>,
        now_ms: i64,
        check: impl FnOnce(&State, &VecDeque<(i64, String, Vec<Change>)>) -> Result<(), KafkaError>,
    ) -> Result<(), KafkaError> {
        let l = self.loaded()?;
        if changes.is_empty() {
            return Ok(());
        }
        let records: Vec<internal_log::KeyValue> =
            changes.iter().map(|c| encode(group, c)).collect();
        let buf = internal_log::encode_batch(&records, now_ms)?;
        let end = {
            let mut pending = l.pending.lock();
            check(&l.state.read(), &pending.queue)?;
            let end = l.log.append(&buf, now_ms)?;
            pending.queue.push_back((end, group.to_string(), changes));
            end
        };
        l.compaction.appended(buf.len());
        l.log.commit(end).await?;
        Self::apply_durable(&l, end);
        if l.compaction.due() {
            // The commit itself is done; a failed compaction is logged and retried later.
            let _ = Self::compact(&l, now_ms).await;
        }
        Ok(())
    }

    /// Applies, in log order, every pending change below `durable_end`.
    fn apply_durable(l: &Loaded, durable_end: i64) {
        let mut pending = l.pending.lock();
        let mut state = l.state.write();
        while pending
            .queue
            .front()
            .is_some_and(|(end, _, _)| *end <= durable_end)
        {
            if let Some((_, group, changes)) = pending.queue.pop_front() {
                state.apply(&group, changes);
            }
        }
    }

    /// Rewrites the log as a snapshot of every committed offset, pending transactional offset
    /// and transaction fence (plus the changes still on their way to disk, re-stated after
    /// it) and drops the segments before it. Offsets are re-stated in the order they were
    /// logged, so "the most recent commit wins" decides the same after a replay.
    async fn compact(l: &Loaded, now_ms: i64) -> Result<(), KafkaError> {
        if !l.compaction.start() {
            return Ok(());
        }
        let appended = {
            let pending = l.pending.lock();
            let state = l.state.read();
            let mut records: Vec<internal_log::KeyValue> = state
                .snapshot()
                .iter()
                .map(|(group, change)| encode(group, change))
                .collect();
            for (_, group, changes) in &pending.queue {
                records.extend(changes.iter().map(|c| encode(group, c)));
            }
            // Nothing live is an empty snapshot: everything before it goes.
            internal_log::append_snapshot(&l.log, &records, now_ms)
        };
        internal_log::finish_snapshot(&l.log, &l.compaction, appended).await
    }

    /// Deletes the committed offsets of groups that have no members (`is_empty`) once
    /// `retention_ms` has passed since their commit (Kafka's `offsets.retention.minutes`).
    /// An offset with a pending transactional commit is kept until its transaction ends, as
    /// in Kafka. Returns how many offsets expired.
    pub async fn expire(
        &self,
        now_ms: i64,
        retention_ms: i64,
        is_empty: impl Fn(&str) -> bool,
    ) -> Result<usize, KafkaError> {
        let Ok(l) = self.loaded() else {
            return Ok(0);
        };
        let expired: Vec<(String, Vec<PlainChange>)> = {
            let state = l.state.read();
            state
                .groups
                .iter()
                .filter(|(g, _)| is_empty(g))
                .map(|(g, offsets)| {
                    let changes = offsets
                        .iter()
                        .filter(|(_, (c, _))| {
                            c.commit_timestamp_ms.saturating_add(retention_ms) < now_ms
                        })
                        .filter(|((t, p), _)| !state.has_pending(g, t, *p))
                        .map(|((t, p), _)| (t.clone(), *p, None))
                        .collect::<Vec<_>>();
                    (g.clone(), changes)
                })
                .filter(|(_, changes)| !changes.is_empty())
                .collect()
        };
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
    ///
    /// Logs a transaction-end record (fsynced before returning), so a replay ends in the same
    /// state. A marker whose epoch is lower than the epoch of the producer's pending commits
    /// (a stale marker) leaves them pending. The record is skipped when it would change
    /// nothing: no commit of this producer pending or on its way to disk, and a fence at
    /// least this epoch already logged.
    pub async fn complete_txn(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let l = self.loaded()?;
        let needed = {
            let pending = l.pending.lock();
            let state = l.state.read();
            let queued = pending.queue.iter().any(|(_, g, changes)| {
                g == group
                    && changes.iter().any(|c| {
                        matches!(c, Change::Pending { producer_id: p, .. } if *p == producer_id)
                    })
            });
            let open = state
                .txns
                .get(group)
                .is_some_and(|t| t.contains_key(&producer_id));
            queued
                || open
                || state
                    .fence(group, producer_id)
                    .is_none_or(|f| f < producer_epoch)
        };
        if !needed {
            return Ok(());
        }
        let end = Change::TxnEnd {
            producer_id,
            producer_epoch,
            commit,
        };
        tracing::debug!(
            group,
            producer_id,
            producer_epoch,
            commit,
            "transaction ends for group offsets"
        );
        self.write_changes(group, vec![end], now_ms, |_, _| Ok(()))
            .await
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.read_state(|state| {
            state
                .groups
                .get(group)
                .and_then(|g| g.get(&(topic.to_string(), partition)))
                .map(|(c, _)| c.clone())
        })
    }

    /// Whether a transactional commit for this partition is pending (OffsetFetch with
    /// RequireStable answers UNSTABLE_OFFSET_COMMIT for it).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.read_state(|state| state.has_pending(group, topic, partition))
    }

    /// Every committed offset of a group, by topic and partition.
    pub fn group(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.read_state(|state| {
            state
                .groups
                .get(group)
                .map(|g| {
                    g.iter()
                        .map(|((t, p), (c, _))| (t.clone(), *p, c.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// The partitions of a group with a pending transactional commit.
    pub fn pending_partitions(&self, group: &str) -> Vec<(String, i32)> {
        self.read_state(|state| {
            let mut out: Vec<(String, i32)> = state
                .txns
                .get(group)
                .map(|t| {
                    t.values()
                        .flat_map(|txn| txn.offsets.keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            out.sort();
            out.dedup();
            out
        })
    }

    /// Groups with committed or pending offsets.
    pub fn group_ids(&self) -> Vec<String> {
        self.read_state(|state| {
            let mut ids: Vec<String> = state
                .groups
                .keys()
                .chain(state.txns.keys())
                .cloned()
                .collect();
            ids.sort();
            ids.dedup();
            ids
        })
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.read_state(|state| state.has_offsets(group))
    }

    /// Deletes every offset of a group, committed or pending (DeleteGroups).
    pub async fn delete_group(&self, group: &str, now_ms: i64) -> Result<(), KafkaError> {
        let mut keys: Vec<(String, i32)> = self
            .group(group)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
        keys.extend(self.pending_partitions(group));
        keys.sort();
        keys.dedup();
        let changes = keys.into_iter().map(|(t, p)| (t, p, None)).collect();
        self.write(group, changes, now_ms).await
    }

    /// Deletes the offsets of a topic in every group, committed or pending (DeleteTopics).
    pub async fn delete_topic(&self, topic: &str, now_ms: i64) -> Result<(), KafkaError> {
        let Ok(l) = self.loaded() else {
            return Ok(());
        };
        let affected: Vec<(String, Vec<i32>)> = {
            let state = l.state.read();
            let mut by_group: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (g, offsets) in &state.groups {
                for (t, p) in offsets.keys() {
                    if t == topic {
                        by_group.entry(g.clone()).or_default().push(*p);
                    }
                }
            }
            for (g, txns) in &state.txns {
                for txn in txns.values() {
                    for (t, p) in txn.offsets.keys() {
                        if t == topic {
                            by_group.entry(g.clone()).or_default().push(*p);
                        }
                    }
                }
            }
            by_group
                .into_iter()
                .map(|(g, mut ps)| {
                    ps.sort_unstable();
                    ps.dedup();
                    (g, ps)
                })
                .collect()
        };
        for (group, partitions) in affected {
            let changes = partitions
                .into_iter()
                .map(|p| (topic.to_string(), p, None))
                .collect();
            self.write(&group, changes, now_ms).await?;
        }
        Ok(())
    }

    /// Runs `f` on the loaded state (the default when this node does not coordinate).
    fn read_state<R: Default>(&self, f: impl FnOnce(&State) -> R) -> R {
        match self.loaded() {
            Ok(l) => f(&l.state.read()),
            Err(_) => R::default(),
        }
    }

    /// Lowers the snapshot threshold (tests).
    #[cfg(test)]
    fn set_compaction_min_bytes(&self, bytes: u64) {
        if let Ok(l) = self.loaded() {
            l.compaction.set_min_bytes(bytes);
        }
    }
}

/// The store follows `__consumer_offsets-0` (see the module docs).
pub struct GroupCoordinatorHook(pub Arc<OffsetStore>);

impl CoordinatorHook for GroupCoordinatorHook {
    fn on_partition_state(&self, replica: &Arc<Replica>) {
        self.0.follower.follow(replica);
    }

    fn on_removed(&self) {
        self.0.follower.unload();
    }
}

#[cfg(test)]
pub(crate) mod tests;
