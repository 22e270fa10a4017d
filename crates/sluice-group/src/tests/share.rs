//! Share-group membership (KIP-932 ShareGroupHeartbeat).

use std::collections::BTreeMap;

use crate::error::*;
use crate::*;

const G: &str = "sg";
const T: [u8; 16] = [7; 16];

fn topics(partitions: i32) -> TopicsSnapshot {
    TopicsSnapshot {
        topics: BTreeMap::from([("jobs".to_string(), TopicInfo { id: T, partitions })]),
        regex_matches: BTreeMap::new(),
    }
}

fn hb(member: &str, epoch: i32, subscribe: bool) -> ShareHeartbeat {
    ShareHeartbeat {
        group_id: G.to_string(),
        member_id: member.to_string(),
        member_epoch: epoch,
        subscribed_topic_names: subscribe.then(|| vec!["jobs".to_string()]),
        ..ShareHeartbeat::default()
    }
}

fn partitions(r: &ShareHeartbeatResponse) -> Vec<i32> {
    r.assignment
        .as_ref()
        .map(|a| a.iter().flat_map(|(_, ps)| ps.clone()).collect())
        .unwrap_or_default()
}

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(CoordinatorConfig::default())
}

#[test]
fn members_share_a_single_partition() {
    let mut c = coordinator();
    let t = topics(1);
    let to = ShareGroupTimeouts::default();
    let a = c.share_heartbeat(0, hb("a", 0, true), &t, to).unwrap();
    assert_eq!(partitions(&a), vec![0]);
    let b = c.share_heartbeat(1, hb("b", 0, true), &t, to).unwrap();
    assert_eq!(
        partitions(&b),
        vec![0],
        "a second member reads the same partition"
    );
    // a heartbeats with the epoch it knows and moves to the new one; its partitions stay.
    let a2 = c
        .share_heartbeat(2, hb("a", a.member_epoch, false), &t, to)
        .unwrap();
    assert_eq!(a2.member_epoch, b.member_epoch);
    assert_eq!(a2.assignment, None);
    let stale = c.share_heartbeat(3, hb("a", a.member_epoch, false), &t, to);
    assert_eq!(stale.unwrap_err().0, FENCED_MEMBER_EPOCH);
}

#[test]
fn partitions_split_when_there_are_enough() {
    let mut c = coordinator();
    let t = topics(4);
    let to = ShareGroupTimeouts::default();
    c.share_heartbeat(0, hb("a", 0, true), &t, to).unwrap();
    let b = c.share_heartbeat(1, hb("b", 0, true), &t, to).unwrap();
    let a = c.share_heartbeat(2, hb("a", 1, false), &t, to).unwrap();
    assert_eq!(partitions(&a), vec![0, 2]);
    assert_eq!(partitions(&b), vec![1, 3]);
}

#[test]
fn leave_and_expiry_report_departed_members() {
    let mut c = coordinator();
    let t = topics(1);
    let to = ShareGroupTimeouts::default();
    c.share_heartbeat(0, hb("a", 0, true), &t, to).unwrap();
    let b = c.share_heartbeat(0, hb("b", 0, true), &t, to).unwrap();
    let left = c.share_heartbeat(1, hb("b", -1, false), &t, to).unwrap();
    assert_eq!(left.member_epoch, -1);
    assert_eq!(
        c.take_departed_share_members(),
        vec![(G.to_string(), "b".to_string())]
    );
    assert!(b.member_epoch > 0);
    c.tick(to.session_timeout_ms as u64 + 1, &t);
    assert_eq!(
        c.take_departed_share_members(),
        vec![(G.to_string(), "a".to_string())]
    );
    assert!(!c.is_share_member(G, "a"));
    assert_eq!(c.delete(G), NONE, "an empty share group can be deleted");
}

