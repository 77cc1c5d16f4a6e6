//! The SQLite store's statements, built once per kind of job ([`sql`]) from the table
//! names and the state spellings of [`crate::model`], so no state is written as a
//! literal anywhere; and the helpers every statement file shares. Functions in the
//! files beside this one take a connection or transaction and never decide business
//! rules: the service and the runner do, through [`super::SqliteStore`].

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rusqlite::Row;

use crate::model::{ItemStatus, Job, JobKind, JobStatus};
use crate::server::error::AppError;
use crate::server::store::types::Hidden;

/// The current time.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub(super) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(e.to_string()))
}

pub(super) fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc))
}

pub(super) const J_PENDING: &str = JobStatus::Pending.as_str();
pub(super) const J_PROCESSING: &str = JobStatus::Processing.as_str();
pub(super) const J_COMPLETED: &str = JobStatus::Completed.as_str();
pub(super) const J_FAILED: &str = JobStatus::Failed.as_str();
pub(super) const I_PENDING: &str = ItemStatus::Pending.as_str();
pub(super) const I_PROCESSING: &str = ItemStatus::Processing.as_str();
pub(super) const I_COMPLETED: &str = ItemStatus::Completed.as_str();
pub(super) const I_FAILED: &str = ItemStatus::Failed.as_str();
pub(super) const DELETING: &str = Hidden::Deleting.as_str();
/// The condition of the status index (migration 0008), which holds only items that
/// have started. SQLite uses a partial index only for a query that names its
/// condition itself (`status = 'failed'` alone is not enough), so every lookup by a
/// started state says it too.
pub(super) const STARTED: &str = "status <> 'pending'";
/// A job's claim cursor (migration 0008), in a statement on its row: no pending item
/// of the job has a smaller id. NULL stands for the job's first item.
pub(super) const CURSOR: &str = "COALESCE(next_item, first_item)";

pub(super) const JOB_COLUMNS: &str = "id, name, filename, status, paused, concurrency, total, pending_count, \
    processing_count, completed_count, failed_count, created_at, started_at, updated_at, \
    completed_at, cancelled_at, paused_reason, resume_at, archived_at, scheduled_pause_at, scheduled_resume_at";

/// The statements of one kind of job, built once.
pub struct Sql {
    pub(super) jobs: &'static str,
    pub(super) items: &'static str,
    pub(super) get_job: String,
    pub(super) live_jobs: String,
    pub(super) columns: String,
    /// A job's roles, also while it is hidden (an import in progress).
    pub(super) roles: String,
    pub(super) item_select: String,
    pub(super) items_after: String,
    pub(super) max_item_id: String,
    pub(super) widen_range: String,
    /// The condition that takes a job's items (job id `?1`) in file order: a scan of
    /// the table between the job's first and last item id, never the index.
    pub(super) job_items: String,
    /// The job's (`?1`) claim cursor and last item id, as subqueries.
    pub(super) cursor: String,
    pub(super) last: String,
    pub(super) claim_items: String,
    pub(super) claim_job: String,
    pub(super) finish_item: String,
    pub(super) finish_job: String,
    pub(super) complete_if_done: String,
    pub(super) job_status: String,
    pub(super) requeue_item: String,
    pub(super) requeue_job: String,
    pub(super) reset_items: String,
    pub(super) reset_job: String,
    /// The claim cursor lowered to the job's first processing item, or to its first
    /// failed item when the job is completed (a retry).
    pub(super) lower_to_processing: String,
    pub(super) lower_to_failed: String,
    pub(super) with_processing: String,
    pub(super) set_paused: String,
    pub(super) rate_limit_pause: String,
    pub(super) cancel: String,
    pub(super) hide: String,
    pub(super) purge_bound: String,
    pub(super) purge_items: String,
    pub(super) purge_rest: String,
    pub(super) purge_advance: String,
    pub(super) purge_job: String,
    pub(super) flags: String,
    pub(super) auto_resume: String,
    pub(super) streak: String,
    pub(super) error_burst: String,
    pub(super) due_schedules: String,
    pub(super) next_schedule: String,
    pub(super) set_schedule: String,
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

pub(super) fn job_from_row(kind: JobKind, row: &Row<'_>) -> rusqlite::Result<Job> {
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
        waiting_on_hosts: 0,
        outcomes: None,
        research_job_id: None,
    })
}
