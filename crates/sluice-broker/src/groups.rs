//! The IO edge of the group coordinator: the state machine from `sluice-group` behind a lock,
//! a token per parked request (JoinGroup and SyncGroup wait for other members) mapped to a
//! oneshot channel, and a timer task that calls `tick` at the coordinator's next deadline.
//!
//! Classic, KIP-848 consumer and share groups are persisted as Kafka does (its
//! `GroupMetadataValue`, ConsumerGroup* and ShareGroup* records): every change the state machine
//! hands out ([`GroupCoordinator::take_group_records`]: a completed generation, a replaced static
//! member, a changed member epoch or assignment, a group that emptied) is queued
//! under the coordinator lock, so the queue is in the order of the changes, and one writer
//! task ([`run_persister`]) appends them to `__consumer_offsets-0` in that order
//! (`OffsetStore::write_group`). A request whose call produced records (the leader's
//! SyncGroup, a consumer or share heartbeat) is answered once they are committed, so a member never
//! holds a generation or epoch the log does not have; a write that fails is logged and the
//! answer goes out anyway (the group then rejoins after a coordinator move, as it would
//! without persistence). When this node starts coordinating, the loaded records are restored
//! ([`GroupService::restore`]) and their members go on with their generation: no rebalance,
//! and in-flight transactional offset commits of Kafka Streams stay valid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_group::{
    CoordinatorConfig, GroupCoordinator, GroupRecordChange, Output, TopicInfo, TopicsSnapshot,
};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::broker::{now_ms, Broker};
use crate::config::BrokerConfig;
use crate::metadata::Metadata;

pub struct GroupService {
    config: CoordinatorConfig,
    coordinator: Mutex<GroupCoordinator>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Output>>>,
    next_token: AtomicU64,
    /// Woken after every call that may have moved the next deadline.
    timer_wake: Notify,
    /// Group records to persist, in the order of the changes (see the module docs).
    persist_tx: mpsc::UnboundedSender<PersistJob>,
    persist_rx: Mutex<Option<mpsc::UnboundedReceiver<PersistJob>>>,
}

/// Records to write, and who waits for them (the request that produced them, if parked).
struct PersistJob {
    records: Vec<(String, GroupRecordChange)>,
    done: Option<oneshot::Sender<()>>,
}

pub fn now_u64() -> u64 {
    now_ms().max(0) as u64
}

/// Compiles a KIP-848 subscription regex. Kafka matches the whole topic name (RE2/J
/// `matches()`), so the pattern is anchored at both ends.
pub fn compile_subscription_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

/// The topics as the KIP-848 assignors see them, with the matches of every subscription regex
/// in `regexes`.
pub fn topics_snapshot(metadata: &Metadata, regexes: &BTreeSet<String>) -> TopicsSnapshot {
    let topics: BTreeMap<String, TopicInfo> = metadata
        .topics()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TopicInfo {
                    id: *t.id.as_bytes(),
                    partitions: t.partition_count,
                },
            )
        })
        .collect();
    let regex_matches = regexes
        .iter()
        .filter_map(|pattern| {
            let re = compile_subscription_regex(pattern).ok()?;
            let matched = topics.keys().filter(|t| re.is_match(t)).cloned().collect();
            Some((pattern.clone(), matched))
        })
        .collect();
    TopicsSnapshot {
        topics,
        regex_matches,
    }
}

impl GroupService {
    pub fn new(config: &BrokerConfig) -> Self {
        let config = CoordinatorConfig {
            initial_rebalance_delay_ms: config.initial_rebalance_delay_ms,
            max_group_size: crate::limits::MAX_GROUP_SIZE,
            min_session_timeout_ms: crate::limits::GROUP_MIN_SESSION_TIMEOUT_MS,
            max_session_timeout_ms: crate::limits::GROUP_MAX_SESSION_TIMEOUT_MS,
            ..CoordinatorConfig::default()
        };
        let coordinator = GroupCoordinator::new(config.clone());
        let (persist_tx, persist_rx) = mpsc::unbounded_channel();
        GroupService {
            config,
            coordinator: Mutex::new(coordinator),
            pending: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            timer_wake: Notify::new(),
            persist_tx,
            persist_rx: Mutex::new(Some(persist_rx)),
        }
    }

    /// Queues the records the call on `c` produced (under its lock: queue order = change
    /// order); returns the receiver that resolves once they are written, if any were.
    fn queue_records(&self, c: &mut GroupCoordinator) -> Option<oneshot::Receiver<()>> {
        let records = c.take_group_records();
        if records.is_empty() {
            return None;
        }
        let (done, rx) = oneshot::channel();
        let job = PersistJob {
            records,
            done: Some(done),
        };
        // No writer (a store that never coordinates, tests): nothing waits.
        self.persist_tx.send(job).ok().map(|_| rx)
    }

    fn deliver(&self, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        let mut pending = self.pending.lock();
        for out in outputs {
            if let Some(tx) = pending.remove(&out.token()) {
                // The requester may have gone away (connection closed); nothing to do then.
                let _ = tx.send(out);
            }
        }
    }

