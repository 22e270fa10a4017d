//! Share groups on the wire (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch,
//! ShareAcknowledge and the share-group offset admin APIs.
//!
//! ShareFetch: first the piggy-backed acknowledgements are applied (and made durable), then
//! records are acquired from the session's partitions in turn, up to `max_records`; the
//! response carries the stored batches that hold them plus the acquired offset ranges (the
//! client drops records of a batch outside them). With nothing to acquire the request waits
//! up to `max_wait_ms` for new records or for records to come back (release, lock expiry).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, BrokerId,
    DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, GroupId,
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
    ShareGroupDescribeRequest, ShareGroupDescribeResponse, ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse, TopicName,
};
use sluice_share::{AcquiredRange, MemberId};
use uuid::Uuid;

use super::{s, RequestContext};
use crate::broker::Broker;
use crate::error::KafkaError;
use crate::group_config::ShareSettings;
use crate::groups::now_u64;
use crate::limits::MAX_FETCH_PARTITIONS;
use crate::metrics::TopicLabels;

/// The leader of a partition as share responses report it: the local replica's role, else
/// (a partition not here) this node at the initial epoch, as before replication.
fn share_leader(broker: &Broker, topic_id: Uuid, partition: i32) -> crate::error::LeaderAndEpoch {
    let tp = crate::replica_manager::TopicIdPartition {
        topic_id,
        partition,
    };
    broker
        .replicas
        .leader_of(tp)
        .unwrap_or(crate::error::LeaderAndEpoch {
            leader_id: broker.config.node_id,
            leader_epoch: crate::replica_manager::INITIAL_LEADER_EPOCH,
        })
}
use crate::share::serve::{self, apply_acks, AckBatches, AckResults};
use crate::share::state_store::StateKey;
use crate::share::{SessionStep, ShareHandle, SpKey};

/// `max_records` when the client sends none (Kafka's `max.poll.records` default).
const DEFAULT_MAX_RECORDS: i32 = 500;

fn settings(broker: &Broker, group: &str) -> ShareSettings {
    broker.metadata.share_settings(group)
}

/// Tells the share service about members the coordinator dropped (left or timed out).
pub fn release_departed(broker: &Broker) {
    let departed = broker
        .groups
        .with(|c| (c.take_departed_share_members(), Vec::new()));
    for (group, member) in departed {
        broker.share.member_departed(broker, &group, &member);
    }
}

pub async fn share_group_heartbeat(
    broker: &Broker,
    req: ShareGroupHeartbeatRequest,
    ctx: &RequestContext,
) -> ShareGroupHeartbeatResponse {
    // The share group's coordinator is the group coordinator (FindCoordinator key type 0).
    if let Err(e) = broker.offsets.check() {
        return ShareGroupHeartbeatResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(super::s(e.message)));
    }
    let group = req.group_id.0.to_string();
    let settings = settings(broker, &group);
    let request = sluice_group::ShareHeartbeat {
        group_id: group,
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.as_ref().map(|r| r.to_string()),
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
    };
    let snapshot = crate::groups::topics_snapshot(&broker.metadata, &Default::default());
    let timeouts = sluice_group::ShareGroupTimeouts {
        heartbeat_interval_ms: settings.heartbeat_interval_ms,
        session_timeout_ms: settings.session_timeout_ms,
    };
    let now = now_u64();
    // Answered once a change of the member's epoch or assignment is written (as a KIP-848
    // heartbeat): a coordinator that takes over knows the epoch the member was told.
    let result = broker
        .groups
        .with_persisted(|c| {
            (
                c.share_heartbeat(now, request, &snapshot, timeouts),
                Vec::new(),
            )
        })
        .await;
    release_departed(broker);
    match result {
        Ok(r) => ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(s(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                use kafka_protocol::messages::share_group_heartbeat_response::{
                    Assignment, TopicPartitions,
                };
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(Uuid::from_bytes(id))
                                .with_partitions(ps)
                        })
                        .collect(),
                )
            })),
        Err((code, message)) => {
            tracing::debug!(group = %req.group_id.0, code, %message, "share group heartbeat refused");
            ShareGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(message)))
                .with_member_epoch(-1)
        }
    }
}

