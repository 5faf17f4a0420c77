//! [`Router`]: the channels, aliases and strategy shared by every request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::candidates::{Candidate, Candidates};
use super::channel::{ChannelBuilder, TrialPermit};
use smallvec::SmallVec;

use super::health::{Block, Health, HealthPolicy};
use super::strategy::{Choice, RouteStrategy, WeightedRandom};
use super::Channel;
use crate::error::{ErrorKind, GatewayError};

/// Milliseconds on the tokio clock since the router was built, plus one (0 means
/// "never" in the atomics). Paused tokio time drives every transition in tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            epoch: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        tokio::time::Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
            + 1
    }
}

/// The routing table: channels, aliases (model groups) and the strategy. Cheap to
/// clone (one `Arc`); give clones to [`RoutingLayer`](super::RoutingLayer) and to
/// whatever enables or disables channels at run time. See the [module docs](super).
#[derive(Clone)]
pub struct Router {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    channels: Box<[Channel]>,
    aliases: HashMap<Box<str>, Box<[Box<str>]>>,
    /// What [`Router::resolve_model`] answers, made once at build.
    resolved: HashMap<Box<str>, Arc<str>>,
    strategy: Box<dyn RouteStrategy>,
    pub(crate) clock: Clock,
}

/// Builds a [`Router`]. Made by [`Router::builder`].
#[must_use]
pub struct RouterBuilder {
    channels: Vec<ChannelBuilder>,
    aliases: HashMap<Box<str>, Box<[Box<str>]>>,
    strategy: Box<dyn RouteStrategy>,
    policy: HealthPolicy,
    #[cfg(feature = "metering")]
    prices: Option<crate::metering::PriceTable>,
}

/// A router configuration that cannot work, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterError(String);

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouterError {}

impl RouterBuilder {
    /// Adds a channel. Its position is its order for [`RoundRobin`](super::RoundRobin).
    pub fn channel(mut self, channel: ChannelBuilder) -> Self {
        self.channels.push(channel);
        self
    }

    /// Defines `name` as an alias or model group: a request for it may go to any of
    /// `models` (each a model name, `provider/model` or `model:provider`; not another
    /// alias). An alias hides a model of the same name.
    pub fn alias<I, M>(mut self, name: impl Into<String>, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        let models = models
            .into_iter()
            .map(|m| m.into().into_boxed_str())
            .collect();
        self.aliases.insert(name.into().into_boxed_str(), models);
        self
    }

    /// The strategy ordering the candidates (default [`WeightedRandom`]).
    pub fn strategy(mut self, strategy: impl RouteStrategy) -> Self {
        self.strategy = Box::new(strategy);
        self
    }

