//! Consumer groups on the wire: FindCoordinator, the classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), DescribeGroups, ListGroups, DeleteGroups, and committed offsets
//! (OffsetCommit, OffsetFetch, OffsetDelete). The state machine lives in `sluice-group`.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use sluice_group as group;

use super::{s, RequestContext};
use crate::broker::{now_ms, Broker};
use crate::groups::now_u64;
use crate::offsets::CommittedOffset;

const KEY_TYPE_GROUP: i8 = 0;
/// Transactional ids.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// How long FindCoordinator waits for this node's own coordinator to finish loading before
/// it answers (a fresh single node answers with a loaded coordinator, as before).
const FIND_COORDINATOR_LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn opt_s(v: Option<String>) -> Option<kafka_protocol::protocol::StrBytes> {
    v.map(s)
}

/// A coordinator as FindCoordinator names it: (node id, host, port), or the error.
type CoordinatorNode = Result<(i32, String, i32), (i16, String)>;

/// The Kafka endpoint of a live broker.
fn endpoint(broker: &Broker, node: i32, listener: &str) -> Option<(i32, String, i32)> {
    super::metadata::live_brokers(broker, listener)
        .into_iter()
        .find(|b| b.0 == node)
        .map(|(id, host, port, _)| (id, host, port))
}

fn not_available(message: impl Into<String>) -> (i16, String) {
    (
        ResponseError::CoordinatorNotAvailable.code(),
        message.into(),
    )
}

/// The leader of partition 0 of a coordinator's internal topic, creating the topic first if
/// needed (COORDINATOR_NOT_AVAILABLE while it has no leader, or cannot be created yet). When
/// this node leads it, a load that just started gets a moment to finish.
async fn internal_coordinator(
    broker: &Broker,
    topic_name: &str,
    is_loading: impl Fn() -> bool,
    listener: &str,
) -> CoordinatorNode {
    let topic = match broker
        .metadata
        .ensure_internal_topic(topic_name, now_ms())
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(not_available(format!(
                "the coordinator's topic {topic_name} cannot be created yet: too few live brokers"
            )))
        }
        Err(e) => {
            return Err(not_available(format!(
                "the coordinator's topic {topic_name}: {}",
                e.message
            )))
        }
    };
    let view = super::metadata::partition_view(broker, &topic, 0);
    if view.leader < 0 {
        return Err(not_available(format!("{topic_name}-0 has no leader")));
    }
    if view.leader == broker.config.node_id {
        let deadline = tokio::time::Instant::now() + FIND_COORDINATOR_LOAD_WAIT;
        while is_loading() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    endpoint(broker, view.leader, listener).ok_or_else(|| {
        not_available(format!(
            "the coordinator (node {}) is not live",
            view.leader
        ))
    })
}

/// Key type 0 (consumer, classic and share groups): the leader of `__consumer_offsets-0`.
async fn group_coordinator(broker: &Broker, listener: &str) -> CoordinatorNode {
    internal_coordinator(
        broker,
        crate::coordinator::GROUP_TOPIC,
        || broker.offsets.is_loading(),
        listener,
    )
    .await
}

/// Key type 1 (transactional ids): the leader of `__transaction_state-0`.
async fn transaction_coordinator(broker: &Broker, listener: &str) -> CoordinatorNode {
    internal_coordinator(
        broker,
        crate::coordinator::TXN_TOPIC,
        || broker.txn.is_loading(),
        listener,
    )
    .await
}

pub async fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    ctx: &RequestContext,
) -> FindCoordinatorResponse {
    let version = ctx.version;
    let node = match req.key_type {
        KEY_TYPE_GROUP => group_coordinator(broker, &ctx.listener).await,
        KEY_TYPE_TRANSACTION => transaction_coordinator(broker, &ctx.listener).await,
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "coordinator key type {other} is not supported yet (share groups use key type 0 here)"
            ),
        )),
    };
    let answer = |key: &str| -> Coordinator {
        let c = Coordinator::default().with_key(s(key));
        match &node {
            Ok((id, host, port)) => c
                .with_node_id(BrokerId(*id))
                .with_host(s(host.clone()))
                .with_port(*port),
            Err((code, message)) => c
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(*code)
                .with_error_message(Some(s(message.clone()))),
        }
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| answer(k.as_str()))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = answer(req.key.as_str());
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(if version >= 1 { c.error_message } else { None })
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

