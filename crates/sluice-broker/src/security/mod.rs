//! Security (docs/SECURITY.md): listeners and their protocols, TLS, SASL authentication and the
//! users it checks against.
//!
//! - `listener.rs`: `--listener NAME=PROTOCOL://HOST:PORT` and what each protocol asks of a
//!   connection;
//! - `tls.rs`: rustls server configurations from PEM files, reloaded on SIGHUP, and the
//!   principal of a client certificate;
//! - `sasl.rs`: one connection's SASL state (Kafka's `SaslServerAuthenticator`), IO-free;
//! - `users.rs`: the SCRAM credentials of the metadata image, as the mechanisms look them up.
//!
//! The mechanisms themselves (PLAIN, SCRAM, OAUTHBEARER) are the pure `sluice-auth` crate's.

pub mod authz;
pub mod http;
pub mod listener;
pub mod sasl;
pub mod tls;
pub mod users;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use listener::{ListenerSpec, SecurityProtocol};
use sluice_auth::oauthbearer::UnsecuredJwtValidator;
use sluice_auth::{ExchangeConfig, KafkaPrincipal, SaslMechanism};

/// OAUTHBEARER: Kafka's unsecured JWT validator (`--sasl-oauthbearer-unsecured`; development
/// only: anyone can mint such a token), or signed tokens checked against a JSON Web Key Set
/// (`--sasl-oauthbearer-jwks-file` or `-url`, KIP-768), with the required scopes and clock skew.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OAuthBearerConfig {
    pub required_scope: Vec<String>,
    pub allowable_clock_skew_ms: i64,
    /// None: unsecured tokens.
    pub jwks: Option<JwksSource>,
    pub expected_issuer: Option<String>,
    pub expected_audience: Vec<String>,
}

/// Where the key set comes from: read at start, on SIGHUP, and (a URL) every refresh interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

/// How often a key set from a URL is fetched again (Kafka's
/// `sasl.oauthbearer.jwks.endpoint.refresh.ms`).
pub const JWKS_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

impl OAuthBearerConfig {
    /// The validator these settings make (reads the key set: a file, or its URL with a bounded
    /// request).
    pub fn validator(&self) -> anyhow::Result<sluice_auth::oauthbearer::TokenValidator> {
        use sluice_auth::oauthbearer::{JwksValidator, TokenValidator};
        let claims = UnsecuredJwtValidator {
            required_scope: self.required_scope.clone(),
            allowable_clock_skew_ms: self.allowable_clock_skew_ms,
            ..UnsecuredJwtValidator::default()
        };
        let Some(source) = &self.jwks else {
            return Ok(TokenValidator::Unsecured(claims));
        };
        let json = read_jwks(source)?;
        let keys = JwksValidator::parse_keys(&json)
            .map_err(|e| anyhow::anyhow!("OAUTHBEARER key set {source:?}: {e}"))?;
        Ok(TokenValidator::Jwks(Box::new(JwksValidator {
            keys,
            expected_issuer: self.expected_issuer.clone(),
            expected_audience: self.expected_audience.clone(),
            claims,
        })))
    }
}

fn read_jwks(source: &JwksSource) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use std::io::Read;
    let limit = sluice_auth::oauthbearer::MAX_JWKS_BYTES as u64;
    match source {
        JwksSource::File(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot read the key set {}", path.display()))?;
            let mut buf = Vec::new();
            f.take(limit + 1).read_to_end(&mut buf)?;
            Ok(buf)
        }
        JwksSource::Url(url) => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(std::time::Duration::from_secs(10)))
                .build()
                .into();
            let mut resp = agent
                .get(url)
                .call()
                .with_context(|| format!("cannot fetch the key set {url}"))?;
            let mut buf = Vec::new();
            resp.body_mut()
                .as_reader()
                .take(limit + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("cannot read the key set {url}"))?;
            Ok(buf)
        }
    }
}

