//! Broker metrics, exported in Prometheus text format on `/metrics`.
//!
//! Names follow what Kafka dashboards expect, in Prometheus style: request counts and latency
//! by API, bytes in/out per topic, partition count.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// The listener's security protocol (SSL, SASL_PLAINTEXT, SASL_SSL).
    pub protocol: &'static str,
    /// TLS (the handshake failed) or SASL.
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// produce, fetch or request
    pub quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicLabels {
    pub group: String,
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLagLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    pub group: String,
    /// accept, release, reject, renew, gap
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<ApiLabels, Counter>,
    pub request_seconds: Family<ApiLabels, Histogram>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub messages_in: Family<TopicLabels, Counter>,
    pub partitions: Gauge,
    pub connections: Gauge,
    /// Records of a topic not yet acknowledged by a share group (KIP-932 lag).
    pub share_lag: Family<GroupTopicLabels, Gauge>,
    /// Records a share group holds acquired (locked by a consumer) right now.
    pub share_in_flight: Family<GroupTopicLabels, Gauge>,
    /// A consumer group's lag per partition: high watermark minus committed offset.
    pub group_lag: Family<PartitionLagLabels, Gauge>,
    /// A consumer group's committed offset per partition.
    pub group_offset: Family<PartitionLagLabels, Gauge>,
    /// Request bytes held in `queued.max.request.bytes` (frames being read or handled).
    pub request_memory: Gauge,
    /// The broker's resident memory, read at each scrape.
    pub resident_memory: Gauge,
    /// Records acquired by share consumers.
    pub share_acquired: Family<GroupTopicLabels, Counter>,
    /// Acknowledged records, by type.
    pub share_acks: Family<AckLabels, Counter>,
    /// Dead letters written, by group and DLQ topic.
    pub dlq_written: Family<GroupTopicLabels, Counter>,
    /// Dead letters not yet requeued or discarded, by DLQ topic.
    pub dlq_depth: Family<TopicLabels, Gauge>,
    /// Seconds since the oldest dead letter not yet requeued or discarded was dead-lettered, by
    /// DLQ topic (0 when there is none).
    pub dlq_oldest_age: Family<TopicLabels, Gauge<f64, AtomicU64>>,
    /// Dead letters the DLQ topic refused for good (archived without a copy).
    pub dlq_failed: Counter,
    /// Dead letters found already copied (by a leader before a failover, or by a write whose
    /// outcome was unknown) and archived without another copy.
    pub dlq_already_copied: Counter,
    /// Responses that carried a throttle, by the quota that set it.
    pub throttled_responses: Family<QuotaLabels, Counter>,
    /// Throttle time handed out, by quota.
    pub throttle_seconds: Family<QuotaLabels, Counter<f64, AtomicU64>>,
    /// Connections refused at authentication, by listener protocol and stage.
    pub authentication_failures: Family<AuthLabels, Counter>,
    /// Requests (or parts of them) the authorizer denied, by API.
    pub authorization_denials: Family<ApiLabels, Counter>,
    /// Log cleaner (compaction) rounds finished.
    pub cleaner_rounds: Counter,
    /// Bytes the log cleaner read.
    pub cleaner_bytes_read: Counter,
    /// Bytes the log cleaner wrote.
    pub cleaner_bytes_written: Counter,
    /// Records the log cleaner removed.
    pub cleaner_records_removed: Counter,
}

/// Fsync times of every partition log in the process (one histogram: the partitions do not
/// hold the broker's metrics, and an fsync's time is the disk's, not one broker's).
pub fn fsync_seconds() -> &'static Histogram {
    static FSYNC: std::sync::OnceLock<Histogram> = std::sync::OnceLock::new();
    FSYNC.get_or_init(|| Histogram::new(latency_buckets()))
}

/// Times `f`, an fsync, into [`fsync_seconds`].
pub fn timed_fsync<T>(f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    fsync_seconds().observe(started.elapsed().as_secs_f64());
    out
}

