//! The one table of limits: every bound on what a client (or a file on disk) can make the broker
//! do, in one place. `docs/CONFIG.md` ("Limits") lists the same rows with what a client sees when
//! it hits each one. A limit that an operator may change is a `sluice serve` flag whose default is
//! the constant here (`config.rs`); the rest are fixed.
//!
//! Kafka's names and defaults where Kafka has the limit. A hostile client that hits a limit gets
//! its request refused or its connection closed; nobody else may notice.

// ---- Connections and requests (server.rs, http.rs) ----

/// `socket.request.max.bytes`: a larger frame closes the connection before it is read.
pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;
/// `max.connections`: further connections are closed at accept.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `connections.max.idle.ms`.
pub const IDLE_TIMEOUT_MS: u64 = 600_000;

// ---- Topics and partitions (metadata.rs, topic_config.rs) ----

/// Partitions in one topic.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

// ---- Produce, records and compression (handlers/produce.rs, record_codec.rs, compression) ----

// ---- Fetch and share fetch (handlers/fetch.rs, handlers/share.rs, fetch_session.rs) ----

/// Longest a Fetch or ShareFetch may wait for data (`max_wait_ms` is capped here).
pub const MAX_FETCH_WAIT_MS: i32 = 30_000;

/// `max.incremental.fetch.session.cache.slots` (Kafka's default): incremental fetch sessions.
pub const MAX_FETCH_SESSIONS: usize = 1000;

/// `fetch.max.bytes` (Kafka's default, 55 MiB; flag `--fetch-max-bytes`): record bytes in one
/// Fetch or ShareFetch response, whatever the request's `max_bytes`. As in Kafka (KIP-74) the
/// first batch of the first partition with data goes out whole even when larger.
pub const FETCH_MAX_BYTES: i32 = 55 * 1024 * 1024;

/// Partitions one Fetch request (and one fetch session) may name; Kafka bounds them only by
/// the request size. Partitions past the bound are answered with INVALID_REQUEST and not
/// read (nor added to the session); the rest of the request is served. The same bound holds
/// for the partitions of a ShareFetch or ShareAcknowledge and of a share session.
pub const MAX_FETCH_PARTITIONS: usize = 50_000;

// ---- Groups, share groups and queues (groups.rs, share/) ----

/// Share sessions open at once, broker-wide (Kafka's `group.share.max.share.sessions` is 2000).
pub const MAX_SHARE_SESSIONS: usize = 10_000;
/// Ranges read from one `sluice-dlq` bookkeeping commit's metadata (the rest are ignored); the
/// DLQ depth costs O(ranges) per DLQ partition, whatever offsets they name.
pub use sluice_share::MAX_DECODED_RANGES as MAX_DLQ_HANDLED_RANGES;
/// Dead letters waiting for the DLQ writer; when full, records stay pending in their
/// share-partition and are offered again on the next timer pass (the coordinator never waits).
pub const DLQ_WRITER_QUEUE: usize = 1024;

// ---- Internal logs (offsets, share state, metadata, schemas) ----
