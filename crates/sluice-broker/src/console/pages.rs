//! The console's pages: each gathers the API's JSON for one view and renders its template.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, Query};
use axum::response::Response;
use minijinja::{context, Value as Tv};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{filters, Failure, Page};
use crate::limits::{
    CONSOLE_DIFF_TIMEOUT_MS, CONSOLE_MAX_OVERVIEW_TOPICS, CONSOLE_MAX_SUBJECTS,
    MAX_API_CONSUME_RECORDS,
};

/// A path segment for an API URL.
fn seg(s: &str) -> String {
    filters::pathseg(Tv::from(s))
}

/// Runs the calls of a page; any failure becomes the page's error.
macro_rules! page {
    ($console:expr, $nav:expr, $body:expr) => {
        match $body {
            Ok(r) => r,
            Err(f) => return $console.failed($nav, f),
        }
    };
}

/// `/ui/`: brokers, topics with message rates, groups, share groups and DLQ depth.
pub async fn overview(c: Page) -> Response {
    let nav = "overview";
    let cluster = page!(c, nav, c.get("/v1/cluster").await);
    let mut topics = page!(c, nav, c.get("/v1/topics").await);
    let groups = c.get("/v1/groups").await.unwrap_or(json!([]));
    let share_groups = c.get("/v1/share-groups").await.unwrap_or(json!([]));
    let dlqs = c.get("/v1/dlqs").await.unwrap_or(json!([]));
    // Records and rates: each user topic's log end offsets, summed (a bounded number of
    // topics; the topics page lists them all).
    let mut ends: BTreeMap<String, i64> = BTreeMap::new();
    let mut shown = 0;
    if let Some(list) = topics.as_array_mut() {
        for t in list.iter_mut() {
            if t["internal"].as_bool() == Some(true) || shown >= CONSOLE_MAX_OVERVIEW_TOPICS {
                continue;
            }
            shown += 1;
            let Some(name) = t["name"].as_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(d) = c.get(&format!("/v1/topics/{}", seg(&name))).await {
                let parts = d["partitions"].as_array().cloned().unwrap_or_default();
                let end: i64 = parts
                    .iter()
                    .filter_map(|p| p["log_end_offset"].as_i64())
                    .sum();
                let records: i64 = parts.iter().filter_map(|p| p["records"].as_i64()).sum();
                t["records"] = json!(records);
                t["log_end_offset"] = json!(end);
                ends.insert(name, end);
            }
        }
    }
    let now = Instant::now();
    {
        let mut last = c.rates.lock();
        if let (Some((at, before)), Some(list)) = (last.as_ref(), topics.as_array_mut()) {
            let secs = now.duration_since(*at).as_secs_f64();
            if secs >= 0.5 {
                for t in list.iter_mut() {
                    let name = t["name"].as_str().unwrap_or_default();
                    if let (Some(b), Some(e)) = (before.get(name), ends.get(name)) {
                        let rate = e.saturating_sub(*b).max(0) as f64 / secs;
                        t["rate"] = json!((rate * 10.0).round() / 10.0);
                    }
                }
            }
        }
        if last
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at).as_secs_f64() >= 0.5)
        {
            *last = Some((now, ends));
        }
    }
    let user_topics: Vec<&Value> = topics
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|t| t["internal"].as_bool() != Some(true))
                .collect()
        })
        .unwrap_or_default();
    let depth: i64 = dlqs
        .as_array()
        .map_or(0, |l| l.iter().filter_map(|d| d["depth"].as_i64()).sum());
    c.render(
        "overview.html",
        "Overview",
        nav,
        context! {
            cluster => Tv::from_serialize(&cluster),
            topics => Tv::from_serialize(&user_topics),
            groups => Tv::from_serialize(&groups),
            share_groups => Tv::from_serialize(&share_groups),
            dlqs => Tv::from_serialize(&dlqs),
            dlq_depth => depth,
        },
    )
}

#[derive(Deserialize)]
pub struct TopicsQuery {
    #[serde(default)]
    internal: bool,
}

