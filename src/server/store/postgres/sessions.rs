//! Sign-in sessions on PostgreSQL, as `sqlite::sessions` on SQLite.

use super::PgStore;
use crate::server::error::AppError;

impl PgStore {
    /// Records a new session; sessions that have expired go at the same time.
    pub async fn session_start(&self, key: String, created: i64, expires: i64) -> Result<(), AppError> {
        let c = self.client().await?;
        c.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&created]).await?;
        c.execute(
            "INSERT INTO sessions (key, created_at, expires_at) VALUES ($1, $2, $3)",
            &[&key, &created, &expires],
        )
        .await?;
        Ok(())
    }

    /// Whether `key` names a session that has not ended or expired at `now`.
    pub async fn session_alive(&self, key: String, now: i64) -> Result<bool, AppError> {
        let c = self.client().await?;
        let row = c.query_opt("SELECT 1 FROM sessions WHERE key = $1 AND expires_at > $2", &[&key, &now]).await?;
        Ok(row.is_some())
    }

    /// Ends one session.
    pub async fn session_end(&self, key: String) -> Result<(), AppError> {
        self.client().await?.execute("DELETE FROM sessions WHERE key = $1", &[&key]).await?;
        Ok(())
    }

    /// Ends every session; how many there were.
    pub async fn sessions_end_all(&self) -> Result<(), AppError> {
        self.client().await?.execute("DELETE FROM sessions", &[]).await?;
        Ok(())
    }
}
