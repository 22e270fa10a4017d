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
