//! The broker's shared state and its lifetime: open the data directory, serve the Kafka and
//! HTTP listeners, run background work (retention, interval flushes, group timers), and shut
//! down cleanly.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{watch, Notify};

use crate::config::{BrokerConfig, FlushPolicy};
use crate::error::KafkaError;
use crate::fetch_session::FetchSessions;
use crate::groups::GroupService;
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::offsets::OffsetStore;
use crate::replica_manager::ReplicaManager;
use crate::server;
use crate::share::ShareService;

/// Bound on waiting, at a single node's start, for the group and transaction coordinators'
/// loads.
const SINGLE_NODE_LOAD_WAIT: Duration = Duration::from_secs(60);

/// The internal topics whose coordinators follow their partition (`coordinator.rs`).
const FOLLOWED_TOPICS: [&str; 3] = [
    crate::coordinator::GROUP_TOPIC,
    crate::coordinator::TXN_TOPIC,
    crate::coordinator::SHARE_TOPIC,
];

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Broker {
    pub config: BrokerConfig,
    /// Every Kafka listener's advertised endpoint (the first one is the primary, registered
    /// as `kafka_host:kafka_port` too).
    pub listeners: Vec<sluice_controller::ListenerEndpoint>,
    /// TLS, SASL settings and what they need at runtime (`security/`).
    pub security: crate::security::Security,
    /// The Kafka listener the broker's own HTTP API connects to as a client
    /// (`api::ApiListener::choose`); None when no listener can carry its callers' identity.
    pub api_listener: Option<crate::api::ApiListener>,
    pub metadata: Metadata,
    /// This node's partition replicas: every append to and read from a user partition.
    pub replicas: Arc<ReplicaManager>,
    /// Replica fetchers, the leader side of replica fetches, ISR/HW/acks=all (`replication/`).
    pub replication: crate::replication::Replication,
    /// Committed offsets: the group coordinator's state, loaded while this node leads
    /// `__consumer_offsets-0` (`coordinator.rs`).
    pub offsets: Arc<OffsetStore>,
    /// Classic and KIP-848 groups; dropped whenever the offsets are unloaded.
    pub groups: Arc<GroupService>,
    pub metrics: Metrics,
    /// Woken on every append, so long-polling fetches re-check their partitions.
    pub data_appended: Arc<Notify>,
    pub fetch_sessions: parking_lot::Mutex<FetchSessions>,
    /// Share groups (KIP-932): share-partitions, share sessions, queue state, dead letters.
    pub share: ShareService,
    /// Consumer-group lag in time, sampled on the group coordinator's node.
    pub lag_history: crate::lag_history::LagHistory,
    /// The built-in schema registry (Confluent's REST API on the HTTP port): the state of
    /// `_schemas-0` applied up to its high watermark, on every node (`schemas.rs`).
    pub registry: Arc<sluice_registry::Registry>,
    /// The registry's replicated log (`_schemas-0`): its journal and tail.
    pub schema_log: Arc<crate::schemas::SchemaLog>,
    /// The transaction coordinator's state, loaded while this node leads
    /// `__transaction_state-0` (`txn/`).
    pub txn: Arc<crate::txn::TxnCoordinator>,
}

impl Broker {
    /// [`Broker::open_with_listeners`] with the one PLAINTEXT listener of `--kafka-addr`,
    /// bound at `local_kafka_addr` (tests).
    pub async fn open(
        config: BrokerConfig,
        local_kafka_addr: std::net::SocketAddr,
    ) -> anyhow::Result<Arc<Broker>> {
        let spec = crate::security::ListenerSpec::plaintext(
            config.kafka_addr,
            config.advertised_kafka_addr.clone(),
        );
        let listeners = vec![endpoint(&spec, local_kafka_addr)?];
        let security = crate::security::Security::new(config.security.clone(), &config.data_dir)?;
        let api_listener =
            crate::api::ApiListener::choose(&security, [(&spec, local_kafka_addr)].into_iter());
        Broker::open_with_listeners(config, listeners, api_listener, security).await
    }

