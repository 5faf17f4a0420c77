//! The semantic cache: a request whose prompt means the same as an earlier one gets
//! that one's cached answer.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::key::semantic_scope;
use super::policy::{CachePolicy, Directives, CACHE_STATUS_HEADER};
use super::service::ResponseFuture;
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// The response header giving the similarity of a semantic hit (0 to 1).
pub const SIMILARITY_HEADER: &str = "x-tollgate-cache-similarity";

/// Turns text into a vector, for [`SemanticCacheLayer`].
pub trait Embed: Send + Sync + 'static {
    /// The embedding of `text`.
    fn embed(
        &self,
        text: String,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<f32>, BoxError>> + Send>>;
}

/// Embeds through any OpenAI-compatible embeddings endpoint reached by a service: an
/// [`Upstream`](crate::upstream::Upstream) with a target, the mock provider, your own
/// client. It posts `{"model", "input"}` to `/v1/embeddings` and reads
/// `data[0].embedding`.
#[derive(Clone)]
pub struct EmbeddingClient<S> {
    service: S,
    model: Arc<str>,
}

impl<S> fmt::Debug for EmbeddingClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingClient")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl<S> EmbeddingClient<S> {
    /// Embeds with `model` through `service`.
    pub fn new(service: S, model: impl Into<Arc<str>>) -> Self {
        EmbeddingClient {
            service,
            model: model.into(),
        }
    }
}

impl<S, B> Embed for EmbeddingClient<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn embed(
        &self,
        text: String,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<f32>, BoxError>> + Send>> {
        let mut service = self.service.clone();
        let body = serde_json::json!({"model": &*self.model, "input": text}).to_string();
        Box::pin(async move {
            let req = Request::post("/v1/embeddings")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))?;
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let res = service.call(req).await.map_err(Into::into)?;
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(Into::into)?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("the embeddings endpoint answered {status}").into());
            }
            let json: Value = serde_json::from_slice(&bytes)?;
            let vector = json["data"][0]["embedding"]
                .as_array()
                .ok_or("the embeddings answer has no data[0].embedding array")?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or("the embedding holds something that is not a number")?;
            Ok(vector)
        })
    }
}

/// A semantic cache in front of [`CacheLayer`](super::CacheLayer) (opt-in).
///
/// For each cacheable chat or messages request it embeds the prompt (the system prompt
/// and every message's text) with an [`Embed`], and looks for an earlier request of the
/// same *scope* (tenant, endpoint, model, stream or not, and every body field but the
/// prompt, all exactly equal) whose prompt's cosine similarity reaches the threshold.
/// On a match it asks the exact cache below for that earlier request's answer with
/// `Cache-Control: only-if-cached`: a hit is returned (`x-tollgate-cache: hit` and
/// [`SIMILARITY_HEADER`]); if the entry is gone the request goes on as itself. Every
/// request that gets a 2xx is remembered for later matches.
///
/// The exact cache keeps doing the storing, replay, tenant scoping and single-flight;
/// this layer only decides which earlier request a new one is "the same as". Requests
/// the [`CachePolicy`] would not cache, embeddings requests, and `Cache-Control:
/// no-store` / `no-cache` pass through. An embedding that fails (or takes longer than
/// the timeout, 2 s by default) is a plain miss, logged.
///
/// Memory is bounded: at most `max_entries` remembered prompts per scope (the oldest go
/// first), at most 10,000 scopes, each forgotten after the TTL (1 hour) without use.
///
/// ```
/// use tollgate::cache::{CacheLayer, EmbeddingClient, SemanticCacheLayer};
/// use tollgate::testing::MockProvider;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tollgate::BoxError> {
/// let provider = MockProvider::new();
/// // Any OpenAI-compatible embeddings endpoint; the mock embeds by shared words.
/// let embedder = EmbeddingClient::new(MockProvider::new(), "mock/embed");
/// let svc = ServiceBuilder::new()
///     .layer(SemanticCacheLayer::new(embedder).threshold(0.9))
///     .layer(CacheLayer::new())
///     .service(provider.clone());
///
/// let ask = |q: &str| {
///     let body = format!(r#"{{"model":"mock/echo","temperature":0,"messages":[{{"role":"user","content":"{q}"}}]}}"#);
///     http::Request::post("/v1/chat/completions").body(tollgate::Body::from(body)).unwrap()
/// };
/// let first = svc.clone().oneshot(ask("what is the capital of france")).await?;
/// http_body_util::BodyExt::collect(first.into_body()).await?; // stored at its end
/// let second = svc.oneshot(ask("what is the capital city of france")).await?;
/// assert_eq!(second.headers()["x-tollgate-cache"], "hit");
/// assert_eq!(provider.request_count(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct SemanticCacheLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    embed: Arc<dyn Embed>,
    threshold: f32,
    policy: CachePolicy,
    max_entries: usize,
    timeout: Duration,
    index: moka::sync::Cache<[u8; 32], Arc<Mutex<VecDeque<Remembered>>>>,
}

