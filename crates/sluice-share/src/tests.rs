//! Unit tests: time is driven by hand through `now_ms`, no sleeps.

use std::collections::{HashMap, HashSet};

use crate::*;

const ACCEPT: i8 = 1;
const RELEASE: i8 = 2;
const REJECT: i8 = 3;
const RENEW: i8 = 4;
const GAP: i8 = 0;

fn mid(s: &str) -> MemberId {
    MemberId::from(s)
}

fn cfg() -> ShareConfig {
    ShareConfig::default()
}

fn r(first: i64, last: i64, count: u16) -> AcquiredRange {
    AcquiredRange {
        first_offset: first,
        last_offset: last,
        delivery_count: count,
    }
}

/// Offsets of a set of ranges, flattened.
fn offsets(ranges: &[AcquiredRange]) -> Vec<i64> {
    ranges
        .iter()
        .flat_map(|r| r.first_offset..=r.last_offset)
        .collect()
}

fn is_state(e: &AckError) -> bool {
    matches!(e, AckError::InvalidRecordState(_))
}

fn is_request(e: &AckError) -> bool {
    matches!(e, AckError::InvalidRequest(_))
}

#[test]
fn two_members_split_records_without_overlap() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    let ra = p.acquire(&a, 6, 0, 10, 0, &c);
    let rb = p.acquire(&b, 6, 0, 10, 0, &c);
    assert_eq!(ra, vec![r(0, 5, 1)]);
    assert_eq!(rb, vec![r(6, 9, 1)]);
    assert!(p.acquire(&a, 6, 0, 10, 0, &c).is_empty());
    assert_eq!(p.in_flight(), 10);
    assert_eq!(p.end_offset(), 10);
    p.assert_consistent();
}

#[test]
fn max_records_is_honoured() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(100);
    assert_eq!(p.acquire(&a, 3, 0, 1000, 0, &c), vec![r(100, 102, 1)]);
    assert_eq!(p.acquire(&a, 1, 0, 1000, 0, &c), vec![r(103, 103, 1)]);
    assert!(p.acquire(&a, 0, 0, 1000, 0, &c).is_empty());
    assert_eq!(p.in_flight(), 4);
}

#[test]
fn accepted_records_are_not_redelivered() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 5, 0, 5, 0, &c);
    p.acknowledge(&a, 0, 4, &[ACCEPT], 10, &c).unwrap();
    assert_eq!(p.start_offset(), 5);
    assert_eq!(p.in_flight(), 0);
    // Long after any lock would have expired, a new member gets nothing.
    assert!(!p.tick(1_000_000, &c));
    assert!(p.acquire(&b, 10, 0, 5, 1_000_000, &c).is_empty());
    // A second accept of the same offsets is refused.
    let e = p.acknowledge(&a, 0, 4, &[ACCEPT], 20, &c).unwrap_err();
    assert!(is_state(&e));
    assert_eq!(e.code(), 121);
}

#[test]
fn release_redelivers_with_the_next_delivery_count() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 5, 0, 5, 0, &c);
    p.acknowledge(&a, 2, 3, &[RELEASE], 10, &c).unwrap();
    assert_eq!(p.in_flight(), 3);
    assert!(p.tick(10, &c), "released records wake fetches");
    assert_eq!(p.acquire(&b, 10, 0, 5, 20, &c), vec![r(2, 3, 2)]);
    // The released offsets now belong to b; a cannot acknowledge them.
    assert!(is_state(
        &p.acknowledge(&a, 2, 2, &[ACCEPT], 30, &c).unwrap_err()
    ));
    p.acknowledge(&b, 2, 3, &[ACCEPT], 30, &c).unwrap();
    p.acknowledge(&a, 0, 1, &[ACCEPT], 30, &c).unwrap();
    p.acknowledge(&a, 4, 4, &[ACCEPT], 30, &c).unwrap();
    assert_eq!(p.start_offset(), 5);
    p.assert_consistent();
}

#[test]
fn expired_lock_goes_to_another_member_with_count_two() {
    let c = ShareConfig {
        lock_duration_ms: 1000,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 3, 0, 3, 0, &c);
    assert_eq!(p.next_deadline_ms(), Some(1000));
    assert!(!p.tick(999, &c));
    assert!(p.acquire(&b, 10, 0, 3, 999, &c).is_empty());
    assert!(p.tick(1000, &c));
    assert_eq!(p.in_flight(), 0);
    assert_eq!(p.acquire(&b, 10, 0, 3, 1001, &c), vec![r(0, 2, 2)]);
    // The old holder's late acknowledgement is refused.
    assert!(is_state(
        &p.acknowledge(&a, 0, 2, &[ACCEPT], 1002, &c).unwrap_err()
    ));
    p.acknowledge(&b, 0, 2, &[ACCEPT], 1002, &c).unwrap();
    assert_eq!(p.start_offset(), 3);
}

#[test]
fn acquire_expires_due_locks_without_a_tick() {
    let c = ShareConfig {
        lock_duration_ms: 1000,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 2, 0, &c);
    // The timer is late: acquire at 1500 still sees the expired records.
    assert_eq!(p.acquire(&b, 10, 0, 2, 1500, &c), vec![r(0, 1, 2)]);
    // An acknowledgement at or after the deadline counts as expired even if
    // no tick ran yet.
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 2, 0, &c);
    assert!(is_state(
        &p.acknowledge(&a, 0, 1, &[ACCEPT], 1000, &c).unwrap_err()
    ));
    p.acknowledge(&a, 0, 1, &[ACCEPT], 999, &c).unwrap();
}

