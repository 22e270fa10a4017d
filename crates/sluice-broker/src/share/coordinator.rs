//! The share coordinator (Kafka's `ShareCoordinator` with its `ReadShareGroupState` /
//! `WriteShareGroupState`): the durable state of every share-partition, kept in partition 0 of
//! the internal topic `__share_group_state` (a topic of the metadata image, replicated like any
//! other; `coordinator.rs`). The node that leads that partition is the share coordinator: a
//! [`Follower`] loads the state by replaying the log up to the high watermark when this node
//! becomes leader, drops it when it stops leading, and every other node answers
//! NOT_COORDINATOR.
//!
//! - A record is one share-partition's whole durable state (key = group/topic id/partition,
//!   value = the snapshot and the leader epoch of the user partition that wrote it, null =
//!   deleted); the last record of a key wins. Values written before the epoch was recorded
//!   read as epoch -1.
//! - [`ShareCoordinator::write`] appends the accepted writes as one batch as the leader and
//!   answers once they are committed (`CoordinatorLog::commit`: fsynced, and under replication
//!   below the high watermark); only then are they applied in memory. One async lock orders
//!   check → write → apply, so memory always equals a replay of the log (a write whose outcome
//!   is unknown loads the log again).
//! - Leader-epoch fencing ([`fenced`]): a write or read carrying a leader epoch below the last
//!   one seen for its key is refused with FENCED_LEADER_EPOCH, so a deposed share-partition
//!   leader cannot overwrite the state its successor loaded. A read records the reader's epoch
//!   (in memory), and the share-partition writes its state at once after loading it, which
//!   records the epoch durably before it serves.
//! - Deletions (DeleteShareGroupOffsets, group and topic deletion) are not fenced, as Kafka's
//!   DeleteShareGroupState.
//! - Compaction as the other coordinators: when due, every live key is rewritten and the history
//!   before it dropped once committed (`internal_log::Compaction`).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_share::Snapshot;
use tokio::sync::Notify;

use super::state_store::StateKey;
use crate::coordinator::{CoordinatorLog, Follower};
use crate::error::KafkaError;
use crate::internal_log;

/// The leader epoch of values written before it was recorded, and of writes not tied to a
/// leadership (deletions).
pub const NO_EPOCH: i32 = -1;

fn no_epoch() -> i32 {
    NO_EPOCH
}

/// The value of a `__share_group_state` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    #[serde(default = "no_epoch")]
    pub leader_epoch: i32,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// One share-partition's new durable state (None = deleted), written by the leader of its user
/// partition at `leader_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateWrite {
    pub key: StateKey,
    pub snapshot: Option<Snapshot>,
    pub leader_epoch: i32,
}

/// Whether a write (or read) at `incoming` must be refused: the key's last seen leader epoch
/// is newer. Deletions are never fenced.
pub fn fenced(last: Option<i32>, incoming: i32, delete: bool) -> bool {
    !delete && last.is_some_and(|l| incoming < l)
}

fn fenced_error(key: &StateKey, incoming: i32, last: Option<i32>) -> KafkaError {
    KafkaError::new(
        ResponseError::FencedLeaderEpoch,
        format!(
            "share-partition {}/{}/{}: leader epoch {incoming} is older than {}",
            key.group,
            key.topic_id,
            key.partition,
            last.unwrap_or(NO_EPOCH)
        ),
    )
}

fn record(key: &StateKey, value: Option<&StoredValue>) -> internal_log::KeyValue {
    (
        serde_json::to_vec(key).ok(),
        value.and_then(|v| serde_json::to_vec(v).ok()),
    )
}

#[derive(Default)]
struct State {
    snapshots: HashMap<StateKey, Snapshot>,
    /// The last leader epoch seen per key (kept after a deletion while loaded).
    epochs: HashMap<StateKey, i32>,
}

impl State {
    fn apply(&mut self, w: &StateWrite) {
        match &w.snapshot {
            Some(s) => {
                self.snapshots.insert(w.key.clone(), s.clone());
                let e = self.epochs.entry(w.key.clone()).or_insert(w.leader_epoch);
                *e = (*e).max(w.leader_epoch);
            }
            None => {
                self.snapshots.remove(&w.key);
            }
        }
    }
}

