//! Arbitrary bytes as a segment file and its two index files, opened as a log:
//! - as the active segment after a crash (CRC recovery),
//! - as an older segment before an empty active one (its index is checked, maybe rebuilt),
//! - as the active segment after a clean shutdown (the marker is present: headers only).
//!
//! Opening must never panic. Afterwards the segment is never shorter than its prefix of valid
//! batches (an index never cuts data); after CRC recovery every byte below its size is whole
//! CRC-valid batches, exactly that prefix; a cut in any mode is at the end of that prefix or
//! later. Reads, a time lookup, an append and a reopen must not panic either.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use sluice_storage::records::{crc_matches, BatchHeader, BatchIter, BATCH_HEADER_LEN};
use sluice_storage::{Log, LogConfig, CLEAN_SHUTDOWN_FILE};

/// Where the fuzzed files go: tmpfs when there is one (fsync is free there).
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    static N: AtomicU64 = AtomicU64::new(0);
    base.join(format!(
        "sluice-fuzz-seg-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The prefix of `bytes` made of whole batches that recovery accepts: magic 2, framed inside
/// the file, CRC-valid, offsets increasing and representable.
fn valid_prefix(bytes: &[u8], segment_base: i64) -> usize {
    let mut next = segment_base;
    let mut end = 0;
    for (at, h) in BatchIter::new(bytes) {
        let batch = &bytes[at..at + h.total_len()];
        if h.magic != 2 || h.last_offset_delta < 0 || h.base_offset < next || !crc_matches(batch)
        {
            break;
        }
        let Some(n) = h.checked_next_offset() else {
            break;
        };
        next = n;
        end = at + h.total_len();
    }
    end
}

/// True if `bytes` is entirely whole batches (framing only).
fn whole_batches(bytes: &[u8]) -> bool {
    let mut it = BatchIter::new(bytes);
    it.by_ref().for_each(drop);
    it.position() == bytes.len()
}

fn exercise(log: &mut Log) {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    // A few offsets across the range (offsets can span 2^63: do not visit them all).
    let span = end.saturating_sub(start);
    for k in 0..8i64 {
        let offset = start.saturating_add(span / 8 * k);
        if let Ok(Some(slice)) = log.read(offset, 1 << 16) {
            let _ = slice.load();
        }
    }
    for ts in [i64::MIN, -1, 0, 1000, i64::MAX] {
        if let Ok(Some(slice)) = log.find_by_timestamp(ts) {
            let _ = slice.load();
        }
    }
    let _ = log.max_timestamp_batch();
}

/// One valid uncompressed batch of one record.
fn one_batch() -> Vec<u8> {
    let rec = [0u8, 0, 0, 1, 2, b'x', 0]; // attributes, ts delta, offset delta, key -1, len 1, "x", headers
    let mut records = vec![(rec.len() as u8) << 1];
    records.extend(rec);
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend(((BATCH_HEADER_LEN - 12 + records.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(0i16.to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.extend(1000i64.to_be_bytes());
    b.extend(1000i64.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(1i32.to_be_bytes());
    b.extend(records);
    let crc = sluice_storage::records::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let mode = data[0] % 3;
    let index_len = usize::from(data[1]) * 2;
    let time_len = usize::from(data[2]) * 3;
    let interval = u64::from(data[3]) * 16 + 1;
    let base: i64 = if data[4] & 1 == 0 { 0 } else { 1 << 40 };
    let rest = &data[5..];
    let index_len = index_len.min(rest.len());
    let (index, rest) = rest.split_at(index_len);
    let time_len = time_len.min(rest.len());
    let (time_index, segment) = rest.split_at(time_len);

    let root = scratch_root();
    let dir = root.join("t-0");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = format!("{base:020}");
    std::fs::write(dir.join(format!("{stem}.log")), segment).unwrap();
    std::fs::write(dir.join(format!("{stem}.index")), index).unwrap();
    std::fs::write(dir.join(format!("{stem}.timeindex")), time_index).unwrap();
    if mode == 1 {
        // An empty active segment far after it: the fuzzed one is an older segment.
        std::fs::write(dir.join(format!("{:020}.log", i64::MAX / 2)), b"").unwrap();
    }
    if mode == 2 {
        std::fs::write(root.join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
    }
    let config = LogConfig {
        index_interval_bytes: interval,
        ..LogConfig::default()
    };

    let mut batches = 0u64;
    let opened = Log::open(&dir, config.clone(), 0, &mut |_: &BatchHeader| batches += 1);
    let mut log = opened.expect("opening a log of any bytes succeeds");
    let after = std::fs::read(dir.join(format!("{stem}.log"))).unwrap();
    let prefix = valid_prefix(segment, base);
    assert!(after.len() <= segment.len());
    assert!(
        after.len() >= prefix,
        "cut below its valid batches: {} < {prefix}",
        after.len()
    );
    assert_eq!(&after[..], &segment[..after.len()], "only ever truncated");
    match mode {
        0 => {
            assert_eq!(after.len(), prefix, "CRC recovery keeps exactly the valid batches");
            assert!(BatchIter::new(&after).all(|(at, h)| crc_matches(&after[at..at + h.total_len()])));
            assert!(whole_batches(&after));
        }
        1 => assert!(
            after.len() == segment.len() || after.len() == prefix,
            "an older segment is kept whole (a checked index) or recovered"
        ),
        _ => assert!(whole_batches(&after), "a clean open still ends at whole batches"),
    }
    exercise(&mut log);
    // The log still takes appends, and reopens (after a crash: no marker) without a panic.
    let b = one_batch();
    if let Ok(v) = log.validate(&b, 1000) {
        let end = log.log_end_offset();
        if let Ok(info) = log.append(&b, &v, 0, 1000) {
            assert_eq!(info.first_offset, end);
        }
    }
    drop(log);
    let _ = std::fs::remove_file(root.join(CLEAN_SHUTDOWN_FILE));
    if let Ok(mut log) = Log::open(&dir, config, 0, &mut |_| {}) {
        exercise(&mut log);
    }
    let _ = std::fs::remove_dir_all(&root);
});
