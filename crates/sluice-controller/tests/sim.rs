//! Seeded simulation of the controller against a cluster of unreliable brokers.
//!
//! Each schedule runs a few hundred random steps: brokers register, heartbeat (requests
//! dropped, delayed, duplicated, reordered), crash and come back as new incarnations, shut
//! down in a controlled way; leaders send AlterPartitions from stale views (and duplicates);
//! admin requests (create/delete topics and partitions, configs, ElectLeaders,
//! reassignments and cancels, drains, unregistering, producer id blocks) interleave; the
//! controller fails over. Every committed batch goes through JSON before `apply`; image
//! snapshots round-trip. The invariants are checked after every record; at the end the
//! cluster heals and every partition must have a leader, and replaying the log must rebuild
//! the same image.
//!
//! Default: `SIM_SCHEDULES` (2000) schedules of `SIM_STEPS` (250) steps from `SIM_SEED` (1):
//! `cargo test --release -p sluice-controller --test sim`. Longer:
//! `SLUICE_CTRL_SIM_SCHEDULES=100000 SLUICE_CTRL_SIM_STEPS=600 cargo test --release -p
//! sluice-controller --test sim`; one failing schedule: `SLUICE_CTRL_SIM_SEED=<seed>
//! SLUICE_CTRL_SIM_SCHEDULES=1`.

use std::collections::{BTreeMap, BTreeSet};

use sluice_controller::*;
use uuid::Uuid;

const SIM_SCHEDULES: u64 = 2_000;
const SIM_STEPS: usize = 250;
const SIM_SEED: u64 = 1;
const SESSION_MS: i64 = 9_000;
/// Old messages kept for replaying as late duplicates.
const SENT_KEPT: usize = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len() as u64) as usize)
        }
    }
}

#[derive(Clone)]
struct Node {
    id: NodeId,
    up: bool,
    incarnation: Uuid,
    epoch: Option<i64>,
    shutting_down: bool,
    /// The image as this node last saw it (stale on purpose).
    view: ClusterImage,
}

#[derive(Clone, Debug)]
enum Msg {
    Heartbeat(HeartbeatRequest),
    Alter(AlterPartitionRequest),
}

/// What produced a batch (for the election-outside-the-ISR rule).
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Normal,
    Alter,
    UncleanElect,
}

struct World {
    rng: Rng,
    seed: u64,
    now: i64,
    image: ClusterImage,
    log: Vec<String>,
    config: ControllerConfig,
    ctrl: Controller,
    nodes: Vec<Node>,
    inflight: Vec<(i64, Msg)>,
    /// The last messages sent, for replays of old duplicates.
    sent: Vec<Msg>,
    /// Older images, for decisions of a lagging controller.
    old_images: Vec<ClusterImage>,
    /// (topic, partition, leader epoch) → leader: at most one leader per epoch, ever.
    leaders: BTreeMap<(Uuid, i32, i32), NodeId>,
    /// (topic, partition) → (leader epoch, partition epoch) last seen.
    epochs: BTreeMap<(Uuid, i32), (i32, i32)>,
    next_uuid: u128,
    pid_blocks: Vec<ProducerIdBlock>,
    stats: BTreeMap<&'static str, u64>,
    healing: bool,
}

