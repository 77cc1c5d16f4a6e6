//! Test harness: a real SQLite file, the real runner and steps, and a real website
//! server on 127.0.0.1 whose pages can be held open, slowed down or made to fail.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jobdeck::model::{Job, JobKind};
use jobdeck::server::config::Config;
use jobdeck::server::import::Upload;
use jobdeck::server::service::Service;
use jobdeck::server::state::AppState;
use tokio::sync::watch;

pub mod pg;

/// A website server for the accounts under test.
///
/// - `/f/{n}`: answers at once;
/// - `/g/{n}`: waits until the gate opens ([`Site::open_gate`]);
/// - `/d/{ms}/{n}`: waits `ms` milliseconds;
/// - `/e/{n}`: answers 503 (a transient error);
/// - `/links/{n}`: a hostile page, 2 MiB of links, addresses, profiles and phones.
#[derive(Clone)]
pub struct Site {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
    gate: Arc<watch::Sender<bool>>,
    app: Router,
}

#[derive(Clone)]
struct SiteState {
    hits: Arc<Mutex<Vec<String>>>,
    gate: watch::Receiver<bool>,
}

fn page(n: &str) -> Response {
    Html(format!(
        "<html lang=\"en\"><head><title>Company {n}</title><meta name=\"description\" content=\"We make thing {n}.\"></head>\
         <body><h1>Company {n}</h1><a href=\"mailto:hello{n}@example.com\">mail</a></body></html>"
    ))
    .into_response()
}

/// About 2 MiB of distinct same-site links, e-mail addresses, social profiles and
/// phone numbers: what a link farm or a huge sitemap page looks like to the parser.
pub fn hostile_links_page() -> String {
    use std::fmt::Write;
    let mut page = String::from("<html><head><title>Everything</title></head><body>\n");
    let mut i = 0;
    while page.len() < 2 * 1024 * 1024 - 200 {
        let _ = writeln!(
            page,
            "<a href=\"/p/{i}\">page {i}</a> <a href=\"mailto:user{i}@example{i}.com\">mail</a> \
             <a href=\"https://twitter.com/acct{i}\">t</a> <a href=\"tel:+1555{i:07}\">call</a>"
        );
        i += 1;
    }
    page.push_str("</body></html>");
    page
}

