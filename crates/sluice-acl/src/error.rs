//! Why a binding or a filter is refused, as the Kafka error code its response carries.

use std::fmt;

/// A refused binding (CreateAcls) or filter (DescribeAcls, DeleteAcls), with Kafka's error code
/// and a message for the response's `error_message`.
///
/// Kafka's `AclControlManager` and `AclApis` refuse everything here with
/// `InvalidRequestException` (INVALID_REQUEST, 42); there is one variant so the broker's mapping
/// stays a `match` if another code is ever needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AclError {
    /// INVALID_REQUEST (42): the binding or filter is malformed.
    InvalidRequest(String),
}

impl AclError {
    /// Kafka's INVALID_REQUEST error code.
    pub const INVALID_REQUEST: i16 = 42;

    /// The Kafka error code for the response.
    pub fn code(&self) -> i16 {
        match self {
            AclError::InvalidRequest(_) => Self::INVALID_REQUEST,
        }
    }

    /// The message for the response's `error_message`.
    pub fn message(&self) -> &str {
        match self {
            AclError::InvalidRequest(message) => message,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        AclError::InvalidRequest(message.into())
    }
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AclError {}
