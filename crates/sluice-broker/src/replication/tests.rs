//! In-process replication tests: real `Broker`s (separate temp data dirs), real `RpcServer`s
//! on loopback serving RPC service 2, and an honest in-process controller
//! (`sluice_controller::Controller` deciding on a `ClusterImage`, its records applied at once)
//! behind a test [`ClusterLink`]. Partition states reach the brokers through
//! `ReplicaManager::apply_partition_state`, as the cluster layer's reconcile will call it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_controller::{
    AlterPartitionReply, AlterPartitionRequest, ClusterImage, Controller, ControllerConfig,
    ControllerError, CreateTopicRequest, HeartbeatRequest, MetadataRecord, RegisterBrokerRequest,
};
use sluice_quorum::rpc::{BoxFuture, Handlers, RpcClient, RpcServer, SERVICE_REPLICA_FETCH};
use sluice_storage::records::compute_crc;
use sluice_storage::LogConfig;
use uuid::Uuid;

use super::leader::ReplicaFetchService;
use super::{ClusterLink, PartitionState};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::replica_manager::{AcksWait, ReplicaConfig, Role, TopicIdPartition};

/// Session timeout of the test controller (its clock is driven by the test).
const SESSION_MS: i64 = 9_000;

struct Ctl {
    img: ClusterImage,
    c: Controller,
    now: i64,
    addrs: HashMap<i32, String>,
}

impl Ctl {
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        let index = self.img.last_applied + 1;
        for r in &records {
            self.img.apply(index, r);
        }
    }
}

struct TestLink {
    id: i32,
    ctl: Arc<Mutex<Ctl>>,
    rpc: Arc<RpcClient>,
}

impl ClusterLink for TestLink {
    fn node_id(&self) -> i32 {
        self.id
    }
    fn broker_epoch(&self) -> i64 {
        self.ctl
            .lock()
            .img
            .broker(self.id)
            .map_or(-1, |b| b.broker_epoch)
    }
    fn cluster_addr(&self, node: i32) -> Option<String> {
        self.ctl.lock().addrs.get(&node).cloned()
    }
    fn broker_status(&self, node: i32) -> Option<(i64, bool)> {
        self.ctl
            .lock()
            .img
            .broker(node)
            .map(|b| (b.broker_epoch, b.fenced || b.in_controlled_shutdown))
    }
    fn rpc(&self) -> Arc<RpcClient> {
        self.rpc.clone()
    }
    fn alter_partition(
        &self,
        req: AlterPartitionRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, ControllerError>> {
        Box::pin(async move {
            let mut ctl = self.ctl.lock();
            let ctl = &mut *ctl;
            let (reply, records) = ctl.c.alter_partition(&ctl.img, ctl.now, &req)?;
            ctl.commit(records);
            Ok(reply)
        })
    }
}

struct Node {
    broker: Arc<Broker>,
    link: Arc<TestLink>,
    _server: RpcServer,
    _dir: tempfile::TempDir,
}

struct Cluster {
    ctl: Arc<Mutex<Ctl>>,
    nodes: BTreeMap<i32, Node>,
    min_isr: usize,
}

impl Cluster {
    async fn new(n: i32, min_isr: usize, lag_ms: i64) -> Cluster {
        let img = ClusterImage::new();
        let config = ControllerConfig {
            auto_leader_rebalance_enable: false,
            session_timeout_ms: SESSION_MS,
            ..ControllerConfig::default()
        };
        let c = Controller::new(config, &img, 0, 7);
        let ctl = Arc::new(Mutex::new(Ctl {
            img,
            c,
            now: 0,
            addrs: HashMap::new(),
        }));
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let config = BrokerConfig {
                node_id: id,
                data_dir: dir.path().to_path_buf(),
                ..BrokerConfig::default()
            };
            let broker = Broker::open(config, "127.0.0.1:9092".parse().unwrap())
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut handlers: Handlers = HashMap::new();
            handlers.insert(SERVICE_REPLICA_FETCH, ReplicaFetchService::new(&broker));
            let server = RpcServer::serve(listener, handlers).unwrap();
            let addr = server.local_addr().to_string();
            {
                let mut ctl = ctl.lock();
                ctl.addrs.insert(id, addr.clone());
                let req = RegisterBrokerRequest {
                    node_id: id,
                    incarnation_id: Uuid::from_u128(id as u128),
                    kafka_host: "127.0.0.1".into(),
                    kafka_port: 9092,
                    cluster_addr: addr,
                    rack: None,
                    http_addr: None,
                    listeners: vec![],
                };
                let ctl = &mut *ctl;
                let ((), recs) = ctl.c.register_broker(&ctl.img, ctl.now, &req).unwrap();
                ctl.commit(recs);
            }
            let link = Arc::new(TestLink {
                id,
                ctl: ctl.clone(),
                rpc: RpcClient::new(),
            });
            broker.replication.set_replica_lag_time_max_ms(lag_ms);
            broker.replication.start(&broker, link.clone());
            nodes.insert(
                id,
                Node {
                    broker,
                    link,
                    _server: server,
                    _dir: dir,
                },
            );
        }
        let cluster = Cluster {
            ctl,
            nodes,
            min_isr,
        };
        for id in 1..=n {
            cluster.heartbeat(id);
        }
        cluster
    }

