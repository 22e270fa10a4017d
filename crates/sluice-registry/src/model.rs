//! The registry's vocabulary: schema types, references, compatibility levels, modes and version
//! selectors, spelled on the wire exactly as Confluent spells them.

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// The three schema formats. `AVRO` is the default when a request names none.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum SchemaType {
    #[default]
    #[serde(rename = "AVRO")]
    Avro,
    #[serde(rename = "PROTOBUF")]
    Protobuf,
    #[serde(rename = "JSON")]
    Json,
}

impl SchemaType {
    /// Parses a `schemaType` value; Confluent accepts any case.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(Self::Avro),
            "PROTOBUF" => Ok(Self::Protobuf),
            "JSON" => Ok(Self::Json),
            _ => Err(RegistryError::InvalidSchema(format!(
                "Invalid schema type {s}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        }
    }
}

/// A reference from one schema to a named schema registered under another subject.
/// `name` is how the referring schema names it: an Avro full name, a protobuf import path, or
/// a JSON `$ref` target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// The seven compatibility levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    /// Parses a level; Confluent accepts any case.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RegistryError::InvalidCompatibilityLevel(s.to_string()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// New schemas must read data written with old ones.
    pub fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Old schemas must read data written with new ones.
    pub fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Checked against every live version rather than the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }
}

/// What writes a subject (or the whole registry) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Mode {
    #[default]
    #[serde(rename = "READWRITE")]
    ReadWrite,
    #[serde(rename = "READONLY")]
    ReadOnly,
    #[serde(rename = "READONLY_OVERRIDE")]
    ReadOnlyOverride,
    /// Registration keeps the caller's id and version and skips compatibility checks, to copy
    /// another registry's contents.
    #[serde(rename = "IMPORT")]
    Import,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Self::ReadWrite),
            "READONLY" => Ok(Self::ReadOnly),
            "READONLY_OVERRIDE" => Ok(Self::ReadOnlyOverride),
            "IMPORT" => Ok(Self::Import),
            _ => Err(RegistryError::InvalidMode(s.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "READWRITE",
            Self::ReadOnly => "READONLY",
            Self::ReadOnlyOverride => "READONLY_OVERRIDE",
            Self::Import => "IMPORT",
        }
    }

    pub fn is_read_only(self) -> bool {
        matches!(self, Self::ReadOnly | Self::ReadOnlyOverride)
    }
}

/// A version in a URL: a number, or `latest` (also spelled -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i32),
}

impl VersionSpec {
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        if s.eq_ignore_ascii_case("latest") {
            return Ok(Self::Latest);
        }
        match s.parse::<i64>() {
            Ok(-1) => Ok(Self::Latest),
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(Self::Number(n as i32)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

/// A schema as a client submits it (`POST /subjects/{s}/versions`, lookups, checks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaRequest {
    pub schema: String,
    pub schema_type: SchemaType,
    pub references: Vec<SchemaReference>,
    /// Honoured only in IMPORT mode.
    pub id: Option<i32>,
    /// Honoured only in IMPORT mode (otherwise it must be the next version).
    pub version: Option<i32>,
}

/// A schema as stored: its text after canonicalisation, its type and references.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredSchema {
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// One version of one subject, as the version endpoints answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: std::sync::Arc<StoredSchema>,
    pub deleted: bool,
}
