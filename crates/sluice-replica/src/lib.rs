//! Replication of one partition (Kafka's `Partition` leader/follower logic), IO-free.
//!
//! Sluice replicates partitions the way Kafka does: followers *pull* the leader's record
//! batches byte for byte with Fetch requests, the leader tracks each follower's log end offset
//! (LEO) from its fetch offsets, a controller (on the metadata quorum) commits the in-sync
//! replica set (ISR), and leader epochs stamped in every batch let a replica find where its log
//! diverged from a new leader's. This crate is the decision logic of that protocol for one
//! partition, as plain state machines: time (`now_ms`) and events in, decisions out. It does no
//! IO, owns no log, spawns nothing and depends on nothing; the broker feeds it and acts on what
//! it returns (the storage side is `sluice_storage::Log`: `append_as_follower`, `truncate_to`,
//! the leader-epoch cache).
//!
//! # Leader side: [`LeaderState`]
//!
//! Created when this broker becomes leader of a partition in a new leader epoch (Kafka's
//! `Partition.makeLeader`), from the committed partition state (replicas, ISR, partition epoch),
//! `min.insync.replicas`, `replica.lag.time.max.ms`, the leader's LEO (which is also where its
//! epoch starts: the broker assigns `(leader_epoch, LEO)` in its epoch cache before serving)
//! and its high watermark (HW). Followers start unknown (LEO -1); an ISR member counts as
//! caught up "now", others as never (Kafka's `resetReplicaState`).
//!
//! - **Follower fetches** ([`LeaderState::on_follower_fetch`], Kafka's `fetchRecords` then
//!   `updateFollowerFetchState`). With a `last_fetched_epoch`, the leader first checks that the
//!   follower's log agrees with its own: `(epoch, end) = end_offset_for(last_fetched_epoch)`;
//!   an undefined answer or a fetch offset below the log start is `OFFSET_OUT_OF_RANGE`; if
//!   `epoch < last_fetched_epoch` or `end < fetch_offset` the answer is
//!   [`FollowerFetch::Diverging`] (the response's `DivergingEpoch`) and the follower's state is
//!   *not* updated. A fetch offset past the leader's real log end (flushed or not) is
//!   `OFFSET_OUT_OF_RANGE` too, and not recorded: a buggy or stale follower cannot make the HW
//!   or the ISR count data it does not hold. Otherwise the fetch offset becomes the follower's LEO and its last-caught-up
//!   time follows Kafka's `Replica.updateFetchStateOrThrow`: the fetch time if it fetched from
//!   at least the leader's current LEO, else the previous fetch's time if it fetched from at
//!   least the LEO the leader had then, else unchanged. A fetch carrying a broker epoch older
//!   than the one the controller registered for that broker is fenced (KIP-903).
//! - **High watermark** (Kafka's `maybeIncrementLeaderHW`): the minimum of the leader's LEO and
//!   the LEO of every replica in the *maximal ISR* (the committed ISR plus a pending expansion,
//!   KIP-497) and of every caught-up, ISR-eligible replica outside it (so a replica about to
//!   join is not left behind). It only advances, and only while the committed ISR has at least
//!   `min.insync.replicas` members (KIP-966 strict min ISR). A follower whose LEO is unknown
//!   (-1) holds it back.
//! - **ISR changes** ([`LeaderState::isr_change_to_propose`], Kafka's `maybeShrinkIsr` and
//!   `maybeExpandIsr`): at most one proposal in flight. A shrink removes the ISR members not
//!   caught up (`leader LEO == follower LEO`, or caught up within `replica.lag.time.max.ms`);
//!   an expansion adds one eligible replica whose LEO is at or past the HW *and* at or past the
//!   start offset of the leader's epoch (so it holds everything the leader may have committed).
//!   A proposal carries the partition epoch it was based on; the controller rejects it if that
//!   is stale. A shrink takes effect only when committed ([`LeaderState::on_partition_change`]);
//!   an expansion counts towards the HW (maximal ISR) from the moment it is proposed, which only
//!   makes the HW more conservative, and keeps counting until the controller's answer is
//!   known: a newer committed partition epoch, or an error saying it was not applied
//!   ([`LeaderState::on_proposal_failed`]). A lost or timed-out request is sent again as is.
//! - **acks=all** (Kafka's `appendRecordsToLeader` and `checkEnoughReplicasReachOffset`):
//!   refused before the append with `NOT_ENOUGH_REPLICAS` (19) while the committed ISR is
//!   smaller than `min.insync.replicas`; after the append a request waits until the HW reaches
//!   its end offset, then succeeds, or fails with `NOT_ENOUGH_REPLICAS_AFTER_APPEND` (20) if the
//!   maximal ISR shrank below the minimum meanwhile. Parked requests are tokens
//!   ([`LeaderState::park`], [`LeaderState::take_ready`]); all fail with
//!   `NOT_LEADER_OR_FOLLOWER` (6) when leadership is lost ([`LeaderState::resign`]).
//!
//! # Follower side
//!
//! - [`truncation_offset`] (Kafka's `AbstractFetcherThread.getOffsetTruncationState`), on a
//!   fetch response's `DivergingEpoch (epoch, end_offset)`: look up our own end offset for that
//!   epoch; if we know the epoch, truncate to `min(leader end, our end, our LEO)` (done); if our
//!   largest epoch at or below it is a different one, truncate to `min(our end, our LEO)` and
//!   fetch again (the leader answers again if we still diverge); if we know no epoch at or
//!   below it, truncate to `min(leader end, our LEO)`.
//! - [`follower_high_watermark`]: a follower's HW is the leader's, clamped to its own log
//!   (Kafka's `UnifiedLog.updateHighWatermark`): `min(leader HW, own LEO)`, at least its log
//!   start.
//!
//! # What the broker and the controller must guarantee around it
//!
//! - A restarted broker never resumes leading an epoch it led before the crash: it lost its
//!   unflushed tail, and followers may hold records of that epoch it no longer has, so the same
//!   epoch would name two histories. KRaft guarantees it (a re-registration fences the old
//!   incarnation, which moves its leaderships to new epochs); the simulation shows what breaks
//!   without it.
//! - A new leader flushes its log before it starts (`--flush always`), assigns
//!   `(leader_epoch, LEO)` in its epoch cache (`Log::assign_leader_epoch`) and passes that LEO
//!   as [`LeaderInit::local_leo`], so the epoch start offset the ISR expansion checks is the
//!   one the epoch cache answers followers with.
//! - A `LeaderState` lives for one leader epoch; a new epoch is a new `LeaderState` (after
//!   [`LeaderState::resign`] on the old one).
//! - ISR changes go through the controller only, carrying the partition epoch; an AlterPartition
//!   request is resent as is until answered.
//!
//! # Invariants (checked by the seeded simulation in `tests/simulation.rs`)
//!
//! 1. A leader's HW never moves back.
//! 2. The HW is at most the LEO of every replica in the leader's ISR.
//! 3. Every offset below a leader's HW (committed; every offset acknowledged to an acks=all
//!    producer is) has one record in every history, and is durable on at least
//!    `min.insync.replicas` replicas and on every member of the committed ISR, so it survives
//!    every election from the ISR.
//! 4. Once a follower has truncated and fetched in the current epoch, its log is a prefix of the
//!    leader's, compared as (offset, epoch, record) triples.
//! 5. At most one leader per leader epoch.
//! 6. Once the faults stop, the partition converges: one leader, every replica in the ISR,
//!    identical logs, the HW at the log end (this catches stuck states, e.g. a follower that
//!    never stops diverging).
//!
//! The schedules vary message loss (0–25 %), delay (up to 60 ms, so reordering), crash,
//! isolation and leader-move rates per seed. Mutating a rule (no strict min ISR, expansion
//! without the epoch-start check, no divergence check, a pending expansion left out of the
//! maximal ISR, a stale AlterPartition answer resetting the ISR, truncation ignoring the
//! follower's own epoch end) makes them fail within a few thousand schedules.
//!
//! Run more schedules with `SLUICE_REPLICA_SIM_SCHEDULES=200000 cargo test --release -p
//! sluice-replica --test simulation`; replay one with `SLUICE_REPLICA_SIM_SEED=<seed>`.
//!
//! # Where Sluice differs from Kafka, and why
//!
//! - **Durable LEOs.** Under `--flush always` the leader passes its *flushed* end offset to
//!   [`LeaderState::on_local_append`], and a follower fsyncs what it appended before it sends
//!   its next fetch, so every fetch offset is durable (the leader still serves followers from
//!   its whole log, flushed or not). The HW
//!   counts only data on disk on every ISR member: an acknowledged write survives a power loss
//!   of every replica at once (Kafka does not fsync and relies on re-syncing crashed replicas;
//!   Jepsen's NATS and Redpanda analyses show what lazy defaults cost).
//! - **The API.** [`LeaderState::new`] takes a [`LeaderInit`] (named fields instead of nine
//!   positional arguments) that also carries `replica.lag.time.max.ms` and the log start
//!   offset, which the HW and the fetch checks need; [`LeaderState::on_local_append`] takes
//!   `now_ms` (the HW counts caught-up replicas outside the ISR, as Kafka); a fetch can also be
//!   refused ([`FollowerFetch::Error`]); [`truncation_offset`] returns whether the truncation
//!   is complete and takes the follower's HW for an undefined answer.
//! - **Expansion is polled.** Kafka checks for an ISR expansion on every follower fetch; here
//!   the broker calls [`LeaderState::isr_change_to_propose`] after fetches and on a timer (Kafka
//!   runs the shrink check every `replica.lag.time.max.ms / 2`), which makes the same decisions.
//!   Kafka adds one replica per proposal; so do we.
//! - **Fencing by current leader epoch** (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH on a
//!   fetch's `CurrentLeaderEpoch`) is the broker's check before it calls in here.
//! - **Undefined `DivergingEpoch`.** Kafka truncates to the follower's HW when the leader's end
//!   offset is undefined; our leader never sends that (it answers OFFSET_OUT_OF_RANGE instead,
//!   as Kafka's `readRecords` does), and [`truncation_offset`] follows Kafka if it happens.

