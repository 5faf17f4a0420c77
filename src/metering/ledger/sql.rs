//! What the SQL ledgers share: columns, end kinds, and the queries, written once for
//! every sqlx database by [`sql_queries!`].

use crate::outcome::End;

/// The columns of `usage_records`, in insert order.
pub(super) const COLUMNS: &str =
    "id, time_ms, key_id, team, requested_model, provider, model, attempts, \
     prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cost_nanos, priced, \
     latency_us, ttfb_us, status, end_kind, cache_hit, exact";

pub(super) fn end_kind(end: End) -> &'static str {
    match end {
        End::Complete => "complete",
        End::UpstreamError => "upstream_error",
        End::ClientGone => "client_gone",
    }
}

pub(super) fn parse_end(kind: &str) -> End {
    match kind {
        "complete" => End::Complete,
        "upstream_error" => End::UpstreamError,
        _ => End::ClientGone,
    }
}

/// How an account is stored: `("key", id)` or `("team", name)`.
pub(super) fn account_parts(account: &crate::metering::Account) -> (&'static str, String) {
    match account {
        crate::metering::Account::Key(id) => ("key", id.clone()),
        crate::metering::Account::Team(team) => ("team", team.clone()),
    }
}

pub(super) fn account_from(kind: &str, name: String) -> Option<crate::metering::Account> {
    match kind {
        "key" => Some(crate::metering::Account::Key(name)),
        "team" => Some(crate::metering::Account::Team(name)),
        _ => None,
    }
}

