//! The SASL state of one connection (Kafka's `SaslServerAuthenticator`): which requests it
//! may send before it has authenticated, the SaslHandshake and SaslAuthenticate exchange (and
//! the raw token frames that follow a v0 handshake), re-authentication (KIP-368) and the end of
//! a session's lifetime.
//!
//! IO-free: the connection hands every frame to [`SaslSession::screen`] with the time and
//! writes or closes as told. The mechanisms themselves are `sluice-auth`'s.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_auth::{
    CredentialStore, ExchangeConfig, KafkaPrincipal, SaslExchange, SaslMechanism, SaslStep,
};

/// Kafka error codes of the SASL exchange.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What the connection does with a frame.
#[derive(Debug)]
pub enum Screen {
    /// An ordinary request: dispatch it, as `principal`.
    Serve,
    /// Answer with these bytes (a whole response, without the size prefix) and read on.
    Reply(Bytes),
    /// Authentication failed: answer with these bytes if any, wait the failed-authentication
    /// delay, close. `reason` is for the operator's log; the client got a generic text.
    Fail {
        reply: Option<Bytes>,
        reason: String,
    },
    /// Close at once (a request the state does not allow; Kafka closes too).
    Close(String),
}

/// The settings every session of a listener shares.
pub struct SaslSettings {
    /// The mechanisms this listener offers, in the order SaslHandshake lists them.
    pub mechanisms: Vec<SaslMechanism>,
    /// Replaced when the OAUTHBEARER key set is reloaded; an exchange copies it at its start.
    pub exchange: parking_lot::RwLock<ExchangeConfig>,
    /// `connections.max.reauth.ms` (0: sessions do not expire unless their credential does).
    pub max_reauth_ms: i64,
}

enum State {
    /// Nothing but ApiVersions (at most [`API_VERSIONS_BEFORE_AUTH`] times: a KIP-511 retry at
    /// a lower version is the one reason for a second) and SaslHandshake yet.
    Initial { api_versions: u8 },
    /// SaslHandshake v1+ done: SaslAuthenticate requests carry the tokens.
    Authenticating(Exchange),
    /// SaslHandshake v0 done: the next frames are bare tokens, answered by bare tokens.
    RawTokens(Exchange),
    /// Authenticated. `reauth` is an exchange under way on the live session (KIP-368).
    Complete {
        mechanism: SaslMechanism,
        expires_at_ms: Option<i64>,
        /// When the last exchange ended: re-authentication at most once a second.
        authenticated_at_ms: i64,
        reauth: Option<Exchange>,
    },
}

/// ApiVersions requests a connection may send before authenticating.
const API_VERSIONS_BEFORE_AUTH: u8 = 2;
/// The least time between two authentications of one connection (KIP-368 lets a client
/// re-authenticate; nothing lets it make the broker hash passwords in a loop).
const MIN_REAUTH_INTERVAL_MS: i64 = 1000;

struct Exchange {
    mechanism: SaslMechanism,
    inner: SaslExchange,
    /// A re-authentication that asked for another mechanism: Kafka fails it at the first
    /// SaslAuthenticate (`REAUTH_BAD_MECHANISM`).
    bad_mechanism: bool,
}

pub struct SaslSession {
    state: State,
    principal: Option<KafkaPrincipal>,
}

impl Default for SaslSession {
    fn default() -> Self {
        SaslSession {
            state: State::Initial { api_versions: 0 },
            principal: None,
        }
    }
}

impl SaslSession {
    /// The authenticated principal (None until the first exchange succeeded).
    pub fn principal(&self) -> Option<&KafkaPrincipal> {
        match self.state {
            State::Complete { .. } => self.principal.as_ref(),
            _ => None,
        }
    }

