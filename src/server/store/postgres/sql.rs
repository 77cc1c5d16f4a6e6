//! The PostgreSQL store's foundation (SPEC section 10): connecting, the embedded
//! migrations applied under an advisory lock, and the statements that make many
//! workers safe on one database — claiming within a job's concurrency over all
//! workers, results fenced by the lease a claim hands out, counters in shards,
//! workers' heartbeats, the leader's lease and the rescue of a dead worker's items.
//!
//! Every function takes a client or a transaction; [`super::PgStore`] composes them
//! into the store's operations. Table names are unqualified: a deployment
//! puts jobdeck in the connection's `search_path` (tests give each run its own schema).

use std::sync::LazyLock;
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
    include_str!("../../../../migrations/postgres/0007_fewer_item_indexes.sql"),
    include_str!("../../../../migrations/postgres/0008_outcomes.sql"),
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
}

pub(super) fn tables(kind: JobKind) -> Tables {
    let (jobs, items) = kind.tables();
    match kind {
        JobKind::Research => Tables { jobs, items, counts: "processing_job_counts" },
        JobKind::Preprocess => Tables { jobs, items, counts: "preprocessing_job_counts" },
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

/// Inserts a chunk of items with `COPY … FROM STDIN` in binary, the database's own
/// loader: one statement, so the chunk goes in whole or not at all.
pub async fn insert_items(tx: &Transaction<'_>, kind: JobKind, job_id: i64, items: &[NewItem]) -> Result<(), AppError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};
    let preprocess = kind == JobKind::Preprocess;
    let (columns, types): (&str, &[Type]) = if preprocess {
        (
            "job_id, line, name, website, domain, input, normalized, dedupe_key",
            &[Type::INT8, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
        )
    } else {
        (
            "job_id, line, name, website, domain, input",
            &[Type::INT8, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
        )
    };
    let sink = tx.copy_in(&format!("COPY {} ({columns}) FROM STDIN (FORMAT binary)", tables(kind).items)).await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    futures::pin_mut!(writer);
    for it in items {
        let row: [&(dyn ToSql + Sync); 8] =
            [&job_id, &it.line, &it.name, &it.website, &it.domain, &it.input, &it.normalized, &it.dedupe_key];
        writer.as_mut().write(&row[..types.len()]).await?;
    }
    writer.finish().await?;
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

/// The statements of a turn's round on one kind of job, built once.
struct RoundSql {
    /// Takes the job's row for the rest of the transaction, whatever its state: claims
    /// on a job take turns on it, so the claim after it, whose snapshot is taken once
    /// the row is held, reads the job's state and in-flight count with every other
    /// worker's claims and every control action committed. (Locking only a runnable
    /// row would let a claim run unlocked when a resume commits between the two.)
    lock: String,
    /// Claims up to `$3` pending items within the job's concurrency over all workers,
    /// moves the counters in shard `$4` and marks the job started, in one statement.
    /// The in-flight total is read from the counter shards, which every statement that
    /// moves an item's state moves in the same statement: counting the items instead
    /// went through a partial index that keeps every item that was ever in flight until
    /// a vacuum, 3–4 ms a claim at 100,000 items. The picked ids are handed to the
    /// update as an array: joined as a table, whose size the planner cannot know from a
    /// computed LIMIT, they made it hash the whole items table on every claim (15 ms at
    /// 50,000 items).
    claim: String,
    /// Locks up to `$2` pending items of a runnable job without claiming them, oldest
    /// first, skipping rows another worker holds ([`Take::Finish`]): each is finished in
    /// the next round of the same transaction or left `pending`, so none is ever in
    /// flight and the job's concurrency does not bound them. The limit is a subquery,
    /// as the claim's is: a plain 256 against a job the statistics do not know yet (a
    /// fresh import: 5 rows estimated) made the planner fetch every pending item by
    /// bitmap and sort them all, 100 ms a round at 200,000 items instead of 1 ms down
    /// the `(job_id, status, id)` index.
    peek: String,
    /// Writes outcomes fenced by their leases and moves the counters in shard `$9`.
    /// `$10` says, once per outcome, the state the item is held in: `processing` for a
    /// claimed item (which must still be this worker's), `pending` for one a
    /// [`Take::Finish`] round locked. The state is compared with a value the planner
    /// cannot see, so it looks each item up by its id and never through a partial index
    /// on `status = 'processing'`, whose dead entries (every item that finished since the
    /// last vacuum) a bitmap scan visits one by one: 8–10 ms a finish at 100,000 items,
    /// and growing.
    finish: String,
    /// Moves the job's count of failures in a row (see [`error_burst`]).
    streak: String,
}

impl RoundSql {
    fn new(kind: JobKind) -> Self {
        let t = tables(kind);
        let (jobs, items, counts) = (t.jobs, t.items, t.counts);
        let extra = match kind {
            JobKind::Research => "NULL::text AS normalized, NULL::bigint AS duplicate_of",
            JobKind::Preprocess => "i.normalized, i.duplicate_of",
        };
        let runnable = "status IN ('pending', 'processing') AND paused = 0 AND hidden IS NULL";
        Self {
            lock: format!("SELECT fail_streak FROM {jobs} WHERE id = $1 FOR NO KEY UPDATE"),
            claim: format!(
                "WITH job AS (SELECT concurrency FROM {jobs} WHERE id = $1 AND {runnable}),
                 picked AS (
                     SELECT id FROM {items} WHERE job_id = $1 AND status = 'pending' ORDER BY id
                     LIMIT GREATEST(0, LEAST($3::bigint, COALESCE((SELECT concurrency FROM job), 0)
                         - (SELECT COALESCE(SUM(processing), 0) FROM {counts} WHERE job_id = $1)))
                     FOR UPDATE SKIP LOCKED),
                 claimed AS (
                     UPDATE {items} AS i SET status = 'processing', worker_id = $2, lease = i.lease + 1,
                         started_at = now()
                     WHERE i.id = ANY(ARRAY(SELECT id FROM picked))
                     RETURNING i.id, i.line, i.name, i.website, i.domain, i.input, {extra}, i.lease),
                 counted AS (
                     INSERT INTO {counts} AS c (job_id, shard, pending, processing, completed, failed)
                     SELECT $1, $4, -count(*), count(*), 0, 0 FROM claimed HAVING count(*) > 0
                     ON CONFLICT (job_id, shard) DO UPDATE SET
                         pending = c.pending + EXCLUDED.pending, processing = c.processing + EXCLUDED.processing),
                 started AS (
                     UPDATE {jobs} SET status = 'processing', started_at = COALESCE(started_at, now()),
                         updated_at = now()
                     WHERE id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM claimed))
                 SELECT * FROM claimed ORDER BY id"
            ),
            peek: format!(
                "SELECT i.id, i.line, i.name, i.website, i.domain, i.input, {extra}, i.lease FROM {items} AS i
                 WHERE i.job_id = $1 AND i.status = 'pending'
                   AND EXISTS (SELECT 1 FROM {jobs} WHERE id = $1 AND {runnable})
                 ORDER BY i.id LIMIT (SELECT $2::bigint) FOR UPDATE OF i SKIP LOCKED"
            ),
            finish: format!(
                "WITH written AS (
                     UPDATE {items} AS i SET status = r.status, result = r.result, error = r.error,
                         attempts = i.attempts + r.attempts, finished_at = now(), worker_id = NULL,
                         started_at = CASE WHEN r.held = 'pending' THEN now() ELSE i.started_at END
                     FROM UNNEST($3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[], $8::text[],
                                 $10::text[])
                         AS r(id, lease, attempts, status, result, error, held)
                     WHERE i.id = r.id AND i.job_id = $1 AND i.status = r.held
                       AND (r.held = 'pending' OR i.worker_id = $2) AND i.lease = r.lease
                     RETURNING i.id, i.status, r.held),
                 counted AS (
                     INSERT INTO {counts} AS c (job_id, shard, pending, processing, completed, failed)
                     SELECT $1, $9, -count(*) FILTER (WHERE held = 'pending'),
                         -count(*) FILTER (WHERE held = 'processing'),
                         count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
                     FROM written HAVING count(*) > 0
                     ON CONFLICT (job_id, shard) DO UPDATE SET pending = c.pending + EXCLUDED.pending,
                         processing = c.processing + EXCLUDED.processing,
                         completed = c.completed + EXCLUDED.completed, failed = c.failed + EXCLUDED.failed)
                 SELECT id FROM written"
            ),
            streak: format!(
                "UPDATE {jobs} SET fail_streak = CASE WHEN $2 THEN $3 ELSE fail_streak + $3 END
                 WHERE id = $1 AND ($3 > 0 OR fail_streak <> 0)"
            ),
        }
    }
}

static ROUND_SQL: LazyLock<[RoundSql; 2]> = LazyLock::new(|| JobKind::ALL.map(RoundSql::new));

fn round_sql(kind: JobKind) -> &'static RoundSql {
    &ROUND_SQL[JobKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
}

/// What a [`round`] takes once its outcomes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Claims up to this many items within the job's concurrency over all workers:
    /// they may leave the transaction in flight. `Claim(0)` takes nothing.
    Claim(usize),
    /// Locks up to this many pending items without claiming them, whatever the job's
    /// concurrency: every one is finished by the next round of the same transaction
    /// (its outcomes [`Held::Locked`]) or stays `pending`, so none is ever in flight.
    Finish(usize),
}

/// How a round's outcomes hold their items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Claimed (`processing`, this worker's, under the outcome's lease).
    Claimed,
    /// Locked by a [`Take::Finish`] round of the same transaction, still `pending`.
    Locked,
}

/// One round of a turn, in the caller's transaction: writes a worker's `outcomes` (each
/// only if that worker still holds the item under that lease: a worker declared dead,
/// whose items went to another, writes nothing), applies the error-burst rule to what
/// was written, then takes items as `take` says, oldest first, skipping rows another
/// worker is claiming. Counters move in the worker's shard. Statements are prepared
/// once per connection; those that need nothing back from the one before are sent
/// together (one round trip), which the server still runs in order. Returns how many
/// outcomes were written and the rows taken.
pub async fn round(
    tx: &deadpool_postgres::Transaction<'_>,
    kind: JobKind,
    job_id: i64,
    worker_id: i64,
    (outcomes, held): (&[Finished], Held),
    take: Take,
    burst: u32,
) -> Result<(usize, Vec<ClaimedRow>), AppError> {
    let q = round_sql(kind);
    let shard = shard_of(worker_id);
    let mut written = 0;
    let mut streak_args: Option<(bool, i32)> = None;
    let (take_sql, limit) = match take {
        Take::Claim(n) => (&q.claim, n as i64),
        Take::Finish(n) => (&q.peek, n as i64),
    };
    let lock_args: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&job_id];
    let claim_args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&job_id, &worker_id, &limit, &shard];
    let peek_args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&job_id, &limit];
    let take_args: &[&(dyn tokio_postgres::types::ToSql + Sync)] = match take {
        Take::Claim(_) => &claim_args,
        Take::Finish(_) => &peek_args,
    };
    let finish_args = FinishArgs::new(outcomes, held);
    let finish_params = finish_args.params(&job_id, &worker_id, &shard);
    let any_failed = outcomes.iter().any(|o| matches!(o.outcome, Finish::Failed(..)));
    if !outcomes.is_empty() && !any_failed && limit > 0 {
        // Only completions: nothing the finish writes can pause the job, so the finish,
        // the job's lock and the next take go out together, in this order, in one round
        // trip. The failure count is cleared after it only where it was not already 0
        // (read under the lock), which it nearly always is.
        let (finish, lock, taking) =
            futures::try_join!(tx.prepare_cached(&q.finish), tx.prepare_cached(&q.lock), tx.prepare_cached(take_sql))?;
        let (kept, locked, rows) = futures::try_join!(
            tx.query(&finish, &finish_params),
            tx.query_opt(&lock, &lock_args),
            tx.query(&taking, take_args)
        )?;
        written = kept.len();
        if written > 0 && locked.is_some_and(|r| r.get::<_, i32>(0) != 0) {
            let streak = tx.prepare_cached(&q.streak).await?;
            tx.execute(&streak, &[&job_id, &true, &0i32]).await?;
        }
        return Ok((written, claimed_rows(&rows)));
    }
    if !outcomes.is_empty() {
        let finish = tx.prepare_cached(&q.finish).await?;
        let kept: std::collections::HashSet<i64> =
            tx.query(&finish, &finish_params).await?.iter().map(|r| r.get(0)).collect();
        written = kept.len();
        let mut streak = Streak::default();
        for o in outcomes.iter().filter(|o| kept.contains(&o.item_id)) {
            streak.add(&o.outcome);
        }
        if streak.last_error.is_some() && burst > 0 {
            // Failures may pause the job: decided before anything is taken.
            error_burst(tx, kind, job_id, &streak, burst).await?;
        } else {
            streak_args = Some((streak.reset, streak.trailing as i32));
        }
    }
    if limit == 0 {
        if let Some((reset, trailing)) = streak_args {
            let streak = tx.prepare_cached(&q.streak).await?;
            tx.execute(&streak, &[&job_id, &reset, &trailing]).await?;
        }
        return Ok((written, Vec::new()));
    }
    // Prepared first, so the three go out in this order and together.
    let (streak, lock, taking) =
        futures::try_join!(tx.prepare_cached(&q.streak), tx.prepare_cached(&q.lock), tx.prepare_cached(take_sql))?;
    let moved = async {
        match streak_args {
            Some((reset, trailing)) => tx.execute(&streak, &[&job_id, &reset, &trailing]).await.map(drop),
            None => Ok(()),
        }
    };
    let (_, _, rows) = futures::try_join!(moved, tx.query_opt(&lock, &lock_args), tx.query(&taking, take_args))?;
    Ok((written, claimed_rows(&rows)))
}

