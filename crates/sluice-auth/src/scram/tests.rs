//! Whole SCRAM exchanges: the RFC 7677 vector through both halves, round trips, and every way an
//! exchange is refused.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::*;
use crate::error::AuthError;

// RFC 7677 §3.
const RFC_USER: &str = "user";
const RFC_PASSWORD: &[u8] = b"pencil";
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

const SNONCE: &str = "server-nonce-0123456789";

fn rfc_credential() -> ScramCredential {
    let salt = STANDARD.decode(RFC_SALT).unwrap();
    ScramCredential::from_password(ScramMechanism::Sha256, RFC_PASSWORD, &salt, 4096)
}

/// Made once per process and password: PBKDF2 is slow in debug builds.
fn credential(mech: ScramMechanism, password: &[u8]) -> ScramCredential {
    type Cache = Mutex<HashMap<(ScramMechanism, Vec<u8>), ScramCredential>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache
        .entry((mech, password.to_vec()))
        .or_insert_with(|| {
            ScramCredential::from_password(mech, password, b"0123456789abcdef", 4096)
        })
        .clone()
}

/// Runs a whole exchange between a client with `password` and a server holding `stored` for
/// `user`; returns the server's outcome (and checks the client accepts a successful one).
fn exchange(
    mech: ScramMechanism,
    user: &str,
    password: &[u8],
    stored: Option<ScramCredential>,
) -> Result<ScramOutcome, AuthError> {
    let mut client = ScramClient::new(mech, user, password, "client-nonce").unwrap();
    let mut server = ScramServer::new(mech).with_mock_salt_key(b"cluster secret");
    let expected_user = user.to_owned();
    let server_first = server.client_first(&client.client_first(), SNONCE, |u| {
        assert_eq!(u, expected_user);
        stored
    })?;
    let client_final = client.server_first(&server_first).unwrap();
    let outcome = server.client_final(&client_final)?;
    client.server_final(&outcome.server_final).unwrap();
    Ok(outcome)
}

#[test]
fn rfc7677_through_the_client() {
    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        RFC_USER,
        RFC_PASSWORD,
        RFC_CLIENT_NONCE,
    )
    .unwrap();
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let client_final = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
    client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn rfc7677_through_the_server() {
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    let server_first = server
        .client_first(RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE, |u| {
            assert_eq!(u, RFC_USER);
            Some(rfc_credential())
        })
        .unwrap();
    assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
    let outcome = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(outcome.server_final).unwrap(),
        RFC_SERVER_FINAL
    );
    assert_eq!(outcome.username, RFC_USER);
    assert_eq!(server.rejection_detail(), None);
}

#[test]
fn round_trips_both_mechanisms() {
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        for user in ["alice", "a,b=c", "ünïcødé"] {
            let out = exchange(
                mech,
                user,
                b"correct horse",
                Some(credential(mech, b"correct horse")),
            )
            .unwrap();
            assert_eq!(out.username, user);
            let v = out.server_final.strip_prefix(b"v=").unwrap();
            assert_eq!(STANDARD.decode(v).unwrap().len(), mech.key_len());
        }
    }
}

#[test]
fn wrong_password_fails_at_the_final_step() {
    let mech = ScramMechanism::Sha512;
    let mut client = ScramClient::new(mech, "alice", b"wrong", "cn").unwrap();
    let mut server = ScramServer::new(mech);
    let first = server
        .client_first(&client.client_first(), SNONCE, |_| {
            Some(credential(mech, b"right"))
        })
        .unwrap();
    let fin = client.server_first(&first).unwrap();
    assert_eq!(
        server.client_final(&fin),
        Err(AuthError::InvalidCredentials)
    );
    assert_eq!(
        server.rejection_detail(),
        Some("client proof does not verify (wrong password)")
    );
    assert_eq!(server.username(), Some("alice"));
    // Ended: nothing more is accepted.
    assert_eq!(server.client_final(&fin), Err(AuthError::OutOfOrder));
}