/// The process's resident memory in bytes (Linux `/proc/self/statm`), if readable.
pub fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the running system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.checked_mul(if page > 0 { page } else { 4096 })
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 50 µs .. ~52 s, doubling.
    prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 21)
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<ApiLabels, Counter>::default();
        let request_seconds = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let messages_in = Family::<TopicLabels, Counter>::default();
        let partitions = Gauge::default();
        let connections = Gauge::default();
        let share_lag = Family::<GroupTopicLabels, Gauge>::default();
        let share_acquired = Family::<GroupTopicLabels, Counter>::default();
        let share_in_flight = Family::<GroupTopicLabels, Gauge>::default();
        let group_lag = Family::<PartitionLagLabels, Gauge>::default();
        let group_offset = Family::<PartitionLagLabels, Gauge>::default();
        let request_memory = Gauge::default();
        let resident_memory = Gauge::default();
        let share_acks = Family::<AckLabels, Counter>::default();
        let dlq_written = Family::<GroupTopicLabels, Counter>::default();
        let dlq_depth = Family::<TopicLabels, Gauge>::default();
        let dlq_failed = Counter::default();
        let dlq_oldest_age = Family::<TopicLabels, Gauge<f64, AtomicU64>>::default();
        let dlq_already_copied = Counter::default();
        let throttled_responses = Family::<QuotaLabels, Counter>::default();
        let throttle_seconds = Family::<QuotaLabels, Counter<f64, AtomicU64>>::default();
        let authentication_failures = Family::<AuthLabels, Counter>::default();
        let authorization_denials = Family::<ApiLabels, Counter>::default();
        let cleaner_rounds = Counter::default();
        let cleaner_bytes_read = Counter::default();
        let cleaner_bytes_written = Counter::default();
        let cleaner_records_removed = Counter::default();
        let mut registry = Registry::with_prefix("sluice");
        registry.register(
            "log_cleaner_rounds",
            "Log cleaner (compaction) rounds finished",
            cleaner_rounds.clone(),
        );
        registry.register(
            "log_cleaner_bytes_read",
            "Bytes read by the log cleaner",
            cleaner_bytes_read.clone(),
        );
        registry.register(
            "log_cleaner_bytes_written",
            "Bytes written by the log cleaner",
            cleaner_bytes_written.clone(),
        );
        registry.register(
            "log_cleaner_records_removed",
            "Records removed by the log cleaner",
            cleaner_records_removed.clone(),
        );
        registry.register(
            "requests",
            "Kafka requests handled, by API",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response, by API",
            request_seconds.clone(),
        );
        registry.register(
            "topic_bytes_in",
            "Record-batch bytes produced, by topic",
            bytes_in.clone(),
        );
        registry.register(
            "topic_bytes_out",
            "Record-batch bytes fetched, by topic",
            bytes_out.clone(),
        );
        registry.register(
            "topic_messages_in",
            "Records produced, by topic",
            messages_in.clone(),
        );
        registry.register(
            "partitions",
            "Partitions hosted by this broker",
            partitions.clone(),
        );
        registry.register("connections", "Open Kafka connections", connections.clone());
        registry.register(
            "share_group_lag",
            "Records not yet acknowledged by a share group, by group and topic",
            share_lag.clone(),
        );
        registry.register(
            "share_group_acquired_records",
            "Records handed to share consumers under a lock, by group and topic",
            share_acquired.clone(),
        );
        registry.register(
            "share_group_acknowledgements",
            "Records acknowledged by share consumers, by group and type",
            share_acks.clone(),
        );
        registry.register(
            "dlq_records_written",
            "Dead letters written, by share group and DLQ topic",
            dlq_written.clone(),
        );
        registry.register(
            "dlq_depth",
            "Dead letters not yet requeued or discarded, by DLQ topic",
            dlq_depth.clone(),
        );
        registry.register(
            "dlq_write_failures",
            "Dead letters the DLQ topic refused for good (too large for it, say): archived without a copy",
            dlq_failed.clone(),
        );
        registry.register(
            "dlq_already_copied",
            "Dead letters found already in the DLQ (copied before a failover or by a write whose outcome was unknown): archived without another copy",
            dlq_already_copied.clone(),
        );
        registry.register(
            "quota_throttled_responses",
            "Responses throttled by a client quota, by the quota (produce, fetch, request)",
            throttled_responses.clone(),
        );
        registry.register(
            "quota_throttle_seconds",
            "Throttle time handed to clients over their quota, by the quota",
            throttle_seconds.clone(),
        );
        registry.register(
            "authentication_failures",
            "Failed authentications: Kafka connections closed because a TLS handshake or a SASL exchange failed (wrong password, unknown user, expired token), by listener protocol and stage; HTTP requests and console logins with a wrong password (protocol HTTP, stage Basic or login)",
            authentication_failures.clone(),
        );
        registry.register(
            "authorization_denials",
            "Operations the authorizer denied (each also an audit log line), by API",
            authorization_denials.clone(),
        );
        registry.register(
            "share_group_in_flight_records",
            "Records a share group holds acquired (locked by a consumer) now, by group and topic",
            share_in_flight.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "Records a consumer group has not committed, by group, topic and partition: the high watermark minus the committed offset",
            group_lag.clone(),
        );
        registry.register(
            "consumer_group_committed_offset",
            "A consumer group's committed offset, by group, topic and partition",
            group_offset.clone(),
        );
        registry.register(
            "request_memory_bytes",
            "Request bytes being read or handled, out of queued.max.request.bytes",
            request_memory.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the broker process",
            resident_memory.clone(),
        );
        registry.register(
            "fsync_duration_seconds",
            "Time of each fsync of a partition's log (group commits, rolls, leadership changes)",
            fsync_seconds().clone(),
        );
        registry.register(
            "dlq_oldest_age_seconds",
            "Seconds since the oldest dead letter not yet requeued or discarded was dead-lettered, by DLQ topic (0: none)",
            dlq_oldest_age.clone(),
        );
        Metrics {
            registry,
            dlq_oldest_age,
            share_in_flight,
            group_lag,
            group_offset,
            request_memory,
            resident_memory,
            throttled_responses,
            throttle_seconds,
            authentication_failures,
            authorization_denials,
            requests,
            request_seconds,
            bytes_in,
            bytes_out,
            messages_in,
            partitions,
            connections,
            share_lag,
            share_acquired,
            share_acks,
            dlq_written,
            dlq_depth,
            dlq_failed,
            dlq_already_copied,
            cleaner_rounds,
            cleaner_bytes_read,
            cleaner_bytes_written,
            cleaner_records_removed,
        }
    }
}

impl Metrics {
    /// Drops a deleted topic's series, so topic churn does not grow the registry without bound.
    pub fn forget_topic(&self, topic: &str) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.remove(&labels);
        self.bytes_out.remove(&labels);
        self.messages_in.remove(&labels);
        self.dlq_depth.remove(&labels);
        self.dlq_oldest_age.remove(&labels);
    }

    /// A connection whose authentication failed.
    pub fn authentication_failed(&self, protocol: &'static str, stage: &'static str) {
        self.authentication_failures
            .get_or_create(&AuthLabels { protocol, stage })
            .inc();
    }

    /// An operation the authorizer denied.
    pub fn authorization_denied(&self, api: &'static str) {
        self.authorization_denials
            .get_or_create(&ApiLabels { api })
            .inc();
    }

    /// A response throttled `ms` by the quota named `quota`.
    pub fn throttled(&self, quota: &'static str, ms: i64) {
        let labels = QuotaLabels { quota };
        self.throttled_responses.get_or_create(&labels).inc();
        self.throttle_seconds
            .get_or_create(&labels)
            .inc_by(ms as f64 / 1000.0);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
