//! The store over SQLite, the embedded default: one file, one writer connection and a
//! pool of readers ([`db`]), so status reads run beside the runner's writes. Every
//! operation is one transaction made of the statements in [`jobs`], [`items`] and
//! [`events`] (built per kind of job in [`sql`]). One process runs everything: there is
//! no cluster to join, and start-up puts back what the last run left in flight.

pub mod db;
pub mod events;
pub mod items;
pub mod jobs;
mod sessions;
pub mod sql;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use self::db::Db;
use crate::model::{
    EventAction, Item, ItemPage, ItemStatus, Job, JobEvent, JobFilter, JobKind, JobsPage, Outcome, OutcomeCounts,
    Source,
};
use crate::server::error::AppError;
use crate::server::store::rules;
use crate::server::store::types::{
    Change, CleanRow, Finished, Flags, Hidden, JobColumns, JobSettings, NewItem, NewJob, NodeHooks, NodeRole, Outgoing,
    ResearchLink, Rule, Settled, Starter, Turn,
};

/// Rounds of claims one turn of a runner may make in a single transaction (see
/// [`SqliteStore::turn`]). Each round claims at most the job's window (its
/// concurrency); any write that waits for the writer ends the turn after the round in
/// progress.
pub const TURN_ROUNDS: usize = 4;

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl From<Db> for SqliteStore {
    fn from(db: Db) -> Self {
        Self { db }
    }
}

impl SqliteStore {
    // ---- reads ----

    pub async fn job(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.db.read_now(move |c| jobs::require_job(c, kind, id)).await
    }

    pub async fn page(&self, filter: JobFilter, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        self.db
            .read(move |c| {
                let c = &c.unchecked_transaction()?;
                let newest = offset.saturating_add(limit);
                let (mut found, mut total) = (Vec::new(), 0);
                for kind in filter.kinds() {
                    let (some, count) = jobs::filtered_jobs(c, kind, &filter, newest)?;
                    found.extend(some);
                    total += count;
                }
                Ok(JobsPage::newest_first(found, total, offset, limit))
            })
            .await
    }

