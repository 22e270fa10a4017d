use std::collections::{BTreeMap, BTreeSet};

use crate::error::*;
use crate::*;

const G: &str = "cg";
const TA: [u8; 16] = [1; 16];
const TB: [u8; 16] = [2; 16];

fn snapshot(a_parts: i32, b_parts: i32) -> TopicsSnapshot {
    TopicsSnapshot {
        topics: BTreeMap::from([
            (
                "a".to_string(),
                TopicInfo {
                    id: TA,
                    partitions: a_parts,
                },
            ),
            (
                "b".to_string(),
                TopicInfo {
                    id: TB,
                    partitions: b_parts,
                },
            ),
        ]),
        regex_matches: BTreeMap::new(),
    }
}

type Owned = BTreeMap<[u8; 16], BTreeSet<i32>>;

fn to_owned(v: &[([u8; 16], Vec<i32>)]) -> Owned {
    v.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn to_wire(o: &Owned) -> Vec<([u8; 16], Vec<i32>)> {
    o.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn count(o: &Owned) -> usize {
    o.values().map(BTreeSet::len).sum()
}

/// A simulated KIP-848 client: it owns what it was last told to own.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    epoch: i32,
    owned: Owned,
    topics: Vec<String>,
    assignor: Option<String>,
}

impl Client {
    fn new(topics: &[&str]) -> Self {
        Client {
            id: String::new(),
            epoch: 0,
            owned: Owned::new(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignor: None,
        }
    }

    fn request(&self, send_owned: bool) -> ConsumerHeartbeat {
        let joining = self.epoch == 0;
        ConsumerHeartbeat {
            group_id: G.to_string(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            rebalance_timeout_ms: if joining { 20_000 } else { -1 },
            subscribed_topic_names: joining.then(|| self.topics.clone()),
            server_assignor: self.assignor.clone(),
            owned_partitions: (joining || send_owned).then(|| to_wire(&self.owned)),
            client_id: "client".to_string(),
            client_host: "/10.0.0.1".to_string(),
            ..ConsumerHeartbeat::default()
        }
    }

    fn heartbeat_with(
        &mut self,
        c: &mut GroupCoordinator,
        now: u64,
        topics: &TopicsSnapshot,
        send_owned: bool,
    ) -> ConsumerHeartbeatResponse {
        let r = c.consumer_heartbeat(now, self.request(send_owned), topics);
        match r {
            Ok(resp) => {
                self.id = resp.member_id.clone();
                self.epoch = resp.member_epoch;
                if let Some(a) = &resp.assignment {
                    self.owned = to_owned(a);
                }
                resp
            }
            Err((code, msg)) => panic!("heartbeat failed: {} {msg}", error::name(code)),
        }
    }

    fn heartbeat(
        &mut self,
        c: &mut GroupCoordinator,
        now: u64,
        topics: &TopicsSnapshot,
    ) -> ConsumerHeartbeatResponse {
        self.heartbeat_with(c, now, topics, true)
    }
}

fn assert_disjoint(clients: &[&Client]) {
    let mut seen = BTreeSet::new();
    for cl in clients {
        for (t, ps) in &cl.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "partition {p} owned by two clients");
            }
        }
    }
}

/// Server-side invariant: no partition held by two members.
fn assert_server_disjoint(c: &GroupCoordinator) {
    let Some(crate::Group::Consumer(g)) = c.groups.get(G) else {
        return;
    };
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
            for p in ps {
                assert!(seen.insert((*t, *p)), "partition {p} held by two members");
                assert_eq!(g.owners.get(&(*t, *p)), Some(&m.member_id));
            }
        }
    }
    assert_eq!(seen.len(), g.owners.len());
}

#[test]
fn single_member_gets_every_partition() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(6, 3);
    let mut a = Client::new(&["a", "b"]);
    let r = a.heartbeat(&mut c, 0, &topics);
    assert!(!r.member_id.is_empty());
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(count(&a.owned), 9);
    // Nothing changed: no assignment in the response.
    let r = a.heartbeat_with(&mut c, 1000, &topics, false);
    assert_eq!(r.assignment, None);
    assert_eq!(r.member_epoch, 1);
    let d = c.describe(G).unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.group_type, GroupType::Consumer);
    assert_eq!((d.group_epoch, d.assignment_epoch), (1, 1));
    assert_eq!(d.assignor_name, "uniform");
    assert_eq!(d.members[0].assigned, d.members[0].target);
    assert_eq!(
        c.subscribed_topics(G),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(c.list()[0].protocol_type, "consumer");
}

