//! `sluice group list|describe|delete|reset-offsets`: consumer group administration, shaped
//! after Kafka's kafka-consumer-groups tool (same columns; reset-offsets is a dry run that
//! prints the plan unless `--execute`).

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;
use sluice_client::parse_datetime;
use sluice_client::reset::{plan_json, ResetTo};

use super::table::Table;
use super::{block_on, ClientArgs};

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List consumer groups
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a group's state, members, and per partition its committed offset, log end and lag
    /// (lag counts up to the last stable offset: what a read_committed consumer can read)
    Describe {
        group: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a group and its committed offsets (the group must have no members)
    Delete {
        group: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a group's committed offsets on a topic; prints the plan unless --execute
    ResetOffsets(ResetArgs),
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("strategy")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])
))]
struct ResetArgs {
    /// The group whose offsets move (it must have no active members)
    #[arg(short, long)]
    group: String,
    /// The topic whose partitions move (all of its partitions)
    #[arg(short, long)]
    topic: String,
    /// Move to each partition's log start offset
    #[arg(long)]
    to_earliest: bool,
    /// Move to each partition's log end offset
    #[arg(long)]
    to_latest: bool,
    /// Move to this offset (clamped to the partition's start and end)
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// Move to the first record at or after this time (ISO 8601, e.g. 2026-01-02T03:04:05Z)
    #[arg(long, value_name = "ISO8601", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// Move each committed offset by N (negative: back), clamped to start and end
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Apply the plan (without it, only print it)
    #[arg(long)]
    execute: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            GroupCommand::List { client } => list(&client).await,
            GroupCommand::Describe { group, client } => describe(&client, &group).await,
            GroupCommand::Delete { group, client } => {
                let mut c = client.connect().await?;
                let coordinator = c.find_coordinator(&group).await?;
                c.delete_group(&coordinator, &group).await?;
                if client.json() {
                    println!("{}", json!({ "group": group, "status": "deleted" }));
                } else {
                    println!("deleted group {group}");
                }
                Ok(())
            }
            GroupCommand::ResetOffsets(args) => reset_offsets(args).await,
        }
    })
}

async fn list(client: &ClientArgs) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let groups = c.list_groups().await?;
    if client.json() {
        let v: Vec<_> = groups
            .iter()
            .map(|g| json!({ "group": g.group_id, "state": g.state, "protocol_type": g.protocol_type }))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
        for g in &groups {
            t.row(vec![
                g.group_id.clone(),
                g.state.clone().unwrap_or_else(|| "-".into()),
                g.protocol_type.clone(),
            ]);
        }
        t.print();
    }
    Ok(())
}

async fn describe(client: &ClientArgs, group: &str) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let pos = c.group_position(group).await?;
    if pos.is_unknown() {
        anyhow::bail!(
            "consumer group {group} does not exist (`sluice group list` shows the groups)"
        );
    }
    for w in &pos.warnings {
        eprintln!("warning: {w}");
    }
    let desc = &pos.description;
    if client.json() {
        println!("{}", sluice_client::json::group(group, &pos));
        return Ok(());
    }
    println!("GROUP        {group}");
    println!("STATE        {}", desc.state);
    println!("COORDINATOR  {}", pos.coordinator);
    println!("MEMBERS      {}", desc.members.len());
    println!();
    let dash = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for r in &pos.partitions {
        let m = r.member.map(|i| &desc.members[i]);
        t.row(vec![
            r.topic.clone(),
            r.partition.to_string(),
            dash(r.committed),
            dash(r.log_end),
            dash(r.lag()),
            m.map_or("-".into(), |m| m.member_id.clone()),
            m.map_or("-".into(), |m| m.client_host.clone()),
            m.map_or("-".into(), |m| m.client_id.clone()),
        ]);
    }
    t.print();
    Ok(())
}

async fn reset_offsets(args: ResetArgs) -> anyhow::Result<()> {
    // The plan is sluice_client's, shared with the HTTP API (`/v1/groups/{g}/offsets/reset`).
    let to = if args.to_earliest {
        ResetTo::Earliest
    } else if args.to_latest {
        ResetTo::Latest
    } else if let Some(n) = args.to_offset {
        ResetTo::Offset(n)
    } else if let Some(n) = args.shift_by {
        ResetTo::Shift(n)
    } else if let Some(ts) = args.to_datetime {
        ResetTo::Timestamp(ts)
    } else {
        // clap's required `strategy` group makes this unreachable; say so rather than guess.
        anyhow::bail!(
            "give one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"
        );
    };
    let mut c = args.client.connect().await?;
    let plan = c.plan_offset_reset(&args.group, &args.topic, to).await?;
    if args.execute {
        c.apply_offset_reset(&plan)
            .await
            .context("applying the new offsets")?;
    }
    if args.client.json() {
        println!("{}", plan_json(&plan, args.execute));
    } else {
        let mut t = Table::new(&[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "NEW-OFFSET",
        ]);
        for r in &plan.rows {
            t.row(vec![
                plan.group.clone(),
                plan.topic.clone(),
                r.partition.to_string(),
                r.current.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                r.new.to_string(),
            ]);
        }
        t.print();
        if !args.execute {
            eprintln!("dry run: nothing changed; add --execute to apply this plan");
        }
    }
    Ok(())
}
