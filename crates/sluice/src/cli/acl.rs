//! `sluice acl create|list|delete`: ACL bindings, as `kafka-acls.sh --add|--list|--remove`
//! manages them. Over the Kafka protocol (CreateAcls, DescribeAcls, DeleteAcls), so it works
//! against any Kafka broker too.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use sluice_acl::{
    AccessControlEntry, AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternType,
    ResourcePattern, ResourceType, CLUSTER_NAME,
};

use super::table::Table;
use super::{block_on, ClientArgs};

#[derive(Args, Debug)]
pub struct AclArgs {
    #[command(subcommand)]
    command: AclCommand,
}

/// The resource: exactly one of these (for create), any for list and delete.
#[derive(Args, Debug, Clone, Default)]
struct ResourceArgs {
    /// A topic (with --prefixed: every topic whose name starts with it; `*`: every topic)
    #[arg(long)]
    topic: Option<String>,
    /// A consumer or share group
    #[arg(long)]
    group: Option<String>,
    /// A transactional id
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster (kafka-cluster)
    #[arg(long)]
    cluster: bool,
    /// The name is a prefix (PREFIXED pattern) rather than a literal name
    #[arg(long)]
    prefixed: bool,
}

impl ResourceArgs {
    fn resources(&self) -> Vec<(ResourceType, String)> {
        let mut out = Vec::new();
        if let Some(t) = &self.topic {
            out.push((ResourceType::Topic, t.clone()));
        }
        if let Some(g) = &self.group {
            out.push((ResourceType::Group, g.clone()));
        }
        if let Some(t) = &self.transactional_id {
            out.push((ResourceType::TransactionalId, t.clone()));
        }
        if self.cluster {
            out.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        out
    }

    fn pattern_type(&self) -> PatternType {
        if self.prefixed {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        }
    }
}

#[derive(Subcommand, Debug)]
enum AclCommand {
    /// Add ACLs: PRINCIPAL may (or, with --deny, may not) do each OPERATION on the resources
    Create {
        /// Who: User:NAME (User:* for everyone)
        #[arg(long)]
        principal: String,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
        /// ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL; repeatable
        #[arg(long = "operation", value_name = "OPERATION")]
        operations: Vec<String>,
        /// What a producer needs: WRITE, DESCRIBE and CREATE on the topics (and WRITE,
        /// DESCRIBE on the transactional id if given), as kafka-acls.sh --producer
        #[arg(long)]
        producer: bool,
        /// What a consumer needs: READ, DESCRIBE on the topics, READ on the group, as
        /// kafka-acls.sh --consumer
        #[arg(long)]
        consumer: bool,
        /// A DENY rule (deny wins over every allow)
        #[arg(long)]
        deny: bool,
        /// The client address the rule applies to [default: * (any)]
        #[arg(long, default_value = "*")]
        host: String,
        #[command(flatten)]
        resource: ResourceArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List ACLs, all or those matching the filters
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        resource: ResourceArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete the ACLs matching the filters (at least one filter)
    Delete {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long = "operation", value_name = "OPERATION")]
        operation: Option<String>,
        #[command(flatten)]
        resource: ResourceArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(args: AclArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            AclCommand::Create {
                principal,
                operations,
                producer,
                consumer,
                deny,
                host,
                resource,
                client,
            } => {
                let bindings = bindings(
                    &principal,
                    &operations,
                    producer,
                    consumer,
                    deny,
                    &host,
                    &resource,
                )?;
                let mut c = client.connect().await?;
                c.create_acls(&bindings).await?;
                print_bindings(&client, &bindings, "created");
                Ok(())
            }
            AclCommand::List {
                principal,
                resource,
                client,
            } => {
                let mut c = client.connect().await?;
                let mut all = Vec::new();
                for f in filters(principal.as_deref(), None, &resource)? {
                    all.extend(c.describe_acls(&f).await?);
                }
                print_bindings(&client, &all, "");
                Ok(())
            }
            AclCommand::Delete {
                principal,
                operation,
                resource,
                client,
            } => {
                if principal.is_none() && operation.is_none() && resource.resources().is_empty() {
                    bail!("give a filter (--principal, --operation, --topic, --group, --transactional-id, --cluster): deleting every ACL needs them named");
                }
                let mut c = client.connect().await?;
                let mut all = Vec::new();
                for f in filters(principal.as_deref(), operation.as_deref(), &resource)? {
                    all.extend(c.delete_acls(&f).await?);
                }
                print_bindings(&client, &all, "deleted");
                Ok(())
            }
        }
    })
}

