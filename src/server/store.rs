//! The SQLite store's statements (PostgreSQL's are under `pg/`). Functions take a
//! connection or transaction and never decide business rules; the service and the
//! runner do. The rows both stores speak are in [`types`], the decisions both apply in
//! [`rules`]; both are re-exported here while the rest of the layout follows.
//!
//! The statements are built once per kind of job ([`sql`]) from the table names and
//! the state spellings of [`crate::model`], so no state is written as a literal here.

use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::error::AppError;

pub mod rules;
pub mod sessions;
pub mod types;

use super::rows::{ColumnMap, ResearchFields};
use crate::model::{
    Archived, EventAction, Item, ItemPage, ItemStatus, Job, JobEvent, JobFilter, JobKind, JobStatus, Phase, Source,
};
pub use rules::*;
pub use types::*;

/// Current time as stored: RFC 3339, UTC, milliseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(e.to_string()))
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc))
}

const J_PENDING: &str = JobStatus::Pending.as_str();
const J_PROCESSING: &str = JobStatus::Processing.as_str();
const J_COMPLETED: &str = JobStatus::Completed.as_str();
const J_FAILED: &str = JobStatus::Failed.as_str();
const I_PENDING: &str = ItemStatus::Pending.as_str();
const I_PROCESSING: &str = ItemStatus::Processing.as_str();
const I_COMPLETED: &str = ItemStatus::Completed.as_str();
const I_FAILED: &str = ItemStatus::Failed.as_str();
const DELETING: &str = Hidden::Deleting.as_str();
/// The condition of the status index (migration 0008), which holds only items that
/// have started. SQLite uses a partial index only for a query that names its
/// condition itself (`status = 'failed'` alone is not enough), so every lookup by a
/// started state says it too.
const STARTED: &str = "status <> 'pending'";
/// A job's claim cursor (migration 0008), in a statement on its row: no pending item
/// of the job has a smaller id. NULL stands for the job's first item.
const CURSOR: &str = "COALESCE(next_item, first_item)";

const JOB_COLUMNS: &str = "id, name, filename, status, paused, concurrency, total, pending_count, \
    processing_count, completed_count, failed_count, created_at, started_at, updated_at, \
    completed_at, cancelled_at, paused_reason, resume_at, archived_at, scheduled_pause_at, scheduled_resume_at";

/// The statements of one kind of job, built once.
pub struct Sql {
    jobs: &'static str,
    items: &'static str,
    get_job: String,
    live_jobs: String,
    columns: String,
    /// A job's roles, also while it is hidden (an import in progress).
    roles: String,
    item_select: String,
    items_after: String,
    max_item_id: String,
    widen_range: String,
    /// The condition that takes a job's items (job id `?1`) in file order: a scan of
    /// the table between the job's first and last item id, never the index.
    job_items: String,
    /// The job's (`?1`) claim cursor and last item id, as subqueries.
    cursor: String,
    last: String,
    claim_items: String,
    claim_job: String,
    finish_item: String,
    finish_job: String,
    complete_if_done: String,
    job_status: String,
    requeue_item: String,
    requeue_job: String,
    reset_items: String,
    reset_job: String,
    /// The claim cursor lowered to the job's first processing item, or to its first
    /// failed item when the job is completed (a retry).
    lower_to_processing: String,
    lower_to_failed: String,
    with_processing: String,
    set_paused: String,
    rate_limit_pause: String,
    cancel: String,
    hide: String,
    purge_bound: String,
    purge_items: String,
    purge_rest: String,
    purge_advance: String,
    purge_job: String,
    flags: String,
    auto_resume: String,
    streak: String,
    error_burst: String,
    due_schedules: String,
    next_schedule: String,
    set_schedule: String,
}

