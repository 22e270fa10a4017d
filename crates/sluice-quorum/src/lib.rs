//! The metadata quorum of a Sluice cluster: Raft (openraft 0.9.25) over opaque commands, its
//! on-disk log, and the cluster RPC every broker↔broker message rides on.
//!
//! (Module docs: see the end of this comment block, written last.)
//!
//! DOCS_PLACEHOLDER

mod codec;
mod network;
pub mod rpc;
mod sm;
mod store;
mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use codec::{
    decode_entry_body, decode_file, decode_snapshot, scan_record, scan_segment, DecodeError, Scan,
    SegmentScan, MAX_COMMAND_BYTES, MAX_RECORD_BYTES, MAX_SMALL_FILE_BYTES, MAX_SNAPSHOT_BYTES,
};
pub use network::decode_request as decode_quorum_request;
pub use store::{SEGMENT_MAX_BYTES, SEGMENT_MAX_ENTRIES};
pub use types::{Command, Reply, TypeConfig};

/// Default bound on how long `propose` and `read_barrier` wait before answering
/// [`ProposeError::Timeout`].
pub const DEFAULT_PROPOSE_TIMEOUT_MS: u64 = 10_000;
/// Most entries per AppendEntries (openraft's `max_payload_entries`); a batch whose encoding
/// exceeds the RPC frame cap is halved on the way out.
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;
/// Snapshot bytes per InstallSnapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Bound on how long a single-voter `open` waits to become leader.
const SINGLE_VOTER_LEADER_WAIT: Duration = Duration::from_secs(30);

const IDENTITY_FILE: &str = "identity";

/// The application's state machine. Commands are applied in log order, exactly once per
/// incarnation of the state (a restart restores the latest snapshot, then re-applies the
/// committed entries after it).
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one committed command (deterministic). Returns the reply bytes for the proposer.
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The whole state, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot's.
    fn restore(&self, snapshot: &[u8]) -> Result<(), String>;
}

/// How to run this node's quorum member.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: u64,
    /// The voters, node id → cluster address `host:port`, identical on every node. Empty means
    /// a single voter (this node) with no network.
    pub voters: BTreeMap<u64, String>,
    /// The quorum's directory (e.g. `<data>/__quorum`), created if missing.
    pub dir: PathBuf,
    /// Election timeout range, milliseconds (min, max).
    pub election_timeout_ms: (u64, u64),
    pub heartbeat_interval_ms: u64,
    /// A snapshot is built every this many applied entries; the log keeps as many entries
    /// behind the snapshot (for followers catching up by log instead of by snapshot).
    pub snapshot_interval: u64,
    /// How long `propose`/`read_barrier` wait ([`DEFAULT_PROPOSE_TIMEOUT_MS`]).
    pub propose_timeout_ms: u64,
}

impl QuorumConfig {
    /// A config with the defaults for a loaded 2-core machine: heartbeat 200 ms, election
    /// timeout 1–2 s, snapshot every 10 000 entries.
    pub fn new(node_id: u64, voters: BTreeMap<u64, String>, dir: PathBuf) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            dir,
            election_timeout_ms: (1000, 2000),
            heartbeat_interval_ms: 200,
            snapshot_interval: 10_000,
            propose_timeout_ms: DEFAULT_PROPOSE_TIMEOUT_MS,
        }
    }
}

/// Why the quorum did not open.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error("quorum directory {dir} belongs to {found}, but this node was started as {expected}; refusing to start (use the original --node-id/--voters, or a fresh directory)")]
    IdentityMismatch {
        dir: String,
        found: String,
        expected: String,
    },
    #[error("quorum storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal or read barrier failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader (definite: the command was not committed by this call).
    #[error("not the quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// No quorum answered (read barrier), or the quorum is not ready.
    #[error("quorum unavailable: {0}")]
    Unavailable(String),
    /// The outcome is unknown: the command may still commit later.
    #[error("timed out waiting for the quorum (outcome unknown)")]
    Timeout,
    #[error("command of {0} bytes exceeds the quorum's cap")]
    TooLarge(usize),
    #[error("quorum shutting down")]
    ShuttingDown,
    /// The quorum stopped on this node (a storage error): restart the process.
    #[error("quorum stopped: {0}")]
    Fatal(String),
}

/// A voter as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterStatus {
    pub node_id: u64,
    pub addr: String,
    /// Highest log index known replicated to it (on the leader only; the leader's own is its
    /// last log index).
    pub matched: Option<u64>,
}

/// A snapshot of this node's view of the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    /// Highest committed index this node knows (as last persisted).
    pub committed: u64,
    /// Highest index applied to the state machine.
    pub applied: u64,
    pub last_log_index: u64,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub quorum_ack_age_ms: Option<u64>,
    pub voters: Vec<VoterStatus>,
    /// `Err` once the quorum stopped on this node.
    pub running: Result<(), String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    node_id: u64,
    voters: BTreeMap<u64, String>,
}

/// This node's member of the metadata quorum.
pub struct Quorum {
    raft: types::Raft,
    node_id: u64,
    config: QuorumConfig,
    log: store::LogStore,
    sm: sm::SmStore,
    leader_rx: watch::Receiver<Option<u64>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    shutting_down: AtomicBool,
}