const TOPICS: [&str; 4] = ["a", "b", "c", "d"];

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let n = 3 + rng.below(3) as i32;
        let config = ControllerConfig {
            session_timeout_ms: SESSION_MS,
            auto_leader_rebalance_enable: rng.pct(70),
            leader_imbalance_check_interval_ms: 5_000,
            unclean_leader_election_enable: rng.pct(10),
            ..ControllerConfig::default()
        };
        let image = ClusterImage::new();
        let ctrl = Controller::new(config.clone(), &image, 0, seed);
        let nodes = (1..=n)
            .map(|id| Node {
                id,
                up: false,
                incarnation: Uuid::nil(),
                epoch: None,
                shutting_down: false,
                view: ClusterImage::new(),
            })
            .collect();
        World {
            rng,
            seed,
            now: 0,
            image,
            log: Vec::new(),
            config,
            ctrl,
            nodes,
            inflight: Vec::new(),
            sent: Vec::new(),
            old_images: Vec::new(),
            leaders: BTreeMap::new(),
            epochs: BTreeMap::new(),
            next_uuid: (seed as u128) << 64,
            pid_blocks: Vec::new(),
            stats: BTreeMap::new(),
            healing: false,
        }
    }

    fn uuid(&mut self) -> Uuid {
        self.next_uuid += 1;
        Uuid::from_u128(self.next_uuid)
    }

    fn stat(&mut self, k: &'static str) {
        *self.stats.entry(k).or_default() += 1;
    }

    fn fail(&self, msg: &str) -> ! {
        panic!(
            "seed {}: t={} index={}: {msg}\nimage: {:#?}",
            self.seed, self.now, self.image.last_applied, self.image
        );
    }

    /// Commits one batch: JSON out and back, applied record by record, invariants after each.
    fn commit(&mut self, records: Vec<MetadataRecord>, ctx: Ctx) -> u64 {
        if records.is_empty() {
            return self.image.last_applied;
        }
        let json = serde_json::to_string(&records).unwrap();
        let decoded: Vec<MetadataRecord> = serde_json::from_str(&json).unwrap();
        assert_eq!(decoded, records, "records survive JSON");
        self.log.push(json);
        let index = self.image.last_applied + 1;
        if !matches!(decoded.first(), Some(MetadataRecord::Guard { .. })) || decoded.len() < 2 {
            self.fail(&format!("a decision without its guard: {decoded:?}"));
        }
        for rec in &decoded {
            let before = self.image.clone();
            let changes = self.image.apply(index, rec);
            if matches!(rec, MetadataRecord::Guard { .. }) {
                if !changes.is_empty() {
                    self.fail(&format!("a current decision was rejected: {rec:?}"));
                }
                continue;
            }
            if changes.is_empty() {
                self.fail(&format!("a decided record was ignored: {rec:?}"));
            }
            self.check_record(&before, rec, ctx);
            self.check_image();
        }
        self.stat("batches");
        index
    }

    fn check_record(&mut self, before: &ClusterImage, rec: &MetadataRecord, ctx: Ctx) {
        if let MetadataRecord::PartitionChange {
            topic_id,
            partition,
            ..
        } = rec
        {
            let old = before.partition(topic_id, *partition).unwrap().clone();
            let new = self.image.partition(topic_id, *partition).unwrap().clone();
            if new.partition_epoch != old.partition_epoch + 1 {
                self.fail("partition epoch did not grow by one");
            }
            if new.leader_epoch < old.leader_epoch
                || (new.leader != old.leader && new.leader_epoch <= old.leader_epoch)
            {
                self.fail("leader epoch did not grow with a leader change");
            }
            if new.leader != old.leader && new.leader != NO_LEADER {
                let unclean_topic = self
                    .image
                    .topic_by_id(topic_id)
                    .unwrap()
                    .unclean_leader_election(self.config.unclean_leader_election_enable);
                let ok = old.isr.contains(&new.leader)
                    || (ctx == Ctx::Alter && new.isr.contains(&new.leader))
                    || ctx == Ctx::UncleanElect
                    || unclean_topic;
                if !ok {
                    self.fail(&format!(
                        "leader {} elected outside the ISR {:?} (ctx alter={})",
                        new.leader,
                        old.isr,
                        ctx == Ctx::Alter
                    ));
                }
                if !old.isr.contains(&new.leader) {
                    self.stat("unclean or expanded elections");
                }
            }
            if new.leader != old.leader {
                self.stat("leader changes");
            }
        }
    }

    fn check_image(&mut self) {
        let mut seen = Vec::new();
        for (t, i, p) in self.image.partitions() {
            if !p.is_well_formed() {
                self.fail(&format!("malformed partition {}-{i}: {p:?}", t.name));
            }
            if p.leader != NO_LEADER {
                match self.image.broker(p.leader) {
                    Some(b) if !b.fenced && !b.in_controlled_shutdown => {}
                    _ => self.fail(&format!(
                        "{}-{i} led by {} which is not an active broker",
                        t.name, p.leader
                    )),
                }
            }
            for r in &p.replicas {
                if self.image.broker(*r).is_none() {
                    self.fail(&format!("{}-{i} has unregistered replica {r}", t.name));
                }
            }
            let inactive_in_isr = p.isr.iter().any(|r| !self.image.is_active(*r));
            if inactive_in_isr && (p.isr.len() != 1 || p.leader != NO_LEADER) {
                self.fail(&format!(
                    "{}-{i}: an inactive broker stays in ISR {:?} with others or a leader {}",
                    t.name, p.isr, p.leader
                ));
            }
            seen.push((t.id, i, p.leader, p.leader_epoch, p.partition_epoch));
        }
        for (tid, i, leader, le, pe) in seen {
            if let Some(&l) = self.leaders.get(&(tid, i, le)) {
                if l != leader {
                    self.fail(&format!(
                        "two leaders ({l} and {leader}) at leader epoch {le} of {tid}-{i}"
                    ));
                }
            } else {
                self.leaders.insert((tid, i, le), leader);
            }
            if let Some(&(ole, ope)) = self.epochs.get(&(tid, i)) {
                if le < ole || pe < ope {
                    self.fail("an epoch went backwards");
                }
            }
            self.epochs.insert((tid, i), (le, pe));
        }
    }

    fn send(&mut self, msg: Msg) {
        if self.healing {
            return;
        }
        if self.sent.len() >= SENT_KEPT {
            self.sent.remove(0);
        }
        self.sent.push(msg.clone());
        if self.rng.pct(10) {
            self.stat("dropped");
            return;
        }
        let at = self.now + self.rng.below(2_500) as i64;
        self.inflight.push((at, msg.clone()));
        if self.rng.pct(5) {
            let at = self.now + self.rng.below(5_000) as i64;
            self.inflight.push((at, msg));
            self.stat("duplicated");
        }
    }

    fn deliver_due(&mut self) {
        let mut due = Vec::new();
        let mut rest = Vec::new();
        for (at, m) in std::mem::take(&mut self.inflight) {
            if at <= self.now {
                due.push((at, m));
            } else {
                rest.push((at, m));
            }
        }
        self.inflight = rest;
        // Delivery order among the due ones is random (reordering).
        while !due.is_empty() {
            let k = self.rng.below(due.len() as u64) as usize;
            let (_, m) = due.swap_remove(k);
            self.deliver(m);
        }
    }

    fn deliver(&mut self, m: Msg) {
        match m {
            Msg::Heartbeat(req) => {
                let res = self.ctrl.heartbeat(&self.image, self.now, &req);
                let node_idx = (req.node_id - 1) as usize;
                match res {
                    Ok((reply, records)) => {
                        self.commit(records, Ctx::Normal);
                        self.stat("heartbeats ok");
                        let node = &mut self.nodes[node_idx];
                        if node.up
                            && node.epoch == Some(req.broker_epoch)
                            && reply.should_shut_down
                            && node.shutting_down
                        {
                            node.up = false;
                            node.epoch = None;
                            node.shutting_down = false;
                            self.stat("controlled shutdowns done");
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.code, codes::STALE_BROKER_EPOCH, "{e}");
                        self.stat("heartbeats stale");
                        let node = &mut self.nodes[node_idx];
                        if node.epoch == Some(req.broker_epoch) {
                            // This node's registration is gone: register again.
                            node.epoch = None;
                        }
                    }
                }
            }
            Msg::Alter(req) => {
                let before = self.image.partition(&req.topic_id, req.partition).cloned();
                match self.ctrl.alter_partition(&self.image, self.now, &req) {
                    Ok((reply, records)) => {
                        let p = before.expect("Ok for a missing partition");
                        if req.leader_epoch != p.leader_epoch
                            || req.partition_epoch != p.partition_epoch
                            || req.broker_id != p.leader
                        {
                            self.fail(&format!("stale AlterPartition accepted: {req:?} vs {p:?}"));
                        }
                        self.commit(records, Ctx::Alter);
                        let after = self.image.partition(&req.topic_id, req.partition).unwrap();
                        let completed = p.is_reassigning() && !after.is_reassigning();
                        let want: Vec<NodeId> = req
                            .new_isr
                            .iter()
                            .map(|m| m.broker_id)
                            .filter(|r| !completed || !p.removing_replicas.contains(r))
                            .collect();
                        if after.isr != want {
                            self.fail(&format!(
                                "AlterPartition applied {:?}, asked {:?}: {req:?} before {p:?} after {after:?}",
                                after.isr, want
                            ));
                        }
                        assert_eq!(reply.partition_epoch, after.partition_epoch);
                        if completed {
                            self.stat("reassignments completed by AlterPartition");
                        }
                        self.stat("alter ok");
                    }
                    Err(e) => {
                        self.stat(match e.code {
                            codes::FENCED_LEADER_EPOCH => "alter FENCED_LEADER_EPOCH",
                            codes::INVALID_UPDATE_VERSION => "alter INVALID_UPDATE_VERSION",
                            codes::STALE_BROKER_EPOCH => "alter STALE_BROKER_EPOCH",
                            codes::INELIGIBLE_REPLICA => "alter INELIGIBLE_REPLICA",
                            codes::UNKNOWN_TOPIC_ID => "alter UNKNOWN_TOPIC_ID",
                            codes::INVALID_REQUEST => "alter INVALID_REQUEST",
                            _ => "alter other error",
                        });
                        assert_ne!(e.code, codes::NOT_CONTROLLER, "{e}");
                    }
                }
            }
        }
    }

    fn register(&mut self, k: usize) {
        let n = &self.nodes[k];
        let req = RegisterBrokerRequest {
            node_id: n.id,
            incarnation_id: n.incarnation,
            kafka_host: format!("h{}", n.id),
            kafka_port: 9092,
            cluster_addr: format!("h{}:9093", n.id),
            // Racks r0/r1, and node 5 without one (mixed racks).
            rack: (n.id != 5).then(|| format!("r{}", n.id % 2)),
            http_addr: None,
            listeners: vec![],
        };
        if std::env::var("SIM_DEBUG").is_ok() {
            eprintln!(
                "register {req:?} -> {:?}",
                self.ctrl
                    .clone()
                    .register_broker(&self.image, self.now, &req)
            );
        }
        match self.ctrl.register_broker(&self.image, self.now, &req) {
            Ok(((), records)) => {
                let index = self.commit(records, Ctx::Normal);
                if !self.healing && self.rng.pct(10) {
                    // The reply is lost: the node will register again.
                    self.stat("registration replies lost");
                } else {
                    self.nodes[k].epoch = Some(index as i64);
                    self.nodes[k].view = self.image.clone();
                }
                self.stat("registrations");
            }
            Err(e) => {
                assert_eq!(e.code, codes::DUPLICATE_BROKER_REGISTRATION, "{e}");
                self.stat("duplicate registrations refused");
            }
        }
    }

    fn heartbeat(&mut self, k: usize) {
        if self.rng.pct(40) {
            self.nodes[k].view = self.image.clone();
        }
        let n = &self.nodes[k];
        let Some(epoch) = n.epoch else { return };
        let req = HeartbeatRequest {
            node_id: n.id,
            broker_epoch: epoch,
            metadata_offset: n.view.last_applied as i64,
            want_fence: !n.shutting_down && self.rng.pct(3),
            want_shutdown: n.shutting_down,
        };
        self.send(Msg::Heartbeat(req));
    }

    fn alter(&mut self, k: usize) {
        if self.rng.pct(50) {
            self.nodes[k].view = self.image.clone();
        }
        let n = &self.nodes[k];
        let Some(epoch) = n.epoch else { return };
        let led: Vec<(Uuid, i32, PartitionInfo)> = n
            .view
            .partitions()
            .filter(|(_, _, p)| p.leader == n.id)
            .map(|(t, i, p)| (t.id, i, p.clone()))
            .collect();
        let Some((tid, i, p)) = self.rng.pick(&led).cloned() else {
            return;
        };
        let mut isr = vec![n.id];
        for r in &p.replicas {
            if *r != n.id && self.rng.pct(60) {
                isr.push(*r);
            }
        }
        let view = &self.nodes[k].view;
        let new_isr = isr
            .iter()
            .map(|r| IsrMember {
                broker_id: *r,
                broker_epoch: view.broker(*r).map(|b| b.broker_epoch).unwrap_or(-1),
            })
            .collect();
        let req = AlterPartitionRequest {
            broker_id: n.id,
            broker_epoch: epoch,
            topic_id: tid,
            partition: i,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr,
        };
        self.send(Msg::Alter(req));
    }

    fn registered_ids(&self) -> Vec<NodeId> {
        self.image.brokers.keys().copied().collect()
    }

    fn admin(&mut self) {
        let topic = self.rng.pick(&TOPICS).unwrap().to_string();
        match self.rng.below(12) {
            0 | 1 => {
                let id = self.uuid();
                let manual = self.rng.pct(20);
                let ids = self.registered_ids();
                let req = CreateTopicRequest {
                    name: topic,
                    id,
                    num_partitions: (!manual).then(|| 1 + self.rng.below(4) as i32),
                    replication_factor: if manual || self.rng.pct(30) {
                        None
                    } else {
                        Some(1 + self.rng.below(3) as i16)
                    },
                    assignments: manual.then(|| {
                        (0..1 + self.rng.below(3))
                            .map(|_| {
                                let mut v = ids.clone();
                                v.truncate(2);
                                v
                            })
                            .collect()
                    }),
                    configs: if self.rng.pct(15) {
                        BTreeMap::from([(
                            UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
                            "true".to_string(),
                        )])
                    } else {
                        BTreeMap::new()
                    },
                };
                match self.ctrl.create_topic(&self.image, self.now, &req) {
                    Ok((reply, records)) => {
                        self.commit(records, Ctx::Normal);
                        assert_eq!(self.image.topic(&req.name).unwrap().id, reply.id);
                        self.stat("topics created");
                    }
                    Err(e) => {
                        assert!(
                            [
                                codes::TOPIC_ALREADY_EXISTS,
                                codes::INVALID_REPLICATION_FACTOR,
                                codes::INVALID_REPLICA_ASSIGNMENT,
                                codes::INVALID_PARTITIONS
                            ]
                            .contains(&e.code),
                            "{e}"
                        );
                    }
                }
            }
            2 => {
                let total = 1 + self.rng.below(6) as i32;
                if let Ok(((), records)) =
                    self.ctrl
                        .create_partitions(&self.image, self.now, &topic, total, None)
                {
                    self.commit(records, Ctx::Normal);
                    assert_eq!(
                        self.image.topic(&topic).unwrap().partitions.len(),
                        total as usize
                    );
                    self.stat("partitions added");
                }
            }
            3 => {
                if let Ok((_, records)) = self
                    .ctrl
                    .delete_topic(&self.image, &TopicRef::Name(topic.clone()))
                {
                    self.commit(records, Ctx::Normal);
                    assert!(self.image.topic(&topic).is_none());
                    self.stat("topics deleted");
                }
            }
            4 => {
                let mut configs = BTreeMap::new();
                if self.rng.pct(40) {
                    configs.insert(
                        UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
                        self.rng.pct(50).to_string(),
                    );
                }
                if let Ok(((), records)) =
                    self.ctrl
                        .replace_topic_configs(&self.image, &topic, &configs)
                {
                    self.commit(records, Ctx::Normal);
                    self.stat("topic configs");
                }
            }
            5 | 6 => {
                let kind = if self.rng.pct(70) {
                    ElectionType::Preferred
                } else {
                    ElectionType::Unclean
                };
                let list: Option<Vec<(String, i32)>> = if self.rng.pct(50) {
                    None
                } else {
                    Some(vec![(topic, self.rng.below(3) as i32)])
                };
                let (results, records) = self
                    .ctrl
                    .elect_leaders(&self.image, self.now, kind, list.as_deref())
                    .expect("ElectLeaders answers per partition");
                let ctx = if kind == ElectionType::Unclean {
                    Ctx::UncleanElect
                } else {
                    Ctx::Normal
                };
                self.commit(records, ctx);
                for r in results {
                    if r.error.is_none() {
                        self.stat("elections done");
                    }
                }
            }
            7 | 8 => {
                let Some(t) = self.image.topic(&topic) else {
                    return;
                };
                let p = self.rng.below(t.partitions.len() as u64 + 1) as i32;
                let target = if self.rng.pct(25) {
                    None
                } else {
                    let mut ids = self.registered_ids();
                    let mut v = Vec::new();
                    for _ in 0..1 + self.rng.below(3) {
                        if ids.is_empty() {
                            break;
                        }
                        let k = self.rng.below(ids.len() as u64) as usize;
                        v.push(ids.swap_remove(k));
                    }
                    Some(v)
                };
                let (results, records) = self
                    .ctrl
                    .alter_partition_reassignments(&self.image, self.now, &[(topic, p, target)])
                    .expect("per-partition answers");
                self.commit(records, Ctx::Normal);
                if results[0].error.is_none() {
                    self.stat("reassignments altered");
                }
                let listed = self.ctrl.list_partition_reassignments(&self.image, None);
                for r in listed {
                    let t = self.image.topic(&r.topic).unwrap();
                    assert!(t.partition(r.partition).unwrap().is_reassigning());
                }
            }
            9 => {
                // Drain a node: mark it, move its replicas, then try to unregister it.
                let Some(&node) = self.rng.pick(&self.registered_ids()) else {
                    return;
                };
                if let Ok(((), records)) = self.ctrl.set_draining(&self.image, node, true) {
                    self.commit(records, Ctx::Normal);
                }
                let moves: Vec<(String, i32, Option<Vec<NodeId>>)> = self
                    .ctrl
                    .drain_plan(&self.image, node)
                    .into_iter()
                    .filter_map(|m| m.target.ok().map(|t| (m.topic, m.partition, Some(t))))
                    .collect();
                for t in moves.iter().flat_map(|m| m.2.iter().flatten()) {
                    assert_ne!(*t, node, "the drain plan keeps the drained node");
                }
                let (_, records) = self
                    .ctrl
                    .alter_partition_reassignments(&self.image, self.now, &moves)
                    .unwrap();
                self.commit(records, Ctx::Normal);
                if self.rng.pct(50) {
                    if let Ok(((), records)) = self.ctrl.set_draining(&self.image, node, false) {
                        self.commit(records, Ctx::Normal);
                    }
                }
            }
            10 => {
                let Some(&node) = self.rng.pick(&self.registered_ids()) else {
                    return;
                };
                match self.ctrl.unregister_broker(&self.image, node) {
                    Ok(((), records)) => {
                        self.commit(records, Ctx::Normal);
                        self.stat("unregistered");
                    }
                    Err(e) => assert_eq!(e.code, codes::INVALID_REQUEST, "{e}"),
                }
            }
            _ => {
                let Some(n) = self.nodes.iter().find(|n| n.epoch.is_some()).cloned() else {
                    return;
                };
                if let Ok((block, records)) =
                    self.ctrl
                        .allocate_producer_id_block(&self.image, n.id, n.epoch.unwrap())
                {
                    self.commit(records, Ctx::Normal);
                    if let Some(prev) = self.pid_blocks.last() {
                        assert!(
                            block.first >= prev.first + prev.len,
                            "producer id blocks overlap"
                        );
                    }
                    self.pid_blocks.push(block);
                }
                let mut cfg = BTreeMap::new();
                if self.rng.pct(50) {
                    cfg.insert("k".to_string(), "v".to_string());
                }
                let (_, records) = self
                    .ctrl
                    .replace_group_configs(&self.image, "g", &cfg)
                    .unwrap();
                self.commit(records, Ctx::Normal);
            }
        }
    }

    /// A controller whose image lags (a failover before catching up, or a concurrent
    /// decision): whatever it decides must be rejected whole when committed.
    fn stale_decision(&mut self) {
        let k = self.rng.below(self.old_images.len() as u64) as usize;
        let old = self.old_images[k].clone();
        if old.last_applied == self.image.last_applied {
            return;
        }
        let mut c = Controller::new(self.config.clone(), &old, self.now, self.rng.next());
        let records = match self.rng.below(3) {
            0 => c.tick(&old, self.now + SESSION_MS * 2),
            1 => {
                let kind = if self.rng.pct(50) {
                    ElectionType::Preferred
                } else {
                    ElectionType::Unclean
                };
                c.elect_leaders(&old, self.now, kind, None).unwrap().1
            }
            _ => {
                let Some(n) = self.nodes.iter().find(|n| n.up).cloned() else {
                    return;
                };
                let req = RegisterBrokerRequest {
                    node_id: n.id,
                    incarnation_id: self.uuid(),
                    kafka_host: "stale".into(),
                    kafka_port: 1,
                    cluster_addr: "stale:1".into(),
                    rack: None,
                    http_addr: None,
                    listeners: vec![],
                };
                match c.register_broker(&old, self.now, &req) {
                    Ok((_, r)) => r,
                    Err(_) => return,
                }
            }
        };
        if records.is_empty() {
            return;
        }
        let before = self.image.clone();
        let index = self.image.last_applied + 1;
        let json = serde_json::to_string(&records).unwrap();
        self.log.push(json);
        let mut changes = Vec::new();
        for r in &records {
            changes.extend(self.image.apply(index, r));
        }
        if changes != vec![Change::DecisionRejected] {
            self.fail(&format!("a stale decision applied: {changes:?}"));
        }
        if self.image.brokers != before.brokers || self.image.topics != before.topics {
            self.fail("a rejected decision changed the image");
        }
        self.check_image();
        self.stat("stale decisions rejected");
    }

    fn step(&mut self) {
        if self.rng.pct(10) {
            if self.old_images.len() >= 8 {
                self.old_images.remove(0);
            }
            self.old_images.push(self.image.clone());
        }
        match self.rng.below(100) {
            0..=19 => {
                self.now += self.rng.below(3_000) as i64;
                self.deliver_due();
            }
            20..=39 => {
                let k = self.rng.below(self.nodes.len() as u64) as usize;
                if self.nodes[k].up {
                    if self.nodes[k].epoch.is_none() {
                        self.register(k);
                    } else {
                        self.heartbeat(k);
                    }
                }
            }
            40..=44 => {
                let k = self.rng.below(self.nodes.len() as u64) as usize;
                if self.nodes[k].up {
                    if self.rng.pct(50) {
                        self.nodes[k].shutting_down = true;
                    } else {
                        self.nodes[k].up = false;
                        self.nodes[k].epoch = None;
                        self.stat("crashes");
                    }
                } else {
                    self.nodes[k].up = true;
                    self.nodes[k].shutting_down = false;
                    self.nodes[k].incarnation = self.uuid();
                    self.register(k);
                }
            }
            45..=59 => {
                let k = self.rng.below(self.nodes.len() as u64) as usize;
                if self.nodes[k].up {
                    self.alter(k);
                }
            }
            60..=74 => self.admin(),
            75..=91 => {
                let records = self.ctrl.tick(&self.image, self.now);
                self.commit(records, Ctx::Normal);
                // A tick is a fixpoint: at the same instant, nothing more to do.
                let again = self.ctrl.tick(&self.image, self.now);
                if !again.is_empty() {
                    self.fail(&format!("a second tick still decided {again:?}"));
                }
            }
            92 if !self.old_images.is_empty() => self.stale_decision(),
            92..=93 => {
                self.ctrl =
                    Controller::new(self.config.clone(), &self.image, self.now, self.rng.next());
                self.stat("controller failovers");
            }
            94..=96 => {
                let json = serde_json::to_string(&self.image).unwrap();
                let back: ClusterImage = serde_json::from_str(&json).unwrap();
                assert_eq!(back, self.image, "snapshot round trip");
                self.image = back;
            }
            _ => {
                // Replay a random old heartbeat or alter (a duplicate from long ago).
                if let Some(m) = self.rng.pick(&self.sent).cloned() {
                    self.deliver(m);
                }
            }
        }
    }

    /// Everything comes back; every partition must get a leader.
    fn heal(&mut self) {
        self.healing = true;
        self.now += 20_000;
        self.deliver_due();
        for k in 0..self.nodes.len() {
            self.nodes[k].shutting_down = false;
            if !self.nodes[k].up || self.nodes[k].epoch.is_none() {
                self.nodes[k].up = true;
                self.nodes[k].incarnation = self.uuid();
                self.nodes[k].epoch = None;
            }
        }
        // Old incarnations' sessions may still run (their last heartbeats were delivered
        // above): enough rounds for them to expire and the new incarnations to register.
        for _round in 0..(SESSION_MS / 1_000 + 6) {
            for k in 0..self.nodes.len() {
                if self.nodes[k].epoch.is_none()
                    || self.image.broker(self.nodes[k].id).map(|b| b.broker_epoch)
                        != self.nodes[k].epoch
                {
                    self.nodes[k].epoch = None;
                    self.register(k);
                }
            }
            for k in 0..self.nodes.len() {
                if let Some(epoch) = self.nodes[k].epoch {
                    let req = HeartbeatRequest {
                        node_id: self.nodes[k].id,
                        broker_epoch: epoch,
                        metadata_offset: self.image.last_applied as i64,
                        want_fence: false,
                        want_shutdown: false,
                    };
                    if std::env::var("SIM_DEBUG").is_ok() {
                        eprintln!(
                            "heal hb {req:?} -> {:?}",
                            self.ctrl.clone().heartbeat(&self.image, self.now, &req)
                        );
                    }
                    self.deliver(Msg::Heartbeat(req));
                }
            }
            self.now += 1_000;
            let records = self.ctrl.tick(&self.image, self.now);
            self.commit(records, Ctx::Normal);
        }
        for b in self.image.brokers.values() {
            if b.fenced {
                self.fail(&format!("broker {} still fenced after healing", b.node_id));
            }
        }
        let offline = self.image.offline_partitions();
        if !offline.is_empty() {
            self.fail(&format!("offline partitions after healing: {offline:?}"));
        }
    }

    /// Replaying the committed log from nothing rebuilds the same image.
    fn check_replay(&self) {
        let mut img = ClusterImage::new();
        for (k, json) in self.log.iter().enumerate() {
            let records: Vec<MetadataRecord> = serde_json::from_str(json).unwrap();
            for r in &records {
                img.apply(k as u64 + 1, r);
            }
        }
        assert_eq!(img, self.image, "seed {}: replay differs", self.seed);
    }
}

