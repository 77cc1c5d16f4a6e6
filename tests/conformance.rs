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
use jobdeck::server::config::Config;
use jobdeck::server::error::AppError;
use jobdeck::server::service::{BulkTarget, Service};
use jobdeck::server::store::postgres::PgStore;

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
        self.state(config).await.service
    }

    /// The state of a started process on this store, as the router takes it.
    async fn state(&self, config: Config) -> jobdeck::server::state::AppState {
        let options = leptos::config::LeptosOptions::builder().output_name("jobdeck").build();
        let state = match self {
            Self::Sqlite(_) => jobdeck::server::build_state(config, options).expect("state builds"),
            Self::Postgres(schema) => {
                let pg = PgStore::open(&url(), Some(&schema.name), 16).await.expect("PostgreSQL opens");
                jobdeck::server::build_state_with(pg.into(), config, options).expect("state builds")
            }
        };
        state.service.runner().start().await.expect("runner starts");
        state
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

    /// Points the accounts of a job at another site (the port is all that differs), by
    /// hand: in the input row, which SQLite reads the website from, and in the stored
    /// copy PostgreSQL keeps of it.
    async fn move_site(&self, from: &str, to: &str) {
        let sql = "UPDATE accounts SET input = replace(input, ?, ?), website = replace(website, ?, ?)";
        self.by_hand(sql, &[from, to, from, to]).await;
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
    a_pause_during_instant_rounds_stops_the_next_claim,
    instant_items_and_items_that_go_out_share_one_window,
    rows_that_go_out_after_an_instant_one_start_without_waiting_for_a_poll,
    a_job_reads_failed_only_when_every_item_failed,
    preprocessing_counts_and_filters_outcomes_and_sends_clean_rows_once,
);

/// SPEC section 16: a preprocessing job's rows are counted and filtered by outcome;
/// its clean rows go to research once (a second send is 409 naming the job, also when
/// two race), and again only once that research job is gone.
async fn preprocessing_counts_and_filters_outcomes_and_sends_clean_rows_once(store: Store) {
    use jobdeck::model::{Outcome, OutcomeCounts};
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    // Clean; a duplicate of it (same domain); invalid (no domain); unreachable (nothing
    // listens on port 9 of another loopback address).
    let csv = format!(
        "Company,Website\nAcme,{}\nAcme Two,{}\nNobody,\nBeta,http://127.0.0.2:9/\n",
        site.url("/f/1"),
        site.url("/f/2")
    );
    let pre = service.create_job(P, upload(csv.into_bytes(), 2)).await.unwrap();
    wait_job(&service, P, pre.id, LONG, |j| j.is_terminal()).await;
    let done = service.get(P, pre.id).await.unwrap();
    assert_eq!(done.outcomes, Some(OutcomeCounts { clean: 1, duplicate: 1, invalid: 1, unreachable: 1 }));
    assert_eq!(done.research_job_id, None);
    for (outcome, line) in
        [(Outcome::Clean, 2), (Outcome::Duplicate, 3), (Outcome::Invalid, 4), (Outcome::Unreachable, 5)]
    {
        let page = service.outcome_items(pre.id, outcome, 0, 10).await.unwrap();
        assert_eq!((page.total, page.items.iter().map(|i| i.line).collect::<Vec<_>>()), (1, vec![line]), "{outcome}");
    }

    let research = service.research_from_preprocess(pre.id).await.unwrap();
    assert_eq!(research.total, 1, "only the clean row goes");
    assert_eq!(service.get(P, pre.id).await.unwrap().research_job_id, Some(research.id));
    let again = service.research_from_preprocess(pre.id).await.expect_err("a second send is refused");
    assert_eq!(again.status_code(), 409);
    assert!(again.public_message().contains(&research.name), "{}", again.public_message());

    // Once that job is gone, the rows can go again; two sends at once make one job.
    wait_job(&service, R, research.id, LONG, |j| j.is_terminal()).await;
    service.delete(R, research.id).await.unwrap();
    assert_eq!(service.get(P, pre.id).await.unwrap().research_job_id, None);
    let (a, b) = tokio::join!(service.research_from_preprocess(pre.id), service.research_from_preprocess(pre.id));
    let made: Vec<_> = [&a, &b].into_iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "{a:?} {b:?}");
    let refused = [a.as_ref().err(), b.as_ref().err()].into_iter().flatten().next().unwrap();
    assert_eq!(refused.status_code(), 409, "{refused}");
    assert_eq!(service.get(P, pre.id).await.unwrap().research_job_id, Some(made[0].id));
    let live = service.page(JobFilter { kind: Some(R), ..JobFilter::default() }, 0, 50).await.unwrap();
    assert_eq!(live.jobs.iter().filter(|j| j.name == made[0].name).count(), 1, "no second job was left behind");
}