#[test]
fn second_member_revoke_then_assign() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(6, 0);
    let mut a = Client::new(&["a"]);
    a.heartbeat(&mut c, 0, &topics);
    assert_eq!(count(&a.owned), 6);

    let mut b = Client::new(&["a"]);
    let r = b.heartbeat(&mut c, 10, &topics);
    // b is at the new epoch but gets nothing until a releases.
    assert_eq!(r.member_epoch, 2);
    assert_eq!(count(&b.owned), 0);
    assert_eq!(c.describe(G).unwrap().state, GroupState::Reconciling);
    assert_disjoint(&[&a, &b]);

    // a is asked to revoke three partitions and stays at epoch 1.
    let r = a.heartbeat_with(&mut c, 20, &topics, false);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(count(&a.owned), 3);
    assert_disjoint(&[&a, &b]);
    // b still cannot get them.
    let r = b.heartbeat(&mut c, 30, &topics);
    assert_eq!(r.assignment, None);
    assert_server_disjoint(&c);

    // a acknowledges: moves to epoch 2; b then receives the freed partitions.
    let r = a.heartbeat(&mut c, 40, &topics);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment, None, "assignment unchanged since last sent");
    let r = b.heartbeat(&mut c, 50, &topics);
    assert!(r.assignment.is_some());
    assert_eq!(count(&b.owned), 3);
    assert_disjoint(&[&a, &b]);
    assert_server_disjoint(&c);
    assert_eq!(c.describe(G).unwrap().state, GroupState::Stable);
}

#[test]
fn epoch_validation_and_errors() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(4, 0);
    let mut a = Client::new(&["a"]);
    a.heartbeat(&mut c, 0, &topics);
    let mut req = a.request(true);
    req.member_epoch = 5;
    assert_eq!(
        c.consumer_heartbeat(1, req.clone(), &topics).unwrap_err().0,
        FENCED_MEMBER_EPOCH
    );
    req.member_epoch = 1;
    req.member_id = "ghost".into();
    assert_eq!(
        c.consumer_heartbeat(1, req, &topics).unwrap_err().0,
        UNKNOWN_MEMBER_ID
    );
    // Previous-epoch tolerance: epoch 1 after a bump to 2, owning a subset.
    let mut b = Client::new(&["a"]);
    b.heartbeat(&mut c, 2, &topics);
    a.heartbeat(&mut c, 3, &topics); // revoke requested, still epoch 1
    a.heartbeat(&mut c, 4, &topics); // acked: epoch 2
    assert_eq!(a.epoch, 2);
    let mut stale = a.request(true);
    stale.member_epoch = 1;
    assert!(c.consumer_heartbeat(5, stale.clone(), &topics).is_ok());
    stale.member_epoch = 0;
    stale.member_id = "x".into();
    stale.owned_partitions = Some(vec![(TA, vec![1])]);
    assert_eq!(
        c.consumer_heartbeat(5, stale, &topics).unwrap_err().0,
        INVALID_REQUEST
    );

    let mut bad = Client::new(&["a"]);
    bad.assignor = Some("sticky".into());
    let err = c
        .consumer_heartbeat(6, bad.request(true), &topics)
        .unwrap_err();
    assert_eq!(err.0, UNSUPPORTED_ASSIGNOR);
    assert!(err.1.contains("sticky"));
    // A heartbeat for a group that does not exist asks the member to rejoin.
    let mut orphan = a.request(true);
    orphan.group_id = "missing".into();
    assert_eq!(
        c.consumer_heartbeat(7, orphan, &topics).unwrap_err().0,
        UNKNOWN_MEMBER_ID
    );
    assert!(c.describe("missing").is_none());
}

#[test]
fn range_assignor_through_the_group() {
    let mut c = GroupCoordinator::new(CoordinatorConfig {
        default_consumer_assignor: "range".into(),
        ..CoordinatorConfig::default()
    });
    let topics = snapshot(5, 0);
    let mut a = Client::new(&["a"]);
    let mut b = Client::new(&["a"]);
    a.heartbeat(&mut c, 0, &topics);
    b.heartbeat(&mut c, 1, &topics);
    for t in 2..6 {
        a.heartbeat(&mut c, t, &topics);
        b.heartbeat(&mut c, t, &topics);
    }
    let d = c.describe(G).unwrap();
    assert_eq!(d.assignor_name, "range");
    assert_eq!(d.state, GroupState::Stable);
    let (first, second) = if a.id < b.id { (&a, &b) } else { (&b, &a) };
    assert_eq!(first.owned[&TA], BTreeSet::from([0, 1, 2]));
    assert_eq!(second.owned[&TA], BTreeSet::from([3, 4]));
}

