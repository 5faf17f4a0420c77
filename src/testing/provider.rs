//! [`MockProvider`]: the in-process service, its shared state and the routing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::sync::{watch, Semaphore};

use super::body::{EventBody, Events};
use super::script::Script;
use super::{anthropic, embeddings, gemini, openai};
use crate::{Body, BoxError};

/// How many requests [`MockProvider::requests`] keeps.
const RECORDED: usize = 64;

/// A mock LLM provider: a [`tower_service::Service`] answering like the OpenAI,
/// Anthropic and Gemini APIs (by route), deterministically, scripted per request by
/// `x-mock-*` headers.
///
/// Clones share one state (recorded requests, counters, held streams). See the
/// [module docs](super) for the routes, the answers and the header table.
#[derive(Clone)]
pub struct MockProvider {
    shared: Arc<Shared>,
}

/// One request the mock received, as [`MockProvider::requests`] returns it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// The request URI (over HTTP, the path and query only).
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The complete request body.
    pub body: Bytes,
}

/// The state every clone of a [`MockProvider`] shares.
pub(crate) struct Shared {
    recorded: Mutex<VecDeque<RecordedRequest>>,
    request_count: AtomicU64,
    /// Requests whose answer was dropped before its head (see `requests_cancelled`).
    requests_cancelled: AtomicU64,
    streams_completed: AtomicU64,
    /// `streams_cancelled`, in a watch channel so waiters wake when it moves.
    streams_cancelled: watch::Sender<u64>,
    /// Permits for streams held before their last content chunk.
    held: Arc<Semaphore>,
    /// `x-mock-*` headers applied to every request (see [`MockProvider::set_script`]).
    default_script: Mutex<HeaderMap>,
    /// `x-mock-*` headers for the next requests, one set each
    /// (see [`MockProvider::queue_script`]).
    queued_scripts: Mutex<VecDeque<HeaderMap>>,
}

impl Shared {
    pub(crate) fn stream_completed(&self) {
        self.streams_completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_cancelled(&self) {
        self.streams_cancelled.send_modify(|n| *n += 1);
    }

    /// Waits for one permit from [`MockProvider::release_held`] and uses it up.
    pub(crate) fn acquire_held(&self) -> impl Future<Output = ()> + Send + 'static {
        let held = Arc::clone(&self.held);
        async move {
            // The semaphore is never closed, so this only fails if it were.
            if let Ok(permit) = held.acquire_owned().await {
                permit.forget();
            }
        }
    }

    /// The instance's script for one request, the request's own `x-mock-*` headers
    /// laid over it; `None` when the instance has none.
    fn instance_script(&self, request: &HeaderMap) -> Option<HeaderMap> {
        let queued = self
            .queued_scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        let mut headers = match queued {
            Some(headers) => headers,
            None => {
                let default = self
                    .default_script
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if default.is_empty() {
                    return None;
                }
                default.clone()
            }
        };
        for (name, value) in request {
            if name.as_str().starts_with("x-mock-") {
                headers.insert(name.clone(), value.clone());
            }
        }
        Some(headers)
    }

