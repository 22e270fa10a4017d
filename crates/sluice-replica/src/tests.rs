//! Unit tests of the leader's and the follower's rules, one rule at a time.

use super::*;

const LAG: i64 = 10_000;
const T0: i64 = 1_000_000;

fn leader(isr: &[i32], min_isr: usize, leo: i64, hw: i64) -> LeaderState {
    LeaderState::new(LeaderInit {
        local_id: 1,
        leader_epoch: 5,
        partition_epoch: 10,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        min_isr,
        replica_lag_time_max_ms: LAG,
        local_leo: leo,
        high_watermark: hw,
        log_start_offset: 0,
        now_ms: T0,
    })
}

/// The leader's epoch cache: epoch 0 from 0, 3 from 50, 5 (current) from 100.
fn epochs(e: i32) -> (i32, i64) {
    match e {
        0..=2 => (0, 50),
        3 | 4 => (3, 100),
        _ => (-1, -1),
    }
}

/// A fetch in the current epoch 5, whose end is the leader's LEO.
fn fetch(l: &mut LeaderState, id: i32, offset: i64, now: i64) -> FollowerFetch {
    let leo = l.local_leo();
    l.on_follower_fetch(id, -1, offset, Some(5), now, leo, move |e| {
        if e == 5 {
            (5, leo)
        } else {
            epochs(e)
        }
    })
}

#[test]
fn hw_is_the_minimum_over_the_isr_and_never_moves_back() {
    let mut l = leader(&[1, 2, 3], 2, 100, 40);
    assert_eq!(l.high_watermark(), 40);
    // Unknown follower LEOs hold it.
    assert!(!l.on_local_append(120, T0));
    assert_eq!(
        fetch(&mut l, 2, 110, T0),
        FollowerFetch::Serve { hw_advanced: false }
    );
    assert_eq!(
        fetch(&mut l, 3, 90, T0),
        FollowerFetch::Serve { hw_advanced: true }
    );
    assert_eq!(l.high_watermark(), 90);
    assert_eq!(
        fetch(&mut l, 3, 120, T0),
        FollowerFetch::Serve { hw_advanced: true }
    );
    assert_eq!(l.high_watermark(), 110);
    // A follower going back (it truncated) does not move the HW back.
    assert_eq!(
        fetch(&mut l, 2, 100, T0),
        FollowerFetch::Serve { hw_advanced: false }
    );
    assert_eq!(l.high_watermark(), 110);
    assert!(l.high_watermark() <= l.local_leo());
}

#[test]
fn hw_waits_for_min_isr_kip_966() {
    let mut l = leader(&[1], 2, 100, 100);
    assert!(!l.on_local_append(150, T0));
    assert_eq!(l.high_watermark(), 100, "ISR of 1 below min ISR 2");
    assert_eq!(
        l.check_acks_all_before_append(),
        Err(NotEnoughReplicas {
            isr_size: 1,
            min_isr: 2
        })
    );
    assert_eq!(
        NotEnoughReplicas {
            isr_size: 1,
            min_isr: 2
        }
        .code(),
        19
    );
    // With min ISR 1, a lone leader advances (and a caught-up non-ISR follower holds it).
    assert!(l.set_min_isr(1, T0));
    assert_eq!(l.high_watermark(), 150);
    assert_eq!(l.check_acks_all_before_append(), Ok(()));
}

