//! Rate-limit headers in the client's dialect, and the 429.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Response;

use super::store::{Denial, Dimension, Snapshot};
use crate::error::{ErrorKind, GatewayError};
use crate::{Body, Dialect};

/// Header names per dialect and dimension: limit, remaining, reset.
static OPENAI: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];
static ANTHROPIC: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
        HeaderName::from_static("anthropic-ratelimit-requests-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
    ],
];

/// Writes the snapshot as OpenAI `x-ratelimit-*` headers (also for Gemini, which has
/// none of its own) or Anthropic `anthropic-ratelimit-*` headers.
pub(crate) fn write(headers: &mut HeaderMap, dialect: Dialect, snapshot: &Snapshot) {
    let names = match dialect {
        Dialect::Anthropic => &ANTHROPIC,
        _ => &OPENAI,
    };
    let n = 3 * (usize::from(snapshot.requests.is_some()) + usize::from(snapshot.tokens.is_some()));
    headers.reserve(n); // one growth at most
    for (slot, (names, gauge)) in names
        .iter()
        .zip([snapshot.requests, snapshot.tokens])
        .enumerate()
    {
        let Some(g) = gauge else { continue };
        let reset = match dialect {
            Dialect::Anthropic => rfc3339(SystemTime::now() + g.reset),
            _ => go_duration(g.reset),
        };
        headers.insert(names[0].clone(), limit_value(slot, g.limit));
        headers.insert(names[1].clone(), number(g.remaining));
        headers.insert(names[2].clone(), reset);
    }
}

thread_local! {
    /// The last limit written per dimension and thread: a scope's limit is the same on
    /// every response, so its value is shared instead of formatted and allocated again.
    static LIMITS: RefCell<[(u64, Option<HeaderValue>); 2]> =
        const { RefCell::new([(0, None), (0, None)]) };
}

/// The header value of `limit` for dimension `slot` (0: requests, 1: tokens).
fn limit_value(slot: usize, limit: u64) -> HeaderValue {
    LIMITS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (cached, value) = &mut cache[slot];
        match value {
            Some(v) if *cached == limit => v.clone(),
            _ => {
                let v = number(limit);
                *cached = limit;
                *value = Some(v.clone());
                v
            }
        }
    })
}

/// The 429 for a refused request, in the client's dialect, with `retry-after` and
/// (unless they are off) the rate-limit headers.
pub(crate) fn too_many_requests(
    denial: &Denial,
    dialect: Dialect,
    headers: bool,
) -> Response<Body> {
    let retry = denial.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let what = match denial.dimension {
        Dimension::Requests(rate) => {
            format!("{} requests per {}", rate.amount(), human(rate.period()))
        }
        Dimension::Tokens(rate) => {
            format!("{} tokens per {}", rate.amount(), human(rate.period()))
        }
        Dimension::Parallel(n) => format!("{n} requests in flight at once"),
    };
    let message = format!(
        "Rate limit reached for {}: {what}. Retry after {retry} s.",
        denial.scope
    );
    let code = match denial.dimension {
        Dimension::Tokens(_) => "tokens",
        Dimension::Requests(_) => "requests",
        Dimension::Parallel(_) => "concurrency",
    };
    let err = GatewayError::new(ErrorKind::RateLimited, message)
        .with_retry_after(retry)
        .with_code(format!("rate_limit_exceeded_{code}"));
    let mut res = err.to_response(dialect);
    if headers {
        write(res.headers_mut(), dialect, &denial.snapshot);
    }
    res
}

/// 503 when the shared store is unreachable and the policy is to fail closed.
pub(crate) fn unavailable(dialect: Dialect) -> Response<Body> {
    GatewayError::new(
        ErrorKind::NoHealthyUpstream,
        "The rate-limit store is unavailable; retry shortly.",
    )
    .with_code("rate_limit_store_unavailable")
    .with_retry_after(1)
    .to_response(dialect)
}

fn human(period: Duration) -> String {
    match period.as_secs() {
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        1 => "second".into(),
        _ => go_duration(period).to_str().unwrap_or("period").to_owned(),
    }
}

