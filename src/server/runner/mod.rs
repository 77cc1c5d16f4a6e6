//! The background runner: one task per live job, each a sliding window of
//! `concurrency` in-flight items under a global cap. Control reaches a job task in
//! process at once (a wake-up that makes it re-read its flags); a poll every
//! `pause_poll_ms` honours flags written by anyone else.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::RunnerConfig;
use super::error::AppError;
use super::notify::Notifier;
use super::steps::hosts::{ItemWaits, ITEM};
use super::steps::{bound_result, Step, StepError};
use super::store::types::{Claimed, ClaimedRow, Finish, Finished, Flags, JobColumns};
use super::store::types::{NodeHooks, NodeRole, Starter};
use super::store::Store;
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
    store: Store,
    cfg: RunnerConfig,
    steps: Steps,
    global: Arc<Semaphore>,
    jobs: Mutex<HashMap<Key, Arc<Notify>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Off in a process that serves without running jobs (`serve --no-runner`).
    runs_jobs: std::sync::atomic::AtomicBool,
    /// Delivers notifications; set before [`Runner::start`].
    notifier: std::sync::OnceLock<Notifier>,
    /// Told when a schedule changes, so the scheduler looks again at once.
    schedules_changed: Notify,
    /// Per running job, its items waiting for a busy or cooling host.
    waiting: Mutex<HashMap<Key, Arc<AtomicI64>>>,
}

/// Handle to the runner; cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

/// How one item's work ended.
enum Outcome {
    Done(Finished),
    RateLimited { reason: String, retry_after: Duration },
}

/// The reason an item fails with when its step panics.
const CRASHED: &str = "internal error: the step crashed";

/// A claimed item's step, with its retries, as one future.
type Work = Pin<Box<dyn Future<Output = (i64, Outcome)> + Send>>;

/// Makes the [`Work`] of a job's claimed items.
#[derive(Clone)]
struct WorkMaker {
    step: Arc<dyn Step>,
    /// The job's column names and roles: each claimed item's input, name, website and
    /// domain are built from them.
    columns: Arc<JobColumns>,
    max_attempts: u32,
    base: Duration,
    /// The job's count of items waiting for their hosts (see [`Runner::waiting_on_hosts`]).
    waiting: Arc<AtomicI64>,
}

impl WorkMaker {
    /// The item's result when its step needs nothing outside the item
    /// ([`Step::run_now`]); `None` when it has to go through its work.
    fn now(&self, item: &Claimed, lease: i64) -> Option<Finished> {
        // A panic here would undo the whole turn, and the next would meet it again: the
        // item fails with a reason instead, as in its work.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step.run_now(item)));
        let outcome = match run.unwrap_or_else(|_| Some(Err(StepError::Permanent(CRASHED.into()))))? {
            Ok(v) => Finish::completed(&bound_result(v)),
            Err(StepError::Permanent(e)) => Finish::failed(&e),
            // Retries and rate limits are the work's to handle.
            Err(_) => return None,
        };
        Some(Finished { item_id: item.id, lease, attempts: 1, outcome })
    }

