//! Transactions on the wire: InitProducerId (with and without a transactional id),
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers (admin), DescribeTransactions
//! and ListTransactions. The coordinator is `crate::txn` (IO edge) over `sluice-txn`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use sluice_txn::{Member, TxnState};

use super::s;
use crate::broker::{now_ms, Broker};
use crate::replica_manager::TxnMarker;

/// Kafka answers INVALID_PRODUCER_EPOCH in place of PRODUCER_FENCED to clients that predate it
/// (InitProducerId < v4, EndTxn / AddPartitionsToTxn / AddOffsetsToTxn < v2).
fn fenced_for(e: ResponseError, version: i16, first_with_fenced: i16) -> i16 {
    if e == ResponseError::ProducerFenced && version < first_with_fenced {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        e.code()
    }
}

/// Creates `__transaction_state` if it does not exist yet (its errors are the next
/// FindCoordinator's to report).
async fn ensure_txn_topic(broker: &Broker) {
    if broker
        .metadata
        .topic(crate::coordinator::TXN_TOPIC)
        .is_none()
    {
        if let Err(e) = broker
            .metadata
            .ensure_internal_topic(crate::coordinator::TXN_TOPIC, now_ms())
            .await
        {
            tracing::debug!(error = %e.message, "cannot create the transaction coordinator's topic yet");
        }
    }
}