use std::collections::BTreeMap;

/// Kafka's error code NOT_LEADER_OR_FOLLOWER.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Kafka's error code OFFSET_OUT_OF_RANGE.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Kafka's error code NOT_ENOUGH_REPLICAS.
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
/// Kafka's error code NOT_ENOUGH_REPLICAS_AFTER_APPEND.
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
/// Kafka's error code FENCED_LEADER_EPOCH.
pub const FENCED_LEADER_EPOCH: i16 = 74;
/// Kafka's error code UNKNOWN_LEADER_EPOCH.
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
/// Kafka's error code OPERATION_NOT_ATTEMPTED.
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
/// Kafka's error code INVALID_UPDATE_VERSION.
pub const INVALID_UPDATE_VERSION: i16 = 95;
/// Kafka's error code INELIGIBLE_REPLICA.
pub const INELIGIBLE_REPLICA: i16 = 107;
/// Kafka's error code NEW_LEADER_ELECTED.
pub const NEW_LEADER_ELECTED: i16 = 108;
/// Kafka's `replica.lag.time.max.ms` default (30 s).
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;
/// Kafka's `UNDEFINED_EPOCH`.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// A broker id.
pub type ReplicaId = i32;
/// What the broker uses to find a parked acks=all produce request again.
pub type WaiterToken = u64;