/// SPEC section 16: a job that finished with every item failed reads "failed" (badge,
/// dashboard filter, bulk filter) while its `status` stays `completed`; one where only
/// some failed is "completed" with the failures counted.
async fn a_job_reads_failed_only_when_every_item_failed(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let gone = paths("/gone/", 3);
    let mut some = paths("/f/", 2);
    some.push("/gone/x".into());
    let all_failed = service.create_job(R, upload(research_csv(&site, &gone), 2)).await.unwrap();
    let some_failed = service.create_job(R, upload(research_csv(&site, &some), 2)).await.unwrap();
    let all_failed = wait_job(&service, R, all_failed.id, LONG, |j| j.is_terminal()).await;
    let some_failed = wait_job(&service, R, some_failed.id, LONG, |j| j.is_terminal()).await;
    assert_eq!((all_failed.status, all_failed.failed, all_failed.phase()), (JobStatus::Completed, 3, Phase::Failed));
    assert_eq!(
        (some_failed.status, some_failed.failed, some_failed.phase()),
        (JobStatus::Completed, 1, Phase::Completed)
    );

    let ids = |phase| {
        let service = service.clone();
        async move {
            let filter = JobFilter { kind: Some(R), status: Some(phase), ..JobFilter::default() };
            let page = service.page(filter, 0, 50).await.unwrap();
            assert_eq!(page.total, page.jobs.len() as i64, "the count agrees with the list");
            page.jobs.iter().map(|j| j.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(Phase::Failed).await,
        vec![all_failed.id],
        "the Failed filter finds the job whose every item failed"
    );
    assert_eq!(ids(Phase::Completed).await, vec![some_failed.id]);
    // A bulk action by that filter takes the same job.
    let filter = JobFilter { kind: Some(R), status: Some(Phase::Failed), ..JobFilter::default() };
    let out = service.bulk(JobAction::Archive, BulkTarget::Filter(filter)).await.unwrap();
    assert_eq!(out.results.iter().map(|r| (r.id, r.ok)).collect::<Vec<_>>(), vec![(all_failed.id, true)]);
    // Each result names its job (SPEC section 16), refused ones too.
    assert_eq!(out.results[0].name.as_deref(), Some(all_failed.name.as_str()));
    let again = service.bulk(JobAction::Pause, BulkTarget::Jobs(vec![JobRef { kind: R, id: some_failed.id }])).await;
    let again = again.unwrap();
    assert_eq!((again.results[0].ok, again.results[0].name.as_deref()), (false, Some(some_failed.name.as_str())));
}

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

/// Items a step finishes at once run in rounds, many a transaction on either store; a
/// pause that commits while they run is seen by the next claim: what was held at the
/// pause finishes, nothing else starts.
async fn a_pause_during_instant_rounds_stops_the_next_claim(store: Store) {
    let service = store.service(store.config()).await;
    let csv: String =
        std::iter::once("Company\n".to_string()).chain((0..200_000).map(|i| format!("Company {i}\n"))).collect();
    let job = service.create_job(P, upload(csv.into_bytes(), 8)).await.unwrap();
    wait_job(&service, P, job.id, LONG, |j| j.completed >= 2_000).await;
    let paused = service.pause(P, job.id).await.unwrap();
    assert!(paused.paused && paused.status == JobStatus::Processing, "paused mid-run: {paused:?}");
    let held = paused.processing;
    let done_at_pause = paused.completed + paused.failed;
    let job = wait_job(&service, P, job.id, LONG, |j| j.processing == 0).await;
    assert!(
        job.completed + job.failed <= done_at_pause + held,
        "only what was held at the pause finished: {done_at_pause} + {held} at the pause, {} now",
        job.completed + job.failed
    );
    several_polls().await;
    let later = service.get(P, job.id).await.unwrap();
    assert_eq!((later.completed, later.failed, later.pending), (job.completed, job.failed, job.pending));
    assert!(later.pending > 100_000, "most of the job still waits: {later:?}");
    store.assert_counters_match(&later).await;
}

/// One job of rows cleaned at once and rows whose website is checked: the rows cleaned
/// at once run in batches inside a transaction and never hold a slot, the checks stay
/// within the job's concurrency however the batches fall, and every row ends once.
async fn instant_items_and_items_that_go_out_share_one_window(store: Store) {
    const ROWS: i64 = 3_000;
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let mut csv = String::from("Company,Website\n");
    let mut checked = Vec::new();
    for i in 0..ROWS {
        if i % 300 == 7 {
            // A host of its own for each, so that no row is a duplicate of another.
            let base = site.also_on(&format!("127.0.1.{}", i / 300 + 1)).await;
            csv.push_str(&format!("Company {i},{base}/g/{i}\n"));
            checked.push(format!("/g/{i}"));
        } else {
            csv.push_str(&format!("Company {i},\n"));
        }
    }
    let job = service.create_job(P, upload(csv.into_bytes(), 3)).await.unwrap();
    let most = std::cell::Cell::new(0);
    let watch = |processing: i64| most.set(most.get().max(processing));
    wait_for(LONG, "three checks waiting at the site", || async { site.hit_count() == 3 }).await;
    let held = wait_job(&service, P, job.id, LONG, |j| {
        watch(j.processing);
        j.processing == 3
    })
    .await;
    several_polls().await;
    let later = service.get(P, job.id).await.unwrap();
    assert_eq!(later, held, "with the window full of checks, nothing else moves");
    assert_eq!(site.hit_count(), 3, "no fourth check while three are in flight");
    site.open_gate();
    let done = wait_job(&service, P, job.id, LONG, |j| {
        watch(j.processing);
        j.status == JobStatus::Completed
    })
    .await;
    assert_eq!((done.completed, done.failed, done.pending, done.processing), (ROWS, 0, 0, 0));
    assert!(most.get() <= 3, "at most the concurrency in flight, saw {}", most.get());
    let mut hit = site.hits();
    hit.sort();
    checked.sort();
    assert_eq!(hit, checked, "every website checked once, and only those");
    store.assert_counters_match(&done).await;
}

/// After a row cleaned at once, the rows taken to be finished the same way may all need
/// the outside: the next one starts at once, not at the runner's next poll.
async fn rows_that_go_out_after_an_instant_one_start_without_waiting_for_a_poll(store: Store) {
    let site = Site::start().await;
    let mut config = store.config();
    // A poll far slower than the wait below: the starts must not come from it.
    config.runner.pause_poll_ms = 10_000;
    let service = store.service(config).await;
    // A check, a row cleaned at once, four more checks; one at a time.
    let mut rows = Vec::new();
    for i in 0..5 {
        let base = site.also_on(&format!("127.0.2.{}", i + 1)).await;
        rows.push(format!("Company {i},{base}/g/{i}"));
    }
    rows.insert(1, "Cleaned at once,".to_string());
    let csv = format!("Company,Website\n{}\n", rows.join("\n"));
    let job = service.create_job(P, upload(csv.into_bytes(), 1)).await.unwrap();
    wait_for(LONG, "the first check", || async { site.hit_count() == 1 }).await;
    // Long after the job's start: only the runner's own turns start what follows.
    several_polls().await;
    site.open_gate();
    wait_for(Duration::from_secs(5), "the other four checks, well before the 10 s poll", || async {
        site.hit_count() == 5
    })
    .await;
    let done = wait_job(&service, P, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((done.completed, done.failed), (6, 0));
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
    let pg = PgStore::open(&url(), Some(&schema.name), 4).await.unwrap();
    let api = jobdeck::server::build_state_with(pg.into(), config, options).unwrap().service;
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
    assert_eq!(ids(service.list_archived(R, Archived::Only, 0, 200).await.unwrap().jobs), vec![job.id]);
    assert_eq!(ids(service.list_archived(R, Archived::All, 0, 200).await.unwrap().jobs), vec![job.id, running.id]);
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

// ---- SPEC section 8: control that runs itself ----

on_both_stores!(
    an_error_burst_pauses_the_job_until_a_person_resumes,
    a_completed_item_starts_the_count_of_failures_again,
    a_sites_429_cools_its_host_and_the_job_goes_on,
    one_host_gets_at_most_two_requests_at_once,
    a_schedule_pauses_and_resumes_the_job_once_each,
    a_schedule_set_before_a_restart_fires_after_it_once,
    a_webhook_is_signed_retried_and_survives_a_restart,
    an_email_goes_out_through_smtp,
);

/// `error_burst` failures in a row pause the job with the count and the last error and
/// no resume time; nothing starts until a person resumes, and then the count starts
/// again from zero.
async fn an_error_burst_pauses_the_job_until_a_person_resumes(store: Store) {
    let site = Site::start().await;
    let (hook, hooks) = webhook_receiver(false).await;
    let mut config = store.config();
    config.runner.error_burst = 3;
    config.notify.webhook_url = format!("http://{hook}/hook");
    config.notify.webhook_secret = "burst-secret".into();
    let service = store.service(config).await;
    // `/missing/…` answers 404: a permanent failure, at once. One success first.
    let mut items = paths("/f/", 1);
    items.extend(paths("/missing/", 7));
    let job = service.create_job(R, upload(research_csv(&site, &items), 1)).await.unwrap();

    let paused = wait_job(&service, R, job.id, LONG, |j| j.paused).await;
    let reason = paused.paused_reason.clone().unwrap();
    assert!(reason.starts_with("3 items failed in a row; the last: HTTP 404"), "{reason}");
    assert_eq!(paused.resume_at, None, "a person decides");
    assert_eq!((paused.completed, paused.failed, paused.processing), (1, 3, 0));
    several_polls().await;
    let still = service.get(R, job.id).await.unwrap();
    assert!(still.paused && still.failed == 3, "nothing starts while it waits for a person: {still:?}");
    let events = service.events(R, job.id, None, 50).await.unwrap();
    let auto = events.iter().find(|e| e.action == EventAction::AutoPaused).expect("an auto-paused event");
    assert_eq!((auto.source, auto.detail.as_deref()), (Source::ErrorBurst, Some(reason.as_str())));
    // The automatic pause is notified, with the job as it was paused.
    wait_for(LONG, "the auto_paused webhook", || async { !hooks.lock().unwrap().is_empty() }).await;
    let (signature, body) = hooks.lock().unwrap()[0].clone();
    // SPEC section 11: a webhook always goes out signed.
    assert!(signature.as_deref().is_some_and(|s| s.starts_with("sha256=")), "{signature:?}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["job"]["pausedReason"].as_str()),
        (Some("job.auto_paused"), Some(reason.as_str()))
    );

    // A person resumes: three more fail in a row, and it pauses again; then the last
    // one fails and the job is over (a finished job is not paused).
    service.resume(R, job.id).await.unwrap();
    let again = wait_job(&service, R, job.id, LONG, |j| j.paused && j.failed == 6).await;
    assert!(again.paused_reason.unwrap().starts_with("3 items failed in a row"));
    service.resume(R, job.id).await.unwrap();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((done.completed, done.failed, done.paused), (1, 7, false));
    store.assert_counters_match(&done).await;

    // Off (0): the same list runs to the end without a pause.
    let mut config = store.config();
    config.runner.error_burst = 0;
    service.runner().shutdown().await;
    drop(service);
    let service = store.service_after_crash(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/missing/", 12)), 2)).await.unwrap();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(done.failed, 12);
    let events = service.events(R, job.id, None, 50).await.unwrap();
    assert!(events.iter().all(|e| e.action != EventAction::AutoPaused));
}

/// Failures in a row count only until an item completes: two failures, a success, two
/// failures and so on never reach a burst of 3 (one at a time, in file order).
async fn a_completed_item_starts_the_count_of_failures_again(store: Store) {
    let site = Site::start().await;
    let mut config = store.config();
    config.runner.error_burst = 3;
    let service = store.service(config).await;
    let mut items = Vec::new();
    for i in 0..4 {
        items.extend([format!("/missing/{}", 2 * i), format!("/missing/{}", 2 * i + 1), format!("/f/{i}")]);
    }
    let job = service.create_job(R, upload(research_csv(&site, &items), 1)).await.unwrap();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed || j.paused).await;
    assert_eq!((done.status, done.paused, done.completed, done.failed), (JobStatus::Completed, false, 4, 8));
    let events = service.events(R, job.id, None, 50).await.unwrap();
    assert!(events.iter().all(|e| e.action != EventAction::AutoPaused), "{events:?}");
}

/// SPEC section 12: a researched site that answers 429 with `Retry-After` cools its own
/// host and never pauses the job. The account waits without losing an attempt, other
/// hosts go on meanwhile, and a host that keeps refusing costs only its own account:
/// after three free cool-downs each refusal is an attempt, and the account fails with
/// the reason. Nothing is logged for a cool-down.
async fn a_sites_429_cools_its_host_and_the_job_goes_on(store: Store) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (once, always) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let refuse = || {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1".parse().unwrap());
        (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
    };
    let (o, a) = (once.clone(), always.clone());
    let limited = axum::Router::new()
        .route(
            "/once",
            axum::routing::get(move || {
                let first = o.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        return refuse();
                    }
                    axum::response::Html("<html><head><title>Fine now</title></head></html>").into_response()
                }
            }),
        )
        .route(
            "/always",
            axum::routing::get(move || {
                a.fetch_add(1, Ordering::SeqCst);
                async move { refuse() }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, limited).await.unwrap() });
    // Another port: another host.
    let site = Site::start().await;

    let service = store.service(store.config()).await;
    let mut csv = format!("Company,Website\nA,http://{addr}/once\nB,http://{addr}/always\n");
    for i in 0..3 {
        csv.push_str(&format!("C{i},{}\n", site.url(&format!("/f/{i}"))));
    }
    let job = service.create_job(R, upload(csv.into_bytes(), 2)).await.unwrap();
    let never_paused = std::cell::Cell::new(true);
    let others = wait_job(&service, R, job.id, LONG, |j| {
        never_paused.set(never_paused.get() && !j.paused);
        j.completed >= 4
    })
    .await;
    assert_eq!(others.failed, 0, "the other host's accounts finished while B's host still cooled: {others:?}");
    let done = wait_job(&service, R, job.id, LONG, |j| {
        never_paused.set(never_paused.get() && !j.paused);
        j.status == JobStatus::Completed
    })
    .await;
    assert!(never_paused.get(), "a site's 429 never pauses the job");
    assert_eq!((done.completed, done.failed, done.paused_reason.as_deref()), (4, 1, None));
    assert_eq!(once.load(Ordering::SeqCst), 2, "the page that refused once was asked again after its cool-down");
    // Three free cool-downs, then the three attempts of the test config.
    assert_eq!(always.load(Ordering::SeqCst), 6, "three free cool-downs, then each refusal an attempt");
    let items = service.items(R, job.id, None, 0, 10).await.unwrap().items;
    let b = items.iter().find(|i| i.name.as_deref() == Some("B")).unwrap();
    let error = b.error.clone().unwrap_or_default();
    assert!(error.contains("HTTP 429") && error.contains("gave up after 3 attempts"), "{error}");
    let events = service.events(R, job.id, None, 50).await.unwrap();
    let seen: Vec<EventAction> = events.iter().map(|e| e.action).collect();
    assert_eq!(seen, vec![EventAction::Completed, EventAction::Created], "no entry for a cool-down");
    store.assert_counters_match(&done).await;
}

/// SPEC section 12: at most two requests are in flight to one host, whatever the job's
/// concurrency; the rest of its accounts wait for a free slot of the host.
async fn one_host_gets_at_most_two_requests_at_once(store: Store) {
    let site = Site::start().await;
    let mut config = store.config();
    config.runner.host_concurrency = jobdeck::server::config::RunnerConfig::default().host_concurrency;
    assert_eq!(config.runner.host_concurrency, 2, "the default");
    let service = store.service(config).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 10)), 6)).await.unwrap();
    wait_for(LONG, "two requests at the host", || async { site.hit_count() == 2 }).await;
    // The job's other four claimed accounts wait for the host, and the job says so.
    let waiting = wait_job(&service, R, job.id, LONG, |j| j.waiting_on_hosts == 4).await;
    assert_eq!(waiting.processing, 6);
    several_polls().await;
    assert_eq!(site.hit_count(), 2, "no third request while two are in flight");
    site.open_gate();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!((done.completed, done.failed, done.waiting_on_hosts), (10, 0, 0));
    assert_eq!(site.hit_count(), 10, "each account asked once");
}

