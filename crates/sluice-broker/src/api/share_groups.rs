//! `/v1/share-groups`: share groups (KIP-932 queues) as an operator sees them — members and
//! their assignments (ShareGroupDescribe, over the Kafka protocol like the rest of `/v1`), and
//! per share-partition the lag, the records locked by consumers now, those waiting, those on
//! their way to the dead-letter queue, and how many times the records in flight have been
//! delivered. The last part has no Kafka API: each node reports the share-partitions it holds
//! (`share::admin::stats`, over RPC service 4).

use crate::security::http::Caller;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use kafka_protocol::messages::{GroupId, ShareGroupDescribeRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};
use sluice_share::WindowStats;

use super::{Api, ApiError, ApiPath};
use crate::share::admin;

/// `GET /v1/share-groups`: every share group and its state.
pub async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut groups = api
        .clients
        .with(&caller, |c| Box::pin(c.list_groups_of_types(&["share"])))
        .await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(Json(Value::Array(
        groups
            .iter()
            .map(|g| json!({"group_id": g.group_id, "state": g.state}))
            .collect(),
    )))
}

/// `GET /v1/share-groups/{group}`.
pub async fn describe(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    if group.is_empty() {
        return Err(ApiError::invalid("the group id is empty"));
    }
    // The partitions' queue state below is read from the broker directly.
    api.authorize(
        &caller,
        sluice_acl::AclOperation::Describe,
        sluice_acl::ResourceType::Group,
        &group,
    )?;
    let g = group.clone();
    let described = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move {
                let coordinator = c.find_coordinator(&g).await?;
                let req = ShareGroupDescribeRequest::default()
                    .with_group_ids(vec![GroupId(StrBytes::from_string(g.clone()))]);
                let resp = c.send(&coordinator, &req).await?;
                Ok(resp.groups.into_iter().next())
            })
        })
        .await?;
    // INVALID_GROUP_ID (24): the id names a group of another type (a consumer group, which
    // an offset reset can create): there is no share group of that name.
    if let Some(d) = described.as_ref().filter(|d| d.error_code == 24) {
        let why = d
            .error_message
            .as_deref()
            .unwrap_or("a group of another type");
        return Err(ApiError::new(
            40402,
            format!("share group {group} does not exist: {why}"),
        ));
    }
    let (mut partitions, unreachable) = admin::stats(&api.broker, &group).await;
    // Rows of topics the caller may not see are left out, as Metadata leaves them out.
    let ctx = caller.context("HttpApi");
    partitions.retain(|p| {
        crate::security::authz::permits(
            &api.broker,
            &ctx,
            sluice_acl::AclOperation::Describe,
            sluice_acl::ResourceType::Topic,
            &p.topic,
        )
    });
    // GROUP_ID_NOT_FOUND (69) with no share state anywhere: no such share group.
    let described = described.filter(|d| d.error_code != 69);
    if described.is_none() && partitions.is_empty() {
        return Err(ApiError::new(
            40402,
            format!("share group {group} does not exist"),
        ));
    }
    let mut members = Vec::new();
    let (mut state, mut epoch) = ("Empty".to_string(), 0);
    if let Some(d) = described {
        sluice_client::error::check(d.error_code, d.error_message.as_deref(), || {
            format!("describe share group {group}")
        })?;
        state = d.group_state.to_string();
        epoch = d.group_epoch;
        for m in d.members {
            let assignment: Vec<Value> = m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| json!({"topic": t.topic_name.0.to_string(), "partition": p}))
                })
                .collect();
            members.push(json!({
                "member_id": m.member_id.to_string(),
                "client_id": m.client_id.to_string(),
                "client_host": m.client_host.to_string(),
                "rack": m.rack_id.map(|r| r.to_string()),
                "subscribed_topics": m.subscribed_topic_names.iter().map(|t| t.0.to_string()).collect::<Vec<_>>(),
                "assignment": assignment,
            }));
        }
    }
    let mut total = WindowStats {
        delivery_counts: vec![0; WindowStats::DELIVERY_BUCKETS],
        ..WindowStats::default()
    };
    let mut total_lag = 0i64;
    let rows: Vec<Value> = partitions
        .iter()
        .map(|p| {
            total_lag = total_lag.saturating_add(p.lag);
            total.acquired += p.window.acquired;
            total.available += p.window.available;
            total.dead_lettering += p.window.dead_lettering;
            for (t, n) in total
                .delivery_counts
                .iter_mut()
                .zip(&p.window.delivery_counts)
            {
                *t += n;
            }
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "leader": p.leader,
                "start_offset": p.window.start_offset,
                "end_offset": p.window.end_offset,
                "lag": p.lag,
                "acquired": p.window.acquired,
                "available": p.window.available,
                "dead_lettering": p.window.dead_lettering,
                "delivery_counts": p.window.delivery_counts,
            })
        })
        .collect();
    let dlq = api.broker.metadata.share_settings(&group).dlq_topic;
    Ok(Json(json!({
        "group_id": group,
        "state": state,
        "group_epoch": epoch,
        "members": members,
        "partitions": rows,
        "totals": {
            "lag": total_lag,
            "acquired": total.acquired,
            "available": total.available,
            "dead_lettering": total.dead_lettering,
            "delivery_counts": total.delivery_counts,
        },
        "dead_letter_topic": dlq,
        "unreachable_nodes": unreachable,
    })))
}
