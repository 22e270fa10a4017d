//! Share-group traffic between nodes: the cluster RPC service 4
//! (`sluice_quorum::rpc::SERVICE_SHARE`), a JSON [`Request`] → a JSON [`Reply`].
//!
//! Kafka's share-partition leaders reach the share coordinator with ReadShareGroupState and
//! WriteShareGroupState requests, and write dead letters with an internal producer. Sluice's
//! nodes share the cluster RPC (as the transaction coordinator does, `txn/remote.rs`), and the
//! callee runs exactly the code a local call runs:
//! - [`Request::Read`] / [`Request::Write`]: on the share coordinator
//!   (`ShareCoordinator::read` / `write`: fenced by leader epoch, answered once committed).
//! - [`Request::DeadLetters`]: a batch of dead letters for a DLQ partition, on its leader
//!   (`dlq::append_local`: appended as the leader, answered once the in-sync replicas have it).
//! - [`Request::Summary`]: a group's share-partitions and start offsets, on the share
//!   coordinator (`ShareCoordinator::summary`, Kafka's ReadShareGroupStateSummary).
//! - [`Request::AtLeader`]: an offset admin change, on the leader of the share-partitions it
//!   names (`admin::apply_local`).
//! - [`Request::DeadLettersPresent`]: which dead letters restored after a failover are already
//!   in a DLQ partition, on its leader (`dlq::present_local`).
//! - [`Request::QueueReceive`] / [`Request::QueueAck`]: the HTTP queue API's receive and
//!   acknowledgement, on the leader of the partitions they name (`queue::receive_local`,
//!   `queue::settle_local`).
//! - [`Request::Stats`]: a share group's share-partitions as an operator sees them, on each
//!   node (`admin::stats_local`).
//!
//! The callee checks its own role and answers Kafka's error codes; a transport failure reads
//! COORDINATOR_NOT_AVAILABLE, which every caller retries (bounded).

use std::sync::{Arc, Weak};

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_quorum::rpc::{BoxFuture, Handler, MAX_FRAME_BYTES, SERVICE_SHARE};
use sluice_share::{SharePartition, Snapshot};

use super::admin::{LeaderOp, PartitionStats};
use super::coordinator::StateWrite;
use super::dlq::LetterOrigin;
use super::queue::{receive_local, settle_local, Receive, Settle, Taken};
use super::state_store::{StateKey, MAX_WRITE_BATCH};
use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::limits::{MAX_API_CONSUME_BYTES, MAX_FETCH_PARTITIONS, MAX_QUEUE_RECEIVE_MESSAGES};

/// Largest request the service decodes (a frame).
pub const MAX_REQUEST_BYTES: usize = MAX_FRAME_BYTES;

/// Share-partitions in one AtLeader request (more go in several).
pub const MAX_ADMIN_KEYS: usize = 4096;

/// Offsets in one DeadLettersPresent: a share-partition's window.
const MAX_LOOKUP: usize = SharePartition::MAX_WINDOW as usize;

/// A request of service 4 (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Read {
        key: StateKey,
        leader_epoch: i32,
    },
    Write {
        writes: Vec<StateWrite>,
    },
    DeadLetters {
        topic: String,
        partition: i32,
        /// One record batch (v2), as `record_codec::encode` makes it.
        batch: Vec<u8>,
    },
    Summary {
        group: String,
    },
    AtLeader {
        op: LeaderOp,
    },
    DeadLettersPresent {
        topic: String,
        partition: i32,
        origin: LetterOrigin,
        /// At most a share-partition's window.
        offsets: Vec<i64>,
    },
    QueueReceive(Receive),
    QueueAck(Settle),
    Stats {
        group: String,
    },
}

/// The callee's answer: error code (0 = done) and message; a read's state; a write's codes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: i16,
    pub message: String,
    pub snapshot: Option<Snapshot>,
    pub codes: Vec<i16>,
    /// Summary: each share-partition with state and its start offset.
    #[serde(default)]
    pub summary: Vec<(StateKey, i64)>,
    /// DeadLettersPresent: the offsets found.
    #[serde(default)]
    pub offsets: Vec<i64>,
    /// QueueReceive: what was taken, per partition.
    #[serde(default)]
    pub taken: Vec<Taken>,
    /// Stats: the group's share-partitions on the callee.
    #[serde(default)]
    pub stats: Vec<PartitionStats>,
}

