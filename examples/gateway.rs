//! The tollgate gateway: one OpenAI-compatible entry point in front of many providers.
//!
//! With no configuration at all it serves the in-process mock provider, so it runs on a
//! fresh machine with no keys and no network:
//!
//! ```text
//! cargo run --release --features full --example gateway
//! curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"mock/echo","messages":[{"role":"user","content":"hello"}]}'
//! ```
//!
//! Configuration: `TOLLGATE_CONFIG=path/to/gateway.toml` loads a TOML file (every field
//! is documented in `examples/gateway.toml`); without it the embedded default applies.
//! `gateway --check-config FILE` validates a file and exits (0 valid, 1 invalid, with
//! the path of the bad field). The file is reloaded when it changes and on SIGHUP: a
//! valid new file is swapped in atomically (requests in flight finish on the old
//! one), an invalid one is refused with a log line and the running one stays. The
//! fields read once at start (`listen`, `stores.*`, `observability.log_format`,
//! `alerts.webhook_url`, turning the mock or authentication on or off) keep their
//! running value, with a warning naming each; the rest applies, `[[auth.keys]]` and the
//! master key included (see `tollgate::config`).
//!
//! Environment variables override the file's fields (see the README for the table):
//!
//! - `TOLLGATE_LISTEN`: address to serve on (default `127.0.0.1:8080`; port 0 picks one).
//! - `OPENAI_API_KEY` / `OPENAI_BASE_URL`: models other than the ones below go to
//!   OpenAI (or any OpenAI-compatible base URL) when the key is set.
//! - `ANTHROPIC_API_KEY` / `ANTHROPIC_BASE_URL`: `claude-*` models go to Anthropic.
//! - `GEMINI_API_KEY` / `GEMINI_BASE_URL`: `gemini-*` models go to Gemini.
//!   (These three make channels only when the configuration file defines none.)
//! - `TOLLGATE_REDIS_URL`: keep rate-limit counters, cached answers, prepaid balances
//!   and budget spend in Redis, shared by every replica (default: in memory); `TOLLGATE_REDIS_FAIL=open|closed` says what happens when
//!   Redis does not answer within 50 ms (default `open`: admit without counting).
//! - `TOLLGATE_RATE_LIMIT_GLOBAL`: limits for the whole gateway, e.g.
//!   `rpm=600,tpm=200000,max_parallel=64` (`rpm`, `rpd`, `tpm`, `tpd`, `max_parallel`).
//! - `TOLLGATE_RATE_LIMIT_MODELS`: per-model limits, `;`-separated `MODEL LIMITS`
//!   entries, e.g. `mock/echo rpm=60,tpm=10000; gpt-4o-mini max_parallel=8`.
//! - `TOLLGATE_RATE_LIMIT_CLIENT`: limits per client IP address (IPv6 by /64).
//! - `TOLLGATE_MASTER_KEY`: turns authentication on. Every `/v1/*` route then needs a
//!   key (`Authorization: Bearer` or `x-api-key`), and `/admin` is mounted for this
//!   key (and admin-role keys) to manage keys, balances, usage and to read the
//!   configuration (`GET /admin/config`, secrets masked), plus the dashboard at
//!   `/admin/ui`. Unset: the gateway is open to
//!   anyone who can reach it, and says so at start.
//! - `TOLLGATE_DB`: the SQLite file holding the usage ledger and, with authentication,
//!   the keys (default `./tollgate.db`).
//! - `TOLLGATE_DATABASE_URL`: keep the usage ledger and the keys in PostgreSQL instead
//!   (`postgres://...`), shared by a fleet.
//! - `TOLLGATE_CACHE`: which answers are cached: `deterministic` (the default:
//!   `temperature: 0` or a `seed`), `always` or `never`. Clients opt out per request with
//!   `Cache-Control: no-store`.
//! - `TOLLGATE_JWT_HS256_SECRET` (at least 32 bytes) and/or `TOLLGATE_JWKS_FILE` (a
//!   local JWKS file, read at start): with `TOLLGATE_MASTER_KEY`, also accept JWTs
//!   (claims `sub`, `team`, `role`, `models`); `TOLLGATE_JWT_ISSUER` and
//!   `TOLLGATE_JWT_AUDIENCE` require those claims.
//! - `TOLLGATE_LOG_FORMAT`: `text` (default) or `json` (one object per line).
//! - `RUST_LOG`: log filter (default `info`).
//!
//! Prometheus metrics are served at `GET /metrics` (see `tollgate::metrics`). On
//! SIGTERM the gateway stops accepting, lets requests in flight finish (up to
//! `shutdown_grace_seconds`, default 30), cuts the streams still open (each still gets
//! its usage record), flushes the usage ledger and exits 0.
//!
//! `mock/<x>`, `mock-anthropic/<x>` and `mock-gemini/<x>` are served by the in-process
//! mock in the OpenAI, Anthropic and Gemini dialects. Both `/v1/chat/completions` and
//! `/v1/messages` reach every model: the upstream translates between dialects.
//!
//! It prints `listening on http://ADDR` on stdout once it accepts connections.

