//! Moving a consumer group's committed offsets on one topic — what
//! `kafka-consumer-groups.sh --reset-offsets` does. Shared by `sluice group reset-offsets` and
//! the broker's HTTP API (`POST /v1/groups/{group}/offsets/reset`), so a plan is computed the
//! same way wherever it is asked for (BRIEF §2).
//!
//! A reset is planned first ([`Client::plan_offset_reset`]: per partition the committed offset
//! and where it would move), then applied only when asked ([`Client::apply_offset_reset`]);
//! without that it is a dry run, as Kafka's tool is without `--execute`.

use std::collections::BTreeMap;

use crate::client::CommittedOffset;
use crate::error::Error;
use crate::Client;

/// Where a reset moves each partition's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// This offset, clamped to the partition's start and end.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the end when there is
    /// none.
    Timestamp(i64),
    /// The committed offset (the log end when nothing is committed) moved by this much,
    /// clamped to the partition's start and end.
    Shift(i64),
}

/// One partition of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRow {
    pub partition: i32,
    /// `None`: the group has committed nothing on the partition.
    pub current: Option<i64>,
    pub new: i64,
}

/// A reset plan for one group on one topic, every partition of the topic in order.
#[derive(Debug, Clone)]
pub struct ResetPlan {
    pub group: String,
    pub topic: String,
    /// The group coordinator's address, where the plan is applied.
    pub coordinator: String,
    pub rows: Vec<ResetRow>,
}

/// Why a reset cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Kafka's tool refuses too: a member would overwrite the new offsets with its next commit
    /// (and the coordinator refuses an admin commit while the group has members).
    #[error(
        "cannot reset offsets of group {group}: it has {members} active member(s) (state \
         {state}); offsets can only be reset while the group is inactive, so stop its \
         consumers first"
    )]
    ActiveMembers {
        group: String,
        members: usize,
        state: String,
    },
    #[error(transparent)]
    Client(#[from] Error),
}

impl Client {
    /// Plans moving `group`'s committed offsets on every partition of `topic`; changes
    /// nothing. Refused while the group has members. A group that has never committed (and has
    /// no members) can be planned, and applying the plan creates its offsets, as Kafka's tool
    /// does.
    pub async fn plan_offset_reset(
        &mut self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<ResetPlan, ResetError> {
        let coordinator = self.find_coordinator(group).await?;
        let desc = self.describe_group(&coordinator, group).await?;
        if !desc.members.is_empty() {
            return Err(ResetError::ActiveMembers {
                group: group.to_owned(),
                members: desc.members.len(),
                state: desc.state,
            });
        }
        let info = self.topic(topic).await?;
        let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        let bounds = self.offset_bounds(topic, &partitions).await?;
        let committed: BTreeMap<i32, i64> = self
            .fetch_offsets(&coordinator, group, Some((topic, &partitions)))
            .await?
            .into_iter()
            .filter(|o: &CommittedOffset| o.offset >= 0)
            .map(|o| (o.partition, o.offset))
            .collect();
        let by_time = match to {
            ResetTo::Timestamp(ts) => Some(self.list_offsets(topic, &partitions, ts).await?),
            _ => None,
        };
        let mut rows = Vec::with_capacity(partitions.len());
        for &p in &partitions {
            let (start, end) = bounds.get(&p).copied().unwrap_or((0, 0));
            let current = committed.get(&p).copied();
            let clamp = |o: i64| o.clamp(start, end.max(start));
            let new = match to {
                ResetTo::Earliest => start,
                ResetTo::Latest => end,
                ResetTo::Offset(n) => clamp(n),
                // Kafka's tool shifts from the committed offset; with none, from the log end
                // (where a new consumer with auto.offset.reset=latest would start).
                ResetTo::Shift(n) => clamp(current.unwrap_or(end).saturating_add(n)),
                ResetTo::Timestamp(_) => {
                    // -1: no record at or after that time, so the end.
                    let found = by_time.as_ref().and_then(|m| m.get(&p)).map_or(-1, |x| x.0);
                    if found < 0 {
                        end
                    } else {
                        clamp(found)
                    }
                }
            };
            rows.push(ResetRow {
                partition: p,
                current,
                new,
            });
        }
        Ok(ResetPlan {
            group: group.to_owned(),
            topic: topic.to_owned(),
            coordinator,
            rows,
        })
    }

    /// Commits a plan's new offsets as an admin tool (generation -1, no member id), which the
    /// coordinator accepts only while the group has no members.
    pub async fn apply_offset_reset(&mut self, plan: &ResetPlan) -> crate::Result<()> {
        let offsets: Vec<(String, i32, i64)> = plan
            .rows
            .iter()
            .map(|r| (plan.topic.clone(), r.partition, r.new))
            .collect();
        self.commit_offsets(&plan.coordinator, &plan.group, -1, "", &offsets)
            .await
    }
}

/// The plan as JSON: `{"group", "topic", "executed", "offsets": [{"topic", "partition",
/// "current_offset", "new_offset"}]}` — what `sluice group reset-offsets --output json` prints
/// and the HTTP API answers.
pub fn plan_json(plan: &ResetPlan, executed: bool) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = plan
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "topic": plan.topic,
                "partition": r.partition,
                "current_offset": r.current,
                "new_offset": r.new,
            })
        })
        .collect();
    serde_json::json!({
        "group": plan.group,
        "topic": plan.topic,
        "executed": executed,
        "offsets": rows,
    })
}
