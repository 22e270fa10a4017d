//! The cleaner on real files: latest per key, offsets kept, tombstones and their horizon,
//! reads across gaps, producers' last batches, a full offset map, interrupted swaps.

use super::*;
use crate::records::{compute_crc, BatchIter};
use crate::{Log, LogConfig};

type Rec<'a> = (Option<&'a str>, Option<&'a str>);

/// One uncompressed batch of `records` (key, value), at `ts`, optionally of a producer.
fn batch(records: &[Rec<'_>], ts: i64, producer: Option<(i64, i32)>) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut rec = vec![0u8];
        put_varlong(&mut rec, 0);
        put_varlong(&mut rec, i as i64);
        for f in [k, v] {
            match f {
                None => put_varlong(&mut rec, -1),
                Some(s) => {
                    put_varlong(&mut rec, s.len() as i64);
                    rec.extend_from_slice(s.as_bytes());
                }
            }
        }
        put_varlong(&mut rec, 0);
        put_varlong(&mut body, rec.len() as i64);
        body.extend(rec);
    }
    let n = records.len() as i32;
    let (pid, seq) = producer.unwrap_or((-1, -1));
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend(((BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(0i16.to_be_bytes());
    b.extend((n - 1).to_be_bytes());
    b.extend(ts.to_be_bytes());
    b.extend(ts.to_be_bytes());
    b.extend(pid.to_be_bytes());
    b.extend((if pid >= 0 { 0i16 } else { -1i16 }).to_be_bytes());
    b.extend(seq.to_be_bytes());
    b.extend(n.to_be_bytes());
    b.extend(body);
    let crc = compute_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

fn put(log: &mut Log, records: &[Rec<'_>], ts: i64, producer: Option<(i64, i32)>) -> i64 {
    let b = batch(records, ts, producer);
    let v = log.validate(&b, ts).unwrap();
    log.append(&b, &v, 0, ts).unwrap().first_offset
}

/// Every (offset, key, value) from `from` to the log end, read the way Fetch reads.
fn read_all(log: &Log, from: i64) -> Vec<(i64, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let Some(slice) = log.read(offset, 1 << 20).unwrap() else {
            break;
        };
        let bytes = slice.load().unwrap();
        let mut next = offset;
        for (at, h) in BatchIter::new(&bytes) {
            assert!(crate::records::compute_crc(&bytes[at..at + h.total_len()]) == h.crc);
            let section = &bytes[at + BATCH_HEADER_LEN..at + h.total_len()];
            for r in parse_records(section, h.records_count).unwrap() {
                let o = h.base_offset + r.offset_delta;
                if o < offset {
                    continue;
                }
                let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                let mut p = 0;
                let _ = read_varlong(r.bytes, &mut p);
                let body = &r.bytes[p..];
                let mut q = 1;
                read_varlong(body, &mut q).unwrap();
                read_varlong(body, &mut q).unwrap();
                let k = read_blob(body, &mut q).unwrap();
                let v = read_blob(body, &mut q).unwrap();
                out.push((o, s(k), s(v)));
            }
            next = h.next_offset();
        }
        assert!(next > offset, "reads make progress");
        offset = next;
    }
    out
}

fn clean(log: &mut Log, now: i64, opts: CleanOptions) -> CleanStats {
    let c = log.cleanable(log.log_end_offset(), now, 0, i64::MAX);
    let Some(plan) = log.plan_clean(&c) else {
        return CleanStats::default();
    };
    let done = plan
        .execute(
            &CleanOptions {
                now_ms: now,
                ..opts
            },
            &UncompressedOnly,
        )
        .unwrap();
    log.install_clean(done).unwrap()
}

fn fill(log: &mut Log) {
    for round in 0..4 {
        for key in ["a", "b", "c"] {
            let v = format!("{key}{round}");
            put(log, &[(Some(key), Some(&v))], 1_000, None);
        }
    }
    // The active segment: never cleaned.
    log.roll().unwrap();
    put(log, &[(Some("a"), Some("tail"))], 1_000, None);
}

#[test]
fn keeps_the_latest_per_key_with_offsets_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
    fill(&mut log);
    // Larger segments from now on: the cleaner merges the small ones it cleans.
    log.set_config(LogConfig {
        segment_bytes: 10_000,
        ..config()
    })
    .unwrap();
    let before = log.segment_count();
    let end = log.log_end_offset();
    let stats = clean(&mut log, 2_000, CleanOptions::default());
    assert!(stats.records_removed >= 8, "{stats:?}");
    assert!(log.segment_count() < before, "small segments merged");
    assert_eq!(log.log_end_offset(), end);
    let seen = read_all(&log, 0);
    let expect = vec![
        (9, Some("a".into()), Some("a3".into())),
        (10, Some("b".into()), Some("b3".into())),
        (11, Some("c".into()), Some("c3".into())),
        (12, Some("a".into()), Some("tail".into())),
    ];
    assert_eq!(seen, expect);
    // A read at a removed offset returns the next batch.
    assert_eq!(read_all(&log, 3), expect);
    assert_eq!(read_all(&log, 10), expect[1..].to_vec());
    // Reopened (recovery and index checks accept the gaps): the same.
    drop(log);
    let log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
    assert_eq!(read_all(&log, 0), expect);
    assert_eq!(log.cleaner_state().first_dirty, 12);
    // Without its indexes, the cleaned segment is rebuilt by the CRC walk, gaps and all.
    drop(log);
    for ext in ["index", "timeindex"] {
        fs::remove_file(dir.path().join(format!("{:020}.{ext}", 0))).unwrap();
    }
    let log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
    assert_eq!(read_all(&log, 0), expect);
    assert_eq!(read_all(&log, 11), expect[2..].to_vec());
    // Nothing dirty any more.
    let c = log.cleanable(log.log_end_offset(), 3_000, 0, i64::MAX);
    assert_eq!(c.dirty_bytes, 0);
}

#[test]
fn tombstones_stay_until_their_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
    put(
        &mut log,
        &[(Some("a"), Some("1")), (Some("b"), Some("1"))],
        1_000,
        None,
    );
    put(&mut log, &[(Some("a"), None)], 1_000, None);
    put(&mut log, &[(Some("c"), Some("1"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("d"), Some("1"))], 1_000, None);
    let opts = CleanOptions {
        delete_retention_ms: 5_000,
        ..CleanOptions::default()
    };
    clean(&mut log, 10_000, opts.clone());
    assert_eq!(
        read_all(&log, 0),
        vec![
            (1, Some("b".into()), Some("1".into())),
            (2, Some("a".into()), None),
            (3, Some("c".into()), Some("1".into())),
            (4, Some("d".into()), Some("1".into())),
        ]
    );
    assert_eq!(log.cleaner_state().earliest_horizon, Some(15_000));
    let c = log.cleanable(log.log_end_offset(), 14_999, 0, i64::MAX);
    assert!(!c.horizon_due);
    let c = log.cleanable(log.log_end_offset(), 15_000, 0, i64::MAX);
    assert!(c.horizon_due);
    // Before the horizon: still there.
    clean(&mut log, 14_999, opts.clone());
    assert_eq!(read_all(&log, 0).len(), 4);
    clean(&mut log, 15_000, opts);
    assert_eq!(
        read_all(&log, 0),
        vec![
            (1, Some("b".into()), Some("1".into())),
            (3, Some("c".into()), Some("1".into())),
            (4, Some("d".into()), Some("1".into())),
        ]
    );
}

#[test]
fn keeps_each_producers_last_batch_and_drops_keyless() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    put(&mut log, &[(Some("a"), Some("1"))], 1_000, Some((7, 0)));
    put(&mut log, &[(Some("a"), Some("2"))], 1_000, None);
    put(&mut log, &[(None, Some("x"))], 1_000, None);
    put(&mut log, &[(Some("b"), Some("1"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("b"), Some("2"))], 1_000, None);
    clean(&mut log, 2_000, CleanOptions::default());
    // Producer 7's only batch stays, empty, with its header.
    let slice = log.read(0, 1 << 20).unwrap().unwrap();
    let bytes = slice.load().unwrap();
    let (_, h) = BatchIter::new(&bytes).next().unwrap();
    assert_eq!(
        (
            h.base_offset,
            h.producer_id,
            h.base_sequence,
            h.records_count
        ),
        (0, 7, 0, 0)
    );
    assert_eq!(
        read_all(&log, 0),
        vec![
            (1, Some("a".into()), Some("2".into())),
            (3, Some("b".into()), Some("1".into())),
            (4, Some("b".into()), Some("2".into())),
        ]
    );
}

#[test]
fn a_full_offset_map_cleans_up_to_where_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
    fill(&mut log);
    let stats = clean(
        &mut log,
        2_000,
        CleanOptions {
            dedupe_buffer_bytes: 2 * (1 + MAP_ENTRY_OVERHEAD),
            ..CleanOptions::default()
        },
    );
    assert_eq!(stats.map_keys, 2);
    // Only a and b were mapped: the map ends at the first c, and everything from there stays
    // (a0 and b0 are the latest the map knows).
    assert_eq!(log.cleaner_state().first_dirty, 2);
    let seen = read_all(&log, 0);
    assert_eq!(seen.len(), 13, "{seen:?}");
    // The next round goes on from there.
    clean(&mut log, 2_000, CleanOptions::default());
    assert_eq!(read_all(&log, 0).len(), 4);
}

#[test]
fn aborted_transactions_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    put(&mut log, &[(Some("a"), Some("committed"))], 1_000, None);
    // Offsets 1..=2: an aborted transaction's data (marker at 3 modelled by the range).
    let mut b = batch(&[(Some("a"), Some("aborted"))], 1_000, Some((9, 0)));
    b[ATTRIBUTES_AT + 1] |= 0x10;
    let crc = compute_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let v = log.validate(&b, 1_000).unwrap();
    log.append(&b, &v, 0, 1_000).unwrap();
    put(&mut log, &[(Some("z"), Some("1"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("y"), Some("1"))], 1_000, None);
    clean(
        &mut log,
        2_000,
        CleanOptions {
            aborted: vec![AbortedRange {
                producer_id: 9,
                first_offset: 1,
                last_offset: 3,
            }],
            ..CleanOptions::default()
        },
    );
    let seen = read_all(&log, 0);
    assert_eq!(seen[0], (0, Some("a".into()), Some("committed".into())));
    assert!(seen.iter().all(|r| r.2.as_deref() != Some("aborted")));
}

#[test]
fn an_interrupted_swap_is_finished_or_rolled_back() {
    for commit in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
        fill(&mut log);
        let all = read_all(&log, 0);
        let c = log.cleanable(log.log_end_offset(), 2_000, 0, i64::MAX);
        let plan = log.plan_clean(&c).unwrap();
        let done = plan
            .execute(
                &CleanOptions {
                    now_ms: 2_000,
                    ..CleanOptions::default()
                },
                &UncompressedOnly,
            )
            .unwrap();
        let bases: Vec<i64> = done.groups.iter().map(|g| g.base).collect();
        if commit {
            // Crash after the commit point and after some old segments went.
            for g in &done.groups {
                let from = paths(dir.path(), g.base, CLEANED);
                let to = paths(dir.path(), g.base, SWAP);
                for i in [1, 2, 0] {
                    fs::rename(&from[i], &to[i]).unwrap();
                }
                let (old, _, _) = g.sources[g.sources.len() - 1];
                for p in paths(dir.path(), old, "") {
                    remove_if_present(&p).unwrap();
                }
            }
        }
        drop(done);
        drop(log);
        let log = Log::open(dir.path(), config(), 0, &mut |_| {}).unwrap();
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let seen = read_all(&log, 0);
        if commit {
            assert_eq!(seen.len(), 4, "{bases:?} {seen:?}");
        } else {
            assert_eq!(seen, all);
        }
        assert_eq!(log.log_end_offset(), 13);
    }
}

#[test]
fn filter_batch_never_panics_on_garbage() {
    let good = batch(
        &[(Some("k"), Some("v")), (Some("k2"), None)],
        5,
        Some((1, 0)),
    );
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] ^= flip;
            let Some(h) = BatchHeader::parse(&b) else {
                continue;
            };
            let ctx = BatchContext {
                now_ms: 10,
                delete_retention_ms: 1,
                decompression_cap: 1 << 20,
                codec: &UncompressedOnly,
                must_keep: i % 2 == 0,
            };
            let mut out = Vec::new();
            let _ = filter_batch(&b, &h, &ctx, &mut |_, o| o % 2 == 0, &mut out);
        }
    }
}

