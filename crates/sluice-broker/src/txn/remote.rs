//! Transaction traffic between nodes: the cluster RPC service 3
//! (`sluice_quorum::rpc::SERVICE_COORDINATOR`), JSON [`Request`] → JSON `(error code,
//! message)`, 0 = done.
//!
//! Kafka's brokers send each other Kafka requests for this (WriteTxnMarkers from the
//! transaction coordinator to each partition's leader, and to the leader of the group's
//! `__consumer_offsets` partition; AddPartitionsToTxn verifyOnly from a partition leader to the
//! coordinator). Sluice's nodes already share the authenticated-by-membership cluster RPC
//! (`--cluster-addr`, the quorum, the controller, replica fetches: `cluster/`), so the same
//! three calls ride on it as a fourth service rather than on a Kafka client inside the broker:
//! one connection pool, no API-version negotiation, and the callee runs exactly the code a
//! local call runs:
//! - [`Request::Marker`]: a partition's marker, on its leader ([`super::write_marker_local`]:
//!   appended as the leader, answered once the in-sync replicas have it).
//! - [`Request::CompleteGroup`]: a transaction's end for a group's pending offsets, on the
//!   group coordinator (`OffsetStore::complete_txn`).
//! - [`Request::Verify`]: KIP-890 verification (and the TV2 implicit add) of a partition
//!   (Produce on its leader) or a group (TxnOffsetCommit on the group coordinator), on the
//!   transaction coordinator (`TxnCoordinator::verify_member`).
//!
//! The callee checks its own role (leader, loaded coordinator) and answers Kafka's error codes;
//! a transport failure reads COORDINATOR_NOT_AVAILABLE (retriable); markers are retried by
//! their writer, verification by the client.

use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_quorum::rpc::{BoxFuture, Handler, SERVICE_COORDINATOR};
use sluice_txn::Member;

use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::replica_manager::TxnMarker;

/// Largest request the service decodes (a transactional id, group and topic names are each at
/// most a Kafka string, 32 KiB; escaped as JSON at most 6 bytes per byte).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// How long a caller waits: the callee may wait up to `coordinator::COMMIT_TIMEOUT` for its
/// in-sync replicas, plus room for the network.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMember {
    Partition(String, i32),
    Group(String),
}

impl From<Member> for WireMember {
    fn from(m: Member) -> Self {
        match m {
            Member::Partition(t, p) => WireMember::Partition(t, p),
            Member::Group(g) => WireMember::Group(g),
        }
    }
}

impl From<WireMember> for Member {
    fn from(m: WireMember) -> Self {
        match m {
            WireMember::Partition(t, p) => Member::Partition(t, p),
            WireMember::Group(g) => Member::Group(g),
        }
    }
}

/// A request of service 3 (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Verify(super::Verification),
    Marker {
        topic: String,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    },
    CompleteGroup {
        group: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
}

/// (error code, message); code 0 = done.
type Reply = (i16, String);

fn decode_request(bytes: &[u8]) -> Result<Request, Reply> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("coordinator request of {} bytes is too large", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        (
            ResponseError::InvalidRequest.code(),
            format!("bad coordinator request: {e}"),
        )
    })
}

/// Reads a reply; an empty or undecodable one (the callee has no handler yet, or is going
/// away) is COORDINATOR_NOT_AVAILABLE, which every caller retries.
fn decode_reply(bytes: &[u8]) -> Result<(), KafkaError> {
    match serde_json::from_slice::<Reply>(bytes) {
        Ok((0, _)) => Ok(()),
        Ok((code, message)) => Err(KafkaError::new(
            ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
            message,
        )),
        Err(_) => Err(KafkaError::new(
            ResponseError::CoordinatorNotAvailable,
            "no answer from the coordinator service of that node",
        )),
    }
}

fn reply(result: Result<(), KafkaError>) -> Reply {
    match result {
        Ok(()) => (0, String::new()),
        Err(e) => (e.code, e.message),
    }
}