/// What a leader starts from ([`LeaderState::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInit {
    /// This broker.
    pub local_id: ReplicaId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The assignment, in the controller's order.
    pub replicas: Vec<ReplicaId>,
    /// The committed ISR (it includes the leader).
    pub isr: Vec<ReplicaId>,
    /// `min.insync.replicas` (at least 1).
    pub min_isr: usize,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// The leader's log end offset (its flushed end under `--flush always`); also where the
    /// leader epoch starts.
    pub local_leo: i64,
    /// The leader's high watermark as it stood (checkpoint, or the HW it had as a follower).
    pub high_watermark: i64,
    /// The leader's log start offset.
    pub log_start_offset: i64,
    pub now_ms: i64,
}

/// A follower as the leader sees it (Kafka's `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerView {
    /// The follower's LEO (its last fetch offset), -1 until it fetched in this epoch.
    pub log_end_offset: i64,
    /// The leader's LEO when the follower last fetched.
    pub last_fetch_leader_leo: i64,
    pub last_fetch_time_ms: i64,
    /// The last time the follower was known to have everything the leader had.
    pub last_caught_up_time_ms: i64,
    /// The broker epoch of its last fetch (-1: not sent).
    pub broker_epoch: i64,
}

impl FollowerView {
    fn fresh(caught_up_ms: i64) -> Self {
        FollowerView {
            log_end_offset: -1,
            last_fetch_leader_leo: -1,
            last_fetch_time_ms: 0,
            last_caught_up_time_ms: caught_up_ms,
            broker_epoch: -1,
        }
    }

    /// Kafka's `ReplicaState.isCaughtUp`.
    pub fn is_caught_up(&self, leader_leo: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        leader_leo == self.log_end_offset
            || now_ms.saturating_sub(self.last_caught_up_time_ms) <= lag_max_ms
    }
}

/// What the controller knows of a broker, as far as the ISR is concerned (KIP-841): a fenced
/// or shutting-down broker may not join an ISR, and one whose fetches carry an older broker
/// epoch than its registration is a previous incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStatus {
    /// The broker epoch of its current registration.
    pub broker_epoch: i64,
    /// Fenced or in controlled shutdown.
    pub fenced: bool,
}

/// A proposed ISR change, for an AlterPartition request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub new_isr: Vec<ReplicaId>,
    /// The partition epoch the proposal is based on (the controller rejects a stale one).
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Expand {
        proposal: IsrProposal,
        adding: ReplicaId,
    },
    Shrink {
        proposal: IsrProposal,
    },
}

