use super::{joins, syncs};
use crate::classic::decode_subscription_topics;
use crate::error::*;
use crate::*;

const G: &str = "g";
const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend_from_slice(&i32::try_from(topics.len()).unwrap().to_be_bytes());
    for t in topics {
        b.extend_from_slice(&i16::try_from(t.len()).unwrap().to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b
}

fn req(member_id: &str, client: &str) -> JoinRequest {
    JoinRequest {
        group_id: G.to_string(),
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: client.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".to_string(),
        protocols: vec![
            ("range".to_string(), subscription(&["t1", "t2"])),
            ("roundrobin".to_string(), subscription(&["t1"])),
        ],
        require_known_member_id: true,
    }
}

fn static_req(member_id: &str, client: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_string()),
        ..req(member_id, client)
    }
}

fn state(c: &GroupCoordinator) -> GroupState {
    c.describe(G).unwrap().state
}

/// First join (MEMBER_ID_REQUIRED) plus the parked rejoin; returns the id.
fn join_new(c: &mut GroupCoordinator, now: u64, token: u64, client: &str) -> (String, Vec<Output>) {
    let out = c.join(now, token, req("", client));
    let r = joins(&out).remove(&token).unwrap();
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    assert!(r.member_id.starts_with(&format!("{client}-")));
    let out = c.join(now, token, req(&r.member_id, client));
    (r.member_id, out)
}

fn sync(
    c: &mut GroupCoordinator,
    now: u64,
    token: u64,
    gen: i32,
    member: &str,
    assignments: Vec<(String, Vec<u8>)>,
) -> Vec<Output> {
    c.sync(
        now,
        token,
        SyncRequest {
            group_id: G.to_string(),
            generation_id: gen,
            member_id: member.to_string(),
            group_instance_id: None,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignments,
        },
    )
}

fn hb(c: &mut GroupCoordinator, now: u64, gen: i32, member: &str) -> i16 {
    c.heartbeat(
        now,
        HeartbeatRequest {
            group_id: G.to_string(),
            generation_id: gen,
            member_id: member.to_string(),
            group_instance_id: None,
        },
    )
}

/// Two members, generation 1, Stable. Returns (leader, follower, now).
fn stable_pair(c: &mut GroupCoordinator) -> (String, String, u64) {
    let (a, out) = join_new(c, 0, 1, "a");
    assert!(out.is_empty());
    let (b, out) = join_new(c, 100, 2, "b");
    assert!(out.is_empty());
    let mut out = c.tick(3000, &TopicsSnapshot::default());
    out.extend(c.tick(6000, &TopicsSnapshot::default()));
    let j = joins(&out);
    assert_eq!(j.len(), 2);
    assert!(sync(c, 6001, 4, 1, &b, vec![]).is_empty());
    let out = sync(
        c,
        6002,
        3,
        1,
        &a,
        vec![(a.clone(), b"A".to_vec()), (b.clone(), b"B".to_vec())],
    );
    assert_eq!(syncs(&out).len(), 2);
    assert_eq!(state(c), GroupState::Stable);
    (a, b, 6002)
}

#[test]
fn two_members_in_initial_delay_get_one_generation_and_one_leader() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, out) = join_new(&mut c, 0, 1, "a");
    assert!(out.is_empty());
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    assert_eq!(c.next_deadline_ms(), Some(3000));
    let (b, out) = join_new(&mut c, 100, 2, "b");
    assert!(out.is_empty());
    assert_ne!(a, b);
    // A new member arrived during the delay: it is extended once more.
    assert!(c.tick(2999, &TopicsSnapshot::default()).is_empty());
    assert!(c.tick(3000, &TopicsSnapshot::default()).is_empty());
    assert_eq!(c.next_deadline_ms(), Some(6000));
    let out = c.tick(6000, &TopicsSnapshot::default());
    let j = joins(&out);
    assert_eq!(j.len(), 2);
    let (ra, rb) = (&j[&1], &j[&2]);
    assert_eq!((ra.error, rb.error), (NONE, NONE));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader, a);
    assert_eq!(rb.leader, a);
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(ra.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(ra.members[0].metadata, subscription(&["t1", "t2"]));
    assert_eq!(state(&c), GroupState::CompletingRebalance);
    // Heartbeats are fine between join and sync (as Kafka).
    assert_eq!(hb(&mut c, 6001, 1, &b), NONE);
}