impl Sql {
    fn new(kind: JobKind) -> Self {
        let (jobs, items) = kind.tables();
        let extra = match kind {
            JobKind::Research => "NULL, NULL",
            JobKind::Preprocess => "normalized, duplicate_of",
        };
        let live = format!("status IN ('{J_PENDING}', '{J_PROCESSING}')");
        let visible = "hidden IS NULL";
        // A live job with nothing left pending or in flight is done.
        let done = format!("{live} AND pending_count = 0 AND processing_count = 0 AND {visible}");
        // A job's items (job id `?1`) lie between these two ids. `+job_id`: without the
        // plus, SQLite would rather look the items up in the (job_id, status, id) index
        // and then sort them all.
        let first = format!("(SELECT first_item FROM {jobs} WHERE id = ?1)");
        let last = format!("(SELECT last_item FROM {jobs} WHERE id = ?1)");
        let job_items = format!("id BETWEEN {first} AND {last} AND +job_id = ?1");
        let cursor = format!("(SELECT {CURSOR} FROM {jobs} WHERE id = ?1)");
        // Lowers the cursor of the job, if it is `{gate}`, to its first item in state
        // `{state}`, before those items go back to pending; unchanged when there is none.
        let lower_cursor = |state: &str, gate: &str| {
            format!(
                "UPDATE {jobs} SET next_item = MIN({CURSOR},
                     COALESCE((SELECT MIN(id) FROM {items} WHERE job_id = ?1 AND status = '{state}' AND {STARTED}), {CURSOR}))
                 WHERE id = ?1 AND {gate}"
            )
        };
        let item_select = format!(
            "SELECT id, line, status, attempts, error, name, website, domain, input, result, {extra}, \
             started_at, finished_at FROM {items}"
        );
        Self {
            jobs,
            items,
            get_job: format!("SELECT {JOB_COLUMNS} FROM {jobs} WHERE id = ?1 AND {visible}"),
            live_jobs: format!("SELECT id FROM {jobs} WHERE {live} AND {visible} ORDER BY id"),
            columns: format!("SELECT columns, roles FROM {jobs} WHERE id = ?1 AND {visible}"),
            roles: format!("SELECT roles FROM {jobs} WHERE id = ?1"),
            // One lower bound, so the scan starts at the cursor `?2`: with `id > ?2`
            // beside the range's own lower end, SQLite would start at the job's first
            // item every time.
            items_after: format!(
                "{item_select} WHERE id > MAX(?2, {first} - 1) AND id <= {last} AND +job_id = ?1 ORDER BY id LIMIT ?3"
            ),
            item_select,
            job_items: job_items.clone(),
            cursor: cursor.clone(),
            last: last.clone(),
            // Ids above every existing one, for the next chunk of an import.
            max_item_id: format!("SELECT COALESCE(MAX(id), 0) FROM {items}"),
            widen_range: format!(
                "UPDATE {jobs} SET first_item = MIN(COALESCE(first_item, ?2), ?2), last_item = MAX(COALESCE(last_item, ?3), ?3)
                 WHERE id = ?1"
            ),
            claim_items: format!(
                "UPDATE {items} SET status = '{I_PROCESSING}', started_at = ?2
                 WHERE id IN (SELECT id FROM {items} WHERE id >= {cursor} AND id <= {last} AND +job_id = ?1
                                AND status = '{I_PENDING}' ORDER BY id LIMIT ?3)
                   AND EXISTS (SELECT 1 FROM {jobs} WHERE id = ?1 AND {live} AND paused = 0 AND {visible})
                 RETURNING id, line, name, website, domain, input, {extra}"
            ),
            claim_job: format!(
                "UPDATE {jobs} SET pending_count = pending_count - ?3, processing_count = processing_count + ?3,
                     status = '{J_PROCESSING}', started_at = COALESCE(started_at, ?2), updated_at = ?2, next_item = ?4
                 WHERE id = ?1"
            ),
            finish_item: format!(
                "UPDATE {items} SET status = ?3, result = ?4, error = ?5, attempts = attempts + ?6, finished_at = ?7
                 WHERE id = ?2 AND job_id = ?1 AND status = '{I_PROCESSING}'"
            ),
            finish_job: format!(
                "UPDATE {jobs} SET processing_count = processing_count - ?2 - ?3,
                     completed_count = completed_count + ?2, failed_count = failed_count + ?3, updated_at = ?4
                 WHERE id = ?1"
            ),
            complete_if_done: format!(
                "UPDATE {jobs} SET status = '{J_COMPLETED}', paused = 0, paused_reason = NULL, resume_at = NULL,
                     scheduled_pause_at = NULL, scheduled_resume_at = NULL, fail_streak = 0, completed_at = ?2, updated_at = ?2, started_at = COALESCE(started_at, ?2)
                 WHERE id = ?1 AND {done}"
            ),
            job_status: format!("SELECT status FROM {jobs} WHERE id = ?1 AND {visible}"),
            requeue_item: format!(
                "UPDATE {items} SET status = '{I_PENDING}', started_at = NULL
                 WHERE id = ?2 AND job_id = ?1 AND status = '{I_PROCESSING}'"
            ),
            requeue_job: format!(
                "UPDATE {jobs} SET pending_count = pending_count + 1, processing_count = processing_count - 1,
                     updated_at = ?2, next_item = MIN({CURSOR}, ?3)
                 WHERE id = ?1"
            ),
            reset_items: format!(
                "UPDATE {items} SET status = '{I_PENDING}', started_at = NULL
                 WHERE job_id = ?1 AND status = '{I_PROCESSING}' AND {STARTED}"
            ),
            lower_to_processing: lower_cursor(I_PROCESSING, "1"),
            // Failed items go back only when the job is completed (a retry).
            lower_to_failed: lower_cursor(I_FAILED, &format!("status = '{J_COMPLETED}'")),
            reset_job: format!(
                "UPDATE {jobs} SET pending_count = pending_count + processing_count, processing_count = 0 WHERE id = ?1"
            ),
            with_processing: format!("SELECT DISTINCT job_id FROM {items} WHERE status = '{I_PROCESSING}' AND {STARTED}"),
            set_paused: format!(
                "UPDATE {jobs} SET paused = ?2, paused_reason = NULL, resume_at = NULL, updated_at = ?3, fail_streak = 0,
                     status = CASE WHEN ?2 THEN '{J_PROCESSING}' ELSE status END
                 WHERE id = ?1 AND {live}"
            ),
            // A pause with a resume time is a rate limit's own; a pause without one
            // belongs to a person (or an error burst) and is never taken over. A
            // second rate limit keeps the later of the two resume times.
            rate_limit_pause: format!(
                "UPDATE {jobs} SET paused = 1, paused_reason = ?2, updated_at = ?4, status = '{J_PROCESSING}',
                     resume_at = CASE WHEN paused = 1 AND resume_at > ?3 THEN resume_at ELSE ?3 END
                 WHERE id = ?1 AND {live} AND (paused = 0 OR resume_at IS NOT NULL)"
            ),
            cancel: format!(
                "UPDATE {jobs} SET status = '{J_FAILED}', cancelled_at = ?2, updated_at = ?2, paused = 0,
                     paused_reason = NULL, resume_at = NULL, scheduled_pause_at = NULL, scheduled_resume_at = NULL,
                     fail_streak = 0
                 WHERE id = ?1 AND {live}"
            ),
            hide: format!("UPDATE {jobs} SET hidden = ?2, updated_at = ?3 WHERE id = ?1"),
            // A batch: the job's items up to its `?2 + 1`-th one, deleted by id range.
            purge_bound: format!("SELECT id FROM {items} WHERE {job_items} ORDER BY id LIMIT 1 OFFSET ?2"),
            purge_items: format!("DELETE FROM {items} WHERE id BETWEEN {first} AND ?2 AND +job_id = ?1"),
            purge_rest: format!("DELETE FROM {items} WHERE {job_items}"),
            // The next batch starts past this one's last item, not among the rows of
            // other jobs that an overlapping import left between the first ones.
            purge_advance: format!("UPDATE {jobs} SET first_item = ?2 + 1 WHERE id = ?1 AND hidden = '{DELETING}'"),
            purge_job: format!("DELETE FROM {jobs} WHERE id = ?1 AND hidden = '{DELETING}'"),
            flags: format!("SELECT status, paused, concurrency, resume_at FROM {jobs} WHERE id = ?1 AND {visible}"),
            auto_resume: format!(
                "UPDATE {jobs} SET paused = 0, paused_reason = NULL, resume_at = NULL, updated_at = ?2
                 WHERE id = ?1 AND paused = 1 AND resume_at IS NOT NULL AND resume_at <= ?2 AND {live}"
            ),
            // ?2: whether an item of the batch completed; ?3: the failures after the
            // last one that did (all of the batch's when none did).
            streak: format!(
                "UPDATE {jobs} SET fail_streak = CASE WHEN ?2 THEN ?3 ELSE fail_streak + ?3 END
                 WHERE id = ?1 AND (?3 > 0 OR fail_streak <> 0)"
            ),
            // An error burst's pause has no resume time: a person decides. The run is
            // the stored count plus the batch's leading failures (?5), or a run inside
            // the batch (?6). A job already paused (by a person or a rate limit), or
            // with nothing left to start, is left as it is.
            error_burst: format!(
                "UPDATE {jobs} SET paused = 1, status = '{J_PROCESSING}', resume_at = NULL, updated_at = ?4,
                     paused_reason = MAX(fail_streak + ?5, ?6) || ' items failed in a row; the last: ' || ?3,
                     fail_streak = 0
                 WHERE id = ?1 AND {live} AND paused = 0 AND pending_count > 0 AND ?2 > 0
                   AND (fail_streak + ?5 >= ?2 OR ?6 >= ?2)
                 RETURNING paused_reason"
            ),
            due_schedules: format!(
                "SELECT id, scheduled_pause_at, scheduled_resume_at FROM {jobs}
                 WHERE {live} AND {visible} AND (scheduled_pause_at <= ?1 OR scheduled_resume_at <= ?1)"
            ),
            next_schedule: format!(
                "SELECT MIN(MIN(COALESCE(scheduled_pause_at, '9'), COALESCE(scheduled_resume_at, '9'))) FROM {jobs}
                 WHERE {live} AND {visible} AND (scheduled_pause_at IS NOT NULL OR scheduled_resume_at IS NOT NULL)"
            ),
            set_schedule: format!(
                "UPDATE {jobs} SET scheduled_pause_at = ?2, scheduled_resume_at = ?3, updated_at = ?4 WHERE id = ?1"
            ),
        }
    }
}