// mimalloc for the binary: a gateway allocates and frees per request, and with the
// system allocator malloc and free were a fifth of its instructions (benches/README.md).
// The raw proxy of the end-to-end bench uses it too, so the ratio compares like with
// like. Embedders choose their own allocator: the library sets none.
#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/runtime.rs"]
mod runtime;
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use http::header::{HeaderName, AUTHORIZATION};
use tollgate::admin::{dashboard, Admin};
use tollgate::alerts::WebhookNotifier;
use tollgate::auth::{
    AuthLayer, FixedKeys, JwtKey, JwtValidator, KeyAuthenticator, KeySecret, Keys, MemoryKeyStore,
    PostgresKeyStore, SqliteKeyStore,
};
use tollgate::cache::{CacheLayer, CachePolicy, CacheStore, MemoryStore};
use tollgate::config::{
    CacheMode, ChannelConfig, Config, FailPolicy, LogFormat, PiiPolicy, Provider, RateLimits,
    Secret,
};
use tollgate::error::{ErrorKind, GatewayError};
use tollgate::extension::ClientAddr;
use tollgate::failover::FailoverLayer;
use tollgate::guardrails::{GuardrailLayer, PiiMode, PiiRedactor};
use tollgate::metering::{
    Account, Accounts, DatabaseLedger, GroupBy, MeteringLayer, Money, Period, UsageQuery,
};
use tollgate::metrics::{MetricsLayer, Registry};
use tollgate::outcome::{observe, ObserveOptions, Outcome};
use tollgate::ratelimit::{FailMode, RateLimitLayer, RateLimitStore, RedisStore};
use tollgate::request::{BodyLimit, LlmRequest};
use tollgate::routing::RoutingLayer;
use tollgate::telemetry::GenAiSpanLayer;
use tollgate::testing::MockServer;
use tollgate::upstream::{Target, Upstream};
use tollgate::{Dialect, Endpoint};
use tower::ServiceBuilder;
use tower::ServiceExt as _;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    runtime::runtime()?.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [flag, file] if flag == "--check-config" => check_config(file),
        _ => {
            eprintln!("usage: gateway [--check-config FILE]");
            std::process::exit(2);
        }
    }
    let config_path = std::env::var_os("TOLLGATE_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let config = load_config(config_path.as_deref())?;
    let telemetry = init_logs(config.observability.log_format);
    match &config_path {
        Some(path) => {
            tracing::info!(path = %path.display(), "configuration file (TOLLGATE_CONFIG)")
        }
        None => tracing::info!("no TOLLGATE_CONFIG: the embedded default configuration"),
    }
    let config = Arc::new(config);
    let shared = Shared::start(&config).await?;
    let first = Generation::build(config.clone(), &shared)?;
    first.apply(&shared);
    let current = Arc::new(ArcSwap::from_pointee(first));
    channel_metrics(&shared.metrics, current.clone());
    // Channel down / recovered / circuit opened, for the channels in force.
    let _channel_watch = shared.alerts.as_ref().map(|alerts| {
        let current = current.clone();
        alerts.watch_channels(
            move || current.load().router.clone(),
            Duration::from_secs(1),
        )
    });
    match config_path.clone() {
        Some(path) => {
            tokio::spawn(watch_config(path, current.clone(), shared.clone()));
        }
        None => {
            // Without a file there is nothing to reload, but SIGHUP must not end the
            // process (its default action).
            #[cfg(unix)]
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: no TOLLGATE_CONFIG, nothing to reload");
                    }
                });
            }
        }
    }
    // Readiness: true while serving, false from the shutdown signal on, so a load
    // balancer stops sending new requests while those in flight finish.
    let ready = Arc::new(AtomicBool::new(true));
    let (cut, cut_rx) = tokio::sync::watch::channel(false);
    let drain = Drain {
        cut: cut_rx,
        open: Arc::default(),
    };
    let app = stack(
        router(&shared, current.clone(), ready.clone()),
        Reloading {
            current: current.clone(),
        },
        drain.clone(),
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}: {e}; set TOLLGATE_LISTEN (or `listen`) to a free address",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "tollgate gateway ready");
    println!("listening on http://{addr}");
    // TCP_NODELAY: without it the first SSE event can wait for the peer's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let serve =
        axum::serve(listener, Connections { stack: app }).with_graceful_shutdown(async move {
            shutdown_signal().await;
            ready.store(false, Ordering::Relaxed);
            let _ = stopping.send(true);
        });
    // Graceful shutdown: stop accepting, let requests in flight finish up to the
    // deadline, then close what is left.
    // The grace of the configuration in force when the signal came (it follows reloads).
    let grace_current = current.clone();
    let deadline = async move {
        let _ = stopped.wait_for(|s| *s).await;
        let grace = grace_current.load().config.shutdown_grace_seconds;
        tokio::time::sleep(Duration::from_secs(grace)).await;
        grace
    };
    let serve = serve.into_future();
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served?,
        grace = deadline => {
            tracing::warn!(
                grace_seconds = grace,
                "shutdown deadline passed: cutting the answers still open"
            );
            // Each open body ends with an error: its connection closes, its outcome
            // resolves (client gone, usage so far) and metering writes its record.
            let _ = cut.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut serve).await;
        }
    }
    // Every record must be in the ledger's queue before the last flush.
    if !drain.settled(Duration::from_secs(5)).await {
        tracing::warn!("some answers did not resolve within 5 s of the shutdown: their usage records may be missing");
    }
    shared.ledger.flush().await;
    let stats = shared.ledger.stats();
    tracing::info!(
        written = stats.written,
        spooled = stats.spooled,
        replayed = stats.replayed,
        "usage ledger flushed"
    );
    #[cfg(feature = "otel")]
    if let Some(provider) = telemetry {
        // The last spans, before exiting.
        let _ = provider.shutdown();
    }
    #[cfg(not(feature = "otel"))]
    let _ = telemetry;
    drop(shared);
    Ok(())
}

/// `--check-config FILE`: validates the file (with `${ENV}` expansion) and exits.
fn check_config(file: &str) -> ! {
    match Config::from_file(file) {
        Ok(config) => {
            println!(
                "{file}: valid ({} channels, {} model aliases)",
                config.channels.len(),
                config.models.len()
            );
            std::process::exit(0)
        }
        Err(err) => {
            eprintln!("invalid configuration: {err}");
            std::process::exit(1)
        }
    }
}

/// The configuration file (or the embedded default) with the environment on top.
fn load_config(path: Option<&std::path::Path>) -> Result<Config, BoxError> {
    let mut config = match path {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    apply_env(&mut config)?;
    config.validate()?;
    Ok(config)
}

/// The environment variables the gateway has always read override the file's fields.
fn apply_env(config: &mut Config) -> Result<(), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(v) = var("TOLLGATE_LISTEN") {
        config.listen = v.parse().map_err(|e| {
            format!("TOLLGATE_LISTEN: {e} (expected host:port, e.g. 127.0.0.1:8080)")
        })?;
    }
    if let Some(master) = std::env::var_os("TOLLGATE_MASTER_KEY") {
        let master = master
            .into_string()
            .map_err(|_| "TOLLGATE_MASTER_KEY must be visible ASCII".to_owned())?;
        config.auth.master_key = Some(Secret::new(master));
    }
    if let Some(v) = var("TOLLGATE_JWT_HS256_SECRET") {
        config.auth.jwt_hs256_secret = Some(Secret::new(v));
    }
    if let Some(v) = var("TOLLGATE_JWKS_FILE") {
        config.auth.jwks_file = Some(v.into());
    }
    if let Some(v) = var("TOLLGATE_JWT_ISSUER") {
        config.auth.jwt_issuer = Some(v);
    }
    if let Some(v) = var("TOLLGATE_JWT_AUDIENCE") {
        config.auth.jwt_audience = Some(v);
    }
    if let Some(v) = var("TOLLGATE_DB") {
        config.stores.sqlite = v.into();
    }
    if let Some(v) = var("TOLLGATE_DATABASE_URL") {
        config.stores.database_url = Some(Secret::new(v));
    }
    if let Some(v) = var("TOLLGATE_REDIS_URL") {
        config.stores.redis_url = Some(Secret::new(v));
    }
    if let Some(v) = var("TOLLGATE_REDIS_FAIL") {
        config.stores.redis_fail = match v.as_str() {
            "open" => FailPolicy::Open,
            "closed" => FailPolicy::Closed,
            other => {
                return Err(format!(
                    "TOLLGATE_REDIS_FAIL: `{other}` (expected open or closed)"
                ))
            }
        };
    }
    if let Some(v) = var("TOLLGATE_CACHE") {
        config.cache.policy = match v.as_str() {
            "deterministic" => CacheMode::Deterministic,
            "always" => CacheMode::Always,
            "never" => CacheMode::Never,
            other => {
                return Err(format!(
                    "TOLLGATE_CACHE: `{other}` (expected deterministic, always or never)"
                ))
            }
        };
    }
    if let Some(v) = var("TOLLGATE_LOG_FORMAT") {
        config.observability.log_format = match v.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(format!(
                    "TOLLGATE_LOG_FORMAT: `{other}` (expected text or json)"
                ))
            }
        };
    }
    if let Some(v) = var("TOLLGATE_RATE_LIMIT_GLOBAL") {
        config.limits.global = Some(parse_limits("TOLLGATE_RATE_LIMIT_GLOBAL", &v)?);
    }
    if let Some(v) = var("TOLLGATE_RATE_LIMIT_CLIENT") {
        config.limits.client = Some(parse_limits("TOLLGATE_RATE_LIMIT_CLIENT", &v)?);
    }
    if let Some(text) = var("TOLLGATE_RATE_LIMIT_MODELS") {
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, spec) = entry.split_once(char::is_whitespace).ok_or_else(|| {
                format!("TOLLGATE_RATE_LIMIT_MODELS: `{entry}`: expected `MODEL LIMITS`")
            })?;
            let name = format!("TOLLGATE_RATE_LIMIT_MODELS ({model})");
            config
                .limits
                .models
                .insert(model.to_owned(), parse_limits(&name, spec.trim())?);
        }
    }
    // Provider keys in the environment make channels only when the file has none.
    if config.channels.is_empty() {
        let providers = [
            ("OPENAI", Provider::Openai, "*", -1),
            ("ANTHROPIC", Provider::Anthropic, "claude-*", 0),
            ("GEMINI", Provider::Gemini, "gemini-*", 0),
        ];
        for (prefix, provider, models, priority) in providers {
            if let Some(key) = var(&format!("{prefix}_API_KEY")) {
                let mut channel = ChannelConfig::new(
                    prefix.to_ascii_lowercase(),
                    provider,
                    vec![models.to_owned()],
                );
                channel.base_url = var(&format!("{prefix}_BASE_URL"));
                channel.api_keys = vec![Secret::new(key)];
                channel.priority = priority;
                config.channels.push(channel);
            }
        }
    }
    Ok(())
}