#[test]
fn delivery_limit_dead_letters_and_start_waits_for_the_dlq_write() {
    let c = ShareConfig {
        lock_duration_ms: 100,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    let mut now = 0;
    for n in 1..=5u16 {
        assert_eq!(p.acquire(&a, 1, 0, 2, now, &c), vec![r(0, 0, n)]);
        now += 100;
        p.tick(now, &c);
    }
    // Fifth lock expired at the limit: dead-letter, never offered again.
    assert_eq!(p.in_flight(), 0);
    assert_eq!(p.start_offset(), 0);
    assert_eq!(p.acquire(&a, 10, 0, 2, now, &c), vec![r(1, 1, 1)]);
    p.acknowledge(&a, 1, 1, &[ACCEPT], now, &c).unwrap();
    assert_eq!(
        p.start_offset(),
        0,
        "start cannot pass a pending dead letter"
    );
    let dl = p.take_dead_letters();
    assert_eq!(
        dl,
        vec![DeadLetter {
            offset: 0,
            delivery_count: 5,
            reason: DeadLetterReason::DeliveryLimit,
            maybe_copied: false,
        }]
    );
    assert!(p.take_dead_letters().is_empty(), "each returned once");
    assert_eq!(p.start_offset(), 0);
    p.dead_lettered(&[0]);
    assert_eq!(p.start_offset(), 2);
    assert_eq!(p.lag(2), 0);
    p.assert_consistent();
}

#[test]
fn release_at_the_limit_dead_letters() {
    let c = ShareConfig {
        delivery_count_limit: 2,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 1, 0, 1, 0, &c);
    p.acknowledge(&a, 0, 0, &[RELEASE], 1, &c).unwrap();
    assert_eq!(p.acquire(&a, 1, 0, 1, 2, &c), vec![r(0, 0, 2)]);
    p.acknowledge(&a, 0, 0, &[RELEASE], 3, &c).unwrap();
    assert!(p.acquire(&a, 1, 0, 1, 4, &c).is_empty());
    let dl = p.take_dead_letters();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, DeadLetterReason::DeliveryLimit);
    assert_eq!(dl[0].delivery_count, 2);
}

#[test]
fn reject_dead_letters_at_once_while_others_keep_flowing() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 3, 0, 100, 0, &c);
    p.acknowledge(&a, 0, 2, &[ACCEPT, REJECT, ACCEPT], 1, &c)
        .unwrap();
    assert_eq!(
        p.take_dead_letters(),
        vec![DeadLetter {
            offset: 1,
            delivery_count: 1,
            reason: DeadLetterReason::Rejected,
            maybe_copied: false,
        }]
    );
    assert_eq!(p.start_offset(), 1);
    // Others keep being acquired while the DLQ write is pending.
    assert_eq!(p.acquire(&b, 5, 0, 100, 2, &c), vec![r(3, 7, 1)]);
    p.acknowledge(&b, 3, 7, &[ACCEPT], 3, &c).unwrap();
    assert_eq!(p.start_offset(), 1);
    assert_eq!(p.lag(100), 93);
    p.dead_lettered(&[1]);
    assert_eq!(p.start_offset(), 8);
    assert_eq!(p.lag(100), 92);
}

#[test]
fn without_dead_letter_topic_records_are_archived() {
    let c = ShareConfig {
        dead_letter: false,
        delivery_count_limit: 1,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 2, 0, &c);
    p.acknowledge(&a, 0, 1, &[REJECT, RELEASE], 1, &c).unwrap();
    assert!(p.take_dead_letters().is_empty());
    assert_eq!(p.start_offset(), 2);
}

#[test]
fn retry_dead_letters_returns_them_again() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 3, 0, 3, 0, &c);
    p.acknowledge(&a, 0, 2, &[REJECT], 1, &c).unwrap();
    let dl = p.take_dead_letters();
    assert_eq!(dl.iter().map(|d| d.offset).collect::<Vec<_>>(), [0, 1, 2]);
    p.retry_dead_letters(&[1, 2, 2, 99, -5], false);
    p.dead_lettered(&[0]);
    assert_eq!(p.start_offset(), 1);
    let again = p.take_dead_letters();
    assert_eq!(again.iter().map(|d| d.offset).collect::<Vec<_>>(), [1, 2]);
    assert!(again.iter().all(|d| !d.maybe_copied));
    // A write whose outcome is unknown: offered again as maybe copied, until archived.
    p.retry_dead_letters(&[2], true);
    let again = p.take_dead_letters();
    assert_eq!(
        again
            .iter()
            .map(|d| (d.offset, d.maybe_copied))
            .collect::<Vec<_>>(),
        [(2, true)]
    );
    p.dead_lettered(&[2, 1]);
    assert_eq!(p.start_offset(), 3);
    assert!(p.take_dead_letters().is_empty());
    assert!(p.dl_maybe_copied_is_empty());
}

#[test]
fn renew_extends_the_lock() {
    let c = ShareConfig {
        lock_duration_ms: 1000,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 2, 0, &c);
    p.acknowledge(&a, 0, 1, &[RENEW], 900, &c).unwrap();
    assert!(!p.tick(1000, &c), "old deadline no longer applies");
    assert!(p.acquire(&b, 10, 0, 2, 1500, &c).is_empty());
    assert_eq!(p.in_flight(), 2);
    p.acknowledge(&a, 0, 0, &[ACCEPT], 1899, &c).unwrap();
    // Offset 1's renewed lock expires at 1900.
    assert_eq!(p.next_deadline_ms(), Some(1900));
    assert!(p.tick(1900, &c));
    assert_eq!(p.acquire(&b, 10, 0, 2, 1900, &c), vec![r(1, 1, 2)]);
}

#[test]
fn acknowledging_another_members_record_is_invalid_record_state() {
    let c = cfg();
    let (a, b, z) = (mid("a"), mid("b"), mid("zed"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 4, 0, &c);
    p.acquire(&b, 2, 0, 4, 0, &c);
    assert!(is_state(
        &p.acknowledge(&b, 0, 0, &[ACCEPT], 1, &c).unwrap_err()
    ));
    // Unknown member.
    assert!(is_state(
        &p.acknowledge(&z, 0, 0, &[ACCEPT], 1, &c).unwrap_err()
    ));
    // Spanning both members' records: refused as a whole.
    assert!(is_state(
        &p.acknowledge(&a, 1, 2, &[ACCEPT], 1, &c).unwrap_err()
    ));
    // Outside the window.
    assert!(is_state(
        &p.acknowledge(&a, 4, 4, &[ACCEPT], 1, &c).unwrap_err()
    ));
    assert!(is_state(
        &p.acknowledge(&a, -3, 0, &[ACCEPT], 1, &c).unwrap_err()
    ));
    assert_eq!(p.in_flight(), 4);
    p.acknowledge(&a, 0, 1, &[ACCEPT], 1, &c).unwrap();
    p.acknowledge(&b, 2, 3, &[ACCEPT], 1, &c).unwrap();
    assert_eq!(p.start_offset(), 4);
}

#[test]
fn malformed_batches_are_invalid_request_and_apply_nothing() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 4, 0, 4, 0, &c);
    let before = p.snapshot();
    let cases: &[(i64, i64, &[i8])] = &[
        (3, 2, &[ACCEPT]),                       // last < first
        (0, 3, &[]),                             // no types
        (0, 3, &[ACCEPT, ACCEPT]),               // neither 1 nor 4
        (0, 1, &[ACCEPT, ACCEPT, ACCEPT]),       // too many
        (0, 3, &[ACCEPT, ACCEPT, 9, ACCEPT]),    // unknown type
        (0, 3, &[-1]),                           // unknown type
        (0, 0, &[5]),                            // unknown type
        (i64::MIN, i64::MAX, &[ACCEPT, ACCEPT]), // huge range, wrong length
    ];
    for &(first, last, types) in cases {
        let e = p.acknowledge(&a, first, last, types, 1, &c).unwrap_err();
        assert!(is_request(&e), "{first}..{last} {types:?}: {e}");
        assert_eq!(e.code(), 42);
    }
    // A huge well-formed batch is outside the window: state error, no work.
    let e = p
        .acknowledge(&a, i64::MIN, i64::MAX, &[ACCEPT], 1, &c)
        .unwrap_err();
    assert!(is_state(&e));
    assert_eq!(p.snapshot(), before);
    assert_eq!(p.in_flight(), 4);
    assert!(p.take_dead_letters().is_empty());
    p.assert_consistent();
}