pub async fn join_group(
    broker: &Broker,
    req: JoinGroupRequest,
    ctx: &RequestContext,
) -> JoinGroupResponse {
    if let Err(e) = broker.offsets.check() {
        return JoinGroupResponse::default()
            .with_error_code(e.code)
            .with_generation_id(-1);
    }
    let request = group::JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let now = now_u64();
    let out = broker
        .groups
        .parked(|c, token| c.join(now, token, request))
        .await;
    let Some(group::Output::Join { response: r, .. }) = out else {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_generation_id(-1);
    };
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        .with_protocol_type(opt_s(r.protocol_type))
        .with_protocol_name(opt_s(r.protocol_name))
        .with_leader(s(r.leader))
        .with_skip_assignment(r.skip_assignment && ctx.version >= 9)
        .with_member_id(s(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(m.member_id))
                        .with_group_instance_id(opt_s(m.group_instance_id))
                        .with_metadata(Bytes::from(m.metadata))
                })
                .collect(),
        )
}

pub async fn sync_group(broker: &Broker, req: SyncGroupRequest) -> SyncGroupResponse {
    if let Err(e) = broker.offsets.check() {
        return SyncGroupResponse::default().with_error_code(e.code);
    }
    let request = group::SyncRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
    };
    let now = now_u64();
    let out = broker
        .groups
        .parked(|c, token| c.sync(now, token, request))
        .await;
    let Some(group::Output::Sync { response: r, .. }) = out else {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(opt_s(r.protocol_type))
        .with_protocol_name(opt_s(r.protocol_name))
        .with_assignment(Bytes::from(r.assignment))
}

