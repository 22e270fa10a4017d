//! Consumer-group lag in time: every `LAG_SAMPLE_INTERVAL_MS` the group coordinator's node
//! samples each group's lag (committed offsets against the high watermarks, as the
//! `sluice_consumer_group_lag` metric), and keeps the last `LAG_HISTORY_SAMPLES` per group in
//! memory for `/v1/groups/{group}/lag-history` and the console's chart. Prometheus keeps the
//! long history; this is what a page shows the moment it opens, without one.
//!
//! The ring buffers are the IO-free part ([`LagHistory::record`] takes `now` and the sample);
//! [`run`] is the timer. A restart, or the coordinator moving to another node, starts the
//! history afresh.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::limits::{
    LAG_HISTORY_SAMPLES, LAG_SAMPLE_INTERVAL_MS, MAX_LAG_HISTORY_GROUPS, MAX_LAG_SERIES,
};

/// One group's lag at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub at_ms: i64,
    /// The sum over the group's committed partitions.
    pub lag: i64,
    /// The largest partition's lag.
    pub max_partition_lag: i64,
    pub partitions: u32,
}

/// The last samples of every group the node coordinates (bounded in groups and samples).
#[derive(Default)]
pub struct LagHistory {
    groups: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl LagHistory {
    /// Records one sampling round at `now`: `lags` is (group, partition lag) for every
    /// committed partition. Groups missing from the round for a whole window are forgotten;
    /// a new group beyond `MAX_LAG_HISTORY_GROUPS` is not tracked.
    pub fn record<'a>(&self, now: i64, lags: impl Iterator<Item = (&'a str, i64)>) {
        let mut round: BTreeMap<&str, Sample> = BTreeMap::new();
        for (group, lag) in lags {
            let s = round.entry(group).or_insert(Sample {
                at_ms: now,
                lag: 0,
                max_partition_lag: 0,
                partitions: 0,
            });
            s.lag = s.lag.saturating_add(lag);
            s.max_partition_lag = s.max_partition_lag.max(lag);
            s.partitions = s.partitions.saturating_add(1);
        }
        let mut groups = self.groups.lock();
        for (group, sample) in round {
            if !groups.contains_key(group) && groups.len() >= MAX_LAG_HISTORY_GROUPS {
                continue;
            }
            let ring = groups.entry(group.to_owned()).or_default();
            if ring.len() >= LAG_HISTORY_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
        let window = (LAG_HISTORY_SAMPLES as i64).saturating_mul(LAG_SAMPLE_INTERVAL_MS as i64);
        groups.retain(|_, ring| ring.back().is_some_and(|s| now - s.at_ms <= window));
    }

    /// A group's samples, oldest first (empty when it has none).
    pub fn of(&self, group: &str) -> Vec<Sample> {
        self.groups
            .lock()
            .get(group)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Each committed partition this node coordinates, with its group, topic, committed offset and
/// lag against the local replica's high watermark (partitions without a replica here are
/// left out); at most `MAX_LAG_SERIES`, whole groups only (a group cut in two would report a
/// partial sum). Shared by the sampler and the metrics scrape.
pub fn committed_lags(broker: &Broker) -> Vec<(String, String, i32, i64, i64)> {
    let mut out = Vec::new();
    'groups: for group in broker.offsets.group_ids() {
        let group_start = out.len();
        let mut committed = broker.offsets.group(&group);
        committed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut marks: Option<(String, Vec<Arc<crate::replica_manager::Replica>>)> = None;
        for (topic, partition, offset) in committed {
            if out.len() >= MAX_LAG_SERIES {
                out.truncate(group_start);
                break 'groups;
            }
            if marks.as_ref().is_none_or(|(t, _)| *t != topic) {
                let replicas = broker
                    .metadata
                    .topic(&topic)
                    .map(|t| broker.replicas.of_topic(t.id, t.partition_count))
                    .unwrap_or_default();
                marks = Some((topic.clone(), replicas));
            }
            let Some(replica) = marks
                .as_ref()
                .and_then(|(_, rs)| rs.iter().find(|r| r.index() == partition))
            else {
                continue;
            };
            let hw = replica.watermarks().high_watermark;
            let lag = hw.saturating_sub(offset.offset).max(0);
            out.push((group.clone(), topic, partition, offset.offset, lag));
        }
    }
    out
}

/// Samples every `LAG_SAMPLE_INTERVAL_MS` until `stop` (first at once).
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(LAG_SAMPLE_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Only the group coordinator holds committed offsets.
        if broker.offsets.check().is_err() {
            continue;
        }
        let lags = committed_lags(&broker);
        broker
            .lag_history
            .record(now_ms(), lags.iter().map(|l| (l.0.as_str(), l.4)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_sum_per_group_and_stay_bounded() {
        let h = LagHistory::default();
        h.record(1_000, [("a", 3), ("a", 5), ("b", 0)].into_iter());
        assert_eq!(
            h.of("a"),
            vec![Sample {
                at_ms: 1_000,
                lag: 8,
                max_partition_lag: 5,
                partitions: 2
            }]
        );
        assert_eq!(h.of("b")[0].lag, 0);
        assert!(h.of("none").is_empty());
        let step = LAG_SAMPLE_INTERVAL_MS as i64;
        for i in 1..=(LAG_HISTORY_SAMPLES as i64 + 5) {
            h.record(1_000 + i * step, [("a", i)].into_iter());
        }
        let a = h.of("a");
        assert_eq!(
            a.len(),
            LAG_HISTORY_SAMPLES,
            "the oldest samples are dropped"
        );
        assert_eq!(a.last().unwrap().lag, LAG_HISTORY_SAMPLES as i64 + 5);
        assert!(a.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert!(h.of("b").is_empty(), "b was not seen for a whole window");
    }

    #[test]
    fn new_groups_beyond_the_bound_are_not_tracked() {
        let h = LagHistory::default();
        let names: Vec<String> = (0..=MAX_LAG_HISTORY_GROUPS)
            .map(|i| format!("g{i}"))
            .collect();
        h.record(1, names.iter().map(|n| (n.as_str(), 1)));
        let tracked = names.iter().filter(|n| !h.of(n).is_empty()).count();
        assert_eq!(tracked, MAX_LAG_HISTORY_GROUPS);
    }
}
