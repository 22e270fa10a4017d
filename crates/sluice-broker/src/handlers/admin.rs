//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs (topics, and groups: the share-group settings).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};
use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use uuid::Uuid;

use super::s;
use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::group_config::{self, GroupConfigs};
use crate::topic_config::{self, TopicConfigs};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
/// librdkafka sends its own ResourceType enum value for GROUP (3) in config requests.
const RESOURCE_GROUP_LIBRDKAFKA: i8 = 3;
const SOURCE_GROUP: i8 = 8;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn invalid_config(message: String) -> KafkaError {
    KafkaError::new(ResponseError::InvalidConfig, message)
}

/// A topic's replication factor (its first partition's replica count; -1 when unknown).
fn replication_factor_of(broker: &Broker, topic: &crate::metadata::Topic) -> i16 {
    broker.metadata.cluster.state.read(|img| {
        img.partition(&topic.id, 0)
            .map_or(-1, |p| i16::try_from(p.replicas.len()).unwrap_or(-1))
    })
}

pub async fn create_topics(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = async {
            let (partitions, assignments) = if !t.assignments.is_empty() {
                // Kafka wants -1 beside an assignment; librdkafka sends the partition count
                // (its NewTopic keeps it), which Kafka brokers accept: so do we, when it
                // matches the assignment.
                if t.replication_factor != -1 {
                    return Err(KafkaError::new(
                        ResponseError::InvalidRequest,
                        "A manual partition assignment was specified, but replication factor \
                         was not set to -1.",
                    ));
                }
                if t.num_partitions != -1
                    && usize::try_from(t.num_partitions).ok() != Some(t.assignments.len())
                {
                    return Err(KafkaError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "{} partitions were specified, but {} manual partition assignments \
                             were given.",
                            t.num_partitions,
                            t.assignments.len()
                        ),
                    ));
                }
                let mut sorted: Vec<_> = t.assignments.iter().collect();
                sorted.sort_by_key(|a| a.partition_index);
                if sorted
                    .iter()
                    .enumerate()
                    .any(|(i, a)| a.partition_index != i as i32)
                {
                    return Err(KafkaError::new(
                        ResponseError::InvalidReplicaAssignment,
                        "the assignments must number the partitions 0, 1, 2, …",
                    ));
                }
                let lists: Vec<Vec<i32>> = sorted
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect();
                (lists.len() as i32, Some(lists))
            } else if t.num_partitions == -1 {
                (broker.config.default_partitions, None)
            } else {
                (t.num_partitions, None)
            };
            let rf = (t.replication_factor > 0).then_some(t.replication_factor);
            if t.replication_factor == 0 || t.replication_factor < -1 {
                return Err(KafkaError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "replication factor must be at least 1 (or -1 for the default), got {}",
                        t.replication_factor
                    ),
                ));
            }
            let configs = TopicConfigs::from_pairs(
                t.configs
                    .iter()
                    .map(|c| (c.name.as_str(), c.value.as_ref().map_or("", |v| v.as_str()))),
            )
            .map_err(invalid_config)?;
            broker
                .metadata
                .create_topic_with(
                    &name,
                    partitions,
                    rf,
                    assignments,
                    configs,
                    req.validate_only,
                    now_ms(),
                )
                .await
        }
        .await;
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(topic) => {
                let configs = (version >= 5).then(|| {
                    topic
                        .configs
                        .describe()
                        .into_iter()
                        .map(|c| {
                            CreatableTopicConfigs::default()
                                .with_name(s(c.name))
                                .with_value(Some(s(c.value)))
                                .with_config_source(if c.is_default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_TOPIC
                                })
                        })
                        .collect()
                });
                let count = if req.validate_only {
                    -1
                } else {
                    topic.partition_count
                };
                broker
                    .metrics
                    .partitions
                    .set(broker.metadata.partition_count() as i64);
                result
                    .with_topic_id(topic.id)
                    .with_num_partitions(count)
                    .with_replication_factor(replication_factor_of(broker, &topic))
                    .with_configs(configs)
            }
            Err(e) => result
                .with_error_code(e.code)
                .with_error_message(Some(s(e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id in `topics`; earlier versions list names.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = match name {
            Some(n) => Some(n),
            None => broker.metadata.topic_by_id(id).map(|t| t.name.clone()),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(s(n))))
            .with_topic_id(id);
        let Some(name) = name else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let now = now_ms();
        match broker.metadata.delete_topic(&name, now).await {
            Ok(topic_id) => {
                let share_keys: Vec<_> = broker
                    .share
                    .handles(None)
                    .iter()
                    .filter(|h| h.key.topic_id == topic_id)
                    .map(|h| h.key.clone())
                    .collect();
                if let Err(e) = broker.share.remove(&share_keys).await {
                    tracing::error!(topic = %name, error = %e, "could not delete share-group state of deleted topic");
                }
                if let Err(e) = broker.offsets.delete_topic(&name, now).await {
                    tracing::error!(topic = %name, error = %e, "could not delete committed offsets of deleted topic");
                }
                broker.metrics.forget_topic(&name);
                broker
                    .metrics
                    .partitions
                    .set(broker.metadata.partition_count() as i64);
                responses.push(result.with_topic_id(topic_id));
            }
            Err(e) => responses.push(
                result
                    .with_error_code(e.code)
                    .with_error_message(Some(s(e.message))),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let assignments = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                .collect::<Vec<_>>()
        });
        let outcome = broker
            .metadata
            .create_partitions_with(&name, t.count, assignments, req.validate_only, now_ms())
            .await;
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code)
                .with_error_message(Some(s(e.message))),
        });
    }
    broker
        .metrics
        .partitions
        .set(broker.metadata.partition_count() as i64);
    CreatePartitionsResponse::default().with_results(results)
}

