//! The built-in schema registry's broker side: its replicated log, the forwarding of writes to
//! the primary, and broker-side validation of produced records.
//!
//! # One registry per cluster, following `_schemas-0` (issue #10)
//! Registry events (`sluice-registry`'s `RegistryEvent`s) are records of `_schemas-0`, partition
//! 0 of the internal topic `_schemas` (Confluent keeps them in a `_schemas` topic too): a topic
//! of the metadata image, replicated like any partition (replication factor min(3, cluster
//! size), `min.insync.replicas` a majority; `Metadata::ensure_internal_topic`). A single node
//! creates it at start; a cluster node creates it once it is live ([`run`]). A data directory
//! of an older version keeps its `_schemas-0` (`Metadata::adopt_internal_log`).
//!
//! - **Every node applies the committed events** ([`SchemaLog::catch_up`]): the records of its
//!   local replica below the high watermark, in log order, whatever its role. So reads (the
//!   REST API's GETs, lookups, compatibility checks) and produce-side validation work on every
//!   node; a follower's state lags the primary's by its replication delay (as Confluent's
//!   secondaries lag their `_schemas` consumer). A replica replaced by another (moved off
//!   and back), a log truncated below what was applied, or a log start moved past it (a
//!   snapshot), starts the state over from the log start (whose first record is then a
//!   snapshot).
//! - **The primary is the leader of `_schemas-0`.** A write is decided under the registry's
//!   write lock only once this node leads, is live, and has applied every record of its log
//!   ([`Journal::ready`]: a new leader first waits until the high watermark reaches its log end,
//!   bounded by 5 s); it is appended as the leader at the current epoch and answered only
//!   once committed (fsynced here and, under replication, below the high watermark: acks=all
//!   with `min.insync.replicas`) and applied — durable before visible, read-your-writes on the
//!   primary. Ids and versions come from the replicated state, so a new primary never reuses
//!   an id. A write whose commit times out may still commit later: the next write waits until
//!   it is applied (or fails), so it is never decided against a state that misses it.
//! - **Writes reaching another node are forwarded** ([`forward_writes`], Confluent's
//!   secondaries do the same): to the HTTP address the primary registered with the
//!   controller, once (a forwarded request is never forwarded again), and the primary's
//!   status and body are returned unchanged. No primary known: HTTP 500 with `error_code`
//!   50004; the primary unreachable or too slow (`REGISTRY_FORWARD_TIMEOUT_MS`): 50003.
//!
//! The log stays proportional to the registry's state: the registry writes a snapshot event
//! (its whole state) once enough was appended, and the history before it is dropped once the
//! snapshot is committed (`internal_log::finish_snapshot` through `CoordinatorLog`).
//!
//! # Validation
//! Validation is per topic: `confluent.value.schema.validation` / `confluent.key.schema.validation`
//! (Redpanda's `redpanda.value.schema.id.validation` / `redpanda.key.schema.id.validation` mean
//! the same) make Produce decode each batch and check every record's Confluent framing: magic
//! byte, a registered schema id — under the subject the topic's subject name strategy gives,
//! for the default `TopicNameStrategy` — and for Protobuf the message indexes. With
//! `sluice.schema.validation.parse=true` the payload must also decode against the schema. A bad
//! batch is refused whole with INVALID_RECORD naming the record; so is a compressed batch whose
//! records inflate past the topic's `max.message.bytes` (decompression is bounded by it).
//! Topics without these configs take the usual path: nothing is decoded. Validation reads this
//! node's registry state (above), so a schema registered a moment ago elsewhere may not be
//! known yet on a follower.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use sluice_registry::{Journal, Registry, RegistryError};
use sluice_storage::ProducedBatch;
use tokio::sync::{watch, Notify};

use crate::broker::Broker;
use crate::coordinator::{CoordinatorHook, CoordinatorLog};
use crate::error::KafkaError;
use crate::internal_log;
use crate::record_codec;
use crate::replica_manager::{Replica, Role};
use crate::topic_config::TopicConfigs;

/// The registry's internal topic (one partition).
pub const SCHEMAS_TOPIC: &str = "_schemas";
pub const SCHEMAS_LOG_DIR: &str = "_schemas-0";

/// Marks a write forwarded by another node: it is served here or refused, never forwarded on.
pub const FORWARDED_HEADER: &str = "x-sluice-forwarded";

const TOPIC_NAME_STRATEGY: &str = "io.confluent.kafka.serializers.subject.TopicNameStrategy";

