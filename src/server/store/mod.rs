//! The store: every read and write the service and the runner make, each one
//! transaction, named for what it means rather than how it is done, one signature each.
//! The rules (what a pause does to a paused job, when a job may be deleted) stay in the
//! service; a store only applies them atomically.
//!
//! Two stores sit side by side with the same operations: [`sqlite`], the embedded
//! default, and [`postgres`], for many processes on one database (SPEC section 10).
//! [`Store`] is an enum whose arms only delegate, rather than a trait object: its
//! operations are async and one is generic (the runner's turn), which a `dyn` trait
//! cannot carry without boxing every call, and the set of stores is closed. What both
//! stores speak is in [`types`], what both decide the same way in [`rules`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub mod postgres;
pub mod rules;
pub mod sqlite;
pub mod types;

use self::postgres::PgStore;
use self::sqlite::SqliteStore;
use self::types::{
    CleanRow, Finished, Flags, Hidden, JobColumns, JobSettings, NewItem, NewJob, NodeHooks, NodeRole, Outgoing,
    ResearchLink, Rule, Settled, Starter, Turn,
};
use crate::model::{
    Item, ItemPage, ItemStatus, Job, JobEvent, JobFilter, JobKind, JobsPage, Outcome, OutcomeCounts, Source,
};
use crate::server::error::AppError;

/// Where jobdeck keeps its jobs; cheap to clone.
#[derive(Clone)]
pub enum Store {
    /// The embedded default: one SQLite file, one writer.
    Sqlite(SqliteStore),
    /// Scale-out: any number of processes on one PostgreSQL database.
    Postgres(Arc<PgStore>),
}

/// The same call on whichever store this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl From<sqlite::db::Db> for Store {
    fn from(db: sqlite::db::Db) -> Self {
        Self::Sqlite(db.into())
    }
}

impl From<PgStore> for Store {
    fn from(pg: PgStore) -> Self {
        Self::Postgres(Arc::new(pg))
    }
}

impl Store {
    pub async fn job(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        each!(self, s => s.job(kind, id).await)
    }

    /// A page of the jobs `filter` takes (both kinds unless it names one), newest
    /// first, with how many it takes in all, in one snapshot: reads only the newest
    /// `offset + limit` of each kind.
    pub async fn page(&self, filter: JobFilter, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        each!(self, s => s.page(filter, offset, limit).await)
    }