/// A schedule: the job pauses at `pauseAt` and resumes at `resumeAt`, each once, both
/// logged by `schedule`; past times are refused (400), a job that is over too (409).
async fn a_schedule_pauses_and_resumes_the_job_once_each(store: Store) {
    let site = Site::start().await;
    let service = store.service(store.config()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 6)), 1)).await.unwrap();
    wait_for(LONG, "the first request", || async { site.hit_count() == 1 }).await;

    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let refused = service.schedule(R, job.id, Some(past), None).await.unwrap_err();
    assert_eq!(status_of(&refused), 400);
    assert!(refused.public_message().contains("the pause time must be in the future"), "{}", refused.public_message());
    assert_eq!(status_of(&service.schedule(R, 987_654, None, None).await.unwrap_err()), 404);

    let pause_at = chrono::Utc::now() + chrono::Duration::milliseconds(700);
    let resume_at = pause_at + chrono::Duration::milliseconds(900);
    let set = service.schedule(R, job.id, Some(pause_at), Some(resume_at)).await.unwrap();
    let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    assert_eq!(set.scheduled_pause_at.map(ms), Some(ms(pause_at)));
    assert_eq!(set.scheduled_resume_at.map(ms), Some(ms(resume_at)));
    assert!(!set.paused);

    let paused = wait_job(&service, R, job.id, LONG, |j| j.paused).await;
    assert!(chrono::Utc::now() >= pause_at, "not before its time");
    assert_eq!((paused.scheduled_pause_at, paused.scheduled_resume_at.map(ms)), (None, Some(ms(resume_at))));
    assert_eq!(paused.paused_reason, None, "a scheduled pause is a person's: no timer of its own lifts it");
    let resumed = wait_job(&service, R, job.id, LONG, |j| !j.paused).await;
    assert!(chrono::Utc::now() >= resume_at);
    assert_eq!((resumed.scheduled_pause_at, resumed.scheduled_resume_at), (None, None));
    site.open_gate();
    let done = wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    assert_eq!(done.completed, 6);

    let events = service.events(R, job.id, None, 50).await.unwrap();
    let by_schedule: Vec<EventAction> =
        events.iter().filter(|e| e.source == Source::Schedule).map(|e| e.action).collect();
    assert_eq!(by_schedule, vec![EventAction::Resumed, EventAction::Paused], "each once");
    let scheduled = events.iter().find(|e| e.action == EventAction::Scheduled).expect("the setting is logged");
    assert_eq!(scheduled.source, Source::Api);
    assert!(scheduled.detail.as_deref().unwrap().starts_with("pause at "), "{:?}", scheduled.detail);

    // Over: 409 to set and to clear.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(status_of(&service.schedule(R, job.id, Some(later), None).await.unwrap_err()), 409);
    assert_eq!(status_of(&service.schedule(R, job.id, None, None).await.unwrap_err()), 409);

    // Cleared before its time, a schedule never fires.
    let other = service.create_job(R, upload(research_csv(&site, &paths("/g/", 3)), 1)).await.unwrap();
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    service.schedule(R, other.id, Some(soon), None).await.unwrap();
    let cleared = service.schedule(R, other.id, None, None).await.unwrap();
    assert_eq!(cleared.scheduled_pause_at, None);
    while chrono::Utc::now() < soon {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    several_polls().await;
    assert!(!service.get(R, other.id).await.unwrap().paused);
}

