//! What makes a process one of many on PostgreSQL (SPEC section 10): its heartbeat,
//! its bid for the leader's lease (the leader rescues the items of dead workers), and a
//! listener that hears pause, resume and cancel from other processes. The runner hands
//! it what to do with what it learns ([`Hooks`]) and never sees PostgreSQL itself.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backend::PgBackend;
use crate::model::JobKind;

/// What the node tells the runner.
#[derive(Clone)]
pub struct Hooks {
    /// A job's state may have changed (another process acted on it, or its items came
    /// back from a dead worker): its task re-reads it, or starts.
    pub wake: Arc<dyn Fn(JobKind, i64) + Send + Sync>,
    /// A job whose import was abandoned by a dead importer: its rows are to be removed.
    pub purge: Arc<dyn Fn(JobKind, i64) + Send + Sync>,
}

/// How much of a node a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A process that runs jobs: heartbeat, leader bid and control listener.
    Runner,
    /// `serve --no-runner`: the heartbeat only, so its imports are known to be alive.
    HeartbeatOnly,
}

/// One process's part in the cluster.
pub struct Node {
    pg: Arc<PgBackend>,
    worker_timeout: Duration,
    shutdown: CancellationToken,
    hooks: Hooks,
}

impl Node {
    /// Starts the node's tasks on `tracker`; they end when `shutdown` is cancelled.
    pub fn start(
        pg: Arc<PgBackend>,
        role: Role,
        worker_timeout: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        hooks: Hooks,
    ) {
        let node = Arc::new(Self { pg, worker_timeout, shutdown, hooks });
        let node2 = node.clone();
        tracker.spawn(async move { node2.heartbeat().await });
        if role == Role::Runner {
            let node2 = node.clone();
            tracker.spawn(async move { node2.lead().await });
            tracker.spawn(async move { node.listen().await });
        }
    }

    /// Beats four times per worker timeout. A worker found declared dead (silent too
    /// long: its items went to others) joins again under the same id; what it still
    /// finishes of the items it lost is discarded by the store's fence.
    async fn heartbeat(&self) {
        let every = self.worker_timeout / 4;
        loop {
            match self.pg.heartbeat().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(worker = self.pg.worker_id, "this worker was declared dead; joining again")
                }
                Err(e) => tracing::warn!(worker = self.pg.worker_id, error = %e, "heartbeat failed; will retry"),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Bids for the leader's lease every quarter of the worker timeout; while it holds
    /// it, puts the items of workers silent past the timeout back to `pending`.
    async fn lead(&self) {
        let timeout = self.worker_timeout;
        loop {
            match self.pg.rescue_if_leader(timeout).await {
                Ok(Some(rescued)) => {
                    if !rescued.workers.is_empty() {
                        tracing::warn!(workers = ?rescued.workers, items = ?rescued.items, "rescued the items of dead workers");
                    }
                    for (kind, id, _) in rescued.items {
                        (self.hooks.wake)(kind, id);
                    }
                    for (kind, id) in rescued.abandoned {
                        tracing::warn!(kind = %kind, job = id, "removing an import whose importer is gone");
                        (self.hooks.purge)(kind, id);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the leader's round failed; will retry"),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(timeout / 4) => {}
            }
        }
    }

    /// Listens for control changes on a connection of its own and wakes the job's task.
    /// Notifications sent while the connection is down are lost, so after every
    /// (re)connect every live job is woken to re-read its state.
    async fn listen(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            match self.pg.listen(tx).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if let Ok(live) = self.pg.live_jobs().await {
                        for (kind, id) in live {
                            (self.hooks.wake)(kind, id);
                        }
                    }
                    loop {
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            heard = rx.recv() => match heard {
                                Some((kind, id)) => (self.hooks.wake)(kind, id),
                                None => break,
                            },
                        }
                    }
                    tracing::warn!("the control listener's connection closed; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for control changes; will retry"),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
