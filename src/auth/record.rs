//! [`KeyRecord`]: what a store keeps about one virtual key.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Budget, IpNet, KeyHash, KeyLimits, ModelPattern, Principal, Role};

/// One virtual key as a store keeps it: the hash of the secret (never the secret), a
/// visible prefix, and what the key may do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyRecord {
    /// A stable id (`key_` and 24 hex digits), used in URLs and usage records.
    pub id: String,
    /// SHA-256 of the secret.
    pub hash: KeyHash,
    /// `tg-` and the first characters of the secret, to recognise it.
    pub prefix: String,
    /// A human name.
    pub name: Option<String>,
    /// The team it belongs to.
    pub team: Option<String>,
    /// Its role.
    pub role: Role,
    /// The models it may call (globs); empty means every model.
    pub models: Vec<ModelPattern>,
    /// Client addresses it may call from; empty means any.
    pub ip_allow: Vec<IpNet>,
    /// Its rate limits.
    pub limits: KeyLimits,
    /// Its spending budget.
    pub budget: Option<Budget>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// When it stops working, if ever.
    pub expires_at: Option<SystemTime>,
    /// `false` while disabled (it can be enabled again).
    pub enabled: bool,
    /// When it was revoked (for good), if it was.
    pub revoked_at: Option<SystemTime>,
    /// When it was created.
    pub created_at: SystemTime,
}

/// Why a known key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    Active,
    Disabled,
    Revoked,
    Expired,
}

impl KeyRecord {
    /// A record for a new key with this hash and prefix: developer role, no team, no
    /// restriction, enabled, created now, and a fresh random id.
    pub fn new(
        hash: KeyHash,
        prefix: impl Into<String>,
    ) -> Result<KeyRecord, super::RandomUnavailable> {
        Ok(KeyRecord {
            id: new_id()?,
            hash,
            prefix: prefix.into(),
            name: None,
            team: None,
            role: Role::Developer,
            models: Vec::new(),
            ip_allow: Vec::new(),
            limits: KeyLimits::new(),
            budget: None,
            metadata: Map::new(),
            expires_at: None,
            enabled: true,
            revoked_at: None,
            created_at: now_millis(),
        })
    }

    pub(crate) fn state(&self, now: SystemTime) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if !self.enabled {
            KeyState::Disabled
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// The principal this key authenticates as.
    pub fn to_principal(&self) -> Principal {
        Principal {
            key_id: self.id.as_str().into(),
            name: self.name.as_deref().map(Arc::from),
            team: self.team.as_deref().map(Arc::from),
            role: self.role,
            models: self.models.iter().cloned().collect(),
            ip_allow: self.ip_allow.iter().copied().collect(),
            limits: self.limits,
            budget: self.budget.clone(),
            metadata: Arc::new(self.metadata.clone()),
        }
    }

    /// The record as the admin API shows it: everything but the hash.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "team": self.team,
            "role": self.role.as_str(),
            "models": self.models.iter().map(ModelPattern::as_str).collect::<Vec<_>>(),
            "ip_allow": self.ip_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "max_parallel": self.limits.max_parallel,
            "budget": self.budget.as_ref().map(|b| json!({"amount": &*b.amount, "period": b.period.as_str()})),
            "metadata": self.metadata,
            "expires_at": self.expires_at.map(unix_secs),
            "enabled": self.enabled,
            "revoked_at": self.revoked_at.map(unix_secs),
            "created_at": unix_secs(self.created_at),
            "status": match self.state(SystemTime::now()) {
                KeyState::Active => "active",
                KeyState::Disabled => "disabled",
                KeyState::Revoked => "revoked",
                KeyState::Expired => "expired",
            },
        })
    }
}

fn new_id() -> Result<String, super::RandomUnavailable> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|_| super::secret::random_unavailable())?;
    let mut id = String::from("key_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    Ok(id)
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Milliseconds since the Unix epoch, as the SQL stores keep times.
pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Now, to the millisecond (what the SQL stores keep), so a record reads back equal.
pub(crate) fn now_millis() -> SystemTime {
    from_unix_millis(unix_millis(SystemTime::now()))
}

pub(crate) fn from_unix_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}
