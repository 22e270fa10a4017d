//! The native HTTP API under `/v1/` (its OpenAPI document is `/v1/openapi.json`): cluster,
//! topics and their configs, produce, consume by offset or time, consumer groups and their lag.
//!
//! The API is a Kafka client of its own cluster, as Confluent's REST Proxy is: each call goes
//! over the Kafka protocol to this node's Kafka listener (`sluice-client`, the CLI's client),
//! so it sees what any client sees — the same validation, leaders found wherever they are in a
//! cluster, and the same authorizer: with HTTP authentication on, each call authenticates
//! over a SASL listener as the HTTP caller, with the caller's own credentials (Redpanda's HTTP
//! Proxy does the same), so a user's ACLs decide what they may do through the API exactly as
//! through a Kafka client. The clients are pooled per caller ([`ClientPool`], at most
//! `MAX_API_CLIENTS` at once). The few handlers that read the broker's state directly (queue
//! receive and acknowledge, lag history, share-group state) check the ACLs themselves
//! ([`Api::authorize`]).
//!
//! Errors are `{"error_code": …, "message": …}` with the HTTP status in the first three digits
//! of the code (the schema registry's and Confluent's shape): 40401 unknown topic, 40402
//! unknown group, 40001 invalid request, 40901 topic exists, 50001 broker error, 50301 broker
//! unreachable.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sluice_client::security::{SaslMechanism, SecurityProtocol};
use sluice_client::{Client, ClientConfig};
use std::future::Future;
use std::pin::Pin;

use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::limits::{API_CLIENT_MAX_IDLE_MS, API_REQUEST_TIMEOUT_MS, MAX_API_CLIENTS};
use crate::security::http::{Caller, Login};

mod browse;
mod dlqs;
mod groups;
mod queue;
mod records;
mod share_groups;
mod tail;
mod topics;
mod v3;

/// The OpenAPI 3.1 document of `/v1/` (checked against the server in CI by schemathesis).
const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
pub struct Api {
    pub broker: Arc<Broker>,
    pub clients: ClientPool,
    pub jobs: dlqs::Jobs,
}

pub fn router(broker: Arc<Broker>) -> Router {
    let api = Arc::new(Api {
        clients: ClientPool::new(&broker),
        jobs: dlqs::Jobs::default(),
        broker,
    });
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/cluster", get(topics::cluster))
        .route("/v1/topics", get(topics::list).post(topics::create))
        .route(
            "/v1/topics/{topic}",
            get(topics::describe).delete(topics::delete),
        )
        .route(
            "/v1/topics/{topic}/configs",
            get(topics::configs).patch(topics::alter_configs),
        )
        .route(
            "/v1/topics/{topic}/records",
            axum::routing::post(records::produce),
        )
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            get(records::consume),
        )
        .route("/v1/topics/{topic}/tail", get(tail::tail))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{group}", get(groups::describe))
        .route("/v1/groups/{group}/lag-history", get(groups::lag_history))
        .route(
            "/v1/groups/{group}/offsets/reset",
            axum::routing::post(groups::reset_offsets),
        )
        .route("/v1/dlqs", get(dlqs::list))
        .route("/v1/dlqs/{topic}/records", get(dlqs::show))
        .route(
            "/v1/dlqs/{topic}/requeue",
            axum::routing::post(dlqs::requeue),
        )
        .route(
            "/v1/dlqs/{topic}/discard",
            axum::routing::post(dlqs::discard),
        )
        .route("/v1/jobs", get(dlqs::jobs))
        .route("/v1/jobs/{id}", get(dlqs::job).delete(dlqs::cancel))
        .route("/v1/share-groups", get(share_groups::list))
        .route("/v1/share-groups/{group}", get(share_groups::describe))
        .route(
            "/v1/queues/{group}/receive",
            axum::routing::post(queue::receive),
        )
        .route(
            "/v1/queues/{group}/acknowledge",
            axum::routing::post(queue::acknowledge),
        )
        .route(
            "/v1/queues/{group}/messages/{receipt}/{action}",
            axum::routing::post(queue::settle_one),
        )
        .route("/v3/clusters", get(v3::clusters))
        .route("/v3/clusters/{cluster}", get(v3::cluster))
        .route("/v3/clusters/{cluster}/brokers", get(v3::brokers))
        .route(
            "/v3/clusters/{cluster}/topics",
            get(v3::topics).post(v3::create_topic),
        )
        .route(
            "/v3/clusters/{cluster}/topics/{topic}",
            get(v3::topic).delete(v3::delete_topic),
        )
        .route(
            "/v3/clusters/{cluster}/topics/{topic}/partitions",
            get(v3::partitions),
        )
        .route(
            "/v3/clusters/{cluster}/topics/{topic}/partitions/{partition}",
            get(v3::partition),
        )
        .route(
            "/v3/clusters/{cluster}/topics/{topic}/records",
            axum::routing::post(v3::produce),
        )
        .route(
            "/v3/clusters/{cluster}/consumer-groups",
            get(v3::consumer_groups),
        )
        .route(
            "/v3/clusters/{cluster}/consumer-groups/{group}",
            get(v3::consumer_group),
        )
        .route(
            "/v3/clusters/{cluster}/consumer-groups/{group}/consumers",
            get(v3::consumers),
        )
        .route(
            "/v3/clusters/{cluster}/consumer-groups/{group}/lags",
            get(v3::lags),
        )
        .route(
            "/v3/clusters/{cluster}/consumer-groups/{group}/lag-summary",
            get(v3::lag_summary),
        )
        .with_state(api)
}

