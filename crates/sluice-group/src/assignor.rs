//! Server-side assignors for KIP-848 consumer groups: `uniform` and `range`.
//!
//! Both are pure functions of the members' subscriptions, the partition
//! counts, and (for `uniform`) the previous target assignment.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::TopicId;

/// Partitions per topic id.
pub(crate) type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// Names accepted as `server_assignor`.
pub const SUPPORTED_ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// What an assignor knows about one member.
#[derive(Debug, Clone)]
pub(crate) struct MemberSpec {
    pub member_id: String,
    /// Subscribed topics that exist (by id).
    pub topics: BTreeSet<TopicId>,
}

/// Runs the named assignor; unknown names fall back to `uniform`.
/// Every member in `members` gets an entry (possibly empty).
pub(crate) fn assign(
    name: &str,
    members: &[MemberSpec],
    partitions: &BTreeMap<TopicId, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions, current),
    }
}

fn partition_count(partitions: &BTreeMap<TopicId, i32>, topic: &TopicId) -> i32 {
    partitions.get(topic).copied().unwrap_or(0).max(0)
}

/// Kafka's RangeAssignor shape: for each topic, its subscribers sorted by
/// member id get contiguous ranges; the first `partitions % n` get one extra.
pub(crate) fn range(
    members: &[MemberSpec],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::new()))
        .collect();
    for topic in partitions.keys() {
        let count = partition_count(partitions, topic);
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id.as_str())
            .collect();
        subs.sort_unstable();
        subs.dedup();
        let n = i32::try_from(subs.len()).unwrap_or(i32::MAX);
        if n == 0 || count == 0 {
            continue;
        }
        let per = count / n;
        let extra = count % n;
        let mut start = 0i32;
        for (i, member) in subs.iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            let len = per + i32::from(i < extra);
            if len > 0 {
                if let Some(a) = result.get_mut(*member) {
                    a.entry(*topic).or_default().extend(start..start + len);
                }
            }
            start += len;
        }
    }
    result
}

/// Balanced and sticky: members keep the partitions of their previous
/// target that are still valid, unowned partitions go to the least loaded
/// eligible member, then partitions move one at a time from a member to an
/// eligible member holding at least two fewer, until no such move exists.
/// With identical subscriptions the result differs by at most one partition
/// between members.
pub(crate) fn uniform(
    members: &[MemberSpec],
    partitions: &BTreeMap<TopicId, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut specs: Vec<&MemberSpec> = members.iter().collect();
    specs.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    specs.dedup_by(|a, b| a.member_id == b.member_id);
    let mut result: BTreeMap<String, Assignment> = specs
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::new()))
        .collect();
    let mut counts: BTreeMap<&str, usize> =
        specs.iter().map(|m| (m.member_id.as_str(), 0)).collect();
    let mut owned: BTreeSet<(TopicId, i32)> = BTreeSet::new();

    // 1. Stickiness.
    for m in &specs {
        let Some(prev) = current.get(&m.member_id) else {
            continue;
        };
        for (topic, parts) in prev {
            if !m.topics.contains(topic) {
                continue;
            }
            let count = partition_count(partitions, topic);
            for p in parts {
                if *p >= 0 && *p < count && owned.insert((*topic, *p)) {
                    if let Some(a) = result.get_mut(&m.member_id) {
                        a.entry(*topic).or_default().insert(*p);
                    }
                    if let Some(c) = counts.get_mut(m.member_id.as_str()) {
                        *c += 1;
                    }
                }
            }
        }
    }

    // 2. Unowned partitions to the least loaded eligible member.
    for topic in partitions.keys() {
        let eligible: Vec<&str> = specs
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id.as_str())
            .collect();
        if eligible.is_empty() {
            continue;
        }
        for p in 0..partition_count(partitions, topic) {
            if owned.contains(&(*topic, p)) {
                continue;
            }
            let Some(target) = least_loaded(&eligible, &counts, None) else {
                continue;
            };
            owned.insert((*topic, p));
            if let Some(a) = result.get_mut(target) {
                a.entry(*topic).or_default().insert(p);
            }
            if let Some(c) = counts.get_mut(target) {
                *c += 1;
            }
        }
    }

    // 3. Balance.
    let subscribers: BTreeMap<TopicId, Vec<&str>> = partitions
        .keys()
        .map(|t| {
            (
                *t,
                specs
                    .iter()
                    .filter(|m| m.topics.contains(t))
                    .map(|m| m.member_id.as_str())
                    .collect(),
            )
        })
        .collect();
    loop {
        let mut order: Vec<(&str, usize)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut moved = None;
        'search: for (from, from_count) in order {
            let Some(assigned) = result.get(from) else {
                continue;
            };
            for (topic, parts) in assigned.iter().rev() {
                let Some(eligible) = subscribers.get(topic) else {
                    continue;
                };
                let Some(to) = least_loaded(eligible, &counts, Some(from)) else {
                    continue;
                };
                let to_count = counts.get(to).copied().unwrap_or(0);
                if to_count + 1 < from_count {
                    if let Some(p) = parts.iter().next_back() {
                        moved = Some((from, to, *topic, *p));
                        break 'search;
                    }
                }
            }
        }
        let Some((from, to, topic, p)) = moved else {
            break;
        };
        let (from, to) = (from.to_string(), to.to_string());
        if let Some(a) = result.get_mut(&from) {
            if let Some(set) = a.get_mut(&topic) {
                set.remove(&p);
                if set.is_empty() {
                    a.remove(&topic);
                }
            }
        }
        if let Some(a) = result.get_mut(&to) {
            a.entry(topic).or_default().insert(p);
        }
        if let Some(c) = counts.get_mut(from.as_str()) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = counts.get_mut(to.as_str()) {
            *c += 1;
        }
    }
    result
}

fn least_loaded<'a>(
    eligible: &[&'a str],
    counts: &BTreeMap<&str, usize>,
    exclude: Option<&str>,
) -> Option<&'a str> {
    eligible
        .iter()
        .filter(|m| Some(**m) != exclude)
        .min_by(|a, b| {
            let ca = counts.get(**a).copied().unwrap_or(0);
            let cb = counts.get(**b).copied().unwrap_or(0);
            ca.cmp(&cb).then(a.cmp(b))
        })
        .copied()
}
