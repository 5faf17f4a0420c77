//! The PostgreSQL ledger, for fleets: every replica writes to one database.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::sql::{end_kind, insert_sql, int, LedgerError};
use super::writer::{Inserted, Store, Writer};
use super::UsageRecord;

/// Records queued in memory before the ledger spools to disk.
const QUEUE: usize = 65_536;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS usage_records (
        id TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
        key_id TEXT,
        team TEXT,
        requested_model TEXT NOT NULL,
        provider TEXT,
        model TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cache_write_tokens BIGINT NOT NULL,
        cost_nanos BIGINT NOT NULL,
        priced BOOLEAN NOT NULL,
        latency_us BIGINT NOT NULL,
        ttfb_us BIGINT,
        status BIGINT NOT NULL,
        end_kind TEXT NOT NULL,
        cache_hit BOOLEAN NOT NULL,
        exact BOOLEAN NOT NULL
    )",
    // Unique on (time, id), not on id alone: request ids are random, and a unique
    // index on them alone takes every insert to a random page of a b-tree bigger
    // than the cache (a read and a page write per row once the table is large).
    // Time first, every index grows at its right edge; replays (same time, same
    // id) stay no-ops, and the index serves time ranges and keyset pagination.
    "CREATE UNIQUE INDEX IF NOT EXISTS usage_records_time_id ON usage_records (time_ms, id)",
    // Superseded by the one above (files made before it had both).
    "DROP INDEX IF EXISTS usage_records_time",
    "CREATE INDEX IF NOT EXISTS usage_records_key ON usage_records (key_id, time_ms)",
    "CREATE INDEX IF NOT EXISTS usage_records_team ON usage_records (team, time_ms)",
    "CREATE TABLE IF NOT EXISTS balance_credits (
        kind TEXT NOT NULL,
        account TEXT NOT NULL,
        amount_nanos BIGINT NOT NULL,
        time_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS balance_credits_account ON balance_credits (kind, account)",
];

/// Usage records in PostgreSQL, written in batches (multi-row inserts) by a background
/// task, like [`SqliteLedger`](super::SqliteLedger): a bounded queue, a local spool file
/// while the database is unreachable, idempotent replay (`ON CONFLICT (id) DO NOTHING`).
#[derive(Debug, Clone)]
pub struct PostgresLedger {
    pool: PgPool,
    writer: Writer,
}

#[derive(Debug, Clone)]
struct PgStore(PgPool);

impl PostgresLedger {
    /// Connects (`postgres://user:pass@host/db`), creates the table if needed, and starts
    /// the writer on the current tokio runtime. Records the database cannot take wait
    /// in `spool` (a local file) until it is back.
    pub async fn connect(
        url: &str,
        spool: impl Into<PathBuf>,
    ) -> Result<PostgresLedger, LedgerError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            LedgerError(format!(
                "cannot {what} the PostgreSQL usage ledger: {e}; check TOLLGATE_DATABASE_URL and that the server is up"
            ))
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            // A database that is down must not stall the writer: fail fast and spool.
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| fail("connect to", &e))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(|e| fail("migrate", &e))?;
        }
        let writer = Writer::spawn(PgStore(pool.clone()), spool.into(), QUEUE);
        Ok(PostgresLedger { pool, writer })
    }
}

super::sql::sql_ledger!(ledger = PostgresLedger);

impl Store for PgStore {
    fn insert(&self, batch: Vec<UsageRecord>) -> Pin<Box<dyn Future<Output = Inserted> + Send>> {
        let pool = self.0.clone();
        Box::pin(async move {
            let result = insert(&pool, &batch).await.map_err(Into::into);
            (batch, result)
        })
    }
}

/// Inserts a batch in one transaction, as multi-row statements of a few fixed
/// sizes (64, then 32, 16, ... 1 for the rest): the database prepares each size
/// once and the statement cache keeps it, where one statement per batch length
/// would be parsed and planned again for nearly every batch.
async fn insert(
    pool: &sqlx::Pool<sqlx::Postgres>,
    batch: &[UsageRecord],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for chunk in super::sql::chunks(batch) {
        insert_chunk(&mut tx, chunk).await?;
    }
    tx.commit().await
}

async fn insert_chunk(
    conn: &mut sqlx::PgConnection,
    batch: &[UsageRecord],
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(insert_sql(batch.len()));
    for r in batch {
        query = query
            .bind(r.id.clone())
            .bind(r.time_ms)
            .bind(r.key_id.clone())
            .bind(r.team.clone())
            .bind(r.requested_model.clone())
            .bind(r.provider.clone())
            .bind(r.model.clone())
            .bind(i64::from(r.attempts))
            .bind(int(r.prompt_tokens))
            .bind(int(r.completion_tokens))
            .bind(int(r.cached_tokens))
            .bind(int(r.cache_write_tokens))
            .bind(r.cost.nanos())
            .bind(r.priced)
            .bind(int(r.latency_us))
            .bind(r.ttfb_us.map(int))
            .bind(i64::from(r.status))
            .bind(end_kind(r.end))
            .bind(r.cache_hit)
            .bind(r.exact);
    }
    query.execute(conn).await?;
    Ok(())
}

mod queries {
    super::super::sql::sql_queries!(db = sqlx::Postgres);
}
