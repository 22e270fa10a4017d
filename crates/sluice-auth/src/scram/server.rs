//! The server half of a SCRAM exchange (Kafka's `ScramSaslServer`).

use std::fmt;

use subtle::{Choice, ConstantTimeEq};

use super::credential::ScramCredential;
use super::message::{self, encode_base64};
use super::{crypto, ScramMechanism, MIN_ITERATIONS};
use crate::error::AuthError;

/// The length of the mock salt sent for unknown users. Real salts of this length make the mock
/// ones indistinguishable by size.
pub const MOCK_SALT_LEN: usize = 32;

/// What a successful exchange yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramOutcome {
    /// `v=<ServerSignature>`: the last message to the client, which lets it authenticate us.
    pub server_final: Vec<u8>,
    /// The authenticated user name (decoded).
    pub username: String,
}

/// The server side of one SCRAM exchange: [`ScramServer::client_first`] then
/// [`ScramServer::client_final`], each exactly once. Any error ends the exchange; every later call
/// is [`AuthError::OutOfOrder`], so a message cannot be replayed into it. `Debug` shows neither
/// the mock-salt key nor the credential.
pub struct ScramServer {
    mechanism: ScramMechanism,
    mock_salt_key: Vec<u8>,
    /// The iteration count of mock credentials: the broker's own default, so an unknown user's
    /// server-first looks like a real user's.
    mock_iterations: u32,
    state: State,
    username: Option<String>,
    rejection: Option<&'static str>,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<Pending>),
    Ended,
}

/// What client-final is checked against.
struct Pending {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    username: String,
    credential: ScramCredential,
    /// False when `credential` is the mock one: the exchange then fails at client-final.
    genuine: bool,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::AwaitingClientFirst => "awaiting client-first",
            State::AwaitingClientFinal(_) => "awaiting client-final",
            State::Ended => "ended",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .field("username", &self.username)
            .field("rejection", &self.rejection)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// A server for one exchange of `mechanism`, with an empty mock-salt key (see
    /// [`ScramServer::with_mock_salt_key`]).
    pub fn new(mechanism: ScramMechanism) -> Self {
        ScramServer {
            mechanism,
            mock_salt_key: Vec::new(),
            mock_iterations: MIN_ITERATIONS,
            state: State::AwaitingClientFirst,
            username: None,
            rejection: None,
        }
    }

    /// Sets the secret the mock salt of unknown users is derived from:
    /// `HMAC-SHA-256(key, mechanism, user)`, the same for a user on every attempt (a salt that
    /// changed between attempts would give the game away). Without a secret key anyone who knows
    /// this code can compute the mock salt and tell that a user does not exist, so the broker
    /// should pass a secret that is the same on every broker of the cluster and across restarts
    /// (PostgreSQL's "mock authentication nonce" plays the same part).
    /// Sets the iteration count of mock credentials (clamped to Kafka's bounds): the count the
    /// broker gives real users, so a prober cannot tell them apart by it.
    pub fn with_mock_iterations(mut self, iterations: u32) -> Self {
        self.mock_iterations = iterations.clamp(MIN_ITERATIONS, super::MAX_ITERATIONS);
        self
    }

    pub fn with_mock_salt_key(mut self, key: &[u8]) -> Self {
        self.mock_salt_key = key.to_vec();
        self
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The user name the client claimed in client-first, once it parsed (for logs).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Why the credentials were refused — unknown user, unusable stored credential, or a proof
    /// that does not verify — once [`ScramServer::client_final`] has returned
    /// [`AuthError::InvalidCredentials`]. For the operator's log only: it says whether the user
    /// exists, which the client must not learn.
    pub fn rejection_detail(&self) -> Option<&'static str> {
        self.rejection
    }

