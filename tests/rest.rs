//! The REST API of SPEC section 4, driven in-process through the whole router.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use jobdeck::model::JobStatus;
use serde_json::Value;
use tower::ServiceExt;

const BOUNDARY: &str = "jobdeck-test-boundary";

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Body {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
            )
            .bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").bytes());
    Body::from(body)
}

/// A multipart POST of `body` to `uri`, as a browser or `curl -F` sends one.
fn multipart_post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body.into())
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, bytes, ctype)
}

async fn json(app: &Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let (status, bytes, _) = send(app, req).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn upload(app: &Router, root: &str, fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (StatusCode, Value) {
    let req = multipart_post(root, multipart(fields, file));
    let (status, bytes, _) = send(app, req).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn wait_status(app: &Router, uri: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (status, job) = json(app, "GET", uri).await;
        assert_eq!(status, 200);
        if cond(&job) {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "timed out; job is {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn started_app(dir: &std::path::Path) -> Router {
    started_app_with(test_config(dir)).await
}

/// For tests whose research files name accounts only.
async fn started_app_names_alone(dir: &std::path::Path) -> Router {
    started_app_with(names_alone(test_config(dir))).await
}

async fn started_app_with(config: jobdeck::server::config::Config) -> Router {
    let state = state(config);
    state.service.runner().start().await.unwrap();
    jobdeck::server::app(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_research_job_driven_only_through_rest() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let app = started_app(dir.path()).await;
    let mut paths: Vec<String> = (0..2).map(|i| format!("/g/{i}")).collect();
    paths.extend((0..4).map(|i| format!("/f/{i}")));
    let mut csv = String::from_utf8(research_csv(&site, &paths)).unwrap();
    csv.push_str("=HYPERLINK(\"http://evil\"),https://example.invalid\n");

    let (status, job) =
        upload(&app, "/api/process", &[("name", "Q3 list"), ("concurrency", "2")], Some(("q3.csv", csv.as_bytes())))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    for key in [
        "id",
        "kind",
        "name",
        "filename",
        "status",
        "paused",
        "cancelled",
        "concurrency",
        "total",
        "pending",
        "processing",
        "completed",
        "failed",
        "createdAt",
        "startedAt",
        "updatedAt",
        "completedAt",
        "cancelledAt",
        "pausedReason",
        "resumeAt",
        "archivedAt",
        "scheduledPauseAt",
        "scheduledResumeAt",
    ] {
        assert!(job.get(key).is_some(), "job object lacks {key}: {job}");
    }
    assert_eq!(
        (job["kind"].as_str(), job["name"].as_str(), job["filename"].as_str()),
        (Some("research"), Some("Q3 list"), Some("q3.csv"))
    );
    assert_eq!(
        (job["total"].as_i64(), job["concurrency"].as_i64(), job["paused"].as_bool()),
        (Some(7), Some(2), Some(false))
    );
    assert!(job["createdAt"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC");
    let id = job["id"].as_i64().unwrap();
    let uri = format!("/api/process/{id}");

    wait_for(Duration::from_secs(30), "two in flight", || async { site.hit_count() == 2 }).await;
    let (status, paused) = json(&app, "POST", &format!("{uri}/pause")).await;
    assert_eq!(
        (status, paused["paused"].as_bool(), paused["status"].as_str()),
        (StatusCode::OK, Some(true), Some("processing"))
    );
    let (status, again) = json(&app, "POST", &format!("{uri}/pause")).await;
    assert_eq!((status, again["paused"].as_bool()), (StatusCode::OK, Some(true)), "pausing twice is a no-op");
    let (status, err) = json(&app, "DELETE", &format!("{uri}/delete")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(err["error"].as_str().unwrap().contains("pause or cancel first"));

    site.open_gate();
    let (status, resumed) = json(&app, "POST", &format!("{uri}/resume")).await;
    assert_eq!((status, resumed["paused"].as_bool()), (StatusCode::OK, Some(false)));
    let done = wait_status(&app, &uri, |j| j["status"] == "completed").await;
    assert_eq!((done["completed"].as_i64(), done["failed"].as_i64()), (Some(6), Some(1)));
    assert!(done["completedAt"].is_string());

    let (status, list) = json(&app, "GET", "/api/process").await;
    assert_eq!((status, list.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (status, page) = json(&app, "GET", &format!("{uri}/accounts?status=completed&offset=1&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((page["total"].as_i64(), page["items"].as_array().unwrap().len()), (Some(6), 2));
    assert_eq!(page["items"][0]["result"]["title"], "Company 1");
    let (status, failed) = json(&app, "GET", &format!("{uri}/accounts?status=failed")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(failed["items"][0]["error"].as_str().unwrap().contains("example.invalid"));
    let (status, _) = json(&app, "GET", &format!("{uri}/accounts?status=bogus")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let req = Request::builder().uri(format!("{uri}/export?format=csv")).body(Body::empty()).unwrap();
    let (status, bytes, ctype) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/csv"));
    let text = String::from_utf8(bytes).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(
        header.iter().take(6).collect::<Vec<_>>(),
        ["line", "status", "attempts", "error", "Company", "Website"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().any(|r| &r[4] == "'=HYPERLINK(\"http://evil\")"), "formula neutralised");
    assert!(rows.iter().any(|r| r.iter().any(|c| c == "Company 3")));

    let req = Request::builder().uri(format!("{uri}/export?format=json")).body(Body::empty()).unwrap();
    let (status, bytes, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let items: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 7);
    let (status, _) = json(&app, "GET", &format!("{uri}/export?format=xml")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, deleted) = json(&app, "DELETE", &format!("{uri}/delete")).await;
    assert_eq!((status, deleted), (StatusCode::OK, serde_json::json!({"deleted": true, "id": id})));
    let (status, err) = json(&app, "GET", &uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_state_actions_answer_409_and_unknown_jobs_404() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let app = started_app(dir.path()).await;
    for root in ["/api/process", "/api/preprocess/jobs"] {
        let csv = research_csv(&site, &["/g/1".to_string(), "/g/2".to_string()]);
        let (status, job) = upload(&app, root, &[], Some(("a.csv", &csv))).await;
        assert_eq!(status, StatusCode::CREATED);
        let uri = format!("{root}/{}", job["id"]);
        let (status, cancelled) = json(&app, "POST", &format!("{uri}/cancel")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((cancelled["status"].as_str(), cancelled["cancelled"].as_bool()), (Some("failed"), Some(true)));
        assert!(cancelled["cancelledAt"].is_string());
        for action in ["pause", "resume", "cancel"] {
            let (status, err) = json(&app, "POST", &format!("{uri}/{action}")).await;
            assert_eq!(status, StatusCode::CONFLICT, "{action} on a cancelled job");
            assert!(err["error"].as_str().unwrap().contains("cancelled"), "{err}");
        }
        for bad in ["999999", "abc", "0"] {
            for (method, tail) in
                [("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("POST", "/cancel"), ("DELETE", "/delete")]
            {
                let (status, err) = json(&app, method, &format!("{root}/{bad}{tail}")).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {root}/{bad}{tail}");
                assert!(err["error"].is_string());
            }
        }
        let (status, _) = json(&app, "DELETE", &format!("{uri}/delete")).await;
        assert_eq!(status, StatusCode::OK);
    }
    site.open_gate();
}

#[tokio::test]
async fn bad_uploads_answer_400_or_413_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = names_alone(test_config(dir.path()));
    config.server.max_upload_bytes = 4096;
    let state = state(config);
    let app = jobdeck::server::app(state);
    for root in ["/api/process", "/api/preprocess/jobs"] {
        let (status, err) = upload(&app, root, &[("name", "x")], None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"].as_str().unwrap().contains("file"));
        let (status, err) = upload(&app, root, &[], Some(("a.csv", b"Company,b\n1,2,3\n"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"].as_str().unwrap().contains("line 2"), "{err}");
        let (status, err) = upload(&app, root, &[("concurrency", "lots")], Some(("a.csv", b"Company\nAcme\n"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"].as_str().unwrap().contains("concurrency"));
        let big = format!("Company\n{}", "Acme\n".repeat(1000));
        let (status, err) = upload(&app, root, &[], Some(("big.csv", big.as_bytes()))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        let huge = format!("Company\n{}", "Acme\n".repeat(300_000));
        let (status, _) = upload(&app, root, &[], Some(("huge.csv", huge.as_bytes()))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let req = Request::builder()
            .method("POST")
            .uri(root)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (status, _, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, list) = json(&app, "GET", root).await;
        assert_eq!(list, serde_json::json!([]));
    }
    let (status, _) = upload(&app, "/api/process", &[], Some(("r.csv", b"Notes\nhello\n"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "research needs a name or website column");
}

/// Every bad upload of SPEC section 6, with the default limits, on both kinds: a 400
/// or 413 whose message names the problem, and no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_upload_is_refused_clearly_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = started_app_names_alone(dir.path()).await;
    let wide: String = (0..10_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
    let mut binary: Vec<u8> = b"\x89PNG\r\n\x1a\n".to_vec();
    binary.extend((0..4096u32).map(|i| (i * 7 % 256) as u8));
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("empty", Vec::new(), StatusCode::BAD_REQUEST, "empty"),
        ("header only", b"Company,Website\n".to_vec(), StatusCode::BAD_REQUEST, "no rows"),
        ("binary", binary, StatusCode::BAD_REQUEST, "UTF-8"),
        ("invalid UTF-8", b"Company\nAcme\nBad \xff\xfe name\n".to_vec(), StatusCode::BAD_REQUEST, "line 3"),
        (
            "60 MiB",
            format!("Company\n{}", "Acme Corporation\n".repeat(60 * 1024 * 1024 / 17)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            "10,000 columns",
            format!("{wide}\n{}\n", wide.replace('c', "v")).into_bytes(),
            StatusCode::BAD_REQUEST,
            "columns",
        ),
        (
            "a 1 MiB cell",
            format!("Company\n{}\n", "A".repeat(1024 * 1024)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "line 2",
        ),
        (
            "unbalanced quotes",
            b"Company,Website\n\"Acme,acme.com\nBeta,beta.com\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "quoted",
        ),
        (
            "a million and one rows",
            format!("Company\n{}", "Acme\n".repeat(1_000_001)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "1000000 rows",
        ),
    ];
    for root in ["/api/process", "/api/preprocess/jobs"] {
        for (what, bytes, want, says) in &cases {
            let (status, err) = upload(&app, root, &[], Some(("bad.csv", bytes))).await;
            assert_eq!(status, *want, "{root}, {what}: {err}");
            let message = err["error"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{root}, {what}: {message}");
        }
        let (_, list) = json(&app, "GET", root).await;
        assert_eq!(list, serde_json::json!([]), "{root}: nothing was created");
    }
    // Not bad: repeated headers are kept apart, formula cells kept as text (and made
    // harmless in the CSV export).
    let (status, job) =
        upload(&app, "/api/preprocess/jobs", &[], Some(("ok.csv", b"Company,Company,Notes\nAcme,Other,=1+2\n"))).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preprocessing_job_through_rest_and_on_to_research() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let app = started_app(dir.path()).await;
    let csv = format!("Company,Website\nAcme Inc.,{}\nAcme,{}\nNobody,\n", site.url("/f/a"), site.url("/f/a"));
    let (status, job) = upload(&app, "/api/preprocess/jobs", &[], Some(("crm.csv", csv.as_bytes()))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(job["kind"], "preprocess");
    let uri = format!("/api/preprocess/jobs/{}", job["id"]);
    let (status, _) = json(&app, "POST", &format!("{uri}/research")).await;
    assert!(status == StatusCode::CONFLICT || status == StatusCode::CREATED);
    let done = wait_status(&app, &uri, |j| j["status"] == "completed").await;
    assert_eq!(done["completed"].as_i64(), Some(3));
    let (status, page) = json(&app, "GET", &format!("{uri}/results?limit=10")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["result"]["company"], "Acme");
    assert_eq!(page["items"][1]["duplicateOf"], 2);
    let req = Request::builder().uri(format!("{uri}/export")).body(Body::empty()).unwrap();
    let (status, bytes, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv::Reader::from_reader(&bytes[..]).records().count(), 3);
    // Counts and filters by outcome (SPEC section 16).
    let (_, done) = json(&app, "GET", &uri).await;
    assert_eq!(done["outcomes"], serde_json::json!({"clean": 1, "duplicate": 1, "invalid": 1, "unreachable": 0}));
    let (status, invalid) = json(&app, "GET", &format!("{uri}/results?outcome=invalid")).await;
    assert_eq!(
        (status, invalid["total"].as_i64(), invalid["items"][0]["line"].as_i64()),
        (StatusCode::OK, Some(1), Some(4))
    );
    for bad in ["outcome=bogus", "outcome=clean&status=failed"] {
        let (status, err) = json(&app, "GET", &format!("{uri}/results?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }

    let (status, research) = json(&app, "POST", &format!("{uri}/research")).await;
    assert_eq!(status, StatusCode::CREATED, "{research}");
    let (status, again) = json(&app, "POST", &format!("{uri}/research")).await;
    assert_eq!(status, StatusCode::CONFLICT, "a second send: {again}");
    assert!(again["error"].as_str().unwrap().contains(research["name"].as_str().unwrap()), "{again}");
    let (_, linked) = json(&app, "GET", &uri).await;
    assert_eq!(linked["researchJobId"], research["id"]);
    assert_eq!(
        (research["kind"].as_str(), research["total"].as_i64()),
        (Some("research"), Some(1)),
        "only the clean, unique, reachable row"
    );
    let r_uri = format!("/api/process/{}", research["id"]);
    let done = wait_status(&app, &r_uri, |j| j["status"] == "completed").await;
    assert_eq!(done["status"].as_str().map(|s| s.parse::<JobStatus>().unwrap()), Some(JobStatus::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_server_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(names_alone(test_config(dir.path()))));
    let req = Request::builder().uri("/").body(Body::empty()).unwrap();
    let (status, bytes, ctype) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/html"));
    let html = String::from_utf8(bytes).unwrap();
    assert!(html.contains("No jobs yet"), "{html}");
    assert!(html.contains("/pkg/jobdeck.js"), "the page loads the hydration script");
}

#[tokio::test]
async fn every_api_answer_is_json_even_for_unknown_paths_wrong_methods_and_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let app = started_app_names_alone(dir.path()).await;
    let (status, _) = upload(&app, "/api/process", &[], Some(("a.csv", b"Company\nAcme\n"))).await;
    assert_eq!(status, StatusCode::CREATED);
    for (method, uri, expected) in [
        ("GET", "/api/nothing/here", StatusCode::NOT_FOUND),
        ("GET", "/api", StatusCode::NOT_FOUND),
        ("GET", "/api/process/1/pause", StatusCode::METHOD_NOT_ALLOWED),
        ("PUT", "/api/process", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/api/process/1/accounts?status=failed&status=completed", StatusCode::BAD_REQUEST),
        ("GET", "/api/process/1/accounts?limit=ten", StatusCode::BAD_REQUEST),
    ] {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let (status, bytes, ctype) = send(&app, req).await;
        assert_eq!(status, expected, "{method} {uri}");
        assert!(ctype.starts_with("application/json"), "{method} {uri} answered {ctype}");
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {uri}: {body}");
    }
    // Pages outside /api keep their HTML 404.
    let req = Request::builder().uri("/no/such/page").body(Body::empty()).unwrap();
    let (status, _, ctype) = send(&app, req).await;
    assert_eq!((status, ctype.starts_with("text/html")), (StatusCode::NOT_FOUND, true));
}

/// A body that produces `total` bytes of one multipart upload, 64 KiB at a time, and
/// counts how many of them were read.
fn counted_upload(total: usize, kind_field: bool) -> (Body, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pulled = std::sync::Arc::new(AtomicUsize::new(0));
    let mut head = String::new();
    if kind_field {
        head.push_str(&format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nresearch\r\n"));
    }
    head.push_str(&format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\nCompany\n"
    ));
    let chunk = bytes::Bytes::from("Acme Anvils Incorporated\n".repeat(64 * 1024 / 25));
    let counter = pulled.clone();
    let mut sent = 0usize;
    let mut first = Some(bytes::Bytes::from(head));
    let stream = futures::stream::poll_fn(move |_| {
        let next = first.take().unwrap_or_else(|| chunk.clone());
        if sent >= total {
            return std::task::Poll::Ready(None);
        }
        sent += next.len();
        counter.fetch_add(next.len(), Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(next)))
    });
    (Body::from_stream(stream), pulled)
}

#[tokio::test]
async fn an_oversized_upload_is_refused_early_on_the_rest_api_and_the_ui_path_alike() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let mut config = names_alone(test_config(dir.path()));
    config.server.max_upload_bytes = 1024 * 1024;
    let state = state(config);
    let service = state.service.clone();
    let app = jobdeck::server::app(state);
    for (uri, kind_field) in [("/api/process", false), ("/api/preprocess/jobs", false), ("/api/upload_job", true)] {
        // Declared too large: refused before a byte of the body is read.
        let (body, pulled) = counted_upload(300 << 20, kind_field);
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .header("content-length", (300u64 << 20).to_string())
            .body(body)
            .unwrap();
        let (status, bytes, _) = send(&app, req).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {text}");
        assert_eq!(pulled.load(Ordering::SeqCst), 0, "{uri} read the body of a declared 300 MiB upload");
        if kind_field {
            // The UI's client reads server function errors as `ServerError|message`.
            assert!(text.starts_with("ServerError|the upload is larger than the limit"), "{text}");
        } else {
            assert!(text.contains("\"error\""), "{text}");
        }

        // Streamed with no length: cut off as soon as it passes the limit.
        let (body, pulled) = counted_upload(300 << 20, kind_field);
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body)
            .unwrap();
        let (status, bytes, _) = send(&app, req).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {text}");
        assert!(text.contains("limit"), "{uri}: {text}");
        assert!(!kind_field || text.starts_with("ServerError|"), "{uri}: {text}");
        let read = pulled.load(Ordering::SeqCst);
        assert!(read <= (1 << 20) + 3 * 64 * 1024, "{uri} read {read} bytes of a 300 MiB upload");
    }
    assert!(service.page_all(0, 50).await.unwrap().jobs.is_empty(), "no job was created");

    // The UI's path takes a small upload, with its kind.
    let req = Request::builder()
        .method("POST")
        .uri("/api/upload_job")
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .header("accept", "application/json")
        .body(multipart(&[("kind", "preprocess"), ("name", "From the UI")], Some(("a.csv", b"company\nAcme\n"))))
        .unwrap();
    let (status, bytes, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    let jobs = service.page_all(0, 50).await.unwrap().jobs;
    assert_eq!((jobs.len(), jobs[0].name.as_str(), jobs[0].kind.as_str()), (1, "From the UI", "preprocess"));
}

#[tokio::test]
async fn other_bodies_are_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let app = started_app(dir.path()).await;
    let req = Request::builder()
        .method("POST")
        .uri("/api/process/1/pause")
        .header("content-length", (2u64 << 20).to_string())
        .body(Body::from(vec![b'x'; 2 << 20]))
        .unwrap();
    let (status, bytes, ctype) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(ctype.starts_with("application/json"), "{}", String::from_utf8_lossy(&bytes));
}

#[tokio::test]
async fn a_name_over_200_characters_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let app = started_app(dir.path()).await;
    let long = "x".repeat(201);
    let (status, err) = upload(&app, "/api/process", &[("name", &long)], Some(("a.csv", b"Company\nAcme\n"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("200"), "{err}");
}

/// The browser's build and the server's must agree on every server function's path
/// however and wherever each was built: the paths are fixed, with no build hash.
#[test]
fn server_functions_have_fixed_paths() {
    let mut paths: Vec<String> = leptos::server_fn::axum::server_fn_paths().map(|(path, _)| path.to_string()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/bulk_jobs",
            "/api/control_job",
            "/api/edit_job",
            "/api/get_job",
            "/api/job_events",
            "/api/list_items",
            "/api/list_jobs",
            "/api/research_from_clean",
            "/api/schedule_job",
            "/api/signed_in",
            "/api/upload_job"
        ]
    );
}

async fn json_body(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, bytes, ctype) = send(app, req).await;
    assert!(ctype.starts_with("application/json"), "{method} {uri}: {}", String::from_utf8_lossy(&bytes));
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// SPEC section 8 over HTTP: PATCH, schedule, retry, archive/unarchive, events and bulk, with
/// their 400s, 404s and 409s as JSON errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_section_8_routes_answer_with_the_spec_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let app = started_app(dir.path()).await;
    let (_, running) =
        upload(&app, "/api/process", &[("concurrency", "1")], Some(("a.csv", &research_csv(&site, &paths("/g/", 3)))))
            .await;
    let (_, done) =
        upload(&app, "/api/process", &[("concurrency", "2")], Some(("b.csv", &research_csv(&site, &paths("/f/", 2)))))
            .await;
    let (run_uri, done_uri) = (format!("/api/process/{}", running["id"]), format!("/api/process/{}", done["id"]));
    wait_status(&app, &done_uri, |j| j["status"] == "completed").await;

    // PATCH
    let (status, job) = json_body(&app, "PATCH", &run_uri, r#"{"concurrency": 4, "name": "Wider"}"#).await;
    assert_eq!((status, job["concurrency"].as_i64(), job["name"].as_str()), (StatusCode::OK, Some(4), Some("Wider")));
    for (body, want) in [
        (r#"{"concurrency": 0}"#, 400),
        (r#"{"concurrency": 65}"#, 400),
        (r#"{"concurrency": "eight"}"#, 400),
        (r#"{"concurrency": 2.5}"#, 400),
        (r#"{"name": 7}"#, 400),
        (r#"{"status": "completed"}"#, 400),
        ("{}", 400),
        ("not json", 400),
        ("[1]", 400),
    ] {
        let (status, err) = json_body(&app, "PATCH", &run_uri, body).await;
        assert_eq!(status.as_u16(), want, "{body}: {err}");
        assert!(err["error"].is_string(), "{body}: {err}");
    }
    let (status, _) = json_body(&app, "PATCH", &done_uri, r#"{"concurrency": 3}"#).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = json_body(&app, "PATCH", "/api/process/987654", r#"{"name": "x"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Schedule: PUT sets both times (a key left out is null), DELETE clears.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let plus_two = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).with_timezone(&plus_two).to_rfc3339();
    let body = format!(r#"{{"pauseAt": "{soon}", "resumeAt": "{later}"}}"#);
    let (status, job) = json_body(&app, "PUT", &format!("{run_uri}/schedule"), &body).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp();
    assert_eq!(at(&job["scheduledPauseAt"]), chrono::DateTime::parse_from_rfc3339(&soon).unwrap().timestamp());
    assert_eq!(at(&job["scheduledResumeAt"]), chrono::DateTime::parse_from_rfc3339(&later).unwrap().timestamp());
    assert!(job["scheduledResumeAt"].as_str().unwrap().ends_with('Z'), "given back in UTC: {job}");
    let (status, job) =
        json_body(&app, "PUT", &format!("{run_uri}/schedule"), &format!(r#"{{"resumeAt": "{soon}"}}"#)).await;
    assert_eq!((status, job["scheduledPauseAt"].is_null()), (StatusCode::OK, true), "{job}");
    let (status, job) = json(&app, "DELETE", &format!("{run_uri}/schedule")).await;
    assert_eq!((status, job["scheduledResumeAt"].is_null()), (StatusCode::OK, true), "{job}");
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    for body in [
        format!(r#"{{"pauseAt": "{past}"}}"#),
        r#"{"pauseAt": "tomorrow"}"#.to_string(),
        r#"{"pauseAt": 1767225600}"#.to_string(),
        r#"{"at": null}"#.to_string(),
        "[]".to_string(),
    ] {
        let (status, err) = json_body(&app, "PUT", &format!("{run_uri}/schedule"), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err["error"].is_string(), "{body}: {err}");
    }
    let (status, _) =
        json_body(&app, "PUT", &format!("{done_uri}/schedule"), &format!(r#"{{"pauseAt": "{soon}"}}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = json(&app, "DELETE", &format!("{done_uri}/schedule")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = json(&app, "DELETE", "/api/preprocess/jobs/987654/schedule").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Retry, archive, unarchive
    let (status, err) = json(&app, "POST", &format!("{done_uri}/retry")).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing failed: {err}");
    let (status, _) = json(&app, "POST", &format!("{run_uri}/archive")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, job) = json(&app, "POST", &format!("{done_uri}/archive")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(job["archivedAt"].as_str().unwrap().ends_with('Z'));
    let (_, list) = json(&app, "GET", "/api/process").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "the archived job is left out: {list}");
    let (_, list) = json(&app, "GET", "/api/process?archived=true").await;
    assert_eq!(list.as_array().unwrap().iter().map(|j| j["id"].clone()).collect::<Vec<_>>(), vec![done["id"].clone()]);
    let (_, list) = json(&app, "GET", "/api/process?archived=all").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (status, _) = json(&app, "GET", "/api/process?archived=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, job) = json(&app, "POST", &format!("{done_uri}/unarchive")).await;
    assert_eq!((status, job["archivedAt"].is_null()), (StatusCode::OK, true));

    // Events
    let (status, events) = json(&app, "GET", &format!("{done_uri}/events")).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["unarchived", "archived", "completed", "created"]);
    let first = &events[0];
    for key in ["id", "at", "action", "source", "detail"] {
        assert!(first.get(key).is_some(), "event lacks {key}: {first}");
    }
    assert_eq!(
        (first["source"].as_str(), events[1]["source"].as_str(), events[2]["source"].as_str()),
        (Some("api"), Some("api"), Some("system"))
    );
    let before = events[1]["id"].as_i64().unwrap();
    let (_, older) = json(&app, "GET", &format!("{done_uri}/events?limit=1&before={before}")).await;
    assert_eq!(
        older.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect::<Vec<_>>(),
        ["completed"]
    );
    for bad in ["limit=0", "limit=x", "before=y"] {
        let (status, _) = json(&app, "GET", &format!("{done_uri}/events?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = json(&app, "GET", "/api/preprocess/jobs/987654/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bulk
    let body = format!(
        r#"{{"action": "pause", "jobs": [{{"kind": "research", "id": {}}}, {{"kind": "research", "id": {}}}, {{"kind": "preprocess", "id": 987654}}]}}"#,
        running["id"], done["id"]
    );
    let (status, out) = json_body(&app, "POST", "/api/jobs/bulk", &body).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!((results[0]["ok"].as_bool(), results[0]["kind"].as_str()), (Some(true), Some("research")));
    assert_eq!((results[1]["ok"].as_bool(), results[1]["status"].as_i64()), (Some(false), Some(409)));
    assert!(results[1]["error"].is_string());
    assert_eq!(results[2]["status"].as_i64(), Some(404));
    let (status, out) = json_body(
        &app,
        "POST",
        "/api/jobs/bulk",
        r#"{"action": "resume", "filter": {"kind": "research", "status": "paused"}}"#,
    )
    .await;
    assert_eq!((status, out["results"].as_array().unwrap().len()), (StatusCode::OK, 1), "{out}");
    for body in [
        r#"{"action": "explode", "jobs": []}"#,
        r#"{"jobs": []}"#,
        r#"{"action": "pause"}"#,
        r#"{"action": "pause", "jobs": [], "filter": {}}"#,
        r#"{"action": "pause", "jobs": [{"kind": "elsewhere", "id": 1}]}"#,
        r#"{"action": "pause", "filter": {"status": "sleepy"}}"#,
        r#"{"action": "pause", "filter": {"colour": "red"}}"#,
        "nonsense",
    ] {
        let (status, err) = json_body(&app, "POST", "/api/jobs/bulk", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err["error"].is_string());
    }
    json(&app, "POST", &format!("{run_uri}/cancel")).await;
}

/// Building a router (which generates the route list) while another thread renders
/// the dashboard must not stall that render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_while_other_routers_are_built() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(names_alone(test_config(dir.path()))));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let builder = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let other = tempfile::tempdir().unwrap();
            let state = state(names_alone(test_config(other.path())));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                drop(jobdeck::server::app(state.clone()));
            }
        }
    });
    for i in 0..200 {
        let req = Request::builder().uri("/").body(Body::empty()).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), send(&app, req)).await;
        if answer.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("request {i} for / stalled while routers were being built");
        }
        assert_eq!(answer.unwrap().0, StatusCode::OK);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    builder.join().unwrap();
}

/// A form's fields may come in any order: a name and concurrency sent after the file
/// still set the job's; the UI form's kind must come before its file.
#[tokio::test]
async fn settings_sent_after_the_file_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(names_alone(test_config(dir.path()))));
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"late.csv\"\r\n\r\nCompany\nAcme\nGlobex\n\r\n"
    );
    for (name, value) in [("name", "Named after the file"), ("concurrency", "7")] {
        body.push_str(&format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    let req = multipart_post("/api/preprocess/jobs", body.clone());
    let (status, bytes, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&bytes));
    let job: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (job["name"].as_str(), job["concurrency"].as_i64(), job["total"].as_i64()),
        (Some("Named after the file"), Some(7), Some(2))
    );

    // A bad setting after the file refuses the whole upload and leaves no job.
    let bad = body.replace("\r\n7\r\n", "\r\n70\r\n");
    let req = multipart_post("/api/process", bad);
    let (status, bytes, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bytes).contains("concurrency must be between 1 and 64"));
    let (_, jobs) = json(&app, "GET", "/api/process").await;
    assert_eq!(jobs, serde_json::json!([]));
}

/// An upload whose body breaks off half-way (the client went away) leaves nothing.
#[tokio::test]
async fn an_upload_that_breaks_off_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(names_alone(test_config(dir.path()))));
    let head =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.csv\"\r\n\r\nCompany\n");
    let rows: String = (0..20_000).map(|i| format!("Company {i}\n")).collect();
    let pieces: Vec<Result<String, std::io::Error>> =
        vec![Ok(head), Ok(rows), Err(std::io::Error::other("the client went away"))];
    let req = multipart_post("/api/process", Body::from_stream(futures::stream::iter(pieces)));
    let (status, _, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, jobs) = json(&app, "GET", "/api/process").await;
    assert_eq!(jobs, serde_json::json!([]));
    let conn = rusqlite::Connection::open(dir.path().join("jobdeck.sqlite3")).unwrap();
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0)).unwrap();
    let jobs: i64 = conn.query_row("SELECT COUNT(*) FROM processing_jobs", [], |r| r.get(0)).unwrap();
    assert_eq!((rows, jobs), (0, 0));
}

/// A file refused early (its second line is bad) is answered with that line once the
/// rest of the body has been read and dropped, so a client still sending gets the
/// answer; nothing is kept.
#[tokio::test]
async fn a_file_refused_early_is_answered_after_the_rest_of_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let app = jobdeck::server::app(state(names_alone(test_config(dir.path()))));
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bad.csv\"\r\n\r\nCompany,Website\nAcme,acme.com,surplus\n"
    );
    let mut pieces: Vec<Result<String, std::io::Error>> = vec![Ok(head)];
    pieces.extend((0..40).map(|p| Ok((0..2000).map(|i| format!("Company {p}-{i},c{i}.example\n")).collect())));
    pieces.push(Ok(format!("\r\n--{BOUNDARY}--\r\n")));
    let req = multipart_post("/api/process", Body::from_stream(futures::stream::iter(pieces)));
    let (status, bytes, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bytes).contains("line 2: the row has 3 fields but the header has 2"));
    let (_, jobs) = json(&app, "GET", "/api/process").await;
    assert_eq!(jobs, serde_json::json!([]));
}
