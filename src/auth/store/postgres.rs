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

const TEAM_SQL: &str =
    "INSERT INTO auth_teams (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

super::sql_key_store!(
    store = PostgresKeyStore,
    engine = "PostgreSQL",
    numbered = true,
    param = "$1",
    team_sql = TEAM_SQL
);
