//! The web console at `/ui/` on the HTTP port.
//!
//! Pages are rendered on the server (minijinja templates, `console/templates/`) from the JSON
//! of the HTTP API itself: a page handler calls `/v1/…` and the registry's REST API
//! in-process, through the same router a client reaches ([`Console::get`]). So the console
//! shows exactly what the API returns, and every write it makes is an API call the browser
//! sends itself (`console/static/console.js`, `fetch` with a JSON body): nothing the console
//! does is out of reach of a script.
//!
//! Assets (the console's own CSS and JS, vendored uPlot for charts) and templates are embedded
//! with `rust-embed`, in debug builds too, so the Rust build never needs Node and a binary is
//! the whole console. The pages work without JavaScript for reading (plain links and GET
//! forms); JavaScript adds live refresh, the live tail (Server-Sent Events from
//! `/v1/topics/{t}/tail`), the lag chart and the write actions.
//!
//! `--console-read-only` hides every write control here, and `http.rs` refuses the API's admin
//! writes, so a hidden button cannot be replaced by a hand-made request.
//!
//! With HTTP authentication on, a browser logs in at [`LOGIN_PATH`] (`login.rs`) and carries a
//! session cookie; each page makes its in-process API calls as that user ([`Page`]), and
//! renders the session's CSRF token for `console.js` to send with its writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Environment, Value as Tv};
use rust_embed::RustEmbed;
use serde_json::Value;
use tower::ServiceExt;

use crate::limits::CONSOLE_MAX_API_RESPONSE_BYTES;
use crate::security::hex;
use crate::security::http::{Caller, SessionRef};

mod login;
mod pages;

pub use login::{to_login, LOGIN_PATH};

/// The console's stylesheet, script and the vendored chart library with its licence and
/// manifest (`console/static/`).
#[derive(RustEmbed)]
#[folder = "console/static/"]
struct Static;

/// The page templates (`console/templates/`).
#[derive(RustEmbed)]
#[folder = "console/templates/"]
struct Templates;

/// What the page handlers share.
pub struct Console {
    /// The HTTP API and the schema registry, called in-process.
    api: Router,
    /// For logging in: the users, the sessions.
    broker: Arc<crate::Broker>,
    env: Environment<'static>,
    read_only: bool,
    /// A short hash of the assets, appended to their URLs so a new binary's assets are fetched
    /// while a browser may cache each version for good.
    asset_version: String,
    /// Per topic, the log end offsets summed, when the overview last looked: message rates are
    /// the difference between two looks (`pages::overview`).
    rates: parking_lot::Mutex<Option<(std::time::Instant, BTreeMap<String, i64>)>>,
}

/// A failed API call, shown as the page's error.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// The console's router; `api` is the HTTP API and registry router it renders from.
pub fn router(api: Router, broker: Arc<crate::Broker>) -> Router {
    let read_only = broker.config.console_read_only;
    let mut env = Environment::new();
    for name in Templates::iter() {
        let Some(file) = Templates::get(&name) else {
            continue;
        };
        let source = String::from_utf8_lossy(&file.data).into_owned();
        if let Err(e) = env.add_template_owned(name.into_owned(), source) {
            // A template that does not parse is a build defect the browser tests catch; the
            // page that uses it answers 500 with this error rather than the broker not starting.
            tracing::error!("console template does not parse: {e:#}");
        }
    }
    env.add_filter("num", filters::num);
    env.add_filter("bytes", filters::bytes);
    env.add_filter("age", filters::age);
    env.add_filter("time", filters::time);
    env.add_filter("pretty", filters::pretty);
    env.add_filter("pathseg", filters::pathseg);
    let console = Arc::new(Console {
        api,
        broker,
        env,
        read_only,
        asset_version: asset_version(),
        rates: parking_lot::Mutex::new(None),
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/static/{file}", get(asset))
        .route(LOGIN_PATH, get(login::page).post(login::login))
        .route(login::LOGOUT_PATH, axum::routing::post(login::logout))
        .route("/ui/topics", get(pages::topics))
        .route("/ui/topics/{topic}", get(pages::topic))
        .route("/ui/topics/{topic}/messages", get(pages::messages))
        .route("/ui/groups", get(pages::groups))
        .route("/ui/groups/{group}", get(pages::group))
        .route("/ui/share-groups", get(pages::share_groups))
        .route("/ui/share-groups/{group}", get(pages::share_group))
        .route("/ui/dlqs", get(pages::dlqs))
        .route("/ui/dlqs/{topic}", get(pages::dlq))
        .route("/ui/schemas", get(pages::schemas))
        .route("/ui/schemas/{subject}", get(pages::subject))
        .with_state(console)
}

fn asset_version() -> String {
    let mut all: Vec<[u8; 32]> = Static::iter()
        .filter_map(|n| Static::get(&n).map(|f| f.metadata.sha256_hash()))
        .collect();
    all.sort_unstable();
    let folded = all
        .iter()
        .flatten()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{:012x}", folded & 0xffff_ffff_ffff)
}

/// `/ui/static/{file}`: an embedded asset with its ETag; cached for good when the URL carries
/// the asset version.
async fn asset(
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(found) = Static::get(&file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", hex(&found.metadata.sha256_hash()[..16]));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let cache = if query.is_some_and(|q| q.starts_with("v=")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_owned()),
        ],
        found.data.into_owned(),
    )
        .into_response()
}

/// Console pages forbid scripts and styles from anywhere but the console itself, and framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// What a page handler works with: the console, and who asked for the page (the API calls it
/// makes in-process are made as them, and a session's CSRF token goes into the page).
pub struct Page {
    console: Arc<Console>,
    caller: Option<Caller>,
}

impl std::ops::Deref for Page {
    type Target = Console;

    fn deref(&self) -> &Console {
        &self.console
    }
}

impl axum::extract::FromRequestParts<Arc<Console>> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        console: &Arc<Console>,
    ) -> Result<Page, Self::Rejection> {
        Ok(Page {
            console: console.clone(),
            caller: parts.extensions.get::<Caller>().cloned(),
        })
    }
}