    pub async fn events(
        &self,
        kind: JobKind,
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobEvent>, AppError> {
        self.db
            .read(move |c| {
                let c = &c.unchecked_transaction()?;
                jobs::require_job(c, kind, id)?;
                events::list_events(c, kind, id, before, limit)
            })
            .await
    }

    pub async fn items(
        &self,
        kind: JobKind,
        id: i64,
        status: Option<ItemStatus>,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        self.db.read(move |c| items::list_items(c, kind, id, status, offset, limit)).await
    }

    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<JobColumns, AppError> {
        self.db.read(move |c| jobs::job_columns(c, kind, id)).await
    }

    pub async fn outcome_items(
        &self,
        id: i64,
        outcome: Outcome,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        self.db.read(move |c| items::outcome_items(c, id, outcome, offset, limit)).await
    }

    pub async fn outcome_counts(&self, id: i64) -> Result<OutcomeCounts, AppError> {
        self.db.read(move |c| items::outcome_counts(c, id)).await
    }

    pub async fn research_link(&self, id: i64) -> Result<Option<ResearchLink>, AppError> {
        self.db.read(move |c| items::research_link(c, id)).await
    }

    pub async fn items_after(
        &self,
        kind: JobKind,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Vec<Item>), AppError> {
        self.db.read(move |c| items::items_after(c, kind, id, after, limit)).await
    }

    pub async fn clean_rows(&self, pre_id: i64, after: i64, limit: i64) -> Result<Vec<CleanRow>, AppError> {
        self.db
            .read(move |c| {
                let snapshot = c.unchecked_transaction()?;
                jobs::require_job(&snapshot, JobKind::Preprocess, pre_id)?;
                items::clean_rows(&snapshot, pre_id, after, limit)
            })
            .await
    }

    // ---- imports and deletes ----

    pub async fn insert_job(&self, job: NewJob) -> Result<i64, AppError> {
        self.db
            .write(move |tx| jobs::insert_job(tx, job.kind, &job.name, &job.filename, job.concurrency, &job.columns))
            .await
    }

    pub async fn insert_items(&self, kind: JobKind, id: i64, chunk: Vec<NewItem>) -> Result<(), AppError> {
        self.db.write(move |tx| items::insert_items(tx, kind, id, &chunk)).await
    }

    /// Nothing left to link: [`SqliteStore::insert_items`] links each chunk's
    /// duplicates in the chunk's own transaction.
    pub async fn link_duplicates(&self, _id: i64) -> Result<(), AppError> {
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
        self.db
            .write(move |tx| {
                jobs::settle_job(tx, kind, id, &settings)?;
                jobs::reveal_job(tx, kind, id, count)?;
                if let Some(pre_id) = from {
                    items::link_research(tx, pre_id, id)?;
                }
                events::add_event(tx, kind, id, EventAction::Created, source, None)?;
                jobs::require_job(tx, kind, id)
            })
            .await
    }

    pub async fn hide(&self, kind: JobKind, id: i64, why: Hidden) -> Result<(), AppError> {
        self.db.write(move |tx| jobs::hide_job(tx, kind, id, why)).await
    }

    pub async fn purge_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<bool, AppError> {
        self.db.write(move |tx| jobs::purge_batch(tx, kind, id, limit)).await
    }

    // ---- control ----

    pub async fn control(&self, kind: JobKind, id: i64, source: Source, rule: Rule) -> Result<Job, AppError> {
        self.db
            .write(move |tx| {
                let job = jobs::require_job(tx, kind, id)?;
                let Some(change) = rule(&job)? else { return Ok(job) };
                let mut moved = 0;
                match &change {
                    Change::Pause => jobs::set_paused(tx, kind, id, true)?,
                    Change::Resume => jobs::set_paused(tx, kind, id, false)?,
                    Change::Cancel => jobs::cancel_job(tx, kind, id)?,
                    Change::Retry { .. } => moved = items::retry_failed(tx, kind, id)?,
                    Change::Archive => jobs::set_archived(tx, kind, id, true)?,
                    Change::Unarchive => jobs::set_archived(tx, kind, id, false)?,
                    Change::Edit { name, concurrency } => jobs::edit_job(tx, kind, id, name.as_deref(), *concurrency)?,
                    Change::Schedule { pause_at, resume_at } => {
                        jobs::set_schedule(tx, kind, id, *pause_at, *resume_at)?
                    }
                }
                let detail = change.detail(&job, moved);
                events::add_event(tx, kind, id, change.action(), source, detail.as_deref())?;
                jobs::require_job(tx, kind, id)
            })
            .await
    }

    /// Moves up to `limit` failed items of a completed job back to `pending` in one
    /// short transaction (the job stays completed, so nothing starts and no other
    /// writer waits long).
    pub async fn retry_batch(&self, kind: JobKind, id: i64, limit: i64) -> Result<i64, AppError> {
        self.db.write(move |tx| items::retry_batch(tx, kind, id, limit)).await
    }

    pub async fn delete(
        &self,
        kind: JobKind,
        id: i64,
        allowed: fn(&Job) -> Result<(), AppError>,
    ) -> Result<(), AppError> {
        self.db
            .write(move |tx| {
                allowed(&jobs::require_job(tx, kind, id)?)?;
                jobs::hide_job(tx, kind, id, Hidden::Deleting)
            })
            .await
    }

    // ---- the runner ----

    /// Everything the last run left in flight was this process's: all of it goes back.
    pub async fn recover(&self) -> Result<(usize, Vec<(JobKind, i64, Hidden)>), AppError> {
        self.db
            .write(|tx| {
                let mut moved = 0;
                for (kind, id) in items::jobs_with_processing(tx)? {
                    moved += items::reset_processing(tx, kind, id)?;
                }
                for (kind, id) in items::retries_cut_short(tx)? {
                    // A retry moved items back in batches and the process stopped
                    // before the job ran again: it runs now.
                    items::retry_failed(tx, kind, id)?;
                    events::add_event(
                        tx,
                        kind,
                        id,
                        EventAction::Retried,
                        Source::System,
                        Some("a retry cut short by a restart carries on"),
                    )?;
                }
                let hidden = jobs::hidden_jobs(tx)?;
                for &(kind, id, why) in &hidden {
                    if why == Hidden::Importing {
                        // Nobody saw it: an import the last run did not finish.
                        jobs::hide_job(tx, kind, id, Hidden::Deleting)?;
                    }
                }
                Ok((moved, hidden))
            })
            .await
    }

    pub async fn live_jobs(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        self.db.read(jobs::live_jobs).await
    }

    pub async fn flags(&self, kind: JobKind, id: i64) -> Result<Option<Flags>, AppError> {
        self.db.read(move |c| jobs::job_flags(c, kind, id)).await
    }

    pub async fn store_results(
        &self,
        kind: JobKind,
        id: i64,
        finished: Vec<Finished>,
        burst: u32,
    ) -> Result<(), AppError> {
        self.db.write(move |tx| items::finish_batch(tx, kind, id, &finished, burst).map(drop)).await
    }

    /// While the starter finishes items at once (a step that needs nothing outside the
    /// item) and no other write waits for the writer, their results are stored and as
    /// many items claimed again in the same transaction, up to [`TURN_ROUNDS`] rounds:
    /// one commit then carries many rounds of the window instead of one. What the last
    /// round finished is returned, to be stored by the next turn.
    pub async fn turn<S: Starter>(
        &self,
        kind: JobKind,
        id: i64,
        finished: Arc<Vec<Finished>>,
        want: usize,
        burst: u32,
        mut starter: S,
    ) -> Result<Turn<S>, AppError> {
        let waiting = self.db.writers_waiting();
        self.db
            .write(move |tx| {
                let mut store_now: &[Finished] = &finished;
                let mut done;
                let mut want = want;
                let mut round = 0;
                loop {
                    round += 1;
                    if !store_now.is_empty() {
                        items::finish_batch(tx, kind, id, store_now, burst)?;
                    }
                    if want == 0 {
                        return Ok(Turn { starter, unstored: Vec::new(), exhausted: false, again: false });
                    }
                    let claimed = items::claim_batch(tx, kind, id, want)?;
                    let exhausted = claimed.len() < want;
                    (done, want) = starter.start(claimed);
                    let free = waiting.load(std::sync::atomic::Ordering::Relaxed) == 0;
                    let again = rules::another_round(round, TURN_ROUNDS, exhausted, done.len(), free);
                    if !again {
                        return Ok(Turn { starter, unstored: done, exhausted, again: false });
                    }
                    store_now = &done;
                }
            })
            .await
    }

    pub async fn release_held(&self, kind: JobKind, id: i64) -> Result<usize, AppError> {
        self.db.write(move |tx| items::reset_processing(tx, kind, id)).await
    }

    pub async fn requeue(&self, kind: JobKind, id: i64, item_id: i64) -> Result<bool, AppError> {
        self.db.write(move |tx| items::requeue_item(tx, kind, id, item_id)).await
    }

    pub async fn rate_limited(
        &self,
        kind: JobKind,
        id: i64,
        item_id: i64,
        reason: String,
        resume_at: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        self.db
            .write(move |tx| {
                items::requeue_item(tx, kind, id, item_id)?;
                jobs::pause_for_rate_limit(tx, kind, id, &reason, resume_at)
            })
            .await
    }

    pub async fn auto_resume(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        self.db.write(move |tx| jobs::auto_resume(tx, kind, id)).await
    }

    pub async fn fire_schedules(&self) -> Result<Vec<(JobKind, i64)>, AppError> {
        self.db.write(|tx| jobs::fire_schedules(tx, Utc::now())).await
    }

    pub async fn next_schedule(&self) -> Result<Option<DateTime<Utc>>, AppError> {
        self.db.read(jobs::next_schedule).await
    }

    pub async fn complete_if_done(&self, kind: JobKind, id: i64) -> Result<bool, AppError> {
        self.db.write(move |tx| items::complete_if_done(tx, kind, id)).await
    }

    // ---- notifications ----

    pub async fn set_channels(&self, channels: Vec<&'static str>) -> Result<(), AppError> {
        self.db.write(move |tx| events::set_channels(tx, &channels)).await
    }

    /// One process delivers every channel it queues for: `channels` picks nothing here.
    pub async fn claim_outbox(
        &self,
        lease: std::time::Duration,
        limit: i64,
        _channels: Vec<&'static str>,
    ) -> Result<Vec<Outgoing>, AppError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        self.db.write(move |tx| events::claim_outbox(tx, now, until, limit)).await
    }

