//! The broker as a member of a cluster, at the metadata level (issue #10, wave 2).
//!
//! # Pieces
//! - [`ImageState`]: the metadata quorum's state machine (`sluice_quorum::StateMachine`) over
//!   `sluice_controller::ClusterImage`. One log entry = one controller decision = JSON
//!   `Vec<MetadataRecord>`; `apply` applies the records in order and answers `ok` or
//!   `rejected` (the decision's `Guard` did not hold). Snapshot = the image as JSON.
//! - [`Cluster`]: this node's quorum member (`<data>/__quorum`), the controller service (on the
//!   quorum leader only), the controller client (in-process when this node leads the quorum,
//!   RPC service 1 to the leader otherwise), the broker's registration and heartbeats, and the
//!   RPC listener on `--cluster-addr` (services 0 = quorum, 1 = controller; 2 is the replica
//!   fetch service of `replication/`, 3 the coordinators' service of `txn/remote.rs`).
//! - `membership.rs`: changes of the quorum's membership — broker-only nodes joining as
//!   learners, voters added and removed, stopped nodes unregistered.
//! - `metadata.rs` is the broker's view of the image (topics by name and id with their
//!   validated configs, group configs, producer ids) and reconciles image changes onto the
//!   `ReplicaManager` (see [`crate::metadata::Metadata::sync`]).
//!
//! # Controller service
//! One `sluice_controller::Controller` on the quorum leader, recreated (fresh broker sessions)
//! whenever the term changes, after a read barrier so its image holds every committed entry.
//! Decisions are serialized by one async mutex: decide on the applied image → `propose` →
//! answer once applied here. A decision whose `Guard` no longer held (`rejected`) is decided
//! again, at most [`MAX_DECISION_ATTEMPTS`] times. `propose` failing with `NotLeader` answers
//! NOT_CONTROLLER (retriable: the client follows the new leader); `Timeout` answers
//! REQUEST_TIMED_OUT (outcome unknown). A timer calls `tick` every [`CONTROLLER_TICK_MS`]
//! (session expiry → fencing, leaderless repairs, preferred-leader rebalance).
//!
//! # Controller client
//! [`Cluster::request`]: in-process when this node is the quorum leader, else an RPC to the
//! leader's cluster address (from the quorum's membership; `--voters` until this node knows it).
//! NOT_CONTROLLER, an unknown leader and transport errors are retried with
//! [`CONTROLLER_RETRY_BACKOFF_MS`] backoff until [`CONTROLLER_REQUEST_DEADLINE_MS`]; each call
//! is bounded by [`CONTROLLER_CALL_TIMEOUT_MS`].
//! Wire format of service 1: JSON [`CtrlRequest`] → JSON `Result<(u64, CtrlReply), (i16,
//! String)>` (the u64 is the log index the decision applied at, or the applied index when it
//! changed nothing).
//!
//! # Broker lifecycle
//! At start the broker registers (incarnation id = a fresh UUID per process start, Kafka
//! host/port, rack, cluster address); its broker epoch is the log index of the registration.
//! It is fenced until a heartbeat reports a metadata offset at or past that index; heartbeats
//! go every `--broker-heartbeat-interval-ms`. STALE_BROKER_EPOCH / BROKER_ID_NOT_REGISTERED
//! (a controller fenced or dropped us) → register again. On SIGTERM in a multi-node cluster
//! the broker heartbeats with `want_shutdown` until `should_shut_down` (its leaderships moved
//! away), bounded by [`CONTROLLED_SHUTDOWN_TIMEOUT_MS`]. A single node (no `--voters`)
//! registers and unfences in-process before serving and skips the controlled shutdown (there
//! is no one to move leaderships to).
//!
//! # FindCoordinator in cluster mode
//! Key type 0 (consumer, classic and share groups) names the leader of `__consumer_offsets-0`,
//! a replicated partition of the image whose leader is the group coordinator (`coordinator.rs`).
//! Key type 1 (transactions) names the same node: the transaction coordinator's state is still
//! local, and TxnOffsetCommit and transaction ends must meet the group coordinator there, until
//! the transaction coordinator follows `__transaction_state-0` the same way.
//!
//! # Bounds
//! [`MAX_DECISION_ATTEMPTS`], [`CONTROLLER_TICK_MS`], [`CONTROLLER_CALL_TIMEOUT_MS`],
//! [`CONTROLLER_REQUEST_DEADLINE_MS`], [`CONTROLLER_RETRY_BACKOFF_MS`],
//! [`CONTROLLED_SHUTDOWN_TIMEOUT_MS`], [`MAX_CONTROLLER_REQUEST_BYTES`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_controller::{
    codes, AlterPartitionReply, AlterPartitionRequest, Change, ClusterImage, Controller,
    ControllerConfig, ControllerError, CreateTopicRequest, Decision, ElectionType,
    HeartbeatRequest, IsrMember, MetadataRecord, NodeId, RegisterBrokerRequest, TopicRef,
};
use sluice_quorum::rpc::{self, BoxFuture, RpcClient, RpcServer};
use sluice_quorum::{ProposeError, Quorum, QuorumConfig, StateMachine};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::broker::now_ms;
use crate::config::BrokerConfig;
use crate::error::KafkaError;