    /// The item's work, holding its slot of the global limit until it ends.
    fn make(&self, item: Claimed, lease: i64, permit: Option<OwnedSemaphorePermit>) -> Work {
        let item_id = item.id;
        let done = move |outcome: Finish, attempts: u32| Outcome::Done(Finished { item_id, lease, attempts, outcome });
        let (step, max_attempts, base) = (self.step.clone(), self.max_attempts, self.base);
        let waits = Arc::new(ItemWaits::new(self.waiting.clone()));
        Box::pin(ITEM.scope(waits, async move {
            let _permit = permit;
            let (mut attempt, mut cooled) = (0u32, 0u32);
            loop {
                attempt += 1;
                // A panicking step is a bug, but it must not leave the item `processing`
                // for good: it fails with a reason like any other error.
                let run = std::panic::AssertUnwindSafe(step.run(item.clone())).catch_unwind().await;
                let run = match run.unwrap_or_else(|_| Err(StepError::Permanent(CRASHED.into()))) {
                    // A host that keeps asking to wait costs only its own accounts:
                    // past the free cool-downs, each counts as an attempt.
                    Err(StepError::Cooling { reason }) if cooled >= FREE_COOLDOWNS => Err(StepError::Transient(reason)),
                    other => other,
                };
                match run {
                    // Bounded and serialised here, not by the writer's statements.
                    Ok(v) => return (item_id, done(Finish::completed(&bound_result(v)), attempt)),
                    Err(StepError::Permanent(e)) => return (item_id, done(Finish::failed(&e), attempt)),
                    Err(StepError::Transient(e)) if attempt >= max_attempts => {
                        let reason = noted(&e, &format!(" (gave up after {attempt} attempts)"));
                        return (item_id, done(Finish::failed(&reason), attempt));
                    }
                    Err(StepError::Transient(_)) => {
                        tokio::time::sleep(base.saturating_mul(1 << (attempt - 1).min(10))).await;
                    }
                    Err(StepError::Cooling { .. }) => {
                        // Not an attempt: the next try waits for the host to cool.
                        cooled += 1;
                        attempt -= 1;
                    }
                    Err(StepError::RateLimited { reason, retry_after }) => {
                        return (item_id, Outcome::RateLimited { reason, retry_after });
                    }
                }
            }
        }))
    }
}

/// Begins the items of a turn ([`Store::turn`]). An item whose step needs nothing
/// outside it ([`Step::run_now`]: cleaning a name) is done right there, and its result
/// goes into the turn's next round, or the next turn. Every other item's work starts
/// only once the turn has committed, so nothing reaches a website for an item whose
/// claim a crash could still undo.
struct Begin {
    work: WorkMaker,
    global: Arc<Semaphore>,
    /// Slots of the global limit for the items still to claim.
    permits: Vec<OwnedSemaphorePermit>,
    /// Work not started yet, to be started once the turn has committed.
    waiting: Vec<Work>,
    /// Once shutdown has begun, no further round starts.
    shutdown: CancellationToken,
}

impl Starter for Begin {
    fn start(&mut self, claimed: Vec<ClaimedRow>) -> (Vec<Finished>, usize) {
        let mut done = Vec::new();
        for row in claimed {
            let lease = row.lease;
            let item = row.into_claimed(&self.work.columns);
            // A claim takes no more items than there are slots.
            let permit = self.permits.pop();
            match self.work.now(&item, lease) {
                Some(finished) => done.push(finished),
                None => self.waiting.push(self.work.make(item, lease, permit)),
            }
        }
        if self.shutdown.is_cancelled() {
            // Shutdown stops every start: nothing more starts this turn.
            return (done, 0);
        }
        // The finished items' slots, taken again unless another job waits for them.
        while self.permits.len() < done.len() {
            match self.global.clone().try_acquire_owned() {
                Ok(permit) => self.permits.push(permit),
                Err(_) => break,
            }
        }
        let more = self.permits.len().min(done.len());
        (done, more)
    }

    fn finish_now(&mut self, rows: Vec<ClaimedRow>) -> (Vec<Finished>, usize) {
        if self.shutdown.is_cancelled() {
            return (Vec::new(), rows.len());
        }
        let mut done = Vec::with_capacity(rows.len());
        let mut left = 0;
        for row in rows {
            let lease = row.lease;
            match self.work.now(&row.into_claimed(&self.work.columns), lease) {
                Some(finished) => done.push(finished),
                None => left += 1,
            }
        }
        (done, left)
    }
}

/// The shortest wait of the scheduler between two looks.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// Items removed per transaction when a deleted job's items are purged.
const PURGE_BATCH: i64 = 2000;
/// Cool-downs of an item's host (SPEC section 12) that cost the item no attempt.
const FREE_COOLDOWNS: u32 = 3;
/// Tries of a result write before the item goes back to `pending` instead.
const WRITE_TRIES: u32 = 5;
/// The longest wait between two tries of a write that keeps failing.
const MAX_WRITE_BACKOFF: Duration = Duration::from_secs(5);