#[test]
fn unknown_user_fails_only_at_the_final_step_like_a_wrong_password() {
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let wrong =
            exchange(mech, "alice", b"guess", Some(credential(mech, b"secret"))).unwrap_err();
        let unknown = exchange(mech, "mallory", b"guess", None).unwrap_err();
        assert_eq!(wrong, AuthError::InvalidCredentials);
        assert_eq!(unknown, wrong);
        assert_eq!(unknown.to_string(), wrong.to_string());
        assert_eq!(server_error_message(&unknown), server_error_message(&wrong));
    }
}

#[test]
fn unknown_users_get_a_stable_plausible_mock_salt() {
    let first = |key: &[u8], user: &str, mech| {
        let msg = format!("n,,n={user},r=abc");
        let mut s = ScramServer::new(mech).with_mock_salt_key(key);
        let out = s.client_first(msg.as_bytes(), "xyz", |_| None).unwrap();
        assert_eq!(s.rejection_detail(), Some("unknown user"));
        String::from_utf8(out).unwrap()
    };
    let a = first(b"k", "mallory", ScramMechanism::Sha256);
    assert_eq!(a, first(b"k", "mallory", ScramMechanism::Sha256));
    assert_ne!(a, first(b"k", "eve", ScramMechanism::Sha256));
    assert_ne!(a, first(b"other key", "mallory", ScramMechanism::Sha256));
    assert_ne!(a, first(b"k", "mallory", ScramMechanism::Sha512));
    let salt = a
        .strip_prefix("r=abcxyz,s=")
        .and_then(|r| r.strip_suffix(",i=4096"))
        .unwrap();
    assert_eq!(STANDARD.decode(salt).unwrap().len(), MOCK_SALT_LEN);
}

