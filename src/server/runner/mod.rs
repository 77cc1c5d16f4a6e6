//! The background runner: one task per live job, each a sliding window of
//! `concurrency` in-flight items under a global cap. Control reaches a job task in
//! process at once (a wake-up that makes it re-read its flags); a poll every
//! `pause_poll_ms` honours flags written by anyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::RunnerConfig;
use super::db::Db;
use super::error::AppError;
use super::steps::{Claimed, Step, StepError};
use super::store::{self, Finish, Flags};
use crate::model::{JobKind, JobStatus};

/// The per-item steps, one per kind of job.
#[derive(Clone)]
pub struct Steps {
    pub research: Arc<dyn Step>,
    pub preprocess: Arc<dyn Step>,
}

impl Steps {
    fn for_kind(&self, kind: JobKind) -> Arc<dyn Step> {
        match kind {
            JobKind::Research => self.research.clone(),
            JobKind::Preprocess => self.preprocess.clone(),
        }
    }
}

type Key = (JobKind, i64);

struct Inner {
    db: Db,
    cfg: RunnerConfig,
    steps: Steps,
    global: Arc<Semaphore>,
    jobs: Mutex<HashMap<Key, Arc<Notify>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Handle to the runner; cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

/// How one item's work ended.
enum Outcome {
    Done(Finish, u32),
    RateLimited { reason: String, retry_after: Duration },
}

impl Runner {
    /// A runner that has not started anything yet; call [`Runner::start`].
    pub fn new(db: Db, cfg: RunnerConfig, steps: Steps) -> Self {
        let global = Arc::new(Semaphore::new(cfg.global_concurrency.max(1)));
        Self {
            inner: Arc::new(Inner {
                db,
                cfg,
                steps,
                global,
                jobs: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Recovers from a crash (items left `processing` go back to `pending`) and starts
    /// a task for every job that may still run; paused ones wait for a resume.
    pub async fn start(&self) -> Result<(), AppError> {
        let recovered = self
            .inner
            .db
            .write(|tx| {
                let mut moved = 0;
                for (kind, id) in store::jobs_with_processing(tx)? {
                    moved += store::reset_processing(tx, kind, id)?;
                }
                Ok(moved)
            })
            .await?;
        if recovered > 0 {
            tracing::info!(items = recovered, "recovered items left processing by an earlier run");
        }
        for (kind, id) in self.inner.db.read(store::live_jobs).await? {
            self.wake(kind, id);
        }
        Ok(())
    }

    /// Tells the job's task to re-read its state now, starting a task if the job has
    /// none. Called by the service right after every committed change.
    pub fn wake(&self, kind: JobKind, id: i64) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = jobs.get(&(kind, id)) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        jobs.insert((kind, id), notify.clone());
        drop(jobs);
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            JobTask::new(inner.clone(), kind, id, notify).run().await;
            inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&(kind, id));
        });
    }

    /// Whether any task is running for the job (for tests and diagnostics).
    pub fn is_running(&self, kind: JobKind, id: i64) -> bool {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&(kind, id))
    }

    /// Stops starting items, lets in-flight ones finish for the grace period, puts
    /// the rest back to `pending`, and returns when every job task has ended.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

struct JobTask {
    inner: Arc<Inner>,
    kind: JobKind,
    id: i64,
    wake: Arc<Notify>,
    step: Arc<dyn Step>,
    inflight: JoinSet<(i64, Outcome)>,
    spare: Option<OwnedSemaphorePermit>,
    /// The job's column names, read once: claims build each item's input from them.
    columns: Arc<[String]>,
}

impl JobTask {
    fn new(inner: Arc<Inner>, kind: JobKind, id: i64, wake: Arc<Notify>) -> Self {
        let step = inner.steps.for_kind(kind);
        Self { inner, kind, id, wake, step, inflight: JoinSet::new(), spare: None, columns: Arc::from([]) }
    }

