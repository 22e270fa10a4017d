//! What ShareFetch / ShareAcknowledge and the HTTP queue API (`api/queue.rs`, through
//! `queue.rs`) do to share-partitions: take records (acquire, read the stored batches that hold
//! them, give back what did not fit, archive what must never be delivered) and apply
//! acknowledgements. One code path, so a record handed out over HTTP is locked, counted,
//! redelivered and dead-lettered exactly as one handed to a Kafka share consumer.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use sluice_share::{validate_ack_batches, AckType, AcquiredRange, MemberId};
use uuid::Uuid;

use super::{ack_error_code, ShareHandle, SpKey};
use crate::broker::Broker;
use crate::error::KafkaError;
use crate::group_config::ShareSettings;
use crate::groups::now_u64;
use crate::metrics::{AckLabels, GroupTopicLabels};
use crate::replica_manager::AbortedTxn;

/// Whether this node leads the partition (it keeps share-partitions only for those).
pub fn leads(broker: &Broker, topic_id: Uuid, partition: i32) -> bool {
    broker
        .replicas
        .get(crate::replica_manager::TopicIdPartition {
            topic_id,
            partition,
        })
        .is_some_and(|r| matches!(r.role(), crate::replica_manager::Role::Leader { .. }))
}

/// One partition's acknowledgement batches, as (first, last, types).
pub type AckBatches = Vec<(i64, i64, Vec<i8>)>;

/// Per (topic id, partition): error code and message.
pub type AckResults = BTreeMap<(Uuid, i32), (i16, Option<String>)>;

/// Applies acknowledgements to the share-partitions; returns per (topic id, partition) the
/// error code and message (0 = all applied). Waits until the new state is durable.
pub async fn apply_acks(
    broker: &Broker,
    group: &str,
    member: &MemberId,
    acks: Vec<((Uuid, i32), AckBatches)>,
    settings: &ShareSettings,
    allow_renew: bool,
) -> AckResults {
    let mut results = BTreeMap::new();
    let mut wait_for = None::<i64>;
    let mut touched = Vec::new();
    let now = now_u64();
    let mut any_released = false;
    for ((topic_id, partition), batches) in acks {
        let key = SpKey {
            group: Arc::from(group),
            topic_id,
            partition,
        };
        // Kafka's checks on the whole list first (ascending, no overlap): a refused list
        // applies nothing, and an accepted one touches each in-flight offset at most once.
        let valid = validate_ack_batches(batches.iter().map(|(f, l, t)| (*f, *l, t.as_slice())));
        let outcome = match (broker.share.get(&key), valid) {
            (None, _) if broker.metadata.topic_by_id(topic_id).is_none() => Err(KafkaError::new(
                ResponseError::UnknownTopicId,
                format!("no topic with id {topic_id}"),
            )),
            (_, Err(e)) => Err(KafkaError::new(
                ResponseError::InvalidRequest,
                e.message().to_string(),
            )),
            // The partition is led elsewhere (or moved): the client finds its new leader.
            (None, Ok(())) if !leads(broker, topic_id, partition) => Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                "this broker does not lead the partition",
            )),
            (None, Ok(())) => Err(KafkaError::new(
                ResponseError::InvalidRecordState,
                "no records of this partition were acquired by the group",
            )),
            (Some(h), Ok(())) => {
                touched.push(h.clone());
                let changed = h.change(&broker.share.store, |sp| {
                    let mut first_error = None;
                    let mut counts = [0u64; 5];
                    for (first, last, types) in &batches {
                        if !allow_renew && types.contains(&(AckType::Renew as i8)) {
                            first_error.get_or_insert((
                                ResponseError::InvalidRequest.code(),
                                "acknowledge type 4 (renew) needs ShareFetch v2".to_string(),
                            ));
                            continue;
                        }
                        match sp.acknowledge(member, *first, *last, types, now, &settings.share) {
                            Ok(()) => {
                                let kind = |t: i8| usize::try_from(t).unwrap_or(0).min(4);
                                if let [t] = types.as_slice() {
                                    counts[kind(*t)] += (last - first + 1).max(0) as u64;
                                } else {
                                    for t in types {
                                        counts[kind(*t)] += 1;
                                    }
                                }
                            }
                            Err(e) => {
                                first_error.get_or_insert(ack_error_code(&e));
                            }
                        }
                    }
                    let letters = sp.take_dead_letters();
                    ((first_error, counts, letters), true)
                });
                match changed {
                    Ok(((first_error, counts, letters), end)) => {
                        if let Some(end) = end {
                            wait_for = Some(wait_for.map_or(end, |w| w.max(end)));
                        }
                        for (kind, n) in ["gap", "accept", "release", "reject", "renew"]
                            .into_iter()
                            .zip(counts)
                        {
                            if n > 0 {
                                any_released |= kind == "release";
                                broker
                                    .metrics
                                    .share_acks
                                    .get_or_create(&AckLabels {
                                        group: group.to_string(),
                                        kind,
                                    })
                                    .inc_by(n);
                            }
                        }
                        broker.share.dispatch_dead_letters(&h, letters, settings);
                        Ok(first_error)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        results.insert(
            (topic_id, partition),
            match outcome {
                Ok(None) => (0, None),
                Ok(Some((code, msg))) => (code, Some(msg)),
                Err(e) => (e.code, Some(e.message)),
            },
        );
    }
    if let Some(end) = wait_for {
        if let Err(e) = broker.share.store.durable(end).await {
            for r in results.values_mut() {
                *r = (e.code, Some(e.message.clone()));
            }
        }
        // A share-partition whose write failed (fenced, coordinator unreachable) applied
        // nothing durably: its acknowledgements fail.
        for h in touched {
            if let Err(e) = h.check_current() {
                results.insert((h.key.topic_id, h.key.partition), (e.code, Some(e.message)));
            }
        }
    }
    if any_released {
        broker.share.available.notify_waiters();
    }
    results
}

/// First read of a share fetch: enough for a few small batches; later reads are sized from
/// the bytes per offset seen so far.
const FIRST_READ_BYTES: usize = 16 << 10;
const MAX_READ_BYTES: usize = 8 << 20;

/// What a share group must never be handed: transaction markers (control batches) always,
/// and under read_committed the batches of aborted transactions (`aborted`: the partition's
/// aborted transactions overlapping the acquired offsets). A producer has at most one open
/// transaction per partition, so its transactional batch between an aborted transaction's
/// first offset and its ABORT marker belongs to that transaction.
fn never_delivered(h: &sluice_storage::BatchHeader, aborted: &[AbortedTxn]) -> bool {
    h.is_control()
        || (h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.base_offset <= a.last_offset
            }))
}

