//! The one error type of the SASL exchanges.
//!
//! Its `Display` text is safe to show an unauthenticated client: it never names a user and never
//! says whether one exists. In particular a wrong password, a wrong SCRAM proof and an unknown
//! user are all [`AuthError::InvalidCredentials`], so the error a client sees (and its timing
//! step: SCRAM fails at the final message in every case) cannot tell them apart. The broker's
//! log gets the detail from [`crate::SaslStep::Failed`]'s `reason` instead.

use std::fmt;

/// Why a SASL message or exchange was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The message is longer than the mechanism allows (checked before anything else).
    TooLong {
        /// The bound, in bytes.
        max: usize,
    },
    /// The message does not follow the mechanism's grammar; the text names the rule.
    Malformed(&'static str),
    /// The client asked for something this server does not offer: channel binding, a mandatory
    /// SCRAM extension (`m=`), delegation-token authentication (`tokenauth=true`).
    Unsupported(&'static str),
    /// The client asked to act as a different identity (authzid) than the one it authenticates
    /// as; Kafka allows no impersonation.
    AuthzidMismatch,
    /// The password or proof does not verify, or the user does not exist. Deliberately one
    /// variant for all of them.
    InvalidCredentials,
    /// SCRAM client-final: the channel binding (`c=`) is not the GS2 header of client-first.
    ChannelBindingMismatch,
    /// SCRAM client-final: the nonce (`r=`) is not the one the server sent.
    NonceMismatch,
    /// A call that does not fit the exchange's state: out of order, repeated, or after the
    /// exchange ended (success or failure).
    OutOfOrder,
    /// A value the local caller passed is unusable (a nonce with characters SCRAM does not allow,
    /// an empty user name). A bug in the caller, not the peer's doing.
    InvalidArgument(&'static str),
    /// Client side: the server's message fails a check (its nonce does not extend ours, its
    /// iteration count is out of bounds, its signature does not verify).
    InvalidServerMessage(&'static str),
    /// Client side: the server ended the SCRAM exchange with `e=<text>`.
    ServerError(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::TooLong { max } => write!(f, "SASL message longer than {max} bytes"),
            AuthError::Malformed(what) => write!(f, "malformed SASL message: {what}"),
            AuthError::Unsupported(what) => write!(f, "unsupported: {what}"),
            AuthError::AuthzidMismatch => {
                f.write_str("the authorization id differs from the authenticated user")
            }
            AuthError::InvalidCredentials => {
                f.write_str("authentication failed: invalid credentials")
            }
            AuthError::ChannelBindingMismatch => {
                f.write_str("channel binding does not match the GS2 header")
            }
            AuthError::NonceMismatch => f.write_str("nonce does not match"),
            AuthError::OutOfOrder => f.write_str("SASL message out of order"),
            AuthError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            AuthError::InvalidServerMessage(what) => write!(f, "invalid server message: {what}"),
            AuthError::ServerError(text) => write!(f, "the server refused: {text}"),
        }
    }
}

impl std::error::Error for AuthError {}
