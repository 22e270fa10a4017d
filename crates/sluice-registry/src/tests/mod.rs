//! Table tests of the formats' rules and the levels, store and registry behaviour, the REST
//! API driven through the router, and the wire format.

mod avro;
mod hostile;
mod http;
mod json;
mod levels;
mod protobuf;
mod store;
mod wire;

use crate::format::{Dependency, ParsedSchema};
use crate::model::{SchemaReference, SchemaRequest, SchemaType};

pub(crate) fn parse(t: SchemaType, s: &str) -> ParsedSchema {
    match ParsedSchema::parse(t, s, &[]) {
        Ok(p) => p,
        Err(e) => panic!("test schema does not parse: {e}\n{s}"),
    }
}

pub(crate) fn parse_with(t: SchemaType, s: &str, deps: &[Dependency]) -> ParsedSchema {
    match ParsedSchema::parse(t, s, deps) {
        Ok(p) => p,
        Err(e) => panic!("test schema does not parse: {e}\n{s}"),
    }
}

pub(crate) fn req(t: SchemaType, s: &str) -> SchemaRequest {
    SchemaRequest {
        schema: s.to_string(),
        schema_type: t,
        ..Default::default()
    }
}

pub(crate) fn req_refs(t: SchemaType, s: &str, refs: &[(&str, &str, i32)]) -> SchemaRequest {
    SchemaRequest {
        schema: s.to_string(),
        schema_type: t,
        references: refs
            .iter()
            .map(|(n, s, v)| SchemaReference {
                name: n.to_string(),
                subject: s.to_string(),
                version: *v,
            })
            .collect(),
        ..Default::default()
    }
}
