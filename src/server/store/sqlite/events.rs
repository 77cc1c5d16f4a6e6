//! The SQLite statements on a job's activity log and the notification outbox.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::jobs::get_job;
use super::sql::{now, parse_ts};
use crate::model::{EventAction, JobEvent, JobKind, Source};
use crate::server::error::AppError;
use crate::server::store::rules;
use crate::server::store::types::{ts, Outgoing, Settled};

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
pub(super) fn queue_notification(
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

/// Deletes a gone job's activity log, in the caller's transaction.
pub fn purge_events(conn: &Connection, kind: JobKind, job_id: i64) -> Result<(), AppError> {
    conn.prepare_cached("DELETE FROM job_events WHERE kind = ?1 AND job_id = ?2")?
        .execute(params![kind.as_str(), job_id])?;
    Ok(())
}
