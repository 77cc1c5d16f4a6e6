//! The PostgreSQL store's foundation (SPEC section 10): connecting, the embedded
//! migrations applied under an advisory lock, and the statements that make many
//! workers safe on one database — claiming within a job's concurrency over all
//! workers, results fenced by the lease a claim hands out, counters in shards,
//! workers' heartbeats, the leader's lease and the rescue of a dead worker's items.
//!
//! Every function takes a client or a transaction; [`super::PgStore`] composes them
//! into the store's operations. Table names are unqualified: a deployment
//! puts jobdeck in the connection's `search_path` (tests give each run its own schema).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, NoTls, Transaction};

use crate::model::{EventAction, JobKind, Source};
use crate::server::error::AppError;
use crate::server::store::rules::{self, Streak};
use crate::server::store::types::{ClaimedRow, Finish, Finished, NewItem, NewJob};

/// The embedded migrations, in order; the `n`th is version `n + 1`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../../migrations/postgres/0002_importer.sql"),
    include_str!("../../../../migrations/postgres/0003_paused_flag.sql"),
    include_str!("../../../../migrations/postgres/0004_operator_controls.sql"),
    include_str!("../../../../migrations/postgres/0005_auto_control.sql"),
    include_str!("../../../../migrations/postgres/0006_sessions.sql"),
];

/// The channel pause, resume and cancel are announced on, in the same transaction as
/// the change; the payload is `kind:id` (`processing:7`).
pub const CONTROL_CHANNEL: &str = "jobdeck_control";

/// Counter shards per job: a worker writes to the shard its id picks.
pub const SHARDS: i64 = 16;

/// A connection's settings from a `postgres://` URL; `schema`, when given, becomes the
/// connection's `search_path`.
pub fn config(url: &str, schema: Option<&str>) -> Result<tokio_postgres::Config, AppError> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| AppError::BadInput(format!("JOBDECK_DATABASE_URL cannot be read: {e}")))?;
    if let Some(schema) = schema {
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(AppError::BadInput(format!("`{schema}` is not a plain schema name")));
        }
        config.options(format!("-c search_path={schema}"));
        config.application_name(format!("jobdeck {schema}"));
    } else {
        config.application_name("jobdeck");
    }
    Ok(config)
}

/// A pool of connections for the service and the runner. LISTEN needs a connection of
/// its own, outside the pool ([`config`] and `tokio_postgres::connect`).
pub fn pool(config: tokio_postgres::Config, size: usize) -> Result<deadpool_postgres::Pool, AppError> {
    let manager = deadpool_postgres::Manager::from_config(
        config,
        NoTls,
        deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size.max(2))
        .build()
        .map_err(|e| AppError::Internal(format!("PostgreSQL pool: {e}")))
}

/// Applies the migrations this build has and the database lacks, in one transaction
/// under an advisory lock, so whichever process starts first migrates and the others
/// wait and find nothing to do. Returns how many were applied.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<usize, AppError> {
    let tx = client.transaction().await?;
    // The lock is the schema's own, so two deployments in one database do not wait
    // on each other.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':jobdeck migrations'))", &[]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS jobdeck_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let done: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM jobdeck_migrations", &[]).await?.get(0);
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(AppError::Internal(format!(
            "the database is at schema version {done}, newer than this jobdeck ({}): run a newer jobdeck",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO jobdeck_migrations (version) VALUES ($1)", &[&(i as i32 + 1)]).await?;
    }
    tx.commit().await?;
    Ok(MIGRATIONS.len() - done)
}

pub(super) struct Tables {
    pub(super) jobs: &'static str,
    pub(super) items: &'static str,
    pub(super) counts: &'static str,
    /// The preprocessing columns a claim returns (NULLs for research).
    pub(super) extra: &'static str,
}

pub(super) fn tables(kind: JobKind) -> Tables {
    let (jobs, items) = kind.tables();
    match kind {
        JobKind::Research => Tables { jobs, items, counts: "processing_job_counts", extra: "NULL::text, NULL::bigint" },
        JobKind::Preprocess => {
            Tables { jobs, items, counts: "preprocessing_job_counts", extra: "normalized, duplicate_of" }
        }
    }
}

pub(super) fn kind_word(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Research => "processing",
        JobKind::Preprocess => "preprocess",
    }
}

