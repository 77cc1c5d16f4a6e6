//! The one place business rules live: import, pause, resume, cancel, delete, reads.
//! The REST API and the server functions are thin wrappers over this.

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{mpsc, oneshot};

use super::error::AppError;
use super::import::{self, cut_chars, Limits, Parsed, Settings, Upload};
use super::runner::Runner;
use super::store::types::{Change, CleanRow, Hidden, JobSettings, NewItem, NewJob, Rule, CHUNK_ROWS};
use super::store::Store;
use crate::model::{
    Archived, BulkOutcome, BulkResult, ItemPage, ItemStatus, Job, JobAction, JobEvent, JobFilter, JobKind, JobRef,
    JobStatus, JobsPage, Source, JOB_LIST_LIMIT, MAX_JOBS_OFFSET, MAX_JOB_LIST_LIMIT, MAX_NAME_CHARS, MAX_PAGE,
    MAX_SEARCH_CHARS,
};

/// The service layer; cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: Store,
    runner: Runner,
    limits: Limits,
    /// Who the actions of this handle are logged as (SPEC section 8): `api` unless
    /// [`Service::by`] says otherwise.
    source: Source,
    /// Imports parsing at once (see [`MAX_PARSING_IMPORTS`]).
    parsing: std::sync::Arc<tokio::sync::Semaphore>,
    /// Preprocessing jobs' outcome counts, kept a moment (SPEC section 16).
    outcomes: std::sync::Arc<super::outcomes::OutcomeCache>,
}

/// Imports whose files are read at once, each on a thread of the blocking pool, which
/// the SQLite store's reads and writes share: more uploads wait (their clients are
/// slowed, nothing else is), so however many slow uploads arrive, they cannot hold the
/// threads the database needs.
pub const MAX_PARSING_IMPORTS: usize = 4;

/// The most jobs one bulk action takes (a filter that matches more is refused).
pub const MAX_BULK_JOBS: usize = 10_000;

/// A job that can still run, or `AlreadyTerminal`.
fn live(job: &Job) -> Result<(), AppError> {
    if job.is_terminal() {
        return Err(AppError::AlreadyTerminal(terminal_word(job)));
    }
    Ok(())
}

/// A job that is over (completed, failed or cancelled), or a 409 saying so.
fn over(job: &Job, what: &str) -> Result<(), AppError> {
    if !job.is_terminal() {
        return Err(AppError::WrongState(format!(
            "the job is {}: only a completed, failed or cancelled job can be {what}",
            not_over(job)
        )));
    }
    Ok(())
}

/// What a job that is not over is, in words: a paused job is never called running
/// (SPEC section 16).
fn not_over(job: &Job) -> &'static str {
    if job.paused {
        "paused, not over"
    } else {
        "still running"
    }
}

/// The pieces a whole upload is fed in, as a form's file arrives in pieces.
const FEED_PIECE_BYTES: usize = 64 * 1024;

/// An import under way (see [`Service::start_import`]).
pub struct Import {
    bytes: Option<mpsc::Sender<Result<Bytes, AppError>>>,
    settings: Option<oneshot::Sender<Settings>>,
    done: tokio::task::JoinHandle<Result<Job, AppError>>,
}

impl Import {
    /// Hands on the next piece of the file; `false` once the import has stopped, with
    /// the reason [`Import::finish`] answers.
    pub async fn send(&mut self, piece: Bytes) -> bool {
        match &self.bytes {
            Some(tx) => tx.send(Ok(piece)).await.is_ok(),
            None => false,
        }
    }

    /// The whole file has been sent and the form read: its settings as they stand.
    /// Answers with the job, or the reason the import was refused.
    pub async fn finish(mut self, settings: Settings) -> Result<Job, AppError> {
        self.bytes = None;
        if let Some(tx) = self.settings.take() {
            let _ = tx.send(settings);
        }
        self.outcome().await
    }

    /// The upload broke off (too large, unreadable, gone) for `why`: the import stops,
    /// what went in is removed, and `why` is the answer.
    pub async fn abort(mut self, why: AppError) -> AppError {
        if let Some(tx) = self.bytes.take() {
            let _ = tx.send(Err(why.same())).await;
        }
        self.settings = None;
        if let Ok(job) = self.outcome().await {
            tracing::error!(job = job.id, "an import went on after its upload failed");
        }
        why
    }

