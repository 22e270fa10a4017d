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
/// Time to read a whole request once its 4-byte size prefix arrived; a client that stalls
/// mid-frame is closed and the frame's memory freed. Kafka has no such bound (a partial frame
/// lives until `connections.max.idle.ms`); 30 s is Kafka's `request.timeout.ms`.
pub const REQUEST_READ_TIMEOUT_MS: u64 = 30_000;
/// `queued.max.request.bytes`: bytes of requests read or being read, across all connections.
/// A connection whose next frame does not fit in the free bytes is muted (not read, not closed)
/// until memory frees, as Kafka does; smaller frames that fit pass it (`server::RequestMemory`).
/// Per connection the bound is one frame (`socket.request.max.bytes`): requests are read one at
/// a time. Kafka's default is -1 (unbounded); Sluice bounds it, and
/// refuses to start with a value below `socket.request.max.bytes` (as Kafka refuses), so every
/// frame that passes the size check can eventually be read.
pub const QUEUED_MAX_REQUEST_BYTES: usize = 512 * 1024 * 1024;

/// HTTP: time for a client to send a request's headers (also how long an idle keep-alive
/// connection stays open), and again to send its body. Not a Kafka setting; hyper's default
/// header timeout.
pub const HTTP_READ_TIMEOUT_MS: u64 = 30_000;
/// HTTP: largest request body (axum's default); larger bodies get 413.
pub const HTTP_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// HTTP: concurrent connections; further connections are closed at accept.
pub const HTTP_MAX_CONNECTIONS: usize = 1024;
/// Schema registry in a cluster: how long a node waits for the primary's answer to a write it
/// forwarded (`schemas.rs`) before answering 50003. Covers the primary's own bounds: waiting
/// for its state to be complete and for the in-sync replicas (5 s each).
pub const REGISTRY_FORWARD_TIMEOUT_MS: u64 = 15_000;
/// Schema registry in a cluster: largest answer read back from the primary to a forwarded
/// write (the request itself is bounded by [`HTTP_MAX_BODY_BYTES`]); a larger one is 50003.
pub const REGISTRY_FORWARD_MAX_ANSWER_BYTES: u64 = 2 * 1024 * 1024;

// ---- Security (security/, server.rs, handlers/users.rs) ----

