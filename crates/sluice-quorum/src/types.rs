//! openraft's type configuration for the quorum.

use std::io::Cursor;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One proposed command: opaque bytes the application's [`crate::StateMachine`] understands.
/// On the wire (JSON inside quorum frames) it travels as a base64 string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command(pub Vec<u8>);

/// What applying a command returned: the application's reply bytes (empty for blank and
/// membership entries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply(pub Vec<u8>);

fn ser_b64<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
}

fn de_b64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() > crate::codec::MAX_COMMAND_BYTES.saturating_mul(4) / 3 + 4 {
        return Err(serde::de::Error::custom("command too large"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(serde::de::Error::custom)
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_b64(&self.0, s)
    }
}
impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_b64(d).map(Command)
    }
}
impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_b64(&self.0, s)
    }
}
impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_b64(d).map(Reply)
    }
}

openraft::declare_raft_types!(
    /// The quorum's openraft types: `u64` node ids, `BasicNode { addr }` (the cluster address),
    /// opaque commands, snapshots as bytes in memory.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of the quorum.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of the quorum.
pub type LogId = openraft::LogId<u64>;
/// openraft's handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// The snapshot meta of the quorum.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
/// The membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
/// A storage error.
pub type StorageError = openraft::StorageError<u64>;
