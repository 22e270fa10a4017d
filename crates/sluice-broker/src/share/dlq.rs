//! Dead letters (KIP-1191, on by default in Sluice): a record that is rejected, or reaches the
//! delivery-count limit, is copied to its group's DLQ topic *before* it is archived.
//!
//! The share-partition keeps such records in a pending state (not available, window start
//! held) and hands them out once; [`run_writer`] copies them — key, value, headers and
//! timestamp, plus headers naming the origin — appends them to the DLQ topic (created on
//! demand, one partition) on the leader of its partition (this node, or another over the
//! cluster RPC service 4, `remote.rs`), committed as acks=all (fsynced; under replication the
//! in-sync replicas have them), and only then marks them archived, durably. The queue to the
//! writer is bounded and filled with `try_send`: when it is full the records stay pending and
//! the timer offers them again, so a slow DLQ never blocks acknowledgements.
//!
//! Redrive state (`sluice dlq requeue|discard`) is kept as the committed offset of the
//! consumer group [`DLQ_TOOL_GROUP`] on each DLQ partition, with the handled offsets above it
//! in the commit's metadata ([`sluice_share::HandledOffsets`]); the depth metric reads it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sluice_share::{DeadLetter, DeadLetterReason, HandledOffsets, DLQ_TOOL_GROUP};
use tokio::sync::watch;

use super::DlqJob;
use crate::broker::{now_ms, Broker};
use crate::coordinator::CoordinatorLog;
use crate::error::KafkaError;
use crate::group_config::DLQ_PREFIX;
use crate::metrics::GroupTopicLabels;
use crate::record_codec::{self, RawRecord};
use crate::replica_manager::{Replica, NO_LEADER_EPOCH};
use crate::topic_config::TopicConfigs;
use kafka_protocol::error::ResponseError;

pub use sluice_share::dlq::{
    H_DELIVERY_COUNT, H_GROUP, H_OFFSET, H_PARTITION, H_REASON, H_TIMESTAMP, H_TOPIC,
};

fn reason_text(r: DeadLetterReason) -> &'static str {
    match r {
        DeadLetterReason::Rejected => "rejected",
        DeadLetterReason::DeliveryLimit => "delivery_limit",
    }
}

/// Reads the stored records from `first` to `last` (inclusive), decoded with every header.
/// Records retention already removed are simply absent. Each batch is decompressed under `cap`
/// (the origin topic's `max.message.bytes`); a batch that cannot be read within it (a
/// decompression bomb, a broken frame) is skipped with an error logged: its records are
/// absent too, so they are archived without a copy instead of being retried forever.
pub fn read_records(
    log: &Replica,
    first: i64,
    last: i64,
    cap: usize,
) -> Result<Vec<RawRecord>, KafkaError> {
    let mut out = Vec::new();
    visit_records(log, first, last, cap, |r| out.push(r))?;
    Ok(out)
}

/// [`read_records`] one record at a time: memory stays one read (1 MiB) and one batch.
fn visit_records(
    log: &Replica,
    first: i64,
    last: i64,
    cap: usize,
    mut visit: impl FnMut(RawRecord),
) -> Result<(), KafkaError> {
    let mut next = first.max(log.watermarks().log_start_offset);
    let mut records = Vec::new();
    while next <= last {
        let (slice, _) = log.read_as_leader(NO_LEADER_EPOCH, next, 1 << 20)?;
        let Some(slice) = slice? else { break };
        let bytes = slice.load()?;
        let before = next;
        for (at, h) in sluice_storage::BatchIter::new(&bytes) {
            next = next.max(h.next_offset());
            if h.next_offset() <= first || h.base_offset > last {
                continue;
            }
            let batch = bytes.get(at..).unwrap_or_default();
            records.clear();
            if let Err(e) = record_codec::decode_batch(batch, &h, cap, &mut records) {
                tracing::error!(base_offset = h.base_offset, error = %e, "stored batch cannot be read for dead-lettering; its records are archived without a copy");
                continue;
            }
            for r in records.drain(..) {
                if (first..=last).contains(&r.offset) {
                    visit(r);
                }
            }
        }
        if next == before {
            break;
        }
    }
    Ok(())
}