/// Kafka's `sasl.server.max.receive.size`: the largest frame a connection may send before it
/// has authenticated; a larger one closes the connection before it is read.
pub const SASL_MAX_RECEIVE_BYTES: usize = 512 * 1024;
/// Time from accept to the end of authentication (the TLS handshake and the SASL exchange);
/// a client that has not authenticated by then is closed. Kafka has no such bound.
pub const AUTHENTICATION_TIMEOUT_MS: u64 = 30_000;
/// SASL exchange steps (a PLAIN or SCRAM step hashes a password: PBKDF2, milliseconds of CPU)
/// running at once across all connections; more wait their turn, off the request workers.
pub const CONCURRENT_AUTHENTICATIONS: usize = 4;
/// Kafka's `connection.failed.authentication.delay.ms`: a failed authentication's answer waits
/// this long before the connection closes, slowing password guessing.
pub const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;
/// Longest user name a SCRAM credential is stored for.
pub const MAX_USER_NAME_BYTES: usize = 256;
/// Largest SCRAM salt stored (clients send 16 to 64 bytes).
pub const MAX_SCRAM_SALT_BYTES: usize = 256;
/// ACL bindings in a cluster (every node holds them all in memory): CreateAcls past it is
/// INVALID_REQUEST.
pub use sluice_acl::MAX_ACLS;
/// HTTP Basic logins remembered as checked (`security/http.rs`), so a client sending Basic on
/// every request pays one PBKDF2 run, not one per request; when full, they are forgotten.
pub const HTTP_MAX_CACHED_LOGINS: usize = 10_000;
/// How long a checked HTTP Basic login is remembered (any change of the users forgets it).
pub const HTTP_LOGIN_CACHE_MS: u64 = 5 * 60 * 1000;
/// Console sessions open at once; the least recently used one ends for a new one.
pub const HTTP_MAX_SESSIONS: usize = 10_000;
/// Console sessions of one user; their least recently used one ends for a new one.
pub const HTTP_MAX_SESSIONS_PER_USER: usize = 32;
/// A console session unused this long ends.
pub const HTTP_SESSION_IDLE_MS: u64 = 30 * 60 * 1000;
/// A console session ends this long after its login, used or not.
pub const HTTP_SESSION_MAX_MS: u64 = 12 * 60 * 60 * 1000;
/// Largest OAUTHBEARER key set (JWKS) read from a file or URL.
pub use sluice_auth::oauthbearer::MAX_JWKS_BYTES as OAUTHBEARER_MAX_JWKS_BYTES;
/// Largest SCRAM and PLAIN client message, and OAUTHBEARER token, an exchange reads; longer
/// ones fail the authentication.
pub use sluice_auth::oauthbearer::MAX_TOKEN_LEN as OAUTHBEARER_MAX_TOKEN_BYTES;
pub use sluice_auth::plain::MAX_MESSAGE_LEN as PLAIN_MAX_MESSAGE_BYTES;
pub use sluice_auth::scram::MAX_MESSAGE_LEN as SCRAM_MAX_MESSAGE_BYTES;
/// SCRAM iterations a credential may have (Kafka's bounds): fewer or more is
/// UNACCEPTABLE_CREDENTIAL.
pub use sluice_auth::scram::{
    MAX_ITERATIONS as SCRAM_MAX_ITERATIONS, MIN_ITERATIONS as SCRAM_MIN_ITERATIONS,
};
/// Users with SCRAM credentials in a cluster (every node holds them all in memory).
pub use sluice_controller::MAX_SCRAM_USERS;

// ---- Topics and partitions (metadata.rs, topic_config.rs) ----

/// Partitions in one topic.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
/// Kafka's floor for `segment.bytes` (1 MiB): a segment keeps a file descriptor open.
pub const SEGMENT_BYTES_MIN: i32 = 1024 * 1024;
/// File descriptors kept back from `--max-partitions`' default for connections, internal logs
/// and the process itself; the rest is shared at two per partition (a segment and a spare for
/// its roll).
pub const FDS_RESERVED: u64 = 2048;
/// `--max-partitions`' default when the open-files limit cannot be read.
pub const MAX_PARTITIONS_DEFAULT: usize = 10_000;

// ---- Produce, records and compression (handlers/produce.rs, record_codec.rs, compression) ----

/// Records one produced batch may claim (sluice-storage `records::max_records_in`, which the
/// produce path applies; listed here as the one table): a v2 record takes at least
/// `MIN_RECORD_BYTES` (7) bytes, so an uncompressed batch holds at most (bytes − 61) / 7 and a
/// compressed one at most `max.message.bytes` / 7 (decompression is bounded by
/// `max.message.bytes`). A larger count, or one that disagrees with the last offset delta, is
/// INVALID_RECORD as in Kafka's LogValidator.
pub const MIN_RECORD_BYTES: usize = sluice_storage::records::MIN_RECORD_BYTES;
/// Offsets one segment holds past its base (its indexes store 32-bit relative offsets); the
/// log rolls before an append would exceed it (Kafka's `LogSegment.canConvertToRelativeOffset`).
pub const MAX_SEGMENT_RELATIVE_OFFSET: i64 = sluice_storage::log::MAX_RELATIVE_OFFSET;
// Decompressed size: every decompression of a batch (schema validation and recompression on
// produce, ListOffsets by time, dead-letter copies) stops once the records pass the topic's
// `max.message.bytes` (Kafka applies it to the compressed batch; Sluice also to what it
// inflates, so a small bomb cannot take more memory than a large plain batch). Produce sees
// INVALID_RECORD; ListOffsets answers the batch start; a dead letter is archived without a copy.

