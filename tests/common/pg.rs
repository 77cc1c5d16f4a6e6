//! A schema of one test's own on a real PostgreSQL server (SPEC section 10).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jobdeck::server::store::postgres::sql;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("JOBDECK_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A schema of one test's own on the test server, dropped when the test ends (also
/// when it fails).
pub struct Schema {
    pub name: String,
    pub pool: deadpool_postgres::Pool,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A PostgreSQL test that finds no server: with `JOBDECK_REQUIRE_PG=1` (CI) that fails
/// it; otherwise it says so, records its name in `$JOBDECK_PG_SKIP_LOG` (which
/// `scripts/test.sh` counts at the end of the run) and is left out.
fn left_out<T>(url: &str, why: &str) -> Option<T> {
    if std::env::var("JOBDECK_REQUIRE_PG").is_ok_and(|v| v.trim() == "1") {
        panic!("JOBDECK_REQUIRE_PG=1, but no PostgreSQL answered at {url} ({why}): this PostgreSQL test cannot run");
    }
    let test = std::thread::current().name().unwrap_or("a PostgreSQL test").to_string();
    eprintln!("skipped: no PostgreSQL at {url} ({why}); set JOBDECK_TEST_DATABASE_URL to run {test}");
    if let Ok(path) = std::env::var("JOBDECK_PG_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
            // The test binary's name without cargo's hash: `conformance`, `postgres`, ….
            let binary = std::env::args().next().unwrap_or_default();
            let binary = binary.rsplit('/').next().unwrap_or("");
            let binary = binary.rsplit_once('-').map_or(binary, |(stem, _)| stem);
            let _ = writeln!(file, "tests/{binary}.rs: {test}");
        }
    }
    None
}

impl Schema {
    /// `None` (after saying so) when no server answers.
    pub async fn new(migrated: bool) -> Option<Self> {
        let url = url();
        let config = sql::config(&url, None).expect("the test database URL reads");
        let connected = tokio::time::timeout(Duration::from_secs(5), config.connect(tokio_postgres::NoTls)).await;
        let (client, conn) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return left_out(&url, &e.to_string()),
            Err(_) => return left_out(&url, "no answer within 5 s"),
        };
        tokio::spawn(conn);
        let name = format!(
            "jobdeck_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let pool = sql::pool(sql::config(&url, Some(&name)).unwrap(), 16).unwrap();
        let schema = Self { name, pool };
        if migrated {
            let mut client = schema.connect().await;
            sql::migrate(&mut client).await.unwrap();
        }
        Some(schema)
    }

    /// A connection of its own (not pooled), in this schema.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) =
            sql::config(&url(), Some(&self.name)).unwrap().connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = sql::config(&url(), None).unwrap().connect(tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            })
        })
        .join();
    }
}
