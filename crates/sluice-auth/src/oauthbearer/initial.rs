//! The OAUTHBEARER client initial response (RFC 7628 §3.1) and its parser.
//!
//! ```text
//! client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
//! gs2-header  = gs2-cb-flag "," [ "a=" saslname ] ","
//! kvpair      = key "=" value kvsep        ; kvsep = %x01
//! key         = 1*(ALPHA)
//! value       = *(VCHAR / SP / HTAB / CR / LF)
//! ```
//!
//! One pair must be `auth=Bearer <token>`; the others are extensions (KIP-342), which Kafka's
//! unsecured validator accepts whatever they are. Like Kafka, extension values must be non-empty
//! and keys unique here; unlike Kafka, the authzid is unescaped (`=2C`, `=3D`) and may be any
//! UTF-8, and the GS2 flag may be `y` as well as `n`.

use super::jwt::MAX_TOKEN_LEN;
use crate::error::AuthError;
use crate::saslname;

/// The longest client initial response accepted, in bytes: a token of at most
/// [`MAX_TOKEN_LEN`] plus room for the header and extensions.
pub const MAX_MESSAGE_LEN: usize = 32 * 1024;

const KVSEP: char = '\x01';

/// A parsed client initial response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInitial {
    /// The GS2 authzid (`a=`), decoded; it must name the token's principal.
    pub authzid: Option<String>,
    /// The bearer token (an RFC 6750 `b64token`, at most [`MAX_TOKEN_LEN`] bytes).
    pub token: String,
    /// The other key/value pairs, in message order (keys unique, never `auth`).
    pub extensions: Vec<(String, String)>,
}

/// Parses a client initial response.
pub fn parse_client_initial(msg: &[u8]) -> Result<ClientInitial, AuthError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(AuthError::TooLong {
            max: MAX_MESSAGE_LEN,
        });
    }
    let text = std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("not UTF-8"))?;
    let (authzid, rest) = saslname::split_gs2_header(text)?;

    // rest = kvsep *(kvpair kvsep) kvsep
    let pairs = rest
        .strip_prefix(KVSEP)
        .and_then(|r| r.strip_suffix(KVSEP))
        .ok_or(AuthError::Malformed("key/value pairs not framed by 0x01"))?;
    let mut token = None;
    let mut extensions: Vec<(String, String)> = Vec::new();
    if !pairs.is_empty() {
        let pairs = pairs.strip_suffix(KVSEP).ok_or(AuthError::Malformed(
            "key/value pair not terminated by 0x01",
        ))?;
        for pair in pairs.split(KVSEP) {
            let (key, value) = pair
                .split_once('=')
                .ok_or(AuthError::Malformed("key/value pair without '='"))?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(AuthError::Malformed("key is not letters"));
            }
            if value.is_empty() || !value.bytes().all(is_value_byte) {
                return Err(AuthError::Malformed(
                    "value is empty or has a forbidden byte",
                ));
            }
            if key == "auth" {
                if token.is_some() {
                    return Err(AuthError::Malformed("auth given twice"));
                }
                token = Some(bearer_token(value)?);
            } else if extensions.iter().any(|(k, _)| k == key) {
                return Err(AuthError::Malformed("extension given twice"));
            } else {
                extensions.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    let token = token.ok_or(AuthError::Malformed("no auth=Bearer <token>"))?;
    Ok(ClientInitial {
        authzid,
        token: token.to_owned(),
        extensions,
    })
}

/// `value = *(VCHAR / SP / HTAB / CR / LF)`.
fn is_value_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | b' ' | b'\t' | b'\r' | b'\n')
}