/// `rpm=600,tpm=200000,max_parallel=8` (the `TOLLGATE_RATE_LIMIT_*` format).
fn parse_limits(name: &str, text: &str) -> Result<RateLimits, String> {
    let mut limits = RateLimits::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{name}: `{part}`: expected KEY=NUMBER"))?;
        let n: u64 = value
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}: `{part}`: expected a positive number"))?;
        match key.trim() {
            "rpm" => limits.rpm = Some(n),
            "rpd" => limits.rpd = Some(n),
            "tpm" => limits.tpm = Some(n),
            "tpd" => limits.tpd = Some(n),
            "max_parallel" => {
                limits.max_parallel =
                    Some(u32::try_from(n).map_err(|_| format!("{name}: `{part}`: too large"))?)
            }
            other => {
                return Err(format!(
                    "{name}: unknown limit `{other}` (expected rpm, rpd, tpm, tpd or max_parallel)"
                ))
            }
        }
    }
    Ok(limits)
}

fn init_logs(format: LogFormat) -> Option<Telemetry> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // stdout carries only the `listening on` line.
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().boxed(),
        _ => logs.boxed(),
    };
    let (otel, telemetry) = otel_layer();
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .init();
    if telemetry.is_some() {
        tracing::info!("spans exported over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    telemetry
}

/// What keeps span export going; flushed at shutdown.
#[cfg(feature = "otel")]
type Telemetry = opentelemetry_sdk::trace::SdkTracerProvider;
#[cfg(not(feature = "otel"))]
type Telemetry = ();

/// OTLP over HTTP (protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; the standard `OTEL_*` variables
/// configure it (headers, timeout, `OTEL_SERVICE_NAME`).
#[cfg(feature = "otel")]
fn otel_layer<S>() -> (
    Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
    Option<Telemetry>,
)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_otlp::WithHttpConfig as _;
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return (None, None);
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client =
        opentelemetry_http::hyper::HyperClient::new(connector, Duration::from_secs(10), None);
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client)
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("OTLP export is off: {err}");
            return (None, None);
        }
    };
    // Exports from the tokio runtime, where the HTTP client lives.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("tollgate")
                .build(),
        )
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tollgate"));
    (Some(layer), Some(provider))
}

#[cfg(not(feature = "otel"))]
fn otel_layer() -> (
    Option<tracing_subscriber::layer::Identity>,
    Option<Telemetry>,
) {
    (None, None)
}

/// What lives as long as the process: stores, the ledger, authentication, the mock,
/// the upstream connection pool and the metrics. A reload keeps all of it.
#[derive(Clone)]
struct Shared {
    upstream: Upstream,
    mock: Option<Arc<MockServer>>,
    ledger: DatabaseLedger,
    accounts: Accounts,
    auth: Option<AuthStores>,
    rate_limit_store: Option<RateLimitStore>,
    cache_store: Arc<dyn CacheStore>,
    metrics: Registry,
    alerts: Option<WebhookNotifier>,
}

impl Shared {
    async fn start(config: &Config) -> Result<Shared, BoxError> {
        let auth = authentication(config).await?;
        let mock = if config.mock {
            let mock = MockServer::start().await?;
            tracing::info!(base_url = %mock.base_url(), "mock provider serving models mock/<name>");
            Some(Arc::new(mock))
        } else {
            None
        };
        // The usage ledger: the SQLite file, or PostgreSQL with a database URL (shared by
        // a fleet, like the keys).
        let db = &config.stores.sqlite;
        let url = config.stores.database_url.as_ref().map(Secret::expose);
        let ledger = DatabaseLedger::open(url, db).await?;
        match &ledger {
            DatabaseLedger::Postgres(_) => {
                tracing::info!(
                    "usage ledger: PostgreSQL (TOLLGATE_DATABASE_URL or stores.database_url)"
                )
            }
            _ => {
                tracing::info!(path = %db.display(), "usage ledger: SQLite (TOLLGATE_DB or stores.sqlite)")
            }
        }
        // Prepaid balances: credited through /admin/balances, applied by metering, and
        // rebuilt here from the stored credits and the records (spooled ones replayed first).
        ledger.flush().await;
        let accounts = accounts(config, &ledger).await?;
        let alerts = match &config.alerts.webhook_url {
            Some(url) => {
                let alerts = WebhookNotifier::builder(url.expose())
                    .build()
                    .map_err(|e| format!("alerts.webhook_url: {e}"))?;
                alerts.forward_budget_events(&accounts);
                tracing::info!("budget and channel alerts are posted to the configured webhook");
                Some(alerts)
            }
            None => None,
        };
        let redis_url = config.stores.redis_url.as_ref().map(Secret::expose);
        let rate_limit_store = match redis_url {
            Some(url) => {
                let fail = match config.stores.redis_fail {
                    FailPolicy::Closed => FailMode::Closed,
                    _ => FailMode::Open,
                };
                let store = RedisStore::builder(url).fail_mode(fail).connect().await?;
                tracing::info!(?fail, "rate limits are shared in Redis");
                Some(RateLimitStore::from(store))
            }
            None => {
                tracing::info!(
                    "rate limits are kept in memory (set TOLLGATE_REDIS_URL to share them)"
                );
                None
            }
        };
        let cache_store: Arc<dyn CacheStore> = match redis_url {
            Some(url) if config.cache.policy != CacheMode::Never => {
                let store = tollgate::cache::RedisStore::connect(url).await?;
                tracing::info!("response cache in Redis (fails open: a miss when Redis is down)");
                Arc::new(store)
            }
            _ => Arc::new(MemoryStore::new()),
        };
        let metrics = ledger_metrics(&ledger);
        Ok(Shared {
            upstream: Upstream::builder().build(),
            mock,
            ledger,
            accounts,
            auth,
            rate_limit_store: Some(
                rate_limit_store.unwrap_or_else(|| {
                    RateLimitStore::from(tollgate::ratelimit::MemoryStore::new())
                }),
            ),
            cache_store,
            metrics,
            alerts,
        })
    }
}

