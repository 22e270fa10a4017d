//! The broker's settings (`sluice serve` flags, env variables and TOML file resolve into this).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// When appended data reaches the disk (BRIEF §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before acknowledging acks=1/all; concurrent producers share one fsync.
    Always,
    /// fsync every partition with unflushed data at this interval; acknowledge at once.
    Interval(Duration),
    /// Page cache only (Kafka's default); the OS writes back when it likes.
    Os,
}

impl std::str::FromStr for FlushPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FlushPolicy::Always),
            "os" => Ok(FlushPolicy::Os),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FlushPolicy::Interval(Duration::from_millis(ms))),
                _ => Err(format!(
                    "invalid flush policy {s:?}: use always, os, or interval:MS with MS > 0"
                )),
            },
        }
    }
}

impl std::fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushPolicy::Always => write!(f, "always"),
            FlushPolicy::Os => write!(f, "os"),
            FlushPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub kafka_addr: SocketAddr,
    /// host:port put in Metadata; defaults to the bound Kafka listener.
    pub advertised_kafka_addr: Option<String>,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub flush: FlushPolicy,
    /// `auto.create.topics.enable` (default true, as Kafka).
    pub auto_create_topics: bool,
    /// `num.partitions` for auto-created topics (default 1, as Kafka).
    pub default_partitions: i32,
    /// `socket.request.max.bytes` (default 100 MiB).
    pub max_request_bytes: usize,
    /// `max.connections`.
    pub max_connections: usize,
    /// `connections.max.idle.ms` (default 10 minutes).
    pub idle_timeout: Duration,
    /// `log.retention.check.interval.ms` (default 5 minutes).
    pub retention_check_interval: Duration,
    /// `group.initial.rebalance.delay.ms` (default 3000).
    pub initial_rebalance_delay_ms: u64,
    /// `fetch.max.bytes` (default 55 MiB): the most record bytes one Fetch or ShareFetch
    /// response carries, whatever the request asks (one batch more than this may go out, KIP-74).
    pub fetch_max_bytes: i32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            kafka_addr: "127.0.0.1:9092".parse().expect("literal address"),
            advertised_kafka_addr: None,
            http_addr: "127.0.0.1:8081".parse().expect("literal address"),
            data_dir: PathBuf::from("./sluice-data"),
            flush: FlushPolicy::Always,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: crate::limits::MAX_REQUEST_BYTES,
            max_connections: crate::limits::MAX_CONNECTIONS,
            idle_timeout: Duration::from_millis(crate::limits::IDLE_TIMEOUT_MS),
            retention_check_interval: Duration::from_secs(300),
            initial_rebalance_delay_ms: 3000,
            fetch_max_bytes: crate::limits::FETCH_MAX_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flush_policies() {
        assert_eq!("always".parse(), Ok(FlushPolicy::Always));
        assert_eq!("os".parse(), Ok(FlushPolicy::Os));
        assert_eq!(
            "interval:250".parse(),
            Ok(FlushPolicy::Interval(Duration::from_millis(250)))
        );
        assert!("interval:0".parse::<FlushPolicy>().is_err());
        assert!("sometimes".parse::<FlushPolicy>().is_err());
    }
}
