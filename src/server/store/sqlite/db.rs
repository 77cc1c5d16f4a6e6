//! Opening the SQLite file: PRAGMAs, migrations, one writer and a pool of readers.

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, M};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server::error::AppError;

/// The embedded, append-only migrations.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../../../migrations/sqlite/0001_init.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0002_items_by_job.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0003_hidden_jobs.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0004_operator_controls.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0005_auto_control.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0006_item_ranges.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0007_research_roles.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0008_pending_off_the_index.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0009_sessions.sql")),
        M::up(include_str!("../../../../migrations/sqlite/0010_outcomes.sql")),
    ])
}

fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    // Plans stay as prepared: without this, the bundled SQLite (built with STAT4)
    // re-prepares a cached statement whenever a bound value could change its plan,
    // which for the claim statement was every run.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Why the database could not be opened; fatal at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the database folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("cannot open the database {0}: {1}")]
    Open(String, rusqlite::Error),
    #[error("cannot migrate the database {0}: {1}")]
    Migrate(String, rusqlite_migration::Error),
    #[error("cannot open the reader pool of {0}: {1}")]
    Pool(String, r2d2::Error),
    #[error("cannot start the checkpoint thread of {0}: {1}")]
    Thread(String, std::io::Error),
    #[error("cannot lock {0}: {1}")]
    LockFile(String, std::io::Error),
    /// Another server holds the lock beside this database file.
    #[error(
        "another jobdeck server is already using the database {0} (its lock file {1} is held); \
         stop that server or point this one at another file with JOBDECK_DB"
    )]
    InUse(String, String),
}

/// Handle to the database: every write goes through the one writer connection,
/// reads through a small pool, so WAL lets status reads run beside the runner's writes.
/// Holds the exclusive lock on the file's lock file for as long as any clone lives.
#[derive(Clone)]
pub struct Db {
    writer: Arc<Mutex<Connection>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    /// Tells the checkpoint thread that a write committed (see [`checkpointer`]).
    committed: SyncSender<()>,
    /// Writes waiting for the writer connection (see [`Db::writers_waiting`]).
    waiting: Arc<AtomicUsize>,
    _lock: Arc<std::fs::File>,
}

/// One write waiting for the writer connection, counted in [`Db::writers_waiting`]
/// until it is dropped: when the write has the connection, or never runs.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// WAL pages after which the writer copies them into the database file itself. The
/// checkpoint thread normally does it long before; this only bounds the WAL should
/// that thread fall behind, and lets the WAL start over in a long run of writes.
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;
/// The least time between two checkpoints of the checkpoint thread.
const CHECKPOINT_GAP: Duration = Duration::from_millis(20);
/// The size a WAL file is cut back to when it starts over.
const WAL_KEEP_BYTES: i64 = 64 * 1024 * 1024;

/// Starts the thread that copies committed pages from the WAL into the database file
/// (a passive checkpoint, on a connection of its own) after writes, so the writer
/// never stops for it: left to the writer, as SQLite does by default every 1,000
/// pages, a million-row import spent about a second of its three in checkpoints.
/// A passive checkpoint never waits for a lock, so it holds up neither the writer
/// nor readers. The thread ends when the last [`Db`] handle is dropped.
fn checkpointer(conn: Connection) -> std::io::Result<SyncSender<()>> {
    let (committed, wake) = std::sync::mpsc::sync_channel::<()>(1);
    let run = move || {
        while wake.recv().is_ok() {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; the writer will do it");
            }
            std::thread::sleep(CHECKPOINT_GAP);
        }
    };
    std::thread::Builder::new().name("jobdeck-checkpoint".into()).spawn(run)?;
    Ok(committed)
}

/// The lock file beside a database file: `jobdeck.sqlite3` → `jobdeck.sqlite3.lock`,
/// in the folder the file really lives in, so a second path to the same file (a
/// symbolic link, another working directory) finds the same lock.
pub fn lock_path(path: &Path) -> std::path::PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).join(path.file_name().unwrap_or_default())
    });
    let mut name = real.file_name().map(std::ffi::OsString::from).unwrap_or_default();
    name.push(".lock");
    real.with_file_name(name)
}

/// Takes the exclusive lock that makes one server the only user of a database file.
/// Two servers on one file would each reset the other's in-flight items at start-up.
/// The operating system drops the lock when the process ends, however it ends.
fn lock(path: &Path, shown: &str) -> Result<std::fs::File, OpenError> {
    let lock_path = lock_path(path);
    let lock_shown = lock_path.display().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| OpenError::LockFile(lock_shown.clone(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse(shown.to_string(), lock_shown)),
        Err(std::fs::TryLockError::Error(e)) => Err(OpenError::LockFile(lock_shown, e)),
    }
}

