//! `sluice serve`: resolves settings (flag, then `SLUICE_*` environment variable, then the TOML
//! file given with `--config`, then the built-in default), sets up logging, and runs the broker
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use sluice_broker::{BrokerConfig, FlushPolicy};

/// Every setting is optional here so that a missing flag falls through to the file, then to
/// the default. clap reads the environment variable when the flag is absent.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys are the flag names without dashes).
    #[arg(long, env = "SLUICE_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Kafka protocol listener [default: 127.0.0.1:9092]
    #[arg(long, env = "SLUICE_KAFKA_ADDR")]
    kafka_addr: Option<SocketAddr>,
    /// host:port that clients are told to connect to [default: the Kafka listener]
    #[arg(long, env = "SLUICE_ADVERTISED_KAFKA_ADDR")]
    advertised_kafka_addr: Option<String>,
    /// HTTP listener: /health, /metrics [default: 127.0.0.1:8081]
    #[arg(long, env = "SLUICE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Data directory [default: ./sluice-data]
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// When data reaches the disk: always (fsync before acknowledging), interval:MS, or os
    /// [default: always]
    #[arg(long, env = "SLUICE_FLUSH")]
    flush: Option<String>,
    /// This broker's node id [default: 1]
    #[arg(long, env = "SLUICE_NODE_ID")]
    node_id: Option<i32>,
    /// Create topics on first use in Metadata (auto.create.topics.enable) [default: true]
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics (num.partitions) [default: 1]
    #[arg(long, env = "SLUICE_DEFAULT_PARTITIONS")]
    default_partitions: Option<i32>,
    /// Largest request accepted, in bytes (socket.request.max.bytes) [default: 104857600]
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<usize>,
    /// Most concurrent client connections (max.connections) [default: 10000]
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Close connections idle this long (connections.max.idle.ms) [default: 600000]
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// How often retention runs (log.retention.check.interval.ms) [default: 300000]
    #[arg(long, env = "SLUICE_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
    /// How long a new consumer group waits for more members (group.initial.rebalance.delay.ms)
    /// [default: 3000]
    #[arg(long, env = "SLUICE_INITIAL_REBALANCE_DELAY_MS")]
    initial_rebalance_delay_ms: Option<u64>,
    /// Most record bytes in one Fetch or ShareFetch response (fetch.max.bytes) [default: 57671680]
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES")]
    fetch_max_bytes: Option<i32>,
}

impl ServeArgs {
    /// Fills every unset field from `file`.
    fn or(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            kafka_addr: self.kafka_addr.or(file.kafka_addr),
            advertised_kafka_addr: self.advertised_kafka_addr.or(file.advertised_kafka_addr),
            http_addr: self.http_addr.or(file.http_addr),
            data_dir: self.data_dir.or(file.data_dir),
            flush: self.flush.or(file.flush),
            node_id: self.node_id.or(file.node_id),
            auto_create_topics: self.auto_create_topics.or(file.auto_create_topics),
            default_partitions: self.default_partitions.or(file.default_partitions),
            max_request_bytes: self.max_request_bytes.or(file.max_request_bytes),
            max_connections: self.max_connections.or(file.max_connections),
            idle_timeout_ms: self.idle_timeout_ms.or(file.idle_timeout_ms),
            retention_check_interval_ms: self
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms),
            initial_rebalance_delay_ms: self
                .initial_rebalance_delay_ms
                .or(file.initial_rebalance_delay_ms),
            fetch_max_bytes: self.fetch_max_bytes.or(file.fetch_max_bytes),
        }
    }

    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let d = BrokerConfig::default();
        let flush = match self.flush {
            Some(f) => f
                .parse::<FlushPolicy>()
                .map_err(anyhow::Error::msg)
                .context("--flush")?,
            None => d.flush,
        };
        if let Some(addr) = &self.advertised_kafka_addr {
            sluice_broker::broker::parse_host_port(addr).context("--advertised-kafka-addr")?;
        }
        let default_partitions = self.default_partitions.unwrap_or(d.default_partitions);
        if default_partitions < 1 {
            anyhow::bail!("--default-partitions must be at least 1, got {default_partitions}");
        }
        let max_request_bytes = self.max_request_bytes.unwrap_or(d.max_request_bytes);
        if max_request_bytes < 1024 || max_request_bytes > i32::MAX as usize {
            anyhow::bail!(
                "--max-request-bytes must be between 1024 and {}, got {max_request_bytes}",
                i32::MAX
            );
        }
        let fetch_max_bytes = self.fetch_max_bytes.unwrap_or(d.fetch_max_bytes);
        if fetch_max_bytes < 1 {
            anyhow::bail!("--fetch-max-bytes must be at least 1, got {fetch_max_bytes}");
        }
        Ok(BrokerConfig {
            node_id: self.node_id.unwrap_or(d.node_id),
            kafka_addr: self.kafka_addr.unwrap_or(d.kafka_addr),
            advertised_kafka_addr: self.advertised_kafka_addr,
            http_addr: self.http_addr.unwrap_or(d.http_addr),
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            flush,
            auto_create_topics: self.auto_create_topics.unwrap_or(d.auto_create_topics),
            default_partitions,
            max_request_bytes,
            max_connections: self.max_connections.unwrap_or(d.max_connections).max(1),
            idle_timeout: self
                .idle_timeout_ms
                .map_or(d.idle_timeout, Duration::from_millis),
            retention_check_interval: self
                .retention_check_interval_ms
                .map_or(d.retention_check_interval, |ms| {
                    Duration::from_millis(ms.max(1))
                }),
            initial_rebalance_delay_ms: self
                .initial_rebalance_delay_ms
                .unwrap_or(d.initial_rebalance_delay_ms),
            fetch_max_bytes,
        })
    }
}

fn resolve(args: ServeArgs) -> anyhow::Result<BrokerConfig> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str::<ServeArgs>(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => ServeArgs::default(),
    };
    args.or(file).into_config()
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); the broker and the consumer tool both stop on it.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Every segment keeps its log file open: raise the open-files limit so thousands of
/// partitions fit, as Kafka's docs advise. With the privilege to (root), the hard limit goes up
/// to the kernel's `fs.nr_open`; otherwise the soft limit goes up to the hard one.
fn raise_open_files_limit() {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(max) = nr_open {
        if rlimit::Resource::NOFILE.set(max, max).is_ok() {
            tracing::debug!(limit = max, "open files limit");
            return;
        }
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for people: logs written to files and pipes stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(sluice_broker::run(config, shutdown_signal()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let file: ServeArgs = toml::from_str(
            "kafka-addr = \"127.0.0.1:1111\"\nflush = \"os\"\ndefault-partitions = 3\n",
        )
        .unwrap();
        let flags = ServeArgs {
            kafka_addr: Some("127.0.0.1:2222".parse().unwrap()),
            ..ServeArgs::default()
        };
        let c = flags.or(file).into_config().unwrap();
        assert_eq!(c.kafka_addr.port(), 2222);
        assert_eq!(c.flush, FlushPolicy::Os);
        assert_eq!(c.default_partitions, 3);
        assert_eq!(c.http_addr.port(), 8081);
    }

    #[test]
    fn rejects_bad_values() {
        let bad = ServeArgs {
            flush: Some("never".into()),
            ..ServeArgs::default()
        };
        assert!(bad.into_config().is_err());
        assert!(toml::from_str::<ServeArgs>("no-such-key = 1").is_err());
    }
}