#[test]
fn per_offset_types_apply_each_type() {
    let c = ShareConfig {
        lock_duration_ms: 1000,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(10);
    p.acquire(&a, 5, 0, 15, 0, &c);
    p.acknowledge(&a, 10, 14, &[ACCEPT, RELEASE, REJECT, GAP, RENEW], 500, &c)
        .unwrap();
    assert_eq!(p.start_offset(), 11);
    assert_eq!(p.in_flight(), 1);
    assert_eq!(p.take_dead_letters()[0].offset, 12);
    assert_eq!(p.acquire(&b, 10, 0, 15, 600, &c), vec![r(11, 11, 2)]);
    // 14 was renewed to 1500; at 1200 a still holds it.
    p.acknowledge(&a, 14, 14, &[ACCEPT], 1200, &c).unwrap();
    p.acknowledge(&b, 11, 11, &[ACCEPT], 1200, &c).unwrap();
    p.dead_lettered(&[12]);
    assert_eq!(p.start_offset(), 15);
}

#[test]
fn gap_archives_the_offset() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 3, 0, 3, 0, &c);
    p.acknowledge(&a, 0, 2, &[GAP], 1, &c).unwrap();
    assert_eq!(p.start_offset(), 3);
    assert!(p.take_dead_letters().is_empty());
    assert!(is_state(
        &p.acknowledge(&a, 0, 0, &[GAP], 2, &c).unwrap_err()
    ));
}

#[test]
fn release_member_returns_its_records() {
    let c = ShareConfig {
        delivery_count_limit: 2,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 6, 0, &c);
    p.acquire(&b, 2, 0, 6, 0, &c);
    p.acquire(&a, 2, 0, 6, 0, &c);
    p.release_member(&a, 1, &c);
    assert_eq!(p.in_flight(), 2);
    assert!(p.tick(1, &c));
    assert_eq!(p.acquire(&b, 10, 0, 6, 2, &c), vec![r(0, 1, 2), r(4, 5, 2)]);
    // At the limit, leaving dead-letters them.
    p.release_member(&b, 3, &c);
    assert_eq!(p.in_flight(), 0);
    let dl: Vec<i64> = p.take_dead_letters().iter().map(|d| d.offset).collect();
    assert_eq!(dl, [0, 1, 4, 5]);
    assert_eq!(p.acquire(&a, 10, 0, 6, 4, &c), vec![r(2, 3, 2)]);
    // Unknown members are a no-op.
    p.release_member(&mid("nobody"), 5, &c);
    p.assert_consistent();
}

#[test]
fn release_backoff_grows_exponentially_and_is_capped() {
    let c = ShareConfig {
        release_backoff_ms: 100,
        release_backoff_max_ms: 350,
        delivery_count_limit: 10,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    let mut now = 0;
    // After delivery n the delay is min(100 * 2^(n-1), 350).
    for (n, delay) in [(1u16, 100u64), (2, 200), (3, 350), (4, 350)] {
        assert_eq!(p.acquire(&a, 1, 0, 1, now, &c), vec![r(0, 0, n)]);
        p.acknowledge(&a, 0, 0, &[RELEASE], now, &c).unwrap();
        assert_eq!(p.next_deadline_ms(), Some(now + delay));
        assert!(p.acquire(&a, 1, 0, 1, now + delay - 1, &c).is_empty());
        now += delay;
        assert!(p.tick(now, &c), "backoff end wakes fetches");
    }
    // Lock expiry uses the same backoff (after delivery 5: capped 350).
    let c2 = ShareConfig {
        lock_duration_ms: 1000,
        ..c.clone()
    };
    assert_eq!(p.acquire(&a, 1, 0, 1, now, &c2), vec![r(0, 0, 5)]);
    now += 1000;
    assert!(!p.tick(now, &c2), "expired but backing off");
    assert_eq!(p.next_deadline_ms(), Some(now + 350));
    assert!(p.tick(now + 350, &c2));
    assert_eq!(p.acquire(&a, 1, 0, 1, now + 350, &c2), vec![r(0, 0, 6)]);
    // Huge base and counts saturate instead of overflowing.
    let big = ShareConfig {
        release_backoff_ms: u64::MAX / 2,
        release_backoff_max_ms: u64::MAX,
        delivery_count_limit: u16::MAX,
        ..cfg()
    };
    p.acknowledge(&a, 0, 0, &[RELEASE], now + 350, &big)
        .unwrap();
    assert!(p.acquire(&a, 1, 0, 1, u64::MAX - 1, &big).is_empty());
    assert_eq!(p.acquire(&a, 1, 0, 1, u64::MAX, &big), vec![r(0, 0, 7)]);
}

#[test]
fn backed_off_records_do_not_block_later_ones() {
    let c = ShareConfig {
        release_backoff_ms: 1000,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 2, 0, 10, 0, &c);
    p.acknowledge(&a, 0, 1, &[RELEASE], 0, &c).unwrap();
    assert_eq!(p.acquire(&b, 3, 0, 10, 10, &c), vec![r(2, 4, 1)]);
    assert_eq!(
        p.acquire(&b, 10, 0, 10, 1000, &c),
        vec![r(0, 1, 2), r(5, 9, 1)]
    );
}

#[test]
fn max_in_flight_bounds_the_window() {
    let c = ShareConfig {
        max_in_flight: 4,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    assert_eq!(p.acquire(&a, 10, 0, 100, 0, &c), vec![r(0, 3, 1)]);
    assert!(p.acquire(&b, 10, 0, 100, 0, &c).is_empty());
    // Released records inside a full window are re-offered.
    p.acknowledge(&a, 1, 2, &[RELEASE], 1, &c).unwrap();
    assert_eq!(p.acquire(&b, 10, 0, 100, 2, &c), vec![r(1, 2, 2)]);
    // Acknowledging the middle does not free room: start is stuck at 0.
    p.acknowledge(&b, 1, 2, &[ACCEPT], 3, &c).unwrap();
    assert!(p.acquire(&b, 10, 0, 100, 3, &c).is_empty());
    p.acknowledge(&a, 0, 0, &[ACCEPT], 3, &c).unwrap();
    assert_eq!(p.start_offset(), 3);
    assert_eq!(p.acquire(&b, 10, 0, 100, 4, &c), vec![r(4, 6, 1)]);
    assert_eq!(p.end_offset() - p.start_offset(), 4);
    // Huge max_in_flight is still bounded by MAX_WINDOW and max_records.
    let huge = ShareConfig {
        max_in_flight: u64::MAX,
        ..cfg()
    };
    let mut q = SharePartition::new(0);
    let got = q.acquire(&a, u32::MAX, 0, i64::MAX, 0, &huge);
    assert_eq!(got, vec![r(0, SharePartition::MAX_WINDOW as i64 - 1, 1)]);
    assert!(q.acquire(&a, u32::MAX, 0, i64::MAX, 0, &huge).is_empty());
}

#[test]
fn log_start_moving_past_the_window_drops_state() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 5, 0, 10, 0, &c);
    p.acknowledge(&a, 1, 1, &[REJECT], 1, &c).unwrap();
    // Retention deletes up to 3 (exclusive): offsets 0..3 are gone, including
    // the acquired ones and the pending dead letter.
    assert_eq!(p.acquire(&b, 2, 3, 10, 2, &c), vec![r(5, 6, 1)]);
    assert_eq!(p.start_offset(), 3);
    assert!(p.take_dead_letters().is_empty());
    assert_eq!(p.in_flight(), 4);
    assert!(is_state(
        &p.acknowledge(&a, 0, 0, &[ACCEPT], 3, &c).unwrap_err()
    ));
    p.acknowledge(&a, 3, 4, &[ACCEPT], 3, &c).unwrap();
    assert_eq!(p.start_offset(), 5);
    // Past the whole window.
    p.advance_log_start(50);
    assert_eq!(
        (p.start_offset(), p.end_offset(), p.in_flight()),
        (50, 50, 0)
    );
    assert!(is_state(
        &p.acknowledge(&b, 5, 6, &[ACCEPT], 4, &c).unwrap_err()
    ));
    assert_eq!(p.acquire(&b, 2, 50, 60, 5, &c), vec![r(50, 51, 1)]);
    // A log start below start changes nothing.
    p.advance_log_start(10);
    assert_eq!(p.start_offset(), 50);
    p.assert_consistent();
}

