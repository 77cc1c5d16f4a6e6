//! The runner's operations on PostgreSQL: what may run, a turn's results and claims in
//! one transaction, items put back, rate-limit pauses and schedules, the notification
//! outbox shared by every process, and completing a job.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::sql::{self, tables, Held, Take};
use super::{add_event, change_job, put_back, read_job, PgStore};
use crate::model::{EventAction, JobKind, JobStatus, Source};
use crate::server::error::AppError;
use crate::server::store::rules;
use crate::server::store::types::{Finished, Flags, Outgoing, Settled, Starter, Turn};

/// Rounds of claims one turn may make in a single transaction (see [`PgStore::turn`]).
pub const TURN_ROUNDS: usize = 64;
/// After this long, a turn ends with the round in progress. A pause or another
/// worker's claim waits for the job's row at most about this long (plus the round in
/// progress and the commit) per turn queued before it: about 10 ms a turn keeps a pause
/// within SPEC section 10's 100 ms with several workers on one job, and costs a turn's
/// begin and commit (about 0.6 ms here) every 10 ms.
pub const TURN_TIME: std::time::Duration = std::time::Duration::from_millis(10);
/// Items a [`Take::Finish`] round locks: enough that its round trip is a small part of
/// a round, few enough that a round stays well inside [`TURN_TIME`]'s order.
pub const FINISH_ROUND: usize = 256;

impl PgStore {
    pub async fn live_jobs(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        let c = self.client().await?;
        let mut out = Vec::new();
        for kind in JobKind::ALL {
            let rows = c
                .query(
                    &format!(
                        "SELECT id FROM {} WHERE status IN ('pending', 'processing') AND hidden IS NULL ORDER BY id",
                        tables(kind).jobs
                    ),
                    &[],
                )
                .await?;
            out.extend(rows.iter().map(|r| (kind, r.get(0))));
        }
        Ok(out)
    }

