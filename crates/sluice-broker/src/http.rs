//! The HTTP listener: `/health`, `/metrics` (Prometheus text) and the schema registry
//! (Confluent Schema Registry's REST API, from `sluice-registry`) and the native HTTP API
//! under `/v1/` (`api/`), and the web console under `/ui/` (`console/`), which renders the
//! API's own JSON.
//!
//! The listener is its own accept loop over hyper rather than `axum::serve`, for the bounds a
//! slow or hostile client must not get around (limits.rs):
//! - a connection cap: further connections are closed at accept;
//! - a header-read timeout (hyper's, which needs a timer `axum::serve` does not set): headers
//!   not complete in time close the connection, and an idle keep-alive connection closes after
//!   the same time;
//! - a body-read timeout and size bound: the body is read in full before any handler runs.
//!
//! Every request's `Host` is checked against an allow-list (DNS rebinding: a web page on
//! `evil.example` that re-resolves its name to 127.0.0.1 still sends `Host: evil.example`).
//!
//! When any Kafka listener authenticates, every request but `/health`, the console's login
//! page and its static assets (and `/metrics` unless `--http-metrics-auth`) must carry HTTP
//! Basic credentials or a console session (`security/http.rs`); [`authenticate`] puts the
//! [`Caller`] it found in the request's extensions, where the registry's authorization
//! (`schemas::authorize`), the API's handlers and the console take it from.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::broker::Broker;
use crate::config::HostPattern;
use crate::security::http::{Caller, HttpAuth, SessionLookup, SessionRef, CSRF_HEADER};

async fn health(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "cluster_id": broker.metadata.cluster.cluster_id(),
        "node_id": broker.config.node_id,
        "topics": broker.metadata.topics().len(),
        "partitions": broker.metadata.partition_count(),
    }))
}

async fn metrics(
    State(broker): State<Arc<Broker>>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    if broker.security.http.metrics_auth {
        let ctx = caller.map(|c| c.0.context("HttpMetrics"));
        let allowed = ctx.is_some_and(|ctx| {
            crate::security::authz::authorize(
                &broker,
                &ctx,
                sluice_acl::AclOperation::Describe,
                sluice_acl::ResourceType::Cluster,
                sluice_acl::CLUSTER_NAME,
            )
        });
        if !allowed {
            return refuse_with(
                StatusCode::FORBIDDEN,
                40301,
                "/metrics needs DESCRIBE on the cluster (--http-metrics-auth)".into(),
            );
        }
    }
    scrape_gauges(&broker);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        broker.metrics.encode(),
    )
        .into_response()
}

/// The gauges computed when scraped: resident memory, and consumer groups' committed offsets
/// and lag per partition (for the groups this node coordinates and the partitions it hosts:
/// every partition on a single node), at most `MAX_LAG_SERIES` partitions.
fn scrape_gauges(broker: &Broker) {
    let m = &broker.metrics;
    if let Some(rss) = crate::metrics::resident_bytes() {
        m.resident_memory.set(rss);
    }
    // Rebuilt whole: groups and partitions that went away take their series with them.
    m.group_lag.clear();
    m.group_offset.clear();
    for (group, topic, partition, offset, lag) in crate::lag_history::committed_lags(broker) {
        let labels = crate::metrics::PartitionLagLabels {
            group,
            topic,
            partition,
        };
        m.group_offset.get_or_create(&labels).set(offset);
        m.group_lag.get_or_create(&labels).set(lag);
    }
}

/// What every request passes before routing.
struct Guard {
    allowed_hosts: Option<Vec<HostPattern>>,
    read_timeout: Duration,
    max_body: usize,
    /// `--console-read-only`: admin writes are refused (`console::read_only_refuses`).
    read_only: bool,
}

pub fn router(broker: Arc<Broker>) -> Router {
    let guard = Arc::new(Guard {
        allowed_hosts: broker.config.http_allowed_hosts.clone(),
        read_timeout: broker.config.http_read_timeout,
        max_body: crate::limits::HTTP_MAX_BODY_BYTES,
        read_only: broker.config.console_read_only,
    });
    // Writes reaching a node that is not the registry's primary are forwarded (`schemas.rs`).
    let registry = sluice_registry::router(broker.registry.clone()).layer(
        axum::middleware::from_fn_with_state(broker.clone(), crate::schemas::forward_writes),
    );
    let registry = registry.layer(axum::middleware::from_fn_with_state(
        broker.clone(),
        crate::registry_acl::authorize,
    ));
    let api = registry.merge(crate::api::router(broker.clone()));
    let console = crate::console::router(api.clone(), broker.clone());
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(broker.clone())
        .merge(api)
        .merge(console)
        .layer(axum::middleware::from_fn_with_state(broker, authenticate))
        .layer(axum::middleware::from_fn_with_state(guard, guard_request))
}

/// Paths open without credentials: the health check, the console's login page and assets
/// (the login page needs them), and `/metrics` unless `--http-metrics-auth`.
fn open_path(auth: &HttpAuth, path: &str) -> bool {
    path == "/health"
        || path == crate::console::LOGIN_PATH
        || path.starts_with("/ui/static/")
        || (path == "/metrics" && !auth.metrics_auth)
}

/// 401 with the challenge that makes a browser or `curl --anyauth` offer Basic credentials;
/// a console page asked for by a browser is sent to the login page instead.
fn unauthorized(req: &Request, why: &str) -> Response {
    let path = req.uri().path();
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if req.method() == axum::http::Method::GET
        && (path == "/ui" || path.starts_with("/ui/"))
        && wants_html
    {
        return crate::console::to_login(req.uri());
    }
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error_code": 40101, "message": why}).to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sluice\", charset=\"UTF-8\""),
    );
    resp
}

