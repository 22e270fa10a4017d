//! The native HTTP API under `/v1/` (its OpenAPI document is `/v1/openapi.json`): cluster,
//! topics and their configs, produce, consume by offset or time, consumer groups and their lag.
//!
//! The API is a Kafka client of its own cluster, as Confluent's REST Proxy is: each call goes
//! over the Kafka protocol to this node's Kafka listener (`sluice-client`, the CLI's client),
//! so it sees what any client sees — the same validation, leaders found wherever they are in a
//! cluster, and, once authentication exists, the same authorizer. The clients are pooled
//! ([`ClientPool`], at most `MAX_API_CLIENTS` at once).
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
use sluice_client::{Client, ClientConfig};
use std::future::Future;
use std::pin::Pin;

use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::limits::{API_CLIENT_MAX_IDLE_MS, API_REQUEST_TIMEOUT_MS, MAX_API_CLIENTS};

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
        clients: ClientPool::new(
            kafka_target(broker.internal_kafka_addr),
            broker.config.idle_timeout,
        ),
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

/// Where the API's Kafka clients connect: this node's listener (loopback when it listens on
/// every address).
fn kafka_target(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr.to_string()
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
    /// This node's Kafka listener.
    pub bootstrap: String,
    /// Clients not in use, with when they were last used.
    idle: parking_lot::Mutex<Vec<(Client, std::time::Instant)>>,
    /// A client idle longer is dropped rather than used: the Kafka listener closes connections
    /// idle for `--idle-timeout-ms`, and a call on a closed one would fail.
    max_idle: std::time::Duration,
    slots: Semaphore,
}

/// A call made with a pooled client: a boxed future borrowing the client.
pub type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T, sluice_client::Error>> + Send + 'c>>;

impl ClientPool {
    fn new(bootstrap: String, listener_idle_timeout: std::time::Duration) -> Self {
        ClientPool {
            bootstrap,
            idle: parking_lot::Mutex::new(Vec::new()),
            max_idle: (listener_idle_timeout / 2)
                .min(std::time::Duration::from_millis(API_CLIENT_MAX_IDLE_MS)),
            slots: Semaphore::new(MAX_API_CLIENTS),
        }
    }

    /// The most recently used idle client still fresh enough to use; staler ones are dropped.
    fn take_idle(&self) -> Option<Client> {
        let mut idle = self.idle.lock();
        while let Some((client, since)) = idle.pop() {
            if since.elapsed() < self.max_idle {
                return Some(client);
            }
        }
        None
    }

    /// Runs `call` with a client, once one of the `MAX_API_CLIENTS` is free. The client goes
    /// back to the pool afterwards, unless its connection failed.
    pub async fn with<T>(
        &self,
        call: impl for<'c> FnOnce(&'c mut Client) -> Call<'c, T>,
    ) -> Result<T, ApiError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ApiError::new(50301, "the broker is shutting down"))?;
        let idle = self.take_idle();
        let mut client = match idle {
            Some(c) => c,
            None => {
                let mut config = ClientConfig::new(self.bootstrap.clone());
                config.client_id = "sluice-http-api".into();
                config.request_timeout = std::time::Duration::from_millis(API_REQUEST_TIMEOUT_MS);
                Client::connect(config).await?
            }
        };
        let result = call(&mut client).await;
        use sluice_client::Error as E;
        if !matches!(
            &result,
            Err(E::Connect { .. } | E::Io { .. } | E::Timeout { .. })
        ) {
            self.idle.lock().push((client, std::time::Instant::now()));
        }
        result.map_err(ApiError::from)
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
