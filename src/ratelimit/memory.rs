//! [`MemoryStore`]: the one-process ledger, bounded and self-evicting.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;
use tokio::time::Instant;

use super::gcra;
use super::store::{tighten, Backend, Decision, Denial, Dimension, Grant, Plan, Reserve, Snapshot};
use super::{RateLimitStore, Scope};

const SHARDS: usize = 64;
const DEFAULT_CAPACITY: usize = 100_000;
/// Scopes per request handled without a heap allocation (key, team, IP, model, global).
const INLINE: usize = 6;

/// The in-memory rate-limit ledger (the default store). Cheap to clone: clones share
/// the counters.
///
/// Keyed state evicts by itself, with no background task:
///
/// - an entry whose buckets are all full again and that has nothing in flight is
///   exactly a fresh one, so it is dropped by a sweep of its shard (sweeps run when a
///   shard has doubled since the last one, amortised over inserts);
/// - past `capacity` entries (default 100,000), inserting evicts the quarter of the
///   shard's entries that are closest to full, never one with a request in flight.
///   Those scopes start again with a full bucket: a flood of new keys (random client
///   addresses) can make the store forget recent activity, never grow without bound.
///   [`evictions`](MemoryStore::evictions) counts them.
///
/// Time is `tokio::time::Instant`, so tests can pause and advance it.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Randomly seeded (foldhash): each scope is hashed once per reserve and settle,
    /// and that hash picks both the shard and the slot in it.
    hasher: DefaultHashBuilder,
    base: Instant,
    shard_capacity: usize,
    evictions: AtomicU64,
}

#[derive(Default)]
struct Shard {
    map: HashTable<Slot>,
    swept_len: usize,
}

/// A scope's entry with its hash, so growing the table never hashes again.
struct Slot {
    hash: u64,
    scope: Scope,
    entry: Entry,
}

impl Shard {
    fn get(&self, hash: u64, scope: &Scope) -> Option<&Entry> {
        self.map.find(hash, |s| s.scope == *scope).map(|s| &s.entry)
    }

    fn get_mut(&mut self, hash: u64, scope: &Scope) -> Option<&mut Entry> {
        self.map
            .find_mut(hash, |s| s.scope == *scope)
            .map(|s| &mut s.entry)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    requests: [u64; 2],
    tokens: [u64; 2],
    in_flight: u32,
}

impl Entry {
    /// Whether the entry is the same as a fresh one at `now`.
    fn is_idle(&self, now: u64) -> bool {
        self.in_flight == 0 && self.full_at() <= now
    }

