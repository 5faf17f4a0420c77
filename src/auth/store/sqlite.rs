//! [`SqliteKeyStore`]: keys in a SQLite file, the embedded default.

use std::path::Path;

use sqlx::sqlite::SqlitePool;

use super::{
    bind_columns, insert_sql, read_columns, update_sql, Columns, KeyStore, KeyStoreError,
    StoreFuture, COLUMNS,
};
use crate::auth::{KeyHash, KeyRecord};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS auth_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT,
        team TEXT,
        role TEXT NOT NULL,
        models TEXT NOT NULL,
        ip_allow TEXT NOT NULL,
        rpm INTEGER,
        tpm INTEGER,
        max_parallel INTEGER,
        budget_amount TEXT,
        budget_period TEXT,
        metadata TEXT NOT NULL,
        expires_at INTEGER,
        enabled INTEGER NOT NULL,
        revoked_at INTEGER,
        created_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS auth_keys_team ON auth_keys (team)",
    "CREATE TABLE IF NOT EXISTS auth_teams (
        name TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
    )",
];

/// Keys in a SQLite file (WAL mode), created with its tables on open. The file can be
/// the usage ledger's (`TOLLGATE_DB`): the tables are separate (`auth_keys`,
/// `auth_teams`).
#[derive(Debug, Clone)]
pub struct SqliteKeyStore {
    pool: SqlitePool,
}

impl SqliteKeyStore {
    /// Opens (or creates) the file and its tables.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteKeyStore, KeyStoreError> {
        let pool = crate::db::open_sqlite(path.as_ref(), "key store", SCHEMA)
            .await
            .map_err(KeyStoreError::new)?;
        Ok(SqliteKeyStore { pool })
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

super::sql_key_store!(
    store = SqliteKeyStore,
    engine = "SQLite",
    numbered = false,
    param = "?1",
    team_sql = "INSERT OR IGNORE INTO auth_teams (name, created_at) VALUES (?1, ?2)"
);
