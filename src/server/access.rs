//! SPEC section 9, the access token. With `JOBDECK_TOKEN` set, a REST call needs
//! `Authorization: Bearer <token>`, and pages and server functions need a session: a
//! signed, HttpOnly, SameSite=Strict cookie that the sign-in form sets. Without a token
//! everything is open, and `main` refuses to serve on a non-loopback address unless
//! `JOBDECK_ALLOW_OPEN=1`.
//!
//! A session is `v1.<expiry>.<HMAC-SHA256 of the expiry, keyed by the token>`. It needs
//! no server-side state. Changing the token signs everyone out.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "jobdeck_session";
/// How long a sign-in lasts.
const SESSION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Who may use this server; cheap to clone.
#[derive(Clone, Default)]
pub struct Access {
    token: Option<Arc<str>>,
}

impl Access {
    /// `token` empty (or only spaces): open to anyone who can reach the address.
    pub fn new(token: &str) -> Self {
        let token = token.trim();
        Self { token: (!token.is_empty()).then(|| Arc::from(token)) }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    fn mac(&self, purpose: &str) -> Option<HmacSha256> {
        let token = self.token.as_ref()?;
        let mut mac = HmacSha256::new_from_slice(token.as_bytes()).ok()?;
        mac.update(purpose.as_bytes());
        Some(mac)
    }

    /// Whether `given` is the token. Compared as HMACs of both, in constant time, so
    /// neither the content nor the length of the token leaks through timing.
    pub fn token_matches(&self, given: &str) -> bool {
        let (Some(token), Some(mut mac)) = (self.token.as_ref(), self.mac("token:")) else { return false };
        let mut expected = self.mac("token:").expect("a token is set");
        expected.update(token.as_bytes());
        mac.update(given.as_bytes());
        mac.verify_slice(&expected.finalize().into_bytes()).is_ok()
    }

    /// A new session cookie's value, valid for [`SESSION`] from `now`.
    pub fn new_session(&self, now: SystemTime) -> Option<String> {
        let expiry = now.checked_add(SESSION)?.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let mut mac = self.mac("session:")?;
        mac.update(expiry.to_string().as_bytes());
        Some(format!("v1.{expiry}.{}", hex::encode(mac.finalize().into_bytes())))
    }

    /// Whether a session cookie's value is one this token signed and has not expired.
    pub fn session_valid(&self, value: &str, now: SystemTime) -> bool {
        let mut parts = value.split('.');
        let (Some("v1"), Some(expiry), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(until), Ok(sig)) = (expiry.parse::<u64>(), hex::decode(sig)) else { return false };
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
        if until <= now {
            return false;
        }
        let Some(mut mac) = self.mac("session:") else { return false };
        mac.update(expiry.as_bytes());
        mac.verify_slice(&sig).is_ok()
    }

    /// Whether a request carries the token or a valid session.
    pub fn request_allowed(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        if bearer.is_some_and(|b| self.token_matches(b.trim())) {
            return true;
        }
        session_cookie(headers).is_some_and(|s| self.session_valid(&s, SystemTime::now()))
    }
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
}

/// Paths anyone may reach: the sign-in page and its form, the health check, and the
/// files the sign-in page itself needs.
fn open_path(path: &str, pkg: &str) -> bool {
    matches!(path, "/signin" | "/signout" | "/api/health" | "/favicon.svg")
        || path.strip_prefix('/').and_then(|p| p.strip_prefix(pkg)).is_some_and(|rest| rest.starts_with('/'))
}

/// What the guard needs: who may pass, and the folder of the front end's files.
#[derive(Clone)]
pub struct Guard {
    pub access: Access,
    pub pkg_dir: String,
}

/// Middleware: lets a request through when no token is set, when its path is open, or
/// when it carries the token or a session. Otherwise an API call gets 401 `{"error"}`
/// and a page goes to the sign-in page, which brings the person back after.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if !guard.access.enabled()
        || open_path(request.uri().path(), &guard.pkg_dir)
        || guard.access.request_allowed(request.headers())
    {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "error": "sign in first: send the header `Authorization: Bearer <JOBDECK_TOKEN>`"
            })),
        )
            .into_response();
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jobdeck\""));
        return response;
    }
    let back = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    see_other(&format!("/signin?next={}", encode(back)), None)
}

/// The sign-in form's fields.
#[derive(serde::Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /signin`: the right token sets the session cookie and goes on to `next` (a
/// path on this server only); a wrong one goes back to the form, which says so.
pub async fn sign_in(State(guard): State<Guard>, Form(form): Form<SignIn>) -> Response {
    let next = local_path(&form.next);
    if !guard.access.enabled() {
        return see_other(next, None);
    }
    if !guard.access.token_matches(form.token.trim()) {
        return see_other(&format!("/signin?failed=1&next={}", encode(next)), None);
    }
    let Some(session) = guard.access.new_session(SystemTime::now()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot start a session").into_response();
    };
    let cookie = format!("{COOKIE_NAME}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION.as_secs());
    see_other(next, Some(cookie))
}

/// `POST /signout`: the cookie is dropped; back to the sign-in page.
pub async fn sign_out() -> Response {
    let cookie = format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    see_other("/signin", Some(cookie))
}

/// A 303 to `to`, setting `cookie` when given.
fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `next` if it is a path on this server, else the dashboard: a sign-in link cannot
/// send anyone elsewhere.
pub fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.contains("://");
    if ok && !next.starts_with("/signin") {
        next
    } else {
        "/"
    }
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_and_sessions_are_checked() {
        let access = Access::new("correct horse");
        assert!(access.token_matches("correct horse"));
        for wrong in ["", "correct", "correct horse ", "Correct horse", "correct horsebattery"] {
            assert!(!access.token_matches(wrong), "{wrong:?}");
        }
        let now = SystemTime::now();
        let session = access.new_session(now).unwrap();
        assert!(access.session_valid(&session, now));
        assert!(!access.session_valid(&session, now + SESSION + Duration::from_secs(1)), "expired");
        assert!(!Access::new("another token").session_valid(&session, now), "signed by another token");
        let forged = session.replacen("v1.", "v1.9", 1);
        assert!(!access.session_valid(&forged, now), "a changed expiry breaks the signature");
        assert!(!access.session_valid("v1.abc.00", now));
        let open = Access::new("  ");
        assert!(!open.enabled() && !open.token_matches(""));
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_path("/processing/3?x=1"), "/processing/3?x=1");
        for outside in ["//evil.example", "https://evil.example/", "/\\evil", "evil", "", "/signin?next=/"] {
            assert_eq!(local_path(outside), "/", "{outside}");
        }
    }
}