fn validate(config: &mut QuorumConfig) -> Result<(), QuorumError> {
    if config.voters.is_empty() {
        config.voters.insert(config.node_id, String::new());
    }
    if !config.voters.contains_key(&config.node_id) {
        return Err(QuorumError::Config(format!(
            "node {} is not among the voters {:?}",
            config.node_id,
            config.voters.keys().collect::<Vec<_>>()
        )));
    }
    if config.voters.len() > 1 && config.voters.values().any(|a| a.is_empty()) {
        return Err(QuorumError::Config(
            "every voter needs a cluster address".into(),
        ));
    }
    let (lo, hi) = config.election_timeout_ms;
    if lo == 0
        || hi <= lo
        || config.heartbeat_interval_ms == 0
        || config.heartbeat_interval_ms >= lo
    {
        return Err(QuorumError::Config(format!(
            "need 0 < heartbeat ({}) < election timeout min ({lo}) < max ({hi})",
            config.heartbeat_interval_ms
        )));
    }
    if config.snapshot_interval == 0 || config.propose_timeout_ms == 0 {
        return Err(QuorumError::Config(
            "snapshot interval and propose timeout must be positive".into(),
        ));
    }
    Ok(())
}

fn check_identity(config: &QuorumConfig) -> Result<(), QuorumError> {
    let me = Identity {
        node_id: config.node_id,
        voters: config.voters.clone(),
    };
    match store::read_atomic(&config.dir, IDENTITY_FILE, MAX_SMALL_FILE_BYTES)? {
        Some(b) => {
            let found: Identity = serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("quorum identity file: {e}"),
                )
            })?;
            if found != me {
                return Err(QuorumError::IdentityMismatch {
                    dir: config.dir.display().to_string(),
                    found: format!("node {} with voters {:?}", found.node_id, found.voters),
                    expected: format!("node {} with voters {:?}", me.node_id, me.voters),
                });
            }
            Ok(())
        }
        None => {
            let b = serde_json::to_vec(&me).map_err(std::io::Error::other)?;
            store::write_atomic(&config.dir, IDENTITY_FILE, &b)?;
            Ok(())
        }
    }
}

impl Quorum {
    /// Opens this node's member: checks the directory's identity, recovers the log (torn tail
    /// truncated), restores the latest snapshot into `sm` (which must start empty), starts Raft
    /// (which re-applies the committed entries after the snapshot at once) and, on a first
    /// start, initializes the cluster (see the module docs). A single voter is leader when this
    /// returns.
    pub async fn open(
        config: QuorumConfig,
        sm: Arc<dyn StateMachine>,
        rpc: Arc<rpc::RpcClient>,
    ) -> Result<Arc<Quorum>, QuorumError> {
        let mut config = config;
        validate(&mut config)?;
        std::fs::create_dir_all(&config.dir)?;
        store::fsync_dir(&config.dir)?;
        check_identity(&config)?;
        let log = store::LogStore::open(&config.dir)?;
        let smstore = sm::SmStore::open(&config.dir, sm)?;

        let rc = openraft::Config {
            cluster_name: "sluice".into(),
            election_timeout_min: config.election_timeout_ms.0,
            election_timeout_max: config.election_timeout_ms.1,
            heartbeat_interval: config.heartbeat_interval_ms,
            // A loaded machine may take a while to move a big snapshot.
            install_snapshot_timeout: config.election_timeout_ms.1.saturating_mul(2),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_interval),
            max_in_snapshot_log_to_keep: config.snapshot_interval,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        };
        let rc = Arc::new(
            rc.validate()
                .map_err(|e| QuorumError::Config(e.to_string()))?,
        );
        let net = network::Network { rpc };
        let raft = openraft::Raft::new(config.node_id, rc, net, log.clone(), smstore.clone())
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;

        let (leader_tx, leader_rx) = watch::channel(None);
        let mut metrics = raft.metrics();
        let watcher = tokio::spawn(async move {
            loop {
                let leader = metrics.borrow_and_update().current_leader;
                leader_tx.send_if_modified(|cur| {
                    if *cur != leader {
                        *cur = leader;
                        true
                    } else {
                        false
                    }
                });
                if metrics.changed().await.is_err() {
                    leader_tx.send_replace(None);
                    return;
                }
            }
        });

        let q = Arc::new(Quorum {
            raft,
            node_id: config.node_id,
            config: config.clone(),
            log,
            sm: smstore,
            leader_rx,
            tasks: Mutex::new(vec![watcher]),
            shutting_down: AtomicBool::new(false),
        });

