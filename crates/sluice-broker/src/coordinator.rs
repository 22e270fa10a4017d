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
//! - [`Follower`]: that state machine, shared by the coordinators: it follows the replica's role
//!   ([`FollowerHook`] / [`Follower::follow`]), builds the loaded state with the coordinator's
//!   own replay ([`Builder`]), reports loads and unloads, and can load again after a write
//!   whose outcome is unknown ([`Follower::reload`]).
//!
//! # Today
//! The group coordinator (`__consumer_offsets`: committed offsets, classic and KIP-848
//! groups; `offsets.rs`), the transaction coordinator (`__transaction_state`: every
//! transactional id; `txn/`), the share coordinator (`__share_group_state`: share-partition
//! state; `share/coordinator.rs`), and the schema registry (`_schemas`; `schemas.rs`: its hook
//! keeps the replica in every role, since every node applies the committed events, and its
//! primary writes through [`CoordinatorLog`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;

use crate::error::KafkaError;
use crate::partition::Partition;
use crate::replica_manager::{AcksWait, Replica, Role};

/// The group coordinator's internal topic (one partition, as every internal log here).
pub const GROUP_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's internal topic (one partition).
pub const TXN_TOPIC: &str = "__transaction_state";
/// The share coordinator's internal topic (one partition; `share/coordinator.rs`).
pub const SHARE_TOPIC: &str = "__share_group_state";
/// Kafka's internal topic names, and Sluice's.
pub const INTERNAL_TOPICS: &[&str] = &[
    "__cluster_metadata",
    GROUP_TOPIC,
    SHARE_TOPIC,
    TXN_TOPIC,
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

    /// The writer of a replica this node leads now (at its current epoch), else
    /// NOT_LEADER_OR_FOLLOWER naming `what`.
    pub fn leading(
        replica: Arc<Replica>,
        flush_always: bool,
        wake: Arc<Notify>,
        what: &str,
    ) -> Result<Self, KafkaError> {
        match replica.role() {
            Role::Leader { leader_epoch } => Ok(CoordinatorLog::new(
                replica,
                leader_epoch,
                flush_always,
                wake,
            )),
            Role::Follower { .. } => Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                format!("this node does not lead {what}"),
            )),
        }
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

impl<T> LoadState<T> {
    /// The leader epoch this state is (being) loaded for, if any.
    fn epoch(&self, log_of: impl Fn(&T) -> &CoordinatorLog) -> Option<i32> {
        match self {
            LoadState::NotCoordinator => None,
            LoadState::Loading { leader_epoch, .. } => Some(*leader_epoch),
            LoadState::Loaded(l) => Some(log_of(l).leader_epoch()),
        }
    }
}

/// Implements [`Loadable`] for a loaded state with the fields `log: CoordinatorLog` and
/// `generation: u64`.
macro_rules! impl_loadable {
    ($t:ty) => {
        impl $crate::coordinator::Loadable for $t {
            fn log(&self) -> &$crate::coordinator::CoordinatorLog {
                &self.log
            }

            fn generation(&self) -> u64 {
                self.generation
            }
        }
    };
}
pub(crate) use impl_loadable;

/// What a following coordinator's loaded state gives the shared mechanism.
pub trait Loadable: Send + Sync + 'static {
    fn log(&self) -> &CoordinatorLog;
    fn generation(&self) -> u64;
}

/// Builds the loaded state from the log (replayed up to its end; blocking).
pub type Builder<T> = Box<dyn Fn(CoordinatorLog, u64) -> Result<T, KafkaError> + Send + Sync>;

/// The load state machine every coordinator shares (see the module docs): it follows the role
/// of its partition's replica and holds the loaded state while this node leads.
pub struct Follower<T: Loadable> {
    /// "group", "transaction": for errors and logs.
    what: &'static str,
    status: parking_lot::RwLock<LoadState<T>>,
    /// Numbers loads, so a load that finishes after its leadership ended is thrown away.
    generation: AtomicU64,
    flush_always: bool,
    /// Woken after appends (the leader's replica-fetch long polls wait on it).
    wake: Arc<Notify>,
    build: Builder<T>,
    /// Whether this broker may act as a live member of the cluster (registered, unfenced, its
    /// image past its registration): a restarted node whose stale image still names it leader
    /// does not load until then.
    ready: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
    /// Called with false when the loaded state is dropped, true when a load completes.
    on_change: OnceLock<Box<dyn Fn(bool) + Send + Sync>>,
}

