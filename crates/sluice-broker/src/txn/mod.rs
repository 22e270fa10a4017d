//! The transaction coordinator's IO edge (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`): the replicated `__transaction_state` log, the markers written to
//! each partition and group of a transaction, and the timers that abort expired transactions.
//! The state machine itself is `sluice-txn`.
//!
//! # Following `__transaction_state-0` (issue #10)
//! The log is the replica of partition 0 of the internal topic `__transaction_state` (a topic
//! of the metadata image, replicated like any other; `coordinator.rs`). The coordinator is a
//! [`Follower`]: when this node becomes the partition's leader at epoch *e* it loads (waits
//! until the high watermark reaches the log end it became leader with, replays the log) and
//! serves; when it stops leading the state is dropped at once. Elsewhere every transactional
//! request answers NOT_COORDINATOR; while loading, COORDINATOR_LOAD_IN_PROGRESS.
//!
//! - Every decision of the state machine is a record (the id's whole new state), appended as
//!   the leader and answered only once committed (`CoordinatorLog::commit`: fsynced, and under
//!   replication below the high watermark); only then is it applied in memory. One async lock
//!   orders decide → write → apply, so memory always equals a replay of the log. A write whose
//!   outcome is unknown (appended, not confirmed in time) loads the log again.
//! - The coordinator epoch (carried by every marker, checked by the partitions: a lower one is
//!   TRANSACTION_COORDINATOR_FENCED) is the leader epoch of `__transaction_state-0`, as in
//!   Kafka, plus the last epoch an older single-node version recorded in the log (0 on a new
//!   log; such versions bumped a `CoordinatorEpoch` record at each start), so it never goes
//!   back after an upgrade. A deposed coordinator's late markers are fenced by the new one's.
//! - After a load every transaction in `Prepare*` gets its markers again (markers are
//!   idempotent); `Ongoing` ones are ended as in Kafka: by their producer's next InitProducerId
//!   (which fences and aborts) or by the timeout pass.
//! - Markers need the broker (partitions, committed offsets), which owns this coordinator. To
//!   keep the dependency one way, the coordinator only queues [`Markers`] work on a channel of
//!   its load; [`run`] (given the `Arc<Broker>` by `broker::run`) writes them while the load is
//!   current: a control batch per partition on its leader (this node: `Replica::append_marker`
//!   and the ISR's confirmation; another node: the cluster RPC, `remote.rs`), and a completion
//!   per group at the group coordinator (`OffsetStore::complete_txn`, locally or over the RPC),
//!   retried until all succeed, then persists `Complete*`.
//! - [`run`] also aborts timed-out transactions and expires idle transactional ids.
//! - The checks of other nodes (a partition leader's Produce, KIP-890; the group coordinator's
//!   TxnOffsetCommit) reach the coordinator through [`verify`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_txn::{
    Config, Coordinator, Decision, Markers, Member, ProducerIdEpoch, Step, TxnError, TxnMetadata,
};
use tokio::sync::{mpsc, watch, Notify};

use crate::broker::{now_ms, Broker};
use crate::coordinator::{
    CoordinatorHook, CoordinatorLog, Follower, Loadable, GROUP_TOPIC, TXN_TOPIC,
};
use crate::error::KafkaError;
use crate::internal_log;
use crate::metadata::Metadata;
use crate::replica_manager::{Replica, Role, TxnMarker};

pub mod remote;

pub const TXN_LOG_DIR: &str = "__transaction_state-0";

/// The key of a `__transaction_state` record.
#[derive(Serialize, Deserialize)]
enum Key {
    /// A transactional id; the value is its `TxnMetadata`, null when it expired.
    Txn(String),
    /// The coordinator epoch of an older single-node version; the value is an i32.
    CoordinatorEpoch,
}

fn txn_record(id: &str, value: Option<&TxnMetadata>) -> internal_log::KeyValue {
    (
        serde_json::to_vec(&Key::Txn(id.to_string())).ok(),
        value.and_then(|v| serde_json::to_vec(v).ok()),
    )
}

fn epoch_record(epoch: i32) -> internal_log::KeyValue {
    (
        serde_json::to_vec(&Key::CoordinatorEpoch).ok(),
        serde_json::to_vec(&epoch).ok(),
    )
}

/// The coordinator epoch of a load: the leader epoch of `__transaction_state-0` plus the
/// last epoch an older version recorded (`legacy`, 0 on a log written by a cluster).
pub fn coordinator_epoch(legacy: i32, leader_epoch: i32) -> i32 {
    legacy.max(0).saturating_add(leader_epoch.max(0))
}

fn to_response(e: TxnError) -> ResponseError {
    ResponseError::try_from_code(e.code()).unwrap_or(ResponseError::UnknownServerError)
}

