//! The stored SCRAM credential and password checks against it.

use subtle::ConstantTimeEq;

use super::{crypto, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

/// What the broker stores for one user and mechanism (Kafka's `ScramCredential`, what
/// `AlterUserScramCredentials` sets): enough to verify a SCRAM proof or a password, not enough to
/// log in. The salted password is deliberately not kept: `ClientKey = HMAC(SaltedPassword,
/// "Client Key")` follows from it, so whoever holds it can authenticate.
///
/// Plain data: the broker chooses how to persist it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The hash this credential is for; a SCRAM exchange of the other hash refuses it.
    pub mechanism: ScramMechanism,
    /// The salt (sent to the client in server-first).
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count; usable only within `MIN_ITERATIONS..=MAX_ITERATIONS`.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential for a salted password, as `AlterUserScramCredentials` delivers it (Kafka's
    /// clients compute the salted password themselves and send only it, the salt and the count).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        iterations: u32,
        salted_password: &[u8],
    ) -> Self {
        let client_key = crypto::hmac(mechanism, salted_password, &[b"Client Key"]);
        ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: crypto::hash(mechanism, &client_key),
            server_key: crypto::hmac(mechanism, salted_password, &[b"Server Key"]),
        }
    }

    /// The credential for a password (runs PBKDF2 with `iterations` rounds; callers bound it).
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = super::salted_password(mechanism, password, salt, iterations);
        Self::from_salted_password(mechanism, salt, iterations, &salted)
    }

    /// Why this credential cannot be used for a login, if it cannot: an iteration count outside
    /// `MIN_ITERATIONS..=MAX_ITERATIONS`, an empty salt, or keys of the wrong length for its
    /// hash. The broker can also call this when a credential is created.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.iterations < MIN_ITERATIONS {
            return Err("stored iteration count is below the minimum (4096)");
        }
        if self.iterations > MAX_ITERATIONS {
            return Err("stored iteration count is above the maximum (16384)");
        }
        if self.salt.is_empty() {
            return Err("stored salt is empty");
        }
        let len = self.mechanism.key_len();
        if self.stored_key.len() != len || self.server_key.len() != len {
            return Err("stored keys have the wrong length for the mechanism");
        }
        Ok(())
    }

    /// Whether `password` is the one this credential was made from: for PLAIN and HTTP Basic,
    /// checked against the SCRAM store. Recomputes both keys (one PBKDF2 run) and compares them
    /// in constant time. An unusable credential ([`ScramCredential::check`]) verifies nothing,
    /// and costs no PBKDF2 run with an out-of-bounds count.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        if self.check().is_err() {
            return false;
        }
        let candidate = Self::from_password(self.mechanism, password, &self.salt, self.iterations);
        let same = candidate.stored_key.ct_eq(&self.stored_key)
            & candidate.server_key.ct_eq(&self.server_key);
        same.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_password() {
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let c = ScramCredential::from_password(mech, b"pencil", b"salty", 4096);
            assert_eq!(c.check(), Ok(()));
            assert_eq!(c.stored_key.len(), mech.key_len());
            assert!(c.verify_password(b"pencil"));
            assert!(!c.verify_password(b"pencil "));
            assert!(!c.verify_password(b""));
        }
    }

    #[test]
    fn from_salted_password_matches_from_password() {
        let salted = super::super::salted_password(ScramMechanism::Sha512, b"pw", b"s", 4096);
        assert_eq!(
            ScramCredential::from_salted_password(ScramMechanism::Sha512, b"s", 4096, &salted),
            ScramCredential::from_password(ScramMechanism::Sha512, b"pw", b"s", 4096)
        );
    }

    #[test]
    fn unusable_credentials_verify_nothing() {
        let good = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"s", 4096);
        let mut low = good.clone();
        low.iterations = 4095;
        assert!(low.check().is_err());
        assert!(!low.verify_password(b"pw"));
        // Made with a count the check refuses: it would verify, but is refused all the same.
        let weak = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"s", 1);
        assert!(!weak.verify_password(b"pw"));
        let mut high = good.clone();
        high.iterations = MAX_ITERATIONS + 1;
        assert!(!high.verify_password(b"pw"));
        let mut short = good.clone();
        short.stored_key.pop();
        assert!(!short.verify_password(b"pw"));
        let mut unsalted = good.clone();
        unsalted.salt.clear();
        assert!(unsalted.check().is_err());
        let mut other = good;
        other.mechanism = ScramMechanism::Sha512;
        assert!(!other.verify_password(b"pw"));
    }
}