/// Broker-level settings, read-only, as DescribeConfigs on the BROKER resource shows them.
fn broker_configs(broker: &Broker) -> Vec<(&'static str, String)> {
    let c = &broker.config;
    vec![
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        ("broker.id", c.node_id.to_string()),
        (
            "connections.max.idle.ms",
            c.idle_timeout.as_millis().to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            c.initial_rebalance_delay_ms.to_string(),
        ),
        ("log.dirs", c.data_dir.display().to_string()),
        (
            "log.cleaner.backoff.ms",
            c.log_cleaner_backoff.as_millis().to_string(),
        ),
        (
            "log.retention.check.interval.ms",
            c.retention_check_interval.as_millis().to_string(),
        ),
        ("max.connections", c.max_connections.to_string()),
        ("num.partitions", c.default_partitions.to_string()),
        ("sluice.flush", c.flush.to_string()),
        ("socket.request.max.bytes", c.max_request_bytes.to_string()),
    ]
}

pub fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |n: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n));
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                RESOURCE_TOPIC => match broker.metadata.topic(&name) {
                    Some(topic) => result.with_configs(
                        topic
                            .configs
                            .describe()
                            .into_iter()
                            .filter(|c| wanted(c.name))
                            .map(|c| {
                                DescribeConfigsResourceResult::default()
                                    .with_name(s(c.name))
                                    .with_value(Some(s(c.value)))
                                    .with_config_source(if c.is_default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_TOPIC
                                    })
                            })
                            .collect(),
                    ),
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(s(format!("topic {name:?} does not exist")))),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    result.with_configs(
                        broker_configs(broker)
                            .into_iter()
                            .filter(|(n, _)| wanted(n))
                            .map(|(n, v)| {
                                DescribeConfigsResourceResult::default()
                                    .with_name(s(n))
                                    .with_value(Some(s(v)))
                                    .with_read_only(true)
                                    .with_config_source(SOURCE_STATIC_BROKER)
                            })
                            .collect(),
                    )
                }
                RESOURCE_GROUP | RESOURCE_GROUP_LIBRDKAFKA => result.with_configs(
                    broker
                        .metadata
                        .group_configs(&name)
                        .describe(&name)
                        .into_iter()
                        .filter(|(n, _, _)| wanted(n))
                        .map(|(n, v, is_default)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(s(n))
                                .with_value(Some(s(v)))
                                .with_config_source(if is_default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_GROUP
                                })
                        })
                        .collect(),
                ),
                RESOURCE_BROKER => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "broker {name:?} is not this broker ({})",
                        broker.config.node_id
                    )))),
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "config resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies a full replacement (AlterConfigs) or a computed one (IncrementalAlterConfigs) to a
/// topic resource; other resource types are refused.
async fn alter_topic(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    compute: impl FnOnce(&TopicConfigs) -> Result<TopicConfigs, KafkaError>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    if resource_type != RESOURCE_TOPIC {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("altering config resource type {resource_type} is not supported; broker settings are static"),
        ));
    }
    let topic = broker
        .metadata
        .topic(name)
        .ok_or_else(|| crate::metadata::unknown_topic(name))?;
    let configs = compute(&topic.configs)?;
    broker
        .metadata
        .replace_configs(name, configs, validate_only, now_ms())
        .await
}

