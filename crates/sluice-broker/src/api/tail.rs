//! `GET /v1/topics/{topic}/tail`: a live tail of a topic as Server-Sent Events (what a web
//! console's `EventSource` reads).
//!
//! Events, in order:
//! - `event: ready` once, first: `data` is `{"topic", "partitions": [{"partition", "offset"}]}`,
//!   where the tail starts on each partition (`retry: 1000` asks for a quick reconnect);
//! - `event: record` per record that passes the filters: `data` is the record as the consume
//!   endpoint shows it (`browse.rs`), plus `"partition"`;
//! - id-only events (no `data`, so `EventSource` dispatches nothing) after a poll that read
//!   records none of which matched, so a reconnect does not scan them again;
//! - `event: tail-error` when the tail cannot go on (the topic was deleted; its connection was
//!   lost, as when this node shuts down): `data` is `{"error_code", "message"}`, and the stream
//!   ends (an `EventSource` reconnects, with `Last-Event-ID`, after a lost connection);
//! - a keep-alive comment every 15 s of silence.
//!
//! Every event's `id` is the position of every partition of the tail after it:
//! `partition:offset` pairs joined by commas (`0:17,1:4`), the next offset to read of each. A
//! reconnect sends it back as `Last-Event-ID` and the tail goes on from exactly there
//! (partitions it does not name start as `from` says). The stream ends after
//! `API_TAIL_MAX_LIFETIME_MS`; an `EventSource` then reconnects the same way.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_client::client::{EARLIEST, LATEST};
use sluice_client::Client;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::browse::{record_view, Decode, DecodeBudget, Filter};
use super::records::unknown_partition;
use super::{error_code, Api, ApiError, ApiPath, ApiQuery, Encoding};
use crate::limits::{
    API_TAIL_BUFFERED_EVENTS, API_TAIL_KEEPALIVE_MS, API_TAIL_MAX_LIFETIME_MS, API_TAIL_POLL_BYTES,
    API_TAIL_POLL_WAIT_MS, API_TAIL_STALL_MS, MAX_API_TAILS, MAX_API_TAIL_PARTITIONS,
};
use crate::security::http::Caller;

/// Tails open on this node. Process-wide rather than in `Api`: one broker runs per process,
/// and a permit must outlive the handler, inside the response's stream.
static TAILS: Semaphore = Semaphore::const_new(MAX_API_TAILS);

/// OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_TOPIC_ID: i16 = 100;

/// Waits after a failed poll, doubling: a leader moving, a broker restarting.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where a tail starts on a partition the `Last-Event-ID` does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// The log end: only records produced from now on.
    #[default]
    End,
    /// The log start.
    Beginning,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// One partition; every partition of the topic when absent.
    partition: Option<i32>,
    #[serde(default)]
    from: Start,
    key_contains: Option<String>,
    value_contains: Option<String>,
    header: Option<String>,
    #[serde(default)]
    decode: Decode,
    #[serde(default)]
    encoding: Encoding,
}

