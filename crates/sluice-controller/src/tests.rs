use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;

struct H {
    img: ClusterImage,
    c: Controller,
    now: i64,
    next_id: u128,
}

fn cfg() -> ControllerConfig {
    ControllerConfig {
        auto_leader_rebalance_enable: false,
        ..ControllerConfig::default()
    }
}

impl H {
    fn new() -> Self {
        Self::with(cfg())
    }

    fn with(config: ControllerConfig) -> Self {
        let img = ClusterImage::new();
        let c = Controller::new(config, &img, 0, 7);
        H {
            img,
            c,
            now: 0,
            next_id: 100,
        }
    }

    /// Commits a batch at the next index; every record must apply.
    fn commit(&mut self, records: Vec<MetadataRecord>) -> u64 {
        let index = self.img.last_applied + 1;
        if let Some(first) = records.first() {
            assert!(matches!(first, MetadataRecord::Guard { .. }), "{first:?}");
            assert!(records.len() >= 2, "a guard alone");
        }
        for r in &records {
            let json = serde_json::to_string(r).unwrap();
            let back: MetadataRecord = serde_json::from_str(&json).unwrap();
            let changes = self.img.apply(index, &back);
            if matches!(r, MetadataRecord::Guard { .. }) {
                assert!(changes.is_empty(), "guard rejected: {r:?}");
            } else {
                assert!(!changes.is_empty(), "ignored: {r:?}");
            }
        }
        index
    }

    fn reg_req(&self, id: NodeId, inc: u128, rack: Option<&str>) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            node_id: id,
            incarnation_id: Uuid::from_u128(inc),
            kafka_host: format!("h{id}"),
            kafka_port: 9092,
            cluster_addr: format!("h{id}:9093"),
            rack: rack.map(str::to_owned),
            http_addr: Some(format!("h{id}:8081")),
            listeners: vec![],
        }
    }

    fn register(
        &mut self,
        id: NodeId,
        inc: u128,
        rack: Option<&str>,
    ) -> Result<i64, ControllerError> {
        let req = self.reg_req(id, inc, rack);
        let ((), recs) = self.c.register_broker(&self.img, self.now, &req)?;
        Ok(self.commit(recs) as i64)
    }

    fn hb(&mut self, id: NodeId, epoch: i64) -> Result<HeartbeatReply, ControllerError> {
        self.hb_full(id, epoch, self.img.last_applied as i64, false)
    }

    fn hb_full(
        &mut self,
        id: NodeId,
        epoch: i64,
        offset: i64,
        shutdown: bool,
    ) -> Result<HeartbeatReply, ControllerError> {
        let req = HeartbeatRequest {
            node_id: id,
            broker_epoch: epoch,
            metadata_offset: offset,
            want_fence: false,
            want_shutdown: shutdown,
        };
        let (reply, recs) = self.c.heartbeat(&self.img, self.now, &req)?;
        self.commit(recs);
        Ok(reply)
    }

    /// Registers and unfences a broker; returns its epoch.
    fn broker(&mut self, id: NodeId, rack: Option<&str>) -> i64 {
        let e = self.register(id, id as u128, rack).unwrap();
        assert!(!self.hb(id, e).unwrap().is_fenced);
        e
    }

    fn tick(&mut self) {
        let recs = self.c.tick(&self.img, self.now);
        self.commit(recs);
    }

    fn topic(&mut self, name: &str, assignments: Vec<Vec<NodeId>>) -> Uuid {
        self.next_id += 1;
        let req = CreateTopicRequest {
            name: name.into(),
            id: Uuid::from_u128(self.next_id),
            num_partitions: None,
            replication_factor: None,
            assignments: Some(assignments),
            configs: BTreeMap::new(),
        };
        let (reply, recs) = self.c.create_topic(&self.img, self.now, &req).unwrap();
        self.commit(recs);
        reply.id
    }

    fn p(&self, t: Uuid, i: i32) -> PartitionInfo {
        self.img.partition(&t, i).unwrap().clone()
    }

    fn epoch(&self, id: NodeId) -> i64 {
        self.img.broker(id).unwrap().broker_epoch
    }

    fn alter(
        &mut self,
        leader: NodeId,
        t: Uuid,
        i: i32,
        isr: &[NodeId],
    ) -> Decision<AlterPartitionReply> {
        let p = self.p(t, i);
        let req = AlterPartitionRequest {
            broker_id: leader,
            broker_epoch: self.epoch(leader),
            topic_id: t,
            partition: i,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr
                .iter()
                .map(|&r| IsrMember {
                    broker_id: r,
                    broker_epoch: self.img.broker(r).map(|b| b.broker_epoch).unwrap_or(-1),
                })
                .collect(),
        };
        self.c.alter_partition(&self.img, self.now, &req)
    }

    fn expire(&mut self, id: NodeId, keep_alive: &[NodeId]) {
        // Everyone else heartbeats while `id`'s session runs out.
        for _ in 0..12 {
            self.now += 1_000;
            for &k in keep_alive {
                let e = self.epoch(k);
                self.hb(k, e).unwrap();
            }
            self.tick();
        }
        assert!(self.img.broker(id).unwrap().fenced);
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ControllerError>) -> i16 {
    r.expect_err("expected an error").code
}

// ---- Registration and heartbeats ----

#[test]
fn registration_starts_fenced_with_the_log_index_as_epoch() {
    let mut h = H::new();
    let e = h.register(1, 1, None).unwrap();
    let b = h.img.broker(1).unwrap();
    assert_eq!(b.broker_epoch, e);
    assert!(b.fenced);
    // Not caught up: stays fenced.
    let r = h.hb_full(1, e, e - 1, false).unwrap();
    assert!(r.is_fenced && !r.is_caught_up);
    // Caught up: unfenced.
    let r = h.hb_full(1, e, e, false).unwrap();
    assert!(!r.is_fenced && r.is_caught_up);
    assert!(!h.img.broker(1).unwrap().fenced);
}