pub async fn alter_configs(broker: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = alter_topic(
            broker,
            r.resource_type,
            &name,
            |_| {
                TopicConfigs::from_pairs(
                    r.configs
                        .iter()
                        .filter_map(|c| c.value.as_ref().map(|v| (c.name.as_str(), v.as_str()))),
                )
                .map_err(invalid_config)
            },
            req.validate_only,
        )
        .await;
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(e.code)
                .with_error_message(Some(s(e.message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs on one resource: SET, DELETE, APPEND and SUBTRACT applied to the
/// values set on it (`effective` gives a value with its default, for APPEND/SUBTRACT).
fn incremental(
    current: &BTreeMap<String, String>,
    configs: &[AlterableConfig],
    validate: impl Fn(&str, &str) -> Result<(), String>,
    effective: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, KafkaError> {
    let mut map = current.clone();
    for c in configs {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        match c.config_operation {
            0 => {
                validate(&key, &value).map_err(invalid_config)?;
                map.insert(key, value);
            }
            1 => {
                map.remove(&key);
            }
            // APPEND / SUBTRACT on list values.
            2 | 3 => {
                let existing = effective(&key)
                    .ok_or_else(|| invalid_config(format!("unknown config {key:?}")))?;
                let mut items: Vec<String> = existing
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect();
                for v in value.split(',').filter(|x| !x.is_empty()) {
                    if c.config_operation == 2 && !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    } else if c.config_operation == 3 {
                        items.retain(|i| i != v);
                    }
                }
                let joined = items.join(",");
                validate(&key, &joined).map_err(invalid_config)?;
                map.insert(key, joined);
            }
            op => {
                return Err(KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {op}"),
                ))
            }
        }
    }
    Ok(map)
}

/// IncrementalAlterConfigs on a GROUP resource (share-group settings).
async fn alter_group(
    broker: &Broker,
    group: &str,
    configs: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), KafkaError> {
    if group.is_empty() {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            "group name is empty",
        ));
    }
    let current = broker.metadata.group_configs(group);
    let map = incremental(&current.0, configs, group_config::validate, |k| {
        current.get(group, k)
    })?;
    if validate_only {
        return Ok(());
    }
    broker
        .metadata
        .replace_group_configs(group, GroupConfigs(map), now_ms())
        .await
}

pub async fn incremental_alter_configs(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = if matches!(r.resource_type, RESOURCE_GROUP | RESOURCE_GROUP_LIBRDKAFKA) {
            alter_group(broker, &name, &r.configs, req.validate_only).await
        } else {
            alter_topic(
                broker,
                r.resource_type,
                &name,
                |current| {
                    incremental(&current.0, &r.configs, topic_config::validate, |k| {
                        current.get(k)
                    })
                    .map(TopicConfigs)
                },
                req.validate_only,
            )
            .await
        };
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(e.code)
                .with_error_message(Some(s(e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// ElectLeaders (43): preferred or unclean elections through the controller.
pub async fn elect_leaders(
    broker: &Broker,
    req: kafka_protocol::messages::ElectLeadersRequest,
) -> kafka_protocol::messages::ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };
    let partitions: Option<Vec<(String, i32)>> = req.topic_partitions.map(|tps| {
        tps.iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let outcome = broker
        .metadata
        .cluster
        .request(crate::cluster::CtrlRequest::ElectLeaders {
            election_type: req.election_type,
            partitions,
        })
        .await;
    let resp = kafka_protocol::messages::ElectLeadersResponse::default();
    match outcome {
        Ok((index, crate::cluster::CtrlReply::PartitionResults(results))) => {
            broker
                .metadata
                .cluster
                .wait_applied(index, std::time::Duration::from_secs(10))
                .await;
            let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> =
                Default::default();
            for (topic, partition, code, message) in results {
                by_topic.entry(topic).or_default().push(
                    PartitionResult::default()
                        .with_partition_id(partition)
                        .with_error_code(code)
                        .with_error_message((code != 0).then(|| s(message))),
                );
            }
            resp.with_replica_election_results(
                by_topic
                    .into_iter()
                    .map(|(t, r)| {
                        ReplicaElectionResult::default()
                            .with_topic(kafka_protocol::messages::TopicName(s(t)))
                            .with_partition_result(r)
                    })
                    .collect(),
            )
        }
        Ok(_) => resp.with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => resp.with_error_code(e.code),
    }
}

/// AlterPartitionReassignments (45): start or cancel replica moves through the controller.
pub async fn alter_partition_reassignments(
    broker: &Broker,
    req: kafka_protocol::messages::AlterPartitionReassignmentsRequest,
    version: i16,
) -> kafka_protocol::messages::AlterPartitionReassignmentsResponse {
    use kafka_protocol::messages::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    // v1+: refuse a target of another size unless the client allows it.
    let check_rf = version >= 1 && !req.allow_replication_factor_change;
    let mut moves = Vec::new();
    let mut refused: Vec<(String, i32, i16, String)> = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            if let (true, Some(target)) = (check_rf, &target) {
                let current = broker.metadata.cluster.state.read(|img| {
                    img.topic(&name)
                        .and_then(|t| t.partition(p.partition_index))
                        .map(|pi| pi.original_replicas().len())
                });
                if current.is_some_and(|n| n != target.len()) {
                    refused.push((
                        name.clone(),
                        p.partition_index,
                        ResponseError::InvalidReplicationFactor.code(),
                        "the target changes the replication factor (allowReplicationFactorChange is false)".into(),
                    ));
                    continue;
                }
            }
            moves.push((name.clone(), p.partition_index, target));
        }
    }
    let resp = kafka_protocol::messages::AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change);
    let mut results = refused;
    if !moves.is_empty() {
        match broker
            .metadata
            .cluster
            .request(crate::cluster::CtrlRequest::AlterReassignments { moves })
            .await
        {
            Ok((index, crate::cluster::CtrlReply::PartitionResults(r))) => {
                broker
                    .metadata
                    .cluster
                    .wait_applied(index, std::time::Duration::from_secs(10))
                    .await;
                results.extend(r);
            }
            Ok(_) => return resp.with_error_code(ResponseError::UnknownServerError.code()),
            Err(e) => {
                return resp
                    .with_error_code(e.code)
                    .with_error_message(Some(s(e.message)))
            }
        }
    }
    let mut by_topic: std::collections::BTreeMap<String, Vec<ReassignablePartitionResponse>> =
        Default::default();
    for (topic, partition, code, message) in results {
        by_topic.entry(topic).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(code)
                .with_error_message((code != 0).then(|| s(message))),
        );
    }
    resp.with_responses(
        by_topic
            .into_iter()
            .map(|(t, r)| {
                ReassignableTopicResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(s(t)))
                    .with_partitions(r)
            })
            .collect(),
    )
}

