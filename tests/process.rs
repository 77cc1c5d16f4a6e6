//! The real server binary under signals: SIGTERM drains in-flight items and leaves
//! nothing `processing`, and exits even with a download still open; SIGKILL mid-job
//! loses nothing after a restart; a second server on the same file refuses to start.
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
        Self::start_with(db, Stdio::null())
    }

    fn start_with(db: &Path, stderr: Stdio) -> Self {
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
            .stderr(stderr)
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
        self.create_at("/api/process", csv, concurrency).await
    }

    async fn create_at(&self, root: &str, csv: Vec<u8>, concurrency: u32) -> i64 {
        create_over_http(&reqwest::Client::new(), &format!("{}{root}", self.base), csv, concurrency).await
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
    wait_completed_within(server, id, Duration::from_secs(30)).await
}

async fn wait_completed_within(server: &Server, id: i64, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let job = server.job(id).await;
        if job["status"] == "completed" {
            return job;
        }
        assert!(start.elapsed() < limit, "job did not complete: {job}");
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
    let signalled = Instant::now();
    assert!(server.wait_exit(Duration::from_secs(20)).await, "clean exit (status 0) on SIGTERM");
    // The grace period is 2 s (JOBDECK_SHUTDOWN_GRACE_MS); the two items needed 0.6 s.
    let took = signalled.elapsed();
    assert!(took < Duration::from_millis(2000 + 1500), "exited {took:?} after SIGTERM, past the grace period");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let first = Server::start(&db);
    first.wait_ready().await;
    let id = first.create(research_csv(&site, &["/g/1".to_string()]), 1).await;
    wait_for(Duration::from_secs(30), "the item in flight", || async { site.hit_count() == 1 }).await;

    let mut second = Server::start_with(&db, Stdio::piped());
    assert!(!second.wait_exit(Duration::from_secs(30)).await, "the second server exits with an error");
    let mut stderr = String::new();
    std::io::Read::read_to_string(second.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("another jobdeck server is already using the database"), "{stderr}");

    // The first one's in-flight item was left alone and finishes.
    let job = first.job(id).await;
    assert_eq!(job["processing"], 1, "the second server did not take the item over: {job}");
    site.open_gate();
    assert_eq!(wait_completed(&first, id).await["completed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_even_with_a_download_still_open() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let mut server = Server::start(&db);
    server.wait_ready().await;
    let mut csv = String::from("company,notes\n");
    for i in 0..30_000 {
        csv.push_str(&format!("Company {i},{}\n", "n".repeat(100)));
    }
    let id = server.create_at("/api/preprocess/jobs", csv.into_bytes(), 8).await;

    // A client that asks for the export and then reads nothing, with a tiny receive
    // buffer, so the server's side of the download stalls.
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    write!(stream, "GET /api/preprocess/jobs/{id}/export?format=json HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // the download is under way

    server.signal("TERM");
    // Grace 2 s for the runner, then 2 s for open connections.
    assert!(server.wait_exit(Duration::from_secs(20)).await, "a clean exit despite the stalled download");
    drop(stream);
}

/// On the SQLite file one process runs everything: the scale-out commands say what they
/// need instead of starting (SPEC section 10).
#[test]
fn the_scale_out_commands_say_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["worker"][..], &["serve", "--no-runner"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_jobdeck"))
            .args(args)
            .env("JOBDECK_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"))
            .env("JOBDECK_DB", dir.path().join("jobdeck.sqlite3"))
            .env("JOBDECK_DATABASE_URL", "")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} refuses to start on SQLite");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("need JOBDECK_DATABASE_URL=postgres://"), "{args:?}: {stderr}");
    }
    // A PostgreSQL that does not answer is said so, plainly.
    let out = Command::new(env!("CARGO_BIN_EXE_jobdeck"))
        .arg("worker")
        .env("JOBDECK_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"))
        .env("JOBDECK_DATABASE_URL", "postgres://jobdeck@127.0.0.1:1/jobdeck")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the PostgreSQL database: cannot connect to PostgreSQL"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_jobdeck")).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: jobdeck"));
}