/// The shard a worker's counter changes go to.
pub fn shard_of(worker_id: i64) -> i32 {
    worker_id.rem_euclid(SHARDS) as i32
}

/// Adds to a job's counters in one shard.
pub(super) async fn add_counts(
    c: &impl GenericClient,
    kind: JobKind,
    job_id: i64,
    shard: i32,
    [pending, processing, completed, failed]: [i64; 4],
) -> Result<(), AppError> {
    if pending == 0 && processing == 0 && completed == 0 && failed == 0 {
        return Ok(());
    }
    let t = tables(kind);
    c.execute(
        &format!(
            "INSERT INTO {counts} AS c (job_id, shard, pending, processing, completed, failed)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job_id, shard) DO UPDATE SET
                 pending = c.pending + EXCLUDED.pending, processing = c.processing + EXCLUDED.processing,
                 completed = c.completed + EXCLUDED.completed, failed = c.failed + EXCLUDED.failed",
            counts = t.counts
        ),
        &[&job_id, &shard, &pending, &processing, &completed, &failed],
    )
    .await?;
    Ok(())
}

/// A job's items by status, summed over its counter shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
}

pub async fn counts(c: &impl GenericClient, kind: JobKind, job_id: i64) -> Result<Counts, AppError> {
    let row = c
        .query_one(
            &format!(
                "SELECT COALESCE(SUM(pending), 0)::bigint, COALESCE(SUM(processing), 0)::bigint,
                        COALESCE(SUM(completed), 0)::bigint, COALESCE(SUM(failed), 0)::bigint
                 FROM {} WHERE job_id = $1",
                tables(kind).counts
            ),
            &[&job_id],
        )
        .await?;
    Ok(Counts { pending: row.get(0), processing: row.get(1), completed: row.get(2), failed: row.get(3) })
}

/// Creates a job, hidden until [`reveal_job`], as the SQLite store does; `importer` is
/// the worker importing it (an import whose importer is gone is removed by the leader).
/// Creation times rise over both kinds (the dashboard merges them by it): creations
/// take turns on an advisory lock, each at least a microsecond after the newest.
pub async fn insert_job(tx: &Transaction<'_>, job: &NewJob, importer: Option<i64>) -> Result<i64, AppError> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':jobdeck jobs'))", &[]).await?;
    let columns = serde_json::to_string(&job.columns).map_err(|e| AppError::Internal(e.to_string()))?;
    let concurrency = i32::try_from(job.concurrency).unwrap_or(i32::MAX);
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO {} (name, filename, concurrency, columns, hidden, importer, created_at, updated_at)
                 SELECT $1, $2, $3, $4, 'importing', $5, t, t FROM (SELECT GREATEST(clock_timestamp(),
                     (SELECT MAX(created_at) FROM processing_jobs) + interval '1 microsecond',
                     (SELECT MAX(created_at) FROM preprocessing_jobs) + interval '1 microsecond') AS t) AS now
                 RETURNING id",
                tables(job.kind).jobs
            ),
            &[&job.name, &job.filename, &concurrency, &columns, &importer],
        )
        .await?;
    Ok(row.get(0))
}

/// Inserts a chunk of items in one statement.
pub async fn insert_items(
    c: &impl GenericClient,
    kind: JobKind,
    job_id: i64,
    items: &[NewItem],
) -> Result<(), AppError> {
    let line: Vec<i64> = items.iter().map(|i| i.line).collect();
    let name: Vec<Option<&str>> = items.iter().map(|i| i.name.as_deref()).collect();
    let website: Vec<Option<&str>> = items.iter().map(|i| i.website.as_deref()).collect();
    let domain: Vec<Option<&str>> = items.iter().map(|i| i.domain.as_deref()).collect();
    let input: Vec<&str> = items.iter().map(|i| i.input.as_str()).collect();
    match kind {
        JobKind::Research => {
            c.execute(
                "INSERT INTO accounts (job_id, line, name, website, domain, input)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])",
                &[&job_id, &line, &name, &website, &domain, &input],
            )
            .await?;
        }
        JobKind::Preprocess => {
            let normalized: Vec<Option<&str>> = items.iter().map(|i| i.normalized.as_deref()).collect();
            let dedupe: Vec<Option<&str>> = items.iter().map(|i| i.dedupe_key.as_deref()).collect();
            c.execute(
                "INSERT INTO preprocessing_results (job_id, line, name, website, domain, input, normalized, dedupe_key)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])",
                &[&job_id, &line, &name, &website, &domain, &input, &normalized, &dedupe],
            )
            .await?;
        }
    }
    Ok(())
}

