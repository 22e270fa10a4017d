//! Kafka's unsecured-JWT validation (`OAuthBearerUnsecuredValidatorCallbackHandler` and
//! `OAuthBearerUnsecuredJws`), and unsecured tokens for tests and tools.
//!
//! A token is `base64url(header) "." base64url(claims) "."`: no padding, header `{"alg":"none"}`,
//! empty signature. The checks, in Kafka's order and with its comparisons (in floating-point
//! seconds, as Kafka does): the principal claim must be a non-blank string; `iat`, if present,
//! must be a number not after `now + skew`; `exp` must be a number with `now - skew < exp`;
//! `exp > iat`; every required scope must be in the token's scope.
//!
//! One deliberate difference: a scope claim that is a string is split at spaces (RFC 8693's
//! `scope` claim, what identity providers issue), where Kafka takes the whole string as one scope
//! value. An array of strings is taken element by element, as Kafka does.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The longest token accepted, in bytes (checked before decoding, so the JSON parser never sees
/// more than this; serde_json also bounds nesting at 128 levels).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The settings of Kafka's unsecured validator (its `unsecuredValidator*` JAAS options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsecuredJwtValidator {
    /// Scope values every token must hold (`unsecuredValidatorRequiredScope`; default none).
    /// Blank entries are ignored.
    pub required_scope: Vec<String>,
    /// Tolerated clock difference in milliseconds (`unsecuredValidatorAllowableClockSkewMs`;
    /// Kafka's default is 0). A negative value counts as 0 (Kafka refuses it as a config error).
    pub allowable_clock_skew_ms: i64,
    /// The claim holding the principal name (`unsecuredValidatorPrincipalClaimName`; `sub`).
    pub principal_claim: String,
    /// The claim holding the scope (`unsecuredValidatorScopeClaimName`; `scope`).
    pub scope_claim: String,
}

impl Default for UnsecuredJwtValidator {
    fn default() -> Self {
        UnsecuredJwtValidator {
            required_scope: Vec::new(),
            allowable_clock_skew_ms: 0,
            principal_claim: "sub".to_owned(),
            scope_claim: "scope".to_owned(),
        }
    }
}

/// A token that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    /// The principal claim: the connection authenticates as `User:<principal>`.
    pub principal: String,
    /// When the token expires, in epoch milliseconds (`exp` × 1000, rounded): the broker ends or
    /// re-authenticates the session by then (KIP-368).
    pub lifetime_ms: i64,
    /// `iat` in epoch milliseconds, if the token has one.
    pub issued_at_ms: Option<i64>,
    /// The token's scope values, deduplicated, in token order.
    pub scope: Vec<String>,
}

/// Why a token was refused. The `Display` text is for the broker's log; the client gets
/// [`TokenError::to_server_error_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong {
        /// The bound in bytes.
        max: usize,
    },
    /// Not an unsecured JWS: structure, base64url, JSON, `alg`, signature, or a claim of the
    /// wrong type; the text says which.
    Malformed(&'static str),
    /// A required claim (the principal claim or `exp`) is absent.
    MissingClaim(String),
    /// `now - skew` is at or after `exp`.
    Expired {
        /// `exp` in epoch milliseconds.
        exp_ms: i64,
        /// The time of the check.
        now_ms: i64,
    },
    /// `iat` is after `now + skew`.
    IssuedInFuture {
        /// `iat` in epoch milliseconds.
        iat_ms: i64,
        /// The time of the check.
        now_ms: i64,
    },
    /// `exp` is not after `iat`.
    ExpiresBeforeIssued,
    /// A signed token (JWKS validation) that does not verify: an unknown key, an algorithm the
    /// key does not allow, a bad signature, or the wrong issuer or audience; the text says
    /// which.
    Rejected(String),
    /// A required scope value is not in the token.
    MissingScope {
        /// The first required value missing.
        missing: String,
        /// Every required value (the error JSON names them all, as RFC 6750's `scope` does).
        required: Vec<String>,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong { max } => write!(f, "token longer than {max} bytes"),
            TokenError::Malformed(what) => write!(f, "malformed token: {what}"),
            TokenError::MissingClaim(claim) => write!(f, "required claim missing: {claim}"),
            TokenError::Expired { exp_ms, now_ms } => {
                write!(f, "token expired at {exp_ms} ms (now {now_ms} ms)")
            }
            TokenError::IssuedInFuture { iat_ms, now_ms } => {
                write!(
                    f,
                    "token issued in the future, at {iat_ms} ms (now {now_ms} ms)"
                )
            }
            TokenError::ExpiresBeforeIssued => f.write_str("token's exp is not after its iat"),
            TokenError::Rejected(why) => write!(f, "token refused: {why}"),
            TokenError::MissingScope { missing, .. } => {
                write!(f, "token lacks the required scope {missing:?}")
            }
        }
    }
}