impl<T: Loadable> Follower<T> {
    pub fn new(
        what: &'static str,
        flush_always: bool,
        wake: Arc<Notify>,
        build: Builder<T>,
    ) -> Self {
        Follower {
            what,
            status: parking_lot::RwLock::new(LoadState::NotCoordinator),
            generation: AtomicU64::new(0),
            flush_always,
            wake,
            build,
            ready: OnceLock::new(),
            on_change: OnceLock::new(),
        }
    }

    pub fn flush_always(&self) -> bool {
        self.flush_always
    }

    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Registers the broker's liveness check (loads wait for it; none set: never ready).
    pub fn set_ready(&self, f: Box<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.ready.set(f);
    }

    fn is_ready(&self) -> bool {
        self.ready.get().is_some_and(|f| f())
    }

    /// Registers the owner's reaction to loads (true) and unloads (false).
    pub fn set_on_change(&self, f: Box<dyn Fn(bool) + Send + Sync>) {
        let _ = self.on_change.set(f);
    }

    fn changed(&self, loaded: bool) {
        if let Some(f) = self.on_change.get() {
            f(loaded);
        }
    }

    /// The loaded state, or NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.
    pub fn loaded(&self) -> Result<Arc<T>, KafkaError> {
        match &*self.status.read() {
            LoadState::Loaded(l) => Ok(l.clone()),
            LoadState::Loading { .. } => Err(load_in_progress(self.what)),
            LoadState::NotCoordinator => Err(not_coordinator(self.what)),
        }
    }

    /// Whether a load is under way.
    pub fn is_loading(&self) -> bool {
        matches!(&*self.status.read(), LoadState::Loading { .. })
    }

    /// Whether this node leads the partition (loading or loaded).
    pub fn is_leading(&self) -> bool {
        !matches!(&*self.status.read(), LoadState::NotCoordinator)
    }

    /// The generation of the loaded state, if loaded.
    pub fn loaded_generation(&self) -> Option<u64> {
        match &*self.status.read() {
            LoadState::Loaded(l) => Some(l.generation()),
            _ => None,
        }
    }

    /// Drops the loaded state (leadership lost, replica removed).
    pub fn unload(&self) {
        let was = std::mem::replace(&mut *self.status.write(), LoadState::NotCoordinator);
        if !matches!(was, LoadState::NotCoordinator) {
            tracing::info!(
                coordinator = self.what,
                "coordinator unloaded: this node no longer leads its partition"
            );
            self.changed(false);
        }
    }

    /// Installs a finished load if its generation is still the current one.
    fn install(&self, loaded: T) -> bool {
        let mut status = self.status.write();
        match &*status {
            LoadState::Loading { generation, .. } if *generation == loaded.generation() => {
                let epoch = loaded.log().leader_epoch();
                *status = LoadState::Loaded(Arc::new(loaded));
                drop(status);
                tracing::info!(
                    coordinator = self.what,
                    leader_epoch = epoch,
                    "coordinator loaded its partition"
                );
                self.changed(true);
                true
            }
            _ => false,
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        matches!(&*self.status.read(), LoadState::Loading { generation: g, .. } if *g == generation)
    }

    fn next_generation(&self, leader_epoch: i32) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let was = std::mem::replace(
            &mut *self.status.write(),
            LoadState::Loading {
                leader_epoch,
                generation,
            },
        );
        if matches!(was, LoadState::Loaded(_)) {
            self.changed(false);
        }
        generation
    }

    fn build_and_install(&self, replica: Arc<Replica>, leader_epoch: i32, generation: u64) {
        let log = CoordinatorLog::new(replica, leader_epoch, self.flush_always, self.wake.clone());
        match (self.build)(log, generation) {
            Ok(loaded) => {
                self.install(loaded);
            }
            Err(e) => {
                tracing::error!(coordinator = self.what, error = %e, "cannot load the coordinator")
            }
        }
    }

