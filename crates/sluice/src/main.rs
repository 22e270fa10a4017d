//! `sluice`: the broker and its tools in one binary. This crate only parses the command line
//! and wires the library crates together.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
