//! Share groups (KIP-932, "queues for Kafka") for Sluice: the per-partition
//! state machine that Kafka calls `SharePartition`, as plain code.
//!
//! # What it holds
//!
//! One [`SharePartition`] is one topic-partition as seen by one share group.
//! It tracks the in-flight window `[start, end)` (Kafka's SPSO / SPEO): for
//! every offset in it, whether the record is available, acquired by a member
//! under a time-limited lock, acknowledged, archived, or waiting for its
//! dead-letter write; plus its delivery count. Offsets below `start` are done
//! (or deleted from the log); offsets at or above `end` were never delivered.
//!
//! # Invariants
//!
//! - **No IO, no threads, no clock, no randomness.** Every call that depends
//!   on time takes `now_ms` from the caller, so tests drive time by hand and
//!   the same inputs always give the same outputs. The caller runs
//!   [`SharePartition::tick`] at [`SharePartition::next_deadline_ms`].
//! - **No panics on any input.** Offsets out of range, reversed ranges,
//!   empty or wrong-length type arrays, unknown type codes, huge ranges and
//!   corrupt snapshots give errors (or are ignored where the API has no error
//!   channel); nothing indexes or does arithmetic that input can break.
//! - **One holder per record.** An offset is acquired by at most one member
//!   at a time, and only that member, before its lock deadline, may
//!   acknowledge it (Kafka's rule; anything else is `INVALID_RECORD_STATE`).
//! - **Done is final.** An acknowledged or archived offset is never offered
//!   again (until [`SharePartition::reset`]).
//! - **Dead letters before archive.** A rejected record, or one released or
//!   expired at the delivery-count limit, stays in a dead-lettering state that
//!   the window start cannot pass until the caller confirms the DLQ write with
//!   [`SharePartition::dead_lettered`] (or `dead_letter` is off in
//!   [`ShareConfig`], then it is archived at once).
//! - **Bounded memory.** The window never exceeds
//!   `min(max_in_flight, MAX_WINDOW)` offsets except after a restore from a
//!   snapshot taken with a larger bound; the timer and hint heaps hold at most
//!   a few entries per call that added them and are trimmed as start moves.
//!
//! # Complexity (n = window length, k = records touched by the call)
//!
//! - `acquire`: O(k log n). Records released below the scan cursor come from
//!   a min-heap; the forward scan cursor only moves forward, so scanning past
//!   acquired/acknowledged slots is paid once per slot over the slot's life.
//!   One timer-heap entry is pushed per contiguous run of acquired offsets.
//! - `acknowledge`: O(batch length) (bounded by n: a batch outside the window
//!   is rejected before any per-offset work), plus one heap push per
//!   contiguous run of renewed or backed-off offsets.
//! - `tick` (and the due-deadline processing at the start of `acquire`): the
//!   sum of the spans of timer entries that are due; each entry's span is at
//!   most the offsets its creating call touched, so this is amortised into
//!   those calls. Entries whose records are all below start are dropped when
//!   start moves, so most stale timers never fire.
//! - `release_member`, `snapshot`: O(n). Both are rare (member leave / share
//!   session close; persistence).
//! - `start_offset`, `end_offset`, `lag`, `in_flight`, `next_deadline_ms`:
//!   O(1).
//! - No per-record heap allocation: slots live in one `VecDeque` whose
//!   capacity is reused; heap pushes are amortised into their vectors.
//!
//! # Sluice-specific behaviour (not in Kafka)
//!
//! - **Release backoff** (`share.release.backoff.ms`, SQS/NATS-style delayed
//!   redelivery): a record released or expired after its n-th delivery is not
//!   offered again until `now + min(b * 2^(n-1), max)`.
//! - **Dead-letter state** (BRIEF §5): see above. Kafka 4.2 archives such
//!   records directly.
//! - **Gap** acknowledgements archive the offset (as Kafka does); the only
//!   visible difference from Accept is the state in snapshots.

mod members;
mod partition;
#[cfg(test)]
mod tests;

pub use partition::SharePartition;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use partition::check;

use std::fmt;

/// A share-group member id, shared with the membership code without copying.
pub type MemberId = std::sync::Arc<str>;

/// Kafka's `INVALID_REQUEST` error code.
pub const INVALID_REQUEST: i16 = 42;
/// Kafka's `INVALID_RECORD_STATE` error code (KIP-932).
pub const INVALID_RECORD_STATE: i16 = 121;

