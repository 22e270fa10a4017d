//! Logging in to the console when HTTP authentication is on: a form checked against the
//! same users as SASL, a session cookie, and logging out (`security/http.rs` keeps the
//! sessions; `http.rs` checks the cookie and the CSRF token on every request).

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::context;
use serde::Deserialize;

use super::Console;
use crate::security::http::{same_origin, Caller, HttpAuth, Login, SESSION_COOKIE};

/// The console's login page; open without credentials.
pub const LOGIN_PATH: &str = "/ui/login";
pub const LOGOUT_PATH: &str = "/ui/logout";

/// Sends a browser asking for a console page without credentials to the login page, which
/// brings it back there afterwards.
pub fn to_login(uri: &Uri) -> Response {
    let back = uri.path_and_query().map_or("/ui/", |p| p.as_str());
    let next = url_encode(back);
    Redirect::to(&format!("{LOGIN_PATH}?next={next}")).into_response()
}

/// Query-value encoding of a path: everything but unreserved characters and `/`.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Where to go after logging in: a console page, never another site (`//evil.example` is a
/// host, not a path).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/login`.
pub async fn page(State(c): State<Arc<Console>>, Query(q): Query<LoginQuery>) -> Response {
    if !c.broker.security.http.enabled {
        return Redirect::to("/ui/").into_response();
    }
    render(&c, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

fn render(c: &Console, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let mut resp = c.render_as(
        "login.html",
        "Log in",
        "",
        context! { next => next, error => error },
        None,
        None,
    );
    *resp.status_mut() = status;
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /ui/login`: checks the password like SASL PLAIN would, opens a session and sets its
/// cookie (`HttpOnly`: no script reads it; `SameSite=Strict`: no other site's page sends it).
pub async fn login(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let auth = &c.broker.security.http;
    if !auth.enabled {
        return Redirect::to(&next).into_response();
    }
    // A login form posted from another site would log the browser in as someone else.
    if !same_origin(&headers) {
        return render(
            &c,
            &next,
            Some("the login form was sent from another site"),
            StatusCode::FORBIDDEN,
        );
    }
    let login = Login {
        name: form.username,
        password: form.password,
    };
    let users = c.broker.metadata.users.table();
    if login.name.is_empty() || login.password.is_empty() || !HttpAuth::check(&users, &login).await
    {
        c.broker.metrics.authentication_failed("HTTP", "login");
        return render(
            &c,
            &next,
            Some("Wrong user name or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    tracing::info!(user = ?crate::security::http::loggable(&login.name), "console login");
    let Some(session) =
        auth.open_session(Arc::new(login), users.generation, std::time::Instant::now())
    else {
        return render(
            &c,
            &next,
            Some("the OS has no entropy source for a session id"),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session.id,
        crate::limits::HTTP_SESSION_MAX_MS / 1000
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ui/logout` (with the session's CSRF token, as every write on a session).
pub async fn logout(State(c): State<Arc<Console>>, caller: Option<Extension<Caller>>) -> Response {
    if let Some(session) = caller.as_ref().and_then(|c| c.0.session.as_ref()) {
        c.broker.security.http.end_session(&session.id);
    }
    let mut resp = Redirect::to(LOGIN_PATH).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sluice_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(Some("/ui/topics?x=1")), "/ui/topics?x=1");
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui/");
        assert_eq!(safe_next(Some("https://evil.example/ui")), "/ui/");
        assert_eq!(safe_next(Some("/v1/topics")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
        assert_eq!(
            url_encode("/ui/topics?x=1&y=2"),
            "/ui/topics%3Fx%3D1%26y%3D2"
        );
    }
}