/// How often the tail looks for newly committed records (and a loading primary rechecks).
const TAIL_POLL: Duration = Duration::from_millis(20);
/// How often a cluster node retries creating the topic while it does not exist.
const CREATE_RETRY: Duration = Duration::from_secs(1);
/// Bound on a write waiting for this node's state to hold its whole log (a new primary).
const READY_TIMEOUT: Duration = crate::coordinator::COMMIT_TIMEOUT;
/// Bound on waiting, at a single node's start, for the registry to be replayed.
const SINGLE_NODE_LOAD_WAIT: Duration = Duration::from_secs(60);

/// Where the tail is in the local replica's log.
#[derive(Default)]
struct Tail {
    /// The replica the state was built from (a different one starts over).
    replica: Option<Arc<Replica>>,
    /// The offset after the last record applied.
    next: i64,
    /// The leader epoch of the last batch applied (truncation detection).
    last_epoch: Option<i32>,
}

/// The registry's journal over the local replica of `_schemas-0`, and the tail that applies
/// its committed records to the registry (see the module docs).
pub struct SchemaLog {
    registry: OnceLock<Weak<Registry>>,
    /// The local replica of `_schemas-0` (set by the partition states the reconcile applies).
    replica: RwLock<Option<Arc<Replica>>>,
    tail: Mutex<Tail>,
    /// `tail.next`, readable without the lock.
    applied: AtomicI64,
    flush_always: bool,
    /// Woken after appends (the leader's replica-fetch long polls wait on it).
    wake: Arc<Notify>,
    /// The broker's liveness check (a primary writes only while live; none set: never).
    live: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
    compaction: internal_log::Compaction,
    /// What the write being decided was decided against: the replica, leader epoch and log
    /// end [`SchemaLog::ready`] found (all applied). Its append must find the same, else the
    /// leadership moved (and maybe back) in between and the decision may be stale.
    decided: Mutex<Option<Decided>>,
}

/// See [`SchemaLog::decided`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decided {
    replica: usize,
    leader_epoch: i32,
    log_end: i64,
}

impl Decided {
    fn of(replica: &Arc<Replica>, leader_epoch: i32) -> Decided {
        Decided {
            replica: Arc::as_ptr(replica) as usize,
            leader_epoch,
            log_end: replica.log_end_offset(),
        }
    }
}

impl SchemaLog {
    /// A log that follows nothing until a replica of `_schemas-0` is opened here, and the
    /// registry it feeds.
    pub fn new(flush_always: bool, wake: Arc<Notify>) -> (Arc<SchemaLog>, Arc<Registry>) {
        let log = Arc::new(SchemaLog {
            registry: OnceLock::new(),
            replica: RwLock::new(None),
            tail: Mutex::new(Tail::default()),
            applied: AtomicI64::new(0),
            flush_always,
            wake,
            live: OnceLock::new(),
            compaction: internal_log::Compaction::new(0),
            decided: Mutex::new(None),
        });
        let registry = Arc::new(Registry::new(Arc::new(SchemaJournal(log.clone()))));
        let _ = log.registry.set(Arc::downgrade(&registry));
        (log, registry)
    }

    /// Registers the broker's liveness check.
    pub fn set_live(&self, f: Box<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.live.set(f);
    }

    fn is_live(&self) -> bool {
        self.live.get().is_some_and(|f| f())
    }

    fn current(&self) -> Option<Arc<Replica>> {
        self.replica.read().clone()
    }

    /// The offset after the last applied record.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Where committed records end for the tail: the high watermark, and on an unreplicated
    /// leader (a single replica: the HW is its log end) only what is fsynced — an event takes
    /// effect once durable.
    fn committed_end(replica: &Replica) -> i64 {
        let hw = replica.watermarks().high_watermark;
        if replica.role().is_leader() && !replica.is_replicated_leader() {
            hw.min(replica.partition().synced_offset())
        } else {
            hw
        }
    }

    /// Whether [`SchemaLog::catch_up`] has work: another replica, or records committed past
    /// what was applied. Never waits for a catch-up in progress.
    fn behind(&self) -> bool {
        let current = self.current();
        let Some(tail) = self.tail.try_lock() else {
            return false;
        };
        match (&current, &tail.replica) {
            (Some(r), Some(t)) if Arc::ptr_eq(r, t) => tail.next != Self::committed_end(r),
            (Some(_), _) => true,
            (None, _) => false,
        }
    }

