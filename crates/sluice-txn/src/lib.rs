//! The transaction coordinator of Sluice (Kafka's `TransactionCoordinator`), as a plain state
//! machine: one [`TxnMetadata`] per transactional id, driven by requests and a clock.
//!
//! # How the broker drives it
//!
//! Every request method is pure: it reads the current state and returns a [`Step`] — the
//! answer, the record to persist (`write`, the whole new [`TxnMetadata`] of that id), and the
//! marker work to start (`markers`). Nothing changes inside the coordinator until the broker
//! has written `write` durably to `__transaction_state` and calls [`Coordinator::apply`] with
//! it; only then is the answer sent. The broker serialises decide → write → apply (one lock),
//! so there is no "pending transition" state as in Kafka: a decision is either applied whole or,
//! if the write fails, never happened.
//!
//! Some decisions need a fresh producer id (an unknown transactional id, epoch exhaustion,
//! the TV2 overflow); allocating one is IO, so the method then returns
//! [`Decision::NeedProducerId`] and the broker calls it again with `spare_producer_id` set.
//!
//! After the decision to commit or abort is durable (`PrepareCommit`/`PrepareAbort`), the
//! broker writes the markers ([`Markers`]: every partition and group of the transaction) and,
//! once all succeeded, calls [`Coordinator::complete`], which returns the `Complete*` record to
//! persist. After a restart [`Coordinator::pending_markers`] lists the decided transactions
//! whose markers must be written again (markers are idempotent).
//!
//! # Invariants
//!
//! - No IO, no clock, no randomness, no panics on any input; epochs never overflow (checked).
//! - The state only moves along Kafka's transitions ([`TxnState::valid_previous`]); every
//!   record built is checked against them (a violation is answered, never applied).
//! - Replaying the records written (in order) rebuilds exactly the state in memory.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's defaults (`TransactionStateManagerConfig`).
pub const DEFAULT_MAX_TIMEOUT_MS: i32 = 900_000;
pub const DEFAULT_ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

/// An epoch at which the producer id must be rotated (Kafka's `isEpochExhausted`).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The states of a transactional id (Kafka's `TransactionState`, same ids and names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's state id (the `TransactionStatus` of the log record).
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Parses a name as [`Self::name`] writes it (case-insensitive, as Kafka's `fromName`).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Kafka's valid previous states (`TransactionState.validPreviousStates`); with `tv2`,
    /// `PrepareAbort` may also follow `Empty` and `Complete*` (EndTxn v5 abort).
    pub fn valid_previous(self, prev: TxnState, tv2: bool) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(prev, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(prev, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => prev == Ongoing,
            PrepareAbort => {
                matches!(prev, Ongoing | PrepareEpochFence)
                    || (tv2 && matches!(prev, Empty | CompleteCommit | CompleteAbort))
            }
            CompleteCommit => prev == PrepareCommit,
            CompleteAbort => prev == PrepareAbort,
            Dead => matches!(prev, Empty | CompleteCommit | CompleteAbort),
            PrepareEpochFence => prev == Ongoing,
        }
    }

    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    pub fn is_complete(self) -> bool {
        matches!(self, TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// Errors answered to clients, with Kafka's codes.
/// Consumer groups one transaction may commit offsets for (AddOffsetsToTxn / TxnOffsetCommit
/// v5); more get INVALID_REQUEST. Kafka has no bound; a consume-transform-produce application
/// uses one group. Mirrored in the broker's table of limits (`docs/CONFIG.md`).
pub const MAX_GROUPS_PER_TXN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    InvalidRequest,
    InvalidTransactionTimeout,
    ConcurrentTransactions,
    InvalidProducerIdMapping,
    ProducerFenced,
    InvalidTxnState,
    TransactionAbortable,
}

impl TxnError {
    pub fn code(self) -> i16 {
        match self {
            TxnError::InvalidRequest => 42,
            TxnError::InvalidTransactionTimeout => 50,
            TxnError::ConcurrentTransactions => 51,
            TxnError::InvalidProducerIdMapping => 49,
            TxnError::ProducerFenced => 90,
            TxnError::InvalidTxnState => 48,
            TxnError::TransactionAbortable => 120,
        }
    }
}

/// Everything known about one transactional id: the value of its `__transaction_state`
/// record (Kafka's `TransactionLogValue` v1 plus the last epoch, which Kafka does not persist —
/// KAFKA-20357).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (KIP-360 retries), or -1.
    pub previous_producer_id: i64,
    /// TV2: the producer id that becomes current when this transaction completes (epoch
    /// overflow), or -1.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last InitProducerId bump, for KIP-360 retries, or -1.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions in the open (or deciding) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Consumer groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// When the transaction began (first partition or group added), or -1.
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The client runs Kafka's transaction version 2 (epoch bump per transaction).
    pub tv2: bool,
}

/// Configuration (Kafka's names).
#[derive(Debug, Clone)]
pub struct Config {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_timeout_ms: DEFAULT_MAX_TIMEOUT_MS,
            id_expiration_ms: DEFAULT_ID_EXPIRATION_MS,
        }
    }
}

