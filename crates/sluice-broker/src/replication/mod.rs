//! Partition data replicated Kafka's way (issue #10): followers *pull* their leader's batches
//! byte for byte; the leader tracks them (`sluice_replica::LeaderState`), moves the high
//! watermark (HW), proposes ISR changes to the controller and answers acks=all produces once
//! the HW passes them.
//!
//! # Pieces
//! - **The seam** with the cluster layer (`cluster/`): [`ClusterLink`] (node id, broker epoch,
//!   peers' cluster addresses and status, the RPC client, AlterPartition to the controller)
//!   and [`PartitionState`], which the reconcile passes to
//!   `ReplicaManager::apply_partition_state` for every changed partition this node hosts.
//! - **Follower side** (`fetcher.rs`): one task per source broker (Kafka's
//!   `ReplicaFetcherThread`), sending a Kafka FetchRequest (v[`REPLICA_FETCH_VERSION`], with
//!   `ReplicaState {id, broker epoch}`, `CurrentLeaderEpoch`, `LastFetchedEpoch`) over cluster
//!   RPC service 2 to the leader's `--cluster-addr`. Responses: `DivergingEpoch` → truncate
//!   (`sluice_replica::truncation_offset`; log and producer state, rebuilt from the last
//!   snapshot + replay); records → `Partition::append_as_follower` (producer and transaction
//!   state follow the batch headers); follower HW = `follower_high_watermark`;
//!   OFFSET_OUT_OF_RANGE below the leader's log start → `truncate_fully_and_start_at`; any
//!   other error backs the partition off (bounded, [`FETCH_BACKOFF_MAX_MS`]) until a retry
//!   or the next partition state.
//! - **Leader side** (`leader.rs`): the service 2 handler. Replica fetches never come through
//!   the Kafka port (a client sending `ReplicaId`/`ReplicaState` ≥ 0 there is refused as Kafka
//!   refuses a non-replica). Per partition: KIP-320 epoch check, then
//!   `LeaderState::on_follower_fetch` (diverging → `DivergingEpoch`, no records), then a read
//!   up to the log end (not the HW); the response carries HW and log start. A moved HW wakes
//!   long polls and answers acks=all waiters (`Replica::update_leader`).
//! - **Maintenance** (this file): one task per broker every [`ISR_CHECK_INTERVAL_MS`] (and when
//!   a leadership starts): refreshes each replicated leader's LEO and its view of the brokers
//!   (fenced, epochs), rechecks the HW (lag expiry), and queues ISR proposals
//!   (`isr_change_to_propose`) for the one AlterPartition sender of the broker, which sends
//!   them in order through [`ClusterLink::alter_partition`], resending an unanswered or
//!   retriable one (bounded backoff) while it is still the proposal in flight, and reporting
//!   failures with `on_proposal_failed` exactly as the replica crate says (only
//!   INELIGIBLE_REPLICA / OPERATION_NOT_ATTEMPTED drop a pending expansion; an answer for
//!   another leader epoch is ignored).
//!
//! # Durability: every fetch offset is durable
//! A follower fsyncs what it appended before it sends its next fetch, whatever `--flush` says,
//! because its fetch offset is what the leader counts as that follower's LEO, and the HW (what
//! acks=all acknowledges, what consumers see) is the minimum LEO over the ISR: a fetch offset
//! that is not on disk would let an acknowledged write vanish if every replica lost power. The
//! leader counts only its own flushed end under `--flush always` (`Replica::leader_leo`).
//! Cost: one fdatasync per fetch round per follower that received data (all partitions of a
//! round share the wait: they are fsynced concurrently), which bounds a follower to roughly
//! one round trip plus one fsync per batch of data; under load each round carries more data,
//! so the fsync is amortised (group commit, like the leader's produce path).
//!
//! # Single node
//! A partition whose only replica is this node stays `ReplMode::Single`: HW = log end, acks=all
//! = acks=1 + the flush policy, no leader state, no tasks touched: identical behaviour and speed.
//!
//! # Bounds
//! [`REPLICA_FETCH_WAIT_MAX_MS`], [`REPLICA_FETCH_MAX_BYTES`],
//! [`REPLICA_FETCH_PARTITION_MAX_BYTES`], [`FETCH_BACKOFF_MIN_MS`], [`FETCH_BACKOFF_MAX_MS`],
//! [`RPC_TIMEOUT_MARGIN_MS`], [`ISR_CHECK_INTERVAL_MS`], [`ALTER_PARTITION_TIMEOUT_MS`],
//! [`ALTER_PARTITION_QUEUE`].
//!
//! # Where it differs from Kafka
//! - No fetch sessions between replicas (every replica fetch is a full, sessionless fetch;
//!   Kafka uses incremental sessions to save bytes on idle partitions).
//! - Followers fsync before each fetch (above); Kafka relies on re-replication instead.
//! - The leader's HW after a restart starts at the log start (no replication-offset checkpoint
//!   yet): nothing becomes visible until the ISR confirms it (ListOffsets LATEST answers
//!   OFFSET_NOT_AVAILABLE until the HW reaches the epoch start, KIP-207).