#[test]
fn snapshot_round_trip() {
    let c = ShareConfig {
        release_backoff_ms: 10_000,
        ..cfg()
    };
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(100);
    p.acquire(&a, 10, 0, 200, 0, &c);
    p.acknowledge(
        &a,
        100,
        109,
        &[
            ACCEPT, ACCEPT, RELEASE, ACCEPT, REJECT, REJECT, GAP, ACCEPT, ACCEPT, ACCEPT,
        ],
        1,
        &c,
    )
    .unwrap();
    // 102 is backing off (count 1), 104/105 dead-lettering; take one of them
    // so a taken-but-not-written dead letter is in the snapshot.
    let first = p.take_dead_letters();
    assert_eq!(first.len(), 2);
    p.acquire(&b, 3, 0, 200, 2, &c); // 110..=112 acquired, count 1
    let s = p.snapshot();
    assert_eq!(s.start_offset, 102);
    assert_eq!(
        s.runs,
        vec![
            Run {
                first: 102,
                last: 102,
                state: StoredState::Available,
                delivery_count: 1
            },
            Run {
                first: 103,
                last: 103,
                state: StoredState::Acknowledged,
                delivery_count: 1
            },
            Run {
                first: 104,
                last: 105,
                state: StoredState::DeadLetteringRejected,
                delivery_count: 1
            },
            Run {
                first: 106,
                last: 106,
                state: StoredState::Archived,
                delivery_count: 1
            },
            Run {
                first: 107,
                last: 109,
                state: StoredState::Acknowledged,
                delivery_count: 1
            },
            Run {
                first: 110,
                last: 112,
                state: StoredState::Available,
                delivery_count: 1
            },
        ]
    );
    let mut q = SharePartition::from_snapshot(&s);
    assert_eq!(q.snapshot(), s);
    assert_eq!(
        (q.start_offset(), q.end_offset(), q.in_flight()),
        (102, 113, 0)
    );
    q.assert_consistent();
    // Dead letters are pending again (at-least-once into the DLQ).
    let dl = q.take_dead_letters();
    assert_eq!(dl.iter().map(|d| d.offset).collect::<Vec<_>>(), [104, 105]);
    assert!(dl.iter().all(|d| d.reason == DeadLetterReason::Rejected));
    // Locks and backoffs are gone: everything Available comes back at once
    // with its delivery count, then new records.
    assert_eq!(
        q.acquire(&a, 10, 0, 200, 0, &c),
        vec![r(102, 102, 2), r(110, 112, 2), r(113, 118, 1)]
    );
    // The serde form round-trips too (derives exist; smoke-check Debug/Clone).
    let s2 = s.clone();
    assert_eq!(
        SharePartition::try_from_snapshot(&s2).unwrap().snapshot(),
        s
    );
}

#[test]
fn delivery_limit_reason_survives_a_restart() {
    let c = ShareConfig {
        delivery_count_limit: 1,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 1, 0, 1, 0, &c);
    p.acknowledge(&a, 0, 0, &[RELEASE], 1, &c).unwrap();
    let s = p.snapshot();
    assert_eq!(s.runs[0].state, StoredState::DeadLettering);
    let mut q = SharePartition::from_snapshot(&s);
    // Restored while dead-lettering: the previous writer may have copied it.
    let restored = vec![DeadLetter {
        offset: 0,
        delivery_count: 1,
        reason: DeadLetterReason::DeliveryLimit,
        maybe_copied: true,
    }];
    assert_eq!(q.take_dead_letters(), restored);
    // Still so when the write is retried; no longer once it is archived.
    q.retry_dead_letters(&[0], false);
    assert_eq!(q.take_dead_letters(), restored);
    q.dead_lettered(&[0]);
    assert_eq!(q.start_offset(), 1);
    assert!(q.dl_maybe_copied_is_empty());
}

