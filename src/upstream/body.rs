//! Bodies on the way back from a provider.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::{sleep, Instant, Sleep};

use crate::error::GatewayError;
use crate::{BoxError, Dialect};

/// No frame arrived within the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout {
    after: Duration,
}

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the provider sent nothing for {:?} mid-response",
            self.after
        )
    }
}

impl std::error::Error for IdleTimeout {}

/// Fails the body when no frame arrives for `after` (reset on every frame).
#[pin_project]
pub(super) struct IdleTimeoutBody<B> {
    #[pin]
    inner: B,
    #[pin]
    sleep: Sleep,
    after: Duration,
}

impl<B> IdleTimeoutBody<B> {
    pub(super) fn new(inner: B, after: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            sleep: sleep(after),
            after,
        }
    }
}

impl<B> http_body::Body for IdleTimeoutBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                let after = *this.after;
                this.sleep.as_mut().reset(Instant::now() + after);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.sleep.poll(cx));
                Poll::Ready(Some(Err(IdleTimeout { after: *this.after }.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Replays frames read ahead (while waiting for a stream's first event), then the rest.
#[pin_project]
pub(super) struct Prefixed<B> {
    prefix: VecDeque<Bytes>,
    #[pin]
    inner: B,
}

impl<B> Prefixed<B> {
    pub(super) fn new(prefix: VecDeque<Bytes>, inner: B) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<B> http_body::Body for Prefixed<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(bytes) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.inner.is_end_stream()
    }
}

/// Ends an event stream cleanly when the provider fails mid-stream: the error becomes
/// a last event in the client's dialect (OpenAI `data: {"error": ...}`, Anthropic
/// `event: error`), which the official SDKs raise as an API error, instead of a
/// connection torn down without explanation.
#[pin_project]
pub(super) struct StreamErrorEvent<B> {
    #[pin]
    inner: B,
    dialect: Dialect,
    target: std::sync::Arc<str>,
    ended: bool,
}

impl<B> StreamErrorEvent<B> {
    pub(super) fn new(inner: B, dialect: Dialect, target: std::sync::Arc<str>) -> Self {
        StreamErrorEvent {
            inner,
            dialect,
            target,
            ended: false,
        }
    }
}

impl<B> http_body::Body for StreamErrorEvent<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Err(err)) => {
                *this.ended = true;
                let err: BoxError = err.into();
                tracing::warn!(target = %this.target, error = %err, "provider stream failed mid-response");
                let is_timeout = err.downcast_ref::<IdleTimeout>().is_some();
                let message = format!("The provider `{}` failed mid-stream: {err}.", this.target);
                let error = if is_timeout {
                    GatewayError::timeout(message)
                } else {
                    GatewayError::upstream(message)
                };
                let event = match this.dialect {
                    Dialect::Anthropic => Some("error"),
                    _ => None,
                };
                let bytes = crate::sse::encode_json(event, &error.to_json(*this.dialect));
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            other => Poll::Ready(other.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}
