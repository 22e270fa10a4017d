//! Raft messages over the cluster RPC (service 0), both directions.
//!
//! Request payload: `[u8 kind][u64 target node id][u32 json length][json][raw bytes]` (big
//! endian). Kinds: 1 AppendEntries, 2 Vote, 3 InstallSnapshot (chunk bytes travel raw after the
//! JSON, not inside it). Reply payload: `[u8 status][json]`: 0 = the response, 1 = a `RaftError`,
//! 2 = the request was refused (UTF-8 reason: malformed, or sent to the wrong node id).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::rpc::{RpcClient, RpcError, MAX_FRAME_BYTES, SERVICE_QUORUM};
use crate::types::{Raft, TypeConfig};

pub(crate) const KIND_APPEND: u8 = 1;
pub(crate) const KIND_VOTE: u8 = 2;
pub(crate) const KIND_SNAPSHOT: u8 = 3;

const STATUS_OK: u8 = 0;
const STATUS_RAFT_ERROR: u8 = 1;
const STATUS_REFUSED: u8 = 2;

/// Room left in a frame for the RPC and quorum headers.
const FRAME_SLACK: usize = 1024;

/// Encodes a quorum request.
pub fn encode_request(kind: u8, target: u64, json: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + json.len() + raw.len());
    out.push(kind);
    out.extend_from_slice(&target.to_be_bytes());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(raw);
    out
}

/// Splits a quorum request into (kind, target, json, raw).
pub fn decode_request(b: &[u8]) -> Option<(u8, u64, &[u8], &[u8])> {
    let kind = *b.first()?;
    let target = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let len = u32::from_be_bytes(b.get(9..13)?.try_into().ok()?) as usize;
    let end = 13usize.checked_add(len)?;
    Some((kind, target, b.get(13..end)?, b.get(end..)?))
}

fn reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Vec<u8> {
    let (status, json) = match r {
        Ok(v) => (STATUS_OK, serde_json::to_vec(&v)),
        Err(e) => (STATUS_RAFT_ERROR, serde_json::to_vec(&e)),
    };
    match json {
        Ok(j) => {
            let mut out = Vec::with_capacity(1 + j.len());
            out.push(status);
            out.extend_from_slice(&j);
            out
        }
        Err(e) => refused(&format!("encoding the reply: {e}")),
    }
}

fn refused(why: &str) -> Vec<u8> {
    let mut out = vec![STATUS_REFUSED];
    out.extend_from_slice(why.as_bytes());
    out
}

/// A decoded incoming quorum request.
#[derive(Debug)]
pub enum QuorumRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Decodes an incoming quorum request for node `me`; `Err` is the reason it is refused.
pub fn parse_request(me: u64, request: &[u8]) -> Result<QuorumRequest, String> {
    let Some((kind, target, json, raw)) = decode_request(request) else {
        return Err("malformed quorum request".into());
    };
    if target != me {
        return Err(format!(
            "this is node {me}, not node {target}: check --voters on every node"
        ));
    }
    match kind {
        KIND_APPEND => serde_json::from_slice(json)
            .map(QuorumRequest::AppendEntries)
            .map_err(|e| format!("malformed AppendEntries: {e}")),
        KIND_VOTE => serde_json::from_slice(json)
            .map(QuorumRequest::Vote)
            .map_err(|e| format!("malformed Vote: {e}")),
        KIND_SNAPSHOT => {
            let mut req = serde_json::from_slice::<InstallSnapshotRequest<TypeConfig>>(json)
                .map_err(|e| format!("malformed InstallSnapshot: {e}"))?;
            // openraft writes a chunk at its offset into an in-memory buffer, growing it to
            // that offset: a chunk must end within the snapshot size bound, or one request
            // could make this node allocate without limit.
            let end = u64::try_from(raw.len())
                .ok()
                .and_then(|len| req.offset.checked_add(len));
            if end.is_none_or(|end| end > crate::MAX_SNAPSHOT_BYTES as u64) {
                return Err(format!(
                    "InstallSnapshot chunk at offset {} ({} bytes) ends past the snapshot bound of {} bytes",
                    req.offset,
                    raw.len(),
                    crate::MAX_SNAPSHOT_BYTES
                ));
            }
            req.data = raw.to_vec();
            Ok(QuorumRequest::InstallSnapshot(req))
        }
        k => Err(format!("unknown quorum request kind {k}")),
    }
}

