//! The store over PostgreSQL (SPEC section 10), for one process of many: it knows its
//! own worker id, holds items under leases, and leaves other processes' items alone.
//! The statements are in [`sql`], the runner's operations in `work`, the process's
//! part in the cluster (heartbeat, leader, rescue, LISTEN) in [`node`].

pub mod node;
mod sessions;
pub mod sql;
mod work;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::{GenericClient, Row};

use crate::model::{
    EventAction, Item, ItemPage, ItemStatus, Job, JobEvent, JobFilter, JobKind, JobStatus, JobsPage, Outcome,
    OutcomeCounts, Source,
};
use crate::server::error::AppError;
use crate::server::store::rules;
use crate::server::store::types::{
    input_map, Change, CleanRow, Hidden, JobColumns, JobSettings, NewItem, NewJob, ResearchLink, Rule,
};
use sql::{add_counts, add_event, notify_control, shard_of, tables};

/// A process's handle on the PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pub pool: Pool,
    /// This process's row in `workers`: it marks the items it holds and picks its
    /// counter shard.
    pub worker_id: i64,
    /// This process's name in `workers` (host and process id).
    pub name: String,
    /// For connections outside the pool (LISTEN).
    pub config: tokio_postgres::Config,
}

/// A job row with its counters summed over their shards (`{t}` the job table, `{c}`
/// the counter table).
fn job_select(kind: JobKind) -> String {
    let t = tables(kind);
    format!(
        "SELECT j.id, j.name, j.filename, j.status, j.paused, j.concurrency, j.total,
                COALESCE(c.pending, 0)::bigint, COALESCE(c.processing, 0)::bigint,
                COALESCE(c.completed, 0)::bigint, COALESCE(c.failed, 0)::bigint,
                j.created_at, j.started_at, j.updated_at, j.completed_at, j.cancelled_at,
                j.paused_reason, j.resume_at, j.archived_at, j.scheduled_pause_at, j.scheduled_resume_at
         FROM {jobs} AS j
         LEFT JOIN LATERAL (
             SELECT SUM(pending) AS pending, SUM(processing) AS processing,
                    SUM(completed) AS completed, SUM(failed) AS failed
             FROM {counts} WHERE job_id = j.id) AS c ON true",
        jobs = t.jobs,
        counts = t.counts
    )
}

fn job_from_row(kind: JobKind, r: &Row) -> Job {
    let status: &str = r.get(3);
    let cancelled_at: Option<DateTime<Utc>> = r.get(15);
    Job {
        id: r.get(0),
        kind,
        name: r.get(1),
        filename: r.get(2),
        status: status.parse().unwrap_or(JobStatus::Failed),
        paused: r.get::<_, i32>(4) != 0,
        cancelled: cancelled_at.is_some(),
        concurrency: r.get::<_, i32>(5).max(0) as u32,
        total: r.get(6),
        pending: r.get(7),
        processing: r.get(8),
        completed: r.get(9),
        failed: r.get(10),
        created_at: r.get(11),
        started_at: r.get(12),
        updated_at: r.get(13),
        completed_at: r.get(14),
        cancelled_at,
        paused_reason: r.get(16),
        resume_at: r.get(17),
        archived_at: r.get(18),
        scheduled_pause_at: r.get(19),
        scheduled_resume_at: r.get(20),
        waiting_on_hosts: 0,
        outcomes: None,
        research_job_id: None,
    }
}

fn not_found(kind: JobKind, id: i64) -> AppError {
    AppError::NotFound { kind: kind.as_str(), id: id.to_string() }
}

pub(super) async fn read_job(c: &impl GenericClient, kind: JobKind, id: i64) -> Result<Job, AppError> {
    let row = c
        .query_opt(&format!("{} WHERE j.id = $1 AND j.hidden IS NULL", job_select(kind)), &[&id])
        .await?
        .ok_or_else(|| not_found(kind, id))?;
    Ok(job_from_row(kind, &row))
}