/// How many times a decision whose guard failed (the image moved on) is decided again.
pub const MAX_DECISION_ATTEMPTS: usize = 5;
/// How often the controller's `tick` runs on the quorum leader.
pub const CONTROLLER_TICK_MS: u64 = 500;
/// Bound on one controller RPC.
pub const CONTROLLER_CALL_TIMEOUT_MS: u64 = 12_000;
/// Bound on a controller request including retries (leader changes, connection errors).
pub const CONTROLLER_REQUEST_DEADLINE_MS: u64 = 30_000;
/// Pause between retries of a controller request.
pub const CONTROLLER_RETRY_BACKOFF_MS: u64 = 200;
/// Bound on a controlled shutdown (waiting for the leaderships to move away).
pub const CONTROLLED_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// Largest controller request accepted over RPC.
pub const MAX_CONTROLLER_REQUEST_BYTES: usize = 16 << 20;

/// The session timeout of a single node (no `--voters`): a year, i.e. never.
pub const SINGLE_NODE_SESSION_TIMEOUT_MS: i64 = 365 * 24 * 3600 * 1000;

const REPLY_OK: &[u8] = b"ok";
const REPLY_REJECTED: &[u8] = b"rejected";
/// Kafka's REQUEST_TIMED_OUT.
const REQUEST_TIMED_OUT: i16 = 7;

/// The quorum's state machine: the cluster image.
#[derive(Default)]
pub struct ImageState {
    image: parking_lot::RwLock<ClusterImage>,
    /// Bumped after every applied entry (its log index).
    applied: parking_lot::Mutex<u64>,
    /// Woken after every applied entry (the reconcile loop waits on it).
    pub changed: Notify,
}

impl ImageState {
    /// Runs `f` on the current image.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterImage) -> R) -> R {
        f(&self.image.read())
    }

    pub fn snapshot_image(&self) -> ClusterImage {
        self.image.read().clone()
    }

    /// The log index of the last entry applied (commands only).
    pub fn applied(&self) -> u64 {
        *self.applied.lock()
    }
}

/// Applies one entry's records to `image`; returns whether the entry's guard rejected it.
pub fn apply_entry(image: &mut ClusterImage, index: u64, records: &[MetadataRecord]) -> bool {
    let mut rejected = false;
    for r in records {
        for c in image.apply(index, r) {
            if c == Change::DecisionRejected {
                rejected = true;
            }
        }
    }
    rejected
}

impl StateMachine for ImageState {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let records: Vec<MetadataRecord> = match serde_json::from_slice(command) {
            Ok(r) => r,
            Err(e) => {
                // Deterministic on every node: the entry is skipped everywhere.
                tracing::error!(index, error = %e, "skipping an unreadable metadata entry");
                Vec::new()
            }
        };
        let rejected = apply_entry(&mut self.image.write(), index, &records);
        {
            let mut a = self.applied.lock();
            *a = (*a).max(index);
        }
        self.changed.notify_one();
        if rejected {
            REPLY_REJECTED.to_vec()
        } else {
            REPLY_OK.to_vec()
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.image.read()).unwrap_or_default()
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let image: ClusterImage = if snapshot.is_empty() {
            ClusterImage::new()
        } else {
            serde_json::from_slice(snapshot).map_err(|e| e.to_string())?
        };
        {
            let mut a = self.applied.lock();
            *a = (*a).max(image.last_applied);
        }
        *self.image.write() = image;
        self.changed.notify_one();
        Ok(())
    }
}

/// A request to the controller (RPC service 1 payload, JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CtrlRequest {
    RegisterBroker {
        node_id: NodeId,
        incarnation_id: Uuid,
        kafka_host: String,
        kafka_port: i32,
        cluster_addr: String,
        rack: Option<String>,
        /// Absent from the requests of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_addr: Option<String>,
        /// Every advertised Kafka listener (absent from the requests of older versions).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        listeners: Vec<sluice_controller::ListenerEndpoint>,
    },
    Heartbeat {
        node_id: NodeId,
        broker_epoch: i64,
        metadata_offset: i64,
        want_fence: bool,
        want_shutdown: bool,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        num_partitions: Option<i32>,
        replication_factor: Option<i16>,
        assignments: Option<Vec<Vec<NodeId>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        topic: String,
        total: i32,
        assignments: Option<Vec<Vec<NodeId>>>,
        validate_only: bool,
    },
    ReplaceTopicConfigs {
        topic: String,
        configs: BTreeMap<String, String>,
    },
    /// Proposes this node's cluster id (kept only if the image has none yet).
    ClaimClusterId {
        cluster_id: String,
    },
    ReplaceGroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// Sets (`Some`) and removes (`None`) quotas of one client-quota entity.
    AlterClientQuotas {
        entity: sluice_controller::QuotaEntity,
        changes: BTreeMap<String, Option<f64>>,
    },
    /// Adds ACL bindings (CreateAcls; validated by the broker).
    CreateAcls {
        bindings: Vec<sluice_acl::AclBinding>,
    },
    /// Removes the ACL bindings the filters match (DeleteAcls).
    DeleteAcls {
        filters: Vec<sluice_acl::AclBindingFilter>,
    },
    /// Removes and sets SCRAM credentials (AlterUserScramCredentials, bootstrap users).
    AlterScramCredentials {
        removals: Vec<(String, i8)>,
        upsertions: Vec<(String, sluice_controller::ScramCredentialInfo)>,
    },
    AllocateProducerIds {
        broker_id: NodeId,
        broker_epoch: i64,
    },
    AlterPartition {
        broker_id: NodeId,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<(NodeId, i64)>,
    },
    ElectLeaders {
        election_type: i8,
        /// `None`: every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    AlterReassignments {
        /// (topic, partition, target replicas or `None` to cancel).
        moves: Vec<(String, i32, Option<Vec<NodeId>>)>,
    },
    /// Adds a node to the quorum as a learner (see `membership.rs`); `forwarded` once a voter
    /// passed it on to the leader.
    JoinQuorum {
        node_id: NodeId,
        cluster_addr: String,
        forwarded: bool,
    },
    /// Makes a learner a voter (AddRaftVoter).
    AddVoter {
        node_id: NodeId,
    },
    /// Makes a voter a learner (RemoveRaftVoter).
    RemoveVoter {
        node_id: NodeId,
    },
    /// Removes a stopped, drained non-voter: registration and quorum membership.
    UnregisterBroker {
        node_id: NodeId,
    },
}

