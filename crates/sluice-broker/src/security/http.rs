//! Who an HTTP request comes from, when any Kafka listener authenticates: the registry, the
//! HTTP API and the console then take the same users as SASL (`users.rs`), in one of two ways:
//!
//! - **HTTP Basic** (`Authorization: Basic …`): the password is checked against the user's
//!   SCRAM credential (one PBKDF2 run). A success is remembered for
//!   `HTTP_LOGIN_CACHE_MS` under a keyed hash of name and password, so a client sending Basic
//!   on every request pays the hashing once, while a changed or deleted user (any change of
//!   the user table) forgets every remembered login at once.
//! - **A console session**: `POST /ui/login` checks the password once and sets a random
//!   session id in an `HttpOnly`, `SameSite=Strict` cookie. Writes on a session also need the
//!   session's CSRF token in the `X-Sluice-CSRF` header, which only the console's own pages
//!   know (the cookie alone is what a cross-site form could send).
//!
//! Both keep the password in memory with the login: the HTTP API acts as its caller on the
//! Kafka side, authenticating with the caller's own credentials over a SASL listener
//! (`api::ClientPool`), so the same ACLs decide what it may do.
//!
//! The bookkeeping here takes `now` from its caller (`http.rs`, `console/login.rs`, which do the
//! IO); only [`HttpAuth::check`] waits, to run the hash off the async workers.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_auth::KafkaPrincipal;

use crate::limits::{
    HTTP_LOGIN_CACHE_MS, HTTP_MAX_CACHED_LOGINS, HTTP_MAX_SESSIONS, HTTP_MAX_SESSIONS_PER_USER,
    HTTP_SESSION_IDLE_MS, HTTP_SESSION_MAX_MS,
};
use crate::security::users::UserTable;

/// The cookie holding a console session's id.
pub const SESSION_COOKIE: &str = "sluice_session";
/// The header a session's writes carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-sluice-csrf";

/// A user's name and password, as they logged in. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub name: String,
    pub password: String,
}

impl Login {
    /// The `Authorization` header value sending this login as HTTP Basic.
    pub fn basic_header(&self) -> String {
        use base64::Engine;
        let pair = format!("{}:{}", self.name, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Who made an HTTP request: the principal ACLs are checked for, and the login the HTTP API
/// acts with on the Kafka side (None when no listener authenticates: the API then connects
/// as any unauthenticated client does).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<KafkaPrincipal>,
    pub login: Option<Arc<Login>>,
    pub ip: IpAddr,
    /// The console session the request came with, if it came with one.
    pub session: Option<SessionRef>,
}

/// A console session's id and CSRF token (the console renders the token into its pages).
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub id: Arc<str>,
    pub csrf: Arc<str>,
}

impl Caller {
    /// A caller when HTTP authentication is off.
    pub fn open(ip: IpAddr) -> Caller {
        Caller {
            principal: Arc::new(super::anonymous()),
            login: None,
            ip,
            session: None,
        }
    }

    /// The caller of a checked login.
    pub fn user(login: Arc<Login>, ip: IpAddr, session: Option<SessionRef>) -> Caller {
        Caller {
            principal: Arc::new(KafkaPrincipal::user(&login.name)),
            login: Some(login),
            ip,
            session,
        }
    }

