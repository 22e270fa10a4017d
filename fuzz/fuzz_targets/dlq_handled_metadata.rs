//! The DLQ bookkeeping commit (`sluice-dlq` group: committed offset plus `{"handled":[...]}`
//! metadata), which any client can write: decoding and every query must stay bounded by the
//! number of ranges (a hang here is a finding: run with a timeout) and never panic; what it
//! decodes is well formed and survives encode/decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_share::HandledOffsets;

fn i64_at(data: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    i64::from_le_bytes(b)
}

fn check(h: &HandledOffsets, a: i64, b: i64) {
    let mut prev: Option<i64> = None;
    for (f, l) in h.ranges() {
        assert!(f > h.below && f <= l, "malformed range {f}..={l} below {}", h.below);
        if let Some(p) = prev {
            assert!(f > p.saturating_add(1), "ranges overlap or touch");
        }
        prev = Some(l);
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let n = h.unhandled_between(lo, hi);
    assert!(n >= 0 && i128::from(n) <= i128::from(hi) - i128::from(lo));
    let next = h.next_unhandled(lo);
    assert!(next >= lo.max(h.below));
    let _ = h.is_handled(a);
    let (offset, meta) = h.encode();
    let back = HandledOffsets::decode(offset, Some(&meta));
    assert_eq!(&back, h);
}

fuzz_target!(|data: &[u8]| {
    let offset = i64_at(data, 0);
    let (a, b) = (i64_at(data, 8), i64_at(data, 16));
    let rest = data.get(24..).unwrap_or(&[]);
    // The bytes as metadata text, as a client may send anything.
    let text = String::from_utf8_lossy(rest);
    check(&HandledOffsets::decode(offset, Some(&text)), a, b);
    // The bytes as a well-formed range list, so the decoder's range logic is reached often.
    let pairs: Vec<String> = rest
        .chunks(16)
        .map(|c| format!("[{},{}]", i64_at(c, 0), i64_at(c, 8)))
        .collect();
    let json = format!(r#"{{"handled":[{}]}}"#, pairs.join(","));
    let mut h = HandledOffsets::decode(offset, Some(&json));
    check(&h, a, b);
    // Marks on top of a decoded state.
    h.mark(a);
    h.mark_range(a.min(b), a.max(b));
    h.mark_below(b);
    check(&h, a, b);
});
