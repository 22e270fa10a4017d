//! One SASL exchange on the broker, whatever the mechanism, independent of Kafka framing.
//!
//! The broker's connection loop makes a [`SaslExchange`] when `SaslHandshake` picks a mechanism
//! and passes each `SaslAuthenticate` token to [`SaslExchange::step`]:
//!
//! - [`SaslStep::Continue`]: send the bytes back as `auth_bytes` and wait for the next token.
//! - [`SaslStep::Done`]: send the bytes (possibly empty); the connection is now `principal`, until
//!   `expires_at_ms` if set (KIP-368 `session_lifetime_ms`).
//! - [`SaslStep::Failed`]: answer `SASL_AUTHENTICATION_FAILED` with a generic message, log
//!   `reason` (it may name the user and say whether it exists; the client must not see it), and
//!   close the connection.
//!
//! Per mechanism:
//!
//! - **PLAIN**: one step. The password is checked against the user's SCRAM credential — SHA-512
//!   if the user has one, else SHA-256 — so one user store serves every mechanism (as in
//!   Redpanda). An unknown user costs a PBKDF2 run too, so timing does not tell it apart from a
//!   wrong password.
//! - **SCRAM-SHA-256/512**: two steps ([`crate::scram::ScramServer`]); an unknown user fails at
//!   the second, like a wrong password. A failure at the second step carries the RFC 5802 `e=`
//!   message, for brokers that send one.
//! - **OAUTHBEARER**: a valid token is `Done` at once, with an empty response and the token's
//!   expiry. An invalid one is `Continue` with Kafka's error JSON; the client then sends a single
//!   `0x01` and the exchange is `Failed` (RFC 7628 §3.2.3, Kafka's `OAuthBearerSaslServer`).
//!   Anything else in place of the `0x01` fails too (Kafka would take it as a new first message;
//!   one exchange gets one token here). An authzid other than the token's principal fails at
//!   once. Disabled (no validator configured), every token fails.
//!
//! After `Done` or `Failed`, every further step is `Failed`.

use std::fmt;

use crate::error::AuthError;
use crate::mechanism::SaslMechanism;
use crate::oauthbearer::{self, TokenValidator};
use crate::plain;
use crate::principal::KafkaPrincipal;
use crate::scram::{
    self, server_error_message, ScramCredential, ScramMechanism, ScramServer, MIN_ITERATIONS,
};

/// Where the broker keeps users' SCRAM credentials (the one user store for every mechanism).
pub trait CredentialStore {
    /// The user's credential for `mechanism`, if the user has one.
    fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential>;
}

/// The listener's SASL settings an exchange needs. `Debug` hides the mock-salt key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// The OAUTHBEARER token validator; `None` disables OAUTHBEARER (every attempt fails).
    pub oauthbearer: Option<TokenValidator>,
    /// The secret SCRAM derives unknown users' mock salts from
    /// ([`ScramServer::with_mock_salt_key`]): the same on every broker and across restarts.
    pub mock_salt_key: Vec<u8>,
    /// The iteration count unknown users appear to have (and PLAIN's refusal of one costs):
    /// the count the broker gives real users. 0: Kafka's minimum.
    pub mock_iterations: u32,
}

impl fmt::Debug for ExchangeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeConfig")
            .field("oauthbearer", &self.oauthbearer)
            .field("mock_salt_key", &"<redacted>")
            .finish()
    }
}

/// What the broker does after a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send these bytes to the client and wait for its next token.
    Continue(Vec<u8>),
    /// Authenticated: send `response` (possibly empty); the connection acts as `principal`.
    Done {
        /// The last server message (SCRAM's `v=...`; empty for PLAIN and OAUTHBEARER).
        response: Vec<u8>,
        /// `User:<name>`.
        principal: KafkaPrincipal,
        /// When the credential expires (epoch ms): an OAUTHBEARER token's `exp`. `None` for
        /// passwords.
        expires_at_ms: Option<i64>,
    },
    /// Refused: the exchange is over.
    Failed {
        /// For the operator's log only: may name the user and say whether it exists. The client
        /// gets a generic text.
        reason: String,
        /// Bytes the mechanism defines for a failure, if any (SCRAM's `e=...` at the final step);
        /// the broker may send them as `auth_bytes` with the error.
        response: Option<Vec<u8>>,
    },
}

/// One authentication exchange on one connection.
#[derive(Debug)]
pub struct SaslExchange {
    mechanism: SaslMechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    /// PLAIN; the iteration count a refused unknown user costs.
    Plain(u32),
    ScramFirst(ScramServer),
    ScramFinal(ScramServer),
    OAuthBearer(TokenValidator),
    OAuthBearerDisabled,
    /// The error JSON was sent; the client owes a `0x01`, then the exchange fails with `reason`.
    OAuthBearerAwaitingAck {
        reason: String,
    },
    Ended,
}