    /// Records a request and returns its number (1 for the first).
    fn record(&self, parts: &http::request::Parts, body: &Bytes) -> u64 {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.len() == RECORDED {
            recorded.pop_front();
        }
        recorded.push_back(RecordedRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        self.request_count.fetch_add(1, Ordering::Relaxed) + 1
    }
}

// ===== impl MockProvider =====

impl MockProvider {
    /// A fresh mock with no recorded requests.
    pub fn new() -> Self {
        MockProvider {
            shared: Arc::new(Shared {
                recorded: Mutex::new(VecDeque::with_capacity(RECORDED)),
                request_count: AtomicU64::new(0),
                requests_cancelled: AtomicU64::new(0),
                streams_completed: AtomicU64::new(0),
                streams_cancelled: watch::Sender::new(0),
                held: Arc::new(Semaphore::new(0)),
                default_script: Mutex::new(HeaderMap::new()),
                queued_scripts: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Scripts every request this mock (and its clones) receives, as if it carried
    /// these `x-mock-*` headers; a header the request sends itself wins. Replaces the
    /// previous default script; an empty list removes it. This is how one instance
    /// fails while another answers the same request (fail-over tests).
    ///
    /// # Panics
    ///
    /// When a name or value is not a valid header (names are lowercase).
    pub fn set_script<'a>(&self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let headers = header_map(headers);
        *self
            .shared
            .default_script
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = headers;
    }

    /// Scripts the next request this mock receives (queued scripts are used one per
    /// request, in order, before the default script of
    /// [`set_script`](Self::set_script)); a header the request sends itself wins.
    ///
    /// # Panics
    ///
    /// When a name or value is not a valid header (names are lowercase).
    pub fn queue_script<'a>(&self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let headers = header_map(headers);
        self.shared
            .queued_scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(headers);
    }

    /// Removes the default script and every queued one.
    pub fn clear_script(&self) {
        self.set_script([]);
        self.shared
            .queued_scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Lets `n` streams that wait before their last content chunk
    /// (`x-mock-hold-last: true`) go on. Permits not yet needed are kept: a stream
    /// that reaches its hold later passes straight through.
    pub fn release_held(&self, n: usize) {
        self.shared.held.add_permits(n);
    }

    /// The last 64 requests received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let recorded = self
            .shared
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recorded.iter().cloned().collect()
    }

    /// How many requests the mock received (counted once their body was read).
    pub fn request_count(&self) -> u64 {
        self.shared.request_count.load(Ordering::Relaxed)
    }

    /// How many requests were dropped before the mock answered with a response head:
    /// the caller gave up while the mock waited out `x-mock-latency-ms` (or read the
    /// request body). Over HTTP, the client closing its connection does that.
    pub fn requests_cancelled(&self) -> u64 {
        self.shared.requests_cancelled.load(Ordering::Relaxed)
    }

    /// How many stream bodies sent every event, including the terminal `data: [DONE]`.
    pub fn streams_completed(&self) -> u64 {
        self.shared.streams_completed.load(Ordering::Relaxed)
    }

    /// How many stream bodies were dropped before they finished: the client or its
    /// connection went away. A stream that ended with a scripted reset is not counted.
    pub fn streams_cancelled(&self) -> u64 {
        *self.shared.streams_cancelled.borrow()
    }

    /// Resolves once [`streams_cancelled`](Self::streams_cancelled) is at least `n`.
    pub async fn wait_for_cancelled(&self, n: u64) {
        let mut rx = self.shared.streams_cancelled.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close meanwhile.
        let _ = rx.wait_for(|count| *count >= n).await;
    }
}

impl Default for MockProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("request_count", &self.request_count())
            .field("streams_completed", &self.streams_completed())
            .field("streams_cancelled", &self.streams_cancelled())
            .finish()
    }
}

impl<B> tower_service::Service<Request<B>> for MockProvider
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let shared = Arc::clone(&self.shared);
        let unanswered = Unanswered(Some(Arc::clone(&shared)));
        ResponseFuture::new(async move {
            let res = handle(shared, req).await;
            unanswered.answered();
            Ok(res)
        })
    }
}

crate::macros::boxed_response_future! {
    /// The response future of [`MockProvider`].
}

/// Counts a request in `requests_cancelled` when dropped before its answer.
struct Unanswered(Option<Arc<Shared>>);

impl Unanswered {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.requests_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn header_map<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    headers
        .into_iter()
        .map(|(name, value)| {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|_| panic!("invalid header name {name:?}"));
            let value = HeaderValue::from_str(value)
                .unwrap_or_else(|_| panic!("invalid header value {value:?}"));
            (name, value)
        })
        .collect()
}

// ===== routing =====

/// The operations the mock serves, recognised by the end of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ChatCompletions,
    Embeddings,
    Models,
    /// Anthropic `POST .../messages`.
    Messages,
    /// Gemini `POST .../models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini {
        model: String,
        stream: bool,
    },
}

