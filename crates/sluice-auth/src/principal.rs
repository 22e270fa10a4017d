//! Who a connection authenticated as, in Kafka's `Type:name` form (what ACLs name).

use std::fmt;
use std::str::FromStr;

/// Kafka's `KafkaPrincipal`: a principal type (`User` for every SASL mechanism) and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    /// `User` for SASL-authenticated connections.
    pub principal_type: String,
    /// The user name (SCRAM/PLAIN) or the token's principal claim (OAUTHBEARER).
    pub name: String,
}

impl KafkaPrincipal {
    /// Kafka's principal type for authenticated users.
    pub const USER_TYPE: &'static str = "User";

    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Self {
        KafkaPrincipal {
            principal_type: Self::USER_TYPE.to_owned(),
            name: name.into(),
        }
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// Why a `Type:name` string is not a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePrincipalError(&'static str);

impl fmt::Display for ParsePrincipalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid principal: {}", self.0)
    }
}

impl std::error::Error for ParsePrincipalError {}

impl FromStr for KafkaPrincipal {
    type Err = ParsePrincipalError;

    /// Splits at the first `:` (Kafka's `SecurityUtils.parseKafkaPrincipal`), so the name may
    /// itself hold colons (`User:CN=a:b`); both halves must be non-empty.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (principal_type, name) = s
            .split_once(':')
            .ok_or(ParsePrincipalError("expected Type:name"))?;
        if principal_type.is_empty() {
            return Err(ParsePrincipalError("empty principal type"));
        }
        if name.is_empty() {
            return Err(ParsePrincipalError("empty principal name"));
        }
        Ok(KafkaPrincipal {
            principal_type: principal_type.to_owned(),
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let p = KafkaPrincipal::user("alice");
        assert_eq!(p.to_string(), "User:alice");
        assert_eq!("User:alice".parse::<KafkaPrincipal>(), Ok(p));
        let q: KafkaPrincipal = "Group:a:b:c".parse().unwrap();
        assert_eq!(q.principal_type, "Group");
        assert_eq!(q.name, "a:b:c");
        assert_eq!(q.to_string(), "Group:a:b:c");
    }

    #[test]
    fn parse_errors() {
        for bad in ["", "User", ":alice", "User:", ":"] {
            assert!(bad.parse::<KafkaPrincipal>().is_err(), "{bad:?}");
        }
    }
}
