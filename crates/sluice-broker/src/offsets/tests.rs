//! Pending transactional offsets: visibility, commit/abort, "the most recent commit wins",
//! fencing, idempotent ends, and that every state survives a replay and a snapshot.

use super::*;
use crate::coordinator;
use crate::replica_manager::Role;

fn off(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: Some(String::new()),
        commit_timestamp_ms: 1,
    }
}

fn at(store: &OffsetStore, topic: &str, p: i32) -> Option<i64> {
    store.get("g", topic, p).map(|c| c.offset)
}

async fn txn(store: &OffsetStore, pid: i64, epoch: i16, offsets: &[(&str, i32, i64)]) {
    let offsets = offsets
        .iter()
        .map(|(t, p, o)| (t.to_string(), *p, off(*o)))
        .collect();
    store.write_txn("g", pid, epoch, offsets, 1).await.unwrap();
}

async fn plain(store: &OffsetStore, topic: &str, p: i32, o: i64) {
    store
        .write("g", vec![(topic.to_string(), p, Some(off(o)))], 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn pending_offsets_become_visible_on_commit_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    plain(&store, "t", 0, 5).await;
    txn(&store, 7, 0, &[("t", 0, 10), ("t", 1, 20)]).await;
    // Pending: OffsetFetch still sees the old offsets.
    assert_eq!(at(&store, "t", 0), Some(5));
    assert_eq!(at(&store, "t", 1), None);
    assert!(store.has_pending("g", "t", 0));
    assert!(store.has_pending("g", "t", 1));
    assert!(!store.has_pending("g", "t", 2));
    assert!(store.has_group("g"));
    // Survives a restart while pending.
    drop(store);
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    assert!(store.has_pending("g", "t", 1));
    assert_eq!(at(&store, "t", 0), Some(5));
    store.complete_txn("g", 7, 0, true, 2).await.unwrap();
    assert_eq!(at(&store, "t", 0), Some(10));
    assert_eq!(at(&store, "t", 1), Some(20));
    assert!(!store.has_pending("g", "t", 0));
    // Idempotent: a re-sent marker writes nothing and changes nothing.
    let size = store.log_size();
    store.complete_txn("g", 7, 0, true, 3).await.unwrap();
    store.complete_txn("g", 7, 0, false, 3).await.unwrap();
    assert_eq!(store.log_size(), size);
    assert_eq!(at(&store, "t", 0), Some(10));
    drop(store);
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    assert_eq!(at(&store, "t", 0), Some(10));
    assert_eq!(at(&store, "t", 1), Some(20));
    assert!(!store.has_pending("g", "t", 0));
}

#[tokio::test]
async fn abort_drops_pending_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    plain(&store, "t", 0, 5).await;
    txn(&store, 7, 3, &[("t", 0, 10)]).await;
    store.complete_txn("g", 7, 3, false, 2).await.unwrap();
    assert_eq!(at(&store, "t", 0), Some(5));
    assert!(!store.has_pending("g", "t", 0));
    // The other group's transactions are untouched by this group's marker.
    store
        .write_txn("h", 7, 3, vec![("t".into(), 0, off(9))], 1)
        .await
        .unwrap();
    store.complete_txn("g", 7, 3, true, 2).await.unwrap();
    assert!(store.has_pending("h", "t", 0));
    drop(store);
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    assert_eq!(at(&store, "t", 0), Some(5));
    assert!(!store.has_pending("g", "t", 0));
    assert!(store.has_pending("h", "t", 0));
}

#[tokio::test]
async fn the_most_recent_commit_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    // Pending first, then a plain commit of the same partition: the plain one is newer and
    // stays when the transaction commits (Kafka compares record offsets).
    txn(&store, 1, 0, &[("t", 0, 10), ("t", 1, 11)]).await;
    plain(&store, "t", 0, 50).await;
    assert_eq!(at(&store, "t", 0), Some(50));
    assert!(store.has_pending("g", "t", 0));
    store.complete_txn("g", 1, 0, true, 2).await.unwrap();
    assert_eq!(at(&store, "t", 0), Some(50));
    assert_eq!(at(&store, "t", 1), Some(11));
    // Plain first, then pending: the transactional one wins.
    plain(&store, "t", 2, 70).await;
    txn(&store, 1, 0, &[("t", 2, 7)]).await;
    store.complete_txn("g", 1, 0, true, 3).await.unwrap();
    assert_eq!(at(&store, "t", 2), Some(7));
    // Two producers on one partition: the later-logged pending offset wins whatever order
    // the transactions end in.
    txn(&store, 2, 0, &[("t", 3, 100)]).await;
    txn(&store, 3, 0, &[("t", 3, 200)]).await;
    store.complete_txn("g", 3, 0, true, 4).await.unwrap();
    store.complete_txn("g", 2, 0, true, 4).await.unwrap();
    assert_eq!(at(&store, "t", 3), Some(200));
    drop(store);
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    assert_eq!(at(&store, "t", 0), Some(50));
    assert_eq!(at(&store, "t", 1), Some(11));
    assert_eq!(at(&store, "t", 2), Some(7));
    assert_eq!(at(&store, "t", 3), Some(200));
}

