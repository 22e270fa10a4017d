//! Sluice's built-in schema registry: everything but the broker wiring.
//!
//! - [`format`]: AVRO, PROTOBUF and JSON Schema behind one [`ParsedSchema`] — parsing with
//!   references resolved, canonical text, normalisation, each format's own compatibility rules
//!   (Avro schema resolution; ports of Confluent's protobuf and JSON `SchemaDiff`), payload
//!   decoding.
//! - [`compat`]: the seven compatibility levels over the formats' one-way rule.
//! - [`store`]: the registry state as a pure state machine of [`RegistryEvent`]s.
//! - [`journal`]: where events become durable ([`Journal`]; the broker's `_schemas` log).
//! - [`registry`]: [`Registry`], the operations, writes serialised and journaled first.
//! - [`http`]: Confluent Schema Registry's REST API as an axum router.
//! - [`wire`]: Confluent's serialized-message framing, and `Registry::validate` for the
//!   broker's produce path.

pub mod compat;
pub mod error;
pub mod format;
pub mod http;
pub mod journal;
pub mod model;
pub mod registry;
pub mod store;
pub mod wire;

pub use error::RegistryError;
pub use format::ParsedSchema;
pub use http::router;
pub use journal::{Journal, MemoryJournal};
pub use model::{
    CompatibilityLevel, Mode, SchemaReference, SchemaRequest, SchemaType, StoredSchema,
    SubjectVersion, VersionSpec,
};
pub use registry::{Decoded, Registered, Registry};
pub use store::{RegistryEvent, Store};
pub use wire::{parse_framed, Framed, WireError};

#[cfg(test)]
mod tests;
