//! Opening the embedded SQLite database, shared by the stores that live in it (keys,
//! usage ledger): one file, WAL mode, tables created on open.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Opens (or creates) the SQLite file at `path` and runs `schema`. The error names the
/// store (`what`), the file, and what to check.
pub(crate) async fn open_sqlite(
    path: &Path,
    what: &str,
    schema: &[&str],
) -> Result<SqlitePool, String> {
    let fail = |step: &str, e: &dyn std::fmt::Display| {
        format!(
            "cannot {step} the {what} at {}: {e}; check that the directory exists and is writable (TOLLGATE_DB)",
            path.display()
        )
    };
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| fail("open", &e))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| fail("open", &e))?;
    for statement in schema {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .map_err(|e| fail("migrate", &e))?;
    }
    Ok(pool)
}