pub(crate) struct Loaded {
    log: CoordinatorLog,
    generation: u64,
    state: tokio::sync::Mutex<State>,
    compaction: internal_log::Compaction,
}

crate::coordinator::impl_loadable!(Loaded);

/// Replays the log (blocking). The caller checked that the high watermark reached its end.
fn build(log: CoordinatorLog, generation: u64) -> Result<Loaded, KafkaError> {
    let mut state = State::default();
    internal_log::replay(log.partition(), |key, value| {
        let Some(Ok(key)) = key.map(serde_json::from_slice::<StateKey>) else {
            return;
        };
        match value.map(serde_json::from_slice::<StoredValue>) {
            Some(Ok(v)) => state.apply(&StateWrite {
                key,
                snapshot: Some(v.snapshot),
                leader_epoch: v.leader_epoch,
            }),
            Some(Err(e)) => {
                tracing::error!(error = %e, "skipping unreadable share-group state record")
            }
            None => {
                state.snapshots.remove(&key);
            }
        }
    })?;
    tracing::info!(
        share_partitions = state.snapshots.len(),
        "share coordinator replayed __share_group_state-0"
    );
    let compaction = internal_log::Compaction::new(log.partition().size_bytes());
    Ok(Loaded {
        log,
        generation,
        state: tokio::sync::Mutex::new(state),
        compaction,
    })
}

/// See the module docs.
pub struct ShareCoordinator {
    /// Follows `__share_group_state-0` (its `FollowerHook` is registered with the
    /// `ReplicaManager`; loads wait for the broker's liveness check).
    pub(crate) follower: Arc<Follower<Loaded>>,
}

impl ShareCoordinator {
    pub fn new(flush_always: bool, wake: Arc<Notify>) -> Self {
        ShareCoordinator {
            follower: Arc::new(Follower::new("share", flush_always, wake, Box::new(build))),
        }
    }

    /// The generation of the loaded state, if this node coordinates.
    pub fn loaded_generation(&self) -> Option<u64> {
        self.follower.loaded_generation()
    }

    /// Kafka's ReadShareGroupState: the key's committed state, if any. Records `leader_epoch`
    /// as the key's newest, so older leaders' writes are refused from now on.
    pub async fn read(
        &self,
        key: &StateKey,
        leader_epoch: i32,
    ) -> Result<Option<Snapshot>, KafkaError> {
        let l = self.follower.loaded()?;
        let mut state = l.state.lock().await;
        let last = state.epochs.get(key).copied();
        if fenced(last, leader_epoch, false) {
            return Err(fenced_error(key, leader_epoch, last));
        }
        state.epochs.insert(key.clone(), leader_epoch);
        Ok(state.snapshots.get(key).cloned())
    }

