//! `sluice serve`: resolves settings (flag, then `SLUICE_*` environment variable, then the TOML
//! file given with `--config`, then the built-in default), sets up logging, and runs the broker
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use sluice_auth::SaslMechanism;
use sluice_broker::config::HostPattern;
use sluice_broker::security::authz::AuthorizerSettings;
use sluice_broker::security::tls::{ClientAuth, TlsFiles};
use sluice_broker::security::{JwksSource, ListenerSpec, OAuthBearerConfig, SecurityConfig};
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
    /// Close a connection that has not sent a whole request this long after its size prefix
    /// [default: 30000]
    #[arg(long, env = "SLUICE_REQUEST_READ_TIMEOUT_MS")]
    request_read_timeout_ms: Option<u64>,
    /// Request bytes in flight across all connections; at least --max-request-bytes
    /// (queued.max.request.bytes) [default: 536870912]
    #[arg(long, env = "SLUICE_QUEUED_MAX_REQUEST_BYTES")]
    queued_max_request_bytes: Option<usize>,
    /// HTTP: time to send a request's headers, and again its body [default: 30000]
    #[arg(long, env = "SLUICE_HTTP_READ_TIMEOUT_MS")]
    http_read_timeout_ms: Option<u64>,
    /// HTTP: most concurrent connections [default: 1024]
    #[arg(long, env = "SLUICE_HTTP_MAX_CONNECTIONS")]
    http_max_connections: Option<usize>,
    /// HTTP: comma-separated Host values accepted (host or host:port; `*` accepts any)
    /// [default: the HTTP bind address and localhost, 127.0.0.1, [::1] with any port; any host
    /// when bound to 0.0.0.0 or ::]
    #[arg(long, env = "SLUICE_HTTP_ALLOWED_HOSTS")]
    http_allowed_hosts: Option<String>,
    /// The web console at /ui/ shows but never changes: its write controls are hidden, and the
    /// HTTP API's admin writes (/v1 except /v1/queues, /v3) are refused with 403 [default: false]
    #[arg(long, env = "SLUICE_CONSOLE_READ_ONLY", num_args = 0..=1, default_missing_value = "true")]
    console_read_only: Option<bool>,
    /// When HTTP authentication is on (any listener authenticates), /metrics needs credentials
    /// too, and DESCRIBE on the cluster; otherwise it stays open for scrapers [default: false]
    #[arg(long, env = "SLUICE_HTTP_METRICS_AUTH", num_args = 0..=1, default_missing_value = "true")]
    http_metrics_auth: Option<bool>,
    /// How often retention runs (log.retention.check.interval.ms) [default: 300000]
    #[arg(long, env = "SLUICE_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
    /// How often the log cleaner looks for a compacted topic to clean (log.cleaner.backoff.ms)
    /// [default: 15000]
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS")]
    log_cleaner_backoff_ms: Option<u64>,
    /// How long a new consumer group waits for more members (group.initial.rebalance.delay.ms)
    /// [default: 3000]
    #[arg(long, env = "SLUICE_INITIAL_REBALANCE_DELAY_MS")]
    initial_rebalance_delay_ms: Option<u64>,
    /// Most partitions this broker holds, all topics together; creations past it are refused
    /// with POLICY_VIOLATION [default: sized to the open-files limit]
    #[arg(long, env = "SLUICE_MAX_PARTITIONS")]
    max_partitions: Option<usize>,
    /// Committed offsets of a group with no members expire this long after their commit
    /// (Kafka's offsets.retention.minutes, in ms) [default: 604800000, 7 days]
    #[arg(long, env = "SLUICE_OFFSETS_RETENTION_MS")]
    offsets_retention_ms: Option<u64>,
    /// How often expired offsets are looked for (offsets.retention.check.interval.ms)
    /// [default: 600000]
    #[arg(long, env = "SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    offsets_retention_check_interval_ms: Option<u64>,
    /// Most record bytes in one Fetch or ShareFetch response (fetch.max.bytes) [default: 57671680]
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES")]
    fetch_max_bytes: Option<i32>,
    /// Longest transaction timeout a producer may ask for (transaction.max.timeout.ms)
    /// [default: 900000]
    #[arg(long, env = "SLUICE_TRANSACTION_MAX_TIMEOUT_MS")]
    transaction_max_timeout_ms: Option<i32>,
    /// How often transactions past their timeout are aborted
    /// (transaction.abort.timed.out.transaction.cleanup.interval.ms) [default: 10000]
    #[arg(long, env = "SLUICE_TRANSACTION_ABORT_INTERVAL_MS")]
    transaction_abort_interval_ms: Option<u64>,
    /// An idle transactional id is forgotten after this long (transactional.id.expiration.ms)
    /// [default: 604800000, 7 days]
    #[arg(long, env = "SLUICE_TRANSACTIONAL_ID_EXPIRATION_MS")]
    transactional_id_expiration_ms: Option<i64>,
    /// host:port to listen on and advertise for cluster traffic (metadata quorum, controller,
    /// replica fetches); required with --voters
    #[arg(long, env = "SLUICE_CLUSTER_ADDR")]
    cluster_addr: Option<String>,
    /// The metadata quorum's voters, ID@HOST:PORT,… (their cluster addresses). At a cluster's
    /// first start: the same on every voter. A node not among them is broker-only: it joins the
    /// running cluster through them as a non-voting member (`sluice cluster add-voter` promotes
    /// it). After a node's first start the membership stored in the metadata log wins; this only
    /// says where to find the cluster [default: this node alone, no network]
    #[arg(long, env = "SLUICE_VOTERS")]
    voters: Option<String>,
    /// This broker's rack (broker.rack), for rack-aware replica placement
    #[arg(long, env = "SLUICE_RACK")]
    rack: Option<String>,
    /// Replicas of topics created without one (default.replication.factor)
    /// [default: min(3, live brokers)]
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR")]
    default_replication_factor: Option<i16>,
    /// A broker that has not heartbeaten this long is fenced (broker.session.timeout.ms)
    /// [default: 9000]
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS")]
    broker_session_timeout_ms: Option<u64>,
    /// How often a broker heartbeats to the controller (broker.heartbeat.interval.ms)
    /// [default: 2000]
    #[arg(long, env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS")]
    broker_heartbeat_interval_ms: Option<u64>,
    /// A Kafka listener, NAME=PROTOCOL://HOST:PORT with PROTOCOL one of PLAINTEXT, SSL,
    /// SASL_PLAINTEXT, SASL_SSL (NAME defaults to the protocol; an empty HOST binds every
    /// interface). Repeatable or comma-separated; replaces --kafka-addr
    /// [default: PLAINTEXT://127.0.0.1:9092]
    #[arg(long, env = "SLUICE_LISTENERS", value_delimiter = ',')]
    listener: Option<Vec<String>>,
    /// NAME=HOST:PORT a listener tells clients to connect to; repeatable or comma-separated
    /// [default: the listener's host as written (the bound address if none) and its port]
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS", value_delimiter = ',')]
    advertised_listener: Option<Vec<String>>,
    /// PEM certificate (then its chain) of SSL and SASL_SSL listeners
    #[arg(long, env = "SLUICE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "SLUICE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (SSL listeners)
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Client certificates on SSL listeners (ssl.client.auth): none, requested or required;
    /// the principal is User:<certificate CN> [default: none]
    #[arg(long, env = "SLUICE_TLS_CLIENT_AUTH")]
    tls_client_auth: Option<String>,
    /// SASL mechanisms SASL listeners offer, comma-separated (PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512, OAUTHBEARER) [default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512, and OAUTHBEARER
    /// when a token validator is configured; PLAIN only on SASL_SSL]
    #[arg(long, env = "SLUICE_SASL_MECHANISMS", value_delimiter = ',')]
    sasl_mechanisms: Option<Vec<String>>,
    /// Offer PLAIN on SASL_PLAINTEXT listeners too, where passwords cross the network in the
    /// clear [default: false]
    #[arg(long, env = "SLUICE_ALLOW_PLAIN_WITHOUT_TLS", num_args = 0..=1, default_missing_value = "true")]
    allow_plain_without_tls: Option<bool>,
    /// OAUTHBEARER with Kafka's unsecured JWT validator (alg "none": anyone can mint a token;
    /// development only) [default: false]
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_UNSECURED", num_args = 0..=1, default_missing_value = "true")]
    sasl_oauthbearer_unsecured: Option<bool>,
    /// OAUTHBEARER with signed tokens checked against this JSON Web Key Set file (KIP-768;
    /// reloaded on SIGHUP)
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_JWKS_FILE")]
    sasl_oauthbearer_jwks_file: Option<PathBuf>,
    /// OAUTHBEARER with signed tokens checked against the key set at this URL (the identity
    /// provider's jwks_uri; sasl.oauthbearer.jwks.endpoint.url), fetched at start, hourly and
    /// on SIGHUP
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_JWKS_URL")]
    sasl_oauthbearer_jwks_url: Option<String>,
    /// The `iss` signed tokens must carry (sasl.oauthbearer.expected.issuer)
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_EXPECTED_ISSUER")]
    sasl_oauthbearer_expected_issuer: Option<String>,
    /// Audiences a signed token's `aud` must name one of, comma-separated
    /// (sasl.oauthbearer.expected.audience)
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_EXPECTED_AUDIENCE",
        value_delimiter = ','
    )]
    sasl_oauthbearer_expected_audience: Option<Vec<String>>,
    /// Scopes an OAUTHBEARER token must carry, comma-separated
    /// (unsecuredValidatorRequiredScope)
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_REQUIRED_SCOPE",
        value_delimiter = ','
    )]
    sasl_oauthbearer_required_scope: Option<Vec<String>>,
    /// Clock skew allowed when checking a token's exp and iat
    /// (unsecuredValidatorAllowableClockSkewMs) [default: 0]
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_CLOCK_SKEW_MS")]
    sasl_oauthbearer_clock_skew_ms: Option<i64>,
    /// A SASL session ends this long after it authenticated unless the client re-authenticates
    /// (connections.max.reauth.ms, KIP-368; 0: never, unless its token expires) [default: 0]
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS")]
    connections_max_reauth_ms: Option<i64>,
    /// ACL authorization of every request, Kafka's StandardAuthorizer semantics: on or off
    /// [default: off]
    #[arg(long, env = "SLUICE_AUTHORIZER")]
    authorizer: Option<String>,
    /// A principal (User:NAME) every ACL check allows (super.users); repeatable or
    /// comma-separated. Required with --authorizer on
    #[arg(long, env = "SLUICE_SUPERUSERS", value_delimiter = ',')]
    superuser: Option<Vec<String>>,
    /// Allow an operation on a resource that has no ACL at all
    /// (allow.everyone.if.no.acl.found) [default: false]
    #[arg(long, env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND", num_args = 0..=1, default_missing_value = "true")]
    allow_everyone_if_no_acl_found: Option<bool>,
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
            request_read_timeout_ms: self
                .request_read_timeout_ms
                .or(file.request_read_timeout_ms),
            queued_max_request_bytes: self
                .queued_max_request_bytes
                .or(file.queued_max_request_bytes),
            http_read_timeout_ms: self.http_read_timeout_ms.or(file.http_read_timeout_ms),
            http_max_connections: self.http_max_connections.or(file.http_max_connections),
            http_allowed_hosts: self.http_allowed_hosts.or(file.http_allowed_hosts),
            console_read_only: self.console_read_only.or(file.console_read_only),
            http_metrics_auth: self.http_metrics_auth.or(file.http_metrics_auth),
            retention_check_interval_ms: self
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms),
            log_cleaner_backoff_ms: self.log_cleaner_backoff_ms.or(file.log_cleaner_backoff_ms),
            initial_rebalance_delay_ms: self
                .initial_rebalance_delay_ms
                .or(file.initial_rebalance_delay_ms),
            max_partitions: self.max_partitions.or(file.max_partitions),
            offsets_retention_ms: self.offsets_retention_ms.or(file.offsets_retention_ms),
            offsets_retention_check_interval_ms: self
                .offsets_retention_check_interval_ms
                .or(file.offsets_retention_check_interval_ms),
            fetch_max_bytes: self.fetch_max_bytes.or(file.fetch_max_bytes),
            transaction_max_timeout_ms: self
                .transaction_max_timeout_ms
                .or(file.transaction_max_timeout_ms),
            transaction_abort_interval_ms: self
                .transaction_abort_interval_ms
                .or(file.transaction_abort_interval_ms),
            transactional_id_expiration_ms: self
                .transactional_id_expiration_ms
                .or(file.transactional_id_expiration_ms),
            cluster_addr: self.cluster_addr.or(file.cluster_addr),
            voters: self.voters.or(file.voters),
            rack: self.rack.or(file.rack),
            default_replication_factor: self
                .default_replication_factor
                .or(file.default_replication_factor),
            broker_session_timeout_ms: self
                .broker_session_timeout_ms
                .or(file.broker_session_timeout_ms),
            broker_heartbeat_interval_ms: self
                .broker_heartbeat_interval_ms
                .or(file.broker_heartbeat_interval_ms),
            listener: self.listener.or(file.listener),
            advertised_listener: self.advertised_listener.or(file.advertised_listener),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            tls_client_auth: self.tls_client_auth.or(file.tls_client_auth),
            sasl_mechanisms: self.sasl_mechanisms.or(file.sasl_mechanisms),
            allow_plain_without_tls: self
                .allow_plain_without_tls
                .or(file.allow_plain_without_tls),
            sasl_oauthbearer_unsecured: self
                .sasl_oauthbearer_unsecured
                .or(file.sasl_oauthbearer_unsecured),
            sasl_oauthbearer_required_scope: self
                .sasl_oauthbearer_required_scope
                .or(file.sasl_oauthbearer_required_scope),
            sasl_oauthbearer_clock_skew_ms: self
                .sasl_oauthbearer_clock_skew_ms
                .or(file.sasl_oauthbearer_clock_skew_ms),
            sasl_oauthbearer_jwks_file: self
                .sasl_oauthbearer_jwks_file
                .or(file.sasl_oauthbearer_jwks_file),
            sasl_oauthbearer_jwks_url: self
                .sasl_oauthbearer_jwks_url
                .or(file.sasl_oauthbearer_jwks_url),
            sasl_oauthbearer_expected_issuer: self
                .sasl_oauthbearer_expected_issuer
                .or(file.sasl_oauthbearer_expected_issuer),
            sasl_oauthbearer_expected_audience: self
                .sasl_oauthbearer_expected_audience
                .or(file.sasl_oauthbearer_expected_audience),
            connections_max_reauth_ms: self
                .connections_max_reauth_ms
                .or(file.connections_max_reauth_ms),
            authorizer: self.authorizer.or(file.authorizer),
            superuser: self.superuser.or(file.superuser),
            allow_everyone_if_no_acl_found: self
                .allow_everyone_if_no_acl_found
                .or(file.allow_everyone_if_no_acl_found),
        }
    }

    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let d = BrokerConfig::default();
        let security = self.security_config()?;
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
        if self.max_partitions == Some(0) {
            anyhow::bail!("--max-partitions must be at least 1");
        }
        let queued_max_request_bytes = self
            .queued_max_request_bytes
            .unwrap_or(d.queued_max_request_bytes.max(max_request_bytes));
        if queued_max_request_bytes < max_request_bytes {
            anyhow::bail!(
                "--queued-max-request-bytes ({queued_max_request_bytes}) must be at least \
                 --max-request-bytes ({max_request_bytes}): a request that passes the size \
                 check must fit"
            );
        }
        let http_addr = self.http_addr.unwrap_or(d.http_addr);
        let http_allowed_hosts = match self.http_allowed_hosts.as_deref().map(str::trim) {
            Some("*") => None,
            Some(list) => Some(
                list.split(',')
                    .filter(|h| !h.trim().is_empty())
                    .map(HostPattern::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)
                    .context("--http-allowed-hosts")?,
            )
            .filter(|v| !v.is_empty()),
            None => Some(HostPattern::defaults_for(http_addr)).filter(|v| !v.is_empty()),
        };
        let transaction_max_timeout_ms = self
            .transaction_max_timeout_ms
            .unwrap_or(d.transaction_max_timeout_ms);
        if transaction_max_timeout_ms < 1 {
            anyhow::bail!(
                "--transaction-max-timeout-ms must be at least 1, got {transaction_max_timeout_ms}"
            );
        }
        let fetch_max_bytes = self.fetch_max_bytes.unwrap_or(d.fetch_max_bytes);
        if fetch_max_bytes < 1 {
            anyhow::bail!("--fetch-max-bytes must be at least 1, got {fetch_max_bytes}");
        }
        let node_id = self.node_id.unwrap_or(d.node_id);
        if node_id < 0 {
            anyhow::bail!("--node-id must be at least 0, got {node_id}");
        }
        let voters = match &self.voters {
            Some(v) => sluice_broker::config::parse_voters(v)
                .map_err(anyhow::Error::msg)
                .context("--voters")?,
            None => Default::default(),
        };
        if let Some(addr) = &self.cluster_addr {
            sluice_broker::config::check_host_port(addr)
                .map_err(anyhow::Error::msg)
                .context("--cluster-addr")?;
        }
        if !voters.is_empty() && self.cluster_addr.is_none() {
            anyhow::bail!(
                "--voters needs --cluster-addr (this node's HOST:PORT for cluster traffic)"
            );
        }
        if let (Some(addr), Some(mine)) = (&self.cluster_addr, voters.get(&(node_id as u64))) {
            if addr != mine {
                anyhow::bail!(
                    "--voters names {mine} for node {node_id}, but --cluster-addr is {addr}: they must be the same"
                );
            }
        }
        if let Some(rack) = &self.rack {
            if rack.is_empty() || rack.len() > 255 {
                anyhow::bail!("--rack must be 1-255 characters");
            }
        }
        if let Some(rf) = self.default_replication_factor {
            if rf < 1 {
                anyhow::bail!("--default-replication-factor must be at least 1, got {rf}");
            }
        }
        let broker_session_timeout_ms = self
            .broker_session_timeout_ms
            .unwrap_or(d.broker_session_timeout_ms);
        let broker_heartbeat_interval_ms = self
            .broker_heartbeat_interval_ms
            .unwrap_or(d.broker_heartbeat_interval_ms);
        if broker_heartbeat_interval_ms < 1
            || broker_session_timeout_ms <= broker_heartbeat_interval_ms
        {
            anyhow::bail!(
                "--broker-heartbeat-interval-ms ({broker_heartbeat_interval_ms}) must be at least 1 and below \
                 --broker-session-timeout-ms ({broker_session_timeout_ms})"
            );
        }
        if broker_session_timeout_ms > 3_600_000 {
            anyhow::bail!("--broker-session-timeout-ms must be at most 3600000, got {broker_session_timeout_ms}");
        }
        Ok(BrokerConfig {
            security,
            node_id,
            cluster_addr: self.cluster_addr,
            voters,
            rack: self.rack,
            default_replication_factor: self.default_replication_factor,
            broker_session_timeout_ms,
            broker_heartbeat_interval_ms,
            kafka_addr: self.kafka_addr.unwrap_or(d.kafka_addr),
            advertised_kafka_addr: self.advertised_kafka_addr,
            http_addr,
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            flush,
            auto_create_topics: self.auto_create_topics.unwrap_or(d.auto_create_topics),
            default_partitions,
            max_request_bytes,
            max_connections: self.max_connections.unwrap_or(d.max_connections).max(1),
            idle_timeout: self
                .idle_timeout_ms
                .map_or(d.idle_timeout, Duration::from_millis),
            request_read_timeout: self
                .request_read_timeout_ms
                .map_or(d.request_read_timeout, |ms| {
                    Duration::from_millis(ms.max(1))
                }),
            queued_max_request_bytes,
            http_read_timeout: self
                .http_read_timeout_ms
                .map_or(d.http_read_timeout, |ms| Duration::from_millis(ms.max(1))),
            http_max_connections: self
                .http_max_connections
                .unwrap_or(d.http_max_connections)
                .max(1),
            http_allowed_hosts,
            console_read_only: self.console_read_only.unwrap_or(d.console_read_only),
            log_cleaner_backoff: self
                .log_cleaner_backoff_ms
                .map_or(d.log_cleaner_backoff, sluice_broker::cleaner::backoff),
            retention_check_interval: self
                .retention_check_interval_ms
                .map_or(d.retention_check_interval, |ms| {
                    Duration::from_millis(ms.max(1))
                }),
            initial_rebalance_delay_ms: self
                .initial_rebalance_delay_ms
                .unwrap_or(d.initial_rebalance_delay_ms),
            // Unset until `run` knows the open-files limit (see `max_partitions_for`).
            max_partitions: self.max_partitions,
            offsets_retention: self
                .offsets_retention_ms
                .map_or(d.offsets_retention, Duration::from_millis),
            offsets_retention_check_interval: self
                .offsets_retention_check_interval_ms
                .map_or(d.offsets_retention_check_interval, |ms| {
                    Duration::from_millis(ms.max(1))
                }),
            fetch_max_bytes,
            transaction_max_timeout_ms,
            transaction_abort_interval: self
                .transaction_abort_interval_ms
                .map_or(d.transaction_abort_interval, |ms| {
                    Duration::from_millis(ms.max(1))
                }),
            transactional_id_expiration_ms: self
                .transactional_id_expiration_ms
                .unwrap_or(d.transactional_id_expiration_ms)
                .max(1),
        })
    }
}

