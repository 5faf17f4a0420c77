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
//! Environment (see the README for the full table):
//!
//! - `TOLLGATE_LISTEN`: address to serve on (default `127.0.0.1:8080`; port 0 picks one).
//! - `OPENAI_API_KEY` / `OPENAI_BASE_URL`: models other than the ones below go to
//!   OpenAI (or any OpenAI-compatible base URL) when the key is set.
//! - `ANTHROPIC_API_KEY` / `ANTHROPIC_BASE_URL`: `claude-*` models go to Anthropic.
//! - `GEMINI_API_KEY` / `GEMINI_BASE_URL`: `gemini-*` models go to Gemini.
//! - `TOLLGATE_REDIS_URL`: keep rate-limit counters, cached answers, prepaid balances
//!   and budget spend in Redis, shared by every replica (default: in memory); `TOLLGATE_REDIS_FAIL=open|closed` says what happens when
//!   Redis does not answer within 50 ms (default `open`: admit without counting).
//! - `TOLLGATE_RATE_LIMIT_GLOBAL`: limits for the whole gateway, e.g.
//!   `rpm=600,tpm=200000,max_parallel=64` (`rpm`, `rpd`, `tpm`, `tpd`, `max_parallel`).
//! - `TOLLGATE_RATE_LIMIT_MODELS`: per-model limits, `;`-separated `MODEL LIMITS`
//!   entries, e.g. `mock/echo rpm=60,tpm=10000; gpt-4o-mini max_parallel=8`.
//! - `TOLLGATE_RATE_LIMIT_CLIENT`: limits per client IP address (IPv6 by /64).
//! - `TOLLGATE_MASTER_KEY`: turns authentication on. Every `/v1/*` route then needs a
//!   key (`Authorization: Bearer` or `x-api-key`), and `/admin` (API) and `/admin/ui`
//!   (dashboard) are mounted for this key and admin-role keys. Unset: the
//!   gateway is open to anyone who can reach it, and says so at start.
//! - `TOLLGATE_DB`: the SQLite file holding the usage ledger and, with authentication,
//!   the keys (default `./tollgate.db`).
//! - `TOLLGATE_DATABASE_URL`: keep the keys in PostgreSQL instead (`postgres://...`).
//! - `TOLLGATE_CACHE`: which answers are cached: `deterministic` (the default:
//!   `temperature: 0` or a `seed`), `always` or `never`. Clients opt out per request with
//!   `Cache-Control: no-store`.
//! - `TOLLGATE_JWT_HS256_SECRET` (at least 32 bytes) and/or `TOLLGATE_JWKS_FILE` (a
//!   local JWKS file, read at start): with `TOLLGATE_MASTER_KEY`, also accept JWTs
//!   (claims `sub`, `team`, `role`, `models`); `TOLLGATE_JWT_ISSUER` and
//!   `TOLLGATE_JWT_AUDIENCE` require those claims.
//! - `RUST_LOG`: log filter (default `info`).
//!
//! `mock/<x>`, `mock-anthropic/<x>` and `mock-gemini/<x>` are served by the in-process
//! mock in the OpenAI, Anthropic and Gemini dialects. Both `/v1/chat/completions` and
//! `/v1/messages` reach every model: the upstream translates between dialects.
//!
//! It prints `listening on http://ADDR` on stdout once it accepts connections.

// mimalloc for the binary: a gateway allocates and frees per request, and with the system
// allocator malloc and free were a fifth of its instructions (benches/README.md). The
// raw proxy of the end-to-end bench uses it too, so the ratio compares like with like.
// Embedders choose their own allocator: the library sets none.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use http::header::{HeaderName, AUTHORIZATION};
use tollgate::admin::{dashboard, Admin};
use tollgate::auth::{
    AuthLayer, JwtKey, JwtValidator, KeyAuthenticator, KeySecret, Keys, PostgresKeyStore,
    SqliteKeyStore,
};
use tollgate::cache::{CacheLayer, CachePolicy, CacheStore, MemoryStore};
use tollgate::error::{ErrorKind, GatewayError};
use tollgate::extension::ClientAddr;
use tollgate::metering::{
    Account, Accounts, GroupBy, MeteringLayer, Money, Period, SqliteLedger, UsageQuery,
};
use tollgate::outcome::{observe, ObserveOptions, Outcome};
use tollgate::ratelimit::{FailMode, Limits, RateLimitLayer, RedisStore};
use tollgate::request::LlmRequest;
use tollgate::testing::MockServer;
use tollgate::upstream::{ApiKey, Target, Upstream};
use tollgate::{Dialect, Endpoint};
use tower::ServiceBuilder;
use tower::ServiceExt as _;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tracing_subscriber::EnvFilter;

