//! The SCRAM primitives over the mechanism's hash: `H`, `HMAC`, `Hi` (PBKDF2) and `XOR`.
//!
//! Dispatching on [`ScramMechanism`] here keeps the rest of the module free of generics.

use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::ScramMechanism;

/// `H(data)`.
pub(crate) fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// `HMAC(key, part1 || part2 || ...)`; the parts avoid building the concatenation.
pub(crate) fn hmac(mechanism: ScramMechanism, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => hmac_with::<Sha256>(key, parts),
        ScramMechanism::Sha512 => hmac_with::<Sha512>(key, parts),
    }
}

fn hmac_with<D: EagerHash>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match <Hmac<D> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length (longer ones are hashed), so this is never reached; an
        // empty result fails every comparison it meets (fail closed) rather than panicking.
        Err(_) => Vec::new(),
    }
}

/// `Hi(password, salt, i)`: PBKDF2-HMAC with one output block of the hash's length.
pub(crate) fn hi(mechanism: ScramMechanism, password: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
    let mut out = vec![0u8; mechanism.key_len()];
    let done = match mechanism {
        ScramMechanism::Sha256 => pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, rounds, &mut out),
        ScramMechanism::Sha512 => pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, rounds, &mut out),
    };
    match done {
        Ok(()) => out,
        // As above: HMAC accepts any key, so this is never reached; fail closed.
        Err(_) => Vec::new(),
    }
}

/// `a XOR b`, byte by byte, over the shorter length (callers pass equal lengths).
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hi_matches_pbkdf2_test_vectors() {
        // RFC 7914 §11 (PBKDF2-HMAC-SHA256, c = 1), first 32 bytes.
        let out = hi(ScramMechanism::Sha256, b"passwd", b"salt", 1);
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(hi(ScramMechanism::Sha512, b"p", b"s", 1).len(), 64);
    }

    #[test]
    fn hmac_parts_concatenate() {
        let whole = hmac(ScramMechanism::Sha256, b"k", &[b"abcdef"]);
        let split = hmac(ScramMechanism::Sha256, b"k", &[b"ab", b"", b"cdef"]);
        assert_eq!(whole, split);
        assert_eq!(whole.len(), 32);
        // RFC 4231 test case 2.
        assert_eq!(
            hex(&hmac(
                ScramMechanism::Sha256,
                b"Jefe",
                &[b"what do ya want for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
