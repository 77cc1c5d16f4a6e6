//! The PostgreSQL store's rules for many workers (SPEC section 10), against a real
//! server: each test in a schema of its own, dropped after. Without a server at
//! `JOBDECK_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! every test says it was skipped and passes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jobdeck::model::JobKind;

use jobdeck::server::store::postgres::sql;
use jobdeck::server::store::types::{ClaimedRow, Finish, Finished, NewItem, NewJob};

mod common;

use common::pg::{url, Schema};

fn items(n: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            line: i as i64 + 2,
            name: Some(format!("Company {i}")),
            website: None,
            domain: None,
            input: format!("[\"Company {i}\"]"),
            normalized: Some("{}".into()),
            ..NewItem::default()
        })
        .collect()
}

/// A visible preprocessing job of `n` items.
async fn job(s: &Schema, n: usize, concurrency: u32) -> i64 {
    let mut c = s.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let new_job = NewJob {
        kind: JobKind::Preprocess,
        name: "job".into(),
        filename: "a.csv".into(),
        concurrency,
        columns: vec!["company".into()],
    };
    let id = sql::insert_job(&tx, &new_job, None).await.unwrap();
    for chunk in items(n).chunks(1000) {
        sql::insert_items(&tx, JobKind::Preprocess, id, chunk).await.unwrap();
    }
    sql::reveal_job(&*tx, JobKind::Preprocess, id, n as i64).await.unwrap();
    tx.commit().await.unwrap();
    id
}

async fn claim(s: &Schema, job: i64, worker: i64, want: usize) -> Vec<ClaimedRow> {
    let mut c = s.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let got = sql::claim_batch(&tx, JobKind::Preprocess, job, worker, want).await.unwrap();
    tx.commit().await.unwrap();
    got
}

async fn finish(s: &Schema, job: i64, worker: i64, leases: &[ClaimedRow]) -> usize {
    let outcomes: Vec<Finished> = leases
        .iter()
        .map(|l| Finished {
            item_id: l.id,
            lease: l.lease,
            attempts: 1,
            outcome: Finish::completed(&serde_json::json!({"ok": true})),
        })
        .collect();
    let mut c = s.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let n = sql::finish_batch(&tx, JobKind::Preprocess, job, worker, &outcomes, 0).await.unwrap();
    tx.commit().await.unwrap();
    n
}

async fn set_paused(s: &Schema, job: i64, paused: bool) -> bool {
    let mut c = s.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let changed = sql::set_paused(&tx, JobKind::Preprocess, job, paused).await.unwrap();
    tx.commit().await.unwrap();
    changed
}