pub mod fetcher;
pub mod leader;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::broker::{now_ms, Broker};
use crate::replica_manager::TopicIdPartition;

/// What replication needs from the cluster layer; implemented by `cluster/` (meta).
pub trait ClusterLink: Send + Sync + 'static {
    fn node_id(&self) -> i32;
    /// This broker's epoch (the index of its registration record), -1 before it registered.
    fn broker_epoch(&self) -> i64;
    fn cluster_addr(&self, node: i32) -> Option<String>;
    /// (broker epoch, fenced) of a registered broker.
    fn broker_status(&self, node: i32) -> Option<(i64, bool)>;
    fn rpc(&self) -> std::sync::Arc<sluice_quorum::rpc::RpcClient>;
    fn alter_partition(
        &self,
        req: sluice_controller::AlterPartitionRequest,
    ) -> sluice_quorum::rpc::BoxFuture<
        '_,
        Result<sluice_controller::AlterPartitionReply, sluice_controller::ControllerError>,
    >;
}

/// A partition's state in the image, as the reconcile hands it to the ReplicaManager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_insync_replicas: usize,
}

/// The Fetch version replicas speak over RPC service 2 (v15+: `ReplicaState`).
pub const REPLICA_FETCH_VERSION: i16 = 17;
/// Kafka's `replica.fetch.wait.max.ms`: how long a leader holds a follower's fetch with no
/// data.
pub const REPLICA_FETCH_WAIT_MAX_MS: i32 = 500;
/// Kafka's `replica.fetch.response.max.bytes`: bytes per replica fetch response.
pub const REPLICA_FETCH_MAX_BYTES: i32 = 10 << 20;
/// Kafka's `replica.fetch.max.bytes`: bytes per partition per replica fetch.
pub const REPLICA_FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;
/// First backoff after a failed replica fetch (doubling per failure).
pub const FETCH_BACKOFF_MIN_MS: i64 = 50;
/// Kafka's `replica.fetch.backoff.ms`: the longest backoff after failures.
pub const FETCH_BACKOFF_MAX_MS: i64 = 1_000;
/// A replica fetch RPC times out this long after the leader's wait.
pub const RPC_TIMEOUT_MARGIN_MS: u64 = 5_000;
/// How often the leader side refreshes LEOs, rechecks HWs and ISR changes.
pub const ISR_CHECK_INTERVAL_MS: u64 = 250;
/// One AlterPartition call's time limit (then it is sent again, as is).
pub const ALTER_PARTITION_TIMEOUT_MS: u64 = 5_000;
/// ISR proposals queued for the AlterPartition sender (a full queue drops the newest; the
/// next maintenance tick proposes it again once the previous one is answered).
pub const ALTER_PARTITION_QUEUE: usize = 4_096;

