//! The `ReplicaManager` (Kafka's name): the one place that opens, appends to, reads from,
//! reconfigures and deletes this node's replicas of user partitions, leader or follower.
//!
//! # What it owns
//! Every local replica, keyed by [`TopicIdPartition`] (topic id + partition index; names are
//! resolved through [`crate::metadata::Metadata`], which keeps only the topic specs: name, id,
//! partition count, configs). Each replica is a [`Replica`]: the partition's log and producer
//! state (`partition.rs`) and its [`Role`]:
//! - `Leader { leader_epoch }`: this node leads the partition. Produce, transaction markers,
//!   consumer Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords, DescribeProducers and
//!   share-group reads are served; appended batches are stamped with `leader_epoch`.
//! - `Follower { leader_id, leader_epoch }`: another node leads. Every leader-only operation
//!   answers NOT_LEADER_OR_FOLLOWER (6) carrying the KIP-951 current-leader hint
//!   ([`KafkaError::current_leader`]), which Produce (v10+) and Fetch (v12+) put in their
//!   `CurrentLeader` fields. Data arrives only through [`ReplicaManager::append_as_follower`]
//!   (the replica fetcher, `replication/fetcher.rs`).
//!
//! - [`Role::PENDING`] (a follower of no leader at epoch -1): a replica just opened or
//!   created, until the metadata image's state for it is applied. It never acts as a leader:
//!   a produce answers NOT_LEADER_OR_FOLLOWER, a request naming a leader epoch
//!   UNKNOWN_LEADER_EPOCH (both retriable).
//!
//! Nothing persists the role: the cluster wiring (`metadata.rs`) opens the replica, then
//! applies its partition state ([`ReplicaManager::apply_partition_state`]), which makes it
//! leader or follower. On a single node every partition is then led by this node at the
//! image's leader epoch (0 for a new partition), as before this module existed.
//!
//! Handlers and services get an `Arc<Replica>` from [`ReplicaManager::get`] (or
//! [`ReplicaManager::get_by_name`]) and call its methods; none of them touches a `Partition`.
//! `__consumer_offsets-0` is a replica like any other; its coordinator (`offsets.rs`) follows it
//! through a [`crate::coordinator::CoordinatorHook`] registered here for its topic
//! ([`ReplicaManager::register_coordinator`]): called after every applied partition state
//! (after the role change) and when the replica is deleted; so does the schema registry's
//! `_schemas-0` (`schemas.rs`). The other internal logs (`__share_group_state-0`,
//! `__transaction_state-0`) still open their own `Partition`s.
//!
//! # Leader epochs (KIP-320)
//! Consumer Fetch (v9+), ListOffsets (v4+) and OffsetForLeaderEpoch (v2+) carry the client's
//! `CurrentLeaderEpoch`; [`check_current_leader_epoch`] compares it with the role's epoch as
//! Kafka's `Partition.localLogWithEpochOrThrow` does: -1 skips the check, an older epoch is
//! FENCED_LEADER_EPOCH (74: the client's metadata is stale; it refreshes it), a newer one
//! UNKNOWN_LEADER_EPOCH (75: this broker has not heard of that epoch yet; the client retries). The epoch check comes before the leader check, as in Kafka.
//!
//! # Hot paths and locks
//! The replica map sits behind one `parking_lot::RwLock`; a produce or fetch takes its read
//! lock once per partition for the lookup (a `HashMap` probe and an `Arc` clone), nothing else
//! (a fetch resolves its replicas once per request, not again at each long-poll wake-up).
//! The role lives inside the partition's own state mutex, which appends and reads take anyway:
//! the role check and the epoch stamped into the batch are decided atomically with the append
//! (a leader demoted mid-request cannot append with its old epoch), with no extra lock and no
//! allocation. Role changes ([`ReplicaManager::become_leader`] / `become_follower`,
//! `apply_partition_state`) take the same partition mutex and, under it, also store the role
//! in a lock-free copy (one `AtomicU64`, leader id and epoch packed together by
//! [`Role::pack`], so a reader never mixes two roles): [`Replica::role`], [`Replica::leader`]
//! and [`ReplicaManager::leader_of`] read that copy and never wait behind an append or an
//! fsync, whatever the number of partitions a request names. It is a snapshot; every
//! leader-only operation checks the role again under the lock.
//!
//! # High watermark
//! On a single node the high watermark is the log end (every append is committed at once).
//! Under replication the replication layer (`sluice-replica`) computes it and sets it with
//! [`Replica::set_high_watermark`]; it is read back clamped into `[log start, log end]`.
//! Consumer Fetch serves only batches that end below it (read_uncommitted; read_committed
//! stops at the last stable offset, which never passes it), ListOffsets LATEST answers it,
//! DeleteRecords refuses to delete past it (-1 means up to it), share groups acquire below it.
//! OffsetForLeaderEpoch answers the log end for the current epoch, as Kafka's leader does.
//!
//! # Role changes
//! A role change must carry an epoch at least the current one (leader epochs are never reused;
//! the controller bumps it on every leader change). The same role at the same epoch is a no-op
//! (a retried LeaderAndIsr-style update); anything else at an older epoch, or a different role
//! at the same epoch, is refused with FENCED_LEADER_EPOCH and changes nothing.
//!
//! # Replication (issue #10)
//! [`ReplicaManager::apply_partition_state`] is the cluster layer's entry point (see its docs
//! and `replication/`): a new leader of a replicated partition fsyncs, records
//! `(epoch, LEO)` in the leader-epoch cache (`Log::assign_leader_epoch`, durably) and gets a
//! `sluice_replica::LeaderState` ([`ReplMode::Leading`]); a partition with one replica
//! records the epoch without the fsync and stays [`ReplMode::Single`] (HW = log end,
//! acks=all = acks=1, as before); a follower is handed to the fetcher of its leader
//! ([`ReplMode::NotLeading`]). The mode and the parked acks=all requests live in a
//! per-replica mutex taken before the partition's (never the other way round).
//!
//! Follower data arrives through [`ReplicaManager::append_as_follower`]
//! (`Partition::append_as_follower` → `Log::append_as_follower`: the leader's batches byte
//! for byte, with their offsets and epochs; each new epoch a batch carries is entered in the
//! follower's own epoch cache, and producer and transaction state follow by replaying the
//! appended batch headers) and truncation (`Partition::truncate_to`, `truncate_fully_and_start_at`: the
//! epoch cache is cut with the log, producer state rebuilt). Both are refused under the
//! partition lock on a leader, so a late fetch response can never cut or extend a log that
//! just became the leader's. OffsetForLeaderEpoch and `DivergingEpoch` answer from the epoch
//! cache (`Log::end_offset_for`; the current epoch ends at the log end).
//!
//! Retention never deletes a segment that ends above the high watermark (Kafka's
//! `deletableSegments`), on a leader or a follower, and DeleteRecords past the high
//! watermark is OFFSET_OUT_OF_RANGE, so no replica drops data the ISR has not committed.
//!
//! # Where it differs from Kafka
//! - No `leaderIsrUpdateLock`: the role is inside the partition's mutex (see above), and the
//!   multi-call read-only lookups (ListOffsets, OffsetForLeaderEpoch, DescribeProducers)
//!   check the role, then read without holding it.
//! - The role is not persisted (Kafka neither persists it; it rebuilds it from the metadata
//!   log): a restart opens every replica as [`Role::PENDING`] until the cluster wiring applies
//!   the metadata image.
//! - Directories are `<topic>-<index>` as in Kafka; replicas are keyed by topic id so a topic
//!   deleted and recreated under the same name never aliases the old incarnation's replica.
//! - Not yet: KIP-951 `NodeEndpoints` (the leader's host and port; the cluster image has
//!   them), fetching from followers (KIP-392).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;
use sluice_storage::{Log, LogConfig, RetentionOutcome, SegmentSlice};
use uuid::Uuid;

