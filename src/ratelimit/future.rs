//! [`ResponseFuture`] and the reservation guard.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use pin_project::pin_project;
use tower_service::Service;

use super::headers;
use super::store::{Decision, Grant, Snapshot};
use super::{RateLimitStore, Reservation};
use crate::outcome::{observe, ObserveOptions, Outcome, Report};
use crate::{Body, BoxError, Dialect, Endpoint};

/// What the layer knows about the request it is answering.
pub(crate) struct Setting {
    pub(crate) started: Instant,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) dialect: Dialect,
    pub(crate) store: RateLimitStore,
    /// Whether to write the rate-limit headers.
    pub(crate) headers: bool,
}

/// The result of the asynchronous part of `call` (reading the body, a remote store).
pub(crate) enum Prepared {
    Decided(Request<Body>, Decision),
    /// No scope applies: call the inner service as is.
    Unlimited(Request<Body>),
    /// Answered without calling the inner service (a bad body).
    Answered(Response<Body>),
}

type PrepareFuture = Pin<Box<dyn Future<Output = Prepared> + Send>>;

/// Response future of [`RateLimit`](super::RateLimit).
#[pin_project]
pub struct ResponseFuture<S, F> {
    #[pin]
    state: State<S, F>,
}

#[pin_project(project = StateProj)]
enum State<S, F> {
    Preparing {
        fut: PrepareFuture,
        inner: Option<S>,
        setting: Option<Setting>,
    },
    Calling {
        #[pin]
        fut: F,
        admitted: Option<Admitted>,
    },
    Answered {
        res: Option<Response<Body>>,
    },
}

/// An admitted request in flight: settled on its outcome, or on drop.
struct Admitted {
    guard: Guard,
    snapshot: Snapshot,
    setting: Setting,
}

impl<S, F> ResponseFuture<S, F> {
    pub(crate) fn pass(fut: F) -> Self {
        ResponseFuture {
            state: State::Calling {
                fut,
                admitted: None,
            },
        }
    }

    pub(crate) fn preparing(fut: PrepareFuture, inner: S, setting: Setting) -> Self {
        ResponseFuture {
            state: State::Preparing {
                fut,
                inner: Some(inner),
                setting: Some(setting),
            },
        }
    }

    fn answered(res: Response<Body>) -> Self {
        ResponseFuture {
            state: State::Answered { res: Some(res) },
        }
    }

    /// A decision taken in `call`: calls `inner` (which is ready) when admitted.
    pub(crate) fn decided<ReqS>(
        decision: Decision,
        setting: Setting,
        inner: &mut ReqS,
        mut req: Request<Body>,
    ) -> Self
    where
        ReqS: Service<Request<Body>, Future = F>,
    {
        match admit(decision, setting, &mut req) {
            Ok(admitted) => ResponseFuture {
                state: State::Calling {
                    fut: inner.call(req),
                    admitted: Some(admitted),
                },
            },
            Err(res) => Self::answered(res),
        }
    }
}

/// Turns a decision into an admission (writing the [`Reservation`] into the request)
/// or the answer to send.
#[allow(clippy::result_large_err)] // the refusal is the response itself, sent at once
fn admit(
    decision: Decision,
    setting: Setting,
    req: &mut Request<Body>,
) -> Result<Admitted, Response<Body>> {
    match decision {
        Decision::Admit(grant) => {
            req.extensions_mut().insert(Reservation::of(&grant));
            Ok(Admitted {
                snapshot: grant.snapshot,
                guard: Guard {
                    store: setting.store.clone(),
                    grant: Some(grant),
                },
                setting,
            })
        }
        Decision::Deny(denial) => Err(headers::too_many_requests(
            &denial,
            setting.dialect,
            setting.headers,
        )),
        Decision::Unavailable => Err(headers::unavailable(setting.dialect)),
    }
}

impl<S, F, ResB> Future for ResponseFuture<S, F>
where
    S: Service<Request<Body>, Future = F>,
    F: Future<Output = Result<Response<ResB>, S::Error>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Preparing {
                    fut,
                    inner,
                    setting,
                } => {
                    let prepared = ready!(fut.as_mut().poll(cx));
                    let mut inner = inner.take().expect("polled after completion");
                    let setting = setting.take().expect("polled after completion");
                    let next = match prepared {
                        Prepared::Answered(res) => State::Answered { res: Some(res) },
                        Prepared::Unlimited(req) => State::Calling {
                            fut: inner.call(req),
                            admitted: None,
                        },
                        Prepared::Decided(mut req, decision) => {
                            match admit(decision, setting, &mut req) {
                                Ok(admitted) => State::Calling {
                                    fut: inner.call(req),
                                    admitted: Some(admitted),
                                },
                                Err(res) => State::Answered { res: Some(res) },
                            }
                        }
                    };
                    state.set(next);
                }
                StateProj::Calling { fut, admitted } => {
                    // An inner error drops `admitted`: settled as if dropped.
                    let res = ready!(fut.poll(cx))?;
                    let Some(admitted) = admitted.take() else {
                        return Poll::Ready(Ok(res.map(Body::new)));
                    };
                    return Poll::Ready(Ok(admitted.attach(res)));
                }
                StateProj::Answered { res } => {
                    return Poll::Ready(Ok(res.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl Admitted {
    /// Writes the headers and hands the reservation to the response's outcome.
    fn attach<B>(self, res: Response<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let options = ObserveOptions::new(self.setting.started).endpoint(self.setting.endpoint);
        let mut res = observe(res, options);
        if self.setting.headers {
            headers::write(res.headers_mut(), self.setting.dialect, &self.snapshot);
        }
        let guard = self.guard;
        match res.extensions().get::<Outcome>() {
            Some(outcome) => outcome.on_resolve(move |report| guard.settle_with(report)),
            None => drop(guard), // observe always adds one; settle now if not
        }
        res
    }
}

/// Holds a grant until it is settled: by the outcome, or on drop (the future was
/// dropped or the inner service failed before a response), charging the input estimate.
struct Guard {
    store: RateLimitStore,
    grant: Option<Grant>,
}

impl Guard {
    fn settle_with(mut self, report: &Report) {
        if let Some(grant) = self.grant.take() {
            let used = used_tokens(report, grant.plan.input);
            self.store.backend.settle(grant, used);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            let used = grant.plan.input;
            self.store.backend.settle(grant, used);
        }
    }
}

/// The tokens a response really cost: the provider's usage; else, for a success, the
/// input estimate plus the output seen so far; else (an error answer) nothing.
pub(crate) fn used_tokens(report: &Report, input_estimate: u64) -> u64 {
    match report.usage {
        Some(usage) => usage.prompt_tokens + usage.completion_tokens,
        None if report.status.is_success() => input_estimate + report.completion_tokens(),
        None => 0,
    }
}

impl<S, F> fmt::Debug for ResponseFuture<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Preparing { .. } => "preparing",
            State::Calling { .. } => "calling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
