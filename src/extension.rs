//! Per-request facts that travel in request or response extensions and are read by
//! more than one module.

use std::sync::Arc;

/// Which provider answered, written into the response extensions by
/// [`Upstream`](crate::upstream::Upstream) (and by fail-over, which counts attempts).
/// Metering reads it to record the provider and the model actually used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServedBy {
    /// The target's name.
    pub provider: Arc<str>,
    /// The model name sent to the provider, when it differs from the requested one.
    pub model: Option<Arc<str>>,
    /// Upstream attempts made for this response.
    pub attempts: u32,
}

impl ServedBy {
    /// One attempt at `provider`.
    pub fn new(provider: impl Into<Arc<str>>, model: Option<Arc<str>>) -> Self {
        ServedBy {
            provider: provider.into(),
            model,
            attempts: 1,
        }
    }
}