pub fn share_group_describe(
    broker: &Broker,
    req: ShareGroupDescribeRequest,
) -> ShareGroupDescribeResponse {
    use kafka_protocol::messages::share_group_describe_response::{
        Assignment, DescribedGroup, Member, TopicPartitions,
    };
    let topic_name = |id: [u8; 16]| {
        broker
            .metadata
            .topic_by_id(Uuid::from_bytes(id))
            .map(|t| t.name.clone())
            .unwrap_or_default()
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|gid| {
            let described = broker.groups.read(|c| c.describe(&gid.0));
            let has_state = !broker.share.handles(Some(&gid.0)).is_empty();
            match described {
                Some(d) if d.group_type == sluice_group::GroupType::Share => {
                    DescribedGroup::default()
                        .with_group_id(gid)
                        .with_group_state(s(d.state.as_str()))
                        .with_group_epoch(d.group_epoch)
                        .with_assignment_epoch(d.assignment_epoch)
                        .with_assignor_name(s(d.assignor_name))
                        .with_authorized_operations(i32::MIN)
                        .with_members(
                            d.members
                                .into_iter()
                                .map(|m| {
                                    Member::default()
                                        .with_member_id(s(m.member_id))
                                        .with_rack_id(m.rack_id.map(s))
                                        .with_member_epoch(m.member_epoch)
                                        .with_client_id(s(m.client_id))
                                        .with_client_host(s(m.client_host))
                                        .with_subscribed_topic_names(
                                            m.subscribed_topic_names
                                                .into_iter()
                                                .map(|t| TopicName(s(t)))
                                                .collect(),
                                        )
                                        .with_assignment(
                                            Assignment::default().with_topic_partitions(
                                                m.assigned
                                                    .into_iter()
                                                    .map(|(id, ps)| {
                                                        TopicPartitions::default()
                                                            .with_topic_id(Uuid::from_bytes(id))
                                                            .with_topic_name(TopicName(s(
                                                                topic_name(id),
                                                            )))
                                                            .with_partitions(ps)
                                                    })
                                                    .collect(),
                                            ),
                                        )
                                })
                                .collect(),
                        )
                }
                // Known only by its durable state (after a restart): an empty share group.
                None if has_state => DescribedGroup::default()
                    .with_group_id(gid)
                    .with_group_state(s("Empty"))
                    .with_assignor_name(s("simple"))
                    .with_authorized_operations(i32::MIN),
                Some(_) => DescribedGroup::default()
                    .with_error_code(ResponseError::InvalidGroupId.code())
                    .with_error_message(Some(s(format!("Group {} is not a share group.", gid.0))))
                    .with_group_id(gid)
                    .with_group_state(s("Dead")),
                None => DescribedGroup::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(format!("Group {} not found.", gid.0))))
                    .with_group_id(gid)
                    .with_group_state(s("Dead")),
            }
        })
        .collect();
    ShareGroupDescribeResponse::default().with_groups(groups)
}

/// Each partition's acknowledgement batches, in request order.
type AckLists = Vec<((Uuid, i32), AckBatches)>;

/// The acknowledgements of the first [`MAX_FETCH_PARTITIONS`] partitions, and INVALID_REQUEST
/// for the rest (not applied). Batches are copied only for the partitions kept.
fn ack_lists<B>(partitions: impl Iterator<Item = ((Uuid, i32), B)>) -> (AckLists, AckResults)
where
    B: Iterator<Item = (i64, i64, Vec<i8>)>,
{
    let mut kept = Vec::new();
    let mut refused = BTreeMap::new();
    for (tp, batches) in partitions {
        if kept.len() < MAX_FETCH_PARTITIONS {
            kept.push((tp, batches.collect()));
        } else {
            refused.insert(
                tp,
                (
                    ResponseError::InvalidRequest.code(),
                    Some(format!(
                        "acknowledgements for at most {MAX_FETCH_PARTITIONS} partitions per request"
                    )),
                ),
            );
        }
    }
    (kept, refused)
}

