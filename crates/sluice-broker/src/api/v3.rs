//! A subset of Confluent's REST Proxy v3 under `/v3/` (its shapes: `kind`, `metadata.self`,
//! `related` links, `data` lists), so tooling written for it works: clusters, brokers, topics
//! (list, create, get, delete), partitions, consumer groups with their consumers, lags and lag
//! summary, and produce — one record per JSON object, several objects in one body answered
//! with one delivery report each, in order (the streaming form).

use crate::security::http::Caller;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_client::client::{ClusterMetadata, TopicInfo};
use sluice_client::records::{partition_for_key, ProduceRecord};
use sluice_client::Compression;

use super::{Api, ApiError, ApiJson, ApiPath};
use crate::limits::MAX_API_PRODUCE_RECORDS;

/// Links are absolute, as Confluent's: `http://` and the `Host` the request came to (checked
/// against the allow-list before any handler runs).
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/v3/clusters")
}

fn meta(self_url: String, resource: String) -> Value {
    json!({"self": self_url, "resource_name": resource})
}

fn list(kind: &str, self_url: String, data: Vec<Value>) -> Value {
    json!({"kind": kind, "metadata": {"self": self_url, "next": null}, "data": data})
}

fn related(url: String) -> Value {
    json!({ "related": url })
}

/// The cluster id, checked against the path's.
fn check_cluster(md: &ClusterMetadata, id: &str) -> Result<String, ApiError> {
    let ours = md.cluster_id.clone().unwrap_or_default();
    if ours != id {
        return Err(ApiError::new(40404, format!("cluster {id} not found")));
    }
    Ok(ours)
}

/// The cluster's id, controller and brokers (no topics: a cluster check needs none).
async fn metadata(api: &Api, caller: &Caller) -> Result<ClusterMetadata, ApiError> {
    api.clients
        .with(caller, |c| Box::pin(c.metadata(Some(&[]), false)))
        .await
}

/// The cluster's metadata and id, once the path's cluster id is checked against it.
async fn in_cluster(
    api: &Api,
    caller: &Caller,
    id: &str,
) -> Result<(ClusterMetadata, String), ApiError> {
    let md = metadata(api, caller).await?;
    let id = check_cluster(&md, id)?;
    Ok((md, id))
}

/// The cluster id (checked) and the group's position (404 for a group nobody knows).
async fn group_in_cluster(
    api: &Api,
    caller: &Caller,
    id: &str,
    group: &str,
) -> Result<(String, sluice_client::lag::GroupPosition), ApiError> {
    let (_, id) = in_cluster(api, caller, id).await?;
    Ok((id, super::groups::position(api, caller, group).await?))
}

fn cluster_json(base: &str, md: &ClusterMetadata) -> Value {
    let id = md.cluster_id.clone().unwrap_or_default();
    let me = format!("{base}/{id}");
    json!({
        "kind": "KafkaCluster",
        "metadata": meta(me.clone(), format!("crn:///kafka={id}")),
        "cluster_id": id,
        "controller": related(format!("{me}/brokers/{}", md.controller_id)),
        "brokers": related(format!("{me}/brokers")),
        "topics": related(format!("{me}/topics")),
        "consumer_groups": related(format!("{me}/consumer-groups")),
    })
}

pub async fn clusters(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let md = metadata(&api, &caller).await?;
    let b = base(&headers);
    Ok(Json(list(
        "KafkaClusterList",
        b.clone(),
        vec![cluster_json(&b, &md)],
    )))
}

pub async fn cluster(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (md, _) = in_cluster(&api, &caller, &id).await?;
    Ok(Json(cluster_json(&base(&headers), &md)))
}

pub async fn brokers(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (md, id) = in_cluster(&api, &caller, &id).await?;
    let me = format!("{}/{id}/brokers", base(&headers));
    let mut brokers = md.brokers.clone();
    brokers.sort_by_key(|b| b.node_id);
    let data = brokers
        .iter()
        .map(|b| {
            json!({
                "kind": "KafkaBroker",
                "metadata": meta(format!("{me}/{}", b.node_id), format!("crn:///kafka={id}/broker={}", b.node_id)),
                "cluster_id": id,
                "broker_id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
            })
        })
        .collect();
    Ok(Json(list("KafkaBrokerList", me, data)))
}

