//! DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), KIP-554: the SCRAM
//! users SASL checks logins against, kept in the metadata image (`security/users.rs`).
//!
//! A client sends the salted password, never the password; the broker derives StoredKey and
//! ServerKey from it and stores only those. Each user's changes apply together or not at all,
//! users independently of each other, as in Kafka.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_auth::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use crate::broker::{now_ms, Broker};
use crate::limits::{MAX_SCRAM_SALT_BYTES, MAX_USER_NAME_BYTES};

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub fn describe(
    broker: &Broker,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = broker.metadata.scram_users();
    let result = |name: &str, creds: &[(i8, i32)]| {
        DescribeUserScramCredentialsResult::default()
            .with_user(s(name))
            .with_credential_infos(
                creds
                    .iter()
                    .map(|(m, i)| {
                        CredentialInfo::default()
                            .with_mechanism(*m)
                            .with_iterations(*i)
                    })
                    .collect(),
            )
    };
    let results = match req.users {
        // Null or empty: every user with a credential.
        None => users.iter().map(|(n, c)| result(n, c)).collect(),
        Some(names) if names.is_empty() => users.iter().map(|(n, c)| result(n, c)).collect(),
        Some(names) => {
            let mut seen = BTreeMap::<&str, usize>::new();
            for n in &names {
                *seen.entry(n.name.as_str()).or_default() += 1;
            }
            seen.into_iter()
                .map(|(name, count)| {
                    let fail = |code, message: String| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(s(name))
                            .with_error_code(code)
                            .with_error_message(Some(s(message)))
                    };
                    if count > 1 {
                        return fail(
                            DUPLICATE_RESOURCE,
                            "Cannot describe SCRAM credentials for the same user twice in a single request"
                                .into(),
                        );
                    }
                    match users.get(name) {
                        Some(creds) => result(name, creds),
                        None => fail(
                            RESOURCE_NOT_FOUND,
                            format!("Attempt to describe a user credential that does not exist: {name}"),
                        ),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's requested changes, checked.
#[derive(Default)]
struct UserChanges {
    removals: Vec<(String, i8)>,
    upsertions: Vec<(String, sluice_controller::ScramCredentialInfo)>,
    error: Option<(i16, String)>,
}

pub async fn alter(
    broker: &Broker,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut by_user: BTreeMap<String, UserChanges> = BTreeMap::new();
    // (user, mechanism) named more than once across deletions and upsertions.
    let mut seen = BTreeSet::new();
    let mut duplicate = BTreeSet::new();
    for (name, mechanism) in req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.as_str(), u.mechanism)),
        )
    {
        if !seen.insert((name, mechanism)) {
            duplicate.insert(name.to_string());
        }
    }
    for d in &req.deletions {
        let changes = by_user.entry(d.name.to_string()).or_default();
        if changes.error.is_some() {
            continue;
        }
        changes.error = check_name_and_mechanism(&d.name, d.mechanism).err();
        changes.removals.push((d.name.to_string(), d.mechanism));
    }
    for u in &req.upsertions {
        let changes = by_user.entry(u.name.to_string()).or_default();
        if changes.error.is_some() {
            continue;
        }
        match credential(u) {
            Ok(c) => changes.upsertions.push((u.name.to_string(), c)),
            Err(e) => changes.error = Some(e),
        }
    }
    let mut results = Vec::with_capacity(by_user.len());
    for (name, changes) in by_user {
        let error = if duplicate.contains(&name) {
            Some((
                DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request".to_string(),
            ))
        } else if let Some(e) = changes.error {
            Some(e)
        } else {
            broker
                .metadata
                .alter_scram_credentials(changes.removals, changes.upsertions, now_ms())
                .await
                .err()
                .map(|e| (e.code, e.message))
        };
        let mut result = AlterUserScramCredentialsResult::default().with_user(s(&name));
        if let Some((code, message)) = error {
            tracing::info!(user = %name, code, %message, "AlterUserScramCredentials refused");
            result = result
                .with_error_code(code)
                .with_error_message(Some(s(message)));
        }
        results.push(result);
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn check_name_and_mechanism(name: &str, mechanism: i8) -> Result<ScramMechanism, (i16, String)> {
    if name.is_empty() {
        return Err((UNACCEPTABLE_CREDENTIAL, "Username must not be empty".into()));
    }
    if name.len() > MAX_USER_NAME_BYTES {
        return Err((
            UNACCEPTABLE_CREDENTIAL,
            format!("Username must be at most {MAX_USER_NAME_BYTES} bytes"),
        ));
    }
    ScramMechanism::from_kafka_code(mechanism).ok_or((
        UNSUPPORTED_SASL_MECHANISM,
        format!("Unknown SCRAM mechanism {mechanism}"),
    ))
}

fn credential(
    u: &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<sluice_controller::ScramCredentialInfo, (i16, String)> {
    let mechanism = check_name_and_mechanism(&u.name, u.mechanism)?;
    let iterations = u32::try_from(u.iterations).unwrap_or(0);
    if iterations < MIN_ITERATIONS {
        return Err((
            UNACCEPTABLE_CREDENTIAL,
            format!("Too few iterations: at least {MIN_ITERATIONS}"),
        ));
    }
    if iterations > MAX_ITERATIONS {
        return Err((
            UNACCEPTABLE_CREDENTIAL,
            format!("Too many iterations: at most {MAX_ITERATIONS}"),
        ));
    }
    if u.salt.is_empty() || u.salt.len() > MAX_SCRAM_SALT_BYTES {
        return Err((
            UNACCEPTABLE_CREDENTIAL,
            format!("The salt must be 1 to {MAX_SCRAM_SALT_BYTES} bytes"),
        ));
    }
    if u.salted_password.len() != mechanism.key_len() {
        return Err((
            UNACCEPTABLE_CREDENTIAL,
            format!(
                "The salted password of {} must be {} bytes",
                mechanism.name(),
                mechanism.key_len()
            ),
        ));
    }
    let c =
        ScramCredential::from_salted_password(mechanism, &u.salt, iterations, &u.salted_password);
    Ok(crate::security::users::encode(&c))
}