/// `/ui/topics`: every topic, internal ones on request.
pub async fn topics(c: Page, Query(q): Query<TopicsQuery>) -> Response {
    let nav = "topics";
    let topics = page!(c, nav, c.get("/v1/topics").await);
    let list: Vec<&Value> = topics
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|t| q.internal || t["internal"].as_bool() != Some(true))
                .collect()
        })
        .unwrap_or_default();
    c.render(
        "topics.html",
        "Topics",
        nav,
        context! { topics => Tv::from_serialize(&list), internal => q.internal },
    )
}

/// `/ui/topics/{topic}`: partitions with leaders and watermarks, configs, size on disk as the
/// log's offsets tell, and the produce form.
pub async fn topic(c: Page, Path(topic): Path<String>) -> Response {
    let nav = "topics";
    let t = page!(c, nav, c.get(&format!("/v1/topics/{}", seg(&topic))).await);
    let sum = |field: &str| -> i64 {
        t["partitions"]
            .as_array()
            .map_or(0, |ps| ps.iter().filter_map(|p| p[field].as_i64()).sum())
    };
    let (records, size) = (sum("records"), sum("size_bytes"));
    let configs: Vec<Value> = t["configs"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    json!({"name": k, "value": v["value"], "source": v["source"], "read_only": v["read_only"]})
                })
                .collect()
        })
        .unwrap_or_default();
    c.render(
        "topic.html",
        &topic,
        nav,
        context! {
            topic => Tv::from_serialize(&t),
            records => records,
            size => size,
            configs => Tv::from_serialize(&configs),
        },
    )
}

#[derive(Deserialize, Default)]
pub struct Browse {
    partition: Option<String>,
    offset: Option<String>,
    /// ISO 8601; without a zone, UTC (an HTML `datetime-local` field sends none).
    time: Option<String>,
    key_contains: Option<String>,
    value_contains: Option<String>,
    header: Option<String>,
    decode: Option<String>,
    max: Option<String>,
}

/// `/ui/topics/{topic}/messages`: the message browser — from an offset or a time, filtered by
/// key, value or header, values decoded through the registry — and the live tail.
pub async fn messages(c: Page, Path(topic): Path<String>, Query(q): Query<Browse>) -> Response {
    let nav = "topics";
    let t = page!(c, nav, c.get(&format!("/v1/topics/{}", seg(&topic))).await);
    let partitions = t["partitions"].as_array().map_or(0, Vec::len);
    let blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let partition = match blank(&q.partition).map(|p| p.parse::<i32>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return c.failed(
                nav,
                Failure::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "the partition is a number",
                ),
            )
        }
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(o) = blank(&q.offset) {
        params.push(("offset", o));
    } else if let Some(when) = blank(&q.time) {
        match sluice_client::parse_datetime(&when) {
            Ok(ms) => params.push(("timestamp", ms.to_string())),
            Err(e) => {
                return c.failed(nav, Failure::new(axum::http::StatusCode::BAD_REQUEST, e));
            }
        }
    }
    let max = blank(&q.max)
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, MAX_API_CONSUME_RECORDS);
    params.push(("max_records", max.to_string()));
    for (name, v) in [
        ("key_contains", &q.key_contains),
        ("value_contains", &q.value_contains),
        ("header", &q.header),
    ] {
        if let Some(v) = blank(v) {
            params.push((name, v));
        }
    }
    let decode = blank(&q.decode).unwrap_or_else(|| "registry".into());
    params.push(("decode", decode.clone()));
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", seg(v)))
        .collect::<Vec<_>>()
        .join("&");
    let got = c
        .get(&format!(
            "/v1/topics/{}/partitions/{partition}/records?{query}",
            seg(&topic)
        ))
        .await;
    let (result, error) = match got {
        Ok(v) => (v, None),
        Err(f) => (Value::Null, Some(f.message)),
    };
    c.render(
        "messages.html",
        &format!("{topic} · messages"),
        nav,
        context! {
            topic => topic,
            partitions => partitions,
            partition => partition,
            q => context! {
                offset => blank(&q.offset),
                time => blank(&q.time),
                key_contains => blank(&q.key_contains),
                value_contains => blank(&q.value_contains),
                header => blank(&q.header),
                decode => decode,
                max => max,
            },
            result => Tv::from_serialize(&result),
            error => error,
        },
    )
}

