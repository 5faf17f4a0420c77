//! JWT bearer tokens: [`JwtValidator`], its keys ([`JwtKey`]) and configuration.
//!
//! A client presents a JWT where it would present a key (`Authorization: Bearer <jwt>`
//! or `x-api-key: <jwt>`). The validator checks its signature with a configured key,
//! its `exp` and `nbf` (with a small leeway, [`DEFAULT_LEEWAY`]), and, when configured,
//! its `iss` and `aud`; then it maps the claims to a [`Principal`]:
//!
//! | claim | becomes | when absent |
//! |---|---|---|
//! | `sub` (required) | [`Principal::key_id`], verbatim or after [`JwtValidatorBuilder::subject_prefix`] | 401 |
//! | `team` ([`team_claim`](JwtValidatorBuilder::team_claim)) | the team (a string) | no team |
//! | `role` ([`role_claim`](JwtValidatorBuilder::role_claim)) | `admin`, `developer` or `viewer` | [`default_role`](JwtValidatorBuilder::default_role), `developer` |
//! | `models` ([`models_claim`](JwtValidatorBuilder::models_claim)) | model globs (an array of strings, or one string) | every model |
//! | `iss` | `metadata["iss"]` | — |
//!
//! A claim of the wrong type (a numeric team, an unknown role, a bad glob) is a 401: a
//! token the gateway cannot read fully is not trusted partly. `exp` is required.
//!
//! Refused: a bad signature, an expired or not-yet-valid token, a wrong issuer or
//! audience, a token signed with an algorithm for which no key is configured
//! (`alg: none` included: it is never accepted), a `kid` no key has, and anything
//! malformed. Each is a 401 in the client's dialect, like an unknown key. A key is bound
//! to one algorithm, so an RSA public key can never serve as an HMAC secret.
//!
//! Verification is synchronous and not cached: HS256 takes a few microseconds, RS256
//! and ES256 a few hundred (pure-Rust backend). A JWT's role counts like a key's: with
//! [`KeyAuthenticator::with_jwt`](super::KeyAuthenticator::with_jwt) behind the admin
//! API, a token whose role claim is `admin` may manage keys.
//!
//! ```
//! use std::time::Duration;
//! use tollgate::auth::{AuthLayer, JwtKey, JwtValidator};
//!
//! # fn main() -> Result<(), tollgate::auth::JwtConfigError> {
//! let validator = JwtValidator::builder()
//!     .key(JwtKey::hs256(b"a shared secret of at least 32 bytes!")?)
//!     .issuer("https://id.example.com")
//!     .audience("tollgate")
//!     .team_claim("org")
//!     .leeway(Duration::from_secs(10))
//!     .build()?;
//! // Only JWTs:
//! let layer = AuthLayer::jwt(validator.clone());
//! // Or JWTs and virtual keys: `KeyAuthenticator::new(keys).with_jwt(validator)`.
//! # let _ = layer; Ok(()) }
//! ```
//!
//! Keys can also come from a local JWKS file, read once by
//! [`JwtValidatorBuilder::jwks_file`]; tokens then pick their key by `kid`.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::authenticate::{credential_up_to, AuthenticateFuture};
use super::{Authenticate, ModelPattern, Principal, Rejection, Role};

