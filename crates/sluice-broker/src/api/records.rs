//! `POST /v1/topics/{topic}/records` (produce) and
//! `GET /v1/topics/{topic}/partitions/{partition}/records` (consume by offset or time).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_client::client::EARLIEST;
use sluice_client::records::{partition_for_key, ProduceRecord};
use sluice_client::Compression;

use super::{encode, Api, ApiError, ApiJson, ApiPath, ApiQuery, Encoding};
use crate::limits::{
    API_CONSUME_DEFAULT_RECORDS, MAX_API_CONSUME_BYTES, MAX_API_CONSUME_RECORDS,
    MAX_API_PRODUCE_RECORDS, MAX_FETCH_WAIT_MS,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// Absent: by key hash (Kafka's default partitioner), or one partition for the request's
    /// records without a key.
    partition: Option<i32>,
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Produce {
    records: Vec<NewRecord>,
    /// How keys, values and header values are written (`utf8`, the default, or `base64`).
    #[serde(default)]
    encoding: Encoding,
}

/// Where records without a key and partition go: one partition per request, the next each
/// time (librdkafka's sticky partitioner, per request).
static NEXT_PARTITION: AtomicU32 = AtomicU32::new(0);

/// The partition for the next request's records without a key or partition.
pub fn next_partition(count: i32) -> i32 {
    let n = NEXT_PARTITION.fetch_add(1, Ordering::Relaxed);
    (n % count.max(1).unsigned_abs()) as i32
}

pub async fn produce(
    State(api): State<Arc<Api>>,
    ApiPath(topic): ApiPath<String>,
    ApiJson(req): ApiJson<Produce>,
) -> Result<Json<Value>, ApiError> {
    if req.records.is_empty() || req.records.len() > MAX_API_PRODUCE_RECORDS {
        return Err(ApiError::invalid(format!(
            "give 1 to {MAX_API_PRODUCE_RECORDS} records"
        )));
    }
    let enc = req.encoding;
    if req
        .records
        .iter()
        .any(|r| r.partition.is_some_and(|p| p < 0))
    {
        return Err(ApiError::invalid("a partition is 0 or more"));
    }
    let mut decoded = Vec::with_capacity(req.records.len());
    for r in req.records {
        let headers = r
            .headers
            .into_iter()
            .map(|h| Ok((h.name, h.value.map(|v| enc.decode(&v)).transpose()?)))
            .collect::<Result<Vec<(String, Option<Bytes>)>, ApiError>>()?;
        let record = ProduceRecord {
            key: r.key.map(|k| enc.decode(&k)).transpose()?,
            value: r.value.map(|v| enc.decode(&v)).transpose()?,
            headers,
        };
        decoded.push((r.partition, record));
    }
    let offsets = api
        .clients
        .with(move |c| {
            Box::pin(async move {
                let count = i32::try_from(c.topic(&topic).await?.partitions.len()).unwrap_or(0);
                if count == 0 {
                    return Err(sluice_client::Error::Invalid(format!(
                        "topic {topic} has no partitions"
                    )));
                }
                // Records by partition, in request order; then one batch per partition.
                let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
                for (i, (partition, r)) in decoded.iter().enumerate() {
                    let p = match (partition, &r.key) {
                        (Some(p), _) => *p,
                        (None, Some(k)) => partition_for_key(k, count),
                        (None, None) => next_partition(count),
                    };
                    by_partition.entry(p).or_default().push(i);
                }
                if let Some(p) = by_partition.keys().find(|p| **p >= count) {
                    return Err(unknown_partition(&topic, count as usize, *p));
                }
                let mut offsets = vec![(0, 0i64); decoded.len()];
                let now = crate::broker::now_ms();
                for (p, indexes) in by_partition {
                    let batch: Vec<ProduceRecord> =
                        indexes.iter().map(|i| decoded[*i].1.clone()).collect();
                    let base = c.produce(&topic, p, &batch, Compression::None, now).await?;
                    for (n, i) in indexes.iter().enumerate() {
                        offsets[*i] = (p, base.saturating_add(n as i64));
                    }
                }
                Ok(offsets)
            })
        })
        .await?;
    let offsets: Vec<Value> = offsets
        .into_iter()
        .map(|(p, o)| json!({"partition": p, "offset": o}))
        .collect();
    Ok(Json(json!({ "offsets": offsets })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeQuery {
    /// The first offset (default: the log start).
    offset: Option<i64>,
    /// Instead of `offset`: the first record at or after this time (ms since the epoch).
    timestamp: Option<i64>,
    max_records: Option<usize>,
    max_bytes: Option<i32>,
    /// How long to wait for records when there are none yet (default 0).
    timeout_ms: Option<i32>,
    #[serde(default)]
    encoding: Encoding,
}

pub async fn consume(
    State(api): State<Arc<Api>>,
    ApiPath((topic, partition)): ApiPath<(String, i32)>,
    ApiQuery(q): ApiQuery<ConsumeQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.offset.is_some() && q.timestamp.is_some() {
        return Err(ApiError::invalid("give offset or timestamp, not both"));
    }
    let max_records = q.max_records.unwrap_or(API_CONSUME_DEFAULT_RECORDS);
    if !(1..=MAX_API_CONSUME_RECORDS).contains(&max_records) {
        return Err(ApiError::invalid(format!(
            "max_records is 1 to {MAX_API_CONSUME_RECORDS}"
        )));
    }
    let max_bytes = q.max_bytes.unwrap_or(MAX_API_CONSUME_BYTES);
    if !(1..=MAX_API_CONSUME_BYTES).contains(&max_bytes) {
        return Err(ApiError::invalid(format!(
            "max_bytes is 1 to {MAX_API_CONSUME_BYTES}"
        )));
    }
    let wait = q.timeout_ms.unwrap_or(0);
    if !(0..=MAX_FETCH_WAIT_MS).contains(&wait) {
        return Err(ApiError::invalid(format!(
            "timeout_ms is 0 to {MAX_FETCH_WAIT_MS}"
        )));
    }
    if partition < 0 {
        return Err(ApiError::invalid("partition is 0 or more"));
    }
    if q.offset.is_some_and(|o| o < 0) || q.timestamp.is_some_and(|t| t < 0) {
        return Err(ApiError::invalid("offset and timestamp are 0 or more"));
    }
    let (t, p) = (topic.clone(), partition);
    let fetched = api
        .clients
        .with(move |c| {
            Box::pin(async move {
                let count = c.topic(&t).await?.partitions.len();
                if usize::try_from(p).map_or(true, |p| p >= count) {
                    return Err(unknown_partition(&t, count, p));
                }
                let start = match (q.offset, q.timestamp) {
                    (Some(o), _) => o,
                    (None, at) => {
                        let when = at.unwrap_or(EARLIEST);
                        let found = c.list_offsets(&t, &[p], when).await?;
                        match found.get(&p) {
                            Some((o, _)) if *o >= 0 => *o,
                            // No record at or after that time: the log end.
                            _ => c.offset_bounds(&t, &[p]).await?.get(&p).map_or(0, |b| b.1),
                        }
                    }
                };
                let wait = Duration::from_millis(wait.unsigned_abs().into());
                let parts = c.fetch(&[(t.clone(), p, start)], wait, max_bytes).await?;
                Ok((start, parts))
            })
        })
        .await?;
    let (start, parts) = fetched;
    let part = parts
        .into_iter()
        .find(|f| f.partition == partition)
        .ok_or_else(|| ApiError::new(50001, "the broker did not answer for the partition"))?;
    sluice_client::error::check(part.error_code, None, || {
        format!("fetch {topic}-{partition} at {start}")
    })?;
    let records: Vec<Value> = part
        .records
        .iter()
        .take(max_records)
        .map(|r| record_json(r, q.encoding))
        .collect();
    let next = part
        .records
        .iter()
        .take(max_records)
        .last()
        .map_or(start, |r| r.offset + 1);
    Ok(Json(json!({
        "topic": topic,
        "partition": partition,
        "records": records,
        "next_offset": next,
        "log_start_offset": part.log_start_offset,
        "high_watermark": part.high_watermark,
    })))
}

/// UNKNOWN_TOPIC_OR_PARTITION for a partition the topic does not have.
pub(super) fn unknown_partition(topic: &str, count: usize, partition: i32) -> sluice_client::Error {
    sluice_client::Error::Kafka {
        context: format!("topic {topic} has {count} partitions, not partition {partition}"),
        code: 3,
        name: "UNKNOWN_TOPIC_OR_PARTITION".into(),
        message: None,
    }
}

/// One record as JSON: key, value and header values in one encoding (UTF-8 when asked and
/// every part is text, else base64).
pub(super) fn record_json(r: &sluice_client::Record, wanted: Encoding) -> Value {
    let texts = |enc: Encoding| {
        let one = |b: &Option<Bytes>| b.as_ref().map(|b| encode(b, enc));
        let key = one(&r.key);
        let value = one(&r.value);
        let headers: Vec<(String, Option<(String, Encoding)>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), one(v)))
            .collect();
        (key, value, headers)
    };
    let (mut key, mut value, mut headers) = texts(wanted);
    let all_text = key
        .iter()
        .chain(&value)
        .chain(headers.iter().filter_map(|h| h.1.as_ref()))
        .all(|(_, e)| *e == wanted);
    let enc = if all_text { wanted } else { Encoding::Base64 };
    if !all_text {
        (key, value, headers) = texts(Encoding::Base64);
    }
    let headers: Vec<Value> = headers
        .into_iter()
        .map(|(name, v)| json!({"name": name, "value": v.map(|v| v.0)}))
        .collect();
    json!({
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": key.map(|k| k.0),
        "value": value.map(|v| v.0),
        "headers": headers,
        "encoding": enc.name(),
    })
}
