//! [`RoutingLayer`]: configuration only.

use tower_layer::Layer;

use super::{Router, Routing};

/// Resolves each request's model into [`Candidates`](super::Candidates). See the
/// [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct RoutingLayer {
    router: Router,
}

impl RoutingLayer {
    /// Routes with `router`.
    pub fn new(router: Router) -> Self {
        RoutingLayer { router }
    }

    /// The router, to enable or disable channels and read their health.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

impl<S> Layer<S> for RoutingLayer {
    type Service = Routing<S>;

    fn layer(&self, inner: S) -> Routing<S> {
        Routing::new(inner, self.router.clone())
    }
}
