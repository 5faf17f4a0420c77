//! [`RateLimitLayer`]: configuration only.

use hashbrown::HashMap;
use std::sync::Arc;

use tower_layer::Layer;

use super::store::Plan;
use super::{DefaultMakeRateLimitKey, Limits, RateLimit, RateLimitKey, RateLimitStore, Scope};
use crate::request::LlmRequest;
use crate::Endpoint;

/// Output tokens reserved for a request without `max_tokens`, and the most reserved
/// for one with a larger `max_tokens` (the settlement charges the real usage).
pub const DEFAULT_OUTPUT_RESERVE: u64 = 4096;

/// Limits requests, tokens and concurrency per scope. See the
/// [module docs](crate::ratelimit).
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer<K = DefaultMakeRateLimitKey> {
    pub(crate) config: Arc<Config>,
    pub(crate) make_key: K,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) store: RateLimitStore,
    pub(crate) global: Option<Limits>,
    /// foldhash (random seed): looked up on every request.
    pub(crate) models: HashMap<Arc<str>, Limits>,
    pub(crate) each_model: Option<Limits>,
    pub(crate) output_reserve: u64,
    /// Whether responses carry the rate-limit headers.
    pub(crate) headers: bool,
}

impl RateLimitLayer {
    /// A layer on a fresh [`MemoryStore`](super::MemoryStore), with no limit yet:
    /// add them with [`global`](Self::global), [`model`](Self::model),
    /// [`each_model`](Self::each_model) and [`per_client_ip`](Self::per_client_ip),
    /// or through a [`MakeRateLimitKey`](super::MakeRateLimitKey).
    pub fn new() -> Self {
        RateLimitLayer {
            config: Arc::new(Config {
                store: RateLimitStore::default(),
                global: None,
                models: HashMap::new(),
                each_model: None,
                output_reserve: DEFAULT_OUTPUT_RESERVE,
                headers: true,
            }),
            make_key: DefaultMakeRateLimitKey::new(),
        }
    }

    /// Limits for each client address, when the request has no other identity (the
    /// documented default: [`ClientAddr`](crate::extension::ClientAddr)).
    pub fn per_client_ip(mut self, limits: Limits) -> Self {
        self.make_key = self.make_key.per_client_ip(limits);
        self
    }
}

impl Default for RateLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> RateLimitLayer<K> {
    /// Keeps the counters in `store` (share one store between layers, or use a
    /// `RedisStore` to share them between processes).
    pub fn store(mut self, store: impl Into<RateLimitStore>) -> Self {
        Arc::make_mut(&mut self.config).store = store.into();
        self
    }

    /// Limits for the whole gateway (every request counts).
    pub fn global(mut self, limits: Limits) -> Self {
        Arc::make_mut(&mut self.config).global = (!limits.is_unlimited()).then_some(limits);
        self
    }

    /// Limits for one model, named as clients send it.
    pub fn model(mut self, name: impl Into<String>, limits: Limits) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        Arc::make_mut(&mut self.config).models.insert(name, limits);
        self
    }

    /// Limits for every other model, each with its own counters.
    pub fn each_model(mut self, limits: Limits) -> Self {
        Arc::make_mut(&mut self.config).each_model = (!limits.is_unlimited()).then_some(limits);
        self
    }

    /// Output tokens reserved when the request sets no `max_tokens`, and the cap on
    /// what is reserved when it sets more (default [`DEFAULT_OUTPUT_RESERVE`]).
    pub fn output_reserve(mut self, tokens: u64) -> Self {
        Arc::make_mut(&mut self.config).output_reserve = tokens;
        self
    }

    /// Whether responses carry the rate-limit headers of their dialect (default: on,
    /// as the OpenAI and Anthropic APIs do). Off keeps the limits and what is left of
    /// them to the gateway, like Envoy's rate limiter by default; a 429 still says
    /// when to retry (`retry-after`).
    ///
    /// ```
    /// use tollgate::ratelimit::{Limits, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new()
    ///     .global(Limits::new().requests_per_minute(600))
    ///     .headers(false);
    /// # let _ = layer;
    /// ```
    pub fn headers(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).headers = on;
        self
    }

    /// Replaces how identity scopes are made (the key maker of the auth layer, a
    /// closure, or `()` for none).
    pub fn make_key_with<K2>(self, make_key: K2) -> RateLimitLayer<K2> {
        RateLimitLayer {
            config: self.config,
            make_key,
        }
    }
}

impl<S, K: Clone> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> RateLimit<S, K> {
        RateLimit {
            inner,
            config: self.config.clone(),
            make_key: self.make_key.clone(),
        }
    }
}

impl Config {
    /// Whether building the plan needs the parsed request (model or token limits).
    pub(crate) fn needs_request(&self, key: Option<&RateLimitKey>) -> bool {
        !self.models.is_empty()
            || self.each_model.is_some()
            || self.global.is_some_and(|l| l.limits_tokens())
            || key.is_some_and(|k| k.scopes.iter().any(|(_, l)| l.limits_tokens()))
    }

    /// Every scope the request counts against, and the tokens to reserve. `None` when
    /// no scope applies.
    pub(crate) fn plan(&self, key: Option<RateLimitKey>, llm: Option<&LlmRequest>) -> Option<Plan> {
        let mut scopes = key.map(|k| k.scopes).unwrap_or_default();
        if let Some(llm) = llm {
            if let Some((name, limits)) = self.models.get_key_value(llm.model()) {
                scopes.push((Scope::Model(name.clone()), *limits));
            } else if let Some(limits) = self.each_model {
                scopes.push((Scope::Model(Arc::from(llm.model())), limits));
            }
        }
        if let Some(limits) = self.global {
            scopes.push((Scope::Global, limits));
        }
        scopes.retain(|(_, l)| !l.is_unlimited());
        if scopes.is_empty() {
            return None;
        }
        let (input, output) = match llm {
            Some(llm) if scopes.iter().any(|(_, l)| l.limits_tokens()) => {
                (llm.estimated_input_tokens(), self.output_estimate(llm))
            }
            _ => (0, 0),
        };
        Some(Plan {
            scopes,
            tokens: input + output,
            input,
        })
    }

    fn output_estimate(&self, llm: &LlmRequest) -> u64 {
        match llm.endpoint() {
            Endpoint::Embeddings => 0,
            _ => llm
                .max_tokens()
                .map_or(self.output_reserve, |m| m.min(self.output_reserve)),
        }
    }
}
