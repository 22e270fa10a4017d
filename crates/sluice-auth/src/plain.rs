//! SASL PLAIN (RFC 4616) with Kafka's `PlainSaslServer` rules.
//!
//! One message, `[authzid] NUL authcid NUL passwd`. Kafka requires a non-empty user name and
//! password, and an authzid, if given, equal to the user name (no impersonation); [`parse`]
//! checks all of that, so a parsed message only needs its password verified (the broker does it
//! against the user's SCRAM credential, [`crate::scram::ScramCredential::verify_password`]).

use std::fmt;

use crate::error::AuthError;
use crate::scram::MAX_USERNAME_LEN;

/// The longest PLAIN message accepted, in bytes (RFC 4616 asks servers to take at least 255
/// bytes of user name and of password; this leaves room for long generated passwords).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A parsed PLAIN message. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    /// The requested authorization identity: empty, or equal to `username`.
    pub authzid: &'a str,
    /// The authentication identity (non-empty, at most `MAX_USERNAME_LEN` bytes).
    pub username: &'a str,
    /// The password (non-empty).
    pub password: &'a str,
}

impl fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses and checks a PLAIN message: UTF-8, exactly two NULs, non-empty user name and password,
/// an authzid that is empty or the user name itself.
pub fn parse(msg: &[u8]) -> Result<PlainMessage<'_>, AuthError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(AuthError::TooLong {
            max: MAX_MESSAGE_LEN,
        });
    }
    let text = std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected authzid NUL user NUL password",
        ));
    };
    if username.is_empty() {
        return Err(AuthError::Malformed("user name not specified"));
    }
    if username.len() > MAX_USERNAME_LEN {
        return Err(AuthError::Malformed("user name too long"));
    }
    if password.is_empty() {
        return Err(AuthError::Malformed("password not specified"));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(AuthError::AuthzidMismatch);
    }
    Ok(PlainMessage {
        authzid,
        username,
        password,
    })
}

/// The client's message: `NUL username NUL password` (no authzid).
pub fn client_message(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = client_message("alice", "s3cret");
        assert_eq!(msg, b"\0alice\0s3cret");
        let m = parse(&msg).unwrap();
        assert_eq!((m.authzid, m.username, m.password), ("", "alice", "s3cret"));
        assert!(!format!("{m:?}").contains("s3cret"));
        let m = parse(b"alice\0alice\0pw").unwrap();
        assert_eq!(m.authzid, "alice");
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(b"bob\0alice\0pw").unwrap_err(),
            AuthError::AuthzidMismatch
        );
        for bad in [
            &b""[..],
            b"\0",
            b"alice",
            b"\0alice",
            b"\0alice\0",
            b"\0\0pw",
            b"\0alice\0pw\0",
            b"a\0b\0c\0d",
            b"\0al\xffice\0pw",
        ] {
            assert!(
                matches!(parse(bad), Err(AuthError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_user = client_message(&"u".repeat(MAX_USERNAME_LEN + 1), "pw");
        assert!(parse(&long_user).is_err());
        let long = client_message("u", &"p".repeat(MAX_MESSAGE_LEN));
        assert_eq!(
            parse(&long).unwrap_err(),
            AuthError::TooLong {
                max: MAX_MESSAGE_LEN
            }
        );
        let at_bound = client_message("u", &"p".repeat(MAX_MESSAGE_LEN - 3));
        assert!(parse(&at_bound).is_ok());
    }
}