/// Serves one incoming quorum request on `raft` (node `me`).
pub(crate) async fn serve(raft: &Raft, me: u64, request: &[u8]) -> Vec<u8> {
    match parse_request(me, request) {
        Err(why) => refused(&why),
        Ok(QuorumRequest::AppendEntries(req)) => reply(raft.append_entries(req).await),
        Ok(QuorumRequest::Vote(req)) => reply(raft.vote(req).await),
        Ok(QuorumRequest::InstallSnapshot(req)) => reply(raft.install_snapshot(req).await),
    }
}

/// Creates a [`Peer`] per target.
pub(crate) struct Network {
    pub rpc: Arc<RpcClient>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            rpc: self.rpc.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// The connection to one peer (the RPC client pools the TCP connection).
pub(crate) struct Peer {
    rpc: Arc<RpcClient>,
    target: u64,
    addr: String,
}

impl Peer {
    async fn call<Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        kind: u8,
        json: Vec<u8>,
        raw: &[u8],
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>> {
        let payload = encode_request(kind, self.target, &json, raw);
        let bytes = self
            .rpc
            .call(&self.addr, SERVICE_QUORUM, &payload, timeout)
            .await
            .map_err(|e| match e {
                RpcError::Timeout(_) | RpcError::ConnectionLost { .. } => {
                    RPCError::Network(NetworkError::new(&e))
                }
                _ => RPCError::Unreachable(Unreachable::new(&e)),
            })?;
        let Some((&status, body)) = bytes.split_first() else {
            return Err(RPCError::Network(NetworkError::new(&AnyError::error(
                "empty quorum reply",
            ))));
        };
        match status {
            STATUS_OK => {
                serde_json::from_slice(body).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            STATUS_RAFT_ERROR => {
                let err: RaftError<u64, E> = serde_json::from_slice(body)
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    BasicNode::new(self.addr.clone()),
                    err,
                )))
            }
            _ => {
                let why = String::from_utf8_lossy(body).to_string();
                tracing::warn!(target = self.target, addr = %self.addr, %why, "quorum peer refused a request");
                Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(
                    why,
                ))))
            }
        }
    }
}

#[allow(clippy::result_large_err)] // openraft's own error type
fn to_json<T: Serialize, E: std::error::Error>(
    v: &T,
) -> Result<Vec<u8>, RPCError<u64, BasicNode, E>> {
    serde_json::to_vec(v).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let n = rpc.entries.len() as u64;
        let json = to_json(&rpc)?;
        if json.len() + FRAME_SLACK > MAX_FRAME_BYTES && n > 1 {
            // openraft resends fewer entries.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((n / 2).max(1)),
            ));
        }
        self.call(KIND_APPEND, json, &[], option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let data = std::mem::take(&mut rpc.data);
        let json = to_json(&rpc)?;
        self.call(KIND_SNAPSHOT, json, &data, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let json = to_json(&rpc)?;
        self.call(KIND_VOTE, json, &[], option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{SnapshotMeta, Vote};

    use super::*;

    fn snapshot_chunk(offset: u64, data: &[u8]) -> Vec<u8> {
        let req: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
            vote: Vote::new(7, 1),
            meta: SnapshotMeta::default(),
            offset,
            data: Vec::new(),
            done: false,
        };
        let json = serde_json::to_vec(&req).unwrap();
        encode_request(KIND_SNAPSHOT, 2, &json, data)
    }

    #[test]
    fn a_snapshot_chunk_must_end_within_the_snapshot_bound() {
        assert!(matches!(
            parse_request(2, &snapshot_chunk(0, b"abc")),
            Ok(QuorumRequest::InstallSnapshot(_))
        ));
        let last = crate::MAX_SNAPSHOT_BYTES as u64 - 3;
        assert!(parse_request(2, &snapshot_chunk(last, b"abc")).is_ok());
        for offset in [last + 1, 1 << 40, u64::MAX] {
            let refused = parse_request(2, &snapshot_chunk(offset, b"abc"));
            assert!(
                matches!(&refused, Err(why) if why.contains("snapshot bound")),
                "offset {offset}"
            );
        }
    }
}