/// Where dead letters came from: the group that dead-lettered them and their origin partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LetterOrigin {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// Of `offsets` (dead letters of `origin` that may have been copied already:
/// [`DeadLetter::maybe_copied`]), those whose copy is already in the DLQ partition
/// `topic`-`partition`, which this node leads. The leader that dead-lettered them may have
/// copied them and died (or moved) before recording their archive, or a write may have ended
/// without an answer; copying them again would put two letters in the DLQ.
/// Waits until everything appended to the DLQ partition is committed, so a copy still in flight
/// counts once it can no longer be truncated, then reads its last
/// [`limits::DLQ_DEDUP_SCAN_RECORDS`](crate::limits::DLQ_DEDUP_SCAN_RECORDS) records.
pub async fn present_local(
    broker: &Broker,
    topic: &str,
    partition: i32,
    origin: &LetterOrigin,
    offsets: &[i64],
) -> Result<Vec<i64>, KafkaError> {
    let log = leading(broker, topic, partition)?;
    let w = log.replica().watermarks();
    log.commit(w.log_end_offset).await?;
    let wanted: std::collections::HashSet<i64> = offsets.iter().copied().collect();
    let first = w
        .log_end_offset
        .saturating_sub(crate::limits::DLQ_DEDUP_SCAN_RECORDS);
    let cap = broker
        .metadata
        .topic(topic)
        .map_or(crate::limits::MAX_DECOMPRESSED_BYTES, |t| {
            t.configs.decompression_cap()
        });
    let partition_text = origin.partition.to_string();
    let mut found = Vec::new();
    let log = log.replica().clone();
    visit_records(&log, first, w.log_end_offset - 1, cap, |r| {
        let header = |name: &str| {
            r.headers
                .iter()
                .rev()
                .find(|(k, _)| k.as_ref() == name.as_bytes())
                .and_then(|(_, v)| v.as_deref())
        };
        let from_origin = header(H_GROUP) == Some(origin.group.as_bytes())
            && header(H_TOPIC) == Some(origin.topic.as_bytes())
            && header(H_PARTITION) == Some(partition_text.as_bytes());
        if let Some(offset) = header(H_OFFSET)
            .filter(|_| from_origin)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|o| wanted.contains(o))
        {
            found.push(offset);
        }
    })?;
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// [`present_local`] on the DLQ partition's leader: this node, or another over the cluster RPC.
async fn present(
    broker: &Broker,
    topic: &str,
    partition: i32,
    origin: &LetterOrigin,
    offsets: &[i64],
) -> Result<Vec<i64>, KafkaError> {
    let leader = broker.metadata.leader_of(topic, partition)?;
    if leader == broker.config.node_id {
        present_local(broker, topic, partition, origin, offsets).await
    } else {
        super::remote::dead_letters_present(broker, leader, topic, partition, origin, offsets).await
    }
}

fn text(v: impl ToString) -> Option<Bytes> {
    Some(Bytes::from(v.to_string()))
}

/// The dead-letter copy of `record`: its key, value, timestamp and headers (an earlier
/// dead-lettering's `__dlq.errors.*` headers give way to this one's), plus the origin headers.
fn dead_letter_record(
    record: &RawRecord,
    letter: &DeadLetter,
    topic: &str,
    partition: i32,
    group: &str,
    now: i64,
) -> RawRecord {
    let mut headers: Vec<(Bytes, Option<Bytes>)> = record
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(b"__dlq.errors."))
        .cloned()
        .collect();
    for (k, v) in [
        (H_TOPIC, text(topic)),
        (H_PARTITION, text(partition)),
        (H_OFFSET, text(letter.offset)),
        (H_GROUP, text(group)),
        (H_DELIVERY_COUNT, text(letter.delivery_count)),
        (H_REASON, text(reason_text(letter.reason))),
        (H_TIMESTAMP, text(now)),
    ] {
        headers.push((Bytes::from_static(k.as_bytes()), v));
    }
    RawRecord {
        offset: 0,
        timestamp: record.timestamp,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }
}