impl SaslExchange {
    /// A new exchange of `mechanism` (copies what it needs from `config`).
    pub fn new(mechanism: SaslMechanism, config: &ExchangeConfig) -> Self {
        let state = match mechanism {
            SaslMechanism::Plain => State::Plain(config.mock_iterations),
            SaslMechanism::ScramSha256 => State::ScramFirst(
                ScramServer::new(ScramMechanism::Sha256)
                    .with_mock_salt_key(&config.mock_salt_key)
                    .with_mock_iterations(config.mock_iterations),
            ),
            SaslMechanism::ScramSha512 => State::ScramFirst(
                ScramServer::new(ScramMechanism::Sha512)
                    .with_mock_salt_key(&config.mock_salt_key)
                    .with_mock_iterations(config.mock_iterations),
            ),
            SaslMechanism::OAuthBearer => match &config.oauthbearer {
                Some(v) => State::OAuthBearer(v.clone()),
                None => State::OAuthBearerDisabled,
            },
        };
        SaslExchange { mechanism, state }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// Whether the exchange has ended (after `Done` or `Failed`).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// Handles the client's next token. `now_ms` is the current epoch time (OAUTHBEARER expiry);
    /// `server_nonce` is a fresh random nonce, printable ASCII without `,` (used by SCRAM's first
    /// step only; pass one every time, it costs nothing to ignore).
    pub fn step(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
        now_ms: i64,
        server_nonce: &str,
    ) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Plain(iterations) => plain_step(token, store, iterations),
            State::ScramFirst(mut server) => {
                let mechanism = server.mechanism();
                match server.client_first(token, server_nonce, |user| store.scram(mechanism, user))
                {
                    Ok(server_first) => {
                        self.state = State::ScramFinal(server);
                        SaslStep::Continue(server_first)
                    }
                    Err(e) => failed(format!("{mechanism}{}: {e}", user_note(&server)), None),
                }
            }
            State::ScramFinal(mut server) => match server.client_final(token) {
                Ok(outcome) => SaslStep::Done {
                    response: outcome.server_final,
                    principal: KafkaPrincipal::user(outcome.username),
                    expires_at_ms: None,
                },
                Err(e) => {
                    let detail = server
                        .rejection_detail()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    failed(
                        format!("{}{}: {e}{detail}", server.mechanism(), user_note(&server)),
                        Some(server_error_message(&e)),
                    )
                }
            },
            State::OAuthBearer(validator) => self.oauthbearer_step(token, &validator, now_ms),
            State::OAuthBearerDisabled => failed("OAUTHBEARER is not enabled".to_owned(), None),
            State::OAuthBearerAwaitingAck { reason } => {
                if token == [0x01] {
                    failed(reason, None)
                } else {
                    failed(
                        format!("{reason}; the client did not acknowledge the error with 0x01"),
                        None,
                    )
                }
            }
            State::Ended => failed(
                format!("{}: {}", self.mechanism, AuthError::OutOfOrder),
                None,
            ),
        }
    }

    fn oauthbearer_step(
        &mut self,
        token: &[u8],
        validator: &TokenValidator,
        now_ms: i64,
    ) -> SaslStep {
        let initial = match oauthbearer::parse_client_initial(token) {
            Ok(i) => i,
            Err(e) => return failed(format!("OAUTHBEARER: {e}"), None),
        };
        match validator.validate(&initial.token, now_ms) {
            Ok(valid) => {
                if let Some(authzid) = initial.authzid.filter(|a| *a != valid.principal) {
                    return failed(
                        format!(
                            "OAUTHBEARER: authzid {authzid:?} differs from the token's principal {:?}",
                            valid.principal
                        ),
                        None,
                    );
                }
                SaslStep::Done {
                    response: Vec::new(),
                    principal: KafkaPrincipal::user(valid.principal),
                    expires_at_ms: Some(valid.lifetime_ms),
                }
            }
            Err(e) => {
                self.state = State::OAuthBearerAwaitingAck {
                    reason: format!("OAUTHBEARER: invalid token: {e}"),
                };
                SaslStep::Continue(e.to_server_error_json().into_bytes())
            }
        }
    }
}

fn failed(reason: String, response: Option<Vec<u8>>) -> SaslStep {
    SaslStep::Failed { reason, response }
}

/// ` (user "name")` when the SCRAM client got as far as naming one.
fn user_note(server: &ScramServer) -> String {
    server
        .username()
        .map(|u| format!(" (user {u:?})"))
        .unwrap_or_default()
}

fn plain_step(token: &[u8], store: &dyn CredentialStore, mock_iterations: u32) -> SaslStep {
    let msg = match plain::parse(token) {
        Ok(m) => m,
        Err(e) => return failed(format!("PLAIN: {e}"), None),
    };
    let user = msg.username;
    let credential = store
        .scram(ScramMechanism::Sha512, user)
        .or_else(|| store.scram(ScramMechanism::Sha256, user));
    let why = match credential {
        None => {
            spend_like_a_check(msg.password, mock_iterations);
            "unknown user"
        }
        Some(c) => match c.check() {
            Err(why) => {
                spend_like_a_check(msg.password, mock_iterations);
                why
            }
            Ok(()) if c.verify_password(msg.password.as_bytes()) => {
                return SaslStep::Done {
                    response: Vec::new(),
                    principal: KafkaPrincipal::user(user),
                    expires_at_ms: None,
                };
            }
            Ok(()) => "wrong password",
        },
    };
    failed(
        format!(
            "PLAIN (user {user:?}): {} ({why})",
            AuthError::InvalidCredentials
        ),
        None,
    )
}

/// One PBKDF2 run at the count real users have, as a password check costs, so a missing or
/// unusable credential takes about as long to refuse as a wrong password.
fn spend_like_a_check(password: &str, iterations: u32) {
    std::hint::black_box(scram::salted_password(
        ScramMechanism::Sha512,
        password.as_bytes(),
        b"sluice: no such user",
        iterations.clamp(MIN_ITERATIONS, scram::MAX_ITERATIONS),
    ));
}

#[cfg(test)]
mod tests;