#[test]
fn leader_sync_delivers_assignments_to_parked_followers() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, _) = join_new(&mut c, 0, 1, "a");
    let (b, _) = join_new(&mut c, 0, 2, "b");
    let (d, _) = join_new(&mut c, 0, 3, "d");
    c.tick(3000, &TopicsSnapshot::default());
    let out = c.tick(6000, &TopicsSnapshot::default());
    assert_eq!(joins(&out).len(), 3);
    // Followers park.
    assert!(sync(&mut c, 6001, 12, 1, &b, vec![]).is_empty());
    assert!(sync(&mut c, 6001, 13, 1, &d, vec![]).is_empty());
    // Wrong generation is refused at once.
    let out = sync(&mut c, 6001, 99, 7, &b, vec![]);
    assert_eq!(syncs(&out)[&99].error, ILLEGAL_GENERATION);
    let out = sync(&mut c, 6001, 98, 1, "stranger", vec![]);
    assert_eq!(syncs(&out)[&98].error, UNKNOWN_MEMBER_ID);
    let out = sync(
        &mut c,
        6002,
        11,
        1,
        &a,
        vec![
            (a.clone(), b"for-a".to_vec()),
            (b.clone(), b"for-b".to_vec()),
        ],
    );
    let s = syncs(&out);
    assert_eq!(s.len(), 3);
    assert_eq!(s[&11].assignment, b"for-a");
    assert_eq!(s[&12].assignment, b"for-b");
    assert!(
        s[&13].assignment.is_empty(),
        "missing members get empty assignments"
    );
    assert!(s
        .values()
        .all(|r| r.error == NONE && r.protocol_name.as_deref() == Some("range")));
    assert_eq!(state(&c), GroupState::Stable);
    // A late sync in Stable gets its assignment directly.
    let out = sync(&mut c, 6003, 14, 1, &b, vec![]);
    assert_eq!(syncs(&out)[&14].assignment, b"for-b");
    let desc = c.describe(G).unwrap();
    assert_eq!(desc.protocol_name, "range");
    assert_eq!(desc.members.len(), 3);
    assert_eq!(
        c.subscribed_topics(G),
        vec!["t1".to_string(), "t2".to_string()]
    );
}

#[test]
fn member_id_required_then_rejoin_and_pending_expiry() {
    let cfg = CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    };
    let mut c = GroupCoordinator::new(cfg);
    let out = c.join(0, 1, req("", "cli"));
    let r = &joins(&out)[&1];
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    assert_eq!(r.generation_id, -1);
    // An id the coordinator did not hand out is unknown.
    let out = c.join(1, 2, req("cli-made-up", "cli"));
    assert_eq!(joins(&out)[&2].error, UNKNOWN_MEMBER_ID);
    // With no initial delay, the rejoin completes the rebalance at once.
    let out = c.join(1, 3, req(&r.member_id, "cli"));
    let j = &joins(&out)[&3];
    assert_eq!(j.error, NONE);
    assert_eq!(j.leader, r.member_id);
    assert_eq!(j.generation_id, 1);
    // A pending member that never comes back expires after its session.
    let out = c.join(10, 4, req("", "late"));
    let late = joins(&out)[&4].member_id.clone();
    c.tick(10 + SESSION as u64, &TopicsSnapshot::default());
    let out = c.join(10 + SESSION as u64 + 1, 5, req(&late, "late"));
    assert_eq!(joins(&out)[&5].error, UNKNOWN_MEMBER_ID);
}