/// The DLQ topic's partition for dead letters from `origin_partition` (the topic is created
/// on first use).
async fn dlq_partition(
    broker: &Broker,
    topic: &str,
    origin_partition: i32,
) -> Result<i32, KafkaError> {
    let t = match broker.metadata.topic(topic) {
        Some(t) => t,
        None => match broker
            .metadata
            .create_topic(topic, 1, TopicConfigs::default(), false, now_ms())
            .await
        {
            Ok(t) => {
                tracing::info!(topic, "created dead-letter topic");
                broker
                    .metrics
                    .partitions
                    .set(broker.metadata.partition_count() as i64);
                t
            }
            // Created by someone else meanwhile.
            Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                broker.metadata.topic(topic).ok_or(e)?
            }
            Err(e) => return Err(e),
        },
    };
    let n = t.partition_count.max(1);
    Ok(origin_partition.max(0) % n)
}

/// Errors a retry cannot cure: the DLQ topic refuses this record for good.
fn is_permanent(e: &KafkaError) -> bool {
    [
        ResponseError::MessageTooLarge,
        ResponseError::RecordListTooLarge,
        ResponseError::InvalidRecord,
        ResponseError::InvalidTopicException,
        ResponseError::InvalidTimestamp,
        ResponseError::CorruptMessage,
    ]
    .iter()
    .any(|r| r.code() == e.code)
}

/// The writer of a DLQ partition this node leads (else NOT_LEADER_OR_FOLLOWER): its appends and
/// reads wait for the in-sync replicas as a coordinator's do.
fn leading(broker: &Broker, topic: &str, partition: i32) -> Result<CoordinatorLog, KafkaError> {
    CoordinatorLog::leading(
        broker.replica(topic, partition)?,
        broker.config.flush == crate::config::FlushPolicy::Always,
        broker.data_appended.clone(),
        &format!("{topic}-{partition}"),
    )
}

/// Errors of [`append_local`]'s checks before it appends (so nothing was written): the
/// errors of its wait for the in-sync replicas, and of the RPC, are coordinator errors
/// (`coordinator::coordinator_error`), whose write may or may not have happened.
fn not_appended(e: &KafkaError) -> bool {
    [
        ResponseError::NotLeaderOrFollower,
        ResponseError::NotEnoughReplicas,
        ResponseError::UnknownTopicOrPartition,
        ResponseError::LeaderNotAvailable,
    ]
    .iter()
    .any(|r| r.code() == e.code)
}

/// Appends dead letters to a DLQ partition this node leads and waits until they are committed
/// (fsynced whatever the flush policy; under replication the in-sync replicas have them, as
/// acks=all): the originals are archived once this returns, so a copy lost in a crash or a
/// failover would lose the record.
pub async fn append_local(
    broker: &Broker,
    topic: &str,
    partition: i32,
    batch: &[u8],
) -> Result<(), KafkaError> {
    let log = leading(broker, topic, partition)?;
    log.replica().check_acks_all()?;
    let appended = log.replica().append_as_leader(batch, now_ms(), None)?;
    broker.data_appended.notify_waiters();
    log.commit(appended.last_offset + 1).await
}

/// Dead letters to the DLQ partition's leader: this node, or another over the cluster RPC.
async fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: &[RawRecord],
) -> Result<(), KafkaError> {
    let batch = record_codec::encode(records);
    let leader = broker.metadata.leader_of(topic, partition)?;
    if leader == broker.config.node_id {
        append_local(broker, topic, partition, &batch).await
    } else {
        super::remote::dead_letters(broker, leader, topic, partition, &batch).await
    }
}

