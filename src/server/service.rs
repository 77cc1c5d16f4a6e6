//! The one place business rules live: import, pause, resume, cancel, delete, reads.
//! The REST API and the server functions are thin wrappers over this.

use tokio::sync::mpsc;

use super::db::Db;
use super::error::AppError;
use super::import::{self, cut_chars, Limits, NewJob, Upload};
use super::runner::Runner;
use super::store::{self, Hidden, NewItem};
use crate::model::{ItemPage, ItemStatus, Job, JobKind, JobStatus, JobsPage, Phase, MAX_NAME_CHARS, MAX_PAGE};

/// The service layer; cheap to clone.
#[derive(Clone)]
pub struct Service {
    db: Db,
    runner: Runner,
    limits: Limits,
}

/// Items arrive from a parser on a blocking thread, a chunk at a time.
type Chunks = mpsc::Receiver<Result<Vec<NewItem>, AppError>>;

/// The word for a job that can no longer change.
fn terminal_word(job: &Job) -> &'static str {
    match job.phase() {
        Phase::Cancelled => "cancelled",
        Phase::Completed => "completed",
        _ => "failed",
    }
}

impl Service {
    pub fn new(db: Db, runner: Runner, limits: Limits) -> Self {
        Self { db, runner, limits }
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Checks the whole upload off the async threads and without the writer, then
    /// creates the job and inserts its items in chunks, each its own short
    /// transaction, so control actions and other jobs' writes go on meanwhile. The
    /// job stays invisible until its last chunk is in: a bad file or a failed insert
    /// leaves nothing anyone can see, and a crash mid-way is cleaned up at start-up.
    /// The runner starts the job at once.
    pub async fn create_job(&self, kind: JobKind, upload: Upload) -> Result<Job, AppError> {
        let limits = self.limits;
        let checked = tokio::task::spawn_blocking(move || import::check(kind, &upload, limits))
            .await
            .map_err(|e| AppError::Internal(format!("upload check task: {e}")))??;
        let job = checked.job.clone();
        let (tx, rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            for chunk in checked.chunks() {
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
        });
        self.insert_job(job, rx).await
    }

    /// Creates a hidden job, inserts its chunks, and reveals it. Runs as its own task,
    /// so a client that goes away mid-import does not leave a half-inserted job behind.
    async fn insert_job(&self, job: NewJob, chunks: Chunks) -> Result<Job, AppError> {
        let this = self.clone();
        tokio::spawn(async move { this.insert_job_inner(job, chunks).await })
            .await
            .map_err(|e| AppError::Internal(format!("import task: {e}")))?
    }

    async fn insert_job_inner(&self, job: NewJob, mut chunks: Chunks) -> Result<Job, AppError> {
        let kind = job.kind;
        let id = self
            .db
            .write(move |tx| store::insert_job(tx, kind, &job.name, &job.filename, job.concurrency, &job.columns))
            .await?;
        let filled = async {
            let mut count = 0i64;
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk?;
                count += chunk.len() as i64;
                self.db.write(move |tx| store::insert_items(tx, kind, id, &chunk)).await?;
            }
            if count == 0 {
                return Err(AppError::BadInput("the file has a header row but no rows".into()));
            }
            if kind == JobKind::Preprocess {
                self.link_duplicates(id).await?;
            }
            self.db
                .write(move |tx| {
                    store::reveal_job(tx, kind, id, count)?;
                    store::require_job(tx, kind, id)
                })
                .await
        };
        match filled.await {
            Ok(job) => {
                self.runner.wake(kind, id);
                Ok(job)
            }
            Err(e) => {
                // Nobody ever saw the job: remove what went in.
                match self.db.write(move |tx| store::hide_job(tx, kind, id, Hidden::Deleting)).await {
                    Ok(()) => self.runner.purge(kind, id),
                    Err(e) => {
                        tracing::warn!(kind = %kind, job = id, error = %e, "an unfinished import stays until restart")
                    }
                }
                Err(e)
            }
        }
    }

