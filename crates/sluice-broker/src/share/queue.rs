//! The HTTP queue API's work on a share-partition leader (`api/queue.rs` is its edge): take
//! records for a one-time member, and acknowledge one record for it. Called in-process when
//! this node leads the partition, else over the share RPC (`remote.rs`:
//! [`super::remote::Request::QueueReceive`] / [`super::remote::Request::QueueAck`]) on its
//! leader. Both go through [`super::serve`], the code ShareFetch and ShareAcknowledge run: the
//! queue API sees the same records, locks, delivery counts and dead-letter queue as a Kafka
//! share consumer of the group.
//!
//! Each receive acquires under a member id of its own (`sluice-queue-` and 32 hex digits of a
//! random token). Only a receipt carrying that token can acknowledge what it acquired, and a
//! lock that expired, a record acknowledged already, or a partition whose leader changed (its
//! locks are not carried over) all fail the acknowledgement with INVALID_RECORD_STATE or
//! NOT_LEADER_OR_FOLLOWER: the receipt is stale.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_share::{AckType, MemberId};
use uuid::Uuid;

use super::serve::{self, leads};
use super::SpKey;
use crate::broker::Broker;
use crate::error::KafkaError;

/// Member ids of queue API receives start with this.
pub const MEMBER_PREFIX: &str = "sluice-queue-";

/// How many times one receive looks again at once after archiving records unseen (markers,
/// aborted transactions) before it answers with what it has.
const MAX_ARCHIVED_RETRIES: usize = 4;

/// The member id of a receive's token.
pub fn member_id(token: &[u8; 16]) -> String {
    let mut id = String::with_capacity(MEMBER_PREFIX.len() + 32);
    id.push_str(MEMBER_PREFIX);
    for b in token {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// What one receive took from one partition: the acquired offset ranges (first, last,
/// delivery count) and the stored batches holding them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub partition: i32,
    /// When the locks of what was taken expire (ms since the epoch, the leader's clock).
    #[serde(default)]
    pub lock_deadline_ms: u64,
    pub ranges: Vec<(i64, i64, u16)>,
    #[serde(with = "sluice_group::base64_bytes")]
    pub batches: Vec<u8>,
}

/// A receive on one leader: up to `max_records` records of `group`'s share-partitions of
/// `topic_id` for `member`, from those of `partitions` the node leads, within `max_bytes` of
/// stored batches. Also the share RPC's request ([`super::remote::Request::QueueReceive`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receive {
    pub group: String,
    pub topic_id: Uuid,
    /// At most `MAX_FETCH_PARTITIONS`.
    pub partitions: Vec<i32>,
    pub member: String,
    /// At most `MAX_QUEUE_RECEIVE_MESSAGES`.
    pub max_records: u32,
    /// At most `MAX_API_CONSUME_BYTES`.
    pub max_bytes: u32,
}

/// One acknowledgement (`accept`, `release`, `reject` or `renew`, Kafka's codes; `gap` for
/// acquired offsets that hold no record) of `member` for `offset..=last`. Also the share RPC's
/// request ([`super::remote::Request::QueueAck`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub member: String,
    pub offset: i64,
    /// The last offset settled (a receipt settles one: `offset`).
    pub last: i64,
    pub ack_type: i8,
}

/// Runs `req` on `node`: in-process when it is this node, else over the share RPC.
pub async fn receive(broker: &Broker, node: i32, req: &Receive) -> Result<Vec<Taken>, KafkaError> {
    if node == broker.config.node_id {
        receive_local(broker, req).await
    } else {
        super::remote::queue_receive(broker, node, req).await
    }
}

/// Runs `req` on `node`: in-process when it is this node, else over the share RPC.
pub async fn settle(broker: &Broker, node: i32, req: &Settle) -> Result<(), KafkaError> {
    if node == broker.config.node_id {
        settle_local(broker, req).await
    } else {
        super::remote::queue_settle(broker, node, req).await
    }
}