#[test]
fn old_clients_join_without_member_id_round_trip() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let out = c.join(
        0,
        1,
        JoinRequest {
            require_known_member_id: false,
            ..req("", "old")
        },
    );
    assert!(out.is_empty());
    let out = c.tick(3000, &TopicsSnapshot::default());
    let r = &joins(&out)[&1];
    assert_eq!(r.error, NONE);
    assert_eq!(r.leader, r.member_id);
}

#[test]
fn validation_errors() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let out = c.join(
        0,
        1,
        JoinRequest {
            session_timeout_ms: 10,
            ..req("", "a")
        },
    );
    assert_eq!(joins(&out)[&1].error, INVALID_SESSION_TIMEOUT);
    let out = c.join(
        0,
        2,
        JoinRequest {
            group_id: String::new(),
            ..req("", "a")
        },
    );
    assert_eq!(joins(&out)[&2].error, INVALID_GROUP_ID);
    let out = c.join(
        0,
        3,
        JoinRequest {
            protocols: vec![],
            ..req("", "a")
        },
    );
    assert_eq!(joins(&out)[&3].error, INCONSISTENT_GROUP_PROTOCOL);
    assert!(
        c.describe(G).is_none(),
        "failed joins leave no group behind"
    );
    let (_a, _) = join_new(&mut c, 0, 4, "a");
    let out = c.join(
        0,
        5,
        JoinRequest {
            protocol_type: "connect".into(),
            ..req("", "b")
        },
    );
    assert_eq!(joins(&out)[&5].error, INCONSISTENT_GROUP_PROTOCOL);
    let out = c.join(
        0,
        6,
        JoinRequest {
            protocols: vec![("sticky".into(), vec![])],
            ..req("", "b")
        },
    );
    assert_eq!(joins(&out)[&6].error, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(hb(&mut c, 0, 0, "nobody"), UNKNOWN_MEMBER_ID);
}

#[test]
fn group_max_size() {
    let cfg = CoordinatorConfig {
        max_group_size: 1,
        ..CoordinatorConfig::default()
    };
    let mut c = GroupCoordinator::new(cfg);
    let (_a, _) = join_new(&mut c, 0, 1, "a");
    let out = c.join(0, 2, req("", "b"));
    assert_eq!(joins(&out)[&2].error, GROUP_MAX_SIZE_REACHED);
}

#[test]
fn session_expiry_triggers_rebalance() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, b, now) = stable_pair(&mut c);
    // a keeps heartbeating, b goes silent.
    let mut t = now;
    while t < now + SESSION as u64 - 1000 {
        t += 3000;
        assert_eq!(hb(&mut c, t, 1, &a), NONE);
        assert!(c.tick(t, &TopicsSnapshot::default()).is_empty());
    }
    let deadline = c.next_deadline_ms().unwrap();
    assert_eq!(deadline, now + SESSION as u64);
    c.tick(deadline, &TopicsSnapshot::default());
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    assert_eq!(hb(&mut c, deadline + 1, 1, &a), REBALANCE_IN_PROGRESS);
    assert_eq!(hb(&mut c, deadline + 1, 1, &b), UNKNOWN_MEMBER_ID);
    // The sole survivor rejoins: the rebalance completes immediately.
    let out = c.join(deadline + 2, 7, req(&a, "a"));
    let r = &joins(&out)[&7];
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.leader, a);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn last_member_expiring_empties_the_group() {
    let cfg = CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    };
    let mut c = GroupCoordinator::new(cfg);
    let (a, out) = join_new(&mut c, 0, 1, "a");
    assert_eq!(joins(&out).len(), 1);
    let out = sync(&mut c, 1, 2, 1, &a, vec![(a.clone(), vec![1])]);
    assert_eq!(syncs(&out)[&2].assignment, vec![1]);
    c.tick(1 + SESSION as u64, &TopicsSnapshot::default());
    let d = c.describe(G).unwrap();
    assert_eq!(d.state, GroupState::Empty);
    assert_eq!(d.group_epoch, 2);
    assert_eq!(c.next_deadline_ms(), None);
}

