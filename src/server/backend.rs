//! The store boundary: every read and write the service and the runner make, each one
//! transaction, named for what it means rather than how it is done. The rules (what a
//! pause does to a paused job, when a job may be deleted) stay in the service; this
//! layer only applies them atomically. SQLite (`store.rs` over `db.rs`) is the one
//! implementation today; PostgreSQL (`pg/`) is being built behind the same methods for
//! scale-out (SPEC section 10).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::db::Db;
use super::error::AppError;
use super::import::{NewJob, CHUNK_ROWS};
use super::pg::backend::PgBackend;
/// What the runner hands the store's cluster part, and how much of it a process runs.
pub use super::pg::node::{Hooks as NodeHooks, Role as NodeRole};
pub use super::store::types::{Change, Rule};
use super::store::types::{ClaimedRow, CleanRow, Finished, Flags, Hidden, JobColumns, NewItem};
use super::store::{self};
use crate::model::{EventAction, Item, ItemPage, ItemStatus, Job, JobEvent, JobFilter, JobKind, JobsPage, Source};

/// Rounds of claims one turn of a runner may make in a single transaction (see
/// [`Backend::turn`]). Each round claims at most the job's window (its concurrency);
/// any write that waits for the writer ends the turn after the round in progress.
pub const TURN_ROUNDS: usize = 4;

/// What begins the items a turn claims (see [`Backend::turn`]).
pub trait Starter: Send + 'static {
    /// Begins the claimed items. Returns the results of those that finished at once,
    /// and how many items may be claimed in their place (0: claim no more this turn).
    fn start(&mut self, claimed: Vec<ClaimedRow>) -> (Vec<Finished>, usize);
}

/// What a turn leaves: the starter, with what it began, the results of the last
/// round, not stored yet, and whether a claim found fewer items than it wanted.
pub struct Turn<S> {
    pub starter: S,
    pub unstored: Vec<Finished>,
    pub exhausted: bool,
}

/// Where jobdeck keeps its jobs; cheap to clone.
#[derive(Clone)]
pub enum Backend {
    /// The embedded default: one SQLite file, one writer.
    Sqlite(Db),
    /// Scale-out: any number of processes on one PostgreSQL database.
    Postgres(std::sync::Arc<PgBackend>),
}

impl From<Db> for Backend {
    fn from(db: Db) -> Self {
        Self::Sqlite(db)
    }
}

impl Backend {
    // ---- reads ----

    pub async fn job(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        match self {
            Self::Sqlite(db) => db.read_now(move |c| store::require_job(c, kind, id)).await,
            Self::Postgres(p) => p.job(kind, id).await,
        }
    }

