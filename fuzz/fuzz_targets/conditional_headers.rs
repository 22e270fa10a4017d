//! Conditional-append decoding (`sluice_broker::conditional`) on any bytes: the header walk and
//! value parsing of every record of arbitrary batches, and the same on records built from the
//! input (so the decimal parser and the repeated/null/keyless rules see arbitrary values).
//! Must never panic; a parsed decimal must print back as the bytes it came from; a parsed
//! condition must respect its bounds.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_broker::conditional::{self, parse_decimal, record_conditions};
use sluice_broker::record_codec::{self, RawRecord};
use sluice_storage::records::BatchIter;

fn check_record(r: &record_codec::RecordView<'_>) {
    if let Ok(c) = record_conditions(r) {
        assert!(c.expected_offset.is_none_or(|o| o >= 0));
        assert!(c.expected_key_offset.is_none_or(|o| o >= -1));
        assert!(c.expected_key_offset.is_none() || r.key.is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(n) = parse_decimal(data) {
        assert_eq!(n.to_string().as_bytes(), data);
    }

    // The input as batches (CRC unchecked): every record's conditions.
    let mut scratch = Vec::new();
    for (at, h) in BatchIter::new(data) {
        let batch = &data[at..at + h.total_len()];
        if let Ok(section) = record_codec::records_section(batch, &h, 64 << 10, &mut scratch) {
            for r in record_codec::records(section, h.records_count) {
                let Ok(r) = r else { break };
                check_record(&r);
            }
        }
    }

    // Records built from the input: split at 0x1F into fields; the first byte picks which
    // header names the fields get (bit per field) and whether the record has a key.
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let names = [conditional::EXPECTED_OFFSET, conditional::EXPECTED_KEY_OFFSET];
    let headers = rest
        .split(|&b| b == 0x1F)
        .take(8)
        .enumerate()
        .map(|(i, v)| {
            let name = names[usize::from((knob >> (i % 7)) & 1)];
            let value = if v.first() == Some(&0x1E) {
                None
            } else {
                Some(Bytes::copy_from_slice(v))
            };
            (Bytes::from_static(name.as_bytes()), value)
        })
        .collect();
    let record = RawRecord {
        offset: 0,
        timestamp: 0,
        key: (knob & 0x80 != 0).then(|| Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers,
    };
    let batch = record_codec::encode(&[record]);
    if let Some(h) = sluice_storage::BatchHeader::parse(&batch) {
        let section = &batch[record_codec::BATCH_HEADER_LEN..];
        for r in record_codec::records(section, h.records_count) {
            let r = r.expect("an encoded record decodes");
            check_record(&r);
        }
    }
});
