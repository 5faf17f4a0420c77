//! [`RouteStrategy`] and the strategies shipped with the crate.

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::Channel;

/// One channel that can serve the request, as a [`RouteStrategy`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    pub(crate) channel: &'a Channel,
    pub(crate) model: &'a str,
    pub(crate) cost: Option<f64>,
    pub(crate) now: u64,
    /// Position in the router's match list, to find the key chosen for it.
    pub(crate) slot: usize,
}

impl Choice<'_> {
    /// The channel.
    pub fn channel(&self) -> &Channel {
        self.channel
    }

    /// The model name the channel would be sent.
    pub fn model(&self) -> &str {
        self.model
    }

    /// The cost in USD per million tokens (input and output averaged), when known.
    pub fn cost(&self) -> Option<f64> {
        self.cost
    }

    /// The channel's weight.
    pub fn weight(&self) -> u32 {
        self.channel.weight()
    }

    /// The peak-EWMA time to first byte in nanoseconds; `None` while cold (no sample
    /// yet, or none for ten decay periods).
    pub fn latency_ns(&self) -> Option<f64> {
        self.channel.latency_estimate(self.now)
    }

    /// The EWMA success ratio, 0 to 1 (1 while cold).
    pub fn success_rate(&self) -> f64 {
        self.channel.success_rate()
    }

    /// Attempts waiting for their first byte at this channel.
    pub fn in_flight(&self) -> u64 {
        self.channel.in_flight()
    }
}

