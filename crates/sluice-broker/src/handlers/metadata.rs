//! Metadata (with auto topic creation), DescribeCluster and DescribeTopicPartitions.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_topic_partitions_response::{
    DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use std::sync::Arc;
use uuid::Uuid;

use super::s;
use crate::broker::{now_ms, Broker};
use crate::metadata::Topic;
use crate::security::authz::{authorize, authorized_operations, permits};
use crate::topic_config::TopicConfigs;
use sluice_acl::{AclOperation, ResourceType, CLUSTER_NAME};

/// Kafka's "authorized operations not requested" marker.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// Whether the principal may DESCRIBE a topic it names (a refusal is audited).
fn may_describe(broker: &Broker, ctx: &super::RequestContext, name: &str) -> bool {
    authorize(
        broker,
        ctx,
        AclOperation::Describe,
        ResourceType::Topic,
        name,
    )
}

/// Every topic the principal may DESCRIBE (all-topics requests leave the others out: Kafka
/// does not disclose them).
fn describable_topics(broker: &Broker, ctx: &super::RequestContext) -> Vec<Arc<Topic>> {
    broker
        .metadata
        .topics()
        .into_iter()
        .filter(|t| {
            permits(
                broker,
                ctx,
                AclOperation::Describe,
                ResourceType::Topic,
                &t.name,
            )
        })
        .collect()
}

/// The principal's authorized operations on a topic (Kafka's bit field), or the "not
/// requested" marker.
fn topic_ops(broker: &Broker, ctx: &super::RequestContext, name: &str, requested: bool) -> i32 {
    if requested {
        authorized_operations(broker, ctx, ResourceType::Topic, name)
    } else {
        OPS_NOT_REQUESTED
    }
}

/// One partition as the metadata image has it, as clients are told.
pub struct PartitionView {
    pub error_code: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// The partition `index` of `topic` from the image: leader -1 with LEADER_NOT_AVAILABLE
/// when it has none; this node never names itself leader while it is fenced or behind its
/// own registration; offline replicas are those not registered and unfenced.
pub fn partition_view(broker: &Broker, topic: &Topic, index: i32) -> PartitionView {
    let cluster = &broker.metadata.cluster;
    let me = broker.config.node_id;
    let live_here = cluster.is_live();
    cluster
        .state
        .read(|img| match img.partition(&topic.id, index) {
            Some(p) => {
                let mut leader = p.leader;
                if leader == me && !live_here {
                    leader = -1;
                }
                PartitionView {
                    error_code: if leader < 0 {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    },
                    leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    offline: p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| img.broker(*r).is_none_or(|b| b.fenced))
                        .collect(),
                }
            }
            None => PartitionView {
                error_code: ResponseError::LeaderNotAvailable.code(),
                leader: -1,
                leader_epoch: -1,
                replicas: vec![],
                isr: vec![],
                offline: vec![],
            },
        })
}

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

/// The brokers clients are told about: every registered, unfenced broker (this node alone
/// before it joined, so a client always has somewhere to go).
///
/// Each broker's address is its endpoint on `listener`, the listener the request came in on
/// (Kafka's rule: a client on the SASL_SSL listener is sent to the other brokers' SASL_SSL
/// listeners).
pub fn live_brokers(broker: &Broker, listener: &str) -> Vec<(i32, String, i32, Option<String>)> {
    let mut out: Vec<_> = broker.metadata.cluster.state.read(|img| {
        img.brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let (host, port) = b.endpoint(listener)?;
                Some((b.node_id, host.to_string(), port, b.rack.clone()))
            })
            .collect()
    });
    if out.is_empty() {
        let (host, port) = broker.advertised(listener);
        out.push((
            broker.config.node_id,
            host,
            port,
            broker.config.rack.clone(),
        ));
    }
    out
}

/// The controller id clients see: the quorum leader (this node while unknown).
fn controller_id(broker: &Broker) -> BrokerId {
    BrokerId(
        broker
            .metadata
            .cluster
            .controller_id()
            .unwrap_or(broker.config.node_id),
    )
}

