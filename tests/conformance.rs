//! One suite of control semantics (SPEC section 2), counters and recovery, run against
//! both stores: each test once on a real SQLite file and once on a real PostgreSQL
//! server (in a schema of its own; skipped with a line when no server answers).
#![cfg(feature = "ssr")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::pg::{url, Schema};
use common::*;
use jobdeck::model::{Archived, EventAction, Job, JobAction, JobFilter, JobKind, JobRef, JobStatus, Phase, Source};
use jobdeck::server::backend::Backend;
use jobdeck::server::config::Config;
use jobdeck::server::error::AppError;
use jobdeck::server::pg::backend::PgBackend;
use jobdeck::server::service::{BulkTarget, Service};

const R: JobKind = JobKind::Research;
const P: JobKind = JobKind::Preprocess;
const LONG: Duration = Duration::from_secs(30);

/// The store one run of a test is on, and what it needs to read items directly.
enum Store {
    Sqlite(tempfile::TempDir),
    Postgres(Schema),
}

impl Store {
    async fn sqlite() -> Option<Self> {
        Some(Self::Sqlite(tempfile::tempdir().unwrap()))
    }

    async fn postgres() -> Option<Self> {
        Schema::new(false).await.map(Self::Postgres)
    }

    fn config(&self) -> Config {
        let dir = match self {
            Self::Sqlite(dir) => dir.path().to_path_buf(),
            Self::Postgres(_) => std::env::temp_dir(),
        };
        let mut config = test_config(&dir);
        config.runner.worker_timeout_ms = 600;
        config
    }

    /// A started service (a process: UI, API and runner) on this store.
    async fn service(&self, config: Config) -> Service {
        let options = leptos::config::LeptosOptions::builder().output_name("jobdeck").build();
        let state = match self {
            Self::Sqlite(_) => jobdeck::server::build_state(config, options).expect("state builds"),
            Self::Postgres(schema) => {
                let pg = PgBackend::open(&url(), Some(&schema.name), 16).await.expect("PostgreSQL opens");
                jobdeck::server::build_state_with(Backend::Postgres(std::sync::Arc::new(pg)), config, options)
                    .expect("state builds")
            }
        };
        state.service.runner().start().await.expect("runner starts");
        state.service
    }

    /// Per-status item counts read straight from the items, to check the counters.
    async fn count_items(&self, kind: JobKind, id: i64) -> HashMap<String, i64> {
        let table = match kind {
            JobKind::Research => "accounts",
            JobKind::Preprocess => "preprocessing_results",
        };
        match self {
            Self::Sqlite(dir) => count_items(&dir.path().join("jobdeck.sqlite3"), kind, id),
            Self::Postgres(schema) => {
                let c = schema.pool.get().await.unwrap();
                let sql = format!("SELECT status, count(*) FROM {table} WHERE job_id = $1 GROUP BY status");
                c.query(&sql, &[&id])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                    .collect()
            }
        }
    }

    /// Runs `sql` as a person's own connection would (a `sqlite3` shell, `psql`), with
    /// `?` for each of `args`.
    async fn by_hand(&self, sql: &str, args: &[&str]) {
        match self {
            Self::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("jobdeck.sqlite3")).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                conn.execute(sql, rusqlite::params_from_iter(args)).unwrap();
            }
            Self::Postgres(schema) => {
                let mut n = 0;
                let sql: String = sql
                    .chars()
                    .map(|c| match c {
                        '?' => {
                            n += 1;
                            format!("${n}::text")
                        }
                        c => c.to_string(),
                    })
                    .collect();
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                schema.pool.get().await.unwrap().execute(&sql, &params).await.unwrap();
            }
        }
    }

    /// Points the accounts of a job at another site (the port is all that differs).
    async fn move_site(&self, from: &str, to: &str) {
        self.by_hand("UPDATE accounts SET website = replace(website, ?, ?)", &[from, to]).await;
    }

    /// A service on this store after another one died: on SQLite once the dead one's
    /// hold on the file is gone, on PostgreSQL beside it (its leader rescues the dead
    /// worker's items once it has been silent for the worker timeout).
    async fn service_after_crash(&self, config: Config) -> Service {
        match self {
            Self::Sqlite(_) => service_after_crash(config).await,
            Self::Postgres(_) => self.service(config).await,
        }
    }

    async fn assert_counters_match(&self, job: &Job) {
        assert_counts_match(job, &self.count_items(job.kind, job.id).await);
    }
}