#[test]
fn stale_broker_epoch_heartbeat_is_refused() {
    let mut h = H::new();
    let e = h.broker(1, None);
    assert_eq!(code(h.hb(1, e + 5)), codes::STALE_BROKER_EPOCH);
    assert_eq!(code(h.hb(9, e)), codes::STALE_BROKER_EPOCH);
}

#[test]
fn duplicate_registration_refused_while_session_lives() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    assert_eq!(
        code(h.register(1, 999, None)),
        codes::DUPLICATE_BROKER_REGISTRATION
    );
    // The same incarnation may register again (a retried registration): a new epoch.
    let old = h.epoch(1);
    let e = h.register(1, 1, None).unwrap();
    assert!(e > old);
    // Once fenced (session gone), another incarnation may take the id.
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    h.expire(1, &[2]);
    assert!(h.register(1, 999, None).is_ok());
}

#[test]
fn invalid_registration_is_refused() {
    let mut h = H::new();
    let mut req = h.reg_req(1, 1, None);
    req.kafka_port = 0;
    assert_eq!(
        code(h.c.register_broker(&h.img, 0, &req)),
        codes::INVALID_REGISTRATION
    );
    req.kafka_port = 9092;
    req.rack = Some("r".repeat(MAX_REGISTRATION_STRING_LEN + 1));
    assert_eq!(
        code(h.c.register_broker(&h.img, 0, &req)),
        codes::INVALID_REGISTRATION
    );
}

#[test]
fn session_expiry_fences_and_moves_leadership() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    assert_eq!(h.p(t, 0).leader, 1);
    let before = h.p(t, 0);
    h.expire(1, &[2, 3]);
    let p = h.p(t, 0);
    assert_eq!(p.leader, 2);
    assert_eq!(p.isr, vec![2, 3]);
    assert!(p.leader_epoch > before.leader_epoch);
    assert!(h.img.partitions_led_by(1).is_empty());
}

#[test]
fn last_isr_member_is_kept_leaderless_and_comes_back_as_leader() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    let t = h.topic("t", vec![vec![1, 2]]);
    // Shrink to {1}: 2 fell behind.
    let (_, recs) = h.alter(1, t, 0, &[1]).unwrap();
    h.commit(recs);
    h.expire(1, &[2]);
    let p = h.p(t, 0);
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr, vec![1], "the last in-sync replica stays in the ISR");
    assert_eq!(h.img.offline_partitions(), vec![(t, 0)]);
    // 2 is alive but not in the ISR: no clean election.
    h.tick();
    assert_eq!(h.p(t, 0).leader, NO_LEADER);
    // 1 comes back (new incarnation): it is elected once unfenced.
    let e = h.register(1, 77, None).unwrap();
    assert_eq!(h.p(t, 0).leader, NO_LEADER);
    let le = h.p(t, 0).leader_epoch;
    h.hb(1, e).unwrap();
    let p = h.p(t, 0);
    assert_eq!(p.leader, 1);
    assert!(p.leader_epoch > le);
}

#[test]
fn unclean_election_only_when_the_topic_allows_it() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    let t = h.topic("t", vec![vec![1, 2]]);
    let (_, recs) = h.alter(1, t, 0, &[1]).unwrap();
    h.commit(recs);
    h.expire(1, &[2]);
    assert_eq!(h.p(t, 0).leader, NO_LEADER);
    let mut configs = BTreeMap::new();
    configs.insert(
        UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
        "true".to_string(),
    );
    let ((), recs) = h.c.replace_topic_configs(&h.img, "t", &configs).unwrap();
    h.commit(recs);
    let p = h.p(t, 0);
    assert_eq!(p.leader, 2, "enabling unclean election elects at once");
    assert_eq!(p.isr, vec![2]);
}

#[test]
fn controlled_shutdown_moves_leaderships_then_allows_stopping() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3], vec![2, 1, 3]]);
    let u = h.topic("u", vec![vec![1]]);
    let e = h.epoch(1);
    let r = h.hb_full(1, e, h.img.last_applied as i64, true).unwrap();
    assert!(r.should_shut_down, "leads nothing once the batch applies");
    assert!(h.img.broker(1).unwrap().in_controlled_shutdown);
    assert_eq!(h.p(t, 0).leader, 2);
    assert_eq!(h.p(t, 0).isr, vec![2, 3]);
    assert_eq!(h.p(t, 1).isr, vec![2, 3]);
    // Sole replica: offline, ISR kept.
    assert_eq!(h.p(u, 0).leader, NO_LEADER);
    assert_eq!(h.p(u, 0).isr, vec![1]);
    // No unfence, no ISR re-entry while shutting down.
    let r = h.hb(1, e).unwrap();
    assert!(!r.is_fenced);
    assert_eq!(
        code(h.alter(2, t, 0, &[2, 3, 1])),
        codes::INELIGIBLE_REPLICA
    );
}

#[test]
fn want_fence_fences() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    let t = h.topic("t", vec![vec![1, 2]]);
    let req = HeartbeatRequest {
        node_id: 1,
        broker_epoch: h.epoch(1),
        metadata_offset: h.img.last_applied as i64,
        want_fence: true,
        want_shutdown: false,
    };
    let (r, recs) = h.c.heartbeat(&h.img, h.now, &req).unwrap();
    h.commit(recs);
    assert!(r.is_fenced);
    assert_eq!(h.p(t, 0).leader, 2);
}

// ---- Topics ----