fn failed(e: KafkaError) -> Reply {
    Reply {
        code: e.code,
        message: e.message,
        ..Reply::default()
    }
}

fn decode_request(bytes: &[u8]) -> Result<Request, KafkaError> {
    let bad = |m: String| KafkaError::new(ResponseError::InvalidRequest, m);
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(bad(format!(
            "share request of {} bytes is too large",
            bytes.len()
        )));
    }
    let req: Request =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("bad share request: {e}")))?;
    match &req {
        Request::Write { writes } if writes.len() > MAX_WRITE_BATCH => Err(bad(format!(
            "{} writes in one share-state request (at most {MAX_WRITE_BATCH})",
            writes.len()
        ))),
        Request::DeadLettersPresent { offsets, .. } if offsets.len() > MAX_LOOKUP => {
            Err(bad(format!(
                "{} offsets in one dead-letter lookup (at most {MAX_LOOKUP})",
                offsets.len()
            )))
        }
        Request::QueueReceive(r)
            if r.partitions.len() > MAX_FETCH_PARTITIONS
                || r.max_records as usize > MAX_QUEUE_RECEIVE_MESSAGES
                || r.max_bytes as usize > MAX_API_CONSUME_BYTES as usize =>
        {
            Err(bad(format!(
                "queue receive of {} records, {} bytes from {} partitions is over the limits",
                r.max_records,
                r.max_bytes,
                r.partitions.len()
            )))
        }
        Request::AtLeader { op } if op.key_count() > MAX_ADMIN_KEYS => Err(bad(format!(
            "{} share-partitions in one admin request (at most {MAX_ADMIN_KEYS})",
            op.key_count()
        ))),
        _ => Ok(req),
    }
}

/// Reads a reply; an empty or undecodable one (the callee has no handler yet, or is going
/// away) is COORDINATOR_NOT_AVAILABLE.
fn decode_reply(bytes: &[u8]) -> Result<Reply, KafkaError> {
    match serde_json::from_slice::<Reply>(bytes) {
        Ok(r) if r.code == 0 => Ok(r),
        Ok(r) => Err(KafkaError::new(
            ResponseError::try_from_code(r.code).unwrap_or(ResponseError::UnknownServerError),
            r.message,
        )),
        Err(_) => Err(KafkaError::new(
            ResponseError::CoordinatorNotAvailable,
            "no answer from the share service of that node",
        )),
    }
}

async fn serve(broker: &Broker, req: Request) -> Reply {
    match req {
        Request::Read { key, leader_epoch } => {
            match broker.share.coordinator.read(&key, leader_epoch).await {
                Ok(snapshot) => Reply {
                    snapshot,
                    ..Reply::default()
                },
                Err(e) => failed(e),
            }
        }
        Request::Write { writes } => {
            match broker.share.coordinator.write(&writes, now_ms()).await {
                Ok(codes) => Reply {
                    codes,
                    ..Reply::default()
                },
                Err(e) => failed(e),
            }
        }
        Request::DeadLetters {
            topic,
            partition,
            batch,
        } => match super::dlq::append_local(broker, &topic, partition, &batch).await {
            Ok(()) => Reply::default(),
            Err(e) => failed(e),
        },
        Request::Summary { group } => match broker.share.coordinator.summary(&group).await {
            Ok(summary) => Reply {
                summary,
                ..Reply::default()
            },
            Err(e) => failed(e),
        },
        Request::AtLeader { op } => match super::admin::apply_local(broker, &op).await {
            Ok(()) => Reply::default(),
            Err(e) => failed(e),
        },
        Request::DeadLettersPresent {
            topic,
            partition,
            origin,
            offsets,
        } => match super::dlq::present_local(broker, &topic, partition, &origin, &offsets).await {
            Ok(offsets) => Reply {
                offsets,
                ..Reply::default()
            },
            Err(e) => failed(e),
        },
        Request::QueueReceive(req) => match receive_local(broker, &req).await {
            Ok(taken) => Reply {
                taken,
                ..Reply::default()
            },
            Err(e) => failed(e),
        },
        Request::QueueAck(req) => match settle_local(broker, &req).await {
            Ok(()) => Reply::default(),
            Err(e) => failed(e),
        },
        Request::Stats { group } => Reply {
            stats: super::admin::stats_local(broker, &group),
            ..Reply::default()
        },
    }
}

