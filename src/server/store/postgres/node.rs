//! What makes a process one of many on PostgreSQL (SPEC section 10): its heartbeat,
//! its bid for the leader's lease (the leader rescues the items of dead workers), and a
//! listener that hears pause, resume and cancel from other processes. The runner hands
//! it what to do with what it learns ([`NodeHooks`]) and never sees PostgreSQL itself.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::sql::{self, kind_word, tables};
use super::PgStore;
use crate::model::JobKind;
use crate::server::error::AppError;
use crate::server::store::types::{NodeHooks, NodeRole};

/// One process's part in the cluster.
pub struct Node {
    pg: Arc<PgStore>,
    worker_timeout: Duration,
    shutdown: CancellationToken,
    hooks: NodeHooks,
}

impl PgStore {
    /// Beats; if this worker was declared dead meanwhile, joins again under the same id
    /// and says so (`false`).
    pub async fn heartbeat(&self) -> Result<bool, AppError> {
        let c = self.client().await?;
        if sql::heartbeat(&**c, self.worker_id).await? {
            return Ok(true);
        }
        c.execute(
            "INSERT INTO workers (id, name) OVERRIDING SYSTEM VALUE VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&self.worker_id, &self.name],
        )
        .await?;
        Ok(false)
    }

    /// Signs this worker off at a graceful stop (its items were put back already).
    pub async fn leave(&self) -> Result<(), AppError> {
        let c = self.client().await?;
        c.execute("DELETE FROM workers WHERE id = $1", &[&self.worker_id]).await?;
        c.execute("DELETE FROM leases WHERE holder = $1", &[&self.worker_id]).await?;
        Ok(())
    }

    /// Takes or keeps the leader's lease for one worker timeout; while it holds it,
    /// rescues dead workers. `None` when another process leads.
    pub async fn rescue_if_leader(&self, timeout: std::time::Duration) -> Result<Option<sql::Rescued>, AppError> {
        let mut c = self.client().await?;
        if !sql::acquire_lease(&**c, "leader", self.worker_id, timeout).await? {
            return Ok(None);
        }
        let tx = c.transaction().await?;
        let mut rescued = sql::rescue_dead(&tx, self.worker_id, timeout).await?;
        // An import whose importer is gone never finishes: it becomes a delete.
        for kind in JobKind::ALL {
            let rows = tx
                .query(
                    &format!(
                        "UPDATE {} AS j SET hidden = 'deleting' WHERE hidden = 'importing'
                           AND NOT EXISTS (SELECT 1 FROM workers AS w WHERE w.id = j.importer) RETURNING id",
                        tables(kind).jobs
                    ),
                    &[],
                )
                .await?;
            rescued.abandoned.extend(rows.iter().map(|r| (kind, r.get::<_, i64>(0))));
        }
        tx.commit().await?;
        Ok(Some(rescued))
    }

    /// Opens a connection of its own, LISTENs on the control channel and sends every
    /// job it hears of to `heard`. When the connection ends, `heard` is dropped; when
    /// the receiver is gone, the connection is closed.
    pub async fn listen(&self, heard: tokio::sync::mpsc::UnboundedSender<(JobKind, i64)>) -> Result<(), AppError> {
        use futures::StreamExt;
        let (client, mut conn) = self.config.connect(tokio_postgres::NoTls).await?;
        let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Drives the connection; ends with it.
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    if notes_tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {}", sql::CONTROL_CHANNEL)).await?;
        // Holds the session open while anyone listens.
        tokio::spawn(async move {
            let _session = client;
            while let Some(payload) = notes.recv().await {
                if let Some(job) = parse_control(&payload) {
                    if heard.send(job).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    /// Starts this process's part in the cluster (see [`Node::start`]).
    pub fn start_node(
        self: &Arc<Self>,
        role: NodeRole,
        worker_timeout: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        hooks: NodeHooks,
    ) {
        Node::start(self.clone(), role, worker_timeout, tracker, shutdown, hooks);
    }
}

impl Node {
    /// Starts the node's tasks on `tracker`; they end when `shutdown` is cancelled.
    pub fn start(
        pg: Arc<PgStore>,
        role: NodeRole,
        worker_timeout: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        hooks: NodeHooks,
    ) {
        let node = Arc::new(Self { pg, worker_timeout, shutdown, hooks });
        let node2 = node.clone();
        tracker.spawn(async move { node2.heartbeat().await });
        if role == NodeRole::Runner {
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

/// `kind:id` as [`sql::CONTROL_CHANNEL`] carries it, read back.
pub fn parse_control(payload: &str) -> Option<(JobKind, i64)> {
    let (kind, id) = payload.split_once(':')?;
    let kind = JobKind::ALL.into_iter().find(|k| kind_word(*k) == kind)?;
    Some((kind, id.parse().ok()?))
}