impl Runner {
    /// A runner that has not started anything yet; call [`Runner::start`].
    pub fn new(store: impl Into<Store>, cfg: RunnerConfig, steps: Steps) -> Self {
        let global = Arc::new(Semaphore::new(cfg.global_concurrency.max(1)));
        Self {
            inner: Arc::new(Inner {
                store: store.into(),
                cfg,
                steps,
                global,
                jobs: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                runs_jobs: std::sync::atomic::AtomicBool::new(true),
                notifier: std::sync::OnceLock::new(),
                schedules_changed: Notify::new(),
                waiting: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Recovers from a crash (items left `processing` go back to `pending`; deletes
    /// and imports cut short are finished by removing what is left), starts a task for
    /// every job that may still run (paused ones wait for a resume), and starts the
    /// sweep that restarts a task for any live job left without one.
    pub async fn start(&self) -> Result<(), AppError> {
        self.start_node(NodeRole::Runner);
        let (recovered, hidden) = self.inner.store.recover().await?;
        if recovered > 0 {
            tracing::info!(items = recovered, "recovered items left processing by an earlier run");
        }
        for (kind, id, why) in hidden {
            tracing::info!(kind = %kind, job = id, "finishing the removal of a {} job", why.as_str());
            self.purge(kind, id);
        }
        // Before any job runs: events from here on are queued for this server's
        // channels, and a scheduled pause that came due while it was down holds its
        // job before an item starts.
        let channels = self.inner.notifier.get().map(Notifier::channels).unwrap_or_default();
        self.inner.store.set_channels(channels).await?;
        if let Err(e) = self.inner.store.fire_schedules().await {
            tracing::warn!(error = %e, "schedules that came due while the server was down could not fire yet");
        }
        for (kind, id) in self.inner.store.live_jobs().await? {
            self.wake(kind, id);
        }
        let runner = self.clone();
        self.inner.tracker.spawn(async move { runner.sweep().await });
        let runner = self.clone();
        self.inner.tracker.spawn(async move { runner.schedules().await });
        if let Some(notifier) = self.inner.notifier.get().cloned() {
            let (store, shutdown) = (self.inner.store.clone(), self.inner.shutdown.clone());
            let poll = self.inner.cfg.pause_poll().min(Duration::from_secs(1));
            self.inner.tracker.spawn(notifier.run(store, poll, shutdown));
        }
        Ok(())
    }

    /// Sets what delivers notifications; call before [`Runner::start`]. Without one,
    /// no event is queued for delivery.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.inner.notifier.set(notifier);
    }

    /// A schedule was set or cleared: the scheduler looks again now.
    pub fn schedules_changed(&self) {
        self.inner.schedules_changed.notify_one();
    }

    /// Fires scheduled pauses and resumes when they fall due (at the latest a
    /// `pause_poll` late for a schedule another process set), and wakes the jobs they
    /// changed.
    async fn schedules(&self) {
        let shutdown = self.inner.shutdown.clone();
        let poll = self.inner.cfg.pause_poll();
        loop {
            // A read first: the write that fires runs only when something is due.
            let mut next = self.inner.store.next_schedule().await;
            if matches!(next, Ok(Some(at)) if at <= chrono::Utc::now()) {
                match self.inner.store.fire_schedules().await {
                    Ok(fired) => {
                        for (kind, id) in fired {
                            self.wake(kind, id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduled pauses and resumes could not be fired; will retry"),
                }
                next = self.inner.store.next_schedule().await;
            }
            let wait = match next {
                // At least a moment: a time the database still holds back (its clock,
                // a row another process is firing) must not make this loop spin.
                Ok(Some(at)) => {
                    (at - chrono::Utc::now()).to_std().unwrap_or_default().clamp(MIN_WAIT, poll.max(MIN_WAIT))
                }
                Ok(None) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduled pauses and resumes could not be read; will retry");
                    poll
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.schedules_changed.notified() => {}
                // A few ms late, so the time has surely passed when the store looks.
                () = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
            }
        }
    }

    /// A process that serves without running jobs (`jobdeck serve --no-runner`): no
    /// job task ever starts here (the workers run them); on PostgreSQL it still
    /// heartbeats, so its imports are known to be alive.
    pub fn start_without_jobs(&self) {
        self.inner.runs_jobs.store(false, std::sync::atomic::Ordering::SeqCst);
        self.start_node(NodeRole::HeartbeatOnly);
    }

    /// This process's part among others on one database (see [`Store::start_node`]):
    /// what the store learns there wakes a job's task or removes an abandoned import.
    fn start_node(&self, role: NodeRole) {
        let (woken, purged) = (self.clone(), self.clone());
        let hooks = NodeHooks {
            wake: Arc::new(move |kind, id| woken.wake(kind, id)),
            purge: Arc::new(move |kind, id| purged.purge(kind, id)),
        };
        let inner = &self.inner;
        inner.store.start_node(role, inner.cfg.worker_timeout(), &inner.tracker, inner.shutdown.clone(), hooks);
    }

    /// Every `pause_poll_ms`, starts a task for each live job that has none (one whose
    /// task could not start, say, because a read failed), so no live job is left with
    /// nobody working on it.
    async fn sweep(&self) {
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.inner.cfg.pause_poll()) => {}
            }
            match self.inner.store.live_jobs().await {
                Ok(live) => {
                    for (kind, id) in live {
                        self.start_task(kind, id, false);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the sweep for jobs without a task could not read; will retry"),
            }
        }
    }

    /// Tells the job's task to re-read its state now, starting a task if the job has
    /// none. Called by the service right after every committed change.
    pub fn wake(&self, kind: JobKind, id: i64) {
        self.start_task(kind, id, true);
    }

    fn start_task(&self, kind: JobKind, id: i64, notify_running: bool) {
        if self.inner.shutdown.is_cancelled() || !self.inner.runs_jobs.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = jobs.get(&(kind, id)) {
            if notify_running {
                notify.notify_one();
            }
            return;
        }
        let notify = Arc::new(Notify::new());
        jobs.insert((kind, id), notify.clone());
        drop(jobs);
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let run = std::panic::AssertUnwindSafe(JobTask::new(inner.clone(), kind, id, notify).run());
            if run.catch_unwind().await.is_err() {
                // A bug, but no item may stay `processing` behind it: the task's
                // in-flight work was dropped with it, so its items go back to `pending`
                // and the sweep starts a fresh task.
                tracing::error!(kind = %kind, job = id, "the job's task crashed; its items go back to pending");
                if let Err(e) = inner.store.release_held(kind, id).await {
                    tracing::error!(kind = %kind, job = id, error = %e, "could not reset the items of a crashed task");
                }
            }
            inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&(kind, id));
        });
    }

    /// Removes a hidden job's items in batches, each its own short transaction, then
    /// the job row. Stops at shutdown; the next start finishes it.
    pub fn purge(&self, kind: JobKind, id: i64) {
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            loop {
                if inner.shutdown.is_cancelled() {
                    return;
                }
                match inner.store.purge_batch(kind, id, PURGE_BATCH).await {
                    Ok(true) => return,
                    Ok(false) => tokio::task::yield_now().await,
                    Err(e) => {
                        tracing::warn!(kind = %kind, job = id, error = %e, "removing a deleted job's items failed; will retry");
                        tokio::select! {
                            () = inner.shutdown.cancelled() => return,
                            () = tokio::time::sleep(MAX_WRITE_BACKOFF) => {}
                        }
                    }
                }
            }
        });
    }

    /// How many of a job's items this process has waiting for a site that is busy or
    /// asked to wait (SPEC section 12); 0 for a job it does not run.
    pub fn waiting_on_hosts(&self, kind: JobKind, id: i64) -> i64 {
        let waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.get(&(kind, id)).map_or(0, |w| w.load(Ordering::Relaxed).max(0))
    }

    /// Stops starting items, lets in-flight ones finish for the grace period, puts
    /// the rest back to `pending`, and returns when every job task has ended.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        // Everything this process held is back to pending: it signs off.
        if let Err(e) = self.inner.store.leave().await {
            tracing::warn!(error = %e, "could not sign this process off");
        }
    }
}

