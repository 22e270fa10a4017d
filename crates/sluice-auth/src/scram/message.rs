//! The four SCRAM messages' grammar (RFC 5802 §7): total parsers from bytes, one per message.
//!
//! Parsers return borrowed slices of the message where the exchange needs the exact bytes the
//! peer sent (the `AuthMessage` both sides sign is built from them, not from a re-encoding).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{MAX_ITERATIONS, MAX_MESSAGE_LEN, MAX_USERNAME_LEN, MIN_ITERATIONS};
use crate::error::AuthError;
use crate::saslname;

/// The client's first message.
#[derive(Debug)]
pub(crate) struct ClientFirst<'a> {
    /// `n,,` / `y,,` / `n,a=...,`: the exact GS2 header, which client-final's `c=` must echo.
    pub gs2_header: &'a str,
    /// The decoded `a=` authzid, if any.
    pub authzid: Option<String>,
    /// The decoded `n=` user name.
    pub username: String,
    /// The client nonce (`r=`).
    pub nonce: &'a str,
    /// `client-first-message-bare`: everything after the GS2 header.
    pub bare: &'a str,
}

/// The client's final message.
#[derive(Debug)]
pub(crate) struct ClientFinal<'a> {
    /// The decoded `c=` channel binding.
    pub channel_binding: Vec<u8>,
    /// The `r=` nonce.
    pub nonce: &'a str,
    /// The decoded `p=` proof.
    pub proof: Vec<u8>,
    /// `client-final-message-without-proof`, for the `AuthMessage`.
    pub without_proof: &'a str,
}

/// The server's first message.
#[derive(Debug)]
pub(crate) struct ServerFirst<'a> {
    /// The whole message as text, for the `AuthMessage`.
    pub text: &'a str,
    /// The combined nonce.
    pub nonce: &'a str,
    /// The decoded salt (non-empty).
    pub salt: Vec<u8>,
    /// The iteration count, already within `MIN_ITERATIONS..=MAX_ITERATIONS`.
    pub iterations: u32,
}

/// The server's final message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerFinal {
    /// `v=`: the decoded server signature.
    Verifier(Vec<u8>),
    /// `e=`: the server's error text.
    Error(String),
}

/// Bounds the message and reads it as UTF-8 (SCRAM messages are UTF-8 text).
fn text(msg: &[u8]) -> Result<&str, AuthError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(AuthError::TooLong {
            max: MAX_MESSAGE_LEN,
        });
    }
    std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("not UTF-8"))
}

/// `printable = %x21-2B / %x2D-7E` (printable ASCII except `,`), at least one character: what a
/// nonce may hold.
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7E).contains(&b) && b != b',')
}

/// An `attr-val` extension: `1*ALPHA "=" 1*value-char` (value: any UTF-8 but NUL and `,`, which
/// splitting on `,` already removed). Kafka's extension names (`tokenauth`) are longer than the
/// RFC's single letter, so any run of letters is a name.
fn extension(attr: &str) -> Result<(&str, &str), AuthError> {
    let (key, value) = attr
        .split_once('=')
        .ok_or(AuthError::Malformed("attribute without '='"))?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(AuthError::Malformed("attribute name is not letters"));
    }
    if value.is_empty() || value.contains('\0') {
        return Err(AuthError::Malformed(
            "attribute value is empty or holds NUL",
        ));
    }
    Ok((key, value))
}

/// The value of attribute `name` (`name=value`), or `err`.
fn attribute<'a>(
    attr: Option<&'a str>,
    name: &str,
    err: &'static str,
) -> Result<&'a str, AuthError> {
    attr.and_then(|a| a.strip_prefix(name))
        .and_then(|a| a.strip_prefix('='))
        .ok_or(AuthError::Malformed(err))
}

fn base64(value: &str, err: &'static str) -> Result<Vec<u8>, AuthError> {
    STANDARD
        .decode(value)
        .map_err(|_| AuthError::Malformed(err))
}

pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// `client-first-message = gs2-header client-first-message-bare`, with
/// `gs2-header = gs2-cbind-flag "," [authzid] ","` and
/// `client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]`.
pub(crate) fn parse_client_first(msg: &[u8]) -> Result<ClientFirst<'_>, AuthError> {
    let text = text(msg)?;
    let (authzid, bare) = saslname::split_gs2_header(text)?;
    // The header is what precedes `bare`: both pieces came from `text`, so this cannot fail.
    let gs2_header = text
        .strip_suffix(bare)
        .ok_or(AuthError::Malformed("GS2 header"))?;

    let mut attrs = bare.split(',');
    let first = attrs.next();
    if first.is_some_and(|a| a.starts_with("m=")) {
        return Err(AuthError::Unsupported("mandatory SCRAM extension (m=)"));
    }
    let username = saslname::decode(attribute(first, "n", "expected n=username")?)?;
    if username.len() > MAX_USERNAME_LEN {
        return Err(AuthError::Malformed("user name too long"));
    }
    let nonce = attribute(attrs.next(), "r", "expected r=nonce")?;
    if !is_valid_nonce(nonce) {
        return Err(AuthError::Malformed(
            "nonce is empty or not printable ASCII",
        ));
    }
    for attr in attrs {
        let (key, value) = extension(attr)?;
        // Kafka reads the flag with Java's Boolean.parseBoolean (case-insensitive "true").
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(AuthError::Unsupported("delegation tokens (tokenauth=true)"));
        }
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        username,
        nonce,
        bare,
    })
}

/// `client-final-message = channel-binding "," nonce ["," extensions] "," proof`.
pub(crate) fn parse_client_final(msg: &[u8]) -> Result<ClientFinal<'_>, AuthError> {
    let text = text(msg)?;
    let (without_proof, proof_attr) = text
        .rsplit_once(',')
        .ok_or(AuthError::Malformed("no proof"))?;
    let proof = attribute(Some(proof_attr), "p", "last attribute is not p=proof")?;
    let proof = base64(proof, "proof is not base64")?;
    let mut attrs = without_proof.split(',');
    let channel_binding = attribute(attrs.next(), "c", "expected c=channel-binding")?;
    let channel_binding = base64(channel_binding, "channel binding is not base64")?;
    let nonce = attribute(attrs.next(), "r", "expected r=nonce")?;
    for attr in attrs {
        extension(attr)?;
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

/// `server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
/// ["," extensions]`. The iteration count must be a plain decimal within bounds.
pub(crate) fn parse_server_first(msg: &[u8]) -> Result<ServerFirst<'_>, AuthError> {
    let text = text(msg)?;
    let mut attrs = text.split(',');
    let first = attrs.next();
    if first.is_some_and(|a| a.starts_with("m=")) {
        return Err(AuthError::Unsupported("mandatory SCRAM extension (m=)"));
    }
    let nonce = attribute(first, "r", "expected r=nonce")?;
    if !is_valid_nonce(nonce) {
        return Err(AuthError::Malformed(
            "nonce is empty or not printable ASCII",
        ));
    }
    let salt = base64(
        attribute(attrs.next(), "s", "expected s=salt")?,
        "salt is not base64",
    )?;
    if salt.is_empty() {
        return Err(AuthError::Malformed("empty salt"));
    }
    let count = attribute(attrs.next(), "i", "expected i=iteration-count")?;
    // posit-number = %x31-39 *DIGIT: no sign, no leading zero.
    if count.is_empty() || count.starts_with('0') || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Malformed(
            "iteration count is not a positive number",
        ));
    }
    let iterations = count
        .parse::<u32>()
        .ok()
        .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
        .ok_or(AuthError::InvalidServerMessage(
            "iteration count outside 4096..=16384",
        ))?;
    for attr in attrs {
        extension(attr)?;
    }
    Ok(ServerFirst {
        text,
        nonce,
        salt,
        iterations,
    })
}

