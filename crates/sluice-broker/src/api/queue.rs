//! The queue API, shaped like SQS, over share groups (docs/HTTP_API.md, "Queues"):
//! - `POST /v1/queues/{group}/receive` takes up to `max_messages` records of a topic for the
//!   share group, each under the group's acquisition lock (`share.record.lock.duration.ms`),
//!   waiting up to `wait_ms` for one (SQS's long poll);
//! - each message carries an opaque `receipt`; `POST /v1/queues/{group}/messages/{receipt}/
//!   {accept|release|reject|renew}` settles it (SQS's DeleteMessage, ChangeMessageVisibility to
//!   0, a permanent failure to the dead-letter queue, a longer lock), and
//!   `POST /v1/queues/{group}/acknowledge` settles many, reporting each (SQS's batch calls);
//! - a stale receipt (lock expired, record settled already, partition moved) is refused with
//!   409 / 40903 and changes nothing.
//!
//! Unlike the rest of `/v1` this is not a Kafka client of the cluster: the Kafka protocol has
//! no per-record lock renewal before ShareAcknowledge v2, and a share consumer's session could
//! not outlive one HTTP call. The work runs on each partition's leader (`share::queue`), in
//! the same share-partitions a Kafka share consumer of the group uses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_share::AckType;
use uuid::Uuid;

use super::records::record_json;
use super::{Api, ApiError, ApiJson, ApiPath, Encoding};
use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::limits::{
    MAX_API_CONSUME_BYTES, MAX_QUEUE_ACKS, MAX_QUEUE_RECEIVE_MESSAGES, MAX_QUEUE_WAIT_MS,
    QUEUE_REMOTE_POLL_MS,
};
use crate::security::http::Caller;
use crate::share::queue::{self, Taken};
use sluice_acl::{AclOperation, ResourceType};

/// The receipt format's version (its first byte).
const RECEIPT_VERSION: u8 = 1;
/// version, node, topic id, partition, offset, member token.
const RECEIPT_BYTES: usize = 1 + 4 + 16 + 4 + 8 + 16;

/// Where a received record is and who holds it: what a receipt encodes (base64url). The
/// token is the secret part: a 128-bit random value naming the receive's member, without
/// which no one can settle what that receive took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Receipt {
    node: i32,
    topic_id: Uuid,
    partition: i32,
    offset: i64,
    token: [u8; 16],
}

