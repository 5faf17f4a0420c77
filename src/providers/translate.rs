//! Bodies that translate an answer from the provider's dialect to the client's.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use pin_project::pin_project;

use super::{StreamDecoder, StreamEncoder};
use crate::error::GatewayError;
use crate::sse::Decoder;
use crate::{BoxError, Dialect};

/// Translates an event stream event by event as it arrives: it holds at most one
/// partial SSE event, never the stream.
///
/// A provider error event becomes an error event in the client's dialect; a stream
/// that ends before its terminal event ends with an error event too, so the client
/// never mistakes a cut stream for a complete one. Body errors pass through.
#[pin_project]
#[derive(Debug)]
pub struct TranslateStream<B> {
    #[pin]
    inner: B,
    sse: Decoder,
    from: StreamDecoder,
    to: StreamEncoder,
    out: BytesMut,
    ended: bool,
}

impl<B> TranslateStream<B> {
    /// Translates `inner`, a stream in the `from` dialect, with `to`.
    pub fn new(inner: B, from: Dialect, to: StreamEncoder) -> Self {
        TranslateStream {
            inner,
            sse: Decoder::new(),
            from: StreamDecoder::new(from),
            to,
            out: BytesMut::new(),
            ended: false,
        }
    }
}

/// Decodes every complete event in `sse` and encodes it into `out`.
pub(crate) fn pump(
    sse: &mut Decoder,
    from: &mut StreamDecoder,
    to: &mut StreamEncoder,
    out: &mut BytesMut,
    eof: bool,
) {
    loop {
        let event = if eof { sse.finish() } else { sse.next_event() };
        let Some(event) = event else { break };
        from.decode(&event, &mut |e| to.encode(&e, out));
    }
}

impl<B> http_body::Body for TranslateStream<B>
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
            if *this.ended {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.sse.push(&data);
                    pump(this.sse, this.from, this.to, this.out, false);
                }
                Some(Err(err)) => {
                    *this.ended = true;
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => {
                    *this.ended = true;
                    pump(this.sse, this.from, this.to, this.out, true);
                    if !this.to.is_done() {
                        let err = GatewayError::upstream(
                            "The provider's stream ended before its last event.",
                        );
                        this.to.encode(&super::StreamEvent::Error(err), this.out);
                    }
                }
            }
            if !this.out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(this.out.split().freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }
}

#[cfg_attr(not(feature = "upstream"), allow(dead_code))]
/// Reads `inner` to its end and sends `replacement` instead: the answer, already
/// translated, while whatever observes `inner` still sees the provider's own bytes.
#[pin_project]
#[derive(Debug)]
pub(crate) struct Replace<B> {
    #[pin]
    inner: B,
    replacement: Option<Bytes>,
}

#[cfg_attr(not(feature = "upstream"), allow(dead_code))]
impl<B> Replace<B> {
    pub(crate) fn new(inner: B, replacement: Bytes) -> Self {
        Replace {
            inner,
            replacement: Some(replacement),
        }
    }
}

impl<B> http_body::Body for Replace<B>
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
        while this.replacement.is_some() {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    *this.replacement = None;
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => {
                    let bytes = this.replacement.take().unwrap_or_default();
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.replacement.is_none()
    }
}
