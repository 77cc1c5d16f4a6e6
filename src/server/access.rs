//! SPEC sections 9 and 11, the access token. With `JOBDECK_TOKEN` set, a REST call needs
//! `Authorization: Bearer <token>`, and pages and server functions need a session: an
//! HttpOnly, SameSite=Strict cookie that the sign-in form sets. Without a token
//! everything is open, and `main` refuses to serve on a non-loopback address unless
//! `JOBDECK_ALLOW_OPEN=1`.
//!
//! Sessions are kept by the server (a `sessions` table in either store): the cookie
//! holds a random id, the table an HMAC of it keyed by the token, so signing out ends a
//! session for good (a copied cookie is dead after it), "sign out everywhere" ends them
//! all, a copy of the table signs no one in, and changing the token signs everyone out.
//!
//! Wrong tokens are throttled per client address, on the form and on `Authorization`
//! alike: at most ten a minute, then 429 with `Retry-After`. A try over the quota is
//! refused before its token is compared, so the throttle bounds how fast anyone can
//! guess, also with many requests at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use governor::clock::Clock;
use hmac::{KeyInit, Mac};

use super::error::AppError;
use super::policy::is_api_path;
use super::service::Service;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "jobdeck_session";
/// How long a sign-in lasts.
const SESSION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Wrong tokens one client address may send in a minute.
pub const WRONG_TOKENS_PER_MINUTE: u32 = 10;
/// The shortest token the server starts with (SPEC section 11).
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a token cannot be used; start-up stops with this sentence.
pub fn token_refusal(token: &str) -> Option<String> {
    let token = token.trim();
    let chars = token.chars().count();
    (!token.is_empty() && chars < MIN_TOKEN_CHARS).then(|| {
        format!(
            "JOBDECK_TOKEN is {chars} characters long; use at least {MIN_TOKEN_CHARS} that are hard to guess \
             (for example the output of `openssl rand -hex 16`)"
        )
    })
}

/// A request the guard let through with a valid session cookie; read by the header's
/// "Sign out" ([`crate::api::signed_in`]).
#[derive(Clone, Copy, Debug)]
pub struct SignedIn;

/// Token tries per client address. Each address has a limiter of its own (governor's
/// GCRA: a burst of [`WRONG_TOKENS_PER_MINUTE`], then one more per minute, so no minute
/// holds more), and a try takes its cell *before* the token is compared: a try over
/// the quota is refused without being looked at, however many arrive at once. The
/// right token wipes the address's limiter, so a script that knows it is never held
/// back and only wrong tokens add up. IPv6 addresses count by their /64, which one
/// client usually holds whole.
struct Throttle {
    quota: governor::Quota,
    clients: Mutex<HashMap<IpAddr, (Arc<governor::DefaultDirectRateLimiter>, Instant)>>,
}

/// An address's limiter is full again this long after its last try: forgetting it
/// then loses nothing.
const THROTTLE_MEMORY: Duration = Duration::from_secs(60 * WRONG_TOKENS_PER_MINUTE as u64);

impl Throttle {
    fn new(per_minute: NonZeroU32) -> Self {
        let quota = governor::Quota::with_period(Duration::from_secs(60))
            .expect("a minute is not zero")
            .allow_burst(per_minute);
        Self { quota, clients: Mutex::default() }
    }

    /// The key a client counts under.
    fn key(client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")),
            v4 => v4,
        }
    }

    /// Takes a try for `client`: `Err(wait)` when it is over its quota (the token is
    /// then not to be compared).
    fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let limiter = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            if clients.len() >= 4096 {
                clients.retain(|_, (_, last)| now.duration_since(*last) < THROTTLE_MEMORY);
            }
            let entry = clients
                .entry(Self::key(client))
                .or_insert_with(|| (Arc::new(governor::RateLimiter::direct(self.quota)), now));
            entry.1 = now;
            entry.0.clone()
        };
        limiter.check().map_err(|not_until| not_until.wait_time_from(limiter.clock().now()).max(Duration::from_secs(1)))
    }

    /// The right token: `client` starts afresh.
    fn forget(&self, client: IpAddr) {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&Self::key(client));
    }
}

/// Who may use this server; cheap to clone.
#[derive(Clone)]
pub struct Access {
    token: Option<Arc<str>>,
    throttle: Arc<Throttle>,
}

