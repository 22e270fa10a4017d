//! `SaslExchange` per mechanism, driven the way the broker's connection loop will drive it.

use crate::oauthbearer::UnsecuredJwtValidator;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::*;
use crate::oauthbearer::{client_initial, unsecured_token};
use crate::scram::ScramClient;

const NOW: i64 = 1_700_000_000_000;
const SNONCE: &str = "fresh-server-nonce";

#[derive(Default)]
struct Store {
    users: HashMap<(ScramMechanism, String), ScramCredential>,
    lookups: RefCell<Vec<(ScramMechanism, String)>>,
}

impl Store {
    fn with(mut self, mech: ScramMechanism, user: &str, password: &str) -> Self {
        self.users
            .insert((mech, user.to_owned()), credential(mech, password));
        self
    }
}

/// Credentials are made once per process: PBKDF2 is slow in debug builds.
fn credential(mech: ScramMechanism, password: &str) -> ScramCredential {
    type Cache = Mutex<HashMap<(ScramMechanism, String), ScramCredential>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache
        .entry((mech, password.to_owned()))
        .or_insert_with(|| {
            ScramCredential::from_password(mech, password.as_bytes(), b"salt of the earth", 4096)
        })
        .clone()
}

impl CredentialStore for Store {
    fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential> {
        self.lookups.borrow_mut().push((mechanism, user.to_owned()));
        self.users.get(&(mechanism, user.to_owned())).cloned()
    }
}

fn store() -> Store {
    Store::default()
        .with(ScramMechanism::Sha256, "alice", "alice-pw")
        .with(ScramMechanism::Sha512, "alice", "alice-pw")
        .with(ScramMechanism::Sha256, "old", "old-pw")
}

fn config() -> ExchangeConfig {
    ExchangeConfig {
        oauthbearer: Some(UnsecuredJwtValidator::default().into()),
        mock_salt_key: b"cluster secret".to_vec(),
        mock_iterations: 8192,
    }
}

fn step(x: &mut SaslExchange, token: &[u8], store: &Store) -> SaslStep {
    x.step(token, store, NOW, SNONCE)
}

fn done(principal: &str, response: Vec<u8>, expires_at_ms: Option<i64>) -> SaslStep {
    SaslStep::Done {
        response,
        principal: KafkaPrincipal::user(principal),
        expires_at_ms,
    }
}