    pub async fn settle_outgoing(&self, sent: Outgoing, outcome: Settled) -> Result<(), AppError> {
        self.db.write(move |tx| events::settle_outgoing(tx, &sent, &outcome)).await
    }

    pub async fn next_outgoing(&self, _channels: Vec<&'static str>) -> Result<Option<DateTime<Utc>>, AppError> {
        self.db.read(events::next_outgoing).await
    }

    // ---- this process among others: there are none ----

    pub fn start_node(
        &self,
        _role: NodeRole,
        _worker_timeout: std::time::Duration,
        _tracker: &tokio_util::task::TaskTracker,
        _shutdown: tokio_util::sync::CancellationToken,
        _hooks: NodeHooks,
    ) {
    }

    pub async fn leave(&self) -> Result<(), AppError> {
        Ok(())
    }

    // ---- sign-in sessions ----

    pub async fn session_start(&self, key: String, created: i64, expires: i64) -> Result<(), AppError> {
        self.db.write(move |tx| sessions::start(tx, &key, created, expires)).await
    }

    pub async fn session_alive(&self, key: String, now: i64) -> Result<bool, AppError> {
        self.db.read_now(move |c| sessions::alive(c, &key, now)).await
    }

    pub async fn session_end(&self, key: String) -> Result<(), AppError> {
        self.db.write(move |tx| sessions::end(tx, &key)).await
    }

    pub async fn sessions_end_all(&self) -> Result<(), AppError> {
        self.db.write(|tx| sessions::end_all(tx).map(drop)).await
    }
}