/// One partition's records in a ShareFetch response: what was acquired, and the stored
/// batches that hold it (already read, within `max_bytes`).
struct Acquired {
    handle: Arc<ShareHandle>,
    ranges: Vec<AcquiredRange>,
    read: Result<Vec<u8>, KafkaError>,
}

fn node_endpoints_fetch(
    broker: &Broker,
    listener: &str,
) -> Vec<kafka_protocol::messages::share_fetch_response::NodeEndpoint> {
    let (host, port) = broker.advertised(listener);
    vec![
        kafka_protocol::messages::share_fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(broker.config.node_id))
            .with_host(s(host))
            .with_port(port),
    ]
}

/// The record bytes a response may carry: the request's `max_bytes` (none or <= 0: no
/// limit of its own), capped by the broker's `fetch.max.bytes`.
fn response_cap(requested: i32, broker_cap: i32) -> usize {
    let requested = if requested <= 0 { i32::MAX } else { requested };
    usize::try_from(requested.min(broker_cap.max(1))).unwrap_or(usize::MAX)
}

/// A member's request must come from a member of the group (a fetch opening a session) or
/// from a session it opened.
/// A new share session's member must belong to the group (checked on the group coordinator).
fn check_member(broker: &Broker, group: &str, member: &str) -> Result<(), KafkaError> {
    if group.is_empty() || member.is_empty() {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            "GroupId and MemberId must be set",
        ));
    }
    // Only the group coordinator knows the members. A share-partition leader elsewhere (a
    // cluster) opens the session, as Kafka's share-partition leaders do: what a non-member
    // acquires is released when its locks expire.
    if broker.offsets.check().is_err() || broker.groups.read(|c| c.is_share_member(group, member)) {
        Ok(())
    } else {
        Err(KafkaError::new(
            ResponseError::UnknownMemberId,
            format!("{member} is not a member of share group {group}"),
        ))
    }
}

/// The nullable GroupId and MemberId of ShareFetch / ShareAcknowledge ("" when null).
fn group_and_member(
    group: &Option<GroupId>,
    member: &Option<kafka_protocol::protocol::StrBytes>,
) -> (String, String) {
    (
        group.as_ref().map(|g| g.0.to_string()).unwrap_or_default(),
        member.as_ref().map(|m| m.to_string()).unwrap_or_default(),
    )
}