impl Receipt {
    fn encode(&self) -> String {
        let mut b = Vec::with_capacity(RECEIPT_BYTES);
        b.push(RECEIPT_VERSION);
        b.extend_from_slice(&self.node.to_be_bytes());
        b.extend_from_slice(self.topic_id.as_bytes());
        b.extend_from_slice(&self.partition.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.token);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn decode(text: &str) -> Result<Receipt, ApiError> {
        let bad = || ApiError::invalid("not a receipt of this API");
        // Bounded before decoding: a receipt is 66 characters.
        if text.len() > RECEIPT_BYTES * 2 {
            return Err(bad());
        }
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        if b.len() != RECEIPT_BYTES || b[0] != RECEIPT_VERSION {
            return Err(bad());
        }
        let arr = |from: usize| -> [u8; 16] {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[from..from + 16]);
            a
        };
        let four = |from: usize| [b[from], b[from + 1], b[from + 2], b[from + 3]];
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&b[25..33]);
        Ok(Receipt {
            node: i32::from_be_bytes(four(1)),
            topic_id: Uuid::from_bytes(arr(5)),
            partition: i32::from_be_bytes(four(21)),
            offset: i64::from_be_bytes(eight),
            token: arr(33),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    topic: String,
    /// 1 to `MAX_QUEUE_RECEIVE_MESSAGES` (default 1).
    max_messages: Option<u32>,
    /// 0 to `MAX_QUEUE_WAIT_MS` (default 0: answer at once).
    wait_ms: Option<u64>,
    #[serde(default)]
    encoding: Encoding,
}

/// Which partition the next receive starts at, so a small `max_messages` does not always
/// drain partition 0 first.
static ROTATE: AtomicUsize = AtomicUsize::new(0);

/// `POST /v1/queues/{group}/receive`.
pub async fn receive(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(group): ApiPath<String>,
    ApiJson(req): ApiJson<Receive>,
) -> Result<Json<Value>, ApiError> {
    let broker = &api.broker;
    // What ShareFetch needs: READ on the group and on the topic (before anything about them
    // is told).
    api.authorize(&caller, AclOperation::Read, ResourceType::Group, &group)?;
    api.authorize(&caller, AclOperation::Read, ResourceType::Topic, &req.topic)?;
    check_group(broker, &group)?;
    let max = req.max_messages.unwrap_or(1);
    if max == 0 || max as usize > MAX_QUEUE_RECEIVE_MESSAGES {
        return Err(ApiError::invalid(format!(
            "max_messages is 1 to {MAX_QUEUE_RECEIVE_MESSAGES}"
        )));
    }
    let wait_ms = req.wait_ms.unwrap_or(0);
    if wait_ms > MAX_QUEUE_WAIT_MS {
        return Err(ApiError::invalid(format!(
            "wait_ms is 0 to {MAX_QUEUE_WAIT_MS}"
        )));
    }
    let topic = broker
        .metadata
        .topic(&req.topic)
        .ok_or_else(|| ApiError::new(40401, format!("topic {} does not exist", req.topic)))?;
    let token: [u8; 16] = *Uuid::new_v4().as_bytes();
    let member = queue::member_id(&token);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut lock_expires: Option<u64> = None;
    let messages = loop {
        // Registered before looking, so a record appended or released in between wakes us.
        let appended = broker.data_appended.notified();
        let available = broker.share.available.notified();
        let (taken, any_remote) = receive_round(broker, &group, &topic, &member, max).await?;
        let mut messages = Vec::new();
        for (node, mut t) in taken {
            lock_expires =
                Some(lock_expires.map_or(t.lock_deadline_ms, |d| d.min(t.lock_deadline_ms)));
            let records = sluice_client::records::decode_fetched(bytes::Bytes::from(
                std::mem::take(&mut t.batches),
            ))
            .map_err(|e| ApiError::new(50001, format!("stored batch unreadable: {e}")))?;
            let mut seen = std::collections::BTreeSet::new();
            for r in records {
                let Some(&(_, _, count)) = t
                    .ranges
                    .iter()
                    .find(|(first, last, _)| (*first..=*last).contains(&r.offset))
                else {
                    continue;
                };
                seen.insert(r.offset);
                let receipt = Receipt {
                    node,
                    topic_id: topic.id,
                    partition: t.partition,
                    offset: r.offset,
                    token,
                };
                let mut m = record_json(&r, req.encoding);
                if let Some(o) = m.as_object_mut() {
                    o.insert("receipt".into(), json!(receipt.encode()));
                    o.insert("topic".into(), json!(topic.name));
                    o.insert("partition".into(), json!(t.partition));
                    o.insert("delivery_count".into(), json!(count));
                }
                messages.push(m);
            }
            settle_gaps(broker, &group, topic.id, node, &t, &seen, &member).await;
        }
        let now = tokio::time::Instant::now();
        if !messages.is_empty() || now >= deadline {
            break messages;
        }
        let wake = if any_remote {
            deadline.min(now + Duration::from_millis(QUEUE_REMOTE_POLL_MS))
        } else {
            deadline
        };
        tokio::select! {
            _ = appended => {}
            _ = available => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    };
    let lock_expires = match lock_expires {
        Some(d) => i64::try_from(d).unwrap_or(i64::MAX),
        None => {
            let settings = broker.metadata.share_settings(&group);
            now_ms().saturating_add(i64::try_from(settings.share.lock_duration_ms).unwrap_or(0))
        }
    };
    Ok(Json(json!({
        "messages": messages,
        "lock_expires_at_ms": lock_expires,
    })))
}

/// The acquired offsets of `ranges` (first, last, delivery count) that hold no record in
/// `seen`, as runs. At most `MAX_QUEUE_RECEIVE_MESSAGES` offsets are acquired per receive.
fn gap_runs(ranges: &[(i64, i64, u16)], seen: &std::collections::BTreeSet<i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &(first, last, _) in ranges {
        for o in first..=last {
            if seen.contains(&o) {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.1.checked_add(1) == Some(o) => r.1 = o,
                _ => runs.push((o, o)),
            }
        }
    }
    runs
}

/// Offsets a receive took that hold no record (removed by compaction) are acknowledged as gaps,
/// as a Kafka share consumer does, so they do not come back until the delivery limit.
async fn settle_gaps(
    broker: &Broker,
    group: &str,
    topic_id: Uuid,
    node: i32,
    t: &Taken,
    seen: &std::collections::BTreeSet<i64>,
    member: &str,
) {
    for (first, last) in gap_runs(&t.ranges, seen) {
        let req = queue::Settle {
            group: group.to_string(),
            topic_id,
            partition: t.partition,
            member: member.to_string(),
            offset: first,
            last,
            ack_type: AckType::Gap as i8,
        };
        if let Err(e) = queue::settle(broker, node, &req).await {
            tracing::warn!(error = %e, "acknowledging a gap failed; its lock will expire");
        }
    }
}

/// One look at every partition of `topic`, each on its leader: what was taken (with the node
/// that holds its locks), and whether any partition is led elsewhere.
async fn receive_round(
    broker: &Broker,
    group: &str,
    topic: &crate::metadata::Topic,
    member: &str,
    max: u32,
) -> Result<(Vec<(i32, Taken)>, bool), ApiError> {
    let count = usize::try_from(topic.partition_count).unwrap_or(0);
    let start = ROTATE.fetch_add(1, Ordering::Relaxed) % count.max(1);
    // Partitions grouped by leader, in the rotated order; partitions without a leader wait.
    let mut by_node: Vec<(i32, Vec<i32>)> = Vec::new();
    for i in 0..count {
        let p = ((start + i) % count) as i32;
        let Ok(node) = broker.metadata.leader_of(&topic.name, p) else {
            continue;
        };
        match by_node.iter_mut().find(|(n, _)| *n == node) {
            Some((_, ps)) => ps.push(p),
            None => by_node.push((node, vec![p])),
        }
    }
    let any_remote = by_node.iter().any(|(n, _)| *n != broker.config.node_id);
    let mut out = Vec::new();
    let mut left = max;
    // One byte budget for the whole receive, whatever the number of leaders.
    let mut room = MAX_API_CONSUME_BYTES.unsigned_abs();
    let mut first_error = None;
    let mut answered = false;
    for (node, partitions) in by_node {
        if left == 0 || room == 0 {
            break;
        }
        let req = queue::Receive {
            group: group.to_string(),
            topic_id: topic.id,
            partitions,
            member: member.to_string(),
            max_records: left,
            max_bytes: room,
        };
        // A leader that fails is skipped; the others may have records.
        match queue::receive(broker, node, &req).await {
            Ok(taken) => {
                answered = true;
                for t in taken {
                    let n: i64 = t.ranges.iter().map(|(f, l, _)| l - f + 1).sum();
                    left = left.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
                    room = room.saturating_sub(u32::try_from(t.batches.len()).unwrap_or(u32::MAX));
                    out.push((node, t));
                }
            }
            Err(e) => {
                tracing::warn!(node, error = %e, "queue receive on a leader failed");
                first_error.get_or_insert(e);
            }
        }
    }
    // Only when every leader failed is the receive an error.
    match first_error {
        Some(e) if !answered => Err(kafka_error(e)),
        _ => Ok((out, any_remote)),
    }
}

/// The queue API's share group: a group of another type is refused (the group coordinator's
/// node knows; elsewhere the check is left to it).
fn check_group(broker: &Broker, group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ApiError::invalid("the group id is empty"));
    }
    if broker.offsets.check().is_ok() && !broker.groups.read(|c| c.is_share_group_or_unused(group))
    {
        return Err(ApiError::new(
            40902,
            format!("group {group} is a consumer group, not a share group"),
        ));
    }
    Ok(())
}

/// A Kafka error from a leader as an API error: a stale receipt is 40903.
fn kafka_error(e: KafkaError) -> ApiError {
    use kafka_protocol::error::ResponseError as R;
    let code = match R::try_from_code(e.code) {
        Some(R::InvalidRecordState | R::NotLeaderOrFollower | R::FencedLeaderEpoch) => 40903,
        Some(R::UnknownTopicOrPartition | R::UnknownTopicId) => 40401,
        Some(R::InvalidRequest) => 40001,
        Some(
            R::CoordinatorNotAvailable
            | R::LeaderNotAvailable
            | R::NotCoordinator
            | R::RequestTimedOut,
        ) => 50301,
        _ => 50001,
    };
    let message = if code == 40903 {
        format!("stale receipt: {}", e.message)
    } else {
        e.message
    };
    ApiError::new(code, message)
}

/// What settling a receipt does.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Done: never delivered again (SQS's DeleteMessage).
    Accept,
    /// Deliver again, counting this delivery (SQS's ChangeMessageVisibility to 0).
    Release,
    /// A permanent failure: to the group's dead-letter queue.
    Reject,
    /// Hold the lock for another `share.record.lock.duration.ms` from now.
    Renew,
}

