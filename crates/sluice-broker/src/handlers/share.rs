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
use sluice_share::{validate_ack_batches, AckType, AcquiredRange, MemberId};
use uuid::Uuid;

use super::{s, RequestContext};
use crate::broker::Broker;
use crate::error::KafkaError;
use crate::group_config::ShareSettings;
use crate::groups::now_u64;
use crate::limits::MAX_FETCH_PARTITIONS;
use crate::metrics::{AckLabels, GroupTopicLabels, TopicLabels};
use crate::replica_manager::AbortedTxn;

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
use crate::share::state_store::StateKey;
use crate::share::{ack_error_code, SessionStep, ShareHandle, SpKey};

/// Whether this node leads the partition (it keeps share-partitions only for those).
fn leads(broker: &Broker, topic_id: Uuid, partition: i32) -> bool {
    broker
        .replicas
        .get(crate::replica_manager::TopicIdPartition {
            topic_id,
            partition,
        })
        .is_some_and(|r| matches!(r.role(), crate::replica_manager::Role::Leader { .. }))
}

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

/// One partition's acknowledgement batches, as (first, last, types).
type AckBatches = Vec<(i64, i64, Vec<i8>)>;

/// Per (topic id, partition): error code and message.
type AckResults = BTreeMap<(Uuid, i32), (i16, Option<String>)>;

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

/// Applies acknowledgements to the share-partitions; returns per (topic id, partition) the
/// error code and message (0 = all applied). Waits until the new state is durable.
async fn apply_acks(
    broker: &Broker,
    group: &str,
    member: &MemberId,
    acks: Vec<((Uuid, i32), AckBatches)>,
    settings: &ShareSettings,
    allow_renew: bool,
) -> AckResults {
    let mut results = BTreeMap::new();
    let mut wait_for = None::<i64>;
    let mut touched = Vec::new();
    let now = now_u64();
    let mut any_released = false;
    for ((topic_id, partition), batches) in acks {
        let key = SpKey {
            group: Arc::from(group),
            topic_id,
            partition,
        };
        // Kafka's checks on the whole list first (ascending, no overlap): a refused list
        // applies nothing, and an accepted one touches each in-flight offset at most once.
        let valid = validate_ack_batches(batches.iter().map(|(f, l, t)| (*f, *l, t.as_slice())));
        let outcome = match (broker.share.get(&key), valid) {
            (None, _) if broker.metadata.topic_by_id(topic_id).is_none() => Err(KafkaError::new(
                ResponseError::UnknownTopicId,
                format!("no topic with id {topic_id}"),
            )),
            (_, Err(e)) => Err(KafkaError::new(
                ResponseError::InvalidRequest,
                e.message().to_string(),
            )),
            // The partition is led elsewhere (or moved): the client finds its new leader.
            (None, Ok(())) if !leads(broker, topic_id, partition) => Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                "this broker does not lead the partition",
            )),
            (None, Ok(())) => Err(KafkaError::new(
                ResponseError::InvalidRecordState,
                "no records of this partition were acquired by the group",
            )),
            (Some(h), Ok(())) => {
                touched.push(h.clone());
                let changed = h.change(&broker.share.store, |sp| {
                    let mut first_error = None;
                    let mut counts = [0u64; 5];
                    for (first, last, types) in &batches {
                        if !allow_renew && types.contains(&(AckType::Renew as i8)) {
                            first_error.get_or_insert((
                                ResponseError::InvalidRequest.code(),
                                "acknowledge type 4 (renew) needs ShareFetch v2".to_string(),
                            ));
                            continue;
                        }
                        match sp.acknowledge(member, *first, *last, types, now, &settings.share) {
                            Ok(()) => {
                                let kind = |t: i8| usize::try_from(t).unwrap_or(0).min(4);
                                if let [t] = types.as_slice() {
                                    counts[kind(*t)] += (last - first + 1).max(0) as u64;
                                } else {
                                    for t in types {
                                        counts[kind(*t)] += 1;
                                    }
                                }
                            }
                            Err(e) => {
                                first_error.get_or_insert(ack_error_code(&e));
                            }
                        }
                    }
                    let letters = sp.take_dead_letters();
                    ((first_error, counts, letters), true)
                });
                match changed {
                    Ok(((first_error, counts, letters), end)) => {
                        if let Some(end) = end {
                            wait_for = Some(wait_for.map_or(end, |w| w.max(end)));
                        }
                        for (kind, n) in ["gap", "accept", "release", "reject", "renew"]
                            .into_iter()
                            .zip(counts)
                        {
                            if n > 0 {
                                any_released |= kind == "release";
                                broker
                                    .metrics
                                    .share_acks
                                    .get_or_create(&AckLabels {
                                        group: group.to_string(),
                                        kind,
                                    })
                                    .inc_by(n);
                            }
                        }
                        broker.share.dispatch_dead_letters(&h, letters, settings);
                        Ok(first_error)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        results.insert(
            (topic_id, partition),
            match outcome {
                Ok(None) => (0, None),
                Ok(Some((code, msg))) => (code, Some(msg)),
                Err(e) => (e.code, Some(e.message)),
            },
        );
    }
    if let Some(end) = wait_for {
        if let Err(e) = broker.share.store.durable(end).await {
            for r in results.values_mut() {
                *r = (e.code, Some(e.message.clone()));
            }
        }
        // A share-partition whose write failed (fenced, coordinator unreachable) applied
        // nothing durably: its acknowledgements fail.
        for h in touched {
            if let Err(e) = h.check_current() {
                results.insert((h.key.topic_id, h.key.partition), (e.code, Some(e.message)));
            }
        }
    }
    if any_released {
        broker.share.available.notify_waiters();
    }
    results
}

fn node_endpoints_fetch(
    broker: &Broker,
) -> Vec<kafka_protocol::messages::share_fetch_response::NodeEndpoint> {
    vec![
        kafka_protocol::messages::share_fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(broker.config.node_id))
            .with_host(s(broker.advertised_host.clone()))
            .with_port(broker.advertised_port),
    ]
}

/// First read of a share fetch: enough for a few small batches; later reads are sized from
/// the bytes per offset seen so far.
const FIRST_READ_BYTES: usize = 16 << 10;
const MAX_READ_BYTES: usize = 8 << 20;

/// The record bytes a response may carry: the request's `max_bytes` (none or <= 0: no
/// limit of its own), capped by the broker's `fetch.max.bytes`.
fn response_cap(requested: i32, broker_cap: i32) -> usize {
    let requested = if requested <= 0 { i32::MAX } else { requested };
    usize::try_from(requested.min(broker_cap.max(1))).unwrap_or(usize::MAX)
}

/// What a share group must never be handed: transaction markers (control batches) always,
/// and under read_committed the batches of aborted transactions (`aborted`: the partition's
/// aborted transactions overlapping the acquired offsets). A producer has at most one open
/// transaction per partition, so its transactional batch between an aborted transaction's
/// first offset and its ABORT marker belongs to that transaction.
fn never_delivered(h: &sluice_storage::BatchHeader, aborted: &[AbortedTxn]) -> bool {
    h.is_control()
        || (h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.base_offset <= a.last_offset
            }))
}

