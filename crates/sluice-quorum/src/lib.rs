//! The metadata quorum of a Sluice cluster: Raft (openraft 0.9.25) over opaque commands, its
//! on-disk log, and the cluster RPC every broker↔broker message rides on.
//!
//! Every node runs a [`Quorum`]; the voters (`--voters 1@host:port,…` at the first start, then
//! the membership in the log) hold the Raft log, learners (broker-only nodes) receive it. The
//! application (the broker's metadata image) implements [`StateMachine`]; commands are opaque
//! bytes, applied in log order on every node. The leader of the quorum is where the controller
//! runs; [`Quorum::propose`] appends a command and returns once it is committed *and applied on
//! this node* with the log index (the broker epoch of a registration is that index) and the
//! reply `apply` returned.
//!
//! # Wiring (what the broker does)
//! ```no_run
//! # use std::{collections::{BTreeMap, HashMap}, sync::Arc};
//! # use sluice_quorum::{rpc, Quorum, QuorumConfig, StateMachine};
//! # async fn wire(image: Arc<dyn StateMachine>, controller: Arc<dyn rpc::Handler>, fetch: Arc<dyn rpc::Handler>) -> anyhow::Result<()> {
//! let voters: BTreeMap<u64, String> = [(1, "10.0.0.1:9093".to_string()), (2, "10.0.0.2:9093".into()), (3, "10.0.0.3:9093".into())].into();
//! let client = rpc::RpcClient::new(); // shared by every service's outgoing calls
//! let quorum = Quorum::open(QuorumConfig::new(1, voters, "/data/__quorum".into()), image, client.clone()).await?;
//! let mut handlers: rpc::Handlers = HashMap::new();
//! handlers.insert(rpc::SERVICE_QUORUM, quorum.clone());
//! handlers.insert(rpc::SERVICE_CONTROLLER, controller);
//! handlers.insert(rpc::SERVICE_REPLICA_FETCH, fetch);
//! let listener = tokio::net::TcpListener::bind("10.0.0.1:9093").await?;
//! let server = rpc::RpcServer::serve(listener, handlers)?; // keep it: dropping it stops serving
//! match quorum.propose(b"[...records...]".to_vec()).await {
//!     Ok((index, reply)) => { /* committed and applied here */ }
//!     Err(sluice_quorum::ProposeError::NotLeader { leader }) => { /* redirect */ }
//!     Err(e) => { /* Timeout: unknown outcome; others: failed */ }
//! }
//! server.shutdown().await;
//! quorum.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # openraft
//! `openraft = "=0.9.25"` (exact pin; 0.10 is still alpha and changed the storage API), features
//! `storage-v2` (the `RaftLogStorage` / `RaftStateMachine` split), `serde` (messages as JSON) and
//! `loosen-follower-log-revert`: without it a voter whose log went backwards (its directory
//! wiped or restored from an older copy) trips a debug assertion in the leader (openraft
//! #898/#903) and, in release builds, leaves the leader's replication bookkeeping stale; with it
//! the leader restarts its search for the follower's match and re-sends (see the test
//! `wiped_follower_rejoins`). Types: `u64` node ids, `BasicNode { addr }` (the cluster
//! address), [`Command`]/[`Reply`] byte vectors, snapshots as bytes in memory
//! (`Cursor<Vec<u8>>`; metadata is small: bounded by [`MAX_SNAPSHOT_BYTES`]).
//!
//! # Files (under `QuorumConfig::dir`, e.g. `<data>/__quorum/`)
//! | file | content | written |
//! |---|---|---|
//! | `identity` | JSON `{node_id, voters}` (the `--voters` of the first start) | once, at the first start; a later start with another node id, or switching between a one-node cluster (no `--voters`) and a cluster, is refused ([`QuorumError::IdentityMismatch`]); another `--voters` is accepted (logged): the membership in the log wins |
//! | `vote` | JSON openraft `Vote` (term, node, committed) | `save_vote`, before it returns |
//! | `committed` | JSON `LogId` of the highest committed entry known | `save_committed` |
//! | `purged` | JSON `LogId` up to which the log was purged | before purged segments are deleted |
//! | `snapshot` | `[u32 meta length][meta JSON][application state]` | when a snapshot is built or installed; only ever replaced by a newer one |
//! | `log/<first index, 20 digits>.log` | log segments | appended |
//!
//! The small files and `snapshot` are *atomic files*: `[magic "SQF1"][u32 len][u32 CRC-32C][payload]`
//! (little endian), written as `name.tmp`, fsynced, renamed over `name`, and the directory
//! fsynced. Reading one that is damaged (bad magic, length, checksum) is a startup error: a
//! rename is atomic, so damage there is not a crash artefact.
//!
//! A log segment is a sequence of records `[u32 body length][u32 CRC-32C of body][body]`
//! (little endian); a body is `[u64 term][u64 leader node][u64 index][u8 kind][payload]`, kind
//! 0 = blank (no payload), 1 = command (payload = the command bytes), 2 = membership (payload =
//! openraft's `Membership` as JSON). Entries are consecutive within and across segments; a new
//! segment begins after [`SEGMENT_MAX_ENTRIES`] entries or [`SEGMENT_MAX_BYTES`] bytes, so a
//! purge deletes whole files. All entries not purged are also held in memory: at most about
//! `2 × snapshot_interval` entries (the log since the last snapshot plus the `snapshot_interval`
//! kept behind it) — about 20 MB at the default 10 000 and 1 KiB records.
//!
//! # Recovery at open
//! Every segment is scanned. In the **last** segment, a torn tail — a frame cut by the end of
//! the file, or a bad frame followed only by zeros (what a crash leaves of an unsynced append) —
//! is truncated away with a warning; such an append was never acknowledged (see fsync rules).
//! Any other damage (a checksum mismatch with data after it, a bad frame in an earlier segment,
//! a hole between segments, an index out of sequence, a record whose checksum matches but whose
//! body does not decode) is a startup error naming the file and byte: the node refuses to start
//! rather than silently dropping acknowledged entries. Segments entirely at or below `purged`
//! (an interrupted purge) are deleted. Then the `snapshot` is restored into the application's
//! (empty) state machine, and openraft re-applies the committed entries after it (`committed`
//! file) at once — a restarted node catches its state machine up alone, without waiting for a
//! leader. Each entry is applied exactly once per process: the snapshot covers up to its last
//! log id, replay starts after it.
//!
//! # fsync rules
//! - `append`: entries are written and the segment is `fdatasync`ed before openraft's
//!   `LogFlushed` callback fires (openraft acknowledges to the leader / counts the leader's own
//!   vote only after the callback). A new segment file is created and the directory fsynced
//!   before anything is written to it.
//! - `save_vote`: the vote file is durable (atomic write) before the call returns.
//! - `save_committed`: atomic write too (not needed for safety; it makes replay at open
//!   immediate).
//! - `truncate` (a follower's conflicting suffix): later segments deleted, the segment cut with
//!   `set_len` and fsynced, directory fsynced, before returning.
//! - `purge`: `purged` durable first, then whole segments deleted; openraft only purges up to a
//!   durable snapshot (the snapshot file is written and fsynced before `build_snapshot`
//!   returns), keeping `snapshot_interval` entries behind it for followers that lag a little.
//! - Storage IO runs on blocking threads (`spawn_blocking`), never on the async workers.
//! - **Storage errors are fatal**: a failed write poisons the log store (no later write is
//!   attempted) and openraft stops this member; `propose` then answers
//!   [`ProposeError::Fatal`], `status().running` is `Err`. Restart the process.
//!
//! # State machine glue
//! The glue keeps openraft's bookkeeping itself — the last applied log id and the last
//! membership — in memory and in the snapshot's meta (the application never sees them).
//! Blank and membership entries are not passed to [`StateMachine::apply`]. A snapshot is taken
//! every `snapshot_interval` applied entries: the application's [`StateMachine::snapshot`] is
//! called between two applies (so it is consistent with the bookkeeping), then the file is
//! written on a blocking thread while applies go on. A snapshot from the leader (a follower too
//! far behind the purged log) is made durable first, then [`StateMachine::restore`]d.
//!
//! # Initialization (first start)
//! openraft's `initialize` writes the membership entry at log index 0 with the default log id and
//! starts an election; it is refused (`NotAllowed`, ignored) once the node has a log or a vote.
//! Calling it on several nodes with the *same* membership is safe (openraft documents it: the
//! entries are identical). So: every voter passes the same `--voters`; on a first start (no log,
//! no vote) the lowest voter id initializes at once, and voter number `k` (0-based rank by id)
//! waits `k ×` the maximum election timeout and initializes only if it has heard from no
//! candidate or leader meanwhile — one election in the common case, and the cluster still forms
//! if the lowest voter is down. A node whose directory holds a log or vote never initializes
//! again (openraft refuses, and we only try when `is_initialized` is false). A single voter
//! (no `--voters`) initializes itself and is leader when `open` returns, with no network.
//! A node *not* among `--voters` never initializes: it waits to be added as a learner.
//!
//! # Membership
//! The membership (voters and learners, each with its cluster address as openraft's
//! `BasicNode`) lives in the log as membership entries, so after the first start it wins over
//! `--voters`, which then only tells a node where to find the cluster. On the leader:
//! - [`Quorum::add_learner`]`(id, addr)`: a non-voting member (Kafka's observer); the leader
//!   replicates the log to it, it never counts toward a majority. Idempotent at the same address;
//!   another address for a member id is refused. At most [`MAX_QUORUM_MEMBERS`] members.
//! - [`Quorum::add_voter`]`(id)`: promotes a learner within [`PROMOTE_MAX_LAG_ENTRIES`] of the
//!   leader's log (else [`MembershipError::NotCaughtUp`]).
//! - [`Quorum::remove_voter`]`(id)`: demotes a voter to a learner (openraft `retain`); refused
//!   for the last voter. Removing the leader is allowed: it leads until the new configuration
//!   commits, then steps down and the others elect.
//! - [`Quorum::remove_learner`]`(id)`: drops a learner.
//!
//! Voter changes are openraft's joint consensus (a joint configuration, then the new one;
//! both need a majority of old and new voters), one at a time: [`plan_change`] refuses a change
//! while a joint configuration is in effect. Whether the new voter set has a majority of live
//! nodes is the caller's check (the broker knows liveness: `cluster/membership.rs`). How a node
//! asks to be added (any voter, forwarded to the leader) is the broker's too.
//! [`Quorum::status`] and [`Quorum::membership`] report voters and learners.
//!
//! # Timeouts
//! Defaults ([`QuorumConfig::new`]), sized for a loaded 2-core machine where openraft's
//! (150–300 ms election, 50 ms heartbeat) cause needless elections: heartbeat 200 ms, election
//! timeout 1–2 s (randomized per term), `propose`/`read_barrier` give up after
//! [`DEFAULT_PROPOSE_TIMEOUT_MS`] with [`ProposeError::Timeout`] (outcome unknown: the entry may
//! still commit). `NotLeader` is definite (not appended here, or truncated before commit).
//! openraft 0.9 has no check-quorum/pre-vote: a leader cut off from the majority keeps believing
//! it leads (its `leader_watch` shows itself) but cannot commit; `status().quorum_ack_age_ms`
//! shows how long since a quorum acknowledged it. On healing, its higher-term peers depose it
//! and its uncommitted entries are truncated.
//!
//! # Cluster RPC
//! See [`rpc`]: length-prefixed frames with a one-byte service id and a request id, one
//! multiplexed connection per (peer, service), so replica-fetch long polls never delay quorum
//! heartbeats. Quorum messages (service 0) are `[u8 kind][u64 target node][u32 json length]
//! [JSON][raw bytes]` (snapshot chunks travel raw); a request addressed to another node id is
//! refused (catches a wrong `--voters` address). Replies: `[u8 status][JSON]`.
//!
//! # What survives what
//! - Process crash / kill -9 / power cut: everything acknowledged (appended entries, votes,
//!   snapshots); an unacknowledged torn append is truncated at open.
//! - Loss of a minority of voters: the majority elects and commits; a returning voter catches up
//!   by log, or by snapshot if the leader purged what it needs.
//! - Loss of learners: nothing (they are not in any majority).
//! - A corrupt log (bit flip before the tail), damaged atomic file, or wrong identity: the node
//!   refuses to start with a message; restore its directory, or wipe it so it rejoins as an empty
//!   voter. A wiped voter has forgotten its vote and its log, so it can help elect a leader that
//!   lacks committed entries: wipe one only while every other voter is up and caught up (check
//!   `sluice cluster status`), and never two at once. (KRaft guards this with directory ids,
//!   KIP-853; Sluice does not yet.)
//!
//! # Differences from Kafka's KRaft
//! KRaft is pull-based (voters fetch from the leader) and stores the metadata log as a Kafka
//! partition (`__cluster_metadata`); this is push-based Raft (openraft) with its own small log
//! format. The contract to the broker is the same: a totally ordered, replicated log of
//! metadata records applied to an image on every node, the index as the record's offset.
//!
//! # Bounds
//! [`MAX_COMMAND_BYTES`], [`MAX_RECORD_BYTES`], [`MAX_SNAPSHOT_BYTES`], [`MAX_SMALL_FILE_BYTES`],
//! [`SEGMENT_MAX_BYTES`], [`SEGMENT_MAX_ENTRIES`], [`MAX_PAYLOAD_ENTRIES`],
//! [`SNAPSHOT_CHUNK_BYTES`], and in [`rpc`]: `MAX_FRAME_BYTES`, `MAX_CONNECTIONS`,
//! `MAX_IN_FLIGHT_PER_CONNECTION`, `MAX_QUEUED_REQUEST_BYTES`, `IDLE_TIMEOUT`, `FRAME_READ_TIMEOUT`, `WRITE_TIMEOUT`,
//! `CONNECT_TIMEOUT`; [`MAX_QUORUM_MEMBERS`], [`PROMOTE_MAX_LAG_ENTRIES`].

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
pub use network::{
    decode_request as decode_quorum_request, parse_request as parse_quorum_request, QuorumRequest,
};
pub use store::{SEGMENT_MAX_BYTES, SEGMENT_MAX_ENTRIES};
pub use types::{Command, Entry, Reply, TypeConfig};

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