/// OpenAI's reset format, Go's duration: `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
/// Written by hand into a stack buffer: it is on every limited response.
pub(crate) fn go_duration(d: Duration) -> HeaderValue {
    // u64 arithmetic: u128 division is a library call (584 million years of ms fit).
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut buf = Digits::default();
    if ms < 1000 {
        buf.number(ms);
        buf.push(b"ms");
    } else {
        let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        if h > 0 {
            buf.number(h);
            buf.push(b"h");
        }
        if h > 0 || m > 0 {
            buf.number(m);
            buf.push(b"m");
        }
        buf.number(rest / 1000);
        let frac = rest % 1000;
        if frac > 0 {
            // Three decimals without their trailing zeros: 500 -> ".5", 50 -> ".05".
            let (mut frac, mut width) = (frac, 3);
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            buf.push(b".");
            for _ in 0..width - digits(frac) {
                buf.push(b"0");
            }
            buf.number(frac);
        }
        buf.push(b"s");
    }
    HeaderValue::from_bytes(buf.as_bytes()).expect("ASCII digits and units")
}

/// The number of decimal digits of `n`.
fn digits(n: u64) -> usize {
    let mut n = n;
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

/// A small stack buffer for header values (a `u64` has at most 20 digits; a duration
/// in Go's format at most 20 + 1 + 2 + 1 + 2 + 1 + 4 + 1 bytes).
struct Digits {
    buf: [u8; 64],
    len: usize,
}

impl Default for Digits {
    fn default() -> Self {
        Digits {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Digits {
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn number(&mut self, n: u64) {
        self.push(itoa::Buffer::new().format(n).as_bytes());
    }

    /// `n` with leading zeros to `width` digits.
    fn padded(&mut self, n: u64, width: usize) {
        for _ in digits(n)..width {
            self.push(b"0");
        }
        self.number(n);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Anthropic's reset format: an RFC 3339 UTC timestamp, to the second.
pub(crate) fn rfc3339(at: SystemTime) -> HeaderValue {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days as i64);
    let mut buf = Digits::default();
    for (n, width, sep) in [
        (y.max(0) as u64, 4, b'-'),
        (mo.into(), 2, b'-'),
        (d.into(), 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem % 3600 / 60, 2, b':'),
        (rem % 60, 2, b'Z'),
    ] {
        buf.padded(n, width);
        buf.push(&[sep]);
    }
    HeaderValue::from_bytes(buf.as_bytes()).expect("ASCII digits")
}

/// A number as a header value, formatted on the stack: one allocation (the value's
/// own), where `HeaderValue::from(u64)` makes two.
fn number(n: u64) -> HeaderValue {
    let mut buf = Digits::default();
    buf.number(n);
    HeaderValue::from_bytes(buf.as_bytes()).expect("ASCII digits")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A gauge for tests.
#[cfg(test)]
pub(crate) fn gauge(limit: u64, remaining: u64, reset: Duration) -> super::gcra::Gauge {
    super::gcra::Gauge {
        limit,
        remaining,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            (Duration::from_millis(20), "20ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::ZERO, "0ms"),
            (Duration::from_millis(1050), "1.05s"),
            (Duration::from_millis(60_001), "1m0.001s"),
            (Duration::from_millis(3_600_000), "1h0m0s"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_secs(86_400 * 400), "9600h0m0s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text);
        }
    }

    #[test]
    fn rfc3339_dates() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn both_dialects() {
        let snap = Snapshot {
            requests: Some(gauge(60, 59, Duration::from_secs(1))),
            tokens: Some(gauge(1000, 10, Duration::from_millis(59_500))),
        };
        let mut h = HeaderMap::new();
        write(&mut h, Dialect::OpenAi, &snap);
        assert_eq!(h["x-ratelimit-limit-requests"], "60");
        assert_eq!(h["x-ratelimit-remaining-requests"], "59");
        assert_eq!(h["x-ratelimit-reset-requests"], "1s");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "10");
        assert_eq!(h["x-ratelimit-reset-tokens"], "59.5s");
        let mut h = HeaderMap::new();
        write(&mut h, Dialect::Anthropic, &snap);
        assert_eq!(h["anthropic-ratelimit-requests-limit"], "60");
        assert_eq!(h["anthropic-ratelimit-tokens-remaining"], "10");
        assert!(h["anthropic-ratelimit-tokens-reset"]
            .to_str()
            .unwrap()
            .ends_with('Z'));
        assert!(!h.contains_key("x-ratelimit-limit-requests"));
    }
}
