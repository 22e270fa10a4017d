//! `POST /v1/topics/{topic}/records` (produce) and
//! `GET /v1/topics/{topic}/partitions/{partition}/records` (consume by offset or time, optionally
//! filtered and decoded: `browse.rs`).

use crate::security::http::Caller;
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

use super::browse::{record_size, record_view, Decode, DecodeBudget, Filter};
use super::{encode, Api, ApiError, ApiJson, ApiPath, ApiQuery, Encoding};
use crate::limits::{
    API_CONSUME_DEFAULT_RECORDS, MAX_API_CONSUME_BYTES, MAX_API_CONSUME_RECORDS,
    MAX_API_PRODUCE_RECORDS, MAX_API_SCANS, MAX_API_SCAN_BYTES, MAX_API_SCAN_MS,
    MAX_API_SCAN_RECORDS, MAX_FETCH_WAIT_MS,
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

/// Filtered scans running on this node (at most `MAX_API_SCANS`).
static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_API_SCANS);

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
    caller: Caller,
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
        .with(&caller, move |c| {
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
    /// Filters (`browse.rs`): with any of them the partition is scanned forward until
    /// `max_records` records match (or a scan bound is reached).
    key_contains: Option<String>,
    value_contains: Option<String>,
    header: Option<String>,
    #[serde(default)]
    decode: Decode,
}

pub async fn consume(
    State(api): State<Arc<Api>>,
    caller: Caller,
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
    let filter = Filter::parse(
        q.key_contains.as_deref(),
        q.value_contains.as_deref(),
        q.header.as_deref(),
    )?;
    let filtered = !filter.is_empty();
    // A filtered scan holds a pooled client for up to its wait plus MAX_API_SCAN_MS; fewer may
    // run at once than there are pooled clients, so scans never starve the rest of the API
    // (and the console, which renders from it).
    let _scan = if filtered {
        Some(SCANS.try_acquire().map_err(|_| {
            ApiError::new(
                42901,
                format!("{MAX_API_SCANS} filtered scans are running; try again shortly"),
            )
        })?)
    } else {
        None
    };
    let wait = Duration::from_millis(wait.unsigned_abs().into());
    let (t, p) = (topic.clone(), partition);
    let (offset, timestamp) = (q.offset, q.timestamp);
    let page = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move {
                let count = c.topic(&t).await?.partitions.len();
                if usize::try_from(p).map_or(true, |p| p >= count) {
                    return Err(unknown_partition(&t, count, p));
                }
                let start = match (offset, timestamp) {
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
                if filtered {
                    scan(c, &t, p, start, wait, max_records, max_bytes, &filter).await
                } else {
                    let part = fetch_one(c, &t, p, start, wait, max_bytes).await?;
                    let all = part.records.len();
                    let records: Vec<_> = part.records.into_iter().take(max_records).collect();
                    // Past the last record returned; when none was but the fetch read past
                    // transaction markers or a compaction gap, past those, so paging by
                    // `next_offset` never stands still.
                    let next = match records.last() {
                        Some(r) if records.len() < all => r.offset + 1,
                        Some(r) => part.next_offset.unwrap_or(r.offset + 1).max(r.offset + 1),
                        None => part.next_offset.unwrap_or(start).max(start),
                    };
                    Ok(Page {
                        records,
                        next,
                        scanned: None,
                        log_start: part.log_start_offset,
                        high_watermark: part.high_watermark,
                    })
                }
            })
        })
        .await?;
    // Decoding (`decode=registry`) is bounded by what is returned and by its own budget.
    let registry = &api.broker.registry;
    let mut budget = DecodeBudget::new();
    let records: Vec<Value> = page
        .records
        .iter()
        .map(|r| record_view(r, q.encoding, q.decode, registry, &mut budget))
        .collect();
    let mut out = json!({
        "topic": topic,
        "partition": partition,
        "records": records,
        "next_offset": page.next,
        "log_start_offset": page.log_start,
        "high_watermark": page.high_watermark,
    });
    if let Some(n) = page.scanned {
        out["scanned"] = json!(n);
    }
    Ok(Json(out))
}

/// What one consume read: the records to return, where to go on from, how many records a
/// filtered scan examined, and the partition's bounds as the last fetch saw them.
struct Page {
    records: Vec<sluice_client::Record>,
    next: i64,
    scanned: Option<u64>,
    log_start: i64,
    high_watermark: i64,
}

/// One Fetch of one partition, its error code turned into an error.
async fn fetch_one(
    c: &mut sluice_client::Client,
    topic: &str,
    partition: i32,
    offset: i64,
    wait: Duration,
    max_bytes: i32,
) -> Result<sluice_client::client::FetchedPartition, sluice_client::Error> {
    let parts = c
        .fetch(&[(topic.to_owned(), partition, offset)], wait, max_bytes)
        .await?;
    let part = parts
        .into_iter()
        .find(|f| f.partition == partition)
        .ok_or_else(|| {
            sluice_client::Error::Invalid("the broker did not answer for the partition".into())
        })?;
    sluice_client::error::check(part.error_code, None, || {
        format!("fetch {topic}-{partition} at {offset}")
    })?;
    Ok(part)
}

/// A filtered read: fetches forward from `start`, keeping the records that match, until
/// `max_records` match (or `max_bytes` of matches), the high watermark is reached, or a scan
/// bound (`MAX_API_SCAN_*`) is; only the first fetch waits (`timeout_ms`). `next` is the
/// offset after the last record examined (or after the last batch, when the batches ended in
/// control records or compaction gaps), so a client continues the scan from there.
#[allow(clippy::too_many_arguments)]
async fn scan(
    c: &mut sluice_client::Client,
    topic: &str,
    partition: i32,
    start: i64,
    first_wait: Duration,
    max_records: usize,
    max_bytes: i32,
    filter: &Filter,
) -> Result<Page, sluice_client::Error> {
    let deadline =
        tokio::time::Instant::now() + first_wait + Duration::from_millis(MAX_API_SCAN_MS);
    let byte_limit = u64::from(max_bytes.unsigned_abs());
    let mut page = Page {
        records: Vec::new(),
        next: start,
        scanned: Some(0),
        log_start: -1,
        high_watermark: -1,
    };
    let (mut scanned, mut scanned_bytes, mut matched_bytes) = (0u64, 0u64, 0u64);
    let mut wait = first_wait;
    'fetching: loop {
        let part = fetch_one(c, topic, partition, page.next, wait, max_bytes).await?;
        wait = Duration::ZERO;
        page.log_start = part.log_start_offset;
        page.high_watermark = part.high_watermark;
        for r in part.records {
            let size = record_size(&r);
            scanned += 1;
            scanned_bytes = scanned_bytes.saturating_add(size);
            page.next = r.offset + 1;
            if filter.matches(&r) {
                matched_bytes = matched_bytes.saturating_add(size);
                page.records.push(r);
                if page.records.len() >= max_records || matched_bytes >= byte_limit {
                    break 'fetching;
                }
            }
            if scanned_bytes >= MAX_API_SCAN_BYTES || scanned >= MAX_API_SCAN_RECORDS {
                break 'fetching;
            }
        }
        // Every record fetched was examined: go on after the batches (past control records
        // and compaction gaps, which leave no record to go on after).
        let Some(after) = part.next_offset else {
            break; // Nothing came: the end.
        };
        page.next = page.next.max(after);
        if page.next >= part.high_watermark || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    page.scanned = Some(scanned);
    Ok(page)
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