    /// Circuit breaker, passive health and key cool-down thresholds.
    pub fn health(mut self, policy: HealthPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Prices for [`LowestCost`](super::LowestCost) and [`Composite`](super::Composite):
    /// each listed model of a channel without an explicit
    /// [`cost`](ChannelBuilder::cost) costs the average of its input and output price
    /// per million tokens, looked up by the channel's
    /// [`price_ref`](ChannelBuilder::price_ref) or else its upstream model name.
    #[cfg(feature = "metering")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metering")))]
    pub fn prices(mut self, prices: &crate::metering::PriceTable) -> Self {
        self.prices = Some(prices.clone());
        self
    }

    /// Builds the router; fails on a duplicate channel id, a channel without models, or
    /// an alias naming nothing a channel serves.
    pub fn build(self) -> Result<Router, RouterError> {
        let clock = Clock::new();
        let policy = Arc::new(self.policy);
        let mut channels: Vec<Channel> = Vec::with_capacity(self.channels.len());
        for (index, builder) in self.channels.into_iter().enumerate() {
            if channels.iter().any(|c| c.id() == &*builder.id) {
                return Err(RouterError(format!(
                    "duplicate channel id `{}`",
                    builder.id
                )));
            }
            let channel = builder
                .build(index, clock, policy.clone())
                .map_err(RouterError)?;
            channels.push(channel);
        }
        #[cfg(feature = "metering")]
        if let Some(prices) = &self.prices {
            for channel in &mut channels {
                let inner = Arc::get_mut(&mut channel.inner).expect("not shared yet");
                if inner.cost.is_some() {
                    continue;
                }
                for entry in inner.models.iter_mut() {
                    let name = inner.price_ref.as_deref().unwrap_or(&entry.upstream);
                    entry.cost = prices
                        .get(name)
                        .or_else(|| prices.get(&entry.name))
                        .map(|p| (p.input.nanos() as f64 + p.output.nanos() as f64) / 2e9);
                }
            }
        }
        let router = Router {
            shared: Arc::new(Shared {
                channels: channels.into(),
                aliases: HashMap::new(),
                resolved: HashMap::new(),
                strategy: self.strategy,
                clock,
            }),
        };
        for (alias, models) in &self.aliases {
            for model in models.iter() {
                let mut found = Matches::new();
                router.matches(model, false, &mut found);
                if found.is_empty() {
                    return Err(RouterError(format!(
                        "alias `{alias}` names `{model}`, which no channel serves"
                    )));
                }
            }
        }
        let mut router = router;
        let shared = Arc::get_mut(&mut router.shared).expect("not shared yet");
        shared.resolved = resolved_models(&self.aliases, &shared.channels);
        shared.aliases = self.aliases;
        Ok(router)
    }
}

impl fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("channels", &self.channels)
            .field("aliases", &self.aliases)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The names that stand for other models, as [`Router::resolve_model`] answers them:
/// each alias, and `auto` unless an alias hides it.
fn resolved_models(
    aliases: &HashMap<Box<str>, Box<[Box<str>]>>,
    channels: &[Channel],
) -> HashMap<Box<str>, Arc<str>> {
    let group = |models: Vec<&str>| -> Arc<str> { Arc::from(models.join("\0")) };
    let mut resolved: HashMap<Box<str>, Arc<str>> = aliases
        .iter()
        .map(|(alias, models)| (alias.clone(), group(models.iter().map(|m| &**m).collect())))
        .collect();
    let auto: Vec<&str> = channels
        .iter()
        .filter(|c| c.inner.auto)
        .filter_map(|c| c.inner.models.first().map(|e| &*e.name))
        .collect();
    if !auto.is_empty() && !resolved.contains_key("auto") {
        resolved.insert("auto".into(), group(auto));
    }
    resolved
}

/// One channel that serves the model: (channel index, upstream model, cost).
type Match = (usize, Arc<str>, Option<f64>);

/// Matches kept inline up to this many channels (no allocation on the hot path).
const INLINE: usize = 8;

type Matches = SmallVec<[Match; INLINE]>;

impl Router {
    /// A builder with no channels, [`WeightedRandom`] and the default
    /// [`HealthPolicy`].
    pub fn builder() -> RouterBuilder {
        RouterBuilder {
            channels: Vec::new(),
            aliases: HashMap::new(),
            strategy: Box::new(WeightedRandom::new()),
            policy: HealthPolicy::new(),
            #[cfg(feature = "metering")]
            prices: None,
        }
    }

    /// The channel named `id`.
    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.shared.channels.iter().find(|c| c.id() == id)
    }

    /// Every channel, in the order they were added.
    pub fn channels(&self) -> impl ExactSizeIterator<Item = &Channel> {
        self.shared.channels.iter()
    }

    /// The model a request for `model` is served as, for what must follow aliases
    /// rather than names (the response cache's key: `CacheLayer::resolve_model`):
    /// an alias's model, or the models of a group of several joined by `'\0'` (in the
    /// alias's order); `auto` likewise (each auto channel's first model). `None` for
    /// any other name: it stands for itself (`gpt-4o`, `openai/gpt-4o`, a prefix
    /// match). Resolved as [`Router::resolve`] does, from the same tables, so a
    /// router built from a new configuration answers for the new aliases.
    pub fn resolve_model(&self, model: &str) -> Option<Arc<str>> {
        let resolved = &self.shared.resolved;
        if resolved.is_empty() {
            return None;
        }
        resolved.get(model).cloned()
    }