    /// Opens the data directory: replays metadata and offsets, recovers every partition.
    /// `listeners` are the advertised endpoints of the bound Kafka listeners.
    pub async fn open_with_listeners(
        config: BrokerConfig,
        listeners: Vec<sluice_controller::ListenerEndpoint>,
        api_listener: Option<crate::api::ApiListener>,
        security: crate::security::Security,
    ) -> anyhow::Result<Arc<Broker>> {
        if !config.data_dir.is_dir() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
            sluice_storage::durability::fsync_parent(&config.data_dir)?;
        }
        let now = now_ms();
        let replicas = Arc::new(ReplicaManager::new(config.node_id, &config.data_dir));
        // The group coordinator follows `__consumer_offsets-0`: registered before the first
        // reconcile, which may already make this node its leader.
        let data_appended = Arc::new(Notify::new());
        let offsets = Arc::new(OffsetStore::new(
            config.flush == FlushPolicy::Always,
            data_appended.clone(),
        ));
        let groups = Arc::new(GroupService::new(&config));
        {
            let groups = groups.clone();
            // Weak: the store holds this callback.
            let store = Arc::downgrade(&offsets);
            offsets.set_on_change(Box::new(move |loaded| {
                groups.reset();
                if let Some(store) = store.upgrade().filter(|_| loaded) {
                    groups.restore(store.group_records());
                }
            }));
        }
        replicas.register_coordinator(
            crate::coordinator::GROUP_TOPIC,
            Arc::new(crate::offsets::GroupCoordinatorHook(offsets.clone())),
        );
        // The registry follows `_schemas-0` on every node (`schemas.rs`).
        let (schema_log, registry) = crate::schemas::SchemaLog::new(
            config.flush == FlushPolicy::Always,
            data_appended.clone(),
        );
        replicas.register_coordinator(
            crate::schemas::SCHEMAS_TOPIC,
            Arc::new(crate::schemas::SchemaHook(schema_log.clone())),
        );
        // The transaction coordinator follows `__transaction_state-0` the same way.
        let txn = Arc::new(crate::txn::TxnCoordinator::new(
            crate::txn::TxnSettings {
                max_timeout_ms: config.transaction_max_timeout_ms,
                id_expiration_ms: config.transactional_id_expiration_ms,
            },
            config.flush == FlushPolicy::Always,
            data_appended.clone(),
        ));
        replicas.register_coordinator(crate::coordinator::TXN_TOPIC, txn.hook());
        // The share coordinator follows `__share_group_state-0` the same way.
        let share_coordinator = crate::share::coordinator::ShareCoordinator::new(
            config.flush == FlushPolicy::Always,
            data_appended.clone(),
        );
        replicas.register_coordinator(
            crate::coordinator::SHARE_TOPIC,
            Arc::new(crate::coordinator::FollowerHook(
                share_coordinator.follower.clone(),
            )),
        );
        let metadata = Metadata::open(
            &config,
            config
                .max_partitions
                .unwrap_or(crate::limits::MAX_PARTITIONS_DEFAULT),
            replicas.clone(),
            &listeners,
            now,
        )
        .await
        .map_err(anyhow_from)?;
        {
            let cluster = metadata.cluster.clone();
            offsets.set_ready(Box::new(move || cluster.is_live()));
            let cluster = metadata.cluster.clone();
            txn.set_ready(Box::new(move || cluster.is_live()));
            let cluster = metadata.cluster.clone();
            share_coordinator
                .follower
                .set_ready(Box::new(move || cluster.is_live()));
        }
        {
            // A topic deleted through another node: this node, if it coordinates groups, drops
            // its committed offsets (a no-op elsewhere, and for offsets already dropped).
            let offsets = Arc::downgrade(&offsets);
            metadata.on_topics_deleted(Box::new(move |names| {
                let (Some(offsets), Ok(rt)) =
                    (offsets.upgrade(), tokio::runtime::Handle::try_current())
                else {
                    return;
                };
                if offsets.check().is_err() {
                    return;
                }
                rt.spawn(async move {
                    for name in names {
                        if let Err(e) = offsets.delete_topic(&name, now_ms()).await {
                            tracing::warn!(topic = %name, error = %e, "could not drop the committed offsets of a deleted topic");
                        }
                    }
                });
            }));
        }
        // A data directory of an older version keeps its committed offsets, transactions and
        // share-group state.
        for topic in FOLLOWED_TOPICS {
            metadata
                .adopt_internal_log(topic, now)
                .await
                .map_err(anyhow_from)?;
        }
        // A single node coordinates groups and transactions from its first request, as before:
        // their internal topics are created at start (a cluster creates them on the first
        // FindCoordinator, as Kafka), and it serves with the coordinators loaded (a load
        // replays the log on the blocking pool; a cluster node loads once it is live, later).
        if metadata.cluster.is_single_node() {
            for topic in FOLLOWED_TOPICS {
                metadata
                    .ensure_internal_topic(topic, now)
                    .await
                    .map_err(anyhow_from)?;
            }
            let deadline = tokio::time::Instant::now() + SINGLE_NODE_LOAD_WAIT;
            while (offsets.is_loading()
                || txn.is_loading()
                || share_coordinator.follower.is_loading())
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let metrics = Metrics::default();
        metrics.partitions.set(metadata.partition_count() as i64);
        // Share-partitions are rebuilt from the share coordinator's state where this node
        // leads their partitions (a single node: all of them, before it serves).
        let share = ShareService::new(share_coordinator);
        share.materialize(&metadata, &replicas).await;
        crate::schemas::start(&schema_log, &metadata, now)
            .await
            .map_err(anyhow_from)?;
        // Every log is open: from here on writes may come, so the last run's clean-shutdown
        // marker (which let the opens above skip the CRC pass) must go first, durably.
        let clean = sluice_storage::durability::remove_clean_shutdown_marker(&config.data_dir)
            .with_context(|| "cannot remove the clean-shutdown marker")?;
        tracing::info!(
            clean_shutdown = clean,
            "{}",
            if clean {
                "the last run shut down cleanly: active segments were opened without a CRC pass"
            } else {
                "no clean-shutdown marker: active segments were recovered batch by batch"
            }
        );
        Ok(Arc::new(Broker {
            config,
            listeners,
            security,
            api_listener,
            metadata,
            replication: replicas.replication().clone(),
            replicas,
            offsets,
            groups,
            metrics,
            data_appended,
            fetch_sessions: parking_lot::Mutex::new(FetchSessions::default()),
            share,
            lag_history: Default::default(),
            registry,
            schema_log,
            txn,
        }))
    }

