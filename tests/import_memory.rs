//! An upload is imported as it arrives (SPEC section 6): a 200 MB file streamed through
//! the whole router, as fast as the router takes it, never makes the process hold it.
//! Its own test binary, so no other test shares the process whose peak memory it reads.
#![cfg(feature = "ssr")]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use http_body_util::BodyExt;
use jobdeck::model::JobKind;
use tower::ServiceExt;

const BOUNDARY: &str = "jobdeck-memory-test";
/// Rows of about 2 KB: 100,000 of them make a file of about 200 MB.
const ROWS: usize = 100_000;
const NOTES: usize = 1_950;

/// A field of `/proc/self/status` in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn row(i: usize) -> String {
    // Every row's notes differ a little, so nothing compresses or repeats whole.
    let notes: String = (0..NOTES).map(|k| char::from(b'a' + ((i + k) % 26) as u8)).collect();
    format!("Company {i:06},https://www.company-{i:06}.example/,{notes}\n")
}

/// The multipart body of a `ROWS`-row file, made while it is sent, in pieces of about
/// 256 KB: nothing holds the file whole, on either side.
fn streamed_upload() -> (Body, u64) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\
         Content-Type: text/csv\r\n\r\nCompany,Website,Notes\n"
    );
    let tail = format!(
        "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"concurrency\"\r\n\r\n3\r\n--{BOUNDARY}--\r\n"
    );
    let size = (head.len() + tail.len()) as u64 + (0..ROWS).map(|i| row(i).len() as u64).sum::<u64>();
    let pieces = futures::stream::unfold((0usize, Some(head), Some(tail)), |(next, head, tail)| async move {
        if let Some(head) = head {
            return Some((Ok::<_, std::io::Error>(head.into_bytes()), (next, None, tail)));
        }
        if next < ROWS {
            let mut piece = String::with_capacity(260 * 1024);
            let mut i = next;
            while i < ROWS && piece.len() < 256 * 1024 {
                piece.push_str(&row(i));
                i += 1;
            }
            return Some((Ok(piece.into_bytes()), (i, None, tail)));
        }
        tail.map(|t| (Ok(t.into_bytes()), (next, None, None)))
    });
    (Body::from_stream(pieces), size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_is_imported_without_the_process_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = names_alone(test_config(dir.path()));
    config.server.max_upload_bytes = 256 * 1024 * 1024;
    let state = state(config);
    let service = state.service.clone();
    let app = jobdeck::server::app(state);
    // Warm up: one small upload, so the pools, caches and statements exist already.
    let (content_type, body) = multipart_csv(b"Company\nWarm-up\n".to_vec(), 1);
    let warm = Request::post("/api/process").header("content-type", content_type).body(Body::from(body)).unwrap();
    assert_eq!(app.clone().oneshot(warm).await.unwrap().status(), 201);

    // Peak memory counts from here (writing 5 resets it; kernels since 4.0).
    std::fs::write("/proc/self/clear_refs", "5").expect("the peak memory can be reset");
    let before = status_kib("VmRSS");
    let (body, size) = streamed_upload();
    assert!(size > 200_000_000, "the upload is {size} bytes");
    let request = Request::post("/api/process")
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let peak = status_kib("VmHWM");
    let job: serde_json::Value = serde_json::from_slice(&answer).unwrap();

    // Every row is in, whole, with its line; the settings sent after the file count.
    assert_eq!(job["total"], ROWS as i64);
    assert_eq!(job["concurrency"], 3);
    assert_eq!(job["name"], "big");
    let id = job["id"].as_i64().unwrap();
    let last = service.items(JobKind::Research, id, None, ROWS as i64 - 1, 1).await.unwrap().items;
    assert_eq!(last[0].line, ROWS as i64 + 1);
    assert_eq!(last[0].input["Notes"], row(ROWS - 1).trim_end().rsplit(',').next().unwrap());

    // The file is about 200 MB; the process grew by a small, fixed part of that.
    let grew_mib = peak.saturating_sub(before) / 1024;
    println!("RSS before {} MiB, peak during the import {} MiB (+{grew_mib} MiB)", before / 1024, peak / 1024);
    assert!(grew_mib < 64, "a {} MB import raised the peak by {grew_mib} MiB", size / 1_000_000);
}