/// The clock skew allowed on `exp` and `nbf`: 30 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The longest token read from a header (larger ones are refused unread).
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The shortest HS256 secret accepted: 32 bytes, the size of the hash (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// A signature algorithm the validator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an RSA public key.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl JwtAlgorithm {
    /// `HS256`, `RS256` or `ES256`.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }

    fn from_jwt(alg: Algorithm) -> Option<JwtAlgorithm> {
        match alg {
            Algorithm::HS256 => Some(JwtAlgorithm::Hs256),
            Algorithm::RS256 => Some(JwtAlgorithm::Rs256),
            Algorithm::ES256 => Some(JwtAlgorithm::Es256),
            _ => None,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A key that verifies tokens of one algorithm, optionally named by a `kid`.
///
/// Its `Debug` shows the algorithm and the `kid`, never the key.
#[derive(Clone)]
pub struct JwtKey {
    alg: JwtAlgorithm,
    kid: Option<Arc<str>>,
    key: DecodingKey,
}

impl JwtKey {
    /// An HS256 shared secret (at least [`MIN_HS256_SECRET_LEN`] bytes).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<JwtKey, JwtConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(JwtConfigError::new(format!(
                "the HS256 secret has {} bytes; use at least {MIN_HS256_SECRET_LEN}",
                secret.len()
            )));
        }
        Ok(JwtKey::new(
            JwtAlgorithm::Hs256,
            DecodingKey::from_secret(secret),
        ))
    }

    /// An RS256 public key in PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<JwtKey, JwtConfigError> {
        DecodingKey::from_rsa_pem(pem.as_ref())
            .map(|key| JwtKey::new(JwtAlgorithm::Rs256, key))
            .map_err(|e| JwtConfigError::new(format!("the RS256 public key is not usable: {e}")))
    }

    /// An ES256 (P-256) public key in PEM (`BEGIN PUBLIC KEY`).
    pub fn es256_pem(pem: impl AsRef<[u8]>) -> Result<JwtKey, JwtConfigError> {
        DecodingKey::from_ec_pem(pem.as_ref())
            .map(|key| JwtKey::new(JwtAlgorithm::Es256, key))
            .map_err(|e| JwtConfigError::new(format!("the ES256 public key is not usable: {e}")))
    }

    /// Names the key: a token whose header has a `kid` is checked only against keys
    /// with that `kid`.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }

    /// Its `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    fn new(alg: JwtAlgorithm, key: DecodingKey) -> JwtKey {
        JwtKey {
            alg,
            kid: None,
            key,
        }
    }

    /// The key of a JWK, or why it is skipped.
    fn from_jwk(jwk: &Jwk) -> Result<JwtKey, String> {
        if let Some(PublicKeyUse::Encryption) = jwk.common.public_key_use {
            return Err("an encryption key (`use: enc`)".into());
        }
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => JwtAlgorithm::Rs256,
            (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(p))
                if p.curve == EllipticCurve::P256 =>
            {
                JwtAlgorithm::Es256
            }
            (Some(KeyAlgorithm::HS256), AlgorithmParameters::OctetKey(_)) => JwtAlgorithm::Hs256,
            (None, AlgorithmParameters::RSA(_)) => JwtAlgorithm::Rs256,
            (None, AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P256 => {
                JwtAlgorithm::Es256
            }
            (Some(alg), _) => return Err(format!("algorithm {alg:?} is not supported")),
            (None, _) => return Err("no `alg`, and its key type is not RSA or P-256".into()),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        if alg == JwtAlgorithm::Hs256 {
            // `from_jwk` decoded the secret; its length is not exposed, so re-check here.
            if let AlgorithmParameters::OctetKey(p) = &jwk.algorithm {
                if p.value.len() * 3 / 4 < MIN_HS256_SECRET_LEN {
                    return Err(format!(
                        "an HS256 secret shorter than {MIN_HS256_SECRET_LEN} bytes"
                    ));
                }
            }
        }
        let mut key = JwtKey::new(alg, key);
        key.kid = jwk.common.key_id.as_deref().map(Arc::from);
        Ok(key)
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A JWT configuration that cannot work: the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfigError(String);

impl JwtConfigError {
    fn new(message: impl Into<String>) -> Self {
        JwtConfigError(message.into())
    }
}

impl fmt::Display for JwtConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JWT configuration: {}", self.0)
    }
}

impl std::error::Error for JwtConfigError {}

/// Builds a [`JwtValidator`]; from [`JwtValidator::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtValidatorBuilder {
    keys: Vec<JwtKey>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    claims: ClaimNames,
    default_role: Role,
    subject_prefix: Arc<str>,
}

#[derive(Debug, Clone)]
struct ClaimNames {
    team: Arc<str>,
    role: Arc<str>,
    models: Arc<str>,
}

impl JwtValidatorBuilder {
    /// Accepts tokens signed with `key`.
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Accepts tokens signed with the keys of a JWKS document (`{"keys": [..]}`). RSA keys
    /// become RS256 keys and P-256 keys ES256 keys; a key marked for another algorithm
    /// or for encryption is skipped with a warning. Fails when the document is not JSON
    /// of that shape or has no usable key.
    pub fn jwks_json(mut self, json: &[u8]) -> Result<Self, JwtConfigError> {
        let doc: Value = serde_json::from_slice(json)
            .map_err(|e| JwtConfigError::new(format!("the JWKS is not JSON: {e}")))?;
        let Some(Value::Array(keys)) = doc.get("keys") else {
            return Err(JwtConfigError::new("the JWKS has no `keys` array"));
        };
        let before = self.keys.len();
        for (i, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
            let key = serde_json::from_value::<Jwk>(jwk.clone())
                .map_err(|e| format!("not a JWK: {e}"))
                .and_then(|jwk| JwtKey::from_jwk(&jwk));
            match key {
                Ok(key) => self.keys.push(key),
                Err(why) => tracing::warn!(index = i, kid, "JWKS: key skipped: {why}"),
            }
        }
        if self.keys.len() == before {
            return Err(JwtConfigError::new(
                "the JWKS has no usable key (RS256, ES256 on P-256, or HS256)",
            ));
        }
        Ok(self)
    }

