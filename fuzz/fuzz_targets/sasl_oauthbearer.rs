//! OAUTHBEARER on any bytes: `parse_client_initial`, the unsecured-JWT validator (on the input as
//! a token, and on the input as a token's claims JSON, so the JSON and claim checks see arbitrary
//! documents) and a `SaslExchange` over the input split at NUL into a sequence of client tokens.
//! The first 8 bytes are the clock (epoch ms). Must never panic; a parsed message rebuilds into one that
//! parses to the same token and authzid; a valid token is unexpired at the clock, has a
//! non-blank principal and every required scope; a refused one renders Kafka's error JSON; the
//! exchange follows its shape (Done at once, or the error JSON then Failed) and ends.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sluice_auth::oauthbearer::{self, UnsecuredJwtValidator};
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_auth::{CredentialStore, ExchangeConfig, SaslExchange, SaslMechanism, SaslStep};

struct NoUsers;

impl CredentialStore for NoUsers {
    fn scram(&self, _: ScramMechanism, _: &str) -> Option<ScramCredential> {
        None
    }
}

fn validator() -> UnsecuredJwtValidator {
    UnsecuredJwtValidator {
        required_scope: vec!["kafka".to_owned()],
        allowable_clock_skew_ms: 1000,
        ..Default::default()
    }
}

fn check_validation(v: &UnsecuredJwtValidator, token: &str, now_ms: i64) {
    match v.validate(token, now_ms) {
        Ok(valid) => {
            assert!(!valid.principal.trim().is_empty());
            // now - skew < exp, in whole milliseconds once exp is rounded.
            assert!(valid.lifetime_ms >= now_ms - 1000);
            assert!(valid.scope.iter().any(|s| s == "kafka"));
        }
        Err(e) => {
            let json: serde_json::Value =
                serde_json::from_str(&e.to_server_error_json()).expect("error JSON parses");
            assert_eq!(json["status"], e.status());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut clock = [0u8; 8];
    for (c, d) in clock.iter_mut().zip(data) {
        *c = *d;
    }
    // Within ±2^49 ms (±17,000 years): exact as an f64, as real clocks are.
    let now_ms = i64::from_le_bytes(clock) >> 14;
    let rest = data.get(8..).unwrap_or_default();

    if let Ok(initial) = oauthbearer::parse_client_initial(rest) {
        assert!(initial.token.len() <= oauthbearer::MAX_TOKEN_LEN);
        let again = oauthbearer::client_initial(&initial.token, initial.authzid.as_deref());
        let back = oauthbearer::parse_client_initial(&again).expect("a rebuilt message parses");
        assert_eq!((back.token, back.authzid), (initial.token, initial.authzid));
    }

    let v = validator();
    check_validation(&v, &String::from_utf8_lossy(rest), now_ms);
    let as_claims = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(rest)
    );
    check_validation(&v, &as_claims, now_ms);

    let config = ExchangeConfig {
        oauthbearer: Some(v),
        ..Default::default()
    };
    let mut x = SaslExchange::new(SaslMechanism::OAuthBearer, &config);
    let mut continued = 0;
    let mut ended = false;
    for token in rest.split(|&b| b == 0).take(4) {
        let step = x.step(token, &NoUsers, now_ms, "n");
        if ended {
            assert!(matches!(step, SaslStep::Failed { .. }));
            continue;
        }
        match step {
            SaslStep::Continue(json) => {
                continued += 1;
                assert_eq!(continued, 1, "one error JSON at most");
                assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
            }
            SaslStep::Done {
                response,
                principal,
                expires_at_ms,
            } => {
                assert_eq!(continued, 0);
                assert!(response.is_empty());
                assert_eq!(principal.principal_type, "User");
                assert!(expires_at_ms.is_some());
                ended = true;
            }
            SaslStep::Failed { .. } => ended = true,
        }
        assert_eq!(x.is_finished(), ended);
    }
});
