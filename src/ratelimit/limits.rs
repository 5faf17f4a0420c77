//! [`Limits`]: what one scope may do.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `amount` units per `period`, with GCRA semantics: a full bucket admits a burst of
/// `amount`, then refills continuously at `amount / period` (never twice the amount
/// across a window edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    amount: u64,
    period: Duration,
}

impl Rate {
    /// `amount` per `period`. `None` when either is zero.
    pub fn new(amount: u64, period: Duration) -> Option<Rate> {
        (amount > 0 && !period.is_zero()).then_some(Rate { amount, period })
    }

    /// The burst size and the amount that refills per period.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The period over which `amount` refills.
    pub fn period(&self) -> Duration {
        self.period
    }

    pub(crate) fn period_nanos(&self) -> u64 {
        u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The limits of one scope (a key, a team, a model, the whole gateway, a client IP).
///
/// Each dimension is optional; an unset one is not limited. The request and token
/// rates each have a *short* window (usually per minute) and a *long* one (usually per
/// day); both must admit a request.
///
/// ```
/// use std::time::Duration;
/// use tollgate::ratelimit::Limits;
///
/// let limits = Limits::new()
///     .requests_per_minute(60)
///     .tokens_per_minute(40_000)
///     .tokens_per_day(1_000_000)
///     .max_parallel(4);
/// assert_eq!(limits, "rpm=60,tpm=40000,tpd=1000000,max_parallel=4".parse().unwrap());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    pub(crate) requests: [Option<Rate>; 2],
    pub(crate) tokens: [Option<Rate>; 2],
    pub(crate) max_parallel: Option<u32>,
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

impl Limits {
    /// No limit at all.
    pub const fn new() -> Self {
        Limits {
            requests: [None, None],
            tokens: [None, None],
            max_parallel: None,
        }
    }

    /// Requests per minute (the short request window). 0 removes it.
    pub fn requests_per_minute(self, n: u64) -> Self {
        self.requests_per(n, MINUTE)
    }

    /// Requests per day (the long request window). 0 removes it.
    pub fn requests_per_day(mut self, n: u64) -> Self {
        self.requests[1] = Rate::new(n, DAY);
        self
    }

    /// Requests per any `period` (sets the short request window). 0 removes it.
    pub fn requests_per(mut self, n: u64, period: Duration) -> Self {
        self.requests[0] = Rate::new(n, period);
        self
    }

    /// Tokens (input + output) per minute (the short token window). 0 removes it.
    pub fn tokens_per_minute(self, n: u64) -> Self {
        self.tokens_per(n, MINUTE)
    }

    /// Tokens per day (the long token window). 0 removes it.
    pub fn tokens_per_day(mut self, n: u64) -> Self {
        self.tokens[1] = Rate::new(n, DAY);
        self
    }

    /// Tokens per any `period` (sets the short token window). 0 removes it.
    pub fn tokens_per(mut self, n: u64, period: Duration) -> Self {
        self.tokens[0] = Rate::new(n, period);
        self
    }

    /// Requests in flight at once. 0 removes it.
    pub fn max_parallel(mut self, n: u32) -> Self {
        self.max_parallel = (n > 0).then_some(n);
        self
    }

    /// Whether no dimension is limited.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::new()
    }

    /// Whether a token window is set (the request's tokens must be estimated).
    pub fn limits_tokens(&self) -> bool {
        self.tokens.iter().any(Option::is_some)
    }

    /// The request windows that are set.
    pub fn request_rates(&self) -> impl Iterator<Item = Rate> + '_ {
        self.requests.iter().flatten().copied()
    }

    /// The token windows that are set.
    pub fn token_rates(&self) -> impl Iterator<Item = Rate> + '_ {
        self.tokens.iter().flatten().copied()
    }

    /// The concurrency limit, if set.
    pub fn parallel(&self) -> Option<u32> {
        self.max_parallel
    }
}

/// A [`Limits`] string that does not parse; the message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimitsError(String);

impl fmt::Display for ParseLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::error::Error for ParseLimitsError {}

/// Parses `name=value` pairs separated by commas: `rpm`, `rpd`, `tpm`, `tpd`,
/// `max_parallel` (the admin API's field names). An empty string is no limit.
impl FromStr for Limits {
    type Err = ParseLimitsError;

    fn from_str(s: &str) -> Result<Limits, ParseLimitsError> {
        let mut limits = Limits::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                ParseLimitsError(format!("`{part}`: expected name=value (e.g. rpm=60)"))
            })?;
            let (name, value) = (name.trim(), value.trim());
            let n: u64 = value.parse().map_err(|_| {
                ParseLimitsError(format!("`{name}`: `{value}` is not a whole number"))
            })?;
            limits =
                match name {
                    "rpm" => limits.requests_per_minute(n),
                    "rpd" => limits.requests_per_day(n),
                    "tpm" => limits.tokens_per_minute(n),
                    "tpd" => limits.tokens_per_day(n),
                    "max_parallel" => limits.max_parallel(u32::try_from(n).map_err(|_| {
                        ParseLimitsError(format!("`max_parallel`: {n} is too large"))
                    })?),
                    other => {
                        return Err(ParseLimitsError(format!(
                            "unknown limit `{other}` (expected rpm, rpd, tpm, tpd or max_parallel)"
                        )))
                    }
                };
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let l: Limits = " rpm=60, tpd=5 ,max_parallel=2".parse().unwrap();
        assert_eq!(
            l,
            Limits::new()
                .requests_per_minute(60)
                .tokens_per_day(5)
                .max_parallel(2)
        );
        assert!("".parse::<Limits>().unwrap().is_unlimited());
        let err = "rpm=x".parse::<Limits>().unwrap_err().to_string();
        assert!(err.contains("rpm"), "{err}");
        let err = "rps=1".parse::<Limits>().unwrap_err().to_string();
        assert!(err.contains("rps"), "{err}");
        assert!("rpm".parse::<Limits>().is_err());
    }
}