#[test]
fn create_topic_errors() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    let mut req = CreateTopicRequest {
        name: "t".into(),
        id: Uuid::from_u128(5),
        num_partitions: Some(2),
        replication_factor: Some(3),
        assignments: None,
        configs: BTreeMap::new(),
    };
    assert_eq!(
        code(h.c.create_topic(&h.img, 0, &req)),
        codes::INVALID_REPLICATION_FACTOR
    );
    req.replication_factor = None; // default: min(3, 2)
    let (reply, recs) = h.c.create_topic(&h.img, 0, &req).unwrap();
    assert_eq!(reply.replication_factor, 2);
    h.commit(recs);
    assert_eq!(
        code(h.c.create_topic(&h.img, 0, &req)),
        codes::TOPIC_ALREADY_EXISTS
    );
    req.name = "bad name".into();
    assert_eq!(
        code(h.c.create_topic(&h.img, 0, &req)),
        codes::INVALID_TOPIC_EXCEPTION
    );
    req.name = "u".into();
    req.id = Uuid::from_u128(6);
    req.num_partitions = Some(0);
    assert_eq!(
        code(h.c.create_topic(&h.img, 0, &req)),
        codes::INVALID_PARTITIONS
    );
    req.num_partitions = None;
    for bad in [
        vec![vec![1, 1]],
        vec![vec![1, 9]],
        vec![vec![1, 2], vec![1]],
        vec![vec![]],
    ] {
        req.assignments = Some(bad);
        assert_eq!(
            code(h.c.create_topic(&h.img, 0, &req)),
            codes::INVALID_REPLICA_ASSIGNMENT
        );
    }
}

#[test]
fn create_topic_leader_is_first_active_replica() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    h.register(3, 3, None).unwrap(); // fenced
    let t = h.topic("t", vec![vec![3, 2, 1]]);
    let p = h.p(t, 0);
    assert_eq!(p.replicas, vec![3, 2, 1]);
    assert_eq!(p.isr, vec![2, 1]);
    assert_eq!(p.leader, 2);
    assert_eq!(p.preferred_leader(), 3);
}

#[test]
fn create_partitions_and_delete() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2], vec![2, 3]]);
    assert_eq!(
        code(h.c.create_partitions(&h.img, 0, "t", 2, None)),
        codes::INVALID_PARTITIONS
    );
    assert_eq!(
        code(h.c.create_partitions(&h.img, 0, "t", 3, Some(&[vec![1]]))),
        codes::INVALID_REPLICA_ASSIGNMENT
    );
    let ((), recs) = h.c.create_partitions(&h.img, 0, "t", 5, None).unwrap();
    h.commit(recs);
    let topic = h.img.topic("t").unwrap();
    assert_eq!(topic.partitions.len(), 5);
    assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
    let (id, recs) =
        h.c.delete_topic(&h.img, &TopicRef::Name("t".into()))
            .unwrap();
    assert_eq!(id, t);
    let index = h.img.last_applied + 1;
    let changes: Vec<Change> = recs.iter().flat_map(|r| h.img.apply(index, r)).collect();
    assert_eq!(
        changes,
        vec![Change::TopicDeleted {
            name: "t".into(),
            id: t,
            partitions: 5
        }]
    );
    assert_eq!(
        code(h.c.delete_topic(&h.img, &TopicRef::Id(t))),
        codes::UNKNOWN_TOPIC_ID
    );
}

#[test]
fn placement_matches_kafka_rack_unaware() {
    // Kafka's AdminRackAwareTest/AdminTest.testReplicaAssignment (fixed start index 0).
    let brokers: Vec<(NodeId, Option<String>)> = (0..5).map(|b| (b, None)).collect();
    let got = assign_replicas(&brokers, 10, 3, 0, 0, 0).unwrap();
    let want = vec![
        vec![0, 1, 2],
        vec![1, 2, 3],
        vec![2, 3, 4],
        vec![3, 4, 0],
        vec![4, 0, 1],
        vec![0, 2, 3],
        vec![1, 3, 4],
        vec![2, 4, 0],
        vec![3, 0, 1],
        vec![4, 1, 2],
    ];
    assert_eq!(got, want);
}

#[test]
fn placement_alternates_racks() {
    // Kafka's getRackAlternatedBrokerList example: leaders follow 0, 3, 1, 5, 4, 2.
    let racks = [
        (0, "rack1"),
        (1, "rack3"),
        (2, "rack3"),
        (3, "rack2"),
        (4, "rack2"),
        (5, "rack1"),
    ];
    let brokers: Vec<(NodeId, Option<String>)> = racks
        .iter()
        .map(|(b, r)| (*b, Some(r.to_string())))
        .collect();
    let leaders: Vec<NodeId> = assign_replicas(&brokers, 6, 1, 0, 0, 0)
        .unwrap()
        .into_iter()
        .map(|r| r[0])
        .collect();
    assert_eq!(leaders, vec![0, 3, 1, 5, 4, 2]);
    // Every partition of RF 3 spans the three racks; leaders are spread evenly.
    let rack_of: BTreeMap<NodeId, &str> = racks.iter().copied().collect();
    for start in 0..6 {
        for shift in 0..6 {
            let a = assign_replicas(&brokers, 12, 3, start, shift, 0).unwrap();
            let mut lead = BTreeMap::<NodeId, u32>::new();
            for r in &a {
                let rs: std::collections::BTreeSet<_> = r.iter().map(|b| rack_of[b]).collect();
                assert_eq!(rs.len(), 3, "{r:?}");
                *lead.entry(r[0]).or_default() += 1;
            }
            assert!(lead.values().all(|&n| n == 2));
        }
    }
    assert_eq!(
        code(assign_replicas(&brokers, 1, 7, 0, 0, 0)),
        codes::INVALID_REPLICATION_FACTOR
    );
}

#[test]
fn placement_skips_fenced_and_draining_brokers() {
    let mut h = H::new();
    for id in 1..=4 {
        h.broker(id, None);
    }
    h.register(5, 5, None).unwrap(); // fenced
    let ((), recs) = h.c.set_draining(&h.img, 4, true).unwrap();
    h.commit(recs);
    let req = CreateTopicRequest {
        name: "t".into(),
        id: Uuid::from_u128(5),
        num_partitions: Some(20),
        replication_factor: Some(3),
        assignments: None,
        configs: BTreeMap::new(),
    };
    let (_, recs) = h.c.create_topic(&h.img, 0, &req).unwrap();
    h.commit(recs);
    for (_, _, p) in h.img.partitions() {
        assert!(p.replicas.iter().all(|r| [1, 2, 3].contains(r)), "{p:?}");
    }
}

// ---- AlterPartition ----

