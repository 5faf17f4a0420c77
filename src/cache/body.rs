//! The bodies of the cache: [`FillBody`] (a miss: forwards and keeps a copy) and
//! [`FollowerBody`] (a request served by another one's upstream call).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::flight::{Follower, Leader};
use super::store::{CacheStore, Entry};
use super::CacheKey;
use crate::outcome::{End, Outcome};
use crate::{Body, BoxError};

/// Where a complete answer goes.
pub(crate) struct Fill {
    pub(crate) outcome: Outcome,
    pub(crate) leader: Option<Leader>,
    /// `None` when the answer must not be stored (a `ttl` of 0).
    pub(crate) store: Option<(Arc<dyn CacheStore>, CacheKey, std::time::Duration)>,
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) cap: usize,
    parts: Vec<Bytes>,
    len: usize,
    overflow: bool,
}

impl Fill {
    pub(crate) fn new(
        outcome: Outcome,
        leader: Option<Leader>,
        store: Option<(Arc<dyn CacheStore>, CacheKey, std::time::Duration)>,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        cap: usize,
    ) -> Self {
        Fill {
            outcome,
            leader,
            store,
            status,
            content_type,
            cap,
            parts: Vec::new(),
            len: 0,
            overflow: false,
        }
    }

    fn on_data(&mut self, data: &Bytes) {
        if let Some(leader) = &mut self.leader {
            // The flight keeps the chunks (under the same cap) for its followers: the
            // stored copy is read from there, not kept twice.
            leader.chunk(data);
            return;
        }
        if self.overflow || self.store.is_none() || data.is_empty() {
            return;
        }
        self.len += data.len();
        if self.len > self.cap {
            self.overflow = true;
            self.parts = Vec::new();
        } else {
            self.parts.push(data.clone());
        }
    }

    /// Whether the answer is known to be complete: its outcome resolved as such.
    fn is_complete(&self) -> bool {
        self.outcome
            .report()
            .is_some_and(|r| r.end == End::Complete && r.status.is_success())
    }

    /// Stores a complete answer and ends the flight.
    fn finish(self, complete: bool) {
        // The observer parsed a JSON answer when it found usage in it.
        let parsed = self.outcome.report().is_some_and(|r| r.usage.is_some());
        let Fill {
            leader,
            store,
            status,
            content_type,
            parts,
            overflow,
            ..
        } = self;
        if complete {
            if let Some((store, key, ttl)) = store {
                // `None`: the answer outgrew the cap.
                let body = match &leader {
                    Some(leader) => leader.body(),
                    None => (!overflow).then(|| join(&parts)),
                };
                // A JSON answer that does not parse (a provider bug, a truncated body
                // with a clean end) is forwarded, never replayed. One whose usage the
                // observer read has parsed already.
                let is_json = content_type
                    .as_ref()
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                if let Some(body) = body.filter(|body| {
                    !is_json
                        || parsed
                        || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
                }) {
                    store.put(key, Entry::new(status, content_type, body, ttl));
                }
            }
        }
        if let Some(leader) = leader {
            if complete {
                leader.complete();
            } else {
                leader.fail();
            }
        }
    }
}

/// The chunks as one `Bytes` (no copy for a single chunk).
pub(crate) fn join(parts: &[Bytes]) -> Bytes {
    match parts {
        [one] => one.clone(),
        many => Bytes::from(many.concat()),
    }
}

/// A missed answer on its way to the client: every frame is forwarded as it arrives and
/// a `Bytes` clone is kept (under the byte cap). The copy is stored, and the flight's
/// followers released, once the response's [`Outcome`] says the answer is complete; an
/// error, a cut stream or a client gone before the end stores nothing.
///
/// If the client goes away while other requests follow this one, the rest of the answer
/// is read by a task for them.
pub(crate) struct FillBody {
    inner: Option<Body>,
    fill: Option<Fill>,
}

impl FillBody {
    pub(crate) fn new(inner: Body, fill: Fill) -> Self {
        FillBody {
            inner: Some(inner),
            fill: Some(fill),
        }
    }
}

impl http_body::Body for FillBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = std::task::ready!(Pin::new(inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(fill) = this.fill.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        fill.on_data(data);
                    }
                    if fill.is_complete() {
                        this.fill.take().expect("checked above").finish(true);
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(fill) = this.fill.take() {
                    fill.finish(false);
                }
            }
            None => {
                if let Some(fill) = this.fill.take() {
                    let complete = fill.is_complete();
                    fill.finish(complete);
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for FillBody {
    fn drop(&mut self) {
        let Some(fill) = self.fill.take() else {
            return;
        };
        if fill.is_complete() {
            // The terminal event went through before the client closed (the openai SDK
            // closes right after `[DONE]`): the copy is whole.
            return fill.finish(true);
        }
        let followed = fill.leader.as_ref().is_some_and(Leader::has_followers);
        match (
            followed,
            self.inner.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            (true, Some(inner), Ok(runtime)) => {
                runtime.spawn(drain(inner, fill));
            }
            _ => fill.finish(false),
        }
    }
}

/// Reads the rest of an answer that other requests follow, after its own client left.
async fn drain(mut body: Body, mut fill: Fill) {
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    fill.on_data(data);
                }
                if fill.is_complete() {
                    return fill.finish(true);
                }
            }
            Some(Err(_)) => return fill.finish(false),
            None => {
                let complete = fill.is_complete();
                return fill.finish(complete);
            }
        }
    }
}

/// The answer of a request that followed another one's upstream call.
pub(crate) struct FollowerBody {
    follower: Follower,
    ended: bool,
}

impl FollowerBody {
    pub(crate) fn new(follower: Follower) -> Self {
        FollowerBody {
            follower,
            ended: false,
        }
    }
}

impl http_body::Body for FollowerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(self.follower.poll_chunk(cx));
        Poll::Ready(match next {
            Some(Ok(data)) => Some(Ok(Frame::data(data))),
            Some(Err(())) => {
                self.ended = true;
                Some(Err(
                    "the shared upstream answer failed before its end".into()
                ))
            }
            None => {
                self.ended = true;
                None
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
