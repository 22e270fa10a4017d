//! Offset admin on share groups, wherever their state lives (DescribeShareGroupOffsets,
//! AlterShareGroupOffsets, DeleteShareGroupOffsets, group deletion).
//!
//! As in Kafka, the node that answers (the group coordinator's) does not hold the state: the
//! share coordinator has every share-partition's committed state (read here as Kafka's
//! ReadShareGroupStateSummary: no leader epoch, so it fences nobody), and each share-partition
//! lives on the leader of its user partition, which is the one to reset or drop it — its live
//! state would otherwise be written back over the change. So a change goes to that leader (in
//! process, or over the cluster RPC service 4) and runs [`apply_local`] there.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state_store::{self, StateKey};
use super::SpKey;
use crate::broker::Broker;
use crate::error::KafkaError;

/// A change made by a share-partition's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderOp {
    /// Drop these share-partitions and delete their state.
    Remove { keys: Vec<StateKey> },
    /// Set the share-partition's start offset (creating it if needed).
    Reset { key: StateKey, offset: i64 },
}

impl LeaderOp {
    /// Keys the op names (an RPC request with more than a bound is refused).
    pub fn key_count(&self) -> usize {
        match self {
            LeaderOp::Remove { keys } => keys.len(),
            LeaderOp::Reset { .. } => 1,
        }
    }
}

fn sp_key(k: &StateKey) -> SpKey {
    SpKey {
        group: Arc::from(k.group.as_str()),
        topic_id: k.topic_id,
        partition: k.partition,
    }
}

/// Every share-partition of `group` with committed state, and its start offset, from the share
/// coordinator wherever it is (retried while it moves, bounded).
pub async fn summary(broker: &Broker, group: &str) -> Result<Vec<(StateKey, i64)>, KafkaError> {
    state_store::at_coordinator(broker, |node| async move {
        match node {
            None => broker.share.coordinator.summary(group).await,
            Some(n) => super::remote::summary(broker, n, group).await,
        }
    })
    .await
}

/// Runs `op` on this node, which leads the partitions it names (a reset checks; a removal of a
/// share-partition this node does not hold deletes its state all the same — deletions are not
/// fenced).
pub async fn apply_local(broker: &Broker, op: &LeaderOp) -> Result<(), KafkaError> {
    match op {
        LeaderOp::Remove { keys } => {
            let keys: Vec<SpKey> = keys.iter().map(sp_key).collect();
            broker.share.remove(&keys).await
        }
        LeaderOp::Reset { key, offset } => {
            let settings = broker.metadata.share_settings(&key.group);
            broker
                .share
                .reset(broker, &sp_key(key), *offset, &settings)
                .await
        }
    }
}

/// The node leading the user partition of `key`: None when its topic is gone (its state is then
/// only deleted, which any node may do).
fn leader(broker: &Broker, key: &StateKey) -> Result<Option<i32>, KafkaError> {
    match broker.metadata.topic_by_id(key.topic_id) {
        None => Ok(None),
        Some(t) => broker.metadata.leader_of(&t.name, key.partition).map(Some),
    }
}

async fn apply_at(broker: &Broker, node: Option<i32>, op: &LeaderOp) -> Result<(), KafkaError> {
    match node {
        Some(n) if n != broker.config.node_id => super::remote::at_leader(broker, n, op).await,
        _ => apply_local(broker, op).await,
    }
}

/// Drops share-partitions and their state, each on its leader.
pub async fn remove(broker: &Broker, keys: &[StateKey]) -> Result<(), KafkaError> {
    let mut by_node: BTreeMap<Option<i32>, Vec<StateKey>> = BTreeMap::new();
    for k in keys {
        by_node
            .entry(leader(broker, k)?)
            .or_default()
            .push(k.clone());
    }
    for (node, keys) in by_node {
        for chunk in keys.chunks(super::remote::MAX_ADMIN_KEYS) {
            let op = LeaderOp::Remove {
                keys: chunk.to_vec(),
            };
            apply_at(broker, node, &op).await?;
        }
    }
    Ok(())
}

/// Sets a share-partition's start offset on its leader.
pub async fn reset(broker: &Broker, key: &StateKey, offset: i64) -> Result<(), KafkaError> {
    let node = leader(broker, key)?;
    let op = LeaderOp::Reset {
        key: key.clone(),
        offset,
    };
    apply_at(broker, node, &op).await
}

/// One share-partition as an operator sees it (`/v1/share-groups/{group}`, the console): where
/// it lives, how far behind it is, and its window's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    pub topic: String,
    pub partition: i32,
    /// The node holding it: the partition's leader.
    pub leader: i32,
    /// Records not yet done up to the end a share consumer may read (the last stable offset
    /// under `read_committed`).
    pub lag: i64,
    pub window: sluice_share::WindowStats,
}

/// The live share-partitions of `group` this node holds (those it leads).
pub fn stats_local(broker: &Broker, group: &str) -> Vec<PartitionStats> {
    let settings = broker.metadata.share_settings(group);
    let mut out: Vec<PartitionStats> = broker
        .share
        .handles(Some(group))
        .into_iter()
        .filter(|h| h.is_current())
        .map(|h| {
            let end = super::readable_end(&h.log, settings.read_committed);
            let (lag, window) = h.read(|sp| (sp.lag(end), sp.stats()));
            PartitionStats {
                topic: h.topic.clone(),
                partition: h.key.partition,
                leader: broker.config.node_id,
                lag,
                window,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// [`stats_local`] of every live node (in-process here, over RPC service 4 elsewhere); a node
/// that does not answer is left out and named in the second list.
pub async fn stats(broker: &Broker, group: &str) -> (Vec<PartitionStats>, Vec<i32>) {
    let nodes: Vec<i32> = broker
        .metadata
        .cluster
        .state
        .read(|img| img.live_brokers().map(|b| b.node_id).collect());
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for node in nodes {
        if node == broker.config.node_id {
            out.extend(stats_local(broker, group));
            continue;
        }
        match super::remote::stats(broker, node, group).await {
            Ok(s) => out.extend(s),
            Err(e) => {
                tracing::warn!(node, error = %e, "share-group stats from a node failed");
                missing.push(node);
            }
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    (out, missing)
}