use crate::error::{KafkaError, LeaderAndEpoch};
use crate::partition::Partition;
pub use crate::partition::{AbortedTxn, Appended, TxnMarker, Watermarks};
use crate::producer_state::ProducerView;
use crate::replication::PartitionState;
use sluice_replica::{AcksAllState, AcksOutcome, LeaderInit, LeaderState, WaiterToken};

/// The leader epoch of every partition on a single node (and of a partition's first leader).
pub const INITIAL_LEADER_EPOCH: i32 = 0;

/// Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`: a request's `CurrentLeaderEpoch` of -1
/// skips the KIP-320 check.
pub const NO_LEADER_EPOCH: i32 = -1;

/// fsyncs in flight at once when flushing many replicas (each runs on the blocking pool).
const FLUSH_CONCURRENCY: usize = 64;

/// A partition of a topic, by topic id (Kafka's `TopicIdPartition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicIdPartition {
    pub topic_id: Uuid,
    pub partition: i32,
}

/// What this node is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader { leader_epoch: i32 },
    Follower { leader_id: i32, leader_epoch: i32 },
}

impl Role {
    /// What a replica is from the moment it opens until the metadata image's state for it is
    /// applied ([`ReplicaManager::apply_partition_state`]): a follower of no known leader at
    /// epoch -1. Leader-only operations answer NOT_LEADER_OR_FOLLOWER (UNKNOWN_LEADER_EPOCH
    /// for a request naming an epoch), so nothing is appended, read or acknowledged before
    /// the node has fsynced, recorded the epoch and set up the partition's replication.
    pub const PENDING: Role = Role::Follower {
        leader_id: -1,
        leader_epoch: NO_LEADER_EPOCH,
    };

    /// The leader id a packed [`Role::Leader`] carries (no broker id is negative beyond -1).
    const PACKED_SELF: i32 = i32::MIN;

    /// Leader id (this node: [`Role::PACKED_SELF`]) and epoch in one word, for the lock-free
    /// copy of the role (`Partition::role`).
    pub fn pack(&self) -> u64 {
        let (leader, epoch) = match *self {
            Role::Leader { leader_epoch } => (Self::PACKED_SELF, leader_epoch),
            Role::Follower {
                leader_id,
                leader_epoch,
            } => (leader_id, leader_epoch),
        };
        (u64::from(epoch as u32) << 32) | u64::from(leader as u32)
    }

    /// The inverse of [`Role::pack`].
    pub fn unpack(word: u64) -> Role {
        let leader = word as u32 as i32;
        let leader_epoch = (word >> 32) as u32 as i32;
        if leader == Self::PACKED_SELF {
            Role::Leader { leader_epoch }
        } else {
            Role::Follower {
                leader_id: leader,
                leader_epoch,
            }
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        match *self {
            Role::Leader { leader_epoch } | Role::Follower { leader_epoch, .. } => leader_epoch,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader { .. })
    }

    /// The leader and its epoch, `local_id` standing for this node when it leads.
    pub fn leader(&self, local_id: i32) -> LeaderAndEpoch {
        match *self {
            Role::Leader { leader_epoch } => LeaderAndEpoch {
                leader_id: local_id,
                leader_epoch,
            },
            Role::Follower {
                leader_id,
                leader_epoch,
            } => LeaderAndEpoch {
                leader_id,
                leader_epoch,
            },
        }
    }
}

/// How a replica opens (and is reconfigured): its log config and whether conditional append
/// is on.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub log_config: LogConfig,
    /// `conditional.append.enable` (conditional.rs).
    pub conditional: bool,
}

/// KIP-320: a request's `CurrentLeaderEpoch` against the replica's role, then (when
/// `require_leader`) the role itself. Errors carry the current leader (KIP-951).
pub fn check_current_leader_epoch(
    role: &Role,
    local_id: i32,
    current_leader_epoch: i32,
    require_leader: bool,
) -> Result<(), KafkaError> {
    let epoch = role.leader_epoch();
    if current_leader_epoch != NO_LEADER_EPOCH {
        if current_leader_epoch < epoch {
            return Err(KafkaError::new(
                ResponseError::FencedLeaderEpoch,
                format!(
                    "the request's leader epoch {current_leader_epoch} is older than the current one ({epoch})"
                ),
            )
            .with_current_leader(role.leader(local_id)));
        }
        if current_leader_epoch > epoch {
            return Err(KafkaError::new(
                ResponseError::UnknownLeaderEpoch,
                format!(
                    "the request's leader epoch {current_leader_epoch} is newer than this broker's ({epoch})"
                ),
            ));
        }
    }
    if require_leader {
        if let Role::Follower { .. } = role {
            return Err(not_leader(role, local_id));
        }
    }
    Ok(())
}

fn not_leader(role: &Role, local_id: i32) -> KafkaError {
    let leader = role.leader(local_id);
    KafkaError::new(
        ResponseError::NotLeaderOrFollower,
        format!(
            "this broker is not the leader of the partition (leader {} at epoch {})",
            leader.leader_id, leader.leader_epoch
        ),
    )
    .with_current_leader(leader)
}

pub fn unknown_partition(topic: &str, partition: i32) -> KafkaError {
    KafkaError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("{topic}-{partition} does not exist on this broker"),
    )
}

/// One local replica of a partition. Every operation on a user partition's data goes through
/// these methods; the leader-only ones check the role under the partition's lock.
pub struct Replica {
    tp: TopicIdPartition,
    topic: Arc<str>,
    local_id: i32,
    partition: Partition,
    /// How acks=all and the high watermark work here (see [`ReplMode`]). Lock order: this
    /// mutex before the partition's.
    repl: parking_lot::Mutex<ReplSlot>,
}

/// The replication mode of one replica.
pub enum ReplMode {
    /// Not replicated (a single node, or a partition with one replica): the HW is the log
    /// end and acks=all is acks=1 (today's behaviour, no extra work on the hot path).
    Single,
    /// This node leads a replicated partition: the leader's view of its followers.
    Leading(Box<LeaderState>),
    /// Another node leads (or none does): acks=all waiters were failed, new ones are refused.
    NotLeading,
}

/// A replica's replication state and the acks=all requests parked on it.
pub struct ReplSlot {
    pub mode: ReplMode,
    waiters: HashMap<WaiterToken, tokio::sync::oneshot::Sender<AcksOutcome>>,
    next_token: WaiterToken,
}

