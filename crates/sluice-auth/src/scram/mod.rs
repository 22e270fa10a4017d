//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) with Kafka's `ScramSaslServer`
//! semantics: both halves of the exchange and the stored credential.
//!
//! - [`ScramCredential`]: what the broker stores per user and mechanism — salt, iteration count,
//!   `StoredKey`, `ServerKey` — never the salted password (whoever holds it can log in).
//! - [`ScramServer`]: the broker's side, two messages in, two out.
//! - [`ScramClient`]: the Sluice client library's side.
//!
//! Differences from Kafka, all deliberate:
//!
//! - An unknown user (or a stored credential that cannot be used) does not fail at
//!   client-first, which would tell an attacker the user does not exist: the server answers with
//!   a mock salt derived from the user name and a server key
//!   ([`ScramServer::with_mock_salt_key`]) and [`MIN_ITERATIONS`], and fails at client-final
//!   with the same [`crate::AuthError::InvalidCredentials`] as a wrong password.
//! - The GS2 flag `y` is accepted as well as `n` (we offer no `-PLUS` mechanism, so a client that
//!   could bind but thinks we cannot is right); `p=` (channel binding) is refused, and the
//!   client-final `c=` must be exactly the base64 of the client's GS2 header.
//! - A stored credential's iteration count must lie in [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`]
//!   (Kafka checks only the minimum on the server; its tools enforce the maximum on creation, and
//!   our client refuses to run PBKDF2 beyond it).
//! - User names are UTF-8 `saslname`s (Kafka restricts them to ASCII) bounded by
//!   [`MAX_USERNAME_LEN`]; messages are bounded by [`MAX_MESSAGE_LEN`].
//!
//! Passwords get no SASLprep (RFC 4013) normalisation: Kafka hashes the password's UTF-8 bytes as
//! given, and so do we, so credentials made by Kafka's tools verify here and the other way round.

mod client;
mod credential;
mod crypto;
mod message;
mod server;

#[cfg(test)]
mod tests;

use std::fmt;

pub use client::ScramClient;
pub use credential::ScramCredential;
pub use server::{server_error_message, ScramOutcome, ScramServer, MOCK_SALT_LEN};

/// The fewest PBKDF2 iterations a credential may have (Kafka's `ScramMechanism.minIterations`,
/// RFC 7677's recommendation).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most PBKDF2 iterations a credential may have (Kafka's `ScramMechanism.maxIterations`); a
/// client refuses a server that asks for more, so a hostile server cannot make it spin.
pub const MAX_ITERATIONS: u32 = 16384;
/// The longest SCRAM message either side accepts, in bytes. Real messages are a few hundred
/// bytes; the bound is checked before parsing.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The longest user name (after unescaping), in bytes. The broker should refuse to create
/// credentials for longer names: they could never log in.
pub const MAX_USERNAME_LEN: usize = 256;

/// The SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// Kafka's code for the mechanism in `DescribeUserScramCredentials` and
    /// `AlterUserScramCredentials` (`ScramMechanism.type`): 1 = SHA-256, 2 = SHA-512.
    pub const fn kafka_code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism with this Kafka code; `None` for 0 (Kafka's `UNKNOWN`) and anything else.
    pub const fn from_kafka_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The SASL mechanism name.
    pub const fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism with this exact (case-sensitive) SASL name.
    pub fn from_name(name: &str) -> Option<Self> {
        [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The hash's output length in bytes: the length of the salted password, `StoredKey`,
    /// `ServerKey`, the client proof and the server signature.
    pub const fn key_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `SaltedPassword := Hi(password, salt, i)`: PBKDF2 with HMAC of the mechanism's hash, one
/// output block.
///
/// Runs `iterations` rounds whatever the value: callers bound it first (credentials are only
/// usable within [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`]). The password is taken as bytes with
/// no SASLprep, as Kafka does (it hashes the UTF-8 bytes of the password string).
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    crypto::hi(mechanism, password, salt, iterations)
}