/// The controller's error answer to an AlterPartition request (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterPartitionError {
    /// INELIGIBLE_REPLICA (107): a replica to add is fenced, shutting down or a stale
    /// incarnation; not applied.
    IneligibleReplica,
    /// OPERATION_NOT_ATTEMPTED (55): not applied.
    OperationNotAttempted,
    /// INVALID_UPDATE_VERSION (95): the partition epoch is stale; newer metadata is coming.
    InvalidUpdateVersion,
    /// FENCED_LEADER_EPOCH (74): this leader is deposed.
    FencedLeaderEpoch,
    /// UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID: the partition is going away.
    UnknownTopicOrPartition,
    /// INVALID_REQUEST.
    InvalidRequest,
    /// NEW_LEADER_ELECTED (108): applied, and a reassignment removed this leader.
    NewLeaderElected,
    /// Anything else (a transport error, a timeout, NOT_CONTROLLER): send it again.
    Retriable,
}

impl AlterPartitionError {
    /// The variant for a Kafka error code in an AlterPartition response (anything unknown is
    /// retried, as Kafka's default branch does).
    pub fn from_code(code: i16) -> Self {
        match code {
            INELIGIBLE_REPLICA => AlterPartitionError::IneligibleReplica,
            OPERATION_NOT_ATTEMPTED => AlterPartitionError::OperationNotAttempted,
            INVALID_UPDATE_VERSION => AlterPartitionError::InvalidUpdateVersion,
            FENCED_LEADER_EPOCH => AlterPartitionError::FencedLeaderEpoch,
            // UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID
            3 | 100 => AlterPartitionError::UnknownTopicOrPartition,
            // INVALID_REQUEST
            42 => AlterPartitionError::InvalidRequest,
            NEW_LEADER_ELECTED => AlterPartitionError::NewLeaderElected,
            _ => AlterPartitionError::Retriable,
        }
    }
}

/// Why a follower's fetch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The last fetched epoch has no defined end here, or the fetch offset is below the log
    /// start or past the log end: OFFSET_OUT_OF_RANGE (1).
    OffsetOutOfRange,
    /// The fetcher is not a replica of the partition: UNKNOWN_LEADER_EPOCH (75) if the request
    /// carried a current leader epoch, else NOT_LEADER_OR_FOLLOWER (6), as Kafka.
    NotAReplica,
    /// The fetch carries an older broker epoch than the broker's registration:
    /// NOT_LEADER_OR_FOLLOWER (6).
    StaleBrokerEpoch,
}

impl FetchError {
    /// Kafka's error code, given whether the request carried a current leader epoch.
    pub fn code(self, has_current_leader_epoch: bool) -> i16 {
        match self {
            FetchError::OffsetOutOfRange => OFFSET_OUT_OF_RANGE,
            FetchError::NotAReplica if has_current_leader_epoch => UNKNOWN_LEADER_EPOCH,
            FetchError::NotAReplica | FetchError::StaleBrokerEpoch => NOT_LEADER_OR_FOLLOWER,
        }
    }
}

/// The leader's answer to a follower's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerFetch {
    /// The follower's log diverges: send no records, only `DivergingEpoch {epoch, end_offset}`.
    Diverging {
        epoch: i32,
        end_offset: i64,
    },
    /// Serve records from the fetch offset; the follower's LEO was recorded. `hw_advanced`:
    /// parked acks=all requests may be ready ([`LeaderState::take_ready`]).
    Serve {
        hw_advanced: bool,
    },
    Error(FetchError),
}

/// NOT_ENOUGH_REPLICAS (19): the ISR is smaller than `min.insync.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotEnoughReplicas {
    pub isr_size: usize,
    pub min_isr: usize,
}

impl NotEnoughReplicas {
    pub fn code(&self) -> i16 {
        NOT_ENOUGH_REPLICAS
    }
}

/// Where an acks=all produce request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAllState {
    /// Acknowledge it.
    Done,
    /// Appended and replicated to the HW, but the ISR is now below the minimum:
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (20).
    DoneIsrTooSmall,
    Waiting,
}

/// How a parked acks=all request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksOutcome {
    Done,
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (20).
    NotEnoughReplicasAfterAppend,
    /// NOT_LEADER_OR_FOLLOWER (6): leadership was lost while it waited.
    NotLeaderOrFollower,
}

impl AcksOutcome {
    pub fn error_code(self) -> i16 {
        match self {
            AcksOutcome::Done => 0,
            AcksOutcome::NotEnoughReplicasAfterAppend => NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            AcksOutcome::NotLeaderOrFollower => NOT_LEADER_OR_FOLLOWER,
        }
    }
}

