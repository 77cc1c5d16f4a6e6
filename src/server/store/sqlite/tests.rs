//! The SQLite statements' own tests, on in-memory databases migrated to the latest
//! schema.

use rusqlite::Connection;

use super::db;
use super::events::{claim_outbox, list_events, next_outgoing, set_channels};
use super::items::{
    claim_batch, complete_if_done, finish_batch, insert_items, item_id_range, items_after, items_query, list_items,
    requeue_item, reset_processing, retries_cut_short, retry_batch, retry_failed, INSERT_ROWS,
};
use super::jobs::{
    cancel_job, filtered_jobs, get_job, hide_job, insert_job, job_columns, job_flags, live_jobs, pause_for_rate_limit,
    purge_batch, require_job, reveal_job, set_paused,
};
use super::sql::{now, parse_ts, sql};
use crate::model::{EventAction, Item, ItemStatus, JobFilter, JobKind, JobStatus};
use crate::server::store::rules::{plan_schedule, SchedulePlan};
use crate::server::store::types::{ts, Claimed, Finish, Finished, Hidden, NewItem};

/// Jobs created in the same millisecond, of either kind, still get rising creation
/// times: the dashboard orders both kinds together by them.
#[test]
fn creation_times_rise_over_both_kinds() {
    let mut conn = Connection::open_in_memory().unwrap();
    db::migrations().to_latest(&mut conn).unwrap();
    let mut times = Vec::new();
    for i in 0..50 {
        let kind = if i % 2 == 0 { JobKind::Research } else { JobKind::Preprocess };
        let id = insert_job(&conn, kind, "job", "a.csv", 1, &["company".to_string()]).unwrap();
        let t: String = conn
            .query_row(&format!("SELECT created_at FROM {} WHERE id = ?1", sql(kind).jobs), [id], |r| r.get(0))
            .unwrap();
        times.push(parse_ts(Some(t)).unwrap());
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

/// Every statement prepares against the migrated schema, so a typo in one that
/// only a rare path runs is caught here.
#[test]
fn every_statement_prepares() {
    let mut conn = Connection::open_in_memory().unwrap();
    db::migrations().to_latest(&mut conn).unwrap();
    for kind in JobKind::ALL {
        let s = sql(kind);
        for text in [
            &s.get_job,
            &s.live_jobs,
            &s.columns,
            &s.roles,
            &s.item_select,
            &s.items_after,
            &s.max_item_id,
            &s.widen_range,
            &s.claim_items,
            &s.claim_job,
            &s.finish_item,
            &s.finish_job,
            &s.complete_if_done,
            &s.job_status,
            &s.requeue_item,
            &s.requeue_job,
            &s.reset_items,
            &s.reset_job,
            &s.lower_to_processing,
            &s.lower_to_failed,
            &s.with_processing,
            &s.set_paused,
            &s.rate_limit_pause,
            &s.cancel,
            &s.hide,
            &s.purge_bound,
            &s.purge_items,
            &s.purge_rest,
            &s.purge_advance,
            &s.purge_job,
            &s.flags,
            &s.auto_resume,
        ] {
            conn.prepare(text).unwrap_or_else(|e| panic!("{kind}: {e}\n{text}"));
        }
    }
}

/// How SQLite runs the claims and the item pages: each a search of the job's id
/// range or of the status index, never a scan of the table, though pending items
/// are not in the index.
#[test]
fn claims_and_item_pages_search_never_scan() {
    let conn = fresh();
    let plan = |query: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {query}")).unwrap();
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push(row.get::<_, String>(3).unwrap());
        }
        steps.join("; ")
    };
    for kind in JobKind::ALL {
        let items = sql(kind).items;
        let range = format!("SEARCH {items} USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)");
        let index = format!("INDEX {items}_job_status (job_id=? AND status=?)");
        let s = sql(kind);
        for (query, want) in [
            (s.claim_items.clone(), &range),
            (s.reset_items.clone(), &index),
            (s.lower_to_processing.clone(), &index),
            (s.lower_to_failed.clone(), &index),
            (items_query(kind, None), &range),
            (items_query(kind, Some(ItemStatus::Pending)), &range),
            (items_query(kind, Some(ItemStatus::Processing)), &index),
            (items_query(kind, Some(ItemStatus::Completed)), &index),
            (items_query(kind, Some(ItemStatus::Failed)), &index),
        ] {
            let plan = plan(&query);
            assert!(plan.contains(want.as_str()), "{kind}: {plan}\n{query}");
            assert!(!plan.contains(&format!("SCAN {items}")), "{kind}: {plan}\n{query}");
        }
    }
}

