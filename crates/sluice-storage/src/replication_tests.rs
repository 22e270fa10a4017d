//! Tests of what a replicated log needs: the leader-epoch cache kept by the log, follower
//! appends, truncation, and recovery from a crash in the middle of each.

use std::fs;
use std::path::Path;

use crate::leader_epoch::{self, Checkpoint, EpochEntry, LEADER_EPOCH_CHECKPOINT_FILE};
use crate::records::tests::make_batch;
use crate::records::{build_control_batch, BatchIter, ControlRecord};
use crate::{producer_snapshot, Log, LogConfig, StorageError};

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, 0, &mut |_| {}).unwrap()
}

/// A leader's append of one batch of `count` records in `epoch`.
fn append(log: &mut Log, count: i32, ts: i64, epoch: i32) -> (i64, i64) {
    let b = make_batch(count, 40, ts);
    let batches = log.validate(&b, ts).unwrap();
    let info = log.append(&b, &batches, epoch, ts).unwrap();
    (info.first_offset, info.last_offset)
}

fn epochs(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// Every stored byte from `from` to the log end, whole batches.
fn bytes_from(log: &Log, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < log.log_end_offset() {
        let Some(slice) = log.read(at, 1 << 20).unwrap() else {
            break;
        };
        let bytes = slice.load().unwrap();
        let Some((_, last)) = BatchIter::new(&bytes).last() else {
            break;
        };
        at = last.next_offset();
        out.extend(bytes);
    }
    out
}

/// (base offset, leader epoch) of every batch.
fn batch_epochs(log: &Log) -> Vec<(i64, i32)> {
    let bytes = bytes_from(log, log.log_start_offset());
    BatchIter::new(&bytes)
        .map(|(_, h)| (h.base_offset, h.partition_leader_epoch))
        .collect()
}

/// Checks that every offset of the log can be read and lands in the right batch, and that a
/// reopen finds the same log.
fn check_consistent(dir: &Path, log: &Log, config: &LogConfig) {
    let all = batch_epochs(log);
    for w in all.windows(2) {
        assert!(w[0].0 < w[1].0);
    }
    for &(base, _) in &all {
        let slice = log
            .read(base.max(log.log_start_offset()), 1)
            .unwrap()
            .unwrap();
        let bytes = slice.load().unwrap();
        assert_eq!(BatchIter::new(&bytes).next().unwrap().1.base_offset, base);
    }
    let reopened = Log::open(dir, config.clone(), 0, &mut |_| {}).unwrap();
    assert_eq!(reopened.log_end_offset(), log.log_end_offset());
    assert_eq!(reopened.log_start_offset(), log.log_start_offset());
    assert_eq!(epochs(&reopened), epochs(log));
    assert_eq!(batch_epochs(&reopened), all);
}

#[test]
fn the_log_keeps_its_epoch_cache_and_checkpoints_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small());
    assert!(epochs(&log).is_empty());
    assert!(
        !dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE).exists(),
        "nothing to remember yet"
    );
    append(&mut log, 2, 10, 0);
    append(&mut log, 2, 10, 0);
    append(&mut log, 1, 10, 3);
    assert!(log.assign_leader_epoch(5).unwrap(), "a new leader's epoch");
    assert!(!log.assign_leader_epoch(5).unwrap());
    assert_eq!(log.end_offset_for(3), (3, 5), "epoch 3 ended where 5 began");
    append(&mut log, 3, 10, 5);
    assert_eq!(epochs(&log), vec![(0, 0), (3, 4), (5, 5)]);
    let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, "0\n3\n0 0\n3 4\n5 5\n");
    assert_eq!(log.end_offset_for(5), (5, 8));
    assert_eq!(log.end_offset_for(4), (3, 5));
    assert_eq!(log.end_offset_for(0), (0, 4));
    assert_eq!(log.end_offset_for(9), (-1, -1));
    assert_eq!(log.latest_epoch(), Some(5));
    // A stale leader cannot append or claim an epoch.
    let b = make_batch(1, 4, 10);
    let batches = log.validate(&b, 10).unwrap();
    assert!(matches!(
        log.append(&b, &batches, 4, 10),
        Err(StorageError::InvalidRecord(_))
    ));
    assert!(log.assign_leader_epoch(2).is_err());
    assert_eq!(log.log_end_offset(), 8);
    check_consistent(dir.path(), &log, &small());
}