impl Action {
    fn ack_type(self) -> AckType {
        match self {
            Action::Accept => AckType::Accept,
            Action::Release => AckType::Release,
            Action::Reject => AckType::Reject,
            Action::Renew => AckType::Renew,
        }
    }
}

/// Settles one receipt on the node holding its lock.
async fn settle(
    broker: &Broker,
    group: &str,
    receipt: &str,
    action: Action,
) -> Result<(), ApiError> {
    let r = Receipt::decode(receipt)?;
    let req = queue::Settle {
        group: group.to_string(),
        topic_id: r.topic_id,
        partition: r.partition,
        member: queue::member_id(&r.token),
        offset: r.offset,
        last: r.offset,
        ack_type: action.ack_type() as i8,
    };
    // The node holding the lock is gone: its locks went with it, the record comes back.
    let live = r.node == broker.config.node_id
        || broker
            .metadata
            .cluster
            .state
            .read(|img| img.live_brokers().any(|b| b.node_id == r.node));
    if !live {
        return Err(ApiError::new(
            40903,
            format!(
                "stale receipt: node {} that held its lock is not a live broker",
                r.node
            ),
        ));
    }
    let settled = queue::settle(broker, r.node, &req).await;
    settled.map_err(kafka_error)
}

/// `POST /v1/queues/{group}/messages/{receipt}/{action}`: 204, or 409 for a stale receipt.
pub async fn settle_one(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath((group, receipt, action)): ApiPath<(String, String, Action)>,
) -> Result<Response, ApiError> {
    // What ShareAcknowledge needs.
    api.authorize(&caller, AclOperation::Read, ResourceType::Group, &group)?;
    check_group(&api.broker, &group)?;
    settle(&api.broker, &group, &receipt, action).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    receipt: String,
    action: Action,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    acknowledgements: Vec<Acknowledgement>,
}