/// What became of one job's dead letters.
#[derive(Default)]
struct Outcome {
    /// Written (or impossible to write: archived with an error logged).
    done: Vec<i64>,
    /// To be offered again later: not written.
    retry: Vec<i64>,
    /// To be offered again later: a write whose outcome is unknown (maybe copied).
    unknown: Vec<i64>,
}

/// Copies one job's records to the DLQ topic: all in one batch, and if that fails, one by one,
/// so one record the DLQ topic refuses for good (too large for it, say) neither blocks the
/// others nor the queue: it is archived without a copy, logged and counted.
async fn write(broker: &Broker, job: &DlqJob) -> Outcome {
    let h = &job.handle;
    let all: Vec<i64> = job.letters.iter().map(|l| l.offset).collect();
    if job.dlq_topic == h.topic {
        tracing::warn!(topic = %h.topic, group = %h.key.group, "a group's DLQ topic is the topic it reads; archiving without a copy");
        return Outcome {
            done: all,
            ..Outcome::default()
        };
    }
    let first = all.iter().copied().min().unwrap_or(0);
    let last = all.iter().copied().max().unwrap_or(-1);
    // A topic gone (or renamed away) still has its records read: the broker-wide bound applies.
    let cap = broker
        .metadata
        .topic(&h.topic)
        .map_or(crate::limits::MAX_DECOMPRESSED_BYTES, |t| {
            t.configs.decompression_cap()
        });
    let records = match read_records(&h.log, first, last, cap) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(topic = %h.topic, error = %e, "cannot read records to dead-letter; will retry");
            return Outcome {
                retry: all,
                ..Outcome::default()
            };
        }
    };
    let now = now_ms();
    let mut copies: Vec<(i64, RawRecord)> = Vec::new();
    let mut done = Vec::new();
    for l in &job.letters {
        match records.iter().find(|r| r.offset == l.offset) {
            Some(r) => copies.push((
                l.offset,
                dead_letter_record(r, l, &h.topic, h.key.partition, &h.key.group, now),
            )),
            // Deleted by retention meanwhile: nothing to copy.
            None => done.push(l.offset),
        }
    }
    if copies.is_empty() {
        return Outcome {
            done,
            ..Outcome::default()
        };
    }
    let target = match dlq_partition(broker, &job.dlq_topic, h.key.partition).await {
        Ok(t) => t,
        Err(e) if is_permanent(&e) => {
            tracing::error!(topic = %job.dlq_topic, group = %h.key.group, error = %e, "dead-letter topic cannot exist; archiving records without a copy");
            broker.metrics.dlq_failed.inc_by(copies.len() as u64);
            done.extend(copies.iter().map(|(o, _)| *o));
            return Outcome {
                done,
                ..Outcome::default()
            };
        }
        Err(e) => {
            tracing::warn!(topic = %job.dlq_topic, error = %e, "dead-letter topic unavailable; will retry");
            return Outcome {
                done,
                retry: copies.iter().map(|(o, _)| *o).collect(),
                ..Outcome::default()
            };
        }
    };
    // Letters that may have been copied already (restored while dead-lettering: by the leader
    // before; handed back after a write whose outcome is unknown): those in the DLQ are
    // archived without another copy.
    let suspects: Vec<i64> = job
        .letters
        .iter()
        .filter(|l| l.maybe_copied && copies.iter().any(|(o, _)| *o == l.offset))
        .map(|l| l.offset)
        .collect();
    if !suspects.is_empty() {
        let origin = LetterOrigin {
            group: h.key.group.to_string(),
            topic: h.topic.clone(),
            partition: h.key.partition,
        };
        match present(broker, &job.dlq_topic, target, &origin, &suspects).await {
            Ok(found) => {
                if !found.is_empty() {
                    broker.metrics.dlq_already_copied.inc_by(found.len() as u64);
                    tracing::info!(topic = %job.dlq_topic, origin = %h.topic, partition = h.key.partition, letters = found.len(), "dead letters already copied (before a failover or a failed write); archived without another copy");
                }
                copies.retain(|(o, _)| !found.contains(o));
                done.extend(found);
            }
            Err(e) => {
                tracing::warn!(topic = %job.dlq_topic, error = %e, "cannot look for earlier copies of dead letters; will retry");
                return Outcome {
                    done,
                    retry: copies.iter().map(|(o, _)| *o).collect(),
                    ..Outcome::default()
                };
            }
        }
        if copies.is_empty() {
            return Outcome {
                done,
                ..Outcome::default()
            };
        }
    }
    let labels = GroupTopicLabels {
        group: h.key.group.to_string(),
        topic: job.dlq_topic.clone(),
    };
    let batch: Vec<RawRecord> = copies.iter().map(|(_, r)| r.clone()).collect();
    match append(broker, &job.dlq_topic, target, &batch).await {
        Ok(()) => {
            broker
                .metrics
                .dlq_written
                .get_or_create(&labels)
                .inc_by(batch.len() as u64);
            done.extend(copies.iter().map(|(o, _)| *o));
            broker.data_appended.notify_waiters();
            return Outcome {
                done,
                ..Outcome::default()
            };
        }
        Err(e) if not_appended(&e) => {
            tracing::warn!(topic = %job.dlq_topic, letters = batch.len(), error = %e, "dead-letter write refused; will retry");
            return Outcome {
                done,
                retry: copies.iter().map(|(o, _)| *o).collect(),
                ..Outcome::default()
            };
        }
        // Appended or not, nobody knows (a timeout, a lost leader, a lost connection): retried
        // later as maybe copied, so the retry looks for the copy first.
        Err(e) if !is_permanent(&e) => {
            tracing::warn!(topic = %job.dlq_topic, letters = batch.len(), error = %e, "dead-letter write failed; will retry");
            return Outcome {
                done,
                unknown: copies.iter().map(|(o, _)| *o).collect(),
                ..Outcome::default()
            };
        }
        // Refused, so nothing was appended: one by one, to find the records refused for good.
        Err(_) => {}
    }
    let mut outcome = Outcome {
        done,
        ..Outcome::default()
    };
    for (offset, record) in copies {
        match append(
            broker,
            &job.dlq_topic,
            target,
            std::slice::from_ref(&record),
        )
        .await
        {
            Ok(()) => {
                broker.metrics.dlq_written.get_or_create(&labels).inc();
                outcome.done.push(offset);
            }
            Err(e) if is_permanent(&e) => {
                tracing::error!(topic = %job.dlq_topic, origin = %h.topic, offset, error = %e, "the DLQ topic refuses this dead letter; archiving it without a copy");
                broker.metrics.dlq_failed.inc();
                outcome.done.push(offset);
            }
            Err(e) if not_appended(&e) => outcome.retry.push(offset),
            Err(e) => {
                tracing::warn!(topic = %job.dlq_topic, offset, error = %e, "dead-letter write failed; will retry");
                outcome.unknown.push(offset);
            }
        }
    }
    broker.data_appended.notify_waiters();
    outcome
}

