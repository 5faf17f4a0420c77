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

fn db_error(what: &str) -> impl Fn(sqlx::Error) -> KeyStoreError + '_ {
    move |e| KeyStoreError::new(format!("key store (SQLite): cannot {what}: {e}"))
}

impl KeyStore for SqliteKeyStore {
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db_error("insert a key"))?;
            if let Some(team) = &record.team {
                sqlx::query("INSERT OR IGNORE INTO auth_teams (name, created_at) VALUES (?1, ?2)")
                    .bind(team)
                    .bind(crate::auth::record::unix_millis(record.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("insert a team"))?;
            }
            let sql = insert_sql(false);
            bind_columns!(sqlx::query(&sql), Columns::encode(record))
                .execute(&mut *tx)
                .await
                .map_err(db_error("insert a key"))?;
            tx.commit().await.map_err(db_error("insert a key"))
        })
    }

    fn find_by_hash<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            let sql = format!("SELECT {COLUMNS} FROM auth_keys WHERE hash = ?1");
            let row = sqlx::query(&sql)
                .bind(hash.to_hex())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error("look a key up"))?;
            row.map(|row| read_columns!(&row)).transpose()
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            let sql = format!("SELECT {COLUMNS} FROM auth_keys WHERE id = ?1");
            let row = sqlx::query(&sql)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error("read a key"))?;
            row.map(|row| read_columns!(&row)).transpose()
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(async move {
            let sql = format!("SELECT {COLUMNS} FROM auth_keys ORDER BY created_at, id");
            let rows = sqlx::query(&sql)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error("list keys"))?;
            rows.iter().map(|row| read_columns!(row)).collect()
        })
    }

    fn update<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db_error("update a key"))?;
            if let Some(team) = &record.team {
                sqlx::query("INSERT OR IGNORE INTO auth_teams (name, created_at) VALUES (?1, ?2)")
                    .bind(team)
                    .bind(crate::auth::record::unix_millis(
                        std::time::SystemTime::now(),
                    ))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("insert a team"))?;
            }
            let sql = update_sql(false);
            let done = bind_columns!(sqlx::query(&sql), Columns::encode(record))
                .execute(&mut *tx)
                .await
                .map_err(db_error("update a key"))?;
            tx.commit().await.map_err(db_error("update a key"))?;
            Ok(done.rows_affected() > 0)
        })
    }
}
