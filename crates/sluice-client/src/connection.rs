//! One connection to one broker: TCP, TLS when the security protocol asks for it, size-prefixed
//! frames, request headers with correlation ids, the ApiVersions handshake, SASL
//! authentication, and a timeout on every round trip.
//!
//! Requests are sent one at a time. After a timeout or an I/O error the connection is marked
//! broken, because a late response would otherwise be read as the answer to the next request.
//!
//! Opening follows Kafka's clients: TCP connect, TLS handshake (SSL, SASL_SSL), ApiVersions,
//! then for SASL_PLAINTEXT and SASL_SSL a SaslHandshake v1 naming the mechanism and
//! SaslAuthenticate rounds carrying its tokens (PLAIN: one message; SCRAM: client-first,
//! client-final, and the broker's server-final checked, which authenticates the broker).
//!
//! Re-authentication (KIP-368) is not implemented: the tools' connections are short-lived.
//! When the broker gives the session a lifetime (`session_lifetime_ms` > 0), the connection
//! counts as broken shortly before it ends, so that [`crate::Client`] opens (and authenticates)
//! a new one instead of sending a request the broker would answer by closing.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use sluice_auth::scram::ScramClient;
use sluice_auth::SaslMechanism;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{check, error_name, io_error, Error, Result};
use crate::security::{Connector, SaslCredentials};
use crate::versions::{client_range, BrokerVersions};

/// Responses larger than this are refused rather than allocated: a garbage length prefix must
/// not make us reserve gigabytes.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;
/// ApiVersions answers are a few kilobytes; a larger "length" on the first answer is something
/// else speaking (a TLS listener's alert read as a frame length, say).
const MAX_API_VERSIONS_BYTES: usize = 4 * 1024 * 1024;
/// Random bytes in a SCRAM client nonce (hex-encoded: 48 characters).
const NONCE_BYTES: usize = 24;

/// The byte stream under the frames: a TCP stream, or TLS over one. Boxed: one indirection per
/// read or write is nothing next to a network round trip.
trait IoStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> IoStream for T {}

pub struct Connection {
    addr: String,
    stream: Option<Box<dyn IoStream>>,
    client_id: StrBytes,
    next_correlation_id: i32,
    timeout: Duration,
    versions: BrokerVersions,
    /// When the SASL session should be considered over (a little before the broker's
    /// `session_lifetime_ms`); `None`: no lifetime.
    session_deadline: Option<Instant>,
}

/// Marks the I/O error for a first answer that is a TLS record: the listener speaks TLS.
#[derive(Debug)]
struct TlsAnswer;

impl std::fmt::Display for TlsAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the listener speaks TLS and this connection does not")
    }
}

impl std::error::Error for TlsAnswer {}

