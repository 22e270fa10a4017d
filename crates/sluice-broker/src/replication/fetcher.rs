//! The follower side: one fetcher task per source broker (Kafka's `ReplicaFetcherThread`).
//!
//! Each round: every partition handed to this fetcher (and not backing off) is fetched from
//! its log end offset, with `LastFetchedEpoch` = the latest epoch of its epoch cache and
//! `CurrentLeaderEpoch` = the epoch of the partition state that named the leader. The request
//! is a Kafka FetchRequest (v[`super::REPLICA_FETCH_VERSION`]) carried by cluster RPC service
//! 2 as `[i16 version][request body]`; the answer is `[i16 version][FetchResponse body]`.
//! After a round, every partition that received data is fsynced before the next round, so
//! each fetch offset the leader sees is durable (see the module docs of `replication`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::protocol::{Decodable, Encodable};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{
    Replication, FETCH_BACKOFF_MAX_MS, FETCH_BACKOFF_MIN_MS, REPLICA_FETCH_MAX_BYTES,
    REPLICA_FETCH_PARTITION_MAX_BYTES, REPLICA_FETCH_VERSION, REPLICA_FETCH_WAIT_MAX_MS,
    RPC_TIMEOUT_MARGIN_MS,
};
use crate::broker::now_ms;
use crate::replica_manager::{Replica, TopicIdPartition};

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// A partition a fetcher fetches.
#[derive(Debug, Clone, Copy)]
pub struct FetchTarget {
    /// The leader epoch of the partition state that named this leader.
    pub leader_epoch: i32,
    /// Backing off until then after an error.
    pub retry_at_ms: i64,
    pub backoff_ms: i64,
}

/// What a fetcher task shares with the registry.
pub struct FetcherShared {
    pub leader: i32,
    pub partitions: Mutex<HashMap<TopicIdPartition, FetchTarget>>,
    pub wake: Notify,
    pub running: AtomicBool,
}

impl FetcherShared {
    pub fn new(leader: i32) -> Self {
        FetcherShared {
            leader,
            partitions: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            running: AtomicBool::new(false),
        }
    }

    fn back_off(&self, tp: TopicIdPartition, epoch: i32, now: i64) {
        if let Some(t) = self.partitions.lock().get_mut(&tp) {
            if t.leader_epoch == epoch {
                t.backoff_ms = (t.backoff_ms * 2).clamp(FETCH_BACKOFF_MIN_MS, FETCH_BACKOFF_MAX_MS);
                t.retry_at_ms = now.saturating_add(t.backoff_ms);
            }
        }
    }

    fn succeeded(&self, tp: TopicIdPartition, epoch: i32) {
        if let Some(t) = self.partitions.lock().get_mut(&tp) {
            if t.leader_epoch == epoch {
                t.backoff_ms = 0;
                t.retry_at_ms = 0;
            }
        }
    }

    fn still(&self, tp: TopicIdPartition, epoch: i32) -> bool {
        self.partitions
            .lock()
            .get(&tp)
            .is_some_and(|t| t.leader_epoch == epoch)
    }
}

/// Encodes a replica fetch for RPC service 2.
pub fn encode_fetch(req: &FetchRequest, version: i16) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    req.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn decode_response(bytes: Vec<u8>) -> Option<FetchResponse> {
    let mut b = Bytes::from(bytes);
    if b.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = b.split_to(2);
    if !(4..=REPLICA_FETCH_VERSION).contains(&version) {
        return None;
    }
    FetchResponse::decode(&mut b, version).ok()
}