/// `/ui/groups`: consumer groups (share groups have their own page).
pub async fn groups(c: Page) -> Response {
    let nav = "groups";
    let groups = page!(c, nav, c.get("/v1/groups").await);
    let list: Vec<&Value> = groups
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|g| g["type"].as_str() != Some("share"))
                .collect()
        })
        .unwrap_or_default();
    c.render(
        "groups.html",
        "Consumer groups",
        nav,
        context! { groups => Tv::from_serialize(&list) },
    )
}

/// `/ui/groups/{group}`: members, per-partition lag, the lag chart and the offset reset.
pub async fn group(c: Page, Path(group): Path<String>) -> Response {
    let nav = "groups";
    let g = page!(c, nav, c.get(&format!("/v1/groups/{}", seg(&group))).await);
    let mut topics: Vec<String> = g["offsets"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|o| o["topic"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    topics.sort();
    topics.dedup();
    c.render(
        "group.html",
        &group,
        nav,
        context! { group => Tv::from_serialize(&g), group_id => group, topics => topics },
    )
}

/// `/ui/share-groups`.
pub async fn share_groups(c: Page) -> Response {
    let nav = "share";
    let list = page!(c, nav, c.get("/v1/share-groups").await);
    c.render(
        "share_groups.html",
        "Share groups",
        nav,
        context! { groups => Tv::from_serialize(&list) },
    )
}

/// `/ui/share-groups/{group}`: members, acquired and available records per partition, and the
/// delivery-count histogram.
pub async fn share_group(c: Page, Path(group): Path<String>) -> Response {
    let nav = "share";
    let g = page!(
        c,
        nav,
        c.get(&format!("/v1/share-groups/{}", seg(&group))).await
    );
    let counts: Vec<i64> = g["totals"]["delivery_counts"]
        .as_array()
        .map(|l| l.iter().map(|n| n.as_i64().unwrap_or(0)).collect())
        .unwrap_or_default();
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let last = counts.len();
    let histogram: Vec<Value> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let label = if i + 1 == last {
                format!("{}+", i + 1)
            } else {
                (i + 1).to_string()
            };
            json!({"label": label, "count": n, "width": (*n as f64 / most as f64 * 100.0).round()})
        })
        .collect();
    c.render(
        "share_group.html",
        &group,
        nav,
        context! { group => Tv::from_serialize(&g), histogram => Tv::from_serialize(&histogram) },
    )
}

/// `/ui/dlqs`: the dead-letter topics with depth and age.
pub async fn dlqs(c: Page) -> Response {
    let nav = "dlqs";
    let list = page!(c, nav, c.get("/v1/dlqs").await);
    let jobs = c.get("/v1/jobs").await.unwrap_or(json!([]));
    c.render(
        "dlqs.html",
        "Dead-letter queues",
        nav,
        context! { dlqs => Tv::from_serialize(&list), jobs => Tv::from_serialize(&jobs) },
    )
}

#[derive(Deserialize, Default)]
pub struct DlqQuery {
    #[serde(default)]
    all: bool,
}

/// `/ui/dlqs/{topic}`: SQS's redrive page — depth, the records with origin and reason,
/// requeue all or selected, discard, and the jobs with progress and cancel.
pub async fn dlq(c: Page, Path(topic): Path<String>, Query(q): Query<DlqQuery>) -> Response {
    let nav = "dlqs";
    let list = page!(c, nav, c.get("/v1/dlqs").await);
    let Some(row) = list
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|d| d["topic"].as_str() == Some(topic.as_str()))
        })
        .cloned()
    else {
        return c.failed(
            nav,
            Failure::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("{topic} is not a dead-letter topic"),
            ),
        );
    };
    let path = format!(
        "/v1/dlqs/{}/records?limit=200{}",
        seg(&topic),
        if q.all { "&all=true" } else { "" }
    );
    let records = page!(c, nav, c.get(&path).await);
    let jobs = c.get("/v1/jobs").await.unwrap_or(json!([]));
    let jobs: Vec<&Value> = jobs
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|j| j["topic"].as_str() == Some(topic.as_str()))
                .collect()
        })
        .unwrap_or_default();
    c.render(
        "dlq.html",
        &topic,
        nav,
        context! {
            dlq => Tv::from_serialize(&row),
            records => Tv::from_serialize(&records),
            jobs => Tv::from_serialize(&jobs),
            all => q.all,
        },
    )
}