impl Default for ReplSlot {
    fn default() -> Self {
        ReplSlot {
            mode: ReplMode::Single,
            waiters: HashMap::new(),
            next_token: 0,
        }
    }
}

impl ReplSlot {
    /// This replica no longer leads: the leader state resigns (its parked acks=all requests
    /// and any other waiter get NOT_LEADER_OR_FOLLOWER).
    fn stop_leading(&mut self) {
        if let ReplMode::Leading(ls) = &mut self.mode {
            let failed = ls.resign();
            self.deliver(failed);
        }
        for (_, tx) in self.waiters.drain() {
            let _ = tx.send(AcksOutcome::NotLeaderOrFollower);
        }
        self.mode = ReplMode::NotLeading;
    }

    fn deliver(&mut self, done: Vec<(WaiterToken, AcksOutcome)>) {
        for (token, outcome) in done {
            if let Some(tx) = self.waiters.remove(&token) {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// How an acks=all request waits after its append.
pub enum AcksWait {
    /// Answer now: `Ok` or the error code.
    Now(Result<(), i16>),
    /// Parked until the HW reaches its end (or the ISR shrinks, or leadership is lost).
    Parked(WaiterToken, tokio::sync::oneshot::Receiver<AcksOutcome>),
}

impl Replica {
    pub fn tp(&self) -> TopicIdPartition {
        self.tp
    }

    /// The topic's name (the partition's directory is `<name>-<index>`).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn index(&self) -> i32 {
        self.tp.partition
    }

    pub fn role(&self) -> Role {
        self.partition.role()
    }

    /// The partition's leader and epoch as this node knows them (Metadata, KIP-951 hints).
    pub fn leader(&self) -> LeaderAndEpoch {
        self.role().leader(self.local_id)
    }

    /// Leader-only, with a KIP-320 check of `current_leader_epoch` (-1: none). For the
    /// lookups that are several partition calls (ListOffsets, OffsetForLeaderEpoch,
    /// DescribeProducers): read-only, so a role change between the check and the reads
    /// answers what the leader had, never corrupts anything.
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<Role, KafkaError> {
        let role = self.role();
        check_current_leader_epoch(&role, self.local_id, current_leader_epoch, true)?;
        Ok(role)
    }

    /// The epoch to stamp, if this node leads (checked under the partition lock).
    fn leader_gate(&self) -> impl FnOnce(&Role) -> Result<i32, KafkaError> + '_ {
        move |role: &Role| match role {
            Role::Leader { leader_epoch } => Ok(*leader_epoch),
            Role::Follower { .. } => Err(not_leader(role, self.local_id)),
        }
    }

    /// KIP-890 part 1: whether a transactional batch of this producer needs the
    /// coordinator's verification first (see `Partition::start_txn_verification`).
    pub fn start_txn_verification(&self, producer_id: i64, producer_epoch: i16) -> Option<u64> {
        self.partition
            .start_txn_verification(producer_id, producer_epoch)
    }

    /// Appends a producer's record set as the leader, stamped with the role's epoch
    /// (idempotence, transactions and conditional append as `Partition::append_verified`).
    pub fn append_as_leader(
        &self,
        buf: &[u8],
        now_ms: i64,
        guard: Option<u64>,
    ) -> Result<Appended, KafkaError> {
        self.partition
            .append_gated(buf, now_ms, guard, self.leader_gate())
    }

    /// Appends a transaction marker as the leader (see `Partition::append_marker`).
    pub fn append_marker(&self, marker: TxnMarker, now_ms: i64) -> Result<Appended, KafkaError> {
        self.partition
            .append_marker_gated(marker, now_ms, self.leader_gate())
    }

    /// Waits until every offset below `end_offset` is fsynced (group commit).
    pub async fn make_durable(&self, end_offset: i64) -> Result<(), KafkaError> {
        self.partition.make_durable(end_offset).await
    }

    /// A consumer's read (Fetch, share fetch): leader-only, KIP-320-checked against
    /// `current_leader_epoch` (-1: unchecked), under the one partition lock of the read.
    /// Outer error: the role refused; inner: the read itself (offset out of range...).
    #[allow(clippy::type_complexity)]
    pub fn read_as_leader(
        &self,
        current_leader_epoch: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Result<Option<SegmentSlice>, KafkaError>, Watermarks), KafkaError> {
        let local_id = self.local_id;
        self.partition.read_gated(offset, max_bytes, |role| {
            check_current_leader_epoch(role, local_id, current_leader_epoch, true)
        })
    }

    pub fn watermarks(&self) -> Watermarks {
        self.partition.watermarks()
    }

    /// True when this replica leads a replicated partition.
    pub fn is_replicated_leader(&self) -> bool {
        matches!(self.repl.lock().mode, ReplMode::Leading(_))
    }

    /// Runs `f` on the leader state (if this replica leads a replicated partition), then
    /// publishes a moved HW to readers and answers the acks=all requests it finished.
    /// Returns `f`'s answer and whether the HW moved (the caller wakes long polls).
    pub fn update_leader<R>(&self, f: impl FnOnce(&mut LeaderState) -> R) -> Option<(R, bool)> {
        let mut slot = self.repl.lock();
        let ReplMode::Leading(ls) = &mut slot.mode else {
            return None;
        };
        let before = ls.high_watermark();
        let r = f(ls);
        let hw = ls.high_watermark();
        let moved = hw != before;
        if moved {
            self.partition.set_high_watermark(Some(hw));
        }
        let ready = if ls.parked() > 0 {
            ls.take_ready()
        } else {
            Vec::new()
        };
        slot.deliver(ready);
        Some((r, moved))
    }

    /// acks=all before the append: NOT_ENOUGH_REPLICAS (19) while the committed ISR is below
    /// `min.insync.replicas`; NOT_LEADER_OR_FOLLOWER when leadership is being handed over.
    pub fn check_acks_all(&self) -> Result<(), KafkaError> {
        let slot = self.repl.lock();
        match &slot.mode {
            ReplMode::Single => Ok(()),
            ReplMode::Leading(ls) => ls.check_acks_all_before_append().map_err(|e| {
                KafkaError::new(
                    ResponseError::NotEnoughReplicas,
                    format!(
                        "the in-sync replica set has {} members, min.insync.replicas is {}",
                        e.isr_size, e.min_isr
                    ),
                )
            }),
            ReplMode::NotLeading => Err(not_leader(&self.role(), self.local_id)),
        }
    }

    /// The leader's own log grew to `leo` (its flushed end under `--flush always`). Returns
    /// whether the HW moved.
    pub fn on_local_append(&self, leo: i64, now_ms: i64) -> bool {
        self.update_leader(|ls| ls.on_local_append(leo, now_ms))
            .is_some_and(|(advanced, moved)| advanced || moved)
    }

    /// acks=all after the append of records ending before `end_offset`.
    pub fn wait_acks_all(&self, end_offset: i64) -> AcksWait {
        let mut slot = self.repl.lock();
        let slot = &mut *slot;
        match &mut slot.mode {
            ReplMode::Single => AcksWait::Now(Ok(())),
            ReplMode::NotLeading => AcksWait::Now(Err(ResponseError::NotLeaderOrFollower.code())),
            ReplMode::Leading(ls) => match ls.acks_all_state(end_offset) {
                AcksAllState::Done => AcksWait::Now(Ok(())),
                AcksAllState::DoneIsrTooSmall => {
                    AcksWait::Now(Err(ResponseError::NotEnoughReplicasAfterAppend.code()))
                }
                AcksAllState::Waiting => {
                    slot.next_token = slot.next_token.wrapping_add(1);
                    let token = slot.next_token;
                    ls.park(token, end_offset);
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    slot.waiters.insert(token, tx);
                    AcksWait::Parked(token, rx)
                }
            },
        }
    }

    /// Forgets a parked acks=all request (it timed out).
    pub fn cancel_acks_all(&self, token: WaiterToken) {
        let mut slot = self.repl.lock();
        slot.waiters.remove(&token);
        if let ReplMode::Leading(ls) = &mut slot.mode {
            ls.cancel(token);
        }
    }

    /// The leader's end offset as far as the HW may count it: the flushed end under
    /// `--flush always` (only data on disk is replicated-and-durable), else the log end.
    pub fn leader_leo(&self, flush_always: bool) -> i64 {
        if flush_always {
            self.partition
                .synced_offset()
                .min(self.partition.log_end_offset())
        } else {
            self.partition.log_end_offset()
        }
    }

    /// The real log end offset (flushed or not): what a follower may fetch up to.
    pub fn log_end_offset(&self) -> i64 {
        self.partition.log_end_offset()
    }

    /// The underlying partition (the replication layer: follower appends, truncation, epochs).
    pub(crate) fn partition(&self) -> &Partition {
        &self.partition
    }

    /// A read for a follower (replica fetch, leader side): up to the log end, not the HW.
    #[allow(clippy::type_complexity)]
    pub fn read_for_follower(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> (Result<Option<SegmentSlice>, KafkaError>, Watermarks) {
        self.partition.read(offset, max_bytes)
    }

    /// `Log::end_offset_for` (OffsetForLeaderEpoch, `DivergingEpoch`).
    pub fn end_offset_for(&self, epoch: i32) -> (i32, i64) {
        self.partition.end_offset_for(epoch)
    }

    /// Where this leader's current epoch started (KIP-207), if it leads a replicated
    /// partition.
    pub fn epoch_start_offset(&self) -> Option<i64> {
        match &self.repl.lock().mode {
            ReplMode::Leading(ls) => Some(ls.epoch_start_offset()),
            _ => None,
        }
    }

    /// Sets the high watermark the replication layer computed (leader: the minimum log end
    /// over the ISR; follower: the leader's, capped by the local log end). `None` returns to
    /// "the log end" (single node). Consumers never read at or past it (Fetch cuts there),
    /// ListOffsets LATEST answers it and the last stable offset never passes it. The caller
    /// wakes long-polling fetches when it moved (`Broker::data_appended`).
    pub fn set_high_watermark(&self, high_watermark: Option<i64>) {
        self.partition.set_high_watermark(high_watermark);
    }

    pub fn last_stable_offset(&self) -> i64 {
        self.partition.last_stable_offset()
    }

    /// The aborted transactions whose data overlaps `[from, to)` (Fetch read_committed, the
    /// cleaner, share groups).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.partition.aborted_transactions(from, to)
    }

    /// The producers tracked here (DescribeProducers; leader-only).
    pub fn describe_producers(&self) -> Result<Vec<ProducerView>, KafkaError> {
        self.check_leader(NO_LEADER_EPOCH)?;
        Ok(self.partition.describe_producers())
    }

    pub fn find_by_timestamp(&self, ts: i64) -> Result<Option<SegmentSlice>, KafkaError> {
        self.partition.find_by_timestamp(ts)
    }

    pub fn max_timestamp_batch(&self) -> Result<Option<(i64, SegmentSlice)>, KafkaError> {
        self.partition.max_timestamp_batch()
    }

    /// DeleteRecords (leader-only, checked under the lock): `-1` means the high watermark.
    /// Returns the new low watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, KafkaError> {
        self.partition
            .delete_records_before_gated(offset, self.leader_gate())
    }

    /// Runs `f` on the log under the partition lock (the log cleaner).
    pub fn with_log<R>(&self, f: impl FnOnce(&mut Log) -> R) -> R {
        self.partition.with_log(f)
    }

    pub fn size_bytes(&self) -> u64 {
        self.partition.size_bytes()
    }

    pub fn is_dirty(&self) -> bool {
        self.partition.is_dirty()
    }
}

/// This node's replicas of user partitions.
pub struct ReplicaManager {
    local_id: i32,
    data_dir: PathBuf,
    replicas: RwLock<HashMap<TopicIdPartition, Arc<Replica>>>,
    /// The replica fetchers and the leader-side tasks (`replication/`).
    replication: crate::replication::Replication,
    /// Coordinators following the partition 0 of an internal topic, by topic name.
    coordinators: RwLock<HashMap<String, Arc<dyn crate::coordinator::CoordinatorHook>>>,
}

/// The directory of a partition's log: `<data dir>/<topic>-<index>`, as Kafka.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl ReplicaManager {
    pub fn new(local_id: i32, data_dir: &Path) -> Self {
        ReplicaManager {
            local_id,
            data_dir: data_dir.to_path_buf(),
            replicas: RwLock::new(HashMap::new()),
            replication: crate::replication::Replication::new(local_id),
            coordinators: RwLock::new(HashMap::new()),
        }
    }

