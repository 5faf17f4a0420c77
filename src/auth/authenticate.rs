//! The [`Authenticate`] policy, its [`Rejection`], and the default
//! [`KeyAuthenticator`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};

use super::secret::MAX_KEY_LEN;
use super::{KeyHash, KeySecret, Keys, Principal, Role};
use crate::error::{ErrorKind, GatewayError};
use crate::{Body, Dialect};

/// Decides who sent a request, from its headers only (the body is not read yet: an
/// unauthenticated client never makes the gateway buffer one).
///
/// Implemented for closures `FnMut(&Request<B>) -> impl Future<Output = Result<Principal,
/// Rejection>>` and by [`KeyAuthenticator`] (virtual keys and a master key). The future
/// must not borrow the request: copy what it needs.
pub trait Authenticate<B> {
    /// The future of the decision.
    type Future: Future<Output = Result<Principal, Rejection>>;

    /// Starts authenticating `request`.
    fn authenticate(&mut self, request: &Request<B>) -> Self::Future;
}

impl<B, F, Fut> Authenticate<B> for F
where
    F: FnMut(&Request<B>) -> Fut,
    Fut: Future<Output = Result<Principal, Rejection>>,
{
    type Future = Fut;

    fn authenticate(&mut self, request: &Request<B>) -> Fut {
        self(request)
    }
}

/// Why a request is refused; becomes a 401, 403 or 503 in the client's dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(GatewayError);

impl Rejection {
    /// 401 `invalid_api_key` (Anthropic `authentication_error`) with this message. The
    /// message is shown to the client: never put the presented key in it.
    pub fn unauthenticated(message: impl Into<std::borrow::Cow<'static, str>>) -> Rejection {
        Rejection(GatewayError::new(ErrorKind::Authentication, message))
    }

    /// 401 for a request without a key.
    pub fn missing_key() -> Rejection {
        Rejection::unauthenticated(
            "Missing API key: send it as `Authorization: Bearer <key>` (or `x-api-key: <key>` \
             on /v1/messages).",
        )
    }

    /// 401 for a key this gateway does not know.
    pub fn invalid_key() -> Rejection {
        Rejection::unauthenticated(
            "Invalid API key: it is not a key issued by this gateway. Ask its operator for one.",
        )
    }

    /// 403 `permission_denied` with this message.
    pub fn forbidden(message: impl Into<std::borrow::Cow<'static, str>>) -> Rejection {
        Rejection(GatewayError::new(ErrorKind::PermissionDenied, message))
    }

    /// 503: the key store cannot answer (the request is refused: auth fails closed).
    pub fn unavailable() -> Rejection {
        Rejection(
            GatewayError::new(
                ErrorKind::Internal,
                "The gateway cannot check API keys right now; retry shortly.",
            )
            .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
            .with_code("key_store_unavailable")
            .with_retry_after(1),
        )
    }

    /// The error behind the rejection.
    pub fn error(&self) -> &GatewayError {
        &self.0
    }

    /// The response in `dialect`.
    pub fn to_response(&self, dialect: Dialect) -> Response<Body> {
        self.0.to_response(dialect)
    }
}

impl From<GatewayError> for Rejection {
    fn from(error: GatewayError) -> Self {
        Rejection(error)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Rejection {}

/// The credential a request presents: `Authorization: Bearer <key>` (the scheme is
/// case-insensitive), else Anthropic's `x-api-key: <key>`. A header that is present but
/// unusable (another scheme, empty, not visible ASCII, over 512 bytes) is a 401; no
/// header at all is [`Rejection::missing_key`].
pub fn credential(headers: &HeaderMap) -> Result<&str, Rejection> {
    credential_up_to(headers, MAX_KEY_LEN)
}

/// [`credential`] with another length limit (JWTs are longer than keys).
pub(crate) fn credential_up_to(headers: &HeaderMap, max_len: usize) -> Result<&str, Rejection> {
    let malformed = || {
        Rejection::unauthenticated(
            "Malformed API key header: send `Authorization: Bearer <key>` with the key in \
             visible ASCII.",
        )
    };
    let token = if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| malformed())?;
        let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(malformed());
        }
        token.trim()
    } else if let Some(value) = headers.get(crate::header_names::X_API_KEY) {
        value.to_str().map_err(|_| malformed())?.trim()
    } else {
        return Err(Rejection::missing_key());
    };
    if token.is_empty() {
        return Err(Rejection::missing_key());
    }
    if token.len() > max_len || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed());
    }
    Ok(token)
}

