//! The SQLite ledger: the embedded default, one file, zero setup.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::writer::{Store, Writer};
use super::{GroupBy, Ledger, LedgerStats, UsageQuery, UsageRecord, UsageRow};
use crate::metering::Money;
use crate::outcome::End;
use crate::BoxError;

/// Records queued in memory before the ledger spools to disk.
const QUEUE: usize = 65_536;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS usage_records (
        id TEXT PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        key_id TEXT,
        team TEXT,
        requested_model TEXT NOT NULL,
        provider TEXT,
        model TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        priced INTEGER NOT NULL,
        latency_us INTEGER NOT NULL,
        ttfb_us INTEGER,
        status INTEGER NOT NULL,
        end_kind TEXT NOT NULL,
        cache_hit INTEGER NOT NULL,
        exact INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS usage_records_time ON usage_records (time_ms)",
    "CREATE INDEX IF NOT EXISTS usage_records_key ON usage_records (key_id, time_ms)",
    "CREATE INDEX IF NOT EXISTS usage_records_team ON usage_records (team, time_ms)",
];

/// An error opening or querying a ledger database.
#[derive(Debug)]
pub struct LedgerError(String);

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LedgerError {}

/// Usage records in a SQLite file (WAL mode), written in batches by a background task.
///
/// Records wait in a bounded queue; when it is full, or when a write fails, they are
/// spooled to `<file>.spool` and written back later ([`stats`](SqliteLedger::stats)
/// counts each case). Call [`flush`](SqliteLedger::flush) before shutting down.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    writer: Writer,
}

#[derive(Debug, Clone)]
struct SqliteStore(SqlitePool);

impl SqliteLedger {
    /// Opens (or creates) the ledger file and starts its writer on the current tokio
    /// runtime.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteLedger, LedgerError> {
        let path = path.as_ref();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            LedgerError(format!(
                "cannot {what} the usage ledger at {}: {e}; check that the directory exists and is writable (TOLLGATE_DB)",
                path.display()
            ))
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
            .connect_with(options)
            .await
            .map_err(|e| fail("open", &e))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(|e| fail("migrate", &e))?;
        }
        let mut spool = PathBuf::from(path).into_os_string();
        spool.push(".spool");
        let writer = Writer::spawn(SqliteStore(pool.clone()), spool.into(), QUEUE);
        Ok(SqliteLedger { pool, writer })
    }

    /// Waits until every record taken so far is written (or spooled, if the database
    /// fails), and replays spooled records.
    pub async fn flush(&self) {
        self.writer.flush().await
    }

    /// Records written, spooled and replayed since the ledger opened.
    pub fn stats(&self) -> LedgerStats {
        self.writer.stats()
    }

    /// Aggregates usage in the database.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        let group = match query.group_by {
            GroupBy::None => "'all'",
            GroupBy::Day => "strftime('%Y-%m-%d', time_ms / 1000, 'unixepoch')",
            GroupBy::Model => "model",
            GroupBy::Key => "COALESCE(key_id, '-')",
            GroupBy::Team => "COALESCE(team, '-')",
        };
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {group} AS grp, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt, \
             SUM(completion_tokens) AS completion, SUM(cached_tokens) AS cached, \
             SUM(cost_nanos) AS cost FROM usage_records WHERE 1 = 1"
        ));
        if let Some(key) = &query.key_id {
            sql.push(" AND key_id = ").push_bind(key.clone());
        }
        if let Some(team) = &query.team {
            sql.push(" AND team = ").push_bind(team.clone());
        }
        if let Some(model) = &query.model {
            sql.push(" AND model = ").push_bind(model.clone());
        }
        if let Some(from) = query.from_ms {
            sql.push(" AND time_ms >= ").push_bind(from);
        }
        if let Some(to) = query.to_ms {
            sql.push(" AND time_ms < ").push_bind(to);
        }
        sql.push(" GROUP BY grp ORDER BY grp");
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| LedgerError(format!("usage query failed: {e}")))?;
        Ok(rows
            .iter()
            .filter(|row| row.get::<i64, _>("requests") > 0)
            .map(|row| UsageRow {
                group: row.get("grp"),
                requests: row.get::<i64, _>("requests") as u64,
                prompt_tokens: row.get::<Option<i64>, _>("prompt").unwrap_or(0) as u64,
                completion_tokens: row.get::<Option<i64>, _>("completion").unwrap_or(0) as u64,
                cached_tokens: row.get::<Option<i64>, _>("cached").unwrap_or(0) as u64,
                cost: Money::from_nanos(row.get::<Option<i64>, _>("cost").unwrap_or(0)),
            })
            .collect())
    }

    /// Every record, oldest first (for tests and exports; use [`usage`](SqliteLedger::usage)
    /// for reports).
    pub async fn records(&self) -> Result<Vec<UsageRecord>, LedgerError> {
        let rows = sqlx::query("SELECT * FROM usage_records ORDER BY time_ms, id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| LedgerError(format!("reading records failed: {e}")))?;
        Ok(rows.iter().map(from_row).collect())
    }
}