/// Per-group settings that the state machine reads on every call, so a
/// config change through IncrementalAlterConfigs applies at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    /// `share.record.lock.duration.ms`: how long an acquisition lock lasts.
    pub lock_duration_ms: u64,
    /// `share.delivery.count.limit`: deliveries before a record is
    /// dead-lettered. 0 is treated as 1 (a record is always delivered once).
    pub delivery_count_limit: u16,
    /// `group.share.partition.max.record.locks`: bound on `end - start`.
    pub max_in_flight: u64,
    /// `share.release.backoff.ms` (Sluice's own): base delay before a released
    /// or expired record is offered again; 0 means at once.
    pub release_backoff_ms: u64,
    /// Cap of the exponential release backoff.
    pub release_backoff_max_ms: u64,
    /// False when the group's DLQ topic name is set empty: records are then
    /// archived directly instead of dead-lettered.
    pub dead_letter: bool,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            max_in_flight: 2000,
            release_backoff_ms: 0,
            release_backoff_max_ms: 60_000,
            dead_letter: true,
        }
    }
}

/// Kafka's `AcknowledgeType` codes (ShareFetch / ShareAcknowledge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckType {
    /// The offset has no record (compaction hole, control record).
    Gap = 0,
    /// Processed: never deliver again.
    Accept = 1,
    /// Give it back for redelivery; the delivery count is kept.
    Release = 2,
    /// Permanent failure: dead-letter it.
    Reject = 3,
    /// Extend the acquisition lock (KIP-1222, ShareFetch/ShareAcknowledge v2).
    Renew = 4,
}

impl TryFrom<i8> for AckType {
    type Error = AckError;

    fn try_from(code: i8) -> Result<Self, AckError> {
        match code {
            0 => Ok(AckType::Gap),
            1 => Ok(AckType::Accept),
            2 => Ok(AckType::Release),
            3 => Ok(AckType::Reject),
            4 => Ok(AckType::Renew),
            other => Err(AckError::InvalidRequest(format!(
                "unknown acknowledge type {other}"
            ))),
        }
    }
}

impl From<AckType> for i8 {
    fn from(t: AckType) -> i8 {
        t as i8
    }
}

/// Consecutive offsets acquired together with the same delivery count: one
/// entry of ShareFetchResponse's `AcquiredRecords`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquiredRange {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: u16,
}

/// Kafka's checks on one partition's acknowledgement batches in a request
/// (`KafkaApis.validateAcknowledgementBatches`), before any is applied: each
/// batch has `first <= last` and one type or one per offset, and the batches
/// are ascending and do not overlap. The last rule also bounds the work a
/// request can cause: applying the batches touches each in-flight offset at
/// most once, however many batches a hostile client sends.
///
/// Types are not checked here ([`SharePartition::acknowledge`] does, per
/// batch, as Kafka does it per batch).
pub fn validate_ack_batches<'a>(
    batches: impl IntoIterator<Item = (i64, i64, &'a [i8])>,
) -> Result<(), AckError> {
    // The lowest offset the next batch may start at (None: past i64::MAX).
    let mut next = Some(i64::MIN);
    for (first, last, types) in batches {
        if last < first {
            return Err(AckError::InvalidRequest(format!(
                "acknowledgement batch {first}..={last}: last offset below first"
            )));
        }
        if next.is_none_or(|n| first < n) {
            return Err(AckError::InvalidRequest(format!(
                "acknowledgement batch {first}..={last} overlaps or precedes the previous one"
            )));
        }
        // i128: a batch from i64::MIN to i64::MAX must not overflow.
        let len = i128::from(last) - i128::from(first) + 1;
        if types.is_empty() || (types.len() != 1 && types.len() as i128 != len) {
            return Err(AckError::InvalidRequest(format!(
                "acknowledgement batch {first}..={last} has {} types (need 1 or {len})",
                types.len()
            )));
        }
        next = last.checked_add(1);
    }
    Ok(())
}

/// Why a record goes to the dead-letter topic (written as an origin header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// A consumer acknowledged it with Reject.
    Rejected,
    /// It was released or its lock expired at the delivery-count limit.
    DeliveryLimit,
}

/// A record the caller must copy to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: i64,
    pub delivery_count: u16,
    pub reason: DeadLetterReason,
    /// Dead-lettering when this state was restored from a snapshot: the writer that held it
    /// before (a share-partition leader that died or moved) may have copied it already, so
    /// the caller looks for that copy before writing another.
    pub maybe_copied: bool,
}