/// The RPC service 4 handler (registered with `Cluster::set_share_handler`).
pub struct ShareRpcService {
    broker: Weak<Broker>,
}

impl ShareRpcService {
    pub fn new(broker: &Arc<Broker>) -> Arc<Self> {
        Arc::new(ShareRpcService {
            broker: Arc::downgrade(broker),
        })
    }
}

impl Handler for ShareRpcService {
    fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let answer = match (self.broker.upgrade(), decode_request(&request)) {
                (None, _) => failed(KafkaError::new(
                    ResponseError::CoordinatorNotAvailable,
                    "shutting down",
                )),
                (_, Err(e)) => failed(e),
                (Some(broker), Ok(req)) => serve(&broker, req).await,
            };
            serde_json::to_vec(&answer).unwrap_or_default()
        })
    }
}

/// Sends `req` to `node`'s service 4 and waits for its answer (at most
/// `txn::remote::CALL_TIMEOUT`: the callee may wait up to `coordinator::COMMIT_TIMEOUT` for its
/// in-sync replicas, plus room for the network).
async fn call(broker: &Broker, node: i32, req: &Request) -> Result<Reply, KafkaError> {
    decode_reply(&crate::txn::remote::send(broker, node, SERVICE_SHARE, req).await?)
}

/// ReadShareGroupState on `node`.
pub async fn read(
    broker: &Broker,
    node: i32,
    key: &StateKey,
    leader_epoch: i32,
) -> Result<Option<Snapshot>, KafkaError> {
    let req = Request::Read {
        key: key.clone(),
        leader_epoch,
    };
    Ok(call(broker, node, &req).await?.snapshot)
}

/// WriteShareGroupState on `node`: one code per write.
pub async fn write(
    broker: &Broker,
    node: i32,
    writes: &[StateWrite],
) -> Result<Vec<i16>, KafkaError> {
    let req = Request::Write {
        writes: writes.to_vec(),
    };
    let codes = call(broker, node, &req).await?.codes;
    if codes.len() != writes.len() {
        return Err(KafkaError::new(
            ResponseError::CoordinatorNotAvailable,
            "the share coordinator answered a different number of writes",
        ));
    }
    Ok(codes)
}

/// Dead letters to the leader of a DLQ partition on `node`.
pub async fn dead_letters(
    broker: &Broker,
    node: i32,
    topic: &str,
    partition: i32,
    batch: &[u8],
) -> Result<(), KafkaError> {
    let req = Request::DeadLetters {
        topic: topic.to_string(),
        partition,
        batch: batch.to_vec(),
    };
    call(broker, node, &req).await.map(|_| ())
}

/// A group's share-partitions and start offsets from the share coordinator on `node`.
pub async fn summary(
    broker: &Broker,
    node: i32,
    group: &str,
) -> Result<Vec<(StateKey, i64)>, KafkaError> {
    let req = Request::Summary {
        group: group.to_string(),
    };
    Ok(call(broker, node, &req).await?.summary)
}

/// An offset admin change on `node`, the leader of the share-partitions it names.
pub async fn at_leader(broker: &Broker, node: i32, op: &LeaderOp) -> Result<(), KafkaError> {
    let req = Request::AtLeader { op: op.clone() };
    call(broker, node, &req).await.map(|_| ())
}

/// Which of `offsets` (dead letters of `origin`) are already in the DLQ partition whose
/// leader is `node`.
pub async fn dead_letters_present(
    broker: &Broker,
    node: i32,
    topic: &str,
    partition: i32,
    origin: &LetterOrigin,
    offsets: &[i64],
) -> Result<Vec<i64>, KafkaError> {
    let req = Request::DeadLettersPresent {
        topic: topic.to_string(),
        partition,
        origin: origin.clone(),
        offsets: offsets.to_vec(),
    };
    Ok(call(broker, node, &req).await?.offsets)
}

