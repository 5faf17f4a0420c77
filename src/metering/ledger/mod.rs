//! Where usage records go: the [`Ledger`] trait and its implementations.

#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod any;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod spool;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod writer;

use std::sync::Arc;

#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "sqlite", feature = "postgres"))))]
pub use any::DatabaseLedger;
pub use memory::MemoryLedger;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresLedger;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::LedgerError;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteLedger;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use writer::LedgerStats;

use super::UsageRecord;

/// Takes usage records. See the [module docs](crate::metering).
///
/// [`record`](Ledger::record) is called on the request path when a response ends, so it
/// must return at once: implementations queue the record and write it elsewhere. It
/// must never drop a record silently.
pub trait Ledger: Send + Sync + 'static {
    /// Takes one record.
    fn record(&self, record: UsageRecord);
}

impl<L: Ledger + ?Sized> Ledger for Arc<L> {
    fn record(&self, record: UsageRecord) {
        (**self).record(record)
    }
}

/// Rows of a usage query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct UsageRow {
    /// The group (a day `YYYY-MM-DD`, a model, a key or a team; `"all"` ungrouped).
    pub group: String,
    /// Number of requests.
    pub requests: u64,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Cached input tokens.
    pub cached_tokens: u64,
    /// Total cost.
    pub cost: super::Money,
    /// Requests that failed: an error status, or a stream the provider broke off.
    pub errors: u64,
    /// Requests the gateway's response cache answered.
    pub cache_hits: u64,
}

/// How a usage query groups its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupBy {
    /// One row for everything.
    #[default]
    None,
    /// One row per UTC hour (`YYYY-MM-DDTHH:00`).
    Hour,
    /// One row per UTC day.
    Day,
    /// One row per model used.
    Model,
    /// One row per client key.
    Key,
    /// One row per team.
    Team,
}

/// A usage query: filters and a grouping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageQuery {
    /// Only this client key.
    pub key_id: Option<String>,
    /// Only this team.
    pub team: Option<String>,
    /// Only this model (as used).
    pub model: Option<String>,
    /// From this time (ms since the epoch, inclusive).
    pub from_ms: Option<i64>,
    /// Until this time (ms since the epoch, exclusive).
    pub to_ms: Option<i64>,
    /// How rows are grouped.
    pub group_by: GroupBy,
}

impl UsageQuery {
    /// Everything, ungrouped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this client key.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// Only this team.
    pub fn team(mut self, team: impl Into<String>) -> Self {
        self.team = Some(team.into());
        self
    }

    /// Only this model (as used).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Only records in `[from_ms, to_ms)`, milliseconds since the Unix epoch.
    pub fn between(mut self, from_ms: Option<i64>, to_ms: Option<i64>) -> Self {
        self.from_ms = from_ms;
        self.to_ms = to_ms;
        self
    }

    /// Groups rows.
    pub fn group_by(mut self, group_by: GroupBy) -> Self {
        self.group_by = group_by;
        self
    }
}

/// A page of individual usage records, newest first: the filters of a [`UsageQuery`]
/// (its grouping is ignored), a page size and a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecentQuery {
    /// Which records.
    pub filter: UsageQuery,
    /// At most this many records (capped at [`RecentQuery::MAX_LIMIT`]).
    pub limit: u32,
    /// Only records strictly older than this `(time_ms, id)`: the last record of the
    /// previous page.
    pub before: Option<(i64, String)>,
}

impl RecentQuery {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;

    /// The newest `limit` records matching `filter`.
    pub fn new(filter: UsageQuery, limit: u32) -> Self {
        RecentQuery {
            filter,
            limit: limit.clamp(1, Self::MAX_LIMIT),
            before: None,
        }
    }

    /// Continues after the record at `(time_ms, id)`.
    pub fn before(mut self, time_ms: i64, id: impl Into<String>) -> Self {
        self.before = Some((time_ms, id.into()));
        self
    }
}
