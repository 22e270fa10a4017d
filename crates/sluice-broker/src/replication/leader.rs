//! The leader side of replica fetches: the cluster RPC service 2 handler.
//!
//! Decodes `[i16 version][FetchRequest]`, runs the fetch in replica mode and answers
//! `[i16 version][FetchResponse]`. Per partition: the KIP-320 check of `CurrentLeaderEpoch`
//! against this node's role (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH /
//! NOT_LEADER_OR_FOLLOWER), then `LeaderState::on_follower_fetch` (the leader first records
//! its own LEO: under `--flush always` its flushed end; a fetch offset past the real log end
//! is OFFSET_OUT_OF_RANGE and not recorded as the follower's LEO). Diverging → `DivergingEpoch`, no
//! records. Otherwise the read goes up to the log end, not the HW (followers copy everything;
//! the HW is what the ISR confirmed). With no data the request waits up to its `MaxWaitMs`
//! (capped by `limits::MAX_FETCH_WAIT_MS`) for an append. Every partition answer carries the
//! leader's HW and log start (also on errors, so a follower below the log start can restart
//! there).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_quorum::rpc::{BoxFuture, Handler};
use sluice_replica::FollowerFetch;

use super::REPLICA_FETCH_VERSION;
use crate::broker::{now_ms, Broker};
use crate::replica_manager::{check_current_leader_epoch, Replica, TopicIdPartition};

/// The RPC service 2 handler (register it under `sluice_quorum::rpc::SERVICE_REPLICA_FETCH`).
pub struct ReplicaFetchService {
    broker: Weak<Broker>,
}

impl ReplicaFetchService {
    pub fn new(broker: &Arc<Broker>) -> Arc<Self> {
        Arc::new(ReplicaFetchService {
            broker: Arc::downgrade(broker),
        })
    }
}

impl Handler for ReplicaFetchService {
    fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let (version, resp) = match (self.broker.upgrade(), decode_request(request)) {
                (Some(broker), Some((version, req))) => {
                    (version, serve(&broker, req, version).await)
                }
                (None, _) => (
                    REPLICA_FETCH_VERSION,
                    FetchResponse::default()
                        .with_error_code(ResponseError::BrokerNotAvailable.code()),
                ),
                (_, None) => (
                    REPLICA_FETCH_VERSION,
                    FetchResponse::default().with_error_code(ResponseError::InvalidRequest.code()),
                ),
            };
            encode_response(&resp, version)
        })
    }
}

fn decode_request(bytes: Vec<u8>) -> Option<(i16, FetchRequest)> {
    let mut b = Bytes::from(bytes);
    if b.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = b.split_to(2);
    // Replicas identify themselves with ReplicaState (v15+).
    if !(15..=REPLICA_FETCH_VERSION).contains(&version) {
        return None;
    }
    FetchRequest::decode(&mut b, version)
        .ok()
        .map(|r| (version, r))
}

fn encode_response(resp: &FetchResponse, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    if resp.encode(&mut buf, version).is_err() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        let _ = FetchResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code())
            .encode(&mut buf, version);
        return buf.to_vec();
    }
    buf.to_vec()
}

enum Pre {
    Error(i16),
    Diverging(i32, i64),
    Serve,
}

struct Item {
    index: i32,
    replica: Option<Arc<Replica>>,
    offset: i64,
    max_bytes: usize,
    pre: Pre,
}

