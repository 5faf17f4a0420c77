//! Header names the layers read or write on every request, as constants: `from_static`
//! validates its argument when called at run time, and a `&str` lookup parses the name
//! again each time.
// `HeaderName` constants are the documented way to name headers without a parse; each
// use is a copy, never a shared cell.
#![allow(clippy::declare_interior_mutable_const)]
// Each feature uses some of them.
#![allow(dead_code)]

use http::HeaderName;

/// `x-request-id`.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The cache's verdict on an answer (`hit`, `miss`, `bypass`).
pub(crate) const X_TOLLGATE_CACHE: HeaderName = HeaderName::from_static("x-tollgate-cache");
/// A client's time to live for the cached answer, in seconds.
pub(crate) const X_TOLLGATE_CACHE_TTL: HeaderName = HeaderName::from_static("x-tollgate-cache-ttl");
/// The channel that served the answer.
pub(crate) const X_TOLLGATE_TARGET: HeaderName = HeaderName::from_static("x-tollgate-target");
/// How many channels fail-over tried.
pub(crate) const X_TOLLGATE_ATTEMPTS: HeaderName = HeaderName::from_static("x-tollgate-attempts");
/// Anthropic's (and many clients') API key header.
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
