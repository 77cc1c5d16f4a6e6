//! The SQLite statements on a job's items: inserting a chunk, linking duplicates,
//! pages and exports, the runner's claim and finish (with the counters and the
//! error-burst rule), putting items back, and retries.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::events::add_event;
use super::jobs::{job_columns, read_roles, require_job};
use super::sql::{now, parse_ts, sql, I_COMPLETED, I_FAILED, I_PENDING, J_COMPLETED, J_PROCESSING, STARTED};
use crate::model::{EventAction, Item, ItemPage, ItemStatus, JobKind, JobStatus, Outcome, OutcomeCounts, Source};
use crate::server::error::AppError;
use crate::server::rows::{ColumnMap, ResearchFields};
use crate::server::store::rules::Streak;
use crate::server::store::types::{ts, ClaimedRow, CleanRow, Finish, Finished, JobColumns, NewItem, ResearchLink};

/// Inserts a chunk of items on one prepared statement. Every item of the SQLite store
/// goes in here: reads in file order find a job's items only between the job's
/// `first_item` and `last_item`, which this keeps up to date.
pub fn insert_items(conn: &Connection, kind: JobKind, job_id: i64, items: &[NewItem]) -> Result<(), AppError> {
    if items.is_empty() {
        return Ok(());
    }
    let s = sql(kind);
    // A job that reads its items' name, website and domain through its roles has them
    // stored once, in the input.
    let roles = read_roles(conn, kind, job_id)?;
    // Ids above every existing one, in file order, and the job's range widened to them
    // in the same transaction: a job's items are always between its first and last.
    let top: i64 = conn.prepare_cached(&s.max_item_id)?.query_row([], |r| r.get(0))?;
    let (first, last) = (top + 1, top + items.len() as i64);
    conn.prepare_cached(&s.widen_range)?.execute(params![job_id, first, last])?;
    let (columns, width) = match kind {
        JobKind::Research => ("id, job_id, line, name, website, domain, input", 7),
        JobKind::Preprocess => ("id, job_id, line, name, website, domain, input, normalized, dedupe_key", 9),
    };
    let mut next_id = first;
    let mut bind = |stmt: &mut rusqlite::CachedStatement<'_>, rows: &[NewItem]| -> rusqlite::Result<()> {
        let mut i = 1;
        for it in rows {
            stmt.raw_bind_parameter(i, next_id)?;
            stmt.raw_bind_parameter(i + 1, job_id)?;
            stmt.raw_bind_parameter(i + 2, it.line)?;
            let (name, website, domain) = match &roles {
                Some(map) => {
                    debug_assert_read_back(map, it);
                    (None, None, None)
                }
                None => (it.name.as_deref(), it.website.as_deref(), it.domain.as_deref()),
            };
            stmt.raw_bind_parameter(i + 3, name)?;
            stmt.raw_bind_parameter(i + 4, website)?;
            stmt.raw_bind_parameter(i + 5, domain)?;
            stmt.raw_bind_parameter(i + 6, &it.input)?;
            if width == 9 {
                stmt.raw_bind_parameter(i + 7, &it.normalized)?;
                stmt.raw_bind_parameter(i + 8, &it.dedupe_key)?;
            }
            next_id += 1;
            i += width;
        }
        stmt.raw_execute()?;
        Ok(())
    };
    // Many rows per statement: a statement's start and reset cost as much as a row.
    let mut groups = items.chunks_exact(INSERT_ROWS);
    if groups.len() > 0 {
        let mut stmt = conn.prepare_cached(&insert_sql(s.items, columns, width, INSERT_ROWS))?;
        for group in groups.by_ref() {
            bind(&mut stmt, group)?;
        }
    }
    let rest = groups.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(&insert_sql(s.items, columns, width, 1))?;
        for row in rest.chunks(1) {
            bind(&mut stmt, row)?;
        }
    }
    if kind == JobKind::Preprocess {
        // Every earlier row of the job is in (earlier chunks, and this one's up to
        // each row): the chunk's duplicates are linked while its pages are at hand,
        // looked for only where the import could not rule one out.
        let mut link = conn.prepare_cached(LINK_DUPLICATE)?;
        for (id, it) in (first..=last).zip(items) {
            if it.dedupe_key.is_some() && !it.new_key {
                link.execute(params![id, job_id])?;
            }
        }
    }
    Ok(())
}