impl Ledger for SqliteLedger {
    fn record(&self, record: UsageRecord) {
        self.writer.record(record)
    }
}

fn end_kind(end: End) -> &'static str {
    match end {
        End::Complete => "complete",
        End::UpstreamError => "upstream_error",
        End::ClientGone => "client_gone",
    }
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> UsageRecord {
    let n = |name: &str| row.get::<i64, _>(name) as u64;
    UsageRecord {
        id: row.get("id"),
        time_ms: row.get("time_ms"),
        key_id: row.get("key_id"),
        team: row.get("team"),
        requested_model: row.get("requested_model"),
        provider: row.get("provider"),
        model: row.get("model"),
        attempts: n("attempts") as u32,
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
        cached_tokens: n("cached_tokens"),
        cache_write_tokens: n("cache_write_tokens"),
        cost: Money::from_nanos(row.get("cost_nanos")),
        priced: row.get::<i64, _>("priced") != 0,
        latency_us: n("latency_us"),
        ttfb_us: row.get::<Option<i64>, _>("ttfb_us").map(|v| v as u64),
        status: n("status") as u16,
        end: match row.get::<&str, _>("end_kind") {
            "complete" => End::Complete,
            "upstream_error" => End::UpstreamError,
            _ => End::ClientGone,
        },
        cache_hit: row.get::<i64, _>("cache_hit") != 0,
        exact: row.get::<i64, _>("exact") != 0,
    }
}

impl Store for SqliteStore {
    fn insert<'a>(
        &'a self,
        batch: &'a [UsageRecord],
    ) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>> {
        Box::pin(async move {
            let mut sql = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO usage_records (id, time_ms, key_id, team, requested_model, provider, \
                 model, attempts, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, \
                 cost_nanos, priced, latency_us, ttfb_us, status, end_kind, cache_hit, exact) ",
            );
            let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sql.push_values(batch, |mut row, r| {
                row.push_bind(r.id.clone())
                    .push_bind(r.time_ms)
                    .push_bind(r.key_id.clone())
                    .push_bind(r.team.clone())
                    .push_bind(r.requested_model.clone())
                    .push_bind(r.provider.clone())
                    .push_bind(r.model.clone())
                    .push_bind(i64::from(r.attempts))
                    .push_bind(int(r.prompt_tokens))
                    .push_bind(int(r.completion_tokens))
                    .push_bind(int(r.cached_tokens))
                    .push_bind(int(r.cache_write_tokens))
                    .push_bind(r.cost.nanos())
                    .push_bind(r.priced)
                    .push_bind(int(r.latency_us))
                    .push_bind(r.ttfb_us.map(int))
                    .push_bind(i64::from(r.status))
                    .push_bind(end_kind(r.end))
                    .push_bind(r.cache_hit)
                    .push_bind(r.exact);
            });
            sql.build().execute(&self.0).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tollgate-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("ledger.db")
    }

    fn record(id: usize, model: &str, day: i64, cost: i64) -> UsageRecord {
        let mut r = crate::metering::ledger::writer::tests::record(id);
        r.model = model.into();
        r.time_ms = day * 86_400_000 + 1_000;
        r.cost = Money::from_nanos(cost);
        r.key_id = Some(format!("key-{}", id % 2));
        r
    }

    #[tokio::test]
    async fn writes_queries_and_ignores_duplicates() {
        let ledger = SqliteLedger::open(db_path("query")).await.unwrap();
        for i in 0..10 {
            ledger.record(record(
                i,
                if i < 6 { "a" } else { "b" },
                (i % 3) as i64,
                100,
            ));
        }
        ledger.record(record(3, "a", 0, 100)); // a replayed duplicate
        ledger.flush().await;
        assert_eq!(ledger.records().await.unwrap().len(), 10);
        let by_model = ledger
            .usage(&UsageQuery {
                group_by: GroupBy::Model,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            by_model
                .iter()
                .map(|r| (r.group.as_str(), r.requests))
                .collect::<Vec<_>>(),
            [("a", 6), ("b", 4)]
        );
        assert_eq!(by_model[0].cost, Money::from_nanos(600));
        let by_day = ledger
            .usage(&UsageQuery {
                group_by: GroupBy::Day,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_day[0].group, "1970-01-01");
        assert_eq!(by_day.len(), 3);
        let key0 = ledger
            .usage(&UsageQuery {
                key_id: Some("key-0".into()),
                from_ms: Some(86_400_000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(key0[0].requests, 3, "ids 2, 4, 8 are key-0 on days 1 and 2");
        let back = ledger.records().await.unwrap();
        assert_eq!(back[0].end, End::Complete);
    }

    #[tokio::test]
    async fn records_survive_reopening_the_file() {
        let path = db_path("reopen");
        let ledger = SqliteLedger::open(&path).await.unwrap();
        ledger.record(record(1, "a", 0, 5));
        ledger.flush().await;
        drop(ledger);
        let again = SqliteLedger::open(&path).await.unwrap();
        assert_eq!(again.records().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unwritable_location_is_a_clear_error() {
        let err = SqliteLedger::open("/proc/definitely/not/here.db")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_DB"), "{err}");
    }
}