async fn counts(s: &Schema, job: i64) -> sql::Counts {
    sql::counts(&**s.pool.get().await.unwrap(), JobKind::Preprocess, job).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_when_processes_start_together() {
    let Some(s) = Schema::new(false).await else { return };
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut client = s.connect().await;
        tasks.push(tokio::spawn(async move { sql::migrate(&mut client).await.unwrap() }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap();
    }
    assert_eq!(applied, sql::MIGRATIONS.len(), "one starter migrates, the others find nothing to do");
    let c = s.pool.get().await.unwrap();
    let versions: i64 = c.query_one("SELECT count(*) FROM jobdeck_migrations", &[]).await.unwrap().get(0);
    assert_eq!(versions, sql::MIGRATIONS.len() as i64);
    let mut again = s.connect().await;
    assert_eq!(sql::migrate(&mut again).await.unwrap(), 0);
}

/// Three workers claim from one job at once, each up to 4 at a time; the job's
/// concurrency of 6 holds over all of them, and every item is done exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_concurrency_holds_over_all_workers() {
    let Some(s) = Schema::new(true).await else { return };
    let s = Arc::new(s);
    let total = 300;
    let id = job(&s, total, 6).await;
    // Counted from after a claim commits until before its results are sent, a window
    // inside the items' real time in flight: it can only be lower than the truth.
    let in_flight = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (s, in_flight, most) = (s.clone(), in_flight.clone(), most.clone());
        workers.push(tokio::spawn(async move {
            let worker = sql::register_worker(&**s.pool.get().await.unwrap(), &format!("w{w}")).await.unwrap();
            let mut done = 0usize;
            loop {
                let got = claim(&s, id, worker, 4).await;
                if got.is_empty() {
                    if counts(&s, id).await.pending == 0 {
                        return done;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                let now = in_flight.fetch_add(got.len() as i64, Ordering::SeqCst) + got.len() as i64;
                most.fetch_max(now, Ordering::SeqCst);
                // The work itself: a moment, so that claims overlap.
                tokio::time::sleep(Duration::from_millis(1 + (got[0].id % 3) as u64)).await;
                in_flight.fetch_sub(got.len() as i64, Ordering::SeqCst);
                done += finish(&s, id, worker, &got).await;
            }
        }));
    }
    let mut done = 0;
    for w in workers {
        done += w.await.unwrap();
    }
    assert_eq!(done, total, "every item written once");
    assert!(
        most.load(Ordering::SeqCst) <= 6,
        "in flight at most the job's concurrency, saw {}",
        most.load(Ordering::SeqCst)
    );
    let c = counts(&s, id).await;
    assert_eq!(c, sql::Counts { pending: 0, processing: 0, completed: total as i64, failed: 0 });
    let mut client = s.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert!(sql::complete_if_done(&tx, JobKind::Preprocess, id).await.unwrap());
    tx.commit().await.unwrap();
    let row = client
        .query_one(
            "SELECT status, (SELECT count(*) FROM preprocessing_results WHERE job_id = $1 AND attempts = 1 AND status = 'completed')
             FROM preprocessing_jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "completed");
    assert_eq!(row.get::<_, i64>(1), total as i64, "each item completed once, on its first attempt");
}

/// A pause waits for a claim that holds the job, and no claim takes anything after the
/// pause returns; every listening worker hears of it once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_ordered_after_a_claim_in_progress_and_stops_the_next() {
    let Some(s) = Schema::new(true).await else { return };
    let s = Arc::new(s);
    let id = job(&s, 20, 10).await;

    // A worker listening for control changes, on a connection of its own.
    let (listener, mut conn) =
        sql::config(&url(), Some(&s.name)).unwrap().connect(tokio_postgres::NoTls).await.unwrap();
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = heard_tx.send(n.payload().to_string());
            }
        }
    });
    listener.batch_execute(&format!("LISTEN {}", sql::CONTROL_CHANNEL)).await.unwrap();

    // A claim in progress: the job's row is held until it commits.
    let mut holder = s.pool.get().await.unwrap();
    let claiming = holder.transaction().await.unwrap();
    let first = sql::claim_batch(&claiming, JobKind::Preprocess, id, 1, 2).await.unwrap();
    assert_eq!(first.len(), 2);

    let pausing = {
        let s = s.clone();
        tokio::spawn(async move { set_paused(&s, id, true).await })
    };
    // Until the pause is seen waiting for the claim's lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = s
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%paused%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the pause never waited for the claim");
        tokio::task::yield_now().await;
    }
    assert!(!pausing.is_finished(), "the pause cannot return while a claim holds the job");
    claiming.commit().await.unwrap();
    assert!(pausing.await.unwrap(), "the pause went through after the claim");
    let payload = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.unwrap().unwrap();
    assert_eq!(payload, format!("preprocess:{id}"));

    assert!(claim(&s, id, 2, 5).await.is_empty(), "nothing starts after the pause returned");
    assert_eq!(counts(&s, id).await, sql::Counts { pending: 18, processing: 2, completed: 0, failed: 0 });
    assert!(set_paused(&s, id, false).await);
    assert_eq!(claim(&s, id, 2, 5).await.len(), 5, "a resume lets claims go on");
}

