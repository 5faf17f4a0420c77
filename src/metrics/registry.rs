//! [`Registry`]: the metric families and their text exposition.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use crate::error::ErrorKind;
use crate::outcome::Report;

/// The label value used for a model beyond [`Registry::with_max_models`], and for a
/// request whose model is not known.
pub(crate) const OTHER: &str = "other";

/// A label value shared by every series that carries it: cloning one is a reference
/// count, not an allocation.
type Label = Arc<String>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    model: Label,
    provider: Label,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_request_model: Label,
    gen_ai_provider_name: Label,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenHistogramLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_request_model: Label,
    gen_ai_provider_name: Label,
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: Label,
    provider: Label,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    model: Label,
    provider: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    route: &'static str,
    reason: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // OpenTelemetry's advice for gen_ai.client.operation.duration.
    Histogram::new([
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ])
}

fn ttft_histogram() -> Histogram {
    // OpenTelemetry's advice for gen_ai.server.time_to_first_token.
    Histogram::new([
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ])
}

fn token_histogram() -> Histogram {
    // OpenTelemetry's advice for gen_ai.client.token.usage.
    Histogram::new([
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
        4194304.0, 16777216.0, 67108864.0,
    ])
}

struct Families {
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<GenAiLabels>,
    ttft: Histograms<GenAiLabels>,
    token_usage: Histograms<TokenHistogramLabels>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<CostLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    cache: Family<CacheLabels, Counter>,
    rejections: Family<RejectLabels, Counter>,
    in_flight: Family<RouteLabels, prometheus_client::metrics::gauge::Gauge>,
}

/// Handles onto the token series of one (operation, model, provider); each shares its
/// value with the series in the registry.
struct TokenSeries {
    usage_input: Histogram,
    usage_output: Histogram,
    input: Counter,
    output: Counter,
    cached: Counter,
}

struct Inner {
    /// Written once per collector added with `counter_fn` / `gauge_fn`; read per scrape.
    registry: RwLock<prometheus_client::registry::Registry>,
    families: Families,
    /// Interned label values: the labelled models (bounded) and the providers.
    labels: RwLock<hashbrown::HashMap<String, Label>>,
    /// The handles one kind of answer records into, found with one lookup per answer
    /// rather than one per family (each family hashes its whole label set with SipHash
    /// under its own lock). Bounded like the labels it is keyed by.
    series: RwLock<hashbrown::HashMap<SeriesKey, Arc<Series>>>,
    /// The in-flight gauge of each route (a handful of static names).
    in_flight:
        RwLock<hashbrown::HashMap<&'static str, Arc<prometheus_client::metrics::gauge::Gauge>>>,
    /// The cache lookup counters, made on first use: hit, miss, bypass.
    cache: [std::sync::OnceLock<Counter>; 3],
    /// Bounded like the labels: models are capped, providers are configured.
    token_series: RwLock<hashbrown::HashMap<(&'static str, Label, Label), Arc<TokenSeries>>>,
    models: std::sync::atomic::AtomicUsize,
    dash: Label,
    other: Label,
    max_models: usize,
}

/// The gateway's metrics: what [`MetricsLayer`](super::MetricsLayer) records, rendered
/// in the Prometheus text format by [`render`](Registry::render). See the
/// [module docs](crate::metrics) for the series.
///
/// Cheap to clone; every clone shares the same series.
#[derive(Clone)]
#[must_use]
pub struct Registry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("max_models", &self.inner.max_models)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// What one response contributes to the metrics (see [`Registry::record`]).
pub(crate) struct Observation<'a> {
    pub(crate) route: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) model: Option<&'a str>,
    pub(crate) provider: Option<&'a str>,
    pub(crate) error: Option<ErrorKind>,
    /// The status this layer answered (a layer between it and the observer may have
    /// changed the one in the report, e.g. a guardrail blocking an answer).
    pub(crate) status: http::StatusCode,
    pub(crate) cache: Option<&'static str>,
    pub(crate) elapsed: Duration,
    pub(crate) ttfb: Option<Duration>,
    pub(crate) cost_usd: Option<f64>,
}

impl Registry {
    /// An empty registry that labels at most 1,000 distinct models.
    pub fn new() -> Self {
        Registry::with_max_models(1000)
    }