impl Db {
    /// Opens (creating folder and file as needed), takes the file's lock, sets WAL and
    /// applies migrations. `busy_timeout` is how long a statement waits for a lock held
    /// by someone else (a person's `sqlite3` shell, a checkpoint) before it fails.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::Folder(dir.display().to_string(), e))?;
        }
        let lock = lock(path, &shown)?;
        let mut writer = Connection::open(path).map_err(|e| OpenError::Open(shown.clone(), e))?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| configure(&writer, busy_timeout))
            .map_err(|e| OpenError::Open(shown.clone(), e))?;
        migrations().to_latest(&mut writer).map_err(|e| OpenError::Migrate(shown.clone(), e))?;
        let checkpoints = writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .and_then(|_| writer.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES))
            .and_then(|_| Connection::open(path))
            .and_then(|c| configure(&c, busy_timeout).map(|_| c))
            .map_err(|e| OpenError::Open(shown.clone(), e))?;
        let committed = checkpointer(checkpoints).map_err(|e| OpenError::Thread(shown.clone(), e))?;
        let manager =
            SqliteConnectionManager::file(path).with_init(move |c: &mut Connection| configure(c, busy_timeout));
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)
            .map_err(|e| OpenError::Pool(shown, e))?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            committed,
            waiting: Arc::default(),
            _lock: Arc::new(lock),
        })
    }

    /// Runs `f` on a reader connection off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, AppError> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(|e| AppError::Internal(format!("reader pool: {e}")))?;
            f(&conn)
        })
        .await
        .map_err(|e| AppError::Internal(format!("reader task: {e}")))?
    }

    /// Runs `f`, a read of a few rows by their keys, on a reader connection that is
    /// free right now, on this async thread: no hand-over to a blocking thread and back,
    /// which under a busy engine is most of a status read's tail. When every reader is
    /// in use (an export, a long page) it waits for one as [`Db::read`] does.
    ///
    /// Only for reads that take microseconds: a reader in WAL mode takes no lock the
    /// writer holds, so it does not wait for the writer.
    pub async fn read_now<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, AppError> + Send + 'static,
    {
        match self.readers.try_get() {
            Some(conn) => f(&conn),
            None => self.read(f).await,
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, off the async
    /// threads; commits when `f` returns `Ok`, rolls back otherwise.
    pub async fn write<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, AppError> + Send + 'static,
    {
        let writer = self.writer.clone();
        // Counted from the moment it is asked for, not from when a blocking thread
        // takes it up: a busy machine may take a while to give it one.
        let waiting = Waiting::new(&self.waiting);
        let value = tokio::task::spawn_blocking(move || Self::write_blocking(&writer, waiting, f))
            .await
            .map_err(|e| AppError::Internal(format!("writer task: {e}")))??;
        // Full: a wake-up is already waiting, and its checkpoint takes this commit too.
        let _ = self.committed.try_send(());
        Ok(value)
    }

    /// How many writes are waiting for the writer connection right now. A write that
    /// could go on (the runner's rounds of instant items) ends its transaction early
    /// when another is waiting, so a pause or a cancel never waits behind it for long.
    pub fn writers_waiting(&self) -> Arc<AtomicUsize> {
        self.waiting.clone()
    }

    fn write_blocking<T, F>(writer: &Mutex<Connection>, waiting: Waiting, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, AppError>,
    {
        // A panic in another writer leaves the connection usable: SQLite rolled back.
        let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
        drop(waiting);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().expect("migrations validate");
    }

    /// A database as a release of jobdeck that stopped at `version` left it.
    fn migrated_to(version: usize) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn, Duration::from_secs(1)).unwrap();
        migrations().to_version(&mut conn, version).unwrap();
        conn
    }

    /// A database written before 0006 keeps its items readable in file order: each
    /// job gets the id range of its items, however they interleave with another's.
    #[test]
    fn item_ranges_are_filled_in_for_existing_jobs() {
        let mut conn = migrated_to(5);
        conn.execute_batch(
            "INSERT INTO processing_jobs (id, name, filename, created_at, updated_at) VALUES
                 (1, 'a', 'a.csv', 't', 't'), (2, 'b', 'b.csv', 't', 't'), (3, 'empty', 'c.csv', 't', 't');
             INSERT INTO accounts (id, job_id, line, input) VALUES
                 (10, 1, 2, '[]'), (11, 2, 2, '[]'), (12, 1, 3, '[]'), (13, 2, 3, '[]'), (14, 1, 4, '[]');",
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let ranges: Vec<(i64, Option<i64>, Option<i64>)> = conn
            .prepare("SELECT id, first_item, last_item FROM processing_jobs ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ranges, [(1, Some(10), Some(14)), (2, Some(11), Some(13)), (3, None, None)]);
        let lines = |job: i64| -> Vec<i64> {
            let (_, items) =
                crate::server::store::sqlite::items::items_after(&conn, crate::model::JobKind::Research, job, 0, 100)
                    .unwrap();
            items.iter().map(|i| i.line).collect()
        };
        assert_eq!(lines(1), [2, 3, 4]);
        assert_eq!(lines(2), [2, 3]);
        let index: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('accounts_job', 'preprocessing_results_job')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 0, "the file-order indexes are gone");
    }

    /// Research jobs from before migration 0007 keep their items' own name, website and
    /// domain, even where the input says otherwise; jobs created after read them from
    /// the input through the roles fixed at creation.
    #[test]
    fn items_of_older_jobs_keep_their_stored_fields_and_new_ones_read_their_input() {
        use crate::model::JobKind;
        use crate::server::store::sqlite::{items, jobs};
        use crate::server::store::types::NewItem;
        let mut conn = migrated_to(6);
        conn.execute_batch(
            r#"INSERT INTO processing_jobs (id, name, filename, columns, created_at, updated_at, first_item, last_item)
                 VALUES (1, 'old', 'old.csv', '["Company","Website"]', 't', 't', 10, 10);
             INSERT INTO accounts (id, job_id, line, name, website, domain, input)
                 VALUES (10, 1, 2, 'Stored Ltd', 'https://stored.example/', 'stored.example', '["Input Ltd",""]');"#,
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let fields = |conn: &Connection, job: i64| {
            let (_, items) = items::items_after(conn, JobKind::Research, job, 0, 10).unwrap();
            items.into_iter().map(|i| (i.name, i.website, i.domain)).collect::<Vec<_>>()
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(fields(&conn, 1), [(some("Stored Ltd"), some("https://stored.example/"), some("stored.example"))]);

        let columns = ["Account", "E-mail", "Site"].map(String::from);
        let id = jobs::insert_job(&conn, JobKind::Research, "new", "new.csv", 2, &columns).unwrap();
        let item = NewItem {
            line: 2,
            name: some("New Ltd"),
            website: some("https://new.example/"),
            domain: some("new.example"),
            input: r#"[" New Ltd ","ann@new.example","https://new.example/"]"#.into(),
            ..Default::default()
        };
        items::insert_items(&conn, JobKind::Research, id, &[item]).unwrap();
        jobs::reveal_job(&conn, JobKind::Research, id, 1).unwrap();
        let stored: (Option<String>, Option<String>, Option<String>) = conn
            .query_row("SELECT name, website, domain FROM accounts WHERE job_id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(stored, (None, None, None), "stored once, in the input");
        assert_eq!(fields(&conn, id), [(some("New Ltd"), some("https://new.example/"), some("new.example"))]);
    }

    /// A job from before migration 0008, part done with items in flight, carries on
    /// through the claim cursor: its pending items are claimed in file order, and
    /// items put back after a crash are claimed first.
    #[test]
    fn jobs_from_before_the_claim_cursor_claim_in_file_order() {
        use crate::model::{ItemStatus, JobKind};
        use crate::server::store::sqlite::{items, jobs};

        let mut conn = migrated_to(7);
        conn.execute_batch(
            "INSERT INTO processing_jobs (id, name, filename, status, total, pending_count, processing_count,
                     completed_count, created_at, updated_at, first_item, last_item)
                 VALUES (1, 'old', 'old.csv', 'processing', 6, 3, 1, 2, 't', 't', 10, 15);
             INSERT INTO accounts (id, job_id, line, input, status) VALUES
                 (10, 1, 2, '[\"a\"]', 'completed'), (11, 1, 3, '[\"b\"]', 'processing'),
                 (12, 1, 4, '[\"c\"]', 'completed'), (13, 1, 5, '[\"d\"]', 'pending'),
                 (14, 1, 6, '[\"e\"]', 'pending'), (15, 1, 7, '[\"f\"]', 'pending');",
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let k = JobKind::Research;
        let claim = |conn: &Connection, n| -> Vec<i64> {
            items::claim_batch(conn, k, 1, n).unwrap().iter().map(|c| c.id).collect()
        };
        assert_eq!(claim(&conn, 2), [13, 14]);
        // A restart puts item 11 back: it comes before the rest.
        assert_eq!(items::reset_processing(&conn, k, 1).unwrap(), 3);
        let pending = items::list_items(&conn, k, 1, Some(ItemStatus::Pending), 0, 10).unwrap();
        assert_eq!(pending.items.iter().map(|i| i.id).collect::<Vec<_>>(), [11, 13, 14, 15]);
        assert_eq!(claim(&conn, 10), [11, 13, 14, 15]);
        let job = jobs::require_job(&conn, k, 1).unwrap();
        assert_eq!((job.pending, job.processing, job.completed), (0, 4, 2));

        let index: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'accounts_job_status'", [], |r| r.get(0))
            .unwrap();
        assert!(index.contains("WHERE status <> 'pending'"), "{index}");
    }

    #[test]
    fn schema_has_the_four_tables_and_the_log_paused_flags_and_foreign_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn, Duration::from_secs(1)).unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            [
                "accounts",
                "job_events",
                "notify_channels",
                "outbox",
                "preprocessing_jobs",
                "preprocessing_results",
                "processing_jobs",
                "sessions"
            ]
        );
        for table in ["processing_jobs", "preprocessing_jobs"] {
            let hidden: i64 = conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = 'hidden'"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(hidden, 1, "{table}.hidden");
        }
        for table in ["processing_jobs", "preprocessing_jobs"] {
            let (ty, notnull, default): (String, bool, String) = conn
                .query_row(
                    &format!(
                        "SELECT type, \"notnull\", dflt_value FROM pragma_table_info('{table}') WHERE name = 'paused'"
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!((ty.as_str(), notnull, default.as_str()), ("INTEGER", true, "0"), "{table}.paused");
        }
        let fk_on: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk_on, 1);
        for (items, jobs) in [("accounts", "processing_jobs"), ("preprocessing_results", "preprocessing_jobs")] {
            let target: String = conn
                .query_row(&format!("SELECT \"table\" FROM pragma_foreign_key_list('{items}')"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(target, jobs);
        }
        // The foreign key is enforced: an item of a job that does not exist is refused.
        let orphan = conn.execute("INSERT INTO accounts (job_id, line, input) VALUES (999, 2, '[]')", []);
        assert!(orphan.is_err());
    }

    #[test]
    #[cfg(unix)]
    fn a_second_open_of_the_same_file_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobdeck.sqlite3");
        let first = Db::open(&path, Duration::from_secs(1)).expect("first open");
        let second = Db::open(&path, Duration::from_secs(1));
        let err = second.err().expect("the second open is refused");
        assert!(matches!(err, OpenError::InUse(..)), "{err}");
        let text = err.to_string();
        assert!(text.contains("another jobdeck server") && text.contains("jobdeck.sqlite3.lock"), "{text}");
        let clone = first.clone();
        drop(first);
        assert!(Db::open(&path, Duration::from_secs(1)).is_err(), "a clone still holds the lock");
        drop(clone);
        let reopened = Db::open(&path, Duration::from_secs(1)).expect("free again once every handle is gone");
        // Another path to the same file finds the same lock.
        let link = dir.path().join("other-name.sqlite3");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(Db::open(&link, Duration::from_secs(1)), Err(OpenError::InUse(..))));
        drop(reopened);
    }

    /// Committed pages reach the database file itself without the writer stopping to
    /// copy them: the writer's own checkpoint waits for far more pages than this
    /// write makes, so only the checkpoint thread can have copied them.
    #[tokio::test]
    async fn the_checkpoint_thread_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobdeck.sqlite3");
        let db = Db::open(&path, Duration::from_secs(1)).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        db.write(|tx| {
            tx.execute_batch(
                "CREATE TABLE filler (b BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 512)
                 INSERT INTO filler SELECT zeroblob(4000) FROM n;",
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let wal_pages = 2 * 1024 * 1024 / 4096;
        assert!(wal_pages < WRITER_CHECKPOINT_PAGES as u64, "the write stays under the writer's own threshold");
        let waited = std::time::Instant::now();
        while std::fs::metadata(&path).unwrap().len() < before + 2 * 1024 * 1024 {
            assert!(waited.elapsed() < Duration::from_secs(30), "the pages never reached the database file");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
