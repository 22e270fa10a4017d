//! How a client reaches a secured listener, as Kafka's clients configure it: the security
//! protocol (`security.protocol`: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS settings (the
//! CA to trust, an optional client certificate for mutual TLS) and SASL credentials (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512).
//!
//! [`Security`] is the plain settings value a [`ClientConfig`](crate::ClientConfig) carries
//! (default: PLAINTEXT). [`Security::connector`] checks it and reads the files once, giving the
//! [`Connector`] every connection of a [`Client`](crate::Client) is opened with: TCP, then the
//! TLS handshake (rustls with the ring provider), then ApiVersions, then SaslHandshake and the
//! SaslAuthenticate rounds (in [`crate::connection`]).
//!
//! TLS always verifies the broker: a CA file is required, there are no built-in system roots
//! (a Kafka cluster's certificates are almost always signed by the operator's own CA). The
//! name checked is the host the connection goes to (an IP address is checked against the
//! certificate's IP SANs), or [`TlsSettings::server_name`]. Two explicit, documented escapes:
//! [`TlsSettings::skip_hostname_verification`] (Kafka's empty
//! `ssl.endpoint.identification.algorithm`: the chain is still verified) and
//! [`TlsSettings::insecure_skip_verify`] (nothing about the certificate is verified: the traffic
//! is encrypted but the broker is not authenticated — for a test broker with a self-signed
//! certificate reached by IP, never for production).
//!
//! [`properties`] reads Kafka client properties files (`--command-config`).

pub mod properties;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use sluice_auth::SaslMechanism;

use crate::error::{Error, Result};

pub use sluice_auth::SecurityProtocol;

/// The SASL mechanisms this client speaks.
pub const CLIENT_MECHANISMS: [SaslMechanism; 3] = [
    SaslMechanism::Plain,
    SaslMechanism::ScramSha256,
    SaslMechanism::ScramSha512,
];

/// A SASL mechanism by its Kafka name (case-sensitive, as Kafka matches it), if this client
/// speaks it.
pub fn parse_mechanism(name: &str) -> std::result::Result<SaslMechanism, String> {
    let name = name.trim();
    match SaslMechanism::from_name(name) {
        Some(m) if CLIENT_MECHANISMS.contains(&m) => Ok(m),
        Some(m) => Err(format!(
            "SASL mechanism {m} is not supported by this client: use PLAIN, SCRAM-SHA-256 or \
             SCRAM-SHA-512"
        )),
        None => Err(format!(
            "unknown SASL mechanism {name:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 \
             (upper case, as Kafka names them)"
        )),
    }
}

/// TLS settings (used by SSL and SASL_SSL). All files are PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA certificates the brokers' certificates must chain to (Kafka's `ssl.ca.location`,
    /// or a PEM `ssl.truststore.location`). Required unless `insecure_skip_verify`.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (then its chain) for mutual TLS (`ssl.certificate.location`).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key, PKCS#8, PKCS#1 or SEC1, not encrypted
    /// (`ssl.key.location`). May be the same file as `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The name the broker's certificate must carry, for every broker of the cluster. Default:
    /// the host of the address connected to (an IP address is matched against IP SANs).
    pub server_name: Option<String>,
    /// Verify the certificate chain but not the name in it (Kafka's empty
    /// `ssl.endpoint.identification.algorithm`).
    pub skip_hostname_verification: bool,
    /// Verify nothing about the broker's certificate: the connection is encrypted but the broker
    /// is not authenticated, so anyone on the path can impersonate it (and learn a PLAIN
    /// password). For a test broker with a self-signed certificate, reached by IP; never for
    /// production. With it, no CA file is needed.
    pub insecure_skip_verify: bool,
    /// Certificates accepted as they are, whatever signed them and whatever name they carry
    /// (PEM; the first certificate of the file, the end entity): a broker's HTTP API connects
    /// to the broker's own listener and trusts the certificate it serves. Other certificates
    /// are still verified against `ca_file`, when there is one.
    pub pinned_cert: Option<PathBuf>,
}

/// SASL credentials. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to connect: the security protocol and what it needs. The default is PLAINTEXT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub protocol: SecurityProtocol,
    /// Used when `protocol` is SSL or SASL_SSL; ignored otherwise (as Kafka ignores `ssl.*`).
    pub tls: TlsSettings,
    /// Required when `protocol` is SASL_PLAINTEXT or SASL_SSL; ignored otherwise.
    pub sasl: Option<SaslCredentials>,
}

impl Security {
    pub fn plaintext() -> Security {
        Security::default()
    }