impl Page {
    /// `GET path` on the HTTP API, in-process; the JSON body, or the API's error.
    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(Method::GET, path, None).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(caller) = &self.caller {
            req = req.extension(caller.clone());
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let req = req
            .body(body)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("bad path {path}: {e}")))?;
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), CONSOLE_MAX_API_RESPONSE_BYTES)
            .await
            .map_err(|e| {
                Failure::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the answer of {path} is over {CONSOLE_MAX_API_RESPONSE_BYTES} bytes: {e}"
                    ),
                )
            })?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(Failure::new(status, message))
    }

    /// Renders `template` with the page's values and what every page has.
    fn render(&self, template: &str, title: &str, nav: &str, page: Tv) -> Response {
        let session = self.caller.as_ref().and_then(|c| c.session.as_ref());
        let user = self
            .caller
            .as_ref()
            .and_then(|c| c.login.as_ref())
            .map(|l| l.name.clone());
        self.console
            .render_as(template, title, nav, page, session, user)
    }

    /// The page for a failed API call, with the API's status.
    fn failed(&self, nav: &str, failure: Failure) -> Response {
        let mut resp = self.render(
            "error.html",
            "Error",
            nav,
            context! { status => failure.status.as_u16(), message => failure.message },
        );
        *resp.status_mut() = failure.status;
        resp
    }
}

impl Console {
    /// Renders `template` with the page's values and what every page has: the session's
    /// CSRF token and user, when there is one.
    fn render_as(
        &self,
        template: &str,
        title: &str,
        nav: &str,
        page: Tv,
        session: Option<&SessionRef>,
        user: Option<String>,
    ) -> Response {
        let globals = context! {
            read_only => self.read_only,
            v => self.asset_version,
            title => title,
            nav => nav,
            csrf => session.map(|s| s.csrf.to_string()),
            session => session.is_some(),
            user => user,
        };
        let rendered = self
            .env
            .get_template(template)
            .and_then(|t| t.render(context! { ..page, ..globals }));
        match rendered {
            Ok(html) => html_response(StatusCode::OK, html),
            Err(e) => {
                tracing::error!("console page {template}: {e:#}");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "<!doctype html><title>Console error</title><p>{}",
                        escape(&e.to_string())
                    ),
                )
            }
        }
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Not kept anywhere: a page may carry a session's CSRF token.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether `--console-read-only` refuses this request: every write but an application's data
/// path. What stays writable is an allow-list: the queue API (`POST /v1/queues/…`, like the
/// Kafka port), and the schema registry's registrations, lookups and compatibility checks
/// (`POST /subjects/…`, `POST /compatibility/…`), which producers and the console's check use,
/// and logging in and out of the console, which changes nothing but the session.
/// Everything else — the admin API, produce over HTTP, registry deletes, config and mode
/// changes — is refused.
pub fn read_only_refuses(method: &Method, path: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let data_path = *method == Method::POST
        && (path.starts_with("/v1/queues/")
            || path.starts_with("/subjects/")
            || path.starts_with("/compatibility/")
            || path == LOGIN_PATH
            || path == login::LOGOUT_PATH);
    !data_path
}

/// Template filters.
mod filters {
    use minijinja::Value as Tv;

    fn as_i64(v: &Tv) -> Option<i64> {
        i64::try_from(v.clone()).ok()
    }