static STATEMENTS: LazyLock<[Sql; 2]> = LazyLock::new(|| [Sql::new(JobKind::Research), Sql::new(JobKind::Preprocess)]);

/// The statements of a kind of job.
pub fn sql(kind: JobKind) -> &'static Sql {
    match kind {
        JobKind::Research => &STATEMENTS[0],
        JobKind::Preprocess => &STATEMENTS[1],
    }
}

fn job_from_row(kind: JobKind, row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(3)?;
    let cancelled_at = parse_ts(row.get(15)?);
    Ok(Job {
        id: row.get(0)?,
        kind,
        name: row.get(1)?,
        filename: row.get(2)?,
        status: status.parse().unwrap_or(JobStatus::Failed),
        paused: row.get::<_, i64>(4)? != 0,
        cancelled: cancelled_at.is_some(),
        concurrency: row.get(5)?,
        total: row.get(6)?,
        pending: row.get(7)?,
        processing: row.get(8)?,
        completed: row.get(9)?,
        failed: row.get(10)?,
        created_at: parse_ts(row.get(11)?).unwrap_or_default(),
        started_at: parse_ts(row.get(12)?),
        updated_at: parse_ts(row.get(13)?).unwrap_or_default(),
        completed_at: parse_ts(row.get(14)?),
        cancelled_at,
        paused_reason: row.get(16)?,
        resume_at: parse_ts(row.get(17)?),
        archived_at: parse_ts(row.get(18)?),
        scheduled_pause_at: parse_ts(row.get(19)?),
        scheduled_resume_at: parse_ts(row.get(20)?),
    })
}

