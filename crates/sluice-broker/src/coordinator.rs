//! Coordinators that follow their internal partitions (Kafka's `CoordinatorRuntime` idea,
//! issue #10): a coordinator's state lives in one partition of an internal topic of the
//! metadata image, replicated like any partition; the node that leads the partition is the
//! coordinator, loads the state by replaying its local log, writes as the leader and answers
//! only once the write is committed; every other node answers NOT_COORDINATOR.
//!
//! # The shared mechanism
//! - [`CoordinatorHook`]: registered with the `ReplicaManager` for one internal topic
//!   (`register_coordinator`); called after every partition state the reconcile applies to
//!   that topic's replica (after the role change), and when the replica goes away. Lower
//!   layers never call handlers: the hook is the only way up.
//! - [`CoordinatorLog`]: the leader's side of writing: an append as the leader (stamped with
//!   the leader epoch, refused on a follower) and [`CoordinatorLog::commit`], which returns
//!   once the records are durable by the replication rule (fsynced here; under replication the
//!   high watermark passed them: acks=all with `min.insync.replicas`), or fails with the
//!   coordinator error a client retries on ([`coordinator_error`]). It implements
//!   [`crate::internal_log::SnapshotLog`], so snapshots drop the history before them only once
//!   the snapshot is committed (every in-sync follower has it).
//! - [`LoadState`]: NotCoordinator → Loading (this node leads at epoch e; it waits until the
//!   high watermark reaches the log end it became leader with — the new leader's log is
//!   authoritative — then replays it) → Loaded. Losing the leadership (or a newer epoch) drops
//!   the loaded state at once; a load that finishes for an epoch no longer current is thrown
//!   away.
//!
//! # Today
//! The group coordinator (`__consumer_offsets`: committed offsets, classic and KIP-848
//! groups; `offsets.rs`), and the schema registry (`_schemas`; `schemas.rs`: its hook keeps
//! the replica in every role, since every node applies the committed events, and its primary
//! writes through [`CoordinatorLog`]). The transaction coordinator (`__transaction_state`) and
//! share-group state (`__share_group_state`) still own local logs; they follow the same path
//! next (see docs/REPLICATION.md, "Coordinators").

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;

use crate::error::KafkaError;
use crate::partition::Partition;
use crate::replica_manager::{AcksWait, Replica, Role};

/// The group coordinator's internal topic (one partition, as every internal log here).
pub const GROUP_TOPIC: &str = "__consumer_offsets";
/// Kafka's internal topic names, and Sluice's.
pub const INTERNAL_TOPICS: &[&str] = &[
    "__cluster_metadata",
    GROUP_TOPIC,
    "__share_group_state",
    "__transaction_state",
    "_schemas",
];

/// Whether `name` is an internal topic (Metadata's `is_internal`; not deletable; clients
/// cannot produce to it).
pub fn is_internal(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Kafka's `offsets.commit.timeout.ms`: how long a coordinator write waits for the in-sync
/// replicas before it answers COORDINATOR_NOT_AVAILABLE (REQUEST_TIMED_OUT in Kafka's log
/// layer; the write may still commit later, and then applies in log order).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a loading coordinator rechecks the high watermark.
const LOAD_POLL: Duration = Duration::from_millis(20);

/// Called by the `ReplicaManager` for the replica of a coordinator's partition.
pub trait CoordinatorHook: Send + Sync {
    /// After a partition state was applied (the role is the new one).
    fn on_partition_state(&self, replica: &Arc<Replica>);
    /// The replica was deleted (topic deleted, or moved off this node).
    fn on_removed(&self);
}

/// Kafka's coordinator mapping of log-layer errors (`CoordinatorRuntime` /
/// `GroupMetadataManager` before it): the client retries NOT_COORDINATOR after a new
/// FindCoordinator, COORDINATOR_NOT_AVAILABLE after a backoff.
pub fn coordinator_error(e: KafkaError) -> KafkaError {
    let code = match ResponseError::try_from_code(e.code) {
        Some(
            ResponseError::NotLeaderOrFollower
            | ResponseError::KafkaStorageError
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownTopicOrPartition,
        ) => ResponseError::NotCoordinator,
        Some(
            ResponseError::NotEnoughReplicas
            | ResponseError::NotEnoughReplicasAfterAppend
            | ResponseError::RequestTimedOut,
        ) => ResponseError::CoordinatorNotAvailable,
        Some(ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge) => {
            ResponseError::InvalidCommitOffsetSize
        }
        _ => return e,
    };
    KafkaError::new(code, e.message)
}

pub fn not_coordinator(what: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::NotCoordinator,
        format!("this broker is not the {what} coordinator (it does not lead its partition)"),
    )
}

pub fn load_in_progress(what: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::CoordinatorLoadInProgress,
        format!("the {what} coordinator is loading its state"),
    )
}