/// The quorum's members as a node knows them: node id → cluster address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeMap<u64, String>,
    /// Non-voting members (broker-only nodes, removed voters still running): they receive the
    /// log and never count toward a majority. Kafka calls them observers.
    pub learners: BTreeMap<u64, String>,
    /// A change is half way (joint consensus: old and new voter sets both need a majority).
    pub joint: bool,
}

/// A change of the membership, checked by [`plan_change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearner(u64, String),
    AddVoter(u64),
    RemoveVoter(u64),
    RemoveLearner(u64),
}

/// Why a membership change was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Not the leader, timed out (outcome unknown), shutting down, stopped.
    #[error(transparent)]
    Propose(ProposeError),
    /// The node already is a voter (Kafka's DUPLICATE_VOTER).
    #[error("{0}")]
    DuplicateVoter(String),
    /// The node is not a voter (Kafka's VOTER_NOT_FOUND).
    #[error("{0}")]
    VoterNotFound(String),
    /// The learner to promote lags the leader's log.
    #[error("{0}")]
    NotCaughtUp(String),
    /// Anything else refused: the last voter, an unknown node, a change in progress, a bound.
    #[error("{0}")]
    Refused(String),
}

/// Most members (voters and learners) a quorum takes.
pub const MAX_QUORUM_MEMBERS: usize = 128;
/// How far behind the leader's log a learner may be and still be made a voter.
pub const PROMOTE_MAX_LAG_ENTRIES: u64 = 100;

