//! Signed OAUTHBEARER tokens checked against a JSON Web Key Set (Kafka's
//! `OAuthBearerValidatorCallbackHandler` with `sasl.oauthbearer.jwks.endpoint.url`, KIP-768):
//! the signature with the key the token's `kid` names, the issuer and audience when configured,
//! then the same claim checks as unsecured tokens (principal, `exp`, `iat`, skew, scope).
//!
//! Pure: the key set is handed in (the broker reads it from a file or an identity provider's
//! URL and replaces it when it changes); the time is `now_ms`. Signatures are verified by
//! `jsonwebtoken` (RS256/384/512, PS256/384/512, ES256/384, EdDSA); its own clock checks are
//! switched off so that the caller's `now_ms` is the only clock.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwt::{TokenError, UnsecuredJwtValidator, ValidToken, MAX_TOKEN_LEN};

/// Largest key set accepted (bytes of JSON): an identity provider publishes a handful of keys.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The signed-token validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksValidator {
    /// The keys tokens may be signed with.
    pub keys: JwkSet,
    /// `sasl.oauthbearer.expected.issuer`: the `iss` every token must carry, if set.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.expected.audience`: tokens must name one of these in `aud`, if set.
    pub expected_audience: Vec<String>,
    /// The claim rules shared with unsecured tokens (principal and scope claims, required
    /// scope, clock skew).
    pub claims: UnsecuredJwtValidator,
}

impl JwksValidator {
    /// Parses a key set (`{"keys":[...]}`); keys it cannot use are an error, so a typo shows at
    /// start rather than as refused logins.
    pub fn parse_keys(json: &[u8]) -> Result<JwkSet, String> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(format!("key set larger than {MAX_JWKS_BYTES} bytes"));
        }
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
        if set.keys.is_empty() {
            return Err("the key set holds no key".into());
        }
        for k in &set.keys {
            DecodingKey::from_jwk(k).map_err(|e| {
                format!(
                    "key {}: {e}",
                    k.common.key_id.as_deref().unwrap_or("without a kid")
                )
            })?;
        }
        Ok(set)
    }

    /// Validates `token` at `now_ms`.
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { max: MAX_TOKEN_LEN });
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Malformed("not a signed JWS"))?;
        // The key the header names; a token without a kid may use the only key there is.
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid),
            None if self.keys.keys.len() == 1 => self.keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| {
            TokenError::Rejected("no key in the key set matches the token's kid".into())
        })?;
        // A key that names its algorithm allows only that one (no algorithm confusion).
        if let Some(alg) = jwk.common.key_algorithm {
            let allowed = format!("{alg:?}").parse::<Algorithm>().ok();
            if allowed.is_some_and(|a| a != header.alg) {
                return Err(TokenError::Rejected(format!(
                    "the token's alg {:?} is not its key's {alg:?}",
                    header.alg
                )));
            }
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| TokenError::Rejected(format!("unusable key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        // The caller's clock only: exp and nbf are checked with `now_ms` below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        if let Some(iss) = &self.expected_issuer {
            validation.set_issuer(&[iss]);
        }
        if self.expected_audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.expected_audience);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| TokenError::Rejected(e.to_string()))?;
        if let Some(nbf) = data.claims.get("nbf").and_then(Value::as_f64) {
            let skew = self.claims.allowable_clock_skew_ms.max(0);
            if 1000.0 * nbf > now_ms.saturating_add(skew) as f64 {
                return Err(TokenError::Rejected(
                    "the token is not valid yet (nbf)".into(),
                ));
            }
        }
        self.claims.check_claims(&data.claims, now_ms)
    }
}

/// Which tokens OAUTHBEARER accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenValidator {
    /// Kafka's unsecured validator (`alg: none`; development only).
    Unsecured(UnsecuredJwtValidator),
    /// Signed tokens checked against a key set.
    Jwks(Box<JwksValidator>),
}

impl TokenValidator {
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenError> {
        match self {
            TokenValidator::Unsecured(v) => v.validate(token, now_ms),
            TokenValidator::Jwks(v) => v.validate(token, now_ms),
        }
    }
}

impl From<UnsecuredJwtValidator> for TokenValidator {
    fn from(v: UnsecuredJwtValidator) -> Self {
        TokenValidator::Unsecured(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;
    const SECRET: &[u8] = b"a test key of thirty-two bytes!!";

    fn keys(kid: &str) -> JwkSet {
        let jwks = json!({"keys": [{"kty": "oct", "kid": kid, "alg": "HS256",
                                    "k": URL_SAFE_NO_PAD.encode(SECRET)}]});
        JwksValidator::parse_keys(jwks.to_string().as_bytes()).unwrap()
    }

    fn validator() -> JwksValidator {
        JwksValidator {
            keys: keys("k1"),
            expected_issuer: Some("https://idp.example".into()),
            expected_audience: vec!["sluice".into()],
            claims: UnsecuredJwtValidator {
                required_scope: vec!["kafka".into()],
                ..UnsecuredJwtValidator::default()
            },
        }
    }

    fn token(kid: Option<&str>, claims: Value, secret: &[u8]) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
    }

    fn claims() -> Value {
        json!({"sub": "alice", "iss": "https://idp.example", "aud": "sluice",
               "iat": NOW / 1000, "exp": NOW / 1000 + 60, "scope": "kafka other"})
    }

    #[test]
    fn a_signed_token_with_the_right_key_issuer_audience_and_scope_passes() {
        let v = validator();
        let t = v
            .validate(&token(Some("k1"), claims(), SECRET), NOW)
            .unwrap();
        assert_eq!(t.principal, "alice");
        assert_eq!(t.lifetime_ms, NOW + 60_000);
        // A token without a kid may use the only key.
        assert!(v.validate(&token(None, claims(), SECRET), NOW).is_ok());
    }

    #[test]
    fn everything_else_is_refused() {
        let v = validator();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            token(Some("k1"), c, SECRET)
        };
        let refused = [
            (
                "another key",
                token(Some("k1"), claims(), b"another key of thirty-two bytes!"),
            ),
            ("unknown kid", token(Some("k2"), claims(), SECRET)),
            (
                "issuer",
                with(&|c| c["iss"] = json!("https://evil.example")),
            ),
            ("audience", with(&|c| c["aud"] = json!("other"))),
            ("expired", with(&|c| c["exp"] = json!(NOW / 1000 - 1))),
            (
                "not yet valid",
                with(&|c| c["nbf"] = json!(NOW / 1000 + 30)),
            ),
            (
                "no sub",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
            ("no scope", with(&|c| c["scope"] = json!("other"))),
            (
                "unsecured",
                crate::oauthbearer::unsecured_token("alice", &["kafka"], NOW, 60_000),
            ),
            ("garbage", "a.b.c".to_string()),
        ];
        for (what, t) in refused {
            assert!(v.validate(&t, NOW).is_err(), "{what} should be refused");
        }
        // A key that names its algorithm refuses tokens signed with another one.
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some("k1".into());
        let t = encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert!(matches!(v.validate(&t, NOW), Err(TokenError::Rejected(_))));
    }

    #[test]
    fn bad_key_sets_are_refused_at_load() {
        for bad in [
            &b"{}"[..],
            b"{\"keys\":[]}",
            b"not json",
            b"{\"keys\":[{\"kty\":\"RSA\"}]}",
        ] {
            assert!(
                JwksValidator::parse_keys(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
