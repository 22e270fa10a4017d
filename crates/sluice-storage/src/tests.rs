//! Log-level tests on real files in a temporary directory.

use crate::records::tests::make_batch;
use crate::records::BatchIter;
use crate::{Log, LogConfig, StorageError};

fn open(dir: &std::path::Path, config: LogConfig) -> Log {
    Log::open(dir, config, 0, &mut |_| {}).unwrap()
}

fn append(log: &mut Log, count: i32, ts: i64) -> (i64, i64) {
    let b = make_batch(count, 100, ts);
    let batches = log.validate(&b, ts).unwrap();
    let info = log.append(&b, &batches, 0, ts).unwrap();
    (info.first_offset, info.last_offset)
}

fn read_offsets(log: &Log, offset: i64, max: usize) -> Vec<(i64, i64)> {
    match log.read(offset, max).unwrap() {
        None => vec![],
        Some(slice) => {
            let bytes = slice.load().unwrap();
            BatchIter::new(&bytes)
                .map(|(_, h)| (h.base_offset, h.last_offset()))
                .collect()
        }
    }
}

#[test]
fn append_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(append(&mut log, 3, 10), (0, 2));
    assert_eq!(append(&mut log, 2, 20), (3, 4));
    assert_eq!(read_offsets(&log, 0, 1 << 20), vec![(0, 2), (3, 4)]);
    assert_eq!(read_offsets(&log, 4, 1 << 20), vec![(3, 4)]);
    assert_eq!(read_offsets(&log, 5, 1 << 20), vec![]);
    // At least one whole batch even when max_bytes is tiny (KIP-74).
    assert_eq!(read_offsets(&log, 0, 1), vec![(0, 2)]);
    assert!(matches!(
        log.read(6, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let mut seen = 0;
    let log = Log::open(dir.path(), LogConfig::default(), 0, &mut |_| seen += 1).unwrap();
    assert_eq!(seen, 2);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(read_offsets(&log, 3, 1 << 20), vec![(3, 4)]);
}

#[test]
fn recovery_truncates_torn_and_corrupt_tails() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, 3, 10);
    append(&mut log, 3, 10);
    drop(log);
    let seg = dir.path().join(format!("{:020}.log", 0));
    let good = std::fs::metadata(&seg).unwrap().len();
    // A torn write: half a batch at the end.
    let extra = make_batch(2, 50, 10);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend(&extra[..extra.len() / 2]);
    std::fs::write(&seg, &bytes).unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    assert_eq!(append(&mut log, 1, 10), (6, 6));
    drop(log);
    // A flipped byte inside the last batch: the batch fails its CRC and is cut.
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn rolls_segments_and_indexes_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..100 {
        assert_eq!(append(&mut log, 2, 1000 + i), (2 * i, 2 * i + 1));
    }
    assert!(log.segment_count() > 10);
    for offset in [0, 1, 37, 100, 150, 199] {
        let got = read_offsets(&log, offset, 1);
        assert_eq!(
            got,
            vec![(offset / 2 * 2, offset / 2 * 2 + 1)],
            "offset {offset}"
        );
    }
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(read_offsets(&log, 77, 1), vec![(76, 77)]);
    // By time: the first batch with a timestamp at or after 1050 is the 51st.
    let slice = log.find_by_timestamp(1050).unwrap().unwrap();
    let bytes = slice.load().unwrap();
    let (_, h) = BatchIter::new(&bytes).next().unwrap();
    assert_eq!(h.base_offset, 100);
    assert!(log.find_by_timestamp(5000).unwrap().is_none());
    let (ts, slice) = log.max_timestamp_batch().unwrap().unwrap();
    assert_eq!(ts, 1099);
    let bytes = slice.load().unwrap();
    assert_eq!(BatchIter::new(&bytes).next().unwrap().1.base_offset, 198);
}