/// Where each model goes: the in-process mock in three dialects, Anthropic and Gemini
/// by model prefix (when configured), OpenAI (when configured) for the rest.
#[derive(Clone)]
struct Providers {
    upstream: Upstream,
    mock: Target,
    mock_anthropic: Target,
    mock_gemini: Target,
    openai: Option<Target>,
    anthropic: Option<Target>,
    gemini: Option<Target>,
}

impl Providers {
    fn target_for(&self, model: &str) -> Option<&Target> {
        if model.starts_with("mock/") {
            Some(&self.mock)
        } else if model.starts_with("mock-anthropic/") {
            Some(&self.mock_anthropic)
        } else if model.starts_with("mock-gemini/") {
            Some(&self.mock_gemini)
        } else if model.starts_with("claude-") {
            self.anthropic.as_ref()
        } else if model.starts_with("gemini-") {
            self.gemini.as_ref()
        } else {
            self.openai.as_ref()
        }
    }
}

/// A provider target from `{PREFIX}_API_KEY` and `{PREFIX}_BASE_URL`, if the key is set.
fn from_env(
    prefix: &str,
    default_base: &str,
    dialect: Dialect,
    name: &'static str,
    serves: &str,
) -> Result<Option<Target>, Box<dyn std::error::Error>> {
    match std::env::var(format!("{prefix}_API_KEY")) {
        Ok(key) if !key.is_empty() => {
            let base =
                std::env::var(format!("{prefix}_BASE_URL")).unwrap_or_else(|_| default_base.into());
            let target = Target::with_dialect(name, &base, dialect)
                .map_err(|e| format!("{prefix}_BASE_URL: {e}"))?
                .with_api_key(ApiKey::new(key));
            tracing::info!(base_url = %base, "{prefix}_API_KEY set: {serves} go to this provider");
            Ok(Some(target))
        }
        _ => {
            tracing::info!("{prefix}_API_KEY not set: {serves} are not served");
            Ok(None)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr) // stdout carries only the `listening on` line
        .init();

    let auth = authentication().await?;

    let mock = MockServer::start().await?;
    tracing::info!(base_url = %mock.base_url(), "mock provider serving models mock/<name>");
    let openai = from_env(
        "OPENAI",
        "https://api.openai.com/v1",
        Dialect::OpenAi,
        "openai",
        "other models",
    )?;
    let anthropic = from_env(
        "ANTHROPIC",
        "https://api.anthropic.com/v1",
        Dialect::Anthropic,
        "anthropic",
        "claude-* models",
    )?;
    let gemini = from_env(
        "GEMINI",
        "https://generativelanguage.googleapis.com/v1beta",
        Dialect::Gemini,
        "gemini",
        "gemini-* models",
    )?;
    let providers = Providers {
        upstream: Upstream::builder().build(),
        mock: Target::openai_compatible("mock", &mock.base_url())?,
        mock_anthropic: Target::anthropic("mock-anthropic", &mock.base_url())?,
        mock_gemini: Target::gemini("mock-gemini", &mock.base_url())?,
        openai,
        anthropic,
        gemini,
    };

    let db = std::env::var("TOLLGATE_DB").unwrap_or_else(|_| "./tollgate.db".into());
    let ledger = SqliteLedger::open(&db).await?;
    tracing::info!(path = %db, "usage ledger: SQLite (TOLLGATE_DB)");
    // Prepaid balances: credited through /admin/balances, applied by metering, and
    // rebuilt here from the stored credits and the records (spooled ones replayed first).
    ledger.flush().await;
    let accounts = accounts(&ledger).await?;
    let app = router(
        Arc::new(providers),
        rate_limits().await?,
        auth,
        ledger.clone(),
        accounts,
        cache().await?,
    );
    let listen: SocketAddr = std::env::var("TOLLGATE_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| format!("TOLLGATE_LISTEN: {e} (expected host:port, e.g. 127.0.0.1:8080)"))?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!("cannot listen on {listen}: {e}; set TOLLGATE_LISTEN to a free address")
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "tollgate gateway ready");
    println!("listening on http://{addr}");
    // TCP_NODELAY: without it the first SSE event can wait for the peer's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    ledger.flush().await;
    let stats = ledger.stats();
    tracing::info!(
        written = stats.written,
        spooled = stats.spooled,
        replayed = stats.replayed,
        "usage ledger flushed"
    );
    drop(mock);
    Ok(())
}

/// Prepaid balances and budgets: in this process, or with `TOLLGATE_REDIS_URL` in Redis,
/// shared by every replica. Either way they start from the ledger: its credits minus
/// what was spent since, and the spend of each current budget period, so a restart
/// resets nothing (the first replica to start seeds Redis; the others find the fleet's
/// figures there).
async fn accounts(ledger: &SqliteLedger) -> Result<Accounts, Box<dyn std::error::Error>> {
    use tollgate::metering::RedisAccounts;
    let balances = ledger.balances().await?;
    let now = Accounts::new().now_ms();
    let spend = budget_spend(ledger, now).await?;
    let Ok(url) = std::env::var("TOLLGATE_REDIS_URL") else {
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
        .fail_closed(std::env::var("TOLLGATE_REDIS_FAIL").as_deref() == Ok("closed"))
        .connect()
        .await
        .map_err(|e| format!("TOLLGATE_REDIS_URL: {e}"))?;
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
        "prepaid balances and budget spend are shared in Redis (TOLLGATE_REDIS_URL)"
    );
    Ok(Accounts::new().shared(store))
}

/// Spend so far in each budget period (its start, then per key and per team), from
/// the ledger.
async fn budget_spend(
    ledger: &SqliteLedger,
    now: i64,
) -> Result<Vec<(Period, i64, Vec<(Account, Money)>)>, Box<dyn std::error::Error>> {
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

/// The rate-limit layer from the environment: Redis or memory, global, per-model and
/// per-client-address limits (none by default).
async fn rate_limits() -> Result<RateLimitLayer, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let limits = |name: &str, text: &str| -> Result<Limits, String> {
        text.parse().map_err(|e| format!("{name}: {e}"))
    };
    let mut layer = RateLimitLayer::new();
    if let Some(text) = var("TOLLGATE_RATE_LIMIT_CLIENT") {
        layer = layer.per_client_ip(limits("TOLLGATE_RATE_LIMIT_CLIENT", &text)?);
    }
    if let Some(text) = var("TOLLGATE_RATE_LIMIT_GLOBAL") {
        layer = layer.global(limits("TOLLGATE_RATE_LIMIT_GLOBAL", &text)?);
    }
    if let Some(text) = var("TOLLGATE_RATE_LIMIT_MODELS") {
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, spec) = entry.split_once(char::is_whitespace).ok_or_else(|| {
                format!("TOLLGATE_RATE_LIMIT_MODELS: `{entry}`: expected `MODEL LIMITS`")
            })?;
            let name = format!("TOLLGATE_RATE_LIMIT_MODELS ({model})");
            layer = layer.model(model, limits(&name, spec.trim())?);
        }
    }
    match var("TOLLGATE_REDIS_URL") {
        Some(url) => {
            let fail = match var("TOLLGATE_REDIS_FAIL").as_deref() {
                None | Some("open") => FailMode::Open,
                Some("closed") => FailMode::Closed,
                Some(other) => {
                    return Err(
                        format!("TOLLGATE_REDIS_FAIL: `{other}` (expected open or closed)").into(),
                    )
                }
            };
            let store = RedisStore::builder(url).fail_mode(fail).connect().await?;
            tracing::info!(?fail, "rate limits are shared in Redis");
            layer = layer.store(store);
        }
        None => {
            tracing::info!("rate limits are kept in memory (set TOLLGATE_REDIS_URL to share them)")
        }
    }
    Ok(layer)
}