/// The replication layer's handle (cheap to clone): the fetcher registry and the leader-side
/// tasks. Created with the ReplicaManager; tasks run after [`Replication::start`].
#[derive(Clone)]
pub struct Replication {
    inner: Arc<Inner>,
}

struct Started {
    broker: Weak<Broker>,
    link: Arc<dyn ClusterLink>,
}

struct Inner {
    local_id: i32,
    started: OnceLock<Started>,
    /// The partitions this node leads with replication (what the maintenance task visits;
    /// empty on a single node, so it costs nothing there).
    leading: Mutex<std::collections::HashSet<TopicIdPartition>>,
    /// Fetchers by source broker.
    fetchers: Mutex<HashMap<i32, Arc<fetcher::FetcherShared>>>,
    flush_always: AtomicBool,
    lag_max_ms: AtomicI64,
    /// Wakes the maintenance task (a leadership started, a follower fetched).
    maintenance: Notify,
    shutdown: AtomicBool,
    shutdown_notify: Notify,
}

impl Replication {
    pub fn new(local_id: i32) -> Self {
        Replication {
            inner: Arc::new(Inner {
                local_id,
                started: OnceLock::new(),
                leading: Mutex::new(std::collections::HashSet::new()),
                fetchers: Mutex::new(HashMap::new()),
                flush_always: AtomicBool::new(false),
                lag_max_ms: AtomicI64::new(sluice_replica::DEFAULT_REPLICA_LAG_TIME_MAX_MS),
                maintenance: Notify::new(),
                shutdown: AtomicBool::new(false),
                shutdown_notify: Notify::new(),
            }),
        }
    }

    pub fn local_id(&self) -> i32 {
        self.inner.local_id
    }

    /// `--flush always`: leaders count only their flushed end.
    pub fn flush_always(&self) -> bool {
        self.inner.flush_always.load(Ordering::Relaxed)
    }

    /// `replica.lag.time.max.ms`.
    pub fn replica_lag_time_max_ms(&self) -> i64 {
        self.inner.lag_max_ms.load(Ordering::Relaxed)
    }

    /// Sets `replica.lag.time.max.ms` (leaders created afterwards use it).
    pub fn set_replica_lag_time_max_ms(&self, ms: i64) {
        self.inner.lag_max_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Starts the tasks: fetchers for the partitions already handed over, the maintenance
    /// task and the AlterPartition sender. Call once, inside the runtime, with the broker and
    /// the cluster layer; the RPC service 2 handler is [`leader::ReplicaFetchService`].
    pub fn start(&self, broker: &Arc<Broker>, link: Arc<dyn ClusterLink>) {
        self.inner.flush_always.store(
            broker.config.flush == crate::config::FlushPolicy::Always,
            Ordering::Relaxed,
        );
        if self
            .inner
            .started
            .set(Started {
                broker: Arc::downgrade(broker),
                link,
            })
            .is_err()
        {
            return;
        }
        let fetchers: Vec<_> = self.inner.fetchers.lock().values().cloned().collect();
        for f in fetchers {
            self.spawn_fetcher(f);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(ALTER_PARTITION_QUEUE);
        tokio::spawn(maintenance(self.clone(), tx));
        tokio::spawn(alter_partition_sender(self.clone(), rx));
    }

    /// Stops every task (shutdown).
    pub fn shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::Release);
        self.inner.shutdown_notify.notify_waiters();
        self.inner.maintenance.notify_one();
        for f in self.inner.fetchers.lock().values() {
            f.wake.notify_one();
        }
    }

    fn is_shut_down(&self) -> bool {
        self.inner.shutdown.load(Ordering::Acquire)
    }

    fn started(&self) -> Option<(Arc<Broker>, Arc<dyn ClusterLink>)> {
        let s = self.inner.started.get()?;
        Some((s.broker.upgrade()?, s.link.clone()))
    }