/// `server-final-message = (server-error / verifier) ["," extensions]`.
pub(crate) fn parse_server_final(msg: &[u8]) -> Result<ServerFinal, AuthError> {
    let text = text(msg)?;
    let mut attrs = text.split(',');
    let first = attrs.next().unwrap_or_default();
    let result = if let Some(error) = first.strip_prefix("e=") {
        ServerFinal::Error(error.to_owned())
    } else if let Some(verifier) = first.strip_prefix("v=") {
        ServerFinal::Verifier(base64(verifier, "verifier is not base64")?)
    } else {
        return Err(AuthError::Malformed("expected v=verifier or e=error"));
    };
    for attr in attrs {
        extension(attr)?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_fields() {
        let m = parse_client_first(b"n,a=a=2Cb,n=a=2Cb,r=abc,ext=1,tokenauth=false").unwrap();
        assert_eq!(m.gs2_header, "n,a=a=2Cb,");
        assert_eq!(m.authzid.as_deref(), Some("a,b"));
        assert_eq!(m.username, "a,b");
        assert_eq!(m.nonce, "abc");
        assert_eq!(m.bare, "n=a=2Cb,r=abc,ext=1,tokenauth=false");
        let y = parse_client_first(b"y,,n=u,r=x").unwrap();
        assert_eq!(y.gs2_header, "y,,");
        assert_eq!(y.authzid, None);
    }

    #[test]
    fn client_first_refusals() {
        let cases: &[(&[u8], AuthError)] = &[
            (
                b"p=tls-unique,,n=u,r=x",
                AuthError::Unsupported("channel binding (GS2 flag p=)"),
            ),
            (
                b"n,,m=x,n=u,r=x",
                AuthError::Unsupported("mandatory SCRAM extension (m=)"),
            ),
            (
                b"n,,n=u,r=x,tokenauth=true",
                AuthError::Unsupported("delegation tokens (tokenauth=true)"),
            ),
            (
                b"n,,n=u,r=x,tokenauth=TRUE",
                AuthError::Unsupported("delegation tokens (tokenauth=true)"),
            ),
        ];
        for (msg, err) in cases {
            assert_eq!(parse_client_first(msg).unwrap_err(), *err);
        }
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=u,r=x",
            b"n,b=u,n=u,r=x",
            b"n,,n=,r=x",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,n=u,r=a b",
            b"n,,r=x,n=u",
            b"n,,n=u,r=x,",
            b"n,,n=u,r=x,=v",
            b"n,,n=u,r=x,k=",
            b"n,,n=u,r=x,k1=v",
            b"n,,n=a=41,r=x",
            b"n,,n=\xff,r=x",
        ] {
            assert!(
                matches!(parse_client_first(bad), Err(AuthError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_user = format!("n,,n={},r=x", "u".repeat(MAX_USERNAME_LEN + 1));
        assert!(parse_client_first(long_user.as_bytes()).is_err());
        let ok_user = format!("n,,n={},r=x", "u".repeat(MAX_USERNAME_LEN));
        assert!(parse_client_first(ok_user.as_bytes()).is_ok());
        let long = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert_eq!(
            parse_client_first(&long).unwrap_err(),
            AuthError::TooLong {
                max: MAX_MESSAGE_LEN
            }
        );
    }

    #[test]
    fn client_final_fields() {
        let m = parse_client_final(b"c=biws,r=abc,x=y,p=AAEC").unwrap();
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!(m.nonce, "abc");
        assert_eq!(m.proof, [0, 1, 2]);
        assert_eq!(m.without_proof, "c=biws,r=abc,x=y");
        for bad in [
            &b""[..],
            b"c=biws,r=abc",
            b"c=biws,r=abc,p=",
            b"c=biws,r=abc,p=!!",
            b"r=abc,c=biws,p=AAEC",
            b"c=bi,r=abc,p=AAEC",
            b"c=biws,p=AAEC",
            b"c=biws,r=abc,,p=AAEC",
        ] {
            let r = parse_client_final(bad);
            // `p=` with nothing decodes to an empty proof: refused later for its length.
            if bad == b"c=biws,r=abc,p=" {
                assert!(r.unwrap().proof.is_empty());
            } else {
                assert!(
                    matches!(r, Err(AuthError::Malformed(_))),
                    "{:?}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
    }

    #[test]
    fn server_first_fields() {
        let m = parse_server_first(b"r=abcdef,s=AAEC,i=4096,x=1").unwrap();
        assert_eq!(
            (m.nonce, &m.salt[..], m.iterations),
            ("abcdef", &[0u8, 1, 2][..], 4096)
        );
        for (bad, out_of_bounds) in [
            (&b"r=a,s=AAEC,i=4095"[..], true),
            (b"r=a,s=AAEC,i=16385", true),
            (b"r=a,s=AAEC,i=99999999999999999999", true),
            (b"r=a,s=AAEC,i=04096", false),
            (b"r=a,s=AAEC,i=+4096", false),
            (b"r=a,s=AAEC,i=", false),
            (b"r=a,s=,i=4096", false),
            (b"r=a,i=4096", false),
            (b"m=x,r=a,s=AAEC,i=4096", false),
            (b"s=AAEC,r=a,i=4096", false),
        ] {
            let r = parse_server_first(bad);
            assert_eq!(
                matches!(r, Err(AuthError::InvalidServerMessage(_))),
                out_of_bounds,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(r.is_err());
        }
    }

    #[test]
    fn server_final_forms() {
        assert_eq!(
            parse_server_final(b"v=AAEC").unwrap(),
            ServerFinal::Verifier(vec![0, 1, 2])
        );
        assert_eq!(
            parse_server_final(b"e=invalid-proof").unwrap(),
            ServerFinal::Error("invalid-proof".into())
        );
        for bad in [&b""[..], b"x=1", b"v=!", b"v=AAEC,", b"V=AAEC"] {
            assert!(parse_server_final(bad).is_err());
        }
    }
}