pub fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Err(e) = broker.offsets.check() {
        return HeartbeatResponse::default().with_error_code(e.code);
    }
    let request = group::HeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
    };
    let now = now_u64();
    let code = broker
        .groups
        .with(|c| (c.heartbeat(now, request), Vec::new()));
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave_group(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    if let Err(e) = broker.offsets.check() {
        return LeaveGroupResponse::default().with_error_code(e.code);
    }
    let members: Vec<group::LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| group::LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![group::LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let group_id = req.group_id.0.to_string();
    let now = now_u64();
    let result = broker.groups.with(|c| {
        let mut r = c.leave(now, &group_id, &members);
        let outputs = std::mem::take(&mut r.outputs);
        (r, outputs)
    });
    // Before v3 the single member's error is the top-level error.
    let error = if version < 3 {
        result.members.first().map_or(result.error, |(_, e)| {
            if result.error != 0 {
                result.error
            } else {
                *e
            }
        })
    } else {
        result.error
    };
    // Per-member results exist on the wire from v3.
    let members = if version >= 3 {
        result.members
    } else {
        Vec::new()
    };
    LeaveGroupResponse::default()
        .with_error_code(error)
        .with_members(
            members
                .into_iter()
                .map(|(m, e)| {
                    MemberResponse::default()
                        .with_member_id(s(m.member_id))
                        .with_group_instance_id(opt_s(m.group_instance_id))
                        .with_error_code(e)
                })
                .collect(),
        )
}

pub fn describe_groups(broker: &Broker, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let gate = broker.offsets.check().err();
    let groups = req
        .groups
        .into_iter()
        .map(|gid| {
            let id = gid.0.to_string();
            let described = DescribedGroup::default()
                .with_group_id(gid)
                .with_authorized_operations(i32::MIN);
            if let Some(e) = &gate {
                return described.with_error_code(e.code);
            }
            match broker.groups.read(|c| c.describe(&id)) {
                Some(d) => described
                    .with_group_state(s(d.state.as_str()))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol_name))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(opt_s(m.group_instance_id))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(Bytes::from(m.metadata))
                                    .with_member_assignment(Bytes::from(m.assignment))
                            })
                            .collect(),
                    ),
                // A group known only by its committed offsets is Empty, as in Kafka.
                None if broker.offsets.has_group(&id) => described
                    .with_group_state(s("Empty"))
                    .with_protocol_type(s("consumer")),
                None => described.with_group_state(s("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list_groups(broker: &Broker, req: ListGroupsRequest) -> ListGroupsResponse {
    // Every broker lists the groups it coordinates (none while it coordinates nothing).
    match broker.offsets.check() {
        Ok(()) => {}
        Err(e) if e.code == ResponseError::CoordinatorLoadInProgress.code() => {
            return ListGroupsResponse::default().with_error_code(e.code);
        }
        Err(_) => return ListGroupsResponse::default(),
    }
    let mut listed: Vec<(String, String, String, String)> = broker.groups.read(|c| {
        c.list()
            .into_iter()
            .map(|g| {
                (
                    g.group_id,
                    g.protocol_type,
                    g.state.as_str().to_string(),
                    g.group_type.as_str().to_string(),
                )
            })
            .collect()
    });
    for id in broker.offsets.group_ids() {
        if !listed.iter().any(|(g, ..)| *g == id) {
            listed.push((id, "consumer".into(), "Empty".into(), "classic".into()));
        }
    }
    for id in super::share::share_groups_with_state(broker) {
        if !listed.iter().any(|(g, ..)| *g == id) {
            listed.push((id, "share".into(), "Empty".into(), "share".into()));
        }
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = listed
        .into_iter()
        .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|(_, _, _, ty)| types.is_empty() || types.contains(&ty.to_lowercase()))
        .map(|(id, pt, state, ty)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(id)))
                .with_protocol_type(s(pt))
                .with_group_state(s(state))
                .with_group_type(s(ty))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for gid in req.groups_names {
        let id = gid.0.to_string();
        if let Err(e) = broker.offsets.check() {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid)
                    .with_error_code(e.code),
            );
            continue;
        }
        let mut code = broker.groups.with(|c| (c.delete(&id), Vec::new()));
        let has_share_state = !broker.share.handles(Some(&id)).is_empty();
        if code == ResponseError::GroupIdNotFound.code()
            && (broker.offsets.has_group(&id) || has_share_state)
        {
            code = 0;
        }
        if code == 0 {
            if let Err(e) = broker.offsets.delete_group(&id, now_ms()).await {
                code = e.code;
            }
        }
        if code == 0 {
            if let Err(e) = super::share::delete_share_state(broker, &gid).await {
                code = e.code;
            }
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(gid)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_commit(broker: &Broker, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let now = now_ms();
    let gate = broker.offsets.check().err().map(|e| e.code);
    let check = broker.groups.with(|c| {
        (
            c.validate_offset_commit(
                now.max(0) as u64,
                &group_id,
                req.generation_id_or_member_epoch,
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
            ),
            Vec::new(),
        )
    });
    let mut changes = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let exists = broker.metadata.topic(&name);
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let code = if let Some(code) = gate {
                    code
                } else if check != 0 {
                    check
                } else {
                    partition_commit_error(
                        exists.as_deref(),
                        p.partition_index,
                        p.committed_metadata.as_deref(),
                    )
                };
                let code = if code != 0 {
                    code
                } else {
                    changes.push((
                        name.clone(),
                        p.partition_index,
                        Some(CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_timestamp_ms: now,
                        }),
                    ));
                    0
                };
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect::<Vec<_>>();
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    if let Err(e) = broker.offsets.write(&group_id, changes, now).await {
        for t in &mut topics {
            for p in &mut t.partitions {
                if p.error_code == 0 {
                    p.error_code = e.code;
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// The per-partition checks of OffsetCommit and TxnOffsetCommit: the partition exists and the
/// metadata fits `offset.metadata.max.bytes` (4096). 0 when the commit may be written.
pub(super) fn partition_commit_error(
    topic: Option<&crate::metadata::Topic>,
    partition: i32,
    metadata: Option<&str>,
) -> i16 {
    if topic.is_none_or(|t| !t.has_partition(partition)) {
        ResponseError::UnknownTopicOrPartition.code()
    } else if metadata.is_some_and(|m| m.len() > 4096) {
        ResponseError::OffsetMetadataTooLarge.code()
    } else {
        0
    }
}

/// A committed offset as OffsetFetch reports it: (partition, offset, leader epoch, metadata,
/// error code).
type CommittedRow = (i32, i64, i32, Option<String>, i16);

/// The committed offsets of `wanted` (None = everything the group committed), by topic; a
/// partition without a commit reads offset -1, as in Kafka. With `require_stable` (v7+), a
/// partition with a pending transactional commit reads UNSTABLE_OFFSET_COMMIT (88) in its
/// own row (Kafka's `OffsetMetadataManager.fetchOffsets`; clients retry).
fn committed_rows(
    broker: &Broker,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(String, Vec<CommittedRow>)> {
    wanted
        .unwrap_or_else(|| all_committed(broker, group))
        .into_iter()
        .map(|(topic, parts)| {
            let rows = parts
                .iter()
                .map(|&p| {
                    if require_stable && broker.offsets.has_pending(group, &topic, p) {
                        let code = ResponseError::UnstableOffsetCommit.code();
                        return (p, -1, -1, Some(String::new()), code);
                    }
                    match broker.offsets.get(group, &topic, p) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata, 0),
                        None => (p, -1, -1, Some(String::new()), 0),
                    }
                })
                .collect();
            (topic, rows)
        })
        .collect()
}

/// An OffsetFetch (v0-v7, one group) refused whole: v2+ carry the error at the top; before,
/// every requested partition carries it.
pub fn offset_fetch_error(
    req: &OffsetFetchRequest,
    version: i16,
    code: i16,
) -> OffsetFetchResponse {
    let topics = req
        .topics
        .iter()
        .flatten()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    let top = if version >= 2 { code } else { 0 };
    OffsetFetchResponse::default()
        .with_error_code(top)
        .with_topics(topics)
}

pub fn offset_fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    // v8+ batches groups; earlier versions ask for one group at top level.
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                if let Err(e) = broker.offsets.check() {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(e.code);
                }
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let topics = committed_rows(broker, &g.group_id.0, wanted, req.require_stable)
                    .into_iter()
                    .map(|(topic, rows)| {
                        let partitions = rows
                            .into_iter()
                            .map(|(p, offset, epoch, meta, code)| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(opt_s(meta))
                                    .with_error_code(code)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(s(topic)))
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(e) = broker.offsets.check() {
        return offset_fetch_error(&req, version, e.code);
    }
    let wanted = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    // RequireStable exists from v7; the field reads false before.
    let require_stable = version >= 7 && req.require_stable;
    let topics = committed_rows(broker, &req.group_id.0, wanted, require_stable)
        .into_iter()
        .map(|(topic, rows)| {
            let partitions = rows
                .into_iter()
                .map(|(p, offset, epoch, meta, code)| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(opt_s(meta))
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// Every (topic, partitions) a group has committed, for "fetch all" requests.
fn all_committed(broker: &Broker, group: &str) -> Vec<(String, Vec<i32>)> {
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for (t, p, _) in broker.offsets.group(group) {
        by_topic.entry(t).or_default().push(p);
    }
    by_topic.into_iter().collect()
}

pub async fn offset_delete(broker: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let id = req.group_id.0.to_string();
    if let Err(e) = broker.offsets.check() {
        return OffsetDeleteResponse::default().with_error_code(e.code);
    }
    let known = broker.groups.read(|c| c.describe(&id).is_some()) || broker.offsets.has_group(&id);
    if !known {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = broker.groups.read(|c| c.subscribed_topics(&id));
    let mut changes = Vec::new();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let busy = subscribed.contains(&name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if busy {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        changes.push((name.clone(), p.partition_index, None));
                        0
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let code = match broker.offsets.write(&id, changes, now_ms()).await {
        Ok(()) => 0,
        Err(e) => e.code,
    };
    OffsetDeleteResponse::default()
        .with_error_code(code)
        .with_topics(topics)
}

fn topic_partitions_out(
    assignment: Vec<([u8; 16], Vec<i32>)>,
) -> Vec<kafka_protocol::messages::consumer_group_heartbeat_response::TopicPartitions> {
    assignment
        .into_iter()
        .map(|(id, partitions)| {
            kafka_protocol::messages::consumer_group_heartbeat_response::TopicPartitions::default()
                .with_topic_id(uuid::Uuid::from_bytes(id))
                .with_partitions(partitions)
        })
        .collect()
}

/// KIP-848: the member's heartbeat carries its subscription and owned partitions; the
/// coordinator answers with its epoch and, when it changed, its assignment.
pub async fn consumer_group_heartbeat(
    broker: &Broker,
    req: ConsumerGroupHeartbeatRequest,
    ctx: &RequestContext,
) -> ConsumerGroupHeartbeatResponse {
    if let Err(e) = broker.offsets.check() {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)));
    }
    let request = group::ConsumerHeartbeat {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        // An empty regex (librdkafka sends one beside topic names) means "no regex".
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned_partitions: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (*tp.topic_id.as_bytes(), tp.partitions.clone()))
                .collect()
        }),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
    };
    let mut regexes = broker.groups.read(|c| c.regexes_in_use());
    if let Some(pattern) = request
        .subscribed_topic_regex
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        if let Err(e) = crate::groups::compile_subscription_regex(pattern) {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ResponseError::InvalidRegularExpression.code())
                .with_error_message(Some(s(format!(
                    "invalid subscription regex {pattern:?}: {e}"
                ))))
                .with_member_epoch(-1);
        }
        regexes.insert(pattern.clone());
    }
    let snapshot = crate::groups::topics_snapshot(&broker.metadata, &regexes);
    let now = now_u64();
    // Answered once a change of the member's epoch or assignment is written: a coordinator
    // that takes over must know the epoch the member was told.
    let result = broker
        .groups
        .with_persisted(|c| (c.consumer_heartbeat(now, request, &snapshot), Vec::new()))
        .await;
    match result {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                kafka_protocol::messages::consumer_group_heartbeat_response::Assignment::default()
                    .with_topic_partitions(topic_partitions_out(a))
            })),
        Err((code, message)) => {
            tracing::debug!(group = %req.group_id.0, code, %message, "consumer group heartbeat refused");
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(message)))
                .with_member_epoch(-1)
        }
    }
}