/// [`Receive`] on this node; answers once what it took is durable.
pub async fn receive_local(broker: &Broker, req: &Receive) -> Result<Vec<Taken>, KafkaError> {
    if !req.member.starts_with(MEMBER_PREFIX) {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            "not a queue API member",
        ));
    }
    let (group, topic_id) = (req.group.as_str(), req.topic_id);
    let max_bytes = req.max_bytes as usize;
    let settings = broker.metadata.share_settings(group);
    let member: MemberId = Arc::from(req.member.as_str());
    let mut taken: Vec<(Arc<super::ShareHandle>, serve::Taken)> = Vec::new();
    let mut logged_end = 0i64;
    let mut left = req.max_records;
    let mut sent = 0usize;
    let mut first_error: Option<KafkaError> = None;
    for &partition in &req.partitions {
        if left == 0 || sent >= max_bytes {
            break;
        }
        if !leads(broker, topic_id, partition) {
            continue;
        }
        let key = SpKey {
            group: Arc::from(group),
            topic_id,
            partition,
        };
        // A partition that cannot be served now is skipped: what earlier ones took still goes
        // out (an error here would leave it locked and unseen until its locks expire).
        let h = match broker
            .share
            .get_or_start_creating(broker, &key, &settings)
            .await
        {
            Ok(h) => h,
            Err(e) if taken.is_empty() && first_error.is_none() => {
                first_error = Some(e);
                continue;
            }
            Err(e) => {
                tracing::warn!(partition, error = %e, "queue receive skipped a partition");
                continue;
            }
        };
        logged_end = logged_end.max(h.logged_end());
        for _ in 0..=MAX_ARCHIVED_RETRIES {
            let room = max_bytes.saturating_sub(sent);
            let Some(t) = serve::take(
                broker,
                &h,
                &member,
                left,
                &settings,
                room,
                taken.is_empty(),
                false,
            ) else {
                break;
            };
            let archived = t.archived_at.is_some();
            logged_end = logged_end.max(t.archived_at.unwrap_or(0));
            let n = serve::count(&t.ranges);
            let full = t.full;
            if let Ok(bytes) = &t.read {
                sent = sent.saturating_add(bytes.len());
            }
            if n > 0 {
                left = left.saturating_sub(n);
                taken.push((h.clone(), t));
            }
            if n > 0 || full || !archived || left == 0 {
                break;
            }
        }
    }
    let end = taken
        .iter()
        .map(|(h, _)| h.logged_end())
        .fold(logged_end, i64::max);
    broker.share.store.durable(end).await?;
    let mut out = Vec::with_capacity(taken.len());
    for (h, t) in taken {
        let read = h.check_current().and(t.read);
        match read {
            Ok(batches) => out.push(Taken {
                partition: h.key.partition,
                lock_deadline_ms: t.deadline,
                ranges: t
                    .ranges
                    .iter()
                    .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
                    .collect(),
                batches,
            }),
            // The records stay acquired and come back when their lock expires.
            Err(e) => {
                tracing::warn!(topic = %h.topic, partition = h.key.partition, error = %e, "queue receive read failed")
            }
        }
    }
    match first_error {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// [`Settle`] on this node; answers once it is durable. A stale receipt's error is
/// INVALID_RECORD_STATE (or NOT_LEADER_OR_FOLLOWER when the partition moved).
pub async fn settle_local(broker: &Broker, req: &Settle) -> Result<(), KafkaError> {
    let ack = AckType::try_from(req.ack_type)
        .map_err(|e| KafkaError::new(ResponseError::InvalidRequest, e.message().to_string()))?;
    // One record per acknowledgement, but for gaps (offsets a receive took that hold no
    // record: compaction), which go as runs.
    let one = req.last == req.offset;
    let in_order = req.last >= req.offset;
    if !req.member.starts_with(MEMBER_PREFIX) || !in_order || (!one && ack != AckType::Gap) {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            "not a queue API acknowledgement",
        ));
    }
    let settings = broker.metadata.share_settings(&req.group);
    let member: MemberId = Arc::from(req.member.as_str());
    let acks = vec![(
        (req.topic_id, req.partition),
        vec![(req.offset, req.last, vec![req.ack_type])],
    )];
    let results = serve::apply_acks(broker, &req.group, &member, acks, &settings, true).await;
    match results.into_values().next() {
        Some((0, _)) | None => Ok(()),
        Some((code, message)) => Err(KafkaError::new(
            ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
            message.unwrap_or_default(),
        )),
    }
}