impl Connection {
    /// Connects over plain TCP and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Connection> {
        Connection::connect_with(addr, client_id, timeout, &Connector::plaintext()).await
    }

    /// Connects as `connector` says (TLS, SASL), negotiates API versions and authenticates.
    /// Each step is bounded by `timeout`.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        connector: &Connector,
    ) -> Result<Connection> {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "connecting".into(),
                    addr: addr.into(),
                    after: timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(Error::Connect {
                    addr: addr.into(),
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        // Requests are small and sent one at a time; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn IoStream> = match connector.tls() {
            None => Box::new(tcp),
            Some(tls) => {
                let name = tls.server_name(addr)?;
                let handshake = tokio_rustls::TlsConnector::from(tls.config()).connect(name, tcp);
                match tokio::time::timeout(timeout, handshake).await {
                    Err(_) => {
                        return Err(Error::Timeout {
                            what: "TLS handshake".into(),
                            addr: addr.into(),
                            after: timeout,
                        })
                    }
                    Ok(Err(e)) => return Err(handshake_error(addr, e)),
                    Ok(Ok(s)) => Box::new(s),
                }
            }
        };
        let mut conn = Connection {
            addr: addr.into(),
            stream: Some(stream),
            client_id: StrBytes::from_string(client_id.to_owned()),
            next_correlation_id: 1,
            timeout,
            versions: BrokerVersions::default(),
            session_deadline: None,
        };
        conn.versions = conn.api_versions().await?;
        if let Some(credentials) = connector.sasl() {
            conn.authenticate(credentials).await?;
        }
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True after a failure, and once the SASL session's lifetime is (nearly) over: the
    /// client then opens a new connection.
    pub fn is_broken(&self) -> bool {
        self.stream.is_none()
            || self
                .session_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// The negotiated version of `api`.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.versions
            .pick(api)
            .map_err(|detail| Error::Unsupported {
                addr: self.addr.clone(),
                api: format!("{api:?}"),
                detail,
            })
    }

    /// KIP-511: ask with our newest ApiVersions; a broker that does not know it answers
    /// UNSUPPORTED_VERSION in v0 format, listing its own range, and we retry with that.
    async fn api_versions(&mut self) -> Result<BrokerVersions> {
        let ours = client_range(ApiKey::ApiVersions);
        let mut version = ours.max;
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req.client_software_name = StrBytes::from_static_str("sluice-cli");
                req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let resp: ApiVersionsResponse = self
                .round_trip(ApiKey::ApiVersions, version, &req, self.timeout)
                .await?;
            if resp.error_code == 35 {
                // UNSUPPORTED_VERSION: the broker's ApiVersions range is in the list.
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                version = theirs.min(ours.max).max(0);
                continue;
            }
            check(resp.error_code, None, || {
                format!("ApiVersions to {}", self.addr)
            })?;
            return Ok(BrokerVersions::new(
                resp.api_keys
                    .iter()
                    .map(|k| (k.api_key, k.min_version, k.max_version)),
            ));
        }
        Err(Error::Protocol {
            addr: self.addr.clone(),
            detail: "ApiVersions negotiation did not converge".into(),
        })
    }

    /// SaslHandshake v1 naming the mechanism, then its SaslAuthenticate rounds.
    async fn authenticate(&mut self, credentials: &SaslCredentials) -> Result<()> {
        let mechanism = credentials.mechanism;
        let addr = self.addr.clone();
        let fail = |code: Option<i16>, reason: String| Error::Sasl {
            addr: addr.clone(),
            mechanism: mechanism.name().to_owned(),
            code,
            reason,
        };
        let handshake_version = self.version(ApiKey::SaslHandshake).map_err(|_| {
            fail(
                None,
                "the broker does not offer SaslHandshake: the listener does not take SASL".into(),
            )
        })?;
        if handshake_version < 1 {
            // v0 sends the tokens as bare frames, which this client does not do.
            return Err(fail(
                None,
                "the broker offers only SaslHandshake v0 (Kafka before 1.0)".into(),
            ));
        }
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name()));
        let resp = self.send(&request).await?;
        match resp.error_code {
            0 => {}
            code => {
                self.stream = None;
                let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
                let detail = match code {
                    33 => format!(
                        "the broker offers {}",
                        if offered.is_empty() {
                            "none".to_owned()
                        } else {
                            offered.join(", ")
                        }
                    ),
                    34 => "the listener does not take SASL".to_owned(),
                    _ => String::new(),
                };
                let reason = if detail.is_empty() {
                    error_name(code)
                } else {
                    format!("{} ({detail})", error_name(code))
                };
                return Err(fail(Some(code), reason));
            }
        }
        let lifetime_ms = match mechanism {
            SaslMechanism::Plain => {
                let token = sluice_auth::plain::client_message(
                    &credentials.username,
                    &credentials.password,
                );
                self.sasl_round(token, mechanism).await?.1
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let scram = mechanism
                    .scram()
                    .ok_or_else(|| fail(None, "not SCRAM".into()))?;
                let nonce = client_nonce().map_err(|e| fail(None, e))?;
                let mut client = ScramClient::new(
                    scram,
                    &credentials.username,
                    credentials.password.as_bytes(),
                    &nonce,
                )
                .map_err(|e| fail(None, e.to_string()))?;
                let (server_first, _) = self.sasl_round(client.client_first(), mechanism).await?;
                let client_final = client.server_first(&server_first).map_err(|e| {
                    self.stream = None;
                    fail(None, format!("the broker's first SCRAM message: {e}"))
                })?;
                let (server_final, lifetime_ms) = self.sasl_round(client_final, mechanism).await?;
                client.server_final(&server_final).map_err(|e| {
                    self.stream = None;
                    fail(
                        None,
                        format!("the broker did not prove it knows the credential: {e}"),
                    )
                })?;
                lifetime_ms
            }
            SaslMechanism::OAuthBearer => {
                self.stream = None;
                return Err(fail(
                    None,
                    "OAUTHBEARER is not supported by this client".into(),
                ));
            }
        };
        if let Ok(ms) = u64::try_from(lifetime_ms) {
            if ms > 0 {
                // Kafka's clients re-authenticate at 85-95% of the lifetime; we reconnect at 90%
                // so that no request reaches the broker after the session ended.
                self.session_deadline =
                    Instant::now().checked_add(Duration::from_millis(ms - ms / 10));
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round: our token out, the broker's token and the session lifetime
    /// (v1+; 0 otherwise) back. A refusal ends the connection (the broker closes it).
    async fn sasl_round(
        &mut self,
        token: Vec<u8>,
        mechanism: SaslMechanism,
    ) -> Result<(Bytes, i64)> {
        let version = self.version(ApiKey::SaslAuthenticate)?;
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let resp = self.send(&request).await?;
        if resp.error_code != 0 {
            self.stream = None;
            let reason = match resp.error_message.as_deref().filter(|m| !m.is_empty()) {
                Some(message) => format!("{} ({message})", error_name(resp.error_code)),
                None => error_name(resp.error_code),
            };
            return Err(Error::Sasl {
                addr: self.addr.clone(),
                mechanism: mechanism.name().to_owned(),
                code: Some(resp.error_code),
                reason,
            });
        }
        let lifetime_ms = if version >= 1 {
            resp.session_lifetime_ms
        } else {
            0
        };
        Ok((resp.auth_bytes, lifetime_ms))
    }

    /// Sends `req` with the negotiated version and decodes the response.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        self.send_with_timeout(req, self.timeout).await
    }

    /// As [`send`](Self::send), with a longer bound for long polls (Fetch's `max_wait_ms`).
    pub async fn send_with_timeout<R: Request>(
        &mut self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| Error::Protocol {
            addr: self.addr.clone(),
            detail: format!("unknown API key {}", R::KEY),
        })?;
        let version = self.version(api)?;
        self.round_trip(api, version, req, timeout).await
    }

    async fn round_trip<Q: Encodable, P: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
        timeout: Duration,
    ) -> Result<P> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode(api, version, correlation_id, req)?;
        let addr = self.addr.clone();
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::Io {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "connection was closed after an earlier failure",
                ),
            });
        };
        let max_len = if api == ApiKey::ApiVersions {
            MAX_API_VERSIONS_BYTES
        } else {
            MAX_RESPONSE_BYTES
        };
        let exchange = async {
            stream.write_all(&frame).await?;
            // TLS buffers what it encrypts; TCP's flush does nothing.
            stream.flush().await?;
            let prefix = stream.read_i32().await?;
            let len = usize::try_from(prefix).unwrap_or(usize::MAX);
            if len > max_len {
                let [first, second, ..] = prefix.to_be_bytes();
                // A TLS record (alert 0x15, handshake 0x16, version 3.x) where a length was
                // expected: a plaintext client on a TLS listener.
                if api == ApiKey::ApiVersions && matches!(first, 0x15 | 0x16) && second == 3 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        TlsAnswer,
                    ));
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("response frame of {len} bytes is too large"),
                ));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let body = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                self.stream = None;
                return Err(Error::Timeout {
                    what: format!("{api:?} request"),
                    addr,
                    after: timeout,
                });
            }
            Ok(Err(source)) => {
                self.stream = None;
                if source
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<TlsAnswer>().is_some())
                {
                    return Err(Error::Tls {
                        addr,
                        detail: TlsAnswer.to_string(),
                    });
                }
                return Err(io_error(&addr, source));
            }
            Ok(Ok(body)) => body,
        };
        self.decode(api, version, correlation_id, body)
    }

    fn encode<Q: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        req: &Q,
    ) -> Result<BytesMut> {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0); // size, patched below
        let encoded = header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|()| req.encode(&mut buf, version));
        encoded.map_err(|e| Error::Protocol {
            addr: self.addr.clone(),
            detail: format!("cannot encode {api:?} v{version}: {e}"),
        })?;
        let size = i32::try_from(buf.len() - 4).map_err(|_| {
            Error::Invalid(format!(
                "{api:?} request is larger than 2 GiB; send less at once"
            ))
        })?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf)
    }

    fn decode<P: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        mut body: Bytes,
    ) -> Result<P> {
        let protocol = |detail: String| Error::Protocol {
            addr: self.addr.clone(),
            detail,
        };
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| protocol(format!("bad {api:?} response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(protocol(format!(
                "{api:?} response has correlation id {}, expected {correlation_id}",
                header.correlation_id
            )));
        }
        let resp = P::decode(&mut body, version)
            .map_err(|e| protocol(format!("cannot decode {api:?} v{version} response: {e}")))?;
        if body.has_remaining() {
            tracing::debug!(
                "{api:?} v{version} response has {} trailing bytes",
                body.remaining()
            );
        }
        Ok(resp)
    }
}