#[test]
fn session_expiry_frees_partitions() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(6, 0);
    let mut a = Client::new(&["a"]);
    let mut b = Client::new(&["a"]);
    a.heartbeat(&mut c, 0, &topics);
    b.heartbeat(&mut c, 0, &topics);
    for t in 1..4 {
        a.heartbeat(&mut c, t, &topics);
        b.heartbeat(&mut c, t, &topics);
    }
    assert_eq!((count(&a.owned), count(&b.owned)), (3, 3));
    // a goes silent; b keeps heartbeating.
    let mut now = 3;
    while now < 3 + 45_000 - 5000 {
        now += 5000;
        b.heartbeat(&mut c, now, &topics);
        c.tick(now, &topics);
    }
    assert_eq!(c.describe(G).unwrap().members.len(), 2);
    let deadline = c.next_deadline_ms().unwrap();
    assert_eq!(deadline, 3 + 45_000);
    c.tick(deadline, &topics);
    let d = c.describe(G).unwrap();
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.group_epoch, 3);
    b.heartbeat(&mut c, deadline + 1, &topics);
    assert_eq!(count(&b.owned), 6);
    // The fenced member learns it on its next heartbeat.
    let err = c
        .consumer_heartbeat(deadline + 2, a.request(true), &topics)
        .unwrap_err();
    assert_eq!(err.0, UNKNOWN_MEMBER_ID);
}

#[test]
fn rebalance_timeout_fences_a_member_that_does_not_revoke() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(4, 0);
    let mut a = Client::new(&["a"]);
    a.heartbeat(&mut c, 0, &topics);
    let kept = a.owned.clone();
    let mut b = Client::new(&["a"]);
    b.heartbeat(&mut c, 1, &topics);
    // a is told to revoke, but keeps claiming everything.
    a.heartbeat(&mut c, 2, &topics);
    a.owned = kept;
    let mut now = 2;
    while now + 5000 < 2 + 20_000 {
        now += 5000;
        a.heartbeat(&mut c, now, &topics);
        a.owned = to_owned(&to_wire(&a.owned));
        b.heartbeat(&mut c, now, &topics);
        c.tick(now, &topics);
        assert_eq!(count(&b.owned), 0);
    }
    c.tick(2 + 20_000, &topics);
    b.heartbeat(&mut c, 2 + 20_001, &topics);
    assert_eq!(count(&b.owned), 4);
    assert_eq!(c.describe(G).unwrap().members.len(), 1);
}

#[test]
fn partition_growth_triggers_new_assignment() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let mut a = Client::new(&["a"]);
    a.heartbeat(&mut c, 0, &snapshot(2, 0));
    assert_eq!(count(&a.owned), 2);
    // Detected on the heartbeat itself.
    let r = a.heartbeat_with(&mut c, 1, &snapshot(4, 0), false);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(count(&a.owned), 4);
    // Detected by tick.
    c.tick(2, &snapshot(7, 0));
    assert_eq!(c.describe(G).unwrap().group_epoch, 3);
    let r = a.heartbeat_with(&mut c, 3, &snapshot(7, 0), false);
    assert_eq!(r.member_epoch, 3);
    assert_eq!(count(&a.owned), 7);
    // Topic deleted: everything revoked.
    let gone = TopicsSnapshot::default();
    a.heartbeat(&mut c, 4, &gone);
    a.heartbeat(&mut c, 5, &gone);
    assert_eq!(count(&a.owned), 0);
    assert_eq!(a.epoch, 4);
}

