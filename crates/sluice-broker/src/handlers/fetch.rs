//! Fetch: serves stored batch bytes as they are on disk, with long polling on
//! `max_wait_ms`/`min_bytes` and the `max_bytes`/`partition_max_bytes` limits (KIP-74: the
//! first batch of the response is always whole, even over the limit).
//!
//! Isolation (Kafka's FetchRequest v4+): with `isolation_level = 1` (read_committed, the
//! default of librdkafka and kafkajs) only batches that end below the partition's last stable
//! offset are served, and the response lists the aborted transactions overlapping what it
//! returns; the broker does not filter aborted batches (clients do, with that list). Both
//! levels get the real `last_stable_offset`; read_uncommitted gets a null aborted list.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use uuid::Uuid;

use super::s;
use crate::broker::Broker;
use crate::fetch_session::{
    Answered, PartitionKey, Plan, RequestedPartition, MAX_FETCH_PARTITIONS,
};
use crate::metadata::Topic;
use crate::metrics::TopicLabels;
use crate::replica_manager::Replica;
use crate::response::StoredRecords;
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::ProducerId;

/// The aborted transactions a read_committed response carries for data `[from, upper)`.
fn aborted_list(partition: &Replica, from: i64, upper: Option<i64>) -> Vec<AbortedTransaction> {
    let Some(upper) = upper else {
        return Vec::new();
    };
    partition
        .aborted_transactions(from, upper)
        .into_iter()
        .map(|a| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}

/// One partition of the request, its replica resolved once per request (a long poll re-reads
/// without looking it up again).
struct WantedPartition {
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    /// KIP-320 (Fetch v9+; -1 unchecked).
    current_leader_epoch: i32,
    /// Fetch v12+ `LastFetchedEpoch` (-1: absent).
    last_fetched_epoch: i32,
    replica: Option<Arc<Replica>>,
}

/// One topic of the request, resolved once per request.
struct Wanted {
    /// As the request named it: the id (v13+) or the name (older), the other empty.
    key_id: Uuid,
    key_name: String,
    topic: Option<Arc<Topic>>,
    partitions: Vec<WantedPartition>,
}

impl Wanted {
    fn name(&self) -> &str {
        self.topic.as_ref().map_or(&self.key_name, |t| &t.name)
    }

    fn id(&self) -> Uuid {
        self.topic.as_ref().map_or(self.key_id, |t| t.id)
    }

    fn key(&self, partition: i32) -> PartitionKey {
        (self.key_id, self.key_name.clone(), partition)
    }
}

fn partition_data(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
}

/// Groups partitions by topic, keeping first-seen order; each topic is looked up once. O(n)
/// (a map from topic to its entry: a request naming 40,000 topics must not compare each with
/// every other).
fn group_by_topic(broker: &Broker, partitions: Vec<RequestedPartition>) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    let mut index: HashMap<(Uuid, String), usize> = HashMap::new();
    for p in partitions {
        let entry = WantedPartition {
            index: p.partition,
            fetch_offset: p.fetch_offset,
            partition_max_bytes: p.partition_max_bytes,
            current_leader_epoch: p.current_leader_epoch,
            last_fetched_epoch: p.last_fetched_epoch,
            replica: None,
        };
        match index.entry((p.topic_id, p.topic)) {
            Entry::Occupied(e) => {
                if let Some(w) = out.get_mut(*e.get()) {
                    w.partitions.push(entry);
                }
            }
            Entry::Vacant(e) => {
                let (key_id, key_name) = e.key().clone();
                let topic = if key_id.is_nil() {
                    broker.metadata.topic(&key_name)
                } else {
                    broker.metadata.topic_by_id(key_id)
                };
                e.insert(out.len());
                out.push(Wanted {
                    key_id,
                    key_name,
                    topic,
                    partitions: vec![entry],
                });
            }
        }
    }
    for w in &mut out {
        if let Some(t) = &w.topic {
            for p in &mut w.partitions {
                if t.has_partition(p.index) {
                    p.replica = broker.replicas.get(t.tp(p.index));
                }
            }
        }
    }
    out
}

