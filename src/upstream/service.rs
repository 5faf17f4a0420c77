//! The [`Upstream`] service.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::{timeout_at, Instant};
use tower_service::Service;

use super::body::{IdleTimeoutBody, Prefixed, StreamErrorEvent};
use super::redact::redact;
use super::Target;
use crate::error::{ErrorKind, GatewayError};
use crate::extension::ServedBy;
use crate::header_names::{X_API_KEY, X_TOLLGATE_TARGET};
use crate::outcome::{is_json, observe, observe_read, ObserveOptions, Seen};
use crate::providers::{self, Replace, StreamEncoder, TranslateStream};
use crate::request::LlmRequest;
use crate::sse::Decoder;
use crate::{Body, BoxError, Dialect, Endpoint};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Spliced into stream requests to ask for usage (see `request_stream_usage`).
const STREAM_USAGE_FIELD: &[u8] = br#""stream_options":{"include_usage":true}"#;

/// Error bodies larger than this are cut before they are read for a message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Non-stream answers larger than this are refused (they are read whole to be checked).
const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// Headers of the client's request that are not forwarded: hop-by-hop headers, the
/// client's own credentials, and `accept-encoding` (the gateway reads the answer, so
/// it asks for it uncompressed).
///
/// A `match` (by length, then bytes), not a scan of a list: it runs for every header of
/// every request.
fn dropped_request_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "accept-encoding"
            | "authorization"
            | "x-api-key"
            | "api-key"
            | "x-goog-api-key"
            | "cookie"
            // The client must not pick the organisation or project billed on the
            // gateway's key.
            | "openai-organization"
            | "openai-project"
    )
}

/// Headers of the provider's answer that are not passed on: hop-by-hop headers and
/// facts about the gateway's provider account.
const RESPONSE_HEADERS_DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "set-cookie",
    "openai-organization",
    "openai-project",
    "x-request-id",
];

/// The leaf service that sends requests to providers. See the [module docs](super).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
}

struct Shared {
    client: HttpsClient,
    default_target: Option<Target>,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    request_stream_usage: bool,
}

/// Builds an [`Upstream`]. Made by [`Upstream::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct UpstreamBuilder {
    default_target: Option<Target>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    pool_idle_timeout: Duration,
    request_stream_usage: bool,
}

impl UpstreamBuilder {
    /// The target for requests that carry no [`Target`] extension.
    pub fn default_target(mut self, target: Target) -> Self {
        self.default_target = Some(target);
        self
    }

    /// Time allowed to open a TCP connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed from sending the request to the response head and, for streams,
    /// the first event (default 300 s: a long non-stream answer only starts when it is
    /// complete).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// Longest silence allowed between two frames of an answer (default 120 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long an unused pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Ask OpenAI-dialect providers for usage in streams
    /// (`stream_options.include_usage`) so streams can be metered; the extra chunk is
    /// hidden from clients that did not ask for it. Default true.
    pub fn request_stream_usage(mut self, enabled: bool) -> Self {
        self.request_stream_usage = enabled;
        self
    }

    /// Builds the service and its connection pool (no connection is opened yet).
    pub fn build(self) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("the ring provider supports the default TLS versions")
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .build(https);
        Upstream {
            shared: Arc::new(Shared {
                client,
                default_target: self.default_target,
                first_byte_timeout: self.first_byte_timeout,
                idle_timeout: self.idle_timeout,
                request_stream_usage: self.request_stream_usage,
            }),
        }
    }
}

