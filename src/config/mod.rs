//! The gateway's configuration: one typed TOML file.
//!
//! [`Config`] describes a whole gateway: where it listens, the upstream channels and
//! model aliases, rate limits, the response cache, price overrides, the stores, the
//! authentication and the observability switches. Every layer can still be built in
//! code without it; this module only reads, checks and describes.
//!
//! - **Strict.** Every table refuses unknown fields, and every value is typed. An
//!   invalid file is refused as a whole with a [`ConfigError`] naming the path of the
//!   bad field (`channels[1].weight`) and what was expected.
//! - **Secrets from the environment.** `${NAME}` in any string is replaced by the
//!   environment variable `NAME`; a variable that is not set is an error naming the
//!   field (`$${` writes a literal `${`). Fields that hold credentials are [`Secret`]s:
//!   their `Debug` and their serialised form are `<redacted>`, so printing or serving a
//!   `Config` (e.g. `GET /admin/config`) never shows one.
//! - **Zero setup.** An empty file is a valid configuration: [`Config::default`] is the
//!   example gateway's embedded default (the mock provider, the in-memory cache for
//!   deterministic requests, SQLite at `./tollgate.db`).
//!
//! ```
//! use tollgate::config::Config;
//!
//! let config = Config::from_toml_with_env(
//!     r#"
//!     listen = "127.0.0.1:9000"
//!
//!     [[channels]]
//!     id = "openai"
//!     provider = "openai"
//!     api_keys = ["${OPENAI_API_KEY}"]
//!     models = ["gpt-4o", "gpt-4o-mini"]
//!
//!     [models]
//!     fast = "gpt-4o-mini"
//!     "#,
//!     |name| (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned()),
//! )
//! .unwrap();
//! assert_eq!(config.channels[0].api_keys[0].expose(), "sk-test");
//! assert!(!format!("{config:?}").contains("sk-test"));
//!
//! let err = Config::from_toml_with_env("[[channels]]\nid = 3", |_| None).unwrap_err();
//! assert_eq!(err.path(), "channels[0].id");
//! ```
//!
//! **Reload.** The example gateway reloads its file when it changes and on SIGHUP: a
//! valid new file is swapped in atomically, an invalid one is refused. The fields read
//! once at start keep their running value until a restart, and the reload logs a
//! warning naming each one that changed: `listen`, `stores.*` (`sqlite`,
//! `database_url`, `redis_url`, `redis_fail`), `observability.log_format`,
//! `alerts.webhook_url`, `mock` (turning it on) and `auth.master_key` (turning
//! authentication on or off). Everything else applies, including a new master key, the
//! JWT settings, `[[auth.keys]]` (a removed key is refused from the next request),
//! `observability.metrics` and the low-balance thresholds.
//!
//! `examples/gateway.toml` documents every field.

mod channels;
mod env;
mod keys;
#[cfg(feature = "routing")]
mod routing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metering::Money;

pub use channels::{ChannelConfig, Provider};
pub use keys::KeyConfig;

/// A configuration that could not be read or is invalid: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    path: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// The file the configuration came from, when it came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The path of the bad field, e.g. `channels[1].api_keys[0]`; empty when the error
    /// is about the whole file (unreadable, not TOML).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, and what was expected.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A credential from the configuration. Its `Debug`, `Display` and serialised form are
/// `<redacted>`; [`expose`](Secret::expose) is for the one place that uses it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// The whole gateway. See the [module docs](crate::config) and `examples/gateway.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Address to serve on (default `127.0.0.1:8080`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Serve the in-process mock provider under `mock/`, `mock-anthropic/` and
    /// `mock-gemini/` (default `true`).
    pub mock: bool,
    /// Maximum request body, in bytes (default 10 MiB).
    pub body_limit: usize,
    /// On shutdown, how long requests in flight (streams included) may take to finish
    /// before the remaining connections are closed, in seconds (default 30).
    pub shutdown_grace_seconds: u64,
    /// Authentication: the master key and JWTs.
    pub auth: AuthConfig,
    /// Where keys, the ledger, rate-limit counters and the cache live.
    pub stores: StoresConfig,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// The response cache.
    pub cache: CacheConfig,
    /// Price overrides (USD per million tokens) on top of the shipped table, by model
    /// name or `prefix*` pattern.
    pub prices: BTreeMap<String, PriceConfig>,
    /// How a request picks among the channels serving its model.
    pub routing: RoutingConfig,
    /// Upstream channels.
    pub channels: Vec<ChannelConfig>,
    /// Model aliases: a name clients use, to one model or an ordered group of models.
    pub models: BTreeMap<String, Alias>,
    /// Logs and metrics.
    pub observability: ObservabilityConfig,
    /// Content checks on prompts and answers.
    pub guardrails: GuardrailsConfig,
    /// Webhook alerts.
    pub alerts: AlertsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            mock: true,
            body_limit: crate::request::DEFAULT_BODY_LIMIT,
            shutdown_grace_seconds: 30,
            auth: AuthConfig::default(),
            stores: StoresConfig::default(),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            prices: BTreeMap::new(),
            routing: RoutingConfig::default(),
            channels: Vec::new(),
            models: BTreeMap::new(),
            observability: ObservabilityConfig::default(),
            guardrails: GuardrailsConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