/// Partitions past [`MAX_FETCH_PARTITIONS`], answered with INVALID_REQUEST and not read.
fn refused_topics(
    broker: &Broker,
    refused: Vec<RequestedPartition>,
) -> Vec<FetchableTopicResponse> {
    group_by_topic(broker, refused)
        .into_iter()
        .map(|w| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(s(w.name().to_string())))
                .with_topic_id(w.id())
                .with_partitions(
                    w.partitions
                        .iter()
                        .map(|p| partition_data(p.index, ResponseError::InvalidRequest.code()))
                        .collect(),
                )
        })
        .collect()
}

/// Answers a fetch. The records fields of the response stand for the file ranges returned
/// beside it (`response.rs`), which the connection sends from the page cache.
pub async fn handle(
    broker: &Broker,
    req: FetchRequest,
    ctx: &super::RequestContext,
) -> (FetchResponse, StoredRecords) {
    let mut files = StoredRecords::default();
    let response = answer(broker, req, ctx, &mut files).await;
    (response, files)
}

async fn answer(
    broker: &Broker,
    req: FetchRequest,
    ctx: &super::RequestContext,
    files: &mut StoredRecords,
) -> FetchResponse {
    let version = ctx.version;
    // Replica fetches come only through cluster RPC service 2 (`replication/leader.rs`); a
    // client on the Kafka port posing as a replica is answered as Kafka answers a fetcher that
    // is not a replica of the partition: NOT_LEADER_OR_FOLLOWER, or UNKNOWN_LEADER_EPOCH when it
    // sent a leader epoch.
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if replica_id >= 0 {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let code = if p.current_leader_epoch >= 0 {
                                    ResponseError::UnknownLeaderEpoch
                                } else {
                                    ResponseError::NotLeaderOrFollower
                                };
                                partition_data(p.partition, code.code())
                            })
                            .collect(),
                    )
            })
            .collect();
        return FetchResponse::default().with_responses(topics);
    }
    let by_id = version >= 13;
    let read_committed = req.isolation_level == 1;
    let topic_key = |name: &TopicName, id: Uuid| {
        if by_id {
            (id, String::new())
        } else {
            (Uuid::nil(), name.0.to_string())
        }
    };
    // At most MAX_FETCH_PARTITIONS are served; the rest are answered with an error.
    let mut requested: Vec<RequestedPartition> = Vec::new();
    let mut refused: Vec<RequestedPartition> = Vec::new();
    for t in &req.topics {
        let (topic_id, topic) = topic_key(&t.topic, t.topic_id);
        for p in &t.partitions {
            let r = RequestedPartition {
                topic_id,
                topic: topic.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: if version >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
            };
            if requested.len() < MAX_FETCH_PARTITIONS {
                requested.push(r);
            } else {
                refused.push(r);
            }
        }
    }
    // Forgetting more partitions than a session can hold does nothing more.
    let forgotten: Vec<PartitionKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let (id, topic) = topic_key(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| (id, topic.clone(), *p))
        })
        .take(MAX_FETCH_PARTITIONS)
        .collect();
    if !refused.is_empty() {
        tracing::debug!(
            refused = refused.len(),
            "fetch names more than {MAX_FETCH_PARTITIONS} partitions"
        );
    }
    let plan = if version >= 7 {
        match broker.fetch_sessions.lock().plan(
            req.session_id,
            req.session_epoch,
            &requested,
            &forgotten,
        ) {
            Ok(plan) => plan,
            Err(e) => return FetchResponse::default().with_error_code(e.code()),
        }
    } else {
        Plan::Sessionless
    };
    let (session, wanted) = match plan {
        Plan::Sessionless => (None, group_by_topic(broker, requested)),
        Plan::Session {
            id,
            incremental,
            partitions,
            refused: more,
        } => {
            refused.extend(more);
            (Some((id, incremental)), group_by_topic(broker, partitions))
        }
    };
    // The broker's fetch.max.bytes caps what the request asks for.
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    }
    .min(broker.config.fetch_max_bytes.max(1)) as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait =
        Duration::from_millis(req.max_wait_ms.clamp(0, crate::limits::MAX_FETCH_WAIT_MS) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    // READ on each topic, checked once per request (a session's partitions included); a topic
    // known only by an id that resolves to nothing has no name to check (ids are not
    // sensitive: it is answered UNKNOWN_TOPIC_ID).
    let allowed: Vec<bool> = wanted
        .iter()
        .map(|w| {
            w.name().is_empty()
                || crate::security::authz::authorize(
                    broker,
                    ctx,
                    sluice_acl::AclOperation::Read,
                    sluice_acl::ResourceType::Topic,
                    w.name(),
                )
        })
        .collect();
    let mut responses = loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let appended = broker.data_appended.notified();
        let (responses, read, bytes, any_error) = read_once(
            broker,
            &wanted,
            &allowed,
            max_bytes,
            version,
            read_committed,
        );
        *files = read;
        if bytes >= min_bytes
            || any_error
            || !refused.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            break responses;
        }
        let _ = tokio::time::timeout_at(deadline, appended).await;
    };
    for (t, topic) in responses.iter().zip(&wanted) {
        let n: usize = t
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| files.len_of(r)))
            .sum();
        if n > 0 {
            broker
                .metrics
                .bytes_out
                .get_or_create(&TopicLabels {
                    topic: topic.name().to_string(),
                })
                .inc_by(n as u64);
        }
    }
    let mut response = FetchResponse::default();
    if let Some((id, incremental)) = session {
        let mut sessions = broker.fetch_sessions.lock();
        for (t, w) in responses.iter_mut().zip(&wanted) {
            t.partitions.retain(|p| {
                let changed = sessions.note_response(
                    id,
                    &w.key(p.partition_index),
                    Answered {
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                        has_records: p.records.as_ref().is_some_and(|r| !r.is_empty()),
                        has_error: p.error_code != 0,
                    },
                );
                changed || !incremental
            });
        }
        responses.retain(|t| !t.partitions.is_empty() || !incremental);
        response = response.with_session_id(id);
    }
    responses.extend(refused_topics(broker, refused));
    response.with_responses(responses)
}