/// `/ui/schemas`: subjects with their latest version.
pub async fn schemas(c: Page) -> Response {
    let nav = "schemas";
    let subjects = page!(c, nav, c.get("/subjects").await);
    let all: Vec<&str> = subjects
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // One lookup per subject shown: the page shows a bounded number.
    let mut rows = Vec::new();
    for s in all.iter().copied().take(CONSOLE_MAX_SUBJECTS) {
        let latest = c
            .get(&format!("/subjects/{}/versions/latest", seg(s)))
            .await
            .unwrap_or(Value::Null);
        rows.push(json!({
            "subject": s,
            "version": latest["version"],
            "id": latest["id"],
            "type": latest["schemaType"].as_str().unwrap_or("AVRO"),
        }));
    }
    let config = c.get("/config").await.unwrap_or(Value::Null);
    c.render(
        "schemas.html",
        "Schema registry",
        nav,
        context! {
            subjects => Tv::from_serialize(&rows),
            total => all.len(),
            config => Tv::from_serialize(&config),
        },
    )
}

#[derive(Deserialize, Default)]
pub struct SubjectQuery {
    version: Option<String>,
    /// Diff `version` against this one.
    against: Option<String>,
}

/// `/ui/schemas/{subject}`: versions, one version's schema, a diff between two versions, and
/// the compatibility check.
pub async fn subject(
    c: Page,
    Path(subject): Path<String>,
    Query(q): Query<SubjectQuery>,
) -> Response {
    let nav = "schemas";
    let s = seg(&subject);
    let versions = page!(c, nav, c.get(&format!("/subjects/{s}/versions")).await);
    let version = q
        .version
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or("latest");
    let shown = page!(
        c,
        nav,
        c.get(&format!("/subjects/{s}/versions/{}", seg(version)))
            .await
    );
    let config = c
        .get(&format!("/config/{s}?defaultToGlobal=true"))
        .await
        .unwrap_or(Value::Null);
    let mut diff = None;
    if let Some(other) = q.against.as_deref().filter(|v| !v.is_empty()) {
        let base = page!(
            c,
            nav,
            c.get(&format!("/subjects/{s}/versions/{}", seg(other)))
                .await
        );
        diff = Some(schema_diff(
            &filters::pretty(Tv::from(base["schema"].as_str().unwrap_or_default())),
            &filters::pretty(Tv::from(shown["schema"].as_str().unwrap_or_default())),
        ));
    }
    c.render(
        "subject.html",
        &subject,
        nav,
        context! {
            subject => subject,
            versions => Tv::from_serialize(&versions),
            shown => Tv::from_serialize(&shown),
            against => q.against,
            diff => Tv::from_serialize(&diff),
            config => Tv::from_serialize(&config),
        },
    )
}

/// A line diff: `[{"tag": "equal"|"delete"|"insert", "line": …}]`.
fn schema_diff(old: &str, new: &str) -> Vec<Value> {
    // A deadline bounds the work a page view can ask for (schemas may be megabytes); past it
    // the diff is coarser, never wrong.
    similar::TextDiff::configure()
        .timeout(std::time::Duration::from_millis(CONSOLE_DIFF_TIMEOUT_MS))
        .diff_lines(old, new)
        .iter_all_changes()
        .map(|change| {
            let tag = match change.tag() {
                similar::ChangeTag::Equal => "equal",
                similar::ChangeTag::Delete => "delete",
                similar::ChangeTag::Insert => "insert",
            };
            json!({"tag": tag, "line": change.value().trim_end_matches('\n')})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_by_line() {
        let d = schema_diff("a\nb\n", "a\nc\n");
        let tags: Vec<&str> = d.iter().filter_map(|c| c["tag"].as_str()).collect();
        assert_eq!(tags, ["equal", "delete", "insert"]);
    }
}
