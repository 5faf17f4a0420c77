//! [`UsageRecord`]: one row of the ledger per response.

use serde::{Deserialize, Serialize};

use super::Money;
use crate::outcome::End;

/// What the ledger keeps about one response. Written exactly once per request, when
/// its [`Outcome`](crate::outcome::Outcome) resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsageRecord {
    /// The request's `x-request-id` (or a generated id when it has none). Records are
    /// unique on ([`time_ms`](UsageRecord::time_ms), `id`): replaying a record is a
    /// no-op, while a client that sends its own id again (a retry) is metered again.
    pub id: String,
    /// When the request started, in milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// The client key, when authentication identified one.
    pub key_id: Option<String>,
    /// The client's team, when known.
    pub team: Option<String>,
    /// The model the client asked for.
    pub requested_model: String,
    /// The provider (target) that answered, when one did.
    pub provider: Option<String>,
    /// The model actually used (after aliases and renames).
    pub model: String,
    /// Upstream attempts made (more than one after a fail-over).
    pub attempts: u32,
    /// Input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Output tokens (estimated when [`exact`](UsageRecord::exact) is false).
    pub completion_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// What the response cost.
    pub cost: Money,
    /// False when no price was known for the model (the cost is then zero).
    pub priced: bool,
    /// From the start of the request to its end, in microseconds.
    pub latency_us: u64,
    /// From the start of the request to the first body byte, in microseconds.
    pub ttfb_us: Option<u64>,
    /// The response status.
    pub status: u16,
    /// How the response ended.
    pub end: End,
    /// Whether the gateway's response cache answered.
    pub cache_hit: bool,
    /// Whether the token counts came from the provider (false: estimated).
    pub exact: bool,
}