/// Decompressed bytes of one batch, whatever `max.message.bytes` says: the cap on each
/// decompression is the smaller of the two, so a topic configured for huge messages cannot
/// make one request hold gigabytes of inflated records.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// zstd's decoder window limit, log2 bytes (zstd's own default `ZSTD_WINDOWLOG_LIMIT_DEFAULT`,
/// what Kafka's Java decoder allows): a frame asking for more is refused, never allocated.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

// ---- Producer state and transactions on a partition (producer_state.rs, partition.rs) ----

/// Producers tracked per partition (idempotence and transaction state). A new producer evicts
/// the least recently used one that has no open transaction; when every tracked producer has
/// an open transaction, a new producer's batch is refused with NOT_ENOUGH_REPLICAS (retriable)
/// until one ends. Kafka bounds it only by `producer.id.expiration.ms`.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;
/// `producer.id.expiration.ms` (Kafka's default, 1 day): a producer idle this long (by its
/// last batch's timestamp) is forgotten, never while its transaction is open.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;
/// `producer.id.expiration.check.interval.ms` (Kafka's default, 10 minutes).
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS: i64 = 600_000;

// ---- Conditional append (conditional.rs) ----

/// Bytes of one partition's key → last offset index on a topic with
/// `sluice.conditional.append.enable=true` (each key's bytes plus
/// `conditional::ENTRY_OVERHEAD`). Not a Kafka setting. A key that does not fit is not
/// indexed and the index becomes incomplete: key conditions on keys absent from it are refused
/// with POLICY_VIOLATION (never answered wrongly) until a restart rebuilds it; appends without
/// key conditions, and keys already indexed, are not affected.
pub const CONDITIONAL_KEY_INDEX_MAX_BYTES: usize = 64 << 20;
/// Bytes of every partition's key index together; reaching it has the same effect as the
/// per-partition bound on the partition whose new key does not fit.
pub const CONDITIONAL_KEY_INDEX_TOTAL_BYTES: usize = 1 << 30;

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

/// Members in one group, every protocol (Kafka's `group.max.size` is unbounded by default;
/// `group.consumer.max.size` and `group.share.max.size` are 200 and 200 in Kafka 4).
pub const MAX_GROUP_SIZE: usize = 1000;
/// `group.min.session.timeout.ms`: shorter session timeouts are refused.
pub const GROUP_MIN_SESSION_TIMEOUT_MS: i32 = 6000;
/// `group.max.session.timeout.ms`: longer session timeouts are refused.
pub const GROUP_MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

/// Share sessions open at once, broker-wide (Kafka's `group.share.max.share.sessions` is 2000).
pub const MAX_SHARE_SESSIONS: usize = 10_000;
/// Ranges read from one `sluice-dlq` bookkeeping commit's metadata (the rest are ignored); the
/// DLQ depth costs O(ranges) per DLQ partition, whatever offsets they name.
pub use sluice_share::MAX_DECODED_RANGES as MAX_DLQ_HANDLED_RANGES;
/// Dead letters waiting for the DLQ writer; when full, records stay pending in their
/// share-partition and are offered again on the next timer pass (the coordinator never waits).
pub const DLQ_WRITER_QUEUE: usize = 1024;
/// Records at the end of a DLQ partition searched for copies a previous share-partition leader
/// may have written just before it died (a dead letter restored while dead-lettering); a copy
/// further back is not found and is written again.
pub const DLQ_DEDUP_SCAN_RECORDS: i64 = 100_000;

// ---- Internal logs (offsets, share state, metadata, schemas) ----

/// Segment size of the internal logs: small, so a snapshot frees the history before it soon.
pub const INTERNAL_SEGMENT_BYTES: u64 = 4 << 20;
/// An internal log is rewritten as a snapshot of its live state once this much (or the last
/// snapshot's size, if larger) was appended since the previous snapshot.
pub const INTERNAL_COMPACT_MIN_BYTES: u64 = 4 << 20;
/// `offsets.retention.minutes` (Kafka: 7 days): committed offsets of a group with no members
/// expire this long after their commit.
pub const OFFSETS_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// `offsets.retention.check.interval.ms` (Kafka: 10 minutes).
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS: u64 = 600_000;

