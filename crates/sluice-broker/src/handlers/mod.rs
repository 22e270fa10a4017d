//! Request dispatch: header parsing, version checks, decoding, the handler per API, and
//! response encoding. The table in [`SUPPORTED`] is what ApiVersions advertises: only APIs
//! implemented end to end, each with the version range its handler understands.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::broker::Broker;
use crate::response::{Response, ResponseBuf, StoredRecords};

/// Every API Sluice serves, each marked `throttle` when its response has `throttle_time_ms`
/// (all but two inter-broker and operator calls): one list for the macros that need an arm
/// per API (`api_name`, `quotas::set_throttle`). Keep it in step with [`SUPPORTED`].
macro_rules! served_apis {
    ($then:ident) => {
        $then!(
            Produce: throttle,
            Fetch: throttle,
            ListOffsets: throttle,
            Metadata: throttle,
            OffsetCommit: throttle,
            OffsetFetch: throttle,
            FindCoordinator: throttle,
            JoinGroup: throttle,
            Heartbeat: throttle,
            LeaveGroup: throttle,
            SyncGroup: throttle,
            DescribeGroups: throttle,
            ListGroups: throttle,
            ApiVersions: throttle,
            CreateTopics: throttle,
            DeleteTopics: throttle,
            DeleteRecords: throttle,
            InitProducerId: throttle,
            AddPartitionsToTxn: throttle,
            AddOffsetsToTxn: throttle,
            EndTxn: throttle,
            WriteTxnMarkers: none,
            DescribeTransactions: throttle,
            ListTransactions: throttle,
            OffsetForLeaderEpoch: throttle,
            DescribeConfigs: throttle,
            DescribeLogDirs: throttle,
            AlterConfigs: throttle,
            CreatePartitions: throttle,
            DeleteGroups: throttle,
            IncrementalAlterConfigs: throttle,
            OffsetDelete: throttle,
            DescribeCluster: throttle,
            DescribeQuorum: none,
            UnregisterBroker: throttle,
            AddRaftVoter: throttle,
            RemoveRaftVoter: throttle,
            ElectLeaders: throttle,
            AlterPartitionReassignments: throttle,
            ListPartitionReassignments: throttle,
            DescribeTopicPartitions: throttle,
            ConsumerGroupHeartbeat: throttle,
            ConsumerGroupDescribe: throttle,
            ShareGroupHeartbeat: throttle,
            ShareGroupDescribe: throttle,
            ShareFetch: throttle,
            ShareAcknowledge: throttle,
            DescribeShareGroupOffsets: throttle,
            AlterShareGroupOffsets: throttle,
            DeleteShareGroupOffsets: throttle,
            DescribeProducers: throttle,
            TxnOffsetCommit: throttle,
            DescribeClientQuotas: throttle,
            AlterClientQuotas: throttle,
            SaslHandshake: none,
            SaslAuthenticate: none,
            DescribeUserScramCredentials: throttle,
            AlterUserScramCredentials: throttle,
            DescribeAcls: throttle,
            CreateAcls: throttle,
            DeleteAcls: throttle,
        )
    };
}

mod acls;
mod admin;
mod api_versions;
mod authz;
pub(crate) mod fetch;
mod groups;
mod log_dirs;
mod metadata;
mod offsets;
mod produce;
mod producers;
mod quorum;
mod quotas;
mod share;
mod txn;
mod txn_offsets;
mod users;

/// What the connection does with a request. The duration is how long the connection then
/// reads nothing: a client over its quota is throttled (KIP-219; zero otherwise).
pub enum Handled {
    Respond(Response, Duration),
    /// Produce with acks=0.
    NoResponse(Duration),
    /// Kafka closes the connection on these (unknown API or version, undecodable request).
    Close(String),
}

/// Who sent a request.
pub struct RequestContext {
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
    /// The listener it came in on: Metadata and FindCoordinator answer with that listener's
    /// addresses.
    pub listener: std::sync::Arc<str>,
    /// Who the connection authenticated as (`User:ANONYMOUS` when it did not).
    pub principal: std::sync::Arc<sluice_auth::KafkaPrincipal>,
    /// The client's address (ACLs' host).
    pub client_ip: std::net::IpAddr,
    /// The API's name (the audit line's `request`).
    pub api_name: &'static str,
}

impl RequestContext {
    /// A request at `version` from an unauthenticated client of the PLAINTEXT listener on
    /// loopback (tests that call a handler directly).
    pub fn anonymous(version: i16) -> RequestContext {
        RequestContext {
            version,
            client_id: String::new(),
            client_host: "/127.0.0.1".into(),
            listener: std::sync::Arc::from("PLAINTEXT"),
            principal: std::sync::Arc::new(crate::security::anonymous()),
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            api_name: "Other",
        }
    }
}