/// The security settings of `sluice serve`.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// `--listener` (empty: one PLAINTEXT listener on `--kafka-addr`, the zero-config default).
    pub listeners: Vec<ListenerSpec>,
    pub tls: Option<tls::TlsFiles>,
    /// `--sasl-mechanisms` (None: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, and OAUTHBEARER when a
    /// validator is configured).
    pub sasl_mechanisms: Option<Vec<SaslMechanism>>,
    /// `--allow-plain-without-tls`: offer PLAIN on SASL_PLAINTEXT listeners too.
    pub allow_plain_without_tls: bool,
    pub oauthbearer: Option<OAuthBearerConfig>,
    /// `connections.max.reauth.ms` (0: sessions live as long as their credential).
    pub max_reauth_ms: i64,
    /// `SLUICE_BOOTSTRAP_USERS`: users created with SCRAM-SHA-256 and -512 credentials when
    /// the cluster has no users yet.
    pub bootstrap_users: Vec<(String, String)>,
    /// `--authorizer`, `--superuser`, `--allow-everyone-if-no-acl-found`.
    pub authorizer: authz::AuthorizerSettings,
    /// `--http-metrics-auth`: with HTTP authentication on, `/metrics` needs credentials too.
    pub http_metrics_auth: bool,
}

impl SecurityConfig {
    /// Whether any listener authenticates its clients (SASL, or TLS asking for a client
    /// certificate): the HTTP port then asks for credentials too (`security/http.rs`).
    pub fn authenticates(&self) -> bool {
        let client_certs = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth != tls::ClientAuth::None);
        self.listeners.iter().any(|l| {
            l.protocol.uses_sasl() || (l.protocol == SecurityProtocol::Ssl && client_certs)
        })
    }

    /// Checks the settings together (the flags are parsed one by one); the errors name the
    /// flags to change.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for l in &self.listeners {
            if !names.insert(l.name.as_str()) {
                return Err(format!("--listener: the name {} is used twice", l.name));
            }
            if l.protocol.uses_tls() && self.tls.is_none() {
                return Err(format!(
                    "--listener {}={}: needs --tls-cert and --tls-key",
                    l.name,
                    l.protocol.name()
                ));
            }
        }
        let explicit = self.sasl_mechanisms.as_deref().unwrap_or(&[]);
        if explicit.contains(&SaslMechanism::OAuthBearer) && self.oauthbearer.is_none() {
            return Err(
                "--sasl-mechanisms names OAUTHBEARER: it needs a token validator \
                 (--sasl-oauthbearer-jwks-file or -url; --sasl-oauthbearer-unsecured for \
                 development)"
                    .into(),
            );
        }
        if explicit.contains(&SaslMechanism::Plain)
            && !self.allow_plain_without_tls
            && self
                .listeners
                .iter()
                .any(|l| l.protocol == SecurityProtocol::SaslPlaintext)
        {
            return Err(
                "--sasl-mechanisms names PLAIN, which sends passwords in the clear on a \
                 SASL_PLAINTEXT listener: use SASL_SSL, or --allow-plain-without-tls"
                    .into(),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.client_ca.is_some() && tls.client_auth == tls::ClientAuth::None {
                return Err(
                    "--tls-client-ca is given but --tls-client-auth is none: no client \
                     certificate would be asked for (use requested or required)"
                        .into(),
                );
            }
            if tls.client_auth != tls::ClientAuth::None
                && !self
                    .listeners
                    .iter()
                    .any(|l| l.protocol == SecurityProtocol::Ssl)
            {
                return Err(
                    "--tls-client-auth applies to SSL listeners and there is none (SASL_SSL \
                     listeners take their principal from SASL)"
                        .into(),
                );
            }
        }
        if !self.authorizer.enabled && !self.authorizer.config.super_users.is_empty() {
            return Err("--superuser has no effect without --authorizer on".into());
        }
        if self.authorizer.enabled && self.oauthbearer.as_ref().is_some_and(|o| o.jwks.is_none()) {
            return Err(
                "--sasl-oauthbearer-unsecured with --authorizer on would let anyone mint a \
                 token for any principal, a super user's included: use a key set \
                 (--sasl-oauthbearer-jwks-url or -file)"
                    .into(),
            );
        }
        if let Some(JwksSource::Url(url)) = self.oauthbearer.as_ref().and_then(|o| o.jwks.as_ref())
        {
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| url.starts_with(p));
            if !url.starts_with("https://") && !loopback {
                return Err(format!(
                    "--sasl-oauthbearer-jwks-url {url}: the key set must come over https (anyone \
                     on the path could replace the signing keys); plain http only from loopback"
                ));
            }
        }
        if self.authorizer.enabled
            && self.authorizer.config.super_users.is_empty()
            && !self.authorizer.config.allow_everyone_if_no_acl_found
        {
            return Err(
                "--authorizer on needs a --superuser (User:NAME): with no ACLs yet, nobody \
                 else could create the first ones"
                    .into(),
            );
        }
        for s in &self.authorizer.config.super_users {
            if sluice_acl::parse_principal(s).is_none() {
                return Err(format!(
                    "--superuser {s:?}: a principal is TYPE:NAME, e.g. User:admin"
                ));
            }
        }
        if self.http_metrics_auth && !self.authenticates() {
            return Err(
                "--http-metrics-auth has no effect: no listener authenticates, so the HTTP \
                 port asks nobody for credentials"
                    .into(),
            );
        }
        if self.max_reauth_ms < 0 {
            return Err("--connections-max-reauth-ms must be at least 0".into());
        }
        Ok(())
    }

    /// The mechanisms a listener of `protocol` offers.
    pub fn mechanisms_for(&self, protocol: SecurityProtocol) -> Vec<SaslMechanism> {
        let default = [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
        ];
        self.sasl_mechanisms
            .clone()
            .unwrap_or_else(|| default.to_vec())
            .into_iter()
            .filter(|m| *m != SaslMechanism::OAuthBearer || self.oauthbearer.is_some())
            .filter(|m| {
                *m != SaslMechanism::Plain || protocol.uses_tls() || self.allow_plain_without_tls
            })
            .collect()
    }
}