/// The stored batches holding acquired records, as [`read_covering`] returns them.
struct Covering {
    bytes: Vec<u8>,
    /// The first acquired offset the bytes do not cover (`i64::MAX`: all covered).
    end: i64,
    /// Offset ranges of batches read that must never be delivered ([`never_delivered`]):
    /// their bytes are left out and the caller archives their acquired records.
    skipped: Vec<(i64, i64)>,
    /// The last offset of the last batch in `bytes`: the rest of that batch can go to the same
    /// consumer without another read ([`crate::share::ShareService::acquire_through`]).
    batch_last: Option<i64>,
}

/// Reads the stored batches holding the acquired `ranges` (ascending), skipping batches that
/// hold none of them, until `budget` bytes. When `first_in_response`, the first batch goes out
/// whole even over the budget (KIP-74), so a large record never stalls a consumer. Batches
/// that must never be delivered (markers, aborted transactions) are left out and reported.
/// The caller gives back the acquired records from `end`. Each read is sized by what is left
/// (a fixed large read would load and copy far more than a `max_records` fetch needs).
fn read_covering(
    handle: &ShareHandle,
    ranges: &[AcquiredRange],
    budget: usize,
    first_in_response: bool,
    aborted: &[AbortedTxn],
) -> Result<Covering, KafkaError> {
    let mut out: Vec<u8> = Vec::new();
    let mut skipped: Vec<(i64, i64)> = Vec::new();
    let mut batch_last = None;
    let mut next = i64::MIN;
    let mut limit = FIRST_READ_BYTES;
    for r in ranges {
        next = next.max(r.first_offset);
        while next <= r.last_offset {
            let room = budget.saturating_sub(out.len());
            let (slice, _) = handle.log.read_as_leader(
                crate::replica_manager::NO_LEADER_EPOCH,
                next,
                limit.min(room).max(1),
            )?;
            let Some(slice) = slice? else {
                return Ok(Covering {
                    bytes: out,
                    end: next,
                    skipped,
                    batch_last,
                });
            };
            let mut bytes = slice.load()?;
            let before = next;
            // The byte spans kept, in order. Without markers or aborted batches they are one
            // prefix of what was read, kept without copying.
            let mut spans: Vec<(usize, usize)> = Vec::new();
            let mut used = 0usize;
            let mut full = false;
            for (at, h) in sluice_storage::BatchIter::new(&bytes) {
                if h.base_offset > r.last_offset {
                    break;
                }
                let len = h.total_len();
                if never_delivered(&h, aborted) {
                    skipped.push((h.base_offset, h.last_offset()));
                    next = h.next_offset();
                    continue;
                }
                let fits = out.len().saturating_add(used).saturating_add(len) <= budget;
                let must_send = out.is_empty() && used == 0 && first_in_response;
                if !fits && !must_send {
                    full = true;
                    break;
                }
                used += len;
                batch_last = Some(h.last_offset());
                let span_end = at.saturating_add(len);
                match spans.last_mut() {
                    Some(last) if last.1 == at => last.1 = span_end,
                    _ => spans.push((at, span_end)),
                }
                next = h.next_offset();
            }
            match spans.as_slice() {
                [] => {}
                [(0, end)] => {
                    bytes.truncate(*end);
                    if out.is_empty() {
                        out = bytes;
                    } else {
                        out.extend_from_slice(&bytes);
                    }
                }
                spans => {
                    for (from, to) in spans {
                        out.extend_from_slice(bytes.get(*from..*to).unwrap_or_default());
                    }
                }
            }
            if full {
                return Ok(Covering {
                    bytes: out,
                    end: next,
                    skipped,
                    batch_last,
                });
            }
            if next <= before {
                // Nothing usable at `next` (cannot happen with a sound log): stop here.
                return Ok(Covering {
                    bytes: out,
                    end: next,
                    skipped,
                    batch_last,
                });
            }
            let per_offset = used / usize::try_from(next - before).unwrap_or(1).max(1);
            let remaining =
                usize::try_from(r.last_offset.saturating_add(1).saturating_sub(next)).unwrap_or(0);
            limit = (remaining.saturating_mul(per_offset.max(1)) + per_offset)
                .clamp(FIRST_READ_BYTES, MAX_READ_BYTES);
        }
    }
    Ok(Covering {
        bytes: out,
        end: i64::MAX,
        skipped,
        batch_last,
    })
}