#[test]
fn alter_partition_checks_in_kafka_order() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let (_, recs) = h.alter(1, t, 0, &[1, 2]).unwrap();
    h.commit(recs);
    let p = h.p(t, 0);
    assert_eq!(p.isr, vec![1, 2]);
    assert_eq!(p.partition_epoch, 1);
    assert_eq!(p.leader_epoch, 0, "an ISR change keeps the leader epoch");
    let good = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: h.epoch(1),
        topic_id: t,
        partition: 0,
        leader_epoch: 0,
        partition_epoch: 1,
        new_isr: vec![
            IsrMember {
                broker_id: 1,
                broker_epoch: h.epoch(1),
            },
            IsrMember {
                broker_id: 2,
                broker_epoch: -1,
            },
            IsrMember {
                broker_id: 3,
                broker_epoch: h.epoch(3),
            },
        ],
    };
    let try_ = |h: &mut H, f: &dyn Fn(&mut AlterPartitionRequest)| {
        let mut r = good.clone();
        f(&mut r);
        h.c.alter_partition(&h.img, h.now, &r).map(|_| ())
    };
    assert_eq!(
        code(try_(&mut h, &|r| r.broker_epoch += 1)),
        codes::STALE_BROKER_EPOCH
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.topic_id = Uuid::from_u128(1))),
        codes::UNKNOWN_TOPIC_ID
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.partition = 1)),
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.leader_epoch = 1)),
        codes::NOT_CONTROLLER
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.partition_epoch = 2)),
        codes::NOT_CONTROLLER
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.partition_epoch = 0)),
        codes::INVALID_UPDATE_VERSION
    );
    let e2 = h.epoch(2);
    assert_eq!(
        code(try_(&mut h, &|r| {
            r.broker_id = 2;
            r.broker_epoch = e2;
        })),
        codes::INVALID_REQUEST,
        "not the leader"
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.new_isr.truncate(0))),
        codes::INVALID_REQUEST
    );
    assert_eq!(
        code(try_(&mut h, &|r| {
            r.new_isr.remove(0);
        })),
        codes::INVALID_REQUEST,
        "the leader must stay in the ISR"
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.new_isr[2].broker_id = 9)),
        codes::INVALID_REQUEST,
        "not a replica"
    );
    assert_eq!(
        code(try_(&mut h, &|r| r.new_isr[2].broker_epoch -= 1)),
        codes::INELIGIBLE_REPLICA,
        "a member at another broker epoch"
    );
    assert!(try_(&mut h, &|_| ()).is_ok());
    // A fenced member is ineligible.
    h.now += 1;
    let fence = HeartbeatRequest {
        node_id: 3,
        broker_epoch: h.epoch(3),
        metadata_offset: 0,
        want_fence: true,
        want_shutdown: false,
    };
    let (_, recs) = h.c.heartbeat(&h.img, h.now, &fence).unwrap();
    h.commit(recs);
    assert_eq!(code(try_(&mut h, &|_| ())), codes::INELIGIBLE_REPLICA);
}

#[test]
fn stale_alter_partition_never_applies() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let p0 = h.p(t, 0);
    let (_, recs) = h.alter(1, t, 0, &[1, 2]).unwrap();
    h.commit(recs);
    // The same request again (a duplicate): its partition epoch is now stale.
    let dup = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: h.epoch(1),
        topic_id: t,
        partition: 0,
        leader_epoch: p0.leader_epoch,
        partition_epoch: p0.partition_epoch,
        new_isr: vec![IsrMember {
            broker_id: 1,
            broker_epoch: -1,
        }],
    };
    assert_eq!(
        code(h.c.alter_partition(&h.img, 0, &dup)),
        codes::INVALID_UPDATE_VERSION
    );
    // After a leader change the old leader's request is fenced.
    h.expire(1, &[2, 3]);
    let e1 = h.register(1, 50, None).unwrap();
    h.hb(1, e1).unwrap();
    let mut old = dup.clone();
    old.broker_epoch = e1;
    assert_eq!(
        code(h.c.alter_partition(&h.img, 0, &old)),
        codes::FENCED_LEADER_EPOCH
    );
    // A PartitionChange decided on an older partition epoch is ignored by apply.
    let stale = MetadataRecord::PartitionChange {
        topic_id: t,
        partition: 0,
        expected_partition_epoch: 0,
        leader: Some(3),
        isr: None,
        replicas: None,
        adding_replicas: None,
        removing_replicas: None,
    };
    let before = h.img.clone();
    assert!(h.img.apply(h.img.last_applied + 1, &stale).is_empty());
    assert_eq!(h.img.topics, before.topics);
}

// ---- Elections ----

#[test]
fn elect_leaders_preferred_and_unclean() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let parts = vec![("t".to_string(), 0)];
    let (res, recs) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Preferred, Some(&parts))
            .unwrap();
    assert!(recs.is_empty());
    assert_eq!(
        res[0].error.as_ref().unwrap().code,
        codes::ELECTION_NOT_NEEDED
    );
    // Move leadership away, bring 1 back: a preferred election returns it.
    h.expire(1, &[2, 3]);
    assert_eq!(h.p(t, 0).leader, 2);
    let e1 = h.register(1, 9, None).unwrap();
    let (res, _) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Preferred, Some(&parts))
            .unwrap();
    assert_eq!(
        res[0].error.as_ref().unwrap().code,
        codes::PREFERRED_LEADER_NOT_AVAILABLE,
        "1 is fenced and out of the ISR"
    );
    h.hb(1, e1).unwrap();
    let (_, recs) = h.alter(2, t, 0, &[2, 3, 1]).unwrap();
    h.commit(recs);
    let (res, recs) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Preferred, None)
            .unwrap();
    assert!(res[0].error.is_none());
    h.commit(recs);
    assert_eq!(h.p(t, 0).leader, 1);
    // Unclean: not needed while there is a leader.
    let (res, _) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Unclean, Some(&parts))
            .unwrap();
    assert_eq!(
        res[0].error.as_ref().unwrap().code,
        codes::ELECTION_NOT_NEEDED
    );
    // Shrink to {1}, fence 1: leaderless; an unclean election takes 2.
    let (_, recs) = h.alter(1, t, 0, &[1]).unwrap();
    h.commit(recs);
    h.expire(1, &[2, 3]);
    assert_eq!(h.p(t, 0).leader, NO_LEADER);
    let (res, recs) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Unclean, Some(&parts))
            .unwrap();
    assert!(res[0].error.is_none());
    h.commit(recs);
    assert_eq!(h.p(t, 0).leader, 2);
    assert_eq!(h.p(t, 0).isr, vec![2]);
    // Unknown partitions.
    let (res, _) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Preferred, Some(&[("x".into(), 0)]))
            .unwrap();
    assert_eq!(
        res[0].error.as_ref().unwrap().code,
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
}

