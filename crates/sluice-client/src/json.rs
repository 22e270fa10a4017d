//! JSON views of what the client reads, shared by the CLI's `--output json` and the broker's
//! HTTP API, so a script sees the same document from either.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::client::{ConfigEntry, TopicInfo};
use crate::lag::GroupPosition;

/// A topic: its partitions with their log start and end (`bounds`, by partition; -1 when
/// unknown), the leader replica's bytes on disk (`sizes`; null when unknown) and its configs
/// (sensitive values left out).
pub fn topic(
    info: &TopicInfo,
    bounds: &BTreeMap<i32, (i64, i64)>,
    sizes: &BTreeMap<i32, i64>,
    configs: &[ConfigEntry],
) -> Value {
    let mut partitions: Vec<&crate::client::PartitionInfo> = info.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition);
    let partitions: Vec<Value> = partitions
        .into_iter()
        .map(|p| {
            let (start, end) = bounds.get(&p.partition).copied().unwrap_or((-1, -1));
            json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline_replicas": p.offline_replicas,
                "log_start_offset": start,
                "log_end_offset": end,
                "records": if start >= 0 && end >= start { end - start } else { 0 },
                "size_bytes": sizes.get(&p.partition),
            })
        })
        .collect();
    let configs: Map<String, Value> = configs
        .iter()
        .map(|c| {
            let value = if c.is_sensitive {
                None
            } else {
                c.value.clone()
            };
            (
                c.name.clone(),
                json!({ "value": value, "source": c.source_name(), "read_only": c.read_only }),
            )
        })
        .collect();
    json!({ "name": info.name, "internal": info.is_internal, "partitions": partitions, "configs": configs })
}

/// A consumer group: state, members with their assignments, and per partition its offsets
/// and lag.
pub fn group(group: &str, pos: &GroupPosition) -> Value {
    let desc = &pos.description;
    let members: Vec<Value> = desc
        .members
        .iter()
        .map(|m| {
            let assignment: Vec<Value> = m
                .assignment
                .iter()
                .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
                .collect();
            json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": assignment,
            })
        })
        .collect();
    let offsets: Vec<Value> = pos
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed_offset": p.committed,
                "log_end_offset": p.log_end,
                "last_stable_offset": p.stable_end,
                "lag": p.lag(),
                "member_id": p.member.and_then(|i| desc.members.get(i)).map(|m| m.member_id.clone()),
            })
        })
        .collect();
    json!({
        "group": group,
        "state": desc.state,
        "protocol_type": desc.protocol_type,
        "protocol": desc.protocol,
        "coordinator": pos.coordinator,
        "members": members,
        "offsets": offsets,
        "total_lag": pos.total_lag(),
    })
}
