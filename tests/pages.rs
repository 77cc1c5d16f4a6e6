//! Markup in user text stays text in the server-rendered pages, and only the page's
//! own scripts may run. Kept in a test binary of its own: while other tests of the
//! same process ran at the same time, a render of a job page here sometimes never
//! finished (about one run in ten on a loaded machine, seen on 2026-11-30 and on code
//! from before that day; the cause is not found yet). Alone in its process it has not
//! been seen to hang in hundreds of runs.
#![cfg(feature = "ssr")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Every `<script` tag of a page and the nonce each carries.
fn script_nonces(html: &str) -> Vec<Option<String>> {
    html.match_indices("<script")
        .map(|(at, _)| {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            tag.split("nonce=\"").nth(1).map(|rest| rest.split('"').next().unwrap().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_job_name_stays_text_and_only_the_pages_own_scripts_may_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(names_alone(test_config(dir.path())));
    let service = state.service.clone();
    let app = jobdeck::server::app(state);
    let evil = "</title><script>alert(\"title\")</script><img src=x onerror=alert(1)>";
    let mut up = common::upload(b"Company\n<b>Acme</b>\n".to_vec(), 1);
    up.name = Some(evil.to_string());
    let job = service.create_job(jobdeck::model::JobKind::Research, up).await.unwrap();
    for uri in ["/".to_string(), format!("/processing/{}", job.id), format!("/processing/{}/accounts", job.id)] {
        let res = app.clone().oneshot(Request::builder().uri(&uri).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
        let html = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(!html.contains("<script>alert"), "{uri}: the name ran as markup");
        assert!(!html.contains("<img src=x"), "{uri}: the name ran as markup");
        assert!(!html.contains("<b>Acme"), "{uri}: an account name ran as markup");
        if uri != "/" {
            let title = html.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap();
            assert!(title.contains("&lt;/title&gt;&lt;script&gt;alert("), "{uri}: the title is {title}");
        }
        let nonce = csp.split("'nonce-").nth(1).and_then(|r| r.split('\'').next()).expect("a nonce in the CSP");
        assert!(csp.contains("script-src 'nonce-") && !csp.contains("'unsafe-inline' 'wasm"), "{csp}");
        let scripts = script_nonces(&html);
        assert!(!scripts.is_empty(), "{uri} has its hydration script");
        for found in scripts {
            assert_eq!(found.as_deref(), Some(nonce), "{uri}: a script without the response's nonce");
        }
    }
    // Another response, another nonce.
    let first = app.clone().oneshot(Request::builder().uri("/").body(Body::empty()).unwrap()).await.unwrap();
    let second = app.clone().oneshot(Request::builder().uri("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_ne!(first.headers()["content-security-policy"], second.headers()["content-security-policy"]);
}