/// Locks a visible job's row for the rest of the transaction (control actions and
/// claims take turns on it), then reads it.
async fn lock_job(c: &impl GenericClient, kind: JobKind, id: i64) -> Result<Job, AppError> {
    let locked = c
        .query_opt(
            &format!("SELECT id FROM {} WHERE id = $1 AND hidden IS NULL FOR NO KEY UPDATE", tables(kind).jobs),
            &[&id],
        )
        .await?;
    if locked.is_none() {
        return Err(not_found(kind, id));
    }
    read_job(c, kind, id).await
}

async fn outcome_counts(c: &impl GenericClient, id: i64) -> Result<OutcomeCounts, AppError> {
    let mut counts = OutcomeCounts::default();
    let rows = c
        .query(
            "SELECT outcome, count(*) FROM preprocessing_results
             WHERE job_id = $1 AND outcome IS NOT NULL GROUP BY outcome",
            &[&id],
        )
        .await?;
    for row in rows {
        if let Ok(outcome) = row.get::<_, &str>(0).parse::<Outcome>() {
            counts.add(outcome, row.get(1));
        }
    }
    Ok(counts)
}

async fn research_link(c: &impl GenericClient, id: i64) -> Result<Option<ResearchLink>, AppError> {
    Ok(c.query_opt(
        "SELECT r.id, r.name FROM preprocessing_jobs p JOIN processing_jobs r ON r.id = p.research_job_id
         WHERE p.id = $1 AND r.hidden IS NULL",
        &[&id],
    )
    .await?
    .map(|r| ResearchLink { id: r.get(0), name: r.get(1) }))
}

/// Links a preprocessing job to the research job made of its clean rows, in the
/// transaction that shows that job; refused (409, naming the job) when its rows went
/// to a research job that is still there. The row is locked first, so two sends take
/// turns, and the second's next statement sees the first's job.
async fn link_research(c: &impl GenericClient, pre_id: i64, research_id: i64) -> Result<(), AppError> {
    c.query_opt("SELECT 1 FROM preprocessing_jobs WHERE id = $1 AND hidden IS NULL FOR NO KEY UPDATE", &[&pre_id])
        .await?
        .ok_or_else(|| not_found(JobKind::Preprocess, pre_id))?;
    if let Some(link) = research_link(c, pre_id).await? {
        return Err(link.refusal());
    }
    c.execute("UPDATE preprocessing_jobs SET research_job_id = $2 WHERE id = $1", &[&pre_id, &research_id]).await?;
    Ok(())
}

async fn columns_of(c: &impl GenericClient, kind: JobKind, id: i64) -> Result<Vec<String>, AppError> {
    let row = c
        .query_opt(&format!("SELECT columns FROM {} WHERE id = $1 AND hidden IS NULL", tables(kind).jobs), &[&id])
        .await?
        .ok_or_else(|| not_found(kind, id))?;
    serde_json::from_str(row.get(0)).map_err(|e| AppError::Internal(format!("job columns: {e}")))
}

fn item_select(kind: JobKind) -> String {
    let extra = match kind {
        JobKind::Research => "NULL::text, NULL::bigint",
        JobKind::Preprocess => "normalized, duplicate_of",
    };
    format!(
        "SELECT id, line, status, attempts, error, name, website, domain, input, result, {extra},
                started_at, finished_at FROM {}",
        tables(kind).items
    )
}

fn item_from_row(columns: &[String], r: &Row) -> Item {
    let status: &str = r.get(2);
    let result: Option<String> = r.get(9);
    let normalized: Option<String> = r.get(10);
    Item {
        id: r.get(0),
        line: r.get(1),
        status: status.parse().unwrap_or(ItemStatus::Failed),
        attempts: i64::from(r.get::<_, i32>(3)),
        error: r.get(4),
        name: r.get(5),
        website: r.get(6),
        domain: r.get(7),
        input: input_map(columns, r.get(8)),
        result: result.or(normalized).and_then(|s| serde_json::from_str(&s).ok()),
        duplicate_of: r.get(11),
        started_at: r.get(12),
        finished_at: r.get(13),
    }
}

