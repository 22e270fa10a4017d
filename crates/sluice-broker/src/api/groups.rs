//! `/v1/groups`: consumer groups (classic, consumer and share), their members, committed
//! offsets and lag — what `sluice group list|describe` shows — and offset resets (`sluice group
//! reset-offsets`).

use crate::security::http::Caller;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_client::reset::{plan_json, ResetError, ResetTo};

use super::{Api, ApiError, ApiJson, ApiPath};
use crate::coordinator::GROUP_TOPIC;
use crate::limits::LAG_SAMPLE_INTERVAL_MS;
use crate::schemas::FORWARDED_HEADER;

pub async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut groups = api
        .clients
        .with(&caller, |c| Box::pin(c.list_groups()))
        .await?;
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
    caller: Caller,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let pos = position(&api, &caller, &group).await?;
    let mut doc = sluice_client::json::group(&group, &pos);
    doc["warnings"] = json!(pos.warnings);
    Ok(Json(doc))
}

/// The group's position, refused as not found when the coordinator knows nothing of it.
pub(super) async fn position(
    api: &Api,
    caller: &Caller,
    group: &str,
) -> Result<sluice_client::lag::GroupPosition, ApiError> {
    let g = group.to_owned();
    let pos = api
        .clients
        .with(caller, move |c| {
            Box::pin(async move { c.group_position(&g).await })
        })
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
    caller: Caller,
    ApiPath(group): ApiPath<String>,
    req: axum::extract::Request,
) -> Response {
    let broker = &api.broker;
    // Kept here, not asked of a Kafka API: DescribeGroups' ACL.
    if let Err(e) = api.authorize(
        &caller,
        sluice_acl::AclOperation::Describe,
        sluice_acl::ResourceType::Group,
        &group,
    ) {
        return e.into_response();
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    topic: String,
    /// `earliest`, `latest`, `offset`, `timestamp` or `shift`.
    to: String,
    /// The offset, the time (ms since the epoch) or the shift (negative: back).
    value: Option<i64>,
    /// Apply the plan; without it only the plan is answered (a dry run).
    #[serde(default)]
    execute: bool,
}

/// `POST /v1/groups/{group}/offsets/reset`: moves the group's committed offsets on one topic,
/// or (without `"execute": true`) answers what it would do — `sluice group reset-offsets`'
/// plan, from the same code (`sluice_client::reset`). A group with members is refused with
/// 409 (40905): a member would overwrite the new offsets with its next commit.
pub async fn reset_offsets(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(group): ApiPath<String>,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<Json<Value>, ApiError> {
    let to = match (req.to.as_str(), req.value) {
        ("earliest", None) => ResetTo::Earliest,
        ("latest", None) => ResetTo::Latest,
        ("offset", Some(n)) => ResetTo::Offset(n),
        ("timestamp", Some(ts)) if ts >= 0 => ResetTo::Timestamp(ts),
        ("timestamp", Some(_)) => {
            return Err(ApiError::invalid(
                "a timestamp is 0 or more (ms since the epoch)",
            ))
        }
        ("shift", Some(n)) => ResetTo::Shift(n),
        ("earliest" | "latest", Some(_)) => {
            return Err(ApiError::invalid(format!(
                "`to: {}` takes no value",
                req.to
            )))
        }
        ("offset" | "timestamp" | "shift", None) => {
            return Err(ApiError::invalid(format!("`to: {}` needs a value", req.to)))
        }
        _ => {
            return Err(ApiError::invalid(
                "to is earliest, latest, offset, timestamp or shift",
            ))
        }
    };
    if group.is_empty() || req.topic.is_empty() {
        return Err(ApiError::invalid("name a group and a topic"));
    }
    let (g, topic, execute) = (group.clone(), req.topic, req.execute);
    let planned = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move {
                let plan = match c.plan_offset_reset(&g, &topic, to).await {
                    Ok(plan) => plan,
                    Err(ResetError::Client(e)) => return Err(e),
                    // Not a failure of the call: answered as a conflict below.
                    Err(e @ ResetError::ActiveMembers { .. }) => return Ok(Err(e.to_string())),
                };
                if execute {
                    c.apply_offset_reset(&plan).await?;
                }
                Ok(Ok(plan))
            })
        })
        .await?;
    let plan = planned.map_err(|message| ApiError::new(40905, message))?;
    Ok(Json(plan_json(&plan, execute)))
}
