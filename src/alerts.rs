//! Alerts: [`Alert`]s posted as JSON to a webhook by a [`WebhookNotifier`].
//!
//! [`WebhookNotifier::notify`] never waits: it puts the alert in a bounded queue (1,024
//! by default) and returns. One background task posts the alerts in order, each retried
//! with exponential backoff (5 attempts by default: 0.5 s, 1 s, 2 s, 4 s apart) under a
//! timeout per attempt. When the queue is full, or an alert fails every attempt, it is
//! dropped, counted in [`stats`](WebhookNotifier::stats) and logged: a receiver that is
//! down never slows a request.
//!
//! The body is `{"source": "tollgate", "at": <Unix seconds>, "alert": {"kind": ..., ...}}`
//! where `kind` is `budget_threshold`, `budget_exhausted`, `balance_low`,
//! `channel_down`, `channel_recovered` or `circuit_opened`. Money is a decimal string in
//! USD. Metering's budget and low-balance events are forwarded with
//! [`forward_budget_events`](WebhookNotifier::forward_budget_events), and channel
//! transitions (down, circuit opened, recovered) by `watch_channels` (feature
//! `routing`).
//!
//! ```no_run
//! use tollgate::alerts::{Alert, WebhookNotifier};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alerts = WebhookNotifier::builder("https://hooks.example.com/tollgate").build()?;
//! alerts.notify(Alert::ChannelDown {
//!     channel: "openai-eu".into(),
//!     reason: "5 failures in 30 s".into(),
//! });
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::metering::{Account, BudgetEvent, Money};

/// Something an operator should hear about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Alert {
    /// Spend crossed a budget's soft threshold (80% by default) in its period.
    BudgetThreshold {
        /// `key:<id>` or `team:<name>`.
        account: String,
        /// Spent so far in the period, USD.
        spent: Money,
        /// The budget, USD.
        limit: Money,
    },
    /// Spend reached a budget: requests are refused until the period ends.
    BudgetExhausted {
        /// `key:<id>` or `team:<name>`.
        account: String,
        /// Spent so far in the period, USD.
        spent: Money,
        /// The budget, USD.
        limit: Money,
    },
    /// A prepaid balance fell under its threshold.
    BalanceLow {
        /// `key:<id>` or `team:<name>`.
        account: String,
        /// The balance left, USD.
        balance: Money,
        /// The threshold it crossed, USD.
        threshold: Money,
    },
    /// A channel stopped answering (health checks or passive failures).
    ChannelDown {
        /// The channel's id.
        channel: String,
        /// Why, without any credential.
        reason: String,
    },
    /// A channel that was down answers again.
    ChannelRecovered {
        /// The channel's id.
        channel: String,
    },
    /// A channel's circuit breaker opened: it gets no traffic for a while.
    CircuitOpened {
        /// The channel's id.
        channel: String,
        /// Consecutive failures that opened it.
        failures: u32,
    },
}