    async fn outcome(self) -> Result<Job, AppError> {
        drop(self.bytes);
        drop(self.settings);
        self.done.await.map_err(|e| AppError::Internal(format!("import task: {e}")))?
    }
}

impl Service {
    pub fn new(store: impl Into<Store>, runner: Runner, limits: Limits) -> Self {
        let parsing = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_PARSING_IMPORTS));
        let outcomes = std::sync::Arc::default();
        Self { store: store.into(), runner, limits, source: Source::Api, parsing, outcomes }
    }

    /// The same service, logging its actions as done by `source`.
    pub fn by(&self, source: Source) -> Self {
        Self { source, ..self.clone() }
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Records a sign-in session stored under `key`, valid until `expires` (Unix
    /// seconds). Sessions are the access layer's (`server::access`); the store keeps them
    /// so every server on one database shares them.
    pub async fn session_start(&self, key: String, created: i64, expires: i64) -> Result<(), AppError> {
        self.store.session_start(key, created, expires).await
    }

    /// Whether `key` names a live session at `now`.
    pub async fn session_alive(&self, key: String, now: i64) -> Result<bool, AppError> {
        self.store.session_alive(key, now).await
    }

    /// Ends one session (sign out).
    pub async fn session_end(&self, key: String) -> Result<(), AppError> {
        self.store.session_end(key).await
    }

    /// Ends every session (sign out everywhere).
    pub async fn sessions_end_all(&self) -> Result<(), AppError> {
        self.store.sessions_end_all().await
    }

    /// Creates a job from an upload held whole: the same streaming import as a form's
    /// (see [`Service::start_import`]), fed the bytes in pieces.
    pub async fn create_job(&self, kind: JobKind, upload: Upload) -> Result<Job, AppError> {
        if upload.bytes.len() > self.limits.max_bytes {
            return Err(AppError::TooLarge(format!(
                "the file is {} bytes; the limit is {} bytes",
                upload.bytes.len(),
                self.limits.max_bytes
            )));
        }
        let settings = Settings { name: upload.name, concurrency: upload.concurrency };
        let mut import = self.start_import(kind, upload.filename, settings.clone());
        let mut bytes = upload.bytes;
        while !bytes.is_empty() {
            let piece = bytes.split_to(bytes.len().min(FEED_PIECE_BYTES));
            if !import.send(piece).await {
                break;
            }
        }
        import.finish(settings).await
    }

    /// Starts importing a file that is still arriving: its bytes go to
    /// [`Import::send`] as they come, and [`Import::finish`] gives the form's settings
    /// once all of it has been read. A parser on a blocking thread checks each row and
    /// hands on chunks; the job is created hidden with the first chunk, takes each
    /// chunk in its own short transaction (control actions and other jobs' writes go
    /// on meanwhile) and shows once the last is in. The settings known at the start
    /// (`early`) are checked before anything is written. A bad file, a failed insert
    /// or an upload that breaks off leaves nothing anyone can see, and what went in is
    /// removed before the error is answered; a crash mid-way is cleaned up at start-up.
    /// Runs as its own task, so a client that goes away mid-import leaves no half job.
    pub fn start_import(&self, kind: JobKind, filename: String, early: Settings) -> Import {
        let (bytes_tx, mut bytes_rx) = mpsc::channel::<Result<Bytes, AppError>>(4);
        let (parsed_tx, parsed_rx) = mpsc::channel(2);
        let (settings_tx, settings_rx) = oneshot::channel();
        let limits = self.limits;
        let parsing = self.parsing.clone();
        tokio::spawn(async move {
            let Ok(permit) = parsing.acquire_owned().await else { return };
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let source = std::iter::from_fn(|| bytes_rx.blocking_recv());
                let feed = import::Feed::new(source, limits.max_bytes);
                let emit = |parsed| parsed_tx.blocking_send(Ok(parsed)).is_ok();
                if let Err(e) = import::parse(kind, feed, &limits, emit) {
                    let _ = parsed_tx.blocking_send(Err(e));
                }
            });
        });
        let this = self.clone();
        let done =
            tokio::spawn(async move { this.run_import(kind, filename, early, parsed_rx, settings_rx, None).await });
        Import { bytes: Some(bytes_tx), settings: Some(settings_tx), done }
    }

    async fn run_import(
        &self,
        kind: JobKind,
        filename: String,
        early: Settings,
        mut parsed: mpsc::Receiver<Result<Parsed, AppError>>,
        settings: oneshot::Receiver<Settings>,
        from: Option<i64>,
    ) -> Result<Job, AppError> {
        let (name, concurrency) = import::settle(&filename, &early, self.limits)?;
        let stored_name = import::stored_filename(&filename);
        let mut created: Option<i64> = None;
        let filled = async {
            let mut columns = Vec::new();
            let mut count = 0i64;
            while let Some(next) = parsed.recv().await {
                match next? {
                    Parsed::Columns(c) => columns = c,
                    Parsed::Items(chunk) => {
                        let id = match created {
                            Some(id) => id,
                            None => {
                                let job = NewJob {
                                    kind,
                                    name: name.clone(),
                                    filename: stored_name.clone(),
                                    concurrency,
                                    columns: std::mem::take(&mut columns),
                                };
                                *created.insert(self.store.insert_job(job).await?)
                            }
                        };
                        count += chunk.len() as i64;
                        self.store.insert_items(kind, id, chunk).await?;
                    }
                }
            }
            let Some(id) = created else {
                return Err(AppError::BadInput("the file has a header row but no rows".into()));
            };
            let last = settings
                .await
                .map_err(|_| AppError::BadInput("the upload ended before the whole form had arrived".into()))?;
            let (name, concurrency) = import::settle(&filename, &last, self.limits)?;
            if kind == JobKind::Preprocess {
                self.store.link_duplicates(id).await?;
            }
            self.store.reveal(kind, id, count, JobSettings { name, concurrency }, self.source, from).await
        };
        let outcome = filled.await;
        match (&outcome, created) {
            (Ok(job), _) => self.runner.wake(kind, job.id),
            (Err(e), Some(id)) => {
                tracing::info!(kind = %kind, job = id, error = %e, "an import was refused part-way; removing what went in");
                self.remove_unfinished(kind, id).await;
            }
            (Err(_), None) => {}
        }
        outcome
    }

    /// Removes an import that never showed, before its error is answered; what a
    /// failure leaves is removed in the background, and at the latest at start-up.
    async fn remove_unfinished(&self, kind: JobKind, id: i64) {
        let removed = async {
            self.store.hide(kind, id, Hidden::Deleting).await?;
            while !self.store.purge_batch(kind, id, CHUNK_ROWS as i64).await? {}
            Ok::<_, AppError>(())
        };
        if let Err(e) = removed.await {
            tracing::warn!(kind = %kind, job = id, error = %e, "an unfinished import is removed in the background");
            self.runner.purge(kind, id);
        }
    }

    /// A page of jobs of both kinds that are not archived, newest first.
    pub async fn page_all(&self, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        self.page(JobFilter::default(), offset, limit).await
    }

    /// A page of the jobs `filter` takes, newest first: reads only the newest
    /// `offset + limit` of each kind, however many jobs there are.
    pub async fn page(&self, filter: JobFilter, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        let filter = check_filter(filter)?;
        self.store.page(filter, offset.clamp(0, MAX_JOBS_OFFSET), limit.clamp(1, MAX_PAGE)).await
    }

    /// The newest jobs of one kind that are not archived (at most
    /// [`JOB_LIST_LIMIT`]).
    pub async fn list(&self, kind: JobKind) -> Result<Vec<Job>, AppError> {
        Ok(self.list_archived(kind, Archived::Hide, 0, JOB_LIST_LIMIT).await?.jobs)
    }

    /// A page of the jobs of one kind, newest first, by archive state: at most
    /// [`MAX_JOB_LIST_LIMIT`] of them, from at most [`MAX_JOBS_OFFSET`] in, so no
    /// request reads a whole table.
    pub async fn list_archived(
        &self,
        kind: JobKind,
        archived: Archived,
        offset: i64,
        limit: i64,
    ) -> Result<JobsPage, AppError> {
        if offset < 0 || limit < 1 {
            return Err(AppError::BadInput("offset must be 0 or more and limit 1 or more".into()));
        }
        let filter = JobFilter { kind: Some(kind), archived, ..JobFilter::default() };
        self.store.page(filter, offset.min(MAX_JOBS_OFFSET), limit.min(MAX_JOB_LIST_LIMIT)).await
    }

    /// A page of the job's activity log, newest first (ids below `before`).
    pub async fn events(
        &self,
        kind: JobKind,
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobEvent>, AppError> {
        if limit < 1 {
            return Err(AppError::BadInput("limit must be 1 or more".into()));
        }
        self.store.events(kind, id, before, limit.min(MAX_PAGE)).await
    }

    pub async fn get(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        let mut job = self.store.job(kind, id).await?;
        job.waiting_on_hosts = self.runner.waiting_on_hosts(kind, id);
        if kind == JobKind::Preprocess {
            let counts = match self.outcomes.get(&job) {
                Some(counts) => counts,
                None => {
                    let counts = self.store.outcome_counts(id).await?;
                    self.outcomes.put(&job, counts);
                    counts
                }
            };
            job.outcomes = Some(counts);
            job.research_job_id = self.store.research_link(id).await?.map(|link| link.id);
        }
        Ok(job)
    }

    /// A page of a preprocessing job's rows of one outcome (SPEC section 16); `limit`
    /// is capped at [`MAX_PAGE`].
    pub async fn outcome_items(
        &self,
        id: i64,
        outcome: crate::model::Outcome,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        if offset < 0 || limit < 1 {
            return Err(AppError::BadInput("offset must be 0 or more and limit 1 or more".into()));
        }
        self.store.outcome_items(id, outcome, offset, limit.min(MAX_PAGE)).await
    }

    /// A page of items; `limit` is capped at [`MAX_PAGE`].
    pub async fn items(
        &self,
        kind: JobKind,
        id: i64,
        status: Option<ItemStatus>,
        offset: i64,
        limit: i64,
    ) -> Result<ItemPage, AppError> {
        if offset < 0 || limit < 1 {
            return Err(AppError::BadInput("offset must be 0 or more and limit 1 or more".into()));
        }
        let limit = limit.min(MAX_PAGE);
        self.store.items(kind, id, status, offset, limit).await
    }

    /// Runs one control action in one transaction, logged as done by this handle's
    /// source, then wakes the job's runner task. `rule` says what to change, given the
    /// job as it is inside the transaction (`None`: already so, a no-op).
    async fn control(&self, kind: JobKind, id: i64, rule: Rule) -> Result<Job, AppError> {
        let job = self.store.control(kind, id, self.source, rule).await?;
        self.runner.wake(kind, id);
        Ok(job)
    }

    /// Pauses: no new item starts; in-flight ones finish and are saved. Already
    /// paused by a person: no change. Paused by a rate limit: the pause becomes the
    /// person's, and no timer lifts it. Terminal: `AlreadyTerminal`.
    pub async fn pause(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(
            kind,
            id,
            Box::new(|job| {
                live(job)?;
                Ok((!job.paused || job.resume_at.is_some()).then_some(Change::Pause))
            }),
        )
        .await
    }

    /// Resumes a paused job; the next pending item starts at once. Not paused: no
    /// change. Terminal: `AlreadyTerminal`.
    pub async fn resume(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(
            kind,
            id,
            Box::new(|job| {
                live(job)?;
                Ok(job.paused.then_some(Change::Resume))
            }),
        )
        .await
    }

    /// Cancels for good: in one transaction the job becomes `failed` with
    /// `cancelled_at` and its in-flight items go back to `pending`; then the runner
    /// aborts the in-flight work, whose late results find nothing to overwrite.
    pub async fn cancel(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(
            kind,
            id,
            Box::new(|job| {
                live(job)?;
                Ok(Some(Change::Cancel))
            }),
        )
        .await
    }

    /// Renames a job and/or changes its concurrency (1–64). The runner takes the new
    /// concurrency at its next claim, paused or not. A job that is over takes a new
    /// name only (`WrongState` for a concurrency).
    pub async fn edit(
        &self,
        kind: JobKind,
        id: i64,
        name: Option<String>,
        concurrency: Option<i64>,
    ) -> Result<Job, AppError> {
        if name.is_none() && concurrency.is_none() {
            return Err(AppError::BadInput("give a name or a concurrency to change".into()));
        }
        let name = match name {
            Some(name) => {
                let name = import::check_name(&name)?;
                if name.is_empty() {
                    return Err(AppError::BadInput("the name cannot be empty".into()));
                }
                Some(name)
            }
            None => None,
        };
        let concurrency = concurrency.map(import::check_concurrency).transpose()?;
        self.control(
            kind,
            id,
            Box::new(move |job| {
                if concurrency.is_some() && job.is_terminal() {
                    return Err(AppError::WrongState(format!(
                        "the job is {}: its concurrency can no longer change",
                        terminal_word(job)
                    )));
                }
                let name = name.filter(|n| *n != job.name);
                let concurrency = concurrency.filter(|c| *c != job.concurrency);
                Ok((name.is_some() || concurrency.is_some()).then_some(Change::Edit { name, concurrency }))
            }),
        )
        .await
    }

    /// Sets when a live job pauses and resumes by itself (each fires once; see
    /// `Store::fire_schedules`); two `None`s clear the schedule. Times must be in the
    /// future (`BadInput`); a job that is over: `AlreadyTerminal`.
    pub async fn schedule(
        &self,
        kind: JobKind,
        id: i64,
        pause_at: Option<DateTime<Utc>>,
        resume_at: Option<DateTime<Utc>>,
    ) -> Result<Job, AppError> {
        let now = Utc::now();
        // Words people read, on the page as through the API (SPEC section 16).
        for (what, at) in [("pause", pause_at), ("resume", resume_at)] {
            if let Some(at) = at.filter(|at| *at <= now) {
                return Err(AppError::BadInput(format!(
                    "the {what} time must be in the future; {} has passed",
                    crate::components::format::time_text(&at)
                )));
            }
        }
        // Stored to the millisecond, as every time is.
        let trim = |t: Option<DateTime<Utc>>| t.map(|t| t.trunc_subsecs(3));
        let (pause_at, resume_at) = (trim(pause_at), trim(resume_at));
        let job = self
            .control(
                kind,
                id,
                Box::new(move |job| {
                    live(job)?;
                    let same = job.scheduled_pause_at == pause_at && job.scheduled_resume_at == resume_at;
                    Ok((!same).then_some(Change::Schedule { pause_at, resume_at }))
                }),
            )
            .await?;
        self.runner.schedules_changed();
        Ok(job)
    }

    /// Runs a completed job's failed items again: they go back to `pending` (attempts
    /// from zero; the retry is in the activity log), completed items stay as they are.
    /// A cancelled job, a job still running or one with nothing failed: `WrongState`.
    ///
    /// On SQLite the items go back in batches while the job is still completed (so none
    /// starts and other writers wait a moment at most), then one transaction runs the
    /// job again; a restart in between finishes the retry at start-up.
    pub async fn retry(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        retryable(&self.store.job(kind, id).await?)?;
        let mut premoved = 0;
        loop {
            let moved = self.store.retry_batch(kind, id, RETRY_BATCH).await?;
            if moved == 0 {
                break;
            }
            premoved += moved;
            tokio::task::yield_now().await;
        }
        self.control(
            kind,
            id,
            Box::new(move |job| {
                if premoved > 0 {
                    // Its failed items went back above, so none may be left failed;
                    // a retry sent at the same moment may have run the job already.
                    if job.status == JobStatus::Completed {
                        return Ok(Some(Change::Retry { premoved }));
                    }
                    if !job.is_terminal() {
                        return Ok(None);
                    }
                }
                retryable(job)?;
                Ok(Some(Change::Retry { premoved }))
            }),
        )
        .await
    }

    /// Archives a job that is over: it keeps all its data and leaves the lists unless
    /// they ask for archived jobs. Already archived: no change.
    pub async fn archive(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(
            kind,
            id,
            Box::new(|job| {
                over(job, "archived")?;
                Ok(job.archived_at.is_none().then_some(Change::Archive))
            }),
        )
        .await
    }

    /// Brings an archived job back into the lists. Not archived: no change.
    pub async fn unarchive(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(
            kind,
            id,
            Box::new(|job| {
                over(job, "restored")?;
                Ok(job.archived_at.is_some().then_some(Change::Unarchive))
            }),
        )
        .await
    }

    /// One action on one job; `None` once deleted.
    pub async fn act(&self, kind: JobKind, id: i64, action: JobAction) -> Result<Option<Job>, AppError> {
        let job = match action {
            JobAction::Pause => self.pause(kind, id).await?,
            JobAction::Resume => self.resume(kind, id).await?,
            JobAction::Cancel => self.cancel(kind, id).await?,
            JobAction::Archive => self.archive(kind, id).await?,
            JobAction::Unarchive => self.unarchive(kind, id).await?,
            JobAction::Retry => self.retry(kind, id).await?,
            JobAction::Delete => {
                self.delete(kind, id).await?;
                return Ok(None);
            }
        };
        Ok(Some(job))
    }

    /// One action on many jobs (SPEC section 8): the jobs named, or every job `filter`
    /// takes at the moment of the call (at most [`MAX_BULK_JOBS`]). Each job is its own
    /// transaction, so one refusal (or failure) stops no other and other requests go on
    /// between them; the answer says per job what happened.
    pub async fn bulk(&self, action: JobAction, target: BulkTarget) -> Result<BulkOutcome, AppError> {
        let jobs = match target {
            BulkTarget::Jobs(jobs) => {
                if jobs.len() > MAX_BULK_JOBS {
                    return Err(AppError::BadInput(format!(
                        "a bulk action takes at most {MAX_BULK_JOBS} jobs, not {}",
                        jobs.len()
                    )));
                }
                jobs.into_iter().map(|j| (j, None)).collect::<Vec<(JobRef, Option<String>)>>()
            }
            BulkTarget::Filter(filter) => {
                let filter = check_filter(filter)?;
                let page = self.store.page(filter, 0, MAX_BULK_JOBS as i64 + 1).await?;
                if page.total > MAX_BULK_JOBS as i64 {
                    return Err(AppError::BadInput(format!(
                        "the filter takes {} jobs; a bulk action takes at most {MAX_BULK_JOBS}: narrow it",
                        page.total
                    )));
                }
                page.jobs.into_iter().map(|j| (JobRef { kind: j.kind, id: j.id }, Some(j.name))).collect()
            }
        };
        let mut results = Vec::with_capacity(jobs.len());
        for (JobRef { kind, id }, known) in jobs {
            // Read before the action, so a deleted job is still named.
            let name = match known {
                Some(name) => Some(name),
                None => self.store.job(kind, id).await.ok().map(|j| j.name),
            };
            let result = match self.act(kind, id, action).await {
                Ok(_) => BulkResult { kind, id, name, ok: true, status: None, error: None },
                Err(e) => BulkResult {
                    kind,
                    id,
                    name,
                    ok: false,
                    status: Some(e.status_code().as_u16()),
                    error: Some(e.public_message()),
                },
            };
            results.push(result);
        }
        Ok(BulkOutcome { results })
    }

    /// Deletes a completed or failed job: in one transaction it disappears from every
    /// read; its items are then removed in batches in the background (SPEC section 2),
    /// and a removal cut short by a crash is finished at the next start.
    pub async fn delete(&self, kind: JobKind, id: i64) -> Result<(), AppError> {
        self.store
            .delete(kind, id, |job| if job.is_terminal() { Ok(()) } else { Err(AppError::StillProcessing) })
            .await?;
        self.runner.purge(kind, id);
        if kind == JobKind::Preprocess {
            self.outcomes.forget(id);
        }
        Ok(())
    }

    /// Starts a full research job of a finished preprocessing job's clean rows (valid,
    /// first of their kind, reachable), inserted directly in chunks.
    pub async fn research_from_preprocess(&self, pre_id: i64) -> Result<Job, AppError> {
        let pre = self.get(JobKind::Preprocess, pre_id).await?;
        if pre.status != JobStatus::Completed {
            return Err(AppError::WrongState("the preprocessing job has not completed yet".into()));
        }
        // Checked again, and for good, in the transaction that shows the new job.
        if let Some(link) = self.store.research_link(pre_id).await? {
            return Err(link.refusal());
        }
        let page = CHUNK_ROWS as i64;
        // Each page is read in one snapshot with the job still there: a delete of the
        // preprocessing job half-way fails this import instead of cutting it short.
        let read_page = move |store: Store, after: i64| async move { store.clean_rows(pre_id, after, page).await };
        let first = read_page(self.store.clone(), 0).await?;
        if first.is_empty() {
            return Err(AppError::BadInput("no row is clean, unique and reachable; nothing to research".into()));
        }
        let suffix = " (clean rows)";
        let name = format!("{}{suffix}", cut_chars(&pre.name, MAX_NAME_CHARS - suffix.chars().count()));
        let filename = format!("{}-clean.csv", pre.filename.trim_end_matches(".csv"));
        let settings = Settings { name: Some(name), concurrency: Some(pre.concurrency) };
        let map = super::rows::ColumnMap::from_headers(&CLEAN_COLUMNS.map(String::from));
        let (tx, rx) = mpsc::channel(2);
        let store = self.store.clone();
        tokio::spawn(async move {
            if tx.send(Ok(Parsed::Columns(CLEAN_COLUMNS.map(String::from).to_vec()))).await.is_err() {
                return;
            }
            let mut rows = first;
            let mut line = 1i64;
            while let Some(last) = rows.last().map(|r| r.id) {
                let chunk = rows
                    .into_iter()
                    .map(|row| {
                        line += 1;
                        clean_row_item(&map, line, row)
                    })
                    .collect();
                if tx.send(Ok(Parsed::Items(chunk))).await.is_err() {
                    return;
                }
                rows = match read_page(store.clone(), last).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
            }
        });
        let (settings_tx, settings_rx) = oneshot::channel();
        let _ = settings_tx.send(settings.clone());
        let this = self.clone();
        tokio::spawn(async move {
            this.run_import(JobKind::Research, filename, settings, rx, settings_rx, Some(pre_id)).await
        })
        .await
        .map_err(|e| AppError::Internal(format!("import task: {e}")))?
    }

    /// The job's input column names, in file order.
    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<Vec<String>, AppError> {
        Ok(self.store.columns(kind, id).await?.names)
    }

    /// Streams pages of a job's items after item id `after`, for exports.
    pub async fn export_page(
        &self,
        kind: JobKind,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Vec<crate::model::Item>), AppError> {
        self.store.items_after(kind, id, after, limit).await
    }
}