/// What the broker holds for security while it runs.
pub struct Security {
    pub config: SecurityConfig,
    /// HTTP logins and console sessions.
    pub http: http::HttpAuth,
    pub tls: Option<tls::Tls>,
    pub authorizer: authz::AuthorizerSettings,
    sasl_plaintext: Arc<sasl::SaslSettings>,
    sasl_ssl: Arc<sasl::SaslSettings>,
}

impl Security {
    /// Loads the TLS files (a bad file stops the start) and the key of SCRAM's mock salts
    /// from `data_dir`.
    pub fn new(config: SecurityConfig, data_dir: &std::path::Path) -> anyhow::Result<Security> {
        let tls = match &config.tls {
            Some(files) => Some(tls::Tls::load(files.clone())?),
            None => None,
        };
        let mock_salt_key = mock_salt_key(data_dir)?;
        let oauthbearer = config
            .oauthbearer
            .as_ref()
            .map(|o| o.validator())
            .transpose()?;
        let settings = |protocol| {
            Arc::new(sasl::SaslSettings {
                mechanisms: config.mechanisms_for(protocol),
                exchange: parking_lot::RwLock::new(ExchangeConfig {
                    oauthbearer: oauthbearer.clone(),
                    mock_salt_key: mock_salt_key.clone(),
                    mock_iterations: DEFAULT_SCRAM_ITERATIONS,
                }),
                max_reauth_ms: config.max_reauth_ms,
            })
        };
        Ok(Security {
            http: http::HttpAuth::new(config.authenticates(), config.http_metrics_auth)?,
            authorizer: config.authorizer.clone(),
            sasl_plaintext: settings(SecurityProtocol::SaslPlaintext),
            sasl_ssl: settings(SecurityProtocol::SaslSsl),
            config,
            tls,
        })
    }