#[tokio::test]
async fn fenced_and_stale_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    txn(&store, 1, 4, &[("t", 0, 10)]).await;
    // A stale marker (older epoch) decides nothing.
    store.complete_txn("g", 1, 3, true, 2).await.unwrap();
    assert!(store.has_pending("g", "t", 0));
    // TV2 / timeout abort: the marker carries a bumped epoch.
    store.complete_txn("g", 1, 5, false, 2).await.unwrap();
    assert!(!store.has_pending("g", "t", 0));
    // A late commit of the old epoch is refused, durably.
    let err = store
        .write_txn("g", 1, 4, vec![("t".into(), 0, off(12))], 3)
        .await
        .unwrap_err();
    assert_eq!(err.code, ResponseError::InvalidProducerEpoch.code());
    drop(store);
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    let err = store
        .write_txn("g", 1, 4, vec![("t".into(), 0, off(12))], 3)
        .await
        .unwrap_err();
    assert_eq!(err.code, ResponseError::InvalidProducerEpoch.code());
    // The current epoch goes through.
    txn(&store, 1, 5, &[("t", 0, 13)]).await;
    store.complete_txn("g", 1, 5, true, 4).await.unwrap();
    assert_eq!(at(&store, "t", 0), Some(13));
}

#[tokio::test]
async fn deletions_remove_pending_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    txn(&store, 1, 0, &[("t", 0, 10), ("u", 0, 10)]).await;
    store.delete_topic("t", 2).await.unwrap();
    assert!(!store.has_pending("g", "t", 0));
    assert!(store.has_pending("g", "u", 0));
    assert_eq!(store.group_ids(), vec!["g".to_string()]);
    store.delete_group("g", 3).await.unwrap();
    assert!(!store.has_group("g"));
    store.complete_txn("g", 1, 0, true, 4).await.unwrap();
    assert_eq!(at(&store, "u", 0), None);
    // Expiry keeps an offset with a pending commit.
    plain(&store, "v", 0, 1).await;
    txn(&store, 2, 0, &[("v", 0, 2)]).await;
    assert_eq!(store.expire(1_000_000, 10, |_| true).await.unwrap(), 0);
    store.complete_txn("g", 2, 0, false, 5).await.unwrap();
    assert_eq!(store.expire(1_000_000, 10, |_| true).await.unwrap(), 1);
}

#[tokio::test]
async fn snapshots_keep_pending_offsets_fences_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    store.set_compaction_min_bytes(1);
    txn(&store, 1, 0, &[("t", 0, 10)]).await;
    plain(&store, "t", 0, 50).await;
    plain(&store, "t", 1, 60).await;
    txn(&store, 2, 0, &[("t", 1, 61)]).await;
    store.complete_txn("g", 9, 7, false, 2).await.unwrap();
    // Every write above compacted the log: what is left is the last snapshot and after.
    assert!(
        store
            .loaded()
            .unwrap()
            .log
            .partition()
            .watermarks()
            .log_start_offset
            > 0
    );
    drop(store);
    let store = OffsetStore::open(dir.path(), 0).unwrap();
    assert_eq!(at(&store, "t", 0), Some(50));
    assert_eq!(at(&store, "t", 1), Some(60));
    assert!(store.has_pending("g", "t", 0));
    assert!(store.has_pending("g", "t", 1));
    let err = store
        .write_txn("g", 9, 6, vec![("t".into(), 5, off(1))], 3)
        .await
        .unwrap_err();
    assert_eq!(err.code, ResponseError::InvalidProducerEpoch.code());
    store.complete_txn("g", 1, 0, true, 4).await.unwrap();
    store.complete_txn("g", 2, 0, true, 4).await.unwrap();
    // Producer 1's offset was logged before the plain commit of 50; producer 2's after 60.
    assert_eq!(at(&store, "t", 0), Some(50));
    assert_eq!(at(&store, "t", 1), Some(61));
}

