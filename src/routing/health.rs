//! Circuit breaker and passive health of one channel.
//!
//! Both state machines live under one short mutex taken only to record a result;
//! the routing hot path reads two atomics (`blocked_until`, `trials`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Thresholds of the circuit breaker, the passive health check and key cool-downs,
/// shared by every channel of a [`Router`](super::Router).
///
/// ```
/// use std::time::Duration;
/// use tollgate::routing::HealthPolicy;
///
/// let policy = HealthPolicy::new()
///     .failure_threshold(3)
///     .open_for(Duration::from_secs(10))
///     .window(Duration::from_secs(30), 10)
///     .down_ratio(0.5);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HealthPolicy {
    pub(crate) failure_threshold: u32,
    pub(crate) open_for: Duration,
    pub(crate) half_open_trials: u32,
    pub(crate) window: Duration,
    pub(crate) min_requests: u32,
    pub(crate) degraded_ratio: f64,
    pub(crate) down_ratio: f64,
    pub(crate) down_for: Duration,
    pub(crate) default_cooldown: Duration,
    pub(crate) max_cooldown: Duration,
    pub(crate) latency_decay: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy::new()
    }
}

impl HealthPolicy {
    /// The defaults: the circuit opens after 5 consecutive failures for 30 s and lets
    /// 1 trial through when half-open; over a 60 s window with at least 20 attempts, an
    /// error ratio of 10 % is degraded and 50 % down (for 30 s); a 429 cools its key
    /// down for its `retry-after` (1 s without one), at most 60 s; latency decays over
    /// 10 s.
    pub fn new() -> Self {
        HealthPolicy {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_trials: 1,
            window: Duration::from_secs(60),
            min_requests: 20,
            degraded_ratio: 0.1,
            down_ratio: 0.5,
            down_for: Duration::from_secs(30),
            default_cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(60),
            latency_decay: Duration::from_secs(10),
        }
    }

    /// Consecutive failures that open a channel's circuit (at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// How long an open circuit refuses traffic before it goes half-open.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }

    /// Trial requests let through at once by a half-open circuit (or a channel back
    /// from down); that many successes close it again (at least 1).
    pub fn half_open_trials(mut self, trials: u32) -> Self {
        self.half_open_trials = trials.max(1);
        self
    }

    /// The sliding window of the passive health check and the fewest attempts in it
    /// before its error ratio is judged.
    pub fn window(mut self, window: Duration, min_requests: u32) -> Self {
        self.window = window.max(Duration::from_millis(10));
        self.min_requests = min_requests.max(1);
        self
    }

    /// Error ratio (0 to 1) from which a channel is degraded: still routed, but after
    /// the healthy ones.
    pub fn degraded_ratio(mut self, ratio: f64) -> Self {
        self.degraded_ratio = ratio;
        self
    }

    /// Error ratio (0 to 1) from which a channel is down: no traffic for
    /// [`down_for`](Self::down_for), then trials as for a half-open circuit.
    pub fn down_ratio(mut self, ratio: f64) -> Self {
        self.down_ratio = ratio;
        self
    }

    /// How long a down channel gets no traffic before its trials.
    pub fn down_for(mut self, duration: Duration) -> Self {
        self.down_for = duration;
        self
    }

    /// Cool-down of a key answered with 429 without `retry-after`, and the longest
    /// cool-down a `retry-after` may ask for.
    pub fn cooldown(mut self, default: Duration, max: Duration) -> Self {
        self.default_cooldown = default;
        self.max_cooldown = max;
        self
    }

    /// The decay period of the latency estimate (peak-EWMA).
    pub fn latency_decay(mut self, tau: Duration) -> Self {
        self.latency_decay = tau;
        self
    }

    /// No circuit breaker and no passive health verdicts: the channel is never blocked
    /// by its results (key cool-downs and statistics still apply). For a channel whose
    /// failures are expected, such as a mock scripted to fail.
    pub fn off(mut self) -> Self {
        self.failure_threshold = u32::MAX;
        self.min_requests = u32::MAX;
        self
    }
}

/// A channel's health, as [`Channel::health`](super::Channel::health) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Health {
    /// Taking traffic normally.
    Healthy,
    /// Error ratio above the degraded threshold: routed after the healthy channels.
    Degraded,
    /// Error ratio above the down threshold: no traffic until its recovery time.
    Down,
    /// Too many consecutive failures: no traffic until the circuit goes half-open.
    CircuitOpen,
    /// Half-open circuit or back from down: a bounded number of trial requests.
    Probation,
}

/// Why a channel refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    Disabled,
    CircuitOpen,
    Down,
    /// On probation and every trial slot is taken.
    TrialsBusy,
    /// Every key is cooling down after a 429.
    KeysCooling,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::Disabled => "disabled",
            Block::CircuitOpen => "circuit open",
            Block::Down => "down",
            Block::TrialsBusy => "half-open, trial in progress",
            Block::KeysCooling => "every key cooling down after 429",
        })
    }
}

const REASON_CIRCUIT: u8 = 1;
const REASON_DOWN: u8 = 2;