#[test]
fn leave_and_static_membership() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(4, 0);
    let mut s = Client::new(&["a"]);
    let mut req = s.request(true);
    req.instance_id = Some("i1".into());
    let r = c.consumer_heartbeat(0, req, &topics).unwrap();
    s.id = r.member_id.clone();
    s.epoch = r.member_epoch;
    s.owned = to_owned(&r.assignment.unwrap());
    // Same instance, another member id, while the first is active.
    let mut dup = Client::new(&["a"]).request(true);
    dup.instance_id = Some("i1".into());
    assert_eq!(
        c.consumer_heartbeat(1, dup.clone(), &topics).unwrap_err().0,
        UNRELEASED_INSTANCE_ID
    );
    // Temporary leave (-2) keeps the assignment for the instance.
    let mut leave = s.request(true);
    leave.instance_id = Some("i1".into());
    leave.member_epoch = -2;
    assert_eq!(
        c.consumer_heartbeat(2, leave, &topics)
            .unwrap()
            .member_epoch,
        -2
    );
    let r = c.consumer_heartbeat(3, dup, &topics).unwrap();
    assert_ne!(r.member_id, s.id);
    assert_eq!(r.member_epoch, 1, "no rebalance");
    assert_eq!(to_owned(&r.assignment.unwrap()), s.owned);
    assert_eq!(c.describe(G).unwrap().group_epoch, 1);
    // Old member id is fenced.
    let mut old = s.request(true);
    old.instance_id = Some("i1".into());
    assert_eq!(
        c.consumer_heartbeat(4, old, &topics).unwrap_err().0,
        FENCED_INSTANCE_ID
    );
    // Leaving for good (-1) empties the group and bumps the epoch.
    let bye = ConsumerHeartbeat {
        group_id: G.into(),
        member_id: r.member_id.clone(),
        member_epoch: -1,
        ..ConsumerHeartbeat::default()
    };
    assert_eq!(
        c.consumer_heartbeat(5, bye, &topics).unwrap().member_epoch,
        -1
    );
    let d = c.describe(G).unwrap();
    assert_eq!(d.state, GroupState::Empty);
    assert_eq!(d.group_epoch, 2);
    assert_eq!(c.delete(G), NONE);
}

