//! The per-request script: `x-mock-*` request headers parsed into one value.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// The default number of content chunks in a stream (`x-mock-chunks`).
pub(crate) const DEFAULT_CHUNKS: usize = 8;

/// The most content chunks a stream may be split into.
const MAX_CHUNKS: u64 = 10_000;

/// The longest scripted delay, in milliseconds (one hour).
const MAX_DELAY_MS: u64 = 3_600_000;

/// What the request asked the mock to do, from its `x-mock-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Script {
    /// `x-mock-latency-ms`: delay before the response head.
    pub(crate) latency: Duration,
    /// `x-mock-chunk-delay-ms`: delay before every stream event after the first.
    pub(crate) chunk_delay: Duration,
    /// `x-mock-chunks`: number of content chunks in a stream.
    pub(crate) chunks: usize,
    /// `x-mock-status`: answer with this error status instead.
    pub(crate) status: Option<StatusCode>,
    /// `x-mock-reset-after`: fail the body after this many content chunks.
    pub(crate) reset_after: Option<usize>,
    /// `x-mock-malformed`: answer garbage.
    pub(crate) malformed: bool,
    /// `x-mock-hold-last`: wait for [`release_held`](super::MockProvider::release_held)
    /// before the last content chunk.
    pub(crate) hold_last: bool,
    /// `x-mock-cached-tokens`: `usage.prompt_tokens_details.cached_tokens`.
    pub(crate) cached_tokens: u64,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: DEFAULT_CHUNKS,
            status: None,
            reset_after: None,
            malformed: false,
            hold_last: false,
            cached_tokens: 0,
        }
    }
}

/// An `x-mock-*` header with a value the mock does not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptError {
    pub(crate) header: &'static str,
    value: String,
    expected: &'static str,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Invalid value {:?} for header {}: expected {}.",
            self.value, self.header, self.expected
        )
    }
}

impl Script {
    /// Reads the script from the request headers; absent headers keep their defaults.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Script, ScriptError> {
        let mut script = Script::default();
        const MS: &str = "a number of milliseconds from 0 to 3600000";
        if let Some(ms) = int(headers, "x-mock-latency-ms", 0..=MAX_DELAY_MS, MS)? {
            script.latency = Duration::from_millis(ms);
        }
        if let Some(ms) = int(headers, "x-mock-chunk-delay-ms", 0..=MAX_DELAY_MS, MS)? {
            script.chunk_delay = Duration::from_millis(ms);
        }
        let chunks = "an integer from 1 to 10000";
        if let Some(n) = int(headers, "x-mock-chunks", 1..=MAX_CHUNKS, chunks)? {
            script.chunks = n as usize;
        }
        let status = "an HTTP error status from 400 to 599";
        if let Some(code) = int(headers, "x-mock-status", 400..=599, status)? {
            script.status = Some(StatusCode::from_u16(code as u16).expect("400..=599 is valid"));
        }
        let reset = "an integer from 0 to 10000";
        if let Some(k) = int(headers, "x-mock-reset-after", 0..=MAX_CHUNKS, reset)? {
            script.reset_after = Some(k as usize);
        }
        script.malformed = flag(headers, "x-mock-malformed")?;
        script.hold_last = flag(headers, "x-mock-hold-last")?;
        let tokens = "a non-negative integer";
        if let Some(n) = int(headers, "x-mock-cached-tokens", 0..=u64::MAX, tokens)? {
            script.cached_tokens = n;
        }
        Ok(script)
    }
}

/// The header's value as text, or an error naming the header.
fn text<'a>(
    headers: &'a HeaderMap,
    header: &'static str,
    expected: &'static str,
) -> Result<Option<&'a str>, ScriptError> {
    let Some(value) = headers.get(header) else {
        return Ok(None);
    };
    value
        .to_str()
        .map(|s| Some(s.trim()))
        .map_err(|_| ScriptError {
            header,
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            expected,
        })
}

/// An integer header within `range`; `expected` describes the range for the error.
fn int(
    headers: &HeaderMap,
    header: &'static str,
    range: RangeInclusive<u64>,
    expected: &'static str,
) -> Result<Option<u64>, ScriptError> {
    let Some(value) = text(headers, header, expected)? else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(ScriptError {
            header,
            value: value.to_owned(),
            expected,
        }),
    }
}

/// A boolean header: `true`/`false`, `1`/`0`, `yes`/`no`, any case.
fn flag(headers: &HeaderMap, header: &'static str) -> Result<bool, ScriptError> {
    const EXPECTED: &str = "true or false";
    let Some(value) = text(headers, header, EXPECTED)? else {
        return Ok(false);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ScriptError {
            header,
            value: value.to_owned(),
            expected: EXPECTED,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(pairs: &[(&'static str, &'static str)]) -> Result<Script, ScriptError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        Script::from_headers(&headers)
    }

    #[test]
    fn defaults_without_headers() {
        assert_eq!(parse(&[]).unwrap(), Script::default());
        assert_eq!(Script::default().chunks, 8);
    }

    #[test]
    fn every_header() {
        let script = parse(&[
            ("x-mock-latency-ms", "250"),
            ("x-mock-chunk-delay-ms", "5"),
            ("x-mock-chunks", "3"),
            ("x-mock-status", "429"),
            ("x-mock-reset-after", "2"),
            ("x-mock-malformed", "TRUE"),
            ("x-mock-hold-last", "1"),
            ("x-mock-cached-tokens", "42"),
        ])
        .unwrap();
        assert_eq!(
            script,
            Script {
                latency: Duration::from_millis(250),
                chunk_delay: Duration::from_millis(5),
                chunks: 3,
                status: Some(StatusCode::TOO_MANY_REQUESTS),
                reset_after: Some(2),
                malformed: true,
                hold_last: true,
                cached_tokens: 42,
            }
        );
    }

    #[test]
    fn bad_values_name_the_header() {
        let cases = [
            ("x-mock-latency-ms", "soon"),
            ("x-mock-chunk-delay-ms", "-1"),
            ("x-mock-chunks", "0"),
            ("x-mock-status", "200"),
            ("x-mock-status", "600"),
            ("x-mock-reset-after", "x"),
            ("x-mock-malformed", "maybe"),
            ("x-mock-hold-last", ""),
            ("x-mock-cached-tokens", "1.5"),
        ];
        for (header, value) in cases {
            let err = parse(&[(header, value)]).unwrap_err();
            assert_eq!(err.header, header);
            assert!(err.to_string().contains(header), "{err}");
        }
    }
}