#[test]
fn delete_records_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        retention_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..30 {
        append(&mut log, 1, i * 100);
    }
    let segments = log.segment_count();
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert!(matches!(
        log.read(4, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_offsets(&log, 5, 1), vec![(5, 5)]);
    assert!(log.delete_records_before(31).is_err());
    drop(log);
    let mut log = open(dir.path(), config);
    assert_eq!(log.log_start_offset(), 5);
    // At now=3000 everything with timestamp < 2000 (offsets 0..=19) may go, by whole segments.
    let outcome = log.apply_retention(3000, i64::MAX).unwrap();
    assert!(outcome.segments_deleted > 0);
    assert!(log.segment_count() < segments);
    assert!(log.log_start_offset() <= 20 && log.log_start_offset() > 5);
    // Everything expired: the active segment is rolled and the log empties, keeping offsets.
    log.apply_retention(100_000, log.log_end_offset()).unwrap();
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(append(&mut log, 1, 100_000), (30, 30));
}

#[test]
fn retention_by_size_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        retention_bytes: 2500,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for i in 0..40 {
        append(&mut log, 1, i);
    }
    log.apply_retention(0, log.log_end_offset()).unwrap();
    assert!(log.size_bytes() <= 2500 + 1000, "{}", log.size_bytes());
    assert!(log.size_bytes() >= 2500 - 1000);
    assert_eq!(log.log_end_offset(), 40);
}

#[test]
fn retention_never_deletes_at_or_above_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        retention_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..30 {
        append(&mut log, 1, i);
    }
    let segments = log.segment_count();
    assert!(segments > 3, "{segments}");
    // Everything expired, but the HW is 12: only segments ending at or below 12 go.
    let outcome = log.apply_retention(100_000, 12).unwrap();
    assert!(outcome.segments_deleted > 0);
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 12, "{start}");
    assert_eq!(
        read_offsets(&log, 12, 1),
        vec![(12, 12)],
        "the HW's record kept"
    );
    // HW 0: nothing at all, by time or by size.
    let dir2 = tempfile::tempdir().unwrap();
    let mut log2 = open(
        dir2.path(),
        LogConfig {
            retention_bytes: 0,
            ..config
        },
    );
    for i in 0..30 {
        append(&mut log2, 1, i);
    }
    let outcome = log2.apply_retention(100_000, 0).unwrap();
    assert_eq!(outcome.segments_deleted, 0);
    assert_eq!(log2.log_start_offset(), 0);
    // Once the HW is the log end, everything expired goes (the active segment rolled first).
    log2.apply_retention(100_000, 30).unwrap();
    assert_eq!(log2.log_start_offset(), 30);
}

#[test]
fn refuses_timestamps_outside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_before_max_ms: 1000,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    let future = make_batch(1, 10, 10_000_000);
    assert!(matches!(
        log.validate(&future, 0),
        Err(StorageError::InvalidTimestamp(_))
    ));
    assert!(log.validate(&future, 9_000_000).is_ok());
    let past = make_batch(1, 10, 1);
    assert!(matches!(
        log.validate(&past, 5000),
        Err(StorageError::InvalidTimestamp(_))
    ));
}

#[test]
fn rebuilds_a_missing_index_of_an_older_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..40 {
        append(&mut log, 2, 1000 + i);
    }
    assert!(log.segment_count() > 3);
    drop(log);
    let first_index = dir.path().join(format!("{:020}.index", 0));
    assert!(
        std::fs::metadata(&first_index).unwrap().len() > 0,
        "rolled segments persist their index"
    );
    std::fs::remove_file(&first_index).unwrap();
    let log = open(dir.path(), config);
    assert!(first_index.exists(), "the rebuilt index is written back");
    assert_eq!(read_offsets(&log, 5, 1), vec![(4, 5)]);
    assert_eq!(log.log_end_offset(), 80);
}

/// A log of several segments (small segments, an index entry every batch or so).
fn multi_segment_log(dir: &std::path::Path) -> LogConfig {
    let config = LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = open(dir, config.clone());
    for i in 0..40 {
        append(&mut log, 2, 1000 + i);
    }
    assert!(log.segment_count() > 3);
    config
}