    /// 1234567 → "1,234,567"; anything not a number as it is.
    pub fn num(v: Tv) -> String {
        let Some(n) = as_i64(&v) else {
            if v.is_none() || v.is_undefined() {
                return "–".into();
            }
            return v.to_string();
        };
        let digits = n.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        if n < 0 {
            out.push('-');
        }
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// A byte count in binary units.
    pub fn bytes(v: Tv) -> String {
        let Some(n) = as_i64(&v) else {
            return "–".into();
        };
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut x = n as f64;
        let mut u = 0;
        while x.abs() >= 1024.0 && u < units.len() - 1 {
            x /= 1024.0;
            u += 1;
        }
        if u == 0 {
            format!("{n} B")
        } else {
            format!("{x:.1} {}", units[u])
        }
    }

    /// Milliseconds as a short age: "45 s", "12 min", "3 h", "2 d".
    pub fn age(v: Tv) -> String {
        let Some(ms) = as_i64(&v) else {
            return "–".into();
        };
        let s = ms / 1000;
        match s {
            _ if s < 60 => format!("{s} s"),
            _ if s < 3600 => format!("{} min", s / 60),
            _ if s < 86_400 => format!("{} h", s / 3600),
            _ => format!("{} d", s / 86_400),
        }
    }

    /// Milliseconds since the epoch as UTC, to the millisecond.
    pub fn time(v: Tv) -> String {
        as_i64(&v)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(
                || "–".into(),
                |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
            )
    }

    /// A value as indented JSON (strings holding JSON are parsed first).
    pub fn pretty(v: Tv) -> String {
        let json: serde_json::Value = match v.as_str() {
            Some(s) => match serde_json::from_str(s) {
                Ok(parsed) => parsed,
                Err(_) => return s.to_owned(),
            },
            None => serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
        };
        serde_json::to_string_pretty(&json).unwrap_or_default()
    }

    /// A name made safe as one path segment (topic, group and subject names may hold `/`).
    pub fn pathseg(v: Tv) -> String {
        let s = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_refuses_admin_writes_only() {
        assert!(read_only_refuses(&Method::POST, "/v1/topics"));
        assert!(read_only_refuses(&Method::DELETE, "/v1/topics/t"));
        assert!(read_only_refuses(&Method::POST, "/v1/dlqs/dlq.g/requeue"));
        assert!(read_only_refuses(&Method::PATCH, "/v1/topics/t/configs"));
        assert!(read_only_refuses(&Method::POST, "/v3/clusters/c/topics"));
        assert!(!read_only_refuses(&Method::GET, "/v1/topics"));
        assert!(!read_only_refuses(&Method::POST, "/v1/queues/g/receive"));
        assert!(read_only_refuses(&Method::POST, "/v1/topics/t/records"));
        assert!(read_only_refuses(&Method::DELETE, "/subjects/s"));
        assert!(read_only_refuses(&Method::PUT, "/config"));
        assert!(read_only_refuses(&Method::PUT, "/mode/s"));
        assert!(read_only_refuses(&Method::POST, "/ui/anything"));
        assert!(!read_only_refuses(&Method::POST, "/ui/login"));
        assert!(!read_only_refuses(&Method::POST, "/ui/logout"));
        assert!(!read_only_refuses(&Method::POST, "/subjects/s/versions"));
        assert!(!read_only_refuses(
            &Method::POST,
            "/compatibility/subjects/s/versions/latest"
        ));
        assert!(!read_only_refuses(&Method::HEAD, "/v1/topics"));
    }

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for name in Templates::iter() {
            let file = Templates::get(&name).expect("listed template");
            let source = String::from_utf8_lossy(&file.data).into_owned();
            env.add_template_owned(name.to_string(), source)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn filters_format() {
        assert_eq!(filters::num(Tv::from(1_234_567)), "1,234,567");
        assert_eq!(filters::num(Tv::from(-1000)), "-1,000");
        assert_eq!(filters::num(Tv::from(12)), "12");
        assert_eq!(filters::bytes(Tv::from(2048)), "2.0 KiB");
        assert_eq!(filters::age(Tv::from(125_000)), "2 min");
        assert_eq!(filters::pathseg(Tv::from("a/b c")), "a%2Fb%20c");
        assert_eq!(filters::time(Tv::from(0)), "1970-01-01 00:00:00.000 UTC");
    }

    /// The vendored files are the ones the manifest names (`console/static/SHA256SUMS`): a
    /// changed or swapped library is caught here, not in a browser.
    #[test]
    fn vendored_assets_match_their_manifest() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console/static");
        let manifest =
            std::fs::read_to_string(dir.join("SHA256SUMS")).expect("console/static/SHA256SUMS");
        let mut checked = 0;
        for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
            let (sum, name) = line.split_once("  ").expect("`sha256  name` lines");
            let file = Static::get(name).unwrap_or_else(|| panic!("{name} is not embedded"));
            assert_eq!(hex(&file.metadata.sha256_hash()), sum, "{name}");
            checked += 1;
        }
        assert!(checked >= 2, "the manifest names the vendored files");
    }
}
