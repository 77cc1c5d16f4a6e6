//! The store boundary's methods on PostgreSQL ([`crate::server::backend::Backend`]),
//! for one process of many: it knows its own worker id, holds items under leases, and
//! leaves other processes' items alone.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::{GenericClient, Row};

use super::{add_counts, add_event, kind_word, notify_control, shard_of, tables};
use crate::model::{
    EventAction, Item, ItemPage, ItemStatus, Job, JobEvent, JobFilter, JobKind, JobStatus, JobsPage, Source,
};
use crate::server::error::AppError;
use crate::server::import::NewJob;
use crate::server::store::types::{Change, Rule};
use crate::server::store::types::{ClaimedRow, CleanRow, Finished, Flags, Hidden, NewItem};
use crate::server::store::{self, input_map};

/// A process's handle on the PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PgBackend {
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

impl PgBackend {
    /// Connects, applies the migrations this build has (under the advisory lock, so
    /// processes starting together do it once), and registers this process as a worker.
    /// `schema`, when given, is the connection's `search_path`.
    pub async fn open(url: &str, schema: Option<&str>, pool_size: usize) -> Result<Self, AppError> {
        let config = super::config(url, schema)?;
        let (mut client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| AppError::Internal(format!("cannot connect to PostgreSQL: {e}")))?;
        let conn = tokio::spawn(conn);
        let applied = super::migrate(&mut client).await?;
        if applied > 0 {
            tracing::info!(migrations = applied, "migrated the PostgreSQL schema");
        }
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let name = format!("{}:{}", if host.is_empty() { "jobdeck" } else { &host }, std::process::id());
        let worker_id = super::register_worker(&client, &name).await?;
        drop(client);
        let _ = conn.await;
        let pool = super::pool(config.clone(), pool_size)?;
        Ok(Self { pool, worker_id, name, config })
    }

    /// Beats; if this worker was declared dead meanwhile, joins again under the same id
    /// and says so (`false`).
    pub async fn heartbeat(&self) -> Result<bool, AppError> {
        let c = self.client().await?;
        if super::heartbeat(&**c, self.worker_id).await? {
            return Ok(true);
        }
        c.execute(
            "INSERT INTO workers (id, name) OVERRIDING SYSTEM VALUE VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&self.worker_id, &self.name],
        )
        .await?;
        Ok(false)
    }

    /// Signs this worker off at a graceful stop (its items were put back already).
    pub async fn leave(&self) -> Result<(), AppError> {
        let c = self.client().await?;
        c.execute("DELETE FROM workers WHERE id = $1", &[&self.worker_id]).await?;
        c.execute("DELETE FROM leases WHERE holder = $1", &[&self.worker_id]).await?;
        Ok(())
    }

    /// Takes or keeps the leader's lease for one worker timeout; while it holds it,
    /// rescues dead workers. `None` when another process leads.
    pub async fn rescue_if_leader(&self, timeout: std::time::Duration) -> Result<Option<super::Rescued>, AppError> {
        let mut c = self.client().await?;
        if !super::acquire_lease(&**c, "leader", self.worker_id, timeout).await? {
            return Ok(None);
        }
        let tx = c.transaction().await?;
        let mut rescued = super::rescue_dead(&tx, self.worker_id, timeout).await?;
        // An import whose importer is gone never finishes: it becomes a delete.
        for kind in JobKind::ALL {
            let rows = tx
                .query(
                    &format!(
                        "UPDATE {} AS j SET hidden = 'deleting' WHERE hidden = 'importing'
                           AND NOT EXISTS (SELECT 1 FROM workers AS w WHERE w.id = j.importer) RETURNING id",
                        tables(kind).jobs
                    ),
                    &[],
                )
                .await?;
            rescued.abandoned.extend(rows.iter().map(|r| (kind, r.get::<_, i64>(0))));
        }
        tx.commit().await?;
        Ok(Some(rescued))
    }