#[test]
fn a_missing_or_unreadable_checkpoint_is_rebuilt_from_batch_headers() {
    let dir = tempfile::tempdir().unwrap();
    let config = small();
    let mut log = open(dir.path(), config.clone());
    // Epoch changes at segment boundaries and inside segments.
    for i in 0..60 {
        let epoch = match i {
            0..=9 => 0,
            10..=24 => 2,
            25..=25 => 3,
            _ => 7,
        };
        append(&mut log, 1 + (i % 3) as i32, 100 + i, epoch);
    }
    assert!(log.segment_count() > 4);
    let expected = epochs(&log);
    assert_eq!(expected.len(), 4);
    drop(log);
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
    for damage in [
        None,
        Some(&b"0\n4\n0 0\n"[..]),
        Some(&b"\x00\xff garbage"[..]),
    ] {
        match damage {
            None => fs::remove_file(&path).unwrap(),
            Some(bytes) => fs::write(&path, bytes).unwrap(),
        }
        let log = open(dir.path(), config.clone());
        assert_eq!(epochs(&log), expected, "{damage:?}");
        assert_eq!(
            leader_epoch::read_checkpoint(dir.path()).unwrap(),
            Checkpoint::Loaded(log.leader_epoch_cache().clone()),
            "the rebuilt cache is written back"
        );
    }
    // A rebuild respects the log start.
    let mut log = open(dir.path(), config.clone());
    let start = expected[1].1 + 3;
    log.delete_records_before(start).unwrap();
    let after = epochs(&log);
    assert_eq!(after[0], (2, start));
    drop(log);
    fs::remove_file(&path).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(epochs(&log), after);
}

#[test]
fn a_checkpoint_ahead_of_the_log_is_truncated_on_open() {
    // A crash after the checkpoint named a new epoch but before its first batch was written,
    // or a torn tail cut by recovery.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, 2, 10, 1);
    append(&mut log, 2, 10, 4);
    drop(log);
    let seg = dir.path().join(format!("{:020}.log", 0));
    let bytes = fs::read(&seg).unwrap();
    fs::write(&seg, &bytes[..bytes.len() - 10]).unwrap();
    fs::write(
        dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE),
        "0\n3\n1 0\n4 2\n9 4\n",
    )
    .unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(epochs(&log), vec![(1, 0)]);
    assert_eq!(
        fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap(),
        "0\n1\n1 0\n"
    );
    // A checkpoint that misses the active segment's epoch learns it from recovery.
    drop(log);
    fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), "0\n0\n").unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(epochs(&log), vec![(1, 0)]);
}

#[test]
fn retention_and_delete_records_truncate_the_cache_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        retention_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..30 {
        append(
            &mut log,
            1,
            i * 100,
            i32::from(i >= 10) + i32::from(i >= 20),
        );
    }
    assert_eq!(epochs(&log), vec![(0, 0), (1, 10), (2, 20)]);
    log.delete_records_before(5).unwrap();
    assert_eq!(epochs(&log), vec![(0, 5), (1, 10), (2, 20)]);
    log.delete_records_before(12).unwrap();
    assert_eq!(epochs(&log), vec![(1, 12), (2, 20)]);
    log.apply_retention(2900 + 1000, i64::MAX).unwrap();
    let start = log.log_start_offset();
    assert!(start > 20, "{start}");
    assert_eq!(epochs(&log), vec![(2, start)]);
    check_consistent(dir.path(), &log, &config);
}

/// A leader log with several epochs, a transaction marker and several segments.
fn leader_log(dir: &Path, config: &LogConfig) -> Log {
    let mut log = open(dir, config.clone());
    for i in 0..40i64 {
        let epoch = (i / 10) as i32 * 2;
        if i == 17 {
            let b = build_control_batch(
                42,
                1,
                ControlRecord {
                    kind: ControlRecord::ABORT,
                    coordinator_epoch: 3,
                },
                500,
            );
            let batches = log.validate(&b, 500).unwrap();
            log.append(&b, &batches, epoch, 500).unwrap();
            continue;
        }
        append(&mut log, 1 + (i % 4) as i32, 100 + i, epoch);
    }
    log
}

/// Replicates `leader` into `follower` as a fetcher would, `max` bytes per fetch.
fn replicate(leader: &Log, follower: &mut Log, max: usize) -> Vec<crate::FollowerAppend> {
    let mut appends = Vec::new();
    while follower.log_end_offset() < leader.log_end_offset() {
        let slice = leader
            .read(follower.log_end_offset(), max)
            .unwrap()
            .unwrap();
        let bytes = slice.load().unwrap();
        appends.push(follower.append_as_follower(&bytes, 1000).unwrap());
    }
    appends
}

