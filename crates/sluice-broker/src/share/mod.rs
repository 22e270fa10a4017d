//! The IO edge of share groups (KIP-932 queues): the share-partitions (state machines from
//! `sluice-share`, one per group and topic-partition, each behind its own lock), the share
//! sessions of ShareFetch/ShareAcknowledge, durable state, dead-lettering and the timer that
//! expires acquisition locks.
//!
//! Membership and assignment live in `sluice-group` (ShareGroupHeartbeat); this module is told
//! when a member departs and releases what it held.
//!
//! # In a cluster (issue #10; docs/QUEUES.md, "Share groups in a cluster")
//! - A share-partition lives on the leader of its user partition (Kafka's share-partition
//!   leader), created on first use from the state the share coordinator holds
//!   (`coordinator.rs`: the leader of `__share_group_state-0`; reached directly on its own
//!   node, else over the cluster RPC service 4, `remote.rs`) and written back there, committed,
//!   before anything derived from a change leaves the broker (`state_store.rs`). Each
//!   share-partition remembers the leader epoch it was created at: its writes carry it, and
//!   the coordinator refuses writes of a deposed leader (FENCED_LEADER_EPOCH).
//! - A share-partition whose node no longer leads its partition at that epoch, or one of whose
//!   writes failed, is dropped at once (`get`, `handles`, the timer): its locks are not carried
//!   over; the new leader loads the last committed state, in which acquired records are
//!   available again with their delivery counts. ShareFetch and ShareAcknowledge on a node
//!   that does not lead the partition answer NOT_LEADER_OR_FOLLOWER.
//! - Dead letters reach the DLQ partition's leader wherever it is (`dlq.rs`).
//! - A single node is its own share coordinator: the same calls, made in-process.

pub mod admin;
pub mod coordinator;
pub mod dlq;
pub mod queue;
pub mod remote;
pub mod serve;
pub mod state_store;

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use sluice_share::{AckError, AcquiredRange, DeadLetter, MemberId, SharePartition};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::group_config::{AutoOffsetReset, ShareSettings};
use crate::groups::now_u64;
use crate::limits::{MAX_FETCH_PARTITIONS, MAX_SHARE_SESSIONS};
use crate::metrics::{GroupTopicLabels, TopicLabels};
use crate::replica_manager::{Replica, ReplicaManager, Role};
use coordinator::ShareCoordinator;
use state_store::{Failure, StateKey, StateStore};