#[test]
fn malformed_snapshots() {
    let run = |first, last, state| Run {
        first,
        last,
        state,
        delivery_count: 2,
    };
    let bad = [
        Snapshot {
            start_offset: 10,
            runs: vec![run(12, 11, StoredState::Available)],
        },
        Snapshot {
            start_offset: 10,
            runs: vec![run(5, 11, StoredState::Available)],
        },
        Snapshot {
            start_offset: 10,
            runs: vec![
                run(12, 14, StoredState::Available),
                run(14, 15, StoredState::Archived),
            ],
        },
        Snapshot {
            start_offset: 0,
            runs: vec![run(0, i64::MAX, StoredState::Acknowledged)],
        },
        Snapshot {
            start_offset: i64::MIN,
            runs: vec![run(i64::MAX, i64::MAX, StoredState::Available)],
        },
    ];
    for s in &bad {
        assert!(SharePartition::try_from_snapshot(s).is_err(), "{s:?}");
        // The lenient form clips and never panics or allocates without bound.
        let p = SharePartition::from_snapshot(s);
        assert!((p.end_offset() - p.start_offset()) as u64 <= SharePartition::MAX_WINDOW);
        p.assert_consistent();
    }
    // Leading done runs are dropped on restore.
    let s = Snapshot {
        start_offset: 0,
        runs: vec![
            run(0, 4, StoredState::Acknowledged),
            run(7, 7, StoredState::Available),
        ],
    };
    let p = SharePartition::try_from_snapshot(&s).unwrap();
    assert_eq!((p.start_offset(), p.end_offset()), (5, 8));
    assert_eq!(p.lag(10), 5);
}

#[test]
fn lag_counts_unfinished_records_and_the_log_beyond() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(0);
    assert_eq!(p.lag(100), 100);
    p.acquire(&a, 10, 0, 100, 0, &c);
    assert_eq!(p.lag(100), 100);
    p.acknowledge(&a, 5, 9, &[ACCEPT], 1, &c).unwrap();
    assert_eq!(p.lag(100), 95);
    p.acknowledge(&a, 0, 4, &[ACCEPT], 1, &c).unwrap();
    assert_eq!(p.lag(100), 90);
    assert_eq!(p.lag(0), 0);
    assert_eq!(SharePartition::new(i64::MIN).lag(i64::MAX), i64::MAX);
}

#[test]
fn reset_drops_everything() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(0);
    p.acquire(&a, 3, 0, 10, 0, &c);
    p.acknowledge(&a, 0, 0, &[REJECT], 0, &c).unwrap();
    p.reset(7);
    assert_eq!((p.start_offset(), p.end_offset(), p.in_flight()), (7, 7, 0));
    assert!(p.take_dead_letters().is_empty());
    assert_eq!(p.next_deadline_ms(), None);
    assert!(is_state(
        &p.acknowledge(&a, 1, 1, &[ACCEPT], 1, &c).unwrap_err()
    ));
    assert_eq!(p.acquire(&a, 10, 0, 10, 1, &c), vec![r(7, 9, 1)]);
}

