//! The three schema formats behind one [`ParsedSchema`]: parsing (with references resolved),
//! the canonical text the store keys ids on, normalisation, the format's own compatibility
//! rules, and payload decoding for broker-side validation.
//!
//! Compatibility is always asked one way: can `reader` read data written with `writer`?
//! BACKWARD asks it with the new schema as reader, FORWARD with the old one (see `compat`).

pub mod avro;
pub mod json;
pub mod protobuf;

use crate::model::SchemaType;

/// A schema a parsed schema depends on, found through its references (transitively, deepest
/// first). `name` is the reference's name: Avro full name, protobuf import path, JSON `$ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub schema_type: SchemaType,
    pub schema: String,
}

/// A schema parsed and checked by its format.
pub enum ParsedSchema {
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtobufSchema),
    Json(json::JsonSchema),
}

impl std::fmt::Debug for ParsedSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParsedSchema({:?})", self.schema_type())
    }
}

impl ParsedSchema {
    /// Parses `text` as `schema_type`, resolving references through `deps`. The error says
    /// what is wrong with the schema (it becomes a 42201).
    pub fn parse(schema_type: SchemaType, text: &str, deps: &[Dependency]) -> Result<Self, String> {
        guarded(|| match schema_type {
            SchemaType::Avro => avro::AvroSchema::parse(text, deps).map(Self::Avro),
            SchemaType::Protobuf => protobuf::ProtobufSchema::parse(text, deps).map(Self::Protobuf),
            SchemaType::Json => json::JsonSchema::parse(text, deps).map(Self::Json),
        })
    }

    pub fn schema_type(&self) -> SchemaType {
        match self {
            Self::Avro(_) => SchemaType::Avro,
            Self::Protobuf(_) => SchemaType::Protobuf,
            Self::Json(_) => SchemaType::Json,
        }
    }

    /// The text the store keeps and keys ids on.
    pub fn canonical(&self) -> String {
        match self {
            Self::Avro(s) => s.canonical(),
            Self::Protobuf(s) => s.canonical(),
            Self::Json(s) => s.canonical(),
        }
    }

    /// The text kept when a client asks `?normalize=true`.
    pub fn normalized(&self) -> String {
        match self {
            Self::Avro(s) => s.normalized(),
            Self::Protobuf(s) => s.normalized(),
            Self::Json(s) => s.normalized(),
        }
    }

    /// Can `self` (the reader) read data written with `writer`? Empty means yes; otherwise
    /// each message names one incompatibility.
    pub fn can_read(&self, writer: &ParsedSchema) -> Vec<String> {
        let found = guarded(|| {
            Ok(match (self, writer) {
                (Self::Avro(r), Self::Avro(w)) => r.can_read(w),
                (Self::Protobuf(r), Self::Protobuf(w)) => r.can_read(w),
                (Self::Json(r), Self::Json(w)) => r.can_read(w),
                _ => vec!["Incompatible because of different schema type".to_string()],
            })
        });
        // Hashed: a hostile pair can yield tens of thousands of messages.
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<String> = Vec::new();
        for m in found.unwrap_or_else(|e| vec![e]) {
            if seen.insert(m.clone()) {
                out.push(m);
            }
        }
        out
    }

    /// Checks a payload (after the wire-format header) against the schema.
    pub fn validate_payload(&self, message_indexes: &[i32], payload: &[u8]) -> Result<(), String> {
        guarded(|| match self {
            Self::Avro(s) => s.decode(payload),
            Self::Protobuf(s) => s.decode(message_indexes, payload),
            Self::Json(s) => s.validate(payload),
        })
    }

    /// Decodes a payload (after the wire-format header) to JSON for people reading it: AVRO
    /// and PROTOBUF decoded against the schema, JSON parsed (not validated).
    pub fn decode_json(
        &self,
        message_indexes: &[i32],
        payload: &[u8],
    ) -> Result<serde_json::Value, String> {
        guarded(|| match self {
            Self::Avro(s) => s.decode_json(payload),
            Self::Protobuf(s) => s.decode_json(message_indexes, payload),
            Self::Json(s) => s.decode_json(payload),
        })
    }
}

/// Runs third-party parsing or decoding so that a panic on hostile input becomes an error
/// for that request instead of taking down the caller's task.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("internal error while processing the schema".to_string()))
}

/// Removes insignificant whitespace from JSON text that has already been parsed, keeping key
/// order and every character inside strings: the canonical text of AVRO and JSON schemas.
pub(crate) fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Serialises a JSON value with object keys sorted at every level, whatever serde_json's
/// map type is: the normalised text of JSON schemas.
pub(crate) fn sorted_json(value: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sort(value)).unwrap_or_default()
}