#[test]
fn batches_larger_than_the_io_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    let value = "x".repeat(3000);
    let keys: Vec<String> = (0..300).map(|k| format!("k{k}")).collect();
    for _ in 0..2 {
        let recs: Vec<Rec<'_>> = keys
            .iter()
            .map(|k| (Some(k.as_str()), Some(value.as_str())))
            .collect();
        put(&mut log, &recs, 1_000, None);
    }
    log.roll().unwrap();
    let stats = clean(
        &mut log,
        2_000,
        CleanOptions {
            io_buffer_bytes: 64 << 10,
            ..CleanOptions::default()
        },
    );
    assert!(stats.bytes_read > 0, "{stats:?}");
    let seen = read_all(&log, 0);
    assert_eq!(seen.len(), 300);
    assert_eq!(seen[0].0, 300);
}

#[test]
fn segments_larger_than_the_io_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    let value = "x".repeat(300);
    for round in 0..2 {
        for k in 0..3000 {
            let key = format!("k{k}");
            let v = format!("{value}{round}");
            put(&mut log, &[(Some(&key), Some(&v))], 1_000, None);
        }
    }
    log.roll().unwrap();
    let stats = clean(&mut log, 2_000, CleanOptions::default());
    assert!(stats.bytes_read > 0, "{stats:?}");
    let seen = read_all(&log, 0);
    assert_eq!(seen.len(), 3000);
    assert_eq!(seen[0].0, 3000);
}

