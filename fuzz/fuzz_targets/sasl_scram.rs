//! SCRAM on any bytes (`sluice_auth::scram`), both halves. The input is a knob byte and up to
//! four NUL-separated messages (SCRAM messages never hold NUL): client-first and client-final
//! for a `ScramServer`, server-first and server-final for a `ScramClient`. The knob picks the
//! hash, what the credential lookup returns (nothing, the right credential, one of the other
//! hash, one with too few iterations) and whether a genuine client logs in, under a user name
//! taken from the input, against a server as well. Must never panic; the server succeeds only
//! with a usable credential of its own hash; an exchange that ended accepts nothing more; a
//! genuine client always succeeds and the server names the user it claimed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_auth::scram::{ScramClient, ScramCredential, ScramMechanism, ScramServer};
use sluice_auth::AuthError;

const PASSWORD: &[u8] = b"pencil";

/// One credential per hash, made once (PBKDF2 is slow; the server never runs it).
fn stored(mech: ScramMechanism) -> ScramCredential {
    static CREDS: OnceLock<[ScramCredential; 2]> = OnceLock::new();
    let creds = CREDS.get_or_init(|| {
        [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .map(|m| ScramCredential::from_password(m, PASSWORD, b"fuzz salt", 4096))
    });
    match mech {
        ScramMechanism::Sha256 => creds[0].clone(),
        ScramMechanism::Sha512 => creds[1].clone(),
    }
}

fn other(mech: ScramMechanism) -> ScramMechanism {
    match mech {
        ScramMechanism::Sha256 => ScramMechanism::Sha512,
        ScramMechanism::Sha512 => ScramMechanism::Sha256,
    }
}

fn lookup_for(knob: u8, mech: ScramMechanism) -> Option<ScramCredential> {
    match (knob >> 1) & 3 {
        0 => None,
        1 => Some(stored(mech)),
        2 => Some(stored(other(mech))),
        _ => {
            let mut weak = stored(mech);
            weak.iterations = 1;
            Some(weak)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let mech = if knob & 1 == 0 {
        ScramMechanism::Sha256
    } else {
        ScramMechanism::Sha512
    };
    let mut parts = rest.split(|&b| b == 0);
    let client_first = parts.next().unwrap_or_default();
    let client_final = parts.next().unwrap_or_default();
    let server_first = parts.next().unwrap_or_default();
    let server_final = parts.next().unwrap_or_default();

    // The server on arbitrary client messages.
    let mut server = ScramServer::new(mech).with_mock_salt_key(b"fuzz key");
    let usable = (knob >> 1) & 3 == 1;
    match server.client_first(client_first, "snonce", |_| lookup_for(knob, mech)) {
        Ok(first) => {
            assert!(first.starts_with(b"r="));
            match server.client_final(client_final) {
                Ok(outcome) => {
                    assert!(usable, "accepted without a usable credential");
                    assert_eq!(server.rejection_detail(), None);
                    assert!(outcome.server_final.starts_with(b"v="));
                    assert_eq!(server.username(), Some(outcome.username.as_str()));
                }
                Err(AuthError::InvalidCredentials) => assert!(server.rejection_detail().is_some()),
                Err(_) => {}
            }
        }
        Err(_) => {}
    }
    assert_eq!(
        server.client_final(client_final),
        Err(AuthError::OutOfOrder)
    );

    // The client on arbitrary server messages (PBKDF2 runs only on a well-formed server-first
    // whose nonce extends ours and whose count is within bounds).
    if let Ok(mut client) = ScramClient::new(mech, "user", PASSWORD, "cnonce") {
        let first = client.client_first();
        assert_eq!(first, b"n,,n=user,r=cnonce");
        if let Ok(fin) = client.server_first(server_first) {
            assert!(fin.starts_with(b"c=biws,r=cnonce"));
            let _ = client.server_final(server_final);
        }
        assert!(client.server_first(server_first).is_err());
    }

    // A genuine client with a user name from the input (knob bit 4), against a server holding
    // the right credential: must log in, as that user.
    if knob & 0x10 != 0 {
        let user = String::from_utf8_lossy(client_first);
        let Ok(mut client) = ScramClient::new(mech, &user, PASSWORD, "genuine-nonce") else {
            return;
        };
        let mut server = ScramServer::new(mech);
        let mut asked = None;
        let first = server
            .client_first(&client.client_first(), "s", |u| {
                asked = Some(u.to_owned());
                Some(stored(mech))
            })
            .expect("a genuine client-first is accepted");
        assert_eq!(asked.as_deref(), Some(&*user));
        let fin = client
            .server_first(&first)
            .expect("our server-first is accepted");
        let outcome = server.client_final(&fin).expect("a genuine proof verifies");
        assert_eq!(outcome.username, user);
        client
            .server_final(&outcome.server_final)
            .expect("our server signature verifies");
    }
});