/// The default authenticator: virtual keys from [`Keys`], and optionally a master key
/// that authenticates as `master` with the admin role, and (feature `jwt`) JWTs.
#[derive(Clone)]
pub struct KeyAuthenticator {
    keys: Option<Keys>,
    master: Option<KeyHash>,
    #[cfg(feature = "jwt")]
    jwt: Option<super::JwtValidator>,
}

impl fmt::Debug for KeyAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("KeyAuthenticator");
        f.field("keys", &self.keys)
            .field("master_key", &self.master.map(|_| "<redacted>"));
        #[cfg(feature = "jwt")]
        f.field("jwt", &self.jwt);
        f.finish()
    }
}

impl KeyAuthenticator {
    /// Accepts the keys in `keys`.
    pub fn new(keys: Keys) -> Self {
        KeyAuthenticator {
            keys: Some(keys),
            master: None,
            #[cfg(feature = "jwt")]
            jwt: None,
        }
    }

    /// Accepts only the master key.
    pub fn master_only(master: &KeySecret) -> Self {
        KeyAuthenticator {
            keys: None,
            master: Some(master.hash()),
            #[cfg(feature = "jwt")]
            jwt: None,
        }
    }

    /// Also accepts `master` (compared in constant time), as the principal `master`
    /// with the admin role and no restriction.
    pub fn master_key(mut self, master: &KeySecret) -> Self {
        self.master = Some(master.hash());
        self
    }

    /// Also accepts JWTs checked by `validator`: a credential that does not start with
    /// `tg-` and has two dots is a JWT (so a master key must not have that shape).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn with_jwt(mut self, validator: super::JwtValidator) -> Self {
        self.jwt = Some(validator);
        self
    }

    /// The keys, if any.
    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_ref()
    }

    /// Authenticates a set of headers (the admin API uses this too).
    pub fn authenticate_headers(&self, headers: &HeaderMap) -> AuthenticateFuture {
        #[cfg(feature = "jwt")]
        let max_len = if self.jwt.is_some() {
            super::jwt::MAX_TOKEN_LEN
        } else {
            MAX_KEY_LEN
        };
        #[cfg(not(feature = "jwt"))]
        let max_len = MAX_KEY_LEN;
        let token = match credential_up_to(headers, max_len) {
            Ok(token) => token,
            Err(rejection) => return AuthenticateFuture::ready(Err(rejection)),
        };
        #[cfg(feature = "jwt")]
        if let Some(jwt) = &self.jwt {
            if super::jwt::looks_like_jwt(token) {
                return AuthenticateFuture::ready(jwt.validate(token));
            }
            if token.len() > MAX_KEY_LEN {
                return AuthenticateFuture::ready(Err(Rejection::invalid_key()));
            }
        }
        // One hash serves both checks; `KeyHash` equality is constant-time.
        let hash = KeyHash::of(token);
        if let Some(master) = &self.master {
            if *master == hash {
                let principal = Principal::new("master").with_role(Role::Admin);
                return AuthenticateFuture::ready(Ok(principal));
            }
        }
        let Some(keys) = self.keys.clone() else {
            return AuthenticateFuture::ready(Err(Rejection::invalid_key()));
        };
        AuthenticateFuture(State::Lookup(Box::pin(async move {
            keys.verify_hash(hash).await
        })))
    }
}

impl<B> Authenticate<B> for KeyAuthenticator {
    type Future = AuthenticateFuture;

    fn authenticate(&mut self, request: &Request<B>) -> AuthenticateFuture {
        self.authenticate_headers(request.headers())
    }
}

/// The future of [`KeyAuthenticator`]: ready at once for the master key and for bad
/// headers, a (usually cached) lookup otherwise.
pub struct AuthenticateFuture(State);

enum State {
    Ready(Option<Result<Principal, Rejection>>),
    Lookup(Pin<Box<dyn Future<Output = Result<Principal, Rejection>> + Send>>),
}

impl AuthenticateFuture {
    pub(crate) fn ready(result: Result<Principal, Rejection>) -> Self {
        AuthenticateFuture(State::Ready(Some(result)))
    }
}

impl Future for AuthenticateFuture {
    type Output = Result<Principal, Rejection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            State::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(Rejection::unauthenticated("polled after completion"))),
            ),
            State::Lookup(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for AuthenticateFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateFuture").finish_non_exhaustive()
    }
}