    /// Checks that the settings fit the protocol and reads the TLS files. Errors are
    /// [`Error::Config`], naming the setting.
    pub fn connector(&self) -> Result<Connector> {
        let tls = if self.protocol.uses_tls() {
            Some(Arc::new(TlsConnector::new(&self.tls)?))
        } else {
            None
        };
        let sasl = if self.protocol.uses_sasl() {
            let creds = self.sasl.clone().ok_or_else(|| {
                Error::Config(format!(
                    "{} needs SASL credentials: a mechanism, a user name and a password",
                    self.protocol
                ))
            })?;
            parse_mechanism(creds.mechanism.name()).map_err(Error::Config)?;
            if creds.username.is_empty() {
                return Err(Error::Config("the SASL user name is empty".into()));
            }
            if creds.password.is_empty() {
                return Err(Error::Config("the SASL password is empty".into()));
            }
            Some(Arc::new(creds))
        } else {
            None
        };
        Ok(Connector { tls, sasl })
    }
}

/// [`Security`] made ready to open connections: the TLS configuration built once, the SASL
/// credentials to authenticate with. Cheap to clone.
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<Arc<TlsConnector>>,
    sasl: Option<Arc<SaslCredentials>>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl Connector {
    /// Plain TCP, no SASL.
    pub fn plaintext() -> Connector {
        Connector::default()
    }

    pub(crate) fn tls(&self) -> Option<&TlsConnector> {
        self.tls.as_deref()
    }

    pub(crate) fn sasl(&self) -> Option<&SaslCredentials> {
        self.sasl.as_deref()
    }
}

pub(crate) struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

/// The ring provider: it builds with a C compiler alone (aws-lc-rs needs cmake), at the cost
/// of the post-quantum key exchange rustls deprecates it for. The same choice as the broker's
/// (`sluice_broker::security::tls::provider`).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConnector {
    fn new(settings: &TlsSettings) -> Result<TlsConnector> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS protocol versions: {e}")))?;
        let builder = if settings.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Accepting {
                    accept: Accept::Any,
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else if let Some(pinned) = &settings.pinned_cert {
            let pinned = read_certs(pinned, "pinned TLS certificate")?
                .into_iter()
                .next()
                .into_iter()
                .collect();
            let chain = match settings.ca_file.as_deref() {
                None => None,
                Some(ca) => Some(
                    WebPkiServerVerifier::builder_with_provider(
                        Arc::new(read_roots(ca)?),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| Error::Config(format!("TLS CA file {}: {e}", ca.display())))?,
                ),
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Accepting {
                    accept: Accept::Pinned {
                        certs: pinned,
                        chain: chain.map(|inner| AnyName { inner }),
                    },
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else {
            let ca = settings.ca_file.as_deref().ok_or_else(|| {
                Error::Config(
                    "TLS needs the CA certificate that signed the brokers' certificates (a PEM \
                     file, Kafka's ssl.ca.location); to connect without verifying the broker \
                     (a test broker with a self-signed certificate), skip verification \
                     explicitly"
                        .into(),
                )
            })?;
            let roots = Arc::new(read_roots(ca)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::Config(format!("TLS CA file {}: {e}", ca.display())))?;
            if settings.skip_hostname_verification {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName { inner: webpki }))
            } else {
                builder.with_webpki_verifier(webpki)
            }
        };
        let config = match (&settings.client_cert, &settings.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "TLS client certificate")?;
                let key = read_key(key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::Config(format!(
                        "TLS client certificate {} and key do not make a usable pair: {e}",
                        cert.display()
                    ))
                })?
            }
            (Some(_), None) => {
                return Err(Error::Config(
                    "a TLS client certificate needs its private key too".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "a TLS client key needs its certificate too".into(),
                ))
            }
        };
        let server_name = match settings.server_name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(ServerName::try_from(name.to_owned()).map_err(|_| {
                Error::Config(format!(
                    "TLS server name {name:?} is neither a DNS name nor an IP address"
                ))
            })?),
        };
        Ok(TlsConnector {
            config: Arc::new(config),
            server_name,
        })
    }

    pub(crate) fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// The name `addr`'s certificate must carry: the configured one, else the host of `addr`
    /// (`host:port`, `[v6]:port`).
    pub(crate) fn server_name(&self, addr: &str) -> Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host_of(addr);
        ServerName::try_from(host.to_owned()).map_err(|_| {
            Error::Config(format!(
                "cannot verify the TLS certificate of {addr}: {host:?} is neither a DNS name \
                 nor an IP address (set a TLS server name)"
            ))
        })
    }
}