    /// Registers the coordinator that follows partition 0 of `topic` (see the module docs).
    pub fn register_coordinator(
        &self,
        topic: &str,
        hook: Arc<dyn crate::coordinator::CoordinatorHook>,
    ) {
        self.coordinators.write().insert(topic.to_string(), hook);
    }

    fn coordinator_of(&self, r: &Replica) -> Option<Arc<dyn crate::coordinator::CoordinatorHook>> {
        if r.index() != 0 {
            return None;
        }
        self.coordinators.read().get(r.topic()).cloned()
    }

    pub fn local_id(&self) -> i32 {
        self.local_id
    }

    /// The replication layer's handle (fetchers, AlterPartition sender, lag checks).
    pub fn replication(&self) -> &crate::replication::Replication {
        &self.replication
    }

    /// Opens (recovers) a replica from its directory. Replaces nothing: a replica already open
    /// is returned as it is. A follower `role` is taken as is; a leader role is not: the
    /// replica opens as [`Role::PENDING`] and leads only once
    /// [`ReplicaManager::apply_partition_state`] made it leader (fsync, epoch cache, leader
    /// state). Until then a produce answers NOT_LEADER_OR_FOLLOWER.
    pub fn open(
        &self,
        tp: TopicIdPartition,
        topic: &str,
        config: &ReplicaConfig,
        role: Role,
        now_ms: i64,
    ) -> Result<Arc<Replica>, KafkaError> {
        if let Some(r) = self.get(tp) {
            return Ok(r);
        }
        let dir = partition_dir(&self.data_dir, topic, tp.partition);
        let replica = self.open_dir(tp, topic, &dir, config, role, now_ms)?;
        Ok(self.replicas.write().entry(tp).or_insert(replica).clone())
    }