fn operation(name: &str) -> anyhow::Result<AclOperation> {
    AclOperation::from_name(name.trim())
        .filter(|o| o.is_concrete())
        .with_context(|| format!("unknown operation {name:?}"))
}

fn bindings(
    principal: &str,
    operations: &[String],
    producer: bool,
    consumer: bool,
    deny: bool,
    host: &str,
    resource: &ResourceArgs,
) -> anyhow::Result<Vec<AclBinding>> {
    let permission = if deny {
        AclPermission::Deny
    } else {
        AclPermission::Allow
    };
    let resources = resource.resources();
    let mut wanted: Vec<(ResourceType, String, AclOperation)> = Vec::new();
    let explicit: Vec<AclOperation> = operations
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.trim().is_empty())
        .map(operation)
        .collect::<anyhow::Result<_>>()?;
    for (rt, name) in &resources {
        for op in &explicit {
            wanted.push((*rt, name.clone(), *op));
        }
        // The convenience sets kafka-acls.sh gives.
        match rt {
            ResourceType::Topic if producer => {
                for op in [
                    AclOperation::Write,
                    AclOperation::Describe,
                    AclOperation::Create,
                ] {
                    wanted.push((*rt, name.clone(), op));
                }
            }
            ResourceType::Topic if consumer => {
                for op in [AclOperation::Read, AclOperation::Describe] {
                    wanted.push((*rt, name.clone(), op));
                }
            }
            ResourceType::Group if consumer => wanted.push((*rt, name.clone(), AclOperation::Read)),
            ResourceType::TransactionalId if producer => {
                for op in [AclOperation::Write, AclOperation::Describe] {
                    wanted.push((*rt, name.clone(), op));
                }
            }
            _ => {}
        }
    }
    if resources.is_empty() {
        bail!("name a resource: --topic, --group, --transactional-id or --cluster");
    }
    if wanted.is_empty() {
        bail!("name an --operation (or --producer / --consumer)");
    }
    let out: Vec<AclBinding> = wanted
        .into_iter()
        .map(|(rt, name, op)| {
            AclBinding::new(
                ResourcePattern::new(rt, name, resource.pattern_type()),
                AccessControlEntry::new(principal, host, op, permission),
            )
        })
        .collect();
    for b in &out {
        b.validate()
            .map_err(|e| anyhow::anyhow!("{b}: {}", e.message()))?;
    }
    Ok(out)
}

fn filters(
    principal: Option<&str>,
    operation_name: Option<&str>,
    resource: &ResourceArgs,
) -> anyhow::Result<Vec<AclBindingFilter>> {
    let op = match operation_name {
        Some(o) => operation(o)?,
        None => AclOperation::Any,
    };
    let base = AclBindingFilter {
        principal: principal.map(str::to_string),
        operation: op,
        ..AclBindingFilter::ANY
    };
    let resources = resource.resources();
    if resources.is_empty() {
        return Ok(vec![base]);
    }
    Ok(resources
        .into_iter()
        .map(|(rt, name)| AclBindingFilter {
            resource_type: rt,
            name: Some(name),
            pattern_type: if resource.prefixed {
                PatternType::Prefixed
            } else {
                PatternType::Literal
            },
            ..base.clone()
        })
        .collect())
}

fn print_bindings(client: &ClientArgs, bindings: &[AclBinding], verb: &str) {
    if client.json() {
        let rows: Vec<_> = bindings
            .iter()
            .map(|b| {
                json!({
                    "resource_type": b.pattern.resource_type.name(),
                    "name": b.pattern.name,
                    "pattern_type": b.pattern.pattern_type.name(),
                    "principal": b.entry.principal,
                    "host": b.entry.host,
                    "operation": b.entry.operation.name(),
                    "permission": b.entry.permission.name(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    if !verb.is_empty() {
        println!("{verb} {} ACL(s)", bindings.len());
    }
    let mut t = Table::new(&[
        "RESOURCE",
        "NAME",
        "PATTERN",
        "PRINCIPAL",
        "HOST",
        "OPERATION",
        "PERMISSION",
    ]);
    for b in bindings {
        t.row(vec![
            b.pattern.resource_type.name().to_string(),
            b.pattern.name.clone(),
            b.pattern.pattern_type.name().to_string(),
            b.entry.principal.clone(),
            b.entry.host.clone(),
            b.entry.operation.name().to_string(),
            b.entry.permission.name().to_string(),
        ]);
    }
    print!("{}", t.render());
}
