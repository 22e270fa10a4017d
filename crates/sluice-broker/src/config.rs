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
    /// Time to read a whole request once its size prefix arrived (`limits::REQUEST_READ_TIMEOUT_MS`).
    pub request_read_timeout: Duration,
    /// `queued.max.request.bytes`: request bytes in flight across all connections; at least
    /// `max_request_bytes`.
    pub queued_max_request_bytes: usize,
    /// HTTP: time to send the headers, and again the body, of a request.
    pub http_read_timeout: Duration,
    /// HTTP: concurrent connections.
    pub http_max_connections: usize,
    /// HTTP: `Host` values accepted (DNS-rebinding guard). `None`: the check is off.
    pub http_allowed_hosts: Option<Vec<HostPattern>>,
    /// `--console-read-only`: the console hides its write controls and the HTTP API refuses
    /// admin writes (`http.rs`).
    pub console_read_only: bool,
    /// `log.retention.check.interval.ms` (default 5 minutes).
    pub retention_check_interval: Duration,
    /// `log.cleaner.backoff.ms` (default 15 s): how often the log cleaner looks for work.
    pub log_cleaner_backoff: Duration,
    /// `group.initial.rebalance.delay.ms` (default 3000).
    pub initial_rebalance_delay_ms: u64,
    /// `--max-partitions`: user partitions this broker holds at most (each keeps files open).
    /// `None`: [`crate::limits::MAX_PARTITIONS_DEFAULT`] (`sluice serve` sizes it to the
    /// open-files limit instead).
    pub max_partitions: Option<usize>,
    /// `offsets.retention.minutes`, in ms: committed offsets of a group without members expire
    /// this long after their commit.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval: Duration,
    /// `fetch.max.bytes` (default 55 MiB): the most record bytes one Fetch or ShareFetch
    /// response carries, whatever the request asks (one batch more than this may go out, KIP-74).
    pub fetch_max_bytes: i32,
    /// `transaction.max.timeout.ms` (default 900000).
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (default 10 s).
    pub transaction_abort_interval: Duration,
    /// `transactional.id.expiration.ms` (default 7 days).
    pub transactional_id_expiration_ms: i64,
    /// `--cluster-addr`: listen on and advertise this `host:port` for cluster traffic (quorum,
    /// controller, replica fetches). `None` without `--voters` (a single node, no network).
    pub cluster_addr: Option<String>,
    /// `--voters`: node id → cluster address of every voter of the metadata quorum, identical
    /// on every node. Empty: this node is the single voter (no network).
    pub voters: std::collections::BTreeMap<u64, String>,
    /// `--rack` (`broker.rack`).
    pub rack: Option<String>,
    /// `--default-replication-factor` (`default.replication.factor`); `None` = min(3, live
    /// brokers).
    pub default_replication_factor: Option<i16>,
    /// `--broker-session-timeout-ms` (`broker.session.timeout.ms`, default 9000).
    pub broker_session_timeout_ms: u64,
    /// `--broker-heartbeat-interval-ms` (`broker.heartbeat.interval.ms`, default 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// Listeners, TLS, SASL (`security/`; docs/SECURITY.md).
    pub security: crate::security::SecurityConfig,
}

impl BrokerConfig {
    /// The Kafka listeners to open: `--listener`, or the one PLAINTEXT listener of
    /// `--kafka-addr` (the zero-config default).
    pub fn kafka_listeners(&self) -> Vec<crate::security::ListenerSpec> {
        if self.security.listeners.is_empty() {
            vec![crate::security::ListenerSpec::plaintext(
                self.kafka_addr,
                self.advertised_kafka_addr.clone(),
            )]
        } else {
            self.security.listeners.clone()
        }
    }
}

/// Default `broker.session.timeout.ms`.
pub const DEFAULT_BROKER_SESSION_TIMEOUT_MS: u64 = 9_000;
/// Default `broker.heartbeat.interval.ms`.
pub const DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS: u64 = 2_000;

/// Parses `--voters`: `ID@HOST:PORT` entries separated by commas; ids ≥ 0 and distinct.
pub fn parse_voters(s: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut voters = std::collections::BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, addr)) = entry.split_once('@') else {
            return Err(format!(
                "invalid voter {entry:?}: use ID@HOST:PORT, e.g. 1@10.0.0.1:9093"
            ));
        };
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|&i| i <= i32::MAX as u64)
            .ok_or_else(|| {
                format!(
                    "invalid voter id in {entry:?}: use a node id from 0 to {}",
                    i32::MAX
                )
            })?;
        check_host_port(addr.trim()).map_err(|e| format!("invalid voter {entry:?}: {e}"))?;
        if voters.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("voter id {id} appears twice in --voters"));
        }
    }
    if voters.is_empty() {
        return Err("--voters lists no voter: use ID@HOST:PORT,…".into());
    }
    Ok(voters)
}

