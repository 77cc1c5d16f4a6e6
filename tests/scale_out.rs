//! Scale-out with the real binary (SPEC section 10): one `jobdeck serve --no-runner` and
//! three `jobdeck worker` processes on one PostgreSQL database (a schema of the test's
//! own), researching a local slow site. Skipped, with a line, without a server.
#![cfg(all(feature = "ssr", unix))]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use common::pg::{url, Schema};

/// Every worker's cap over all jobs; the job's concurrency is three times it.
const CAP: usize = 4;
const PAGE_MS: u64 = 40;

/// A site whose every page takes [`PAGE_MS`]; it records when each request started and
/// how many were in flight at most.
#[derive(Clone, Default)]
struct Slow {
    inner: Arc<Mutex<SlowState>>,
}

#[derive(Default)]
struct SlowState {
    starts: Vec<(String, Instant)>,
    in_flight: usize,
    most: usize,
}

impl Slow {
    async fn start() -> (Self, String) {
        let slow = Slow::default();
        let app = axum::Router::new()
            .route(
                "/p/{n}",
                get(|State(s): State<Slow>, UrlPath(n): UrlPath<String>| async move {
                    {
                        let mut st = s.inner.lock().unwrap();
                        st.starts.push((n, Instant::now()));
                        st.in_flight += 1;
                        st.most = st.most.max(st.in_flight);
                    }
                    tokio::time::sleep(Duration::from_millis(PAGE_MS)).await;
                    s.inner.lock().unwrap().in_flight -= 1;
                    axum::response::Html("<html><head><title>A company</title></head><body>Hello</body></html>")
                }),
            )
            .with_state(slow.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (slow, base)
    }

    fn starts(&self) -> Vec<(String, Instant)> {
        self.inner.lock().unwrap().starts.clone()
    }

    /// The most requests in flight at once since the last call, counted afresh from now.
    fn take_most(&self) -> usize {
        let mut st = self.inner.lock().unwrap();
        let most = st.most;
        st.most = st.in_flight;
        most
    }
}

struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn start(schema: &str, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let database = format!("{}?options=-c%20search_path%3D{schema}", url());
        let child = Command::new(env!("CARGO_BIN_EXE_jobdeck"))
            .args(args)
            .env("JOBDECK_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"))
            .env("JOBDECK_DATABASE_URL", database)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("LEPTOS_SITE_ROOT", std::env::temp_dir())
            .env("JOBDECK_DB", std::env::temp_dir().join(format!("jobdeck-scale-out-{port}.sqlite3")))
            .env("JOBDECK_ALLOW_PRIVATE_TARGETS", "1")
            // The test's site is one host: its per-host limit would hide the workers' own.
            .env("JOBDECK_HOST_CONCURRENCY", "64")
            .env("JOBDECK_GLOBAL_CONCURRENCY", CAP.to_string())
            .env("JOBDECK_PAUSE_POLL_MS", "500")
            .env("JOBDECK_WORKER_TIMEOUT_MS", "1000")
            .env("JOBDECK_MAX_EXTRA_PAGES", "0")
            .env("JOBDECK_MAX_ATTEMPTS", "1")
            .env("JOBDECK_LLM_BASE_URL", "")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the jobdeck binary starts");
        Self { child, port }
    }

    async fn wait_ready(&self, path: &str) {
        let start = Instant::now();
        let client = reqwest::Client::new();
        while client.get(format!("http://127.0.0.1:{}{path}", self.port)).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "a process did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn create(&self, site: &str, prefix: &str, n: usize, concurrency: usize) -> i64 {
        let mut csv = String::from("Company,Website\n");
        for i in 0..n {
            csv.push_str(&format!("Company {i},{site}/p/{prefix}-{i}\n"));
        }
        let url = format!("{}/api/process", self.base);
        common::create_over_http(&self.client, &url, csv.into_bytes(), concurrency as u32).await
    }

    async fn job(&self, id: i64) -> serde_json::Value {
        self.client.get(format!("{}/api/process/{id}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn post(&self, id: i64, action: &str) {
        let res = self.client.post(format!("{}/api/process/{id}/{action}", self.base)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{action}");
    }

    async fn wait(&self, id: i64, what: &str, cond: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let job = self.job(id).await;
            if cond(&job) {
                return job;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting for {what}: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The API server with no runner of its own, over `schema`, ready; and a client for it.
async fn serve_without_runner(schema: &Schema) -> (Process, Api) {
    let server = Process::start(&schema.name, &["serve", "--no-runner"]);
    server.wait_ready("/api/health").await;
    let api = Api { base: format!("http://127.0.0.1:{}", server.port), client: reqwest::Client::new() };
    (server, api)
}

fn per_path(starts: &[(String, Instant)], prefix: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (p, _) in starts.iter().filter(|(p, _)| p.starts_with(prefix)) {
        *out.entry(p.clone()).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_job_within_its_concurrency_pause_at_once_and_survive_a_kill() {
    let Some(schema) = Schema::new(false).await else { return };
    let (site, base) = Slow::start().await;
    let (_server, api) = serve_without_runner(&schema).await; // kept alive to the end
    let mut workers: Vec<Process> = Vec::new();

    // One worker, then two, then three, on jobs three times one worker's cap: the
    // workers' caps bound them, and more workers share a job.
    let n = 120;
    let mut rates = Vec::new();
    let mut most = Vec::new();
    for count in 1..=3usize {
        while workers.len() < count {
            workers.push(Process::start(&schema.name, &["worker"]));
        }
        for w in &workers {
            w.wait_ready("/health").await;
        }
        let items = count * n;
        let started = Instant::now();
        let job = api.create(&base, &format!("w{count}"), items, 3 * CAP).await;
        api.wait(job, "a job to complete", |j| j["status"] == "completed").await;
        rates.push(items as f64 / started.elapsed().as_secs_f64());
        most.push(site.take_most());
    }
    eprintln!(
        "items/s: one worker {:.0}, two {:.0} ({:.2}x), three {:.0} ({:.2}x); most in flight at once: {most:?}",
        rates[0],
        rates[1],
        rates[1] / rates[0],
        rates[2],
        rates[2] / rates[0]
    );
    assert!(most.iter().all(|&m| m <= 3 * CAP), "never more than the job's concurrency in flight: {most:?}");
    // Each worker runs at most CAP items at once, so more than CAP (2 * CAP) requests
    // in flight together means two (three) workers were on the job at the same time.
    assert_eq!(most[0], CAP, "one worker runs the job up to its own cap: {most:?} in flight");
    assert!(most[1] > CAP, "two workers share a job: {most:?} in flight at once");
    assert!(most[2] > 2 * CAP, "three workers share a job: {most:?} in flight at once");

    // A pause through the API stops every worker: nothing starts after it returned
    // (a claim committed just before may still reach the site a moment later).
    let big = api.create(&base, "pause", 4 * n, 3 * CAP).await;
    api.wait(big, "a running job", |j| j["completed"].as_i64().unwrap_or(0) > 30).await;
    api.post(big, "pause").await;
    let paused_at = Instant::now();
    api.wait(big, "in-flight items to finish", |j| j["processing"] == 0).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let last_start = site.starts().iter().filter(|(p, _)| p.starts_with("pause-")).map(|(_, t)| *t).max().unwrap();
    let after = last_start.saturating_duration_since(paused_at);
    eprintln!("last start after the pause returned: {} ms", after.as_millis());
    assert!(after <= Duration::from_millis(100), "a worker started an item {} ms after the pause", after.as_millis());
    let paused = api.job(big).await;
    assert_eq!(paused["paused"], true);

    // Kill one worker mid-job: its items come back once it is declared dead, and the
    // job completes with nothing lost and at most its in-flight items redone.
    api.post(big, "resume").await;
    api.wait(big, "the job running again", |j| j["processing"].as_i64().unwrap_or(0) >= (2 * CAP) as i64).await;
    workers[0].kill9();
    let killed_at = Instant::now();
    let done = api.wait(big, "the job to complete after a kill", |j| j["status"] == "completed").await;
    eprintln!("completed {} ms after the kill (worker timeout 1,000 ms)", killed_at.elapsed().as_millis());
    assert_eq!(done["completed"].as_i64().unwrap() + done["failed"].as_i64().unwrap(), (4 * n) as i64);
    let hits = per_path(&site.starts(), "pause-");
    assert_eq!(hits.len(), 4 * n, "every item reached the site");
    let redone = hits.values().filter(|&&k| k > 1).count();
    eprintln!("items redone after the kill: {redone}");
    assert!(redone <= CAP, "only the killed worker's in-flight items ran twice, {redone} did");
}

/// The crash loop on PostgreSQL: two workers share one job and, 20 times at random
/// moments, one of them is killed (SIGKILL) and a new one started. The job completes
/// with every item; an item is redone only if it was in flight at a kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_worker_kills_at_random_moments_lose_nothing() {
    let Some(schema) = Schema::new(false).await else { return };
    let (site, base) = Slow::start().await;
    let (_server, api) = serve_without_runner(&schema).await; // kept alive to the end
    let mut workers = vec![Process::start(&schema.name, &["worker"]), Process::start(&schema.name, &["worker"])];
    for w in &workers {
        w.wait_ready("/health").await;
    }
    let n = 800;
    let job = api.create(&base, "loop", n, 2 * CAP).await;
    let db = schema.connect().await;
    let mut random = common::Random::seeded("JOBDECK_CRASH_SEED");
    let mut next = move || random.next();
    let mut in_flight_at_kills = 0i64;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50 + next() % 300)).await;
        let victim = (next() % 2) as usize;
        workers[victim].kill9();
        // Everything in flight at that moment, the dead worker's items among them.
        let row = db
            .query_one("SELECT count(*) FROM accounts WHERE job_id = $1 AND status = 'processing'", &[&job])
            .await
            .unwrap();
        in_flight_at_kills += row.get::<_, i64>(0);
        workers[victim] = Process::start(&schema.name, &["worker"]);
        workers[victim].wait_ready("/health").await;
    }
    let done = api.wait(job, "the job to complete", |j| j["status"] == "completed").await;
    assert_eq!((done["completed"].as_i64(), done["failed"].as_i64()), (Some(n as i64), Some(0)), "{done}");
    let hits = per_path(&site.starts(), "loop-");
    assert_eq!(hits.len(), n, "every item reached the site");
    let redone: i64 = hits.values().map(|&k| k as i64 - 1).sum();
    eprintln!("20 worker kills: {in_flight_at_kills} items in flight at the kills, {redone} redone");
    assert!(redone <= in_flight_at_kills, "redone {redone} > in flight at the kills {in_flight_at_kills}");
    let counts =
        db.query("SELECT status, count(*) FROM accounts WHERE job_id = $1 GROUP BY status", &[&job]).await.unwrap();
    let counts: Vec<(String, i64)> = counts.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(counts, vec![("completed".to_string(), n as i64)]);
}