/// The leader's replication state for one partition in one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    local_id: ReplicaId,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<ReplicaId>,
    isr: Vec<ReplicaId>,
    pending: Option<Pending>,
    min_isr: usize,
    lag_max_ms: i64,
    local_leo: i64,
    epoch_start_offset: i64,
    high_watermark: i64,
    log_start_offset: i64,
    followers: BTreeMap<ReplicaId, FollowerView>,
    brokers: BTreeMap<ReplicaId, BrokerStatus>,
    waiters: Vec<(WaiterToken, i64)>,
    resigned: bool,
}

impl LeaderState {
    /// A leader in a new leader epoch (Kafka's `makeLeader` with a new epoch). The HW starts
    /// at `high_watermark` clamped to `[log start, LEO]`.
    pub fn new(init: LeaderInit) -> Self {
        let mut followers = BTreeMap::new();
        for &r in &init.replicas {
            if r != init.local_id {
                let caught_up = if init.isr.contains(&r) {
                    init.now_ms
                } else {
                    0
                };
                followers.insert(r, FollowerView::fresh(caught_up));
            }
        }
        let local_leo = init.local_leo.max(0);
        let log_start_offset = init.log_start_offset.clamp(0, local_leo);
        LeaderState {
            local_id: init.local_id,
            leader_epoch: init.leader_epoch,
            partition_epoch: init.partition_epoch,
            isr: dedup(init.isr),
            replicas: dedup(init.replicas),
            pending: None,
            min_isr: init.min_isr.max(1),
            lag_max_ms: init.replica_lag_time_max_ms.max(0),
            local_leo,
            epoch_start_offset: local_leo,
            high_watermark: init.high_watermark.clamp(log_start_offset, local_leo),
            log_start_offset,
            followers,
            brokers: BTreeMap::new(),
            waiters: Vec::new(),
            resigned: false,
        }
    }

    pub fn local_id(&self) -> ReplicaId {
        self.local_id
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }
    pub fn replicas(&self) -> &[ReplicaId] {
        &self.replicas
    }
    /// The committed ISR.
    pub fn isr(&self) -> &[ReplicaId] {
        &self.isr
    }
    /// The committed ISR plus a pending expansion (KIP-497).
    pub fn maximal_isr(&self) -> Vec<ReplicaId> {
        let mut out = self.isr.clone();
        if let Some(Pending::Expand { adding, .. }) = &self.pending {
            if !out.contains(adding) {
                out.push(*adding);
            }
        }
        out
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    pub fn local_leo(&self) -> i64 {
        self.local_leo
    }
    /// Where this leader epoch started (the leader's LEO when it became leader).
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }
    pub fn min_isr(&self) -> usize {
        self.min_isr
    }
    /// The ISR change in flight, if any.
    pub fn pending_proposal(&self) -> Option<&IsrProposal> {
        match &self.pending {
            Some(Pending::Expand { proposal, .. }) | Some(Pending::Shrink { proposal }) => {
                Some(proposal)
            }
            None => None,
        }
    }
    pub fn follower(&self, id: ReplicaId) -> Option<&FollowerView> {
        self.followers.get(&id)
    }
    /// True once [`LeaderState::resign`] was called.
    pub fn resigned(&self) -> bool {
        self.resigned
    }

    /// Dynamic config changes (`min.insync.replicas`, `replica.lag.time.max.ms`).
    pub fn set_min_isr(&mut self, min_isr: usize, now_ms: i64) -> bool {
        self.min_isr = min_isr.max(1);
        self.maybe_increment_hw(now_ms)
    }
    pub fn set_replica_lag_time_max_ms(&mut self, lag_max_ms: i64) {
        self.lag_max_ms = lag_max_ms.max(0);
    }

    /// The leader's log start offset moved (retention, DeleteRecords).
    pub fn set_log_start_offset(&mut self, offset: i64) {
        self.log_start_offset = offset.clamp(0, self.local_leo);
        self.high_watermark = self.high_watermark.max(self.log_start_offset);
    }

    /// What the controller's image says about a broker (registration epoch, fenced or shutting
    /// down). Unknown brokers are eligible and their fetches are not epoch-checked.
    pub fn set_broker_status(&mut self, id: ReplicaId, status: Option<BrokerStatus>) {
        match status {
            Some(s) => {
                self.brokers.insert(id, s);
            }
            None => {
                self.brokers.remove(&id);
            }
        }
    }

    fn isr_eligible(&self, id: ReplicaId) -> bool {
        let Some(view) = self.followers.get(&id) else {
            return false;
        };
        match self.brokers.get(&id) {
            None => true,
            Some(s) => {
                !s.fenced && (view.broker_epoch == -1 || view.broker_epoch == s.broker_epoch)
            }
        }
    }

