//! The admin API as an axum [`Router`](axum::Router) you can mount anywhere.
//!
//! Every route is authenticated with `Authorization: Bearer <key>`: the master key
//! (`TOLLGATE_MASTER_KEY` in the example gateway) or a key with the `admin` role; a
//! `viewer` key may use the `GET` routes. Anything else gets a 401 or 403 in OpenAI
//! error JSON, and so do bad requests (400 naming the field).
//!
//! | route | does |
//! |---|---|
//! | `POST /admin/keys` | creates a key: 201 with `{"id", "key", ...}`; the plaintext `key` appears only here |
//! | `GET /admin/keys` | lists keys (`?team=` filters): never a plaintext, never a hash |
//! | `GET /admin/keys/{id}` | one key |
//! | `DELETE /admin/keys/{id}` | revokes the key for good (the record stays, for usage history) |
//! | `POST /admin/keys/{id}/rotate` | a new secret for the same id and settings: `{"id", "key", ...}` once |
//! | `POST /admin/keys/{id}/disable`, `/enable` | turns a key off and on again |
//! | `GET /admin/usage` | usage and spend: requests, tokens, cost, errors, cache hits (`?key_id=&team=&model=&from=&to=&group_by=hour\|day\|model\|key\|team`; times in Unix seconds or RFC 3339) with [`Admin::with_usage`] |
//! | `GET /admin/requests` | individual usage records, newest first (`?key_id=&team=&model=&from=&to=&limit=50&before=`; `next` in the answer is the `before` of the next page); no message content is stored |
//! | `POST /admin/balances/{key_id or team}` | `{"amount": "12.50"}` credits a prepaid balance (negative debits; 0 opens an empty one), with [`Admin::with_balances`] |
//! | `GET /admin/balances/{key_id or team}` | the balance, or 404 for a postpaid account |
//! | `GET /admin/budgets` | every budget (`?key_id=` or `?team=` for one account): `scope` (`key` or `team`), `key_id` or `team`, `limit`, `period`, `spent` and `remaining` in the current period, `period_start` and `resets_at` (Unix seconds; null for a `total` budget), `exhausted`; with [`Admin::with_balances`] |
//! | `GET /admin/budgets/{key_id or team}` | that account's budget, or 404 |
//! | `GET /admin/channels`, `GET /admin/channels/{id}` | channels with health (`healthy`, `degraded`, `down`), circuit (`closed`, `open`, `half_open`), latency, success rate and per-key counters (never a key), with [`Admin::with_channels`] (feature `routing`) |
//! | `POST /admin/channels/{id}/disable`, `/enable` | takes a channel out of routing and back, at once |
//! | `GET /admin/config` | the running configuration as JSON, every secret `<redacted>` (admin role only), with `Admin::with_config` (feature `config`) |
//!
//! `POST /admin/keys` fields (all optional): `name`, `team` (created on first use),
//! `role` (`admin`, `developer` — the default —, `viewer`), `models` (globs, e.g.
//! `["mock/*", "gpt-4o*"]`; absent or empty: every model), `expires_at` (Unix seconds
//! or RFC 3339, in the future), `ip_allow` (addresses or CIDR blocks), `rpm`, `tpm`,
//! `max_parallel`, `budget` (`{"amount": "12.50", "period": "monthly"}`: `daily`,
//! `weekly`, `monthly`, `total`), `metadata` (an object). Times in answers are Unix
//! seconds.
//!
//! A key revoked, disabled or rotated here stops working on this process at once and
//! on other replicas within the key cache TTL (2 s by default, see
//! [`Keys`]).
//!
//! ```no_run
//! use tollgate::admin::Admin;
//! use tollgate::auth::{KeyAuthenticator, KeySecret, Keys, MemoryKeyStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = Keys::new(MemoryKeyStore::new());
//! let master = KeySecret::from_plaintext(std::env::var("TOLLGATE_MASTER_KEY")?);
//! let auth = KeyAuthenticator::new(keys.clone()).master_key(&master);
//! let app = axum::Router::new().merge(Admin::new(auth, keys).into_router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

#[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
mod budgets;
#[cfg(feature = "routing")]
mod channels;
#[cfg(feature = "config")]
mod config;
mod dashboard;
mod keys;
mod time;
#[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
mod usage;

use std::fmt;

use axum::response::Response;
use http::HeaderMap;

pub use dashboard::dashboard;

use crate::auth::{KeyAuthenticator, Keys, Principal, Role};
use crate::error::{ErrorKind, GatewayError};
use crate::Dialect;