    /// Applies to the registry every committed record of the local replica not applied yet
    /// (blocking: reads the log). See the module docs for when it starts over.
    pub fn catch_up(&self) -> Result<(), KafkaError> {
        let Some(registry) = self.registry.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let Some(replica) = self.current() else {
            return Ok(());
        };
        let mut tail = self.tail.lock();
        let marks = replica.watermarks();
        let same = tail
            .replica
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &replica));
        let restart = if !same {
            Some("a new replica of _schemas-0")
        } else if tail.next < marks.log_start_offset {
            Some("the log start moved past the records applied (a snapshot)")
        } else if tail.next > marks.log_end_offset || self.diverged(&replica, &tail) {
            Some("the log was truncated below the records applied")
        } else {
            None
        };
        if let Some(why) = restart {
            if tail.replica.is_some() {
                tracing::info!(
                    reason = why,
                    "schema registry state rebuilt from _schemas-0"
                );
            }
            registry.reset();
            *tail = Tail {
                replica: Some(replica.clone()),
                next: marks.log_start_offset,
                last_epoch: None,
            };
        }
        let until = Self::committed_end(&replica);
        if tail.next < until {
            let (next, epoch) = internal_log::replay_range(
                replica.partition(),
                tail.next,
                until,
                |_, _, value| {
                    if let Some(v) = value {
                        if let Err(e) = registry.replay(v) {
                            tracing::error!(error = %e, "skipping an unreadable schema registry event");
                        }
                    }
                },
            )?;
            tail.next = next;
            if epoch.is_some() {
                tail.last_epoch = epoch;
            }
        }
        self.applied.store(tail.next, Ordering::Release);
        Ok(())
    }

    /// Whether the records applied are no longer all in the log: the epoch of the last batch
    /// applied now ends (in the leader-epoch cache) before what was applied.
    fn diverged(&self, replica: &Replica, tail: &Tail) -> bool {
        let Some(epoch) = tail.last_epoch else {
            return false;
        };
        let (found, end) = replica.end_offset_for(epoch);
        found != epoch || end < tail.next
    }

    async fn catch_up_async(self: &Arc<Self>) -> Result<(), String> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.catch_up())
            .await
            .map_err(|e| format!("applying _schemas-0: {e}"))?
            .map_err(|e| format!("applying _schemas-0: {}", e.message))
    }

    /// The replica and epoch this node leads `_schemas-0` at, if it may write (leading and
    /// live).
    fn leading(&self) -> Result<(Arc<Replica>, i32), String> {
        let not_primary = || {
            "this node is not the registry's primary (it does not lead _schemas-0); retry"
                .to_string()
        };
        let replica = self.current().ok_or_else(not_primary)?;
        match replica.role() {
            Role::Leader { leader_epoch } if self.is_live() => Ok((replica, leader_epoch)),
            _ => Err(not_primary()),
        }
    }

    /// Whether the state holds every record of `replica`'s log.
    fn holds_whole_log(&self, replica: &Arc<Replica>) -> bool {
        let tail = self.tail.lock();
        tail.replica
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, replica))
            && tail.next >= replica.log_end_offset()
    }

    /// [`Journal::ready`]: this node leads, and its state holds its whole log (a new leader
    /// waits until its log end is committed; bounded).
    async fn ready(self: Arc<Self>) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        *self.decided.lock() = None;
        loop {
            let (replica, epoch) = self.leading()?;
            if self.holds_whole_log(&replica) {
                *self.decided.lock() = Some(Decided::of(&replica, epoch));
                return Ok(());
            }
            // A new leader's HW moves once the followers fetch its log end; count its own.
            if replica.is_replicated_leader() {
                let leo = replica.leader_leo(self.flush_always);
                if replica.on_local_append(leo, crate::broker::now_ms()) {
                    self.wake.notify_waiters();
                }
            }
            self.catch_up_async().await?;
            if self.holds_whole_log(&replica) {
                *self.decided.lock() = Some(Decided::of(&replica, epoch));
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(
                    "the registry's primary is still loading _schemas-0 (its log is not all \
                     committed yet); retry"
                        .into(),
                );
            }
            tokio::time::sleep(TAIL_POLL).await;
        }
    }

    fn writer(&self, replica: Arc<Replica>, leader_epoch: i32) -> CoordinatorLog {
        CoordinatorLog::new(replica, leader_epoch, self.flush_always, self.wake.clone())
    }

    /// The leader's writer, if nothing changed since the write was decided (see
    /// [`SchemaLog::decided`]).
    fn decided_writer(&self) -> Result<CoordinatorLog, String> {
        let (replica, epoch) = self.leading()?;
        if *self.decided.lock() != Some(Decided::of(&replica, epoch)) {
            return Err(
                "the registry's primary changed while the write was decided; retry".to_string(),
            );
        }
        Ok(self.writer(replica, epoch))
    }

    /// Appends `records` as the leader, waits until committed, applies them.
    async fn write(self: Arc<Self>, records: Vec<internal_log::KeyValue>) -> Result<(), String> {
        let writer = self.decided_writer()?;
        *self.decided.lock() = None;
        let now = crate::broker::now_ms();
        let buf = internal_log::encode_batch(&records, now).map_err(|e| e.message)?;
        let end = writer.append(&buf, now).map_err(write_error)?;
        self.compaction.appended(buf.len());
        writer.commit(end).await.map_err(write_error)?;
        self.applied_through(end).await?;
        // A snapshot of the state after this write may follow (under the same write lock).
        if writer.still_leading() && writer.replica().log_end_offset() == end {
            *self.decided.lock() = Some(Decided::of(writer.replica(), writer.leader_epoch()));
        }
        Ok(())
    }

    /// Applies what is committed, and checks it reached `end`.
    async fn applied_through(self: &Arc<Self>, end: i64) -> Result<(), String> {
        self.catch_up_async().await?;
        if self.applied() >= end {
            Ok(())
        } else {
            Err("the write was committed but this node's state does not hold it yet; retry".into())
        }
    }

    async fn snapshot(self: Arc<Self>, event: Vec<u8>) -> Result<(), String> {
        let writer = self.decided_writer()?;
        *self.decided.lock() = None;
        if !self.compaction.start() {
            return Ok(());
        }
        let records = [(None, Some(event))];
        let appended = internal_log::append_snapshot(&writer, &records, crate::broker::now_ms());
        let end = appended.as_ref().map(|(_, end, _)| *end).ok();
        internal_log::finish_snapshot(&writer, &self.compaction, appended)
            .await
            .map_err(write_error)?;
        match end {
            Some(end) => self.applied_through(end).await,
            None => Ok(()),
        }
    }
}