#[test]
fn a_caught_up_replica_outside_the_isr_holds_the_hw_until_it_lags() {
    let mut l = leader(&[1, 2], 1, 100, 100);
    // 3 is not in the ISR, last caught up never: it does not hold the HW.
    fetch(&mut l, 2, 100, T0);
    l.on_local_append(200, T0);
    fetch(&mut l, 2, 200, T0);
    assert_eq!(l.high_watermark(), 200);
    // 3 fetches at the leader's LEO: caught up, so it now holds the HW at its LEO.
    fetch(&mut l, 3, 200, T0 + 1);
    l.on_local_append(300, T0 + 2);
    fetch(&mut l, 2, 300, T0 + 2);
    assert_eq!(l.high_watermark(), 200);
    fetch(&mut l, 3, 250, T0 + 3);
    assert_eq!(l.high_watermark(), 250);
    // Once 3 lags longer than replica.lag.time.max.ms, it no longer holds it: at the next
    // event, or at a timer's recheck.
    assert!(!l.recheck_high_watermark(T0 + LAG));
    assert!(l.recheck_high_watermark(T0 + LAG + 10));
    assert_eq!(l.high_watermark(), 300);
    l.on_local_append(301, T0 + LAG + 10);
    fetch(&mut l, 2, 301, T0 + LAG + 10);
    assert_eq!(l.high_watermark(), 301);
}

#[test]
fn last_caught_up_time_follows_kafka() {
    let mut l = leader(&[1, 2, 3], 2, 100, 0);
    // Fetch at the leader's LEO: caught up now.
    fetch(&mut l, 2, 100, T0 + 5);
    assert_eq!(l.follower(2).unwrap().last_caught_up_time_ms, T0 + 5);
    l.on_local_append(150, T0 + 6);
    // Behind the current LEO but at the LEO the leader had at the previous fetch: caught up
    // as of that previous fetch.
    fetch(&mut l, 2, 120, T0 + 20);
    assert_eq!(l.follower(2).unwrap().last_caught_up_time_ms, T0 + 5);
    fetch(&mut l, 2, 150, T0 + 30);
    assert_eq!(l.follower(2).unwrap().last_caught_up_time_ms, T0 + 30);
    l.on_local_append(200, T0 + 31);
    fetch(&mut l, 2, 160, T0 + 40);
    l.on_local_append(300, T0 + 41);
    // Past the LEO of the previous fetch (150 at T0+30, 200 at T0+40): the previous fetch time.
    fetch(&mut l, 2, 200, T0 + 50);
    assert_eq!(l.follower(2).unwrap().last_caught_up_time_ms, T0 + 40);
    // Below it: unchanged.
    fetch(&mut l, 2, 250, T0 + 60);
    assert_eq!(l.follower(2).unwrap().last_caught_up_time_ms, T0 + 40);
}

#[test]
fn shrink_is_proposed_once_and_applied_only_when_committed() {
    let mut l = leader(&[1, 2, 3], 2, 100, 0);
    fetch(&mut l, 2, 100, T0);
    fetch(&mut l, 3, 100, T0);
    assert_eq!(l.isr_change_to_propose(T0 + LAG), None, "nobody lags yet");
    l.on_local_append(200, T0 + 1);
    fetch(&mut l, 2, 200, T0 + LAG);
    let p = l.isr_change_to_propose(T0 + LAG + 1).unwrap();
    assert_eq!(
        p,
        IsrProposal {
            new_isr: vec![1, 2],
            partition_epoch: 10
        }
    );
    assert_eq!(l.isr_change_to_propose(T0 + LAG + 2), None, "one in flight");
    assert_eq!(l.isr(), &[1, 2, 3], "not applied before the commit");
    assert_eq!(l.high_watermark(), 100, "3 still holds the HW");
    // A stale commit is ignored; the real one applies and the HW moves.
    assert!(!l.on_partition_change(vec![1, 2, 3], vec![1, 2], 9, T0 + LAG + 3));
    assert!(l.on_partition_change(vec![1, 2, 3], vec![1, 2], 11, T0 + LAG + 3));
    assert_eq!(l.isr(), &[1, 2]);
    assert_eq!(l.high_watermark(), 200);
    assert_eq!(l.partition_epoch(), 11);
    assert_eq!(l.pending_proposal(), None);
}

