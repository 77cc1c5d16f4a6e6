//! The control semantics of SPEC section 2, proven against the real runner, a real
//! SQLite file and a real website server.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::*;
use jobdeck::model::{ItemStatus, JobKind, JobStatus};
use jobdeck::server::error::AppError;

const R: JobKind = JobKind::Research;
const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_pause_and_double_resume_are_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    // Every item in flight, so nothing but the actions themselves changes the job.
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 3)), 3)).await.unwrap();
    wait_for(LONG, "all three in flight", || async { site.hit_count() == 3 }).await;
    let first = service.pause(R, job.id).await.unwrap();
    let second = service.pause(R, job.id).await.unwrap();
    assert!(first.paused && second.paused);
    assert_eq!(first, second, "the second pause changed nothing");
    let r1 = service.resume(R, job.id).await.unwrap();
    let r2 = service.resume(R, job.id).await.unwrap();
    assert!(!r1.paused && !r2.paused);
    assert_eq!(r1, r2, "the second resume changed nothing");
    site.open_gate();
    wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pause_resume_cancel_leave_a_consistent_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    for round in 0..5 {
        let paths: Vec<String> = (0..60).map(|i| format!("/d/5/{round}-{i}")).collect();
        let job = service.create_job(R, upload(research_csv(&site, &paths), 4)).await.unwrap();
        wait_for(LONG, "some progress", || async { service.get(R, job.id).await.unwrap().completed > 2 }).await;
        let mut tasks = Vec::new();
        for i in 0..30 {
            let s = service.clone();
            tasks.push(tokio::spawn(async move {
                match i % 3 {
                    0 => s.pause(R, job.id).await.map(|_| ()),
                    1 => s.resume(R, job.id).await.map(|_| ()),
                    _ => s.cancel(R, job.id).await.map(|_| ()),
                }
            }));
        }
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) | Err(AppError::AlreadyTerminal(_)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        let job = wait_job(&service, R, job.id, LONG, |j| j.is_terminal()).await;
        assert!(job.cancelled && job.status == JobStatus::Failed);
        several_polls().await;
        let job = service.get(R, job.id).await.unwrap();
        assert_eq!(job.processing, 0);
        assert!(!job.paused);
        assert_counters_match(&db, &job);
    }
    // No account was researched twice across all that.
    assert!(site.hits_by_path().values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_slides_past_a_slow_item() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    let mut paths = vec!["/g/slow".to_string()];
    paths.extend((0..40).map(|i| format!("/d/20/{i}")));
    let job = service.create_job(R, upload(research_csv(&site, &paths), 4)).await.unwrap();
    // All fast items complete while the slow one still holds its slot.
    let done = wait_job(&service, R, job.id, LONG, |j| j.completed == 40).await;
    assert_eq!((done.processing, done.pending), (1, 0));
    site.open_gate();
    wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_fail_the_item_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    let job =
        service.create_job(R, upload(research_csv(&site, &["/e/1".to_string(), "/f/2".to_string()]), 2)).await.unwrap();
    let job = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((job.completed, job.failed), (1, 1), "a job with a failed item still completes");
    assert_eq!(site.hits_by_path()["/e/1"], 3, "tried max_attempts times");
    let failed = service.items(R, job.id, Some(ItemStatus::Failed), 0, 10).await.unwrap();
    let item = &failed.items[0];
    assert_eq!(item.attempts, 3);
    let reason = item.error.as_deref().unwrap();
    assert!(reason.contains("503") && reason.contains("3 attempts"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_in_flight_items_then_puts_the_rest_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let config = test_config(dir.path());
    let service1 = service(config.clone()).await;
    let job = service1.create_job(R, upload(research_csv(&site, &paths("/g/", 6)), 2)).await.unwrap();
    wait_for(LONG, "two in flight", || async { site.hit_count() == 2 }).await;
    service1.runner().shutdown().await; // grace 200 ms passes with the gate closed
    let counts = count_items(&db, R, job.id);
    assert_eq!(counts.get("processing"), None, "nothing left processing after shutdown");
    assert_eq!(counts.get("pending"), Some(&6));
    let job_now = service1.get(R, job.id).await.unwrap();
    assert_eq!((job_now.status, job_now.paused), (JobStatus::Processing, false));

    site.open_gate();
    // The restart: the first server is gone before the second opens the file.
    drop(service1);
    let service2 = service(config).await;
    let job = wait_job(&service2, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(job.completed, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preprocessing_job_cleans_dedupes_and_checks_liveness() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    // Another loopback address, so its domain differs from the live site's (dedupe is by
    // domain); nothing listens on the port once the listener is dropped.
    let dead = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap().local_addr().unwrap();
    let csv = format!(
        "Account Name;Website;Email\n\
         \"  Acme,   Inc. \";{live};\n\
         Acme Inc;{live};\n\
         Globex GmbH;http://{dead}/;\n\
         ;;jane@initech.io\n\
         Bob;;bob@gmail.com\n",
        live = site.url("/f/acme"),
    );
    let job = service.create_job(JobKind::Preprocess, upload(csv.into_bytes(), 2)).await.unwrap();
    assert_eq!(job.total, 5);
    let job = wait_job(&service, JobKind::Preprocess, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(job.completed, 5);
    let items = service.items(JobKind::Preprocess, job.id, None, 0, 10).await.unwrap().items;
    let r = |i: usize| items[i].result.clone().unwrap();
    assert_eq!(r(0)["company"], "Acme");
    assert_eq!(r(0)["legalSuffix"], "Inc.");
    assert_eq!(r(0)["liveness"]["reachable"], true);
    assert_eq!(items[1].duplicate_of, Some(2), "the second Acme points at line 2");
    assert_eq!(r(1)["liveness"]["checked"], false);
    assert_eq!(r(2)["company"], "Globex");
    assert_eq!(r(2)["liveness"]["reachable"], false);
    assert_eq!(r(3)["domain"], "initech.io");
    assert_eq!(r(4)["freeMail"], true);
    assert_eq!(r(4)["valid"], false);
    assert_eq!(site.hits_by_path()["/f/acme"], 1, "the duplicate was not checked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_by_hand_in_sqlite_stops_and_puts_its_items_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 8)), 2)).await.unwrap();
    wait_for(LONG, "two in flight", || async { site.hit_count() == 2 }).await;

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "UPDATE processing_jobs SET status = 'failed', cancelled_at = strftime('%Y-%m-%dT%H:%M:%fZ') WHERE id = ?1",
        [job.id],
    )
    .unwrap();
    let job = wait_job(&service, R, job.id, LONG, |j| j.processing == 0).await;
    assert!(job.cancelled);
    assert_eq!(job.pending, 8);
    site.open_gate();
    several_polls().await;
    assert_eq!(site.hit_count(), 2, "nothing started after the hand-made cancel");
    let job = service.get(R, job.id).await.unwrap();
    assert_eq!((job.completed, job.pending), (0, 8), "the aborted requests' late answers were not written");
    assert_counters_match(&db, &job);
}

/// A step with a bug: it panics on the account named "boom".
struct BuggyStep;

impl jobdeck::server::steps::Step for BuggyStep {
    fn run(
        &self,
        item: jobdeck::server::store::types::Claimed,
    ) -> futures::future::BoxFuture<'static, Result<serde_json::Value, jobdeck::server::steps::StepError>> {
        Box::pin(async move {
            if item.name.as_deref() == Some("boom") {
                panic!("a bug in a step");
            }
            Ok(serde_json::json!({"ok": true}))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_fails_its_item_and_the_job_still_completes() {
    use jobdeck::server::{import::Limits, runner, service::Service, store::sqlite::db::Db};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let db = Db::open(&config.server.db, config.server.busy_timeout()).unwrap();
    let steps = runner::Steps { research: Arc::new(BuggyStep), preprocess: Arc::new(BuggyStep) };
    let runner = runner::Runner::new(db.clone(), config.runner.clone(), steps);
    let limits = Limits { max_bytes: 1 << 20, max_rows: 100, default_concurrency: 2, names_alone: true };
    let service = Service::new(db, runner, limits);
    service.runner().start().await.unwrap();
    let job = service.create_job(R, upload(b"Company\nfine\nboom\nalso fine\n".to_vec(), 2)).await.unwrap();
    let job = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((job.completed, job.failed, job.processing), (2, 1, 0));
    let failed = service.items(R, job.id, Some(ItemStatus::Failed), 0, 10).await.unwrap();
    assert_eq!(failed.items[0].name.as_deref(), Some("boom"));
    assert!(failed.items[0].error.as_deref().unwrap().contains("internal error"));
}

#[tokio::test]
async fn a_job_paused_before_its_first_item_reads_processing_and_paused() {
    let dir = tempfile::tempdir().unwrap();
    // The runner is not started, so the job is surely still `pending` when paused.
    let service = state(names_alone(test_config(dir.path()))).service;
    let job = service.create_job(R, upload(b"Company\nAcme\n".to_vec(), 1)).await.unwrap();
    assert_eq!((job.status, job.paused), (JobStatus::Pending, false));
    let paused = service.pause(R, job.id).await.unwrap();
    assert_eq!((paused.status, paused.paused), (JobStatus::Processing, true));
    let resumed = service.resume(R, job.id).await.unwrap();
    assert_eq!((resumed.status, resumed.paused), (JobStatus::Processing, false));
}

/// Steps that finish at once (cleaning names) run several rounds of the window in one
/// transaction. Readers still never see more items in flight than the concurrency, a
/// pause still stops every start once it returns, and the counters match the items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_steps_keep_the_window_the_pause_and_the_counters() {
    const P: JobKind = JobKind::Preprocess;
    const ROWS: i64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let service = service(test_config(dir.path())).await;
    let csv: String =
        std::iter::once("company\n".to_string()).chain((0..ROWS).map(|i| format!("Company {i} Inc\n"))).collect();
    let job = service.create_job(P, upload(csv.into_bytes(), 3)).await.unwrap();
    // Fn, not FnMut: the most items in flight that any read saw.
    let most = std::cell::Cell::new(0);
    let watch = |processing: i64| most.set(most.get().max(processing));
    wait_job(&service, P, job.id, LONG, |j| {
        watch(j.processing);
        j.completed + j.failed > 1_000
    })
    .await;
    let paused = service.pause(P, job.id).await.unwrap();
    assert!(paused.completed + paused.failed < ROWS, "the job was still running when paused");
    let started = paused.completed + paused.failed + paused.processing;
    let settled = wait_job(&service, P, job.id, LONG, |j| j.processing == 0).await;
    several_polls().await;
    let later = service.get(P, job.id).await.unwrap();
    assert_eq!(later, settled, "nothing changed while paused");
    assert_eq!(later.completed + later.failed, started, "no item started after the pause returned");
    assert_counters_match(&db, &later);

    service.resume(P, job.id).await.unwrap();
    let done = wait_job(&service, P, job.id, LONG, |j| {
        watch(j.processing);
        j.status == JobStatus::Completed
    })
    .await;
    assert!(most.get() <= 3, "at most the concurrency in flight, saw {}", most.get());
    assert_eq!((done.completed + done.failed, done.pending, done.processing), (ROWS, 0, 0));
    assert_counters_match(&db, &done);
}

/// A site with a robots.txt, as SPEC section 12 reads it: the rules of jobdeck's own
/// group (they replace `*`'s), the file asked for once for every account of the host,
/// a disallowed homepage never fetched and its account failed with the reason, the
/// host's requests spaced by its `Crawl-delay`; `JOBDECK_ROBOTS=ignore` reads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_is_read_once_per_host_and_followed() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let hits: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let seen = hits.clone();
    let site = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        use axum::response::IntoResponse;
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((uri.path().to_string(), Instant::now()));
            if uri.path() == "/robots.txt" {
                let rules = "User-agent: *\nDisallow: /\n\nUser-agent: jobdeck\nDisallow: /secret\nCrawl-delay: 0.3\n";
                return rules.into_response();
            }
            // Redirects are followed hop by hop, each hop checked like the first URL.
            let hop = match uri.path() {
                "/hop" => Some("/ok/3"),
                "/go-secret" => Some("/secret/page"),
                _ => None,
            };
            if let Some(to) = hop {
                return axum::response::Redirect::to(to).into_response();
            }
            axum::response::Html(format!("<html><head><title>{}</title></head></html>", uri.path())).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });
    let csv = format!(
        "Company,Website\nA,http://{addr}/secret/home\nB,http://{addr}/private\nC,http://{addr}/ok/1\nD,http://{addr}/ok/2\n\
         E,http://{addr}/hop\nF,http://{addr}/go-secret\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let polite = service(test_config(dir.path())).await;
    let job = polite.create_job(R, upload(csv.clone().into_bytes(), 4)).await.unwrap();
    let done = wait_job(&polite, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    let items = polite.items(R, job.id, None, 0, 10).await.unwrap().items;
    let errors: Vec<_> = items.iter().map(|i| (i.name.clone(), i.error.clone())).collect();
    assert_eq!((done.completed, done.failed), (4, 2), "{errors:?}");
    let item = |name: &str| items.iter().find(|i| i.name.as_deref() == Some(name)).unwrap();
    let a = item("A");
    assert_eq!((a.error.as_deref(), a.attempts), (Some("disallowed by robots.txt"), 1), "failed, not retried");
    assert_eq!(item("F").error.as_deref(), Some("disallowed by robots.txt"), "a redirect into a disallowed path");
    let e = item("E").result.clone().unwrap();
    assert_eq!(e["finalUrl"], format!("http://{addr}/ok/3"), "an allowed redirect is followed");
    let got: Vec<(String, Instant)> = hits.lock().unwrap().clone();
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths.iter().filter(|p| **p == "/robots.txt").count(), 1, "read once for the host: {paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/secret")), "a disallowed page is never fetched: {paths:?}");
    assert!(paths.contains(&"/private"), "jobdeck's own group replaces `*`'s: {paths:?}");
    let mut pages: Vec<Instant> = got.iter().filter(|(p, _)| p != "/robots.txt").map(|(_, at)| *at).collect();
    pages.sort();
    for pair in pages.windows(2) {
        // 0.3 s apart when they start; a little less is how they may arrive.
        assert!(pair[1] - pair[0] >= Duration::from_millis(250), "Crawl-delay spaces the host: {got:?}");
    }

    // The operator owns the site: robots.txt is not even asked for.
    hits.lock().unwrap().clear();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.runner.robots = jobdeck::server::config::RobotsPolicy::Ignore;
    let owned = service(config).await;
    let job = owned.create_job(R, upload(csv.into_bytes(), 4)).await.unwrap();
    let done = wait_job(&owned, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((done.completed, done.failed), (6, 0));
    let paths: Vec<String> = hits.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert!(!paths.contains(&"/robots.txt".to_string()), "{paths:?}");
    assert!(paths.contains(&"/secret/home".to_string()) && paths.contains(&"/secret/page".to_string()), "{paths:?}");
}

/// SPEC section 16: a paused job is never called running, also when an action that
/// needs a finished job is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_is_refused_as_paused_not_as_running() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start().await;
    let service = service(test_config(dir.path())).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 3)), 1)).await.unwrap();
    let said = |e: AppError| e.public_message();
    let running = said(service.archive(R, job.id).await.unwrap_err());
    assert!(running.starts_with("the job is still running"), "{running}");
    service.pause(R, job.id).await.unwrap();
    for refused in [service.archive(R, job.id).await.unwrap_err(), service.retry(R, job.id).await.unwrap_err()] {
        let text = said(refused);
        assert!(text.starts_with("the job is paused, not over") && !text.contains("running"), "{text}");
    }
    site.open_gate();
    service.cancel(R, job.id).await.unwrap();
}

/// SPEC section 16: an unreachable site's account fails with a sentence a person
/// reads, "could not reach HOST (reason)" in at most 120 characters; the whole chain
/// of causes is kept for the export.
#[tokio::test]
async fn an_unreachable_site_reads_as_a_sentence_and_the_export_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(test_config(dir.path())).await;
    // Port 9 on loopback: nothing listens, the connection is refused.
    let job = service.create_job(R, upload(b"Company,Website\nAcme,http://127.0.0.1:9/\n".to_vec(), 1)).await.unwrap();
    let done = wait_job(&service, R, job.id, LONG, |j| j.is_terminal()).await;
    assert_eq!(done.failed, 1);
    let (_, items) = service.export_page(R, job.id, 0, 10).await.unwrap();
    let error = items[0].error.as_deref().unwrap();
    assert_eq!(error, "could not reach 127.0.0.1 (connection refused)");
    assert!(error.chars().count() <= 120);
    let detail = items[0].result.as_ref().and_then(|r| r["errorDetail"].as_str()).unwrap_or_default();
    assert!(detail.contains("error sending request") && detail.contains("127.0.0.1:9"), "{detail}");
}
