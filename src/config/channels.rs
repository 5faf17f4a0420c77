//! `[[channels]]`: the upstream channels and their validation (`Config::router` turns
//! them into a routing table).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Secret};
use crate::Dialect;

/// A provider dialect a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Provider {
    /// OpenAI or any OpenAI-compatible API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
}

impl Provider {
    /// The wire dialect.
    pub fn dialect(self) -> Dialect {
        match self {
            Provider::Openai => Dialect::OpenAi,
            Provider::Anthropic => Dialect::Anthropic,
            Provider::Gemini => Dialect::Gemini,
        }
    }

    /// The provider's public base URL, used when a channel sets none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Openai => "https://api.openai.com/v1",
            Provider::Anthropic => "https://api.anthropic.com/v1",
            Provider::Gemini => "https://generativelanguage.googleapis.com/v1beta",
        }
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One `[[channels]]` entry: a provider endpoint with its keys and the models it serves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Unique name (letters, digits, `-`, `_`, `.`); clients may ask for `ID/MODEL`.
    pub id: String,
    /// The dialect it speaks.
    pub provider: Provider,
    /// Base URL with the version prefix (default: the provider's public API).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Upstream keys, used in turn; none for an endpoint without authentication.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Models served: names, or `prefix*` patterns (`*` alone: every model).
    pub models: Vec<String>,
    /// Per-channel model names: `requested = "sent upstream"` (e.g. a deployment name).
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// Relative share of traffic among channels of the same priority (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Higher first; lower priorities are fall-backs (default 0).
    #[serde(default)]
    pub priority: i32,
    /// A disabled channel receives no traffic (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl ChannelConfig {
    /// An enabled channel of weight 1 and priority 0, without keys, at the provider's
    /// public base URL.
    pub fn new(id: impl Into<String>, provider: Provider, models: Vec<String>) -> Self {
        ChannelConfig {
            id: id.into(),
            provider,
            base_url: None,
            api_keys: Vec::new(),
            models,
            model_map: BTreeMap::new(),
            weight: 1,
            priority: 0,
            enabled: true,
        }
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or_else(|| self.provider.default_base_url())
    }

    /// Whether this channel serves `model` (by name or pattern).
    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => m == model,
        })
    }

    /// The model name to send upstream for `model`.
    pub fn upstream_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.model_map.get(model).map_or(model, String::as_str)
    }
}

/// Checks the channels and the aliases that point at them.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, channel) in config.channels.iter().enumerate() {
        let at = |field: &str| format!("channels[{i}].{field}");
        let id = channel.id.as_str();
        let id_ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !id_ok {
            return Err(ConfigError::new(
                at("id"),
                format!("`{id}`: expected letters, digits, `-`, `_` or `.` (no `/`)"),
            ));
        }
        if let Some(first) = ids.insert(id, i) {
            return Err(ConfigError::new(
                at("id"),
                format!("duplicate channel id `{id}` (also channels[{first}].id)"),
            ));
        }
        if let Some(base) = &channel.base_url {
            let ok = base.parse::<http::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(ConfigError::new(
                    at("base_url"),
                    format!("`{base}`: expected an absolute http(s) URL such as https://api.openai.com/v1"),
                ));
            }
        }
        if channel.models.is_empty() {
            return Err(ConfigError::new(
                at("models"),
                "expected at least one model name or pattern",
            ));
        }
        for (k, model) in channel.models.iter().enumerate() {
            let star = model.find('*');
            if model.trim().is_empty() || star.is_some_and(|s| s != model.len() - 1) {
                return Err(ConfigError::new(
                    format!("channels[{i}].models[{k}]"),
                    format!("`{model}`: expected a model name or a `prefix*` pattern"),
                ));
            }
        }
        for (requested, sent) in &channel.model_map {
            if !channel.serves(requested) {
                return Err(ConfigError::new(
                    format!("channels[{i}].model_map.{requested}"),
                    format!("`{requested}` is not among this channel's models"),
                ));
            }
            if sent.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("channels[{i}].model_map.{requested}"),
                    "expected the model name to send upstream",
                ));
            }
        }
        for (k, key) in channel.api_keys.iter().enumerate() {
            if key.expose().trim().is_empty() {
                return Err(ConfigError::new(
                    format!("channels[{i}].api_keys[{k}]"),
                    "the key is empty (is its environment variable set to an empty value?)",
                ));
            }
        }
    }
    for (alias, targets) in &config.models {
        for model in targets.models() {
            if config.models.contains_key(model.as_str()) {
                return Err(ConfigError::new(
                    format!("models.{alias}"),
                    format!(
                        "`{model}` is an alias itself: aliases point at models, not at aliases"
                    ),
                ));
            }
            let served = config.is_mock_model(model)
                || config.channels.iter().any(|c| c.serves(model))
                || model.split_once('/').is_some_and(|(id, m)| {
                    config.channels.iter().any(|c| c.id == id && c.serves(m))
                });
            if !served {
                return Err(ConfigError::new(
                    format!("models.{alias}"),
                    format!("`{model}` is served by no channel (expected a model a channel lists, or `CHANNEL/MODEL`)"),
                ));
            }
        }
    }
    Ok(())
}