/// Authentication from the environment: on when `TOLLGATE_MASTER_KEY` is set, with the
/// keys in SQLite (`TOLLGATE_DB`) or PostgreSQL (`TOLLGATE_DATABASE_URL`).
async fn authentication() -> Result<Option<(KeyAuthenticator, Keys)>, Box<dyn std::error::Error>> {
    let Some(master) = std::env::var_os("TOLLGATE_MASTER_KEY") else {
        if ["TOLLGATE_JWT_HS256_SECRET", "TOLLGATE_JWKS_FILE"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            // Asked for authentication: refuse to serve openly.
            return Err(
                "TOLLGATE_JWT_HS256_SECRET / TOLLGATE_JWKS_FILE need TOLLGATE_MASTER_KEY".into(),
            );
        }
        tracing::warn!("no TOLLGATE_MASTER_KEY: the gateway is open to anyone who can reach it");
        return Ok(None);
    };
    let master = master
        .into_string()
        .ok()
        .filter(|k| k.len() >= 16 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or("TOLLGATE_MASTER_KEY must be at least 16 visible ASCII characters (no spaces)")?;
    let keys = match std::env::var("TOLLGATE_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresKeyStore::connect(&url).await?;
            tracing::info!("authentication on: keys in PostgreSQL (TOLLGATE_DATABASE_URL)");
            Keys::new(store)
        }
        Some(_) => {
            return Err("TOLLGATE_DATABASE_URL must be a postgres:// or postgresql:// URL".into())
        }
        None => {
            let path = std::env::var("TOLLGATE_DB").unwrap_or_else(|_| "./tollgate.db".into());
            let store = SqliteKeyStore::open(&path).await?;
            tracing::info!(db = %path, "authentication on: keys in SQLite");
            Keys::new(store)
        }
    };
    let mut auth =
        KeyAuthenticator::new(keys.clone()).master_key(&KeySecret::from_plaintext(master));
    if let Some(jwt) = jwt_validator()? {
        auth = auth.with_jwt(jwt);
    }
    tracing::info!("admin API mounted at /admin, dashboard at /admin/ui (TOLLGATE_MASTER_KEY or an admin-role key)");
    Ok(Some((auth, keys)))
}