/// Shows a fully imported job with its `total` items, counted pending, and tells every
/// worker, which starts on it at once rather than at its next sweep.
pub async fn reveal_job(c: &impl GenericClient, kind: JobKind, job_id: i64, total: i64) -> Result<(), AppError> {
    c.execute(
        &format!(
            "UPDATE {} SET hidden = NULL, importer = NULL, total = $2, updated_at = now()
             WHERE id = $1 AND hidden = 'importing'",
            tables(kind).jobs
        ),
        &[&job_id, &total],
    )
    .await?;
    add_counts(c, kind, job_id, 0, [total, 0, 0, 0]).await?;
    notify_control(c, kind, job_id).await
}

/// A person's pause or resume of a live, visible job: sets or clears the flag and any
/// rate limit's reason and resume time (a pause is then the person's, never lifted by a
/// timer); a paused job is `processing`. Every worker hears of it when the transaction
/// commits, never before. Returns whether the job changed.
pub async fn set_paused(tx: &Transaction<'_>, kind: JobKind, job_id: i64, paused: bool) -> Result<bool, AppError> {
    let changed = tx
        .execute(
            &format!(
                "UPDATE {} SET paused = $2, paused_reason = NULL, resume_at = NULL, updated_at = now(), fail_streak = 0,
                     status = CASE WHEN $2 = 1 THEN 'processing' ELSE status END
                 WHERE id = $1 AND status IN ('pending', 'processing') AND hidden IS NULL",
                tables(kind).jobs
            ),
            &[&job_id, &i32::from(paused)],
        )
        .await?;
    if changed > 0 {
        notify_control(tx, kind, job_id).await?;
    }
    Ok(changed > 0)
}

/// Announces a change of a job's state on [`CONTROL_CHANNEL`].
pub async fn notify_control(c: &impl GenericClient, kind: JobKind, job_id: i64) -> Result<(), AppError> {
    let payload = format!("{}:{job_id}", kind_word(kind));
    c.execute("SELECT pg_notify($1, $2)", &[&CONTROL_CHANNEL, &payload]).await?;
    Ok(())
}