/// `ranges` without the offsets in `skipped` (ascending, non-overlapping ranges).
fn ranges_without(ranges: Vec<AcquiredRange>, skipped: &[(i64, i64)]) -> Vec<AcquiredRange> {
    if skipped.is_empty() {
        return ranges;
    }
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut first = r.first_offset;
        for &(s_first, s_last) in skipped {
            if s_last < first || s_first > r.last_offset {
                continue;
            }
            if s_first > first {
                out.push(AcquiredRange {
                    first_offset: first,
                    last_offset: s_first - 1,
                    delivery_count: r.delivery_count,
                });
            }
            first = s_last.saturating_add(1);
            if first > r.last_offset {
                break;
            }
        }
        if first <= r.last_offset {
            out.push(AcquiredRange {
                first_offset: first,
                last_offset: r.last_offset,
                delivery_count: r.delivery_count,
            });
        }
    }
    out
}

/// `ranges` without the offsets at or above `end`.
fn ranges_below(ranges: Vec<AcquiredRange>, end: i64) -> Vec<AcquiredRange> {
    ranges
        .into_iter()
        .filter(|r| r.first_offset < end)
        .map(|mut r| {
            r.last_offset = r.last_offset.min(end - 1);
            r
        })
        .collect()
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

pub async fn share_fetch(broker: &Broker, req: ShareFetchRequest) -> ShareFetchResponse {
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
                    let (ranges, deadline) = broker.share.acquire(h, &member_id, left, &settings);
                    let (Some(first), Some(last)) = (
                        ranges.first().map(|r| r.first_offset),
                        ranges.last().map(|r| r.last_offset),
                    ) else {
                        continue;
                    };
                    // Under read_committed everything acquired is below the last stable
                    // offset, so whether its transaction aborted is decided.
                    let aborted = if settings.read_committed {
                        h.log.aborted_transactions(first, last.saturating_add(1))
                    } else {
                        Vec::new()
                    };
                    // Read now, within what is left of max_bytes; records that did not fit
                    // are given back at once, as if never acquired.
                    let first_in_response = acquired.is_empty();
                    let room = budget.saturating_sub(sent_bytes);
                    let read = read_covering(h, &ranges, room, first_in_response, &aborted);
                    let (ranges, read) = match read {
                        Ok(Covering {
                            bytes,
                            end,
                            skipped,
                            batch_last,
                        }) => {
                            let mut ranges = ranges;
                            // Batch-aligned: the rest of the last batch read goes along.
                            if let Some(through) = batch_last.filter(|t| end > last && *t > last) {
                                broker.share.acquire_through(
                                    h,
                                    &member_id,
                                    last.saturating_add(1),
                                    through,
                                    deadline,
                                    &settings,
                                    &mut ranges,
                                );
                            }
                            if end <= last {
                                broker.share.unacquire(h, &member_id, end, last, deadline);
                                // The response is full: later partitions would only acquire
                                // and give back.
                                full = true;
                            }
                            // Markers and aborted records: archived, never handed out.
                            match broker
                                .share
                                .archive_acquired(h, &member_id, &skipped, deadline)
                            {
                                Ok(Some(e)) => {
                                    logged_end = logged_end.max(e);
                                    skipped_any = true;
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::error!(topic = %h.topic, error = %e, "cannot record share state")
                                }
                            }
                            sent_bytes = sent_bytes.saturating_add(bytes.len());
                            (
                                ranges_without(ranges_below(ranges, end), &skipped),
                                Ok(bytes),
                            )
                        }
                        Err(e) => (ranges, Err(e)),
                    };
                    let n: i64 = ranges
                        .iter()
                        .map(|r| r.last_offset - r.first_offset + 1)
                        .sum();
                    if n > 0 {
                        left = left.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
                        broker
                            .metrics
                            .share_acquired
                            .get_or_create(&GroupTopicLabels {
                                group: group.clone(),
                                topic: h.topic.clone(),
                            })
                            .inc_by(n as u64);
                        acquired.push(Acquired {
                            handle: h.clone(),
                            ranges,
                            read,
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
        .with_node_endpoints(node_endpoints_fetch(broker))
}

pub async fn share_acknowledge(
    broker: &Broker,
    req: ShareAcknowledgeRequest,
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
        .with_node_endpoints(vec![NodeEndpoint::default()
            .with_node_id(BrokerId(broker.config.node_id))
            .with_host(s(broker.advertised_host.clone()))
            .with_port(broker.advertised_port)])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: i64, last: i64) -> AcquiredRange {
        AcquiredRange {
            first_offset: first,
            last_offset: last,
            delivery_count: 1,
        }
    }

    #[test]
    fn skipped_offsets_leave_the_acquired_ranges() {
        let got = |ranges: Vec<AcquiredRange>, skipped: &[(i64, i64)]| {
            ranges_without(ranges, skipped)
                .into_iter()
                .map(|r| (r.first_offset, r.last_offset))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(vec![r(0, 9)], &[]), vec![(0, 9)]);
        assert_eq!(got(vec![r(0, 9)], &[(3, 3), (8, 12)]), vec![(0, 2), (4, 7)]);
        assert_eq!(
            got(vec![r(0, 4), r(6, 9)], &[(-5, 0), (4, 6)]),
            vec![(1, 3), (7, 9)]
        );
        assert_eq!(got(vec![r(0, 4)], &[(0, 4)]), Vec::<(i64, i64)>::new());
        assert_eq!(got(vec![r(5, 5)], &[(0, 1), (7, 9)]), vec![(5, 5)]);
    }

    /// One batch of `n` records (control: one transaction marker) for `producer_id`.
    fn batch(n: usize, producer_id: i64, transactional: bool, control: bool) -> bytes::BytesMut {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1,
                // A COMMIT marker: key (version 0, type 1), value (version 0, epoch 0).
                key: Some(if control {
                    Bytes::from_static(&[0, 0, 0, 1])
                } else {
                    Bytes::from_static(b"k")
                }),
                value: Some(if control {
                    Bytes::from_static(&[0, 0, 0, 0, 0, 0])
                } else {
                    Bytes::from_static(b"v")
                }),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    /// A control batch in the log is left out of what a share fetch sends and reported for
    /// archiving, today and once transactions write markers.
    #[test]
    fn a_marker_in_the_log_is_never_sent() {
        use crate::replica_manager::{ReplicaConfig, ReplicaManager, Role};
        let dir = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(1, dir.path());
        let config = ReplicaConfig {
            log_config: Default::default(),
            conditional: false,
        };
        let role = Role::Leader { leader_epoch: 0 };
        let created = rm.create(Uuid::nil(), "t", 0..1, &config, role, 0).unwrap();
        let tp = created[0].tp();
        rm.install(created);
        // Replicas open pending; leadership comes with the image's state.
        rm.become_leader(tp, 0).unwrap();
        let log = rm.get(tp).unwrap();
        log.append_as_leader(&batch(3, -1, false, false), 1, None)
            .unwrap();
        // Markers come from the coordinator; a client-written control batch may be refused.
        if log
            .append_as_leader(&batch(1, 5, true, true), 1, None)
            .is_err()
        {
            let marker = crate::replica_manager::TxnMarker {
                producer_id: 5,
                producer_epoch: 0,
                commit: true,
                coordinator_epoch: 0,
            };
            log.append_marker(marker, 1).unwrap();
        }
        log.append_as_leader(&batch(2, -1, false, false), 1, None)
            .unwrap();
        assert_eq!(log.watermarks().high_watermark, 6);
        let handle = ShareHandle::new(
            SpKey {
                group: Arc::from("g"),
                topic_id: Uuid::nil(),
                partition: 0,
            },
            "t".into(),
            log,
            0,
            sluice_share::SharePartition::new(0),
        );
        let covering = read_covering(&handle, &[r(0, 5)], 1 << 20, true, &[]).unwrap();
        assert_eq!(covering.end, i64::MAX);
        assert_eq!(covering.skipped, vec![(3, 3)]);
        let sent: Vec<(i64, bool)> = sluice_storage::BatchIter::new(&covering.bytes)
            .map(|(_, h)| (h.base_offset, h.is_control()))
            .collect();
        // (The encoder may write one batch per record.)
        assert!(sent.iter().all(|(_, control)| !control), "{sent:?}");
        assert!(sent.iter().all(|(base, _)| *base != 3), "{sent:?}");
        assert!(sent.iter().any(|(base, _)| *base == 4), "{sent:?}");
        let ranges = ranges_without(ranges_below(vec![r(0, 5)], covering.end), &covering.skipped);
        let ranges: Vec<(i64, i64)> = ranges
            .iter()
            .map(|r| (r.first_offset, r.last_offset))
            .collect();
        assert_eq!(ranges, vec![(0, 2), (4, 5)]);
        // Under read_committed an aborted transaction's batch is left out as well.
        let aborted = [AbortedTxn {
            producer_id: 5,
            first_offset: 0,
            last_offset: 3,
        }];
        let covering = read_covering(&handle, &[r(0, 5)], 1 << 20, true, &aborted).unwrap();
        assert_eq!(
            covering.skipped,
            vec![(3, 3)],
            "non-transactional data is never aborted"
        );
    }

    #[test]
    fn markers_and_aborted_batches_are_never_delivered() {
        let mut h = sluice_storage::BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 1,
        };
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 20,
        }];
        h.base_offset = 12;
        h.producer_id = 7;
        h.attributes = 0;
        assert!(!never_delivered(&h, &aborted), "not transactional");
        h.attributes = 0x10;
        assert!(never_delivered(&h, &aborted));
        h.producer_id = 8;
        assert!(!never_delivered(&h, &aborted), "another producer");
        h.producer_id = 7;
        h.base_offset = 21;
        assert!(!never_delivered(&h, &aborted), "after the abort marker");
        h.attributes = 0x30;
        assert!(never_delivered(&h, &[]), "a marker");
    }
}