    /// An empty registry that labels at most `max` distinct model names; later ones are
    /// counted under `model="other"`. Clients choose model names, so an unbounded label
    /// would let them grow the scrape without limit.
    pub fn with_max_models(max: usize) -> Self {
        let families = Families {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            ttft: Family::new_with_constructor(ttft_histogram),
            token_usage: Family::new_with_constructor(token_histogram),
            tokens: Family::default(),
            cost: Family::default(),
            cache: Family::default(),
            rejections: Family::default(),
            in_flight: Family::default(),
        };
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register(
            "tollgate_requests",
            "Requests answered, by route, model, provider and status",
            families.requests.clone(),
        );
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "GenAI operation duration, from the request to the end of the answer (gen_ai.client.operation.duration)",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time to the first byte of the answer (gen_ai.server.time_to_first_token)",
            Unit::Seconds,
            families.ttft.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens per request, input and output (gen_ai.client.token.usage)",
            families.token_usage.clone(),
        );
        registry.register(
            "tollgate_tokens",
            "Tokens, by model, provider and type (input, output, cached)",
            families.tokens.clone(),
        );
        registry.register(
            "tollgate_cost_usd",
            "Cost in US dollars at the configured prices",
            families.cost.clone(),
        );
        registry.register(
            "tollgate_cache",
            "Response cache lookups, by result (hit, miss, bypass)",
            families.cache.clone(),
        );
        registry.register(
            "tollgate_rejections",
            "Requests refused by the gateway, by route and reason",
            families.rejections.clone(),
        );
        registry.register(
            "tollgate_requests_in_flight",
            "Requests whose answer has not ended yet (streams included), by route",
            families.in_flight.clone(),
        );
        Registry {
            inner: Arc::new(Inner {
                registry: RwLock::new(registry),
                families,
                labels: RwLock::new(hashbrown::HashMap::new()),
                series: RwLock::new(hashbrown::HashMap::new()),
                in_flight: RwLock::new(hashbrown::HashMap::new()),
                cache: Default::default(),
                token_series: RwLock::new(hashbrown::HashMap::new()),
                models: std::sync::atomic::AtomicUsize::new(0),
                dash: Arc::new("-".to_owned()),
                other: Arc::new(OTHER.to_owned()),
                max_models: max,
            }),
        }
    }

    /// Every series in the Prometheus (OpenMetrics) text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let registry = self
            .inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Adds a counter read from `value` at each scrape (e.g. a store's own counters);
    /// `name` gets the `_total` suffix.
    pub fn counter_fn<F>(&self, name: &'static str, help: &'static str, value: F)
    where
        F: Fn() -> u64 + Send + Sync + 'static,
    {
        self.collector(name, help, FnKind::Counter(Box::new(value)));
    }

    /// Adds a gauge read from `value` at each scrape (e.g. healthy channels).
    pub fn gauge_fn<F>(&self, name: &'static str, help: &'static str, value: F)
    where
        F: Fn() -> i64 + Send + Sync + 'static,
    {
        self.collector(name, help, FnKind::Gauge(Box::new(value)));
    }

    fn collector(&self, name: &'static str, help: &'static str, kind: FnKind) {
        self.inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(Box::new(FnMetric { name, help, kind }));
    }

    /// The `content-type` of [`render`](Registry::render)'s output.
    pub fn content_type(&self) -> &'static str {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    }

    /// The interned label for `value`; a new model beyond the bound is `other`.
    fn label(&self, value: Option<&str>, is_model: bool) -> Label {
        let inner = &*self.inner;
        let Some(value) = value else {
            return inner.dash.clone();
        };
        if let Some(label) = inner
            .labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(value)
        {
            return label.clone();
        }
        let mut labels = inner.labels.write().unwrap_or_else(|e| e.into_inner());
        if let Some(label) = labels.get(value) {
            return label.clone();
        }
        if is_model {
            if inner.models.load(std::sync::atomic::Ordering::Relaxed) >= inner.max_models {
                return inner.other.clone();
            }
            inner
                .models
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let label = Arc::new(value.to_owned());
        labels.insert(value.to_owned(), label.clone());
        label
    }

    /// The five token series of (operation, model, provider), found once and kept: one
    /// map lookup per answer instead of five label-set lookups.
    fn token_series(
        &self,
        operation: &'static str,
        model: &Label,
        provider: &Label,
    ) -> Arc<TokenSeries> {
        let key = (operation, model.clone(), provider.clone());
        cached(&self.inner.token_series, key, |_| {
            let f = &self.inner.families;
            let usage = |kind| {
                f.token_usage.get_or_create_owned(&TokenHistogramLabels {
                    gen_ai_operation_name: operation,
                    gen_ai_request_model: model.clone(),
                    gen_ai_provider_name: provider.clone(),
                    gen_ai_token_type: kind,
                })
            };
            let count = |kind| {
                f.tokens.get_or_create_owned(&TokenLabels {
                    model: model.clone(),
                    provider: provider.clone(),
                    r#type: kind,
                })
            };
            TokenSeries {
                usage_input: usage("input"),
                usage_output: usage("output"),
                input: count("input"),
                output: count("output"),
                cached: count("cached"),
            }
        })
    }

    /// Counts one request in flight on `route` until the guard is dropped.
    pub(crate) fn in_flight(&self, route: &'static str) -> InFlight {
        let gauge = cached(&self.inner.in_flight, route, |route| {
            self.inner
                .families
                .in_flight
                .get_or_create_owned(&RouteLabels { route })
        });
        let gauge = (*gauge).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// The handles of one kind of answer (made on first use).
    fn series(&self, key: SeriesKey) -> Arc<Series> {
        cached(&self.inner.series, key, |key| {
            let requests = self
                .inner
                .families
                .requests
                .get_or_create_owned(&RequestLabels {
                    route: key.route,
                    model: key.model.0.clone(),
                    provider: key.provider.0.clone(),
                    status: key.status,
                });
            Series {
                requests,
                duration: std::sync::OnceLock::new(),
                ttft: std::sync::OnceLock::new(),
                tokens: std::sync::OnceLock::new(),
            }
        })
    }

    /// Records one resolved response.
    pub(crate) fn record(&self, obs: &Observation<'_>, report: &Report) {
        let f = &self.inner.families;
        let model = self.label(obs.model, true);
        let provider = self.label(obs.provider, false);
        let error_type = error_type(obs.status, report, obs.error);
        let series = self.series(SeriesKey {
            route: obs.route,
            operation: obs.operation,
            model: Interned(model.clone()),
            provider: Interned(provider.clone()),
            status: obs.status.as_u16(),
            error_type,
        });
        series.requests.inc();
        if let Some(result) = obs.cache {
            let slot = match result {
                "hit" => Some(0),
                "miss" => Some(1),
                "bypass" => Some(2),
                _ => None,
            };
            let counter = || f.cache.get_or_create_owned(&CacheLabels { result });
            match slot {
                Some(i) => self.inner.cache[i].get_or_init(counter).inc(),
                None => counter().inc(),
            };
        }
        // A refusal by the gateway itself: an error that no provider answered.
        if let Some(reason) = obs
            .error
            .filter(|_| obs.provider.is_none())
            .and_then(rejection)
        {
            f.rejections
                .get_or_create(&RejectLabels {
                    route: obs.route,
                    reason,
                })
                .inc();
        }
        if obs.route == super::OTHER_ROUTE {
            return;
        }
        let labels = || GenAiLabels {
            gen_ai_operation_name: obs.operation,
            gen_ai_request_model: model.clone(),
            gen_ai_provider_name: provider.clone(),
            error_type,
        };
        series
            .duration
            .get_or_init(|| f.duration.get_or_create_owned(&labels()))
            .observe(obs.elapsed.as_secs_f64());
        if let (Some(ttfb), true) = (obs.ttfb, obs.status.is_success()) {
            series
                .ttft
                .get_or_init(|| f.ttft.get_or_create_owned(&labels()))
                .observe(ttfb.as_secs_f64());
        }
        // Tokens and cost are the provider's: a cache hit used none.
        if obs.cache == Some("hit") || !obs.status.is_success() && report.usage.is_none() {
            return;
        }
        let usage = report.usage.unwrap_or_default();
        let output = report.completion_tokens();
        let tokens = series
            .tokens
            .get_or_init(|| self.token_series(obs.operation, &model, &provider));
        tokens.usage_input.observe(usage.prompt_tokens as f64);
        tokens.usage_output.observe(output as f64);
        tokens.input.inc_by(usage.prompt_tokens);
        tokens.output.inc_by(output);
        tokens.cached.inc_by(usage.cached_tokens);
        if let Some(cost) = obs.cost_usd {
            f.cost
                .get_or_create(&CostLabels { model, provider })
                .inc_by(cost);
        }
    }
}

/// What picks a [`Series`]: every label of the families it holds handles onto.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    route: &'static str,
    operation: &'static str,
    model: Interned,
    provider: Interned,
    status: u16,
    error_type: &'static str,
}

/// An interned label, compared and hashed by address: equal names share one `Arc`
/// (see `Registry::label`), so this is the names' equality without reading them.
#[derive(Clone)]
struct Interned(Label);

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Interned {}

impl std::hash::Hash for Interned {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state)
    }
}

