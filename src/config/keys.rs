//! `[[auth.keys]]`: client keys fixed in the configuration file.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Secret};

/// One `[[auth.keys]]` entry: a client key the file defines (next to the keys the admin
/// API creates in the database). Give the key itself from the environment
/// (`key = "${APP_KEY}"`), or only its SHA-256 (`key_sha256`, 64 hex digits:
/// `printf %s "$KEY" | sha256sum`), so the file never holds a usable secret.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyConfig {
    /// Unique id (shown in usage records and the admin API).
    pub id: String,
    /// The key (usually `${ENV}`); exactly one of `key` and `key_sha256`.
    #[serde(default)]
    pub key: Option<Secret>,
    /// The key's SHA-256 in hex.
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// A human name.
    #[serde(default)]
    pub name: Option<String>,
    /// The team.
    #[serde(default)]
    pub team: Option<String>,
    /// `admin`, `developer` (the default) or `viewer`.
    #[serde(default = "developer")]
    pub role: String,
    /// Allowed models (globs such as `gpt-4o*`); empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_parallel: Option<u32>,
}

fn developer() -> String {
    "developer".into()
}

pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let mut ids = std::collections::HashMap::new();
    for (i, key) in config.auth.keys.iter().enumerate() {
        let at = |field: &str| format!("auth.keys[{i}].{field}");
        if key.id.trim().is_empty() {
            return Err(ConfigError::new(at("id"), "expected a non-empty id"));
        }
        if let Some(first) = ids.insert(key.id.as_str(), i) {
            return Err(ConfigError::new(
                at("id"),
                format!("duplicate key id `{}` (also auth.keys[{first}].id)", key.id),
            ));
        }
        match (&key.key, &key.key_sha256) {
            (Some(secret), None) if secret.expose().len() >= 16 => {}
            (Some(_), None) => {
                return Err(ConfigError::new(
                    at("key"),
                    "expected at least 16 characters (is its environment variable set?)",
                ))
            }
            (None, Some(hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    at("key_sha256"),
                    "expected 64 hex digits (the SHA-256 of the key)",
                ))
            }
            _ => {
                return Err(ConfigError::new(
                    at("key"),
                    "expected exactly one of `key` and `key_sha256`",
                ))
            }
        }
        if !matches!(key.role.as_str(), "admin" | "developer" | "viewer") {
            return Err(ConfigError::new(
                at("role"),
                format!("`{}`: expected admin, developer or viewer", key.role),
            ));
        }
        #[cfg(feature = "auth")]
        for (k, model) in key.models.iter().enumerate() {
            if let Err(e) = crate::auth::ModelPattern::new(model) {
                return Err(ConfigError::new(
                    format!("auth.keys[{i}].models[{k}]"),
                    e.to_string(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(feature = "auth")]
impl KeyConfig {
    /// The key as a record for [`MemoryKeyStore`](crate::auth::MemoryKeyStore): only its
    /// hash, never the key.
    pub fn to_record(&self) -> Result<crate::auth::KeyRecord, ConfigError> {
        use crate::auth::{KeyHash, KeyLimits, KeyRecord, KeySecret, ModelPattern, Role};
        let invalid = |field: &str, message: &str| {
            ConfigError::new(format!("auth.keys.{}.{field}", self.id), message.to_owned())
        };
        let (hash, prefix) = match (&self.key, &self.key_sha256) {
            (Some(key), _) => {
                let secret = KeySecret::from_plaintext(key.expose());
                (secret.hash(), secret.visible_prefix())
            }
            (None, Some(hex)) => (
                KeyHash::from_hex(hex)
                    .ok_or_else(|| invalid("key_sha256", "expected 64 hex digits"))?,
                "(hashed)".to_owned(),
            ),
            (None, None) => return Err(invalid("key", "expected `key` or `key_sha256`")),
        };
        let mut record = KeyRecord::new(hash, prefix)
            .map_err(|_| invalid("id", "the system has no random source"))?;
        record.id = self.id.clone();
        record.name = self.name.clone();
        record.team = self.team.clone();
        record.role = match self.role.as_str() {
            "admin" => Role::Admin,
            "viewer" => Role::Viewer,
            _ => Role::Developer,
        };
        record.models = self
            .models
            .iter()
            .map(|m| ModelPattern::new(m).map_err(|e| invalid("models", &e.to_string())))
            .collect::<Result<_, _>>()?;
        let mut limits = KeyLimits::new();
        limits.rpm = self.rpm;
        limits.tpm = self.tpm;
        limits.max_parallel = self.max_parallel;
        record.limits = limits;
        record
            .metadata
            .insert("source".into(), "configuration file".into());
        Ok(record)
    }
}