/// Claims up to `want` pending items of a job for `worker_id`, in file order, never
/// taking the job over its `concurrency` counted over all workers.
///
/// The job's row is locked first, in its own statement: claims of one job take turns,
/// and a pause or cancel (which update that row) is ordered against them. A pause that
/// commits first is seen by the claim, which then takes nothing; a claim that holds the
/// lock first makes the pause wait for its commit, so the items it took started before
/// the pause returned. The count of items in flight is read in a second statement, whose
/// snapshot is taken after the lock, so it sees every claim that went before.
pub async fn claim_batch(
    tx: &Transaction<'_>,
    kind: JobKind,
    job_id: i64,
    worker_id: i64,
    want: usize,
) -> Result<Vec<ClaimedRow>, AppError> {
    let t = tables(kind);
    let job = tx
        .query_opt(
            &format!(
                "SELECT concurrency FROM {} WHERE id = $1 AND status IN ('pending', 'processing')
                   AND paused = 0 AND hidden IS NULL FOR NO KEY UPDATE",
                t.jobs
            ),
            &[&job_id],
        )
        .await?;
    let Some(job) = job else { return Ok(Vec::new()) };
    let concurrency: i32 = job.get(0);
    let in_flight: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {} WHERE job_id = $1 AND status = 'processing'", t.items), &[&job_id])
        .await?
        .get(0);
    let room = (i64::from(concurrency) - in_flight).clamp(0, want as i64);
    if room == 0 {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            &format!(
                "WITH picked AS (
                     SELECT id FROM {items} WHERE job_id = $1 AND status = 'pending'
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE {items} AS i SET status = 'processing', worker_id = $2, lease = i.lease + 1,
                     started_at = now()
                 FROM picked WHERE i.id = picked.id
                 RETURNING i.id, i.line, i.name, i.website, i.domain, i.input, {extra}, i.lease",
                items = t.items,
                extra = t.extra.replace("normalized", "i.normalized").replace("duplicate_of", "i.duplicate_of"),
            ),
            &[&job_id, &worker_id, &room],
        )
        .await?;
    let mut leases: Vec<ClaimedRow> = rows
        .iter()
        .map(|r| ClaimedRow {
            id: r.get(0),
            line: r.get(1),
            name: r.get(2),
            website: r.get(3),
            domain: r.get(4),
            input: r.get(5),
            normalized: r.get(6),
            duplicate_of: r.get(7),
            lease: r.get(8),
        })
        .collect();
    if !leases.is_empty() {
        let n = leases.len() as i64;
        add_counts(tx, kind, job_id, shard_of(worker_id), [-n, n, 0, 0]).await?;
        tx.execute(
            &format!(
                "UPDATE {} SET status = 'processing', started_at = COALESCE(started_at, now()), updated_at = now()
                 WHERE id = $1 AND status = 'pending'",
                t.jobs
            ),
            &[&job_id],
        )
        .await?;
    }
    leases.sort_by_key(|l| l.id);
    Ok(leases)
}

/// Writes a worker's outcomes in one statement, each only if that worker still holds
/// the item under that lease: a worker declared dead, whose items went to another,
/// writes nothing. Counters move in the worker's shard. Returns how many were written.
pub async fn finish_batch(
    tx: &Transaction<'_>,
    kind: JobKind,
    job_id: i64,
    worker_id: i64,
    outcomes: &[Finished],
    burst: u32,
) -> Result<usize, AppError> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let t = tables(kind);
    let ids: Vec<i64> = outcomes.iter().map(|o| o.item_id).collect();
    let leases: Vec<i64> = outcomes.iter().map(|o| o.lease).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempts as i32).collect();
    let statuses: Vec<&str> = outcomes
        .iter()
        .map(|o| match o.outcome {
            Finish::Completed(_) => "completed",
            Finish::Failed(_) => "failed",
        })
        .collect();
    let results: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| match &o.outcome {
            Finish::Completed(v) => Some(v.as_str()),
            Finish::Failed(_) => None,
        })
        .collect();
    let errors: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| match &o.outcome {
            Finish::Completed(_) => None,
            Finish::Failed(e) => Some(e.as_str()),
        })
        .collect();
    let written = tx
        .query(
            &format!(
                "UPDATE {items} AS i SET status = r.status, result = r.result, error = r.error,
                     attempts = i.attempts + r.attempts, finished_at = now(), worker_id = NULL
                 FROM UNNEST($3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[], $8::text[])
                     AS r(id, lease, attempts, status, result, error)
                 WHERE i.id = r.id AND i.job_id = $1 AND i.status = 'processing'
                   AND i.worker_id = $2 AND i.lease = r.lease
                 RETURNING i.id, i.status",
                items = t.items
            ),
            &[&job_id, &worker_id, &ids, &leases, &attempts, &statuses, &results, &errors],
        )
        .await?;
    let completed = written.iter().filter(|r| r.get::<_, &str>(1) == "completed").count() as i64;
    let failed = written.len() as i64 - completed;
    add_counts(tx, kind, job_id, shard_of(worker_id), [0, -(completed + failed), completed, failed]).await?;
    let kept: std::collections::HashSet<i64> = written.iter().map(|r| r.get(0)).collect();
    let mut streak = Streak::default();
    for o in outcomes.iter().filter(|o| kept.contains(&o.item_id)) {
        streak.add(&o.outcome);
    }
    error_burst(tx, kind, job_id, &streak, burst).await?;
    Ok(written.len())
}

