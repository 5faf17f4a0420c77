//! The observing body.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body::{Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

use super::watch::{Seen, Watch};
use super::{End, Outcome, Report};
use crate::providers::StreamDecoder;
use crate::sse::Decoder;
use crate::{Body, BoxError, Dialect, Endpoint};

/// What [`observe`] needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct ObserveOptions {
    started: Instant,
    endpoint: Option<Endpoint>,
    dialect: Option<Dialect>,
    hide_usage_chunk: bool,
}

impl ObserveOptions {
    /// Options for a request that started at `started` (the time to first byte and
    /// the elapsed time are measured from it).
    pub fn new(started: Instant) -> Self {
        ObserveOptions {
            started,
            endpoint: None,
            dialect: None,
            hide_usage_chunk: false,
        }
    }

    /// The dialect of the body to read, when it is not the endpoint's: the provider's,
    /// for an answer observed before it is translated for the client (so usage is the
    /// provider's exact count).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = Some(dialect);
        self
    }

    /// The endpoint the request was for; it picks the dialect used to read usage
    /// unless [`dialect`](ObserveOptions::dialect) names one.
    pub fn endpoint(mut self, endpoint: Option<Endpoint>) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Drop the usage-only chunk of an OpenAI stream from what is forwarded (the
    /// gateway asked for it with `stream_options.include_usage`, the client did not).
    #[cfg_attr(not(feature = "upstream"), allow(dead_code))]
    pub(crate) fn hide_usage_chunk(mut self, hide: bool) -> Self {
        self.hide_usage_chunk = hide;
        self
    }
}

/// Wraps the body of `res` in an observing body and puts its [`Outcome`] in the
/// response extensions. A response that already carries an [`Outcome`] is returned
/// as is (with its body as a [`Body`]), so any number of layers share one observer.
pub fn observe<B>(res: Response<B>, options: ObserveOptions) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    wrap(res, options, Seen::default(), |headers, dialect| {
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("text/event-stream") {
            Watch::Sse {
                decoder: Decoder::new(),
                dialect,
                hide_usage_chunk: options.hide_usage_chunk && dialect == Dialect::OpenAi,
                native: (dialect != Dialect::OpenAi).then(|| Box::new(StreamDecoder::new(dialect))),
            }
        } else if content_type.starts_with("application/json") {
            Watch::Json {
                parts: Vec::new(),
                len: 0,
                dialect,
            }
        } else {
            Watch::Opaque
        }
    })
}

/// [`observe`] for a whole answer its caller has already read (the upstream client
/// checks every JSON answer): the observer takes what was read instead of parsing the
/// body again.
#[cfg_attr(not(feature = "upstream"), allow(dead_code))]
pub(crate) fn observe_read<B>(
    res: Response<B>,
    options: ObserveOptions,
    seen: Seen,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    wrap(res, options, seen, |_, _| Watch::Opaque)
}

/// The observing body around `res`, reading it as `watch` says (given the response
/// headers and the dialect to read), starting from what is already `seen`. A response
/// that already has an [`Outcome`] keeps it.
fn wrap<B>(
    res: Response<B>,
    options: ObserveOptions,
    seen: Seen,
    watch: impl FnOnce(&http::HeaderMap, Dialect) -> Watch,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if res.extensions().get::<Outcome>().is_some() {
        return res.map(Body::new);
    }
    let dialect = options
        .dialect
        .or(options.endpoint.map(Endpoint::dialect))
        .unwrap_or(Dialect::OpenAi);
    let watch = watch(res.headers(), dialect);
    let is_sse = matches!(watch, Watch::Sse { .. });
    let outcome = Outcome::new();
    let (mut parts, body) = res.into_parts();
    parts.extensions.insert(outcome.clone());
    let tracker = Tracker {
        status: parts.status,
        started: options.started,
        ttfb: None,
        bytes: 0,
        stream: is_sse,
        rewrites: is_sse && options.hide_usage_chunk && dialect == Dialect::OpenAi,
        watch,
        seen,
    };
    let mut body = OutcomeBody {
        inner: body,
        outcome,
        tracker: Some(tracker),
        tail: None,
        done: false,
    };
    if body.inner.is_end_stream() {
        // hyper never polls a body that is empty from the start: resolve now.
        body.done = true;
        body.tail = OutcomeBody::<B>::finish(&body.outcome, &mut body.tracker);
    }
    Response::from_parts(parts, Body::new(body))
}