    /// The endpoint clients of `listener` are told for this broker (the first listener's
    /// when this broker has no listener of that name).
    pub fn advertised(&self, listener: &str) -> (String, i32) {
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .or(self.listeners.first())
            .map_or((String::new(), 0), |l| (l.host.clone(), l.port))
    }

    /// A single node (node id 1) over `data_dir`, as `sluice serve` opens it (tests).
    #[cfg(test)]
    pub async fn open_single_for_test(data_dir: &std::path::Path) -> Arc<Broker> {
        let config = BrokerConfig {
            node_id: 1,
            data_dir: data_dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        match Broker::open(config, "127.0.0.1:9092".parse().expect("literal address")).await {
            Ok(b) => b,
            Err(e) => panic!("cannot open a broker over {}: {e:#}", data_dir.display()),
        }
    }

    /// The local replica of `topic`-`partition`, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn replica(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<crate::replica_manager::Replica>, KafkaError> {
        self.replicas.get_by_name(&self.metadata, topic, partition)
    }

    /// fsyncs every partition with unflushed appends (many at a time).
    pub async fn flush_dirty(&self) {
        self.replicas.flush_dirty().await;
    }

    /// Expires the committed offsets of groups without members (Kafka's
    /// `offsets.retention.minutes`), then forgets empty groups without offsets. The DLQ redrive
    /// bookkeeping group is exempt: its offsets are the record of which dead letters were
    /// handled, and losing them would requeue twice.
    async fn expire_offsets(&self) {
        let retention =
            i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let result = self
            .offsets
            .expire(now_ms(), retention, |group| {
                group != sluice_share::DLQ_TOOL_GROUP
                    && self
                        .groups
                        .read(|c| c.describe(group).is_none_or(|d| d.members.is_empty()))
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not expire committed offsets");
        }
        // Then forget groups left with neither members nor offsets (Kafka's Dead groups), so
        // group ids that clients make up cannot pile up in memory.
        let removed = self.groups.with(|c| {
            let n = c.remove_empty_groups(|group| self.offsets.has_group(group));
            (n, Vec::new())
        });
        if removed > 0 {
            tracing::debug!(groups = removed, "forgot empty groups without offsets");
        }
    }

    fn apply_retention(&self) {
        for (r, outcome) in self.replicas.apply_retention(now_ms()) {
            match outcome {
                Ok(o) if o.segments_deleted > 0 => tracing::info!(
                    topic = %r.topic(),
                    partition = r.index(),
                    segments = o.segments_deleted,
                    bytes = o.bytes_deleted,
                    "retention deleted segments"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %r.topic(), partition = r.index(), error = %e, "retention failed")
                }
            }
        }
    }
}

fn anyhow_from(e: KafkaError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

/// The advertised endpoint of a listener bound at `local`.
fn endpoint(
    spec: &crate::security::ListenerSpec,
    local: std::net::SocketAddr,
) -> anyhow::Result<sluice_controller::ListenerEndpoint> {
    let (host, port) = spec
        .advertised_endpoint(local)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("listener {}", spec.name))?;
    Ok(sluice_controller::ListenerEndpoint {
        name: spec.name.clone(),
        host,
        port,
        security_protocol: spec.protocol.name().to_string(),
    })
}