    pub async fn flags(&self, kind: JobKind, id: i64) -> Result<Option<Flags>, AppError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT status, paused, concurrency, resume_at FROM {} WHERE id = $1 AND hidden IS NULL",
                    tables(kind).jobs
                ),
                &[&id],
            )
            .await?;
        Ok(row.map(|r| Flags {
            status: r.get::<_, &str>(0).parse().unwrap_or(JobStatus::Failed),
            paused: r.get::<_, i32>(1) != 0,
            concurrency: r.get::<_, i32>(2).max(0) as u32,
            resume_at: r.get(3),
        }))
    }

    /// Retried results, stored alone.
    pub async fn store_results(
        &self,
        kind: JobKind,
        id: i64,
        finished: Vec<Finished>,
        burst: u32,
    ) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let stored = sql::finish_batch(&tx, kind, id, self.worker_id, &finished, burst).await?;
        tx.commit().await?;
        if stored > 0 {
            self.complete_after(&c, kind, id).await?;
        }
        Ok(())
    }

    /// A turn stores `finished` and claims up to `want` items in one transaction and
    /// hands them to `starter`. While the starter finishes items at once (a step that
    /// needs nothing outside the item), their results are stored and more items taken
    /// in the same transaction, up to [`TURN_ROUNDS`] rounds or [`TURN_TIME`]: one
    /// commit then carries many rounds. Once a round finished every item it claimed at
    /// once, the next rounds lock [`FINISH_ROUND`] pending items at a time instead of
    /// claiming a window: they are finished, and their results stored, before the
    /// commit, or left `pending` (an item that needs the outside is claimed by the round
    /// after), so none of them is ever in flight and the job's concurrency is kept.
    /// Each round holds the job's row, so a pause or cancel from another process waits
    /// for the turn's commit (about [`TURN_TIME`] and the round in progress) and is seen
    /// by the next take; items finished inside the transaction are never seen in flight
    /// by anyone else.
    pub async fn turn<S: Starter>(
        &self,
        kind: JobKind,
        id: i64,
        finished: Arc<Vec<Finished>>,
        want: usize,
        burst: u32,
        mut starter: S,
    ) -> Result<Turn<S>, AppError> {
        let began = std::time::Instant::now();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut store_now: (&[Finished], Held) = (&finished, Held::Claimed);
        let mut done;
        let (mut want, mut round, mut stored) = (want, 0, 0);
        let mut take = Take::Claim(want);
        let (unstored, exhausted, again) = loop {
            round += 1;
            let (written, rows) = sql::round(&tx, kind, id, self.worker_id, store_now, take, burst).await?;
            stored += written;
            let (exhausted, held, all_at_once) = match take {
                Take::Claim(0) => break (Vec::new(), false, false),
                Take::Claim(n) => {
                    let claimed = rows.len();
                    (done, want) = starter.start(rows);
                    (claimed < n, Held::Claimed, claimed > 0 && done.len() == claimed && want > 0)
                }
                Take::Finish(n) => {
                    let found = rows.len();
                    let left;
                    (done, left) = starter.finish_now(rows);
                    (found < n && left == 0, Held::Locked, left == 0)
                }
            };
            if !rules::another_round(round, TURN_ROUNDS, exhausted, done.len(), began.elapsed() < TURN_TIME) {
                if held == Held::Locked {
                    // Results of locked items never leave the transaction.
                    if !done.is_empty() {
                        let (written, _) =
                            sql::round(&tx, kind, id, self.worker_id, (&done, held), Take::Claim(0), burst).await?;
                        stored += written;
                    }
                    // Stored, or left for a claim (a batch of items that all need the
                    // outside): either way the next turn is due at once.
                    break (Vec::new(), exhausted, !exhausted);
                }
                break (done, exhausted, false);
            }
            take = if all_at_once { Take::Finish(FINISH_ROUND) } else { Take::Claim(want) };
            store_now = (&done, held);
        };
        tx.commit().await?;
        if stored > 0 && exhausted {
            self.complete_after(&c, kind, id).await?;
        }
        Ok(Turn { starter, unstored, exhausted, again })
    }

    /// A retry moves every failed item in its own transaction, which holds only this
    /// job's row: nothing to do before it.
    pub async fn retry_batch(&self, _kind: JobKind, _id: i64, _limit: i64) -> Result<i64, AppError> {
        Ok(0)
    }

    /// Possibly a job's last results were just committed. Read after that commit, the
    /// sums show nothing left to whichever of several workers finishing at once commits
    /// last; only then is the job row locked to complete it (see `complete_if_done`).
    async fn complete_after(&self, c: &deadpool_postgres::Object, kind: JobKind, id: i64) -> Result<(), AppError> {
        let left = sql::counts(&***c, kind, id).await?;
        if left.pending == 0 && left.processing == 0 {
            self.complete_if_done(kind, id).await?;
        }
        Ok(())
    }

    pub async fn release_held(&self, kind: JobKind, id: i64) -> Result<usize, AppError> {
        let c = self.client().await?;
        Ok(put_back(&**c, kind, id, Some(self.worker_id), None, self.shard()).await? as usize)
    }

    pub async fn requeue(&self, kind: JobKind, id: i64, item_id: i64) -> Result<bool, AppError> {
        let c = self.client().await?;
        Ok(put_back(&**c, kind, id, Some(self.worker_id), Some(item_id), self.shard()).await? == 1)
    }

    pub async fn rate_limited(
        &self,
        kind: JobKind,
        id: i64,
        item_id: i64,
        reason: String,
        resume_at: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The job's row first, as a turn takes it, then the item and its counter shard:
        // the same order as every turn, so the two never wait on each other.
        let was_paused = tx
            .query_opt(&format!("SELECT paused FROM {} WHERE id = $1 FOR NO KEY UPDATE", tables(kind).jobs), &[&id])
            .await?
            .is_some_and(|r| r.get::<_, i32>(0) != 0);
        put_back(&*tx, kind, id, Some(self.worker_id), Some(item_id), self.shard()).await?;
        // A pause with a resume time is a rate limit's own; a person's is never taken
        // over; a second rate limit keeps the later time.
        let sql = "SET paused = 1, paused_reason = $2, updated_at = now(), status = 'processing',
                       resume_at = CASE WHEN paused = 1 AND resume_at > $3 THEN resume_at ELSE $3 END
                   WHERE id = $1 AND status IN ('pending', 'processing') AND hidden IS NULL
                     AND (paused = 0 OR resume_at IS NOT NULL)";
        let changed = change_job(&tx, kind, id, sql, &[&id, &reason, &resume_at]).await?;
        // Only the pause itself is logged and notified; later 429s move the time.
        if changed && !was_paused {
            add_event(&*tx, kind, id, EventAction::AutoPaused, Source::RateLimit, Some(&reason)).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn auto_resume(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let sql = "SET paused = 0, paused_reason = NULL, resume_at = NULL, updated_at = now()
                   WHERE id = $1 AND paused = 1 AND resume_at IS NOT NULL AND resume_at <= now()
                     AND status IN ('pending', 'processing') AND hidden IS NULL";
        let changed = change_job(&tx, kind, id, sql, &[&id]).await?;
        if changed {
            add_event(&*tx, kind, id, EventAction::AutoResumed, Source::RateLimit, None).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Fires the due scheduled pauses and resumes, as the SQLite store does on
    /// SQLite. Each job's row is locked and re-read first, and rows another process is
    /// firing are skipped, so each fires once over all processes.
    pub async fn fire_schedules(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        let mut fired = Vec::new();
        for kind in JobKind::ALL {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let due = tx
                .query(
                    &format!(
                        "SELECT id, scheduled_pause_at, scheduled_resume_at, paused, resume_at, now() FROM {}
                         WHERE status IN ('pending', 'processing') AND hidden IS NULL
                           AND (scheduled_pause_at <= now() OR scheduled_resume_at <= now())
                         FOR NO KEY UPDATE SKIP LOCKED",
                        tables(kind).jobs
                    ),
                    &[],
                )
                .await?;
            for row in due {
                let id: i64 = row.get(0);
                let (pause_at, resume_at): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (row.get(1), row.get(2));
                let (paused, rate_limited) =
                    (row.get::<_, i32>(3) != 0, row.get::<_, Option<DateTime<Utc>>>(4).is_some());
                let now: DateTime<Utc> = row.get(5);
                let plan = rules::plan_schedule(pause_at, resume_at, now, paused, paused && rate_limited);
                let sql = "SET scheduled_pause_at = $2, scheduled_resume_at = $3, updated_at = now() WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id, &plan.keep.0, &plan.keep.1]).await?;
                for step in plan.steps {
                    if let Some(pause) = step.set_paused {
                        sql::set_paused(&tx, kind, id, pause).await?;
                    }
                    add_event(&*tx, kind, id, step.action, Source::Schedule, Some(&step.detail)).await?;
                }
                fired.push((kind, id));
            }
            tx.commit().await?;
        }
        Ok(fired)
    }

    pub async fn next_schedule(&self) -> Result<Option<DateTime<Utc>>, AppError> {
        let c = self.client().await?;
        let mut next: Option<DateTime<Utc>> = None;
        for kind in JobKind::ALL {
            let at: Option<DateTime<Utc>> = c
                .query_one(
                    &format!(
                        "SELECT MIN(LEAST(scheduled_pause_at, scheduled_resume_at)) FROM {}
                         WHERE status IN ('pending', 'processing') AND hidden IS NULL",
                        tables(kind).jobs
                    ),
                    &[],
                )
                .await?
                .get(0);
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    pub async fn set_channels(&self, channels: Vec<&'static str>) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("DELETE FROM notify_channels", &[]).await?;
        for channel in &channels {
            tx.execute("INSERT INTO notify_channels (channel) VALUES ($1)", &[channel]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes due notifications no other process holds (its lease ran out or it never
    /// had one), skipping rows another process is taking at this moment.
    pub async fn claim_outbox(
        &self,
        lease: std::time::Duration,
        limit: i64,
        channels: Vec<&'static str>,
    ) -> Result<Vec<Outgoing>, AppError> {
        let c = self.client().await?;
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        // The lease is the database's time, as the times it is compared with are.
        let rows = c
            .query(
                "UPDATE outbox SET locked_until = now() + $1::float8 * interval '1 second'
                 WHERE id IN (SELECT id FROM outbox
                              WHERE next_at <= now() AND (locked_until IS NULL OR locked_until <= now())
                                AND channel = ANY($3)
                              ORDER BY next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, channel, event, kind, job_id, payload, attempts, locked_until",
                &[&lease.as_secs_f64(), &limit, &channels],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Outgoing {
                id: r.get(0),
                channel: r.get(1),
                event: r.get(2),
                kind: r.get::<_, &str>(3).parse().unwrap_or(JobKind::Research),
                job_id: r.get(4),
                payload: r.get(5),
                attempts: r.get::<_, i32>(6).max(0) as u32,
                lease: r.get(7),
            })
            .collect())
    }

    pub async fn settle_outgoing(&self, sent: Outgoing, outcome: Settled) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Only while this process still holds the row (its lease did not run out).
        let (changed, action, detail) = match &outcome {
            Ok(detail) => {
                let n = tx
                    .execute("DELETE FROM outbox WHERE id = $1 AND locked_until = $2", &[&sent.id, &sent.lease])
                    .await?;
                (n, EventAction::Notified, detail.as_str())
            }
            Err((error, Some(next))) => {
                let n = tx
                    .execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_at = $2, locked_until = NULL, last_error = $3
                         WHERE id = $1 AND locked_until = $4",
                        &[&sent.id, next, error, &sent.lease],
                    )
                    .await?;
                (n, EventAction::NotifyFailed, error.as_str())
            }
            Err((error, None)) => {
                let n = tx
                    .execute("DELETE FROM outbox WHERE id = $1 AND locked_until = $2", &[&sent.id, &sent.lease])
                    .await?;
                (n, EventAction::NotifyFailed, error.as_str())
            }
        };
        if changed == 1 && read_job(&*tx, sent.kind, sent.job_id).await.is_ok() {
            add_event(&*tx, sent.kind, sent.job_id, action, Source::System, Some(detail)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn next_outgoing(&self, channels: Vec<&'static str>) -> Result<Option<DateTime<Utc>>, AppError> {
        let c = self.client().await?;
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let sql = "SELECT MIN(GREATEST(next_at, COALESCE(locked_until, next_at))) FROM outbox WHERE channel = ANY($1)";
        Ok(c.query_one(sql, &[&channels]).await?.get(0))
    }

    pub async fn complete_if_done(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let done = sql::complete_if_done(&tx, kind, id).await?;
        tx.commit().await?;
        Ok(done)
    }
}