/// Links preprocessing row `?1` of job `?2` to the first row of the job with the same
/// dedupe key, if that is an earlier one; a row that is its key's first is not written.
const LINK_DUPLICATE: &str = "UPDATE preprocessing_results AS r SET duplicate_of = (
         SELECT first.line FROM preprocessing_results AS first
         WHERE first.job_id = r.job_id AND first.dedupe_key = r.dedupe_key
         ORDER BY first.line LIMIT 1)
     WHERE r.id = ?1 AND r.job_id = ?2 AND r.dedupe_key IS NOT NULL
       AND EXISTS (SELECT 1 FROM preprocessing_results AS earlier
                   WHERE earlier.job_id = r.job_id AND earlier.dedupe_key = r.dedupe_key
                     AND earlier.line < r.line)";

/// Every research item is made by [`ColumnMap::research_fields`], so its input gives
/// back its name, website and domain; checked in debug builds.
pub(super) fn debug_assert_read_back(map: &ColumnMap, it: &NewItem) {
    debug_assert_eq!(
        map.research_fields(&serde_json::from_str::<Vec<String>>(&it.input).unwrap_or_default()),
        ResearchFields { name: it.name.clone(), website: it.website.clone(), domain: it.domain.clone() },
        "a research item's fields are not what its input gives"
    );
}

/// Rows per insert statement of [`insert_items`].
pub(super) const INSERT_ROWS: usize = 64;

pub(super) fn insert_sql(table: &str, columns: &str, width: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    format!("INSERT INTO {table} ({columns}) VALUES {}", vec![row; rows].join(", "))
}