/// The leader's writer for a coordinator's partition (see the module docs).
pub struct CoordinatorLog {
    replica: Arc<Replica>,
    leader_epoch: i32,
    flush_always: bool,
    /// Woken after appends and HW moves (the leader's replica-fetch long polls wait on it).
    wake: Arc<Notify>,
}

impl CoordinatorLog {
    pub fn new(
        replica: Arc<Replica>,
        leader_epoch: i32,
        flush_always: bool,
        wake: Arc<Notify>,
    ) -> Self {
        CoordinatorLog {
            replica,
            leader_epoch,
            flush_always,
            wake,
        }
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The local log (replay, sizes).
    pub fn partition(&self) -> &Partition {
        self.replica.partition()
    }

    /// Whether this node still leads at the epoch the coordinator loaded with.
    pub fn still_leading(&self) -> bool {
        self.replica.role()
            == Role::Leader {
                leader_epoch: self.leader_epoch,
            }
    }

    /// Appends one batch as the leader at the loaded epoch; returns the offset after it.
    /// NOT_COORDINATOR when leadership moved; COORDINATOR_NOT_AVAILABLE while the ISR is
    /// below `min.insync.replicas`.
    pub fn append(&self, buf: &[u8], now_ms: i64) -> Result<i64, KafkaError> {
        if !self.still_leading() {
            return Err(not_coordinator("group"));
        }
        self.replica.check_acks_all().map_err(coordinator_error)?;
        let appended = self
            .replica
            .append_as_leader(buf, now_ms, None)
            .map_err(coordinator_error)?;
        self.wake.notify_waiters();
        Ok(appended.last_offset + 1)
    }

    /// Waits until every record below `end` is committed: fsynced here, and under replication
    /// below the high watermark. Errors are coordinator errors.
    pub async fn commit(&self, end: i64) -> Result<(), KafkaError> {
        self.replica
            .make_durable(end)
            .await
            .map_err(coordinator_error)?;
        if !self.replica.is_replicated_leader() {
            if !self.still_leading() {
                return Err(not_coordinator("group"));
            }
            return Ok(());
        }
        let leo = self.replica.leader_leo(self.flush_always);
        if self.replica.on_local_append(leo, crate::broker::now_ms()) {
            self.wake.notify_waiters();
        }
        let code = match self.replica.wait_acks_all(end) {
            AcksWait::Now(Ok(())) => 0,
            AcksWait::Now(Err(code)) => code,
            AcksWait::Parked(token, rx) => match tokio::time::timeout(COMMIT_TIMEOUT, rx).await {
                Ok(Ok(outcome)) => outcome.error_code(),
                Ok(Err(_)) => ResponseError::NotLeaderOrFollower.code(),
                Err(_) => {
                    self.replica.cancel_acks_all(token);
                    ResponseError::RequestTimedOut.code()
                }
            },
        };
        if code != 0 {
            return Err(coordinator_error(KafkaError::new(
                ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
                "the coordinator's write was not committed by the in-sync replicas",
            )));
        }
        Ok(())
    }

    /// Waits (bounded by `keep_going`) until the high watermark reaches `end`: a new leader's
    /// records are all committed before its coordinator serves them.
    pub async fn wait_committed(&self, end: i64, keep_going: impl Fn() -> bool) -> bool {
        loop {
            if !keep_going() || !self.still_leading() {
                return false;
            }
            if self.replica.watermarks().high_watermark >= end {
                return true;
            }
            if self.replica.is_replicated_leader() {
                let leo = self.replica.leader_leo(self.flush_always);
                if self.replica.on_local_append(leo, crate::broker::now_ms()) {
                    self.wake.notify_waiters();
                }
            }
            tokio::time::sleep(LOAD_POLL).await;
        }
    }
}

impl crate::internal_log::SnapshotLog for CoordinatorLog {
    fn next_offset(&self) -> i64 {
        self.replica.watermarks().log_end_offset
    }

    fn append_batch(&self, buf: &[u8], now_ms: i64) -> Result<i64, KafkaError> {
        self.append(buf, now_ms)
    }

    async fn commit_to(&self, end: i64) -> Result<(), KafkaError> {
        self.commit(end).await
    }

    fn drop_before(&self, start: i64) -> Result<(), KafkaError> {
        self.replica.delete_records_before(start).map(|_| ())
    }

    fn log_bytes(&self) -> u64 {
        self.replica.size_bytes()
    }
}

/// Where a coordinator is in following its partition.
pub enum LoadState<T> {
    /// This node does not lead the partition (or it does not exist here).
    NotCoordinator,
    /// Leading at `leader_epoch`; the state is being loaded (load number `generation`).
    Loading {
        leader_epoch: i32,
        generation: u64,
    },
    Loaded(Arc<T>),
}