/// A write the runner owes the database: an item's result, or putting it back.
enum Owed {
    Finish(Finished),
    Requeue,
}

/// A write that failed, to be tried again at `due`.
struct Unsaved {
    item_id: i64,
    owed: Owed,
    tries: u32,
    due: Instant,
}

/// The wait before try `tries + 1` of a failed write: doubling from 100 ms, capped.
fn write_backoff(tries: u32) -> Duration {
    Duration::from_millis(100).saturating_mul(1 << tries.min(10)).min(MAX_WRITE_BACKOFF)
}

/// What a job task knows about its job between two turns of its loop.
struct TaskState {
    flags: Flags,
    /// A claim found nothing pending since the state last may have changed.
    exhausted: bool,
    /// Set when shutdown began: in-flight items may finish until then.
    grace_until: Option<Instant>,
}

impl TaskState {
    /// Whether new items may start.
    fn running(&self) -> bool {
        !self.flags.paused && self.grace_until.is_none()
    }

    fn window(&self) -> usize {
        self.flags.concurrency.max(1) as usize
    }

    /// When a rate-limit pause lifts, as an instant a few ms late, so the stored time
    /// has surely passed when the store looks.
    fn resume_deadline(&self) -> Option<Instant> {
        self.flags.resume_at.filter(|_| self.flags.paused).map(|t| {
            let wait = (t - chrono::Utc::now()).to_std().unwrap_or_default();
            Instant::now() + wait + Duration::from_millis(5)
        })
    }