/// The stored batches holding acquired records, as [`read_covering`] returns them.
struct Covering {
    bytes: Vec<u8>,
    /// The first acquired offset the bytes do not cover (`i64::MAX`: all covered).
    end: i64,
    /// Offset ranges of batches read that must never be delivered ([`never_delivered`]):
    /// their bytes are left out and the caller archives their acquired records.
    skipped: Vec<(i64, i64)>,
    /// The last offset of the last batch in `bytes`: the rest of that batch can go to the same
    /// consumer without another read ([`crate::share::ShareService::acquire_through`]).
    batch_last: Option<i64>,
}

/// Reads the stored batches holding the acquired `ranges` (ascending), skipping batches that
/// hold none of them, until `budget` bytes. When `first_in_response`, the first batch goes out
/// whole even over the budget (KIP-74), so a large record never stalls a consumer. Batches
/// that must never be delivered (markers, aborted transactions) are left out and reported.
/// The caller gives back the acquired records from `end`. Each read is sized by what is left
/// (a fixed large read would load and copy far more than a `max_records` fetch needs).
fn read_covering(
    handle: &ShareHandle,
    ranges: &[AcquiredRange],
    budget: usize,
    first_in_response: bool,
    aborted: &[AbortedTxn],
) -> Result<Covering, KafkaError> {
    let mut out: Vec<u8> = Vec::new();
    let mut skipped: Vec<(i64, i64)> = Vec::new();
    let mut batch_last = None;
    let mut next = i64::MIN;
    let mut limit = FIRST_READ_BYTES;
    for r in ranges {
        next = next.max(r.first_offset);
        while next <= r.last_offset {
            let room = budget.saturating_sub(out.len());
            let (slice, _) = handle.log.read_as_leader(
                crate::replica_manager::NO_LEADER_EPOCH,
                next,
                limit.min(room).max(1),
            )?;
            let Some(slice) = slice? else {
                return Ok(Covering {
                    bytes: out,
                    end: next,
                    skipped,
                    batch_last,
                });
            };
            let mut bytes = slice.load()?;
            let before = next;
            // The byte spans kept, in order. Without markers or aborted batches they are one
            // prefix of what was read, kept without copying.
            let mut spans: Vec<(usize, usize)> = Vec::new();
            let mut used = 0usize;
            let mut full = false;
            for (at, h) in sluice_storage::BatchIter::new(&bytes) {
                if h.base_offset > r.last_offset {
                    break;
                }
                let len = h.total_len();
                if never_delivered(&h, aborted) {
                    skipped.push((h.base_offset, h.last_offset()));
                    next = h.next_offset();
                    continue;
                }
                let fits = out.len().saturating_add(used).saturating_add(len) <= budget;
                let must_send = out.is_empty() && used == 0 && first_in_response;
                if !fits && !must_send {
                    full = true;
                    break;
                }
                used += len;
                batch_last = Some(h.last_offset());
                let span_end = at.saturating_add(len);
                match spans.last_mut() {
                    Some(last) if last.1 == at => last.1 = span_end,
                    _ => spans.push((at, span_end)),
                }
                next = h.next_offset();
            }
            match spans.as_slice() {
                [] => {}
                [(0, end)] => {
                    bytes.truncate(*end);
                    if out.is_empty() {
                        out = bytes;
                    } else {
                        out.extend_from_slice(&bytes);
                    }
                }
                spans => {
                    for (from, to) in spans {
                        out.extend_from_slice(bytes.get(*from..*to).unwrap_or_default());
                    }
                }
            }
            if full {
                return Ok(Covering {
                    bytes: out,
                    end: next,
                    skipped,
                    batch_last,
                });
            }
            if next <= before {
                // Nothing usable at `next` (cannot happen with a sound log): stop here.
                return Ok(Covering {
                    bytes: out,
                    end: next,
                    skipped,
                    batch_last,
                });
            }
            let per_offset = used / usize::try_from(next - before).unwrap_or(1).max(1);
            let remaining =
                usize::try_from(r.last_offset.saturating_add(1).saturating_sub(next)).unwrap_or(0);
            limit = (remaining.saturating_mul(per_offset.max(1)) + per_offset)
                .clamp(FIRST_READ_BYTES, MAX_READ_BYTES);
        }
    }
    Ok(Covering {
        bytes: out,
        end: i64::MAX,
        skipped,
        batch_last,
    })
}