/// The response cache from the environment: on for deterministic requests, in memory
/// or in Redis.
async fn cache() -> Result<CacheLayer<Arc<dyn CacheStore>>, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let policy: CachePolicy = match var("TOLLGATE_CACHE") {
        Some(text) => text.parse().map_err(|e| format!("TOLLGATE_CACHE: {e}"))?,
        None => CachePolicy::Deterministic,
    };
    let store: Arc<dyn CacheStore> = match var("TOLLGATE_REDIS_URL") {
        Some(url) if policy != CachePolicy::Never => {
            let store = tollgate::cache::RedisStore::connect(url).await?;
            tracing::info!(
                ?policy,
                "response cache in Redis (fails open: a miss when Redis is down)"
            );
            Arc::new(store)
        }
        _ => {
            tracing::info!(?policy, "response cache in memory");
            Arc::new(MemoryStore::new())
        }
    };
    Ok(CacheLayer::new().store(store).policy(policy))
}

/// JWTs from the environment: an HS256 secret and/or a JWKS file; none when neither is
/// set.
fn jwt_validator() -> Result<Option<JwtValidator>, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let secret = var("TOLLGATE_JWT_HS256_SECRET");
    let jwks = var("TOLLGATE_JWKS_FILE");
    if secret.is_none() && jwks.is_none() {
        return Ok(None);
    }
    let mut builder = JwtValidator::builder();
    if let Some(secret) = secret {
        builder = builder.key(JwtKey::hs256(secret.as_bytes())?);
    }
    if let Some(path) = &jwks {
        builder = builder.jwks_file(path)?;
    }
    if let Some(issuer) = var("TOLLGATE_JWT_ISSUER") {
        builder = builder.issuer(issuer);
    }
    if let Some(audience) = var("TOLLGATE_JWT_AUDIENCE") {
        builder = builder.audience(audience);
    }
    let validator = builder.build()?;
    let algorithms: Vec<_> = validator.algorithms().map(|a| a.as_str()).collect();
    tracing::info!(?algorithms, jwks = ?jwks, "JWTs accepted next to virtual keys");
    Ok(Some(validator))
}

type LlmService = tower::util::BoxCloneSyncService<Request, Response, Infallible>;