    fn heartbeat(&self, id: i32) {
        let mut ctl = self.ctl.lock();
        let ctl = &mut *ctl;
        let epoch = ctl.img.broker(id).unwrap().broker_epoch;
        let req = HeartbeatRequest {
            node_id: id,
            broker_epoch: epoch,
            metadata_offset: ctl.img.last_applied as i64,
            want_fence: false,
            want_shutdown: false,
        };
        let (_, recs) = ctl.c.heartbeat(&ctl.img, ctl.now, &req).unwrap();
        ctl.commit(recs);
    }

    /// The controller's clock runs past `id`'s session while the others heartbeat: `id` is
    /// fenced and loses its leaderships and ISR memberships.
    fn expire(&self, id: i32) {
        for _ in 0..12 {
            self.ctl.lock().now += 1_000;
            for &k in self.nodes.keys() {
                if k != id {
                    self.heartbeat(k);
                }
            }
            let mut ctl = self.ctl.lock();
            let ctl = &mut *ctl;
            let recs = ctl.c.tick(&ctl.img, ctl.now);
            ctl.commit(recs);
        }
        assert!(self.ctl.lock().img.broker(id).unwrap().fenced);
    }

    /// Creates topic `t` with one partition on `replicas` (opened on each as the image says).
    fn topic(&self, replicas: Vec<i32>) -> TopicIdPartition {
        let id = {
            let mut ctl = self.ctl.lock();
            let ctl = &mut *ctl;
            let req = CreateTopicRequest {
                name: "t".into(),
                id: Uuid::from_u128(77),
                num_partitions: None,
                replication_factor: None,
                assignments: Some(vec![replicas.clone()]),
                configs: BTreeMap::new(),
            };
            let (reply, recs) = ctl.c.create_topic(&ctl.img, ctl.now, &req).unwrap();
            ctl.commit(recs);
            reply.id
        };
        let tp = TopicIdPartition {
            topic_id: id,
            partition: 0,
        };
        let state = self.state(tp);
        for r in &replicas {
            let role = if state.leader == *r {
                Role::Leader {
                    leader_epoch: state.leader_epoch,
                }
            } else {
                Role::Follower {
                    leader_id: state.leader,
                    leader_epoch: state.leader_epoch,
                }
            };
            let rm = &self.nodes[r].broker.replicas;
            let config = ReplicaConfig {
                log_config: LogConfig::default(),
                conditional: false,
            };
            let created = rm.create(id, "t", 0..1, &config, role, 0).unwrap();
            rm.install(created);
        }
        self.reconcile(tp, &replicas);
        tp
    }