/// Channels of the configuration in force by state, read at each scrape.
fn channel_metrics(registry: &Registry, current: Arc<ArcSwap<Generation>>) {
    use tollgate::routing::Health;
    let count = move |wanted: fn(&tollgate::routing::Channel) -> bool| {
        let current = current.clone();
        move || {
            let router = current.load().router.clone();
            router.channels().filter(|c| wanted(c)).count() as i64
        }
    };
    registry.gauge_fn(
        "tollgate_channels_healthy",
        "Enabled channels taking traffic (healthy, degraded or on probation)",
        count(|c| c.is_enabled() && !matches!(c.health(), Health::Down | Health::CircuitOpen)),
    );
    registry.gauge_fn(
        "tollgate_channels_down",
        "Channels marked down by their error ratio",
        count(|c| c.health() == Health::Down),
    );
    registry.gauge_fn(
        "tollgate_channels_circuit_open",
        "Channels whose circuit breaker is open",
        count(|c| c.health() == Health::CircuitOpen),
    );
    registry.gauge_fn(
        "tollgate_channels_disabled",
        "Channels disabled in the configuration or through the admin API",
        count(|c| !c.is_enabled()),
    );
}

/// The metrics registry, with the usage ledger's own counters read at each scrape.
fn ledger_metrics(ledger: &DatabaseLedger) -> Registry {
    let registry = Registry::new();
    let l = ledger.clone();
    registry.counter_fn(
        "tollgate_ledger_written",
        "Usage records written to the ledger's database",
        move || l.stats().written,
    );
    let l = ledger.clone();
    registry.counter_fn(
        "tollgate_ledger_spooled",
        "Usage records spooled to the file next to the database (queue full or write failed)",
        move || l.stats().spooled,
    );
    let l = ledger.clone();
    registry.counter_fn(
        "tollgate_ledger_replayed",
        "Spooled usage records written to the database later",
        move || l.stats().replayed,
    );
    registry
}

/// One configuration in force: the LLM stack built from it and its routes. A reload
/// builds a new one and swaps it in; requests in flight finish on the one they began on.
struct Generation {
    config: Arc<Config>,
    /// The channels of this configuration, with their live health (the admin API's
    /// `/admin/channels` reads the one in force).
    router: tollgate::routing::Router,
    llm: LlmService,
    /// With authentication: this configuration's authenticator (master key, JWTs), the
    /// records of its `[[auth.keys]]`, and the admin API and dashboard it guards.
    auth: Option<KeyAuthenticator>,
    fixed_keys: Vec<tollgate::auth::KeyRecord>,
    admin: Option<Router>,
}

/// The LLM stack: its answers stay `tollgate::Body` up to the access log, which boxes
/// them into axum's body once.
type LlmService =
    tower::util::BoxCloneSyncService<Request, http::Response<tollgate::Body>, Infallible>;

impl Generation {
    fn build(config: Arc<Config>, shared: &Shared) -> Result<Generation, BoxError> {
        let router = routing_table(&config, shared)?;
        let mut rate_limits = RateLimitLayer::new();
        if let Some(store) = &shared.rate_limit_store {
            rate_limits = rate_limits.store(store.clone());
        }
        if let Some(limits) = &config.limits.client {
            rate_limits = rate_limits.per_client_ip(limits.to_limits());
        }
        if let Some(limits) = &config.limits.global {
            rate_limits = rate_limits.global(limits.to_limits());
        }
        for (model, limits) in &config.limits.models {
            rate_limits = rate_limits.model(model.clone(), limits.to_limits());
        }
        // Keyed by the model the aliases of this generation resolve to: an alias and
        // its target share entries, and a reload that re-points an alias misses instead
        // of replaying the old model's answers from the shared store.
        let mut cache = CacheLayer::new()
            .store(shared.cache_store.clone())
            .policy(CachePolicy::from(config.cache.policy))
            .resolve_model(router.clone());
        if let Some(ttl) = config.cache.ttl_seconds {
            cache = cache.ttl(Duration::from_secs(ttl));
        }
        if let Some(bytes) = config.cache.max_entry_bytes {
            cache = cache.max_entry_bytes(bytes);
        }
        let prices = config.price_table();
        // Routing picks the channels for the model; fail-over tries them in turn (a
        // model one channel serves gets exactly one attempt: the provider's own answer).
        let upstream = shared.upstream.clone();
        let routed = ServiceBuilder::new()
            .layer(RoutingLayer::new(router.clone()))
            .layer(FailoverLayer::new().revisit(false))
            .service_fn(move |req: http::Request<tollgate::Body>| attempt(upstream.clone(), req));
        // Rate limits key on the Principal the auth layer writes (per-key rpm, tpm,
        // max_parallel), and on the client address.
        // Answers stay `tollgate::Body` down here: each conversion to axum's body and
        // back is a box per answer. The outermost layer converts once.
        // Layers with nothing to do are left out rather than run idle on every request:
        // no limit can apply without authentication (per-key limits) or a configured
        // one, and the GenAI span needs a subscriber that records it (the log filter and
        // the OpenTelemetry layer are set once, at start).
        let limited = shared.auth.is_some()
            || config.limits.client.is_some()
            || config.limits.global.is_some()
            || !config.limits.models.is_empty();
        let gen_ai_spans = tracing::enabled!(target: "tollgate::telemetry", tracing::Level::INFO);
        let inner = ServiceBuilder::new()
            // One GenAI span per request (after auth: it parses the body).
            .option_layer(gen_ai_spans.then(GenAiSpanLayer::new))
            .option_layer(limited.then_some(rate_limits))
            .layer(
                MeteringLayer::new(shared.ledger.clone())
                    .accounts(shared.accounts.clone())
                    .prices(prices.clone()),
            )
            .option_layer(guardrails(&config))
            .layer(cache)
            .service_fn(move |req: http::Request<tollgate::Body>| dispatch(routed.clone(), req));
        let (auth, fixed_keys) = match &shared.auth {
            Some(stores) => {
                let (authenticator, records) = authenticator(&config, stores)?;
                (Some(authenticator), records)
            }
            None => (None, Vec::new()),
        };
        let admin = match (&auth, &shared.auth) {
            (Some(authenticator), Some(stores)) => Some(
                Admin::new(authenticator.clone(), stores.keys.clone())
                    .with_usage(shared.ledger.clone())
                    .with_balances(shared.accounts.clone(), shared.ledger.clone())
                    .with_config({
                        let config = config.clone();
                        move || config.clone()
                    })
                    .with_channels({
                        let router = router.clone();
                        move || router.clone()
                    })
                    .into_router()
                    .merge(dashboard()),
            ),
            _ => None,
        };
        // Either, not a second box: a boxed service costs an allocation per clone and
        // per call, and the stack is cloned and called on every request.
        let inner = match &auth {
            Some(authenticator) => tower::util::Either::Left(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(authenticator.clone()))
                    .service(inner),
            ),
            None => tower::util::Either::Right(inner),
        };
        // Metrics outermost, so refused requests count too. The body limit goes into
        // the request only when it is not the default `LlmRequest::extract` applies.
        let body_limit = (config.body_limit != tollgate::request::DEFAULT_BODY_LIMIT)
            .then_some(BodyLimit(config.body_limit));
        let llm = LlmService::new(
            ServiceBuilder::new()
                .layer(MetricsLayer::new(shared.metrics.clone()).prices(prices))
                .map_request(move |mut req: Request| {
                    if let Some(limit) = body_limit {
                        req.extensions_mut().insert(limit);
                    }
                    req
                })
                .service(inner),
        );
        Ok(Generation {
            config,
            router,
            llm,
            auth,
            fixed_keys,
            admin,
        })
    }
}