fn segment_path(dir: &std::path::Path, base: i64, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Reads every offset of the log one batch at a time; returns how many were found.
fn all_offsets(log: &Log) -> usize {
    let mut found = 0;
    for o in log.log_start_offset()..log.log_end_offset() {
        let got = read_offsets(log, o, 1);
        assert_eq!(got.len(), 1, "offset {o}");
        assert!(got[0].0 <= o && o <= got[0].1, "offset {o} read {got:?}");
        found += 1;
    }
    found
}

#[test]
fn a_bogus_index_never_shortens_an_older_segment() {
    let entry = |rel: u32, pos: u32| {
        let mut b = rel.to_be_bytes().to_vec();
        b.extend(pos.to_be_bytes());
        b
    };
    let bogus: Vec<(&str, Vec<u8>)> = vec![
        // The reported case: one entry pointing 30 bytes in.
        ("one entry mid-batch", entry(0, 30)),
        (
            "first entry not at 0",
            [entry(0, 0), entry(1, 30)].concat()[8..].to_vec(),
        ),
        ("last entry mid-batch", [entry(0, 0), entry(3, 30)].concat()),
        (
            "last entry wrong offset",
            [entry(0, 0), entry(7, 0)].concat(),
        ),
        (
            "not monotonic",
            [entry(0, 0), entry(4, 200), entry(2, 100)].concat(),
        ),
        (
            "beyond the file",
            [entry(0, 0), entry(2, 1_000_000)].concat(),
        ),
        ("torn entry", [entry(0, 0), vec![1, 2, 3]].concat()),
        ("empty", vec![]),
        ("garbage", vec![0xff; 64]),
    ];
    for (what, index) in bogus {
        let dir = tempfile::tempdir().unwrap();
        let config = multi_segment_log(dir.path());
        let seg = segment_path(dir.path(), 0, "log");
        let size = std::fs::metadata(&seg).unwrap().len();
        std::fs::write(segment_path(dir.path(), 0, "index"), &index).unwrap();
        let log = open(dir.path(), config);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), size, "{what}");
        assert_eq!(log.log_end_offset(), 80, "{what}");
        assert_eq!(all_offsets(&log), 80, "{what}");
        let rebuilt = std::fs::read(segment_path(dir.path(), 0, "index")).unwrap();
        assert_eq!(
            &rebuilt[..8],
            &entry(0, 0)[..],
            "{what}: the index was rebuilt"
        );
    }
}

#[test]
fn a_bogus_time_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = multi_segment_log(dir.path());
    let good = std::fs::read(segment_path(dir.path(), 0, "timeindex")).unwrap();
    // A last entry claiming an older timestamp than the segment holds would let retention
    // delete the segment early: it does not match its batch, so the index is rebuilt.
    let mut bogus = good.clone();
    let n = bogus.len();
    bogus[n - 12..n - 4].copy_from_slice(&5i64.to_be_bytes());
    for (what, bytes) in [
        ("decreasing", bogus),
        ("torn", good[..good.len() - 1].to_vec()),
    ] {
        std::fs::write(segment_path(dir.path(), 0, "timeindex"), &bytes).unwrap();
        let log = open(dir.path(), config.clone());
        assert_eq!(
            std::fs::read(segment_path(dir.path(), 0, "timeindex")).unwrap(),
            good,
            "{what}"
        );
        let slice = log.find_by_timestamp(1001).unwrap().unwrap();
        let (_, h) = BatchIter::new(&slice.load().unwrap()).next().unwrap();
        assert_eq!(h.base_offset, 2, "{what}");
    }
}

#[test]
fn a_wrong_middle_index_entry_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let config = multi_segment_log(dir.path());
    let path = segment_path(dir.path(), 0, "index");
    let mut index = std::fs::read(&path).unwrap();
    assert!(index.len() >= 24, "needs three entries");
    // Move the second entry's position 5 bytes forward: still sorted, first and last intact.
    let pos = u32::from_be_bytes(index[12..16].try_into().unwrap()) + 5;
    index[12..16].copy_from_slice(&pos.to_be_bytes());
    std::fs::write(&path, &index).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(all_offsets(&log), 80);
}

