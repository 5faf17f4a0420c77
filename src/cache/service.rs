//! [`Cache`]: the service made by [`CacheLayer`].

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, AGE, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response};
use tower_service::Service;

use super::body::{Fill, FillBody, FollowerBody};
use super::flight::{Flights, Follower, Head, Role};
use super::layer::Config;
use super::policy::Directives;
use super::store::{CacheStore, Entry};
use super::{CacheLayer, DefaultMakeCacheKey, MakeCacheKey, MemoryStore};
use crate::error::{ErrorKind, GatewayError};
use crate::outcome::{observe, ObserveOptions, Outcome};
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// The service made by [`CacheLayer`]. See the [module docs](crate::cache).
pub struct Cache<S, C = MemoryStore, K = DefaultMakeCacheKey> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<C, K>>,
}

/// What every clone of the service shares.
pub(crate) struct Shared<C, K> {
    pub(crate) store: Arc<C>,
    pub(crate) make_key: K,
    pub(crate) config: Config,
    pub(crate) flights: Arc<Flights>,
}

impl<S> Cache<S> {
    /// Wraps `inner` with a default layer (see [`CacheLayer::new`]).
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&CacheLayer::new(), inner)
    }

    /// A [`CacheLayer`] to configure.
    pub fn layer() -> CacheLayer {
        CacheLayer::new()
    }
}

impl<S, C, K> Cache<S, C, K> {
    crate::macros::inner_accessors!();
}

impl<S: Clone, C, K> Clone for Cache<S, C, K> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, K> fmt::Debug for Cache<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S, C, K, B, ResB> Service<Request<B>> for Cache<S, C, K>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    C: CacheStore,
    K: MakeCacheKey,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Move the service that was made ready into the future; leave its clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(serve(inner, self.shared.clone(), req.map(Body::new)))
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Cache`].
}

/// How the cache served a request, for the `x-tollgate-cache` header.
#[derive(Clone, Copy)]
enum Status {
    Hit,
    Miss,
    Bypass,
}

impl Status {
    fn value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Bypass => "bypass",
        })
    }
}

fn mark(res: &mut Response<Body>, status: Status) {
    res.headers_mut()
        .insert(crate::header_names::X_TOLLGATE_CACHE, status.value());
}

async fn serve<S, C, K, ResB>(
    mut inner: S,
    shared: Arc<Shared<C, K>>,
    mut req: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResB>>,
    C: CacheStore,
    K: MakeCacheKey,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let started = Instant::now();
    let is_llm = req.extensions().get::<LlmRequest>().is_some()
        || req.extensions().get::<Endpoint>().is_some()
        || Endpoint::from_path(req.uri().path()).is_some();
    if !is_llm {
        return Ok(inner.call(req).await?.map(Body::new));
    }
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
    };
    let directives = match Directives::from_headers(req.headers()) {
        Ok(directives) => directives,
        Err(err) => return Ok(err.to_response(llm.dialect())),
    };
    let config = shared.config;
    let key = if directives.no_store || !config.policy.allows(&llm) {
        None
    } else {
        shared.make_key.make_cache_key(&req, &llm)
    };
    let Some(key) = key else {
        let mut res = inner.call(req).await?.map(Body::new);
        mark(&mut res, Status::Bypass);
        return Ok(res);
    };
    let ttl = directives
        .ttl
        .map_or(config.ttl, |ttl| ttl.min(config.max_ttl));

    if directives.only_if_cached {
        // RFC 9111: answer from the cache or with a 504, never from the origin.
        if let Some(entry) = shared.store.get(&key).await {
            if entry.status().is_success() && entry.is_fresh() {
                return Ok(replay(&entry));
            }
        }
        let mut res = GatewayError::new(
            ErrorKind::Timeout,
            "The answer is not in the cache, and the request asked for a cached answer only \
             (Cache-Control: only-if-cached).",
        )
        .with_code("not_cached")
        .to_response(llm.dialect());
        mark(&mut res, Status::Miss);
        return Ok(res);
    }

    let mut leader = None;
    if !directives.no_cache {
        if let Some(entry) = shared.store.get(&key).await {
            if entry.status().is_success() && entry.is_fresh() {
                return Ok(replay(&entry));
            }
        }
        if config.single_flight {
            match shared.flights.join(key, config.max_entry_bytes) {
                Role::Leader(l) => leader = Some(l),
                Role::Follower(mut follower) => {
                    if let Some(head) = poll_fn(|cx| follower.poll_head(cx)).await {
                        return Ok(follow(head, follower));
                    }
                    // The leader failed before its answer started: go alone.
                }
            }
        }
    }

    let res = inner.call(req).await?;
    let mut res = observe(
        res,
        ObserveOptions::new(started).endpoint(Some(llm.endpoint())),
    );
    mark(&mut res, Status::Miss);
    let status = res.status();
    let outcome = res.extensions().get::<Outcome>().cloned();
    let Some(outcome) = outcome.filter(|_| status.is_success()) else {
        // Errors, 429s and anything else that is not a 2xx are never stored or shared;
        // dropping the leader frees its followers.
        return Ok(res);
    };
    let content_type = res.headers().get(CONTENT_TYPE).cloned();
    if let Some(leader) = &leader {
        leader.head(Head {
            status,
            content_type: content_type.clone(),
        });
    }
    let store = (!ttl.is_zero()).then(|| (shared.store.clone() as Arc<dyn CacheStore>, key, ttl));
    if store.is_none() && leader.is_none() {
        return Ok(res);
    }
    let fill = Fill::new(
        outcome,
        leader,
        store,
        status,
        content_type,
        config.max_entry_bytes,
    );
    Ok(res.map(|body| Body::new(FillBody::new(body, fill))))
}

/// A stored answer, replayed byte for byte: a stream comes back as the well-formed
/// stream the first client received (its terminal event included).
pub(crate) fn replay(entry: &Entry) -> Response<Body> {
    let mut res = Response::new(Body::from(entry.body().clone()));
    *res.status_mut() = entry.status();
    let headers = res.headers_mut();
    if let Some(content_type) = entry.content_type() {
        headers.insert(CONTENT_TYPE, content_type.clone());
    }
    if entry.is_stream() {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    headers.insert(AGE, HeaderValue::from(entry.age().as_secs()));
    mark(&mut res, Status::Hit);
    res
}

/// The answer of a follower: the leader's head and its body as it arrives.
fn follow(head: Head, follower: Follower) -> Response<Body> {
    let mut res = Response::new(Body::new(FollowerBody::new(follower)));
    *res.status_mut() = head.status;
    let headers = res.headers_mut();
    if let Some(content_type) = head.content_type {
        if content_type.as_bytes().starts_with(b"text/event-stream") {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        headers.insert(CONTENT_TYPE, content_type);
    }
    headers.insert(AGE, HeaderValue::from_static("0"));
    mark(&mut res, Status::Hit);
    res
}
