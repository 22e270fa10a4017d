//! `sluice cluster status|elect-leaders|reassign|reassignments|drain|add-voter|remove-voter|
//! unregister`: cluster operations over the Kafka protocol (DescribeCluster, Metadata,
//! ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments, AddRaftVoter,
//! RemoveRaftVoter, UnregisterBroker), so they work against any Kafka-protocol cluster.
//!
//! Moving replicas is Kafka's reassignment: the controller adds the target replicas, waits
//! until they have caught up and joined the ISR, then drops the old ones. `reassign` and
//! `drain` compute a plan (module [`plan`]: deterministic, keeps each partition's replication
//! factor, balanced by replica count, rack-aware when every broker has a rack), print it, and
//! execute it with AlterPartitionReassignments. Plans use the JSON format of Kafka's
//! `kafka-reassign-partitions.sh` (`{"version":1,"partitions":[{"topic","partition","replicas"}]}`),
//! so a plan from either tool runs in the other.
//!
//! The metadata quorum (voters, quorum leader, epoch, each voter's lag) comes from
//! DescribeQuorum (API 55), as Kafka's `kafka-metadata-quorum.sh` gets it, sent to the
//! controller (a Sluice node answers from its quorum member, and only the quorum leader knows
//! every voter's log end); [`quorum_details`] is the one place `cluster status` asks. A cluster
//! whose brokers do not offer API 55 shows no quorum section.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use sluice_client::client::ClusterMetadata;
use sluice_client::cluster::{ElectionType, Reassignment, ELECTION_NOT_NEEDED};
use sluice_client::Client;

use super::table::Table;
use super::{block_on, ClientArgs};

