//! The replication rules driven against real logs (`sluice_storage::Log`), the way the broker
//! wires them: the leader answers fetches with `LeaderState::on_follower_fetch` and
//! `Log::end_offset_for`, the follower truncates with `truncation_offset` and
//! `Log::truncate_to`, and copies batches with `Log::append_as_follower`. The classic
//! KIP-101/KIP-279 divergence scenarios end with byte-identical logs.

use std::path::Path;

use sluice_replica::{truncation_offset, FollowerFetch, LeaderInit, LeaderState};
use sluice_storage::{Log, LogConfig};

const NOW: i64 = 1_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config(), NOW, &mut |_| {}).unwrap()
}

/// A minimal valid uncompressed batch of `count` records (the broker's producers send these).
fn batch(count: i32, tag: u8) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..count {
        // attributes, timestamp delta, offset delta (zigzag varints), key -1, value 1 byte, 0 headers
        let rec = [0u8, 0, (i as u8) << 1, 1, 2, tag, 0];
        records.push(rec.len() as u8 * 2);
        records.extend(rec);
    }
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend(((61 - 12 + records.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(0i16.to_be_bytes());
    b.extend((count - 1).to_be_bytes());
    b.extend(NOW.to_be_bytes());
    b.extend(NOW.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(records);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// CRC-32C (Castagnoli), bitwise: the test needs no dependency for it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn produce(log: &mut Log, epoch: i32, count: i32, tag: u8) {
    let b = batch(count, tag);
    let batches = log.validate(&b, NOW).unwrap();
    log.append(&b, &batches, epoch, NOW).unwrap();
}

fn all_bytes(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let bytes = log.read(at, 1 << 20).unwrap().unwrap().load().unwrap();
        let mut pos = 0;
        while pos + 61 <= bytes.len() {
            let len =
                i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize + 12;
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
            let delta = i32::from_be_bytes(bytes[pos + 23..pos + 27].try_into().unwrap());
            at = base + i64::from(delta) + 1;
            pos += len;
        }
        out.extend(bytes);
    }
    out
}

fn leader_state(id: i32, epoch: i32, log: &Log, isr: Vec<i32>) -> LeaderState {
    LeaderState::new(LeaderInit {
        local_id: id,
        leader_epoch: epoch,
        partition_epoch: epoch,
        replicas: vec![1, 2, 3],
        isr,
        min_isr: 1,
        replica_lag_time_max_ms: 30_000,
        local_leo: log.log_end_offset(),
        high_watermark: 0,
        log_start_offset: log.log_start_offset(),
        now_ms: NOW,
    })
}

/// Runs the follower's fetch loop against the leader until it has caught up. Returns how many
/// truncations it did.
fn catch_up(leader: &Log, state: &mut LeaderState, follower_id: i32, follower: &mut Log) -> usize {
    let mut truncations = 0;
    for _ in 0..1000 {
        let fetch_offset = follower.log_end_offset();
        let answer = state.on_follower_fetch(
            follower_id,
            -1,
            fetch_offset,
            follower.latest_epoch(),
            NOW,
            leader.log_end_offset(),
            |e| leader.end_offset_for(e),
        );
        match answer {
            FollowerFetch::Diverging { epoch, end_offset } => {
                let t = truncation_offset(
                    (epoch, end_offset),
                    |e| follower.end_offset_for(e),
                    follower.log_end_offset(),
                    0,
                );
                let end = follower.truncate_to(t.offset).unwrap();
                assert!(end <= t.offset);
                truncations += 1;
            }
            FollowerFetch::Serve { .. } => {
                if fetch_offset == leader.log_end_offset() {
                    return truncations;
                }
                let bytes = leader
                    .read(fetch_offset, 300)
                    .unwrap()
                    .unwrap()
                    .load()
                    .unwrap();
                follower.append_as_follower(&bytes, NOW).unwrap();
            }
            FollowerFetch::Error(e) => panic!("fetch refused: {e:?}"),
        }
    }
    panic!("the follower did not catch up");
}

#[test]
fn a_deposed_leader_truncates_its_unreplicated_tail_and_copies_the_new_leader() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b) = (open(da.path()), open(db.path()));
    // A leads epoch 1; B copies the first three batches.
    for i in 0..5 {
        produce(&mut a, 1, 2, i);
    }
    let mut sa = leader_state(1, 1, &a, vec![1, 2]);
    let copied = a.read(0, 1 << 20).unwrap().unwrap().load().unwrap();
    // Three batches of two records: 3 * (61 + 2 * 8) bytes.
    b.append_as_follower(&copied[..3 * 77], NOW).unwrap();
    assert_eq!(b.log_end_offset(), 6);
    // A fails; B leads epoch 2 and appends.
    b.assign_leader_epoch(2).unwrap();
    produce(&mut b, 2, 3, 50);
    produce(&mut b, 2, 1, 51);
    let mut sb = leader_state(2, 2, &b, vec![2]);
    assert!(sa.resign().is_empty());
    // A returns as a follower: epoch 1 ended at 6 on B; A's offsets 6..10 go.
    let truncations = catch_up(&b, &mut sb, 1, &mut a);
    assert_eq!(truncations, 1);
    assert_eq!(all_bytes(&a), all_bytes(&b));
    assert_eq!(
        a.leader_epoch_cache().entries(),
        b.leader_epoch_cache().entries()
    );
    assert_eq!(a.end_offset_for(1), (1, 6));
    // Both logs reopen to the same state.
    drop(a);
    let a = open(da.path());
    assert_eq!(all_bytes(&a), all_bytes(&b));
}

