//! The client half of a SCRAM exchange, for Sluice's own client library.

use std::fmt;

use subtle::ConstantTimeEq;

use super::message::{self, encode_base64, ServerFinal};
use super::{crypto, ScramMechanism, MAX_USERNAME_LEN};
use crate::error::AuthError;
use crate::saslname;

/// The GS2 header the client sends: no channel binding, no authzid. `c=biws` is its base64.
const GS2_HEADER: &str = "n,,";

/// The client side of one SCRAM exchange: send [`ScramClient::client_first`], pass the server's
/// answer to [`ScramClient::server_first`] and send what it returns, then check the server's last
/// message with [`ScramClient::server_final`] — only then is the *server* authenticated.
pub struct ScramClient {
    mechanism: ScramMechanism,
    client_first_bare: String,
    password: Vec<u8>,
    client_nonce: String,
    state: State,
}

enum State {
    AwaitingServerFirst,
    AwaitingServerFinal { server_signature: Vec<u8> },
    Ended,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A client for `username` and `password`. `client_nonce` is the caller's fresh random nonce
    /// (printable ASCII but `,`). Fails on an empty or over-long user name or an unusable nonce:
    /// the first message could not carry them.
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &[u8],
        client_nonce: &str,
    ) -> Result<Self, AuthError> {
        if username.is_empty() || username.len() > MAX_USERNAME_LEN || username.contains('\0') {
            return Err(AuthError::InvalidArgument(
                "user name must be 1..=256 bytes without NUL",
            ));
        }
        if !message::is_valid_nonce(client_nonce) {
            return Err(AuthError::InvalidArgument(
                "client nonce must be printable ASCII without ','",
            ));
        }
        Ok(ScramClient {
            mechanism,
            client_first_bare: format!("n={},r={client_nonce}", saslname::encode(username)),
            password: password.to_vec(),
            client_nonce: client_nonce.to_owned(),
            state: State::AwaitingServerFirst,
        })
    }

    /// client-first: `n,,n=<escaped user>,r=<client nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{GS2_HEADER}{}", self.client_first_bare).into_bytes()
    }

    /// Handles server-first and returns client-final (`c=biws,r=<nonce>,p=<proof>`). Refuses a
    /// nonce that does not extend ours, and an iteration count outside
    /// `MIN_ITERATIONS..=MAX_ITERATIONS` before running PBKDF2 with it.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::AwaitingServerFirst) {
            self.state = State::Ended;
            return Err(AuthError::OutOfOrder);
        }
        self.state = State::Ended;
        let first = message::parse_server_first(msg)?;
        let extends_ours = first
            .nonce
            .strip_prefix(self.client_nonce.as_str())
            .is_some_and(|server_part| !server_part.is_empty());
        if !extends_ours {
            return Err(AuthError::InvalidServerMessage(
                "server nonce does not extend the client nonce",
            ));
        }
        let mech = self.mechanism;
        let salted = super::salted_password(mech, &self.password, &first.salt, first.iterations);
        let client_key = crypto::hmac(mech, &salted, &[b"Client Key"]);
        let stored_key = crypto::hash(mech, &client_key);
        let server_key = crypto::hmac(mech, &salted, &[b"Server Key"]);
        let without_proof = format!(
            "c={},r={}",
            encode_base64(GS2_HEADER.as_bytes()),
            first.nonce
        );
        let auth_message: [&[u8]; 5] = [
            self.client_first_bare.as_bytes(),
            b",",
            first.text.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = crypto::hmac(mech, &stored_key, &auth_message);
        let proof = crypto::xor(&client_key, &client_signature);
        self.state = State::AwaitingServerFinal {
            server_signature: crypto::hmac(mech, &server_key, &auth_message),
        };
        Ok(format!("{without_proof},p={}", encode_base64(&proof)).into_bytes())
    }

    /// Checks server-final: `v=<signature>` must be the one only a server holding our
    /// credential can compute (compared in constant time); `e=<text>` is
    /// [`AuthError::ServerError`].
    pub fn server_final(&self, msg: &[u8]) -> Result<(), AuthError> {
        let State::AwaitingServerFinal { server_signature } = &self.state else {
            return Err(AuthError::OutOfOrder);
        };
        match message::parse_server_final(msg)? {
            ServerFinal::Error(text) => Err(AuthError::ServerError(text)),
            ServerFinal::Verifier(v) => {
                if bool::from(v.ct_eq(server_signature)) {
                    Ok(())
                } else {
                    Err(AuthError::InvalidServerMessage(
                        "server signature does not verify",
                    ))
                }
            }
        }
    }
}
