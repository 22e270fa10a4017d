//! The transaction state a partition reads back from disk, as arbitrary bytes:
//! - a producer-state snapshot payload (`ProducerStateTable::decode`): never panics; what
//!   decodes re-encodes to a payload that decodes to the same encoding (no state invented or
//!   lost on a second restart), and the LSO it implies is within the high watermark;
//! - an aborted-transaction index file (`TxnIndex::open`): never panics; what it keeps is whole
//!   34-byte entries, ordered by marker offset, each with `first_offset <= last_offset`;
//! - a control batch (`parse_control_record`): never panics.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use sluice_broker::producer_state::ProducerStateTable;
use sluice_storage::records::parse_control_record;
use sluice_storage::txn_index::TxnIndex;

fuzz_target!(|data: &[u8]| {
    if let Some(table) = ProducerStateTable::decode(data) {
        let encoded = table.encode();
        let again = ProducerStateTable::decode(&encoded).expect("an encoding decodes");
        assert_eq!(again.encode(), encoded, "decode/encode is stable");
        let hw = i64::MAX;
        assert!(table.last_stable_offset(hw) <= hw);
    }

    let _ = parse_control_record(data);

    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-fuzz-txnindex-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = TxnIndex::path_for(&dir, "00000000000000000000");
    if std::fs::write(&path, data).is_ok() {
        if let Ok(index) = TxnIndex::open(path.clone()) {
            let entries = index.entries();
            assert!(entries.windows(2).all(|w| w[0].last_offset < w[1].last_offset));
            assert!(entries.iter().all(|e| e.first_offset <= e.last_offset));
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            assert_eq!(len, (entries.len() * 34) as u64, "a torn tail is cut");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