impl std::error::Error for TokenError {}

impl TokenError {
    /// The RFC 6750 status Kafka reports: `insufficient_scope` for a missing scope,
    /// `invalid_token` for everything else.
    pub fn status(&self) -> &'static str {
        match self {
            TokenError::MissingScope { .. } => "insufficient_scope",
            _ => "invalid_token",
        }
    }

    /// The JSON the server sends the client instead of failing at once (RFC 7628 §3.2.2), in
    /// Kafka's exact format (`OAuthBearerSaslServer.jsonErrorResponse`):
    /// `{"status":"invalid_token"}`, or `{"status":"insufficient_scope", "scope":"a b"}` with the
    /// required scope space-separated.
    pub fn to_server_error_json(&self) -> String {
        match self {
            TokenError::MissingScope { required, .. } => format!(
                "{{\"status\":\"{}\", \"scope\":{}}}",
                self.status(),
                json_string(&required.join(" "))
            ),
            _ => format!("{{\"status\":\"{}\"}}", self.status()),
        }
    }
}

/// A JSON string literal for `s` (quotes and escapes).
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

impl UnsecuredJwtValidator {
    /// Validates `token` at `now_ms` (epoch milliseconds).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { max: MAX_TOKEN_LEN });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let header = json_object(header)?;
        let claims = json_object(claims)?;
        if header.get("alg").and_then(Value::as_str) != Some("none") {
            return Err(TokenError::Malformed("alg is not \"none\""));
        }
        if !signature.is_empty() {
            return Err(TokenError::Malformed("an unsecured JWS has no signature"));
        }
        self.check_claims(&claims, now_ms)
    }

    /// The checks of the claims every token gets, signed or not: principal, `exp` (required),
    /// `iat`, the clock skew and the required scope (Kafka's `OAuthBearerValidationUtils`).
    pub(crate) fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<ValidToken, TokenError> {
        let claims = claims.clone();
        let scope = self.scope(&claims)?;
        let exp = number_claim(&claims, "exp")?
            .ok_or_else(|| TokenError::MissingClaim("exp".to_owned()))?;
        let principal = match claims.get(&self.principal_claim) {
            None => return Err(TokenError::MissingClaim(self.principal_claim.clone())),
            Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
            Some(Value::String(_)) => return Err(TokenError::Malformed("blank principal")),
            Some(_) => return Err(TokenError::Malformed("principal claim is not a string")),
        };
        let iat = number_claim(&claims, "iat")?;

        let skew = self.allowable_clock_skew_ms.max(0);
        if let Some(iat) = iat {
            if 1000.0 * iat > now_ms.saturating_add(skew) as f64 {
                return Err(TokenError::IssuedInFuture {
                    iat_ms: seconds_to_ms(iat),
                    now_ms,
                });
            }
        }
        if now_ms.saturating_sub(skew) as f64 >= 1000.0 * exp {
            return Err(TokenError::Expired {
                exp_ms: seconds_to_ms(exp),
                now_ms,
            });
        }
        if iat.is_some_and(|iat| exp <= iat) {
            return Err(TokenError::ExpiresBeforeIssued);
        }
        let required = self.required_scope.iter().filter(|r| !r.trim().is_empty());
        for r in required {
            if !scope.contains(r) {
                return Err(TokenError::MissingScope {
                    missing: r.clone(),
                    required: self
                        .required_scope
                        .iter()
                        .filter(|r| !r.trim().is_empty())
                        .cloned()
                        .collect(),
                });
            }
        }
        Ok(ValidToken {
            principal,
            lifetime_ms: seconds_to_ms(exp),
            issued_at_ms: iat.map(seconds_to_ms),
            scope,
        })
    }

    /// The scope claim: absent → none; a string → its space-separated values; an array → its
    /// elements (strings, trimmed, blanks dropped). Deduplicated in order.
    fn scope(&self, claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
        let mut values: Vec<String> = Vec::new();
        let mut add = |v: &str| {
            if !v.is_empty() && !values.iter().any(|x| x == v) {
                values.push(v.to_owned());
            }
        };
        match claims.get(&self.scope_claim) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => s.split_ascii_whitespace().for_each(&mut add),
            Some(Value::Array(items)) => {
                for item in items {
                    let s = item
                        .as_str()
                        .ok_or(TokenError::Malformed("scope array holds a non-string"))?;
                    add(s.trim());
                }
            }
            Some(_) => {
                return Err(TokenError::Malformed(
                    "scope claim is neither a string nor an array",
                ))
            }
        }
        Ok(values)
    }
}