/// A coordinator write's error as the registry reports it (a Store error, 50001).
fn write_error(e: KafkaError) -> String {
    match ResponseError::try_from_code(e.code) {
        Some(ResponseError::NotCoordinator) => {
            "this node no longer leads _schemas-0 (the registry's primary moved); retry".into()
        }
        Some(ResponseError::CoordinatorNotAvailable) => format!(
            "the in-sync replicas of _schemas-0 did not confirm the write ({}); it may still \
             take effect",
            e.message
        ),
        _ => e.message,
    }
}

/// The registry's [`Journal`]: events are records of `_schemas-0` (see the module docs).
struct SchemaJournal(Arc<SchemaLog>);

impl Journal for SchemaJournal {
    fn append(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(self.0.clone().write(vec![(None, Some(event))]))
    }

    fn wants_snapshot(&self) -> bool {
        self.0.compaction.due()
    }

    fn snapshot(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(self.0.clone().snapshot(event))
    }

    fn ready(&self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(self.0.clone().ready())
    }

    fn applies_events(&self) -> bool {
        true
    }
}

/// The registry follows the local replica of `_schemas-0` in every role.
pub struct SchemaHook(pub Arc<SchemaLog>);

impl CoordinatorHook for SchemaHook {
    fn on_partition_state(&self, replica: &Arc<Replica>) {
        let mut current = self.0.replica.write();
        if !current.as_ref().is_some_and(|r| Arc::ptr_eq(r, replica)) {
            *current = Some(replica.clone());
        }
    }

    fn on_removed(&self) {
        // The state stays as it was (reads keep answering it) until a replica returns.
        *self.0.replica.write() = None;
    }
}

/// Opens the registry's side of the broker: the `_schemas` topic on a single node (or the
/// adoption of an older data directory's log) and, on a single node, the state replayed
/// before the broker serves, as before clustering.
pub async fn start(
    log: &Arc<SchemaLog>,
    metadata: &crate::metadata::Metadata,
    now_ms: i64,
) -> Result<(), KafkaError> {
    {
        let cluster = metadata.cluster.clone();
        log.set_live(Box::new(move || cluster.is_live()));
    }
    metadata.adopt_internal_log(SCHEMAS_TOPIC, now_ms).await?;
    if metadata.cluster.is_single_node() {
        metadata
            .ensure_internal_topic(SCHEMAS_TOPIC, now_ms)
            .await?;
        let deadline = tokio::time::Instant::now() + SINGLE_NODE_LOAD_WAIT;
        loop {
            log.catch_up_async()
                .await
                .map_err(|e| KafkaError::new(ResponseError::KafkaStorageError, e))?;
            let done = log.current().is_some_and(|r| log.holds_whole_log(&r));
            if done || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(TAIL_POLL).await;
        }
    }
    Ok(())
}