#[test]
fn protocol_type_conflicts_and_conversion() {
    let mut c = GroupCoordinator::new(CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    });
    let topics = snapshot(2, 0);
    let join = JoinRequest {
        group_id: G.into(),
        client_id: "cl".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), vec![])],
        ..JoinRequest::default()
    };
    let out = c.join(0, 1, join.clone());
    assert_eq!(super::joins(&out)[&1].error, NONE);
    let err = c
        .consumer_heartbeat(1, Client::new(&["a"]).request(true), &topics)
        .unwrap_err();
    assert_eq!(err.0, GROUP_ID_NOT_FOUND);
    assert_eq!(c.describe(G).unwrap().group_type, GroupType::Classic);
    // Once empty, the classic group can become a consumer group.
    let member = super::joins(&out)[&1].member_id.clone();
    c.leave(
        2,
        G,
        &[LeavingMember {
            member_id: member,
            group_instance_id: None,
        }],
    );
    let mut a = Client::new(&["a"]);
    a.heartbeat(&mut c, 3, &topics);
    assert_eq!(c.describe(G).unwrap().group_type, GroupType::Consumer);
    let out = c.join(4, 2, join);
    assert_eq!(super::joins(&out)[&2].error, INCONSISTENT_GROUP_PROTOCOL);
    // Offset commits against the consumer group.
    assert_eq!(c.validate_offset_commit(5, G, a.epoch, &a.id, None), NONE);
    assert_eq!(
        c.validate_offset_commit(5, G, a.epoch - 1, &a.id, None),
        STALE_MEMBER_EPOCH
    );
    assert_eq!(
        c.validate_offset_commit(5, G, a.epoch + 1, &a.id, None),
        FENCED_MEMBER_EPOCH
    );
    assert_eq!(
        c.validate_offset_commit(5, G, -1, "", None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.validate_offset_commit(5, G, 1, "ghost", None),
        UNKNOWN_MEMBER_ID
    );
    // TxnOffsetCommit (KIP-447): a stale member epoch is ILLEGAL_GENERATION.
    assert_eq!(c.validate_commit(5, G, a.epoch, &a.id, None, true), NONE);
    assert_eq!(
        c.validate_commit(5, G, a.epoch - 1, &a.id, None, true),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        c.validate_commit(5, G, a.epoch + 1, &a.id, None, true),
        FENCED_MEMBER_EPOCH
    );
    assert_eq!(
        c.validate_commit(5, G, -1, "", None, true),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(c.delete(G), NON_EMPTY_GROUP);
}

#[test]
fn group_max_size_for_consumer_groups() {
    let mut c = GroupCoordinator::new(CoordinatorConfig {
        max_group_size: 2,
        ..CoordinatorConfig::default()
    });
    let topics = snapshot(2, 0);
    Client::new(&["a"]).heartbeat(&mut c, 0, &topics);
    Client::new(&["a"]).heartbeat(&mut c, 0, &topics);
    let err = c
        .consumer_heartbeat(0, Client::new(&["a"]).request(true), &topics)
        .unwrap_err();
    assert_eq!(err.0, GROUP_MAX_SIZE_REACHED);
}

/// Tiny deterministic LCG (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn no_partition_is_owned_twice_under_random_heartbeats() {
    let mut revocations = 0;
    for seed in 1..=20u64 {
        let mut rng = Lcg(seed);
        let assignor = if seed % 2 == 0 { "range" } else { "uniform" };
        let mut c = GroupCoordinator::new(CoordinatorConfig {
            consumer_session_timeout_ms: 600_000,
            ..CoordinatorConfig::default()
        });
        let mut a_parts = 8;
        let mut topics = snapshot(a_parts, 5);
        let mut clients: Vec<Client> = Vec::new();
        let mut now = 0u64;
        for _ in 0..400 {
            now += 50;
            match rng.next(20) {
                0 | 1 if clients.len() < 6 => {
                    let subs: &[&str] = match rng.next(3) {
                        0 => &["a"],
                        1 => &["b"],
                        _ => &["a", "b"],
                    };
                    let mut cl = Client::new(subs);
                    cl.assignor = Some(assignor.to_string());
                    cl.heartbeat(&mut c, now, &topics);
                    clients.push(cl);
                }
                2 if !clients.is_empty() => {
                    let i = usize::try_from(rng.next(clients.len() as u64)).unwrap();
                    let cl = clients.remove(i);
                    let mut req = cl.request(true);
                    req.member_epoch = -1;
                    c.consumer_heartbeat(now, req, &topics).unwrap();
                }
                3 if a_parts < 16 => {
                    a_parts += 1;
                    topics = snapshot(a_parts, 5);
                    c.tick(now, &topics);
                }
                _ if !clients.is_empty() => {
                    let i = usize::try_from(rng.next(clients.len() as u64)).unwrap();
                    let send_owned = rng.next(4) != 0;
                    let before = count(&clients[i].owned);
                    clients[i].heartbeat_with(&mut c, now, &topics, send_owned);
                    if count(&clients[i].owned) < before {
                        revocations += 1;
                    }
                }
                _ => {}
            }
            let refs: Vec<&Client> = clients.iter().collect();
            assert_disjoint(&refs);
            assert_server_disjoint(&c);
        }
        // Converge: everyone heartbeats until the group is stable.
        for _ in 0..10 {
            for cl in clients.iter_mut() {
                now += 10;
                cl.heartbeat(&mut c, now, &topics);
            }
            let refs: Vec<&Client> = clients.iter().collect();
            assert_disjoint(&refs);
        }
        if clients.is_empty() {
            continue;
        }
        let d = c.describe(G).unwrap();
        assert_eq!(d.state, GroupState::Stable, "seed {seed}");
        // Every partition of a subscribed topic is owned by exactly one client.
        let mut expected = 0;
        for (name, parts) in [("a", a_parts), ("b", 5)] {
            if clients.iter().any(|cl| cl.topics.iter().any(|t| t == name)) {
                expected += usize::try_from(parts).unwrap();
            }
        }
        let total: usize = clients.iter().map(|cl| count(&cl.owned)).sum();
        assert_eq!(total, expected, "seed {seed}");
        for cl in &clients {
            assert_eq!(cl.epoch, d.group_epoch);
        }
    }
    assert!(
        revocations > 20,
        "the sequence exercised revocation ({revocations})"
    );
}

#[test]
fn regex_subscriptions_follow_the_brokers_matches() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let mut topics = snapshot(2, 3);
    let mut join = Client::new(&[]).request(true);
    join.subscribed_topic_names = None;
    join.subscribed_topic_regex = Some("a.*".into());
    // The broker has not matched the regex yet: nothing to assign.
    let r = c.consumer_heartbeat(1, join.clone(), &topics).unwrap();
    assert_eq!(r.assignment.as_deref().map(<[_]>::len), Some(0));
    assert!(c.regexes_in_use().contains("a.*"));
    topics
        .regex_matches
        .insert("a.*".into(), BTreeSet::from(["a".to_string()]));
    let mut next = join.clone();
    next.member_id = r.member_id.clone();
    next.member_epoch = r.member_epoch;
    next.rebalance_timeout_ms = -1;
    next.subscribed_topic_regex = None;
    next.owned_partitions = Some(vec![]);
    let r = c.consumer_heartbeat(2, next, &topics).unwrap();
    let assigned = r.assignment.expect("the match changes the assignment");
    assert_eq!(assigned, vec![(TA, vec![0, 1])]);
    let d = c.describe(G).unwrap();
    assert_eq!(d.members[0].subscribed_topic_regex.as_deref(), Some("a.*"));
    assert_eq!(c.subscribed_topics(G), vec!["a".to_string()]);
}