/// A worker that falls silent is declared dead by the leader: its items go back to
/// pending without counting an attempt, another worker takes them, and the dead one's
/// late results are discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_items_are_rescued_and_its_late_results_discarded() {
    let Some(s) = Schema::new(true).await else { return };
    let id = job(&s, 10, 5).await;
    let c = s.pool.get().await.unwrap();
    let a = sql::register_worker(&**c, "a").await.unwrap();
    let b = sql::register_worker(&**c, "b").await.unwrap();
    let held = claim(&s, id, a, 3).await;
    assert_eq!(held.len(), 3);
    // `a` has been silent for an hour.
    c.execute("UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", &[&a]).await.unwrap();
    drop(c);

    let mut c = s.pool.get().await.unwrap();
    assert!(sql::acquire_lease(&**c, "leader", b, Duration::from_secs(30)).await.unwrap());
    let tx = c.transaction().await.unwrap();
    let rescued = sql::rescue_dead(&tx, b, Duration::from_secs(30)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rescued.workers, vec![a]);
    assert_eq!(rescued.items, vec![(JobKind::Preprocess, id, 3)]);
    assert!(!sql::heartbeat(&**c, a).await.unwrap(), "the dead worker learns it was removed");
    assert!(sql::heartbeat(&**c, b).await.unwrap());
    assert_eq!(counts(&s, id).await, sql::Counts { pending: 10, processing: 0, completed: 0, failed: 0 });

    let retaken = claim(&s, id, b, 3).await;
    let ids = |l: &[ClaimedRow]| l.iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(&retaken), ids(&held), "the same items, in file order");
    assert_eq!(finish(&s, id, a, &held).await, 0, "the dead worker's late results are discarded");
    assert_eq!(finish(&s, id, b, &retaken).await, 3);
    assert_eq!(counts(&s, id).await, sql::Counts { pending: 7, processing: 0, completed: 3, failed: 0 });
    let attempts: i64 = c
        .query_one("SELECT COALESCE(SUM(attempts), 0)::bigint FROM preprocessing_results WHERE job_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 3, "a rescue does not count as an attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_lease_has_one_holder_until_it_expires() {
    let Some(s) = Schema::new(true).await else { return };
    let c = s.pool.get().await.unwrap();
    let ttl = Duration::from_secs(30);
    assert!(sql::acquire_lease(&**c, "leader", 1, ttl).await.unwrap());
    assert!(!sql::acquire_lease(&**c, "leader", 2, ttl).await.unwrap(), "one holder at a time");
    assert!(sql::acquire_lease(&**c, "leader", 1, ttl).await.unwrap(), "the holder renews");
    // The holder went silent and its lease ran out.
    c.execute("UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = 'leader'", &[]).await.unwrap();
    assert!(sql::acquire_lease(&**c, "leader", 2, ttl).await.unwrap(), "another takes an expired lease");
    assert!(!sql::acquire_lease(&**c, "leader", 1, ttl).await.unwrap());
}

/// An import cut short by its importer's death never shows: the leader turns it into a
/// delete, while an import whose importer is alive is left to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_whose_importer_is_gone_becomes_a_delete() {
    use jobdeck::server::store::postgres::PgStore;
    let Some(s) = Schema::new(false).await else { return };
    let importer = PgStore::open(&url(), Some(&s.name), 4).await.unwrap();
    let leader = PgStore::open(&url(), Some(&s.name), 4).await.unwrap();
    let new_job = || NewJob {
        kind: JobKind::Research,
        name: "import".into(),
        filename: "a.csv".into(),
        concurrency: 2,
        columns: vec!["company".into()],
    };
    let cut_short = importer.insert_job(new_job()).await.unwrap();
    importer.insert_items(JobKind::Research, cut_short, items(10)).await.unwrap();
    let going_on = leader.insert_job(new_job()).await.unwrap();

    let timeout = Duration::from_secs(30);
    let rescued = leader.rescue_if_leader(timeout).await.unwrap().expect("the only process leads");
    assert!(rescued.abandoned.is_empty(), "both importers are alive");
    // The importer dies and is removed.
    importer.leave().await.unwrap();
    let rescued = leader.rescue_if_leader(timeout).await.unwrap().unwrap();
    assert_eq!(rescued.abandoned, vec![(JobKind::Research, cut_short)]);
    while !leader.purge_batch(JobKind::Research, cut_short, 4).await.unwrap() {}
    let c = s.pool.get().await.unwrap();
    let left: i64 = c
        .query_one("SELECT (SELECT count(*) FROM accounts WHERE job_id = $1) + (SELECT count(*) FROM processing_jobs WHERE id = $1)", &[&cut_short])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the cut-short import is gone, items and all");
    let hidden: Option<String> =
        c.query_one("SELECT hidden FROM processing_jobs WHERE id = $1", &[&going_on]).await.unwrap().get(0);
    assert_eq!(hidden.as_deref(), Some("importing"), "a live importer's job is left alone");
}

/// Items go in through `COPY`: every field of every row reads back as written, and a
/// chunk with one bad row (here: a job that does not exist) leaves no row at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_copied_in_read_back_whole_and_a_bad_chunk_leaves_nothing() {
    let Some(s) = Schema::new(true).await else { return };
    let mut written = items(3000);
    for (i, it) in written.iter_mut().enumerate() {
        it.website = (i % 3 == 0).then(|| format!("https://e{i}.example/\tpath\\n"));
        it.domain = (i % 3 == 0).then(|| format!("e{i}.example"));
        it.dedupe_key = (i % 2 == 0).then(|| format!("key \"{i}\""));
        it.input = format!("[\"Company {i}\",\"line\\nbreak, comma; \\\"quote\\\" é\"]");
    }
    let id = job(&s, 0, 1).await;
    let mut c = s.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    sql::insert_items(&tx, JobKind::Preprocess, id, &written).await.unwrap();
    tx.commit().await.unwrap();
    let rows = c
        .query(
            "SELECT line, name, website, domain, input, normalized, dedupe_key FROM preprocessing_results
             WHERE job_id = $1 ORDER BY line",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), written.len());
    for (r, it) in rows.iter().zip(&written) {
        let got = (
            r.get::<_, i64>(0),
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<String>>(2),
            r.get::<_, Option<String>>(3),
            r.get::<_, String>(4),
            r.get::<_, Option<String>>(5),
            r.get::<_, Option<String>>(6),
        );
        let want = (
            it.line,
            it.name.clone(),
            it.website.clone(),
            it.domain.clone(),
            it.input.clone(),
            it.normalized.clone(),
            it.dedupe_key.clone(),
        );
        assert_eq!(got, want);
    }

    let tx = c.transaction().await.unwrap();
    let gone = id + 1_000_000;
    assert!(sql::insert_items(&tx, JobKind::Preprocess, gone, &items(2000)).await.is_err(), "no such job");
    drop(tx);
    let left: i64 =
        c.query_one("SELECT count(*) FROM preprocessing_results WHERE job_id = $1", &[&gone]).await.unwrap().get(0);
    assert_eq!(left, 0, "nothing of the bad chunk stayed");
}