/// The connection a request came in on.
pub struct Connection {
    pub peer: SocketAddr,
    pub listener: std::sync::Arc<str>,
    pub principal: std::sync::Arc<sluice_auth::KafkaPrincipal>,
}

/// The APIs and versions Sluice implements end to end.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::AddRaftVoter, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
    (ApiKey::DescribeProducers, 0, 0),
    // v5 is transaction.version=2: the group is added to the transaction implicitly.
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    // Served by the connection's SASL state on SASL listeners (security/sasl.rs); anywhere
    // else they are answered ILLEGAL_SASL_STATE, as Kafka does.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

fn api_name(key: ApiKey) -> &'static str {
    // Debug names of the enum are the Kafka API names; keep a static str for metric labels.
    macro_rules! names {
        ($($k:ident: $throttle:ident),* $(,)?) => {
            match key { $(ApiKey::$k => stringify!($k),)* _ => "Other" }
        };
    }
    served_apis!(names)
}

/// Decodes with the protocol crate, turning a panic inside it into an error: bytes from the
/// network must never take the broker down.
fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("decoder panicked".to_string()),
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// A request frame, decoded as far as the broker accepts it.
pub enum Decoded {
    Request {
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        header: RequestHeader,
        /// Boxed: request bodies are large and most rejections carry only a message.
        request: Box<RequestKind>,
    },
    /// ApiVersions at a version we do not know: answered per KIP-511.
    ApiVersionsFallback { correlation_id: i32 },
    /// Kafka closes the connection for these.
    Reject(String),
}

/// Parses a frame (without its size prefix): header, version check, body. Pure and total:
/// any byte string gives a `Decoded`, never a panic (the fuzz target drives this).
pub fn decode_request(mut frame: Bytes) -> Decoded {
    if frame.len() < 8 {
        return Decoded::Reject(format!(
            "request of {} bytes is shorter than a header",
            frame.len()
        ));
    }
    let api_key = be_i16(&frame, 0);
    let version = be_i16(&frame, 2);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Decoded::Reject(format!("unknown API key {api_key}"));
    };
    let range = supported_range(key);
    let in_range = range.is_some_and(|(min, max)| (min..=max).contains(&version));
    if key == ApiKey::ApiVersions && !in_range {
        return Decoded::ApiVersionsFallback { correlation_id };
    }
    if !in_range {
        return Decoded::Reject(format!(
            "{} v{version} is not supported (supported: {})",
            api_name(key),
            range.map_or("none".to_string(), |(a, b)| format!("v{a}-v{b}"))
        ));
    }
    let header_version = key.request_header_version(version);
    let header = match guarded(|| RequestHeader::decode(&mut frame, header_version)) {
        Ok(h) => h,
        Err(e) => return Decoded::Reject(format!("bad request header: {e}")),
    };
    match guarded(|| RequestKind::decode(key, &mut frame, version)) {
        Ok(request) => Decoded::Request {
            key,
            version,
            correlation_id,
            header,
            request: Box::new(request),
        },
        Err(e) => Decoded::Reject(format!("cannot decode {} v{version}: {e}", api_name(key))),
    }
}