struct Tracker {
    status: StatusCode,
    started: Instant,
    ttfb: Option<std::time::Duration>,
    bytes: u64,
    stream: bool,
    /// Frames are re-cut at event boundaries (so events can be dropped).
    rewrites: bool,
    watch: Watch,
    seen: Seen,
}

impl Tracker {
    fn report(self, end: End) -> Report {
        Report {
            status: self.status,
            end,
            stream: self.stream,
            usage: self.seen.usage,
            output_chars: self.seen.output_chars,
            finish_reason: self.seen.finish_reason,
            ttfb: self.ttfb,
            elapsed: self.started.elapsed(),
            bytes: self.bytes,
        }
    }
}

/// Forwards every frame as it arrives and resolves the [`Outcome`] exactly once.
#[pin_project(PinnedDrop)]
struct OutcomeBody<B> {
    #[pin]
    inner: B,
    outcome: Outcome,
    /// `Some` until the outcome resolves.
    tracker: Option<Tracker>,
    /// Held-back bytes to send after the inner body ended.
    tail: Option<Bytes>,
    done: bool,
}

impl<B> OutcomeBody<B> {
    fn resolve(outcome: &Outcome, tracker: &mut Option<Tracker>, end: End) {
        if let Some(tracker) = tracker.take() {
            outcome.resolve(tracker.report(end));
        }
    }

    /// The inner body ended cleanly: read what is left, resolve, and return the bytes
    /// still to forward.
    fn finish(outcome: &Outcome, tracker: &mut Option<Tracker>) -> Option<Bytes> {
        let t = tracker.as_mut()?;
        let tail = t.watch.on_end(&mut t.seen);
        let end = if t.watch.ended_early(&t.seen) {
            End::UpstreamError
        } else {
            End::Complete
        };
        Self::resolve(outcome, tracker, end);
        tail
    }
}

impl<B> http_body::Body for OutcomeBody<B>
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
        loop {
            if *this.done {
                return Poll::Ready(this.tail.take().map(|tail| Ok(Frame::data(tail))));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                None => {
                    *this.done = true;
                    *this.tail = Self::finish(this.outcome, this.tracker);
                }
                Some(Err(err)) => {
                    *this.done = true;
                    Self::resolve(this.outcome, this.tracker, End::UpstreamError);
                    return Poll::Ready(Some(Err(err.into())));
                }
                Some(Ok(frame)) => {
                    let mut frame = frame;
                    if let (Some(data), Some(t)) = (frame.data_ref(), this.tracker.as_mut()) {
                        if !data.is_empty() && t.ttfb.is_none() {
                            t.ttfb = Some(t.started.elapsed());
                        }
                        if let Some(rewritten) = t.watch.on_data(data, &mut t.seen) {
                            frame = Frame::data(rewritten);
                        }
                        t.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                        if t.seen.terminal {
                            Self::resolve(this.outcome, this.tracker, End::Complete);
                        }
                    }
                    if this.inner.is_end_stream() {
                        *this.done = true;
                        if let Some(tail) = Self::finish(this.outcome, this.tracker) {
                            frame = match frame.into_data() {
                                Ok(data) => Frame::data([data, tail].concat().into()),
                                Err(trailers) => {
                                    *this.tail = Some(tail);
                                    trailers
                                }
                            };
                        }
                    }
                    let empty = frame.data_ref().is_some_and(Bytes::is_empty);
                    if empty && !*this.done {
                        continue; // every event of this frame was held back or dropped
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.tracker {
            Some(t) if t.rewrites => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

#[pinned_drop]
impl<B> PinnedDrop for OutcomeBody<B> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(t) = this.tracker.as_ref() {
            // A terminal event that went through makes the stream complete even if the
            // client hung up before the body's end (the openai SDK does).
            let end = if t.seen.terminal {
                End::Complete
            } else {
                End::ClientGone
            };
            Self::resolve(this.outcome, this.tracker, end);
        }
    }
}
