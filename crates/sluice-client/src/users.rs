//! SCRAM users: DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554, what
//! `kafka-configs.sh --entity-type users --alter --add-config 'SCRAM-SHA-256=[...]'` sends).
//!
//! The password never leaves this process: the salted password is computed here (PBKDF2 with a
//! fresh random salt) and only it is sent, as Kafka's admin client does.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use sluice_auth::scram::ScramMechanism;

use crate::error::{check, Error, Result};
use crate::Client;

/// One user's credentials: each mechanism with its iteration count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub name: String,
    pub credentials: Vec<(ScramMechanism, i32)>,
}

/// Bytes of random salt per credential.
const SALT_BYTES: usize = 32;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

impl Client {
    /// The users with SCRAM credentials: those named (an error for one without any), or every
    /// user when `names` is empty.
    pub async fn describe_scram_users(&mut self, names: &[String]) -> Result<Vec<ScramUser>> {
        let addr = self.admin_addr();
        let req = DescribeUserScramCredentialsRequest::default().with_users(if names.is_empty() {
            None
        } else {
            Some(
                names
                    .iter()
                    .map(|n| UserName::default().with_name(s(n)))
                    .collect(),
            )
        });
        let resp = self.send_to(&addr, &req).await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "describe SCRAM users".into()
        })?;
        let mut out = Vec::with_capacity(resp.results.len());
        for r in resp.results {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("describe user {}", r.user.as_str())
            })?;
            out.push(ScramUser {
                name: r.user.to_string(),
                credentials: r
                    .credential_infos
                    .iter()
                    .filter_map(|c| {
                        ScramMechanism::from_kafka_code(c.mechanism).map(|m| (m, c.iterations))
                    })
                    .collect(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sets `user`'s credential for each of `mechanisms` from `password` (salted here).
    pub async fn upsert_scram_user(
        &mut self,
        user: &str,
        password: &str,
        mechanisms: &[ScramMechanism],
        iterations: u32,
    ) -> Result<()> {
        let mut upsertions = Vec::with_capacity(mechanisms.len());
        for &mechanism in mechanisms {
            let mut salt = vec![0u8; SALT_BYTES];
            getrandom::fill(&mut salt).map_err(|e| Error::Protocol {
                addr: String::new(),
                detail: format!("no random salt: {e}"),
            })?;
            let salted = sluice_auth::scram::salted_password(
                mechanism,
                password.as_bytes(),
                &salt,
                iterations,
            );
            upsertions.push(
                ScramCredentialUpsertion::default()
                    .with_name(s(user))
                    .with_mechanism(mechanism.kafka_code())
                    .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
                    .with_salt(salt.into())
                    .with_salted_password(salted.into()),
            );
        }
        self.alter_scram_users(Vec::new(), upsertions).await
    }

    /// Removes `user`'s credentials for each of `mechanisms`.
    pub async fn delete_scram_user(
        &mut self,
        user: &str,
        mechanisms: &[ScramMechanism],
    ) -> Result<()> {
        let deletions = mechanisms
            .iter()
            .map(|m| {
                ScramCredentialDeletion::default()
                    .with_name(s(user))
                    .with_mechanism(m.kafka_code())
            })
            .collect();
        self.alter_scram_users(deletions, Vec::new()).await
    }

    async fn alter_scram_users(
        &mut self,
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> Result<()> {
        let addr = self.admin_addr();
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(deletions)
            .with_upsertions(upsertions);
        let resp = self.send_to(&addr, &req).await?;
        for r in &resp.results {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("alter user {}", r.user.as_str())
            })?;
        }
        Ok(())
    }
}