fn job_with_items(conn: &Connection, n: usize) -> i64 {
    let id = insert_job(conn, JobKind::Research, "j", "j.csv", 2, &["company".into()]).unwrap();
    let items: Vec<NewItem> = (0..n)
        .map(|i| NewItem {
            line: i as i64 + 2,
            name: Some(format!("c{i}")),
            input: format!("[\"c{i}\"]"),
            ..Default::default()
        })
        .collect();
    insert_items(conn, JobKind::Research, id, &items).unwrap();
    reveal_job(conn, JobKind::Research, id, n as i64).unwrap();
    id
}

fn fresh() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    db::migrations().to_latest(&mut conn).unwrap();
    conn
}

/// Rows go in many per statement with the rest one by one: every row arrives
/// whole, in file order, whatever the count. A research row's name, website and
/// domain are stored once, in its input, and read back from it.
#[test]
fn items_go_in_whole_and_in_order_in_groups_and_one_by_one() {
    let conn = fresh();
    let columns: Vec<String> = ["company", "website", "domain"].map(String::from).to_vec();
    for kind in JobKind::ALL {
        for n in [1, INSERT_ROWS - 1, INSERT_ROWS, 2 * INSERT_ROWS + 3] {
            let id = insert_job(&conn, kind, "j", "j.csv", 2, &columns).unwrap();
            let items: Vec<NewItem> = (0..n)
                .map(|i| {
                    let name = Some(format!("c{i}"));
                    let website = (i % 2 == 0).then(|| format!("https://c{i}.example/"));
                    let domain = (i % 3 == 0).then(|| format!("c{i}.example"));
                    let cells = [&name, &website, &domain].map(|c| c.clone().unwrap_or_default());
                    NewItem {
                        line: i as i64 + 2,
                        name,
                        website,
                        domain,
                        input: serde_json::to_string(&cells).unwrap(),
                        normalized: (kind == JobKind::Preprocess).then(|| format!("{{\"n\":{i}}}")),
                        dedupe_key: (kind == JobKind::Preprocess).then(|| format!("k{}", i % 5)),
                        new_key: false,
                    }
                })
                .collect();
            insert_items(&conn, kind, id, &items).unwrap();
            let extra = if kind == JobKind::Preprocess { "normalized, dedupe_key" } else { "NULL, NULL" };
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT line, name, website, domain, input, {extra} FROM {} WHERE job_id = ?1 ORDER BY id",
                    sql(kind).items
                ))
                .unwrap();
            let stored: Vec<NewItem> = stmt
                .query_map([id], |r| {
                    Ok(NewItem {
                        line: r.get(0)?,
                        name: r.get(1)?,
                        website: r.get(2)?,
                        domain: r.get(3)?,
                        input: r.get(4)?,
                        normalized: r.get(5)?,
                        dedupe_key: r.get(6)?,
                        new_key: false,
                    })
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let expected: Vec<NewItem> = match kind {
                JobKind::Research => {
                    items.iter().map(|it| NewItem { name: None, website: None, domain: None, ..it.clone() }).collect()
                }
                JobKind::Preprocess => items.clone(),
            };
            assert_eq!(stored, expected, "{kind} with {n} rows");
            reveal_job(&conn, kind, id, n as i64).unwrap();
            let read: Vec<_> = list_items(&conn, kind, id, None, 0, n as i64)
                .unwrap()
                .items
                .into_iter()
                .map(|it| (it.line, it.name, it.website, it.domain))
                .collect();
            let given: Vec<_> =
                items.iter().map(|it| (it.line, it.name.clone(), it.website.clone(), it.domain.clone())).collect();
            assert_eq!(read, given, "{kind} with {n} rows, read back");
        }
    }
}