pub async fn handle(broker: &Broker, frame: Bytes, conn: &Connection) -> Handled {
    let started = Instant::now();
    let request_bytes = frame.len();
    let (key, version, correlation_id, header, request) = match decode_request(frame) {
        Decoded::Request {
            key,
            version,
            correlation_id,
            header,
            request,
        } => (key, version, correlation_id, header, request),
        Decoded::ApiVersionsFallback { correlation_id } => {
            // KIP-511: answer with v0 framing, UNSUPPORTED_VERSION and our versions.
            return respond(
                correlation_id,
                0,
                0,
                &ResponseKind::ApiVersions(api_versions::unsupported()),
            );
        }
        Decoded::Reject(reason) => return Handled::Close(reason),
    };
    let ctx = RequestContext {
        version,
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", conn.peer.ip()),
        listener: conn.listener.clone(),
        principal: conn.principal.clone(),
        client_ip: conn.peer.ip(),
        api_name: api_name(key),
    };
    // With quotas set, the time the handler runs is measured (the request percentage): the
    // time inside its polls, not the time it waits for a disk, a timer or other clients.
    let quotas_on = !broker.metadata.quotas.is_empty();
    let work = async {
        // A fetch's records stay in their files until the connection sends them
        // (response.rs); it is the one response that carries file ranges.
        match *request {
            RequestKind::Fetch(r) => {
                let (r, files) = fetch::handle(broker, r, &ctx).await;
                Ok((Some(ResponseKind::Fetch(r)), files))
            }
            request => dispatch(broker, request, &ctx)
                .await
                .map(|r| (r, StoredRecords::default())),
        }
    };
    let (outcome, busy) = if quotas_on {
        tokio::pin!(work);
        let mut busy = Duration::ZERO;
        let outcome = std::future::poll_fn(|cx| {
            let at = Instant::now();
            let polled = work.as_mut().poll(cx);
            busy += at.elapsed();
            polled
        })
        .await;
        (outcome, busy)
    } else {
        (work.await, Duration::ZERO)
    };
    let (mut response, files) = match outcome {
        Ok(r) => r,
        Err(reason) => return Handled::Close(reason),
    };
    let labels = crate::metrics::ApiLabels { api: api_name(key) };
    broker.metrics.requests.get_or_create(&labels).inc();
    let throttle = if quotas_on {
        throttle(
            broker,
            &ctx,
            key,
            request_bytes,
            response.as_mut(),
            &files,
            busy,
        )
    } else {
        Duration::ZERO
    };
    let handled = match response {
        Some(r) => match respond_with(
            correlation_id,
            key.response_header_version(version),
            version,
            &r,
            files,
        ) {
            Handled::Respond(r, _) => Handled::Respond(r, throttle),
            other => other,
        },
        None => Handled::NoResponse(throttle),
    };
    broker
        .metrics
        .request_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    handled
}

/// Records a request against the quotas that apply to its client and returns the throttle:
/// the longest of its byte-rate throttle (produce request bytes, fetch response bytes) and
/// its request-time throttle, also put in the response's `throttle_time_ms` (Kafka's rule).
fn throttle(
    broker: &Broker,
    ctx: &RequestContext,
    key: ApiKey,
    request_bytes: usize,
    response: Option<&mut ResponseKind>,
    files: &StoredRecords,
    busy: Duration,
) -> Duration {
    use crate::quota::QuotaType;
    let quotas = &broker.metadata.quotas;
    let now = crate::broker::now_ms();
    let mut worst = (0, QuotaType::Request);
    // Kafka's user quota entity is the principal's name (`ANONYMOUS` unauthenticated).
    let user = ctx.principal.name.as_str();
    let mut record = |t: QuotaType, value: f64| {
        let ms = quotas.record(t, user, &ctx.client_id, value, now);
        if ms > worst.0 {
            worst = (ms, t);
        }
    };
    // Kafka records a request's time in percent of one core: 100 per second of handler time.
    record(QuotaType::Request, busy.as_secs_f64() * 100.0);
    match (key, response.as_deref()) {
        (ApiKey::Produce, _) => record(QuotaType::Produce, request_bytes as f64),
        (ApiKey::Fetch, Some(ResponseKind::Fetch(r))) => {
            let bytes: usize = r
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, |b| files.len_of(b)))
                .sum();
            record(QuotaType::Fetch, bytes as f64)
        }
        _ => {}
    }
    let (ms, t) = worst;
    if ms <= 0 {
        return Duration::ZERO;
    }
    broker.metrics.throttled(t.label(), ms);
    if let Some(r) = response {
        quotas::set_throttle(r, i32::try_from(ms).unwrap_or(i32::MAX));
    }
    Duration::from_millis(ms.unsigned_abs())
}

fn respond(correlation_id: i32, header_version: i16, version: i16, body: &ResponseKind) -> Handled {
    respond_with(
        correlation_id,
        header_version,
        version,
        body,
        StoredRecords::default(),
    )
}

/// Encodes a response whose records fields may stand for the file ranges in `files`.
fn respond_with(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &ResponseKind,
    files: StoredRecords,
) -> Handled {
    // Flexible versions, and only they, use response header v1 (compact length prefixes).
    let mut buf = ResponseBuf::new(files, header_version >= 1);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if let Err(e) = header.encode(&mut buf, header_version) {
        return Handled::Close(format!("cannot encode response header: {e}"));
    }
    let encoded = match body {
        ResponseKind::Fetch(fetch) => fetch.encode(&mut buf, version),
        other => other.encode(buf.bytes_mut(), version),
    };
    if let Err(e) = encoded {
        return Handled::Close(format!("cannot encode response: {e}"));
    }
    match buf.finish() {
        Ok(response) => Handled::Respond(response, Duration::ZERO),
        Err(e) => Handled::Close(format!("cannot encode response: {e}")),
    }
}