/// The Kafka listener the API's clients connect to, and how.
#[derive(Debug, Clone)]
pub struct ApiListener {
    /// Its bound address (loopback when it listens on every address).
    pub addr: SocketAddr,
    pub protocol: SecurityProtocol,
    /// The SASL mechanisms it offers that the API's client speaks.
    pub mechanisms: Vec<SaslMechanism>,
}

impl ApiListener {
    /// With HTTP authentication on, the first SASL_PLAINTEXT listener offering SCRAM or
    /// PLAIN, else such a SASL_SSL one: the API authenticates there as each caller. With it
    /// off, the first PLAINTEXT listener, else the first SSL one. None when there is no such
    /// listener (API calls then answer 50301 saying so).
    pub fn choose<'a>(
        security: &crate::security::Security,
        bound: impl Iterator<Item = (&'a crate::security::ListenerSpec, SocketAddr)>,
    ) -> Option<ApiListener> {
        let bound: Vec<_> = bound.collect();
        let order: &[SecurityProtocol] = if security.http.enabled {
            &[SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl]
        } else {
            &[SecurityProtocol::Plaintext, SecurityProtocol::Ssl]
        };
        order.iter().find_map(|protocol| {
            bound.iter().find_map(|(spec, addr)| {
                let mechanisms: Vec<SaslMechanism> = security
                    .config
                    .mechanisms_for(spec.protocol)
                    .into_iter()
                    .filter(|m| sluice_client::security::CLIENT_MECHANISMS.contains(m))
                    .collect();
                let usable =
                    spec.protocol == *protocol && (!protocol.uses_sasl() || !mechanisms.is_empty());
                usable.then(|| ApiListener {
                    addr: loopback_if_unspecified(*addr),
                    protocol: *protocol,
                    mechanisms,
                })
            })
        })
    }
}

