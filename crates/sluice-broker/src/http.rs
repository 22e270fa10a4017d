//! The HTTP listener: `/health`, `/metrics` (Prometheus text) and the schema registry
//! (Confluent Schema Registry's REST API, from `sluice-registry`). The native REST API and the
//! console will be mounted here too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;

async fn health(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "cluster_id": broker.cluster_id,
        "node_id": broker.config.node_id,
        "topics": broker.metadata.topics().len(),
        "partitions": broker.metadata.partition_count(),
    }))
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        broker.metrics.encode(),
    )
}

pub fn router(broker: Arc<Broker>) -> Router {
    let registry = sluice_registry::router(broker.registry.clone());
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(broker)
        .merge(registry)
}

pub async fn serve(broker: Arc<Broker>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = router(broker);
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
