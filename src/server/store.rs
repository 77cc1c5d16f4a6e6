//! Every SQL statement of jobdeck. Functions take a connection or transaction and
//! never decide business rules; the service and the runner do.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::error::AppError;
use crate::model::{Item, ItemPage, ItemStatus, Job, JobKind, JobStatus};

/// Current time as stored: RFC 3339, UTC, milliseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc))
}

/// The two tables behind a kind of job.
#[derive(Clone, Copy)]
struct Tables {
    jobs: &'static str,
    items: &'static str,
    /// Extra item columns read with every item (`normalized`, `duplicate_of`).
    extra: &'static str,
}

const fn tables(kind: JobKind) -> Tables {
    match kind {
        JobKind::Research => Tables { jobs: "processing_jobs", items: "accounts", extra: "NULL, NULL" },
        JobKind::Preprocess => {
            Tables { jobs: "preprocessing_jobs", items: "preprocessing_results", extra: "normalized, duplicate_of" }
        }
    }
}

const JOB_COLUMNS: &str = "id, name, filename, status, paused, concurrency, total, pending_count, \
    processing_count, completed_count, failed_count, created_at, started_at, updated_at, \
    completed_at, cancelled_at, paused_reason, resume_at";

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
    })
}

/// A new item as import produces it.
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    pub line: i64,
    pub name: Option<String>,
    pub website: Option<String>,
    pub domain: Option<String>,
    /// JSON array of the row's values, in the job's column order.
    pub input: String,
    /// Preprocessing only: the import-time cleaning result (JSON) and dedupe key.
    pub normalized: Option<String>,
    pub dedupe_key: Option<String>,
}

/// Creates a job row (status `pending`, no items yet).
pub fn insert_job(
    conn: &Connection,
    kind: JobKind,
    name: &str,
    filename: &str,
    concurrency: u32,
    columns: &[String],
) -> Result<i64, AppError> {
    let t = tables(kind);
    let now = ts(now());
    let columns = serde_json::to_string(columns).map_err(|e| AppError::Internal(e.to_string()))?;
    conn.prepare_cached(&format!(
        "INSERT INTO {} (name, filename, concurrency, columns, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        t.jobs
    ))?
    .execute(params![name, filename, concurrency, columns, now])?;
    Ok(conn.last_insert_rowid())
}

/// Inserts items on one prepared statement; stops at the first error.
pub fn insert_items(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    items: impl IntoIterator<Item = Result<NewItem, AppError>>,
) -> Result<i64, AppError> {
    let t = tables(kind);
    let sql = match kind {
        JobKind::Research => format!(
            "INSERT INTO {} (job_id, line, name, website, domain, input) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            t.items
        ),
        JobKind::Preprocess => format!(
            "INSERT INTO {} (job_id, line, name, website, domain, input, normalized, dedupe_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            t.items
        ),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut count = 0i64;
    for item in items {
        let it = item?;
        match kind {
            JobKind::Research => stmt.execute(params![job_id, it.line, it.name, it.website, it.domain, it.input])?,
            JobKind::Preprocess => stmt.execute(params![
                job_id,
                it.line,
                it.name,
                it.website,
                it.domain,
                it.input,
                it.normalized,
                it.dedupe_key
            ])?,
        };
        count += 1;
    }
    Ok(count)
}

/// Sets the job's totals after its items are in, and (preprocessing) links every
/// duplicate to the first row with the same key.
pub fn finish_import(conn: &Connection, kind: JobKind, job_id: i64, count: i64) -> Result<(), AppError> {
    let t = tables(kind);
    conn.prepare_cached(&format!("UPDATE {} SET total = ?2, pending_count = ?2 WHERE id = ?1", t.jobs))?
        .execute(params![job_id, count])?;
    if kind == JobKind::Preprocess {
        conn.prepare_cached(
            "UPDATE preprocessing_results AS r SET duplicate_of = (
                 SELECT first.line FROM preprocessing_results AS first
                 WHERE first.job_id = r.job_id AND first.dedupe_key = r.dedupe_key
                 ORDER BY first.line LIMIT 1)
             WHERE r.job_id = ?1 AND r.dedupe_key IS NOT NULL",
        )?
        .execute(params![job_id])?;
        conn.prepare_cached(
            "UPDATE preprocessing_results SET duplicate_of = NULL WHERE job_id = ?1 AND duplicate_of = line",
        )?
        .execute(params![job_id])?;
    }
    Ok(())
}

