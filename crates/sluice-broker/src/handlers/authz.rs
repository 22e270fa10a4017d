//! The ACL checks made before a request reaches its handler (Kafka's per-API table, docs/
//! SECURITY.md "What each request needs"): requests whose cluster, group or transactional id
//! the principal may not use are answered here with Kafka's error code, whole. Checks of the
//! topics inside a request are the handlers' (a request may name some topics it may use and
//! some it may not: Kafka answers each on its own).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_acl::{AclOperation as Op, ResourceType as Rt, CLUSTER_NAME};

use super::RequestContext;
use crate::broker::Broker;
use crate::security::authz::{authorize, authorize_any};

const CLUSTER: i16 = 31; // CLUSTER_AUTHORIZATION_FAILED
const GROUP: i16 = 30; // GROUP_AUTHORIZATION_FAILED
const TXN_ID: i16 = 53; // TRANSACTIONAL_ID_AUTHORIZATION_FAILED

fn msg(code: i16) -> Option<StrBytes> {
    let text = match code {
        CLUSTER => "Cluster authorization failed.",
        GROUP => "Group authorization failed.",
        TXN_ID => "Transactional Id authorization failed.",
        _ => "Authorization failed.",
    };
    Some(StrBytes::from_static_str(text))
}

/// The answer to a request refused whole, or None when it may go on to its handler.
pub fn gate(broker: &Broker, ctx: &RequestContext, request: &RequestKind) -> Option<ResponseKind> {
    if !broker.security.authorizer.enabled {
        return None;
    }
    use RequestKind as Rq;
    use ResponseKind as Rs;
    let cluster = |op| authorize(broker, ctx, op, Rt::Cluster, CLUSTER_NAME);
    let group = |op, id: &str| authorize(broker, ctx, op, Rt::Group, id);
    let txn = |id: &str| authorize(broker, ctx, Op::Write, Rt::TransactionalId, id);
    Some(match request {
        // ---- the cluster ----
        Rq::DescribeQuorum(_) if !cluster(Op::Describe) => Rs::DescribeQuorum(
            kafka_protocol::messages::DescribeQuorumResponse::default()
                .with_error_code(CLUSTER)
                .with_error_message(msg(CLUSTER)),
        ),
        Rq::AddRaftVoter(_) if !cluster(Op::Alter) => Rs::AddRaftVoter(
            kafka_protocol::messages::AddRaftVoterResponse::default()
                .with_error_code(CLUSTER)
                .with_error_message(msg(CLUSTER)),
        ),
        Rq::RemoveRaftVoter(_) if !cluster(Op::Alter) => Rs::RemoveRaftVoter(
            kafka_protocol::messages::RemoveRaftVoterResponse::default()
                .with_error_code(CLUSTER)
                .with_error_message(msg(CLUSTER)),
        ),
        Rq::UnregisterBroker(_) if !cluster(Op::Alter) => Rs::UnregisterBroker(
            kafka_protocol::messages::UnregisterBrokerResponse::default()
                .with_error_code(CLUSTER)
                .with_error_message(msg(CLUSTER)),
        ),
        Rq::ElectLeaders(_) if !cluster(Op::Alter) => Rs::ElectLeaders(
            kafka_protocol::messages::ElectLeadersResponse::default().with_error_code(CLUSTER),
        ),
        Rq::AlterPartitionReassignments(_) if !cluster(Op::Alter) => {
            Rs::AlterPartitionReassignments(
                kafka_protocol::messages::AlterPartitionReassignmentsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(msg(CLUSTER)),
            )
        }
        Rq::ListPartitionReassignments(_) if !cluster(Op::Describe) => {
            Rs::ListPartitionReassignments(
                kafka_protocol::messages::ListPartitionReassignmentsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(msg(CLUSTER)),
            )
        }
        Rq::WriteTxnMarkers(r) if !cluster(Op::ClusterAction) => {
            use kafka_protocol::messages::write_txn_markers_response::*;
            Rs::WriteTxnMarkers(
                kafka_protocol::messages::WriteTxnMarkersResponse::default().with_markers(
                    r.markers
                        .iter()
                        .map(|m| {
                            WritableTxnMarkerResult::default()
                                .with_producer_id(m.producer_id)
                                .with_topics(
                                    m.topics
                                        .iter()
                                        .map(|t| {
                                            WritableTxnMarkerTopicResult::default()
                                                .with_name(t.name.clone())
                                                .with_partitions(
                                                    t.partition_indexes
                                                        .iter()
                                                        .map(|p| {
                                                            WritableTxnMarkerPartitionResult::default()
                                                                .with_partition_index(*p)
                                                                .with_error_code(CLUSTER)
                                                        })
                                                        .collect(),
                                                )
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        // Kafka answers an empty list rather than an error to a principal without DESCRIBE
        // on the cluster (v0) or with the error (v1+).
        Rq::DescribeLogDirs(_) if !cluster(Op::Describe) => Rs::DescribeLogDirs(
            kafka_protocol::messages::DescribeLogDirsResponse::default().with_error_code(CLUSTER),
        ),
        Rq::DescribeClientQuotas(_) if !cluster(Op::DescribeConfigs) => Rs::DescribeClientQuotas(
            kafka_protocol::messages::DescribeClientQuotasResponse::default()
                .with_error_code(CLUSTER)
                .with_error_message(msg(CLUSTER)),
        ),
        Rq::AlterClientQuotas(r) if !cluster(Op::AlterConfigs) => {
            use kafka_protocol::messages::alter_client_quotas_response::*;
            Rs::AlterClientQuotas(
                kafka_protocol::messages::AlterClientQuotasResponse::default().with_entries(
                    r.entries
                        .iter()
                        .map(|e| {
                            EntryData::default()
                                .with_error_code(CLUSTER)
                                .with_error_message(msg(CLUSTER))
                                .with_entity(
                                    e.entity
                                        .iter()
                                        .map(|d| {
                                            EntityData::default()
                                                .with_entity_type(d.entity_type.clone())
                                                .with_entity_name(d.entity_name.clone())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        Rq::DescribeUserScramCredentials(_) if !cluster(Op::Describe) => {
            Rs::DescribeUserScramCredentials(
                kafka_protocol::messages::DescribeUserScramCredentialsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(msg(CLUSTER)),
            )
        }
        Rq::AlterUserScramCredentials(r) if !cluster(Op::Alter) => {
            use kafka_protocol::messages::alter_user_scram_credentials_response::*;
            let mut users: Vec<&StrBytes> = r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name))
                .collect();
            users.sort();
            users.dedup();
            Rs::AlterUserScramCredentials(
                kafka_protocol::messages::AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .into_iter()
                        .map(|u| {
                            AlterUserScramCredentialsResult::default()
                                .with_user(u.clone())
                                .with_error_code(CLUSTER)
                                .with_error_message(msg(CLUSTER))
                        })
                        .collect(),
                ),
            )
        }
        // ---- one group ----
        Rq::JoinGroup(r) if !group(Op::Read, &r.group_id) => Rs::JoinGroup(
            kafka_protocol::messages::JoinGroupResponse::default()
                .with_error_code(GROUP)
                .with_generation_id(-1),
        ),
        Rq::SyncGroup(r) if !group(Op::Read, &r.group_id) => Rs::SyncGroup(
            kafka_protocol::messages::SyncGroupResponse::default().with_error_code(GROUP),
        ),
        Rq::Heartbeat(r) if !group(Op::Read, &r.group_id) => Rs::Heartbeat(
            kafka_protocol::messages::HeartbeatResponse::default().with_error_code(GROUP),
        ),
        Rq::LeaveGroup(r) if !group(Op::Read, &r.group_id) => Rs::LeaveGroup(
            kafka_protocol::messages::LeaveGroupResponse::default().with_error_code(GROUP),
        ),
        Rq::ConsumerGroupHeartbeat(r) if !group(Op::Read, &r.group_id) => {
            Rs::ConsumerGroupHeartbeat(
                kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(GROUP)
                    .with_error_message(msg(GROUP)),
            )
        }
        Rq::ShareGroupHeartbeat(r) if !group(Op::Read, &r.group_id) => Rs::ShareGroupHeartbeat(
            kafka_protocol::messages::ShareGroupHeartbeatResponse::default()
                .with_error_code(GROUP)
                .with_error_message(msg(GROUP)),
        ),
        Rq::OffsetCommit(r) if !group(Op::Read, &r.group_id) => {
            use kafka_protocol::messages::offset_commit_response::*;
            Rs::OffsetCommit(
                kafka_protocol::messages::OffsetCommitResponse::default().with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            OffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            OffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(GROUP)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        Rq::OffsetDelete(r) if !group(Op::Delete, &r.group_id) => Rs::OffsetDelete(
            kafka_protocol::messages::OffsetDeleteResponse::default().with_error_code(GROUP),
        ),
        Rq::ShareFetch(r) if !group(Op::Read, &r.group_id.clone().unwrap_or_default()) => {
            Rs::ShareFetch(
                kafka_protocol::messages::ShareFetchResponse::default()
                    .with_error_code(GROUP)
                    .with_error_message(msg(GROUP)),
            )
        }
        Rq::ShareAcknowledge(r) if !group(Op::Read, &r.group_id.clone().unwrap_or_default()) => {
            Rs::ShareAcknowledge(
                kafka_protocol::messages::ShareAcknowledgeResponse::default()
                    .with_error_code(GROUP)
                    .with_error_message(msg(GROUP)),
            )
        }
        Rq::AlterShareGroupOffsets(r) if !group(Op::Read, &r.group_id) => {
            Rs::AlterShareGroupOffsets(
                kafka_protocol::messages::AlterShareGroupOffsetsResponse::default()
                    .with_error_code(GROUP)
                    .with_error_message(msg(GROUP)),
            )
        }
        Rq::DeleteShareGroupOffsets(r) if !group(Op::Delete, &r.group_id) => {
            Rs::DeleteShareGroupOffsets(
                kafka_protocol::messages::DeleteShareGroupOffsetsResponse::default()
                    .with_error_code(GROUP)
                    .with_error_message(msg(GROUP)),
            )
        }
        // ---- transactions ----
        Rq::InitProducerId(r) => match &r.transactional_id {
            Some(id) if !txn(id) => Rs::InitProducerId(
                kafka_protocol::messages::InitProducerIdResponse::default()
                    .with_error_code(TXN_ID)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ),
            // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some
            // topic (Kafka 2.8+).
            None if !cluster(Op::IdempotentWrite)
                && !authorize_any(broker, ctx, Op::Write, Rt::Topic) =>
            {
                Rs::InitProducerId(
                    kafka_protocol::messages::InitProducerIdResponse::default()
                        .with_error_code(CLUSTER)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                )
            }
            _ => return None,
        },
        Rq::EndTxn(r) if !txn(&r.transactional_id) => Rs::EndTxn(
            kafka_protocol::messages::EndTxnResponse::default()
                .with_error_code(TXN_ID)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
        Rq::AddOffsetsToTxn(r) if !txn(&r.transactional_id) => Rs::AddOffsetsToTxn(
            kafka_protocol::messages::AddOffsetsToTxnResponse::default().with_error_code(TXN_ID),
        ),
        Rq::AddOffsetsToTxn(r) if !group(Op::Read, &r.group_id) => Rs::AddOffsetsToTxn(
            kafka_protocol::messages::AddOffsetsToTxnResponse::default().with_error_code(GROUP),
        ),
        Rq::TxnOffsetCommit(r) if !txn(&r.transactional_id) || !group(Op::Read, &r.group_id) => {
            use kafka_protocol::messages::txn_offset_commit_response::*;
            let code = if txn(&r.transactional_id) { GROUP } else { TXN_ID };
            Rs::TxnOffsetCommit(
                kafka_protocol::messages::TxnOffsetCommitResponse::default().with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            TxnOffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            TxnOffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        _ => return None,
    })
}

/// Splits `items` by whether the principal may do `op` on the topic each names: the allowed
/// go on to the handler, the denied are answered TOPIC_AUTHORIZATION_FAILED by the caller.
pub fn split_topics<T>(
    broker: &Broker,
    ctx: &RequestContext,
    op: Op,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> (Vec<T>, Vec<T>) {
    if !broker.security.authorizer.enabled {
        return (items, Vec::new());
    }
    items
        .into_iter()
        .partition(|t| authorize(broker, ctx, op, Rt::Topic, name(t)))
}

/// TOPIC_AUTHORIZATION_FAILED.
pub fn topic_denied() -> i16 {
    ResponseError::TopicAuthorizationFailed.code()
}