/// ListPartitionReassignments (46): the ongoing moves, from this node's image.
pub fn list_partition_reassignments(
    broker: &Broker,
    req: kafka_protocol::messages::ListPartitionReassignmentsRequest,
) -> kafka_protocol::messages::ListPartitionReassignmentsResponse {
    use kafka_protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    use kafka_protocol::messages::BrokerId;
    let filter: Option<Vec<(String, i32)>> = req.topics.map(|ts| {
        ts.iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|p| (t.name.0.to_string(), *p))
            })
            .collect()
    });
    let ongoing = broker.metadata.cluster.state.read(|img| {
        sluice_controller::Controller::new(Default::default(), img, 0, 0)
            .list_partition_reassignments(img, filter.as_deref())
    });
    let mut by_topic: std::collections::BTreeMap<String, Vec<OngoingPartitionReassignment>> =
        Default::default();
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    for r in ongoing {
        by_topic.entry(r.topic.clone()).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(r.partition)
                .with_replicas(ids(&r.replicas))
                .with_adding_replicas(ids(&r.adding_replicas))
                .with_removing_replicas(ids(&r.removing_replicas)),
        );
    }
    kafka_protocol::messages::ListPartitionReassignmentsResponse::default().with_topics(
        by_topic
            .into_iter()
            .map(|(t, p)| {
                OngoingTopicReassignment::default()
                    .with_name(kafka_protocol::messages::TopicName(s(t)))
                    .with_partitions(p)
            })
            .collect(),
    )
}