pub fn get_job(conn: &Connection, kind: JobKind, id: i64) -> Result<Option<Job>, AppError> {
    let t = tables(kind);
    Ok(conn
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM {} WHERE id = ?1", t.jobs))?
        .query_row(params![id], |r| job_from_row(kind, r))
        .optional()?)
}

/// The job, or `NotFound`.
pub fn require_job(conn: &Connection, kind: JobKind, id: i64) -> Result<Job, AppError> {
    get_job(conn, kind, id)?.ok_or_else(|| AppError::NotFound { kind: kind.as_str(), id: id.to_string() })
}

/// Jobs of one kind, newest first.
pub fn list_jobs(conn: &Connection, kind: JobKind) -> Result<Vec<Job>, AppError> {
    let t = tables(kind);
    let mut stmt = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM {} ORDER BY id DESC", t.jobs))?;
    let jobs = stmt.query_map([], |r| job_from_row(kind, r))?.collect::<Result<Vec<_>, _>>()?;
    Ok(jobs)
}

/// Ids of every job that may still run, of both kinds.
pub fn live_jobs(conn: &Connection) -> Result<Vec<(JobKind, i64)>, AppError> {
    let mut out = Vec::new();
    for kind in [JobKind::Research, JobKind::Preprocess] {
        let t = tables(kind);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id FROM {} WHERE status IN ('pending', 'processing') ORDER BY id",
            t.jobs
        ))?;
        for id in stmt.query_map([], |r| r.get::<_, i64>(0))? {
            out.push((kind, id?));
        }
    }
    Ok(out)
}