impl ServeArgs {
    /// Listeners, TLS and SASL (docs/SECURITY.md), checked together.
    fn security_config(&self) -> anyhow::Result<SecurityConfig> {
        let mut listeners = Vec::new();
        for l in self.listener.iter().flatten() {
            listeners.push(
                ListenerSpec::parse(l)
                    .map_err(anyhow::Error::msg)
                    .context("--listener")?,
            );
        }
        if !listeners.is_empty()
            && (self.kafka_addr.is_some() || self.advertised_kafka_addr.is_some())
        {
            anyhow::bail!(
                "--listener replaces --kafka-addr and --advertised-kafka-addr: give one or the other"
            );
        }
        for a in self.advertised_listener.iter().flatten() {
            let (name, addr) = sluice_broker::security::listener::parse_advertised(a)
                .map_err(anyhow::Error::msg)
                .context("--advertised-listener")?;
            let Some(l) = listeners.iter_mut().find(|l| l.name == name) else {
                anyhow::bail!("--advertised-listener names {name}, which no --listener has");
            };
            l.advertised = Some(addr);
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
                client_auth: match &self.tls_client_auth {
                    Some(a) => a
                        .parse::<ClientAuth>()
                        .map_err(anyhow::Error::msg)
                        .context("--tls-client-auth")?,
                    None => ClientAuth::None,
                },
            }),
            (None, None) => {
                if self.tls_client_ca.is_some() || self.tls_client_auth.is_some() {
                    anyhow::bail!(
                        "--tls-client-ca and --tls-client-auth need --tls-cert and --tls-key"
                    );
                }
                None
            }
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let sasl_mechanisms = match &self.sasl_mechanisms {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        SaslMechanism::from_name(n.trim()).ok_or_else(|| {
                            anyhow::anyhow!(
                                "--sasl-mechanisms: unknown mechanism {n:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
                            )
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let jwks = match (
            &self.sasl_oauthbearer_jwks_file,
            &self.sasl_oauthbearer_jwks_url,
        ) {
            (Some(_), Some(_)) => {
                anyhow::bail!(
                    "--sasl-oauthbearer-jwks-file and --sasl-oauthbearer-jwks-url: give one"
                )
            }
            (Some(f), None) => Some(JwksSource::File(f.clone())),
            (None, Some(u)) => Some(JwksSource::Url(u.clone())),
            (None, None) => None,
        };
        let unsecured = self.sasl_oauthbearer_unsecured.unwrap_or(false);
        if unsecured && jwks.is_some() {
            anyhow::bail!(
                "--sasl-oauthbearer-unsecured and a key set (--sasl-oauthbearer-jwks-*): give one"
            );
        }
        if jwks.is_none()
            && (self.sasl_oauthbearer_expected_issuer.is_some()
                || self.sasl_oauthbearer_expected_audience.is_some())
        {
            anyhow::bail!("--sasl-oauthbearer-expected-issuer and -audience need a key set (--sasl-oauthbearer-jwks-file or -url)");
        }
        let oauthbearer = (unsecured || jwks.is_some()).then(|| OAuthBearerConfig {
            required_scope: self
                .sasl_oauthbearer_required_scope
                .clone()
                .unwrap_or_default(),
            allowable_clock_skew_ms: self.sasl_oauthbearer_clock_skew_ms.unwrap_or(0).max(0),
            jwks,
            expected_issuer: self.sasl_oauthbearer_expected_issuer.clone(),
            expected_audience: self
                .sasl_oauthbearer_expected_audience
                .clone()
                .unwrap_or_default(),
        });
        let bootstrap_users = match std::env::var("SLUICE_BOOTSTRAP_USERS") {
            Ok(v) => {
                sluice_broker::security::parse_bootstrap_users(&v).map_err(anyhow::Error::msg)?
            }
            Err(_) => Vec::new(),
        };
        let config = SecurityConfig {
            listeners,
            tls,
            sasl_mechanisms,
            allow_plain_without_tls: self.allow_plain_without_tls.unwrap_or(false),
            http_metrics_auth: self.http_metrics_auth.unwrap_or(false),
            oauthbearer,
            max_reauth_ms: self.connections_max_reauth_ms.unwrap_or(0),
            bootstrap_users,
            authorizer: AuthorizerSettings {
                enabled: match self.authorizer.as_deref() {
                    None | Some("off") => false,
                    Some("on") => true,
                    Some(other) => anyhow::bail!("--authorizer must be on or off, got {other:?}"),
                },
                config: sluice_acl::AuthorizerConfig {
                    super_users: self
                        .superuser
                        .iter()
                        .flatten()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    allow_everyone_if_no_acl_found: self
                        .allow_everyone_if_no_acl_found
                        .unwrap_or(false),
                },
            },
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
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
/// Returns the limit in force afterwards, if it can be read.
fn raise_open_files_limit() -> Option<u64> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(max) = nr_open {
        if rlimit::Resource::NOFILE.set(max, max).is_ok() {
            tracing::debug!(limit = max, "open files limit");
            return Some(max);
        }
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            tracing::debug!(limit = n, "open files limit");
            Some(n)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open files limit");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

/// `--max-partitions`' default: what the open-files limit leaves after connections and the
/// broker's own files, at two descriptors per partition.
fn max_partitions_for(open_files: Option<u64>, max_connections: usize) -> usize {
    match open_files {
        Some(limit) => {
            let reserved =
                sluice_broker::limits::FDS_RESERVED.saturating_add(max_connections as u64);
            usize::try_from(limit.saturating_sub(reserved) / 2)
                .unwrap_or(usize::MAX)
                .max(1)
        }
        None => sluice_broker::limits::MAX_PARTITIONS_DEFAULT,
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = resolve(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft narrates every vote and append at info: its warnings are what an
                // operator needs (RUST_LOG=openraft=info brings the rest back).
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only for people: logs written to files and pipes stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let open_files = raise_open_files_limit();
    let max_partitions = config
        .max_partitions
        .unwrap_or_else(|| max_partitions_for(open_files, config.max_connections));
    config.max_partitions = Some(max_partitions);
    tracing::info!(max_partitions, "partition limit");
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
        let small_pool = ServeArgs {
            max_request_bytes: Some(4096),
            queued_max_request_bytes: Some(2048),
            ..ServeArgs::default()
        };
        assert!(small_pool.into_config().is_err());
        let bad_host = ServeArgs {
            http_allowed_hosts: Some("ok.example,bad host".into()),
            ..ServeArgs::default()
        };
        assert!(bad_host.into_config().is_err());
    }

    #[test]
    fn allowed_hosts_default_to_the_bind_address_and_off_for_wildcards() {
        let c = ServeArgs::default().into_config().unwrap();
        let hosts = c.http_allowed_hosts.unwrap();
        assert!(hosts.iter().any(|h| h.matches("localhost:8081")));
        assert!(!hosts.iter().any(|h| h.matches("evil.example")));
        let wild = ServeArgs {
            http_addr: Some("0.0.0.0:8081".parse().unwrap()),
            ..ServeArgs::default()
        };
        assert!(wild.into_config().unwrap().http_allowed_hosts.is_none());
        let listed = ServeArgs {
            http_addr: Some("0.0.0.0:8081".parse().unwrap()),
            http_allowed_hosts: Some("reg.example, localhost".into()),
            ..ServeArgs::default()
        };
        let hosts = listed.into_config().unwrap().http_allowed_hosts.unwrap();
        assert!(hosts.iter().any(|h| h.matches("reg.example:8081")));
        assert!(!hosts.iter().any(|h| h.matches("127.0.0.1:8081")));
        let star = ServeArgs {
            http_allowed_hosts: Some("*".into()),
            ..ServeArgs::default()
        };
        assert!(star.into_config().unwrap().http_allowed_hosts.is_none());
    }
}
