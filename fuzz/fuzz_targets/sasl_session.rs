//! A connection's SASL state (`security::sasl`) fed any sequence of frames: every frame gets
//! an answer, a failure or a close, never a panic, whatever the order (handshakes v0/v1, bare
//! tokens, SaslAuthenticate in and out of turn, re-authentication, garbage).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_auth::{CredentialStore, ExchangeConfig, SaslMechanism};
use sluice_broker::security::sasl::{SaslSession, SaslSettings, Screen};

struct Store;

impl CredentialStore for Store {
    fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential> {
        (user == "alice").then(|| {
            ScramCredential::from_password(mechanism, b"alice-secret", b"0123456789abcdef", 4096)
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let settings = SaslSettings {
        mechanisms: vec![
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
        ],
        exchange: parking_lot::RwLock::new(ExchangeConfig {
            oauthbearer: Some(sluice_auth::oauthbearer::UnsecuredJwtValidator::default().into()),
            mock_salt_key: b"fuzz".to_vec(),
            mock_iterations: 4096,
        }),
        max_reauth_ms: 1000,
    };
    let mut session = SaslSession::default();
    // Frames separated by 0xFF bytes (so the fuzzer can build sequences); the time moves on
    // between them.
    let mut now = 1_000_000i64;
    for frame in data.split(|&b| b == 0xFF).filter(|f| !f.is_empty()) {
        let frame = bytes::Bytes::copy_from_slice(frame);
        match session.screen(&frame, &settings, &Store, now, "servernonce") {
            Screen::Serve | Screen::Reply(_) => {}
            Screen::Fail { .. } | Screen::Close(_) => return,
        }
        now += 300;
    }
});