/// The live state of one channel: atomics for the hot path, a mutex for transitions.
pub(crate) struct HealthState {
    /// Clock milliseconds until which the channel takes no traffic; once passed (and
    /// non-zero), the channel is on probation. 0: neither open nor down.
    blocked_until: AtomicU64,
    reason: AtomicU8,
    degraded: AtomicBool,
    pub(crate) trials: AtomicU32,
    machine: Mutex<Machine>,
}

#[derive(Debug)]
struct Machine {
    circuit: Circuit,
    down_until: Option<u64>,
    degraded: bool,
    window: Window,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: u64 },
    HalfOpen { successes: u32 },
}

impl HealthState {
    pub(crate) fn new() -> HealthState {
        HealthState {
            blocked_until: AtomicU64::new(0),
            reason: AtomicU8::new(0),
            degraded: AtomicBool::new(false),
            trials: AtomicU32::new(0),
            machine: Mutex::new(Machine {
                circuit: Circuit::Closed { failures: 0 },
                down_until: None,
                degraded: false,
                window: Window::new(),
            }),
        }
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub(crate) fn current(&self, now: u64) -> Health {
        let until = self.blocked_until.load(Ordering::Relaxed);
        if until != 0 {
            if now < until {
                return match self.reason.load(Ordering::Relaxed) {
                    REASON_DOWN => Health::Down,
                    _ => Health::CircuitOpen,
                };
            }
            return Health::Probation;
        }
        if self.is_degraded() {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    /// The hot path: may the channel take one more request at `now`?
    /// `Ok(true)`: admitted as a trial (the caller holds a permit that gives the slot
    /// back when dropped).
    pub(crate) fn admit(&self, now: u64, policy: &HealthPolicy) -> Result<bool, Block> {
        let until = self.blocked_until.load(Ordering::Relaxed);
        if until == 0 {
            return Ok(false);
        }
        if now < until {
            return Err(match self.reason.load(Ordering::Relaxed) {
                REASON_DOWN => Block::Down,
                _ => Block::CircuitOpen,
            });
        }
        if self.trials.fetch_add(1, Ordering::Relaxed) >= policy.half_open_trials {
            self.trials.fetch_sub(1, Ordering::Relaxed);
            return Err(Block::TrialsBusy);
        }
        Ok(true)
    }

    /// Records one result and publishes the new state. Returns true when the channel
    /// just came back from down or from an open circuit (its history is stale).
    pub(crate) fn record(&self, now: u64, ok: bool, policy: &HealthPolicy) -> bool {
        let mut recovered = false;
        let mut m = self.machine.lock().unwrap_or_else(|e| e.into_inner());
        // An open circuit whose time is up is half-open.
        if let Circuit::Open { until } = m.circuit {
            if now >= until {
                m.circuit = Circuit::HalfOpen { successes: 0 };
            }
        }
        m.circuit = match (m.circuit, ok) {
            (Circuit::Closed { .. }, true) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { failures }, false) if failures + 1 >= policy.failure_threshold => {
                Circuit::Open {
                    until: now + ms(policy.open_for),
                }
            }
            (Circuit::Closed { failures }, false) => Circuit::Closed {
                failures: failures + 1,
            },
            // Results of requests sent before the circuit opened change nothing.
            (open @ Circuit::Open { .. }, _) => open,
            (Circuit::HalfOpen { successes }, true) if successes + 1 >= policy.half_open_trials => {
                recovered = true;
                Circuit::Closed { failures: 0 }
            }
            (Circuit::HalfOpen { successes }, true) => Circuit::HalfOpen {
                successes: successes + 1,
            },
            (Circuit::HalfOpen { .. }, false) => Circuit::Open {
                until: now + ms(policy.open_for),
            },
        };

        match m.down_until {
            // Down and its time is not up: stray results of earlier requests.
            Some(until) if now < until => {}
            // On probation after down: one result decides.
            Some(_) => {
                if ok {
                    m.down_until = None;
                    m.window.clear();
                    recovered = true;
                } else {
                    m.down_until = Some(now + ms(policy.down_for));
                }
            }
            None => {
                m.window.add(now, ok, policy.window);
                let (total, failed) = m.window.totals(now, policy.window);
                m.degraded = false;
                if total >= u64::from(policy.min_requests) {
                    let ratio = failed as f64 / total as f64;
                    if ratio >= policy.down_ratio {
                        m.down_until = Some(now + ms(policy.down_for));
                        m.window.clear();
                        tracing::warn!(ratio, "routing: channel down (error ratio)");
                    } else if ratio >= policy.degraded_ratio {
                        m.degraded = true;
                    }
                }
            }
        }

        self.publish(&m);
        recovered
    }

    /// A successful active probe of a channel that is open or down: its blocking time
    /// ends now, so the next request is a trial.
    pub(crate) fn probe_succeeded(&self, now: u64) {
        let mut m = self.machine.lock().unwrap_or_else(|e| e.into_inner());
        if let Circuit::Open { until } = m.circuit {
            if until > now {
                m.circuit = Circuit::Open { until: now };
            }
        }
        if let Some(until) = m.down_until {
            if until > now {
                m.down_until = Some(now);
            }
        }
        self.publish(&m);
    }

    fn publish(&self, m: &Machine) {
        let circuit_until = match m.circuit {
            Circuit::Open { until } => Some(until),
            // Half-open keeps the channel on probation (a past, non-zero time).
            Circuit::HalfOpen { .. } => Some(1),
            Circuit::Closed { .. } => None,
        };
        let (until, reason) = match (circuit_until, m.down_until) {
            (Some(c), Some(d)) if d > c => (d, REASON_DOWN),
            (Some(c), _) => (c, REASON_CIRCUIT),
            (None, Some(d)) => (d, REASON_DOWN),
            (None, None) => (0, 0),
        };
        self.reason.store(reason, Ordering::Relaxed);
        // 0 means "not blocked": a block ending at clock time 0 is still a block.
        self.blocked_until
            .store(until.max(u64::from(until != 0)), Ordering::Relaxed);
        self.degraded.store(m.degraded, Ordering::Relaxed);
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Ten buckets of successes and failures over the window.
#[derive(Debug)]
struct Window {
    /// (bucket number, successes, failures)
    buckets: [(u64, u32, u32); BUCKETS],
}

const BUCKETS: usize = 10;

impl Window {
    fn new() -> Window {
        Window {
            buckets: [(u64::MAX, 0, 0); BUCKETS],
        }
    }

    fn width(window: Duration) -> u64 {
        (ms(window) / BUCKETS as u64).max(1)
    }

    fn add(&mut self, now: u64, ok: bool, window: Duration) {
        let n = now / Self::width(window);
        let bucket = &mut self.buckets[(n % BUCKETS as u64) as usize];
        if bucket.0 != n {
            *bucket = (n, 0, 0);
        }
        if ok {
            bucket.1 += 1;
        } else {
            bucket.2 += 1;
        }
    }

    fn totals(&self, now: u64, window: Duration) -> (u64, u64) {
        let n = now / Self::width(window);
        self.buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0 + BUCKETS as u64 > n)
            .fold((0, 0), |(t, f), b| {
                (t + u64::from(b.1) + u64::from(b.2), f + u64::from(b.2))
            })
    }

    fn clear(&mut self) {
        *self = Window::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy::new()
            .failure_threshold(3)
            .open_for(Duration::from_secs(10))
            .window(Duration::from_secs(10), 4)
            .down_ratio(0.5)
            .degraded_ratio(0.25)
            .down_for(Duration::from_secs(20))
    }

    #[test]
    fn old_results_leave_the_window() {
        let p = policy().failure_threshold(100);
        let h = HealthState::new();
        // Two failures at t=1 s, then successes 11 s later: the failures are gone.
        h.record(1_000, false, &p);
        h.record(1_000, false, &p);
        for t in 0..4 {
            h.record(12_000 + t, true, &p);
        }
        assert_eq!(h.current(12_010), Health::Healthy);
        // Within the window they count: 2 failures of 4 is down.
        let h = HealthState::new();
        h.record(1_000, false, &p);
        h.record(1_500, true, &p);
        h.record(2_000, true, &p);
        assert_eq!(h.current(2_000), Health::Healthy, "below the minimum count");
        h.record(2_500, false, &p);
        assert_eq!(h.current(2_500), Health::Down);
        assert_eq!(h.current(22_499), Health::Down);
        assert_eq!(h.current(22_500), Health::Probation);
    }

    #[test]
    fn degraded_between_the_thresholds() {
        let p = policy().failure_threshold(100);
        let h = HealthState::new();
        for ok in [true, true, true, false] {
            h.record(5, ok, &p);
        }
        assert_eq!(h.current(5), Health::Degraded);
        assert!(h.is_degraded());
    }

    #[test]
    fn circuit_counts_consecutive_failures_only() {
        let p = policy().window(Duration::from_secs(10), 1000);
        let h = HealthState::new();
        for ok in [false, false, true, false, false] {
            h.record(5, ok, &p);
        }
        assert_eq!(h.current(5), Health::Healthy);
        h.record(6, false, &p);
        assert_eq!(h.current(6), Health::CircuitOpen);
        assert_eq!(h.admit(6, &p), Err(Block::CircuitOpen));
        // Half-open: one trial at a time.
        assert_eq!(h.admit(10_006, &p), Ok(true));
        assert_eq!(h.admit(10_006, &p), Err(Block::TrialsBusy));
        h.trials.fetch_sub(1, Ordering::Relaxed);
        assert!(h.record(10_007, true, &p), "recovered");
        assert_eq!(h.admit(10_008, &p), Ok(false));
    }

    #[test]
    fn a_probe_success_ends_the_block() {
        let p = policy().window(Duration::from_secs(10), 1000);
        let h = HealthState::new();
        for _ in 0..3 {
            h.record(5, false, &p);
        }
        assert_eq!(h.current(100), Health::CircuitOpen);
        h.probe_succeeded(100);
        assert_eq!(h.current(100), Health::Probation);
        h.record(100, true, &p);
        assert_eq!(h.current(100), Health::Healthy);
    }
}
