//! What a replica reads that another broker or the disk wrote:
//! - `LeaderEpochCache::decode` on arbitrary bytes as a `leader-epoch-checkpoint` file;
//! - `Log::open` on a partition directory whose checkpoint file holds those bytes (beside one
//!   valid segment);
//! - `Log::append_as_follower` on arbitrary bytes as a leader's fetched batches, then a
//!   truncation into what it appended and a reopen.
//!
//! Never panics. A decoded cache has strictly increasing epochs and start offsets and encodes
//! back to a file that decodes to the same cache. An opened log's epoch cache lies below its
//! log end. An accepted follower append leaves whole, CRC-valid batches with increasing offsets
//! that reopen the same; a refused one leaves the log unchanged.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use sluice_storage::leader_epoch::{LeaderEpochCache, LEADER_EPOCH_CHECKPOINT_FILE};
use sluice_storage::records::{crc_matches, BatchIter};
use sluice_storage::{Log, LogConfig};

fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    static N: AtomicU64 = AtomicU64::new(0);
    base.join(format!(
        "sluice-fuzz-replica-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn stored(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let Some(slice) = log.read(at, 1 << 20).unwrap() else {
            break;
        };
        let bytes = slice.load().unwrap();
        let Some((_, last)) = BatchIter::new(&bytes).last() else {
            break;
        };
        at = last.next_offset();
        out.extend(bytes);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Some(cache) = LeaderEpochCache::decode(data) {
        let e = cache.entries();
        assert!(e
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset));
        let again = LeaderEpochCache::decode(cache.encode().as_bytes());
        assert_eq!(again.as_ref(), Some(&cache));
    }

    let root = scratch_root();
    let dir = root.join("t-0");
    // A checkpoint of fuzzed bytes beside a valid log.
    {
        let mut log = Log::open(&dir, config(), 0, &mut |_| {}).unwrap();
        let batch = sluice_storage::records::build_control_batch(
            1,
            0,
            sluice_storage::ControlRecord {
                kind: sluice_storage::ControlRecord::COMMIT,
                coordinator_epoch: 0,
            },
            0,
        );
        let batches = log.validate(&batch, 0).unwrap();
        log.append(&batch, &batches, 3, 0).unwrap();
    }
    std::fs::write(dir.join(LEADER_EPOCH_CHECKPOINT_FILE), data).unwrap();
    let mut log = Log::open(&dir, config(), 0, &mut |_| {}).unwrap();
    let end = log.log_end_offset();
    assert!(log
        .leader_epoch_cache()
        .entries()
        .iter()
        .all(|e| e.start_offset < end));
    assert_eq!(log.latest_epoch(), Some(3));

    // The same bytes as a leader's batches.
    let before = stored(&log);
    match log.append_as_follower(data, 0) {
        Ok(a) => {
            assert!(a.first_offset >= end);
            assert_eq!(a.log_end_offset, log.log_end_offset());
            let bytes = stored(&log);
            let mut next = -1;
            for (at, h) in BatchIter::new(&bytes) {
                assert!(crc_matches(&bytes[at..at + h.total_len()]));
                assert!(h.base_offset >= next);
                next = h.next_offset();
            }
            let mid = a.first_offset + (a.last_offset - a.first_offset) / 2;
            let new_end = log.truncate_to(mid).unwrap();
            assert!(new_end <= mid && new_end >= end);
            let kept = stored(&log);
            drop(log);
            let log = Log::open(&dir, config(), 0, &mut |_| {}).unwrap();
            assert_eq!(stored(&log), kept);
            assert_eq!(log.log_end_offset(), new_end);
        }
        Err(_) => {
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(stored(&log), before);
        }
    }
    let _ = std::fs::remove_dir_all(&root);
});
