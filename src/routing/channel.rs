//! [`Channel`]: one provider endpoint with its keys, models and live state.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::health::{Block, HealthPolicy, HealthState};
use super::{Clock, Health};
use crate::upstream::{ApiKey, Target};

/// One way to reach models: a provider endpoint (dialect and base URL), one or more
/// upstream keys, the models it serves and how it is weighed against other channels.
///
/// Built with [`Channel::builder`] and handed to a
/// [`RouterBuilder`](super::RouterBuilder); the [`Router`](super::Router) gives it back
/// (cheap to clone, one `Arc`) to enable or disable it at run time and to read its
/// health and statistics. See the [module docs](super).
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) id: Arc<str>,
    /// The id as an `x-tollgate-target` value (`None` if it is not a valid one).
    pub(crate) header: Option<http::HeaderValue>,
    pub(crate) provider: Arc<str>,
    pub(crate) index: usize,
    pub(crate) keys: Box<[KeySlot]>,
    pub(crate) models: Box<[ModelEntry]>,
    pub(crate) prefixes: Box<[Arc<str>]>,
    pub(crate) any_model: bool,
    pub(crate) auto: bool,
    pub(crate) weight: u32,
    pub(crate) priority: u32,
    pub(crate) cost: Option<f64>,
    #[cfg_attr(not(feature = "metering"), allow(dead_code))]
    pub(crate) price_ref: Option<String>,
    pub(crate) enabled: AtomicBool,
    pub(crate) next_key: AtomicUsize,
    pub(crate) stats: Stats,
    pub(crate) health: HealthState,
    pub(crate) clock: Clock,
    pub(crate) policy: Arc<HealthPolicy>,
}

/// A model a channel serves: the public name and the name sent upstream.
#[derive(Debug, Clone)]
pub(crate) struct ModelEntry {
    pub(crate) name: Arc<str>,
    pub(crate) upstream: Arc<str>,
    pub(crate) cost: Option<f64>,
}

/// One upstream key of a channel, its ready target and its counters.
pub(crate) struct KeySlot {
    pub(crate) target: Target,
    /// Clock milliseconds until which the key is cooling down (0: not cooling).
    pub(crate) cooldown_until: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
    pub(crate) completion_tokens: AtomicU64,
    /// EWMA of the time to first byte in nanoseconds, as `f64` bits (0: no sample).
    pub(crate) latency_ns: AtomicU64,
}

/// Live statistics of a channel, fed by every attempt's result.
pub(crate) struct Stats {
    pub(crate) in_flight: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Peak-EWMA of the time to first byte in nanoseconds, as `f64` bits.
    pub(crate) latency_ns: AtomicU64,
    /// Clock milliseconds of the last latency sample (0: cold, no sample yet).
    pub(crate) latency_at: AtomicU64,
    /// EWMA of the success ratio (1.0 when cold), as `f64` bits.
    pub(crate) success: AtomicU64,
    /// The last [`RECENT`] times to first byte in microseconds (0: empty slot), written
    /// round-robin without a lock, for percentiles.
    pub(crate) recent: [std::sync::atomic::AtomicU32; RECENT],
    pub(crate) recent_next: AtomicU64,
}

/// How many recent times to first byte a channel keeps for percentiles.
pub(crate) const RECENT: usize = 64;

impl Stats {
    fn new() -> Stats {
        Stats {
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency_ns: AtomicU64::new(0f64.to_bits()),
            latency_at: AtomicU64::new(0),
            success: AtomicU64::new(1f64.to_bits()),
            recent: std::array::from_fn(|_| std::sync::atomic::AtomicU32::new(0)),
            recent_next: AtomicU64::new(0),
        }
    }
}

fn load_f64(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

fn store_f64(a: &AtomicU64, v: f64) {
    a.store(v.to_bits(), Ordering::Relaxed);
}

/// Builds a [`Channel`]. Made by [`Channel::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ChannelBuilder {
    pub(crate) id: Arc<str>,
    target: Target,
    provider: Option<Arc<str>>,
    keys: Vec<ApiKey>,
    models: Vec<(Arc<str>, Arc<str>)>,
    prefixes: Vec<Arc<str>>,
    any_model: bool,
    auto: bool,
    weight: u32,
    priority: u32,
    enabled: bool,
    cost: Option<f64>,
    price_ref: Option<String>,
    policy: Option<HealthPolicy>,
}

