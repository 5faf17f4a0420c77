//! The response bodies the mock streams: a list of prepared frames played back over
//! time, with the script's delays, hold and reset applied. Dialect-independent: a
//! dialect module only prepares the frames (see [`Events`]).

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::time::Sleep;

use super::provider::Shared;
use super::script::Script;
use crate::BoxError;

/// The frames of one streamed answer, prepared by a dialect module.
#[derive(Debug)]
pub(crate) struct Events {
    /// Every frame in order, each one complete SSE event.
    pub(crate) frames: Vec<Bytes>,
    /// Which frames are content chunks (`x-mock-reset-after` counts these and
    /// `x-mock-hold-last` waits before the last one).
    pub(crate) content: Range<usize>,
    /// Whether playing every frame completes the stream (its terminal event is
    /// among them); false for a scripted malformed stream.
    pub(crate) completes: bool,
}

/// The error a body yields where the script asked for a reset (`x-mock-reset-after`).
/// Over HTTP the server then aborts the connection mid-body.
#[derive(Debug)]
struct Reset;

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mock provider reset the response body (x-mock-reset-after)")
    }
}

impl std::error::Error for Reset {}

/// A body that plays back frames over time.
///
/// A hand-written state machine rather than a task feeding a channel: no task per
/// request, and dropping the body (a client that went away) stops the stream at once
/// and is counted by the drop guard.
pub(crate) struct EventBody {
    frames: Vec<Bytes>,
    next: usize,
    delay: Duration,
    /// Whether the delay before frame `next` has elapsed.
    waited: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The frame index to hold before, until a permit is released.
    hold_at: Option<usize>,
    permit: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The frame index at which the body yields an error instead.
    reset_at: Option<usize>,
    /// Whether the body already yielded once before its reset (see `poll_frame`).
    reset_yielded: bool,
    completes: bool,
    finished: bool,
    /// Where stream outcomes are counted; `None` for non-stream bodies.
    shared: Option<Arc<Shared>>,
}

impl EventBody {
    /// A counted stream of `events` scripted by `script`.
    pub(crate) fn stream(events: Events, script: &Script, shared: Arc<Shared>) -> EventBody {
        let Events {
            frames,
            content,
            completes,
        } = events;
        let hold_at = (script.hold_last && !content.is_empty()).then(|| content.end - 1);
        let reset_at = script
            .reset_after
            .map(|k| content.start + k.min(content.len()));
        EventBody {
            frames,
            next: 0,
            delay: script.chunk_delay,
            waited: false,
            sleep: None,
            hold_at,
            permit: None,
            reset_at,
            reset_yielded: false,
            completes,
            finished: false,
            shared: Some(shared),
        }
    }

    /// A non-stream body that fails before its first byte.
    pub(crate) fn reset() -> EventBody {
        EventBody {
            frames: Vec::new(),
            next: 0,
            delay: Duration::ZERO,
            waited: false,
            sleep: None,
            hold_at: None,
            permit: None,
            reset_at: Some(0),
            reset_yielded: false,
            completes: false,
            finished: false,
            shared: None,
        }
    }

    fn finish(&mut self, completed: bool) {
        self.finished = true;
        if completed {
            if let Some(shared) = &self.shared {
                shared.stream_completed();
            }
        }
    }
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let i = this.next;
        if i > 0 && !this.delay.is_zero() && !this.waited {
            let delay = this.delay;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
            this.waited = true;
        }
        if this.hold_at == Some(i) {
            if let Some(shared) = &this.shared {
                let permit = this
                    .permit
                    .get_or_insert_with(|| Box::pin(shared.acquire_held()));
                ready!(permit.as_mut().poll(cx));
            }
            this.permit = None;
            this.hold_at = None;
        }
        if this.reset_at == Some(i) {
            if !this.reset_yielded {
                // hyper drops its unflushed write buffer when a body fails: yield once
                // so the server writes out the head and the frames before the reset.
                this.reset_yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.finish(false);
            return Poll::Ready(Some(Err(Reset.into())));
        }
        let Some(frame) = this.frames.get_mut(i).map(std::mem::take) else {
            let completes = this.completes;
            this.finish(completes);
            return Poll::Ready(None);
        };
        this.next += 1;
        this.waited = false;
        if this.next == this.frames.len() && this.reset_at != Some(this.next) {
            // Ending here (not on the next poll) makes `is_end_stream` true right after
            // the terminal event, and a client that closes as soon as it has read it
            // (the official SDKs do) is not counted as gone.
            let completes = this.completes;
            this.finish(completes);
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for EventBody {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(shared) = &self.shared {
                shared.stream_cancelled();
            }
        }
    }
}

impl fmt::Debug for EventBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBody")
            .field("frames", &self.frames.len())
            .field("next", &self.next)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
