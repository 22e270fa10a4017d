//! RFC 5802's `saslname` escaping, shared by SCRAM user names and the GS2 `a=` authzid (which
//! OAUTHBEARER uses too).
//!
//! A name travels inside comma-separated `key=value` attributes, so `,` is sent as `=2C` and `=`
//! as `=3D`; any other `=` sequence is an error (RFC 5802 §5.1: the server MUST fail). No SASLprep
//! is applied: like Kafka, names are compared as the UTF-8 bytes the client sent.

use crate::error::AuthError;

/// Splits a GS2 header (`gs2-cbind-flag "," [authzid] ","`, RFC 5801) off the front of a SCRAM
/// client-first or an OAUTHBEARER initial response: the authzid it names (decoded) and what
/// follows it. Channel binding (`p=`) is refused: neither mechanism supports it here.
pub(crate) fn split_gs2_header(text: &str) -> Result<(Option<String>, &str), AuthError> {
    let (flag, rest) = text
        .split_once(',')
        .ok_or(AuthError::Malformed("no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(AuthError::Unsupported("channel binding (GS2 flag p=)"))
        }
        _ => return Err(AuthError::Malformed("GS2 flag is not n, y or p=")),
    }
    let (authz, rest) = rest
        .split_once(',')
        .ok_or(AuthError::Malformed("GS2 header not terminated"))?;
    let authzid = if authz.is_empty() {
        None
    } else {
        let escaped = authz
            .strip_prefix("a=")
            .ok_or(AuthError::Malformed("GS2 authzid is not a="))?;
        Some(decode(escaped)?)
    };
    Ok((authzid, rest))
}

/// Decodes a non-empty `saslname`: `=2C` → `,`, `=3D` → `=`. Refuses an empty name, a bare `,`,
/// NUL, and any other `=` escape.
pub(crate) fn decode(escaped: &str) -> Result<String, AuthError> {
    if escaped.is_empty() {
        return Err(AuthError::Malformed("empty name"));
    }
    if escaped.contains(['\0', ',']) {
        return Err(AuthError::Malformed("name holds NUL or an unescaped ','"));
    }
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some((head, tail)) = rest.split_once('=') {
        out.push_str(head);
        if let Some(after) = tail.strip_prefix("2C") {
            out.push(',');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("3D") {
            out.push('=');
            rest = after;
        } else {
            return Err(AuthError::Malformed(
                "name has an '=' escape other than =2C or =3D",
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a name for a `n=` or `a=` attribute.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for name in ["user", "a,b", "a=b", "=,=,", "ünïcødé", "=2C"] {
            assert_eq!(decode(&encode(name)).unwrap(), name);
        }
        assert_eq!(encode("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(decode("a=2Cb").unwrap(), "a,b");
        assert_eq!(decode("a=3D=3D").unwrap(), "a==");
    }

    #[test]
    fn bad_escapes_are_refused() {
        for bad in [
            "", "a=", "a=2", "a=2c", "a=3d", "a=41", "=", "a,b", "a\0b", "==2C",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