    /// True once authenticated (frames are then requests under `socket.request.max.bytes`;
    /// before, `sasl.server.max.receive.size` bounds them).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Complete { .. })
    }

    /// True while a re-authentication exchange is under way.
    pub fn is_reauthenticating(&self) -> bool {
        matches!(
            self.state,
            State::Complete {
                reauth: Some(_),
                ..
            }
        )
    }

    /// When the session ends unless it re-authenticates (epoch ms).
    pub fn expires_at_ms(&self) -> Option<i64> {
        match self.state {
            State::Complete { expires_at_ms, .. } => expires_at_ms,
            _ => None,
        }
    }

    /// Decides what to do with one frame (without its size prefix).
    pub fn screen(
        &mut self,
        frame: &Bytes,
        settings: &SaslSettings,
        store: &dyn CredentialStore,
        now_ms: i64,
        nonce: &str,
    ) -> Screen {
        if let State::RawTokens(exchange) = &mut self.state {
            let step = exchange.inner.step(frame, store, now_ms, nonce);
            return self.finish_raw(step, settings, now_ms);
        }
        let (Some(key), Some(version)) = (peek_i16(frame, 0), peek_i16(frame, 2)) else {
            return Screen::Close("request shorter than a header".into());
        };
        let key = ApiKey::try_from(key).ok();
        match (&mut self.state, key) {
            (_, Some(ApiKey::SaslHandshake)) => self.handshake(frame, version, settings, now_ms),
            (State::Authenticating(_), Some(ApiKey::SaslAuthenticate)) => {
                self.authenticate(frame, version, settings, store, now_ms, nonce)
            }
            (
                State::Complete {
                    reauth: Some(_), ..
                },
                Some(ApiKey::SaslAuthenticate),
            ) => self.authenticate(frame, version, settings, store, now_ms, nonce),
            (State::Complete { .. }, Some(ApiKey::SaslAuthenticate)) => {
                match decode::<SaslAuthenticateRequest>(frame, ApiKey::SaslAuthenticate, version) {
                    Ok((correlation_id, _)) => Screen::Reply(authenticate_response(
                        correlation_id,
                        version,
                        SaslAuthenticateResponse::default()
                            .with_error_code(ILLEGAL_SASL_STATE)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "SaslAuthenticate request received after successful authentication",
                            ))),
                    )),
                    Err(e) => Screen::Close(e),
                }
            }
            (
                State::Complete {
                    expires_at_ms,
                    reauth: None,
                    ..
                },
                _,
            ) => match expires_at_ms {
                // KIP-368: a session past its lifetime is closed at its next request (not
                // at the deadline itself: a request may be on its way).
                Some(at) if now_ms > *at => Screen::Close(
                    "the SASL session expired and the client did not re-authenticate".into(),
                ),
                _ => Screen::Serve,
            },
            (State::Complete { .. }, _) => Screen::Close(format!(
                "{} during re-authentication: only SaslAuthenticate may follow SaslHandshake",
                key.map_or("an unknown API".to_string(), |k| format!("{k:?}"))
            )),
            (State::Initial { api_versions }, Some(ApiKey::ApiVersions))
                if *api_versions < API_VERSIONS_BEFORE_AUTH =>
            {
                *api_versions += 1;
                Screen::Serve
            }
            (State::Initial { .. }, _) => Screen::Close(format!(
                "{} before SASL authentication: only ApiVersions, SaslHandshake and \
                 SaslAuthenticate are served before a client has authenticated (a client \
                 configured with the wrong security protocol?)",
                key.map_or("an unknown API".to_string(), |k| format!("{k:?}"))
            )),
            (State::Authenticating(_), _) => Screen::Close(format!(
                "{} during SASL authentication: only SaslAuthenticate may follow SaslHandshake",
                key.map_or("an unknown API".to_string(), |k| format!("{k:?}"))
            )),
            (State::RawTokens(_), _) => Screen::Close("unreachable: raw tokens".into()),
        }
    }

    fn handshake(
        &mut self,
        frame: &Bytes,
        version: i16,
        settings: &SaslSettings,
        now_ms: i64,
    ) -> Screen {
        if !(0..=1).contains(&version) {
            return Screen::Close(format!("SaslHandshake v{version} is not supported"));
        }
        let (correlation_id, request) =
            match decode::<SaslHandshakeRequest>(frame, ApiKey::SaslHandshake, version) {
                Ok(r) => r,
                Err(e) => return Screen::Close(e),
            };
        let names = settings
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let reply = |error_code| {
            let body = SaslHandshakeResponse::default()
                .with_error_code(error_code)
                .with_mechanisms(names);
            encode(correlation_id, ApiKey::SaslHandshake, version, &body)
        };
        let asked = SaslMechanism::from_name(&request.mechanism);
        let chosen = asked.filter(|m| settings.mechanisms.contains(m));
        match &mut self.state {
            State::Initial { .. } => {
                let Some(mechanism) = chosen else {
                    // Kafka answers with the mechanisms it offers, then closes.
                    return Screen::Fail {
                        reply: Some(reply(UNSUPPORTED_SASL_MECHANISM)),
                        reason: format!(
                            "SASL mechanism {:?} is not offered on this listener",
                            request.mechanism.as_str()
                        ),
                    };
                };
                let exchange = Exchange::new(mechanism, settings);
                self.state = if version == 0 {
                    State::RawTokens(exchange)
                } else {
                    State::Authenticating(exchange)
                };
                Screen::Reply(reply(0))
            }
            // Re-authentication (KIP-368) renews a session that expires, at most once a second.
            State::Complete {
                mechanism,
                reauth,
                expires_at_ms: Some(_),
                authenticated_at_ms,
            } if reauth.is_none()
                && version >= 1
                && now_ms.saturating_sub(*authenticated_at_ms) >= MIN_REAUTH_INTERVAL_MS =>
            {
                let mut exchange = Exchange::new(chosen.unwrap_or(*mechanism), settings);
                exchange.bad_mechanism = chosen != Some(*mechanism);
                *reauth = Some(exchange);
                Screen::Reply(reply(0))
            }
            // An authenticated session that may not re-authenticate now keeps its connection.
            State::Complete { .. } => Screen::Reply(reply(ILLEGAL_SASL_STATE)),
            // A second handshake in the middle of an exchange: Kafka fails it and closes.
            _ => Screen::Fail {
                reply: Some(reply(ILLEGAL_SASL_STATE)),
                reason: "SaslHandshake during a SASL exchange".into(),
            },
        }
    }

    fn authenticate(
        &mut self,
        frame: &Bytes,
        version: i16,
        settings: &SaslSettings,
        store: &dyn CredentialStore,
        now_ms: i64,
        nonce: &str,
    ) -> Screen {
        if !(0..=2).contains(&version) {
            return Screen::Close(format!("SaslAuthenticate v{version} is not supported"));
        }
        let (correlation_id, request) =
            match decode::<SaslAuthenticateRequest>(frame, ApiKey::SaslAuthenticate, version) {
                Ok(r) => r,
                Err(e) => return Screen::Close(e),
            };
        let reauthenticating = matches!(self.state, State::Complete { .. });
        let exchange = match &mut self.state {
            State::Authenticating(e) => e,
            State::Complete {
                reauth: Some(e), ..
            } => e,
            _ => return Screen::Close("SaslAuthenticate out of order".into()),
        };
        let mechanism = exchange.mechanism;
        let fail = |reason: String| {
            let message = format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                mechanism.name()
            );
            Screen::Fail {
                reply: Some(authenticate_response(
                    correlation_id,
                    version,
                    SaslAuthenticateResponse::default()
                        .with_error_code(SASL_AUTHENTICATION_FAILED)
                        .with_error_message(Some(StrBytes::from_string(message))),
                )),
                reason,
            }
        };
        if exchange.bad_mechanism {
            return fail("cannot change the SASL mechanism when re-authenticating".into());
        }
        match exchange
            .inner
            .step(&request.auth_bytes, store, now_ms, nonce)
        {
            SaslStep::Continue(bytes) => Screen::Reply(authenticate_response(
                correlation_id,
                version,
                SaslAuthenticateResponse::default().with_auth_bytes(bytes.into()),
            )),
            SaslStep::Failed { reason, .. } => fail(reason),
            SaslStep::Done {
                response,
                principal,
                expires_at_ms,
            } => {
                if reauthenticating && self.principal.as_ref() != Some(&principal) {
                    return fail(format!(
                        "cannot change principals during re-authentication (from {} to {principal})",
                        self.principal
                            .as_ref()
                            .map_or("none".to_string(), |p| p.to_string())
                    ));
                }
                let expires_at_ms = session_expiry(settings.max_reauth_ms, expires_at_ms, now_ms);
                // v0 has no lifetime field: such a client cannot know to re-authenticate and is
                // closed at its first request after the expiry (KAFKA-9241).
                let lifetime = expires_at_ms.map_or(0, |at| at.saturating_sub(now_ms).max(1));
                self.principal = Some(principal);
                self.state = State::Complete {
                    mechanism,
                    expires_at_ms,
                    authenticated_at_ms: now_ms,
                    reauth: None,
                };
                Screen::Reply(authenticate_response(
                    correlation_id,
                    version,
                    SaslAuthenticateResponse::default()
                        .with_auth_bytes(response.into())
                        .with_session_lifetime_ms(lifetime),
                ))
            }
        }
    }

    /// A step of a v0 exchange: tokens go back bare; a failure closes without an answer.
    fn finish_raw(&mut self, step: SaslStep, settings: &SaslSettings, now_ms: i64) -> Screen {
        match step {
            SaslStep::Continue(bytes) => Screen::Reply(bytes.into()),
            SaslStep::Failed { reason, .. } => Screen::Fail {
                reply: None,
                reason,
            },
            SaslStep::Done {
                response,
                principal,
                expires_at_ms,
            } => {
                let State::RawTokens(exchange) = &self.state else {
                    return Screen::Close("unreachable: raw tokens".into());
                };
                self.principal = Some(principal);
                self.state = State::Complete {
                    mechanism: exchange.mechanism,
                    expires_at_ms: session_expiry(settings.max_reauth_ms, expires_at_ms, now_ms),
                    authenticated_at_ms: now_ms,
                    reauth: None,
                };
                Screen::Reply(response.into())
            }
        }
    }
}