/// A queue API receive on `node`, the leader of its partitions (`queue::receive_local`).
pub async fn queue_receive(
    broker: &Broker,
    node: i32,
    req: &Receive,
) -> Result<Vec<Taken>, KafkaError> {
    let req = Request::QueueReceive(req.clone());
    Ok(call(broker, node, &req).await?.taken)
}

/// The share-partitions of `group` that `node` holds (`admin::stats_local`).
pub async fn stats(
    broker: &Broker,
    node: i32,
    group: &str,
) -> Result<Vec<PartitionStats>, KafkaError> {
    let req = Request::Stats {
        group: group.to_string(),
    };
    Ok(call(broker, node, &req).await?.stats)
}

/// A queue API acknowledgement on `node`, the partition's leader (`queue::settle_local`).
pub async fn queue_settle(broker: &Broker, node: i32, req: &Settle) -> Result<(), KafkaError> {
    let req = Request::QueueAck(req.clone());
    call(broker, node, &req).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request survives the wire; oversized, over-long and garbage requests are refused
    /// with INVALID_REQUEST; an empty reply is a retriable COORDINATOR_NOT_AVAILABLE.
    #[test]
    fn requests_and_replies_round_trip() {
        let key = StateKey {
            group: "g".into(),
            topic_id: uuid::Uuid::new_v4(),
            partition: 2,
        };
        let write = StateWrite {
            key: key.clone(),
            snapshot: Some(sluice_share::SharePartition::new(4).snapshot()),
            leader_epoch: 3,
        };
        let requests = [
            Request::Read {
                key: key.clone(),
                leader_epoch: 1,
            },
            Request::Write {
                writes: vec![write.clone()],
            },
            Request::DeadLetters {
                topic: "dlq.g".into(),
                partition: 0,
                batch: vec![1, 2, 3],
            },
            Request::Summary { group: "g".into() },
            Request::AtLeader {
                op: LeaderOp::Reset {
                    key: key.clone(),
                    offset: 5,
                },
            },
            Request::AtLeader {
                op: LeaderOp::Remove {
                    keys: vec![key.clone()],
                },
            },
            Request::DeadLettersPresent {
                topic: "dlq.g".into(),
                partition: 1,
                origin: LetterOrigin {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 2,
                },
                offsets: vec![7, 9],
            },
        ];
        for r in requests {
            let bytes = serde_json::to_vec(&r).unwrap();
            assert_eq!(decode_request(&bytes).unwrap(), r);
        }
        let too_many = Request::Write {
            writes: vec![write; MAX_WRITE_BATCH + 1],
        };
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(
            decode_request(&serde_json::to_vec(&too_many).unwrap())
                .unwrap_err()
                .code,
            invalid
        );
        let too_long = Request::DeadLettersPresent {
            topic: "dlq.g".into(),
            partition: 0,
            origin: LetterOrigin {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
            },
            offsets: vec![0; MAX_LOOKUP + 1],
        };
        assert_eq!(
            decode_request(&serde_json::to_vec(&too_long).unwrap())
                .unwrap_err()
                .code,
            invalid
        );
        let too_wide = Request::AtLeader {
            op: LeaderOp::Remove {
                keys: vec![key.clone(); MAX_ADMIN_KEYS + 1],
            },
        };
        assert_eq!(
            decode_request(&serde_json::to_vec(&too_wide).unwrap())
                .unwrap_err()
                .code,
            invalid
        );
        assert_eq!(decode_request(b"{nope").unwrap_err().code, invalid);
        let fenced = failed(KafkaError::new(ResponseError::FencedLeaderEpoch, "old"));
        let e = decode_reply(&serde_json::to_vec(&fenced).unwrap()).unwrap_err();
        assert_eq!(e.code, ResponseError::FencedLeaderEpoch.code());
        assert_eq!(
            decode_reply(&[]).unwrap_err().code,
            ResponseError::CoordinatorNotAvailable.code()
        );
    }
}