impl Generation {
    /// Applies what of this configuration lives in the process-wide state rather than in
    /// the stack: the file's client keys and the low-balance thresholds. Called when the
    /// generation goes into force.
    fn apply(&self, shared: &Shared) {
        if let Some(stores) = &shared.auth {
            stores.fixed.replace_all(self.fixed_keys.iter().cloned());
            // A removed key must stop working now, not when its cache entry expires.
            stores.keys.clear_cache();
            if !self.fixed_keys.is_empty() {
                tracing::info!(
                    keys = self.fixed_keys.len(),
                    "client keys from the configuration file"
                );
            }
        }
        let alerts = &self.config.alerts;
        shared
            .accounts
            .replace_low_balance_thresholds(alerts.balance_low, alerts.balance_low_thresholds());
    }
}

/// The PII guardrail, when configured: after metering (a refused prompt is metered as
/// a 400), in front of the cache (hits are checked too; the key is the redacted prompt).
fn guardrails(config: &Config) -> Option<GuardrailLayer> {
    let g = &config.guardrails;
    let mode = match g.pii {
        PiiPolicy::Redact => PiiMode::Redact,
        PiiPolicy::Block => PiiMode::Block,
        _ => return None,
    };
    Some(GuardrailLayer::new(
        PiiRedactor::new().mode(mode).sides(g.requests, g.responses),
    ))
}

/// Sends each request to the LLM stack of the configuration in force when it arrived.
#[derive(Clone)]
struct Reloading {
    current: Arc<ArcSwap<Generation>>,
}