    /// Hands `tp` to the fetcher of `leader` (leaving any other fetcher).
    pub fn add_partition(&self, tp: TopicIdPartition, leader: i32, leader_epoch: i32) {
        let spawn = {
            let mut fetchers = self.inner.fetchers.lock();
            for (id, f) in fetchers.iter() {
                if *id != leader {
                    f.partitions.lock().remove(&tp);
                }
            }
            let f = fetchers
                .entry(leader)
                .or_insert_with(|| Arc::new(fetcher::FetcherShared::new(leader)))
                .clone();
            f.partitions.lock().insert(
                tp,
                fetcher::FetchTarget {
                    leader_epoch,
                    retry_at_ms: 0,
                    backoff_ms: 0,
                },
            );
            f.wake.notify_one();
            f
        };
        if self.inner.started.get().is_some() {
            self.spawn_fetcher(spawn);
        }
    }

    /// Stops fetching `tp` (this node leads it now, or it has no leader, or it is deleted).
    pub fn remove_partition(&self, tp: TopicIdPartition) {
        for f in self.inner.fetchers.lock().values() {
            f.partitions.lock().remove(&tp);
        }
    }

    /// The partitions a fetcher for `leader` currently fetches (tests, diagnostics).
    pub fn fetching_from(&self, leader: i32) -> Vec<TopicIdPartition> {
        self.inner
            .fetchers
            .lock()
            .get(&leader)
            .map(|f| f.partitions.lock().keys().copied().collect())
            .unwrap_or_default()
    }

    /// A leadership started or a follower fetched: run the leader checks soon.
    pub fn leader_changed(&self) {
        self.inner.maintenance.notify_one();
    }

    /// `tp` is led here with replication (`ReplMode::Leading`) or not any more.
    pub fn set_leading(&self, tp: TopicIdPartition, leading: bool) {
        let mut set = self.inner.leading.lock();
        if leading {
            set.insert(tp);
        } else {
            set.remove(&tp);
        }
    }

    fn spawn_fetcher(&self, f: Arc<fetcher::FetcherShared>) {
        if f.running.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(fetcher::run(self.clone(), f));
    }
}

/// One ISR proposal for the AlterPartition sender.
struct Proposal {
    tp: TopicIdPartition,
    leader_epoch: i32,
    proposal: sluice_replica::IsrProposal,
}

/// The leader-side timer: LEOs, broker status, HW rechecks, ISR proposals.
async fn maintenance(repl: Replication, tx: tokio::sync::mpsc::Sender<Proposal>) {
    loop {
        if repl.is_shut_down() {
            return;
        }
        let Some((broker, link)) = repl.started() else {
            return;
        };
        let flush_always = repl.flush_always();
        let now = now_ms();
        let mut moved = false;
        let leading: Vec<TopicIdPartition> = repl.inner.leading.lock().iter().copied().collect();
        for tp in leading {
            let Some(replica) = broker.replicas.get(tp) else {
                repl.set_leading(tp, false);
                continue;
            };
            if !replica.is_replicated_leader() {
                continue;
            }
            let leo = replica.leader_leo(flush_always);
            let log_start = replica.watermarks().log_start_offset;
            let out = replica.update_leader(|ls| {
                // Retention and DeleteRecords move the log start.
                ls.set_log_start_offset(log_start);
                for id in ls.replicas().to_vec() {
                    let status = link.broker_status(id).map(|(epoch, fenced)| {
                        sluice_replica::BrokerStatus {
                            broker_epoch: epoch,
                            fenced,
                        }
                    });
                    if id != ls.local_id() {
                        ls.set_broker_status(id, status);
                    }
                }
                ls.on_local_append(leo, now);
                ls.recheck_high_watermark(now);
                ls.isr_change_to_propose(now)
                    .map(|p| (p, ls.leader_epoch()))
            });
            if let Some((proposal, hw_moved)) = out {
                moved |= hw_moved;
                if let Some((proposal, leader_epoch)) = proposal {
                    if tx
                        .try_send(Proposal {
                            tp: replica.tp(),
                            leader_epoch,
                            proposal: proposal.clone(),
                        })
                        .is_err()
                    {
                        // Queue full: forget the proposal so a later tick proposes again.
                        replica.update_leader(|ls| {
                            ls.on_proposal_failed(
                                &proposal,
                                sluice_replica::AlterPartitionError::OperationNotAttempted,
                            )
                        });
                    }
                }
            }
        }
        if moved {
            broker.data_appended.notify_waiters();
        }
        drop(broker);
        let _ = tokio::time::timeout(
            Duration::from_millis(ISR_CHECK_INTERVAL_MS),
            repl.inner.maintenance.notified(),
        )
        .await;
    }
}