impl Route {
    fn new(method: &Method, path: &str) -> Option<Route> {
        let path = path.trim_end_matches('/');
        match *method {
            Method::POST if path.ends_with("/chat/completions") => Some(Route::ChatCompletions),
            Method::POST if path.ends_with("/embeddings") => Some(Route::Embeddings),
            Method::POST if path.ends_with("/messages") => Some(Route::Messages),
            Method::POST => {
                gemini::route(path).map(|(model, stream)| Route::Gemini { model, stream })
            }
            Method::GET if path.ends_with("/models") => Some(Route::Models),
            _ => None,
        }
    }

    /// A 4xx naming the field, in this route's dialect.
    fn bad_request(&self, err: BadRequest) -> Response<Body> {
        match self {
            Route::Messages => anthropic::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                err.message,
            ),
            Route::Gemini { .. } => gemini::error(StatusCode::BAD_REQUEST, err.message),
            _ => openai::error(StatusCode::BAD_REQUEST, err.message, Some(err.param)),
        }
    }
}

/// What a dialect handler answers, before the script's body effects are applied.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A complete `application/json` body.
    Json(Bytes),
    /// A `text/event-stream` played back frame by frame.
    Stream(Events),
}

/// A request body a handler cannot answer: a 400 naming the field at fault, rendered in
/// the route's dialect.
#[derive(Debug)]
pub(crate) struct BadRequest {
    pub(crate) message: String,
    pub(crate) param: &'static str,
}

impl BadRequest {
    pub(crate) fn new(message: impl Into<String>, param: &'static str) -> BadRequest {
        BadRequest {
            message: message.into(),
            param,
        }
    }
}

/// Request context a handler needs besides the body.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// The request number, for ids (`chatcmpl-mock-<n>`, `call_mock_<n>`).
    pub(crate) n: u64,
    pub(crate) script: &'a Script,
}

async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let err: BoxError = err.into();
            let message = format!("Could not read the request body: {err}");
            return openai::error(StatusCode::BAD_REQUEST, message, None);
        }
    };
    let n = shared.record(&parts, &body);

    let Some(route) = Route::new(&parts.method, parts.uri.path()) else {
        return openai::invalid_url(&parts.method, &parts.uri);
    };
    let instance = shared.instance_script(&parts.headers);
    let script = match Script::from_headers(instance.as_ref().unwrap_or(&parts.headers)) {
        Ok(script) => script,
        Err(err) => return route.bad_request(BadRequest::new(err.to_string(), err.header)),
    };
    if !script.latency.is_zero() {
        tokio::time::sleep(script.latency).await;
    }
    if let Some(status) = script.status {
        return match route {
            Route::Messages => anthropic::scripted_error(status),
            Route::Gemini { .. } => gemini::scripted_error(status),
            _ => openai::scripted_error(status, &body),
        };
    }
    let ctx = Ctx { n, script: &script };
    let reply = match &route {
        Route::ChatCompletions => openai::chat_completions(&ctx, &body),
        Route::Embeddings => embeddings::embeddings(&ctx, &body),
        Route::Models => Ok(openai::models(&ctx)),
        Route::Messages => anthropic::messages(&ctx, &parts.headers, &body),
        Route::Gemini { model, stream } => {
            gemini::generate(&ctx, model, *stream, parts.uri.query(), &body)
        }
    };
    match reply {
        Ok(reply) => respond(reply, &script, shared),
        Err(err) => route.bad_request(err),
    }
}

/// Turns a reply into the response, applying the script's delays, hold and reset.
fn respond(reply: Reply, script: &Script, shared: Arc<Shared>) -> Response<Body> {
    match reply {
        Reply::Json(bytes) => {
            let body = if script.reset_after.is_some() {
                Body::new(EventBody::reset())
            } else {
                Body::from(bytes)
            };
            let mut res = Response::new(body);
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
        Reply::Stream(events) => {
            let mut res = Response::new(Body::new(EventBody::stream(events, script, shared)));
            let headers = res.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
    }
}