    /// New flags from the store; whatever was exhausted may have changed.
    fn update(&mut self, flags: Flags) {
        self.flags = flags;
        self.exhausted = false;
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
    /// The job's column names and roles, read once: claims build each item's input,
    /// name, website and domain from them.
    columns: Arc<JobColumns>,
    /// Outcomes not yet written: the next turn of the loop writes them all in one
    /// transaction, together with the claims that refill the window.
    finished: Vec<Finished>,
    /// Writes that failed and are tried again: no item stays `processing` for good.
    unsaved: Vec<Unsaved>,
    /// Outcomes of items whose step finished at its first poll, without a task of its
    /// own; taken at the next turn like those of spawned items.
    ready: Vec<(i64, Outcome)>,
    /// The last turn stopped on its limits while items were still finishing at once
    /// (their results stored in it): the next turn is due at once.
    again: bool,
    /// Its items waiting for their hosts, also in [`Inner::waiting`].
    waiting: Arc<AtomicI64>,
}

impl Drop for JobTask {
    fn drop(&mut self) {
        let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.get(&(self.kind, self.id)).is_some_and(|w| Arc::ptr_eq(w, &self.waiting)) {
            waiting.remove(&(self.kind, self.id));
        }
    }
}

impl JobTask {
    fn new(inner: Arc<Inner>, kind: JobKind, id: i64, wake: Arc<Notify>) -> Self {
        let step = inner.steps.for_kind(kind);
        let waiting = Arc::new(AtomicI64::new(0));
        inner.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert((kind, id), waiting.clone());
        Self {
            inner,
            kind,
            id,
            wake,
            step,
            inflight: JoinSet::new(),
            spare: None,
            columns: Arc::default(),
            finished: Vec::new(),
            unsaved: Vec::new(),
            ready: Vec::new(),
            again: false,
            waiting,
        }
    }

    /// The job's flags; `None` once it is gone. A failed read behaves as paused until
    /// the next successful one.
    async fn flags(&self) -> Option<Flags> {
        let (kind, id) = (self.kind, self.id);
        match self.inner.store.flags(kind, id).await {
            Ok(flags) => flags,
            Err(e) => {
                tracing::warn!(kind = %kind, job = id, error = %e, "cannot read job flags; will retry");
                Some(Flags { status: JobStatus::Processing, paused: true, concurrency: 1, resume_at: None })
            }
        }
    }