/// A process dies (its runtime is dropped: no shutdown path runs) with three items in
/// flight; the next one (SQLite: a restart; PostgreSQL: another worker) completes the
/// job with nothing lost, and only those three run again.
fn a_process_that_dies_mid_job_loses_nothing(store: Store, rt: tokio::runtime::Runtime) {
    let config = store.config();
    let (site, job_id, done_before) = rt.block_on(async {
        let site = Site::start().await;
        let service = store.service(config.clone()).await;
        let mut paths: Vec<String> = (0..5).map(|i| format!("/f/{i}")).collect();
        paths.extend((0..10).map(|i| format!("/g/{i}")));
        let job = service.create_job(R, upload(research_csv(&site, &paths), 3)).await.unwrap();
        let job = wait_job(&service, R, job.id, LONG, |j| j.completed == 5 && j.processing == 3).await;
        (site, job.id, job.completed)
    });
    let hits_before = site.hits_by_path();
    rt.shutdown_background(); // the crash: no shutdown path runs, the site dies too

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(store.count_items(R, job_id).await.get("processing"), Some(&3), "the crash left items in flight");
        let site2 = Site::start().await;
        site2.open_gate();
        store.move_site(&site.addr.to_string(), &site2.addr.to_string()).await;
        let service = store.service_after_crash(config).await;
        let job = wait_job(&service, R, job_id, LONG, |j| j.status == JobStatus::Completed).await;
        assert_eq!((job.completed, job.failed, job.total), (15, 0, 15));
        store.assert_counters_match(&job).await;
        let again = site2.hits_by_path();
        for (path, n) in &hits_before {
            if path.starts_with("/f/") {
                assert_eq!(*n, 1);
                assert!(!again.contains_key(path), "{path} was completed before the crash and ran again");
            }
        }
        assert_eq!(done_before, 5);
        assert_eq!(again.len(), 10, "the ten unfinished accounts ran after the crash, the three in flight again");
    });
    drop(store);
}

mod a_process_that_dies_mid_job_loses_nothing {
    #[test]
    fn sqlite() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(super::Store::sqlite()).unwrap();
        super::a_process_that_dies_mid_job_loses_nothing(store, rt);
    }
    #[test]
    fn postgres() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let Some(store) = rt.block_on(super::Store::postgres()) else { return };
        super::a_process_that_dies_mid_job_loses_nothing(store, rt);
    }
}

/// Each test, once per store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let store = super::Store::sqlite().await.unwrap();
                super::$name(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(store) = super::Store::postgres().await else { return };
                super::$name(store).await;
            }
        }
    )*};
}

on_both_stores!(
    pause_stops_new_starts_and_in_flight_items_finish,
    resume_continues_and_every_item_runs_once,
    cancel_discards_late_results_and_is_final,
    delete_waits_for_a_terminal_job_then_removes_it,
    a_preprocessing_job_completes_with_exact_counters,
    an_llm_rate_limit_pauses_the_job_and_it_resumes_by_itself,
    a_pause_flag_set_by_hand_is_honoured_within_the_poll,
);

/// SPEC section 2: `paused` is an INTEGER flag, and one set by hand in the database is
/// honoured within the poll.
async fn a_pause_flag_set_by_hand_is_honoured_within_the_poll(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let paths: Vec<String> = (0..200).map(|i| format!("/d/40/{i}")).collect();
    let job = service.create_job(R, upload(research_csv(&site, &paths), 2)).await.unwrap();
    wait_for(LONG, "some progress", || async { site.hit_count() >= 4 }).await;
    let id = job.id.to_string();

    store.by_hand("UPDATE processing_jobs SET paused = 1 WHERE id = CAST(? AS INTEGER)", &[&id]).await;
    // The runner notices at its next poll; then the two in-flight items finish and the
    // window stays empty.
    let flagged = std::time::Instant::now();
    wait_job(&service, R, job.id, LONG, |j| j.processing == 0).await;
    assert!(flagged.elapsed() < Duration::from_secs(3), "noticed within a few polls, not by chance");
    let seen = site.hit_count();
    several_polls().await;
    assert_eq!(site.hit_count(), seen, "no start after the flag was seen");
    let job_now = service.get(R, job.id).await.unwrap();
    assert!(job_now.paused && job_now.pending > 0);

    store.by_hand("UPDATE processing_jobs SET paused = 0 WHERE id = CAST(? AS INTEGER)", &[&id]).await;
    wait_for(LONG, "work to restart after the flag is cleared", || async { site.hit_count() > seen }).await;
    service.cancel(R, job.id).await.unwrap();
}