/// The markers of a decided transaction: one control batch per partition, and a completion
/// per group, all with this producer id and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
    pub groups: Vec<String>,
}

/// The result of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<R> {
    /// The answer, once `write` (if any) is durable and applied.
    pub reply: Result<R, TxnError>,
    /// The new record of the transactional id: persist, then [`Coordinator::apply`].
    pub write: Option<TxnMetadata>,
    /// Markers to write once `write` is applied.
    pub markers: Option<Markers>,
}

impl<R> Step<R> {
    fn err(e: TxnError) -> Self {
        Step {
            reply: Err(e),
            write: None,
            markers: None,
        }
    }
    fn ok(r: R) -> Self {
        Step {
            reply: Ok(r),
            write: None,
            markers: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, returned once per request
pub enum Decision<R> {
    Step(Step<R>),
    /// Call again with a freshly allocated producer id.
    NeedProducerId,
}

impl<R> From<Step<R>> for Decision<R> {
    fn from(s: Step<R>) -> Self {
        Decision::Step(s)
    }
}

/// A producer id and epoch (the answer of InitProducerId and of EndTxn v5).
pub type ProducerIdEpoch = (i64, i16);

/// What a partition (Produce) or group (TxnOffsetCommit) is verified or added as.
#[derive(Debug, Clone)]
pub enum Member {
    Partition(String, i32),
    Group(String),
}

pub struct Coordinator {
    config: Config,
    coordinator_epoch: i32,
    txns: BTreeMap<String, TxnMetadata>,
}

impl Coordinator {
    pub fn new(config: Config, coordinator_epoch: i32) -> Self {
        Coordinator {
            config,
            coordinator_epoch,
            txns: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    pub fn set_coordinator_epoch(&mut self, epoch: i32) {
        self.coordinator_epoch = epoch;
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    pub fn all(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values()
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Makes a durable record current (also used on replay). A `Dead` record removes the id.
    pub fn apply(&mut self, record: TxnMetadata) {
        if record.state == TxnState::Dead {
            self.txns.remove(&record.transactional_id);
        } else {
            self.txns.insert(record.transactional_id.clone(), record);
        }
    }

    /// Replays an expiry tombstone.
    pub fn remove(&mut self, transactional_id: &str) {
        self.txns.remove(transactional_id);
    }

    /// Checks a transition against Kafka's table and turns it into a step.
    fn transition<R>(
        &self,
        from: TxnState,
        record: TxnMetadata,
        reply: Result<R, TxnError>,
    ) -> Step<R> {
        if !record.state.valid_previous(from, record.tv2) {
            // A bug, never a client's fault: refuse rather than corrupt the state.
            return Step::err(TxnError::InvalidTxnState);
        }
        let markers = record.state.is_prepare().then(|| self.markers_of(&record));
        Step {
            reply,
            write: Some(record),
            markers,
        }
    }

    fn markers_of(&self, record: &TxnMetadata) -> Markers {
        Markers {
            transactional_id: record.transactional_id.clone(),
            producer_id: record.producer_id,
            producer_epoch: record.producer_epoch,
            commit: record.state == TxnState::PrepareCommit,
            coordinator_epoch: self.coordinator_epoch,
            partitions: record.partitions.iter().cloned().collect(),
            groups: record.groups.iter().cloned().collect(),
        }
    }

    /// InitProducerId with a transactional id (the null id is the broker's plain idempotent
    /// path). `expected`: the v3+ ProducerId/ProducerEpoch (KIP-360), None when -1/-1.
    pub fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<ProducerIdEpoch>,
        now_ms: i64,
        spare_producer_id: Option<i64>,
    ) -> Decision<ProducerIdEpoch> {
        if transactional_id.is_empty() {
            return Step::err(TxnError::InvalidRequest).into();
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Step::err(TxnError::InvalidTransactionTimeout).into();
        }
        let Some(txn) = self.txns.get(transactional_id) else {
            let Some(pid) = spare_producer_id else {
                return Decision::NeedProducerId;
            };
            let record = TxnMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id: pid,
                previous_producer_id: NO_PRODUCER_ID,
                next_producer_id: NO_PRODUCER_ID,
                producer_epoch: 0,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
                tv2: false,
            };
            return self
                .transition(TxnState::Empty, record, Ok((pid, 0)))
                .into();
        };
        if let Some((pid, epoch)) = expected {
            let valid = txn.producer_id == pid
                || (txn.previous_producer_id == pid && epoch_exhausted(epoch));
            if !valid {
                return Step::err(TxnError::ProducerFenced).into();
            }
        }
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Step::err(TxnError::ConcurrentTransactions).into()
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                Step::err(TxnError::ConcurrentTransactions).into()
            }
            TxnState::Ongoing => {
                // Fence the producer of the open transaction (epoch + 1, never returned) and
                // abort it; the client retries on CONCURRENT_TRANSACTIONS and then gets the
                // epoch after this one.
                self.fence_and_abort(txn, now_ms, Err(TxnError::ConcurrentTransactions))
                    .into()
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut record = txn.clone();
                record.state = TxnState::Empty;
                record.partitions.clear();
                record.groups.clear();
                record.start_ms = -1;
                record.timeout_ms = timeout_ms;
                record.last_update_ms = now_ms;
                record.next_producer_id = NO_PRODUCER_ID;
                let expected_epoch = expected.map(|(_, e)| e);
                if epoch_exhausted(txn.producer_epoch)
                    && expected_epoch.is_none_or(|e| e == txn.producer_epoch)
                {
                    // Rotate to a new producer id at epoch 0.
                    let Some(pid) = spare_producer_id else {
                        return Decision::NeedProducerId;
                    };
                    record.previous_producer_id = txn.producer_id;
                    record.producer_id = pid;
                    record.producer_epoch = 0;
                    record.last_producer_epoch = if expected.is_some() {
                        txn.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    let Some(bumped) = txn.producer_epoch.checked_add(1) else {
                        return Step::err(TxnError::ProducerFenced).into();
                    };
                    match expected_epoch {
                        None => {
                            record.producer_epoch = bumped;
                            record.last_producer_epoch = NO_PRODUCER_EPOCH;
                        }
                        Some(e) if e == txn.producer_epoch => {
                            record.producer_epoch = bumped;
                            record.last_producer_epoch = txn.producer_epoch;
                        }
                        Some(e) if e == txn.last_producer_epoch => {
                            // A retry of the bump that already happened: same answer.
                        }
                        Some(_) => return Step::err(TxnError::ProducerFenced).into(),
                    }
                }
                let reply = Ok((record.producer_id, record.producer_epoch));
                self.transition(txn.state, record, reply).into()
            }
        }
    }

    /// Ongoing → (PrepareEpochFence) → PrepareAbort with epoch + 1: InitProducerId of a new
    /// instance, or the transaction timeout.
    fn fence_and_abort<R>(
        &self,
        txn: &TxnMetadata,
        now_ms: i64,
        reply: Result<R, TxnError>,
    ) -> Step<R> {
        if !TxnState::PrepareEpochFence.valid_previous(txn.state, txn.tv2) {
            return Step::err(TxnError::InvalidTxnState);
        }
        let mut record = txn.clone();
        // At the last epoch the fence cannot bump; the abort still ends the transaction and
        // the next InitProducerId rotates the producer id.
        record.producer_epoch = txn
            .producer_epoch
            .checked_add(1)
            .unwrap_or(txn.producer_epoch);
        record.state = TxnState::PrepareAbort;
        record.last_update_ms = now_ms;
        self.transition(TxnState::PrepareEpochFence, record, reply)
    }

    /// The checks common to AddPartitionsToTxn, AddOffsetsToTxn and verification.
    fn check_producer(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&TxnMetadata, TxnError> {
        let txn = self
            .txns
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if txn.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if txn.state.is_prepare() || txn.state == TxnState::PrepareEpochFence {
            return Err(TxnError::ConcurrentTransactions);
        }
        if txn.state == TxnState::Dead {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        Ok(txn)
    }

    /// AddPartitionsToTxn (v0–3), AddOffsetsToTxn, and the TV2 implicit add (`tv2`): adds
    /// partitions and groups to the transaction, starting it if none is open.
    pub fn add(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        members: &[Member],
        tv2: bool,
        now_ms: i64,
    ) -> Step<()> {
        let txn = match self.check_producer(transactional_id, producer_id, producer_epoch) {
            Ok(t) => t,
            Err(e) => return Step::err(e),
        };
        let contains = |m: &Member| match m {
            Member::Partition(t, p) => txn.partitions.contains(&(t.clone(), *p)),
            Member::Group(g) => txn.groups.contains(g),
        };
        if txn.state == TxnState::Ongoing && members.iter().all(contains) {
            return Step::ok(());
        }
        let mut record = txn.clone();
        if txn.state != TxnState::Ongoing {
            record.start_ms = now_ms;
            record.partitions.clear();
            record.groups.clear();
            record.tv2 = tv2;
        }
        for m in members {
            match m {
                Member::Partition(t, p) => {
                    record.partitions.insert((t.clone(), *p));
                }
                Member::Group(g) => {
                    record.groups.insert(g.clone());
                }
            }
        }
        // Group ids are any strings a client sends, and every add rewrites the whole record:
        // bounded (partitions are bounded by the topics that exist).
        if record.groups.len() > MAX_GROUPS_PER_TXN {
            return Step::err(TxnError::InvalidRequest);
        }
        record.state = TxnState::Ongoing;
        record.last_update_ms = now_ms;
        self.transition(txn.state, record, Ok(()))
    }

    /// KIP-890 part 1: is `member` in the open transaction of this producer? (Produce and
    /// TxnOffsetCommit before they write.)
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member: &Member,
    ) -> Result<(), TxnError> {
        let txn = self.check_producer(transactional_id, producer_id, producer_epoch)?;
        let contains = match member {
            Member::Partition(t, p) => txn.partitions.contains(&(t.clone(), *p)),
            Member::Group(g) => txn.groups.contains(g),
        };
        if txn.state == TxnState::Ongoing && contains {
            Ok(())
        } else {
            Err(TxnError::TransactionAbortable)
        }
    }

    /// EndTxn. `tv2` for EndTxn v5+ (epoch bump per transaction; the reply is the producer
    /// id and epoch the client uses next). The TV1 reply is the unchanged id and epoch.
    #[allow(clippy::too_many_arguments)]
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        tv2: bool,
        now_ms: i64,
        spare_producer_id: Option<i64>,
    ) -> Decision<ProducerIdEpoch> {
        let Some(txn) = self.txns.get(transactional_id) else {
            return Step::err(TxnError::InvalidProducerIdMapping).into();
        };
        if tv2 {
            return self.end_txn_tv2(
                txn,
                producer_id,
                producer_epoch,
                commit,
                now_ms,
                spare_producer_id,
            );
        }
        if txn.producer_id != producer_id {
            return Step::err(TxnError::InvalidProducerIdMapping).into();
        }
        if txn.producer_epoch != producer_epoch {
            return Step::err(TxnError::ProducerFenced).into();
        }
        let same = Ok((txn.producer_id, txn.producer_epoch));
        use TxnState::*;
        let step = match (txn.state, commit) {
            (Ongoing, _) => {
                let mut record = txn.clone();
                record.state = if commit { PrepareCommit } else { PrepareAbort };
                record.last_update_ms = now_ms;
                self.transition(Ongoing, record, same)
            }
            (CompleteCommit, true) | (CompleteAbort, false) => {
                Step::ok((txn.producer_id, txn.producer_epoch))
            }
            (PrepareCommit, true) | (PrepareAbort, false) => {
                Step::err(TxnError::ConcurrentTransactions)
            }
            (Dead | PrepareEpochFence, _) => Step::err(TxnError::ConcurrentTransactions),
            _ => Step::err(TxnError::InvalidTxnState),
        };
        step.into()
    }

    fn end_txn_tv2(
        &self,
        txn: &TxnMetadata,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
        spare_producer_id: Option<i64>,
    ) -> Decision<ProducerIdEpoch> {
        use TxnState::*;
        let decided = txn.state.is_prepare() || txn.state.is_complete();
        let retry_on_overflow = txn.state.is_complete()
            && txn.previous_producer_id == producer_id
            && producer_epoch == i16::MAX - 1
            && txn.producer_epoch == 0;
        let retry_on_bump = decided
            && txn.producer_id == producer_id
            && producer_epoch.checked_add(1) == Some(txn.producer_epoch);
        let retry = retry_on_bump || retry_on_overflow;
        if txn.producer_id != producer_id && !retry_on_overflow {
            return Step::err(TxnError::InvalidProducerIdMapping).into();
        }
        if !retry && txn.producer_epoch != producer_epoch {
            return Step::err(TxnError::ProducerFenced).into();
        }
        let current = (txn.producer_id, txn.producer_epoch);
        let prepare = |next: TxnState| -> Decision<ProducerIdEpoch> {
            let mut record = txn.clone();
            if epoch_exhausted(txn.producer_epoch) {
                let Some(pid) = spare_producer_id else {
                    return Decision::NeedProducerId;
                };
                record.next_producer_id = pid;
                record.producer_epoch = i16::MAX;
            } else {
                record.producer_epoch = txn.producer_epoch + 1;
            }
            if !matches!(txn.state, Ongoing) {
                record.partitions.clear();
                record.groups.clear();
                record.start_ms = now_ms;
            }
            record.tv2 = true;
            record.state = next;
            record.last_update_ms = now_ms;
            let reply = if record.next_producer_id >= 0 {
                (record.next_producer_id, 0)
            } else {
                (record.producer_id, record.producer_epoch)
            };
            self.transition(txn.state, record, Ok(reply)).into()
        };
        match (txn.state, commit) {
            (Ongoing, true) if !retry => prepare(PrepareCommit),
            (Ongoing, false) if !retry => prepare(PrepareAbort),
            (CompleteCommit, true) | (CompleteAbort, false) if retry => Step::ok(current).into(),
            (Empty | CompleteCommit | CompleteAbort, false) if !retry => prepare(PrepareAbort),
            (PrepareCommit, true) | (PrepareAbort, false) if retry => {
                Step::err(TxnError::ConcurrentTransactions).into()
            }
            (Dead | PrepareEpochFence, _) => Step::err(TxnError::ConcurrentTransactions).into(),
            _ => Step::err(TxnError::InvalidTxnState).into(),
        }
    }

    /// The markers of `transactional_id` were all written: the `Complete*` record to persist
    /// (then [`Self::apply`]), if it is still in the `Prepare*` state with that id and epoch.
    pub fn complete(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Option<TxnMetadata> {
        let txn = self.txns.get(transactional_id)?;
        if !txn.state.is_prepare()
            || txn.producer_id != producer_id
            || txn.producer_epoch != producer_epoch
        {
            return None;
        }
        let mut record = txn.clone();
        record.state = if txn.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        record.partitions.clear();
        record.groups.clear();
        record.last_update_ms = now_ms;
        if txn.next_producer_id >= 0 {
            record.previous_producer_id = txn.producer_id;
            record.producer_id = txn.next_producer_id;
            record.producer_epoch = 0;
            record.next_producer_id = NO_PRODUCER_ID;
            record.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        record
            .state
            .valid_previous(txn.state, txn.tv2)
            .then_some(record)
    }

    /// Every decided transaction whose markers are still to be written (after a restart).
    pub fn pending_markers(&self) -> Vec<Markers> {
        self.txns
            .values()
            .filter(|t| t.state.is_prepare())
            .map(|t| self.markers_of(t))
            .collect()
    }

    /// Transactions open longer than their timeout: each is fenced (epoch + 1) and aborted,
    /// as Kafka's `abortTimedOutTransactions`.
    pub fn abort_timed_out(&self, now_ms: i64) -> Vec<Step<()>> {
        self.txns
            .values()
            .filter(|t| {
                t.state == TxnState::Ongoing
                    && t.start_ms.saturating_add(i64::from(t.timeout_ms)) < now_ms
            })
            .map(|t| self.fence_and_abort(t, now_ms, Ok(())))
            .filter(|s| s.write.is_some())
            .collect()
    }

    /// Transactional ids idle (Empty or Complete*) for longer than
    /// `transactional.id.expiration.ms`: the broker writes a tombstone for each, then
    /// [`Self::remove`]s it.
    pub fn expired_ids(&self, now_ms: i64) -> Vec<String> {
        self.txns
            .values()
            .filter(|t| {
                TxnState::Dead.valid_previous(t.state, t.tv2)
                    && t.last_update_ms
                        .saturating_add(self.config.id_expiration_ms)
                        < now_ms
            })
            .map(|t| t.transactional_id.clone())
            .collect()
    }
}