fn topic_json(base: &str, id: &str, t: &TopicInfo) -> Value {
    let me = format!("{base}/{id}/topics/{}", t.name);
    json!({
        "kind": "KafkaTopic",
        "metadata": meta(me.clone(), format!("crn:///kafka={id}/topic={}", t.name)),
        "cluster_id": id,
        "topic_name": t.name,
        "is_internal": t.is_internal,
        "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
        "partitions_count": t.partitions.len(),
        "partitions": related(format!("{me}/partitions")),
        "configs": related(format!("{me}/configs")),
        "partition_reassignments": related(format!("{me}/partitions/-/reassignment")),
        "authorized_operations": [],
    })
}

pub async fn topics(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    let b = base(&headers);
    let mut topics = api
        .clients
        .with(&caller, |c| Box::pin(c.metadata(None, false)))
        .await?
        .topics;
    topics.sort_by(|x, y| x.name.cmp(&y.name));
    let data = topics.iter().map(|t| topic_json(&b, &id, t)).collect();
    Ok(Json(list(
        "KafkaTopicList",
        format!("{b}/{id}/topics"),
        data,
    )))
}

#[derive(Deserialize)]
pub struct NewTopic {
    topic_name: String,
    partitions_count: Option<i32>,
    replication_factor: Option<i16>,
    #[serde(default)]
    configs: Vec<NameValue>,
    /// Accepted and checked only, as Confluent's: the topic is not created.
    #[serde(default)]
    validate_only: bool,
}

#[derive(Deserialize)]
pub struct NameValue {
    name: String,
    value: Option<String>,
}

pub async fn create_topic(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NewTopic>,
) -> Result<Response, ApiError> {
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    if req.configs.len() > crate::limits::MAX_API_TOPIC_CONFIGS {
        return Err(ApiError::invalid("too many configs"));
    }
    let configs: Vec<(String, String)> = req
        .configs
        .into_iter()
        .filter_map(|c| c.value.map(|v| (c.name, v)))
        .collect();
    let name = req.topic_name.clone();
    let (partitions, rf) = (
        req.partitions_count.unwrap_or(-1),
        req.replication_factor.unwrap_or(-1),
    );
    if req.validate_only {
        crate::metadata::validate_topic_name(&name).map_err(|e| ApiError::invalid(e.message))?;
        return Ok((StatusCode::OK, Json(json!({"topic_name": name}))).into_response());
    }
    let info = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move {
                c.create_topic(&name, partitions, rf, &configs).await?;
                c.topic(&name).await
            })
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(topic_json(&base(&headers), &id, &info)),
    )
        .into_response())
}

pub async fn topic(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, topic)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    let info = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move { c.topic(&topic).await })
        })
        .await?;
    Ok(Json(topic_json(&base(&headers), &id, &info)))
}

pub async fn delete_topic(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath((id, topic)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    in_cluster(&api, &caller, &id).await?;
    api.clients
        .with(&caller, move |c| {
            Box::pin(async move { c.delete_topic(&topic).await })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn partition_json(
    base: &str,
    id: &str,
    topic: &str,
    p: &sluice_client::client::PartitionInfo,
) -> Value {
    let me = format!("{base}/{id}/topics/{topic}/partitions/{}", p.partition);
    json!({
        "kind": "KafkaPartition",
        "metadata": meta(me.clone(), format!("crn:///kafka={id}/topic={topic}/partition={}", p.partition)),
        "cluster_id": id,
        "topic_name": topic,
        "partition_id": p.partition,
        "leader": related(format!("{me}/replicas/{}", p.leader)),
        "replicas": related(format!("{me}/replicas")),
        "reassignment": related(format!("{me}/reassignment")),
    })
}

pub async fn partitions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, topic)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    let t = topic.clone();
    let mut info = api
        .clients
        .with(&caller, move |c| Box::pin(async move { c.topic(&t).await }))
        .await?;
    info.partitions.sort_by_key(|p| p.partition);
    let b = base(&headers);
    let data = info
        .partitions
        .iter()
        .map(|p| partition_json(&b, &id, &topic, p))
        .collect();
    Ok(Json(list(
        "KafkaPartitionList",
        format!("{b}/{id}/topics/{topic}/partitions"),
        data,
    )))
}

pub async fn partition(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, topic, partition)): ApiPath<(String, String, i32)>,
) -> Result<Json<Value>, ApiError> {
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    let t = topic.clone();
    let info = api
        .clients
        .with(&caller, move |c| Box::pin(async move { c.topic(&t).await }))
        .await?;
    let p = info
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| {
            ApiError::new(40403, format!("topic {topic} has no partition {partition}"))
        })?;
    Ok(Json(partition_json(&base(&headers), &id, &topic, p)))
}

