use std::collections::BTreeMap;
use std::time::Duration;

use sluice_controller::{ClusterImage, MetadataRecord};
use sluice_quorum::StateMachine;
use uuid::Uuid;

use super::*;
use crate::config::BrokerConfig;

fn register(node: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        node_id: node,
        incarnation_id: Uuid::from_u128(node as u128),
        kafka_host: "h".into(),
        kafka_port: 9092,
        cluster_addr: String::new(),
        rack: None,
        http_addr: None,
        listeners: vec![],
    }
}

/// Entries apply in order; a decision whose guard no longer holds is rejected whole (and
/// answered `rejected`); an unreadable entry changes nothing; a snapshot restores the same
/// image.
#[test]
fn state_machine_applies_rejects_and_snapshots() {
    let sm = ImageState::default();
    assert_eq!(
        sm.apply(1, &serde_json::to_vec(&vec![register(1)]).unwrap()),
        b"ok"
    );
    assert_eq!(sm.applied(), 1);
    assert!(sm.read(|i| i.broker(1).is_some_and(|b| b.broker_epoch == 1 && b.fenced)));
    // Decided against index 0: rejected whole.
    let stale = vec![MetadataRecord::Guard { based_on: 0 }, register(2)];
    assert_eq!(
        sm.apply(2, &serde_json::to_vec(&stale).unwrap()),
        b"rejected"
    );
    assert!(sm.read(|i| i.broker(2).is_none()));
    let fresh = vec![MetadataRecord::Guard { based_on: 2 }, register(2)];
    // last_applied moved to 2 with the rejected entry? Either way exactly one of the two
    // guards holds; find which and check the answer matches the image.
    let reply = sm.apply(3, &serde_json::to_vec(&fresh).unwrap());
    assert_eq!(reply == b"ok", sm.read(|i| i.broker(2).is_some()));
    assert_eq!(sm.apply(4, b"not json"), b"ok");
    assert_eq!(sm.applied(), 4);
    let snap = sm.snapshot();
    let other = ImageState::default();
    other.restore(&snap).unwrap();
    assert_eq!(other.snapshot_image(), sm.snapshot_image());
    assert!(other.restore(b"{broken").is_err());
    other.restore(&[]).unwrap();
    assert_eq!(other.snapshot_image(), ClusterImage::new());
}

/// The controller wire format round-trips.
#[test]
fn wire_round_trips() {
    let req = CtrlRequest::CreateTopic {
        name: "t".into(),
        id: Uuid::new_v4(),
        num_partitions: Some(3),
        replication_factor: Some(2),
        assignments: Some(vec![vec![1, 2], vec![2, 3], vec![3, 1]]),
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        validate_only: false,
    };
    let back: CtrlRequest = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
    assert_eq!(format!("{back:?}"), format!("{req:?}"));
    let r: WireResult = Err((41, "no".into()));
    let back: WireResult = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert_eq!(back.unwrap_err().0, 41);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node_config(dir: &std::path::Path, id: i32, voters: &BTreeMap<u64, String>) -> BrokerConfig {
    BrokerConfig {
        node_id: id,
        data_dir: dir.join(format!("n{id}")),
        cluster_addr: voters.get(&(id as u64)).cloned(),
        voters: voters.clone(),
        broker_session_timeout_ms: 3_000,
        broker_heartbeat_interval_ms: 200,
        ..BrokerConfig::default()
    }
}

/// Three voters on loopback: every node registers through the controller client (in-process
/// on the leader, RPC service 1 elsewhere) and is unfenced; a topic with RF 3 created from a
/// follower shows up with the same assignment in every image; after the leader stops, the
/// others elect a new controller that serves requests, and the stopped node's session
/// expires (fenced, its leaderships moved with bumped epochs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_register_create_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<u64, String> = (1..=3u64)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let c = node_config(dir.path(), id, &voters);
        std::fs::create_dir_all(&c.data_dir).unwrap();
        nodes.push(Cluster::open(&c, &c.data_dir).await.unwrap());
    }
    for n in &nodes {
        n.join("127.0.0.1", 9000 + n.node_id, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let runs: Vec<_> = nodes
        .iter()
        .map(|n| tokio::spawn(n.clone().run(stop_rx.clone())))
        .collect();
    let leader = nodes[0].controller_id().unwrap();
    let follower = nodes.iter().find(|n| n.node_id != leader).unwrap().clone();
    let id = Uuid::new_v4();
    let (index, _) = follower
        .request(CtrlRequest::CreateTopic {
            name: "t".into(),
            id,
            num_partitions: Some(3),
            replication_factor: Some(3),
            assignments: None,
            configs: BTreeMap::new(),
            validate_only: false,
        })
        .await
        .unwrap();
    for n in &nodes {
        n.wait_applied(index, Duration::from_secs(10)).await;
    }
    let images: Vec<_> = nodes.iter().map(|n| n.state.snapshot_image()).collect();
    let t = images[0].topic("t").unwrap().clone();
    assert_eq!(t.partitions.len(), 3);
    for p in &t.partitions {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr.len(), 3);
    }
    let leaders: std::collections::BTreeSet<_> = t.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3, "leaders spread: {leaders:?}");
    for img in &images[1..] {
        assert_eq!(img.topic("t"), Some(&t));
    }
    // Stop the controller node.
    let old = nodes.iter().position(|n| n.node_id == leader).unwrap();
    nodes[old].shutdown().await;
    runs[old].abort();
    let survivors: Vec<_> = nodes
        .iter()
        .filter(|n| n.node_id != leader)
        .cloned()
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let img = survivors[0].state.snapshot_image();
        let fenced = img.broker(leader).is_some_and(|b| b.fenced);
        let moved = img
            .topic("t")
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.leader != leader);
        if fenced && moved {
            for (p, before) in img.topic("t").unwrap().partitions.iter().zip(&t.partitions) {
                if before.leader == leader {
                    assert!(p.leader_epoch > before.leader_epoch);
                }
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not failed over: {img:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_leader = survivors[0].controller_id().unwrap();
    assert_ne!(new_leader, leader);
    survivors[1]
        .request(CtrlRequest::CreateTopic {
            name: "u".into(),
            id: Uuid::new_v4(),
            num_partitions: Some(1),
            replication_factor: Some(2),
            assignments: None,
            configs: BTreeMap::new(),
            validate_only: false,
        })
        .await
        .unwrap();
    let _ = stop_tx.send(true);
    for (i, r) in runs.into_iter().enumerate() {
        if i != old {
            let _ = r.await;
        }
    }
    for n in &survivors {
        n.shutdown().await;
    }
}
