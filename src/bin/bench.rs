//! jobdeck's benchmark: every figure of BENCHMARKS.md in one run, each beside its
//! reference, printed as a table and written as JSON.
//!
//! ```sh
//! cargo run --release --features ssr --bin bench                 # a million rows
//! cargo run --release --features ssr --bin bench -- --rows 100000 --json bench.json
//! ```
//!
//! The server runs in this process on a loopback port, with a real SQLite file in a
//! temporary folder; every request goes over HTTP as a client's would. Figures are
//! timings of this machine: compare ratios, not seconds, across machines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jobdeck::server::{self, config::Config};
use serde_json::{json, Value};

// As the server binary: the engine's figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One line of the table.
struct Figure {
    what: String,
    value: f64,
    unit: &'static str,
    reference: Option<(String, f64)>,
    target: &'static str,
}

impl Figure {
    fn new(what: impl Into<String>, value: f64, unit: &'static str, target: &'static str) -> Self {
        Self { what: what.into(), value, unit, reference: None, target }
    }

    fn against(mut self, what: impl Into<String>, value: f64) -> Self {
        self.reference = Some((what.into(), value));
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.reference.as_ref().map(|(_, r)| if *r == 0.0 { f64::NAN } else { self.value / r })
    }

    fn json(&self) -> Value {
        json!({
            "what": self.what, "value": self.value, "unit": self.unit,
            "reference": self.reference.as_ref().map(|(w, v)| json!({"what": w, "value": v})),
            "ratio": self.ratio(), "target": self.target,
        })
    }
}

struct Options {
    rows: usize,
    json: PathBuf,
    only: Option<Vec<String>>,
}