/// Puts `item_ids` (or, with `None`, every item of the job) that are in flight — held
/// by `holder`, or by anyone when `holder` is `None` — back to `pending`, counters to
/// match. Returns how many moved.
async fn put_back(
    c: &impl GenericClient,
    kind: JobKind,
    job_id: i64,
    holder: Option<i64>,
    item_id: Option<i64>,
    shard: i32,
) -> Result<i64, AppError> {
    let moved: i64 = c
        .query_one(
            &format!(
                "WITH back AS (
                     UPDATE {} SET status = 'pending', worker_id = NULL, started_at = NULL
                     WHERE job_id = $1 AND status = 'processing'
                       AND ($2::bigint IS NULL OR worker_id = $2) AND ($3::bigint IS NULL OR id = $3)
                     RETURNING 1)
                 SELECT count(*) FROM back",
                tables(kind).items
            ),
            &[&job_id, &holder, &item_id],
        )
        .await?
        .get(0);
    add_counts(c, kind, job_id, shard, [moved, -moved, 0, 0]).await?;
    Ok(moved)
}

/// A read-only transaction that sees one snapshot throughout.
async fn snapshot(c: &mut deadpool_postgres::Object) -> Result<deadpool_postgres::Transaction<'_>, AppError> {
    Ok(c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// `UPDATE <the job table> <set_where>` in the caller's transaction; when it changed
/// the job, every worker hears of it when the transaction commits.
async fn change_job(
    tx: &tokio_postgres::Transaction<'_>,
    kind: JobKind,
    id: i64,
    set_where: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<bool, AppError> {
    let changed = tx.execute(&format!("UPDATE {} {set_where}", tables(kind).jobs), params).await? == 1;
    if changed {
        notify_control(tx, kind, id).await?;
    }
    Ok(changed)
}

impl PgStore {
    /// Connects, applies the migrations this build has (under the advisory lock, so
    /// processes starting together do it once), and registers this process as a worker.
    /// `schema`, when given, is the connection's `search_path`.
    pub async fn open(url: &str, schema: Option<&str>, pool_size: usize) -> Result<Self, AppError> {
        let config = sql::config(url, schema)?;
        let (mut client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| AppError::Internal(format!("cannot connect to PostgreSQL: {e}")))?;
        let conn = tokio::spawn(conn);
        let applied = sql::migrate(&mut client).await?;
        if applied > 0 {
            tracing::info!(migrations = applied, "migrated the PostgreSQL schema");
        }
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let name = format!("{}:{}", if host.is_empty() { "jobdeck" } else { &host }, std::process::id());
        let worker_id = sql::register_worker(&client, &name).await?;
        drop(client);
        let _ = conn.await;
        let pool = sql::pool(config.clone(), pool_size)?;
        Ok(Self { pool, worker_id, name, config })
    }

    fn shard(&self) -> i32 {
        shard_of(self.worker_id)
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, AppError> {
        self.pool.get().await.map_err(|e| AppError::Internal(format!("PostgreSQL pool: {e}")))
    }

    pub async fn job(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        read_job(&**self.client().await?, kind, id).await
    }

    pub async fn page(&self, filter: JobFilter, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        let mut c = self.client().await?;
        // One snapshot, so the count agrees with the page.
        let tx = snapshot(&mut c).await?;
        let newest = offset.saturating_add(limit);
        let pattern = filter.search.as_deref().map(rules::like_pattern);
        let (mut jobs, mut total) = (Vec::new(), 0i64);
        for kind in filter.kinds() {
            // Completed counts only grow (a retry moves failed items), so no shard's
            // count above zero is "none completed".
            let none_completed = format!(
                "NOT EXISTS (SELECT 1 FROM {} AS n WHERE n.job_id = j.id AND n.completed > 0)",
                tables(kind).counts
            );
            let cond = rules::filter_condition(&filter, &none_completed);
            let rows = tx
                .query(
                    &format!(
                        "{} WHERE {cond} AND ($2::text IS NULL OR j.name ILIKE $2) ORDER BY j.id DESC LIMIT $1",
                        job_select(kind)
                    ),
                    &[&newest, &pattern],
                )
                .await?;
            jobs.extend(rows.iter().map(|r| job_from_row(kind, r)));
            let count: i64 = tx
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} AS j WHERE {cond} AND ($1::text IS NULL OR name ILIKE $1)",
                        tables(kind).jobs
                    ),
                    &[&pattern],
                )
                .await?
                .get(0);
            total += count;
        }
        tx.commit().await?;
        Ok(JobsPage::newest_first(jobs, total, offset, limit))
    }

    pub async fn events(
        &self,
        kind: JobKind,
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobEvent>, AppError> {
        let mut c = self.client().await?;
        let tx = snapshot(&mut c).await?;
        read_job(&*tx, kind, id).await?;
        let rows = tx
            .query(
                "SELECT id, at, action, source, detail FROM job_events
                 WHERE kind = $1 AND job_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4",
                &[&kind.as_str(), &id, &before.unwrap_or(i64::MAX), &limit],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| JobEvent {
                id: r.get(0),
                at: r.get(1),
                action: r.get::<_, &str>(2).parse().unwrap_or(EventAction::Changed),
                source: r.get::<_, &str>(3).parse().unwrap_or(Source::System),
                detail: r.get(4),
            })
            .collect())
    }

    pub async fn items(
        &self,
        kind: JobKind,
        id: i64,
        status: Option<ItemStatus>,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        let mut c = self.client().await?;
        let tx = snapshot(&mut c).await?;
        let job = read_job(&*tx, kind, id).await?;
        let columns = columns_of(&*tx, kind, id).await?;
        let total = job.count_of(status);
        // Past the last item there is nothing to read: the scan stays within the job.
        let offset = offset.min(total);
        let rows = tx
            .query(
                &format!(
                    "{} WHERE job_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY id LIMIT $3 OFFSET $4",
                    item_select(kind)
                ),
                &[&id, &status.map(ItemStatus::as_str), &limit, &offset],
            )
            .await?;
        tx.commit().await?;
        Ok(ItemPage { items: rows.iter().map(|r| item_from_row(&columns, r)).collect(), total, offset, limit })
    }

    /// A page of a preprocessing job's rows of one outcome, in file order, read
    /// through the outcome index (SPEC section 16).
    pub async fn outcome_items(
        &self,
        id: i64,
        outcome: Outcome,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        let mut c = self.client().await?;
        let tx = snapshot(&mut c).await?;
        let kind = JobKind::Preprocess;
        let columns = columns_of(&*tx, kind, id).await?;
        let total: i64 = tx
            .query_one(
                "SELECT count(*) FROM preprocessing_results WHERE job_id = $1 AND outcome = $2 AND outcome IS NOT NULL",
                &[&id, &outcome.as_str()],
            )
            .await?
            .get(0);
        let offset = offset.min(total);
        let rows = tx
            .query(
                &format!(
                    "{} WHERE job_id = $1 AND outcome = $2 AND outcome IS NOT NULL ORDER BY id LIMIT $3 OFFSET $4",
                    item_select(kind)
                ),
                &[&id, &outcome.as_str(), &limit, &offset],
            )
            .await?;
        tx.commit().await?;
        Ok(ItemPage { items: rows.iter().map(|r| item_from_row(&columns, r)).collect(), total, offset, limit })
    }

    /// A preprocessing job's finished rows counted by outcome.
    pub async fn outcome_counts(&self, id: i64) -> Result<OutcomeCounts, AppError> {
        outcome_counts(&**self.client().await?, id).await
    }

    /// The research job a preprocessing job's clean rows went to, while it is there.
    pub async fn research_link(&self, id: i64) -> Result<Option<ResearchLink>, AppError> {
        research_link(&**self.client().await?, id).await
    }

    /// Every item keeps its name, website and domain here: the names alone.
    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<JobColumns, AppError> {
        columns_of(&**self.client().await?, kind, id).await.map(JobColumns::names)
    }

    pub async fn items_after(
        &self,
        kind: JobKind,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Vec<Item>), AppError> {
        let c = self.client().await?;
        let columns = columns_of(&**c, kind, id).await?;
        let rows = c
            .query(
                &format!("{} WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3", item_select(kind)),
                &[&id, &after, &limit],
            )
            .await?;
        let items = rows.iter().map(|r| item_from_row(&columns, r)).collect();
        Ok((columns, items))
    }

    pub async fn clean_rows(&self, pre_id: i64, after: i64, limit: i64) -> Result<Vec<CleanRow>, AppError> {
        let mut c = self.client().await?;
        let tx = snapshot(&mut c).await?;
        read_job(&*tx, JobKind::Preprocess, pre_id).await?;
        let rows = tx
            .query(
                "SELECT id, r ->> 'company', COALESCE(r #>> '{liveness,finalUrl}', r ->> 'website'), r ->> 'domain'
                 FROM (SELECT id, result::jsonb AS r FROM preprocessing_results
                       WHERE job_id = $1 AND id > $2 AND status = 'completed' AND duplicate_of IS NULL) AS done
                 WHERE (r -> 'valid') = 'true'::jsonb AND (r #> '{liveness,reachable}') = 'true'::jsonb
                 ORDER BY id LIMIT $3",
                &[&pre_id, &after, &limit],
            )
            .await?;
        tx.commit().await?;
        let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(rows
            .iter()
            .map(|r| CleanRow {
                id: r.get(0),
                company: text(r.get(1)),
                website: text(r.get(2)),
                domain: text(r.get(3)),
            })
            .collect())
    }

    pub async fn insert_job(&self, job: NewJob) -> Result<i64, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let id = sql::insert_job(&tx, &job, Some(self.worker_id)).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn insert_items(&self, kind: JobKind, id: i64, chunk: Vec<NewItem>) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        sql::insert_items(&tx, kind, id, &chunk).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn link_duplicates(&self, id: i64) -> Result<(), AppError> {
        self.client()
            .await?
            .execute(
                "UPDATE preprocessing_results AS r SET duplicate_of = first.line
                 FROM (SELECT dedupe_key, MIN(line) AS line FROM preprocessing_results
                       WHERE job_id = $1 AND dedupe_key IS NOT NULL GROUP BY dedupe_key) AS first
                 WHERE r.job_id = $1 AND r.dedupe_key = first.dedupe_key AND r.line <> first.line",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub async fn reveal(
        &self,
        kind: JobKind,
        id: i64,
        count: i64,
        settings: JobSettings,
        source: Source,
        from: Option<i64>,
    ) -> Result<Job, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            &format!(
                "UPDATE {} SET name = $2, concurrency = $3 WHERE id = $1 AND hidden IS NOT NULL",
                tables(kind).jobs
            ),
            &[&id, &settings.name, &i32::try_from(settings.concurrency).unwrap_or(i32::MAX)],
        )
        .await?;
        sql::reveal_job(&*tx, kind, id, count).await?;
        if let Some(pre_id) = from {
            link_research(&*tx, pre_id, id).await?;
        }
        add_event(&*tx, kind, id, EventAction::Created, source, None).await?;
        let job = read_job(&*tx, kind, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    pub async fn hide(&self, kind: JobKind, id: i64, why: Hidden) -> Result<(), AppError> {
        self.client()
            .await?
            .execute(
                &format!("UPDATE {} SET hidden = $2, updated_at = now() WHERE id = $1", tables(kind).jobs),
                &[&id, &why.as_str()],
            )
            .await?;
        Ok(())
    }

    pub async fn purge_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<bool, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let t = tables(kind);
        let removed = tx
            .execute(
                &format!(
                    "DELETE FROM {items} WHERE id IN (SELECT id FROM {items} WHERE job_id = $1 ORDER BY id LIMIT $2)",
                    items = t.items
                ),
                &[&id, &limit],
            )
            .await?;
        let gone = (removed as i64) < limit;
        if gone {
            tx.execute(&format!("DELETE FROM {} WHERE id = $1 AND hidden = 'deleting'", t.jobs), &[&id]).await?;
            tx.execute("DELETE FROM job_events WHERE kind = $1 AND job_id = $2", &[&kind.as_str(), &id]).await?;
        }
        tx.commit().await?;
        Ok(gone)
    }

    pub async fn control(&self, kind: JobKind, id: i64, source: Source, rule: Rule) -> Result<Job, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let before = lock_job(&*tx, kind, id).await?;
        let Some(change) = rule(&before)? else { return Ok(before) };
        let mut moved = 0;
        match &change {
            Change::Pause | Change::Resume => {
                sql::set_paused(&tx, kind, id, change == Change::Pause).await?;
            }
            Change::Cancel => {
                // Every worker's items in flight go back; their late results find
                // nothing they hold.
                put_back(&*tx, kind, id, None, None, self.shard()).await?;
                let sql = "SET status = 'failed', cancelled_at = now(), updated_at = now(), paused = 0,
                               paused_reason = NULL, resume_at = NULL, scheduled_pause_at = NULL,
                               scheduled_resume_at = NULL, fail_streak = 0 WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id]).await?;
            }
            Change::Retry { .. } => {
                moved = tx
                    .execute(
                        &format!(
                            "UPDATE {} SET status = 'pending', attempts = 0, error = NULL, result = NULL,
                                 started_at = NULL, finished_at = NULL, worker_id = NULL
                             WHERE job_id = $1 AND status = 'failed'",
                            tables(kind).items
                        ),
                        &[&id],
                    )
                    .await? as i64;
                add_counts(&*tx, kind, id, self.shard(), [moved, 0, 0, -moved]).await?;
                let sql = "SET status = 'processing', completed_at = NULL, paused = 0, paused_reason = NULL,
                               resume_at = NULL, updated_at = now() WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id]).await?;
            }
            Change::Archive | Change::Unarchive => {
                let sql = "SET archived_at = CASE WHEN $2 THEN now() END, updated_at = now() WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id, &(change == Change::Archive)]).await?;
            }
            Change::Edit { name, concurrency } => {
                let concurrency = concurrency.map(|c| c as i32);
                let sql = "SET name = COALESCE($2, name), concurrency = COALESCE($3, concurrency),
                               updated_at = now() WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id, name, &concurrency]).await?;
            }
            Change::Schedule { pause_at, resume_at } => {
                let sql = "SET scheduled_pause_at = $2, scheduled_resume_at = $3, updated_at = now() WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id, pause_at, resume_at]).await?;
            }
        }
        let detail = change.detail(&before, moved);
        add_event(&*tx, kind, id, change.action(), source, detail.as_deref()).await?;
        let job = read_job(&*tx, kind, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    pub async fn delete(
        &self,
        kind: JobKind,
        id: i64,
        allowed: fn(&Job) -> Result<(), AppError>,
    ) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        allowed(&lock_job(&*tx, kind, id).await?)?;
        tx.execute(
            &format!("UPDATE {} SET hidden = 'deleting', updated_at = now() WHERE id = $1", tables(kind).jobs),
            &[&id],
        )
        .await?;
        notify_control(&*tx, kind, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// At start-up on PostgreSQL nothing in flight is reset (other workers' items are
    /// live; the leader rescues a dead worker's). Imports whose importer is gone become
    /// deletes; every delete is returned to be finished.
    pub async fn recover(&self) -> Result<(usize, Vec<(JobKind, i64, Hidden)>), AppError> {
        let c = self.client().await?;
        let mut hidden = Vec::new();
        for kind in JobKind::ALL {
            let t = tables(kind);
            c.execute(
                &format!(
                    "UPDATE {} SET hidden = 'deleting' WHERE hidden = 'importing'
                       AND (importer IS NULL OR importer NOT IN (SELECT id FROM workers))",
                    t.jobs
                ),
                &[],
            )
            .await?;
            for r in c.query(&format!("SELECT id FROM {} WHERE hidden = 'deleting' ORDER BY id", t.jobs), &[]).await? {
                hidden.push((kind, r.get(0), Hidden::Deleting));
            }
        }
        Ok((0, hidden))
    }
}