    fn state(&self, tp: TopicIdPartition) -> PartitionState {
        let ctl = self.ctl.lock();
        let p = ctl.img.partition(&tp.topic_id, tp.partition).unwrap();
        PartitionState {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            min_insync_replicas: self.min_isr,
        }
    }

    /// The reconcile: the image's partition state applied on `nodes`.
    fn reconcile(&self, tp: TopicIdPartition, nodes: &[i32]) {
        let state = self.state(tp);
        for n in nodes {
            self.nodes[n]
                .broker
                .replicas
                .apply_partition_state(tp, &state)
                .unwrap();
        }
    }

    fn log_bytes(&self, node: i32, tp: TopicIdPartition) -> Vec<u8> {
        let r = self.nodes[&node].broker.replicas.get(tp).unwrap();
        let start = r.watermarks().log_start_offset;
        match r.read_for_follower(start, 64 << 20).0.unwrap() {
            Some(slice) => slice.load().unwrap(),
            None => Vec::new(),
        }
    }

    /// What the produce handler does for one partition; the error code, or the base offset.
    async fn produce(
        &self,
        node: i32,
        tp: TopicIdPartition,
        batch: &[u8],
        acks_all: bool,
    ) -> Result<i64, i16> {
        let b = &self.nodes[&node].broker;
        let r = b.replicas.get(tp).unwrap();
        if acks_all {
            r.check_acks_all().map_err(|e| e.code)?;
        }
        let a = r
            .append_as_leader(batch, crate::broker::now_ms(), None)
            .map_err(|e| e.code)?;
        r.make_durable(a.last_offset + 1)
            .await
            .map_err(|e| e.code)?;
        if r.on_local_append(r.leader_leo(true), crate::broker::now_ms()) {
            b.data_appended.notify_waiters();
        }
        if acks_all {
            match r.wait_acks_all(a.last_offset + 1) {
                AcksWait::Now(Ok(())) => {}
                AcksWait::Now(Err(code)) => return Err(code),
                AcksWait::Parked(_, rx) => {
                    let outcome = tokio::time::timeout(Duration::from_secs(10), rx)
                        .await
                        .expect("acks=all answered")
                        .unwrap();
                    if outcome.error_code() != 0 {
                        return Err(outcome.error_code());
                    }
                }
            }
        }
        Ok(a.base_offset)
    }
}

