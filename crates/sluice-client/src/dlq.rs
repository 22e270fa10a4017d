//! Dead-letter queues of share groups: reading them, the bookkeeping of which dead letters are
//! handled, and redrive (requeue to the origin, or discard) — shared by `sluice dlq` and the
//! broker's HTTP API (`/v1/dlqs`), so both do exactly the same thing (BRIEF §5).
//!
//! A dead letter is a record in its group's DLQ topic (`dlq.<group>` unless the group config
//! `errors.deadletterqueue.topic.name` names another) carrying the origin in `__dlq.errors.*`
//! headers. Which dead letters were already requeued or discarded is recorded as commits of the
//! consumer group `sluice-dlq` on each DLQ partition ([`HandledOffsets`]); the broker's
//! `sluice_dlq_depth` metric reads the same commits, so the depth shown here and the metric
//! agree.
//!
//! A requeue never writes a dead letter twice: it skips handled ones, and after every produced
//! batch it records that batch as handled, so an interrupted redrive resumes where it stopped.
//! (The one window left is between a batch's acknowledgement and its commit: a crash exactly
//! there requeues that batch again on the next run — at least once, as Kafka's tools are.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use sluice_share::dlq::{
    DLQ_PREFIX, DLQ_TOPIC, H_DELIVERY_COUNT, H_GROUP, H_OFFSET, H_PARTITION, H_REASON, H_TIMESTAMP,
    H_TOPIC,
};
use sluice_share::{HandledOffsets, DLQ_TOOL_GROUP};

use crate::client::{lossy, EARLIEST};
use crate::now_ms;
use crate::records::ProduceRecord;
use crate::{Client, Compression, Record};

/// The prefix of the headers the broker adds to a dead letter.
pub const ERRORS_HEADER_PREFIX: &str = "__dlq.errors.";
/// Added to a requeued record: `<dlq topic>:<partition>:<offset>` it came back from.
pub const H_REQUEUED_FROM: &str = "__dlq.requeued.from";
/// The broker refuses commit metadata longer than this (Kafka's `offset.metadata.max.bytes`).
pub const MAX_COMMIT_METADATA: usize = 4096;
/// Bound on one Produce request's record bytes during a requeue.
const PRODUCE_MAX_BYTES: usize = 512 * 1024;
const FETCH_MAX_BYTES: i32 = 1 << 20;
const FETCH_WAIT: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Dead letters and their bookkeeping

/// Where a dead letter came from (its `__dlq.errors.{topic,partition,offset}` headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
}

/// A DLQ record with its dead-letter headers read.
#[derive(Debug, Clone)]
pub struct Letter {
    /// DLQ partition.
    pub partition: i32,
    pub record: Record,
    pub origin: Option<Origin>,
    pub group: Option<String>,
    pub reason: Option<String>,
    pub delivery_count: Option<i64>,
    /// When it was dead-lettered (ms).
    pub dead_lettered_ms: Option<i64>,
}

fn header_text<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.headers
        .get(name.as_bytes())
        .and_then(|v| v.as_deref())
        .and_then(|b| std::str::from_utf8(b).ok())
}

fn header_num<T: std::str::FromStr>(r: &Record, name: &str) -> Option<T> {
    header_text(r, name).and_then(|s| s.trim().parse().ok())
}

impl Letter {
    fn new(partition: i32, record: Record) -> Letter {
        let origin = match (
            header_text(&record, H_TOPIC),
            header_num::<i32>(&record, H_PARTITION),
        ) {
            (Some(t), Some(p)) if !t.is_empty() && p >= 0 => Some(Origin {
                topic: t.to_owned(),
                partition: p,
                offset: header_num(&record, H_OFFSET),
            }),
            _ => None,
        };
        Letter {
            partition,
            origin,
            group: header_text(&record, H_GROUP).map(str::to_owned),
            reason: header_text(&record, H_REASON).map(str::to_owned),
            delivery_count: header_num(&record, H_DELIVERY_COUNT),
            dead_lettered_ms: header_num(&record, H_TIMESTAMP),
            record,
        }
    }

    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    /// `topic:partition:offset`, or `?` when the headers do not say.
    pub fn origin_text(&self) -> String {
        match &self.origin {
            Some(o) => format!(
                "{}:{}:{}",
                o.topic,
                o.partition,
                o.offset.map_or_else(|| "?".to_owned(), |x| x.to_string())
            ),
            None => "?".into(),
        }
    }

    fn approximate_size(&self) -> usize {
        let headers: usize = self
            .record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
            .sum();
        self.record.key.as_ref().map_or(0, Bytes::len)
            + self.record.value.as_ref().map_or(0, Bytes::len)
            + headers
            + 32
    }
}

