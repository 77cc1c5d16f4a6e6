//! Open connections when a job reaches thousands of different websites. Each site is
//! visited once and the next account is another site, so a connection kept for reuse
//! is never reused; kept for long, those connections use up the process's open files,
//! and then every site check fails and the server can no longer accept a browser.
//!
//! Its own test binary, because it counts the whole process's open files.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::*;
use jobdeck::model::{JobKind, JobStatus};

const LONG: Duration = Duration::from_secs(60);
const SITES: usize = 300;

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// `SITES` rows, each on a loopback address of its own (so no row is a duplicate of
/// another), all served by one listener on every address.
fn csv(port: u16, second: u8) -> Vec<u8> {
    let mut csv = String::from("Company,Website\n");
    for i in 0..SITES {
        csv.push_str(&format!("Company {i},http://127.{second}.{}.{}:{port}/\n", i / 250 + 1, i % 250 + 1));
    }
    csv.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checking_many_sites_leaves_no_connection_open() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        println!("skipped: this system has no /proc/self/fd to count open files with");
        return;
    }
    let site = axum::Router::new().fallback(|| async {
        axum::response::Html("<html><head><title>A company</title></head><body><h1>Hello</h1></body></html>")
    });
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let service = service(test_config(dir.path())).await;

    // Liveness: one request per site, and the connection closes with its answer.
    let before = open_files();
    let job = service.create_job(JobKind::Preprocess, upload(csv(port, 3), 8)).await.unwrap();
    let job = wait_job(&service, JobKind::Preprocess, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    let after = open_files();
    let items = service.items(JobKind::Preprocess, job.id, None, 0, SITES as i64).await.unwrap().items;
    assert_eq!(items.len(), SITES);
    for item in &items {
        let liveness = &item.result.as_ref().unwrap()["liveness"];
        assert_eq!(liveness["reachable"], true, "line {}: {liveness}", item.line);
    }
    // A few files for the database's readers (up to 8, a file and its WAL each) and the
    // last checks' connections, still closing; not one (or two, with the site in this
    // process) for each of the sites.
    assert!(after < before + 60, "{} files were opened for {SITES} site checks and are still open", after - before);

    // Research: an account's pages share a connection, then it is let go of soon
    // after, not kept for the next account (another site) that never uses it.
    let before = open_files();
    let job = service.create_job(JobKind::Research, upload(csv(port, 4), 8)).await.unwrap();
    let job = wait_job(&service, JobKind::Research, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(job.failed, 0, "{job:#?}");
    // They go 5 to 10 s after their last use (the pool looks every 5 s); with 30 s
    // they would still be open at the end of this wait.
    wait_for(Duration::from_secs(20), "the idle connections to close", || async { open_files() < before + 60 }).await;
}