/// A coordinator error as the transactional requests answer it: NOT_COORDINATOR and
/// COORDINATOR_LOAD_IN_PROGRESS as they are, every other failure to write
/// COORDINATOR_NOT_AVAILABLE (the client retries after a backoff).
fn write_failed(e: &KafkaError) -> ResponseError {
    match ResponseError::try_from_code(e.code) {
        Some(r @ (ResponseError::NotCoordinator | ResponseError::CoordinatorLoadInProgress)) => r,
        _ => {
            tracing::warn!(error = %e.message, "could not write __transaction_state");
            ResponseError::CoordinatorNotAvailable
        }
    }
}

/// Settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct TxnSettings {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            max_timeout_ms: sluice_txn::DEFAULT_MAX_TIMEOUT_MS,
            id_expiration_ms: sluice_txn::DEFAULT_ID_EXPIRATION_MS,
        }
    }
}

/// The coordinator's state while this node leads `__transaction_state-0`.
struct Loaded {
    log: CoordinatorLog,
    generation: u64,
    /// The epoch an older single-node version recorded (re-stated by snapshots).
    legacy_epoch: i32,
    /// Held from a decision until it is written and applied.
    state: tokio::sync::Mutex<Coordinator>,
    markers_tx: mpsc::UnboundedSender<Markers>,
    markers_rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Markers>>>,
    compaction: internal_log::Compaction,
}