    /// Handles client-first and returns server-first,
    /// `r=<client nonce><server_nonce>,s=<base64 salt>,i=<iterations>`.
    ///
    /// `server_nonce` is the caller's fresh random part of the nonce (printable ASCII but `,`; at
    /// least 18 random bytes' worth is customary). `lookup` is asked for the user's credential
    /// for this mechanism; `None` (unknown user), a credential of another mechanism or an
    /// unusable one ([`ScramCredential::check`]) do not fail here: the exchange goes on with a
    /// mock credential and fails at client-final, as a wrong password does.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            self.state = State::Ended;
            return Err(AuthError::OutOfOrder);
        }
        self.state = State::Ended;
        if !message::is_valid_nonce(server_nonce) {
            return Err(AuthError::InvalidArgument(
                "server nonce must be printable ASCII without ','",
            ));
        }
        let first = message::parse_client_first(msg)?;
        self.username = Some(first.username.clone());
        // Kafka: an authzid must name the user itself (no impersonation). Checked before the
        // lookup, so it says nothing about whether the user exists.
        if first
            .authzid
            .as_deref()
            .is_some_and(|a| a != first.username)
        {
            return Err(AuthError::AuthzidMismatch);
        }

        let (credential, genuine) = match lookup(&first.username) {
            None => {
                self.rejection = Some("unknown user");
                (self.mock_credential(&first.username), false)
            }
            Some(c) if c.mechanism != self.mechanism => {
                self.rejection = Some("stored credential is for the other SCRAM mechanism");
                (self.mock_credential(&first.username), false)
            }
            Some(c) => match c.check() {
                Ok(()) => (c, true),
                Err(why) => {
                    self.rejection = Some(why);
                    (self.mock_credential(&first.username), false)
                }
            },
        };

        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            encode_base64(&credential.salt),
            credential.iterations
        );
        self.state = State::AwaitingClientFinal(Box::new(Pending {
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            username: first.username,
            credential,
            genuine,
        }));
        Ok(server_first.into_bytes())
    }

    /// Handles client-final: checks the channel binding, the nonce and the proof (in constant
    /// time), and returns the server-final message and the user.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<ScramOutcome, AuthError> {
        let pending = match std::mem::replace(&mut self.state, State::Ended) {
            State::AwaitingClientFinal(p) => p,
            State::AwaitingClientFirst | State::Ended => return Err(AuthError::OutOfOrder),
        };
        let fin = message::parse_client_final(msg)?;
        if fin.channel_binding != pending.gs2_header.as_bytes() {
            return Err(AuthError::ChannelBindingMismatch);
        }
        // Kafka's ScramSaslServer accepts a final nonce that ends with the combined nonce, not
        // only one equal to it; librdkafka before 2.2 (Debian's kcat) sends the client nonce
        // twice (`cnonce + cnonce + snonce`) and logs in to Kafka that way. Ending with the
        // combined nonce still proves the client saw this exchange's server nonce, and the
        // proof covers the message as sent.
        if !fin.nonce.ends_with(pending.nonce.as_str()) {
            return Err(AuthError::NonceMismatch);
        }
        let len = self.mechanism.key_len();
        if fin.proof.len() != len {
            return Err(AuthError::Malformed("proof has the wrong length"));
        }

        let auth_message: [&[u8]; 5] = [
            pending.client_first_bare.as_bytes(),
            b",",
            pending.server_first.as_bytes(),
            b",",
            fin.without_proof.as_bytes(),
        ];
        let credential = &pending.credential;
        let client_signature = crypto::hmac(self.mechanism, &credential.stored_key, &auth_message);
        let client_key = crypto::xor(&fin.proof, &client_signature);
        let computed = crypto::hash(self.mechanism, &client_key);
        let verified =
            computed.ct_eq(&credential.stored_key) & Choice::from(u8::from(pending.genuine));
        if !bool::from(verified) {
            if pending.genuine {
                self.rejection = Some("client proof does not verify (wrong password)");
            }
            return Err(AuthError::InvalidCredentials);
        }
        let server_signature = crypto::hmac(self.mechanism, &credential.server_key, &auth_message);
        Ok(ScramOutcome {
            server_final: format!("v={}", encode_base64(&server_signature)).into_bytes(),
            username: pending.username,
        })
    }

    /// A credential for a user with none: a per-user, per-mechanism salt from the mock-salt key,
    /// [`MIN_ITERATIONS`], and keys nobody knows the password of (they are never accepted anyway).
    fn mock_credential(&self, username: &str) -> ScramCredential {
        let mechanism = self.mechanism.name().as_bytes();
        let salt = crypto::hmac(
            ScramMechanism::Sha256,
            &self.mock_salt_key,
            &[b"sluice mock salt\0", mechanism, b"\0", username.as_bytes()],
        );
        let salted = crypto::hmac(
            self.mechanism,
            &self.mock_salt_key,
            &[b"sluice mock key\0", mechanism, b"\0", username.as_bytes()],
        );
        ScramCredential::from_salted_password(self.mechanism, &salt, self.mock_iterations, &salted)
    }
}

/// The RFC 5802 `e=` server-final message for an error [`ScramServer::client_final`] returned,
/// for brokers that send one with the failure. Every credential failure is `invalid-proof`
/// (RFC 5802 §7 allows it for unknown users, so they look like a wrong password).
pub fn server_error_message(err: &AuthError) -> Vec<u8> {
    let value = match err {
        AuthError::InvalidCredentials => "invalid-proof",
        AuthError::ChannelBindingMismatch => "channel-bindings-dont-match",
        AuthError::Malformed(_) | AuthError::TooLong { .. } => "invalid-encoding",
        AuthError::Unsupported(_) => "extensions-not-supported",
        _ => "other-error",
    };
    format!("e={value}").into_bytes()
}