/// `ranges` without the offsets in `skipped` (ascending, non-overlapping ranges).
fn ranges_without(ranges: Vec<AcquiredRange>, skipped: &[(i64, i64)]) -> Vec<AcquiredRange> {
    if skipped.is_empty() {
        return ranges;
    }
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut first = r.first_offset;
        for &(s_first, s_last) in skipped {
            if s_last < first || s_first > r.last_offset {
                continue;
            }
            if s_first > first {
                out.push(AcquiredRange {
                    first_offset: first,
                    last_offset: s_first - 1,
                    delivery_count: r.delivery_count,
                });
            }
            first = s_last.saturating_add(1);
            if first > r.last_offset {
                break;
            }
        }
        if first <= r.last_offset {
            out.push(AcquiredRange {
                first_offset: first,
                last_offset: r.last_offset,
                delivery_count: r.delivery_count,
            });
        }
    }
    out
}

/// `ranges` without the offsets at or above `end`.
fn ranges_below(ranges: Vec<AcquiredRange>, end: i64) -> Vec<AcquiredRange> {
    ranges
        .into_iter()
        .filter(|r| r.first_offset < end)
        .map(|mut r| {
            r.last_offset = r.last_offset.min(end - 1);
            r
        })
        .collect()
}

/// What [`take`] got from one share-partition.
pub struct Taken {
    /// The records handed out (acquired, read, deliverable), ascending.
    pub ranges: Vec<AcquiredRange>,
    /// The stored batches holding them, or why they could not be read (they stay acquired
    /// and come back when their lock expires).
    pub read: Result<Vec<u8>, KafkaError>,
    /// The byte budget ran out: later partitions would only acquire and give back.
    pub full: bool,
    /// Records were archived unseen (markers, aborted transactions): where that was logged,
    /// and more may be ready at once.
    pub archived_at: Option<i64>,
    /// When the locks of `ranges` expire (ms since the epoch).
    pub deadline: u64,
}