// ---- Schema registry ----
// The registry's own bounds (payload nesting, values per byte, subschema expansion, the work of
// one compatibility check) live beside the parsers in `crates/sluice-registry/src/format/`
// (`avro.rs`, `json.rs`, `protobuf.rs`), since that crate does not depend on the broker; they are
// rows of the same table in `docs/CONFIG.md`. HTTP bounds are above (connections and requests).

// ---- Cluster: metadata quorum, controller, replication ----
// These bounds live beside their code in crates that do not depend on the broker, and are rows
// of the same table in `docs/CONFIG.md`: `sluice-quorum` (`lib.rs`: command, record, snapshot
// and small-file sizes, log segments; `rpc.rs`: the cluster RPC's frame size, connections,
// calls in flight and timeouts), `sluice-controller` (`controller.rs`: partitions per topic —
// the same value as `MAX_PARTITIONS_PER_TOPIC` here —, registration strings, config entries,
// elections per rebalance pass), `sluice-storage` (`leader_epoch.rs`: the leader-epoch
// checkpoint's size and entries). In this crate, beside their code: `replication/mod.rs`
// (replica fetch sizes, waits and backoffs, ISR check interval, AlterPartition queue and
// timeout), `coordinator.rs` (a coordinator write's wait for the ISR; also the longest a
// SyncGroup waits for its group's membership record, `groups.rs`) and `txn/remote.rs` (the
// size of a coordinator RPC request, a caller's wait for its answer).

// ---- Transactions ----

/// `transaction.max.timeout.ms` (Kafka: 15 minutes): the longest `transaction.timeout.ms` a
/// producer may ask for; longer gets INVALID_TRANSACTION_TIMEOUT.
pub const TRANSACTION_MAX_TIMEOUT_MS: i32 = 900_000;
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (Kafka: 10 s).
pub const TRANSACTION_ABORT_INTERVAL_MS: u64 = 10_000;
/// `transactional.id.expiration.ms` (Kafka: 7 days): an idle transactional id is forgotten.
pub const TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;
/// First wait before a failed transaction marker is written again, doubled up to the max
/// (Kafka's marker channel retries on `retry.backoff.ms` = 100).
pub const TXN_MARKER_RETRY_BACKOFF_MS: u64 = 100;
pub const TXN_MARKER_RETRY_BACKOFF_MAX_MS: u64 = 5_000;

// ---- Log compaction (cleaner.rs, sluice-storage cleaner.rs) ----

/// `log.cleaner.backoff.ms`: how often the cleaner looks for a log to clean when none needed
/// it (`--log-cleaner-backoff-ms`).
pub const LOG_CLEANER_BACKOFF_MS: u64 = 15_000;
/// `log.cleaner.dedupe.buffer.size`: memory of the offset map (key -> last offset) of one
/// cleaning round. When it fills, the round cleans up to the batch where it got and the next
/// round goes on from there, as Kafka does. Entries are counted as key bytes + 48, and each
/// producer id whose last batch the round keeps as 40.
pub const LOG_CLEANER_DEDUPE_BUFFER_SIZE: usize = 128 * 1024 * 1024;
/// `log.cleaner.io.buffer.size`: bytes the cleaner reads or writes per IO (a batch larger than
/// it is read whole).
pub const LOG_CLEANER_IO_BUFFER_SIZE: usize = 512 * 1024;
/// `log.cleaner.io.max.bytes.per.second`: bytes read plus written per second by the cleaner,
/// so produce and fetch are not starved of disk. Kafka's default is unbounded.
pub const LOG_CLEANER_IO_MAX_BYTES_PER_SECOND: u64 = 256 * 1024 * 1024;
/// Cleaning rounds run back to back before the cleaner backs off, even if more logs need it.
pub const LOG_CLEANER_MAX_ROUNDS_IN_A_ROW: usize = 16;