/// The controller's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CtrlReply {
    Done,
    Heartbeat {
        is_caught_up: bool,
        is_fenced: bool,
        should_shut_down: bool,
    },
    TopicCreated {
        id: Uuid,
        num_partitions: i32,
        replication_factor: i16,
    },
    ProducerIds {
        first: i64,
        len: i64,
    },
    AlterPartition {
        error_code: i16,
        leader: NodeId,
        isr: Vec<NodeId>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// Per partition: (topic, partition, error code, message).
    PartitionResults(Vec<(String, i32, i16, String)>),
    /// DeleteAcls: the bindings each filter removed.
    AclsDeleted(Vec<Vec<sluice_acl::AclBinding>>),
}

type WireResult = Result<(u64, CtrlReply), (i16, String)>;

fn cerr(code: i16, message: impl Into<String>) -> ControllerError {
    ControllerError {
        code,
        message: message.into(),
    }
}

/// A controller error as the Kafka error a handler answers with.
pub fn to_kafka(e: ControllerError) -> KafkaError {
    KafkaError {
        code: e.code,
        message: e.message,
        record_index: None,
        current_leader: None,
    }
}

struct ControllerSlot {
    term: u64,
    controller: Controller,
}

/// This node's membership of the cluster (see the module docs).
pub struct Cluster {
    pub node_id: i32,
    pub quorum: Arc<Quorum>,
    pub state: Arc<ImageState>,
    pub rpc: Arc<RpcClient>,
    /// `--voters` (empty: single node).
    pub voters: BTreeMap<u64, String>,
    pub cluster_addr: Option<String>,
    pub rack: Option<String>,
    pub incarnation_id: Uuid,
    pub heartbeat_interval_ms: u64,
    /// `--default-replication-factor`.
    pub default_replication_factor: Option<i16>,
    controller_config: ControllerConfig,
    slot: tokio::sync::Mutex<Option<ControllerSlot>>,
    broker_epoch: AtomicI64,
    fenced: AtomicBool,
    server: parking_lot::Mutex<Option<RpcServer>>,
    /// RPC service 2 (replica fetches), installed by `replication/` once the broker exists.
    replica_fetch: Arc<std::sync::OnceLock<Arc<dyn rpc::Handler>>>,
    /// RPC service 3 (transaction markers, group completions, verification), installed by
    /// the broker.
    coordinator_rpc: Arc<std::sync::OnceLock<Arc<dyn rpc::Handler>>>,
    /// Service 4 (share groups), installed by the broker once it exists.
    share_rpc: Arc<std::sync::OnceLock<Arc<dyn rpc::Handler>>>,
    /// Set when the broker is registered (the Kafka host/port to register with).
    kafka_endpoint: parking_lot::Mutex<(String, i32)>,
    /// Every Kafka listener this broker advertises (`--listener`), registered with it.
    kafka_listeners: parking_lot::Mutex<Vec<sluice_controller::ListenerEndpoint>>,
    seed: u64,
    /// This node's `meta.properties` id (proposed to the image when it registers).
    local_cluster_id: String,
    /// The HTTP listener's address (`--http-addr`, its port resolved); registered as the
    /// advertised HTTP address ([`advertised_http_addr`]).
    http_listener: std::net::SocketAddr,
    /// Serializes quorum membership changes (`membership.rs`).
    membership_lock: tokio::sync::Mutex<()>,
}

/// The HTTP address a broker registers: the listener's, or — when it listens on every
/// interface (0.0.0.0, ::) — the advertised Kafka host with the HTTP port.
pub fn advertised_http_addr(listener: std::net::SocketAddr, kafka_host: &str) -> String {
    if listener.ip().is_unspecified() {
        if kafka_host.contains(':') {
            format!("[{kafka_host}]:{}", listener.port())
        } else {
            format!("{kafka_host}:{}", listener.port())
        }
    } else {
        listener.to_string()
    }
}