pub async fn consumer_groups(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    let mut groups = api
        .clients
        .with(&caller, |c| {
            Box::pin(c.list_groups_of_types(&["classic", "consumer"]))
        })
        .await?;
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let b = base(&headers);
    let data = groups
        .iter()
        .map(|g| {
            group_json(
                &b,
                &id,
                &g.group_id,
                g.state.as_deref().unwrap_or("Unknown"),
                "",
                g.group_type.as_deref(),
            )
        })
        .collect();
    Ok(Json(list(
        "KafkaConsumerGroupList",
        format!("{b}/{id}/consumer-groups"),
        data,
    )))
}

fn group_json(
    base: &str,
    id: &str,
    group: &str,
    state: &str,
    assignor: &str,
    kind: Option<&str>,
) -> Value {
    let me = format!("{base}/{id}/consumer-groups/{group}");
    json!({
        "kind": "KafkaConsumerGroup",
        "metadata": meta(me.clone(), format!("crn:///kafka={id}/consumer-group={group}")),
        "cluster_id": id,
        "consumer_group_id": group,
        "is_simple": false,
        "partition_assignor": assignor,
        "state": state.to_uppercase(),
        "type": kind.unwrap_or("classic").to_uppercase(),
        "consumers": related(format!("{me}/consumers")),
        "lag_summary": related(format!("{me}/lag-summary")),
    })
}

pub async fn consumer_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, group)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (id, pos) = group_in_cluster(&api, &caller, &id, &group).await?;
    let d = &pos.description;
    Ok(Json(group_json(
        &base(&headers),
        &id,
        &group,
        &d.state,
        &d.protocol,
        Some("classic"),
    )))
}

pub async fn consumers(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, group)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (id, pos) = group_in_cluster(&api, &caller, &id, &group).await?;
    let me = format!("{}/{id}/consumer-groups/{group}/consumers", base(&headers));
    let data = pos
        .description
        .members
        .iter()
        .map(|m| {
            json!({
                "kind": "KafkaConsumer",
                "metadata": meta(format!("{me}/{}", m.member_id), format!("crn:///kafka={id}/consumer-group={group}/consumer={}", m.member_id)),
                "cluster_id": id,
                "consumer_group_id": group,
                "consumer_id": m.member_id,
                "instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "assignments": related(format!("{me}/{}/assignments", m.member_id)),
            })
        })
        .collect();
    Ok(Json(list("KafkaConsumerList", me, data)))
}

pub async fn lags(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, group)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (id, pos) = group_in_cluster(&api, &caller, &id, &group).await?;
    let me = format!("{}/{id}/consumer-groups/{group}/lags", base(&headers));
    let members = &pos.description.members;
    let data = pos
        .partitions
        .iter()
        .filter(|p| p.committed.is_some())
        .map(|p| {
            let m = p.member.and_then(|i| members.get(i));
            json!({
                "kind": "KafkaConsumerLag",
                "metadata": meta(format!("{me}/{}/partitions/{}", p.topic, p.partition), format!("crn:///kafka={id}/consumer-group={group}/lag={}/partition={}", p.topic, p.partition)),
                "cluster_id": id,
                "consumer_group_id": group,
                "topic_name": p.topic,
                "partition_id": p.partition,
                "current_offset": p.committed,
                "log_end_offset": p.log_end,
                "lag": p.lag(),
                "consumer_id": m.map_or("", |m| m.member_id.as_str()),
                "instance_id": m.and_then(|m| m.group_instance_id.clone()),
                "client_id": m.map_or("", |m| m.client_id.as_str()),
            })
        })
        .collect();
    Ok(Json(list("KafkaConsumerLagList", me, data)))
}