fn reason(s: &SaslStep) -> &str {
    match s {
        SaslStep::Failed { reason, .. } => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn assert_finished(x: &mut SaslExchange, store: &Store) {
    assert!(x.is_finished());
    let again = step(x, b"anything", store);
    assert!(reason(&again).contains("out of order"), "{again:?}");
}

#[test]
fn plain_checks_the_scram_store() {
    let s = store();
    let mut x = SaslExchange::new(SaslMechanism::Plain, &config());
    assert_eq!(x.mechanism(), SaslMechanism::Plain);
    assert_eq!(
        step(&mut x, &plain::client_message("alice", "alice-pw"), &s),
        done("alice", vec![], None)
    );
    assert_finished(&mut x, &s);
    // SHA-512 is asked first; a SHA-256-only user still logs in.
    assert_eq!(
        s.lookups.borrow()[0],
        (ScramMechanism::Sha512, "alice".into())
    );
    let mut x = SaslExchange::new(SaslMechanism::Plain, &config());
    assert_eq!(
        step(&mut x, &plain::client_message("old", "old-pw"), &s),
        done("old", vec![], None)
    );
}

#[test]
fn plain_prefers_the_sha512_credential() {
    let s = Store::default()
        .with(ScramMechanism::Sha512, "u", "new")
        .with(ScramMechanism::Sha256, "u", "old");
    let mut x = SaslExchange::new(SaslMechanism::Plain, &config());
    assert!(matches!(
        step(&mut x, &plain::client_message("u", "new"), &s),
        SaslStep::Done { .. }
    ));
    let mut x = SaslExchange::new(SaslMechanism::Plain, &config());
    assert!(
        reason(&step(&mut x, &plain::client_message("u", "old"), &s)).contains("wrong password")
    );
}

#[test]
fn plain_failures_look_alike_to_the_client() {
    let s = store();
    let attempt = |msg: &[u8]| {
        let mut x = SaslExchange::new(SaslMechanism::Plain, &config());
        let out = step(&mut x, msg, &s);
        assert_finished(&mut x, &s);
        out
    };
    let wrong = attempt(&plain::client_message("alice", "nope"));
    let unknown = attempt(&plain::client_message("nobody", "nope"));
    assert!(reason(&wrong).contains("wrong password"));
    assert!(reason(&unknown).contains("unknown user"));
    for r in [&wrong, &unknown] {
        assert!(matches!(r, SaslStep::Failed { response: None, .. }));
        assert!(reason(r).contains("invalid credentials"));
    }
    assert!(reason(&attempt(b"alice\0bob\0pw")).contains("authorization id"));
    assert!(reason(&attempt(b"no nuls")).contains("malformed"));
}

#[test]
fn plain_refuses_unusable_credentials() {
    let mut s = Store::default();
    let weak = ScramCredential::from_password(ScramMechanism::Sha512, b"pw", b"salt", 1);
    s.users
        .insert((ScramMechanism::Sha512, "weak".into()), weak);
    let mut x = SaslExchange::new(SaslMechanism::Plain, &config());
    let out = step(&mut x, &plain::client_message("weak", "pw"), &s);
    assert!(reason(&out).contains("below the minimum"), "{out:?}");
}

fn scram_login(mech: SaslMechanism, user: &str, password: &str, s: &Store) -> (SaslStep, SaslStep) {
    let scram = mech.scram().unwrap();
    let mut client = ScramClient::new(scram, user, password.as_bytes(), "client-nonce").unwrap();
    let mut x = SaslExchange::new(mech, &config());
    let first = step(&mut x, &client.client_first(), s);
    let SaslStep::Continue(server_first) = &first else {
        panic!("expected Continue, got {first:?}")
    };
    let fin = client.server_first(server_first).unwrap();
    let last = step(&mut x, &fin, s);
    if let SaslStep::Done { response, .. } = &last {
        client.server_final(response).unwrap();
    }
    assert_finished(&mut x, s);
    (first, last)
}

#[test]
fn scram_logins() {
    let s = store();
    for mech in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        let (_, last) = scram_login(mech, "alice", "alice-pw", &s);
        let SaslStep::Done {
            principal,
            expires_at_ms,
            response,
        } = last
        else {
            panic!("{last:?}")
        };
        assert_eq!(principal.to_string(), "User:alice");
        assert_eq!(expires_at_ms, None);
        assert!(response.starts_with(b"v="));
    }
    // Only SHA-256 is stored for "old": SCRAM-SHA-512 refuses it (no fallback across hashes).
    let (_, last) = scram_login(SaslMechanism::ScramSha512, "old", "old-pw", &s);
    assert!(reason(&last).contains("unknown user"));
}

#[test]
fn scram_unknown_user_and_wrong_password_fail_alike() {
    let s = store();
    let mech = SaslMechanism::ScramSha256;
    let (first_wrong, wrong) = scram_login(mech, "alice", "nope", &s);
    let (first_unknown, unknown) = scram_login(mech, "nobody", "nope", &s);
    assert!(matches!(first_wrong, SaslStep::Continue(_)));
    assert!(matches!(first_unknown, SaslStep::Continue(_)));
    assert!(reason(&wrong).contains("wrong password"), "{wrong:?}");
    assert!(reason(&unknown).contains("unknown user"), "{unknown:?}");
    assert!(reason(&unknown).contains("\"nobody\""));
    for r in [&wrong, &unknown] {
        let SaslStep::Failed { response, .. } = r else {
            unreachable!()
        };
        assert_eq!(response.as_deref(), Some(&b"e=invalid-proof"[..]));
    }
}

#[test]
fn scram_mock_salt_comes_from_the_config() {
    let s = store();
    let server_first = |key: &[u8]| {
        let cfg = ExchangeConfig {
            mock_salt_key: key.to_vec(),
            ..config()
        };
        let mut x = SaslExchange::new(SaslMechanism::ScramSha512, &cfg);
        step(&mut x, b"n,,n=nobody,r=abc", &s)
    };
    assert_eq!(server_first(b"k1"), server_first(b"k1"));
    assert_ne!(server_first(b"k1"), server_first(b"k2"));
}

#[test]
fn scram_first_step_failures() {
    let s = store();
    let mut x = SaslExchange::new(SaslMechanism::ScramSha256, &config());
    let out = step(&mut x, b"p=tls-unique,,n=alice,r=abc", &s);
    assert!(reason(&out).contains("channel binding"), "{out:?}");
    assert!(matches!(out, SaslStep::Failed { response: None, .. }));
    assert_finished(&mut x, &s);

    let mut x = SaslExchange::new(SaslMechanism::ScramSha256, &config());
    let out = x.step(b"n,,n=alice,r=abc", &s, NOW, "bad,nonce");
    assert!(reason(&out).contains("invalid argument"), "{out:?}");

    let mut x = SaslExchange::new(SaslMechanism::ScramSha256, &config());
    let out = step(&mut x, b"n,a=root,n=alice,r=abc", &s);
    assert!(reason(&out).contains("authorization id"), "{out:?}");
}

#[test]
fn oauthbearer_valid_token() {
    let s = store();
    let token = unsecured_token("alice", &["kafka"], NOW - 1000, 3_600_000);
    for authzid in [None, Some("alice")] {
        let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &config());
        assert_eq!(
            step(&mut x, &client_initial(&token, authzid), &s),
            done("alice", vec![], Some(NOW - 1000 + 3_600_000))
        );
        assert_finished(&mut x, &s);
    }
    assert!(s.lookups.borrow().is_empty(), "OAUTHBEARER needs no store");
}