/// Failed items moved back per transaction of a retry on SQLite.
const RETRY_BATCH: i64 = 2_000;

/// A job whose failed items can run again, or a 409 saying why not.
fn retryable(job: &Job) -> Result<(), AppError> {
    if job.cancelled {
        return Err(AppError::WrongState("a cancelled job cannot run again".into()));
    }
    if job.status != JobStatus::Completed {
        return Err(AppError::WrongState(format!(
            "the job is {}: only a completed job's failed items can be retried",
            not_over(job)
        )));
    }
    if job.failed == 0 {
        return Err(AppError::WrongState("no item of this job failed; there is nothing to retry".into()));
    }
    Ok(())
}

/// What a bulk action acts on.
#[derive(Clone, Debug)]
pub enum BulkTarget {
    Jobs(Vec<JobRef>),
    Filter(JobFilter),
}

/// A filter with its name search trimmed (empty: none) and bounded.
fn check_filter(mut filter: JobFilter) -> Result<JobFilter, AppError> {
    filter.search = filter.search.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(search) = &filter.search {
        let chars = search.chars().count();
        if chars > MAX_SEARCH_CHARS {
            return Err(AppError::BadInput(format!(
                "the search is {chars} characters long; at most {MAX_SEARCH_CHARS} are allowed"
            )));
        }
    }
    Ok(filter)
}

