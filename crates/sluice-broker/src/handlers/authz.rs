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
                kafka_protocol::messages::AlterUserScramCredentialsResponse::default()
                    .with_results(
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
        // A subscription names topics: each needs DESCRIBE (Kafka refuses the heartbeat).
        Rq::ConsumerGroupHeartbeat(r)
            if r.subscribed_topic_names
                .iter()
                .flatten()
                .any(|t| !authorize(broker, ctx, Op::Describe, Rt::Topic, t)) =>
        {
            Rs::ConsumerGroupHeartbeat(
                kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "Topic authorization failed for a subscribed topic.",
                    ))),
            )
        }
        Rq::ShareGroupHeartbeat(r)
            if r.subscribed_topic_names
                .iter()
                .flatten()
                .any(|t| !authorize(broker, ctx, Op::Describe, Rt::Topic, t)) =>
        {
            Rs::ShareGroupHeartbeat(
                kafka_protocol::messages::ShareGroupHeartbeatResponse::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "Topic authorization failed for a subscribed topic.",
                    ))),
            )
        }
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
        // OffsetFetch before v8 names one group (v8+ answer each group on its own: `restrict`).
        Rq::OffsetFetch(r) if r.groups.is_empty() && !group(Op::Describe, &r.group_id) => {
            Rs::OffsetFetch(super::groups::offset_fetch_error(r, ctx.version, GROUP))
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
        // FindCoordinator before v4 names one key; from v4 each key is answered on its own
        // (`withhold`).
        Rq::FindCoordinator(r)
            if r.coordinator_keys.is_empty()
                && !authorize(
                    broker,
                    ctx,
                    Op::Describe,
                    if r.key_type == 1 {
                        Rt::TransactionalId
                    } else {
                        Rt::Group
                    },
                    &r.key,
                ) =>
        {
            let code = if r.key_type == 1 { TXN_ID } else { GROUP };
            Rs::FindCoordinator(
                kafka_protocol::messages::FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_error_message(msg(code))
                    .with_node_id((-1).into())
                    .with_host(StrBytes::from_static_str(""))
                    .with_port(-1),
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
            let code = if txn(&r.transactional_id) {
                GROUP
            } else {
                TXN_ID
            };
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

/// Config resource types (DescribeConfigs, AlterConfigs): which ACL resource guards each.
fn config_resource(resource_type: i8, name: &str) -> (Rt, String) {
    match resource_type {
        2 => (Rt::Topic, name.to_string()),
        32 => (Rt::Group, name.to_string()),
        // BROKER (4), BROKER_LOGGER (8), CLIENT_METRICS (16): the cluster.
        _ => (Rt::Cluster, CLUSTER_NAME.to_string()),
    }
}

fn denied_code(rt: Rt) -> i16 {
    match rt {
        Rt::Topic => ResponseError::TopicAuthorizationFailed.code(),
        Rt::Group => GROUP,
        Rt::TransactionalId => TXN_ID,
        _ => CLUSTER,
    }
}

/// What the principal may see of a read-only answer: the handler answered everything asked;
/// here the parts about resources the principal may not DESCRIBE (or READ) are replaced by
/// the authorization error, or left out where Kafka leaves them out (listings). Explicitly named
/// resources that are refused are audited; filtered listings are not.
pub fn restrict(broker: &Broker, ctx: &RequestContext, response: &mut ResponseKind) {
    use crate::security::authz::{authorized_operations, permits};
    use ResponseKind as Rs;
    if !broker.security.authorizer.enabled {
        return;
    }
    let topic_ok = |op, name: &str| authorize(broker, ctx, op, Rt::Topic, name);
    let topic_denied = ResponseError::TopicAuthorizationFailed.code();
    match response {
        Rs::ListOffsets(r) => {
            for t in &mut r.topics {
                if !topic_ok(Op::Describe, &t.name) {
                    for p in &mut t.partitions {
                        p.error_code = topic_denied;
                        p.offset = -1;
                        p.timestamp = -1;
                        p.leader_epoch = -1;
                    }
                }
            }
        }
        Rs::OffsetForLeaderEpoch(r) => {
            for t in &mut r.topics {
                if !topic_ok(Op::Describe, &t.topic) {
                    for p in &mut t.partitions {
                        p.error_code = topic_denied;
                        p.end_offset = -1;
                        p.leader_epoch = -1;
                    }
                }
            }
        }
        Rs::DescribeProducers(r) => {
            for t in &mut r.topics {
                if !topic_ok(Op::Read, &t.name) {
                    for p in &mut t.partitions {
                        p.error_code = topic_denied;
                        p.active_producers.clear();
                    }
                }
            }
        }
        Rs::DescribeConfigs(r) => {
            for res in &mut r.results {
                let (rt, name) = config_resource(res.resource_type, &res.resource_name);
                if !authorize(broker, ctx, Op::DescribeConfigs, rt, &name) {
                    res.error_code = denied_code(rt);
                    res.error_message = None;
                    res.configs.clear();
                }
            }
        }
        Rs::OffsetFetch(r) => {
            // One group (v0-v7) or several (v8+); each needs DESCRIBE on the group, and each
            // topic DESCRIBE (left out of an all-topics answer, refused when named: the
            // handler answered the named ones in request order).
            let group_denied = |id: &str| !authorize(broker, ctx, Op::Describe, Rt::Group, id);
            for g in &mut r.groups {
                if group_denied(&g.group_id) {
                    g.error_code = GROUP;
                    g.topics.clear();
                    continue;
                }
                g.topics
                    .retain(|t| permits(broker, ctx, Op::Describe, Rt::Topic, &t.name));
            }
            r.topics
                .retain(|t| permits(broker, ctx, Op::Describe, Rt::Topic, &t.name));
        }
        Rs::DescribeGroups(r) => {
            for g in &mut r.groups {
                if !authorize(broker, ctx, Op::Describe, Rt::Group, &g.group_id) {
                    let id = g.group_id.clone();
                    *g = kafka_protocol::messages::describe_groups_response::DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(GROUP);
                } else if g.authorized_operations != i32::MIN {
                    g.authorized_operations =
                        authorized_operations(broker, ctx, Rt::Group, &g.group_id);
                }
            }
        }
        Rs::ConsumerGroupDescribe(r) => {
            for g in &mut r.groups {
                if !authorize(broker, ctx, Op::Describe, Rt::Group, &g.group_id) {
                    let id = g.group_id.clone();
                    *g = kafka_protocol::messages::consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(GROUP)
                        .with_error_message(msg(GROUP));
                } else if g.authorized_operations != i32::MIN {
                    g.authorized_operations =
                        authorized_operations(broker, ctx, Rt::Group, &g.group_id);
                }
            }
        }
        Rs::ShareGroupDescribe(r) => {
            for g in &mut r.groups {
                if !authorize(broker, ctx, Op::Describe, Rt::Group, &g.group_id) {
                    let id = g.group_id.clone();
                    *g = kafka_protocol::messages::share_group_describe_response::DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(GROUP)
                        .with_error_message(msg(GROUP));
                } else if g.authorized_operations != i32::MIN {
                    g.authorized_operations =
                        authorized_operations(broker, ctx, Rt::Group, &g.group_id);
                }
            }
        }
        Rs::DescribeShareGroupOffsets(r) => {
            for g in &mut r.groups {
                if !authorize(broker, ctx, Op::Describe, Rt::Group, &g.group_id) {
                    g.error_code = GROUP;
                    g.topics.clear();
                    continue;
                }
                g.topics
                    .retain(|t| permits(broker, ctx, Op::Describe, Rt::Topic, &t.topic_name));
            }
        }
        // Listings: DESCRIBE on the cluster shows everything; else what the principal may
        // DESCRIBE, without an error (Kafka's KIP-231).
        Rs::ListGroups(r) if !permits(broker, ctx, Op::Describe, Rt::Cluster, CLUSTER_NAME) => {
            r.groups
                .retain(|g| permits(broker, ctx, Op::Describe, Rt::Group, &g.group_id));
        }
        Rs::ListTransactions(r) => {
            r.transaction_states.retain(|t| {
                permits(
                    broker,
                    ctx,
                    Op::Describe,
                    Rt::TransactionalId,
                    &t.transactional_id,
                )
            });
        }
        Rs::DescribeTransactions(r) => {
            for t in &mut r.transaction_states {
                if !authorize(
                    broker,
                    ctx,
                    Op::Describe,
                    Rt::TransactionalId,
                    &t.transactional_id,
                ) {
                    let id = t.transactional_id.clone();
                    *t = kafka_protocol::messages::describe_transactions_response::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(TXN_ID);
                } else {
                    t.topics
                        .retain(|d| permits(broker, ctx, Op::Describe, Rt::Topic, &d.topic));
                }
            }
        }
        _ => {}
    }
}

/// Takes out of a writing request the parts naming resources the principal may not change,
/// to be answered with the authorization error by [`answer_denied`] once the handler answered
/// the rest.
pub enum Denied {
    None,
    /// Topic names (or other resources) refused, answered in the response's shape.
    Names(Vec<(String, i16)>),
    /// Topics refused with their partitions.
    Partitions(Vec<(String, Vec<i32>)>),
    /// Topics (by id) refused with their partitions.
    ById(Vec<(uuid::Uuid, Vec<i32>)>),
    /// DeleteTopics: topics refused by name, or by id (answered with the id alone: a topic's
    /// name is not disclosed to a principal that may not delete it).
    Topics(Vec<(Option<String>, uuid::Uuid)>),
    /// OffsetFetch: named topics refused, per group (None: the v0-v7 single group).
    GroupTopics(Vec<(Option<String>, String, Vec<i32>)>),
}

/// The name of a topic a share request names by id; None for an id that names no topic
/// (answered UNKNOWN_TOPIC_ID by the handler: ids are not sensitive).
fn name_of(broker: &Broker, id: uuid::Uuid) -> Option<String> {
    broker.metadata.topic_by_id(id).map(|t| t.name.clone())
}

pub fn withhold(broker: &Broker, ctx: &RequestContext, request: &mut RequestKind) -> Denied {
    use RequestKind as Rq;
    if !broker.security.authorizer.enabled {
        return Denied::None;
    }
    let topic = |op, name: &str| authorize(broker, ctx, op, Rt::Topic, name);
    let topic_denied = ResponseError::TopicAuthorizationFailed.code();
    match request {
        Rq::CreateTopics(r) => {
            // CREATE on the cluster allows every topic; else CREATE on each.
            if crate::security::authz::permits(broker, ctx, Op::Create, Rt::Cluster, CLUSTER_NAME) {
                return Denied::None;
            }
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Create, &t.name));
            r.topics = ok;
            Denied::Names(
                no.into_iter()
                    .map(|t| (t.name.to_string(), topic_denied))
                    .collect(),
            )
        }
        Rq::DeleteTopics(r) => {
            let mut no = Vec::new();
            r.topic_names.retain(|n| {
                let allowed = topic(Op::Delete, n);
                if !allowed {
                    no.push((Some(n.to_string()), uuid::Uuid::nil()));
                }
                allowed
            });
            r.topics.retain(|t| {
                let (name, by_id) = match &t.name {
                    Some(n) => (n.to_string(), false),
                    // By id: refused only if it names a topic (ids are not sensitive).
                    None => match broker.metadata.topic_by_id(t.topic_id) {
                        Some(topic) => (topic.name.clone(), true),
                        None => return true,
                    },
                };
                let allowed = topic(Op::Delete, &name);
                if !allowed {
                    no.push(((!by_id).then_some(name), t.topic_id));
                }
                allowed
            });
            Denied::Topics(no)
        }
        Rq::CreatePartitions(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Alter, &t.name));
            r.topics = ok;
            Denied::Names(
                no.into_iter()
                    .map(|t| (t.name.to_string(), topic_denied))
                    .collect(),
            )
        }
        Rq::DeleteRecords(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Delete, &t.name));
            r.topics = ok;
            Denied::Partitions(
                no.into_iter()
                    .map(|t| {
                        (
                            t.name.to_string(),
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect(),
            )
        }
        Rq::AlterConfigs(r) => {
            let mut no = Vec::new();
            r.resources.retain(|res| {
                let (rt, name) = config_resource(res.resource_type, &res.resource_name);
                let allowed = authorize(broker, ctx, Op::AlterConfigs, rt, &name);
                if !allowed {
                    no.push((
                        format!("{}:{}", res.resource_type, res.resource_name.as_str()),
                        denied_code(rt),
                    ));
                }
                allowed
            });
            Denied::Names(no)
        }
        Rq::IncrementalAlterConfigs(r) => {
            let mut no = Vec::new();
            r.resources.retain(|res| {
                let (rt, name) = config_resource(res.resource_type, &res.resource_name);
                let allowed = authorize(broker, ctx, Op::AlterConfigs, rt, &name);
                if !allowed {
                    no.push((
                        format!("{}:{}", res.resource_type, res.resource_name.as_str()),
                        denied_code(rt),
                    ));
                }
                allowed
            });
            Denied::Names(no)
        }
        Rq::DeleteGroups(r) => {
            let mut no = Vec::new();
            r.groups_names.retain(|g| {
                let allowed = authorize(broker, ctx, Op::Delete, Rt::Group, g);
                if !allowed {
                    no.push((g.to_string(), GROUP));
                }
                allowed
            });
            Denied::Names(no)
        }
        Rq::OffsetCommit(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| t.name.is_empty() || topic(Op::Read, &t.name));
            r.topics = ok;
            Denied::Partitions(
                no.into_iter()
                    .map(|t| {
                        (
                            t.name.to_string(),
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect(),
            )
        }
        Rq::TxnOffsetCommit(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Read, &t.name));
            r.topics = ok;
            Denied::Partitions(
                no.into_iter()
                    .map(|t| {
                        (
                            t.name.to_string(),
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect(),
            )
        }
        Rq::OffsetDelete(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Read, &t.name));
            r.topics = ok;
            Denied::Partitions(
                no.into_iter()
                    .map(|t| {
                        (
                            t.name.to_string(),
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect(),
            )
        }
        Rq::OffsetFetch(r) => {
            let mut no = Vec::new();
            if let Some(topics) = r.topics.as_mut() {
                topics.retain(|t| {
                    let allowed = topic(Op::Describe, &t.name);
                    if !allowed {
                        no.push((None, t.name.to_string(), t.partition_indexes.clone()));
                    }
                    allowed
                });
            }
            for g in &mut r.groups {
                let group_id = g.group_id.to_string();
                if let Some(topics) = g.topics.as_mut() {
                    topics.retain(|t| {
                        let allowed = topic(Op::Describe, &t.name);
                        if !allowed {
                            no.push((
                                Some(group_id.clone()),
                                t.name.to_string(),
                                t.partition_indexes.clone(),
                            ));
                        }
                        allowed
                    });
                }
            }
            Denied::GroupTopics(no)
        }
        // Share-group offset admin: READ on each topic, as Kafka checks it.
        Rq::AlterShareGroupOffsets(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Read, &t.topic_name));
            r.topics = ok;
            Denied::Partitions(
                no.into_iter()
                    .map(|t| {
                        (
                            t.topic_name.to_string(),
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect(),
            )
        }
        Rq::DeleteShareGroupOffsets(r) => {
            let (ok, no): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic(Op::Read, &t.topic_name));
            r.topics = ok;
            Denied::Names(
                no.into_iter()
                    .map(|t| (t.topic_name.to_string(), topic_denied))
                    .collect(),
            )
        }
        Rq::ShareFetch(r) => {
            let mut no = Vec::new();
            r.topics.retain(|t| {
                let allowed = name_of(broker, t.topic_id).is_none_or(|n| topic(Op::Read, &n));
                if !allowed {
                    no.push((
                        t.topic_id,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    ));
                }
                allowed
            });
            Denied::ById(no)
        }
        Rq::ShareAcknowledge(r) => {
            let mut no = Vec::new();
            r.topics.retain(|t| {
                let allowed = name_of(broker, t.topic_id).is_none_or(|n| topic(Op::Read, &n));
                if !allowed {
                    no.push((
                        t.topic_id,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    ));
                }
                allowed
            });
            Denied::ById(no)
        }
        Rq::FindCoordinator(r) if !r.coordinator_keys.is_empty() => {
            let rt = if r.key_type == 1 {
                Rt::TransactionalId
            } else {
                Rt::Group
            };
            let mut no = Vec::new();
            r.coordinator_keys.retain(|k| {
                let allowed = authorize(broker, ctx, Op::Describe, rt, k);
                if !allowed {
                    no.push((k.to_string(), denied_code(rt)));
                }
                allowed
            });
            Denied::Names(no)
        }
        Rq::AddPartitionsToTxn(r) => {
            // v0-v3: one transaction. Its id needs WRITE (else every partition is refused with
            // TRANSACTIONAL_ID_AUTHORIZATION_FAILED), each topic WRITE; with any topic refused
            // nothing is added (the rest: OPERATION_NOT_ATTEMPTED), as Kafka does.
            let id = r.v3_and_below_transactional_id.to_string();
            let all: Vec<(String, Vec<i32>)> = r
                .v3_and_below_topics
                .iter()
                .map(|t| (t.name.to_string(), t.partitions.clone()))
                .collect();
            if !all.is_empty() && !authorize(broker, ctx, Op::Write, Rt::TransactionalId, &id) {
                r.v3_and_below_topics.clear();
                return Denied::Names(
                    all.into_iter()
                        .flat_map(|(t, ps)| {
                            ps.into_iter()
                                .map(move |p| (format!("{t}\u{0}{p}"), TXN_ID))
                        })
                        .collect(),
                );
            }
            let refused: Vec<bool> = all.iter().map(|(t, _)| !topic(Op::Write, t)).collect();
            if refused.iter().any(|r| *r) {
                r.v3_and_below_topics.clear();
                let not_attempted = ResponseError::OperationNotAttempted.code();
                return Denied::Names(
                    all.into_iter()
                        .zip(refused)
                        .flat_map(|((t, ps), no)| {
                            let code = if no { topic_denied } else { not_attempted };
                            ps.into_iter().map(move |p| (format!("{t}\u{0}{p}"), code))
                        })
                        .collect(),
                );
            }
            Denied::None
        }
        _ => Denied::None,
    }
}

/// Puts the withheld parts back into the answer, refused.
pub fn answer_denied(denied: Denied, response: &mut ResponseKind) {
    use kafka_protocol::messages::TopicName;
    use ResponseKind as Rs;
    let s = |t: &str| StrBytes::from_string(t.to_string());
    match (denied, response) {
        (Denied::None, _) => {}
        (Denied::Names(no), Rs::CreateTopics(r)) => {
            for (name, code) in no {
                r.topics.push(
                    kafka_protocol::messages::create_topics_response::CreatableTopicResult::default()
                        .with_name(TopicName(s(&name)))
                        .with_error_code(code)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
            }
        }
        (Denied::Topics(no), Rs::DeleteTopics(r)) => {
            for (name, id) in no {
                r.responses.push(
                    kafka_protocol::messages::delete_topics_response::DeletableTopicResult::default()
                        .with_name(name.map(|n| TopicName(s(&n))))
                        .with_topic_id(id)
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                );
            }
        }
        (Denied::Names(no), Rs::CreatePartitions(r)) => {
            for (name, code) in no {
                r.results.push(
                    kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(TopicName(s(&name)))
                        .with_error_code(code),
                );
            }
        }
        (Denied::Names(no), Rs::AlterConfigs(r)) => {
            for (key, code) in no {
                let (rt, name) = key.split_once(':').unwrap_or(("0", key.as_str()));
                r.responses.push(
                    kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(rt.parse().unwrap_or(0))
                        .with_resource_name(s(name))
                        .with_error_code(code),
                );
            }
        }
        (Denied::Names(no), Rs::IncrementalAlterConfigs(r)) => {
            for (key, code) in no {
                let (rt, name) = key.split_once(':').unwrap_or(("0", key.as_str()));
                r.responses.push(
                    kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(rt.parse().unwrap_or(0))
                        .with_resource_name(s(name))
                        .with_error_code(code),
                );
            }
        }
        (Denied::Names(no), Rs::DeleteGroups(r)) => {
            for (name, code) in no {
                r.results.push(
                    kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(kafka_protocol::messages::GroupId(s(&name)))
                        .with_error_code(code),
                );
            }
        }
        (Denied::Names(no), Rs::AddPartitionsToTxn(r)) => {
            use kafka_protocol::messages::add_partitions_to_txn_response::*;
            let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
            for (key, code) in no {
                let (t, p) = key.split_once('\u{0}').unwrap_or((key.as_str(), "0"));
                let part = AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(p.parse().unwrap_or(0))
                    .with_partition_error_code(code);
                match topics.iter_mut().find(|x| x.name.as_str() == t) {
                    Some(x) => x.results_by_partition.push(part),
                    None => topics.push(
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(TopicName(s(t)))
                            .with_results_by_partition(vec![part]),
                    ),
                }
            }
            r.results_by_topic_v3_and_below = topics;
        }
        (Denied::Names(no), Rs::FindCoordinator(r)) => {
            for (key, code) in no {
                r.coordinators.push(
                    kafka_protocol::messages::find_coordinator_response::Coordinator::default()
                        .with_key(s(&key))
                        .with_node_id((-1).into())
                        .with_host(s(""))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(msg(code)),
                );
            }
        }
        (Denied::GroupTopics(no), Rs::OffsetFetch(r)) => {
            use kafka_protocol::messages::offset_fetch_response::*;
            let denied = ResponseError::TopicAuthorizationFailed.code();
            for (group, name, parts) in no {
                match group {
                    None => r.topics.push(
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(s(&name)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_error_code(denied)
                                    })
                                    .collect(),
                            ),
                    ),
                    Some(g) => {
                        if let Some(group) = r.groups.iter_mut().find(|x| x.group_id.as_str() == g)
                        {
                            group.topics.push(
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(&name)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(-1)
                                                    .with_error_code(denied)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }
            }
        }
        (Denied::ById(no), Rs::ShareFetch(r)) => {
            use kafka_protocol::messages::share_fetch_response::*;
            for (id, parts) in no {
                r.responses.push(
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(id)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (Denied::ById(no), Rs::ShareAcknowledge(r)) => {
            use kafka_protocol::messages::share_acknowledge_response::*;
            for (id, parts) in no {
                r.responses.push(
                    ShareAcknowledgeTopicResponse::default()
                        .with_topic_id(id)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (Denied::Partitions(no), Rs::DeleteRecords(r)) => {
            use kafka_protocol::messages::delete_records_response::*;
            for (name, parts) in no {
                r.topics.push(
                    DeleteRecordsTopicResult::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_low_watermark(-1)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (Denied::Partitions(no), Rs::OffsetCommit(r)) => {
            use kafka_protocol::messages::offset_commit_response::*;
            for (name, parts) in no {
                r.topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (Denied::Partitions(no), Rs::TxnOffsetCommit(r)) => {
            use kafka_protocol::messages::txn_offset_commit_response::*;
            for (name, parts) in no {
                r.topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (Denied::Partitions(no), Rs::AlterShareGroupOffsets(r)) => {
            use kafka_protocol::messages::alter_share_group_offsets_response::*;
            for (name, parts) in no {
                r.responses.push(
                    AlterShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    AlterShareGroupOffsetsResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (Denied::Names(no), Rs::DeleteShareGroupOffsets(r)) => {
            use kafka_protocol::messages::delete_share_group_offsets_response::*;
            for (name, code) in no {
                r.responses.push(
                    DeleteShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(s(&name)))
                        .with_error_code(code),
                );
            }
        }
        (Denied::Partitions(no), Rs::OffsetDelete(r)) => {
            use kafka_protocol::messages::offset_delete_response::*;
            for (name, parts) in no {
                r.topics.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
        }
        (_, _) => {}
    }
}