/// The job's input column names, in file order.
pub fn job_columns(conn: &Connection, kind: JobKind, job_id: i64) -> Result<Vec<String>, AppError> {
    let t = tables(kind);
    let text: String = conn
        .prepare_cached(&format!("SELECT columns FROM {} WHERE id = ?1", t.jobs))?
        .query_row(params![job_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| AppError::NotFound { kind: kind.as_str(), id: job_id.to_string() })?;
    serde_json::from_str(&text).map_err(|e| AppError::Internal(format!("job columns: {e}")))
}

fn item_select(kind: JobKind) -> String {
    let t = tables(kind);
    format!(
        "SELECT id, line, status, attempts, error, name, website, domain, input, result, {}, started_at, finished_at FROM {}",
        t.extra, t.items
    )
}

fn item_from_row(columns: &[String], row: &Row<'_>) -> rusqlite::Result<Item> {
    let status: String = row.get(2)?;
    let input_text: String = row.get(8)?;
    let values: Vec<serde_json::Value> = serde_json::from_str(&input_text).unwrap_or_default();
    let input = columns.iter().cloned().zip(values).collect();
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
        name: row.get(5)?,
        website: row.get(6)?,
        domain: row.get(7)?,
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
    let total = match status {
        None => job.total,
        Some(ItemStatus::Pending) => job.pending,
        Some(ItemStatus::Processing) => job.processing,
        Some(ItemStatus::Completed) => job.completed,
        Some(ItemStatus::Failed) => job.failed,
    };
    let sql = match status {
        Some(_) => format!("{} WHERE job_id = ?1 AND status = ?2 ORDER BY id LIMIT ?3 OFFSET ?4", item_select(kind)),
        None => format!("{} WHERE job_id = ?1 AND ?2 IS NULL ORDER BY id LIMIT ?3 OFFSET ?4", item_select(kind)),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let items = stmt
        .query_map(params![job_id, status.map(ItemStatus::as_str), limit, offset], |r| item_from_row(&columns, r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ItemPage { items, total, offset, limit })
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
    let mut stmt =
        conn.prepare_cached(&format!("{} WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3", item_select(kind)))?;
    let items = stmt
        .query_map(params![job_id, after, limit], |r| item_from_row(&columns, r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((columns, items))
}

/// An item handed to a step.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub line: i64,
    pub name: Option<String>,
    pub website: Option<String>,
    pub domain: Option<String>,
    pub input: serde_json::Map<String, serde_json::Value>,
    pub normalized: Option<serde_json::Value>,
    pub duplicate_of: Option<i64>,
}

/// Moves the next pending item to `processing`, in one statement that also checks the
/// job is still running and unpaused, so no claim slips past a pause or cancel.
/// `columns` are the job's column names ([`job_columns`]), which never change, so the
/// caller reads them once rather than on every claim.
pub fn claim_next(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    columns: &[String],
) -> Result<Option<Claimed>, AppError> {
    let t = tables(kind);
    let now = ts(now());
    let claimed = conn
        .prepare_cached(&format!(
            "UPDATE {items} SET status = 'processing', started_at = ?2
             WHERE id = (SELECT id FROM {items} WHERE job_id = ?1 AND status = 'pending' ORDER BY id LIMIT 1)
               AND EXISTS (SELECT 1 FROM {jobs} WHERE id = ?1 AND status IN ('pending', 'processing') AND paused = 0)
             RETURNING id, line, name, website, domain, input, {extra}",
            items = t.items,
            jobs = t.jobs,
            extra = t.extra
        ))?
        .query_row(params![job_id, now], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .optional()?;
    let Some((id, line, name, website, domain, input, normalized, duplicate_of)) = claimed else {
        return Ok(None);
    };
    conn.prepare_cached(&format!(
        "UPDATE {} SET pending_count = pending_count - 1, processing_count = processing_count + 1,
             status = 'processing', started_at = COALESCE(started_at, ?2), updated_at = ?2
         WHERE id = ?1",
        t.jobs
    ))?
    .execute(params![job_id, now])?;
    let values: Vec<serde_json::Value> = serde_json::from_str(&input).unwrap_or_default();
    Ok(Some(Claimed {
        id,
        line,
        name,
        website,
        domain,
        input: columns.iter().cloned().zip(values).collect(),
        normalized: normalized.and_then(|s| serde_json::from_str(&s).ok()),
        duplicate_of,
    }))
}

/// How an item ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Completed(serde_json::Value),
    Failed(String),
}

/// Writes an item's outcome and the job's counters together, only if the item is still
/// `processing` (a cancelled job's late result changes nothing). Marks the job
/// `completed` in the same statement when nothing is left. Returns whether it wrote.
pub fn finish_item(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    item_id: i64,
    attempts: u32,
    outcome: &Finish,
) -> Result<bool, AppError> {
    let t = tables(kind);
    let now = ts(now());
    let (status, result, error) = match outcome {
        Finish::Completed(v) => (ItemStatus::Completed, Some(v.to_string()), None),
        Finish::Failed(e) => (ItemStatus::Failed, None, Some(e.as_str())),
    };
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE {} SET status = ?3, result = ?4, error = ?5, attempts = attempts + ?6, finished_at = ?7
             WHERE id = ?2 AND job_id = ?1 AND status = 'processing'",
            t.items
        ))?
        .execute(params![job_id, item_id, status.as_str(), result, error, attempts, now])?;
    if changed == 0 {
        return Ok(false);
    }
    let ok = i64::from(status == ItemStatus::Completed);
    conn.prepare_cached(&format!(
        "UPDATE {} SET processing_count = processing_count - 1,
             completed_count = completed_count + ?2, failed_count = failed_count + ?3, updated_at = ?4,
             status = CASE WHEN status = 'processing' AND pending_count = 0 AND processing_count = 1
                           THEN 'completed' ELSE status END,
             paused = CASE WHEN status = 'processing' AND pending_count = 0 AND processing_count = 1
                           THEN 0 ELSE paused END,
             completed_at = CASE WHEN status = 'processing' AND pending_count = 0 AND processing_count = 1
                           THEN ?4 ELSE completed_at END
         WHERE id = ?1",
        t.jobs
    ))?
    .execute(params![job_id, ok, 1 - ok, now])?;
    Ok(true)
}

/// Marks a running job with nothing pending or processing `completed` (a job whose
/// last items were reset and drained elsewhere). Returns whether the job is now done.
pub fn complete_if_done(conn: &Connection, kind: JobKind, job_id: i64) -> Result<bool, AppError> {
    let t = tables(kind);
    let now = ts(now());
    conn.prepare_cached(&format!(
        "UPDATE {} SET status = 'completed', paused = 0, completed_at = ?2, updated_at = ?2,
             started_at = COALESCE(started_at, ?2)
         WHERE id = ?1 AND status IN ('pending', 'processing') AND pending_count = 0 AND processing_count = 0",
        t.jobs
    ))?
    .execute(params![job_id, now])?;
    let status: Option<String> = conn
        .prepare_cached(&format!("SELECT status FROM {} WHERE id = ?1", t.jobs))?
        .query_row(params![job_id], |r| r.get(0))
        .optional()?;
    Ok(status.is_none_or(|s| s == "completed" || s == "failed"))
}

/// Puts an in-flight item back to `pending` (rate limited, shutting down), keeping
/// its attempt count. Returns whether it moved.
pub fn requeue_item(conn: &Connection, kind: JobKind, job_id: i64, item_id: i64) -> Result<bool, AppError> {
    let t = tables(kind);
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE {} SET status = 'pending', started_at = NULL WHERE id = ?2 AND job_id = ?1 AND status = 'processing'",
            t.items
        ))?
        .execute(params![job_id, item_id])?;
    if changed == 1 {
        conn.prepare_cached(&format!(
            "UPDATE {} SET pending_count = pending_count + 1, processing_count = processing_count - 1, updated_at = ?2
             WHERE id = ?1",
            t.jobs
        ))?
        .execute(params![job_id, ts(now())])?;
    }
    Ok(changed == 1)
}

