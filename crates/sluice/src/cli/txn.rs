//! `sluice txn list|describe|abort|find-hanging`: transaction administration, shaped after
//! Kafka's kafka-transactions tool. `abort` ends a hanging transaction on one partition by
//! writing an ABORT marker there (WriteTxnMarkers), as `kafka-transactions.sh abort` does.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use sluice_client::error::check;
use sluice_client::Client;

use super::table::Table;
use super::{block_on, ClientArgs};

#[derive(Args, Debug)]
pub struct TxnArgs {
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand, Debug)]
enum TxnCommand {
    /// List transactional ids with their producer id and state
    List {
        /// Only these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
        /// CompleteAbort); repeatable
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only these producer ids; repeatable
        #[arg(long = "producer-id")]
        producer_ids: Vec<i64>,
        /// Only transactions running longer than this many milliseconds
        #[arg(long, value_name = "MS")]
        duration_filter: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one transactional id: state, producer, timeout, start time, partitions
    Describe {
        transactional_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Abort a hanging transaction on one partition (writes an ABORT marker there)
    Abort(AbortArgs),
    /// List open transactions on partitions that look hanging: unknown to the coordinator,
    /// not in its transaction, or open longer than --max-transaction-timeout
    FindHanging {
        /// Only this topic (default: every topic)
        #[arg(long)]
        topic: Option<String>,
        /// Minutes after which an open transaction counts as hanging (Kafka's tool: 15)
        #[arg(long, default_value_t = 15)]
        max_transaction_timeout: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
struct AbortArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: i32,
    /// The first offset of the transaction to abort (DescribeProducers finds its producer)
    #[arg(long, value_name = "OFFSET", conflicts_with_all = ["producer_id", "producer_epoch", "coordinator_epoch"])]
    start_offset: Option<i64>,
    /// Or name the producer directly (with --producer-epoch and --coordinator-epoch)
    #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
    producer_id: Option<i64>,
    #[arg(long)]
    producer_epoch: Option<i16>,
    #[arg(long)]
    coordinator_epoch: Option<i32>,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(args: TxnArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            TxnCommand::List {
                states,
                producer_ids,
                duration_filter,
                client,
            } => list(&client, states, producer_ids, duration_filter).await,
            TxnCommand::Describe {
                transactional_id,
                client,
            } => describe(&client, &transactional_id).await,
            TxnCommand::Abort(args) => abort(args).await,
            TxnCommand::FindHanging {
                topic,
                max_transaction_timeout,
                client,
            } => find_hanging(&client, topic, max_transaction_timeout).await,
        }
    })
}

/// The key list and find-hanging look the coordinator up with: Sluice has one transaction
/// coordinator for every transactional id.
const COORDINATOR_LOOKUP_KEY: &str = "sluice-cli";

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

async fn list(
    client: &ClientArgs,
    states: Vec<String>,
    producer_ids: Vec<i64>,
    duration_filter: Option<i64>,
) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    // The transaction coordinator (in a cluster, the leader of `__transaction_state-0`).
    let addr = c
        .find_transaction_coordinator(COORDINATOR_LOOKUP_KEY)
        .await?;
    let req = ListTransactionsRequest::default()
        .with_state_filters(states.into_iter().map(s).collect())
        .with_producer_id_filters(producer_ids.into_iter().map(ProducerId).collect())
        .with_duration_filter(duration_filter.unwrap_or(-1));
    let resp = c.send(&addr, &req).await?;
    check(resp.error_code, None, || "list transactions".into())?;
    if !resp.unknown_state_filters.is_empty() {
        let unknown: Vec<String> = resp
            .unknown_state_filters
            .iter()
            .map(|s| s.to_string())
            .collect();
        bail!("unknown transaction states: {}", unknown.join(", "));
    }
    let mut rows: Vec<_> = resp.transaction_states.iter().collect();
    rows.sort_by(|a, b| a.transactional_id.as_str().cmp(b.transactional_id.as_str()));
    if client.json() {
        let v: Vec<_> = rows
            .iter()
            .map(|t| {
                json!({
                    "transactional_id": t.transactional_id.as_str(),
                    "producer_id": t.producer_id.0,
                    "state": t.transaction_state.as_str(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut t = Table::new(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"]);
        for r in rows {
            t.row(vec![
                r.transactional_id.to_string(),
                r.producer_id.0.to_string(),
                r.transaction_state.to_string(),
            ]);
        }
        t.print();
    }
    Ok(())
}

async fn describe(client: &ClientArgs, id: &str) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    // The transaction coordinator (in a cluster, the leader of `__transaction_state-0`).
    let addr = c.find_transaction_coordinator(id).await?;
    let req =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    let resp = c.send(&addr, &req).await?;
    let Some(t) = resp.transaction_states.first() else {
        bail!("the broker answered no state for {id}");
    };
    check(t.error_code, None, || format!("describe transaction {id}"))?;
    let partitions: Vec<String> = t
        .topics
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| format!("{}-{p}", tp.topic.as_str()))
        })
        .collect();
    if client.json() {
        println!(
            "{}",
            json!({
                "transactional_id": id,
                "state": t.transaction_state.as_str(),
                "producer_id": t.producer_id.0,
                "producer_epoch": t.producer_epoch,
                "timeout_ms": t.transaction_timeout_ms,
                "start_time_ms": t.transaction_start_time_ms,
                "partitions": partitions,
            })
        );
    } else {
        let mut tb = Table::new(&[
            "TRANSACTIONAL-ID",
            "PRODUCER-ID",
            "PRODUCER-EPOCH",
            "STATE",
            "TIMEOUT-MS",
            "START-TIME-MS",
            "PARTITIONS",
        ]);
        tb.row(vec![
            id.to_string(),
            t.producer_id.0.to_string(),
            t.producer_epoch.to_string(),
            t.transaction_state.to_string(),
            t.transaction_timeout_ms.to_string(),
            t.transaction_start_time_ms.to_string(),
            if partitions.is_empty() {
                "-".into()
            } else {
                partitions.join(",")
            },
        ]);
        tb.print();
    }
    Ok(())
}

/// The producers of a partition (DescribeProducers at its leader).
async fn producers(
    c: &mut Client,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Vec<ProducerState>> {
    let leader = c.leader_addr(topic, partition).await?;
    let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(s(topic)))
        .with_partition_indexes(vec![partition])]);
    let resp = c.send(&leader, &req).await?;
    let p = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .context("the broker did not describe the partition")?;
    check(p.error_code, p.error_message.as_deref(), || {
        format!("describe producers of {topic}-{partition}")
    })?;
    Ok(p.active_producers.clone())
}