/// Creates a job row (status `pending`, no items yet), hidden from every read until
/// [`reveal_job`]: its items go in by chunks in later transactions.
pub fn insert_job(
    conn: &Connection,
    kind: JobKind,
    name: &str,
    filename: &str,
    concurrency: u32,
    columns: &[String],
) -> Result<i64, AppError> {
    // Creation times are distinct and rising over both kinds (a millisecond later than
    // the newest job when the clock has not moved on), so the dashboard's merge of the
    // two kinds, newest first, has one answer.
    let latest: Option<String> = conn
        .prepare_cached(
            "SELECT MAX(t) FROM (SELECT * FROM (SELECT created_at AS t FROM processing_jobs ORDER BY id DESC LIMIT 1)
             UNION ALL SELECT * FROM (SELECT created_at AS t FROM preprocessing_jobs ORDER BY id DESC LIMIT 1))",
        )?
        .query_row([], |r| r.get(0))?;
    let mut created = now();
    if let Some(latest) = parse_ts(latest) {
        created = created.max(latest + chrono::Duration::milliseconds(1));
    }
    let now = ts(created);
    // A research job's items are read through its roles (see `JobColumns`), fixed here.
    let roles = match kind {
        JobKind::Research => Some(json(&ColumnMap::from_headers(columns))?),
        JobKind::Preprocess => None,
    };
    let columns = json(columns)?;
    conn.prepare_cached(&format!(
        "INSERT INTO {} (name, filename, concurrency, columns, roles, created_at, updated_at, hidden)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        sql(kind).jobs
    ))?
    .execute(params![name, filename, concurrency, columns, roles, now, Hidden::Importing.as_str()])?;
    Ok(conn.last_insert_rowid())
}

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
    Ok(())
}

/// Every research item is made by [`ColumnMap::research_fields`], so its input gives
/// back its name, website and domain; checked in debug builds.
fn debug_assert_read_back(map: &ColumnMap, it: &NewItem) {
    debug_assert_eq!(
        map.research_fields(&serde_json::from_str::<Vec<String>>(&it.input).unwrap_or_default()),
        ResearchFields { name: it.name.clone(), website: it.website.clone(), domain: it.domain.clone() },
        "a research item's fields are not what its input gives"
    );
}

/// Rows per insert statement of [`insert_items`].
const INSERT_ROWS: usize = 64;

fn insert_sql(table: &str, columns: &str, width: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    format!("INSERT INTO {table} ({columns}) VALUES {}", vec![row; rows].join(", "))
}

/// Preprocessing: links the rows with item ids in `from..=to` to the first row of the
/// job with the same dedupe key. Run after every row is in, chunk by chunk. `+job_id`
/// keeps each chunk a scan of its own ids: SQLite would otherwise walk the whole job
/// through an index on job_id for every chunk.
pub fn link_duplicates(conn: &Connection, job_id: i64, from: i64, to: i64) -> Result<(), AppError> {
    conn.prepare_cached(
        "UPDATE preprocessing_results AS r SET duplicate_of = (
             SELECT first.line FROM preprocessing_results AS first
             WHERE first.job_id = r.job_id AND first.dedupe_key = r.dedupe_key
             ORDER BY first.line LIMIT 1)
         WHERE r.id BETWEEN ?2 AND ?3 AND +r.job_id = ?1 AND r.dedupe_key IS NOT NULL",
    )?
    .execute(params![job_id, from, to])?;
    conn.prepare_cached(
        "UPDATE preprocessing_results SET duplicate_of = NULL
         WHERE id BETWEEN ?2 AND ?3 AND +job_id = ?1 AND duplicate_of = line",
    )?
    .execute(params![job_id, from, to])?;
    Ok(())
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

/// Makes an imported job visible with its totals, in the transaction that ends the import.
pub fn reveal_job(conn: &Connection, kind: JobKind, job_id: i64, count: i64) -> Result<(), AppError> {
    conn.prepare_cached(&format!(
        "UPDATE {} SET total = ?2, pending_count = ?2, hidden = NULL WHERE id = ?1 AND hidden = '{}'",
        sql(kind).jobs,
        Hidden::Importing.as_str()
    ))?
    .execute(params![job_id, count])?;
    Ok(())
}

pub fn get_job(conn: &Connection, kind: JobKind, id: i64) -> Result<Option<Job>, AppError> {
    Ok(conn.prepare_cached(&sql(kind).get_job)?.query_row(params![id], |r| job_from_row(kind, r)).optional()?)
}

/// The job, or `NotFound`.
pub fn require_job(conn: &Connection, kind: JobKind, id: i64) -> Result<Job, AppError> {
    get_job(conn, kind, id)?.ok_or_else(|| AppError::NotFound { kind: kind.as_str(), id: id.to_string() })
}

/// Ids of every job that may still run, of both kinds.
pub fn live_jobs(conn: &Connection) -> Result<Vec<(JobKind, i64)>, AppError> {
    let mut out = Vec::new();
    for kind in JobKind::ALL {
        let mut stmt = conn.prepare_cached(&sql(kind).live_jobs)?;
        for id in stmt.query_map([], |r| r.get::<_, i64>(0))? {
            out.push((kind, id?));
        }
    }
    Ok(out)
}