#[test]
fn lowered_limit_dead_letters_instead_of_acquiring() {
    let c = ShareConfig {
        delivery_count_limit: 5,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    for t in 0..3 {
        p.acquire(&a, 1, 0, 1, t, &c);
        p.acknowledge(&a, 0, 0, &[RELEASE], t, &c).unwrap();
    }
    let lower = ShareConfig {
        delivery_count_limit: 2,
        ..cfg()
    };
    assert!(p.acquire(&a, 1, 0, 1, 10, &lower).is_empty());
    assert_eq!(p.take_dead_letters()[0].delivery_count, 3);
    // Limit 0 behaves as 1: delivered once, then dead-lettered.
    let zero = ShareConfig {
        delivery_count_limit: 0,
        ..cfg()
    };
    let mut q = SharePartition::new(0);
    assert_eq!(q.acquire(&a, 1, 0, 1, 0, &zero), vec![r(0, 0, 1)]);
    q.acknowledge(&a, 0, 0, &[RELEASE], 0, &zero).unwrap();
    assert_eq!(q.take_dead_letters().len(), 1);
}

#[test]
fn extreme_offsets_do_not_panic() {
    let c = cfg();
    let a = mid("a");
    for start in [i64::MIN, -1, 0, i64::MAX - 1, i64::MAX] {
        let mut p = SharePartition::new(start);
        let got = p.acquire(&a, 3, i64::MIN, i64::MAX, u64::MAX, &c);
        for (first, last) in [
            (i64::MIN, i64::MIN),
            (i64::MAX, i64::MAX),
            (i64::MIN, i64::MAX),
        ] {
            let _ = p.acknowledge(&a, first, last, &[ACCEPT], u64::MAX - 1, &c);
            let _ = p.acknowledge(&a, first, last, &[RENEW], u64::MAX - 1, &c);
        }
        p.retry_dead_letters(&[i64::MIN, i64::MAX], true);
        p.dead_lettered(&[i64::MIN, i64::MAX]);
        let _ = p.tick(u64::MAX, &c);
        let _ = p.lag(i64::MIN);
        let _ = p.lag(i64::MAX);
        let _ = SharePartition::from_snapshot(&p.snapshot());
        p.advance_log_start(i64::MAX);
        assert!(got.len() <= 1);
        p.assert_consistent();
    }
}

#[test]
fn dirty_flag_tracks_durable_changes() {
    let c = ShareConfig {
        lock_duration_ms: 100,
        delivery_count_limit: 2,
        dead_letter: false,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    assert!(!p.take_dirty());
    p.acquire(&a, 2, 0, 2, 0, &c);
    assert!(p.take_dirty(), "new delivery counts");
    assert!(!p.take_dirty());
    p.acknowledge(&a, 0, 1, &[RENEW], 10, &c).unwrap();
    assert!(!p.take_dirty(), "a renewal is not durable");
    p.acknowledge(&a, 0, 0, &[ACCEPT], 10, &c).unwrap();
    assert!(p.take_dirty());
    // Lock expiry below the limit: the stored form is unchanged.
    assert!(p.tick(110, &c));
    assert!(!p.take_dirty());
    let before = p.snapshot();
    p.acquire(&a, 1, 0, 2, 120, &c);
    assert!(p.take_dirty());
    assert_ne!(p.snapshot(), before);
    // Expiry at the limit archives (dead_letter off): tick reports nothing
    // available, but the durable form changed.
    assert!(!p.tick(220, &c));
    assert!(p.take_dirty());
    assert_eq!(p.start_offset(), 2);
    p.reset(5);
    assert!(p.take_dirty());
}

#[test]
fn ack_type_codes() {
    for (code, t) in [
        (0, AckType::Gap),
        (1, AckType::Accept),
        (2, AckType::Release),
        (3, AckType::Reject),
        (4, AckType::Renew),
    ] {
        assert_eq!(AckType::try_from(code), Ok(t));
        assert_eq!(i8::from(t), code);
    }
    assert!(is_request(&AckType::try_from(5).unwrap_err()));
    assert!(is_request(&AckType::try_from(-1).unwrap_err()));
}

#[test]
fn stale_timers_are_trimmed_as_start_moves() {
    let c = cfg();
    let a = mid("a");
    let mut p = SharePartition::new(0);
    for i in 0..100 {
        p.acquire(&a, 5, 0, 1000, i, &c);
        p.acknowledge(&a, i as i64 * 5, i as i64 * 5 + 4, &[ACCEPT], i, &c)
            .unwrap();
    }
    assert_eq!(p.next_deadline_ms(), None);
    assert_eq!(p.start_offset(), 500);
}

// ----- property-style test -----

/// xorshift64*: a tiny deterministic generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the test believes about each offset.
#[derive(Default)]
struct Model {
    /// offset -> (holder, lock deadline) from acquire results.
    held: HashMap<i64, (usize, u64)>,
    /// offset -> deliveries so far.
    count: HashMap<i64, u16>,
    /// Offsets accepted, gapped, rejected or dead-lettered: never offered
    /// again.
    finished: HashSet<i64>,
    /// Dead letters taken and not yet written (may be returned again after a
    /// restart only).
    dl_taken: HashSet<i64>,
    /// Dead letters written: never returned again.
    dl_written: HashSet<i64>,
    /// Offsets removed by a log-start move.
    gone_below: i64,
}

fn run_random(seed: u64, cfg: &ShareConfig) {
    let mut rng = Rng(seed);
    let members: Vec<MemberId> = (0..4).map(|i| mid(&format!("m{i}"))).collect();
    let mut p = SharePartition::new(0);
    let mut m = Model::default();
    let mut now: u64 = 0;
    let mut log_end: i64 = 0;
    let mut log_start: i64 = 0;
    let mut last_start = p.start_offset();
    let mut last_snapshot = p.snapshot();

    // Acquire results must respect the model.
    fn check_acquired(
        m: &mut Model,
        who: usize,
        got: &[AcquiredRange],
        now: u64,
        cfg: &ShareConfig,
    ) {
        let mut prev = None;
        for off in offsets(got) {
            assert!(prev < Some(off), "ranges ascending");
            prev = Some(off);
            assert!(
                !m.finished.contains(&off),
                "finished offset {off} re-acquired"
            );
            if let Some(&(h, d)) = m.held.get(&off) {
                assert!(
                    d <= now,
                    "offset {off} acquired by {who} while held by {h} until {d}"
                );
            }
            let c = m.count.entry(off).or_insert(0);
            *c += 1;
            m.held.insert(off, (who, now + cfg.lock_duration_ms));
        }
        for g in got {
            for off in g.first_offset..=g.last_offset {
                assert_eq!(m.count[&off], g.delivery_count, "delivery count of {off}");
                assert!(g.delivery_count <= cfg.delivery_count_limit);
            }
        }
    }

    for _step in 0..2000 {
        match rng.below(100) {
            // Produce more records.
            0..=14 => log_end += rng.below(20) as i64,
            // Acquire.
            15..=44 => {
                let who = rng.below(4) as usize;
                let max = rng.below(30) as u32;
                let got = p.acquire(&members[who], max, log_start, log_end, now, cfg);
                let n: usize = offsets(&got).len();
                assert!(n <= max as usize);
                check_acquired(&mut m, who, &got, now, cfg);
            }
            // Acknowledge a random range with random types.
            45..=74 => {
                let who = rng.below(4) as usize;
                let first = p.start_offset() + rng.below(40) as i64 - 5;
                let last = first + rng.below(6) as i64 - 1;
                let per_offset = rng.below(2) == 0;
                let n = (last - first + 1).max(0) as usize;
                let types: Vec<i8> = if per_offset {
                    (0..n).map(|_| rng.below(5) as i8).collect()
                } else {
                    vec![rng.below(5) as i8]
                };
                let well_formed = last >= first && !types.is_empty();
                let all_held = (first..=last)
                    .all(|o| m.held.get(&o).is_some_and(|&(h, d)| h == who && d > now));
                let res = p.acknowledge(&members[who], first, last, &types, now, cfg);
                match (&res, well_formed, all_held) {
                    (Ok(()), true, true) => {}
                    (Err(AckError::InvalidRequest(_)), false, _) => {}
                    (Err(AckError::InvalidRecordState(_)), true, false) => {}
                    _ => panic!(
                        "ack {first}..={last} {types:?} by {who}: {res:?}, model held={all_held}"
                    ),
                }
                if res.is_ok() {
                    for (k, o) in (first..=last).enumerate() {
                        let t = if types.len() == 1 { types[0] } else { types[k] };
                        match t {
                            ACCEPT | GAP => {
                                m.held.remove(&o);
                                m.finished.insert(o);
                            }
                            REJECT => {
                                m.held.remove(&o);
                                m.finished.insert(o);
                            }
                            RELEASE => {
                                m.held.remove(&o);
                            }
                            _ => {
                                m.held.insert(o, (who, now + cfg.lock_duration_ms));
                            }
                        }
                    }
                }
            }
            // Time passes.
            75..=84 => {
                now += rng.below(cfg.lock_duration_ms);
                p.tick(now, cfg);
                // Every lock due by now has been processed.
                m.held.retain(|_, (_, d)| *d > now);
            }
            // A member leaves.
            85..=87 => {
                let who = rng.below(4) as usize;
                p.release_member(&members[who], now, cfg);
                m.held.retain(|_, (h, _)| *h != who);
            }
            // DLQ writer: take, then write some, hand back the rest.
            88..=93 => {
                for d in p.take_dead_letters() {
                    assert!(!m.dl_written.contains(&d.offset));
                    m.finished.insert(d.offset);
                    assert!(
                        m.dl_taken.insert(d.offset),
                        "dead letter {} returned twice",
                        d.offset
                    );
                    assert!(m.held.get(&d.offset).is_none_or(|&(_, dl)| dl <= now));
                    if rng.below(3) == 0 {
                        p.retry_dead_letters(&[d.offset], false);
                        m.dl_taken.remove(&d.offset);
                    } else {
                        p.dead_lettered(&[d.offset]);
                        m.dl_taken.remove(&d.offset);
                        m.dl_written.insert(d.offset);
                    }
                }
            }
            // Retention moves the log start.
            94..=95 => {
                log_start = (log_start + rng.below(5) as i64).min(log_end);
                p.advance_log_start(log_start);
                m.gone_below = m.gone_below.max(log_start);
                m.held.retain(|o, _| *o >= log_start);
            }
            // Restart from a snapshot: locks are lost, taken dead letters
            // come back.
            _ => {
                let s = p.snapshot();
                p = SharePartition::from_snapshot(&s);
                assert_eq!(p.snapshot(), s);
                m.held.clear();
                m.dl_taken.clear();
            }
        }
        p.assert_consistent();
        let snap = p.snapshot();
        if !p.take_dirty() {
            assert_eq!(snap, last_snapshot, "durable change without the dirty flag");
        }
        last_snapshot = snap;
        assert!(p.start_offset() >= last_start, "start went backwards");

        last_start = p.start_offset();
        assert!((p.end_offset() - p.start_offset()) as u64 <= cfg.max_in_flight);
        // Every record the partition holds is held in the model, and every
        // unexpired model lock is still held by the partition.
        let acquired = p.acquired_offsets();
        assert_eq!(acquired.len(), p.in_flight());
        for o in &acquired {
            assert!(
                m.held.contains_key(o),
                "offset {o} acquired but not in model"
            );
        }
        for (o, (_, d)) in &m.held {
            assert!(
                *d <= now || acquired.binary_search(o).is_ok(),
                "live lock on {o} lost"
            );
        }
    }

    // Drain: one member accepts everything until the window reaches the log
    // end; dead letters are written.
    let drainer = &members[0];
    for _round in 0..10_000 {
        if p.start_offset() >= log_end {
            break;
        }
        now += cfg.lock_duration_ms + cfg.release_backoff_max_ms;
        p.tick(now, cfg);
        let got = p.acquire(drainer, 500, log_start, log_end, now, cfg);
        m.held.retain(|_, (_, d)| *d > now);
        check_acquired(&mut m, 0, &got, now, cfg);
        for g in &got {
            p.acknowledge(drainer, g.first_offset, g.last_offset, &[ACCEPT], now, cfg)
                .unwrap();
            for o in g.first_offset..=g.last_offset {
                m.held.remove(&o);
                m.finished.insert(o);
            }
        }
        let dl: Vec<i64> = p.take_dead_letters().iter().map(|d| d.offset).collect();
        for o in &dl {
            m.finished.insert(*o);
        }
        p.dead_lettered(&dl);
        p.assert_consistent();
    }
    assert_eq!(
        p.start_offset(),
        log_end.max(log_start),
        "seed {seed}: not drained"
    );
    for o in m.gone_below..log_end {
        let archived_at_limit = !cfg.dead_letter
            && m.count
                .get(&o)
                .is_some_and(|c| *c >= cfg.delivery_count_limit);
        assert!(
            m.finished.contains(&o) || archived_at_limit,
            "seed {seed}: offset {o} never finished"
        );
    }
    assert_eq!(p.lag(log_end), 0);
}

#[test]
fn random_operations_keep_invariants() {
    let base = ShareConfig {
        lock_duration_ms: 1000,
        max_in_flight: 64,
        delivery_count_limit: 3,
        ..cfg()
    };
    let variants = [
        base.clone(),
        ShareConfig {
            dead_letter: false,
            ..base.clone()
        },
        ShareConfig {
            release_backoff_ms: 50,
            release_backoff_max_ms: 300,
            ..base.clone()
        },
        ShareConfig {
            max_in_flight: 7,
            delivery_count_limit: 5,
            ..base.clone()
        },
    ];
    // More seeds on demand: SLUICE_SHARE_SEEDS=1000 cargo test -p sluice-share random
    let seeds: u64 = std::env::var("SLUICE_SHARE_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for seed in 1..=seeds {
        for (k, c) in variants.iter().enumerate() {
            run_random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64, c);
        }
    }
}

#[test]
fn ack_batches_must_ascend_without_overlap() {
    let ok: Vec<(i64, i64, Vec<i8>)> = vec![
        (0, 2, vec![ACCEPT]),
        (3, 4, vec![ACCEPT, RELEASE]),
        (9, 9, vec![GAP]),
    ];
    assert!(validate_ack_batches(ok.iter().map(|(f, l, t)| (*f, *l, t.as_slice()))).is_ok());
    let bad: [&[(i64, i64, &[i8])]; 6] = [
        &[(0, 2, &[ACCEPT]), (2, 3, &[ACCEPT])],
        &[(5, 6, &[ACCEPT]), (0, 1, &[ACCEPT])],
        &[(3, 2, &[ACCEPT])],
        &[(0, 2, &[])],
        &[(0, 2, &[ACCEPT, ACCEPT])],
        &[
            (i64::MAX, i64::MAX, &[ACCEPT]),
            (i64::MAX, i64::MAX, &[ACCEPT]),
        ],
    ];
    for b in bad {
        let e = validate_ack_batches(b.iter().copied()).unwrap_err();
        assert!(is_request(&e), "{b:?}: {e}");
    }
    assert!(validate_ack_batches([(i64::MIN, i64::MAX, &[RENEW][..])]).is_ok());
    assert!(validate_ack_batches(std::iter::empty()).is_ok());
}

#[test]
fn unacquire_gives_back_as_if_never_acquired() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    // Delivered once, released: count 1.
    assert_eq!(p.acquire(&a, 2, 0, 10, 0, &c), vec![r(0, 1, 1)]);
    p.acknowledge(&a, 0, 1, &[RELEASE], 1, &c).unwrap();
    let deadline = 2 + c.lock_duration_ms;
    assert_eq!(p.acquire(&a, 6, 0, 10, 2, &c), vec![r(0, 1, 2), r(2, 5, 1)]);
    p.assert_consistent();
    // The response had room for offsets 0..=2 only.
    assert_eq!(p.unacquire(&a, 3, 5, deadline), 3);
    p.assert_consistent();
    assert_eq!(
        p.end_offset(),
        3,
        "fresh records at the end leave the window"
    );
    assert_eq!(p.in_flight(), 3);
    // Another deadline, another member, outside the window: untouched.
    assert_eq!(p.unacquire(&a, 0, 2, deadline + 1), 0);
    assert_eq!(p.unacquire(&b, 0, 2, deadline), 0);
    assert_eq!(p.unacquire(&a, i64::MIN, i64::MAX, 0), 0);
    // Giving back a middle record keeps its earlier delivery count.
    assert_eq!(p.unacquire(&a, 0, 0, deadline), 1);
    p.assert_consistent();
    assert_eq!(
        p.acquire(&b, 10, 0, 10, 3, &c),
        vec![r(0, 0, 2), r(3, 9, 1)]
    );
    p.assert_consistent();
    let snap = p.snapshot();
    assert_eq!(
        snap.runs.first().map(|r| (r.first, r.delivery_count)),
        Some((0, 2))
    );
}