/// A listener bound to every address is reached over loopback.
fn loopback_if_unspecified(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// An API error: the HTTP status is `code / 100`.
#[derive(Debug)]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(40001, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16((self.code / 100) as u16)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            axum::Json(serde_json::json!({"error_code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// The API error code of a client error.
pub(super) fn error_code(e: &sluice_client::Error) -> u32 {
    use sluice_client::Error as E;
    match e {
        // UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID
        E::Kafka { code: 3 | 100, .. } => 40401,
        // GROUP_ID_NOT_FOUND
        E::Kafka { code: 69, .. } => 40402,
        // TOPIC_, GROUP_, CLUSTER_, TRANSACTIONAL_ID_AUTHORIZATION_FAILED: the caller's ACLs.
        E::Kafka {
            code: 29 | 30 | 31 | 53,
            ..
        } => 40301,
        // SASL_AUTHENTICATION_FAILED: the caller's credentials no longer log in.
        E::Kafka { code: 58, .. } => 40101,
        // TOPIC_ALREADY_EXISTS
        E::Kafka { code: 36, .. } => 40901,
        // The request's fault: invalid topic, partitions, replication factor, config,
        // record, request, policy.
        E::Kafka {
            code: 17 | 37 | 38 | 39 | 40 | 42 | 44 | 87 | 10 | 1,
            ..
        } => 40001,
        E::Kafka { .. } => 50001,
        E::Connect { .. } | E::Io { .. } | E::Timeout { .. } => 50301,
        _ => 50001,
    }
}

impl From<sluice_client::Error> for ApiError {
    fn from(e: sluice_client::Error) -> Self {
        ApiError::new(error_code(&e), e.to_string())
    }
}

/// The Kafka clients the API calls the cluster with.
pub struct ClientPool {
    /// This node's listener for the API, and how to connect to it.
    listener: Option<ApiListener>,
    /// With HTTP authentication on, API calls need a caller's login.
    authenticate: bool,
    /// The TLS settings of an SSL or SASL_SSL listener: the certificate this broker serves is
    /// trusted as it is (pinned), and no other — so in a cluster whose API listener is
    /// SASL_SSL every node serves the same certificate. (The client CA is not a server CA: a
    /// client certificate must not pass for a broker.)
    tls: sluice_client::security::TlsSettings,
    /// The users' SCRAM mechanisms, to pick one each caller has a credential for.
    users: Arc<Broker>,
    /// Clients not in use, with whose login they authenticated and when they were last used.
    idle: parking_lot::Mutex<Vec<IdleClient>>,
    /// A client idle longer is dropped rather than used: the Kafka listener closes connections
    /// idle for `--idle-timeout-ms`, and a call on a closed one would fail.
    max_idle: std::time::Duration,
    slots: Semaphore,
}

/// A pooled client not in use: whose login it authenticated with (None: none), and since when.
type IdleClient = (Option<Arc<Login>>, Client, std::time::Instant);

/// A call made with a pooled client: a boxed future borrowing the client.
pub type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T, sluice_client::Error>> + Send + 'c>>;

impl ClientPool {
    fn new(broker: &Arc<Broker>) -> Self {
        let files = broker.security.config.tls.as_ref();
        ClientPool {
            listener: broker.api_listener.clone(),
            authenticate: broker.security.http.enabled,
            tls: sluice_client::security::TlsSettings {
                pinned_cert: files.map(|f| f.cert.clone()),
                skip_hostname_verification: true,
                ..Default::default()
            },
            users: broker.clone(),
            idle: parking_lot::Mutex::new(Vec::new()),
            max_idle: (broker.config.idle_timeout / 2)
                .min(std::time::Duration::from_millis(API_CLIENT_MAX_IDLE_MS)),
            slots: Semaphore::new(MAX_API_CLIENTS),
        }
    }

    /// A client configuration connecting as `caller`: the listener's protocol, and with
    /// authentication on, the caller's credentials with the strongest mechanism both the
    /// listener and the caller's credentials have.
    pub fn config(&self, caller: &Caller, client_id: &str) -> Result<ClientConfig, ApiError> {
        let Some(listener) = &self.listener else {
            return Err(ApiError::new(
                50301,
                if self.authenticate {
                    "the HTTP API acts as its caller on a SASL listener offering SCRAM or PLAIN, \
                     and this broker has none: add one (e.g. --listener \
                     API=SASL_PLAINTEXT://127.0.0.1:9094)"
                } else {
                    "the HTTP API needs a PLAINTEXT or SSL listener to connect to"
                },
            ));
        };
        let mut config = ClientConfig::new(listener.addr.to_string());
        config.client_id = client_id.into();
        config.request_timeout = std::time::Duration::from_millis(API_REQUEST_TIMEOUT_MS);
        config.security.protocol = listener.protocol;
        config.security.tls = self.tls.clone();
        if listener.protocol.uses_sasl() {
            let login = caller
                .login
                .as_ref()
                .ok_or_else(|| ApiError::new(40101, "authentication required"))?;
            let has = self.users.metadata.users.table().mechanisms(&login.name);
            let mechanism = [SaslMechanism::ScramSha512, SaslMechanism::ScramSha256]
                .into_iter()
                .find(|m| {
                    listener.mechanisms.contains(m) && m.scram().is_some_and(|s| has.contains(&s))
                })
                .or_else(|| {
                    listener
                        .mechanisms
                        .contains(&SaslMechanism::Plain)
                        .then_some(SaslMechanism::Plain)
                })
                .ok_or_else(|| {
                    ApiError::new(
                        50301,
                        format!(
                            "user {} has no credential for a mechanism the API's listener \
                             offers ({:?})",
                            login.name, listener.mechanisms
                        ),
                    )
                })?;
            config.security.sasl = Some(sluice_client::security::SaslCredentials {
                mechanism,
                username: login.name.clone(),
                password: login.password.clone(),
            });
        }
        Ok(config)
    }

    /// The most recently used idle client of this login still fresh enough to use; staler
    /// ones are dropped.
    fn take_idle(&self, login: Option<&Arc<Login>>) -> Option<Client> {
        let mut idle = self.idle.lock();
        idle.retain(|(_, _, since)| since.elapsed() < self.max_idle);
        let at = idle
            .iter()
            .rposition(|(who, _, _)| who.as_deref() == login.map(|l| &**l))?;
        Some(idle.remove(at).1)
    }

    /// Runs `call` with a client connected as `caller`, once one of the `MAX_API_CLIENTS` is
    /// free. The client goes back to the pool afterwards, unless its connection failed.
    pub async fn with<T>(
        &self,
        caller: &Caller,
        call: impl for<'c> FnOnce(&'c mut Client) -> Call<'c, T>,
    ) -> Result<T, ApiError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ApiError::new(50301, "the broker is shutting down"))?;
        let login = caller.login.clone().filter(|_| self.authenticate);
        let mut client = match self.take_idle(login.as_ref()) {
            Some(c) => c,
            None => {
                {
                    // Idle clients of other callers: the oldest makes room.
                    let mut idle = self.idle.lock();
                    if idle.len() >= MAX_API_CLIENTS {
                        idle.remove(0);
                    }
                }
                Client::connect(self.config(caller, "sluice-http-api")?).await?
            }
        };
        let result = call(&mut client).await;
        use sluice_client::Error as E;
        if !matches!(
            &result,
            Err(E::Connect { .. } | E::Io { .. } | E::Timeout { .. })
        ) {
            self.idle
                .lock()
                .push((login, client, std::time::Instant::now()));
        }
        result.map_err(ApiError::from)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    /// The caller `http::authenticate` found; a request that did not pass it (none reaches
    /// the API that way but a test's) is an unauthenticated one from loopback.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Caller, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller::open(std::net::Ipv4Addr::LOCALHOST.into())))
    }
}

