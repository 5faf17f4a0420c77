//! [`DatabaseLedger`]: the SQLite or the PostgreSQL ledger, chosen at run time.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use super::{LedgerError, LedgerStats, PostgresLedger, SqliteLedger};
use crate::metering::{Account, Money, RecentQuery, UsageQuery, UsageRecord, UsageRow};

/// The SQLite ledger (one file, the embedded default) or the PostgreSQL one (a fleet's
/// shared database), picked by [`open`](DatabaseLedger::open) from a setting. It
/// forwards every method and trait to the one it holds.
#[derive(Debug, Clone)]
pub enum DatabaseLedger {
    /// One SQLite file.
    Sqlite(SqliteLedger),
    /// A PostgreSQL database.
    Postgres(PostgresLedger),
}

macro_rules! both {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            DatabaseLedger::Sqlite($l) => $e,
            DatabaseLedger::Postgres($l) => $e,
        }
    };
}

impl DatabaseLedger {
    /// PostgreSQL when `database_url` is a `postgres://` or `postgresql://` URL (records
    /// it cannot take wait in `<sqlite_path>.pg-spool`), else the SQLite file at
    /// `sqlite_path`.
    pub async fn open(
        database_url: Option<&str>,
        sqlite_path: &Path,
    ) -> Result<DatabaseLedger, LedgerError> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let mut spool = sqlite_path.as_os_str().to_owned();
                spool.push(".pg-spool");
                Ok(DatabaseLedger::Postgres(
                    PostgresLedger::connect(url, spool).await?,
                ))
            }
            Some(_) => Err(LedgerError(
                "the database URL must start with postgres:// or postgresql://".into(),
            )),
            None => Ok(DatabaseLedger::Sqlite(
                SqliteLedger::open(sqlite_path).await?,
            )),
        }
    }

    /// `"SQLite"` or `"PostgreSQL"`, for logs.
    pub fn engine(&self) -> &'static str {
        match self {
            DatabaseLedger::Sqlite(_) => "SQLite",
            DatabaseLedger::Postgres(_) => "PostgreSQL",
        }
    }

    /// See [`SqliteLedger::flush`].
    pub async fn flush(&self) {
        both!(self, l => l.flush().await)
    }

    /// See [`SqliteLedger::stats`].
    pub fn stats(&self) -> LedgerStats {
        both!(self, l => l.stats())
    }

    /// See [`SqliteLedger::balances`].
    pub async fn balances(&self) -> Result<Vec<(Account, Money)>, LedgerError> {
        both!(self, l => l.balances().await)
    }

    /// See [`SqliteLedger::usage`].
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        both!(self, l => l.usage(query).await)
    }

    /// See [`SqliteLedger::recent`].
    pub async fn recent(&self, query: &RecentQuery) -> Result<Vec<UsageRecord>, LedgerError> {
        both!(self, l => l.recent(query).await)
    }

    /// See [`SqliteLedger::records`].
    pub async fn records(&self) -> Result<Vec<UsageRecord>, LedgerError> {
        both!(self, l => l.records().await)
    }

    /// See [`SqliteLedger::save_credit`].
    pub async fn save_credit(&self, account: &Account, amount: Money) -> Result<(), LedgerError> {
        both!(self, l => l.save_credit(account, amount).await)
    }
}

impl super::Ledger for DatabaseLedger {
    fn record(&self, record: UsageRecord) {
        both!(self, l => l.record(record))
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

impl crate::metering::UsageSource for DatabaseLedger {
    fn usage<'a>(&'a self, query: &'a UsageQuery) -> Boxed<'a, Vec<UsageRow>> {
        Box::pin(DatabaseLedger::usage(self, query))
    }

    fn recent<'a>(&'a self, query: &'a RecentQuery) -> Boxed<'a, Vec<UsageRecord>> {
        Box::pin(DatabaseLedger::recent(self, query))
    }
}

impl crate::metering::BalanceStore for DatabaseLedger {
    fn save_credit<'a>(&'a self, account: &'a Account, amount: Money) -> Boxed<'a, ()> {
        Box::pin(DatabaseLedger::save_credit(self, account, amount))
    }
}
