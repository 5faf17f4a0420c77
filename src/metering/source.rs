//! [`UsageSource`]: a ledger that answers usage queries (for the admin API).

use std::future::Future;
use std::pin::Pin;

use super::{LedgerError, RecentQuery, UsageQuery, UsageRecord, UsageRow};

/// A ledger that aggregates usage in its database. Implemented by
/// [`SqliteLedger`](super::SqliteLedger) and `PostgresLedger`; the admin API's
/// `GET /admin/usage` reads through it.
pub trait UsageSource: Send + Sync + 'static {
    /// Rows for `query`, aggregated in the database.
    fn usage<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<UsageRow>, LedgerError>> + Send + 'a>>;

    /// A page of individual records, newest first.
    fn recent<'a>(
        &'a self,
        query: &'a RecentQuery,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<UsageRecord>, LedgerError>> + Send + 'a>>;
}

/// Where prepaid balance credits are kept, so balances survive restarts. Implemented by
/// the database ledgers; the admin API saves each credit through it before applying it.
pub trait BalanceStore: Send + Sync + 'static {
    /// Stores a credit (negative: a debit).
    fn save_credit<'a>(
        &'a self,
        account: &'a super::Account,
        amount: super::Money,
    ) -> Pin<Box<dyn Future<Output = Result<(), LedgerError>> + Send + 'a>>;
}