/// The fetcher task for one source broker.
pub(super) async fn run(repl: Replication, shared: Arc<FetcherShared>) {
    let mut backoff = 0i64;
    loop {
        if repl.is_shut_down() {
            return;
        }
        let Some((broker, link)) = repl.started() else {
            return;
        };
        let now = now_ms();
        let targets: Vec<(TopicIdPartition, FetchTarget)> = shared
            .partitions
            .lock()
            .iter()
            .filter(|(_, t)| t.retry_at_ms <= now)
            .map(|(tp, t)| (*tp, *t))
            .collect();
        let mut sent: Vec<(TopicIdPartition, i32, Arc<Replica>)> = Vec::new();
        let mut topics: BTreeMap<uuid::Uuid, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, t) in &targets {
            let Some(replica) = broker.replicas.get(*tp) else {
                // Deleted: stop fetching it.
                shared.partitions.lock().remove(tp);
                continue;
            };
            let marks = replica.watermarks();
            let last_fetched_epoch = replica.partition().latest_epoch().unwrap_or(-1);
            topics.entry(tp.topic_id).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.partition)
                    .with_current_leader_epoch(t.leader_epoch)
                    .with_fetch_offset(marks.log_end_offset)
                    .with_last_fetched_epoch(last_fetched_epoch)
                    .with_log_start_offset(marks.log_start_offset)
                    .with_partition_max_bytes(REPLICA_FETCH_PARTITION_MAX_BYTES),
            );
            sent.push((*tp, t.leader_epoch, replica));
        }
        if sent.is_empty() {
            drop(broker);
            // Nothing to fetch (or everything backing off): wait for work or the next retry.
            let _ = tokio::time::timeout(
                Duration::from_millis(FETCH_BACKOFF_MIN_MS as u64),
                shared.wake.notified(),
            )
            .await;
            continue;
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(link.node_id()))
                    .with_replica_epoch(link.broker_epoch()),
            )
            .with_max_wait_ms(REPLICA_FETCH_WAIT_MAX_MS)
            .with_min_bytes(1)
            .with_max_bytes(REPLICA_FETCH_MAX_BYTES)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(id, partitions)| {
                        FetchTopic::default()
                            .with_topic_id(id)
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let answer = match (
            link.cluster_addr(shared.leader),
            encode_fetch(&req, REPLICA_FETCH_VERSION),
        ) {
            (Some(addr), Some(payload)) => link
                .rpc()
                .call(
                    &addr,
                    sluice_quorum::rpc::SERVICE_REPLICA_FETCH,
                    &payload,
                    Duration::from_millis(REPLICA_FETCH_WAIT_MAX_MS as u64 + RPC_TIMEOUT_MARGIN_MS),
                )
                .await
                .ok()
                .and_then(decode_response),
            _ => None,
        };
        let Some(resp) = answer.filter(|r| r.error_code == 0) else {
            drop(broker);
            backoff = (backoff * 2).clamp(FETCH_BACKOFF_MIN_MS, FETCH_BACKOFF_MAX_MS);
            tracing::debug!(leader = shared.leader, backoff, "replica fetch failed");
            let _ = tokio::time::timeout(
                Duration::from_millis(backoff as u64),
                repl.inner.shutdown_notify.notified(),
            )
            .await;
            continue;
        };
        backoff = 0;
        let now = now_ms();
        let mut appended: Vec<Arc<Replica>> = Vec::new();
        let mut changed = false;
        for topic in resp.responses {
            for pd in topic.partitions {
                let tp = TopicIdPartition {
                    topic_id: topic.topic_id,
                    partition: pd.partition_index,
                };
                let Some((_, epoch, replica)) = sent.iter().find(|(t, _, _)| *t == tp) else {
                    continue;
                };
                // The partition state changed while the fetch was out: drop the answer.
                if !shared.still(tp, *epoch) {
                    continue;
                }
                match handle_partition(&broker, replica, &pd, now) {
                    Ok(wrote) => {
                        shared.succeeded(tp, *epoch);
                        changed = true;
                        if wrote {
                            appended.push(replica.clone());
                        }
                    }
                    Err(code) => {
                        tracing::debug!(topic_id = %tp.topic_id, partition = tp.partition, code, "replica fetch: partition error");
                        shared.back_off(tp, *epoch, now);
                    }
                }
            }
        }
        // Every fetch offset must be durable: fsync what this round wrote before the next.
        let synced =
            futures::future::join_all(appended.iter().map(|r| r.partition().sync_now())).await;
        for (r, s) in appended.iter().zip(synced) {
            if let Err(e) = s {
                tracing::error!(topic = %r.topic(), partition = r.index(), error = %e, "follower fsync failed");
                shared.back_off(r.tp(), r.leader().leader_epoch, now);
            }
        }
        if changed {
            broker.data_appended.notify_waiters();
        }
    }
}

/// Applies one partition of a replica fetch response. Ok(true): records were appended.
fn handle_partition(
    broker: &crate::broker::Broker,
    replica: &Arc<Replica>,
    pd: &kafka_protocol::messages::fetch_response::PartitionData,
    now: i64,
) -> Result<bool, i16> {
    let partition = replica.partition();
    match pd.error_code {
        0 => {}
        OFFSET_OUT_OF_RANGE => {
            let marks = replica.watermarks();
            if pd.log_start_offset > marks.log_end_offset {
                // The leader's log starts past ours: start over at its log start.
                partition
                    .truncate_fully_and_start_at(pd.log_start_offset)
                    .map_err(|e| e.code)?;
                return Ok(false);
            }
            return Err(OFFSET_OUT_OF_RANGE);
        }
        code => return Err(code),
    }
    let mut wrote = false;
    let div = &pd.diverging_epoch;
    if div.epoch >= 0 || div.end_offset >= 0 {
        let marks = replica.watermarks();
        let t = sluice_replica::truncation_offset(
            (div.epoch, div.end_offset),
            |e| partition.end_offset_for(e),
            marks.log_end_offset,
            marks.high_watermark,
        );
        tracing::info!(topic = %replica.topic(), partition = replica.index(), to = t.offset, complete = t.complete, "follower truncating a diverging tail");
        partition.truncate_to(t.offset).map_err(|e| e.code)?;
    } else if let Some(records) = pd.records.as_ref().filter(|r| !r.is_empty()) {
        broker
            .replicas
            .append_as_follower(replica.tp(), records, now)
            .map_err(|e| {
                tracing::warn!(topic = %replica.topic(), partition = replica.index(), error = %e, "follower append refused");
                e.code
            })?;
        wrote = true;
    }
    let marks = replica.watermarks();
    if pd.high_watermark >= 0 {
        let hw = sluice_replica::follower_high_watermark(
            pd.high_watermark,
            marks.log_start_offset,
            marks.log_end_offset,
        );
        partition.set_high_watermark(Some(hw));
    }
    // The leader's log start moved (retention, DeleteRecords): follow it within our log.
    if pd.log_start_offset > marks.log_start_offset && pd.log_start_offset <= marks.log_end_offset {
        let _ = replica.with_log(|l| l.delete_records_before(pd.log_start_offset));
    }
    Ok(wrote)
}
