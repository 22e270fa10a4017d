//! Produce (InitProducerId is in `txn.rs`).
//!
//! The produce path: validate each partition's record set where it lies in the request buffer
//! (headers and CRC; records are not decoded), stamp offsets into copies of the 61-byte batch
//! headers, and write headers and client bytes in one vectored write; then, under
//! `flush=always` with acks != 0, wait for the partitions' group-commit fsyncs in parallel.
//!
//! Two topic configs make the broker read records first: schema validation (`schemas.rs`) and
//! a `compression.type` other than `producer`, under which a batch in another codec is
//! recompressed before the append (as Kafka does). Both decompress under the topic's
//! `max.message.bytes`; a batch that inflates past it is refused with INVALID_RECORD (the
//! non-retriable code Kafka gives a batch whose records it cannot read).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};

use sluice_storage::{BatchIter, ProducedBatch};

use super::s;
use crate::broker::{now_ms, Broker};
use crate::compression::{self, Codec, DecompressError, Levels};
use crate::config::FlushPolicy;
use crate::metrics::TopicLabels;
use crate::record_codec;
use crate::replica_manager::Replica;
use crate::topic_config::TopicConfigs;

/// The codec a topic stores its batches in (`compression.type`) with its level configs, or
/// `None` for `producer` (the default): batches are kept as the producer compressed them.
fn topic_codec(configs: &TopicConfigs) -> Option<(Codec, Levels)> {
    let codec = match configs.0.get("compression.type").map(String::as_str) {
        Some("uncompressed") => Codec::None,
        Some("gzip") => Codec::Gzip,
        Some("snappy") => Codec::Snappy,
        Some("lz4") => Codec::Lz4,
        Some("zstd") => Codec::Zstd,
        _ => return None,
    };
    let level = |name: &str, default: i32| {
        configs
            .0
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let levels = Levels {
        gzip: level("compression.gzip.level", compression::GZIP_DEFAULT_LEVEL),
        lz4: level("compression.lz4.level", compression::LZ4_DEFAULT_LEVEL),
        zstd: level("compression.zstd.level", compression::ZSTD_DEFAULT_LEVEL),
    };
    Some((codec, levels))
}

/// True if `records` is whole batches, all compressed with `codec` (a header walk, nothing
/// decoded): such a set is appended as sent.
fn all_batches_use(records: &[u8], codec: Codec) -> bool {
    let mut it = BatchIter::new(records);
    let mut any = false;
    for (_, h) in it.by_ref() {
        if h.compression() != codec.id() {
            return false;
        }
        any = true;
    }
    any && it.position() == records.len()
}

/// Kafka's recompression on append (`LogValidator`): every batch not already in the topic's
/// codec is rewritten in it — records unchanged, header fields kept, length and CRC new —
/// its records decompressed under `cap` (`max.message.bytes`) first. `None` if no batch needed
/// it. One scratch buffer serves every batch; nothing is allocated per record.
fn to_codec(
    records: &[u8],
    batches: &[ProducedBatch],
    target: Codec,
    levels: Levels,
    cap: usize,
) -> Result<Option<Vec<u8>>, DecompressError> {
    if batches
        .iter()
        .all(|b| b.header.compression() == target.id())
    {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(records.len());
    let mut scratch = Vec::new();
    for b in batches {
        let batch = records
            .get(b.position..b.position.saturating_add(b.header.total_len()))
            .unwrap_or_default();
        if b.header.compression() == target.id() {
            out.extend_from_slice(batch);
        } else {
            record_codec::recompress(
                batch,
                &b.header,
                target,
                levels,
                cap,
                &mut scratch,
                &mut out,
            )?;
        }
    }
    Ok(Some(out))
}

/// A verification error as this Produce version's client understands it (Kafka's
/// `AddPartitionsToTxnManager` and `ReplicaManager`): PRODUCER_FENCED is always
/// INVALID_PRODUCER_EPOCH ("producers expect to handle" it); before v11, TRANSACTION_ABORTABLE
/// is INVALID_TXN_STATE and the retriable coordinator errors are NOT_ENOUGH_REPLICAS, which
/// old producers retry without a metadata refresh.
fn verification_error(e: ResponseError, version: i16) -> ResponseError {
    match e {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable if version < 11 => ResponseError::InvalidTxnState,
        ResponseError::ConcurrentTransactions
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator
        | ResponseError::NetworkException
        | ResponseError::RequestTimedOut
            if version < 11 =>
        {
            ResponseError::NotEnoughReplicas
        }
        other => other,
    }
}

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(s))
}

