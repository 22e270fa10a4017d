//! The tools' security flags (part of [`super::ClientArgs`]): Kafka's client settings
//! (`security.protocol`, `sasl.*`, `ssl.*`) as flags with environment variables, and
//! `--command-config`, the Kafka client properties file `kafka-topics.sh --command-config`
//! takes. A flag (or its environment variable) wins over the file.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sluice_client::security::properties::ClientProperties;
use sluice_client::security::{parse_mechanism, SaslCredentials, TlsSettings};
use sluice_client::{SaslMechanism, Security, SecurityProtocol};

/// The mechanism SASL protocols use when none is given.
const DEFAULT_MECHANISM: SaslMechanism = SaslMechanism::ScramSha512;

/// Connection security flags shared by every tool. `Debug` hides the password.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Security (TLS and SASL)")]
pub struct SecurityArgs {
    /// How the listener is secured, as Kafka's security.protocol: PLAINTEXT, SSL (TLS),
    /// SASL_PLAINTEXT (SASL without TLS) or SASL_SSL (SASL over TLS) [default: PLAINTEXT]
    #[arg(
        long,
        env = "SLUICE_SECURITY_PROTOCOL",
        value_name = "PROTOCOL",
        value_parser = parse_protocol
    )]
    pub security_protocol: Option<SecurityProtocol>,

    /// SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (Kafka's sasl.mechanism)
    /// [default: SCRAM-SHA-512 with a SASL protocol]
    #[arg(
        long,
        env = "SLUICE_SASL_MECHANISM",
        value_name = "MECHANISM",
        value_parser = parse_mechanism
    )]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name
    #[arg(long, env = "SLUICE_SASL_USERNAME", value_name = "USER")]
    pub sasl_username: Option<String>,

    /// SASL password. Prefer the environment variable SLUICE_SASL_PASSWORD (or
    /// --command-config): a flag is visible to other users in `ps`
    #[arg(
        long,
        env = "SLUICE_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,

    /// PEM file of the CA certificate(s) that signed the brokers' certificates (Kafka's
    /// ssl.ca.location); required with SSL and SASL_SSL unless --tls-insecure-skip-verify
    #[arg(long, env = "SLUICE_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate for mutual TLS, when the broker asks for one
    /// (ssl.certificate.location)
    #[arg(
        long = "tls-cert",
        env = "SLUICE_TLS_CLIENT_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert, not encrypted (ssl.key.location)
    #[arg(
        long = "tls-key",
        env = "SLUICE_TLS_CLIENT_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Name the brokers' certificates must carry [default: the host connected to; an IP
    /// address is checked against the certificate's IP addresses]
    #[arg(long, env = "SLUICE_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// Do not verify the brokers' certificates at all (no CA needed). The traffic is encrypted
    /// but anyone in the path can pose as the broker and read a PLAIN password: only for a test
    /// broker with a self-signed certificate, never in production
    #[arg(
        long,
        env = "SLUICE_TLS_INSECURE_SKIP_VERIFY",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub tls_insecure_skip_verify: bool,

    /// Kafka client properties file, as kafka-topics.sh --command-config takes:
    /// security.protocol, sasl.mechanism, sasl.jaas.config (or sasl.username and
    /// sasl.password), ssl.ca.location / ssl.truststore.location, ssl.certificate.location,
    /// ssl.key.location (PEM files only). Flags win over it
    #[arg(long, env = "SLUICE_COMMAND_CONFIG", value_name = "FILE")]
    pub command_config: Option<PathBuf>,
}

impl fmt::Debug for SecurityArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityArgs")
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_server_name", &self.tls_server_name)
            .field("tls_insecure_skip_verify", &self.tls_insecure_skip_verify)
            .field("command_config", &self.command_config)
            .finish()
    }
}

fn parse_protocol(s: &str) -> Result<SecurityProtocol, String> {
    s.parse()
}

