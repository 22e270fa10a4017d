//! `sluice consume TOPIC`: fetch records and print them, from chosen partitions and offsets
//! or as a member of a consumer group (classic protocol, "range" assignor) that commits its
//! position periodically and on exit. Runs until `--count` records or Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sluice_client::client::{EARLIEST, LATEST};
use sluice_client::group_member::{GroupMember, HeartbeatOutcome};
use sluice_client::Client;

use super::record_format::{record_json, RecordFormat};
use super::{block_on, ClientArgs};

const FETCH_WAIT: Duration = Duration::from_millis(500);
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// Heartbeat at least this often, so a rebalance is noticed within seconds.
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read
    topic: String,
    /// Consume as a member of this consumer group (commits offsets, resumes from them)
    #[arg(short, long)]
    group: Option<String>,
    /// Start at the earliest offset (in a group: when nothing is committed)
    #[arg(long)]
    from_beginning: bool,
    /// Where to start: an offset number, `earliest` or `latest` (in a group: only
    /// earliest/latest, used when nothing is committed) [default: latest]
    #[arg(
        short,
        long,
        value_name = "N|earliest|latest",
        conflicts_with = "from_beginning"
    )]
    offset: Option<StartOffset>,
    /// Read only this partition (not with --group)
    #[arg(short, long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Exit after this many records
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// How to print each record: %t topic, %p partition, %o offset, %k key, %v value,
    /// %T timestamp ms, %h headers, %K/%S key/value length, %% percent; \n \t escapes.
    /// A newline is added unless the format ends with one.
    #[arg(short, long, default_value = "%v", value_name = "FMT")]
    format: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    At(i64),
}

impl std::str::FromStr for StartOffset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" | "beginning" => Ok(StartOffset::Earliest),
            "latest" | "end" => Ok(StartOffset::Latest),
            n => match n.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(StartOffset::At(n)),
                _ => Err(format!(
                    "expected an offset (0 or more), `earliest` or `latest`, got `{s}`"
                )),
            },
        }
    }
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    block_on(consume(args))
}

/// Where printing goes, and when to stop.
struct Sink {
    format: Option<RecordFormat>,
    out: std::io::BufWriter<std::io::Stdout>,
    printed: u64,
    limit: Option<u64>,
    /// stdout was closed (`| head`): stop quietly.
    closed: bool,
}

impl Sink {
    fn done(&self) -> bool {
        self.closed || self.limit.is_some_and(|l| self.printed >= l)
    }

    fn print(&mut self, topic: &str, partition: i32, r: &sluice_client::Record) {
        let mut line = Vec::with_capacity(64);
        match &self.format {
            Some(f) => f.render(topic, partition, r, &mut line),
            None => {
                line = record_json(topic, partition, r).to_string().into_bytes();
                line.push(b'\n');
            }
        }
        if self.out.write_all(&line).is_err() {
            self.closed = true;
        }
        self.printed += 1;
    }

    fn flush(&mut self) {
        if self.out.flush().is_err() {
            self.closed = true;
        }
    }
}

/// Set by Ctrl-C or SIGTERM; checked between fetches so no request is cut in half.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        f.store(true, Ordering::SeqCst);
    });
    flag
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let format = if args.client.json() {
        None
    } else {
        Some(RecordFormat::parse(&args.format).map_err(|e| anyhow::anyhow!("--format: {e}"))?)
    };
    if args.group.is_some() && matches!(args.offset, Some(StartOffset::At(_))) {
        anyhow::bail!(
            "--offset N cannot be used with --group (the group's committed offsets decide); \
             use `sluice group reset-offsets` to move them"
        );
    }
    let mut sink = Sink {
        format,
        out: std::io::BufWriter::new(std::io::stdout()),
        printed: 0,
        limit: args.count,
        closed: false,
    };
    if sink.done() {
        return Ok(());
    }
    let stop = stop_flag();
    let mut client = args.client.connect().await?;
    let topic = client.topic(&args.topic).await?;
    let reset = if args.from_beginning {
        StartOffset::Earliest
    } else {
        args.offset.unwrap_or(StartOffset::Latest)
    };
    match &args.group {
        None => {
            let partitions: Vec<i32> = match args.partition {
                Some(p) => {
                    if !topic.partitions.iter().any(|x| x.partition == p) {
                        anyhow::bail!(
                            "topic {} has no partition {p} (it has {})",
                            args.topic,
                            topic.partitions.len()
                        );
                    }
                    vec![p]
                }
                None => topic.partitions.iter().map(|p| p.partition).collect(),
            };
            let mut positions =
                start_positions(&mut client, &args.topic, &partitions, reset).await?;
            while !sink.done() && !stop.load(Ordering::SeqCst) {
                fetch_round(&mut client, &args.topic, &mut positions, reset, &mut sink).await?;
            }
            sink.flush();
            Ok(())
        }
        Some(group) => {
            consume_in_group(&mut client, &args.topic, group, reset, &mut sink, &stop).await
        }
    }
}

/// Resolves `start` to an offset for each partition.
async fn start_positions(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    start: StartOffset,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(match start {
        StartOffset::At(n) => partitions.iter().map(|p| (*p, n)).collect(),
        StartOffset::Earliest | StartOffset::Latest => {
            let ts = if start == StartOffset::Earliest {
                EARLIEST
            } else {
                LATEST
            };
            client
                .list_offsets(topic, partitions, ts)
                .await?
                .into_iter()
                .map(|(p, (o, _))| (p, o))
                .collect()
        }
    })
}

