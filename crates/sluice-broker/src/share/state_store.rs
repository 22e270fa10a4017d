//! Durable share-partition state (Kafka's `__share_group_state`): after every change that must
//! survive a crash (acknowledgements, dead-lettering, initialisation, offset resets) the whole
//! in-flight window of the share-partition is appended as one record to the internal log
//! `__share_group_state-0` (key = group/topic id/partition, value = the snapshot, null =
//! deleted). On start the log is replayed; the last record of each key wins.
//!
//! The window is bounded (`share.partition.max.record.locks`) and run-length encoded, so a
//! record is small. The log is compacted by checkpoints: every [`CHECKPOINT_EVERY`] records the
//! service rewrites every live snapshot and drops the segments before the checkpoint.
//!
//! Ordering: callers append while holding the share-partition's lock, so the log order of a
//! key's records is the order of its changes; waiting for the fsync happens after the lock is
//! released (group commit with the other writers).
//!
//! Durability: internal state is fsynced before it takes effect, whatever the data flush
//! policy (`--flush os` and `interval` only relax topic data): [`StateStore::durable`] always
//! waits for the fsync, and nothing derived from a change leaves the broker before it.
//!
//! Its internal log (`__share_group_state-0`) is a `Partition` opened here, not a replica of the
//! `ReplicaManager` (replica_manager.rs): internal logs become replicated partitions in a later
//! wave of issue #10.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sluice_share::Snapshot;
use sluice_storage::LogConfig;
use uuid::Uuid;

use crate::error::KafkaError;
use crate::internal_log;
use crate::partition::Partition;

pub const SHARE_STATE_LOG_DIR: &str = "__share_group_state-0";

/// Records appended between checkpoints.
pub const CHECKPOINT_EVERY: u64 = 50_000;

/// Small segments, so a checkpoint can drop what came before it soon.
const SEGMENT_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateKey {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

pub struct StateStore {
    log: Partition,
    since_checkpoint: AtomicU64,
}

impl StateStore {
    /// Opens the log and returns the live snapshots in it.
    pub fn open(
        data_dir: &Path,
        now_ms: i64,
    ) -> Result<(Self, HashMap<StateKey, Snapshot>), KafkaError> {
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = Partition::open(&data_dir.join(SHARE_STATE_LOG_DIR), 0, config, now_ms)?;
        let mut live = HashMap::new();
        let mut records = 0u64;
        internal_log::replay(&log, |key, value| {
            records += 1;
            let Some(Ok(key)) = key.map(serde_json::from_slice::<StateKey>) else {
                return;
            };
            match value.map(serde_json::from_slice::<Snapshot>) {
                Some(Ok(s)) => {
                    live.insert(key, s);
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "skipping unreadable share-group state record")
                }
                None => {
                    live.remove(&key);
                }
            }
        })?;
        Ok((
            StateStore {
                log,
                since_checkpoint: AtomicU64::new(records),
            },
            live,
        ))
    }

    /// Appends one key's new state (None = deleted); returns the offset to wait for with
    /// [`StateStore::durable`]. Call with the share-partition's lock held.
    pub fn append(
        &self,
        key: &StateKey,
        snapshot: Option<&Snapshot>,
        now_ms: i64,
    ) -> Result<i64, KafkaError> {
        let k = serde_json::to_vec(key).ok();
        let v = snapshot.and_then(|s| serde_json::to_vec(s).ok());
        let buf = internal_log::encode_batch(&[(k, v)], now_ms)?;
        let appended = self.log.append(&buf, now_ms)?;
        self.since_checkpoint.fetch_add(1, Ordering::Relaxed);
        Ok(appended.last_offset + 1)
    }

    /// Waits until everything below `end` is on disk, whatever the flush policy (internal
    /// state is logged and fsynced before it takes effect). Concurrent waiters share one
    /// fsync (group commit); free when already durable.
    pub async fn durable(&self, end: i64) -> Result<(), KafkaError> {
        self.log.make_durable(end).await
    }

    pub fn needs_checkpoint(&self) -> bool {
        self.since_checkpoint.load(Ordering::Relaxed) >= CHECKPOINT_EVERY
    }

    /// The offset the next append gets: a checkpoint starts here.
    pub fn end_offset(&self) -> i64 {
        self.log.watermarks().high_watermark
    }

    /// Drops the records before a completed checkpoint.
    pub fn finish_checkpoint(&self, start: i64) -> Result<(), KafkaError> {
        self.log.delete_records_before(start)?;
        self.since_checkpoint.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// fsyncs the log (clean shutdown).
    pub async fn sync(&self) -> Result<(), KafkaError> {
        if self.log.is_dirty() {
            self.log.sync_now().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the data flush policy: `durable` returns only once the appended state is
    /// fsynced (the broker opens the store the same way under `--flush os`).
    #[tokio::test]
    async fn durable_always_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, live) = StateStore::open(dir.path(), 1).expect("open");
        assert!(live.is_empty());
        let key = StateKey {
            group: "g".into(),
            topic_id: Uuid::nil(),
            partition: 0,
        };
        let end = store
            .append(
                &key,
                Some(&sluice_share::SharePartition::new(3).snapshot()),
                2,
            )
            .expect("append");
        assert!(store.log.is_dirty(), "appended, not yet synced");
        store.durable(end).await.expect("durable");
        assert!(!store.log.is_dirty(), "durable() fsynced the state log");
        drop(store);
        let (_, live) = StateStore::open(dir.path(), 3).expect("reopen");
        assert_eq!(live.get(&key).map(|s| s.start_offset), Some(3));
    }
}