#[test]
fn expansion_needs_the_hw_and_the_epoch_start() {
    // The epoch started at 100; the HW lags at 40 (a new leader).
    let mut l = leader(&[1, 2], 2, 100, 40);
    fetch(&mut l, 2, 60, T0);
    assert_eq!(l.high_watermark(), 60);
    // 3 is past the HW but not past the epoch start: it may miss committed data.
    fetch(&mut l, 3, 80, T0);
    assert_eq!(l.isr_change_to_propose(T0), None);
    fetch(&mut l, 3, 100, T0);
    let p = l.isr_change_to_propose(T0).unwrap();
    assert_eq!(p.new_isr, vec![1, 2, 3]);
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    // The pending member counts for the HW at once (KIP-497).
    l.on_local_append(150, T0);
    fetch(&mut l, 2, 150, T0);
    assert_eq!(l.high_watermark(), 100);
    // A stale-epoch answer keeps it pending (it may have been applied); an answer to another
    // proposal is ignored; "not applied" returns to the committed ISR, and it is proposed again.
    assert!(!l.on_proposal_failed(&p, AlterPartitionError::InvalidUpdateVersion));
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    let other = IsrProposal {
        new_isr: vec![1],
        partition_epoch: 10,
    };
    assert!(!l.on_proposal_failed(&other, AlterPartitionError::IneligibleReplica));
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    assert!(l.on_proposal_failed(&p, AlterPartitionError::Retriable));
    assert_eq!(l.pending_proposal(), Some(&p));
    assert!(!l.on_proposal_failed(&p, AlterPartitionError::IneligibleReplica));
    assert_eq!(l.maximal_isr(), vec![1, 2]);
    assert_eq!(l.isr_change_to_propose(T0).unwrap().new_isr, vec![1, 2, 3]);
    assert!(!l.on_partition_change(vec![1, 2, 3], vec![1, 2, 3], 11, T0));
    assert_eq!(l.isr(), &[1, 2, 3]);
    assert_eq!(l.partition_epoch(), 11);
}

#[test]
fn fenced_or_stale_brokers_cannot_join_or_fetch() {
    let mut l = leader(&[1, 2], 1, 100, 100);
    l.set_broker_status(
        3,
        Some(BrokerStatus {
            broker_epoch: 7,
            fenced: false,
        }),
    );
    assert_eq!(
        l.on_follower_fetch(3, 6, 100, Some(3), T0, l.local_leo(), epochs),
        FollowerFetch::Error(FetchError::StaleBrokerEpoch)
    );
    assert_eq!(FetchError::StaleBrokerEpoch.code(true), 6);
    assert!(matches!(
        l.on_follower_fetch(3, 7, 100, Some(3), T0, l.local_leo(), epochs),
        FollowerFetch::Serve { .. }
    ));
    l.set_broker_status(
        3,
        Some(BrokerStatus {
            broker_epoch: 7,
            fenced: true,
        }),
    );
    assert_eq!(l.isr_change_to_propose(T0), None, "fenced");
    l.set_broker_status(
        3,
        Some(BrokerStatus {
            broker_epoch: 8,
            fenced: false,
        }),
    );
    assert_eq!(
        l.isr_change_to_propose(T0),
        None,
        "its fetches came from an older incarnation"
    );
    l.on_follower_fetch(3, 8, 100, Some(3), T0, l.local_leo(), epochs);
    assert!(l.isr_change_to_propose(T0).is_some());
    // Not a replica at all.
    assert_eq!(
        l.on_follower_fetch(9, -1, 100, Some(3), T0, l.local_leo(), epochs),
        FollowerFetch::Error(FetchError::NotAReplica)
    );
    assert_eq!(FetchError::NotAReplica.code(true), 75);
    assert_eq!(
        AlterPartitionError::from_code(107),
        AlterPartitionError::IneligibleReplica
    );
    assert_eq!(
        AlterPartitionError::from_code(95),
        AlterPartitionError::InvalidUpdateVersion
    );
    assert_eq!(
        AlterPartitionError::from_code(-1),
        AlterPartitionError::Retriable
    );
    assert_eq!(FetchError::NotAReplica.code(false), 6);
}