/// The smallest and largest item id of a job, for walking it in chunks (other jobs'
/// items may sit between them when imports overlapped).
pub fn item_id_range(conn: &Connection, kind: JobKind, job_id: i64) -> Result<Option<(i64, i64)>, AppError> {
    let range: (Option<i64>, Option<i64>) = conn
        .prepare_cached(&format!("SELECT first_item, last_item FROM {} WHERE id = ?1", sql(kind).jobs))?
        .query_row(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((None, None));
    Ok(range.0.zip(range.1))
}

pub(super) fn item_from_row(columns: &JobColumns, row: &Row<'_>) -> rusqlite::Result<Item> {
    let status: String = row.get(2)?;
    let input_text: String = row.get(8)?;
    let stored = ResearchFields { name: row.get(5)?, website: row.get(6)?, domain: row.get(7)? };
    let (input, ResearchFields { name, website, domain }) = columns.read(&input_text, stored);
    let result: Option<String> = row.get(9)?;
    let normalized: Option<String> = row.get(10)?;
    // Preprocessing rows show their cleaning as soon as they are imported; the
    // liveness check adds to it.
    let result = result.or(normalized).and_then(|s| serde_json::from_str(&s).ok());
    Ok(Item {
        id: row.get(0)?,
        line: row.get(1)?,
        status: status.parse().unwrap_or(ItemStatus::Failed),
        attempts: row.get(3)?,
        error: row.get(4)?,
        name,
        website,
        domain,
        input,
        result,
        duplicate_of: row.get(11)?,
        started_at: parse_ts(row.get(12)?),
        finished_at: parse_ts(row.get(13)?),
    })
}

/// A page of a job's items, optionally of one status, in file order.
pub fn list_items(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    status: Option<ItemStatus>,
    offset: i64,
    limit: i64,
) -> Result<ItemPage, AppError> {
    let job = require_job(conn, kind, job_id)?;
    let columns = job_columns(conn, kind, job_id)?;
    let total = job.count_of(status);
    // Past the last item there is nothing to read: the scan stays within the job.
    let offset = offset.min(total);
    let mut stmt = conn.prepare_cached(&items_query(kind, status))?;
    let items = stmt
        .query_map(params![job_id, limit, offset], |r| item_from_row(&columns, r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ItemPage { items, total, offset, limit })
}

/// The page query of [`list_items`]: the job `?1`'s items, `?2` of them from the
/// `?3`-th, in file order, of one state or all.
pub(super) fn items_query(kind: JobKind, status: Option<ItemStatus>) -> String {
    let s = sql(kind);
    let select = &s.item_select;
    // The state is written into the statement, not bound, and the index's own
    // condition beside it: only then does SQLite use the status index, which leaves
    // pending items out.
    match status {
        None => format!("{select} WHERE {} ORDER BY id LIMIT ?2 OFFSET ?3", s.job_items),
        // Pending items lie at or above the claim cursor, in file order.
        Some(ItemStatus::Pending) => format!(
            "{select} WHERE id >= {} AND id <= {} AND +job_id = ?1 AND status = '{I_PENDING}'
             ORDER BY id LIMIT ?2 OFFSET ?3",
            s.cursor, s.last
        ),
        Some(state) => {
            let state = state.as_str();
            format!("{select} WHERE job_id = ?1 AND status = '{state}' AND {STARTED} ORDER BY id LIMIT ?2 OFFSET ?3")
        }
    }
}

/// A page of a preprocessing job's rows of one outcome, in file order (SPEC section
/// 16), read through the outcome index.
pub fn outcome_items(
    conn: &Connection,
    job_id: i64,
    outcome: Outcome,
    offset: i64,
    limit: i64,
) -> Result<ItemPage, AppError> {
    require_job(conn, JobKind::Preprocess, job_id)?;
    let columns = job_columns(conn, JobKind::Preprocess, job_id)?;
    let s = sql(JobKind::Preprocess);
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM {} WHERE job_id = ?1 AND outcome = ?2 AND outcome IS NOT NULL",
            s.items
        ))?
        .query_row(params![job_id, outcome.as_str()], |r| r.get(0))?;
    let offset = offset.min(total);
    let items = conn
        .prepare_cached(&format!(
            "{} WHERE job_id = ?1 AND outcome = ?4 AND outcome IS NOT NULL ORDER BY id LIMIT ?2 OFFSET ?3",
            s.item_select
        ))?
        .query_map(params![job_id, limit, offset, outcome.as_str()], |r| item_from_row(&columns, r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ItemPage { items, total, offset, limit })
}

/// A preprocessing job's finished rows counted by outcome, from the outcome index.
pub fn outcome_counts(conn: &Connection, job_id: i64) -> Result<OutcomeCounts, AppError> {
    let mut counts = OutcomeCounts::default();
    let mut stmt = conn.prepare_cached(
        "SELECT outcome, COUNT(*) FROM preprocessing_results
         WHERE job_id = ?1 AND outcome IS NOT NULL GROUP BY outcome",
    )?;
    let rows = stmt.query_map(params![job_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (outcome, n) = row?;
        if let Ok(outcome) = outcome.parse::<Outcome>() {
            counts.add(outcome, n);
        }
    }
    Ok(counts)
}

/// The research job a preprocessing job's clean rows went to, while that job is there.
pub fn research_link(conn: &Connection, job_id: i64) -> Result<Option<ResearchLink>, AppError> {
    Ok(conn
        .prepare_cached(
            "SELECT r.id, r.name FROM preprocessing_jobs p JOIN processing_jobs r ON r.id = p.research_job_id
             WHERE p.id = ?1 AND r.hidden IS NULL",
        )?
        .query_row(params![job_id], |r| Ok(ResearchLink { id: r.get(0)?, name: r.get(1)? }))
        .optional()?)
}

/// Links a preprocessing job to the research job made of its clean rows, in the
/// transaction that shows that job (the one writer: no other send comes between);
/// refused (409, naming the job) when its rows went to a research job still there.
pub fn link_research(conn: &Connection, pre_id: i64, research_id: i64) -> Result<(), AppError> {
    require_job(conn, JobKind::Preprocess, pre_id)?;
    if let Some(link) = research_link(conn, pre_id)? {
        return Err(link.refusal());
    }
    conn.prepare_cached("UPDATE preprocessing_jobs SET research_job_id = ?2 WHERE id = ?1")?
        .execute(params![pre_id, research_id])?;
    Ok(())
}

/// The job's column names and up to `limit` items after item id `after`, for
/// streaming an export without holding the job in memory.
pub fn items_after(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    after: i64,
    limit: i64,
) -> Result<(Vec<String>, Vec<Item>), AppError> {
    let columns = job_columns(conn, kind, job_id)?;
    let mut stmt = conn.prepare_cached(&sql(kind).items_after)?;
    let items = stmt
        .query_map(params![job_id, after, limit], |r| item_from_row(&columns, r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((columns.names, items))
}

/// Moves up to `limit` pending items, in file order, to `processing` in one statement
/// that also checks the job is still running and unpaused, so no claim slips past a
/// pause or cancel.
pub fn claim_batch(conn: &Connection, kind: JobKind, job_id: i64, limit: usize) -> Result<Vec<ClaimedRow>, AppError> {
    let s = sql(kind);
    let now = ts(now());
    let mut stmt = conn.prepare_cached(&s.claim_items)?;
    let mut claimed = stmt
        .query_map(params![job_id, now, limit as i64], |r| {
            Ok(ClaimedRow {
                id: r.get(0)?,
                line: r.get(1)?,
                name: r.get(2)?,
                website: r.get(3)?,
                domain: r.get(4)?,
                input: r.get(5)?,
                normalized: r.get(6)?,
                duplicate_of: r.get(7)?,
                lease: 0,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING gives no order; items start in file order.
    claimed.sort_by_key(|c| c.id);
    if let Some(last) = claimed.last() {
        // Everything from the cursor up to the last item taken is now taken or was
        // not pending: the next claim starts after it.
        conn.prepare_cached(&s.claim_job)?.execute(params![job_id, now, claimed.len() as i64, last.id + 1])?;
    }
    Ok(claimed)
}

/// Writes a batch of outcomes and the job's counters together, each item only if it is
/// still `processing` (a cancelled job's late result changes nothing), and marks the
/// job `completed` in the same transaction when nothing is left. Returns how many
/// items it wrote.
///
/// `burst` is the error-burst rule: when that many items have failed in a row (counted
/// across batches, in the job row), the job pauses with the count and the last error
/// as its reason and no resume time; 0 turns it off.
pub fn finish_batch(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    batch: &[Finished],
    burst: u32,
) -> Result<usize, AppError> {
    let s = sql(kind);
    let now = ts(now());
    let mut stmt = conn.prepare_cached(&s.finish_item)?;
    let (mut ok, mut failed) = (0i64, 0i64);
    let mut streak = Streak::default();
    for f in batch {
        let (status, result, error) = match &f.outcome {
            Finish::Completed(v) => (ItemStatus::Completed, Some(v.as_str()), None),
            Finish::Failed(e, detail) => (ItemStatus::Failed, detail.as_deref(), Some(e.as_str())),
        };
        let changed = stmt.execute(params![job_id, f.item_id, status.as_str(), result, error, f.attempts, now])? as i64;
        if changed == 0 {
            continue;
        }
        streak.add(&f.outcome);
        if status == ItemStatus::Completed {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    if ok + failed > 0 {
        conn.prepare_cached(&s.finish_job)?.execute(params![job_id, ok, failed, now])?;
        if conn.prepare_cached(&s.complete_if_done)?.execute(params![job_id, now])? == 1 {
            add_event(conn, kind, job_id, EventAction::Completed, Source::System, None)?;
        } else {
            let paused = match streak.last_error.filter(|_| burst > 0) {
                Some(last) => conn
                    .prepare_cached(&s.error_burst)?
                    .query_row(params![job_id, burst, last, now, streak.leading, streak.peak], |r| r.get(0))
                    .optional()?,
                None => None,
            };
            match paused {
                Some(reason) => {
                    let reason: String = reason;
                    add_event(conn, kind, job_id, EventAction::AutoPaused, Source::ErrorBurst, Some(&reason))?;
                }
                None => {
                    conn.prepare_cached(&s.streak)?.execute(params![job_id, streak.reset, streak.trailing])?;
                }
            }
        }
    }
    Ok((ok + failed) as usize)
}

/// Marks a live job with nothing pending or processing `completed` (a job whose last
/// items were reset and drained elsewhere). Returns whether the job is now over
/// (completed, failed, or gone).
pub fn complete_if_done(conn: &Connection, kind: JobKind, job_id: i64) -> Result<bool, AppError> {
    let s = sql(kind);
    if conn.prepare_cached(&s.complete_if_done)?.execute(params![job_id, ts(now())])? == 1 {
        add_event(conn, kind, job_id, EventAction::Completed, Source::System, None)?;
    }
    let status: Option<String> =
        conn.prepare_cached(&s.job_status)?.query_row(params![job_id], |r| r.get(0)).optional()?;
    Ok(status.is_none_or(|s| s.parse::<JobStatus>().map_or(true, JobStatus::is_terminal)))
}

/// Puts an in-flight item back to `pending` (rate limited, a result that cannot be
/// written), keeping its attempt count. Returns whether it moved.
pub fn requeue_item(conn: &Connection, kind: JobKind, job_id: i64, item_id: i64) -> Result<bool, AppError> {
    let s = sql(kind);
    let changed = conn.prepare_cached(&s.requeue_item)?.execute(params![job_id, item_id])?;
    if changed == 1 {
        conn.prepare_cached(&s.requeue_job)?.execute(params![job_id, ts(now()), item_id])?;
    }
    Ok(changed == 1)
}

/// Every `processing` item of the job back to `pending`, counters to match.
/// Returns how many moved.
pub fn reset_processing(conn: &Connection, kind: JobKind, job_id: i64) -> Result<usize, AppError> {
    let s = sql(kind);
    conn.prepare_cached(&s.lower_to_processing)?.execute(params![job_id])?;
    let moved = conn.prepare_cached(&s.reset_items)?.execute(params![job_id])?;
    conn.prepare_cached(&s.reset_job)?.execute(params![job_id])?;
    Ok(moved)
}

/// Ids of jobs with items in flight (after a crash: all of them need a reset).
pub fn jobs_with_processing(conn: &Connection) -> Result<Vec<(JobKind, i64)>, AppError> {
    let mut out = Vec::new();
    for kind in JobKind::ALL {
        let mut stmt = conn.prepare_cached(&sql(kind).with_processing)?;
        for id in stmt.query_map([], |r| r.get::<_, i64>(0))? {
            out.push((kind, id?));
        }
    }
    Ok(out)
}

/// Up to `limit` clean rows of a preprocessing job after item id `after`.
pub fn clean_rows(conn: &Connection, pre_job_id: i64, after: i64, limit: i64) -> Result<Vec<CleanRow>, AppError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, json_extract(result, '$.company'),
                COALESCE(json_extract(result, '$.liveness.finalUrl'), json_extract(result, '$.website')),
                json_extract(result, '$.domain')
         FROM preprocessing_results
         WHERE job_id = ?1 AND id > ?2 AND status = '{I_COMPLETED}' AND {STARTED} AND duplicate_of IS NULL
           AND json_valid(result) AND json_extract(result, '$.valid') = 1
           AND json_extract(result, '$.liveness.reachable') = 1
         ORDER BY id LIMIT ?3"
    ))?;
    let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let rows = stmt.query_map(params![pre_job_id, after, limit], |r| {
        Ok(CleanRow { id: r.get(0)?, company: text(r.get(1)?), website: text(r.get(2)?), domain: text(r.get(3)?) })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// What a failed item becomes when it is retried: pending, attempts from zero, its
/// error and result cleared.
pub(super) fn retried_item() -> String {
    format!("status = '{I_PENDING}', attempts = 0, error = NULL, result = NULL, started_at = NULL, finished_at = NULL")
}

/// Failed items of a job back to `pending` (attempts from zero, error and result
/// cleared), the job `processing` again; in the caller's transaction. Returns how
/// many items moved.
pub fn retry_failed(conn: &Connection, kind: JobKind, job_id: i64) -> Result<i64, AppError> {
    let s = sql(kind);
    conn.prepare_cached(&s.lower_to_failed)?.execute(params![job_id])?;
    let moved = conn
        .prepare_cached(&format!(
            "UPDATE {} SET {} WHERE job_id = ?1 AND status = '{I_FAILED}' AND {STARTED}",
            s.items,
            retried_item()
        ))?
        .execute(params![job_id])? as i64;
    conn.prepare_cached(&format!(
        "UPDATE {} SET status = '{J_PROCESSING}', completed_at = NULL, paused = 0, paused_reason = NULL,
             resume_at = NULL, pending_count = pending_count + ?2, failed_count = failed_count - ?2, updated_at = ?3
         WHERE id = ?1",
        s.jobs
    ))?
    .execute(params![job_id, moved, ts(now())])?;
    Ok(moved)
}

/// Moves up to `limit` failed items of a visible completed job back to `pending`,
/// counters to match, leaving the job completed (see [`Store::retry_batch`]).
///
/// [`Store::retry_batch`]: crate::server::store::Store::retry_batch
pub fn retry_batch(conn: &Connection, kind: JobKind, job_id: i64, limit: i64) -> Result<i64, AppError> {
    let s = sql(kind);
    // The batch takes the first failed items, so the first of them is where the
    // cursor goes; the job must be completed for either to happen.
    conn.prepare_cached(&s.lower_to_failed)?.execute(params![job_id])?;
    let moved = conn
        .prepare_cached(&format!(
            "UPDATE {items} SET {retried}
             WHERE id IN (SELECT id FROM {items} WHERE job_id = ?1 AND status = '{I_FAILED}' AND {STARTED} ORDER BY id LIMIT ?2)
               AND EXISTS (SELECT 1 FROM {jobs} WHERE id = ?1 AND status = '{J_COMPLETED}' AND hidden IS NULL)",
            items = s.items,
            jobs = s.jobs,
            retried = retried_item()
        ))?
        .execute(params![job_id, limit])? as i64;
    if moved > 0 {
        conn.prepare_cached(&format!(
            "UPDATE {} SET pending_count = pending_count + ?2, failed_count = failed_count - ?2 WHERE id = ?1",
            s.jobs
        ))?
        .execute(params![job_id, moved])?;
    }
    Ok(moved)
}

/// Completed jobs with pending items: a retry that moved items back in batches and
/// stopped (a crash) before the job ran again.
pub fn retries_cut_short(conn: &Connection) -> Result<Vec<(JobKind, i64)>, AppError> {
    let mut out = Vec::new();
    for kind in JobKind::ALL {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id FROM {} WHERE status = '{J_COMPLETED}' AND pending_count > 0 AND hidden IS NULL",
            sql(kind).jobs
        ))?;
        for id in stmt.query_map([], |r| r.get::<_, i64>(0))? {
            out.push((kind, id?));
        }
    }
    Ok(out)
}