/// Waits (bounded) until `f` holds.
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A one-record batch of producer `pid` (epoch 0) at sequence `seq` (-1: no producer id).
fn batch(pid: i64, seq: i32, value: u8) -> Vec<u8> {
    let records = [8u8, 0, 0, 0, 1, 2, value, 0];
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend((49 + records.len() as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(0i16.to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.extend(1000i64.to_be_bytes());
    b.extend(1000i64.to_be_bytes());
    b.extend(pid.to_be_bytes());
    b.extend((if pid < 0 { -1i16 } else { 0 }).to_be_bytes());
    b.extend(seq.to_be_bytes());
    b.extend(1i32.to_be_bytes());
    b.extend(records);
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn hw(c: &Cluster, node: i32, tp: TopicIdPartition) -> i64 {
    c.nodes[&node]
        .broker
        .replicas
        .get(tp)
        .unwrap()
        .watermarks()
        .high_watermark
}

/// The committed ISR, sorted.
fn isr(c: &Cluster, tp: TopicIdPartition) -> Vec<i32> {
    let mut isr = c.state(tp).isr;
    isr.sort_unstable();
    isr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_copies_the_leader_and_acks_all_waits_for_the_isr() {
    let c = Cluster::new(3, 2, 30_000).await;
    let tp = c.topic(vec![1, 2, 3]);
    assert_eq!(isr(&c, tp), vec![1, 2, 3]);
    let mut last_hw = 0;
    for i in 0..20u8 {
        let base = c.produce(1, tp, &batch(-1, -1, i), true).await.unwrap();
        assert_eq!(base, i as i64);
        // acks=all answered: the HW passed the record on the leader.
        let now = hw(&c, 1, tp);
        assert!(
            now > base && now >= last_hw,
            "HW {now} after {base}, before {last_hw}"
        );
        last_hw = now;
    }
    for f in [2, 3] {
        wait_until("the follower's copy", || {
            c.log_bytes(f, tp) == c.log_bytes(1, tp)
        })
        .await;
        wait_until("the follower's HW", || hw(&c, f, tp) == 20).await;
        let r = c.nodes[&f].broker.replicas.get(tp).unwrap();
        assert_eq!(r.end_offset_for(0), (0, 20), "the follower's epoch cache");
        // A follower refuses leader-only work, with the hint.
        assert_eq!(
            r.append_as_leader(&batch(-1, -1, 0), 0, None)
                .unwrap_err()
                .code,
            6
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_below_min_isr() {
    let c = Cluster::new(2, 2, 30_000).await;
    let tp = c.topic(vec![1, 2]);
    c.produce(1, tp, &batch(-1, -1, 1), true).await.unwrap();
    // A partition state by hand: the ISR shrank to the leader alone.
    let mut state = c.state(tp);
    state.isr = vec![1];
    state.partition_epoch += 1;
    c.nodes[&1]
        .broker
        .replicas
        .apply_partition_state(tp, &state)
        .unwrap();
    assert_eq!(c.produce(1, tp, &batch(-1, -1, 2), true).await, Err(19));
    // acks=1 still appends.
    assert_eq!(c.produce(1, tp, &batch(-1, -1, 3), false).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_leaves_the_isr_and_returns_after_catching_up() {
    let c = Cluster::new(2, 1, 400).await;
    let tp = c.topic(vec![1, 2]);
    c.produce(1, tp, &batch(-1, -1, 0), true).await.unwrap();
    let leader_addr = c.ctl.lock().addrs[&1].clone();
    c.nodes[&2].link.rpc.cut_link(&leader_addr);
    c.produce(1, tp, &batch(-1, -1, 1), false).await.unwrap();
    wait_until("the ISR to shrink", || isr(&c, tp) == vec![1]).await;
    // With the ISR at the leader alone (min ISR 1), acks=all completes without the follower.
    c.produce(1, tp, &batch(-1, -1, 2), true).await.unwrap();
    c.nodes[&2].link.rpc.heal_link(&leader_addr);
    wait_until("the ISR to expand", || isr(&c, tp) == vec![1, 2]).await;
    wait_until("the follower's copy", || {
        c.log_bytes(2, tp) == c.log_bytes(1, tp)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_truncates_its_divergent_tail_and_retries_are_deduplicated() {
    let c = Cluster::new(2, 1, 30_000).await;
    let tp = c.topic(vec![1, 2]);
    // Producer 7: seq 0 replicated to both.
    assert_eq!(c.produce(1, tp, &batch(7, 0, b'a'), true).await, Ok(0));
    wait_until("the follower's copy", || {
        c.log_bytes(2, tp) == c.log_bytes(1, tp)
    })
    .await;
    // Node 1 is cut off: seq 1 reaches only its log (acks=1: never acknowledged as committed).
    let addr1 = c.ctl.lock().addrs[&1].clone();
    c.nodes[&2].link.rpc.cut_link(&addr1);
    assert_eq!(c.produce(1, tp, &batch(7, 1, b'b'), false).await, Ok(1));
    let hw1 = hw(&c, 1, tp);
    assert_eq!(hw1, 1, "seq 1 is not committed");
    // The controller fences node 1 and elects node 2 (epoch 1); only node 2 hears of it.
    c.expire(1);
    let state = c.state(tp);
    assert_eq!((state.leader, state.leader_epoch), (2, 1));
    c.reconcile(tp, &[2]);
    // The producer retries on the new leader: seq 0 is a duplicate, seq 1 is new here.
    let n2 = c.nodes[&2].broker.replicas.get(tp).unwrap();
    let dup = n2.append_as_leader(&batch(7, 0, b'a'), 0, None).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, 0);
    assert_eq!(c.produce(2, tp, &batch(7, 1, b'b'), true).await, Ok(1));
    assert_eq!(c.produce(2, tp, &batch(7, 2, b'c'), true).await, Ok(2));
    // Node 1 comes back as a follower of node 2 and truncates its epoch-0 tail (KIP-101).
    c.nodes[&2].link.rpc.heal_all();
    c.heartbeat(1);
    c.reconcile(tp, &[1]);
    let mut last = 0;
    wait_until("the old leader to converge", || {
        let now = hw(&c, 2, tp);
        assert!(
            now >= last,
            "the leader's HW moved back from {last} to {now}"
        );
        last = now;
        c.log_bytes(1, tp) == c.log_bytes(2, tp)
    })
    .await;
    let n1 = c.nodes[&1].broker.replicas.get(tp).unwrap();
    assert_eq!(
        n1.end_offset_for(0),
        (0, 1),
        "epoch 0 now ends where node 2 says"
    );
    assert_eq!(n1.end_offset_for(1), (1, 3));
    wait_until("the ISR to take node 1 back", || isr(&c, tp) == vec![1, 2]).await;
    // Node 1 leads again (epoch 2): the producer's retry of seq 2 is a duplicate there too,
    // since producer state followed the truncation and the copied batches.
    let mut state = c.state(tp);
    state.leader = 1;
    state.leader_epoch += 1;
    state.partition_epoch += 1;
    for n in [1, 2] {
        c.nodes[&n]
            .broker
            .replicas
            .apply_partition_state(tp, &state)
            .unwrap();
    }
    let dup = n1.append_as_leader(&batch(7, 2, b'c'), 0, None).unwrap();
    assert!(dup.duplicate, "{dup:?}");
    assert_eq!(dup.base_offset, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_below_the_leaders_log_start_starts_over_there() {
    let c = Cluster::new(2, 1, 400).await;
    let tp = c.topic(vec![1, 2]);
    let addr1 = c.ctl.lock().addrs[&1].clone();
    c.nodes[&2].link.rpc.cut_link(&addr1);
    for i in 0..3 {
        c.produce(1, tp, &batch(-1, -1, i), false).await.unwrap();
    }
    wait_until("the ISR to shrink", || isr(&c, tp) == vec![1]).await;
    wait_until("the HW to reach the log end", || hw(&c, 1, tp) == 3).await;
    let leader = c.nodes[&1].broker.replicas.get(tp).unwrap();
    assert_eq!(leader.delete_records_before(3).unwrap(), 3);
    c.produce(1, tp, &batch(-1, -1, 9), false).await.unwrap();
    c.nodes[&2].link.rpc.heal_all();
    let follower = c.nodes[&2].broker.replicas.get(tp).unwrap();
    wait_until("the follower to restart at the leader's log start", || {
        let m = follower.watermarks();
        m.log_start_offset == 3 && m.log_end_offset == 4
    })
    .await;
    assert_eq!(c.log_bytes(2, tp), c.log_bytes(1, tp));
    wait_until("the ISR to take node 2 back", || isr(&c, tp) == vec![1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_fetches_on_the_kafka_port_are_refused() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
    use kafka_protocol::messages::{BrokerId, FetchRequest};
    let c = Cluster::new(2, 1, 30_000).await;
    let tp = c.topic(vec![1, 2]);
    let req = FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(2))
                .with_replica_epoch(1),
        )
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(tp.topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)])]);
    let (resp, _) = crate::handlers::fetch::handle(
        &c.nodes[&1].broker,
        req,
        &crate::handlers::RequestContext::anonymous(15),
    )
    .await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 6);
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
}