#[test]
fn a_crc_valid_older_segment_with_a_corrupt_batch_is_cut_there_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = multi_segment_log(dir.path());
    let seg = segment_path(dir.path(), 0, "log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let first_len = BatchIter::new(&bytes).next().unwrap().1.total_len();
    // Corrupt the second batch and drop the index: the rebuild keeps the first batch.
    bytes[first_len + 70] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::remove_file(segment_path(dir.path(), 0, "index")).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), first_len as u64);
    assert_eq!(read_offsets(&log, 0, 1), vec![(0, 1)]);
    assert_eq!(log.log_end_offset(), 80);
}

#[test]
fn directories_are_fsynced_at_each_change() {
    use crate::durability::take_synced_dirs;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    take_synced_dirs();
    let config = LogConfig {
        segment_bytes: 1000,
        ..LogConfig::default()
    };
    let mut log = open(&dir, config);
    let synced = take_synced_dirs();
    assert!(
        synced.contains(&root.path().to_path_buf()),
        "partition dir created: {synced:?}"
    );
    assert!(synced.contains(&dir), "first segment created: {synced:?}");
    append(&mut log, 1, 0);
    assert_eq!(
        take_synced_dirs(),
        vec![dir.clone()],
        "the first append in a leader epoch checkpoints the epoch"
    );
    append(&mut log, 1, 0);
    assert!(
        take_synced_dirs().is_empty(),
        "a plain append changes no directory"
    );
    while log.segment_count() < 3 {
        append(&mut log, 1, 0);
    }
    // Each roll: the old segment's index files are renamed into place, the new one created.
    let synced = take_synced_dirs();
    assert!(
        synced.len() >= 2 * 3 && synced.iter().all(|d| d == &dir),
        "{synced:?}"
    );
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    let synced = take_synced_dirs();
    // log-start-offset renamed, then segments removed.
    assert!(
        synced.len() >= 2 && synced.iter().all(|d| d == &dir),
        "{synced:?}"
    );
    log.delete().unwrap();
    assert_eq!(take_synced_dirs(), vec![root.path().to_path_buf()]);
    assert!(!dir.exists());
}

#[test]
fn clean_shutdown_marker_skips_the_crc_pass_only() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let mut log = open(&dir, LogConfig::default());
    append(&mut log, 3, 10);
    append(&mut log, 3, 10);
    drop(log);
    let seg = segment_path(&dir, 0, "log");
    let good = std::fs::metadata(&seg).unwrap().len();
    // A flipped payload byte (framing intact): only a CRC pass sees it.
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    crate::durability::write_clean_shutdown_marker(root.path()).unwrap();
    let mut seen = 0;
    let log = Log::open(&dir, LogConfig::default(), 0, &mut |_| seen += 1).unwrap();
    assert_eq!(
        (log.log_end_offset(), seen),
        (6, 2),
        "headers walked, CRC not checked"
    );
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    drop(log);
    // A torn tail (framing broken) is cut even with the marker.
    let mut torn = bytes.clone();
    torn.extend(&make_batch(2, 50, 10)[..40]);
    std::fs::write(&seg, &torn).unwrap();
    let log = open(&dir, LogConfig::default());
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    drop(log);
    // Without the marker the CRC pass runs and cuts the corrupt batch.
    assert!(crate::durability::remove_clean_shutdown_marker(root.path()).unwrap());
    let log = open(&dir, LogConfig::default());
    assert_eq!(log.log_end_offset(), 3);
}

