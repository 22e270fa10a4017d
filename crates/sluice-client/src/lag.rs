//! A consumer group's position: per partition that is committed or assigned, its committed
//! offset, log end, last stable offset and lag — what `kafka-consumer-groups.sh --describe`
//! shows. Shared by `sluice group describe` and the HTTP API.

use std::collections::BTreeMap;

use crate::client::{GroupDescription, LATEST};
use crate::error::Result;
use crate::Client;

/// One partition of a group.
#[derive(Debug, Clone)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    /// `None`: nothing committed.
    pub committed: Option<i64>,
    /// `None`: unknown (the topic is gone, or its leader did not answer).
    pub log_end: Option<i64>,
    /// The last stable offset (= log end when no transaction is open).
    pub stable_end: Option<i64>,
    /// The index in [`GroupPosition::description`]'s members of the member it is assigned to.
    pub member: Option<usize>,
}

impl PartitionPosition {
    /// Lag against the last stable offset (Kafka's consumer lag for read_committed, the
    /// default isolation of librdkafka and kafkajs): records of an open transaction are not
    /// lag yet, a consumer cannot read them. Without transactions it equals log end - offset.
    pub fn lag(&self) -> Option<i64> {
        let end = self.stable_end.or(self.log_end)?;
        self.committed.map(|c| end.saturating_sub(c).max(0))
    }
}

/// A group's description and partitions, in (topic, partition) order.
#[derive(Debug, Clone)]
pub struct GroupPosition {
    pub coordinator: String,
    pub description: GroupDescription,
    pub partitions: Vec<PartitionPosition>,
    /// Offsets that could not be read (a deleted topic, a leader away), one line each.
    pub warnings: Vec<String>,
}

impl GroupPosition {
    /// True when the coordinator knows nothing of the group.
    pub fn is_unknown(&self) -> bool {
        self.description.state == "Dead"
            && self.description.members.is_empty()
            && self.partitions.iter().all(|p| p.committed.is_none())
    }

    pub fn total_lag(&self) -> i64 {
        self.partitions
            .iter()
            .filter_map(PartitionPosition::lag)
            .sum()
    }
}

impl Client {
    /// The group's members and, per partition committed or assigned, its offsets and lag.
    pub async fn group_position(&mut self, group: &str) -> Result<GroupPosition> {
        let coordinator = self.find_coordinator(group).await?;
        let description = self.describe_group(&coordinator, group).await?;
        let committed = self.fetch_offsets(&coordinator, group, None).await?;
        let mut rows: BTreeMap<(String, i32), PartitionPosition> = BTreeMap::new();
        let blank = |topic: &str, partition| PartitionPosition {
            topic: topic.to_owned(),
            partition,
            committed: None,
            log_end: None,
            stable_end: None,
            member: None,
        };
        for o in committed.iter().filter(|o| o.offset >= 0) {
            rows.entry((o.topic.clone(), o.partition))
                .or_insert_with(|| blank(&o.topic, o.partition))
                .committed = Some(o.offset);
        }
        for (i, m) in description.members.iter().enumerate() {
            for (t, ps) in &m.assignment {
                for p in ps {
                    rows.entry((t.clone(), *p))
                        .or_insert_with(|| blank(t, *p))
                        .member = Some(i);
                }
            }
        }
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in rows.keys() {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        let mut warnings = Vec::new();
        for (t, ps) in by_topic {
            // A deleted topic can still have committed offsets: they stay, without a log end.
            for (isolation, what) in [(0i8, "log end"), (1, "last stable")] {
                match self.list_offsets_isolated(&t, &ps, LATEST, isolation).await {
                    Ok(ends) => {
                        for (p, (end, _)) in ends {
                            if let Some(r) = rows.get_mut(&(t.clone(), p)) {
                                if isolation == 0 {
                                    r.log_end = Some(end);
                                } else {
                                    r.stable_end = Some(end);
                                }
                            }
                        }
                    }
                    Err(e) => warnings.push(format!("cannot read {what} offsets of {t}: {e}")),
                }
            }
        }
        Ok(GroupPosition {
            coordinator,
            description,
            partitions: rows.into_values().collect(),
            warnings,
        })
    }
}
