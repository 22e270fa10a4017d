//! The SASL mechanisms a Kafka broker serves, as pure code.
//!
//! Kafka clients authenticate with SASL: after `SaslHandshake` names a mechanism, each
//! `SaslAuthenticate` request carries one client token and its response one server token, until
//! the mechanism says the exchange is done. This crate holds the mechanisms Sluice speaks —
//! `PLAIN` (RFC 4616), `SCRAM-SHA-256` and `SCRAM-SHA-512` (RFC 5802, RFC 7677) and
//! `OAUTHBEARER` (RFC 7628, KIP-255, with Kafka's unsecured-JWT validator) — with Kafka's
//! semantics, and nothing else.
//!
//! It is pure on purpose: no IO, no clock (callers pass `now_ms`), no randomness (callers pass
//! nonces and salts), no threads, no global state. Whatever is random or stored comes in from
//! the caller, so every exchange is a deterministic function of its inputs: the RFC test vectors
//! run as plain unit tests, the fuzz targets can drive whole exchanges, and the broker decides
//! where credentials live and how nonces are drawn. Every parser is total — any bytes give a
//! value or an error, never a panic — and every message is length-bounded before it is looked at,
//! because all of this runs on bytes from unauthenticated peers.
//!
//! Two callers drive it:
//!
//! - **The broker's connection loop** creates a [`SaslExchange`] per authentication, feeds it each
//!   client token with the credential store, the time and a fresh server nonce, and acts on the
//!   [`SaslStep`] it returns (send a challenge, accept a principal, or fail with a generic
//!   message while logging the detailed reason). Kafka framing (`SaslHandshake`,
//!   `SaslAuthenticate`, re-authentication per KIP-368) stays in the broker.
//! - **The Sluice client library** uses the client halves: [`scram::ScramClient`],
//!   [`plain::client_message`] and [`oauthbearer::client_initial`].
//!
//! One user store serves every mechanism (as in Redpanda): users have SCRAM credentials only,
//! and PLAIN (or HTTP Basic) passwords are checked against them
//! ([`scram::ScramCredential::verify_password`]). The salted password is never stored: whoever
//! holds it can log in.
//!
//! Modules, each with one job and no cycles between them: [`mechanism`] (the names),
//! [`principal`] (who authenticated), [`error`], `saslname` (RFC 5802 name escaping, shared),
//! [`scram`], [`plain`], [`oauthbearer`] and [`server`] (the per-exchange driver that ties them
//! together).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]

pub mod error;
pub mod mechanism;
pub mod oauthbearer;
pub mod plain;
pub mod principal;
pub mod protocol;
mod saslname;
pub mod scram;
pub mod server;

pub use error::AuthError;
pub use mechanism::SaslMechanism;
pub use principal::KafkaPrincipal;
pub use protocol::SecurityProtocol;
pub use server::{CredentialStore, ExchangeConfig, SaslExchange, SaslStep};