pub async fn share_fetch(
    broker: &Broker,
    req: ShareFetchRequest,
    listener: &str,
) -> ShareFetchResponse {
    use kafka_protocol::messages::share_fetch_response::{
        AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
    };
    let (group, member) = group_and_member(&req.group_id, &req.member_id);
    let fail = |e: KafkaError| {
        ShareFetchResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)))
    };
    if req.share_session_epoch == 0 {
        if let Err(e) = check_member(broker, &group, &member) {
            return fail(e);
        }
    } else if group.is_empty() || member.is_empty() {
        return fail(KafkaError::new(
            ResponseError::InvalidRequest,
            "GroupId and MemberId must be set",
        ));
    }
    // At most MAX_FETCH_PARTITIONS partitions are served (and acknowledged); the rest are
    // answered with INVALID_REQUEST.
    let mut requested: Vec<(Uuid, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition_index))
        })
        .collect();
    let refused = requested.split_off(requested.len().min(MAX_FETCH_PARTITIONS));
    let forgotten: Vec<(Uuid, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .take(MAX_FETCH_PARTITIONS)
        .collect();
    let (acks, mut acks_refused) = ack_lists(req.topics.iter().flat_map(|t| {
        t.partitions
            .iter()
            .filter(|p| !p.acknowledgement_batches.is_empty())
            .map(move |p| {
                (
                    (t.topic_id, p.partition_index),
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone())),
                )
            })
    }));
    if req.share_session_epoch == 0 && !acks.is_empty() {
        return fail(KafkaError::new(
            ResponseError::InvalidRequest,
            "acknowledgements cannot be sent when opening a share session",
        ));
    }
    let step = match broker.share.session_step(
        &group,
        &member,
        req.share_session_epoch,
        &requested,
        &forgotten,
        true,
    ) {
        Ok(step) => step,
        Err(e) => return fail(e),
    };
    let settings = settings(broker, &group);
    let member_id: MemberId = Arc::from(member.as_str());
    let mut ack_results = apply_acks(broker, &group, &member_id, acks, &settings, false).await;
    ack_results.append(&mut acks_refused);

    // Acquire.
    let mut acquired: Vec<Acquired> = Vec::new();
    let mut partition_errors: BTreeMap<(Uuid, i32), KafkaError> = refused
        .into_iter()
        .map(|tp| {
            (
                tp,
                KafkaError::new(
                    ResponseError::InvalidRequest,
                    format!("a share fetch serves at most {MAX_FETCH_PARTITIONS} partitions"),
                ),
            )
        })
        .collect();
    let budget = response_cap(req.max_bytes, broker.config.fetch_max_bytes);
    let mut sent_bytes = 0usize;
    // Where the session's share-partitions' state was logged when they were looked up (a new
    // one logs its first state): made durable, with what is handed out, by one wait below.
    let mut logged_end = 0i64;
    match step {
        SessionStep::Closed => {
            broker.share.release_member(broker, &group, &member);
        }
        SessionStep::Open(partitions) => {
            let max_records = if req.max_records > 0 {
                req.max_records
            } else {
                DEFAULT_MAX_RECORDS
            } as u32;
            let wait = Duration::from_millis(
                req.max_wait_ms.clamp(0, crate::limits::MAX_FETCH_WAIT_MS) as u64,
            );
            let deadline = tokio::time::Instant::now() + wait;
            let mut handles = Vec::with_capacity(partitions.len());
            for (topic_id, partition) in &partitions {
                let key = SpKey {
                    group: Arc::from(group.as_str()),
                    topic_id: *topic_id,
                    partition: *partition,
                };
                match broker
                    .share
                    .get_or_start_creating(broker, &key, &settings)
                    .await
                {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        partition_errors.insert((*topic_id, *partition), e);
                    }
                }
            }
            logged_end = handles
                .iter()
                .map(|h| h.logged_end())
                .fold(logged_end, i64::max);
            loop {
                // Register for wake-ups before looking, so nothing in between is missed.
                let appended = broker.data_appended.notified();
                let available = broker.share.available.notified();
                let mut left = max_records;
                let mut full = false;
                // Records were archived unseen (markers, aborted): more may be ready at once.
                let mut skipped_any = false;
                for h in &handles {
                    if left == 0 || full || sent_bytes >= budget {
                        break;
                    }
                    let first_in_response = acquired.is_empty();
                    let room = budget.saturating_sub(sent_bytes);
                    let Some(taken) = serve::take(
                        broker,
                        h,
                        &member_id,
                        left,
                        &settings,
                        room,
                        first_in_response,
                        true,
                    ) else {
                        continue;
                    };
                    full |= taken.full;
                    if let Some(e) = taken.archived_at {
                        logged_end = logged_end.max(e);
                        skipped_any = true;
                    }
                    if let Ok(bytes) = &taken.read {
                        sent_bytes = sent_bytes.saturating_add(bytes.len());
                    }
                    let n = serve::count(&taken.ranges);
                    if n > 0 {
                        left = left.saturating_sub(n);
                        acquired.push(Acquired {
                            handle: h.clone(),
                            ranges: taken.ranges,
                            read: taken.read,
                        });
                    }
                }
                if !acquired.is_empty()
                    || !partition_errors.is_empty()
                    || tokio::time::Instant::now() >= deadline
                    || handles.is_empty()
                {
                    break;
                }
                if skipped_any {
                    continue;
                }
                tokio::select! {
                    _ = appended => {}
                    _ = available => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }

    // Build the response: partitions with records, acknowledgement results or errors.
    let mut by_topic: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    let leader = |topic_id: Uuid, partition: i32| {
        let l = share_leader(broker, topic_id, partition);
        LeaderIdAndEpoch::default()
            .with_leader_id(l.leader_id)
            .with_leader_epoch(l.leader_epoch)
    };
    // Records handed out may exist only because of a state change not yet durable (a new
    // share-partition, a release by another member): nothing leaves before it is. One wait
    // covers every partition of the response.
    let end = acquired
        .iter()
        .map(|a| a.handle.logged_end())
        .fold(logged_end, i64::max);
    let settled = broker.share.store.durable(end).await;
    for Acquired {
        handle: h,
        ranges,
        read,
    } in acquired
    {
        let tp = (h.key.topic_id, h.key.partition);
        let read = match (&settled, h.check_current()) {
            (Ok(()), Ok(())) => read,
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
        };
        let (ack_code, ack_msg) = ack_results.remove(&tp).unwrap_or((0, None));
        let mut data = PartitionData::default()
            .with_partition_index(h.key.partition)
            .with_acknowledge_error_code(ack_code)
            .with_acknowledge_error_message(ack_msg.map(s))
            .with_current_leader(leader(h.key.topic_id, h.key.partition));
        match read {
            Ok(bytes) => {
                broker
                    .metrics
                    .bytes_out
                    .get_or_create(&TopicLabels {
                        topic: h.topic.clone(),
                    })
                    .inc_by(bytes.len() as u64);
                data = data
                    .with_records(Some(Bytes::from(bytes)))
                    .with_acquired_records(
                        ranges
                            .iter()
                            .map(|r| {
                                AcquiredRecords::default()
                                    .with_first_offset(r.first_offset)
                                    .with_last_offset(r.last_offset)
                                    .with_delivery_count(r.delivery_count as i16)
                            })
                            .collect(),
                    );
            }
            Err(e) => {
                // The records stay acquired and come back when the lock expires.
                tracing::error!(topic = %h.topic, partition = h.key.partition, error = %e, "share fetch read failed");
                data = data
                    .with_error_code(e.code)
                    .with_error_message(Some(s(e.message)));
            }
        }
        by_topic.entry(h.key.topic_id).or_default().push(data);
    }
    for ((topic_id, partition), e) in partition_errors {
        let (ack_code, ack_msg) = ack_results
            .remove(&(topic_id, partition))
            .unwrap_or((0, None));
        by_topic.entry(topic_id).or_default().push(
            PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(e.code)
                .with_error_message(Some(s(e.message)))
                .with_acknowledge_error_code(ack_code)
                .with_acknowledge_error_message(ack_msg.map(s))
                .with_current_leader(leader(topic_id, partition)),
        );
    }
    for ((topic_id, partition), (code, msg)) in ack_results {
        by_topic.entry(topic_id).or_default().push(
            PartitionData::default()
                .with_partition_index(partition)
                .with_acknowledge_error_code(code)
                .with_acknowledge_error_message(msg.map(s))
                .with_current_leader(leader(topic_id, partition)),
        );
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(
            settings.share.lock_duration_ms.min(i32::MAX as u64) as i32
        )
        .with_responses(
            by_topic
                .into_iter()
                .map(|(topic_id, partitions)| {
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_node_endpoints(node_endpoints_fetch(broker, listener))
}

pub async fn share_acknowledge(
    broker: &Broker,
    req: ShareAcknowledgeRequest,
    listener: &str,
) -> ShareAcknowledgeResponse {
    use kafka_protocol::messages::share_acknowledge_response::{
        LeaderIdAndEpoch, NodeEndpoint, PartitionData, ShareAcknowledgeTopicResponse,
    };
    let (group, member) = group_and_member(&req.group_id, &req.member_id);
    let fail = |e: KafkaError| {
        ShareAcknowledgeResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)))
    };
    if group.is_empty() || member.is_empty() {
        return fail(KafkaError::new(
            ResponseError::InvalidRequest,
            "GroupId and MemberId must be set",
        ));
    }
    let (acks, mut acks_refused) = ack_lists(req.topics.iter().flat_map(|t| {
        t.partitions.iter().map(move |p| {
            (
                (t.topic_id, p.partition_index),
                p.acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone())),
            )
        })
    }));
    let step =
        match broker
            .share
            .session_step(&group, &member, req.share_session_epoch, &[], &[], false)
        {
            Ok(step) => step,
            Err(e) => return fail(e),
        };
    let settings = settings(broker, &group);
    let member_id: MemberId = Arc::from(member.as_str());
    let mut results = apply_acks(broker, &group, &member_id, acks, &settings, false).await;
    results.append(&mut acks_refused);
    if matches!(step, SessionStep::Closed) {
        broker.share.release_member(broker, &group, &member);
    }
    let leader = |topic_id: Uuid, partition: i32| {
        let l = share_leader(broker, topic_id, partition);
        LeaderIdAndEpoch::default()
            .with_leader_id(l.leader_id)
            .with_leader_epoch(l.leader_epoch)
    };
    let mut by_topic: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    for ((topic_id, partition), (code, msg)) in results {
        by_topic.entry(topic_id).or_default().push(
            PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(code)
                .with_error_message(msg.map(s))
                .with_current_leader(leader(topic_id, partition)),
        );
    }
    ShareAcknowledgeResponse::default()
        .with_responses(
            by_topic
                .into_iter()
                .map(|(topic_id, partitions)| {
                    ShareAcknowledgeTopicResponse::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_node_endpoints({
            let (host, port) = broker.advertised(listener);
            vec![NodeEndpoint::default()
                .with_node_id(BrokerId(broker.config.node_id))
                .with_host(s(host))
                .with_port(port)]
        })
}

/// Offset admin on a share group requires it to be empty (as Kafka: GROUP_NOT_EMPTY /
/// NON_EMPTY_GROUP while members are active) and not another type.
fn check_admin_group(broker: &Broker, group: &str, must_be_empty: bool) -> Result<(), KafkaError> {
    if group.is_empty() {
        return Err(KafkaError::new(
            ResponseError::InvalidGroupId,
            "group id is empty",
        ));
    }
    match broker.groups.read(|c| c.describe(group)) {
        Some(d) if d.group_type != sluice_group::GroupType::Share => Err(KafkaError::new(
            ResponseError::GroupIdNotFound,
            format!("Group {group} is not a share group."),
        )),
        Some(d) if must_be_empty && !d.members.is_empty() => Err(KafkaError::new(
            ResponseError::NonEmptyGroup,
            format!("share group {group} has active members; stop them first"),
        )),
        _ => Ok(()),
    }
}

pub async fn describe_share_group_offsets(
    broker: &Broker,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    use kafka_protocol::messages::describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as G,
        DescribeShareGroupOffsetsResponsePartition as P,
        DescribeShareGroupOffsetsResponseTopic as T,
    };
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let group = g.group_id.0.to_string();
        // The committed start offsets, from the share coordinator (wherever the
        // share-partitions live).
        let summary = match check_admin_group(broker, &group, false) {
            Ok(()) => crate::share::admin::summary(broker, &group).await,
            Err(e) => Err(e),
        };
        let summary = match summary {
            Ok(s) => s,
            Err(e) => {
                groups.push(
                    G::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code)
                        .with_error_message(Some(s(e.message))),
                );
                continue;
            }
        };
        let starts: HashMap<(Uuid, i32), i64> = summary
            .iter()
            .map(|(k, start)| ((k.topic_id, k.partition), *start))
            .collect();
        // Null topics: every topic-partition the group has state for.
        let wanted: Vec<(String, Vec<i32>)> = match g.topics {
            Some(topics) => topics
                .into_iter()
                .map(|t| (t.topic_name.0.to_string(), t.partitions))
                .collect(),
            None => {
                let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (k, _) in &summary {
                    if let Some(t) = broker.metadata.topic_by_id(k.topic_id) {
                        m.entry(t.name.clone()).or_default().push(k.partition);
                    }
                }
                m.into_iter()
                    .map(|(t, mut ps)| {
                        ps.sort_unstable();
                        (t, ps)
                    })
                    .collect()
            }
        };
        let topics = wanted
            .into_iter()
            .map(|(name, partitions)| {
                let topic = broker.metadata.topic(&name);
                T::default()
                    .with_topic_name(TopicName(s(name.clone())))
                    .with_topic_id(topic.as_ref().map_or(Uuid::nil(), |t| t.id))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|p| {
                                let Some(t) = &topic else {
                                    return P::default()
                                        .with_partition_index(p)
                                        .with_start_offset(-1)
                                        .with_error_code(
                                            ResponseError::UnknownTopicOrPartition.code(),
                                        );
                                };
                                // -1: the group has not read this partition yet.
                                let start = starts.get(&(t.id, p)).copied().unwrap_or(-1);
                                P::default()
                                    .with_partition_index(p)
                                    .with_start_offset(start)
                                    .with_leader_epoch(share_leader(broker, t.id, p).leader_epoch)
                            })
                            .collect(),
                    )
            })
            .collect();
        groups.push(G::default().with_group_id(g.group_id).with_topics(topics));
    }
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