impl Api {
    /// The ACL check of a handler that reads the broker's state directly rather than through
    /// a Kafka client (which the broker's handlers check): 40301 naming what is missing.
    pub fn authorize(
        &self,
        caller: &Caller,
        operation: sluice_acl::AclOperation,
        resource_type: sluice_acl::ResourceType,
        name: &str,
    ) -> Result<(), ApiError> {
        let ctx = caller.context("HttpApi");
        if crate::security::authz::authorize(&self.broker, &ctx, operation, resource_type, name) {
            return Ok(());
        }
        Err(ApiError::new(
            40301,
            format!(
                "{} is not authorized: this needs {} on {} {name}",
                caller.principal,
                operation.name(),
                resource_type.name()
            ),
        ))
    }
}

/// Request parts parsed as axum's extractors do, refused with an [`ApiError`] body (axum's own
/// rejections are plain text): the status's code with 01 appended, and axum's reason.
fn rejected(status: StatusCode, reason: String) -> ApiError {
    ApiError::new(u32::from(status.as_u16()) * 100 + 1, reason)
}

/// A JSON body (`Content-Type: application/json`, so a web page cannot send one cross-site
/// without a CORS preflight).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(rejected(r.status(), r.body_text())),
        }
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for ApiPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(rejected(r.status(), r.body_text())),
        }
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(rejected(r.status(), r.body_text())),
        }
    }
}

/// How keys, values and header values travel in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Text (bytes that are not UTF-8 come back as base64, marked so).
    #[default]
    Utf8,
    Base64,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf8",
            Encoding::Base64 => "base64",
        }
    }

    pub fn decode(self, text: &str) -> Result<bytes::Bytes, ApiError> {
        use base64::Engine;
        match self {
            Encoding::Utf8 => Ok(bytes::Bytes::copy_from_slice(text.as_bytes())),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(bytes::Bytes::from)
                .map_err(|e| ApiError::invalid(format!("not base64: {e}"))),
        }
    }
}

/// Bytes as JSON in the encoding asked for: UTF-8 text when asked and valid, else base64.
/// Returns the text and the encoding used.
pub fn encode(bytes: &[u8], wanted: Encoding) -> (String, Encoding) {
    use base64::Engine;
    if wanted == Encoding::Utf8 {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return (text.to_owned(), Encoding::Utf8);
        }
    }
    (
        base64::engine::general_purpose::STANDARD.encode(bytes),
        Encoding::Base64,
    )
}