type View = (
    Vec<(String, String, i32, i64)>,
    Vec<(String, i64, i16, Vec<(String, i32, i64)>)>,
    Vec<(String, i64, i16)>,
);

/// What a state answers, without the positions; then the outcome of committing every open
/// transaction (which depends on the order the offsets were logged in).
fn view(state: &State) -> (View, View) {
    fn plain(state: &State) -> View {
        let mut groups: Vec<_> = state
            .groups
            .iter()
            .flat_map(|(g, o)| {
                o.iter()
                    .map(move |((t, p), (c, _))| (g.clone(), t.clone(), *p, c.offset))
            })
            .collect();
        groups.sort();
        let mut txns: Vec<_> = state
            .txns
            .iter()
            .flat_map(|(g, t)| {
                t.iter().map(move |(pid, txn)| {
                    let offsets = txn
                        .offsets
                        .iter()
                        .map(|((t, p), (c, _))| (t.clone(), *p, c.offset))
                        .collect();
                    (g.clone(), *pid, txn.epoch, offsets)
                })
            })
            .collect();
        txns.sort();
        let mut ended: Vec<_> = state
            .ended
            .iter()
            .flat_map(|(g, e)| e.iter().map(move |(pid, ep)| (g.clone(), *pid, *ep)))
            .collect();
        ended.sort();
        (groups, txns, ended)
    }
    let before = plain(state);
    let mut committed = State {
        groups: state.groups.clone(),
        txns: state.txns.clone(),
        ended: state.ended.clone(),
        classic: state.classic.clone(),
        consumer: state.consumer.clone(),
        share: state.share.clone(),
        seq: state.seq,
    };
    let open: Vec<(String, i64, i16)> = state
        .txns
        .iter()
        .flat_map(|(g, t)| t.iter().map(move |(pid, txn)| (g.clone(), *pid, txn.epoch)))
        .collect();
    for (g, pid, epoch) in open {
        committed.apply(
            &g,
            vec![Change::TxnEnd {
                producer_id: pid,
                producer_epoch: epoch,
                commit: true,
            }],
        );
    }
    (before, plain(&committed))
}