/// `auth-value = "Bearer" 1*SP b64token` (scheme case-insensitive, as Kafka matches it), with
/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750).
fn bearer_token(auth: &str) -> Result<&str, AuthError> {
    let (scheme, token) = auth
        .split_once(' ')
        .ok_or(AuthError::Malformed("auth is not 'Bearer <token>'"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("auth scheme is not Bearer"));
    }
    let token = token.trim_start_matches(' ');
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::TooLong { max: MAX_TOKEN_LEN });
    }
    let body = token.trim_end_matches('=');
    let is_b64token = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !is_b64token {
        return Err(AuthError::Malformed("token is not a b64token"));
    }
    Ok(token)
}

/// The client initial response for `token` (an RFC 6750 `b64token`, such as a JWT) and an
/// optional authzid, as Kafka's client sends it: `n,[a=authzid],\x01auth=Bearer <token>\x01\x01`.
pub fn client_initial(token: &str, authzid: Option<&str>) -> Vec<u8> {
    let authz = authzid
        .map(|a| format!("a={}", saslname::encode(a)))
        .unwrap_or_default();
    format!("n,{authz},{KVSEP}auth=Bearer {token}{KVSEP}{KVSEP}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = client_initial("eyJ.eyJ.", None);
        assert_eq!(msg, b"n,,\x01auth=Bearer eyJ.eyJ.\x01\x01");
        let p = parse_client_initial(&msg).unwrap();
        assert_eq!(p.authzid, None);
        assert_eq!(p.token, "eyJ.eyJ.");
        assert!(p.extensions.is_empty());

        let msg = client_initial("t", Some("a,b"));
        assert_eq!(msg, b"n,a=a=2Cb,\x01auth=Bearer t\x01\x01");
        assert_eq!(
            parse_client_initial(&msg).unwrap().authzid.as_deref(),
            Some("a,b")
        );
    }

    #[test]
    fn extensions_and_lenient_forms() {
        let p = parse_client_initial(
            b"y,,\x01host=kafka.example\x01auth=bearer   abc-_.~+/==\x01port=9092\x01x=a b\tc\x01\x01",
        )
        .unwrap();
        assert_eq!(p.token, "abc-_.~+/==");
        assert_eq!(
            p.extensions,
            [
                ("host".to_owned(), "kafka.example".to_owned()),
                ("port".to_owned(), "9092".to_owned()),
                ("x".to_owned(), "a b\tc".to_owned()),
            ]
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse_client_initial(b"p=tls-unique,,\x01auth=Bearer t\x01\x01"),
            Err(AuthError::Unsupported(_))
        ));
        for bad in [
            &b""[..],
            b"\x01",
            b"n,,",
            b"n,,\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Bearer t",
            b"n,,\x01auth=Bearer t\x01\x01\x01",
            b"n,,\x01\x01auth=Bearer t\x01\x01",
            b"n,\x01auth=Bearer t\x01\x01",
            b"x,,\x01auth=Bearer t\x01\x01",
            b"n,u,\x01auth=Bearer t\x01\x01",
            b"n,a=,\x01auth=Bearer t\x01\x01",
            b"n,a=b=41,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer t \x01\x01",
            b"n,,\x01auth=Bearer a=b\x01\x01",
            b"n,,\x01auth=Bearer ===\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=1\x01k=2\x01\x01",
            b"n,,\x01auth=Bearer t\x01k1=v\x01\x01",
            b"n,,\x01auth=Bearer t\x01=v\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=\x7f\x01\x01",
            b"n,,\x01auth=Bearer t\x01k\x01\x01",
            b"n,,\x01host=h\x01\x01",
            b"n,,\x01auth=Bearer \xff\x01\x01",
        ] {
            assert!(
                parse_client_initial(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounds() {
        let token = "a".repeat(MAX_TOKEN_LEN);
        assert!(parse_client_initial(&client_initial(&token, None)).is_ok());
        let token = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            parse_client_initial(&client_initial(&token, None)).unwrap_err(),
            AuthError::TooLong { max: MAX_TOKEN_LEN }
        );
        let huge = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert_eq!(
            parse_client_initial(&huge).unwrap_err(),
            AuthError::TooLong {
                max: MAX_MESSAGE_LEN
            }
        );
    }
}
