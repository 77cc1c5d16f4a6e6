//! How pages and files go out: the front end's files precompressed and cached by
//! their hashed names, large answers compressed, and the dashboard a page at a time.
#![cfg(feature = "ssr")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use jobdeck::model::{JobKind, JOBS_PAGE};
use jobdeck::server::import::Upload;
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

async fn get(app: &Router, uri: &str, accept_encoding: Option<&str>) -> Answer {
    let mut req = Request::builder().uri(uri);
    if let Some(enc) = accept_encoding {
        req = req.header("accept-encoding", enc);
    }
    let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, headers, body }
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).map(|v| v.to_str().unwrap())
}

/// A site root with one front-end file and its precompressed copies, as a release
/// build leaves them.
fn site_with_pkg(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("site");
    let pkg = root.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("jobdeck.abc123.js"), "console.log('the plain file');".repeat(100)).unwrap();
    std::fs::write(pkg.join("jobdeck.abc123.js.br"), b"brotli bytes").unwrap();
    std::fs::write(pkg.join("jobdeck.abc123.js.gz"), b"gzip bytes").unwrap();
    root
}

fn app_over(dir: &std::path::Path, root: &std::path::Path, hashed: bool) -> Router {
    let options = leptos::config::LeptosOptions::builder()
        .output_name("jobdeck")
        .site_root(root.to_str().unwrap())
        .hash_files(hashed)
        .build();
    let state = jobdeck::server::build_state(names_alone(test_config(dir)), options).unwrap();
    jobdeck::server::app(state)
}

#[tokio::test]
async fn front_end_files_go_out_precompressed_and_hashed_names_are_cached_for_a_year() {
    let dir = tempfile::tempdir().unwrap();
    let root = site_with_pkg(dir.path());
    let app = app_over(dir.path(), &root, true);

    let br = get(&app, "/pkg/jobdeck.abc123.js", Some("gzip, deflate, br")).await;
    assert_eq!(br.status, StatusCode::OK);
    assert_eq!(header(&br, "content-encoding"), Some("br"));
    assert_eq!(br.body, b"brotli bytes", "the file compressed at build time, not again");
    assert_eq!(header(&br, "cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(header(&br, "content-type").unwrap().contains("javascript"));

    let gz = get(&app, "/pkg/jobdeck.abc123.js", Some("gzip")).await;
    assert_eq!(header(&gz, "content-encoding"), Some("gzip"));
    assert_eq!(gz.body, b"gzip bytes");

    let plain = get(&app, "/pkg/jobdeck.abc123.js", None).await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(plain.body.starts_with(b"console.log"));

    // A missing file is not cached: the next build may bring it.
    let missing = get(&app, "/pkg/jobdeck.other.js", Some("br")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, "cache-control"), None);
}

#[tokio::test]
async fn unhashed_front_end_files_are_revalidated() {
    let dir = tempfile::tempdir().unwrap();
    let root = site_with_pkg(dir.path());
    let app = app_over(dir.path(), &root, false);
    let res = get(&app, "/pkg/jobdeck.abc123.js", None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), Some("no-cache"));
    assert!(header(&res, "last-modified").is_some(), "a browser can revalidate cheaply");
}

fn one_row(kind: JobKind, i: usize) -> Upload {
    let csv = match kind {
        JobKind::Research => format!("Company\nResearch company {i}\n"),
        JobKind::Preprocess => format!("Company\nRaw company {i}\n"),
    };
    Upload {
        filename: format!("list-{i}.csv"),
        name: Some(format!("Job number {i}")),
        concurrency: Some(1),
        bytes: csv.into_bytes().into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_page_of_jobs_newest_first_over_both_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(names_alone(test_config(dir.path())));
    let service = state.service.clone();
    let app = jobdeck::server::app(state);
    // 60 jobs, the kinds interleaved; created one after another, so newest = highest i.
    let count = JOBS_PAGE as usize + 10;
    for i in 0..count {
        let kind = if i % 3 == 0 { JobKind::Preprocess } else { JobKind::Research };
        service.create_job(kind, one_row(kind, i)).await.unwrap();
    }

    let first = service.page_all(0, JOBS_PAGE).await.unwrap();
    assert_eq!(first.total, count as i64);
    let names: Vec<String> = first.jobs.iter().map(|j| j.name.clone()).collect();
    let expected: Vec<String> = (0..count).rev().take(JOBS_PAGE as usize).map(|i| format!("Job number {i}")).collect();
    assert_eq!(names, expected, "newest first over both kinds");
    let second = service.page_all(JOBS_PAGE, JOBS_PAGE).await.unwrap();
    let names: Vec<String> = second.jobs.iter().map(|j| j.name.clone()).collect();
    let expected: Vec<String> = (0..10).rev().map(|i| format!("Job number {i}")).collect();
    assert_eq!(names, expected);

    let page = get(&app, "/", None).await;
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains(&format!("Jobs 1–{JOBS_PAGE} of {count}")), "{html}");
    assert!(html.contains(&format!("Job number {}", count - 1)));
    assert!(!html.contains("Job number 9<"), "an older job is on the next page");
    assert!(html.contains(&format!("href=\"/?offset={JOBS_PAGE}\"")), "a link to the older jobs");

    let older = get(&app, &format!("/?offset={JOBS_PAGE}"), None).await;
    let html = String::from_utf8(older.body).unwrap();
    assert!(html.contains(&format!("Jobs {}–{count} of {count}", JOBS_PAGE + 1)), "{html}");
    assert!(html.contains("Job number 0<") && html.contains("Job number 9<"));
    assert!(html.contains("href=\"/\""), "a link back to the newest jobs");

    // The page went out compressed to a browser that takes it, and plain otherwise.
    let compressed = get(&app, "/", Some("gzip")).await;
    assert_eq!(header(&compressed, "content-encoding"), Some("gzip"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(compressed.body.as_slice()), &mut text).unwrap();
    assert!(text.contains(&format!("Jobs 1–{JOBS_PAGE} of {count}")));
}

#[tokio::test]
async fn a_small_answer_is_not_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(names_alone(test_config(dir.path()))));
    let res = get(&app, "/api/process/12345", Some("gzip, br")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(header(&res, "content-encoding"), None);
}