        let initialized = q
            .raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|(id, a)| (*id, BasicNode::new(a.clone())))
                .collect();
            let rank = config
                .voters
                .keys()
                .position(|id| *id == config.node_id)
                .unwrap_or(0) as u64;
            if rank == 0 {
                tracing::info!(node = config.node_id, voters = ?config.voters, "quorum: first start, initializing the cluster");
                q.initialize(members).await?;
            } else {
                // Later voters wait rank × the election timeout, then initialize with the same
                // membership unless they heard from a candidate or leader meanwhile.
                let q2 = q.clone();
                let delay =
                    Duration::from_millis(config.election_timeout_ms.1.saturating_mul(rank));
                let t = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if matches!(q2.raft.is_initialized().await, Ok(false)) {
                        tracing::info!(node = q2.node_id, "quorum: no leader heard since start, initializing with the same voters");
                        if let Err(e) = q2.initialize(members).await {
                            tracing::warn!(error = %e, "quorum: initialize");
                        }
                    }
                });
                q.push_task(t);
            }
        }
        if config.voters.len() == 1 {
            let wait = q.raft.wait(Some(SINGLE_VOTER_LEADER_WAIT));
            wait.current_leader(config.node_id, "single voter becomes leader")
                .await
                .map_err(|e| {
                    QuorumError::Raft(format!("single voter did not become leader: {e}"))
                })?;
        }
        Ok(q)
    }

    fn push_task(&self, t: tokio::task::JoinHandle<()>) {
        match self.tasks.lock() {
            Ok(mut g) => g.push(t),
            Err(p) => p.into_inner().push(t),
        }
    }

    async fn initialize(&self, members: BTreeMap<u64, BasicNode>) -> Result<(), QuorumError> {
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    fn fatal(&self, f: Fatal<u64>) -> ProposeError {
        match f {
            Fatal::Stopped => ProposeError::ShuttingDown,
            f if self.shutting_down.load(Ordering::Acquire) => {
                tracing::debug!(error = %f, "quorum: error while shutting down");
                ProposeError::ShuttingDown
            }
            f => ProposeError::Fatal(f.to_string()),
        }
    }

    /// Appends a command; returns once it is committed and applied on this node: (log index,
    /// apply's reply).
    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), ProposeError> {
        if command.len() > MAX_COMMAND_BYTES {
            return Err(ProposeError::TooLarge(command.len()));
        }
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(ProposeError::ShuttingDown);
        }
        let t = Duration::from_millis(self.config.propose_timeout_ms);
        match tokio::time::timeout(t, self.raft.client_write(Command(command))).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Ok(resp)) => Ok((resp.log_id.index, resp.data.0)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ProposeError::Unavailable(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(self.fatal(f)),
        }
    }

    /// Linearizable read barrier: returns once this node has applied everything committed
    /// before the call (leader only; it confirms its leadership with a quorum first). Returns
    /// the applied index the read may use.
    pub async fn read_barrier(&self) -> Result<u64, ProposeError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(ProposeError::ShuttingDown);
        }
        let t = Duration::from_millis(self.config.propose_timeout_ms);
        match tokio::time::timeout(t, self.raft.ensure_linearizable()).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Ok(read)) => Ok(read
                .map(|l| l.index)
                .unwrap_or(0)
                .max(self.sm.applied_index())),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                Err(ProposeError::Unavailable(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(self.fatal(f)),
        }
    }

    /// This node's view of the quorum.
    pub fn status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let matched = m.replication.clone();
        let voters = self
            .config
            .voters
            .iter()
            .map(|(id, addr)| VoterStatus {
                node_id: *id,
                addr: addr.clone(),
                matched: if *id == self.node_id && m.current_leader == Some(self.node_id) {
                    m.last_log_index
                } else {
                    matched
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten().map(|l| l.index))
                },
            })
            .collect();
        QuorumStatus {
            node_id: self.node_id,
            leader: m.current_leader,
            term: m.current_term,
            committed: self.log.committed_index.load(Ordering::Relaxed),
            applied: m
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0)
                .max(self.sm.applied_index()),
            last_log_index: m.last_log_index.unwrap_or(0),
            quorum_ack_age_ms: m.millis_since_quorum_ack,
            voters,
            running: m.running_state.clone().map_err(|e| e.to_string()),
        }
    }

    /// The current leader, updated on every change (`None` while unknown, and once stopped).
    pub fn leader_watch(&self) -> watch::Receiver<Option<u64>> {
        self.leader_rx.clone()
    }

    /// Serves one incoming quorum frame (RPC service 0).
    pub async fn handle(&self, request: &[u8]) -> Vec<u8> {
        network::serve(&self.raft, self.node_id, request).await
    }

    /// Stops this member (Raft core, background tasks). Durable state stays as it is.
    pub async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "quorum: raft shutdown");
        }
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut g) => g.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        for t in tasks {
            t.abort();
        }
    }

    /// Test hook: the log indexes held in memory (not purged).
    #[doc(hidden)]
    pub fn log_indexes(&self) -> Vec<u64> {
        self.log.entry_indexes()
    }

    /// Test hook: the last log index covered by the snapshot on disk.
    #[doc(hidden)]
    pub fn snapshot_index(&self) -> Option<u64> {
        self.sm.snapshot_last().map(|l| l.index)
    }
}

impl rpc::Handler for Quorum {
    fn handle<'a>(&'a self, request: Vec<u8>) -> rpc::BoxFuture<'a, Vec<u8>> {
        Box::pin(async move { Quorum::handle(self, &request).await })
    }
}