    /// Every live share-partition state (the share-partitions of a single node are rebuilt
    /// from it at start).
    pub async fn all(&self) -> Result<Vec<(StateKey, Snapshot, i32)>, KafkaError> {
        let l = self.follower.loaded()?;
        let state = l.state.lock().await;
        Ok(state
            .snapshots
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    s.clone(),
                    state.epochs.get(k).copied().unwrap_or(NO_EPOCH),
                )
            })
            .collect())
    }

    /// Kafka's ReadShareGroupStateSummary for a whole group: each of its share-partitions with
    /// state and its start offset. Records no leader epoch (an admin read fences nobody).
    pub async fn summary(&self, group: &str) -> Result<Vec<(StateKey, i64)>, KafkaError> {
        let l = self.follower.loaded()?;
        let state = l.state.lock().await;
        Ok(state
            .snapshots
            .iter()
            .filter(|(k, _)| k.group == group)
            .map(|(k, s)| (k.clone(), s.start_offset))
            .collect())
    }

    /// Kafka's WriteShareGroupState for many keys at once: the writes that are not fenced are
    /// appended as one batch and applied once committed. Returns one error code per write
    /// (0, or FENCED_LEADER_EPOCH); a failed append or commit fails them all.
    pub async fn write(&self, writes: &[StateWrite], now_ms: i64) -> Result<Vec<i16>, KafkaError> {
        let l = self.follower.loaded()?;
        let mut state = l.state.lock().await;
        let mut codes = Vec::with_capacity(writes.len());
        let mut accepted = Vec::with_capacity(writes.len());
        for w in writes {
            let last = state.epochs.get(&w.key).copied();
            if fenced(last, w.leader_epoch, w.snapshot.is_none()) {
                tracing::warn!(error = %fenced_error(&w.key, w.leader_epoch, last).message, "refusing a share-state write of a deposed leader");
                codes.push(ResponseError::FencedLeaderEpoch.code());
            } else {
                codes.push(0);
                accepted.push(w);
            }
        }
        if accepted.is_empty() {
            return Ok(codes);
        }
        let kvs: Vec<internal_log::KeyValue> = accepted
            .iter()
            .map(|w| {
                let v = w.snapshot.as_ref().map(|s| StoredValue {
                    leader_epoch: w.leader_epoch,
                    snapshot: s.clone(),
                });
                record(&w.key, v.as_ref())
            })
            .collect();
        self.follower
            .write_committed(&l, &l.compaction, &kvs, now_ms)
            .await?;
        for w in accepted {
            state.apply(w);
        }
        if l.compaction.due() && l.compaction.start() {
            let records: Vec<internal_log::KeyValue> = state
                .snapshots
                .iter()
                .map(|(k, s)| {
                    let v = StoredValue {
                        leader_epoch: state.epochs.get(k).copied().unwrap_or(NO_EPOCH),
                        snapshot: s.clone(),
                    };
                    record(k, Some(&v))
                })
                .collect();
            let appended = internal_log::append_snapshot(&l.log, &records, now_ms);
            // The writes are done; a failed compaction is logged and tried again later.
            let _ = internal_log::finish_snapshot(&l.log, &l.compaction, appended).await;
        }
        Ok(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> StateKey {
        StateKey {
            group: "g".into(),
            topic_id: uuid::Uuid::nil(),
            partition: p,
        }
    }

    /// A write below the key's last leader epoch is refused; equal or newer ones pass;
    /// deletions always pass; an unknown key accepts any epoch.
    #[test]
    fn leader_epoch_fencing() {
        assert!(!fenced(None, 0, false));
        assert!(!fenced(None, NO_EPOCH, false));
        assert!(!fenced(Some(3), 3, false));
        assert!(!fenced(Some(3), 4, false));
        assert!(fenced(Some(3), 2, false));
        assert!(!fenced(Some(3), 2, true));
        assert!(fenced(Some(0), NO_EPOCH, false));
    }

    /// Values of older versions (no epoch) still read; the epoch round-trips.
    #[test]
    fn values_round_trip() {
        let snapshot = sluice_share::SharePartition::new(7).snapshot();
        let old = serde_json::to_vec(&snapshot).unwrap();
        let v: StoredValue = serde_json::from_slice(&old).unwrap();
        assert_eq!(v.leader_epoch, NO_EPOCH);
        assert_eq!(v.snapshot, snapshot);
        let new = StoredValue {
            leader_epoch: 5,
            snapshot: snapshot.clone(),
        };
        let back: StoredValue = serde_json::from_slice(&serde_json::to_vec(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    /// State follows the writes: the epoch only grows, deletions drop the snapshot and keep
    /// the epoch (a deposed leader stays fenced).
    #[test]
    fn state_applies_writes() {
        let mut s = State::default();
        let snap = sluice_share::SharePartition::new(1).snapshot();
        s.apply(&StateWrite {
            key: key(0),
            snapshot: Some(snap.clone()),
            leader_epoch: 4,
        });
        s.apply(&StateWrite {
            key: key(0),
            snapshot: Some(snap.clone()),
            leader_epoch: 2,
        });
        assert_eq!(s.epochs.get(&key(0)), Some(&4));
        s.apply(&StateWrite {
            key: key(0),
            snapshot: None,
            leader_epoch: NO_EPOCH,
        });
        assert!(!s.snapshots.contains_key(&key(0)));
        assert!(fenced(s.epochs.get(&key(0)).copied(), 3, false));
    }
}
