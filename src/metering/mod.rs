//! Metering: the cost of every response, written to a usage ledger.
//!
//! [`MeteringLayer`] reads the [`Outcome`](crate::outcome::Outcome) of each LLM response
//! and, when it resolves, writes one [`UsageRecord`]: request id, time, key and team,
//! requested and used model, provider, attempts, prompt / completion / cached tokens,
//! cost, latency, time to first byte, status, how the response ended, cache hit, and
//! whether the counts are exact. The write happens off the request path: the
//! [`Ledger`] queues it.
//!
//! - **Prices** come from a [`PriceTable`]: the shipped table (`data/prices.json`:
//!   common OpenAI, Anthropic, Gemini, DeepSeek models, and the mock's), extendable and
//!   overridable. Costs are integer nano-dollars ([`Money`]), rounded half up once per
//!   record; cached input and cache writes have their own rates. A model without a price
//!   follows [`UnknownPrice`]: zero cost marked `priced: false` with a warning (the
//!   default), or a 400 before the call.
//! - **Streams and disconnects**: a stream is metered from the usage its provider
//!   reported; when the client leaves mid-stream, or the provider never sent usage, the
//!   record holds the usage seen so far, completion tokens are estimated at one per four
//!   characters of streamed text, and `exact` is false.
//! - **Ledgers**: [`MemoryLedger`] for tests, [`SqliteLedger`] (feature `sqlite`) as the
//!   embedded default. Database ledgers batch writes in a background task, spool to a
//!   local file when the database is down or their queue is full, replay it later
//!   (idempotently: records carry ids), and count each case ([`LedgerStats`]).
//! - **Balances and budgets** ([`Accounts`], with [`MeteringLayer::accounts`]): per key
//!   or team ([`Payer`]), decided before the call. A prepaid balance reserves the worst
//!   case and settles the real cost; a budget resets each UTC day, week or month and
//!   sends [`BudgetEvent`]s at its soft threshold. Both refuse with 429
//!   `insufficient_quota`.
//!
//! ```
//! use tollgate::metering::{MemoryLedger, MeteringLayer};
//! use tollgate::testing::MockProvider;
//! use tollgate::Body;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), tollgate::BoxError> {
//! let ledger = MemoryLedger::new();
//! let svc = ServiceBuilder::new()
//!     .layer(MeteringLayer::new(ledger.clone()))
//!     .service(MockProvider::new());
//!
//! let body = r#"{"model":"mock/echo","messages":[{"role":"user","content":"hello there"}]}"#;
//! let req = Request::post("/v1/chat/completions").body(Body::from(body))?;
//! let res = svc.oneshot(req).await?;
//! res.into_body().collect().await?; // the record is written when the body ends
//!
//! let record = &ledger.records()[0];
//! assert_eq!(record.requested_model, "mock/echo");
//! assert!(record.exact && record.cost.nanos() > 0);
//! # Ok(()) }
//! ```
//!
//! Where it goes: after authentication (to know the key) and before the cache (so a
//! cache hit is metered as such, at no upstream cost).

mod account;
mod layer;
mod ledger;
mod money;
mod price;
mod record;
#[cfg(feature = "redis")]
mod shared;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod source;

pub use account::{
    Account, AccountStoreError, Accounts, Budget, BudgetEvent, BudgetStatus, Clock, Hold, Period,
    Refusal,
};
#[cfg(all(feature = "admin", any(feature = "sqlite", feature = "postgres")))]
pub(crate) use layer::key_budget;
pub use layer::{Metering, MeteringLayer, Payer, ResponseFuture, UnknownPrice};
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub use ledger::DatabaseLedger;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use ledger::PostgresLedger;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use ledger::SqliteLedger;
pub use ledger::{GroupBy, Ledger, MemoryLedger, RecentQuery, UsageQuery, UsageRow};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use ledger::{LedgerError, LedgerStats};
pub use money::{InvalidMoney, Money};
pub use price::{Price, PriceTable, PriceTableError};
pub use record::UsageRecord;
#[cfg(feature = "redis")]
pub use shared::{RedisAccounts, RedisAccountsBuilder};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use source::{BalanceStore, UsageSource};