/// Applies committed records as they replicate; in a cluster, creates `_schemas` once this
/// node is live and the topic does not exist yet.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let log = broker.schema_log.clone();
    let mut tick = tokio::time::interval(TAIL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_create = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let cluster = &broker.metadata.cluster;
        if !cluster.is_single_node()
            && broker.metadata.topic(SCHEMAS_TOPIC).is_none()
            && cluster.is_live()
            && tokio::time::Instant::now() >= next_create
        {
            next_create = tokio::time::Instant::now() + CREATE_RETRY;
            if let Err(e) = broker
                .metadata
                .ensure_internal_topic(SCHEMAS_TOPIC, crate::broker::now_ms())
                .await
            {
                tracing::debug!(error = %e, "cannot create _schemas yet");
            }
        }
        if log.behind() {
            if let Err(e) = log.catch_up_async().await {
                tracing::warn!(error = %e, "schema registry tail");
            }
        }
    }
}

// ---- forwarding writes to the primary ---------------------------------------------------

/// Where a registry write goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node is the primary (or no cluster): serve it here.
    Local,
    /// Forward to the primary's HTTP address.
    Forward { node: i32, addr: String },
    /// Refuse with this error (no primary known, or nowhere to send it).
    Refuse(RegistryError),
}

/// Decides where a write goes, given the primary (`leader`: the leader of `_schemas-0`, -1
/// for none), this node, the primary's registered HTTP address, and whether the request was
/// already forwarded once.
pub fn route(leader: i32, me: i32, leader_http: Option<String>, forwarded: bool) -> Route {
    if leader == me {
        return Route::Local;
    }
    if leader < 0 {
        return Route::Refuse(RegistryError::UnknownLeader(
            "the registry has no primary now (_schemas-0 has no leader); retry".into(),
        ));
    }
    if forwarded {
        return Route::Refuse(RegistryError::ForwardingFailed(format!(
            "this node (node {me}) received a forwarded write but is not the primary either \
             (node {leader} is); retry"
        )));
    }
    match leader_http {
        Some(addr) => Route::Forward { node: leader, addr },
        None => Route::Refuse(RegistryError::ForwardingFailed(format!(
            "the primary (node {leader}) registered no HTTP address (an older version)"
        ))),
    }
}

/// The registry's writes, served on the primary and forwarded there from any other node (see
/// the module docs). Reads pass through.
pub async fn forward_writes(
    State(broker): State<Arc<Broker>>,
    req: Request,
    next: Next,
) -> Response {
    if !sluice_registry::http::is_write(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let me = broker.config.node_id;
    let leader = match broker.metadata.topic(SCHEMAS_TOPIC) {
        Some(topic) => {
            let cluster = &broker.metadata.cluster;
            let leader = cluster
                .state
                .read(|img| img.partition(&topic.id, 0).map_or(-1, |p| p.leader));
            // A node that is not live never names itself leader (a stale image).
            if leader == me && !cluster.is_live() {
                -1
            } else {
                leader
            }
        }
        None => {
            if broker.metadata.cluster.is_single_node() {
                me
            } else {
                -1
            }
        }
    };
    let forwarded = req.headers().contains_key(FORWARDED_HEADER);
    let http = (leader >= 0 && leader != me)
        .then(|| broker.metadata.cluster.http_addr_of(leader))
        .flatten();
    match route(leader, me, http, forwarded) {
        Route::Local => next.run(req).await,
        Route::Refuse(e) => sluice_registry::http::error_reply(e),
        Route::Forward { node, addr } => forward(node, addr, req, "the primary").await,
    }
}

fn forward_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_millis(
                crate::limits::REGISTRY_FORWARD_TIMEOUT_MS,
            )))
            .build()
            .into()
    })
}