#[test]
fn rebalance_timeout_evicts_member_that_does_not_rejoin() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, b, now) = stable_pair(&mut c);
    // A third member joins: rebalance.
    let (new, out) = join_new(&mut c, now + 1, 20, "n");
    assert!(out.is_empty());
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    assert_eq!(hb(&mut c, now + 2, 1, &a), REBALANCE_IN_PROGRESS);
    assert!(c.join(now + 3, 21, req(&a, "a")).is_empty());
    // b keeps heartbeating (so its session lives) but never rejoins.
    let deadline = now + 1 + REBALANCE as u64;
    let mut t = now;
    while t + 3000 < deadline {
        t += 3000;
        assert_eq!(hb(&mut c, t, 1, &b), REBALANCE_IN_PROGRESS);
        assert!(c.tick(t, &TopicsSnapshot::default()).is_empty());
    }
    assert_eq!(c.next_deadline_ms(), Some(deadline));
    let out = c.tick(deadline, &TopicsSnapshot::default());
    let j = joins(&out);
    assert_eq!(j.len(), 2);
    assert_eq!(j[&21].generation_id, 2);
    assert_eq!(j[&21].leader, a, "the existing leader is kept");
    assert_eq!(j[&21].members.len(), 2);
    assert_eq!(j[&20].member_id, new);
    assert_eq!(hb(&mut c, deadline + 1, 2, &b), UNKNOWN_MEMBER_ID);
}

#[test]
fn follower_rejoin_while_stable_does_not_rebalance_but_leader_rejoin_does() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, b, now) = stable_pair(&mut c);
    let out = c.join(now + 1, 30, req(&b, "b"));
    let r = &joins(&out)[&30];
    assert_eq!((r.error, r.generation_id), (NONE, 1));
    assert_eq!(state(&c), GroupState::Stable);
    // Changed metadata from a follower rebalances.
    let mut changed = req(&b, "b");
    changed.protocols[0].1 = subscription(&["t3"]);
    assert!(c.join(now + 2, 31, changed).is_empty());
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    let out = c.join(now + 3, 32, req(&a, "a"));
    let j = joins(&out);
    assert_eq!(j.len(), 2);
    assert_eq!(j[&32].generation_id, 2);
    // Leader rejoin while Stable also rebalances.
    sync(&mut c, now + 4, 33, 2, &b, vec![]);
    sync(&mut c, now + 4, 34, 2, &a, vec![]);
    assert_eq!(state(&c), GroupState::Stable);
    assert!(c.join(now + 5, 35, req(&a, "a")).is_empty());
    assert_eq!(state(&c), GroupState::PreparingRebalance);
}

#[test]
fn new_join_during_completing_rebalance_fails_parked_syncs() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (_a, _) = join_new(&mut c, 0, 1, "a");
    let (b, _) = join_new(&mut c, 0, 2, "b");
    c.tick(3000, &TopicsSnapshot::default());
    c.tick(6000, &TopicsSnapshot::default());
    assert!(sync(&mut c, 6001, 3, 1, &b, vec![]).is_empty());
    let (_n, out) = join_new(&mut c, 6002, 4, "n");
    assert_eq!(syncs(&out)[&3].error, REBALANCE_IN_PROGRESS);
    let out = sync(&mut c, 6003, 5, 1, &b, vec![]);
    assert_eq!(syncs(&out)[&5].error, REBALANCE_IN_PROGRESS);
}