impl ChannelBuilder {
    /// Thresholds for this channel instead of the router's
    /// [`RouterBuilder::health`](super::RouterBuilder::health).
    pub fn health(mut self, policy: HealthPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Adds an upstream key. Requests rotate over a channel's keys, skipping keys that
    /// cool down after a 429. Without any key, the target's own key (if any) is used.
    pub fn key(mut self, key: ApiKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Adds several upstream keys (see [`key`](Self::key)).
    pub fn keys(mut self, keys: impl IntoIterator<Item = ApiKey>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Serves `model` under its own name.
    pub fn model(self, model: impl Into<Arc<str>>) -> Self {
        let model = model.into();
        self.model_as(model.clone(), model)
    }

    /// Serves `model` to clients and sends `upstream` to the provider instead
    /// (`gpt-4o` → `my-azure-deployment`).
    pub fn model_as(mut self, model: impl Into<Arc<str>>, upstream: impl Into<Arc<str>>) -> Self {
        self.models.push((model.into(), upstream.into()));
        self
    }

    /// Serves every model whose name starts with `prefix` (`claude-`, `mock/`), sent
    /// upstream unchanged, when no channel lists the name itself. The longest matching
    /// prefix wins across channels; `""` is a catch-all for names nothing else serves.
    pub fn model_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Serves any model asked for by its prefixed name (`<id>/<model>`,
    /// `<provider>/<model>` or `<model>:<id>`), passing the bare name through.
    pub fn any_model(mut self) -> Self {
        self.any_model = true;
        self
    }

    /// The provider name used in `provider/model` and `model:provider` requests
    /// (default: the target's name).
    pub fn provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// The relative share of traffic for weighted strategies (default 1; 0 only
    /// receives traffic when no other channel can take it).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The priority for [`Priority`](super::Priority): lower goes first (default 0).
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Whether the channel starts enabled (default true).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Whether `auto` may pick this channel (default true); `auto` sends the channel
    /// its first listed model.
    pub fn auto(mut self, auto: bool) -> Self {
        self.auto = auto;
        self
    }

    /// The channel's cost in USD per million tokens (input and output averaged), for
    /// [`LowestCost`](super::LowestCost) and [`Composite`](super::Composite). Overrides
    /// prices from a table.
    pub fn cost(mut self, usd_per_million: f64) -> Self {
        self.cost = Some(usd_per_million);
        self
    }

    /// The model name to look up in a price table for this channel's cost (default: the
    /// upstream model name of each request). See
    /// [`RouterBuilder::prices`](super::RouterBuilder::prices).
    pub fn price_ref(mut self, model: impl Into<String>) -> Self {
        self.price_ref = Some(model.into());
        self
    }

    pub(crate) fn build(
        self,
        index: usize,
        clock: Clock,
        policy: Arc<HealthPolicy>,
    ) -> Result<Channel, String> {
        if !self.any_model && self.models.is_empty() && self.prefixes.is_empty() {
            return Err(format!(
                "channel `{}` serves no model: add `model`, `model_as`, `model_prefix` or `any_model`",
                self.id
            ));
        }
        let base = Target::with_dialect(
            self.id.clone(),
            self.target.base_url(),
            self.target.dialect(),
        )
        .map_err(|e| e.to_string())?;
        let mut keys = self.keys;
        if keys.is_empty() {
            keys.extend(self.target.api_key().cloned());
        }
        let slot = |target: Target| KeySlot {
            target,
            cooldown_until: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            latency_ns: AtomicU64::new(0f64.to_bits()),
        };
        let keys: Box<[KeySlot]> = if keys.is_empty() {
            vec![slot(base)].into()
        } else {
            keys.into_iter()
                .map(|k| slot(base.clone().with_api_key(k)))
                .collect()
        };
        let policy = self.policy.map(Arc::new).unwrap_or(policy);
        let cost = self.cost;
        let models = self
            .models
            .into_iter()
            .map(|(name, upstream)| ModelEntry {
                name,
                upstream,
                cost,
            })
            .collect();
        Ok(Channel {
            inner: Arc::new(Inner {
                header: http::HeaderValue::from_str(&self.id).ok(),
                provider: self.provider.unwrap_or_else(|| self.target.name().into()),
                id: self.id,
                index,
                keys,
                models,
                prefixes: self.prefixes.into(),
                any_model: self.any_model,
                auto: self.auto,
                weight: self.weight,
                priority: self.priority,
                cost,
                price_ref: self.price_ref,
                enabled: AtomicBool::new(self.enabled),
                next_key: AtomicUsize::new(0),
                stats: Stats::new(),
                health: HealthState::new(),
                clock,
                policy,
            }),
        })
    }
}

// ===== impl Channel =====

/// A channel's statistics, as [`Channel::stats`] returns them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Attempts sent to the channel.
    pub requests: u64,
    /// Attempts that failed (connect error, timeout, 5xx, stream cut).
    pub failures: u64,
    /// Attempts waiting for their first byte right now.
    pub in_flight: u64,
    /// Peak-EWMA of the time to first byte; `None` before the first sample.
    pub latency: Option<Duration>,
    /// EWMA of the success ratio, from 0 to 1 (1 before the first sample).
    pub success_rate: f64,
}

/// One upstream key's counters, as [`Channel::key_stats`] returns them. The key itself
/// is never shown.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key's position in the channel's list.
    pub index: usize,
    /// Attempts made with the key.
    pub requests: u64,
    /// Attempts answered with a success status.
    pub successes: u64,
    /// Attempts that failed (5xx, timeout, connect error).
    pub failures: u64,
    /// Attempts answered with 429.
    pub throttled: u64,
    /// Prompt tokens the provider reported for the key's answers.
    pub prompt_tokens: u64,
    /// Completion tokens the provider reported (or estimated) for the key's answers.
    pub completion_tokens: u64,
    /// EWMA of the time to first byte; `None` before the first success.
    pub latency: Option<Duration>,
    /// Time left in the key's 429 cool-down.
    pub cooldown: Option<Duration>,
}

impl Channel {
    /// A builder for a channel named `id` that sends requests to `target`'s dialect and
    /// base URL. The target's name becomes the provider name (see
    /// [`ChannelBuilder::provider`]); its key, if any, the default key.
    pub fn builder(id: impl Into<Arc<str>>, target: Target) -> ChannelBuilder {
        ChannelBuilder {
            id: id.into(),
            target,
            provider: None,
            keys: Vec::new(),
            models: Vec::new(),
            prefixes: Vec::new(),
            any_model: false,
            auto: true,
            weight: 1,
            priority: 0,
            enabled: true,
            cost: None,
            price_ref: None,
            policy: None,
        }
    }

    /// The channel's id (also the `x-tollgate-target` of its answers).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The provider name matched by `provider/model` and `model:provider`.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The model names clients use for this channel: names, `prefix*` for the
    /// prefixes it serves, and `*` when it serves any model by its prefixed name.
    pub fn models(&self) -> Vec<String> {
        let inner = &self.inner;
        let names = inner.models.iter().map(|m| m.name.to_string());
        let prefixes = inner.prefixes.iter().map(|p| format!("{p}*"));
        let any = inner.any_model.then(|| "*".to_owned());
        let mut all: Vec<String> = names.chain(prefixes).chain(any).collect();
        let mut seen = std::collections::HashSet::new();
        all.retain(|m| seen.insert(m.clone()));
        all
    }

    /// The weight for weighted strategies.
    pub fn weight(&self) -> u32 {
        self.inner.weight
    }

    /// The priority (lower goes first).
    pub fn priority(&self) -> u32 {
        self.inner.priority
    }

    /// Whether the channel takes traffic (see [`set_enabled`](Self::set_enabled)).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables the channel at run time; requests already routed finish.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.enabled.store(enabled, Ordering::Relaxed);
    }

    /// The channel's health now: healthy, degraded (still routed, after the healthy
    /// channels), down (no traffic until its recovery time) or with its circuit open.
    pub fn health(&self) -> Health {
        let now = self.inner.clock.now_ms();
        self.inner.health.current(now)
    }

    /// The channel's live statistics.
    pub fn stats(&self) -> ChannelStats {
        let s = &self.inner.stats;
        let latency = (s.latency_at.load(Ordering::Relaxed) != 0)
            .then(|| Duration::from_nanos(load_f64(&s.latency_ns) as u64));
        ChannelStats {
            requests: s.requests.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            latency,
            success_rate: load_f64(&s.success),
        }
    }

    /// The counters of each upstream key, in the order they were added.
    pub fn key_stats(&self) -> Vec<KeyStats> {
        let now = self.inner.clock.now_ms();
        self.inner
            .keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let until = k.cooldown_until.load(Ordering::Relaxed);
                let latency = load_f64(&k.latency_ns);
                KeyStats {
                    index,
                    requests: k.requests.load(Ordering::Relaxed),
                    successes: k.successes.load(Ordering::Relaxed),
                    failures: k.failures.load(Ordering::Relaxed),
                    throttled: k.throttled.load(Ordering::Relaxed),
                    prompt_tokens: k.prompt_tokens.load(Ordering::Relaxed),
                    completion_tokens: k.completion_tokens.load(Ordering::Relaxed),
                    latency: (latency > 0.0).then(|| Duration::from_nanos(latency as u64)),
                    cooldown: (until > now).then(|| Duration::from_millis(until - now)),
                }
            })
            .collect()
    }

    /// The latency the strategies use: the peak-EWMA, decayed towards nothing once
    /// the last sample is older than ten decay periods (so a channel that was slow
    /// and is no longer tried gets explored again); `None` when cold.
    pub(crate) fn latency_estimate(&self, now: u64) -> Option<f64> {
        let s = &self.inner.stats;
        let at = s.latency_at.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let tau = self.inner.policy.latency_decay.as_millis().max(1) as u64;
        if now.saturating_sub(at) > 10 * tau {
            return None;
        }
        Some(load_f64(&s.latency_ns))
    }

    pub(crate) fn success_rate(&self) -> f64 {
        load_f64(&self.inner.stats.success)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.inner.stats.in_flight.load(Ordering::Relaxed)
    }

    /// The entry for `model`, if the channel lists it.
    pub(crate) fn entry(&self, model: &str) -> Option<&ModelEntry> {
        self.inner.models.iter().find(|m| &*m.name == model)
    }

    /// Picks the next key that is not cooling down, round robin.
    pub(crate) fn pick_key(&self, now: u64) -> Option<usize> {
        let keys = &self.inner.keys;
        if keys.len() == 1 {
            return (keys[0].cooldown_until.load(Ordering::Relaxed) <= now).then_some(0);
        }
        let start = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        (0..keys.len())
            .map(|i| (start + i) % keys.len())
            .find(|&i| keys[i].cooldown_until.load(Ordering::Relaxed) <= now)
    }

    /// Whether key `key` is cooling down at `now`.
    pub(crate) fn key_cooling(&self, key: usize, now: u64) -> bool {
        self.inner.keys[key].cooldown_until.load(Ordering::Relaxed) > now
    }

    /// The time until the first key's cool-down ends (zero when a key is available).
    pub(crate) fn cooldown_left(&self, now: u64) -> Duration {
        let until = self
            .inner
            .keys
            .iter()
            .map(|k| k.cooldown_until.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        Duration::from_millis(until.saturating_sub(now))
    }

    /// Whether the channel may take a request now.
    /// Whether the channel may take a request now; `Some` permit when admitted as one
    /// of the bounded trials of a channel on probation.
    pub(crate) fn admit(&self, now: u64) -> Result<Option<Arc<TrialPermit>>, Block> {
        if !self.is_enabled() {
            return Err(Block::Disabled);
        }
        let trial = self.inner.health.admit(now, &self.inner.policy)?;
        Ok(trial.then(|| Arc::new(TrialPermit(self.clone()))))
    }

    // ----- feedback -----

    /// Records one attempt's result. `latency` is the time to the response head
    /// (the first event for streams).
    pub(crate) fn record(&self, key: usize, result: AttemptResult) {
        let now = self.inner.clock.now_ms();
        let inner = &*self.inner;
        let slot = &inner.keys[key];
        let policy = &*inner.policy;
        match result {
            AttemptResult::Success(latency) => {
                slot.successes.fetch_add(1, Ordering::Relaxed);
                self.sample_latency(now, latency);
                let ns = latency.as_nanos() as f64;
                let old = load_f64(&slot.latency_ns);
                store_f64(
                    &slot.latency_ns,
                    if old == 0.0 { ns } else { old * 0.8 + ns * 0.2 },
                );
                self.sample_success(1.0);
                if inner.health.record(now, true, policy) {
                    self.reset_stats();
                    self.sample_latency(now, latency);
                }
            }
            AttemptResult::Throttled(wait) => {
                slot.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = wait
                    .unwrap_or(policy.default_cooldown)
                    .min(policy.max_cooldown);
                slot.cooldown_until
                    .store(now + wait.as_millis() as u64, Ordering::Relaxed);
                self.sample_success(0.0);
            }
            AttemptResult::Failure => {
                slot.failures.fetch_add(1, Ordering::Relaxed);
                inner.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.sample_success(0.0);
                inner.health.record(now, false, policy);
            }
            AttemptResult::Neutral => {}
        }
    }

    /// A stream that failed after its head was delivered: a failure for health.
    pub(crate) fn record_late_failure(&self, key: usize) {
        let now = self.inner.clock.now_ms();
        let inner = &*self.inner;
        inner.keys[key].failures.fetch_add(1, Ordering::Relaxed);
        inner.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.sample_success(0.0);
        inner.health.record(now, false, &inner.policy);
    }

    pub(crate) fn record_usage(&self, key: usize, prompt: u64, completion: u64) {
        let slot = &self.inner.keys[key];
        slot.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        slot.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    /// Starts an attempt: counts it and returns a guard that keeps it in flight.
    pub(crate) fn start(&self, key: usize) -> InFlight {
        let s = &self.inner.stats;
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        self.inner.keys[key]
            .requests
            .fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Peak-EWMA (as tower's `PeakEwma`): a sample above the estimate replaces it at
    /// once; one below pulls it down with a weight that grows with the time since the
    /// last sample.
    fn sample_latency(&self, now: u64, latency: Duration) {
        let s = &self.inner.stats;
        let slot = s.recent_next.fetch_add(1, Ordering::Relaxed) as usize % RECENT;
        let micros = u32::try_from(latency.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        s.recent[slot].store(micros, Ordering::Relaxed);
        let rtt = latency.as_nanos() as f64;
        let at = s.latency_at.swap(now.max(1), Ordering::Relaxed);
        let old = load_f64(&s.latency_ns);
        let next = if at == 0 || rtt > old {
            rtt
        } else {
            let tau = self.inner.policy.latency_decay.as_millis().max(1) as f64;
            let w = (-(now.saturating_sub(at) as f64) / tau).exp();
            old * w + rtt * (1.0 - w)
        };
        store_f64(&s.latency_ns, next);
    }

    fn sample_success(&self, ok: f64) {
        let s = &self.inner.stats;
        let old = load_f64(&s.success);
        store_f64(&s.success, old * 0.9 + ok * 0.1);
    }

    /// The `p`-th percentile (0 to 1) of the recent times to first byte, once at least
    /// `min_samples` were seen since the last reset.
    pub(crate) fn ttfb_percentile(&self, p: f64, min_samples: usize) -> Option<Duration> {
        let mut samples: Vec<u32> = self
            .inner
            .stats
            .recent
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&us| us > 0)
            .collect();
        if samples.len() < min_samples.max(1) {
            return None;
        }
        samples.sort_unstable();
        let rank = ((samples.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        Some(Duration::from_micros(u64::from(samples[rank])))
    }

    /// Forgets latency and success history (a channel back from down starts cold).
    pub(crate) fn reset_stats(&self) {
        let s = &self.inner.stats;
        for slot in &s.recent {
            slot.store(0, Ordering::Relaxed);
        }
        s.latency_at.store(0, Ordering::Relaxed);
        store_f64(&s.success, 1.0);
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.inner.id)
            .field("provider", &self.inner.provider)
            .field("keys", &self.inner.keys.len())
            .field("models", &self.inner.models)
            .field("weight", &self.inner.weight)
            .field("priority", &self.inner.priority)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

/// How an attempt went, for a channel's statistics and health.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttemptResult {
    Success(Duration),
    /// 429, with the provider's `retry-after`.
    Throttled(Option<Duration>),
    /// Connect error, timeout, 5xx.
    Failure,
    /// A client error (4xx): says nothing about the channel.
    Neutral,
}

/// One of a channel's bounded trial slots; freed when the last clone drops.
pub(crate) struct TrialPermit(pub(crate) Channel);

impl Drop for TrialPermit {
    fn drop(&mut self) {
        self.0.inner.health.trials.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for TrialPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrialPermit").field(&self.0.id()).finish()
    }
}

/// Keeps an attempt counted in its channel's in-flight gauge until dropped.
pub(crate) struct InFlight(Channel);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