async fn dispatch(
    broker: &Broker,
    request: RequestKind,
    ctx: &RequestContext,
) -> Result<Option<ResponseKind>, String> {
    let mut request = request;
    if let Some(refused) = authz::gate(broker, ctx, &request) {
        return Ok(Some(refused));
    }
    let withheld = authz::withhold(broker, ctx, &mut request);
    let mut response = answer(broker, request, ctx).await?;
    if let Some(r) = response.as_mut() {
        // Restricted first: the parts put back refused are not the principal's to see either.
        authz::restrict(broker, ctx, r);
        authz::answer_denied(withheld, r);
    }
    Ok(response)
}

/// The handler of each API (after the authorization gate).
async fn answer(
    broker: &Broker,
    request: RequestKind,
    ctx: &RequestContext,
) -> Result<Option<ResponseKind>, String> {
    use RequestKind as Rq;
    use ResponseKind as Rs;
    let v = ctx.version;
    Ok(Some(match request {
        // On a SASL listener the connection's SASL state answers these before dispatch; here
        // the listener does not use SASL.
        Rq::SaslHandshake(_) => Rs::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeResponse::default().with_error_code(34),
        ),
        Rq::SaslAuthenticate(_) => Rs::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(34)
                .with_error_message(Some(StrBytes::from_static_str(
                    "this listener does not use SASL",
                ))),
        ),
        Rq::DescribeAcls(r) => Rs::DescribeAcls(acls::describe(broker, ctx, r)),
        Rq::CreateAcls(r) => Rs::CreateAcls(acls::create(broker, ctx, r).await),
        Rq::DeleteAcls(r) => Rs::DeleteAcls(acls::delete(broker, ctx, r).await),
        Rq::DescribeUserScramCredentials(r) => {
            Rs::DescribeUserScramCredentials(users::describe(broker, r))
        }
        Rq::AlterUserScramCredentials(r) => {
            Rs::AlterUserScramCredentials(users::alter(broker, r).await)
        }
        Rq::ApiVersions(_) => Rs::ApiVersions(api_versions::handle(broker, v)),
        Rq::Metadata(r) => Rs::Metadata(metadata::metadata(broker, r, ctx).await),
        Rq::DescribeCluster(r) => Rs::DescribeCluster(metadata::describe_cluster(broker, r, ctx)),
        Rq::DescribeQuorum(r) => Rs::DescribeQuorum(quorum::describe_quorum(broker, r)),
        Rq::AddRaftVoter(r) => Rs::AddRaftVoter(quorum::add_raft_voter(broker, r).await),
        Rq::RemoveRaftVoter(r) => Rs::RemoveRaftVoter(quorum::remove_raft_voter(broker, r).await),
        Rq::UnregisterBroker(r) => Rs::UnregisterBroker(quorum::unregister_broker(broker, r).await),
        Rq::ElectLeaders(r) => Rs::ElectLeaders(admin::elect_leaders(broker, r).await),
        Rq::AlterPartitionReassignments(r) => Rs::AlterPartitionReassignments(
            admin::alter_partition_reassignments(broker, r, v).await,
        ),
        Rq::ListPartitionReassignments(r) => {
            Rs::ListPartitionReassignments(admin::list_partition_reassignments(broker, r))
        }
        Rq::DescribeTopicPartitions(r) => {
            Rs::DescribeTopicPartitions(metadata::describe_topic_partitions(broker, r, ctx))
        }
        Rq::Produce(r) => return Ok(produce::handle(broker, r, ctx).await.map(Rs::Produce)),
        Rq::Fetch(_) => return Err("fetch is handled before dispatch".into()),
        Rq::ListOffsets(r) => Rs::ListOffsets(offsets::list_offsets(broker, r, v)),
        Rq::OffsetForLeaderEpoch(r) => {
            Rs::OffsetForLeaderEpoch(offsets::offset_for_leader_epoch(broker, r))
        }
        Rq::DeleteRecords(r) => Rs::DeleteRecords(offsets::delete_records(broker, r)),
        Rq::CreateTopics(r) => Rs::CreateTopics(admin::create_topics(broker, r, v).await),
        Rq::DeleteTopics(r) => Rs::DeleteTopics(admin::delete_topics(broker, r, v).await),
        Rq::CreatePartitions(r) => Rs::CreatePartitions(admin::create_partitions(broker, r).await),
        Rq::DescribeConfigs(r) => Rs::DescribeConfigs(admin::describe_configs(broker, r, v)),
        Rq::DescribeLogDirs(r) => Rs::DescribeLogDirs(log_dirs::describe_log_dirs(broker, r)),
        Rq::AlterConfigs(r) => Rs::AlterConfigs(admin::alter_configs(broker, r).await),
        Rq::IncrementalAlterConfigs(r) => {
            Rs::IncrementalAlterConfigs(admin::incremental_alter_configs(broker, r).await)
        }
        Rq::InitProducerId(r) => Rs::InitProducerId(txn::init_producer_id(broker, r, v).await),
        Rq::AddPartitionsToTxn(r) => {
            Rs::AddPartitionsToTxn(txn::add_partitions_to_txn(broker, r, v).await)
        }
        Rq::AddOffsetsToTxn(r) => Rs::AddOffsetsToTxn(txn::add_offsets_to_txn(broker, r, v).await),
        Rq::EndTxn(r) => Rs::EndTxn(txn::end_txn(broker, r, v).await),
        Rq::WriteTxnMarkers(r) => Rs::WriteTxnMarkers(txn::write_txn_markers(broker, r).await),
        Rq::DescribeTransactions(r) => {
            Rs::DescribeTransactions(txn::describe_transactions(broker, r).await)
        }
        Rq::ListTransactions(r) => Rs::ListTransactions(txn::list_transactions(broker, r, v).await),
        Rq::FindCoordinator(r) => {
            Rs::FindCoordinator(groups::find_coordinator(broker, r, ctx).await)
        }
        Rq::OffsetCommit(r) => Rs::OffsetCommit(groups::offset_commit(broker, r).await),
        Rq::OffsetFetch(r) => Rs::OffsetFetch(groups::offset_fetch(broker, r, v)),
        Rq::TxnOffsetCommit(r) => {
            Rs::TxnOffsetCommit(txn_offsets::txn_offset_commit(broker, r, v).await)
        }
        Rq::OffsetDelete(r) => Rs::OffsetDelete(groups::offset_delete(broker, r).await),
        Rq::JoinGroup(r) => Rs::JoinGroup(groups::join_group(broker, r, ctx).await),
        Rq::SyncGroup(r) => Rs::SyncGroup(groups::sync_group(broker, r).await),
        Rq::Heartbeat(r) => Rs::Heartbeat(groups::heartbeat(broker, r)),
        Rq::LeaveGroup(r) => Rs::LeaveGroup(groups::leave_group(broker, r, v)),
        Rq::DescribeGroups(r) => Rs::DescribeGroups(groups::describe_groups(broker, r)),
        Rq::ListGroups(r) => Rs::ListGroups(groups::list_groups(broker, r)),
        Rq::ConsumerGroupHeartbeat(r) => {
            Rs::ConsumerGroupHeartbeat(groups::consumer_group_heartbeat(broker, r, ctx).await)
        }
        Rq::ConsumerGroupDescribe(r) => {
            Rs::ConsumerGroupDescribe(groups::consumer_group_describe(broker, r))
        }
        Rq::DeleteGroups(r) => Rs::DeleteGroups(groups::delete_groups(broker, r).await),
        Rq::ShareGroupHeartbeat(r) => {
            Rs::ShareGroupHeartbeat(share::share_group_heartbeat(broker, r, ctx).await)
        }
        Rq::ShareGroupDescribe(r) => Rs::ShareGroupDescribe(share::share_group_describe(broker, r)),
        Rq::ShareFetch(r) => Rs::ShareFetch(share::share_fetch(broker, r, &ctx.listener).await),
        Rq::ShareAcknowledge(r) => {
            Rs::ShareAcknowledge(share::share_acknowledge(broker, r, &ctx.listener).await)
        }
        Rq::DescribeShareGroupOffsets(r) => {
            Rs::DescribeShareGroupOffsets(share::describe_share_group_offsets(broker, r).await)
        }
        Rq::AlterShareGroupOffsets(r) => {
            Rs::AlterShareGroupOffsets(share::alter_share_group_offsets(broker, r).await)
        }
        Rq::DeleteShareGroupOffsets(r) => {
            Rs::DeleteShareGroupOffsets(share::delete_share_group_offsets(broker, r).await)
        }
        Rq::DescribeProducers(r) => Rs::DescribeProducers(producers::describe_producers(broker, r)),
        Rq::DescribeClientQuotas(r) => {
            Rs::DescribeClientQuotas(quotas::describe_client_quotas(broker, r))
        }
        Rq::AlterClientQuotas(r) => {
            Rs::AlterClientQuotas(quotas::alter_client_quotas(broker, r).await)
        }
        // The version check above only lets through what SUPPORTED lists.
        _ => return Err("request has no handler".to_string()),
    }))
}

/// A StrBytes from anything displayable.
pub fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Releases the records of share-group members the coordinator dropped (timer path).
pub fn release_departed_share_members(broker: &Broker) {
    share::release_departed(broker);
}