/// The job's input column names, in file order, and its roles.
pub fn job_columns(conn: &Connection, kind: JobKind, job_id: i64) -> Result<JobColumns, AppError> {
    let (names, roles): (String, Option<String>) = conn
        .prepare_cached(&sql(kind).columns)?
        .query_row(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| AppError::NotFound { kind: kind.as_str(), id: job_id.to_string() })?;
    let names = serde_json::from_str(&names).map_err(|e| AppError::Internal(format!("job columns: {e}")))?;
    Ok(JobColumns { names, roles: parse_roles(roles)? })
}

/// A job's roles, when it has them (see [`JobColumns`]).
fn read_roles(conn: &Connection, kind: JobKind, job_id: i64) -> Result<Option<ColumnMap>, AppError> {
    let roles: Option<String> =
        conn.prepare_cached(&sql(kind).roles)?.query_row(params![job_id], |r| r.get(0)).optional()?.flatten();
    parse_roles(roles)
}

/// A job's `roles` column as stored: JSON, or NULL for none.
fn parse_roles(stored: Option<String>) -> Result<Option<ColumnMap>, AppError> {
    stored.map(|r| serde_json::from_str(&r)).transpose().map_err(|e| AppError::Internal(format!("job roles: {e}")))
}

/// An item's input as column name → value, in file order. Rows are stored without
/// their empty trailing cells; every column is filled in here.
pub(crate) fn input_map(columns: &[String], stored: &str) -> serde_json::Map<String, serde_json::Value> {
    input_values_map(columns, serde_json::from_str(stored).unwrap_or_default())
}

fn input_values_map(columns: &[String], values: Vec<serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
    let empty = std::iter::repeat(serde_json::Value::String(String::new()));
    columns.iter().cloned().zip(values.into_iter().chain(empty)).collect()
}