    fn open_dir(
        &self,
        tp: TopicIdPartition,
        topic: &str,
        dir: &Path,
        config: &ReplicaConfig,
        role: Role,
        now_ms: i64,
    ) -> Result<Arc<Replica>, KafkaError> {
        let partition = Partition::open(dir, tp.partition, config.log_config.clone(), now_ms)?;
        partition.set_conditional_append(config.conditional);
        partition.set_role(if role.is_leader() {
            Role::PENDING
        } else {
            role
        });
        Ok(Arc::new(Replica {
            tp,
            topic: Arc::from(topic),
            local_id: self.local_id,
            partition,
            repl: parking_lot::Mutex::new(ReplSlot::default()),
        }))
    }

    /// Creates empty replicas `range` of a new topic (or new partitions), as `role` (a leader
    /// role opens as [`Role::PENDING`], see [`ReplicaManager::open`]), clearing
    /// any directory a crash left behind, and fsyncs the data directory so their names are
    /// durable before the metadata event that names them. They are not visible until
    /// [`ReplicaManager::install`].
    pub fn create(
        &self,
        topic_id: Uuid,
        topic: &str,
        range: std::ops::Range<i32>,
        config: &ReplicaConfig,
        role: Role,
        now_ms: i64,
    ) -> Result<Vec<Arc<Replica>>, KafkaError> {
        let opened = range
            .map(|p| {
                let dir = partition_dir(&self.data_dir, topic, p);
                let _ = std::fs::remove_dir_all(&dir);
                let tp = TopicIdPartition {
                    topic_id,
                    partition: p,
                };
                self.open_dir(tp, topic, &dir, config, role, now_ms)
            })
            .collect::<Result<Vec<_>, _>>()?;
        sluice_storage::fsync_dir(&self.data_dir)?;
        Ok(opened)
    }

    /// Makes replicas from [`ReplicaManager::create`] visible.
    pub fn install(&self, replicas: Vec<Arc<Replica>>) {
        let mut map = self.replicas.write();
        for r in replicas {
            map.insert(r.tp, r);
        }
    }

    /// The local replica of `tp`, whatever its role.
    pub fn get(&self, tp: TopicIdPartition) -> Option<Arc<Replica>> {
        self.replicas.read().get(&tp).cloned()
    }

    /// The local replica of `topic`-`partition` (the name through `Metadata`), or
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn get_by_name(
        &self,
        metadata: &crate::metadata::Metadata,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<Replica>, KafkaError> {
        metadata
            .topic(topic)
            .and_then(|t| {
                self.get(TopicIdPartition {
                    topic_id: t.id,
                    partition,
                })
            })
            .ok_or_else(|| unknown_partition(topic, partition))
    }

    /// Every local replica (retention, flushes, the cleaner, shutdown).
    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.replicas.read().values().cloned().collect()
    }

    /// The local replicas of one topic, by partition index.
    pub fn of_topic(&self, topic_id: Uuid, partitions: i32) -> Vec<Arc<Replica>> {
        let map = self.replicas.read();
        (0..partitions)
            .filter_map(|partition| {
                map.get(&TopicIdPartition {
                    topic_id,
                    partition,
                })
                .cloned()
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.replicas.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.read().is_empty()
    }

    /// The leader of `tp` as this node knows it (None: no local replica).
    pub fn leader_of(&self, tp: TopicIdPartition) -> Option<LeaderAndEpoch> {
        self.get(tp).map(|r| r.leader())
    }

    /// Applies a topic's new configs to its replicas.
    pub fn reconfigure(
        &self,
        topic_id: Uuid,
        partitions: i32,
        config: &ReplicaConfig,
    ) -> Result<(), KafkaError> {
        for r in self.of_topic(topic_id, partitions) {
            r.partition.set_config(config.log_config.clone())?;
            r.partition.set_conditional_append(config.conditional);
        }
        Ok(())
    }

    /// Deletes the replicas of a topic: out of the map at once, then their files, durably
    /// (the data directory is fsynced). Readers holding a segment finish reading the unlinked
    /// file.
    pub fn delete_topic(&self, topic_id: Uuid, partitions: i32) -> Result<(), KafkaError> {
        let removed: Vec<Arc<Replica>> = {
            let mut map = self.replicas.write();
            (0..partitions)
                .filter_map(|partition| {
                    map.remove(&TopicIdPartition {
                        topic_id,
                        partition,
                    })
                })
                .collect()
        };
        for r in &removed {
            self.retire(r);
            if let Some(hook) = self.coordinator_of(r) {
                hook.on_removed();
            }
            r.partition.delete_files()?;
        }
        sluice_storage::fsync_dir(&self.data_dir)?;
        Ok(())
    }

    /// Deletes one local replica (the partition was moved off this node), durably. Returns
    /// whether there was one.
    pub fn delete_replica(&self, tp: TopicIdPartition) -> Result<bool, KafkaError> {
        let Some(removed) = self.replicas.write().remove(&tp) else {
            return Ok(false);
        };
        self.retire(&removed);
        if let Some(hook) = self.coordinator_of(&removed) {
            hook.on_removed();
        }
        removed.partition.delete_files()?;
        sluice_storage::fsync_dir(&self.data_dir)?;
        Ok(true)
    }

    /// A replica going away: no fetcher, no leader state (parked acks=all requests fail with
    /// NOT_LEADER_OR_FOLLOWER).
    fn retire(&self, r: &Replica) {
        self.replication.remove_partition(r.tp);
        self.replication.set_leading(r.tp, false);
        r.repl.lock().stop_leading();
    }

    /// Makes this node the leader of `tp` at `leader_epoch` (see the module docs for the
    /// epoch rule). Returns whether anything changed.
    pub fn become_leader(
        &self,
        tp: TopicIdPartition,
        leader_epoch: i32,
    ) -> Result<bool, KafkaError> {
        self.change_role(tp, Role::Leader { leader_epoch })
    }

    /// Makes this node a follower of `leader_id` for `tp` at `leader_epoch`. Returns whether
    /// anything changed.
    pub fn become_follower(
        &self,
        tp: TopicIdPartition,
        leader_id: i32,
        leader_epoch: i32,
    ) -> Result<bool, KafkaError> {
        if leader_id == self.local_id {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("node {leader_id} cannot follow itself"),
            ));
        }
        self.change_role(
            tp,
            Role::Follower {
                leader_id,
                leader_epoch,
            },
        )
    }

    fn change_role(&self, tp: TopicIdPartition, new: Role) -> Result<bool, KafkaError> {
        let replica = self
            .get(tp)
            .ok_or_else(|| unknown_partition(&tp.topic_id.to_string(), tp.partition))?;
        let local_id = self.local_id;
        replica.partition.update_role(|current| {
            let (from, to) = (current.leader_epoch(), new.leader_epoch());
            if *current == new {
                return Ok(false);
            }
            if to <= from {
                return Err(KafkaError::new(
                    ResponseError::FencedLeaderEpoch,
                    format!("role change to {new:?} at epoch {to}: the replica is at epoch {from} ({current:?})"),
                )
                .with_current_leader(current.leader(local_id)));
            }
            Ok(true)
        }, new)
    }