    /// Links each preprocessing row to the first row with the same key, a chunk of
    /// item ids per transaction.
    async fn link_duplicates(&self, id: i64) -> Result<(), AppError> {
        let range = self.db.read(move |c| store::item_id_range(c, JobKind::Preprocess, id)).await?;
        let Some((first, last)) = range else { return Ok(()) };
        let step = import::CHUNK_ROWS as i64;
        let mut from = first;
        while from <= last {
            let to = (from + step - 1).min(last);
            self.db.write(move |tx| store::link_duplicates(tx, id, from, to)).await?;
            from = to + 1;
        }
        Ok(())
    }

    /// A page of jobs of both kinds, newest first: reads only the newest
    /// `offset + limit` of each kind, however many jobs there are.
    pub async fn page_all(&self, offset: i64, limit: i64) -> Result<JobsPage, AppError> {
        let offset = offset.max(0);
        let limit = limit.clamp(1, MAX_PAGE);
        self.db
            .read(move |c| {
                // One snapshot, so the count agrees with the page.
                let c = &c.unchecked_transaction()?;
                let newest = offset.saturating_add(limit);
                let mut jobs = store::recent_jobs(c, JobKind::Research, newest)?;
                jobs.extend(store::recent_jobs(c, JobKind::Preprocess, newest)?);
                jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                let jobs = jobs.into_iter().skip(offset as usize).take(limit as usize).collect();
                let total = store::count_jobs(c, JobKind::Research)? + store::count_jobs(c, JobKind::Preprocess)?;
                Ok(JobsPage { jobs, total, offset, limit })
            })
            .await
    }

    /// Jobs of one kind, newest first.
    pub async fn list(&self, kind: JobKind) -> Result<Vec<Job>, AppError> {
        self.db.read(move |c| store::list_jobs(c, kind)).await
    }

    pub async fn get(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.db.read(move |c| store::require_job(c, kind, id)).await
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
        self.db.read(move |c| store::list_items(c, kind, id, status, offset, limit)).await
    }