async fn pause_stops_new_starts_and_in_flight_items_finish(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 20)), 3)).await.unwrap();
    wait_for(LONG, "three requests in flight", || async { site.hit_count() == 3 }).await;
    let paused = service.pause(R, job.id).await.unwrap();
    assert!(paused.paused);
    assert_eq!(paused.status, JobStatus::Processing);
    site.open_gate();
    let job = wait_job(&service, R, job.id, LONG, |j| j.processing == 0).await;
    assert_eq!(job.completed, 3, "the three in-flight items finished and were saved");
    several_polls().await;
    assert_eq!(site.hit_count(), 3, "no new item started while paused");
    let job = service.get(R, job.id).await.unwrap();
    assert_eq!((job.status, job.paused, job.pending, job.completed), (JobStatus::Processing, true, 17, 3));
    store.assert_counters_match(&job).await;
}

async fn resume_continues_and_every_item_runs_once(store: Store) {
    let site = Site::start().await;
    // A poll far slower than the wait below: the restart must come from the resume.
    let mut config = store.config();
    config.runner.pause_poll_ms = 10_000;
    let service = store.service(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 12)), 2)).await.unwrap();
    wait_for(LONG, "two requests in flight", || async { site.hit_count() == 2 }).await;
    service.pause(R, job.id).await.unwrap();
    site.open_gate();
    wait_job(&service, R, job.id, LONG, |j| j.processing == 0).await;
    assert!(!service.resume(R, job.id).await.unwrap().paused);
    wait_for(Duration::from_secs(3), "a new start right after resume", || async { site.hit_count() > 2 }).await;
    let job = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((job.completed, job.failed, job.pending, job.processing), (12, 0, 0, 0));
    assert!(job.completed_at.is_some());
    let by_path = site.hits_by_path();
    assert_eq!(by_path.len(), 12);
    assert!(by_path.values().all(|&n| n == 1), "every account ran exactly once: {by_path:?}");
    store.assert_counters_match(&job).await;
}

async fn cancel_discards_late_results_and_is_final(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 10)), 3)).await.unwrap();
    wait_for(LONG, "three requests in flight", || async { site.hit_count() == 3 }).await;
    let cancelled = service.cancel(R, job.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Failed);
    assert!(cancelled.cancelled && cancelled.cancelled_at.is_some());
    assert_eq!((cancelled.processing, cancelled.pending, cancelled.completed), (0, 10, 0));
    site.open_gate();
    several_polls().await;
    let job = service.get(R, job.id).await.unwrap();
    assert_eq!((job.processing, job.pending, job.completed, job.failed), (0, 10, 0, 0));
    assert_eq!(site.hit_count(), 3, "no request started after the cancel");
    store.assert_counters_match(&job).await;
    assert!(!store.count_items(R, job.id).await.contains_key("processing"));
    assert!(matches!(service.resume(R, job.id).await, Err(AppError::AlreadyTerminal("cancelled"))));
    assert!(matches!(service.pause(R, job.id).await, Err(AppError::AlreadyTerminal(_))));
    assert!(matches!(service.cancel(R, job.id).await, Err(AppError::AlreadyTerminal(_))));
    assert_eq!(service.resume(R, job.id).await.unwrap_err().status_code(), 409);
}

async fn delete_waits_for_a_terminal_job_then_removes_it(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 4)), 1)).await.unwrap();
    assert!(matches!(service.delete(R, job.id).await, Err(AppError::StillProcessing)));
    wait_for(LONG, "a request in flight", || async { site.hit_count() == 1 }).await;
    assert!(matches!(service.delete(R, job.id).await, Err(AppError::StillProcessing)));
    service.pause(R, job.id).await.unwrap();
    let err = service.delete(R, job.id).await.unwrap_err();
    assert_eq!(err.status_code(), 409);
    assert!(err.to_string().contains("pause or cancel first"));
    service.resume(R, job.id).await.unwrap();
    site.open_gate();
    wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    service.delete(R, job.id).await.unwrap();
    assert!(matches!(service.get(R, job.id).await, Err(AppError::NotFound { .. })));
    let page = service.page_all(0, 50).await.unwrap();
    assert!(page.jobs.iter().all(|j| j.id != job.id || j.kind != R), "gone from the dashboard at once");
    // The job vanishes at once; its items go in batches behind it (SPEC section 2).
    wait_for(LONG, "the items to go with the job", || async { store.count_items(R, job.id).await.is_empty() }).await;
    assert!(matches!(service.delete(R, job.id).await, Err(AppError::NotFound { .. })));
}