/// Handles onto the series one kind of answer records into; each shares its value
/// with the series in the registry. The histograms and token series are made on first
/// use, as the families would make them.
struct Series {
    requests: Counter,
    duration: std::sync::OnceLock<Histogram>,
    ttft: std::sync::OnceLock<Histogram>,
    tokens: std::sync::OnceLock<Arc<TokenSeries>>,
}

/// One request in flight; dropped when its answer ends (or it is abandoned).
pub(crate) struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum FnKind {
    Counter(Box<dyn Fn() -> u64 + Send + Sync>),
    Gauge(Box<dyn Fn() -> i64 + Send + Sync>),
}

/// A metric whose value is read at each scrape.
struct FnMetric {
    name: &'static str,
    help: &'static str,
    kind: FnKind,
}

impl fmt::Debug for FnMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnMetric")
            .field("name", &self.name)
            .finish()
    }
}

impl prometheus_client::collector::Collector for FnMetric {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        match &self.kind {
            FnKind::Counter(value) => {
                let metric = prometheus_client::metrics::counter::ConstCounter::new(value());
                let e =
                    encoder.encode_descriptor(self.name, self.help, None, metric.metric_type())?;
                metric.encode(e)
            }
            FnKind::Gauge(value) => {
                let metric = prometheus_client::metrics::gauge::ConstGauge::new(value());
                let e =
                    encoder.encode_descriptor(self.name, self.help, None, metric.metric_type())?;
                metric.encode(e)
            }
        }
    }
}