/// One Fetch for every partition in `positions`; prints what came back and advances the
/// positions past the printed records only (so `--count` commits exactly what was shown).
async fn fetch_round(
    client: &mut Client,
    topic: &str,
    positions: &mut BTreeMap<i32, i64>,
    reset: StartOffset,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    if positions.is_empty() {
        tokio::time::sleep(FETCH_WAIT).await;
        return Ok(());
    }
    let request: Vec<(String, i32, i64)> = positions
        .iter()
        .map(|(p, o)| (topic.to_owned(), *p, *o))
        .collect();
    let fetched = client.fetch(&request, FETCH_WAIT, FETCH_MAX_BYTES).await?;
    for part in fetched {
        match part.error_code {
            0 => {}
            1 => {
                // OFFSET_OUT_OF_RANGE: start over where the reset policy says, as consumers
                // with auto.offset.reset do; an explicit offset past the end waits at the end.
                let to = match reset {
                    StartOffset::Earliest => StartOffset::Earliest,
                    _ => StartOffset::Latest,
                };
                let fresh = start_positions(client, topic, &[part.partition], to).await?;
                let at = positions.get(&part.partition).copied().unwrap_or(-1);
                if let Some(o) = fresh.get(&part.partition) {
                    eprintln!(
                        "warning: offset {at} is out of range for {topic}-{}; continuing at {o}",
                        part.partition
                    );
                    positions.insert(part.partition, *o);
                }
                continue;
            }
            // Leadership moved or metadata is stale: the client has already forgotten the
            // leader; wait a little and fetch again.
            3 | 5 | 6 | 74 | 75 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            code => {
                sluice_client::error::check(code, None, || {
                    format!("fetch {topic}-{}", part.partition)
                })?;
            }
        }
        for r in &part.records {
            if sink.done() {
                break;
            }
            sink.print(topic, part.partition, r);
            positions.insert(part.partition, r.offset + 1);
        }
    }
    sink.flush();
    Ok(())
}

async fn consume_in_group(
    client: &mut Client,
    topic: &str,
    group: &str,
    reset: StartOffset,
    sink: &mut Sink,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut member = GroupMember::join(client, group, vec![topic.to_owned()]).await?;
    let mut positions = group_positions(client, &member, topic, group, reset).await?;
    let mut committed = positions.clone();
    let heartbeat_every = member.heartbeat_interval().min(MAX_HEARTBEAT_INTERVAL);
    let (mut last_heartbeat, mut last_commit) = (Instant::now(), Instant::now());
    let result = async {
        while !sink.done() && !stop.load(Ordering::SeqCst) {
            fetch_round(client, topic, &mut positions, reset, sink).await?;
            if last_commit.elapsed() >= COMMIT_INTERVAL && positions != committed {
                commit(client, &mut member, topic, &positions).await?;
                committed = positions.clone();
                last_commit = Instant::now();
            }
            if last_heartbeat.elapsed() >= heartbeat_every {
                last_heartbeat = Instant::now();
                if member.heartbeat(client).await? == HeartbeatOutcome::Rejoin {
                    // Commit what we printed before giving our partitions away; a failure
                    // here means the group moved on already, and the next owner re-reads.
                    if let Err(e) = commit(client, &mut member, topic, &positions).await {
                        eprintln!("warning: commit before rebalance failed: {e:#}");
                    }
                    member.rejoin(client).await?;
                    positions = group_positions(client, &member, topic, group, reset).await?;
                    committed = positions.clone();
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    sink.flush();
    // Commit and leave even after an error, so the group neither replays nor waits.
    let commit_result = if positions != committed {
        commit(client, &mut member, topic, &positions).await
    } else {
        Ok(())
    };
    let leave_result = member.leave(client).await;
    result?;
    commit_result?;
    leave_result.context("leaving the group")?;
    Ok(())
}

async fn commit(
    client: &mut Client,
    member: &mut GroupMember,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let offsets: Vec<(String, i32, i64)> = positions
        .iter()
        .map(|(p, o)| (topic.to_owned(), *p, *o))
        .collect();
    member
        .commit(client, &offsets)
        .await
        .context("committing offsets")
}

/// This member's partitions of `topic`, each starting at the committed offset, or where
/// `reset` says when nothing is committed.
async fn group_positions(
    client: &mut Client,
    member: &GroupMember,
    topic: &str,
    group: &str,
    reset: StartOffset,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let partitions: Vec<i32> = member.assignment().get(topic).cloned().unwrap_or_default();
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let coordinator = member.coordinator().to_owned();
    let committed = client
        .fetch_offsets(&coordinator, group, Some((topic, &partitions)))
        .await?;
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for p in &partitions {
        match committed
            .iter()
            .find(|c| c.partition == *p && c.offset >= 0)
        {
            Some(c) => {
                out.insert(*p, c.offset);
            }
            None => missing.push(*p),
        }
    }
    let reset = match reset {
        StartOffset::Earliest => StartOffset::Earliest,
        _ => StartOffset::Latest,
    };
    out.extend(start_positions(client, topic, &missing, reset).await?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_offsets() {
        assert_eq!("earliest".parse(), Ok(StartOffset::Earliest));
        assert_eq!("latest".parse(), Ok(StartOffset::Latest));
        assert_eq!("42".parse(), Ok(StartOffset::At(42)));
        assert!("-1".parse::<StartOffset>().is_err());
        assert!("soon".parse::<StartOffset>().is_err());
    }
}
