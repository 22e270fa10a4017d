//! The connection's SASL state machine (`sasl.rs`), frame by frame, with a clock in hand.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_auth::{CredentialStore, ExchangeConfig, KafkaPrincipal, SaslMechanism};

use super::sasl::{SaslSession, SaslSettings, Screen};

struct Store(Vec<(String, ScramCredential)>);

impl CredentialStore for Store {
    fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential> {
        self.0
            .iter()
            .find(|(u, c)| u == user && c.mechanism == mechanism)
            .map(|(_, c)| c.clone())
    }
}

fn store() -> Store {
    let mut users = Vec::new();
    for (name, password) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            users.push((
                name.to_string(),
                ScramCredential::from_password(m, password.as_bytes(), b"salt-salt", 4096),
            ));
        }
    }
    Store(users)
}

fn settings(max_reauth_ms: i64) -> SaslSettings {
    SaslSettings {
        mechanisms: vec![SaslMechanism::Plain, SaslMechanism::ScramSha256],
        exchange: parking_lot::RwLock::new(ExchangeConfig::default()),
        max_reauth_ms,
    }
}

fn request<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn handshake(mechanism: &str, version: i16) -> Bytes {
    request(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
}

fn authenticate(token: &[u8]) -> Bytes {
    request(
        ApiKey::SaslAuthenticate,
        1,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
}

fn metadata() -> Bytes {
    request(ApiKey::Metadata, 4, &MetadataRequest::default())
}

fn api_versions() -> Bytes {
    request(
        ApiKey::ApiVersions,
        0,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    )
}

fn handshake_reply(screen: Screen, version: i16) -> SaslHandshakeResponse {
    let Screen::Reply(mut b) = screen else {
        panic!("expected a reply, got {screen:?}")
    };
    ResponseHeader::decode(&mut b, 0).unwrap();
    SaslHandshakeResponse::decode(&mut b, version).unwrap()
}

fn authenticate_reply(bytes: Bytes) -> SaslAuthenticateResponse {
    let mut b = bytes;
    ResponseHeader::decode(&mut b, 0).unwrap();
    SaslAuthenticateResponse::decode(&mut b, 1).unwrap()
}

struct Session {
    s: SaslSession,
    settings: SaslSettings,
    store: Store,
    now: i64,
}

impl Session {
    fn new(max_reauth_ms: i64) -> Self {
        Session {
            s: SaslSession::default(),
            settings: settings(max_reauth_ms),
            store: store(),
            now: 1_000_000,
        }
    }

    fn screen(&mut self, frame: Bytes) -> Screen {
        self.s
            .screen(&frame, &self.settings, &self.store, self.now, "servernonce")
    }

    fn screen_after_handshake(&mut self, frame: Bytes) -> Screen {
        let _ = self.screen(handshake("PLAIN", 1));
        self.screen(frame)
    }

    fn login_plain(&mut self, user: &str, password: &str) -> Screen {
        let reply = handshake_reply(self.screen(handshake("PLAIN", 1)), 1);
        assert_eq!(reply.error_code, 0);
        self.screen(authenticate(&sluice_auth::plain::client_message(
            user, password,
        )))
    }
}

#[test]
fn only_api_versions_and_sasl_before_authentication() {
    let mut s = Session::new(0);
    assert!(matches!(s.screen(api_versions()), Screen::Serve));
    assert!(matches!(s.screen(metadata()), Screen::Close(_)));
    let mut s = Session::new(0);
    // An unknown or not-offered mechanism: 33 with the offered list, then the connection
    // closes (Kafka's way).
    let Screen::Fail {
        reply: Some(reply), ..
    } = s.screen(handshake("GSSAPI", 1))
    else {
        panic!("expected a failure")
    };
    let reply = handshake_reply(Screen::Reply(reply), 1);
    assert_eq!(reply.error_code, 33);
    assert_eq!(
        reply.mechanisms,
        vec![
            StrBytes::from_static_str("PLAIN"),
            StrBytes::from_static_str("SCRAM-SHA-256")
        ]
    );
    let mut s = Session::new(0);
    // ApiVersions twice at most (a KIP-511 retry), then only the handshake.
    assert!(matches!(s.screen(api_versions()), Screen::Serve));
    assert!(matches!(s.screen(api_versions()), Screen::Serve));
    assert!(matches!(s.screen(api_versions()), Screen::Close(_)));
    let mut s = Session::new(0);
    assert_eq!(
        handshake_reply(s.screen(handshake("PLAIN", 1)), 1).error_code,
        0
    );
    // A second handshake in the middle of the exchange fails it.
    assert!(matches!(
        Session::new(0).screen_after_handshake(handshake("PLAIN", 1)),
        Screen::Fail { .. }
    ));
    // Between the handshake and the end of the exchange only SaslAuthenticate is served.
    assert!(matches!(s.screen(api_versions()), Screen::Close(_)));
}

#[test]
fn plain_logs_in_and_wrong_passwords_fail_generically() {
    let mut s = Session::new(0);
    let Screen::Reply(reply) = s.login_plain("alice", "alice-secret") else {
        panic!("expected a reply")
    };
    let reply = authenticate_reply(reply);
    assert_eq!((reply.error_code, reply.session_lifetime_ms), (0, 0));
    assert!(s.s.is_authenticated());
    assert_eq!(s.s.principal(), Some(&KafkaPrincipal::user("alice")));
    assert!(matches!(s.screen(metadata()), Screen::Serve));

    for (user, password) in [("alice", "nope"), ("nobody", "x")] {
        let mut s = Session::new(0);
        let Screen::Fail {
            reply: Some(reply),
            reason,
        } = s.login_plain(user, password)
        else {
            panic!("expected a failure")
        };
        let reply = authenticate_reply(reply);
        assert_eq!(reply.error_code, 58);
        // The client learns nothing about which part was wrong; the log does.
        assert_eq!(
            reply.error_message.as_deref(),
            Some(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism PLAIN"
            )
        );
        assert!(reason.contains(user), "{reason}");
        assert!(!s.s.is_authenticated());
    }
}

#[test]
fn scram_over_v1_and_plain_over_v0_raw_frames() {
    let mut s = Session::new(0);
    assert_eq!(
        handshake_reply(s.screen(handshake("SCRAM-SHA-256", 1)), 1).error_code,
        0
    );
    let mut client = sluice_auth::scram::ScramClient::new(
        ScramMechanism::Sha256,
        "bob",
        b"bob-secret",
        "clientnonce",
    )
    .unwrap();
    let Screen::Reply(first) = s.screen(authenticate(&client.client_first())) else {
        panic!("expected server-first")
    };
    let first = authenticate_reply(first);
    let fin = client.server_first(&first.auth_bytes).unwrap();
    let Screen::Reply(last) = s.screen(authenticate(&fin)) else {
        panic!("expected server-final")
    };
    client
        .server_final(&authenticate_reply(last).auth_bytes)
        .unwrap();
    assert_eq!(s.s.principal(), Some(&KafkaPrincipal::user("bob")));

    // v0: after the handshake the frames are bare tokens, answered bare.
    let mut s = Session::new(0);
    assert_eq!(
        handshake_reply(s.screen(handshake("PLAIN", 0)), 0).error_code,
        0
    );
    let token = Bytes::from(sluice_auth::plain::client_message("alice", "alice-secret"));
    let Screen::Reply(bare) = s.screen(token) else {
        panic!("expected a bare reply")
    };
    assert!(bare.is_empty());
    assert!(matches!(s.screen(metadata()), Screen::Serve));
}

#[test]
fn sessions_expire_and_reauthenticate_as_the_same_principal_only() {
    let mut s = Session::new(60_000);
    let Screen::Reply(reply) = s.login_plain("alice", "alice-secret") else {
        panic!()
    };
    assert_eq!(authenticate_reply(reply).session_lifetime_ms, 60_000);
    assert_eq!(s.s.expires_at_ms(), Some(s.now + 60_000));
    s.now += 60_000;
    assert!(matches!(s.screen(metadata()), Screen::Serve));
    // Past the lifetime: the next request closes the connection.
    s.now += 1;
    assert!(matches!(s.screen(metadata()), Screen::Close(_)));

    // Re-authentication on the live connection extends the session.
    let mut s = Session::new(60_000);
    assert!(matches!(
        s.login_plain("alice", "alice-secret"),
        Screen::Reply(_)
    ));
    s.now += 50_000;
    assert!(matches!(
        s.login_plain("alice", "alice-secret"),
        Screen::Reply(_)
    ));
    assert_eq!(s.s.expires_at_ms(), Some(s.now + 60_000));
    s.now += 20_000;
    assert!(matches!(s.screen(metadata()), Screen::Serve));

    // Another principal, or another mechanism, fails the re-authentication.
    assert!(matches!(
        s.login_plain("bob", "bob-secret"),
        Screen::Fail { .. }
    ));
    let mut s = Session::new(60_000);
    assert!(matches!(
        s.login_plain("alice", "alice-secret"),
        Screen::Reply(_)
    ));
    // Not twice within a second.
    assert_eq!(
        handshake_reply(s.screen(handshake("SCRAM-SHA-256", 1)), 1).error_code,
        34
    );
    s.now += 1_000;
    assert_eq!(
        handshake_reply(s.screen(handshake("SCRAM-SHA-256", 1)), 1).error_code,
        0
    );
    assert!(matches!(
        s.screen(authenticate(b"n,,n=alice,r=abc")),
        Screen::Fail { .. }
    ));
}

#[test]
fn sessions_without_an_expiry_do_not_reauthenticate() {
    let mut s = Session::new(0);
    assert!(matches!(
        s.login_plain("alice", "alice-secret"),
        Screen::Reply(_)
    ));
    s.now += 60_000;
    assert_eq!(
        handshake_reply(s.screen(handshake("PLAIN", 1)), 1).error_code,
        34
    );
    assert!(matches!(s.screen(metadata()), Screen::Serve));
}

#[test]
fn sasl_authenticate_after_authentication_is_illegal() {
    let mut s = Session::new(0);
    assert!(matches!(
        s.login_plain("alice", "alice-secret"),
        Screen::Reply(_)
    ));
    let Screen::Reply(reply) = s.screen(authenticate(b"\0alice\0alice-secret")) else {
        panic!()
    };
    assert_eq!(authenticate_reply(reply).error_code, 34);
    // Garbage never panics.
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x11\x00\x01",
        b"\x00\x24\x00\x09zz",
    ] {
        let mut s = Session::new(0);
        let _ = s.screen(Bytes::copy_from_slice(junk));
    }
}
