//! `/v1/groups`: consumer groups (classic, consumer and share), their members, committed
//! offsets and lag — what `sluice group list|describe` shows.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{Api, ApiError, ApiPath};
use crate::coordinator::GROUP_TOPIC;
use crate::limits::LAG_SAMPLE_INTERVAL_MS;
use crate::schemas::FORWARDED_HEADER;

pub async fn list(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let mut groups = api.clients.with(|c| Box::pin(c.list_groups())).await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let list: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "group_id": g.group_id,
                "state": g.state,
                "protocol_type": g.protocol_type,
                "type": g.group_type,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

pub async fn describe(
    State(api): State<Arc<Api>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let pos = position(&api, &group).await?;
    let mut doc = sluice_client::json::group(&group, &pos);
    doc["warnings"] = json!(pos.warnings);
    Ok(Json(doc))
}

/// The group's position, refused as not found when the coordinator knows nothing of it.
pub(super) async fn position(
    api: &Api,
    group: &str,
) -> Result<sluice_client::lag::GroupPosition, ApiError> {
    let g = group.to_owned();
    let pos = api
        .clients
        .with(move |c| Box::pin(async move { c.group_position(&g).await }))
        .await?;
    if pos.is_unknown() {
        return Err(ApiError::new(
            40402,
            format!("consumer group {group} does not exist"),
        ));
    }
    Ok(pos)
}

/// `GET /v1/groups/{group}/lag-history`: the group's lag sampled every 10 s over the last
/// hour (`lag_history.rs`), oldest first. Kept by the group coordinator's node; another node
/// forwards the request there.
pub async fn lag_history(
    State(api): State<Arc<Api>>,
    ApiPath(group): ApiPath<String>,
    req: axum::extract::Request,
) -> Response {
    let broker = &api.broker;
    let here = || {
        Json(json!({
            "group_id": group,
            "interval_ms": LAG_SAMPLE_INTERVAL_MS,
            "samples": broker.lag_history.of(&group),
        }))
        .into_response()
    };
    if broker.offsets.check().is_ok() {
        return here();
    }
    let me = broker.config.node_id;
    let coordinator = broker.metadata.leader_of(GROUP_TOPIC, 0).unwrap_or(-1);
    let forwarded = req.headers().contains_key(FORWARDED_HEADER);
    let addr = (coordinator >= 0 && coordinator != me)
        .then(|| broker.metadata.cluster.http_addr_of(coordinator))
        .flatten();
    match addr {
        Some(addr) if !forwarded => {
            crate::schemas::forward(coordinator, addr, req, "the group coordinator").await
        }
        _ => ApiError::new(
            50301,
            format!("the group coordinator (node {coordinator}) cannot be reached from node {me}"),
        )
        .into_response(),
    }
}