impl tower::Service<Request> for Reloading {
    type Response = http::Response<tollgate::Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<LlmService, Request>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The stack is chosen per request; its readiness is driven by `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        self.current.load().llm.clone().oneshot(req)
    }
}

/// Reloads the configuration on SIGHUP and when the file changes (its modification
/// time, checked every second). An invalid file is refused with a log line and the
/// running configuration stays.
async fn watch_config(path: PathBuf, current: Arc<ArcSwap<Generation>>, shared: Shared) {
    let mtime = |path: &std::path::Path| -> Option<SystemTime> {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    };
    let mut seen = mtime(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        #[cfg(unix)]
        let signal = async {
            match hup.as_mut() {
                Some(hup) => {
                    hup.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signal = std::future::pending::<()>();
        let why = tokio::select! {
            () = signal => "SIGHUP",
            _ = tick.tick() => {
                let now = mtime(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "file changed"
            }
        };
        let reloaded = load_config(Some(&path)).and_then(|mut config| {
            let kept = keep_restart_only(&current.load().config, &mut config, &shared);
            Ok((Generation::build(Arc::new(config), &shared)?, kept))
        });
        match reloaded {
            Ok((generation, kept)) => {
                for field in kept {
                    tracing::warn!(
                        field,
                        "configuration reload: `{field}` changed but is read only at start; the running value stays until a restart"
                    );
                }
                generation.apply(&shared);
                tracing::info!(
                    why,
                    channels = generation.config.channels.len(),
                    aliases = generation.config.models.len(),
                    "configuration reloaded"
                );
                current.store(Arc::new(generation));
            }
            Err(err) => tracing::error!(
                why,
                error = %err,
                "configuration reload refused; the running configuration stays"
            ),
        }
    }
}

/// Puts back in `new` the running value of each field a reload cannot change (they are
/// read once at start: the listener, the stores, turning authentication on or off, the
/// log format, the alert webhook, starting the mock), and returns their names. Every
/// other field applies: channels, aliases, routing, limits, cache policy, prices,
/// guardrails, body limit, shutdown grace, metrics on/off, low-balance thresholds, and
/// with authentication on, the master key, JWT settings and `[[auth.keys]]`.
fn keep_restart_only(old: &Config, new: &mut Config, shared: &Shared) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if old.$($field).+ != new.$($field).+ {
                new.$($field).+ = old.$($field).+.clone();
                kept.push($name);
            }
        };
    }
    keep!(listen, "listen");
    keep!(stores.sqlite, "stores.sqlite");
    keep!(stores.database_url, "stores.database_url");
    keep!(stores.redis_url, "stores.redis_url");
    keep!(stores.redis_fail, "stores.redis_fail");
    keep!(observability.log_format, "observability.log_format");
    keep!(alerts.webhook_url, "alerts.webhook_url");
    // The mock is started at start only when asked for; once started it can be turned
    // off and on again.
    if new.mock && shared.mock.is_none() {
        new.mock = false;
        kept.push("mock");
    }
    // The key stores are opened at start: a master key may change, not appear or go.
    if old.auth.master_key.is_some() != new.auth.master_key.is_some() {
        new.auth.master_key = old.auth.master_key.clone();
        kept.push("auth.master_key");
    }
    kept
}

/// The routing table of a configuration: its `[[channels]]`, `[models]` aliases and
/// `[routing]` strategy, plus the embedded mock's three channels (one per dialect, by
/// model prefix). The mock's channels never go down: its failures are scripted.
fn routing_table(config: &Config, shared: &Shared) -> Result<tollgate::routing::Router, BoxError> {
    use tollgate::routing::{Channel, HealthPolicy};
    let mock = match (&shared.mock, config.mock) {
        (Some(mock), true) => Some(mock.base_url()),
        _ => None,
    };
    // Its errors and 429s are scripted by the tests: no circuit, no key cool-down.
    let mock_health = HealthPolicy::new()
        .off()
        .cooldown(Duration::ZERO, Duration::ZERO);
    let mut failed = None;
    let router = config.router(|mut builder| {
        if let Some(base) = &mock {
            let targets = [
                ("mock", Target::openai_compatible("mock", base)),
                ("mock-anthropic", Target::anthropic("mock-anthropic", base)),
                ("mock-gemini", Target::gemini("mock-gemini", base)),
            ];
            for (id, target) in targets {
                match target {
                    Ok(target) => {
                        builder = builder.channel(
                            Channel::builder(id, target)
                                .model_prefix(format!("{id}/"))
                                .auto(false)
                                .health(mock_health.clone()),
                        )
                    }
                    Err(e) => failed = Some(e.to_string()),
                }
            }
        }
        builder
    })?;
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(router),
    }
}

/// The model ids `/v1/models` lists: the mock's, every model a channel names, and the
/// aliases.
fn model_ids(config: &Config) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    if config.mock {
        ids.extend(
            [
                "mock/echo",
                "mock/gpt-4o-mini",
                "mock/tools",
                "mock-anthropic/echo",
                "mock-gemini/echo",
            ]
            .map(String::from),
        );
    }
    for channel in &config.channels {
        ids.extend(channel.models.iter().filter(|m| !m.ends_with('*')).cloned());
    }
    ids.extend(config.models.keys().cloned());
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// Prepaid balances and budgets: in this process, or with a Redis URL
/// (`TOLLGATE_REDIS_URL`, `stores.redis_url`) in Redis, shared by every replica. Either
/// way they start from the ledger: its credits minus what was spent since, and the
/// spend of each current budget period, so a restart resets nothing (the first replica
/// to start seeds Redis; the others find the fleet's figures there).
async fn accounts(config: &Config, ledger: &DatabaseLedger) -> Result<Accounts, BoxError> {
    use tollgate::metering::RedisAccounts;
    let balances = ledger.balances().await?;
    let now = Accounts::new().now_ms();
    let spend = budget_spend(ledger, now).await?;
    let Some(url) = config.stores.redis_url.as_ref().map(Secret::expose) else {
        let accounts = Accounts::new();
        for (account, balance) in balances {
            accounts.credit(account, balance);
        }
        for (period, start, spent) in spend {
            accounts.preload_spend(period, start, spent);
        }
        return Ok(accounts);
    };
    let store = RedisAccounts::builder(url)
        .fail_closed(config.stores.redis_fail == FailPolicy::Closed)
        .connect()
        .await?;
    let mut seeded = 0;
    for (account, balance) in &balances {
        seeded += usize::from(store.seed(account, *balance).await?);
    }
    for (_, start, spent) in spend {
        for (account, amount) in spent {
            seeded += usize::from(store.seed_spend(&account, start, amount).await?);
        }
    }
    tracing::info!(
        balances = balances.len(),
        seeded,
        "prepaid balances and budget spend are shared in Redis"
    );
    Ok(Accounts::new().shared(store))
}

/// Spend so far in each budget period (its start, then per key and per team), from
/// the ledger.
async fn budget_spend(
    ledger: &DatabaseLedger,
    now: i64,
) -> Result<Vec<(Period, i64, Vec<(Account, Money)>)>, BoxError> {
    let mut out = Vec::new();
    for period in [
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Total,
    ] {
        let start = period.start(now);
        let mut spent = Vec::new();
        for (group, make) in [
            (GroupBy::Key, Account::Key as fn(String) -> Account),
            (GroupBy::Team, Account::Team),
        ] {
            let from = (start != i64::MIN).then_some(start);
            let rows = ledger
                .usage(&UsageQuery::new().between(from, None).group_by(group))
                .await?;
            spent.extend(
                rows.into_iter()
                    .filter(|r| r.group != "-")
                    .map(|r| (make(r.group), r.cost)),
            );
        }
        out.push((period, start, spent));
    }
    Ok(out)
}

/// The key stores behind authentication, opened once at start: the database's (SQLite
/// or PostgreSQL, where the admin API creates keys) behind the configuration file's
/// `[[auth.keys]]` (in memory, replaced on reload).
#[derive(Clone)]
struct AuthStores {
    keys: Keys,
    /// The file's keys (only their hashes); `keys` reads them through `FixedKeys`.
    fixed: MemoryKeyStore,
}

/// Authentication: on when a master key is configured (`auth.master_key` or
/// `TOLLGATE_MASTER_KEY`), with the keys in SQLite or PostgreSQL. Turning it on or off
/// needs a restart (the stores are opened here); the master key, JWT settings and the
/// file's keys follow each reload (see [`authenticator`]).
async fn authentication(config: &Config) -> Result<Option<AuthStores>, BoxError> {
    let auth = &config.auth;
    if auth.master_key.is_none() {
        if auth.jwt_hs256_secret.is_some() || auth.jwks_file.is_some() {
            // Asked for authentication: refuse to serve openly.
            return Err("JWTs (TOLLGATE_JWT_HS256_SECRET / TOLLGATE_JWKS_FILE, auth.jwt_hs256_secret / auth.jwks_file) need a master key".into());
        }
        tracing::warn!("no master key: the gateway is open to anyone who can reach it");
        return Ok(None);
    }
    let fixed = MemoryKeyStore::new();
    let keys = match config.stores.database_url.as_ref().map(Secret::expose) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresKeyStore::connect(url).await?;
            tracing::info!("authentication on: keys in PostgreSQL");
            Keys::new(FixedKeys::new(fixed.clone(), store))
        }
        Some(_) => {
            return Err(
                "TOLLGATE_DATABASE_URL (stores.database_url) must be a postgres:// or postgresql:// URL"
                    .into(),
            )
        }
        None => {
            let path = &config.stores.sqlite;
            let store = SqliteKeyStore::open(path).await?;
            tracing::info!(db = %path.display(), "authentication on: keys in SQLite");
            Keys::new(FixedKeys::new(fixed.clone(), store))
        }
    };
    tracing::info!("admin API mounted at /admin (the master key or an admin-role key)");
    Ok(Some(AuthStores { keys, fixed }))
}

/// The authenticator of one configuration (master key, JWTs, over the shared key
/// stores), and the records of its `[[auth.keys]]` (only their hashes), applied to the
/// stores when the configuration goes into force.
fn authenticator(
    config: &Config,
    stores: &AuthStores,
) -> Result<(KeyAuthenticator, Vec<tollgate::auth::KeyRecord>), BoxError> {
    let auth = &config.auth;
    let master =
        auth.master_key.as_ref().map(Secret::expose).ok_or(
            "auth.master_key: authentication is on; removing the master key needs a restart",
        )?;
    if master.len() < 16 || !master.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the master key (TOLLGATE_MASTER_KEY or auth.master_key) must be at least 16 visible ASCII characters (no spaces)"
                .into(),
        );
    }
    let records = auth
        .keys
        .iter()
        .map(|key| key.to_record())
        .collect::<Result<Vec<_>, _>>()?;
    let mut authenticator =
        KeyAuthenticator::new(stores.keys.clone()).master_key(&KeySecret::from_plaintext(master));
    if let Some(jwt) = jwt_validator(config)? {
        authenticator = authenticator.with_jwt(jwt);
    }
    Ok((authenticator, records))
}

/// JWTs: an HS256 secret and/or a JWKS file; none when neither is configured.
fn jwt_validator(config: &Config) -> Result<Option<JwtValidator>, BoxError> {
    let auth = &config.auth;
    if auth.jwt_hs256_secret.is_none() && auth.jwks_file.is_none() {
        return Ok(None);
    }
    let mut builder = JwtValidator::builder();
    if let Some(secret) = &auth.jwt_hs256_secret {
        builder = builder.key(JwtKey::hs256(secret.expose().as_bytes())?);
    }
    if let Some(path) = &auth.jwks_file {
        builder = builder.jwks_file(path)?;
    }
    if let Some(issuer) = &auth.jwt_issuer {
        builder = builder.issuer(issuer.clone());
    }
    if let Some(audience) = &auth.jwt_audience {
        builder = builder.audience(audience.clone());
    }
    let validator = builder.build()?;
    let algorithms: Vec<_> = validator.algorithms().map(|a| a.as_str()).collect();
    tracing::info!(?algorithms, jwks = ?auth.jwks_file, "JWTs accepted next to virtual keys");
    Ok(Some(validator))
}

/// The routes other than the LLM endpoints (those go straight to the LLM stack: see
/// [`AccessLog`]).
fn router(shared: &Shared, current: Arc<ArcSwap<Generation>>, ready: Arc<AtomicBool>) -> Router {
    let models_current = current.clone();
    let list_models = get(move |headers: http::HeaderMap| {
        let generation = models_current.load_full();
        async move {
            // With authentication, only a client with a key may list the models.
            if let Some(auth) = &generation.auth {
                if let Err(rejection) = auth.authenticate_headers(&headers).await {
                    return axum_response(rejection.to_response(Dialect::OpenAi));
                }
            }
            models(&generation.config).into_response()
        }
    });
    // The admin API and dashboard of the configuration in force (its master key, JWT
    // settings and file keys), reached through the fallback: a route pattern here would
    // add its path parameter to the ones the admin routes extract.
    let admin_current = current.clone();
    let fallback = tower::service_fn(move |req: Request| {
        let admin = req
            .uri()
            .path()
            .starts_with("/admin")
            .then(|| admin_current.load().admin.clone())
            .flatten();
        async move {
            match admin {
                Some(admin) => admin.oneshot(req).await,
                None => Ok(not_found(req).await),
            }
        }
    });
    let mut app = Router::new().route("/v1/models", list_models);
    // Always routed, answered while the configuration in force says so (a reload turns
    // it on and off).
    let registry = shared.metrics.clone();
    let metrics_current = current;
    app = app.route(
        "/metrics",
        get(move |req: Request| {
            let registry = registry.clone();
            let on = metrics_current.load().config.observability.metrics;
            async move {
                if !on {
                    return not_found(req).await;
                }
                (
                    [(http::header::CONTENT_TYPE, registry.content_type())],
                    registry.render(),
                )
                    .into_response()
            }
        }),
    );
    app.route(
        "/health",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    )
    .route(
        "/ready",
        get(move || {
            let ready = ready.load(Ordering::Relaxed);
            async move {
                let (status, text) = if ready {
                    (http::StatusCode::OK, "ready")
                } else {
                    (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                };
                (status, Json(serde_json::json!({"status": text})))
            }
        }),
    )
    .fallback_service(fallback)
}

/// The layers every request crosses, outside the router: request ids, sensitive
/// headers, and the access log with the request span. Built once and cloned per connection;
/// `Router::layer` would instead wrap each layer in a boxed route, cloned and called
/// through a box (one allocation for the service and one for the future, per layer) on
/// every request.
type Stack =
    SetRequestId<PropagateRequestId<SetSensitiveRequestHeaders<AccessLog>>, MakeRequestUuid>;

fn stack(app: Router, llm: Reloading, drain: Drain) -> Stack {
    let x_request_id = HeaderName::from_static("x-request-id");
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            x_request_id.clone(),
            MakeRequestUuid,
        ))
        .layer(PropagateRequestIdLayer::new(x_request_id))
        // Headers are marked sensitive before anything can log them.
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-goog-api-key"),
        ]))
        .service(AccessLog {
            inner: app,
            llm: PostOnly(llm),
            drain: Arc::new(drain),
        })
}

/// The request span: method, path and request id. `None` when no subscriber wants it
/// (then nothing enters it, per poll or per frame).
fn request_span(req: &Request) -> Option<tracing::Span> {
    // The fields are read only when the span is enabled.
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = req.uri().path(),
        request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    );
    (!span.is_disabled()).then_some(span)
}

/// Makes the service of each accepted connection: the [`Stack`], and the peer's
/// address for the layers as [`ClientAddr`].
#[derive(Clone)]
struct Connections {
    stack: Stack,
}

impl<'a, L> tower::Service<axum::serve::IncomingStream<'a, L>> for Connections
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    type Response = Connection;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Connection, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(Connection {
            stack: self.stack.clone(),
            client: ClientAddr(*stream.remote_addr()),
        }))
    }
}

/// The service of one connection: its requests carry the peer's [`ClientAddr`].
#[derive(Clone)]
struct Connection {
    stack: Stack,
    client: ClientAddr,
}

impl tower::Service<Request> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = ConnectionFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> ConnectionFuture {
        req.extensions_mut().insert(self.client);
        ConnectionFuture {
            inner: self.stack.call(req),
        }
    }
}

#[pin_project::pin_project]
struct ConnectionFuture {
    #[pin]
    inner: <Stack as tower::Service<Request>>::Future,
}

impl std::future::Future for ConnectionFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = std::task::ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(res.map(axum::body::Body::new)))
    }
}

/// Only `POST` reaches the LLM service; other methods get a 405 in the route's dialect
/// (with `allow: POST`). A plain service rather than a `MethodRouter`, which builds a
/// route for its handler on every request.
#[derive(Clone)]
struct PostOnly<S>(S);

impl<S> tower::Service<Request> for PostOnly<S>
where
    S: tower::Service<Request, Response = http::Response<tollgate::Body>, Error = Infallible>,
{
    type Response = http::Response<tollgate::Body>;
    type Error = Infallible;
    type Future = PostOnlyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.method() == http::Method::POST {
            return PostOnlyFuture::Post(self.0.call(req));
        }
        let err = GatewayError::invalid_request("Use POST for this endpoint.")
            .with_status(http::StatusCode::METHOD_NOT_ALLOWED);
        let mut res = err.to_response(Dialect::from_path(req.uri().path()));
        res.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        PostOnlyFuture::Refused(Some(res))
    }
}

#[pin_project::pin_project(project = PostOnlyProj)]
enum PostOnlyFuture<F> {
    Post(#[pin] F),
    Refused(Option<http::Response<tollgate::Body>>),
}

impl<F> std::future::Future for PostOnlyFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<tollgate::Body>, Infallible>>,
{
    type Output = Result<http::Response<tollgate::Body>, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PostOnlyProj::Post(future) => future.poll(cx),
            PostOnlyProj::Refused(res) => {
                Poll::Ready(Ok(res.take().expect("polled after completion")))
            }
        }
    }
}

/// The request a response was for, for the access log's model (the log must not parse
/// bodies itself: an unauthenticated request's body is never read). The parsed request
/// itself, a reference count, rather than a copy of its model name.
#[derive(Clone)]
struct LoggedModel(LlmRequest);

/// Sends a parsed request down the routed stack, and notes its model for the access log.
/// `routed` is the stack below the cache (routing, fail-over, the upstream client), by
/// value: a box would cost an allocation per request.
async fn dispatch<S>(
    routed: S,
    mut req: http::Request<tollgate::Body>,
) -> Result<http::Response<tollgate::Body>, Infallible>
where
    S: tower::Service<
        http::Request<tollgate::Body>,
        Response = http::Response<tollgate::Body>,
        Error = Infallible,
    >,
{
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
    };
    let mut res = routed.oneshot(req).await?;
    res.extensions_mut().insert(LoggedModel(llm));
    Ok(res)
}

/// One upstream attempt (fail-over makes one per channel it tries), in its own span.
async fn attempt(
    upstream: Upstream,
    req: http::Request<tollgate::Body>,
) -> Result<http::Response<tollgate::Body>, Infallible> {
    // The fields are read from the request only when the span is enabled: no copy of
    // the names per request when the level is off.
    let target = req.extensions().get::<Target>();
    let span = tracing::info_span!(
        "upstream",
        gen_ai.provider.name = %target.map_or("", |t| t.name()),
        gen_ai.request.model = target.and_then(|t| t.model()).unwrap_or("-"),
    );
    upstream.oneshot(req).instrument(span).await
}

/// One log line per request, written when its outcome resolves (so it has the TTFB and
/// how the answer ended). It does not parse the body (an unauthenticated request's body
/// is never read): the model comes from the response's `LoggedModel`. It logs no
/// header, so no credential. A hand-written service (not `from_fn`, which boxes the
/// inner service and the future on every request).
///
/// It also holds the request span (method, path, request id), entered while the
/// request's future and its answer's body are polled, so every line a request logs,
/// the access line included, carries its id (also as JSON with
/// `TOLLGATE_LOG_FORMAT=json`). When no subscriber enables the span, nothing is
/// entered and no clock is read for it.
#[derive(Clone)]
struct AccessLog {
    inner: Router,
    /// The LLM endpoints, reached without the router: its lookup, the matched-path and
    /// path-parameter extensions and the boxed route it clones per request cost more
    /// than the three string comparisons that find them.
    llm: PostOnly<Reloading>,
    drain: Arc<Drain>,
}

/// The paths served by the LLM stack.
const LLM_PATHS: [&str; 3] = ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"];

impl tower::Service<Request> for AccessLog {
    type Response = Response;
    type Error = Infallible;
    type Future = AccessLogFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        std::task::ready!(self.llm.poll_ready(cx))?;
        tower::Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request) -> AccessLogFuture {
        let started = Instant::now();
        let method = req.method().clone();
        // The LLM paths are kept as the constants they equal: no copy per request.
        let llm_path = LLM_PATHS.iter().find(|p| **p == req.uri().path());
        let path = match llm_path {
            Some(path) => Cow::Borrowed(*path),
            None => Cow::Owned(req.uri().path().to_owned()),
        };
        let span = request_span(&req);
        let _entered = span.as_ref().map(tracing::Span::enter);
        let inner = if llm_path.is_some() {
            Answer::Llm(self.llm.call(req))
        } else {
            Answer::Routed(self.inner.call(req))
        };
        drop(_entered);
        AccessLogFuture {
            inner,
            span,
            pending: Some(Logged {
                started,
                method,
                path,
                drain: self.drain.clone(),
            }),
        }
    }
}

/// What the access log keeps of a request until its answer.
struct Logged {
    started: Instant,
    method: http::Method,
    path: Cow<'static, str>,
    drain: Arc<Drain>,
}

/// The answer of the LLM stack or of the router.
#[pin_project::pin_project(project = AnswerProj)]
enum Answer {
    Llm(#[pin] <PostOnly<Reloading> as tower::Service<Request>>::Future),
    Routed(#[pin] axum::routing::future::RouteFuture<Infallible>),
}

impl std::future::Future for Answer {
    type Output = Result<http::Response<tollgate::Body>, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Llm(future) => future.poll(cx),
            AnswerProj::Routed(future) => {
                future.poll(cx).map_ok(|res| res.map(tollgate::Body::new))
            }
        }
    }
}

#[pin_project::pin_project]
struct AccessLogFuture {
    #[pin]
    inner: Answer,
    span: Option<tracing::Span>,
    pending: Option<Logged>,
}

impl std::future::Future for AccessLogFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let res = std::task::ready!(this.inner.poll(cx))?;
        let Logged {
            started,
            method,
            path,
            drain,
        } = this.pending.take().expect("polled after completion");
        let endpoint = Endpoint::from_path(&path);
        let model = res.extensions().get::<LoggedModel>().cloned();
        let res = observe(res, ObserveOptions::new(started).endpoint(endpoint));
        if let Some(outcome) = res.extensions().get::<Outcome>() {
            // Registered after metering's callback, so it runs after the usage record
            // went to the ledger: shutdown waits for it before the last flush.
            let open = drain.open();
            outcome.on_resolve(move |report| {
                drop(open);
                let usage = report.usage.unwrap_or_default();
                tracing::info!(
                    %method,
                    path = &*path,
                    model = model.as_ref().map_or("-", |m| m.0.model()),
                    status = report.status.as_u16(),
                    latency_ms = report.elapsed.as_secs_f64() * 1e3,
                    ttfb_ms = report.ttfb.map_or(0.0, |t| t.as_secs_f64() * 1e3),
                    end = ?report.end,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = report.completion_tokens(),
                    "request"
                );
            });
        }
        Poll::Ready(Ok(res.map(|body| {
            axum::body::Body::new(CutOff::new(body, drain.cut.clone(), this.span.clone()))
        })))
    }
}

/// Answers still open at shutdown: counted while their outcome is unresolved, and cut
/// when the shutdown deadline passes.
#[derive(Clone)]
struct Drain {
    /// `true` once the deadline passed: every open body ends with an error.
    cut: tokio::sync::watch::Receiver<bool>,
    /// Answers whose outcome has not resolved yet (their usage record not written).
    /// An atomic, read by polling at shutdown: a watch channel woke its eight
    /// notifiers, each behind a lock, twice per request.
    open: Arc<AtomicUsize>,
}

/// One open answer; dropping it (when its outcome resolves) counts it out.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl Drain {
    fn open(&self) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.open.clone())
    }

    /// Waits (up to `limit`) until every answer's outcome resolved.
    async fn settled(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.open.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// An answer body that ends with an error once the shutdown deadline passed, so its
/// connection closes and the layers inside see it dropped (the outcome resolves as the
/// client gone, with the usage streamed so far, and metering writes its record).
#[pin_project::pin_project]
struct CutOff {
    #[pin]
    inner: tollgate::Body,
    cut: tokio::sync::watch::Receiver<bool>,
    /// The request span, entered while a frame is polled: the outcome's callbacks (the
    /// access line) run there.
    span: Option<tracing::Span>,
    /// Made on the first `Pending` only: whole answers never allocate it.
    waiting: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl CutOff {
    fn new(
        inner: tollgate::Body,
        cut: tokio::sync::watch::Receiver<bool>,
        span: Option<tracing::Span>,
    ) -> Self {
        CutOff {
            inner,
            cut,
            span,
            waiting: None,
        }
    }
}

impl http_body::Body for CutOff {
    type Data = bytes::Bytes;
    type Error = tollgate::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tollgate::BoxError>>> {
        let this = self.project();
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let cut_off = || Poll::Ready(Some(Err("cut at the shutdown deadline".into())));
        if *this.cut.borrow() {
            return cut_off();
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let waiting = this.waiting.get_or_insert_with(|| {
            let mut cut = this.cut.clone();
            Box::pin(async move {
                let _ = cut.wait_for(|c| *c).await;
            })
        });
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => cut_off(),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn models(config: &Config) -> Json<serde_json::Value> {
    let data: Vec<_> = model_ids(config)
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data}))
}

async fn not_found(req: Request) -> Response {
    let err = GatewayError::new(
        ErrorKind::NotFound,
        format!("No route for {} {}.", req.method(), req.uri().path()),
    );
    axum_response(err.to_response(Dialect::from_path(req.uri().path())))
}

fn axum_response(res: http::Response<tollgate::Body>) -> Response {
    res.into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut sig) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            sig.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
}
