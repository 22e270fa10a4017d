//! The users SASL authenticates against: the SCRAM credentials of the metadata image
//! (`MetadataRecord::UserScramCredential`), decoded once per change into the shape the
//! mechanisms look them up in. PLAIN (and HTTP Basic) check a password against the same
//! credentials, so there is one user store for every mechanism.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_auth::CredentialStore;
use sluice_controller::ScramCredentialInfo;

/// The credentials in force, replaced whole when the image changes.
#[derive(Default)]
pub struct Users {
    current: parking_lot::RwLock<Arc<UserTable>>,
    /// The image's form of the current table, to skip rebuilding on unrelated changes.
    source: parking_lot::Mutex<BTreeMap<String, BTreeMap<i8, ScramCredentialInfo>>>,
}

/// Users by name, then their credential per mechanism.
#[derive(Default)]
pub struct UserTable {
    users: HashMap<String, Vec<ScramCredential>>,
    /// Counts the tables built: what HTTP logins checked against an older one must check again.
    pub generation: u64,
}

impl Users {
    /// Follows the image (called on every metadata sync; cheap when nothing changed).
    pub fn sync(&self, image: &BTreeMap<String, BTreeMap<i8, ScramCredentialInfo>>) {
        let mut source = self.source.lock();
        if *source == *image {
            return;
        }
        let mut users = HashMap::with_capacity(image.len());
        for (name, creds) in image {
            let decoded: Vec<ScramCredential> = creds.values().filter_map(decode).collect();
            users.insert(name.clone(), decoded);
        }
        let mut current = self.current.write();
        let generation = current.generation.wrapping_add(1);
        *current = Arc::new(UserTable { users, generation });
        *source = image.clone();
    }

    pub fn table(&self) -> Arc<UserTable> {
        self.current.read().clone()
    }
}

impl UserTable {
    /// Checks a password against the user's strongest credential (HTTP Basic, PLAIN).
    ///
    /// An unknown user costs the same PBKDF2 run as a known one (against a credential nobody
    /// has), so the time of a failed check does not tell which users exist.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        match self.users.get(user).and_then(|creds| strongest(creds)) {
            Some(c) => c.verify_password(password.as_bytes()),
            None => {
                let nobody = ScramCredential {
                    mechanism: ScramMechanism::Sha512,
                    salt: b"sluice-nobody".to_vec(),
                    iterations: super::DEFAULT_SCRAM_ITERATIONS,
                    stored_key: vec![0; ScramMechanism::Sha512.key_len()],
                    server_key: vec![0; ScramMechanism::Sha512.key_len()],
                };
                let _ = nobody.verify_password(password.as_bytes());
                false
            }
        }
    }
}

impl UserTable {
    /// The SCRAM mechanisms a user has credentials for.
    pub fn mechanisms(&self, user: &str) -> Vec<ScramMechanism> {
        self.users
            .get(user)
            .map(|creds| creds.iter().map(|c| c.mechanism).collect())
            .unwrap_or_default()
    }
}

fn strongest(creds: &[ScramCredential]) -> Option<&ScramCredential> {
    creds
        .iter()
        .find(|c| c.mechanism == ScramMechanism::Sha512)
        .or_else(|| creds.first())
}

impl CredentialStore for UserTable {
    fn scram(&self, mechanism: ScramMechanism, user: &str) -> Option<ScramCredential> {
        self.users
            .get(user)?
            .iter()
            .find(|c| c.mechanism == mechanism)
            .cloned()
    }
}

/// A stored credential in the mechanisms' shape; None (the user cannot log in with it) when
/// the record is not one the broker would have written.
fn decode(info: &ScramCredentialInfo) -> Option<ScramCredential> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Some(ScramCredential {
        mechanism: ScramMechanism::from_kafka_code(info.mechanism)?,
        salt: b64.decode(&info.salt).ok()?,
        iterations: u32::try_from(info.iterations).ok()?,
        stored_key: b64.decode(&info.stored_key).ok()?,
        server_key: b64.decode(&info.server_key).ok()?,
    })
}

/// The record form of a credential (what AlterUserScramCredentials and the bootstrap users
/// propose).
pub fn encode(credential: &ScramCredential) -> ScramCredentialInfo {
    let b64 = base64::engine::general_purpose::STANDARD;
    ScramCredentialInfo {
        mechanism: credential.mechanism.kafka_code(),
        iterations: i32::try_from(credential.iterations).unwrap_or(i32::MAX),
        salt: b64.encode(&credential.salt),
        stored_key: b64.encode(&credential.stored_key),
        server_key: b64.encode(&credential.server_key),
    }
}