#[test]
fn members_that_never_sync_are_removed() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, _) = join_new(&mut c, 0, 1, "a");
    let (b, _) = join_new(&mut c, 0, 2, "b");
    c.tick(3000, &TopicsSnapshot::default());
    c.tick(6000, &TopicsSnapshot::default());
    let out = sync(&mut c, 6001, 3, 1, &a, vec![]);
    assert_eq!(syncs(&out).len(), 1);
    // Both heartbeat; b never syncs.
    let mut t = 6001;
    while t + 3000 < 6000 + REBALANCE as u64 {
        t += 3000;
        assert_eq!(hb(&mut c, t, 1, &a), NONE);
        assert_eq!(hb(&mut c, t, 1, &b), NONE);
        c.tick(t, &TopicsSnapshot::default());
    }
    assert_eq!(c.describe(G).unwrap().members.len(), 2);
    c.tick(6000 + REBALANCE as u64, &TopicsSnapshot::default());
    let d = c.describe(G).unwrap();
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.state, GroupState::PreparingRebalance);
}

#[test]
fn static_member_restart_keeps_assignment_and_fences_old_id() {
    let cfg = CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    };
    let mut c = GroupCoordinator::new(cfg);
    // Static members skip MEMBER_ID_REQUIRED.
    let out = c.join(0, 1, static_req("", "a", "ia"));
    let a = joins(&out)[&1].member_id.clone();
    assert_eq!(
        joins(&out)[&1].error,
        NONE,
        "single member completes at once"
    );
    // b joins: rebalance, a must rejoin.
    assert!(c.join(1, 2, static_req("", "b", "ib")).is_empty());
    let out = c.join(2, 3, static_req(&a, "a", "ia"));
    let j = joins(&out);
    assert_eq!(j.len(), 2);
    let b = j[&2].member_id.clone();
    let gen = j[&3].generation_id;
    sync(&mut c, 3, 4, gen, &b, vec![]);
    let out = sync(
        &mut c,
        3,
        5,
        gen,
        &a,
        vec![(a.clone(), b"AA".to_vec()), (b.clone(), b"BB".to_vec())],
    );
    assert_eq!(syncs(&out).len(), 2);
    assert_eq!(state(&c), GroupState::Stable);

    // b restarts: new member id, same instance, same protocols.
    let out = c.join(100, 6, static_req("", "b", "ib"));
    let r = &joins(&out)[&6];
    assert_eq!(r.error, NONE);
    assert_ne!(r.member_id, b);
    assert_eq!(r.generation_id, gen, "no rebalance");
    assert!(!r.skip_assignment);
    assert!(r.members.is_empty());
    let new_b = r.member_id.clone();
    assert_eq!(state(&c), GroupState::Stable);
    let out = c.sync(
        101,
        7,
        SyncRequest {
            group_id: G.into(),
            generation_id: gen,
            member_id: new_b.clone(),
            group_instance_id: Some("ib".into()),
            ..SyncRequest::default()
        },
    );
    assert_eq!(syncs(&out)[&7].assignment, b"BB");
    // The old incarnation is fenced.
    let old = c.heartbeat(
        102,
        HeartbeatRequest {
            group_id: G.into(),
            generation_id: gen,
            member_id: b.clone(),
            group_instance_id: Some("ib".into()),
        },
    );
    assert_eq!(old, FENCED_INSTANCE_ID);

    // The leader restarting gets the member list and skip_assignment.
    let out = c.join(200, 8, static_req("", "a", "ia"));
    let r = &joins(&out)[&8];
    assert_eq!(r.error, NONE);
    assert!(r.skip_assignment);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 2);
    assert_eq!(state(&c), GroupState::Stable);

    // Static members can leave by instance id (batch leave).
    let res = c.leave(
        300,
        G,
        &[
            LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("ib".into()),
            },
            LeavingMember {
                member_id: "wrong".into(),
                group_instance_id: Some("ia".into()),
            },
            LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("zz".into()),
            },
        ],
    );
    let errs: Vec<i16> = res.members.iter().map(|(_, e)| *e).collect();
    assert_eq!(errs, vec![NONE, FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID]);
}