fn describe_topic(broker: &Broker, topic: &Topic, ops: i32) -> MetadataResponseTopic {
    let partitions = (0..topic.partition_count)
        .map(|p| {
            let v = partition_view(broker, topic, p);
            MetadataResponsePartition::default()
                .with_error_code(v.error_code)
                .with_partition_index(p)
                .with_leader_id(BrokerId(v.leader))
                .with_leader_epoch(v.leader_epoch)
                .with_replica_nodes(ids(&v.replicas))
                .with_isr_nodes(ids(&v.isr))
                .with_offline_replicas(ids(&v.offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(crate::coordinator::is_internal(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(ops)
}

fn error_topic(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(s(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

pub async fn metadata(
    broker: &Broker,
    req: MetadataRequest,
    ctx: &super::RequestContext,
) -> MetadataResponse {
    let version = ctx.version;
    let with_ops = req.include_topic_authorized_operations;
    // v0 asks for all topics with an empty list; v1+ with null.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    // Before v4 there is no flag and Kafka auto-creates when the broker allows it.
    let may_create =
        broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let ops = |name: &str| topic_ops(broker, ctx, name, with_ops);
    let topics = match requested {
        // Kafka does not disclose topics the principal may not DESCRIBE: they are left out.
        None => describable_topics(broker, ctx)
            .iter()
            .map(|t| describe_topic(broker, t, ops(&t.name)))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let Some(name) = t.name.map(|n| n.0.to_string()) else {
                    // By topic id (v10+): ids are not sensitive, names are.
                    out.push(match broker.metadata.topic_by_id(t.topic_id) {
                        Some(topic) if may_describe(broker, ctx, &topic.name) => {
                            describe_topic(broker, &topic, ops(&topic.name))
                        }
                        Some(_) => error_topic(
                            None,
                            t.topic_id,
                            ResponseError::TopicAuthorizationFailed.code(),
                        ),
                        None => error_topic(None, t.topic_id, ResponseError::UnknownTopicId.code()),
                    });
                    continue;
                };
                // Named topics the principal may not DESCRIBE are refused whether they exist
                // or not.
                if !may_describe(broker, ctx, &name) {
                    out.push(error_topic(
                        Some(name),
                        Uuid::nil(),
                        ResponseError::TopicAuthorizationFailed.code(),
                    ));
                    continue;
                }
                if let Some(topic) = broker.metadata.topic(&name) {
                    out.push(describe_topic(broker, &topic, ops(&name)));
                    continue;
                }
                if let Err(e) = crate::metadata::validate_topic_name(&name) {
                    out.push(error_topic(Some(name), Uuid::nil(), e.code));
                    continue;
                }
                if !may_create {
                    out.push(error_topic(
                        Some(name),
                        Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition.code(),
                    ));
                    continue;
                }
                // Auto-creation needs CREATE on the cluster or on the topic.
                if !permits(
                    broker,
                    ctx,
                    AclOperation::Create,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                ) && !authorize(
                    broker,
                    ctx,
                    AclOperation::Create,
                    ResourceType::Topic,
                    &name,
                ) {
                    out.push(error_topic(
                        Some(name),
                        Uuid::nil(),
                        ResponseError::TopicAuthorizationFailed.code(),
                    ));
                    continue;
                }
                let created = broker
                    .metadata
                    .create_topic(
                        &name,
                        broker.config.default_partitions,
                        TopicConfigs::default(),
                        false,
                        now_ms(),
                    )
                    .await;
                match created {
                    Ok(topic) => {
                        broker
                            .metrics
                            .partitions
                            .set(broker.metadata.partition_count() as i64);
                        out.push(describe_topic(broker, &topic, ops(&name)));
                    }
                    // Lost a race with another creator: describe the winner's topic.
                    Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                        match broker.metadata.topic(&name) {
                            Some(topic) => out.push(describe_topic(broker, &topic, ops(&name))),
                            None => out.push(error_topic(
                                Some(name),
                                Uuid::nil(),
                                ResponseError::LeaderNotAvailable.code(),
                            )),
                        }
                    }
                    Err(e) => out.push(error_topic(Some(name), Uuid::nil(), e.code)),
                }
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(
            live_brokers(broker, &ctx.listener)
                .into_iter()
                .map(|(id, host, port, rack)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(s(host))
                        .with_port(port)
                        .with_rack(rack.map(s))
                })
                .collect(),
        )
        .with_cluster_id(Some(s(broker.metadata.cluster.cluster_id())))
        .with_controller_id(controller_id(broker))
        .with_topics(topics)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            authorized_operations(broker, ctx, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            OPS_NOT_REQUESTED
        })
}

pub fn describe_cluster(
    broker: &Broker,
    req: DescribeClusterRequest,
    ctx: &super::RequestContext,
) -> DescribeClusterResponse {
    let listener: &str = &ctx.listener;
    DescribeClusterResponse::default()
        .with_cluster_id(s(broker.metadata.cluster.cluster_id()))
        .with_controller_id(controller_id(broker))
        .with_endpoint_type(req.endpoint_type)
        .with_brokers(
            live_brokers(broker, listener)
                .into_iter()
                .map(|(id, host, port, rack)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(s(host))
                        .with_port(port)
                        .with_rack(rack.map(s))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            authorized_operations(broker, ctx, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            OPS_NOT_REQUESTED
        })
}

pub fn describe_topic_partitions(
    broker: &Broker,
    req: DescribeTopicPartitionsRequest,
    ctx: &super::RequestContext,
) -> DescribeTopicPartitionsResponse {
    let limit = req.response_partition_limit.clamp(1, 2000) as usize;
    let mut names: Vec<String> = if req.topics.is_empty() {
        describable_topics(broker, ctx)
            .iter()
            .map(|t| t.name.clone())
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    let mut budget = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if let Some(start) = &start_topic {
            if &name < start {
                continue;
            }
        }
        if !may_describe(broker, ctx, &name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_name(Some(TopicName(s(name))))
                    .with_topic_authorized_operations(OPS_NOT_REQUESTED),
            );
            continue;
        }
        let Some(topic) = broker.metadata.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(s(name))))
                    .with_topic_authorized_operations(OPS_NOT_REQUESTED),
            );
            continue;
        };
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for p in (0..topic.partition_count).skip(first.max(0) as usize) {
            if budget == 0 {
                next_cursor = Some(
                    kafka_protocol::messages::describe_topic_partitions_response::Cursor::default()
                        .with_topic_name(TopicName(s(name.clone())))
                        .with_partition_index(p),
                );
                break;
            }
            budget -= 1;
            let v = partition_view(broker, &topic, p);
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(v.error_code)
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(v.leader))
                    .with_leader_epoch(v.leader_epoch)
                    .with_replica_nodes(ids(&v.replicas))
                    .with_isr_nodes(ids(&v.isr))
                    .with_offline_replicas(ids(&v.offline))
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![])),
            );
        }
        let name_for_ops = name.clone();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_is_internal(crate::coordinator::is_internal(&name))
                .with_name(Some(TopicName(s(name))))
                .with_topic_id(topic.id)
                .with_partitions(partitions)
                .with_topic_authorized_operations(topic_ops(broker, ctx, &name_for_ops, true)),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