    async fn run(mut self) {
        let (kind, id) = (self.kind, self.id);
        let Some(flags) = self.flags().await else { return };
        match self.inner.store.columns(kind, id).await {
            Ok(columns) => self.columns = Arc::new(columns),
            Err(e) => {
                // Gone (deleted) or unreadable: the sweep starts a fresh task later.
                tracing::warn!(kind = %kind, job = id, error = %e, "cannot read the job's columns");
                return;
            }
        }
        let mut tick = tokio::time::interval(self.inner.cfg.pause_poll());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.reset();
        let shutdown = self.inner.shutdown.clone();
        let mut st = TaskState { flags, exhausted: false, grace_until: None };
        loop {
            if st.flags.status.is_terminal() {
                self.stop_finished().await;
                return;
            }
            if shutdown.is_cancelled() && st.grace_until.is_none() {
                // Whatever woke this turn, no item starts once shutdown has begun.
                st.grace_until = Some(Instant::now() + self.inner.cfg.shutdown_grace());
            }
            if !st.running() {
                // A paused job gives its unused slot back to the others.
                self.spare = None;
            }
            match self.collect_ready().await {
                None => {}
                Some(Some(flags)) => st.update(flags),
                Some(None) => return,
            }
            self.flush_and_fill(&mut st).await;
            let idle = self.inflight.is_empty()
                && self.unsaved.is_empty()
                && self.finished.is_empty()
                && self.ready.is_empty();
            if st.grace_until.is_some() && idle {
                break;
            }
            if st.running() && st.exhausted && idle {
                match self.inner.store.complete_if_done(kind, id).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(kind = %kind, job = id, error = %e, "completion check failed"),
                }
            }
            let want_permit =
                st.running() && !st.exhausted && self.inflight.len() < st.window() && self.spare.is_none();
            let resume_at = st.resume_deadline();
            let retry_at = self.unsaved.iter().map(|u| u.due).min();
            // `None`: nothing to re-read; `Some(None)`: the job is gone; `Some(Some(_))`:
            // fresh flags, after which a claim is worth trying again.
            let fresh: Option<Option<Flags>> = tokio::select! {
                () = self.wake.notified() => Some(self.flags().await),
                Some(joined) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    // An Err is a task aborted on cancel or shutdown; panics are caught
                    // inside the task.
                    let mut fresh = match joined {
                        Ok(outcome) => self.take(outcome).await,
                        Err(_) => None,
                    };
                    // Let the other items that are about to finish do so, so the turn's
                    // one write carries them all (a batch instead of a write each).
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                        let before = self.finished.len();
                        if let Some(later) = self.collect_ready().await {
                            fresh = Some(later);
                        }
                        if self.finished.len() == before || self.inflight.is_empty() {
                            break;
                        }
                    }
                    fresh
                }
                _ = tick.tick() => Some(self.flags().await),
                // Items finished at their first poll: the next turn writes them.
                () = std::future::ready(()), if !self.ready.is_empty() || self.again => None,
                permit = self.inner.global.clone().acquire_owned(), if want_permit => {
                    self.spare = permit.ok();
                    None
                }
                () = tokio::time::sleep_until(resume_at.unwrap_or_else(Instant::now)), if resume_at.is_some() => {
                    if let Err(e) = self.inner.store.auto_resume(kind, id).await {
                        tracing::warn!(kind = %kind, job = id, error = %e, "could not lift a rate-limit pause; will retry");
                        tokio::time::sleep(write_backoff(4)).await;
                    }
                    Some(self.flags().await)
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.retry_unsaved().await;
                    Some(self.flags().await)
                }
                () = shutdown.cancelled(), if st.grace_until.is_none() => {
                    st.grace_until = Some(Instant::now() + self.inner.cfg.shutdown_grace());
                    None
                }
                () = tokio::time::sleep_until(st.grace_until.unwrap_or_else(Instant::now)), if st.grace_until.is_some() => {
                    // Out of time: what finished is still saved, the rest is stopped.
                    self.inflight.abort_all();
                    while let Some(joined) = self.inflight.join_next().await {
                        if let Ok((_, Outcome::Done(done))) = joined {
                            self.finished.push(done);
                        }
                    }
                    for (_, outcome) in self.ready.drain(..) {
                        if let Outcome::Done(done) = outcome {
                            self.finished.push(done);
                        }
                    }
                    self.flush_and_fill(&mut st).await;
                    break;
                }
            };
            match fresh {
                None => {}
                Some(Some(flags)) => st.update(flags),
                // Deleted by hand: nothing is left to work on.
                Some(None) => return,
            }
        }
        // Shutting down: nothing in flight any more; what did not finish runs again next start.
        if let Err(e) = self.inner.store.release_held(kind, id).await {
            tracing::error!(kind = %kind, job = id, error = %e, "could not reset in-flight items at shutdown");
        }
    }

    /// Takes every outcome that is ready now, without waiting. Returns the flags the
    /// last outcome that changed them left (a rate limit pauses the job), as `take` does.
    async fn collect_ready(&mut self) -> Option<Option<Flags>> {
        let mut fresh = None;
        for outcome in std::mem::take(&mut self.ready) {
            if let Some(flags) = self.take(outcome).await {
                fresh = Some(flags);
            }
        }
        while let Some(joined) = self.inflight.try_join_next() {
            if let Ok(outcome) = joined {
                if let Some(flags) = self.take(outcome).await {
                    fresh = Some(flags);
                }
            }
        }
        fresh
    }

    /// One write transaction for the turn: stores every outcome taken since the last
    /// one and claims as many new items as the window and the global cap have room for.
    /// A batch that cannot be written is kept and tried again item by item.
    async fn flush_and_fill(&mut self, st: &mut TaskState) {
        let (kind, id) = (self.kind, self.id);
        self.again = false;
        if !self.unsaved.is_empty() {
            // The database is refusing writes: these wait their turn behind the others,
            // and no item starts meanwhile.
            let due = self.unsaved.iter().map(|u| u.due).min().unwrap_or_else(Instant::now);
            for done in self.finished.drain(..) {
                self.unsaved.push(Unsaved { item_id: done.item_id, owed: Owed::Finish(done), tries: 0, due });
            }
            return;
        }
        let room = if st.running() && !st.exhausted { st.window().saturating_sub(self.inflight.len()) } else { 0 };
        let mut permits = Vec::with_capacity(room);
        if room > 0 {
            permits.extend(self.spare.take());
            while permits.len() < room {
                match self.inner.global.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
        }
        let want = permits.len();
        if self.finished.is_empty() && want == 0 {
            return;
        }
        let batch = Arc::new(std::mem::take(&mut self.finished));
        let burst = self.inner.cfg.error_burst;
        let begin = Begin {
            work: self.work_maker(),
            global: self.inner.global.clone(),
            permits,
            waiting: Vec::new(),
            shutdown: self.inner.shutdown.clone(),
        };
        match self.inner.store.turn(kind, id, batch.clone(), want, burst, begin).await {
            Ok(turn) => {
                if turn.exhausted {
                    st.exhausted = true;
                }
                let begin = turn.starter;
                // A step that needs no waiting after all (a cache hit) is done at its
                // first poll and costs no task. Anything that has to wait goes on as a
                // task of its own; a future may be polled by a different waker later,
                // so nothing is lost.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                for mut work in begin.waiting {
                    match work.as_mut().poll(&mut cx) {
                        Poll::Ready(outcome) => self.ready.push(outcome),
                        Poll::Pending => {
                            self.inflight.spawn(work);
                        }
                    }
                }
                // Taken like any other outcome, at the next turn, which the `ready`
                // branch of the loop starts at once.
                self.ready.extend(turn.unstored.into_iter().map(|done| (done.item_id, Outcome::Done(done))));
                self.again = turn.again;
                // A slot taken for a round that did not come is kept for the next turn;
                // none when the job has nothing left to start.
                if st.running() && !turn.exhausted {
                    self.spare = begin.permits.into_iter().next();
                }
            }
            Err(e) => {
                tracing::warn!(kind = %kind, job = id, error = %e, "could not store results or claim; will retry");
                st.exhausted = true;
                let due = Instant::now() + write_backoff(1);
                for done in batch.iter().cloned() {
                    self.unsaved.push(Unsaved { item_id: done.item_id, owed: Owed::Finish(done), tries: 1, due });
                }
            }
        }
    }

    /// The job is over (cancelled, or marked finished by hand): in-flight work is
    /// aborted and whatever it returns late is discarded by the store's guard.
    async fn stop_finished(&mut self) {
        let (kind, id) = (self.kind, self.id);
        self.inflight.abort_all();
        while self.inflight.join_next().await.is_some() {}
        self.finished.clear();
        self.unsaved.clear();
        self.ready.clear();
        // A job marked failed by hand (not through the service) may still have items
        // `processing`; they go back to `pending` as a cancel puts them.
        if let Err(e) = self.inner.store.release_held(kind, id).await {
            tracing::warn!(kind = %kind, job = id, error = %e, "could not reset items of a finished job");
        }
    }

    fn work_maker(&self) -> WorkMaker {
        WorkMaker {
            step: self.step.clone(),
            columns: self.columns.clone(),
            max_attempts: self.inner.cfg.max_attempts.max(1),
            base: Duration::from_millis(self.inner.cfg.retry_base_ms),
            waiting: self.waiting.clone(),
        }
    }

    /// Takes an item's outcome: a result waits for the turn's write. A rate limit puts
    /// the item back and pauses the job until the time the service gave, unless a
    /// person paused it, at once. Returns the job's flags when they may have changed
    /// (`Some(None)`: the job is gone).
    async fn take(&mut self, (item_id, outcome): (i64, Outcome)) -> Option<Option<Flags>> {
        let (kind, id) = (self.kind, self.id);
        match outcome {
            Outcome::Done(done) => {
                self.finished.push(done);
                None
            }
            Outcome::RateLimited { reason, retry_after } => {
                let resume_at = chrono::Utc::now()
                    + chrono::Duration::from_std(retry_after).unwrap_or_else(|_| chrono::Duration::seconds(60));
                let res = self.inner.store.rate_limited(kind, id, item_id, reason, resume_at).await;
                if let Err(e) = res {
                    tracing::warn!(kind = %kind, job = id, error = %e, "could not pause a rate-limited job; will retry the item");
                    self.unsaved.push(Unsaved {
                        item_id,
                        owed: Owed::Requeue,
                        tries: 1,
                        due: Instant::now() + write_backoff(1),
                    });
                }
                Some(self.flags().await)
            }
        }
    }

    async fn write_owed(&self, item_id: i64, owed: &Owed) -> Result<(), AppError> {
        let (kind, id) = (self.kind, self.id);
        match owed {
            Owed::Finish(done) => {
                let burst = self.inner.cfg.error_burst;
                self.inner.store.store_results(kind, id, vec![done.clone()], burst).await?;
            }
            Owed::Requeue => {
                self.inner.store.requeue(kind, id, item_id).await?;
            }
        }
        Ok(())
    }

    /// Tries the failed writes that are due again, in order, until one fails: the
    /// database is then still locked, so the rest count a failed try without waiting
    /// for it again. A result that still cannot be written after [`WRITE_TRIES`] tries
    /// gives way: the item goes back to `pending` (tried until that works), so it runs
    /// again rather than staying `processing`.
    async fn retry_unsaved(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsaved).into_iter().partition(|u| u.due <= now);
        self.unsaved = later;
        let mut failed: Option<AppError> = None;
        for mut u in due {
            if failed.is_none() {
                match self.write_owed(u.item_id, &u.owed).await {
                    Ok(()) => continue,
                    Err(e) => failed = Some(e),
                }
            }
            u.tries += 1;
            if matches!(u.owed, Owed::Finish(..)) && u.tries >= WRITE_TRIES {
                tracing::error!(
                    kind = %self.kind, job = self.id, item = u.item_id, error = ?failed,
                    "could not store a result after {WRITE_TRIES} tries; the item goes back to pending"
                );
                u.owed = Owed::Requeue;
                u.tries = 0;
            }
            u.due = Instant::now() + write_backoff(u.tries);
            self.unsaved.push(u);
        }
    }
}

/// A note put at the end of an error's first line, the line people read.
fn noted(text: &str, note: &str) -> String {
    match crate::server::store::types::reason_parts(text) {
        (line, Some(detail)) => format!("{line}{note}\n{detail}"),
        (line, None) => format!("{line}{note}"),
    }
}
