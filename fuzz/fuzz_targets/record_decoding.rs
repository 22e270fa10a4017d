//! Any byte string as stored or produced batches, read the ways the broker reads records:
//! bounded decompression, the record walk, dead-letter decoding and recompression. Must never
//! panic or abort, and must respect the decompression cap.
//!
//! The first byte picks the cap (1 KiB .. 128 KiB) and the codec to recompress into; the rest
//! is both a record set (batch headers as sent: the CRC is not checked here, so the decoders
//! see arbitrary record sections and codec frames) and, on its own, one compressed stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::compression::{self, Codec, Levels};
use sluice_broker::record_codec;
use sluice_storage::records::{compute_crc, BatchIter};
use sluice_storage::BatchHeader;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let cap = 1024usize << (knob & 0x07);
    let target = Codec::from_id(i16::from((knob >> 3) % 5)).unwrap_or(Codec::None);

    // The input as one compressed stream of each codec.
    for id in 1..=4 {
        let codec = Codec::from_id(id).unwrap_or(Codec::None);
        let mut out = vec![0u8; 3];
        if compression::decompress(codec, rest, cap, &mut out).is_ok() {
            assert!(out.len() <= cap + 3);
        }
        assert!(out.len() <= cap + 3, "{codec:?} wrote past the cap");
    }

    let mut scratch = Vec::new();
    for (at, h) in BatchIter::new(rest) {
        let batch = &rest[at..at + h.total_len()];
        if let Ok(section) = record_codec::records_section(batch, &h, cap, &mut scratch) {
            if h.compression() != 0 {
                assert!(section.len() <= cap);
            }
            for r in record_codec::records(section, h.records_count) {
                let Ok(r) = r else { break };
                assert_eq!(r.headers().count(), r.header_count);
            }
            let _ = record_codec::check_records(section, h.records_count);
        }
        let mut decoded = Vec::new();
        let _ = record_codec::decode_batch(batch, &h, cap, &mut decoded);

        let mut out = Vec::new();
        if record_codec::recompress(
            batch,
            &h,
            target,
            Levels::DEFAULT,
            cap,
            &mut scratch,
            &mut out,
        )
        .is_ok()
        {
            // A well-formed batch in the target codec with a valid CRC, holding the same records.
            let new = BatchHeader::parse(&out).expect("recompressed batch has a header");
            assert_eq!(new.total_len(), out.len());
            assert_eq!(new.compression(), target.id());
            assert_eq!(new.crc, compute_crc(&out));
            assert_eq!(new.records_count, h.records_count);
            let mut again = Vec::new();
            // Recompressed records may be larger than the cap only if they were (uncompressed
            // input is not capped), so read them back with room enough.
            record_codec::decode_batch(&out, &new, cap.max(batch.len() * 2 + 1024), &mut again)
                .expect("a recompressed batch decodes");
            let mut before = Vec::new();
            record_codec::decode_batch(batch, &h, cap, &mut before).expect("the input decoded");
            assert_eq!(again, before);
        }
    }
});