#[test]
fn archive_acquired_skips_markers_and_aborted_records() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    assert_eq!(p.acquire(&a, 10, 0, 10, 0, &c), vec![r(0, 9, 1)]);
    let deadline = c.lock_duration_ms;
    // Another member, or another acquisition (deadline), archives nothing.
    assert_eq!(p.archive_acquired(&b, 3, 3, deadline), 0);
    assert_eq!(p.archive_acquired(&a, 3, 3, deadline + 1), 0);
    // A marker at 3 and an aborted batch at 8..=9 (past the window's end is clipped).
    assert_eq!(p.archive_acquired(&a, 3, 3, deadline), 1);
    assert_eq!(p.archive_acquired(&a, 8, 20, deadline), 2);
    p.assert_consistent();
    assert_eq!(p.in_flight(), 7);
    // They are done: not acknowledgeable, never offered again, not lag.
    assert!(p.acknowledge(&a, 3, 3, &[ACCEPT], 1, &c).is_err());
    assert_eq!(p.lag(10), 7);
    p.acknowledge(&a, 0, 2, &[ACCEPT], 1, &c).unwrap();
    assert_eq!(p.start_offset(), 4);
    p.acknowledge(&a, 4, 7, &[RELEASE], 1, &c).unwrap();
    assert_eq!(
        p.acquire(&b, 10, 0, 12, 2, &c),
        vec![r(4, 7, 2), r(10, 11, 1)]
    );
    assert_eq!(p.lag(12), 6);
    // Archived records survive a restart as archived.
    let q = SharePartition::from_snapshot(&p.snapshot());
    assert_eq!(q.start_offset(), 4);
    assert_eq!(q.lag(12), 6);
    p.assert_consistent();
}