// ---- Client quotas (quota.rs) ----

/// Rates tracked for quota enforcement (one per user / client-id pair a quota applies to,
/// and quota type). A client id past it shares one overflow rate per quota type, throttled
/// together; rates idle for an hour are dropped first.
pub const MAX_QUOTA_SENSORS: usize = 10_000;
/// The longest client id a rate is kept under; a longer one (the protocol allows 32 KiB) shares
/// its quota type's overflow rate, so the rates hold at most about 2.6 MB of names.
pub const MAX_QUOTA_NAME_KEY_BYTES: usize = 255;
/// The longest a byte-rate quota throttles one response (and mutes its connection); a
/// request quota throttles at most one quota window (1 s), as Kafka's.
pub const MAX_THROTTLE_MS: i64 = 300_000;
/// Entities one AlterClientQuotas request may change (each is one controller decision); the
/// rest are answered INVALID_REQUEST.
pub const MAX_QUOTA_ALTERATIONS: usize = 1_000;

// ---- Metrics (metrics.rs, http.rs) ----

/// Consumer-group partitions whose committed offset and lag `/metrics` reports (one series
/// each); the rest are left out of that scrape.
pub const MAX_LAG_SERIES: usize = 10_000;
/// Consumer-group lag in time (`lag_history.rs`): how often the group coordinator samples each
/// group's lag, how many samples it keeps per group (an hour), and how many groups it tracks.
pub const LAG_SAMPLE_INTERVAL_MS: u64 = 10_000;
pub const LAG_HISTORY_SAMPLES: usize = 360;
pub const MAX_LAG_HISTORY_GROUPS: usize = 1_000;

// ---- The HTTP API (api/) ----

