//! `sluice topic create|list|describe|alter|add-partitions|delete`: topic administration
//! through CreateTopics, Metadata, ListOffsets, DescribeConfigs, IncrementalAlterConfigs,
//! CreatePartitions and DeleteTopics.

use clap::{Args, Subcommand};
use serde_json::json;

use super::table::Table;
use super::{block_on, parse_key_value, ClientArgs};

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic
    Create {
        name: String,
        /// Number of partitions
        #[arg(short, long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor (-1: the broker's default)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Place the replicas yourself: one broker list per partition, preferred leader first,
        /// e.g. 1:2:3,2:3:1 (partition 0 on 1,2,3 led by 1; partition 1 on 2,3,1 led by 2).
        /// Sets the partition count and replication factor.
        #[arg(long, value_name = "ASSIGNMENT", value_parser = parse_replica_assignment,
              conflicts_with_all = ["partitions", "replication_factor"])]
        replica_assignment: Option<ReplicaAssignment>,
        /// Topic config, e.g. retention.ms=86400000 (repeatable)
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed if the topic already exists
        #[arg(long)]
        if_not_exists: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List topics with their partition counts
    List {
        /// Include internal topics (such as __consumer_offsets)
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a topic's partitions (leader, leader epoch, replicas, ISR, offline replicas, log
    /// start and end offsets) and configs
    Describe {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change topic configs, and optionally grow the partition count
    Alter {
        name: String,
        /// Set a config (repeatable)
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a config so the default applies again (repeatable)
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
        /// Grow the topic to this many partitions in total (as Kafka's --alter --partitions)
        #[arg(short, long)]
        partitions: Option<i32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Grow a topic to a new total number of partitions (partitions are never removed)
    AddPartitions {
        name: String,
        /// The new total number of partitions
        #[arg(short, long)]
        partitions: i32,
        /// Replicas of each new partition, preferred leader first, e.g. 1:2:3,2:3:1
        /// (default: the broker places them)
        #[arg(long, value_name = "ASSIGNMENT", value_parser = parse_replica_assignment)]
        replica_assignment: Option<ReplicaAssignment>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a topic and its data
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            TopicCommand::Create {
                name,
                partitions,
                replication_factor,
                replica_assignment,
                configs,
                if_not_exists,
                client,
            } => {
                if partitions < 1 {
                    anyhow::bail!("--partitions must be at least 1, got {partitions}");
                }
                let mut c = client.connect().await?;
                let partitions = replica_assignment
                    .as_ref()
                    .map_or(partitions, |a| i32::try_from(a.0.len()).unwrap_or(i32::MAX));
                let created = match &replica_assignment {
                    Some(a) => c.create_topic_with_assignment(&name, &a.0, &configs).await,
                    None => {
                        c.create_topic(&name, partitions, replication_factor, &configs)
                            .await
                    }
                };
                match created {
                    Err(e) if if_not_exists && e.kafka_code() == Some(36) => {
                        report(&client, &name, "exists", "topic already exists")
                    }
                    Err(e) => Err(e.into()),
                    Ok(()) => report(
                        &client,
                        &name,
                        "created",
                        &format!("created topic {name} with {partitions} partition(s)"),
                    ),
                }
            }
            TopicCommand::List { internal, client } => list(&client, internal).await,
            TopicCommand::Describe { name, client } => describe(&client, &name).await,
            TopicCommand::Alter {
                name,
                configs,
                delete_configs,
                partitions,
                client,
            } => {
                if configs.is_empty() && delete_configs.is_empty() && partitions.is_none() {
                    anyhow::bail!(
                        "nothing to change: give --config KEY=VALUE, --delete-config KEY or --partitions N"
                    );
                }
                let mut c = client.connect().await?;
                if let Some(n) = partitions {
                    c.create_partitions(&name, n).await?;
                }
                if !configs.is_empty() || !delete_configs.is_empty() {
                    c.alter_topic_configs(&name, &configs, &delete_configs)
                        .await?;
                }
                report(&client, &name, "altered", &format!("altered topic {name}"))
            }
            TopicCommand::AddPartitions {
                name,
                partitions,
                replica_assignment,
                client,
            } => {
                let mut c = client.connect().await?;
                match &replica_assignment {
                    Some(a) => {
                        c.create_partitions_with_assignment(&name, partitions, Some(&a.0))
                            .await?
                    }
                    None => c.create_partitions(&name, partitions).await?,
                }
                report(
                    &client,
                    &name,
                    "altered",
                    &format!("topic {name} now has {partitions} partition(s)"),
                )
            }
            TopicCommand::Delete { names, client } => {
                let mut c = client.connect().await?;
                for name in &names {
                    c.delete_topic(name).await?;
                    report(&client, name, "deleted", &format!("deleted topic {name}"))?;
                }
                Ok(())
            }
        }
    })
}

/// Parses Kafka's `--replica-assignment` format: partitions separated by `,`, the brokers of
/// one partition by `:`, preferred leader first (`1:2:3,2:3:1`). Every partition must have the
/// same number of replicas, none twice.
pub fn parse_replica_assignment(s: &str) -> Result<ReplicaAssignment, String> {
    parse_assignment_lists(s).map(ReplicaAssignment)
}

