//! The transaction coordinator's IO edge (Kafka's `TransactionCoordinator`): the durable
//! `__transaction_state` log, the markers written to each partition of a transaction, and the
//! timers that abort expired transactions. The state machine itself is `sluice-txn`.
//!
//! - Every decision of the state machine is a record (the id's whole new state). It is written
//!   to `__transaction_state-0` and fsynced, and only then applied in memory and answered. One
//!   async lock orders decide → write → apply, so memory always equals a replay of the log.
//! - The coordinator epoch (Kafka's, carried by every marker) is a record of the same log,
//!   bumped at each start.
//! - Markers need the broker (partitions, committed offsets), which owns this coordinator. To
//!   keep the dependency one way, the coordinator only queues [`Markers`] work on a channel;
//!   [`run`] (given the `Arc<Broker>` by `broker::run`) writes them: a control batch per
//!   partition (`Replica::append_marker`, fsynced), `OffsetStore::complete_txn` per group,
//!   retried until all succeed, and then persists `Complete*`. At start, every transaction in
//!   `Prepare*` is queued again (markers are idempotent).
//! - [`run`] also aborts timed-out transactions and expires idle transactional ids.
//!
//! Its internal log (`__transaction_state-0`) is a `Partition` opened here, not a replica of the
//! `ReplicaManager` (replica_manager.rs): internal logs become replicated partitions in a later
//! wave of issue #10.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_txn::{
    Config, Coordinator, Decision, Markers, Member, ProducerIdEpoch, Step, TxnError, TxnMetadata,
};
use tokio::sync::{mpsc, watch};

use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::internal_log;
use crate::metadata::Metadata;
use crate::partition::Partition;
use crate::replica_manager::TxnMarker;

pub const TXN_LOG_DIR: &str = "__transaction_state-0";

