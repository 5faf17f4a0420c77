//! Which requests are cached, and the per-request controls.

use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::HeaderMap;

use crate::error::GatewayError;
use crate::request::LlmRequest;
use crate::Endpoint;

/// The request header that sets the time to live of the answer it stores, in seconds
/// (`0`: do not store it). Capped by [`CacheLayer::max_ttl`](super::CacheLayer::max_ttl).
pub const CACHE_TTL_HEADER: &str = "x-tollgate-cache-ttl";

/// The response header saying how the cache served the request: `hit`, `miss` or
/// `bypass`. Metering reads it: a `hit` costs nothing upstream.
pub const CACHE_STATUS_HEADER: &str = "x-tollgate-cache";

/// Which requests the cache serves and stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CachePolicy {
    /// Only requests whose answer is meant to be reproducible: `temperature` 0, or a
    /// fixed `seed`; embeddings always (they are deterministic). The default: caching a
    /// request sampled at temperature 1 would turn a random answer into a fixed one.
    #[default]
    Deterministic,
    /// Every request (still per-request `Cache-Control` and the key maker apply).
    Always,
    /// None: every request bypasses the cache.
    Never,
}

impl CachePolicy {
    /// Whether `llm` may be cached under this policy.
    pub fn allows(self, llm: &LlmRequest) -> bool {
        match self {
            CachePolicy::Never => false,
            CachePolicy::Always => true,
            CachePolicy::Deterministic => {
                let sampling = llm.sampling();
                llm.endpoint() == Endpoint::Embeddings
                    || sampling.temperature == Some(0.0)
                    || sampling.seed.is_some()
            }
        }
    }
}

impl std::str::FromStr for CachePolicy {
    type Err = String;

    /// `deterministic`, `always`, or `never` (also `off`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "deterministic" => Ok(CachePolicy::Deterministic),
            "always" | "on" => Ok(CachePolicy::Always),
            "never" | "off" => Ok(CachePolicy::Never),
            other => Err(format!(
                "`{other}` is not a cache policy (expected deterministic, always or never)"
            )),
        }
    }
}

/// What the request's own headers ask of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    /// `Cache-Control: no-store`: neither read nor write.
    pub(crate) no_store: bool,
    /// `Cache-Control: no-cache`: do not serve a stored answer; store the fresh one.
    pub(crate) no_cache: bool,
    /// `Cache-Control: only-if-cached`: a stored answer or a 504, never the upstream.
    pub(crate) only_if_cached: bool,
    /// `x-tollgate-cache-ttl`.
    pub(crate) ttl: Option<Duration>,
}

impl Directives {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Directives, GatewayError> {
        let mut directives = Directives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let name = directive.split('=').next().unwrap_or("").trim();
                if name.eq_ignore_ascii_case("no-store") {
                    directives.no_store = true;
                } else if name.eq_ignore_ascii_case("no-cache") {
                    directives.no_cache = true;
                } else if name.eq_ignore_ascii_case("only-if-cached") {
                    directives.only_if_cached = true;
                }
            }
        }
        if let Some(value) = headers.get(crate::header_names::X_TOLLGATE_CACHE_TTL) {
            let secs = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    GatewayError::invalid_request(format!(
                        "The `{CACHE_TTL_HEADER}` header must be a whole number of seconds."
                    ))
                    .with_param(CACHE_TTL_HEADER)
                })?;
            directives.ttl = Some(Duration::from_secs(secs));
        }
        Ok(directives)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn llm(body: &'static str, endpoint: Endpoint) -> LlmRequest {
        LlmRequest::parse(endpoint, Bytes::from_static(body.as_bytes())).unwrap()
    }

    #[test]
    fn deterministic_means_temperature_zero_or_a_seed() {
        let chat = |b| llm(b, Endpoint::ChatCompletions);
        let policy = CachePolicy::Deterministic;
        assert!(policy.allows(&chat(r#"{"model":"m","messages":[],"temperature":0}"#)));
        assert!(policy.allows(&chat(r#"{"model":"m","messages":[],"temperature":0.0}"#)));
        assert!(policy.allows(&chat(
            r#"{"model":"m","messages":[],"temperature":0.7,"seed":4}"#
        )));
        assert!(!policy.allows(&chat(r#"{"model":"m","messages":[]}"#)));
        assert!(!policy.allows(&chat(r#"{"model":"m","messages":[],"temperature":0.1}"#)));
        assert!(policy.allows(&llm(r#"{"model":"e","input":"x"}"#, Endpoint::Embeddings)));
        let sampled = chat(r#"{"model":"m","messages":[],"temperature":1}"#);
        assert!(CachePolicy::Always.allows(&sampled));
        assert!(!CachePolicy::Never.allows(&chat(r#"{"model":"m","messages":[],"temperature":0}"#)));
        assert_eq!("OFF".parse(), Ok(CachePolicy::Never));
        assert!("sometimes".parse::<CachePolicy>().is_err());
    }

    #[test]
    fn request_directives() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            Directives::from_headers(&headers).unwrap(),
            Directives::default()
        );
        headers.insert(CACHE_CONTROL, "max-age=0, No-Store".parse().unwrap());
        headers.append(CACHE_CONTROL, "no-cache".parse().unwrap());
        headers.insert(CACHE_TTL_HEADER, "60".parse().unwrap());
        let d = Directives::from_headers(&headers).unwrap();
        assert!(d.no_store && d.no_cache);
        assert_eq!(d.ttl, Some(Duration::from_secs(60)));
        headers.insert(CACHE_TTL_HEADER, "-1".parse().unwrap());
        let err = Directives::from_headers(&headers).unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