// ---- Transaction markers (Kafka's `CleanedTransactionMetadata`) ----

/// A transactional data batch of producer `pid` (epoch 0).
fn txn_batch(records: &[Rec<'_>], ts: i64, pid: i64, seq: i32) -> Vec<u8> {
    let mut b = batch(records, ts, Some((pid, seq)));
    b[ATTRIBUTES_AT + 1] |= 0x10;
    let crc = compute_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn put_raw(log: &mut Log, b: &[u8], ts: i64) -> i64 {
    let v = log.validate(b, ts).unwrap();
    log.append(b, &v, 0, ts).unwrap().first_offset
}

fn put_marker(log: &mut Log, pid: i64, epoch: i16, commit: bool, ts: i64) -> i64 {
    let kind = if commit {
        crate::records::ControlRecord::COMMIT
    } else {
        crate::records::ControlRecord::ABORT
    };
    let b = crate::records::build_control_batch(
        pid,
        epoch,
        crate::records::ControlRecord {
            kind,
            coordinator_epoch: 0,
        },
        ts,
    );
    put_raw(log, &b, ts)
}

/// (base offset, is control, producer id, delete horizon if set) of every batch.
fn batches_of(log: &Log) -> Vec<(i64, bool, i64, Option<i64>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let Some(slice) = log.read(offset, 1 << 20).unwrap() else {
            break;
        };
        let bytes = slice.load().unwrap();
        let mut next = offset;
        for (at, h) in BatchIter::new(&bytes) {
            assert!(compute_crc(&bytes[at..at + h.total_len()]) == h.crc);
            if h.base_offset >= offset {
                let hz = (h.attributes & ATTR_DELETE_HORIZON != 0).then_some(h.base_timestamp);
                out.push((h.base_offset, h.is_control(), h.producer_id, hz));
            }
            next = h.next_offset();
        }
        assert!(next > offset);
        offset = next;
    }
    out
}

fn markers(log: &Log) -> Vec<(i64, Option<i64>)> {
    batches_of(log)
        .into_iter()
        .filter(|b| b.1)
        .map(|b| (b.0, b.3))
        .collect()
}

/// The data records (control records, whose keys start with a zero version, left out).
fn data_of(log: &Log) -> Vec<(i64, Option<String>, Option<String>)> {
    read_all(log, 0)
        .into_iter()
        .filter(|r| r.1.as_deref().is_none_or(|k| !k.starts_with('\0')))
        .collect()
}

fn clean_below(log: &mut Log, upper: i64, now: i64, opts: CleanOptions) -> CleanStats {
    let c = log.cleanable(upper, now, 0, i64::MAX);
    let Some(plan) = log.plan_clean(&c) else {
        return CleanStats::default();
    };
    let done = plan
        .execute(
            &CleanOptions {
                now_ms: now,
                ..opts
            },
            &UncompressedOnly,
        )
        .unwrap();
    log.install_clean(done).unwrap()
}

#[test]
fn a_commit_marker_goes_after_its_data_and_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    // Producer 7 commits "k"=old (0) with its marker (1), then producer 8 (not transactional)
    // overwrites "k" twice: the committed record goes in the first cleaning.
    put_raw(
        &mut log,
        &txn_batch(&[(Some("k"), Some("old"))], 1_000, 7, 0),
        1_000,
    );
    assert_eq!(put_marker(&mut log, 7, 0, true, 1_000), 1);
    // Producer 7's last data batch is kept whatever happens: a second committed transaction.
    put_raw(
        &mut log,
        &txn_batch(&[(Some("j"), Some("1"))], 1_000, 7, 1),
        1_000,
    );
    assert_eq!(put_marker(&mut log, 7, 0, true, 1_000), 3);
    put(&mut log, &[(Some("k"), Some("new"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("z"), Some("1"))], 1_000, None);
    let retention = 10_000;
    let opts = CleanOptions {
        delete_retention_ms: retention,
        ..CleanOptions::default()
    };
    // Round 1: the data of the first transaction is removed; its marker stays, with a
    // horizon; the second transaction's data stays, and so does its marker.
    clean(&mut log, 2_000, opts.clone());
    assert!(
        !batches_of(&log).iter().any(|b| b.0 == 0),
        "old data removed"
    );
    assert_eq!(markers(&log), vec![(1, Some(2_000 + retention)), (3, None)]);
    // Later rounds before the horizon: still there (the horizon is kept); it makes the log due.
    clean(&mut log, 3_000, opts.clone());
    clean(&mut log, 2_000 + retention - 1, opts.clone());
    assert_eq!(markers(&log), vec![(1, Some(2_000 + retention)), (3, None)]);
    assert!(
        log.cleanable(log.log_end_offset(), 2_000 + retention, 0, i64::MAX)
            .horizon_due
    );
    // At the horizon: gone. The committed data of the second transaction and its marker stay
    // (the producer's last batch).
    clean(&mut log, 2_000 + retention, opts);
    assert_eq!(markers(&log), vec![(3, None)]);
    let seen = data_of(&log);
    assert_eq!(
        seen,
        vec![
            (2, Some("j".into()), Some("1".into())),
            (4, Some("k".into()), Some("new".into())),
            (5, Some("z".into()), Some("1".into())),
        ]
    );
}

#[test]
fn an_abort_marker_goes_after_its_data_and_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    put(&mut log, &[(Some("a"), Some("committed"))], 1_000, None);
    // Producer 9: aborted data at 1 and 2, ABORT marker at 3; then a committed transaction
    // (4, marker 5) that stays as the producer's last batch.
    put_raw(
        &mut log,
        &txn_batch(&[(Some("a"), Some("aborted"))], 1_000, 9, 0),
        1_000,
    );
    put_raw(
        &mut log,
        &txn_batch(&[(Some("b"), Some("aborted"))], 1_000, 9, 1),
        1_000,
    );
    assert_eq!(put_marker(&mut log, 9, 0, false, 1_000), 3);
    put_raw(
        &mut log,
        &txn_batch(&[(Some("c"), Some("ok"))], 1_000, 9, 2),
        1_000,
    );
    assert_eq!(put_marker(&mut log, 9, 0, true, 1_000), 5);
    put(&mut log, &[(Some("z"), Some("1"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("y"), Some("1"))], 1_000, None);
    let aborted = vec![AbortedRange {
        producer_id: 9,
        first_offset: 1,
        last_offset: 3,
    }];
    let opts = CleanOptions {
        delete_retention_ms: 5_000,
        aborted: aborted.clone(),
        ..CleanOptions::default()
    };
    // Round 1: the aborted data goes; the ABORT marker stays, with a horizon.
    clean(&mut log, 2_000, opts.clone());
    assert_eq!(markers(&log), vec![(3, Some(7_000)), (5, None)]);
    let seen = data_of(&log);
    assert!(seen.iter().all(|r| r.2.as_deref() != Some("aborted")));
    // Later rounds (the broker no longer finds the transaction: the cleaned segment's
    // transaction index is empty): the marker stays until its horizon.
    let opts = CleanOptions {
        aborted: Vec::new(),
        ..opts
    };
    clean(&mut log, 3_000, opts.clone());
    clean(&mut log, 6_999, opts.clone());
    assert_eq!(markers(&log), vec![(3, Some(7_000)), (5, None)]);
    clean(&mut log, 7_000, opts);
    assert_eq!(markers(&log), vec![(5, None)]);
    let seen = data_of(&log);
    assert_eq!(
        seen,
        vec![
            (0, Some("a".into()), Some("committed".into())),
            (4, Some("c".into()), Some("ok".into())),
            (6, Some("z".into()), Some("1".into())),
            (7, Some("y".into()), Some("1".into())),
        ]
    );
}

#[test]
fn markers_of_undecided_transactions_and_fencing_markers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    // Producer 3: a committed transaction (0, marker 1) whose data is overwritten (2); its
    // batch is the producer's last one in the cleaned range, kept empty, so the marker stays.
    put_raw(
        &mut log,
        &txn_batch(&[(Some("k"), Some("1"))], 1_000, 3, 0),
        1_000,
    );
    put_marker(&mut log, 3, 0, true, 1_000);
    put(&mut log, &[(Some("k"), Some("2"))], 1_000, None);
    // Producer 4 wrote nothing but an ABORT marker at a bumped epoch (fencing): kept.
    assert_eq!(put_marker(&mut log, 4, 1, false, 1_000), 3);
    log.roll().unwrap();
    // Producer 3's next transaction is open (no marker yet): the LSO is its first offset.
    let lso = put_raw(
        &mut log,
        &txn_batch(&[(Some("k"), Some("3"))], 1_000, 3, 1),
        1_000,
    );
    put(&mut log, &[(Some("w"), Some("1"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("y"), Some("1"))], 1_000, None);
    let opts = CleanOptions {
        delete_retention_ms: 0,
        ..CleanOptions::default()
    };
    for now in [2_000, 3_000, 4_000] {
        clean_below(&mut log, lso, now, opts.clone());
    }
    // Both markers stay; the open transaction, at and past the LSO, is untouched.
    assert_eq!(markers(&log), vec![(1, None), (3, None)]);
    assert!(
        batches_of(&log).iter().any(|b| b.0 == 0 && b.2 == 3),
        "kept empty"
    );
    let seen = data_of(&log);
    assert_eq!(
        seen,
        vec![
            (2, Some("k".into()), Some("2".into())),
            (4, Some("k".into()), Some("3".into())),
            (5, Some("w".into()), Some("1".into())),
            (6, Some("y".into()), Some("1".into())),
        ]
    );
}

#[test]
fn aborted_data_past_a_full_offset_map_is_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| {}).unwrap();
    put(&mut log, &[(Some("a"), Some("1"))], 1_000, None);
    put(&mut log, &[(Some("b"), Some("1"))], 1_000, None);
    put(&mut log, &[(Some("c"), Some("1"))], 1_000, None);
    put_raw(
        &mut log,
        &txn_batch(&[(Some("x"), Some("aborted"))], 1_000, 9, 0),
        1_000,
    );
    assert_eq!(put_marker(&mut log, 9, 0, false, 1_000), 4);
    put(&mut log, &[(Some("z"), Some("1"))], 1_000, None);
    log.roll().unwrap();
    put(&mut log, &[(Some("y"), Some("1"))], 1_000, None);
    // Room for two keys: the map ends at offset 2, before the aborted transaction.
    clean(
        &mut log,
        2_000,
        CleanOptions {
            dedupe_buffer_bytes: 2 * (1 + MAP_ENTRY_OVERHEAD),
            delete_retention_ms: 0,
            aborted: vec![AbortedRange {
                producer_id: 9,
                first_offset: 3,
                last_offset: 4,
            }],
            ..CleanOptions::default()
        },
    );
    assert_eq!(log.cleaner_state().first_dirty, 2);
    // The cleaned segment has no transaction index entry: its aborted data must be gone.
    assert!(data_of(&log)
        .iter()
        .all(|r| r.2.as_deref() != Some("aborted")));
    assert!(batches_of(&log).iter().any(|b| b.0 == 3), "emptied, kept");
    assert_eq!(markers(&log), vec![(4, None)]);
}

#[test]
fn a_checkpoint_past_the_log_end_is_clamped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0, &mut |_: &_| {}).unwrap();
    put(&mut log, &[(Some("k"), Some("v"))], 0, None);
    let end = log.log_end_offset();
    drop(log);
    // As a crash inside `truncate_to` between the cut and the checkpoint leaves it.
    write_checkpoint(dir.path(), end + 100).unwrap();
    let log = Log::open(dir.path(), config(), 0, &mut |_: &_| {}).unwrap();
    assert_eq!(log.cleaner.first_dirty, end);
}
