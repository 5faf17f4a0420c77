//! Active health probes: a cheap request per channel on an interval.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::task::JoinHandle;
use tower_service::Service;

use super::channel::AttemptResult;
use super::{Channel, Router};
use crate::upstream::Target;
use crate::Body;

/// Settings of the active probes started by [`Router::spawn_probes`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ProbeConfig {
    interval: Duration,
    timeout: Duration,
    prompt: Arc<str>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig::new(Duration::from_secs(30))
    }
}

impl ProbeConfig {
    /// A probe per channel every `interval`, each given 10 s.
    pub fn new(interval: Duration) -> Self {
        ProbeConfig {
            interval: interval.max(Duration::from_millis(10)),
            timeout: Duration::from_secs(10),
            prompt: "ping".into(),
        }
    }

    /// How long a probe may take to its response head before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The user message sent (default `ping`); probes ask for one output token.
    pub fn prompt(mut self, prompt: impl Into<Arc<str>>) -> Self {
        self.prompt = prompt.into();
        self
    }
}

/// The running probes; dropping it (or [`ProbeHandle::stop`]) stops them.
#[must_use = "dropping the handle stops the probes"]
pub struct ProbeHandle {
    task: JoinHandle<()>,
}

impl ProbeHandle {
    /// Stops the probes.
    pub fn stop(self) {}
}

impl Drop for ProbeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for ProbeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeHandle").finish_non_exhaustive()
    }
}

impl Router {
    /// Probes every enabled channel every `config` interval with a one-token chat
    /// completion (OpenAI shape; `Upstream` translates it to the channel's dialect) for
    /// its first listed model, sent straight to `inner` (the leaf, normally
    /// [`Upstream`](crate::upstream::Upstream)), so probes never pass through the
    /// layers that limit, meter or bill users.
    ///
    /// Probes reach channels that get no traffic (down, open circuit): a failure counts
    /// like a failed request; a success on a blocked channel ends its blocking time and
    /// counts as its trial (with the default single trial, the channel is back). A 429
    /// cools the key down as usual; probe latency feeds the latency estimate. Channels
    /// that list no model (only prefixes or `any_model`) are not probed. Must be called
    /// within a tokio runtime. Each probe is a real (tiny) provider request.
    pub fn spawn_probes<S>(&self, inner: S, config: ProbeConfig) -> ProbeHandle
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: fmt::Display,
    {
        let router = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(config.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let channels: Vec<Channel> = router
                    .channels()
                    .filter(|c| c.is_enabled())
                    .cloned()
                    .collect();
                let probes: Vec<_> = channels
                    .into_iter()
                    .map(|c| probe(c, inner.clone(), &config))
                    .collect();
                join_all(probes).await;
            }
        });
        ProbeHandle { task }
    }
}

/// Runs the probes of one round concurrently and waits for all of them.
async fn join_all<I, F>(futures: I)
where
    I: IntoIterator<Item = F>,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

fn probe<S>(
    channel: Channel,
    mut inner: S,
    config: &ProbeConfig,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send,
    S::Error: fmt::Display,
{
    let timeout = config.timeout;
    let prompt = config.prompt.clone();
    async move {
        let now = channel.inner.clock.now_ms();
        let Some(entry) = channel.inner.models.first() else {
            return; // an `any_model` channel without a listed model: nothing to ask for
        };
        let Some(key) = channel.pick_key(now) else {
            return; // every key cooling down: the probe would only be throttled
        };
        let target: Target = channel.inner.keys[key]
            .target
            .clone()
            .with_model(entry.upstream.clone());
        let body = serde_json::json!({
            "model": &*entry.name,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": &*prompt}],
        });
        let mut req = Request::post("/v1/chat/completions")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        req.extensions_mut().insert(target);
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(timeout, async {
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            inner.call(req).await
        })
        .await;
        let result = match result {
            Ok(Ok(res)) => {
                let status = res.status();
                if status.is_success() {
                    AttemptResult::Success(started.elapsed())
                } else if status.as_u16() == 429 {
                    AttemptResult::Throttled(super::candidates::retry_after(&res))
                } else if status.is_server_error() {
                    AttemptResult::Failure
                } else {
                    AttemptResult::Neutral
                }
            }
            Ok(Err(err)) => {
                tracing::debug!(channel = channel.id(), error = %err, "probe failed");
                AttemptResult::Failure
            }
            Err(_) => AttemptResult::Failure,
        };
        tracing::debug!(channel = channel.id(), ?result, "probe");
        if let AttemptResult::Success(_) = result {
            let now = channel.inner.clock.now_ms();
            channel.inner.health.probe_succeeded(now);
        }
        channel.record(key, result);
    }
}