/// The columns of a research job of clean preprocessing rows.
const CLEAN_COLUMNS: [&str; 3] = ["company", "website", "domain"];

/// A clean preprocessing row as a research item with the columns company, website,
/// domain; its name, website and domain are what research reads from those cells.
fn clean_row_item(map: &super::rows::ColumnMap, line: i64, row: CleanRow) -> NewItem {
    let values = [row.company, row.website, row.domain].map(Option::unwrap_or_default);
    let super::rows::ResearchFields { name, website, domain } = map.research_fields(&values);
    NewItem {
        line,
        input: serde_json::to_string(&values).unwrap_or_else(|_| "[]".into()),
        name,
        website,
        domain,
        ..NewItem::default()
    }
}

/// A schedule's time as a request gives it (RFC 3339, any offset), or a 400 naming
/// the field.
pub fn schedule_time(field: &str, text: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(text.trim()).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        AppError::BadInput(format!("{field} must be a time like 2026-12-01T09:00:00Z, not `{}`", clip(text)))
    })
}

/// A piece of a request's text, short enough to quote in an error.
fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The word for a job that can no longer change.
fn terminal_word(job: &Job) -> &'static str {
    match job.phase() {
        crate::model::Phase::Cancelled => "cancelled",
        // A job whose every item failed reads "Failed" but has completed (section 2).
        _ if job.status == JobStatus::Completed => "completed",
        _ => "failed",
    }
}