async fn serve(broker: &Broker, req: Request) -> Reply {
    match req {
        Request::Verify(v) => match broker.txn.verify_member(&v, now_ms()).await {
            Ok(()) => (0, String::new()),
            Err(e) => (
                e.code(),
                format!("transaction {}: {e:?}", v.transactional_id),
            ),
        },
        Request::Marker {
            topic,
            partition,
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
        } => {
            let marker = TxnMarker {
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
            };
            reply(super::write_marker_local(broker, &topic, partition, marker).await)
        }
        Request::CompleteGroup {
            group,
            producer_id,
            producer_epoch,
            commit,
        } => reply(
            broker
                .offsets
                .complete_txn(&group, producer_id, producer_epoch, commit, now_ms())
                .await,
        ),
    }
}

/// The RPC service 3 handler (registered with `Cluster::set_coordinator_handler`).
pub struct CoordinatorService {
    broker: Weak<Broker>,
}

impl CoordinatorService {
    pub fn new(broker: &Arc<Broker>) -> Arc<Self> {
        Arc::new(CoordinatorService {
            broker: Arc::downgrade(broker),
        })
    }
}

impl Handler for CoordinatorService {
    fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let answer = match (self.broker.upgrade(), decode_request(&request)) {
                (None, _) => (
                    ResponseError::CoordinatorNotAvailable.code(),
                    "shutting down".to_string(),
                ),
                (_, Err(r)) => r,
                (Some(broker), Ok(req)) => serve(&broker, req).await,
            };
            serde_json::to_vec(&answer).unwrap_or_default()
        })
    }
}

/// Sends `req` to `node`'s service 3 and waits for its answer (see [`decode_reply`]).
pub async fn call(broker: &Broker, node: i32, req: &Request) -> Result<(), KafkaError> {
    decode_reply(&send(broker, node, SERVICE_COORDINATOR, req).await?)
}

/// Sends `req` as JSON to `node`'s cluster RPC `service`, waits (at most [`CALL_TIMEOUT`]) and
/// returns the raw answer; a transport failure is COORDINATOR_NOT_AVAILABLE.
pub async fn send(
    broker: &Broker,
    node: i32,
    service: u8,
    req: &impl Serialize,
) -> Result<Vec<u8>, KafkaError> {
    let cluster = &broker.metadata.cluster;
    let unavailable = |why: String| KafkaError::new(ResponseError::CoordinatorNotAvailable, why);
    let addr = cluster
        .cluster_addr_of(node)
        .ok_or_else(|| unavailable(format!("node {node} has no cluster address")))?;
    let payload =
        serde_json::to_vec(req).map_err(|e| unavailable(format!("cannot encode: {e}")))?;
    cluster
        .rpc_client()
        .call(&addr, service, &payload, CALL_TIMEOUT)
        .await
        .map_err(|e| unavailable(format!("node {node}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request survives the wire; oversized and garbage requests are refused with
    /// INVALID_REQUEST; replies decode to the callee's code, an empty reply to a retriable
    /// COORDINATOR_NOT_AVAILABLE.
    #[test]
    fn requests_and_replies_round_trip() {
        let requests = [
            Request::Verify(super::super::Verification {
                transactional_id: "tx".into(),
                producer_id: 7,
                producer_epoch: 2,
                member: Member::Group("g".into()).into(),
                add: true,
            }),
            Request::Marker {
                topic: "t".into(),
                partition: 3,
                producer_id: 7,
                producer_epoch: 2,
                commit: false,
                coordinator_epoch: 5,
            },
            Request::CompleteGroup {
                group: "g".into(),
                producer_id: 7,
                producer_epoch: 2,
                commit: true,
            },
        ];
        for r in requests {
            let bytes = serde_json::to_vec(&r).unwrap();
            assert_eq!(decode_request(&bytes).unwrap(), r);
        }
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            decode_request(&big).unwrap_err().0,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            decode_request(b"{nope").unwrap_err().0,
            ResponseError::InvalidRequest.code()
        );
        assert!(decode_reply(&serde_json::to_vec(&reply(Ok(()))).unwrap()).is_ok());
        let fenced = KafkaError::new(ResponseError::TransactionCoordinatorFenced, "old");
        let e = decode_reply(&serde_json::to_vec(&reply(Err(fenced))).unwrap()).unwrap_err();
        assert_eq!(e.code, ResponseError::TransactionCoordinatorFenced.code());
        assert_eq!(
            decode_reply(&[]).unwrap_err().code,
            ResponseError::CoordinatorNotAvailable.code()
        );
    }
}
