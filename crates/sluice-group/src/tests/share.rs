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