#[test]
fn an_importing_job_is_invisible_until_revealed() {
    let conn = fresh();
    let id = insert_job(&conn, JobKind::Research, "j", "j.csv", 2, &["company".into()]).unwrap();
    assert!(get_job(&conn, JobKind::Research, id).unwrap().is_none());
    assert!(filtered_jobs(&conn, JobKind::Research, &JobFilter::default(), 10).unwrap().0.is_empty());
    assert!(live_jobs(&conn).unwrap().is_empty());
    assert!(job_flags(&conn, JobKind::Research, id).unwrap().is_none());
    assert!(claim_batch(&conn, JobKind::Research, id, 1).unwrap().is_empty());
    reveal_job(&conn, JobKind::Research, id, 0).unwrap();
    assert!(get_job(&conn, JobKind::Research, id).unwrap().is_some());
}

#[test]
fn a_rate_limit_never_takes_over_a_persons_pause() {
    let conn = fresh();
    let id = job_with_items(&conn, 3);
    let k = JobKind::Research;
    let later = now() + chrono::Duration::seconds(30);
    // A person paused: the rate limit leaves the job alone.
    set_paused(&conn, k, id, true).unwrap();
    assert!(!pause_for_rate_limit(&conn, k, id, "429", later).unwrap());
    let job = require_job(&conn, k, id).unwrap();
    assert!(job.paused && job.resume_at.is_none() && job.paused_reason.is_none());
    // Unpaused: the rate limit pauses with its reason and time; a second, shorter
    // one keeps the later time.
    set_paused(&conn, k, id, false).unwrap();
    assert!(pause_for_rate_limit(&conn, k, id, "429 first", later).unwrap());
    assert!(pause_for_rate_limit(&conn, k, id, "429 second", later - chrono::Duration::seconds(20)).unwrap());
    let job = require_job(&conn, k, id).unwrap();
    assert_eq!(job.resume_at.map(ts), Some(ts(later)));
    assert_eq!(job.paused_reason.as_deref(), Some("429 second"));
    let autos = list_events(&conn, k, id, None, 50).unwrap();
    let autos = autos.iter().filter(|e| e.action == EventAction::AutoPaused).count();
    assert_eq!(autos, 1, "one pause, one event (and one notification), however many 429s");
    // A person's pause over it makes it theirs: no timer lifts it any more.
    set_paused(&conn, k, id, true).unwrap();
    let job = require_job(&conn, k, id).unwrap();
    assert!(job.paused && job.resume_at.is_none());
}

#[test]
fn an_error_burst_counts_runs_inside_a_batch_and_across_batches() {
    let k = JobKind::Research;
    let outcome = |ok: bool| if ok { Finish::Completed("{}".into()) } else { Finish::Failed("HTTP 404".into(), None) };
    // Claims `pattern.len()` items and finishes them in one batch, in that order.
    let run = |conn: &Connection, id: i64, pattern: &[bool]| {
        let claimed = claim_batch(conn, k, id, pattern.len()).unwrap();
        let batch: Vec<Finished> = claimed
            .iter()
            .zip(pattern)
            .map(|(c, ok)| Finished { item_id: c.id, lease: c.lease, attempts: 1, outcome: outcome(*ok) })
            .collect();
        finish_batch(conn, k, id, &batch, 3).unwrap();
        require_job(conn, k, id).unwrap()
    };
    // Three failures inside one batch, a success after them: still a burst.
    let conn = fresh();
    let id = job_with_items(&conn, 10);
    let job = run(&conn, id, &[true, false, false, false, true]);
    assert!(job.paused, "{job:?}");
    assert!(job.paused_reason.unwrap().starts_with("3 items failed in a row; the last: HTTP 404"));
    // Two at the end of one batch and one at the start of the next: a burst too.
    let conn = fresh();
    let id = job_with_items(&conn, 10);
    assert!(!run(&conn, id, &[false, true, false, false]).paused);
    let job = run(&conn, id, &[false, true]);
    assert!(job.paused && job.paused_reason.unwrap().starts_with("3 items"));
    // Failures broken up by successes: never.
    let conn = fresh();
    let id = job_with_items(&conn, 10);
    assert!(!run(&conn, id, &[false, false, true, false, false, true, false, false]).paused);
    // The last items of a job: nothing left to hold back, so no pause.
    let conn = fresh();
    let id = job_with_items(&conn, 4);
    run(&conn, id, &[true]);
    let job = run(&conn, id, &[false, false, false]);
    assert!(!job.paused && job.status == JobStatus::Completed, "{job:?}");
}