/// The record to write back to the origin: key, value and original timestamp, the original
/// headers without the dead-letter ones, plus where it was requeued from.
pub fn requeue_record(dlq_topic: &str, letter: &Letter) -> (i64, ProduceRecord) {
    let r = &letter.record;
    let mut headers: Vec<(String, Option<Bytes>)> = r
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(ERRORS_HEADER_PREFIX) && **k != *H_REQUEUED_FROM)
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    headers.push((
        H_REQUEUED_FROM.to_owned(),
        Some(Bytes::from(format!(
            "{dlq_topic}:{}:{}",
            letter.partition, r.offset
        ))),
    ));
    let timestamp = if r.timestamp >= 0 {
        r.timestamp
    } else {
        now_ms()
    };
    (
        timestamp,
        ProduceRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
        },
    )
}

/// One DLQ partition: its log bounds and which of its dead letters are handled.
#[derive(Debug, Clone)]
pub struct PartState {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub handled: HandledOffsets,
}

impl PartState {
    pub fn depth(&self) -> i64 {
        self.handled.unhandled_between(self.start, self.end)
    }

    pub fn total(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    /// The lowest offset at or after the log start that is not handled.
    pub fn first_unhandled(&self) -> i64 {
        self.handled.next_unhandled(self.start).min(self.end)
    }
}

/// The handled offsets committed for `topic`'s `partitions` (none committed: nothing handled).
async fn fetch_handled(
    c: &mut Client,
    coordinator: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, HandledOffsets>> {
    let committed = c
        .fetch_offsets(coordinator, DLQ_TOOL_GROUP, Some((topic, partitions)))
        .await
        .with_context(|| format!("reading which dead letters of {topic} are handled"))?;
    Ok(committed
        .into_iter()
        .filter(|o| o.topic == topic)
        .map(|o| {
            (
                o.partition,
                HandledOffsets::decode(o.offset, o.metadata.as_deref()),
            )
        })
        .collect())
}

pub async fn part_states(
    c: &mut Client,
    coordinator: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<PartState>> {
    let bounds = c
        .offset_bounds(topic, partitions)
        .await
        .with_context(|| format!("reading the offsets of {topic}"))?;
    let mut handled = fetch_handled(c, coordinator, topic, partitions).await?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let (start, end) = bounds.get(&p).copied().unwrap_or((0, 0));
            let start = start.max(0);
            PartState {
                partition: p,
                start,
                end: end.max(start),
                handled: handled.remove(&p).unwrap_or_default(),
            }
        })
        .collect())
}

/// Records `state`'s handled offsets (merged with whatever was committed meanwhile).
async fn commit_handled(
    c: &mut Client,
    coordinator: &str,
    topic: &str,
    state: &mut PartState,
) -> anyhow::Result<()> {
    let p = state.partition;
    if let Some(theirs) = fetch_handled(c, coordinator, topic, &[p]).await?.get(&p) {
        state.handled.merge(theirs);
    }
    // Offsets retention removed are gone: count them handled so the metadata stays small.
    state.handled.mark_below(state.start);
    let (offset, metadata) = state.handled.encode();
    c.commit_offsets_with_metadata(
        coordinator,
        DLQ_TOOL_GROUP,
        -1,
        "",
        &[(topic.to_owned(), p, offset, Some(metadata))],
    )
    .await
    .with_context(|| {
        format!(
            "recording handled dead letters of {topic}-{p} (as commits of group {DLQ_TOOL_GROUP})"
        )
    })
}

/// Reads one DLQ partition from an offset up to an end, a chunk per fetch.
struct Scanner {
    topic: String,
    partition: i32,
    pos: i64,
    end: i64,
}

impl Scanner {
    fn new(topic: &str, partition: i32, from: i64, end: i64) -> Self {
        Scanner {
            topic: topic.to_owned(),
            partition,
            pos: from,
            end,
        }
    }

