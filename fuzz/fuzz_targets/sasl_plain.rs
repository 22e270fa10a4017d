//! SASL PLAIN on any bytes: `sluice_auth::plain::parse` and a `SaslExchange` over a one-user
//! store (a message that parses costs one PBKDF2 run, as in the broker). Must never panic; what
//! parses respects Kafka's rules (non-empty user and password, authzid empty or the user) and
//! rebuilds into a message that parses the same; the exchange succeeds exactly for the stored
//! user's password, and ends after one step.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_auth::plain;
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_auth::{CredentialStore, ExchangeConfig, SaslExchange, SaslMechanism, SaslStep};

struct OneUser;

impl CredentialStore for OneUser {
    fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential> {
        static CRED: OnceLock<ScramCredential> = OnceLock::new();
        (mechanism == ScramMechanism::Sha256 && user == "alice").then(|| {
            CRED.get_or_init(|| {
                ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt", 4096)
            })
            .clone()
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = plain::parse(data);
    if let Ok(m) = &parsed {
        assert!(!m.username.is_empty() && !m.password.is_empty());
        assert!(m.authzid.is_empty() || m.authzid == m.username);
        let again = plain::client_message(m.username, m.password);
        let back = plain::parse(&again).expect("a rebuilt message parses");
        assert_eq!((back.username, back.password), (m.username, m.password));
    }

    let mut x = SaslExchange::new(SaslMechanism::Plain, &ExchangeConfig::default());
    let step = x.step(data, &OneUser, 0, "n");
    let genuine = parsed.is_ok_and(|m| m.username == "alice" && m.password == "pw");
    match step {
        SaslStep::Done {
            principal,
            response,
            expires_at_ms,
        } => {
            assert!(genuine);
            assert_eq!(principal.to_string(), "User:alice");
            assert!(response.is_empty() && expires_at_ms.is_none());
        }
        SaslStep::Failed { .. } => assert!(!genuine),
        SaslStep::Continue(_) => panic!("PLAIN has one step"),
    }
    assert!(x.is_finished());
    assert!(matches!(
        x.step(data, &OneUser, 0, "n"),
        SaslStep::Failed { .. }
    ));
});
