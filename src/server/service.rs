//! The one place business rules live: import, pause, resume, cancel, delete, reads.
//! The REST API and the server functions are thin wrappers over this.

use super::db::Db;
use super::error::AppError;
use super::import::{self, Limits, Upload};
use super::runner::Runner;
use super::store;
use crate::model::{ItemPage, ItemStatus, Job, JobKind, MAX_PAGE};

/// The service layer; cheap to clone.
#[derive(Clone)]
pub struct Service {
    db: Db,
    runner: Runner,
    limits: Limits,
}

fn terminal_word(job: &Job) -> &'static str {
    if job.cancelled {
        "cancelled"
    } else if job.status == crate::model::JobStatus::Completed {
        "completed"
    } else {
        "failed"
    }
}

impl Service {
    pub fn new(db: Db, runner: Runner, limits: Limits) -> Self {
        Self { db, runner, limits }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Validates the upload and creates the job with all its items in one
    /// transaction; a bad file leaves nothing behind. The runner starts it at once.
    pub async fn create_job(&self, kind: JobKind, upload: Upload) -> Result<Job, AppError> {
        let limits = self.limits;
        let job = self
            .db
            .write(move |tx| {
                let id = import::import(tx, kind, &upload, limits)?;
                store::require_job(tx, kind, id)
            })
            .await?;
        self.runner.wake(kind, job.id);
        Ok(job)
    }

    /// Every job of both kinds, newest first.
    pub async fn list_all(&self) -> Result<Vec<Job>, AppError> {
        self.db
            .read(|c| {
                let mut jobs = store::list_jobs(c, JobKind::Research)?;
                jobs.extend(store::list_jobs(c, JobKind::Preprocess)?);
                jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                Ok(jobs)
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
    /// paused: no change. Terminal: `AlreadyTerminal`.
    pub async fn pause(&self, kind: JobKind, id: i64) -> Result<Job, AppError> {
        self.control(kind, id, move |tx, job| {
            if job.paused {
                return Ok(false);
            }
            store::set_paused(tx, kind, id, true, None, None)?;
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
            store::set_paused(tx, kind, id, false, None, None)?;
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

    /// Deletes a completed or failed job and all its items in one transaction.
    pub async fn delete(&self, kind: JobKind, id: i64) -> Result<(), AppError> {
        self.db
            .write(move |tx| {
                let job = store::require_job(tx, kind, id)?;
                if !job.is_terminal() {
                    return Err(AppError::StillProcessing);
                }
                store::delete_job(tx, kind, id)
            })
            .await
    }

    /// Starts a full research job of a finished preprocessing job's clean rows:
    /// valid, first of their kind, and reachable.
    pub async fn research_from_preprocess(&self, pre_id: i64) -> Result<Job, AppError> {
        let limits = self.limits;
        let job = self
            .db
            .write(move |tx| {
                let pre = store::require_job(tx, JobKind::Preprocess, pre_id)?;
                if pre.status != crate::model::JobStatus::Completed {
                    return Err(AppError::WrongState("the preprocessing job has not completed yet".into()));
                }
                let mut csv = csv::Writer::from_writer(Vec::new());
                let write = |w: &mut csv::Writer<Vec<u8>>, rec: &[&str]| {
                    w.write_record(rec).map_err(|e| AppError::Internal(e.to_string()))
                };
                write(&mut csv, &["company", "website", "domain"])?;
                let mut after = 0;
                loop {
                    let rows = store::clean_rows(tx, pre_id, after, 1000)?;
                    let Some(last) = rows.last() else { break };
                    after = last.0;
                    for (_, result) in &rows {
                        let v: serde_json::Value = serde_json::from_str(result).unwrap_or_default();
                        let reachable = v.pointer("/liveness/reachable").and_then(|r| r.as_bool()) == Some(true);
                        let valid = v.get("valid").and_then(|r| r.as_bool()) == Some(true);
                        if !(reachable && valid) {
                            continue;
                        }
                        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                        let website = v
                            .pointer("/liveness/finalUrl")
                            .and_then(|x| x.as_str())
                            .map(str::to_string)
                            .unwrap_or_else(|| text("website"));
                        write(&mut csv, &[&text("company"), &website, &text("domain")])?;
                    }
                }
                let bytes = csv.into_inner().map_err(|e| AppError::Internal(e.to_string()))?;
                let upload = Upload {
                    filename: format!("{}-clean.csv", pre.filename.trim_end_matches(".csv")),
                    name: Some(format!("{} (clean rows)", pre.name)),
                    concurrency: Some(pre.concurrency),
                    bytes: bytes.into(),
                };
                let id = import::import(tx, JobKind::Research, &upload, limits).map_err(|e| match e {
                    AppError::BadInput(m) if m.contains("no rows") => {
                        AppError::BadInput("no row is clean, unique and reachable; nothing to research".into())
                    }
                    other => other,
                })?;
                store::require_job(tx, JobKind::Research, id)
            })
            .await?;
        self.runner.wake(JobKind::Research, job.id);
        Ok(job)
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