pub async fn tail(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<Response, ApiError> {
    if q.partition.is_some_and(|p| p < 0) {
        return Err(ApiError::invalid("partition is 0 or more"));
    }
    let filter = Filter::parse(
        q.key_contains.as_deref(),
        q.value_contains.as_deref(),
        q.header.as_deref(),
    )?;
    let resume = match headers.get("last-event-id") {
        None => BTreeMap::new(),
        Some(v) => parse_positions(v.to_str().unwrap_or("\u{0}"))?,
    };
    let permit = TAILS.try_acquire().map_err(|_| {
        ApiError::new(
            42901,
            format!("{MAX_API_TAILS} tails are open on this node; close one or retry later"),
        )
    })?;
    // A client of its own rather than one from the pool: a tail polls without pause for up to
    // an hour, so holding a pooled client would take one of the `MAX_API_CLIENTS` from every
    // other API call for that long (four tails would halve the pool), and taking one per poll
    // would make tails and calls queue behind each other's long fetches. Tails are bounded
    // (`MAX_API_TAILS`), so their connections are too.
    let config = api.clients.config(&caller, "sluice-http-api-tail")?;
    let mut client = Client::connect(config).await?;
    let info = client.topic(&topic).await?;
    let partitions: Vec<i32> = match q.partition {
        Some(p) => {
            if !info.partitions.iter().any(|x| x.partition == p) {
                return Err(unknown_partition(&topic, info.partitions.len(), p).into());
            }
            vec![p]
        }
        None => info.partitions.iter().map(|x| x.partition).collect(),
    };
    if partitions.len() > MAX_API_TAIL_PARTITIONS {
        return Err(ApiError::invalid(format!(
            "topic {topic} has {} partitions; a tail follows at most {MAX_API_TAIL_PARTITIONS}: \
             give partition=",
            partitions.len()
        )));
    }
    let fresh: Vec<i32> = partitions
        .iter()
        .copied()
        .filter(|p| !resume.contains_key(p))
        .collect();
    let starts = if fresh.is_empty() {
        BTreeMap::new()
    } else {
        let at = match q.from {
            Start::End => LATEST,
            Start::Beginning => EARLIEST,
        };
        client.list_offsets(&topic, &fresh, at).await?
    };
    let positions: BTreeMap<i32, i64> = partitions
        .iter()
        .map(|p| {
            let at = resume
                .get(p)
                .copied()
                .or_else(|| starts.get(p).map(|x| x.0))
                .unwrap_or(0);
            (*p, at.max(0))
        })
        .collect();
    let ready: Vec<Value> = positions
        .iter()
        .map(|(p, o)| json!({"partition": p, "offset": o}))
        .collect();
    let mut tail = Tail {
        client,
        topic: topic.clone(),
        positions,
        filter,
        encoding: q.encoding,
        decode: q.decode,
        api: api.clone(),
        pending: VecDeque::new(),
        last_id: String::new(),
        deadline: Instant::now() + Duration::from_millis(API_TAIL_MAX_LIFETIME_MS),
        backoff: RETRY_BACKOFF_MIN,
        done: false,
        _permit: permit,
    };
    tail.last_id = tail.id();
    tail.pending.push_back(
        Event::default()
            .event("ready")
            .id(&tail.last_id)
            .retry(Duration::from_secs(1))
            .data(json!({"topic": topic, "partitions": ready}).to_string()),
    );
    // A task of its own owns the tail (its client and its permit) and hands events over a
    // small channel. It ends, freeing both, when the reader goes away, when the reader takes
    // nothing for API_TAIL_STALL_MS while events wait (a client that stops reading would
    // otherwise hold its slot with the socket full), or at the lifetime bound — whether or not
    // the body is being polled. A slow reader slows the polls: at most the channel's few
    // events are read ahead of it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(API_TAIL_BUFFERED_EVENTS);
    tokio::spawn(async move {
        let mut t = tail;
        let stall = Duration::from_millis(API_TAIL_STALL_MS);
        loop {
            if tx.is_closed() {
                return;
            }
            if let Some(ev) = t.pending.pop_front() {
                if tx.send_timeout(ev, stall).await.is_err() {
                    return;
                }
                continue;
            }
            if t.done || Instant::now() >= t.deadline {
                return;
            }
            t.poll().await;
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<Event, Infallible>(ev), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(API_TAIL_KEEPALIVE_MS)))
        .into_response())
}

/// A `Last-Event-ID`: `partition:offset` pairs joined by commas.
fn parse_positions(text: &str) -> Result<BTreeMap<i32, i64>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "Last-Event-ID is partition:offset pairs joined by commas (an id this endpoint sent)",
        )
    };
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (p, o) = pair.split_once(':').ok_or_else(bad)?;
        let p: i32 = p.trim().parse().map_err(|_| bad())?;
        let o: i64 = o.trim().parse().map_err(|_| bad())?;
        if p < 0 || o < 0 {
            return Err(bad());
        }
        out.insert(p, o);
        if out.len() > MAX_API_TAIL_PARTITIONS {
            return Err(bad());
        }
    }
    Ok(out)
}

/// One tail's state, owned by its response stream.
struct Tail {
    client: Client,
    topic: String,
    /// The next offset to read of each partition followed.
    positions: BTreeMap<i32, i64>,
    filter: Filter,
    encoding: Encoding,
    decode: Decode,
    api: Arc<Api>,
    /// Events of the last poll not yet taken by the response body.
    pending: VecDeque<Event>,
    /// The id of the last event queued.
    last_id: String,
    deadline: Instant,
    backoff: Duration,
    done: bool,
    _permit: SemaphorePermit<'static>,
}

impl Tail {
    /// The event id: every partition's position.
    fn id(&self) -> String {
        let mut id = String::with_capacity(self.positions.len() * 8);
        for (i, (p, o)) in self.positions.iter().enumerate() {
            if i > 0 {
                id.push(',');
            }
            id.push_str(&format!("{p}:{o}"));
        }
        id
    }

    /// Ends the stream with a `tail-error` event.
    fn fail(&mut self, code: u32, message: String) {
        self.pending.push_back(
            Event::default()
                .event("tail-error")
                .data(json!({"error_code": code, "message": message}).to_string()),
        );
        self.done = true;
    }