#[test]
fn unclean_election_without_live_replica_is_not_available() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    let t = h.topic("t", vec![vec![1]]);
    h.expire(1, &[2]);
    assert_eq!(h.p(t, 0).leader, NO_LEADER);
    let (res, _) =
        h.c.elect_leaders(&h.img, 0, ElectionType::Unclean, Some(&[("t".into(), 0)]))
            .unwrap();
    assert_eq!(
        res[0].error.as_ref().unwrap().code,
        codes::ELIGIBLE_LEADERS_NOT_AVAILABLE
    );
}

#[test]
fn auto_rebalance_returns_leadership_to_the_preferred_replica() {
    let mut h = H::with(ControllerConfig {
        leader_imbalance_check_interval_ms: 10_000,
        ..ControllerConfig::default()
    });
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    h.expire(1, &[2, 3]);
    let e1 = h.register(1, 9, None).unwrap();
    h.hb(1, e1).unwrap();
    let (_, recs) = h.alter(2, t, 0, &[2, 3, 1]).unwrap();
    h.commit(recs);
    assert_eq!(h.p(t, 0).leader, 2);
    h.now += 20_000;
    for id in 1..=3 {
        let e = h.epoch(id);
        h.hb(id, e).unwrap();
    }
    h.tick();
    assert_eq!(h.p(t, 0).leader, 1);
}

// ---- Reassignment ----

#[test]
fn reassignment_adds_then_completes_in_alter_partition() {
    let mut h = H::new();
    for id in 1..=4 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let moves = vec![("t".to_string(), 0, Some(vec![4, 2, 3]))];
    let (res, recs) =
        h.c.alter_partition_reassignments(&h.img, 0, &moves)
            .unwrap();
    assert!(res[0].error.is_none());
    h.commit(recs);
    let p = h.p(t, 0);
    assert_eq!(p.replicas, vec![4, 2, 3, 1]);
    assert_eq!(p.adding_replicas, vec![4]);
    assert_eq!(p.removing_replicas, vec![1]);
    assert_eq!(p.leader, 1);
    let listed = h.c.list_partition_reassignments(&h.img, None);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].adding_replicas, vec![4]);
    // 4 catches up: the leader (1) adds it; the reassignment completes and 1 leaves.
    let le = p.leader_epoch;
    let (reply, recs) = h.alter(1, t, 0, &[1, 2, 3, 4]).unwrap();
    assert_eq!(reply.error_code, codes::NEW_LEADER_ELECTED);
    h.commit(recs);
    let p = h.p(t, 0);
    assert_eq!(p.replicas, vec![4, 2, 3]);
    assert_eq!(p.isr, vec![2, 3, 4]);
    assert_eq!(p.leader, 4, "the first in-sync replica of the target");
    assert!(p.leader_epoch > le);
    assert!(!p.is_reassigning());
    assert_eq!(reply.leader, 4);
    assert!(h.c.list_partition_reassignments(&h.img, None).is_empty());
}

#[test]
fn reassignment_removal_bumps_leader_epoch() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let le = h.p(t, 0).leader_epoch;
    let (_, recs) =
        h.c.alter_partition_reassignments(&h.img, 0, &[("t".into(), 0, Some(vec![1, 2]))])
            .unwrap();
    h.commit(recs);
    let p = h.p(t, 0);
    assert_eq!(
        p.replicas,
        vec![1, 2],
        "completes at once: the target is in sync"
    );
    assert_eq!(p.leader, 1);
    assert_eq!(
        p.leader_epoch,
        le + 1,
        "replicas left: the same leader at a new epoch"
    );
}

#[test]
fn reassignment_cancel_restores() {
    let mut h = H::new();
    for id in 1..=4 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2]]);
    let before = h.p(t, 0);
    assert_eq!(
        h.c.alter_partition_reassignments(&h.img, 0, &[("t".into(), 0, None)])
            .unwrap()
            .0[0]
            .error
            .as_ref()
            .unwrap()
            .code,
        codes::NO_REASSIGNMENT_IN_PROGRESS
    );
    let (_, recs) =
        h.c.alter_partition_reassignments(&h.img, 0, &[("t".into(), 0, Some(vec![3, 4]))])
            .unwrap();
    h.commit(recs);
    assert_eq!(h.p(t, 0).replicas, vec![3, 4, 1, 2]);
    let (res, recs) =
        h.c.alter_partition_reassignments(&h.img, 0, &[("t".into(), 0, None)])
            .unwrap();
    assert!(res[0].error.is_none());
    h.commit(recs);
    let p = h.p(t, 0);
    assert_eq!(p.replicas, before.replicas);
    assert_eq!(p.isr, before.isr);
    assert_eq!(p.leader, before.leader);
    assert!(!p.is_reassigning());
    // Bad targets.
    let (res, _) =
        h.c.alter_partition_reassignments(&h.img, 0, &[("t".into(), 0, Some(vec![1, 1]))])
            .unwrap();
    assert_eq!(
        res[0].error.as_ref().unwrap().code,
        codes::INVALID_REPLICA_ASSIGNMENT
    );
}