#[test]
fn a_follower_copies_the_leader_byte_for_byte() {
    let config = small();
    let ld = tempfile::tempdir().unwrap();
    let leader = leader_log(ld.path(), &config);
    let fd = tempfile::tempdir().unwrap();
    let mut follower = open(fd.path(), config.clone());
    for max in [1, 700, 1 << 20] {
        follower.truncate_fully_and_start_at(0).unwrap();
        let appends = replicate(&leader, &mut follower, max);
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(bytes_from(&follower, 0), bytes_from(&leader, 0));
        assert_eq!(epochs(&follower), epochs(&leader));
        let headers: Vec<_> = appends.iter().flat_map(|a| a.batches.clone()).collect();
        assert_eq!(headers.len(), batch_epochs(&leader).len());
        let markers: Vec<_> = headers.iter().filter(|b| b.control.is_some()).collect();
        assert_eq!(markers.len(), 1);
        assert!(markers[0].header.is_control() && markers[0].header.is_transactional());
        assert_eq!(markers[0].header.producer_id, 42);
        assert!(markers[0].control.unwrap().is_abort());
        for a in &appends {
            assert_eq!(a.log_end_offset, a.last_offset + 1);
            assert_eq!(a.first_offset, a.batches[0].header.base_offset);
        }
        assert!(follower.segment_count() > 1, "the follower rolls too");
        check_consistent(fd.path(), &follower, &config);
    }
    // Offsets, timestamps and the max-timestamp batch agree.
    assert_eq!(
        follower.max_timestamp_batch().unwrap().unwrap().0,
        leader.max_timestamp_batch().unwrap().unwrap().0
    );
}

