//! OAUTHBEARER (RFC 7628, Kafka's KIP-255) with Kafka's unsecured-JWT validator.
//!
//! - [`initial`]: the client's one message (`n,[a=authzid],\x01auth=Bearer <token>\x01...\x01\x01`),
//!   parsed ([`parse_client_initial`]) and built ([`client_initial`]).
//! - [`jwt`]: the token check of Kafka's `OAuthBearerUnsecuredValidatorCallbackHandler`
//!   ([`UnsecuredJwtValidator`]), the error JSON the server sends back, and unsecured tokens for
//!   tests and tools ([`unsecured_token`]).
//!
//! Unsecured tokens carry no signature: anyone can mint one for any principal. Kafka ships this
//! validator for development and tests, and so does Sluice; a production deployment validates
//! signed JWTs against an identity provider's keys (not in this crate).
//!
//! The exchange itself (success, or the error JSON then the client's `0x01` acknowledgement then
//! failure) is in [`crate::server`].

pub mod initial;
pub mod jwks;
pub mod jwt;

pub use initial::{client_initial, parse_client_initial, ClientInitial, MAX_MESSAGE_LEN};
pub use jwks::{JwksValidator, TokenValidator, MAX_JWKS_BYTES};
pub use jwt::{unsecured_token, TokenError, UnsecuredJwtValidator, ValidToken, MAX_TOKEN_LEN};