    /// Starts loading for leadership at `leader_epoch` (see the module docs): once the broker
    /// is live and the high watermark reached the log end this node became leader with, the
    /// log is replayed on the blocking pool.
    pub fn start_load(self: &Arc<Self>, replica: &Arc<Replica>, leader_epoch: i32) {
        let generation = self.next_generation(leader_epoch);
        tracing::info!(
            coordinator = self.what,
            leader_epoch,
            "coordinator loading its partition"
        );
        let follower = self.clone();
        let replica = replica.clone();
        let end = replica.watermarks().log_end_offset;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let waiter = CoordinatorLog::new(
                        replica.clone(),
                        leader_epoch,
                        follower.flush_always,
                        follower.wake.clone(),
                    );
                    while !follower.is_ready() {
                        if !follower.is_current(generation) {
                            return;
                        }
                        tokio::time::sleep(LOAD_POLL).await;
                    }
                    if !waiter
                        .wait_committed(end, || follower.is_current(generation))
                        .await
                    {
                        return;
                    }
                    let f = follower.clone();
                    let built = tokio::task::spawn_blocking(move || {
                        f.build_and_install(replica, leader_epoch, generation)
                    })
                    .await;
                    if let Err(e) = built {
                        tracing::error!(coordinator = follower.what, error = %e, "cannot load the coordinator");
                    }
                });
            }
            Err(_) => {
                // No runtime (tests): load at once.
                if replica.watermarks().high_watermark >= end {
                    self.build_and_install(replica, leader_epoch, generation);
                }
            }
        }
    }

    /// Loads at once, without waiting for liveness or the high watermark (standalone stores
    /// of unit tests).
    #[cfg(test)]
    pub fn load_now(&self, replica: Arc<Replica>, leader_epoch: i32) {
        let generation = self.next_generation(leader_epoch);
        self.build_and_install(replica, leader_epoch, generation);
    }

    /// Loads the state again from the log (same leadership): after a write whose outcome is
    /// unknown (appended, not confirmed), memory must again equal a replay of the log.
    pub fn reload(self: &Arc<Self>, generation: u64) {
        let target = match &*self.status.read() {
            LoadState::Loaded(l) if l.generation() == generation && l.log().still_leading() => {
                Some((l.log().replica().clone(), l.log().leader_epoch()))
            }
            _ => None,
        };
        if let Some((replica, epoch)) = target {
            tracing::warn!(
                coordinator = self.what,
                "a write's outcome is unknown: loading the coordinator's log again"
            );
            self.start_load(&replica, epoch);
        }
    }

    /// Writes `records` as one batch as the leader of the loaded state `l` and waits until they
    /// are committed. A failed commit loads the log again (the records may still commit:
    /// memory must follow the log, not this answer). The caller holds the lock that orders
    /// decide → write → apply, and applies only after this returns Ok.
    pub async fn write_committed(
        self: &Arc<Self>,
        l: &T,
        compaction: &crate::internal_log::Compaction,
        records: &[crate::internal_log::KeyValue],
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        let buf = crate::internal_log::encode_batch(records, now_ms)?;
        let end = l.log().append(&buf, now_ms)?;
        compaction.appended(buf.len());
        if let Err(e) = l.log().commit(end).await {
            self.reload(l.generation());
            return Err(e);
        }
        Ok(())
    }

    /// The replica's role changed (see [`CoordinatorHook::on_partition_state`]).
    pub fn follow(self: &Arc<Self>, replica: &Arc<Replica>) {
        match replica.role() {
            Role::Leader { leader_epoch } => {
                let current = {
                    let status = self.status.read();
                    match &*status {
                        LoadState::Loaded(l) if !Arc::ptr_eq(l.log().replica(), replica) => None,
                        s => s.epoch(|l| l.log()),
                    }
                };
                if current != Some(leader_epoch) {
                    self.start_load(replica, leader_epoch);
                }
            }
            Role::Follower { .. } => self.unload(),
        }
    }
}

/// A [`Follower`] as the `ReplicaManager`'s hook.
pub struct FollowerHook<T: Loadable>(pub Arc<Follower<T>>);

impl<T: Loadable> CoordinatorHook for FollowerHook<T> {
    fn on_partition_state(&self, replica: &Arc<Replica>) {
        self.0.follow(replica);
    }

    fn on_removed(&self) {
        self.0.unload();
    }
}