/// A failed TLS handshake as [`Error::Tls`]: rustls's reason (an untrusted certificate, an
/// alert), or what happened to the connection (closed: the listener does not speak TLS).
fn handshake_error(addr: &str, e: std::io::Error) -> Error {
    let detail = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => {
                "the broker closed the connection during the TLS handshake".to_owned()
            }
            _ => e.to_string(),
        },
    };
    Error::Tls {
        addr: addr.to_owned(),
        detail,
    }
}

/// A fresh SCRAM client nonce: random bytes, hex (printable, no `,`).
fn client_nonce() -> std::result::Result<String, String> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random nonce: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    //! The SASL exchange against a scripted broker that runs `sluice-auth`'s server halves.

    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
    use sluice_auth::scram::{ScramCredential, ScramMechanism};
    use sluice_auth::{CredentialStore, ExchangeConfig, SaslExchange, SaslStep};
    use tokio::net::TcpListener;

    use super::*;
    use crate::security::{Security, SecurityProtocol};

    struct Users;

    impl CredentialStore for Users {
        fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential> {
            (user == "alice").then(|| {
                ScramCredential::from_password(mechanism, b"secret", b"0123456789abcdef", 4096)
            })
        }
    }

    #[derive(Clone, Copy)]
    struct Script {
        offered: &'static [SaslMechanism],
        lifetime_ms: i64,
        /// Send a server-final whose signature is not the right one.
        forge_final: bool,
    }

    const ALL: &[SaslMechanism] = &[
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    fn frame<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, api.response_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = i32::try_from(buf.len() - 4).unwrap();
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    /// Serves one connection: ApiVersions, SaslHandshake, SaslAuthenticate.
    async fn broker(script: Script) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut exchange: Option<SaslExchange> = None;
            let mut n = 0;
            loop {
                let Ok(len) = sock.read_i32().await else {
                    return;
                };
                let mut buf = vec![0u8; usize::try_from(len).unwrap()];
                sock.read_exact(&mut buf).await.unwrap();
                let mut body = Bytes::from(buf);
                let api = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
                let version = i16::from_be_bytes([body[2], body[3]]);
                let header =
                    RequestHeader::decode(&mut body, api.request_header_version(version)).unwrap();
                let id = header.correlation_id;
                let out = match api {
                    ApiKey::ApiVersions => {
                        let keys = [
                            (ApiKey::ApiVersions, 0, 3),
                            (ApiKey::SaslHandshake, 0, 1),
                            (ApiKey::SaslAuthenticate, 0, 2),
                        ];
                        let resp = ApiVersionsResponse::default().with_api_keys(
                            keys.iter()
                                .map(|(k, min, max)| {
                                    ApiVersion::default()
                                        .with_api_key(*k as i16)
                                        .with_min_version(*min)
                                        .with_max_version(*max)
                                })
                                .collect(),
                        );
                        frame(api, version, id, &resp)
                    }
                    ApiKey::SaslHandshake => {
                        let req = SaslHandshakeRequest::decode(&mut body, version).unwrap();
                        let asked = SaslMechanism::from_name(&req.mechanism)
                            .filter(|m| script.offered.contains(m));
                        exchange = asked.map(|m| SaslExchange::new(m, &ExchangeConfig::default()));
                        let resp = SaslHandshakeResponse::default()
                            .with_error_code(if asked.is_some() { 0 } else { 33 })
                            .with_mechanisms(
                                script
                                    .offered
                                    .iter()
                                    .map(|m| StrBytes::from_static_str(m.name()))
                                    .collect(),
                            );
                        frame(api, version, id, &resp)
                    }
                    ApiKey::SaslAuthenticate => {
                        let req = SaslAuthenticateRequest::decode(&mut body, version).unwrap();
                        n += 1;
                        let step = exchange.as_mut().unwrap().step(
                            &req.auth_bytes,
                            &Users,
                            0,
                            &format!("servernonce{n}"),
                        );
                        let resp = match step {
                            SaslStep::Continue(b) => {
                                SaslAuthenticateResponse::default().with_auth_bytes(b.into())
                            }
                            SaslStep::Done { response, .. } => {
                                let response = if script.forge_final {
                                    b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec()
                                } else {
                                    response
                                };
                                SaslAuthenticateResponse::default()
                                    .with_auth_bytes(response.into())
                                    .with_session_lifetime_ms(script.lifetime_ms)
                            }
                            SaslStep::Failed { .. } => SaslAuthenticateResponse::default()
                                .with_error_code(58)
                                .with_error_message(Some(StrBytes::from_static_str(
                                    "Authentication failed: invalid credentials",
                                ))),
                        };
                        frame(api, version, id, &resp)
                    }
                    other => panic!("unexpected {other:?}"),
                };
                sock.write_all(&out).await.unwrap();
            }
        });
        addr
    }

    fn connector(mechanism: SaslMechanism, password: &str) -> Connector {
        Security {
            protocol: SecurityProtocol::SaslPlaintext,
            sasl: Some(SaslCredentials {
                mechanism,
                username: "alice".into(),
                password: password.into(),
            }),
            ..Security::default()
        }
        .connector()
        .unwrap()
    }

    const OK: Script = Script {
        offered: ALL,
        lifetime_ms: 0,
        forge_final: false,
    };

    async fn open(script: Script, mechanism: SaslMechanism, password: &str) -> Result<Connection> {
        let addr = broker(script).await;
        Connection::connect_with(
            &addr,
            "test",
            Duration::from_secs(5),
            &connector(mechanism, password),
        )
        .await
    }

    #[tokio::test]
    async fn every_mechanism_authenticates() {
        for m in ALL {
            let conn = open(OK, *m, "secret").await.unwrap();
            assert!(!conn.is_broken(), "{m}");
        }
    }

    #[tokio::test]
    async fn a_wrong_password_names_the_mechanism_and_the_brokers_message() {
        for m in ALL {
            let Err(e) = open(OK, *m, "wrong").await else {
                panic!("{m}: authenticated with a wrong password");
            };
            assert!(matches!(e, Error::Sasl { code: Some(58), .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains(m.name()), "{text}");
            assert!(
                text.contains("SASL_AUTHENTICATION_FAILED (Authentication failed"),
                "{text}"
            );
            assert!(!e.is_retriable());
        }
    }

    #[tokio::test]
    async fn an_unoffered_mechanism_lists_the_offered_ones() {
        let script = Script {
            offered: &[SaslMechanism::ScramSha256],
            ..OK
        };
        let e = open(script, SaslMechanism::Plain, "secret")
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::Sasl { code: Some(33), .. }), "{e:?}");
        assert!(
            e.to_string().contains("the broker offers SCRAM-SHA-256"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_broker_that_cannot_prove_the_credential_is_refused() {
        let script = Script {
            forge_final: true,
            ..OK
        };
        let e = open(script, SaslMechanism::ScramSha256, "secret")
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::Sasl { code: None, .. }), "{e:?}");
        assert!(e.to_string().contains("did not prove"), "{e}");
    }

    #[tokio::test]
    async fn a_session_lifetime_breaks_the_connection_before_it_ends() {
        let script = Script {
            lifetime_ms: 200,
            ..OK
        };
        let conn = open(script, SaslMechanism::ScramSha512, "secret")
            .await
            .unwrap();
        assert!(!conn.is_broken());
        tokio::time::sleep(Duration::from_millis(190)).await;
        assert!(conn.is_broken(), "past 90% of the lifetime");
    }
}
