//! Any byte string as a produced record set: validation must accept or refuse it, never panic,
//! and whatever it accepts must walk back as the same batches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_storage::records::{validate_produced, BatchIter};

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = validate_produced(data, 1 << 20) {
        let walked: Vec<usize> = BatchIter::new(data).map(|(at, _)| at).collect();
        let accepted: Vec<usize> = batches.iter().map(|b| b.position).collect();
        assert_eq!(walked, accepted);
    }
});