async fn a_preprocessing_job_completes_with_exact_counters(store: Store) {
    let service = store.service(store.config()).await;
    let mut csv = String::from("Company\n");
    for i in 0..300 {
        // Every tenth name repeats an earlier one: a duplicate.
        csv.push_str(&format!("Company {}\n", if i % 10 == 9 { i - 1 } else { i }));
    }
    let job = service.create_job(P, upload(csv.into_bytes(), 8)).await.unwrap();
    assert_eq!(job.total, 300);
    let job = wait_job(&service, P, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((job.completed + job.failed, job.pending, job.processing), (300, 0, 0));
    store.assert_counters_match(&job).await;
    let items = service.items(P, job.id, None, 0, 300).await.unwrap();
    let duplicates = items.items.iter().filter(|i| i.duplicate_of.is_some()).count();
    assert_eq!(duplicates, 30, "each repeated name points at its first row");
}

async fn an_llm_rate_limit_pauses_the_job_and_it_resumes_by_itself(store: Store) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let llm = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                // The first call is refused with a one-second Retry-After.
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut h = HeaderMap::new();
                    h.insert("retry-after", "1".parse().unwrap());
                    return (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response();
                }
                let content = r#"{"summary":"Makes things","industry":"Manufacturing","sizeRange":"11-50","country":"US","fitNotes":"good"}"#;
                axum::Json(serde_json::json!({"choices":[{"message":{"role":"assistant","content":content}}]})).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let llm_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, llm).await.unwrap() });

    let site = Site::start().await;
    let mut config = store.config();
    config.llm.base_url = format!("http://{llm_addr}/v1");
    config.llm.model = "test-model".into();
    let service = store.service(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/f/", 3)), 1)).await.unwrap();

    let paused = wait_job(&service, R, job.id, LONG, |j| j.paused).await;
    let reason = paused.paused_reason.clone().unwrap();
    assert!(reason.contains("429"), "{reason}");
    let resume_at = paused.resume_at.expect("a resume time from Retry-After");
    let wait = resume_at - paused.updated_at;
    assert!(wait >= chrono::Duration::milliseconds(900) && wait <= chrono::Duration::milliseconds(1500), "{wait:?}");
    assert_eq!(paused.pending, 3, "the rate-limited account went back to pending");

    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(done.completed, 3);
    assert!(!done.paused && done.paused_reason.is_none() && done.resume_at.is_none());
    let resumed_after = done.completed_at.unwrap() - resume_at;
    assert!(resumed_after >= chrono::Duration::zero(), "it did not resume before the time it was given");
    let items = service.items(R, job.id, None, 0, 10).await.unwrap().items;
    assert!(items.iter().all(|i| i.result.as_ref().unwrap()["profile"]["industry"] == "Manufacturing"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// PostgreSQL: a worker whose LISTEN connection dies reconnects and hears the next
/// change at once: a resume made by another process starts items long before the poll
/// (a minute here) would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hears_control_changes_again_after_its_listener_reconnects() {
    let Some(store) = Store::postgres().await else { return };
    let Store::Postgres(schema) = &store else { unreachable!() };
    let site = Site::start().await;
    let mut config = store.config();
    config.runner.pause_poll_ms = 60_000;
    let worker = store.service(config.clone()).await;
    // Another process that serves the API and runs nothing.
    let options = leptos::config::LeptosOptions::builder().output_name("jobdeck").build();
    let pg = PgBackend::open(&url(), Some(&schema.name), 4).await.unwrap();
    let api =
        jobdeck::server::build_state_with(Backend::Postgres(std::sync::Arc::new(pg)), config, options).unwrap().service;
    api.runner().start_without_jobs();

    let job = api.create_job(R, upload(research_csv(&site, &paths("/g/", 10)), 2)).await.unwrap();
    wait_for(LONG, "two requests in flight", || async { site.hit_count() == 2 }).await;
    api.pause(R, job.id).await.unwrap();
    site.open_gate();
    wait_job(&api, R, job.id, LONG, |j| j.processing == 0).await;

    // This test's processes, by the name their connections give (the schema's).
    let app = format!("jobdeck {}", schema.name);
    let listeners = |c: deadpool_postgres::Object| {
        let app = app.clone();
        async move {
            c.query(
                "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN jobdeck_control' AND application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
        }
    };
    let before = listeners(schema.pool.get().await.unwrap()).await;
    assert_eq!(before.len(), 1, "the worker listens on a connection of its own");
    schema.pool.get().await.unwrap().execute("SELECT pg_terminate_backend($1)", &[&before[0]]).await.unwrap();
    wait_for(LONG, "the listener to reconnect", || async {
        let now = listeners(schema.pool.get().await.unwrap()).await;
        now.len() == 1 && now[0] != before[0]
    })
    .await;

    api.resume(R, job.id).await.unwrap();
    wait_for(Duration::from_secs(5), "a start right after the resume", || async { site.hit_count() > 2 }).await;
    let done = wait_job(&worker, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(done.completed, 10);
}

// ---- SPEC section 8: the operator's controls, on both stores ----

on_both_stores!(
    retry_runs_only_the_failed_items_again,
    concurrency_changes_apply_to_the_next_claims,
    archive_hides_a_finished_job_until_restored,
    bulk_acts_on_each_job_alone,
    the_activity_log_names_every_action_and_its_source,
);

fn status_of(e: &AppError) -> u16 {
    e.status_code().as_u16()
}

/// Retry: 409 while the job runs, on a cancelled job and with nothing failed; on a
/// completed job only the failed items run again, completed ones are not redone.
async fn retry_runs_only_the_failed_items_again(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let mut items = paths("/f/", 6);
    items.extend(paths("/e/", 3));
    let job = service.create_job(R, upload(research_csv(&site, &items), 3)).await.unwrap();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((done.completed, done.failed), (6, 3));
    let ok_hits = |site: &Site| site.hits().iter().filter(|h| h.starts_with("/f/")).count();
    let failed_hits = |site: &Site| site.hits().iter().filter(|h| h.starts_with("/e/")).count();
    let (ok_before, failed_before) = (ok_hits(&site), failed_hits(&site));
    assert_eq!(ok_before, 6);

    let retried = service.retry(R, job.id).await.unwrap();
    assert_eq!(
        (retried.status, retried.pending + retried.processing + retried.failed, retried.completed),
        (JobStatus::Processing, 3, 6)
    );
    assert!(retried.completed_at.is_none());
    // While it runs again, a second retry is refused.
    if let Err(e) = service.retry(R, job.id).await {
        assert_eq!(status_of(&e), 409);
    }
    let again = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((again.completed, again.failed, again.total), (6, 3, 9));
    assert_eq!(ok_hits(&site), ok_before, "completed items were not redone");
    assert!(failed_hits(&site) > failed_before, "the failed items ran again");
    store.assert_counters_match(&again).await;
    let events = service.events(R, job.id, None, 50).await.unwrap();
    let retried = events.iter().find(|e| e.action == EventAction::Retried).expect("a retried event");
    assert_eq!(retried.detail.as_deref(), Some("3 failed items back to pending"));

    // Nothing failed: 409. A live job: 409. A cancelled job: 409.
    let clean = service.create_job(R, upload(research_csv(&site, &paths("/f/", 2)), 2)).await.unwrap();
    wait_job(&service, R, clean.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(status_of(&service.retry(R, clean.id).await.unwrap_err()), 409);
    let running = service.create_job(R, upload(research_csv(&site, &paths("/g/", 4)), 2)).await.unwrap();
    assert_eq!(status_of(&service.retry(R, running.id).await.unwrap_err()), 409);
    service.cancel(R, running.id).await.unwrap();
    assert_eq!(status_of(&service.retry(R, running.id).await.unwrap_err()), 409);
    assert_eq!(status_of(&service.retry(R, 987_654).await.unwrap_err()), 404);
}

/// PATCH: a new concurrency takes effect at the next claim, also while paused; out of
/// range is 400; a job that is over takes a new name but not a concurrency (409).
async fn concurrency_changes_apply_to_the_next_claims(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 30)), 2)).await.unwrap();
    wait_for(LONG, "two requests in flight", || async { site.hit_count() == 2 }).await;
    let wider = service.edit(R, job.id, None, Some(5)).await.unwrap();
    assert_eq!(wider.concurrency, 5);
    wait_for(LONG, "the window to widen to five", || async { site.hit_count() == 5 }).await;
    several_polls().await;
    assert_eq!(site.hit_count(), 5, "never more than the new concurrency");

    for bad in [0, 65, -1] {
        assert_eq!(status_of(&service.edit(R, job.id, None, Some(bad)).await.unwrap_err()), 400, "concurrency {bad}");
    }
    assert_eq!(status_of(&service.edit(R, job.id, None, None).await.unwrap_err()), 400);
    assert_eq!(status_of(&service.edit(R, job.id, Some("   ".into()), None).await.unwrap_err()), 400);
    assert_eq!(status_of(&service.edit(R, job.id, Some("x".repeat(201)), None).await.unwrap_err()), 400);

    service.pause(R, job.id).await.unwrap();
    let paused = service.edit(R, job.id, None, Some(1)).await.unwrap();
    assert!(paused.paused && paused.concurrency == 1, "a paused job takes a new concurrency and stays paused");
    site.open_gate();
    wait_job(&service, R, job.id, LONG, |j| j.processing == 0).await;
    service.resume(R, job.id).await.unwrap();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(done.completed, 30);

    assert_eq!(status_of(&service.edit(R, job.id, None, Some(3)).await.unwrap_err()), 409);
    let renamed = service.edit(R, job.id, Some("  Renamed list ".into()), None).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.concurrency), ("Renamed list", 1));
    let events = service.events(R, job.id, None, 50).await.unwrap();
    let details: Vec<_> =
        events.iter().filter(|e| e.action == EventAction::Changed).filter_map(|e| e.detail.clone()).collect();
    assert!(details.contains(&"concurrency 2 → 5".to_string()), "{details:?}");
    assert!(details.iter().any(|d| d.contains("→ “Renamed list”")), "{details:?}");
    store.assert_counters_match(&done).await;
}