/// A base64url (unpadded) JSON object.
pub(crate) fn json_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("part is not unpadded base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Malformed("part is not a JSON object")),
        Err(_) => Err(TokenError::Malformed("part is not JSON")),
    }
}

/// A numeric claim in seconds (Kafka: any JSON number, fractions allowed), if present.
fn number_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite())
            .map(Some)
            .ok_or(TokenError::Malformed("time claim is not a number")),
    }
}

/// Kafka's `Math.round(seconds * 1000)`; out-of-range values saturate.
fn seconds_to_ms(seconds: f64) -> i64 {
    // `as` from a float saturates (and maps NaN to 0): never undefined, never a panic.
    (seconds * 1000.0).round() as i64
}

/// Seconds for a claim: an integer when `ms` is whole seconds, else a fraction.
fn seconds(ms: i64) -> Value {
    match (ms.checked_rem(1000), ms.checked_div(1000)) {
        (Some(0), Some(s)) => Value::from(s),
        _ => serde_json::Number::from_f64(ms as f64 / 1000.0).map_or(Value::Null, Value::Number),
    }
}

/// An unsecured JWT as Kafka's `OAuthBearerUnsecuredLoginCallbackHandler` makes them: header
/// `{"alg":"none"}`, claims `sub`, `iat`, `exp` (seconds, `exp = iat + lifetime`) and, when
/// `scope` is not empty, `scope` as an array. For tests and development tools: anyone can make
/// one.
pub fn unsecured_token(
    principal: &str,
    scope: &[&str],
    issued_at_ms: i64,
    lifetime_ms: i64,
) -> String {
    let mut claims = Map::new();
    claims.insert("sub".to_owned(), Value::from(principal));
    claims.insert("iat".to_owned(), seconds(issued_at_ms));
    claims.insert(
        "exp".to_owned(),
        seconds(issued_at_ms.saturating_add(lifetime_ms)),
    );
    if !scope.is_empty() {
        claims.insert("scope".to_owned(), Value::from(scope.to_vec()));
    }
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn token(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    fn claims(c: &str) -> String {
        token(r#"{"alg":"none"}"#, c)
    }

    #[test]
    fn unsecured_token_validates() {
        let t = unsecured_token("alice", &["read", "write"], NOW, 3_600_000);
        assert!(!t.contains('='));
        let v = UnsecuredJwtValidator::default().validate(&t, NOW).unwrap();
        assert_eq!(
            v,
            ValidToken {
                principal: "alice".into(),
                lifetime_ms: NOW + 3_600_000,
                issued_at_ms: Some(NOW),
                scope: vec!["read".into(), "write".into()],
            }
        );
        // Fractional seconds survive the round trip.
        let t = unsecured_token("bob", &[], NOW + 123, 1_456);
        let v = UnsecuredJwtValidator::default()
            .validate(&t, NOW + 123)
            .unwrap();
        assert_eq!(v.issued_at_ms, Some(NOW + 123));
        assert_eq!(v.lifetime_ms, NOW + 1_579);
        assert!(v.scope.is_empty());
    }

    #[test]
    fn expiry_follows_kafka() {
        let v = UnsecuredJwtValidator::default();
        let t = claims(r#"{"sub":"a","exp":1700000000}"#);
        // Expired when now - skew >= exp: valid one millisecond before, expired at exp.
        assert!(v.validate(&t, NOW - 1).is_ok());
        assert_eq!(
            v.validate(&t, NOW).unwrap_err(),
            TokenError::Expired {
                exp_ms: NOW,
                now_ms: NOW
            }
        );
        let skewed = UnsecuredJwtValidator {
            allowable_clock_skew_ms: 500,
            ..Default::default()
        };
        assert!(skewed.validate(&t, NOW + 499).is_ok());
        assert!(skewed.validate(&t, NOW + 500).is_err());
        let negative = UnsecuredJwtValidator {
            allowable_clock_skew_ms: -1000,
            ..Default::default()
        };
        assert!(negative.validate(&t, NOW).is_err());
        // Fractional exp, in seconds.
        let t = claims(r#"{"sub":"a","exp":1700000000.5}"#);
        assert_eq!(v.validate(&t, NOW + 499).unwrap().lifetime_ms, NOW + 500);
        assert!(v.validate(&t, NOW + 500).is_err());
    }

    #[test]
    fn issued_at_rules() {
        let v = UnsecuredJwtValidator::default();
        let t = claims(r#"{"sub":"a","iat":1700000001,"exp":1700000100}"#);
        assert!(v.validate(&t, NOW + 1000).is_ok());
        assert_eq!(
            v.validate(&t, NOW + 999).unwrap_err(),
            TokenError::IssuedInFuture {
                iat_ms: NOW + 1000,
                now_ms: NOW + 999
            }
        );
        let skewed = UnsecuredJwtValidator {
            allowable_clock_skew_ms: 1,
            ..Default::default()
        };
        assert!(skewed.validate(&t, NOW + 999).is_ok());
        let t = claims(r#"{"sub":"a","iat":1700000001,"exp":1700000001}"#);
        assert_eq!(
            skewed.validate(&t, NOW + 999).unwrap_err(),
            TokenError::ExpiresBeforeIssued
        );
    }

    #[test]
    fn scope_forms() {
        let v = UnsecuredJwtValidator {
            required_scope: vec!["b".into(), " ".into()],
            ..Default::default()
        };
        for ok in [
            r#"{"sub":"a","exp":2e9,"scope":"a b  c"}"#,
            r#"{"sub":"a","exp":2e9,"scope":["a"," b ",""]}"#,
        ] {
            assert!(v.validate(&claims(ok), NOW).is_ok(), "{ok}");
        }
        let got = UnsecuredJwtValidator::default()
            .validate(&claims(r#"{"sub":"a","exp":2e9,"scope":"x y x"}"#), NOW)
            .unwrap();
        assert_eq!(got.scope, ["x", "y"]);
        let missing = v
            .validate(&claims(r#"{"sub":"a","exp":2e9,"scope":"a c"}"#), NOW)
            .unwrap_err();
        assert_eq!(
            missing,
            TokenError::MissingScope {
                missing: "b".into(),
                required: vec!["b".into()]
            }
        );
        assert_eq!(
            missing.to_server_error_json(),
            r#"{"status":"insufficient_scope", "scope":"b"}"#
        );
        assert!(v
            .validate(&claims(r#"{"sub":"a","exp":2e9}"#), NOW)
            .is_err());
        for bad in [
            r#"{"sub":"a","exp":2e9,"scope":1}"#,
            r#"{"sub":"a","exp":2e9,"scope":{"b":1}}"#,
            r#"{"sub":"a","exp":2e9,"scope":["b",1]}"#,
        ] {
            assert!(matches!(
                v.validate(&claims(bad), NOW),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn custom_claim_names() {
        let v = UnsecuredJwtValidator {
            principal_claim: "client_id".into(),
            scope_claim: "scp".into(),
            required_scope: vec!["kafka".into()],
            ..Default::default()
        };
        let ok = v
            .validate(
                &claims(r#"{"client_id":"svc","exp":2e9,"scp":["kafka"],"sub":"x"}"#),
                NOW,
            )
            .unwrap();
        assert_eq!(ok.principal, "svc");
        assert_eq!(
            v.validate(&claims(r#"{"sub":"svc","exp":2e9,"scp":"kafka"}"#), NOW),
            Err(TokenError::MissingClaim("client_id".into()))
        );
    }

    #[test]
    fn malformed_tokens() {
        let v = UnsecuredJwtValidator::default();
        let good = r#"{"sub":"a","exp":2e9}"#;
        assert!(v.validate(&claims(good), NOW).is_ok());
        let body = URL_SAFE_NO_PAD.encode(good);
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            format!("{none}.{body}"),
            format!("{none}.{body}.sig"),
            format!("{none}.{body}.."),
            format!("{none}={body}."),
            format!("{none}.{body}=."),
            token(r#"{"alg":"HS256"}"#, good),
            token(r#"{"alg":null}"#, good),
            token(r#"{}"#, good),
            token(r#"[]"#, good),
            token(r#"{"alg":"none"}"#, "[]"),
            token(r#"{"alg":"none"}"#, "nope"),
            token(r#"{"alg":"none"}"#, ""),
            claims(r#"{"exp":2e9}"#),
            claims(r#"{"sub":"","exp":2e9}"#),
            claims(r#"{"sub":"  ","exp":2e9}"#),
            claims(r#"{"sub":1,"exp":2e9}"#),
            claims(r#"{"sub":"a"}"#),
            claims(r#"{"sub":"a","exp":"2e9"}"#),
            claims(r#"{"sub":"a","exp":2e9,"iat":"1"}"#),
            claims(r#"{"sub":"a","exp":2e9,"iat":null}"#),
        ];
        for t in &cases {
            let err = v.validate(t, NOW).unwrap_err();
            assert_eq!(err.to_server_error_json(), r#"{"status":"invalid_token"}"#);
        }
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(v.validate(&claims(&deep), NOW).is_err());
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            v.validate(&long, NOW),
            Err(TokenError::TooLong { max: MAX_TOKEN_LEN })
        );
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let v = UnsecuredJwtValidator {
            allowable_clock_skew_ms: i64::MAX,
            ..Default::default()
        };
        let t = claims(r#"{"sub":"a","exp":1e300,"iat":-1e300}"#);
        let ok = v.validate(&t, i64::MIN).unwrap();
        assert_eq!(ok.lifetime_ms, i64::MAX);
        assert_eq!(ok.issued_at_ms, Some(i64::MIN));
        assert!(v.validate(&t, i64::MAX).is_ok());
        let t = unsecured_token("a", &[], i64::MAX, i64::MAX);
        assert!(UnsecuredJwtValidator::default().validate(&t, 0).is_err());
    }
}