/// The writer task: one job at a time. Written records are archived (durably); the rest go
/// back to pending and are offered again by the next timer pass.
pub async fn run_writer(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let Some(mut rx) = broker.share.take_dlq_receiver() else {
        return;
    };
    loop {
        let job = tokio::select! {
            _ = stop.changed() => return,
            job = rx.recv() => match job { Some(j) => j, None => return },
        };
        // The change that dead-lettered these records is durable before they are copied.
        if let Err(e) = broker.share.settled(&job.handle).await {
            tracing::error!(error = %e, "cannot record share state; dead letters wait");
            let offsets: Vec<i64> = job.letters.iter().map(|l| l.offset).collect();
            let _ = job.handle.change(&broker.share.store, |sp| {
                sp.retry_dead_letters(&offsets, false);
                ((), false)
            });
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        let outcome = write(&broker, &job).await;
        let recorded = job.handle.change(&broker.share.store, |sp| {
            sp.retry_dead_letters(&outcome.retry, false);
            sp.retry_dead_letters(&outcome.unknown, true);
            sp.dead_lettered(&outcome.done);
            ((), !outcome.done.is_empty())
        });
        match recorded {
            Ok(((), Some(end))) => {
                if let Err(e) = broker.share.store.durable(end).await {
                    tracing::error!(error = %e, "cannot record share state");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot record share state"),
        }
        if !outcome.done.is_empty() {
            broker.share.available.notify_waiters();
        }
        if !outcome.retry.is_empty() || !outcome.unknown.is_empty() {
            // Back off a little so a broken DLQ does not spin.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// Every DLQ topic: topics named `dlq.*` and the topics groups configured.
pub fn dlq_topics(broker: &Broker) -> Vec<String> {
    let mut names: Vec<String> = broker
        .metadata
        .topics()
        .iter()
        .map(|t| t.name.clone())
        .filter(|n| n.starts_with(DLQ_PREFIX))
        .collect();
    for (group, configs) in broker.metadata.groups_with_configs() {
        if let Some(t) = configs.share_settings(&group).dlq_topic {
            if broker.metadata.topic(&t).is_some() && !names.contains(&t) {
                names.push(t);
            }
        }
    }
    names.sort();
    names
}

/// Dead letters not yet requeued or discarded, per DLQ topic.
/// One DLQ topic's depth (dead letters not yet requeued or discarded) and when its oldest
/// unhandled dead letter was dead-lettered, over the partitions this node hosts.
pub struct DlqState {
    pub topic: String,
    pub depth: i64,
    pub oldest_ms: Option<i64>,
}

/// When each DLQ partition's first unhandled dead letter was dead-lettered, by its offset: read
/// once per offset, not at every refresh.
pub type OldestCache = HashMap<(String, i32), (i64, Option<i64>)>;

pub fn states(broker: &Broker, cache: &mut OldestCache) -> Vec<DlqState> {
    let mut seen = std::collections::HashSet::new();
    let out = dlq_topics(broker)
        .into_iter()
        .filter_map(|name| {
            let topic = broker.metadata.topic(&name)?;
            let cap = topic.configs.decompression_cap();
            let mut state = DlqState {
                topic: name.clone(),
                depth: 0,
                oldest_ms: None,
            };
            for p in broker.replicas.of_topic(topic.id, topic.partition_count) {
                let marks = p.watermarks();
                let handled = broker
                    .offsets
                    .get(DLQ_TOOL_GROUP, &name, p.index())
                    .map(|c| HandledOffsets::decode(c.offset, c.metadata.as_deref()))
                    .unwrap_or_default();
                let depth = handled.unhandled_between(marks.log_start_offset, marks.high_watermark);
                state.depth = state.depth.saturating_add(depth);
                if depth == 0 {
                    continue;
                }
                let first = handled.next_unhandled(marks.log_start_offset);
                let key = (name.clone(), p.index());
                seen.insert(key.clone());
                let at = match cache.get(&key) {
                    Some((offset, at)) if *offset == first => *at,
                    _ => {
                        let at = dead_lettered_at(&p, first, cap);
                        cache.insert(key, (first, at));
                        at
                    }
                };
                state.oldest_ms = match (state.oldest_ms, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Some(state)
        })
        .collect();
    cache.retain(|k, _| seen.contains(k));
    out
}

/// When the dead letter at `offset` was dead-lettered: its `__dlq.errors.timestamp` header,
/// else its record timestamp.
fn dead_lettered_at(log: &Replica, offset: i64, cap: usize) -> Option<i64> {
    let mut at = None;
    if let Err(e) = visit_records(log, offset, offset, cap, |r| {
        let header = r
            .headers
            .iter()
            .find(|(k, _)| k.as_ref() == H_TIMESTAMP.as_bytes())
            .and_then(|(_, v)| v.as_ref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        at = header.or(Some(r.timestamp));
    }) {
        tracing::debug!(offset, error = %e, "cannot read a dead letter for the DLQ age metric");
    }
    at.filter(|t| *t >= 0)
}