#[test]
fn unusable_credentials_fail_at_the_final_step() {
    let mech = ScramMechanism::Sha256;
    let mut low = credential(mech, b"pw");
    low.iterations = MIN_ITERATIONS - 1;
    let mut high = credential(mech, b"pw");
    high.iterations = MAX_ITERATIONS + 1;
    let other_mech = credential(ScramMechanism::Sha512, b"pw");
    for (stored, detail) in [
        (low, "stored iteration count is below the minimum (4096)"),
        (high, "stored iteration count is above the maximum (16384)"),
        (
            other_mech,
            "stored credential is for the other SCRAM mechanism",
        ),
    ] {
        let mut client = ScramClient::new(mech, "alice", b"pw", "cn").unwrap();
        let mut server = ScramServer::new(mech);
        let first = server
            .client_first(&client.client_first(), SNONCE, |_| Some(stored))
            .unwrap();
        // The mock credential's count, not the stored one: nothing to tell it from a real user.
        assert!(first.ends_with(b",i=4096"));
        let fin = client.server_first(&first).unwrap();
        assert_eq!(
            server.client_final(&fin),
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(server.rejection_detail(), Some(detail));
    }
}

#[test]
fn credentials_at_the_iteration_bounds_work() {
    let mech = ScramMechanism::Sha256;
    for i in [MIN_ITERATIONS, MAX_ITERATIONS] {
        let c = ScramCredential::from_password(mech, b"pw", b"salt", i);
        assert!(exchange(mech, "u", b"pw", Some(c)).is_ok());
    }
}

/// A server that has answered client-first for alice (password "pw"), and the client-final a
/// correct client would send.
fn midway(mech: ScramMechanism) -> (ScramServer, String) {
    let mut client = ScramClient::new(mech, "alice", b"pw", "cn").unwrap();
    let mut server = ScramServer::new(mech);
    let first = server
        .client_first(&client.client_first(), SNONCE, |_| {
            Some(credential(mech, b"pw"))
        })
        .unwrap();
    let fin = String::from_utf8(client.server_first(&first).unwrap()).unwrap();
    (server, fin)
}

#[test]
fn tampered_client_final_is_refused() {
    let mech = ScramMechanism::Sha256;
    let (mut s, fin) = midway(mech);
    assert!(s.client_final(fin.as_bytes()).is_ok());

    let cases: Vec<(String, AuthError)> = vec![
        // Nonce changed (one character of the server part, then truncated, then extended).
        (
            fin.replace(SNONCE, "server-nonce-0123456780"),
            AuthError::NonceMismatch,
        ),
        (
            fin.replace(SNONCE, "server-nonce"),
            AuthError::NonceMismatch,
        ),
        (
            fin.replace(SNONCE, &format!("{SNONCE}x")),
            AuthError::NonceMismatch,
        ),
        // Channel binding of another GS2 header.
        (
            fin.replace("c=biws", "c=eSws"),
            AuthError::ChannelBindingMismatch,
        ),
        (
            fin.replace("c=biws", "c=cD10bHMtdW5pcXVlLCw="),
            AuthError::ChannelBindingMismatch,
        ),
        // Proof flipped, shortened, lengthened.
        (flip_proof(&fin), AuthError::InvalidCredentials),
        (
            with_proof(&fin, &[0u8; 31]),
            AuthError::Malformed("proof has the wrong length"),
        ),
        (
            with_proof(&fin, &[0u8; 33]),
            AuthError::Malformed("proof has the wrong length"),
        ),
        // An extension inserted before the proof changes the signed AuthMessage.
        (
            fin.replacen(",p=", ",x=1,p=", 1),
            AuthError::InvalidCredentials,
        ),
    ];
    for (msg, err) in cases {
        let (mut s, _) = midway(mech);
        assert_eq!(s.client_final(msg.as_bytes()), Err(err), "{msg}");
        assert_eq!(s.client_final(fin.as_bytes()), Err(AuthError::OutOfOrder));
    }
}

fn with_proof(fin: &str, proof: &[u8]) -> String {
    let (head, _) = fin.rsplit_once(",p=").unwrap();
    format!("{head},p={}", STANDARD.encode(proof))
}

fn flip_proof(fin: &str) -> String {
    let (_, p) = fin.rsplit_once(",p=").unwrap();
    let mut proof = STANDARD.decode(p).unwrap();
    proof[0] ^= 1;
    with_proof(fin, &proof)
}

#[test]
fn channel_binding_flags() {
    let mech = ScramMechanism::Sha256;
    let stored = || Some(credential(mech, b"pw"));
    // `y`: the client could bind but believes we cannot; c= must then be base64("y,,").
    let mut s = ScramServer::new(mech);
    s.client_first(b"y,,n=alice,r=cn", SNONCE, |_| stored())
        .unwrap();
    let fin = proof_for(mech, "y,,", "n=alice,r=cn", b"pw");
    assert!(s.client_final(fin.as_bytes()).is_ok());

    let mut s = ScramServer::new(mech);
    assert_eq!(
        s.client_first(b"p=tls-server-end-point,,n=alice,r=cn", SNONCE, |_| stored(
        )),
        Err(AuthError::Unsupported("channel binding (GS2 flag p=)"))
    );
}

/// The client-final a client with `password` sends after `gs2` + `bare` and the server-first
/// `ScramServer` answers for the `credential()` salt.
fn proof_for(mech: ScramMechanism, gs2: &str, bare: &str, password: &[u8]) -> String {
    let salt = b"0123456789abcdef";
    let client_nonce = bare.split(',').find_map(|a| a.strip_prefix("r=")).unwrap();
    let nonce = format!("{client_nonce}{SNONCE}");
    let server_first = format!("r={nonce},s={},i=4096", STANDARD.encode(salt));
    let without_proof = format!("c={},r={nonce}", STANDARD.encode(gs2));
    let salted = salted_password(mech, password, salt, 4096);
    let client_key = crypto::hmac(mech, &salted, &[b"Client Key"]);
    let stored_key = crypto::hash(mech, &client_key);
    let auth = format!("{bare},{server_first},{without_proof}");
    let signature = crypto::hmac(mech, &stored_key, &[auth.as_bytes()]);
    let proof = crypto::xor(&client_key, &signature);
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

#[test]
fn authzid_must_be_the_user() {
    let mech = ScramMechanism::Sha256;
    let mut s = ScramServer::new(mech);
    let mut looked_up = false;
    assert_eq!(
        s.client_first(b"n,a=bob,n=alice,r=cn", SNONCE, |_| {
            looked_up = true;
            None
        }),
        Err(AuthError::AuthzidMismatch)
    );
    assert!(!looked_up, "refused before the lookup");
    assert_eq!(
        s.client_first(b"n,,n=alice,r=cn", SNONCE, |_| None),
        Err(AuthError::OutOfOrder)
    );

    // The same name, escaped, is fine; c= must carry the header with the authzid.
    let mut s = ScramServer::new(mech);
    s.client_first(b"n,a=a=2Cb,n=a=2Cb,r=cn", SNONCE, |u| {
        assert_eq!(u, "a,b");
        Some(credential(mech, b"pw"))
    })
    .unwrap();
    let fin = proof_for(mech, "n,a=a=2Cb,", "n=a=2Cb,r=cn", b"pw");
    assert_eq!(s.client_final(fin.as_bytes()).unwrap().username, "a,b");
}

#[test]
fn escaped_user_names() {
    let mech = ScramMechanism::Sha256;
    let mut s = ScramServer::new(mech);
    s.client_first(b"n,,n=a=2Cb=3D,r=cn", SNONCE, |u| {
        assert_eq!(u, "a,b=");
        None
    })
    .unwrap();
    for bad in [&b"n,,n=a=2cb,r=cn"[..], b"n,,n=a=,r=cn", b"n,,n=a=42,r=cn"] {
        let mut s = ScramServer::new(mech);
        assert!(matches!(
            s.client_first(bad, SNONCE, |_| panic!("no lookup for a bad name")),
            Err(AuthError::Malformed(_))
        ));
    }
    let client = ScramClient::new(mech, "a,b=", b"pw", "cn").unwrap();
    assert_eq!(client.client_first(), b"n,,n=a=2Cb=3D,r=cn");
}

#[test]
fn refused_client_first_extensions() {
    let mech = ScramMechanism::Sha512;
    let mut s = ScramServer::new(mech);
    assert_eq!(
        s.client_first(b"n,,n=alice,r=cn,tokenauth=true", SNONCE, |_| None),
        Err(AuthError::Unsupported("delegation tokens (tokenauth=true)"))
    );
    let mut s = ScramServer::new(mech);
    assert_eq!(
        s.client_first(b"n,,m=ext,n=alice,r=cn", SNONCE, |_| None),
        Err(AuthError::Unsupported("mandatory SCRAM extension (m=)"))
    );
    // Unknown extensions are ignored but are part of what the client signs.
    let mut s = ScramServer::new(mech);
    s.client_first(b"n,,n=alice,r=cn,foo=bar,tokenauth=false", SNONCE, |_| {
        Some(credential(mech, b"pw"))
    })
    .unwrap();
    let fin = proof_for(mech, "n,,", "n=alice,r=cn,foo=bar,tokenauth=false", b"pw");
    assert!(s.client_final(fin.as_bytes()).is_ok());
}

#[test]
fn out_of_order_calls() {
    let mech = ScramMechanism::Sha256;
    let mut s = ScramServer::new(mech);
    assert_eq!(
        s.client_final(b"c=biws,r=x,p=AAAA"),
        Err(AuthError::OutOfOrder)
    );
    // A failed call ends the exchange too.
    assert_eq!(
        s.client_first(b"n,,n=alice,r=cn", SNONCE, |_| None),
        Err(AuthError::OutOfOrder)
    );

    let (mut s, fin) = midway(mech);
    assert_eq!(
        s.client_first(b"n,,n=alice,r=cn", SNONCE, |_| None),
        Err(AuthError::OutOfOrder)
    );
    assert_eq!(s.client_final(fin.as_bytes()), Err(AuthError::OutOfOrder));

    // Replaying a whole successful exchange's final message into a finished server.
    let (mut s, fin) = midway(mech);
    assert!(s.client_final(fin.as_bytes()).is_ok());
    assert_eq!(s.client_final(fin.as_bytes()), Err(AuthError::OutOfOrder));

    // A malformed message ends it as well.
    let mut s = ScramServer::new(mech);
    assert!(s.client_first(b"garbage", SNONCE, |_| None).is_err());
    assert_eq!(
        s.client_first(b"n,,n=alice,r=cn", SNONCE, |_| None),
        Err(AuthError::OutOfOrder)
    );
}

#[test]
fn bad_server_nonce_argument() {
    for bad in ["", "a,b", "a b", "é"] {
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        assert!(matches!(
            s.client_first(b"n,,n=alice,r=cn", bad, |_| None),
            Err(AuthError::InvalidArgument(_))
        ));
    }
}

#[test]
fn message_length_is_bounded() {
    let mut s = ScramServer::new(ScramMechanism::Sha256);
    let long = format!("n,,n=alice,r={}", "x".repeat(MAX_MESSAGE_LEN));
    assert_eq!(
        s.client_first(long.as_bytes(), SNONCE, |_| None),
        Err(AuthError::TooLong {
            max: MAX_MESSAGE_LEN
        })
    );
    let (mut s, _) = midway(ScramMechanism::Sha256);
    assert_eq!(
        s.client_final(&vec![b'c'; MAX_MESSAGE_LEN + 1]),
        Err(AuthError::TooLong {
            max: MAX_MESSAGE_LEN
        })
    );
}

#[test]
fn client_refuses_bad_server_first() {
    let mech = ScramMechanism::Sha256;
    let new = || ScramClient::new(mech, "alice", b"pw", "cn").unwrap();
    for (msg, err) in [
        (
            "r=cn,s=AAAA,i=4096",
            AuthError::InvalidServerMessage("server nonce does not extend the client nonce"),
        ),
        (
            "r=xcnserver,s=AAAA,i=4096",
            AuthError::InvalidServerMessage("server nonce does not extend the client nonce"),
        ),
        (
            "r=cnserver,s=AAAA,i=4095",
            AuthError::InvalidServerMessage("iteration count outside 4096..=16384"),
        ),
        (
            "r=cnserver,s=AAAA,i=16385",
            AuthError::InvalidServerMessage("iteration count outside 4096..=16384"),
        ),
        (
            "r=cnserver,s=AAAA,i=4294967296",
            AuthError::InvalidServerMessage("iteration count outside 4096..=16384"),
        ),
        (
            "m=x,r=cnserver,s=AAAA,i=4096",
            AuthError::Unsupported("mandatory SCRAM extension (m=)"),
        ),
    ] {
        let mut c = new();
        assert_eq!(c.server_first(msg.as_bytes()), Err(err), "{msg}");
        assert_eq!(c.server_first(msg.as_bytes()), Err(AuthError::OutOfOrder));
        assert_eq!(c.server_final(b"v=AAAA"), Err(AuthError::OutOfOrder));
    }
    // Extensions after the iteration count are ignored.
    assert!(new().server_first(b"r=cnserver,s=AAAA,i=4096,x=y").is_ok());
}

#[test]
fn client_checks_server_final() {
    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        RFC_USER,
        RFC_PASSWORD,
        RFC_CLIENT_NONCE,
    )
    .unwrap();
    assert_eq!(
        client.server_final(RFC_SERVER_FINAL.as_bytes()),
        Err(AuthError::OutOfOrder)
    );
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        client.server_final(b"e=invalid-proof"),
        Err(AuthError::ServerError("invalid-proof".into()))
    );
    let mut wrong = STANDARD
        .decode(RFC_SERVER_FINAL.strip_prefix("v=").unwrap())
        .unwrap();
    wrong[31] ^= 0x80;
    let wrong = format!("v={}", STANDARD.encode(&wrong));
    assert_eq!(
        client.server_final(wrong.as_bytes()),
        Err(AuthError::InvalidServerMessage(
            "server signature does not verify"
        ))
    );
    assert_eq!(
        client.server_final(b"v=AAAA"),
        Err(AuthError::InvalidServerMessage(
            "server signature does not verify"
        ))
    );
    assert!(client.server_final(b"v=").is_err());
    assert!(client.server_final(b"nonsense").is_err());
    client
        .server_final(format!("{RFC_SERVER_FINAL},ext=1").as_bytes())
        .unwrap();
}