/// Moves the job's count of items failed in a row by a written batch, and pauses the
/// job when it reaches `burst` (0 = off): with the count and the last error as its
/// reason and no resume time. The job row is written only when the count changes, so
/// batches of successes on many workers do not queue on it.
pub(super) async fn error_burst(
    tx: &Transaction<'_>,
    kind: JobKind,
    job_id: i64,
    streak: &Streak<'_>,
    burst: u32,
) -> Result<(), AppError> {
    let t = tables(kind);
    if let Some(last) = streak.last_error.filter(|_| burst > 0) {
        let paused = tx
            .query_opt(
                &format!(
                    "UPDATE {jobs} SET paused = 1, status = 'processing', resume_at = NULL, updated_at = now(),
                         paused_reason = GREATEST(fail_streak + $4, $5) || ' items failed in a row; the last: ' || $3,
                         fail_streak = 0
                     WHERE id = $1 AND status IN ('pending', 'processing') AND hidden IS NULL AND paused = 0
                       AND (fail_streak + $4 >= $2 OR $5 >= $2)
                       AND EXISTS (SELECT 1 FROM {items} WHERE job_id = $1 AND status = 'pending')
                     RETURNING paused_reason",
                    jobs = t.jobs,
                    items = t.items
                ),
                &[&job_id, &(burst as i32), &last, &(streak.leading as i32), &(streak.peak as i32)],
            )
            .await?;
        if let Some(row) = paused {
            let reason: String = row.get(0);
            add_event(tx, kind, job_id, EventAction::AutoPaused, Source::ErrorBurst, Some(&reason)).await?;
            notify_control(tx, kind, job_id).await?;
            return Ok(());
        }
    }
    tx.execute(
        &format!(
            "UPDATE {} SET fail_streak = CASE WHEN $2 THEN $3 ELSE fail_streak + $3 END
             WHERE id = $1 AND ($3 > 0 OR fail_streak <> 0)",
            t.jobs
        ),
        &[&job_id, &streak.reset, &(streak.trailing as i32)],
    )
    .await?;
    Ok(())
}

/// Marks a live job with nothing pending or in flight `completed`. Workers that finish
/// a job's last items at the same moment each call this after their own commit; the
/// job row's lock orders them, and the sums are read in a statement after it, so the
/// last one sees everything. Returns whether the job is now over (or gone).
pub async fn complete_if_done(tx: &Transaction<'_>, kind: JobKind, job_id: i64) -> Result<bool, AppError> {
    let t = tables(kind);
    let job = tx
        .query_opt(&format!("SELECT status, hidden FROM {} WHERE id = $1 FOR NO KEY UPDATE", t.jobs), &[&job_id])
        .await?;
    let Some(job) = job else { return Ok(true) };
    let (status, hidden): (&str, Option<&str>) = (job.get(0), job.get(1));
    if status == "completed" || status == "failed" || hidden.is_some() {
        return Ok(true);
    }
    let c = counts(tx, kind, job_id).await?;
    if c.pending > 0 || c.processing > 0 {
        return Ok(false);
    }
    tx.execute(
        &format!(
            "UPDATE {} SET status = 'completed', paused = 0, paused_reason = NULL, resume_at = NULL,
                 scheduled_pause_at = NULL, scheduled_resume_at = NULL, fail_streak = 0,
                 completed_at = now(), updated_at = now() WHERE id = $1",
            t.jobs
        ),
        &[&job_id],
    )
    .await?;
    add_event(tx, kind, job_id, EventAction::Completed, Source::System, None).await?;
    notify_control(tx, kind, job_id).await?;
    Ok(true)
}