#[test]
fn a_due_schedule_fires_in_time_order_and_respects_a_rate_limit() {
    let now = now();
    let ago = |s| Some(now - chrono::Duration::seconds(s));
    let later = Some(now + chrono::Duration::hours(1));
    let actions = |plan: &SchedulePlan| plan.steps.iter().map(|s| (s.set_paused, s.action)).collect::<Vec<_>>();
    // Both passed while down: the pause (earlier) first, then the resume decides.
    let plan = plan_schedule(ago(20), ago(10), now, false, false);
    assert_eq!(plan.keep, (None, None));
    assert_eq!(actions(&plan), [(Some(true), EventAction::Paused), (Some(false), EventAction::Resumed)]);
    // A resume before a pause: the job ends paused.
    let plan = plan_schedule(ago(10), ago(20), now, true, false);
    assert_eq!(actions(&plan), [(Some(false), EventAction::Resumed), (Some(true), EventAction::Paused)]);
    // A future time stays set and does not fire.
    let plan = plan_schedule(ago(1), later, now, false, false);
    assert_eq!((plan.keep, actions(&plan)), ((None, later), vec![(Some(true), EventAction::Paused)]));
    // A scheduled pause takes over a rate limit's; a scheduled resume leaves it be.
    assert_eq!(actions(&plan_schedule(ago(1), None, now, true, true)), [(Some(true), EventAction::Paused)]);
    let left = plan_schedule(None, ago(1), now, true, true);
    assert_eq!(actions(&left), [(None, EventAction::Scheduled)]);
    assert!(left.steps[0].detail.contains("rate-limit pause to lift at its own time"));
    // Nothing to do: logged, not acted on.
    let noop = plan_schedule(ago(1), None, now, true, false);
    assert_eq!(actions(&noop), [(None, EventAction::Scheduled)]);
    assert!(noop.steps[0].detail.ends_with("found the job already paused"));
}

