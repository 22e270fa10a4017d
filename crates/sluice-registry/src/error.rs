//! The registry's errors, each carrying Confluent's `error_code` and HTTP status, so the REST
//! layer is a plain mapping and Confluent's clients see the codes they expect.

use thiserror::Error;

/// Confluent answers an incompatible schema with HTTP 409. Servers since Dec 2025
/// (confluentinc/schema-registry commit ef43652, "Add support for Associations") put 40901 in
/// `error_code`; older servers put 409. Clients (confluent-kafka-python 2.16, the Java client)
/// decide on the HTTP status and only surface the code, so we follow the current server.
pub const INCOMPATIBLE_SCHEMA_ERROR_CODE: u32 = 40901;

/// Every way a registry operation can fail, named as Confluent names them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    /// Empty when no id applies (a lookup by schema text).
    #[error("{}", schema_not_found(.0))]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted { subject: String, version: i32 },
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted { subject: String, version: i32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    /// The messages name each incompatibility found.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .messages.join(", "))]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel(String),
    #[error("Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT: {0}")]
    InvalidMode(String),
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("One or more references exist to the schema {0}")]
    ReferenceExists(String),
    #[error("{0}")]
    IdDoesNotMatch(String),
    #[error("Invalid subject: {0}")]
    InvalidSubject(String),
    /// A request body that is not JSON or misses a required field.
    #[error("{0}")]
    BadRequest(String),
    #[error("Error in the backend data store: {0}")]
    Store(String),
    /// A write reached a node that is not the primary, and forwarding it failed.
    #[error("Error while forwarding the request to the primary: {0}")]
    ForwardingFailed(String),
    /// A write reached a node that is not the primary, and no primary is known.
    #[error("Unknown leader: {0}")]
    UnknownLeader(String),
}

fn schema_not_found(what: &str) -> String {
    if what.is_empty() {
        "Schema not found".to_string()
    } else {
        format!("Schema {what} not found")
    }
}

impl RegistryError {
    /// Confluent's `error_code` for this error.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound(_) => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::SubjectSoftDeleted(_) => 40404,
            Self::SubjectNotSoftDeleted(_) => 40405,
            Self::VersionSoftDeleted { .. } => 40406,
            Self::VersionNotSoftDeleted { .. } => 40407,
            Self::SubjectCompatibilityNotConfigured(_) => 40408,
            Self::SubjectModeNotConfigured(_) => 40409,
            Self::Incompatible { .. } => INCOMPATIBLE_SCHEMA_ERROR_CODE,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel(_) => 42203,
            Self::InvalidMode(_) => 42204,
            Self::OperationNotPermitted(_) => 42205,
            Self::ReferenceExists(_) => 42206,
            Self::IdDoesNotMatch(_) => 42207,
            Self::InvalidSubject(_) => 42208,
            Self::BadRequest(_) => 400,
            Self::Store(_) => 50001,
            Self::ForwardingFailed(_) => 50003,
            Self::UnknownLeader(_) => 50004,
        }
    }

    /// The HTTP status Confluent sends with this error.
    pub fn http_status(&self) -> u16 {
        match self.error_code() {
            400 => 400,
            40401..=40499 => 404,
            40901..=40999 | 409 => 409,
            42201..=42299 => 422,
            _ => 500,
        }
    }
}
