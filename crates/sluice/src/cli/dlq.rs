//! `sluice dlq list|show|requeue|discard`: inspect and redrive the dead letters of share groups
//! (BRIEF §5).
//!
//! A dead letter is a record in its group's DLQ topic (`dlq.<group>` unless the group config
//! `errors.deadletterqueue.topic.name` names another) carrying the origin in `__dlq.errors.*`
//! headers. Which dead letters were already requeued or discarded is recorded as commits of the
//! consumer group `sluice-dlq` on each DLQ partition ([`HandledOffsets`]); the broker's
//! `sluice_dlq_depth` metric reads the same commits, so the depth shown here and the metric
//! agree.
//!
//! `requeue` never writes a dead letter twice: it skips handled ones, and after every produced
//! batch it records that batch as handled, so an interrupted redrive resumes where it stopped.
//! (The one window left is between a batch's acknowledgement and its commit: a crash exactly
//! there requeues that batch again on the next run — at least once, as Kafka's tools are.)

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sluice_broker::group_config::{DLQ_PREFIX, DLQ_TOPIC};
use sluice_broker::share::dlq::{
    H_DELIVERY_COUNT, H_GROUP, H_OFFSET, H_PARTITION, H_REASON, H_TIMESTAMP, H_TOPIC,
};
use sluice_client::client::EARLIEST;
use sluice_client::records::ProduceRecord;
use sluice_client::{Client, Compression, Record};
use sluice_share::{HandledOffsets, DLQ_TOOL_GROUP};

use super::table::Table;
use super::{block_on, now_ms, ClientArgs};

/// The prefix of the headers the broker adds to a dead letter.
const ERRORS_HEADER_PREFIX: &str = "__dlq.errors.";
/// Added to a requeued record: `<dlq topic>:<partition>:<offset>` it came back from.
pub const H_REQUEUED_FROM: &str = "__dlq.requeued.from";
/// The broker refuses commit metadata longer than this (Kafka's `offset.metadata.max.bytes`).
const MAX_COMMIT_METADATA: usize = 4096;
/// Bound on one Produce request's record bytes during a requeue.
const PRODUCE_MAX_BYTES: usize = 512 * 1024;
const FETCH_MAX_BYTES: i32 = 1 << 20;
const FETCH_WAIT: Duration = Duration::from_millis(50);
/// A progress bar is drawn for redrives larger than this (when stderr is a terminal).
const PROGRESS_MIN: u64 = 100;
/// Key and value widths in `show`'s table (JSON prints them in full).
const KEY_WIDTH: usize = 24;
const VALUE_WIDTH: usize = 48;

#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List every DLQ topic with its group, depth (unhandled dead letters) and oldest age
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a DLQ's unhandled dead letters with their origin and reason
    Show(ShowArgs),
    /// Write dead letters back to their origin topic and partition (never the same one twice)
    Requeue(ActArgs),
    /// Mark dead letters handled without writing them anywhere
    Discard(ActArgs),
}

/// Which DLQ: the group's, or a topic named outright.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Target {
    /// The share group whose DLQ to use (its `errors.deadletterqueue.topic.name`, by default
    /// dlq.<group>)
    #[arg(short, long)]
    group: Option<String>,
    /// The DLQ topic itself
    #[arg(short, long)]
    topic: Option<String>,
}

#[derive(Args, Debug)]
struct ShowArgs {
    #[command(flatten)]
    target: Target,
    /// Include dead letters already requeued or discarded (marked as handled)
    #[arg(long)]
    all: bool,
    /// Print at most N dead letters (0: all of them)
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["offset", "all"])))]
struct ActArgs {
    #[command(flatten)]
    target: Target,
    /// The DLQ offset of a dead letter, or a range A-B (repeat, or separate with commas, for
    /// several)
    #[arg(
        long = "offset",
        value_name = "N|A-B",
        num_args = 1..,
        value_delimiter = ',',
        value_parser = parse_offsets
    )]
    offset: Vec<OffsetSpec>,
    /// Every dead letter not yet handled
    #[arg(long)]
    all: bool,
    /// The DLQ partition the offsets are in (needed only when the DLQ has several)
    #[arg(short, long)]
    partition: Option<i32>,
    /// Dead letters per produced batch; each batch is recorded as handled once written
    #[arg(long, default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    #[command(flatten)]
    client: ClientArgs,
}