#[test]
fn notifications_wait_for_a_channel_this_server_delivers() {
    let conn = fresh();
    let id = job_with_items(&conn, 1);
    set_channels(&conn, &["webhook"]).unwrap();
    let k = JobKind::Research;
    pause_for_rate_limit(&conn, k, id, "429", now() + chrono::Duration::seconds(30)).unwrap();
    let queued: Vec<String> = conn
        .prepare("SELECT channel FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(queued, ["webhook"], "one row per configured channel");
    assert!(next_outgoing(&conn).unwrap().is_some());
    // Started again with e-mail only: the webhook row waits, untouched and unseen.
    set_channels(&conn, &["email"]).unwrap();
    assert_eq!(next_outgoing(&conn).unwrap(), None);
    let later = now() + chrono::Duration::minutes(1);
    assert!(claim_outbox(&conn, later, later, 10).unwrap().is_empty());
    set_channels(&conn, &["webhook"]).unwrap();
    let taken = claim_outbox(&conn, later, later + chrono::Duration::minutes(1), 10).unwrap();
    assert_eq!(taken.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&taken[0].payload).unwrap();
    assert_eq!((body["event"].as_str(), body["job"]["id"].as_i64()), (Some("job.auto_paused"), Some(id)));
}

#[test]
fn cancel_clears_the_pause_and_its_reason() {
    let conn = fresh();
    let id = job_with_items(&conn, 2);
    let k = JobKind::Research;
    assert!(pause_for_rate_limit(&conn, k, id, "LLM rate limit", now() + chrono::Duration::seconds(5)).unwrap());
    cancel_job(&conn, k, id).unwrap();
    let job = require_job(&conn, k, id).unwrap();
    assert!(job.cancelled && !job.paused);
    assert_eq!((job.paused_reason, job.resume_at), (None, None));
}

#[test]
fn batches_claim_in_file_order_respect_a_pause_and_write_only_what_is_still_in_flight() {
    let conn = fresh();
    let k = JobKind::Research;
    let id = job_with_items(&conn, 5);
    let columns = job_columns(&conn, k, id).unwrap();
    let claimed: Vec<Claimed> =
        claim_batch(&conn, k, id, 3).unwrap().into_iter().map(|r| r.into_claimed(&columns)).collect();
    assert_eq!(claimed.iter().map(|c| c.line).collect::<Vec<_>>(), [2, 3, 4]);
    let job = require_job(&conn, k, id).unwrap();
    assert_eq!((job.pending, job.processing), (2, 3));
    // Paused: a claim takes nothing.
    set_paused(&conn, k, id, true).unwrap();
    assert!(claim_batch(&conn, k, id, 2).unwrap().is_empty());
    // One of the three was put back meanwhile (a cancel, a reset): its late result
    // is not written and the counters count only what was.
    requeue_item(&conn, k, id, claimed[1].id).unwrap();
    let batch: Vec<Finished> = claimed
        .iter()
        .map(|c| Finished { item_id: c.id, lease: 0, attempts: 1, outcome: Finish::completed(&serde_json::json!({})) })
        .collect();
    assert_eq!(finish_batch(&conn, k, id, &batch, 0).unwrap(), 2);
    let job = require_job(&conn, k, id).unwrap();
    assert_eq!((job.pending, job.processing, job.completed, job.failed), (3, 0, 2, 0));
    // The rest, unpaused: the last write completes the job in the same transaction.
    set_paused(&conn, k, id, false).unwrap();
    let rest = claim_batch(&conn, k, id, 10).unwrap();
    assert_eq!(rest.len(), 3);
    let batch: Vec<Finished> = rest
        .iter()
        .map(|c| Finished { item_id: c.id, lease: 0, attempts: 2, outcome: Finish::Failed("no".into(), None) })
        .collect();
    assert_eq!(finish_batch(&conn, k, id, &batch, 0).unwrap(), 3);
    let job = require_job(&conn, k, id).unwrap();
    assert_eq!((job.status, job.completed, job.failed), (JobStatus::Completed, 2, 3));
}

/// A retry's batches move failed items back while the job stays completed (nothing
/// may start), counters exact after each; a completed job left with pending items
/// (a crash between batches) is found for start-up to finish.
#[test]
fn a_retry_moves_failed_items_back_in_batches_and_a_cut_short_one_is_found() {
    let conn = fresh();
    let id = job_with_items(&conn, 12);
    let claimed = claim_batch(&conn, JobKind::Research, id, 12).unwrap();
    let batch: Vec<Finished> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| Finished {
            item_id: c.id,
            lease: 0,
            attempts: 1,
            outcome: if i % 2 == 0 {
                Finish::Failed("HTTP 503".into(), None)
            } else {
                Finish::completed(&serde_json::json!({}))
            },
        })
        .collect();
    finish_batch(&conn, JobKind::Research, id, &batch, 0).unwrap();
    let job = require_job(&conn, JobKind::Research, id).unwrap();
    assert_eq!((job.status, job.completed, job.failed), (JobStatus::Completed, 6, 6));
    assert!(retries_cut_short(&conn).unwrap().is_empty());

    assert_eq!(retry_batch(&conn, JobKind::Research, id, 4).unwrap(), 4);
    let job = require_job(&conn, JobKind::Research, id).unwrap();
    assert_eq!((job.status, job.pending, job.failed, job.completed), (JobStatus::Completed, 4, 2, 6));
    assert!(claim_batch(&conn, JobKind::Research, id, 5).unwrap().is_empty(), "nothing starts mid-retry");
    assert_eq!(retries_cut_short(&conn).unwrap(), vec![(JobKind::Research, id)]);

    assert_eq!(retry_batch(&conn, JobKind::Research, id, 4).unwrap(), 2);
    assert_eq!(retry_batch(&conn, JobKind::Research, id, 4).unwrap(), 0);
    assert_eq!(retry_failed(&conn, JobKind::Research, id).unwrap(), 0);
    let job = require_job(&conn, JobKind::Research, id).unwrap();
    assert_eq!((job.status, job.pending, job.failed, job.completed), (JobStatus::Processing, 6, 0, 6));
    assert_eq!(claim_batch(&conn, JobKind::Research, id, 10).unwrap().len(), 6, "only the failed ones run again");
    assert!(retries_cut_short(&conn).unwrap().is_empty());
}

