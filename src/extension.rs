//! Per-request facts shared by several layers, carried as typed extensions.

use std::net::SocketAddr;
use std::sync::Arc;

/// The address of the client that opened the connection, in the request extensions.
///
/// The server inserts it (the example gateway does, from axum's `ConnectInfo`); layers
/// that need the client address read it from here, so none of them depends on a web
/// framework. `RateLimitLayer` keys on it when the request carries no other identity.
/// Behind a trusted proxy, insert the address the proxy reports instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

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

/// Upstream attempts that were started and then cancelled because another attempt for
/// the same request answered first (fail-over's hedging), in the response extensions.
///
/// A provider may bill the input of a request it was processing when it was cancelled,
/// so `MeteringLayer` writes one record for each, with the input estimate and no
/// output, marked estimated (`exact = false`) and ended `client_gone`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CancelledAttempts(pub Vec<ServedBy>);