#[test]
fn drain_moves_replicas_then_unregister() {
    let mut h = H::new();
    for (id, rack) in [(1, "a"), (2, "b"), (3, "a"), (4, "b")] {
        h.broker(id, Some(rack));
    }
    let t = h.topic("t", vec![vec![1, 2], vec![2, 1], vec![2, 4]]);
    assert_eq!(
        code(h.c.unregister_broker(&h.img, 1)),
        codes::INVALID_REQUEST
    );
    let ((), recs) = h.c.set_draining(&h.img, 1, true).unwrap();
    h.commit(recs);
    let plan = h.c.drain_plan(&h.img, 1);
    assert_eq!(plan.len(), 2);
    for m in &plan {
        assert_eq!(
            m.target
                .as_ref()
                .unwrap()
                .iter()
                .filter(|&&r| r == 3)
                .count(),
            1,
            "same rack: 3"
        );
    }
    let moves: Vec<_> = plan
        .into_iter()
        .map(|m| (m.topic, m.partition, Some(m.target.unwrap())))
        .collect();
    let (_, recs) =
        h.c.alter_partition_reassignments(&h.img, 0, &moves)
            .unwrap();
    h.commit(recs);
    // 3 catches up on both; the leaders add it.
    for i in 0..2 {
        let p = h.p(t, i);
        let mut isr = p.isr.clone();
        isr.push(3);
        let (_, recs) = h.alter(p.leader, t, i, &isr).unwrap();
        h.commit(recs);
        assert!(!h.p(t, i).replicas.contains(&1));
    }
    assert!(h.img.partitions_hosted_by(1).is_empty());
    let ((), recs) = h.c.unregister_broker(&h.img, 1).unwrap();
    h.commit(recs);
    assert!(h.img.broker(1).is_none());
    assert_eq!(
        code(h.c.unregister_broker(&h.img, 1)),
        codes::BROKER_ID_NOT_REGISTERED
    );
}

// ---- Misc ----

#[test]
fn producer_id_blocks_are_disjoint() {
    let mut h = H::new();
    let e = h.broker(1, None);
    let (b1, recs) = h.c.allocate_producer_id_block(&h.img, 1, e).unwrap();
    h.commit(recs);
    let (b2, recs) = h.c.allocate_producer_id_block(&h.img, 1, e).unwrap();
    h.commit(recs);
    assert_eq!(b1.first, 0);
    assert_eq!(b2.first, b1.first + b1.len);
    assert_eq!(
        code(h.c.allocate_producer_id_block(&h.img, 1, e + 1)),
        codes::STALE_BROKER_EPOCH
    );
    // An older block start is ignored (never goes backwards).
    assert!(h
        .img
        .apply(
            h.img.last_applied + 1,
            &MetadataRecord::ProducerIdBlock {
                next_block_start: 5
            }
        )
        .is_empty());
}

#[test]
fn client_quotas_merge_remove_and_survive_a_snapshot() {
    let mut h = H::new();
    let alice = QuotaEntity {
        user: Some(EntityName::Named("alice".into())),
        client_id: Some(EntityName::Default),
    };
    let set = |k: &str, v: Option<f64>| BTreeMap::from([(k.to_string(), v)]);
    let ((), recs) =
        h.c.alter_client_quotas(&h.img, &alice, &set("producer_byte_rate", Some(1024.0)))
            .unwrap();
    h.commit(recs);
    let ((), recs) =
        h.c.alter_client_quotas(&h.img, &alice, &set("request_percentage", Some(50.5)))
            .unwrap();
    h.commit(recs);
    let q = h.img.client_quotas_of(&alice).unwrap();
    assert_eq!(q["producer_byte_rate"], QuotaValue(1024.0));
    assert_eq!(q["request_percentage"], QuotaValue(50.5));
    // Setting what is already set commits nothing.
    let ((), recs) =
        h.c.alter_client_quotas(&h.img, &alice, &set("producer_byte_rate", Some(1024.0)))
            .unwrap();
    assert!(recs.is_empty());
    let back: ClusterImage = serde_json::from_str(&serde_json::to_string(&h.img).unwrap()).unwrap();
    assert_eq!(back, h.img);
    // Removing every key removes the entity.
    let both = BTreeMap::from([
        ("producer_byte_rate".to_string(), None),
        ("request_percentage".to_string(), None),
    ]);
    let ((), recs) = h.c.alter_client_quotas(&h.img, &alice, &both).unwrap();
    h.commit(recs);
    assert!(h.img.client_quotas.is_empty());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            code(h.c.alter_client_quotas(&h.img, &alice, &set("producer_byte_rate", Some(bad)))),
            codes::INVALID_REQUEST
        );
    }
    assert_eq!(
        code(h.c.alter_client_quotas(
            &h.img,
            &QuotaEntity::default(),
            &set("producer_byte_rate", Some(1.0))
        )),
        codes::INVALID_REQUEST
    );
    let empty_name = QuotaEntity {
        user: None,
        client_id: Some(EntityName::Named(String::new())),
    };
    assert_eq!(
        code(h.c.alter_client_quotas(&h.img, &empty_name, &set("producer_byte_rate", Some(1.0)))),
        codes::INVALID_REQUEST
    );
}

#[test]
fn group_configs_replace_and_remove() {
    let mut h = H::new();
    let mut c = BTreeMap::new();
    c.insert(
        "consumer.session.timeout.ms".to_string(),
        "45000".to_string(),
    );
    let ((), recs) = h.c.replace_group_configs(&h.img, "g", &c).unwrap();
    h.commit(recs);
    assert_eq!(h.img.group_configs["g"], c);
    let ((), recs) =
        h.c.replace_group_configs(&h.img, "g", &BTreeMap::new())
            .unwrap();
    h.commit(recs);
    assert!(h.img.group_configs.is_empty());
    assert_eq!(
        code(h.c.replace_group_configs(&h.img, "", &c)),
        codes::INVALID_GROUP_ID
    );
}

