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
pub use segment::SegmentSlice;
pub use txn_index::AbortedTxnEntry;

#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod tests;
