//! The SQLite ledger: the embedded default, one file, zero setup.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqlitePool;

use super::sql::LedgerError;
use super::writer::Writer;

/// Records queued in memory before the ledger spools to disk.
const QUEUE: usize = 65_536;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS usage_records (
        id TEXT NOT NULL,
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
        amount_nanos INTEGER NOT NULL,
        time_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS balance_credits_account ON balance_credits (kind, account)",
];

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
        let pool = crate::db::open_sqlite(path, "usage ledger", SCHEMA)
            .await
            .map_err(LedgerError)?;
        let mut spool = PathBuf::from(path).into_os_string();
        spool.push(".spool");
        // The writer has a connection of its own. Sharing the pool, its batches went to
        // the pool's connections in turn, and each found its page cache stale (another
        // connection had written since): SQLite read the index pages back from the
        // file on nearly every batch.
        let writes = crate::db::open_sqlite_pool(path, "usage ledger", &[], 1)
            .await
            .map_err(LedgerError)?;
        let writer = Writer::spawn(SqliteStore(writes), spool.into(), QUEUE);
        Ok(SqliteLedger { pool, writer })
    }
}

super::sql::sql_ledger!(ledger = SqliteLedger, store = SqliteStore);

mod queries {
    super::super::sql::sql_queries!(
        db = sqlx::Sqlite,
        insert = "INSERT OR IGNORE INTO",
        on_conflict = ""
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::ledger::{GroupBy, Ledger, UsageQuery};
    use crate::metering::Money;
    use crate::metering::UsageRecord;
    use crate::outcome::End;

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
