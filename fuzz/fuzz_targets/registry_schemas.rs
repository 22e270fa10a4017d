//! Shared body of the `registry_avro`, `registry_protobuf` and `registry_json` targets.
//!
//! The input is `A \0 B \0 payload` (missing parts are empty). It drives the same entry
//! points the REST API and the produce path use (`sluice_registry::format::ParsedSchema`):
//!
//! - parse A alone, and B with A as its one reference (as `POST /subjects/b/versions` with
//!   `references` would), falling back to B alone when A does not parse;
//! - check compatibility both ways (`can_read`, what every compatibility level is built of),
//!   each schema against itself, and `compat::check` at FULL_TRANSITIVE;
//! - the canonical and normalised texts the store keeps must parse again with the same
//!   references (the registry re-parses stored text after a restart: a schema it accepted
//!   must never become unloadable);
//! - the payload is validated against both schemas as the broker does for a record
//!   (for PROTOBUF the message-index path is read from the payload first).
//!
//! Everything runs on a thread with tokio's default 2 MiB stack: the registry runs on tokio
//! workers, so recursion that fits the fuzzer's 8 MiB main stack could still overflow there.

use sluice_registry::compat;
use sluice_registry::format::{Dependency, ParsedSchema};
use sluice_registry::model::{CompatibilityLevel, SchemaType};
use sluice_registry::wire;

/// tokio's default worker stack size.
const WORKER_STACK: usize = 2 << 20;

pub fn run(schema_type: SchemaType, data: &[u8]) {
    // A stack overflow on the worker kills the process before libFuzzer can save the input:
    // with SLUICE_FUZZ_LAST_INPUT set, every input is written there first.
    if let Some(path) = std::env::var_os("SLUICE_FUZZ_LAST_INPUT") {
        let _ = std::fs::write(path, data);
    }
    let data = data.to_vec();
    let worker = std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || check(schema_type, &data))
        .expect("spawn fuzz worker");
    // A panic or stack overflow in the worker aborts the process (libFuzzer's panic hook),
    // so joining only waits.
    let _ = worker.join();
}

fn check(schema_type: SchemaType, data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    // The REST API takes the schema as a JSON string: always UTF-8.
    let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else {
        return;
    };

    let parsed_a = ParsedSchema::parse(schema_type, a, &[]).ok();
    let deps: Vec<Dependency> = match &parsed_a {
        Some(pa) => vec![Dependency {
            name: reference_name(schema_type).to_string(),
            schema_type,
            schema: pa.canonical(),
        }],
        None => Vec::new(),
    };
    let parsed_b = ParsedSchema::parse(schema_type, b, &deps).ok();

    if let Some(pa) = &parsed_a {
        stored_texts_reparse(schema_type, pa, &[]);
    }
    if let Some(pb) = &parsed_b {
        stored_texts_reparse(schema_type, pb, &deps);
    }

    let parsed: Vec<&ParsedSchema> = parsed_a.iter().chain(parsed_b.iter()).collect();
    for reader in &parsed {
        for writer in &parsed {
            let _ = reader.can_read(writer);
        }
    }
    if let (Some(pa), Some(pb)) = (&parsed_a, &parsed_b) {
        let _ = compat::check(CompatibilityLevel::FullTransitive, pb, &[(1, pa)]);
    }

    for p in &parsed {
        validate(p, payload);
    }
}

/// The stored form of a schema is its canonical text (or, with `normalize`, the normalised
/// text); the registry parses it again whenever the parsed-schema cache is cold.
fn stored_texts_reparse(schema_type: SchemaType, p: &ParsedSchema, deps: &[Dependency]) {
    for (what, text) in [("canonical", p.canonical()), ("normalized", p.normalized())] {
        if let Err(e) = ParsedSchema::parse(schema_type, &text, deps) {
            panic!("the {what} text of an accepted {schema_type:?} schema does not parse again: {e}\n{text}");
        }
    }
    if let ParsedSchema::Protobuf(pb) = p {
        // `?format=serialized` answers this; clients register it back.
        let _ = pb.serialized();
    }
}

fn validate(p: &ParsedSchema, payload: &[u8]) {
    match p {
        ParsedSchema::Protobuf(pb) => {
            if let Ok((indexes, rest)) = wire::parse_message_indexes(payload) {
                if pb.message_for_indexes(&indexes).is_some() {
                    let _ = p.validate_payload(&indexes, rest);
                }
            }
        }
        _ => {
            let _ = p.validate_payload(&[], payload);
        }
    }
}

/// The name B's reference to A has: what B's text must say to use A (a protobuf import
/// path, a JSON `$ref`; Avro resolves references by the full names A defines).
fn reference_name(schema_type: SchemaType) -> &'static str {
    match schema_type {
        SchemaType::Avro => "a.avsc",
        SchemaType::Protobuf => "a.proto",
        SchemaType::Json => "a.json",
    }
}
