//! Any records in the broker's internal logs (cluster metadata, committed offsets, share-group
//! state, schemas): opening the broker must replay them without panicking and must start —
//! replay never refuses over a stored record.
//!
//! Input: records separated by 0x1E; in each, key and value split at the first 0x1F (no 0x1F:
//! a value without a key; an empty value: a tombstone). The same records go to all four logs,
//! as valid CRC-checked batches, so the fuzzer works on what replay parses, not on framing
//! (the `segment_recovery` target covers framing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::internal_log::{encode_batch, KeyValue};
use sluice_broker::{Broker, BrokerConfig};

const LOGS: [&str; 4] = [
    "__cluster_metadata-0",
    "__consumer_offsets-0",
    "__share_group_state-0",
    "_schemas-0",
];

fuzz_target!(|data: &[u8]| {
    let records: Vec<KeyValue> = data
        .split(|b| *b == 0x1E)
        .take(64)
        .map(|r| match r.iter().position(|b| *b == 0x1F) {
            Some(at) => (Some(r[..at].to_vec()), nonempty(&r[at + 1..])),
            None => (None, nonempty(r)),
        })
        .collect();
    let Ok(batch) = encode_batch(&records, 0) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for log in LOGS {
        let d = dir.path().join(log);
        std::fs::create_dir_all(&d).expect("log dir");
        std::fs::write(d.join("00000000000000000000.log"), &batch).expect("segment");
    }
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        max_partitions: Some(64),
        ..BrokerConfig::default()
    };
    let addr = "127.0.0.1:9092".parse().expect("literal address");
    if let Err(e) = Broker::open(config, addr) {
        panic!("the broker refused to start over stored records: {e:#}");
    }
});

fn nonempty(b: &[u8]) -> Option<Vec<u8>> {
    (!b.is_empty()).then(|| b.to_vec())
}
