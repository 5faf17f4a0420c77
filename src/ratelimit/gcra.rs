//! GCRA on integer nanoseconds: the arithmetic shared by the stores (the Redis Lua
//! script does the same in microseconds).
//!
//! A bucket's state is its *theoretical arrival time* (TAT): the instant at which it
//! will be full again. Admitting a cost `c` moves it to `max(tat, now) + c·T`, where
//! `T = period / amount`, and is allowed while that stays within `now + period`: a
//! full bucket admits `amount` at once, then refills at a steady rate, so there is no
//! window edge to burst across.

use std::time::Duration;

use super::Rate;

/// What a bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) allowed: bool,
    /// The TAT to store if the request is admitted.
    pub(crate) new_tat: u64,
    /// The bucket seen by the client: after admission if allowed, as it is if not.
    pub(crate) gauge: Gauge,
    /// When refused: how long until the cost fits.
    pub(crate) retry_after: u64,
}

/// A limit as the rate-limit headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gauge {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Until the bucket is full again.
    pub(crate) reset: Duration,
}

impl Gauge {
    /// Keeps the tighter of two gauges: fewer remaining, else the later reset.
    pub(crate) fn tighter(a: Option<Gauge>, b: Gauge) -> Gauge {
        match a {
            Some(a) if (a.remaining, b.reset) <= (b.remaining, a.reset) => a,
            _ => b,
        }
    }
}

/// `cost` units of `rate` in nanoseconds (not clamped).
pub(crate) fn span(rate: Rate, cost: u64) -> u64 {
    mul_div(cost, rate.period_nanos(), rate.amount())
}

/// `a * b / c` rounded down, saturating at `u64::MAX`; in 64 bits when the product
/// fits (the usual case: a 128-bit division is several times slower).
fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product / c,
        None => u64::try_from(u128::from(a) * u128::from(b) / u128::from(c)).unwrap_or(u64::MAX),
    }
}

/// Checks a cost against a bucket. A cost above the whole bucket is clamped to it: such
/// a request waits for a full bucket instead of never passing (the settlement charges
/// what it really used).
pub(crate) fn check(tat: u64, now: u64, rate: Rate, cost: u64) -> Check {
    let period = rate.period_nanos();
    let base = tat.max(now);
    let new_tat = base.saturating_add(span(rate, cost.min(rate.amount())));
    let horizon = now.saturating_add(period);
    let allowed = new_tat <= horizon;
    let seen = if allowed { new_tat } else { base };
    let remaining = remaining(horizon.saturating_sub(seen), rate);
    Check {
        allowed,
        new_tat,
        gauge: Gauge {
            limit: rate.amount(),
            remaining,
            reset: Duration::from_nanos(seen - now),
        },
        retry_after: if allowed { 0 } else { new_tat - horizon },
    }
}

/// The units that fit in `room` nanoseconds of the bucket.
fn remaining(room: u64, rate: Rate) -> u64 {
    mul_div(room, rate.amount(), rate.period_nanos()).min(rate.amount())
}

/// Moves a TAT by a settled difference of `delta` units (negative: a refund).
pub(crate) fn adjust(tat: u64, now: u64, rate: Rate, delta: i64) -> u64 {
    let by = span(rate, delta.unsigned_abs());
    if delta >= 0 {
        tat.max(now).saturating_add(by)
    } else {
        tat.saturating_sub(by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn per_sec(n: u64) -> Rate {
        Rate::new(n, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn burst_then_steady_refill() {
        let rate = per_sec(3);
        let mut tat = 0;
        let now = 10 * SEC;
        for left in [2, 1, 0] {
            let c = check(tat, now, rate, 1);
            assert!(c.allowed);
            assert_eq!(c.gauge.remaining, left);
            tat = c.new_tat;
        }
        let refused = check(tat, now, rate, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.gauge.remaining, 0);
        assert_eq!(refused.retry_after, span(rate, 1) - 1);
        // One third of a second later exactly one more fits, not a new burst of three.
        let later = now + SEC / 3 + 1;
        assert!(check(tat, later, rate, 1).allowed);
        let c = check(tat, later, rate, 1);
        assert!(!check(c.new_tat, later, rate, 1).allowed);
    }

    #[test]
    fn oversized_cost_waits_for_a_full_bucket() {
        let rate = per_sec(100);
        let c = check(0, SEC, rate, 1_000);
        assert!(c.allowed, "clamped to the bucket");
        assert_eq!(c.gauge.remaining, 0);
        assert!(!check(c.new_tat, SEC, rate, 1).allowed);
    }

    #[test]
    fn mul_div_matches_128_bits() {
        let cases = [
            (0, 5, 3),
            (7, 11, 2),
            (u64::MAX, 2, 4),
            (1 << 40, 60 * SEC, 1 << 40),
            (1 << 50, 60 * SEC, 7),
            (u64::MAX, u64::MAX, 1),
        ];
        for (a, b, c) in cases {
            let wide = u128::from(a) * u128::from(b) / u128::from(c);
            assert_eq!(mul_div(a, b, c), u64::try_from(wide).unwrap_or(u64::MAX));
        }
    }

    #[test]
    fn adjust_refunds_and_charges() {
        let rate = per_sec(100);
        let now = 5 * SEC;
        let c = check(0, now, rate, 60);
        let refunded = adjust(c.new_tat, now, rate, -50);
        assert_eq!(check(refunded, now, rate, 1).gauge.remaining, 89);
        let charged = adjust(c.new_tat, now, rate, 100);
        assert!(!check(charged, now, rate, 1).allowed, "debt blocks");
        // A refund never makes more than a full bucket.
        let full = adjust(0, now, rate, -1_000);
        assert_eq!(check(full, now, rate, 1).gauge.remaining, 99);
    }
}
