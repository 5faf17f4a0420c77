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
use tokio::time::{Instant, Sleep};

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

/// Fails the body when no frame arrives for `after` while it waits for one.
///
/// The timer is armed when the provider has nothing ready, from that moment: frames
/// that are already there (a whole answer in one read, a burst of stream events) cost
/// no clock read and no timer-wheel update each, only the waits do.
#[pin_project]
pub(super) struct IdleTimeoutBody<B> {
    #[pin]
    inner: B,
    #[pin]
    sleep: Option<Sleep>,
    /// A frame arrived since the timer was armed: re-arm it before the next wait.
    progressed: bool,
    after: Duration,
}

impl<B> IdleTimeoutBody<B> {
    pub(super) fn new(inner: B, after: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            sleep: None,
            progressed: true,
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
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.progressed = true;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if std::mem::take(this.progressed) {
            let deadline = Instant::now() + *this.after;
            match this.sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep.reset(deadline),
                None => this.sleep.set(Some(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Some(Err(IdleTimeout { after: *this.after }.into())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::collections::VecDeque;

    /// Frames handed out when the test pushes them; `Pending` in between.
    #[derive(Clone, Default)]
    struct Gated(
        std::sync::Arc<std::sync::Mutex<(VecDeque<Option<Bytes>>, Option<std::task::Waker>)>>,
    );

    impl Gated {
        fn push(&self, frame: Option<Bytes>) {
            let mut state = self.0.lock().unwrap();
            state.0.push_back(frame);
            if let Some(waker) = state.1.take() {
                waker.wake();
            }
        }
    }

    impl http_body::Body for Gated {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let mut state = self.0.lock().unwrap();
            match state.0.pop_front() {
                Some(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(None) => Poll::Ready(None),
                None => {
                    state.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    /// Each wait is timed from its own start: frames 150 ms apart pass an idle timeout of
    /// 200 ms however long the whole body takes, and 250 ms of silence fails it.
    #[tokio::test(start_paused = true)]
    async fn the_idle_timer_restarts_after_every_frame() {
        let gated = Gated::default();
        let mut body = Box::pin(IdleTimeoutBody::new(
            gated.clone(),
            Duration::from_millis(200),
        ));
        for i in 0..4 {
            let gated = gated.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                gated.push(Some(Bytes::from(format!("{i}"))));
            });
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), format!("{i}"));
        }
        let late = gated.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            late.push(None);
        });
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("sent nothing"), "{err}");
    }
}