    async fn flags(&self) -> Option<Flags> {
        let (kind, id) = (self.kind, self.id);
        match self.inner.db.read(move |c| store::job_flags(c, kind, id)).await {
            Ok(flags) => flags,
            Err(e) => {
                tracing::warn!(kind = %kind, job = id, error = %e, "cannot read job flags; will retry");
                // Unknown state: behave as paused until the next successful read.
                Some(Flags {
                    status: JobStatus::Processing,
                    paused: true,
                    cancelled: false,
                    concurrency: 1,
                    resume_at: None,
                })
            }
        }
    }

    async fn run(mut self) {
        let (kind, id) = (self.kind, self.id);
        let mut tick = tokio::time::interval(self.inner.cfg.pause_poll());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.reset();
        let shutdown = self.inner.shutdown.clone();
        let mut grace_until: Option<Instant> = None;
        let Some(mut flags) = self.flags().await else { return };
        match self.inner.db.read(move |c| store::job_columns(c, kind, id)).await {
            Ok(columns) => self.columns = columns.into(),
            Err(e) => {
                // Gone (deleted) or unreadable: a later wake starts a fresh task.
                tracing::warn!(kind = %kind, job = id, error = %e, "cannot read the job's columns");
                return;
            }
        }
        // True once a claim found nothing pending; reset whenever state may have changed.
        let mut exhausted = false;
        loop {
            if flags.status.is_terminal() {
                // Cancelled (or finished, or marked failed by hand): abort in-flight work;
                // whatever it returns late is discarded by the store's guard.
                self.inflight.abort_all();
                while self.inflight.join_next().await.is_some() {}
                // A job marked failed by hand (not through the service) may still have
                // items `processing`; they go back to `pending` as a cancel puts them.
                if let Err(e) = self.inner.db.write(move |tx| store::reset_processing(tx, kind, id)).await {
                    tracing::warn!(kind = %kind, job = id, error = %e, "could not reset items of a finished job");
                }
                return;
            }
            let running = !flags.paused && grace_until.is_none();
            if !running {
                // A paused job gives its unused slot back to the others.
                self.spare = None;
            }
            let window = flags.concurrency.max(1) as usize;
            while running && !exhausted && self.inflight.len() < window {
                let Some(permit) = self.spare.take().or_else(|| self.inner.global.clone().try_acquire_owned().ok())
                else {
                    break;
                };
                let columns = self.columns.clone();
                match self.inner.db.write(move |tx| store::claim_next(tx, kind, id, &columns)).await {
                    Ok(Some(item)) => self.spawn_item(item, permit),
                    Ok(None) => exhausted = true,
                    Err(e) => {
                        tracing::warn!(kind = %kind, job = id, error = %e, "claim failed; retrying at next poll");
                        exhausted = true;
                    }
                }
            }
            if grace_until.is_some() && self.inflight.is_empty() {
                break;
            }
            if running && exhausted && self.inflight.is_empty() {
                match self.inner.db.write(move |tx| store::complete_if_done(tx, kind, id)).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(kind = %kind, job = id, error = %e, "completion check failed"),
                }
            }
            let want_permit = running && !exhausted && self.inflight.len() < window && self.spare.is_none();
            let resume_at = flags.resume_at.filter(|_| flags.paused).map(|t| {
                let wait = (t - chrono::Utc::now()).to_std().unwrap_or_default();
                // A few ms late so the stored time has surely passed when we look.
                Instant::now() + wait + Duration::from_millis(5)
            });
            tokio::select! {
                () = self.wake.notified() => {
                    if let Some(f) = self.flags().await { flags = f } else { return };
                    exhausted = false;
                }
                Some(joined) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    // An Err is a task aborted on cancel or shutdown; panics are caught
                    // inside the task.
                    if let Ok((item_id, outcome)) = joined {
                        if let Some(f) = self.record(item_id, outcome).await { flags = f }
                    }
                }
                _ = tick.tick() => {
                    if let Some(f) = self.flags().await { flags = f } else { return };
                    exhausted = false;
                }
                permit = self.inner.global.clone().acquire_owned(), if want_permit => {
                    self.spare = permit.ok();
                }
                () = tokio::time::sleep_until(resume_at.unwrap_or_else(Instant::now)), if resume_at.is_some() => {
                    let _ = self.inner.db.write(move |tx| store::auto_resume(tx, kind, id)).await;
                    if let Some(f) = self.flags().await { flags = f } else { return };
                    exhausted = false;
                }
                () = shutdown.cancelled(), if grace_until.is_none() => {
                    grace_until = Some(Instant::now() + self.inner.cfg.shutdown_grace());
                }
                () = tokio::time::sleep_until(grace_until.unwrap_or_else(Instant::now)), if grace_until.is_some() => {
                    self.inflight.abort_all();
                    while self.inflight.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Shutting down: nothing in flight any more; what did not finish runs again next start.
        if let Err(e) = self.inner.db.write(move |tx| store::reset_processing(tx, kind, id)).await {
            tracing::error!(kind = %kind, job = id, error = %e, "could not reset in-flight items at shutdown");
        }
    }

    fn spawn_item(&mut self, item: Claimed, permit: OwnedSemaphorePermit) {
        let step = self.step.clone();
        let max_attempts = self.inner.cfg.max_attempts.max(1);
        let base = Duration::from_millis(self.inner.cfg.retry_base_ms);
        let item_id = item.id;
        self.inflight.spawn(async move {
            let _permit = permit;
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                // A panicking step is a bug, but it must not leave the item `processing`
                // for good: it fails with a reason like any other error.
                let run = std::panic::AssertUnwindSafe(step.run(item.clone())).catch_unwind().await;
                let run = run.unwrap_or_else(|_| Err(StepError::Permanent("internal error: the step crashed".into())));
                match run {
                    Ok(v) => return (item_id, Outcome::Done(Finish::Completed(v), attempt)),
                    Err(StepError::Permanent(e)) => return (item_id, Outcome::Done(Finish::Failed(e), attempt)),
                    Err(StepError::Transient(e)) if attempt >= max_attempts => {
                        let reason = format!("{e} (gave up after {attempt} attempts)");
                        return (item_id, Outcome::Done(Finish::Failed(reason), attempt));
                    }
                    Err(StepError::Transient(_)) => {
                        tokio::time::sleep(base.saturating_mul(1 << (attempt - 1).min(10))).await;
                    }
                    Err(StepError::RateLimited { reason, retry_after }) => {
                        return (item_id, Outcome::RateLimited { reason, retry_after });
                    }
                }
            }
        });
    }

    /// Stores an item's outcome. A rate limit puts the item back and pauses the job
    /// until the time the service gave; returns the new flags then.
    async fn record(&self, item_id: i64, outcome: Outcome) -> Option<Flags> {
        let (kind, id) = (self.kind, self.id);
        match outcome {
            Outcome::Done(finish, attempts) => {
                let res =
                    self.inner.db.write(move |tx| store::finish_item(tx, kind, id, item_id, attempts, &finish)).await;
                if let Err(e) = res {
                    tracing::error!(kind = %kind, job = id, item = item_id, error = %e, "could not store a result");
                }
                None
            }
            Outcome::RateLimited { reason, retry_after } => {
                let resume_at = chrono::Utc::now()
                    + chrono::Duration::from_std(retry_after).unwrap_or_else(|_| chrono::Duration::seconds(60));
                let res = self
                    .inner
                    .db
                    .write(move |tx| {
                        store::requeue_item(tx, kind, id, item_id)?;
                        store::set_paused(tx, kind, id, true, Some(&reason), Some(resume_at))?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = res {
                    tracing::error!(kind = %kind, job = id, error = %e, "could not pause a rate-limited job");
                }
                self.flags().await
            }
        }
    }
}
