//! The SASL mechanism names, as `SaslHandshake` carries them.

use std::fmt;

use crate::scram::ScramMechanism;

/// A SASL mechanism this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// RFC 4616: user name and password in the clear (only sensible over TLS).
    Plain,
    /// RFC 7677: SCRAM with SHA-256.
    ScramSha256,
    /// SCRAM with SHA-512 (Kafka's `SCRAM-SHA-512`).
    ScramSha512,
    /// RFC 7628 / KIP-255: an OAuth 2 bearer token.
    OAuthBearer,
}

impl SaslMechanism {
    /// Every mechanism, in the order a broker would list them in `SaslHandshake`.
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::OAuthBearer,
    ];

    /// The IANA name, as on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism with this exact name. Case-sensitive, as Kafka matches it: `plain` is not
    /// `PLAIN`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM variant, for the two SCRAM mechanisms.
    pub const fn scram(self) -> Option<ScramMechanism> {
        match self {
            SaslMechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            SaslMechanism::ScramSha512 => Some(ScramMechanism::Sha512),
            SaslMechanism::Plain | SaslMechanism::OAuthBearer => None,
        }
    }
}

impl From<ScramMechanism> for SaslMechanism {
    fn from(m: ScramMechanism) -> Self {
        match m {
            ScramMechanism::Sha256 => SaslMechanism::ScramSha256,
            ScramMechanism::Sha512 => SaslMechanism::ScramSha512,
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for m in SaslMechanism::ALL {
            assert_eq!(SaslMechanism::from_name(m.name()), Some(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(SaslMechanism::from_name("plain"), None);
        assert_eq!(SaslMechanism::from_name("SCRAM-SHA-1"), None);
        assert_eq!(SaslMechanism::from_name(""), None);
        assert_eq!(SaslMechanism::from_name("GSSAPI"), None);
    }

    #[test]
    fn scram_variants() {
        assert_eq!(
            SaslMechanism::ScramSha256.scram(),
            Some(ScramMechanism::Sha256)
        );
        assert_eq!(
            SaslMechanism::ScramSha512.scram(),
            Some(ScramMechanism::Sha512)
        );
        assert_eq!(SaslMechanism::Plain.scram(), None);
        assert_eq!(SaslMechanism::OAuthBearer.scram(), None);
        for s in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert_eq!(SaslMechanism::from(s).scram(), Some(s));
            assert_eq!(SaslMechanism::from(s).name(), s.name());
        }
    }
}