    /// The candidates for `model`, best first: 404 (`model_not_found`) when no channel
    /// serves it, 503 (`no_healthy_upstream`, naming the model and why each channel
    /// was skipped) when every channel that serves it is disabled, down, open or has
    /// all its keys cooling down.
    pub fn resolve(&self, model: &str) -> Result<Candidates, GatewayError> {
        let mut found: Matches = SmallVec::new();
        self.matches(model, true, &mut found);
        if found.is_empty() {
            return Err(GatewayError::model_not_found(model));
        }
        let now = self.shared.clock.now_ms();
        let channels = &self.shared.channels;
        // Per match: the key and trial permit when admitted.
        let mut admitted: SmallVec<[Option<(usize, Option<Arc<TrialPermit>>)>; INLINE]> =
            SmallVec::with_capacity(found.len());
        let mut choices: SmallVec<[Choice<'_>; INLINE]> = SmallVec::new();
        for (slot, (index, upstream, cost)) in found.iter().enumerate() {
            let channel = &channels[*index];
            let admission = match channel.pick_key(now) {
                None => Err(Block::KeysCooling),
                Some(key) => channel.admit(now).map(|permit| (key, permit)),
            };
            match admission {
                Ok(admission) => {
                    admitted.push(Some(admission));
                    choices.push(Choice {
                        channel,
                        model: upstream,
                        cost: *cost,
                        now,
                        slot,
                    });
                }
                Err(_) => admitted.push(None),
            }
        }
        if choices.is_empty() {
            return Err(self.nothing_available(model, &found, now));
        }
        self.shared.strategy.order(&mut choices);
        // Degraded channels go after the healthy ones (stable).
        if choices.iter().any(|c| c.channel.inner.health.is_degraded()) {
            choices.sort_by_key(|c| c.channel.inner.health.is_degraded());
        }
        let list: Arc<[Candidate]> = choices
            .iter()
            .map(|c| {
                let (key, permit) = admitted[c.slot].take().expect("each slot once");
                let upstream = &found[c.slot].1;
                Candidate {
                    channel: c.channel.clone(),
                    key,
                    target: OnceLock::new(),
                    model: upstream.clone(),
                    renamed: &**upstream != model,
                    _permit: permit,
                }
            })
            .collect();
        Ok(Candidates { list })
    }

    /// The 503 naming the model and why each channel was skipped (the cold path: the
    /// reasons are read again).
    fn nothing_available(&self, model: &str, found: &Matches, now: u64) -> GatewayError {
        let channels = &self.shared.channels;
        let reasons: Vec<String> = found
            .iter()
            .map(|(index, _, _)| {
                let channel = &channels[*index];
                let block = match channel.pick_key(now) {
                    None => Block::KeysCooling,
                    Some(_) if !channel.is_enabled() => Block::Disabled,
                    Some(_) => match channel.health() {
                        Health::Down => Block::Down,
                        Health::Probation => Block::TrialsBusy,
                        _ => Block::CircuitOpen,
                    },
                };
                format!("`{}` {block}", channel.id())
            })
            .collect();
        GatewayError::new(
            ErrorKind::NoHealthyUpstream,
            format!(
                "No channel can serve the model `{model}` right now ({}); retry later.",
                reasons.join(", ")
            ),
        )
        .with_param("model")
        .with_retry_after(1)
    }

    /// Appends every (channel, upstream model) serving `model`, deduplicated.
    fn matches(&self, model: &str, aliases: bool, out: &mut Matches) {
        let channels = &self.shared.channels;
        let push = |out: &mut Matches, m: Match| {
            if !out.iter().any(|x| x.0 == m.0 && x.1 == m.1) {
                out.push(m);
            }
        };
        if aliases {
            if let Some(models) = self.shared.aliases.get(model) {
                for m in models.iter() {
                    self.matches(m, false, out);
                }
                return;
            }
        }
        if model == "auto" {
            for c in channels.iter().filter(|c| c.inner.auto) {
                if let Some(e) = c.inner.models.first() {
                    push(out, (c.inner.index, e.upstream.clone(), e.cost));
                }
            }
            return;
        }
        let before = out.len();
        for c in channels.iter() {
            if let Some(e) = c.entry(model) {
                push(out, (c.inner.index, e.upstream.clone(), e.cost));
            }
        }
        if out.len() > before {
            return;
        }
        // The longest `model_prefix` that matches; every channel declaring it.
        let longest = channels
            .iter()
            .flat_map(|c| c.inner.prefixes.iter())
            .filter(|p| model.starts_with(&***p))
            .map(|p| p.len())
            .max();
        if let Some(len) = longest {
            let upstream: Arc<str> = Arc::from(model);
            for c in channels.iter() {
                if c.inner
                    .prefixes
                    .iter()
                    .any(|p| p.len() == len && model.starts_with(&**p))
                {
                    push(out, (c.inner.index, upstream.clone(), c.inner.cost));
                }
            }
            return;
        }
        // `provider/model` (or `channel/model`), then `model:provider`.
        let pinned = model
            .split_once('/')
            .into_iter()
            .chain(model.rsplit_once(':').map(|(m, p)| (p, m)));
        for (pin, name) in pinned {
            if name.is_empty() {
                continue;
            }
            for c in channels
                .iter()
                .filter(|c| c.id() == pin || c.provider() == pin)
            {
                if let Some(e) = c.entry(name) {
                    push(out, (c.inner.index, e.upstream.clone(), e.cost));
                } else if c.inner.any_model {
                    push(out, (c.inner.index, Arc::from(name), c.inner.cost));
                }
            }
            if out.len() > before {
                return;
            }
        }
    }
}

#[cfg(feature = "cache")]
impl crate::cache::ResolveModel for Router {
    fn resolve_model(&self, requested: &str) -> Option<Arc<str>> {
        Router::resolve_model(self, requested)
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("channels", &self.shared.channels)
            .field("aliases", &self.shared.aliases)
            .finish_non_exhaustive()
    }
}