/// Whether a member that holds the log up to `matched` is within `max_lag` of `last`.
pub fn caught_up(matched: Option<u64>, last: u64, max_lag: u64) -> bool {
    matched.is_some_and(|m| m.saturating_add(max_lag) >= last)
}

/// Checks `change` against the current membership; returns openraft's change for the voter
/// changes (one at a time: refused while a joint configuration is in progress).
pub fn plan_change(
    current: &Membership,
    change: &MembershipChange,
) -> Result<openraft::ChangeMembers<u64, BasicNode>, MembershipError> {
    use std::collections::BTreeSet;
    if current.joint {
        return Err(MembershipError::Refused(
            "a membership change is in progress; retry once it completes".into(),
        ));
    }
    match change {
        MembershipChange::AddLearner(node, addr) => {
            if addr.is_empty() {
                return Err(MembershipError::Refused(format!(
                    "node {node} has no cluster address (--cluster-addr)"
                )));
            }
            if let Some(a) = current
                .voters
                .get(node)
                .or_else(|| current.learners.get(node))
            {
                if a != addr {
                    return Err(MembershipError::Refused(format!(
                        "node {node} is already a member at {a}, not {addr}: another node with the same --node-id? (remove it first)"
                    )));
                }
            } else if current.voters.len() + current.learners.len() >= MAX_QUORUM_MEMBERS {
                return Err(MembershipError::Refused(format!(
                    "the quorum already has {MAX_QUORUM_MEMBERS} members"
                )));
            }
            Ok(openraft::ChangeMembers::AddNodes(
                [(*node, BasicNode::new(addr.clone()))].into(),
            ))
        }
        MembershipChange::AddVoter(node) => {
            if current.voters.contains_key(node) {
                return Err(MembershipError::DuplicateVoter(format!(
                    "node {node} is already a voter"
                )));
            }
            if !current.learners.contains_key(node) {
                return Err(MembershipError::Refused(format!(
                    "node {node} is not a member of the quorum: start it (broker-only, with --voters naming the cluster) first"
                )));
            }
            Ok(openraft::ChangeMembers::AddVoterIds(BTreeSet::from([
                *node,
            ])))
        }
        MembershipChange::RemoveVoter(node) => {
            if !current.voters.contains_key(node) {
                return Err(MembershipError::VoterNotFound(format!(
                    "node {node} is not a voter"
                )));
            }
            if current.voters.len() == 1 {
                return Err(MembershipError::Refused(format!(
                    "node {node} is the last voter"
                )));
            }
            Ok(openraft::ChangeMembers::RemoveVoters(BTreeSet::from([
                *node,
            ])))
        }
        MembershipChange::RemoveLearner(node) => {
            if current.voters.contains_key(node) {
                return Err(MembershipError::Refused(format!(
                    "node {node} is a voter: remove it as a voter first"
                )));
            }
            if !current.learners.contains_key(node) {
                return Err(MembershipError::Refused(format!(
                    "node {node} is not a member of the quorum"
                )));
            }
            Ok(openraft::ChangeMembers::RemoveNodes(BTreeSet::from([
                *node,
            ])))
        }
    }
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
    /// The non-voting members (Kafka's observers), `matched` as for the voters.
    pub learners: Vec<VoterStatus>,
    /// A membership change is half way (joint consensus).
    pub joint: bool,
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
    // A node not among `--voters` is a broker-only node: it joins the running cluster as a
    // learner (see the module docs), so it needs somewhere to find it.
    let bootstrap_voter = config.voters.contains_key(&config.node_id);
    if (config.voters.len() > 1 || !bootstrap_voter) && config.voters.values().any(|a| a.is_empty())
    {
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

/// Whether an identity (as stored, or as started) is a one-node cluster: no `--voters`.
fn is_single(i: &Identity) -> bool {
    i.voters.len() == 1 && i.voters.get(&i.node_id).is_some_and(|a| a.is_empty())
}

/// Checks a stored identity against the one this process was started with. The node id must
/// match, and so must the mode (a one-node cluster without `--voters` cannot be turned into a
/// member of a cluster, nor back). The voter set may differ: after the first start the
/// membership in the Raft log wins and `--voters` only tells a node where to find the cluster
/// (pure: unit-tested).
fn identity_matches(found: &Identity, me: &Identity) -> Result<(), String> {
    if found.node_id != me.node_id {
        return Err(format!(
            "node {} (this process: node {})",
            found.node_id, me.node_id
        ));
    }
    match (is_single(found), is_single(me)) {
        (true, false) => Err(format!(
            "node {} of a one-node cluster (this process was started with --voters {:?}; growing a one-node cluster is not supported)",
            found.node_id,
            me.voters.keys().collect::<Vec<_>>()
        )),
        (false, true) => Err(format!(
            "node {} of a cluster first started with voters {:?} (this process was started without --voters)",
            found.node_id,
            found.voters.keys().collect::<Vec<_>>()
        )),
        _ => Ok(()),
    }
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
            if let Err(found_desc) = identity_matches(&found, &me) {
                return Err(QuorumError::IdentityMismatch {
                    dir: config.dir.display().to_string(),
                    found: found_desc,
                    expected: format!("node {} with voters {:?}", me.node_id, me.voters),
                });
            }
            if found.voters != me.voters {
                tracing::info!(stored = ?found.voters, given = ?me.voters, "quorum: --voters differs from the first start; the membership in the metadata log is used");
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
        let existed = config.dir.is_dir();
        std::fs::create_dir_all(&config.dir)?;
        store::fsync_dir(&config.dir)?;
        if !existed {
            if let Some(parent) = config.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                store::fsync_dir(parent)?;
            }
        }
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
        // Only a node named in `--voters` ever initializes; a broker-only node waits to be
        // added as a learner by the leader (it never forms a cluster of its own).
        if !initialized && config.voters.contains_key(&config.node_id) {
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
        // A one-voter quorum (no `--voters`, or a cluster shrunk to this voter) elects itself:
        // wait for it, so a single node serves as soon as `open` returns.
        let single = if initialized {
            let me = config.node_id;
            q.raft
                .with_raft_state(move |st| {
                    let m = st.membership_state.effective().membership();
                    m.get_joint_config().len() == 1 && m.voter_ids().eq([me])
                })
                .await
                .map_err(|e| QuorumError::Raft(e.to_string()))?
        } else {
            config.voters.len() == 1 && config.voters.contains_key(&config.node_id)
        };
        if single {
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
        let view = self.view_of(m.membership_config.membership());
        let member = |(id, addr): (&u64, &String)| VoterStatus {
            node_id: *id,
            addr: addr.clone(),
            matched: if *id == self.node_id && m.current_leader == Some(self.node_id) {
                m.last_log_index
            } else {
                matched
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten().map(|l| l.index))
            },
        };
        let voters = view.voters.iter().map(member).collect();
        let learners = view.learners.iter().map(member).collect();
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
            learners,
            joint: view.joint,
            running: m.running_state.clone().map_err(|e| e.to_string()),
        }
    }

    /// The membership as this node knows it; before this node has received any (a broker-only
    /// node waiting to be added), the `--voters` it was started with.
    fn view_of(&self, m: &openraft::Membership<u64, BasicNode>) -> Membership {
        let mut v = Membership::default();
        if m.nodes().next().is_none() {
            v.voters = self.config.voters.clone();
            return v;
        }
        let voters: std::collections::BTreeSet<u64> = m.voter_ids().collect();
        for (id, node) in m.nodes() {
            if voters.contains(id) {
                v.voters.insert(*id, node.addr.clone());
            } else {
                v.learners.insert(*id, node.addr.clone());
            }
        }
        v.joint = m.get_joint_config().len() > 1;
        v
    }

    /// The membership (voters and learners with their cluster addresses) as this node knows it.
    pub fn membership(&self) -> Membership {
        let m = self.raft.metrics().borrow().membership_config.clone();
        self.view_of(m.membership())
    }

    /// The cluster address of a member (from the membership, else `--voters`).
    pub fn addr_of(&self, node: u64) -> Option<String> {
        let m = self.membership();
        m.voters
            .get(&node)
            .or_else(|| m.learners.get(&node))
            .or_else(|| self.config.voters.get(&node))
            .cloned()
    }

    /// Whether this node is a voter in its current membership.
    pub fn is_voter(&self) -> bool {
        self.membership().voters.contains_key(&self.node_id)
    }

    /// On the leader: adds `node` at cluster address `addr` as a learner (a non-voting member
    /// that receives the log). Idempotent for a member already at that address. Returns the
    /// log index of the membership entry (or the applied index when nothing changed).
    pub async fn add_learner(&self, node: u64, addr: String) -> Result<u64, MembershipError> {
        self.check_leader()?;
        let current = self.membership();
        plan_change(&current, &MembershipChange::AddLearner(node, addr.clone()))?;
        if current.voters.get(&node) == Some(&addr) || current.learners.get(&node) == Some(&addr) {
            return Ok(self.sm.applied_index());
        }
        let r = self.raft.add_learner(node, BasicNode::new(addr), false);
        self.membership_write(r).await
    }

    /// On the leader: makes learner `node` a voter (joint consensus: the joint configuration
    /// commits, then the new one). The learner must be caught up: within
    /// [`PROMOTE_MAX_LAG_ENTRIES`] of the leader's log.
    pub async fn add_voter(&self, node: u64) -> Result<u64, MembershipError> {
        self.check_leader()?;
        let current = self.membership();
        let change = plan_change(&current, &MembershipChange::AddVoter(node))?;
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&node).cloned().flatten().map(|l| l.index));
        if !caught_up(matched, last, PROMOTE_MAX_LAG_ENTRIES) {
            return Err(MembershipError::NotCaughtUp(format!(
                "node {node} holds the metadata log up to {} of {last}; wait until it has caught up (at most {PROMOTE_MAX_LAG_ENTRIES} entries behind)",
                matched.map_or("nothing".to_string(), |m| m.to_string())
            )));
        }
        self.membership_write(self.raft.change_membership(change, true))
            .await
    }

    /// On the leader: makes voter `node` a learner (it keeps receiving the log while it runs;
    /// [`Quorum::remove_learner`] drops it). Refuses to remove the last voter. Removing the
    /// leader itself is allowed: it leads until the new configuration commits, then steps down
    /// and the remaining voters elect a leader.
    pub async fn remove_voter(&self, node: u64) -> Result<u64, MembershipError> {
        self.check_leader()?;
        let change = plan_change(&self.membership(), &MembershipChange::RemoveVoter(node))?;
        self.membership_write(self.raft.change_membership(change, true))
            .await
    }

    /// On the leader: removes learner `node` from the membership (the log is no longer sent
    /// to it).
    pub async fn remove_learner(&self, node: u64) -> Result<u64, MembershipError> {
        self.check_leader()?;
        let change = plan_change(&self.membership(), &MembershipChange::RemoveLearner(node))?;
        self.membership_write(self.raft.change_membership(change, false))
            .await
    }

    fn check_leader(&self) -> Result<(), MembershipError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(MembershipError::Propose(ProposeError::ShuttingDown));
        }
        let leader = self.raft.metrics().borrow().current_leader;
        if leader != Some(self.node_id) {
            return Err(MembershipError::Propose(ProposeError::NotLeader { leader }));
        }
        Ok(())
    }

    async fn membership_write(
        &self,
        f: impl std::future::Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<TypeConfig>,
                RaftError<u64, ClientWriteError<u64, BasicNode>>,
            >,
        >,
    ) -> Result<u64, MembershipError> {
        // Joint consensus commits twice.
        let t = Duration::from_millis(self.config.propose_timeout_ms.saturating_mul(2));
        match tokio::time::timeout(t, f).await {
            Err(_) => Err(MembershipError::Propose(ProposeError::Timeout)),
            Ok(Ok(resp)) => Ok(resp.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(MembershipError::Propose(ProposeError::NotLeader {
                    leader: f.leader_id,
                }))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(MembershipError::Refused(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(MembershipError::Propose(self.fatal(f))),
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

/// Entry points for the fuzz target (`fuzz/fuzz_targets/quorum_files.rs`).
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// Opens the quorum log under `dir` (vote, committed, purged files and `log/` segments) as
    /// `Quorum::open` does; returns the indexes it holds.
    pub fn open_log(dir: &Path) -> std::io::Result<Vec<u64>> {
        crate::store::LogStore::open(dir).map(|s| s.entry_indexes())
    }

    /// Re-encodes an entry body decoded by [`crate::decode_entry_body`].
    pub fn encode_entry_body(entry: &crate::types::Entry) -> Result<Vec<u8>, crate::DecodeError> {
        crate::codec::encode_entry_body(entry)
    }

    /// Frames a record body.
    pub fn frame_record(body: &[u8]) -> Vec<u8> {
        crate::codec::frame_record(body)
    }
}

impl rpc::Handler for Quorum {
    fn handle<'a>(&'a self, request: Vec<u8>) -> rpc::BoxFuture<'a, Vec<u8>> {
        Box::pin(async move { Quorum::handle(self, &request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(voters: &[u64], learners: &[u64]) -> Membership {
        let addr = |id: &u64| (*id, format!("10.0.0.{id}:9093"));
        Membership {
            voters: voters.iter().map(addr).collect(),
            learners: learners.iter().map(addr).collect(),
            joint: false,
        }
    }

    #[test]
    fn voter_changes_are_checked_one_at_a_time() {
        let m = members(&[1, 2, 3], &[4]);
        assert!(matches!(
            plan_change(&m, &MembershipChange::AddVoter(4)),
            Ok(openraft::ChangeMembers::AddVoterIds(ids)) if ids == [4].into()
        ));
        assert!(matches!(
            plan_change(&m, &MembershipChange::AddVoter(3)),
            Err(MembershipError::DuplicateVoter(_))
        ));
        assert!(matches!(
            plan_change(&m, &MembershipChange::AddVoter(5)),
            Err(MembershipError::Refused(_))
        ));
        assert!(matches!(
            plan_change(&m, &MembershipChange::RemoveVoter(3)),
            Ok(openraft::ChangeMembers::RemoveVoters(ids)) if ids == [3].into()
        ));
        assert!(matches!(
            plan_change(&m, &MembershipChange::RemoveVoter(4)),
            Err(MembershipError::VoterNotFound(_))
        ));
        assert!(matches!(
            plan_change(&members(&[2], &[]), &MembershipChange::RemoveVoter(2)),
            Err(MembershipError::Refused(_))
        ));
        assert!(matches!(
            plan_change(&m, &MembershipChange::RemoveLearner(4)),
            Ok(openraft::ChangeMembers::RemoveNodes(ids)) if ids == [4].into()
        ));
        assert!(matches!(
            plan_change(&m, &MembershipChange::RemoveLearner(1)),
            Err(MembershipError::Refused(_))
        ));
        let mut joint = m.clone();
        joint.joint = true;
        assert!(matches!(
            plan_change(&joint, &MembershipChange::RemoveVoter(3)),
            Err(MembershipError::Refused(_))
        ));
    }

    #[test]
    fn learners_join_once_at_one_address_within_the_bound() {
        let m = members(&[1, 2, 3], &[4]);
        let add = |id: u64, addr: &str| MembershipChange::AddLearner(id, addr.to_string());
        assert!(plan_change(&m, &add(5, "10.0.0.5:9093")).is_ok());
        // Already there at the same address: fine (a restart); elsewhere: refused.
        assert!(plan_change(&m, &add(4, "10.0.0.4:9093")).is_ok());
        assert!(plan_change(&m, &add(1, "10.0.0.1:9093")).is_ok());
        assert!(matches!(
            plan_change(&m, &add(4, "10.0.0.9:9093")),
            Err(MembershipError::Refused(_))
        ));
        assert!(matches!(
            plan_change(&m, &add(5, "")),
            Err(MembershipError::Refused(_))
        ));
        let full = members(
            &[1, 2, 3],
            &(4..(MAX_QUORUM_MEMBERS as u64 + 1)).collect::<Vec<_>>(),
        );
        assert!(matches!(
            plan_change(&full, &add(999, "10.0.0.9:9093")),
            Err(MembershipError::Refused(_))
        ));
    }

    #[test]
    fn promotion_needs_a_caught_up_learner() {
        assert!(caught_up(Some(100), 100, 10));
        assert!(caught_up(Some(90), 100, 10));
        assert!(!caught_up(Some(89), 100, 10));
        assert!(!caught_up(None, 0, 10));
    }

    #[test]
    fn identity_allows_another_voter_set_but_not_another_node_or_mode() {
        let id = |node: u64, voters: &[(u64, &str)]| Identity {
            node_id: node,
            voters: voters.iter().map(|(i, a)| (*i, a.to_string())).collect(),
        };
        let three = id(1, &[(1, "a:1"), (2, "b:1"), (3, "c:1")]);
        assert!(identity_matches(&three, &three).is_ok());
        // The membership lives in the log: --voters may name another set later.
        assert!(identity_matches(&three, &id(1, &[(2, "b:1"), (4, "d:1")])).is_ok());
        assert!(identity_matches(&three, &id(2, &[(1, "a:1"), (2, "b:1"), (3, "c:1")])).is_err());
        let single = id(1, &[(1, "")]);
        assert!(identity_matches(&single, &single).is_ok());
        assert!(identity_matches(&single, &three).is_err());
        assert!(identity_matches(&three, &single).is_err());
        // A broker-only node (not among its --voters) is not a one-node cluster.
        let learner = id(4, &[(1, "a:1")]);
        assert!(identity_matches(&learner, &id(4, &[(1, "a:1"), (2, "b:1")])).is_ok());
    }
}