impl SecurityArgs {
    /// The client's security settings: the flags, then the `--command-config` file for what
    /// they leave out, then the defaults.
    pub fn resolve(&self) -> anyhow::Result<Security> {
        let file = match &self.command_config {
            Some(path) => ClientProperties::load(path)?,
            None => ClientProperties::default(),
        };
        let chosen = self.security_protocol.or(file.protocol);
        let protocol = chosen.unwrap_or_default();
        let mut tls = TlsSettings {
            ca_file: self.tls_ca.clone().or(file.ca_file),
            client_cert: self.tls_cert.clone(),
            client_key: self.tls_key.clone(),
            server_name: self.tls_server_name.clone(),
            skip_hostname_verification: file.skip_hostname_verification.unwrap_or(false),
            insecure_skip_verify: self.tls_insecure_skip_verify
                || file.insecure_skip_verify.unwrap_or(false),
            pinned_cert: None,
        };
        // The certificate and its key come together, from the flags or from the file.
        if tls.client_cert.is_none() && tls.client_key.is_none() {
            tls.client_cert = file.client_cert;
            tls.client_key = file.client_key;
        }
        let mechanism = self.sasl_mechanism.or(file.mechanism);
        let username = self.sasl_username.clone().or(file.username);
        let password = self.sasl_password.clone().or(file.password);
        if chosen.is_none() {
            // Settings for TLS or SASL with no protocol: a PLAINTEXT connection would ignore
            // them (as Kafka's clients do) and fail in a puzzling way.
            let given: Vec<&str> = [
                (tls.ca_file.is_some(), "a TLS CA"),
                (tls.client_cert.is_some(), "a TLS client certificate"),
                (tls.insecure_skip_verify, "--tls-insecure-skip-verify"),
                (mechanism.is_some(), "a SASL mechanism"),
                (username.is_some(), "a SASL user name"),
            ]
            .into_iter()
            .filter_map(|(set, what)| set.then_some(what))
            .collect();
            if !given.is_empty() {
                bail!(
                    "{} given but no security protocol: set --security-protocol SSL, SASL_SSL or \
                     SASL_PLAINTEXT (or SLUICE_SECURITY_PROTOCOL, or security.protocol in \
                     --command-config)",
                    given.join(", ")
                );
            }
        }
        let sasl = if protocol.uses_sasl() {
            let need = |what: &str, flag: &str, env: &str, key: &str| {
                format!(
                    "{protocol} needs a SASL {what}: give {flag} (or {env}), or {key} in \
                     --command-config"
                )
            };
            let username = username.filter(|u| !u.is_empty()).with_context(|| {
                need(
                    "user name",
                    "--sasl-username",
                    "SLUICE_SASL_USERNAME",
                    "sasl.jaas.config",
                )
            })?;
            let password = password.filter(|p| !p.is_empty()).with_context(|| {
                need(
                    "password",
                    "SLUICE_SASL_PASSWORD",
                    "--sasl-password",
                    "sasl.jaas.config",
                )
            })?;
            Some(SaslCredentials {
                mechanism: mechanism.unwrap_or(DEFAULT_MECHANISM),
                username,
                password,
            })
        } else {
            None
        };
        if protocol.uses_tls() && tls.ca_file.is_none() && !tls.insecure_skip_verify {
            bail!(
                "{protocol} needs the CA certificate that signed the brokers' certificates: give \
                 --tls-ca FILE.pem (or SLUICE_TLS_CA, or ssl.ca.location in --command-config); \
                 --tls-insecure-skip-verify connects without verifying the broker (test brokers \
                 only)"
            );
        }
        Ok(Security {
            protocol,
            tls,
            sasl,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        security: SecurityArgs,
    }

    fn parse(args: &[&str]) -> Result<SecurityArgs, clap::Error> {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|t| t.security)
    }

    #[test]
    fn flags_are_well_formed() {
        T::command().debug_assert();
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn default_is_plaintext() {
        let s = SecurityArgs::default().resolve().unwrap();
        assert_eq!(s, Security::default());
    }

    #[test]
    fn sasl_flags() {
        let a = parse(&[
            "--security-protocol",
            "sasl_plaintext",
            "--sasl-username",
            "alice",
            "--sasl-password",
            "pw",
        ])
        .unwrap();
        assert!(!format!("{a:?}").contains("pw\""));
        let s = a.resolve().unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslPlaintext);
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("alice", "pw")
        );
        let e = parse(&["--security-protocol", "SASL_SSL", "--tls-ca", "ca.pem"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--sasl-username"), "{e}");
        assert!(parse(&["--sasl-mechanism", "GSSAPI"]).is_err());
        assert!(parse(&["--security-protocol", "TLS"]).is_err());
    }

    #[test]
    fn tls_needs_a_ca_or_an_explicit_skip() {
        let e = parse(&["--security-protocol", "SSL"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--tls-ca"), "{e}");
        let s = parse(&["--security-protocol", "SSL", "--tls-insecure-skip-verify"])
            .unwrap()
            .resolve()
            .unwrap();
        assert!(s.tls.insecure_skip_verify);
        // The certificate and its key go together.
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn settings_without_a_protocol_are_refused() {
        let e = parse(&["--tls-ca", "ca.pem"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--security-protocol"), "{e}");
        let e = parse(&["--sasl-username", "a"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("no security protocol"), "{e}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-256\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"alice\" password=\"from-file\";\n\
             ssl.truststore.location=/etc/ca.pem\n\
             ssl.certificate.location=/etc/c.pem\n\
             ssl.key.location=/etc/c.key\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let s = parse(&["--command-config", file])
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.tls.client_key, Some(PathBuf::from("/etc/c.key")));
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha256);
        assert_eq!(sasl.password, "from-file");
        let s = parse(&[
            "--command-config",
            file,
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-password",
            "from-flag",
            "--tls-ca",
            "/other/ca.pem",
            "--tls-cert",
            "/x/c.pem",
            "--tls-key",
            "/x/c.key",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/other/ca.pem")));
        assert_eq!(s.tls.client_cert, Some(PathBuf::from("/x/c.pem")));
        assert_eq!(s.tls.client_key, Some(PathBuf::from("/x/c.key")));
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::Plain);
        assert_eq!(sasl.username, "alice");
        assert_eq!(sasl.password, "from-flag");
        let e = parse(&["--command-config", "/nonexistent/client.properties"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/client.properties"),
            "{e}"
        );
    }
}