impl Exchange {
    fn new(mechanism: SaslMechanism, settings: &SaslSettings) -> Exchange {
        Exchange {
            mechanism,
            inner: SaslExchange::new(mechanism, &settings.exchange.read()),
            bad_mechanism: false,
        }
    }
}

/// Kafka's session lifetime: the earlier of `connections.max.reauth.ms` from now and the
/// credential's own expiry (an OAUTHBEARER token's `exp`); none when neither is set.
fn session_expiry(max_reauth_ms: i64, credential_expiry: Option<i64>, now_ms: i64) -> Option<i64> {
    let by_config = (max_reauth_ms > 0).then(|| now_ms.saturating_add(max_reauth_ms));
    match (by_config, credential_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn peek_i16(frame: &[u8], at: usize) -> Option<i16> {
    let b = frame.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes([b[0], b[1]]))
}

/// Decodes a SASL request (header and body); the protocol crate's panics are caught.
fn decode<T: Decodable>(frame: &Bytes, key: ApiKey, version: i16) -> Result<(i32, T), String> {
    let mut buf = frame.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut buf, key.request_header_version(version))
            .map_err(|e| format!("bad {key:?} header: {e}"))?;
        let body =
            T::decode(&mut buf, version).map_err(|e| format!("bad {key:?} v{version}: {e}"))?;
        Ok((header.correlation_id, body))
    }))
    .unwrap_or_else(|_| Err(format!("{key:?} v{version}: decoder panicked")))
}

fn encode<T: Encodable>(correlation_id: i32, key: ApiKey, version: i16, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    let header_version = key.response_header_version(version);
    // Encoding our own small, well-formed messages cannot fail; an empty reply would close the
    // connection at the client, which is the right outcome if it ever did.
    let ok = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .and_then(|()| body.encode(&mut buf, version));
    if ok.is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

fn authenticate_response(
    correlation_id: i32,
    version: i16,
    body: SaslAuthenticateResponse,
) -> Bytes {
    encode(correlation_id, ApiKey::SaslAuthenticate, version, &body)
}