pub async fn lag_summary(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, group)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (id, pos) = group_in_cluster(&api, &caller, &id, &group).await?;
    let me = format!("{}/{id}/consumer-groups/{group}", base(&headers));
    let members = &pos.description.members;
    let max = pos
        .partitions
        .iter()
        .filter_map(|p| p.lag().map(|l| (l, p)))
        .max_by_key(|(l, _)| *l);
    let m = max.and_then(|(_, p)| p.member).and_then(|i| members.get(i));
    Ok(Json(json!({
        "kind": "KafkaConsumerGroupLagSummary",
        "metadata": meta(format!("{me}/lag-summary"), format!("crn:///kafka={id}/consumer-group={group}/lag-summary")),
        "cluster_id": id,
        "consumer_group_id": group,
        "max_lag_consumer_id": m.map_or("", |m| m.member_id.as_str()),
        "max_lag_instance_id": m.and_then(|m| m.group_instance_id.clone()),
        "max_lag_client_id": m.map_or("", |m| m.client_id.as_str()),
        "max_lag_topic_name": max.map_or("", |(_, p)| p.topic.as_str()),
        "max_lag_partition_id": max.map_or(0, |(_, p)| p.partition),
        "max_lag": max.map_or(0, |(l, _)| l),
        "total_lag": pos.total_lag(),
        "max_lag_partition": related(format!("{}/{id}/topics/{}/partitions/{}", base(&headers), max.map_or("", |(_, p)| p.topic.as_str()), max.map_or(0, |(_, p)| p.partition))),
    })))
}

/// A key or value of a v3 produce: `{type, data}`.
#[derive(Deserialize)]
pub struct Data {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<Value>,
}

#[derive(Deserialize)]
pub struct V3Header {
    name: String,
    /// base64
    value: Option<String>,
}

#[derive(Deserialize)]
pub struct V3Record {
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<V3Header>,
    key: Option<Data>,
    value: Option<Data>,
    timestamp: Option<String>,
}

/// The bytes of a key or value and its type name: BINARY is base64, STRING is text, JSON is
/// any JSON (stored as its text). Schema types (AVRO, PROTOBUF, JSONSCHEMA) are not supported.
fn data_bytes(d: &Option<Data>) -> Result<(Option<bytes::Bytes>, &'static str), String> {
    let Some(d) = d else {
        return Ok((None, "BINARY"));
    };
    let kind = d.kind.as_deref().unwrap_or("JSON").to_uppercase();
    let Some(data) = &d.data else {
        return Ok((None, if kind == "STRING" { "STRING" } else { "BINARY" }));
    };
    match (kind.as_str(), data) {
        ("BINARY", Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|b| (Some(b.into()), "BINARY"))
            .map_err(|e| format!("BINARY data is not base64: {e}")),
        ("STRING", Value::String(s)) => {
            Ok((Some(bytes::Bytes::copy_from_slice(s.as_bytes())), "STRING"))
        }
        ("JSON", v) => Ok((Some(v.to_string().into()), "JSON")),
        ("BINARY" | "STRING", _) => Err(format!("{kind} data must be a string")),
        (other, _) => Err(format!(
            "type {other} is not supported by Sluice's REST v3 (BINARY, STRING and JSON are)"
        )),
    }
}