    /// Reads a JWKS document from a local file, once (see [`jwks_json`](Self::jwks_json)).
    pub fn jwks_file(self, path: impl AsRef<Path>) -> Result<Self, JwtConfigError> {
        let path = path.as_ref();
        let json = std::fs::read(path).map_err(|e| {
            JwtConfigError::new(format!("cannot read the JWKS file {}: {e}", path.display()))
        })?;
        self.jwks_json(&json)
            .map_err(|e| JwtConfigError::new(format!("{}: {}", path.display(), e.0)))
    }

    /// Requires `iss` to be this issuer (call again to accept several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` to name this audience (call again to accept several). Without
    /// one, `aud` is not checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The clock skew allowed on `exp` and `nbf` (default [`DEFAULT_LEEWAY`]; whole
    /// seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The claim holding the team (default `team`).
    pub fn team_claim(mut self, name: impl Into<Arc<str>>) -> Self {
        self.claims.team = name.into();
        self
    }

    /// The claim holding the role (default `role`).
    pub fn role_claim(mut self, name: impl Into<Arc<str>>) -> Self {
        self.claims.role = name.into();
        self
    }

    /// The claim holding the allowed model globs (default `models`).
    pub fn models_claim(mut self, name: impl Into<Arc<str>>) -> Self {
        self.claims.models = name.into();
        self
    }

    /// The role of a token without a role claim (default developer).
    pub fn default_role(mut self, role: Role) -> Self {
        self.default_role = role;
        self
    }

    /// Prefixes the subject to make the key id (default none: the key id is `sub`).
    /// Use one (`jwt:`) when subjects could equal virtual key ids (`key_…`), which
    /// share rate limits, usage and balances by key id.
    pub fn subject_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// The validator; fails without a key.
    pub fn build(self) -> Result<JwtValidator, JwtConfigError> {
        if self.keys.is_empty() {
            return Err(JwtConfigError::new("no key: add one with `key` or a JWKS"));
        }
        let entries = self
            .keys
            .into_iter()
            .map(|key| {
                let mut validation = Validation::new(key.alg.to_jwt());
                validation.algorithms = vec![key.alg.to_jwt()];
                validation.leeway = self.leeway.as_secs();
                validation.validate_exp = true;
                validation.validate_nbf = true;
                let mut required = vec!["exp", "sub"];
                if self.issuers.is_empty() {
                    validation.iss = None;
                } else {
                    validation.set_issuer(&self.issuers);
                    required.push("iss");
                }
                if self.audiences.is_empty() {
                    validation.validate_aud = false;
                } else {
                    validation.set_audience(&self.audiences);
                    required.push("aud");
                }
                validation.set_required_spec_claims(&required);
                Entry { key, validation }
            })
            .collect::<Vec<_>>();
        let algorithms = entries.iter().map(|e| e.key.alg).collect();
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                entries,
                algorithms,
                claims: self.claims,
                default_role: self.default_role,
                subject_prefix: self.subject_prefix,
            }),
        })
    }
}

/// Validates JWTs and maps their claims to a [`Principal`]. See the
/// [module docs](self).
///
/// Cheap to clone. It is an [`Authenticate`] policy on its own (JWTs only), and
/// [`KeyAuthenticator::with_jwt`](super::KeyAuthenticator::with_jwt) accepts JWTs
/// next to virtual keys.
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Vec<Entry>,
    algorithms: HashSet<JwtAlgorithm>,
    claims: ClaimNames,
    default_role: Role,
    subject_prefix: Arc<str>,
}

struct Entry {
    key: JwtKey,
    validation: Validation,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let keys: Vec<_> = inner.entries.iter().map(|e| &e.key).collect();
        let first = inner.entries.first().map(|e| &e.validation);
        f.debug_struct("JwtValidator")
            .field("keys", &keys)
            .field("issuers", &first.and_then(|v| v.iss.as_ref()))
            .field("audiences", &first.and_then(|v| v.aud.as_ref()))
            .field("leeway_secs", &first.map(|v| v.leeway))
            .field("claims", &inner.claims)
            .field("default_role", &inner.default_role)
            .finish()
    }
}

