//! `sluice`: the broker and its tools in one binary. This crate only parses the command line
//! and wires the library crates together.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
mod serve;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible log and work-queue broker in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (Kafka protocol and HTTP listeners).
    Serve(Box<serve::ServeArgs>),
    /// Create, list, describe, alter and delete topics.
    Topic(cli::topic::TopicArgs),
    /// Write lines from stdin or a file to a topic.
    Produce(Box<cli::produce::ProduceArgs>),
    /// Print records from a topic, optionally as a member of a consumer group.
    Consume(Box<cli::consume::ConsumeArgs>),
    /// List, describe and delete consumer groups; reset their offsets.
    Group(cli::group::GroupArgs),
    /// Inspect share groups' dead letters; requeue them to their origin or discard them.
    Dlq(cli::dlq::DlqArgs),
    /// Register, fetch, list, check and delete schemas in the schema registry; set compatibility.
    Schema(cli::schema::SchemaArgs),
    /// List and describe transactions; find and abort hanging ones.
    Txn(cli::txn::TxnArgs),
    /// Cluster status, leader elections, replica moves and draining a node.
    Cluster(cli::cluster::ClusterArgs),
    /// Show, set and remove client quotas (byte rates, request percentage).
    Quota(cli::quota::QuotaArgs),
    /// Create, delete and list SCRAM users (SASL SCRAM-SHA-256/512 and PLAIN logins).
    User(cli::user::UserArgs),
    /// Create, list and delete ACLs (with `sluice serve --authorizer on`).
    Acl(cli::acl::AclArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Topic(args) => cli::topic::run(args),
        Command::Produce(args) => cli::produce::run(*args),
        Command::Consume(args) => cli::consume::run(*args),
        Command::Group(args) => cli::group::run(args),
        Command::Dlq(args) => cli::dlq::run(args),
        Command::Schema(args) => cli::schema::run(args),
        Command::Txn(args) => cli::txn::run(args),
        Command::Cluster(args) => cli::cluster::run(args),
        Command::Quota(args) => cli::quota::run(args),
        Command::User(args) => cli::user::run(args),
        Command::Acl(args) => cli::acl::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what went wrong, then (for the common cases) how to fix it.
            match cli::hint(&e) {
                Some(hint) => eprintln!("error: {e:#} — {hint}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(1)
        }
    }
}