/// One pass over the requested partitions. Returns the topics, the file ranges their records
/// stand for, the record bytes gathered and whether any partition answered with an error
/// (errors return at once, as in Kafka). Only batch headers are read here.
fn read_once(
    broker: &Broker,
    wanted: &[Wanted],
    allowed: &[bool],
    max_bytes: usize,
    version: i16,
    read_committed: bool,
) -> (Vec<FetchableTopicResponse>, StoredRecords, usize, bool) {
    let by_id = version >= 13;
    let mut files = StoredRecords::default();
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(wanted.len());
    for (w, allowed) in wanted.iter().zip(allowed) {
        if !allowed {
            any_error = true;
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(s(w.name().to_string())))
                    .with_topic_id(w.id())
                    .with_partitions(
                        w.partitions
                            .iter()
                            .map(|p| {
                                partition_data(
                                    p.index,
                                    ResponseError::TopicAuthorizationFailed.code(),
                                )
                            })
                            .collect(),
                    ),
            );
            continue;
        }
        // Deleted (or deleted and recreated) while this request waited: unknown now.
        let topic = w.topic.as_ref().filter(|t| {
            broker
                .metadata
                .topic(&t.name)
                .is_some_and(|now| now.id == t.id)
        });
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for p in &w.partitions {
            let (index, offset, partition_max) = (p.index, p.fetch_offset, p.partition_max_bytes);
            let Some(partition) = p.replica.as_ref().filter(|_| topic.is_some()) else {
                any_error = true;
                let code = if by_id && topic.is_none() {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                partitions.push(partition_data(index, code));
                continue;
            };
            let remaining = max_bytes.saturating_sub(total);
            let limit = (partition_max.max(0) as usize).min(remaining);
            let (slice, marks) =
                match partition.read_as_leader(p.current_leader_epoch, offset, limit.max(1)) {
                    Ok(read) => read,
                    Err(e) => {
                        // Not the leader, or KIP-320 fenced/unknown epoch; KIP-951 hint.
                        any_error = true;
                        let mut data = partition_data(index, e.code);
                        if let Some(l) = e.current_leader.filter(|_| version >= 12) {
                            data = data.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(l.leader_id))
                                    .with_leader_epoch(l.leader_epoch),
                            );
                        }
                        partitions.push(data);
                        continue;
                    }
                };
            // KIP-320 for consumers (Fetch v12+): a `LastFetchedEpoch` whose end here is
            // before the fetch offset (or whose epoch is unknown past it) means the consumer
            // read a tail this log no longer has: answer `DivergingEpoch`, no records (the
            // consumer truncates its position). An epoch this log cannot place (undefined)
            // is served as before rather than reset (Kafka answers OFFSET_OUT_OF_RANGE).
            if p.last_fetched_epoch >= 0 {
                let (epoch, end) = partition.end_offset_for(p.last_fetched_epoch);
                if epoch >= 0 && end >= 0 && (epoch < p.last_fetched_epoch || end < offset) {
                    any_error = true;
                    partitions.push(
                        partition_data(index, 0)
                            .with_high_watermark(marks.high_watermark)
                            .with_last_stable_offset(marks.last_stable_offset)
                            .with_log_start_offset(marks.log_start_offset)
                            .with_diverging_epoch(
                                kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                                    .with_epoch(epoch)
                                    .with_end_offset(end),
                            )
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            }
            let mut data = partition_data(index, 0)
                .with_high_watermark(marks.high_watermark)
                .with_last_stable_offset(marks.last_stable_offset)
                .with_log_start_offset(marks.log_start_offset)
                .with_aborted_transactions(read_committed.then(Vec::new));
            // read_committed: nothing at or past the LSO; read_uncommitted: nothing at or past
            // the high watermark (under replication it may trail the log end; on a single node
            // it is the log end). The offset is still checked for range by the read above.
            let uncommitted_tail = marks.high_watermark < marks.log_end_offset;
            let undecided = if read_committed {
                offset >= marks.last_stable_offset
            } else {
                uncommitted_tail && offset >= marks.high_watermark
            };
            match slice {
                Ok(Some(_)) if undecided => data = data.with_records(Some(Bytes::new())),
                Ok(Some(slice)) if limit > 0 || total == 0 => {
                    // read_committed stops before the LSO; read_uncommitted before a high
                    // watermark that trails the log end.
                    let stop_before = if read_committed {
                        marks.last_stable_offset
                    } else if uncommitted_tail {
                        marks.high_watermark
                    } else {
                        i64::MAX
                    };
                    // Only the response's first batch may exceed the limit (KIP-74).
                    let served = slice.extent(stop_before).and_then(|extent| {
                        if extent.len == 0 || (extent.len > limit && total > 0) {
                            return Ok((extent, Bytes::new()));
                        }
                        let range = slice.prefix(extent.len);
                        let records = match files.add(range.clone()) {
                            Some(placeholder) => placeholder,
                            None => Bytes::from(range.load()?),
                        };
                        Ok((extent, records))
                    });
                    match served {
                        Ok((extent, records)) => {
                            if read_committed {
                                data = data.with_aborted_transactions(Some(aborted_list(
                                    partition,
                                    offset,
                                    extent.next_offset,
                                )));
                            }
                            total += files.len_of(&records);
                            data = data.with_records(Some(records));
                        }
                        Err(e) => {
                            any_error = true;
                            tracing::error!(topic = %w.name(), partition = index, error = %e, "read failed");
                            data = data.with_error_code(ResponseError::KafkaStorageError.code());
                        }
                    }
                }
                Ok(_) => data = data.with_records(Some(Bytes::new())),
                Err(e) => {
                    any_error = true;
                    data = data.with_error_code(e.code);
                }
            }
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(s(w.name().to_string())))
                .with_topic_id(w.id())
                .with_partitions(partitions),
        );
    }
    (responses, files, total, any_error)
}