#[test]
fn client_argument_checks() {
    let mech = ScramMechanism::Sha512;
    assert!(ScramClient::new(mech, "", b"pw", "cn").is_err());
    assert!(ScramClient::new(mech, "a\0b", b"pw", "cn").is_err());
    assert!(ScramClient::new(mech, &"u".repeat(MAX_USERNAME_LEN + 1), b"pw", "cn").is_err());
    assert!(ScramClient::new(mech, &"u".repeat(MAX_USERNAME_LEN), b"pw", "cn").is_ok());
    for bad in ["", "a,b", "a b", "\u{7f}"] {
        assert!(ScramClient::new(mech, "u", b"pw", bad).is_err(), "{bad:?}");
    }
    let c = ScramClient::new(mech, "u", b"hunter2", "cn").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn server_error_messages() {
    assert_eq!(
        server_error_message(&AuthError::InvalidCredentials),
        b"e=invalid-proof"
    );
    assert_eq!(
        server_error_message(&AuthError::ChannelBindingMismatch),
        b"e=channel-bindings-dont-match"
    );
    assert_eq!(
        server_error_message(&AuthError::Malformed("x")),
        b"e=invalid-encoding"
    );
    assert_eq!(
        server_error_message(&AuthError::NonceMismatch),
        b"e=other-error"
    );
}

#[test]
fn mechanism_codes_and_names() {
    for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        assert_eq!(ScramMechanism::from_kafka_code(m.kafka_code()), Some(m));
        assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(ScramMechanism::Sha256.kafka_code(), 1);
    assert_eq!(ScramMechanism::Sha512.kafka_code(), 2);
    for code in [0, 3, -1, i8::MIN, i8::MAX] {
        assert_eq!(ScramMechanism::from_kafka_code(code), None);
    }
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    assert_eq!(ScramMechanism::Sha256.key_len(), 32);
    assert_eq!(ScramMechanism::Sha512.key_len(), 64);
}

#[test]
fn a_final_nonce_ending_with_the_combined_nonce_is_accepted_as_kafka_does() {
    // librdkafka before 2.2 repeats its own nonce in client-final: r=<cnonce><cnonce><snonce>.
    // Kafka checks `endsWith`, so those clients log in; so must they here.
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let mut server = ScramServer::new(mech);
        let bare = "n=alice,r=cn";
        let first = server
            .client_first(format!("n,,{bare}").as_bytes(), SNONCE, |_| {
                Some(credential(mech, b"pw"))
            })
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let attr = |k: &str| {
            first
                .split(',')
                .find_map(|a| a.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let (nonce, salt, iterations) = (attr("r="), attr("s="), attr("i="));
        let salt = STANDARD.decode(salt).unwrap();
        let without_proof = format!("c=biws,r=cn{nonce}");
        let salted = salted_password(mech, b"pw", &salt, iterations.parse().unwrap());
        let client_key = crypto::hmac(mech, &salted, &[b"Client Key"]);
        let stored_key = crypto::hash(mech, &client_key);
        let auth = format!("{bare},{first},{without_proof}");
        let signature = crypto::hmac(mech, &stored_key, &[auth.as_bytes()]);
        let proof = crypto::xor(&client_key, &signature);
        let fin = format!("{without_proof},p={}", STANDARD.encode(proof));
        let outcome = server.client_final(fin.as_bytes()).unwrap();
        assert_eq!(outcome.username, "alice");
        // A nonce that only starts with the combined one is still refused.
        let mut server = ScramServer::new(mech);
        server
            .client_first(format!("n,,{bare}").as_bytes(), SNONCE, |_| {
                Some(credential(mech, b"pw"))
            })
            .unwrap();
        let bad = fin.replace(&format!("r=cn{nonce}"), &format!("r={nonce}x"));
        assert_eq!(
            server.client_final(bad.as_bytes()).map(|_| ()),
            Err(AuthError::NonceMismatch)
        );
    }
}