#[test]
fn a_snapshot_rebuilds_the_state_alone_and_over_the_history() {
    let pending = |pid: i64, epoch: i16, t: &str, p: i32, o: i64| Change::Pending {
        producer_id: pid,
        producer_epoch: epoch,
        topic: t.into(),
        partition: p,
        offset: off(o),
    };
    let plain = |t: &str, p: i32, o: Option<i64>| Change::Offset(t.into(), p, o.map(off));
    let end = |pid: i64, epoch: i16, commit: bool| Change::TxnEnd {
        producer_id: pid,
        producer_epoch: epoch,
        commit,
    };
    let group = |generation_id: i32| {
        Change::Group(Box::new(GroupRecordChange::Classic(Some(
            sluice_group::ClassicGroupRecord {
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                generation_id,
                leader_id: Some("m-1".into()),
                members: vec![sluice_group::ClassicMemberRecord {
                    member_id: "m-1".into(),
                    group_instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![sluice_group::ProtocolRecord {
                        name: "range".into(),
                        metadata: vec![0, 1, 255],
                    }],
                    assignment: vec![7, 0, 9],
                }],
            },
        ))))
    };
    let consumer = |group_epoch: i32| {
        Change::Group(Box::new(GroupRecordChange::Consumer(Some(
            sluice_group::ConsumerGroupRecord {
                group_epoch,
                assignment_epoch: group_epoch,
                assignor_name: "uniform".into(),
                topics: vec![("t".into(), [3; 16], 4)],
                members: vec![sluice_group::ConsumerMemberRecord {
                    member_id: "m-2".into(),
                    instance_id: None,
                    rack_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 30_000,
                    subscribed_topic_names: vec!["t".into()],
                    subscribed_topic_regex: None,
                    regex_topics: vec![],
                    server_assignor: None,
                    state: 0,
                    member_epoch: group_epoch,
                    previous_member_epoch: group_epoch - 1,
                    assigned: vec![([3; 16], vec![0, 1, 2, 3])],
                    pending_revocation: vec![],
                    target: vec![([3; 16], vec![0, 1, 2, 3])],
                }],
            },
        ))))
    };
    let no_consumer = || Change::Group(Box::new(GroupRecordChange::Consumer(None)));
    let share = |group_epoch: i32| {
        Change::Group(Box::new(GroupRecordChange::Share(Some(
            sluice_group::ShareGroupRecord {
                group_epoch,
                assignment_epoch: group_epoch,
                session_timeout_ms: 45_000,
                topics: vec![("t".into(), [3; 16], 4)],
                members: vec![sluice_group::ShareMemberRecord {
                    member_id: "s-1".into(),
                    rack_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    subscribed_topic_names: vec!["t".into()],
                    member_epoch: group_epoch,
                    assigned: vec![([3; 16], vec![0, 1])],
                    target: vec![([3; 16], vec![0, 1])],
                }],
            },
        ))))
    };
    let history: Vec<(&str, Change)> = vec![
        ("g", plain("t", 0, Some(1))),
        ("g", pending(1, 0, "t", 0, 10)),
        ("g", plain("t", 0, Some(2))),
        ("g", pending(2, 3, "t", 1, 20)),
        ("g", plain("t", 1, Some(3))),
        ("g", pending(3, 0, "t", 1, 30)),
        ("h", pending(1, 0, "u", 0, 40)),
        ("h", end(1, 1, false)),
        ("h", pending(1, 1, "u", 0, 41)),
        ("g", pending(4, 0, "t", 2, 50)),
        ("g", plain("t", 2, None)),
        ("g", end(9, 2, true)),
        ("g", group(3)),
        ("h", group(1)),
        ("g", group(4)),
        (
            "h",
            Change::Group(Box::new(GroupRecordChange::Classic(None))),
        ),
        ("k", consumer(2)),
        ("l", consumer(1)),
        ("k", consumer(5)),
        ("l", no_consumer()),
        ("s", share(3)),
        ("s", share(4)),
    ];
    let mut state = State::default();
    for (g, c) in history {
        state.apply(g, vec![c]);
    }
    let snapshot = state.snapshot();
    let mut alone = State::default();
    let mut over = State {
        groups: state.groups.clone(),
        txns: state.txns.clone(),
        ended: state.ended.clone(),
        classic: state.classic.clone(),
        consumer: state.consumer.clone(),
        share: state.share.clone(),
        seq: state.seq,
    };
    for (g, c) in snapshot {
        // Through the log encoding, as a replay reads it.
        let (k, v) = encode(&g, &c);
        let (g2, c2) = decode(k.as_deref(), v.as_deref()).expect("decodes");
        assert_eq!(g2, g);
        alone.apply(&g2, vec![c2.clone()]);
        over.apply(&g2, vec![c2]);
    }
    let want = view(&state);
    assert_eq!(view(&alone), want);
    assert_eq!(view(&over), want);
    // Group membership: the last record of each group, a deletion removing it.
    assert_eq!(alone.classic, state.classic);
    assert_eq!(over.classic, state.classic);
    assert_eq!(state.classic.len(), 1);
    assert_eq!(state.classic["g"].generation_id, 4);
    assert_eq!(state.classic["g"].members[0].assignment, vec![7, 0, 9]);
    assert_eq!(alone.consumer, state.consumer);
    assert_eq!(over.consumer, state.consumer);
    assert_eq!(state.consumer.len(), 1);
    assert_eq!(state.consumer["k"].members[0].member_epoch, 5);
    assert_eq!(alone.share, state.share);
    assert_eq!(over.share, state.share);
    assert_eq!(state.share["s"].group_epoch, 4);
    // The outcome itself: p1's offset on t-0 was logged before the plain 2; p3's after 3.
    let committed = &want.1 .0;
    assert!(committed.contains(&("g".into(), "t".into(), 0, 2)));
    assert!(committed.contains(&("g".into(), "t".into(), 1, 30)));
    assert!(committed.contains(&("h".into(), "u".into(), 0, 41)));
}

/// Polls `cond` every 10 ms for at most 10 s.
pub(crate) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub(crate) fn state_at(leader: i32, leader_epoch: i32) -> crate::replication::PartitionState {
    crate::replication::PartitionState {
        leader,
        leader_epoch,
        partition_epoch: leader_epoch,
        replicas: vec![1],
        isr: vec![1],
        min_insync_replicas: 1,
    }
}