#[test]
fn a_follower_with_an_epoch_the_leader_never_had_truncates_to_its_own_end() {
    // A leads epoch 1 (8 records); C copies all of it, B only 4. B leads epoch 2 briefly and
    // writes 2 records nobody copies; C then leads epoch 3 from its longer epoch-1 log.
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (mut a, mut b, mut c) = (open(da.path()), open(db.path()), open(dc.path()));
    for i in 0..4 {
        produce(&mut a, 1, 2, i);
    }
    let all = a.read(0, 1 << 20).unwrap().unwrap().load().unwrap();
    c.append_as_follower(&all, NOW).unwrap();
    b.append_as_follower(&all[..2 * 77], NOW).unwrap();
    b.assign_leader_epoch(2).unwrap();
    produce(&mut b, 2, 2, 20);
    c.assign_leader_epoch(3).unwrap();
    produce(&mut c, 3, 2, 30);
    let mut sc = leader_state(3, 3, &c, vec![3]);
    // B's last epoch 2 is unknown to C: C answers with epoch 1 ending at 8; B knows epoch 1
    // ended at 4 on its side and truncates there (Kafka's rule: the smaller end).
    let truncations = catch_up(&c, &mut sc, 2, &mut b);
    assert!(truncations >= 1);
    assert_eq!(all_bytes(&b), all_bytes(&c));
    assert_eq!(
        b.leader_epoch_cache().entries(),
        c.leader_epoch_cache().entries()
    );
    // A (epoch 1 only, as long as C's epoch 1) needs no truncation at all.
    assert_eq!(catch_up(&c, &mut sc, 1, &mut a), 0);
    assert_eq!(all_bytes(&a), all_bytes(&c));
    // Everyone fetched to the end: the HW is the LEO.
    assert_eq!(sc.high_watermark(), c.log_end_offset());
}

#[test]
fn unknown_epochs_on_both_sides_take_more_than_one_round() {
    // F has epochs 1 and 4; L has epochs 1, 3 and 5, its epoch 1 shorter than F's.
    let (df, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut f, mut l) = (open(df.path()), open(dl.path()));
    for i in 0..3 {
        produce(&mut f, 1, 2, i);
    }
    let all = f.read(0, 1 << 20).unwrap().unwrap().load().unwrap();
    l.append_as_follower(&all[..77], NOW).unwrap();
    f.assign_leader_epoch(4).unwrap();
    produce(&mut f, 4, 1, 40);
    l.assign_leader_epoch(3).unwrap();
    produce(&mut l, 3, 3, 30);
    l.assign_leader_epoch(5).unwrap();
    produce(&mut l, 5, 1, 50);
    let mut sl = leader_state(2, 5, &l, vec![2]);
    // Round 1: F's epoch 4 -> L says (3, 5); F has no epoch 3, its floor is 1 ending at 6:
    // truncate to 6, not complete. Round 2: F's epoch 1 -> L says (1, 2): truncate to 2.
    let (e, end) = l.end_offset_for(4);
    assert_eq!((e, end), (3, 5));
    let t = truncation_offset((e, end), |x| f.end_offset_for(x), f.log_end_offset(), 0);
    assert!(!t.complete);
    assert_eq!(t.offset, 6);
    let truncations = catch_up(&l, &mut sl, 1, &mut f);
    assert_eq!(truncations, 2);
    assert_eq!(all_bytes(&f), all_bytes(&l));
    assert_eq!(
        f.leader_epoch_cache().entries(),
        l.leader_epoch_cache().entries()
    );
}

/// A replica elected leader that never appended in its epoch, then replaced: its epoch cache
/// ends with an epoch the new leader's log never had, at its own log end. It must still follow
/// (Kafka's `truncateTo` drops such an entry even when no data goes).
#[test]
fn a_former_leader_that_wrote_nothing_in_its_epoch_can_follow_again() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b) = (open(da.path()), open(db.path()));
    // B leads epoch 3 and writes three batches; A copies them.
    b.assign_leader_epoch(3).unwrap();
    for i in 0..3 {
        produce(&mut b, 3, 1, i);
    }
    let copied = b.read(0, 1 << 20).unwrap().unwrap().load().unwrap();
    a.append_as_follower(&copied, NOW).unwrap();
    assert_eq!(a.log_end_offset(), 3);
    // B writes three more at epoch 4, which A does not get.
    b.assign_leader_epoch(4).unwrap();
    for i in 3..6 {
        produce(&mut b, 4, 1, i);
    }
    // A is elected at epoch 5 and writes nothing; then B leads again at epoch 6.
    a.assign_leader_epoch(5).unwrap();
    assert_eq!(a.latest_epoch(), Some(5));
    b.assign_leader_epoch(6).unwrap();
    produce(&mut b, 6, 1, 9);
    let mut sb = leader_state(2, 6, &b, vec![2]);
    let truncations = catch_up(&b, &mut sb, 1, &mut a);
    assert!(truncations >= 1);
    assert_eq!(all_bytes(&a), all_bytes(&b));
    assert_eq!(
        a.leader_epoch_cache().entries(),
        b.leader_epoch_cache().entries()
    );
    // The dropped entry stays dropped after a reopen.
    drop(a);
    let a = open(da.path());
    assert_eq!(a.latest_epoch(), Some(6));
    assert_eq!(all_bytes(&a), all_bytes(&b));
}
