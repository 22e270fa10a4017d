//! Fetch: serves stored batch bytes as they are on disk, with long polling on
//! `max_wait_ms`/`min_bytes` and the `max_bytes`/`partition_max_bytes` limits (KIP-74: the
//! first batch of the response is always whole, even over the limit).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use uuid::Uuid;

use super::s;
use crate::broker::Broker;
use crate::fetch_session::{Answered, Plan, RequestedPartition};
use crate::metrics::TopicLabels;

struct Wanted {
    topic: String,
    topic_id: Uuid,
    partitions: Vec<(i32, i64, i32)>,
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

/// Groups session partitions by topic, keeping first-seen order.
fn group_by_topic(broker: &Broker, partitions: Vec<RequestedPartition>) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    for p in partitions {
        let entry = (p.partition, p.fetch_offset, p.partition_max_bytes);
        match out.iter_mut().find(|w| w.topic == p.topic) {
            Some(w) => w.partitions.push(entry),
            None => {
                let topic_id = broker
                    .metadata
                    .topic(&p.topic)
                    .map_or(Uuid::nil(), |t| t.id);
                out.push(Wanted {
                    topic: p.topic,
                    topic_id,
                    partitions: vec![entry],
                });
            }
        }
    }
    out
}

pub async fn handle(broker: &Broker, req: FetchRequest, version: i16) -> FetchResponse {
    let by_id = version >= 13;
    let read_committed = req.isolation_level == 1;
    let topic_name = |name: &TopicName, id: Uuid| {
        if by_id {
            broker
                .metadata
                .topic_by_id(id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        } else {
            name.0.to_string()
        }
    };
    let requested: Vec<RequestedPartition> = req
        .topics
        .iter()
        .flat_map(|t| {
            let topic = topic_name(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| RequestedPartition {
                topic: topic.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
            })
        })
        .collect();
    let forgotten: Vec<(String, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = topic_name(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| (topic.clone(), *p))
        })
        .collect();
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
        } => (Some((id, incremental)), group_by_topic(broker, partitions)),
    };
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    } as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait =
        Duration::from_millis(req.max_wait_ms.clamp(0, crate::limits::MAX_FETCH_WAIT_MS) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let mut responses = loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let appended = broker.data_appended.notified();
        let (responses, bytes, any_error) =
            read_once(broker, &wanted, max_bytes, by_id, read_committed);
        if bytes >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            break responses;
        }
        let _ = tokio::time::timeout_at(deadline, appended).await;
    };
    for (t, topic) in responses.iter().zip(&wanted) {
        let n: usize = t
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .sum();
        if n > 0 {
            broker
                .metrics
                .bytes_out
                .get_or_create(&TopicLabels {
                    topic: topic.topic.clone(),
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
                    &w.topic,
                    p.partition_index,
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
    response.with_responses(responses)
}

/// One pass over the requested partitions. Returns the topics, the record bytes gathered and
/// whether any partition answered with an error (errors return at once, as in Kafka).
fn read_once(
    broker: &Broker,
    wanted: &[Wanted],
    max_bytes: usize,
    by_id: bool,
    read_committed: bool,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(wanted.len());
    for w in wanted {
        let topic = broker.metadata.topic(&w.topic);
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for &(index, offset, partition_max) in &w.partitions {
            let Some(partition) = topic.as_ref().and_then(|t| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            }) else {
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
            let (slice, marks) = partition.read(offset, limit.max(1));
            let mut data = partition_data(index, 0)
                .with_high_watermark(marks.high_watermark)
                .with_last_stable_offset(marks.high_watermark)
                .with_log_start_offset(marks.log_start_offset)
                .with_aborted_transactions(read_committed.then(Vec::new));
            match slice {
                Ok(Some(slice)) if limit > 0 || total == 0 => match slice.load() {
                    Ok(bytes) => {
                        // Only the response's first batch may exceed the limit (KIP-74).
                        if bytes.len() <= limit || total == 0 {
                            total += bytes.len();
                            data = data.with_records(Some(Bytes::from(bytes)));
                        } else {
                            data = data.with_records(Some(Bytes::new()));
                        }
                    }
                    Err(e) => {
                        any_error = true;
                        tracing::error!(topic = %w.topic, partition = index, error = %e, "read failed");
                        data = data.with_error_code(ResponseError::KafkaStorageError.code());
                    }
                },
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
                .with_topic(TopicName(s(w.topic.clone())))
                .with_topic_id(w.topic_id)
                .with_partitions(partitions),
        );
    }
    (responses, total, any_error)
}