    /// Opens a connection of its own, LISTENs on the control channel and sends every
    /// job it hears of to `heard`. When the connection ends, `heard` is dropped; when
    /// the receiver is gone, the connection is closed.
    pub async fn listen(&self, heard: tokio::sync::mpsc::UnboundedSender<(JobKind, i64)>) -> Result<(), AppError> {
        use futures::StreamExt;
        let (client, mut conn) = self.config.connect(tokio_postgres::NoTls).await?;
        let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Drives the connection; ends with it.
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    if notes_tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {}", super::CONTROL_CHANNEL)).await?;
        // Holds the session open while anyone listens.
        tokio::spawn(async move {
            let _session = client;
            while let Some(payload) = notes.recv().await {
                if let Some(job) = parse_control(&payload) {
                    if heard.send(job).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(())
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
        let cond = store::filter_condition(&filter);
        let pattern = filter.search.as_deref().map(store::like_pattern);
        let (mut jobs, mut total) = (Vec::new(), 0i64);
        for kind in filter.kinds() {
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
                        "SELECT count(*) FROM {} WHERE {cond} AND ($1::text IS NULL OR name ILIKE $1)",
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

    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<Vec<String>, AppError> {
        columns_of(&**self.client().await?, kind, id).await
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
        let id = super::insert_job(&tx, &job, Some(self.worker_id)).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn insert_items(&self, kind: JobKind, id: i64, chunk: Vec<NewItem>) -> Result<(), AppError> {
        super::insert_items(&**self.client().await?, kind, id, &chunk).await
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

    pub async fn reveal(&self, kind: JobKind, id: i64, count: i64, source: Source) -> Result<Job, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        super::reveal_job(&*tx, kind, id, count).await?;
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
                super::set_paused(&tx, kind, id, change == Change::Pause).await?;
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

    pub async fn finish_and_claim(
        &self,
        kind: JobKind,
        id: i64,
        finished: &[Finished],
        want: usize,
        burst: u32,
    ) -> Result<Vec<ClaimedRow>, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        super::finish_batch(&tx, kind, id, self.worker_id, finished, burst).await?;
        let claimed =
            if want > 0 { super::claim_batch(&tx, kind, id, self.worker_id, want).await? } else { Vec::new() };
        tx.commit().await?;
        if !finished.is_empty() && claimed.len() < want {
            // Possibly the last results. Read after this commit, the sums show nothing
            // left to whichever of several workers finishing at once commits last; only
            // then is the job row locked to complete it (see `complete_if_done`).
            let left = super::counts(&**c, kind, id).await?;
            if left.pending == 0 && left.processing == 0 {
                self.complete_if_done(kind, id).await?;
            }
        }
        Ok(claimed)
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
        put_back(&*tx, kind, id, Some(self.worker_id), Some(item_id), self.shard()).await?;
        // A pause with a resume time is a rate limit's own; a person's is never taken
        // over; a second rate limit keeps the later time.
        let sql = "SET paused = 1, paused_reason = $2, updated_at = now(), status = 'processing',
                       resume_at = CASE WHEN paused = 1 AND resume_at > $3 THEN resume_at ELSE $3 END
                   WHERE id = $1 AND status IN ('pending', 'processing') AND hidden IS NULL
                     AND (paused = 0 OR resume_at IS NOT NULL)";
        let was_paused = tx
            .query_opt(&format!("SELECT paused FROM {} WHERE id = $1 FOR NO KEY UPDATE", tables(kind).jobs), &[&id])
            .await?
            .is_some_and(|r| r.get::<_, i32>(0) != 0);
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

    /// Fires the due scheduled pauses and resumes, as `store::fire_schedules` does on
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
                let plan = store::rules::plan_schedule(pause_at, resume_at, now, paused, paused && rate_limited);
                let sql = "SET scheduled_pause_at = $2, scheduled_resume_at = $3, updated_at = now() WHERE id = $1";
                change_job(&tx, kind, id, sql, &[&id, &plan.keep.0, &plan.keep.1]).await?;
                for step in plan.steps {
                    if let Some(pause) = step.set_paused {
                        super::set_paused(&tx, kind, id, pause).await?;
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

    pub async fn set_channels(&self, channels: &[&str]) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("DELETE FROM notify_channels", &[]).await?;
        for channel in channels {
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
        channels: &[&str],
    ) -> Result<Vec<store::types::Outgoing>, AppError> {
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
            .map(|r| store::types::Outgoing {
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

    pub async fn settle_outgoing(
        &self,
        sent: &store::types::Outgoing,
        outcome: &store::types::Settled,
    ) -> Result<(), AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Only while this process still holds the row (its lease did not run out).
        let (changed, action, detail) = match outcome {
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

    pub async fn next_outgoing(&self, channels: &[&str]) -> Result<Option<DateTime<Utc>>, AppError> {
        let c = self.client().await?;
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let sql = "SELECT MIN(GREATEST(next_at, COALESCE(locked_until, next_at))) FROM outbox WHERE channel = ANY($1)";
        Ok(c.query_one(sql, &[&channels]).await?.get(0))
    }

    pub async fn complete_if_done(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let done = super::complete_if_done(&tx, kind, id).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// `kind:id` as [`super::CONTROL_CHANNEL`] carries it, read back.
pub fn parse_control(payload: &str) -> Option<(JobKind, i64)> {
    let (kind, id) = payload.split_once(':')?;
    let kind = JobKind::ALL.into_iter().find(|k| kind_word(*k) == kind)?;
    Some((kind, id.parse().ok()?))
}