/// The finish statement's arrays, one entry per outcome.
struct FinishArgs<'a> {
    ids: Vec<i64>,
    leases: Vec<i64>,
    attempts: Vec<i32>,
    statuses: Vec<&'static str>,
    results: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    held: Vec<&'static str>,
}

impl<'a> FinishArgs<'a> {
    fn new(outcomes: &'a [Finished], held: Held) -> Self {
        let pick = |o: &'a Finished| match &o.outcome {
            Finish::Completed(v) => ("completed", Some(v.as_str()), None),
            Finish::Failed(e, detail) => ("failed", detail.as_deref(), Some(e.as_str())),
        };
        let mut args = Self {
            ids: Vec::with_capacity(outcomes.len()),
            leases: Vec::with_capacity(outcomes.len()),
            attempts: Vec::with_capacity(outcomes.len()),
            statuses: Vec::with_capacity(outcomes.len()),
            results: Vec::with_capacity(outcomes.len()),
            errors: Vec::with_capacity(outcomes.len()),
            held: vec![
                match held {
                    Held::Claimed => "processing",
                    Held::Locked => "pending",
                };
                outcomes.len()
            ],
        };
        for o in outcomes {
            let (status, result, error) = pick(o);
            args.ids.push(o.item_id);
            args.leases.push(o.lease);
            args.attempts.push(o.attempts as i32);
            args.statuses.push(status);
            args.results.push(result);
            args.errors.push(error);
        }
        args
    }

    fn params<'b>(
        &'b self,
        job_id: &'b i64,
        worker_id: &'b i64,
        shard: &'b i32,
    ) -> [&'b (dyn tokio_postgres::types::ToSql + Sync); 10] {
        [
            job_id,
            worker_id,
            &self.ids,
            &self.leases,
            &self.attempts,
            &self.statuses,
            &self.results,
            &self.errors,
            shard,
            &self.held,
        ]
    }
}

fn claimed_rows(rows: &[tokio_postgres::Row]) -> Vec<ClaimedRow> {
    rows.iter()
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
        .collect()
}

/// Claims up to `want` items of a job for `worker_id` (a [`round`] with no outcomes).
pub async fn claim_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    kind: JobKind,
    job_id: i64,
    worker_id: i64,
    want: usize,
) -> Result<Vec<ClaimedRow>, AppError> {
    Ok(round(tx, kind, job_id, worker_id, (&[], Held::Claimed), Take::Claim(want), 0).await?.1)
}

/// Writes a worker's outcomes (a [`round`] that claims nothing); returns how many were
/// written.
pub async fn finish_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    kind: JobKind,
    job_id: i64,
    worker_id: i64,
    outcomes: &[Finished],
    burst: u32,
) -> Result<usize, AppError> {
    Ok(round(tx, kind, job_id, worker_id, (outcomes, Held::Claimed), Take::Claim(0), burst).await?.0)
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
