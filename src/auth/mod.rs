//! Authentication: virtual keys (hashed), a master key, IP allowlists and model
//! allowlists, producing a [`Principal`] for the layers after it.
//!
//! [`AuthLayer`] is the first layer of a stack: it reads only headers, so a client
//! without a valid key never makes the gateway buffer or parse a body.
//!
//! ```text
//! client ─► Auth ─► RateLimit ─► Metering ─► Cache ─► Routing ─► Failover ─► Upstream
//! ```
//!
//! ```
//! use http::Request;
//! use tollgate::auth::{AuthLayer, KeySpec, Keys, MemoryKeyStore, ModelPattern, Principal};
//! use tollgate::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = Keys::new(MemoryKeyStore::new());
//! let mut spec = KeySpec::default();
//! spec.team = Some("search".into());
//! spec.models = vec![ModelPattern::new("mock/*")?];
//! let created = keys.create(spec).await?; // the plaintext is in `created.secret`, once
//!
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::keys(keys))
//!     .service_fn(|req: Request<Body>| async move {
//!         let who = req.extensions().get::<Principal>().expect("written by AuthLayer");
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(who.key_id.to_string())))
//!     });
//!
//! let call = |key: &str, model: &str| {
//!     Request::post("/v1/chat/completions")
//!         .header("authorization", format!("Bearer {key}"))
//!         .body(Body::from(format!(r#"{{"model":"{model}","messages":[]}}"#)))
//!         .unwrap()
//! };
//! let key = created.secret.expose();
//! assert_eq!(svc.clone().oneshot(call(key, "mock/echo")).await?.status(), 200);
//! assert_eq!(svc.clone().oneshot(call(key, "gpt-4o")).await?.status(), 403);
//! assert_eq!(svc.oneshot(call("tg-wrong", "mock/echo")).await?.status(), 401);
//! # Ok(()) }
//! ```
//!
//! # Credentials and answers
//!
//! The key comes from `Authorization: Bearer <key>` or, for Anthropic clients,
//! `x-api-key: <key>`. Refusals are answered in the client's dialect (from the path):
//!
//! | case | status | OpenAI `code` / Anthropic `type` |
//! |---|---|---|
//! | no key, malformed header, unknown / disabled / revoked / expired key | 401 | `invalid_api_key` / `authentication_error` |
//! | a model outside the key's globs (checked once the body is parsed) | 403 | `permission_denied` / `permission_error` |
//! | a client address outside the key's CIDR allowlist | 403 | same |
//! | the key store cannot answer in time | 503 | `key_store_unavailable` (fails closed) |
//!
//! The client address is [`ClientAddr`](crate::extension::ClientAddr);
//! `X-Forwarded-For` counts only from proxies named in
//! [`AuthLayer::trust_forwarded_for`]. A key with an allowlist is refused when the
//! address is unknown.
//!
//! # Keys
//!
//! A virtual key is `tg-` and 43 random letters and digits (256 bits from the
//! operating system's CSPRNG). Stores keep its SHA-256 hash and a visible prefix
//! (`tg-` and 8 characters), never the key; the plaintext is shown once, when the key
//! is created or rotated. Hashes are compared in constant time.
//! [`KeySecret`] and every other type here print no secret in `Debug`.
//!
//! [`Keys`] puts a store ([`MemoryKeyStore`], `SqliteKeyStore` with feature `sqlite`,
//! `PostgresKeyStore` with feature `postgres`, or your own [`KeyStore`]) behind an
//! in-process cache: a key is trusted for 2 s ([`DEFAULT_CACHE_TTL`]) after it was read,
//! so a key revoked on one replica stops working on every replica within 2 s (at once on
//! the replica that revoked it), and the database sees one query per key per TTL, not
//! one per request. Unknown keys are remembered too, in a bounded cache of their own.
//!
//! # Roles
//!
//! Every [`Role`] may call models. `admin` may use the whole admin API, `viewer` its
//! read-only routes, `developer` none. The master key authenticates as the principal
//! `master` with the admin role.
//!
//! # JWT
//!
//! With feature `jwt`, `JwtValidator` (module `tollgate::auth::jwt`) checks HS256,
//! RS256 and ES256 tokens (keys from code or a local JWKS file) and maps their claims
//! to a principal: on its own (`AuthLayer::jwt`) or next to virtual keys
//! (`KeyAuthenticator::with_jwt`).
//!
//! # Custom authentication
//!
//! Any closure `FnMut(&Request<B>) -> impl Future<Output = Result<Principal, Rejection>>`
//! is an [`Authenticate`] policy; [`credential`] extracts the presented key.

mod authenticate;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
mod keys;
mod layer;
mod pattern;
mod principal;
pub(crate) mod record;
pub(crate) mod secret;
mod store;

pub use authenticate::{credential, Authenticate, AuthenticateFuture, KeyAuthenticator, Rejection};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{JwtAlgorithm, JwtConfigError, JwtKey, JwtValidator, JwtValidatorBuilder};
pub use keys::{
    CreatedKey, KeySpec, Keys, KeysBuilder, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL,
    DEFAULT_LOOKUP_TIMEOUT, DEFAULT_MAX_LOOKUPS,
};
pub use layer::{Auth, AuthLayer, ResponseFuture};
pub use pattern::{InvalidPattern, IpNet, ModelPattern};
pub use principal::{Budget, BudgetPeriod, KeyLimits, Principal, Role};
pub use record::KeyRecord;
pub use secret::{KeyHash, KeySecret, RandomUnavailable, KEY_PREFIX};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresKeyStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteKeyStore;
pub use store::{FixedKeys, KeyStore, KeyStoreError, MemoryKeyStore, StoreFuture};