/// Acquires up to `max_records` records of `h` for `member` and reads the stored batches
/// holding them within `room` bytes (the first batch of a response goes out whole: KIP-74).
/// What did not fit is given back as if never acquired; markers and aborted records are
/// archived. `batch_aligned`: the rest of the last batch read is acquired too (Kafka's
/// batch-aligned acquisition, which saves its consumer a fetch; the queue API takes exactly
/// `max_records`). `None`: nothing to acquire.
#[allow(clippy::too_many_arguments)]
pub fn take(
    broker: &Broker,
    h: &Arc<ShareHandle>,
    member: &MemberId,
    max_records: u32,
    settings: &ShareSettings,
    room: usize,
    first_in_response: bool,
    batch_aligned: bool,
) -> Option<Taken> {
    let (ranges, deadline) = broker.share.acquire(h, member, max_records, settings);
    let (first, last) = (ranges.first()?.first_offset, ranges.last()?.last_offset);
    // Under read_committed everything acquired is below the last stable offset, so whether
    // its transaction aborted is decided.
    let aborted = if settings.read_committed {
        h.log.aborted_transactions(first, last.saturating_add(1))
    } else {
        Vec::new()
    };
    let mut taken = Taken {
        ranges: Vec::new(),
        read: Ok(Vec::new()),
        full: false,
        archived_at: None,
        deadline,
    };
    match read_covering(h, &ranges, room, first_in_response, &aborted) {
        Ok(Covering {
            bytes,
            end,
            skipped,
            batch_last,
        }) => {
            let mut ranges = ranges;
            if let Some(through) = batch_last.filter(|t| batch_aligned && end > last && *t > last) {
                broker.share.acquire_through(
                    h,
                    member,
                    last.saturating_add(1),
                    through,
                    deadline,
                    settings,
                    &mut ranges,
                );
            }
            if end <= last {
                broker.share.unacquire(h, member, end, last, deadline);
                taken.full = true;
            }
            match broker.share.archive_acquired(h, member, &skipped, deadline) {
                Ok(at) => taken.archived_at = at,
                Err(e) => {
                    tracing::error!(topic = %h.topic, error = %e, "cannot record share state")
                }
            }
            taken.ranges = ranges_without(ranges_below(ranges, end), &skipped);
            taken.read = Ok(bytes);
        }
        Err(e) => {
            taken.ranges = ranges;
            taken.read = Err(e);
        }
    }
    let n = count(&taken.ranges);
    if n > 0 {
        broker
            .metrics
            .share_acquired
            .get_or_create(&GroupTopicLabels {
                group: h.key.group.to_string(),
                topic: h.topic.clone(),
            })
            .inc_by(u64::from(n));
    }
    Some(taken)
}

