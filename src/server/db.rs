//! Opening the SQLite file: PRAGMAs, migrations, one writer and a pool of readers.

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, M};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::AppError;

/// The embedded, append-only migrations.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/0001_init.sql")),
        M::up(include_str!("../../migrations/0002_items_by_job.sql")),
    ])
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
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
}

/// Handle to the database: every write goes through the one writer connection,
/// reads through a small pool, so WAL lets status reads run beside the runner's writes.
#[derive(Clone)]
pub struct Db {
    writer: Arc<Mutex<Connection>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

impl Db {
    /// Opens (creating folder and file as needed), sets WAL and applies migrations.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::Folder(dir.display().to_string(), e))?;
        }
        let mut writer = Connection::open(path).map_err(|e| OpenError::Open(shown.clone(), e))?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| configure(&writer))
            .map_err(|e| OpenError::Open(shown.clone(), e))?;
        migrations().to_latest(&mut writer).map_err(|e| OpenError::Migrate(shown.clone(), e))?;
        let manager = SqliteConnectionManager::file(path).with_init(|c: &mut Connection| configure(c));
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)
            .map_err(|e| OpenError::Pool(shown, e))?;
        Ok(Self { writer: Arc::new(Mutex::new(writer)), readers })
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

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, off the async
    /// threads; commits when `f` returns `Ok`, rolls back otherwise.
    pub async fn write<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, AppError> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || Self::write_blocking(&writer, f))
            .await
            .map_err(|e| AppError::Internal(format!("writer task: {e}")))?
    }

    /// The blocking form of [`Db::write`], for code already off the async threads.
    pub fn write_sync<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, AppError>,
    {
        Self::write_blocking(&self.writer, f)
    }

    fn write_blocking<T, F>(writer: &Mutex<Connection>, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, AppError>,
    {
        // A panic in another writer leaves the connection usable: SQLite rolled back.
        let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
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

    #[test]
    fn schema_has_the_four_tables_paused_flags_and_foreign_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn).unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tables, ["accounts", "preprocessing_jobs", "preprocessing_results", "processing_jobs"]);
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
}