/// The host part of `host:port` or `[v6]:port` (brackets removed).
pub(crate) fn host_of(addr: &str) -> &str {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        // No port, or an IPv6 address without brackets.
        _ => addr,
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read the {what} {}: {e}", path.display())))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("the {what} {} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "the {what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----){}",
            path.display(),
            if looks_binary(&pem) {
                "; it looks like a binary store (JKS or PKCS#12): export the certificates as PEM"
            } else {
                ""
            }
        )));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "TLS CA file")? {
        roots.add(cert).map_err(|e| {
            Error::Config(format!(
                "the TLS CA file {} holds an unusable certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_file(path, "TLS client key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = if String::from_utf8_lossy(&pem).contains("ENCRYPTED") {
            "the key is encrypted, which this client does not support: decrypt it with \
             `openssl pkey -in KEY -out PLAIN-KEY`"
                .to_owned()
        } else if looks_binary(&pem) {
            "it looks like a binary store (JKS or PKCS#12): export the key as PEM".to_owned()
        } else if matches!(e, rustls::pki_types::pem::Error::NoItemsFound) {
            "it has no -----BEGIN PRIVATE KEY----- (or RSA, EC) section".to_owned()
        } else {
            e.to_string()
        };
        Error::Config(format!(
            "no PEM private key in the TLS client key {}: {why}",
            path.display()
        ))
    })
}

fn looks_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(64).any(|b| *b == 0 || *b >= 0x80)
}

/// Verifies the chain (through the webpki verifier) but accepts any name in it.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The verifiers that decide on the certificate itself, not (only) on a chain to a CA. The
/// handshake signatures are always checked against the certificate's key, so the session keys
/// belong to whoever holds it; what differs is what says who that is.
#[derive(Debug)]
enum Accept {
    /// `insecure_skip_verify`: any certificate; nothing says who holds it.
    Any,
    /// `pinned_cert`: these certificates as they are; any other is verified against the CA
    /// file (any name), or refused when there is none.
    Pinned {
        certs: Vec<CertificateDer<'static>>,
        chain: Option<AnyName>,
    },
}

#[derive(Debug)]
struct Accepting {
    accept: Accept,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Accepting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let (certs, chain) = match &self.accept {
            Accept::Any => return Ok(ServerCertVerified::assertion()),
            Accept::Pinned { certs, chain } => (certs, chain),
        };
        if certs.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        match chain {
            Some(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_case_insensitively() {
        for p in SecurityProtocol::ALL {
            assert_eq!(p.name().parse::<SecurityProtocol>(), Ok(p));
            assert_eq!(p.name().to_lowercase().parse::<SecurityProtocol>(), Ok(p));
        }
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Ssl.uses_sasl());
        assert!(!SecurityProtocol::SaslPlaintext.uses_tls());
    }

    #[test]
    fn mechanisms_are_kafkas_names() {
        assert_eq!(parse_mechanism("PLAIN"), Ok(SaslMechanism::Plain));
        assert_eq!(
            parse_mechanism(" SCRAM-SHA-512 "),
            Ok(SaslMechanism::ScramSha512)
        );
        assert!(parse_mechanism("plain").is_err());
        assert!(parse_mechanism("OAUTHBEARER")
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_mechanism("GSSAPI").is_err());
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("broker-1.example:9093"), "broker-1.example");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn settings_are_checked_before_connecting() {
        let ok = Security::plaintext().connector().unwrap();
        assert!(ok.tls().is_none() && ok.sasl().is_none());
        let e = Security {
            protocol: SecurityProtocol::Ssl,
            ..Security::default()
        }
        .connector()
        .unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("CA certificate")),
            "{e}"
        );
        let e = Security {
            protocol: SecurityProtocol::SaslPlaintext,
            ..Security::default()
        }
        .connector()
        .unwrap_err();
        assert!(e.to_string().contains("SASL credentials"), "{e}");
        let sasl = |mechanism| Security {
            protocol: SecurityProtocol::SaslPlaintext,
            sasl: Some(SaslCredentials {
                mechanism,
                username: "alice".into(),
                password: "secret".into(),
            }),
            ..Security::default()
        };
        let c = sasl(SaslMechanism::ScramSha256).connector().unwrap();
        assert!(c.tls().is_none());
        assert_eq!(c.sasl().map(|s| s.username.as_str()), Some("alice"));
        assert!(!format!("{c:?}").contains("secret"));
        assert!(sasl(SaslMechanism::OAuthBearer).connector().is_err());
        // Without verification no CA is needed; the address's host is the server name.
        let insecure = Security {
            protocol: SecurityProtocol::SaslSsl,
            tls: TlsSettings {
                insecure_skip_verify: true,
                ..TlsSettings::default()
            },
            ..sasl(SaslMechanism::Plain)
        }
        .connector()
        .unwrap();
        let tls = insecure.tls().unwrap();
        assert_eq!(
            tls.server_name("10.0.0.7:9093").unwrap(),
            ServerName::try_from("10.0.0.7").unwrap()
        );
        let e = Security {
            protocol: SecurityProtocol::Ssl,
            tls: TlsSettings {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..TlsSettings::default()
            },
            ..Security::default()
        }
        .connector()
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_binary_store_is_named() {
        let dir = std::env::temp_dir().join(format!("sluice-client-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jks = dir.join("truststore.jks");
        std::fs::write(&jks, [0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0]).unwrap();
        let e = Security {
            protocol: SecurityProtocol::Ssl,
            tls: TlsSettings {
                ca_file: Some(jks),
                ..TlsSettings::default()
            },
            ..Security::default()
        }
        .connector()
        .unwrap_err();
        assert!(e.to_string().contains("binary store"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
