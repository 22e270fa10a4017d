//! The log cleaner's batch rewriting (`sluice_storage::cleaner::filter_batch`) on any bytes as a
//! stored batch (CRC not checked, so the record walk sees arbitrary sections), with the
//! broker's codecs and a keep/drop decision drawn from the input.
//!
//! Must hold: never panics; a rewritten batch has a valid CRC and keeps the base offset, last
//! offset delta, producer id, epoch and base sequence; it never holds more records than the
//! original; walking it again with "keep everything" (before any horizon) removes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::cleaner::BrokerCodec;
use sluice_storage::cleaner::{filter_batch, BatchContext, Fate};
use sluice_storage::records::{compute_crc, BATCH_HEADER_LEN};
use sluice_storage::BatchHeader;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, batch)) = data.split_first() else { return };
    let Some(header) = BatchHeader::parse(batch) else { return };
    if header.total_len() > batch.len() || header.total_len() < BATCH_HEADER_LEN {
        return;
    }
    let ctx = BatchContext {
        now_ms: i64::from(mode & 0x0f) * 1000,
        delete_retention_ms: i64::from(mode >> 4),
        decompression_cap: 1 << 20,
        codec: &BrokerCodec,
        must_keep: mode & 1 == 1,
    };
    let mut out = Vec::new();
    let mut n = 0u32;
    let (fate, _) = filter_batch(
        batch,
        &header,
        &ctx,
        &mut |key, offset| {
            n = n.wrapping_add(1);
            key.is_some() && (offset ^ i64::from(mode) ^ i64::from(n)) % 3 != 0
        },
        &mut out,
    );
    match fate {
        Fate::Rewritten { .. } => {
            let h = BatchHeader::parse(&out).expect("a rewritten batch has a header");
            assert_eq!(h.total_len(), out.len());
            assert_eq!(h.crc, compute_crc(&out));
            assert_eq!(h.base_offset, header.base_offset);
            assert_eq!(h.last_offset_delta, header.last_offset_delta);
            assert_eq!(h.producer_id, header.producer_id);
            assert_eq!(h.producer_epoch, header.producer_epoch);
            assert_eq!(h.base_sequence, header.base_sequence);
            assert!(h.records_count <= header.records_count.max(0));
            // Keeping everything of the rewritten batch changes nothing but, at most, a new
            // delete horizon (it already has one if it kept a tombstone).
            // (At the earliest time, so no delete horizon has passed.)
            let ctx2 = BatchContext {
                now_ms: i64::MIN,
                ..ctx
            };
            let mut again = Vec::new();
            let (fate2, _) = filter_batch(&out, &h, &ctx2, &mut |_, _| true, &mut again);
            assert!(matches!(fate2, Fate::Verbatim | Fate::Rewritten { records_removed: 0 }));
        }
        Fate::Verbatim | Fate::Dropped { .. } => assert!(out.is_empty()),
    }
});