#[test]
fn a_follower_refuses_what_does_not_follow_its_log() {
    let config = LogConfig::default();
    let ld = tempfile::tempdir().unwrap();
    let mut leader = open(ld.path(), config.clone());
    append(&mut leader, 3, 10, 1);
    append(&mut leader, 2, 10, 1);
    append(&mut leader, 2, 10, 3);
    let all = bytes_from(&leader, 0);
    let batches: Vec<(usize, usize)> = BatchIter::new(&all)
        .map(|(at, h)| (at, h.total_len()))
        .collect();
    let batch = |i: usize| all[batches[i].0..batches[i].0 + batches[i].1].to_vec();

    let fd = tempfile::tempdir().unwrap();
    let mut f = open(fd.path(), config.clone());
    let unchanged = |f: &Log, leo: i64| {
        assert_eq!(f.log_end_offset(), leo);
        assert_eq!(f.size_bytes() as usize, bytes_from(f, 0).len());
    };
    // Not starting at the log end... a gap forward is allowed (compaction) but not backwards.
    f.append_as_follower(&batch(0), 0).unwrap();
    assert!(matches!(
        f.append_as_follower(&batch(0), 0),
        Err(StorageError::InvalidRecord(_))
    ));
    unchanged(&f, 3);
    // Out of order inside one buffer.
    let mut swapped = batch(2);
    swapped.extend(batch(1));
    assert!(matches!(
        f.append_as_follower(&swapped, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    unchanged(&f, 3);
    // A corrupt CRC, a bad magic, a partial trailing batch, an empty buffer.
    let mut bad = batch(1);
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        f.append_as_follower(&bad, 0),
        Err(StorageError::CorruptMessage(_))
    ));
    let mut magic = batch(1);
    magic[16] = 1;
    assert!(matches!(
        f.append_as_follower(&magic, 0),
        Err(StorageError::UnsupportedMessageFormat(_))
    ));
    let mut partial = batch(1);
    partial.extend(&batch(2)[..30]);
    assert!(matches!(
        f.append_as_follower(&partial, 0),
        Err(StorageError::CorruptMessage(_))
    ));
    assert!(f.append_as_follower(&[], 0).is_err());
    unchanged(&f, 3);
    assert!(f.leader_epoch_cache().entries().len() == 1);
    // Epochs must not go backwards: the follower already holds epoch 3 data at 5.
    let mut ahead = batch(1);
    ahead.extend(batch(2));
    f.append_as_follower(&ahead, 0).unwrap();
    assert_eq!(epochs(&f), vec![(1, 0), (3, 5)]);
    // A leader batch of epoch 1 after epoch 3 (built by restamping the offset of batch 1).
    let mut stale = batch(1);
    stale[..8].copy_from_slice(&7i64.to_be_bytes());
    assert!(matches!(
        f.append_as_follower(&stale, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    unchanged(&f, 7);
    // A forward gap (a compacted leader) is copied as it is.
    let mut gap = batch(2);
    gap[..8].copy_from_slice(&20i64.to_be_bytes());
    let a = f.append_as_follower(&gap, 0).unwrap();
    assert_eq!(
        (a.first_offset, a.last_offset, a.log_end_offset),
        (20, 21, 22)
    );
    check_consistent(fd.path(), &f, &config);
}

#[test]
fn hostile_replicated_buffers_never_panic_nor_corrupt_the_log() {
    let config = small();
    let ld = tempfile::tempdir().unwrap();
    let mut leader = open(ld.path(), config.clone());
    for i in 0..6 {
        append(&mut leader, 2, 10 + i, i as i32 / 2);
    }
    let good = bytes_from(&leader, 0);
    let fd = tempfile::tempdir().unwrap();
    let mut f = open(fd.path(), config.clone());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut accepted = 0;
    for round in 0..3000 {
        let mut b = good.clone();
        match round % 4 {
            0 => {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            1 => {
                let cut = (next() as usize) % b.len();
                b.truncate(cut);
            }
            2 => {
                // Hostile header fields: lengths, offsets, deltas.
                let at = [0usize, 8, 12, 16, 23][(next() as usize) % 5];
                let off = (next() as usize) % 4;
                if let Some(x) = b.get_mut(at + off) {
                    *x = next() as u8;
                }
            }
            _ => {
                let at = (next() as usize) % b.len();
                b.insert(at, next() as u8);
            }
        }
        let before = f.log_end_offset();
        match f.append_as_follower(&b, 0) {
            Ok(a) => {
                accepted += 1;
                assert!(a.first_offset >= before);
                f.truncate_fully_and_start_at(0).unwrap();
            }
            Err(_) => assert_eq!(f.log_end_offset(), before),
        }
    }
    // Flipping an offset field keeps the CRC valid, so some mutations are legal appends.
    assert!(accepted > 0);
    f.append_as_follower(&good, 0).unwrap();
    assert_eq!(bytes_from(&f, 0), good);
    check_consistent(fd.path(), &f, &config);
}

#[test]
fn truncate_to_cuts_at_the_batch_holding_the_offset() {
    let config = small();
    let ld = tempfile::tempdir().unwrap();
    let mut log = leader_log(ld.path(), &config);
    let original = batch_epochs(&log);
    let leo = log.log_end_offset();
    assert_eq!(log.truncate_to(leo).unwrap(), leo, "no-op at the end");
    assert_eq!(log.truncate_to(leo + 10).unwrap(), leo);
    // Snapshots at, below and above the cut.
    let cut_batch = original[original.len() / 2];
    for s in [cut_batch.0, cut_batch.0 + 1, leo] {
        producer_snapshot::write(ld.path(), s, b"x").unwrap();
    }
    // A mid-batch offset: the whole batch goes, and the end is its base offset.
    let (next_base, _) = original[original.len() / 2 + 1];
    let mid = cut_batch.0 + (next_base - cut_batch.0) / 2;
    let segments = log.segment_count();
    let target = if next_base - cut_batch.0 > 1 {
        mid
    } else {
        cut_batch.0
    };
    let end = log.truncate_to(target).unwrap();
    assert_eq!(end, cut_batch.0);
    assert_eq!(log.log_end_offset(), end);
    assert!(log.segment_count() < segments);
    assert_eq!(
        batch_epochs(&log),
        original
            .iter()
            .copied()
            .filter(|b| b.0 < end)
            .collect::<Vec<_>>()
    );
    assert!(epochs(&log).iter().all(|e| e.1 < end));
    assert_eq!(
        producer_snapshot::list(ld.path()).unwrap(),
        vec![cut_batch.0]
    );
    check_consistent(ld.path(), &log, &config);
    // The log goes on: appends, rolls and reads after a truncation.
    for i in 0..20 {
        append(&mut log, 2, 900 + i, 20);
    }
    check_consistent(ld.path(), &log, &config);
    // At a segment's base offset: that segment is left empty and active.
    let mut log = {
        drop(log);
        open(ld.path(), config.clone())
    };
    let bases: Vec<i64> = fs::read_dir(ld.path())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    let mut bases = bases;
    bases.sort_unstable();
    let base = bases[2];
    assert_eq!(log.truncate_to(base).unwrap(), base);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.active_base_offset(), base);
    check_consistent(ld.path(), &log, &config);
    // Offset 2 is inside the batch [1, 2]; the log start follows the end down.
    log.delete_records_before(5).unwrap();
    assert_eq!(bases[0], 0);
    assert_eq!(log.truncate_to(2).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 1);
    check_consistent(ld.path(), &log, &config);
    // Below the first segment: emptied and restarted there.
    log.truncate_fully_and_start_at(100).unwrap();
    append(&mut log, 3, 10, 30);
    assert_eq!(log.truncate_to(50).unwrap(), 50);
    assert_eq!((log.log_start_offset(), log.segment_count()), (50, 1));
    assert!(epochs(&log).is_empty());
    check_consistent(ld.path(), &log, &config);
}

#[test]
fn truncate_to_keeps_indexes_timestamps_and_txn_index_right() {
    let config = LogConfig {
        segment_bytes: 100_000,
        index_interval_bytes: 150,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config.clone());
    for i in 0..50 {
        // Timestamps rise then fall so the max is in the middle.
        let ts = if i < 30 { 1000 + i } else { 500 + i };
        append(&mut log, 1, ts, 1);
    }
    log.add_aborted_txn(crate::AbortedTxnEntry {
        producer_id: 1,
        first_offset: 3,
        last_offset: 10,
        last_stable_offset: 11,
    })
    .unwrap();
    log.add_aborted_txn(crate::AbortedTxnEntry {
        producer_id: 2,
        first_offset: 20,
        last_offset: 40,
        last_stable_offset: 41,
    })
    .unwrap();
    assert_eq!(log.truncate_to(25).unwrap(), 25);
    assert_eq!(log.max_timestamp_batch().unwrap().unwrap().0, 1024);
    assert_eq!(log.aborted_txns(0, 100).len(), 1);
    let slice = log.find_by_timestamp(1010).unwrap().unwrap();
    let bytes = slice.load().unwrap();
    assert_eq!(BatchIter::new(&bytes).next().unwrap().1.base_offset, 10);
    assert!(log.find_by_timestamp(1025).unwrap().is_none());
    for i in 0..25 {
        append(&mut log, 1, 2000 + i, 2);
    }
    // Roll so the truncated segment's indexes are written, then reopen: they must be trusted
    // and right.
    log.roll().unwrap();
    drop(log);
    let log = open(dir.path(), config.clone());
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(log.max_timestamp_batch().unwrap().unwrap().0, 2024);
    assert_eq!(epochs(&log), vec![(1, 0), (2, 25)]);
    check_consistent(dir.path(), &log, &config);
    let slice = log.find_by_timestamp(2010).unwrap().unwrap();
    let bytes = slice.load().unwrap();
    assert_eq!(BatchIter::new(&bytes).next().unwrap().1.base_offset, 35);
}

#[test]
fn truncate_fully_and_start_at_restarts_the_log() {
    let config = small();
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_log(dir.path(), &config);
    producer_snapshot::write(dir.path(), 10, b"x").unwrap();
    log.truncate_fully_and_start_at(1000).unwrap();
    assert_eq!(log.log_start_offset(), 1000);
    assert_eq!(log.log_end_offset(), 1000);
    assert_eq!(log.segment_count(), 1);
    assert!(epochs(&log).is_empty());
    assert!(producer_snapshot::list(dir.path()).unwrap().is_empty());
    let logs: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.ends_with(".log").then_some(n)
        })
        .collect();
    assert_eq!(logs, vec![format!("{:020}.log", 1000)]);
    check_consistent(dir.path(), &log, &config);
    assert_eq!(append(&mut log, 2, 10, 9), (1000, 1001));
    assert_eq!(epochs(&log), vec![(9, 1000)]);
    check_consistent(dir.path(), &log, &config);
    // A follower whose log is behind the leader's start restarts at it and replicates.
    let ld = tempfile::tempdir().unwrap();
    let mut leader = leader_log(ld.path(), &config);
    leader.delete_records_before(25).unwrap();
    let fd = tempfile::tempdir().unwrap();
    let mut f = open(fd.path(), config.clone());
    let start = leader.log_start_offset();
    f.truncate_fully_and_start_at(start).unwrap();
    // The leader serves the batch holding its log start, which begins below it (DeleteRecords
    // is not batch aligned): the empty follower log is rebased at that batch, as Kafka's
    // `Partition.appendRecordsToFollowerOrFutureReplica` does, keeping its log start.
    let first = leader.read(start, 1).unwrap().unwrap().load().unwrap();
    let base = BatchIter::new(&first).next().unwrap().1.base_offset;
    assert!(base < start);
    replicate(&leader, &mut f, 4096);
    assert_eq!(f.log_start_offset(), start);
    assert_eq!(bytes_from(&f, start), bytes_from(&leader, start));
    assert_eq!(epochs(&f), epochs(&leader));
    check_consistent(fd.path(), &f, &config);
    assert!(matches!(
        log.truncate_fully_and_start_at(-1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

/// Copies a partition directory (a crash image taken at some point of an operation).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn seg_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Crash images of `truncate_to` and `truncate_fully_and_start_at`, at each step of their
/// documented order: every one opens as a valid log that is a prefix of the log before the
/// operation or the intended result.
#[test]
fn a_crash_in_the_middle_of_a_truncation_recovers_a_valid_log() {
    let config = small();
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    let log = leader_log(&src, &config);
    let before = batch_epochs(&log);
    let full_epochs = epochs(&log);
    drop(log);
    let segs = seg_files(&src);
    assert!(segs.len() >= 4);
    let is_prefix = |log: &Log| {
        let got = batch_epochs(log);
        assert_eq!(got[..], before[..got.len()]);
        assert!(epochs(log).iter().all(|e| e.1 < log.log_end_offset()));
        let expected_epochs: Vec<_> = full_epochs
            .iter()
            .copied()
            .filter(|e| e.1 < log.log_end_offset())
            .collect();
        assert_eq!(epochs(log), expected_epochs);
    };
    // 1. Snapshots removed, the last segment removed, the others not yet.
    let img = root.path().join("img1");
    copy_dir(&src, &img);
    fs::remove_file(img.join(segs.last().unwrap().file_name().unwrap())).unwrap();
    let log = open(&img, config.clone());
    is_prefix(&log);
    check_consistent(&img, &log, &config);
    // 2. Later segments gone and the cut segment torn mid-batch (set_len not yet durable
    //    leaves the old length; a partial write of metadata could leave any length).
    let img = root.path().join("img2");
    copy_dir(&src, &img);
    for s in &segs[2..] {
        fs::remove_file(img.join(s.file_name().unwrap())).unwrap();
    }
    let cut = img.join(segs[1].file_name().unwrap());
    let len = fs::metadata(&cut).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len / 2 + 3)
        .unwrap();
    let log = open(&img, config.clone());
    is_prefix(&log);
    check_consistent(&img, &log, &config);
    // 3. Every segment gone (truncate_fully), the new one not yet created, with the old and
    //    with the new log-start-offset file.
    for (i, start) in [(3, None), (4, Some(777i64))] {
        let img = root.path().join(format!("img{i}"));
        copy_dir(&src, &img);
        for s in &segs {
            fs::remove_file(img.join(s.file_name().unwrap())).unwrap();
        }
        if let Some(start) = start {
            fs::write(img.join("log-start-offset"), start.to_string()).unwrap();
        }
        let log = open(&img, config.clone());
        assert_eq!(log.log_end_offset(), start.unwrap_or(0));
        assert_eq!(log.log_start_offset(), start.unwrap_or(0));
        assert!(
            epochs(&log).is_empty(),
            "the stale checkpoint is cut to the empty log"
        );
        check_consistent(&img, &log, &config);
    }
    // 4. The real operations, then a reopen (a crash right after they return).
    let img = root.path().join("img5");
    copy_dir(&src, &img);
    let mut log = open(&img, config.clone());
    let target = before[before.len() / 3].0;
    let end = log.truncate_to(target).unwrap();
    drop(log);
    let log = open(&img, config.clone());
    assert_eq!(log.log_end_offset(), end);
    is_prefix(&log);
}

#[test]
fn the_epoch_checkpoint_is_written_durably_and_only_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    crate::durability::take_synced_dirs();
    append(&mut log, 1, 10, 2);
    assert!(
        crate::durability::take_synced_dirs().contains(&dir.path().to_path_buf()),
        "a new epoch's checkpoint rename is made durable"
    );
    append(&mut log, 1, 10, 2);
    assert!(
        crate::durability::take_synced_dirs().is_empty(),
        "an append in the same epoch writes no checkpoint"
    );
    assert!(!dir
        .path()
        .join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"))
        .exists());
    assert_eq!(
        leader_epoch::read_checkpoint(dir.path()).unwrap(),
        Checkpoint::Loaded(crate::LeaderEpochCache::from_entries([EpochEntry {
            epoch: 2,
            start_offset: 0
        }]))
    );
}

/// Random appends (leader and follower style), truncations, DeleteRecords and reopens on small
/// segments, checked after every operation against a model of the batches, their epochs and
/// their timestamps: reads at every batch, the epoch cache, and what a reopen finds.
#[test]
fn random_truncations_and_appends_match_a_model() {
    let config = LogConfig {
        segment_bytes: 900,
        index_interval_bytes: 150,
        ..LogConfig::default()
    };
    for seed in 0..5u64 {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n.max(1)
        };
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config.clone());
        // (base offset, last offset, epoch, max timestamp)
        let mut model: Vec<(i64, i64, i32, i64)> = Vec::new();
        let mut epoch = 0;
        let mut ts = 1000;
        // DeleteRecords keeps batches below the new start in their segment (readable by time
        // as in Kafka), which the model does not track: the max-timestamp check stops then.
        let mut deleted = false;
        for _ in 0..120 {
            match next(10) {
                0..=5 => {
                    if next(6) == 0 {
                        epoch += 1;
                    }
                    let count = 1 + next(3) as i32;
                    ts += next(20) as i64 - 5;
                    let (first, last) = append(&mut log, count, ts, epoch);
                    model.push((first, last, epoch, ts));
                }
                6 | 7 => {
                    let leo = log.log_end_offset();
                    let start = log.log_start_offset();
                    let target = start + next((leo - start + 2) as u64) as i64;
                    let end = log.truncate_to(target).unwrap();
                    if target < leo {
                        model.retain(|b| b.1 < target);
                        let expected = model.last().map_or(start.min(end), |b| b.1 + 1);
                        assert_eq!(end, expected.max(end.min(start)), "seed {seed}");
                    }
                    assert_eq!(log.log_end_offset(), end);
                }
                8 => {
                    let leo = log.log_end_offset();
                    let start = log.log_start_offset();
                    let to = start + next((leo - start + 1) as u64) as i64;
                    log.delete_records_before(to).unwrap();
                    deleted = true;
                }
                _ => {
                    drop(log);
                    log = open(dir.path(), config.clone());
                }
            }
            // The model's batches at or after the log start are exactly the log's.
            let start = log.log_start_offset();
            let visible: Vec<(i64, i32)> = model
                .iter()
                .filter(|b| b.1 >= start)
                .map(|b| (b.0, b.2))
                .collect();
            assert_eq!(batch_epochs(&log), visible, "seed {seed}");
            assert_eq!(
                log.log_end_offset(),
                model.last().map_or(log.log_end_offset(), |b| b.1 + 1)
            );
            // Epoch cache: each epoch starts at its first batch at or after the log start.
            for &(base, _, e, _) in model.iter().filter(|b| b.1 >= start) {
                assert!(log
                    .leader_epoch_cache()
                    .entries()
                    .iter()
                    .any(|x| x.epoch == e && x.start_offset <= base.max(start)));
            }
            let max_ts = model.iter().filter(|b| b.1 >= start).map(|b| b.3).max();
            if let Some(max_ts) = max_ts.filter(|_| !deleted) {
                assert_eq!(log.max_timestamp_batch().unwrap().unwrap().0, max_ts);
            }
        }
        check_consistent(dir.path(), &log, &config);
    }
}

#[test]
fn a_follower_rolls_at_a_gap_too_wide_for_one_segment() {
    let config = LogConfig::default();
    let fd = tempfile::tempdir().unwrap();
    let mut f = open(fd.path(), config.clone());
    let restamp = |b: &[u8], base: i64| {
        let mut b = b.to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        b
    };
    let one = make_batch(2, 10, 5);
    f.append_as_follower(&restamp(&one, 0), 0).unwrap();
    // Compaction left a gap of more than 2^31 offsets: 32-bit relative offsets cannot span
    // it, so the follower rolls at the batch's own base offset.
    let far = 3_000_000_000i64;
    let mut two = restamp(&one, far);
    two.extend(restamp(&one, far + 2));
    let a = f.append_as_follower(&two, 0).unwrap();
    assert_eq!((a.first_offset, a.log_end_offset), (far, far + 4));
    assert_eq!(f.segment_count(), 2);
    assert_eq!(f.active_base_offset(), far);
    check_consistent(fd.path(), &f, &config);
    // An empty log far below the first batch: its empty segment is replaced, not kept.
    let gd = tempfile::tempdir().unwrap();
    let mut g = open(gd.path(), config.clone());
    g.append_as_follower(&restamp(&one, far), 0).unwrap();
    assert_eq!(g.segment_count(), 1);
    assert_eq!(g.active_base_offset(), far);
    assert_eq!(g.log_end_offset(), far + 2);
    check_consistent(gd.path(), &g, &config);
}

/// A crash at every directory-fsync point of `truncate_to`, `truncate_fully_and_start_at` and
/// a follower append with a roll: the directory reopens as a valid log that is a prefix of the
/// log before the operation or the intended result, with an epoch cache that matches it.
#[test]
fn a_crash_at_each_durability_point_recovers_a_valid_log() {
    let config = small();
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    let log = leader_log(&src, &config);
    let before = batch_epochs(&log);
    let full_epochs = epochs(&log);
    let leader_bytes = bytes_from(&log, 0);
    drop(log);
    let target = before[before.len() / 3].0;
    type Op = fn(&mut Log, i64) -> crate::Result<()>;
    let ops: [(&str, Op); 3] = [
        ("truncate_to", |l, t| l.truncate_to(t).map(|_| ())),
        ("truncate_fully", |l, t| l.truncate_fully_and_start_at(t)),
        ("truncate then follow", |l, t| {
            l.truncate_to(t)?;
            l.truncate_fully_and_start_at(0)?;
            Ok(())
        }),
    ];
    for (name, op) in ops {
        let mut completed = false;
        for crash_at in 0..64 {
            let img = root.path().join(format!("{name}-{crash_at}"));
            copy_dir(&src, &img);
            producer_snapshot::write(&img, before[before.len() - 1].0, b"s").unwrap();
            let mut log = open(&img, config.clone());
            crate::durability::crash_after_dir_syncs(Some(crash_at));
            let result = op(&mut log, target);
            crate::durability::crash_after_dir_syncs(None);
            drop(log);
            let log = open(&img, config.clone());
            let got = batch_epochs(&log);
            let start = log.log_start_offset();
            // A prefix of the old log (from its start), or the empty log of the result.
            let old_from_start: Vec<_> = before
                .iter()
                .copied()
                .filter(|b| b.0 >= start || got.first() == Some(b))
                .collect();
            assert_eq!(
                got[..],
                old_from_start[..got.len()],
                "{name}, crash after {crash_at} directory syncs"
            );
            let expected: Vec<_> = full_epochs
                .iter()
                .copied()
                .filter(|e| e.1 < log.log_end_offset())
                .map(|e| (e.0, e.1.max(start)))
                .collect();
            let cache = epochs(&log);
            assert!(
                cache.iter().all(|e| expected.contains(e) || e.1 == start),
                "{name}, crash after {crash_at}: cache {cache:?}, expected {expected:?}"
            );
            assert!(cache.iter().all(|e| e.1 < log.log_end_offset()));
            check_consistent(&img, &log, &config);
            if result.is_ok() {
                // Each operation has several durability points; all of them were crashed at.
                assert!(crash_at >= 2, "{name} completed after {crash_at} syncs");
                completed = true;
                break;
            }
        }
        assert!(completed, "{name} never completed");
    }
    // And a follower append that rolls segments, crashed at each point: a prefix of the
    // leader's bytes.
    let mut completed = false;
    for crash_at in 0..64 {
        let img = root.path().join(format!("follow-{crash_at}"));
        let mut f = open(&img, config.clone());
        crate::durability::crash_after_dir_syncs(Some(crash_at));
        let result = f.append_as_follower(&leader_bytes, 0);
        crate::durability::crash_after_dir_syncs(None);
        drop(f);
        let f = open(&img, config.clone());
        let got = bytes_from(&f, 0);
        assert_eq!(
            got[..],
            leader_bytes[..got.len()],
            "follow, crash at {crash_at}"
        );
        assert!(epochs(&f).iter().all(|e| e.1 < f.log_end_offset()));
        check_consistent(&img, &f, &config);
        if result.is_ok() {
            assert!(crash_at >= 2, "the append rolls, creating segments");
            completed = true;
            assert_eq!(got, leader_bytes);
            break;
        }
    }
    assert!(completed);
}

#[test]
fn a_cleaning_planned_before_a_truncation_is_abandoned() {
    use crate::cleaner::{CleanOptions, UncompressedOnly};
    let config = small();
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config.clone());
    for i in 0..30 {
        append(&mut log, 2, 100 + i, 1);
    }
    assert!(log.segment_count() > 3);
    let before = bytes_from(&log, 0);
    let c = log.cleanable(log.log_end_offset(), 10_000, 0, i64::MAX);
    let plan = log.plan_clean(&c).unwrap();
    let done = plan
        .execute(
            &CleanOptions {
                now_ms: 10_000,
                ..CleanOptions::default()
            },
            &UncompressedOnly,
        )
        .unwrap();
    // Meanwhile a follower truncates and copies batches that rebuild segments with the same
    // offsets and sizes (same shapes, other data).
    log.truncate_to(4).unwrap();
    for i in 0..28 {
        append(&mut log, 2, 500 + i, 2);
    }
    let after = bytes_from(&log, 0);
    assert_eq!(after.len(), before.len());
    assert_ne!(after, before);
    let stats = log.install_clean(done).unwrap();
    assert!(stats.abandoned, "the round's output is of the old data");
    assert_eq!(bytes_from(&log, 0), after);
    check_consistent(dir.path(), &log, &config);
}
