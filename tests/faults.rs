//! The engine under faults: hostile pages, rate limits racing a person's pause, a
//! database lock held past its timeout, tasks that cannot start, big deletes and
//! imports cut short by a crash. Each test is a behaviour a user relies on, against
//! the real runner, a real SQLite file and real HTTP servers on 127.0.0.1.
#![cfg(feature = "ssr")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jobdeck::model::{JobKind, JobStatus};
use jobdeck::server::error::AppError;
use rusqlite::Connection;

const R: JobKind = JobKind::Research;
const P: JobKind = JobKind::Preprocess;
const LONG: Duration = Duration::from_secs(60);

/// A connection of our own to the database file, as a person's `sqlite3` shell.
fn by_hand(db: &std::path::Path) -> Connection {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    by_hand(db).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The research step runs on a single-threaded runtime here, so work done on the
/// async thread itself would stop everything else until it is over.
#[tokio::test]
async fn a_hostile_page_of_links_is_bounded_and_never_holds_up_status_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/links/", 2)), 2)).await.unwrap();

    // Status reads every 20 ms for as long as the job runs: none may wait long.
    let mut longest = Duration::ZERO;
    let mut last = Instant::now();
    let started = Instant::now();
    loop {
        let now = service.get(R, job.id).await.unwrap();
        longest = longest.max(last.elapsed());
        last = Instant::now();
        if now.status == JobStatus::Completed {
            break;
        }
        assert!(started.elapsed() < LONG, "the job did not finish: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(site.hits_by_path().len(), 2, "both pages were fetched");
    assert!(longest < Duration::from_secs(2), "a status read waited {longest:?} behind the parser");

    let done = service.get(R, job.id).await.unwrap();
    assert_eq!((done.completed, done.failed), (2, 0));
    for item in service.items(R, job.id, None, 0, 10).await.unwrap().items {
        let result = item.result.unwrap();
        for list in ["emails", "phones", "socials"] {
            let n = result[list].as_array().unwrap().len();
            assert!((1..=25).contains(&n), "{list} holds {n} entries");
        }
        assert_eq!(result["emails"][0], "user0@example0.com", "the page's own order is kept");
    }
    let stored: i64 = count(&db, &format!("SELECT MAX(length(result)) FROM accounts WHERE job_id = {}", job.id));
    assert!(stored <= 64 * 1024, "a stored result is {stored} bytes");
}

/// A fake chat-completions endpoint whose answers wait for a gate, then say 429 with
/// `Retry-After: 1`. Returns its base URL, the gate and the number of calls.
async fn gated_rate_limited_llm() -> (String, Arc<tokio::sync::watch::Sender<bool>>, Arc<AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let calls = Arc::new(AtomicUsize::new(0));
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let counter = counter.clone();
            let mut gate = gate_rx.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                let mut h = HeaderMap::new();
                h.insert("retry-after", "1".parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), Arc::new(gate), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_that_arrives_after_a_persons_pause_never_lifts_it() {
    let (llm, gate, calls) = gated_rate_limited_llm().await;
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let mut config = test_config(dir.path());
    config.llm.base_url = llm;
    config.llm.model = "test-model".into();
    let service = service(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/f/", 2)), 1)).await.unwrap();

    // The first account waits on the LLM; a person pauses; then the 429 arrives.
    wait_for(LONG, "the LLM is asked", || async { calls.load(Ordering::SeqCst) == 1 }).await;
    let paused = service.pause(R, job.id).await.unwrap();
    assert!(paused.paused && paused.resume_at.is_none());
    gate.send_replace(true);
    let job_now = wait_job(&service, R, job.id, LONG, |j| j.pending == 2 && j.processing == 0).await;
    assert!(job_now.paused, "still paused");
    assert_eq!((job_now.paused_reason, job_now.resume_at), (None, None), "the pause is still the person's");

    // Well past the 429's one second, after several polls: still paused, nothing ran.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let later = service.get(R, job.id).await.unwrap();
    assert!(later.paused && later.resume_at.is_none(), "{later:?}");
    assert_eq!((later.pending, later.completed), (2, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no account started while paused");

    // A person's resume lifts it; the account is rate limited again and this time the
    // job pauses by itself with the rate limit's reason and time.
    service.resume(R, job.id).await.unwrap();
    let auto = wait_job(&service, R, job.id, LONG, |j| j.paused && j.resume_at.is_some()).await;
    assert!(auto.paused_reason.unwrap().contains("429"));
    // A person pausing over a rate-limit pause makes it theirs: no timer lifts it.
    let taken = service.pause(R, job.id).await.unwrap();
    assert!(taken.paused && taken.resume_at.is_none() && taken.paused_reason.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_clears_a_rate_limit_pause_and_its_reason() {
    let (llm, gate, calls) = gated_rate_limited_llm().await;
    gate.send_replace(true);
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let mut config = test_config(dir.path());
    config.llm.base_url = llm;
    let service = service(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/f/", 2)), 1)).await.unwrap();
    wait_job(&service, R, job.id, LONG, |j| j.paused && j.paused_reason.is_some()).await;
    let cancelled = service.cancel(R, job.id).await.unwrap();
    assert!(cancelled.cancelled && !cancelled.paused);
    assert_eq!((cancelled.paused_reason, cancelled.resume_at), (None, None));
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

/// The database is locked by someone else (a `sqlite3` shell's `BEGIN IMMEDIATE`)
/// for longer than `busy_timeout` just as results come in.
async fn results_arrive_while_the_database_is_locked(hold: Duration) -> (Site, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let mut config = test_config(dir.path());
    config.server.busy_timeout_ms = 100;
    let service = service(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 3)), 3)).await.unwrap();
    wait_for(LONG, "three in flight", || async { site.hit_count() == 3 }).await;

    let lock = by_hand(&db);
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    site.open_gate();
    tokio::time::sleep(hold).await; // the fault: the lock is held this long
    lock.execute_batch("COMMIT").unwrap();

    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((done.completed, done.failed, done.processing), (3, 0, 0));
    assert_counters_match(&db, &done);
    let ran = site.hits();
    (site, ran)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_write_that_fails_is_tried_again_and_the_job_completes() {
    let (site, _) = results_arrive_while_the_database_is_locked(Duration::from_millis(700)).await;
    // Tried again, not redone: each account was fetched once.
    assert!(site.hits_by_path().values().all(|&n| n == 1), "{:?}", site.hits_by_path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_written_for_long_goes_back_to_pending_and_runs_again() {
    // Longer than every try of the result write together: five tries of 100 ms each
    // with 0.2 + 0.4 + 0.8 + 1.6 s between them, about 3.5 s.
    let (site, _) = results_arrive_while_the_database_is_locked(Duration::from_secs(7)).await;
    assert!(site.hits_by_path().values().all(|&n| n == 2), "each account ran again: {:?}", site.hits_by_path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_job_whose_task_cannot_start_is_picked_up_by_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    // A live job whose task fails at its first read (its column list is unreadable).
    {
        let conn = by_hand(&db);
        conn.execute(
            "INSERT INTO processing_jobs (name, filename, concurrency, columns, created_at, updated_at, total, pending_count)
             VALUES ('by hand', 'h.csv', 2, 'not json', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 2, 2)",
            [],
        )
        .unwrap();
        let id = conn.last_insert_rowid();
        for (i, p) in ["/f/a", "/f/b"].iter().enumerate() {
            conn.execute(
                "INSERT INTO accounts (job_id, line, website, input) VALUES (?1, ?2, ?3, '[]')",
                rusqlite::params![id, i as i64 + 2, site.url(p)],
            )
            .unwrap();
        }
        // Every job keeps the id range of its items, as an import records it.
        conn.execute(
            "UPDATE processing_jobs SET first_item = (SELECT MIN(id) FROM accounts WHERE job_id = ?1),
                 last_item = (SELECT MAX(id) FROM accounts WHERE job_id = ?1) WHERE id = ?1",
            [id],
        )
        .unwrap();
    }
    service.runner().wake(R, 1);
    tokio::time::sleep(Duration::from_millis(450)).await; // several sweeps: each start fails
    assert_eq!(service.get(R, 1).await.unwrap().completed, 0);
    // The read works again; the next sweep starts a task and the job runs.
    by_hand(&db).execute("UPDATE processing_jobs SET columns = '[\"website\"]' WHERE id = 1", []).unwrap();
    let done = wait_job(&service, R, 1, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(done.completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_upload_is_refused_without_waiting_for_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let mut config = test_config(dir.path());
    config.server.busy_timeout_ms = 300;
    let service = service(config).await;
    let lock = by_hand(&db);
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    for bad in [&b"company,website\n\"Acme,acme.com\n"[..], b"\xff\xfe not text", b"notes\nhello\n"] {
        match service.create_job(R, upload(bad.to_vec(), 2)).await {
            Err(AppError::BadInput(message)) => assert!(message.contains("line"), "{message}"),
            other => panic!("expected a 400 naming the line, got {other:?}"),
        }
    }
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM processing_jobs"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_import_in_chunks_links_duplicates_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let service = service(test_config(dir.path())).await;
    let mut csv = String::from("company,domain\n");
    for i in 0..12_345 {
        csv.push_str(&format!("Company {i},c{}.example\n", i % 5000));
    }
    let job = service.create_job(P, upload(csv.into_bytes(), 1)).await.unwrap();
    service.pause(P, job.id).await.unwrap();
    assert_eq!(job.total, 12_345);
    let duplicates = count(
        &db,
        &format!("SELECT COUNT(*) FROM preprocessing_results WHERE job_id = {} AND duplicate_of IS NOT NULL", job.id),
    );
    assert_eq!(duplicates, 12_345 - 5000, "rows of every chunk point to the first of their domain");
    let first_of_c7 = count(
        &db,
        &format!("SELECT duplicate_of FROM preprocessing_results WHERE job_id = {} AND line = 10009", job.id),
    );
    assert_eq!(first_of_c7, 9, "line 10009 (Company 10007) repeats c7.example of line 9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_vanishes_at_once_and_its_items_are_removed_while_other_jobs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    let mut csv = String::from("company\n");
    for i in 0..60_000 {
        csv.push_str(&format!("Company {i}\n"));
    }
    let big = service.create_job(P, upload(csv.into_bytes(), 1)).await.unwrap();
    let _ = service.cancel(P, big.id).await; // or it completed already: terminal either way
    let other = service.create_job(R, upload(research_csv(&site, &paths("/g/", 2)), 1)).await.unwrap();

    service.delete(P, big.id).await.unwrap();
    // Gone from every read at once, while its items are still being removed; another
    // job's control action goes through meanwhile.
    let paused = service.pause(R, other.id).await.unwrap();
    assert!(paused.paused);
    let left = count(&db, "SELECT COUNT(*) FROM preprocessing_results");
    assert!(left > 0, "the delete answered only after removing every item");
    assert!(matches!(service.get(P, big.id).await, Err(AppError::NotFound { .. })));
    assert_eq!(service.page_all(0, 50).await.unwrap().jobs.len(), 1);
    assert!(matches!(service.items(P, big.id, None, 0, 10).await, Err(AppError::NotFound { .. })));
    assert!(matches!(service.delete(P, big.id).await, Err(AppError::NotFound { .. })));
    wait_for(LONG, "the items to be removed", || async {
        count(&db, "SELECT COUNT(*) FROM preprocessing_results") == 0
            && count(&db, "SELECT COUNT(*) FROM preprocessing_jobs") == 0
    })
    .await;
    site.open_gate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_or_an_import_cut_short_by_a_crash_is_finished_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let config = test_config(dir.path());
    let state = state(config.clone());
    state.service.runner().shutdown().await; // nothing runs: the job stays as created
    let kept = state.service.create_job(P, upload(b"company\nKeep me\n".to_vec(), 1)).await.unwrap();
    drop(state);
    {
        // What a crash leaves: a job hidden for deletion with items still there, and a
        // job whose import never finished.
        let conn = by_hand(&db);
        for (hidden, n) in [("deleting", 3000), ("importing", 2500)] {
            conn.execute(
                "INSERT INTO preprocessing_jobs (name, filename, columns, created_at, updated_at, hidden, status)
                 VALUES ('x', 'x.csv', '[\"company\"]', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', ?1, 'completed')",
                [hidden],
            )
            .unwrap();
            let id = conn.last_insert_rowid();
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
                 INSERT INTO preprocessing_results (job_id, line, input) SELECT ?1, i + 1, '[\"c\"]' FROM n",
                rusqlite::params![id, n],
            )
            .unwrap();
            // Each chunk of an import widens the job's item range with its rows.
            conn.execute(
                "UPDATE preprocessing_jobs SET
                     first_item = (SELECT MIN(id) FROM preprocessing_results WHERE job_id = ?1),
                     last_item = (SELECT MAX(id) FROM preprocessing_results WHERE job_id = ?1)
                 WHERE id = ?1",
                [id],
            )
            .unwrap();
        }
    }
    let service = service(config).await;
    assert_eq!(service.page_all(0, 50).await.unwrap().jobs.len(), 1, "only the whole job is visible");
    wait_for(LONG, "both to be removed", || async {
        count(&db, "SELECT COUNT(*) FROM preprocessing_jobs") == 1
            && count(&db, "SELECT COUNT(*) FROM preprocessing_results") == 1
    })
    .await;
    assert_eq!(service.get(P, kept.id).await.unwrap().total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn research_of_clean_rows_is_not_bound_by_the_upload_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let mut config = test_config(dir.path());
    // The preprocessing file fits; the clean rows as a CSV would be far larger.
    config.server.max_upload_bytes = 200_000;
    let state = state(config);
    let service = state.service.clone();
    service.runner().shutdown().await; // nothing runs: the liveness results are written by hand
    let mut csv = String::from("company,domain\n");
    for i in 0..6000 {
        csv.push_str(&format!("C{i},d{i}.io\n"));
    }
    assert!(csv.len() < 200_000);
    let pre = service.create_job(P, upload(csv.into_bytes(), 1)).await.unwrap();
    {
        // Every row checked and reachable, but every third one unreachable.
        let conn = by_hand(&db);
        conn.execute(
            "UPDATE preprocessing_results SET status = 'completed', result = json_set(normalized,
                 '$.liveness', json_object('checked', json('true'), 'reachable', json(CASE WHEN line % 3 = 0 THEN 'false' ELSE 'true' END),
                                           'finalUrl', 'https://www.' || domain || '/home'))
             WHERE job_id = ?1",
            [pre.id],
        )
        .unwrap();
        conn.execute(
            "UPDATE preprocessing_jobs SET status = 'completed', pending_count = 0, completed_count = total WHERE id = ?1",
            [pre.id],
        )
        .unwrap();
    }
    let research = service.research_from_preprocess(pre.id).await.unwrap();
    assert_eq!(research.total, 4000, "the reachable two thirds");
    assert_eq!(research.name, format!("{} (clean rows)", pre.name));
    let first = service.items(R, research.id, None, 0, 1).await.unwrap().items.remove(0);
    assert_eq!(first.name.as_deref(), Some("C0"));
    assert_eq!(first.website.as_deref(), Some("https://www.d0.io/home"));
    assert_eq!(first.input["domain"], "d0.io");

    // A preprocessing job with no clean row: a clear 400, and no job.
    let none = service.create_job(P, upload(b"company,domain\nZ,z.io\n".to_vec(), 1)).await.unwrap();
    by_hand(&db)
        .execute(
            "UPDATE preprocessing_jobs SET status = 'completed', pending_count = 0, completed_count = total WHERE id = ?1",
            [none.id],
        )
        .unwrap();
    match service.research_from_preprocess(none.id).await {
        Err(AppError::BadInput(m)) => assert!(m.contains("nothing to research"), "{m}"),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert_eq!(service.list(R).await.unwrap().len(), 1);
}

#[tokio::test]
async fn names_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(names_alone(test_config(dir.path()))).await;
    let mut long = upload(b"company\nAcme\n".to_vec(), 1);
    long.name = Some("n".repeat(201));
    match service.create_job(R, long.clone()).await {
        Err(AppError::BadInput(m)) => assert!(m.contains("at most 200"), "{m}"),
        other => panic!("expected a 400, got {other:?}"),
    }
    long.name = Some("é".repeat(200));
    assert_eq!(service.create_job(R, long).await.unwrap().name.chars().count(), 200);
}