/// A pause scheduled before a stop whose time passes while the server is down fires
/// at the next start, once; a later restart does not fire it again.
async fn a_schedule_set_before_a_restart_fires_after_it_once(store: Store) {
    let site = Site::start().await;
    let config = store.config();
    let service = store.service(config.clone()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/g/", 4)), 1)).await.unwrap();
    let pause_at = chrono::Utc::now() + chrono::Duration::milliseconds(500);
    service.schedule(R, job.id, Some(pause_at), None).await.unwrap();
    service.runner().shutdown().await;
    drop(service);
    // The server is down while the time passes.
    while chrono::Utc::now() < pause_at + chrono::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service = store.service_after_crash(config.clone()).await;
    let paused = wait_job(&service, R, job.id, LONG, |j| j.paused).await;
    assert_eq!(paused.scheduled_pause_at, None);
    let fired = |events: &[jobdeck::model::JobEvent]| {
        events.iter().filter(|e| e.source == Source::Schedule && e.action == EventAction::Paused).count()
    };
    assert_eq!(fired(&service.events(R, job.id, None, 50).await.unwrap()), 1);

    service.runner().shutdown().await;
    drop(service);
    let service = store.service_after_crash(config).await;
    several_polls().await;
    let job = service.get(R, job.id).await.unwrap();
    assert!(job.paused, "still paused after another restart");
    assert_eq!(fired(&service.events(R, job.id, None, 50).await.unwrap()), 1, "fired once");
}

/// The newest event of `action` in the job's log, once there is one.
async fn wait_event(service: &Service, kind: JobKind, id: i64, action: EventAction) -> jobdeck::model::JobEvent {
    let start = std::time::Instant::now();
    loop {
        let events = service.events(kind, id, None, 50).await.unwrap();
        if let Some(e) = events.into_iter().find(|e| e.action == action) {
            return e;
        }
        assert!(start.elapsed() < LONG, "no {action:?} event within {LONG:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a test's webhook receiver saw: each request's signature header and body.
type Hooks = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>;

/// A local webhook receiver that answers 200, or 500 to the first request when
/// `fail_first`.
async fn webhook_receiver(fail_first: bool) -> (std::net::SocketAddr, Hooks) {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Hooks = Default::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let signature = headers.get("x-jobdeck-signature").and_then(|v| v.to_str().ok()).map(String::from);
                let mut seen = record.lock().unwrap();
                seen.push((signature, body));
                if fail_first && seen.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A completed job is POSTed to the webhook with an HMAC-SHA256 signature; the first
/// try gets a 500, the server restarts before the second, and the next process
/// delivers it from the outbox. Both tries are in the job's activity log.
async fn a_webhook_is_signed_retried_and_survives_a_restart(store: Store) {
    use hmac::{KeyInit, Mac};
    let (addr, seen) = webhook_receiver(true).await;
    let site = Site::start().await;
    let mut config = store.config();
    config.notify.webhook_url = format!("http://{addr}/hook");
    config.notify.webhook_secret = "s3cret".into();
    // Long enough that the second try cannot happen before the restart.
    config.notify.retry_base_ms = 1_500;
    config.notify.max_tries = 4;
    let service = store.service(config.clone()).await;
    let job = service.create_job(R, upload(research_csv(&site, &paths("/f/", 2)), 2)).await.unwrap();
    wait_job(&service, R, job.id, LONG, |j| j.status == JobStatus::Completed).await;
    let failed = wait_event(&service, R, job.id, EventAction::NotifyFailed).await;
    service.runner().shutdown().await;
    drop(service);
    assert_eq!(seen.lock().unwrap().len(), 1, "one try before the restart");
    assert_eq!(failed.source, Source::System);
    let detail = failed.detail.unwrap();
    assert!(detail.starts_with("webhook job.completed: try 1 of 4 failed (HTTP 500); next try in"), "{detail}");

    let service = store.service_after_crash(config).await;
    let delivered = wait_event(&service, R, job.id, EventAction::Notified).await;
    assert_eq!(delivered.detail.as_deref(), Some("webhook job.completed delivered (HTTP 200)"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "delivered once after the restart");
    assert_eq!(seen[0].1, seen[1].1, "the same body both times");
    for (signature, body) in &seen {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body.as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(signature.as_deref(), Some(expected.as_str()));
    }
    let body: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(body["event"], "job.completed");
    assert_eq!((body["job"]["id"].as_i64(), body["job"]["status"].as_str()), (Some(job.id), Some("completed")));
    assert_eq!(body["job"]["completed"], 2);
    assert!(body["at"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
}

/// A local SMTP server that accepts every message and keeps each one's envelope and
/// data as text.
async fn smtp_listener() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mail: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = mail.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test.local ESMTP\r\n").await.unwrap();
                let mut message = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 test.local\r\n",
                        "MAIL" | "RCPT" => {
                            message.push_str(&line);
                            message.push('\n');
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            while let Ok(Some(data)) = lines.next_line().await {
                                if data == "." {
                                    break;
                                }
                                message.push_str(&data);
                                message.push('\n');
                            }
                            kept.lock().unwrap().push(std::mem::take(&mut message));
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    write.write_all(answer).await.unwrap();
                }
            });
        }
    });
    (addr, mail)
}

/// A cancelled job is e-mailed through SMTP: plain text with its name, state, counts
/// and link; the delivery is in the activity log.
async fn an_email_goes_out_through_smtp(store: Store) {
    let (addr, mail) = smtp_listener().await;
    let site = Site::start().await;
    let mut config = store.config();
    config.notify.smtp_url = format!("smtp://{addr}");
    config.notify.email_to = "ops@example.com".into();
    config.notify.public_url = "https://jobs.example.com/".into();
    let service = store.service(config).await;
    let mut up = upload(research_csv(&site, &paths("/g/", 3)), 1);
    up.name = Some("Weekly <b>leads</b>".into());
    let job = service.create_job(R, up).await.unwrap();
    service.cancel(R, job.id).await.unwrap();
    wait_for(LONG, "an e-mail", || async { !mail.lock().unwrap().is_empty() }).await;
    let message = mail.lock().unwrap()[0].clone();
    assert!(message.contains("RCPT TO:<ops@example.com>"), "{message}");
    assert!(message.contains("Subject: jobdeck: full research job \"Weekly <b>leads</b>\" was cancelled"), "{message}");
    assert!(message.contains("Content-Type: text/plain"), "{message}");
    assert!(message.contains("Items: 3 in all, 0 completed, 0 failed, 3 pending, 0 processing."), "{message}");
    assert!(message.contains(&format!("Open the job: https://jobs.example.com/processing/{}", job.id)), "{message}");
    let sent = wait_event(&service, R, job.id, EventAction::Notified).await;
    assert_eq!(sent.detail.as_deref(), Some("e-mail job.cancelled sent to ops@example.com"));
    assert_eq!(mail.lock().unwrap().len(), 1, "one e-mail per event");
}

// ---- SPEC section 11: sign-in sessions kept by the store ----

on_both_stores!(signing_out_ends_the_session_on_the_server_and_everywhere_ends_all);

/// Sessions live in the store: signing out ends that session (a copy of its cookie is
/// dead), the others go on; "sign out everywhere" ends them all, and only a signed-in
/// browser can ask for it.
async fn signing_out_ends_the_session_on_the_server_and_everywhere_ends_all(store: Store) {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;
    const TOKEN: &str = "a token of sixteen or more";
    let mut config = store.config();
    config.server.token = TOKEN.into();
    let app = jobdeck::server::app(store.state(config).await);
    let status = |req: Request<Body>| {
        let app = app.clone();
        async move { app.oneshot(req).await.unwrap() }
    };
    let form = |uri: &str, body: String, cookie: Option<&str>| {
        let mut req = Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, cookie);
        }
        req.body(Body::from(body)).unwrap()
    };
    let sign_in = || async {
        let res = status(form("/signin", format!("token={}&next=%2F", TOKEN.replace(' ', "+")), None)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        res.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string()
    };
    let list_with = |cookie: &str| {
        Request::builder().uri("/api/process").header(header::COOKIE, cookie).body(Body::empty()).unwrap()
    };
    let (a, b, c) = (sign_in().await, sign_in().await, sign_in().await);
    assert!(a != b && b != c, "each sign-in is a session of its own");
    for cookie in [&a, &b, &c] {
        assert_eq!(status(list_with(cookie)).await.status(), StatusCode::OK);
    }
    // Sign out A: A (and any copy of its cookie) is dead, B and C go on.
    let out = status(form("/signout", String::new(), Some(&a))).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(status(list_with(&a)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status(list_with(&b)).await.status(), StatusCode::OK);
    // "Everywhere" from a browser that is not signed in ends nothing.
    let _ = status(form("/signout", "everywhere=1".into(), Some(&a))).await;
    assert_eq!(status(list_with(&b)).await.status(), StatusCode::OK);
    // From B: every session ends.
    let _ = status(form("/signout", "everywhere=1".into(), Some(&b))).await;
    for cookie in [&a, &b, &c] {
        assert_eq!(status(list_with(cookie)).await.status(), StatusCode::UNAUTHORIZED);
    }
    // The bearer token is no session and still works.
    let bearer = Request::builder()
        .uri("/api/process")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(status(bearer).await.status(), StatusCode::OK);
}