#[test]
fn leave_triggers_rebalance_and_completes_parked_joins() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, b, now) = stable_pair(&mut c);
    let res = c.leave(
        now + 1,
        G,
        &[LeavingMember {
            member_id: b.clone(),
            group_instance_id: None,
        }],
    );
    assert_eq!(res.error, NONE);
    assert_eq!(res.members[0].1, NONE);
    // Only a remains and has not rejoined yet.
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    let out = c.join(now + 2, 9, req(&a, "a"));
    assert_eq!(joins(&out)[&9].generation_id, 2);

    sync(&mut c, now + 3, 10, 2, &a, vec![]);
    assert_eq!(state(&c), GroupState::Stable);
    // n joins (rebalance starts, a has not rejoined), then m joins.
    let (n, out) = join_new(&mut c, now + 4, 11, "n");
    assert!(out.is_empty());
    let (m, out) = join_new(&mut c, now + 4, 13, "m");
    assert!(out.is_empty());
    // m leaves: its own parked join is answered; the rebalance goes on.
    let res = c.leave(
        now + 5,
        G,
        &[LeavingMember {
            member_id: m,
            group_instance_id: None,
        }],
    );
    assert_eq!(joins(&res.outputs)[&13].error, UNKNOWN_MEMBER_ID);
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    // a, the only member that had not rejoined, leaves: n's join completes.
    let res = c.leave(
        now + 6,
        G,
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
    );
    let j = joins(&res.outputs);
    assert_eq!(j[&11].error, NONE);
    assert_eq!(j[&11].generation_id, 3);
    assert_eq!(j[&11].leader, n, "a new leader is chosen");

    let res = c.leave(
        now + 7,
        G,
        &[LeavingMember {
            member_id: "ghost".into(),
            group_instance_id: None,
        }],
    );
    assert_eq!(res.members[0].1, UNKNOWN_MEMBER_ID);
    let res = c.leave(
        now + 7,
        "nope",
        &[LeavingMember {
            member_id: "ghost".into(),
            group_instance_id: None,
        }],
    );
    assert_eq!(res.members[0].1, UNKNOWN_MEMBER_ID);
}

#[test]
fn delete_rules() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    assert_eq!(c.delete(G), GROUP_ID_NOT_FOUND);
    let (a, b, now) = stable_pair(&mut c);
    assert_eq!(c.delete(G), NON_EMPTY_GROUP);
    let res = c.leave(
        now,
        G,
        &[
            LeavingMember {
                member_id: a,
                group_instance_id: None,
            },
            LeavingMember {
                member_id: b,
                group_instance_id: None,
            },
        ],
    );
    assert!(res.members.iter().all(|(_, e)| *e == NONE));
    assert_eq!(state(&c), GroupState::Empty);
    let listing = c.list();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].protocol_type, "consumer");
    assert_eq!(listing[0].group_type.as_str(), "classic");
    assert_eq!(listing[0].state.as_str(), "Empty");
    assert_eq!(c.delete(G), NONE);
    assert!(c.describe(G).is_none());
    assert_eq!(c.delete(G), GROUP_ID_NOT_FOUND);
}

