//! The real server binary under signals: SIGTERM drains in-flight items and leaves
//! nothing `processing`; SIGKILL mid-job loses nothing after a restart.
#![cfg(all(feature = "ssr", unix))]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jobdeck::model::JobKind;

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_jobdeck"))
            .env("JOBDECK_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"))
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("LEPTOS_SITE_ROOT", db.parent().unwrap())
            .env("JOBDECK_DB", db)
            .env("JOBDECK_ALLOW_PRIVATE_TARGETS", "1")
            .env("JOBDECK_PAUSE_POLL_MS", "100")
            .env("JOBDECK_SHUTDOWN_GRACE_MS", "2000")
            .env("JOBDECK_MAX_EXTRA_PAGES", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the jobdeck binary starts");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        while client.get(format!("{}/api/health", self.base)).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns whether it exited cleanly.
    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(start.elapsed() < timeout, "server did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create(&self, csv: Vec<u8>, concurrency: u32) -> i64 {
        let boundary = "jobdeck-process-test";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"concurrency\"\r\n\r\n{concurrency}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n"
        )
        .into_bytes();
        body.extend(csv);
        body.extend(format!("\r\n--{boundary}--\r\n").bytes());
        let res = reqwest::Client::new()
            .post(format!("{}/api/process", self.base))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    async fn job(&self, id: i64) -> serde_json::Value {
        reqwest::get(format!("{}/api/process/{id}", self.base)).await.unwrap().json().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_completed(server: &Server, id: i64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let job = server.job(id).await;
        if job["status"] == "completed" {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "job did not complete: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_items_finish_and_leaves_nothing_processing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let mut paths: Vec<String> = (0..2).map(|i| format!("/d/600/{i}")).collect();
    paths.extend((0..8).map(|i| format!("/g/{i}")));
    let mut server = Server::start(&db);
    server.wait_ready().await;
    let id = server.create(research_csv(&site, &paths), 2).await;
    wait_for(Duration::from_secs(30), "two slow requests in flight", || async { site.hit_count() == 2 }).await;

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).await, "clean exit on SIGTERM");
    let counts = count_items(&db, JobKind::Research, id);
    assert_eq!(counts.get("completed"), Some(&2), "the in-flight items finished within the grace period");
    assert_eq!(counts.get("processing"), None);
    assert_eq!(counts.get("pending"), Some(&8));
    assert_eq!(site.hit_count(), 2, "no item started after the signal");

    site.open_gate();
    let server = Server::start(&db);
    server.wait_ready().await;
    let job = wait_completed(&server, id).await;
    assert_eq!(job["completed"], 10);
    assert_eq!(site.hits_by_path().values().filter(|&&n| n > 1).count(), 0, "nothing was redone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_loses_nothing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let mut paths: Vec<String> = (0..4).map(|i| format!("/f/{i}")).collect();
    paths.extend((0..6).map(|i| format!("/g/{i}")));
    let mut server = Server::start(&db);
    server.wait_ready().await;
    let id = server.create(research_csv(&site, &paths), 2).await;
    wait_for(Duration::from_secs(30), "the fast ones done and two held", || async { site.hit_count() == 6 }).await;

    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10)).await;
    let counts = count_items(&db, JobKind::Research, id);
    assert_eq!(counts.get("completed"), Some(&4));
    assert_eq!(counts.get("processing"), Some(&2), "the crash left two items processing");

    site.open_gate();
    let server = Server::start(&db);
    server.wait_ready().await;
    let job = wait_completed(&server, id).await;
    assert_eq!((job["completed"].as_i64(), job["total"].as_i64()), (Some(10), Some(10)));
    let hits = site.hits_by_path();
    assert!((0..4).all(|i| hits[&format!("/f/{i}")] == 1), "completed accounts were not redone: {hits:?}");
}