/// The model prefixes the example gateway's embedded mock serves (with `mock = true`).
pub const MOCK_PREFIXES: [&str; 3] = ["mock/", "mock-anthropic/", "mock-gemini/"];

impl Config {
    /// Reads a configuration from TOML text, expanding `${NAME}` from the process
    /// environment, and validates it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, |name| std::env::var(name).ok())
    }

    /// Reads a configuration from TOML text, expanding `${NAME}` with `env`, and
    /// validates it.
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            // The message only, never toml's excerpt of the source: the line may
            // hold a secret, and reload errors go to the log.
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::new(
                "",
                format!(
                    "not valid TOML: {}{}",
                    at.unwrap_or_default(),
                    e.message().trim_end()
                ),
            )
        })?;
        let mut value = toml::Value::Table(table);
        let mut secrets = Vec::new();
        env::expand(&mut value, &mut String::new(), &env, &mut secrets)?;
        // Values from the environment are secrets: no error message may echo one
        // (a key pasted into the wrong field would otherwise reach the log).
        let hide = |e: ConfigError| ConfigError {
            message: env::redact(&e.message, &secrets),
            ..e
        };
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            // toml's own message, without the key context it appends (the path above
            // is the exact one, with array indices).
            hide(ConfigError::new(path, e.into_inner().message().trim_end()))
        })?;
        config.validate().map_err(hide)?;
        Ok(config)
    }

    /// Reads and validates the configuration file at `path` (`${NAME}` from the
    /// process environment). Errors start with the file name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            ..e
        })
    }

    /// Checks what the types alone cannot: channel ids unique and usable, base URLs,
    /// model mappings, alias targets. Called by every constructor; call it again after
    /// changing a `Config` in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        channels::validate(self)?;
        keys::validate(self)?;
        self.alerts.validate()?;
        for (name, limits) in &self.limits.models {
            if name.trim().is_empty() {
                return Err(ConfigError::new(
                    "limits.models",
                    "a model name must not be empty",
                ));
            }
            limits.validate(&format!("limits.models.{name}"))?;
        }
        if let Some(limits) = &self.limits.global {
            limits.validate("limits.global")?;
        }
        if let Some(limits) = &self.limits.client {
            limits.validate("limits.client")?;
        }
        if self.body_limit == 0 {
            return Err(ConfigError::new(
                "body_limit",
                "expected a positive number of bytes",
            ));
        }
        Ok(())
    }

    /// The models an alias stands for (in order), or `None` for a name that is not an
    /// alias.
    pub fn alias(&self, name: &str) -> Option<&[String]> {
        self.models.get(name).map(|alias| alias.0.as_slice())
    }

    /// The shipped price table with this configuration's overrides on top.
    pub fn price_table(&self) -> crate::metering::PriceTable {
        let mut table = crate::metering::PriceTable::builtin();
        for (model, price) in &self.prices {
            table.insert(model.clone(), price.to_price());
        }
        table
    }

    /// Whether `model` is served by the embedded mock (with `mock = true`).
    pub fn is_mock_model(&self, model: &str) -> bool {
        self.mock && MOCK_PREFIXES.iter().any(|p| model.starts_with(p))
    }
}

/// `[auth]`: authentication.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Turns authentication on: every `/v1/*` route needs a key, and the admin API is
    /// open to this key (at least 16 visible ASCII characters). Unset: open gateway.
    pub master_key: Option<Secret>,
    /// HS256 secret for JWTs (at least 32 bytes); needs `master_key`.
    pub jwt_hs256_secret: Option<Secret>,
    /// Local JWKS file with RS256 / ES256 keys (read at start); needs `master_key`.
    pub jwks_file: Option<PathBuf>,
    /// Required JWT `iss`.
    pub jwt_issuer: Option<String>,
    /// Required JWT `aud`.
    pub jwt_audience: Option<String>,
    /// Client keys fixed in the file (`[[auth.keys]]`), next to the database's.
    pub keys: Vec<KeyConfig>,
}