#[test]
fn offset_commit_validation() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    // Unknown group: simple commits create an empty group, others are refused.
    assert_eq!(c.validate_offset_commit(0, "simple", -1, "", None), NONE);
    assert_eq!(c.describe("simple").unwrap().state, GroupState::Empty);
    assert_eq!(
        c.validate_offset_commit(0, "other", 3, "m", None),
        ILLEGAL_GENERATION
    );

    let (_a, _) = join_new(&mut c, 0, 1, "a");
    let (b, _) = join_new(&mut c, 0, 2, "b");
    c.tick(3000, &TopicsSnapshot::default());
    c.tick(6000, &TopicsSnapshot::default());
    assert_eq!(
        c.validate_offset_commit(6001, G, 1, &b, None),
        REBALANCE_IN_PROGRESS
    );
    // KIP-447: transactional commits are not refused for a rebalance in progress.
    assert_eq!(c.validate_commit(6001, G, 1, &b, None, true), NONE);
    let (a, b, now) = {
        // Finish the sync.
        let d = c.describe(G).unwrap();
        let leader = d
            .members
            .iter()
            .map(|m| m.member_id.clone())
            .find(|m| *m != b)
            .unwrap();
        sync(&mut c, 6002, 3, 1, &leader, vec![]);
        sync(&mut c, 6002, 4, 1, &b, vec![]);
        (leader, b, 6002)
    };
    assert_eq!(c.validate_offset_commit(now, G, 1, &b, None), NONE);
    assert_eq!(
        c.validate_offset_commit(now, G, 2, &b, None),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        c.validate_offset_commit(now, G, 1, "ghost", None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.validate_offset_commit(now, G, -1, "", None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.validate_offset_commit(now, G, 1, &b, Some("inst")),
        UNKNOWN_MEMBER_ID
    );
    // TxnOffsetCommit: without member, generation and instance id (v0-2, kafkajs) it is
    // accepted though the group has members; with them, they are checked.
    assert_eq!(c.validate_commit(now, G, -1, "", None, true), NONE);
    assert_eq!(c.validate_commit(now, G, 1, &b, None, true), NONE);
    assert_eq!(
        c.validate_commit(now, G, 2, &b, None, true),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        c.validate_commit(now, G, 1, "ghost", None, true),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.validate_commit(now, "nogroup", 3, "m", None, true),
        ILLEGAL_GENERATION
    );

    // Commits keep a member alive: b only commits, a only heartbeats.
    let mut t = now;
    for _ in 0..10 {
        t += 3000;
        assert_eq!(c.validate_offset_commit(t, G, 1, &b, None), NONE);
        assert_eq!(hb(&mut c, t, 1, &a), NONE);
        assert!(c.tick(t, &TopicsSnapshot::default()).is_empty());
    }
    assert_eq!(state(&c), GroupState::Stable);
    assert_eq!(c.describe(G).unwrap().members.len(), 2);
}

#[test]
fn static_member_fenced_on_offset_commit() {
    let cfg = CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    };
    let mut c = GroupCoordinator::new(cfg);
    let out = c.join(0, 1, static_req("", "a", "ia"));
    let old = joins(&out)[&1].member_id.clone();
    sync(&mut c, 1, 2, 1, &old, vec![]);
    let out = c.join(2, 3, static_req("", "a", "ia"));
    let new = joins(&out)[&3].member_id.clone();
    assert_eq!(
        c.validate_offset_commit(3, G, 1, &old, Some("ia")),
        FENCED_INSTANCE_ID
    );
    assert_eq!(c.validate_offset_commit(3, G, 1, &new, Some("ia")), NONE);
}

#[test]
fn subscription_decoding_ignores_garbage() {
    assert_eq!(
        decode_subscription_topics(&subscription(&["x", "yy"])),
        vec!["x", "yy"]
    );
    assert!(decode_subscription_topics(&[]).is_empty());
    assert!(decode_subscription_topics(&[0, 1, 0xff, 0xff, 0xff, 0xff]).is_empty());
    let mut truncated = subscription(&["abc", "def"]);
    truncated.truncate(truncated.len() - 1);
    assert_eq!(decode_subscription_topics(&truncated), vec!["abc"]);
    assert!(decode_subscription_topics(&[0, 1, 0x7f, 0, 0, 0, 0x7f, 0xff]).is_empty());
}

#[test]
fn empty_groups_without_offsets_are_forgotten() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    // Simple commits create empty classic groups, as in Kafka.
    assert_eq!(c.validate_offset_commit(0, "kept", -1, "", None), NONE);
    assert_eq!(c.validate_offset_commit(0, "gone", -1, "", None), NONE);
    let _ = stable_pair(&mut c);
    assert_eq!(c.remove_empty_groups(|g| g == "kept"), 1);
    assert!(c.describe("gone").is_none());
    assert!(c.describe("kept").is_some());
    // A group with members stays whatever `keep` says.
    assert!(c.describe(G).is_some());
}