/// One delivery report (or error) per record, in order.
async fn produce_one(
    api: &Api,
    caller: &Caller,
    id: &str,
    topic: &str,
    count: i32,
    r: V3Record,
) -> Value {
    let err = |code: u32, message: String| json!({"error_code": code, "message": message});
    let (key, key_type) = match data_bytes(&r.key) {
        Ok(k) => k,
        Err(e) => return err(400, e),
    };
    let (value, value_type) = match data_bytes(&r.value) {
        Ok(v) => v,
        Err(e) => return err(400, e),
    };
    let mut headers = Vec::with_capacity(r.headers.len());
    for h in r.headers {
        let value = match h
            .value
            .map(|v| base64::engine::general_purpose::STANDARD.decode(v))
            .transpose()
        {
            Ok(v) => v.map(bytes::Bytes::from),
            Err(e) => return err(400, format!("header {} is not base64: {e}", h.name)),
        };
        headers.push((h.name, value));
    }
    let timestamp = match r.timestamp.as_deref().map(timestamp_ms) {
        Some(Err(e)) => return err(400, e),
        Some(Ok(t)) => t,
        None => crate::broker::now_ms(),
    };
    let (key_size, value_size) = (
        key.as_ref().map_or(0, |k| k.len()),
        value.as_ref().map_or(0, |v| v.len()),
    );
    let record = ProduceRecord {
        key,
        value,
        headers,
    };
    let t = topic.to_owned();
    let partition = r.partition_id;
    let result = api
        .clients
        .with(caller, move |c| {
            Box::pin(async move {
                let p = match (partition, &record.key) {
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, count),
                    (None, None) => super::records::next_partition(count),
                };
                if p < 0 || p >= count {
                    return Err(super::records::unknown_partition(
                        &t,
                        count.max(0) as usize,
                        p,
                    ));
                }
                let offset = c
                    .produce(
                        &t,
                        p,
                        std::slice::from_ref(&record),
                        Compression::None,
                        timestamp,
                    )
                    .await?;
                Ok((p, offset))
            })
        })
        .await;
    match result {
        Ok((p, offset)) => json!({
            "error_code": 200,
            "cluster_id": id,
            "topic_name": topic,
            "partition_id": p,
            "offset": offset,
            "timestamp": timestamp_text(timestamp),
            "key": {"type": key_type, "size": key_size},
            "value": {"type": value_type, "size": value_size},
        }),
        Err(e) => err(e.code / 100, e.message),
    }
}

/// RFC 3339 text (what Confluent sends) of ms since the epoch.
fn timestamp_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// A produce's `timestamp`: RFC 3339 (`2026-12-06T10:00:00.000Z`), at or after the epoch.
fn timestamp_ms(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| {
            format!(
                "timestamp {text:?} is not RFC 3339 at or after 1970 (2026-12-06T10:00:00.000Z)"
            )
        })
}

pub async fn produce(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath((id, topic)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(ApiError::new(
            41501,
            "Expected request with `Content-Type: application/json`",
        ));
    }
    let (_, id) = in_cluster(&api, &caller, &id).await?;
    let t = topic.clone();
    let count = api
        .clients
        .with(&caller, move |c| Box::pin(async move { c.topic(&t).await }))
        .await
        .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))?;
    let mut reports = Vec::new();
    for (i, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<V3Record>()
        .enumerate()
    {
        if i >= MAX_API_PRODUCE_RECORDS {
            reports.push(json!({"error_code": 400, "message": format!("at most {MAX_API_PRODUCE_RECORDS} records in one request")}));
            break;
        }
        match item {
            Ok(r) => reports.push(produce_one(&api, &caller, &id, &topic, count, r).await),
            Err(e) => {
                // The rest of the stream cannot be read once one object is not JSON.
                reports.push(json!({"error_code": 400, "message": format!("not a record: {e}")}));
                break;
            }
        }
    }
    let mut out = String::new();
    for r in &reports {
        out.push_str(&r.to_string());
        out.push('\n');
    }
    let status = match reports.as_slice() {
        [] => return Err(ApiError::invalid("no record in the body")),
        // One record: its report's status, as Confluent's non-streaming produce.
        [one] => one["error_code"]
            .as_u64()
            .and_then(|c| StatusCode::from_u16(c as u16).ok())
            .unwrap_or(StatusCode::OK),
        _ => StatusCode::OK,
    };
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}
