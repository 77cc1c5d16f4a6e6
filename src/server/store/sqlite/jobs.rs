//! The SQLite statements on a job's row: creating and revealing it, reading it and its
//! column roles, the control actions' changes (pause, cancel, archive, edit, schedules),
//! hiding and purging, and the dashboard's filters.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::events::{add_event, purge_events};
use super::items::reset_processing;
use super::sql::{job_from_row, json, now, parse_ts, sql, JOB_COLUMNS};
use crate::model::{EventAction, Job, JobFilter, JobKind, JobStatus, Source};
use crate::server::error::AppError;
use crate::server::rows::ColumnMap;
use crate::server::store::rules::{filter_condition, like_pattern, plan_schedule};
use crate::server::store::types::{ts, Flags, Hidden, JobColumns, JobSettings};

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

/// Makes an imported job visible with its totals, in the transaction that ends the import.
/// Sets a hidden job's name and concurrency as its whole upload form gave them.
pub fn settle_job(conn: &Connection, kind: JobKind, job_id: i64, settings: &JobSettings) -> Result<(), AppError> {
    conn.prepare_cached(&format!(
        "UPDATE {} SET name = ?2, concurrency = ?3 WHERE id = ?1 AND hidden IS NOT NULL",
        sql(kind).jobs
    ))?
    .execute(params![job_id, settings.name, settings.concurrency])?;
    Ok(())
}

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
pub(super) fn read_roles(conn: &Connection, kind: JobKind, job_id: i64) -> Result<Option<ColumnMap>, AppError> {
    let roles: Option<String> =
        conn.prepare_cached(&sql(kind).roles)?.query_row(params![job_id], |r| r.get(0)).optional()?.flatten();
    parse_roles(roles)
}

/// A job's `roles` column as stored: JSON, or NULL for none.
pub(super) fn parse_roles(stored: Option<String>) -> Result<Option<ColumnMap>, AppError> {
    stored.map(|r| serde_json::from_str(&r)).transpose().map_err(|e| AppError::Internal(format!("job roles: {e}")))
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

/// Clears a rate-limit pause whose resume time has come; a pause set by a person
/// (no `resume_at`) is left alone.
pub fn auto_resume(conn: &Connection, kind: JobKind, job_id: i64) -> Result<bool, AppError> {
    let changed = conn.prepare_cached(&sql(kind).auto_resume)?.execute(params![job_id, ts(now())])?;
    if changed == 1 {
        add_event(conn, kind, job_id, EventAction::AutoResumed, Source::RateLimit, None)?;
    }
    Ok(changed == 1)
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

/// The newest `limit` jobs of one kind the filter takes, newest first, and how many
/// it takes in all.
pub fn filtered_jobs(
    conn: &Connection,
    kind: JobKind,
    filter: &JobFilter,
    limit: i64,
) -> Result<(Vec<Job>, i64), AppError> {
    let jobs_table = sql(kind).jobs;
    let cond = filter_condition(filter, "completed_count = 0");
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
