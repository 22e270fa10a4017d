//! Any input as two AVRO schemas and a payload: parse, compatibility both ways, stored
//! texts re-parse, payload validation. Never a panic, stack overflow, hang or huge
//! allocation (see `registry_schemas.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_registry::model::SchemaType;

#[path = "registry_schemas.rs"]
mod registry_schemas;

fuzz_target!(|data: &[u8]| registry_schemas::run(SchemaType::Avro, data));