#[test]
fn a_completed_generation_is_persisted_and_restored_for_its_members() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (a, b, now) = stable_pair(&mut c);
    // Joins and the rebalance persisted nothing; the leader's assignment made one record.
    let records = c.take_group_records();
    assert_eq!(records.len(), 1, "{records:?}");
    let (group, record) = records.into_iter().next().unwrap();
    assert_eq!(group, G);
    let GroupRecordChange::Classic(Some(record)) = record else {
        panic!("a classic record, not a deletion: {record:?}");
    };
    assert_eq!(record.generation_id, 1);
    assert_eq!(record.leader_id.as_deref(), Some(a.as_str()));
    assert_eq!(record.members.len(), 2);
    // Heartbeats and a follower's repeated sync change nothing to persist.
    assert_eq!(hb(&mut c, now + 1, 1, &b), NONE);
    assert!(c.take_group_records().is_empty());

    // A new coordinator (restart, failover) loads the record: the members go on in
    // generation 1 with their assignments, no rebalance.
    let mut fresh = GroupCoordinator::new(CoordinatorConfig::default());
    assert!(fresh.restore_group(G, GroupRecordChange::Classic(Some(record.clone())), 50_000));
    assert!(
        !fresh.restore_group(G, GroupRecordChange::Classic(Some(record)), 50_000),
        "exists already"
    );
    assert!(
        fresh.take_group_records().is_empty(),
        "a restored group is not written back"
    );
    assert_eq!(state(&fresh), GroupState::Stable);
    assert_eq!(hb(&mut fresh, 50_001, 1, &a), NONE);
    assert_eq!(hb(&mut fresh, 50_001, 1, &b), NONE);
    assert_eq!(fresh.validate_offset_commit(50_002, G, 1, &b, None), NONE);
    assert_eq!(
        fresh.validate_offset_commit(50_002, G, 2, &b, None),
        ILLEGAL_GENERATION
    );
    let out = sync(&mut fresh, 50_003, 9, 1, &b, vec![]);
    assert_eq!(syncs(&out)[&9].assignment, b"B".to_vec());
    // Sessions restart at the load: members that never come back expire as usual.
    assert_eq!(fresh.next_deadline_ms(), Some(50_001 + SESSION as u64));

    // Both leave: the group empties and its record is deleted.
    let left = fresh.leave(
        50_010,
        G,
        &[
            LeavingMember {
                member_id: a.clone(),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: b.clone(),
                group_instance_id: None,
            },
        ],
    );
    assert!(left.members.iter().all(|(_, e)| *e == NONE));
    assert_eq!(state(&fresh), GroupState::Empty);
    assert_eq!(
        fresh.take_group_records(),
        vec![(G.to_string(), GroupRecordChange::Classic(None))]
    );
}

#[test]
fn restoring_refuses_records_that_are_not_a_group() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    stable_pair(&mut c);
    let (_, record) = c.take_group_records().pop().unwrap();
    let GroupRecordChange::Classic(Some(record)) = record else {
        panic!("a classic record: {record:?}");
    };
    let mut fresh = GroupCoordinator::new(CoordinatorConfig::default());
    let empty = ClassicGroupRecord {
        members: vec![],
        ..record.clone()
    };
    assert!(!fresh.restore_group(G, GroupRecordChange::Classic(Some(empty)), 0));
    let mut dup = record.clone();
    dup.members[1].member_id = dup.members[0].member_id.clone();
    assert!(!fresh.restore_group(G, GroupRecordChange::Classic(Some(dup)), 0));
    let small = GroupCoordinator::new(CoordinatorConfig {
        max_group_size: 1,
        ..CoordinatorConfig::default()
    });
    let mut small = small;
    assert!(!small.restore_group(G, GroupRecordChange::Classic(Some(record.clone())), 0));
    assert!(!fresh.restore_group("", GroupRecordChange::Classic(Some(record)), 0));
    assert!(fresh.describe(G).is_none());
}