impl Cluster {
    /// Opens `<data>/__quorum` with the image as its state machine and, in a multi-node
    /// cluster, serves the quorum and the controller on `--cluster-addr`.
    pub async fn open(config: &BrokerConfig, data_dir: &Path) -> anyhow::Result<Arc<Cluster>> {
        let local_cluster_id = local_cluster_id(data_dir, config.node_id)?;
        let state = Arc::new(ImageState::default());
        let rpc = RpcClient::new();
        let node_id = u64::try_from(config.node_id)
            .map_err(|_| anyhow::anyhow!("the node id must be at least 0"))?;
        let quorum = Quorum::open(
            QuorumConfig::new(node_id, config.voters.clone(), data_dir.join("__quorum")),
            state.clone(),
            rpc.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the metadata quorum: {e}"))?;
        let controller_config = ControllerConfig {
            // A single node never fences itself: there is no one to move leaderships to, and
            // a stalled process would only bump every leader epoch.
            session_timeout_ms: if config.voters.is_empty() {
                SINGLE_NODE_SESSION_TIMEOUT_MS
            } else {
                i64::try_from(config.broker_session_timeout_ms).unwrap_or(i64::MAX)
            },
            default_replication_factor: config.default_replication_factor,
            default_num_partitions: config.default_partitions,
            ..ControllerConfig::default()
        };
        let cluster = Arc::new(Cluster {
            node_id: config.node_id,
            quorum,
            state,
            rpc,
            voters: config.voters.clone(),
            cluster_addr: config.cluster_addr.clone(),
            rack: config.rack.clone(),
            incarnation_id: Uuid::new_v4(),
            heartbeat_interval_ms: config.broker_heartbeat_interval_ms,
            default_replication_factor: config.default_replication_factor,
            controller_config,
            slot: tokio::sync::Mutex::new(None),
            broker_epoch: AtomicI64::new(-1),
            fenced: AtomicBool::new(true),
            server: parking_lot::Mutex::new(None),
            replica_fetch: Arc::new(std::sync::OnceLock::new()),
            coordinator_rpc: Arc::new(std::sync::OnceLock::new()),
            share_rpc: Arc::new(std::sync::OnceLock::new()),
            kafka_endpoint: parking_lot::Mutex::new((String::new(), 0)),
            kafka_listeners: parking_lot::Mutex::new(Vec::new()),
            seed: rand_seed(),
            local_cluster_id,
            http_listener: config.http_addr,
            membership_lock: tokio::sync::Mutex::new(()),
        });
        if let Some(addr) = &config.cluster_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for cluster traffic on {addr}: {e}"))?;
            let mut handlers: rpc::Handlers = std::collections::HashMap::new();
            handlers.insert(rpc::SERVICE_QUORUM, cluster.quorum.clone());
            handlers.insert(
                rpc::SERVICE_CONTROLLER,
                Arc::new(ControllerService(Arc::downgrade(&cluster))),
            );
            handlers.insert(
                rpc::SERVICE_REPLICA_FETCH,
                Arc::new(Deferred(cluster.replica_fetch.clone())),
            );
            handlers.insert(
                rpc::SERVICE_COORDINATOR,
                Arc::new(Deferred(cluster.coordinator_rpc.clone())),
            );
            handlers.insert(
                rpc::SERVICE_SHARE,
                Arc::new(Deferred(cluster.share_rpc.clone())),
            );
            let server = RpcServer::serve(listener, handlers)
                .map_err(|e| anyhow::anyhow!("cannot serve cluster traffic on {addr}: {e}"))?;
            *cluster.server.lock() = Some(server);
        }
        // A node that is not a voter (broker-only, or a removed voter) asks to be a learner.
        cluster.join_quorum().await?;
        Ok(cluster)
    }

    /// Every Kafka listener this broker registers with (before it registers).
    pub fn set_listeners(&self, listeners: Vec<sluice_controller::ListenerEndpoint>) {
        *self.kafka_listeners.lock() = listeners;
    }

    /// The Kafka host and port this broker registers with.
    pub fn set_kafka_endpoint(&self, host: &str, port: i32) {
        *self.kafka_endpoint.lock() = (host.to_string(), port);
    }

    /// The cluster's id: the image's (the first node's), else this node's own.
    pub fn cluster_id(&self) -> String {
        self.state
            .read(|i| i.cluster_id.clone())
            .unwrap_or_else(|| self.local_cluster_id.clone())
    }

    /// Whether this node runs alone (no `--voters`).
    pub fn is_single_node(&self) -> bool {
        self.voters.is_empty()
    }

    /// This broker's epoch (-1 before it registered).
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// Whether this broker is fenced (or not registered yet).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// The quorum leader (the controller), if known.
    pub fn controller_id(&self) -> Option<i32> {
        self.quorum
            .status()
            .leader
            .and_then(|l| i32::try_from(l).ok())
    }

    /// Whether this node may act on the image as a live member: registered, unfenced and its
    /// image at least at its own registration. A node that is not never names itself leader.
    pub fn is_live(&self) -> bool {
        let epoch = self.broker_epoch();
        epoch >= 0
            && !self.is_fenced()
            && self.state.read(|i| {
                i.broker(self.node_id)
                    .is_some_and(|b| b.broker_epoch == epoch && !b.fenced)
            })
    }

    /// `ClusterLink::cluster_addr`: the cluster address `node` registered with.
    pub fn cluster_addr_of(&self, node: i32) -> Option<String> {
        self.state
            .read(|i| i.broker(node).map(|b| b.cluster_addr.clone()))
    }

    /// The advertised HTTP address `node` registered with (none from older versions).
    pub fn http_addr_of(&self, node: i32) -> Option<String> {
        self.state
            .read(|i| i.broker(node).and_then(|b| b.http_addr.clone()))
    }

    /// `ClusterLink::broker_status`: (broker epoch, fenced) of a registered broker.
    pub fn broker_status(&self, node: i32) -> Option<(i64, bool)> {
        self.state
            .read(|i| i.broker(node).map(|b| (b.broker_epoch, b.fenced)))
    }

    /// `ClusterLink::rpc`: the RPC client every outgoing cluster call shares.
    pub fn rpc_client(&self) -> Arc<RpcClient> {
        self.rpc.clone()
    }

    /// Installs the handler of RPC service 2 (replica fetches); until then such requests get
    /// an empty reply. Only the first call counts.
    pub fn set_replica_fetch_handler(&self, handler: Arc<dyn rpc::Handler>) {
        let _ = self.replica_fetch.set(handler);
    }

    /// Installs the handler of RPC service 3 (coordinators); until then such requests get an
    /// empty reply (the caller retries). Only the first call counts.
    pub fn set_coordinator_handler(&self, handler: Arc<dyn rpc::Handler>) {
        let _ = self.coordinator_rpc.set(handler);
    }

    /// Installs the handler of RPC service 4 (share groups); until then such requests get an
    /// empty reply (the caller retries). Only the first call counts.
    pub fn set_share_handler(&self, handler: Arc<dyn rpc::Handler>) {
        let _ = self.share_rpc.set(handler);
    }