/// A partition's error answer for `e`, with KIP-951's hint of where the leader is now
/// (Produce v10+) when the error knows it.
fn leader_error(index: i32, e: crate::error::KafkaError, version: i16) -> PartitionProduceResponse {
    let leader = e.current_leader.filter(|_| version >= 10);
    let resp = partition_error(index, e.code, Some(e.message));
    match leader {
        Some(l) => resp.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(l.leader_id))
                .with_leader_epoch(l.leader_epoch),
        ),
        None => resp,
    }
}

/// Returns `None` for acks=0 (no response is sent).
pub async fn handle(
    broker: &Broker,
    req: ProduceRequest,
    ctx: &super::RequestContext,
) -> Option<ProduceResponse> {
    use crate::security::authz::authorize;
    use sluice_acl::{AclOperation, ResourceType};
    let version = ctx.version;
    let acks = req.acks;
    // A transactional producer needs WRITE on its transactional id (Kafka refuses the whole
    // request), and WRITE on each topic.
    let txn_refused = req.transactional_id.as_ref().is_some_and(|id| {
        !authorize(
            broker,
            ctx,
            AclOperation::Write,
            ResourceType::TransactionalId,
            id.as_str(),
        )
    });
    let bad_acks = !matches!(acks, -1..=1);
    let now = now_ms();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index in response, partition, end offset) awaiting fsync.
    let mut to_sync = Vec::new();
    // Duplicates of stored batches, which wait for the high watermark under acks=all.
    let mut to_wait = Vec::new();
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic_allowed =
            txn_refused || authorize(broker, ctx, AclOperation::Write, ResourceType::Topic, &name);
        let topic = broker.metadata.topic(&name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            if txn_refused {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    None,
                ));
                continue;
            }
            if !topic_allowed {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::TopicAuthorizationFailed.code(),
                    None,
                ));
                continue;
            }
            if bad_acks {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks must be -1, 0 or 1, got {acks}")),
                ));
                continue;
            }
            if crate::coordinator::is_internal(&name) {
                // Kafka: "Cannot append to internal topic" (INVALID_TOPIC_EXCEPTION).
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::InvalidTopicException.code(),
                    Some(format!("cannot append to internal topic {name}")),
                ));
                continue;
            }
            let Some(partition) = topic
                .as_ref()
                .filter(|t| t.has_partition(pd.index))
                .and_then(|t| broker.replicas.get(t.tp(pd.index)))
            else {
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
            // Kafka's `ProduceRequest.validateRecords`: from v3 on, one record batch per
            // partition (a client sending two would have them appended as two, with two
            // sequence checks; Kafka refuses the request's partition instead).
            if version >= 3 && holds_more_than_one_batch(&records) {
                partitions.push(partition_error(
                    pd.index,
                    ResponseError::InvalidRecord.code(),
                    Some(format!(
                        "Produce requests with version {version} are only allowed to contain exactly one record batch per partition"
                    )),
                ));
                continue;
            }
            // Leadership before anything reads the records (Kafka checks it before the log's
            // validation): a replica that does not lead, or is not yet set up to
            // (`Role::PENDING`), answers NOT_LEADER_OR_FOLLOWER with the leader it knows,
            // never a validation error. The append checks the role again under the lock.
            if let Err(e) = partition.check_leader(crate::replica_manager::NO_LEADER_EPOCH) {
                partitions.push(leader_error(pd.index, e, version));
                continue;
            }
            let len = records.len() as u64;
            let configs = topic.as_ref().map(|t| &t.configs);
            let validation = configs.and_then(crate::schemas::Validation::of);
            let codec = configs.and_then(topic_codec);
            let mut records = records;
            // Only topics that validate schemas or store a codec other than the producer's
            // decode anything; the rest (and batches already in the topic's codec) append the
            // client's bytes untouched.
            // Compacted topics refuse keyless records (crate::cleaner::check_keys).
            let compacted = configs.is_some_and(TopicConfigs::is_compacted);
            if compacted
                || validation.is_some()
                || codec.is_some_and(|(c, _)| !all_batches_use(&records, c))
            {
                let max_message_bytes = configs.map_or(0, |c| c.log_config().max_message_bytes);
                let cap = configs.map_or(0, TopicConfigs::decompression_cap);
                // Framing and CRCs first (the append's own checks); refused here, fail-closed,
                // so no record reaches the log unread on a topic that must read it.
                let batches = match sluice_storage::records::validate_produced(
                    &records,
                    max_message_bytes,
                ) {
                    Ok(b) => b,
                    Err(e) => {
                        let e = crate::error::KafkaError::from(e);
                        tracing::debug!(topic = %name, partition = pd.index, error = %e, "produce refused");
                        partitions.push(partition_error(pd.index, e.code, Some(e.message)));
                        continue;
                    }
                };
                if compacted {
                    if let Err(e) =
                        crate::cleaner::check_keys(&name, pd.index, &records, &batches, cap)
                    {
                        partitions.push(crate::cleaner::refusal(pd.index, version, e));
                        continue;
                    }
                }
                if let Some(spec) = &validation {
                    if let Err((index, e)) = crate::schemas::validate_records(
                        &broker.registry,
                        &name,
                        spec,
                        &records,
                        &batches,
                        cap,
                    ) {
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
                if let Some((target, levels)) = codec {
                    match to_codec(&records, &batches, target, levels, cap) {
                        Ok(Some(rewritten)) => records = rewritten.into(),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(topic = %name, partition = pd.index, error = %e, "batch refused by recompression");
                            partitions.push(partition_error(
                                pd.index,
                                ResponseError::InvalidRecord.code(),
                                Some(format!("record batch of {name}: {e}")),
                            ));
                            continue;
                        }
                    }
                }
            }
            // Transactions (a look at the first batch header; records are not decoded): a
            // transactional batch that would open its producer's transaction here is verified
            // with the coordinator first (KIP-890 part 1). Control batches and the other
            // transaction rules are the replica's (`Replica::append_as_leader`).
            let mut guard = None;
            if let Some(h) = sluice_storage::BatchHeader::parse(&records)
                .filter(|h| h.is_transactional() && !h.is_control() && h.has_producer_id())
            {
                let Some(txn_id) = req.transactional_id.as_ref() else {
                    partitions.push(partition_error(
                        pd.index,
                        ResponseError::InvalidTxnState.code(),
                        Some("a transactional batch needs the request's transactional_id".into()),
                    ));
                    continue;
                };
                if let Some(g) = partition.start_txn_verification(h.producer_id, h.producer_epoch) {
                    let verification = crate::txn::Verification {
                        transactional_id: txn_id.to_string(),
                        producer_id: h.producer_id,
                        producer_epoch: h.producer_epoch,
                        member: crate::txn::remote::WireMember::Partition(name.clone(), pd.index),
                        add: version >= 12,
                    };
                    if let Err(e) = crate::txn::verify(broker, verification, now).await {
                        let e = verification_error(e, version);
                        tracing::debug!(topic = %name, partition = pd.index, error = ?e, "transactional produce not verified");
                        partitions.push(partition_error(
                            pd.index,
                            e.code(),
                            Some(format!(
                                "{name}-{} is not in the transaction of producer {} epoch {}",
                                pd.index, h.producer_id, h.producer_epoch
                            )),
                        ));
                        continue;
                    }
                    guard = Some(g);
                }
            }
            // acks=all: refused before the append while the ISR is below min.insync.replicas
            // (a single-replica partition has nothing to check).
            if acks == -1 {
                if let Err(e) = partition.check_acks_all() {
                    partitions.push(leader_error(pd.index, e, version));
                    continue;
                }
            }
            match partition.append_as_leader(&records, now, guard) {
                Ok(a) => {
                    if a.duplicate && acks == -1 {
                        // A retry of a stored batch: acknowledged once the ISR has it too.
                        to_wait.push((
                            responses.len(),
                            partitions.len(),
                            partition.clone(),
                            a.last_offset + 1,
                        ));
                    }
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
                    // Conditional append names the refused record (Produce v8+ RecordErrors).
                    let record_errors = e.record_index.filter(|_| version >= 8).map(|i| {
                        vec![kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                            .with_batch_index(i)
                            .with_batch_index_error_message(Some(s(e.message.clone())))]
                    });
                    let mut resp = leader_error(pd.index, e, version);
                    if let Some(r) = record_errors {
                        resp = resp.with_record_errors(r);
                    }
                    partitions.push(resp);
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
    let flush_always = broker.config.flush == FlushPolicy::Always;
    if !flush_always {
        // Replicated leaders: the local LEO counts towards the HW at once.
        leader_appended(broker, &to_sync, false);
    }
    if acks == 0 {
        // Replicated leaders under --flush always count only flushed data: fsync it now
        // (single-replica partitions keep today's acks=0 path: no wait).
        if flush_always && to_sync.iter().any(|(_, _, r, _)| r.is_replicated_leader()) {
            leader_appended_after_sync(broker, &to_sync).await;
        }
        return None;
    }
    if flush_always && !to_sync.is_empty() {
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
    if flush_always {
        // Under --flush always the leader counts only its flushed end.
        leader_appended(broker, &to_sync, true);
    }
    if acks == -1 {
        to_wait.extend(to_sync.iter().cloned());
        wait_for_isr(broker, &mut responses, &to_wait, req.timeout_ms, version).await;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

type Pending = (usize, usize, std::sync::Arc<Replica>, i64);

/// Reports the leader's new (flushed) end to the replicated leaders that appended.
fn leader_appended(broker: &Broker, appended: &[Pending], flush_always: bool) {
    let now = now_ms();
    let mut moved = false;
    for (_, _, r, _) in appended {
        if r.is_replicated_leader() {
            moved |= r.on_local_append(r.leader_leo(flush_always), now);
        }
    }
    if moved {
        broker.data_appended.notify_waiters();
    }
}

/// acks=0 under --flush always: the fsync happens anyway before the HW counts the data.
async fn leader_appended_after_sync(broker: &Broker, appended: &[Pending]) {
    let results =
        futures::future::join_all(appended.iter().map(|(_, _, p, end)| p.make_durable(*end))).await;
    if results.iter().all(Result::is_ok) {
        leader_appended(broker, appended, true);
    }
}

/// acks=all: waits until the HW passes each appended partition's records (or the ISR shrank
/// below min.insync.replicas: NOT_ENOUGH_REPLICAS_AFTER_APPEND; or leadership was lost:
/// NOT_LEADER_OR_FOLLOWER with the KIP-951 hint), at most the request's `timeout_ms`
/// (REQUEST_TIMED_OUT). Partitions already failed (an fsync error) are not waited for.
async fn wait_for_isr(
    broker: &Broker,
    responses: &mut [TopicProduceResponse],
    pending: &[Pending],
    timeout_ms: i32,
    version: i16,
) {
    use crate::replica_manager::AcksWait;
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    let mut waits = Vec::new();
    for (t, p, r, end) in pending {
        let failed = responses
            .get(*t)
            .and_then(|t| t.partition_responses.get(*p))
            .is_none_or(|resp| resp.error_code != 0);
        if failed {
            continue;
        }
        match r.wait_acks_all(*end) {
            AcksWait::Now(Ok(())) => {}
            AcksWait::Now(Err(code)) => set_error(responses, *t, *p, r, code, version),
            AcksWait::Parked(token, rx) => waits.push((*t, *p, r.clone(), token, rx)),
        }
    }
    let _ = broker;
    for (t, p, r, token, rx) in waits {
        let code = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => outcome.error_code(),
            Ok(Err(_)) => ResponseError::NotLeaderOrFollower.code(),
            Err(_) => {
                r.cancel_acks_all(token);
                ResponseError::RequestTimedOut.code()
            }
        };
        if code != 0 {
            set_error(responses, t, p, &r, code, version);
        }
    }
}

/// Whether `records` holds a second complete record batch after the first (Kafka's
/// `iterator.hasNext()` after the first batch: a batch is its 12-byte offset and length
/// prefix plus `length` bytes). A truncated or malformed set is left to the append's own
/// validation (CORRUPT_MESSAGE).
fn holds_more_than_one_batch(records: &[u8]) -> bool {
    let complete = |b: &[u8]| -> Option<usize> {
        let len = i32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
        let end = 12usize.checked_add(usize::try_from(len).ok()?)?;
        (end <= b.len()).then_some(end)
    };
    match complete(records) {
        Some(first) => records
            .get(first..)
            .is_some_and(|rest| complete(rest).is_some()),
        None => false,
    }
}

fn set_error(
    responses: &mut [TopicProduceResponse],
    t: usize,
    p: usize,
    replica: &Replica,
    code: i16,
    version: i16,
) {
    let Some(resp) = responses
        .get_mut(t)
        .and_then(|t| t.partition_responses.get_mut(p))
    else {
        return;
    };
    let index = resp.index;
    let message = match code {
        19 | 20 => "the in-sync replica set is smaller than min.insync.replicas",
        6 => "leadership moved while the request waited for the in-sync replicas",
        _ => "the in-sync replicas did not confirm the records within the request's timeout",
    };
    let mut r = partition_error(index, code, Some(message.into()));
    if code == ResponseError::NotLeaderOrFollower.code() && version >= 10 {
        let l = replica.leader();
        r = r.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(l.leader_id))
                .with_leader_epoch(l.leader_epoch),
        );
    }
    *resp = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_errors_per_produce_version() {
        use ResponseError as E;
        for v in [3, 10, 11, 12] {
            assert_eq!(
                verification_error(E::ProducerFenced, v),
                E::InvalidProducerEpoch
            );
            assert_eq!(
                verification_error(E::InvalidProducerIdMapping, v),
                E::InvalidProducerIdMapping
            );
        }
        assert_eq!(
            verification_error(E::TransactionAbortable, 10),
            E::InvalidTxnState
        );
        assert_eq!(
            verification_error(E::TransactionAbortable, 11),
            E::TransactionAbortable
        );
        assert_eq!(
            verification_error(E::ConcurrentTransactions, 10),
            E::NotEnoughReplicas
        );
        assert_eq!(
            verification_error(E::NotCoordinator, 9),
            E::NotEnoughReplicas
        );
        assert_eq!(
            verification_error(E::ConcurrentTransactions, 11),
            E::ConcurrentTransactions
        );
    }
}
