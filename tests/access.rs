//! SPEC section 9, the access token, through the whole router: the API takes the
//! bearer token, pages and server functions a session from the sign-in form.
#![cfg(feature = "ssr")]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "correct horse battery staple";

struct Answer {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let header = |name| res.headers().get(name).map(|v: &header::HeaderValue| v.to_str().unwrap().to_string());
    let (status, location, cookie) = (res.status(), header(header::LOCATION), header(header::SET_COOKIE));
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Answer { status, location, cookie, body }
}

fn get(uri: &str, auth: Option<(&str, &str)>) -> Request<Body> {
    let mut req = Request::builder().uri(uri);
    if let Some((name, value)) = auth {
        req = req.header(name, value);
    }
    req.body(Body::empty()).unwrap()
}

use common::form_post as form;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_token(dir.path(), TOKEN).await;
    let bearer = format!("Bearer {TOKEN}");
    for auth in [None, Some(("authorization", "Bearer wrong")), Some(("authorization", TOKEN))] {
        let answer = send(&app, get("/api/process", auth)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
    }
    let answer = send(&app, get("/api/process", Some(("authorization", &bearer)))).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "[]"));
    // An unknown path is refused the same way: nothing is told without the token.
    assert_eq!(send(&app, get("/api/process/1", None)).await.status, StatusCode::UNAUTHORIZED);
    // Supervisors may ask whether it is up.
    assert_eq!(send(&app, get("/api/health", None)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_server_functions_need_a_session_from_the_sign_in_form() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_token(dir.path(), TOKEN).await;

    // A page goes to the sign-in form, which brings the person back after.
    let answer = send(&app, get("/processing/7?x=1", None)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location.as_deref(), Some("/signin?next=%2Fprocessing%2F7%3Fx%3D1"));
    let page = send(&app, get("/signin?next=%2Fprocessing%2F7", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("action=\"/signin\"") && page.body.contains("type=\"password\""), "{}", page.body);
    // Server functions: 401 without a session.
    let list = || {
        Request::builder()
            .method("POST")
            .uri("/api/list_jobs")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"filter":{},"offset":0,"limit":10}"#))
            .unwrap()
    };
    assert_eq!(send(&app, list()).await.status, StatusCode::UNAUTHORIZED);

    // A wrong token goes back to the form, which says so; no cookie.
    let wrong = send(&app, form("/signin", "token=nope&next=%2Fprocessing%2F7")).await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER);
    assert_eq!(wrong.location.as_deref(), Some("/signin?failed=1&next=%2Fprocessing%2F7"));
    assert_eq!(wrong.cookie, None);
    let page = send(&app, get("/signin?failed=1", None)).await;
    assert!(page.body.contains("That is not the token"), "{}", page.body);

    // The right one sets an HttpOnly, SameSite=Strict session and goes on; only to a
    // path on this server.
    let body = format!("token={}&next=%2Fprocessing%2F7", TOKEN.replace(' ', "+"));
    let signed = send(&app, form("/signin", &body)).await;
    assert_eq!((signed.status, signed.location.as_deref()), (StatusCode::SEE_OTHER, Some("/processing/7")));
    let cookie = signed.cookie.unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let body = format!("token={}&next=https%3A%2F%2Fevil.example%2F", TOKEN.replace(' ', "+"));
    assert_eq!(send(&app, form("/signin", &body)).await.location.as_deref(), Some("/"));

    let dashboard = send(&app, get("/", Some(("cookie", &session)))).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Sign out"), "signed in, the header offers to sign out");
    let mut req = list();
    req.headers_mut().insert(header::COOKIE, session.parse().unwrap());
    assert_eq!(send(&app, req).await.status, StatusCode::OK);
    // The browser's export links are REST calls: the session serves them too.
    assert_eq!(send(&app, get("/api/process", Some(("cookie", &session)))).await.status, StatusCode::OK);
    // A forged or stale cookie is no session.
    let forged = format!("{}0", session);
    assert_eq!(send(&app, get("/", Some(("cookie", &forged)))).await.status, StatusCode::SEE_OTHER);

    // Signing out drops the cookie.
    let out = send(&app, form("/signout", "")).await;
    assert_eq!((out.status, out.location.as_deref()), (StatusCode::SEE_OTHER, Some("/signin")));
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_everything_is_open_and_nothing_offers_to_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(test_config(dir.path()));
    state.service.runner().start().await.unwrap();
    let app = jobdeck::server::app(state);
    assert_eq!(send(&app, get("/api/process", None)).await.status, StatusCode::OK);
    let page = send(&app, get("/", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Sign out"));
}

#[test]
fn without_a_token_only_loopback_is_served_unless_allowed() {
    let mut config = jobdeck::server::config::Config::default();
    let open: std::net::SocketAddr = "0.0.0.0:3000".parse().unwrap();
    let local: std::net::SocketAddr = "127.0.0.1:3000".parse().unwrap();
    let refusal = config.server.open_refusal(open).expect("refused");
    assert!(refusal.contains("JOBDECK_TOKEN") && refusal.contains("JOBDECK_ALLOW_OPEN=1"), "{refusal}");
    assert_eq!(config.server.open_refusal(local), None);
    assert_eq!(config.server.open_refusal("[::1]:3000".parse().unwrap()), None);
    config.server.allow_open = true;
    assert_eq!(config.server.open_refusal(open), None);
    config.server.allow_open = false;
    config.server.token = "secret".into();
    assert_eq!(config.server.open_refusal(open), None);
}