pub async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let fail = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let now = now_ms();
    if let Some(id) = &req.transactional_id {
        let expected = (req.producer_id.0 >= 0 && req.producer_epoch >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        return match broker
            .txn
            .init_producer_id(
                &broker.metadata,
                id.as_str(),
                req.transaction_timeout_ms,
                expected,
                now,
            )
            .await
        {
            Ok((pid, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(e) => {
                if e == ResponseError::NotCoordinator {
                    // A client that skipped FindCoordinator: the coordinator's topic is made
                    // (as FindCoordinator key type 1 would) so that its next lookup finds one.
                    ensure_txn_topic(broker).await;
                }
                fail(fenced_for(e, version, 4))
            }
        };
    }
    // Idempotent producers. KIP-360: one may ask to bump its epoch after an error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.metadata.allocate_producer_id(now).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => fail(e.code),
    }
}

/// AddPartitionsToTxn v0–3 (the client form). Unknown partitions fail the whole request:
/// UNKNOWN_TOPIC_OR_PARTITION for them, OPERATION_NOT_ATTEMPTED for the others (as Kafka).
pub async fn add_partitions_to_txn(
    broker: &Broker,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let topics = &req.v3_and_below_topics;
    let known = |t: &TopicName, p: i32| broker.metadata.has_partition(t.as_str(), p);
    let any_unknown = topics
        .iter()
        .any(|t| t.partitions.iter().any(|p| !known(&t.name, *p)));
    let result: Result<(), ResponseError> = if any_unknown {
        Err(ResponseError::OperationNotAttempted)
    } else {
        let members: Vec<Member> = topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| Member::Partition(t.name.to_string(), *p))
            })
            .collect();
        broker
            .txn
            .add(
                req.v3_and_below_transactional_id.as_str(),
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &members,
                now_ms(),
            )
            .await
    };
    let results = topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = match &result {
                                Ok(()) => 0,
                                Err(_) if !known(&t.name, *p) => {
                                    ResponseError::UnknownTopicOrPartition.code()
                                }
                                Err(e) => fenced_for(*e, version, 2),
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub async fn add_offsets_to_txn(
    broker: &Broker,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let result = broker
        .txn
        .add(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &[Member::Group(req.group_id.to_string())],
            now_ms(),
        )
        .await;
    AddOffsetsToTxnResponse::default().with_error_code(match result {
        Ok(()) => 0,
        Err(e) => fenced_for(e, version, 2),
    })
}

pub async fn end_txn(broker: &Broker, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let result = broker
        .txn
        .end_txn(
            &broker.metadata,
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            version >= 5,
            now_ms(),
        )
        .await;
    match result {
        Ok((pid, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => EndTxnResponse::default()
            .with_error_code(fenced_for(e, version, 2))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// WriteTxnMarkers from an admin client (`kafka-transactions.sh abort`): appends the marker to
/// each listed partition directly. The coordinator writes its own markers in-process, or over
/// the cluster RPC to other nodes (`txn/remote.rs`).
pub async fn write_txn_markers(
    broker: &Broker,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let now = now_ms();
    let txn_leader_epoch = broker
        .metadata
        .topic(crate::coordinator::TXN_TOPIC)
        .and_then(|t| {
            broker
                .metadata
                .cluster
                .state
                .read(|img| img.partition(&t.id, 0).map(|p| p.leader_epoch))
        });
    let current_epoch = broker.txn.epoch_bound(txn_leader_epoch).await;
    let mut out = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        // A coordinator epoch from the future (a typo in `--coordinator-epoch`) would fence
        // every later marker of the real coordinator for this producer on these partitions,
        // leaving its transactions hanging: refused.
        let bad_epoch = m.coordinator_epoch > current_epoch;
        let marker = TxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in &m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &index in &t.partition_indexes {
                let code = match broker.replica(t.name.as_str(), index) {
                    _ if bad_epoch => ResponseError::InvalidRequest.code(),
                    Err(e) => e.code,
                    Ok(p) => {
                        let result = match p.append_marker(marker, now) {
                            Ok(a) => p.make_durable(a.last_offset + 1).await,
                            Err(e) => Err(e),
                        };
                        match result {
                            Ok(()) => {
                                tracing::info!(
                                    topic = %t.name.as_str(), partition = index,
                                    producer_id = marker.producer_id, commit = marker.commit,
                                    "transaction marker written by an admin request"
                                );
                                0
                            }
                            Err(e) => e.code,
                        }
                    }
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        out.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    broker.data_appended.notify_waiters();
    WriteTxnMarkersResponse::default().with_markers(out)
}

pub async fn describe_transactions(
    broker: &Broker,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let state = match broker.txn.describe(id.as_str()).await {
            Err(e) => DescribedState::default()
                .with_transactional_id(id.clone())
                .with_error_code(e.code())
                .with_transaction_state(s(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
            Ok(None) => DescribedState::default()
                .with_transactional_id(id.clone())
                .with_error_code(ResponseError::TransactionalIdNotFound.code())
                .with_transaction_state(s(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
            Ok(Some(t)) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (topic, p) in &t.partitions {
                    match topics.last_mut() {
                        Some(last) if last.topic.as_str() == topic => last.partitions.push(*p),
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(s(topic.clone())))
                                .with_partitions(vec![*p]),
                        ),
                    }
                }
                DescribedState::default()
                    .with_transactional_id(id.clone())
                    .with_transaction_state(s(t.state.name()))
                    .with_transaction_timeout_ms(t.timeout_ms)
                    .with_transaction_start_time_ms(t.start_ms)
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_producer_epoch(t.producer_epoch)
                    .with_topics(topics)
            }
        };
        states.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: state and producer-id filters, v1 duration filter (running longer than
/// the given ms), v2 transactional-id pattern (a regex matching the whole id, as Kafka).
pub async fn list_transactions(
    broker: &Broker,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for f in &req.state_filters {
        match TxnState::from_name(f.as_str()) {
            Some(st) => states.push(st),
            None => unknown.push(f.clone()),
        }
    }
    let pattern = match req
        .transactional_id_pattern
        .as_ref()
        .filter(|_| version >= 2)
    {
        Some(p) if !p.is_empty() => match regex::Regex::new(&format!("^(?:{})$", p.as_str())) {
            Ok(re) => Some(re),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code())
            }
        },
        _ => None,
    };
    let now = now_ms();
    // Each broker lists the transactions it coordinates (as Kafka's); a node that coordinates
    // none answers an empty list, one that is loading COORDINATOR_LOAD_IN_PROGRESS.
    let all = match broker.txn.list().await {
        Ok(all) => all,
        Err(ResponseError::CoordinatorLoadInProgress) => {
            return ListTransactionsResponse::default()
                .with_error_code(ResponseError::CoordinatorLoadInProgress.code())
                .with_unknown_state_filters(unknown)
        }
        Err(_) => Vec::new(),
    };
    let listed = all
        .into_iter()
        .filter(|t| states.is_empty() || states.contains(&t.state))
        .filter(|t| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.contains(&ProducerId(t.producer_id))
        })
        .filter(|t| {
            version < 1
                || req.duration_filter < 0
                || (t.start_ms >= 0 && now.saturating_sub(t.start_ms) > req.duration_filter)
        })
        .filter(|t| {
            pattern
                .as_ref()
                .is_none_or(|re| re.is_match(&t.transactional_id))
        })
        .map(|t| {
            ListedState::default()
                .with_transactional_id(TransactionalId(s(t.transactional_id.clone())))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(s(t.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
