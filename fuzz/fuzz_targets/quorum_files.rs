//! The metadata quorum's untrusted bytes (`sluice-quorum`), all from the same input:
//! - a log segment (`scan_segment`, and `open_log` on a directory whose only segment holds the
//!   bytes): never panics; the valid prefix is whole frames whose entries re-encode stably and
//!   have consecutive indexes; a torn tail is cut once (a second open keeps the same entries and
//!   cuts nothing more); damage that is not a torn tail refuses to open;
//! - an atomic file (`decode_file`), a snapshot payload (`decode_snapshot`);
//! - cluster RPC frames (`rpc::decode_request`/`decode_response`) and quorum requests
//!   (`parse_quorum_request`, the JSON of AppendEntries / Vote / InstallSnapshot): never panic.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use sluice_quorum::fuzzing::{encode_entry_body, frame_record, open_log};
use sluice_quorum::{decode_entry_body, decode_file, decode_snapshot, parse_quorum_request, rpc, scan_segment};

fuzz_target!(|data: &[u8]| {
    let scan = scan_segment(data);
    assert!(scan.valid_len as usize <= data.len());
    for w in scan.entries.windows(2) {
        assert!(w[0].0 < w[1].0, "offsets grow");
    }
    for (off, e) in &scan.entries {
        assert!((*off as usize) < scan.valid_len as usize);
        let body = encode_entry_body(e).expect("a decoded entry re-encodes");
        let again = decode_entry_body(&body).expect("a re-encoded entry decodes");
        assert_eq!(encode_entry_body(&again).unwrap(), body, "entry encoding is stable");
        let _ = frame_record(&body);
    }

    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("sluice-fuzz-quorum-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let log = dir.join("log");
    if std::fs::create_dir_all(&log).is_ok() {
        let seg = log.join(format!("{:020}.log", scan.entries.first().map(|(_, e)| e.log_id.index).unwrap_or(0)));
        if std::fs::write(&seg, data).is_ok() {
            let consecutive = scan.entries.windows(2).all(|w| w[1].1.log_id.index == w[0].1.log_id.index.wrapping_add(1));
            match open_log(&dir) {
                Ok(first) => {
                    assert!(consecutive);
                    assert!(scan.bad.as_ref().is_none_or(|(_, torn)| *torn), "only a torn tail may be cut");
                    assert_eq!(first.len(), scan.entries.len());
                    let len = std::fs::metadata(&seg).map(|m| m.len()).unwrap_or(0);
                    if !first.is_empty() {
                        assert_eq!(len, scan.valid_len, "cut to the valid prefix");
                    }
                    let second = open_log(&dir).expect("a recovered log opens again");
                    assert_eq!(first, second);
                }
                Err(_) => {
                    assert!(!consecutive || scan.bad.as_ref().is_some_and(|(_, torn)| !*torn));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    if let Ok(payload) = decode_file(data, 1 << 20) {
        assert!(payload.len() + 12 == data.len());
    }
    let _ = decode_snapshot(data);

    if let Some((_, _, payload)) = rpc::decode_request(data) {
        let _ = parse_quorum_request(1, payload);
    }
    let _ = rpc::decode_response(data);
    let _ = parse_quorum_request(1, data);
});