impl JwtValidator {
    /// A builder: no key yet, no issuer or audience check, [`DEFAULT_LEEWAY`], claims
    /// `team`, `role` and `models`, default role developer.
    pub fn builder() -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            keys: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            claims: ClaimNames {
                team: "team".into(),
                role: "role".into(),
                models: "models".into(),
            },
            default_role: Role::Developer,
            subject_prefix: "".into(),
        }
    }

    /// The algorithms some key accepts.
    pub fn algorithms(&self) -> impl Iterator<Item = JwtAlgorithm> + '_ {
        self.inner.algorithms.iter().copied()
    }

    /// Validates `token` (the compact form, without `Bearer `) now.
    pub fn validate(&self, token: &str) -> Result<Principal, Rejection> {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Err(refuse("malformed"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| refuse("malformed"))?;
        let alg = JwtAlgorithm::from_jwt(header.alg)
            .filter(|alg| inner.algorithms.contains(alg))
            .ok_or_else(|| refuse("signed with an algorithm this gateway does not accept"))?;
        let kid = header.kid.as_deref();
        let mut last = None;
        for entry in inner
            .entries
            .iter()
            .filter(|e| e.key.alg == alg && (kid.is_none() || e.key.kid.as_deref() == kid))
        {
            match jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &entry.key.key,
                &entry.validation,
            ) {
                Ok(data) => return inner.principal(data.claims),
                // Another key of the same algorithm may have signed it.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => last = Some(e),
                Err(e) => return Err(reject(&e)),
            }
        }
        Err(match last {
            Some(e) => reject(&e),
            None => refuse("signed by an unknown key (`kid`)"),
        })
    }

    /// Authenticates a set of headers: the bearer token (or `x-api-key`) as a JWT.
    pub fn authenticate_headers(&self, headers: &HeaderMap) -> Result<Principal, Rejection> {
        self.validate(credential_up_to(headers, MAX_TOKEN_LEN)?)
    }
}

impl<B> Authenticate<B> for JwtValidator {
    type Future = AuthenticateFuture;

    fn authenticate(&mut self, request: &Request<B>) -> AuthenticateFuture {
        AuthenticateFuture::ready(self.authenticate_headers(request.headers()))
    }
}

impl Inner {
    fn principal(&self, mut claims: Map<String, Value>) -> Result<Principal, Rejection> {
        let sub = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= 256 => sub,
            _ => return Err(bad_claim("sub")),
        };
        let mut principal = if self.subject_prefix.is_empty() {
            Principal::new(sub.as_str())
        } else {
            Principal::new(format!("{}{sub}", self.subject_prefix))
        };
        match claims.get(&*self.claims.team) {
            None | Some(Value::Null) => {}
            Some(Value::String(team)) if !team.is_empty() => {
                principal = principal.with_team(team.as_str());
            }
            Some(_) => return Err(bad_claim(&self.claims.team)),
        }
        principal = principal.with_role(match claims.get(&*self.claims.role) {
            None | Some(Value::Null) => self.default_role,
            Some(Value::String(role)) => role.parse().map_err(|_| bad_claim(&self.claims.role))?,
            Some(_) => return Err(bad_claim(&self.claims.role)),
        });
        let glob = |v: &Value| {
            v.as_str()
                .and_then(|s| ModelPattern::new(s).ok())
                .ok_or_else(|| bad_claim(&self.claims.models))
        };
        match claims.get(&*self.claims.models) {
            None | Some(Value::Null) => {}
            Some(Value::Array(models)) => {
                principal =
                    principal.with_models(models.iter().map(glob).collect::<Result<Vec<_>, _>>()?);
            }
            Some(one @ Value::String(_)) => principal = principal.with_models([glob(one)?]),
            Some(_) => return Err(bad_claim(&self.claims.models)),
        }
        if let Some(iss @ Value::String(_)) = claims.remove("iss") {
            let mut metadata = Map::new();
            metadata.insert("iss".into(), iss);
            principal.metadata = Arc::new(metadata);
        }
        Ok(principal)
    }
}

fn refuse(why: &str) -> Rejection {
    tracing::debug!(reason = why, "JWT refused");
    Rejection::unauthenticated(format!("Invalid token: {why}."))
}

fn bad_claim(name: &str) -> Rejection {
    let name: String = name.chars().take(64).collect();
    tracing::debug!(claim = %name, "JWT refused: unreadable claim");
    Rejection::unauthenticated(format!(
        "Invalid token: the claim `{name}` is missing or not of the expected form."
    ))
}

fn reject(error: &jsonwebtoken::errors::Error) -> Rejection {
    refuse(match error.kind() {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (`nbf`)",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, sub, iss or aud) is missing",
        ErrorKind::InvalidClaimFormat(_) => "a registered claim has the wrong type",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "signed with an algorithm this gateway does not accept"
        }
        _ => "malformed",
    })
}

/// Whether a credential is shaped like a JWT (three base64url parts) rather than a key.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    !token.starts_with(super::KEY_PREFIX) && token.bytes().filter(|&b| b == b'.').count() == 2
}