    /// Runs one control action on a live job in one `IMMEDIATE` transaction, then
    /// wakes the job's runner task. `change` returns `false` when the action is a
    /// no-op (already paused, not paused); a terminal job is `AlreadyTerminal`.
    async fn control<F>(&self, kind: JobKind, id: i64, change: F) -> Result<Job, AppError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>, &Job) -> Result<bool, AppError> + Send + 'static,
    {
        let job = self
            .db
            .write(move |tx| {
                let job = store::require_job(tx, kind, id)?;
                if job.is_terminal() {
                    return Err(AppError::AlreadyTerminal(terminal_word(&job)));
                }
                if !change(tx, &job)? {
                    return Ok(job);
                }
                store::require_job(tx, kind, id)
            })
            .await?;
        self.runner.wake(kind, id);
        Ok(job)
    }

    /// Pauses: no new item starts; in-flight ones finish and are saved. Already
    /// paused by a person: no change. Paused by a rate limit: the pause becomes the
    /// person's, and no timer lifts it. Terminal: `AlreadyTerminal`.
    pub async fn pause(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(kind, id, move |tx, job| {
            if job.paused && job.resume_at.is_none() {
                return Ok(false);
            }
            store::set_paused(tx, kind, id, true)?;
            Ok(true)
        })
        .await
    }

    /// Resumes a paused job; the next pending item starts at once. Not paused: no
    /// change. Terminal: `AlreadyTerminal`.
    pub async fn resume(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(kind, id, move |tx, job| {
            if !job.paused {
                return Ok(false);
            }
            store::set_paused(tx, kind, id, false)?;
            Ok(true)
        })
        .await
    }

    /// Cancels for good: in one transaction the job becomes `failed` with
    /// `cancelled_at` and its in-flight items go back to `pending`; then the runner
    /// aborts the in-flight work, whose late results find nothing to overwrite.
    pub async fn cancel(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(kind, id, move |tx, _| {
            store::cancel_job(tx, kind, id)?;
            Ok(true)
        })
        .await
    }

    /// Deletes a completed or failed job: in one transaction it disappears from every
    /// read; its items are then removed in batches in the background (SPEC section 2),
    /// and a removal cut short by a crash is finished at the next start.
    pub async fn delete(&self, kind: JobKind, id: i64) -> Result<(), AppError> {
        self.db
            .write(move |tx| {
                let job = store::require_job(tx, kind, id)?;
                if !job.is_terminal() {
                    return Err(AppError::StillProcessing);
                }
                store::hide_job(tx, kind, id, Hidden::Deleting)
            })
            .await?;
        self.runner.purge(kind, id);
        Ok(())
    }

    /// Starts a full research job of a finished preprocessing job's clean rows (valid,
    /// first of their kind, reachable), inserted directly in chunks.
    pub async fn research_from_preprocess(&self, pre_id: i64) -> Result<Job, AppError> {
        let pre = self.get(JobKind::Preprocess, pre_id).await?;
        if pre.status != JobStatus::Completed {
            return Err(AppError::WrongState("the preprocessing job has not completed yet".into()));
        }
        let page = import::CHUNK_ROWS as i64;
        // Each page is read in one snapshot with the job still there: a delete of the
        // preprocessing job half-way fails this import instead of cutting it short.
        let read_page = move |db: Db, after: i64| async move {
            db.read(move |c| {
                let snapshot = c.unchecked_transaction()?;
                store::require_job(&snapshot, JobKind::Preprocess, pre_id)?;
                store::clean_rows(&snapshot, pre_id, after, page)
            })
            .await
        };
        let first = read_page(self.db.clone(), 0).await?;
        if first.is_empty() {
            return Err(AppError::BadInput("no row is clean, unique and reachable; nothing to research".into()));
        }
        let suffix = " (clean rows)";
        let name = format!("{}{suffix}", cut_chars(&pre.name, MAX_NAME_CHARS - suffix.chars().count()));
        let filename = format!("{}-clean.csv", pre.filename.trim_end_matches(".csv"));
        let job = NewJob {
            kind: JobKind::Research,
            name,
            filename: cut_chars(&filename, 255),
            concurrency: pre.concurrency,
            columns: ["company", "website", "domain"].map(String::from).to_vec(),
        };
        let (tx, rx) = mpsc::channel(2);
        let db = self.db.clone();
        tokio::spawn(async move {
            let mut rows = first;
            let mut line = 1i64;
            while let Some(last) = rows.last().map(|r| r.id) {
                let chunk = rows
                    .into_iter()
                    .map(|row| {
                        line += 1;
                        clean_row_item(line, row)
                    })
                    .collect();
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                rows = match read_page(db.clone(), last).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
            }
        });
        self.insert_job(job, rx).await
    }

    /// The job's input column names, in file order.
    pub async fn columns(&self, kind: JobKind, id: i64) -> Result<Vec<String>, AppError> {
        self.db.read(move |c| store::job_columns(c, kind, id)).await
    }

    /// Streams pages of a job's items after item id `after`, for exports.
    pub async fn export_page(
        &self,
        kind: JobKind,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Vec<crate::model::Item>), AppError> {
        self.db.read(move |c| store::items_after(c, kind, id, after, limit)).await
    }
}

/// A clean preprocessing row as a research item with the columns company, website, domain.
fn clean_row_item(line: i64, row: store::CleanRow) -> NewItem {
    let values = [&row.company, &row.website, &row.domain].map(|v| v.clone().unwrap_or_default());
    NewItem {
        line,
        input: serde_json::to_string(&values).unwrap_or_else(|_| "[]".into()),
        name: row.company,
        website: row.website,
        domain: row.domain,
        normalized: None,
        dedupe_key: None,
    }
}