/// Every `processing` item of the job back to `pending`, counters to match.
/// Returns how many moved.
pub fn reset_processing(conn: &Connection, kind: JobKind, job_id: i64) -> Result<usize, AppError> {
    let t = tables(kind);
    let moved = conn
        .prepare_cached(&format!(
            "UPDATE {} SET status = 'pending', started_at = NULL WHERE job_id = ?1 AND status = 'processing'",
            t.items
        ))?
        .execute(params![job_id])?;
    conn.prepare_cached(&format!(
        "UPDATE {} SET pending_count = pending_count + processing_count, processing_count = 0 WHERE id = ?1",
        t.jobs
    ))?
    .execute(params![job_id])?;
    Ok(moved)
}

/// Ids of jobs with items in flight (after a crash: all of them need a reset).
pub fn jobs_with_processing(conn: &Connection) -> Result<Vec<(JobKind, i64)>, AppError> {
    let mut out = Vec::new();
    for kind in [JobKind::Research, JobKind::Preprocess] {
        let t = tables(kind);
        let mut stmt =
            conn.prepare_cached(&format!("SELECT DISTINCT job_id FROM {} WHERE status = 'processing'", t.items))?;
        for id in stmt.query_map([], |r| r.get::<_, i64>(0))? {
            out.push((kind, id?));
        }
    }
    Ok(out)
}

