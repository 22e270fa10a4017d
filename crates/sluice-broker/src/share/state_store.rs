//! The share-partition leader's side of durable state (Kafka's `Persister`): after every change
//! that must survive a crash or a failover (acknowledgements, dead-lettering, initialisation,
//! offset resets, delivery counts) the share-partition's whole in-flight window is queued here
//! as one write, and [`run_writer`] sends the queue, in order and in batches, to the share
//! coordinator (`coordinator.rs`: this node's, called directly, or another node's over the
//! cluster RPC, `remote.rs`), which answers once the batch is committed in
//! `__share_group_state-0`.
//!
//! The window is bounded (`share.partition.max.record.locks`) and run-length encoded, so a
//! write is small. Several writes of one key in a batch collapse to the last.
//!
//! Ordering: callers queue while holding the share-partition's lock, so a key's writes are
//! queued in change order; one writer sends them in queue order. Waiting ([`StateStore::durable`])
//! happens after the lock is released; everything queued while a batch is in flight goes in the
//! next one (group commit).
//!
//! Durability: internal state is committed before it takes effect, whatever the data flush
//! policy: [`StateStore::durable`] waits until every write queued before the given point is
//! answered. A write that fails (the coordinator fenced this leader, or stayed unreachable for
//! [`WRITE_RETRY`]) marks its share-partition failed: its in-memory state no longer matches the
//! committed one, so it is dropped and loaded again from the coordinator on its next use, and
//! nothing derived from the failed change leaves the broker (the waiters check
//! [`Failure`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_share::Snapshot;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::coordinator::StateWrite;
use crate::broker::{now_ms, Broker};
use crate::coordinator::SHARE_TOPIC;
use crate::error::KafkaError;

/// Writes sent to the share coordinator in one batch at most.
pub const MAX_WRITE_BATCH: usize = 256;
/// How long a write (or a read) is retried while the share coordinator moves (an election,
/// a load) before its share-partition is failed.
pub const WRITE_RETRY: Duration = Duration::from_secs(20);
/// Pause between tries.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateKey {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// Set when one of a share-partition's writes failed (see the module docs).
pub type Failure = Arc<Mutex<Option<KafkaError>>>;

struct Pending {
    seq: u64,
    write: StateWrite,
    failure: Failure,
}

#[derive(Default)]
struct Outbox {
    next_seq: u64,
    queue: VecDeque<Pending>,
}

pub struct StateStore {
    outbox: Mutex<Outbox>,
    /// Every write with a sequence number below this is answered.
    done: watch::Sender<u64>,
    wake: Notify,
}

impl Default for StateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StateStore {
    pub fn new() -> Self {
        StateStore {
            outbox: Mutex::new(Outbox::default()),
            done: watch::channel(0).0,
            wake: Notify::new(),
        }
    }

    /// Queues one key's new state (None = deleted); returns the point to wait for with
    /// [`StateStore::durable`]. Call with the share-partition's lock held.
    pub fn append(
        &self,
        key: &StateKey,
        snapshot: Option<Snapshot>,
        leader_epoch: i32,
        failure: &Failure,
    ) -> i64 {
        let mut o = self.outbox.lock();
        let seq = o.next_seq;
        o.next_seq += 1;
        o.queue.push_back(Pending {
            seq,
            write: StateWrite {
                key: key.clone(),
                snapshot,
                leader_epoch,
            },
            failure: failure.clone(),
        });
        drop(o);
        self.wake.notify_one();
        i64::try_from(seq + 1).unwrap_or(i64::MAX)
    }

    /// Waits until every write queued before `end` is answered (committed, or failed: the
    /// caller checks its share-partition's [`Failure`]). Free when already answered.
    pub async fn durable(&self, end: i64) -> Result<(), KafkaError> {
        let end = u64::try_from(end).unwrap_or(0);
        let mut rx = self.done.subscribe();
        rx.wait_for(|done| *done >= end)
            .await
            .map(|_| ())
            .map_err(|_| {
                KafkaError::new(
                    ResponseError::CoordinatorNotAvailable,
                    "the share-state writer stopped",
                )
            })
    }

    /// The next batch: up to [`MAX_WRITE_BATCH`] writes from the front of the queue.
    fn take_batch(&self) -> Vec<Pending> {
        let mut o = self.outbox.lock();
        let n = o.queue.len().min(MAX_WRITE_BATCH);
        o.queue.drain(..n).collect()
    }
}