#[test]
fn the_rest_of_a_batch_goes_to_the_same_member() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    // a asked for 3 and the batch it read holds offsets 0..=7: it gets 3..=7 too, locked alike.
    let mut got = p.acquire(&a, 3, 0, 100, 10, &c);
    assert_eq!(got, vec![r(0, 2, 1)]);
    p.acquire_through(&a, 3, 7, 100, 10, &c, &mut got);
    assert_eq!(got, vec![r(0, 7, 1)], "merged into the fetch's range");
    assert_eq!(p.acquire(&b, 100, 0, 100, 10, &c), vec![r(8, 99, 1)]);
    // The extension holds a's lock: a acknowledges all eight in one go.
    p.acknowledge(&a, 0, 7, &[ACCEPT], 20, &c).unwrap();
    assert_eq!(p.start_offset(), 8);
    // Nothing past the log end, nothing when the cursor is elsewhere.
    let mut none = Vec::new();
    p.acquire_through(&a, 100, 120, 100, 30, &c, &mut none);
    p.acquire_through(&a, 50, 60, 100, 30, &c, &mut none);
    assert!(none.is_empty());
    p.assert_consistent();
}

#[test]
fn a_batch_tail_stays_within_the_in_flight_bound() {
    let c = ShareConfig {
        max_in_flight: 5,
        ..cfg()
    };
    let a = mid("a");
    let mut p = SharePartition::new(0);
    let mut got = p.acquire(&a, 2, 0, 100, 0, &c);
    p.acquire_through(&a, 2, 9, 100, 0, &c, &mut got);
    assert_eq!(got, vec![r(0, 4, 1)]);
    assert_eq!(p.in_flight(), 5);
    p.assert_consistent();
}

#[test]
fn released_records_are_not_extended() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    assert_eq!(p.acquire(&a, 10, 0, 10, 0, &c), vec![r(0, 9, 1)]);
    p.acknowledge(&a, 2, 3, &[RELEASE], 1, &c).unwrap();
    // b gets the released 2..=3; the cursor stands at 10, so 4.. is not b's to extend into.
    let mut got = p.acquire(&b, 5, 0, 10, 2, &c);
    assert_eq!(got, vec![r(2, 3, 2)]);
    p.acquire_through(&b, 4, 9, 10, 2, &c, &mut got);
    assert_eq!(got, vec![r(2, 3, 2)]);
    p.assert_consistent();
}

#[test]
fn stats_count_the_window_by_state_and_delivery_count() {
    let c = cfg();
    let (a, b) = (mid("a"), mid("b"));
    let mut p = SharePartition::new(0);
    p.acquire(&a, 6, 0, 10, 0, &c);
    p.acknowledge(&a, 0, 0, &[ACCEPT], 10, &c).unwrap();
    p.acknowledge(&a, 1, 1, &[RELEASE], 10, &c).unwrap();
    p.acknowledge(&a, 2, 2, &[REJECT], 10, &c).unwrap();
    // 1 comes back to b: its second delivery.
    assert_eq!(p.acquire(&b, 1, 0, 10, 20, &c), vec![r(1, 1, 2)]);
    p.acknowledge(&b, 1, 1, &[RELEASE], 30, &c).unwrap();
    let st = p.stats();
    assert_eq!((st.start_offset, st.end_offset), (1, 6));
    assert_eq!((st.acquired, st.available, st.dead_lettering), (3, 1, 1));
    let mut want = vec![0u64; WindowStats::DELIVERY_BUCKETS];
    want[1] = 4; // 2 (dead-lettering) and 3..=5 (acquired)
    want[2] = 1; // 1 (released twice)
    assert_eq!(st.delivery_counts, want);
    // Fresh: nothing in flight, every bucket empty.
    let st = SharePartition::new(7).stats();
    assert_eq!((st.start_offset, st.end_offset, st.acquired), (7, 7, 0));
    assert!(st.delivery_counts.iter().all(|n| *n == 0));
}
