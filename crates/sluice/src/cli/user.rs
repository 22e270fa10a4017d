//! `sluice user create|delete|list`: SCRAM users (what `kafka-configs.sh --entity-type users`
//! does with `SCRAM-SHA-256=[iterations=…,password=…]`). Over the Kafka protocol
//! (DescribeUserScramCredentials, AlterUserScramCredentials), so it works against any Kafka
//! broker too. The password is salted here; only the salted password is sent.

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use sluice_auth::scram::ScramMechanism;

use super::table::Table;
use super::{block_on, ClientArgs};

#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user, or set a new password (SCRAM credentials for each mechanism)
    Create {
        /// The user name (the principal is User:NAME)
        name: String,
        /// The password; without it, the first line of stdin (keeps it out of `ps`)
        #[arg(long, env = "SLUICE_USER_PASSWORD")]
        password: Option<String>,
        /// SCRAM-SHA-256 or SCRAM-SHA-512; repeatable [default: both]
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384)
        #[arg(long, default_value_t = sluice_broker::security::DEFAULT_SCRAM_ITERATIONS)]
        iterations: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a user's credentials
    Delete {
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512; repeatable [default: every mechanism it has]
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List users and their mechanisms (never a password or key)
    List {
        /// Only these users
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(args: UserArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            UserCommand::Create {
                name,
                password,
                mechanisms,
                iterations,
                client,
            } => create(&client, &name, password, &mechanisms, iterations).await,
            UserCommand::Delete {
                name,
                mechanisms,
                client,
            } => delete(&client, &name, &mechanisms).await,
            UserCommand::List { names, client } => list(&client, &names).await,
        }
    })
}

fn mechanisms(names: &[String]) -> anyhow::Result<Vec<ScramMechanism>> {
    if names.is_empty() {
        return Ok(vec![ScramMechanism::Sha256, ScramMechanism::Sha512]);
    }
    names
        .iter()
        .map(|n| {
            ScramMechanism::from_name(n.trim())
                .with_context(|| format!("unknown mechanism {n:?}: SCRAM-SHA-256 or SCRAM-SHA-512"))
        })
        .collect()
}

async fn create(
    client: &ClientArgs,
    name: &str,
    password: Option<String>,
    mechanism_names: &[String],
    iterations: u32,
) -> anyhow::Result<()> {
    let mechanisms = mechanisms(mechanism_names)?;
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        bail!("the password is empty: give --password or a line on stdin");
    }
    let mut c = client.connect().await?;
    c.upsert_scram_user(name, &password, &mechanisms, iterations)
        .await?;
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    if client.json() {
        println!(
            "{}",
            json!({"user": name, "mechanisms": names, "iterations": iterations})
        );
    } else {
        println!("user {name}: set {} credentials", names.join(" and "));
    }
    Ok(())
}

async fn delete(client: &ClientArgs, name: &str, mechanism_names: &[String]) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let mechanisms = if mechanism_names.is_empty() {
        let users = c.describe_scram_users(&[name.to_string()]).await?;
        users
            .into_iter()
            .flat_map(|u| u.credentials.into_iter().map(|(m, _)| m))
            .collect()
    } else {
        mechanisms(mechanism_names)?
    };
    c.delete_scram_user(name, &mechanisms).await?;
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    if client.json() {
        println!("{}", json!({"user": name, "deleted": names}));
    } else {
        println!("user {name}: deleted {} credentials", names.join(" and "));
    }
    Ok(())
}

async fn list(client: &ClientArgs, names: &[String]) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let users = c.describe_scram_users(names).await?;
    if client.json() {
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                json!({"user": u.name, "credentials": u.credentials.iter()
                    .map(|(m, i)| json!({"mechanism": m.name(), "iterations": i}))
                    .collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    let mut t = Table::new(&["USER", "MECHANISMS"]);
    for u in &users {
        let mechs: Vec<String> = u
            .credentials
            .iter()
            .map(|(m, i)| format!("{} (iterations {i})", m.name()))
            .collect();
        t.row(vec![u.name.clone(), mechs.join(", ")]);
    }
    print!("{}", t.render());
    Ok(())
}
