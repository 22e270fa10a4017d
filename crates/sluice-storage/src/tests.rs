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
    let outcome = log.apply_retention(3000).unwrap();
    assert!(outcome.segments_deleted > 0);
    assert!(log.segment_count() < segments);
    assert!(log.log_start_offset() <= 20 && log.log_start_offset() > 5);
    // Everything expired: the active segment is rolled and the log empties, keeping offsets.
    log.apply_retention(100_000).unwrap();
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
    log.apply_retention(0).unwrap();
    assert!(log.size_bytes() <= 2500 + 1000, "{}", log.size_bytes());
    assert!(log.size_bytes() >= 2500 - 1000);
    assert_eq!(log.log_end_offset(), 40);
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