/// A batch flagged as gzip-compressed (its records are not decoded by the log).
fn compressed_batch(count: i32) -> Vec<u8> {
    let mut b = make_batch(1, 10, 0);
    b[21..23].copy_from_slice(&1i16.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crate::records::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn record_counts_must_fit_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // Uncompressed: 3 records of 10-byte values are 3 * 17 bytes; 7 bytes per record at least.
    let mut b = make_batch(3, 10, 0);
    let records_bytes = (b.len() - 61) as i32;
    for (count, ok) in [
        (3, true),
        (records_bytes / 7, true),
        (records_bytes / 7 + 1, false),
        (i32::MAX, false),
    ] {
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crate::records::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let got = log.validate(&b, 0);
        assert_eq!(got.is_ok(), ok, "count {count}: {got:?}");
        if !ok {
            assert!(matches!(got, Err(StorageError::InvalidRecord(_))));
        }
    }
    // Compressed: bounded by max.message.bytes / 7 decompressed.
    let max = (LogConfig::default().max_message_bytes / 7) as i32;
    assert!(log.validate(&compressed_batch(max), 0).is_ok());
    for count in [max + 1, i32::MAX] {
        assert!(matches!(
            log.validate(&compressed_batch(count), 0),
            Err(StorageError::InvalidRecord(_))
        ));
    }
}

#[test]
fn rolls_before_a_relative_offset_overflows() {
    let dir = tempfile::tempdir().unwrap();
    // A huge max.message.bytes lets one compressed batch claim 2^30 records.
    let config = LogConfig {
        max_message_bytes: 1 << 40,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    let mut info = Vec::new();
    for _ in 0..3 {
        let b = compressed_batch(1 << 30);
        let batches = log.validate(&b, 0).unwrap();
        let got = log.append(&b, &batches, 0, 0).unwrap();
        info.push((got.first_offset, got.last_offset, log.segment_count()));
    }
    let g = 1i64 << 30;
    // The second batch ends at relative offset 2^31 - 1: still indexable. The third rolls.
    assert_eq!(
        info,
        vec![(0, g - 1, 1), (g, 2 * g - 1, 1), (2 * g, 3 * g - 1, 2)]
    );
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 3 * g);
    assert_eq!(read_offsets(&log, 2 * g + 5, 1), vec![(2 * g, 3 * g - 1)]);
    assert_eq!(read_offsets(&log, g + 5, 1), vec![(g, 2 * g - 1)]);
}

#[test]
fn good_indexes_of_older_segments_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = multi_segment_log(dir.path());
    let before = std::fs::read(segment_path(dir.path(), 0, "index")).unwrap();
    crate::durability::take_synced_dirs();
    let log = open(dir.path(), config);
    // Nothing rebuilt, so nothing written (a rebuild writes the index and fsyncs the dir).
    assert_eq!(
        crate::durability::take_synced_dirs(),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        std::fs::read(segment_path(dir.path(), 0, "index")).unwrap(),
        before
    );
    assert_eq!(all_offsets(&log), 80);
}

/// `extent` (headers only, read a window at a time) finds the same whole batches as loading
/// the slice, for batches smaller and larger than its window, and stops before a bound.
#[test]
fn extent_walks_headers_like_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    // Offsets 0..=2 (small), 3..=42 (40 x 300 B, larger than the 4 KiB window), then small
    // batches of one record each, many to a window.
    let mut ends = Vec::new();
    for (count, size) in [
        (3, 10),
        (40, 300),
        (1, 5),
        (1, 5),
        (1, 5),
        (7, 2000),
        (1, 5),
    ] {
        let b = make_batch(count, size, 10);
        let batches = log.validate(&b, 10).unwrap();
        ends.push(log.append(&b, &batches, 0, 10).unwrap().last_offset);
    }
    let slice = log.read(0, 1 << 20).unwrap().unwrap();
    let loaded = slice.load().unwrap();
    let all = slice.extent(i64::MAX).unwrap();
    assert_eq!(all.len, loaded.len());
    assert_eq!(all.next_offset, Some(ends[ends.len() - 1] + 1));
    // Stop before each batch's last offset: every batch before it, and only those.
    let mut whole = 0;
    for (at, h) in BatchIter::new(&loaded) {
        let e = slice.extent(h.last_offset()).unwrap();
        assert_eq!(e.len, at, "stop before {}", h.last_offset());
        assert_eq!(e.next_offset, (at > 0).then_some(h.base_offset));
        whole = at + h.total_len();
    }
    assert_eq!(whole, loaded.len());
    // A slice cut inside a batch (header or body) ends at the batch before it.
    for cut in [1, 60, 61, 200, loaded.len() - 1] {
        let e = slice.prefix(cut).extent(i64::MAX).unwrap();
        let expect = BatchIter::new(&loaded[..cut]).fold(0, |_, (at, h)| at + h.total_len());
        assert_eq!(e.len, expect, "cut at {cut}");
    }
}