/// A parsed `--replica-assignment`: one replica list per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAssignment(pub Vec<Vec<i32>>);

fn parse_assignment_lists(s: &str) -> Result<Vec<Vec<i32>>, String> {
    let mut out: Vec<Vec<i32>> = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        let mut replicas = Vec::new();
        for b in part.split(':') {
            let id: i32 = b.trim().parse().map_err(|_| {
                format!("partition {i}: `{b}` is not a broker id (expected e.g. 1:2:3,2:3:1)")
            })?;
            if id < 0 {
                return Err(format!("partition {i}: broker id {id} is negative"));
            }
            if replicas.contains(&id) {
                return Err(format!("partition {i}: broker {id} is listed twice"));
            }
            replicas.push(id);
        }
        if let Some(first) = out.first() {
            if first.len() != replicas.len() {
                return Err(format!(
                    "partition {i} has {} replicas, partition 0 has {}: every partition needs the same replication factor",
                    replicas.len(),
                    first.len()
                ));
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

fn report(client: &ClientArgs, topic: &str, status: &str, text: &str) -> anyhow::Result<()> {
    if client.json() {
        println!("{}", json!({ "topic": topic, "status": status }));
    } else {
        println!("{text}");
    }
    Ok(())
}

async fn list(client: &ClientArgs, internal: bool) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let md = c.metadata(None, false).await?;
    let mut topics: Vec<_> = md
        .topics
        .into_iter()
        .filter(|t| internal || !(t.is_internal || t.name.starts_with("__")))
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    if client.json() {
        let v: Vec<_> = topics
            .iter()
            .map(|t| json!({ "name": t.name, "partitions": t.partitions.len(), "internal": t.is_internal }))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut t = Table::new(&["NAME", "PARTITIONS"]);
        for topic in &topics {
            t.row(vec![topic.name.clone(), topic.partitions.len().to_string()]);
        }
        t.print();
    }
    Ok(())
}

async fn describe(client: &ClientArgs, name: &str) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let topic = c.topic(name).await?;
    let parts: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    // Offsets come from each partition's leader; one that cannot be reached (a broker just
    // killed, not yet fenced) must not hide the replica state this command is for.
    let bounds = match c.offset_bounds(name, &parts).await {
        Ok(b) => b,
        Err(_) => {
            let mut b = std::collections::BTreeMap::new();
            for &p in &parts {
                if let Ok(one) = c.offset_bounds(name, &[p]).await {
                    b.extend(one);
                }
            }
            b
        }
    };
    // Sizes need DescribeLogDirs, which not every broker serves; without it the column is "-".
    let sizes = c.leader_sizes(name).await.unwrap_or_default();
    let configs = c.describe_topic_configs(name).await?;
    let bound = |p: i32| bounds.get(&p).copied().unwrap_or((-1, -1));
    if client.json() {
        println!(
            "{}",
            sluice_client::json::topic(&topic, &bounds, &sizes, &configs)
        );
        return Ok(());
    }
    println!("NAME        {name}");
    println!("PARTITIONS  {}", topic.partitions.len());
    println!("INTERNAL    {}", topic.is_internal);
    println!();
    let mut t = Table::new(&[
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
        "OFFLINE",
        "LOG-START-OFFSET",
        "LOG-END-OFFSET",
        "SIZE",
    ]);
    for p in &topic.partitions {
        let (start, end) = bound(p.partition);
        let size = sizes
            .get(&p.partition)
            .map_or_else(|| "-".to_owned(), |b| b.to_string());
        t.row(vec![
            p.partition.to_string(),
            p.leader.to_string(),
            p.leader_epoch.to_string(),
            format!("{:?}", p.replicas),
            format!("{:?}", p.isr),
            format!("{:?}", p.offline_replicas),
            start.to_string(),
            end.to_string(),
            size,
        ]);
    }
    t.print();
    println!();
    let mut t = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for cfg in &configs {
        let value = if cfg.is_sensitive {
            "(sensitive)".to_owned()
        } else {
            cfg.value.clone().unwrap_or_else(|| "-".into())
        };
        t.row(vec![cfg.name.clone(), value, cfg.source_name().to_owned()]);
    }
    t.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_assignment_parses_kafkas_format() {
        assert_eq!(
            parse_replica_assignment("1:2:3,2:3:1").unwrap().0,
            vec![vec![1, 2, 3], vec![2, 3, 1]]
        );
        assert_eq!(parse_replica_assignment("4").unwrap().0, vec![vec![4]]);
        assert!(parse_replica_assignment("1:1")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_replica_assignment("1:2,3")
            .unwrap_err()
            .contains("replication factor"));
        assert!(parse_replica_assignment("1:x")
            .unwrap_err()
            .contains("not a broker id"));
        assert!(parse_replica_assignment("-1").is_err());
        assert!(parse_replica_assignment("").is_err());
    }
}