#[test]
fn apply_ignores_records_that_no_longer_make_sense() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    let t = h.topic("t", vec![vec![1, 2]]);
    let snapshot = h.img.clone();
    let next = h.img.last_applied + 1;
    let bad = [
        // Leader outside the ISR.
        MetadataRecord::PartitionChange {
            topic_id: t,
            partition: 0,
            expected_partition_epoch: 0,
            leader: Some(2),
            isr: Some(vec![1]),
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        },
        // Empty ISR.
        MetadataRecord::PartitionChange {
            topic_id: t,
            partition: 0,
            expected_partition_epoch: 0,
            leader: None,
            isr: Some(vec![]),
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        },
        // Unknown partition / topic.
        MetadataRecord::PartitionChange {
            topic_id: t,
            partition: 7,
            expected_partition_epoch: 0,
            leader: None,
            isr: None,
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        },
        MetadataRecord::PartitionCreated {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        },
        // A gap in partition ids.
        MetadataRecord::PartitionCreated {
            topic_id: t,
            partition: 3,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        },
        MetadataRecord::FenceBroker {
            node_id: 1,
            broker_epoch: 0,
        },
        MetadataRecord::UnfenceBroker {
            node_id: 9,
            broker_epoch: 0,
        },
        MetadataRecord::TopicDeleted {
            name: "t".into(),
            id: Uuid::from_u128(1),
        },
        MetadataRecord::TopicCreated {
            name: "t".into(),
            id: Uuid::from_u128(3),
            configs: BTreeMap::new(),
        },
    ];
    for r in &bad {
        assert!(h.img.apply(next, r).is_empty(), "{r:?}");
    }
    let mut expect = snapshot.clone();
    expect.last_applied = next;
    assert_eq!(h.img, expect);
    // Indexes below the last applied one are ignored.
    let ok = MetadataRecord::SetDraining {
        node_id: 1,
        draining: true,
    };
    assert!(h.img.apply(next - 1, &ok).is_empty());
    assert!(!h.img.apply(next, &ok).is_empty());
}

#[test]
fn record_json_is_stable() {
    let r = MetadataRecord::PartitionChange {
        topic_id: Uuid::from_u128(1),
        partition: 2,
        expected_partition_epoch: 3,
        leader: Some(4),
        isr: Some(vec![4, 5]),
        replicas: None,
        adding_replicas: None,
        removing_replicas: None,
    };
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"type":"partition_change","topic_id":"00000000-0000-0000-0000-000000000001","partition":2,"expected_partition_epoch":3,"leader":4,"isr":[4,5]}"#
    );
    let register = |http_addr: Option<&str>| MetadataRecord::RegisterBroker {
        node_id: 1,
        incarnation_id: Uuid::from_u128(2),
        kafka_host: "h".into(),
        kafka_port: 9092,
        cluster_addr: "h:9093".into(),
        rack: None,
        http_addr: http_addr.map(str::to_owned),
        listeners: vec![],
    };
    // Without an HTTP address the record is written as older versions wrote it, and their
    // records read back without one.
    let old = r#"{"type":"register_broker","node_id":1,"incarnation_id":"00000000-0000-0000-0000-000000000002","kafka_host":"h","kafka_port":9092,"cluster_addr":"h:9093","rack":null}"#;
    assert_eq!(serde_json::to_string(&register(None)).unwrap(), old);
    assert_eq!(
        serde_json::from_str::<MetadataRecord>(old).unwrap(),
        register(None)
    );
    let r = register(Some("h:8081"));
    let text = serde_json::to_string(&r).unwrap();
    assert!(
        text.ends_with(r#""rack":null,"http_addr":"h:8081"}"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<MetadataRecord>(&text).unwrap(), r);
}

#[test]
fn scram_credentials_and_listeners_round_trip_and_apply() {
    let cred = |mechanism: i8| ScramCredentialInfo {
        mechanism,
        iterations: 4096,
        salt: "c2FsdA==".into(),
        stored_key: "c3RvcmVk".into(),
        server_key: "c2VydmVy".into(),
    };
    let set = MetadataRecord::UserScramCredential {
        name: "alice".into(),
        credential: cred(1),
    };
    let text = serde_json::to_string(&set).unwrap();
    assert_eq!(
        text,
        r#"{"type":"user_scram_credential","name":"alice","mechanism":1,"iterations":4096,"salt":"c2FsdA==","stored_key":"c3RvcmVk","server_key":"c2VydmVy"}"#
    );
    assert_eq!(serde_json::from_str::<MetadataRecord>(&text).unwrap(), set);
    let mut img = ClusterImage::new();
    assert_eq!(img.apply(1, &set), vec![Change::ScramCredentials]);
    let set512 = MetadataRecord::UserScramCredential {
        name: "alice".into(),
        credential: cred(2),
    };
    assert_eq!(img.apply(2, &set512), vec![Change::ScramCredentials]);
    assert_eq!(img.scram_credentials["alice"].len(), 2);
    let mut c = Controller::new(cfg(), &img, 0, 1);
    // Removing what does not exist is refused whole.
    let e = c
        .alter_scram_credentials(&img, &[("bob".into(), 1)], &[])
        .unwrap_err();
    assert_eq!(e.code, codes::RESOURCE_NOT_FOUND);
    let (_, records) = c
        .alter_scram_credentials(&img, &[("alice".into(), 1), ("alice".into(), 2)], &[])
        .unwrap();
    for r in &records {
        img.apply(3, r);
    }
    assert!(img.scram_credentials.is_empty());
    let listener = ListenerEndpoint {
        name: "SECURE".into(),
        host: "kafka.example".into(),
        port: 9093,
        security_protocol: "SASL_SSL".into(),
    };
    let reg = MetadataRecord::RegisterBroker {
        node_id: 1,
        incarnation_id: Uuid::from_u128(2),
        kafka_host: "h".into(),
        kafka_port: 9092,
        cluster_addr: "h:9093".into(),
        rack: None,
        http_addr: None,
        listeners: vec![listener],
    };
    let text = serde_json::to_string(&reg).unwrap();
    assert_eq!(serde_json::from_str::<MetadataRecord>(&text).unwrap(), reg);
    img.apply(4, &reg);
    let b = img.broker(1).unwrap();
    assert_eq!(b.endpoint("SECURE"), Some(("kafka.example", 9093)));
    assert_eq!(b.endpoint("OTHER"), None);
}

#[test]
fn snapshot_round_trips() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, Some("r"));
    }
    h.topic("t", vec![vec![1, 2, 3], vec![3, 2, 1]]);
    let ((), recs) =
        h.c.replace_group_configs(&h.img, "g", &BTreeMap::from([("a".into(), "b".into())]))
            .unwrap();
    h.commit(recs);
    let json = serde_json::to_string(&h.img).unwrap();
    let back: ClusterImage = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h.img);
}