/// The node leading `__share_group_state-0` (creating the topic when a cluster first needs it).
async fn coordinator_node(broker: &Broker) -> Result<i32, KafkaError> {
    if broker.metadata.topic(SHARE_TOPIC).is_none() {
        // Any failure (too few live brokers, created meanwhile by another node and not yet in
        // this node's image) is for a later try.
        match broker
            .metadata
            .ensure_internal_topic(SHARE_TOPIC, now_ms())
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Err(KafkaError::new(
                    ResponseError::CoordinatorNotAvailable,
                    "__share_group_state cannot be created or seen yet",
                ))
            }
        }
    }
    broker.metadata.leader_of(SHARE_TOPIC, 0)
}

/// What a share-partition's clients are told when its state cannot be read or written: the
/// share coordinator's errors are not ShareFetch/ShareAcknowledge codes, so they read as
/// NOT_LEADER_OR_FOLLOWER (the client refreshes its metadata and tries again), with the cause in
/// the message.
pub fn unavailable(e: &KafkaError) -> KafkaError {
    KafkaError::new(
        ResponseError::NotLeaderOrFollower,
        format!("share-group state unavailable: {}", e.message),
    )
}

/// Errors a later try may cure: the coordinator moves or loads.
fn retriable(e: &KafkaError) -> bool {
    [
        ResponseError::NotCoordinator,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::LeaderNotAvailable,
        ResponseError::NotLeaderOrFollower,
        ResponseError::UnknownTopicOrPartition,
        ResponseError::RequestTimedOut,
    ]
    .iter()
    .any(|r| r.code() == e.code)
}

/// Runs `call` at the share coordinator — `None`: this node is it; `Some(n)`: node `n` is —
/// retrying while it moves or loads (bounded by [`WRITE_RETRY`]).
pub async fn at_coordinator<T, F, Fut>(broker: &Broker, call: F) -> Result<T, KafkaError>
where
    F: Fn(Option<i32>) -> Fut,
    Fut: std::future::Future<Output = Result<T, KafkaError>>,
{
    let deadline = tokio::time::Instant::now() + WRITE_RETRY;
    loop {
        let result = match coordinator_node(broker).await {
            Ok(n) => call((n != broker.config.node_id).then_some(n)).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if retriable(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e.message, "share coordinator unavailable; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            r => return r,
        }
    }
}

/// Sends one batch to the share coordinator (Kafka's WriteShareGroupState).
async fn deliver(broker: &Broker, writes: &[StateWrite]) -> Result<Vec<i16>, KafkaError> {
    at_coordinator(broker, |node| async move {
        match node {
            None => broker.share.coordinator.write(writes, now_ms()).await,
            Some(n) => super::remote::write(broker, n, writes).await,
        }
    })
    .await
}

/// Kafka's ReadShareGroupState from wherever the share coordinator is.
pub async fn read(
    broker: &Broker,
    key: &StateKey,
    leader_epoch: i32,
) -> Result<Option<Snapshot>, KafkaError> {
    at_coordinator(broker, |node| async move {
        match node {
            None => broker.share.coordinator.read(key, leader_epoch).await,
            Some(n) => super::remote::read(broker, n, key, leader_epoch).await,
        }
    })
    .await
}

/// The writer task (see the module docs).
/// On stop it first answers what is queued (in-flight requests are finishing).
pub async fn run_writer(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let store = &broker.share.store;
    loop {
        let batch = store.take_batch();
        let Some(last) = batch.last().map(|p| p.seq) else {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = store.wake.notified() => {}
                // A notification raced with the empty look: look again now and then.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        };
        // A key's last write in the batch stands for the earlier ones.
        let mut last_of: HashMap<&StateKey, usize> = HashMap::new();
        for (i, p) in batch.iter().enumerate() {
            last_of.insert(&p.write.key, i);
        }
        let mut sent: Vec<usize> = last_of.into_values().collect();
        sent.sort_unstable();
        let writes: Vec<StateWrite> = sent.iter().map(|&i| batch[i].write.clone()).collect();
        let outcome = deliver(&broker, &writes).await;
        let mut failed: HashMap<&StateKey, KafkaError> = HashMap::new();
        match outcome {
            Ok(codes) => {
                for (w, code) in writes.iter().zip(codes) {
                    if code != 0 {
                        failed.insert(
                            &w.key,
                            KafkaError::new(
                                ResponseError::NotLeaderOrFollower,
                                "a newer leader of this partition owns its share-group state",
                            ),
                        );
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e.message, writes = writes.len(), "cannot write share-group state; its share-partitions are dropped and load again");
                for w in &writes {
                    failed.insert(&w.key, unavailable(&e));
                }
            }
        }
        for p in &batch {
            if let Some(e) = failed.get(&p.write.key) {
                p.failure.lock().get_or_insert_with(|| e.clone());
            }
        }
        store.done.send_replace(last + 1);
    }
}