    /// A page of a job's activity log, newest first, ids below `before`.
    pub async fn events(
        &self,
        kind: JobKind,
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobEvent>, AppError> {
        each!(self, s => s.events(kind, id, before, limit).await)
    }

    pub async fn items(
        &self,
        kind: JobKind,
        id: i64,
        status: Option<ItemStatus>,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        each!(self, s => s.items(kind, id, status, offset, limit).await)
    }

    /// A page of a preprocessing job's rows of one outcome (SPEC section 16).
    pub async fn outcome_items(
        &self,
        id: i64,
        outcome: Outcome,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        each!(self, s => s.outcome_items(id, outcome, offset, limit).await)
    }

    /// A preprocessing job's finished rows counted by outcome, through the outcome
    /// index (see `server::outcomes` for why they are kept a moment).
    pub async fn outcome_counts(&self, id: i64) -> Result<OutcomeCounts, AppError> {
        each!(self, s => s.outcome_counts(id).await)
    }

    /// The research job a preprocessing job's clean rows went to, while it is there.
    pub async fn research_link(&self, id: i64) -> Result<Option<ResearchLink>, AppError> {
        each!(self, s => s.research_link(id).await)
    }

    /// The job's input column names, in file order, and on SQLite its roles (see
    /// [`JobColumns`]); PostgreSQL keeps every item's name, website and domain.
    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<JobColumns, AppError> {
        each!(self, s => s.columns(kind, id).await)
    }

    /// The column names and up to `limit` items after item id `after`, for exports.
    pub async fn items_after(
        &self,
        kind: JobKind,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Vec<Item>), AppError> {
        each!(self, s => s.items_after(kind, id, after, limit).await)
    }

    /// Up to `limit` clean rows of a preprocessing job after item id `after`, read in
    /// one snapshot with the job still there (a job deleted meanwhile is `NotFound`).
    pub async fn clean_rows(&self, pre_id: i64, after: i64, limit: i64) -> Result<Vec<CleanRow>, AppError> {
        each!(self, s => s.clean_rows(pre_id, after, limit).await)
    }

    /// Creates a job, hidden from every read until [`Store::reveal`].
    pub async fn insert_job(&self, job: NewJob) -> Result<i64, AppError> {
        each!(self, s => s.insert_job(job).await)
    }

    /// Inserts one chunk of a hidden job's items.
    pub async fn insert_items(&self, kind: JobKind, id: i64, chunk: Vec<NewItem>) -> Result<(), AppError> {
        each!(self, s => s.insert_items(kind, id, chunk).await)
    }

    /// Links each preprocessing row to the first row with the same key, once every
    /// row is in (SQLite links each chunk as it goes in; PostgreSQL in one statement
    /// here).
    pub async fn link_duplicates(&self, id: i64) -> Result<(), AppError> {
        each!(self, s => s.link_duplicates(id).await)
    }

    /// Shows a fully imported job with its `count` items and its settings as the whole
    /// form gave them, and logs its creation by `source`; returns it.
    pub async fn reveal(
        &self,
        kind: JobKind,
        id: i64,
        count: i64,
        settings: JobSettings,
        source: Source,
        from: Option<i64>,
    ) -> Result<Job, AppError> {
        each!(self, s => s.reveal(kind, id, count, settings, source, from).await)
    }

    /// Hides a job from every read, for the reason given; its items are then removed
    /// with [`Store::purge_batch`].
    pub async fn hide(&self, kind: JobKind, id: i64, why: Hidden) -> Result<(), AppError> {
        each!(self, s => s.hide(kind, id, why).await)
    }

    /// Removes up to `limit` of a hidden job's items; `true` once the job itself is gone.
    pub async fn purge_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<bool, AppError> {
        each!(self, s => s.purge_batch(kind, id, limit).await)
    }

    /// One control action in one transaction: the job is read, handed to `rule`,
    /// changed as the rule says, the change logged as done by `source`, and the job
    /// returned as it is afterwards.
    pub async fn control(&self, kind: JobKind, id: i64, source: Source, rule: Rule) -> Result<Job, AppError> {
        each!(self, s => s.control(kind, id, source, rule).await)
    }

    /// Before a retry on SQLite: moves up to `limit` failed items of a completed job
    /// back to `pending` in one short transaction (the job stays completed, so nothing
    /// starts and no other writer waits long); returns how many moved, 0 once none is
    /// left or the job is no longer a visible completed job. PostgreSQL moves them all
    /// in the retry's own transaction, which holds only this job's row: 0 here.
    pub async fn retry_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<i64, AppError> {
        each!(self, s => s.retry_batch(kind, id, limit).await)
    }

    /// Deletes a job `allowed` lets go (checked inside the transaction): it disappears
    /// from every read at once; its items are removed afterwards with
    /// [`Store::purge_batch`].
    pub async fn delete(
        &self,
        kind: JobKind,
        id: i64,
        allowed: fn(&Job) -> Result<(), AppError>,
    ) -> Result<(), AppError> {
        each!(self, s => s.delete(kind, id, allowed).await)
    }

    /// At start-up, after a crash or a stop: items this server left in flight go back
    /// to pending, an import cut short becomes a delete, and the hidden jobs whose
    /// removal is to be finished are returned with how many items moved.
    pub async fn recover(&self) -> Result<(usize, Vec<(JobKind, i64, Hidden)>), AppError> {
        each!(self, s => s.recover().await)
    }

    /// Every job that may still run (paused ones included).
    pub async fn live_jobs(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        each!(self, s => s.live_jobs().await)
    }

    /// The job's state as the runner needs it; `None` once it is gone.
    pub async fn flags(&self, kind: JobKind, id: i64) -> Result<Option<Flags>, AppError> {
        each!(self, s => s.flags(kind, id).await)
    }

    /// Stores `finished` (each only if its item is still in flight) in one
    /// transaction: results a failed turn could not store, tried again. The runner's
    /// turns themselves go through [`Store::turn`].
    pub async fn store_results(
        &self,
        kind: JobKind,
        id: i64,
        finished: Vec<Finished>,
        burst: u32,
    ) -> Result<(), AppError> {
        each!(self, s => s.store_results(kind, id, finished, burst).await)
    }

    /// One turn of a job's runner: stores `finished`, claims up to `want` items and
    /// hands them to `starter`. On SQLite, while the starter finishes items at once (a
    /// step that needs nothing outside the item) and no other write waits for the
    /// writer, their results are stored and as many items claimed again in the same
    /// transaction, up to [`TURN_ROUNDS`](sqlite::TURN_ROUNDS) rounds: one commit then
    /// carries many rounds of the window instead of one. What the last round finished
    /// is returned, to be stored by the next turn. On PostgreSQL a turn is one round.
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
        starter: S,
    ) -> Result<Turn<S>, AppError> {
        each!(self, s => s.turn(kind, id, finished, want, burst, starter).await)
    }

