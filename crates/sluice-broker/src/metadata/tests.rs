use super::*;

fn rm(dir: &Path) -> Arc<ReplicaManager> {
    Arc::new(ReplicaManager::new(1, dir))
}

/// Writes old-format events to `<dir>/__cluster_metadata-0`, as the previous version did.
async fn write_old_events(dir: &Path, events: &[Event]) {
    let log = Partition::open(
        &dir.join(METADATA_LOG_DIR),
        0,
        internal_log::log_config(),
        0,
    )
    .unwrap();
    let records: Vec<internal_log::KeyValue> = events
        .iter()
        .map(|e| (None, Some(serde_json::to_vec(e).unwrap())))
        .collect();
    internal_log::append_durably(&log, &records, 0)
        .await
        .unwrap();
}

/// A data directory of the previous version is converted on the first start: topics keep
/// their ids, partitions and (sanitized) configs and their data; the producer-id counter and
/// group configs carry over; deleted topics' leftovers are swept; the old log is gone; a
/// second start reads it all from the quorum.
#[tokio::test]
async fn migrates_an_old_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let kept = Uuid::new_v4();
    let gone = Uuid::new_v4();
    write_old_events(
        dir.path(),
        &[
            Event::TopicCreated {
                name: "kept".into(),
                id: kept,
                partitions: 1,
                configs: TopicConfigs(
                    [("segment.bytes", "14"), ("retention.ms", "5000")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            },
            Event::PartitionsCreated {
                name: "kept".into(),
                count: 2,
            },
            Event::TopicCreated {
                name: "gone".into(),
                id: gone,
                partitions: 1,
                configs: TopicConfigs::default(),
            },
            Event::TopicDeleted {
                name: "gone".into(),
                id: Some(gone),
            },
            Event::ProducerIdBlock {
                next_block_start: 5000,
            },
            Event::GroupConfigsReplaced {
                group: "g".into(),
                configs: GroupConfigs(
                    [("share.session.timeout.ms".to_string(), "50000".to_string())]
                        .into_iter()
                        .collect(),
                ),
            },
        ],
    )
    .await;
    // The old version's data of kept-0, and a leftover of the deleted topic.
    std::fs::create_dir_all(partition_dir(dir.path(), "kept", 0)).unwrap();
    std::fs::write(
        partition_dir(dir.path(), "kept", 0).join("data-marker"),
        b"x",
    )
    .unwrap();
    std::fs::create_dir_all(partition_dir(dir.path(), "gone", 0)).unwrap();

    for round in 0..2 {
        let m = Metadata::open_single(dir.path(), 100, rm(dir.path()), 0)
            .await
            .unwrap();
        assert!(!dir.path().join(METADATA_LOG_DIR).exists(), "round {round}");
        let t = m.topic("kept").unwrap();
        assert_eq!((t.id, t.partition_count), (kept, 2));
        assert_eq!(t.configs.0.get("segment.bytes"), None);
        assert_eq!(t.configs.get("retention.ms").as_deref(), Some("5000"));
        assert!(m.topic("gone").is_none());
        assert!(!partition_dir(dir.path(), "gone", 0).exists());
        assert!(partition_dir(dir.path(), "kept", 0)
            .join("data-marker")
            .exists());
        assert_eq!(
            read_partition_metadata(&partition_dir(dir.path(), "kept", 1)),
            Some(kept)
        );
        assert!(m.replicas.get(t.tp(0)).unwrap().role().is_leader());
        assert_eq!(m.replicas.len(), 2);
        assert!(!m.group_configs("g").0.is_empty());
        let pid = m.allocate_producer_id(0).await.unwrap();
        assert!(pid >= 5000, "{pid}");
        m.cluster.shutdown().await;
    }
}

/// A migration cut short (some topics already in the image, the old log still there) redoes
/// only what is missing: no topic is created twice and no partition added.
#[tokio::test]
async fn migration_redo_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    let events = [
        Event::TopicCreated {
            name: "a".into(),
            id: a,
            partitions: 2,
            configs: TopicConfigs::default(),
        },
        Event::TopicCreated {
            name: "b".into(),
            id: b,
            partitions: 1,
            configs: TopicConfigs::default(),
        },
    ];
    write_old_events(dir.path(), &events[..1]).await;
    let m = Metadata::open_single(dir.path(), 100, rm(dir.path()), 0)
        .await
        .unwrap();
    m.cluster.shutdown().await;
    drop(m);
    // As if the start crashed before removing the old log, which by then held both topics.
    write_old_events(dir.path(), &events).await;
    let m = Metadata::open_single(dir.path(), 100, rm(dir.path()), 0)
        .await
        .unwrap();
    assert_eq!(m.topic("a").unwrap().partition_count, 2);
    assert_eq!(m.topic("b").unwrap().id, b);
    assert_eq!(m.replicas.len(), 3);
    m.cluster.shutdown().await;
}

/// Topic lifecycle on a single node: create, delete, recreate under the same name (the old
/// incarnation's files never resurface), grow, reconfigure, all surviving a reopen.
#[tokio::test]
async fn topics_survive_reopen_and_incarnations_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let first_id = {
        let m = Metadata::open_single(dir.path(), 100, rm(dir.path()), 0)
            .await
            .unwrap();
        let first = m
            .create_topic("t", 2, TopicConfigs::default(), false, 0)
            .await
            .unwrap();
        std::fs::write(partition_dir(dir.path(), "t", 0).join("old"), b"x").unwrap();
        m.delete_topic("t", 0).await.unwrap();
        assert!(!partition_dir(dir.path(), "t", 0).exists());
        m.create_topic("t", 1, TopicConfigs::default(), false, 0)
            .await
            .unwrap();
        assert!(!partition_dir(dir.path(), "t", 0).join("old").exists());
        m.create_partitions("t", 3, false, 0).await.unwrap();
        let configs = TopicConfigs::from_pairs([("retention.ms", "1234")]).unwrap();
        m.replace_configs("t", configs, false, 0).await.unwrap();
        assert_eq!(m.replicas.len(), 3);
        m.cluster.shutdown().await;
        first.id
    };
    let m = Metadata::open_single(dir.path(), 100, rm(dir.path()), 0)
        .await
        .unwrap();
    let t = m.topic("t").unwrap();
    assert_ne!(t.id, first_id);
    assert_eq!(t.partition_count, 3);
    assert_eq!(t.configs.get("retention.ms").as_deref(), Some("1234"));
    assert_eq!(m.replicas.len(), 3);
    assert!(m.replicas.get(t.tp(2)).unwrap().role().is_leader());
    assert!(m.topic_by_id(first_id).is_none());
    let err = m
        .create_topic("t", 1, TopicConfigs::default(), false, 0)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, ResponseError::TopicAlreadyExists.code());
    m.cluster.shutdown().await;
}