    /// Appends a leader's batches, already stamped with offsets and epochs, to a follower
    /// replica (`Partition::append_as_follower`: log, producer and transaction state). A
    /// leader never takes a follower append.
    pub fn append_as_follower(
        &self,
        tp: TopicIdPartition,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<sluice_storage::FollowerAppend, KafkaError> {
        let replica = self
            .get(tp)
            .ok_or_else(|| unknown_partition(&tp.topic_id.to_string(), tp.partition))?;
        if replica.role().is_leader() {
            return Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                "the leader of a partition does not take a follower's append",
            ));
        }
        replica.partition.append_as_follower(bytes, now_ms)
    }

    /// Applies a partition's state from the metadata image (the cluster layer's reconcile
    /// calls it for every changed partition this node hosts, after opening the replica).
    ///
    /// - This node leads in a newer epoch (Kafka's `makeLeader`): the partition leaves its
    ///   fetcher, the log is fsynced, `(epoch, LEO)` is recorded in the epoch cache (durably),
    ///   the role changes (appends are stamped with the new epoch from here on) and a
    ///   [`LeaderState`] starts from that LEO and the HW this replica had (its follower HW;
    ///   none: its log start, so nothing uncommitted becomes visible before the ISR confirms
    ///   it). A partition whose only replica is this node stays [`ReplMode::Single`] (today's
    ///   behaviour and speed: HW = log end).
    /// - Same leader epoch: an ISR/assignment change (`LeaderState::on_partition_change`,
    ///   ignored unless the partition epoch is newer, so a stale image never undoes a newer
    ///   AlterPartition answer); `min.insync.replicas` follows the topic config.
    /// - Another node leads (or none): the role becomes follower, parked acks=all requests
    ///   fail with NOT_LEADER_OR_FOLLOWER, and the partition is handed to the fetcher of its
    ///   leader (none: nothing fetches until a leader is elected).
    ///
    /// Then the coordinator following this partition, if any, hears of the new state.
    pub fn apply_partition_state(
        &self,
        tp: TopicIdPartition,
        state: &PartitionState,
    ) -> Result<(), KafkaError> {
        let result = self.apply_partition_state_inner(tp, state);
        if let Some(r) = self.get(tp) {
            if let Some(hook) = self.coordinator_of(&r) {
                hook.on_partition_state(&r);
            }
        }
        result
    }

    fn apply_partition_state_inner(
        &self,
        tp: TopicIdPartition,
        state: &PartitionState,
    ) -> Result<(), KafkaError> {
        let replica = self
            .get(tp)
            .ok_or_else(|| unknown_partition(&tp.topic_id.to_string(), tp.partition))?;
        let now = crate::broker::now_ms();
        let min_isr = state.min_insync_replicas.max(1);
        let single =
            state.replicas.len() <= 1 && state.replicas.iter().all(|&r| r == self.local_id);
        if state.leader == self.local_id {
            let current = replica.role();
            if current
                == (Role::Leader {
                    leader_epoch: state.leader_epoch,
                })
            {
                let mut slot = replica.repl.lock();
                match &mut slot.mode {
                    ReplMode::Leading(ls) => {
                        ls.set_min_isr(min_isr, now);
                        drop(slot);
                        let partition_epoch = state.partition_epoch;
                        let (replicas, isr) = (state.replicas.clone(), state.isr.clone());
                        replica.update_leader(|ls| {
                            ls.on_partition_change(replicas, isr, partition_epoch, now)
                        });
                    }
                    ReplMode::Single if !single => {
                        drop(slot);
                        replica.partition.prepare_leadership(state.leader_epoch)?;
                        self.start_leading(&replica, state, now)?;
                    }
                    _ => {}
                }
                return Ok(());
            }
            self.replication.remove_partition(tp);
            replica
                .partition
                .prepare_leadership_with(state.leader_epoch, !single)?;
            self.change_role(
                tp,
                Role::Leader {
                    leader_epoch: state.leader_epoch,
                },
            )?;
            if single {
                let mut slot = replica.repl.lock();
                if let ReplMode::Leading(ls) = &mut slot.mode {
                    let failed = ls.resign();
                    slot.deliver(failed);
                }
                slot.mode = ReplMode::Single;
                drop(slot);
                self.replication.set_leading(tp, false);
                replica.partition.set_high_watermark(None);
                return Ok(());
            }
            self.start_leading(&replica, state, now)
        } else {
            let role = Role::Follower {
                leader_id: state.leader,
                leader_epoch: state.leader_epoch,
            };
            if replica.role() != role {
                self.change_role(tp, role)?;
            }
            replica.repl.lock().stop_leading();
            self.replication.set_leading(tp, false);
            // A follower's HW comes from its leader's fetch responses; until the first one it
            // is what it was (a demoted leader's, never past the log end).
            let marks = replica.watermarks();
            replica
                .partition
                .set_high_watermark(Some(marks.high_watermark));
            if state.leader >= 0 {
                self.replication
                    .add_partition(tp, state.leader, state.leader_epoch);
            } else {
                self.replication.remove_partition(tp);
            }
            Ok(())
        }
    }

    fn start_leading(
        &self,
        replica: &Arc<Replica>,
        state: &PartitionState,
        now: i64,
    ) -> Result<(), KafkaError> {
        let marks = replica.watermarks();
        let flush_always = self.replication.flush_always();
        let leo = replica.leader_leo(flush_always);
        let hw = match replica.partition.high_watermark_set() {
            Some(hw) => hw,
            None => marks.log_start_offset,
        };
        let ls = LeaderState::new(LeaderInit {
            local_id: self.local_id,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            min_isr: state.min_insync_replicas.max(1),
            replica_lag_time_max_ms: self.replication.replica_lag_time_max_ms(),
            local_leo: leo,
            high_watermark: hw,
            log_start_offset: marks.log_start_offset,
            now_ms: now,
        });
        replica
            .partition
            .set_high_watermark(Some(ls.high_watermark()));
        {
            let mut slot = replica.repl.lock();
            if let ReplMode::Leading(old) = &mut slot.mode {
                let failed = old.resign();
                slot.deliver(failed);
            }
            slot.mode = ReplMode::Leading(Box::new(ls));
        }
        self.replication.set_leading(replica.tp, true);
        replica.update_leader(|ls| ls.recheck_high_watermark(now));
        self.replication.leader_changed();
        Ok(())
    }

    /// Retention and `segment.ms` rolling on every replica.
    pub fn apply_retention(
        &self,
        now_ms: i64,
    ) -> Vec<(Arc<Replica>, Result<RetentionOutcome, KafkaError>)> {
        self.all()
            .into_iter()
            .map(|r| {
                let outcome = r.partition.apply_retention(now_ms);
                (r, outcome)
            })
            .collect()
    }

    /// fsyncs every replica with unflushed appends, many at a time: concurrent fdatasyncs
    /// share journal commits, so thousands of partitions flush in a fraction of the time.
    pub async fn flush_dirty(&self) {
        use futures::StreamExt;
        let dirty: Vec<Arc<Replica>> = self
            .replicas
            .read()
            .values()
            .filter(|r| r.partition.is_dirty())
            .cloned()
            .collect();
        futures::stream::iter(dirty)
            .for_each_concurrent(FLUSH_CONCURRENCY, |r| async move {
                if let Err(e) = r.partition.sync_now().await {
                    tracing::error!(topic = %r.topic(), partition = r.index(), error = %e, "flush failed");
                }
            })
            .await;
    }

    /// Writes a producer-state snapshot at every replica's log end (graceful shutdown, before
    /// the logs are fsynced), so the next start replays nothing. Blocking.
    pub fn snapshot_producer_states(&self) {
        for r in self.all() {
            r.partition.snapshot_producer_state();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::records::compute_crc;

    /// An uncompressed batch of one one-byte record (no producer id).
    fn batch() -> Vec<u8> {
        let records = [8u8, 0, 0, 0, 1, 2, b'v', 0];
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend((49 + records.len() as i32).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.push(2);
        b.extend(0u32.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.extend(1000i64.to_be_bytes());
        b.extend(1000i64.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(1i32.to_be_bytes());
        b.extend(records);
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn setup() -> (tempfile::TempDir, ReplicaManager, TopicIdPartition) {
        let dir = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(1, dir.path());
        let tp = TopicIdPartition {
            topic_id: Uuid::new_v4(),
            partition: 0,
        };
        let config = ReplicaConfig {
            log_config: LogConfig::default(),
            conditional: false,
        };
        let created = rm
            .create(
                tp.topic_id,
                "t",
                0..1,
                &config,
                Role::Leader {
                    leader_epoch: INITIAL_LEADER_EPOCH,
                },
                0,
            )
            .unwrap();
        rm.install(created);
        // A single node: the image makes it the only replica and leader at epoch 0.
        rm.apply_partition_state(tp, &single_replica_state(0))
            .unwrap();
        (dir, rm, tp)
    }

    fn single_replica_state(leader_epoch: i32) -> PartitionState {
        PartitionState {
            leader: 1,
            leader_epoch,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            min_insync_replicas: 1,
        }
    }

    /// The leader epoch stamped into each batch (bytes 12..16 of the stored batch).
    fn stored_epochs(r: &Replica) -> Vec<i32> {
        let (slice, _) = r.read_as_leader(-1, 0, 1 << 20).unwrap();
        let bytes = slice.unwrap().unwrap().load().unwrap();
        sluice_storage::BatchIter::new(&bytes)
            .map(|(at, _)| i32::from_be_bytes(bytes[at + 12..at + 16].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn epoch_checks_follow_kip_320() {
        let leader = Role::Leader { leader_epoch: 5 };
        let code = |r: Result<(), KafkaError>| r.err().map(|e| e.code);
        assert_eq!(code(check_current_leader_epoch(&leader, 1, -1, true)), None);
        assert_eq!(code(check_current_leader_epoch(&leader, 1, 5, true)), None);
        let fenced = check_current_leader_epoch(&leader, 1, 4, true).unwrap_err();
        assert_eq!(fenced.code, ResponseError::FencedLeaderEpoch.code());
        assert_eq!(
            fenced.current_leader,
            Some(LeaderAndEpoch {
                leader_id: 1,
                leader_epoch: 5
            })
        );
        assert_eq!(
            code(check_current_leader_epoch(&leader, 1, 6, true)),
            Some(ResponseError::UnknownLeaderEpoch.code())
        );
        // The epoch is checked before the role; a matching epoch on a follower is refused
        // as not the leader (with the hint), unless the caller does not need the leader.
        let follower = Role::Follower {
            leader_id: 2,
            leader_epoch: 5,
        };
        assert_eq!(
            code(check_current_leader_epoch(&follower, 1, 4, true)),
            Some(ResponseError::FencedLeaderEpoch.code())
        );
        let e = check_current_leader_epoch(&follower, 1, 5, true).unwrap_err();
        assert_eq!(e.code, ResponseError::NotLeaderOrFollower.code());
        assert_eq!(
            e.current_leader,
            Some(LeaderAndEpoch {
                leader_id: 2,
                leader_epoch: 5
            })
        );
        assert_eq!(
            code(check_current_leader_epoch(&follower, 1, -1, false)),
            None
        );
    }

    #[test]
    fn a_replica_leads_only_once_its_state_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(1, dir.path());
        let tp = TopicIdPartition {
            topic_id: Uuid::new_v4(),
            partition: 0,
        };
        let config = ReplicaConfig {
            log_config: LogConfig::default(),
            conditional: false,
        };
        // The image says this node leads at epoch 4; the replica opens before that is applied.
        let leader = Role::Leader { leader_epoch: 4 };
        let created = rm
            .create(tp.topic_id, "t", 0..1, &config, leader, 0)
            .unwrap();
        rm.install(created);
        let r = rm.get(tp).unwrap();
        assert_eq!(r.role(), Role::PENDING);
        assert!(!r.role().is_leader());
        let e = r.append_as_leader(&batch(), 1000, None).unwrap_err();
        assert_eq!(e.code, ResponseError::NotLeaderOrFollower.code(), "{e:?}");
        assert_eq!(
            e.current_leader,
            Some(LeaderAndEpoch {
                leader_id: -1,
                leader_epoch: -1
            })
        );
        assert_eq!(r.check_leader(-1).unwrap_err().code, 6);
        assert_eq!(
            r.check_leader(4).unwrap_err().code,
            ResponseError::UnknownLeaderEpoch.code()
        );
        assert_eq!(r.watermarks().log_end_offset, 0, "nothing written");
        // Reopening (a restart) with a leader role is pending too.
        drop((r, rm));
        let rm = ReplicaManager::new(1, dir.path());
        let r = rm.open(tp, "t", &config, leader, 0).unwrap();
        assert_eq!(r.role(), Role::PENDING);
        // Once applied it leads at the image's epoch, stamped into its batches.
        rm.apply_partition_state(tp, &single_replica_state(4))
            .unwrap();
        assert_eq!(r.role(), leader);
        r.append_as_leader(&batch(), 1000, None).unwrap();
        assert_eq!(stored_epochs(&r), vec![4]);
        assert_eq!(r.end_offset_for(4), (4, 1), "the epoch is in the cache");
    }

    #[test]
    fn the_lock_free_role_packs_leader_and_epoch_together() {
        for role in [
            Role::PENDING,
            Role::Leader { leader_epoch: 0 },
            Role::Leader {
                leader_epoch: i32::MAX,
            },
            Role::Follower {
                leader_id: 0,
                leader_epoch: 7,
            },
            Role::Follower {
                leader_id: i32::MAX,
                leader_epoch: 0,
            },
        ] {
            assert_eq!(Role::unpack(role.pack()), role);
        }
        // The copy follows every role change, and reading it does not wait for the partition
        // lock (held here by `with_log` while the role is read from another thread).
        let (_dir, rm, tp) = setup();
        let r = rm.get(tp).unwrap();
        rm.become_follower(tp, 2, 3).unwrap();
        assert_eq!(
            r.role(),
            Role::Follower {
                leader_id: 2,
                leader_epoch: 3
            }
        );
        let r2 = r.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        r.with_log(|_| {
            std::thread::spawn(move || {
                let _ = tx.send(r2.leader());
            });
            let seen = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("Replica::leader waited for the partition lock");
            assert_eq!(
                seen,
                LeaderAndEpoch {
                    leader_id: 2,
                    leader_epoch: 3
                }
            );
        });
    }

    #[test]
    fn roles_gate_leader_operations_and_stamp_the_epoch() {
        let (_dir, rm, tp) = setup();
        let r = rm.get(tp).unwrap();
        assert_eq!(r.role(), Role::Leader { leader_epoch: 0 });
        r.append_as_leader(&batch(), 1000, None).unwrap();
        // A new epoch: later batches carry it.
        assert!(rm.become_leader(tp, 3).unwrap());
        assert!(
            !rm.become_leader(tp, 3).unwrap(),
            "same role and epoch: no-op"
        );
        r.append_as_leader(&batch(), 1000, None).unwrap();
        assert_eq!(stored_epochs(&r), vec![0, 3]);
        assert_eq!(
            r.read_as_leader(2, 0, 100).err().map(|e| e.code).unwrap(),
            ResponseError::FencedLeaderEpoch.code()
        );
        assert_eq!(
            r.read_as_leader(4, 0, 100).err().map(|e| e.code).unwrap(),
            ResponseError::UnknownLeaderEpoch.code()
        );
        assert!(r.read_as_leader(3, 0, 100).is_ok());

        // Older epochs never win; a different role at the same epoch neither.
        assert_eq!(
            rm.become_follower(tp, 2, 2).unwrap_err().code,
            ResponseError::FencedLeaderEpoch.code()
        );
        assert_eq!(
            rm.become_follower(tp, 2, 3).unwrap_err().code,
            ResponseError::FencedLeaderEpoch.code()
        );
        assert_eq!(
            rm.become_follower(tp, 1, 9).unwrap_err().code,
            ResponseError::InvalidRequest.code()
        );
        assert!(rm.become_follower(tp, 2, 4).unwrap());
        let hint = Some(LeaderAndEpoch {
            leader_id: 2,
            leader_epoch: 4,
        });
        let e = r.append_as_leader(&batch(), 1000, None).unwrap_err();
        assert_eq!((e.code, e.current_leader), (6, hint));
        let marker = TxnMarker {
            producer_id: 1,
            producer_epoch: 0,
            commit: true,
            coordinator_epoch: 0,
        };
        assert_eq!(r.append_marker(marker, 1000).unwrap_err().code, 6);
        assert_eq!(
            r.read_as_leader(-1, 0, 100).err().map(|e| e.code).unwrap(),
            6
        );
        assert_eq!(r.delete_records_before(1).unwrap_err().code, 6);
        assert_eq!(r.describe_producers().unwrap_err().code, 6);
        assert_eq!(r.check_leader(4).unwrap_err().current_leader, hint);
        assert_eq!(r.watermarks().high_watermark, 2, "nothing was appended");
        assert_eq!(rm.leader_of(tp), hint);
        // A follower append must continue the log (this batch starts at 0, the log ends at
        // 2); never on a leader.
        let e = rm.append_as_follower(tp, &batch(), 1000).unwrap_err();
        assert_ne!(e.code, 6);
        assert!(rm.become_leader(tp, 5).unwrap());
        assert_eq!(
            rm.append_as_follower(tp, &batch(), 1000).unwrap_err().code,
            6
        );
        r.append_as_leader(&batch(), 1000, None).unwrap();
        assert_eq!(stored_epochs(&r), vec![0, 3, 5]);
        assert_eq!(r.delete_records_before(1).unwrap(), 1);
    }

    #[test]
    fn the_high_watermark_set_by_replication_bounds_readers() {
        let (_dir, rm, tp) = setup();
        let r = rm.get(tp).unwrap();
        for _ in 0..3 {
            r.append_as_leader(&batch(), 1000, None).unwrap();
        }
        let marks = |r: &Replica| {
            let m = r.watermarks();
            (m.high_watermark, m.last_stable_offset, m.log_end_offset)
        };
        assert_eq!(marks(&r), (3, 3, 3), "single node: the log end");
        r.set_high_watermark(Some(1));
        assert_eq!(marks(&r), (1, 1, 3));
        r.set_high_watermark(Some(9));
        assert_eq!(marks(&r), (3, 3, 3), "never past the log end");
        r.set_high_watermark(Some(0));
        r.delete_records_before(-1).unwrap();
        assert_eq!(
            r.watermarks().log_start_offset,
            0,
            "-1 deletes up to the high watermark"
        );
        r.set_high_watermark(Some(2));
        assert_eq!(r.delete_records_before(-1).unwrap(), 2);
        assert_eq!(
            r.delete_records_before(3).unwrap_err().code,
            ResponseError::OffsetOutOfRange.code()
        );
        r.set_high_watermark(Some(1));
        assert_eq!(marks(&r), (2, 2, 3), "never below the log start");
        r.set_high_watermark(None);
        assert_eq!(marks(&r), (3, 3, 3));
    }

    #[test]
    fn retention_never_deletes_at_or_above_the_high_watermark() {
        let (_dir, rm, tp) = setup();
        let r = rm.get(tp).unwrap();
        let config = ReplicaConfig {
            log_config: LogConfig {
                segment_bytes: 200,
                retention_ms: 1,
                ..LogConfig::default()
            },
            conditional: false,
        };
        rm.reconfigure(tp.topic_id, 1, &config).unwrap();
        for _ in 0..20 {
            r.append_as_leader(&batch(), 1000, None).unwrap();
        }
        // Replicated: the ISR confirmed only up to 7. Everything has expired.
        r.set_high_watermark(Some(7));
        for (_, outcome) in rm.apply_retention(1_000_000) {
            outcome.unwrap();
        }
        let marks = r.watermarks();
        assert!(
            marks.log_start_offset > 0 && marks.log_start_offset <= 7,
            "{marks:?}"
        );
        let (slice, _) = r.read_for_follower(7, 1 << 20);
        assert!(slice.unwrap().is_some(), "offset 7 is still there");
        // The HW reaches the log end: retention may take everything.
        r.set_high_watermark(Some(20));
        for (_, outcome) in rm.apply_retention(1_000_000) {
            outcome.unwrap();
        }
        assert_eq!(r.watermarks().log_start_offset, 20);
    }

    #[test]
    fn unknown_partitions_and_deletion() {
        let (dir, rm, tp) = setup();
        let other = TopicIdPartition {
            topic_id: tp.topic_id,
            partition: 1,
        };
        assert!(rm.get(other).is_none());
        assert_eq!(
            rm.become_leader(other, 1).unwrap_err().code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(rm.of_topic(tp.topic_id, 2).len(), 1);
        assert!(!rm.delete_replica(other).unwrap());
        assert!(dir.path().join("t-0").is_dir());
        rm.delete_topic(tp.topic_id, 1).unwrap();
        assert!(rm.is_empty());
        assert!(!dir.path().join("t-0").exists());
    }
}
