//! TLS for SSL and SASL_SSL listeners (rustls with the ring provider): the certificate and key
//! files, optional client certificates, reloading on SIGHUP, and the principal a client
//! certificate names.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// `--tls-client-auth` (Kafka's `ssl.client.auth`): whether SSL listeners ask for a client
/// certificate. SASL_SSL listeners never do: their principal comes from SASL (KIP-684).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    /// Asked for; a client without one connects as `User:ANONYMOUS`. One that sends an
    /// untrusted certificate is refused.
    Requested,
    /// A client without a trusted certificate is refused at the handshake.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!(
                "unknown client auth {s:?}: use none, requested or required"
            )),
        }
    }
}

/// Where the TLS material lives (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The two server configurations built from one set of files: SSL listeners (client
/// certificates as configured) and SASL_SSL listeners (no client certificates).
pub struct TlsConfigs {
    pub ssl: Arc<ServerConfig>,
    pub sasl_ssl: Arc<ServerConfig>,
}

/// The TLS settings in force, replaced whole by [`Tls::reload`]. A connection takes the
/// configuration current at its accept; reloads affect only later connections.
pub struct Tls {
    files: TlsFiles,
    current: parking_lot::RwLock<Arc<TlsConfigs>>,
}

impl Tls {
    /// Reads the files; an unreadable or inconsistent file stops the start.
    pub fn load(files: TlsFiles) -> anyhow::Result<Tls> {
        let configs = build(&files)?;
        Ok(Tls {
            files,
            current: parking_lot::RwLock::new(Arc::new(configs)),
        })
    }

    pub fn current(&self) -> Arc<TlsConfigs> {
        self.current.read().clone()
    }

    /// Reads the files again (SIGHUP: a renewed certificate, a changed CA). On any error the
    /// configuration in force stays and the error is returned for the log.
    pub fn reload(&self) -> anyhow::Result<()> {
        let configs = build(&self.files)?;
        *self.current.write() = Arc::new(configs);
        Ok(())
    }
}

/// The ring provider: it builds with a C compiler alone (aws-lc-rs needs cmake), at the cost
/// of the post-quantum key exchange rustls deprecates it for.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &TlsFiles) -> anyhow::Result<TlsConfigs> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read --tls-cert {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {} is not PEM", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert {} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "cannot read a private key from --tls-key {}",
            files.key.display()
        )
    })?;
    let builder = || {
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")
    };
    let client_verifier = match (&files.client_ca, files.client_auth) {
        (_, ClientAuth::None) => None,
        (None, _) => anyhow::bail!("--tls-client-auth requested or required needs --tls-client-ca"),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("cannot read --tls-client-ca {}", ca.display()))?
            {
                let cert =
                    cert.with_context(|| format!("--tls-client-ca {} is not PEM", ca.display()))?;
                roots.add(cert).with_context(|| {
                    format!("--tls-client-ca {}: bad certificate", ca.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            Some(verifier.build().context("client certificate verifier")?)
        }
    };
    let ssl = match client_verifier {
        Some(v) => builder()?.with_client_cert_verifier(v),
        None => builder()?.with_no_client_auth(),
    }
    .with_single_cert(certs.clone(), key.clone_key())
    .context("--tls-cert and --tls-key do not make a usable pair")?;
    let sasl_ssl = builder()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    Ok(TlsConfigs {
        ssl: Arc::new(ssl),
        sasl_ssl: Arc::new(sasl_ssl),
    })
}

/// The common name (CN) of a client certificate's subject, the name of its principal
/// (`User:<CN>`). `None` when the certificate cannot be parsed or names no CN (rustls has
/// verified the chain before this is asked).
pub fn certificate_cn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
