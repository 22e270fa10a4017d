//! `sluice quota describe|alter`: client quotas (`producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage`) on users, client ids, both, or their defaults, as
//! `kafka-configs.sh --entity-type users|clients` sets them. Over the Kafka protocol
//! (DescribeClientQuotas, AlterClientQuotas), so it works against any Kafka broker too.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use sluice_client::quotas::{EntityPart, QuotaEntry};

use super::table::Table;
use super::{block_on, ClientArgs};

#[derive(Args, Debug)]
pub struct QuotaArgs {
    #[command(subcommand)]
    command: QuotaCommand,
}

/// Which entity: a user, a client id, or both; each named or the default.
#[derive(Args, Debug, Clone)]
struct EntityArgs {
    /// The user (principal name; `ANONYMOUS` for connections that did not authenticate)
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user: every user without a quota of their own
    #[arg(long)]
    user_default: bool,
    /// The client id (the clients' `client.id`)
    #[arg(long, conflicts_with = "client_id_default")]
    client_id: Option<String>,
    /// The default client id: every client id without a quota of its own
    #[arg(long)]
    client_id_default: bool,
}

impl EntityArgs {
    fn parts(&self) -> Vec<EntityPart> {
        let mut parts = Vec::new();
        if self.user.is_some() || self.user_default {
            parts.push(EntityPart {
                entity_type: "user".into(),
                name: self.user.clone(),
            });
        }
        if self.client_id.is_some() || self.client_id_default {
            parts.push(EntityPart {
                entity_type: "client-id".into(),
                name: self.client_id.clone(),
            });
        }
        parts
    }
}

#[derive(Subcommand, Debug)]
enum QuotaCommand {
    /// Show quotas: of one entity (exactly its parts), or of every entity
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set and remove quotas of one entity
    Alter {
        #[command(flatten)]
        entity: EntityArgs,
        /// Quotas to set, `KEY=VALUE[,KEY=VALUE…]` (producer_byte_rate, consumer_byte_rate:
        /// bytes per second; request_percentage: percent of one core); repeatable
        #[arg(long = "add-config", value_name = "KEY=VALUE")]
        add: Vec<String>,
        /// Quotas to remove, `KEY[,KEY…]`; repeatable
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
        /// Have the broker check the change without making it
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(args: QuotaArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            QuotaCommand::Describe { entity, client } => describe(&client, &entity).await,
            QuotaCommand::Alter {
                entity,
                add,
                delete,
                dry_run,
                client,
            } => alter(&client, &entity, &add, &delete, dry_run).await,
        }
    })
}

fn entity_text(parts: &[EntityPart]) -> String {
    parts
        .iter()
        .map(|p| match &p.name {
            Some(n) => format!("{}={n}", p.entity_type),
            None => format!("{}=<default>", p.entity_type),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn entry_json(e: &QuotaEntry) -> serde_json::Value {
    let entity: serde_json::Map<String, serde_json::Value> = e
        .entity
        .iter()
        .map(|p| (p.entity_type.clone(), json!(p.name)))
        .collect();
    let values: serde_json::Map<String, serde_json::Value> = e
        .values
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({"entity": entity, "quotas": values})
}

async fn describe(client: &ClientArgs, entity: &EntityArgs) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let entries = c.describe_client_quotas(&entity.parts()).await?;
    if client.json() {
        println!(
            "{}",
            serde_json::Value::Array(entries.iter().map(entry_json).collect())
        );
        return Ok(());
    }
    let mut t = Table::new(&["ENTITY", "QUOTA", "VALUE"]);
    for e in &entries {
        for (k, v) in &e.values {
            t.row(vec![entity_text(&e.entity), k.clone(), v.to_string()]);
        }
    }
    print!("{}", t.render());
    Ok(())
}

async fn alter(
    client: &ClientArgs,
    entity: &EntityArgs,
    add: &[String],
    delete: &[String],
    dry_run: bool,
) -> anyhow::Result<()> {
    let parts = entity.parts();
    if parts.is_empty() {
        bail!("name an entity: --user, --user-default, --client-id or --client-id-default");
    }
    let mut changes: Vec<(String, Option<f64>)> = Vec::new();
    for item in add
        .iter()
        .flat_map(|a| a.split(','))
        .filter(|i| !i.is_empty())
    {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("--add-config {item:?}: expected KEY=VALUE"))?;
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("--add-config {item:?}: {v:?} is not a number"))?;
        changes.push((k.trim().to_string(), Some(v)));
    }
    for k in delete
        .iter()
        .flat_map(|d| d.split(','))
        .filter(|k| !k.is_empty())
    {
        changes.push((k.trim().to_string(), None));
    }
    if changes.is_empty() {
        bail!("nothing to change: give --add-config or --delete-config");
    }
    let mut c = client.connect().await?;
    c.alter_client_quotas(&parts, &changes, dry_run).await?;
    let what = entity_text(&parts);
    if client.json() {
        println!(
            "{}",
            json!({"entity": what, "dry_run": dry_run, "changes": changes
                .iter()
                .map(|(k, v)| json!({"quota": k, "value": v}))
                .collect::<Vec<_>>()})
        );
    } else if dry_run {
        println!("the broker accepts the change to {what} (dry run: nothing changed)");
    } else {
        println!("altered quotas of {what}");
    }
    Ok(())
}