/// Archive and restore: terminal jobs only; an archived job leaves the lists unless
/// they ask for archived jobs, and keeps all its data.
async fn archive_hides_a_finished_job_until_restored(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let running = service.create_job(R, upload(research_csv(&site, &paths("/g/", 3)), 1)).await.unwrap();
    assert_eq!(status_of(&service.archive(R, running.id).await.unwrap_err()), 409);
    assert_eq!(status_of(&service.unarchive(R, running.id).await.unwrap_err()), 409);
    let job = service.create_job(R, upload(research_csv(&site, &paths("/f/", 4)), 2)).await.unwrap();
    wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;

    let archived = service.archive(R, job.id).await.unwrap();
    assert!(archived.archived_at.is_some());
    let again = service.archive(R, job.id).await.unwrap();
    assert_eq!(again.archived_at, archived.archived_at, "archiving twice changes nothing");
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(service.list(R).await.unwrap()), vec![running.id]);
    assert_eq!(ids(service.list_archived(R, Archived::Only).await.unwrap()), vec![job.id]);
    assert_eq!(ids(service.list_archived(R, Archived::All).await.unwrap()), vec![job.id, running.id]);
    let page = service.page_all(0, 50).await.unwrap();
    assert_eq!((page.total, ids(page.jobs)), (1, vec![running.id]));
    let filter = JobFilter { archived: Archived::Only, ..JobFilter::default() };
    assert_eq!(ids(service.page(filter, 0, 50).await.unwrap().jobs), vec![job.id]);
    // Its data stays readable.
    assert_eq!(service.get(R, job.id).await.unwrap().completed, 4);
    assert_eq!(service.items(R, job.id, None, 0, 10).await.unwrap().total, 4);

    let restored = service.unarchive(R, job.id).await.unwrap();
    assert!(restored.archived_at.is_none());
    assert_eq!(service.list(R).await.unwrap().len(), 2);
    service.cancel(R, running.id).await.unwrap();
    assert!(service.archive(R, running.id).await.unwrap().archived_at.is_some(), "a cancelled job can be archived");
}

