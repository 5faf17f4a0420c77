//! The observed response: [`Outcome`], resolved exactly once per response.
//!
//! The first layer that needs to know how a response ended wraps the response body in
//! an observing body and puts an [`Outcome`] handle in the response extensions; every
//! later layer attaches to the same handle. The observing body forwards each frame the
//! moment it arrives (it never buffers a stream) and reads it on the side: usage from
//! the JSON body or, for streams, from an incremental SSE parse; bytes; the time to the
//! first byte; and how the body ended.
//!
//! The outcome resolves **exactly once**, on whichever comes first:
//!
//! | event | [`End`] |
//! |---|---|
//! | the stream's terminal event (OpenAI `data: [DONE]`, Anthropic `message_stop`, Gemini's chunk with a `finishReason`) | [`End::Complete`] |
//! | the body ends (`None`, or `is_end_stream()` after a frame) | [`End::Complete`] (a stream without its terminal event: [`End::UpstreamError`]) |
//! | the body yields an error (upstream reset, idle timeout) | [`End::UpstreamError`] |
//! | the body is dropped before its end (the client disconnected) | [`End::ClientGone`], with the usage seen so far |
//!
//! A stream counts as complete as soon as its terminal event went through, even if the
//! client then closes the connection before the body's end: the official `openai` SDK
//! does exactly that.
//!
//! Usage is read in the dialect of the body: the endpoint's by default, or the one
//! named with [`ObserveOptions::dialect`] (the upstream observes a provider's own bytes
//! before translating them, so counts are exact). Anthropic's usage split across
//! `message_start` and `message_delta` is combined; Gemini's cumulative stream usage is
//! counted once (the last report wins). Finish reasons use OpenAI's names.
//!
//! Metering, rate-limit settlement, cache fill and logging all read this one handle,
//! with [`Outcome::on_resolve`] (a callback run inline when the body resolves: keep it
//! cheap, e.g. send to a channel) or by awaiting [`Outcome::resolved`].
//!
//! ```
//! use tollgate::outcome::{Outcome, ObserveLayer, End};
//! use tollgate::Body;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), tollgate::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(ObserveLayer::new())
//!     .service_fn(|_req: Request<Body>| async {
//!         let body = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#;
//!         let mut res = Response::new(Body::from(body));
//!         res.headers_mut().insert("content-type", "application/json".parse().unwrap());
//!         Ok::<_, std::convert::Infallible>(res)
//!     });
//!
//! let req = Request::post("/v1/chat/completions").body(Body::empty())?;
//! let res = svc.oneshot(req).await?;
//! let outcome = res.extensions().get::<Outcome>().cloned().expect("observed");
//! res.into_body().collect().await?;
//!
//! let report = outcome.resolved().await;
//! assert_eq!(report.end, End::Complete);
//! assert_eq!(report.usage.unwrap().completion_tokens, 5);
//! # Ok(()) }
//! ```

mod answer;
mod body;
mod layer;
mod watch;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;

#[cfg(feature = "upstream")]
pub(crate) use answer::is_json;
#[cfg(feature = "upstream")]
pub(crate) use body::observe_read;
pub use body::{observe, ObserveOptions};
pub use layer::{Observe, ObserveLayer, ResponseFuture};
#[cfg(feature = "upstream")]
pub(crate) use watch::Seen;

/// Token usage as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache (Anthropic).
    pub cache_write_tokens: u64,
    /// Output tokens the model spent reasoning, already counted in `completion_tokens`
    /// (OpenAI `completion_tokens_details.reasoning_tokens`, Gemini
    /// `thoughtsTokenCount`); 0 when the provider does not say (Anthropic).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Usage with these input and output counts.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            ..Usage::default()
        }
    }

    /// Sets the cached input tokens.
    pub fn with_cached(mut self, cached_tokens: u64) -> Self {
        self.cached_tokens = cached_tokens;
        self
    }

    /// Sets the reasoning tokens (part of the completion tokens).
    pub fn with_reasoning(mut self, reasoning_tokens: u64) -> Self {
        self.reasoning_tokens = reasoning_tokens;
        self
    }
}

/// How a response body ended. See the [module docs](crate::outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Everything was delivered (for streams: the terminal event went through).
    Complete,
    /// The upstream failed mid-body (reset, timeout, a stream cut before its end).
    UpstreamError,
    /// The client went away before the end.
    ClientGone,
}