    /// Reads the OAUTHBEARER key set again (SIGHUP, the URL's refresh); on any error the one
    /// in force stays.
    pub fn reload_oauthbearer(&self) -> anyhow::Result<()> {
        let Some(config) = &self.config.oauthbearer else {
            return Ok(());
        };
        if config.jwks.is_none() {
            return Ok(());
        }
        let validator = config.validator()?;
        for settings in [&self.sasl_plaintext, &self.sasl_ssl] {
            settings.exchange.write().oauthbearer = Some(validator.clone());
        }
        Ok(())
    }

    /// The SASL settings of a listener of `protocol` (None: it does not use SASL).
    pub fn sasl_settings(&self, protocol: SecurityProtocol) -> Option<Arc<sasl::SaslSettings>> {
        match protocol {
            SecurityProtocol::SaslPlaintext => Some(self.sasl_plaintext.clone()),
            SecurityProtocol::SaslSsl => Some(self.sasl_ssl.clone()),
            _ => None,
        }
    }
}

/// The file holding the key SCRAM derives unknown users' salts from.
const MOCK_SALT_KEY_FILE: &str = "sasl-mock-salt.key";

/// The key of SCRAM's mock salts: a SCRAM exchange for a user that does not exist answers with
/// a salt derived from the name and this key, so a prober sees the same salt every time, as for
/// a real user, and cannot tell the two apart. Random, made once per data directory and kept.
fn mock_salt_key(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let path = data_dir.join(MOCK_SALT_KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() == 32 => return Ok(key),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "replacing a malformed SCRAM mock-salt key")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key = random_bytes(32).context("the OS has no entropy source")?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &key).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// Password checks (SASL steps, HTTP logins) running at once across connections
/// ([`crate::limits::CONCURRENT_AUTHENTICATIONS`]).
pub static AUTHENTICATIONS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(crate::limits::CONCURRENT_AUTHENTICATIONS);

/// Kafka's principal of a connection that has not authenticated (PLAINTEXT, or SSL without a
/// client certificate).
pub fn anonymous() -> KafkaPrincipal {
    KafkaPrincipal::user("ANONYMOUS")
}