    /// Runs a call that may park the request; resolves when the coordinator answers it.
    pub async fn parked(
        &self,
        call: impl FnOnce(&mut GroupCoordinator, u64) -> Vec<Output>,
    ) -> Option<Output> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(token, tx);
        let (outputs, written) = {
            let mut c = self.coordinator.lock();
            let outputs = call(&mut c, token);
            (outputs, self.queue_records(&mut c))
        };
        if let Some(written) = written {
            // Bounded: the writer answers every job (written or failed) unless it stopped.
            let _ = tokio::time::timeout(crate::coordinator::COMMIT_TIMEOUT, written).await;
        }
        self.deliver(outputs);
        self.timer_wake.notify_one();
        let answer = rx.await.ok();
        answer
    }

    /// [`GroupService::with`] for a call whose answer must not leave before the group
    /// records it produced are written (a KIP-848 heartbeat that moved a member's epoch or
    /// assignment): waits for them, bounded by the commit timeout.
    pub async fn with_persisted<T>(
        &self,
        call: impl FnOnce(&mut GroupCoordinator) -> (T, Vec<Output>),
    ) -> T {
        let (value, outputs, written) = {
            let mut c = self.coordinator.lock();
            let (value, outputs) = call(&mut c);
            (value, outputs, self.queue_records(&mut c))
        };
        self.deliver(outputs);
        self.timer_wake.notify_one();
        if let Some(written) = written {
            // Bounded: the writer answers every job (written or failed) unless it stopped.
            let _ = tokio::time::timeout(crate::coordinator::COMMIT_TIMEOUT, written).await;
        }
        value
    }

    /// Runs an immediate call, delivering whatever parked answers it produced.
    pub fn with<T>(&self, call: impl FnOnce(&mut GroupCoordinator) -> (T, Vec<Output>)) -> T {
        let (value, outputs) = {
            let mut c = self.coordinator.lock();
            let result = call(&mut c);
            // Nobody waits here (leaves, expiries): the writer keeps the order.
            drop(self.queue_records(&mut c));
            result
        };
        self.deliver(outputs);
        self.timer_wake.notify_one();
        value
    }

    /// Drops every group (this node stopped coordinating, or starts again): a fresh state
    /// machine; parked requests are dropped (their handlers answer NOT_COORDINATOR-like
    /// errors and the clients find the coordinator again).
    pub fn reset(&self) {
        let fresh = GroupCoordinator::new(self.config.clone());
        *self.coordinator.lock() = fresh;
        self.pending.lock().clear();
        self.timer_wake.notify_one();
    }

    /// Restores the classic and consumer groups of a coordinator that just loaded its
    /// partition (after [`GroupService::reset`]); records that do not make a group are
    /// skipped with a warning.
    pub fn restore(&self, records: Vec<(String, GroupRecordChange)>) {
        let now = now_u64();
        let mut c = self.coordinator.lock();
        let mut restored = 0usize;
        for (group, record) in records {
            if c.restore_group(&group, record, now) {
                restored += 1;
            } else {
                tracing::warn!(group = %group, "persisted group membership not restored");
            }
        }
        drop(c);
        if restored > 0 {
            tracing::info!(groups = restored, "groups restored with their members");
        }
        self.timer_wake.notify_one();
    }

    /// Read-only access.
    pub fn read<T>(&self, f: impl FnOnce(&GroupCoordinator) -> T) -> T {
        f(&self.coordinator.lock())
    }
}

/// Ticks the coordinator at its next deadline (session expiry, rebalance timeouts, the initial
/// rebalance delay), at least once a second.
pub async fn run_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let groups = &broker.groups;
    loop {
        let now = now_u64();
        let next = groups.read(|c| c.next_deadline_ms()).unwrap_or(now + 1000);
        let wait = Duration::from_millis(next.saturating_sub(now).min(1000));
        tokio::select! {
            _ = stop.changed() => return,
            _ = groups.timer_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let now = now_u64();
        let due = groups
            .read(|c| c.next_deadline_ms())
            .is_some_and(|d| d <= now);
        if due {
            let regexes = groups.read(|c| c.regexes_in_use());
            let snapshot = topics_snapshot(&broker.metadata, &regexes);
            groups.with(|c| ((), c.tick(now, &snapshot)));
            crate::handlers::release_departed_share_members(&broker);
        }
    }
}

/// Writes the queued group records in order (see the module docs). A record that cannot be
/// written (this node stopped coordinating, the ISR is too small) is logged and dropped: the
/// coordinator that loads the partition next restores the last written generation, and
/// members of a later one rejoin.
pub async fn run_persister(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let Some(mut rx) = broker.groups.persist_rx.lock().take() else {
        return;
    };
    loop {
        let job = tokio::select! {
            _ = stop.changed() => return,
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        for (group, record) in job.records {
            let what = match &record {
                GroupRecordChange::Classic(None)
                | GroupRecordChange::Consumer(None)
                | GroupRecordChange::Share(None) => "deleted",
                _ => "written",
            };
            if let Err(e) = broker.offsets.write_group(&group, record, now_ms()).await {
                tracing::warn!(
                    group = %group, code = e.code, error = %e.message,
                    "group membership not {what}: its members rejoin if the coordinator moves"
                );
            }
        }
        if let Some(done) = job.done {
            let _ = done.send(());
        }
    }
}