/// Checks a `host:port` (host non-empty, port 1..=65535; IPv6 in brackets).
pub fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not HOST:PORT"));
    };
    if host.is_empty() || host.len() > 255 {
        return Err(format!("{s:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?}: the port must be 1-65535")),
    }
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
            request_read_timeout: Duration::from_millis(crate::limits::REQUEST_READ_TIMEOUT_MS),
            queued_max_request_bytes: crate::limits::QUEUED_MAX_REQUEST_BYTES,
            http_read_timeout: Duration::from_millis(crate::limits::HTTP_READ_TIMEOUT_MS),
            http_max_connections: crate::limits::HTTP_MAX_CONNECTIONS,
            http_allowed_hosts: Some(HostPattern::defaults_for(
                "127.0.0.1:8081".parse().expect("literal address"),
            ))
            .filter(|v| !v.is_empty()),
            console_read_only: false,
            retention_check_interval: Duration::from_secs(300),
            log_cleaner_backoff: Duration::from_millis(crate::limits::LOG_CLEANER_BACKOFF_MS),
            initial_rebalance_delay_ms: 3000,
            max_partitions: None,
            offsets_retention: Duration::from_millis(crate::limits::OFFSETS_RETENTION_MS),
            offsets_retention_check_interval: Duration::from_millis(
                crate::limits::OFFSETS_RETENTION_CHECK_INTERVAL_MS,
            ),
            fetch_max_bytes: crate::limits::FETCH_MAX_BYTES,
            transaction_max_timeout_ms: crate::limits::TRANSACTION_MAX_TIMEOUT_MS,
            transaction_abort_interval: Duration::from_millis(
                crate::limits::TRANSACTION_ABORT_INTERVAL_MS,
            ),
            transactional_id_expiration_ms: crate::limits::TRANSACTIONAL_ID_EXPIRATION_MS,
            cluster_addr: None,
            voters: std::collections::BTreeMap::new(),
            rack: None,
            default_replication_factor: None,
            broker_session_timeout_ms: DEFAULT_BROKER_SESSION_TIMEOUT_MS,
            broker_heartbeat_interval_ms: DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS,
            security: Default::default(),
        }
    }
}

/// One entry of `--http-allowed-hosts`: a host name or IP literal (IPv6 in brackets), with a
/// port or without (then any port matches). Compared case-insensitively with the `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let (host, port) = split_host(s.trim()).ok_or_else(|| format!("invalid host {s:?}"))?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(format!("invalid host {s:?}"));
        }
        Ok(HostPattern {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The default allow-list for an HTTP listener bound to `addr`: the bound IP and the
    /// localhost names, any port. Empty for a wildcard address (0.0.0.0, ::): the broker cannot
    /// know which names reach it, so the check is off unless `--http-allowed-hosts` is given.
    pub fn defaults_for(addr: SocketAddr) -> Vec<HostPattern> {
        if addr.ip().is_unspecified() {
            return Vec::new();
        }
        let mut out: Vec<HostPattern> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| HostPattern {
                host: (*h).to_string(),
                port: None,
            })
            .collect();
        let ip = addr.ip().to_string();
        if !out.iter().any(|p| p.host == ip) {
            out.push(HostPattern {
                host: ip,
                port: None,
            });
        }
        out
    }

    /// Whether a `Host` header value matches this pattern.
    pub fn matches(&self, host_header: &str) -> bool {
        match split_host(host_header.trim()) {
            Some((host, port)) => {
                host.eq_ignore_ascii_case(&self.host) && (self.port.is_none() || self.port == port)
            }
            None => false,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => write!(f, "{host}"),
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets, or a bare IPv6 literal without a port) into the
/// host without brackets and the port. `None` when the port is not a number.
fn split_host(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => {
            let (host, port) = s.split_once(':')?;
            Some((host, Some(port.parse().ok()?)))
        }
        _ => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let any_port = HostPattern::parse("LocalHost").unwrap();
        assert!(any_port.matches("localhost"));
        assert!(any_port.matches("localhost:8081"));
        assert!(!any_port.matches("localhost.evil.example"));
        assert!(!any_port.matches("evil.example"));
        assert!(!any_port.matches("localhost:notaport"));
        let with_port = HostPattern::parse("reg.example:8081").unwrap();
        assert!(with_port.matches("REG.example:8081"));
        assert!(!with_port.matches("reg.example:8082"));
        assert!(!with_port.matches("reg.example"));
        let v6 = HostPattern::parse("[::1]").unwrap();
        assert!(v6.matches("[::1]:8081"));
        assert!(v6.matches("[::1]"));
        assert_eq!(HostPattern::parse("::1").unwrap(), v6);
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("a b").is_err());
        assert!(HostPattern::parse("x:99999").is_err());
    }

    #[test]
    fn odd_host_headers_never_match_or_panic() {
        let p = HostPattern::parse("localhost").unwrap();
        for h in [
            "",
            "[",
            "]",
            "[]",
            "[]:",
            "[::1",
            "::1]",
            ":",
            "::",
            ":80",
            "[a]x",
            "[a]:",
            "[a]:x",
            "localhost:",
            "localhost:-1",
            "localhost:65536",
            "ä:1",
            "\u{0}",
            "local host",
            "localhost:1:2",
        ] {
            assert!(!p.matches(h), "{h:?}");
            let _ = HostPattern::parse(h);
        }
    }

    #[test]
    fn default_hosts_follow_the_bind_address() {
        let local = HostPattern::defaults_for("127.0.0.1:8081".parse().unwrap());
        assert!(local.iter().any(|p| p.matches("localhost:8081")));
        assert!(local.iter().any(|p| p.matches("127.0.0.1:1")));
        assert!(!local.iter().any(|p| p.matches("evil.example")));
        let lan = HostPattern::defaults_for("10.1.2.3:8081".parse().unwrap());
        assert!(lan.iter().any(|p| p.matches("10.1.2.3:8081")));
        assert!(HostPattern::defaults_for("0.0.0.0:8081".parse().unwrap()).is_empty());
        assert!(HostPattern::defaults_for("[::]:8081".parse().unwrap()).is_empty());
    }

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