/// `n` random bytes from the OS's generator (SCRAM salts and nonces); None if the OS has no
/// entropy source, and the caller then refuses rather than use a predictable value.
pub fn random_bytes(n: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

/// A printable SCRAM server nonce: the hex of 18 random bytes.
pub fn nonce() -> Option<String> {
    random_hex(18)
}

/// The hex of `n` random bytes (nonces, console session ids and CSRF tokens).
pub fn random_hex(n: usize) -> Option<String> {
    Some(hex(&random_bytes(n)?))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Iterations of the SCRAM credentials Sluice derives itself (bootstrap users, `sluice user
/// create`'s default): twice Kafka's minimum.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 8192;

/// `SLUICE_BOOTSTRAP_USERS`: on a cluster with no users yet, creates each with SCRAM-SHA-256
/// and SCRAM-SHA-512 credentials — the way in to a cluster whose every listener authenticates.
/// Applied once: when any user exists the variable is ignored (a password changed since is
/// never reset by a restart). A single node applies it before it serves; a cluster node once it
/// has joined, retrying while the controller is out of reach.
pub async fn bootstrap_users(broker: &Arc<crate::Broker>) -> anyhow::Result<()> {
    if broker.security.config.bootstrap_users.is_empty() {
        return Ok(());
    }
    if broker.metadata.cluster.is_single_node() {
        return apply_bootstrap_users(broker).await;
    }
    let broker = broker.clone();
    tokio::spawn(async move {
        for _ in 0..120 {
            match apply_bootstrap_users(&broker).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "bootstrap users not applied yet"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        tracing::error!("SLUICE_BOOTSTRAP_USERS could not be applied within 2 minutes");
    });
    Ok(())
}

async fn apply_bootstrap_users(broker: &crate::Broker) -> anyhow::Result<()> {
    if !broker.metadata.scram_users().is_empty() {
        tracing::info!("the cluster has users: SLUICE_BOOTSTRAP_USERS is not applied again");
        return Ok(());
    }
    let mut upsertions = Vec::new();
    for (name, password) in &broker.security.config.bootstrap_users {
        for mechanism in [
            sluice_auth::scram::ScramMechanism::Sha256,
            sluice_auth::scram::ScramMechanism::Sha512,
        ] {
            let salt = random_bytes(32)
                .ok_or_else(|| anyhow::anyhow!("the OS has no entropy source for salts"))?;
            let credential = sluice_auth::scram::ScramCredential::from_password(
                mechanism,
                password.as_bytes(),
                &salt,
                DEFAULT_SCRAM_ITERATIONS,
            );
            upsertions.push((name.clone(), users::encode(&credential)));
        }
    }
    broker
        .metadata
        .alter_scram_credentials(Vec::new(), upsertions, crate::broker::now_ms())
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap users: {}", e.message))?;
    let names: Vec<&str> = broker
        .security
        .config
        .bootstrap_users
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    tracing::info!(users = ?names, "created the bootstrap users (SCRAM-SHA-256 and SCRAM-SHA-512)");
    Ok(())
}

/// Parses `SLUICE_BOOTSTRAP_USERS` (`name:password,...`; a password may hold ':' but not ',').
pub fn parse_bootstrap_users(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            let (name, password) = entry
                .split_once(':')
                .ok_or_else(|| "SLUICE_BOOTSTRAP_USERS entries are name:password".to_string())?;
            let name = name.trim();
            if name.is_empty() || name.len() > crate::limits::MAX_USER_NAME_BYTES {
                return Err(format!(
                    "SLUICE_BOOTSTRAP_USERS: user names are 1 to {} bytes",
                    crate::limits::MAX_USER_NAME_BYTES
                ));
            }
            if password.is_empty() {
                return Err(format!(
                    "SLUICE_BOOTSTRAP_USERS: {name} has an empty password"
                ));
            }
            Ok((name.to_string(), password.to_string()))
        })
        .collect()
}

/// Reloads the TLS files and the OAUTHBEARER key set on every SIGHUP until `stop` (renewed
/// certificates, rotated signing keys, without a restart), and fetches a key set from a URL
/// again every [`JWKS_REFRESH`]. A failed reload keeps what is in force and logs why.
pub async fn reload_on_sighup(
    broker: Arc<crate::Broker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS files and key sets will not be reloaded");
            return;
        }
    };
    let from_url = matches!(
        broker
            .security
            .config
            .oauthbearer
            .as_ref()
            .and_then(|o| o.jwks.as_ref()),
        Some(JwksSource::Url(_))
    );
    let mut refresh =
        tokio::time::interval_at(tokio::time::Instant::now() + JWKS_REFRESH, JWKS_REFRESH);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = refresh.tick(), if from_url => reload_key_set(&broker, "refresh").await,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                if let Some(tls) = broker.security.tls.as_ref() {
                    match tls.reload() {
                        Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate, key and client CA"),
                        Err(e) => tracing::error!(error = format!("{e:#}"), "SIGHUP: TLS files not reloaded; the previous ones stay in force"),
                    }
                }
                reload_key_set(&broker, "SIGHUP").await;
            }
        }
    }
}

/// Reads the OAUTHBEARER key set again on the blocking pool (a file, or a bounded fetch).
async fn reload_key_set(broker: &Arc<crate::Broker>, why: &'static str) {
    let has_jwks = broker
        .security
        .config
        .oauthbearer
        .as_ref()
        .is_some_and(|o| o.jwks.is_some());
    if !has_jwks {
        return;
    }
    let b = broker.clone();
    match tokio::task::spawn_blocking(move || b.security.reload_oauthbearer()).await {
        Ok(Ok(())) => tracing::info!(why, "reloaded the OAUTHBEARER key set"),
        Ok(Err(e)) => tracing::error!(
            why,
            error = format!("{e:#}"),
            "OAUTHBEARER key set not reloaded; the previous one stays in force"
        ),
        Err(e) => tracing::error!(why, error = %e, "OAUTHBEARER key set reload failed"),
    }
}