pub fn consumer_group_describe(
    broker: &Broker,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup as Described, Member, TopicPartitions,
    };
    let names: std::collections::HashMap<[u8; 16], String> = broker
        .metadata
        .topics()
        .iter()
        .map(|t| (*t.id.as_bytes(), t.name.clone()))
        .collect();
    let assignment = |parts: Vec<([u8; 16], Vec<i32>)>| {
        Assignment::default().with_topic_partitions(
            parts
                .into_iter()
                .map(|(id, partitions)| {
                    TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_bytes(id))
                        .with_topic_name(TopicName(s(names.get(&id).cloned().unwrap_or_default())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|gid| {
            let id = gid.0.to_string();
            let out = Described::default()
                .with_group_id(gid)
                .with_authorized_operations(i32::MIN);
            if let Err(e) = broker.offsets.check() {
                return out.with_error_code(e.code);
            }
            match broker.groups.read(|c| c.describe(&id)) {
                Some(d) if d.group_type == group::GroupType::Consumer => out
                    .with_group_state(s(d.state.as_str()))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(s(d.assignor_name))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(s(m.member_id))
                                    .with_instance_id(opt_s(m.group_instance_id))
                                    .with_rack_id(opt_s(m.rack_id))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .into_iter()
                                            .map(|n| TopicName(s(n)))
                                            .collect(),
                                    )
                                    .with_assignment(assignment(m.assigned))
                                    .with_target_assignment(assignment(m.target))
                            })
                            .collect(),
                    ),
                Some(_) => out
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(format!("group {id} is not a consumer group")))),
                None => out
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(format!("group {id} not found")))),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