#[test]
fn diverging_epochs_follow_kafkas_read_records() {
    let mut l = leader(&[1, 2, 3], 2, 100, 0);
    // Last fetched epoch 4 is unknown here: the largest below is 3, which ended at 100.
    assert_eq!(
        l.on_follower_fetch(2, -1, 120, Some(4), T0, l.local_leo(), epochs),
        FollowerFetch::Diverging {
            epoch: 3,
            end_offset: 100
        }
    );
    // Epoch 3 ended at 100 but the follower fetches from 110: it has data we do not.
    assert_eq!(
        l.on_follower_fetch(2, -1, 110, Some(3), T0, l.local_leo(), epochs),
        FollowerFetch::Diverging {
            epoch: 3,
            end_offset: 100
        }
    );
    assert_eq!(l.follower(2).unwrap().log_end_offset, -1, "not recorded");
    // Epoch 3 up to 100 agrees.
    assert_eq!(
        l.on_follower_fetch(2, -1, 100, Some(3), T0, l.local_leo(), epochs),
        FollowerFetch::Serve { hw_advanced: false }
    );
    assert_eq!(
        l.on_follower_fetch(2, -1, 10, Some(9), T0, l.local_leo(), epochs),
        FollowerFetch::Error(FetchError::OffsetOutOfRange),
        "an epoch with no defined end"
    );
    l.set_log_start_offset(20);
    assert_eq!(
        l.on_follower_fetch(2, -1, 10, Some(3), T0, l.local_leo(), epochs),
        FollowerFetch::Error(FetchError::OffsetOutOfRange)
    );
    assert_eq!(
        l.on_follower_fetch(2, -1, 10, None, T0, l.local_leo(), epochs),
        FollowerFetch::Error(FetchError::OffsetOutOfRange)
    );
    assert_eq!(
        l.on_follower_fetch(1, -1, 10, None, T0, l.local_leo(), epochs),
        FollowerFetch::Error(FetchError::NotAReplica),
        "the leader itself"
    );
}

#[test]
fn acks_all_waiters() {
    let mut l = leader(&[1, 2, 3], 2, 100, 100);
    assert_eq!(l.acks_all_state(100), AcksAllState::Done);
    l.on_local_append(110, T0);
    l.park(1, 105);
    l.park(2, 110);
    l.park(3, 110);
    assert_eq!(l.acks_all_state(110), AcksAllState::Waiting);
    fetch(&mut l, 2, 110, T0);
    assert!(l.take_ready().is_empty());
    fetch(&mut l, 3, 105, T0);
    assert_eq!(l.take_ready(), vec![(1, AcksOutcome::Done)]);
    assert!(l.cancel(3));
    assert!(!l.cancel(3));
    fetch(&mut l, 3, 110, T0);
    assert_eq!(l.take_ready(), vec![(2, AcksOutcome::Done)]);
    // Replicated to the HW, but the ISR is now too small for the minimum.
    l.on_local_append(120, T0);
    l.park(4, 120);
    fetch(&mut l, 2, 120, T0);
    fetch(&mut l, 3, 120, T0);
    assert!(l.set_min_isr(4, T0) || l.high_watermark() == 120);
    assert_eq!(
        l.take_ready(),
        vec![(4, AcksOutcome::NotEnoughReplicasAfterAppend)]
    );
    assert_eq!(AcksOutcome::NotEnoughReplicasAfterAppend.error_code(), 20);
    // Leadership lost: everything parked fails, and nothing more happens.
    l.set_min_isr(2, T0);
    l.on_local_append(130, T0);
    l.park(5, 130);
    l.park(6, 125);
    assert_eq!(
        l.resign(),
        vec![
            (5, AcksOutcome::NotLeaderOrFollower),
            (6, AcksOutcome::NotLeaderOrFollower)
        ]
    );
    l.park(7, 1);
    assert_eq!(l.take_ready(), vec![(7, AcksOutcome::NotLeaderOrFollower)]);
    assert_eq!(
        fetch(&mut l, 2, 130, T0),
        FollowerFetch::Error(FetchError::NotAReplica)
    );
    assert_eq!(l.isr_change_to_propose(T0 + 10 * LAG), None);
}