/// The record of the last change a call handed out for the group, if any.
fn last_record(c: &mut GroupCoordinator) -> Option<GroupRecordChange> {
    c.take_group_records().pop().map(|(g, r)| {
        assert_eq!(g, G);
        r
    })
}

#[test]
fn a_consumer_group_is_persisted_and_restored_for_its_members() {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let topics = snapshot(4, 2);
    let (mut a, mut b) = (Client::new(&["a", "b"]), Client::new(&["a", "b"]));
    a.heartbeat(&mut c, 0, &topics);
    b.heartbeat(&mut c, 10, &topics);
    // Reconcile: a revokes what moves to b, b gets it.
    for t in 1..6 {
        a.heartbeat(&mut c, 100 * t, &topics);
        b.heartbeat(&mut c, 100 * t + 1, &topics);
    }
    assert_eq!(c.describe(G).unwrap().state, GroupState::Stable);
    assert_eq!(count(&a.owned) + count(&b.owned), 6);
    let Some(GroupRecordChange::Consumer(Some(record))) = last_record(&mut c) else {
        panic!("the changes were persisted");
    };
    assert_eq!(record.members.len(), 2);
    // A heartbeat that changes nothing writes nothing.
    a.heartbeat_with(&mut c, 1000, &topics, false);
    assert_eq!(last_record(&mut c), None);

    // A new coordinator restores the group: the members go on with their epochs and
    // partitions, no rebalance; commits with their epochs are accepted.
    let mut fresh = GroupCoordinator::new(CoordinatorConfig::default());
    assert!(fresh.restore_group(G, GroupRecordChange::Consumer(Some(record.clone())), 50_000));
    assert!(
        !fresh.restore_group(G, GroupRecordChange::Consumer(Some(record.clone())), 50_000),
        "exists already"
    );
    assert!(
        fresh.take_group_records().is_empty(),
        "a restored group is not written back"
    );
    let (owned_a, owned_b, epoch) = (a.owned.clone(), b.owned.clone(), a.epoch);
    let ra = a.heartbeat(&mut fresh, 50_001, &topics);
    let rb = b.heartbeat(&mut fresh, 50_002, &topics);
    assert_eq!((ra.member_epoch, rb.member_epoch), (epoch, epoch));
    assert_eq!((a.owned.clone(), b.owned.clone()), (owned_a, owned_b));
    assert_server_disjoint(&fresh);
    assert_eq!(fresh.describe(G).unwrap().state, GroupState::Stable);
    assert_eq!(
        fresh.validate_offset_commit(50_003, G, epoch, &a.id, None),
        NONE
    );
    assert_eq!(last_record(&mut fresh), None, "nothing changed");

    // Malformed records are refused.
    let mut dup = record.clone();
    dup.members[1].member_id = dup.members[0].member_id.clone();
    assert!(
        !GroupCoordinator::new(CoordinatorConfig::default()).restore_group(
            G,
            GroupRecordChange::Consumer(Some(dup)),
            0
        )
    );
    let mut twice = record.clone();
    let first = twice.members[0].assigned.clone();
    twice.members[1].assigned = first;
    assert!(
        !GroupCoordinator::new(CoordinatorConfig::default()).restore_group(
            G,
            GroupRecordChange::Consumer(Some(twice)),
            0
        )
    );
    let mut state = record.clone();
    state.members[0].state = 9;
    assert!(
        !GroupCoordinator::new(CoordinatorConfig::default()).restore_group(
            G,
            GroupRecordChange::Consumer(Some(state)),
            0
        )
    );

    // Both leave: the record is deleted.
    for cl in [&a, &b] {
        let bye = ConsumerHeartbeat {
            group_id: G.to_string(),
            member_id: cl.id.clone(),
            member_epoch: -1,
            ..ConsumerHeartbeat::default()
        };
        fresh.consumer_heartbeat(50_010, bye, &topics).unwrap();
    }
    assert_eq!(
        last_record(&mut fresh),
        Some(GroupRecordChange::Consumer(None))
    );
}
