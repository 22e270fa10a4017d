//! Any byte string as a request frame (after the size prefix): the decoder must answer with a
//! request, the KIP-511 fallback or a rejection, and never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::handlers::{decode_request, Decoded};

fuzz_target!(|data: &[u8]| {
    match decode_request(bytes::Bytes::copy_from_slice(data)) {
        Decoded::Request { .. } | Decoded::ApiVersionsFallback { .. } | Decoded::Reject(_) => {}
    }
});