/// `YYYY-MM-DD` of a day count since the epoch (UTC).
pub(super) fn day_name(days: i64) -> String {
    let (y, m, d) = crate::metering::account::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:00` of an hour count since the epoch (UTC).
pub(super) fn hour_name(hours: i64) -> String {
    format!(
        "{}T{:02}:00",
        day_name(hours.div_euclid(24)),
        hours.rem_euclid(24)
    )
}

/// `batch` as slices of 64 records, then one each of 32, 16, 8, 4, 2 and 1 as the
/// remainder needs: at most seven statement shapes, whatever the batch length.
pub(super) fn chunks<T>(mut batch: &[T]) -> impl Iterator<Item = &[T]> {
    let mut size = 64;
    std::iter::from_fn(move || {
        while size > batch.len() && size > 1 {
            size /= 2;
        }
        if batch.is_empty() {
            return None;
        }
        let (chunk, rest) = batch.split_at(size.min(batch.len()));
        batch = rest;
        Some(chunk)
    })
}

/// The insert of `rows` records (a power of two up to 64, as [`chunks`] cuts batches),
/// written once per size, for SQLite and PostgreSQL alike: numbered placeholders
/// (`$1`, `$2`, ...) and `ON CONFLICT DO NOTHING` (a replayed record is a no-op) read
/// the same in both. Formatting the placeholders of every batch cost more than binding
/// its values.
pub(super) fn insert_sql(rows: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 7] = [const { std::sync::OnceLock::new() }; 7];
    assert!(
        rows.is_power_of_two() && rows <= 64,
        "chunks of 1, 2, 4, ... 64 rows"
    );
    SQL[rows.trailing_zeros() as usize].get_or_init(|| {
        let columns = COLUMNS.split(',').count();
        let values: Vec<String> = (0..rows)
            .map(|row| {
                let placeholders: Vec<String> = (1..=columns)
                    .map(|column| format!("${}", row * columns + column))
                    .collect();
                format!("({})", placeholders.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO usage_records ({COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        )
    })
}

pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Defines `usage`, `recent`, `records`, `save_credit` and `balances` for one sqlx
/// database. (Each ledger writes its records its own way.)
macro_rules! sql_queries {
    (db = $db:ty) => {
        use sqlx::{QueryBuilder, Row};

        use crate::metering::ledger::sql::{day_name, hour_name, parse_end, COLUMNS};
        use crate::metering::ledger::{GroupBy, RecentQuery, UsageQuery, UsageRow};
        use crate::metering::{Money, UsageRecord};

        pub(super) async fn usage(
            pool: &sqlx::Pool<$db>,
            query: &UsageQuery,
        ) -> Result<Vec<UsageRow>, sqlx::Error> {
            // Time buckets are integers (hours or days since the epoch), named in Rust:
            // formatting a date per row in SQL costs more than the sums themselves.
            let group = match query.group_by {
                GroupBy::None => "CAST('all' AS TEXT)",
                GroupBy::Hour => "time_ms / 3600000",
                GroupBy::Day => "time_ms / 86400000",
                GroupBy::Model => "model",
                GroupBy::Key => "COALESCE(key_id, '-')",
                GroupBy::Team => "COALESCE(team, '-')",
            };
            let mut sql = QueryBuilder::<$db>::new(format!(
                "SELECT {group} AS grp, COUNT(*) AS requests, \
                 CAST(SUM(prompt_tokens) AS BIGINT) AS prompt, \
                 CAST(SUM(completion_tokens) AS BIGINT) AS completion, \
                 CAST(SUM(cached_tokens) AS BIGINT) AS cached, \
                 CAST(SUM(cost_nanos) AS BIGINT) AS cost, \
                 CAST(SUM(CASE WHEN status >= 400 OR end_kind = 'upstream_error' THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
                 CAST(SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS BIGINT) AS cache_hits \
                 FROM usage_records WHERE 1 = 1"
            ));
            push_filters(&mut sql, query);
            if query.group_by != GroupBy::None {
                sql.push(" GROUP BY grp ORDER BY grp");
            }
            let rows = sql.build().fetch_all(pool).await?;
            Ok(rows
                .iter()
                .filter(|row| row.get::<i64, _>("requests") > 0)
                .map(|row| {
                    let sum = |name: &str| row.get::<Option<i64>, _>(name).unwrap_or(0);
                    let group = match query.group_by {
                        GroupBy::Hour => hour_name(row.get::<i64, _>("grp")),
                        GroupBy::Day => day_name(row.get::<i64, _>("grp")),
                        _ => row.get("grp"),
                    };
                    UsageRow {
                        group,
                        requests: row.get::<i64, _>("requests") as u64,
                        prompt_tokens: sum("prompt") as u64,
                        completion_tokens: sum("completion") as u64,
                        cached_tokens: sum("cached") as u64,
                        cost: Money::from_nanos(sum("cost")),
                        errors: sum("errors") as u64,
                        cache_hits: sum("cache_hits") as u64,
                    }
                })
                .collect())
        }

        /// Stores a credit (negative: a debit) of a prepaid balance.
        pub(super) async fn save_credit(
            pool: &sqlx::Pool<$db>,
            account: &crate::metering::Account,
            amount: Money,
            time_ms: i64,
        ) -> Result<(), sqlx::Error> {
            let (kind, name) = crate::metering::ledger::sql::account_parts(account);
            sqlx::query(
                "INSERT INTO balance_credits (kind, account, amount_nanos, time_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(kind)
            .bind(name)
            .bind(amount.nanos())
            .bind(time_ms)
            .execute(pool)
            .await?;
            Ok(())
        }

        /// Every prepaid balance: its credits minus the cost of the account's records
        /// since its first credit.
        pub(super) async fn balances(
            pool: &sqlx::Pool<$db>,
        ) -> Result<Vec<(crate::metering::Account, Money)>, sqlx::Error> {
            let rows = sqlx::query(
                "SELECT c.kind AS kind, c.account AS account, c.credited AS credited, \
                 CAST(COALESCE((SELECT SUM(u.cost_nanos) FROM usage_records u \
                    WHERE u.time_ms >= c.first_ms AND \
                    ((c.kind = 'key' AND u.key_id = c.account) OR (c.kind = 'team' AND u.team = c.account))), 0) AS BIGINT) AS spent \
                 FROM (SELECT kind, account, CAST(SUM(amount_nanos) AS BIGINT) AS credited, MIN(time_ms) AS first_ms \
                       FROM balance_credits GROUP BY kind, account) c",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let account = crate::metering::ledger::sql::account_from(row.get("kind"), row.get("account"))?;
                    let balance = row.get::<i64, _>("credited").saturating_sub(row.get::<i64, _>("spent"));
                    Some((account, Money::from_nanos(balance)))
                })
                .collect())
        }

        /// The `WHERE` conditions of a query's filters (after `WHERE 1 = 1`).
        fn push_filters(sql: &mut QueryBuilder<'_, $db>, query: &UsageQuery) {
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
        }

        pub(super) async fn records(
            pool: &sqlx::Pool<$db>,
        ) -> Result<Vec<UsageRecord>, sqlx::Error> {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM usage_records ORDER BY time_ms, id"
            ))
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(record_from_row).collect())
        }

        /// A page of records, newest first, by keyset pagination on `(time_ms, id)`
        /// so a deep page costs what the first one does.
        pub(super) async fn recent(
            pool: &sqlx::Pool<$db>,
            query: &RecentQuery,
        ) -> Result<Vec<UsageRecord>, sqlx::Error> {
            let mut sql = QueryBuilder::<$db>::new(format!(
                "SELECT {COLUMNS} FROM usage_records WHERE 1 = 1"
            ));
            push_filters(&mut sql, &query.filter);
            if let Some((time_ms, id)) = &query.before {
                sql.push(" AND (time_ms < ")
                    .push_bind(*time_ms)
                    .push(" OR (time_ms = ")
                    .push_bind(*time_ms)
                    .push(" AND id < ")
                    .push_bind(id.clone())
                    .push("))");
            }
            sql.push(" ORDER BY time_ms DESC, id DESC LIMIT ")
                .push_bind(i64::from(query.limit.clamp(1, RecentQuery::MAX_LIMIT)));
            let rows = sql.build().fetch_all(pool).await?;
            Ok(rows.iter().map(record_from_row).collect())
        }

        fn record_from_row(row: &<$db as sqlx::Database>::Row) -> UsageRecord {
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
                priced: row.get("priced"),
                latency_us: n("latency_us"),
                ttfb_us: row.get::<Option<i64>, _>("ttfb_us").map(|v| v as u64),
                status: n("status") as u16,
                end: parse_end(row.get::<&str, _>("end_kind")),
                cache_hit: row.get("cache_hit"),
                exact: row.get("exact"),
            }
        }
    };
}

pub(super) use sql_queries;

/// The methods and trait impls every SQL ledger shares, for a ledger struct with `pool`
/// and `writer` fields. Expects a `queries` module made by [`sql_queries!`] in scope.
macro_rules! sql_ledger {
    (ledger = $ledger:ident) => {
        impl $ledger {
            /// Waits until every record taken so far is written (or spooled, if the
            /// database fails), and replays spooled records.
            pub async fn flush(&self) {
                self.writer.flush().await
            }

            /// Records written, spooled and replayed since the ledger opened.
            pub fn stats(&self) -> crate::metering::LedgerStats {
                self.writer.stats()
            }

            /// Stores a credit (negative: a debit) of a prepaid balance; apply it to the
            /// in-memory [`Accounts`](crate::metering::Accounts) after this succeeds.
            pub async fn save_credit(
                &self,
                account: &crate::metering::Account,
                amount: crate::metering::Money,
            ) -> Result<(), LedgerError> {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                queries::save_credit(&self.pool, account, amount, now)
                    .await
                    .map_err(|e| LedgerError(format!("saving a balance credit failed: {e}")))
            }

            /// Every prepaid balance, rebuilt from the stored credits and the records
            /// since: load them into [`Accounts`](crate::metering::Accounts) at start
            /// (after a [`flush`](Self::flush), so spooled records count).
            pub async fn balances(
                &self,
            ) -> Result<Vec<(crate::metering::Account, crate::metering::Money)>, LedgerError> {
                queries::balances(&self.pool)
                    .await
                    .map_err(|e| LedgerError(format!("reading balances failed: {e}")))
            }

            /// Aggregates usage in the database.
            pub async fn usage(
                &self,
                query: &crate::metering::UsageQuery,
            ) -> Result<Vec<crate::metering::UsageRow>, LedgerError> {
                queries::usage(&self.pool, query)
                    .await
                    .map_err(|e| LedgerError(format!("usage query failed: {e}")))
            }

            /// A page of records, newest first (the admin API's `GET /admin/requests`).
            pub async fn recent(
                &self,
                query: &crate::metering::RecentQuery,
            ) -> Result<Vec<crate::metering::UsageRecord>, LedgerError> {
                queries::recent(&self.pool, query)
                    .await
                    .map_err(|e| LedgerError(format!("reading recent records failed: {e}")))
            }

            /// Every record, oldest first (for tests and exports; use
            /// [`usage`](Self::usage) for reports).
            pub async fn records(&self) -> Result<Vec<crate::metering::UsageRecord>, LedgerError> {
                queries::records(&self.pool)
                    .await
                    .map_err(|e| LedgerError(format!("reading records failed: {e}")))
            }
        }

        impl crate::metering::Ledger for $ledger {
            fn record(&self, record: crate::metering::UsageRecord) {
                self.writer.record(record)
            }
        }

        impl crate::metering::UsageSource for $ledger {
            fn usage<'a>(
                &'a self,
                query: &'a crate::metering::UsageQuery,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<
                            Output = Result<Vec<crate::metering::UsageRow>, LedgerError>,
                        > + Send
                        + 'a,
                >,
            > {
                Box::pin($ledger::usage(self, query))
            }

            fn recent<'a>(
                &'a self,
                query: &'a crate::metering::RecentQuery,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<
                            Output = Result<Vec<crate::metering::UsageRecord>, LedgerError>,
                        > + Send
                        + 'a,
                >,
            > {
                Box::pin($ledger::recent(self, query))
            }
        }

        impl crate::metering::BalanceStore for $ledger {
            fn save_credit<'a>(
                &'a self,
                account: &'a crate::metering::Account,
                amount: crate::metering::Money,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), LedgerError>> + Send + 'a>,
            > {
                Box::pin($ledger::save_credit(self, account, amount))
            }
        }
    };
}

pub(super) use sql_ledger;

#[cfg(test)]
mod tests {
    #[test]
    fn batches_split_into_a_few_fixed_sizes() {
        let sizes = |n: usize| -> Vec<usize> {
            let batch: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = super::chunks(&batch).collect();
            assert_eq!(chunks.concat(), batch, "every record once, in order");
            chunks.iter().map(|c| c.len()).collect()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(64), [64]);
        assert_eq!(sizes(100), [64, 32, 4]);
        assert_eq!(sizes(512), [64; 8]);
        assert_eq!(sizes(127), [64, 32, 16, 8, 4, 2, 1]);
    }
}

/// An error opening or querying a ledger database.
#[derive(Debug)]
pub struct LedgerError(pub(super) String);

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LedgerError {}