/// The key of a `__transaction_state` record.
#[derive(Serialize, Deserialize)]
enum Key {
    /// A transactional id; the value is its `TxnMetadata`, null when it expired.
    Txn(String),
    /// The coordinator epoch; the value is an i32.
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

fn to_response(e: TxnError) -> ResponseError {
    ResponseError::try_from_code(e.code()).unwrap_or(ResponseError::UnknownServerError)
}

fn write_failed(e: &KafkaError) -> ResponseError {
    tracing::error!(error = %e.message, "could not write __transaction_state");
    ResponseError::CoordinatorNotAvailable
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

pub struct TxnCoordinator {
    log: Partition,
    /// Held from a decision until it is written and applied.
    state: tokio::sync::Mutex<Coordinator>,
    markers_tx: mpsc::UnboundedSender<Markers>,
    markers_rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Markers>>>,
    compaction: internal_log::Compaction,
}

impl TxnCoordinator {
    /// Opens `__transaction_state`, replays it, and returns the coordinator.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, KafkaError> {
        Self::open_with(data_dir, TxnSettings::default(), now_ms)
    }

    /// [`Self::open`] with settings. The coordinator epoch is bumped here and persisted by
    /// [`run`] before any marker carries it.
    pub fn open_with(
        data_dir: &Path,
        settings: TxnSettings,
        now_ms: i64,
    ) -> Result<Self, KafkaError> {
        let log = Partition::open(
            &data_dir.join(TXN_LOG_DIR),
            0,
            internal_log::log_config(),
            now_ms,
        )?;
        let mut coordinator = Coordinator::new(
            Config {
                max_timeout_ms: settings.max_timeout_ms,
                id_expiration_ms: settings.id_expiration_ms,
            },
            0,
        );
        let mut epoch = 0i32;
        internal_log::replay(&log, |key, value| {
            let Some(Ok(key)) = key.map(serde_json::from_slice::<Key>) else {
                return;
            };
            match key {
                Key::CoordinatorEpoch => {
                    if let Some(Ok(e)) = value.map(serde_json::from_slice::<i32>) {
                        epoch = epoch.max(e);
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
        // This start's epoch; it is written by `run` (no write may happen before the broker
        // removes the clean-shutdown marker) and durable before any marker carries it.
        let epoch = epoch.saturating_add(1);
        coordinator.set_coordinator_epoch(epoch);
        let compaction = internal_log::Compaction::new(log.size_bytes());
        tracing::info!(
            coordinator_epoch = epoch,
            transactional_ids = coordinator.len(),
            "transaction coordinator loaded"
        );
        let (markers_tx, markers_rx) = mpsc::unbounded_channel();
        // Transactions decided before the restart get their markers again. Queued here, before
        // any request can decide, so the queue holds each exactly once: queued later (in `run`),
        // a transaction a request moved to Prepare* meanwhile would be queued twice, and a
        // late duplicate marker could close the producer's next transaction. `run` writes
        // nothing from the queue before this start's coordinator epoch is durable.
        for m in coordinator.pending_markers() {
            tracing::info!(transactional_id = %m.transactional_id, commit = m.commit, "re-sending the markers of a transaction decided before the restart");
            let _ = markers_tx.send(m);
        }
        Ok(TxnCoordinator {
            log,
            state: tokio::sync::Mutex::new(coordinator),
            markers_tx,
            markers_rx: parking_lot::Mutex::new(Some(markers_rx)),
            compaction,
        })
    }

    /// Writes records (Some = the id's new state, None = expired), fsyncs, then applies them.
    /// The caller holds the state lock.
    async fn persist(
        &self,
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
        let end = self.log.append(&buf, now_ms)?.last_offset + 1;
        self.compaction.appended(buf.len());
        self.log.make_durable(end).await?;
        for (id, v) in records {
            match v {
                Some(t) => state.apply(t),
                None => state.remove(&id),
            }
        }
        if self.compaction.due() {
            // The change is done; a failed compaction is logged and tried again later.
            let _ = self.compact(state, now_ms).await;
        }
        Ok(())
    }

    /// Rewrites the log as the coordinator epoch plus every live transactional id, and drops
    /// what came before. The caller holds the state lock, so nothing lands in between.
    async fn compact(&self, state: &Coordinator, now_ms: i64) -> Result<(), KafkaError> {
        if !self.compaction.start() {
            return Ok(());
        }
        let mut records = vec![epoch_record(state.coordinator_epoch())];
        records.extend(
            state
                .all()
                .map(|t| txn_record(&t.transactional_id, Some(t))),
        );
        let appended = internal_log::append_snapshot(&self.log, &records, now_ms);
        internal_log::finish_snapshot(&self.log, &self.compaction, appended).await
    }

    /// Persists a step's record, applies it, queues its markers; returns its reply.
    async fn commit_step<R>(
        &self,
        state: &mut Coordinator,
        step: Step<R>,
        now_ms: i64,
    ) -> Result<R, ResponseError> {
        if let Some(record) = step.write {
            let id = record.transactional_id.clone();
            self.persist(state, vec![(id, Some(record))], now_ms)
                .await
                .map_err(|e| write_failed(&e))?;
        }
        if let Some(m) = step.markers {
            let _ = self.markers_tx.send(m);
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
        let mut state = self.state.lock().await;
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
        self.commit_step(&mut state, step, now_ms).await
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
        let mut state = self.state.lock().await;
        let step = state.add(
            transactional_id,
            producer_id,
            producer_epoch,
            members,
            false,
            now_ms,
        );
        self.commit_step(&mut state, step, now_ms).await
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

    async fn verify_member(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member: Member,
        add: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let mut state = self.state.lock().await;
        if add {
            let step = state.add(
                transactional_id,
                producer_id,
                producer_epoch,
                &[member],
                true,
                now_ms,
            );
            self.commit_step(&mut state, step, now_ms).await
        } else {
            state
                .verify(transactional_id, producer_id, producer_epoch, &member)
                .map_err(to_response)
        }
    }

    /// KIP-890 part 1 (and the TV2 implicit add): called by Produce before appending a
    /// transactional batch. `Ok` if `topic-partition` is in the open transaction of
    /// `transactional_id` for this producer id and epoch. With `add` (Produce v12+, TV2) a
    /// partition not yet in the transaction is added to it (durably) first. Errors are
    /// Kafka's: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED / INVALID_PRODUCER_EPOCH,
    /// CONCURRENT_TRANSACTIONS, TRANSACTION_ABORTABLE / INVALID_TXN_STATE; the produce handler
    /// maps them for old Produce versions.
    #[allow(clippy::too_many_arguments)]
    pub async fn verify_partition(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
        add: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.verify_member(
            transactional_id,
            producer_id,
            producer_epoch,
            Member::Partition(topic.to_string(), partition),
            add,
            now_ms,
        )
        .await
    }

    /// The group-side twin of [`Self::verify_partition`], called by TxnOffsetCommit: `Ok` if
    /// `group` was added to the open transaction (AddOffsetsToTxn); with `add` (TxnOffsetCommit
    /// v5+, TV2) it is added first. Same errors as `verify_partition`.
    pub async fn verify_group(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        add: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.verify_member(
            transactional_id,
            producer_id,
            producer_epoch,
            Member::Group(group.to_string()),
            add,
            now_ms,
        )
        .await
    }

    /// One transactional id's state (DescribeTransactions).
    pub async fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.state.lock().await.get(transactional_id).cloned()
    }

    /// Every transactional id (ListTransactions).
    pub async fn list(&self) -> Vec<TxnMetadata> {
        self.state.lock().await.all().cloned().collect()
    }

    pub async fn coordinator_epoch(&self) -> i32 {
        self.state.lock().await.coordinator_epoch()
    }

    /// Writes this start's coordinator epoch and waits until it is durable.
    async fn persist_epoch(&self, now_ms: i64) -> Result<(), KafkaError> {
        let state = self.state.lock().await;
        let buf = internal_log::encode_batch(&[epoch_record(state.coordinator_epoch())], now_ms)?;
        let end = self.log.append(&buf, now_ms)?.last_offset + 1;
        self.compaction.appended(buf.len());
        self.log.make_durable(end).await
    }

    /// Markers are written: persist `Complete*`.
    async fn complete(&self, m: &Markers, now_ms: i64) -> Result<(), KafkaError> {
        let mut state = self.state.lock().await;
        if let Some(record) =
            state.complete(&m.transactional_id, m.producer_id, m.producer_epoch, now_ms)
        {
            let id = record.transactional_id.clone();
            self.persist(&mut state, vec![(id, Some(record))], now_ms)
                .await?;
        }
        Ok(())
    }

    /// Aborts timed-out transactions (fencing their producers first) and expires idle ids.
    /// Returns (aborted, expired).
    pub async fn tick(&self, now_ms: i64) -> Result<(usize, usize), KafkaError> {
        let mut state = self.state.lock().await;
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
        self.persist(&mut state, records, now_ms).await?;
        for m in markers {
            let _ = self.markers_tx.send(m);
        }
        Ok((aborted, expired.len()))
    }
}

/// INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, UNKNOWN_TOPIC_OR_PARTITION.
const PERMANENT_MARKER_ERRORS: [i16; 3] = [47, 52, 3];

/// Writes one transaction's markers until every partition and group has them, then persists
/// `Complete*`. A partition whose topic no longer exists is skipped (as Kafka does).
async fn write_markers(broker: &Broker, m: Markers, mut stop: watch::Receiver<bool>) {
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
        let now = now_ms();
        let mut wrote_any = false;
        for (topic, index) in partitions.clone() {
            let Ok(p) = broker.replica(&topic, index) else {
                tracing::warn!(topic = %topic, partition = index, "no marker for a deleted partition");
                partitions.remove(&(topic, index));
                continue;
            };
            let result = match p.append_marker(marker, now) {
                Ok(a) => p.make_durable(a.last_offset + 1).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    wrote_any = true;
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
        if wrote_any {
            broker.data_appended.notify_waiters();
        }
        for group in groups.clone() {
            match broker
                .offsets
                .complete_txn(&group, m.producer_id, m.producer_epoch, m.commit, now)
                .await
            {
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
            match broker.txn.complete(&m, now_ms()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(error = %e.message, "could not persist a completed transaction; retrying")
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_millis(
            crate::limits::TXN_MARKER_RETRY_BACKOFF_MAX_MS,
        ));
    }
}

/// The coordinator's background work: makes the start's coordinator epoch durable, re-drives
/// the markers of transactions decided before a restart, writes markers as decisions come,
/// and every `transaction.abort.timed.out.transaction.cleanup.interval.ms` aborts timed-out
/// transactions and expires idle transactional ids.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let txn = &broker.txn;
    let Some(mut rx) = txn.markers_rx.lock().take() else {
        return;
    };
    while let Err(e) = txn.persist_epoch(now_ms()).await {
        tracing::error!(error = %e.message, "cannot persist the coordinator epoch; retrying");
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let mut tick = tokio::time::interval(broker.config.transaction_abort_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writers = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => {
                let Some(m) = m else { break };
                let b = broker.clone();
                let s = stop.clone();
                writers.spawn(async move { write_markers(&b, m, s).await });
            }
            _ = tick.tick() => {
                if let Err(e) = txn.tick(now_ms()).await {
                    tracing::error!(error = %e.message, "transaction timeout/expiry pass failed");
                }
            }
            Some(_) = writers.join_next(), if !writers.is_empty() => {}
        }
    }
    while writers.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decisions survive a reopen; the coordinator epoch goes up per open; a compacted log
    /// replays to the same state.
    #[tokio::test]
    async fn durable_replay_and_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metadata = Metadata::open_single(
            dir.path(),
            100,
            std::sync::Arc::new(crate::replica_manager::ReplicaManager::new(1, dir.path())),
            1,
        )
        .await
        .expect("metadata");
        let c = TxnCoordinator::open(dir.path(), 1).expect("open");
        c.persist_epoch(1).await.expect("epoch");
        let epoch1 = c.coordinator_epoch().await;
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
        let before = c.describe("a").await.expect("described");
        assert_eq!(before.state, sluice_txn::TxnState::PrepareCommit);
        for i in 0..50 {
            c.init_producer_id(&metadata, &format!("id-{i}"), 60_000, None, 4)
                .await
                .expect("init");
        }
        drop(c);
        let c = TxnCoordinator::open(dir.path(), 5).expect("reopen");
        c.persist_epoch(5).await.expect("epoch");
        assert_eq!(c.coordinator_epoch().await, epoch1 + 1);
        assert_eq!(c.describe("a").await, Some(before.clone()));
        assert_eq!(c.state.lock().await.pending_markers().len(), 1);
        // Queued once, at open, before any request could decide.
        {
            let mut rx = c.markers_rx.lock();
            let rx = rx.as_mut().expect("receiver");
            assert!(
                rx.try_recv().is_ok(),
                "the decided transaction's markers are queued"
            );
            assert!(rx.try_recv().is_err(), "and only once");
        }
        // Compact, then reopen: the same state.
        c.compaction.set_min_bytes(1);
        {
            let state = c.state.lock().await;
            c.compact(&state, 6).await.expect("compact");
        }
        let live = c.list().await;
        drop(c);
        let c = TxnCoordinator::open(dir.path(), 7).expect("reopen after compaction");
        assert_eq!(c.list().await, live);
        // The compacted log kept the epoch: the next start goes past it.
        assert_eq!(c.coordinator_epoch().await, epoch1 + 2);
        // Expiry writes tombstones that replay.
        let (aborted, expired) = c
            .tick(7 + sluice_txn::DEFAULT_ID_EXPIRATION_MS + 10)
            .await
            .expect("tick");
        assert_eq!((aborted, expired), (0, 50));
        drop(c);
        let c = TxnCoordinator::open(dir.path(), 8).expect("reopen after expiry");
        assert_eq!(c.list().await.len(), 1);
    }
}