impl Upstream {
    /// A builder with the default timeouts and no default target.
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder {
            default_target: None,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
            pool_idle_timeout: Duration::from_secs(90),
            request_stream_usage: true,
        }
    }

    /// An upstream that sends every request without a [`Target`] extension to `target`.
    pub fn new(target: Target) -> Upstream {
        Upstream::builder().default_target(target).build()
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("default_target", &self.shared.default_target)
            .field("first_byte_timeout", &self.shared.first_byte_timeout)
            .field("idle_timeout", &self.shared.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Upstream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pool opens connections on demand; there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let shared = self.shared.clone();
        let served = req
            .extensions()
            .get::<Target>()
            .or(shared.default_target.as_ref())
            .map(|t| ServedBy::new(t.shared_name().clone(), t.model().map(Into::into)));
        ResponseFuture::new(async move {
            let mut res = forward(shared, req.map(Body::new)).await;
            if let Some(served) = served {
                res.extensions_mut().insert(served);
            }
            Ok(res)
        })
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Upstream`].
}

async fn forward(shared: Arc<Shared>, mut req: Request<Body>) -> Response<Body> {
    let started = std::time::Instant::now();
    let deadline = Instant::now() + shared.first_byte_timeout;
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => return err.to_response(Dialect::from_path(req.uri().path())),
    };
    let dialect = llm.dialect();
    let target = match req
        .extensions()
        .get::<Target>()
        .or(shared.default_target.as_ref())
    {
        Some(target) => target.clone(),
        None => {
            return GatewayError::new(
                ErrorKind::Internal,
                "No upstream target is configured for this request; give the Upstream a \
                 default target or put a Target in the request extensions.",
            )
            .to_response(dialect)
        }
    };
    let provider = target.dialect();
    let translate = provider != dialect;
    if translate && llm.endpoint() == Endpoint::Embeddings {
        return GatewayError::invalid_request(format!(
            "The model's provider `{}` speaks the {:?} API, which has no embeddings \
             endpoint this gateway translates to.",
            target.name(),
            provider
        ))
        .to_response(dialect);
    }
    let add_usage = !translate
        && shared.request_stream_usage
        && llm.endpoint() == Endpoint::ChatCompletions
        && llm.is_stream()
        && !llm.include_usage();
    let built = if translate {
        build_translated(&req, &llm, &target)
    } else {
        build_request(&req, &llm, &target, add_usage)
    };
    let out = match built {
        Ok(out) => out,
        Err(err) => return err.to_response(dialect),
    };
    let name: Arc<str> = target.shared_name().clone();
    // The outcome reads the provider's own bytes, before any translation.
    let options = ObserveOptions::new(started)
        .endpoint(Some(llm.endpoint()))
        .dialect(provider);
    let secret = target.api_key().map(|k| k.expose());
    let secrets: &[&str] = secret.as_slice();

    let res = match timeout_at(deadline, shared.client.request(out)).await {
        Err(_) => {
            return observed(
                GatewayError::timeout(format!(
                    "The provider `{name}` did not answer within {:?}.",
                    shared.first_byte_timeout
                )),
                dialect,
                options,
            )
        }
        Ok(Err(err)) => {
            let err = redact(&error_chain(&err), secrets);
            tracing::warn!(target = %name, error = %err, "provider request failed");
            return observed(
                GatewayError::upstream(format!(
                    "The provider `{name}` could not be reached: {err}."
                )),
                dialect,
                options,
            );
        }
        Ok(Ok(res)) => res,
    };
    let (mut parts, body) = res.into_parts();
    let body = IdleTimeoutBody::new(body, shared.idle_timeout);
    filter_response_headers(&mut parts.headers);
    // Room for this header and the three the layers above add (fail-over's two, the
    // cache's): one growth of the map instead of two.
    parts.headers.reserve(4);
    if let Some(value) = target.name_value() {
        parts.headers.insert(X_TOLLGATE_TARGET, value.clone());
    }

    if !parts.status.is_success() {
        let bytes = read_capped(body, ERROR_BODY_LIMIT).await;
        let retry_after = parts.headers.get(header::RETRY_AFTER).cloned();
        let err = map_upstream_error(
            parts.status,
            &bytes,
            &name,
            secrets,
            retry_after.as_ref(),
            (provider, dialect),
        );
        tracing::info!(target = %name, status = parts.status.as_u16(), "provider answered with an error");
        return observed(err, dialect, options);
    }

    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        // A complete answer: read it (bounded), check it is JSON, then send it.
        let bytes = match timeout_at(deadline, Limited::new(body, ANSWER_LIMIT).collect()).await {
            Err(_) => {
                return observed(
                    GatewayError::timeout(format!(
                        "The provider `{name}` did not finish its answer in time."
                    )),
                    dialect,
                    options,
                )
            }
            Ok(Err(err)) => {
                return observed(
                    GatewayError::upstream(format!(
                        "The provider `{name}` failed while sending its answer: {}.",
                        redact(&err.to_string(), secrets)
                    )),
                    dialect,
                    options,
                )
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        // One parse checks the answer and reads what the outcome needs from it (usage,
        // finish reason); the observer does not parse it again. JSON of an unexpected
        // shape is passed on as it is, unread, like before.
        let malformed = || {
            tracing::warn!(target = %name, bytes = bytes.len(), "provider answered with malformed JSON");
            observed(
                GatewayError::upstream(format!(
                    "The provider `{name}` returned a malformed response."
                )),
                dialect,
                options,
            )
        };
        if !translate {
            // Passed on byte for byte: the provider's `content-length`, when it sent
            // one, still holds (hyper read exactly that many bytes), and keeping it
            // spares the server a new value per answer.
            let read = match provider {
                Dialect::OpenAi => Seen::of_openai_json(&bytes),
                native => providers::decode_response(native, &bytes)
                    .ok()
                    .map(|res| Seen::of_answer(&res)),
            };
            if read.is_none() && !is_json(&bytes) {
                return malformed();
            }
            let res = Response::from_parts(parts, Full::new(bytes));
            return match read {
                Some(seen) => observe_read(res, options, seen),
                None => observe(res, options),
            };
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        let (translated, seen) = match providers::decode_response(provider, &bytes) {
            Ok(res) => (
                providers::encode_response(dialect, &res),
                Seen::of_answer(&res),
            ),
            Err(_) if !is_json(&bytes) => return malformed(),
            Err(err) => {
                tracing::warn!(target = %name, "provider answer could not be translated");
                return observed(err, dialect, options);
            }
        };
        let translated = Bytes::from(translated.to_string());
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let res = observe_read(Response::from_parts(parts, Full::new(bytes)), options, seen);
        return res.map(|body| Body::new(Replace::new(body, translated)));
    }

    // A stream: commit only once its first event arrived and looks right, so a
    // provider that fails at once can still be answered with a proper error.
    let mut body = Box::pin(body);
    let mut decoder = Decoder::new();
    let mut prefix = VecDeque::new();
    let first = loop {
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return observed(
                    GatewayError::timeout(format!(
                        "The provider `{name}` sent no event within {:?}.",
                        shared.first_byte_timeout
                    )),
                    dialect,
                    options,
                )
            }
            Ok(None) => break None,
            Ok(Some(Err(err))) => {
                return observed(
                    GatewayError::upstream(format!(
                        "The provider `{name}` failed before its first event: {}.",
                        redact(&err.to_string(), secrets)
                    )),
                    dialect,
                    options,
                )
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            decoder.push(&data);
            prefix.push_back(data);
            if let Some(event) =
                std::iter::from_fn(|| decoder.next_event()).find(|e| e.data().is_some())
            {
                break Some(event);
            }
        }
    };
    let first_data = first.as_ref().and_then(|e| e.data());
    match first_data.map(|d| serde_json::from_str::<Value>(d).map_err(|_| d)) {
        Some(Ok(json)) if json.get("error").is_some() => {
            let bytes = serde_json::to_vec(&json).unwrap_or_default();
            return observed(
                map_upstream_error(
                    StatusCode::BAD_GATEWAY,
                    &bytes,
                    &name,
                    secrets,
                    None,
                    (provider, dialect),
                ),
                dialect,
                options,
            );
        }
        Some(Ok(_)) => {}
        Some(Err(data)) if data.trim() == "[DONE]" => {}
        Some(Err(_)) | None => {
            tracing::warn!(target = %name, "provider stream did not start with a JSON event");
            return observed(
                GatewayError::upstream(format!(
                    "The provider `{name}` returned a malformed stream."
                )),
                dialect,
                options,
            );
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Prefixed::new(prefix, body);
    let res = observe(
        Response::from_parts(parts, body),
        options.hide_usage_chunk(add_usage),
    );
    if !translate {
        return res.map(|body| Body::new(StreamErrorEvent::new(body, dialect, name)));
    }
    let encoder = StreamEncoder::new(dialect, llm.include_usage());
    res.map(|body| {
        let body = TranslateStream::new(body, provider, encoder);
        Body::new(StreamErrorEvent::new(body, dialect, name))
    })
}

/// A gateway error as an observed response, so outer layers see its outcome too.
fn observed(err: GatewayError, dialect: Dialect, options: ObserveOptions) -> Response<Body> {
    observe(err.to_response(dialect), options)
}

fn build_request(
    req: &Request<Body>,
    llm: &LlmRequest,
    target: &Target,
    add_usage: bool,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let splice = add_usage && target.model().is_none() && !llm.has_stream_options();
    let body = if splice {
        // Insert the field after the opening brace: every other byte stays the client's.
        let raw = llm.raw();
        let brace = raw
            .iter()
            .position(|&b| b == b'{')
            .expect("LlmRequest checked it is an object");
        let mut out = Vec::with_capacity(raw.len() + STREAM_USAGE_FIELD.len());
        out.extend_from_slice(&raw[..=brace]);
        out.extend_from_slice(STREAM_USAGE_FIELD);
        let rest = &raw[brace + 1..];
        if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        Bytes::from(out)
    } else if add_usage || target.model().is_some() {
        let mut json = llm.json().clone();
        let obj = json
            .as_object_mut()
            .expect("LlmRequest checked it is an object");
        if let Some(model) = target.model() {
            obj.insert("model".into(), Value::String(model.into()));
        }
        if add_usage {
            let options = obj
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        Bytes::from(serde_json::to_vec(&json).expect("a JSON value serializes"))
    } else {
        // Same dialect, nothing to change: the client's bytes, untouched.
        llm.raw().clone()
    };
    // Parsed once per target, unless the client sent a query string.
    let uri = match (req.uri().query(), target.endpoint_uri(llm.endpoint())) {
        (None, Some(uri)) => uri.clone(),
        (query, _) => {
            let mut uri = format!("{}{}", target.base_url(), llm.endpoint().path());
            if let Some(query) = query {
                uri.push('?');
                uri.push_str(query);
            }
            provider_uri(uri)?
        }
    };
    post(req, target, uri, body)
}

/// Translates the client's request into the target's dialect.
fn build_translated(
    req: &Request<Body>,
    llm: &LlmRequest,
    target: &Target,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let mut canonical = providers::decode_request(llm.dialect(), llm.json())?;
    if let Some(model) = target.model() {
        canonical.model = model.to_owned();
    }
    let body = providers::encode_request(target.dialect(), &canonical)?;
    let path = match target.dialect() {
        Dialect::OpenAi => Endpoint::ChatCompletions.path().to_owned(),
        Dialect::Anthropic => Endpoint::Messages.path().to_owned(),
        Dialect::Gemini => providers::gemini::path(&canonical.model, canonical.stream),
    };
    let body = Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"));
    let uri = provider_uri(format!("{}{}", target.base_url(), path))?;
    post(req, target, uri, body)
}

fn provider_uri(uri: String) -> Result<Uri, GatewayError> {
    uri.parse().map_err(|err| {
        GatewayError::new(
            ErrorKind::Internal,
            format!("Could not build the provider URL: {err}."),
        )
    })
}

/// The request to the provider: `body` posted to `uri`, with the headers [`set_headers`]
/// keeps and sets. Built in place rather than through `Request::builder`, which moves
/// its parts through a `Result` at each step; the header map is sized for the client's
/// headers plus the three the upstream may set, so it never grows.
fn post(
    req: &Request<Body>,
    target: &Target,
    uri: Uri,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let mut headers = HeaderMap::with_capacity(req.headers().len() + 3);
    set_headers(req, &mut headers, target)?;
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = Method::POST;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    Ok(out)
}

/// Copies the client's headers that may go on, then sets the content type, the host of
/// a plain-HTTP target and the target's credential the way its dialect expects it.
fn set_headers(
    req: &Request<Body>,
    headers: &mut HeaderMap,
    target: &Target,
) -> Result<(), GatewayError> {
    let anthropic = target.dialect() == Dialect::Anthropic;
    for (name, value) in req.headers() {
        let dropped = dropped_request_header(name.as_str())
            || name.as_str().starts_with("x-tollgate-")
            || (!anthropic && name.as_str().starts_with("anthropic-"));
        if !dropped {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(host) = target.host_value() {
        headers.insert(header::HOST, host.clone());
    }
    if anthropic && !headers.contains_key("anthropic-version") {
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(providers::anthropic::API_VERSION),
        );
    }
    if target.api_key().is_some() {
        let name = match target.dialect() {
            Dialect::OpenAi => header::AUTHORIZATION,
            Dialect::Anthropic => X_API_KEY,
            Dialect::Gemini => HeaderName::from_static("x-goog-api-key"),
        };
        // Made once with the target (sensitive), not formatted per request.
        let value = target.auth_value().cloned().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Internal,
                format!(
                    "The API key of target `{}` is not a valid header value.",
                    target.name()
                ),
            )
        })?;
        headers.insert(name, value);
    }
    Ok(())
}

fn filter_response_headers(headers: &mut HeaderMap) {
    // One pass over the few headers the provider sent first: most answers carry none of
    // the dropped ones, and a removal by name parses and hashes the name each time.
    if !headers
        .keys()
        .any(|name| RESPONSE_HEADERS_DROPPED.contains(&name.as_str()))
    {
        return;
    }
    for name in RESPONSE_HEADERS_DROPPED {
        headers.remove(*name);
    }
}

/// Reads up to `limit` bytes of a body; errors end the read.
async fn read_capped<B>(body: B, limit: usize) -> Bytes
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(limit - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            _ => break,
        }
    }
    out.into()
}

/// Turns a provider's error answer into a gateway error with the provider's message,
/// credentials redacted. `dialects` is (provider, client): the provider's error
/// `type`, `code` and `param` are passed on only when the client speaks its dialect.
fn map_upstream_error(
    status: StatusCode,
    body: &[u8],
    name: &str,
    secrets: &[&str],
    retry_after: Option<&HeaderValue>,
    dialects: (Dialect, Dialect),
) -> GatewayError {
    let (provider, client) = dialects;
    // The provider's own shape first, then any other (a proxy in between may differ).
    let parsed = [
        provider,
        Dialect::OpenAi,
        Dialect::Anthropic,
        Dialect::Gemini,
    ]
    .into_iter()
    .find_map(|d| providers::decode_error(d, body));
    let message = match &parsed {
        Some(e) => e.message.clone(),
        None => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(500).collect();
            if text.trim().is_empty() {
                format!("status {status}")
            } else {
                text
            }
        }
    };
    let message = redact(&message, secrets);
    let mut err = match status.as_u16() {
        401 | 403 => GatewayError::upstream(format!(
            "The provider `{name}` rejected the gateway's credentials ({status}): {message} \
             Check the API key configured for this target."
        )),
        429 => {
            let err = GatewayError::new(
                ErrorKind::RateLimited,
                format!("The provider `{name}` is rate limiting the gateway: {message}"),
            );
            match retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
            {
                Some(secs) => err.with_retry_after(secs),
                None => err,
            }
        }
        404 => GatewayError::new(ErrorKind::ModelNotFound, message),
        400..=499 => GatewayError::invalid_request(message).with_status(status),
        _ => GatewayError::upstream(format!(
            "The provider `{name}` failed ({status}): {message}"
        )),
    };
    let passes = (400..500).contains(&status.as_u16()) && !matches!(status.as_u16(), 401 | 403);
    if let (true, true, Some(parsed)) = (passes, provider == client, parsed) {
        if let Some(t) = parsed.error_type {
            err = err.with_type(t);
        }
        if let Some(code) = parsed.code {
            err = err.with_code(code);
        }
        if let Some(param) = parsed.param {
            err = err.with_param(param);
        }
    }
    err
}

/// The error and its causes on one line (hyper-util's top error says little alone).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
