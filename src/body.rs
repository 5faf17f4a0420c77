//! The crate-wide body type.
//!
//! Every layer that has to replace a body (the parse-once request, gateway-made error
//! responses, the observing response body) produces a [`Body`], so layers compose in
//! any order without stacking generic wrappers. [`Body::new`] does not box a value that
//! already is a [`Body`], like `axum::body::Body::new`.

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::BoxError;

/// A type-erased streaming HTTP body of [`Bytes`] frames.
///
/// It converts from `Bytes`, `String`, `Vec<u8>` and `&'static str`, and any
/// `http_body::Body<Data = Bytes>` wraps with [`Body::new`].
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// Wraps any body, reusing it as is when it already is a [`Body`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        if let Some(body) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Body>>() {
            return body.take().expect("slot is filled above");
        }
        let body = slot.take().expect("slot is filled above");
        Body(body.map_err(Into::into).boxed_unsync())
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body(Empty::new().map_err(|never| match never {}).boxed_unsync())
    }

    /// A body of exactly these bytes, sent as one frame.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body(
            Full::new(bytes.into())
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

macro_rules! body_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Body {
            fn from(value: $ty) -> Self {
                Body::full(value)
            }
        }
    )*};
}
body_from!(Bytes, String, Vec<u8>, &'static str, &'static [u8]);

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[tokio::test]
    async fn new_does_not_rebox_a_body() {
        let body = Body::new(Body::from("abc"));
        assert_eq!(body.size_hint().exact(), Some(3));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abc");
    }

    #[test]
    fn empty_is_end_stream() {
        assert!(Body::empty().is_end_stream());
        assert!(!Body::from("x").is_end_stream());
    }
}