/// Who the request is from (see the module's comment); refuses it when it does not say, or
/// says wrongly.
async fn authenticate(State(broker): State<Arc<Broker>>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |c| c.0.ip());
    let auth = &broker.security.http;
    if !auth.enabled || open_path(auth, req.uri().path()) {
        req.extensions_mut().insert(Caller::open(ip));
        return next.run(req).await;
    }
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    // A browser says where a write comes from: one from another site's page is refused
    // whatever credentials it carries (a browser may attach cached Basic credentials).
    if !safe && !crate::security::http::same_origin(req.headers()) {
        return refuse_with(
            StatusCode::FORBIDDEN,
            40302,
            format!(
                "{} {} comes from another site's page (Origin)",
                req.method(),
                req.uri().path()
            ),
        );
    }
    let users = broker.metadata.users.table();
    let now = std::time::Instant::now();
    let caller = if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let Some(login) = value
            .to_str()
            .ok()
            .and_then(crate::security::http::parse_basic)
        else {
            return unauthorized(
                &req,
                "the Authorization header is not HTTP Basic credentials",
            );
        };
        let login = match auth.cached(&login, users.generation, now) {
            Some(login) => login,
            None => {
                if !HttpAuth::check(&users, &login).await {
                    broker.metrics.authentication_failed("HTTP", "Basic");
                    return unauthorized(&req, "authentication failed");
                }
                let login = Arc::new(login);
                auth.remember(login.clone(), users.generation, now);
                login
            }
        };
        Caller::user(login, ip, None)
    } else if let Some(id) = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::security::http::cookie(v, crate::security::http::SESSION_COOKIE))
        .map(str::to_owned)
    {
        let (login, csrf) = match auth.session(&id, users.generation, now) {
            SessionLookup::Unknown => {
                return unauthorized(&req, "the console session has ended: log in again")
            }
            SessionLookup::Valid { login, csrf } => (login, csrf),
            SessionLookup::Recheck { login } => {
                // The users changed since the login: the password must still be right.
                if !HttpAuth::check(&users, &login).await {
                    auth.end_session(&id);
                    return unauthorized(&req, "the console session has ended: log in again");
                }
                auth.rechecked(&id, users.generation);
                match auth.session(&id, users.generation, now) {
                    SessionLookup::Valid { login, csrf } => (login, csrf),
                    _ => return unauthorized(&req, "the console session has ended: log in again"),
                }
            }
        };
        // A write on a session must show the session's CSRF token: the cookie alone is what a
        // form on another site could send.
        let shown = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !safe && !same_secret(shown, &csrf) {
            return refuse_with(
                StatusCode::FORBIDDEN,
                40302,
                format!(
                    "{} {} on a console session needs the session's {CSRF_HEADER} header",
                    req.method(),
                    req.uri().path()
                ),
            );
        }
        Caller::user(
            login,
            ip,
            Some(SessionRef {
                id: Arc::from(id.as_str()),
                csrf,
            }),
        )
    } else {
        return unauthorized(
            &req,
            "authentication required: HTTP Basic credentials of a Sluice user",
        );
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn refuse(status: StatusCode, message: String) -> Response {
    refuse_with(status, u32::from(status.as_u16()), message)
}

/// A refusal with the API's five-digit error code (`40301` for an ACL, as `api/` answers).
fn refuse_with(status: StatusCode, code: u32, message: String) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error_code": code, "message": message}).to_string(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The Host check, then the body read in full under the read timeout and the size bound.
async fn guard_request(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Some(allowed) = &guard.allowed_hosts {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        if !host.is_some_and(|h| allowed.iter().any(|p| p.matches(h))) {
            let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {:?} is not allowed (allowed: {}); set --http-allowed-hosts to the \
                     names clients use",
                    host.unwrap_or(""),
                    list.join(", ")
                ),
            );
        }
    }
    if guard.read_only && crate::console::read_only_refuses(req.method(), req.uri().path()) {
        // 40301, the API's "forbidden" (Confluent's REST Proxy uses it too).
        let mut resp = (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error_code": 40301,
                "message": format!(
                    "{} {} is a write, and this broker's console and HTTP API are read-only \
                     (--console-read-only)",
                    req.method(),
                    req.uri().path()
                ),
            })),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > guard.max_body as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {} bytes", guard.max_body),
        );
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(
        guard.read_timeout,
        axum::body::to_bytes(body, guard.max_body),
    )
    .await
    {
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms",
                    guard.read_timeout.as_millis()
                ),
            )
        }
        Ok(Err(e)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "cannot read the request body (at most {} bytes): {e}",
                    guard.max_body
                ),
            )
        }
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

pub async fn serve(broker: Arc<Broker>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let max_connections = broker.config.http_max_connections;
    let read_timeout = broker.config.http_read_timeout;
    let app = router(broker);
    let slots = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = max_connections, "refusing HTTP connection: too many connections");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    // The peer's address for the ACLs' host and the audit line.
                    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                        app.clone(),
                        move |mut req: axum::http::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                            req
                        },
                    ));
                    let mut stop = stop.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder
                            .timer(TokioTimer::new())
                            .header_read_timeout(read_timeout);
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            _ = stop.changed() => {
                                // Finish the request in flight, then close.
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "HTTP connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
