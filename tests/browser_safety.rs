//! SPEC section 11, through the whole router: what a page of another site can make the
//! operator's browser send changes nothing, a name this server does not answer to
//! reaches nothing, sign-in cannot be guessed or bounced, and a half-sent request does
//! not hold a connection.
#![cfg(feature = "ssr")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use jobdeck::model::JobKind;
use jobdeck::server::service::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const TOKEN: &str = "correct horse battery staple";
const EVIL: &str = "https://evil.example";

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Answer { status, headers, body }
}

/// A request as a browser sends it from a page at `origin`, to this server at
/// 127.0.0.1:3000.
fn from_page(method: &str, uri: &str, origin: &str, fetch_site: &str, ctype: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::ORIGIN, origin)
        .header("sec-fetch-site", fetch_site)
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(body))
        .unwrap()
}

/// A running server with one paused research job and one completed one.
async fn app_with_jobs(dir: &std::path::Path, site: &Site) -> (Router, Service, i64, i64) {
    let state = state(test_config(dir));
    state.service.runner().start().await.unwrap();
    let service = state.service.clone();
    let done = service.create_job(JobKind::Research, upload(research_csv(site, &paths("/f/", 2)), 2)).await.unwrap();
    wait_job(&service, JobKind::Research, done.id, Duration::from_secs(30), |j| j.completed == 2).await;
    let live = service.create_job(JobKind::Research, upload(research_csv(site, &paths("/f/", 50)), 1)).await.unwrap();
    service.pause(JobKind::Research, live.id).await.unwrap();
    (jobdeck::server::app(state), service, live.id, done.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_changes_nothing_and_jobdecks_own_page_does() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let (app, service, live, done) = app_with_jobs(dir.path(), &site).await;
    let jobs_before = service.page_all(0, 100).await.unwrap().total;

    // A "simple" cross-site request: text/plain needs no preflight from the browser.
    let bulk = br#"{"action":"cancel","filter":{}}"#.to_vec();
    let refused = [
        from_page("POST", "/api/jobs/bulk", EVIL, "cross-site", "text/plain", bulk.clone()),
        from_page("POST", "/api/jobs/bulk", EVIL, "cross-site", "application/json", bulk.clone()),
        // A sibling subdomain is another site's page too.
        from_page("POST", "/api/jobs/bulk", "http://127.0.0.1:3000", "same-site", "text/plain", bulk.clone()),
        // The server functions the UI calls, form-encoded as an HTML form posts them.
        from_page(
            "POST",
            "/api/control_job",
            EVIL,
            "cross-site",
            "application/x-www-form-urlencoded",
            format!("kind=research&id={live}&action=cancel").into_bytes(),
        ),
        from_page("POST", &format!("/api/process/{live}/cancel"), EVIL, "cross-site", "text/plain", vec![]),
        from_page("DELETE", &format!("/api/process/{done}/delete"), EVIL, "cross-site", "text/plain", vec![]),
        // Origin alone (an older browser sends no Sec-Fetch-Site): not ours.
        from_page("DELETE", &format!("/api/process/{done}/delete"), "null", "", "text/plain", vec![]),
        from_page("DELETE", &format!("/api/process/{done}/delete"), "http://127.0.0.1:4000", "", "text/plain", vec![]),
        from_page(
            "POST",
            "/signout",
            EVIL,
            "cross-site",
            "application/x-www-form-urlencoded",
            b"everywhere=1".to_vec(),
        ),
    ];
    for req in refused {
        let what = format!("{} {}", req.method(), req.uri());
        let answer = send(&app, req).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{what}: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("another"), "{what}: {body}");
    }
    // A multipart upload would start a job that fetches the sites of the page's choice.
    let (ctype, body) = multipart_csv(b"Company,Website\nX,https://victim.example/\n".to_vec(), 1);
    let answer = send(&app, from_page("POST", "/api/process", EVIL, "cross-site", &ctype, body.clone())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    // Nothing changed.
    let job = service.get(JobKind::Research, live).await.unwrap();
    assert!(job.paused && !job.cancelled, "{job:?}");
    assert!(service.get(JobKind::Research, done).await.is_ok(), "the completed job is still there");
    assert_eq!(service.page_all(0, 100).await.unwrap().total, jobs_before, "no job was created");

    // jobdeck's own page: the same actions go through.
    let own = "http://127.0.0.1:3000";
    let answer = send(&app, from_page("POST", "/api/process", own, "same-origin", &ctype, body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = send(
        &app,
        from_page("POST", "/api/jobs/bulk", own, "same-origin", "application/json", {
            format!(r#"{{"action":"cancel","jobs":[{{"kind":"research","id":{live}}}]}}"#).into_bytes()
        }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(service.get(JobKind::Research, live).await.unwrap().cancelled);
    let answer =
        send(&app, from_page("DELETE", &format!("/api/process/{done}/delete"), own, "same-origin", "", vec![])).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // Reading is never refused for its Origin (a GET changes nothing).
    let answer = send(&app, from_page("GET", "/api/process", EVIL, "cross-site", "", vec![])).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_without_browser_headers_go_on_but_json_endpoints_take_only_json() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let (app, service, live, _) = app_with_jobs(dir.path(), &site).await;
    let plain = |ctype: &str| {
        Request::builder()
            .method("POST")
            .uri("/api/jobs/bulk")
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(r#"{"action":"cancel","filter":{}}"#))
            .unwrap()
    };
    for ctype in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let answer = send(&app, plain(ctype)).await;
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ctype}");
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("application/json"), "{body}");
    }
    let patch = Request::builder()
        .method("PATCH")
        .uri(format!("/api/process/{live}"))
        .body(Body::from(r#"{"name":"renamed"}"#))
        .unwrap();
    assert_eq!(send(&app, patch).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(!service.get(JobKind::Research, live).await.unwrap().cancelled);
    assert_ne!(service.get(JobKind::Research, live).await.unwrap().name, "renamed");
    // curl with JSON, no Origin: goes on.
    let answer = send(&app, plain("application/json; charset=utf-8")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(service.get(JobKind::Research, live).await.unwrap().cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_this_server_does_not_answer_to_reaches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let (app, _, _, done) = app_with_jobs(dir.path(), &site).await;
    let get =
        |host: &str, uri: &str| Request::builder().uri(uri).header(header::HOST, host).body(Body::empty()).unwrap();
    let export = format!("/api/process/{done}/export");
    for host in ["rebind.evil.example:3000", "rebind.evil.example", "10.1.2.3:3000", "localhost.evil.example"] {
        for uri in [export.as_str(), "/", "/api/process", &format!("/processing/{done}")] {
            let answer = send(&app, get(host, uri)).await;
            assert_eq!(answer.status, StatusCode::MISDIRECTED_REQUEST, "{host} {uri}");
            assert!(!answer.body.contains("Company 0"), "{host} {uri}: no data in the refusal");
        }
    }
    for host in ["127.0.0.1:3000", "localhost:3000", "[::1]:3000"] {
        let answer = send(&app, get(host, &export)).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}");
        assert!(answer.body.contains("Company 0"), "{host}");
    }

    // Names an operator adds, and the public URL's host, are answered.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.allowed_hosts = "deck.lan, jobs.internal:8080".into();
    config.notify.public_url = "https://jobs.example.com/".into();
    let state = state(config);
    let app = jobdeck::server::app(state);
    for host in ["deck.lan:3000", "jobs.internal", "jobs.example.com"] {
        assert_eq!(send(&app, get(host, "/api/process")).await.status, StatusCode::OK, "{host}");
    }
    assert_eq!(send(&app, get("evil.example", "/api/process")).await.status, StatusCode::MISDIRECTED_REQUEST);
}

/// `req` as if it came from `client`.
fn from(client: &str, mut req: Request<Body>) -> Request<Body> {
    let addr: SocketAddr = format!("{client}:50000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

use common::form_post as form;

fn bearer(token: &str) -> Request<Body> {
    Request::builder()
        .uri("/api/process")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn sign_in_body(token: &str, next: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("token={}&next={}", enc(token), enc(next))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_throttled_on_the_form_and_on_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_token(dir.path(), TOKEN).await;

    // The header: ten wrong guesses are answered 401, the eleventh 429 with Retry-After.
    for n in 0..10 {
        let answer = send(&app, from("192.0.2.10", bearer(&format!("guess-{n}-xxxxxxxxxxxx")))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let answer = send(&app, from("192.0.2.10", bearer("guess-11-xxxxxxxxxxxx"))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.body);
    let wait: u64 = answer.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(answer.body.contains("too many wrong tokens"), "{}", answer.body);
    // Held back, not even the right token is looked at; another address goes on.
    assert_eq!(send(&app, from("192.0.2.10", bearer(TOKEN))).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(send(&app, from("192.0.2.11", bearer(TOKEN))).await.status, StatusCode::OK);

    // The form: the same.
    for n in 0..10 {
        let answer = send(&app, from("192.0.2.20", form("/signin", &sign_in_body(&format!("guess {n}"), "/")))).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "guess {n}");
        assert!(answer.headers[header::LOCATION].to_str().unwrap().contains("failed=1"));
    }
    let answer = send(&app, from("192.0.2.20", form("/signin", &sign_in_body("guess 11", "/")))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    let answer = send(&app, from("192.0.2.20", form("/signin", &sign_in_body(TOKEN, "/")))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "no session while held back");
    assert!(!answer.headers.contains_key(header::SET_COOKIE));
    // Wrong guesses on the form count against the header too: one address, one quota.
    assert_eq!(send(&app, from("192.0.2.20", bearer("x"))).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_goes_only_to_a_path_here_even_with_characters_browsers_drop() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_token(dir.path(), TOKEN).await;
    for next in ["/\t/evil.example/", "/\r/evil.example/", "/\n/evil.example", "\t//evil.example", "/\\evil.example"] {
        let answer = send(&app, from("192.0.2.30", form("/signin", &sign_in_body(TOKEN, next)))).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(answer.headers[header::LOCATION], "/", "{next:?}");
    }
    let answer = send(&app, from("192.0.2.30", form("/signin", &sign_in_body(TOKEN, "/processing/4\t?x=1")))).await;
    assert_eq!(answer.headers[header::LOCATION], "/processing/4?x=1");
}

fn with_cookie(mut req: Request<Body>, cookie: &str) -> Request<Body> {
    req.headers_mut().insert(header::COOKIE, cookie.parse().unwrap());
    req
}

async fn signed_in(app: &Router) -> String {
    let answer = send(app, from("192.0.2.40", form("/signin", &sign_in_body(TOKEN, "/")))).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

fn list() -> Request<Body> {
    Request::builder().uri("/api/process").body(Body::empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_cookie_is_dead_after_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_token(dir.path(), TOKEN).await;
    let cookie = signed_in(&app).await;
    let copy = cookie.clone();
    assert_eq!(send(&app, with_cookie(list(), &cookie)).await.status, StatusCode::OK);
    let out = send(&app, with_cookie(form("/signout", ""), &cookie)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(send(&app, with_cookie(list(), &copy)).await.status, StatusCode::UNAUTHORIZED);
    let page = send(&app, with_cookie(Request::builder().uri("/").body(Body::empty()).unwrap(), &copy)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "a page goes to the sign-in form");
}

/// A half-sent request head: hyper's header timer closes the connection (SPEC section
/// 11: within 10 s), as it closes a keep-alive connection left idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_and_an_idle_connection_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(test_config(dir.path())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(jobdeck::server::http::serve(listener, app, async move {
        let _ = stopped.await;
    }));

    /// Reads until the server closes the connection; what it sent and how long that took.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> (String, Duration) {
        let start = Instant::now();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection was still open after 15 s");
        (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
    }

    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();

    let (sent, _) = until_closed(&mut half).await;
    assert!(!sent.contains("\"ok\""), "no answer to a request never finished: {sent}");
    until_closed(&mut silent).await;
    let (sent, _) = until_closed(&mut idle).await;
    assert!(sent.starts_with("HTTP/1.1 200") && sent.contains("\"ok\""), "answered, then closed when idle: {sent}");

    // Meanwhile, and after, the server answers others.
    let res = reqwest::get(format!("http://{addr}/api/health")).await.unwrap();
    assert_eq!(res.status(), 200);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paged_and_offsets_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(test_config(dir.path()));
    state.service.runner().start().await.unwrap();
    let service = state.service.clone();
    let app = jobdeck::server::app(state);
    for _ in 0..5 {
        service.create_job(JobKind::Preprocess, upload(b"Company\nAcme\n".to_vec(), 1)).await.unwrap();
    }
    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    let answer = send(&app, get("/api/preprocess/jobs?limit=2")).await;
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(answer.headers["x-total-count"], "5");
    let answer = send(&app, get("/api/preprocess/jobs?limit=2&offset=4")).await;
    let last: Vec<serde_json::Value> = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(last.len(), 1);
    assert!(last[0]["id"].as_i64() < jobs[1]["id"].as_i64(), "newest first, then older");
    for uri in [
        "/api/process?limit=99999999",
        "/api/process?offset=99999999999",
        "/api/preprocess/jobs/1/results?limit=9999999&offset=99999999999",
    ] {
        let answer = send(&app, get(uri)).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.body);
    }
    let answer = send(&app, get("/api/preprocess/jobs/1/results?limit=9999999")).await;
    let page: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(page["limit"], 500, "{page}");
    assert_eq!(send(&app, get("/api/process?offset=-1")).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formula_after_blanks_is_exported_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(test_config(dir.path()));
    state.service.runner().start().await.unwrap();
    let service = state.service.clone();
    let app = jobdeck::server::app(state);
    let csv = b"Company,Note\nAcme,\" =1+1\"\nBeta,\"\t=cmd|' /C calc'!A0\"\nGamma,plain\n".to_vec();
    let job = service.create_job(JobKind::Preprocess, upload(csv, 1)).await.unwrap();
    wait_job(&service, JobKind::Preprocess, job.id, Duration::from_secs(30), |j| j.is_terminal()).await;
    let uri = format!("/api/preprocess/jobs/{}/export?format=csv", job.id);
    let answer = send(&app, Request::builder().uri(uri).body(Body::empty()).unwrap()).await;
    let mut reader = csv::Reader::from_reader(answer.body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let note = headers.iter().position(|h| h == "Note").unwrap();
    let notes: Vec<String> = reader.records().map(|r| r.unwrap()[note].to_string()).collect();
    assert_eq!(notes, vec!["' =1+1".to_string(), "'\t=cmd|' /C calc'!A0".into(), "plain".into()]);
}