/// Sets or clears the pause flag with its reason and automatic resume time. A paused
/// job is `processing` (SPEC section 2), even one paused before its first item started.
pub fn set_paused(
    conn: &Connection,
    kind: JobKind,
    job_id: i64,
    paused: bool,
    reason: Option<&str>,
    resume_at: Option<DateTime<Utc>>,
) -> Result<(), AppError> {
    let t = tables(kind);
    conn.prepare_cached(&format!(
        "UPDATE {} SET paused = ?2, paused_reason = ?3, resume_at = ?4, updated_at = ?5,
             status = CASE WHEN ?2 THEN 'processing' ELSE status END
         WHERE id = ?1 AND status IN ('pending', 'processing')",
        t.jobs
    ))?
    .execute(params![job_id, paused, reason, resume_at.map(ts), ts(now())])?;
    Ok(())
}

/// Cancel, in the caller's transaction: job `failed` with `cancelled_at`, every
/// `processing` item back to `pending`.
pub fn cancel_job(conn: &Connection, kind: JobKind, job_id: i64) -> Result<(), AppError> {
    let t = tables(kind);
    reset_processing(conn, kind, job_id)?;
    let now = ts(now());
    conn.prepare_cached(&format!(
        "UPDATE {} SET status = 'failed', cancelled_at = ?2, updated_at = ?2, paused = 0, resume_at = NULL
         WHERE id = ?1 AND status IN ('pending', 'processing')",
        t.jobs
    ))?
    .execute(params![job_id, now])?;
    Ok(())
}

/// Removes a job and all its items.
pub fn delete_job(conn: &Connection, kind: JobKind, job_id: i64) -> Result<(), AppError> {
    let t = tables(kind);
    conn.prepare_cached(&format!("DELETE FROM {} WHERE job_id = ?1", t.items))?.execute(params![job_id])?;
    conn.prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", t.jobs))?.execute(params![job_id])?;
    Ok(())
}

/// What the runner re-reads every poll: the flags a person may have set by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    pub status: JobStatus,
    pub paused: bool,
    pub cancelled: bool,
    pub concurrency: u32,
    pub resume_at: Option<DateTime<Utc>>,
}

pub fn job_flags(conn: &Connection, kind: JobKind, job_id: i64) -> Result<Option<Flags>, AppError> {
    let t = tables(kind);
    Ok(conn
        .prepare_cached(&format!(
            "SELECT status, paused, cancelled_at IS NOT NULL, concurrency, resume_at FROM {} WHERE id = ?1",
            t.jobs
        ))?
        .query_row(params![job_id], |r| {
            let status: String = r.get(0)?;
            Ok(Flags {
                status: status.parse().unwrap_or(JobStatus::Failed),
                paused: r.get::<_, i64>(1)? != 0,
                cancelled: r.get(2)?,
                concurrency: r.get(3)?,
                resume_at: parse_ts(r.get(4)?),
            })
        })
        .optional()?)
}

/// Results of preprocessing rows that may be fit for research (completed, first of
/// their key), as `(item id, result JSON)`, after item id `after`.
pub fn clean_rows(conn: &Connection, pre_job_id: i64, after: i64, limit: i64) -> Result<Vec<(i64, String)>, AppError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, result FROM preprocessing_results
         WHERE job_id = ?1 AND id > ?2 AND status = 'completed' AND duplicate_of IS NULL AND result IS NOT NULL
         ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![pre_job_id, after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Clears a rate-limit pause whose resume time has come; a pause set by a person
/// (no `resume_at`) is left alone.
pub fn auto_resume(conn: &Connection, kind: JobKind, job_id: i64) -> Result<bool, AppError> {
    let t = tables(kind);
    let now = ts(now());
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE {} SET paused = 0, paused_reason = NULL, resume_at = NULL, updated_at = ?2
             WHERE id = ?1 AND paused = 1 AND resume_at IS NOT NULL AND resume_at <= ?2
               AND status IN ('pending', 'processing')",
            t.jobs
        ))?
        .execute(params![job_id, now])?;
    Ok(changed == 1)
}