    /// The next records in `[pos, end)` in offset order; `None` once past the end.
    async fn next(&mut self, c: &mut Client) -> anyhow::Result<Option<Vec<Record>>> {
        let mut max_bytes = FETCH_MAX_BYTES;
        let mut retries = 0;
        let what = || format!("reading {}-{}", self.topic, self.partition);
        while self.pos < self.end {
            let request = [(self.topic.clone(), self.partition, self.pos)];
            let fetched = c
                .fetch(&request, FETCH_WAIT, max_bytes)
                .await
                .with_context(what)?;
            let Some(part) = fetched
                .into_iter()
                .find(|p| p.topic == self.topic && p.partition == self.partition)
            else {
                bail!(
                    "the broker did not answer a fetch of {}-{}",
                    self.topic,
                    self.partition
                );
            };
            match part.error_code {
                0 => {}
                // OFFSET_OUT_OF_RANGE: retention removed records meanwhile; go on from the start.
                1 => {
                    let start = c
                        .list_offsets(&self.topic, &[self.partition], EARLIEST)
                        .await?
                        .get(&self.partition)
                        .map_or(-1, |x| x.0);
                    if start > self.pos {
                        self.pos = start;
                        continue;
                    }
                    bail!(
                        "offset {} of {}-{} is out of range",
                        self.pos,
                        self.topic,
                        self.partition
                    );
                }
                // Leadership moving or stale metadata: the client forgot the leader; retry.
                3 | 5 | 6 | 74 | 75 if retries < 25 => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                code => crate::error::check(code, None, what)?,
            }
            let last_seen = part.records.last().map(|r| r.offset);
            let records: Vec<Record> = part
                .records
                .into_iter()
                .filter(|r| r.offset >= self.pos && r.offset < self.end)
                .collect();
            if let Some(last) = records.last() {
                self.pos = last.offset + 1;
                return Ok(Some(records));
            }
            if last_seen.is_some() || part.high_watermark <= self.pos {
                // Nothing left before the end (a gap, or the log is shorter than it was).
                self.pos = self.end;
            } else if max_bytes < 64 << 20 {
                // A batch larger than the fetch size: ask for more.
                max_bytes *= 4;
            } else {
                bail!(
                    "cannot read {}-{} at offset {}: the broker returns no records there",
                    self.topic,
                    self.partition,
                    self.pos
                );
            }
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Which DLQ

/// The configured DLQ topic of `group`: `Ok(None)` when dead-lettering is turned off. A broker
/// without group configs gets Sluice's default, dlq.<group>.
pub async fn configured_dlq(c: &mut Client, group: &str) -> anyhow::Result<Option<String>> {
    match c.describe_group_configs(group).await {
        Ok(entries) => Ok(match entries.into_iter().find(|e| e.name == DLQ_TOPIC) {
            Some(e) => e.value.filter(|v| !v.is_empty()),
            None => Some(format!("{DLQ_PREFIX}{group}")),
        }),
        Err(crate::Error::Kafka { .. }) => Ok(Some(format!("{DLQ_PREFIX}{group}"))),
        Err(e) => Err(e).with_context(|| format!("reading the configs of group {group}")),
    }
}

/// The DLQ topic a command works on, its group if known, and its partitions.
pub struct Dlq {
    pub topic: String,
    pub group: Option<String>,
    pub partitions: Vec<i32>,
}

pub async fn resolve(c: &mut Client, target: &Target) -> anyhow::Result<Dlq> {
    let (topic, group) = match target {
        Target::Group(g) => match configured_dlq(c, g).await? {
            Some(t) => (t, Some(g.clone())),
            None => bail!(
                "group {g} has dead-lettering turned off ({DLQ_TOPIC} is empty), so it has no DLQ; \
                 name a DLQ topic with --topic"
            ),
        },
        Target::Topic(t) => (
            t.clone(),
            t.strip_prefix(DLQ_PREFIX)
                .filter(|g| !g.is_empty())
                .map(str::to_owned),
        ),
    };
    let md = c
        .metadata(Some(std::slice::from_ref(&topic)), false)
        .await?;
    let info = md.topics.into_iter().find(|t| t.name == topic);
    let Some(info) = info.filter(|t| t.error_code == 0) else {
        let whose = match target {
            Target::Group(g) => {
                format!(" (group {g} has no dead letters yet, or no group is called {g})")
            }
            Target::Topic(_) => String::new(),
        };
        bail!("DLQ topic {topic} does not exist{whose}; `sluice dlq list` shows the DLQ topics");
    };
    let mut partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    partitions.sort_unstable();
    Ok(Dlq {
        topic,
        group,
        partitions,
    })
}

pub struct ListRow {
    pub topic: String,
    pub groups: Vec<String>,
    pub partitions: usize,
    pub depth: i64,
    pub total: i64,
    pub oldest_ms: Option<i64>,
}

async fn list_row(
    c: &mut Client,
    coordinator: &str,
    md: &crate::client::ClusterMetadata,
    topic: &str,
    groups: Vec<String>,
) -> anyhow::Result<ListRow> {
    let partitions: Vec<i32> = md
        .topics
        .iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.iter().map(|p| p.partition).collect())
        .unwrap_or_default();
    let states = part_states(c, coordinator, topic, &partitions).await?;
    let mut oldest: Option<i64> = None;
    for s in states.iter().filter(|s| s.depth() > 0) {
        if let Some(t) = oldest_unhandled(c, topic, s).await? {
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    Ok(ListRow {
        topic: topic.to_owned(),
        groups,
        partitions: partitions.len(),
        depth: states.iter().map(PartState::depth).sum(),
        total: states.iter().map(PartState::total).sum(),
        oldest_ms: oldest,
    })
}

/// When the first unhandled dead letter of a partition was dead-lettered (its header; the
/// record's timestamp when the header is missing).
async fn oldest_unhandled(
    c: &mut Client,
    topic: &str,
    state: &PartState,
) -> anyhow::Result<Option<i64>> {
    let mut scan = Scanner::new(topic, state.partition, state.first_unhandled(), state.end);
    while let Some(records) = scan.next(c).await? {
        if let Some(r) = records
            .into_iter()
            .find(|r| !state.handled.is_handled(r.offset))
        {
            let t = header_num(&r, H_TIMESTAMP).unwrap_or(r.timestamp);
            return Ok((t >= 0).then_some(t));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Requeue,
    Discard,
}

impl Action {
    /// `requeue` or `discard`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Requeue => "requeue",
            Action::Discard => "discard",
        }
    }

    pub fn past(self) -> &'static str {
        match self {
            Action::Requeue => "requeued",
            Action::Discard => "discarded",
        }
    }
}

/// What a requeue or discard did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// How many dead letters the redrive set out to handle.
    pub planned: u64,
    pub done: u64,
    /// Chosen (or in range, with --all) but already handled.
    pub skipped: u64,
    /// With --offset: the offsets skipped as already handled.
    pub skipped_offsets: Vec<(i32, i64)>,
    /// Requeued records per origin topic.
    pub to: BTreeMap<String, u64>,
}

pub fn verb(action: Action) -> &'static str {
    match action {
        Action::Requeue => "requeueing from",
        Action::Discard => "discarding from",
    }
}

/// Origin topics' partition counts, looked up once each.
#[derive(Default)]
struct OriginCheck {
    partitions: BTreeMap<String, i32>,
}

impl OriginCheck {
    /// Why `letter` cannot be requeued, if it cannot.
    async fn problem(&mut self, c: &mut Client, letter: &Letter) -> anyhow::Result<Option<String>> {
        let Some(o) = &letter.origin else {
            return Ok(Some(format!(
                "dead letter {} has no origin headers ({H_TOPIC}, {H_PARTITION})",
                letter.offset()
            )));
        };
        let n = match self.partitions.get(&o.topic) {
            Some(n) => *n,
            None => {
                let n = match c.topic(&o.topic).await {
                    Ok(t) => t.partitions.len() as i32,
                    Err(crate::Error::Kafka { code: 3, .. }) => 0,
                    Err(e) => {
                        return Err(e).with_context(|| format!("looking up topic {}", o.topic))
                    }
                };
                self.partitions.insert(o.topic.clone(), n);
                n
            }
        };
        Ok(if n == 0 {
            Some(format!(
                "dead letter {} came from topic {}, which does not exist",
                letter.offset(),
                o.topic
            ))
        } else if o.partition >= n {
            Some(format!(
                "dead letter {} came from {} partition {}, which does not exist ({} has {n})",
                letter.offset(),
                o.topic,
                o.partition,
                o.topic
            ))
        } else {
            None
        })
    }
}

/// Fails naming every chosen dead letter that cannot go back to its origin.
async fn check_origins(c: &mut Client, topic: &str, letters: &[Letter]) -> anyhow::Result<()> {
    let mut check = OriginCheck::default();
    let mut problems = Vec::new();
    for l in letters {
        if let Some(p) = check.problem(c, l).await? {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        bail!(
            "nothing requeued from {topic}: {}; recreate the origin, or `sluice dlq discard` those",
            problems.join("; ")
        );
    }
    Ok(())
}

/// Reads the dead letters at `wanted` offsets of one partition; fails naming the offsets that
/// are not in the DLQ.
async fn read_offsets(
    c: &mut Client,
    topic: &str,
    state: &PartState,
    wanted: &BTreeSet<i64>,
) -> anyhow::Result<Vec<Letter>> {
    let mut found: BTreeMap<i64, Record> = BTreeMap::new();
    let mut next = wanted.range(state.start..state.end).next().copied();
    while let Some(from) = next {
        let mut scan = Scanner::new(topic, state.partition, from, state.end);
        let Some(records) = scan.next(c).await? else {
            break;
        };
        let last = records.last().map_or(from, |r| r.offset);
        for r in records {
            if wanted.contains(&r.offset) {
                found.insert(r.offset, r);
            }
        }
        next = wanted.range(last + 1..state.end).next().copied();
    }
    let missing: Vec<i64> = wanted
        .iter()
        .filter(|o| !found.contains_key(o))
        .copied()
        .collect();
    if !missing.is_empty() {
        let holds = if state.end > state.start {
            format!("it holds offsets {}-{}", state.start, state.end - 1)
        } else {
            "it is empty".to_owned()
        };
        bail!(
            "{} {} not in {topic}-{} ({holds}); `sluice dlq show` lists the dead letters; \
             nothing was changed",
            offsets_text(&missing),
            if missing.len() == 1 { "is" } else { "are" },
            state.partition
        );
    }
    Ok(found
        .into_values()
        .map(|r| Letter::new(state.partition, r))
        .collect())
}

/// Requeues (or discards) one batch of one DLQ partition and records it as handled: one
/// Produce per origin partition (bounded in bytes), each followed by its commit.
#[allow(clippy::too_many_arguments)]
async fn handle_batch(
    c: &mut Client,
    coordinator: &str,
    topic: &str,
    state: &mut PartState,
    batch: Vec<Letter>,
    action: Action,
    origins: &mut OriginCheck,
    outcome: &mut Outcome,
    progress: &(dyn Progress + Sync),
) -> anyhow::Result<()> {
    // Someone else may have handled some of these meanwhile (another `sluice dlq` run).
    let p = state.partition;
    if let Some(theirs) = fetch_handled(c, coordinator, topic, &[p]).await?.get(&p) {
        state.handled.merge(theirs);
    }
    let (batch, raced): (Vec<Letter>, Vec<Letter>) = batch
        .into_iter()
        .partition(|l| !state.handled.is_handled(l.offset()));
    outcome.skipped += raced.len() as u64;
    progress.advance(raced.len() as u64);
    if batch.is_empty() {
        return Ok(());
    }
    if action == Action::Discard {
        for l in &batch {
            state.handled.mark(l.offset());
        }
        commit_handled(c, coordinator, topic, state).await?;
        outcome.done += batch.len() as u64;
        progress.advance(batch.len() as u64);
        return Ok(());
    }
    for l in &batch {
        if let Some(problem) = origins.problem(c, l).await? {
            bail!(
                "{problem}; recreate the origin, or `sluice dlq discard --offset {}` it",
                l.offset()
            );
        }
    }
    // Per origin partition, in DLQ order; cut where a Produce request would grow too big.
    let mut groups: Vec<((String, i32), Vec<&Letter>)> = Vec::new();
    for l in &batch {
        let Some(o) = &l.origin else { continue };
        let key = (o.topic.clone(), o.partition);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ls)) => ls.push(l),
            None => groups.push((key, vec![l])),
        }
    }
    for ((origin_topic, origin_partition), letters) in groups {
        let mut chunk: Vec<&Letter> = Vec::new();
        let mut bytes = 0;
        for (i, l) in letters.iter().enumerate() {
            chunk.push(l);
            bytes += l.approximate_size();
            let last = i + 1 == letters.len();
            if !last && bytes < PRODUCE_MAX_BYTES {
                continue;
            }
            let records: Vec<(i64, ProduceRecord)> =
                chunk.iter().map(|l| requeue_record(topic, l)).collect();
            c.produce_timed(&origin_topic, origin_partition, &records, Compression::None)
                .await
                .with_context(|| format!("writing to {origin_topic}-{origin_partition}"))?;
            for l in &chunk {
                state.handled.mark(l.offset());
            }
            commit_handled(c, coordinator, topic, state).await?;
            outcome.done += chunk.len() as u64;
            *outcome.to.entry(origin_topic.clone()).or_default() += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
            chunk.clear();
            bytes = 0;
        }
    }
    Ok(())
}