#[test]
fn oauthbearer_authzid_must_be_the_principal() {
    let token = unsecured_token("alice", &[], NOW, 60_000);
    let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &config());
    let out = step(&mut x, &client_initial(&token, Some("admin")), &store());
    assert!(reason(&out).contains("differs"), "{out:?}");
    assert_finished(&mut x, &store());
}

#[test]
fn oauthbearer_invalid_token_then_acknowledgement() {
    let s = store();
    let expired = unsecured_token("alice", &[], NOW - 120_000, 60_000);
    let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &config());
    assert_eq!(
        step(&mut x, &client_initial(&expired, None), &s),
        SaslStep::Continue(br#"{"status":"invalid_token"}"#.to_vec())
    );
    assert!(!x.is_finished());
    let out = step(&mut x, &[0x01], &s);
    assert!(reason(&out).contains("expired"), "{out:?}");
    assert!(!reason(&out).contains("acknowledge"));
    assert_finished(&mut x, &s);

    // Anything but a lone 0x01 after the error ends it too (no second try in one exchange).
    let good = unsecured_token("alice", &[], NOW, 60_000);
    for next in [client_initial(&good, None), vec![], vec![0x01, 0x01]] {
        let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &config());
        assert!(matches!(
            step(&mut x, &client_initial(&expired, None), &s),
            SaslStep::Continue(_)
        ));
        let out = step(&mut x, &next, &s);
        assert!(reason(&out).contains("did not acknowledge"), "{out:?}");
        assert_finished(&mut x, &s);
    }
}

#[test]
fn oauthbearer_missing_scope() {
    let cfg = ExchangeConfig {
        oauthbearer: Some(
            UnsecuredJwtValidator {
                required_scope: vec!["kafka".into(), "write".into()],
                ..Default::default()
            }
            .into(),
        ),
        ..config()
    };
    let token = unsecured_token("alice", &["kafka"], NOW, 60_000);
    let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &cfg);
    assert_eq!(
        step(&mut x, &client_initial(&token, None), &store()),
        SaslStep::Continue(br#"{"status":"insufficient_scope", "scope":"kafka write"}"#.to_vec())
    );
    let out = step(&mut x, &[0x01], &store());
    assert!(reason(&out).contains("\"write\""), "{out:?}");
}

#[test]
fn oauthbearer_malformed_or_disabled() {
    let s = store();
    let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &config());
    let out = step(&mut x, b"n,,auth=Bearer x", &s);
    assert!(reason(&out).contains("malformed"), "{out:?}");
    assert_finished(&mut x, &s);

    let token = unsecured_token("alice", &[], NOW, 60_000);
    let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &ExchangeConfig::default());
    let out = step(&mut x, &client_initial(&token, None), &s);
    assert!(reason(&out).contains("not enabled"), "{out:?}");
    assert_finished(&mut x, &s);
}

#[test]
fn debug_output_hides_secrets() {
    let cfg = config();
    assert!(!format!("{cfg:?}").contains("cluster secret"));
    let mut x = SaslExchange::new(SaslMechanism::ScramSha256, &cfg);
    assert!(!format!("{x:?}").contains("cluster secret"));
    step(&mut x, b"n,,n=alice,r=abc", &store());
    let shown = format!("{x:?}");
    assert!(shown.contains("awaiting client-final"), "{shown}");
    assert!(!shown.contains("cluster secret"));
}

#[test]
fn unknown_users_appear_with_the_brokers_iteration_count() {
    let s = store();
    let mut x = SaslExchange::new(SaslMechanism::ScramSha256, &config());
    let SaslStep::Continue(first) = x.step(b"n,,n=nobody,r=abc", &s, 0, "srv") else {
        panic!("expected server-first");
    };
    assert!(String::from_utf8(first).unwrap().ends_with(",i=8192"));
}