    /// Puts the items this server holds of a job back to `pending` (a cancel, a stop,
    /// a crashed task). Returns how many moved.
    pub async fn release_held(&self, kind: JobKind, id: i64) -> Result<usize, AppError> {
        each!(self, s => s.release_held(kind, id).await)
    }

    /// Puts one in-flight item back to `pending`, keeping its attempts.
    pub async fn requeue(&self, kind: JobKind, id: i64, item_id: i64) -> Result<bool, AppError> {
        each!(self, s => s.requeue(kind, id, item_id).await)
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
        each!(self, s => s.rate_limited(kind, id, item_id, reason, resume_at).await)
    }

    /// Lifts a rate limit's pause whose time has come.
    pub async fn auto_resume(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        each!(self, s => s.auto_resume(kind, id).await)
    }

    /// Fires every scheduled pause and resume that is due, each exactly once (cleared in
    /// the transaction that acts on it); returns the jobs it changed.
    pub async fn fire_schedules(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        each!(self, s => s.fire_schedules().await)
    }

    /// When the next scheduled pause or resume falls due.
    pub async fn next_schedule(&self) -> Result<Option<DateTime<Utc>>, AppError> {
        each!(self, s => s.next_schedule().await)
    }

    /// The channels events are queued for from now on.
    pub async fn set_channels(&self, channels: Vec<&'static str>) -> Result<(), AppError> {
        each!(self, s => s.set_channels(channels).await)
    }

    /// Takes up to `limit` due notifications of `channels` (those this process can
    /// deliver), held for `lease`.
    pub async fn claim_outbox(
        &self,
        lease: std::time::Duration,
        limit: i64,
        channels: Vec<&'static str>,
    ) -> Result<Vec<Outgoing>, AppError> {
        each!(self, s => s.claim_outbox(lease, limit, channels).await)
    }

    /// Records one try of a notification (see [`sqlite::events::settle_outgoing`]).
    pub async fn settle_outgoing(&self, sent: Outgoing, outcome: Settled) -> Result<(), AppError> {
        each!(self, s => s.settle_outgoing(sent, outcome).await)
    }

    /// When the next waiting notification of `channels` falls due.
    pub async fn next_outgoing(&self, channels: Vec<&'static str>) -> Result<Option<DateTime<Utc>>, AppError> {
        each!(self, s => s.next_outgoing(channels).await)
    }

    /// Starts what makes this process one of many, with its tasks on `tracker` until
    /// `shutdown`: on PostgreSQL its heartbeat and, for a runner, its bid for the
    /// leader's lease and its listener for other processes' control actions
    /// ([`postgres::node`]). Nothing on SQLite, where one process runs everything.
    pub fn start_node(
        &self,
        role: NodeRole,
        worker_timeout: std::time::Duration,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
        hooks: NodeHooks,
    ) {
        each!(self, s => s.start_node(role, worker_timeout, tracker, shutdown, hooks))
    }

    /// Signs this process off once it holds no item (PostgreSQL; nothing on SQLite).
    pub async fn leave(&self) -> Result<(), AppError> {
        each!(self, s => s.leave().await)
    }

    // ---- sign-in sessions (SPEC section 11) ----

    /// Records a session stored under `key` (see `server::access`), valid until
    /// `expires` (Unix seconds); expired sessions go at the same time.
    pub async fn session_start(&self, key: String, created: i64, expires: i64) -> Result<(), AppError> {
        each!(self, s => s.session_start(key, created, expires).await)
    }

    /// Whether `key` names a session that has neither ended nor expired at `now`.
    pub async fn session_alive(&self, key: String, now: i64) -> Result<bool, AppError> {
        each!(self, s => s.session_alive(key, now).await)
    }

    /// Ends the session stored under `key`.
    pub async fn session_end(&self, key: String) -> Result<(), AppError> {
        each!(self, s => s.session_end(key).await)
    }

    /// Ends every session.
    pub async fn sessions_end_all(&self) -> Result<(), AppError> {
        each!(self, s => s.sessions_end_all().await)
    }

    /// Marks a live job with nothing left `completed`; `true` if it is now over or gone.
    pub async fn complete_if_done(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        each!(self, s => s.complete_if_done(kind, id).await)
    }
}