    /// Stops the RPC listener and the quorum member.
    pub async fn shutdown(&self) {
        let server = self.server.lock().take();
        if let Some(s) = server {
            s.shutdown().await;
        }
        self.quorum.shutdown().await;
    }

    // ---- controller service (on the quorum leader) ----

    /// Decides on the applied image, proposes, and answers after apply (see the module docs).
    async fn decide<R>(
        &self,
        mut f: impl FnMut(&mut Controller, &ClusterImage, i64) -> Decision<R>,
    ) -> Result<(u64, R), ControllerError> {
        for _ in 0..MAX_DECISION_ATTEMPTS {
            let mut slot = self.slot.lock().await;
            let status = self.quorum.status();
            if status.leader != Some(self.node_id as u64) {
                *slot = None;
                return Err(cerr(
                    codes::NOT_CONTROLLER,
                    "this node is not the controller",
                ));
            }
            if slot.as_ref().map(|s| s.term) != Some(status.term) {
                // A new term: catch the image up with every committed entry first, then
                // give every registered broker a fresh session.
                self.quorum
                    .read_barrier()
                    .await
                    .map_err(|e| cerr(codes::NOT_CONTROLLER, e.to_string()))?;
                let image = self.state.snapshot_image();
                *slot = Some(ControllerSlot {
                    term: status.term,
                    controller: Controller::new(
                        self.controller_config.clone(),
                        &image,
                        now_ms(),
                        self.seed,
                    ),
                });
            }
            let Some(s) = slot.as_mut() else {
                return Err(cerr(codes::NOT_CONTROLLER, "no controller"));
            };
            let image = self.state.snapshot_image();
            let (reply, records) = f(&mut s.controller, &image, now_ms())?;
            if records.is_empty() {
                return Ok((self.state.applied(), reply));
            }
            let command = serde_json::to_vec(&records)
                .map_err(|e| cerr(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            match self.quorum.propose(command).await {
                Ok((_, r)) if r == REPLY_REJECTED => continue,
                Ok((index, _)) => return Ok((index, reply)),
                Err(ProposeError::Timeout) => {
                    return Err(cerr(
                        REQUEST_TIMED_OUT,
                        "the metadata quorum did not commit in time (the change may still apply)",
                    ))
                }
                Err(e) => {
                    *slot = None;
                    return Err(cerr(codes::NOT_CONTROLLER, e.to_string()));
                }
            }
        }
        Err(cerr(
            codes::NOT_CONTROLLER,
            "the metadata changed under every attempt; retry",
        ))
    }

    /// Serves one controller request on this node (which must be the quorum leader).
    pub async fn handle_local(
        &self,
        req: CtrlRequest,
    ) -> Result<(u64, CtrlReply), ControllerError> {
        match req {
            CtrlRequest::RegisterBroker {
                node_id,
                incarnation_id,
                kafka_host,
                kafka_port,
                cluster_addr,
                rack,
                http_addr,
                listeners,
            } => {
                let r = RegisterBrokerRequest {
                    node_id,
                    incarnation_id,
                    kafka_host,
                    kafka_port,
                    cluster_addr,
                    rack,
                    http_addr,
                    listeners,
                };
                let (i, ()) = self
                    .decide(|c, img, now| c.register_broker(img, now, &r))
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::Heartbeat {
                node_id,
                broker_epoch,
                metadata_offset,
                want_fence,
                want_shutdown,
            } => {
                let r = HeartbeatRequest {
                    node_id,
                    broker_epoch,
                    metadata_offset,
                    want_fence,
                    want_shutdown,
                };
                let (i, h) = self.decide(|c, img, now| c.heartbeat(img, now, &r)).await?;
                Ok((
                    i,
                    CtrlReply::Heartbeat {
                        is_caught_up: h.is_caught_up,
                        is_fenced: h.is_fenced,
                        should_shut_down: h.should_shut_down,
                    },
                ))
            }
            CtrlRequest::CreateTopic {
                name,
                id,
                num_partitions,
                replication_factor,
                assignments,
                configs,
                validate_only,
            } => {
                let r = CreateTopicRequest {
                    name,
                    id,
                    num_partitions,
                    replication_factor,
                    assignments,
                    configs,
                };
                let (i, t) = self
                    .decide(|c, img, now| {
                        let (reply, records) = c.create_topic(img, now, &r)?;
                        Ok((reply, if validate_only { Vec::new() } else { records }))
                    })
                    .await?;
                Ok((
                    i,
                    CtrlReply::TopicCreated {
                        id: t.id,
                        num_partitions: t.num_partitions,
                        replication_factor: t.replication_factor,
                    },
                ))
            }
            CtrlRequest::DeleteTopic { name } => {
                let t = TopicRef::Name(name);
                let (i, _) = self.decide(|c, img, _| c.delete_topic(img, &t)).await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::CreatePartitions {
                topic,
                total,
                assignments,
                validate_only,
            } => {
                let (i, ()) = self
                    .decide(|c, img, now| {
                        let (reply, records) =
                            c.create_partitions(img, now, &topic, total, assignments.as_deref())?;
                        Ok((reply, if validate_only { Vec::new() } else { records }))
                    })
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::ReplaceTopicConfigs { topic, configs } => {
                let (i, ()) = self
                    .decide(|c, img, _| c.replace_topic_configs(img, &topic, &configs))
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::ClaimClusterId { cluster_id } => {
                let (i, ()) = self
                    .decide(|_, img, _| {
                        let records = match img.cluster_id {
                            Some(_) => Vec::new(),
                            None => vec![MetadataRecord::ClusterId {
                                cluster_id: cluster_id.clone(),
                            }],
                        };
                        Ok(((), records))
                    })
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::ReplaceGroupConfigs { group, configs } => {
                let (i, ()) = self
                    .decide(|c, img, _| c.replace_group_configs(img, &group, &configs))
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::AlterClientQuotas { entity, changes } => {
                let (i, ()) = self
                    .decide(|c, img, _| c.alter_client_quotas(img, &entity, &changes))
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::CreateAcls { bindings } => {
                let (i, ()) = self
                    .decide(|c, img, _| c.create_acls(img, &bindings))
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::DeleteAcls { filters } => {
                let (i, deleted) = self
                    .decide(|c, img, _| c.delete_acls(img, &filters))
                    .await?;
                Ok((i, CtrlReply::AclsDeleted(deleted)))
            }
            CtrlRequest::AlterScramCredentials {
                removals,
                upsertions,
            } => {
                let (i, ()) = self
                    .decide(|c, img, _| c.alter_scram_credentials(img, &removals, &upsertions))
                    .await?;
                Ok((i, CtrlReply::Done))
            }
            CtrlRequest::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => {
                let (i, b) = self
                    .decide(|c, img, _| c.allocate_producer_id_block(img, broker_id, broker_epoch))
                    .await?;
                Ok((
                    i,
                    CtrlReply::ProducerIds {
                        first: b.first,
                        len: b.len,
                    },
                ))
            }
            CtrlRequest::AlterPartition {
                broker_id,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                let r = AlterPartitionRequest {
                    broker_id,
                    broker_epoch,
                    topic_id,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    new_isr: new_isr
                        .into_iter()
                        .map(|(broker_id, broker_epoch)| IsrMember {
                            broker_id,
                            broker_epoch,
                        })
                        .collect(),
                };
                let (i, a) = self
                    .decide(|c, img, now| c.alter_partition(img, now, &r))
                    .await?;
                Ok((
                    i,
                    CtrlReply::AlterPartition {
                        error_code: a.error_code,
                        leader: a.leader,
                        isr: a.isr,
                        leader_epoch: a.leader_epoch,
                        partition_epoch: a.partition_epoch,
                    },
                ))
            }
            CtrlRequest::ElectLeaders {
                election_type,
                partitions,
            } => {
                let kind = match election_type {
                    0 => ElectionType::Preferred,
                    1 => ElectionType::Unclean,
                    t => {
                        return Err(cerr(
                            codes::INVALID_REQUEST,
                            format!("unknown election type {t}"),
                        ))
                    }
                };
                let (i, results) = self
                    .decide(|c, img, now| c.elect_leaders(img, now, kind, partitions.as_deref()))
                    .await?;
                Ok((i, CtrlReply::PartitionResults(flatten(results))))
            }
            CtrlRequest::AlterReassignments { moves } => {
                let (i, results) = self
                    .decide(|c, img, now| c.alter_partition_reassignments(img, now, &moves))
                    .await?;
                Ok((i, CtrlReply::PartitionResults(flatten(results))))
            }
            req @ (CtrlRequest::JoinQuorum { .. }
            | CtrlRequest::AddVoter { .. }
            | CtrlRequest::RemoveVoter { .. }
            | CtrlRequest::UnregisterBroker { .. }) => self.handle_membership(req).await,
        }
    }

    // ---- controller client ----

    /// Sends a request to the controller: in-process when this node leads the quorum, else
    /// over RPC service 1 to the leader, retrying NOT_CONTROLLER and transport errors (see the
    /// module docs).
    pub async fn request(&self, req: CtrlRequest) -> Result<(u64, CtrlReply), ControllerError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(CONTROLLER_REQUEST_DEADLINE_MS);
        let payload = serde_json::to_vec(&req)
            .map_err(|e| cerr(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
        loop {
            let leader = self.quorum.status().leader;
            let outcome = match leader {
                Some(l) if l == self.node_id as u64 => self.handle_local(req.clone()).await,
                Some(l) => match self.quorum.addr_of(l) {
                    Some(addr) => self.call_remote(&addr, &payload).await,
                    None => Err(cerr(
                        codes::NOT_CONTROLLER,
                        format!("no address for node {l}"),
                    )),
                },
                None => Err(cerr(codes::NOT_CONTROLLER, "no quorum leader yet")),
            };
            match outcome {
                Err(e)
                    if e.code == codes::NOT_CONTROLLER
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(CONTROLLER_RETRY_BACKOFF_MS)).await;
                }
                other => return other,
            }
        }
    }

    async fn call_remote(
        &self,
        addr: &str,
        payload: &[u8],
    ) -> Result<(u64, CtrlReply), ControllerError> {
        let bytes = self
            .rpc
            .call(
                addr,
                rpc::SERVICE_CONTROLLER,
                payload,
                Duration::from_millis(CONTROLLER_CALL_TIMEOUT_MS),
            )
            .await
            .map_err(|e| cerr(codes::NOT_CONTROLLER, format!("controller at {addr}: {e}")))?;
        let wire: WireResult = serde_json::from_slice(&bytes).map_err(|e| {
            cerr(
                codes::UNKNOWN_SERVER_ERROR,
                format!("bad controller reply: {e}"),
            )
        })?;
        let (index, reply) = wire.map_err(|(code, message)| cerr(code, message))?;
        // Answer only once this node's image holds the decision, so the caller reads its
        // own write (bounded: a lagging node answers anyway).
        self.wait_applied(index, Duration::from_millis(CONTROLLER_CALL_TIMEOUT_MS))
            .await;
        Ok((index, reply))
    }

    /// Waits until this node applied `index` (bounded by `max`).
    pub async fn wait_applied(&self, index: u64, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.state.applied() < index && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `ClusterLink::alter_partition`.
    pub async fn alter_partition(
        &self,
        req: AlterPartitionRequest,
    ) -> Result<AlterPartitionReply, ControllerError> {
        let (_, reply) = self
            .request(CtrlRequest::AlterPartition {
                broker_id: req.broker_id,
                broker_epoch: req.broker_epoch,
                topic_id: req.topic_id,
                partition: req.partition,
                leader_epoch: req.leader_epoch,
                partition_epoch: req.partition_epoch,
                new_isr: req
                    .new_isr
                    .iter()
                    .map(|m| (m.broker_id, m.broker_epoch))
                    .collect(),
            })
            .await?;
        match reply {
            CtrlReply::AlterPartition {
                error_code,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            } => Ok(AlterPartitionReply {
                error_code,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            }),
            _ => Err(cerr(
                codes::UNKNOWN_SERVER_ERROR,
                "unexpected controller reply",
            )),
        }
    }

    // ---- broker lifecycle ----

    /// Registers this broker (a new broker epoch); it starts fenced.
    pub async fn register(
        &self,
        kafka_host: &str,
        kafka_port: i32,
    ) -> Result<i64, ControllerError> {
        *self.kafka_endpoint.lock() = (kafka_host.to_string(), kafka_port);
        self.fence_previous_incarnation().await?;
        let listeners = self.kafka_listeners.lock().clone();
        let (index, _) = self
            .request(CtrlRequest::RegisterBroker {
                node_id: self.node_id,
                incarnation_id: self.incarnation_id,
                kafka_host: kafka_host.to_string(),
                kafka_port,
                cluster_addr: self.cluster_addr.clone().unwrap_or_default(),
                rack: self.rack.clone(),
                http_addr: Some(advertised_http_addr(self.http_listener, kafka_host)),
                listeners,
            })
            .await?;
        let epoch = i64::try_from(index).unwrap_or(i64::MAX);
        self.broker_epoch.store(epoch, Ordering::Release);
        self.fenced.store(true, Ordering::Release);
        tracing::info!(broker_epoch = epoch, "registered with the controller");
        if self.state.read(|i| i.cluster_id.is_none()) {
            let cluster_id = self.local_cluster_id.clone();
            if let Err(e) = self
                .request(CtrlRequest::ClaimClusterId { cluster_id })
                .await
            {
                tracing::warn!(error = %e, "could not propose the cluster id (the next registration retries)");
            }
        }
        Ok(epoch)
    }

    /// On the controller node itself, an unfenced registration of this node id with another
    /// incarnation is this node's previous process: it is fenced first, so the new one need
    /// not wait out its session (DUPLICATE_BROKER_REGISTRATION). Other nodes wait, as in
    /// Kafka (their heartbeats retry the registration).
    async fn fence_previous_incarnation(&self) -> Result<(), ControllerError> {
        if self.quorum.status().leader != Some(self.node_id as u64) {
            return Ok(());
        }
        let old = self.state.read(|i| {
            i.broker(self.node_id)
                .filter(|b| !b.fenced && b.incarnation_id != self.incarnation_id)
                .map(|b| b.broker_epoch)
        });
        let Some(old_epoch) = old else {
            return Ok(());
        };
        let r = HeartbeatRequest {
            node_id: self.node_id,
            broker_epoch: old_epoch,
            metadata_offset: 0,
            want_fence: true,
            want_shutdown: false,
        };
        self.decide(|c, img, now| c.heartbeat(img, now, &r)).await?;
        tracing::info!(old_epoch, "fenced this node's previous incarnation");
        Ok(())
    }

    /// One heartbeat; re-registers when the controller no longer knows this epoch.
    pub async fn heartbeat(&self, want_shutdown: bool) -> Result<CtrlReply, ControllerError> {
        let epoch = self.broker_epoch();
        if epoch < 0 {
            let (h, p) = self.kafka_endpoint.lock().clone();
            self.register(&h, p).await?;
        }
        let r = self
            .request(CtrlRequest::Heartbeat {
                node_id: self.node_id,
                broker_epoch: self.broker_epoch(),
                metadata_offset: i64::try_from(self.state.applied()).unwrap_or(i64::MAX),
                want_fence: false,
                want_shutdown,
            })
            .await;
        match r {
            Ok((_, reply @ CtrlReply::Heartbeat { is_fenced, .. })) => {
                if self.fenced.swap(is_fenced, Ordering::AcqRel) != is_fenced {
                    tracing::info!(fenced = is_fenced, "broker fencing changed");
                }
                Ok(reply)
            }
            Ok(_) => Err(cerr(
                codes::UNKNOWN_SERVER_ERROR,
                "unexpected heartbeat reply",
            )),
            Err(e)
                if e.code == codes::STALE_BROKER_EPOCH
                    || e.code == codes::BROKER_ID_NOT_REGISTERED =>
            {
                tracing::warn!(error = %e.message, "the controller dropped this registration; registering again");
                self.broker_epoch.store(-1, Ordering::Release);
                self.fenced.store(true, Ordering::Release);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Registers and heartbeats until unfenced (bounded by `max`).
    pub async fn join(
        &self,
        kafka_host: &str,
        kafka_port: i32,
        max: Duration,
    ) -> Result<(), ControllerError> {
        let deadline = tokio::time::Instant::now() + max;
        *self.kafka_endpoint.lock() = (kafka_host.to_string(), kafka_port);
        loop {
            match self.heartbeat(false).await {
                Ok(CtrlReply::Heartbeat {
                    is_fenced: false, ..
                }) => return Ok(()),
                Ok(_) => {}
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => tracing::debug!(error = %e.message, "joining the cluster"),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(cerr(codes::NOT_CONTROLLER, "not unfenced in time"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Heartbeats every interval until `stop`; drives the controller's `tick` while this node
    /// leads the quorum.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut beat = tokio::time::interval(Duration::from_millis(self.heartbeat_interval_ms));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(Duration::from_millis(CONTROLLER_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = beat.tick() => {
                    if let Err(e) = self.heartbeat(false).await {
                        tracing::debug!(error = %e.message, "heartbeat failed");
                    }
                }
                _ = tick.tick() => {
                    if self.quorum.status().leader == Some(self.node_id as u64) {
                        let r = self.decide(|c, img, now| Ok(((), c.tick(img, now)))).await;
                        if let Err(e) = r {
                            tracing::debug!(error = %e.message, "controller tick failed");
                        }
                    }
                }
            }
        }
    }

    /// Controlled shutdown: heartbeats with `want_shutdown` until the controller says the
    /// leaderships moved away (bounded). Skipped on a single node.
    pub async fn controlled_shutdown(&self) {
        if self.is_single_node() || self.broker_epoch() < 0 || self.controller_id().is_none() {
            return;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(CONTROLLED_SHUTDOWN_TIMEOUT_MS);
        while tokio::time::Instant::now() < deadline {
            let r = tokio::time::timeout_at(deadline, self.heartbeat(true)).await;
            if let Ok(Ok(CtrlReply::Heartbeat {
                should_shut_down: true,
                ..
            })) = r
            {
                tracing::info!("controlled shutdown complete");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!("controlled shutdown did not complete in time; stopping anyway");
    }

    /// Proposes records as one entry directly (migration of an old data directory).
    pub async fn propose_records(&self, records: &[MetadataRecord]) -> Result<u64, KafkaError> {
        let command = serde_json::to_vec(records).map_err(|e| {
            KafkaError::new(
                kafka_protocol::error::ResponseError::UnknownServerError,
                e.to_string(),
            )
        })?;
        match self.quorum.propose(command).await {
            Ok((index, r)) if r == REPLY_OK => Ok(index),
            Ok(_) => Err(KafkaError::new(
                kafka_protocol::error::ResponseError::NotController,
                "the migration entry was rejected",
            )),
            Err(e) => Err(KafkaError::new(
                kafka_protocol::error::ResponseError::NotController,
                e.to_string(),
            )),
        }
    }
}

fn flatten(results: Vec<sluice_controller::PartitionResult>) -> Vec<(String, i32, i16, String)> {
    results
        .into_iter()
        .map(|r| {
            let (code, msg) = r.error.map_or((0, String::new()), |e| (e.code, e.message));
            (r.topic, r.partition, code, msg)
        })
        .collect()
}

fn rand_seed() -> u64 {
    let u = Uuid::new_v4();
    let b = u.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The seam `replication/` uses (its fetchers, leader checks and AlterPartition sender).
impl crate::replication::ClusterLink for Cluster {
    fn node_id(&self) -> i32 {
        self.node_id
    }
    fn broker_epoch(&self) -> i64 {
        Cluster::broker_epoch(self)
    }
    fn cluster_addr(&self, node: i32) -> Option<String> {
        self.cluster_addr_of(node)
    }
    fn broker_status(&self, node: i32) -> Option<(i64, bool)> {
        Cluster::broker_status(self, node)
    }
    fn rpc(&self) -> Arc<RpcClient> {
        self.rpc_client()
    }
    fn alter_partition(
        &self,
        req: AlterPartitionRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, ControllerError>> {
        Box::pin(Cluster::alter_partition(self, req))
    }
}

/// Reads this node's cluster id from `meta.properties` (Kafka's file of the same name) or
/// writes a new one there. A cluster of several nodes answers with the id in the image
/// ([`MetadataRecord::ClusterId`]), which is the first node's.
pub fn local_cluster_id(data_dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
            return Ok(id.trim().to_string());
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
    let tmp = data_dir.join("meta.properties.tmp");
    std::fs::write(
        &tmp,
        format!("version=1\ncluster.id={id}\nnode.id={node_id}\n"),
    )?;
    std::fs::rename(&tmp, &path)?;
    sluice_storage::fsync_dir(data_dir)?;
    Ok(id)
}

/// RPC services 2 and 3 until the broker installs their handlers.
struct Deferred(Arc<std::sync::OnceLock<Arc<dyn rpc::Handler>>>);

impl rpc::Handler for Deferred {
    fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
        match self.0.get() {
            Some(h) => h.handle(request),
            None => Box::pin(async { Vec::new() }),
        }
    }
}

/// RPC service 1: controller requests from other nodes.
struct ControllerService(std::sync::Weak<Cluster>);

impl rpc::Handler for ControllerService {
    fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let result: WireResult = match self.0.upgrade() {
                None => Err((codes::NOT_CONTROLLER, "shutting down".into())),
                Some(_) if request.len() > MAX_CONTROLLER_REQUEST_BYTES => Err((
                    codes::INVALID_REQUEST,
                    "controller request too large".into(),
                )),
                Some(cluster) => match serde_json::from_slice::<CtrlRequest>(&request) {
                    Ok(req) => cluster
                        .handle_local(req)
                        .await
                        .map_err(|e| (e.code, e.message)),
                    Err(e) => Err((
                        codes::INVALID_REQUEST,
                        format!("bad controller request: {e}"),
                    )),
                },
            };
            serde_json::to_vec(&result).unwrap_or_default()
        })
    }
}

mod membership;
pub use membership::{check_voter_change, INCONSISTENT_CLUSTER_ID, JOIN_TIMEOUT_MS};

#[cfg(test)]
mod tests;