/// Why an acknowledgement batch was refused. Nothing of a refused batch is
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// Kafka `INVALID_RECORD_STATE` (121): an offset is not currently acquired
    /// by this member (another member's, lock expired, already done, or
    /// outside the in-flight window).
    InvalidRecordState(String),
    /// Kafka `INVALID_REQUEST` (42): the batch itself is malformed.
    InvalidRequest(String),
}

impl AckError {
    /// The Kafka wire error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            AckError::InvalidRecordState(_) => INVALID_RECORD_STATE,
            AckError::InvalidRequest(_) => INVALID_REQUEST,
        }
    }

    /// The human-readable detail (for the response's error message).
    pub fn message(&self) -> &str {
        match self {
            AckError::InvalidRecordState(m) | AckError::InvalidRequest(m) => m,
        }
    }
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::InvalidRecordState(m) => write!(f, "INVALID_RECORD_STATE: {m}"),
            AckError::InvalidRequest(m) => write!(f, "INVALID_REQUEST: {m}"),
        }
    }
}

impl std::error::Error for AckError {}

/// What an operator sees of a share-partition's window ([`SharePartition::stats`]): the
/// console's and `/v1/share-groups`' in-flight records and delivery-count histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowStats {
    /// SPSO and SPEO.
    pub start_offset: i64,
    pub end_offset: i64,
    /// Records locked by a consumer now.
    pub acquired: u64,
    /// Records in the window waiting for a consumer (available, or released and in their
    /// backoff); records beyond the window are not counted.
    pub available: u64,
    /// Records waiting for their copy to the dead-letter queue.
    pub dead_lettering: u64,
    /// The window's records not yet done, by delivery count: entry `i` counts records
    /// delivered `i` times, the last entry that many times or more
    /// ([`WindowStats::DELIVERY_BUCKETS`] entries).
    pub delivery_counts: Vec<u64>,
}

impl WindowStats {
    /// Entries of `delivery_counts`: 0 to 10 deliveries (Kafka's largest delivery limit is
    /// 10), and more.
    pub const DELIVERY_BUCKETS: usize = 12;
}

/// The durable form of a share-partition (see [`SharePartition::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// SPSO: every offset below it is done or gone.
    pub start_offset: i64,
    /// Ascending, non-overlapping runs; offsets in `[start_offset, ..)` not
    /// covered by a run are Available and were never delivered.
    pub runs: Vec<Run>,
}

/// Consecutive offsets with the same stored state and delivery count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub first: i64,
    pub last: i64,
    pub state: StoredState,
    pub delivery_count: u16,
}

/// Record states as persisted. Acquired is stored as Available: a lock does
/// not survive a restart. A pending release backoff is not stored either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StoredState {
    Available,
    Acknowledged,
    Archived,
    /// Waiting for its DLQ write, reason [`DeadLetterReason::DeliveryLimit`].
    /// The write is redone after a restart (at-least-once into the DLQ).
    DeadLettering,
    /// Waiting for its DLQ write, reason [`DeadLetterReason::Rejected`]. A
    /// separate variant so the reason survives a restart.
    DeadLetteringRejected,
}

/// Why [`SharePartition::try_from_snapshot`] refused a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid share-partition snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotError {}

// Added by the broker side: the redrive bookkeeping shared with the CLI.
mod handled;

/// The names dead-lettering shares between the broker (which writes dead letters) and the tools
/// that read and redrive them (`sluice-client`'s `dlq`).
pub mod dlq {
    /// The group config naming a share group's dead-letter topic (empty: dead-lettering off).
    pub const DLQ_TOPIC: &str = "errors.deadletterqueue.topic.name";
    /// The prefix of default dead-letter topics: `dlq.<group>`.
    pub const DLQ_PREFIX: &str = "dlq.";
    /// Headers added to every dead letter (Kafka Connect's `__connect.errors.*` style).
    pub const H_TOPIC: &str = "__dlq.errors.topic";
    pub const H_PARTITION: &str = "__dlq.errors.partition";
    pub const H_OFFSET: &str = "__dlq.errors.offset";
    pub const H_GROUP: &str = "__dlq.errors.group";
    pub const H_DELIVERY_COUNT: &str = "__dlq.errors.delivery.count";
    pub const H_REASON: &str = "__dlq.errors.reason";
    pub const H_TIMESTAMP: &str = "__dlq.errors.timestamp";
}
pub use handled::{HandledOffsets, DLQ_TOOL_GROUP, MAX_DECODED_RANGES};