/// The broker's one AlterPartition sender: proposals in order; each is sent until answered
/// (or until it is no longer the proposal in flight).
async fn alter_partition_sender(repl: Replication, mut rx: tokio::sync::mpsc::Receiver<Proposal>) {
    loop {
        let p = tokio::select! {
            p = rx.recv() => p,
            _ = repl.inner.shutdown_notify.notified() => None,
        };
        let Some(p) = p else { return };
        let mut backoff = FETCH_BACKOFF_MIN_MS;
        loop {
            if repl.is_shut_down() {
                return;
            }
            let Some((broker, link)) = repl.started() else {
                return;
            };
            let Some(replica) = broker.replicas.get(p.tp) else {
                break;
            };
            // Still ours to send?
            let current = replica.update_leader(|ls| {
                ls.leader_epoch() == p.leader_epoch && ls.pending_proposal() == Some(&p.proposal)
            });
            if !matches!(current, Some((true, _))) {
                break;
            }
            let req = sluice_controller::AlterPartitionRequest {
                broker_id: link.node_id(),
                broker_epoch: link.broker_epoch(),
                topic_id: p.tp.topic_id,
                partition: p.tp.partition,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.proposal.partition_epoch,
                new_isr: p
                    .proposal
                    .new_isr
                    .iter()
                    .map(|&id| sluice_controller::IsrMember {
                        broker_id: id,
                        broker_epoch: link.broker_status(id).map_or(-1, |(e, _)| e),
                    })
                    .collect(),
            };
            let answer = tokio::time::timeout(
                Duration::from_millis(ALTER_PARTITION_TIMEOUT_MS),
                link.alter_partition(req),
            )
            .await;
            let now = now_ms();
            let retry = match answer {
                Err(_) => true,
                Ok(Ok(reply)) => {
                    if reply.leader_epoch == p.leader_epoch {
                        let moved = replica.update_leader(|ls| {
                            let replicas = ls.replicas().to_vec();
                            ls.on_partition_change(
                                replicas,
                                reply.isr.clone(),
                                reply.partition_epoch,
                                now,
                            )
                        });
                        if moved.is_some_and(|(a, m)| a || m) {
                            broker.data_appended.notify_waiters();
                        }
                    }
                    false
                }
                Ok(Err(e)) => {
                    tracing::debug!(topic_id = %p.tp.topic_id, partition = p.tp.partition, code = e.code, error = %e, "AlterPartition refused");
                    let error = sluice_replica::AlterPartitionError::from_code(e.code);
                    matches!(
                        replica.update_leader(|ls| ls.on_proposal_failed(&p.proposal, error)),
                        Some((true, _))
                    )
                }
            };
            drop(replica);
            drop(broker);
            if !retry {
                break;
            }
            tokio::time::sleep(Duration::from_millis(backoff as u64)).await;
            backoff = (backoff * 2).min(FETCH_BACKOFF_MAX_MS);
        }
        repl.leader_changed();
    }
}