pub async fn alter_share_group_offsets(
    broker: &Broker,
    req: AlterShareGroupOffsetsRequest,
) -> AlterShareGroupOffsetsResponse {
    use kafka_protocol::messages::alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition as P, AlterShareGroupOffsetsResponseTopic as T,
    };
    let group = req.group_id.0.to_string();
    if let Err(e) = check_admin_group(broker, &group, true) {
        return AlterShareGroupOffsetsResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)));
    }
    let mut responses = Vec::new();
    for t in req.topics {
        let name = t.topic_name.0.to_string();
        let topic = broker.metadata.topic(&name);
        let mut partitions = Vec::new();
        for p in t.partitions {
            let outcome = match &topic {
                None => Err(crate::metadata::unknown_topic(&name)),
                Some(topic) => {
                    // On the share-partition's leader, wherever it is.
                    let key = StateKey {
                        group: group.clone(),
                        topic_id: topic.id,
                        partition: p.partition_index,
                    };
                    crate::share::admin::reset(broker, &key, p.start_offset).await
                }
            };
            partitions.push(match outcome {
                Ok(()) => P::default().with_partition_index(p.partition_index),
                Err(e) => P::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(e.code)
                    .with_error_message(Some(s(e.message))),
            });
        }
        responses.push(
            T::default()
                .with_topic_name(t.topic_name)
                .with_topic_id(topic.map_or(Uuid::nil(), |t| t.id))
                .with_partitions(partitions),
        );
    }
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