fn router(
    providers: Arc<Providers>,
    rate_limits: RateLimitLayer,
    auth: Option<(KeyAuthenticator, Keys)>,
    ledger: SqliteLedger,
    accounts: Accounts,
    cache: CacheLayer<Arc<dyn CacheStore>>,
) -> Router {
    // Rate limits key on the Principal the auth layer writes (per-key rpm, tpm,
    // max_parallel), and on the client address.
    let llm = ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(rate_limits)
        .layer(MeteringLayer::new(ledger.clone()).accounts(accounts.clone()))
        .layer(cache)
        .service_fn(move |req: http::Request<tollgate::Body>| {
            dispatch(providers.clone(), req.map(axum::body::Body::new))
        });
    let (llm, models_route, admin): (LlmService, _, _) = match auth {
        Some((authenticator, keys)) => (
            LlmService::new(
                ServiceBuilder::new()
                    .map_response(IntoResponse::into_response)
                    .layer(AuthLayer::new(authenticator.clone()))
                    .service(llm),
            ),
            get(models).route_layer(middleware::from_fn_with_state(
                authenticator.clone(),
                require_key,
            )),
            Some(
                Admin::new(authenticator, keys)
                    .with_usage(ledger.clone())
                    .with_balances(accounts, ledger)
                    .into_router()
                    .merge(dashboard()),
            ),
        ),
        None => (LlmService::new(llm), get(models), None),
    };
    let x_request_id = HeaderName::from_static("x-request-id");
    let mut app = Router::new()
        .route_service("/v1/chat/completions", post_only(llm.clone()))
        .route_service("/v1/messages", post_only(llm.clone()))
        .route_service("/v1/embeddings", post_only(llm))
        .route("/v1/models", models_route);
    if let Some(admin) = admin {
        app = app.merge(admin);
    }
    app.route(
        "/health",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    )
    .fallback(not_found)
    .layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                x_request_id.clone(),
                MakeRequestUuid,
            ))
            .layer(PropagateRequestIdLayer::new(x_request_id))
            .layer(middleware::from_fn(client_addr))
            .layer(SetSensitiveRequestHeadersLayer::new([
                AUTHORIZATION,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("x-goog-api-key"),
            ]))
            .layer(middleware::from_fn(access_log)),
    )
}

/// Only `POST` reaches the LLM service; other methods get a 405 in the route's dialect.
fn post_only<S>(svc: S) -> axum::routing::MethodRouter
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    post(move |req: Request| svc.clone().oneshot(req)).fallback(|req: Request| async move {
        let err = GatewayError::invalid_request("Use POST for this endpoint.")
            .with_status(http::StatusCode::METHOD_NOT_ALLOWED);
        axum_response(err.to_response(Dialect::from_path(req.uri().path())))
    })
}

/// Refuses a request without a valid key (for routes outside the LLM stack).
async fn require_key(
    axum::extract::State(auth): axum::extract::State<KeyAuthenticator>,
    req: Request,
    next: Next,
) -> Response {
    match auth.authenticate_headers(req.headers()).await {
        Ok(principal) => {
            let mut req = req;
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(rejection) => axum_response(rejection.to_response(Dialect::OpenAi)),
    }
}

/// The model a response was for, for the access log (which must not parse bodies
/// itself: an unauthenticated request's body is never read).
#[derive(Clone)]
struct LoggedModel(String);

/// Sends a parsed request to the provider serving its model.
async fn dispatch(providers: Arc<Providers>, mut req: Request) -> Result<Response, Infallible> {
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => {
            return Ok(axum_response(
                err.to_response(Dialect::from_path(req.uri().path())),
            ))
        }
    };
    let mut res = match providers.target_for(llm.model()) {
        None => {
            axum_response(GatewayError::model_not_found(llm.model()).to_response(llm.dialect()))
        }
        Some(target) => {
            req.extensions_mut().insert(target.clone());
            axum_response(providers.upstream.clone().oneshot(req).await?)
        }
    };
    res.extensions_mut()
        .insert(LoggedModel(llm.model().to_owned()));
    Ok(res)
}

/// Hands the connection's peer address to the layers as [`ClientAddr`].
async fn client_addr(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(ClientAddr(addr));
    }
    next.run(req).await
}

/// One log line per request, written when its outcome resolves (so it has the TTFB and
/// how the answer ended). It does not parse the body (an unauthenticated request's body
/// is never read): the model comes from the response's `LoggedModel`.
async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let endpoint = Endpoint::from_path(&path);
    let res = next.run(req).await;
    let model = res.extensions().get::<LoggedModel>().map(|m| m.0.clone());
    let res = observe(res, ObserveOptions::new(started).endpoint(endpoint));
    if let Some(outcome) = res.extensions().get::<Outcome>() {
        outcome.on_resolve(move |report| {
            let usage = report.usage.unwrap_or_default();
            tracing::info!(
                %method,
                path,
                model = model.as_deref().unwrap_or("-"),
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
    axum_response(res)
}

async fn models() -> Json<serde_json::Value> {
    let ids = [
        "mock/echo",
        "mock/gpt-4o-mini",
        "mock/tools",
        "mock-anthropic/echo",
        "mock-gemini/echo",
    ];
    let data: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "tollgate-mock"}))
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
    tracing::info!("shutting down: finishing requests in flight");
}