/// A prompt seen before: its unit-length embedding and the request body that was sent.
struct Remembered {
    vector: Box<[f32]>,
    body: Bytes,
}

impl fmt::Debug for SemanticCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCacheLayer")
            .field("threshold", &self.shared.threshold)
            .field("policy", &self.shared.policy)
            .field("max_entries", &self.shared.max_entries)
            .finish_non_exhaustive()
    }
}

/// The index every service of a layer shares: at most 10,000 scopes, each forgotten
/// after `ttl` without use.
fn index(ttl: Duration) -> moka::sync::Cache<[u8; 32], Arc<Mutex<VecDeque<Remembered>>>> {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_idle(ttl)
        .build()
}

impl SemanticCacheLayer {
    /// A semantic cache using `embed`, with a similarity threshold of 0.95, the
    /// deterministic [`CachePolicy`], 256 prompts per scope and a one-hour TTL.
    pub fn new(embed: impl Embed) -> Self {
        SemanticCacheLayer {
            shared: Arc::new(Shared {
                embed: Arc::new(embed),
                threshold: 0.95,
                policy: CachePolicy::Deterministic,
                max_entries: 256,
                timeout: Duration::from_secs(2),
                index: index(Duration::from_secs(3600)),
            }),
        }
    }

    /// The settings, while the layer is being built (no service holds them yet).
    fn settings(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// The cosine similarity from which two prompts are the same question (default
    /// 0.95; clamped to 0..=1). Tune it to your embedding model.
    pub fn threshold(mut self, threshold: f32) -> Self {
        self.settings().threshold = threshold.clamp(0.0, 1.0);
        self
    }

    /// Which requests take part (default [`CachePolicy::Deterministic`]); use the same
    /// policy as the exact cache below.
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.settings().policy = policy;
        self
    }

    /// Prompts remembered per scope (default 256).
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.settings().max_entries = entries.max(1);
        self
    }

    /// How long a scope is remembered without use (default 1 hour).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings().index = index(ttl);
        self
    }

    /// How long an embedding may take before the request is treated as a miss
    /// (default 2 s).
    pub fn embed_timeout(mut self, timeout: Duration) -> Self {
        self.settings().timeout = timeout;
        self
    }
}

impl<S> Layer<S> for SemanticCacheLayer {
    type Service = SemanticCache<S>;

    fn layer(&self, inner: S) -> SemanticCache<S> {
        SemanticCache {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`SemanticCacheLayer`].
pub struct SemanticCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SemanticCache<S> {
    crate::macros::inner_accessors!();
}

impl<S: Clone> Clone for SemanticCache<S> {
    fn clone(&self) -> Self {
        SemanticCache {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SemanticCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCache")
            .field("inner", &self.inner)
            .field("threshold", &self.shared.threshold)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<Request<B>> for SemanticCache<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
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
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(serve(inner, self.shared.clone(), req.map(Body::new)))
    }
}

async fn serve<S, ResB>(
    mut inner: S,
    shared: Arc<Shared>,
    mut req: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let is_chat = matches!(
        Endpoint::from_path(req.uri().path()),
        Some(Endpoint::ChatCompletions | Endpoint::Messages)
    );
    if !is_chat {
        return Ok(inner.call(req).await?.map(Body::new));
    }
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
    };
    let eligible = shared.policy.allows(&llm)
        && Directives::from_headers(req.headers())
            .is_ok_and(|d| !d.no_store && !d.no_cache && !d.only_if_cached);
    let text = eligible.then(|| prompt_text(llm.json())).flatten();
    let Some(text) = text else {
        return Ok(inner.call(req).await?.map(Body::new));
    };
    let vector = match tokio::time::timeout(shared.timeout, shared.embed.embed(text)).await {
        Ok(Ok(v)) => unit(v),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "semantic cache: embedding failed; a plain miss");
            None
        }
        Err(_) => {
            tracing::warn!("semantic cache: embedding timed out; a plain miss");
            None
        }
    };
    let Some(vector) = vector else {
        return Ok(inner.call(req).await?.map(Body::new));
    };
    let scope = semantic_scope(&req, &llm);
    let slot = shared.index.get_with(scope, Default::default);