/// The number of offsets in `ranges`.
pub fn count(ranges: &[AcquiredRange]) -> u32 {
    let n: i64 = ranges
        .iter()
        .map(|r| r.last_offset - r.first_offset + 1)
        .sum();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn r(first: i64, last: i64) -> AcquiredRange {
        AcquiredRange {
            first_offset: first,
            last_offset: last,
            delivery_count: 1,
        }
    }

    #[test]
    fn skipped_offsets_leave_the_acquired_ranges() {
        let got = |ranges: Vec<AcquiredRange>, skipped: &[(i64, i64)]| {
            ranges_without(ranges, skipped)
                .into_iter()
                .map(|r| (r.first_offset, r.last_offset))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(vec![r(0, 9)], &[]), vec![(0, 9)]);
        assert_eq!(got(vec![r(0, 9)], &[(3, 3), (8, 12)]), vec![(0, 2), (4, 7)]);
        assert_eq!(
            got(vec![r(0, 4), r(6, 9)], &[(-5, 0), (4, 6)]),
            vec![(1, 3), (7, 9)]
        );
        assert_eq!(got(vec![r(0, 4)], &[(0, 4)]), Vec::<(i64, i64)>::new());
        assert_eq!(got(vec![r(5, 5)], &[(0, 1), (7, 9)]), vec![(5, 5)]);
    }

    /// One batch of `n` records (control: one transaction marker) for `producer_id`.
    fn batch(n: usize, producer_id: i64, transactional: bool, control: bool) -> bytes::BytesMut {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1,
                // A COMMIT marker: key (version 0, type 1), value (version 0, epoch 0).
                key: Some(if control {
                    Bytes::from_static(&[0, 0, 0, 1])
                } else {
                    Bytes::from_static(b"k")
                }),
                value: Some(if control {
                    Bytes::from_static(&[0, 0, 0, 0, 0, 0])
                } else {
                    Bytes::from_static(b"v")
                }),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    /// A control batch in the log is left out of what a share fetch sends and reported for
    /// archiving, today and once transactions write markers.
    #[test]
    fn a_marker_in_the_log_is_never_sent() {
        use crate::replica_manager::{ReplicaConfig, ReplicaManager, Role};
        let dir = tempfile::tempdir().unwrap();
        let rm = ReplicaManager::new(1, dir.path());
        let config = ReplicaConfig {
            log_config: Default::default(),
            conditional: false,
        };
        let role = Role::Leader { leader_epoch: 0 };
        let created = rm.create(Uuid::nil(), "t", 0..1, &config, role, 0).unwrap();
        let tp = created[0].tp();
        rm.install(created);
        // Replicas open pending; leadership comes with the image's state.
        rm.become_leader(tp, 0).unwrap();
        let log = rm.get(tp).unwrap();
        log.append_as_leader(&batch(3, -1, false, false), 1, None)
            .unwrap();
        // Markers come from the coordinator; a client-written control batch may be refused.
        if log
            .append_as_leader(&batch(1, 5, true, true), 1, None)
            .is_err()
        {
            let marker = crate::replica_manager::TxnMarker {
                producer_id: 5,
                producer_epoch: 0,
                commit: true,
                coordinator_epoch: 0,
            };
            log.append_marker(marker, 1).unwrap();
        }
        log.append_as_leader(&batch(2, -1, false, false), 1, None)
            .unwrap();
        assert_eq!(log.watermarks().high_watermark, 6);
        let handle = ShareHandle::new(
            SpKey {
                group: Arc::from("g"),
                topic_id: Uuid::nil(),
                partition: 0,
            },
            "t".into(),
            log,
            0,
            sluice_share::SharePartition::new(0),
        );
        let covering = read_covering(&handle, &[r(0, 5)], 1 << 20, true, &[]).unwrap();
        assert_eq!(covering.end, i64::MAX);
        assert_eq!(covering.skipped, vec![(3, 3)]);
        let sent: Vec<(i64, bool)> = sluice_storage::BatchIter::new(&covering.bytes)
            .map(|(_, h)| (h.base_offset, h.is_control()))
            .collect();
        // (The encoder may write one batch per record.)
        assert!(sent.iter().all(|(_, control)| !control), "{sent:?}");
        assert!(sent.iter().all(|(base, _)| *base != 3), "{sent:?}");
        assert!(sent.iter().any(|(base, _)| *base == 4), "{sent:?}");
        let ranges = ranges_without(ranges_below(vec![r(0, 5)], covering.end), &covering.skipped);
        let ranges: Vec<(i64, i64)> = ranges
            .iter()
            .map(|r| (r.first_offset, r.last_offset))
            .collect();
        assert_eq!(ranges, vec![(0, 2), (4, 5)]);
        // Under read_committed an aborted transaction's batch is left out as well.
        let aborted = [AbortedTxn {
            producer_id: 5,
            first_offset: 0,
            last_offset: 3,
        }];
        let covering = read_covering(&handle, &[r(0, 5)], 1 << 20, true, &aborted).unwrap();
        assert_eq!(
            covering.skipped,
            vec![(3, 3)],
            "non-transactional data is never aborted"
        );
    }

    #[test]
    fn markers_and_aborted_batches_are_never_delivered() {
        let mut h = sluice_storage::BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 1,
        };
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 20,
        }];
        h.base_offset = 12;
        h.producer_id = 7;
        h.attributes = 0;
        assert!(!never_delivered(&h, &aborted), "not transactional");
        h.attributes = 0x10;
        assert!(never_delivered(&h, &aborted));
        h.producer_id = 8;
        assert!(!never_delivered(&h, &aborted), "another producer");
        h.producer_id = 7;
        h.base_offset = 21;
        assert!(!never_delivered(&h, &aborted), "after the abort marker");
        h.attributes = 0x30;
        assert!(never_delivered(&h, &[]), "a marker");
    }
}
