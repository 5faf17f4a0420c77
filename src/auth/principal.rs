//! [`Principal`]: who is calling, written by the auth layer into the request extensions.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{IpNet, ModelPattern};

/// What a principal may do with the admin API. Every role may call models (within its
/// allowed models); roles gate the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Every admin route, reads and writes.
    Admin,
    /// Model calls only; no admin route (the default).
    #[default]
    Developer,
    /// Model calls and the admin API's read-only routes (`GET`).
    Viewer,
}

impl Role {
    /// `admin`, `developer` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "developer" => Ok(Role::Developer),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role `{}` (expected admin, developer or viewer)",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// Per-key rate limits, read by the rate-limit layer's default key maker (an unset
/// one is not limited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeyLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u32>,
}

impl KeyLimits {
    /// No limit.
    pub const fn new() -> Self {
        KeyLimits {
            rpm: None,
            tpm: None,
            max_parallel: None,
        }
    }

    /// Requests per minute (0 removes it).
    pub fn rpm(mut self, n: u64) -> Self {
        self.rpm = (n > 0).then_some(n);
        self
    }

    /// Tokens per minute (0 removes it).
    pub fn tpm(mut self, n: u64) -> Self {
        self.tpm = (n > 0).then_some(n);
        self
    }

    /// Requests in flight (0 removes it).
    pub fn max_parallel(mut self, n: u32) -> Self {
        self.max_parallel = (n > 0).then_some(n);
        self
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        *self == KeyLimits::new()
    }
}

/// A spending budget attached to a key; the metering layer enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Budget {
    /// The amount in USD, as a decimal string (`"12.50"`).
    pub amount: Arc<str>,
    /// The period it resets over.
    pub period: BudgetPeriod,
}

impl Budget {
    /// A budget of `amount` USD (a decimal string with at most 9 decimals) per `period`.
    pub fn new(amount: &str, period: BudgetPeriod) -> Result<Budget, String> {
        let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 12 || !digits(whole) || frac.len() > 9 || !digits(frac)
        {
            return Err(format!(
                "budget amount `{}` must be a non-negative decimal string in USD, e.g. \"12.50\"",
                amount.chars().take(40).collect::<String>()
            ));
        }
        Ok(Budget {
            amount: amount.into(),
            period,
        })
    }
}

/// How often a [`Budget`] resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetPeriod {
    /// Every UTC day.
    Daily,
    /// Every week (from Monday, UTC).
    Weekly,
    /// Every calendar month (UTC).
    Monthly,
    /// Never: a lifetime cap.
    Total,
}

impl BudgetPeriod {
    /// `daily`, `weekly`, `monthly` or `total`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Weekly => "weekly",
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Total => "total",
        }
    }
}

impl FromStr for BudgetPeriod {
    type Err = String;

    fn from_str(s: &str) -> Result<BudgetPeriod, String> {
        match s {
            "daily" => Ok(BudgetPeriod::Daily),
            "weekly" => Ok(BudgetPeriod::Weekly),
            "monthly" => Ok(BudgetPeriod::Monthly),
            "total" => Ok(BudgetPeriod::Total),
            other => Err(format!(
                "unknown budget period `{}` (expected daily, weekly, monthly or total)",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// Who is calling: written into the request extensions by
/// [`AuthLayer`](super::AuthLayer), read by rate limiting (per-key limits), metering
/// (key and team of each usage record, budgets) and the cache (tenant scope).
///
/// Cheap to clone. Holds no secret.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// The key's id (never its secret); `master` for the master key, the subject for a
    /// JWT.
    pub key_id: Arc<str>,
    /// A human name for the key.
    pub name: Option<Arc<str>>,
    /// The team the key belongs to.
    pub team: Option<Arc<str>>,
    /// Its role.
    pub role: Role,
    /// The models it may call; empty means every model.
    pub models: Arc<[ModelPattern]>,
    /// The client addresses it may call from; empty means any.
    pub ip_allow: Arc<[IpNet]>,
    /// Its rate limits.
    pub limits: KeyLimits,
    /// Its spending budget.
    pub budget: Option<Budget>,
    /// Free-form metadata from the key record.
    pub metadata: Arc<Map<String, Value>>,
}

impl Principal {
    /// A principal with this id, the developer role, and no restriction.
    pub fn new(key_id: impl Into<Arc<str>>) -> Principal {
        Principal {
            key_id: key_id.into(),
            name: None,
            team: None,
            role: Role::Developer,
            models: Arc::from([]),
            ip_allow: Arc::from([]),
            limits: KeyLimits::new(),
            budget: None,
            metadata: Arc::default(),
        }
    }

    /// Sets the team.
    pub fn with_team(mut self, team: impl Into<Arc<str>>) -> Self {
        self.team = Some(team.into());
        self
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the role.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Restricts the models (empty: every model).
    pub fn with_models(mut self, models: impl IntoIterator<Item = ModelPattern>) -> Self {
        self.models = models.into_iter().collect();
        self
    }

    /// Restricts the client addresses (empty: any).
    pub fn with_ip_allow(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.ip_allow = nets.into_iter().collect();
        self
    }

    /// Sets the rate limits.
    pub fn with_limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Whether this principal may call `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| p.matches(model))
    }

    /// Whether this principal may call from `ip`.
    pub fn allows_ip(&self, ip: std::net::IpAddr) -> bool {
        self.ip_allow.is_empty() || self.ip_allow.iter().any(|n| n.contains(ip))
    }
}