/// Headers not passed on (hop-by-hop, or set anew for the forwarded request).
fn passes_on(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Sends the write (its body already read in full by the HTTP guard) to the primary and
/// answers its status and body unchanged.
/// Sends `req` on to `node`'s HTTP address and answers with its reply; `to` names that node in
/// errors (`the primary`, `the group coordinator`).
pub(crate) async fn forward(node: i32, addr: String, req: Request, to: &str) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, crate::limits::HTTP_MAX_BODY_BYTES).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return sluice_registry::http::error_reply(RegistryError::BadRequest(format!(
                "cannot read the request body: {e}"
            )))
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url = format!("http://{addr}{path}");
    let mut builder = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(&url);
    // The caller's credentials go along as HTTP Basic: the other node checks them (and its
    // ACLs) again, and a console session is this node's alone.
    let login = parts
        .extensions
        .get::<crate::security::http::Caller>()
        .and_then(|c| c.login.clone());
    for (name, value) in parts.headers.iter().filter(|(n, _)| passes_on(n)) {
        if login.is_some()
            && (name == header::AUTHORIZATION
                || name == header::COOKIE
                || name.as_str() == crate::security::http::CSRF_HEADER)
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    if let Some(login) = login {
        builder = builder.header(header::AUTHORIZATION, login.basic_header());
    }
    builder = builder.header(FORWARDED_HEADER, HeaderValue::from_static("1"));
    let request = match builder.body(body) {
        Ok(r) => r,
        Err(e) => {
            return sluice_registry::http::error_reply(RegistryError::ForwardingFailed(format!(
                "cannot build the request to {to} (node {node}, {url}): {e}"
            )))
        }
    };
    let sent = tokio::task::spawn_blocking(move || {
        let mut resp = forward_agent().run(request)?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = resp
            .body_mut()
            .with_config()
            .limit(crate::limits::REGISTRY_FORWARD_MAX_ANSWER_BYTES)
            .read_to_vec()?;
        Ok::<_, ureq::Error>((status, content_type, body))
    })
    .await;
    match sent {
        Ok(Ok((status, content_type, body))) => {
            let mut resp = (status, Body::from(body)).into_response();
            if let Some(ct) = content_type {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        Ok(Err(e)) => sluice_registry::http::error_reply(RegistryError::ForwardingFailed(format!(
            "{to} (node {node} at {addr}): {e}"
        ))),
        Err(e) => sluice_registry::http::error_reply(RegistryError::ForwardingFailed(format!(
            "{to} (node {node} at {addr}): {e}"
        ))),
    }
}

/// What a topic asks of produced records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub key: bool,
    pub value: bool,
    pub parse: bool,
    /// Check the id is registered under `<topic>-key` / `<topic>-value`.
    pub key_topic_subject: bool,
    pub value_topic_subject: bool,
}

fn flag(configs: &TopicConfigs, name: &str) -> bool {
    configs
        .0
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl Validation {
    /// `None` for topics that validate nothing (the common, free case).
    pub fn of(configs: &TopicConfigs) -> Option<Validation> {
        let key = flag(configs, "confluent.key.schema.validation")
            || flag(configs, "redpanda.key.schema.id.validation");
        let value = flag(configs, "confluent.value.schema.validation")
            || flag(configs, "redpanda.value.schema.id.validation");
        if !key && !value {
            return None;
        }
        let topic_strategy = |name: &str| {
            configs
                .0
                .get(name)
                .is_none_or(|s| s == TOPIC_NAME_STRATEGY || s == "TopicNameStrategy")
        };
        Some(Validation {
            key,
            value,
            parse: flag(configs, "sluice.schema.validation.parse"),
            key_topic_subject: topic_strategy("confluent.key.subject.name.strategy"),
            value_topic_subject: topic_strategy("confluent.value.subject.name.strategy"),
        })
    }
}

fn invalid(message: String) -> KafkaError {
    KafkaError::new(ResponseError::InvalidRecord, message)
}

/// Checks every record of a produced record set whose batches `batches` (from
/// `validate_produced`: framing and CRCs already checked) are in `records`; the error names the
/// first bad record by its index in the set (Kafka's `RecordErrors.BatchIndex`) and says what
/// is wrong. A compressed batch is decompressed under `cap` (the topic's `max.message.bytes`)
/// into one buffer reused for every batch; records are read in place, never copied.
pub fn validate_records(
    registry: &Registry,
    topic: &str,
    spec: &Validation,
    records: &[u8],
    batches: &[ProducedBatch],
    cap: usize,
) -> Result<(), (i32, KafkaError)> {
    // Ids already checked against the topic's subject in this request.
    let mut subject_ok: Vec<(bool, i32)> = Vec::new();
    let mut index = 0i32;
    let mut scratch = Vec::new();
    for b in batches {
        let batch = records.get(b.position..).unwrap_or_default();
        let section = record_codec::records_section(batch, &b.header, cap, &mut scratch)
            .map_err(|e| (index, invalid(format!("record batch of {topic}: {e}"))))?;
        for r in record_codec::records(section, b.header.records_count) {
            let r = r.map_err(|e| {
                (
                    index,
                    invalid(format!("record batch cannot be decoded: {e}")),
                )
            })?;
            for (is_key, on, bytes, by_topic) in [
                (true, spec.key, r.key, spec.key_topic_subject),
                (false, spec.value, r.value, spec.value_topic_subject),
            ] {
                if !on {
                    continue;
                }
                let part = if is_key { "key" } else { "value" };
                let fail = |why: String| {
                    (
                        index,
                        invalid(format!(
                            "record {index} (offset delta {}) of {topic}: {part} {why}",
                            r.offset_delta
                        )),
                    )
                };
                let Some(bytes) = bytes else {
                    return Err(fail(
                        "is null; this topic requires schema-framed records".into(),
                    ));
                };
                registry
                    .validate(bytes, spec.parse)
                    .map_err(|e| fail(format!("is invalid: {e}")))?;
                if by_topic {
                    let id = sluice_registry::wire::parse_header(bytes)
                        .map(|(id, _)| id)
                        .map_err(|e| fail(format!("is invalid: {e}")))?;
                    if !subject_ok.contains(&(is_key, id)) {
                        let subject = format!("{topic}-{part}");
                        let registered = registry
                            .versions_for_id(id, true)
                            .map(|v| v.iter().any(|(s, _)| *s == subject))
                            .unwrap_or(false);
                        if !registered {
                            return Err(fail(format!(
                                "uses schema id {id}, which is not registered under subject {subject}"
                            )));
                        }
                        subject_ok.push((is_key, id));
                    }
                }
            }
            index = index.saturating_add(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica_manager::{ReplicaConfig, ReplicaManager, TopicIdPartition};
    use sluice_registry::{SchemaRequest, SchemaType};

    fn avro(name: &str) -> SchemaRequest {
        SchemaRequest {
            schema: format!(
                r#"{{"type":"record","name":"{name}","fields":[{{"name":"a","type":"long"}}]}}"#
            ),
            schema_type: SchemaType::Avro,
            references: Vec::new(),
            id: None,
            version: None,
        }
    }

    /// A replica of `_schemas-0` led here (one replica: committed = fsynced).
    fn led_replica(dir: &std::path::Path) -> (ReplicaManager, Arc<Replica>) {
        let rm = ReplicaManager::new(0, dir);
        let tp = TopicIdPartition {
            topic_id: uuid::Uuid::nil(),
            partition: 0,
        };
        let config = ReplicaConfig {
            log_config: internal_log::log_config(),
            conditional: false,
        };
        let replica = rm
            .open(
                tp,
                SCHEMAS_TOPIC,
                &config,
                Role::Leader { leader_epoch: 0 },
                0,
            )
            .unwrap();
        rm.become_leader(tp, 0).unwrap();
        (rm, replica)
    }

    fn follow(replica: &Arc<Replica>, live: bool) -> (Arc<SchemaLog>, Arc<Registry>) {
        let (log, registry) = SchemaLog::new(true, Arc::new(Notify::new()));
        log.set_live(Box::new(move || live));
        SchemaHook(log.clone()).on_partition_state(replica);
        (log, registry)
    }

    /// The primary answers a write once it is durable and applied (read-your-writes); another
    /// registry reading the same log (a follower's view) applies the same events and gets the
    /// same state; ids continue from the replicated state.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_node_applies_the_committed_events() {
        let dir = tempfile::tempdir().unwrap();
        let (_rm, replica) = led_replica(dir.path());
        let (log, primary) = follow(&replica, true);
        let a = primary.register("a-value", avro("A"), false).await.unwrap();
        let b = primary.register("b-value", avro("B"), false).await.unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert!(
            primary.schema_by_id(2).is_ok(),
            "read-your-writes on the primary"
        );
        assert_eq!(log.applied(), replica.log_end_offset());

        let (follower_log, follower) = follow(&replica, false);
        follower_log.catch_up().unwrap();
        assert_eq!(follower.snapshot(), primary.snapshot());
        // A node that does not lead (here: not live) decides no write.
        let refused = follower.register("c-value", avro("C"), false).await;
        assert!(
            matches!(refused, Err(RegistryError::Store(ref m)) if m.contains("not the registry's primary")),
            "{refused:?}"
        );

        // A new primary over the same log continues the ids.
        let (_, next) = follow(&replica, true);
        let c = next.register("c-value", avro("C"), false).await.unwrap();
        assert_eq!(c.id, 3);
    }

    /// Snapshots compact the log: the history before the newest snapshot is dropped once it is
    /// committed, and a node reading the log from its new start (a follower that fell behind)
    /// gets the same state; ids go on after it.
    #[tokio::test(flavor = "multi_thread")]
    async fn snapshots_drop_the_history_and_followers_rebuild_from_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_rm, replica) = led_replica(dir.path());
        let (log, primary) = follow(&replica, true);
        log.compaction.set_min_bytes(1);
        for i in 0..20 {
            primary
                .register(&format!("s{i}-value"), avro(&format!("S{i}")), false)
                .await
                .unwrap();
        }
        let start = replica.watermarks().log_start_offset;
        assert!(start > 0, "no snapshot dropped the history");
        let (follower_log, follower) = follow(&replica, false);
        follower_log.catch_up().unwrap();
        assert_eq!(follower.snapshot(), primary.snapshot());
        assert_eq!(follower.subjects("", false, false).len(), 20);
        let next = primary.register("t-value", avro("T"), false).await.unwrap();
        assert_eq!(next.id, 21);
    }

    /// Another replica (moved off and back, or a new log) starts the state over.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_replica_rebuilds_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_rm, replica) = led_replica(dir.path());
        let (log, registry) = follow(&replica, true);
        registry
            .register("a-value", avro("A"), false)
            .await
            .unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let (_rm2, empty) = led_replica(other_dir.path());
        SchemaHook(log.clone()).on_partition_state(&empty);
        log.catch_up().unwrap();
        assert!(registry.subjects("", false, false).is_empty());
        SchemaHook(log.clone()).on_partition_state(&replica);
        log.catch_up().unwrap();
        assert_eq!(
            registry.subjects("", false, false),
            vec!["a-value".to_string()]
        );
    }

    /// Only records below the committed end are read, whole batches only.
    #[tokio::test(flavor = "multi_thread")]
    async fn replay_range_stops_at_the_committed_end() {
        let dir = tempfile::tempdir().unwrap();
        let (_rm, replica) = led_replica(dir.path());
        for i in 0..3u8 {
            let buf = internal_log::encode_batch(&[(None, Some(vec![i]))], 0).unwrap();
            replica.append_as_leader(&buf, 0, None).unwrap();
        }
        let mut seen = Vec::new();
        let (next, epoch) = internal_log::replay_range(replica.partition(), 0, 2, |_, _, v| {
            seen.push(v.map(<[u8]>::to_vec))
        })
        .unwrap();
        assert_eq!((next, epoch), (2, Some(0)));
        assert_eq!(seen, vec![Some(vec![0]), Some(vec![1])]);
        let (next, _) =
            internal_log::replay_range(replica.partition(), 2, 3, |_, _, _| {}).unwrap();
        assert_eq!(next, 3);
    }

    /// A data directory of the pre-cluster layout (`_schemas-0` opened as a plain log, no
    /// `partition.metadata`) keeps its schemas: it becomes partition 0 of `_schemas`, and the
    /// registry serves them from the first request, and writes on.
    #[tokio::test]
    async fn an_old_schemas_log_is_adopted_as_the_internal_topic() {
        let dir = tempfile::tempdir().unwrap();
        let journal = sluice_registry::MemoryJournal::new();
        let old = Registry::new(Arc::new(journal.clone()));
        old.register("a-value", avro("A"), false).await.unwrap();
        {
            let log = crate::partition::Partition::open(
                &dir.path().join(SCHEMAS_LOG_DIR),
                0,
                internal_log::log_config(),
                0,
            )
            .unwrap();
            for event in journal.events() {
                internal_log::append_durably(&log, &[(None, Some(event))], 0)
                    .await
                    .unwrap();
            }
        }
        let log_dir = dir.path().join(SCHEMAS_LOG_DIR);
        assert!(crate::metadata::read_partition_metadata(&log_dir).is_none());
        let broker = Broker::open_single_for_test(dir.path()).await;
        let topic = broker.metadata.topic(SCHEMAS_TOPIC).unwrap();
        assert_eq!(
            crate::metadata::read_partition_metadata(&log_dir),
            Some(topic.id)
        );
        assert_eq!(broker.registry.snapshot(), old.snapshot());
        let b = broker
            .registry
            .register("b-value", avro("B"), false)
            .await
            .unwrap();
        assert_eq!(b.id, 2);
    }

    #[test]
    fn writes_go_to_the_primary_once() {
        let addr = Some("10.0.0.2:8081".to_string());
        assert_eq!(route(1, 1, None, false), Route::Local);
        assert_eq!(route(1, 1, None, true), Route::Local);
        assert_eq!(
            route(2, 1, addr.clone(), false),
            Route::Forward {
                node: 2,
                addr: "10.0.0.2:8081".into()
            }
        );
        let code = |r: Route| match r {
            Route::Refuse(e) => e.error_code(),
            other => panic!("{other:?}"),
        };
        // No primary: Confluent's "unknown leader".
        assert_eq!(code(route(-1, 1, None, false)), 50004);
        // Forwarded once already: never again (a loop while leadership moves).
        assert_eq!(code(route(2, 1, addr, true)), 50003);
        // A primary of an older version registered no HTTP address.
        assert_eq!(code(route(2, 1, None, false)), 50003);
    }

    #[test]
    fn the_registered_http_address() {
        use crate::cluster::advertised_http_addr;
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(
            advertised_http_addr(a("10.0.0.1:8081"), "kafka.example"),
            "10.0.0.1:8081"
        );
        assert_eq!(
            advertised_http_addr(a("0.0.0.0:8081"), "kafka.example"),
            "kafka.example:8081"
        );
        assert_eq!(advertised_http_addr(a("[::]:8081"), "::1"), "[::1]:8081");
        assert_eq!(advertised_http_addr(a("[::1]:8081"), "h"), "[::1]:8081");
    }
}