/// `[stores]`: where state lives.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StoresConfig {
    /// SQLite file for the usage ledger and the keys (default `./tollgate.db`).
    pub sqlite: PathBuf,
    /// Keep the usage ledger and the keys in PostgreSQL instead (`postgres://...`).
    pub database_url: Option<Secret>,
    /// Share rate-limit counters and the cache through Redis (`redis://...`).
    pub redis_url: Option<Secret>,
    /// What the rate limiter does when Redis does not answer in time.
    pub redis_fail: FailPolicy,
}

impl Default for StoresConfig {
    fn default() -> Self {
        StoresConfig {
            sqlite: PathBuf::from("./tollgate.db"),
            database_url: None,
            redis_url: None,
            redis_fail: FailPolicy::Open,
        }
    }
}

/// What a layer does when its shared store is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailPolicy {
    /// Admit the request without counting it.
    #[default]
    Open,
    /// Refuse it with a 503.
    Closed,
}

/// `[limits]`: rate limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// For the whole gateway.
    pub global: Option<RateLimits>,
    /// Per client IP address (IPv6 per /64).
    pub client: Option<RateLimits>,
    /// Per model name.
    pub models: BTreeMap<String, RateLimits>,
}

/// One scope's limits; a field left out is not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Requests per day.
    pub rpd: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Tokens per day.
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u32>,
}

impl RateLimits {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let fields = [
            ("rpm", self.rpm),
            ("rpd", self.rpd),
            ("tpm", self.tpm),
            ("tpd", self.tpd),
            ("max_parallel", self.max_parallel.map(u64::from)),
        ];
        for (name, value) in fields {
            if value == Some(0) {
                return Err(ConfigError::new(
                    format!("{path}.{name}"),
                    "expected a positive number (leave the field out for no limit)",
                ));
            }
        }
        Ok(())
    }

    /// These limits for [`RateLimitLayer`](crate::ratelimit::RateLimitLayer).
    #[cfg(feature = "ratelimit")]
    pub fn to_limits(&self) -> crate::ratelimit::Limits {
        let mut limits = crate::ratelimit::Limits::new();
        if let Some(n) = self.rpm {
            limits = limits.requests_per_minute(n);
        }
        if let Some(n) = self.rpd {
            limits = limits.requests_per_day(n);
        }
        if let Some(n) = self.tpm {
            limits = limits.tokens_per_minute(n);
        }
        if let Some(n) = self.tpd {
            limits = limits.tokens_per_day(n);
        }
        if let Some(n) = self.max_parallel {
            limits = limits.max_parallel(n);
        }
        limits
    }
}

/// `[cache]`: the response cache.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Which answers are cached.
    pub policy: CacheMode,
    /// Time to live of an entry, in seconds (default: the cache layer's, one hour).
    pub ttl_seconds: Option<u64>,
    /// Largest answer stored, in bytes (default: the cache layer's, 2 MiB).
    pub max_entry_bytes: Option<usize>,
}

/// Which answers the cache serves and stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheMode {
    /// `temperature: 0` or a `seed`; embeddings always.
    #[default]
    Deterministic,
    /// Every request.
    Always,
    /// None: the cache is off.
    Never,
}

#[cfg(feature = "cache")]
impl From<CacheMode> for crate::cache::CachePolicy {
    fn from(mode: CacheMode) -> Self {
        match mode {
            CacheMode::Deterministic => crate::cache::CachePolicy::Deterministic,
            CacheMode::Always => crate::cache::CachePolicy::Always,
            CacheMode::Never => crate::cache::CachePolicy::Never,
        }
    }
}

/// A price override, in USD per million tokens (decimal strings, e.g. `"0.15"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PriceConfig {
    /// Input tokens.
    pub input: Money,
    /// Output tokens.
    pub output: Money,
    /// Input tokens read from the provider's prompt cache (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Money>,
    /// Input tokens written to the provider's prompt cache (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Money>,
}

impl PriceConfig {
    /// A price with the same rate for cached and uncached input.
    pub fn new(input: Money, output: Money) -> Self {
        PriceConfig {
            input,
            output,
            cached_input: None,
            cache_write: None,
        }
    }

    /// The metering price.
    pub fn to_price(&self) -> crate::metering::Price {
        let mut price = crate::metering::Price::new(self.input, self.output);
        if let Some(p) = self.cached_input {
            price = price.with_cached_input(p);
        }
        if let Some(p) = self.cache_write {
            price = price.with_cache_write(p);
        }
        price
    }
}

/// `[routing]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// How a request picks among the channels serving its model.
    pub strategy: Strategy,
}

