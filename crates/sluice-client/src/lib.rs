//! A small async Kafka client for the `sluice` command-line tools: one TCP connection per
//! broker, ApiVersions negotiation, and typed wrappers for the admin, produce, fetch and
//! classic consumer-group APIs, and cluster operations (module [`cluster`]: DescribeCluster,
//! DescribeQuorum, manual replica assignments, ElectLeaders, partition reassignments). It talks
//! plain Kafka, so the tools work against any broker. Connections may use TLS and SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) as Kafka's clients configure them (module [`security`]).

pub mod acls;
pub mod assignment;
pub mod client;
pub mod cluster;
pub mod connection;
pub mod datetime;
pub mod dlq;
pub mod error;
pub mod group_member;
pub mod json;
pub mod lag;
pub mod log_dirs;
pub mod quotas;
pub mod records;
pub mod reset;
pub mod security;
pub mod users;
pub mod versions;

pub use client::{Client, ClientConfig};
pub use datetime::parse_datetime;
pub use security::{SaslCredentials, SaslMechanism, Security, SecurityProtocol, TlsSettings};

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
pub use error::{Error, Result};
pub use kafka_protocol::records::{Compression, Record};