fn options() -> Options {
    let mut o = Options { rows: 1_000_000, json: PathBuf::from("bench.json"), only: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => o.rows = args.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "--json" => o.json = args.next().map(PathBuf::from).expect("--json PATH"),
            "--only" => o.only = args.next().map(|v| v.split(',').map(str::to_string).collect()),
            "-h" | "--help" => {
                println!(
                    "bench [--rows N] [--json PATH] [--only engine,pg,paced,import,delete,frontend,dashboard,bulk,window,hosts]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// A server of this build on a loopback port, over a fresh database in `dir`.
struct Server {
    base: String,
    client: reqwest::Client,
    service: server::service::Service,
}

async fn start_server(dir: &Path, tune: impl FnOnce(&mut Config)) -> Server {
    start_server_on(dir, None, tune).await
}

/// As [`start_server`], on PostgreSQL when `pg` names a database URL and a fresh schema.
async fn start_server_on(dir: &Path, pg: Option<(&str, &str)>, tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.server.db = dir.join("bench.sqlite3");
    config.server.max_upload_bytes = 200 << 20;
    config.server.max_rows = 2_000_000;
    config.runner.allow_private_targets = true;
    config.runner.max_extra_pages = 0;
    // The bench's sites are one host on 127.0.0.1; the engine is measured, not the
    // per-host limit (SPEC section 12) a real job of many hosts never meets.
    config.runner.host_concurrency = 1024;
    tune(&mut config);
    let options = leptos::config::LeptosOptions::builder().output_name("jobdeck").site_root("target/site").build();
    let state = match pg {
        None => server::build_state(config, options).expect("the server state builds"),
        Some((url, schema)) => {
            let size = config.runner.global_concurrency.clamp(4, 64) + 8;
            let store =
                server::store::postgres::PgStore::open(url, Some(schema), size).await.expect("PostgreSQL opens");
            server::build_state_with(store.into(), config, options).expect("the server state builds")
        }
    };
    let service = state.service.clone();
    service.runner().start().await.expect("the runner starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, server::app(state)).await });
    Server { base: format!("http://{addr}"), client: reqwest::Client::new(), service }
}

impl Server {
    /// Uploads `file` as `curl -F` would, read from disk while it is sent, and times
    /// the answer.
    async fn upload(&self, root: &str, file: &Path, concurrency: u32) -> (Value, Duration) {
        use std::io::Read;
        let boundary = "jobdeck-bench-boundary";
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"concurrency\"\r\n\r\n{concurrency}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.csv\"\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let size = head.len() as u64 + std::fs::metadata(file).unwrap().len() + tail.len() as u64;
        // Read a piece at a time as the body goes out (from the page cache: quick).
        let opened = std::fs::File::open(file).unwrap();
        let pieces =
            futures::stream::unfold((Some(head), Some(opened), Some(tail)), |(head, opened, tail)| async move {
                if let Some(head) = head {
                    return Some((Ok::<_, std::io::Error>(bytes::Bytes::from(head)), (None, opened, tail)));
                }
                if let Some(mut f) = opened {
                    let mut buf = vec![0u8; 256 * 1024];
                    match f.read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            buf.truncate(n);
                            return Some((Ok(bytes::Bytes::from(buf)), (None, Some(f), tail)));
                        }
                        Err(e) => return Some((Err(e), (None, None, None))),
                    }
                }
                tail.map(|t| (Ok(bytes::Bytes::from(t)), (None, None, None)))
            });
        let start = Instant::now();
        let res = self
            .client
            .post(format!("{}{root}", self.base))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(pieces))
            .send()
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(res.status(), 201, "upload: {}", res.text().await.unwrap_or_default());
        (res.json().await.unwrap(), took)
    }

    /// A request and how long its answer took.
    async fn timed(&self, method: reqwest::Method, path: &str) -> (Value, Duration) {
        let start = Instant::now();
        let res = self.client.request(method, format!("{}{path}", self.base)).send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let took = start.elapsed();
        assert!(status.is_success(), "{path}: {status} {body}");
        (body, took)
    }
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_csv(path: &Path, header: &str, rows: usize, row: impl Fn(usize) -> String) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "{header}").unwrap();
    for i in 0..rows {
        writeln!(f, "{}", row(i)).unwrap();
    }
}

/// The engine: a name-only preprocessing job (every step instant), concurrency 8,
/// with status reads every 10 ms and a pause, resume and cancel on the way.
async fn engine(o: &Options, dir: &Path, out: &mut Vec<Figure>) {
    let server = start_server(dir, |_| {}).await;
    let file = dir.join("names.csv");
    write_csv(&file, "company", o.rows, |i| format!("Company {i}"));
    let (job, _) = server.upload("/api/preprocess/jobs", &file, 8).await;
    let id = job["id"].as_i64().unwrap();
    let path = format!("/api/preprocess/jobs/{id}");
    let start = Instant::now();
    let mut reads = Vec::new();
    let mut health = Vec::new();
    let mut rss = 0;
    let mut paused_for = Duration::ZERO;
    let (mut pause_ms, mut resume_ms) = (0.0, 0.0);
    loop {
        let (job, took) = server.timed(reqwest::Method::GET, &path).await;
        reads.push(took);
        // The same server's floor at the same moment: no database, no blocking thread.
        let (_, h) = server.timed(reqwest::Method::GET, "/api/health").await;
        health.push(h);
        rss = rss.max(rss_kib());
        if job["status"] == "completed" {
            break;
        }
        if pause_ms == 0.0 && job["completed"].as_u64().unwrap_or(0) as usize >= o.rows / 3 {
            let (paused, t) = server.timed(reqwest::Method::POST, &format!("{path}/pause")).await;
            assert_eq!(paused["paused"], true);
            pause_ms = ms(t);
            let held = Instant::now();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (_, t) = server.timed(reqwest::Method::POST, &format!("{path}/resume")).await;
            resume_ms = ms(t);
            paused_for = held.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed().saturating_sub(paused_for);
    let rate = o.rows as f64 / elapsed.as_secs_f64();
    reads.sort();
    health.sort();

    // A second job, cancelled a moment after it starts.
    let small = dir.join("cancel.csv");
    write_csv(&small, "company", 100_000.min(o.rows), |i| format!("Company {i}"));
    let (job, _) = server.upload("/api/preprocess/jobs", &small, 8).await;
    let cid = job["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, cancel) = server.timed(reqwest::Method::POST, &format!("/api/preprocess/jobs/{cid}/cancel")).await;

    let bare = bare_loop(dir, 200_000.min(o.rows));
    out.push(
        Figure::new(
            format!("engine: items/s, instant step, {} rows, concurrency 8", o.rows),
            rate,
            "items/s",
            ">= 20,000/s and >= 2x the bare loop",
        )
        .against("bare rusqlite loop, two IMMEDIATE transactions per item", bare),
    );
    for batch in [5, 8] {
        let sql = batched_sql_loop(dir, 200_000.min(o.rows), batch);
        out.push(Figure::new("engine: items/s (as above)", rate, "items/s", "").against(
            format!("the engine's statements alone, {batch} results and {batch} claims per transaction, one thread"),
            sql,
        ));
    }
    if let Some(py) = python_loop(dir, 100_000.min(o.rows)) {
        out.push(
            Figure::new("engine: items/s (as above)", rate, "items/s", "")
                .against("Python sqlite3 loop, two IMMEDIATE transactions per item", py),
        );
    }
    out.push(Figure::new("status read p50 while the engine runs", ms(percentile(&reads, 0.5)), "ms", "keep"));
    out.push(
        Figure::new("status read p99 while the engine runs", ms(percentile(&reads, 0.99)), "ms", "keep (1.5 ms)")
            .against(
                "a request that reads nothing (/api/health), p99, right after each read",
                ms(percentile(&health, 0.99)),
            ),
    );
    out.push(Figure::new("pause answered, mid-run", pause_ms, "ms", "keep"));
    out.push(Figure::new("resume answered", resume_ms, "ms", "keep (4 ms)"));
    out.push(Figure::new("cancel answered, mid-run", ms(cancel), "ms", "keep (1.3 ms)"));
    out.push(Figure::new(
        format!("RSS of the process with {} items", o.rows),
        rss as f64 / 1024.0,
        "MiB",
        "keep (79 MB)",
    ));
}

/// Items a second of a name-only preprocessing job of `rows` rows at concurrency 8.
async fn name_job_rate(server: &Server, file: &Path, rows: usize) -> f64 {
    let (job, _) = server.upload("/api/preprocess/jobs", file, 8).await;
    let path = format!("/api/preprocess/jobs/{}", job["id"].as_i64().unwrap());
    let start = Instant::now();
    loop {
        let (job, _) = server.timed(reqwest::Method::GET, &path).await;
        if job["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

/// The same name-only job, concurrency 8, on PostgreSQL (a fresh schema of the database
/// at `JOBDECK_BENCH_DATABASE_URL`, default the local test database) and on SQLite, one
/// after the other in this run. Left out, with a line saying so, when no server answers.
async fn pg_engine(o: &Options, dir: &Path, out: &mut Vec<Figure>) {
    let url = std::env::var("JOBDECK_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        println!("pg: {url} is not a PostgreSQL URL; left out");
        return;
    };
    let Ok((admin, conn)) = config.connect(tokio_postgres::NoTls).await else {
        println!("pg: no PostgreSQL answers at {url}; left out");
        return;
    };
    tokio::spawn(conn);
    let schema = format!("jobdeck_bench_{}", std::process::id());
    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).await.unwrap();
    let rows = o.rows.min(200_000);
    let file = dir.join("pg-names.csv");
    write_csv(&file, "company", rows, |i| format!("Company {i}"));
    let pg_dir = dir.join("pg");
    std::fs::create_dir_all(&pg_dir).unwrap();
    let pg_server = start_server_on(&pg_dir, Some((&url, &schema)), |_| {}).await;
    let on_pg = name_job_rate(&pg_server, &file, rows).await;
    let lite_dir = dir.join("sqlite");
    std::fs::create_dir_all(&lite_dir).unwrap();
    let on_sqlite = name_job_rate(&start_server(&lite_dir, |_| {}).await, &file, rows).await;
    out.push(
        Figure::new(
            format!("PostgreSQL engine: items/s, instant step, {rows} rows, concurrency 8"),
            on_pg,
            "items/s",
            ">= 20,000/s and >= 0.3x SQLite",
        )
        .against("the same job on SQLite, same run", on_sqlite),
    );

    // An import of `rows` rows and three columns, against psql's `\copy` of the file.
    let import_file = dir.join("pg-import.csv");
    write_csv(&import_file, "company,website,notes", o.rows, |i| format!("Company {i},https://c{i}.example,note {i}"));
    let (_, took) = pg_server.upload("/api/process", &import_file, 8).await;
    admin
        .batch_execute(&format!("CREATE TABLE {schema}.copied (company text, website text, notes text)"))
        .await
        .unwrap();
    let start = Instant::now();
    let copied = Command::new("psql")
        .arg(&url)
        .arg("-qc")
        .arg(format!("\\copy {schema}.copied FROM '{}' CSV HEADER", import_file.display()))
        .status()
        .is_ok_and(|s| s.success());
    let reference = start.elapsed().as_secs_f64();
    let figure = Figure::new(
        format!("PostgreSQL import: REST upload of {} rows (3 columns) to 201", o.rows),
        took.as_secs_f64(),
        "s",
        "<= 1.5x psql \\copy",
    );
    out.push(if copied { figure.against("psql \\copy of the same file", reference) } else { figure });
    // What the database itself takes to load the same rows, as the import stores them,
    // into jobdeck's items table (its key, indexes and the job's foreign key): psql's
    // `\copy` of a file in the table's own columns, for a job made for it. The job is
    // over already, so no worker runs it, and visible, so no worker removes it as an
    // import left unfinished (which made the copy fail now and then).
    let job: i64 = admin
        .query_one(
            &format!(
                "INSERT INTO {schema}.processing_jobs (name, filename, concurrency, columns, status, created_at, updated_at)
                 VALUES ('reference', 'reference.csv', 1, '[]', 'completed', now(), now()) RETURNING id"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let table_file = dir.join("pg-items.csv");
    write_csv(&table_file, "job_id,line,name,website,domain,input", o.rows, |i| {
        let input =
            serde_json::to_string(&[format!("Company {i}"), format!("https://c{i}.example"), format!("note {i}")])
                .unwrap()
                .replace('"', "\"\"");
        format!("{job},{},Company {i},https://c{i}.example,c{i}.example,\"{input}\"", i + 2)
    });
    let start = Instant::now();
    let copied = Command::new("psql")
        .arg(&url)
        .arg("-qc")
        .arg(format!(
            "\\copy {schema}.accounts (job_id, line, name, website, domain, input) FROM '{}' CSV HEADER",
            table_file.display()
        ))
        .status()
        .is_ok_and(|s| s.success());
    if copied {
        out.push(
            Figure::new(
                format!("PostgreSQL: psql \\copy of the same {} rows into jobdeck's items table", o.rows),
                start.elapsed().as_secs_f64(),
                "s",
                "",
            )
            .against("the import above, REST upload to 201", took.as_secs_f64()),
        );
    }
    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}

/// Status reads at the load the issue measured them under: the engine held at 3,200
/// items a second. A preprocessing job checks each row's website, and every website
/// is one local server that answers 3,200 requests a second, like a rate-limited
/// service: each request waits for its turn. Each row has its own loopback address, so
/// no row is a duplicate of another and each check is a fresh connection. Pause,
/// resume and cancel are timed at the same load, four of each.
async fn paced(o: &Options, dir: &Path, out: &mut Vec<Figure>) {
    const RATE: f64 = 3_200.0;
    let next = std::sync::Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let app = axum::Router::new().fallback(move || {
        let (next, counter) = (next.clone(), counter.clone());
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let turn = {
                let mut next = next.lock().unwrap();
                let turn = (*next).max(tokio::time::Instant::now());
                *next = turn + Duration::from_secs_f64(1.0 / RATE);
                turn
            };
            tokio::time::sleep_until(turn).await;
            "ok"
        }
    });
    // Every loopback address reaches a listener on all of them.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let rows = 100_000.min(o.rows);
    let server = start_server(dir, |_| {}).await;
    let file = dir.join("sites.csv");
    write_csv(&file, "Company,Website", rows, |i| {
        let (host, last) = (i / 250, i % 250 + 1);
        format!("Company {i},http://127.{}.{}.{last}:{port}/", 1 + host / 250, host % 250 + 1)
    });
    let (job, _) = server.upload("/api/preprocess/jobs", &file, 8).await;
    let path = format!("/api/preprocess/jobs/{}", job["id"]);
    let start = Instant::now();
    let (mut reads, mut health) = (Vec::new(), Vec::new());
    // A pause, held 300 ms, and a resume at each fifth of the way.
    let (mut pauses, mut resumes, mut paused_for) = (Vec::new(), Vec::new(), Duration::ZERO);
    loop {
        let (job, took) = server.timed(reqwest::Method::GET, &path).await;
        reads.push(took);
        let (_, h) = server.timed(reqwest::Method::GET, "/api/health").await;
        health.push(h);
        if job["status"] == "completed" {
            break;
        }
        let done = job["completed"].as_u64().unwrap_or(0) as usize;
        if pauses.len() < 4 && done >= rows * (pauses.len() + 1) / 5 {
            let (paused, t) = server.timed(reqwest::Method::POST, &format!("{path}/pause")).await;
            assert_eq!(paused["paused"], true);
            pauses.push(t);
            let held = Instant::now();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (_, t) = server.timed(reqwest::Method::POST, &format!("{path}/resume")).await;
            resumes.push(t);
            paused_for += held.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = rows as f64 / start.elapsed().saturating_sub(paused_for).as_secs_f64();
    let served = served.load(std::sync::atomic::Ordering::Relaxed);
    assert!(served >= rows, "the site saw {served} checks for {rows} rows");
    // Cancels, each of a new job of the same sites a moment after it starts.
    let mut cancels = Vec::new();
    for _ in 0..4 {
        let (job, _) = server.upload("/api/preprocess/jobs", &file, 8).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, t) = server.timed(reqwest::Method::POST, &format!("/api/preprocess/jobs/{}/cancel", job["id"])).await;
        cancels.push(t);
    }
    reads.sort();
    health.sort();
    out.push(Figure::new(
        format!("engine held by a site that answers 3,200 a second: items/s, {rows} rows, concurrency 8"),
        rate,
        "items/s",
        "near 3,200/s",
    ));
    out.push(Figure::new("status read p50, engine held near 3,200 items/s", ms(percentile(&reads, 0.5)), "ms", "keep"));
    out.push(
        Figure::new(
            "status read p99, engine held near 3,200 items/s",
            ms(percentile(&reads, 0.99)),
            "ms",
            "keep (1.5 ms)",
        )
        .against(
            "a request that reads nothing (/api/health), p99, right after each read",
            ms(percentile(&health, 0.99)),
        ),
    );
    for (what, mut times, keep) in
        [("pause", pauses, "keep"), ("resume", resumes, "keep (4 ms)"), ("cancel", cancels, "keep (1.3 ms)")]
    {
        times.sort();
        out.push(
            Figure::new(
                format!("{what} answered, engine held near 3,200 items/s, slowest of 4"),
                ms(times[3]),
                "ms",
                keep,
            )
            .against("the median of the 4", ms((times[1] + times[2]) / 2)),
        );
    }
}

/// A database of `path` as the server configures it (WAL, synchronous NORMAL), with
/// one visible name-only preprocessing job of `rows` pending items whose normalised
/// form is `normalized(i)`. Returns the connection, the job's id and its columns.
fn seeded_db(
    path: &Path,
    rows: usize,
    normalized: impl Fn(usize) -> Option<String>,
) -> (rusqlite::Connection, i64, server::store::types::JobColumns) {
    use jobdeck::model::JobKind;
    use jobdeck::server::store::sqlite::{items, jobs};
    use jobdeck::server::store::types::NewItem;
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    server::store::sqlite::db::migrations().to_latest(&mut conn).unwrap();
    let columns = vec!["company".to_string()];
    let tx = conn.transaction().unwrap();
    let id = jobs::insert_job(&tx, JobKind::Preprocess, "seeded", "seeded.csv", 8, &columns).unwrap();
    let items: Vec<NewItem> = (0..rows)
        .map(|i| NewItem {
            line: i as i64 + 2,
            input: format!("[\"Company {i}\"]"),
            normalized: normalized(i),
            ..Default::default()
        })
        .collect();
    items::insert_items(&tx, JobKind::Preprocess, id, &items).unwrap();
    jobs::reveal_job(&tx, JobKind::Preprocess, id, rows as i64).unwrap();
    let columns = jobs::job_columns(&tx, JobKind::Preprocess, id).unwrap();
    tx.commit().unwrap();
    (conn, id, columns)
}

/// The floor of the old per-item design: one claim transaction and one finish
/// transaction per item, through jobdeck's own statements, nothing else.
fn bare_loop(dir: &Path, rows: usize) -> f64 {
    use jobdeck::model::JobKind;
    use jobdeck::server::store::sqlite::items;
    use jobdeck::server::store::types::{Finish, Finished};
    let (mut conn, id, columns) = seeded_db(&dir.join("bare.sqlite3"), rows, |_| None);
    let result = Finish::completed(&json!({"company": "Company", "valid": false}));
    let start = Instant::now();
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        let claimed = items::claim_batch(&tx, JobKind::Preprocess, id, 1).unwrap().pop();
        tx.commit().unwrap();
        let Some(item) = claimed.map(|row| row.into_claimed(&columns)) else { break };
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        let one = Finished { item_id: item.id, lease: 0, attempts: 1, outcome: result.clone() };
        items::finish_batch(&tx, JobKind::Preprocess, id, &[one], 0).unwrap();
        tx.commit().unwrap();
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

/// What the engine's own statements cost with nothing around them: one transaction
/// per turn that writes `batch` results and claims `batch` items, on one thread.
fn batched_sql_loop(dir: &Path, rows: usize, batch: usize) -> f64 {
    use jobdeck::model::JobKind;
    use jobdeck::server::store::sqlite::items;
    use jobdeck::server::store::types::{Claimed, Finish, Finished};
    let (mut conn, id, columns) = seeded_db(&dir.join(format!("batched-{batch}.sqlite3")), rows, |i| {
        Some(format!("{{\"company\":\"Company {i}\",\"valid\":false,\"reasons\":[\"no domain\"]}}"))
    });
    let result =
        json!({"company": "Company", "valid": false, "reasons": ["no domain"], "liveness": {"checked": false}});
    let start = Instant::now();
    let mut inflight: Vec<i64> = Vec::new();
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        let done: Vec<Finished> = inflight
            .drain(..)
            .map(|item_id| Finished { item_id, lease: 0, attempts: 1, outcome: Finish::completed(&result) })
            .collect();
        items::finish_batch(&tx, JobKind::Preprocess, id, &done, 0).unwrap();
        let claimed: Vec<Claimed> = items::claim_batch(&tx, JobKind::Preprocess, id, batch)
            .unwrap()
            .into_iter()
            .map(|row| row.into_claimed(&columns))
            .collect();
        tx.commit().unwrap();
        if claimed.is_empty() {
            break;
        }
        inflight.extend(claimed.iter().map(|c| c.id));
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

/// The issue's plain reference: Python's sqlite3, two IMMEDIATE transactions per item.
fn python_loop(dir: &Path, rows: usize) -> Option<f64> {
    let script = r#"
import sqlite3, sys, time
n = int(sys.argv[2])
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=NORMAL")
c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, job_id INT, status TEXT, result TEXT)")
c.execute("CREATE INDEX items_job_status ON items (job_id, status, id)")
c.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, pending INT, processing INT, completed INT)")
c.execute("INSERT INTO jobs VALUES (1, ?, 0, 0)", (n,))
c.executemany("INSERT INTO items (job_id, status) VALUES (1, 'pending')", [()] * n)
t = time.time()
while True:
    c.execute("BEGIN IMMEDIATE")
    row = c.execute("UPDATE items SET status = 'processing' WHERE id = (SELECT id FROM items WHERE job_id = 1 AND status = 'pending' ORDER BY id LIMIT 1) RETURNING id").fetchone()
    if row is None:
        c.execute("COMMIT"); break
    c.execute("UPDATE jobs SET pending = pending - 1, processing = processing + 1 WHERE id = 1")
    c.execute("COMMIT")
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE items SET status = 'completed', result = '{}' WHERE id = ? AND status = 'processing'", (row[0],))
    c.execute("UPDATE jobs SET processing = processing - 1, completed = completed + 1 WHERE id = 1")
    c.execute("COMMIT")
print(n / (time.time() - t))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("python.sqlite3"))
        .arg(rows.to_string())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Import: a REST upload of a research CSV of `rows` rows (about 65 bytes each) to its
/// 201, against the `sqlite3` shell's `.import` of the same file. Then delete: the
/// answer, and another job's status reads while the items are removed.
async fn import_and_delete(o: &Options, dir: &Path, out: &mut Vec<Figure>, want_delete: bool) {
    // Keep the runner from researching a million made-up websites: one item at a time,
    // and the job is paused as soon as it exists.
    let server = start_server(dir, |c| c.runner.global_concurrency = 1).await;
    let file = dir.join("accounts.csv");
    write_csv(&file, "Company,Website,City,Notes", o.rows, |i| {
        format!("Company {i:07} Ltd,https://www.company-{i:07}.example/,Springfield,customer since 2019")
    });
    let size = std::fs::metadata(&file).unwrap().len();
    // The process's peak memory counts from here (writing 5 resets it).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = rss_kib();
    let (job, took) = server.upload("/api/process", &file, 1).await;
    let peak = status_kib("VmHWM:");
    let id = job["id"].as_i64().unwrap();
    server.timed(reqwest::Method::POST, &format!("/api/process/{id}/pause")).await;
    if reset {
        out.push(
            Figure::new(
                format!("import: peak memory of the process while {} rows are uploaded and imported", o.rows),
                peak as f64 / 1024.0,
                "MiB",
                "< 120 MiB, flat in the file's size",
            )
            .against("its memory before the upload", before as f64 / 1024.0),
        );
    }
    let reference = sqlite_import(dir, &file);
    // Against sqlite3's own `.import` of the same file, when the shell is there.
    let against_import = |what: String, took: Duration| {
        let figure = Figure::new(what, took.as_secs_f64(), "s", "<= 1.5x .import");
        match reference {
            Some(r) => figure.against("sqlite3 shell .import of the same file", r),
            None => figure,
        }
    };
    out.push(against_import(
        format!("import: REST upload of {} rows, {:.0} MB, to 201", o.rows, size as f64 / 1e6),
        took,
    ));
    // The same file as a preprocessing job: each row cleaned and keyed, duplicates linked.
    let (pre, took) = server.upload("/api/preprocess/jobs", &file, 1).await;
    server.timed(reqwest::Method::POST, &format!("/api/preprocess/jobs/{}/pause", pre["id"])).await;
    out.push(against_import("import: REST upload of the same file as preprocessing, to 201".into(), took));
    // What of it is reading and checking the CSV, with no database: the part before
    // the first insert.
    let bytes = bytes::Bytes::from(std::fs::read(&file).unwrap());
    for kind in jobdeck::model::JobKind::ALL {
        let start = Instant::now();
        let feed = server::import::Feed::new(std::iter::once(Ok(bytes.clone())), usize::MAX);
        let mut items = 0usize;
        let limits = server::import::Limits {
            max_bytes: usize::MAX,
            max_rows: usize::MAX,
            default_concurrency: 8,
            names_alone: true,
        };
        server::import::parse(kind, feed, &limits, |parsed| {
            if let server::import::Parsed::Items(chunk) = parsed {
                items += chunk.len();
            }
            true
        })
        .unwrap();
        assert_eq!(items, o.rows);
        out.push(Figure::new(
            format!("import: of that, reading the file as {kind} (no database)"),
            start.elapsed().as_secs_f64(),
            "s",
            "",
        ));
    }
    // The whole job back out as CSV, page by page on the server.
    let start = Instant::now();
    let res = server.client.get(format!("{}/api/process/{id}/export", server.base)).send().await.unwrap();
    assert!(res.status().is_success(), "export: {}", res.status());
    let csv = res.bytes().await.unwrap();
    let took = start.elapsed().as_secs_f64();
    let lines = memchr::memchr_iter(b'\n', &csv).count();
    assert!(lines > o.rows, "the export has {lines} lines for {} rows", o.rows);
    out.push(Figure::new(
        format!("export: the {}-row job as CSV ({:.0} MB)", o.rows, csv.len() as f64 / 1e6),
        took,
        "s",
        "",
    ));
    if !want_delete {
        return;
    }
    // Another job whose status a person keeps reading meanwhile.
    let other = dir.join("other.csv");
    write_csv(&other, "company", 10, |i| format!("Other {i}"));
    let (other, _) = server.upload("/api/preprocess/jobs", &other, 1).await;
    let other_path = format!("/api/preprocess/jobs/{}", other["id"]);
    server.timed(reqwest::Method::POST, &format!("/api/process/{id}/cancel")).await;
    let (_, answer) = server.timed(reqwest::Method::DELETE, &format!("/api/process/{id}/delete")).await;
    let db = dir.join("bench.sqlite3");
    let mut reads = Vec::new();
    let started = Instant::now();
    loop {
        let (_, t) = server.timed(reqwest::Method::GET, &other_path).await;
        reads.push(t);
        let conn = rusqlite::Connection::open(&db).unwrap();
        let left: i64 =
            conn.query_row("SELECT COUNT(*) FROM processing_jobs WHERE id = ?1", [id], |r| r.get(0)).unwrap();
        if left == 0 || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let removal = started.elapsed();
    reads.sort();
    out.push(Figure::new(format!("delete a {}-item job: the answer", o.rows), ms(answer), "ms", "< 1,000 ms"));
    out.push(Figure::new("delete: items removed in the background after the answer", removal.as_secs_f64(), "s", ""));
    out.push(Figure::new(
        "delete: another job's status read, slowest, meanwhile",
        ms(*reads.last().unwrap()),
        "ms",
        "< 50 ms",
    ));
    drop(server.service);
}

fn sqlite_import(dir: &Path, file: &Path) -> Option<f64> {
    let db = dir.join("import-reference.sqlite3");
    let start = Instant::now();
    let status =
        Command::new("sqlite3").arg(&db).arg(format!(".import --csv {} accounts", file.display())).status().ok()?;
    status.success().then(|| start.elapsed().as_secs_f64())
}

/// The wasm and JS files of a built front end: raw, gzip -9 and brotli 11 sizes in
/// bytes, and the size of their `.br` copies when every file has one.
struct Bundle {
    raw: usize,
    gz: usize,
    br: usize,
    served: Option<usize>,
}

fn bundle(dir: &Path) -> Option<Bundle> {
    let mut b = Bundle { raw: 0, gz: 0, br: 0, served: Some(0) };
    let mut any = false;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "wasm" && ext != "js" {
            continue;
        }
        any = true;
        let bytes = std::fs::read(&path).unwrap();
        b.raw += bytes.len();
        // What the server sends a browser that takes brotli: the build's own copies.
        let copy = std::fs::metadata(format!("{}.br", path.display())).map(|m| m.len() as usize).ok();
        b.served = b.served.zip(copy).map(|(a, c)| a + c);
        b.gz += server::assets::gzip_best(&bytes).unwrap().len();
        b.br += server::assets::brotli_best(&bytes).unwrap().len();
    }
    any.then_some(b)
}

fn kib(bytes: usize) -> f64 {
    bytes as f64 / 1024.0
}

/// The front end as shipped (`target/site/pkg`, from `scripts/build.sh`), beside the
/// reference apps of `scripts/floor.sh` built the same way (`target/floor/…`).
fn frontend(out: &mut Vec<Figure>) {
    let Some(app) = bundle(Path::new("target/site/pkg")) else {
        println!("(front end: target/site/pkg not built; run `scripts/build.sh` first)");
        return;
    };
    let floor = |name: &str| bundle(&Path::new("target/floor").join(name)).map(|b| kib(b.gz));
    let (hello, served, islands) = (floor("hello"), floor("served"), floor("islands"));
    if hello.is_none() || served.is_none() || islands.is_none() {
        println!("(front end: the reference apps are not built; run `scripts/floor.sh` for them)");
    }
    out.push(Figure::new("front end: wasm + js, raw", kib(app.raw), "KiB", ""));
    let gz = Figure::new("front end: wasm + js, gzip -9", kib(app.gz), "KiB", "<= 250 KB (244 KiB)");
    out.push(match hello {
        Some(h) => gz.against("Leptos's starter app (router, title, a counter), same build, gzip -9", h),
        None => gz.against("hello-world Leptos 0.8, same build (from the issue)", 117.0),
    });
    if let Some(s) = served {
        out.push(
            Figure::new("front end: wasm + js, gzip -9 (as above)", kib(app.gz), "KiB", "")
                .against("the starter app with a server function and an action, same build, gzip -9", s),
        );
    }
    if let Some(i) = islands {
        out.push(
            Figure::new("front end: wasm + js, gzip -9 (as above)", kib(app.gz), "KiB", "")
                .against("that server-function page as one island of a server-rendered page, same build, gzip -9", i),
        );
    }
    out.push(Figure::new("front end: wasm + js, brotli 11", kib(app.br), "KiB", ""));
    match app.served {
        Some(bytes) => out.push(Figure::new(
            "front end: wasm + js as served to a brotli browser (the build's .br copies)",
            kib(bytes),
            "KiB",
            "",
        )),
        None => println!("(front end: no .br copies; build with `scripts/build.sh`)"),
    }
}

/// The dashboard's server render with `n` jobs in the database.
async fn dashboard(dir: &Path, out: &mut Vec<Figure>) {
    for n in [1_000usize, 10_000] {
        let sub = dir.join(format!("dash-{n}"));
        std::fs::create_dir_all(&sub).unwrap();
        let server = start_server(&sub, |_| {}).await;
        {
            let mut conn = rusqlite::Connection::open(sub.join("bench.sqlite3")).unwrap();
            let tx = conn.transaction().unwrap();
            for i in 0..n {
                let table = if i % 2 == 0 { "processing_jobs" } else { "preprocessing_jobs" };
                tx.execute(
                    &format!(
                        "INSERT INTO {table} (name, filename, status, columns, total, completed_count, created_at, updated_at, completed_at)
                         VALUES (?1, 'f.csv', 'completed', '[]', 100, 100, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')"
                    ),
                    [format!("Job {i}")],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let mut times = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            let res = server.client.get(format!("{}/", server.base)).send().await.unwrap();
            let _ = res.bytes().await.unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        out.push(Figure::new(
            format!("dashboard server render, {n} jobs (median of 7)"),
            ms(times[3]),
            "ms",
            "< 20 ms",
        ));
        let mut times = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            let res = server.client.get(format!("{}/?status=completed&q=job%2099", server.base)).send().await.unwrap();
            let _ = res.bytes().await.unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        out.push(Figure::new(
            format!("dashboard server render, {n} jobs, filtered by status and name (median of 7)"),
            ms(times[3]),
            "ms",
            "< 20 ms",
        ));
        if n == 10_000 {
            // Every job the filter takes, archived in one request, while a person keeps
            // reading one job's status.
            let (answer, slowest) = bulk_with_reads(
                &server,
                json!({"action": "archive", "filter": {"kind": "research"}}),
                "/api/preprocess/jobs/2",
            )
            .await;
            out.push(Figure::new(
                format!("bulk archive by filter of {} jobs: the answer", n / 2),
                ms(answer),
                "ms",
                "",
            ));
            out.push(Figure::new(
                "bulk archive: another job's status read or rename, slowest, meanwhile",
                ms(slowest),
                "ms",
                "< 50 ms",
            ));
        }
    }
}

/// Sends one bulk request and, until it answers, reads `other` over and over and
/// renames it (a write, as a control action is); returns the bulk's answer time and
/// the slowest of those requests.
async fn bulk_with_reads(server: &Server, body: Value, other: &str) -> (Duration, Duration) {
    let url = format!("{}/api/jobs/bulk", server.base);
    let client = server.client.clone();
    let started = Instant::now();
    let bulk = tokio::spawn(async move {
        let res = client.post(url).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let out: Value = res.json().await.unwrap();
        assert!(out["results"].as_array().unwrap().iter().all(|r| r["ok"] == true), "{out}");
        started.elapsed()
    });
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while !bulk.is_finished() {
        let (_, t) = server.timed(reqwest::Method::GET, other).await;
        slowest = slowest.max(t);
        n += 1;
        let start = Instant::now();
        let res = server
            .client
            .patch(format!("{}{other}", server.base))
            .json(&json!({"name": format!("Other {n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        slowest = slowest.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (bulk.await.unwrap(), slowest)
}

/// Bulk actions on big jobs: a retry of a job whose `rows` items all failed (they move
/// back to pending 2,000 to a transaction), then a pause of it, each while another
/// job's status is read and the job renamed.
async fn bulk(o: &Options, dir: &Path, out: &mut Vec<Figure>) {
    let server = start_server(dir, |c| c.runner.global_concurrency = 1).await;
    let file = dir.join("failed.csv");
    write_csv(&file, "company", o.rows, |i| format!("Company {i:07} Ltd"));
    let (job, _) = server.upload("/api/preprocess/jobs", &file, 1).await;
    let id = job["id"].as_i64().unwrap();
    server.timed(reqwest::Method::POST, &format!("/api/preprocess/jobs/{id}/pause")).await;
    let other = dir.join("other.csv");
    write_csv(&other, "company", 10, |i| format!("Other {i}"));
    let (other, _) = server.upload("/api/preprocess/jobs", &other, 1).await;
    let other_path = format!("/api/preprocess/jobs/{}", other["id"]);
    {
        // Every item failed, as after an outage; the job completed.
        let conn = rusqlite::Connection::open(dir.join("bench.sqlite3")).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             UPDATE preprocessing_results SET status = 'failed', error = 'HTTP 503', attempts = 3 WHERE job_id = {id};
             UPDATE preprocessing_jobs SET status = 'completed', paused = 0, pending_count = 0, processing_count = 0,
                 failed_count = total, completed_at = updated_at WHERE id = {id};
             COMMIT;"
        ))
        .unwrap();
        // That write left a WAL of some hundreds of MB, which the server's next commit
        // would copy back into the database file (its automatic checkpoint) while the
        // retry runs. Failures that pile up while a job runs are checkpointed as they
        // come, so the WAL goes back into the file here, before the clock starts.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    }
    let (answer, slowest) =
        bulk_with_reads(&server, json!({"action": "retry", "jobs": [{"kind": "preprocess", "id": id}]}), &other_path)
            .await;
    out.push(Figure::new(
        format!("bulk retry of a job with {} failed items: the answer", o.rows),
        ms(answer),
        "ms",
        "",
    ));
    out.push(Figure::new(
        "bulk retry: another job's status read or rename, slowest, meanwhile",
        ms(slowest),
        "ms",
        "< 50 ms",
    ));
    let (answer, _) =
        bulk_with_reads(&server, json!({"action": "pause", "jobs": [{"kind": "preprocess", "id": id}]}), &other_path)
            .await;
    out.push(Figure::new(format!("bulk pause of that {}-item job: the answer", o.rows), ms(answer), "ms", ""));
    drop(server.service);
}

/// A sliding window against fixed batches, both of 8, over the same 400 websites whose
/// answers take a heavy-tailed time: most 20 ms, one in ten 200 ms, one in fifty 2 s.
async fn window(dir: &Path, out: &mut Vec<Figure>) {
    use axum::extract::Path as UrlPath;
    fn latency(i: u64) -> Duration {
        // A fixed shuffle, so both runs see the same sequence.
        let x = i.wrapping_mul(2654435761) % 100;
        Duration::from_millis(match x {
            0..=1 => 2000,
            2..=11 => 200,
            _ => 20,
        })
    }
    let app = axum::Router::new().route(
        "/t/{i}",
        axum::routing::get(|UrlPath(i): UrlPath<u64>| async move {
            tokio::time::sleep(latency(i)).await;
            axum::response::Html(format!("<html><head><title>Site {i}</title></head><body>hi</body></html>"))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let n = 400u64;

    let server = start_server(dir, |_| {}).await;
    let file = dir.join("window.csv");
    write_csv(&file, "Company,Website", n as usize, |i| format!("Site {i},http://{addr}/t/{i}"));
    let start = Instant::now();
    let (job, _) = server.upload("/api/process", &file, 8).await;
    let path = format!("/api/process/{}", job["id"]);
    loop {
        let (job, _) = server.timed(reqwest::Method::GET, &path).await;
        if job["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sliding = start.elapsed().as_secs_f64();

    let client = reqwest::Client::new();
    let start = Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(8) {
        let requests = batch.iter().map(|i| client.get(format!("http://{addr}/t/{i}")).send());
        for r in futures::future::join_all(requests).await {
            r.unwrap();
        }
    }
    let fixed = start.elapsed().as_secs_f64();
    out.push(
        Figure::new("400 accounts, heavy-tailed sites, sliding window of 8", sliding, "s", "well under fixed batches")
            .against("fixed batches of 8, same sites", fixed),
    );
}

fn print_table(figures: &[Figure]) {
    println!();
    println!("{:<70} {:>12} {:<8} {:>12} {:>7}  target", "figure", "value", "unit", "reference", "ratio");
    for f in figures {
        let reference = f.reference.as_ref().map(|(_, v)| format!("{v:.1}")).unwrap_or_default();
        let ratio = f.ratio().map(|r| format!("{r:.2}")).unwrap_or_default();
        println!("{:<70} {:>12.1} {:<8} {:>12} {:>7}  {}", f.what, f.value, f.unit, reference, ratio, f.target);
        if let Some((what, _)) = &f.reference {
            println!("{:<70}   reference: {what}", "");
        }
    }
}

/// What SPEC section 12's per-host limit adds to each outbound request: taking and
/// giving back a host's slot, over 200,000 hosts (a job of as many sites, idle hosts
/// dropped as it goes), against one loopback HTTP GET in the same run.
async fn host_limit(figures: &mut Vec<Figure>) {
    use jobdeck::server::steps::hosts::Hosts;
    const HOSTS: usize = 200_000;
    let hosts = Hosts::new(2);
    let urls: Vec<reqwest::Url> =
        (0..HOSTS).map(|i| reqwest::Url::parse(&format!("https://h{i}.example/about")).unwrap()).collect();
    let start = Instant::now();
    for url in &urls {
        drop(hosts.visit(url, None).await);
    }
    let per_visit = start.elapsed().as_secs_f64() * 1e6 / HOSTS as f64;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    const GETS: usize = 2_000;
    let start = Instant::now();
    for _ in 0..GETS {
        client.get(format!("http://{addr}/")).send().await.unwrap().bytes().await.unwrap();
    }
    let per_get = start.elapsed().as_secs_f64() * 1e6 / GETS as f64;
    figures.push(
        Figure::new(
            format!("per-host limit: a request's slot taken and given back, {HOSTS} hosts"),
            per_visit,
            "µs",
            "",
        )
        .against("one loopback HTTP GET (kept-alive connection), same run", per_get),
    );
}

#[tokio::main]
async fn main() {
    let o = options();
    let want = |name: &str| o.only.as_ref().is_none_or(|only| only.iter().any(|w| w == name));
    let tmp = tempfile_dir();
    let mut figures = Vec::new();
    if want("engine") {
        println!("engine: {} rows…", o.rows);
        engine(&o, &tmp.join("engine"), &mut figures).await;
    }
    if want("pg") {
        println!("PostgreSQL engine…");
        pg_engine(&o, &tmp.join("engine"), &mut figures).await;
    }
    if want("paced") {
        println!("status reads, engine held near 3,200 items/s…");
        paced(&o, &tmp.join("paced"), &mut figures).await;
    }
    if want("import") || want("delete") {
        println!("import and delete: {} rows…", o.rows);
        import_and_delete(&o, &tmp.join("import"), &mut figures, want("delete")).await;
    }
    if want("frontend") {
        frontend(&mut figures);
    }
    if want("dashboard") {
        println!("dashboard…");
        dashboard(&tmp.join("dashboard"), &mut figures).await;
    }
    if want("bulk") {
        println!("bulk actions: {} rows…", o.rows);
        bulk(&o, &tmp.join("bulk"), &mut figures).await;
    }
    if want("hosts") {
        println!("per-host limit…");
        host_limit(&mut figures).await;
    }
    if want("window") {
        println!("sliding window…");
        window(&tmp.join("window"), &mut figures).await;
    }
    print_table(&figures);
    let machine = json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "os": std::env::consts::OS,
        "rows": o.rows,
    });
    let doc = json!({"machine": machine, "figures": figures.iter().map(Figure::json).collect::<Vec<_>>()});
    std::fs::write(&o.json, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("\nwritten to {}", o.json.display());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A fresh folder under the system's temporary directory, with one sub-folder per part.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobdeck-bench-{}", std::process::id()));
    for part in ["engine", "paced", "import", "dashboard", "bulk", "window"] {
        std::fs::create_dir_all(dir.join(part)).unwrap();
    }
    dir
}
