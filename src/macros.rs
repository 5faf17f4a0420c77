//! Small macros shared by the middleware.

/// `get_ref`, `get_mut` and `into_inner` for a service with an `inner` field.
macro_rules! inner_accessors {
    () => {
        /// A reference to the inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// A mutable reference to the inner service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// The inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use inner_accessors;

/// Defines a module's `ResponseFuture`: a named type around a boxed future, so that
/// the box can be replaced by a hand-written future later without a breaking change
/// (tower-http's `opaque_future!` does the same).
macro_rules! boxed_response_future {
    ($(#[$doc:meta])*) => {
        $(#[$doc])*
        pub struct ResponseFuture<E = std::convert::Infallible> {
            inner: std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<http::Response<crate::Body>, E>> + Send>,
            >,
        }

        impl<E> ResponseFuture<E> {
            pub(crate) fn new<F>(future: F) -> Self
            where
                F: std::future::Future<Output = Result<http::Response<crate::Body>, E>> + Send + 'static,
            {
                ResponseFuture { inner: Box::pin(future) }
            }
        }

        impl<E> std::future::Future for ResponseFuture<E> {
            type Output = Result<http::Response<crate::Body>, E>;

            fn poll(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.inner.as_mut().poll(cx)
            }
        }

        impl<E> std::fmt::Debug for ResponseFuture<E> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ResponseFuture").finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use boxed_response_future;