impl Site {
    pub async fn start() -> Self {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (gate, gate_rx) = watch::channel(false);
        let state = SiteState { hits: hits.clone(), gate: gate_rx };
        let app = Router::new()
            .route(
                "/f/{n}",
                get(|State(s): State<SiteState>, Path(n): Path<String>| async move {
                    s.hits.lock().unwrap().push(format!("/f/{n}"));
                    page(&n)
                }),
            )
            .route(
                "/g/{n}",
                get(|State(mut s): State<SiteState>, Path(n): Path<String>| async move {
                    s.hits.lock().unwrap().push(format!("/g/{n}"));
                    let _ = s.gate.wait_for(|open| *open).await;
                    page(&n)
                }),
            )
            .route(
                "/d/{ms}/{n}",
                get(|State(s): State<SiteState>, Path((ms, n)): Path<(u64, String)>| async move {
                    s.hits.lock().unwrap().push(format!("/d/{ms}/{n}"));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    page(&n)
                }),
            )
            .route(
                "/e/{n}",
                get(|State(s): State<SiteState>, Path(n): Path<String>| async move {
                    s.hits.lock().unwrap().push(format!("/e/{n}"));
                    StatusCode::SERVICE_UNAVAILABLE
                }),
            )
            .route(
                "/links/{n}",
                get(|State(s): State<SiteState>, Path(n): Path<String>| async move {
                    s.hits.lock().unwrap().push(format!("/links/{n}"));
                    Html(hostile_links_page())
                }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = app.clone();
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        Self { addr, hits, gate: Arc::new(gate), app }
    }

    /// The same site served on another loopback address too (`127.0.1.5`): a host of
    /// its own, with a domain of its own. Returns the base URL there.
    pub async fn also_on(&self, ip: &str) -> String {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = self.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    pub fn hit_count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// How many times each path was requested.
    pub fn hits_by_path(&self) -> HashMap<String, usize> {
        let mut map = HashMap::new();
        for h in self.hits() {
            *map.entry(h).or_insert(0) += 1;
        }
        map
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }
}

/// A configuration for tests: a database file in `dir`, loopback allowed, fast polls.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.db = dir.join("jobdeck.sqlite3");
    config.runner.allow_private_targets = true;
    config.runner.pause_poll_ms = 100;
    config.runner.retry_base_ms = 10;
    config.runner.request_timeout_ms = 10_000;
    config.runner.shutdown_grace_ms = 200;
    config.runner.max_extra_pages = 0;
    // Every test site is one host on 127.0.0.1: the per-host limit (SPEC section 12)
    // would stand between a test and the job's own window. Its own tests set it back.
    config.runner.host_concurrency = 64;
    config
}

/// The app state built exactly as the server builds it.
pub fn state(config: Config) -> AppState {
    let options = leptos::config::LeptosOptions::builder().output_name("jobdeck").build();
    jobdeck::server::build_state(config, options).expect("state builds")
}

/// A started service over `config`.
pub async fn service(config: Config) -> Service {
    let state = state(config);
    state.service.runner().start().await.expect("runner starts");
    state.service
}

/// A started service over `config` after an in-process "crash" (a runtime shut down
/// in the background): its tasks, and with them its hold on the database's lock file,
/// go away shortly after, as a killed process's would at once.
pub async fn service_after_crash(config: Config) -> Service {
    let options = leptos::config::LeptosOptions::builder().output_name("jobdeck").build();
    let start = Instant::now();
    let state = loop {
        match jobdeck::server::build_state(config.clone(), options.clone()) {
            Ok(state) => break state,
            Err(e) if start.elapsed() < Duration::from_secs(10) && e.to_string().contains("another jobdeck server") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("state does not build: {e}"),
        }
    };
    state.service.runner().start().await.expect("runner starts");
    state.service
}

/// `n` paths on a [`Site`]: `prefix` followed by 0, 1, ….
pub fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Lets a few poll cycles of the runner (100 ms in [`test_config`]) pass, for asserting
/// that something does NOT happen (there is no event to wait for).
pub async fn several_polls() {
    tokio::time::sleep(Duration::from_millis(450)).await;
}

/// A research CSV whose websites are the given paths on `site`.
pub fn research_csv(site: &Site, paths: &[String]) -> Vec<u8> {
    let mut csv = String::from("Company,Website\n");
    for (i, p) in paths.iter().enumerate() {
        csv.push_str(&format!("Company {i},{}\n", site.url(p)));
    }
    csv.into_bytes()
}

/// A CSV upload as a browser or `curl -F` sends it: the content type and the body.
pub fn multipart_csv(csv: Vec<u8>, concurrency: u32) -> (String, Vec<u8>) {
    let boundary = "jobdeck-test-upload";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"concurrency\"\r\n\r\n{concurrency}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n"
    )
    .into_bytes();
    body.extend(csv);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads a CSV to a running server's REST API at `url`, expects 201 and returns the
/// new job's id.
pub async fn create_over_http(client: &reqwest::Client, url: &str, csv: Vec<u8>, concurrency: u32) -> i64 {
    let (content_type, body) = multipart_csv(csv, concurrency);
    let res = client.post(url).header("content-type", content_type).body(body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap()
}

pub fn upload(bytes: Vec<u8>, concurrency: u32) -> Upload {
    Upload { filename: "accounts.csv".into(), name: None, concurrency: Some(concurrency), bytes: bytes.into() }
}

/// Waits (polling every 10 ms) until `cond` holds for the job; panics with the last
/// state after `timeout`.
pub async fn wait_job(
    service: &Service,
    kind: JobKind,
    id: i64,
    timeout: Duration,
    cond: impl Fn(&Job) -> bool,
) -> Job {
    let start = Instant::now();
    loop {
        let job = service.get(kind, id).await.expect("job exists");
        if cond(&job) {
            return job;
        }
        if start.elapsed() > timeout {
            panic!("condition not met within {timeout:?}; job is {job:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `cond` holds; panics after `timeout`.
pub async fn wait_for<F: Future<Output = bool>>(timeout: Duration, what: &str, mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Per-status item counts read straight from the table, to check the job's counters.
pub fn count_items(db: &std::path::Path, kind: JobKind, job_id: i64) -> HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let table = match kind {
        JobKind::Research => "accounts",
        JobKind::Preprocess => "preprocessing_results",
    };
    let mut stmt =
        conn.prepare(&format!("SELECT status, COUNT(*) FROM {table} WHERE job_id = ?1 GROUP BY status")).unwrap();
    stmt.query_map([job_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Asserts the job's counters equal the item rows.
pub fn assert_counters_match(db: &std::path::Path, job: &Job) {
    assert_counts_match(job, &count_items(db, job.kind, job.id));
}

/// Asserts the job's counters equal per-status counts of its items, however read.
pub fn assert_counts_match(job: &Job, counts: &HashMap<String, i64>) {
    let get = |s: &str| counts.get(s).copied().unwrap_or(0);
    assert_eq!(
        (job.pending, job.processing, job.completed, job.failed),
        (get("pending"), get("processing"), get("completed"), get("failed")),
        "counters of job {} disagree with its items",
        job.id
    );
}

/// A small xorshift generator for tests that act at random moments: seeded from
/// `var` when it is set (to repeat a failing run), else from the clock; the seed is
/// printed.
pub struct Random(u64);

impl Random {
    pub fn seeded(var: &str) -> Self {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        println!("random seed {seed} (repeat with {var}={seed})");
        Self(seed)
    }

    pub fn fixed(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A form post as a browser sends one without script (the sign-in form, say).
pub fn form_post(uri: &str, body: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::builder()
        .method("POST")
        .uri(uri)
        .header(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

/// The whole router of a started server whose access token is `token`.
pub async fn app_with_token(dir: &std::path::Path, token: &str) -> Router {
    let mut config = test_config(dir);
    config.server.token = token.into();
    let state = state(config);
    state.service.runner().start().await.unwrap();
    jobdeck::server::app(state)
}

/// `config` with an LLM endpoint that refuses every connection: research then takes a
/// file whose accounts have names only (SPEC section 16), as the upload and page tests
/// that use such files need; an item that asks the endpoint fails at once.
pub fn names_alone(mut config: Config) -> Config {
    config.llm.base_url = "http://127.0.0.1:9/v1".into();
    config
}