pub async fn delete_share_group_offsets(
    broker: &Broker,
    req: DeleteShareGroupOffsetsRequest,
) -> DeleteShareGroupOffsetsResponse {
    use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic as T;
    let group = req.group_id.0.to_string();
    if let Err(e) = check_admin_group(broker, &group, true) {
        return DeleteShareGroupOffsetsResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)));
    }
    let mut responses = Vec::new();
    for t in req.topics {
        let name = t.topic_name.0.to_string();
        let resp = T::default().with_topic_name(t.topic_name);
        let Some(topic) = broker.metadata.topic(&name) else {
            let e = crate::metadata::unknown_topic(&name);
            responses.push(
                resp.with_error_code(e.code)
                    .with_error_message(Some(s(e.message))),
            );
            continue;
        };
        let resp = resp.with_topic_id(topic.id);
        let removed = match crate::share::admin::summary(broker, &group).await {
            Ok(summary) => {
                let keys: Vec<StateKey> = summary
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| k.topic_id == topic.id)
                    .collect();
                crate::share::admin::remove(broker, &keys).await
            }
            Err(e) => Err(e),
        };
        responses.push(match removed {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(e.code)
                .with_error_message(Some(s(e.message))),
        });
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}

/// The group ids of share groups known only by durable state (after a restart).
pub fn share_groups_with_state(broker: &Broker) -> Vec<String> {
    let mut ids: Vec<String> = broker
        .share
        .handles(None)
        .iter()
        .map(|h| h.key.group.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Removes a share group's durable state and configs (DeleteGroups).
pub async fn delete_share_state(broker: &Broker, group: &GroupId) -> Result<(), KafkaError> {
    let keys: Vec<StateKey> = crate::share::admin::summary(broker, &group.0)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    crate::share::admin::remove(broker, &keys).await?;
    if !broker.metadata.group_configs(&group.0).0.is_empty() {
        broker
            .metadata
            .replace_group_configs(&group.0, Default::default(), crate::broker::now_ms())
            .await?;
    }
    Ok(())
}
