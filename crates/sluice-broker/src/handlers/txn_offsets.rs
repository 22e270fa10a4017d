//! TxnOffsetCommit (API 28): a transactional producer commits its consumer's offsets inside
//! the transaction (`sendOffsetsToTransaction`). The offsets are logged as pending offsets of
//! the producer id (`offsets.rs`), invisible to OffsetFetch until the transaction coordinator
//! ends the transaction (`OffsetStore::complete_txn`).
//!
//! Order of checks, as Kafka's group coordinator: the group id; the transaction (the group
//! must have been added with AddOffsetsToTxn, or v5+ adds it: `txn::verify`, at the transaction
//! coordinator, over the cluster RPC when that is another node);
//! the KIP-447 fields of v3+ (generation/member epoch, member id, group instance id) against
//! the group, by the same code as OffsetCommit (`validate_commit` with `transactional`); then
//! per partition the topic and the metadata size. v0-2 (kafkajs, old clients) carry no member
//! fields and are accepted as a transactional commit with generation -1.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::groups::partition_commit_error;
use crate::broker::{now_ms, Broker};
use crate::offsets::CommittedOffset;

/// Maps a transaction-verification error onto what a client of `version` understands: as
/// Kafka, PRODUCER_FENCED reads INVALID_PRODUCER_EPOCH, and TRANSACTION_ABORTABLE (v4+) reads
/// INVALID_TXN_STATE before v4.
fn client_error(e: ResponseError, version: i16) -> i16 {
    match e {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch.code(),
        ResponseError::TransactionAbortable if version < 4 => ResponseError::InvalidTxnState.code(),
        e => e.code(),
    }
}

pub async fn txn_offset_commit(
    broker: &Broker,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let now = now_ms();
    let check = if group.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else if let Err(e) = broker.offsets.check() {
        e.code
    } else {
        let verification = crate::txn::Verification {
            transactional_id: req.transactional_id.0.to_string(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            member: crate::txn::remote::WireMember::Group(group.clone()),
            add: version >= 5,
        };
        match crate::txn::verify(broker, verification, now).await {
            Err(e) => client_error(e, version),
            Ok(()) => {
                // Before v3 the fields read their defaults: generation -1, no member.
                let (generation, member, instance) = if version >= 3 {
                    (
                        req.generation_id,
                        req.member_id.to_string(),
                        req.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                } else {
                    (-1, String::new(), None)
                };
                broker.groups.with(|c| {
                    (
                        c.validate_commit(
                            now.max(0) as u64,
                            &group,
                            generation,
                            &member,
                            instance.as_deref(),
                            true,
                        ),
                        Vec::new(),
                    )
                })
            }
        }
    };
    let mut offsets = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let exists = broker.metadata.topic(&name);
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let code = if check != 0 {
                    check
                } else {
                    partition_commit_error(
                        exists.as_deref(),
                        p.partition_index,
                        p.committed_metadata.as_deref(),
                    )
                };
                if code == 0 {
                    offsets.push((
                        name.clone(),
                        p.partition_index,
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_timestamp_ms: now,
                        },
                    ));
                }
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect::<Vec<_>>();
        topics.push(
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    if !offsets.is_empty() {
        if let Err(e) = broker
            .offsets
            .write_txn(&group, req.producer_id.0, req.producer_epoch, offsets, now)
            .await
        {
            tracing::debug!(group = %group, producer_id = req.producer_id.0, error = %e.message, "transactional offset commit refused");
            for t in &mut topics {
                for p in &mut t.partitions {
                    if p.error_code == 0 {
                        p.error_code = e.code;
                    }
                }
            }
        }
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