/// `POST /v1/queues/{group}/acknowledge`: each acknowledgement applied on its own; the answer
/// lists those that succeeded and those that failed (SQS's batch shape).
pub async fn acknowledge(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(group): ApiPath<String>,
    ApiJson(req): ApiJson<Acknowledge>,
) -> Result<Json<Value>, ApiError> {
    api.authorize(&caller, AclOperation::Read, ResourceType::Group, &group)?;
    check_group(&api.broker, &group)?;
    if req.acknowledgements.is_empty() || req.acknowledgements.len() > MAX_QUEUE_ACKS {
        return Err(ApiError::invalid(format!(
            "1 to {MAX_QUEUE_ACKS} acknowledgements"
        )));
    }
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for a in req.acknowledgements {
        match settle(&api.broker, &group, &a.receipt, a.action).await {
            Ok(()) => succeeded.push(json!(a.receipt)),
            Err(e) => failed.push(json!({
                "receipt": a.receipt,
                "error_code": e.code,
                "message": e.message,
            })),
        }
    }
    Ok(Json(json!({"succeeded": succeeded, "failed": failed})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_the_acquired_offsets_without_records() {
        let seen: std::collections::BTreeSet<i64> = [1, 2, 5, 9].into_iter().collect();
        assert_eq!(
            gap_runs(&[(0, 6, 1), (8, 10, 2)], &seen),
            vec![(0, 0), (3, 4), (6, 6), (8, 8), (10, 10)]
        );
        assert!(gap_runs(&[(1, 2, 1)], &seen).is_empty());
    }

    #[test]
    fn receipts_round_trip_and_garbage_is_refused() {
        let r = Receipt {
            node: 3,
            topic_id: Uuid::new_v4(),
            partition: 7,
            offset: i64::MAX - 1,
            token: [9; 16],
        };
        let text = r.encode();
        assert_eq!(text.len(), 66);
        assert_eq!(Receipt::decode(&text).unwrap(), r);
        for bad in ["", "x", &text[1..], &format!("{text}AA"), &"A".repeat(5000)] {
            assert_eq!(Receipt::decode(bad).unwrap_err().code, 40001, "{bad}");
        }
        // Another version byte.
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&text)
            .unwrap();
        raw[0] = 2;
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(Receipt::decode(&other).unwrap_err().code, 40001);
    }
}