#[test]
fn new_controller_gives_every_broker_a_fresh_session() {
    let mut h = H::new();
    h.broker(1, None);
    h.now = 100_000; // far past the old sessions
    h.c = Controller::new(cfg(), &h.img, h.now, 1);
    h.tick();
    assert!(!h.img.broker(1).unwrap().fenced);
    assert_eq!(
        h.c.session_deadline(1),
        Some(h.now + DEFAULT_SESSION_TIMEOUT_MS)
    );
    h.now += DEFAULT_SESSION_TIMEOUT_MS + 1;
    h.tick();
    assert!(h.img.broker(1).unwrap().fenced);
}

#[test]
fn several_brokers_expiring_together_compose() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    h.now += DEFAULT_SESSION_TIMEOUT_MS + 1;
    let e3 = h.epoch(3);
    h.hb(3, e3).unwrap();
    h.tick(); // 1 and 2 expire in one batch
    let p = h.p(t, 0);
    assert_eq!(p.isr, vec![3]);
    assert_eq!(p.leader, 3);
    h.now += DEFAULT_SESSION_TIMEOUT_MS + 1;
    h.tick();
    let p = h.p(t, 0);
    assert_eq!(p.isr, vec![3], "the last member stays");
    assert_eq!(p.leader, NO_LEADER);
}

#[test]
fn apply_refuses_dangling_brokers() {
    let mut h = H::new();
    h.broker(1, None);
    h.broker(2, None);
    h.register(3, 3, None).unwrap(); // fenced
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let next = h.img.last_applied + 1;
    // Unregistering a node that hosts replicas.
    assert!(h
        .img
        .apply(next, &MetadataRecord::UnregisterBroker { node_id: 1 })
        .is_empty());
    let change = |leader, replicas: Option<Vec<NodeId>>| MetadataRecord::PartitionChange {
        topic_id: t,
        partition: 0,
        expected_partition_epoch: 0,
        leader: Some(leader),
        isr: Some(vec![1, 2, 3]),
        replicas,
        adding_replicas: None,
        removing_replicas: None,
    };
    // A fenced leader; an unregistered replica.
    assert!(h.img.apply(next, &change(3, None)).is_empty());
    assert!(h
        .img
        .apply(next, &change(1, Some(vec![1, 2, 3, 9])))
        .is_empty());
    assert!(!h.img.apply(next, &change(2, None)).is_empty());
}

#[test]
fn placement_is_deterministic_from_the_seed() {
    let place = |seed| {
        let mut h = H::new();
        for id in 1..=5 {
            h.broker(id, Some(if id % 2 == 0 { "x" } else { "y" }));
        }
        h.c = Controller::new(cfg(), &h.img, h.now, seed);
        let req = CreateTopicRequest {
            name: "t".into(),
            id: Uuid::from_u128(5),
            num_partitions: Some(8),
            replication_factor: Some(3),
            assignments: None,
            configs: BTreeMap::new(),
        };
        h.c.create_topic(&h.img, 0, &req).unwrap().1
    };
    assert_eq!(place(1), place(1));
    let different = (2..20).any(|s| place(s) != place(1));
    assert!(different, "the seed moves the start index / shift");
}

#[test]
fn idle_tick_decides_nothing() {
    let mut h = H::with(ControllerConfig::default());
    for id in 1..=3 {
        h.broker(id, None);
    }
    h.topic("t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
    h.now += 1_000;
    assert!(h.c.tick(&h.img, h.now).is_empty());
}

#[test]
fn a_decision_on_an_old_image_is_rejected_whole() {
    let mut h = H::new();
    for id in 1..=3 {
        h.broker(id, None);
    }
    let t = h.topic("t", vec![vec![1, 2, 3]]);
    let old = h.img.clone();
    // A decision made on `old`…
    let (_, stale) = h.alter(1, t, 0, &[1, 2]).unwrap();
    // …while another one commits first.
    let (_, recs) =
        h.c.alter_partition_reassignments(&h.img, 0, &[("t".into(), 0, Some(vec![3, 2, 1]))])
            .unwrap();
    h.commit(recs);
    assert_ne!(h.img.last_applied, old.last_applied);
    let before = h.img.clone();
    let index = h.img.last_applied + 1;
    let changes: Vec<Change> = stale.iter().flat_map(|r| h.img.apply(index, r)).collect();
    assert_eq!(changes, vec![Change::DecisionRejected]);
    assert_eq!(h.img.topics, before.topics);
    assert_eq!(h.img.brokers, before.brokers);
    // The next entry applies normally.
    let e = h.epoch(1);
    let (_, recs) = h.c.allocate_producer_id_block(&h.img, 1, e).unwrap();
    h.commit(recs);
    // A snapshot taken after a rejection round-trips.
    let back: ClusterImage = serde_json::from_str(&serde_json::to_string(&h.img).unwrap()).unwrap();
    assert_eq!(back, h.img);
}

#[test]
fn the_first_cluster_id_applied_stays() {
    let mut img = ClusterImage::new();
    let id = |s: &str| MetadataRecord::ClusterId {
        cluster_id: s.to_string(),
    };
    img.apply(1, &id(""));
    assert_eq!(img.cluster_id, None, "an empty id is ignored");
    img.apply(2, &id("first"));
    img.apply(3, &id("second"));
    assert_eq!(img.cluster_id.as_deref(), Some("first"));
    let json = serde_json::to_string(&img).unwrap();
    let back: ClusterImage = serde_json::from_str(&json).unwrap();
    assert_eq!(back.cluster_id.as_deref(), Some("first"));
}