    fn full_at(&self) -> u64 {
        self.requests
            .iter()
            .chain(&self.tokens)
            .copied()
            .max()
            .unwrap_or(0)
    }
}

impl MemoryStore {
    /// A store holding at most about 100,000 scopes.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store holding at most about `capacity` scopes (rounded up to a multiple of
    /// 64 shards).
    pub fn with_capacity(capacity: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        MemoryStore {
            inner: Arc::new(Inner {
                shards,
                hasher: DefaultHashBuilder::default(),
                base: Instant::now(),
                shard_capacity: capacity.div_ceil(SHARDS).max(4),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// The number of scopes held.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether no scope is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scopes forgotten before their buckets were full again, because the store was
    /// at capacity.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Requests in flight for `scope` (for tests and diagnostics).
    pub fn in_flight(&self, scope: &Scope) -> u32 {
        let hash = self.inner.hasher.hash_one(scope);
        let shard = &self.inner.shards[shard_of(hash)];
        lock(shard).get(hash, scope).map_or(0, |e| e.in_flight)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &(self.inner.shard_capacity * SHARDS))
            .finish_non_exhaustive()
    }
}

impl From<MemoryStore> for RateLimitStore {
    fn from(store: MemoryStore) -> Self {
        RateLimitStore::new(store)
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // The critical sections do not panic; a poisoned lock still holds valid counters.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shard of a hash: bits 32..38, apart from the low bits (the slot in the table)
/// and the top seven (the table's tag).
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// The locked shards of one request, in ascending order.
type Guards<'a> = SmallVec<[(usize, MutexGuard<'a, Shard>); INLINE]>;

/// Each scope's hash and shard.
type Located = SmallVec<[(u64, usize); INLINE]>;

impl Inner {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Hashes each scope once and locks their shards in ascending order (no deadlock
    /// between requests that share shards).
    fn lock_all(&self, scopes: &[(Scope, super::Limits)]) -> (Located, Guards<'_>) {
        let mut located = Located::new();
        for (scope, _) in scopes {
            let hash = self.hasher.hash_one(scope);
            located.push((hash, shard_of(hash)));
        }
        // The smallest shard above the last one locked, until none is left: a request
        // has a handful of scopes, so this beats sorting a copy.
        let mut guards = Guards::new();
        let mut last = None;
        while let Some(i) = located
            .iter()
            .map(|&(_, i)| i)
            .filter(|&i| last.is_none_or(|l| i > l))
            .min()
        {
            guards.push((i, lock(&self.shards[i])));
            last = Some(i);
        }
        (located, guards)
    }

    fn reserve(&self, plan: Plan) -> Decision {
        let now = self.now();
        let (located, mut guards) = self.lock_all(&plan.scopes);

        let mut snapshot = Snapshot::default();
        let mut denial: Option<Denial> = None;
        let mut updates: SmallVec<[Entry; INLINE]> = SmallVec::new();
        for ((scope, limits), &(hash, shard)) in plan.scopes.iter().zip(&located) {
            let g = guards
                .iter()
                .find(|(j, _)| *j == shard)
                .map(|(_, g)| g)
                .expect("every scope's shard is locked");
            let mut entry = g.get(hash, scope).copied().unwrap_or_default();
            let mut refuse = |dimension, retry_after: u64| {
                let retry_after = Duration::from_nanos(retry_after);
                if denial.as_ref().is_none_or(|d| d.retry_after < retry_after) {
                    denial = Some(Denial {
                        scope: scope.clone(),
                        dimension,
                        retry_after,
                        snapshot: Snapshot::default(),
                    });
                }
            };
            for (slot, rate) in limits.requests.iter().enumerate() {
                if let Some(rate) = *rate {
                    let c = gcra::check(entry.requests[slot], now, rate, 1);
                    tighten(&mut snapshot.requests, c.gauge);
                    if c.allowed {
                        entry.requests[slot] = c.new_tat;
                    } else {
                        refuse(Dimension::Requests(rate), c.retry_after);
                    }
                }
            }
            for (slot, rate) in limits.tokens.iter().enumerate() {
                if let Some(rate) = *rate {
                    let c = gcra::check(entry.tokens[slot], now, rate, plan.tokens);
                    tighten(&mut snapshot.tokens, c.gauge);
                    if c.allowed {
                        entry.tokens[slot] = c.new_tat;
                    } else {
                        refuse(Dimension::Tokens(rate), c.retry_after);
                    }
                }
            }
            if let Some(max) = limits.max_parallel {
                if entry.in_flight >= max {
                    refuse(Dimension::Parallel(max), 0);
                } else {
                    entry.in_flight += 1;
                }
            }
            updates.push(entry);
        }
        if let Some(mut denial) = denial {
            denial.snapshot = snapshot;
            return Decision::Deny(denial);
        }
        for (((scope, _), entry), &(hash, shard)) in plan.scopes.iter().zip(updates).zip(&located) {
            let (_, g) = guards
                .iter_mut()
                .find(|(j, _)| *j == shard)
                .expect("every scope's shard is locked");
            self.store(g, hash, scope, entry, now);
        }
        drop(guards);
        Decision::Admit(Grant {
            plan,
            lease: 0,
            backed: true,
            snapshot,
        })
    }

    /// Writes an entry, keeping the shard bounded.
    fn store(&self, shard: &mut Shard, hash: u64, scope: &Scope, entry: Entry, now: u64) {
        if let Some(slot) = shard.get_mut(hash, scope) {
            *slot = entry;
            return;
        }
        let len = shard.map.len();
        if len >= self.shard_capacity || len >= 2 * shard.swept_len + 64 {
            shard.map.retain(|s| !s.entry.is_idle(now));
            if shard.map.len() >= self.shard_capacity {
                self.evict(shard);
            }
            shard.swept_len = shard.map.len();
        }
        let slot = Slot {
            hash,
            scope: scope.clone(),
            entry,
        };
        shard.map.insert_unique(hash, slot, |s| s.hash);
    }

    /// Drops the quarter of the shard closest to full, sparing requests in flight.
    fn evict(&self, shard: &mut Shard) {
        let mut candidates: Vec<u64> = shard
            .map
            .iter()
            .filter(|s| s.entry.in_flight == 0)
            .map(|s| s.entry.full_at())
            .collect();
        let n = (self.shard_capacity / 4).max(1).min(candidates.len());
        if n == 0 {
            return; // everything is in flight: bounded by the requests themselves
        }
        // Drops the `n` earliest to be full again (ties at the cut: as many as needed).
        let (_, &mut cut, _) = candidates.select_nth_unstable(n - 1);
        let below = candidates.iter().filter(|&&at| at < cut).count();
        let mut at_cut = n - below;
        shard.map.retain(|s| {
            if s.entry.in_flight > 0 {
                return true;
            }
            let at = s.entry.full_at();
            if at < cut {
                false
            } else if at == cut && at_cut > 0 {
                at_cut -= 1;
                false
            } else {
                true
            }
        });
        self.evictions.fetch_add(n as u64, Ordering::Relaxed);
        tracing::debug!(evicted = n, "rate-limit store at capacity: evicted scopes");
    }

    fn settle(&self, grant: &Grant, used_tokens: u64) {
        let delta = grant.delta(used_tokens);
        // Only a charge reads the clock (a refund moves the TAT back from where it is).
        let now = if delta > 0 { self.now() } else { 0 };
        let (located, mut guards) = self.lock_all(&grant.plan.scopes);
        for ((scope, limits), &(hash, shard)) in grant.plan.scopes.iter().zip(&located) {
            let (_, g) = guards
                .iter_mut()
                .find(|(j, _)| *j == shard)
                .expect("every scope's shard is locked");
            let Some(entry) = g.get_mut(hash, scope) else {
                continue; // forgotten under pressure: nothing left to adjust
            };
            if delta != 0 {
                for (slot, rate) in limits.tokens.iter().enumerate() {
                    if let Some(rate) = *rate {
                        entry.tokens[slot] = gcra::adjust(entry.tokens[slot], now, rate, delta);
                    }
                }
            }
            if limits.max_parallel.is_some() {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
    }
}

impl Backend for MemoryStore {
    fn reserve(&self, plan: Plan) -> Reserve {
        Reserve::Ready(self.inner.reserve(plan))
    }

    fn settle(&self, grant: Grant, used_tokens: u64) {
        if grant.needs_settle(used_tokens) {
            self.inner.settle(&grant, used_tokens);
        }
    }
}