async fn abort(args: AbortArgs) -> anyhow::Result<()> {
    let mut c = args.client.connect().await?;
    let (pid, epoch, coordinator_epoch) = match (args.start_offset, args.producer_id) {
        (Some(start), _) => {
            let found = producers(&mut c, &args.topic, args.partition)
                .await?
                .into_iter()
                .find(|p| p.current_txn_start_offset == start)
                .with_context(|| {
                    format!(
                        "no open transaction starts at offset {start} on {}-{}",
                        args.topic, args.partition
                    )
                })?;
            let epoch = i16::try_from(found.producer_epoch)
                .context("the broker reported an out-of-range producer epoch")?;
            (found.producer_id.0, epoch, found.coordinator_epoch)
        }
        (None, Some(pid)) => (
            pid,
            args.producer_epoch.unwrap_or_default(),
            args.coordinator_epoch.unwrap_or_default(),
        ),
        (None, None) => bail!(
            "give --start-offset, or --producer-id with --producer-epoch and --coordinator-epoch"
        ),
    };
    let leader = c.leader_addr(&args.topic, args.partition).await?;
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(s(args.topic.clone())))
            .with_partition_indexes(vec![args.partition])])]);
    let resp = c.send(&leader, &req).await?;
    for m in &resp.markers {
        for t in &m.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    format!("abort on {}-{}", t.name.as_str(), p.partition_index)
                })?;
            }
        }
    }
    if args.client.json() {
        println!(
            "{}",
            json!({"topic": args.topic, "partition": args.partition, "producer_id": pid, "producer_epoch": epoch, "status": "aborted"})
        );
    } else {
        println!(
            "aborted the transaction of producer {pid} (epoch {epoch}) on {}-{}",
            args.topic, args.partition
        );
    }
    Ok(())
}

async fn find_hanging(
    client: &ClientArgs,
    topic: Option<String>,
    max_timeout_min: i64,
) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    // The transaction coordinator (in a cluster, the leader of `__transaction_state-0`).
    let addr = c
        .find_transaction_coordinator(COORDINATOR_LOOKUP_KEY)
        .await?;
    let topics: Vec<(String, i32)> = match topic {
        Some(t) => {
            let info = c.topic(&t).await?;
            vec![(t, info.partitions.len() as i32)]
        }
        None => c
            .metadata(None, false)
            .await?
            .topics
            .into_iter()
            .filter(|t| !t.is_internal)
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let max_ms = max_timeout_min.saturating_mul(60_000);
    let mut hanging = Vec::new();
    for (name, count) in topics {
        for partition in 0..count {
            for p in producers(&mut c, &name, partition).await? {
                if p.current_txn_start_offset < 0 {
                    continue;
                }
                let listed = c
                    .send(
                        &addr,
                        &ListTransactionsRequest::default()
                            .with_producer_id_filters(vec![p.producer_id])
                            .with_duration_filter(-1),
                    )
                    .await?;
                let mut known = false;
                for t in &listed.transaction_states {
                    let d = c
                        .send(
                            &addr,
                            &DescribeTransactionsRequest::default()
                                .with_transactional_ids(vec![t.transactional_id.clone()]),
                        )
                        .await?;
                    known |= d.transaction_states.iter().any(|st| {
                        st.error_code == 0
                            && st.producer_id == p.producer_id
                            && st.topics.iter().any(|tp| {
                                tp.topic.as_str() == name && tp.partitions.contains(&partition)
                            })
                    });
                }
                let too_old = now.saturating_sub(p.last_timestamp) > max_ms;
                if !known || too_old {
                    hanging.push((name.clone(), partition, p, !known));
                }
            }
        }
    }
    if client.json() {
        let v: Vec<_> = hanging
            .iter()
            .map(|(t, part, p, unknown)| {
                json!({
                    "topic": t, "partition": part, "producer_id": p.producer_id.0,
                    "producer_epoch": p.producer_epoch, "coordinator_epoch": p.coordinator_epoch,
                    "start_offset": p.current_txn_start_offset, "last_timestamp": p.last_timestamp,
                    "unknown_to_coordinator": unknown,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut t = Table::new(&[
            "TOPIC",
            "PARTITION",
            "PRODUCER-ID",
            "PRODUCER-EPOCH",
            "COORDINATOR-EPOCH",
            "START-OFFSET",
            "LAST-TIMESTAMP",
            "REASON",
        ]);
        for (topic, part, p, unknown) in &hanging {
            t.row(vec![
                topic.clone(),
                part.to_string(),
                p.producer_id.0.to_string(),
                p.producer_epoch.to_string(),
                p.coordinator_epoch.to_string(),
                p.current_txn_start_offset.to_string(),
                p.last_timestamp.to_string(),
                if *unknown {
                    "not in a coordinator transaction".into()
                } else {
                    "open too long".into()
                },
            ]);
        }
        t.print();
    }
    Ok(())
}