/// The store follows the leadership of its replica: loaded (after replaying the log) while
/// this node leads, NOT_COORDINATOR (state dropped, writes refused) when another node leads,
/// loaded again from the log at the next leadership.
#[tokio::test]
async fn the_store_follows_the_leadership_of_its_partition() {
    use crate::replica_manager::{ReplicaConfig, ReplicaManager, TopicIdPartition};
    let dir = tempfile::tempdir().unwrap();
    let rm = ReplicaManager::new(1, dir.path());
    let tp = TopicIdPartition {
        topic_id: uuid::Uuid::new_v4(),
        partition: 0,
    };
    let config = ReplicaConfig {
        log_config: internal_log::log_config(),
        conditional: false,
    };
    let store = Arc::new(OffsetStore::new(true, Arc::new(Notify::new())));
    let changes = Arc::new(Mutex::new(Vec::new()));
    {
        let changes = changes.clone();
        store.set_on_change(Box::new(move |loaded| changes.lock().push(loaded)));
    }
    rm.register_coordinator(
        coordinator::GROUP_TOPIC,
        Arc::new(GroupCoordinatorHook(store.clone())),
    );
    rm.open(
        tp,
        coordinator::GROUP_TOPIC,
        &config,
        Role::Leader { leader_epoch: 0 },
        0,
    )
    .unwrap();
    // Not leading yet as far as the store knows: nothing is served.
    let e = store.check().unwrap_err();
    assert_eq!(e.code, ResponseError::NotCoordinator.code());
    let e = store
        .write("g", vec![("t".into(), 0, Some(off(1)))], 1)
        .await
        .unwrap_err();
    assert_eq!(e.code, ResponseError::NotCoordinator.code());

    // Leader, but the broker is not live yet: loading.
    rm.apply_partition_state(tp, &state_at(1, 0)).unwrap();
    assert_eq!(
        store.check().unwrap_err().code,
        ResponseError::CoordinatorLoadInProgress.code()
    );
    store.set_ready(Box::new(|| true));
    eventually("the first load", || store.check().is_ok()).await;
    plain(&store, "t", 0, 5).await;
    assert_eq!(at(&store, "t", 0), Some(5));

    // Another node leads: dropped at once, and writes are refused.
    rm.apply_partition_state(tp, &state_at(2, 1)).unwrap();
    assert_eq!(
        store.check().unwrap_err().code,
        ResponseError::NotCoordinator.code()
    );
    assert_eq!(at(&store, "t", 0), None);
    assert!(store.group_ids().is_empty());
    let e = store
        .write("g", vec![("t".into(), 0, Some(off(6)))], 1)
        .await
        .unwrap_err();
    assert_eq!(e.code, ResponseError::NotCoordinator.code());

    // Leading again at a newer epoch: the state is rebuilt from the log.
    rm.apply_partition_state(tp, &state_at(1, 2)).unwrap();
    eventually("the second load", || store.check().is_ok()).await;
    assert_eq!(at(&store, "t", 0), Some(5));
    plain(&store, "t", 0, 7).await;
    assert_eq!(at(&store, "t", 0), Some(7));
    // Each load and unload was reported (the broker drops its groups on `false`).
    assert_eq!(*changes.lock(), vec![true, false, true]);

    // The replica goes away: unloaded.
    rm.delete_replica(tp).unwrap();
    assert_eq!(
        store.check().unwrap_err().code,
        ResponseError::NotCoordinator.code()
    );
}

/// A data directory of the pre-cluster layout (`__consumer_offsets-0` without
/// `partition.metadata`) keeps its committed offsets: the broker adopts the directory as
/// partition 0 of the internal topic (RF 1, led here), which cannot be deleted.
#[tokio::test]
async fn an_old_offsets_log_is_adopted_as_the_internal_topic() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The old layout: the store's own log, no partition.metadata.
        let store = OffsetStore::open(dir.path(), 0).unwrap();
        plain(&store, "t", 0, 42).await;
    }
    let log_dir = dir.path().join(OFFSETS_LOG_DIR);
    assert!(crate::metadata::read_partition_metadata(&log_dir).is_none());
    // (Restarts of an adopted directory are covered by tests/python: a restart is a new
    // process, which an in-process test cannot be.)
    for start in 0..1 {
        let broker = crate::broker::Broker::open_single_for_test(dir.path()).await;
        let topic = broker.metadata.topic(coordinator::GROUP_TOPIC).unwrap();
        assert_eq!(
            crate::metadata::read_partition_metadata(&log_dir),
            Some(topic.id),
            "start {start}"
        );
        eventually("the coordinator's load", || broker.offsets.check().is_ok()).await;
        assert_eq!(broker.offsets.get("g", "t", 0).map(|c| c.offset), Some(42));
        let e = broker
            .metadata
            .delete_topic(coordinator::GROUP_TOPIC, 1)
            .await
            .unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidRequest.code());
        broker.metadata.cluster.shutdown().await;
    }
}
