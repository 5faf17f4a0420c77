//! [`PostgresKeyStore`]: keys in PostgreSQL, shared by a fleet of gateways.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{
    bind_columns, insert_sql, read_columns, update_sql, Columns, KeyStore, KeyStoreError,
    StoreFuture, COLUMNS,
};
use crate::auth::{KeyHash, KeyRecord};

/// Serialises the schema statements of replicas starting at the same time.
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

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
        rpm BIGINT,
        tpm BIGINT,
        max_parallel BIGINT,
        budget_amount TEXT,
        budget_period TEXT,
        metadata TEXT NOT NULL,
        expires_at BIGINT,
        enabled BOOLEAN NOT NULL,
        revoked_at BIGINT,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS auth_keys_team ON auth_keys (team)",
    "CREATE TABLE IF NOT EXISTS auth_teams (
        name TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL
    )",
];

/// Keys in PostgreSQL, for several gateway replicas. Tables are created on connect
/// (under an advisory lock, so replicas may start together).
///
/// Each replica caches lookups for a short time (see [`Keys`](crate::auth::Keys)): a
/// key revoked through any replica stops working on every replica within that bound.
#[derive(Debug, Clone)]
pub struct PostgresKeyStore {
    pool: PgPool,
}

impl PostgresKeyStore {
    /// Connects (`postgres://user:password@host/db`) and creates the tables. Fails
    /// within 5 s when the server does not answer.
    pub async fn connect(url: &str) -> Result<PostgresKeyStore, KeyStoreError> {
        // The URL can hold a password: never put it in an error.
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            KeyStoreError::new(format!(
                "cannot {what} the PostgreSQL key store: {e} (check TOLLGATE_DATABASE_URL)"
            ))
        };
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| fail("connect to", &redact(&e.to_string(), url)))?;
        let mut tx = pool.begin().await.map_err(|e| fail("migrate", &e))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| fail("migrate", &e))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| fail("migrate", &e))?;
        }
        tx.commit().await.map_err(|e| fail("migrate", &e))?;
        Ok(PostgresKeyStore { pool })
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// Removes the URL (and so its password) from a message.
fn redact(message: &str, url: &str) -> String {
    if url.is_empty() {
        message.to_owned()
    } else {
        message.replace(url, "<TOLLGATE_DATABASE_URL>")
    }
}

fn db_error(what: &str) -> impl Fn(sqlx::Error) -> KeyStoreError + '_ {
    move |e| KeyStoreError::new(format!("key store (PostgreSQL): cannot {what}: {e}"))
}

const TEAM_SQL: &str =
    "INSERT INTO auth_teams (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

impl KeyStore for PostgresKeyStore {
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db_error("insert a key"))?;
            if let Some(team) = &record.team {
                sqlx::query(TEAM_SQL)
                    .bind(team)
                    .bind(crate::auth::record::unix_millis(record.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("insert a team"))?;
            }
            let sql = insert_sql(true);
            bind_columns!(sqlx::query(&sql), Columns::encode(record))
                .execute(&mut *tx)
                .await
                .map_err(db_error("insert a key"))?;
            tx.commit().await.map_err(db_error("insert a key"))
        })
    }

    fn find_by_hash<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            let sql = format!("SELECT {COLUMNS} FROM auth_keys WHERE hash = $1");
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
            let sql = format!("SELECT {COLUMNS} FROM auth_keys WHERE id = $1");
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
                sqlx::query(TEAM_SQL)
                    .bind(team)
                    .bind(crate::auth::record::unix_millis(
                        std::time::SystemTime::now(),
                    ))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("insert a team"))?;
            }
            let sql = update_sql(true);
            let done = bind_columns!(sqlx::query(&sql), Columns::encode(record))
                .execute(&mut *tx)
                .await
                .map_err(db_error("update a key"))?;
            tx.commit().await.map_err(db_error("update a key"))?;
            Ok(done.rows_affected() > 0)
        })
    }
}
