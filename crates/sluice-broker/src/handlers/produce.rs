//! Produce and InitProducerId.
//!
//! The produce path: validate each partition's record set where it lies in the request buffer
//! (headers and CRC; records are not decoded), stamp offsets into copies of the 61-byte batch
//! headers, and write headers and client bytes in one vectored write; then, under
//! `flush=always` with acks != 0, wait for the partitions' group-commit fsyncs in parallel.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use super::s;
use crate::broker::{now_ms, Broker};
use crate::config::FlushPolicy;
use crate::metrics::TopicLabels;

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(s))
}

/// Returns `None` for acks=0 (no response is sent).
pub async fn handle(broker: &Broker, req: ProduceRequest, version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    let bad_acks = !matches!(acks, -1..=1);
    let now = now_ms();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index in response, partition, end offset) awaiting fsync.
    let mut to_sync = Vec::new();
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = broker.metadata.topic(&name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            if bad_acks {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks must be -1, 0 or 1, got {acks}")),
                ));
                continue;
            }
            if req.transactional_id.is_some() {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    Some("transactions are not supported yet".into()),
                ));
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| {
                usize::try_from(pd.index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            }) else {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::UnknownTopicOrPartition.code(),
                    Some(format!("{name}-{} does not exist", pd.index)),
                ));
                continue;
            };
            let Some(records) = pd.records else {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::CorruptMessage.code(),
                    Some("null record set".into()),
                ));
                continue;
            };
            if let Some(spec) = topic
                .as_ref()
                .and_then(|t| crate::schemas::Validation::of(&t.configs))
            {
                if let Err((index, e)) =
                    crate::schemas::validate_records(&broker.registry, &name, &spec, &records)
                {
                    tracing::debug!(topic = %name, partition = pd.index, error = %e, "record refused by schema validation");
                    let mut resp = partition_error(pd.index, e.code, Some(e.message.clone()));
                    if version >= 8 {
                        resp = resp.with_record_errors(vec![
                            kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                                .with_batch_index(index)
                                .with_batch_index_error_message(Some(s(e.message))),
                        ]);
                    }
                    partitions.push(resp);
                    continue;
                }
            }
            let len = records.len() as u64;
            match partition.append(&records, now) {
                Ok(a) => {
                    if !a.duplicate {
                        let labels = TopicLabels {
                            topic: name.clone(),
                        };
                        broker.metrics.bytes_in.get_or_create(&labels).inc_by(len);
                        broker
                            .metrics
                            .messages_in
                            .get_or_create(&labels)
                            .inc_by((a.last_offset - a.base_offset + 1).max(0) as u64);
                        to_sync.push((
                            responses.len(),
                            partitions.len(),
                            partition.clone(),
                            a.last_offset + 1,
                        ));
                    }
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(pd.index)
                            .with_base_offset(a.base_offset)
                            .with_log_append_time_ms(a.log_append_time_ms)
                            .with_log_start_offset(a.log_start_offset),
                    );
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = pd.index, error = %e, "produce refused");
                    partitions.push(partition_error(pd.index, e.code, Some(e.message)));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if !to_sync.is_empty() {
        broker.data_appended.notify_waiters();
    }
    if acks == 0 {
        return None;
    }
    if broker.config.flush == FlushPolicy::Always && !to_sync.is_empty() {
        let results =
            futures::future::join_all(to_sync.iter().map(|(_, _, p, end)| p.make_durable(*end)))
                .await;
        for ((t, p, _, _), result) in to_sync.iter().zip(results) {
            if let Err(e) = result {
                // Appended but not durable: the client must not count it as acknowledged.
                tracing::error!(error = %e, "fsync failed");
                if let Some(resp) = responses
                    .get_mut(*t)
                    .and_then(|t| t.partition_responses.get_mut(*p))
                {
                    let index = resp.index;
                    *resp = partition_error(
                        index,
                        ResponseError::KafkaStorageError.code(),
                        Some(e.message),
                    );
                }
            }
        }
    }
    Some(ProduceResponse::default().with_responses(responses))
}

pub async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        // Transactions come with their coordinator (a later issue); refuse clearly.
        return fail(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: an idempotent producer may ask to bump its epoch after an error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.metadata.allocate_producer_id(now_ms()).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => fail(e.code),
    }
}