    /// A request context for the authorizer's checks (`security::authz`): HTTP requests are
    /// audited under `api_name`.
    pub fn context(&self, api_name: &'static str) -> crate::handlers::RequestContext {
        let mut ctx = crate::handlers::RequestContext::anonymous(0);
        ctx.client_id = "http".into();
        ctx.client_host = format!("/{}", self.ip);
        ctx.listener = Arc::from("HTTP");
        ctx.principal = self.principal.clone();
        ctx.client_ip = self.ip;
        ctx.api_name = api_name;
        ctx
    }
}

/// The credentials of an `Authorization: Basic` header value; None if it is not one (RFC 7617:
/// base64 of `name:password`, the name without a colon).
pub fn parse_basic(value: &str) -> Option<Login> {
    use base64::Engine;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    (!name.is_empty() && !password.is_empty()).then(|| Login {
        name: name.to_string(),
        password: password.to_string(),
    })
}

struct CachedLogin {
    login: Arc<Login>,
    generation: u64,
    until: Instant,
}

struct Session {
    login: Arc<Login>,
    csrf: Arc<str>,
    generation: u64,
    created: Instant,
    last_used: Instant,
}

/// A console session's id and CSRF token, as `POST /ui/login` hands them out.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

/// What a request's session cookie resolved to.
pub enum SessionLookup {
    /// A live session whose user's credentials have not changed since it was checked.
    Valid {
        login: Arc<Login>,
        csrf: Arc<str>,
    },
    /// A live session, but the user table changed: its password must be checked again.
    Recheck {
        login: Arc<Login>,
    },
    Unknown,
}

/// The logins and sessions of the HTTP port.
pub struct HttpAuth {
    /// Any listener authenticates: HTTP requests need credentials.
    pub enabled: bool,
    /// `--http-metrics-auth`: `/metrics` needs them too.
    pub metrics_auth: bool,
    /// Keys the login cache, so what it holds is not a plain hash of anyone's password.
    key: [u8; 32],
    logins: parking_lot::Mutex<HashMap<[u8; 32], CachedLogin>>,
    sessions: parking_lot::Mutex<HashMap<Arc<str>, Session>>,
}

impl HttpAuth {
    pub fn new(enabled: bool, metrics_auth: bool) -> anyhow::Result<HttpAuth> {
        let random = super::random_bytes(32)
            .ok_or_else(|| anyhow::anyhow!("the OS has no entropy source"))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&random);
        Ok(HttpAuth {
            enabled,
            metrics_auth,
            key,
            logins: parking_lot::Mutex::new(HashMap::new()),
            sessions: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    fn cache_key(&self, login: &Login) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((login.name.len() as u64).to_be_bytes());
        h.update(login.name.as_bytes());
        h.update(login.password.as_bytes());
        h.finalize().into()
    }

    /// A login remembered as checked, against the user table of `generation`.
    pub fn cached(&self, login: &Login, generation: u64, now: Instant) -> Option<Arc<Login>> {
        let key = self.cache_key(login);
        let mut logins = self.logins.lock();
        match logins.get(&key) {
            Some(c) if c.generation == generation && now < c.until => Some(c.login.clone()),
            Some(_) => {
                logins.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a login just checked. When full, expired logins go first, then all of them
    /// (the next requests pay one PBKDF2 run each again; nothing is refused).
    pub fn remember(&self, login: Arc<Login>, generation: u64, now: Instant) {
        let key = self.cache_key(&login);
        let mut logins = self.logins.lock();
        if logins.len() >= HTTP_MAX_CACHED_LOGINS {
            logins.retain(|_, c| c.generation == generation && now < c.until);
            if logins.len() >= HTTP_MAX_CACHED_LOGINS {
                logins.clear();
            }
        }
        logins.insert(
            key,
            CachedLogin {
                login,
                generation,
                until: now + Duration::from_millis(HTTP_LOGIN_CACHE_MS),
            },
        );
    }

    /// Opens a console session for a login just checked. A user with
    /// `HTTP_MAX_SESSIONS_PER_USER` sessions loses their least recently used one (so one user
    /// logging in over and over cannot push everyone else out); when `HTTP_MAX_SESSIONS` are
    /// open, the least recently used of all ends.
    pub fn open_session(
        &self,
        login: Arc<Login>,
        generation: u64,
        now: Instant,
    ) -> Option<NewSession> {
        let id = super::random_hex(32)?;
        let csrf = super::random_hex(32)?;
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| live(s, now));
        let oldest = |sessions: &HashMap<Arc<str>, Session>, of_user: Option<&str>| {
            sessions
                .iter()
                .filter(|(_, s)| of_user.is_none_or(|u| s.login.name == u))
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        };
        let users = sessions
            .values()
            .filter(|s| s.login.name == login.name)
            .count();
        if users >= HTTP_MAX_SESSIONS_PER_USER {
            if let Some(k) = oldest(&sessions, Some(&login.name)) {
                sessions.remove(&k);
            }
        }
        if sessions.len() >= HTTP_MAX_SESSIONS {
            if let Some(k) = oldest(&sessions, None) {
                sessions.remove(&k);
            }
        }
        sessions.insert(
            Arc::from(id.as_str()),
            Session {
                login,
                csrf: Arc::from(csrf.as_str()),
                generation,
                created: now,
                last_used: now,
            },
        );
        Some(NewSession { id, csrf })
    }

    /// The session of a cookie's id; using it extends its idle time.
    pub fn session(&self, id: &str, generation: u64, now: Instant) -> SessionLookup {
        let mut sessions = self.sessions.lock();
        let Some(s) = sessions.get_mut(id) else {
            return SessionLookup::Unknown;
        };
        if !live(s, now) {
            sessions.remove(id);
            return SessionLookup::Unknown;
        }
        s.last_used = now;
        if s.generation != generation {
            return SessionLookup::Recheck {
                login: s.login.clone(),
            };
        }
        SessionLookup::Valid {
            login: s.login.clone(),
            csrf: s.csrf.clone(),
        }
    }

    /// Marks a session's login as checked again against the user table of `generation`.
    pub fn rechecked(&self, id: &str, generation: u64) {
        if let Some(s) = self.sessions.lock().get_mut(id) {
            s.generation = generation;
        }
    }

    pub fn end_session(&self, id: &str) {
        self.sessions.lock().remove(id);
    }

    /// Checks a password: one PBKDF2 run, at most `CONCURRENT_AUTHENTICATIONS` at once with
    /// the SASL exchanges', off the async workers. A failure answers after
    /// `FAILED_AUTHENTICATION_DELAY_MS`, as a failed SASL login does.
    pub async fn check(users: &UserTable, login: &Login) -> bool {
        let ok = {
            let _slot = super::AUTHENTICATIONS.acquire().await;
            let verify = || users.verify_password(&login.name, &login.password);
            if tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread
            {
                tokio::task::block_in_place(verify)
            } else {
                verify()
            }
        };
        if !ok {
            tracing::info!(user = ?loggable(&login.name), "HTTP authentication failed: unknown user or wrong password");
            tokio::time::sleep(Duration::from_millis(
                crate::limits::FAILED_AUTHENTICATION_DELAY_MS,
            ))
            .await;
        }
        ok
    }
}

/// A user name as a log line shows it: at most 64 characters, quoted and escaped by `Debug`
/// (it came from the client: no forged lines, no password typed in the wrong field in full).
pub fn loggable(name: &str) -> String {
    name.chars().take(64).collect()
}

fn live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) < Duration::from_millis(HTTP_SESSION_IDLE_MS)
        && now.saturating_duration_since(s.created) < Duration::from_millis(HTTP_SESSION_MAX_MS)
}

/// Whether a request's `Origin` (sent by browsers with every POST) is this server; a request
/// without one (not a browser's) passes.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && origin_host == host
}

/// A cookie's value from a `Cookie` header (`name=value; name2=value2`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(name: &str, password: &str) -> Arc<Login> {
        Arc::new(Login {
            name: name.into(),
            password: password.into(),
        })
    }

    #[test]
    fn basic_header_parses() {
        // "alice:s3cr:et" — a password may hold colons, a name may not.
        let l = parse_basic("Basic YWxpY2U6czNjcjpldA==").unwrap();
        assert_eq!((l.name.as_str(), l.password.as_str()), ("alice", "s3cr:et"));
        assert!(parse_basic("basic YWxpY2U6czNjcjpldA==").is_some());
        assert!(parse_basic("Bearer abc").is_none());
        assert!(parse_basic("Basic !!!").is_none());
        // ":pw" and "name:" are not credentials.
        assert!(parse_basic("Basic OnB3").is_none());
        assert!(parse_basic("Basic bmFtZTo=").is_none());
        assert!(format!("{l:?}").contains("redacted"));
        assert!(!format!("{l:?}").contains("s3cr"));
    }

    #[test]
    fn cached_logins_expire_and_follow_the_user_table() {
        let auth = HttpAuth::new(true, false).unwrap();
        let t0 = Instant::now();
        let alice = login("alice", "pw");
        assert!(auth.cached(&alice, 1, t0).is_none());
        auth.remember(alice.clone(), 1, t0);
        assert!(auth.cached(&alice, 1, t0).is_some());
        // Another password is another key.
        assert!(auth.cached(&login("alice", "pw2"), 1, t0).is_none());
        // The user table changed: forgotten.
        assert!(auth.cached(&alice, 2, t0).is_none());
        assert!(auth.cached(&alice, 1, t0).is_none());
        auth.remember(alice.clone(), 1, t0);
        let later = t0 + Duration::from_millis(HTTP_LOGIN_CACHE_MS);
        assert!(auth.cached(&alice, 1, later).is_none());
    }

    #[test]
    fn sessions_expire_when_idle_and_ask_for_a_recheck_after_user_changes() {
        let auth = HttpAuth::new(true, false).unwrap();
        let t0 = Instant::now();
        let s = auth.open_session(login("alice", "pw"), 1, t0).unwrap();
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        match auth.session(&s.id, 1, t0) {
            SessionLookup::Valid { login, csrf } => {
                assert_eq!(login.name, "alice");
                assert_eq!(&*csrf, s.csrf.as_str());
            }
            _ => panic!("session not found"),
        }
        assert!(matches!(
            auth.session(&s.id, 2, t0),
            SessionLookup::Recheck { .. }
        ));
        auth.rechecked(&s.id, 2);
        assert!(matches!(
            auth.session(&s.id, 2, t0),
            SessionLookup::Valid { .. }
        ));
        // Used within the idle time, it lives on; past it, it is gone.
        let idle = Duration::from_millis(HTTP_SESSION_IDLE_MS);
        let t1 = t0 + idle / 2;
        assert!(matches!(
            auth.session(&s.id, 2, t1),
            SessionLookup::Valid { .. }
        ));
        assert!(matches!(
            auth.session(&s.id, 2, t1 + idle),
            SessionLookup::Unknown
        ));
        let s2 = auth.open_session(login("bob", "pw"), 2, t0).unwrap();
        auth.end_session(&s2.id);
        assert!(matches!(
            auth.session(&s2.id, 2, t0),
            SessionLookup::Unknown
        ));
        assert!(matches!(
            auth.session("nope", 2, t0),
            SessionLookup::Unknown
        ));
    }

    #[test]
    fn one_user_cannot_push_others_out() {
        let auth = HttpAuth::new(true, false).unwrap();
        let t0 = Instant::now();
        let other = auth.open_session(login("bob", "pw"), 1, t0).unwrap();
        let mut mine = Vec::new();
        for i in 0..HTTP_MAX_SESSIONS_PER_USER + 3 {
            let t = t0 + Duration::from_millis(i as u64 + 1);
            mine.push(auth.open_session(login("alice", "pw"), 1, t).unwrap());
        }
        let t = t0 + Duration::from_secs(1);
        assert!(matches!(
            auth.session(&other.id, 1, t),
            SessionLookup::Valid { .. }
        ));
        // alice's three oldest ended; her newest live.
        for s in &mine[..3] {
            assert!(matches!(auth.session(&s.id, 1, t), SessionLookup::Unknown));
        }
        for s in &mine[3..] {
            assert!(matches!(
                auth.session(&s.id, 1, t),
                SessionLookup::Valid { .. }
            ));
        }
    }

    #[test]
    fn sessions_have_an_absolute_lifetime() {
        let auth = HttpAuth::new(true, false).unwrap();
        let t0 = Instant::now();
        let s = auth.open_session(login("alice", "pw"), 1, t0).unwrap();
        let step = Duration::from_millis(HTTP_SESSION_IDLE_MS / 2);
        let mut t = t0;
        while t < t0 + Duration::from_millis(HTTP_SESSION_MAX_MS) - step {
            t += step;
            assert!(matches!(
                auth.session(&s.id, 1, t),
                SessionLookup::Valid { .. }
            ));
        }
        t += step;
        assert!(matches!(auth.session(&s.id, 1, t), SessionLookup::Unknown));
    }

    #[test]
    fn origins_are_compared_with_the_host() {
        let mut h = axum::http::HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(
            axum::http::header::HOST,
            axum::http::HeaderValue::from_static("127.0.0.1:8081"),
        );
        h.insert(
            axum::http::header::ORIGIN,
            axum::http::HeaderValue::from_static("http://127.0.0.1:8081"),
        );
        assert!(same_origin(&h));
        h.insert(
            axum::http::header::ORIGIN,
            axum::http::HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
    }

    #[test]
    fn cookies_parse() {
        assert_eq!(
            cookie("a=1; sluice_session=xyz; b=2", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("sluice_session=xyz", SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie("xsluice_session=xyz", SESSION_COOKIE), None);
    }
}