/// SPEC section 2 under a crash loop: the server is killed (SIGKILL) at 20 random
/// moments of one running job and restarted each time. The job completes with every
/// item, an item is redone only if it was in flight at a kill, and the file is sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_at_random_moments_lose_nothing_and_redo_only_what_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    // 600 accounts whose pages take 20–80 ms: the job runs across the kills.
    let paths: Vec<String> = (0..600).map(|i| format!("/d/{}/{i}", 20 + (i * 37) % 61)).collect();
    let mut server = Server::start(&db);
    server.wait_ready().await;
    let id = server.create(research_csv(&site, &paths), 4).await;

    let mut random = Random::seeded("JOBDECK_CRASH_SEED");
    let mut next = move || random.next();
    let mut in_flight_at_kills = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(30 + next() % 400)).await;
        server.signal("KILL");
        server.wait_exit(Duration::from_secs(10)).await;
        in_flight_at_kills += count_items(&db, JobKind::Research, id).get("processing").copied().unwrap_or(0);
        server = Server::start(&db);
        server.wait_ready().await;
    }
    let job = wait_completed_within(&server, id, Duration::from_secs(120)).await;
    assert_eq!((job["completed"].as_i64(), job["failed"].as_i64()), (Some(600), Some(0)), "{job}");
    let counts = count_items(&db, JobKind::Research, id);
    assert_eq!(counts.get("completed"), Some(&600));
    let hits = site.hits_by_path();
    assert!(paths.iter().all(|p| hits.get(p).is_some_and(|n| *n >= 1)), "every account was researched");
    let redone: i64 = hits.values().map(|n| *n as i64 - 1).sum();
    assert!(redone <= in_flight_at_kills, "redone {redone} > in flight at the kills {in_flight_at_kills}");
    drop(server);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    println!("20 kills survived; {in_flight_at_kills} items in flight at the kills, {redone} redone");
}

