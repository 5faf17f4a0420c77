//! [`Candidates`]: the ordered targets routing chose for one request.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::Response;

use super::channel::{AttemptResult, TrialPermit};
use super::Channel;
use crate::outcome::{End, Outcome};
use crate::upstream::Target;
use crate::Body;

/// The channels that may serve a request, best first: a request extension written by
/// [`Routing`](super::Routing) and read by [`Failover`](crate::failover::Failover),
/// which tries them in order.
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Candidates {
    pub(crate) list: Arc<[Candidate]>,
}

/// One channel of [`Candidates`], with the key chosen for it and the ready [`Target`].
#[derive(Clone)]
pub struct Candidate {
    pub(crate) channel: Channel,
    pub(crate) key: usize,
    /// Built on first use: most candidates of a request are never tried.
    pub(crate) target: OnceLock<Target>,
    pub(crate) model: Arc<str>,
    pub(crate) renamed: bool,
    /// Held while the channel is on probation: one of its bounded trial slots.
    pub(crate) _permit: Option<Arc<TrialPermit>>,
}

impl Candidates {
    /// The candidates, best first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Candidate> {
        self.list.iter()
    }

    /// How many channels may serve the request.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is none (routing never stores an empty list).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The best candidate.
    pub fn first(&self) -> Option<&Candidate> {
        self.list.first()
    }
}

impl fmt::Debug for Candidates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list.iter()).finish()
    }
}

impl Candidate {
    /// The channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The target for this candidate: the channel's dialect and base URL, the chosen
    /// key, and the upstream model name when it differs from the client's.
    pub fn target(&self) -> &Target {
        self.target.get_or_init(|| self.target_for(self.key))
    }

    fn target_for(&self, key: usize) -> Target {
        let target = self.channel.inner.keys[key].target.clone();
        if self.renamed {
            target.with_model(self.model.clone())
        } else {
            target
        }
    }

    /// The model name sent to the provider.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The target for another attempt at `now`: the same key unless it is cooling down
    /// after a 429, then another key of the channel; `None` when every key cools down.
    pub(crate) fn retarget(&self, now: u64) -> Option<(usize, Target)> {
        if !self.channel.key_cooling(self.key, now) {
            return Some((self.key, self.target().clone()));
        }
        let key = self.channel.pick_key(now)?;
        Some((key, self.target_for(key)))
    }
}

impl fmt::Debug for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidate")
            .field("channel", &self.channel.id())
            .field("key", &self.key)
            .field("model", &self.model)
            .finish()
    }
}

/// Parses a `retry-after` in seconds.
pub(crate) fn retry_after<B>(res: &Response<B>) -> Option<Duration> {
    res.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Feeds one attempt's response head into the channel's statistics, health and key
/// counters; a success also watches its [`Outcome`] for a stream that fails later
/// and for usage. Returns how the attempt went.
pub(crate) fn record_attempt(
    channel: &Channel,
    key: usize,
    res: &Response<Body>,
    latency: Duration,
) -> AttemptResult {
    let status = res.status();
    let result = if status.is_success() {
        AttemptResult::Success(latency)
    } else if status.as_u16() == 429 {
        AttemptResult::Throttled(retry_after(res))
    } else if status.is_server_error() {
        AttemptResult::Failure
    } else {
        AttemptResult::Neutral
    };
    channel.record(key, result);
    if let (AttemptResult::Success(_), Some(outcome)) = (result, res.extensions().get::<Outcome>())
    {
        let channel = channel.clone();
        outcome.on_resolve(move |report| {
            if report.end == End::UpstreamError {
                channel.record_late_failure(key);
            }
            let prompt = report.usage.map_or(0, |u| u.prompt_tokens);
            channel.record_usage(key, prompt, report.completion_tokens());
        });
    }
    result
}
