//! Sluice's storage engine: the log of one partition.
//!
//! A partition is a directory of segments named by base offset. Each segment holds record
//! batches exactly as clients sent them (base offset and leader epoch patched in), with a
//! sparse offset index and time index beside it. Opening a log recovers its active segment by
//! CRC and truncates a torn write (unless the last run shut down cleanly, see [`durability`]);
//! indexes are hints, checked before use and rebuilt from the segment when wrong. Every
//! creation, rename and removal of a file or directory is followed by an fsync of its parent
//! directory ([`fsync_dir`]).
//!
//! Replication (issue #10). Each log keeps its leader-epoch cache ([`leader_epoch`], Kafka's
//! `leader-epoch-checkpoint` file): the leader's [`Log::append`] records the first offset of
//! each new epoch (and refuses an epoch older than the latest, a stale leader), and a new
//! leader calls [`Log::assign_leader_epoch`] before it serves; retention and DeleteRecords
//! truncate the cache from the start, truncation from the end. The checkpoint is written (tmp,
//! fsync, rename, directory fsync) *before* the data it describes, so it never misses an epoch
//! the log holds; on open it is truncated to the recovered log, and rebuilt from batch headers
//! (never records) when missing or unreadable. A follower copies its leader's batches
//! unchanged with [`Log::append_as_follower`] (framing, magic and CRC checked; offsets must
//! follow the log end, forward gaps allowed as compaction leaves them; headers returned so the
//! broker rebuilds producer and transaction state), removes what diverged with
//! [`Log::truncate_to`] (whole batches: the new log end is the base of the batch holding the
//! offset), and restarts an empty log with [`Log::truncate_fully_and_start_at`]. Both
//! truncations order their file changes so a crash at any point recovers a valid log (the
//! notes on the replication `impl` in `log.rs`).
//!
//! Architecture invariant: this crate knows nothing of the network, of Kafka requests or of
//! topics; it never decodes records (no decompression) except in the cleaner ([`cleaner`]),
//! which reads keys to compact a log and is handed the codecs by the broker. It does no
//! locking and no background work: callers serialise access and decide when to fsync, when
//! to apply retention and when to clean.

pub mod cleaner;
pub mod durability;
pub mod error;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod producer_snapshot;
pub mod records;
pub mod segment;
pub mod txn_index;

pub use durability::{fsync_dir, CLEAN_SHUTDOWN_FILE};
pub use error::{Result, StorageError};
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{AppendInfo, FollowerAppend, FollowerBatch, Log, LogConfig, RetentionOutcome};
pub use records::{BatchHeader, BatchIter, ControlRecord, ProducedBatch};
pub use segment::{Extent, SegmentSlice};
pub use txn_index::AbortedTxnEntry;

#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod tests;