/// Bulk: each job on its own — a refusal or a missing job stops no other — by a list
/// of jobs or by a filter taken at the moment of the call.
async fn bulk_acts_on_each_job_alone(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(service.create_job(R, upload(research_csv(&site, &paths("/g/", 5)), 1)).await.unwrap());
    }
    let over = service.create_job(P, upload(b"Company,Website\nAcme,\n".to_vec(), 1)).await.unwrap();
    wait_job(&service, P, over.id, LONG, |j| j.status == JobStatus::Completed).await;
    wait_for(LONG, "each live job to start an item", || async { site.hit_count() == 3 }).await;

    let mut named: Vec<JobRef> = live.iter().map(|j| JobRef { kind: R, id: j.id }).collect();
    named.push(JobRef { kind: P, id: over.id });
    named.push(JobRef { kind: R, id: 987_654 });
    let out = service.bulk(JobAction::Pause, BulkTarget::Jobs(named.clone())).await.unwrap();
    let answers: Vec<(i64, bool, Option<u16>)> = out.results.iter().map(|r| (r.id, r.ok, r.status)).collect();
    let mut want: Vec<(i64, bool, Option<u16>)> = live.iter().map(|j| (j.id, true, None)).collect();
    want.push((over.id, false, Some(409)));
    want.push((987_654, false, Some(404)));
    assert_eq!(answers, want);
    for j in &live {
        assert!(service.get(R, j.id).await.unwrap().paused);
    }

    // By filter: every paused research job resumes; the completed one is not taken.
    let filter = JobFilter { kind: Some(R), status: Some(Phase::Paused), ..JobFilter::default() };
    let out = service.bulk(JobAction::Resume, BulkTarget::Filter(filter)).await.unwrap();
    assert_eq!(out.results.len(), 3);
    assert!(out.results.iter().all(|r| r.ok && r.kind == R));
    for j in &live {
        assert!(!service.get(R, j.id).await.unwrap().paused);
    }

    // Delete refuses the live jobs (409 each) and deletes the one that is over.
    let out = service.bulk(JobAction::Delete, BulkTarget::Jobs(named[..4].to_vec())).await.unwrap();
    assert_eq!(out.results.iter().filter(|r| r.ok).count(), 1);
    assert!(out.results.iter().filter(|r| !r.ok).all(|r| r.status == Some(409)));
    assert_eq!(status_of(&service.get(P, over.id).await.unwrap_err()), 404);

    let out = service.bulk(JobAction::Cancel, BulkTarget::Filter(JobFilter::default())).await.unwrap();
    assert_eq!(out.results.len(), 3);
    for j in &live {
        let job = service.get(R, j.id).await.unwrap();
        assert!(job.cancelled);
        store.assert_counters_match(&job).await;
    }
}