    /// The leader's own log grew (or, under `--flush always`, its flushed end did). Returns
    /// whether the HW advanced.
    pub fn on_local_append(&mut self, leo: i64, now_ms: i64) -> bool {
        if leo > self.local_leo {
            self.local_leo = leo;
        }
        self.maybe_increment_hw(now_ms)
    }

    /// A follower fetched (see the module docs). `log_end_offset` is the leader's real log end
    /// (`Log::log_end_offset`, flushed or not: followers are served the whole log), which a
    /// fetch offset may not pass; `epoch_end(epoch)` is the leader's
    /// `Log::end_offset_for(epoch)`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_follower_fetch(
        &mut self,
        replica_id: ReplicaId,
        broker_epoch: i64,
        fetch_offset: i64,
        last_fetched_epoch: Option<i32>,
        now_ms: i64,
        log_end_offset: i64,
        epoch_end: impl Fn(i32) -> (i32, i64),
    ) -> FollowerFetch {
        if self.resigned || replica_id == self.local_id {
            return FollowerFetch::Error(FetchError::NotAReplica);
        }
        let Some(view) = self.followers.get(&replica_id).copied() else {
            return FollowerFetch::Error(FetchError::NotAReplica);
        };
        if let Some(status) = self.brokers.get(&replica_id) {
            if broker_epoch != -1 && status.broker_epoch > broker_epoch {
                return FollowerFetch::Error(FetchError::StaleBrokerEpoch);
            }
        }
        if let Some(fetched_epoch) = last_fetched_epoch {
            let (epoch, end_offset) = epoch_end(fetched_epoch);
            if epoch == UNDEFINED_EPOCH || end_offset == UNDEFINED_EPOCH_OFFSET {
                return FollowerFetch::Error(FetchError::OffsetOutOfRange);
            }
            if fetch_offset < self.log_start_offset {
                return FollowerFetch::Error(FetchError::OffsetOutOfRange);
            }
            if epoch < fetched_epoch || end_offset < fetch_offset {
                return FollowerFetch::Diverging { epoch, end_offset };
            }
        } else if fetch_offset < self.log_start_offset {
            return FollowerFetch::Error(FetchError::OffsetOutOfRange);
        }
        // A fetch offset past the leader's log end names data the leader does not have (a
        // buggy follower, or a stale one from another history): recording it as the
        // follower's LEO would let the HW and the ISR count records the follower may not
        // hold. Kafka's read throws OFFSET_OUT_OF_RANGE before the fetch state is updated.
        if fetch_offset > log_end_offset.max(self.local_leo) {
            return FollowerFetch::Error(FetchError::OffsetOutOfRange);
        }
        let leader_leo = self.local_leo;
        let last_caught_up_time_ms = if fetch_offset >= leader_leo {
            view.last_caught_up_time_ms.max(now_ms)
        } else if fetch_offset >= view.last_fetch_leader_leo {
            view.last_caught_up_time_ms.max(view.last_fetch_time_ms)
        } else {
            view.last_caught_up_time_ms
        };
        let new_view = FollowerView {
            log_end_offset: fetch_offset,
            last_fetch_leader_leo: leader_leo.max(view.last_fetch_leader_leo),
            last_fetch_time_ms: now_ms,
            last_caught_up_time_ms,
            broker_epoch,
        };
        self.followers.insert(replica_id, new_view);
        let hw_advanced = view.log_end_offset != fetch_offset && self.maybe_increment_hw(now_ms);
        FollowerFetch::Serve { hw_advanced }
    }

    /// Recomputes the HW on a timer: a caught-up replica outside the ISR stops holding it back
    /// once it has lagged for `replica.lag.time.max.ms`, which no event reports. Returns
    /// whether it advanced.
    pub fn recheck_high_watermark(&mut self, now_ms: i64) -> bool {
        self.maybe_increment_hw(now_ms)
    }

    /// Kafka's `maybeIncrementLeaderHW`.
    fn maybe_increment_hw(&mut self, now_ms: i64) -> bool {
        if self.resigned || self.isr.len() < self.min_isr {
            return false;
        }
        let maximal = self.maximal_isr();
        let mut new_hw = self.local_leo;
        for (&id, view) in &self.followers {
            let counts = maximal.contains(&id)
                || (view.is_caught_up(self.local_leo, now_ms, self.lag_max_ms)
                    && self.isr_eligible(id));
            if counts && view.log_end_offset < new_hw {
                new_hw = view.log_end_offset;
            }
        }
        if new_hw > self.high_watermark {
            self.high_watermark = new_hw;
            true
        } else {
            false
        }
    }

    /// The ISR change to send to the controller now, if any (see the module docs). The
    /// proposal stays in flight until [`LeaderState::on_partition_change`] commits a newer
    /// partition epoch or [`LeaderState::on_proposal_failed`].
    pub fn isr_change_to_propose(&mut self, now_ms: i64) -> Option<IsrProposal> {
        if self.pending.is_some() || self.resigned {
            return None;
        }
        let out_of_sync: Vec<ReplicaId> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| id != self.local_id)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|v| !v.is_caught_up(self.local_leo, now_ms, self.lag_max_ms))
            })
            .collect();
        if !out_of_sync.is_empty() {
            let proposal = IsrProposal {
                new_isr: self
                    .isr
                    .iter()
                    .copied()
                    .filter(|id| !out_of_sync.contains(id))
                    .collect(),
                partition_epoch: self.partition_epoch,
            };
            self.pending = Some(Pending::Shrink {
                proposal: proposal.clone(),
            });
            return Some(proposal);
        }
        let candidate = self.replicas.iter().copied().find(|&id| {
            id != self.local_id
                && !self.isr.contains(&id)
                && self.isr_eligible(id)
                && self.followers.get(&id).is_some_and(|v| {
                    v.log_end_offset >= 0
                        && v.log_end_offset >= self.high_watermark
                        && v.log_end_offset >= self.epoch_start_offset
                })
        })?;
        let mut new_isr = self.isr.clone();
        new_isr.push(candidate);
        let proposal = IsrProposal {
            new_isr,
            partition_epoch: self.partition_epoch,
        };
        self.pending = Some(Pending::Expand {
            proposal: proposal.clone(),
            adding: candidate,
        });
        Some(proposal)
    }

    /// The controller committed a partition change in this leader epoch (an AlterPartition
    /// response, or the metadata image). Ignored unless its partition epoch is newer. Clears
    /// the proposal in flight; followers new to the assignment start unknown; the HW may
    /// advance (a shrink removed a lagging member). Returns whether it did.
    pub fn on_partition_change(
        &mut self,
        replicas: Vec<ReplicaId>,
        isr: Vec<ReplicaId>,
        partition_epoch: i32,
        now_ms: i64,
    ) -> bool {
        if self.resigned || partition_epoch <= self.partition_epoch {
            return false;
        }
        self.partition_epoch = partition_epoch;
        self.replicas = dedup(replicas);
        self.isr = dedup(isr);
        self.pending = None;
        let replicas = self.replicas.clone();
        self.followers
            .retain(|id, _| replicas.contains(id) && *id != self.local_id);
        for id in replicas {
            if id != self.local_id {
                self.followers
                    .entry(id)
                    .or_insert_with(|| FollowerView::fresh(0));
            }
        }
        self.maybe_increment_hw(now_ms)
    }

    /// The controller answered `proposal` with an error (Kafka's `handleAlterPartitionError`).
    /// Returns whether to send the same proposal again.
    ///
    /// Only an answer that says the request was *not applied* and the partition epoch is
    /// current (INELIGIBLE_REPLICA, OPERATION_NOT_ATTEMPTED) returns the leader to the committed
    /// ISR. After any other error the proposal stays in flight (and a pending expansion keeps
    /// counting towards the HW) until the committed partition state moves past it
    /// ([`LeaderState::on_partition_change`]): the controller may have applied it (a retried
    /// copy, a controller failover), and forgetting a committed expansion would let the HW
    /// pass a new ISR member's log end. A lost request or a timeout is not a failure: send the
    /// same proposal again ([`LeaderState::pending_proposal`]). An answer to a proposal that is
    /// no longer the one in flight is ignored.
    pub fn on_proposal_failed(
        &mut self,
        proposal: &IsrProposal,
        error: AlterPartitionError,
    ) -> bool {
        if self.pending_proposal() != Some(proposal) {
            return false;
        }
        match error {
            AlterPartitionError::IneligibleReplica | AlterPartitionError::OperationNotAttempted => {
                self.pending = None;
                false
            }
            AlterPartitionError::InvalidUpdateVersion
            | AlterPartitionError::FencedLeaderEpoch
            | AlterPartitionError::UnknownTopicOrPartition
            | AlterPartitionError::InvalidRequest
            | AlterPartitionError::NewLeaderElected => false,
            AlterPartitionError::Retriable => true,
        }
    }

    /// Before appending an acks=all produce: refused while the committed ISR is below
    /// `min.insync.replicas`.
    pub fn check_acks_all_before_append(&self) -> Result<(), NotEnoughReplicas> {
        if self.isr.len() < self.min_isr {
            return Err(NotEnoughReplicas {
                isr_size: self.isr.len(),
                min_isr: self.min_isr,
            });
        }
        Ok(())
    }

    /// Kafka's `checkEnoughReplicasReachOffset` for a request whose records end before
    /// `end_offset` (its last offset + 1).
    pub fn acks_all_state(&self, end_offset: i64) -> AcksAllState {
        if self.high_watermark >= end_offset {
            if self.maximal_isr().len() >= self.min_isr {
                AcksAllState::Done
            } else {
                AcksAllState::DoneIsrTooSmall
            }
        } else {
            AcksAllState::Waiting
        }
    }

    /// Parks an acks=all request until the HW reaches `end_offset`. After resigning, the
    /// request is failed at the next [`LeaderState::take_ready`].
    pub fn park(&mut self, token: WaiterToken, end_offset: i64) {
        self.waiters.push((token, end_offset));
    }

    /// Forgets a parked request (it timed out, or its connection went away).
    pub fn cancel(&mut self, token: WaiterToken) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|(t, _)| *t != token);
        before != self.waiters.len()
    }

    pub fn parked(&self) -> usize {
        self.waiters.len()
    }

    /// The parked requests that are finished, in the order they were parked.
    pub fn take_ready(&mut self) -> Vec<(WaiterToken, AcksOutcome)> {
        if self.resigned {
            return self
                .waiters
                .drain(..)
                .map(|(t, _)| (t, AcksOutcome::NotLeaderOrFollower))
                .collect();
        }
        let mut ready = Vec::new();
        let mut kept = Vec::with_capacity(self.waiters.len());
        for (token, end) in std::mem::take(&mut self.waiters) {
            match self.acks_all_state(end) {
                AcksAllState::Done => ready.push((token, AcksOutcome::Done)),
                AcksAllState::DoneIsrTooSmall => {
                    ready.push((token, AcksOutcome::NotEnoughReplicasAfterAppend))
                }
                AcksAllState::Waiting => kept.push((token, end)),
            }
        }
        self.waiters = kept;
        ready
    }

    /// Leadership is lost (a new leader epoch, or this broker is no longer the leader): every
    /// parked request fails with NOT_LEADER_OR_FOLLOWER, and the state refuses further work.
    pub fn resign(&mut self) -> Vec<(WaiterToken, AcksOutcome)> {
        self.resigned = true;
        self.pending = None;
        self.take_ready()
    }
}