/// Appends to a job's activity log, in the caller's transaction.
pub async fn add_event(
    c: &impl GenericClient,
    kind: JobKind,
    job_id: i64,
    action: EventAction,
    source: Source,
    detail: Option<&str>,
) -> Result<(), AppError> {
    let at: DateTime<Utc> = c
        .query_one(
            "INSERT INTO job_events (kind, job_id, action, source, detail) VALUES ($1, $2, $3, $4, $5) RETURNING at",
            &[&kind.as_str(), &job_id, &action.as_str(), &source.as_str(), &detail],
        )
        .await?
        .get(0);
    if rules::worth_notifying(action) {
        let any: bool = c.query_one("SELECT EXISTS (SELECT 1 FROM notify_channels)", &[]).await?.get(0);
        if any {
            let job = super::read_job(c, kind, job_id).await?;
            if let Some(event) = rules::event_name(action, &job) {
                let payload = rules::payload(event, &job, at);
                c.execute(
                    "INSERT INTO outbox (channel, event, kind, job_id, payload, next_at, created_at)
                     SELECT channel, $1, $2, $3, $4, $5, $5 FROM notify_channels",
                    &[&event, &kind.as_str(), &job_id, &payload, &at],
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Registers a worker; its id picks its counter shard and marks the items it holds.
pub async fn register_worker(c: &impl GenericClient, name: &str) -> Result<i64, AppError> {
    Ok(c.query_one("INSERT INTO workers (name) VALUES ($1) RETURNING id", &[&name]).await?.get(0))
}

/// A worker's heartbeat. `false`: the worker was declared dead and removed (its items
/// went back to pending); it must stop what it holds and register again.
pub async fn heartbeat(c: &impl GenericClient, worker_id: i64) -> Result<bool, AppError> {
    Ok(c.execute("UPDATE workers SET heartbeat_at = now() WHERE id = $1", &[&worker_id]).await? == 1)
}

/// Takes or renews the named lease for `holder` for `ttl`; `true` if `holder` has it.
/// One holder at a time: another takes it only once it has expired.
pub async fn acquire_lease(c: &impl GenericClient, name: &str, holder: i64, ttl: Duration) -> Result<bool, AppError> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let row = c
        .query_opt(
            "INSERT INTO leases AS l (name, holder, expires_at)
             VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
             RETURNING holder",
            &[&name, &holder, &ttl_ms],
        )
        .await?;
    Ok(row.is_some())
}

/// What a rescue did: the workers it declared dead and, per job, the items it put back.
#[derive(Debug, Default)]
pub struct Rescued {
    pub workers: Vec<i64>,
    pub items: Vec<(JobKind, i64, i64)>,
    /// Imports whose importer is gone, now hidden as deletes for the caller to purge.
    pub abandoned: Vec<(JobKind, i64)>,
}

/// Run by the leader: every worker silent for longer than `timeout` is dead and
/// removed. Then every item in flight whose holder is no longer a worker (dead, or gone
/// without putting its items back) goes back to `pending`, not counted as an attempt;
/// a late result of its old holder no longer matches (the item names no holder until
/// it is claimed again, under a new lease). The counters follow, and every worker hears
/// of the jobs concerned. Returns what moved.
pub async fn rescue_dead(tx: &Transaction<'_>, rescuer: i64, timeout: Duration) -> Result<Rescued, AppError> {
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let dead: Vec<i64> = tx
        .query(
            "DELETE FROM workers WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond' RETURNING id",
            &[&timeout_ms],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut rescued = Rescued { workers: dead, items: Vec::new(), abandoned: Vec::new() };
    rescued.workers.sort_unstable();
    for kind in JobKind::ALL {
        let rows = tx
            .query(
                &format!(
                    "WITH back AS (
                         UPDATE {items} AS i SET status = 'pending', worker_id = NULL, started_at = NULL
                         WHERE i.status = 'processing' AND i.worker_id IS NOT NULL
                           AND NOT EXISTS (SELECT 1 FROM workers AS w WHERE w.id = i.worker_id)
                         RETURNING i.job_id)
                     SELECT job_id, count(*) FROM back GROUP BY job_id ORDER BY job_id",
                    items = tables(kind).items
                ),
                &[],
            )
            .await?;
        for r in rows {
            let (job_id, n): (i64, i64) = (r.get(0), r.get(1));
            add_counts(tx, kind, job_id, shard_of(rescuer), [n, -n, 0, 0]).await?;
            notify_control(tx, kind, job_id).await?;
            rescued.items.push((kind, job_id, n));
        }
    }
    Ok(rescued)
}

/// When the database thinks it is: timestamps written by one server and compared by
/// another come from the database's clock, never a worker's.
pub async fn now(c: &impl GenericClient) -> Result<DateTime<Utc>, AppError> {
    Ok(c.query_one("SELECT now()", &[]).await?.get(0))
}