/// The routing strategies (see the routing module once it lands).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Random, in proportion to the channels' weights.
    Weighted,
    /// In turn.
    RoundRobin,
    /// In turn, in proportion to the weights, spread evenly (nginx's smooth WRR).
    SmoothWeighted,
    /// The highest priority first; lower ones only on fail-over (the default).
    #[default]
    Priority,
    /// The lowest time to first byte.
    Latency,
    /// The highest recent success rate.
    SuccessRate,
    /// The cheapest by the price table.
    Cost,
    /// A weighted score of latency, success rate and cost.
    Composite,
}

impl Strategy {
    /// The strategy's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::RoundRobin => "round_robin",
            Strategy::SmoothWeighted => "smooth_weighted",
            Strategy::Priority => "priority",
            Strategy::Latency => "latency",
            Strategy::SuccessRate => "success_rate",
            Strategy::Cost => "cost",
            Strategy::Composite => "composite",
        }
    }
}

/// A `[models]` entry: one model name, or an ordered group of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Alias(Vec<String>);

impl Alias {
    /// An alias for these models, tried in order (validated by [`Config::validate`]).
    pub fn new(models: Vec<String>) -> Self {
        Alias(models)
    }

    /// The models, in order.
    pub fn models(&self) -> &[String] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Alias {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Alias, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Alias;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model name or a non-empty list of model names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Alias, E> {
                if v.trim().is_empty() {
                    return Err(E::invalid_value(serde::de::Unexpected::Str(v), &self));
                }
                Ok(Alias(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Alias, A::Error> {
                let mut models = Vec::new();
                while let Some(model) = seq.next_element::<String>()? {
                    models.push(model);
                }
                if models.is_empty() || models.iter().any(|m| m.trim().is_empty()) {
                    return Err(serde::de::Error::invalid_length(models.len(), &self));
                }
                Ok(Alias(models))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[observability]`: logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ObservabilityConfig {
    /// Log lines as human-readable text or as one JSON object per line.
    pub log_format: LogFormat,
    /// Serve Prometheus metrics at `/metrics` (default `true`).
    pub metrics: bool,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            log_format: LogFormat::Text,
            metrics: true,
        }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable text (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[guardrails]`: content checks on prompts and answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GuardrailsConfig {
    /// Emails, phone numbers and payment card numbers: `off` (the default), `redact`
    /// or `block`.
    pub pii: PiiPolicy,
    /// Check prompts (default `true`).
    pub requests: bool,
    /// Check answers, streams included (default `true`).
    pub responses: bool,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        GuardrailsConfig {
            pii: PiiPolicy::Off,
            requests: true,
            responses: true,
        }
    }
}

/// What the PII guardrail does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PiiPolicy {
    /// No check.
    #[default]
    Off,
    /// Replace with `[EMAIL]`, `[PHONE]`, `[CARD]`.
    Redact,
    /// Refuse with 400 `content_policy_violation` (a stream ends with an error event).
    Block,
}

/// `[alerts]`: operator alerts posted to a webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AlertsConfig {
    /// Where alerts are posted as JSON (a secret: webhook URLs often carry a token).
    /// Unset: no alerts.
    pub webhook_url: Option<Secret>,
    /// Alert once when a prepaid balance falls below this (USD, a decimal string) and
    /// again only after a credit lifted it back up; for every prepaid account without a
    /// threshold of its own. Unset: only the accounts of `balance_low_accounts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_low: Option<Money>,
    /// Low-balance thresholds per account: `"key:<key id>"` or `"team:<team>"` to USD.
    pub balance_low_accounts: BTreeMap<String, Money>,
}

impl AlertsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, threshold) in &self.balance_low_accounts {
            let path = format!("alerts.balance_low_accounts.\"{name}\"");
            let (kind, id) = name.split_once(':').unwrap_or(("", ""));
            if !matches!(kind, "key" | "team") || id.trim().is_empty() {
                return Err(ConfigError::new(
                    path,
                    "expected `key:<key id>` or `team:<team>`",
                ));
            }
            if *threshold < Money::ZERO {
                return Err(ConfigError::new(path, "expected a non-negative amount"));
            }
        }
        if self.balance_low.is_some_and(|t| t < Money::ZERO) {
            return Err(ConfigError::new(
                "alerts.balance_low",
                "expected a non-negative amount",
            ));
        }
        Ok(())
    }

    /// The per-account low-balance thresholds, as metering accounts.
    pub fn balance_low_thresholds(&self) -> Vec<(crate::metering::Account, Money)> {
        use crate::metering::Account;
        self.balance_low_accounts
            .iter()
            .filter_map(|(name, threshold)| {
                let account = match name.split_once(':')? {
                    ("key", id) => Account::Key(id.to_owned()),
                    ("team", team) => Account::Team(team.to_owned()),
                    _ => return None,
                };
                Some((account, *threshold))
            })
            .collect()
    }
}