fn account_name(account: &Account) -> String {
    match account {
        Account::Key(id) => format!("key:{id}"),
        Account::Team(team) => format!("team:{team}"),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

impl Alert {
    /// The alert for a metering budget or balance event, if it is one this module knows.
    pub fn from_budget_event(event: &BudgetEvent) -> Option<Alert> {
        match event {
            BudgetEvent::SoftThreshold {
                account,
                spent,
                limit,
            } => Some(Alert::BudgetThreshold {
                account: account_name(account),
                spent: *spent,
                limit: *limit,
            }),
            BudgetEvent::Exhausted {
                account,
                spent,
                limit,
            } => Some(Alert::BudgetExhausted {
                account: account_name(account),
                spent: *spent,
                limit: *limit,
            }),
            BudgetEvent::BalanceLow {
                account,
                balance,
                threshold,
            } => Some(Alert::BalanceLow {
                account: account_name(account),
                balance: *balance,
                threshold: *threshold,
            }),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// What a [`WebhookNotifier`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertStats {
    /// Alerts the receiver accepted (a 2xx answer).
    pub sent: u64,
    /// Attempts that failed (connection error, timeout, non-2xx), retried or not.
    pub failed_attempts: u64,
    /// Alerts given up: every attempt failed, or the queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
}

/// The webhook URL is not an absolute `http` or `https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidWebhookUrl(());

impl fmt::Display for InvalidWebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("the webhook URL must be an absolute http(s) URL")
    }
}

impl std::error::Error for InvalidWebhookUrl {}

/// Builds a [`WebhookNotifier`].
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookNotifierBuilder {
    url: String,
    queue: usize,
    attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl WebhookNotifierBuilder {
    /// Alerts waiting to be sent at most (default 1,024); beyond, new ones are dropped.
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = capacity.max(1);
        self
    }

    /// Attempts per alert (default 5).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Wait before the first retry, doubled for each next one (default 500 ms), and its
    /// cap (default 30 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Time limit of one attempt (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the background task (on the current tokio runtime).
    pub fn build(self) -> Result<WebhookNotifier, InvalidWebhookUrl> {
        let uri: Uri = self.url.parse().map_err(|_| InvalidWebhookUrl(()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(InvalidWebhookUrl(()));
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let counters = Arc::new(Counters::default());
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("the ring provider supports the default TLS versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        tokio::spawn(deliver(rx, client, uri, self, counters.clone()));
        Ok(WebhookNotifier { tx, counters })
    }
}

/// Posts [`Alert`]s to a webhook from a background task, never blocking the caller. See
/// the [module docs](crate::alerts).
///
/// Cheap to clone; the task stops when every clone is dropped (after the queue drains).
#[derive(Clone)]
pub struct WebhookNotifier {
    tx: mpsc::Sender<Alert>,
    counters: Arc<Counters>,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url` (its query may carry a token: the URL is never
    /// logged).
    pub fn builder(url: impl Into<String>) -> WebhookNotifierBuilder {
        WebhookNotifierBuilder {
            url: url.into(),
            queue: 1024,
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    /// Queues `alert` and returns at once; a full queue drops it (counted and logged).
    pub fn notify(&self, alert: Alert) {
        if let Err(err) = self.tx.try_send(alert) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            let kind = match &err {
                mpsc::error::TrySendError::Full(_) => "the alert queue is full",
                mpsc::error::TrySendError::Closed(_) => "the alert task has stopped",
            };
            tracing::warn!(reason = kind, "alert dropped");
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AlertStats {
        AlertStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            failed_attempts: self.counters.failed_attempts.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Forwards every budget and balance event of `accounts` (soft threshold crossed,
    /// budget exhausted, balance low) as an alert, from a task that ends with the
    /// accounts. Low-balance events need a threshold: see
    /// [`Accounts::set_low_balance_threshold`](crate::metering::Accounts::set_low_balance_threshold).
    pub fn forward_budget_events(&self, accounts: &crate::metering::Accounts) {
        let mut events = accounts.subscribe();
        let notifier = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(alert) = Alert::from_budget_event(&event) {
                            notifier.notify(alert);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        notifier.counters.dropped.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(missed = n, "budget events missed by the alert forwarder");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
}

#[cfg(feature = "routing")]
impl WebhookNotifier {
    /// Watches the channels of the routing table `current` returns (the one in force,
    /// re-read at each check) every `every`, and alerts on their transitions:
    /// [`Alert::ChannelDown`] when a channel is marked down, [`Alert::CircuitOpened`]
    /// when its circuit opens, [`Alert::ChannelRecovered`] when one that was down or
    /// open takes traffic normally again. A channel seen for the first time is only
    /// noted. The task ends when the returned handle is dropped.
    pub fn watch_channels<F>(&self, current: F, every: Duration) -> ChannelWatch
    where
        F: Fn() -> crate::routing::Router + Send + Sync + 'static,
    {
        use crate::routing::Health;
        use std::collections::HashMap;
        let notifier = self.clone();
        let task = tokio::spawn(async move {
            // Per channel id: its last health, and whether it was out of service since
            // it last took traffic normally.
            let mut seen: HashMap<String, (Health, bool)> = HashMap::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let router = current();
                for channel in router.channels() {
                    let health = channel.health();
                    let id = channel.id().to_owned();
                    let Some((last, out)) = seen.get(&id).copied() else {
                        seen.insert(id, (health, false));
                        continue;
                    };
                    let mut out_now = out;
                    if health != last {
                        match health {
                            Health::Down => {
                                out_now = true;
                                notifier.notify(Alert::ChannelDown {
                                    channel: id.clone(),
                                    reason: "its error ratio crossed the down threshold".into(),
                                });
                            }
                            Health::CircuitOpen => {
                                out_now = true;
                                notifier.notify(Alert::CircuitOpened {
                                    channel: id.clone(),
                                    failures: channel.inner.policy.failure_threshold,
                                });
                            }
                            Health::Healthy | Health::Degraded if out => {
                                out_now = false;
                                notifier.notify(Alert::ChannelRecovered {
                                    channel: id.clone(),
                                });
                            }
                            _ => {}
                        }
                    }
                    seen.insert(id, (health, out_now));
                }
            }
        });
        ChannelWatch(task.abort_handle())
    }
}

/// Stops [`WebhookNotifier::watch_channels`] when dropped.
#[cfg(feature = "routing")]
#[derive(Debug)]
#[must_use = "the watch stops when this is dropped"]
pub struct ChannelWatch(tokio::task::AbortHandle);

#[cfg(feature = "routing")]
impl Drop for ChannelWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The background task: one alert at a time, in order, each retried with backoff.
async fn deliver(
    mut rx: mpsc::Receiver<Alert>,
    client: HttpsClient,
    uri: Uri,
    config: WebhookNotifierBuilder,
    counters: Arc<Counters>,
) {
    while let Some(alert) = rx.recv().await {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = serde_json::json!({"source": "tollgate", "at": at, "alert": alert});
        let body = Bytes::from(body.to_string());
        let mut wait = config.backoff;
        let mut delivered = false;
        for attempt in 1..=config.attempts {
            let req = Request::post(uri.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "tollgate-alerts")
                .body(Full::new(body.clone()))
                .expect("a valid request");
            let sent = tokio::time::timeout(config.timeout, async {
                let res = client.request(req).await.ok()?;
                let ok = res.status().is_success();
                // Read the answer so the connection can be reused.
                let _ = res.into_body().collect().await;
                Some(ok)
            })
            .await;
            if let Ok(Some(true)) = sent {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                delivered = true;
                break;
            }
            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if attempt < config.attempts {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(config.max_backoff);
            }
        }
        if !delivered {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                attempts = config.attempts,
                "alert dropped: the webhook did not accept it"
            );
        }
    }
}