/// Which DLQ a command names: a share group's, or a topic outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Group(String),
    Topic(String),
}

// ---------------------------------------------------------------------------------------------
// list

/// Every DLQ topic (those named `dlq.*`, and those share groups are configured to use) with
/// its depth; problems with single groups or topics come back as warnings.
pub async fn list_rows(c: &mut Client) -> anyhow::Result<(Vec<ListRow>, Vec<String>)> {
    let md = c.metadata(None, false).await?;
    let existing: BTreeSet<String> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| t.name.clone())
        .collect();
    let mut warnings = Vec::new();
    // DLQ topic -> the share groups configured to use it.
    let mut configured: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let groups = c.list_groups_of_types(&["share"]).await?;
    for g in groups
        .iter()
        .filter(|g| g.group_type.as_deref().unwrap_or(&g.protocol_type) == "share")
    {
        match configured_dlq(c, &g.group_id).await {
            Ok(Some(t)) => configured.entry(t).or_default().push(g.group_id.clone()),
            Ok(None) => {}
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    let mut topics: BTreeSet<String> = existing
        .iter()
        .filter(|t| t.starts_with(DLQ_PREFIX))
        .cloned()
        .collect();
    topics.extend(configured.keys().filter(|t| existing.contains(*t)).cloned());
    let coordinator = c.find_coordinator(DLQ_TOOL_GROUP).await?;
    let mut rows = Vec::new();
    for topic in topics {
        let groups = configured.get(&topic).cloned().unwrap_or_else(|| {
            topic
                .strip_prefix(DLQ_PREFIX)
                .filter(|g| !g.is_empty())
                .map(|g| vec![g.to_owned()])
                .unwrap_or_default()
        });
        match list_row(c, &coordinator, &md, &topic, groups).await {
            Ok(row) => rows.push(row),
            Err(e) => warnings.push(format!("skipping {topic}: {e:#}")),
        }
    }
    Ok((rows, warnings))
}

impl ListRow {
    /// How long ago the oldest unhandled dead letter was dead-lettered.
    pub fn age_ms(&self, now: i64) -> Option<i64> {
        self.oldest_ms.map(|t| (now - t).max(0))
    }

    /// The row as JSON (`sluice dlq list --output json`, `GET /v1/dlqs`).
    pub fn json(&self, now: i64) -> Value {
        json!({
            "topic": self.topic,
            "group": (!self.groups.is_empty()).then(|| self.groups.join(",")),
            "groups": self.groups,
            "partitions": self.partitions,
            "depth": self.depth,
            "total": self.total,
            "handled": self.total - self.depth,
            "oldest_dead_lettered_ms": self.oldest_ms,
            "oldest_age_ms": self.age_ms(now),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// show

/// What [`select`] read: the DLQ's depth and total, and the dead letters chosen with whether
/// each is handled.
pub struct Selection {
    pub depth: i64,
    pub total: i64,
    pub letters: Vec<(Letter, bool)>,
}

/// The unhandled dead letters of `dlq` (with `all`, the handled ones too), at most `limit`
/// (0: no limit) and, after the first, about `max_bytes` of keys, values and headers, in
/// partition and offset order.
pub async fn select(
    c: &mut Client,
    dlq: &Dlq,
    all: bool,
    limit: u64,
    max_bytes: usize,
) -> anyhow::Result<Selection> {
    let coordinator = c.find_coordinator(DLQ_TOOL_GROUP).await?;
    let states = part_states(c, &coordinator, &dlq.topic, &dlq.partitions).await?;
    let limit = if limit == 0 { u64::MAX } else { limit };
    let mut letters: Vec<(Letter, bool)> = Vec::new();
    let mut bytes = 0usize;
    'partitions: for s in &states {
        let from = if all { s.start } else { s.first_unhandled() };
        let mut scan = Scanner::new(&dlq.topic, s.partition, from, s.end);
        while let Some(records) = scan.next(c).await? {
            for r in records {
                let handled = s.handled.is_handled(r.offset);
                if handled && !all {
                    continue;
                }
                if letters.len() as u64 >= limit || (!letters.is_empty() && bytes >= max_bytes) {
                    break 'partitions;
                }
                let letter = Letter::new(s.partition, r);
                bytes = bytes.saturating_add(letter.approximate_size());
                letters.push((letter, handled));
            }
        }
    }
    Ok(Selection {
        depth: states.iter().map(PartState::depth).sum(),
        total: states.iter().map(PartState::total).sum(),
        letters,
    })
}

impl Letter {
    /// The dead letter as JSON (`sluice dlq show --output json`, `GET /v1/dlqs/{topic}/records`):
    /// origin and reason from its headers, the other headers, key and value as text.
    pub fn json(&self, handled: bool, now: i64) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .record
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with(ERRORS_HEADER_PREFIX))
            .map(|(k, v)| (k.to_string(), json!(lossy(v))))
            .collect();
        json!({
            "partition": self.partition,
            "offset": self.offset(),
            "handled": handled,
            "origin": self.origin.as_ref().map(|o| json!({
                "topic": o.topic,
                "partition": o.partition,
                "offset": o.offset,
            })),
            "group": self.group,
            "reason": self.reason,
            "delivery_count": self.delivery_count,
            "dead_lettered_ms": self.dead_lettered_ms,
            "age_ms": self.dead_lettered_ms.map(|t| (now - t).max(0)),
            "timestamp": self.record.timestamp,
            "key": lossy(&self.record.key),
            "value": lossy(&self.record.value),
            "headers": headers,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// requeue and discard

/// What a redrive is told: which dead letters, how many per batch.
#[derive(Debug, Clone)]
pub struct Redrive {
    pub action: Action,
    /// The DLQ partition (needed with `offsets` when the DLQ has several).
    pub partition: Option<i32>,
    /// Chosen offsets; empty: every unhandled dead letter.
    pub offsets: BTreeSet<i64>,
    /// Dead letters per produced batch; each batch is recorded as handled once written.
    pub batch_size: usize,
    /// Requeue at most this many dead letters a second (SQS's redrive "velocity"), so a large
    /// redrive does not flood the original topics' consumers; `None`: as fast as it goes.
    /// Discards write nothing to the original topics and are never paced.
    pub max_per_second: Option<u32>,
}

/// Spaces a redrive's batches so it handles at most `rate` dead letters a second.
struct Pacer {
    started: std::time::Instant,
    rate: Option<u32>,
}

impl Pacer {
    /// Waits until `done` dead letters are within the rate (before the next batch).
    async fn wait(&mut self, done: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(done as f64 / f64::from(rate));
        let elapsed = self.started.elapsed();
        let slack = Duration::from_secs(1);
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        } else if elapsed > due + slack {
            // Behind after a stall (a leader moving, a slow broker): forget all but a second of
            // it, so the redrive does not burst to catch up on the consumers it is pacing for.
            self.started += elapsed - due - slack;
        }
    }
}

/// Told how far a redrive got: first how many dead letters it will handle, then each step.
pub trait Progress {
    fn planned(&self, n: u64);
    fn advance(&self, n: u64);
}

/// A redrive that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn planned(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Requeues or discards dead letters of `dlq`; stops after the batch in flight once `stop` is
/// set. Returns what was done, and the error that ended it early, if one did (what was done
/// before it is recorded as handled: the same call again continues).
pub async fn redrive(
    c: &mut Client,
    dlq: &Dlq,
    req: &Redrive,
    stop: &AtomicBool,
    progress: &(dyn Progress + Sync),
) -> (Outcome, anyhow::Result<()>) {
    let mut outcome = Outcome::default();
    let result = redrive_into(c, dlq, req, stop, progress, &mut outcome).await;
    (outcome, result)
}

async fn redrive_into(
    c: &mut Client,
    dlq: &Dlq,
    req: &Redrive,
    stop: &AtomicBool,
    progress: &(dyn Progress + Sync),
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let topic = dlq.topic.clone();
    let action = req.action;
    let partitions: Vec<i32> = match req.partition {
        Some(p) if dlq.partitions.contains(&p) => vec![p],
        Some(p) => bail!(
            "{topic} has no partition {p} (it has {}); leave out the partition",
            dlq.partitions.len()
        ),
        None if !req.offsets.is_empty() && dlq.partitions.len() > 1 => bail!(
            "{topic} has {} partitions; say which one the offsets are in (--partition)",
            dlq.partitions.len()
        ),
        None => dlq.partitions.clone(),
    };
    let coordinator = c.find_coordinator(DLQ_TOOL_GROUP).await?;
    let mut states = part_states(c, &coordinator, &topic, &partitions).await?;

    // With chosen offsets: read and check every chosen dead letter before anything is written.
    let mut chosen: Option<Vec<Letter>> = None;
    if !req.offsets.is_empty() {
        let state = states.first().context("the DLQ topic has no partitions")?;
        let letters = read_offsets(c, &topic, state, &req.offsets).await?;
        let mut todo = Vec::new();
        for l in letters {
            if state.handled.is_handled(l.offset()) {
                outcome.skipped += 1;
                outcome.skipped_offsets.push((l.partition, l.offset()));
            } else {
                todo.push(l);
            }
        }
        if action == Action::Requeue {
            check_origins(c, &topic, &todo).await?;
        }
        let mut after = state.handled.clone();
        for l in &todo {
            after.mark(l.offset());
        }
        let size = after.encode().1.len();
        if size > MAX_COMMIT_METADATA {
            bail!(
                "recording these offsets as handled needs {size} bytes of commit metadata, more \
                 than the broker keeps ({MAX_COMMIT_METADATA}): choose fewer scattered offsets \
                 (contiguous runs are cheap), or handle the older ones first"
            );
        }
        chosen = Some(todo);
    }

    let planned: u64 = match &chosen {
        Some(todo) => todo.len() as u64,
        None => states.iter().map(|s| s.depth().max(0) as u64).sum(),
    };
    if chosen.is_none() {
        outcome.skipped = states
            .iter()
            .map(|s| (s.total() - s.depth()).max(0) as u64)
            .sum();
    }
    outcome.planned = planned;
    progress.planned(planned);
    let mut origins = OriginCheck::default();
    let mut pacer = Pacer {
        started: std::time::Instant::now(),
        rate: req.max_per_second.filter(|_| action == Action::Requeue),
    };
    // A paced batch is at most one second's worth, so the pace is even.
    let batch_size = match pacer.rate {
        Some(rate) => req.batch_size.min(rate as usize),
        None => req.batch_size,
    }
    .max(1);
    match chosen {
        Some(todo) => {
            let state = states
                .first_mut()
                .context("the DLQ topic has no partitions")?;
            for batch in todo.chunks(batch_size) {
                pacer.wait(outcome.done).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let batch = batch.to_vec();
                handle_batch(
                    c,
                    &coordinator,
                    &topic,
                    state,
                    batch,
                    action,
                    &mut origins,
                    outcome,
                    progress,
                )
                .await?;
            }
        }
        None if action == Action::Discard => {
            // Everything up to the end seen at the start: no need to read the records.
            for s in &mut states {
                let before = s.depth();
                if before == 0 {
                    continue;
                }
                s.handled.mark_below(s.end);
                commit_handled(c, &coordinator, &topic, s).await?;
                outcome.done += before.max(0) as u64;
                progress.advance(before.max(0) as u64);
            }
        }
        None => {
            'partitions: for s in &mut states {
                let mut scan = Scanner::new(&topic, s.partition, s.first_unhandled(), s.end);
                let mut pending: Vec<Letter> = Vec::new();
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break 'partitions;
                    }
                    let next = scan.next(c).await?;
                    let finished = next.is_none();
                    for r in next.unwrap_or_default() {
                        if !s.handled.is_handled(r.offset) {
                            pending.push(Letter::new(s.partition, r));
                        }
                    }
                    while pending.len() >= batch_size || (finished && !pending.is_empty()) {
                        let rest = pending.split_off(pending.len().min(batch_size));
                        let batch = std::mem::replace(&mut pending, rest);
                        pacer.wait(outcome.done).await;
                        if stop.load(Ordering::SeqCst) {
                            break 'partitions;
                        }
                        handle_batch(
                            c,
                            &coordinator,
                            &topic,
                            s,
                            batch,
                            action,
                            &mut origins,
                            outcome,
                            progress,
                        )
                        .await?;
                        if stop.load(Ordering::SeqCst) {
                            break 'partitions;
                        }
                    }
                    if finished {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `offset 4`, `offsets 1, 2, 5-9` (runs folded; long lists cut short).
pub fn offsets_text(offsets: &[i64]) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &o in offsets {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == o => *last = o,
            _ => runs.push((o, o)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(10)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if runs.len() > 10 {
        parts.push("…".into());
    }
    let noun = if offsets.len() == 1 {
        "offset"
    } else {
        "offsets"
    };
    format!("{noun} {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{build_batch, decode_fetched};

    fn dead_letter(headers: &[(&str, &str)], extra: &[(&str, &str)]) -> Record {
        let mut hs: Vec<(String, Option<Bytes>)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some(Bytes::from((*v).to_owned()))))
            .collect();
        hs.extend(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some(Bytes::from((*v).to_owned())))),
        );
        let batch = build_batch(
            &[ProduceRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: hs,
            }],
            Compression::None,
            1_700_000_000_000,
        )
        .unwrap();
        decode_fetched(batch).unwrap().remove(0)
    }

    #[test]
    fn reads_the_dead_letter_headers() {
        let r = dead_letter(
            &[
                (H_TOPIC, "orders"),
                (H_PARTITION, "2"),
                (H_OFFSET, "41"),
                (H_GROUP, "g"),
                (H_DELIVERY_COUNT, "5"),
                (H_REASON, "delivery_limit"),
                (H_TIMESTAMP, "1700000001000"),
            ],
            &[("trace", "abc")],
        );
        let l = Letter::new(0, r);
        assert_eq!(
            l.origin,
            Some(Origin {
                topic: "orders".into(),
                partition: 2,
                offset: Some(41)
            })
        );
        assert_eq!(l.origin_text(), "orders:2:41");
        assert_eq!(l.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(l.delivery_count, Some(5));
        assert_eq!(l.dead_lettered_ms, Some(1_700_000_001_000));

        let (ts, back) = requeue_record("dlq.g", &l);
        assert_eq!(ts, 1_700_000_000_000, "the original CreateTime");
        assert_eq!(back.key.as_deref(), Some(&b"k"[..]));
        let names: Vec<&str> = back.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["trace", H_REQUEUED_FROM]);
        assert_eq!(back.headers[1].1.as_deref(), Some(&b"dlq.g:0:0"[..]));

        let bare = Letter::new(0, dead_letter(&[(H_TOPIC, "orders")], &[]));
        assert_eq!(bare.origin, None, "a partition header is needed too");
        assert_eq!(bare.origin_text(), "?");
    }

    #[test]
    fn merges_handled_sets() {
        let mut mine = HandledOffsets::default();
        mine.mark(5);
        let mut theirs = HandledOffsets::default();
        theirs.mark_below(3);
        theirs.mark(4);
        theirs.mark(9);
        mine.merge(&theirs);
        assert_eq!(mine.below, 3);
        assert!([0, 2, 4, 5, 9].iter().all(|o| mine.is_handled(*o)));
        assert!(!mine.is_handled(3) && !mine.is_handled(7));
        mine.mark(3);
        assert_eq!(
            mine.below, 6,
            "a filled hole folds into the committed offset"
        );
    }

    #[test]
    fn first_unhandled_skips_handled_runs() {
        let mut handled = HandledOffsets::default();
        handled.mark_below(2);
        handled.mark(4);
        handled.mark(5);
        let s = PartState {
            partition: 0,
            start: 4,
            end: 10,
            handled,
        };
        assert_eq!(s.first_unhandled(), 6);
        assert_eq!(s.depth(), 4);
        assert_eq!(s.total(), 6);
    }
}