fn run(seed: u64, steps: usize) -> BTreeMap<&'static str, u64> {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    w.heal();
    w.check_replay();
    w.stats
}

#[test]
fn simulation() {
    let schedules = env_u64("SLUICE_CTRL_SIM_SCHEDULES", SIM_SCHEDULES);
    let steps = env_u64("SLUICE_CTRL_SIM_STEPS", SIM_STEPS as u64) as usize;
    let seed0 = env_u64("SLUICE_CTRL_SIM_SEED", SIM_SEED);
    let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
    for s in 0..schedules {
        for (k, v) in run(seed0.wrapping_add(s), steps) {
            *total.entry(k).or_default() += v;
        }
    }
    eprintln!("{schedules} schedules × {steps} steps: {total:#?}");
    // The schedules must exercise the interesting paths, not just pass vacuously.
    for k in [
        "leader changes",
        "alter ok",
        "alter FENCED_LEADER_EPOCH",
        "alter INVALID_UPDATE_VERSION",
        "alter STALE_BROKER_EPOCH",
        "controlled shutdowns done",
        "topics created",
        "reassignments altered",
        "controller failovers",
        "registrations",
        "stale decisions rejected",
    ] {
        if schedules >= 200 {
            assert!(
                total.get(k).copied().unwrap_or(0) > 0,
                "no '{k}' in any schedule"
            );
        }
    }
    let _ = BTreeSet::<i32>::new();
}