#[test]
fn share_and_consumer_groups_do_not_mix() {
    let mut c = coordinator();
    let t = topics(1);
    let to = ShareGroupTimeouts::default();
    c.share_heartbeat(0, hb("a", 0, true), &t, to).unwrap();
    let err = c
        .consumer_heartbeat(
            0,
            ConsumerHeartbeat {
                group_id: G.to_string(),
                member_epoch: 0,
                rebalance_timeout_ms: 1000,
                subscribed_topic_names: Some(vec!["jobs".to_string()]),
                ..ConsumerHeartbeat::default()
            },
            &t,
        )
        .unwrap_err();
    assert_eq!(err.0, GROUP_ID_NOT_FOUND);
    assert_eq!(c.list()[0].group_type, GroupType::Share);
}

#[test]
fn bad_heartbeats_are_refused() {
    let mut c = coordinator();
    let t = topics(1);
    let to = ShareGroupTimeouts::default();
    assert_eq!(
        c.share_heartbeat(0, hb("", 0, true), &t, to).unwrap_err().0,
        INVALID_REQUEST
    );
    assert_eq!(
        c.share_heartbeat(0, hb("a", 0, false), &t, to)
            .unwrap_err()
            .0,
        INVALID_REQUEST
    );
    assert_eq!(
        c.share_heartbeat(0, hb("a", 3, false), &t, to)
            .unwrap_err()
            .0,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.share_heartbeat(0, hb("a", -5, false), &t, to)
            .unwrap_err()
            .0,
        INVALID_REQUEST
    );
}

#[test]
fn a_share_group_is_persisted_and_restored_for_its_members() {
    let mut c = coordinator();
    let t = topics(4);
    let to = ShareGroupTimeouts {
        session_timeout_ms: 20_000,
        ..ShareGroupTimeouts::default()
    };
    let a = c.share_heartbeat(0, hb("a", 0, true), &t, to).unwrap();
    let b = c.share_heartbeat(1, hb("b", 0, true), &t, to).unwrap();
    let a = c
        .share_heartbeat(2, hb("a", a.member_epoch, false), &t, to)
        .unwrap();
    let mut records = c.take_group_records();
    let Some((group, GroupRecordChange::Share(Some(record)))) = records.pop() else {
        panic!("the changes were persisted: {records:?}");
    };
    assert_eq!(group, G);
    assert_eq!(
        (record.members.len(), record.session_timeout_ms),
        (2, 20_000)
    );
    // A heartbeat that changes nothing writes nothing.
    c.share_heartbeat(3, hb("b", b.member_epoch, false), &t, to)
        .unwrap();
    assert!(c.take_group_records().is_empty());

    // A new coordinator: both go on with their epochs, no rejoin, the same split.
    let mut fresh = coordinator();
    let change = |r: &ShareGroupRecord| GroupRecordChange::Share(Some(r.clone()));
    assert!(fresh.restore_group(G, change(&record), 50_000));
    assert!(
        !fresh.restore_group(G, change(&record), 50_000),
        "exists already"
    );
    let a2 = fresh
        .share_heartbeat(50_001, hb("a", a.member_epoch, false), &t, to)
        .unwrap();
    let b2 = fresh
        .share_heartbeat(50_002, hb("b", b.member_epoch, false), &t, to)
        .unwrap();
    assert_eq!(
        (a2.member_epoch, b2.member_epoch),
        (a.member_epoch, b.member_epoch)
    );
    let (pa, pb) = (partitions(&a2), partitions(&b2));
    assert_eq!(pa.len() + pb.len(), 4, "{pa:?} {pb:?}");
    assert!(fresh.take_group_records().is_empty(), "nothing changed");
    // Sessions restart at the load with the persisted timeout.
    assert_eq!(fresh.next_deadline_ms(), Some(50_001 + 20_000));
    let mut dup = record.clone();
    dup.members[1].member_id = dup.members[0].member_id.clone();
    assert!(!coordinator().restore_group(G, change(&dup), 0));

    // Both leave: the record is deleted.
    fresh
        .share_heartbeat(50_010, hb("a", -1, false), &t, to)
        .unwrap();
    fresh
        .share_heartbeat(50_011, hb("b", -1, false), &t, to)
        .unwrap();
    assert_eq!(
        fresh.take_group_records().pop(),
        Some((G.to_string(), GroupRecordChange::Share(None)))
    );
}