/// The admin API: who may use it, and the keys it manages. See the
/// [module docs](crate::admin).
#[derive(Clone)]
#[must_use]
pub struct Admin {
    auth: KeyAuthenticator,
    keys: Keys,
    #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
    usage: Option<std::sync::Arc<dyn crate::metering::UsageSource>>,
    #[cfg(feature = "routing")]
    router: Option<std::sync::Arc<dyn Fn() -> crate::routing::Router + Send + Sync>>,
    #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
    accounts: Option<(
        crate::metering::Accounts,
        std::sync::Arc<dyn crate::metering::BalanceStore>,
    )>,
    #[cfg(feature = "config")]
    config: Option<config::Current>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Admin routes authenticated by `auth` (give it the master key), managing `keys`.
    pub fn new(auth: KeyAuthenticator, keys: Keys) -> Self {
        Admin {
            auth,
            keys,
            #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
            usage: None,
            #[cfg(feature = "routing")]
            router: None,
            #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
            accounts: None,
            #[cfg(feature = "config")]
            config: None,
        }
    }

    /// Serves `GET /admin/config` (admin role only): the configuration `current`
    /// returns at each call (after a reload, the new one), as JSON with every
    /// [`Secret`](crate::config::Secret) shown as `<redacted>`.
    #[cfg(feature = "config")]
    pub fn with_config<F>(mut self, current: F) -> Self
    where
        F: Fn() -> std::sync::Arc<crate::config::Config> + Send + Sync + 'static,
    {
        self.config = Some(std::sync::Arc::new(current));
        self
    }

    /// Serves `GET /admin/usage` from this ledger (features `metering` and a database).
    #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
    pub fn with_usage(mut self, ledger: impl crate::metering::UsageSource) -> Self {
        self.usage = Some(std::sync::Arc::new(ledger));
        self
    }

    /// Serves `POST`/`GET /admin/balances/{key_id or team}` on these accounts (the
    /// ones given to `MeteringLayer::accounts`); each credit is saved in `store` (a
    /// database ledger) before it is applied, so balances survive restarts.
    #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
    pub fn with_balances(
        mut self,
        accounts: crate::metering::Accounts,
        store: impl crate::metering::BalanceStore,
    ) -> Self {
        self.accounts = Some((accounts, std::sync::Arc::new(store)));
        self
    }

    /// Serves `/admin/channels` for this routing table (feature `routing`): health,
    /// circuit state, latency and per-key counters, and run-time enable / disable.
    #[cfg(feature = "routing")]
    ///
    /// `current` returns the routing table in force at each call: a fixed one
    /// (`move || router.clone()`), or the one of the configuration loaded last.
    pub fn with_channels<F>(mut self, current: F) -> Self
    where
        F: Fn() -> crate::routing::Router + Send + Sync + 'static,
    {
        self.router = Some(std::sync::Arc::new(current));
        self
    }

    /// The routes, under `/admin`.
    pub fn into_router(self) -> axum::Router {
        let routes = keys::routes();
        #[cfg(feature = "routing")]
        let routes = routes.merge(channels::routes());
        #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
        let routes = routes.merge(usage::routes()).merge(budgets::routes());
        #[cfg(feature = "config")]
        let routes = routes.merge(config::routes());
        routes.with_state(self)
    }

    /// The account a path names: a key when a key has this id, else a team.
    #[cfg(all(feature = "metering", any(feature = "sqlite", feature = "postgres")))]
    async fn account(&self, name: &str) -> Result<crate::metering::Account, Response> {
        use crate::metering::Account;
        match self.keys.get(name).await {
            Ok(Some(_)) => Ok(Account::Key(name.to_owned())),
            Ok(None) => Ok(Account::Team(name.to_owned())),
            Err(err) => {
                tracing::warn!(error = %err, "admin: key store failed");
                Err(respond(GatewayError::new(
                    ErrorKind::Internal,
                    "The key store could not be read; see the gateway's log.",
                )))
            }
        }
    }

    /// The principal of an admin request, if its role may `write` (or read).
    async fn authorize(&self, headers: &HeaderMap, write: bool) -> Result<Principal, Response> {
        let principal = self
            .auth
            .authenticate_headers(headers)
            .await
            .map_err(|rejection| respond(rejection.error().clone()))?;
        let allowed = match principal.role {
            Role::Admin => true,
            Role::Viewer => !write,
            _ => false,
        };
        if !allowed {
            let need = if write { "admin" } else { "admin or viewer" };
            return Err(respond(GatewayError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "This key has the `{}` role; this admin route needs the {need} role.",
                    principal.role
                ),
            )));
        }
        Ok(principal)
    }
}

/// An error as an OpenAI-shaped axum response.
fn respond(err: GatewayError) -> Response {
    err.to_response(Dialect::OpenAi).map(axum::body::Body::new)
}
