//! The SQLite ledger: the embedded default, one file, zero setup.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::SqlitePool;

use super::sql::{chunks, end_kind, insert_sql, int, LedgerError};
use super::writer::{Inserted, Store, Writer};
use super::UsageRecord;
use crate::BoxError;

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
        exact INTEGER NOT NULL,
        PRIMARY KEY (time_ms, id)
    ) WITHOUT ROWID",
    // Keyed on (time, id), not on id alone: request ids are random, and a b-tree
    // keyed on them takes every insert to a random page of a tree bigger than the
    // cache (a read and a page write per row once the table is large). Time first,
    // every insert lands at the right edge; replays (same time, same id) stay no-ops,
    // and the key serves time ranges and keyset pagination. WITHOUT ROWID: the rows
    // live in that one b-tree, where a rowid table needs a second one for the key.
    // Superseded (files made before the two below had it).
    "DROP INDEX IF EXISTS usage_records_time",
    // Partial: a record without a key or a team (an open gateway's) costs no entry in
    // these; `key_id = ?` and `team = ?` filters still use them.
    "DROP INDEX IF EXISTS usage_records_key",
    "DROP INDEX IF EXISTS usage_records_team",
    "CREATE INDEX IF NOT EXISTS usage_records_by_key ON usage_records (key_id, time_ms) WHERE key_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS usage_records_by_team ON usage_records (team, time_ms) WHERE team IS NOT NULL",
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

/// Files made before `usage_records` was keyed on `(time_ms, id)` have a rowid table:
/// this index keeps their replays no-ops.
const ROWID_TABLE_KEY: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS usage_records_time_id ON usage_records (time_ms, id)";

impl SqliteLedger {
    /// Opens (or creates) the ledger file and starts its writer on the current tokio
    /// runtime.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteLedger, LedgerError> {
        let path = path.as_ref();
        let pool = crate::db::open_sqlite(path, "usage ledger", SCHEMA)
            .await
            .map_err(LedgerError)?;
        let rowid_table: bool = sqlx::query_scalar(
            "SELECT sql NOT LIKE '%WITHOUT ROWID%' FROM sqlite_master \
             WHERE type = 'table' AND name = 'usage_records'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| LedgerError(format!("cannot read the usage ledger's schema: {e}")))?;
        if rowid_table {
            sqlx::query(ROWID_TABLE_KEY)
                .execute(&pool)
                .await
                .map_err(|e| LedgerError(format!("cannot migrate the usage ledger: {e}")))?;
        }
        let mut spool = PathBuf::from(path).into_os_string();
        spool.push(".spool");
        let writer = Writer::spawn(SqliteStore::open(path)?, spool.into(), QUEUE);
        Ok(SqliteLedger { pool, writer })
    }
}

super::sql::sql_ledger!(ledger = SqliteLedger);

mod queries {
    super::super::sql::sql_queries!(db = sqlx::Sqlite);
}

/// The writer's connection: its own (sharing the pool, batches went to its connections
/// in turn and each found its page cache stale, reading index pages back from the file
/// on nearly every batch), and rusqlite's rather than sqlx's: sqlx's binding and
/// clearing of each value cost more than SQLite's insert of the row.
#[derive(Clone)]
struct SqliteStore(Arc<Mutex<rusqlite::Connection>>);

impl SqliteStore {
    fn open(path: &Path) -> Result<SqliteStore, LedgerError> {
        let fail = |e: rusqlite::Error| {
            LedgerError(format!(
                "cannot open the usage ledger at {} for writing: {e}; check that the file is writable (TOLLGATE_DB)",
                path.display()
            ))
        };
        let conn = rusqlite::Connection::open(path).map_err(fail)?;
        // As the pool's connections (`db::open_sqlite`); WAL is the file's own setting.
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        Ok(SqliteStore(Arc::new(Mutex::new(conn))))
    }
}

impl Store for SqliteStore {
    fn insert(&self, batch: Vec<UsageRecord>) -> Pin<Box<dyn Future<Output = Inserted> + Send>> {
        let conn = self.0.clone();
        Box::pin(async move {
            let count = batch.len();
            // SQLite blocks: off the runtime's threads.
            tokio::task::spawn_blocking(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    insert(&conn, &batch)
                }))
                .unwrap_or_else(|_| Err("the usage ledger's insert panicked".into()));
                (batch, result)
            })
            .await
            .unwrap_or_else(|_| {
                // Only when the runtime shuts down before the write started.
                tracing::error!(
                    records = count,
                    "usage records lost: the runtime stopped before they were written"
                );
                (Vec::new(), Err("the runtime stopped".into()))
            })
        })
    }
}