/// Every control action is logged with who did it, newest first, and the log pages.
async fn the_activity_log_names_every_action_and_its_source(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let ui = service.by(Source::Ui);
    let job = ui.create_job(R, upload(research_csv(&site, &paths("/g/", 4)), 1)).await.unwrap();
    ui.pause(R, job.id).await.unwrap();
    ui.pause(R, job.id).await.unwrap(); // already paused: nothing happens, nothing logged
    service.resume(R, job.id).await.unwrap();
    service.cancel(R, job.id).await.unwrap();
    service.archive(R, job.id).await.unwrap();

    let events = service.events(R, job.id, None, 50).await.unwrap();
    let seen: Vec<(EventAction, Source)> = events.iter().map(|e| (e.action, e.source)).collect();
    assert_eq!(
        seen,
        vec![
            (EventAction::Archived, Source::Api),
            (EventAction::Cancelled, Source::Api),
            (EventAction::Resumed, Source::Api),
            (EventAction::Paused, Source::Ui),
            (EventAction::Created, Source::Ui),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at), "newest first");
    let first_two = service.events(R, job.id, None, 2).await.unwrap();
    let rest = service.events(R, job.id, Some(first_two[1].id), 50).await.unwrap();
    assert_eq!(first_two.len() + rest.len(), events.len());
    assert_eq!(rest[0].id, events[2].id);
    assert_eq!(status_of(&service.events(R, 987_654, None, 10).await.unwrap_err()), 404);

    // The log goes with the job.
    service.delete(R, job.id).await.unwrap();
    assert_eq!(status_of(&service.events(R, job.id, None, 10).await.unwrap_err()), 404);
}