/// How long a share-partition's creation waits for this broker to be a live cluster member.
const LIVE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpKey {
    pub group: Arc<str>,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl SpKey {
    fn state_key(&self) -> StateKey {
        StateKey {
            group: self.group.to_string(),
            topic_id: self.topic_id,
            partition: self.partition,
        }
    }
}

/// One share-partition: a group's view of one topic-partition.
pub struct ShareHandle {
    pub key: SpKey,
    pub topic: String,
    pub log: Arc<Replica>,
    /// The leader epoch of the user partition this share-partition was created at: its
    /// writes carry it (fencing), and it is dropped once this node no longer leads at it.
    pub leader_epoch: i32,
    state: Mutex<SharePartition>,
    /// The state store's point after this share-partition's last queued write: whoever acts
    /// on its state (answers a client, hands out records, copies dead letters) first waits
    /// until it is committed ([`ShareService::settled`]).
    logged_end: AtomicI64,
    /// Set when one of its writes failed: the share-partition is dropped.
    failure: Failure,
}

impl ShareHandle {
    pub(crate) fn new(
        key: SpKey,
        topic: String,
        log: Arc<Replica>,
        leader_epoch: i32,
        state: SharePartition,
    ) -> Self {
        ShareHandle {
            key,
            topic,
            log,
            leader_epoch,
            state: Mutex::new(state),
            logged_end: AtomicI64::new(0),
            failure: Failure::default(),
        }
    }

    /// Whether this share-partition may still act: its node leads the partition at the epoch
    /// it was created at, and none of its writes failed.
    pub fn is_current(&self) -> bool {
        self.failure.lock().is_none()
            && self.log.role()
                == Role::Leader {
                    leader_epoch: self.leader_epoch,
                }
    }

    /// Why this share-partition can no longer act, if it cannot: a failed write, or lost
    /// leadership (NOT_LEADER_OR_FOLLOWER).
    pub fn check_current(&self) -> Result<(), KafkaError> {
        if let Some(e) = self.failure.lock().clone() {
            return Err(e);
        }
        if !self.is_current() {
            return Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "this node no longer leads {}-{}",
                    self.topic, self.key.partition
                ),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the state machine with the lock held; if it returns `true` the new state is
    /// queued for the share coordinator (still under the lock, so writes stay in change order)
    /// and the point to wait on is returned.
    ///
    /// Durability (docs/QUEUES.md#durability): the lock is not held over the commit. The
    /// change is in memory once `f` returns, but nothing leaves the broker because of it
    /// before the write is committed: the caller waits for it with [`ShareService::settled`]
    /// (or [`StateStore::durable`] and then [`ShareHandle::check_current`]) before answering,
    /// and everyone else who acts on this state waits for [`ShareService::settled`], which
    /// covers every write queued so far.
    pub fn change<T>(
        &self,
        store: &StateStore,
        f: impl FnOnce(&mut SharePartition) -> (T, bool),
    ) -> Result<(T, Option<i64>), KafkaError> {
        let mut sp = self.state.lock();
        // A failed share-partition never writes again: a newer one of the same leadership may
        // have loaded the committed state since, and this one's would overwrite it.
        if let Some(e) = self.failure.lock().clone() {
            return Err(e);
        }
        let (value, persist) = f(&mut sp);
        let end = if persist {
            // What is written now covers every change so far.
            sp.take_dirty();
            let end = store.append(
                &self.key.state_key(),
                Some(sp.snapshot()),
                self.leader_epoch,
                &self.failure,
            );
            self.logged_end.fetch_max(end, Ordering::AcqRel);
            Some(end)
        } else {
            None
        };
        Ok((value, end))
    }

    /// See [`ShareHandle::logged_end`].
    pub fn logged_end(&self) -> i64 {
        self.logged_end.load(Ordering::Acquire)
    }

    pub fn read<T>(&self, f: impl FnOnce(&SharePartition) -> T) -> T {
        f(&self.state.lock())
    }
}

/// (group, member): whose share session.
type SessionKey = (Arc<str>, Arc<str>);

/// A member's share session (KIP-932): the partitions it fetches and the epoch the next
/// request must carry.
struct ShareSession {
    next_epoch: i32,
    partitions: Vec<(Uuid, i32)>,
    /// Where the next fetch starts, so partitions take turns filling `max_records`.
    rotate: usize,
}

pub struct DlqJob {
    pub handle: Arc<ShareHandle>,
    pub letters: Vec<DeadLetter>,
    pub dlq_topic: String,
}

pub struct ShareService {
    partitions: RwLock<HashMap<SpKey, Arc<ShareHandle>>>,
    sessions: Mutex<HashMap<SessionKey, ShareSession>>,
    /// Writes to the share coordinator (this node's or another's).
    pub store: StateStore,
    /// The share coordinator, while this node leads `__share_group_state-0`.
    pub coordinator: ShareCoordinator,
    /// The coordinator load whose share-partitions were last rebuilt here ([`ShareService::materialize`]).
    materialized: Mutex<Option<u64>>,
    /// Woken when records become available again (release, lock expiry, redelivery backoff).
    pub available: Notify,
    timer_wake: Notify,
    dlq_tx: mpsc::Sender<DlqJob>,
    dlq_rx: Mutex<Option<mpsc::Receiver<DlqJob>>>,
    /// Serialises creation of share-partitions (first fetch of a group from a partition).
    create_lock: tokio::sync::Mutex<()>,
    /// The DLQ age metric's reads of oldest dead letters ([`dlq::states`]).
    dlq_oldest: Mutex<dlq::OldestCache>,
}

/// Kafka's error for a failed acknowledgement.
pub fn ack_error_code(e: &AckError) -> (i16, String) {
    match e {
        AckError::InvalidRecordState(m) => (ResponseError::InvalidRecordState.code(), m.clone()),
        AckError::InvalidRequest(m) => (ResponseError::InvalidRequest.code(), m.clone()),
    }
}

/// The session epoch after `epoch`, wrapping to 1.
fn next_epoch(epoch: i32) -> i32 {
    match epoch.checked_add(1) {
        Some(n) if n > 0 => n,
        _ => 1,
    }
}

/// What a request does to its share session.
pub enum SessionStep {
    /// Fetch these partitions (in this order).
    Open(Vec<(Uuid, i32)>),
    /// The session was closed (epoch -1): acknowledge, release, do not fetch.
    Closed,
}

impl ShareService {
    /// A service without share-partitions: they are created on first use, or rebuilt from the
    /// share coordinator's state when this node loads it ([`ShareService::materialize`]).
    pub fn new(coordinator: ShareCoordinator) -> Self {
        let (dlq_tx, dlq_rx) = mpsc::channel(crate::limits::DLQ_WRITER_QUEUE);
        ShareService {
            partitions: RwLock::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            store: StateStore::new(),
            coordinator,
            materialized: Mutex::new(None),
            available: Notify::new(),
            timer_wake: Notify::new(),
            dlq_tx,
            dlq_rx: Mutex::new(Some(dlq_rx)),
            create_lock: tokio::sync::Mutex::new(()),
            dlq_oldest: Mutex::new(Default::default()),
        }
    }

    /// Rebuilds, from the share coordinator's state on this node, the share-partitions of the
    /// partitions this node leads (a single node at start, as it replayed its state log
    /// before: DLQ writes left pending are offered again, lag is reported, without waiting for
    /// a consumer). Once per coordinator load; nothing when this node does not coordinate.
    pub async fn materialize(
        &self,
        metadata: &crate::metadata::Metadata,
        replicas: &ReplicaManager,
    ) {
        // In a cluster share-partitions are created on first use only: that path records the
        // leader's epoch at the coordinator (fencing its predecessor) before it serves.
        if !metadata.cluster.is_single_node() {
            return;
        }
        let Some(generation) = self.coordinator.loaded_generation() else {
            return;
        };
        if *self.materialized.lock() == Some(generation) {
            return;
        }
        let Ok(all) = self.coordinator.all().await else {
            return;
        };
        *self.materialized.lock() = Some(generation);
        let _creating = self.create_lock.lock().await;
        let mut partitions = self.partitions.write();
        for (key, snapshot, epoch) in all {
            let Some(topic) = metadata.topic_by_id(key.topic_id) else {
                continue;
            };
            let Some(log) = Some(&topic)
                .filter(|t| t.has_partition(key.partition))
                .and_then(|t| replicas.get(t.tp(key.partition)))
            else {
                continue;
            };
            let Role::Leader { leader_epoch } = log.role() else {
                continue;
            };
            let k = SpKey {
                group: Arc::from(key.group.as_str()),
                topic_id: key.topic_id,
                partition: key.partition,
            };
            if leader_epoch < epoch || partitions.get(&k).is_some_and(|h| h.is_current()) {
                continue;
            }
            partitions.insert(
                k.clone(),
                Arc::new(ShareHandle::new(
                    k,
                    topic.name.clone(),
                    log,
                    leader_epoch,
                    SharePartition::from_snapshot(&snapshot),
                )),
            );
        }
    }

    /// The share-partition, if this node has a current one (a stale one is dropped).
    pub fn get(&self, key: &SpKey) -> Option<Arc<ShareHandle>> {
        let h = self.partitions.read().get(key).cloned()?;
        if h.is_current() {
            return Some(h);
        }
        self.drop_stale(&[h]);
        None
    }

    /// Forgets share-partitions that can no longer act (see [`ShareHandle::is_current`]).
    fn drop_stale(&self, stale: &[Arc<ShareHandle>]) {
        if stale.is_empty() {
            return;
        }
        let mut partitions = self.partitions.write();
        for h in stale {
            if partitions.get(&h.key).is_some_and(|c| Arc::ptr_eq(c, h)) {
                partitions.remove(&h.key);
                tracing::info!(group = %h.key.group, topic = %h.topic, partition = h.key.partition, "share-partition dropped: this node no longer leads it (or its state write failed)");
            }
        }
    }

    /// Every current share-partition of `group` (all groups when `None`).
    pub fn handles(&self, group: Option<&str>) -> Vec<Arc<ShareHandle>> {
        let (current, stale): (Vec<_>, Vec<_>) = self
            .partitions
            .read()
            .values()
            .filter(|h| group.is_none_or(|g| &*h.key.group == g))
            .cloned()
            .partition(|h| h.is_current());
        self.drop_stale(&stale);
        current
    }

    /// The share-partition, created on first use at the position `share.auto.offset.reset`
    /// gives (and recorded durably, so a restart does not move it).
    pub async fn get_or_create(
        &self,
        broker: &Broker,
        key: &SpKey,
        settings: &ShareSettings,
    ) -> Result<Arc<ShareHandle>, KafkaError> {
        let h = self.get_or_start_creating(broker, key, settings).await?;
        self.settled(&h).await?;
        Ok(h)
    }

    /// [`ShareService::get_or_create`] without waiting for the new state to be durable: the
    /// caller waits ([`ShareService::settled`]) before acting on it, once for many partitions
    /// (one fsync instead of one per partition), and the creation lock is not held over it.
    pub async fn get_or_start_creating(
        &self,
        broker: &Broker,
        key: &SpKey,
        settings: &ShareSettings,
    ) -> Result<Arc<ShareHandle>, KafkaError> {
        if let Some(h) = self.get(key) {
            return Ok(h);
        }
        let _creating = self.create_lock.lock().await;
        if let Some(h) = self.get(key) {
            return Ok(h);
        }
        let topic = broker.metadata.topic_by_id(key.topic_id).ok_or_else(|| {
            KafkaError::new(
                ResponseError::UnknownTopicId,
                format!("no topic with id {}", key.topic_id),
            )
        })?;
        let log = Some(&topic)
            .filter(|t| t.has_partition(key.partition))
            .and_then(|t| broker.replicas.get(t.tp(key.partition)))
            .ok_or_else(|| {
                KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {} has no partition {}", topic.name, key.partition),
                )
            })?;
        // Only the partition's leader keeps a share-partition (as Kafka's share-partition
        // leader): NOT_LEADER_OR_FOLLOWER elsewhere.
        log.check_leader(crate::replica_manager::NO_LEADER_EPOCH)?;
        // A node whose image may be stale (restarting, fenced) does not trust its role: it
        // waits a little to become a live member (a restart catching up), then refuses.
        let live_by = tokio::time::Instant::now() + LIVE_WAIT;
        while !broker.metadata.cluster.is_live() {
            if tokio::time::Instant::now() >= live_by {
                return Err(KafkaError::new(
                    ResponseError::NotLeaderOrFollower,
                    "this broker is not a live member of the cluster yet",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log.check_leader(crate::replica_manager::NO_LEADER_EPOCH)?;
        let Role::Leader { leader_epoch } = log.role() else {
            return Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                format!("this node does not lead {}-{}", topic.name, key.partition),
            ));
        };
        // The last committed state (Kafka's ReadShareGroupState), else a new one at the
        // position `share.auto.offset.reset` gives. Written back at once either way: the
        // coordinator then holds this leader epoch durably before anything is served.
        let read = state_store::read(broker, &key.state_key(), leader_epoch).await;
        let state = match read.map_err(|e| state_store::unavailable(&e))? {
            Some(snapshot) => SharePartition::from_snapshot(&snapshot),
            None => SharePartition::new(start_offset(&log, settings, now_ms())?),
        };
        let handle = Arc::new(ShareHandle::new(
            key.clone(),
            topic.name.clone(),
            log,
            leader_epoch,
            state,
        ));
        handle.change(&self.store, |_| ((), true))?;
        self.partitions.write().insert(key.clone(), handle.clone());
        Ok(handle)
    }

    /// Advances the member's share session for a request with `epoch` that names `add` and
    /// forgets `forget`. Errors are Kafka codes for the whole request.
    pub fn session_step(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        add: &[(Uuid, i32)],
        forget: &[(Uuid, i32)],
        is_fetch: bool,
    ) -> Result<SessionStep, KafkaError> {
        let key = (Arc::<str>::from(group), Arc::<str>::from(member));
        let mut sessions = self.sessions.lock();
        match epoch {
            0 if is_fetch => {
                if !sessions.contains_key(&key) && sessions.len() >= MAX_SHARE_SESSIONS {
                    return Err(KafkaError::new(
                        ResponseError::ShareSessionLimitReached,
                        format!("this broker already has {MAX_SHARE_SESSIONS} share sessions"),
                    ));
                }
                let mut seen = HashSet::new();
                let partitions: Vec<(Uuid, i32)> = add
                    .iter()
                    .filter(|p| seen.insert(**p))
                    .take(MAX_FETCH_PARTITIONS)
                    .copied()
                    .collect();
                sessions.insert(
                    key,
                    ShareSession {
                        next_epoch: 1,
                        partitions: partitions.clone(),
                        rotate: 0,
                    },
                );
                Ok(SessionStep::Open(partitions))
            }
            0 => Err(KafkaError::new(
                ResponseError::InvalidShareSessionEpoch,
                "ShareAcknowledge cannot open a share session (epoch 0)",
            )),
            // Closing is idempotent: the client sends its final acknowledgement (epoch -1) and
            // its leave heartbeat at once, on different connections, and the leave may win.
            -1 => {
                sessions.remove(&key);
                Ok(SessionStep::Closed)
            }
            e => {
                let Some(s) = sessions.get_mut(&key) else {
                    return Err(session_not_found(group, member));
                };
                if e != s.next_epoch {
                    return Err(KafkaError::new(
                        ResponseError::InvalidShareSessionEpoch,
                        format!(
                            "share session epoch {e} is not the expected {}",
                            s.next_epoch
                        ),
                    ));
                }
                s.next_epoch = next_epoch(e);
                // Sets, not scans: O(session + request), whatever their sizes.
                let forget: HashSet<&(Uuid, i32)> = forget.iter().collect();
                s.partitions.retain(|p| !forget.contains(p));
                let mut known: HashSet<(Uuid, i32)> = s.partitions.iter().copied().collect();
                for p in add {
                    if known.len() >= MAX_FETCH_PARTITIONS {
                        break;
                    }
                    if !forget.contains(p) && known.insert(*p) {
                        s.partitions.push(*p);
                    }
                }
                let n = s.partitions.len();
                let mut order = s.partitions.clone();
                if n > 0 {
                    order.rotate_left(s.rotate % n);
                    s.rotate = (s.rotate + 1) % n;
                }
                Ok(SessionStep::Open(order))
            }
        }
    }

    /// Acquires records for `member`; wakes the timer so it sees the new lock deadlines.
    /// Returns the ranges and their lock deadline (for [`ShareService::unacquire`]). Under
    /// `share.isolation.level=read_committed` only records below the last stable offset are
    /// acquired: an open transaction holds the share group there (as in Kafka).
    pub fn acquire(
        &self,
        handle: &ShareHandle,
        member: &MemberId,
        max_records: u32,
        settings: &ShareSettings,
    ) -> (Vec<AcquiredRange>, u64) {
        let marks = handle.log.watermarks();
        let now = now_u64();
        let ranges = handle.state.lock().acquire(
            member,
            max_records,
            marks.log_start_offset,
            readable_end(&handle.log, settings.read_committed),
            now,
            &settings.share,
        );
        if !ranges.is_empty() {
            self.timer_wake.notify_one();
        }
        (ranges, now.saturating_add(settings.share.lock_duration_ms))
    }

    /// The rest of a stored batch a fetch has read, for the same member under the same lock
    /// (batch-aligned acquisition: `SharePartition::acquire_through`); `deadline` is what
    /// [`Self::acquire`] returned for that fetch; the records join `ranges`, the fetch's own.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_through(
        &self,
        handle: &ShareHandle,
        member: &MemberId,
        from: i64,
        through: i64,
        deadline: u64,
        settings: &ShareSettings,
        ranges: &mut Vec<AcquiredRange>,
    ) {
        let now = deadline.saturating_sub(settings.share.lock_duration_ms);
        handle.state.lock().acquire_through(
            member,
            from,
            through,
            readable_end(&handle.log, settings.read_committed),
            now,
            &settings.share,
            ranges,
        );
    }

    /// Archives acquired records that must never reach a consumer (transaction markers;
    /// records of aborted transactions under read_committed), found when the acquired
    /// batches were read. Returns the state log offset to wait on, if anything changed.
    pub fn archive_acquired(
        &self,
        handle: &ShareHandle,
        member: &MemberId,
        skipped: &[(i64, i64)],
        deadline: u64,
    ) -> Result<Option<i64>, KafkaError> {
        if skipped.is_empty() {
            return Ok(None);
        }
        let (n, end) = handle.change(&self.store, |sp| {
            let n: u64 = skipped
                .iter()
                .map(|(first, last)| sp.archive_acquired(member, *first, *last, deadline))
                .sum();
            (n, n > 0)
        })?;
        if n > 0 {
            self.available.notify_waiters();
        }
        Ok(end)
    }

    /// Gives back acquired records a response had no room for (`max_bytes`): they were never
    /// delivered, so their delivery counts are restored.
    pub fn unacquire(
        &self,
        handle: &ShareHandle,
        member: &MemberId,
        first: i64,
        last: i64,
        deadline: u64,
    ) {
        if handle.state.lock().unacquire(member, first, last, deadline) > 0 {
            self.available.notify_waiters();
        }
    }

    /// Waits until every state change of `handle` logged so far is durable; call before
    /// anything derived from its state leaves the broker (records handed out, dead letters
    /// copied). Free when already durable.
    pub async fn settled(&self, handle: &ShareHandle) -> Result<(), KafkaError> {
        self.store.durable(handle.logged_end()).await?;
        handle.check_current()
    }

    /// Hands new dead letters to the writer; if its queue is full they stay pending.
    pub fn dispatch_dead_letters(
        &self,
        handle: &Arc<ShareHandle>,
        letters: Vec<DeadLetter>,
        settings: &ShareSettings,
    ) {
        if letters.is_empty() {
            return;
        }
        let Some(dlq_topic) = settings.dlq_topic.clone() else {
            // Dead-lettering was turned off after these were marked: archive them.
            let offsets: Vec<i64> = letters.iter().map(|l| l.offset).collect();
            let _ = handle.change(&self.store, |sp| {
                sp.dead_lettered(&offsets);
                ((), true)
            });
            return;
        };
        let job = DlqJob {
            handle: handle.clone(),
            letters,
            dlq_topic,
        };
        if let Err(e) = self.dlq_tx.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            let offsets: Vec<i64> = job.letters.iter().map(|l| l.offset).collect();
            handle.state.lock().retry_dead_letters(&offsets, false);
        }
    }

    /// A member left its group or timed out: its session ends and its records are released.
    pub fn member_departed(&self, broker: &Broker, group: &str, member: &str) {
        self.sessions
            .lock()
            .remove(&(Arc::<str>::from(group), Arc::<str>::from(member)));
        self.release_member(broker, group, member);
    }

    /// Releases everything `member` holds in `group` (session closed or member gone).
    pub fn release_member(&self, broker: &Broker, group: &str, member: &str) {
        let settings = broker.metadata.share_settings(group);
        let member: MemberId = Arc::from(member);
        let now = now_u64();
        for h in self.handles(Some(group)) {
            let letters = h.change(&self.store, |sp| {
                sp.release_member(&member, now, &settings.share);
                let letters = sp.take_dead_letters();
                let persist = !letters.is_empty();
                (letters, persist)
            });
            match letters {
                Ok((letters, _)) => self.dispatch_dead_letters(&h, letters, &settings),
                Err(e) => tracing::error!(group, error = %e, "cannot record share state"),
            }
        }
        self.available.notify_waiters();
        self.timer_wake.notify_one();
    }

    /// Forgets share-partitions (DeleteShareGroupOffsets, group deletion, topic deletion),
    /// durably. A key this node holds no share-partition for has its state deleted all the same
    /// (deletions are not fenced; the share-partition may live on another node, or nowhere).
    pub async fn remove(&self, keys: &[SpKey]) -> Result<(), KafkaError> {
        let mut end = None;
        let mut failures = Vec::new();
        for key in keys {
            let h = self.partitions.write().remove(key);
            let failure = h.map_or_else(state_store::Failure::default, |h| h.failure.clone());
            end = Some(
                self.store
                    .append(&key.state_key(), None, coordinator::NO_EPOCH, &failure),
            );
            failures.push(failure);
        }
        if let Some(end) = end {
            self.store.durable(end).await?;
        }
        for f in failures {
            if let Some(e) = f.lock().clone() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sets a share-partition's start offset (AlterShareGroupOffsets), creating it if needed.
    pub async fn reset(
        &self,
        broker: &Broker,
        key: &SpKey,
        offset: i64,
        settings: &ShareSettings,
    ) -> Result<(), KafkaError> {
        let h = self.get_or_create(broker, key, settings).await?;
        let marks = h.log.watermarks();
        let offset = offset.clamp(marks.log_start_offset, marks.high_watermark);
        h.change(&self.store, |sp| {
            sp.reset(offset);
            ((), true)
        })?;
        self.settled(&h).await
    }

    pub fn take_dlq_receiver(&self) -> Option<mpsc::Receiver<DlqJob>> {
        self.dlq_rx.lock().take()
    }

    /// One timer pass: expire locks, end backoffs, re-offer pending dead letters.
    fn tick(&self, broker: &Broker) {
        let now = now_u64();
        let mut settings_of: HashMap<Arc<str>, ShareSettings> = HashMap::new();
        let mut woke = false;
        for h in self.handles(None) {
            let settings = settings_of
                .entry(h.key.group.clone())
                .or_insert_with(|| broker.metadata.share_settings(&h.key.group))
                .clone();
            let result = h.change(&self.store, |sp| {
                let changed = sp.tick(now, &settings.share);
                let letters = sp.take_dead_letters();
                // Record what changed since the last write: delivery counts of new
                // acquisitions, records archived at the delivery limit. Locks themselves are
                // never recorded (they do not survive a restart).
                let dirty = sp.take_dirty();
                ((changed, letters), dirty)
            });
            match result {
                Ok(((changed, letters), _)) => {
                    woke |= changed;
                    self.dispatch_dead_letters(&h, letters, &settings);
                }
                Err(e) => tracing::error!(error = %e, "cannot record share state"),
            }
        }
        if woke {
            self.available.notify_waiters();
        }
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        self.handles(None)
            .iter()
            .filter_map(|h| h.read(|sp| sp.next_deadline_ms()))
            .min()
    }

    /// Share-group lag and DLQ depth, for `/metrics`. Lag counts up to what the group can
    /// read: the last stable offset under read_committed, the high watermark otherwise.
    fn update_metrics(&self, broker: &Broker) {
        let mut lag: HashMap<(Arc<str>, String), (i64, i64)> = HashMap::new();
        let mut read_committed: HashMap<Arc<str>, bool> = HashMap::new();
        for h in self.handles(None) {
            let committed = *read_committed
                .entry(h.key.group.clone())
                .or_insert_with(|| broker.metadata.share_settings(&h.key.group).read_committed);
            let end = readable_end(&h.log, committed);
            let (n, held) = h.read(|sp| (sp.lag(end), sp.in_flight() as i64));
            let sum = lag
                .entry((h.key.group.clone(), h.topic.clone()))
                .or_default();
            sum.0 += n;
            sum.1 += held;
        }
        for ((group, topic), (n, held)) in lag {
            let labels = GroupTopicLabels {
                group: group.to_string(),
                topic,
            };
            broker
                .metrics
                .share_in_flight
                .get_or_create(&labels)
                .set(held);
            broker.metrics.share_lag.get_or_create(&labels).set(n);
        }
        let now = crate::broker::now_ms();
        for d in dlq::states(broker, &mut self.dlq_oldest.lock()) {
            let labels = TopicLabels { topic: d.topic };
            broker.metrics.dlq_depth.get_or_create(&labels).set(d.depth);
            let age = d.oldest_ms.map_or(0, |t| now.saturating_sub(t).max(0));
            broker
                .metrics
                .dlq_oldest_age
                .get_or_create(&labels)
                .set(age as f64 / 1000.0);
        }
    }
}

fn session_not_found(group: &str, member: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::ShareSessionNotFound,
        format!("member {member} of share group {group} has no share session"),
    )
}

/// The end of what a share group may acquire: the last stable offset under read_committed
/// (nothing of an open transaction, nor anything after it), else the high watermark.
pub fn readable_end(log: &Replica, read_committed: bool) -> i64 {
    let hw = log.watermarks().high_watermark;
    if read_committed {
        log.last_stable_offset().min(hw)
    } else {
        hw
    }
}

/// Where a new share-partition starts. "latest" is the end the group can read (the last
/// stable offset under read_committed, as ListOffsets answers a read_committed consumer), so
/// the committed part of a transaction open at creation is not skipped.
fn start_offset(log: &Replica, settings: &ShareSettings, now: i64) -> Result<i64, KafkaError> {
    let marks = log.watermarks();
    let latest = readable_end(log, settings.read_committed);
    Ok(match settings.auto_offset_reset {
        AutoOffsetReset::Latest => latest,
        AutoOffsetReset::Earliest => marks.log_start_offset,
        AutoOffsetReset::ByDuration(ms) => match log.find_by_timestamp(now.saturating_sub(ms))? {
            Some(slice) => sluice_storage::BatchIter::new(&slice.load()?)
                .next()
                .map_or(latest, |(_, h)| h.base_offset),
            None => latest,
        },
    })
}

/// Expires locks at their deadlines (at least once a second), drops share-partitions this
/// node no longer leads, rebuilds those of a new coordinator load, and refreshes the share
/// metrics.
pub async fn run_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let share = &broker.share;
    let mut last_metrics = 0u64;
    loop {
        let now = now_u64();
        let next = share.next_deadline_ms().unwrap_or(now + 1000);
        let wait = Duration::from_millis(next.saturating_sub(now).clamp(1, 1000));
        tokio::select! {
            _ = stop.changed() => return,
            _ = share.timer_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        share.tick(&broker);
        share.materialize(&broker.metadata, &broker.replicas).await;
        let now = now_u64();
        if now >= last_metrics + 1000 {
            last_metrics = now;
            share.update_metrics(&broker);
        }
    }
}