/// How often `drain` and `reassign --wait` poll for progress.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Default bound on `drain` and `reassign --wait` (moving replicas copies data).
const DEFAULT_WAIT_MS: u64 = 600_000;
/// Default bound on `add-voter` / `remove-voter` retries.
const DEFAULT_VOTER_WAIT_MS: u64 = 60_000;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ElectionKind {
    /// Move leadership back to each partition's preferred (first) replica
    Preferred,
    /// Elect a leader outside the ISR where no in-sync replica is alive (may lose records)
    Unclean,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Cluster id, controller, metadata quorum (when the cluster reports it), brokers (with
    /// their leader and replica counts), and the partitions without a full ISR or without a leader
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Elect partition leaders: the preferred replica (after a failover or a move), or an
    /// unclean leader for partitions whose in-sync replicas are all gone
    ElectLeaders {
        #[arg(long = "type", value_enum, default_value_t = ElectionKind::Preferred)]
        election: ElectionKind,
        /// Only this topic's partitions (default: every partition)
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move partition replicas: from a plan file (kafka-reassign-partitions.sh format) or
    /// every partition of --topic onto --to-brokers. Prints the plan; changes nothing
    /// without --execute
    Reassign {
        /// Plan file: {"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}
        #[arg(long, value_name = "FILE", conflicts_with_all = ["to_brokers", "topic"])]
        plan: Option<PathBuf>,
        /// Target brokers for every partition of --topic (keeps each replication factor)
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "ID,ID,...",
            requires = "topic"
        )]
        to_brokers: Vec<i32>,
        /// The topic to move (with --to-brokers or --cancel)
        #[arg(long)]
        topic: Option<String>,
        /// Print the plan only (the default without --execute)
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
        /// Start the reassignment
        #[arg(long)]
        execute: bool,
        /// Cancel the reassignments in progress of the plan's (or --topic's) partitions
        #[arg(long, conflicts_with_all = ["execute", "dry_run", "to_brokers"])]
        cancel: bool,
        /// With --execute: wait until the moves are complete
        #[arg(long, requires = "execute")]
        wait: bool,
        /// Bound on --wait, in milliseconds
        #[arg(long, default_value_t = DEFAULT_WAIT_MS, value_name = "MS")]
        timeout_ms: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the reassignments in progress, with the target replicas' catch-up state
    Reassignments {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move every replica off a node (keeping replication factors, balanced, rack-aware),
    /// then elect preferred leaders; waits until the node hosts nothing. The first step of
    /// removing a node: then remove-voter (if it is a voter), stop it, unregister
    Drain {
        /// The node (broker id) to empty
        node: i32,
        /// Print the plan only
        #[arg(long)]
        dry_run: bool,
        /// Bound on the wait, in milliseconds
        #[arg(long, default_value_t = DEFAULT_WAIT_MS, value_name = "MS")]
        timeout_ms: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a node a voter of the metadata quorum (AddRaftVoter). The node must be running as
    /// a non-voting member (started with --voters not naming it) and have caught up; one change
    /// at a time, refused when the new voter set would not have a majority of live brokers
    AddVoter {
        /// The node id to promote
        node: i32,
        /// How long to keep retrying while the node catches up, in milliseconds
        #[arg(long, default_value_t = DEFAULT_VOTER_WAIT_MS, value_name = "MS")]
        timeout_ms: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a voter of the metadata quorum a non-voting member (RemoveRaftVoter); it keeps
    /// serving as a broker until stopped. Refused for the last voter and when the voters left
    /// would not have a majority of live brokers. Drain the node first if it is to be removed
    RemoveVoter {
        /// The voter's node id
        node: i32,
        /// How long to keep retrying a change that timed out, in milliseconds
        #[arg(long, default_value_t = DEFAULT_VOTER_WAIT_MS, value_name = "MS")]
        timeout_ms: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forget a stopped node (UnregisterBroker): its broker registration and its place in the
    /// metadata quorum. It must host no replicas (drain it) and not be a voter (remove-voter)
    Unregister {
        /// The node id
        node: i32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            ClusterCommand::Status { client } => status(&client).await,
            ClusterCommand::ElectLeaders {
                election,
                topic,
                partition,
                client,
            } => elect(&client, election, topic, partition).await,
            ClusterCommand::Reassign {
                plan,
                to_brokers,
                topic,
                dry_run: _,
                execute,
                cancel,
                wait,
                timeout_ms,
                client,
            } => {
                reassign(
                    &client,
                    ReassignOptions {
                        plan,
                        to_brokers,
                        topic,
                        execute,
                        cancel,
                        wait,
                        timeout: Duration::from_millis(timeout_ms),
                    },
                )
                .await
            }
            ClusterCommand::Reassignments { client } => reassignments(&client).await,
            ClusterCommand::Drain {
                node,
                dry_run,
                timeout_ms,
                client,
            } => drain(&client, node, dry_run, Duration::from_millis(timeout_ms)).await,
            ClusterCommand::AddVoter {
                node,
                timeout_ms,
                client,
            } => change_voter(&client, node, true, Duration::from_millis(timeout_ms)).await,
            ClusterCommand::RemoveVoter {
                node,
                timeout_ms,
                client,
            } => change_voter(&client, node, false, Duration::from_millis(timeout_ms)).await,
            ClusterCommand::Unregister { node, client } => unregister(&client, node).await,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// add-voter, remove-voter, unregister

/// Kafka's REQUEST_TIMED_OUT: the node is still catching up, or the change's outcome is unknown.
const REQUEST_TIMED_OUT: i16 = 7;
/// Kafka's DUPLICATE_VOTER and VOTER_NOT_FOUND.
const DUPLICATE_VOTER: i16 = 126;
const VOTER_NOT_FOUND: i16 = 127;

/// AddRaftVoter / RemoveRaftVoter, retried while it times out (the node catching up, or an
/// outcome unknown) until `timeout`; after such a retry, "already a voter" / "not a voter"
/// means the earlier attempt applied.
async fn change_voter(
    args: &ClientArgs,
    node: i32,
    add: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    let deadline = Instant::now() + timeout;
    let mut retried = false;
    loop {
        let r = if add {
            c.add_raft_voter(node).await
        } else {
            c.remove_raft_voter(node).await
        };
        match r {
            Ok(()) => break,
            Err(sluice_client::Error::Kafka { code, .. })
                if retried
                    && code
                        == if add {
                            DUPLICATE_VOTER
                        } else {
                            VOTER_NOT_FOUND
                        } =>
            {
                break
            }
            Err(sluice_client::Error::Kafka { code, .. })
                if code == REQUEST_TIMED_OUT && Instant::now() < deadline =>
            {
                retried = true;
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let voters = c
        .describe_quorum()
        .await
        .ok()
        .flatten()
        .map(|q| q.voters.iter().map(|v| v.node_id).collect::<Vec<_>>());
    if args.json() {
        println!("{}", json!({"node": node, "voter": add, "voters": voters}));
    } else {
        let what = if add {
            "is now a voter"
        } else {
            "is no longer a voter"
        };
        match voters {
            Some(v) => println!("node {node} {what} of the metadata quorum; voters: {v:?}"),
            None => println!("node {node} {what} of the metadata quorum"),
        }
    }
    Ok(())
}

async fn unregister(args: &ClientArgs, node: i32) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    c.unregister_broker(node).await?;
    if args.json() {
        println!("{}", json!({"node": node, "unregistered": true}));
    } else {
        println!("node {node} unregistered");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// status

/// The metadata quorum as a cluster reports it: voters, the quorum leader, each voter's lag.
#[derive(Debug, Clone)]
pub struct QuorumDetails {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    /// (voter id, log end offset, lag behind the leader in records; `None`: unknown)
    pub voters: Vec<(i32, i64, Option<i64>)>,
    /// Non-voting replicas of the metadata log (brokers that are not controllers), same shape.
    pub observers: Vec<(i32, i64, Option<i64>)>,
}

/// The extension point of `cluster status` for the metadata quorum: DescribeQuorum (API 55).
/// `None` when the cluster does not report one (the broker lacks the API, or refuses it — the
/// rest of the status is still worth printing; the reason goes to stderr).
async fn quorum_details(client: &mut Client) -> Option<QuorumDetails> {
    match client.describe_quorum().await {
        Ok(Some(q)) => {
            let rows = |rs: &[sluice_client::cluster::QuorumReplica]| {
                rs.iter()
                    .map(|r| (r.node_id, r.log_end_offset, q.lag(r)))
                    .collect::<Vec<_>>()
            };
            Some(QuorumDetails {
                leader_id: q.leader_id,
                leader_epoch: q.leader_epoch,
                high_watermark: q.high_watermark,
                voters: rows(&q.voters),
                observers: rows(&q.observers),
            })
        }
        Ok(None) => None,
        Err(e) => {
            eprintln!("warning: cannot describe the metadata quorum: {e}");
            None
        }
    }
}

async fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    let cluster = c.describe_cluster(true).await?;
    let md = c.metadata(None, false).await?;
    let quorum = quorum_details(&mut c).await;
    let summary = health(&md);
    let live: BTreeSet<i32> = md.brokers.iter().map(|b| b.node_id).collect();
    if args.json() {
        let brokers: Vec<_> = cluster
            .brokers
            .iter()
            .map(|b| {
                let (leaders, replicas) = summary.load.get(&b.node_id).copied().unwrap_or((0, 0));
                json!({
                    "id": b.node_id,
                    "host": b.host,
                    "port": b.port,
                    "rack": b.rack,
                    "fenced": b.is_fenced,
                    "alive": live.contains(&b.node_id) && !b.is_fenced,
                    "leaders": leaders,
                    "replicas": replicas,
                })
            })
            .collect();
        let mut out = json!({
            "cluster_id": cluster.cluster_id,
            "controller": cluster.controller_id,
            "brokers": brokers,
            "partitions": summary.partitions,
            "under_replicated": summary.under_replicated.iter().map(partition_json).collect::<Vec<_>>(),
            "offline": summary.offline.iter().map(partition_json).collect::<Vec<_>>(),
        });
        if let Some(q) = &quorum {
            out["quorum"] = json!({
                "leader": q.leader_id,
                "leader_epoch": q.leader_epoch,
                "high_watermark": q.high_watermark,
                "voters": q.voters.iter().map(|(id, leo, lag)| json!({"id": id, "log_end_offset": leo, "lag": lag})).collect::<Vec<_>>(),
                "observers": q.observers.iter().map(|(id, leo, lag)| json!({"id": id, "log_end_offset": leo, "lag": lag})).collect::<Vec<_>>(),
            });
        }
        println!("{out}");
        return Ok(());
    }
    println!("CLUSTER     {}", cluster.cluster_id);
    println!("CONTROLLER  {}", cluster.controller_id);
    println!(
        "PARTITIONS  {} ({} under-replicated, {} offline)",
        summary.partitions,
        summary.under_replicated.len(),
        summary.offline.len()
    );
    if let Some(q) = &quorum {
        println!(
            "QUORUM      leader {} (epoch {}), high watermark {}",
            q.leader_id, q.leader_epoch, q.high_watermark
        );
    }
    println!();
    let mut t = Table::new(&["BROKER", "ADDRESS", "RACK", "STATE", "LEADERS", "REPLICAS"]);
    for b in &cluster.brokers {
        let (leaders, replicas) = summary.load.get(&b.node_id).copied().unwrap_or((0, 0));
        let state = if b.is_fenced { "fenced" } else { "alive" };
        t.row(vec![
            b.node_id.to_string(),
            b.addr(),
            b.rack.clone().unwrap_or_else(|| "-".into()),
            state.into(),
            leaders.to_string(),
            replicas.to_string(),
        ]);
    }
    // Brokers named by replicas but not registered (gone for good, or never started).
    for (id, (leaders, replicas)) in &summary.load {
        if !cluster.brokers.iter().any(|b| b.node_id == *id) {
            t.row(vec![
                id.to_string(),
                "-".into(),
                "-".into(),
                "offline".into(),
                leaders.to_string(),
                replicas.to_string(),
            ]);
        }
    }
    t.print();
    if let Some(q) = &quorum {
        println!();
        let mut t = Table::new(&["QUORUM-MEMBER", "ROLE", "LOG-END-OFFSET", "LAG"]);
        for (id, leo, lag) in &q.voters {
            let role = if *id == q.leader_id {
                "leader"
            } else {
                "voter"
            };
            t.row(vec![
                id.to_string(),
                role.into(),
                leo.to_string(),
                lag_text(*lag),
            ]);
        }
        for (id, leo, lag) in &q.observers {
            t.row(vec![
                id.to_string(),
                "observer".into(),
                leo.to_string(),
                lag_text(*lag),
            ]);
        }
        t.print();
    }
    for (title, list) in [
        ("UNDER-REPLICATED PARTITIONS", &summary.under_replicated),
        ("OFFLINE PARTITIONS", &summary.offline),
    ] {
        if list.is_empty() {
            continue;
        }
        println!();
        println!("{title}");
        let mut t = Table::new(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE"]);
        for p in list {
            t.row(vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.leader.to_string(),
                format!("{:?}", p.replicas),
                format!("{:?}", p.isr),
                format!("{:?}", p.offline),
            ]);
        }
        t.print();
    }
    Ok(())
}

fn lag_text(lag: Option<i64>) -> String {
    lag.map_or_else(|| "unknown".into(), |l| l.to_string())
}

#[derive(Debug, Clone)]
struct PartitionState {
    topic: String,
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline: Vec<i32>,
}

fn partition_json(p: &PartitionState) -> serde_json::Value {
    json!({
        "topic": p.topic,
        "partition": p.partition,
        "leader": p.leader,
        "replicas": p.replicas,
        "isr": p.isr,
        "offline_replicas": p.offline,
    })
}

struct Health {
    partitions: usize,
    under_replicated: Vec<PartitionState>,
    offline: Vec<PartitionState>,
    /// broker → (partitions it leads, replicas it hosts)
    load: BTreeMap<i32, (usize, usize)>,
}

fn health(md: &ClusterMetadata) -> Health {
    let mut h = Health {
        partitions: 0,
        under_replicated: Vec::new(),
        offline: Vec::new(),
        load: md.brokers.iter().map(|b| (b.node_id, (0, 0))).collect(),
    };
    let mut topics: Vec<_> = md.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        for p in &t.partitions {
            h.partitions += 1;
            let state = PartitionState {
                topic: t.name.clone(),
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                offline: p.offline_replicas.clone(),
            };
            if p.leader >= 0 {
                h.load.entry(p.leader).or_default().0 += 1;
            }
            for r in &p.replicas {
                h.load.entry(*r).or_default().1 += 1;
            }
            if p.leader < 0 {
                h.offline.push(state);
            } else if p.isr.len() < p.replicas.len() {
                h.under_replicated.push(state);
            }
        }
    }
    h
}

// ---------------------------------------------------------------------------------------------
// elect-leaders

async fn elect(
    args: &ClientArgs,
    election: ElectionKind,
    topic: Option<String>,
    partition: Option<i32>,
) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    let election = match election {
        ElectionKind::Preferred => ElectionType::Preferred,
        ElectionKind::Unclean => ElectionType::Unclean,
    };
    let partitions: Option<Vec<(String, i32)>> = match (&topic, partition) {
        (None, _) => None,
        (Some(t), Some(p)) => Some(vec![(t.clone(), p)]),
        (Some(t), None) => {
            let info = c.topic(t).await?;
            Some(
                info.partitions
                    .iter()
                    .map(|p| (t.clone(), p.partition))
                    .collect(),
            )
        }
    };
    let results = c.elect_leaders(election, partitions.as_deref()).await?;
    let failed = results
        .iter()
        .filter(|r| r.error_code != 0 && r.error_code != ELECTION_NOT_NEEDED)
        .count();
    if args.json() {
        let v: Vec<_> = results
            .iter()
            .map(|r| {
                json!({
                    "topic": r.topic,
                    "partition": r.partition,
                    "result": election_outcome(r.error_code),
                    "error": (r.error_code != 0).then(|| r.error_name()),
                    "message": r.error_message,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else if results.is_empty() {
        println!("no partition needed an election");
    } else {
        let mut t = Table::new(&["TOPIC", "PARTITION", "RESULT", "DETAIL"]);
        for r in &results {
            t.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                election_outcome(r.error_code).into(),
                if r.error_code == 0 {
                    String::new()
                } else {
                    format!(
                        "{}{}",
                        r.error_name(),
                        r.error_message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                },
            ]);
        }
        t.print();
    }
    if failed > 0 {
        bail!("{failed} partition(s) could not elect a leader (see above)");
    }
    Ok(())
}

fn election_outcome(code: i16) -> &'static str {
    match code {
        0 => "elected",
        ELECTION_NOT_NEEDED => "not-needed",
        _ => "failed",
    }
}

// ---------------------------------------------------------------------------------------------
// reassign, reassignments

struct ReassignOptions {
    plan: Option<PathBuf>,
    to_brokers: Vec<i32>,
    topic: Option<String>,
    execute: bool,
    cancel: bool,
    wait: bool,
    timeout: Duration,
}

async fn reassign(args: &ClientArgs, o: ReassignOptions) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    if o.cancel {
        let targets: Vec<(String, i32)> = match (&o.plan, &o.topic) {
            (Some(path), _) => read_plan(path)?
                .into_iter()
                .map(|p| (p.topic, p.partition))
                .collect(),
            (None, Some(t)) => c
                .topic(t)
                .await?
                .partitions
                .iter()
                .map(|p| (t.clone(), p.partition))
                .collect(),
            (None, None) => bail!("--cancel needs --plan FILE or --topic T"),
        };
        let moves: Vec<Reassignment> = targets
            .iter()
            .map(|(t, p)| Reassignment {
                topic: t.clone(),
                partition: *p,
                replicas: None,
            })
            .collect();
        let results = c.alter_partition_reassignments(&moves).await?;
        // NO_REASSIGNMENT_IN_PROGRESS (85) for a partition that was not moving is fine.
        let failed: Vec<_> = results
            .iter()
            .filter(|r| r.error_code != 0 && r.error_code != 85)
            .collect();
        let cancelled = results.iter().filter(|r| r.error_code == 0).count();
        if args.json() {
            println!(
                "{}",
                json!({ "status": "cancelled", "cancelled": cancelled, "errors": failed.iter().map(|r| json!({"topic": r.topic, "partition": r.partition, "error": r.error_name(), "message": r.error_message})).collect::<Vec<_>>() })
            );
        } else {
            println!("cancelled {cancelled} reassignment(s) in progress");
        }
        if let Some(r) = failed.first() {
            bail!(
                "cannot cancel the reassignment of {}-{}: {}",
                r.topic,
                r.partition,
                r.error_name()
            );
        }
        return Ok(());
    }

    let md = c.metadata(None, false).await?;
    let current = placements(&md);
    let moves: Vec<plan::Move> = match (&o.plan, &o.topic) {
        (Some(path), _) => {
            let wanted = read_plan(path)?;
            let mut out = Vec::new();
            for w in wanted {
                let from = current
                    .iter()
                    .find(|p| p.topic == w.topic && p.partition == w.partition)
                    .map(|p| p.replicas.clone())
                    .with_context(|| {
                        format!(
                            "the plan moves {}-{}, which does not exist",
                            w.topic, w.partition
                        )
                    })?;
                out.push(plan::Move {
                    topic: w.topic,
                    partition: w.partition,
                    from,
                    to: w.replicas,
                });
            }
            out
        }
        (None, Some(topic)) => {
            if o.to_brokers.is_empty() {
                bail!("give --to-brokers ID,ID,... with --topic, or --plan FILE");
            }
            if !current.iter().any(|p| &p.topic == topic) {
                c.topic(topic).await?; // the broker's UNKNOWN_TOPIC_OR_PARTITION
            }
            let racks = racks_of(&mut c, &md).await?;
            for b in &o.to_brokers {
                if !racks.contains_key(b) {
                    bail!("broker {b} is not a live broker of this cluster (`sluice cluster status` lists them)");
                }
            }
            plan::to_brokers(topic, &o.to_brokers, &racks, &current).map_err(anyhow::Error::msg)?
        }
        (None, None) => bail!("give --plan FILE, or --topic T with --to-brokers ID,ID,..."),
    };
    let moves: Vec<plan::Move> = moves.into_iter().filter(|m| m.from != m.to).collect();
    print_plan(args, &moves, o.execute)?;
    if !o.execute || moves.is_empty() {
        if !o.execute {
            eprintln!("dry run: nothing changed; add --execute to start these moves");
        }
        return Ok(());
    }
    execute_moves(&mut c, &moves).await?;
    if !args.json() {
        println!("started {} reassignment(s)", moves.len());
    }
    if o.wait {
        wait_for_moves(&mut c, &moves, None, o.timeout).await?;
        if !args.json() {
            println!("reassignment complete");
        }
    }
    Ok(())
}

fn print_plan(args: &ClientArgs, moves: &[plan::Move], execute: bool) -> anyhow::Result<()> {
    if args.json() {
        println!(
            "{}",
            json!({
                "status": if execute { "started" } else { "planned" },
                "plan": plan::to_kafka_json(moves.iter().map(|m| (m.topic.as_str(), m.partition, m.to.as_slice()))),
                "rollback": plan::to_kafka_json(moves.iter().map(|m| (m.topic.as_str(), m.partition, m.from.as_slice()))),
            })
        );
        return Ok(());
    }
    if moves.is_empty() {
        println!("nothing to move: every partition already has the wanted replicas");
        return Ok(());
    }
    let mut t = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "NEW-REPLICAS"]);
    for m in moves {
        t.row(vec![
            m.topic.clone(),
            m.partition.to_string(),
            format!("{:?}", m.from),
            format!("{:?}", m.to),
        ]);
    }
    t.print();
    Ok(())
}

async fn execute_moves(c: &mut Client, moves: &[plan::Move]) -> anyhow::Result<()> {
    let req: Vec<Reassignment> = moves
        .iter()
        .map(|m| Reassignment {
            topic: m.topic.clone(),
            partition: m.partition,
            replicas: Some(m.to.clone()),
        })
        .collect();
    let results = c.alter_partition_reassignments(&req).await?;
    if let Some(r) = results.iter().find(|r| r.error_code != 0) {
        bail!(
            "the controller refused to move {}-{}: {}{}",
            r.topic,
            r.partition,
            r.error_name(),
            r.error_message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Waits (bounded) until none of `moves` is still in progress and the metadata shows each
/// partition with its target replicas (and, with `emptied`, that node hosting nothing).
/// Progress goes to stderr whenever it changes.
async fn wait_for_moves(
    c: &mut Client,
    moves: &[plan::Move],
    emptied: Option<i32>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let keys: Vec<(String, i32)> = moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    let started = Instant::now();
    let mut last_done = usize::MAX;
    loop {
        let ongoing = c.list_partition_reassignments(Some(&keys)).await?;
        let md = c.metadata(None, false).await?;
        let now = placements(&md);
        let done = moves
            .iter()
            .filter(|m| {
                !ongoing
                    .iter()
                    .any(|o| o.topic == m.topic && o.partition == m.partition)
                    && now.iter().any(|p| {
                        p.topic == m.topic && p.partition == m.partition && p.replicas == m.to
                    })
            })
            .count();
        let still_hosted: Vec<String> = emptied.map_or_else(Vec::new, |n| {
            now.iter()
                .filter(|p| p.replicas.contains(&n))
                .map(|p| format!("{}-{}", p.topic, p.partition))
                .collect()
        });
        let hosting = still_hosted.len();
        if done != last_done {
            eprintln!(
                "progress: {done}/{} partition(s) moved ({} s)",
                moves.len(),
                started.elapsed().as_secs()
            );
            last_done = done;
        }
        if done == moves.len() && hosting == 0 {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            if done == moves.len() {
                // Every planned move finished, yet the node hosts partitions: the controller
                // placed new ones there while the drain ran (it is still a live broker).
                bail!(
                    "timed out after {} s: every planned move is done, but the node now hosts {} \
                     (created during the drain); run the drain again",
                    timeout.as_secs(),
                    still_hosted.join(", ")
                );
            }
            bail!(
                "timed out after {} s with {done}/{} partition(s) moved; the moves go on in the \
                 background (`sluice cluster reassignments` shows them, `sluice cluster reassign \
                 --cancel` stops them)",
                timeout.as_secs(),
                moves.len()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn reassignments(args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    let ongoing = c.list_partition_reassignments(None).await?;
    let md = c.metadata(None, false).await?;
    let isr_of = |t: &str, p: i32| -> Vec<i32> {
        md.topics
            .iter()
            .find(|x| x.name == t)
            .and_then(|x| x.partitions.iter().find(|y| y.partition == p))
            .map(|y| y.isr.clone())
            .unwrap_or_default()
    };
    let rows: Vec<_> = ongoing
        .iter()
        .map(|o| {
            let isr = isr_of(&o.topic, o.partition);
            let caught_up: Vec<i32> = o
                .adding
                .iter()
                .copied()
                .filter(|a| isr.contains(a))
                .collect();
            (o, isr, caught_up)
        })
        .collect();
    if args.json() {
        let v: Vec<_> = rows
            .iter()
            .map(|(o, isr, caught_up)| {
                json!({
                    "topic": o.topic,
                    "partition": o.partition,
                    "replicas": o.replicas,
                    "adding": o.adding,
                    "removing": o.removing,
                    "isr": isr,
                    "adding_in_sync": caught_up,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no reassignment in progress");
        return Ok(());
    }
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "REPLICAS",
        "ADDING",
        "REMOVING",
        "ISR",
        "PROGRESS",
    ]);
    for (o, isr, caught_up) in &rows {
        t.row(vec![
            o.topic.clone(),
            o.partition.to_string(),
            format!("{:?}", o.replicas),
            format!("{:?}", o.adding),
            format!("{:?}", o.removing),
            format!("{isr:?}"),
            format!(
                "{}/{} new replicas in sync",
                caught_up.len(),
                o.adding.len()
            ),
        ]);
    }
    t.print();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// drain

async fn drain(
    args: &ClientArgs,
    node: i32,
    dry_run: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut c = args.connect().await?;
    let md = c.metadata(None, false).await?;
    let mut current = placements(&md);
    // A partition already moving counts with its target replicas. A broker without the API
    // has no reassignment in progress.
    let ongoing = match c.list_partition_reassignments(None).await {
        Ok(v) => v,
        Err(sluice_client::Error::Unsupported { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for o in ongoing {
        if let Some(p) = current
            .iter_mut()
            .find(|p| p.topic == o.topic && p.partition == o.partition)
        {
            p.replicas.retain(|r| !o.removing.contains(r));
        }
    }
    let mut racks = racks_of(&mut c, &md).await?;
    let known = racks.contains_key(&node) || current.iter().any(|p| p.replicas.contains(&node));
    if !known {
        bail!("node {node} is neither a broker of this cluster nor named by any replica");
    }
    racks.remove(&node);
    let moves = plan::drain(node, &racks, &current).map_err(anyhow::Error::msg)?;
    let plan_json = || {
        (
            plan::to_kafka_json(
                moves
                    .iter()
                    .map(|m| (m.topic.as_str(), m.partition, m.to.as_slice())),
            ),
            plan::to_kafka_json(
                moves
                    .iter()
                    .map(|m| (m.topic.as_str(), m.partition, m.from.as_slice())),
            ),
        )
    };
    if !args.json() {
        print_plan(args, &moves, !dry_run)?;
    }
    if dry_run {
        if args.json() {
            let (plan, rollback) = plan_json();
            println!(
                "{}",
                json!({ "node": node, "status": "planned", "moved": 0, "plan": plan, "rollback": rollback })
            );
        }
        eprintln!("dry run: nothing changed; run without --dry-run to drain node {node}");
        return Ok(());
    }
    if !moves.is_empty() {
        execute_moves(&mut c, &moves).await?;
        if !args.json() {
            println!(
                "started moving {} partition(s) off node {node}",
                moves.len()
            );
        }
        wait_for_moves(&mut c, &moves, Some(node), timeout).await?;
    }
    // Leadership follows the preferred (first) replica only when asked.
    let keys: Vec<(String, i32)> = moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    let mut elected = 0;
    let mut not_elected = Vec::new();
    if !keys.is_empty() {
        for r in c
            .elect_leaders(ElectionType::Preferred, Some(&keys))
            .await?
        {
            match r.error_code {
                0 => elected += 1,
                ELECTION_NOT_NEEDED => {}
                _ => not_elected.push(format!("{}-{}: {}", r.topic, r.partition, r.error_name())),
            }
        }
    }
    if args.json() {
        let (plan, rollback) = plan_json();
        println!(
            "{}",
            json!({ "node": node, "status": "drained", "moved": moves.len(), "plan": plan, "rollback": rollback, "leaders_elected": elected, "election_errors": not_elected })
        );
    } else {
        println!(
            "node {node} hosts no replica: moved {} partition(s), elected {elected} preferred leader(s)",
            moves.len()
        );
        for e in &not_elected {
            println!("preferred leader not elected for {e}");
        }
    }
    Ok(())
}

/// Every partition's current replicas, from metadata.
fn placements(md: &ClusterMetadata) -> Vec<plan::Placement> {
    let mut out: Vec<plan::Placement> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| {
            t.partitions.iter().map(|p| plan::Placement {
                topic: t.name.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// Live, unfenced brokers and their racks (DescribeCluster; Metadata's list as a fallback).
async fn racks_of(
    c: &mut Client,
    md: &ClusterMetadata,
) -> anyhow::Result<BTreeMap<i32, Option<String>>> {
    match c.describe_cluster(false).await {
        Ok(d) => Ok(d
            .brokers
            .into_iter()
            .filter(|b| !b.is_fenced)
            .map(|b| (b.node_id, b.rack))
            .collect()),
        Err(sluice_client::Error::Unsupported { .. }) => Ok(md
            .brokers
            .iter()
            .map(|b| (b.node_id, b.rack.clone()))
            .collect()),
        Err(e) => Err(e.into()),
    }
}

/// Reads a plan in kafka-reassign-partitions.sh's JSON format.
fn read_plan(path: &PathBuf) -> anyhow::Result<Vec<plan::Placement>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan {}", path.display()))?;
    plan::parse_kafka_json(&text).map_err(|e| anyhow::anyhow!("plan {}: {e}", path.display()))
}

/// Replica placement plans: pure, deterministic functions of (brokers, racks, placements).
pub mod plan {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::{json, Value};

    /// The most partitions a plan file may list (bounds what a file makes us allocate).
    pub const MAX_PLAN_PARTITIONS: usize = 1_000_000;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Placement {
        pub topic: String,
        pub partition: i32,
        /// Preferred leader first.
        pub replicas: Vec<i32>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Move {
        pub topic: String,
        pub partition: i32,
        pub from: Vec<i32>,
        pub to: Vec<i32>,
    }

    /// Replica and preferred-leader counts per broker, over every partition.
    struct Load {
        replicas: BTreeMap<i32, usize>,
        leaders: BTreeMap<i32, usize>,
    }

    impl Load {
        fn of(brokers: &BTreeMap<i32, Option<String>>, all: &[Placement]) -> Load {
            let mut l = Load {
                replicas: brokers.keys().map(|b| (*b, 0)).collect(),
                leaders: brokers.keys().map(|b| (*b, 0)).collect(),
            };
            for p in all {
                for (i, r) in p.replicas.iter().enumerate() {
                    *l.replicas.entry(*r).or_default() += 1;
                    if i == 0 {
                        *l.leaders.entry(*r).or_default() += 1;
                    }
                }
            }
            l
        }

        fn moved(&mut self, from: &[i32], to: &[i32]) {
            for (i, r) in from.iter().enumerate() {
                if let Some(n) = self.replicas.get_mut(r) {
                    *n = n.saturating_sub(1);
                }
                if i == 0 {
                    if let Some(n) = self.leaders.get_mut(r) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            for (i, r) in to.iter().enumerate() {
                *self.replicas.entry(*r).or_default() += 1;
                if i == 0 {
                    *self.leaders.entry(*r).or_default() += 1;
                }
            }
        }
    }

    /// Racks count only when every candidate broker has one (as Kafka's placement: a
    /// partially racked cluster is treated as unracked).
    fn rack_aware(brokers: &BTreeMap<i32, Option<String>>) -> bool {
        !brokers.is_empty() && brokers.values().all(Option::is_some)
    }

    /// Fills the holes (`None`) of `slots` from `candidates`: each hole takes the candidate not
    /// yet in the partition whose rack holds the fewest of its replicas (when rack-aware), then
    /// the fewest replicas overall, then (for the leader slot) the fewest preferred leaderships,
    /// then the lowest id.
    fn fill(
        what: &str,
        slots: Vec<Option<i32>>,
        candidates: &BTreeMap<i32, Option<String>>,
        all_racks: &BTreeMap<i32, Option<String>>,
        load: &Load,
    ) -> Result<Vec<i32>, String> {
        let racked = rack_aware(candidates);
        let mut chosen: Vec<Option<i32>> = slots;
        for i in 0..chosen.len() {
            if chosen.get(i).copied().flatten().is_some() {
                continue;
            }
            let used: BTreeSet<i32> = chosen.iter().flatten().copied().collect();
            let rack_count = |b: i32| -> usize {
                if !racked {
                    return 0;
                }
                let rack = all_racks.get(&b).cloned().flatten();
                used.iter()
                    .filter(|u| all_racks.get(u).cloned().flatten() == rack)
                    .count()
            };
            let best = candidates
                .keys()
                .copied()
                .filter(|b| !used.contains(b))
                .min_by_key(|&b| {
                    (
                        rack_count(b),
                        load.replicas.get(&b).copied().unwrap_or(0),
                        if i == 0 {
                            load.leaders.get(&b).copied().unwrap_or(0)
                        } else {
                            0
                        },
                        b,
                    )
                })
                .ok_or_else(|| {
                    format!(
                        "cannot keep the replication factor of {what} ({}): not enough brokers \
                         ({} eligible)",
                        chosen.len(),
                        candidates.len()
                    )
                })?;
            if let Some(slot) = chosen.get_mut(i) {
                *slot = Some(best);
            }
        }
        Ok(chosen.into_iter().flatten().collect())
    }

    /// When a partition's preferred leader is replaced, the new preferred leader is the replica
    /// with the fewest preferred leaderships (ties: the earlier position), so that leadership
    /// stays spread even when one broker is the only fit for the vacated slot.
    fn balance_leader(replicas: &mut [i32], load: &Load) {
        let best = replicas
            .iter()
            .enumerate()
            .min_by_key(|(i, b)| (load.leaders.get(b).copied().unwrap_or(0), *i))
            .map(|(i, _)| i);
        if let Some(i) = best {
            replicas.swap(0, i);
        }
    }

    /// Moves every replica off `node`. `brokers`: the brokers that may receive replicas (live,
    /// without `node`) with their racks. Each partition on `node` keeps its replication factor;
    /// the other replicas keep their positions, except that a replaced preferred leader is
    /// re-chosen by [`balance_leader`].
    /// Partitions are taken in (topic, partition) order, so the plan is a pure function of
    /// its inputs.
    pub fn drain(
        node: i32,
        brokers: &BTreeMap<i32, Option<String>>,
        all: &[Placement],
    ) -> Result<Vec<Move>, String> {
        let mut sorted: Vec<&Placement> = all.iter().collect();
        sorted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let mut candidates = brokers.clone();
        candidates.remove(&node);
        let mut load = Load::of(&candidates, all);
        let mut out = Vec::new();
        for p in sorted {
            if !p.replicas.contains(&node) {
                continue;
            }
            let slots: Vec<Option<i32>> = p
                .replicas
                .iter()
                .map(|&r| (r != node).then_some(r))
                .collect();
            let what = format!("{}-{}", p.topic, p.partition);
            let leader_replaced = slots.first().is_some_and(Option::is_none);
            let mut to = fill(&what, slots, &candidates, brokers, &load)?;
            if leader_replaced {
                balance_leader(&mut to, &load);
            }
            load.moved(&p.replicas, &to);
            out.push(Move {
                topic: p.topic.clone(),
                partition: p.partition,
                from: p.replicas.clone(),
                to,
            });
        }
        Ok(out)
    }

    /// Moves every partition of `topic` onto `targets` (each keeps its replication factor).
    /// Replicas already on a target stay where they are (least data copied); the others are
    /// replaced as in [`drain`]. `racks`: every live broker's rack.
    pub fn to_brokers(
        topic: &str,
        targets: &[i32],
        racks: &BTreeMap<i32, Option<String>>,
        all: &[Placement],
    ) -> Result<Vec<Move>, String> {
        let candidates: BTreeMap<i32, Option<String>> = targets
            .iter()
            .map(|b| (*b, racks.get(b).cloned().flatten()))
            .collect();
        if candidates.is_empty() {
            return Err("no target broker given".into());
        }
        let mut sorted: Vec<&Placement> = all.iter().filter(|p| p.topic == topic).collect();
        sorted.sort_by_key(|p| p.partition);
        let mut load = Load::of(&candidates, all);
        let mut out = Vec::new();
        for p in sorted {
            let slots: Vec<Option<i32>> = p
                .replicas
                .iter()
                .map(|&r| candidates.contains_key(&r).then_some(r))
                .collect();
            let what = format!("{}-{}", p.topic, p.partition);
            let leader_replaced = slots.first().is_some_and(Option::is_none);
            let mut to = fill(&what, slots, &candidates, racks, &load)?;
            if leader_replaced {
                balance_leader(&mut to, &load);
            }
            load.moved(&p.replicas, &to);
            out.push(Move {
                topic: p.topic.clone(),
                partition: p.partition,
                from: p.replicas.clone(),
                to,
            });
        }
        Ok(out)
    }

    /// A plan in kafka-reassign-partitions.sh's format.
    pub fn to_kafka_json<'a>(moves: impl Iterator<Item = (&'a str, i32, &'a [i32])>) -> Value {
        json!({
            "version": 1,
            "partitions": moves.map(|(t, p, r)| json!({"topic": t, "partition": p, "replicas": r})).collect::<Vec<_>>(),
        })
    }

    /// Parses kafka-reassign-partitions.sh's plan format. `log_dirs`, when present, must be
    /// `"any"` for every replica (placing replicas on particular log dirs is not supported).
    pub fn parse_kafka_json(text: &str) -> Result<Vec<Placement>, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("version").and_then(Value::as_i64) {
            Some(1) => {}
            other => return Err(format!("expected \"version\": 1, got {other:?}")),
        }
        let parts = v
            .get("partitions")
            .and_then(Value::as_array)
            .ok_or("expected a \"partitions\" array")?;
        if parts.len() > MAX_PLAN_PARTITIONS {
            return Err(format!(
                "lists {} partitions, more than {MAX_PLAN_PARTITIONS}",
                parts.len()
            ));
        }
        let mut out = Vec::with_capacity(parts.len());
        let mut seen = BTreeSet::new();
        for (i, p) in parts.iter().enumerate() {
            let topic = p
                .get("topic")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("partitions[{i}]: missing \"topic\""))?;
            let partition = p
                .get("partition")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("partitions[{i}]: missing or bad \"partition\""))?;
            let raw = p
                .get("replicas")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("partitions[{i}]: missing \"replicas\""))?;
            let mut replicas = Vec::with_capacity(raw.len().min(1024));
            for r in raw {
                let id = r
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("partitions[{i}]: bad broker id {r}"))?;
                if replicas.contains(&id) {
                    return Err(format!("partitions[{i}]: broker {id} listed twice"));
                }
                replicas.push(id);
            }
            if replicas.is_empty() {
                return Err(format!("partitions[{i}]: \"replicas\" is empty"));
            }
            if let Some(dirs) = p.get("log_dirs") {
                let ok = dirs.as_array().is_some_and(|d| {
                    d.len() == replicas.len() && d.iter().all(|x| x.as_str() == Some("any"))
                });
                if !ok {
                    return Err(format!(
                        "partitions[{i}]: \"log_dirs\" other than \"any\" is not supported"
                    ));
                }
            }
            if !seen.insert((topic.to_owned(), partition)) {
                return Err(format!("{topic}-{partition} is listed twice"));
            }
            out.push(Placement {
                topic: topic.to_owned(),
                partition,
                replicas,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::plan::*;
    use std::collections::BTreeMap;

    fn brokers(ids: &[i32]) -> BTreeMap<i32, Option<String>> {
        ids.iter().map(|b| (*b, None)).collect()
    }

    fn racked(pairs: &[(i32, &str)]) -> BTreeMap<i32, Option<String>> {
        pairs
            .iter()
            .map(|(b, r)| (*b, Some((*r).to_owned())))
            .collect()
    }

    fn pl(topic: &str, partition: i32, replicas: &[i32]) -> Placement {
        Placement {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    /// Round-robin placement of `n` partitions with RF `rf` over `ids`, as a controller does.
    fn round_robin(topic: &str, n: i32, rf: usize, ids: &[i32]) -> Vec<Placement> {
        (0..n)
            .map(|p| {
                let start = usize::try_from(p).unwrap() % ids.len();
                let r: Vec<i32> = (0..rf).map(|k| ids[(start + k) % ids.len()]).collect();
                pl(topic, p, &r)
            })
            .collect()
    }

    fn apply(all: &[Placement], moves: &[Move]) -> Vec<Placement> {
        all.iter()
            .map(|p| {
                let m = moves
                    .iter()
                    .find(|m| m.topic == p.topic && m.partition == p.partition);
                match m {
                    Some(m) => pl(&p.topic, p.partition, &m.to),
                    None => p.clone(),
                }
            })
            .collect()
    }

    fn counts(all: &[Placement]) -> BTreeMap<i32, usize> {
        let mut c = BTreeMap::new();
        for p in all {
            for r in &p.replicas {
                *c.entry(*r).or_default() += 1;
            }
        }
        c
    }

    #[test]
    fn drain_empties_the_node_and_keeps_replication_factors() {
        let ids = [1, 2, 3, 4, 5];
        let mut all = round_robin("a", 20, 3, &ids);
        all.extend(round_robin("b", 7, 2, &ids));
        all.extend(round_robin("c", 3, 1, &ids));
        let moves = drain(3, &brokers(&ids), &all).unwrap();
        let after = apply(&all, &moves);
        for (before, p) in all.iter().zip(&after) {
            assert!(!p.replicas.contains(&3), "{p:?}");
            assert_eq!(before.replicas.len(), p.replicas.len());
            let distinct: std::collections::BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), p.replicas.len(), "{p:?}");
            // Only the drained replica was replaced; the others stay (in place unless the
            // preferred leader was re-chosen).
            let kept: Vec<_> = before.replicas.iter().filter(|r| **r != 3).collect();
            assert!(
                kept.iter().all(|r| p.replicas.contains(r)),
                "{before:?} -> {p:?}"
            );
            if before.replicas[0] != 3 {
                assert_eq!(
                    before.replicas,
                    p.replicas
                        .iter()
                        .map(|r| if before.replicas.contains(r) { *r } else { 3 })
                        .collect::<Vec<_>>()
                );
            }
        }
        // Every move touches the node; nothing else moves.
        assert!(moves.iter().all(|m| m.from.contains(&3)));
        assert_eq!(
            moves.len(),
            all.iter().filter(|p| p.replicas.contains(&3)).count()
        );
    }

    #[test]
    fn drain_balances_replicas_and_leaders() {
        let ids = [1, 2, 3, 4];
        let all = round_robin("t", 12, 3, &ids);
        let moves = drain(4, &brokers(&ids), &all).unwrap();
        let after = apply(&all, &moves);
        let c = counts(&after);
        assert_eq!(c.get(&4), None);
        // 36 replicas on 3 brokers: 12 each.
        assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![12, 12, 12]);
        let mut leaders = BTreeMap::new();
        for p in &after {
            *leaders.entry(p.replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    }

    #[test]
    fn drain_is_deterministic_whatever_the_input_order() {
        let ids = [1, 2, 3, 4, 5, 6];
        let mut all = round_robin("x", 17, 3, &ids);
        all.extend(round_robin("y", 5, 2, &ids));
        let a = drain(2, &brokers(&ids), &all).unwrap();
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.swap(0, 7);
        let b = drain(2, &brokers(&ids), &shuffled).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, drain(2, &brokers(&ids), &all).unwrap());
    }

    #[test]
    fn drain_is_rack_aware() {
        // Two brokers per rack; each partition spans the three racks.
        let racks = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        let all = vec![
            pl("t", 0, &[1, 3, 5]),
            pl("t", 1, &[3, 5, 1]),
            pl("t", 2, &[5, 1, 4]),
            pl("t", 3, &[1, 4, 6]),
        ];
        let moves = drain(1, &racks, &all).unwrap();
        let after = apply(&all, &moves);
        for p in &after {
            let rs: std::collections::BTreeSet<_> =
                p.replicas.iter().map(|b| racks[b].clone()).collect();
            assert_eq!(rs.len(), 3, "{p:?} lost rack diversity");
            assert!(!p.replicas.contains(&1));
        }
        // The only broker left in rack a takes every replica broker 1 had.
        assert!(moves.iter().all(|m| m.to.contains(&2)));
    }

    #[test]
    fn drain_ignores_racks_unless_every_broker_has_one() {
        let mut racks = racked(&[(1, "a"), (2, "a"), (3, "b")]);
        racks.insert(4, None);
        let all = vec![pl("t", 0, &[1, 3])];
        // Unracked: least loaded (2 and 4 hold nothing) and lowest id wins.
        let moves = drain(1, &racks, &all).unwrap();
        assert_eq!(moves[0].to, vec![2, 3]);
    }

    #[test]
    fn drain_fails_when_the_replication_factor_cannot_be_kept() {
        let all = vec![pl("t", 0, &[1, 2, 3])];
        let e = drain(3, &brokers(&[1, 2, 3]), &all).unwrap_err();
        assert!(e.contains("replication factor of t-0"), "{e}");
    }

    #[test]
    fn drain_of_a_node_without_replicas_is_empty() {
        let all = round_robin("t", 4, 2, &[1, 2]);
        assert!(drain(3, &brokers(&[1, 2, 3]), &all).unwrap().is_empty());
    }

    #[test]
    fn to_brokers_keeps_target_replicas_and_fills_the_rest() {
        let ids = [1, 2, 3, 4, 5];
        let all = round_robin("t", 5, 2, &[1, 2, 3]);
        let moves = to_brokers("t", &[3, 4, 5], &brokers(&ids), &all).unwrap();
        let after = apply(&all, &moves);
        for (b, p) in all.iter().zip(&after) {
            assert_eq!(p.replicas.len(), 2);
            assert!(p.replicas.iter().all(|r| [3, 4, 5].contains(r)), "{p:?}");
            if b.replicas.contains(&3) {
                assert!(
                    p.replicas.contains(&3),
                    "kept replica on 3 moved: {b:?} -> {p:?}"
                );
            }
        }
        let c = counts(&after);
        let max = c.values().max().unwrap();
        let min = c.values().min().unwrap();
        assert!(max - min <= 1, "{c:?}");
        assert!(to_brokers("t", &[4], &brokers(&ids), &all).is_err());
        assert!(to_brokers("t", &[], &brokers(&ids), &all).is_err());
    }

    #[test]
    fn kafka_plan_round_trips() {
        let text = r#"{"version":1,"partitions":[
            {"topic":"t","partition":0,"replicas":[1,2,3],"log_dirs":["any","any","any"]},
            {"topic":"u","partition":2,"replicas":[3]}]}"#;
        let plan = parse_kafka_json(text).unwrap();
        assert_eq!(plan, vec![pl("t", 0, &[1, 2, 3]), pl("u", 2, &[3])]);
        let back = to_kafka_json(
            plan.iter()
                .map(|p| (p.topic.as_str(), p.partition, p.replicas.as_slice())),
        );
        assert_eq!(parse_kafka_json(&back.to_string()).unwrap(), plan);
    }

    #[test]
    fn kafka_plan_rejects_bad_input() {
        for (text, want) in [
            ("[]", "version"),
            (r#"{"version":2,"partitions":[]}"#, "version"),
            (r#"{"version":1}"#, "partitions"),
            (
                r#"{"version":1,"partitions":[{"partition":0,"replicas":[1]}]}"#,
                "topic",
            ),
            (
                r#"{"version":1,"partitions":[{"topic":"t","partition":-1,"replicas":[1]}]}"#,
                "partition",
            ),
            (
                r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[]}]}"#,
                "empty",
            ),
            (
                r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,1]}]}"#,
                "twice",
            ),
            (
                r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1e99]}]}"#,
                "bad broker",
            ),
            (
                r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1],"log_dirs":["/d"]}]}"#,
                "log_dirs",
            ),
            (
                r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1]},{"topic":"t","partition":0,"replicas":[2]}]}"#,
                "twice",
            ),
            ("{", "not JSON"),
        ] {
            let e = parse_kafka_json(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