/// Two imports whose chunks alternate: each job reads, exports and deletes exactly
/// its own items in file order, though the other's sit between them.
#[test]
fn interleaved_imports_keep_each_job_to_its_own_items() {
    let conn = fresh();
    let k = JobKind::Research;
    let a = insert_job(&conn, k, "a", "a.csv", 2, &["company".into()]).unwrap();
    let b = insert_job(&conn, k, "b", "b.csv", 2, &["company".into()]).unwrap();
    let chunk = |from: i64, n: i64| -> Vec<NewItem> {
        (from..from + n)
            .map(|line| NewItem {
                line,
                name: Some(format!("row {line}")),
                input: format!("[\"row {line}\"]"),
                ..Default::default()
            })
            .collect()
    };
    let (mut next_a, mut next_b) = (2, 2);
    for n in [30, 7, 1, 12] {
        insert_items(&conn, k, a, &chunk(next_a, n)).unwrap();
        next_a += n;
        insert_items(&conn, k, b, &chunk(next_b, n + 3)).unwrap();
        next_b += n + 3;
    }
    reveal_job(&conn, k, a, next_a - 2).unwrap();
    reveal_job(&conn, k, b, next_b - 2).unwrap();
    let lines = |items: &[Item]| items.iter().map(|i| i.line).collect::<Vec<_>>();
    // Pages without a status filter, and the export's walk.
    let page = list_items(&conn, k, a, None, 20, 20).unwrap();
    assert_eq!(lines(&page.items), (22..42).collect::<Vec<_>>());
    let (_, all_b) = items_after(&conn, k, b, 0, 1000).unwrap();
    assert_eq!(lines(&all_b), (2..next_b).collect::<Vec<_>>());
    let after = all_b[10].id;
    let (_, rest) = items_after(&conn, k, b, after, 5).unwrap();
    assert_eq!(lines(&rest), (13..18).collect::<Vec<_>>());
    // Deleting one leaves the other whole.
    let (_, all_a) = items_after(&conn, k, a, 0, 1000).unwrap();
    hide_job(&conn, k, a, Hidden::Deleting).unwrap();
    assert!(!purge_batch(&conn, k, a, 8).unwrap());
    // The next batch starts right after the last one.
    assert_eq!(item_id_range(&conn, k, a).unwrap().map(|r| r.0), Some(all_a[8].id));
    while !purge_batch(&conn, k, a, 8).unwrap() {}
    let left: i64 = conn.query_row("SELECT COUNT(*) FROM accounts WHERE job_id = ?1", [a], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
    let (_, still) = items_after(&conn, k, b, 0, 1000).unwrap();
    assert_eq!(lines(&still), (2..next_b).collect::<Vec<_>>());
    // A later import starts above everything, even where deleted items were.
    let c = insert_job(&conn, k, "c", "c.csv", 2, &["company".into()]).unwrap();
    insert_items(&conn, k, c, &chunk(2, 4)).unwrap();
    assert_eq!(item_id_range(&conn, k, c).unwrap().map(|(f, l)| l - f), Some(3));
    assert!(item_id_range(&conn, k, c).unwrap().unwrap().0 > still.last().unwrap().id);
}

/// One step of [`claims_through_the_cursor_take_exactly_the_first_pending_items`].
#[derive(Debug, Clone)]
enum Step {
    Claim(usize),
    /// Finish the in-flight items whose position among them is in the mask
    /// (bit set: completed, else failed when `fail` holds that bit).
    Finish {
        mask: u32,
        fail: u32,
    },
    Requeue(usize),
    Reset,
    RetryBatch(i64),
    RetryAll,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1usize..6).prop_map(Step::Claim),
        3 => (any::<u32>(), any::<u32>()).prop_map(|(mask, fail)| Step::Finish { mask, fail }),
        1 => (0usize..8).prop_map(Step::Requeue),
        1 => Just(Step::Reset),
        1 => (1i64..5).prop_map(Step::RetryBatch),
        1 => Just(Step::RetryAll),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Pending items are not in the status index; claims find them through the
    /// job's cursor. Whatever puts items back (a requeue, a reset after a crash, a
    /// retry in batches or whole), every claim takes exactly the first pending
    /// items in file order, the pending page lists exactly the pending items, and
    /// the counters match, also with another job's rows among the job's own.
    #[test]
    fn claims_through_the_cursor_take_exactly_the_first_pending_items(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        use proptest::{prop_assert, prop_assert_eq};
        use std::collections::BTreeMap;
        let conn = fresh();
        let k = JobKind::Research;
        let item = |line: i64| NewItem {
            line,
            name: Some(format!("c{line}")),
            input: format!("[\"c{line}\"]"),
            ..Default::default()
        };
        let id = insert_job(&conn, k, "j", "j.csv", 2, &["company".into()]).unwrap();
        let other = insert_job(&conn, k, "o", "o.csv", 2, &["company".into()]).unwrap();
        // The job's rows in two runs with the other job's between them.
        insert_items(&conn, k, id, &(2..12).map(item).collect::<Vec<_>>()).unwrap();
        insert_items(&conn, k, other, &(2..7).map(item).collect::<Vec<_>>()).unwrap();
        insert_items(&conn, k, id, &(12..22).map(item).collect::<Vec<_>>()).unwrap();
        reveal_job(&conn, k, id, 20).unwrap();
        reveal_job(&conn, k, other, 5).unwrap();
        let (_, all) = items_after(&conn, k, id, 0, 100).unwrap();
        // The model: each item's state, by id (file order).
        let mut model: BTreeMap<i64, ItemStatus> = all.iter().map(|i| (i.id, ItemStatus::Pending)).collect();
        let of = |model: &BTreeMap<i64, ItemStatus>, state: ItemStatus| -> Vec<i64> {
            model.iter().filter(|(_, s)| **s == state).map(|(id, _)| *id).collect()
        };
        for step in steps {
            let completed = require_job(&conn, k, id).unwrap().status == JobStatus::Completed;
            match step {
                Step::Claim(n) => {
                    let got: Vec<i64> = claim_batch(&conn, k, id, n).unwrap().iter().map(|c| c.id).collect();
                    let want: Vec<i64> = if completed {
                        Vec::new()
                    } else {
                        of(&model, ItemStatus::Pending).into_iter().take(n).collect()
                    };
                    prop_assert_eq!(&got, &want);
                    for i in got {
                        model.insert(i, ItemStatus::Processing);
                    }
                }
                Step::Finish { mask, fail } => {
                    let batch: Vec<Finished> = of(&model, ItemStatus::Processing)
                        .into_iter()
                        .enumerate()
                        .filter(|(n, _)| mask & (1 << (n % 32)) != 0)
                        .map(|(n, item_id)| {
                            let failed = fail & (1 << (n % 32)) != 0;
                            model.insert(item_id, if failed { ItemStatus::Failed } else { ItemStatus::Completed });
                            Finished {
                                item_id,
                                lease: 0,
                                attempts: 1,
                                outcome: if failed {
                                    Finish::Failed("HTTP 503".into(), None)
                                } else {
                                    Finish::completed(&serde_json::json!({}))
                                },
                            }
                        })
                        .collect();
                    prop_assert_eq!(finish_batch(&conn, k, id, &batch, 0).unwrap(), batch.len());
                }
                Step::Requeue(n) => {
                    let flying = of(&model, ItemStatus::Processing);
                    if let Some(&item_id) = flying.get(n % flying.len().max(1)) {
                        prop_assert!(requeue_item(&conn, k, id, item_id).unwrap());
                        model.insert(item_id, ItemStatus::Pending);
                    }
                }
                Step::Reset => {
                    let flying = of(&model, ItemStatus::Processing);
                    prop_assert_eq!(reset_processing(&conn, k, id).unwrap(), flying.len());
                    for i in flying {
                        model.insert(i, ItemStatus::Pending);
                    }
                    complete_if_done(&conn, k, id).unwrap();
                }
                Step::RetryBatch(n) => {
                    let moved = retry_batch(&conn, k, id, n).unwrap();
                    let want: Vec<i64> = if completed {
                        of(&model, ItemStatus::Failed).into_iter().take(n as usize).collect()
                    } else {
                        Vec::new()
                    };
                    prop_assert_eq!(moved, want.len() as i64);
                    for i in want {
                        model.insert(i, ItemStatus::Pending);
                    }
                    // The job runs again once the last batch is back, as a retry
                    // does (or start-up, for a retry cut short).
                    if completed
                        && of(&model, ItemStatus::Failed).is_empty()
                        && !of(&model, ItemStatus::Pending).is_empty()
                    {
                        prop_assert_eq!(retry_failed(&conn, k, id).unwrap(), 0);
                    }
                }
                Step::RetryAll => {
                    if completed && !of(&model, ItemStatus::Failed).is_empty() {
                        let failed = of(&model, ItemStatus::Failed);
                        prop_assert_eq!(retry_failed(&conn, k, id).unwrap(), failed.len() as i64);
                        for i in failed {
                            model.insert(i, ItemStatus::Pending);
                        }
                    }
                }
            }
            let job = require_job(&conn, k, id).unwrap();
            let count = |state| of(&model, state).len() as i64;
            prop_assert_eq!(
                (job.pending, job.processing, job.completed, job.failed),
                (
                    count(ItemStatus::Pending),
                    count(ItemStatus::Processing),
                    count(ItemStatus::Completed),
                    count(ItemStatus::Failed)
                )
            );
            for state in [ItemStatus::Pending, ItemStatus::Processing, ItemStatus::Completed, ItemStatus::Failed] {
                let page = list_items(&conn, k, id, Some(state), 0, 100).unwrap();
                let ids: Vec<i64> = page.items.iter().map(|i| i.id).collect();
                prop_assert_eq!(ids, of(&model, state), "{:?} page", state);
            }
        }
        // The other job was never touched.
        let rest = claim_batch(&conn, k, other, 10).unwrap();
        prop_assert_eq!(rest.len(), 5);
    }
}

#[test]
fn a_purge_goes_in_batches_then_removes_the_job() {
    let conn = fresh();
    let id = job_with_items(&conn, 25);
    let k = JobKind::Research;
    hide_job(&conn, k, id, Hidden::Deleting).unwrap();
    assert!(get_job(&conn, k, id).unwrap().is_none(), "gone from reads at once");
    let mut batches = 0;
    while !purge_batch(&conn, k, id, 10).unwrap() {
        batches += 1;
    }
    assert_eq!(batches, 2);
    let left: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0)).unwrap();
    let jobs: i64 = conn.query_row("SELECT COUNT(*) FROM processing_jobs", [], |r| r.get(0)).unwrap();
    assert_eq!((left, jobs), (0, 0));
}
