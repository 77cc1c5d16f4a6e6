//! Sign-in sessions on SQLite (SPEC section 11): one row per session, keyed by an HMAC
//! of the cookie's id (see `server::access`), with its expiry in Unix seconds.

use rusqlite::{params, Connection, OptionalExtension};

use crate::server::error::AppError;

/// Records a new session; sessions that have expired go at the same time.
pub fn start(conn: &Connection, key: &str, created: i64, expires: i64) -> Result<(), AppError> {
    conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?.execute([created])?;
    conn.prepare_cached("INSERT INTO sessions (key, created_at, expires_at) VALUES (?1, ?2, ?3)")?
        .execute(params![key, created, expires])?;
    Ok(())
}

/// Whether `key` names a session that has not ended or expired at `now`.
pub fn alive(conn: &Connection, key: &str, now: i64) -> Result<bool, AppError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM sessions WHERE key = ?1 AND expires_at > ?2")?
        .query_row(params![key, now], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Ends one session.
pub fn end(conn: &Connection, key: &str) -> Result<(), AppError> {
    conn.prepare_cached("DELETE FROM sessions WHERE key = ?1")?.execute([key])?;
    Ok(())
}

/// Ends every session; how many there were.
pub fn end_all(conn: &Connection) -> Result<usize, AppError> {
    Ok(conn.execute("DELETE FROM sessions", [])?)
}