/// Writes `batch` in one transaction, as multi-row statements of a few fixed sizes
/// (see `sql::chunks`): one statement per record cost a third more per row (SQLite runs
/// the statement's set-up for each).
fn insert(conn: &Mutex<rusqlite::Connection>, batch: &[UsageRecord]) -> Result<(), BoxError> {
    let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    let tx = conn.transaction()?;
    // The statement of one chunk size is kept for the next chunk of that size (a full
    // batch is eight 64-row chunks): each return to rusqlite's cache clears all of its
    // bindings, 1,280 for 64 rows.
    let mut current: Option<(usize, rusqlite::CachedStatement<'_>)> = None;
    for chunk in chunks(batch) {
        if current.as_ref().map(|(rows, _)| *rows) != Some(chunk.len()) {
            current = Some((chunk.len(), tx.prepare_cached(insert_sql(chunk.len()))?));
        }
        let (_, insert) = current.as_mut().expect("prepared above");
        let mut at = 0;
        let mut bind = |value: &dyn rusqlite::ToSql| {
            at += 1;
            insert.raw_bind_parameter(at, value)
        };
        for r in chunk {
            bind(&r.id)?;
            bind(&r.time_ms)?;
            bind(&r.key_id)?;
            bind(&r.team)?;
            bind(&r.requested_model)?;
            bind(&r.provider)?;
            bind(&r.model)?;
            bind(&r.attempts)?;
            bind(&int(r.prompt_tokens))?;
            bind(&int(r.completion_tokens))?;
            bind(&int(r.cached_tokens))?;
            bind(&int(r.cache_write_tokens))?;
            bind(&r.cost.nanos())?;
            bind(&r.priced)?;
            bind(&int(r.latency_us))?;
            bind(&r.ttfb_us.map(int))?;
            bind(&r.status)?;
            bind(&end_kind(r.end))?;
            bind(&r.cache_hit)?;
            bind(&r.exact)?;
        }
        insert.raw_execute()?;
    }
    drop(current);
    tx.commit()?;
    Ok(())
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

    /// A batch cut into chunks of several sizes, some repeated (64, 64, 64, 8, 2, 1),
    /// reusing the statement of a size: every record lands once, with its own values.
    #[tokio::test]
    async fn a_large_batch_lands_whole() {
        let path = db_path("chunks");
        drop(SqliteLedger::open(&path).await.unwrap()); // the schema
        let store = SqliteStore::open(&path).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let batch: Vec<UsageRecord> = (0..203).map(|i| record(i, "m", 1, i as i64)).collect();
        insert(&store.0, &batch).unwrap();
        let (count, sum): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(DISTINCT id), SUM(cost_nanos) FROM usage_records",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((count, sum), (203, (0..203).sum::<i64>()));
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

    /// A file made by an earlier version (a rowid table, full indexes) opens, keeps its
    /// records, gets the partial indexes, and replays into it stay no-ops.
    #[tokio::test]
    async fn a_file_with_the_earlier_schema_is_migrated() {
        let path = db_path("legacy");
        {
            let old = crate::db::open_sqlite(&path, "usage ledger", &[])
                .await
                .unwrap();
            // Today's table as a rowid table, as it was made before.
            let (columns, _key) = SCHEMA[0].split_once(",\n        PRIMARY KEY").unwrap();
            let create = format!("{columns})");
            for sql in [
                create.as_str(),
                "CREATE INDEX usage_records_key ON usage_records (key_id, time_ms)",
                "CREATE INDEX usage_records_team ON usage_records (team, time_ms)",
            ] {
                sqlx::query(sql).execute(&old).await.unwrap();
            }
            old.close().await;
        }
        let ledger = SqliteLedger::open(&path).await.unwrap();
        ledger.record(record(1, "a", 0, 5));
        ledger.record(record(1, "a", 0, 5));
        ledger.flush().await;
        ledger.record(record(1, "a", 0, 5)); // a replay in a later batch
        ledger.flush().await;
        assert_eq!(ledger.records().await.unwrap().len(), 1);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_records' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&ledger.pool)
        .await
        .unwrap();
        assert_eq!(
            indexes,
            [
                "usage_records_by_key",
                "usage_records_by_team",
                "usage_records_time_id"
            ]
        );
    }

    /// A new file keeps each record in one b-tree, and the key and team filters of the
    /// usage queries still use their (partial) indexes.
    #[tokio::test]
    async fn new_files_key_rows_on_time_and_filters_use_the_partial_indexes() {
        let ledger = SqliteLedger::open(db_path("plans")).await.unwrap();
        let table: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'usage_records'",
        )
        .fetch_one(&ledger.pool)
        .await
        .unwrap();
        assert!(table.contains("WITHOUT ROWID"), "{table}");
        for (filter, index) in [
            ("key_id = 'k'", "usage_records_by_key"),
            ("team = 't'", "usage_records_by_team"),
        ] {
            let plan: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT detail FROM (EXPLAIN QUERY PLAN SELECT COUNT(*) FROM usage_records \
                 WHERE {filter} AND time_ms >= 0)"
            ))
            .fetch_all(&ledger.pool)
            .await
            .unwrap_or_default();
            let plan = if plan.is_empty() {
                // Not every SQLite takes EXPLAIN in a subquery: read the rows directly.
                sqlx::query(&format!(
                    "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM usage_records WHERE {filter} AND time_ms >= 0"
                ))
                .fetch_all(&ledger.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
                .collect()
            } else {
                plan
            };
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{filter}: {plan:?}"
            );
        }
    }
}