impl Access {
    /// `token` empty (or only spaces): open to anyone who can reach the address.
    pub fn new(token: &str) -> Self {
        let token = token.trim();
        let per_minute = NonZeroU32::new(WRONG_TOKENS_PER_MINUTE).expect("not zero");
        Self { token: (!token.is_empty()).then(|| Arc::from(token)), throttle: Arc::new(Throttle::new(per_minute)) }
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

    /// The key a session id is stored under: an HMAC of it keyed by the token.
    pub fn session_key(&self, id: &str) -> Option<String> {
        let mut mac = self.mac("session:")?;
        mac.update(id.as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks a token `client` sent: `Ok(true)` it is the token, `Ok(false)` it is not
    /// (and was counted), `Err(wait)` the client is held back.
    fn try_token(&self, client: IpAddr, given: &str) -> Result<bool, Duration> {
        self.throttle.take(client)?;
        let right = self.token_matches(given);
        if right {
            self.throttle.forget(client);
        }
        Ok(right)
    }
}

/// A new session id: 32 random bytes, hex.
fn new_session_id() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("no random bytes for a session: {e}")))?;
    Ok(hex::encode(bytes))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
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
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

/// The bearer token of `Authorization`, if the request sends one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The address a request came from; requests served in-process (tests) have none and
/// share one.
fn client_of(request: &Request) -> IpAddr {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Paths anyone may reach: the sign-in page and its form, the health check, and the
/// files the sign-in page itself needs.
fn open_path(path: &str, pkg: &str) -> bool {
    matches!(path, "/signin" | "/signout" | "/api/health" | "/favicon.svg")
        || path.strip_prefix('/').and_then(|p| p.strip_prefix(pkg)).is_some_and(|rest| rest.starts_with('/'))
}

/// What the guard needs: who may pass, the service that keeps sessions, and the folder
/// of the front end's files.
#[derive(Clone)]
pub struct Guard {
    pub access: Access,
    pub service: Service,
    pub pkg_dir: String,
}

impl Guard {
    /// Whether the request's session cookie names a live session.
    async fn session_alive(&self, headers: &HeaderMap) -> Result<bool, AppError> {
        let Some(key) = session_cookie(headers).and_then(|id| self.access.session_key(&id)) else { return Ok(false) };
        self.service.session_alive(key, unix_now()).await
    }
}

/// 429 with `Retry-After`, as JSON for the API and as text for a person.
fn held_back(api: bool, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let message = format!("too many wrong tokens from this address; try again in {secs} s");
    let mut response = if api {
        (StatusCode::TOO_MANY_REQUESTS, Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        (StatusCode::TOO_MANY_REQUESTS, [(CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
    };
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({
            "error": "sign in first: send the header `Authorization: Bearer <JOBDECK_TOKEN>`"
        })),
    )
        .into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jobdeck\""));
    response
}

/// Middleware: lets a request through when no token is set, when its path is open, or
/// when it carries the token or a live session. Otherwise an API call gets 401
/// `{"error"}` and a page goes to the sign-in page, which brings the person back after.
pub async fn guard(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    if !guard.access.enabled() || open_path(request.uri().path(), &guard.pkg_dir) {
        return next.run(request).await;
    }
    let api = is_api_path(request.uri().path());
    if let Some(given) = bearer(request.headers()) {
        match guard.access.try_token(client_of(&request), given) {
            Ok(true) => return next.run(request).await,
            Ok(false) => return unauthorized(),
            Err(wait) => return held_back(api, wait),
        }
    }
    match guard.session_alive(request.headers()).await {
        Ok(true) => {
            request.extensions_mut().insert(SignedIn);
            return next.run(request).await;
        }
        Ok(false) => {}
        Err(e) => return e.into_response(),
    }
    if api {
        return unauthorized();
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

/// `POST /signin`: the right token starts a session and goes on to `next` (a path on
/// this server only); a wrong one goes back to the form, which says so.
pub async fn sign_in(State(guard): State<Guard>, request: Request) -> Response {
    let client = client_of(&request);
    let Form(form) = match Form::<SignIn>::from_request(request, &()).await {
        Ok(form) => form,
        Err(rejection) => return rejection.into_response(),
    };
    let next = local_path(&form.next);
    if !guard.access.enabled() {
        return see_other(&next, None);
    }
    match guard.access.try_token(client, form.token.trim()) {
        Err(wait) => return held_back(false, wait),
        Ok(false) => return see_other(&format!("/signin?failed=1&next={}", encode(&next)), None),
        Ok(true) => {}
    }
    let started = async {
        let id = new_session_id()?;
        let key = guard.access.session_key(&id).ok_or_else(|| AppError::Internal("no token".into()))?;
        let now = unix_now();
        guard.service.session_start(key, now, now + SESSION.as_secs() as i64).await?;
        Ok::<_, AppError>(id)
    };
    match started.await {
        Ok(id) => {
            let cookie =
                format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION.as_secs());
            see_other(&next, Some(cookie))
        }
        Err(e) => e.into_response(),
    }
}

/// The sign-out form's fields.
#[derive(serde::Deserialize, Default)]
pub struct SignOut {
    /// `1`: end every session, not only this one.
    #[serde(default)]
    everywhere: String,
}

/// `POST /signout`: ends this session (and, with `everywhere=1` from a signed-in
/// browser, every session); the cookie is dropped; back to the sign-in page.
pub async fn sign_out(State(guard): State<Guard>, request: Request) -> Response {
    let headers = request.headers().clone();
    let form = Form::<SignOut>::from_request(request, &()).await.map(|f| f.0).unwrap_or_default();
    let cookie = format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if guard.access.enabled() {
        let ended = async {
            if form.everywhere.trim() == "1" && guard.session_alive(&headers).await? {
                guard.service.sessions_end_all().await?;
            } else if let Some(key) = session_cookie(&headers).and_then(|id| guard.access.session_key(&id)) {
                guard.service.session_end(key).await?;
            }
            Ok::<_, AppError>(())
        };
        if let Err(e) = ended.await {
            return e.into_response();
        }
    }
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
/// send anyone elsewhere. Read as a browser reads a URL: tabs and line breaks anywhere
/// and blanks or control characters at either end are dropped first.
pub fn local_path(next: &str) -> String {
    let cleaned: String = next.chars().filter(|c| !matches!(c, '\t' | '\r' | '\n')).collect();
    let cleaned = cleaned.trim_matches(|c: char| c <= ' ');
    let ok = cleaned.starts_with('/')
        && !cleaned.starts_with("//")
        && !cleaned.contains('\\')
        && !cleaned.contains("://")
        && !cleaned.chars().any(char::is_control);
    if ok && !cleaned.starts_with("/signin") {
        cleaned.to_string()
    } else {
        "/".to_string()
    }
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_in_full() {
        let access = Access::new("correct horse battery");
        assert!(access.token_matches("correct horse battery"));
        for wrong in ["", "correct", "correct horse battery ", "Correct horse battery", "correct horse batteryx"] {
            assert!(!access.token_matches(wrong), "{wrong:?}");
        }
        let open = Access::new("  ");
        assert!(!open.enabled() && !open.token_matches(""));
        let id = new_session_id().unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(access.session_key(&id), Access::new("another token, long").session_key(&id));
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(token_refusal("a").unwrap().contains("at least 16"));
        assert!(token_refusal("fifteen chars!!").is_some());
        assert_eq!(token_refusal("sixteen chars!!!"), None);
        assert_eq!(token_refusal(""), None, "no token: open on loopback");
    }

    #[test]
    fn wrong_tokens_are_held_back_after_ten_a_minute() {
        let access = Access::new("correct horse battery");
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for n in 0..WRONG_TOKENS_PER_MINUTE {
            assert_eq!(access.try_token(a, "guess"), Ok(false), "guess {n}");
        }
        let wait = access.try_token(a, "guess").unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60), "{wait:?}");
        // Held back, even the right token is not looked at; another address goes on.
        assert!(access.try_token(a, "correct horse battery").is_err());
        assert_eq!(access.try_token(b, "correct horse battery"), Ok(true));
    }

    #[test]
    fn the_try_over_the_quota_is_never_compared_and_the_right_token_starts_afresh() {
        let access = Access::new("correct horse battery");
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        for _ in 0..WRONG_TOKENS_PER_MINUTE - 1 {
            assert_eq!(access.try_token(c, "guess"), Ok(false));
        }
        // The right token, inside the quota: in, and the wrong ones before it forgotten.
        assert_eq!(access.try_token(c, "correct horse battery"), Ok(true));
        for _ in 0..WRONG_TOKENS_PER_MINUTE {
            assert_eq!(access.try_token(c, "guess"), Ok(false));
        }
        // The eleventh try is refused before its token is looked at, right or not.
        assert!(access.try_token(c, "correct horse battery").is_err());
        // One IPv6 client holds a /64: its addresses share one quota.
        let (v6a, v6b): (IpAddr, IpAddr) = ("2001:db8::1".parse().unwrap(), "2001:db8::ffff:2".parse().unwrap());
        for _ in 0..WRONG_TOKENS_PER_MINUTE {
            assert_eq!(access.try_token(v6a, "guess"), Ok(false));
        }
        assert!(access.try_token(v6b, "guess").is_err());
        assert_eq!(access.try_token("2001:db8:1::1".parse().unwrap(), "guess"), Ok(false), "another /64");
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_path("/processing/3?x=1"), "/processing/3?x=1");
        for outside in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil",
            "evil",
            "",
            "/signin?next=/",
            "/\t/evil.example/",
            "/\r\n/evil.example/",
            " //evil.example",
            "/\u{0}/evil.example",
        ] {
            assert_eq!(local_path(outside), "/", "{outside:?}");
        }
    }
}