/// Load and control at once: 20 clients read job status every 100 ms while 4 send
/// random pauses and resumes (now and then a cancel) to three running jobs. Every
/// request is answered, none with a 5xx, the log never says the database was locked,
/// and afterwards each job's counters equal its items. 15 s here; JOBDECK_STORM_SECS=60
/// runs the full minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_reads_and_control_actions_is_answered_without_a_5xx() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let log = dir.path().join("server.log");
    let site = Site::start().await;
    let server = Server::start_with(&db, Stdio::from(std::fs::File::create(&log).unwrap()));
    server.wait_ready().await;
    let mut ids = Vec::new();
    for j in 0..3 {
        // Enough work that all three still run when the storm ends, paused half the time.
        let paths: Vec<String> = (0..20_000).map(|i| format!("/d/{}/{j}-{i}", 5 + (i * 13) % 30)).collect();
        ids.push(server.create(research_csv(&site, &paths), 8).await);
    }
    let secs: u64 = std::env::var("JOBDECK_STORM_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Cancels come now and then, in the last third only, so the jobs run through most
    // of the storm.
    let cancels_from = Instant::now() + Duration::from_secs(secs * 2 / 3);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let (answered, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(std::sync::Mutex::new(Vec::<String>::new())));
    let mut tasks = Vec::new();
    for client_no in 0..24u64 {
        let (client, base, ids) = (client.clone(), server.base.clone(), ids.clone());
        let (answered, failures) = (answered.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut random = Random::fixed(0x9E37_79B9_7F4A_7C15u64 ^ (client_no + 1));
            let mut next = move || random.next();
            while Instant::now() < deadline {
                let id = ids[(next() % 3) as usize];
                let (request, reader) = if client_no < 20 {
                    (client.get(format!("{base}/api/process/{id}")), true)
                } else {
                    let action = match next() % 100 {
                        0 if Instant::now() >= cancels_from => "cancel",
                        n if n % 2 == 0 => "pause",
                        _ => "resume",
                    };
                    (client.post(format!("{base}/api/process/{id}/{action}")), false)
                };
                match request.send().await {
                    Ok(res) if res.status().is_server_error() => {
                        failures.lock().unwrap().push(format!("HTTP {}", res.status()));
                    }
                    // 409: a control action on a job a cancel ended; fine.
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                let pause = if reader { 100 } else { 20 + next() % 180 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let answered = answered.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        answered,
        &failures[..failures.len().min(5)]
    );
    println!("storm: {answered} requests answered in {secs} s, none with a 5xx");

    // Still: every job cancelled (in one transaction each), then counters against items.
    for &id in &ids {
        let _ = client.post(format!("{}/api/process/{id}/cancel", server.base)).send().await.unwrap();
        let job = server.job(id).await;
        let counts = count_items(&db, JobKind::Research, id);
        let get = |s: &str| counts.get(s).copied().unwrap_or(0);
        assert_eq!(
            (job["pending"].as_i64(), job["processing"].as_i64(), job["completed"].as_i64(), job["failed"].as_i64()),
            (Some(get("pending")), Some(get("processing")), Some(get("completed")), Some(get("failed"))),
            "job {id}'s counters disagree with its items"
        );
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("database is locked"), "the log says the database was locked:\n{log}");
}

/// SPEC section 9: without a token, a server asked to listen on an address other
/// machines can reach refuses to start and says why; JOBDECK_ALLOW_OPEN=1 lets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_reachable_address_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = |allow: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobdeck"));
        command
            .env("JOBDECK_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"))
            .env("LEPTOS_SITE_ADDR", format!("0.0.0.0:{port}"))
            .env("LEPTOS_SITE_ROOT", dir.path())
            .env("JOBDECK_DB", &db)
            .env_remove("JOBDECK_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(allow) = allow {
            command.env("JOBDECK_ALLOW_OPEN", allow);
        } else {
            command.env_remove("JOBDECK_ALLOW_OPEN");
        }
        command.spawn().expect("the jobdeck binary starts")
    };
    let refused = run(None).wait_with_output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refusing to serve on 0.0.0.0") && stderr.contains("JOBDECK_TOKEN"), "{stderr}");
    assert!(!db.exists(), "nothing was opened");

    let mut open = Server { child: run(Some("1")), base: format!("http://127.0.0.1:{port}") };
    open.wait_ready().await;
    open.signal("TERM");
    assert!(open.wait_exit(Duration::from_secs(20)).await);
}

/// SPEC section 11: a token anyone could guess, or a webhook that would go out
/// unsigned, stops start-up with a sentence that says what to do.
#[test]
fn a_short_token_or_an_unsigned_webhook_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobdeck"));
        command
            .env("JOBDECK_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"))
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("LEPTOS_SITE_ROOT", dir.path())
            .env("JOBDECK_DB", &db)
            .env_remove("JOBDECK_TOKEN")
            .env_remove("JOBDECK_WEBHOOK_URL")
            .env_remove("JOBDECK_WEBHOOK_SECRET")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in vars {
            command.env(name, value);
        }
        let out = command.output().expect("the jobdeck binary runs");
        assert!(!out.status.success(), "{vars:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for token in ["a", "fifteen chars!!"] {
        let stderr = run(&[("JOBDECK_TOKEN", token)]);
        assert!(stderr.contains("JOBDECK_TOKEN is") && stderr.contains("at least 16"), "{stderr}");
    }
    let stderr = run(&[("JOBDECK_WEBHOOK_URL", "http://127.0.0.1:9/hook")]);
    assert!(stderr.contains("JOBDECK_WEBHOOK_SECRET is empty"), "{stderr}");
}