impl Loadable for Loaded {
    fn log(&self) -> &CoordinatorLog {
        &self.log
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

/// Replays the log into a coordinator (blocking); queues the markers of every decided
/// transaction. The caller checked that the high watermark reached the log end.
fn build(
    log: CoordinatorLog,
    generation: u64,
    settings: &TxnSettings,
) -> Result<Loaded, KafkaError> {
    let mut coordinator = Coordinator::new(
        Config {
            max_timeout_ms: settings.max_timeout_ms,
            id_expiration_ms: settings.id_expiration_ms,
        },
        0,
    );
    let mut legacy = 0i32;
    internal_log::replay(log.partition(), |key, value| {
        let Some(Ok(key)) = key.map(serde_json::from_slice::<Key>) else {
            return;
        };
        match key {
            Key::CoordinatorEpoch => {
                if let Some(Ok(e)) = value.map(serde_json::from_slice::<i32>) {
                    legacy = legacy.max(e);
                }
            }
            Key::Txn(id) => match value.map(serde_json::from_slice::<TxnMetadata>) {
                Some(Ok(t)) if t.transactional_id == id => coordinator.apply(t),
                Some(_) => {
                    tracing::error!(id = %id, "skipping an undecodable transaction record")
                }
                None => coordinator.remove(&id),
            },
        }
    })?;
    let epoch = coordinator_epoch(legacy, log.leader_epoch());
    coordinator.set_coordinator_epoch(epoch);
    let compaction = internal_log::Compaction::new(log.partition().size_bytes());
    tracing::info!(
        coordinator_epoch = epoch,
        transactional_ids = coordinator.len(),
        "transaction coordinator replayed __transaction_state-0"
    );
    let (markers_tx, markers_rx) = mpsc::unbounded_channel();
    // Transactions decided before this load get their markers again. Queued here, before any
    // request can decide, so the queue holds each exactly once: queued later, a transaction a
    // request moved to Prepare* meanwhile would be queued twice, and a late duplicate marker
    // could close the producer's next transaction.
    for m in coordinator.pending_markers() {
        tracing::info!(transactional_id = %m.transactional_id, commit = m.commit, "re-sending the markers of a transaction decided before this load");
        let _ = markers_tx.send(m);
    }
    Ok(Loaded {
        log,
        generation,
        legacy_epoch: legacy,
        state: tokio::sync::Mutex::new(coordinator),
        markers_tx,
        markers_rx: parking_lot::Mutex::new(Some(markers_rx)),
        compaction,
    })
}

pub struct TxnCoordinator {
    follower: Arc<Follower<Loaded>>,
    /// Bumped at every load and unload; [`run`] follows it.
    loads: Arc<watch::Sender<u64>>,
    /// The epoch an older version recorded, as the last load here found it (the bound of an
    /// admin WriteTxnMarkers on a node that does not coordinate).
    legacy_epoch: Arc<AtomicI32>,
}

impl TxnCoordinator {
    /// A coordinator that coordinates nothing until its partition's replica is led here.
    pub fn new(settings: TxnSettings, flush_always: bool, wake: Arc<Notify>) -> Self {
        let legacy_epoch = Arc::new(AtomicI32::new(0));
        let legacy = legacy_epoch.clone();
        let follower = Arc::new(Follower::new(
            "transaction",
            flush_always,
            wake,
            Box::new(move |log, generation| {
                let loaded = build(log, generation, &settings)?;
                legacy.fetch_max(loaded.legacy_epoch, Ordering::AcqRel);
                Ok(loaded)
            }),
        ));
        let (loads, _) = watch::channel(0u64);
        let loads = Arc::new(loads);
        {
            let loads = loads.clone();
            follower.set_on_change(Box::new(move |_| loads.send_modify(|g| *g += 1)));
        }
        TxnCoordinator {
            follower,
            loads,
            legacy_epoch,
        }
    }

    /// The `ReplicaManager` hook of `__transaction_state`.
    pub fn hook(&self) -> Arc<dyn CoordinatorHook> {
        Arc::new(crate::coordinator::FollowerHook(self.follower.clone()))
    }

    /// Registers the broker's liveness check (loads wait for it).
    pub fn set_ready(&self, f: Box<dyn Fn() -> bool + Send + Sync>) {
        self.follower.set_ready(f);
    }

    /// Whether a load is under way (FindCoordinator waits a little for it).
    pub fn is_loading(&self) -> bool {
        self.follower.is_loading()
    }

    /// Whether this node leads `__transaction_state-0` (loading or loaded).
    pub fn is_leading(&self) -> bool {
        self.follower.is_leading()
    }

    fn loaded(&self) -> Result<Arc<Loaded>, ResponseError> {
        self.follower.loaded().map_err(|e| write_failed(&e))
    }

    /// Writes records (Some = the id's new state, None = expired), waits until they are
    /// committed, then applies them. The caller holds the state lock.
    async fn persist(
        &self,
        l: &Loaded,
        state: &mut Coordinator,
        records: Vec<(String, Option<TxnMetadata>)>,
        now_ms: i64,
    ) -> Result<(), KafkaError> {
        if records.is_empty() {
            return Ok(());
        }
        let kvs: Vec<internal_log::KeyValue> = records
            .iter()
            .map(|(id, v)| txn_record(id, v.as_ref()))
            .collect();
        let buf = internal_log::encode_batch(&kvs, now_ms)?;
        let end = l.log.append(&buf, now_ms)?;
        l.compaction.appended(buf.len());
        if let Err(e) = l.log.commit(end).await {
            // The records may still commit: memory must follow the log, not this answer.
            self.follower.reload(l.generation);
            return Err(e);
        }
        for (id, v) in records {
            match v {
                Some(t) => state.apply(t),
                None => state.remove(&id),
            }
        }
        if l.compaction.due() {
            // The change is done; a failed compaction is logged and tried again later.
            let _ = Self::compact(l, state, now_ms).await;
        }
        Ok(())
    }

    /// Rewrites the log as every live transactional id (and an older version's epoch) and
    /// drops what came before. The caller holds the state lock, so nothing lands in between.
    async fn compact(l: &Loaded, state: &Coordinator, now_ms: i64) -> Result<(), KafkaError> {
        if !l.compaction.start() {
            return Ok(());
        }
        let mut records = Vec::new();
        if l.legacy_epoch > 0 {
            records.push(epoch_record(l.legacy_epoch));
        }
        records.extend(
            state
                .all()
                .map(|t| txn_record(&t.transactional_id, Some(t))),
        );
        let appended = internal_log::append_snapshot(&l.log, &records, now_ms);
        internal_log::finish_snapshot(&l.log, &l.compaction, appended).await
    }

    /// Persists a step's record, applies it, queues its markers; returns its reply.
    async fn commit_step<R>(
        &self,
        l: &Loaded,
        state: &mut Coordinator,
        step: Step<R>,
        now_ms: i64,
    ) -> Result<R, ResponseError> {
        if let Some(record) = step.write {
            let id = record.transactional_id.clone();
            self.persist(l, state, vec![(id, Some(record))], now_ms)
                .await
                .map_err(|e| write_failed(&e))?;
        }
        if let Some(m) = step.markers {
            let _ = l.markers_tx.send(m);
        }
        step.reply.map_err(to_response)
    }

    /// Runs a decision that may need a fresh producer id (allocated from the metadata log).
    async fn decide<R>(
        &self,
        metadata: &Metadata,
        now_ms: i64,
        f: impl Fn(&Coordinator, Option<i64>) -> Decision<R>,
    ) -> Result<R, ResponseError> {
        let l = self.loaded()?;
        let mut state = l.state.lock().await;
        let step = match f(&state, None) {
            Decision::Step(s) => s,
            Decision::NeedProducerId => {
                let pid = metadata
                    .allocate_producer_id(now_ms)
                    .await
                    .map_err(|e| write_failed(&e))?;
                match f(&state, Some(pid)) {
                    Decision::Step(s) => s,
                    Decision::NeedProducerId => return Err(ResponseError::UnknownServerError),
                }
            }
        };
        self.commit_step(&l, &mut state, step, now_ms).await
    }
    /// InitProducerId with a transactional id.
    pub async fn init_producer_id(
        &self,
        metadata: &Metadata,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<ProducerIdEpoch>,
        now_ms: i64,
    ) -> Result<ProducerIdEpoch, ResponseError> {
        self.decide(metadata, now_ms, |c, spare| {
            c.init_producer_id(transactional_id, timeout_ms, expected, now_ms, spare)
        })
        .await
    }

    /// AddPartitionsToTxn (v0–3) and AddOffsetsToTxn.
    pub async fn add(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        members: &[Member],
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let l = self.loaded()?;
        let mut state = l.state.lock().await;
        let step = state.add(
            transactional_id,
            producer_id,
            producer_epoch,
            members,
            false,
            now_ms,
        );
        self.commit_step(&l, &mut state, step, now_ms).await
    }

    /// EndTxn; `tv2` for v5+. Answers once the decision is durable (markers follow).
    #[allow(clippy::too_many_arguments)]
    pub async fn end_txn(
        &self,
        metadata: &Metadata,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        tv2: bool,
        now_ms: i64,
    ) -> Result<ProducerIdEpoch, ResponseError> {
        self.decide(metadata, now_ms, |c, spare| {
            c.end_txn(
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                tv2,
                now_ms,
                spare,
            )
        })
        .await
    }

    /// Verifies (or with `add`, durably adds) a partition or group of the producer's open
    /// transaction on this node's coordinator (see [`verify`] for the routing and errors).
    pub async fn verify_member(&self, v: &Verification, now_ms: i64) -> Result<(), ResponseError> {
        let l = self.loaded()?;
        let mut state = l.state.lock().await;
        let member = Member::from(v.member.clone());
        if v.add {
            let step = state.add(
                &v.transactional_id,
                v.producer_id,
                v.producer_epoch,
                &[member],
                true,
                now_ms,
            );
            self.commit_step(&l, &mut state, step, now_ms).await
        } else {
            state
                .verify(
                    &v.transactional_id,
                    v.producer_id,
                    v.producer_epoch,
                    &member,
                )
                .map_err(to_response)
        }
    }

    /// One transactional id's state (DescribeTransactions); NOT_COORDINATOR /
    /// COORDINATOR_LOAD_IN_PROGRESS where this node does not coordinate.
    pub async fn describe(
        &self,
        transactional_id: &str,
    ) -> Result<Option<TxnMetadata>, ResponseError> {
        let l = self.loaded()?;
        let state = l.state.lock().await;
        Ok(state.get(transactional_id).cloned())
    }

    /// Every transactional id this node coordinates (ListTransactions).
    pub async fn list(&self) -> Result<Vec<TxnMetadata>, ResponseError> {
        let l = self.loaded()?;
        let state = l.state.lock().await;
        Ok(state.all().cloned().collect())
    }

    /// The current coordinator epoch (loaded here), or the highest one this node can know of:
    /// the leader epoch of `__transaction_state-0` in `image_leader_epoch` plus an older
    /// version's epoch. An admin WriteTxnMarkers with a higher one is refused.
    pub async fn epoch_bound(&self, image_leader_epoch: Option<i32>) -> i32 {
        if let Ok(l) = self.loaded() {
            return l.state.lock().await.coordinator_epoch();
        }
        coordinator_epoch(
            self.legacy_epoch.load(Ordering::Acquire),
            image_leader_epoch.unwrap_or(0),
        )
    }

    /// Markers are written: persist `Complete*`.
    async fn complete(&self, l: &Loaded, m: &Markers, now_ms: i64) -> Result<(), KafkaError> {
        let mut state = l.state.lock().await;
        if let Some(record) =
            state.complete(&m.transactional_id, m.producer_id, m.producer_epoch, now_ms)
        {
            let id = record.transactional_id.clone();
            self.persist(l, &mut state, vec![(id, Some(record))], now_ms)
                .await?;
        }
        Ok(())
    }

    /// Aborts timed-out transactions (fencing their producers first) and expires idle ids.
    /// Returns (aborted, expired).
    async fn tick(&self, l: &Loaded, now_ms: i64) -> Result<(usize, usize), KafkaError> {
        let mut state = l.state.lock().await;
        let steps = state.abort_timed_out(now_ms);
        let aborted = steps.len();
        let mut records = Vec::new();
        let mut markers = Vec::new();
        for s in steps {
            if let Some(w) = s.write {
                tracing::info!(
                    transactional_id = %w.transactional_id,
                    producer_id = w.producer_id,
                    producer_epoch = w.producer_epoch,
                    "aborting a transaction that exceeded its timeout"
                );
                records.push((w.transactional_id.clone(), Some(w)));
            }
            markers.extend(s.markers);
        }
        let expired = state.expired_ids(now_ms);
        for id in &expired {
            tracing::info!(transactional_id = %id, "expiring an idle transactional id (transactional.id.expiration.ms)");
            records.push((id.clone(), None));
        }
        self.persist(l, &mut state, records, now_ms).await?;
        for m in markers {
            let _ = l.markers_tx.send(m);
        }
        Ok((aborted, expired.len()))
    }
}

/// What Produce (KIP-890 part 1, and the TV2 implicit add) and TxnOffsetCommit ask the
/// transaction coordinator: is `member` in the open transaction of `transactional_id` for this
/// producer id and epoch (with `add`, added first)?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub member: remote::WireMember,
    pub add: bool,
}

/// Asks the coordinator a [`Verification`]: this node's when it leads `__transaction_state-0`,
/// else its leader's over the cluster RPC (Kafka's AddPartitionsToTxn verifyOnly between
/// brokers). Errors are Kafka's: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED /
/// INVALID_PRODUCER_EPOCH, CONCURRENT_TRANSACTIONS, TRANSACTION_ABORTABLE / INVALID_TXN_STATE,
/// and NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE while it
/// cannot be reached; the handlers map them for old versions.
pub async fn verify(broker: &Broker, v: Verification, now_ms: i64) -> Result<(), ResponseError> {
    if broker.txn.is_leading() || broker.metadata.cluster.is_single_node() {
        return broker.txn.verify_member(&v, now_ms).await;
    }
    let leader = match broker.metadata.leader_of(TXN_TOPIC, 0) {
        Ok(l) if l != broker.config.node_id => l,
        Ok(_) => return Err(ResponseError::NotCoordinator),
        Err(_) => return Err(ResponseError::CoordinatorNotAvailable),
    };
    remote::call(broker, leader, &remote::Request::Verify(v))
        .await
        .map_err(|e| {
            ResponseError::try_from_code(e.code).unwrap_or(ResponseError::CoordinatorNotAvailable)
        })
}

/// Appends a marker to a partition this node leads and waits until it is committed (fsynced;
/// under replication the in-sync replicas have it, as Kafka writes markers with acks=all).
pub async fn write_marker_local(
    broker: &Broker,
    topic: &str,
    partition: i32,
    marker: TxnMarker,
) -> Result<(), KafkaError> {
    let replica: Arc<Replica> = broker.replica(topic, partition)?;
    let Role::Leader { leader_epoch } = replica.role() else {
        return Err(KafkaError::new(
            ResponseError::NotLeaderOrFollower,
            format!("this node does not lead {topic}-{partition}"),
        ));
    };
    let appended = replica.append_marker(marker, now_ms())?;
    broker.data_appended.notify_waiters();
    CoordinatorLog::new(
        replica,
        leader_epoch,
        broker.txn.follower.flush_always(),
        broker.data_appended.clone(),
    )
    .commit(appended.last_offset + 1)
    .await
}

/// One partition's marker, on its leader.
async fn write_partition_marker(
    broker: &Broker,
    topic: &str,
    partition: i32,
    marker: TxnMarker,
) -> Result<(), KafkaError> {
    let leader = broker.metadata.leader_of(topic, partition)?;
    if leader == broker.config.node_id {
        return write_marker_local(broker, topic, partition, marker).await;
    }
    let req = remote::Request::Marker {
        topic: topic.to_string(),
        partition,
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        commit: marker.commit,
        coordinator_epoch: marker.coordinator_epoch,
    };
    remote::call(broker, leader, &req).await
}

/// One group's transaction end, at the group coordinator (the leader of
/// `__consumer_offsets-0`; Kafka's marker to the offsets partition). Without that topic no
/// group has offsets: nothing to end.
async fn complete_group(broker: &Broker, group: &str, m: &Markers) -> Result<(), KafkaError> {
    let leader = match broker.metadata.leader_of(GROUP_TOPIC, 0) {
        Err(e) if e.code == ResponseError::UnknownTopicOrPartition.code() => return Ok(()),
        other => other?,
    };
    if leader == broker.config.node_id || broker.metadata.cluster.is_single_node() {
        return broker
            .offsets
            .complete_txn(group, m.producer_id, m.producer_epoch, m.commit, now_ms())
            .await;
    }
    let req = remote::Request::CompleteGroup {
        group: group.to_string(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit: m.commit,
    };
    remote::call(broker, leader, &req).await
}

/// INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, UNKNOWN_TOPIC_OR_PARTITION.
const PERMANENT_MARKER_ERRORS: [i16; 3] = [47, 52, 3];

/// Writes one transaction's markers until every partition and group has them, then persists
/// `Complete*`. A partition whose topic no longer exists is skipped (as Kafka does). Stops
/// when the load it belongs to ends (the next coordinator re-sends them).
async fn write_markers(broker: &Broker, l: &Loaded, m: Markers) {
    let mut partitions: BTreeSet<(String, i32)> = m.partitions.iter().cloned().collect();
    let mut groups: BTreeSet<String> = m.groups.iter().cloned().collect();
    let marker = TxnMarker {
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit: m.commit,
        coordinator_epoch: m.coordinator_epoch,
    };
    let mut backoff = Duration::from_millis(crate::limits::TXN_MARKER_RETRY_BACKOFF_MS);
    loop {
        if !l.log.still_leading() {
            return;
        }
        for (topic, index) in partitions.clone() {
            match write_partition_marker(broker, &topic, index, marker).await {
                Ok(()) => {
                    partitions.remove(&(topic, index));
                }
                // Refusals a retry cannot change (Kafka stops sending these too): the
                // partition already saw a newer epoch of this producer or a newer coordinator,
                // or it is gone. Retrying would hold the transaction in Prepare* forever.
                Err(e) if PERMANENT_MARKER_ERRORS.contains(&e.code) => {
                    tracing::error!(
                        topic = %topic, partition = index, transactional_id = %m.transactional_id,
                        code = e.code, error = %e.message, "transaction marker refused; not retried"
                    );
                    partitions.remove(&(topic, index));
                }
                Err(e) => tracing::warn!(
                    topic = %topic, partition = index, transactional_id = %m.transactional_id,
                    error = %e.message, "transaction marker failed; retrying"
                ),
            }
        }
        for group in groups.clone() {
            match complete_group(broker, &group, &m).await {
                Ok(()) => {
                    groups.remove(&group);
                }
                Err(e) => tracing::warn!(
                    group = %group, transactional_id = %m.transactional_id,
                    error = %e.message, "transactional offsets not completed; retrying"
                ),
            }
        }
        if partitions.is_empty() && groups.is_empty() {
            match broker.txn.complete(l, &m, now_ms()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e.message, "could not persist a completed transaction; retrying")
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(
            crate::limits::TXN_MARKER_RETRY_BACKOFF_MAX_MS,
        ));
    }
}

/// Serves one load: writes markers as decisions come (first those queued by the load), and
/// every `transaction.abort.timed.out.transaction.cleanup.interval.ms` aborts timed-out
/// transactions and expires idle transactional ids. Returns when the load is no longer the
/// current one (its marker writers are dropped: the next coordinator re-sends the markers).
async fn serve_load(
    broker: &Arc<Broker>,
    l: Arc<Loaded>,
    stop: &mut watch::Receiver<bool>,
    loads: &mut watch::Receiver<u64>,
) {
    let Some(mut rx) = l.markers_rx.lock().take() else {
        return;
    };
    let mut tick = tokio::time::interval(broker.config.transaction_abort_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writers = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            changed = loads.changed() => {
                if changed.is_err() || broker.txn.follower.loaded_generation() != Some(l.generation) {
                    break;
                }
            }
            m = rx.recv() => {
                let Some(m) = m else { break };
                let b = broker.clone();
                let l = l.clone();
                writers.spawn(async move { write_markers(&b, &l, m).await });
            }
            _ = tick.tick() => {
                if let Err(e) = broker.txn.tick(&l, now_ms()).await {
                    tracing::warn!(error = %e.message, "transaction timeout/expiry pass failed");
                }
            }
            Some(_) = writers.join_next(), if !writers.is_empty() => {}
        }
    }
    writers.abort_all();
    while writers.join_next().await.is_some() {}
}

/// The coordinator's background work: serves each load while it is current.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut loads = broker.txn.loads.subscribe();
    loop {
        loads.borrow_and_update();
        if let Ok(l) = broker.txn.follower.loaded() {
            serve_load(&broker, l, &mut stop, &mut loads).await;
            if *stop.borrow() {
                return;
            }
            // The load changed: look at the new one.
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = loads.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::tests::{eventually, state_at};
    use crate::replica_manager::{ReplicaConfig, ReplicaManager, TopicIdPartition};

    /// A replica of `__transaction_state-0` on node 1 with the coordinator's hook, led by
    /// nobody yet.
    fn replica_with_coordinator(
        dir: &std::path::Path,
    ) -> (ReplicaManager, TopicIdPartition, Arc<TxnCoordinator>) {
        let rm = ReplicaManager::new(1, dir);
        let tp = TopicIdPartition {
            topic_id: uuid::Uuid::new_v4(),
            partition: 0,
        };
        let c = Arc::new(TxnCoordinator::new(
            TxnSettings::default(),
            true,
            Arc::new(Notify::new()),
        ));
        c.set_ready(Box::new(|| true));
        rm.register_coordinator(TXN_TOPIC, c.hook());
        let config = ReplicaConfig {
            log_config: internal_log::log_config(),
            conditional: false,
        };
        rm.open(tp, TXN_TOPIC, &config, Role::Leader { leader_epoch: 0 }, 0)
            .expect("open");
        (rm, tp, c)
    }

    /// The markers the current load queued, and that no more are queued.
    fn queued(c: &TxnCoordinator) -> Vec<Markers> {
        let l = c.follower.loaded().expect("loaded");
        let mut rx = l.markers_rx.lock();
        let rx = rx.as_mut().expect("receiver");
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// The coordinator follows the leadership of `__transaction_state-0`: loaded (replayed) on
    /// the leader, NOT_COORDINATOR elsewhere; its epoch is the partition's leader epoch; a new
    /// leadership re-queues the markers of every decided transaction once; compaction and
    /// expiry replay to the same state.
    #[tokio::test]
    async fn follows_its_partition_and_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta_dir = dir.path().join("meta");
        std::fs::create_dir_all(&meta_dir).expect("meta dir");
        let metadata = Metadata::open_single(
            &meta_dir,
            100,
            Arc::new(ReplicaManager::new(1, &meta_dir)),
            1,
        )
        .await
        .expect("metadata");
        let (rm, tp, c) = replica_with_coordinator(dir.path());
        assert_eq!(
            c.init_producer_id(&metadata, "a", 60_000, None, 1).await,
            Err(ResponseError::NotCoordinator)
        );
        rm.apply_partition_state(tp, &state_at(1, 0)).expect("lead");
        eventually("the first load", || c.follower.loaded().is_ok()).await;
        let (pid, epoch) = c
            .init_producer_id(&metadata, "a", 60_000, None, 1)
            .await
            .expect("init");
        c.add(
            "a",
            pid,
            epoch,
            &[Member::Partition("t".into(), 0), Member::Group("g".into())],
            2,
        )
        .await
        .expect("add");
        c.end_txn(&metadata, "a", pid, epoch, true, false, 3)
            .await
            .expect("end");
        // Decided but the markers are not written (no marker task here): PrepareCommit.
        let before = c.describe("a").await.expect("loaded").expect("described");
        assert_eq!(before.state, sluice_txn::TxnState::PrepareCommit);
        assert_eq!(queued(&c).len(), 1, "the decision queued its markers");
        for i in 0..50 {
            c.init_producer_id(&metadata, &format!("id-{i}"), 60_000, None, 4)
                .await
                .expect("init");
        }

        // Another node leads: nothing is served here.
        rm.apply_partition_state(tp, &state_at(2, 1))
            .expect("follow");
        assert_eq!(c.describe("a").await, Err(ResponseError::NotCoordinator));
        let v = Verification {
            transactional_id: "a".into(),
            producer_id: pid,
            producer_epoch: epoch,
            member: Member::Group("g".into()).into(),
            add: false,
        };
        assert_eq!(
            c.verify_member(&v, 5).await,
            Err(ResponseError::NotCoordinator)
        );
        assert!(!c.is_leading());

        // Leading again at epoch 2: the log is replayed, the epoch is the leader epoch, and
        // the decided transaction's markers are queued once, carrying it.
        rm.apply_partition_state(tp, &state_at(1, 2))
            .expect("lead again");
        eventually("the second load", || c.follower.loaded().is_ok()).await;
        assert_eq!(c.describe("a").await, Ok(Some(before.clone())));
        assert_eq!(c.epoch_bound(None).await, 2);
        let markers = queued(&c);
        assert_eq!(markers.len(), 1, "queued once, at the load");
        assert_eq!(markers[0].coordinator_epoch, 2);
        assert!(markers[0].commit);

        // Compact, then load again (epoch 3): the same state.
        {
            let l = c.follower.loaded().expect("loaded");
            l.compaction.set_min_bytes(1);
            let state = l.state.lock().await;
            TxnCoordinator::compact(&l, &state, 6)
                .await
                .expect("compact");
        }
        let live = c.list().await.expect("list");
        rm.apply_partition_state(tp, &state_at(1, 3))
            .expect("epoch 3");
        eventually("the load after compaction", || {
            c.follower.loaded().is_ok_and(|l| l.log.leader_epoch() == 3)
        })
        .await;
        assert_eq!(c.list().await.expect("list"), live);

        // Expiry writes tombstones that replay.
        {
            let l = c.follower.loaded().expect("loaded");
            let (aborted, expired) = c
                .tick(&l, 7 + sluice_txn::DEFAULT_ID_EXPIRATION_MS + 10)
                .await
                .expect("tick");
            assert_eq!((aborted, expired), (0, 50));
        }
        rm.apply_partition_state(tp, &state_at(1, 4))
            .expect("epoch 4");
        eventually("the load after expiry", || {
            c.follower.loaded().is_ok_and(|l| l.log.leader_epoch() == 4)
        })
        .await;
        assert_eq!(c.list().await.expect("list").len(), 1);

        // The replica goes away: unloaded.
        rm.delete_replica(tp).expect("delete");
        assert_eq!(c.list().await, Err(ResponseError::NotCoordinator));
    }

    /// A log written by an older single-node version carries its last coordinator epoch: the
    /// epoch never goes back (partitions would fence the markers), and snapshots keep it.
    #[tokio::test]
    async fn an_older_versions_epoch_is_kept() {
        assert_eq!(coordinator_epoch(0, 0), 0);
        assert_eq!(coordinator_epoch(0, 5), 5);
        assert_eq!(coordinator_epoch(7, 2), 9);
        assert_eq!(coordinator_epoch(-1, -1), 0);
        assert_eq!(coordinator_epoch(i32::MAX, 3), i32::MAX);
        let dir = tempfile::tempdir().expect("tempdir");
        let (rm, tp, c) = replica_with_coordinator(dir.path());
        rm.apply_partition_state(tp, &state_at(1, 0)).expect("lead");
        eventually("the first load", || c.follower.loaded().is_ok()).await;
        {
            let l = c.follower.loaded().expect("loaded");
            let buf = internal_log::encode_batch(&[epoch_record(7)], 1).expect("encode");
            let end = l.log.append(&buf, 1).expect("append");
            l.log.commit(end).await.expect("commit");
        }
        rm.apply_partition_state(tp, &state_at(1, 1))
            .expect("epoch 1");
        eventually("the load", || {
            c.follower.loaded().is_ok_and(|l| l.log.leader_epoch() == 1)
        })
        .await;
        assert_eq!(c.epoch_bound(None).await, 8);
        {
            let l = c.follower.loaded().expect("loaded");
            l.compaction.set_min_bytes(1);
            let state = l.state.lock().await;
            TxnCoordinator::compact(&l, &state, 2)
                .await
                .expect("compact");
        }
        rm.apply_partition_state(tp, &state_at(1, 2))
            .expect("epoch 2");
        eventually("the load after compaction", || {
            c.follower.loaded().is_ok_and(|l| l.log.leader_epoch() == 2)
        })
        .await;
        assert_eq!(c.epoch_bound(None).await, 9);
        // Not coordinating: the bound is the image's leader epoch plus the recorded epoch.
        rm.apply_partition_state(tp, &state_at(2, 3))
            .expect("follow");
        assert_eq!(c.epoch_bound(Some(3)).await, 10);
    }

    /// A data directory of an older single-node version (`__transaction_state-0` a local log
    /// without `partition.metadata`, a coordinator epoch record bumped per start) keeps its
    /// transactions: the log is adopted as partition 0 of the internal topic, led here, and the
    /// coordinator epoch does not go below the one the old version recorded.
    #[tokio::test]
    async fn an_old_transaction_log_is_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_dir = dir.path().join(TXN_LOG_DIR);
        {
            let old = crate::partition::Partition::open(&log_dir, 0, internal_log::log_config(), 0)
                .expect("old log");
            let Decision::Step(step) = Coordinator::new(Config::default(), 4).init_producer_id(
                "old-id",
                60_000,
                None,
                1,
                Some(1000),
            ) else {
                panic!("a spare producer id was given");
            };
            let record = step.write.expect("a record");
            let buf = internal_log::encode_batch(
                &[epoch_record(4), txn_record("old-id", Some(&record))],
                1,
            )
            .expect("encode");
            old.append(&buf, 1).expect("append");
            old.make_durable(2).await.expect("fsync");
        }
        assert!(crate::metadata::read_partition_metadata(&log_dir).is_none());
        let config = crate::config::BrokerConfig {
            node_id: 1,
            data_dir: dir.path().to_path_buf(),
            ..crate::config::BrokerConfig::default()
        };
        let broker = crate::broker::Broker::open(config, "127.0.0.1:9092".parse().expect("addr"))
            .await
            .expect("open");
        let topic = broker
            .metadata
            .topic(TXN_TOPIC)
            .expect("the internal topic");
        assert_eq!(
            crate::metadata::read_partition_metadata(&log_dir),
            Some(topic.id)
        );
        // A single node serves with the coordinator loaded.
        let t = broker
            .txn
            .describe("old-id")
            .await
            .expect("loaded")
            .expect("the old transactional id");
        assert_eq!(t.producer_id, 1000);
        assert_eq!(broker.txn.epoch_bound(None).await, 4);
        let e = broker
            .metadata
            .delete_topic(TXN_TOPIC, 1)
            .await
            .expect_err("internal");
        assert_eq!(e.code, ResponseError::InvalidRequest.code());
        broker.metadata.cluster.shutdown().await;
    }
}