    /// A page of the jobs `filter` takes (both kinds unless it names one), newest
    /// first, with how many it takes in all, in one snapshot: reads only the newest
    /// `offset + limit` of each kind.
    pub async fn page(&self, filter: JobFilter, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.read(move |c| {
                    let c = &c.unchecked_transaction()?;
                    let newest = offset.saturating_add(limit);
                    let (mut jobs, mut total) = (Vec::new(), 0);
                    for kind in filter.kinds() {
                        let (some, count) = store::filtered_jobs(c, kind, &filter, newest)?;
                        jobs.extend(some);
                        total += count;
                    }
                    Ok(JobsPage::newest_first(jobs, total, offset, limit))
                })
                .await
            }
            Self::Postgres(p) => p.page(filter, offset, limit).await,
        }
    }

    /// A page of a job's activity log, newest first, ids below `before`.
    pub async fn events(
        &self,
        kind: JobKind,
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobEvent>, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.read(move |c| {
                    let c = &c.unchecked_transaction()?;
                    store::require_job(c, kind, id)?;
                    store::list_events(c, kind, id, before, limit)
                })
                .await
            }
            Self::Postgres(p) => p.events(kind, id, before, limit).await,
        }
    }

    pub async fn items(
        &self,
        kind: JobKind,
        id: i64,
        status: Option<ItemStatus>,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        match self {
            Self::Sqlite(db) => db.read(move |c| store::list_items(c, kind, id, status, offset, limit)).await,
            Self::Postgres(p) => p.items(kind, id, status, offset, limit).await,
        }
    }

    /// The job's input column names, in file order, and on SQLite its roles (see
    /// [`JobColumns`]); PostgreSQL keeps every item's name, website and domain.
    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<JobColumns, AppError> {
        match self {
            Self::Sqlite(db) => db.read(move |c| store::job_columns(c, kind, id)).await,
            Self::Postgres(p) => p.columns(kind, id).await.map(JobColumns::names),
        }
    }

    /// The column names and up to `limit` items after item id `after`, for exports.
    pub async fn items_after(
        &self,
        kind: JobKind,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Vec<Item>), AppError> {
        match self {
            Self::Sqlite(db) => db.read(move |c| store::items_after(c, kind, id, after, limit)).await,
            Self::Postgres(p) => p.items_after(kind, id, after, limit).await,
        }
    }

    /// Up to `limit` clean rows of a preprocessing job after item id `after`, read in
    /// one snapshot with the job still there (a job deleted meanwhile is `NotFound`).
    pub async fn clean_rows(&self, pre_id: i64, after: i64, limit: i64) -> Result<Vec<CleanRow>, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.read(move |c| {
                    let snapshot = c.unchecked_transaction()?;
                    store::require_job(&snapshot, JobKind::Preprocess, pre_id)?;
                    store::clean_rows(&snapshot, pre_id, after, limit)
                })
                .await
            }
            Self::Postgres(p) => p.clean_rows(pre_id, after, limit).await,
        }
    }

    // ---- imports and deletes ----

    /// Creates a job, hidden from every read until [`Backend::reveal`].
    pub async fn insert_job(&self, job: NewJob) -> Result<i64, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |tx| {
                    store::insert_job(tx, job.kind, &job.name, &job.filename, job.concurrency, &job.columns)
                })
                .await
            }
            Self::Postgres(p) => p.insert_job(job).await,
        }
    }

    /// Inserts one chunk of a hidden job's items.
    pub async fn insert_items(&self, kind: JobKind, id: i64, chunk: Vec<NewItem>) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::insert_items(tx, kind, id, &chunk)).await,
            Self::Postgres(p) => p.insert_items(kind, id, chunk).await,
        }
    }

    /// Links each preprocessing row to the first row with the same key, a chunk of
    /// items per transaction.
    pub async fn link_duplicates(&self, id: i64) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => {
                let range = db.read(move |c| store::item_id_range(c, JobKind::Preprocess, id)).await?;
                let Some((first, last)) = range else { return Ok(()) };
                let step = CHUNK_ROWS as i64;
                let mut from = first;
                while from <= last {
                    let to = (from + step - 1).min(last);
                    db.write(move |tx| store::link_duplicates(tx, id, from, to)).await?;
                    from = to + 1;
                }
                Ok(())
            }
            Self::Postgres(p) => p.link_duplicates(id).await,
        }
    }

    /// Shows a fully imported job with its `count` items and logs its creation by
    /// `source`; returns it.
    pub async fn reveal(&self, kind: JobKind, id: i64, count: i64, source: Source) -> Result<Job, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |tx| {
                    store::reveal_job(tx, kind, id, count)?;
                    store::add_event(tx, kind, id, EventAction::Created, source, None)?;
                    store::require_job(tx, kind, id)
                })
                .await
            }
            Self::Postgres(p) => p.reveal(kind, id, count, source).await,
        }
    }

    /// Hides a job from every read, for the reason given; its items are then removed
    /// with [`Backend::purge_batch`].
    pub async fn hide(&self, kind: JobKind, id: i64, why: Hidden) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::hide_job(tx, kind, id, why)).await,
            Self::Postgres(p) => p.hide(kind, id, why).await,
        }
    }

    /// Removes up to `limit` of a hidden job's items; `true` once the job itself is gone.
    pub async fn purge_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<bool, AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::purge_batch(tx, kind, id, limit)).await,
            Self::Postgres(p) => p.purge_batch(kind, id, limit).await,
        }
    }

    // ---- control ----

    /// One control action in one transaction: the job is read, handed to `rule`,
    /// changed as the rule says, the change logged as done by `source`, and the job
    /// returned as it is afterwards.
    pub async fn control(&self, kind: JobKind, id: i64, source: Source, rule: Rule) -> Result<Job, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |tx| {
                    let job = store::require_job(tx, kind, id)?;
                    let Some(change) = rule(&job)? else { return Ok(job) };
                    let mut moved = 0;
                    match &change {
                        Change::Pause => store::set_paused(tx, kind, id, true)?,
                        Change::Resume => store::set_paused(tx, kind, id, false)?,
                        Change::Cancel => store::cancel_job(tx, kind, id)?,
                        Change::Retry { .. } => moved = store::retry_failed(tx, kind, id)?,
                        Change::Archive => store::set_archived(tx, kind, id, true)?,
                        Change::Unarchive => store::set_archived(tx, kind, id, false)?,
                        Change::Edit { name, concurrency } => {
                            store::edit_job(tx, kind, id, name.as_deref(), *concurrency)?
                        }
                        Change::Schedule { pause_at, resume_at } => {
                            store::set_schedule(tx, kind, id, *pause_at, *resume_at)?
                        }
                    }
                    let detail = change.detail(&job, moved);
                    store::add_event(tx, kind, id, change.action(), source, detail.as_deref())?;
                    store::require_job(tx, kind, id)
                })
                .await
            }
            Self::Postgres(p) => p.control(kind, id, source, rule).await,
        }
    }

    /// Before a retry on SQLite: moves up to `limit` failed items of a completed job
    /// back to `pending` in one short transaction (the job stays completed, so nothing
    /// starts and no other writer waits long); returns how many moved, 0 once none is
    /// left or the job is no longer a visible completed job. PostgreSQL moves them all
    /// in the retry's own transaction, which holds only this job's row: 0 here.
    pub async fn retry_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<i64, AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::retry_batch(tx, kind, id, limit)).await,
            Self::Postgres(_) => Ok(0),
        }
    }

    /// Deletes a job `allowed` lets go (checked inside the transaction): it disappears
    /// from every read at once; its items are removed afterwards with
    /// [`Backend::purge_batch`].
    pub async fn delete(
        &self,
        kind: JobKind,
        id: i64,
        allowed: fn(&Job) -> Result<(), AppError>,
    ) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |tx| {
                    allowed(&store::require_job(tx, kind, id)?)?;
                    store::hide_job(tx, kind, id, Hidden::Deleting)
                })
                .await
            }
            Self::Postgres(p) => p.delete(kind, id, allowed).await,
        }
    }

    // ---- the runner ----

    /// At start-up, after a crash or a stop: items this server left in flight go back
    /// to pending, an import cut short becomes a delete, and the hidden jobs whose
    /// removal is to be finished are returned with how many items moved.
    pub async fn recover(&self) -> Result<(usize, Vec<(JobKind, i64, Hidden)>), AppError> {
        match self {
            Self::Sqlite(db) => {
                db.write(|tx| {
                    let mut moved = 0;
                    for (kind, id) in store::jobs_with_processing(tx)? {
                        moved += store::reset_processing(tx, kind, id)?;
                    }
                    for (kind, id) in store::retries_cut_short(tx)? {
                        // A retry moved items back in batches and the process stopped
                        // before the job ran again: it runs now.
                        store::retry_failed(tx, kind, id)?;
                        store::add_event(
                            tx,
                            kind,
                            id,
                            EventAction::Retried,
                            Source::System,
                            Some("a retry cut short by a restart carries on"),
                        )?;
                    }
                    let hidden = store::hidden_jobs(tx)?;
                    for &(kind, id, why) in &hidden {
                        if why == Hidden::Importing {
                            // Nobody saw it: an import the last run did not finish.
                            store::hide_job(tx, kind, id, Hidden::Deleting)?;
                        }
                    }
                    Ok((moved, hidden))
                })
                .await
            }
            Self::Postgres(p) => p.recover().await,
        }
    }

    /// Every job that may still run (paused ones included).
    pub async fn live_jobs(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        match self {
            Self::Sqlite(db) => db.read(store::live_jobs).await,
            Self::Postgres(p) => p.live_jobs().await,
        }
    }

    /// The job's state as the runner needs it; `None` once it is gone.
    pub async fn flags(&self, kind: JobKind, id: i64) -> Result<Option<Flags>, AppError> {
        match self {
            Self::Sqlite(db) => db.read(move |c| store::job_flags(c, kind, id)).await,
            Self::Postgres(p) => p.flags(kind, id).await,
        }
    }

    /// Stores `finished` (each only if its item is still in flight) in one
    /// transaction: results a failed turn could not store, tried again. The runner's
    /// turns themselves go through [`Backend::turn`].
    pub async fn store_results(
        &self,
        kind: JobKind,
        id: i64,
        finished: Vec<Finished>,
        burst: u32,
    ) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::finish_batch(tx, kind, id, &finished, burst).map(drop)).await,
            Self::Postgres(p) => p.finish_and_claim(kind, id, &finished, 0, burst).await.map(drop),
        }
    }

    /// One turn of a job's runner: stores `finished`, claims up to `want` items and
    /// hands them to `starter`. On SQLite, while the starter finishes items at once (a
    /// step that needs nothing outside the item) and no other write waits for the
    /// writer, their results are stored and as many items claimed again in the same
    /// transaction, up to [`TURN_ROUNDS`] rounds: one commit then carries many rounds
    /// of the window instead of one. What the last round finished is returned, to be
    /// stored by the next turn. On PostgreSQL a turn is one round.
    ///
    /// Nothing of a turn is seen before it commits: at every commit the job's counters
    /// are exact and no more items are `processing` than the window allows. If the
    /// write fails, the starter is dropped with what it began (the claims are undone).
    pub async fn turn<S: Starter>(
        &self,
        kind: JobKind,
        id: i64,
        finished: Arc<Vec<Finished>>,
        want: usize,
        burst: u32,
        mut starter: S,
    ) -> Result<Turn<S>, AppError> {
        match self {
            Self::Sqlite(db) => {
                let waiting = db.writers_waiting();
                db.write(move |tx| {
                    let mut store_now: &[Finished] = &finished;
                    let mut done;
                    let mut want = want;
                    let mut round = 0;
                    loop {
                        round += 1;
                        if !store_now.is_empty() {
                            store::finish_batch(tx, kind, id, store_now, burst)?;
                        }
                        if want == 0 {
                            return Ok(Turn { starter, unstored: Vec::new(), exhausted: false });
                        }
                        let claimed = store::claim_batch(tx, kind, id, want)?;
                        let exhausted = claimed.len() < want;
                        (done, want) = starter.start(claimed);
                        let again = round < TURN_ROUNDS
                            && !exhausted
                            && !done.is_empty()
                            && waiting.load(std::sync::atomic::Ordering::Relaxed) == 0;
                        if !again {
                            return Ok(Turn { starter, unstored: done, exhausted });
                        }
                        store_now = &done;
                    }
                })
                .await
            }
            Self::Postgres(p) => {
                let claimed = p.finish_and_claim(kind, id, &finished, want, burst).await?;
                let exhausted = claimed.len() < want;
                let (unstored, _) = starter.start(claimed);
                Ok(Turn { starter, unstored, exhausted })
            }
        }
    }

    /// Puts the items this server holds of a job back to `pending` (a cancel, a stop,
    /// a crashed task). Returns how many moved.
    pub async fn release_held(&self, kind: JobKind, id: i64) -> Result<usize, AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::reset_processing(tx, kind, id)).await,
            Self::Postgres(p) => p.release_held(kind, id).await,
        }
    }

    /// Puts one in-flight item back to `pending`, keeping its attempts.
    pub async fn requeue(&self, kind: JobKind, id: i64, item_id: i64) -> Result<bool, AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::requeue_item(tx, kind, id, item_id)).await,
            Self::Postgres(p) => p.requeue(kind, id, item_id).await,
        }
    }

    /// A rate limit met by one item: the item goes back to `pending` and the job pauses
    /// until `resume_at` with `reason`, unless a person paused it.
    pub async fn rate_limited(
        &self,
        kind: JobKind,
        id: i64,
        item_id: i64,
        reason: String,
        resume_at: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |tx| {
                    store::requeue_item(tx, kind, id, item_id)?;
                    store::pause_for_rate_limit(tx, kind, id, &reason, resume_at)
                })
                .await
            }
            Self::Postgres(p) => p.rate_limited(kind, id, item_id, reason, resume_at).await,
        }
    }

    /// Lifts a rate limit's pause whose time has come.
    pub async fn auto_resume(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::auto_resume(tx, kind, id)).await,
            Self::Postgres(p) => p.auto_resume(kind, id).await,
        }
    }

    /// Fires every scheduled pause and resume that is due, each exactly once (cleared in
    /// the transaction that acts on it); returns the jobs it changed.
    pub async fn fire_schedules(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        match self {
            Self::Sqlite(db) => db.write(|tx| store::fire_schedules(tx, Utc::now())).await,
            Self::Postgres(p) => p.fire_schedules().await,
        }
    }

    /// When the next scheduled pause or resume falls due.
    pub async fn next_schedule(&self) -> Result<Option<DateTime<Utc>>, AppError> {
        match self {
            Self::Sqlite(db) => db.read(store::next_schedule).await,
            Self::Postgres(p) => p.next_schedule().await,
        }
    }

    // ---- notifications ----

    /// The channels events are queued for from now on.
    pub async fn set_channels(&self, channels: Vec<&'static str>) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::set_channels(tx, &channels)).await,
            Self::Postgres(p) => p.set_channels(&channels).await,
        }
    }

    /// Takes up to `limit` due notifications of `channels` (those this process can
    /// deliver), held for `lease`.
    pub async fn claim_outbox(
        &self,
        lease: std::time::Duration,
        limit: i64,
        channels: Vec<&'static str>,
    ) -> Result<Vec<store::types::Outgoing>, AppError> {
        match self {
            Self::Sqlite(db) => {
                let now = Utc::now();
                let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                db.write(move |tx| store::claim_outbox(tx, now, until, limit)).await
            }
            Self::Postgres(p) => p.claim_outbox(lease, limit, &channels).await,
        }
    }

    /// Records one try of a notification (see [`store::settle_outgoing`]).
    pub async fn settle_outgoing(
        &self,
        sent: store::types::Outgoing,
        outcome: store::types::Settled,
    ) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::settle_outgoing(tx, &sent, &outcome)).await,
            Self::Postgres(p) => p.settle_outgoing(&sent, &outcome).await,
        }
    }

    /// When the next waiting notification of `channels` falls due.
    pub async fn next_outgoing(&self, channels: Vec<&'static str>) -> Result<Option<DateTime<Utc>>, AppError> {
        match self {
            Self::Sqlite(db) => db.read(store::next_outgoing).await,
            Self::Postgres(p) => p.next_outgoing(&channels).await,
        }
    }

    // ---- this process among others ----

    /// Starts what makes this process one of many, with its tasks on `tracker` until
    /// `shutdown`: on PostgreSQL its heartbeat and, for a runner, its bid for the
    /// leader's lease and its listener for other processes' control actions
    /// (`pg::node`). Nothing on SQLite, where one process runs everything.
    pub fn start_node(
        &self,
        role: NodeRole,
        worker_timeout: std::time::Duration,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
        hooks: NodeHooks,
    ) {
        if let Self::Postgres(p) = self {
            super::pg::node::Node::start(p.clone(), role, worker_timeout, tracker, shutdown, hooks);
        }
    }

    /// Signs this process off once it holds no item (PostgreSQL; nothing on SQLite).
    pub async fn leave(&self) {
        if let Self::Postgres(p) = self {
            if let Err(e) = p.leave().await {
                tracing::warn!(worker = p.worker_id, error = %e, "could not sign this worker off");
            }
        }
    }

    // ---- sign-in sessions (SPEC section 11) ----

    /// Records a session stored under `key` (see `server::access`), valid until
    /// `expires` (Unix seconds); expired sessions go at the same time.
    pub async fn session_start(&self, key: String, created: i64, expires: i64) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::sessions::start(tx, &key, created, expires)).await,
            Self::Postgres(p) => p.session_start(&key, created, expires).await,
        }
    }

    /// Whether `key` names a session that has neither ended nor expired at `now`.
    pub async fn session_alive(&self, key: String, now: i64) -> Result<bool, AppError> {
        match self {
            Self::Sqlite(db) => db.read_now(move |c| store::sessions::alive(c, &key, now)).await,
            Self::Postgres(p) => p.session_alive(&key, now).await,
        }
    }

    /// Ends the session stored under `key`.
    pub async fn session_end(&self, key: String) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::sessions::end(tx, &key)).await,
            Self::Postgres(p) => p.session_end(&key).await,
        }
    }

    /// Ends every session.
    pub async fn sessions_end_all(&self) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.write(|tx| store::sessions::end_all(tx).map(drop)).await,
            Self::Postgres(p) => p.sessions_end_all().await.map(drop),
        }
    }

    /// Marks a live job with nothing left `completed`; `true` if it is now over or gone.
    pub async fn complete_if_done(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        match self {
            Self::Sqlite(db) => db.write(move |tx| store::complete_if_done(tx, kind, id)).await,
            Self::Postgres(p) => p.complete_if_done(kind, id).await,
        }
    }
}

/// The word for a job that can no longer change.
pub(crate) fn terminal_word(job: &Job) -> &'static str {
    match job.phase() {
        crate::model::Phase::Cancelled => "cancelled",
        crate::model::Phase::Completed => "completed",
        _ => "failed",
    }
}