    /// Waits before the next poll after a failure, doubling the wait each time; never past
    /// the stream's end.
    async fn back_off(&mut self) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.backoff.min(left)).await;
        self.backoff = (self.backoff * 2).min(RETRY_BACKOFF_MAX);
    }

    /// One long fetch of every partition; queues the events it yields.
    async fn poll(&mut self) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_millis(API_TAIL_POLL_WAIT_MS));
        let positions: Vec<(String, i32, i64)> = self
            .positions
            .iter()
            .map(|(p, o)| (self.topic.clone(), *p, *o))
            .collect();
        let parts = match self
            .client
            .fetch(&positions, wait, API_TAIL_POLL_BYTES)
            .await
        {
            Ok(parts) => parts,
            Err(e) => {
                use sluice_client::Error as E;
                match e {
                    // The connection is gone: this node is shutting down (its Kafka listener
                    // closes connections at shutdown, and the HTTP server waits for this
                    // stream to end), or a leader did not answer. End the stream: an
                    // EventSource reconnects with Last-Event-ID and loses nothing, to this
                    // node once it is back.
                    e @ (E::Connect { .. } | E::Io { .. } | E::Timeout { .. }) => {
                        self.fail(error_code(&e), e.to_string())
                    }
                    // The metadata refresh before the fetch found no such topic: it was
                    // deleted (the broker answers a moving leader's partitions otherwise).
                    e if matches!(
                        e.kafka_code(),
                        Some(UNKNOWN_TOPIC_OR_PARTITION | UNKNOWN_TOPIC_ID)
                    ) =>
                    {
                        self.fail(error_code(&e), e.to_string())
                    }
                    e if e.is_retriable() => self.back_off().await,
                    e => self.fail(error_code(&e), e.to_string()),
                }
                return;
            }
        };
        let mut retry = false;
        let mut budget = DecodeBudget::new();
        for part in parts {
            if part.topic != self.topic || !self.positions.contains_key(&part.partition) {
                continue;
            }
            match part.error_code {
                0 => {
                    for r in &part.records {
                        self.positions.insert(part.partition, r.offset + 1);
                        if !self.filter.matches(r) {
                            continue;
                        }
                        let mut v = record_view(
                            r,
                            self.encoding,
                            self.decode,
                            &self.api.broker.registry,
                            &mut budget,
                        );
                        v["partition"] = json!(part.partition);
                        self.last_id = self.id();
                        self.pending.push_back(
                            Event::default()
                                .event("record")
                                .id(&self.last_id)
                                .data(v.to_string()),
                        );
                    }
                    // Past control records and compaction gaps at the end of the batches.
                    if let (Some(after), Some(at)) =
                        (part.next_offset, self.positions.get_mut(&part.partition))
                    {
                        *at = (*at).max(after);
                    }
                }
                OFFSET_OUT_OF_RANGE => {
                    // Retention deleted where the tail was (go on from the log start), or the
                    // log is shorter than the position (recreated: go on from its end).
                    let p = part.partition;
                    match self.client.offset_bounds(&self.topic, &[p]).await {
                        Ok(bounds) => {
                            if let (Some((start, end)), Some(at)) =
                                (bounds.get(&p).copied(), self.positions.get_mut(&p))
                            {
                                *at = if *at < start { start } else { end.max(0) };
                            }
                        }
                        Err(_) => retry = true,
                    }
                }
                UNKNOWN_TOPIC_OR_PARTITION | UNKNOWN_TOPIC_ID => {
                    // Also answered while a leader moves; the end only once the topic is gone.
                    match self.client.topic(&self.topic).await {
                        Err(e)
                            if matches!(
                                e.kafka_code(),
                                Some(UNKNOWN_TOPIC_OR_PARTITION | UNKNOWN_TOPIC_ID)
                            ) =>
                        {
                            self.fail(error_code(&e), e.to_string());
                            return;
                        }
                        _ => retry = true,
                    }
                }
                code => {
                    let err = sluice_client::error::check(code, None, || {
                        format!("fetch {}-{}", self.topic, part.partition)
                    });
                    match err {
                        Err(e) if !e.is_retriable() => {
                            self.fail(error_code(&e), e.to_string());
                            return;
                        }
                        _ => retry = true,
                    }
                }
            }
        }
        // Positions moved without a record to carry them: an id-only event records them in
        // the reader's `lastEventId`.
        let id = self.id();
        if id != self.last_id {
            self.last_id = id;
            self.pending.push_back(Event::default().id(&self.last_id));
        }
        if retry {
            self.back_off().await;
        } else {
            self.backoff = RETRY_BACKOFF_MIN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(
            parse_positions("0:17, 1:4,").unwrap(),
            BTreeMap::from([(0, 17), (1, 4)])
        );
        assert!(parse_positions("").unwrap().is_empty());
        for bad in ["0", "x:1", "0:-1", "-1:0", "0:1:2"] {
            assert!(parse_positions(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_API_TAIL_PARTITIONS)
            .map(|p| format!("{p}:0"))
            .collect();
        assert!(parse_positions(&many.join(",")).is_err());
    }
}