fn item_from_row(columns: &JobColumns, row: &Row<'_>) -> rusqlite::Result<Item> {
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
fn items_query(kind: JobKind, status: Option<ItemStatus>) -> String {
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

/// The next pending item, as [`claim_batch`] of one. `columns` are the job's
/// ([`job_columns`]).
pub fn claim_next(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    columns: &JobColumns,
) -> Result<Option<Claimed>, AppError> {
    Ok(claim_batch(conn, kind, job_id, 1)?.pop().map(|row| row.into_claimed(columns)))
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
            Finish::Failed(e) => (ItemStatus::Failed, None, Some(e.as_str())),
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

/// One item's outcome, as [`finish_batch`] of one. Returns whether it wrote.
pub fn finish_item(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    item_id: i64,
    attempts: u32,
    outcome: &Finish,
) -> Result<bool, AppError> {
    let one = Finished { item_id, lease: 0, attempts, outcome: outcome.clone() };
    Ok(finish_batch(conn, kind, job_id, std::slice::from_ref(&one), 0)? == 1)
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

/// A person's pause or resume: sets or clears the flag and clears any reason and
/// automatic resume time, so a pause a person sets is never lifted by a timer. A
/// paused job is `processing` (SPEC section 2), even one paused before its first item.
pub fn set_paused(conn: &Connection, kind: JobKind, job_id: i64, paused: bool) -> Result<(), AppError> {
    conn.prepare_cached(&sql(kind).set_paused)?.execute(params![job_id, paused, ts(now())])?;
    Ok(())
}

/// A rate limit's pause, with its reason and the time it lifts. Leaves a job a person
/// paused exactly as it is. Returns whether the job is now paused by the rate limit.
pub fn pause_for_rate_limit(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    reason: &str,
    resume_at: DateTime<Utc>,
) -> Result<bool, AppError> {
    // Only the pause itself is logged (and notified): further 429s while it lasts,
    // from items that were in flight, only move the resume time.
    let was_paused = job_flags(conn, kind, job_id)?.is_some_and(|f| f.paused);
    let changed =
        conn.prepare_cached(&sql(kind).rate_limit_pause)?.execute(params![job_id, reason, ts(resume_at), ts(now())])?;
    if changed == 1 && !was_paused {
        add_event(conn, kind, job_id, EventAction::AutoPaused, Source::RateLimit, Some(reason))?;
    }
    Ok(changed == 1)
}

/// Cancel, in the caller's transaction: job `failed` with `cancelled_at`, no pause
/// left on it, every `processing` item back to `pending`.
pub fn cancel_job(conn: &Connection, kind: JobKind, job_id: i64) -> Result<(), AppError> {
    reset_processing(conn, kind, job_id)?;
    conn.prepare_cached(&sql(kind).cancel)?.execute(params![job_id, ts(now())])?;
    Ok(())
}

/// Hides a job from every read at once; its items are removed later by [`purge_batch`].
pub fn hide_job(conn: &Connection, kind: JobKind, job_id: i64, why: Hidden) -> Result<(), AppError> {
    conn.prepare_cached(&sql(kind).hide)?.execute(params![job_id, why.as_str(), ts(now())])?;
    Ok(())
}

/// Every hidden job: deletes to finish and imports a crash cut short.
pub fn hidden_jobs(conn: &Connection) -> Result<Vec<(JobKind, i64, Hidden)>, AppError> {
    let mut out = Vec::new();
    for kind in JobKind::ALL {
        let mut stmt =
            conn.prepare_cached(&format!("SELECT id, hidden FROM {} WHERE hidden IS NOT NULL", sql(kind).jobs))?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
            let (id, why) = row?;
            let why = if why == Hidden::Importing.as_str() { Hidden::Importing } else { Hidden::Deleting };
            out.push((kind, id, why));
        }
    }
    Ok(out)
}

/// Removes up to `limit` items of a job being deleted; once none is left, the job row
/// too. Returns whether the job is gone.
pub fn purge_batch(conn: &Connection, kind: JobKind, job_id: i64, limit: i64) -> Result<bool, AppError> {
    let s = sql(kind);
    let bound: Option<i64> =
        conn.prepare_cached(&s.purge_bound)?.query_row(params![job_id, limit - 1], |r| r.get(0)).optional()?;
    if let Some(last) = bound {
        conn.prepare_cached(&s.purge_items)?.execute(params![job_id, last])?;
        conn.prepare_cached(&s.purge_advance)?.execute(params![job_id, last])?;
        return Ok(false);
    }
    // Fewer than a batch left: the rest, then the job.
    conn.prepare_cached(&s.purge_rest)?.execute(params![job_id])?;
    conn.prepare_cached(&s.purge_job)?.execute(params![job_id])?;
    purge_events(conn, kind, job_id)?;
    Ok(true)
}

pub fn job_flags(conn: &Connection, kind: JobKind, job_id: i64) -> Result<Option<Flags>, AppError> {
    Ok(conn
        .prepare_cached(&sql(kind).flags)?
        .query_row(params![job_id], |r| {
            let status: String = r.get(0)?;
            Ok(Flags {
                status: status.parse().unwrap_or(JobStatus::Failed),
                paused: r.get::<_, i64>(1)? != 0,
                concurrency: r.get(2)?,
                resume_at: parse_ts(r.get(3)?),
            })
        })
        .optional()?)
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

/// Clears a rate-limit pause whose resume time has come; a pause set by a person
/// (no `resume_at`) is left alone.
pub fn auto_resume(conn: &Connection, kind: JobKind, job_id: i64) -> Result<bool, AppError> {
    let changed = conn.prepare_cached(&sql(kind).auto_resume)?.execute(params![job_id, ts(now())])?;
    if changed == 1 {
        add_event(conn, kind, job_id, EventAction::AutoResumed, Source::RateLimit, None)?;
    }
    Ok(changed == 1)
}

/// Appends to a job's activity log, in the caller's transaction.
pub fn add_event(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    action: EventAction,
    source: Source,
    detail: Option<&str>,
) -> Result<(), AppError> {
    let at = now();
    conn.prepare_cached(
        "INSERT INTO job_events (kind, job_id, at, action, source, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![kind.as_str(), job_id, ts(at), action.as_str(), source.as_str(), detail])?;
    if rules::worth_notifying(action) {
        queue_notification(conn, kind, job_id, action, at)?;
    }
    Ok(())
}

/// Queues the notification of a job event once per configured channel, in the
/// caller's transaction: the event and its notifications commit together.
fn queue_notification(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    action: EventAction,
    at: DateTime<Utc>,
) -> Result<(), AppError> {
    let any: bool =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM notify_channels)")?.query_row([], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    let Some(job) = get_job(conn, kind, job_id)? else { return Ok(()) };
    let Some(event) = rules::event_name(action, &job) else { return Ok(()) };
    let payload = rules::payload(event, &job, at);
    conn.prepare_cached(
        "INSERT INTO outbox (channel, event, kind, job_id, payload, next_at, created_at)
         SELECT channel, ?1, ?2, ?3, ?4, ?5, ?5 FROM notify_channels",
    )?
    .execute(params![event, kind.as_str(), job_id, payload, ts(at)])?;
    Ok(())
}

/// The channels events are queued for from now on (the server's settings, at start-up).
/// On SQLite only this process delivers, so no lease held before it started is live.
pub fn set_channels(conn: &Connection, channels: &[&str]) -> Result<(), AppError> {
    conn.execute("UPDATE outbox SET locked_until = NULL WHERE locked_until IS NOT NULL", [])?;
    conn.execute("DELETE FROM notify_channels", [])?;
    for channel in channels {
        conn.execute("INSERT INTO notify_channels (channel) VALUES (?1)", [channel])?;
    }
    Ok(())
}

/// Takes up to `limit` notifications that are due and not held by anyone, holding
/// them until `lease_until`.
pub fn claim_outbox(
    conn: &Connection,
    at: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Outgoing>, AppError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET locked_until = ?2
         WHERE id IN (SELECT id FROM outbox WHERE next_at <= ?1 AND (locked_until IS NULL OR locked_until <= ?1)
                        AND channel IN (SELECT channel FROM notify_channels)
                      ORDER BY next_at, id LIMIT ?3)
         RETURNING id, channel, event, kind, job_id, payload, attempts, locked_until",
    )?;
    let rows = stmt.query_map(params![ts(at), ts(lease_until), limit], |r| {
        let kind: String = r.get(3)?;
        Ok(Outgoing {
            id: r.get(0)?,
            channel: r.get(1)?,
            event: r.get(2)?,
            kind: kind.parse().unwrap_or(JobKind::Research),
            job_id: r.get(4)?,
            payload: r.get(5)?,
            attempts: r.get::<_, i64>(6)?.max(0) as u32,
            lease: parse_ts(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// What became of one try of a notification: `Ok` delivered (it leaves the outbox),
/// `Err` failed, with when to try again (`None`: given up, it leaves the outbox). Either
/// way the job's activity log says so, while the job exists. A try whose lease ran out
/// (another process has the row now) changes nothing.
pub fn settle_outgoing(conn: &Connection, sent: &Outgoing, outcome: &Settled) -> Result<(), AppError> {
    let lease = sent.lease.map(ts);
    let (changed, action, detail) = match outcome {
        Ok(detail) => {
            let n = conn
                .prepare_cached("DELETE FROM outbox WHERE id = ?1 AND locked_until IS ?2")?
                .execute(params![sent.id, lease])?;
            (n, EventAction::Notified, detail.as_str())
        }
        Err((error, Some(next))) => {
            let n = conn
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, locked_until = NULL, last_error = ?3
                     WHERE id = ?1 AND locked_until IS ?4",
                )?
                .execute(params![sent.id, ts(*next), error, lease])?;
            (n, EventAction::NotifyFailed, error.as_str())
        }
        Err((error, None)) => {
            let n = conn
                .prepare_cached("DELETE FROM outbox WHERE id = ?1 AND locked_until IS ?2")?
                .execute(params![sent.id, lease])?;
            (n, EventAction::NotifyFailed, error.as_str())
        }
    };
    if changed == 1 && get_job(conn, sent.kind, sent.job_id)?.is_some() {
        add_event(conn, sent.kind, sent.job_id, action, Source::System, Some(detail))?;
    }
    Ok(())
}

/// When the next notification this server delivers falls due, if any is waiting (rows
/// of a channel no longer configured wait, untouched, until it is again).
pub fn next_outgoing(conn: &Connection) -> Result<Option<DateTime<Utc>>, AppError> {
    let next: Option<String> = conn
        .prepare_cached(
            "SELECT MIN(MAX(next_at, COALESCE(locked_until, next_at))) FROM outbox
             WHERE channel IN (SELECT channel FROM notify_channels)",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(parse_ts(next))
}

/// Sets (or with two `None`s clears) when a live job pauses and resumes by itself.
pub fn set_schedule(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    pause_at: Option<DateTime<Utc>>,
    resume_at: Option<DateTime<Utc>>,
) -> Result<(), AppError> {
    conn.prepare_cached(&sql(kind).set_schedule)?.execute(params![
        job_id,
        pause_at.map(ts),
        resume_at.map(ts),
        ts(now())
    ])?;
    Ok(())
}

/// A job with a scheduled time due: its id, pause time and resume time.
type DueSchedule = (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Fires every scheduled pause and resume whose time has come, each exactly once: it
/// is cleared in the transaction that acts on it. When both are due (the server was
/// down across both), the earlier goes first, so the later decides the state. A pause
/// that finds the job paused, or a resume that finds it running, changes nothing but
/// is logged. Returns the jobs it changed.
pub fn fire_schedules(conn: &Connection, at: DateTime<Utc>) -> Result<Vec<(JobKind, i64)>, AppError> {
    let mut fired = Vec::new();
    for kind in JobKind::ALL {
        let s = sql(kind);
        let due: Vec<DueSchedule> = conn
            .prepare_cached(&s.due_schedules)?
            .query_map(params![ts(at)], |r| Ok((r.get(0)?, parse_ts(r.get(1)?), parse_ts(r.get(2)?))))?
            .collect::<Result<_, _>>()?;
        for (id, pause_at, resume_at) in due {
            let flags = job_flags(conn, kind, id)?;
            let paused = flags.as_ref().is_some_and(|f| f.paused);
            let limited = flags.as_ref().is_some_and(|f| f.paused && f.resume_at.is_some());
            let plan = plan_schedule(pause_at, resume_at, at, paused, limited);
            set_schedule(conn, kind, id, plan.keep.0, plan.keep.1)?;
            for step in plan.steps {
                if let Some(pause) = step.set_paused {
                    set_paused(conn, kind, id, pause)?;
                }
                add_event(conn, kind, id, step.action, Source::Schedule, Some(&step.detail))?;
            }
            fired.push((kind, id));
        }
    }
    Ok(fired)
}

/// When the next scheduled pause or resume of a live job is due, if any is set.
pub fn next_schedule(conn: &Connection) -> Result<Option<DateTime<Utc>>, AppError> {
    let mut next: Option<DateTime<Utc>> = None;
    for kind in JobKind::ALL {
        let at: Option<String> = conn.prepare_cached(&sql(kind).next_schedule)?.query_row([], |r| r.get(0))?;
        if let Some(at) = parse_ts(at) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(next)
}

/// A page of a job's activity log, newest first: up to `limit` events with ids below
/// `before` (all when `None`).
pub fn list_events(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<JobEvent>, AppError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, action, source, detail FROM job_events
         WHERE kind = ?1 AND job_id = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![kind.as_str(), job_id, before.unwrap_or(i64::MAX), limit], |r| {
        let action: String = r.get(2)?;
        let source: String = r.get(3)?;
        Ok(JobEvent {
            id: r.get(0)?,
            at: parse_ts(r.get(1)?).unwrap_or_default(),
            action: action.parse().unwrap_or(EventAction::Changed),
            source: source.parse().unwrap_or(Source::System),
            detail: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// What a failed item becomes when it is retried: pending, attempts from zero, its
/// error and result cleared.
fn retried_item() -> String {
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
/// counters to match, leaving the job completed (see [`Backend::retry_batch`]).
///
/// [`Backend::retry_batch`]: super::backend::Backend::retry_batch
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

/// Archives (`true`) or restores a job, in the caller's transaction.
pub fn set_archived(conn: &Connection, kind: JobKind, job_id: i64, archived: bool) -> Result<(), AppError> {
    let now = ts(now());
    conn.prepare_cached(&format!("UPDATE {} SET archived_at = ?2, updated_at = ?3 WHERE id = ?1", sql(kind).jobs))?
        .execute(params![job_id, archived.then_some(&now), now])?;
    Ok(())
}

/// Renames a job and/or changes its concurrency, in the caller's transaction.
pub fn edit_job(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    name: Option<&str>,
    concurrency: Option<u32>,
) -> Result<(), AppError> {
    conn.prepare_cached(&format!(
        "UPDATE {} SET name = COALESCE(?2, name), concurrency = COALESCE(?3, concurrency), updated_at = ?4
         WHERE id = ?1",
        sql(kind).jobs
    ))?
    .execute(params![job_id, name, concurrency, ts(now())])?;
    Ok(())
}

/// The SQL condition (on the job table's own columns) that picks the jobs a filter's
/// status and archive state name; the kind and the name search are bound apart.
pub fn filter_condition(filter: &JobFilter) -> String {
    let mut cond = vec!["hidden IS NULL".to_string()];
    if let Some(phase) = filter.status {
        cond.push(phase_condition(phase));
    }
    match filter.archived {
        Archived::Hide => cond.push("archived_at IS NULL".into()),
        Archived::Only => cond.push("archived_at IS NOT NULL".into()),
        Archived::All => {}
    }
    cond.join(" AND ")
}

/// The stored columns a phase is made of ([`Job::phase`]); the same on both stores.
pub fn phase_condition(phase: Phase) -> String {
    match phase {
        Phase::Pending => format!("status = '{J_PENDING}' AND paused = 0"),
        Phase::Processing => format!("status = '{J_PROCESSING}' AND paused = 0"),
        Phase::Paused => format!("status IN ('{J_PENDING}', '{J_PROCESSING}') AND paused = 1"),
        Phase::Completed => format!("status = '{J_COMPLETED}'"),
        Phase::Failed => format!("status = '{J_FAILED}' AND cancelled_at IS NULL"),
        Phase::Cancelled => format!("status = '{J_FAILED}' AND cancelled_at IS NOT NULL"),
    }
}

/// A name search as a LIKE pattern: `%` and `_` match themselves (escaped with `\`).
pub fn like_pattern(search: &str) -> String {
    let mut p = String::with_capacity(search.len() + 2);
    p.push('%');
    for c in search.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The newest `limit` jobs of one kind the filter takes, newest first, and how many
/// it takes in all.
pub fn filtered_jobs(
    conn: &Connection,
    kind: JobKind,
    filter: &JobFilter,
    limit: i64,
) -> Result<(Vec<Job>, i64), AppError> {
    let jobs_table = sql(kind).jobs;
    let cond = filter_condition(filter);
    let pattern = filter.search.as_deref().map(like_pattern);
    let search = if pattern.is_some() { "name LIKE :pattern ESCAPE '\\'" } else { ":pattern IS NULL" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM {jobs_table} WHERE {cond} AND {search} ORDER BY id DESC LIMIT :limit"
    ))?;
    let jobs = stmt
        .query_map(rusqlite::named_params! {":limit": limit, ":pattern": pattern}, |r| job_from_row(kind, r))?
        .collect::<Result<Vec<_>, _>>()?;
    let count: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM {jobs_table} WHERE {cond} AND {search}"))?
        .query_row(rusqlite::named_params! {":pattern": pattern}, |r| r.get(0))?;
    Ok((jobs, count))
}

/// Deletes a gone job's activity log, in the caller's transaction.
pub fn purge_events(conn: &Connection, kind: JobKind, job_id: i64) -> Result<(), AppError> {
    conn.prepare_cached("DELETE FROM job_events WHERE kind = ?1 AND job_id = ?2")?
        .execute(params![kind.as_str(), job_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs created in the same millisecond, of either kind, still get rising creation
    /// times: the dashboard orders both kinds together by them.
    #[test]
    fn creation_times_rise_over_both_kinds() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::db::migrations().to_latest(&mut conn).unwrap();
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
        super::super::db::migrations().to_latest(&mut conn).unwrap();
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
        super::super::db::migrations().to_latest(&mut conn).unwrap();
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
                        })
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let expected: Vec<NewItem> = match kind {
                    JobKind::Research => items
                        .iter()
                        .map(|it| NewItem { name: None, website: None, domain: None, ..it.clone() })
                        .collect(),
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
        assert!(claim_next(&conn, JobKind::Research, id, &JobColumns::default()).unwrap().is_none());
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
        let outcome = |ok: bool| if ok { Finish::Completed("{}".into()) } else { Finish::Failed("HTTP 404".into()) };
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
            .map(|c| Finished {
                item_id: c.id,
                lease: 0,
                attempts: 1,
                outcome: Finish::completed(&serde_json::json!({})),
            })
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
            .map(|c| Finished { item_id: c.id, lease: 0, attempts: 2, outcome: Finish::Failed("no".into()) })
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
                    Finish::Failed("HTTP 503".into())
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
                                        Finish::Failed("HTTP 503".into())
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
}
