//! [`Reservation`]: what the rate limiter reserved, for the layers after it.

use smallvec::SmallVec;

use super::store::Grant;
use super::Scope;

// Built in `future.rs` when a grant is admitted.

/// What [`RateLimit`](super::RateLimit) reserved for an admitted request, written into
/// the request's extensions before the inner service is called, so later layers
/// (metering, routing, logging) can read it.
///
/// A request that no scope limits, or that is refused, carries none.
///
/// ```
/// use http::Request;
/// use tollgate::ratelimit::Reservation;
///
/// /// The output tokens a later layer may still count on.
/// fn output_reserve<B>(req: &Request<B>) -> Option<u64> {
///     let r = req.extensions().get::<Reservation>()?;
///     Some(r.tokens() - r.input_tokens())
/// }
/// # assert_eq!(output_reserve(&Request::new(())), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    scopes: SmallVec<[Scope; 4]>,
    tokens: u64,
    input_tokens: u64,
    concurrency: bool,
    counted: bool,
}

impl Reservation {
    pub(crate) fn of(grant: &Grant) -> Self {
        let plan = &grant.plan;
        Reservation {
            scopes: plan.scopes.iter().map(|(s, _)| s.clone()).collect(),
            tokens: plan.tokens,
            input_tokens: plan.input,
            concurrency: grant.backed && plan.scopes.iter().any(|(_, l)| l.parallel().is_some()),
            counted: grant.backed,
        }
    }

    /// Every scope the request counts against, in order: the identity scopes (key,
    /// team or client address), then the model, then the gateway.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Tokens reserved: the input estimate plus the output reserve (0 when no scope
    /// limits tokens). Settled with the real usage when the response ends.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The part of [`tokens`](Self::tokens) that estimates the input.
    pub fn input_tokens(&self) -> u64 {
        self.input_tokens
    }

    /// Whether a concurrency slot was taken (some scope has `max_parallel`); it is
    /// released when the response's outcome resolves.
    pub fn concurrency(&self) -> bool {
        self.concurrency
    }

    /// Whether the store counted the request: false when a shared store that was
    /// unreachable admitted it under the fail-open policy (nothing was reserved).
    pub fn counted(&self) -> bool {
        self.counted
    }
}