/// Serves a follower's fetch (see the module docs).
pub async fn serve(broker: &Broker, req: FetchRequest, _version: i16) -> FetchResponse {
    let replica_id = req.replica_state.replica_id.0;
    let broker_epoch = req.replica_state.replica_epoch;
    if replica_id < 0 || replica_id == broker.replicas.local_id() {
        return FetchResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    }
    let repl = broker.replicas.replication();
    let flush_always = repl.flush_always();
    let now = now_ms();
    let local_id = broker.replicas.local_id();
    let mut topics: Vec<(uuid::Uuid, Vec<Item>)> = Vec::with_capacity(req.topics.len());
    let mut hw_moved = false;
    for t in &req.topics {
        let mut items = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let tp = TopicIdPartition {
                topic_id: t.topic_id,
                partition: p.partition,
            };
            let replica = broker.replicas.get(tp);
            let pre = match &replica {
                None => Pre::Error(ResponseError::UnknownTopicId.code()),
                Some(r) => match check_current_leader_epoch(
                    &r.role(),
                    local_id,
                    p.current_leader_epoch,
                    true,
                ) {
                    Err(e) => Pre::Error(e.code),
                    Ok(()) => {
                        let leo = r.leader_leo(flush_always);
                        let log_end = r.log_end_offset();
                        let last = (p.last_fetched_epoch >= 0).then_some(p.last_fetched_epoch);
                        match r.update_leader(|ls| {
                            ls.on_local_append(leo, now);
                            ls.on_follower_fetch(
                                replica_id,
                                broker_epoch,
                                p.fetch_offset,
                                last,
                                now,
                                log_end,
                                |e| r.end_offset_for(e),
                            )
                        }) {
                            None => Pre::Error(ResponseError::NotLeaderOrFollower.code()),
                            Some((outcome, moved)) => {
                                hw_moved |= moved;
                                match outcome {
                                    FollowerFetch::Diverging { epoch, end_offset } => {
                                        Pre::Diverging(epoch, end_offset)
                                    }
                                    FollowerFetch::Serve { .. } => Pre::Serve,
                                    FollowerFetch::Error(e) => {
                                        Pre::Error(e.code(p.current_leader_epoch != -1))
                                    }
                                }
                            }
                        }
                    }
                },
            };
            items.push(Item {
                index: p.partition,
                replica,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                pre,
            });
        }
        topics.push((t.topic_id, items));
    }
    if hw_moved {
        broker.data_appended.notify_waiters();
    }
    repl.leader_changed();
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    }
    .min(broker.config.fetch_max_bytes.max(1)) as usize;
    let wait =
        Duration::from_millis(req.max_wait_ms.clamp(0, crate::limits::MAX_FETCH_WAIT_MS) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let has_answer = topics
        .iter()
        .flat_map(|(_, items)| items)
        .any(|i| !matches!(i.pre, Pre::Serve));
    loop {
        let appended = broker.data_appended.notified();
        let (responses, total) = read_once(&topics, max_bytes);
        if total > 0 || has_answer || tokio::time::Instant::now() >= deadline {
            return FetchResponse::default().with_responses(responses);
        }
        let _ = tokio::time::timeout_at(deadline, appended).await;
    }
}

fn read_once(
    topics: &[(uuid::Uuid, Vec<Item>)],
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize) {
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(topics.len());
    for (topic_id, items) in topics {
        let mut partitions = Vec::with_capacity(items.len());
        for item in items {
            let mut data = PartitionData::default()
                .with_partition_index(item.index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            if let Some(r) = &item.replica {
                let marks = r.watermarks();
                data = data
                    .with_high_watermark(marks.high_watermark)
                    .with_last_stable_offset(marks.last_stable_offset)
                    .with_log_start_offset(marks.log_start_offset);
            }
            match (&item.pre, &item.replica) {
                (Pre::Error(code), _) => data = data.with_error_code(*code),
                (Pre::Diverging(epoch, end_offset), _) => {
                    data = data
                        .with_diverging_epoch(
                            EpochEndOffset::default()
                                .with_epoch(*epoch)
                                .with_end_offset(*end_offset),
                        )
                        .with_records(Some(Bytes::new()));
                }
                (Pre::Serve, Some(r)) => {
                    let limit = item.max_bytes.min(max_bytes.saturating_sub(total));
                    let (slice, _) = r.read_for_follower(item.offset, limit.max(1));
                    match slice {
                        Ok(Some(slice)) if limit > 0 || total == 0 => match slice.load() {
                            Ok(bytes) => {
                                total += bytes.len();
                                data = data.with_records(Some(Bytes::from(bytes)));
                            }
                            Err(e) => {
                                tracing::error!(topic = %r.topic(), partition = r.index(), error = %e, "replica read failed");
                                data =
                                    data.with_error_code(ResponseError::KafkaStorageError.code());
                            }
                        },
                        Ok(_) => data = data.with_records(Some(Bytes::new())),
                        Err(e) => data = data.with_error_code(e.code),
                    }
                }
                (Pre::Serve, None) => {
                    data = data.with_error_code(ResponseError::UnknownTopicId.code())
                }
            }
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic_id(*topic_id)
                .with_partitions(partitions),
        );
    }
    (responses, total)
}