/// What an [`Outcome`] resolved to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The response status.
    pub status: StatusCode,
    /// How the body ended.
    pub end: End,
    /// Whether the body was an event stream.
    pub stream: bool,
    /// Usage reported by the provider; `None` when it reported none (yet).
    pub usage: Option<Usage>,
    /// Characters of generated text seen, for estimates when usage is missing.
    pub output_chars: u64,
    /// The provider's finish reason, when seen.
    pub finish_reason: Option<String>,
    /// From the start of the request to the first body byte.
    pub ttfb: Option<Duration>,
    /// From the start of the request to the resolution.
    pub elapsed: Duration,
    /// Body bytes delivered.
    pub bytes: u64,
}

impl Report {
    /// Completion tokens: the reported count, or an estimate of one token per four
    /// characters of streamed text when the provider reported none.
    pub fn completion_tokens(&self) -> u64 {
        match self.usage {
            Some(usage) => usage.completion_tokens,
            None => self.output_chars.div_ceil(4),
        }
    }

    /// Whether the token counts came from the provider (not estimated).
    pub fn usage_is_exact(&self) -> bool {
        self.usage.is_some()
    }
}

type Callback = Box<dyn FnOnce(&Report) + Send>;

enum State {
    /// Callbacks in the order they were given; the first one is kept inline, so a
    /// response with a single observer allocates no list.
    Pending {
        first: Option<Callback>,
        rest: Vec<Callback>,
        /// Someone awaits [`Outcome::resolved`]: only then does resolving wake the
        /// `Notify` (which takes its own lock even with nobody to wake).
        awaited: bool,
    },
    Resolved(Arc<Report>),
}

/// A shared handle onto how one response ends. See the [module docs](crate::outcome).
///
/// Cheap to clone; found in the response extensions of any response that went through
/// an observing layer.
#[derive(Clone)]
pub struct Outcome {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes [`Outcome::resolved`] waiters (a `Notify` costs no allocation, where a
    /// watch channel made one per response and woke eight notifiers on resolve).
    done: tokio::sync::Notify,
}

impl Outcome {
    pub(crate) fn new() -> Self {
        Outcome {
            shared: Arc::new(Shared {
                state: Mutex::new(State::Pending {
                    first: None,
                    rest: Vec::new(),
                    awaited: false,
                }),
                done: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Runs `f` once with the report: when the outcome resolves, or right away if it
    /// already has. `f` runs inline in the body's poll or drop: keep it short and
    /// non-blocking (hand the report to a channel or a spawned task for slow work).
    pub fn on_resolve<F>(&self, f: F)
    where
        F: FnOnce(&Report) + Send + 'static,
    {
        let mut state = self.state();
        match &mut *state {
            State::Pending {
                first: first @ None,
                ..
            } => *first = Some(Box::new(f)),
            State::Pending { rest, .. } => rest.push(Box::new(f)),
            State::Resolved(report) => {
                let report = report.clone();
                drop(state);
                f(&report);
            }
        }
    }

    /// The report, if the outcome has resolved.
    pub fn report(&self) -> Option<Arc<Report>> {
        match &*self.state() {
            State::Resolved(report) => Some(report.clone()),
            State::Pending { .. } => None,
        }
    }

    /// Waits for the outcome to resolve.
    pub async fn resolved(&self) -> Arc<Report> {
        loop {
            // Registered before the check, so a resolution in between still wakes it.
            let notified = self.shared.done.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            // Marked awaited under the same lock as the check: a resolution either
            // came first (and is seen here) or sees the mark (and wakes this waiter).
            match &mut *self.state() {
                State::Resolved(report) => return report.clone(),
                State::Pending { awaited, .. } => *awaited = true,
            }
            notified.await;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Callbacks run outside the lock, so a poisoned lock still holds a valid state.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves the outcome; later calls are ignored. Returns whether this call did it.
    pub(crate) fn resolve(&self, report: Report) -> bool {
        let report = Arc::new(report);
        let (first, rest, awaited) = {
            let mut state = self.state();
            match std::mem::replace(&mut *state, State::Resolved(report.clone())) {
                State::Pending {
                    first,
                    rest,
                    awaited,
                } => (first, rest, awaited),
                resolved @ State::Resolved(_) => {
                    *state = resolved;
                    return false;
                }
            }
        };
        if awaited {
            self.shared.done.notify_waiters();
        }
        for callback in first.into_iter().chain(rest) {
            callback(&report);
        }
        true
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("report", &self.report())
            .finish()
    }
}

#[cfg(test)]
mod tests;