/// One `--offset` value: an offset or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetSpec {
    first: i64,
    last: i64,
}

/// Bound on the offsets one range may name.
const MAX_RANGE: i64 = 1_000_000;

fn parse_offsets(s: &str) -> Result<OffsetSpec, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("expected an offset (0 or more) or a range A-B, got `{s}`"))
    };
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if last < first {
        return Err(format!("range `{s}` ends before it starts"));
    }
    if last - first >= MAX_RANGE {
        return Err(format!(
            "range `{s}` names more than {MAX_RANGE} offsets; use --all"
        ));
    }
    Ok(OffsetSpec { first, last })
}

pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            DlqCommand::List { client } => list(&client).await,
            DlqCommand::Show(args) => show(args).await,
            DlqCommand::Requeue(args) => act(args, Action::Requeue).await,
            DlqCommand::Discard(args) => act(args, Action::Discard).await,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Dead letters and their bookkeeping

/// Where a dead letter came from (its `__dlq.errors.{topic,partition,offset}` headers).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    topic: String,
    partition: i32,
    offset: Option<i64>,
}

/// A DLQ record with its dead-letter headers read.
#[derive(Debug, Clone)]
struct Letter {
    /// DLQ partition.
    partition: i32,
    record: Record,
    origin: Option<Origin>,
    group: Option<String>,
    reason: Option<String>,
    delivery_count: Option<i64>,
    /// When it was dead-lettered (ms).
    dead_lettered_ms: Option<i64>,
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

    fn offset(&self) -> i64 {
        self.record.offset
    }