fn dedup(mut ids: Vec<ReplicaId>) -> Vec<ReplicaId> {
    let mut seen = Vec::with_capacity(ids.len());
    ids.retain(|id| {
        if seen.contains(id) {
            false
        } else {
            seen.push(*id);
            true
        }
    });
    ids
}

/// Where a follower truncates after a `DivergingEpoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Truncate the log to this offset (`Log::truncate_to`), then fetch from the new LEO.
    pub offset: i64,
    /// False when the follower did not know the leader's epoch: it truncated to the end of its
    /// own largest epoch below it, and the next fetch (with that epoch as its last fetched
    /// epoch) may diverge again.
    pub complete: bool,
}

/// Kafka's `AbstractFetcherThread.getOffsetTruncationState` for a fetch response's
/// `DivergingEpoch (epoch, end_offset)`. `local_end_offset_for` is the follower's
/// `Log::end_offset_for`; `local_hw` is used only for an undefined leader answer.
pub fn truncation_offset(
    diverging: (i32, i64),
    local_end_offset_for: impl Fn(i32) -> (i32, i64),
    local_leo: i64,
    local_hw: i64,
) -> Truncation {
    let (leader_epoch, leader_end) = diverging;
    if leader_end == UNDEFINED_EPOCH_OFFSET {
        return Truncation {
            offset: local_hw.min(local_leo),
            complete: true,
        };
    }
    if leader_epoch == UNDEFINED_EPOCH {
        return Truncation {
            offset: leader_end.min(local_leo),
            complete: true,
        };
    }
    let (local_epoch, local_end) = local_end_offset_for(leader_epoch);
    if local_end == UNDEFINED_EPOCH_OFFSET {
        return Truncation {
            offset: leader_end.min(local_leo),
            complete: true,
        };
    }
    if local_epoch != leader_epoch {
        return Truncation {
            offset: local_end.min(local_leo),
            complete: false,
        };
    }
    Truncation {
        offset: local_end.min(leader_end).min(local_leo),
        complete: true,
    }
}

/// A follower's HW from the leader's (Kafka's `UnifiedLog.updateHighWatermark`): the leader's
/// HW clamped to `[log start, LEO]` of the follower's log. It may move back (a new leader's HW
/// can lag the old one's); readers of a follower see nothing past it.
pub fn follower_high_watermark(leader_hw: i64, local_log_start: i64, local_leo: i64) -> i64 {
    leader_hw.min(local_leo).max(local_log_start.min(local_leo))
}

#[cfg(test)]
mod tests;
