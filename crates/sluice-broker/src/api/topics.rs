//! `/v1/cluster`, `/v1/topics`: the cluster's brokers, topics with their partitions,
//! watermarks and configs; create, delete, alter configs.

use crate::security::http::Caller;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Api, ApiError, ApiJson, ApiPath};
use crate::limits::MAX_API_TOPIC_CONFIGS;

pub async fn cluster(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let md = api
        .clients
        .with(&caller, |c| Box::pin(c.metadata(Some(&[]), false)))
        .await?;
    let brokers: Vec<Value> = md
        .brokers
        .iter()
        .map(|b| json!({"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}))
        .collect();
    Ok(Json(json!({
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "brokers": brokers,
    })))
}

pub async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let md = api
        .clients
        .with(&caller, |c| Box::pin(c.metadata(None, false)))
        .await?;
    let mut topics: Vec<Value> = md
        .topics
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "partitions": t.partitions.len(),
                "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
                "internal": t.is_internal,
            })
        })
        .collect();
    topics.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(Value::Array(topics)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    name: String,
    /// Absent: the broker's default (`num.partitions`).
    partitions: Option<i32>,
    /// Absent: the broker's default.
    replication_factor: Option<i16>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

pub async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTopic>,
) -> Result<impl IntoResponse, ApiError> {
    if req.configs.len() > MAX_API_TOPIC_CONFIGS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_API_TOPIC_CONFIGS} configs"
        )));
    }
    let configs: Vec<(String, String)> = req.configs.into_iter().collect();
    let name = req.name.clone();
    let (partitions, rf) = (
        req.partitions.unwrap_or(-1),
        req.replication_factor.unwrap_or(-1),
    );
    api.clients
        .with(&caller, move |c| {
            Box::pin(async move { c.create_topic(&name, partitions, rf, &configs).await })
        })
        .await?;
    // CreateTopics answers once the topic is in the metadata log; in a cluster each partition's
    // leader starts it a moment later, and until then its offsets are unknown. The answer
    // describes the new topic, so it waits for that (bounded).
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(crate::limits::API_TOPIC_READY_WAIT_MS);
    let body = loop {
        match describe_topic(&api, &caller, req.name.clone()).await {
            Err(e) if matches!(e.code, 40401 | 50001) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            described => break described?,
        }
    };
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn describe(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe_topic(&api, &caller, topic).await?))
}

/// A topic's partitions (leader, replicas, ISR, log start, high watermark, size on disk) and
/// configs.
async fn describe_topic(api: &Api, caller: &Caller, topic: String) -> Result<Value, ApiError> {
    let (info, bounds, sizes, configs) = api
        .clients
        .with(caller, move |c| {
            Box::pin(async move {
                let info = c.topic(&topic).await?;
                let ps: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
                let bounds = c.offset_bounds(&topic, &ps).await?;
                let sizes = c.leader_sizes(&topic).await?;
                let configs = c.describe_topic_configs(&topic).await?;
                Ok((info, bounds, sizes, configs))
            })
        })
        .await?;
    Ok(sluice_client::json::topic(&info, &bounds, &sizes, &configs))
}

pub async fn delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    api.clients
        .with(&caller, move |c| {
            Box::pin(async move { c.delete_topic(&topic).await })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn configs(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let entries = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move { c.describe_topic_configs(&topic).await })
        })
        .await?;
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "value": if e.is_sensitive { None } else { e.value.clone() },
                "source": e.source_name(),
                "read_only": e.read_only,
                "sensitive": e.is_sensitive,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterConfigs {
    #[serde(default)]
    set: BTreeMap<String, String>,
    /// Configs to return to their defaults.
    #[serde(default)]
    delete: Vec<String>,
}

pub async fn alter_configs(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
    ApiJson(req): ApiJson<AlterConfigs>,
) -> Result<StatusCode, ApiError> {
    if req.set.len() + req.delete.len() > MAX_API_TOPIC_CONFIGS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_API_TOPIC_CONFIGS} configs"
        )));
    }
    if req.set.is_empty() && req.delete.is_empty() {
        return Err(ApiError::invalid("nothing to change: give set or delete"));
    }
    let set: Vec<(String, String)> = req.set.into_iter().collect();
    let delete = req.delete;
    api.clients
        .with(&caller, move |c| {
            Box::pin(async move { c.alter_topic_configs(&topic, &set, &delete).await })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
