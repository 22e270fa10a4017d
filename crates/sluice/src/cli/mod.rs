//! The admin and data tools (`sluice topic|cluster|produce|consume|group|dlq|quota|txn|user`):
//! each talks the Kafka protocol to `--bootstrap-server` through `sluice-client`, secured as
//! the `--security-protocol`, `--sasl-*`, `--tls-*` flags or `--command-config` say (module
//! [`security`]). Output is a table for people by default and JSON with `--output json` for
//! scripts.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sluice_client::{Client, ClientConfig};

pub mod acl;
pub mod cluster;
pub mod consume;
pub mod dlq;
pub mod group;
pub mod produce;
pub mod quota;
pub mod record_format;
pub mod schema;
pub mod security;
pub mod table;
pub mod topic;
pub mod txn;
pub mod user;

/// Connection and output flags shared by every tool.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Broker to bootstrap from (host:port)
    #[arg(
        long,
        env = "SLUICE_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
    /// Output format: text (tables for people) or json (for scripts)
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Bound on each request to the broker, in milliseconds
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
    /// TLS and SASL.
    #[command(flatten)]
    pub security: security::SecurityArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

impl ClientArgs {
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(self.bootstrap_server.clone());
        config.request_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        config.security = self.security.resolve()?;
        Ok(Client::connect(config).await?)
    }
}

/// Runs one tool's future on a single-threaded runtime: the tools do one thing at a time.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(f)
}

/// Adds what to do about the common failures to the one line printed on error.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    use sluice_client::Error;
    let client_error = e.chain().find_map(|c| c.downcast_ref::<Error>())?;
    match client_error {
        Error::Connect { .. } => {
            Some("is `sluice serve` running? (set --bootstrap-server or SLUICE_BOOTSTRAP_SERVER)")
        }
        Error::Timeout { what, .. } if what == "connecting" => {
            Some("is the broker reachable? (set --bootstrap-server or SLUICE_BOOTSTRAP_SERVER)")
        }
        Error::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Some(
                "if the listener needs TLS or SASL, set --security-protocol and its settings \
                 (--sasl-*, --tls-* or --command-config)",
            )
        }
        Error::Sasl { code: Some(33), .. } => {
            Some("pick a mechanism the broker offers with --sasl-mechanism (SLUICE_SASL_MECHANISM)")
        }
        // ILLEGAL_SASL_STATE from a listener without SASL, or no SaslHandshake offered at all.
        Error::Sasl { reason, .. } if reason.contains("does not take SASL") => {
            Some("is it a PLAINTEXT or SSL listener? check --security-protocol and the port")
        }
        Error::Sasl { .. } => Some(
            "check the user name and password (--sasl-username, SLUICE_SASL_PASSWORD) and \
             --sasl-mechanism; `sluice user list` shows the users and their mechanisms",
        ),
        Error::Tls { detail, .. } => Some(tls_hint(detail)),
        Error::Kafka { code: 3, .. } => Some("`sluice topic list` shows the topics that exist"),
        Error::Kafka { code: 36, .. } => Some("pick another name, or delete the topic first"),
        Error::Kafka { code: 68, .. } => {
            Some("stop the group's consumers first (`sluice group describe` lists them)")
        }
        Error::Kafka { code: 69, .. } => Some("`sluice group list` shows the groups that exist"),
        _ => None,
    }
}

/// What to do about a failed TLS connection, from rustls's reason.
fn tls_hint(detail: &str) -> &'static str {
    if detail.contains("speaks TLS and this connection does not") {
        "set --security-protocol SSL or SASL_SSL, and --tls-ca"
    } else if detail.contains("CertificateRequired") {
        "the broker requires a client certificate: give --tls-cert and --tls-key"
    } else if detail.contains("NotValidForName") || detail.contains("not valid for name") {
        "the broker's certificate does not name the host connected to: connect by a name it \
         carries, or set --tls-server-name"
    } else if detail.contains("UnknownIssuer") || detail.contains("BadSignature") {
        "the broker's certificate is not signed by --tls-ca: give the CA that signed it"
    } else if detail.contains("Expired") || detail.contains("NotValidYet") {
        "the certificate is outside its validity period (check the clocks, renew the certificate)"
    } else if detail.contains("fatal alert") {
        "the broker refused the TLS session: is the client certificate (--tls-cert) signed by a \
         CA the broker trusts?"
    } else {
        "does the listener speak TLS? check --security-protocol and the port"
    }
}

/// Parses `key=value` (the value may contain '=').
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got `{s}`")),
    }
}

pub use sluice_client::now_ms;
