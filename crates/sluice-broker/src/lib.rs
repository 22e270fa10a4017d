//! The Kafka-protocol broker: connections and request handlers, topic metadata, committed
//! offsets, consumer groups' IO edge, the HTTP endpoints, and the broker's lifetime.
//!
//! Architecture invariants:
//! - storage (`sluice-storage`) knows nothing of the protocol; this crate maps its errors onto
//!   Kafka codes (`error.rs`) and serves its bytes unchanged;
//! - the group coordinator (`sluice-group`) is a pure state machine; `groups.rs` is its only
//!   caller and owns its clock and timers;
//! - every change to durable broker state (topics, configs, offsets, producer ids) is written
//!   to an internal log before it takes effect.

pub mod api;
pub mod broker;
pub mod cleaner;
pub mod cluster;
pub mod compression;
pub mod conditional;
pub mod config;
pub mod console;
pub mod coordinator;
pub mod error;
pub mod fetch_session;
pub mod group_config;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod internal_log;
pub mod lag_history;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod offsets;
pub mod partition;
pub mod producer_state;
pub mod quota;
pub mod record_codec;
pub mod registry_acl;
pub mod replica_manager;
pub mod replication;
pub mod response;
pub mod schemas;
pub mod security;
pub mod server;
pub mod share;
pub mod topic_config;
pub mod txn;

pub use broker::{run, Broker};
pub use config::{BrokerConfig, FlushPolicy};