/// Splits "host:port" (IPv6 hosts in brackets).
pub fn parse_host_port(addr: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("address {addr:?} must be host:port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("address {addr:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        anyhow::bail!("address {addr:?} has an empty host");
    }
    Ok((host.to_string(), i32::from(port)))
}

/// Binds a TCP socket to `addr` without listening on it. Binding first makes "address in use"
/// fail the start at once; not listening yet means the kernel refuses connections (RST) rather
/// than completing handshakes into a backlog nobody accepts from while the broker recovers.
fn bind_only(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio's `TcpListener::bind` do on Unix: a restart may rebind at once although
    // connections of the previous process are in TIME_WAIT. Still fails if another socket
    // listens on the address.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Connections the kernel queues before accept (std's and tokio's `TcpListener::bind` use 128;
/// Kafka's acceptor uses the OS default, which Linux caps at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

/// Runs the broker until `shutdown` resolves: binds both ports, recovers the data directory,
/// and only then listens and serves (a client never connects to a broker that cannot answer
/// yet: until it is ready its connections are refused). On `shutdown` it stops accepting, lets
/// in-flight requests finish (bounded), flushes, and returns.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut kafka_sockets = Vec::new();
    let mut endpoints = Vec::new();
    for spec in config.kafka_listeners() {
        let socket = bind_only(spec.bind).with_context(|| {
            format!(
                "cannot listen for Kafka clients on {} (listener {})",
                spec.bind, spec.name
            )
        })?;
        let local = socket.local_addr()?;
        endpoints.push(endpoint(&spec, local)?);
        kafka_sockets.push((spec, socket, local));
    }
    let http_socket = bind_only(config.http_addr)
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
    let http_local = http_socket.local_addr()?;
    // The HTTP address registered with the controller is the bound one (port 0 resolved).
    let mut config = config;
    config.http_addr = http_local;
    // The process-wide TLS provider (ring; see `security::tls::provider`), for anything that
    // builds a TLS configuration without naming one.
    let _ = rustls::crypto::CryptoProvider::install_default(std::sync::Arc::unwrap_or_clone(
        crate::security::tls::provider(),
    ));
    let security = crate::security::Security::new(config.security.clone(), &config.data_dir)?;
    let api_listener = crate::api::ApiListener::choose(
        &security,
        kafka_sockets.iter().map(|(spec, _, local)| (spec, *local)),
    );
    let broker = Broker::open_with_listeners(config, endpoints, api_listener, security).await?;
    crate::security::bootstrap_users(&broker).await?;
    for (spec, _, local) in &kafka_sockets {
        tracing::info!(listener = %spec.name, protocol = spec.protocol.name(), address = %local, "Kafka listener");
    }
    tracing::info!(
        http = %http_local,
        data_dir = %broker.config.data_dir.display(),
        flush = %broker.config.flush,
        cluster_id = %broker.metadata.cluster.cluster_id(),
        "sluice is serving"
    );
    let mut kafka_listeners = Vec::new();
    for (spec, socket, local) in kafka_sockets {
        let listener = socket
            .listen(LISTEN_BACKLOG)
            .with_context(|| format!("cannot listen for Kafka clients on {local}"))?;
        kafka_listeners.push((spec, listener));
    }
    let http_listener = http_socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("cannot listen for HTTP on {http_local}"))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // One pool of connections and one of request bytes for every listener.
    let connection_slots = Arc::new(tokio::sync::Semaphore::new(
        broker
            .config
            .max_connections
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let memory = server::RequestMemory::new(
        broker.config.queued_max_request_bytes,
        broker.metrics.request_memory.clone(),
    );
    for (spec, listener) in kafka_listeners {
        tasks.spawn(server::serve_kafka(
            broker.clone(),
            listener,
            spec,
            connection_slots.clone(),
            memory.clone(),
            stop_rx.clone(),
        ));
    }
    if broker.security.tls.is_some()
        || broker
            .security
            .config
            .oauthbearer
            .as_ref()
            .is_some_and(|o| o.jwks.is_some())
    {
        tasks.spawn(crate::security::reload_on_sighup(
            broker.clone(),
            stop_rx.clone(),
        ));
    }
    tasks.spawn(crate::http::serve(
        broker.clone(),
        http_listener,
        stop_rx.clone(),
    ));
    tasks.spawn(background(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::cleaner::run(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::groups::run_timers(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::groups::run_persister(
        broker.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::share::run_timers(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::lag_history::run(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::txn::run(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::schemas::run(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::share::dlq::run_writer(
        broker.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::share::state_store::run_writer(
        broker.clone(),
        stop_rx.clone(),
    ));
    // Cluster membership (heartbeats, the controller's timer) and the reconcile of image
    // changes; they stop after the controlled shutdown below.
    // Replication: the leader side of replica fetches (cluster RPC service 2), the fetchers of
    // the partitions this node follows, ISR checks and the AlterPartition sender.
    broker.metadata.cluster.set_replica_fetch_handler(
        crate::replication::leader::ReplicaFetchService::new(&broker),
    );
    // Transaction markers, group completions and verification between nodes (service 3).
    broker
        .metadata
        .cluster
        .set_coordinator_handler(crate::txn::remote::CoordinatorService::new(&broker));
    // Share-state reads and writes, dead letters between nodes (service 4).
    broker
        .metadata
        .cluster
        .set_share_handler(crate::share::remote::ShareRpcService::new(&broker));
    let link: Arc<dyn crate::replication::ClusterLink> = broker.metadata.cluster.clone();
    broker.replication.start(&broker, link);
    let (cluster_stop_tx, cluster_stop_rx) = watch::channel(false);
    let cluster_task = tokio::spawn(broker.metadata.cluster.clone().run(cluster_stop_rx.clone()));
    let reconcile_task = tokio::spawn(reconcile_loop(broker.clone(), cluster_stop_rx));

    shutdown.await;
    broker.metadata.cluster.controlled_shutdown().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let drained = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_ok();
    if !drained {
        tracing::warn!("some connections did not finish within 10 s; closing them");
    }
    broker.replication.shutdown();
    let _ = cluster_stop_tx.send(true);
    // A heartbeat may be retrying against an unreachable controller: do not wait for it.
    cluster_task.abort();
    reconcile_task.abort();
    let _ = cluster_task.await;
    let _ = reconcile_task.await;
    if tokio::time::timeout(CLUSTER_STOP_TIMEOUT, broker.metadata.cluster.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the metadata quorum did not stop in time");
    }
    broker.flush_dirty().await;
    if drained {
        mark_clean_shutdown(&broker).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The last step of a graceful shutdown, once nothing writes any more: fsync every log under
/// the data directory (internal ones too, whatever the flush policy), then write the
/// clean-shutdown marker so the next start skips the CRC pass. Any failure leaves no marker,
/// and the next start recovers as after a crash.
async fn mark_clean_shutdown(broker: &Broker) {
    let data_dir = broker.config.data_dir.clone();
    // Producer-state snapshots at each log end, so the next start replays nothing.
    let replicas = broker.replicas.clone();
    let done = tokio::task::spawn_blocking(move || {
        replicas.snapshot_producer_states();
        sluice_storage::durability::sync_logs_under(&data_dir)?;
        sluice_storage::durability::write_clean_shutdown_marker(&data_dir)
    })
    .await;
    match done {
        Ok(Ok(())) => tracing::info!("all logs fsynced; clean-shutdown marker written"),
        Ok(Err(e)) => tracing::error!(error = %e, "could not mark a clean shutdown"),
        Err(e) => tracing::error!(error = %e, "could not mark a clean shutdown"),
    }
}

/// Bound on stopping the metadata quorum member and the cluster listener at shutdown.
const CLUSTER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Reconciles every applied metadata change onto the local replicas (see `metadata.rs`).
async fn reconcile_loop(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let state = broker.metadata.cluster.state.clone();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = state.changed.notified() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.metadata.sync(now_ms())).await;
                broker.metrics.partitions.set(broker.replicas.len() as i64);
            }
        }
    }
}

async fn background(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let flush_every = match broker.config.flush {
        FlushPolicy::Interval(d) => d,
        _ => Duration::from_secs(3600),
    };
    let mut flush_tick = tokio::time::interval(flush_every);
    let mut retention_tick = tokio::time::interval(broker.config.retention_check_interval);
    let mut offsets_tick = tokio::time::interval(broker.config.offsets_retention_check_interval);
    offsets_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = flush_tick.tick() => {
                if matches!(broker.config.flush, FlushPolicy::Interval(_)) {
                    broker.flush_dirty().await;
                }
            }
            _ = retention_tick.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.apply_retention()).await;
            }
            _ = offsets_tick.tick() => broker.expire_offsets().await,
        }
    }
}