    if let Some((similarity, body)) = nearest(&slot, &vector, shared.threshold) {
        let probe = probe(&req, body);
        std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
        let res = inner.call(probe).await?;
        let hit = res.status() != StatusCode::GATEWAY_TIMEOUT
            && res
                .headers()
                .get(CACHE_STATUS_HEADER)
                .is_some_and(|v| v == "hit");
        if hit {
            let mut res = res.map(Body::new);
            if let Ok(value) = HeaderValue::from_str(&format!("{similarity:.4}")) {
                res.headers_mut().insert(SIMILARITY_HEADER, value);
            }
            return Ok(res);
        }
        // The exact entry is gone (expired, evicted, never stored): ask as ourselves.
        std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    }
    let body = llm.raw().clone();
    let res = inner.call(req).await?;
    if res.status().is_success() {
        let mut entries = slot.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= shared.max_entries {
            entries.pop_front();
        }
        entries.push_back(Remembered {
            vector: vector.into(),
            body,
        });
    }
    Ok(res.map(Body::new))
}

/// The earlier prompt most similar to `vector`, if it reaches `threshold`.
fn nearest(
    slot: &Mutex<VecDeque<Remembered>>,
    vector: &[f32],
    threshold: f32,
) -> Option<(f32, Bytes)> {
    let entries = slot.lock().unwrap_or_else(|e| e.into_inner());
    entries
        .iter()
        .filter(|e| e.vector.len() == vector.len())
        .map(|e| (dot(&e.vector, vector), e))
        .filter(|(similarity, _)| *similarity >= threshold)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(similarity, e)| (similarity, e.body.clone()))
}

/// The earlier request, sent with this request's headers and extensions (so the same
/// tenant scope) and `Cache-Control: only-if-cached`.
fn probe(req: &Request<Body>, body: Bytes) -> Request<Body> {
    let mut probe = Request::new(Body::from(body.clone()));
    *probe.method_mut() = req.method().clone();
    *probe.uri_mut() = req.uri().clone();
    *probe.version_mut() = req.version();
    *probe.headers_mut() = req.headers().clone();
    probe
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("only-if-cached"));
    probe
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *probe.extensions_mut() = req.extensions().clone();
    // The probe's body is another request: parsed again below.
    probe.extensions_mut().remove::<LlmRequest>();
    probe
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `v` scaled to unit length (`None` for an empty or zero vector).
fn unit(v: Vec<f32>) -> Option<Vec<f32>> {
    let norm = dot(&v, &v).sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| v.into_iter().map(|x| x / norm).collect())
}

/// The text of the prompt: the system prompt and each message as `role: text`, in
/// order (OpenAI chat and Anthropic messages; text parts only).
fn prompt_text(json: &Value) -> Option<String> {
    let mut text = String::new();
    if let Some(system) = json.get("system") {
        push_content(&mut text, "system", system);
    }
    for message in json.get("messages")?.as_array()? {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        if let Some(content) = message.get("content") {
            push_content(&mut text, role, content);
        }
    }
    (!text.is_empty()).then_some(text)
}

fn push_content(text: &mut String, role: &str, content: &Value) {
    let mut add = |s: &str| {
        text.push_str(role);
        text.push_str(": ");
        text.push_str(s);
        text.push('\n');
    };
    match content {
        Value::String(s) => add(s),
        Value::Array(parts) => {
            for part in parts {
                if let Some(s) = part.get("text").and_then(Value::as_str) {
                    add(s);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_prompt_is_the_system_prompt_and_every_message_text() {
        let openai = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        ]});
        assert_eq!(
            prompt_text(&openai).unwrap(),
            "system: be brief\nuser: hi\n"
        );
        let anthropic = json!({"system": [{"type": "text", "text": "be kind"}], "messages": [{"role": "user", "content": "yo"}]});
        assert_eq!(
            prompt_text(&anthropic).unwrap(),
            "system: be kind\nuser: yo\n"
        );
        assert_eq!(prompt_text(&json!({"messages": []})), None);
        assert_eq!(prompt_text(&json!({"input": "x"})), None);
    }

    #[test]
    fn vectors_are_compared_at_unit_length() {
        let a = unit(vec![3.0, 4.0]).unwrap();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(unit(vec![0.0, 0.0]), None);
        assert_eq!(unit(vec![]), None);
        let slot = Mutex::new(VecDeque::from([
            Remembered {
                vector: a.into(),
                body: Bytes::from_static(b"a"),
            },
            Remembered {
                vector: unit(vec![0.0, 1.0]).unwrap().into(),
                body: Bytes::from_static(b"b"),
            },
        ]));
        let (similarity, body) = nearest(&slot, &unit(vec![0.0, 2.0]).unwrap(), 0.9).unwrap();
        assert_eq!((similarity, &body[..]), (1.0, &b"b"[..]));
        assert!(
            nearest(&slot, &unit(vec![1.0, 0.0]).unwrap(), 0.9).is_none(),
            "0.6 < 0.9"
        );
    }
}