/// OpenTelemetry's `error.type`: empty for a success, else the gateway's error kind
/// or the status class.
fn error_type(status: http::StatusCode, report: &Report, kind: Option<ErrorKind>) -> &'static str {
    if let Some(kind) = kind {
        return kind_name(kind);
    }
    match status.as_u16() {
        200..=399 => match report.end {
            crate::outcome::End::Complete => "",
            crate::outcome::End::UpstreamError => "upstream_stream_error",
            crate::outcome::End::ClientGone => "client_gone",
        },
        400..=499 => "client_error",
        _ => "server_error",
    }
}

/// The reason label of a refusal by the gateway itself, if `kind` is one.
fn rejection(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Authentication
        | ErrorKind::PermissionDenied
        | ErrorKind::RateLimited
        | ErrorKind::InsufficientQuota
        | ErrorKind::PayloadTooLarge
        | ErrorKind::InvalidRequest
        | ErrorKind::ModelNotFound => Some(kind_name(kind)),
        _ => None,
    }
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request",
        ErrorKind::Authentication => "authentication",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::ModelNotFound => "model_not_found",
        ErrorKind::NotFound => "not_found",
        ErrorKind::PayloadTooLarge => "payload_too_large",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::InsufficientQuota => "insufficient_quota",
        ErrorKind::UpstreamFailed => "upstream_failed",
        ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Internal => "internal",
    }
}

/// The series of `key`, made by `make` on first use: a read lock on the way every
/// answer takes, the write lock only for a new key (a racing maker's copy is dropped).
fn cached<K: std::hash::Hash + Eq, V>(
    map: &RwLock<hashbrown::HashMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce(&K) -> V,
) -> Arc<V> {
    if let Some(found) = map.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let made = Arc::new(make(&key));
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert(made)
        .clone()
}