#[test]
fn reassignment_adds_and_removes_followers() {
    let mut l = leader(&[1, 2, 3], 2, 100, 100);
    fetch(&mut l, 2, 100, T0);
    l.on_partition_change(vec![1, 2, 4], vec![1, 2], 11, T0);
    assert!(l.follower(3).is_none());
    assert_eq!(l.follower(4).unwrap().log_end_offset, -1);
    assert_eq!(l.follower(2).unwrap().log_end_offset, 100, "kept");
}

/// A follower's epoch cache: epochs 1 from 0, 3 from 40, 4 from 70; LEO 90.
fn local(e: i32) -> (i32, i64) {
    match e {
        1 | 2 => (1, 40),
        3 => (3, 70),
        4 => (4, 90),
        _ if e > 4 => (-1, -1),
        _ => (e, 0),
    }
}

#[test]
fn follower_truncation_follows_kafka() {
    // The leader's epoch 3 ended at 60; ours at 70: truncate to 60.
    assert_eq!(
        truncation_offset((3, 60), local, 90, 0),
        Truncation {
            offset: 60,
            complete: true
        }
    );
    // The leader's epoch 3 ended at 80, ours at 70: truncate to 70 (ours).
    assert_eq!(truncation_offset((3, 80), local, 90, 0).offset, 70);
    // The leader's epoch 2 (we never saw it): truncate to the end of our epoch 1 and fetch
    // again.
    assert_eq!(
        truncation_offset((2, 55), local, 90, 0),
        Truncation {
            offset: 40,
            complete: false
        }
    );
    // An epoch above all ours: we know nothing, use the leader's end.
    assert_eq!(
        truncation_offset((7, 85), local, 90, 0),
        Truncation {
            offset: 85,
            complete: true
        }
    );
    assert_eq!(truncation_offset((7, 95), local, 90, 0).offset, 90);
    assert_eq!(truncation_offset((-1, 30), local, 90, 0).offset, 30);
    assert_eq!(truncation_offset((3, -1), local, 90, 25).offset, 25);
    assert_eq!(follower_high_watermark(100, 0, 90), 90);
    assert_eq!(follower_high_watermark(50, 0, 90), 50);
    assert_eq!(follower_high_watermark(5, 10, 90), 10);
    assert_eq!(follower_high_watermark(5, 10, 0), 0);
}

#[test]
fn a_fetch_offset_past_the_leaders_log_end_is_refused_and_not_recorded() {
    // ISR {1,2,3}; the leader's flushed end (its LEO for the HW) is 100, its log ends at 110.
    let mut l = leader(&[1, 2, 3], 2, 100, 50);
    assert_eq!(
        l.on_follower_fetch(2, -1, 100, None, T0, 110, epochs),
        FollowerFetch::Serve { hw_advanced: false }
    );
    // A buggy or stale follower claims 150 (without and with a last fetched epoch whose end
    // does not give it away): refused, its LEO stays unknown, the HW does not move.
    for last in [None, Some(5)] {
        assert_eq!(
            l.on_follower_fetch(3, -1, 150, last, T0, 110, |e| if e == 5 {
                (5, 200)
            } else {
                epochs(e)
            }),
            FollowerFetch::Error(FetchError::OffsetOutOfRange),
            "last fetched epoch {last:?}"
        );
        assert_eq!(l.follower(3).unwrap().log_end_offset, -1, "not recorded");
        assert_eq!(l.high_watermark(), 50);
    }
    assert_eq!(FetchError::OffsetOutOfRange.code(true), 1);
    // Up to the real log end (past the flushed end) is a normal fetch.
    assert_eq!(
        l.on_follower_fetch(3, -1, 110, None, T0, 110, epochs),
        FollowerFetch::Serve { hw_advanced: true }
    );
    assert_eq!(
        l.high_watermark(),
        100,
        "capped by the leader's own (flushed) LEO"
    );
}