/// Orders the channels that can serve a request, best first. Fail-over tries them in
/// that order.
///
/// The choices given are already filtered (enabled, circuit closed or on trial, not
/// down, a key available). Implementations keep their own state (counters, random
/// generator) behind atomics or short locks: `order` runs once per request, on many
/// threads at once.
pub trait RouteStrategy: Send + Sync + 'static {
    /// Reorders `choices` in place, best first.
    fn order(&self, choices: &mut [Choice<'_>]);
}

impl<F> RouteStrategy for F
where
    F: Fn(&mut [Choice<'_>]) + Send + Sync + 'static,
{
    fn order(&self, choices: &mut [Choice<'_>]) {
        self(choices)
    }
}

/// A small lock-free random generator (SplitMix64) with an optional fixed seed, so
/// tests can check distributions deterministically.
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Rng(AtomicU64::new(h.finish()))
    }

    pub(crate) fn with_seed(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub(crate) fn below(&self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rng")
    }
}

/// Moves a weighted random choice to the front, then the next among the rest, and so
/// on (weighted sampling without replacement). Weight 0 goes last.
fn weighted_shuffle(rng: &Rng, choices: &mut [Choice<'_>]) {
    for start in 0..choices.len().saturating_sub(1) {
        let rest = &mut choices[start..];
        let total: u64 = rest.iter().map(|c| u64::from(c.weight())).sum();
        if total == 0 {
            return;
        }
        let mut pick = (rng.f64() * total as f64) as u64;
        let mut chosen = rest.len() - 1;
        for (i, c) in rest.iter().enumerate() {
            let w = u64::from(c.weight());
            if pick < w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        rest.swap(0, chosen);
    }
}

fn by_f64(a: f64, b: f64) -> CmpOrdering {
    a.partial_cmp(&b).unwrap_or(CmpOrdering::Equal)
}

/// Weighted random: each channel first in proportion to its weight; the rest in
/// weighted random order. The default strategy.
#[derive(Debug)]
pub struct WeightedRandom {
    rng: Rng,
}

impl WeightedRandom {
    /// Seeded from the process's random state.
    pub fn new() -> Self {
        WeightedRandom { rng: Rng::new() }
    }

    /// With a fixed seed (reproducible, for tests).
    pub fn with_seed(seed: u64) -> Self {
        WeightedRandom {
            rng: Rng::with_seed(seed),
        }
    }
}

impl Default for WeightedRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteStrategy for WeightedRandom {
    fn order(&self, choices: &mut [Choice<'_>]) {
        weighted_shuffle(&self.rng, choices);
    }
}

/// Round robin: each request starts one channel further along the list (the order the
/// channels were added in); the others follow in list order.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Starts with the first channel.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RouteStrategy for RoundRobin {
    fn order(&self, choices: &mut [Choice<'_>]) {
        if choices.len() > 1 {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            choices.rotate_left(n % choices.len());
        }
    }
}

/// Smooth weighted round robin (nginx's): over any run of requests, each channel is
/// first in proportion to its weight, interleaved rather than in bursts (weights 5, 1,
/// 1 give `a a b a c a a`). The others follow by weight.
#[derive(Debug, Default)]
pub struct SmoothWeightedRoundRobin {
    /// Current weight per channel index.
    current: Mutex<Vec<i64>>,
}

impl SmoothWeightedRoundRobin {
    /// A fresh sequence.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RouteStrategy for SmoothWeightedRoundRobin {
    fn order(&self, choices: &mut [Choice<'_>]) {
        if choices.len() < 2 {
            return;
        }
        let best = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let max_index = choices.iter().map(|c| c.channel.inner.index).max();
            if let Some(max) = max_index {
                if current.len() <= max {
                    current.resize(max + 1, 0);
                }
            }
            let mut total = 0i64;
            let mut best = 0;
            let mut best_weight = i64::MIN;
            for (i, c) in choices.iter().enumerate() {
                let w = i64::from(c.weight());
                total += w;
                let cw = &mut current[c.channel.inner.index];
                *cw += w;
                if *cw > best_weight {
                    best_weight = *cw;
                    best = i;
                }
            }
            current[choices[best].channel.inner.index] -= total;
            best
        };
        choices.swap(0, best);
        choices[1..].sort_by_key(|c| std::cmp::Reverse(c.weight()));
    }
}

/// Priority: an ordered fail-over chain. Lower [`priority`](super::ChannelBuilder::priority)
/// first; channels of equal priority share by weight (weighted random).
#[derive(Debug)]
pub struct Priority {
    rng: Rng,
}

impl Priority {
    /// Ties shared at random.
    pub fn new() -> Self {
        Priority { rng: Rng::new() }
    }

    /// With a fixed seed for ties.
    pub fn with_seed(seed: u64) -> Self {
        Priority {
            rng: Rng::with_seed(seed),
        }
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteStrategy for Priority {
    fn order(&self, choices: &mut [Choice<'_>]) {
        weighted_shuffle(&self.rng, choices);
        choices.sort_by_key(|c| c.channel.priority()); // stable: ties keep the shuffle
    }
}

/// Lowest latency: power of two choices over the peak-EWMA time to first byte times
/// the attempts in flight (tower's `PeakEwma` load), the rest by that load.
///
/// A cold channel (no sample yet, or none for ten decay periods, or just back from
/// down) counts as the fastest known one, so it gets tried; and with probability
/// `exploration` (default 5 %) the first pick is uniform, so a channel that was slow
/// once is measured again.
#[derive(Debug)]
pub struct LowestLatency {
    rng: Rng,
    exploration: f64,
}

impl LowestLatency {
    /// 5 % exploration.
    pub fn new() -> Self {
        LowestLatency {
            rng: Rng::new(),
            exploration: 0.05,
        }
    }

    /// With a fixed seed.
    pub fn with_seed(seed: u64) -> Self {
        LowestLatency {
            rng: Rng::with_seed(seed),
            exploration: 0.05,
        }
    }

    /// The share of requests (0 to 1) whose first pick is uniform.
    #[must_use]
    pub fn exploration(mut self, share: f64) -> Self {
        self.exploration = share.clamp(0.0, 1.0);
        self
    }
}

impl Default for LowestLatency {
    fn default() -> Self {
        Self::new()
    }
}

/// `latency × (in flight + 1)`, a cold channel at the fastest known latency.
fn loads(choices: &[Choice<'_>]) -> impl Fn(&Choice<'_>) -> f64 {
    let fastest = choices
        .iter()
        .filter_map(Choice::latency_ns)
        .fold(f64::INFINITY, f64::min);
    let fastest = if fastest.is_finite() { fastest } else { 1.0 };
    move |c| c.latency_ns().unwrap_or(fastest) * (c.in_flight() as f64 + 1.0)
}

impl RouteStrategy for LowestLatency {
    fn order(&self, choices: &mut [Choice<'_>]) {
        let n = choices.len();
        if n < 2 {
            return;
        }
        let load = loads(choices);
        let first = if self.rng.f64() < self.exploration {
            self.rng.below(n)
        } else {
            let a = self.rng.below(n);
            let b = (a + 1 + self.rng.below(n - 1)) % n;
            if load(&choices[b]) < load(&choices[a]) {
                b
            } else {
                a
            }
        };
        choices.swap(0, first);
        let keyed: Vec<f64> = choices[1..].iter().map(&load).collect();
        sort_rest_by(&mut choices[1..], &keyed, by_f64);
    }
}

/// Sorts `choices` by precomputed keys (stable).
fn sort_rest_by(choices: &mut [Choice<'_>], keys: &[f64], cmp: fn(f64, f64) -> CmpOrdering) {
    let mut keyed: Vec<(f64, Choice<'_>)> =
        keys.iter().copied().zip(choices.iter().copied()).collect();
    keyed.sort_by(|a, b| cmp(a.0, b.0));
    for (slot, (_, choice)) in choices.iter_mut().zip(keyed) {
        *slot = choice;
    }
}

/// Highest success rate (EWMA over recent attempts), ties by weight at random.
#[derive(Debug)]
pub struct HighestSuccessRate {
    rng: Rng,
}

impl HighestSuccessRate {
    /// Ties shared at random.
    pub fn new() -> Self {
        HighestSuccessRate { rng: Rng::new() }
    }

    /// With a fixed seed for ties.
    pub fn with_seed(seed: u64) -> Self {
        HighestSuccessRate {
            rng: Rng::with_seed(seed),
        }
    }
}

impl Default for HighestSuccessRate {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteStrategy for HighestSuccessRate {
    fn order(&self, choices: &mut [Choice<'_>]) {
        weighted_shuffle(&self.rng, choices);
        let keys: Vec<f64> = choices.iter().map(Choice::success_rate).collect();
        sort_rest_by(choices, &keys, |a, b| by_f64(b, a));
    }
}

/// Lowest cost (from [`ChannelBuilder::cost`](super::ChannelBuilder::cost) or the
/// price table given to the router); channels without a known cost go last; ties by
/// weight at random.
#[derive(Debug)]
pub struct LowestCost {
    rng: Rng,
}

impl LowestCost {
    /// Ties shared at random.
    pub fn new() -> Self {
        LowestCost { rng: Rng::new() }
    }

    /// With a fixed seed for ties.
    pub fn with_seed(seed: u64) -> Self {
        LowestCost {
            rng: Rng::with_seed(seed),
        }
    }
}

impl Default for LowestCost {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteStrategy for LowestCost {
    fn order(&self, choices: &mut [Choice<'_>]) {
        weighted_shuffle(&self.rng, choices);
        let keys: Vec<f64> = choices
            .iter()
            .map(|c| c.cost.unwrap_or(f64::INFINITY))
            .collect();
        sort_rest_by(choices, &keys, by_f64);
    }
}

/// A weighted score of latency, errors and cost, each normalised to 0..1 across the
/// choices (latency and cost divided by the largest; errors as `1 - success rate`);
/// the lowest score goes first. Unknown latency scores as the fastest; unknown cost as
/// one and a half times the dearest known.
#[derive(Debug)]
pub struct Composite {
    latency: f64,
    errors: f64,
    cost: f64,
    rng: Rng,
}

impl Composite {
    /// Weights on latency, error rate and cost (any non-negative numbers).
    pub fn new(latency: f64, errors: f64, cost: f64) -> Self {
        Composite {
            latency,
            errors,
            cost,
            rng: Rng::new(),
        }
    }

    /// With a fixed seed for ties.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::with_seed(seed);
        self
    }
}

impl Default for Composite {
    /// Equal weights.
    fn default() -> Self {
        Self::new(1.0, 1.0, 1.0)
    }
}

impl RouteStrategy for Composite {
    fn order(&self, choices: &mut [Choice<'_>]) {
        weighted_shuffle(&self.rng, choices);
        let load = loads(choices);
        let lat: Vec<f64> = choices.iter().map(&load).collect();
        let max_lat = lat
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let max_cost = choices
            .iter()
            .filter_map(|c| c.cost)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let keys: Vec<f64> = choices
            .iter()
            .zip(&lat)
            .map(|(c, l)| {
                let cost = c.cost.map_or(1.5, |x| x / max_cost);
                self.latency * (l / max_lat)
                    + self.errors * (1.0 - c.success_rate())
                    + self.cost * cost
            })
            .collect();
        sort_rest_by(choices, &keys, by_f64);
    }
}