    /// `topic:partition:offset`, or `?` when the headers do not say.
    fn origin_text(&self) -> String {
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
fn requeue_record(dlq_topic: &str, letter: &Letter) -> (i64, ProduceRecord) {
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
struct PartState {
    partition: i32,
    start: i64,
    end: i64,
    handled: HandledOffsets,
}

impl PartState {
    fn depth(&self) -> i64 {
        self.handled.unhandled_between(self.start, self.end)
    }

    fn total(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    /// The lowest offset at or after the log start that is not handled.
    fn first_unhandled(&self) -> i64 {
        self.handled.next_unhandled(self.start).min(self.end)
    }
}

/// Adds `other`'s handled offsets to `into` (a commit made by someone else meanwhile).
fn merge(into: &mut HandledOffsets, other: &HandledOffsets) {
    into.merge(other);
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

async fn part_states(
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
        merge(&mut state.handled, theirs);
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
                code => sluice_client::error::check(code, None, what)?,
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
async fn configured_dlq(c: &mut Client, group: &str) -> anyhow::Result<Option<String>> {
    match c.describe_group_configs(group).await {
        Ok(entries) => Ok(match entries.into_iter().find(|e| e.name == DLQ_TOPIC) {
            Some(e) => e.value.filter(|v| !v.is_empty()),
            None => Some(format!("{DLQ_PREFIX}{group}")),
        }),
        Err(sluice_client::Error::Kafka { .. }) => Ok(Some(format!("{DLQ_PREFIX}{group}"))),
        Err(e) => Err(e).with_context(|| format!("reading the configs of group {group}")),
    }
}

/// The DLQ topic a command works on, its group if known, and its partitions.
struct Dlq {
    topic: String,
    group: Option<String>,
    partitions: Vec<i32>,
}

async fn resolve(c: &mut Client, target: &Target) -> anyhow::Result<Dlq> {
    let (topic, group) = match (&target.group, &target.topic) {
        (Some(g), _) => match configured_dlq(c, g).await? {
            Some(t) => (t, Some(g.clone())),
            None => bail!(
                "group {g} has dead-lettering turned off ({DLQ_TOPIC} is empty), so it has no DLQ; \
                 name a DLQ topic with --topic"
            ),
        },
        (None, Some(t)) => (
            t.clone(),
            t.strip_prefix(DLQ_PREFIX)
                .filter(|g| !g.is_empty())
                .map(str::to_owned),
        ),
        (None, None) => bail!("say which DLQ: --group G or --topic T"),
    };
    let md = c
        .metadata(Some(std::slice::from_ref(&topic)), false)
        .await?;
    let info = md.topics.into_iter().find(|t| t.name == topic);
    let Some(info) = info.filter(|t| t.error_code == 0) else {
        let whose = match &target.group {
            Some(g) => format!(" (group {g} has no dead letters yet, or no group is called {g})"),
            None => String::new(),
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

// ---------------------------------------------------------------------------------------------
// list

struct ListRow {
    topic: String,
    groups: Vec<String>,
    partitions: usize,
    depth: i64,
    total: i64,
    oldest_ms: Option<i64>,
}

async fn list(client: &ClientArgs) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let md = c.metadata(None, false).await?;
    let existing: BTreeSet<String> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| t.name.clone())
        .collect();
    // DLQ topic -> the share groups configured to use it.
    let mut configured: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let groups = c.list_groups_of_types(&["share"]).await?;
    for g in groups
        .iter()
        .filter(|g| g.group_type.as_deref().unwrap_or(&g.protocol_type) == "share")
    {
        match configured_dlq(&mut c, &g.group_id).await {
            Ok(Some(t)) => configured.entry(t).or_default().push(g.group_id.clone()),
            Ok(None) => {}
            Err(e) => eprintln!("warning: {e:#}"),
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
        match list_row(&mut c, &coordinator, &md, &topic, groups).await {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("warning: skipping {topic}: {e:#}"),
        }
    }
    let now = now_ms();
    let age = |r: &ListRow| r.oldest_ms.map(|t| (now - t).max(0));
    if client.json() {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "topic": r.topic,
                    "group": (!r.groups.is_empty()).then(|| r.groups.join(",")),
                    "groups": r.groups,
                    "partitions": r.partitions,
                    "depth": r.depth,
                    "total": r.total,
                    "handled": r.total - r.depth,
                    "oldest_dead_lettered_ms": r.oldest_ms,
                    "oldest_age_ms": age(r),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut t = Table::new(&["TOPIC", "GROUP", "DEPTH", "HANDLED", "OLDEST-AGE"]);
    for r in &rows {
        t.row(vec![
            r.topic.clone(),
            if r.groups.is_empty() {
                "-".into()
            } else {
                r.groups.join(",")
            },
            r.depth.to_string(),
            (r.total - r.depth).to_string(),
            age(r).map_or_else(|| "-".into(), human_age),
        ]);
    }
    t.print();
    Ok(())
}

async fn list_row(
    c: &mut Client,
    coordinator: &str,
    md: &sluice_client::client::ClusterMetadata,
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

// ---------------------------------------------------------------------------------------------
// show

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut c = args.client.connect().await?;
    let dlq = resolve(&mut c, &args.target).await?;
    let coordinator = c.find_coordinator(DLQ_TOOL_GROUP).await?;
    let states = part_states(&mut c, &coordinator, &dlq.topic, &dlq.partitions).await?;
    let depth: i64 = states.iter().map(PartState::depth).sum();
    let total: i64 = states.iter().map(PartState::total).sum();
    let matching = if args.all { total } else { depth };
    let limit = if args.limit == 0 {
        u64::MAX
    } else {
        args.limit
    };
    let mut shown: Vec<(Letter, bool)> = Vec::new();
    'partitions: for s in &states {
        let from = if args.all {
            s.start
        } else {
            s.first_unhandled()
        };
        let mut scan = Scanner::new(&dlq.topic, s.partition, from, s.end);
        while let Some(records) = scan.next(&mut c).await? {
            for r in records {
                let handled = s.handled.is_handled(r.offset);
                if handled && !args.all {
                    continue;
                }
                if shown.len() as u64 >= limit {
                    break 'partitions;
                }
                shown.push((Letter::new(s.partition, r), handled));
            }
        }
    }
    let now = now_ms();
    let age = |l: &Letter| l.dead_lettered_ms.map(|t| (now - t).max(0));
    if args.client.json() {
        let letters: Vec<_> = shown
            .iter()
            .map(|(l, handled)| {
                let headers: serde_json::Map<String, serde_json::Value> = l
                    .record
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with(ERRORS_HEADER_PREFIX))
                    .map(|(k, v)| (k.to_string(), json!(lossy(v))))
                    .collect();
                json!({
                    "partition": l.partition,
                    "offset": l.offset(),
                    "handled": handled,
                    "origin": l.origin.as_ref().map(|o| json!({
                        "topic": o.topic,
                        "partition": o.partition,
                        "offset": o.offset,
                    })),
                    "group": l.group,
                    "reason": l.reason,
                    "delivery_count": l.delivery_count,
                    "dead_lettered_ms": l.dead_lettered_ms,
                    "age_ms": age(l),
                    "timestamp": l.record.timestamp,
                    "key": lossy(&l.record.key),
                    "value": lossy(&l.record.value),
                    "headers": headers,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "topic": dlq.topic,
                "group": dlq.group,
                "depth": depth,
                "total": total,
                "dead_letters": letters,
            })
        );
    } else {
        let many = dlq.partitions.len() > 1;
        let mut header = Vec::new();
        if many {
            header.push("PARTITION");
        }
        header.push("OFFSET");
        if args.all {
            header.push("HANDLED");
        }
        header.extend(["ORIGIN", "REASON", "DELIVERIES", "AGE", "KEY", "VALUE"]);
        let mut t = Table::new(&header);
        for (l, handled) in &shown {
            let mut row = Vec::new();
            if many {
                row.push(l.partition.to_string());
            }
            row.push(l.offset().to_string());
            if args.all {
                row.push(if *handled { "yes" } else { "no" }.into());
            }
            row.extend([
                l.origin_text(),
                l.reason.clone().unwrap_or_else(|| "-".into()),
                l.delivery_count
                    .map_or_else(|| "-".into(), |n| n.to_string()),
                age(l).map_or_else(|| "-".into(), human_age),
                printable(&l.record.key, KEY_WIDTH),
                printable(&l.record.value, VALUE_WIDTH),
            ]);
            t.row(row);
        }
        t.print();
        if (shown.len() as i64) < matching && limit != u64::MAX {
            eprintln!(
                "showing the first {} of {matching} dead letters; --limit N shows more (0: all)",
                shown.len()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// requeue and discard

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Requeue,
    Discard,
}

impl Action {
    fn past(self) -> &'static str {
        match self {
            Action::Requeue => "requeued",
            Action::Discard => "discarded",
        }
    }
}

/// What a requeue or discard did.
#[derive(Debug, Default)]
struct Outcome {
    done: u64,
    /// Chosen (or in range, with --all) but already handled.
    skipped: u64,
    /// With --offset: the offsets skipped as already handled.
    skipped_offsets: Vec<(i32, i64)>,
    /// Requeued records per origin topic.
    to: BTreeMap<String, u64>,
}

/// Set by Ctrl-C or SIGTERM: the redrive stops after the batch in flight, recorded as handled.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        f.store(true, Ordering::SeqCst);
    });
    flag
}

async fn act(args: ActArgs, action: Action) -> anyhow::Result<()> {
    let mut c = args.client.connect().await?;
    let dlq = resolve(&mut c, &args.target).await?;
    let topic = dlq.topic.clone();
    let partitions: Vec<i32> = match args.partition {
        Some(p) if dlq.partitions.contains(&p) => vec![p],
        Some(p) => bail!(
            "{topic} has no partition {p} (it has {}); leave out --partition",
            dlq.partitions.len()
        ),
        None if !args.offset.is_empty() && dlq.partitions.len() > 1 => bail!(
            "{topic} has {} partitions; say which one the offsets are in with --partition",
            dlq.partitions.len()
        ),
        None => dlq.partitions.clone(),
    };
    let coordinator = c.find_coordinator(DLQ_TOOL_GROUP).await?;
    let mut states = part_states(&mut c, &coordinator, &topic, &partitions).await?;
    let stop = stop_flag();
    let mut outcome = Outcome::default();

    // With --offset: read and check every chosen dead letter before anything is written.
    let mut chosen: Option<Vec<Letter>> = None;
    if !args.offset.is_empty() {
        let state = states.first().context("the DLQ topic has no partitions")?;
        let wanted: BTreeSet<i64> = args.offset.iter().flat_map(|r| r.first..=r.last).collect();
        let letters = read_offsets(&mut c, &topic, state, &wanted).await?;
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
            check_origins(&mut c, &topic, &todo).await?;
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
    let bar = (planned > PROGRESS_MIN && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(planned);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}",
                action.past()
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut origins = OriginCheck::default();
    let batch_size = usize::try_from(args.batch_size).unwrap_or(500);
    let result = async {
        match chosen {
            Some(todo) => {
                let state = states
                    .first_mut()
                    .context("the DLQ topic has no partitions")?;
                for batch in todo.chunks(batch_size) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let batch = batch.to_vec();
                    handle_batch(
                        &mut c,
                        &coordinator,
                        &topic,
                        state,
                        batch,
                        action,
                        &mut origins,
                        &mut outcome,
                        bar.as_ref(),
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
                    commit_handled(&mut c, &coordinator, &topic, s).await?;
                    outcome.done += before.max(0) as u64;
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
                        let next = scan.next(&mut c).await?;
                        let finished = next.is_none();
                        for r in next.unwrap_or_default() {
                            if !s.handled.is_handled(r.offset) {
                                pending.push(Letter::new(s.partition, r));
                            }
                        }
                        while pending.len() >= batch_size || (finished && !pending.is_empty()) {
                            let rest = pending.split_off(pending.len().min(batch_size));
                            let batch = std::mem::replace(&mut pending, rest);
                            handle_batch(
                                &mut c,
                                &coordinator,
                                &topic,
                                s,
                                batch,
                                action,
                                &mut origins,
                                &mut outcome,
                                bar.as_ref(),
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
        anyhow::Ok(())
    }
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Err(e) = result {
        let so_far = if outcome.done > 0 {
            format!(
                " ({} {} dead letters before this, recorded as handled; run the same command \
                 again to continue)",
                action.past(),
                outcome.done
            )
        } else {
            String::new()
        };
        return Err(e.context(format!("{} {topic}{so_far}", verb(action))));
    }
    print_outcome(&args, &dlq, action, &outcome);
    if stop.load(Ordering::SeqCst) && outcome.done < planned {
        bail!(
            "interrupted: {} {} of {planned} dead letters (recorded as handled); run the \
             same command again to continue",
            action.past(),
            outcome.done
        );
    }
    Ok(())
}

fn verb(action: Action) -> &'static str {
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
                    Err(sluice_client::Error::Kafka { code: 3, .. }) => 0,
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
    bar: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    // Someone else may have handled some of these meanwhile (another `sluice dlq` run).
    let p = state.partition;
    if let Some(theirs) = fetch_handled(c, coordinator, topic, &[p]).await?.get(&p) {
        merge(&mut state.handled, theirs);
    }
    let (batch, raced): (Vec<Letter>, Vec<Letter>) = batch
        .into_iter()
        .partition(|l| !state.handled.is_handled(l.offset()));
    outcome.skipped += raced.len() as u64;
    if let Some(bar) = bar {
        bar.inc(raced.len() as u64);
    }
    if batch.is_empty() {
        return Ok(());
    }
    if action == Action::Discard {
        for l in &batch {
            state.handled.mark(l.offset());
        }
        commit_handled(c, coordinator, topic, state).await?;
        outcome.done += batch.len() as u64;
        if let Some(bar) = bar {
            bar.inc(batch.len() as u64);
        }
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
            if let Some(bar) = bar {
                bar.inc(chunk.len() as u64);
            }
            chunk.clear();
            bytes = 0;
        }
    }
    Ok(())
}

fn print_outcome(args: &ActArgs, dlq: &Dlq, action: Action, o: &Outcome) {
    let skipped_offsets: Vec<i64> = o.skipped_offsets.iter().map(|x| x.1).collect();
    if args.client.json() {
        let mut v = json!({
            "topic": dlq.topic,
            "group": dlq.group,
            "skipped_already_handled": o.skipped,
        });
        v[action.past()] = json!(o.done);
        if !args.offset.is_empty() {
            v["skipped_offsets"] = json!(skipped_offsets);
        }
        if action == Action::Requeue {
            v["to"] = json!(o.to);
        }
        println!("{v}");
        return;
    }
    if o.done == 0 {
        let verb = match action {
            Action::Requeue => "requeue",
            Action::Discard => "discard",
        };
        if args.offset.is_empty() {
            println!(
                "nothing to {verb}: {} has no unhandled dead letters ({} already handled)",
                dlq.topic, o.skipped
            );
        } else {
            println!(
                "nothing to {verb}: {} of {} {} already handled",
                offsets_text(&skipped_offsets),
                dlq.topic,
                if skipped_offsets.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            );
        }
        return;
    }
    let mut line = format!(
        "{} {} dead letter{} from {}",
        action.past(),
        o.done,
        if o.done == 1 { "" } else { "s" },
        dlq.topic
    );
    if action == Action::Requeue && !o.to.is_empty() {
        let to: Vec<String> = o.to.iter().map(|(t, n)| format!("{t} ({n})")).collect();
        line.push_str(&format!(" to {}", to.join(", ")));
    }
    if o.skipped > 0 {
        line.push_str(&format!("; skipped {} already handled", o.skipped));
        if !skipped_offsets.is_empty() {
            line.push_str(&format!(" ({})", offsets_text(&skipped_offsets)));
        }
    }
    println!("{line}");
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `offset 4`, `offsets 1, 2, 5-9` (runs folded; long lists cut short).
fn offsets_text(offsets: &[i64]) -> String {
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

fn lossy(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A key or value for a table cell: control characters escaped, cut to `width` characters
/// with an ellipsis; `-` for null.
fn printable(b: &Option<Bytes>, width: usize) -> String {
    let Some(b) = b else {
        return "-".into();
    };
    let text = String::from_utf8_lossy(b);
    let mut out = String::new();
    let mut count = 0;
    for ch in text.chars() {
        let piece: String = if ch.is_control() {
            ch.escape_default().collect()
        } else {
            ch.to_string()
        };
        let n = piece.chars().count();
        if count + n > width {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        count += n;
    }
    out
}

/// `3m12s`, `2h05m`, `4d03h`: an age in milliseconds, to the two largest units.
fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_client::records::{build_batch, decode_fetched};

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
        merge(&mut mine, &theirs);
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

    #[test]
    fn parses_offsets_and_ranges() {
        assert_eq!(parse_offsets("7"), Ok(OffsetSpec { first: 7, last: 7 }));
        assert_eq!(parse_offsets("3-5"), Ok(OffsetSpec { first: 3, last: 5 }));
        assert!(parse_offsets("5-3").is_err());
        assert!(parse_offsets("-1").is_err());
        assert!(parse_offsets("x").is_err());
        assert!(parse_offsets("0-2000000").is_err());
        assert_eq!(offsets_text(&[4]), "offset 4");
        assert_eq!(offsets_text(&[1, 2, 3, 7]), "offsets 1-3, 7");
    }

    #[test]
    fn formats_ages_and_cells() {
        assert_eq!(human_age(-5), "0s");
        assert_eq!(human_age(12_400), "12s");
        assert_eq!(human_age(192_000), "3m12s");
        assert_eq!(human_age(7_500_000), "2h05m");
        assert_eq!(human_age(3 * 86_400_000 + 3_600_000), "3d01h");
        assert_eq!(printable(&None, 10), "-");
        assert_eq!(printable(&Some(Bytes::from_static(b"a\nb")), 10), "a\\nb");
        assert_eq!(
            printable(&Some(Bytes::from_static(b"abcdefghijkl")), 5),
            "abcde…"
        );
    }
}