/// Kafka clients the HTTP API calls the cluster with at once; further calls wait for one.
pub const MAX_API_CLIENTS: usize = 8;
/// A pooled HTTP API client idle this long (or half `--idle-timeout-ms`, if less) is dropped
/// instead of used: the Kafka listener may have closed its connection.
pub const API_CLIENT_MAX_IDLE_MS: u64 = 60_000;
/// Bound on each Kafka request the HTTP API makes.
pub const API_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How long `POST /v1/topics` waits for the new topic's partitions to be served (their leaders
/// start them just after CreateTopics answers) before describing it; past it, the describe's
/// error is the answer (the topic exists).
pub const API_TOPIC_READY_WAIT_MS: u64 = 10_000;
/// Configs one topic creation or config change over HTTP may carry.
pub const MAX_API_TOPIC_CONFIGS: usize = 1_024;
/// Records one produce over HTTP may carry (the body is also bounded: 2 MiB).
pub const MAX_API_PRODUCE_RECORDS: usize = 10_000;
/// Records a consume over HTTP returns by default, and at most.
pub const API_CONSUME_DEFAULT_RECORDS: usize = 100;
pub const MAX_API_CONSUME_RECORDS: usize = 1_000;
/// Record bytes a consume over HTTP fetches at most.
pub const MAX_API_CONSUME_BYTES: i32 = 8 * 1024 * 1024;
/// Records one queue receive over HTTP hands out at most (SQS: 10); the default is 1.
pub const MAX_QUEUE_RECEIVE_MESSAGES: usize = 100;
/// How long one queue receive may wait for records (SQS's long poll: 20 s).
pub const MAX_QUEUE_WAIT_MS: u64 = 20_000;
/// A waiting queue receive looks again this often when some of its partitions are led by
/// other nodes (their records wake nothing here).
pub const QUEUE_REMOTE_POLL_MS: u64 = 100;
/// Dead letters one DLQ read over HTTP returns at most (100 by default).
pub const MAX_API_SHOW_DEAD_LETTERS: u64 = 1_000;
/// Key, value and header bytes one DLQ read over HTTP returns at most (the dead letters after
/// the one that crosses it are left for the next read).
pub const MAX_API_SHOW_BYTES: usize = 8 * 1024 * 1024;
/// Offsets one redrive over HTTP may choose.
pub const MAX_API_REDRIVE_OFFSETS: usize = 10_000;
/// Redrive jobs running at once over HTTP (one per DLQ topic); finished ones kept to be read.
pub const MAX_API_JOBS_RUNNING: usize = 4;
pub const MAX_API_JOBS_KEPT: usize = 100;
/// The fastest pace a redrive may ask for (`max_per_second`; the CLI allows the same).
pub const MAX_API_REDRIVE_RATE: u32 = 1_000_000;
/// Filtered scans (`key_contains`, `value_contains`, `header`) one node runs at once; fewer than
/// `MAX_API_CLIENTS`, so long scans leave pooled clients for the rest of the API.
pub const MAX_API_SCANS: usize = 4;
/// Key and value bytes one consume answer, or one poll of a tail, decodes with the registry
/// (`decode=registry`); a decoded document is several times its bytes.
pub const MAX_API_DECODE_BYTES: usize = 256 * 1024;
/// The web console: the largest API answer a page renders (a bigger one is an error page).
pub const CONSOLE_MAX_API_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The overview counts records and message rates for at most this many topics (each is one
/// describe call per refresh); the topics page lists them all.
pub const CONSOLE_MAX_OVERVIEW_TOPICS: usize = 50;
/// Subjects the schema page lists (each is one lookup of its latest version).
pub const CONSOLE_MAX_SUBJECTS: usize = 500;
/// Time a schema diff may take; past it the diff is coarser (whole blocks), never wrong.
pub const CONSOLE_DIFF_TIMEOUT_MS: u64 = 200;
/// Acknowledgements one batch acknowledge over HTTP carries at most.
pub const MAX_QUEUE_ACKS: usize = 100;
/// A filtered consume over HTTP (`key_contains`, `value_contains`, `header`) reads on past
/// records that do not match, fetch after fetch, until it has `max_records` matches (or
/// `max_bytes` of them), reaches the high watermark, or has examined this many record bytes
/// (keys, values, headers) or records, or spent this long (after the first fetch's
/// `timeout_ms`); then it answers with what it found and `next_offset` to go on from.
pub const MAX_API_SCAN_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_API_SCAN_RECORDS: u64 = 1_000_000;
pub const MAX_API_SCAN_MS: u64 = 10_000;
/// Bytes of one browse filter parameter (`key_contains`, `value_contains`, `header`).
pub const MAX_API_FILTER_BYTES: usize = 4_096;
/// Live tails over HTTP (`/v1/topics/{t}/tail`, Server-Sent Events) open at once on a node;
/// the next is refused with 429 (42901) until one ends.
pub const MAX_API_TAILS: usize = 32;
/// A tail's stream ends after this long; an `EventSource` reconnects with `Last-Event-ID` and
/// goes on where it was.
pub const API_TAIL_MAX_LIFETIME_MS: u64 = 3_600_000;
/// Partitions one tail follows (every event's id names each one's position); a tail of a
/// larger topic names its `partition`.
pub const MAX_API_TAIL_PARTITIONS: usize = 256;
/// How long one poll of a tail waits for new records (a long fetch: a new record is sent
/// within about this long), and the record bytes one poll fetches at most.
pub const API_TAIL_POLL_WAIT_MS: u64 = 500;
pub const API_TAIL_POLL_BYTES: i32 = 1024 * 1024;
/// A tail with nothing to send sends a keep-alive comment this often (so proxies keep the
/// connection and a gone client is noticed).
pub const API_TAIL_KEEPALIVE_MS: u64 = 15_000;
/// A tail whose reader takes no event for this long while events wait is ended (its slot and
/// Kafka connection freed): a client that stops reading cannot hold a tail forever.
pub const API_TAIL_STALL_MS: u64 = 30_000;
/// Events a tail reads ahead of its reader.
pub const API_TAIL_BUFFERED_EVENTS: usize = 16;
